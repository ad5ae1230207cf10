/*
 * ev.c — epoll event loop with a timer heap.
 *
 * Design (after the Redis ae loop): an array indexed by fd holds each fd's
 * callback and interest mask, so dispatch is an array lookup.  epoll is used
 * level-triggered: a handler that stops early (a full output buffer, a
 * budget of work per wakeup) is simply called again, which keeps every state
 * machine free of "did I drain the socket" bookkeeping.  ev_mod() caches the
 * mask so the common "nothing changed" case costs no syscall.
 *
 * Timers are a binary min-heap of pointers to intrusive struct ev_timer;
 * arm, cancel and re-arm are O(log n) and never allocate after the heap has
 * grown to its working size.  Expired timers run before epoll_wait, and the
 * wait timeout is the distance to the earliest timer.
 *
 * What is left out on purpose: no threads, no signal handling (main uses
 * signalfd through ev_add), no edge-triggered mode.
 */
#include "ev.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EV_BATCH 256

struct ev_fd {
    ev_io_cb cb;
    void *arg;
    uint32_t mask; /* wanted interest */
    uint32_t reg;  /* interest epoll currently has */
    bool active;
    bool pending; /* listed in loop->changes */
};

struct ev_loop {
    int epfd;
    int max_fds;
    struct ev_fd *fds;
    struct ev_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t now_us;
    bool stop;
    int *changes; /* fds whose wanted mask may differ from reg */
    size_t num_changes, changes_cap;
    struct epoll_event events[EV_BATCH];
};

struct ev_loop *ev_create(int max_fds)
{
    struct ev_loop *loop = rp_xcalloc(1, sizeof *loop);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        rp_log_errno(errno, "epoll_create1");
        free(loop);
        return NULL;
    }
    loop->max_fds = max_fds;
    loop->fds = rp_xcalloc((size_t)max_fds, sizeof *loop->fds);
    loop->now_us = rp_now_us();
    return loop;
}

void ev_destroy(struct ev_loop *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    free(loop->fds);
    free(loop->heap);
    free(loop->changes);
    free(loop);
}

static uint32_t to_epoll(uint32_t mask)
{
    uint32_t e = 0;
    if (mask & EV_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (mask & EV_WRITE)
        e |= EPOLLOUT;
    return e;
}

int ev_add(struct ev_loop *loop, int fd, uint32_t mask, ev_io_cb cb, void *arg)
{
    if (fd < 0 || fd >= loop->max_fds) {
        errno = EMFILE;
        return RP_ERR;
    }
    struct epoll_event ee = {.events = to_epoll(mask), .data.fd = fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
        return RP_ERR;
    loop->fds[fd] = (struct ev_fd){.cb = cb, .arg = arg, .mask = mask, .reg = mask, .active = true};
    return RP_OK;
}

int ev_mod(struct ev_loop *loop, int fd, uint32_t mask)
{
    if (fd < 0 || fd >= loop->max_fds || !loop->fds[fd].active) {
        errno = EBADF;
        return RP_ERR;
    }
    struct ev_fd *f = &loop->fds[fd];
    f->mask = mask;
    if (mask != f->reg && !f->pending) {
        if (loop->num_changes == loop->changes_cap) {
            loop->changes_cap = loop->changes_cap ? loop->changes_cap * 2 : 64;
            loop->changes = rp_xrealloc(loop->changes, loop->changes_cap * sizeof *loop->changes);
        }
        loop->changes[loop->num_changes++] = fd;
        f->pending = true;
    }
    return RP_OK;
}

/* Hand the batched interest changes to epoll.  A change epoll refuses is
 * reported to the fd's callback as EV_ERROR so its owner closes it (ENOMEM
 * is the realistic case).  EBADF/ENOENT mean the fd was closed without
 * ev_del(): its owner is gone, so the slot is only forgotten. */
static void flush_changes(struct ev_loop *loop)
{
    size_t n = loop->num_changes;
    for (size_t i = 0; i < n; i++) {
        int fd = loop->changes[i];
        struct ev_fd *f = &loop->fds[fd];
        if (!f->pending)
            continue; /* deleted (and maybe re-added) since it was listed */
        f->pending = false;
        if (!f->active || f->mask == f->reg)
            continue;
        struct epoll_event ee = {.events = to_epoll(f->mask), .data.fd = fd};
        if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ee) == 0) {
            f->reg = f->mask;
            continue;
        }
        int err = errno;
        if (err == EBADF || err == ENOENT) {
            *f = (struct ev_fd){0};
            continue;
        }
        rp_log_errno(err, "epoll_ctl(MOD) on fd %d", fd);
        f->cb(loop, fd, EV_ERROR | (f->mask & (EV_READ | EV_WRITE)), f->arg);
    }
    /* Changes made by those callbacks wait for the next pass. */
    if (loop->num_changes > n)
        memmove(loop->changes, loop->changes + n, (loop->num_changes - n) * sizeof *loop->changes);
    loop->num_changes -= n;
}

void ev_set_handler(struct ev_loop *loop, int fd, ev_io_cb cb, void *arg)
{
    loop->fds[fd].cb = cb;
    loop->fds[fd].arg = arg;
}

void ev_del(struct ev_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->max_fds || !loop->fds[fd].active)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->fds[fd] = (struct ev_fd){0};
}

uint32_t ev_mask(const struct ev_loop *loop, int fd)
{
    return loop->fds[fd].mask;
}

/* ---- timer heap ---- */

static void heap_swap(struct ev_loop *loop, size_t a, size_t b)
{
    struct ev_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_idx = a;
    loop->heap[b]->heap_idx = b;
}

static void heap_up(struct ev_loop *loop, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (loop->heap[p]->when_us <= loop->heap[i]->when_us)
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct ev_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && loop->heap[l]->when_us < loop->heap[m]->when_us)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->when_us < loop->heap[m]->when_us)
            m = r;
        if (m == i)
            break;
        heap_swap(loop, i, m);
        i = m;
    }
}

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *arg)
{
    t->when_us = 0;
    t->heap_idx = (size_t)-1;
    t->cb = cb;
    t->arg = arg;
}

void ev_timer_cancel(struct ev_loop *loop, struct ev_timer *t)
{
    size_t i = t->heap_idx;
    if (i == (size_t)-1)
        return;
    size_t last = --loop->heap_len;
    if (i != last) {
        loop->heap[i] = loop->heap[last];
        loop->heap[i]->heap_idx = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->heap_idx = (size_t)-1;
}

void ev_timer_arm_at(struct ev_loop *loop, struct ev_timer *t, uint64_t when_us)
{
    if (ev_timer_armed(t)) {
        uint64_t old = t->when_us;
        t->when_us = when_us;
        if (when_us < old)
            heap_up(loop, t->heap_idx);
        else
            heap_down(loop, t->heap_idx);
        return;
    }
    if (loop->heap_len == loop->heap_cap) {
        loop->heap_cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        loop->heap = rp_xrealloc(loop->heap, loop->heap_cap * sizeof *loop->heap);
    }
    t->when_us = when_us;
    t->heap_idx = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->heap_idx);
}

void ev_timer_arm(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_us)
{
    ev_timer_arm_at(loop, t, loop->now_us + delay_us);
}

uint64_t ev_now(struct ev_loop *loop)
{
    return loop->now_us;
}

uint64_t ev_update_now(struct ev_loop *loop)
{
    loop->now_us = rp_now_us();
    return loop->now_us;
}

static void run_timers(struct ev_loop *loop)
{
    /* Bound the work per pass so a timer that re-arms itself at "now"
     * cannot starve I/O. */
    size_t budget = loop->heap_len + 16;
    while (loop->heap_len > 0 && budget-- > 0) {
        struct ev_timer *t = loop->heap[0];
        if (t->when_us > loop->now_us)
            break;
        ev_timer_cancel(loop, t);
        t->cb(loop, t, t->arg);
    }
}

void ev_stop(struct ev_loop *loop)
{
    loop->stop = true;
}

int ev_run(struct ev_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        ev_update_now(loop);
        run_timers(loop);
        if (loop->stop)
            break;
        flush_changes(loop);
        if (loop->stop)
            break;
        int timeout_ms = -1;
        if (loop->heap_len > 0) {
            uint64_t when = loop->heap[0]->when_us;
            uint64_t now = loop->now_us;
            timeout_ms = when <= now ? 0 : (int)((when - now + 999) / 1000);
        }
        int n = epoll_wait(loop->epfd, loop->events, EV_BATCH, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rp_log_errno(errno, "epoll_wait");
            return RP_ERR;
        }
        ev_update_now(loop);
        for (int i = 0; i < n; i++) {
            int fd = loop->events[i].data.fd;
            struct ev_fd *f = &loop->fds[fd];
            if (!f->active)
                continue; /* closed by an earlier callback in this batch */
            uint32_t e = loop->events[i].events, got = 0;
            if (e & (EPOLLIN | EPOLLRDHUP))
                got |= EV_READ;
            if (e & EPOLLOUT)
                got |= EV_WRITE;
            if (e & (EPOLLERR | EPOLLHUP))
                got |= EV_ERROR | (f->mask & (EV_READ | EV_WRITE));
            got &= f->mask | EV_ERROR;
            if (got)
                f->cb(loop, fd, got, f->arg);
        }
    }
    return RP_OK;
}

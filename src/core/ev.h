/*
 * ev.h — the event loop: epoll readiness for file descriptors plus a binary
 * heap of one-shot timers.  Single-threaded; every callback runs on the loop
 * thread and must not block.
 *
 * Ownership: the loop never owns the objects behind "arg".  Timers are
 * intrusive (struct ev_timer lives inside the caller's object), so arming a
 * timer never allocates and a connection can cancel its timers before it is
 * freed.  A callback may add, modify or delete any fd or timer, including
 * its own; the loop re-checks its tables after each callback.
 */
#ifndef RP_EV_H
#define RP_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EV_READ 0x1u
#define EV_WRITE 0x2u
#define EV_ERROR 0x4u /* reported only: EPOLLERR or EPOLLHUP */

struct ev_loop;

typedef void (*ev_io_cb)(struct ev_loop *loop, int fd, uint32_t events, void *arg);

struct ev_timer;
typedef void (*ev_timer_cb)(struct ev_loop *loop, struct ev_timer *t, void *arg);

struct ev_timer {
    uint64_t when_us; /* absolute monotonic deadline */
    size_t heap_idx;  /* position in the heap, (size_t)-1 when not armed */
    ev_timer_cb cb;
    void *arg;
};

/* Create a loop able to watch fds below max_fds.  NULL on error (logged). */
struct ev_loop *ev_create(int max_fds);
void ev_destroy(struct ev_loop *loop);

/* Watch fd for the events in mask (EV_READ|EV_WRITE, or 0 to keep it
 * registered but quiet).  RP_OK or RP_ERR (errno set). */
int ev_add(struct ev_loop *loop, int fd, uint32_t mask, ev_io_cb cb, void *arg);
/* Change the interest mask.  Takes effect for dispatch at once; epoll is
 * told before the loop next waits, and only if the mask then differs from
 * what epoll has, so a change undone within one pass costs no syscall.
 * RP_ERR (EBADF) only if fd is not watched.  Should epoll later refuse the
 * change, the fd's callback gets EV_ERROR. */
int ev_mod(struct ev_loop *loop, int fd, uint32_t mask);
/* Replace fd's callback and argument without touching epoll (used when a
 * pooled connection changes hands). */
void ev_set_handler(struct ev_loop *loop, int fd, ev_io_cb cb, void *arg);
/* Stop watching fd.  Call before close(fd). */
void ev_del(struct ev_loop *loop, int fd);
uint32_t ev_mask(const struct ev_loop *loop, int fd);

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *arg);
/* (Re)arm t to fire delay_us after the loop's current time. */
void ev_timer_arm(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_us);
/* Arm at an absolute monotonic time. */
void ev_timer_arm_at(struct ev_loop *loop, struct ev_timer *t, uint64_t when_us);
void ev_timer_cancel(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t)
{
    return t->heap_idx != (size_t)-1;
}

/* Monotonic time cached at the start of each iteration (and refreshed after
 * epoll_wait); cheap to call on hot paths. */
uint64_t ev_now(struct ev_loop *loop);
/* Refresh and return the cached time. */
uint64_t ev_update_now(struct ev_loop *loop);

/* Run until ev_stop().  RP_OK, or RP_ERR if epoll_wait failed. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

#endif

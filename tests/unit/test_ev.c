/*
 * test_ev.c — the event loop against real socketpairs: interest changes
 * (batched until the loop next waits, but filtering dispatch at once),
 * ev_del with a change pending, an fd closed without ev_del, timers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ev.h"
#include "util.h"

struct probe {
    int calls;
    uint32_t last;
    int other_fd;      /* fd whose interest the callback turns off, or -1 */
    uint32_t set_mask; /* mask the callback leaves on its own fd */
};

static void probe_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct probe *p = arg;
    p->calls++;
    p->last = events;
    ev_mod(loop, fd, p->set_mask);
    if (p->other_fd >= 0)
        ev_mod(loop, p->other_fd, 0);
}

static void stop_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    ev_stop(loop);
}

/* Run the loop for about ms milliseconds. */
static void run_for(struct ev_loop *loop, int ms)
{
    struct ev_timer t;
    ev_timer_init(&t, stop_cb, NULL);
    ev_update_now(loop);
    ev_timer_arm(loop, &t, (uint64_t)ms * 1000);
    assert_int_equal(ev_run(loop), RP_OK);
    ev_timer_cancel(loop, &t);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* A callback that turns its own interest off is not called again, though
 * the fd stays readable (level-triggered); turning it back on resumes. */
static void test_mod_off_and_on(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int sv[2];
    pair(sv);
    assert_int_equal(write(sv[1], "x", 1), 1);
    struct probe p = {.other_fd = -1, .set_mask = 0};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, probe_cb, &p), RP_OK);
    run_for(loop, 30);
    assert_int_equal(p.calls, 1);
    assert_true(p.last & EV_READ);
    assert_int_equal(ev_mask(loop, sv[0]), 0);

    assert_int_equal(ev_mod(loop, sv[0], EV_READ), RP_OK);
    run_for(loop, 30);
    assert_int_equal(p.calls, 2);
    ev_del(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    ev_destroy(loop);
}

/* Two readable fds whose callbacks each silence the other: whichever runs
 * first, the other must not be called from the same epoll batch. */
static void test_mod_filters_same_batch(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int a[2], b[2];
    pair(a);
    pair(b);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    struct probe pa = {.other_fd = b[0], .set_mask = 0}, pb = {.other_fd = a[0], .set_mask = 0};
    assert_int_equal(ev_add(loop, a[0], EV_READ, probe_cb, &pa), RP_OK);
    assert_int_equal(ev_add(loop, b[0], EV_READ, probe_cb, &pb), RP_OK);
    run_for(loop, 30);
    assert_int_equal(pa.calls + pb.calls, 1);
    ev_del(loop, a[0]);
    ev_del(loop, b[0]);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    ev_destroy(loop);
}

/* Off then on again before the loop waits: still watched. */
static void test_flip_back(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int sv[2];
    pair(sv);
    struct probe p = {.other_fd = -1, .set_mask = 0};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, probe_cb, &p), RP_OK);
    assert_int_equal(ev_mod(loop, sv[0], 0), RP_OK);
    assert_int_equal(ev_mod(loop, sv[0], EV_READ), RP_OK);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_for(loop, 30);
    assert_int_equal(p.calls, 1);
    ev_del(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    ev_destroy(loop);
}

/* Write interest added after ev_add is reported on the next pass. */
static void test_enable_write(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int sv[2];
    pair(sv);
    struct probe p = {.other_fd = -1, .set_mask = 0};
    assert_int_equal(ev_add(loop, sv[0], 0, probe_cb, &p), RP_OK);
    run_for(loop, 20);
    assert_int_equal(p.calls, 0);
    assert_int_equal(ev_mod(loop, sv[0], EV_WRITE), RP_OK);
    run_for(loop, 20);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.last, EV_WRITE);
    ev_del(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    ev_destroy(loop);
}

/* ev_del with a change still pending, then the fd number reused by a new
 * socket: the stale change must not touch the new registration. */
static void test_del_with_pending_change(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int sv[2];
    pair(sv);
    struct probe old = {.other_fd = -1, .set_mask = 0};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, probe_cb, &old), RP_OK);
    assert_int_equal(ev_mod(loop, sv[0], EV_WRITE), RP_OK);
    ev_del(loop, sv[0]);
    int fd = sv[0];
    close(sv[0]);
    close(sv[1]);

    int nv[2];
    pair(nv);
    assert_int_equal(nv[0], fd); /* lowest free number */
    struct probe fresh = {.other_fd = -1, .set_mask = EV_READ};
    assert_int_equal(ev_add(loop, nv[0], 0, probe_cb, &fresh), RP_OK);
    run_for(loop, 20);
    assert_int_equal(old.calls, 0);
    assert_int_equal(fresh.calls, 0); /* not writable-watched by the stale change */
    assert_int_equal(ev_mod(loop, nv[0], EV_READ), RP_OK);
    assert_int_equal(write(nv[1], "x", 1), 1);
    run_for(loop, 20);
    assert_true(fresh.calls >= 1);
    assert_int_equal(old.calls, 0);
    ev_del(loop, nv[0]);
    close(nv[0]);
    close(nv[1]);
    ev_destroy(loop);
}

/* Misuse the loop must survive: an fd closed without ev_del while a change
 * is pending.  The slot is forgotten and its callback never runs. */
static void test_close_without_del(void **state)
{
    struct ev_loop *loop = ev_create(1024);
    int sv[2];
    pair(sv);
    struct probe p = {.other_fd = -1, .set_mask = 0};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, probe_cb, &p), RP_OK);
    assert_int_equal(ev_mod(loop, sv[0], EV_WRITE), RP_OK);
    int fd = sv[0];
    close(sv[0]);
    close(sv[1]);
    run_for(loop, 20);
    assert_int_equal(p.calls, 0);
    assert_int_equal(ev_mod(loop, fd, EV_READ), RP_ERR);
    ev_destroy(loop);
}

static void test_mod_unwatched(void **state)
{
    struct ev_loop *loop = ev_create(64);
    errno = 0;
    assert_int_equal(ev_mod(loop, 5, EV_READ), RP_ERR);
    assert_int_equal(errno, EBADF);
    assert_int_equal(ev_mod(loop, 64, EV_READ), RP_ERR);
    assert_int_equal(ev_mod(loop, -1, EV_READ), RP_ERR);
    ev_destroy(loop);
}

static int order[8], norder;

static void order_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
}

static void test_timers_in_order(void **state)
{
    struct ev_loop *loop = ev_create(64);
    struct ev_timer t[4];
    norder = 0;
    for (int i = 0; i < 4; i++)
        ev_timer_init(&t[i], order_cb, (void *)(intptr_t)i);
    ev_timer_arm(loop, &t[0], 15000);
    ev_timer_arm(loop, &t[1], 5000);
    ev_timer_arm(loop, &t[2], 10000);
    ev_timer_arm(loop, &t[3], 1000);
    ev_timer_cancel(loop, &t[2]);
    assert_false(ev_timer_armed(&t[2]));
    run_for(loop, 40);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 0);
    ev_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mod_off_and_on),
        cmocka_unit_test(test_mod_filters_same_batch),
        cmocka_unit_test(test_flip_back),
        cmocka_unit_test(test_enable_write),
        cmocka_unit_test(test_del_with_pending_change),
        cmocka_unit_test(test_close_without_del),
        cmocka_unit_test(test_mod_unwatched),
        cmocka_unit_test(test_timers_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

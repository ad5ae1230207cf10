/*
 * test_admit.c — the limiter and the queue, on a deterministic clock.
 *
 * Besides the unit cases, a discrete-event simulation runs the limiter and
 * the queue in front of a fake continuous-batching model server (N slots,
 * an unbounded FIFO behind them, prefill growing with the prompt, output
 * length drawn per request), offered open-loop Poisson load (or, for the
 * cold start, closed-loop clients).  It checks
 * what the benchmark will measure on the real thing: the limit converges
 * near N without being told N, re-converges within 2 s after N halves, and
 * keeps goodput and first-token latency under 10x overload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "admit.h"
#include "admit_driver.h"
#include "conf.h"
#include "ev.h"
#include "util.h"

#define MS 1000ull
#define SEC 1000000ull

static struct admit_conf default_conf(void)
{
    struct admit_conf c;
    admit_conf_default(&c);
    return c;
}

/* ---- limiter unit cases ----------------------------------------------------- */

static void test_static_limit(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    c.limiter.mode = ADMIT_MODE_STATIC;
    c.limiter.max_concurrency = 3;
    struct admit_limiter l;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    struct admit_ticket t[5];
    assert_int_equal(admit_limit(&l), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit_acquire(&l, 10, &t[i]), RP_OK);
    assert_int_equal(admit_acquire(&l, 10, &t[3]), RP_AGAIN);
    assert_int_equal(admit_free_slots(&l), 0);
    admit_first_byte(&l, &t[0], 100);
    admit_release(&l, &t[0], 200, ADMIT_DONE);
    admit_release(&l, &t[0], 200, ADMIT_DONE); /* double release is a no-op */
    assert_int_equal(l.inflight, 2);
    assert_int_equal(admit_acquire(&l, 300, &t[3]), RP_OK);
    assert_int_equal(admit_limit(&l), 3);
}

/* Random interleavings never see a successful acquire beyond the limit. */
static void test_never_exceeds_limit(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    enum { NT = 256 };
    struct admit_ticket t[NT];
    bool live[NT] = {false}, started[NT] = {false};
    uint64_t now = 0;
    rp_rand_seed(7);
    for (int step = 0; step < 200000; step++) {
        now += rp_rand64() % (5 * MS);
        int i = (int)(rp_rand64() % NT);
        if (!live[i]) {
            uint32_t lim = admit_limit(&l);
            uint32_t before = l.inflight;
            if (admit_acquire(&l, now, &t[i]) == RP_OK) {
                assert_true(before < lim);
                assert_true(l.inflight <= lim);
                live[i] = true;
                started[i] = false;
            } else {
                assert_true(before >= lim);
            }
        } else if (!started[i] && rp_rand01() < 0.5) {
            admit_first_byte(&l, &t[i], now);
            started[i] = true;
        } else {
            admit_release(&l, &t[i], now, rp_rand01() < 0.05 ? ADMIT_OVERLOADED : ADMIT_DONE);
            live[i] = false;
        }
        assert_true(admit_limit(&l) >= c.limiter.min && admit_limit(&l) <= c.limiter.max);
    }
}

/* A probe one slot above the server's capacity is undone to the level
 * below it, not two slots down, when the late request is noticed on the
 * release that frees its slot in the server. */
static void test_probe_undo_after_release(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    c.limiter.initial = 17;
    struct admit_limiter l;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    struct admit_ticket t[64];
    uint64_t now = 0;
    /* A baseline of 30 ms from intervals of 16 samples, below the limit
     * (no growth: the limit never binds). */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 16; i++)
            assert_int_equal(admit_acquire(&l, now, &t[i]), RP_OK);
        now += 30 * MS;
        for (int i = 0; i < 16; i++)
            admit_first_byte(&l, &t[i], now);
        now += 100 * MS;
        for (int i = 0; i < 16; i++)
            admit_release(&l, &t[i], now, ADMIT_DONE);
        now += 10 * MS;
    }
    assert_true(l.baseline_us > 25000 && l.baseline_us < 35000);
    assert_int_equal(admit_limit(&l), 17);
    /* 16 running in the server, a 17th queued behind them. */
    for (int i = 0; i < 16; i++)
        assert_int_equal(admit_acquire(&l, now, &t[i]), RP_OK);
    now += 30 * MS;
    for (int i = 0; i < 16; i++)
        admit_first_byte(&l, &t[i], now);
    assert_int_equal(admit_acquire(&l, now, &t[16]), RP_OK);
    /* Long after the late threshold, one of the 16 ends: its slot goes
     * to the queued request, the server's capacity is 16. */
    now += 250 * MS;
    admit_release(&l, &t[0], now, ADMIT_DONE);
    assert_int_equal(admit_limit(&l), 16);

    /* The next probe to 17 is undone as soon as the request that used the
     * probed slot is late by the threshold (3 x 30 ms), not twice it. */
    for (int i = 1; i < 17; i++)
        admit_release(&l, &t[i], now, ADMIT_DONE);
    now += 5 * SEC; /* past the probe interval */
    for (int round = 0; round < 20 && admit_limit(&l) == 16; round++) {
        for (int i = 0; i < 16; i++)
            assert_int_equal(admit_acquire(&l, now, &t[i]), RP_OK);
        assert_int_equal(admit_acquire(&l, now, &t[16]), RP_AGAIN); /* binding */
        now += 30 * MS;
        for (int i = 0; i < 16; i++)
            admit_first_byte(&l, &t[i], now);
        now += 100 * MS;
        for (int i = 0; i < 16; i++)
            admit_release(&l, &t[i], now, ADMIT_DONE);
    }
    assert_int_equal(admit_limit(&l), 17);
    for (int i = 0; i < 17; i++)
        assert_int_equal(admit_acquire(&l, now, &t[i]), RP_OK);
    now += 30 * MS;
    for (int i = 0; i < 16; i++)
        admit_first_byte(&l, &t[i], now);
    now += 80 * MS; /* t[16] has waited 110 ms: late, not yet 2 x 90 ms */
    admit_limiter_tick(&l, now);
    assert_int_equal(admit_limit(&l), 16);
}

/* ---- a server that never slows down ----------------------------------------------
 *
 * A model server with more slots than the traffic needs: every request gets
 * its first byte a fixed time after dispatch, however many run at once, and
 * then streams for a fixed time.  The gateway side is the proxy's: an
 * arrival takes a slot when nobody waits, else it queues; slots freed (or
 * added) are handed to waiters; a 100 ms timer ticks the limiter and expires
 * waiters.  A request can also be a stalled client (no first byte ever) that
 * ends as `how` after its hold time. */

#define FLAT_NEVER UINT64_MAX

struct flat_req {
    struct admit_waiter w;
    struct admit_ticket tk;
    uint64_t arrive_us, ttft_us, hold_us;
    enum admit_outcome how;
    uint64_t first_at, end_at;
    int st; /* 0 not arrived, 1 queued, 2 waiting for its first byte, 3 streaming, 4 done, 5 refused */
};

struct flat_stats {
    uint32_t refused; /* queue full, deadline or shed */
    uint32_t served;  /* dispatched */
    uint32_t max_inflight;
};

static void flat_dispatch(struct admit_limiter *l, struct flat_req *r, uint64_t now)
{
    assert_int_equal(admit_acquire(l, now, &r->tk), RP_OK);
    r->st = 2;
    r->first_at = r->ttft_us == FLAT_NEVER ? FLAT_NEVER : now + r->ttft_us;
    r->end_at = now + r->hold_us;
}

/* The gateway side runs the real queue driver (admit_driver.c) without an
 * event loop: the test calls its pump and expiry on simulated time. */
struct flat_gw {
    struct admit_limiter *l;
    struct flat_stats *fs;
};

static struct flat_req *flat_of(struct admit_waiter *w)
{
    return (struct flat_req *)((char *)w - offsetof(struct flat_req, w));
}

static bool flat_room(void *arg)
{
    struct flat_gw *g = arg;
    return admit_free_slots(g->l) > 0;
}

static int flat_admit(void *arg, struct admit_waiter *w, uint64_t now)
{
    struct flat_gw *g = arg;
    flat_dispatch(g->l, flat_of(w), now);
    g->fs->served++;
    return RP_OK;
}

static void flat_refuse(void *arg, struct admit_waiter *w, enum admit_reason why)
{
    struct flat_gw *g = arg;
    (void)why;
    flat_of(w)->st = 5;
    g->fs->refused++;
}

static const struct admit_driver_ops flat_ops = {flat_room, flat_admit, flat_refuse};

/* Run requests r[0..n) (arrive_us ascending) from `from` to `to` in 1 ms
 * steps.  Returns what happened to them in that time. */
static struct flat_stats flat_run(struct admit_limiter *l, struct admit_queue *q, struct flat_req *r, size_t n,
                                  uint64_t from, uint64_t to)
{
    struct flat_stats fs = {0};
    struct flat_gw gw = {l, &fs};
    struct admit_driver d;
    admit_driver_init(&d, NULL, q, &flat_ops, &gw);
    size_t next = 0;
    while (next < n && r[next].arrive_us < from)
        next++;
    for (uint64_t now = from; now < to; now += MS) {
        for (size_t i = 0; i < n; i++) {
            struct flat_req *x = &r[i];
            if (x->st == 2 && now >= x->first_at) {
                admit_first_byte(l, &x->tk, now);
                x->st = 3;
            }
            if ((x->st == 2 || x->st == 3) && now >= x->end_at) {
                admit_release(l, &x->tk, now, x->how);
                x->st = 4;
                admit_driver_pump(&d, now);
            }
        }
        while (next < n && r[next].arrive_us <= now) {
            struct flat_req *x = &r[next++];
            if (admit_queue_len(q) == 0 && admit_free_slots(l) > 0) {
                flat_dispatch(l, x, now);
                fs.served++;
                continue;
            }
            struct admit_waiter *ev = NULL;
            if (admit_enqueue(q, &x->w, 1, ADMIT_INTERACTIVE, 1, 1, now, &ev) == RP_OK)
                x->st = 1;
            else {
                x->st = 5;
                fs.refused++;
            }
            if (ev) {
                ((struct flat_req *)((char *)ev - offsetof(struct flat_req, w)))->st = 5;
                fs.refused++;
            }
            admit_driver_pump(&d, now);
        }
        if (now % (100 * MS) == 0) {
            admit_limiter_tick(l, now);
            admit_driver_expire(&d, now);
            admit_driver_pump(&d, now);
        }
        if (l->inflight > fs.max_inflight)
            fs.max_inflight = l->inflight;
    }
    return fs;
}

/* count requests at rate per second from t0, each with the given times. */
static void flat_fill(struct flat_req *r, size_t count, uint64_t t0, double rate, uint64_t ttft, uint64_t hold,
                      enum admit_outcome how)
{
    for (size_t i = 0; i < count; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].arrive_us = t0 + (uint64_t)((double)i * 1e6 / rate);
        r[i].ttft_us = ttft;
        r[i].hold_us = hold;
        r[i].how = how;
    }
}

/* 300 streams of 20 s, 30 new ones a second, in front of a server whose
 * first byte always takes 30 ms: nothing says the server is slowing down,
 * so nobody may be refused.  Concurrency grows to 300 without a single
 * completion for 20 s: growth must follow first bytes, not completions. */
static void test_long_streams_not_shed(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    admit_queue_init(&q, &c.queue, NULL);
    enum { N = 300 };
    struct flat_req *r = rp_xcalloc(N, sizeof *r);
    flat_fill(r, N, 0, 30.0, 30 * MS, 20 * SEC, ADMIT_DONE);
    struct flat_stats fs = flat_run(&l, &q, r, N, 0, 35 * SEC);
    print_message("  long streams: refused %u of %u, max in flight %u, limit %u, decreases %lu\n", fs.refused, N,
                  fs.max_inflight, admit_limit(&l), (unsigned long)l.decreases);
    assert_int_equal(fs.refused, 0);
    assert_int_equal(fs.served, N);
    assert_int_equal(l.decreases, 0);
    admit_queue_free(&q);
    free(r);
}

/* The same ramp after the limiter has once been told the server is
 * overloaded (one 429 at the start): leaving slow start must not tie
 * growth to the stream length (probes once per 3 durations = 30 s). */
static void test_long_streams_after_congestion(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    admit_queue_init(&q, &c.queue, NULL);
    enum { W = 40, N = 300 };
    struct flat_req *r = rp_xcalloc(W + N, sizeof *r);
    /* Warm-up: short answers, one of them a 429, so the baseline is known
     * and slow start is over. */
    flat_fill(r, W, 0, 10.0, 30 * MS, 200 * MS, ADMIT_DONE);
    r[W / 2].how = ADMIT_OVERLOADED;
    flat_run(&l, &q, r, W, 0, 5 * SEC);
    assert_true(l.congestion_seen);
    /* Then long streams, which also set the mean duration to 20 s. */
    flat_fill(r + W, N, 5 * SEC, 30.0, 30 * MS, 20 * SEC, ADMIT_DONE);
    struct flat_stats fs = flat_run(&l, &q, r + W, N, 5 * SEC, 40 * SEC);
    print_message("  long streams after a 429: refused %u of %u, max in flight %u, limit %u\n", fs.refused, N,
                  fs.max_inflight, admit_limit(&l));
    /* The limit starts just below the level of the 429 and probes its way
     * back up, paced once; from there each probe that holds is followed
     * at once.  That costs some waiters in the first second (the queue
     * sheds after a few departure intervals of the warm-up), never a
     * large share: with probes paced by the stream length it was 291. */
    assert_true(fs.refused <= N / 10);
    assert_true(fs.max_inflight >= N - N / 10);
    admit_queue_free(&q);
    free(r);
}

/* Clients that stall while sending their body hold slots and never see a
 * first byte; they end as CANCELLED.  Beside healthy traffic that is
 * answered at baseline latency they are not a queue in the server, so the
 * limit must not come down for them, and their release feeds nothing. */
static void test_stalled_clients_do_not_shrink(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    admit_queue_init(&q, &c.queue, NULL);
    enum { N = 320 };
    struct flat_req *r = rp_xcalloc(N, sizeof *r);
    /* 300 healthy streams at 30/s; every 16th arrival is a stalled client
     * instead (20 of them), which gives up after 20 s. */
    flat_fill(r, N, 0, 32.0, 30 * MS, 20 * SEC, ADMIT_DONE);
    for (size_t i = 8; i < N; i += 16) {
        r[i].ttft_us = FLAT_NEVER;
        r[i].how = ADMIT_CANCELLED;
    }
    struct flat_stats fs = flat_run(&l, &q, r, N, 0, 35 * SEC);
    print_message("  stalled clients: refused %u of %u, decreases %lu, limit %u\n", fs.refused, N,
                  (unsigned long)l.decreases, admit_limit(&l));
    assert_int_equal(l.decreases, 0);
    assert_int_equal(fs.refused, 0);
    admit_queue_free(&q);
    free(r);
}

/* A cancelled request says nothing about the server: however long the
 * client held its slot, with or without a first byte, its release changes
 * neither the limit nor the baseline nor the duration that paces probing. */
static void test_cancelled_release_feeds_nothing(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    admit_queue_init(&q, &c.queue, NULL);
    enum { W = 60 };
    struct flat_req r[W];
    flat_fill(r, W, 0, 20.0, 30 * MS, 500 * MS, ADMIT_DONE);
    flat_run(&l, &q, r, W, 0, 5 * SEC);
    uint32_t lim = admit_limit(&l);
    double base = l.baseline_us, dur = l.dur_ema_us;
    uint64_t dec = l.decreases;
    assert_true(base > 0.0 && dur > 0.0);
    /* Eight cancelled after 60 s of streaming, four before their first
     * byte (gone within one baseline, before they could look late). */
    struct admit_ticket t[12];
    uint64_t now = 6 * SEC;
    for (int i = 0; i < 12; i++)
        assert_int_equal(admit_acquire(&l, now, &t[i]), RP_OK);
    now += 30 * MS;
    for (int i = 0; i < 8; i++)
        admit_first_byte(&l, &t[i], now);
    for (int i = 8; i < 12; i++)
        admit_release(&l, &t[i], now, ADMIT_CANCELLED);
    for (int s = 0; s < 600; s++) {
        now += 100 * MS;
        admit_limiter_tick(&l, now);
    }
    for (int i = 0; i < 8; i++)
        admit_release(&l, &t[i], now, ADMIT_CANCELLED);
    admit_limiter_tick(&l, now + 100 * MS);
    assert_true(admit_limit(&l) >= lim);
    assert_int_equal(l.decreases, dec);
    assert_true(l.baseline_us == base);
    assert_true(l.dur_ema_us == dur);
    admit_queue_free(&q);
}

/* After the server hung for a while (requests dispatched, no first byte,
 * ended by the client after 20 s), the limit has come down to its minimum.
 * Once the server answers normally again it must grow back at the pace of
 * first bytes, even though the last streams lasted 20 s: no permanent
 * collapse, and the minimum still lets traffic through meanwhile. */
static void test_recovers_after_failures(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    admit_queue_init(&q, &c.queue, NULL);
    enum { W = 30, S = 20, N = 300 };
    struct flat_req *r = rp_xcalloc(W + S + N, sizeof *r);
    /* 20 s streams at 1/s: the mean duration is 20 s. */
    flat_fill(r, W, 0, 1.0, 30 * MS, 20 * SEC, ADMIT_DONE);
    flat_run(&l, &q, r, W, 0, 55 * SEC);
    /* The server hangs: 20 requests get no first byte; 20 s later their
     * clients give up. */
    flat_fill(r + W, S, 55 * SEC, 20.0, FLAT_NEVER, 20 * SEC, ADMIT_CANCELLED);
    flat_run(&l, &q, r + W, S, 55 * SEC, 77 * SEC);
    uint32_t low = admit_limit(&l);
    assert_true(l.decreases > 0);
    /* Healthy again: 300 streams of 20 s at 30/s. */
    flat_fill(r + W + S, N, 77 * SEC, 30.0, 30 * MS, 20 * SEC, ADMIT_DONE);
    struct flat_stats fs = flat_run(&l, &q, r + W + S, N, 77 * SEC, 110 * SEC);
    print_message("  after a hang: limit %u -> %u, refused %u of %u, max in flight %u\n", low, admit_limit(&l),
                  fs.refused, N, fs.max_inflight);
    assert_true(fs.refused <= N / 10);
    assert_true(fs.max_inflight >= N - N / 10);
    admit_queue_free(&q);
    free(r);
}

/* ---- the simulated model server ------------------------------------------------ */

enum ev_type { EV_ARRIVE, EV_FIRST, EV_DONE, EV_TICK };

struct ev {
    uint64_t t;
    int type;
    int req;
};

struct sim_req {
    struct admit_waiter w;
    struct admit_ticket tk;
    uint64_t arrive, dispatched, first;
    uint32_t prefill_us, decode_us;
    int state; /* 0 new, 1 queued, 2 upstream-queued, 3 running, 4 done, 5 refused */
    uint64_t tenant;
};

struct sim {
    /* model server */
    uint32_t slots;
    uint32_t running;
    int *fifo;
    size_t fifo_head, fifo_tail, fifo_cap;
    /* gateway */
    struct admit_limiter lim;
    struct admit_queue q;
    struct admit_driver drv;
    /* events */
    struct ev *heap;
    size_t nheap, heap_cap;
    struct sim_req *reqs;
    size_t nreqs, reqs_cap;
    /* load */
    double rate; /* arrivals per second */
    uint64_t end;
    uint64_t change_at; /* slots halve at this time (0 = never) */
    /* results */
    uint64_t served, ok_slo, refused, completed_after_warm;
    uint64_t slo_us, warm_us;
    double *ttft, *qwait, *up;
    size_t nttft;
    uint64_t standing_ticks, ticks;
    uint32_t clients;     /* > 0: that many closed-loop clients instead of Poisson arrivals */
    uint64_t finished;    /* requests completed or refused (closed loop: clients free) */
    double srv_queue_sum; /* server FIFO length, sampled per tick after warm-up */
    uint64_t srv_queue_n;
    bool abusive; /* tenant 0 sends 10 shares, tenants 1..4 `normal` each */
    double normal;
    uint64_t t_arrived[5], t_served[5], t_refused[5][ADMIT_NUM_REASONS];
    /* limit trace, sampled every 10ms */
    uint32_t trace[20000];
    size_t ntrace;
};

static void heap_push(struct sim *s, uint64_t t, int type, int req)
{
    if (s->nheap == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 1024;
        s->heap = rp_xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->nheap++;
    struct ev e = {t, type, req};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        /* ties: keep insertion-independent order by type then req */
        if (s->heap[p].t < e.t || (s->heap[p].t == e.t && s->heap[p].type <= e.type))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static struct ev heap_pop(struct sim *s)
{
    struct ev top = s->heap[0];
    struct ev last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        struct ev *mv = &last;
        if (l < s->nheap && (s->heap[l].t < mv->t || (s->heap[l].t == mv->t && s->heap[l].type < mv->type))) {
            m = l;
            mv = &s->heap[l];
        }
        if (r < s->nheap && (s->heap[r].t < mv->t || (s->heap[r].t == mv->t && s->heap[r].type < mv->type)))
            m = r;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static double exp_rand(double mean)
{
    double u = rp_rand01();
    return -mean * log(1.0 - u);
}

/* Server side: start a request now (it holds a slot). */
static void srv_start(struct sim *s, int i, uint64_t now)
{
    struct sim_req *r = &s->reqs[i];
    s->running++;
    r->state = 3;
    /* Batching slows every sequence a little as the batch fills. */
    double slow = 1.0 + 0.2 * (double)s->running / (double)s->slots;
    heap_push(s, now + (uint64_t)(r->prefill_us * slow), EV_FIRST, i);
    heap_push(s, now + (uint64_t)((r->prefill_us + r->decode_us) * slow), EV_DONE, i);
}

static void srv_submit(struct sim *s, int i, uint64_t now)
{
    if (s->running < s->slots) {
        srv_start(s, i, now);
        return;
    }
    s->reqs[i].state = 2;
    if (s->fifo_tail == s->fifo_cap) {
        s->fifo_cap = s->fifo_cap ? 2 * s->fifo_cap : 1024;
        s->fifo = rp_xrealloc(s->fifo, s->fifo_cap * sizeof *s->fifo);
    }
    s->fifo[s->fifo_tail++] = i;
}

static void gw_dispatch(struct sim *s, int i, uint64_t now)
{
    struct sim_req *r = &s->reqs[i];
    r->dispatched = now;
    srv_submit(s, i, now);
}

static void gw_refuse(struct sim *s, struct admit_waiter *w, enum admit_reason why)
{
    struct sim_req *r = (struct sim_req *)((char *)w - offsetof(struct sim_req, w));
    if (s->abusive && r->arrive >= s->warm_us)
        s->t_refused[r->tenant][why]++;
    r->state = 5;
    s->refused++;
    s->finished++;
}

/* The real queue driver, without an event loop. */
static bool gw_room(void *arg)
{
    struct sim *s = arg;
    return admit_free_slots(&s->lim) > 0;
}

static int gw_admit(void *arg, struct admit_waiter *w, uint64_t now)
{
    struct sim *s = arg;
    struct sim_req *r = (struct sim_req *)((char *)w - offsetof(struct sim_req, w));
    assert_int_equal(admit_acquire(&s->lim, now, &r->tk), RP_OK);
    gw_dispatch(s, (int)(r - s->reqs), now);
    return RP_OK;
}

static void gw_refuse_cb(void *arg, struct admit_waiter *w, enum admit_reason why)
{
    gw_refuse(arg, w, why);
}

static const struct admit_driver_ops gw_ops = {gw_room, gw_admit, gw_refuse_cb};

static void gw_pump(struct sim *s, uint64_t now)
{
    admit_driver_pump(&s->drv, now);
}

static int new_req(struct sim *s, uint64_t now)
{
    if (s->nreqs == s->reqs_cap) {
        s->reqs_cap = s->reqs_cap ? 2 * s->reqs_cap : 4096;
        /* Waiters and tickets are linked by address: never move live ones.
         * The simulation sizes the array up front instead (see sim_run). */
        fail_msg("request array too small");
    }
    int i = (int)s->nreqs++;
    struct sim_req *r = &s->reqs[i];
    memset(r, 0, sizeof *r);
    r->arrive = now;
    /* Prompt 200..2000 tokens: prefill 20ms + 40us/token; output 50..400
     * tokens at 8ms each (0.4..3.2s). */
    uint32_t prompt = 200 + (uint32_t)(rp_rand64() % 1800);
    uint32_t out = 50 + (uint32_t)(rp_rand64() % 350);
    r->prefill_us = 20000 + 40 * prompt;
    r->decode_us = 8000 * out;
    if (s->clients) {
        /* Closed loop: short chats (16 tokens at 10ms), so a request waiting
         * inside the server waits about as long as one is served. */
        r->decode_us = 10000 * 16;
    }
    if (s->abusive)
        r->tenant = rp_rand01() < 10.0 / (10.0 + 4.0 * s->normal) ? 0 : 1 + rp_rand64() % 4;
    else
        r->tenant = rp_rand64() % 8;
    if (s->abusive && now >= s->warm_us && now + 6 * SEC <= s->end)
        s->t_arrived[r->tenant]++;
    return i;
}

/* A request arrives at the gateway: dispatched if a slot is free and nobody
 * waits, else queued (or refused). */
static void sim_arrive(struct sim *s, uint64_t now)
{
    int i = new_req(s, now);
    struct sim_req *r = &s->reqs[i];
    if (admit_queue_len(&s->q) == 0 && admit_acquire(&s->lim, now, &r->tk) == RP_OK) {
        gw_dispatch(s, i, now);
        return;
    }
    struct admit_waiter *ev = NULL;
    if (admit_enqueue(&s->q, &r->w, r->tenant, ADMIT_INTERACTIVE, 1, 1, now, &ev) == RP_OK)
        r->state = 1;
    else {
        r->state = 5;
        s->refused++;
        s->finished++;
        if (s->abusive && now >= s->warm_us)
            s->t_refused[r->tenant][ADMIT_R_FULL]++;
    }
    if (ev)
        gw_refuse(s, ev, ADMIT_R_EVICTED);
    gw_pump(s, now);
}

/* Closed loop: every client without a request in flight sends its next. */
static void sim_clients(struct sim *s, uint64_t now)
{
    while (s->clients && s->nreqs - s->finished < s->clients)
        sim_arrive(s, now);
}

struct sim_result {
    double goodput; /* fraction of capacity served within the SLO */
    double p50_ttft_ms, p99_ttft_ms;
    double p50_qwait_ms, p99_qwait_ms, p99_up_ms;
    double standing_frac;
    double utilization;    /* busy slots / slots over the measurement window */
    double mean_limit;     /* over the measurement window */
    double mean_srv_queue; /* requests waiting inside the server, same window */
    double settle_s;       /* after the capacity change; -1 if none / never */
    uint32_t min_limit_after_warm, max_limit_after_warm;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Goodput counts requests whose first token came within this SLO (client
 * view: queue wait included); loadgen's default give-up is longer. */
#define SIM_SLO_MS 5000.0

/* Mean service time of the fake server (prefill + decode, no slowdown). */
#define SIM_MEAN_SERVICE_US ((20000.0 + 40.0 * 1100.0 + 8000.0 * 225.0) * 1.2)

/* clients > 0: closed loop from t=0 (load is ignored) and the measurement
 * window starts at 3 s instead of 10 s. */
static struct sim_result sim_run2(uint32_t slots, double load, uint64_t dur, uint64_t change_at, uint64_t seed,
                                  const struct admit_conf *conf, double normal, double share_served[5],
                                  uint32_t clients)
{
    struct sim *s = rp_xcalloc(1, sizeof *s);
    s->abusive = normal > 0;
    s->normal = normal;
    struct sim_result res = {0};
    rp_rand_seed(seed);
    s->slots = slots;
    double capacity = slots * 1e6 / SIM_MEAN_SERVICE_US; /* requests/s */
    s->rate = load * capacity;
    s->end = dur;
    s->change_at = change_at;
    s->warm_us = clients ? 3 * SEC : 10 * SEC;
    s->clients = clients;
    s->slo_us = 0;
    s->reqs_cap = (size_t)(s->rate * (double)dur / 1e6 * 1.2) + 1000;
    if (clients) /* a refused client asks again at once: room for refusals too */
        s->reqs_cap = (size_t)clients * 200 * (size_t)(dur / SEC) + 1000;
    s->reqs = rp_xcalloc(s->reqs_cap, sizeof *s->reqs);
    s->ttft = rp_xcalloc(s->reqs_cap, sizeof *s->ttft);
    s->qwait = rp_xcalloc(s->reqs_cap, sizeof *s->ttft);
    s->up = rp_xcalloc(s->reqs_cap, sizeof *s->ttft);
    admit_limiter_init(&s->lim, &conf->limiter, NULL, 0);
    admit_queue_init(&s->q, &conf->queue, NULL);
    admit_driver_init(&s->drv, NULL, &s->q, &gw_ops, s);

    if (clients)
        sim_clients(s, 0);
    else
        heap_push(s, (uint64_t)exp_rand(1e6 / s->rate), EV_ARRIVE, -1);
    heap_push(s, 10 * MS, EV_TICK, -1);
    double limit_sum = 0;
    size_t limit_n = 0;
    res.min_limit_after_warm = UINT32_MAX;
    bool changed = false;
    uint64_t last_t = 0;
    double busy_int = 0;
    while (s->nheap) {
        struct ev e = heap_pop(s);
        uint64_t now = e.t;
        if (now > s->end)
            break;
        /* Server utilization: busy slots integrated over the window. */
        {
            uint64_t w0 = s->warm_us, w1 = change_at ? change_at : dur;
            uint64_t a = RP_MAX(last_t, w0), b = RP_MIN(now, w1);
            if (b > a)
                busy_int += (double)RP_MIN(s->running, s->slots) * (double)(b - a);
            last_t = now;
        }
        if (change_at && !changed && now >= change_at) {
            changed = true;
            s->slots = slots / 2;
        }
        switch (e.type) {
        case EV_ARRIVE:
            sim_arrive(s, now);
            heap_push(s, now + (uint64_t)exp_rand(1e6 / s->rate) + 1, EV_ARRIVE, -1);
            break;
        case EV_FIRST: {
            struct sim_req *r = &s->reqs[e.req];
            r->first = now;
            admit_first_byte(&s->lim, &r->tk, now);
            break;
        }
        case EV_DONE: {
            struct sim_req *r = &s->reqs[e.req];
            r->state = 4;
            s->running--;
            s->finished++;
            admit_release(&s->lim, &r->tk, now, ADMIT_DONE);
            while (s->running < s->slots && s->fifo_head < s->fifo_tail)
                srv_start(s, s->fifo[s->fifo_head++], now);
            if (s->abusive && r->arrive >= s->warm_us && r->arrive + 6 * SEC <= s->end &&
                (double)(r->first - r->arrive) <= SIM_SLO_MS * 1000.0)
                s->t_served[r->tenant]++;
            if (r->arrive >= s->warm_us) {
                s->qwait[s->nttft] = (double)(r->dispatched - r->arrive);
                s->up[s->nttft] = (double)(r->first - r->dispatched);
                s->ttft[s->nttft++] = (double)(r->first - r->arrive);
                s->completed_after_warm++;
            }
            gw_pump(s, now);
            sim_clients(s, now);
            break;
        }
        case EV_TICK: {
            admit_limiter_tick(&s->lim, now);
            admit_driver_expire(&s->drv, now);
            gw_pump(s, now);
            sim_clients(s, now);
            uint32_t lim = admit_limit(&s->lim);
            s->ticks++;
            s->standing_ticks += admit_standing(&s->q, now);
            if (s->ntrace < RP_ARRAY_LEN(s->trace))
                s->trace[s->ntrace++] = lim;
            if (now >= s->warm_us && (!change_at || now < change_at)) {
                limit_sum += lim;
                limit_n++;
                if (lim < res.min_limit_after_warm)
                    res.min_limit_after_warm = lim;
                if (lim > res.max_limit_after_warm)
                    res.max_limit_after_warm = lim;
                s->srv_queue_sum += (double)(s->fifo_tail - s->fifo_head);
                s->srv_queue_n++;
            }
            heap_push(s, now + 10 * MS, EV_TICK, -1);
            break;
        }
        }
    }
    if (getenv("SIM_TRACE")) {
        for (size_t i = 0; i < s->ntrace; i += 50)
            fprintf(stderr, "%zu:%u ", i / 10, s->trace[i]);
        fprintf(stderr, "\n");
    }
    res.mean_limit = limit_n ? limit_sum / (double)limit_n : 0;
    res.mean_srv_queue = s->srv_queue_n ? s->srv_queue_sum / (double)s->srv_queue_n : 0;
    res.utilization = busy_int / ((double)slots * (double)((change_at ? change_at : dur) - s->warm_us));
    /* Settling: the first time after the change from which the limit is
     * within one of N/2 and, for the next 5 s, never below N/2 - 1 nor
     * above N/2 + max(2, N/16) (the occasional probe for more capacity is
     * part of the steady state). */
    res.settle_s = -1;
    if (change_at) {
        uint32_t target = slots / 2;
        uint32_t hi = target + RP_MAX(2u, target / 8);
        size_t from = (size_t)(change_at / (10 * MS));
        size_t to = RP_MIN(s->ntrace, from + 800);
        for (size_t i = from; i + 500 <= to; i++) {
            if (s->trace[i] + 1 < target || s->trace[i] > target + 1)
                continue;
            bool ok = true;
            for (size_t j = i; j < i + 500; j++)
                if (s->trace[j] + 1 < target || s->trace[j] > hi) {
                    ok = false;
                    break;
                }
            if (ok) {
                res.settle_s = (double)(i - from) * 0.01;
                break;
            }
        }
    }
    /* Goodput: completed (after warm-up) requests within an SLO of twice
     * the unloaded p99 first-token time, per second, over capacity. */
    double unloaded_p99 = SIM_SLO_MS * 1000.0;
    uint64_t good = 0;
    for (size_t i = 0; i < s->nttft; i++)
        if (s->ttft[i] <= unloaded_p99)
            good++;
    double span_s = (double)((change_at ? change_at : dur) - s->warm_us) / 1e6;
    /* Count only requests that arrived before the change for the rate. */
    if (change_at) {
        good = 0;
        size_t k = 0;
        for (size_t i = 0; i < s->nreqs; i++) {
            struct sim_req *r = &s->reqs[i];
            if (r->state == 4 && r->arrive >= s->warm_us && r->arrive < change_at) {
                k++;
                if ((double)(r->first - r->arrive) <= unloaded_p99)
                    good++;
            }
        }
        (void)k;
    }
    res.goodput = (double)good / span_s / capacity;
    qsort(s->ttft, s->nttft, sizeof *s->ttft, cmp_double);
    if (s->nttft) {
        res.p50_ttft_ms = s->ttft[s->nttft / 2] / 1000.0;
        res.p99_ttft_ms = s->ttft[(size_t)((double)s->nttft * 0.99)] / 1000.0;
    }
    qsort(s->qwait, s->nttft, sizeof *s->ttft, cmp_double);
    qsort(s->up, s->nttft, sizeof *s->ttft, cmp_double);
    if (s->nttft) {
        res.p50_qwait_ms = s->qwait[s->nttft / 2] / 1000.0;
        res.p99_qwait_ms = s->qwait[(size_t)((double)s->nttft * 0.99)] / 1000.0;
        res.p99_up_ms = s->up[(size_t)((double)s->nttft * 0.99)] / 1000.0;
    }
    res.standing_frac = s->ticks ? (double)s->standing_ticks / (double)s->ticks : 0;
    free(s->qwait);
    free(s->up);
    if (getenv("SIM_TRACE") && s->abusive)
        for (int i = 0; i < 5; i++)
            fprintf(stderr, "tenant %d arrived %lu served %lu full %lu evicted %lu deadline %lu shed %lu\n", i,
                    (unsigned long)s->t_arrived[i], (unsigned long)s->t_served[i],
                    (unsigned long)s->t_refused[i][ADMIT_R_FULL], (unsigned long)s->t_refused[i][ADMIT_R_EVICTED],
                    (unsigned long)s->t_refused[i][ADMIT_R_DEADLINE], (unsigned long)s->t_refused[i][ADMIT_R_SHED]);
    if (share_served)
        for (int i = 0; i < 5; i++)
            share_served[i] = s->t_arrived[i] ? (double)s->t_served[i] / (double)s->t_arrived[i] : 0;
    admit_queue_free(&s->q);
    free(s->heap);
    free(s->fifo);
    free(s->reqs);
    free(s->ttft);
    free(s);
    return res;
}

static struct sim_result sim_run(uint32_t slots, double load, uint64_t dur, uint64_t change_at, uint64_t seed,
                                 const struct admit_conf *conf)
{
    return sim_run2(slots, load, dur, change_at, seed, conf, 0, NULL, 0);
}

static void print_result(const char *what, uint32_t slots, double load, const struct sim_result *r)
{
    print_message("  sim %-8s N=%-3u load=%4.1fx  limit mean=%6.2f [%u..%u]  util=%.3f slo5s=%.3f  ttft p50=%6.1fms "
                  "p99=%7.1fms  settle=%.2fs  qwait p50=%.0f p99=%.0f up99=%.0f standing=%.2f\n",
                  what, slots, load, r->mean_limit, r->min_limit_after_warm, r->max_limit_after_warm, r->utilization,
                  r->goodput, r->p50_ttft_ms, r->p99_ttft_ms, r->settle_s, r->p50_qwait_ms, r->p99_qwait_ms,
                  r->p99_up_ms, r->standing_frac);
}

/* Unloaded p99 first-token time of the fake server: the longest prefill
 * with a full batch. */
#define SIM_UNLOADED_P99_MS ((20.0 + 0.04 * 2000.0) * 1.2)

static void test_sim_converges(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    const uint32_t ns[] = {4, 16, 64};
    const double loads[] = {2.0, 5.0, 10.0};
    int bad = 0;
    for (size_t i = 0; i < RP_ARRAY_LEN(ns); i++)
        for (size_t j = 0; j < RP_ARRAY_LEN(loads); j++) {
            struct sim_result r = sim_run(ns[i], loads[j], 60 * SEC, 0, 1000 + i * 10 + j, &c);
            print_result("steady", ns[i], loads[j], &r);
            /* Near N on average (within one slot or 5%), never collapsing,
             * keeping the server busy; and where a departure interval is
             * shorter than a prefill (N=64 here) the first-token tail inside
             * the server stays near the unloaded p99 (a regression guard at
             * 2.5x; probes above N are what remains in that tail).  With
             * few slots a single probe above N costs a departure interval,
             * which is longer than a prefill: reported, not asserted. */
            double tol = RP_MAX(1.0, 0.05 * ns[i]);
            bad += !(fabs(r.mean_limit - ns[i]) <= tol);
            bad += !(r.min_limit_after_warm >= ns[i] / 2);
            bad += !(r.utilization >= 0.95);
            if (ns[i] >= 64)
                bad += !(r.p99_up_ms <= 2.5 * SIM_UNLOADED_P99_MS);
        }
    assert_int_equal(bad, 0);
}

/* Started while already overloaded: closed-loop clients, three times as
 * many as the server's slots and more than the initial limit (8), from the
 * very first moment, with short chats.  Every request after the first few
 * waits inside the server, so the medians never show an empty server; the
 * limiter must still find N and keep the server's own queue (almost) empty
 * instead of learning the queue as its baseline and growing the limit. */
static void test_sim_cold_start_overloaded(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    const uint32_t ns[] = {2, 4};
    int bad = 0;
    for (size_t i = 0; i < RP_ARRAY_LEN(ns); i++)
        for (uint64_t seed = 0; seed < 10; seed++) {
            struct sim_result r = sim_run2(ns[i], 0, 10 * SEC, 0, 500 + i * 100 + seed, &c, 0, NULL, 3 * ns[i]);
            print_result("cold", ns[i], 0, &r);
            print_message("    server queue mean=%.2f\n", r.mean_srv_queue);
            /* A baseline that learned the queue leaves the limit at 8 (N=2)
             * or 18 (N=4) with 4 or 8 requests queued in the server.  With
             * short chats a probe above N is a large share of the time:
             * about N + 1 is the steady state here. */
            bad += !(r.mean_limit >= ns[i] - 1.0 && r.mean_limit <= ns[i] + 2.0);
            bad += !(r.mean_srv_queue <= 2.0);
        }
    assert_int_equal(bad, 0);
}

static void test_sim_capacity_halves(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    const uint32_t ns[] = {8, 16, 32, 64};
    int bad = 0;
    for (size_t i = 0; i < RP_ARRAY_LEN(ns); i++) {
        struct sim_result r = sim_run(ns[i], 3.0, 40 * SEC, 30 * SEC, 77 + i, &c);
        print_result("halve", ns[i], 3.0, &r);
        bad += !(r.settle_s >= 0 && r.settle_s <= 2.0);
    }
    assert_int_equal(bad, 0);
}

/* One tenant at 10x its fair share (capacity / 5) beside four tenants at
 * 0.8 of theirs: each of the four keeps >= 90% of its demand while the
 * server stays busy.  At exactly one share each the four are critically
 * loaded in their own virtual queue (Poisson arrivals at the service rate
 * they are entitled to); that case is reported, not asserted. */
static void test_sim_abusive_tenant(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    const uint32_t ns[] = {16, 64};
    const double normal[] = {0.8, 1.0};
    int bad = 0;
    for (size_t i = 0; i < RP_ARRAY_LEN(ns); i++)
        for (size_t k = 0; k < RP_ARRAY_LEN(normal); k++) {
            double share[5];
            double load = (10.0 + 4.0 * normal[k]) / 5.0;
            struct sim_result r = sim_run2(ns[i], load, 60 * SEC, 0, 300 + i, &c, normal[k], share, 0);
            print_result("abusive", ns[i], load, &r);
            print_message("    normal tenants at %.1f share: served/demand abusive %.3f, normal %.3f %.3f %.3f %.3f\n",
                          normal[k], share[0], share[1], share[2], share[3], share[4]);
            if (normal[k] < 1.0)
                for (int t = 1; t < 5; t++)
                    bad += !(share[t] >= 0.90);
            bad += !(r.utilization >= 0.95);
        }
    assert_int_equal(bad, 0);
}

/* ---- queue unit cases ---------------------------------------------------------- */

static struct admit_queue_conf qconf(uint32_t max_len)
{
    struct admit_conf c = default_conf();
    c.queue.max_length = max_len;
    return c.queue;
}

static void test_priority_order(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(16);
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter w[6];
    struct admit_waiter *ev;
    enum admit_class order[6] = {ADMIT_BATCH, ADMIT_INTERACTIVE, ADMIT_CRITICAL,
                                 ADMIT_BATCH, ADMIT_CRITICAL,    ADMIT_INTERACTIVE};
    for (int i = 0; i < 6; i++)
        assert_int_equal(admit_enqueue(&q, &w[i], 1, order[i], 1, 1, (uint64_t)i, &ev), RP_OK);
    struct admit_waiter *expect[6] = {&w[2], &w[4], &w[1], &w[5], &w[0], &w[3]};
    for (int i = 0; i < 6; i++)
        assert_ptr_equal(admit_dequeue(&q, 10), expect[i]);
    assert_null(admit_dequeue(&q, 10));
    assert_int_equal(admit_queue_len(&q), 0);
    admit_queue_free(&q);
}

/* Tenant A bursts 10x tenant B's requests; B still gets every other turn. */
static void test_drr_fairness(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(256);
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter a[100], b[10];
    for (int i = 0; i < 100; i++)
        assert_int_equal(admit_enqueue(&q, &a[i], 0xA, ADMIT_INTERACTIVE, 1, 1, 1, NULL), RP_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(admit_enqueue(&q, &b[i], 0xB, ADMIT_INTERACTIVE, 1, 1, 2, NULL), RP_OK);
    int got_b = 0;
    for (int i = 0; i < 20; i++) {
        struct admit_waiter *w = admit_dequeue(&q, 3);
        if (w >= b && w < b + 10)
            got_b++;
    }
    assert_int_equal(got_b, 10);
    /* A's own order is preserved (FIFO within a tenant). */
    assert_ptr_equal(admit_dequeue(&q, 4), &a[10]);
    admit_queue_free(&q);

    /* Weights: weight 3 gets three turns for one. */
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter c3[30], c1[30];
    for (int i = 0; i < 30; i++) {
        admit_enqueue(&q, &c3[i], 3, ADMIT_BATCH, 1, 3, 1, NULL);
        admit_enqueue(&q, &c1[i], 1, ADMIT_BATCH, 1, 1, 1, NULL);
    }
    int n3 = 0;
    for (int i = 0; i < 40; i++) {
        struct admit_waiter *w = admit_dequeue(&q, 2);
        if (w >= c3 && w < c3 + 30)
            n3++;
    }
    assert_int_equal(n3, 30);
    admit_queue_free(&q);
}

static void test_deadline_expiry(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(16);
    qc.max_wait_us[ADMIT_INTERACTIVE] = 1 * SEC;
    qc.max_wait_us[ADMIT_BATCH] = 300 * MS;
    qc.codel_target_us = 10 * SEC; /* keep the standing mode out of this test */
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter w1, w2, wb;
    enum admit_reason why;
    admit_enqueue(&q, &w1, 1, ADMIT_INTERACTIVE, 1, 1, 0, NULL);
    admit_enqueue(&q, &w2, 2, ADMIT_INTERACTIVE, 1, 1, 500 * MS, NULL);
    admit_enqueue(&q, &wb, 3, ADMIT_BATCH, 1, 1, 100 * MS, NULL);
    assert_int_equal(admit_next_timer(&q, 0), 400 * MS);
    assert_null(admit_expire(&q, 399 * MS, &why));
    assert_ptr_equal(admit_expire(&q, 400 * MS, &why), &wb);
    assert_int_equal(why, ADMIT_R_DEADLINE);
    assert_int_equal(admit_next_timer(&q, 400 * MS), 1 * SEC);
    assert_null(admit_expire(&q, 999 * MS, &why));
    assert_ptr_equal(admit_expire(&q, 1 * SEC, &why), &w1);
    assert_null(admit_expire(&q, 1 * SEC, &why));
    assert_int_equal(admit_next_timer(&q, 1 * SEC), 1500 * MS);
    assert_ptr_equal(admit_expire(&q, 2 * SEC, &why), &w2);
    assert_int_equal(admit_next_timer(&q, 2 * SEC), 0);
    assert_int_equal(q.dropped[ADMIT_R_DEADLINE][ADMIT_INTERACTIVE], 2);
    admit_queue_free(&q);
}

static void test_eviction_when_full(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(3);
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter b1, b2, i1, c1, b3, i2, *ev;
    admit_enqueue(&q, &b1, 1, ADMIT_BATCH, 1, 1, 1, &ev);
    admit_enqueue(&q, &b2, 2, ADMIT_BATCH, 1, 1, 2, &ev);
    admit_enqueue(&q, &i1, 2, ADMIT_INTERACTIVE, 1, 1, 3, &ev);
    assert_null(ev);
    /* Full: a batch arrival is refused, nobody displaced. */
    assert_int_equal(admit_enqueue(&q, &b3, 3, ADMIT_BATCH, 1, 1, 4, &ev), RP_AGAIN);
    assert_null(ev);
    /* A critical arrival pushes out the newest batch waiter. */
    assert_int_equal(admit_enqueue(&q, &c1, 4, ADMIT_CRITICAL, 1, 1, 5, &ev), RP_OK);
    assert_ptr_equal(ev, &b2);
    assert_false(b2.queued);
    /* An interactive arrival pushes out the remaining batch waiter. */
    assert_int_equal(admit_enqueue(&q, &i2, 5, ADMIT_INTERACTIVE, 1, 1, 6, &ev), RP_OK);
    assert_ptr_equal(ev, &b1);
    assert_int_equal(admit_queue_len(&q), 3);
    assert_int_equal(q.dropped[ADMIT_R_EVICTED][ADMIT_BATCH], 2);
    assert_int_equal(q.dropped[ADMIT_R_FULL][ADMIT_BATCH], 1);
    admit_queue_free(&q);

    /* Same class: a tenant hogging the queue is displaced by a light one,
     * but a tenant cannot displace others to grow its own share. */
    qc = qconf(4);
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter h[4], l1, l2, l3;
    for (int i = 0; i < 4; i++)
        admit_enqueue(&q, &h[i], 0x40, ADMIT_INTERACTIVE, 1, 1, 10 + (uint64_t)i, &ev);
    assert_int_equal(admit_enqueue(&q, &l1, 0x41, ADMIT_INTERACTIVE, 1, 1, 20, &ev), RP_OK);
    assert_ptr_equal(ev, &h[3]);
    assert_int_equal(admit_enqueue(&q, &l2, 0x41, ADMIT_INTERACTIVE, 1, 1, 21, &ev), RP_OK);
    assert_ptr_equal(ev, &h[2]);
    /* Now 2 vs 2: the light tenant may not take more. */
    assert_int_equal(admit_enqueue(&q, &l3, 0x41, ADMIT_INTERACTIVE, 1, 1, 22, &ev), RP_AGAIN);
    admit_queue_free(&q);
}

/* A standing queue switches to LIFO and sheds those that waited longer
 * than the standing wait; once it drains, FIFO comes back. */
static void test_codel_lifo(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(64);
    qc.codel_target_us = 20 * MS;
    qc.codel_interval_us = 100 * MS;
    qc.standing_wait_us = 200 * MS;
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter w[64];
    enum admit_reason why;
    int n = 0;
    /* Arrivals every 10ms, one departure every 40ms: a standing queue. */
    uint64_t now = 0;
    for (; now < 300 * MS; now += 10 * MS) {
        admit_enqueue(&q, &w[n], 7, ADMIT_INTERACTIVE, 1, 1, now, NULL);
        n++;
        if (now % (40 * MS) == 0 && now > 0)
            admit_dequeue(&q, now);
    }
    assert_true(admit_standing(&q, now));
    /* LIFO: the newest waiter is served first. */
    assert_ptr_equal(admit_dequeue(&q, now), &w[n - 1]);
    /* Shedding: everyone older than 200ms goes, oldest first. */
    struct admit_waiter *x;
    int shed = 0;
    uint64_t prev_enq = 0;
    while ((x = admit_expire(&q, now, &why))) {
        assert_int_equal(why, ADMIT_R_SHED);
        assert_true(now - x->enq_us >= 200 * MS);
        assert_true(x->enq_us >= prev_enq);
        prev_enq = x->enq_us;
        shed++;
    }
    assert_true(shed > 0);
    for (x = q.cls[ADMIT_INTERACTIVE].oldest; x; x = x->cnext)
        assert_true(now - x->enq_us < 200 * MS);
    /* Drain everything: the standing state ends. */
    while (admit_dequeue(&q, now))
        ;
    assert_false(admit_standing(&q, now + 1));
    admit_enqueue(&q, &w[0], 1, ADMIT_INTERACTIVE, 1, 1, now + 2, NULL);
    admit_enqueue(&q, &w[1], 1, ADMIT_INTERACTIVE, 1, 1, now + 3, NULL);
    assert_ptr_equal(admit_dequeue(&q, now + 4), &w[0]); /* FIFO again */
    assert_true(q.standing_entries >= 1);
    admit_queue_free(&q);
}

static void test_cancel_o1(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(8);
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    struct admit_waiter w[8];
    for (int i = 0; i < 8; i++)
        admit_enqueue(&q, &w[i], (uint64_t)(i % 4), (enum admit_class)(i % 3), 1, 1, (uint64_t)i, NULL);
    admit_cancel(&q, &w[3], 10);
    admit_cancel(&q, &w[3], 10); /* second cancel is a no-op */
    assert_int_equal(admit_queue_len(&q), 7);
    assert_false(w[3].queued);
    for (int i = 0; i < 8; i++)
        admit_cancel(&q, &w[i], 11);
    assert_int_equal(admit_queue_len(&q), 0);
    assert_null(admit_dequeue(&q, 12));
    /* Every flow went back to the pool and the hash is empty. */
    size_t free_flows = 0;
    for (struct admit_flow *f = q.flow_free; f; f = f->rnext)
        free_flows++;
    assert_int_equal(free_flows, 8);
    for (size_t i = 0; i <= q.hmask; i++)
        assert_null(q.htab[i]);
    for (int c = 0; c < ADMIT_NUM_CLASSES; c++)
        assert_null(q.cls[c].cur);
    assert_int_equal(
        q.dropped[ADMIT_R_CANCELLED][0] + q.dropped[ADMIT_R_CANCELLED][1] + q.dropped[ADMIT_R_CANCELLED][2], 8);
    /* Full again after churn: the pool never runs dry. */
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 8; i++)
            assert_int_equal(admit_enqueue(&q, &w[i], (uint64_t)(round * 8 + i), ADMIT_BATCH, 1, 1, 20, NULL), RP_OK);
        for (int i = 7; i >= 0; i--)
            admit_cancel(&q, &w[i], 21);
    }
    admit_queue_free(&q);
}

static void test_retry_after(void **state)
{
    (void)state;
    struct admit_queue_conf qc = qconf(1024);
    qc.max_wait_us[ADMIT_INTERACTIVE] = 5 * SEC;
    qc.codel_target_us = 100 * SEC;
    struct admit_queue q;
    admit_queue_init(&q, &qc, NULL);
    /* Nothing measured yet: the configured wait. */
    assert_int_equal(admit_retry_after(&q, 10), 5);
    static struct admit_waiter w[1024];
    uint64_t now = 0;
    for (int i = 0; i < 1000; i++)
        admit_enqueue(&q, &w[i], (uint64_t)i, ADMIT_INTERACTIVE, 1, 1, now, NULL);
    /* 10 departures per second for 5 s. */
    for (int i = 0; i < 50; i++) {
        now += 100 * MS;
        assert_non_null(admit_dequeue(&q, now));
    }
    double r = q.drain_rate;
    assert_true(r > 9.0 && r < 11.0);
    assert_in_range(admit_retry_after(&q, 49), 5, 6);
    assert_int_equal(admit_retry_after(&q, 0), 1);
    assert_int_equal(admit_retry_after(&q, 5000), 60);
    admit_queue_free(&q);
}

/* ---- slots and the queue driver -------------------------------------------------- */

static void test_slot_counts(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    c.limiter.mode = ADMIT_MODE_STATIC;
    c.limiter.max_concurrency = 2;
    struct admit_limiter l;
    admit_limiter_init(&l, &c.limiter, NULL, 0);
    unsigned srv = 0;
    uint64_t total = 0;
    struct admit_slot a = {0}, b = {0}, x = {0};
    assert_false(admit_slot_held(&a));
    assert_int_equal(admit_slot_take(&a, &l, &srv, &total, 0), RP_OK);
    assert_int_equal(admit_slot_take(&b, &l, &srv, &total, 0), RP_OK);
    assert_true(admit_slot_held(&a));
    assert_int_equal(srv, 2);
    assert_int_equal(total, 2);
    /* At the limit: nothing is counted. */
    assert_int_equal(admit_slot_take(&x, &l, &srv, &total, 0), RP_AGAIN);
    assert_false(admit_slot_held(&x));
    assert_int_equal(srv, 2);
    assert_int_equal(l.inflight, 2);
    admit_slot_give(&a, 10 * MS, ADMIT_DONE);
    assert_false(admit_slot_held(&a));
    assert_int_equal(srv, 1);
    assert_int_equal(total, 1);
    /* Giving twice is harmless: every ending may call it. */
    admit_slot_give(&a, 10 * MS, ADMIT_DONE);
    assert_int_equal(srv, 1);
    assert_int_equal(l.inflight, 1);
    admit_slot_first_byte(&b, 5 * MS);
    assert_int_equal(l.pending, 0);
    admit_slot_give(&b, 20 * MS, ADMIT_DONE);
    assert_int_equal(srv, 0);
    assert_int_equal(total, 0);
    assert_int_equal(l.inflight, 0);
    /* Counts are optional. */
    assert_int_equal(admit_slot_take(&x, &l, NULL, NULL, 0), RP_OK);
    admit_slot_give(&x, 1, ADMIT_CANCELLED);
    assert_int_equal(l.inflight, 0);
}

struct loop_gw {
    struct ev_loop *loop;
    struct admit_limiter lim;
    struct admit_queue q;
    struct admit_driver d;
    struct admit_waiter w[3];
    struct admit_slot slot[3];
    int admitted, refused[ADMIT_NUM_REASONS];
};

static bool loop_room(void *arg)
{
    struct loop_gw *g = arg;
    return admit_free_slots(&g->lim) > 0;
}

static int loop_admit(void *arg, struct admit_waiter *w, uint64_t now)
{
    struct loop_gw *g = arg;
    g->admitted++;
    return admit_slot_take(&g->slot[w - g->w], &g->lim, NULL, NULL, now);
}

static void loop_refuse(void *arg, struct admit_waiter *w, enum admit_reason why)
{
    struct loop_gw *g = arg;
    (void)w;
    g->refused[why]++;
}

static void loop_stop(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    ev_stop(loop);
}

/* On a real loop: the pump runs from its zero-delay timer (not from the
 * call that scheduled it), and the expiry timer refuses the waiters that
 * no slot reached by their deadline. */
static void test_driver_on_loop(void **state)
{
    (void)state;
    static const struct admit_driver_ops ops = {loop_room, loop_admit, loop_refuse};
    struct loop_gw *g = rp_xcalloc(1, sizeof *g);
    g->loop = ev_create(64);
    assert_non_null(g->loop);
    struct admit_conf c = default_conf();
    c.limiter.mode = ADMIT_MODE_STATIC;
    c.limiter.max_concurrency = 1;
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
        c.queue.max_wait_us[i] = 40 * MS;
    admit_limiter_init(&g->lim, &c.limiter, NULL, 0);
    admit_queue_init(&g->q, &c.queue, NULL);
    admit_driver_init(&g->d, g->loop, &g->q, &ops, g);
    uint64_t now = ev_update_now(g->loop);
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit_enqueue(&g->q, &g->w[i], (uint64_t)i, ADMIT_INTERACTIVE, 1, 1, now, NULL), RP_OK);
    admit_driver_arm(&g->d);
    admit_driver_schedule(&g->d);
    admit_driver_schedule(&g->d);
    assert_int_equal(g->admitted, 0);
    assert_int_equal(g->d.pumps, 0);
    struct ev_timer stop;
    ev_timer_init(&stop, loop_stop, NULL);
    ev_timer_arm(g->loop, &stop, 150 * MS);
    assert_int_equal(ev_run(g->loop), RP_OK);
    assert_int_equal(g->d.pumps, 1);
    assert_int_equal(g->admitted, 1);
    assert_int_equal(g->refused[ADMIT_R_DEADLINE], 2);
    assert_int_equal(admit_queue_len(&g->q), 0);
    assert_false(ev_timer_armed(&g->d.expire_timer));
    /* Nothing waits: scheduling arms nothing. */
    admit_driver_schedule(&g->d);
    assert_false(ev_timer_armed(&g->d.pump_timer));
    admit_driver_stop(&g->d);
    admit_queue_free(&g->q);
    ev_destroy(g->loop);
    free(g);
}

/* ---- configuration ---------------------------------------------------------------- */

static int parse_yaml(const char *yaml, struct admit_conf *c, char *err, size_t errcap)
{
    struct conf_doc *doc = conf_load_string("t.yaml", yaml, strlen(yaml));
    admit_conf_default(c);
    admit_conf_parse(doc, conf_get(conf_root(doc), "overload"), c);
    int n = (int)conf_error_count(doc);
    if (err && errcap) {
        err[0] = 0;
        if (n)
            rp_snprintf(err, errcap, "%s", conf_error_at(doc, 0));
    }
    conf_free(doc);
    return n;
}

static void test_conf(void **state)
{
    (void)state;
    struct admit_conf c;
    char err[512];
    assert_int_equal(parse_yaml("overload:\n"
                                "  limiter: {mode: adaptive, initial: 4, min: 2, max: 200, tolerance: 1.0,\n"
                                "            probe_interval: 3s, baseline_window: 30s}\n"
                                "  queue:\n"
                                "    max_length: 50\n"
                                "    max_wait: 5s\n"
                                "    codel: {target: 10ms, interval: 200ms}\n"
                                "    standing_wait: auto\n"
                                "    lifo: false\n"
                                "  classes: {batch: {max_wait: 1s}}\n",
                                &c, err, sizeof err),
                     0);
    assert_int_equal(c.limiter.mode, ADMIT_MODE_ADAPTIVE);
    assert_int_equal(c.limiter.initial, 4);
    assert_int_equal(c.limiter.min, 2);
    assert_int_equal(c.limiter.max, 200);
    assert_int_equal(c.limiter.probe_interval_us, 3 * SEC);
    assert_int_equal(c.limiter.baseline_window_us, 30 * SEC);
    assert_int_equal(c.queue.max_length, 50);
    assert_int_equal(c.queue.max_wait_us[ADMIT_CRITICAL], 5 * SEC);
    assert_int_equal(c.queue.max_wait_us[ADMIT_BATCH], 1 * SEC);
    assert_int_equal(c.queue.codel_target_us, 10 * MS);
    assert_int_equal(c.queue.codel_interval_us, 200 * MS);
    assert_int_equal(c.queue.standing_wait_us, 0);
    assert_false(c.queue.lifo);

    /* max_concurrency alone means static. */
    assert_int_equal(parse_yaml("overload: {limiter: {max_concurrency: 12}}\n", &c, err, sizeof err), 0);
    assert_int_equal(c.limiter.mode, ADMIT_MODE_STATIC);
    assert_int_equal(c.limiter.max_concurrency, 12);

    /* Errors carry the position of the offending node. */
    assert_int_equal(parse_yaml("overload:\n  limiter:\n    mode: static\n", &c, err, sizeof err), 1);
    assert_non_null(strstr(err, "t.yaml:3:"));
    assert_non_null(strstr(err, "max_concurrency"));
    assert_true(parse_yaml("overload:\n  queue:\n    max_wait: 10\n", &c, err, sizeof err) >= 1);
    assert_non_null(strstr(err, "t.yaml:3:"));
    assert_true(parse_yaml("overload:\n  queue:\n    bogus: 1\n", &c, err, sizeof err) >= 1);
    assert_non_null(strstr(err, "bogus"));
    assert_true(parse_yaml("overload:\n  limiter: {min: 10, max: 5}\n", &c, err, sizeof err) >= 1);
    assert_true(parse_yaml("overload:\n  classes: {urgent: {max_wait: 1s}}\n", &c, err, sizeof err) >= 1);
    assert_non_null(strstr(err, "urgent"));
}

static void test_metrics_render(void **state)
{
    (void)state;
    struct admit_conf c = default_conf();
    struct admit_limiter l;
    struct admit_queue q;
    admit_limiter_init(&l, &c.limiter, "llm/127.0.0.1:9000", 0);
    admit_queue_init(&q, &c.queue, "llm");
    struct admit_metrics m;
    admit_metrics_init(&m);
    admit_metrics_add_limiter(&m, &l);
    admit_metrics_add_queue(&m, &q);
    struct admit_waiter w;
    admit_enqueue(&q, &w, 1, ADMIT_BATCH, 1, 1, 0, NULL);
    struct sbuf out;
    sbuf_init(&out, 0);
    /* No owner, nothing listed. */
    admit_metrics_render(&out, NULL);
    assert_int_equal(out.len, 0);
    admit_metrics_render(&out, &m);
    assert_non_null(strstr(out.data, "rampart_admit_limit{server=\"llm/127.0.0.1:9000\"} 8\n"));
    assert_non_null(strstr(out.data, "rampart_queue_length{upstream=\"llm\",class=\"batch\"} 1\n"));
    assert_non_null(strstr(out.data, "rampart_queue_refused_total{upstream=\"llm\",reason=\"deadline\""));
    assert_non_null(strstr(out.data, "rampart_queue_wait_seconds_bucket"));
    sbuf_free(&out);
    admit_limiter_unregister(&l);
    admit_queue_free(&q);
    assert_null(m.limiters);
    assert_null(m.queues);
    sbuf_init(&out, 0);
    admit_metrics_render(&out, &m);
    assert_true(out.len == 0 || strstr(out.data, "llm") == NULL);
    sbuf_free(&out);
}

static void test_class_names(void **state)
{
    (void)state;
    assert_int_equal(admit_class_parse("Critical", 8), ADMIT_CRITICAL);
    assert_int_equal(admit_class_parse("batch", 5), ADMIT_BATCH);
    assert_int_equal(admit_class_parse("batchx", 6), -1);
    assert_int_equal(admit_class_parse("", 0), -1);
    assert_string_equal(admit_class_name(ADMIT_INTERACTIVE), "interactive");
    assert_string_equal(admit_reason_name(ADMIT_R_SHED), "shed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_static_limit),
        cmocka_unit_test(test_never_exceeds_limit),
        cmocka_unit_test(test_probe_undo_after_release),
        cmocka_unit_test(test_long_streams_not_shed),
        cmocka_unit_test(test_long_streams_after_congestion),
        cmocka_unit_test(test_stalled_clients_do_not_shrink),
        cmocka_unit_test(test_cancelled_release_feeds_nothing),
        cmocka_unit_test(test_recovers_after_failures),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_drr_fairness),
        cmocka_unit_test(test_deadline_expiry),
        cmocka_unit_test(test_eviction_when_full),
        cmocka_unit_test(test_codel_lifo),
        cmocka_unit_test(test_cancel_o1),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_slot_counts),
        cmocka_unit_test(test_driver_on_loop),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_sim_converges),
        cmocka_unit_test(test_sim_cold_start_overloaded),
        cmocka_unit_test(test_sim_capacity_halves),
        cmocka_unit_test(test_sim_abusive_tenant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

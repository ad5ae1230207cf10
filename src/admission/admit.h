/*
 * admit.h — admission control: a concurrency limiter per upstream server
 * and a priority/fair queue per upstream.  Pure logic: no I/O, no clocks
 * of its own (every call takes now_us), no allocation per request.
 *
 * Limiter.  Each server has a limit on the requests it runs at once; a slot
 * is held from dispatch until the response stream ends.  The limit is
 * either static (HAProxy's maxconn) or adaptive: it learns from the time to
 * first byte (the queueing signal of a model server, whose total duration
 * depends on output length) and is never told the capacity.  The adaptive
 * rule uses Little's law to turn "how much later than usual did first bytes
 * arrive" into "how many of our requests are waiting inside the server",
 * and takes those off the limit; it has no re-measurement phase, so it
 * never pins the limit low to re-learn its baseline.  docs/overload.md has
 * the algorithm, its parameters and the reasoning.
 *
 * Queue.  When no server of an upstream has a free slot, requests wait in
 * the upstream's queue: strict priority between classes (critical >
 * interactive > batch), fair queueing between tenants inside a class,
 * a bounded length (a higher class evicts the lowest class when full), a
 * deadline per class, and a standing-queue detector (CoDel's rule) that
 * switches to adaptive LIFO and sheds waiters that waited longer than a few
 * departure intervals, so that under overload the requests that are served
 * are served quickly instead of every one of them timing out.
 *
 * Waiters and slots are intrusive: the proxy embeds them in its request
 * object; the queue never allocates after admit_queue_init().
 *
 * Files: admit_limiter.c (limiter, slots), admit_queue.c (queue, class and
 * reason names), admit_conf.c (the overload: section), admit_metrics.c
 * (the owner that lists limiters and queues on /metrics); admit_driver.h
 * is the event-loop side: the pump that hands free slots to waiters and
 * the deadline timer.
 *
 * Call sequence (the proxy):
 *   arrival:   if admit_queue_len(q) == 0 and a server s has a free slot
 *                  -> admit_slot_take(&req->slot, &s->lim, ...) == RP_OK: dispatch
 *              else admit_enqueue(q, &req->waiter, ...), then
 *                  admit_driver_arm() and admit_driver_schedule()
 *   pump (admit_driver): while some server has a free slot and
 *                  (w = admit_dequeue(q, now)): on_admit(w) takes one and dispatches
 *   first byte of the response head: admit_slot_first_byte(&req->slot, now)
 *   end of the response stream (or error): admit_slot_give(&req->slot, now, outcome);
 *              admit_driver_schedule()
 *   client left while queued: admit_cancel(q, &req->waiter, now); admit_driver_arm()
 *   timer (admit_driver): while ((w = admit_expire(q, now, &why))) on_refuse(w, why) (503);
 *              re-armed at admit_next_timer(q, now)
 */
#ifndef RP_ADMIT_H
#define RP_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"
#include "metrics.h"

struct admit_metrics;

/* ---- priority classes ---------------------------------------------------- */

/* Lower value = served first, shed last. */
enum admit_class {
    ADMIT_CRITICAL = 0,
    ADMIT_INTERACTIVE = 1, /* the default */
    ADMIT_BATCH = 2,
};
#define ADMIT_NUM_CLASSES 3

const char *admit_class_name(enum admit_class c);
/* "critical" | "interactive" | "batch" (case-insensitive); -1 otherwise. */
int admit_class_parse(const char *s, size_t len);

/* ---- configuration (section "overload", also per upstream) -------------- */

enum admit_mode { ADMIT_MODE_ADAPTIVE = 0, ADMIT_MODE_STATIC = 1 };

struct admit_limiter_conf {
    enum admit_mode mode;
    uint32_t max_concurrency;    /* static: the limit; default 0 (= adaptive) */
    uint32_t initial;            /* adaptive: starting limit, default 8 */
    uint32_t min;                /* default 1 */
    uint32_t max;                /* default 1000 */
    double tolerance;            /* requests inferred waiting inside a server before backing off, default 0.5 */
    uint64_t sample_interval_us; /* aggregation interval for first-byte samples, default 100ms */
    uint64_t baseline_window_us; /* how long the no-queue baseline is remembered, default 10s */
    uint64_t probe_interval_us;  /* time between probes above a learned limit; 0 = auto */
};

struct admit_queue_conf {
    uint32_t max_length;                     /* waiters per upstream, default 1024 */
    uint64_t max_wait_us[ADMIT_NUM_CLASSES]; /* per class, default 10s each (queue.max_wait) */
    uint64_t codel_target_us;                /* standing queue: head waited longer than this ... default 20ms */
    uint64_t codel_interval_us;              /* ... continuously for this long, default 100ms */
    bool lifo;                               /* adaptive LIFO while the queue stands, default true */
    uint64_t standing_wait_us;               /* max wait while standing; 0 = auto (4 departure intervals) */
    uint32_t credit; /* requests a tenant arriving to an empty sub-queue may get ahead, default 4 */
};

struct admit_conf {
    struct admit_limiter_conf limiter;
    struct admit_queue_conf queue;
};

void admit_conf_default(struct admit_conf *c);
/* Parse an "overload:" map into c, on top of what c holds (call
 * admit_conf_default first for the global section; copy the global result
 * for a per-upstream override).  node may be NULL (keeps c).  Errors are
 * recorded at the offending node; returns RP_OK or RP_ERR. */
int admit_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct admit_conf *c);

/* ---- limiter ------------------------------------------------------------- */

/* How a dispatched request ended, as seen by the limiter. */
enum admit_outcome {
    ADMIT_DONE = 0,   /* response completed (any status but overload) */
    ADMIT_FAILED,     /* transport or server error: no latency signal */
    ADMIT_OVERLOADED, /* server said it is overloaded (429/503) or connect timed out */
    ADMIT_CANCELLED,  /* client left; the upstream request was aborted */
};

/* Per dispatched request, embedded in the proxy's request object. */
struct admit_ticket {
    struct admit_ticket *prev, *next; /* limiter's "no first byte yet" list, oldest first */
    uint64_t start_us;
    uint64_t done_at_start;     /* limiter completions at dispatch */
    uint32_t inflight_at_start; /* including this request */
    uint8_t state;              /* internal */
};

#define ADMIT_SAMPLES 32
#define ADMIT_BASELINE_SLOTS 64
#define ADMIT_RECENT 128

struct admit_limiter {
    struct admit_limiter_conf conf;
    double limit;
    uint32_t inflight;
    uint32_t pending; /* dispatched, no first byte yet */
    struct admit_ticket *pend_head, *pend_tail;

    /* throughput: completions of requests that had started (held a slot) */
    uint64_t done;
    double rate; /* completions/s, EMA */
    uint64_t rate_t0, rate_done0;
    double dur_ema_us;                  /* mean dispatch-to-release time */
    uint64_t recent_done[ADMIT_RECENT]; /* times of the last completions */
    uint32_t recent_pos;

    /* current aggregation interval */
    uint64_t int_start_us;
    uint32_t ns;
    uint32_t s_us[ADMIT_SAMPLES];
    uint32_t s_k[ADMIT_SAMPLES];
    uint64_t int_done0; /* completions when the interval started */
    uint32_t peak;      /* max inflight in the interval */
    bool saturated;     /* an acquire found no slot */

    /* baseline: interval medians of first-byte time, with their times */
    uint64_t base_t[ADMIT_BASELINE_SLOTS];
    uint32_t base_v[ADMIT_BASELINE_SLOTS];
    uint32_t base_n, base_pos;
    double baseline_us;
    uint32_t fast_us;   /* fastest first byte (lowest interval low eighth), 0 = none */
    uint64_t fast_t_us; /* when it was seen: it ages out after baseline_window */

    /* control state */
    uint64_t last_decrease_us;
    uint64_t last_probe_us;
    uint32_t probe_step;
    bool congestion_seen; /* leaves slow start */
    bool suspect;         /* last interval looked congested */
    double bad_level;     /* lowest limit last seen to make the server queue */
    double probe_base;    /* limit before the last probe, 0 = none since the last decrease */
    double cut_from;      /* limit just before the last decrease */
    uint64_t overtake_us; /* dispatch time of the newest request answered at baseline */

    /* statistics */
    uint64_t acquired, refused, decreases, increases, overload_signals;
    char name[64];             /* metrics label: "upstream/server" */
    struct admit_metrics *reg; /* the owner listing it on /metrics, or NULL */
    struct admit_limiter *reg_next;
};

/* conf is copied.  name labels metrics (may be NULL); the limiter is listed
 * once its owner adds it (admit_metrics_add_limiter). */
void admit_limiter_init(struct admit_limiter *l, const struct admit_limiter_conf *conf, const char *name,
                        uint64_t now_us);
/* Take a slot: RP_OK (ticket filled) or RP_AGAIN (at the limit). */
int admit_acquire(struct admit_limiter *l, uint64_t now_us, struct admit_ticket *t);
/* Response head (first byte/token) arrived for t: the latency sample. */
void admit_first_byte(struct admit_limiter *l, struct admit_ticket *t, uint64_t now_us);
/* The request ended (stream done, error, client gone); frees the slot.
 * Safe to call once per successful admit_acquire. */
void admit_release(struct admit_limiter *l, struct admit_ticket *t, uint64_t now_us, enum admit_outcome how);
/* Periodic evaluation without traffic (optional; e.g. from a 100ms timer). */
void admit_limiter_tick(struct admit_limiter *l, uint64_t now_us);
/* Current limit (whole requests, >= conf.min). */
uint32_t admit_limit(const struct admit_limiter *l);
static inline uint32_t admit_free_slots(const struct admit_limiter *l)
{
    uint32_t lim = admit_limit(l);
    return l->inflight < lim ? lim - l->inflight : 0;
}

/* A slot held by a dispatched request: the limiter's ticket together with
 * the in-flight counts that go with it (the server's, and the owner's
 * total), so that every path that takes or gives a slot moves all of them
 * at once.  Zero-initialised = no slot held. */
struct admit_slot {
    struct admit_limiter *lim; /* the server's limiter while held; NULL otherwise */
    unsigned *server_inflight; /* counted here while held (may be NULL) */
    uint64_t *total_inflight;  /* counted here while held (may be NULL) */
    struct admit_ticket ticket;
};

static inline bool admit_slot_held(const struct admit_slot *s)
{
    return s->lim != NULL;
}
/* admit_acquire on l, and on success count the slot in *server_inflight
 * and *total_inflight.  RP_OK, or RP_AGAIN at the limit (nothing counted). */
int admit_slot_take(struct admit_slot *s, struct admit_limiter *l, unsigned *server_inflight, uint64_t *total_inflight,
                    uint64_t now_us);
/* admit_first_byte for the held slot (no-op when none is held). */
void admit_slot_first_byte(struct admit_slot *s, uint64_t now_us);
/* admit_release and uncount; the slot is then not held.  No-op when none
 * is held, so every ending may call it. */
void admit_slot_give(struct admit_slot *s, uint64_t now_us, enum admit_outcome how);

/* ---- queue --------------------------------------------------------------- */

/* Why a waiter left the queue without being served. */
enum admit_reason {
    ADMIT_R_NONE = 0,
    ADMIT_R_FULL,      /* queue full at arrival */
    ADMIT_R_EVICTED,   /* pushed out by a higher class (or a lighter tenant) */
    ADMIT_R_DEADLINE,  /* waited max_wait */
    ADMIT_R_SHED,      /* standing queue: waited longer than standing_wait */
    ADMIT_R_CANCELLED, /* client left */
};
#define ADMIT_NUM_REASONS 6
const char *admit_reason_name(enum admit_reason r);

struct admit_flow;

/* Per queued request, embedded in the proxy's request object. */
struct admit_waiter {
    struct admit_waiter *prev, *next;   /* in its flow, oldest first */
    struct admit_waiter *cprev, *cnext; /* in its class, oldest first */
    struct admit_flow *flow;
    uint64_t enq_us;
    uint32_t cost;
    uint8_t cls;
    bool queued;
};

struct admit_flow {
    uint64_t key;
    struct admit_flow *hnext, **hpprev; /* hash chain */
    struct admit_flow *rprev, *rnext;   /* class's active flows, or free list */
    struct admit_waiter *head, *tail;
    uint32_t len;
    uint32_t weight;
    double vtime; /* fair-queueing virtual time */
    uint8_t cls;
};

struct admit_class_q {
    struct admit_flow *cur; /* first of the class's active flows */
    double vnow;            /* virtual time of the last service */
    struct admit_waiter *oldest, *newest;
    uint32_t len;
    uint32_t flows;
};

struct admit_queue {
    struct admit_queue_conf conf;
    struct admit_flow *flow_pool, *flow_free;
    struct admit_flow **htab;
    size_t hmask;
    struct admit_class_q cls[ADMIT_NUM_CLASSES];
    uint32_t len;

    /* standing-queue detector */
    uint64_t above_since_us; /* head above target since (0 = not) */
    bool standing;

    /* drain rate: dequeues per second of time with a non-empty queue */
    double drain_rate;
    uint64_t busy_us, last_ev_us;
    uint32_t win_deq;

    /* statistics */
    uint64_t enqueued[ADMIT_NUM_CLASSES];
    uint64_t dequeued[ADMIT_NUM_CLASSES];
    uint64_t dropped[ADMIT_NUM_REASONS][ADMIT_NUM_CLASSES];
    uint64_t standing_entries;
    struct metrics_hist wait;
    char name[64];
    struct admit_metrics *reg; /* the owner listing it on /metrics, or NULL */
    struct admit_queue *reg_next;
};

/* conf is copied; allocates the bounded flow table once. */
void admit_queue_init(struct admit_queue *q, const struct admit_queue_conf *conf, const char *name);
void admit_queue_free(struct admit_queue *q);
static inline uint32_t admit_queue_len(const struct admit_queue *q)
{
    return q->len;
}

/* Queue w for tenant flow key (any stable 64-bit tenant identity) in class
 * cls.  cost: fair-queueing cost of this request (1 = count requests);
 * weight: the tenant's relative share (>= 1).  Returns RP_OK when queued; if
 * that pushed another waiter out, *evicted is set to it (answer it 503,
 * reason ADMIT_R_EVICTED).  Returns RP_AGAIN when the queue is full and w
 * may not displace anyone (answer 503, reason ADMIT_R_FULL). */
int admit_enqueue(struct admit_queue *q, struct admit_waiter *w, uint64_t key, enum admit_class cls, uint32_t cost,
                  uint32_t weight, uint64_t now_us, struct admit_waiter **evicted);
/* Next waiter to dispatch (highest class; fair across tenants; FIFO, or
 * LIFO while the queue stands), or NULL when empty. */
struct admit_waiter *admit_dequeue(struct admit_queue *q, uint64_t now_us);
/* Remove a queued waiter (client left).  O(1).  No-op if not queued. */
void admit_cancel(struct admit_queue *q, struct admit_waiter *w, uint64_t now_us);
/* Pop one waiter whose wait is over (deadline, or standing-queue shedding),
 * with the reason in *why; NULL when none.  Call in a loop. */
struct admit_waiter *admit_expire(struct admit_queue *q, uint64_t now_us, enum admit_reason *why);
/* When admit_expire should next be called (absolute us), 0 if never. */
uint64_t admit_next_timer(struct admit_queue *q, uint64_t now_us);
/* Seconds a client refused at queue position pos (0 = head) should wait:
 * pos / drain rate, clamped to 1..60. */
uint32_t admit_retry_after(const struct admit_queue *q, uint32_t pos);
/* Is the standing-queue mode on (after evaluating at now)? */
bool admit_standing(struct admit_queue *q, uint64_t now_us);
/* The max wait in force now for class cls (standing mode shortens it). */
uint64_t admit_wait_limit(const struct admit_queue *q, enum admit_class cls);

/* ---- metrics --------------------------------------------------------------- */

/* The limiters and queues one owner (the proxy, for its upstream set) lists
 * on /metrics: the render function's argument, so nothing is process-wide.
 * Unlink a limiter or queue before freeing it (admit_*_unregister;
 * admit_queue_free does it for queues). */
struct admit_metrics {
    struct admit_limiter *limiters;
    struct admit_queue *queues;
    bool registered;
};

void admit_metrics_init(struct admit_metrics *m);
/* List l (q) under m, moving it from any other owner. */
void admit_metrics_add_limiter(struct admit_metrics *m, struct admit_limiter *l);
void admit_metrics_add_queue(struct admit_metrics *m, struct admit_queue *q);
void admit_limiter_unregister(struct admit_limiter *l);
void admit_queue_unregister(struct admit_queue *q);
/* metrics_register(admit_metrics_render, m), once per owner. */
void admit_metrics_register(struct admit_metrics *m);
/* arg: the struct admit_metrics (NULL renders nothing). */
void admit_metrics_render(struct sbuf *out, void *arg);

#endif

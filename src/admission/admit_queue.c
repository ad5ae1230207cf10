/*
 * admit_queue.c — the admission queue of one upstream: strict priority
 * between classes, fair queueing between tenants inside a class, a bounded
 * length with eviction, a deadline per class and the standing-queue
 * detector that switches to adaptive LIFO and sheds.  See admit.h for the
 * API and docs/overload.md for why it is shaped this way.
 *
 * Driven by the caller's clock (now_us); allocates only in
 * admit_queue_init().
 */
#include "admit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- classes and reasons -------------------------------------------------- */

static const char *const class_names[ADMIT_NUM_CLASSES] = {"critical", "interactive", "batch"};

const char *admit_class_name(enum admit_class c)
{
    return (unsigned)c < ADMIT_NUM_CLASSES ? class_names[c] : "unknown";
}

int admit_class_parse(const char *s, size_t len)
{
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
        if (rp_strieq(s, len, class_names[i]))
            return i;
    return -1;
}

static const char *const reason_names[ADMIT_NUM_REASONS] = {
    "none", "queue_full", "evicted", "deadline", "shed", "cancelled",
};

const char *admit_reason_name(enum admit_reason r)
{
    return (unsigned)r < ADMIT_NUM_REASONS ? reason_names[r] : "unknown";
}

/* ---- queue ---------------------------------------------------------------------
 *
 * Layout: per class, a list of active flows (one per tenant with waiters)
 * served by deficit round robin, and a list of the class's waiters in
 * arrival order (expiry and eviction without searching).  Flows come from
 * a pool of max_length entries: a flow exists only while it has waiters,
 * so the pool can never run out, and tenants that stop sending cost
 * nothing.  Lookup is a chained hash on (tenant key, class).
 */

void admit_queue_init(struct admit_queue *q, const struct admit_queue_conf *conf, const char *name)
{
    memset(q, 0, sizeof *q);
    q->conf = *conf;
    if (q->conf.max_length < 1)
        q->conf.max_length = 1;
    size_t n = q->conf.max_length;
    q->flow_pool = rp_xcalloc(n, sizeof *q->flow_pool);
    for (size_t i = 0; i < n; i++) {
        q->flow_pool[i].rnext = q->flow_free;
        q->flow_free = &q->flow_pool[i];
    }
    size_t hs = 16;
    while (hs < 2 * n)
        hs <<= 1;
    q->htab = rp_xcalloc(hs, sizeof *q->htab);
    q->hmask = hs - 1;
    /* Listed on /metrics once its owner adds it (admit_metrics_add_queue). */
    if (name)
        rp_snprintf(q->name, sizeof q->name, "%s", name);
}

void admit_queue_free(struct admit_queue *q)
{
    admit_queue_unregister(q);
    free(q->flow_pool);
    free(q->htab);
    q->flow_pool = NULL;
    q->htab = NULL;
}

static size_t flow_hash(const struct admit_queue *q, uint64_t key, unsigned cls)
{
    uint64_t h = (key ^ ((uint64_t)cls * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & q->hmask;
}

static struct admit_flow *flow_get(struct admit_queue *q, uint64_t key, unsigned cls, uint32_t weight)
{
    size_t b = flow_hash(q, key, cls);
    for (struct admit_flow *f = q->htab[b]; f; f = f->hnext)
        if (f->key == key && f->cls == cls)
            return f;
    struct admit_flow *f = q->flow_free;
    if (!f)
        return NULL; /* cannot happen: flows <= waiters <= max_length */
    q->flow_free = f->rnext;
    memset(f, 0, sizeof *f);
    f->key = key;
    f->cls = (uint8_t)cls;
    f->weight = weight ? weight : 1;
    /* A tenant that had nothing queued starts a little behind the class's
     * virtual time: it is served before backlogged tenants for up to
     * `credit` requests (the sparse-flow idea of FQ-CoDel), so a light
     * tenant's small burst does not queue behind a heavy tenant's backlog.
     * A tenant that never empties its queue never gets the credit. */
    struct admit_class_q *cq = &q->cls[cls];
    f->vtime = cq->vnow - (double)q->conf.credit;
    f->hnext = q->htab[b];
    if (f->hnext)
        f->hnext->hpprev = &f->hnext;
    f->hpprev = &q->htab[b];
    q->htab[b] = f;
    f->rprev = NULL;
    f->rnext = cq->cur;
    if (cq->cur)
        cq->cur->rprev = f;
    cq->cur = f;
    cq->flows++;
    return f;
}

static void flow_put(struct admit_queue *q, struct admit_flow *f)
{
    struct admit_class_q *c = &q->cls[f->cls];
    *f->hpprev = f->hnext;
    if (f->hnext)
        f->hnext->hpprev = f->hpprev;
    if (f->rprev)
        f->rprev->rnext = f->rnext;
    else
        c->cur = f->rnext;
    if (f->rnext)
        f->rnext->rprev = f->rprev;
    c->flows--;
    f->rprev = NULL;
    f->rnext = q->flow_free;
    q->flow_free = f;
}

/* Account busy time (queue non-empty) for the drain-rate estimate. */
static void drain_tick(struct admit_queue *q, uint64_t now_us)
{
    if (q->len > 0 && now_us > q->last_ev_us)
        q->busy_us += now_us - q->last_ev_us;
    q->last_ev_us = now_us;
    /* Half a second of busy time or 32 departures make one estimate. */
    if (q->busy_us >= 500000 || (q->win_deq >= 32 && q->busy_us > 0)) {
        double r = (double)q->win_deq * 1e6 / (double)q->busy_us;
        q->drain_rate = q->drain_rate == 0.0 ? r : 0.7 * q->drain_rate + 0.3 * r;
        q->busy_us = 0;
        q->win_deq = 0;
    }
}

static struct admit_waiter *oldest_waiter(const struct admit_queue *q)
{
    struct admit_waiter *o = NULL;
    for (int c = 0; c < ADMIT_NUM_CLASSES; c++)
        if (q->cls[c].oldest && (!o || q->cls[c].oldest->enq_us < o->enq_us))
            o = q->cls[c].oldest;
    return o;
}

/* CoDel's rule on the age of the oldest waiter: above target continuously
 * for a whole interval means a standing queue (a queue that is not
 * absorbing a burst but holding a permanent backlog).  It ends as soon as
 * the oldest waiter is younger than the target again. */
static void standing_eval(struct admit_queue *q, uint64_t now_us)
{
    struct admit_waiter *o = oldest_waiter(q);
    uint64_t age = o ? now_us - o->enq_us : 0;
    if (age < q->conf.codel_target_us) {
        q->above_since_us = 0;
        q->standing = false;
        return;
    }
    if (q->above_since_us == 0)
        q->above_since_us = now_us - (age - q->conf.codel_target_us);
    if (!q->standing && now_us - q->above_since_us >= q->conf.codel_interval_us) {
        q->standing = true;
        q->standing_entries++;
    }
}

bool admit_standing(struct admit_queue *q, uint64_t now_us)
{
    standing_eval(q, now_us);
    return q->standing;
}

/* Longest a waiter may stay while the queue stands: a few departure
 * intervals.  Enough for the waiter to be there when a slot frees (so no
 * slot idles: goodput), short enough that whoever is served has waited
 * little (latency); the rest are refused early instead of late. */
static uint64_t standing_wait(const struct admit_queue *q)
{
    if (q->conf.standing_wait_us)
        return q->conf.standing_wait_us;
    double w;
    if (q->drain_rate > 0.0)
        w = 4.0 * 1e6 / q->drain_rate;
    else
        w = 1e6;
    double lo = (double)q->conf.codel_target_us * 2.0;
    if (w < lo)
        w = lo;
    return (uint64_t)w;
}

uint64_t admit_wait_limit(const struct admit_queue *q, enum admit_class cls)
{
    uint64_t m = q->conf.max_wait_us[cls];
    if (q->standing) {
        uint64_t s = standing_wait(q);
        if (s < m)
            m = s;
    }
    return m;
}

static void unlink_waiter(struct admit_queue *q, struct admit_waiter *w)
{
    struct admit_flow *f = w->flow;
    struct admit_class_q *c = &q->cls[w->cls];
    if (w->prev)
        w->prev->next = w->next;
    else
        f->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        f->tail = w->prev;
    if (w->cprev)
        w->cprev->cnext = w->cnext;
    else
        c->oldest = w->cnext;
    if (w->cnext)
        w->cnext->cprev = w->cprev;
    else
        c->newest = w->cprev;
    w->prev = w->next = w->cprev = w->cnext = NULL;
    w->flow = NULL;
    w->queued = false;
    f->len--;
    c->len--;
    q->len--;
    if (f->len == 0)
        flow_put(q, f);
}

/* Choose whom to push out of a full queue for an arrival of class cls from
 * flow key: the lowest class strictly below cls; or, inside cls itself,
 * the tenant with the most waiters if that is more than the arrival's
 * tenant has (so a burst displaces only itself).  Within the chosen flow
 * the waiter that would be served last goes: the newest under FIFO, the
 * oldest under LIFO. */
static struct admit_waiter *pick_victim(struct admit_queue *q, uint64_t key, unsigned cls)
{
    int vc = -1;
    for (int c = ADMIT_NUM_CLASSES - 1; c > (int)cls; c--)
        if (q->cls[c].len > 0) {
            vc = c;
            break;
        }
    struct admit_flow *mine = NULL;
    if (vc < 0) {
        vc = (int)cls;
        size_t b = flow_hash(q, key, cls);
        for (struct admit_flow *f = q->htab[b]; f; f = f->hnext)
            if (f->key == key && f->cls == cls)
                mine = f;
    }
    struct admit_class_q *c = &q->cls[vc];
    if (!c->cur)
        return NULL;
    struct admit_flow *big = c->cur;
    for (struct admit_flow *f = c->cur->rnext; f; f = f->rnext)
        if (f->len > big->len)
            big = f;
    if (vc == (int)cls && big->len <= (mine ? mine->len : 0) + 1)
        return NULL;
    bool lifo = q->conf.lifo && q->standing;
    return lifo ? big->head : big->tail;
}

int admit_enqueue(struct admit_queue *q, struct admit_waiter *w, uint64_t key, enum admit_class cls, uint32_t cost,
                  uint32_t weight, uint64_t now_us, struct admit_waiter **evicted)
{
    if ((unsigned)cls >= ADMIT_NUM_CLASSES)
        cls = ADMIT_INTERACTIVE;
    if (evicted)
        *evicted = NULL;
    drain_tick(q, now_us);
    standing_eval(q, now_us);
    if (q->len >= q->conf.max_length) {
        struct admit_waiter *v = pick_victim(q, key, cls);
        if (!v) {
            q->dropped[ADMIT_R_FULL][cls]++;
            return RP_AGAIN;
        }
        q->dropped[ADMIT_R_EVICTED][v->cls]++;
        unlink_waiter(q, v);
        if (evicted)
            *evicted = v;
    }
    struct admit_flow *f = flow_get(q, key, cls, weight);
    if (!f) {
        q->dropped[ADMIT_R_FULL][cls]++;
        return RP_AGAIN;
    }
    memset(w, 0, sizeof *w);
    w->flow = f;
    w->enq_us = now_us;
    w->cost = cost ? cost : 1;
    w->cls = (uint8_t)cls;
    w->queued = true;
    w->prev = f->tail;
    if (f->tail)
        f->tail->next = w;
    else
        f->head = w;
    f->tail = w;
    f->len++;
    struct admit_class_q *c = &q->cls[cls];
    w->cprev = c->newest;
    if (c->newest)
        c->newest->cnext = w;
    else
        c->oldest = w;
    c->newest = w;
    c->len++;
    q->len++;
    q->enqueued[cls]++;
    return RP_OK;
}

/* Fair queueing by virtual time (start-time fair queueing): each tenant's
 * flow carries a virtual time that advances by cost/weight per request
 * served; the flow with the smallest one goes next, so over any busy
 * period every backlogged tenant gets its weighted share, like deficit
 * round robin.  Ties (equal virtual times, the common case with equal
 * weights) go to the candidate that waited longest (FIFO) or least (LIFO,
 * standing queue), which is the better order for latency.
 * Cost: O(tenants with waiters in the class). */
static struct admit_waiter *candidate(const struct admit_flow *f, bool lifo)
{
    return lifo ? f->tail : f->head;
}

static struct admit_flow *pick_flow(struct admit_class_q *c, bool lifo)
{
    struct admit_flow *best = NULL;
    struct admit_waiter *bw = NULL;
    for (struct admit_flow *f = c->cur; f; f = f->rnext) {
        struct admit_waiter *w = candidate(f, lifo);
        if (best) {
            double d = f->vtime - best->vtime;
            if (d > 1e-9)
                continue;
            if (d > -1e-9 && (lifo ? w->enq_us <= bw->enq_us : w->enq_us >= bw->enq_us))
                continue;
        }
        best = f;
        bw = w;
    }
    return best;
}

struct admit_waiter *admit_dequeue(struct admit_queue *q, uint64_t now_us)
{
    drain_tick(q, now_us);
    standing_eval(q, now_us);
    if (q->len == 0)
        return NULL;
    int ci = 0;
    while (ci < ADMIT_NUM_CLASSES && q->cls[ci].len == 0)
        ci++;
    if (ci == ADMIT_NUM_CLASSES)
        return NULL;
    bool lifo = q->conf.lifo && q->standing;
    struct admit_class_q *c = &q->cls[ci];
    struct admit_flow *f = pick_flow(c, lifo);
    struct admit_waiter *w = candidate(f, lifo);
    if (f->vtime > c->vnow)
        c->vnow = f->vtime;
    f->vtime += (double)w->cost / (double)f->weight;
    uint64_t waited = now_us - w->enq_us;
    unlink_waiter(q, w);
    q->dequeued[ci]++;
    q->win_deq++;
    metrics_hist_observe(&q->wait, waited);
    return w;
}

void admit_cancel(struct admit_queue *q, struct admit_waiter *w, uint64_t now_us)
{
    if (!w->queued)
        return;
    drain_tick(q, now_us);
    q->dropped[ADMIT_R_CANCELLED][w->cls]++;
    unlink_waiter(q, w);
}

/* While the queue stands, waiters older than the standing wait are shed,
 * except those of tenants that are behind their fair share (virtual time
 * below the class's: they are next in line and will be served soon) and
 * each tenant's next candidate.  So a light tenant is not shed for the
 * backlog of a heavy one; the heavy tenant, always ahead, loses its oldest
 * waiters, which under LIFO it would have been served last anyway. */
static bool protected_waiter(const struct admit_queue *q, const struct admit_waiter *w)
{
    bool lifo = q->conf.lifo && q->standing;
    return w->flow->vtime < q->cls[w->cls].vnow || w == candidate(w->flow, lifo);
}

static struct admit_waiter *first_sheddable(const struct admit_queue *q, int ci, uint64_t before_us)
{
    for (struct admit_waiter *w = q->cls[ci].oldest; w && w->enq_us <= before_us; w = w->cnext)
        if (!protected_waiter(q, w))
            return w;
    return NULL;
}

struct admit_waiter *admit_expire(struct admit_queue *q, uint64_t now_us, enum admit_reason *why)
{
    drain_tick(q, now_us);
    standing_eval(q, now_us);
    /* Lowest class first: it is shed first. */
    for (int ci = ADMIT_NUM_CLASSES - 1; ci >= 0; ci--) {
        struct admit_waiter *w = q->cls[ci].oldest;
        if (!w)
            continue;
        enum admit_reason r = ADMIT_R_NONE;
        if (now_us - w->enq_us >= q->conf.max_wait_us[ci]) {
            r = ADMIT_R_DEADLINE;
        } else if (q->standing) {
            uint64_t sw = standing_wait(q);
            if (now_us >= sw && (w = first_sheddable(q, ci, now_us - sw)))
                r = ADMIT_R_SHED;
        }
        if (r == ADMIT_R_NONE)
            continue;
        q->dropped[r][ci]++;
        unlink_waiter(q, w);
        if (why)
            *why = r;
        return w;
    }
    if (why)
        *why = ADMIT_R_NONE;
    return NULL;
}

uint64_t admit_next_timer(struct admit_queue *q, uint64_t now_us)
{
    standing_eval(q, now_us);
    uint64_t next = 0;
    uint64_t sw = q->standing ? standing_wait(q) : 0;
    for (int ci = 0; ci < ADMIT_NUM_CLASSES; ci++) {
        struct admit_waiter *w = q->cls[ci].oldest;
        if (!w)
            continue;
        uint64_t t = w->enq_us + q->conf.max_wait_us[ci];
        if (!next || t < next)
            next = t;
        if (q->standing && (w = first_sheddable(q, ci, UINT64_MAX))) {
            t = w->enq_us + sw;
            if (t < next)
                next = t;
        }
    }
    /* The standing state may begin before any deadline: wake up then so
     * shedding starts on time. */
    if (!q->standing && q->above_since_us) {
        uint64_t t = q->above_since_us + q->conf.codel_interval_us;
        if (!next || t < next)
            next = t;
    }
    if (next && next < now_us)
        next = now_us;
    return next;
}

uint32_t admit_retry_after(const struct admit_queue *q, uint32_t pos)
{
    double s;
    if (q->drain_rate > 0.0)
        s = ((double)pos + 1.0) / q->drain_rate;
    else
        s = (double)q->conf.max_wait_us[ADMIT_INTERACTIVE] / 1e6; /* nothing measured yet */
    s = ceil(s);
    if (s < 1)
        s = 1;
    if (s > 60)
        s = 60;
    return (uint32_t)s;
}

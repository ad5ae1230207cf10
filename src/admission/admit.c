/*
 * admit.c — concurrency limiter per upstream server and priority/fair queue
 * per upstream.  See admit.h for the API and the proxy's call sequence, and
 * docs/overload.md for the algorithms and why they are shaped this way.
 *
 * Everything here is driven by the caller's clock (now_us) and keeps
 * fixed-size state, so the unit tests replay exact scenarios and a
 * simulated model server can be run through it for minutes of fake time in
 * milliseconds of real time.
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

/* ---- metrics registry ------------------------------------------------------- */

static struct admit_limiter *reg_limiters;
static struct admit_queue *reg_queues;
static bool reg_done;

void admit_limiter_unregister(struct admit_limiter *l)
{
    for (struct admit_limiter **pp = &reg_limiters; *pp; pp = &(*pp)->reg_next)
        if (*pp == l) {
            *pp = l->reg_next;
            l->reg_next = NULL;
            return;
        }
}

void admit_queue_unregister(struct admit_queue *q)
{
    for (struct admit_queue **pp = &reg_queues; *pp; pp = &(*pp)->reg_next)
        if (*pp == q) {
            *pp = q->reg_next;
            q->reg_next = NULL;
            return;
        }
}

/* ---- limiter -------------------------------------------------------------------
 *
 * Signals, all from the caller's events:
 *   - first-byte samples (now - dispatch), aggregated per interval into a
 *     median (robust to the prompt-length mix) and the mean in-flight count
 *     at their dispatch;
 *   - the baseline: the median of recent interval medians (windowed and
 *     aging; old values fall out, so it re-learns after a real change
 *     without any phase that lowers the limit on purpose);
 *   - the fastest first byte of the same window, which shows a queue that
 *     the baseline learned when the server was overloaded from the start;
 *   - the completion rate of requests that held a slot.
 * By Little's law, requests waiting inside the server = completion rate x
 * extra waiting time, so q = rate * (median - baseline) counts, in requests,
 * how far above the server's capacity we are.  On congestion the limit goes
 * to (mean in-flight at dispatch) - q: where the server was not queueing.
 * A second, faster path counts requests that are still waiting for their
 * first byte far beyond the baseline: each is a request queued inside the
 * server now, so capacity <= inflight - late.  That reacts to a capacity
 * drop within a few departures instead of after a whole interval of samples.
 */

enum { T_NONE = 0, T_PENDING, T_STARTED, T_DONE };

#define LATE_FACTOR 3.0          /* pending longer than 3x baseline = queued */
#define LATE_SLACK_US 20000.0    /* ... and than baseline + 20ms (timer noise) */
#define RATE_WINDOW_US 250000u   /* completion-rate measurement window */
#define SLOW_START_GAIN 0.5      /* growth per interval before any congestion */
#define LATENCY_TOLERANCE 0.25   /* medians within +25% of baseline are not queueing */
#define LATENCY_FLOOR_US 2000.0  /* ... nor within +2ms: a sub-millisecond backend's
                                  * jitter is not a queue worth shedding for */
#define COLD_FACTOR 3.0          /* slow start: median above 3x the fastest first byte ... */
#define COLD_SLACK_US 20000.0    /* ... and above it + 20ms = a queue in the server */
#define PROBE_LATE_MULT 40.0     /* auto probe interval: at most 40 late thresholds */

void admit_limiter_init(struct admit_limiter *l, const struct admit_limiter_conf *conf, const char *name,
                        uint64_t now_us)
{
    memset(l, 0, sizeof *l);
    l->conf = *conf;
    if (l->conf.min < 1)
        l->conf.min = 1;
    if (l->conf.max < l->conf.min)
        l->conf.max = l->conf.min;
    if (l->conf.sample_interval_us == 0)
        l->conf.sample_interval_us = 100000;
    if (l->conf.baseline_window_us == 0)
        l->conf.baseline_window_us = 10000000;
    if (l->conf.mode == ADMIT_MODE_STATIC)
        l->limit = l->conf.max_concurrency ? l->conf.max_concurrency : 1;
    else
        l->limit = RP_MIN(RP_MAX(l->conf.initial, l->conf.min), l->conf.max);
    l->int_start_us = now_us;
    l->rate_t0 = now_us;
    l->last_probe_us = now_us;
    l->probe_step = 1;
    if (name) {
        rp_snprintf(l->name, sizeof l->name, "%s", name);
        l->reg_next = reg_limiters;
        reg_limiters = l;
    }
}

uint32_t admit_limit(const struct admit_limiter *l)
{
    double v = floor(l->limit);
    if (v < l->conf.min)
        v = l->conf.min;
    return (uint32_t)v;
}

static bool adaptive(const struct admit_limiter *l)
{
    return l->conf.mode == ADMIT_MODE_ADAPTIVE;
}

static void pend_unlink(struct admit_limiter *l, struct admit_ticket *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        l->pend_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->pend_tail = t->prev;
    t->prev = t->next = NULL;
    l->pending--;
}

/* Time between probes above a limit that is known to congest.  Auto: three
 * mean request durations, kept within 0.5..30 s.  A probe one slot above
 * the server's capacity makes every request dispatched until it is undone
 * wait for a departure inside the server, so probing often shows up in
 * the first-token tail; capacity drops are handled by the decrease paths,
 * which do not wait for probes. */
static uint64_t probe_interval(const struct admit_limiter *l)
{
    if (l->conf.probe_interval_us)
        return l->conf.probe_interval_us;
    double v = 3.0 * l->dur_ema_us;
    /* What a failed probe costs is set by how soon it is undone: the
     * request in the probed slot is late after one late threshold, a
     * first-byte time.  Streams of tens of seconds would otherwise space
     * probes 30 s apart, and a limit cut by a burst of failures would stay
     * down that long while the server idles.  At 40 thresholds, a failed
     * probe stands for about 1/40 of the time, whatever the stream length. */
    if (l->baseline_us > 0.0) {
        double thr = RP_MAX(LATE_FACTOR * l->baseline_us, l->baseline_us + LATE_SLACK_US);
        if (v > PROBE_LATE_MULT * thr)
            v = PROBE_LATE_MULT * thr;
    }
    if (v < 500000.0)
        v = 500000.0;
    if (v > 30000000.0)
        v = 30000000.0;
    return (uint64_t)v;
}

static void set_congested(struct admit_limiter *l, uint64_t now_us)
{
    l->congestion_seen = true;
    l->probe_step = 1;
    l->last_probe_us = now_us;
    l->probe_base = 0.0;
}

/* Lower the limit to target (never raise; never below min). */
static void decrease_to(struct admit_limiter *l, double target, uint64_t now_us)
{
    if (target < l->conf.min)
        target = l->conf.min;
    set_congested(l, now_us);
    if (target < l->limit) {
        l->cut_from = floor(l->limit);
        l->limit = target;
        l->last_decrease_us = now_us;
        l->decreases++;
        /* Samples gathered so far describe the state just answered. */
        l->ns = 0;
        l->suspect = false;
    }
}

static void update_rate(struct admit_limiter *l, uint64_t now_us)
{
    uint64_t dt = now_us - l->rate_t0;
    if (dt < RATE_WINDOW_US)
        return;
    double r = (double)(l->done - l->rate_done0) * 1e6 / (double)dt;
    /* A long silence is one sample too, but it must not erase the memory of
     * the server's speed: limit its weight. */
    l->rate = l->rate == 0.0 ? r : 0.7 * l->rate + 0.3 * r;
    l->rate_t0 = now_us;
    l->rate_done0 = l->done;
}

/* The server's queue is FIFO: once a request dispatched a prefill or
 * more after t has had its first byte at baseline latency, t is not
 * waiting in the server.  It is held up elsewhere (a client still sending
 * its body, a connect, one huge prompt) and says nothing about capacity;
 * the margin keeps requests dispatched together with different prompt
 * lengths from overtaking each other. */
static bool overtaken(const struct admit_limiter *l, const struct admit_ticket *t)
{
    return l->overtake_us > 0 && (double)t->start_us + l->baseline_us < (double)l->overtake_us;
}

/* The fast path: requests still without a first byte long after the
 * baseline are waiting inside the server.  Needs two of them, so a single
 * slow request (a huge prompt) is not taken for a queue. */
static void check_late(struct admit_limiter *l, uint64_t now_us)
{
    if (!adaptive(l) || l->pending == 0 || l->baseline_us <= 0.0)
        return;
    double thr = RP_MAX(LATE_FACTOR * l->baseline_us, l->baseline_us + LATE_SLACK_US);
    uint32_t late = 0;
    struct admit_ticket *first = NULL;
    for (struct admit_ticket *t = l->pend_head; t && late < 4096; t = t->next) {
        if ((double)(now_us - t->start_us) < thr)
            break; /* the list is in dispatch order */
        /* Overtaken: not in the server's queue. */
        if (overtaken(l, t))
            continue;
        if (!first)
            first = t;
        late++;
    }
    /* Late requests that have just left the server's queue are in their
     * prefill and still count as late.  A queued request starts when a
     * slot frees, i.e. at one of our completions: those of the last 1.5
     * baselines (a prefill) are the late requests that may have started. */
    uint32_t recent = 0;
    uint64_t win = (uint64_t)(1.5 * l->baseline_us);
    for (uint32_t i = 0; i < ADMIT_RECENT && i < l->done; i++) {
        uint64_t t = l->recent_done[(l->recent_pos + ADMIT_RECENT - 1 - i) % ADMIT_RECENT];
        if (now_us - t > win)
            break;
        recent++;
    }
    double target;
    if (late >= 2) {
        /* That much slack, at least one. */
        double slack = RP_MAX(1.0, (double)recent);
        target = (double)l->inflight - (double)late + slack;
    } else if (late == 1 && first->start_us >= l->last_decrease_us &&
               (double)(now_us - first->start_us) >=
                   (l->bad_level > 0.0 && (double)first->inflight_at_start >= l->bad_level ? 1.0 : 2.0) * thr) {
        /* A single request far beyond the threshold: the server is one
         * slot short (a probe too far).  Once per decrease epoch, so one
         * giant prompt costs at most one slot until the next probe.  A
         * request that took a slot at or above the level last seen to
         * queue (the probed slot) needs only the threshold itself: every
         * request dispatched while a failed probe stands waits a departure
         * inside the server, so ending it early is what keeps probing
         * cheap (at twice the threshold it lasted about a second).  When
         * one of our requests has just ended (this check runs on its
         * release), in-flight has already dropped by one and the late
         * request is taking the freed slot: the server holds in-flight of
         * ours, not one less.  Without that, the decrease after a probe
         * went two slots down, and stayed there for a probe interval. */
        target = (double)l->inflight - 1.0 + (double)RP_MIN(recent, 1u);
    } else {
        return;
    }
    /* Never more than halve in one step. */
    target = RP_MAX(target, 0.5 * l->limit);
    if (target < l->limit) {
        /* The slack already gave the benefit of the doubt: the next level
         * up is presumed bad until a probe says otherwise. */
        l->bad_level = target + 1.0;
        decrease_to(l, target, now_us);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Baseline = median of the interval medians seen within the window: a
 * windowed statistic that ages (it re-learns after a real change) and that
 * neither one lucky nor one slow interval can move. */
static void baseline_push(struct admit_limiter *l, uint64_t now_us, uint32_t med)
{
    l->base_t[l->base_pos] = now_us;
    l->base_v[l->base_pos] = med;
    l->base_pos = (l->base_pos + 1) % ADMIT_BASELINE_SLOTS;
    if (l->base_n < ADMIT_BASELINE_SLOTS)
        l->base_n++;

    uint32_t v[ADMIT_BASELINE_SLOTS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->base_n; i++)
        if (now_us - l->base_t[i] <= l->conf.baseline_window_us)
            v[n++] = l->base_v[i];
    if (n == 0)
        return; /* cannot happen: the value just pushed is in the window */
    qsort(v, n, sizeof v[0], cmp_u32);
    l->baseline_us = v[n / 2];
}

/* Every dispatched request that can still bring a sample has brought it:
 * none is waiting for its first byte, or those that are were overtaken
 * (see check_late) and will not. */
static bool all_answered(const struct admit_limiter *l)
{
    return l->pending == 0 || overtaken(l, l->pend_tail);
}

/* held: most of this interval's first bytes came from requests dispatched
 * into the slots the last probe added, and at baseline latency. */
static void grow(struct admit_limiter *l, uint64_t now_us, bool held)
{
    double before = l->limit;
    /* A probe that held above the level the last decrease came from: that
     * level was not the server's capacity (the cut answered something
     * else, or capacity was added). */
    bool beyond = held && l->probe_base >= l->cut_from;
    if (!l->congestion_seen) {
        /* Slow start (as in TCP): the capacity is unknown, double-ish per
         * interval until the first sign of queueing. */
        l->limit += RP_MAX(1.0, SLOW_START_GAIN * l->limit);
    } else if (floor(l->limit) + 1.0 < l->bad_level) {
        /* Below the level where the server was last seen queueing: a
         * decrease that went too far (noise, a slow prompt, a burst of
         * failures) is undone without waiting for a probe, half the gap
         * per interval and at least one slot, so a deep cut does not take
         * one interval per lost slot to recover. */
        double gap = l->bad_level - 1.0 - floor(l->limit);
        l->limit = floor(l->limit) + RP_MAX(1.0, floor(0.5 * gap));
    } else if (beyond || now_us - l->last_probe_us >= probe_interval(l)) {
        /* The previous probe (if any) held: the level it reached is good. */
        l->bad_level = RP_MAX(l->bad_level, floor(l->limit) + 1.0);
        /* Above the level where the server last queued, probing costs some
         * requests a wait inside the server: do it rarely, and accelerate
         * while probes keep succeeding (capacity was added).  Beyond the
         * level of the last decrease there is nothing to protect: the
         * next probe follows at once and the step may reach half the
         * limit (slow start's pace), so the limit keeps up with demand at
         * the pace of first bytes rather than of whole streams (with
         * 20 s streams the probe interval is 30 s). */
        l->probe_base = floor(l->limit);
        l->limit += l->probe_step;
        double cap = beyond ? RP_MAX(1.0, SLOW_START_GAIN * floor(l->limit))
                            : RP_MAX(1.0, sqrt((double)admit_limit(l)) / 2.0);
        l->probe_step = (uint32_t)RP_MIN((double)l->probe_step * 2.0, cap);
        l->last_probe_us = now_us;
    }
    if (l->limit > l->conf.max)
        l->limit = l->conf.max;
    if (l->limit > before)
        l->increases++;
}

static void flush_interval(struct admit_limiter *l, uint64_t now_us)
{
    if (l->ns > 0) {
        uint32_t v[ADMIT_SAMPLES];
        double ksum = 0;
        memcpy(v, l->s_us, l->ns * sizeof v[0]);
        qsort(v, l->ns, sizeof v[0], cmp_u32);
        uint32_t med = v[l->ns / 2];
        for (uint32_t i = 0; i < l->ns; i++)
            ksum += l->s_k[i];
        double kbar = ksum / l->ns;

        /* The fastest first bytes of recent intervals, aged out after the
         * baseline window like the baseline itself.  An interval's low
         * eighth rather than its minimum: one instant answer (an error the
         * server returns without a prefill) is not a first token. */
        uint32_t fast = RP_MAX(v[l->ns / 8], 1u);
        if (l->fast_us == 0 || fast <= l->fast_us || now_us - l->fast_t_us > l->conf.baseline_window_us) {
            l->fast_us = fast;
            l->fast_t_us = now_us;
        }
        /* Started while already overloaded: from the first interval on the
         * server queues, every median contains that queue, and a baseline
         * learned from them hides it (the limit grew in slow start while the
         * server's queue stayed).  Only the first requests of a cold start
         * met an empty server: before any congestion was seen, a median far
         * above the fastest first byte is a queue, not the prompt mix (3x
         * and 20 ms: prefill grows with the prompt, the mix of a busy
         * interval has a median well within 3x of its shortest prompts).
         * The queued medians are forgotten and the baseline restarts from
         * the fastest first byte; real medians replace it as soon as the
         * limit has come down. */
        bool cold_queue = !l->congestion_seen && (double)med > COLD_FACTOR * l->fast_us &&
                          (double)med > l->fast_us + COLD_SLACK_US;
        if (cold_queue) {
            l->base_n = 0;
            l->base_pos = 0;
            baseline_push(l, now_us, l->fast_us);
        }
        /* Judged against the baseline learned so far: with few medians in
         * the window (just after a reseed) this one would move it. */
        double base = l->baseline_us;
        if (!cold_queue)
            baseline_push(l, now_us, med);
        if (base <= 0.0)
            base = l->baseline_us;
        double excess_s = ((double)med - base) / 1e6;
        double q = excess_s > 0 ? l->rate * excess_s : 0.0;
        /* Both tests: q in requests (is the excess worth a queued request
         * at this throughput?) and a ratio (batching slows prefill a little
         * as the batch fills, and a fast server turns that small slowdown
         * into a large q). */
        bool slow = (double)med > base * (1.0 + LATENCY_TOLERANCE) && (double)med > base + LATENCY_FLOOR_US;
        bool congested = q >= l->conf.tolerance && slow;
        /* One interval's median can be high by chance; queueing persists.
         * Two in a row (the severe case is caught earlier by check_late). */
        bool confirmed = congested && l->suspect;
        l->suspect = congested;
        if (confirmed) {
            double target = RP_MAX(kbar - q, 0.5 * l->limit);
            decrease_to(l, target, now_us);
            l->bad_level = kbar;
        } else if (!congested && !cold_queue && (q < 0.5 * l->conf.tolerance || !slow) &&
                   (l->saturated || l->peak >= admit_limit(l))) {
            /* Grow only when the limit is what holds traffic back.  A
             * probe held when most of these first bytes came from the
             * slots it added (dispatched above the level before it) and
             * their median is at the baseline: had the server been full,
             * every one of them would have waited for a departure. */
            uint32_t above = 0;
            if (l->probe_base > 0.0)
                for (uint32_t i = 0; i < l->ns; i++)
                    above += (double)l->s_k[i] > l->probe_base;
            bool held = above > 0 && 2 * above >= l->ns && !slow;
            grow(l, now_us, held);
        }
    } else if (!l->suspect && all_answered(l) && l->baseline_us > 0.0 && l->peak >= admit_limit(l)) {
        /* No sample for a whole interval because the limit binds and every
         * request holding a slot has had its first byte: nothing new will
         * be learnt until the limit moves, and what is known says the
         * server is not queueing.  Without this, a limit that binds on
         * long streams waits for one of them to end (20 s) before it may
         * grow, and a limit cut to its minimum stays there. */
        grow(l, now_us, false);
    }
    l->int_start_us = now_us;
    l->int_done0 = l->done;
    l->ns = 0;
    l->peak = l->inflight;
    l->saturated = false;
}

static void maybe_flush(struct admit_limiter *l, uint64_t now_us)
{
    uint64_t el = now_us - l->int_start_us;
    uint64_t iv = l->conf.sample_interval_us;
    /* An interval also closes once it holds every sample it can get: the
     * limit binds, every dispatched request has had its first byte and
     * none has ended since the interval began, so nothing more arrives
     * until the limit changes.  While long streams ramp up that is the
     * usual case (no completion frees a slot for many seconds), and
     * waiting for 16 samples or 5 intervals would let the limit grow once
     * per 500 ms while demand queues and is shed.  When requests do end,
     * their slots bring new samples: the interval fills as usual. */
    bool complete = el >= iv && l->ns > 0 && l->done == l->int_done0 &&
                    all_answered(l) && l->inflight >= admit_limit(l);
    if (l->ns >= ADMIT_SAMPLES || (el >= iv && l->ns >= 16) || el >= 5 * iv || complete)
        flush_interval(l, now_us);
}

int admit_acquire(struct admit_limiter *l, uint64_t now_us, struct admit_ticket *t)
{
    if (l->inflight >= admit_limit(l)) {
        l->saturated = true;
        l->refused++;
        return RP_AGAIN;
    }
    l->inflight++;
    l->acquired++;
    if (l->inflight > l->peak)
        l->peak = l->inflight;
    t->start_us = now_us;
    t->done_at_start = l->done;
    t->inflight_at_start = l->inflight;
    t->state = T_PENDING;
    t->next = NULL;
    t->prev = l->pend_tail;
    if (l->pend_tail)
        l->pend_tail->next = t;
    else
        l->pend_head = t;
    l->pend_tail = t;
    l->pending++;
    return RP_OK;
}

void admit_first_byte(struct admit_limiter *l, struct admit_ticket *t, uint64_t now_us)
{
    if (t->state != T_PENDING)
        return;
    pend_unlink(l, t);
    t->state = T_STARTED;
    if (!adaptive(l))
        return;
    /* Samples from requests dispatched before the last decrease describe
     * the overload that decrease already answered: counting them again
     * would cut the limit once per queued request (a collapse). */
    uint64_t s = now_us - t->start_us;
    if (t->start_us >= l->last_decrease_us && l->ns < ADMIT_SAMPLES) {
        l->s_us[l->ns] = s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
        l->s_k[l->ns] = t->inflight_at_start;
        l->ns++;
    }
    /* Answered at baseline latency: whatever was dispatched before it and
     * still waits is not in the server's (FIFO) queue; see check_late. */
    if (l->baseline_us > 0.0 && t->start_us > l->overtake_us &&
        (double)s <= RP_MAX(l->baseline_us * (1.0 + LATENCY_TOLERANCE), l->baseline_us + LATENCY_FLOOR_US))
        l->overtake_us = t->start_us;
    maybe_flush(l, now_us);
    check_late(l, now_us);
}

void admit_release(struct admit_limiter *l, struct admit_ticket *t, uint64_t now_us, enum admit_outcome how)
{
    if (t->state == T_NONE || t->state == T_DONE)
        return;
    if (t->state == T_PENDING)
        pend_unlink(l, t);
    else {
        /* It held a slot in the server: its end frees one there. */
        l->done++;
        l->recent_done[l->recent_pos] = now_us;
        l->recent_pos = (l->recent_pos + 1) % ADMIT_RECENT;
        /* A client that left decided how long it held the slot: that is
         * not the server's service time, which paces probing. */
        if (how != ADMIT_CANCELLED) {
            double d = (double)(now_us - t->start_us);
            l->dur_ema_us = l->dur_ema_us == 0.0 ? d : 0.9 * l->dur_ema_us + 0.1 * d;
        }
    }
    t->state = T_DONE;
    if (l->inflight > 0)
        l->inflight--;
    if (!adaptive(l))
        return;
    update_rate(l, now_us);
    if (how == ADMIT_OVERLOADED) {
        l->overload_signals++;
        /* The server refused explicitly: back off once per epoch. */
        if (t->start_us >= l->last_decrease_us) {
            l->bad_level = l->limit;
            decrease_to(l, 0.9 * l->limit, now_us);
        }
    }
    maybe_flush(l, now_us);
    check_late(l, now_us);
}

void admit_limiter_tick(struct admit_limiter *l, uint64_t now_us)
{
    if (!adaptive(l))
        return;
    update_rate(l, now_us);
    maybe_flush(l, now_us);
    check_late(l, now_us);
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
    if (name) {
        rp_snprintf(q->name, sizeof q->name, "%s", name);
        q->reg_next = reg_queues;
        reg_queues = q;
    }
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

/* ---- configuration ------------------------------------------------------------ */

void admit_conf_default(struct admit_conf *c)
{
    memset(c, 0, sizeof *c);
    c->limiter.mode = ADMIT_MODE_ADAPTIVE;
    c->limiter.max_concurrency = 0;
    c->limiter.initial = 8;
    c->limiter.min = 1;
    c->limiter.max = 1000;
    c->limiter.tolerance = 0.5;
    c->limiter.sample_interval_us = 100000;
    c->limiter.baseline_window_us = 10000000;
    c->limiter.probe_interval_us = 0;
    c->queue.max_length = 1024;
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
        c->queue.max_wait_us[i] = 10000000;
    c->queue.codel_target_us = 20000;
    c->queue.codel_interval_us = 100000;
    c->queue.lifo = true;
    c->queue.standing_wait_us = 0;
    c->queue.credit = 4;
}

/* "auto" or a duration; auto stores 0. */
static int duration_or_auto(struct conf_doc *doc, const struct conf_node *n, uint64_t min, uint64_t max,
                            uint64_t *out)
{
    if (!n)
        return RP_OK;
    if (n->kind == CONF_SCALAR && n->value && strcmp(n->value, "auto") == 0) {
        *out = 0;
        return RP_OK;
    }
    return conf_duration_range(doc, n, min, max, out);
}

static int u32_range(struct conf_doc *doc, const struct conf_node *n, uint64_t min, uint64_t max, uint32_t *out)
{
    uint64_t v = *out;
    int rc = conf_uint(doc, n, min, max, &v);
    if (rc == RP_OK)
        *out = (uint32_t)v;
    return rc;
}

static int parse_limiter(struct conf_doc *doc, const struct conf_node *node, struct admit_limiter_conf *l)
{
    static const char *const keys[] = {"mode", "max_concurrency", "initial", "min", "max", "tolerance",
                                       "sample_interval", "baseline_window", "probe_interval", NULL};
    static const char *const modes[] = {"adaptive", "static", NULL};
    int rc = RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    const struct conf_node *mode = conf_get(node, "mode");
    const struct conf_node *mc = conf_get(node, "max_concurrency");
    int m = (int)l->mode;
    if (conf_enum(doc, mode, modes, &m) != RP_OK)
        rc = RP_ERR;
    if (u32_range(doc, mc, 1, 100000, &l->max_concurrency) != RP_OK)
        rc = RP_ERR;
    /* max_concurrency alone means static (HAProxy's maxconn). */
    if (!mode && mc)
        m = ADMIT_MODE_STATIC;
    l->mode = (enum admit_mode)m;
    if (l->mode == ADMIT_MODE_STATIC && l->max_concurrency == 0 && !(mc && rc != RP_OK)) {
        conf_error(doc, mode ? mode : node, "mode static needs max_concurrency");
        rc = RP_ERR;
    }
    if (u32_range(doc, conf_get(node, "initial"), 1, 100000, &l->initial) != RP_OK)
        rc = RP_ERR;
    if (u32_range(doc, conf_get(node, "min"), 1, 100000, &l->min) != RP_OK)
        rc = RP_ERR;
    if (u32_range(doc, conf_get(node, "max"), 1, 100000, &l->max) != RP_OK)
        rc = RP_ERR;
    if (conf_double(doc, conf_get(node, "tolerance"), 0.05, 100.0, &l->tolerance) != RP_OK)
        rc = RP_ERR;
    if (conf_duration_range(doc, conf_get(node, "sample_interval"), 1000, 10000000, &l->sample_interval_us) != RP_OK)
        rc = RP_ERR;
    if (conf_duration_range(doc, conf_get(node, "baseline_window"), 1000000, 3600000000ull,
                            &l->baseline_window_us) != RP_OK)
        rc = RP_ERR;
    if (duration_or_auto(doc, conf_get(node, "probe_interval"), 10000, 600000000ull, &l->probe_interval_us) !=
        RP_OK)
        rc = RP_ERR;
    if (l->min > l->max) {
        conf_error(doc, conf_get(node, "min") ? conf_get(node, "min") : node, "min (%u) is above max (%u)",
                   l->min, l->max);
        rc = RP_ERR;
    }
    return rc;
}

static int parse_queue(struct conf_doc *doc, const struct conf_node *node, struct admit_queue_conf *q)
{
    static const char *const keys[] = {"max_length", "max_wait", "codel", "lifo", "standing_wait", "credit", NULL};
    static const char *const ckeys[] = {"target", "interval", NULL};
    int rc = RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    if (u32_range(doc, conf_get(node, "max_length"), 1, 1000000, &q->max_length) != RP_OK)
        rc = RP_ERR;
    const struct conf_node *mw = conf_get(node, "max_wait");
    if (mw) {
        uint64_t v = q->max_wait_us[ADMIT_INTERACTIVE];
        if (conf_duration_range(doc, mw, 1000, 3600000000ull, &v) == RP_OK)
            for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
                q->max_wait_us[i] = v;
        else
            rc = RP_ERR;
    }
    const struct conf_node *cd = conf_get(node, "codel");
    if (cd) {
        if (conf_expect_map(doc, cd) != RP_OK) {
            rc = RP_ERR;
        } else {
            if (conf_check_keys(doc, cd, ckeys) > 0)
                rc = RP_ERR;
            if (conf_duration_range(doc, conf_get(cd, "target"), 100, 60000000, &q->codel_target_us) != RP_OK)
                rc = RP_ERR;
            if (conf_duration_range(doc, conf_get(cd, "interval"), 1000, 60000000, &q->codel_interval_us) != RP_OK)
                rc = RP_ERR;
        }
    }
    if (conf_bool(doc, conf_get(node, "lifo"), &q->lifo) != RP_OK)
        rc = RP_ERR;
    if (duration_or_auto(doc, conf_get(node, "standing_wait"), 1000, 3600000000ull, &q->standing_wait_us) != RP_OK)
        rc = RP_ERR;
    if (u32_range(doc, conf_get(node, "credit"), 0, 1000, &q->credit) != RP_OK)
        rc = RP_ERR;
    return rc;
}

/* classes: {critical: {max_wait: 30s}, batch: {max_wait: 2s}} */
static int parse_classes(struct conf_doc *doc, const struct conf_node *node, struct admit_queue_conf *q)
{
    static const char *const keys[] = {"critical", "interactive", "batch", NULL};
    static const char *const ckeys[] = {"max_wait", NULL};
    int rc = RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++) {
        const struct conf_node *c = conf_get(node, class_names[i]);
        if (!c)
            continue;
        if (conf_expect_map(doc, c) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        if (conf_check_keys(doc, c, ckeys) > 0)
            rc = RP_ERR;
        if (conf_duration_range(doc, conf_get(c, "max_wait"), 1000, 3600000000ull, &q->max_wait_us[i]) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}

int admit_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct admit_conf *c)
{
    static const char *const keys[] = {"limiter", "queue", "classes", NULL};
    int rc = RP_OK;
    if (!node)
        return RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    const struct conf_node *n;
    if ((n = conf_get(node, "limiter")) && parse_limiter(doc, n, &c->limiter) != RP_OK)
        rc = RP_ERR;
    if ((n = conf_get(node, "queue")) && parse_queue(doc, n, &c->queue) != RP_OK)
        rc = RP_ERR;
    /* After queue: per-class waits override queue.max_wait. */
    if ((n = conf_get(node, "classes")) && parse_classes(doc, n, &c->queue) != RP_OK)
        rc = RP_ERR;
    return rc;
}

/* ---- metrics ---------------------------------------------------------------------- */

static void label_name(struct sbuf *lb, const char *key, const char *name)
{
    sbuf_reset(lb);
    sbuf_adds(lb, key);
    sbuf_adds(lb, "=\"");
    metrics_label_escape(lb, name);
    sbuf_adds(lb, "\"");
}

void admit_metrics_render(struct sbuf *out, void *arg)
{
    RP_UNUSED(arg);
    struct sbuf lb, lb2;
    sbuf_init(&lb, 512);
    sbuf_init(&lb2, 512);

    if (reg_limiters) {
        metrics_family(out, "rampart_admit_limit", "gauge", "Current concurrency limit per server");
        for (struct admit_limiter *l = reg_limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_u64(out, "rampart_admit_limit", lb.data, admit_limit(l));
        }
        metrics_family(out, "rampart_admit_inflight", "gauge", "Requests holding a slot per server");
        for (struct admit_limiter *l = reg_limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_u64(out, "rampart_admit_inflight", lb.data, l->inflight);
        }
        metrics_family(out, "rampart_admit_baseline_seconds", "gauge",
                       "Learned no-queue time to first byte per server");
        for (struct admit_limiter *l = reg_limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_f64(out, "rampart_admit_baseline_seconds", lb.data, l->baseline_us / 1e6);
        }
        metrics_family(out, "rampart_admit_limit_changes_total", "counter", "Adaptive limit changes");
        for (struct admit_limiter *l = reg_limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            sbuf_reset(&lb2);
            sbuf_printf(&lb2, "%s,direction=\"down\"", lb.data);
            metrics_sample_u64(out, "rampart_admit_limit_changes_total", lb2.data, l->decreases);
            sbuf_reset(&lb2);
            sbuf_printf(&lb2, "%s,direction=\"up\"", lb.data);
            metrics_sample_u64(out, "rampart_admit_limit_changes_total", lb2.data, l->increases);
        }
    }
    if (reg_queues) {
        metrics_family(out, "rampart_queue_length", "gauge", "Waiters per upstream and class");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next)
            for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                label_name(&lb, "upstream", q->name);
                sbuf_printf(&lb, ",class=\"%s\"", class_names[c]);
                metrics_sample_u64(out, "rampart_queue_length", lb.data, q->cls[c].len);
            }
        metrics_family(out, "rampart_queue_standing", "gauge", "1 while the queue is standing (LIFO, shedding)");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_sample_u64(out, "rampart_queue_standing", lb.data, q->standing ? 1 : 0);
        }
        metrics_family(out, "rampart_queue_drain_rate", "gauge", "Observed dequeues per second");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_sample_f64(out, "rampart_queue_drain_rate", lb.data, q->drain_rate);
        }
        metrics_family(out, "rampart_queue_dequeued_total", "counter", "Waiters dispatched");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next)
            for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                label_name(&lb, "upstream", q->name);
                sbuf_printf(&lb, ",class=\"%s\"", class_names[c]);
                metrics_sample_u64(out, "rampart_queue_dequeued_total", lb.data, q->dequeued[c]);
            }
        metrics_family(out, "rampart_queue_refused_total", "counter", "Waiters refused, by reason and class");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next)
            for (int r = 1; r < ADMIT_NUM_REASONS; r++)
                for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                    label_name(&lb, "upstream", q->name);
                    sbuf_printf(&lb, ",reason=\"%s\",class=\"%s\"", reason_names[r], class_names[c]);
                    metrics_sample_u64(out, "rampart_queue_refused_total", lb.data, q->dropped[r][c]);
                }
        metrics_family(out, "rampart_queue_wait_seconds", "histogram",
                       "Time waiters spent queued before they were dispatched");
        for (struct admit_queue *q = reg_queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_hist_render(out, "rampart_queue_wait_seconds", lb.data, &q->wait);
        }
    }
    sbuf_free(&lb);
    sbuf_free(&lb2);
}

void admit_metrics_register(void)
{
    if (reg_done)
        return;
    reg_done = true;
    metrics_register(admit_metrics_render, NULL);
}

/*
 * admit_limiter.c — the adaptive (or static) concurrency limiter of one
 * upstream server, and the slot a dispatched request holds on it.  See
 * admit.h for the API and docs/overload.md for the algorithm and why it is
 * shaped this way.
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

#define LATE_FACTOR 3.0        /* pending longer than 3x baseline = queued */
#define LATE_SLACK_US 20000.0  /* ... and than baseline + 20ms (timer noise) */
#define RATE_WINDOW_US 250000u /* completion-rate measurement window */
#define SLOW_START_GAIN 0.5    /* growth per interval before any congestion */
#define LATENCY_TOLERANCE 0.25 /* medians within +25% of baseline are not queueing */
#define LATENCY_FLOOR_US                                                                                               \
    2000.0                    /* ... nor within +2ms: a sub-millisecond backend's
                                  * jitter is not a queue worth shedding for */
#define COLD_FACTOR 3.0       /* slow start: median above 3x the fastest first byte ... */
#define COLD_SLACK_US 20000.0 /* ... and above it + 20ms = a queue in the server */
#define PROBE_LATE_MULT 40.0  /* auto probe interval: at most 40 late thresholds */

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
    /* Listed on /metrics once its owner adds it (admit_metrics_add_limiter). */
    if (name)
        rp_snprintf(l->name, sizeof l->name, "%s", name);
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
    /* The value just pushed is in the window. */
    RP_ASSERT(n > 0);
    if (n == 0)
        return;
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
        double cap =
            beyond ? RP_MAX(1.0, SLOW_START_GAIN * floor(l->limit)) : RP_MAX(1.0, sqrt((double)admit_limit(l)) / 2.0);
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
        bool cold_queue =
            !l->congestion_seen && (double)med > COLD_FACTOR * l->fast_us && (double)med > l->fast_us + COLD_SLACK_US;
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
    bool complete =
        el >= iv && l->ns > 0 && l->done == l->int_done0 && all_answered(l) && l->inflight >= admit_limit(l);
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
    /* A pending or started ticket holds one of the in-flight slots. */
    RP_ASSERT(l->inflight > 0);
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

/* ---- slots ----------------------------------------------------------------------
 *
 * The ticket and the in-flight counts change together, here, so that a
 * count can neither be left behind by a path that forgot it nor taken
 * twice. */

int admit_slot_take(struct admit_slot *s, struct admit_limiter *l, unsigned *server_inflight, uint64_t *total_inflight,
                    uint64_t now_us)
{
    /* A request holds at most one slot at a time. */
    RP_ASSERT(s->lim == NULL);
    if (s->lim)
        return RP_AGAIN;
    if (admit_acquire(l, now_us, &s->ticket) != RP_OK)
        return RP_AGAIN;
    s->lim = l;
    s->server_inflight = server_inflight;
    s->total_inflight = total_inflight;
    if (server_inflight)
        (*server_inflight)++;
    if (total_inflight)
        (*total_inflight)++;
    return RP_OK;
}

void admit_slot_first_byte(struct admit_slot *s, uint64_t now_us)
{
    if (s->lim)
        admit_first_byte(s->lim, &s->ticket, now_us);
}

void admit_slot_give(struct admit_slot *s, uint64_t now_us, enum admit_outcome how)
{
    if (!s->lim)
        return;
    admit_release(s->lim, &s->ticket, now_us, how);
    /* Each count was raised when this slot was taken. */
    if (s->server_inflight) {
        RP_ASSERT(*s->server_inflight > 0);
        if (*s->server_inflight > 0)
            (*s->server_inflight)--;
    }
    if (s->total_inflight) {
        RP_ASSERT(*s->total_inflight > 0);
        if (*s->total_inflight > 0)
            (*s->total_inflight)--;
    }
    s->lim = NULL;
    s->server_inflight = NULL;
    s->total_inflight = NULL;
}

/*
 * loadgen_schedule.c — when requests arrive and what they ask for.
 *
 * Open loop: request k is sent at its scheduled arrival time (fixed rate or
 * Poisson, per phase of a rate schedule) whatever happened to the earlier
 * ones, the way independent users arrive.  A closed-loop tool (a fixed set
 * of connections that each wait for the previous answer) slows its own
 * offered load down exactly when the server is overloaded, which hides the
 * collapse the gateway must prevent.  The arrival timer launches every
 * arrival that is due, in batches so that a generator running behind still
 * lets I/O run between them; the launch lag is recorded per request.
 */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_args.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* the request mix and the schedule                                    */

/* "64" or "32-256". */
bool lg_parse_range(const char *s, int lo, int hi, struct lg_range *r)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (errno || end == s)
        return false;
    if (*end == '-') {
        const char *p = end + 1;
        b = strtol(p, &end, 10);
        if (errno || end == p)
            return false;
    }
    if (*end || a < lo || b > hi || a > b)
        return false;
    r->lo = (int)a;
    r->hi = (int)b;
    return true;
}

/* "name:weight,name:weight" (weight defaults to 1). */
bool lg_parse_mix(const char *s, struct lg_mix *m)
{
    m->n = 0;
    m->total = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        if (len == 0 || m->n == LG_MAX_MIX)
            return false;
        char item[128];
        if (len >= sizeof item)
            return false;
        memcpy(item, s, len);
        item[len] = '\0';
        char *colon = strrchr(item, ':');
        double w = 1;
        if (colon) {
            *colon = '\0';
            if (!tool_parse_double(colon + 1, 0, 1e9, &w))
                return false;
        }
        size_t nl = strlen(item);
        if (nl == 0 || nl >= sizeof m->name[0])
            return false;
        /* Names go into header values: visible ASCII only. */
        for (size_t i = 0; i < nl; i++)
            if (item[i] <= 0x20 || item[i] >= 0x7f || item[i] == ',')
                return false;
        memcpy(m->name[m->n], item, nl + 1);
        m->weight[m->n] = w;
        m->total += w;
        m->n++;
        s += len;
        if (*s == ',')
            s++;
    }
    return m->n > 0 && m->total > 0;
}

int lg_mix_pick(const struct lg_mix *m)
{
    if (m->n == 0)
        return -1;
    double x = rp_rand01() * m->total;
    for (size_t i = 0; i < m->n; i++) {
        if (x < m->weight[i])
            return (int)i;
        x -= m->weight[i];
    }
    return (int)m->n - 1;
}

int lg_range_pick(const struct lg_range *r)
{
    if (r->hi <= r->lo)
        return r->lo;
    return r->lo + (int)(rp_rand64() % (uint64_t)(r->hi - r->lo + 1));
}

/* "1x:20s,5x:30s,1x:20s". */
bool lg_parse_schedule(const char *s)
{
    lg_cfg.nphases = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char item[64];
        if (len == 0 || len >= sizeof item || lg_cfg.nphases == LG_MAX_PHASES)
            return false;
        memcpy(item, s, len);
        item[len] = '\0';
        char *colon = strchr(item, ':');
        if (!colon)
            return false;
        *colon = '\0';
        size_t ml = strlen(item);
        if (ml > 0 && (item[ml - 1] == 'x' || item[ml - 1] == 'X'))
            item[ml - 1] = '\0';
        struct lg_phase *p = &lg_cfg.phases[lg_cfg.nphases];
        if (!tool_parse_double(item, 0, 1e6, &p->mult) || !tool_parse_seconds(colon + 1, &p->dur_s) || p->dur_s <= 0)
            return false;
        lg_cfg.nphases++;
        s += len;
        if (*s == ',')
            s++;
    }
    return lg_cfg.nphases > 0;
}

/* ------------------------------------------------------------------ */
/* arrivals                                                            */

static void finish_run(void);

static bool next_arrival(void)
{
    /* Advance lg.next_arrival within the current phase, moving to the next
     * phase when it runs past the end.  false when the schedule is over. */
    while (lg.phase < lg_cfg.nphases) {
        const struct lg_phase *p = &lg_cfg.phases[lg.phase];
        if (p->rate > 0) {
            double gap = lg_cfg.poisson ? -log(1.0 - rp_rand01()) / p->rate : 1.0 / p->rate;
            double t = lg.next_arrival_f + gap * 1e6;
            if (t < (double)p->end_us) {
                lg.next_arrival_f = t;
                lg.next_arrival = (uint64_t)t;
                return true;
            }
        }
        lg.phase++;
        if (lg.phase < lg_cfg.nphases) {
            /* The first arrival of a phase is at its start (fixed rate) or
             * one exponential gap into it (Poisson). */
            const struct lg_phase *q = &lg_cfg.phases[lg.phase];
            lg.next_arrival = q->start_us;
            lg.next_arrival_f = (double)q->start_us;
            if (q->rate > 0 && !lg_cfg.poisson)
                return true;
        }
    }
    return false;
}

static void arrive_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    uint64_t now = ev_update_now(loop);
    for (int i = 0; i < LG_LAUNCH_BATCH; i++) {
        if (lg.t0 + lg.next_arrival > now) {
            ev_timer_arm_at(loop, &lg.arrive, lg.t0 + lg.next_arrival);
            return;
        }
        lg_launch(lg.next_arrival, lg.phase);
        if (!next_arrival()) {
            lg.arrivals_done = true;
            finish_run();
            return;
        }
    }
    ev_timer_arm_at(loop, &lg.arrive, now); /* behind: let I/O run, then continue */
}

static void drain_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    lg_finish_all();
    ev_stop(loop);
}

static void finish_run(void)
{
    /* Arrivals are over; the run ends when the last request has finished
     * or the drain time has passed. */
    ev_timer_arm(lg.loop, &lg.drain, (uint64_t)(lg_cfg.drain_s * 1e6));
    if (lg.ninflight == 0)
        ev_stop(lg.loop);
}

static void progress_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    double el = (double)(ev_now(loop) - lg.t0) / 1e6;
    fprintf(stderr, "loadgen: t=%.0fs phase=%zu sent=%zu in_flight=%ld done=%llu ok=%llu\n", el,
            RP_MIN(lg.phase + 1, lg_cfg.nphases), lg_nresults, lg.ninflight, (unsigned long long)lg.done_count,
            (unsigned long long)lg.ok_count);
    ev_timer_arm(loop, &lg.progress, 1000000);
}

void lg_schedule_start(void)
{
    ev_timer_init(&lg.arrive, arrive_cb, NULL);
    ev_timer_init(&lg.drain, drain_cb, NULL);
    ev_timer_init(&lg.progress, progress_cb, NULL);

    /* Start a few milliseconds out so the first arrivals are not late. */
    lg.t0 = ev_update_now(lg.loop) + 5000;
    lg.phase = 0;
    lg.next_arrival = 0;
    /* A fixed-rate run starts with an arrival at 0; a Poisson run (or one
     * whose first phase is idle) one gap later. */
    if ((lg_cfg.phases[0].rate <= 0 || lg_cfg.poisson) && !next_arrival())
        lg.arrivals_done = true;
    if (lg.arrivals_done)
        finish_run();
    else
        ev_timer_arm_at(lg.loop, &lg.arrive, lg.t0 + lg.next_arrival);
    if (lg_cfg.progress)
        ev_timer_arm(lg.loop, &lg.progress, 1000000);
}

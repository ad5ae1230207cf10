/*
 * status_model.c — what the traffic says: samples into rings, live status
 * with hysteresis, the effective status of each component, minute rollups
 * flushed to the store, and the tick that drives it all (see status.h and
 * status_int.h).
 *
 * Hot path: status_observe() finds two ring slots by index arithmetic,
 * clears a slot whose period has passed, and adds to counters.  No lock (one
 * thread), no allocation, no I/O.  A minute slot is reused after 128
 * minutes; if the store was unable to take it by then, the minute is counted
 * as dropped rather than blocking the proxy.
 */
#include "status_int.h"
#include "util.h"

#include <string.h>

const uint64_t status_hist_bounds_us[STORE_HIST_BUCKETS - 1] = {
    25000,   50000,   100000,  200000,  350000,  500000,   750000,   1000000,
    1500000, 2000000, 3000000, 5000000, 8000000, 13000000, 20000000,
};

/* ===================================================================== */
/* pure logic: live status and burn rate                                 */
/* ===================================================================== */

void status_live_init(struct status_live *l)
{
    memset(l, 0, sizeof *l);
    l->level = STATUSPAGE_NO_DATA;
    l->last_known = STATUSPAGE_NO_DATA;
}

int status_live_classify(const struct status_conf *sc, const struct status_counts *w)
{
    if (w->eligible == 0 || w->eligible < sc->min_requests)
        return -1;
    double n = (double)w->eligible;
    double avail = 1.0 - (double)w->errors / n;
    double good = 1.0 - (double)(w->errors + w->slow) / n;
    if (avail < sc->major_below)
        return STATUSPAGE_MAJOR_OUTAGE;
    if (avail < sc->partial_below)
        return STATUSPAGE_PARTIAL_OUTAGE;
    if (good < sc->degraded_below)
        return STATUSPAGE_DEGRADED_PERFORMANCE;
    return STATUSPAGE_OPERATIONAL;
}

static bool live_set(struct status_live *l, int level, uint64_t now)
{
    if (level == l->level)
        return false;
    bool down = level != STATUSPAGE_NO_DATA && l->level != STATUSPAGE_NO_DATA && level < l->level;
    l->level = level;
    if (level != STATUSPAGE_NO_DATA)
        l->last_known = level;
    l->changed_at = now;
    /* Stepping down keeps the calm clocks of the levels further below (a
     * partial outage that has been quiet for 90 s needs only 30 s more to
     * reach operational); anything else starts them over. */
    for (int lv = 0; lv < (int)RP_ARRAY_LEN(l->calm_since); lv++)
        if (!down || lv >= level)
            l->calm_since[lv] = 0;
    return true;
}

bool status_live_step(struct status_live *l, const struct status_conf *sc, const struct status_counts *w, uint64_t now)
{
    if (w->eligible > 0)
        l->last_traffic = now;
    int cand = status_live_classify(sc, w);
    if (cand < 0) {
        /* Too little traffic to judge: keep what we know, until silence
         * has lasted long enough that showing it would be a guess. */
        if (w->eligible == 0 && l->level != STATUSPAGE_NO_DATA && now - l->last_traffic >= sc->no_data_after_us)
            return live_set(l, STATUSPAGE_NO_DATA, now);
        return false;
    }
    if (l->level == STATUSPAGE_NO_DATA || cand > l->level)
        return live_set(l, cand, now); /* worse news shows at once */
    /* Better news only once it has held for the whole quiet period: for
     * every level below the shown one, remember since when the verdicts
     * have stayed at or below it, and step down to the lowest level that
     * has been calm long enough.  Any worse verdict restarts the clocks
     * of the levels it exceeds. */
    int target = l->level;
    for (int lv = l->level - 1; lv >= STATUSPAGE_OPERATIONAL; lv--) {
        if (cand > lv) {
            l->calm_since[lv] = 0;
            continue;
        }
        if (l->calm_since[lv] == 0)
            l->calm_since[lv] = now;
        if (now - l->calm_since[lv] >= sc->recover_after_us)
            target = lv;
    }
    return target != l->level ? live_set(l, target, now) : false;
}

double status_burn_rate(const struct status_counts *w, double target)
{
    if (w->eligible == 0)
        return 0.0;
    double budget = 1.0 - target;
    if (budget <= 0)
        budget = 1e-9;
    return ((double)(w->errors + w->slow) / (double)w->eligible) / budget;
}

/* ===================================================================== */
/* hot path                                                              */
/* ===================================================================== */

struct minute_slot *status_minute_slot(struct status *st, struct comp *c, int64_t minute)
{
    struct minute_slot *m = &c->mins[(uint64_t)minute % MINUTE_RING];
    if (m->minute != minute) {
        if (!m->flushed && (m->total || m->worst >= STATUSPAGE_UNDER_MAINTENANCE))
            st->dropped_minutes++;
        memset(m, 0, sizeof *m);
        m->minute = minute;
    }
    return m;
}

static int hist_bucket(uint64_t us)
{
    int i = 0;
    while (i < STORE_HIST_BUCKETS - 1 && us > status_hist_bounds_us[i])
        i++;
    return i;
}

enum sample_class { SAMPLE_EXCLUDED, SAMPLE_GOOD, SAMPLE_ERROR, SAMPLE_SLOW };

void status_observe(struct status *st, int component, int http_status, uint64_t ttfb_us, uint64_t total_us,
                    bool quota_refusal, uint64_t now_us)
{
    if (!st || component < 0 || (size_t)component >= st->ncomps)
        return;
    struct comp *c = &st->comps[component];
    int64_t wall = (int64_t)now_us + st->wall_off_us;
    if (wall < 0)
        return;
    bool answered = http_status != 0 && http_status != 499;
    enum sample_class k;
    if (quota_refusal)
        k = SAMPLE_EXCLUDED;
    else if (!answered)
        k = total_us > c->latency_us ? SAMPLE_SLOW : SAMPLE_EXCLUDED;
    else if (http_status >= 500)
        k = SAMPLE_ERROR;
    else if (ttfb_us > c->latency_us)
        k = SAMPLE_SLOW;
    else
        k = SAMPLE_GOOD;

    int64_t idx = wall / (int64_t)SLOT_US;
    struct fine_slot *f = &c->fine[(uint64_t)idx % c->nfine];
    if (f->idx != idx) {
        memset(f, 0, sizeof *f);
        f->idx = idx;
    }
    struct minute_slot *m = status_minute_slot(st, c, wall / (int64_t)MINUTE_US);
    f->total++;
    m->total++;
    /* During announced maintenance failures are expected: they stay in the
     * minute rollups (uptime is what users got) but not in the windows
     * that drive live status and automatic incidents. */
    if (c->in_maintenance && k != SAMPLE_EXCLUDED)
        f->excluded++;
    switch (k) {
    case SAMPLE_EXCLUDED: f->excluded++, m->excluded++, c->n_excluded++; break;
    case SAMPLE_ERROR:
        m->errors++, c->n_errors++;
        if (!c->in_maintenance)
            f->errors++;
        break;
    case SAMPLE_SLOW:
        m->slow++, c->n_slow++;
        if (!c->in_maintenance)
            f->slow++;
        break;
    case SAMPLE_GOOD: c->n_good++; break;
    }
    if (answered && !quota_refusal && http_status < 500)
        m->hist[hist_bucket(ttfb_us)]++;
}

/* ===================================================================== */
/* windows and effective status                                          */
/* ===================================================================== */

/* Sum of the slots covering the last span_us (the current, partial slot
 * included). */
void status_window_sum(const struct comp *c, int64_t wall, uint64_t span_us, struct status_counts *out)
{
    int64_t now_idx = wall / (int64_t)SLOT_US;
    size_t n = (size_t)((span_us + SLOT_US - 1) / SLOT_US);
    if (n > c->nfine)
        n = c->nfine;
    memset(out, 0, sizeof *out);
    for (size_t k = 0; k < n; k++) {
        int64_t idx = now_idx - (int64_t)k;
        const struct fine_slot *f = &c->fine[(uint64_t)idx % c->nfine];
        if (f->idx != idx)
            continue;
        RP_ASSERT(status_slot_sane(f->total, f->excluded, f->errors, f->slow));
        if (!status_slot_sane(f->total, f->excluded, f->errors, f->slow))
            continue;
        out->eligible += f->total - f->excluded;
        out->errors += f->errors;
        out->slow += f->slow;
    }
}

/* "Now" for work not driven by a tick (admin requests): the loop's clock,
 * or with a pinned test clock the time of the last tick. */
uint64_t status_loop_now(const struct status *st)
{
    if (st->loop)
        return ev_now(st->loop);
    return st->clock_pinned ? st->last_now_us : rp_now_us();
}

/* What component c shows: the one place that decides it, read by the
 * badges, the banner, the JSON, the feeds and the metrics (through
 * c->effective and c->reported).
 *   - the measured verdict (live status with hysteresis), or "no data";
 *   - an operator's statement in an open incident can make it look worse,
 *     never better: only a statement worse than operational counts, so
 *     "operational" written over an outage, or over a silence where
 *     nothing was measured, changes nothing;
 *   - during an announced maintenance it is under_maintenance (failures
 *     were expected and announced), unless an operator states worse.
 * *maint says whether a maintenance is in progress for c. */
static int component_shows(const struct status *st, const struct comp *c, bool *maint)
{
    int stated = STATUSPAGE_NO_DATA;
    *maint = false;
    for (size_t k = 0; k < st->nview; k++) {
        const struct store_incident *inc = &st->view[k];
        if (statuspage_istatus_done(inc->status))
            continue;
        if (inc->maintenance) {
            if (inc->status != STATUSPAGE_IN_PROGRESS && inc->status != STATUSPAGE_VERIFYING)
                continue;
            for (size_t j = 0; j < inc->num_components; j++)
                if (strcmp(inc->components[j], c->code) == 0)
                    *maint = true;
            continue;
        }
        /* The newest operator update naming the component decides. */
        bool decided = false;
        for (size_t u = 0; u < inc->num_updates && !decided; u++) {
            const struct store_update *up = &inc->updates[u];
            for (size_t a = 0; a < up->num_affected; a++) {
                if (strcmp(up->affected[a].code, c->code) != 0)
                    continue;
                decided = true;
                if (!up->automatic && up->affected[a].new_status > stated)
                    stated = up->affected[a].new_status;
                break;
            }
        }
    }
    /* Operational is not a statement about the service: it is the absence
     * of one, and must not cover what was (or was not) measured. */
    if (stated <= STATUSPAGE_OPERATIONAL)
        stated = STATUSPAGE_NO_DATA;
    if (*maint)
        return stated > STATUSPAGE_UNDER_MAINTENANCE ? stated : STATUSPAGE_UNDER_MAINTENANCE;
    return stated > c->live.level ? stated : c->live.level;
}

/* Effective status of every component (component_shows), and what the
 * JSON reports where the page says "no data" (the API has no such
 * status: the last level measured, else operational). */
void status_recompute(struct status *st, uint64_t now_us)
{
    int64_t now_ms = status_now_ms(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        bool maint = false;
        int eff = component_shows(st, c, &maint);
        c->in_maintenance = maint;
        int rep = eff;
        if (rep == STATUSPAGE_NO_DATA)
            rep = c->live.last_known != STATUSPAGE_NO_DATA ? c->live.last_known : STATUSPAGE_OPERATIONAL;
        if (eff != c->effective || rep != c->reported) {
            c->effective = eff;
            c->reported = rep;
            c->updated_ms = now_ms;
            st->dirty = true;
        }
        struct minute_slot *m = status_minute_slot(st, c, status_wall_us(st, now_us) / (int64_t)MINUTE_US);
        if (eff > m->worst)
            m->worst = (uint8_t)eff;
    }
}

/* ===================================================================== */
/* rollups: flush                                                        */
/* ===================================================================== */

static void day_add(struct comp *c, int64_t minute, uint64_t eligible, uint64_t good, int worst)
{
    int64_t day = minute >= 0 ? minute / 1440 : -((-minute + 1439) / 1440);
    struct day_slot *d = &c->days[(uint64_t)day % DAY_RING];
    if (d->day != day) {
        memset(d, 0, sizeof *d);
        d->day = day;
    }
    d->eligible += eligible;
    d->good += good;
    if (worst > d->worst)
        d->worst = (uint8_t)worst;
}

bool status_minute_has_data(const struct minute_slot *m)
{
    return m->total > 0 || m->worst >= STATUSPAGE_UNDER_MAINTENANCE;
}

/* Write every completed minute (or, at shutdown, every minute) not yet
 * stored, in one transaction. */
void status_flush_minutes(struct status *st, int64_t before_minute)
{
    size_t n = 0;
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        for (size_t k = 0; k < MINUTE_RING; k++) {
            const struct minute_slot *m = &c->mins[k];
            if (m->flushed || m->minute >= before_minute || !status_minute_has_data(m))
                continue;
            RP_ASSERT(status_slot_sane(m->total, m->excluded, m->errors, m->slow));
            struct store_rollup *r = &st->rows[n++];
            r->cid = c->cid;
            r->t = m->minute;
            r->total = m->total;
            r->excluded = m->excluded;
            r->errors = m->errors;
            r->slow = m->slow;
            r->worst = m->worst;
            memcpy(r->hist, m->hist, sizeof r->hist);
        }
    }
    if (n && store_minutes_put(st->store, st->rows, n) != RP_OK) {
        st->store_errors++;
        return; /* kept in memory; retried */
    }
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        for (size_t k = 0; k < MINUTE_RING; k++) {
            struct minute_slot *m = &c->mins[k];
            if (m->flushed || m->minute >= before_minute || !status_minute_has_data(m))
                continue;
            m->flushed = true;
            if (!status_slot_sane(m->total, m->excluded, m->errors, m->slow))
                continue; /* asserted above; keep the daily bar sane */
            uint64_t elig = m->total - m->excluded;
            day_add(c, m->minute, elig, elig - m->errors - m->slow, m->worst);
        }
    }
    st->flush_minute = before_minute;
}

/* ===================================================================== */
/* tick                                                                  */
/* ===================================================================== */

void status_tick(struct status *st, uint64_t now_us)
{
    st->last_now_us = now_us;
    if (!st->clock_pinned)
        st->wall_off_us = rp_wall_ms() * 1000 - (int64_t)rp_now_us();
    int64_t wall = status_wall_us(st, now_us);

    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        struct status_counts w;
        status_window_sum(c, wall, st->sc->window_us, &w);
        if (status_live_step(&c->live, st->sc, &w, now_us))
            st->dirty = true;
    }

    bool wrote = status_maintenance_eval(st, now_us);
    if (wrote)
        status_reload_view(st, now_us);
    status_recompute(st, now_us);

    if (st->sc->auto_incidents && (st->last_burn_us == 0 || now_us - st->last_burn_us >= BURN_EVERY_US)) {
        st->last_burn_us = now_us;
        if (status_burn_eval(st, now_us)) {
            status_reload_view(st, now_us);
            status_recompute(st, now_us);
        }
    }

    int64_t cur_minute = wall / (int64_t)MINUTE_US;
    if (cur_minute > st->flush_minute &&
        (st->last_flush_try_us == 0 || now_us - st->last_flush_try_us >= FLUSH_RETRY_US)) {
        st->last_flush_try_us = now_us;
        status_flush_minutes(st, cur_minute);
        if (st->flush_minute == cur_minute)
            st->last_flush_try_us = 0;
    }
    if (st->last_fold_us == 0 || now_us - st->last_fold_us >= FOLD_EVERY_US) {
        st->last_fold_us = now_us;
        int64_t keep = (int64_t)(st->sc->retention_us / MINUTE_US);
        if (store_fold(st->store, cur_minute - keep) < 0)
            st->store_errors++;
    }

    if (st->dirty || !st->built || now_us - st->last_build_us >= st->sc->refresh_us)
        status_rebuild(st, now_us);
}

void status_timer_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct status *st = arg;
    status_tick(st, ev_now(loop));
    ev_timer_arm(loop, t, TICK_US);
}

void status_set_clock(struct status *st, int64_t wall_minus_mono_us, uint64_t now_us)
{
    st->wall_off_us = wall_minus_mono_us;
    st->clock_pinned = true;
    st->last_now_us = now_us;
    st->last_fold_us = st->last_burn_us = st->last_flush_try_us = 0;
    if (status_load_history(st, now_us) != RP_OK)
        st->store_errors++;
    status_tick(st, now_us);
}

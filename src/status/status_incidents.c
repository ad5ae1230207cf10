/*
 * status_incidents.c — incidents the gateway writes itself: the incident
 * view every document is built from, automatic incidents from multi-window
 * burn rates, the maintenance clock, incidents reported by release control,
 * and the stored release verdicts of canaries (see status.h).
 *
 * Every write to incidents goes "load from store, change, write in one
 * transaction, reload the view", so the view never disagrees with what is on
 * disk and a crash between steps loses nothing that was acknowledged.
 */
#include "status_int.h"
#include "canary.h"
#include "util.h"

#include <string.h>

/* ===================================================================== */
/* incident view                                                         */
/* ===================================================================== */

int status_comp_index(const struct status *st, const char *code)
{
    for (size_t i = 0; i < st->ncomps; i++)
        if (strcmp(st->comps[i].code, code) == 0)
            return (int)i;
    return -1;
}

/* Re-associate open automatic incidents with their components. */
static void rebind_auto(struct status *st)
{
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        int64_t found = 0;
        bool monitoring = false;
        for (size_t k = 0; k < st->nview && !found; k++) {
            const struct store_incident *inc = &st->view[k];
            if (!inc->maintenance && inc->automatic && !statuspage_istatus_done(inc->status) &&
                strcmp(inc->auto_code, c->code) == 0) {
                found = inc->id;
                monitoring = inc->status == STATUSPAGE_MONITORING;
            }
        }
        c->auto_monitoring = monitoring;
        if (c->auto_id && !found)
            c->armed = false; /* an operator closed it: wait for the burn to stop */
        c->auto_id = found;
    }
}

void status_reload_view(struct status *st, uint64_t now_us)
{
    struct store_incident *v = NULL;
    size_t n = 0;
    int64_t since_ms = status_now_ms(st, now_us) - VIEW_DAYS * DAY_MS;
    if (store_incidents_load(st->store, since_ms, VIEW_RECENT, VIEW_CAP, &v, &n) != RP_OK) {
        st->store_errors++;
        return;
    }
    store_incidents_free(st->view, st->nview);
    st->view = v;
    st->nview = n;
    rebind_auto(st);
    st->dirty = true;
}

/* ===================================================================== */
/* writing incidents                                                     */
/* ===================================================================== */

void status_incident_set_status(struct store_incident *inc, int status, int64_t now_ms)
{
    inc->status = status;
    inc->updated_ms = now_ms;
    if (status == STATUSPAGE_MONITORING && !inc->monitoring_ms)
        inc->monitoring_ms = now_ms;
    if (status == STATUSPAGE_IN_PROGRESS && inc->maintenance)
        inc->started_ms = now_ms;
    if (statuspage_istatus_done(status)) {
        if (!inc->resolved_ms)
            inc->resolved_ms = now_ms;
    } else {
        inc->resolved_ms = 0; /* reopened */
    }
}

void status_incident_add_component(struct store_incident *inc, const char *code)
{
    for (size_t i = 0; i < inc->num_components; i++)
        if (strcmp(inc->components[i], code) == 0)
            return;
    if (inc->num_components >= STORE_MAX_AFFECTED)
        return;
    if (!inc->components)
        inc->components = rp_xcalloc(STORE_MAX_AFFECTED, STORE_CODE_MAX);
    rp_snprintf(inc->components[inc->num_components++], STORE_CODE_MAX, "%s", code);
}

int status_write_new(struct status *st, struct store_incident *inc, struct store_update *u)
{
    if (store_begin(st->store) != RP_OK)
        goto fail;
    if (store_incident_insert(st->store, inc, u) != RP_OK) {
        store_rollback(st->store);
        goto fail;
    }
    if (store_commit(st->store) != RP_OK)
        goto fail;
    return RP_OK;
fail:
    st->store_errors++;
    return RP_ERR;
}

int status_write_update(struct status *st, struct store_incident *inc, struct store_update *u)
{
    if (store_begin(st->store) != RP_OK)
        goto fail;
    if (store_incident_save(st->store, inc) != RP_OK || (u && store_update_insert(st->store, inc->id, u) != RP_OK)) {
        store_rollback(st->store);
        goto fail;
    }
    if (store_commit(st->store) != RP_OK)
        goto fail;
    return RP_OK;
fail:
    st->store_errors++;
    return RP_ERR;
}

/* ===================================================================== */
/* automatic incidents and the maintenance clock                         */
/* ===================================================================== */

static void fmt_span(char *out, size_t cap, uint64_t us)
{
    uint64_t s = us / 1000000;
    if (s % 3600 == 0 && s >= 3600)
        rp_snprintf(out, cap, "%llu hour%s", (unsigned long long)(s / 3600), s == 3600 ? "" : "s");
    else if (s % 60 == 0 && s >= 60)
        rp_snprintf(out, cap, "%llu minute%s", (unsigned long long)(s / 60), s == 60 ? "" : "s");
    else
        rp_snprintf(out, cap, "%llu seconds", (unsigned long long)s);
}

static void fmt_latency(char *out, size_t cap, uint64_t us)
{
    if (us < 1000000)
        rp_snprintf(out, cap, "%llu ms", (unsigned long long)(us / 1000));
    else
        rp_snprintf(out, cap, "%g s", (double)us / 1e6);
}

static void auto_open(struct status *st, struct comp *c, size_t rule, const struct status_counts *lw,
                      const struct status_counts *sw, uint64_t now_us)
{
    const struct status_burn_rule *r = &st->sc->rules[rule];
    int64_t now_ms = status_now_ms(st, now_us);
    char name[256], body[1024], ls[32], ss[32], lat[32];
    double short_bad = sw->eligible ? 100.0 * (double)(sw->errors + sw->slow) / (double)sw->eligible : 0;
    double long_bad = lw->eligible ? 100.0 * (double)(lw->errors + lw->slow) / (double)lw->eligible : 0;
    fmt_span(ls, sizeof ls, r->long_us);
    fmt_span(ss, sizeof ss, r->short_us);
    fmt_latency(lat, sizeof lat, c->latency_us);
    if (sw->errors >= sw->slow)
        rp_snprintf(name, sizeof name, "Elevated error rate on %s", c->name);
    else
        rp_snprintf(name, sizeof name, "Slow responses on %s", c->name);
    rp_snprintf(body, sizeof body,
                "rampart measured that %.1f%% of requests to %s failed or took longer than %s to start "
                "answering over the last %s (%.1f%% over the last %s). At this rate the %.4g%% objective's error "
                "budget burns %.1f times too fast. This incident was opened automatically; we are investigating.",
                short_bad, c->name, lat, ss, long_bad, ls, c->target * 100.0, status_burn_rate(sw, c->target));

    struct store_incident inc;
    memset(&inc, 0, sizeof inc);
    inc.name = name;
    inc.status = STATUSPAGE_INVESTIGATING;
    inc.impact = c->live.level == STATUSPAGE_MAJOR_OUTAGE ? STATUSPAGE_IMPACT_CRITICAL
                 : rule == 0                              ? STATUSPAGE_IMPACT_MAJOR
                                                          : STATUSPAGE_IMPACT_MINOR;
    inc.automatic = true;
    rp_snprintf(inc.auto_code, sizeof inc.auto_code, "%s", c->code);
    inc.created_ms = inc.updated_ms = inc.started_ms = now_ms;
    char comps[1][STORE_CODE_MAX];
    rp_snprintf(comps[0], STORE_CODE_MAX, "%s", c->code);
    inc.components = comps;
    inc.num_components = 1;

    struct store_affected aff;
    rp_snprintf(aff.code, sizeof aff.code, "%s", c->code);
    aff.old_status = c->reported;
    aff.new_status = c->live.level > STATUSPAGE_OPERATIONAL ? c->live.level : STATUSPAGE_DEGRADED_PERFORMANCE;
    struct store_update u = {0};
    u.status = STATUSPAGE_INVESTIGATING;
    u.body = body;
    u.created_ms = u.updated_ms = u.display_ms = now_ms;
    u.automatic = true;
    u.affected = &aff;
    u.num_affected = 1;
    if (status_write_new(st, &inc, &u) == RP_OK) {
        c->auto_id = inc.id;
        c->auto_monitoring = false;
        st->auto_opened++;
        rp_log_info("status: opened incident \"%s\" (burn rate %.1fx over %s)", name, status_burn_rate(sw, c->target),
                    ss);
    }
}

/* An incident reported by another subsystem (a canary rolled back by
 * release control).  It is opened in "monitoring": the cause is known and
 * already mitigated when it is reported, and users who saw errors deserve
 * to read why. */
int status_report_incident(struct status *st, int upstream_idx, const char *name, const char *body, uint64_t now_us)
{
    if (!st || !st->store)
        return RP_ERR;
    int ci = status_component_for(st, upstream_idx, "", 0);
    int64_t now_ms = status_now_ms(st, now_us);
    struct store_incident inc;
    memset(&inc, 0, sizeof inc);
    inc.name = (char *)name;
    inc.status = STATUSPAGE_MONITORING;
    inc.impact = STATUSPAGE_IMPACT_MINOR;
    inc.automatic = true;
    inc.created_ms = inc.updated_ms = inc.started_ms = now_ms;
    inc.monitoring_ms = now_ms;
    char comps[1][STORE_CODE_MAX];
    struct store_affected aff;
    struct store_update u = {0};
    if (ci >= 0) {
        struct comp *c = &st->comps[ci];
        rp_snprintf(comps[0], STORE_CODE_MAX, "%s", c->code);
        inc.components = comps;
        inc.num_components = 1;
        rp_snprintf(aff.code, sizeof aff.code, "%s", c->code);
        aff.old_status = c->reported;
        aff.new_status = c->reported;
        u.affected = &aff;
        u.num_affected = 1;
    }
    u.status = STATUSPAGE_MONITORING;
    u.body = (char *)body;
    u.created_ms = u.updated_ms = u.display_ms = now_ms;
    u.automatic = true;
    if (status_write_new(st, &inc, &u) != RP_OK)
        return RP_ERR;
    rp_log_info("status: opened incident \"%s\"", name);
    /* The page and the feeds are built from the view: without a reload
     * the incident would only show after the next unrelated write. */
    status_reload_view(st, now_us);
    status_refresh(st);
    return RP_OK;
}

/* Post an automatic update to c's open automatic incident: its new
 * status, what the component is now, and why (body).  RP_OK when it was
 * written; the incident is forgotten (auto_id 0) when the store no longer
 * has it or it is already done. */
static int auto_post(struct status *st, struct comp *c, int status, int comp_status, char *body, uint64_t now_us)
{
    struct store_incident inc;
    bool found = false;
    int64_t now_ms = status_now_ms(st, now_us);
    if (store_incident_get(st->store, c->auto_id, &inc, &found) != RP_OK) {
        st->store_errors++;
        return RP_ERR;
    }
    if (!found) {
        c->auto_id = 0;
        return RP_ERR;
    }
    int rc = RP_ERR;
    if (!statuspage_istatus_done(inc.status)) {
        struct store_affected aff;
        rp_snprintf(aff.code, sizeof aff.code, "%s", c->code);
        aff.old_status = c->reported;
        aff.new_status = comp_status;
        struct store_update u = {0};
        u.status = status;
        u.body = body;
        u.created_ms = u.updated_ms = u.display_ms = now_ms;
        u.automatic = true;
        u.affected = &aff;
        u.num_affected = 1;
        status_incident_set_status(&inc, status, now_ms);
        rc = status_write_update(st, &inc, &u);
        if (rc == RP_OK)
            rp_log_info("status: incident \"%s\" is now %s", inc.name, statuspage_istatus_name(status));
    } else {
        c->auto_id = 0;
    }
    store_incident_clear(&inc);
    return rc;
}

/* The share of requests answered well (neither failed nor slow) in the
 * live window, in percent; -1 when the window holds none. */
static double live_good_pct(const struct status *st, const struct comp *c, uint64_t now_us)
{
    struct status_counts w;
    status_window_sum(c, status_wall_us(st, now_us), st->sc->window_us, &w);
    if (!w.eligible)
        return -1.0;
    return 100.0 * (double)(w.eligible - RP_MIN(w.eligible, w.errors + w.slow)) / (double)w.eligible;
}

/* The component recovered while its incident was investigating: say so
 * with the figures, and that it resolves itself after resolve_after. */
static void auto_monitor(struct status *st, struct comp *c, uint64_t now_us)
{
    char body[640], win[32], span[32];
    fmt_span(win, sizeof win, st->sc->window_us);
    fmt_span(span, sizeof span, st->sc->resolve_after_us);
    double good = live_good_pct(st, c, now_us);
    rp_snprintf(body, sizeof body,
                "Requests to %s are being answered normally again: %.1f%% were answered well over the last %s. "
                "rampart is monitoring, and will resolve this incident automatically after %s of sustained "
                "health.",
                c->name, good < 0 ? 100.0 : good, win, span);
    if (auto_post(st, c, STATUSPAGE_MONITORING, STATUSPAGE_OPERATIONAL, body, now_us) == RP_OK)
        c->auto_monitoring = true;
}

/* It failed again while monitoring: back to investigating, in the same
 * incident (the users reading it see one story, not two incidents). */
static void auto_relapse(struct status *st, struct comp *c, uint64_t now_us)
{
    char body[640], win[32];
    fmt_span(win, sizeof win, st->sc->window_us);
    double good = live_good_pct(st, c, now_us);
    rp_snprintf(body, sizeof body,
                "Requests to %s are failing again: %.1f%% failed or were slow to start over the last %s. "
                "We are investigating.",
                c->name, good < 0 ? 0.0 : 100.0 - good, win);
    int level = c->live.level > STATUSPAGE_OPERATIONAL ? c->live.level : STATUSPAGE_DEGRADED_PERFORMANCE;
    if (auto_post(st, c, STATUSPAGE_INVESTIGATING, level, body, now_us) == RP_OK)
        c->auto_monitoring = false;
}

static void auto_resolve(struct status *st, struct comp *c, uint64_t now_us)
{
    char body[512], span[32];
    fmt_span(span, sizeof span, st->sc->resolve_after_us);
    rp_snprintf(body, sizeof body,
                "Requests to %s have met the objective for %s and the error budget is no longer burning "
                "fast. rampart resolved this incident automatically.",
                c->name, span);
    if (auto_post(st, c, STATUSPAGE_RESOLVED, STATUSPAGE_OPERATIONAL, body, now_us) == RP_OK)
        st->auto_resolved++;
    c->auto_id = 0;
    c->auto_monitoring = false;
}

/* Multi-window burn rates: a rule fires when both its long and short
 * windows burn at least `factor` times the budget; the short window makes
 * the alert stop soon after recovery, the long one keeps a blip quiet. */
bool status_burn_eval(struct status *st, uint64_t now_us)
{
    bool wrote = false;
    int64_t wall = status_wall_us(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        int fired = -1;
        struct status_counts lw = {0}, sw = {0};
        for (size_t r = 0; r < st->sc->num_rules && fired < 0 && !c->in_maintenance; r++) {
            const struct status_burn_rule *rule = &st->sc->rules[r];
            status_window_sum(c, wall, rule->long_us, &lw);
            status_window_sum(c, wall, rule->short_us, &sw);
            if (lw.eligible < st->sc->min_requests || sw.eligible < st->sc->min_requests)
                continue;
            if (status_burn_rate(&lw, c->target) >= rule->factor && status_burn_rate(&sw, c->target) >= rule->factor)
                fired = (int)r;
        }
        /* The incident follows the service: monitoring as soon as the
         * live state (which has its own quiet period) is operational
         * again, investigating again if it relapses meanwhile. */
        bool healthy = c->live.level == STATUSPAGE_OPERATIONAL && !c->in_maintenance;
        if (c->auto_id && healthy && !c->auto_monitoring) {
            auto_monitor(st, c, now_us);
            wrote = true;
        } else if (c->auto_id && c->auto_monitoring && c->live.level > STATUSPAGE_OPERATIONAL) {
            auto_relapse(st, c, now_us);
            wrote = true;
        }
        if (fired >= 0) {
            c->calm_since = 0;
            if (!c->auto_id && c->armed) {
                auto_open(st, c, (size_t)fired, &lw, &sw, now_us);
                wrote = true;
            }
            continue;
        }
        c->armed = true;
        if (!c->auto_id)
            continue;
        /* Resolving needs evidence: traffic judged operational,
         * continuously, for resolve_after, with the burn windows quiet. */
        if (!healthy) {
            c->calm_since = 0;
            continue;
        }
        if (c->calm_since == 0)
            c->calm_since = now_us;
        if (now_us - c->calm_since >= st->sc->resolve_after_us) {
            auto_resolve(st, c, now_us);
            c->calm_since = 0;
            wrote = true;
        }
    }
    return wrote;
}

/* Scheduled maintenance moves itself: scheduled -> in_progress at its
 * start, -> completed at its end (straight to completed when both times
 * have passed, e.g. after downtime). */
bool status_maintenance_eval(struct status *st, uint64_t now_us)
{
    int64_t now_ms = status_now_ms(st, now_us);
    int64_t due[16];
    size_t ndue = 0;
    for (size_t k = 0; k < st->nview && ndue < RP_ARRAY_LEN(due); k++) {
        const struct store_incident *m = &st->view[k];
        if (!m->maintenance || !m->auto_transition || statuspage_istatus_done(m->status))
            continue;
        if (now_ms >= m->scheduled_until_ms || (m->status == STATUSPAGE_SCHEDULED && now_ms >= m->scheduled_for_ms))
            due[ndue++] = m->id;
    }
    for (size_t d = 0; d < ndue; d++) {
        struct store_incident inc;
        bool found = false;
        if (store_incident_get(st->store, due[d], &inc, &found) != RP_OK) {
            st->store_errors++;
            continue;
        }
        if (!found)
            continue;
        int next = now_ms >= inc.scheduled_until_ms ? STATUSPAGE_COMPLETED : STATUSPAGE_IN_PROGRESS;
        struct store_affected aff[STORE_MAX_AFFECTED];
        struct store_update u = {0};
        u.status = next;
        u.body = next == STATUSPAGE_COMPLETED ? "The scheduled maintenance has been completed."
                                              : "Scheduled maintenance is currently in progress. We will provide "
                                                "updates as necessary.";
        u.created_ms = u.updated_ms = u.display_ms = now_ms;
        u.automatic = true;
        for (size_t j = 0; j < inc.num_components && u.num_affected < STORE_MAX_AFFECTED; j++) {
            int ci = status_comp_index(st, inc.components[j]);
            if (ci < 0)
                continue;
            struct store_affected *a = &aff[u.num_affected++];
            rp_snprintf(a->code, sizeof a->code, "%s", inc.components[j]);
            a->old_status = st->comps[ci].reported;
            a->new_status = next == STATUSPAGE_COMPLETED ? STATUSPAGE_OPERATIONAL : STATUSPAGE_UNDER_MAINTENANCE;
        }
        u.affected = aff;
        status_incident_set_status(&inc, next, now_ms);
        if (status_write_update(st, &inc, &u) == RP_OK)
            rp_log_info("status: maintenance \"%s\" is now %s", inc.name, statuspage_istatus_name(next));
        store_incident_clear(&inc);
    }
    return ndue > 0;
}

/* ===================================================================== */
/* release verdicts                                                       */
/* ===================================================================== */

/* One short statement on the loop thread, as rare as a verdict: no reason
 * to batch or defer it, and stored before the admin API answers. */
static void verdict_put(void *arg, const struct canary *c, const struct canary_verdict *v)
{
    struct status *st = arg;
    struct store_release r;
    memset(&r, 0, sizeof r);
    rp_snprintf(r.upstream, sizeof r.upstream, "%s", c->upstream);
    rp_snprintf(r.release, sizeof r.release, "%s", v->release);
    rp_snprintf(r.state, sizeof r.state, "%s", canary_state_name(v->state));
    r.weight_bp = v->weight_bp;
    rp_snprintf(r.source, sizeof r.source, "%s", v->source);
    rp_snprintf(r.reason, sizeof r.reason, "%s", v->reason);
    r.at_ms = v->wall_ms;
    if (store_release_put(st->store, &r) != RP_OK) {
        st->store_errors++;
        rp_log_err("status: the %s verdict on release %s of %s was not stored; a restart would forget it", r.state,
                   r.release, r.upstream);
    }
}

/* The index of the configured upstream named name, or -1. */
static int upstream_index(const struct status *st, const char *name)
{
    for (size_t u = 0; u < st->sc->num_upstreams; u++)
        if (st->sc->upstreams[u] && strcmp(st->sc->upstreams[u], name) == 0)
            return (int)u;
    return -1;
}

/* A canary rolled back: tell the users on the status page too.  The other
 * events (start, promotion, restore, ...) are release control's business. */
static void on_canary_event(void *arg, const struct canary *c, const struct canary_event *ev)
{
    struct status *st = arg;
    if (strcmp(ev->action, "rollback") != 0)
        return;
    char name[160], body[512];
    rp_snprintf(name, sizeof name, "New release of %s rolled back", c->upstream);
    rp_snprintf(body, sizeof body,
                "A new version of %s was serving part of the traffic and did worse than the current one (%s). "
                "rampart sent all traffic back to the current version%s. Some requests may have failed or been "
                "slow meanwhile.",
                c->upstream, ev->reason[0] ? ev->reason : "regression detected",
                strcmp(ev->source, "admin") == 0 ? " on an operator's request" : " automatically");
    status_report_incident(st, upstream_index(st, c->upstream), name, body, status_loop_now(st));
}

int status_track_canary(struct status *st, struct canary *c, uint64_t now_us)
{
    if (!c)
        return RP_OK;
    if (!st) {
        canary_set_verdict_cb(c, NULL, NULL);
        canary_set_event_cb(c, NULL, NULL);
        return RP_OK;
    }
    /* The release was named from the configuration when the canary was
     * made (the upstream set does it). */
    const char *id = c->release;
    RP_ASSERT(id[0] != '\0');

    int rc = RP_OK;
    struct store_release r;
    bool found = false;
    if (store_release_get(st->store, c->upstream, id, &r, &found) != RP_OK) {
        st->store_errors++;
        rc = RP_ERR;
    } else if (found) {
        struct canary_verdict v;
        memset(&v, 0, sizeof v);
        rp_snprintf(v.release, sizeof v.release, "%s", id);
        v.weight_bp = r.weight_bp;
        rp_snprintf(v.source, sizeof v.source, "%s", r.source);
        rp_snprintf(v.reason, sizeof v.reason, "%s", r.reason);
        v.wall_ms = r.at_ms;
        if (canary_state_from_name(r.state, &v.state) != RP_OK)
            rp_log_err("status: unknown stored state \"%s\" for release %s of %s; starting fresh", r.state, id,
                       c->upstream);
        else if (canary_restore(c, &v, now_us))
            rp_log_info("status: release %s of %s restored as %s", id, c->upstream, r.state);
    }
    canary_set_verdict_cb(c, verdict_put, st);
    /* After the restore: the restore event is not news for the page. */
    canary_set_event_cb(c, on_canary_event, st);
    return rc;
}

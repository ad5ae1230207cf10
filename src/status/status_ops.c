/*
 * status_ops.c — incidents and maintenances written by operators: the
 * operations behind the admin API (routed by src/admin/admin_status.c).
 * Bodies are validated by status_api.c; each operation stores its change
 * in one transaction, reloads the view and rebuilds the snapshot before it
 * answers, so the page shows what the operator was told.
 */
#include "status_int.h"
#include "httpd.h"
#include "status_api.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* An operator request names at most this many components, each one an
 * affected entry of the update. */
_Static_assert(STATUS_API_COMPONENTS_MAX <= STORE_MAX_AFFECTED, "every named component fits an update");

static void api_error(struct httpd_response *resp, const struct status_api_error *err)
{
    resp->status = err->http;
    resp->content_type = "application/json";
    sbuf_reset(&resp->body);
    status_api_error_json(&resp->body, err);
}

static void api_fail(struct httpd_response *resp, int http, const char *param, const char *code, const char *msg)
{
    struct status_api_error err;
    status_api_fail(&err, http, param, code, "%s", msg);
    api_error(resp, &err);
}

/* status_api_parse resolves components against our table, so every index
 * it returns is one of ours; a request that breaks this is refused rather
 * than read out of bounds. */
static bool req_components_ok(const struct status *st, const struct status_api_req *r, struct httpd_response *resp)
{
    bool ok = r->num_components <= STATUS_API_COMPONENTS_MAX;
    for (size_t i = 0; ok && i < r->num_components; i++)
        ok = r->comp[i] >= 0 && (size_t)r->comp[i] < st->ncomps;
    RP_ASSERT(ok);
    if (!ok)
        api_fail(resp, 500, NULL, "internal_error", "component table out of step; see the gateway's log");
    return ok;
}

static void api_incident(struct status *st, struct httpd_response *resp, int http, const struct store_incident *inc)
{
    struct statuspage_view v;
    status_build_view(st, status_loop_now(st), &v);
    resp->status = http;
    resp->content_type = "application/json";
    statuspage_incident_json(&resp->body, &v, inc);
    sbuf_add(&resp->body, "\n", 1);
}

static void after_write(struct status *st)
{
    uint64_t now = status_loop_now(st);
    status_reload_view(st, now);
    /* A maintenance created with a start in the past begins now, not at
     * the next tick, so the answer already shows it in progress. */
    if (status_maintenance_eval(st, now))
        status_reload_view(st, now);
    status_recompute(st, now);
    status_rebuild(st, now);
}

/* Affected components of an update: old status as currently reported, new
 * as requested (or unchanged). */
static void fill_affected(struct status *st, const struct status_api_req *r, struct store_affected *aff, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < r->num_components && *n < STORE_MAX_AFFECTED; i++) {
        const struct comp *c = &st->comps[r->comp[i]];
        struct store_affected *a = &aff[(*n)++];
        rp_snprintf(a->code, sizeof a->code, "%s", c->code);
        a->old_status = c->reported;
        a->new_status = r->comp_status[i] >= 0 ? r->comp_status[i] : c->reported;
    }
}

/* Impact Statuspage would derive from the components' new statuses. */
static int impact_from(const struct status_api_req *r)
{
    int imp = STATUSPAGE_IMPACT_NONE;
    for (size_t i = 0; i < r->num_components; i++) {
        int s = r->comp_status[i];
        int m = s == STATUSPAGE_MAJOR_OUTAGE           ? STATUSPAGE_IMPACT_CRITICAL
                : s == STATUSPAGE_PARTIAL_OUTAGE       ? STATUSPAGE_IMPACT_MAJOR
                : s == STATUSPAGE_DEGRADED_PERFORMANCE ? STATUSPAGE_IMPACT_MINOR
                                                       : STATUSPAGE_IMPACT_NONE;
        if (m > imp)
            imp = m;
    }
    return imp;
}

void status_ops_create(struct status *st, bool maint, const char *body, size_t len, struct httpd_response *resp)
{
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    uint64_t now_us = status_loop_now(st);
    int64_t now_ms = status_now_ms(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_CREATE : STATUS_API_INCIDENT_CREATE, body, len, &tab, now_ms, &r,
                         &err) != RP_OK) {
        api_error(resp, &err);
        return;
    }
    if (!req_components_ok(st, &r, resp)) {
        status_api_req_free(&r);
        return;
    }
    struct store_incident inc;
    memset(&inc, 0, sizeof inc);
    char comps[STATUS_API_COMPONENTS_MAX][STORE_CODE_MAX];
    struct store_affected aff[STORE_MAX_AFFECTED];
    struct store_update u = {0};
    inc.maintenance = maint;
    inc.name = r.name;
    inc.created_ms = inc.updated_ms = inc.started_ms = now_ms;
    for (size_t i = 0; i < r.num_components; i++)
        rp_snprintf(comps[i], STORE_CODE_MAX, "%s", st->comps[r.comp[i]].code);
    inc.components = comps;
    inc.num_components = r.num_components;
    u.created_ms = u.updated_ms = u.display_ms = now_ms;
    if (maint) {
        inc.impact = STATUSPAGE_IMPACT_MAINTENANCE;
        inc.scheduled_for_ms = r.scheduled_for_ms;
        inc.scheduled_until_ms = r.scheduled_until_ms;
        inc.auto_transition = r.auto_transition;
        u.status = STATUSPAGE_SCHEDULED;
        u.body = r.body ? r.body : "Scheduled maintenance.";
        /* Affected list on the announcement: what will be under maintenance. */
        for (size_t i = 0; i < r.num_components; i++) {
            struct store_affected *a = &aff[u.num_affected++];
            rp_snprintf(a->code, sizeof a->code, "%s", st->comps[r.comp[i]].code);
            a->old_status = st->comps[r.comp[i]].reported;
            a->new_status = STATUSPAGE_UNDER_MAINTENANCE;
        }
        inc.status = STATUSPAGE_SCHEDULED;
    } else {
        int status = r.has_status ? r.status : STATUSPAGE_INVESTIGATING;
        inc.impact = r.has_impact ? r.impact : impact_from(&r);
        if (!r.has_impact && inc.impact == STATUSPAGE_IMPACT_NONE)
            inc.impact = STATUSPAGE_IMPACT_MINOR; /* a declared incident has some impact */
        u.status = status;
        u.body = r.body;
        fill_affected(st, &r, aff, &u.num_affected);
        inc.status = STATUSPAGE_INVESTIGATING;
        status_incident_set_status(&inc, status, now_ms);
    }
    u.affected = aff;
    if (status_write_new(st, &inc, &u) != RP_OK) {
        api_fail(resp, 500, NULL, "store_error", "could not store the change; see the gateway's log");
        goto cleanup;
    }
    after_write(st);
    struct store_incident saved;
    bool found = false;
    if (store_incident_get(st->store, inc.id, &saved, &found) == RP_OK && found) {
        api_incident(st, resp, 201, &saved);
        store_incident_clear(&saved);
    } else {
        api_fail(resp, 500, NULL, "store_error", "stored, but could not read it back");
    }
cleanup:
    status_api_req_free(&r);
}

/* Load an incident of the expected kind, or answer 404. */
static bool api_load(struct status *st, bool maint, int64_t id, struct store_incident *inc, struct httpd_response *resp)
{
    bool found = false;
    if (id < 0) {
        api_fail(resp, 404, "id", "not_found", maint ? "no such maintenance" : "no such incident");
        return false;
    }
    if (store_incident_get(st->store, id, inc, &found) != RP_OK) {
        api_fail(resp, 500, NULL, "store_error", "could not read the store; see the gateway's log");
        return false;
    }
    if (!found || inc->maintenance != maint) {
        if (found)
            store_incident_clear(inc);
        api_fail(resp, 404, "id", "not_found", maint ? "no such maintenance" : "no such incident");
        return false;
    }
    return true;
}

void status_ops_add_update(struct status *st, bool maint, const char *id_text, size_t id_len, const char *body,
                           size_t len, struct httpd_response *resp)
{
    int64_t id = store_id_decode('i', id_text, id_len);
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    uint64_t now_us = status_loop_now(st);
    int64_t now_ms = status_now_ms(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_UPDATE : STATUS_API_INCIDENT_UPDATE, body, len, &tab, now_ms, &r,
                         &err) != RP_OK) {
        api_error(resp, &err);
        return;
    }
    if (!req_components_ok(st, &r, resp)) {
        status_api_req_free(&r);
        return;
    }
    if (!api_load(st, maint, id, &inc, resp))
        goto out;
    if (inc.num_updates >= STORE_MAX_UPDATES) {
        status_api_fail(&err, 400, "incident_updates", "limit_exceeded",
                        "this %s already has %d updates; open a new one", maint ? "maintenance" : "incident",
                        STORE_MAX_UPDATES);
        api_error(resp, &err);
        goto cleanup;
    }
    if (r.status == STATUSPAGE_POSTMORTEM && !statuspage_istatus_done(inc.status)) {
        status_api_fail(&err, 400, "status", "invalid_transition",
                        "status: a postmortem follows resolution; this incident is %s (post \"resolved\" first)",
                        statuspage_istatus_name(inc.status));
        api_error(resp, &err);
        goto cleanup;
    }
    struct store_affected aff[STORE_MAX_AFFECTED];
    struct store_update u = {0};
    u.status = r.status;
    u.body = r.body;
    u.created_ms = u.updated_ms = u.display_ms = now_ms;
    fill_affected(st, &r, aff, &u.num_affected);
    u.affected = aff;
    for (size_t i = 0; i < r.num_components; i++)
        status_incident_add_component(&inc, st->comps[r.comp[i]].code);
    if (r.has_impact)
        inc.impact = r.impact;
    status_incident_set_status(&inc, r.status, now_ms);
    if (status_write_update(st, &inc, &u) != RP_OK) {
        api_fail(resp, 500, NULL, "store_error", "could not store the change; see the gateway's log");
        goto cleanup;
    }
    after_write(st);
    store_incident_clear(&inc);
    if (api_load(st, maint, id, &inc, resp)) {
        api_incident(st, resp, 201, &inc);
        goto cleanup;
    }
    goto out;
cleanup:
    store_incident_clear(&inc);
out:
    status_api_req_free(&r);
}

void status_ops_edit(struct status *st, bool maint, const char *id_text, size_t id_len, const char *body, size_t len,
                     struct httpd_response *resp)
{
    int64_t id = store_id_decode('i', id_text, id_len);
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    uint64_t now_us = status_loop_now(st);
    int64_t now_ms = status_now_ms(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_EDIT : STATUS_API_INCIDENT_EDIT, body, len, &tab, now_ms, &r, &err) !=
        RP_OK) {
        api_error(resp, &err);
        return;
    }
    if (!api_load(st, maint, id, &inc, resp))
        goto out;
    if (r.has_name) {
        free(inc.name);
        inc.name = r.name;
        r.name = NULL;
    }
    if (r.has_impact)
        inc.impact = r.impact;
    if (maint) {
        int64_t from = r.has_for ? r.scheduled_for_ms : inc.scheduled_for_ms;
        int64_t until = r.has_until ? r.scheduled_until_ms : inc.scheduled_until_ms;
        if ((r.has_for || r.has_until) && statuspage_istatus_done(inc.status)) {
            status_api_fail(&err, 400, r.has_for ? "scheduled_for" : "scheduled_until", "invalid_transition",
                            "the maintenance is %s; its times can no longer change",
                            statuspage_istatus_name(inc.status));
            api_error(resp, &err);
            goto cleanup;
        }
        if (r.has_for && inc.status != STATUSPAGE_SCHEDULED && from != inc.scheduled_for_ms) {
            status_api_fail(&err, 400, "scheduled_for", "invalid_transition",
                            "scheduled_for: the maintenance has already started");
            api_error(resp, &err);
            goto cleanup;
        }
        if (until <= from) {
            status_api_fail(&err, 400, "scheduled_until", "invalid_value",
                            "scheduled_until: must be after scheduled_for");
            api_error(resp, &err);
            goto cleanup;
        }
        if (r.has_until && until <= now_ms) {
            status_api_fail(&err, 400, "scheduled_until", "invalid_value", "scheduled_until: is in the past");
            api_error(resp, &err);
            goto cleanup;
        }
        if (until - from > STATUS_API_MAINT_LONGEST_MS) {
            status_api_fail(&err, 400, "scheduled_until", "invalid_value",
                            "scheduled_until: a maintenance window lasts at most 7 days");
            api_error(resp, &err);
            goto cleanup;
        }
        inc.scheduled_for_ms = from;
        inc.scheduled_until_ms = until;
        if (r.has_auto)
            inc.auto_transition = r.auto_transition;
    }
    inc.updated_ms = now_ms;
    if (status_write_update(st, &inc, NULL) != RP_OK) {
        api_fail(resp, 500, NULL, "store_error", "could not store the change; see the gateway's log");
        goto cleanup;
    }
    after_write(st);
    api_incident(st, resp, 200, &inc);
cleanup:
    store_incident_clear(&inc);
out:
    status_api_req_free(&r);
}

void status_ops_edit_update(struct status *st, bool maint, const char *id_text, size_t id_len, const char *uid_text,
                            size_t uid_len, const char *body, size_t len, struct httpd_response *resp)
{
    int64_t id = store_id_decode('i', id_text, id_len);
    int64_t uid = store_id_decode('u', uid_text, uid_len);
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    bool found = false;
    uint64_t now_us = status_loop_now(st);
    int64_t now_ms = status_now_ms(st, now_us);
    if (status_api_parse(STATUS_API_UPDATE_EDIT, body, len, &tab, now_ms, &r, &err) != RP_OK) {
        api_error(resp, &err);
        return;
    }
    if (!api_load(st, maint, id, &inc, resp))
        goto out;
    store_incident_clear(&inc);
    if (uid < 0 || store_update_edit(st->store, id, uid, r.body, now_ms, &found) != RP_OK || !found) {
        api_fail(resp, 404, "update_id", "not_found", "no such update in this incident");
        goto out;
    }
    after_write(st);
    if (api_load(st, maint, id, &inc, resp)) {
        api_incident(st, resp, 200, &inc);
        store_incident_clear(&inc);
    }
out:
    status_api_req_free(&r);
}

void status_ops_list(struct status *st, bool maint, struct httpd_response *resp)
{
    struct statuspage_view v;
    status_build_view(st, status_loop_now(st), &v);
    size_t shown = 0;
    resp->status = 200;
    resp->content_type = "application/json";
    sbuf_adds(&resp->body, maint ? "{\"scheduled_maintenances\":[" : "{\"incidents\":[");
    for (size_t i = 0; i < st->nview; i++) {
        if (st->view[i].maintenance != maint)
            continue;
        if (shown++)
            sbuf_add(&resp->body, ",", 1);
        statuspage_incident_json(&resp->body, &v, &st->view[i]);
    }
    sbuf_adds(&resp->body, "]}\n");
}

void status_ops_get(struct status *st, bool maint, const char *id_text, size_t id_len, struct httpd_response *resp)
{
    struct store_incident inc;
    if (api_load(st, maint, store_id_decode('i', id_text, id_len), &inc, resp)) {
        api_incident(st, resp, 200, &inc);
        store_incident_clear(&inc);
    }
}

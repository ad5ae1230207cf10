/*
 * status_http.c — the public documents: one snapshot of every document
 * (page, Statuspage JSON, feeds) rebuilt from the model every few seconds
 * or when something changed, and the read-only listener that serves it
 * with ETag and Cache-Control, so a request costs a copy and the page keeps
 * answering while upstreams are down.
 */
#include "status_int.h"
#include "h1.h"
#include "httpd.h"
#include "util.h"

#include <string.h>

/* ===================================================================== */
/* snapshot                                                              */
/* ===================================================================== */

static uint64_t hist_quantile_us(const uint32_t *hist, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < STORE_HIST_BUCKETS; i++)
        total += hist[i];
    if (!total)
        return 0;
    double want = q * (double)total, cum = 0;
    for (int i = 0; i < STORE_HIST_BUCKETS; i++) {
        double next = cum + hist[i];
        if (next >= want && hist[i] > 0) {
            double lo = i == 0 ? 0.0 : (double)status_hist_bounds_us[i - 1];
            if (i == STORE_HIST_BUCKETS - 1)
                return (uint64_t)lo; /* open bucket: report its floor */
            double hi = (double)status_hist_bounds_us[i];
            return (uint64_t)(lo + (hi - lo) * ((want - cum) / (double)hist[i]));
        }
        cum = next;
    }
    return status_hist_bounds_us[STORE_HIST_BUCKETS - 2];
}

void status_build_view(struct status *st, uint64_t now_us, struct statuspage_view *v)
{
    int64_t wall = status_wall_us(st, now_us);
    int64_t now_ms = wall / 1000;
    int64_t cur_minute = wall / (int64_t)MINUTE_US;
    int64_t today = cur_minute / 1440;
    int64_t updated = 0;

    for (size_t i = 0; i < st->ncomps; i++) {
        const struct comp *c = &st->comps[i];
        struct statuspage_component *vc = &st->vcomps[i];
        memset(vc, 0, sizeof *vc);
        rp_snprintf(vc->id, sizeof vc->id, "%s", c->code);
        vc->name = c->name;
        vc->description = c->description;
        vc->status = c->effective;
        vc->reported = c->reported;
        vc->created_ms = c->created_ms;
        vc->updated_ms = c->updated_ms;
        vc->position = (int)i + 1;
        vc->latency_slo_ms = c->latency_us / 1000;
        if (c->updated_ms > updated)
            updated = c->updated_ms;

        uint64_t elig = 0, good = 0;
        for (int d = 0; d < STATUSPAGE_DAYS; d++) {
            int64_t day = today - (STATUSPAGE_DAYS - 1) + d;
            struct statuspage_day *vd = &vc->days[d];
            vd->day = day;
            const struct day_slot *ds = &c->days[(uint64_t)day % DAY_RING];
            if (ds->day == day) {
                vd->eligible = ds->eligible;
                vd->good = ds->good;
                vd->worst = ds->worst;
            }
        }
        /* Minutes not yet flushed belong to today's bar too. */
        for (size_t k = 0; k < MINUTE_RING; k++) {
            const struct minute_slot *m = &c->mins[k];
            if (m->flushed || !status_minute_has_data(m))
                continue;
            int64_t d = m->minute / 1440 - (today - (STATUSPAGE_DAYS - 1));
            if (d < 0 || d >= STATUSPAGE_DAYS)
                continue;
            struct statuspage_day *vd = &vc->days[d];
            if (!status_slot_sane(m->total, m->excluded, m->errors, m->slow))
                continue; /* asserted when flushed */
            uint64_t e = m->total - m->excluded;
            vd->eligible += e;
            vd->good += e - m->errors - m->slow;
            if (m->worst > vd->worst)
                vd->worst = m->worst;
        }
        for (int d = 0; d < STATUSPAGE_DAYS; d++) {
            elig += vc->days[d].eligible;
            good += vc->days[d].good;
        }
        vc->uptime = elig ? 100.0 * (double)good / (double)elig : -1.0;

        for (int s = 0; s < STATUSPAGE_SPARK; s++) {
            int64_t minute = cur_minute - (STATUSPAGE_SPARK - 1) + s;
            const struct minute_slot *m = &c->mins[(uint64_t)minute % MINUTE_RING];
            uint64_t cnt = 0;
            if (m->minute == minute)
                for (int b = 0; b < STORE_HIST_BUCKETS; b++)
                    cnt += m->hist[b];
            vc->spark_ms[s] = cnt ? (int32_t)(hist_quantile_us(m->hist, 0.95) / 1000) : -1;
        }
    }
    for (size_t k = 0; k < st->nview; k++)
        if (st->view[k].updated_ms > updated)
            updated = st->view[k].updated_ms;

    memset(v, 0, sizeof *v);
    v->page_id = st->page_id;
    v->name = st->sc->page_name ? st->sc->page_name : "rampart";
    v->url = st->sc->page_url ? st->sc->page_url : "";
    v->now_ms = now_ms;
    v->updated_ms = updated ? updated : now_ms;
    v->components = st->vcomps;
    v->num_components = st->ncomps;
    v->incidents = st->view;
    v->num_incidents = st->nview;
    v->max_age_s = st->sc->refresh_us / 1000000;
}

void status_rebuild(struct status *st, uint64_t now_us)
{
    struct statuspage_view v;
    uint64_t t0 = rp_now_us();
    status_build_view(st, now_us, &v);
    for (int d = 0; d < STATUSPAGE_DOC_COUNT; d++) {
        struct snap_doc *doc = &st->docs[d];
        sbuf_reset(&doc->body);
        statuspage_render(&doc->body, &v, (enum statuspage_doc)d);
        rp_snprintf(doc->etag, sizeof doc->etag, "\"%016llx\"",
                    (unsigned long long)rp_hash64(doc->body.data ? doc->body.data : "", doc->body.len));
    }
    st->built = true;
    st->dirty = false;
    st->last_build_us = now_us;
    st->build_us = rp_now_us() - t0;
}

void status_refresh(struct status *st)
{
    uint64_t now = status_loop_now(st);
    status_recompute(st, now);
    status_rebuild(st, now);
}

/* ===================================================================== */
/* public listener                                                       */
/* ===================================================================== */

static int doc_for_path(const char *p, size_t len)
{
    if (len == 11 && memcmp(p, "/index.html", 11) == 0)
        return STATUSPAGE_DOC_HTML;
    for (int d = 0; d < STATUSPAGE_DOC_COUNT; d++) {
        const char *dp = statuspage_doc_path((enum statuspage_doc)d);
        if (strlen(dp) == len && memcmp(dp, p, len) == 0)
            return d;
    }
    return -1;
}

const char *status_snapshot(struct status *st, const char *path, size_t *len, const char **etag)
{
    int d = doc_for_path(path, strlen(path));
    if (d < 0)
        return NULL;
    if (!st->built)
        status_refresh(st);
    *len = st->docs[d].body.len;
    *etag = st->docs[d].etag;
    return st->docs[d].body.data ? st->docs[d].body.data : "";
}

/* Does an If-None-Match value list our entity tag (weak comparison)? */
static bool etag_matches(const char *v, size_t len, const char *etag)
{
    size_t elen = strlen(etag);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i < len && v[i] == '*')
            return true;
        if (i + 2 <= len && v[i] == 'W' && v[i + 1] == '/')
            i += 2;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == elen && memcmp(v + start, etag, elen) == 0)
            return true;
    }
    return false;
}

static bool method_is(const struct httpd_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->msg->method.len == n && memcmp(req->msg->method.p, m, n) == 0;
}

void status_http_serve(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    struct status *st = arg;
    int d = doc_for_path(req->path.p, req->path.len);
    if (d < 0) {
        httpd_json_error_code(resp, 404, "invalid_request_error", "not_found",
                              "no such document; the status page is at / and the API under /api/v2/");
        return;
    }
    if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
        httpd_json_error_code(resp, 405, "invalid_request_error", "method_not_allowed",
                              "the status listener is read-only: use GET or HEAD");
        httpd_add_header(resp, "Allow", "GET, HEAD");
        return;
    }
    if (!st->built)
        status_refresh(st);
    const struct snap_doc *doc = &st->docs[d];
    char cc[64];
    rp_snprintf(cc, sizeof cc, "public, max-age=%llu", (unsigned long long)(st->sc->refresh_us / 1000000));
    httpd_add_header(resp, "ETag", doc->etag);
    httpd_add_header(resp, "Cache-Control", cc);
    httpd_add_header(resp, "X-Content-Type-Options", "nosniff");
    if (d == STATUSPAGE_DOC_HTML) {
        httpd_add_header(resp, "Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                         "form-action 'none'; frame-ancestors 'none'");
        httpd_add_header(resp, "Referrer-Policy", "no-referrer");
    } else {
        httpd_add_header(resp, "Access-Control-Allow-Origin", "*");
    }
    const struct h1_header *inm = h1_find_header(req->msg, "If-None-Match");
    if (inm && etag_matches(inm->value.p, inm->value.len, doc->etag)) {
        resp->status = 304;
        return;
    }
    resp->status = 200;
    resp->content_type = statuspage_doc_type((enum statuspage_doc)d);
    sbuf_add(&resp->body, doc->body.data ? doc->body.data : "", doc->body.len);
}

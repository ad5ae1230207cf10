/*
 * status.c — life cycle of the status subsystem (store, components,
 * history, listener, timer), its metrics and the lookups the proxy uses
 * (see status.h; the rest lives in the files status_int.h lists).
 */
#include "status_int.h"
#include "httpd.h"
#include "metrics.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* metrics                                                                */
/* ===================================================================== */

void status_metrics_render(struct sbuf *out, void *arg)
{
    struct status *st = arg;
    char labels[256];
    struct sbuf esc;
    sbuf_init(&esc, 1024);
    metrics_family(out, "rampart_status_component", "gauge",
                   "Shown component status: 0 no data, 1 operational, 2 under maintenance, 3 degraded, "
                   "4 partial outage, 5 major outage");
    for (size_t i = 0; i < st->ncomps; i++) {
        sbuf_reset(&esc);
        metrics_label_escape(&esc, st->comps[i].name);
        rp_snprintf(labels, sizeof labels, "component=\"%s\"", esc.data ? esc.data : "");
        metrics_sample_u64(out, "rampart_status_component", labels, (uint64_t)st->comps[i].effective);
    }
    metrics_family(out, "rampart_status_requests_total", "counter",
                   "Requests counted by the status model, by class (good, error, slow, excluded)");
    static const char *const cls[4] = {"good", "error", "slow", "excluded"};
    for (size_t i = 0; i < st->ncomps; i++) {
        const struct comp *c = &st->comps[i];
        uint64_t v[4] = {c->n_good, c->n_errors, c->n_slow, c->n_excluded};
        sbuf_reset(&esc);
        metrics_label_escape(&esc, c->name);
        for (int k = 0; k < 4; k++) {
            rp_snprintf(labels, sizeof labels, "component=\"%s\",class=\"%s\"", esc.data ? esc.data : "", cls[k]);
            metrics_sample_u64(out, "rampart_status_requests_total", labels, v[k]);
        }
    }
    metrics_family(out, "rampart_status_store_errors_total", "counter", "Failed status store operations");
    metrics_sample_u64(out, "rampart_status_store_errors_total", "", st->store_errors);
    metrics_family(out, "rampart_status_rollups_dropped_total", "counter",
                   "Minute rollups overwritten before they could be stored");
    metrics_sample_u64(out, "rampart_status_rollups_dropped_total", "", st->dropped_minutes);
    metrics_family(out, "rampart_status_auto_incidents_total", "counter", "Automatic incidents by action");
    metrics_sample_u64(out, "rampart_status_auto_incidents_total", "action=\"opened\"", st->auto_opened);
    metrics_sample_u64(out, "rampart_status_auto_incidents_total", "action=\"resolved\"", st->auto_resolved);
    metrics_family(out, "rampart_status_snapshot_build_seconds", "gauge", "Time the last snapshot took to build");
    metrics_sample_f64(out, "rampart_status_snapshot_build_seconds", "", (double)st->build_us / 1e6);
    sbuf_free(&esc);
}

/* ===================================================================== */
/* life cycle                                                             */
/* ===================================================================== */

static void code_for(const char *name, char out[STORE_CODE_MAX])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t h = rp_hash64(name, strlen(name));
    for (int i = 0; i < 12; i++) {
        out[i] = digits[h % 36];
        h /= 36;
        if (h == 0)
            h = rp_hash64(out, (size_t)i + 1);
    }
    out[12] = '\0';
}

struct load_ctx {
    struct status *st;
    struct comp *c;
};

static void load_day(void *arg, const struct store_rollup *r)
{
    struct load_ctx *lc = arg;
    uint64_t elig = (uint64_t)r->total - r->excluded;
    struct day_slot *d = &lc->c->days[(uint64_t)r->t % DAY_RING];
    memset(d, 0, sizeof *d);
    d->day = r->t;
    d->eligible = elig;
    d->good = elig - r->errors - r->slow;
    d->worst = r->worst;
}

static void load_minute(void *arg, const struct store_rollup *r)
{
    struct load_ctx *lc = arg;
    struct minute_slot *m = &lc->c->mins[(uint64_t)r->t % MINUTE_RING];
    memset(m, 0, sizeof *m);
    m->minute = r->t;
    m->total = r->total;
    m->excluded = r->excluded;
    m->errors = r->errors;
    m->slow = r->slow;
    m->worst = r->worst;
    memcpy(m->hist, r->hist, sizeof m->hist);
    m->flushed = true;
}

/* (Re)load what the rings show from the store: daily totals for the bars
 * and the completed minutes of the last two hours (sparkline), then the
 * incident view.  The current minute is left empty: anything already
 * stored for it is added to, not replaced, at the next flush. */
int status_load_history(struct status *st, uint64_t now_us)
{
    int64_t wall = status_wall_us(st, now_us);
    int64_t cur_minute = wall / (int64_t)MINUTE_US;
    int64_t today = cur_minute / 1440;
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        struct load_ctx lc = {st, c};
        for (size_t k = 0; k < c->nfine; k++) {
            memset(&c->fine[k], 0, sizeof c->fine[k]);
            c->fine[k].idx = -1;
        }
        for (size_t k = 0; k < MINUTE_RING; k++) {
            memset(&c->mins[k], 0, sizeof c->mins[k]);
            c->mins[k].minute = -1;
            c->mins[k].flushed = true;
        }
        for (size_t k = 0; k < DAY_RING; k++) {
            memset(&c->days[k], 0, sizeof c->days[k]);
            c->days[k].day = -1;
        }
        if (store_days_get(st->store, c->cid, today - (DAY_RING - 1), today + 1, load_day, &lc) != RP_OK ||
            store_minutes_get(st->store, c->cid, cur_minute - (MINUTE_RING - 1), cur_minute, load_minute, &lc) != RP_OK)
            return RP_ERR;
    }
    st->flush_minute = cur_minute;
    status_reload_view(st, now_us);
    return RP_OK;
}

static int setup_components(struct status *st)
{
    const struct status_conf *sc = st->sc;
    size_t n = sc->num_components ? sc->num_components : sc->num_upstreams;
    if (n == 0) {
        rp_log_err("status: no components (configure components: or at least one upstream)");
        return RP_ERR;
    }
    st->comps = rp_xcalloc(n, sizeof *st->comps);
    st->ncomps = n;
    for (size_t u = 0; u < STATUS_MAX_UPSTREAMS; u++)
        st->upstream_map[u] = -1;
    uint64_t longest = sc->window_us;
    if (sc->auto_incidents)
        for (size_t r = 0; r < sc->num_rules; r++)
            if (sc->rules[r].long_us > longest)
                longest = sc->rules[r].long_us;
    size_t nfine = (size_t)(longest / SLOT_US) + 2;

    if (!sc->num_components) {
        st->owned_names = rp_xcalloc(n, sizeof *st->owned_names);
        for (size_t i = 0; i < n; i++) {
            st->owned_names[i] = rp_xstrdup(sc->upstreams[i] ? sc->upstreams[i] : "upstream");
            st->comps[i].name = st->owned_names[i];
            st->upstream_map[i] = (int)i;
        }
    } else {
        size_t nroutes = 0;
        for (size_t i = 0; i < n; i++)
            nroutes += sc->components[i].num_routes;
        st->routes = rp_xcalloc(nroutes ? nroutes : 1, sizeof *st->routes);
        for (size_t i = 0; i < n; i++) {
            const struct status_component_conf *cc = &sc->components[i];
            st->comps[i].name = cc->name;
            st->comps[i].description = cc->description;
            for (size_t k = 0; k < cc->num_routes; k++)
                st->routes[st->nroutes++] = (struct route_ent){cc->routes[k], strlen(cc->routes[k]), (int)i};
            for (size_t k = 0; k < cc->num_upstreams && sc->upstreams_known; k++) {
                bool found = false;
                for (size_t u = 0; u < sc->num_upstreams; u++) {
                    if (sc->upstreams[u] && strcmp(sc->upstreams[u], cc->upstreams[k]) == 0) {
                        found = true;
                        if (st->upstream_map[u] < 0)
                            st->upstream_map[u] = (int)i;
                    }
                }
                if (!found)
                    rp_log_err("status: component \"%s\": no upstream named \"%s\"", cc->name, cc->upstreams[k]);
            }
        }
    }
    st->api_ids = rp_xcalloc(n, sizeof *st->api_ids);
    st->api_names = rp_xcalloc(n, sizeof *st->api_names);
    for (size_t i = 0; i < n; i++) {
        struct comp *c = &st->comps[i];
        const struct status_component_conf *cc = sc->num_components ? &sc->components[i] : NULL;
        code_for(c->name, c->code);
        for (size_t k = 0; k < i; k++)
            if (strcmp(st->comps[k].code, c->code) == 0) {
                rp_log_err("status: components \"%s\" and \"%s\" hash to the same id; rename one", st->comps[k].name,
                           c->name);
                return RP_ERR;
            }
        c->latency_us = cc && cc->latency_us ? cc->latency_us : sc->latency_us;
        c->target = cc && cc->target > 0 ? cc->target : sc->target;
        c->nfine = nfine;
        c->fine = rp_xcalloc(nfine, sizeof *c->fine);
        status_live_init(&c->live);
        c->effective = STATUSPAGE_NO_DATA;
        c->reported = STATUSPAGE_OPERATIONAL;
        c->armed = true;
        st->api_ids[i] = c->code;
        st->api_names[i] = c->name;
    }
    return RP_OK;
}

struct status *status_create(struct ev_loop *loop, const struct status_conf *sc)
{
    struct status *st = rp_xcalloc(1, sizeof *st);
    st->loop = loop;
    st->sc = sc;
    st->wall_off_us = rp_wall_ms() * 1000 - (int64_t)rp_now_us();
    for (int d = 0; d < STATUSPAGE_DOC_COUNT; d++)
        sbuf_init(&st->docs[d].body, 32u << 20);
    code_for(sc->page_name ? sc->page_name : "rampart", st->page_id);

    if (setup_components(st) != RP_OK)
        goto fail;
    st->vcomps = rp_xcalloc(st->ncomps, sizeof *st->vcomps);
    st->rows = rp_xcalloc(st->ncomps * MINUTE_RING, sizeof *st->rows);

    st->store = store_open(sc->db_path ? sc->db_path : "rampart-status.db");
    if (!st->store)
        goto fail;
    uint64_t now_us = status_loop_now(st);
    int64_t now_ms = status_now_ms(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        if (store_component_ensure(st->store, c->code, c->name, now_ms, &c->cid, &c->created_ms) != RP_OK)
            goto fail;
        c->updated_ms = c->created_ms;
    }
    if (status_load_history(st, now_us) != RP_OK)
        goto fail;

    if (loop) {
        ev_timer_init(&st->timer, status_timer_cb, st);
        ev_timer_arm(loop, &st->timer, TICK_US);
    }
    status_tick(st, now_us);
    return st;

fail:
    status_free(st);
    return NULL;
}

int status_listen(struct status *st)
{
    RP_ASSERT(st->loop != NULL && st->httpd == NULL);
    if (!st->loop || st->httpd)
        return RP_ERR;
    const struct status_conf *sc = st->sc;
    struct httpd_opts opts = {
        .max_body = 1024, .max_connections = 4096, .idle_timeout_us = 30000000ULL, .request_timeout_us = 10000000ULL};
    st->httpd = httpd_start(st->loop, (const struct sockaddr *)&sc->listen, sc->listen_len, "status", status_http_serve,
                            st, &opts);
    if (!st->httpd)
        return RP_ERR;
    rp_log_info("status: listening on %s (%zu components, history in %s)", sc->listen_text, st->ncomps,
                sc->db_path ? sc->db_path : "rampart-status.db");
    return RP_OK;
}

void status_stop_accepting(struct status *st)
{
    if (st && st->httpd)
        httpd_stop_accepting(st->httpd);
}

int status_port(const struct status *st)
{
    return st && st->httpd ? httpd_port(st->httpd) : -1;
}

void status_free(struct status *st)
{
    if (!st)
        return;
    if (st->loop)
        ev_timer_cancel(st->loop, &st->timer);
    if (st->store && st->comps) {
        /* Keep the current, partial minute too: a restart within the same
         * minute adds to it rather than losing it. */
        int64_t wall = status_wall_us(st, status_loop_now(st));
        status_flush_minutes(st, wall / (int64_t)MINUTE_US + 1);
    }
    httpd_free(st->httpd);
    store_close(st->store);
    store_incidents_free(st->view, st->nview);
    for (size_t i = 0; i < st->ncomps; i++)
        free(st->comps[i].fine);
    if (st->owned_names)
        for (size_t i = 0; i < st->ncomps; i++)
            free(st->owned_names[i]);
    free(st->owned_names);
    free(st->comps);
    free(st->routes);
    free(st->api_ids);
    free(st->api_names);
    free(st->vcomps);
    free(st->rows);
    for (int d = 0; d < STATUSPAGE_DOC_COUNT; d++)
        sbuf_free(&st->docs[d].body);
    free(st);
}

/* ===================================================================== */
/* lookups                                                                */
/* ===================================================================== */

int status_component_for(const struct status *st, int upstream_idx, const char *path, size_t len)
{
    if (!st)
        return -1;
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < st->nroutes; i++) {
        const struct route_ent *r = &st->routes[i];
        if (r->len <= len && r->len > best_len && memcmp(path, r->prefix, r->len) == 0) {
            best = r->comp;
            best_len = r->len;
        }
    }
    if (best >= 0)
        return best;
    if (upstream_idx >= 0 && upstream_idx < STATUS_MAX_UPSTREAMS)
        return st->upstream_map[upstream_idx];
    return -1;
}

int status_component_status(const struct status *st, int i)
{
    if (!st || i < 0 || (size_t)i >= st->ncomps)
        return -1;
    return st->comps[i].effective;
}

/*
 * status.c — per-component rollups, live status with hysteresis, burn-rate
 * incidents, maintenance transitions, the public status listener and the
 * admin routes for incidents and maintenance (see status.h).
 *
 * Data flow:
 *
 *   proxy ──status_observe──▶ 5-s slots ──▶ live status, burn rates
 *                         └─▶ minute slots ──(1 tx/min)──▶ store ──▶ daily bars
 *   admin API / burn rates / maintenance clock ──▶ store ──▶ incident view
 *   1-s timer ──▶ evaluate ──▶ snapshot (every document prebuilt + ETag)
 *
 * Hot path: status_observe() finds two ring slots by index arithmetic,
 * clears a slot whose period has passed, and adds to counters.  No lock (one
 * thread), no allocation, no I/O.  A minute slot is reused after 128
 * minutes; if the store was unable to take it by then, the minute is counted
 * as dropped rather than blocking the proxy.
 *
 * Every write to incidents goes "load from store, change, write in one
 * transaction, reload the view", so the view never disagrees with what is on
 * disk and a crash between steps loses nothing that was acknowledged.
 *
 * Time: the proxy passes the monotonic clock; rollups are keyed by wall-clock
 * minutes (they leave the process), so observe adds an offset refreshed once
 * a second.  Tests pin the offset and drive status_tick() with synthetic
 * time.
 */
#include "status.h"
#include "admin.h"
#include "canary.h"
#include "config.h"
#include "httpd.h"
#include "metrics.h"
#include "status_api.h"
#include "statuspage.h"
#include "store.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_US 5000000ULL /* live/burn slot */
#define MINUTE_US 60000000ULL
#define MINUTE_RING 128 /* minutes kept in memory (flush slack + sparkline) */
#define DAY_RING 128    /* >= STATUSPAGE_DAYS */
#define TICK_US 1000000ULL
#define BURN_EVERY_US 5000000ULL
#define FOLD_EVERY_US 3600000000ULL
#define FLUSH_RETRY_US 10000000ULL
#define VIEW_DAYS 90
#define VIEW_RECENT 50
#define VIEW_CAP 500
#define DAY_MS 86400000LL

/* TTFB histogram upper bounds in microseconds; the last bucket is open. */
static const uint64_t hist_bounds_us[STORE_HIST_BUCKETS - 1] = {
    25000,   50000,   100000,  200000,  350000,  500000,   750000,   1000000,
    1500000, 2000000, 3000000, 5000000, 8000000, 13000000, 20000000,
};

/* ===================================================================== */
/* configuration                                                          */
/* ===================================================================== */

void status_conf_init(struct status_conf *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->refresh_us = 5000000;
    sc->window_us = 60000000;
    sc->min_requests = 5;
    sc->degraded_below = 0.95;
    sc->partial_below = 0.90;
    sc->major_below = 0.50;
    sc->recover_after_us = 120000000;
    sc->no_data_after_us = 300000000;
    sc->latency_us = 5000000;
    sc->target = 0.995;
    sc->auto_incidents = true;
    sc->rules[0] = (struct status_burn_rule){14.4, 3600000000ULL, 300000000ULL};
    sc->rules[1] = (struct status_burn_rule){6.0, 21600000000ULL, 1800000000ULL};
    sc->num_rules = 2;
    sc->resolve_after_us = 900000000ULL;
    sc->retention_us = 400ULL * 86400000000ULL;
}

void status_conf_free(struct status_conf *sc)
{
    free(sc->db_path);
    free(sc->page_name);
    free(sc->page_url);
    for (size_t i = 0; i < sc->num_components; i++) {
        struct status_component_conf *c = &sc->components[i];
        free(c->name);
        free(c->description);
        for (size_t k = 0; k < c->num_routes; k++)
            free(c->routes[k]);
        for (size_t k = 0; k < c->num_upstreams; k++)
            free(c->upstreams[k]);
    }
    status_conf_init(sc);
}

static void conf_strdup(struct conf_doc *doc, const struct conf_node *n, size_t max, char **out)
{
    const char *s = NULL;
    if (!n || conf_string(doc, n, &s) != RP_OK || !s)
        return;
    if (strlen(s) > max) {
        conf_error(doc, n, "too long (at most %zu bytes)", max);
        return;
    }
    free(*out);
    *out = rp_xstrdup(s);
}

/* An objective: {target: 99.5 (percent), latency: 2s}. */
static void parse_objective(struct conf_doc *doc, const struct conf_node *n, double *target, uint64_t *latency)
{
    static const char *const keys[] = {"target", "latency", NULL};
    if (!n || conf_expect_map(doc, n) != RP_OK)
        return;
    conf_check_keys(doc, n, keys);
    const struct conf_node *t = conf_get(n, "target");
    if (t) {
        double pct = *target * 100.0;
        if (conf_double(doc, t, 50.0, 99.9999, &pct) == RP_OK)
            *target = pct / 100.0;
    }
    conf_duration_range(doc, conf_get(n, "latency"), 1000, 600000000ULL, latency);
}

static void parse_live(struct conf_doc *doc, const struct conf_node *n, struct status_conf *sc)
{
    static const char *const keys[] = {"window",      "min_requests",  "degraded_below", "partial_below",
                                       "major_below", "recover_after", "no_data_after",  NULL};
    if (!n || conf_expect_map(doc, n) != RP_OK)
        return;
    conf_check_keys(doc, n, keys);
    conf_duration_range(doc, conf_get(n, "window"), 10000000ULL, 600000000ULL, &sc->window_us);
    conf_uint(doc, conf_get(n, "min_requests"), 1, 1000000, &sc->min_requests);
    conf_double(doc, conf_get(n, "degraded_below"), 0.0, 1.0, &sc->degraded_below);
    conf_double(doc, conf_get(n, "partial_below"), 0.0, 1.0, &sc->partial_below);
    conf_double(doc, conf_get(n, "major_below"), 0.0, 1.0, &sc->major_below);
    conf_duration_range(doc, conf_get(n, "recover_after"), 0, 3600000000ULL, &sc->recover_after_us);
    conf_duration_range(doc, conf_get(n, "no_data_after"), 10000000ULL, 86400000000ULL, &sc->no_data_after_us);
    if (!(sc->major_below <= sc->partial_below && sc->partial_below <= sc->degraded_below))
        conf_error(doc, n, "thresholds must satisfy major_below <= partial_below <= degraded_below");
}

static void parse_incidents(struct conf_doc *doc, const struct conf_node *n, struct status_conf *sc)
{
    static const char *const keys[] = {"auto", "resolve_after", "burn_rates", NULL};
    static const char *const rule_keys[] = {"factor", "long", "short", NULL};
    if (!n || conf_expect_map(doc, n) != RP_OK)
        return;
    conf_check_keys(doc, n, keys);
    conf_bool(doc, conf_get(n, "auto"), &sc->auto_incidents);
    conf_duration_range(doc, conf_get(n, "resolve_after"), 0, 86400000000ULL, &sc->resolve_after_us);
    const struct conf_node *br = conf_get(n, "burn_rates");
    if (!br || conf_expect_seq(doc, br) != RP_OK)
        return;
    sc->num_rules = 0;
    for (const struct conf_node *r = br->child; r; r = r->next) {
        if (sc->num_rules >= STATUS_MAX_RULES) {
            conf_error(doc, r, "at most %d burn-rate rules", STATUS_MAX_RULES);
            break;
        }
        if (conf_expect_map(doc, r) != RP_OK)
            continue;
        conf_check_keys(doc, r, rule_keys);
        struct status_burn_rule rule = {0, 0, 0};
        const struct conf_node *f = conf_require(doc, r, "factor");
        const struct conf_node *l = conf_require(doc, r, "long");
        const struct conf_node *s = conf_require(doc, r, "short");
        if (!f || !l || !s)
            continue;
        if (conf_double(doc, f, 1.0, 1000.0, &rule.factor) != RP_OK ||
            conf_duration_range(doc, l, 10000000ULL, 86400000000ULL, &rule.long_us) != RP_OK ||
            conf_duration_range(doc, s, SLOT_US, 86400000000ULL, &rule.short_us) != RP_OK)
            continue;
        if (rule.short_us >= rule.long_us) {
            conf_error(doc, s, "short window must be shorter than the long window");
            continue;
        }
        sc->rules[sc->num_rules++] = rule;
    }
    if (sc->num_rules == 0)
        conf_error(doc, br, "at least one burn-rate rule is needed (or set auto: false)");
}

static void parse_list(struct conf_doc *doc, const struct conf_node *n, char **out, size_t *count, bool route)
{
    if (!n || conf_expect_seq(doc, n) != RP_OK)
        return;
    for (const struct conf_node *it = n->child; it; it = it->next) {
        const char *s = NULL;
        if (conf_string(doc, it, &s) != RP_OK || !s)
            continue;
        if (*count >= STATUS_MAX_MATCH) {
            conf_error(doc, it, "at most %d entries", STATUS_MAX_MATCH);
            return;
        }
        if (route && s[0] != '/') {
            conf_error(doc, it, "a route prefix starts with '/'");
            continue;
        }
        if (!s[0] || strlen(s) > 256) {
            conf_error(doc, it, "must be 1 to 256 characters");
            continue;
        }
        out[(*count)++] = rp_xstrdup(s);
    }
}

static void parse_components(struct conf_doc *doc, const struct conf_node *n, const struct config *cfg,
                             struct status_conf *sc)
{
    static const char *const keys[] = {"name", "description", "routes", "upstreams", "objective", NULL};
    if (conf_expect_seq(doc, n) != RP_OK)
        return;
    for (const struct conf_node *it = n->child; it; it = it->next) {
        if (sc->num_components >= STATUS_MAX_COMPONENTS) {
            conf_error(doc, it, "at most %d components", STATUS_MAX_COMPONENTS);
            return;
        }
        if (conf_expect_map(doc, it) != RP_OK)
            continue;
        conf_check_keys(doc, it, keys);
        struct status_component_conf *c = &sc->components[sc->num_components++];
        memset(c, 0, sizeof *c);
        const struct conf_node *name = conf_require(doc, it, "name");
        conf_strdup(doc, name, 100, &c->name);
        if (name && c->name && !c->name[0])
            conf_error(doc, name, "a component needs a non-empty name");
        for (size_t k = 0; c->name && k + 1 < sc->num_components; k++)
            if (sc->components[k].name && strcmp(sc->components[k].name, c->name) == 0)
                conf_error(doc, name, "component \"%s\" is defined twice", c->name);
        conf_strdup(doc, conf_get(it, "description"), 500, &c->description);
        parse_list(doc, conf_get(it, "routes"), c->routes, &c->num_routes, true);
        const struct conf_node *ups = conf_get(it, "upstreams");
        parse_list(doc, ups, c->upstreams, &c->num_upstreams, false);
        if (cfg && ups) {
            const struct conf_node *un = ups->child;
            for (size_t k = 0; k < c->num_upstreams; k++, un = un ? un->next : NULL) {
                bool found = false;
                for (size_t u = 0; u < cfg->num_upstreams; u++)
                    if (cfg->upstreams[u].name && strcmp(cfg->upstreams[u].name, c->upstreams[k]) == 0)
                        found = true;
                if (!found)
                    conf_error(doc, un ? un : ups, "no upstream named \"%s\"", c->upstreams[k]);
            }
        }
        if (c->num_routes == 0 && c->num_upstreams == 0)
            conf_error(doc, it, "component needs routes: or upstreams: to say which traffic feeds it");
        parse_objective(doc, conf_get(it, "objective"), &c->target, &c->latency_us);
    }
}

int status_conf_parse(struct conf_doc *doc, const struct conf_node *sn, const struct conf_node *cn,
                      const struct config *cfg, struct status_conf *sc)
{
    static const char *const keys[] = {"listen",    "db",        "page",      "refresh", "live",
                                       "objective", "incidents", "retention", NULL};
    static const char *const page_keys[] = {"name", "url", NULL};
    size_t before = conf_error_count(doc);

    if (!sn) {
        if (cn)
            conf_error_key(doc, cn, "components: needs a status: section (with listen:) that publishes them");
        return conf_error_count(doc) > before ? RP_ERR : RP_OK;
    }
    if (conf_expect_map(doc, sn) != RP_OK)
        return RP_ERR;
    conf_check_keys(doc, sn, keys);
    sc->enabled = true;

    const struct conf_node *ln = conf_require(doc, sn, "listen");
    if (ln && conf_addr(doc, ln, &sc->listen, &sc->listen_len) == RP_OK && ln->value)
        rp_snprintf(sc->listen_text, sizeof sc->listen_text, "%.63s", ln->value);
    conf_strdup(doc, conf_get(sn, "db"), 4096, &sc->db_path);
    if (!sc->db_path)
        sc->db_path = rp_xstrdup("rampart-status.db");

    const struct conf_node *page = conf_get(sn, "page");
    if (page && conf_expect_map(doc, page) == RP_OK) {
        conf_check_keys(doc, page, page_keys);
        conf_strdup(doc, conf_get(page, "name"), 100, &sc->page_name);
        conf_strdup(doc, conf_get(page, "url"), 1024, &sc->page_url);
    }
    if (!sc->page_name)
        sc->page_name = rp_xstrdup("rampart");
    if (!sc->page_url)
        sc->page_url = rp_xstrdup("");

    conf_duration_range(doc, conf_get(sn, "refresh"), 1000000ULL, 60000000ULL, &sc->refresh_us);
    parse_live(doc, conf_get(sn, "live"), sc);
    parse_objective(doc, conf_get(sn, "objective"), &sc->target, &sc->latency_us);
    parse_incidents(doc, conf_get(sn, "incidents"), sc);
    conf_duration_range(doc, conf_get(sn, "retention"), 86400000000ULL, 3650ULL * 86400000000ULL, &sc->retention_us);
    if (cn)
        parse_components(doc, cn, cfg, sc);
    return conf_error_count(doc) > before ? RP_ERR : RP_OK;
}

/* ===================================================================== */
/* runtime state                                                          */
/* ===================================================================== */

struct fine_slot {
    int64_t idx;
    uint32_t total, excluded, errors, slow;
};

struct minute_slot {
    int64_t minute;
    uint32_t total, excluded, errors, slow;
    uint32_t hist[STORE_HIST_BUCKETS];
    uint8_t worst;
    bool flushed;
};

struct day_slot {
    int64_t day;
    uint64_t eligible, good;
    uint8_t worst;
};

struct comp {
    char code[STORE_CODE_MAX];
    const char *name;
    const char *description;
    int cid;
    int64_t created_ms, updated_ms;
    uint64_t latency_us;
    double target;

    struct fine_slot *fine;
    size_t nfine;
    struct minute_slot mins[MINUTE_RING];
    struct day_slot days[DAY_RING];

    struct status_live live;
    int effective; /* shown status (statuspage.h), may be NO_DATA */
    int reported;  /* JSON status, never NO_DATA */
    bool in_maintenance;

    int64_t auto_id;     /* open automatic incident, 0 = none */
    uint64_t calm_since; /* recovery evidence since (0 = not calm) */
    bool armed;          /* may open a new automatic incident */

    /* totals since start, for /metrics */
    uint64_t n_good, n_errors, n_slow, n_excluded;
};

struct route_ent {
    const char *prefix;
    size_t len;
    int comp;
};

struct snap_doc {
    struct sbuf body;
    char etag[24];
};

struct status {
    struct ev_loop *loop;
    const struct status_conf *sc;
    struct store *store;
    struct httpd *httpd;
    struct ev_timer timer;

    int64_t wall_off_us;
    bool clock_pinned;
    uint64_t last_now_us; /* time of the last tick */

    struct comp *comps;
    size_t ncomps;
    char **owned_names; /* names of implicit components (one per upstream) */
    int upstream_map[CONFIG_MAX_UPSTREAMS];
    struct route_ent *routes;
    size_t nroutes;
    const char **api_ids, **api_names;

    /* incidents and maintenances shown (newest first) */
    struct store_incident *view;
    size_t nview;

    /* snapshot */
    struct snap_doc docs[STATUSPAGE_DOC_COUNT];
    struct statuspage_component *vcomps;
    char page_id[STORE_CODE_MAX];
    bool dirty;
    bool built;
    uint64_t last_build_us;

    uint64_t last_burn_us;
    uint64_t last_fold_us;
    uint64_t last_flush_try_us;
    int64_t flush_minute; /* minutes before this are flushed (or empty) */
    struct store_rollup *rows;

    /* metrics */
    uint64_t store_errors;
    uint64_t dropped_minutes;
    uint64_t auto_opened, auto_resolved;
    uint64_t build_us;
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
/* hot path                                                               */
/* ===================================================================== */

static struct minute_slot *minute_slot(struct status *st, struct comp *c, int64_t minute)
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
    while (i < STORE_HIST_BUCKETS - 1 && us > hist_bounds_us[i])
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
    struct minute_slot *m = minute_slot(st, c, wall / (int64_t)MINUTE_US);
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
/* windows                                                                */
/* ===================================================================== */

static int64_t wall_us(const struct status *st, uint64_t now_us)
{
    return (int64_t)now_us + st->wall_off_us;
}

/* Sum of the slots covering the last span_us (the current, partial slot
 * included). */
static void window_sum(const struct comp *c, int64_t wall, uint64_t span_us, struct status_counts *out)
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
        out->eligible += f->total - f->excluded;
        out->errors += f->errors;
        out->slow += f->slow;
    }
}

/* ===================================================================== */
/* incident view                                                          */
/* ===================================================================== */

static int comp_index(const struct status *st, const char *code)
{
    for (size_t i = 0; i < st->ncomps; i++)
        if (strcmp(st->comps[i].code, code) == 0)
            return (int)i;
    return -1;
}

static int64_t now_ms_of(const struct status *st, uint64_t now_us)
{
    return wall_us(st, now_us) / 1000;
}

/* "Now" for work not driven by a tick (admin requests): the loop's clock,
 * or with a pinned test clock the time of the last tick. */
static uint64_t loop_now(const struct status *st)
{
    if (st->loop)
        return ev_now(st->loop);
    return st->clock_pinned ? st->last_now_us : rp_now_us();
}

/* Re-associate open automatic incidents with their components. */
static void rebind_auto(struct status *st)
{
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        int64_t found = 0;
        for (size_t k = 0; k < st->nview && !found; k++) {
            const struct store_incident *inc = &st->view[k];
            if (!inc->maintenance && inc->automatic && !statuspage_istatus_done(inc->status) &&
                strcmp(inc->auto_code, c->code) == 0)
                found = inc->id;
        }
        if (c->auto_id && !found)
            c->armed = false; /* an operator closed it: wait for the burn to stop */
        c->auto_id = found;
    }
}

static void reload_view(struct status *st, uint64_t now_us)
{
    struct store_incident *v = NULL;
    size_t n = 0;
    if (store_incidents_load(st->store, now_ms_of(st, now_us) - VIEW_DAYS * DAY_MS, VIEW_RECENT, VIEW_CAP, &v, &n) !=
        RP_OK) {
        st->store_errors++;
        return;
    }
    store_incidents_free(st->view, st->nview);
    st->view = v;
    st->nview = n;
    rebind_auto(st);
    st->dirty = true;
}

/* Effective status: measured, made worse (never better) by an operator's
 * statement in an open incident, and under_maintenance during maintenance. */
static void recompute(struct status *st, uint64_t now_us)
{
    int64_t now_ms = now_ms_of(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        int override = STATUSPAGE_NO_DATA;
        bool maint = false;
        for (size_t k = 0; k < st->nview; k++) {
            const struct store_incident *inc = &st->view[k];
            if (statuspage_istatus_done(inc->status))
                continue;
            if (inc->maintenance) {
                if (inc->status != STATUSPAGE_IN_PROGRESS && inc->status != STATUSPAGE_VERIFYING)
                    continue;
                for (size_t j = 0; j < inc->num_components; j++)
                    if (strcmp(inc->components[j], c->code) == 0)
                        maint = true;
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
                    if (!up->automatic && up->affected[a].new_status > override)
                        override = up->affected[a].new_status;
                    break;
                }
            }
        }
        int eff = c->live.level;
        if (override > eff)
            eff = override;
        if (maint)
            eff = override > STATUSPAGE_UNDER_MAINTENANCE ? override : STATUSPAGE_UNDER_MAINTENANCE;
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
        struct minute_slot *m = minute_slot(st, c, wall_us(st, now_us) / (int64_t)MINUTE_US);
        if (eff > m->worst)
            m->worst = (uint8_t)eff;
    }
}

/* ===================================================================== */
/* writing incidents                                                      */
/* ===================================================================== */

static void incident_set_status(struct store_incident *inc, int status, int64_t now_ms)
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

static void incident_add_component(struct store_incident *inc, const char *code)
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

static int write_new(struct status *st, struct store_incident *inc, struct store_update *u)
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

static int write_update(struct status *st, struct store_incident *inc, struct store_update *u)
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
    int64_t now_ms = now_ms_of(st, now_us);
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
    if (write_new(st, &inc, &u) == RP_OK) {
        c->auto_id = inc.id;
        st->auto_opened++;
        rp_log_info("status: opened incident \"%s\" (burn rate %.1fx over %s)", name, status_burn_rate(sw, c->target),
                    ss);
    }
}

/* An incident reported by another subsystem (a canary rolled back by
 * release control).  It is opened in "monitoring": the cause is known and
 * already mitigated when it is reported, and users who saw errors deserve
 * to read why. */
int status_report_incident(struct status *st, int upstream_idx, const char *name, const char *body,
                           uint64_t now_us)
{
    if (!st || !st->store)
        return RP_ERR;
    int ci = status_component_for(st, upstream_idx, "", 0);
    int64_t now_ms = now_ms_of(st, now_us);
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
    if (write_new(st, &inc, &u) != RP_OK)
        return RP_ERR;
    rp_log_info("status: opened incident \"%s\"", name);
    /* The page and the feeds are built from the view: without a reload
     * the incident would only show after the next unrelated write. */
    reload_view(st, now_us);
    status_refresh(st);
    return RP_OK;
}

static void auto_resolve(struct status *st, struct comp *c, uint64_t now_us)
{
    struct store_incident inc;
    bool found = false;
    int64_t now_ms = now_ms_of(st, now_us);
    if (store_incident_get(st->store, c->auto_id, &inc, &found) != RP_OK) {
        st->store_errors++;
        return;
    }
    if (!found) {
        c->auto_id = 0;
        return;
    }
    if (!statuspage_istatus_done(inc.status)) {
        char body[512], span[32];
        fmt_span(span, sizeof span, st->sc->resolve_after_us);
        rp_snprintf(body, sizeof body,
                    "Requests to %s have met the objective for %s and the error budget is no longer burning "
                    "fast. rampart resolved this incident automatically.",
                    c->name, span);
        struct store_affected aff;
        rp_snprintf(aff.code, sizeof aff.code, "%s", c->code);
        aff.old_status = c->reported;
        aff.new_status = STATUSPAGE_OPERATIONAL;
        struct store_update u = {0};
        u.status = STATUSPAGE_RESOLVED;
        u.body = body;
        u.created_ms = u.updated_ms = u.display_ms = now_ms;
        u.automatic = true;
        u.affected = &aff;
        u.num_affected = 1;
        incident_set_status(&inc, STATUSPAGE_RESOLVED, now_ms);
        if (write_update(st, &inc, &u) == RP_OK) {
            st->auto_resolved++;
            rp_log_info("status: resolved incident \"%s\"", inc.name);
        }
    }
    c->auto_id = 0;
    store_incident_clear(&inc);
}

/* Multi-window burn rates: a rule fires when both its long and short
 * windows burn at least `factor` times the budget; the short window makes
 * the alert stop soon after recovery, the long one keeps a blip quiet. */
static bool burn_eval(struct status *st, uint64_t now_us)
{
    bool wrote = false;
    int64_t wall = wall_us(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        int fired = -1;
        struct status_counts lw = {0}, sw = {0};
        for (size_t r = 0; r < st->sc->num_rules && fired < 0 && !c->in_maintenance; r++) {
            const struct status_burn_rule *rule = &st->sc->rules[r];
            window_sum(c, wall, rule->long_us, &lw);
            window_sum(c, wall, rule->short_us, &sw);
            if (lw.eligible < st->sc->min_requests || sw.eligible < st->sc->min_requests)
                continue;
            if (status_burn_rate(&lw, c->target) >= rule->factor && status_burn_rate(&sw, c->target) >= rule->factor)
                fired = (int)r;
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
        /* Recovery needs evidence: traffic judged operational by the live
         * state machine (which has its own quiet period), continuously. */
        if (c->live.level != STATUSPAGE_OPERATIONAL || c->in_maintenance) {
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
static bool maintenance_eval(struct status *st, uint64_t now_us)
{
    int64_t now_ms = now_ms_of(st, now_us);
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
            int ci = comp_index(st, inc.components[j]);
            if (ci < 0)
                continue;
            struct store_affected *a = &aff[u.num_affected++];
            rp_snprintf(a->code, sizeof a->code, "%s", inc.components[j]);
            a->old_status = st->comps[ci].reported;
            a->new_status = next == STATUSPAGE_COMPLETED ? STATUSPAGE_OPERATIONAL : STATUSPAGE_UNDER_MAINTENANCE;
        }
        u.affected = aff;
        incident_set_status(&inc, next, now_ms);
        if (write_update(st, &inc, &u) == RP_OK)
            rp_log_info("status: maintenance \"%s\" is now %s", inc.name, statuspage_istatus_name(next));
        store_incident_clear(&inc);
    }
    return ndue > 0;
}

/* ===================================================================== */
/* rollups: flush and fold                                                */
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

static bool minute_has_data(const struct minute_slot *m)
{
    return m->total > 0 || m->worst >= STATUSPAGE_UNDER_MAINTENANCE;
}

/* Write every completed minute (or, at shutdown, every minute) not yet
 * stored, in one transaction. */
static void flush_minutes(struct status *st, int64_t before_minute)
{
    size_t n = 0;
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        for (size_t k = 0; k < MINUTE_RING; k++) {
            const struct minute_slot *m = &c->mins[k];
            if (m->flushed || m->minute >= before_minute || !minute_has_data(m))
                continue;
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
            if (m->flushed || m->minute >= before_minute || !minute_has_data(m))
                continue;
            m->flushed = true;
            uint64_t elig = m->total - m->excluded;
            day_add(c, m->minute, elig, elig - m->errors - m->slow, m->worst);
        }
    }
    st->flush_minute = before_minute;
}

/* ===================================================================== */
/* snapshot                                                               */
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
            double lo = i == 0 ? 0.0 : (double)hist_bounds_us[i - 1];
            if (i == STORE_HIST_BUCKETS - 1)
                return (uint64_t)lo; /* open bucket: report its floor */
            double hi = (double)hist_bounds_us[i];
            return (uint64_t)(lo + (hi - lo) * ((want - cum) / (double)hist[i]));
        }
        cum = next;
    }
    return hist_bounds_us[STORE_HIST_BUCKETS - 2];
}

static void build_view(struct status *st, uint64_t now_us, struct statuspage_view *v)
{
    int64_t wall = wall_us(st, now_us);
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
            if (m->flushed || !minute_has_data(m))
                continue;
            int64_t d = m->minute / 1440 - (today - (STATUSPAGE_DAYS - 1));
            if (d < 0 || d >= STATUSPAGE_DAYS)
                continue;
            struct statuspage_day *vd = &vc->days[d];
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

static void rebuild(struct status *st, uint64_t now_us)
{
    struct statuspage_view v;
    uint64_t t0 = rp_now_us();
    build_view(st, now_us, &v);
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
    uint64_t now = loop_now(st);
    recompute(st, now);
    rebuild(st, now);
}

/* ===================================================================== */
/* tick                                                                   */
/* ===================================================================== */

void status_tick(struct status *st, uint64_t now_us)
{
    st->last_now_us = now_us;
    if (!st->clock_pinned)
        st->wall_off_us = rp_wall_ms() * 1000 - (int64_t)rp_now_us();
    int64_t wall = wall_us(st, now_us);

    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        struct status_counts w;
        window_sum(c, wall, st->sc->window_us, &w);
        if (status_live_step(&c->live, st->sc, &w, now_us))
            st->dirty = true;
    }

    bool wrote = maintenance_eval(st, now_us);
    if (wrote)
        reload_view(st, now_us);
    recompute(st, now_us);

    if (st->sc->auto_incidents && (st->last_burn_us == 0 || now_us - st->last_burn_us >= BURN_EVERY_US)) {
        st->last_burn_us = now_us;
        if (burn_eval(st, now_us)) {
            reload_view(st, now_us);
            recompute(st, now_us);
        }
    }

    int64_t cur_minute = wall / (int64_t)MINUTE_US;
    if (cur_minute > st->flush_minute &&
        (st->last_flush_try_us == 0 || now_us - st->last_flush_try_us >= FLUSH_RETRY_US)) {
        st->last_flush_try_us = now_us;
        flush_minutes(st, cur_minute);
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
        rebuild(st, now_us);
}

static void status_timer_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct status *st = arg;
    status_tick(st, ev_now(loop));
    ev_timer_arm(loop, t, TICK_US);
}

static int load_history(struct status *st, uint64_t now_us);

void status_set_clock(struct status *st, int64_t wall_minus_mono_us, uint64_t now_us)
{
    st->wall_off_us = wall_minus_mono_us;
    st->clock_pinned = true;
    st->last_now_us = now_us;
    st->last_fold_us = st->last_burn_us = st->last_flush_try_us = 0;
    if (load_history(st, now_us) != RP_OK)
        st->store_errors++;
    status_tick(st, now_us);
}

/* ===================================================================== */
/* public listener                                                        */
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

static void status_http(void *arg, const struct httpd_request *req, struct httpd_response *resp)
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

/* ===================================================================== */
/* admin API                                                              */
/* ===================================================================== */

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

static void api_incident(struct status *st, struct httpd_response *resp, int http, const struct store_incident *inc)
{
    struct statuspage_view v;
    build_view(st, loop_now(st), &v);
    resp->status = http;
    resp->content_type = "application/json";
    statuspage_incident_json(&resp->body, &v, inc);
    sbuf_add(&resp->body, "\n", 1);
}

static void after_write(struct status *st)
{
    uint64_t now = loop_now(st);
    reload_view(st, now);
    /* A maintenance created with a start in the past begins now, not at
     * the next tick, so the answer already shows it in progress. */
    if (maintenance_eval(st, now))
        reload_view(st, now);
    recompute(st, now);
    rebuild(st, now);
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

static void api_create(struct status *st, bool maint, const struct httpd_request *req, struct httpd_response *resp)
{
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    uint64_t now_us = loop_now(st);
    int64_t now_ms = now_ms_of(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_CREATE : STATUS_API_INCIDENT_CREATE, req->body, req->body_len, &tab,
                         now_ms, &r, &err) != RP_OK) {
        api_error(resp, &err);
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
        incident_set_status(&inc, status, now_ms);
    }
    u.affected = aff;
    if (write_new(st, &inc, &u) != RP_OK) {
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

static void api_post_update(struct status *st, bool maint, int64_t id, const struct httpd_request *req,
                            struct httpd_response *resp)
{
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    uint64_t now_us = loop_now(st);
    int64_t now_ms = now_ms_of(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_UPDATE : STATUS_API_INCIDENT_UPDATE, req->body, req->body_len, &tab,
                         now_ms, &r, &err) != RP_OK) {
        api_error(resp, &err);
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
        incident_add_component(&inc, st->comps[r.comp[i]].code);
    if (r.has_impact)
        inc.impact = r.impact;
    incident_set_status(&inc, r.status, now_ms);
    if (write_update(st, &inc, &u) != RP_OK) {
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

static void api_edit(struct status *st, bool maint, int64_t id, const struct httpd_request *req,
                     struct httpd_response *resp)
{
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    uint64_t now_us = loop_now(st);
    int64_t now_ms = now_ms_of(st, now_us);
    if (status_api_parse(maint ? STATUS_API_MAINT_EDIT : STATUS_API_INCIDENT_EDIT, req->body, req->body_len, &tab,
                         now_ms, &r, &err) != RP_OK) {
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
    if (write_update(st, &inc, NULL) != RP_OK) {
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

static void api_edit_update(struct status *st, bool maint, int64_t id, int64_t uid, const struct httpd_request *req,
                            struct httpd_response *resp)
{
    struct status_api_components tab = {st->ncomps, st->api_ids, st->api_names};
    struct status_api_req r;
    struct status_api_error err;
    struct store_incident inc;
    bool found = false;
    uint64_t now_us = loop_now(st);
    int64_t now_ms = now_ms_of(st, now_us);
    if (status_api_parse(STATUS_API_UPDATE_EDIT, req->body, req->body_len, &tab, now_ms, &r, &err) != RP_OK) {
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

static void api_list(struct status *st, bool maint, struct httpd_response *resp)
{
    struct statuspage_view v;
    build_view(st, loop_now(st), &v);
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

/* Path segments after the collection prefix: "", "/ID", "/ID/updates",
 * "/ID/updates/UID". */
static void status_admin(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    struct status *st = arg;
    const char *p = req->path.p;
    size_t len = req->path.len;
    static const char inc_prefix[] = "/api/v1/incidents";
    static const char maint_prefix[] = "/api/v1/maintenances";
    bool maint;
    size_t plen;
    if (len >= sizeof maint_prefix - 1 && memcmp(p, maint_prefix, sizeof maint_prefix - 1) == 0) {
        maint = true;
        plen = sizeof maint_prefix - 1;
    } else if (len >= sizeof inc_prefix - 1 && memcmp(p, inc_prefix, sizeof inc_prefix - 1) == 0) {
        maint = false;
        plen = sizeof inc_prefix - 1;
    } else {
        api_fail(resp, 404, NULL, "not_found", "no such resource");
        return;
    }
    const char *rest = p + plen;
    size_t rlen = len - plen;
    if (rlen && rest[0] != '/') {
        api_fail(resp, 404, NULL, "not_found", "no such resource");
        return;
    }
    /* Split into at most three segments. */
    const char *seg[3] = {NULL, NULL, NULL};
    size_t seglen[3] = {0, 0, 0};
    int nseg = 0;
    size_t i = 0;
    while (i < rlen) {
        while (i < rlen && rest[i] == '/')
            i++;
        if (i >= rlen)
            break;
        if (nseg == 3) {
            api_fail(resp, 404, NULL, "not_found", "no such resource");
            return;
        }
        seg[nseg] = rest + i;
        while (i < rlen && rest[i] != '/')
            i++;
        seglen[nseg] = (size_t)(rest + i - seg[nseg]);
        nseg++;
    }
    bool get = method_is(req, "GET") || method_is(req, "HEAD");
    bool post = method_is(req, "POST");
    bool patch = method_is(req, "PATCH");

    if (nseg == 0) {
        if (get)
            api_list(st, maint, resp);
        else if (post)
            api_create(st, maint, req, resp);
        else {
            api_fail(resp, 405, NULL, "method_not_allowed", "use GET to list or POST to create");
            httpd_add_header(resp, "Allow", "GET, HEAD, POST");
        }
        return;
    }
    int64_t id = store_id_decode('i', seg[0], seglen[0]);
    if (nseg == 1) {
        if (get) {
            struct store_incident inc;
            if (api_load(st, maint, id, &inc, resp)) {
                api_incident(st, resp, 200, &inc);
                store_incident_clear(&inc);
            }
        } else if (patch) {
            api_edit(st, maint, id, req, resp);
        } else {
            api_fail(resp, 405, NULL, "method_not_allowed", "use GET to read or PATCH to edit");
            httpd_add_header(resp, "Allow", "GET, HEAD, PATCH");
        }
        return;
    }
    if (seglen[1] != 7 || memcmp(seg[1], "updates", 7) != 0) {
        api_fail(resp, 404, NULL, "not_found", "no such resource");
        return;
    }
    if (nseg == 2) {
        if (post) {
            api_post_update(st, maint, id, req, resp);
        } else {
            api_fail(resp, 405, NULL, "method_not_allowed", "use POST to add an update");
            httpd_add_header(resp, "Allow", "POST");
        }
        return;
    }
    if (patch) {
        api_edit_update(st, maint, id, store_id_decode('u', seg[2], seglen[2]), req, resp);
    } else {
        api_fail(resp, 405, NULL, "method_not_allowed", "use PATCH to edit an update's body");
        httpd_add_header(resp, "Allow", "PATCH");
    }
}

void status_admin_request(struct status *st, const char *method, const char *path, const char *body,
                          struct httpd_response *resp)
{
    struct h1_message msg;
    struct httpd_request req;
    memset(&msg, 0, sizeof msg);
    memset(&req, 0, sizeof req);
    msg.method.p = method;
    msg.method.len = strlen(method);
    msg.target.p = path;
    msg.target.len = strlen(path);
    req.msg = &msg;
    const char *q = strchr(path, '?');
    req.path.p = path;
    req.path.len = q ? (size_t)(q - path) : strlen(path);
    req.query.p = q ? q + 1 : "";
    req.query.len = q ? strlen(q + 1) : 0;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.peer = "test";
    resp->status = 200;
    resp->content_type = NULL;
    status_admin(st, &req, resp);
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

int status_track_canary(struct status *st, struct canary *c, const struct config_upstream *u, uint64_t now_us)
{
    if (!c)
        return RP_OK;
    if (!st || !u) {
        canary_set_verdict_cb(c, NULL, NULL);
        return RP_OK;
    }
    struct canary_server_ref refs[CONFIG_MAX_SERVERS];
    size_t n = 0;
    for (size_t i = 0; i < u->num_servers && n < CONFIG_MAX_SERVERS; i++)
        if (u->servers[i].group == 1)
            refs[n++] = (struct canary_server_ref){.address = u->servers[i].addr.text, .weight = u->servers[i].weight};
    char id[CANARY_RELEASE_MAX];
    canary_release_id(u->canary.release, refs, n, id);
    canary_set_release(c, id);

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
    return rc;
}

/* ===================================================================== */
/* metrics                                                                */
/* ===================================================================== */

static void status_metrics(struct sbuf *out, void *arg)
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
static int load_history(struct status *st, uint64_t now_us)
{
    int64_t wall = wall_us(st, now_us);
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
    reload_view(st, now_us);
    return RP_OK;
}

static int setup_components(struct status *st, const struct config *cfg)
{
    const struct status_conf *sc = st->sc;
    size_t n = sc->num_components ? sc->num_components : (cfg ? cfg->num_upstreams : 0);
    if (n == 0) {
        rp_log_err("status: no components (configure components: or at least one upstream)");
        return RP_ERR;
    }
    st->comps = rp_xcalloc(n, sizeof *st->comps);
    st->ncomps = n;
    for (size_t u = 0; u < CONFIG_MAX_UPSTREAMS; u++)
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
            st->owned_names[i] = rp_xstrdup(cfg->upstreams[i].name ? cfg->upstreams[i].name : "upstream");
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
            for (size_t k = 0; k < cc->num_upstreams && cfg; k++) {
                bool found = false;
                for (size_t u = 0; u < cfg->num_upstreams && u < CONFIG_MAX_UPSTREAMS; u++) {
                    if (cfg->upstreams[u].name && strcmp(cfg->upstreams[u].name, cc->upstreams[k]) == 0) {
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

struct status *status_create(struct ev_loop *loop, const struct status_conf *sc, const struct config *cfg,
                             struct admin *admin)
{
    struct status *st = rp_xcalloc(1, sizeof *st);
    st->loop = loop;
    st->sc = sc;
    st->wall_off_us = rp_wall_ms() * 1000 - (int64_t)rp_now_us();
    for (int d = 0; d < STATUSPAGE_DOC_COUNT; d++)
        sbuf_init(&st->docs[d].body, 32u << 20);
    code_for(sc->page_name ? sc->page_name : "rampart", st->page_id);

    if (setup_components(st, cfg) != RP_OK)
        goto fail;
    st->vcomps = rp_xcalloc(st->ncomps, sizeof *st->vcomps);
    st->rows = rp_xcalloc(st->ncomps * MINUTE_RING, sizeof *st->rows);

    st->store = store_open(sc->db_path ? sc->db_path : "rampart-status.db");
    if (!st->store)
        goto fail;
    uint64_t now_us = loop_now(st);
    int64_t now_ms = now_ms_of(st, now_us);
    for (size_t i = 0; i < st->ncomps; i++) {
        struct comp *c = &st->comps[i];
        if (store_component_ensure(st->store, c->code, c->name, now_ms, &c->cid, &c->created_ms) != RP_OK)
            goto fail;
        c->updated_ms = c->created_ms;
    }
    if (load_history(st, now_us) != RP_OK)
        goto fail;

    if (loop) {
        struct httpd_opts opts = {.max_body = 1024,
                                  .max_connections = 4096,
                                  .idle_timeout_us = 30000000ULL,
                                  .request_timeout_us = 10000000ULL};
        st->httpd =
            httpd_start(loop, (const struct sockaddr *)&sc->listen, sc->listen_len, "status", status_http, st, &opts);
        if (!st->httpd)
            goto fail;
        ev_timer_init(&st->timer, status_timer_cb, st);
        ev_timer_arm(loop, &st->timer, TICK_US);
        metrics_register(status_metrics, st);
        rp_log_info("status: listening on %s (%zu components, history in %s)", sc->listen_text, st->ncomps,
                    sc->db_path ? sc->db_path : "rampart-status.db");
    }
    if (admin) {
        admin_route(admin, "/api/v1/incidents", status_admin, st);
        admin_route(admin, "/api/v1/maintenances", status_admin, st);
    }
    status_tick(st, now_us);
    return st;

fail:
    status_free(st);
    return NULL;
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
        int64_t wall = wall_us(st, loop_now(st));
        flush_minutes(st, wall / (int64_t)MINUTE_US + 1);
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
    if (upstream_idx >= 0 && upstream_idx < CONFIG_MAX_UPSTREAMS)
        return st->upstream_map[upstream_idx];
    return -1;
}

int status_component_status(const struct status *st, int i)
{
    if (!st || i < 0 || (size_t)i >= st->ncomps)
        return -1;
    return st->comps[i].effective;
}

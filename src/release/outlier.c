/*
 * outlier.c — passive outlier ejection (see outlier.h for the rules).
 *
 * Each server keeps a ring of OUTLIER_BUCKETS (total, failed) counters that
 * covers the window, so memory is fixed and a report is O(1).  The window
 * and the consecutive counter are cleared when a server is ejected and when
 * it returns: it is judged on what it does after coming back, not on the
 * failures that got it ejected (which would eject it again at once).
 */
#include "outlier.h"
#include "server.h"
#include "ev.h"
#include "metrics.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void outlier_conf_default(struct outlier_conf *c)
{
    *c = (struct outlier_conf)OUTLIER_CONF_DEFAULT;
}

/* One row per key, in the order the "unknown key" message lists them.
 * Defaults are OUTLIER_CONF_DEFAULT's (test_outlier checks they agree).
 * The duration floors and base <= max are checked below with their own
 * messages. */
const struct conf_field outlier_conf_fields[] = {
    CONF_FIELD_BOOL("enabled", struct outlier_conf, enabled, true),
    CONF_FIELD_UINT("consecutive_failures", struct outlier_conf, consecutive_failures, 0, 1000, 5),
    CONF_FIELD_DURATION_FLOOR("interval", struct outlier_conf, interval_us, 100000u, UINT64_MAX, 10000000u),
    CONF_FIELD_DURATION_FLOOR("window", struct outlier_conf, window_us, 1000000u, UINT64_MAX, 30000000u),
    CONF_FIELD_UINT("min_requests", struct outlier_conf, min_requests, 1, 1000000, 50),
    CONF_FIELD_DOUBLE("stdev_factor", struct outlier_conf, stdev_factor, 0.0, 10.0, 1.9),
    CONF_FIELD_DOUBLE("min_gap", struct outlier_conf, min_gap, 0.0, 1.0, 0.05),
    CONF_FIELD_DURATION_FLOOR("base_ejection", struct outlier_conf, base_ejection_us, 1000000u, UINT64_MAX, 30000000u),
    CONF_FIELD_DURATION_FLOOR("max_ejection", struct outlier_conf, max_ejection_us, 1000000u, UINT64_MAX, 300000000u),
    CONF_FIELD_UINT("max_ejection_percent", struct outlier_conf, max_ejection_percent, 0, 100, 50),
    CONF_FIELD_END,
};

int outlier_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct outlier_conf *out)
{
    if (!node)
        return RP_OK;
    /* A duration below its floor is refused and keeps the previous value
     * (the rows say so), so base <= max below is judged on values that
     * were accepted. */
    int rc = conf_fields_parse(doc, node, outlier_conf_fields, out);
    if (rc != RP_OK && node->kind != CONF_MAP)
        return rc;
    if (out->max_ejection_us < out->base_ejection_us) {
        conf_error(doc, node, "max_ejection must not be shorter than base_ejection");
        rc = RP_ERR;
    }
    return rc;
}

struct outlier *outlier_new(const char *upstream, const struct outlier_conf *conf, const struct server_conf *servers,
                            size_t n, uint64_t now_us)
{
    struct outlier *o = rp_xcalloc(1, sizeof *o);
    rp_snprintf(o->upstream, sizeof o->upstream, "%s", upstream ? upstream : "");
    o->conf = *conf;
    if (o->conf.window_us < OUTLIER_BUCKETS)
        o->conf.window_us = OUTLIER_BUCKETS;
    o->bucket_us = o->conf.window_us / OUTLIER_BUCKETS;
    o->num_servers = RP_MIN(n, (size_t)OUTLIER_MAX_SERVERS);
    for (size_t i = 0; i < o->num_servers; i++) {
        struct outlier_server *s = &o->servers[i];
        rp_snprintf(s->name, sizeof s->name, "%s", servers ? servers[i].addr.text : "?");
        s->group = servers ? servers[i].group : 0;
        s->available = true;
        s->eligible_since_us = now_us;
        s->last_failure_ratio = -1.0;
        s->last_threshold = -1.0;
    }
    o->next_analysis_us = now_us + o->conf.interval_us;
    return o;
}

void outlier_free(struct outlier *o)
{
    if (!o)
        return;
    if (o->set) {
        struct outlier **p = &o->set->head;
        while (*p && *p != o)
            p = &(*p)->next_in_set;
        /* o->set is only ever set by outlier_set_add, which linked o. */
        RP_ASSERT(*p == o);
        if (*p)
            *p = o->next_in_set;
    }
    free(o);
}

void outlier_set_init(struct outlier_set *set, struct ev_loop *loop)
{
    set->head = NULL;
    set->loop = loop;
}

void outlier_set_add(struct outlier_set *set, struct outlier *o)
{
    if (!o)
        return;
    RP_ASSERT(!o->set);
    o->set = set;
    o->next_in_set = set->head;
    set->head = o;
}

static void clear_window(struct outlier_server *s)
{
    memset(s->epoch, 0, sizeof s->epoch);
    memset(s->total, 0, sizeof s->total);
    memset(s->failed, 0, sizeof s->failed);
    s->consecutive = 0;
}

static void window_add(struct outlier *o, struct outlier_server *s, bool failed, uint64_t now_us)
{
    uint64_t e = now_us / o->bucket_us + 1; /* +1: a zeroed slot never matches */
    size_t i = (size_t)(e % OUTLIER_BUCKETS);
    if (s->epoch[i] != e) {
        s->epoch[i] = e;
        s->total[i] = 0;
        s->failed[i] = 0;
    }
    if (s->total[i] < UINT32_MAX) {
        s->total[i]++;
        if (failed)
            s->failed[i]++;
    }
}

static void window_sum(const struct outlier *o, const struct outlier_server *s, uint64_t now_us, uint64_t *total,
                       uint64_t *failed)
{
    uint64_t e = now_us / o->bucket_us + 1, t = 0, f = 0;
    for (size_t i = 0; i < OUTLIER_BUCKETS; i++) {
        if (s->epoch[i] != 0 && s->epoch[i] <= e && e - s->epoch[i] < OUTLIER_BUCKETS) {
            t += s->total[i];
            f += s->failed[i];
        }
    }
    *total = t;
    *failed = f;
}

/* Return expired ejections and decay multipliers of servers that have
 * stayed eligible for as long as their last ejection lasted. */
static void refresh(struct outlier *o, uint64_t now_us)
{
    for (size_t i = 0; i < o->num_servers; i++) {
        struct outlier_server *s = &o->servers[i];
        if (s->ejected && now_us >= s->eject_until_us) {
            s->ejected = false;
            s->eligible_since_us = now_us;
            clear_window(s);
            rp_log_info("outlier: upstream %s server %s returns after %llu s", o->upstream, s->name,
                        (unsigned long long)(s->last_duration_us / 1000000u));
        }
        if (!s->ejected && s->multiplier > 0 && now_us - s->eligible_since_us >= s->last_duration_us) {
            s->multiplier--;
            s->eligible_since_us = now_us;
        }
    }
}

size_t outlier_ejected_count(const struct outlier *o, uint64_t now_us)
{
    size_t n = 0;
    for (size_t i = 0; i < o->num_servers; i++)
        if (o->servers[i].ejected && now_us < o->servers[i].eject_until_us)
            n++;
    return n;
}

bool outlier_eligible(const struct outlier *o, size_t idx, uint64_t now_us)
{
    /* Indexes come from the upstream the detector was built for, and
     * config.c keeps its servers within OUTLIER_MAX_SERVERS. */
    RP_ASSERT(idx < o->num_servers);
    if (idx >= o->num_servers)
        return false;
    const struct outlier_server *s = &o->servers[idx];
    return !s->ejected || now_us >= s->eject_until_us;
}

void outlier_set_available(struct outlier *o, size_t idx, bool available)
{
    RP_ASSERT(idx < o->num_servers);
    if (idx < o->num_servers)
        o->servers[idx].available = available;
}

/* The share cap: floor(n x pct), at least one when n >= 2, at most n - 1. */
static size_t max_ejected(const struct outlier *o)
{
    size_t n = o->num_servers;
    if (n < 2)
        return 0;
    size_t cap = n * o->conf.max_ejection_percent / 100;
    if (cap < 1 && o->conf.max_ejection_percent > 0)
        cap = 1;
    return RP_MIN(cap, n - 1);
}

static bool try_eject(struct outlier *o, size_t idx, enum outlier_reason reason, uint64_t now_us)
{
    struct outlier_server *s = &o->servers[idx];
    if (s->ejected)
        return false;
    size_t ejected = outlier_ejected_count(o, now_us), others_ok = 0;
    for (size_t i = 0; i < o->num_servers; i++)
        if (i != idx && o->servers[i].available && outlier_eligible(o, i, now_us))
            others_ok++;
    if (ejected + 1 > max_ejected(o) || others_ok == 0) {
        o->ejections_refused_total++;
        /* Keep judging it: clear the run so the next refusal needs a new run
         * of failures rather than firing on every report. */
        s->consecutive = 0;
        return false;
    }
    uint64_t base = o->conf.base_ejection_us, max = o->conf.max_ejection_us;
    if (s->multiplier < 1000000u)
        s->multiplier++;
    uint64_t d = base * s->multiplier;
    if (d > max || d / s->multiplier != base)
        d = max;
    s->ejected = true;
    s->reason = reason;
    s->eject_until_us = now_us + d;
    s->last_duration_us = d;
    s->ejections_total++;
    clear_window(s);
    rp_log_info("outlier: upstream %s server %s ejected for %llu s (%s, ejection %u)", o->upstream, s->name,
                (unsigned long long)(d / 1000000u),
                reason == OUTLIER_REASON_CONSECUTIVE ? "consecutive failures" : "failure ratio above peers",
                s->multiplier);
    return true;
}

bool outlier_report(struct outlier *o, size_t idx, enum outlier_outcome outcome, uint64_t now_us)
{
    RP_ASSERT(idx < o->num_servers);
    if (!o->conf.enabled || idx >= o->num_servers)
        return false;
    struct outlier_server *s = &o->servers[idx];
    bool failed = outcome != OUTLIER_SUCCESS;
    s->requests_total++;
    if (failed)
        s->failures_total++;
    /* Outcomes of attempts that started before the ejection say nothing
     * about the server after it returns. */
    if (s->ejected && now_us < s->eject_until_us)
        return false;
    if (s->ejected)
        refresh(o, now_us);
    window_add(o, s, failed, now_us);
    if (!failed) {
        s->consecutive = 0;
        return false;
    }
    s->consecutive++;
    if (o->conf.consecutive_failures > 0 && s->consecutive >= o->conf.consecutive_failures)
        return try_eject(o, idx, OUTLIER_REASON_CONSECUTIVE, now_us);
    return false;
}

struct candidate {
    size_t idx;
    double excess;
};

static int cmp_candidate(const void *a, const void *b)
{
    double x = ((const struct candidate *)a)->excess, y = ((const struct candidate *)b)->excess;
    return x < y ? 1 : x > y ? -1 : 0;
}

size_t outlier_tick(struct outlier *o, uint64_t now_us)
{
    refresh(o, now_us);
    if (!o->conf.enabled || now_us < o->next_analysis_us)
        return 0;
    o->next_analysis_us = now_us + o->conf.interval_us;

    uint64_t tot[OUTLIER_MAX_SERVERS], fail[OUTLIER_MAX_SERVERS];
    bool vol[OUTLIER_MAX_SERVERS];
    for (size_t i = 0; i < o->num_servers; i++) {
        struct outlier_server *s = &o->servers[i];
        window_sum(o, s, now_us, &tot[i], &fail[i]);
        vol[i] = !s->ejected && tot[i] >= o->conf.min_requests;
        s->last_failure_ratio = vol[i] ? (double)fail[i] / (double)tot[i] : -1.0;
        s->last_threshold = -1.0;
    }

    struct candidate cand[OUTLIER_MAX_SERVERS];
    size_t nc = 0;
    for (size_t i = 0; i < o->num_servers; i++) {
        if (!vol[i])
            continue;
        /* Peers: same group, enough volume, not the server itself. */
        double sum = 0.0, sumsq = 0.0;
        uint64_t ptot = 0, pfail = 0;
        size_t np = 0;
        for (size_t j = 0; j < o->num_servers; j++) {
            if (j == i || !vol[j] || o->servers[j].group != o->servers[i].group)
                continue;
            double r = (double)fail[j] / (double)tot[j];
            sum += r;
            sumsq += r * r;
            ptot += tot[j];
            pfail += fail[j];
            np++;
        }
        if (np == 0)
            continue;
        double mean = sum / (double)np;
        double var = sumsq / (double)np - mean * mean;
        double sd = var > 0.0 ? sqrt(var) : 0.0;
        double pbar = (double)(pfail + fail[i]) / (double)(ptot + tot[i]);
        double noise = OUTLIER_NOISE_Z * sqrt(pbar * (1.0 - pbar) * (1.0 / (double)tot[i] + 1.0 / (double)ptot));
        double gap = RP_MAX(RP_MAX(o->conf.stdev_factor * sd, noise), o->conf.min_gap);
        double ri = o->servers[i].last_failure_ratio;
        o->servers[i].last_threshold = mean + gap;
        if (ri > mean + gap)
            cand[nc++] = (struct candidate){.idx = i, .excess = ri - mean - gap};
    }
    /* The worst first, so the share cap keeps the right ones out. */
    qsort(cand, nc, sizeof cand[0], cmp_candidate);
    size_t ejected = 0;
    for (size_t k = 0; k < nc; k++)
        if (try_eject(o, cand[k].idx, OUTLIER_REASON_SUCCESS_RATE, now_us))
            ejected++;
    return ejected;
}

static void labels(struct sbuf *out, const char *name, const struct outlier *o, const struct outlier_server *s)
{
    sbuf_printf(out, "%s{upstream=\"", name);
    metrics_label_escape(out, o->upstream);
    sbuf_adds(out, "\",server=\"");
    metrics_label_escape(out, s->name);
    sbuf_adds(out, "\"} ");
}

void outlier_metrics_render(struct sbuf *out, void *arg)
{
    const struct outlier_set *set = arg;
    const struct outlier *head = set ? set->head : NULL;
    if (!head)
        return;
    /* The loop's time: ejections were timed with it. */
    uint64_t now = set->loop ? ev_now(set->loop) : rp_now_us();
    metrics_family(out, "rampart_outlier_ejected", "gauge", "Whether the server is ejected by outlier detection.");
    for (const struct outlier *o = head; o; o = o->next_in_set)
        for (size_t i = 0; i < o->num_servers; i++) {
            labels(out, "rampart_outlier_ejected", o, &o->servers[i]);
            sbuf_printf(out, "%d\n", outlier_eligible(o, i, now) ? 0 : 1);
        }
    metrics_family(out, "rampart_outlier_ejections_total", "counter", "Ejections of the server.");
    for (const struct outlier *o = head; o; o = o->next_in_set)
        for (size_t i = 0; i < o->num_servers; i++) {
            labels(out, "rampart_outlier_ejections_total", o, &o->servers[i]);
            sbuf_printf(out, "%llu\n", (unsigned long long)o->servers[i].ejections_total);
        }
    metrics_family(out, "rampart_outlier_failure_ratio", "gauge",
                   "Failure ratio in the window at the last analysis (-1: not enough requests).");
    for (const struct outlier *o = head; o; o = o->next_in_set)
        for (size_t i = 0; i < o->num_servers; i++) {
            labels(out, "rampart_outlier_failure_ratio", o, &o->servers[i]);
            sbuf_printf(out, "%.6f\n", o->servers[i].last_failure_ratio);
        }
    metrics_family(out, "rampart_outlier_ejections_refused_total", "counter",
                   "Ejections prevented by the ejected-share cap.");
    for (const struct outlier *o = head; o; o = o->next_in_set) {
        sbuf_adds(out, "rampart_outlier_ejections_refused_total{upstream=\"");
        metrics_label_escape(out, o->upstream);
        sbuf_printf(out, "\"} %llu\n", (unsigned long long)o->ejections_refused_total);
    }
}

/*
 * canary.c — canary traffic split, statistical analysis and the rollout
 * state machine (see canary.h for the decision rule and why).
 *
 * Samples live in a ring of CANARY_BUCKETS time buckets covering the
 * window.  Request and error counts are exact; TTFT and TPOT values are
 * each a uniform reservoir of at most CANARY_BUCKET_SAMPLES per bucket and
 * group, so the memory is fixed whatever the traffic, and both groups are
 * sampled the same way over the same time span (a slow minute affects both
 * sides).  The analysis copies the window's samples of one metric at a
 * time into scratch arrays inside the struct: no allocation on the
 * analysis path either.
 *
 * The state machine is small:
 *
 *   RUNNING --regression (auto_rollback)--> ROLLED_BACK --resume--> RUNNING (step 0)
 *   RUNNING --step passed--> RUNNING (next step) ... --> PROMOTED (100%)
 *   RUNNING <--pause/resume--> PAUSED (analysis and rollback continue)
 *   any --set_weight--> PAUSED (or PROMOTED at 100%)
 */
#include "canary.h"
#include "admin.h"
#include "httpd.h"
#include "metrics.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct canary *registry;

/* ---- configuration ---- */

void canary_conf_default(struct canary_conf *c)
{
    *c = (struct canary_conf)CANARY_CONF_DEFAULT;
}

/* A fraction (0.01) or a percentage ("1%"). */
static int parse_fraction(struct conf_doc *doc, const struct conf_node *n, double max, double *out)
{
    if (!n)
        return RP_OK;
    if (n->kind == CONF_SCALAR && n->value) {
        size_t len = strlen(n->value);
        if (len > 1 && n->value[len - 1] == '%') {
            char *end = NULL;
            double v = strtod(n->value, &end);
            if (end != n->value + len - 1 || !(v >= 0.0 && v <= max * 100.0)) {
                conf_error(doc, n, "expected a percentage between 0%% and %g%%", max * 100.0);
                return RP_ERR;
            }
            *out = v / 100.0;
            return RP_OK;
        }
    }
    return conf_double(doc, n, 0.0, max, out);
}

static int parse_steps(struct conf_doc *doc, const struct conf_node *n, struct canary_conf *out)
{
    if (!n)
        return RP_OK;
    if (conf_expect_seq(doc, n) != RP_OK)
        return RP_ERR;
    unsigned steps[CANARY_MAX_STEPS];
    size_t k = 0;
    int rc = RP_OK;
    for (const struct conf_node *e = n->child; e; e = e->next) {
        if (k == CANARY_MAX_STEPS) {
            conf_error(doc, e, "at most %d steps", CANARY_MAX_STEPS);
            return RP_ERR;
        }
        double pct = 0.0;
        if (parse_fraction(doc, e, 100.0, &pct) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        /* A bare number is a percentage ("5"), "5%" parses as 0.05 above. */
        bool has_pct = e->value && e->value[0] && e->value[strlen(e->value) - 1] == '%';
        double bp = has_pct ? pct * 10000.0 : pct * 100.0;
        if (bp <= 0.0 || bp > 10000.0) {
            conf_error(doc, e, "a step is a weight above 0 and at most 100 (percent)");
            rc = RP_ERR;
            continue;
        }
        unsigned v = (unsigned)(bp + 0.5);
        if (k > 0 && v <= steps[k - 1]) {
            conf_error(doc, e, "steps must increase");
            rc = RP_ERR;
            continue;
        }
        steps[k++] = v;
    }
    if (rc != RP_OK)
        return rc;
    if (k < 2 || steps[k - 1] != CANARY_WEIGHT_MAX) {
        conf_error(doc, n, "steps need at least one weight below 100 and must end at 100 (the promotion)");
        return RP_ERR;
    }
    memcpy(out->steps_bp, steps, k * sizeof steps[0]);
    out->num_steps = k;
    return RP_OK;
}

/* The label is the key under which verdicts are stored and it shows in
 * logs and JSON: printable text only, short. */
static int parse_release(struct conf_doc *doc, const struct conf_node *n, struct canary_conf *out)
{
    const char *v = NULL;
    if (!n)
        return RP_OK;
    if (conf_string(doc, n, &v) != RP_OK)
        return RP_ERR;
    size_t len = strlen(v);
    if (len == 0 || len >= CANARY_RELEASE_MAX || !rp_utf8_valid(v, len, NULL)) {
        conf_error(doc, n, "release must be 1 to %d bytes of UTF-8 text", CANARY_RELEASE_MAX - 1);
        return RP_ERR;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) {
            conf_error(doc, n, "release must not contain control characters");
            return RP_ERR;
        }
    }
    memcpy(out->release, v, len + 1);
    return RP_OK;
}

int canary_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct canary_conf *out)
{
    static const char *const keys[] = {"steps",       "step_duration", "interval",     "window",
                                       "min_samples", "alpha",         "error_margin", "latency_ratio",
                                       "tpot_ratio",  "auto_rollback", "release",      NULL};
    if (!node)
        return RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    int rc = RP_OK;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    if (parse_steps(doc, conf_get(node, "steps"), out) != RP_OK)
        rc = RP_ERR;
    struct {
        const char *key;
        uint64_t *dst;
        uint64_t min;
    } durs[] = {{"step_duration", &out->step_duration_us, 1000000u},
                {"interval", &out->interval_us, 100000u},
                {"window", &out->window_us, 1000000u}};
    for (size_t i = 0; i < RP_ARRAY_LEN(durs); i++) {
        const struct conf_node *n = conf_get(node, durs[i].key);
        uint64_t d = *durs[i].dst;
        if (conf_duration_us(doc, n, &d) != RP_OK) {
            rc = RP_ERR;
        } else if (n && d < durs[i].min) {
            conf_error(doc, n, "%s is too short", durs[i].key);
            rc = RP_ERR;
        } else {
            *durs[i].dst = d;
        }
    }
    uint64_t v = out->min_samples;
    /* Below ~20 the normal approximation of U is poor. */
    if (conf_uint(doc, conf_get(node, "min_samples"), 20, 1000000, &v) != RP_OK)
        rc = RP_ERR;
    out->min_samples = (unsigned)v;
    const struct conf_node *na = conf_get(node, "alpha");
    if (conf_double(doc, na, 1e-9, 0.5, &out->alpha) != RP_OK)
        rc = RP_ERR;
    if (parse_fraction(doc, conf_get(node, "error_margin"), 1.0, &out->error_margin) != RP_OK)
        rc = RP_ERR;
    if (conf_double(doc, conf_get(node, "latency_ratio"), 1.0, 100.0, &out->latency_ratio) != RP_OK)
        rc = RP_ERR;
    /* Without its own key the TPOT margin follows latency_ratio: whoever
     * relaxed or tightened the latency margin meant latency in general. */
    const struct conf_node *nt = conf_get(node, "tpot_ratio");
    if (!nt)
        out->tpot_ratio = out->latency_ratio;
    else if (conf_double(doc, nt, 1.0, 100.0, &out->tpot_ratio) != RP_OK)
        rc = RP_ERR;
    if (conf_bool(doc, conf_get(node, "auto_rollback"), &out->auto_rollback) != RP_OK)
        rc = RP_ERR;
    if (parse_release(doc, conf_get(node, "release"), out) != RP_OK)
        rc = RP_ERR;
    if (rc == RP_OK && out->window_us < out->interval_us) {
        conf_error(doc, node, "window must be at least one interval");
        rc = RP_ERR;
    }
    return rc;
}

const char *canary_state_name(enum canary_state s)
{
    switch (s) {
    case CANARY_RUNNING: return "running";
    case CANARY_PAUSED: return "paused";
    case CANARY_ROLLED_BACK: return "rolled_back";
    case CANARY_PROMOTED: return "promoted";
    }
    return "?";
}

int canary_state_from_name(const char *name, enum canary_state *out)
{
    for (int i = 0; i < CANARY_STATES; i++) {
        if (strcmp(name, canary_state_name((enum canary_state)i)) == 0) {
            *out = (enum canary_state)i;
            return RP_OK;
        }
    }
    return RP_ERR;
}

const char *canary_decision_name(enum canary_decision d)
{
    switch (d) {
    case CANARY_CONTINUE: return "continue";
    case CANARY_PROMOTE: return "promote";
    case CANARY_ROLLBACK: return "rollback";
    }
    return "?";
}

/* ---- statistics ---- */

double canary_norm_sf(double z)
{
    return 0.5 * erfc(z / M_SQRT2);
}

double canary_ztest(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s, double *z)
{
    if (z)
        *z = 0.0;
    if (n_c == 0 || n_s == 0)
        return 1.0;
    double rc = (double)err_c / (double)n_c, rs = (double)err_s / (double)n_s;
    double pbar = (double)(err_c + err_s) / (double)(n_c + n_s);
    double se = sqrt(pbar * (1.0 - pbar) * (1.0 / (double)n_c + 1.0 / (double)n_s));
    if (!(se > 0.0))
        return 1.0;
    double zz = (rc - rs) / se;
    if (z)
        *z = zz;
    return canary_norm_sf(zz);
}

static double log_choose(double n, double k)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
}

double canary_fisher(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s)
{
    if (n_c == 0 || n_s == 0)
        return 1.0;
    double N = (double)(n_c + n_s), K = (double)(err_c + err_s), n = (double)n_c;
    uint64_t kk = err_c + err_s, nn = n_c, good = n_c + n_s - kk;
    uint64_t k_lo = nn > good ? nn - good : 0, k_hi = RP_MIN(kk, nn);
    if (err_c <= k_lo)
        return 1.0;
    double base = log_choose(N, n);
    double mode = floor((n + 1.0) * (K + 1.0) / (N + 2.0));
    double sum = 0.0;
    if ((double)err_c > mode) {
        /* Upper tail: terms fall monotonically past the mode. */
        for (uint64_t k = err_c; k <= k_hi; k++) {
            double t = exp(log_choose(K, (double)k) + log_choose(N - K, n - (double)k) - base);
            sum += t;
            if (t < sum * 1e-17)
                break;
        }
        return RP_MIN(sum, 1.0);
    }
    /* err_c at or below the mode: p is large; 1 minus the lower tail is
     * cheaper and precise enough. */
    for (uint64_t k = err_c; k-- > k_lo;) {
        double t = exp(log_choose(K, (double)k) + log_choose(N - K, n - (double)k) - base);
        sum += t;
        if (t < sum * 1e-17)
            break;
    }
    double p = 1.0 - sum;
    return p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double median_sorted(const uint32_t *v, size_t n)
{
    if (n == 0)
        return 0.0;
    if (n % 2)
        return (double)v[n / 2];
    return ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2.0;
}

int canary_mann_whitney(uint32_t *a, size_t na, uint32_t *b, size_t nb, struct canary_mw *out)
{
    memset(out, 0, sizeof *out);
    out->p = 1.0;
    if (na == 0 || nb == 0)
        return RP_ERR;
    qsort(a, na, sizeof *a, cmp_u32);
    qsort(b, nb, sizeof *b, cmp_u32);
    out->median_c = median_sorted(a, na);
    out->median_s = median_sorted(b, nb);
    /* Merge the sorted samples; a run of equal values shares the average
     * of the ranks it occupies. */
    double ranks_a = 0.0, ties = 0.0, pos = 0.0;
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        uint32_t v = i < na && (j >= nb || a[i] <= b[j]) ? a[i] : b[j];
        size_t ca = 0, cb = 0;
        while (i + ca < na && a[i + ca] == v)
            ca++;
        while (j + cb < nb && b[j + cb] == v)
            cb++;
        double t = (double)(ca + cb);
        ranks_a += (double)ca * (pos + (t + 1.0) / 2.0);
        if (t > 1.0)
            ties += t * t * t - t;
        pos += t;
        i += ca;
        j += cb;
    }
    double n1 = (double)na, n2 = (double)nb, nt = n1 + n2;
    double u = ranks_a - n1 * (n1 + 1.0) / 2.0;
    double mu = n1 * n2 / 2.0;
    double var = n1 * n2 / 12.0 * ((nt + 1.0) - ties / (nt * (nt - 1.0)));
    out->u = u;
    out->auc = u / (n1 * n2);
    if (!(var > 0.0)) {
        out->z = 0.0;
        out->p = 1.0;
        return RP_OK;
    }
    /* Continuity correction toward the null for the one-sided "greater". */
    out->z = (u - mu - 0.5) / sqrt(var);
    out->p = canary_norm_sf(out->z);
    return RP_OK;
}

double canary_look_alpha(double alpha, unsigned planned, unsigned k)
{
    double kk = (double)(planned ? planned : 1), look = (double)(k ? k : 1);
    return alpha * kk / ((kk + look - 1.0) * (kk + look));
}

/* ---- events ---- */

static void iso_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    gmtime_r(&t, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    rp_snprintf(buf, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

static void weight_json(struct sbuf *out, unsigned bp)
{
    sbuf_printf(out, "%g", (double)bp / 100.0);
}

static void event_json(struct sbuf *out, const struct canary_event *ev)
{
    char ts[48];
    iso_time(ev->wall_ms, ts, sizeof ts);
    sbuf_printf(out, "{\"ts\":\"%s\",\"action\":\"%s\",\"source\":\"%s\",\"from_weight\":", ts, ev->action, ev->source);
    weight_json(out, ev->from_bp);
    sbuf_adds(out, ",\"to_weight\":");
    weight_json(out, ev->to_bp);
    sbuf_adds(out, ",\"reason\":\"");
    sbuf_json_str(out, ev->reason, strlen(ev->reason));
    sbuf_adds(out, "\"}");
}

static void emit(struct canary *c, const char *action, const char *source, unsigned from_bp, const char *reason,
                 uint64_t now_us)
{
    struct canary_event *ev = &c->events[c->next_event];
    c->next_event = (c->next_event + 1) % CANARY_EVENTS;
    if (c->num_events < CANARY_EVENTS)
        c->num_events++;
    memset(ev, 0, sizeof *ev);
    ev->wall_ms = rp_wall_ms();
    ev->at_us = now_us;
    rp_snprintf(ev->action, sizeof ev->action, "%s", action);
    rp_snprintf(ev->source, sizeof ev->source, "%s", source);
    ev->from_bp = from_bp;
    ev->to_bp = c->weight_bp;
    /* Truncation of an over-long reason is fine: it is a message.  But
     * not inside a character: the reason is served as JSON. */
    snprintf(ev->reason, sizeof ev->reason, "%s", reason ? reason : "");
    ev->reason[rp_utf8_prefix(ev->reason, sizeof ev->reason)] = '\0';
    bool restore = strcmp(action, "restore") == 0;
    if (!restore) {
        c->state_since_ms = ev->wall_ms;
        c->restored = false;
    }

    /* One JSON line on stderr, like the access log: machine-readable. */
    struct sbuf line;
    sbuf_init(&line, 4096);
    char ts[48];
    iso_time(ev->wall_ms, ts, sizeof ts);
    sbuf_printf(&line, "{\"ts\":\"%s\",\"level\":\"info\",\"event\":\"canary\",\"upstream\":\"", ts);
    sbuf_json_str(&line, c->upstream, strlen(c->upstream));
    sbuf_printf(&line, "\",\"action\":\"%s\",\"source\":\"%s\",\"state\":\"%s\",\"from_weight\":", ev->action,
                ev->source, canary_state_name(c->state));
    weight_json(&line, ev->from_bp);
    sbuf_adds(&line, ",\"to_weight\":");
    weight_json(&line, ev->to_bp);
    sbuf_adds(&line, ",\"reason\":\"");
    sbuf_json_str(&line, ev->reason, strlen(ev->reason));
    sbuf_adds(&line, "\"}\n");
    if (line.data)
        fwrite(line.data, 1, line.len, stderr);
    sbuf_free(&line);
    if (c->cb)
        c->cb(c->cb_arg, c, ev);
    /* The start is no verdict, and a restore is the stored one already. */
    if (c->vcb && !restore && strcmp(action, "start") != 0) {
        struct canary_verdict v;
        memset(&v, 0, sizeof v);
        memcpy(v.release, c->release, sizeof v.release);
        v.state = c->state;
        v.weight_bp = c->weight_bp;
        memcpy(v.source, ev->source, sizeof v.source);
        memcpy(v.reason, ev->reason, sizeof v.reason);
        v.wall_ms = ev->wall_ms;
        c->vcb(c->vcb_arg, c, &v);
    }
}

/* ---- lifecycle ---- */

static unsigned planned_looks(const struct canary_conf *conf)
{
    uint64_t per_step = (conf->step_duration_us + conf->interval_us - 1) / conf->interval_us;
    uint64_t k = per_step * (conf->num_steps > 1 ? conf->num_steps - 1 : 1);
    return (unsigned)RP_MAX(RP_MIN(k, (uint64_t)1000000), (uint64_t)1);
}

/* A new exposure (the weight changed): samples at the old weight are not
 * comparable (see canary.h), so the window and step counters restart. */
static void begin_exposure(struct canary *c, uint64_t now_us)
{
    memset(c->buckets, 0, sizeof c->buckets);
    c->step_started_us = now_us;
    c->step_requests = 0;
    memset(c->step_n, 0, sizeof c->step_n);
    memset(c->step_err, 0, sizeof c->step_err);
    c->tpot_judged_in_step = false;
    c->next_analysis_us = now_us + c->conf.interval_us;
}

/* A new rollout attempt: also forget the looks already spent. */
static void reset_rollout(struct canary *c)
{
    c->looks = 0;
    c->regression_flagged = false;
    memset(&c->last, 0, sizeof c->last);
}

static void enter_step(struct canary *c, size_t step, uint64_t now_us)
{
    c->step = step;
    c->weight_bp = c->conf.steps_bp[step];
    begin_exposure(c, now_us);
    if (c->weight_bp >= CANARY_WEIGHT_MAX)
        c->state = CANARY_PROMOTED;
}

struct canary *canary_new(const char *upstream, const struct canary_conf *conf, uint64_t now_us)
{
    struct canary *c = rp_xcalloc(1, sizeof *c);
    rp_snprintf(c->upstream, sizeof c->upstream, "%s", upstream ? upstream : "");
    c->conf = *conf;
    if (c->conf.num_steps == 0 || c->conf.num_steps > CANARY_MAX_STEPS) {
        struct canary_conf d = CANARY_CONF_DEFAULT;
        memcpy(c->conf.steps_bp, d.steps_bp, sizeof d.steps_bp);
        c->conf.num_steps = d.num_steps;
    }
    if (c->conf.interval_us == 0)
        c->conf.interval_us = 1;
    if (c->conf.window_us < CANARY_BUCKETS)
        c->conf.window_us = CANARY_BUCKETS;
    c->bucket_us = c->conf.window_us / CANARY_BUCKETS;
    /* A conf built in code before tpot_ratio existed has 0 there: follow
     * latency_ratio rather than divide by zero. */
    if (!(c->conf.tpot_ratio >= 1.0))
        c->conf.tpot_ratio = c->conf.latency_ratio >= 1.0 ? c->conf.latency_ratio : 1.0;
    if (!(c->conf.latency_ratio >= 1.0))
        c->conf.latency_ratio = 1.0;
    c->planned_looks = planned_looks(&c->conf);
    /* A fixed seed per upstream keeps runs reproducible; reservoir
     * sampling needs uniformity, not secrecy. */
    c->rng = rp_hash64(c->upstream, strlen(c->upstream)) | 1u;
    /* A label names the release on its own; without one the servers do,
     * which only the owner of the config knows (canary_set_release). */
    if (c->conf.release[0])
        canary_set_release(c, c->conf.release);
    c->state = CANARY_RUNNING;
    enter_step(c, 0, now_us);
    c->next_analysis_us = now_us + c->conf.interval_us;
    c->next_reg = registry;
    registry = c;
    char why[CANARY_REASON_MAX];
    rp_snprintf(why, sizeof why, "rollout of %zu steps, %u planned looks, alpha %g", c->conf.num_steps,
                c->planned_looks, c->conf.alpha);
    emit(c, "start", "auto", 0, why, now_us);
    return c;
}

void canary_free(struct canary *c)
{
    if (!c)
        return;
    for (struct canary **p = &registry; *p; p = &(*p)->next_reg) {
        if (*p == c) {
            *p = c->next_reg;
            break;
        }
    }
    free(c);
}

struct canary *canary_find(const char *upstream, size_t len)
{
    for (struct canary *c = registry; c; c = c->next_reg)
        if (strlen(c->upstream) == len && memcmp(c->upstream, upstream, len) == 0)
            return c;
    return NULL;
}

void canary_set_event_cb(struct canary *c, canary_event_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
}

/* ---- release identity and stored verdicts ---- */

static int cmp_server_ref(const void *a, const void *b)
{
    const struct canary_server_ref *x = a, *y = b;
    int d = strcmp(x->address ? x->address : "", y->address ? y->address : "");
    if (d)
        return d;
    return (x->weight > y->weight) - (x->weight < y->weight);
}

void canary_release_id(const char *label, const struct canary_server_ref *servers, size_t n,
                       char out[CANARY_RELEASE_MAX])
{
    if (label && label[0]) {
        rp_snprintf(out, CANARY_RELEASE_MAX, "%s", label);
        out[rp_utf8_prefix(out, CANARY_RELEASE_MAX)] = '\0';
        return;
    }
    /* Sorted, so that reordering the servers in the file is not a new
     * release; FNV-1a over "address\0weight\n" lines, incrementally. */
    struct canary_server_ref *v = n ? rp_xcalloc(n, sizeof *v) : NULL;
    if (n) {
        memcpy(v, servers, n * sizeof *v);
        qsort(v, n, sizeof *v, cmp_server_ref);
    }
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        char w[16];
        const char *a = v[i].address ? v[i].address : "";
        int wl = rp_snprintf(w, sizeof w, "%u\n", v[i].weight);
        for (size_t k = 0; k <= strlen(a); k++) /* the NUL separates address and weight */
            h = (h ^ (unsigned char)a[k]) * 1099511628211ull;
        for (int k = 0; k < wl; k++)
            h = (h ^ (unsigned char)w[k]) * 1099511628211ull;
    }
    free(v);
    rp_snprintf(out, CANARY_RELEASE_MAX, "servers-%016llx", (unsigned long long)h);
}

void canary_set_release(struct canary *c, const char *release_id)
{
    rp_snprintf(c->release, sizeof c->release, "%s", release_id ? release_id : "");
}

void canary_set_verdict_cb(struct canary *c, canary_verdict_cb cb, void *arg)
{
    c->vcb = cb;
    c->vcb_arg = arg;
}

/* ---- split and samples ---- */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finalizer: FNV's low digits are not uniform enough for a
     * mod-10000 split of similar tenant keys. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

int canary_pick_group(const struct canary *c, uint64_t tenant_hash)
{
    if (!c || c->weight_bp == 0)
        return CANARY_STABLE;
    return mix64(tenant_hash) % CANARY_WEIGHT_MAX < c->weight_bp ? CANARY_CANARY : CANARY_STABLE;
}

static uint64_t next_rand(struct canary *c)
{
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool bucket_live(const struct canary *c, const struct canary_bucket *b, uint64_t now_us)
{
    uint64_t e = now_us / c->bucket_us + 1;
    return b->epoch != 0 && b->epoch <= e && e - b->epoch < CANARY_BUCKETS;
}

/* The bucket for now_us, recycled when it still holds an older epoch. */
static struct canary_bucket *bucket_at(struct canary *c, uint64_t now_us)
{
    uint64_t e = now_us / c->bucket_us + 1;
    struct canary_bucket *b = &c->buckets[e % CANARY_BUCKETS];
    if (b->epoch != e) {
        memset(b, 0, sizeof *b);
        b->epoch = e;
    }
    return b;
}

/* Reservoir sampling (algorithm R): every value offered to the bucket has
 * the same chance to be kept, however many arrive. */
static void reservoir_add(struct canary *c, struct canary_reservoir *r, int g, uint64_t value)
{
    uint32_t v = value > UINT32_MAX ? UINT32_MAX : (uint32_t)value;
    r->seen[g]++;
    if (r->n[g] < CANARY_BUCKET_SAMPLES) {
        r->v[g][r->n[g]++] = v;
    } else {
        uint64_t k = next_rand(c) % r->seen[g];
        if (k < CANARY_BUCKET_SAMPLES)
            r->v[g][k] = v;
    }
}

void canary_record(struct canary *c, int group, bool error, uint64_t ttft_us, uint64_t now_us)
{
    if (!c)
        return;
    int g = group ? 1 : 0;
    struct canary_bucket *b = bucket_at(c, now_us);
    b->requests[g]++;
    c->requests_total[g]++;
    c->step_n[g]++;
    if (g == CANARY_CANARY)
        c->step_requests++;
    if (error) {
        b->errors[g]++;
        c->errors_total[g]++;
        c->step_err[g]++;
        return;
    }
    if (ttft_us == 0)
        return;
    reservoir_add(c, &b->ttft, g, ttft_us);
}

void canary_record_tpot(struct canary *c, int group, uint64_t tpot_us, uint64_t now_us)
{
    if (!c)
        return;
    reservoir_add(c, &bucket_at(c, now_us)->tpot, group ? 1 : 0, tpot_us);
}

/* ---- analysis ---- */

/* Agresti-Caffo confidence bound of (canary - stable) error ratio: add one
 * error and one success to each group, then the Wald interval.  Unlike the
 * plain Wald bound it behaves with zero errors and small counts.  z > 0
 * gives the upper bound, z < 0 the lower. */
static double ac_bound(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s, double z)
{
    double nc = (double)n_c + 2.0, ns = (double)n_s + 2.0;
    double pc = ((double)err_c + 1.0) / nc, ps = ((double)err_s + 1.0) / ns;
    return pc - ps + z * sqrt(pc * (1.0 - pc) / nc + ps * (1.0 - ps) / ns);
}

/* Samples of group g that a bucket contributes to the tests: both groups
 * are thinned to the lower of their two reservoirs' sampling rates, so that
 * each group's samples are spread over time like its traffic. */
static size_t bucket_keep(const struct canary_reservoir *r, int g)
{
    double f[2];
    for (int k = 0; k < 2; k++)
        f[k] = r->seen[k] ? (double)r->n[k] / (double)r->seen[k] : 1.0;
    double fm = RP_MIN(f[0], f[1]);
    size_t keep = r->n[g];
    if (f[g] > fm)
        keep = RP_MIN((size_t)(fm * (double)r->seen[g] + 0.5), (size_t)r->n[g]);
    return keep;
}

enum metric { M_TTFT, M_TPOT };

static const struct canary_reservoir *reservoir_of(const struct canary_bucket *b, enum metric m)
{
    return m == M_TTFT ? &b->ttft : &b->tpot;
}

/* How many samples of metric m the window holds per group after thinning
 * (known before any test runs: the look's alpha depends on it). */
static void window_counts(const struct canary *c, uint64_t now_us, enum metric m, size_t n[2])
{
    n[0] = n[1] = 0;
    for (size_t i = 0; i < CANARY_BUCKETS; i++) {
        const struct canary_bucket *b = &c->buckets[i];
        if (!bucket_live(c, b, now_us))
            continue;
        for (int g = 0; g < 2; g++)
            n[g] += bucket_keep(reservoir_of(b, m), g);
    }
}

/* Copy the window's thinned samples of metric m into c->scratch. */
static void gather(struct canary *c, uint64_t now_us, enum metric m, size_t n[2])
{
    n[0] = n[1] = 0;
    for (size_t i = 0; i < CANARY_BUCKETS; i++) {
        const struct canary_bucket *b = &c->buckets[i];
        if (!bucket_live(c, b, now_us))
            continue;
        const struct canary_reservoir *r = reservoir_of(b, m);
        for (int g = 0; g < 2; g++) {
            size_t stored = r->n[g], keep = bucket_keep(r, g);
            uint32_t *dst = &c->scratch[g][n[g]];
            memcpy(dst, r->v[g], stored * sizeof(uint32_t));
            for (size_t k = 0; k < keep && keep < stored; k++) {
                /* partial Fisher-Yates: a uniform subset of size keep */
                size_t j = k + (size_t)(next_rand(c) % (stored - k));
                uint32_t t = dst[k];
                dst[k] = dst[j];
                dst[j] = t;
            }
            n[g] += keep;
        }
    }
}

/* The verdict on one latency metric; copied into the metric's fields of
 * struct canary_analysis. */
struct latency_verdict {
    bool regressed;
    double median_us[2], ratio, auc, z, p, margin_p, ni_p;
};

/* Mann-Whitney on the samples in c->scratch (n[1] canary, n[0] stable),
 * then the margin both ways (this rescales the canary's scratch). */
static void judge_latency(struct canary *c, const size_t n[2], double margin, double alpha_test,
                          struct latency_verdict *v)
{
    struct canary_mw mw;
    canary_mann_whitney(c->scratch[1], n[1], c->scratch[0], n[0], &mw);
    v->median_us[0] = mw.median_s;
    v->median_us[1] = mw.median_c;
    v->ratio = mw.median_s > 0.0 ? mw.median_c / mw.median_s : 0.0;
    v->auc = mw.auc;
    v->z = mw.z;
    v->p = mw.p;
    /* The margin, both ways: shrink the canary's values by the ratio (a
     * shift of the log latency by log ratio) and ask whether the canary is
     * still slower (rollback) or now faster (promotion). */
    for (size_t i = 0; i < n[1]; i++)
        c->scratch[1][i] = (uint32_t)((double)c->scratch[1][i] / margin);
    struct canary_mw m;
    canary_mann_whitney(c->scratch[1], n[1], c->scratch[0], n[0], &m);
    v->margin_p = m.p;
    canary_mann_whitney(c->scratch[0], n[0], c->scratch[1], n[1], &m);
    v->ni_p = m.p;
    v->regressed = v->p < alpha_test && v->margin_p < CANARY_MARGIN_ALPHA;
}

static void analyze(struct canary *c, uint64_t now_us, struct canary_analysis *a)
{
    memset(a, 0, sizeof *a);
    a->valid = true;
    a->at_us = now_us;
    for (size_t i = 0; i < CANARY_BUCKETS; i++) {
        const struct canary_bucket *b = &c->buckets[i];
        if (!bucket_live(c, b, now_us))
            continue;
        for (int g = 0; g < 2; g++) {
            a->requests[g] += b->requests[g];
            a->errors[g] += b->errors[g];
        }
    }
    window_counts(c, now_us, M_TTFT, a->ttft_n);
    window_counts(c, now_us, M_TPOT, a->tpot_n);
    for (int g = 0; g < 2; g++)
        a->err_ratio[g] = a->requests[g] ? (double)a->errors[g] / (double)a->requests[g] : 0.0;
    a->err_diff = a->err_ratio[1] - a->err_ratio[0];
    unsigned min = c->conf.min_samples;
    a->err_judged = a->requests[0] >= min && a->requests[1] >= min;
    a->ttft_judged = a->ttft_n[0] >= min && a->ttft_n[1] >= min;
    a->tpot_judged = a->tpot_n[0] >= min && a->tpot_n[1] >= min;
    a->err_p = 1.0;
    a->ttft_p = a->tpot_p = 1.0;
    a->ttft_margin_p = a->tpot_margin_p = 1.0;
    a->ttft_ni_p = a->tpot_ni_p = 1.0;
    if (a->err_judged || a->ttft_judged || a->tpot_judged) {
        c->looks++;
        a->look = c->looks;
        a->alpha_test = canary_look_alpha(c->conf.alpha, c->planned_looks, c->looks) / (double)CANARY_TESTS_PER_LOOK;
    }
    if (a->err_judged) {
        double pbar = (double)(a->errors[0] + a->errors[1]) / (double)(a->requests[0] + a->requests[1]);
        double expect = RP_MIN((double)a->requests[0], (double)a->requests[1]) * RP_MIN(pbar, 1.0 - pbar);
        a->err_p = canary_ztest(a->errors[1], a->requests[1], a->errors[0], a->requests[0], &a->err_z);
        if (expect < CANARY_Z_MIN_EXPECTED) {
            a->err_exact = true;
            a->err_p = canary_fisher(a->errors[1], a->requests[1], a->errors[0], a->requests[0]);
        }
        a->err_lower = ac_bound(a->errors[1], a->requests[1], a->errors[0], a->requests[0], -CANARY_MARGIN_Z);
        a->err_regressed = a->err_p < a->alpha_test && a->err_lower >= c->conf.error_margin;
    }
    size_t n[2];
    struct latency_verdict v;
    if (a->ttft_judged) {
        gather(c, now_us, M_TTFT, n);
        judge_latency(c, n, c->conf.latency_ratio, a->alpha_test, &v);
        a->ttft_regressed = v.regressed;
        memcpy(a->ttft_median_us, v.median_us, sizeof v.median_us);
        a->ttft_ratio = v.ratio;
        a->ttft_auc = v.auc;
        a->ttft_z = v.z;
        a->ttft_p = v.p;
        a->ttft_margin_p = v.margin_p;
        a->ttft_ni_p = v.ni_p;
    }
    if (a->tpot_judged) {
        gather(c, now_us, M_TPOT, n);
        judge_latency(c, n, c->conf.tpot_ratio, a->alpha_test, &v);
        a->tpot_regressed = v.regressed;
        memcpy(a->tpot_median_us, v.median_us, sizeof v.median_us);
        a->tpot_ratio = v.ratio;
        a->tpot_auc = v.auc;
        a->tpot_z = v.z;
        a->tpot_p = v.p;
        a->tpot_margin_p = v.margin_p;
        a->tpot_ni_p = v.ni_p;
        c->tpot_judged_in_step = true;
    }
    /* Promotion gate for errors, over the whole step (the window may hold
     * too few canary requests at a low weight): Agresti-Caffo upper bound
     * of the difference, which stays sensible with zero errors. */
    a->err_upper = ac_bound(c->step_err[1], c->step_n[1], c->step_err[0], c->step_n[0], CANARY_MARGIN_Z);
    bool no_ttft = a->ttft_n[0] == 0 && a->ttft_n[1] == 0;
    /* TPOT gates only once it has been judged in this step: streams may be
     * rare or absent (see canary.h). */
    bool tpot_ok = a->tpot_judged ? a->tpot_ni_p < CANARY_MARGIN_ALPHA : !c->tpot_judged_in_step;
    a->within_margins = a->err_judged && a->err_upper < c->conf.error_margin &&
                        (a->ttft_judged ? a->ttft_ni_p < CANARY_MARGIN_ALPHA : no_ttft) && tpot_ok;
}

static void do_rollback(struct canary *c, const char *source, const char *reason, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    c->weight_bp = 0;
    c->state = CANARY_ROLLED_BACK;
    rp_snprintf(c->reason, sizeof c->reason, "%s", reason);
    if (strcmp(source, "auto") == 0)
        c->rollbacks_auto_total++;
    else
        c->rollbacks_admin_total++;
    emit(c, "rollback", source, from, reason, now_us);
}

static void advance(struct canary *c, const char *source, const char *reason, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    if (c->step + 1 >= c->conf.num_steps)
        return;
    enter_step(c, c->step + 1, now_us);
    c->promotions_total++;
    emit(c, "promote", source, from, reason, now_us);
}

static void describe_regression(const struct canary *c, const struct canary_analysis *a, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    if (a->err_regressed) {
        /* A truncated message is still a useful message. */
        rp_snprintf(buf, cap,
                    "error ratio %.2f%% (n=%llu) vs stable %.2f%% (n=%llu): +%.2f pp (95%% bound +%.2f pp >= %.2f "
                    "pp), p=%.2g < %.2g (%s)",
                    a->err_ratio[1] * 100.0, (unsigned long long)a->requests[1], a->err_ratio[0] * 100.0,
                    (unsigned long long)a->requests[0], a->err_diff * 100.0, a->err_lower * 100.0,
                    c->conf.error_margin * 100.0, a->err_p, a->alpha_test, a->err_exact ? "Fisher exact" : "z-test");
        len = strlen(buf);
    }
    if (a->ttft_regressed && len + 3 < cap) {
        rp_snprintf(buf + len, cap - len,
                    "%sTTFT median %.0f ms vs stable %.0f ms (x%.2f), Mann-Whitney p=%.2g < %.2g, slower than x%.2f "
                    "with p=%.2g",
                    len ? "; " : "", a->ttft_median_us[1] / 1000.0, a->ttft_median_us[0] / 1000.0, a->ttft_ratio,
                    a->ttft_p, a->alpha_test, c->conf.latency_ratio, a->ttft_margin_p);
        len = strlen(buf);
    }
    /* Per-token times are a few ms: one decimal more than TTFT. */
    if (a->tpot_regressed && len + 3 < cap)
        rp_snprintf(buf + len, cap - len,
                    "%sTPOT median %.1f ms vs stable %.1f ms (x%.2f), Mann-Whitney p=%.2g < %.2g, slower than x%.2f "
                    "with p=%.2g",
                    len ? "; " : "", a->tpot_median_us[1] / 1000.0, a->tpot_median_us[0] / 1000.0, a->tpot_ratio,
                    a->tpot_p, a->alpha_test, c->conf.tpot_ratio, a->tpot_margin_p);
}

enum canary_decision canary_tick(struct canary *c, uint64_t now_us)
{
    if (!c || (c->state != CANARY_RUNNING && c->state != CANARY_PAUSED))
        return CANARY_CONTINUE;
    if (now_us < c->next_analysis_us)
        return CANARY_CONTINUE;
    c->next_analysis_us = now_us + c->conf.interval_us;
    if (c->weight_bp == 0 || c->weight_bp >= CANARY_WEIGHT_MAX)
        return CANARY_CONTINUE; /* no split to compare */

    struct canary_analysis *a = &c->last;
    analyze(c, now_us, a);
    enum canary_decision d = CANARY_CONTINUE;
    if (a->err_regressed || a->ttft_regressed || a->tpot_regressed) {
        char why[CANARY_REASON_MAX];
        describe_regression(c, a, why, sizeof why);
        rp_snprintf(a->reason, sizeof a->reason, "%s", why);
        if (c->conf.auto_rollback) {
            d = CANARY_ROLLBACK;
            do_rollback(c, "auto", why, now_us);
        } else if (!c->regression_flagged) {
            unsigned from = c->weight_bp;
            c->regression_flagged = true;
            c->state = CANARY_PAUSED;
            rp_snprintf(c->reason, sizeof c->reason, "regression (auto_rollback off): %s", why);
            emit(c, "regression", "auto", from, c->reason, now_us);
        }
    } else {
        uint64_t in_step = now_us - c->step_started_us;
        bool no_ttft = a->ttft_n[0] == 0 && a->ttft_n[1] == 0;
        if (!a->err_judged || !(a->ttft_judged || no_ttft)) {
            rp_snprintf(a->reason, sizeof a->reason,
                        "waiting for samples: requests %llu/%llu, TTFT samples %zu/%zu (need %u per group)",
                        (unsigned long long)a->requests[1], (unsigned long long)a->requests[0], a->ttft_n[1],
                        a->ttft_n[0], c->conf.min_samples);
        } else {
            char tpot[64];
            if (a->tpot_judged)
                rp_snprintf(tpot, sizeof tpot, "TPOT x%.2f (p=%.2g)", a->tpot_ratio, a->tpot_p);
            else
                rp_snprintf(tpot, sizeof tpot, "TPOT not judged (%zu/%zu samples)", a->tpot_n[1], a->tpot_n[0]);
            rp_snprintf(a->reason, sizeof a->reason,
                        "no regression: errors %+.2f pp (p=%.2g, bound %+.2f pp), TTFT x%.2f (p=%.2g), %s; %s",
                        a->err_diff * 100.0, a->err_p, a->err_upper * 100.0, a->ttft_ratio, a->ttft_p, tpot,
                        a->within_margins ? "within margins" : "not yet shown within margins");
        }
        if (c->state == CANARY_RUNNING && a->within_margins && in_step >= c->conf.step_duration_us &&
            c->step_requests >= c->conf.min_samples) {
            char why[CANARY_REASON_MAX];
            rp_snprintf(why, sizeof why, "step %zu (%g%%) passed: %llu s, %llu canary requests, %s", c->step + 1,
                        (double)c->weight_bp / 100.0, (unsigned long long)(in_step / 1000000u),
                        (unsigned long long)c->step_requests, a->reason);
            d = CANARY_PROMOTE;
            advance(c, "auto", why, now_us);
        }
    }
    a->decision = d;
    c->decisions_total[d]++;
    return d;
}

/* ---- manual control ---- */

int canary_pause(struct canary *c, uint64_t now_us)
{
    if (c->state == CANARY_PAUSED)
        return RP_OK;
    if (c->state != CANARY_RUNNING) {
        c->last_error = "the rollout is not running";
        return RP_ERR;
    }
    c->state = CANARY_PAUSED;
    rp_snprintf(c->reason, sizeof c->reason, "paused by admin");
    emit(c, "pause", "admin", c->weight_bp, c->reason, now_us);
    return RP_OK;
}

int canary_resume(struct canary *c, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    switch (c->state) {
    case CANARY_RUNNING: return RP_OK;
    case CANARY_PROMOTED: c->last_error = "the canary is already promoted"; return RP_ERR;
    case CANARY_ROLLED_BACK:
        /* A new attempt (e.g. after a fixed release was deployed): judge
         * it on its own samples, from the first step. */
        reset_rollout(c);
        c->state = CANARY_RUNNING;
        enter_step(c, 0, now_us);
        break;
    case CANARY_PAUSED: {
        c->state = CANARY_RUNNING;
        c->regression_flagged = false;
        size_t s = 0;
        for (size_t i = 0; i < c->conf.num_steps; i++)
            if (c->conf.steps_bp[i] <= c->weight_bp)
                s = i;
        if (c->weight_bp < c->conf.steps_bp[0]) {
            enter_step(c, 0, now_us);
        } else {
            /* Keep the weight the admin chose (the samples are already at
             * that weight); the next promotion goes to the step above. */
            c->step = s;
            c->step_started_us = now_us;
        }
        break;
    }
    }
    c->reason[0] = '\0';
    c->next_analysis_us = now_us + c->conf.interval_us;
    emit(c, "resume", "admin", from, "resumed by admin", now_us);
    return RP_OK;
}

int canary_rollback(struct canary *c, const char *reason, uint64_t now_us)
{
    if (c->state == CANARY_ROLLED_BACK)
        return RP_OK;
    char why[CANARY_REASON_MAX];
    snprintf(why, sizeof why, "rolled back by admin%s%s", reason && reason[0] ? ": " : "", reason ? reason : "");
    why[rp_utf8_prefix(why, sizeof why)] = '\0'; /* an operator's text may be cut inside a character */
    do_rollback(c, "admin", why, now_us);
    return RP_OK;
}

int canary_promote(struct canary *c, uint64_t now_us)
{
    if (c->state == CANARY_PROMOTED) {
        c->last_error = "the canary is already promoted";
        return RP_ERR;
    }
    if (c->state == CANARY_ROLLED_BACK) {
        c->last_error = "the canary was rolled back: resume to start the rollout again";
        return RP_ERR;
    }
    /* The first step above the current weight (after set_weight the
     * weight may sit between steps). */
    size_t next = c->conf.num_steps - 1;
    for (size_t i = 0; i < c->conf.num_steps; i++) {
        if (c->conf.steps_bp[i] > c->weight_bp) {
            next = i;
            break;
        }
    }
    unsigned from = c->weight_bp;
    enter_step(c, next, now_us);
    c->promotions_total++;
    emit(c, "promote", "admin", from, "promoted by admin", now_us);
    return RP_OK;
}

int canary_set_weight(struct canary *c, unsigned weight_bp, uint64_t now_us)
{
    if (weight_bp > CANARY_WEIGHT_MAX) {
        c->last_error = "weight must be between 0 and 100";
        return RP_ERR;
    }
    unsigned from = c->weight_bp;
    if (c->state == CANARY_ROLLED_BACK && weight_bp > 0)
        reset_rollout(c); /* a new attempt */
    size_t s = 0;
    for (size_t i = 0; i < c->conf.num_steps; i++)
        if (c->conf.steps_bp[i] <= weight_bp)
            s = i;
    c->step = s;
    if (weight_bp != c->weight_bp)
        begin_exposure(c, now_us);
    c->weight_bp = weight_bp;
    c->state = weight_bp >= CANARY_WEIGHT_MAX ? CANARY_PROMOTED : CANARY_PAUSED;
    rp_snprintf(c->reason, sizeof c->reason, "weight set by admin");
    char why[64];
    rp_snprintf(why, sizeof why, "weight set to %g%% by admin", (double)weight_bp / 100.0);
    emit(c, "set_weight", "admin", from, why, now_us);
    return RP_OK;
}

bool canary_restore(struct canary *c, const struct canary_verdict *v, uint64_t now_us)
{
    if (!c || !v || !c->release[0] || strcmp(v->release, c->release) != 0)
        return false;
    unsigned from = c->weight_bp;
    switch (v->state) {
    case CANARY_RUNNING: return false;
    case CANARY_ROLLED_BACK:
        reset_rollout(c);
        c->state = CANARY_ROLLED_BACK;
        c->step = 0;
        c->weight_bp = 0;
        begin_exposure(c, now_us);
        break;
    case CANARY_PROMOTED:
        reset_rollout(c);
        enter_step(c, c->conf.num_steps - 1, now_us);
        break;
    case CANARY_PAUSED: {
        /* Held by an operator (or by a regression with auto_rollback off):
         * the hold survives; fresh samples at that weight. */
        unsigned w = RP_MIN(v->weight_bp, CANARY_WEIGHT_MAX);
        reset_rollout(c);
        if (w >= CANARY_WEIGHT_MAX) {
            enter_step(c, c->conf.num_steps - 1, now_us);
            break;
        }
        size_t st = 0;
        for (size_t i = 0; i < c->conf.num_steps; i++)
            if (c->conf.steps_bp[i] <= w)
                st = i;
        c->step = st;
        c->weight_bp = w;
        c->state = CANARY_PAUSED;
        c->regression_flagged = true; /* a regression pause is logged once, also across restarts */
        begin_exposure(c, now_us);
        break;
    }
    default: return false;
    }
    rp_snprintf(c->reason, sizeof c->reason, "%s", v->reason);
    c->restored = true;
    char ts[48], why[CANARY_REASON_MAX];
    iso_time(v->wall_ms, ts, sizeof ts);
    rp_snprintf(why, sizeof why, "%s since %s (%s), kept across a restart", canary_state_name(c->state), ts,
                v->source[0] ? v->source : "auto");
    emit(c, "restore", "auto", from, why, now_us);
    c->state_since_ms = v->wall_ms;
    return true;
}

/* ---- state document ---- */

/* JSON has no NaN/Inf. */
static void num(struct sbuf *out, double v)
{
    if (!isfinite(v))
        v = 0.0;
    sbuf_printf(out, "%.6g", v);
}

/* One latency metric of the analysis (TTFT, TPOT): same shape for both. */
static void latency_json(struct sbuf *out, bool judged, bool regressed, const size_t n[2], const double median_us[2],
                         double ratio, double auc, double z, double p, double margin_p)
{
    sbuf_printf(out, "{\"judged\":%s,\"regression\":%s", judged ? "true" : "false", regressed ? "true" : "false");
    for (int g = 0; g < 2; g++) {
        sbuf_printf(out, ",\"%s\":{\"samples\":%zu,\"median_ms\":", g ? "canary" : "stable", n[g]);
        num(out, median_us[g] / 1000.0);
        sbuf_adds(out, "}");
    }
    sbuf_adds(out, ",\"median_ratio\":");
    num(out, ratio);
    sbuf_adds(out, ",\"prob_canary_slower\":");
    num(out, auc);
    sbuf_adds(out, ",\"z\":");
    num(out, z);
    sbuf_adds(out, ",\"p_value\":");
    num(out, p);
    sbuf_adds(out, ",\"beyond_margin_p_value\":");
    num(out, margin_p);
    sbuf_adds(out, "}");
}

void canary_render_json(const struct canary *c, struct sbuf *out, uint64_t now_us)
{
    sbuf_adds(out, "{\"upstream\":\"");
    sbuf_json_str(out, c->upstream, strlen(c->upstream));
    sbuf_printf(out, "\",\"state\":\"%s\",\"weight\":", canary_state_name(c->state));
    weight_json(out, c->weight_bp);
    sbuf_printf(out, ",\"step\":%zu,\"steps\":[", c->step + 1);
    for (size_t i = 0; i < c->conf.num_steps; i++) {
        if (i)
            sbuf_adds(out, ",");
        weight_json(out, c->conf.steps_bp[i]);
    }
    sbuf_printf(out, "],\"step_elapsed_s\":%llu,\"step_duration_s\":%llu,\"step_requests\":%llu",
                (unsigned long long)((now_us - RP_MIN(now_us, c->step_started_us)) / 1000000u),
                (unsigned long long)(c->conf.step_duration_us / 1000000u), (unsigned long long)c->step_requests);
    sbuf_printf(out, ",\"auto_rollback\":%s,\"looks\":%u,\"planned_looks\":%u,\"reason\":\"",
                c->conf.auto_rollback ? "true" : "false", c->looks, c->planned_looks);
    sbuf_json_str(out, c->reason, strlen(c->reason));
    sbuf_adds(out, "\",\"release\":");
    if (c->release[0]) {
        sbuf_adds(out, "\"");
        sbuf_json_str(out, c->release, strlen(c->release));
        sbuf_adds(out, "\"");
    } else {
        sbuf_adds(out, "null");
    }
    sbuf_adds(out, ",\"state_since\":");
    if (c->state_since_ms > 0) {
        char ts[48];
        iso_time(c->state_since_ms, ts, sizeof ts);
        sbuf_printf(out, "\"%s\"", ts);
    } else {
        sbuf_adds(out, "null");
    }
    sbuf_printf(out, ",\"restored\":%s", c->restored ? "true" : "false");
    sbuf_adds(out, ",\"parameters\":{\"interval_s\":");
    num(out, (double)c->conf.interval_us / 1e6);
    sbuf_adds(out, ",\"window_s\":");
    num(out, (double)c->conf.window_us / 1e6);
    sbuf_printf(out, ",\"min_samples\":%u,\"alpha\":", c->conf.min_samples);
    num(out, c->conf.alpha);
    sbuf_adds(out, ",\"error_margin\":");
    num(out, c->conf.error_margin);
    sbuf_adds(out, ",\"latency_ratio\":");
    num(out, c->conf.latency_ratio);
    sbuf_adds(out, ",\"tpot_ratio\":");
    num(out, c->conf.tpot_ratio);
    sbuf_adds(out, "},\"analysis\":");
    const struct canary_analysis *a = &c->last;
    if (!a->valid) {
        sbuf_adds(out, "null");
    } else {
        sbuf_printf(out, "{\"age_s\":%llu,\"look\":%u,\"alpha_per_test\":",
                    (unsigned long long)((now_us - RP_MIN(now_us, a->at_us)) / 1000000u), a->look);
        num(out, a->alpha_test);
        sbuf_printf(out, ",\"decision\":\"%s\",\"reason\":\"", canary_decision_name(a->decision));
        sbuf_json_str(out, a->reason, strlen(a->reason));
        sbuf_printf(out, "\",\"errors\":{\"judged\":%s,\"regression\":%s,\"test\":\"%s\"",
                    a->err_judged ? "true" : "false", a->err_regressed ? "true" : "false",
                    a->err_exact ? "fisher" : "z");
        for (int g = 0; g < 2; g++) {
            sbuf_printf(out, ",\"%s\":{\"requests\":%llu,\"errors\":%llu,\"ratio\":", g ? "canary" : "stable",
                        (unsigned long long)a->requests[g], (unsigned long long)a->errors[g]);
            num(out, a->err_ratio[g]);
            sbuf_adds(out, "}");
        }
        sbuf_adds(out, ",\"difference\":");
        num(out, a->err_diff);
        sbuf_adds(out, ",\"difference_lower_bound\":");
        num(out, a->err_lower);
        sbuf_adds(out, ",\"z\":");
        num(out, a->err_z);
        sbuf_adds(out, ",\"p_value\":");
        num(out, a->err_p);
        sbuf_adds(out, "},\"ttft\":");
        latency_json(out, a->ttft_judged, a->ttft_regressed, a->ttft_n, a->ttft_median_us, a->ttft_ratio, a->ttft_auc,
                     a->ttft_z, a->ttft_p, a->ttft_margin_p);
        sbuf_adds(out, ",\"tpot\":");
        latency_json(out, a->tpot_judged, a->tpot_regressed, a->tpot_n, a->tpot_median_us, a->tpot_ratio, a->tpot_auc,
                     a->tpot_z, a->tpot_p, a->tpot_margin_p);
        sbuf_printf(out, ",\"promotion_gate\":{\"within_margins\":%s,\"error_difference_upper_bound\":",
                    a->within_margins ? "true" : "false");
        num(out, a->err_upper);
        sbuf_adds(out, ",\"ttft_within_ratio_p_value\":");
        num(out, a->ttft_ni_p);
        sbuf_adds(out, ",\"tpot_within_ratio_p_value\":");
        num(out, a->tpot_ni_p);
        sbuf_printf(out, ",\"tpot_required\":%s}}", c->tpot_judged_in_step ? "true" : "false");
    }
    sbuf_adds(out, ",\"events\":[");
    /* Oldest first. */
    for (size_t i = 0; i < c->num_events; i++) {
        size_t idx = (c->next_event + CANARY_EVENTS - c->num_events + i) % CANARY_EVENTS;
        if (i)
            sbuf_adds(out, ",");
        event_json(out, &c->events[idx]);
    }
    sbuf_adds(out, "]}");
}

/* ---- metrics ---- */

static void series(struct sbuf *out, const char *name, const struct canary *c, const char *extra)
{
    sbuf_printf(out, "%s{upstream=\"", name);
    metrics_label_escape(out, c->upstream);
    sbuf_printf(out, "\"%s%s} ", extra ? "," : "", extra ? extra : "");
}

void canary_metrics_render(struct sbuf *out, void *arg)
{
    RP_UNUSED(arg);
    if (!registry)
        return;
    static const char *const groups[2] = {"group=\"stable\"", "group=\"canary\""};
    metrics_family(out, "rampart_canary_weight_ratio", "gauge", "Share of tenants sent to the canary group (0..1).");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_weight_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", (double)c->weight_bp / 10000.0);
    }
    metrics_family(out, "rampart_canary_state", "gauge", "Rollout state (1 for the current state).");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int s = 0; s < CANARY_STATES; s++) {
            char lab[48];
            rp_snprintf(lab, sizeof lab, "state=\"%s\"", canary_state_name((enum canary_state)s));
            series(out, "rampart_canary_state", c, lab);
            sbuf_printf(out, "%d\n", (int)c->state == s);
        }
    metrics_family(out, "rampart_canary_step", "gauge", "Current rollout step (1-based).");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_step", c, NULL);
        sbuf_printf(out, "%zu\n", c->step + 1);
    }
    metrics_family(out, "rampart_canary_requests_total", "counter", "Attempts recorded per release group.");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_requests_total", c, groups[g]);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->requests_total[g]);
        }
    metrics_family(out, "rampart_canary_errors_total", "counter",
                   "Failed attempts (5xx, connect, timeout) per release group.");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_errors_total", c, groups[g]);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->errors_total[g]);
        }
    metrics_family(out, "rampart_canary_error_ratio", "gauge", "Error ratio in the window at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_error_ratio", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.err_ratio[g]);
        }
    metrics_family(out, "rampart_canary_error_difference", "gauge",
                   "Canary minus stable error ratio at the latest analysis (effect size).");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_error_difference", c, NULL);
        sbuf_printf(out, "%.6f\n", c->last.err_diff);
    }
    metrics_family(out, "rampart_canary_error_p_value", "gauge",
                   "p-value of 'canary errors more' at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_error_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.err_p : 1.0);
    }
    metrics_family(out, "rampart_canary_ttft_median_seconds", "gauge", "Median time to first token in the window.");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_ttft_median_seconds", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.ttft_median_us[g] / 1e6);
        }
    metrics_family(out, "rampart_canary_ttft_ratio", "gauge", "Canary / stable TTFT median at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_ttft_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", isfinite(c->last.ttft_ratio) ? c->last.ttft_ratio : 0.0);
    }
    metrics_family(out, "rampart_canary_ttft_p_value", "gauge",
                   "Mann-Whitney p-value of 'canary slower' at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_ttft_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.ttft_p : 1.0);
    }
    metrics_family(out, "rampart_canary_tpot_median_seconds", "gauge",
                   "Median time per output token of streams in the window (0: not judged).");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_tpot_median_seconds", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.tpot_median_us[g] / 1e6);
        }
    metrics_family(out, "rampart_canary_tpot_ratio", "gauge", "Canary / stable TPOT median at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_tpot_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", isfinite(c->last.tpot_ratio) ? c->last.tpot_ratio : 0.0);
    }
    metrics_family(out, "rampart_canary_tpot_p_value", "gauge",
                   "Mann-Whitney p-value of 'canary TPOT slower' at the latest analysis.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_tpot_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.tpot_p : 1.0);
    }
    metrics_family(out, "rampart_canary_alpha_per_test", "gauge",
                   "Significance level of each test at the latest look.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_alpha_per_test", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.alpha_test);
    }
    metrics_family(out, "rampart_canary_decisions_total", "counter", "Analysis decisions.");
    for (const struct canary *c = registry; c; c = c->next_reg)
        for (int d = 0; d < CANARY_DECISIONS; d++) {
            char lab[48];
            rp_snprintf(lab, sizeof lab, "decision=\"%s\"", canary_decision_name((enum canary_decision)d));
            series(out, "rampart_canary_decisions_total", c, lab);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->decisions_total[d]);
        }
    metrics_family(out, "rampart_canary_rollbacks_total", "counter", "Rollbacks by source.");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_rollbacks_total", c, "source=\"auto\"");
        sbuf_printf(out, "%llu\n", (unsigned long long)c->rollbacks_auto_total);
        series(out, "rampart_canary_rollbacks_total", c, "source=\"admin\"");
        sbuf_printf(out, "%llu\n", (unsigned long long)c->rollbacks_admin_total);
    }
    metrics_family(out, "rampart_canary_promotions_total", "counter", "Step promotions (automatic and manual).");
    for (const struct canary *c = registry; c; c = c->next_reg) {
        series(out, "rampart_canary_promotions_total", c, NULL);
        sbuf_printf(out, "%llu\n", (unsigned long long)c->promotions_total);
    }
}

/* ---- admin API ---- */

#define CANARY_API_PREFIX "/api/v1/canary"

static bool method_is(const struct httpd_request *req, const char *m)
{
    return req->msg && req->msg->method.len == strlen(m) && memcmp(req->msg->method.p, m, req->msg->method.len) == 0;
}

static void bad_request(struct httpd_response *resp, const char *msg)
{
    httpd_json_error(resp, 400, "invalid_request_error", msg);
}

static int apply_action(struct canary *c, json_t *body, struct httpd_response *resp, uint64_t now_us)
{
    json_t *jact = json_object_get(body, "action");
    if (!json_is_string(jact)) {
        bad_request(resp, "\"action\" is required: pause, resume, rollback, promote or set_weight");
        return RP_ERR;
    }
    const char *act = json_string_value(jact);
    json_t *jreason = json_object_get(body, "reason");
    const char *reason = NULL;
    if (jreason) {
        if (!json_is_string(jreason) || json_string_length(jreason) > 200) {
            bad_request(resp, "\"reason\" must be a string of at most 200 bytes");
            return RP_ERR;
        }
        reason = json_string_value(jreason);
    }
    int rc;
    if (strcmp(act, "pause") == 0) {
        rc = canary_pause(c, now_us);
    } else if (strcmp(act, "resume") == 0) {
        rc = canary_resume(c, now_us);
    } else if (strcmp(act, "rollback") == 0) {
        rc = canary_rollback(c, reason, now_us);
    } else if (strcmp(act, "promote") == 0) {
        rc = canary_promote(c, now_us);
    } else if (strcmp(act, "set_weight") == 0) {
        json_t *jw = json_object_get(body, "weight");
        double w = json_is_number(jw) ? json_number_value(jw) : -1.0;
        if (!(w >= 0.0 && w <= 100.0)) {
            bad_request(resp, "set_weight needs \"weight\": a number of percent between 0 and 100");
            return RP_ERR;
        }
        rc = canary_set_weight(c, (unsigned)(w * 100.0 + 0.5), now_us);
    } else {
        bad_request(resp, "unknown action: expected pause, resume, rollback, promote or set_weight");
        return RP_ERR;
    }
    if (rc != RP_OK) {
        httpd_json_error_code(resp, 409, "invalid_request_error", "invalid_state",
                              c->last_error ? c->last_error : "not possible in the current state");
        return RP_ERR;
    }
    return RP_OK;
}

void canary_admin_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    RP_UNUSED(arg);
    uint64_t now = rp_now_us();
    size_t plen = strlen(CANARY_API_PREFIX);
    if (req->path.len < plen || memcmp(req->path.p, CANARY_API_PREFIX, plen) != 0) {
        httpd_json_error(resp, 404, "not_found_error", "no such endpoint");
        return;
    }
    const char *rest = req->path.p + plen;
    size_t rlen = req->path.len - plen;
    if (rlen > 0 && rest[0] != '/') {
        httpd_json_error(resp, 404, "not_found_error", "no such endpoint");
        return;
    }
    if (rlen > 0) {
        rest++;
        rlen--;
    }
    while (rlen > 0 && rest[rlen - 1] == '/')
        rlen--;
    struct canary *c = NULL;
    if (rlen > 0) {
        c = canary_find(rest, rlen);
        if (!c) {
            httpd_json_error(resp, 404, "not_found_error", "no canary for that upstream");
            return;
        }
    }
    resp->status = 200;
    resp->content_type = "application/json";
    if (method_is(req, "GET") || method_is(req, "HEAD")) {
        sbuf_reset(&resp->body);
        if (c) {
            canary_render_json(c, &resp->body, now);
        } else {
            sbuf_adds(&resp->body, "{\"canaries\":[");
            for (const struct canary *k = registry; k; k = k->next_reg) {
                if (k != registry)
                    sbuf_adds(&resp->body, ",");
                canary_render_json(k, &resp->body, now);
            }
            sbuf_adds(&resp->body, "]}");
        }
        sbuf_adds(&resp->body, "\n");
        return;
    }
    if (!method_is(req, "POST")) {
        httpd_add_header(resp, "Allow", "GET, HEAD, POST");
        httpd_json_error(resp, 405, "invalid_request_error", "use GET to read or POST an action");
        return;
    }
    if (!c) {
        if (registry && !registry->next_reg) {
            c = registry;
        } else {
            httpd_json_error(resp, 404, "not_found_error",
                             registry ? "name the upstream: POST /api/v1/canary/<upstream>" : "no canary configured");
            return;
        }
    }
    json_error_t jerr;
    size_t bad = 0;
    /* The parser's message quotes the bytes near the error: never echo
     * bytes that are not UTF-8, and never cut a character in two. */
    if (req->body && !rp_utf8_valid(req->body, req->body_len, &bad)) {
        char msg[128];
        rp_snprintf(msg, sizeof msg, "the body is not valid UTF-8: byte 0x%02X at offset %zu",
                    (unsigned)(unsigned char)req->body[bad], bad);
        bad_request(resp, msg);
        return;
    }
    json_t *body = req->body && req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
    if (!body || !json_is_object(body)) {
        char msg[256];
        const char *why = body ? "" : (req->body_len ? jerr.text : "empty body");
        rp_snprintf(msg, sizeof msg, "the body must be a JSON object%s%.*s", body ? "" : ": ",
                    (int)rp_utf8_prefix(why, 180), why);
        bad_request(resp, msg);
        json_decref(body);
        return;
    }
    if (apply_action(c, body, resp, now) == RP_OK) {
        sbuf_reset(&resp->body);
        canary_render_json(c, &resp->body, now);
        sbuf_adds(&resp->body, "\n");
    }
    json_decref(body);
}

void canary_admin_register(struct admin *a)
{
    admin_route(a, CANARY_API_PREFIX, canary_admin_handler, NULL);
}

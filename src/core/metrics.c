/*
 * metrics.c — latency histograms and Prometheus text rendering.
 *
 * Histograms store per-bucket (non-cumulative) counts so an observation is
 * one comparison walk and two adds on the hot path; the cumulative form
 * Prometheus wants is computed at render time, which happens once per
 * scrape.  Bounds are integers in microseconds internally so bucket choice
 * never depends on floating-point rounding, and the "le" labels are fixed
 * strings so the rendered text is byte-for-byte stable.
 *
 * Rendering is a list of per-subsystem callbacks (metrics.h explains why
 * there is no per-metric registry).  metrics_family() is the only writer of
 * "# HELP" and "# TYPE" lines.  During one metrics_render() pass a small set
 * of family-name hashes remembers which families were opened, so a render
 * function that loops over label sets cannot emit a duplicate TYPE line
 * (which Prometheus rejects), and a family opened a second time after
 * another one (two renderers using one name) is caught and logged rather
 * than written twice.
 */
#include "metrics.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

const double metrics_hist_bounds_s[METRICS_HIST_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60,
};

static const uint64_t bounds_us[METRICS_HIST_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 60000000,
};

static const char *const bounds_text[METRICS_HIST_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "60",
};

void metrics_hist_observe(struct metrics_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < METRICS_HIST_BUCKETS && us > bounds_us[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_us += us;
}

uint64_t metrics_hist_quantile(const struct metrics_hist *h, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= METRICS_HIST_BUCKETS; i++)
        total += h->counts[i];
    if (total == 0)
        return 0;
    if (!(q > 0))
        q = 0; /* also catches NaN */
    if (q > 1)
        q = 1;

    /* Rank of the wanted observation, then linear interpolation inside the
     * bucket that holds it (observations assumed spread evenly across the
     * bucket, as Prometheus' histogram_quantile does). */
    double rank = q * (double)total;
    uint64_t cum = 0;
    for (size_t i = 0; i <= METRICS_HIST_BUCKETS; i++) {
        uint64_t c = h->counts[i];
        if (c == 0)
            continue;
        if ((double)(cum + c) >= rank) {
            if (i == METRICS_HIST_BUCKETS)
                return bounds_us[METRICS_HIST_BUCKETS - 1]; /* +Inf: best known bound */
            uint64_t lo = i ? bounds_us[i - 1] : 0, hi = bounds_us[i];
            double frac = (rank - (double)cum) / (double)c;
            if (frac < 0)
                frac = 0;
            if (frac > 1)
                frac = 1;
            return lo + (uint64_t)llround((double)(hi - lo) * frac);
        }
        cum += c;
    }
    return bounds_us[METRICS_HIST_BUCKETS - 1];
}

/* ---- family-name dedup during a render pass ---- */

#define SEEN_SLOTS 1024 /* power of two; far above the families we render */

static bool rendering;
static uint64_t seen[SEEN_SLOTS];
static size_t seen_count;
static uint64_t open_family; /* hash of the family written last; 0: none */
static size_t split_families;

enum family_state { FAMILY_NEW, FAMILY_OPEN, FAMILY_SPLIT };

static enum family_state family_lookup(const char *name)
{
    if (!rendering)
        return FAMILY_NEW;
    uint64_t hv = rp_hash64(name, strlen(name));
    if (hv == 0)
        hv = 1; /* 0 marks an empty slot */
    if (hv == open_family)
        return FAMILY_OPEN;
    if (seen_count >= SEEN_SLOTS * 3 / 4)
        return FAMILY_NEW; /* table full: prefer a duplicate line over a lost one */
    size_t i = (size_t)hv & (SEEN_SLOTS - 1);
    while (seen[i] != 0) {
        if (seen[i] == hv)
            return FAMILY_SPLIT;
        i = (i + 1) & (SEEN_SLOTS - 1);
    }
    seen[i] = hv;
    seen_count++;
    open_family = hv;
    return FAMILY_NEW;
}

/* HELP text escapes only backslash and newline (a double quote is literal
 * there, unlike in a label value). */
static void help_escape(struct sbuf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sbuf_add(out, "\\\\", 2);
        else if (*s == '\n')
            sbuf_add(out, "\\n", 2);
        else
            sbuf_add(out, s, 1);
    }
}

void metrics_family(struct sbuf *out, const char *name, const char *type, const char *help)
{
    enum family_state st = family_lookup(name);
    if (st == FAMILY_OPEN)
        return;
    if (st == FAMILY_SPLIT) {
        /* Writing the lines again would make the page unparseable; the
         * samples that follow still land on the page, and the count makes
         * the mistake visible to the caller and to tests. */
        split_families++;
        rp_log_err("metrics: family %s is rendered in two places", name);
        return;
    }
    if (help) {
        sbuf_printf(out, "# HELP %s ", name);
        help_escape(out, help);
        sbuf_add(out, "\n", 1);
    }
    sbuf_printf(out, "# TYPE %s %s\n", name, type);
}

void metrics_label(struct sbuf *lb, const char *key, const char *value)
{
    if (lb->len > 0)
        sbuf_add(lb, ",", 1);
    sbuf_adds(lb, key);
    sbuf_add(lb, "=\"", 2);
    metrics_label_escape(lb, value);
    sbuf_add(lb, "\"", 1);
}

/* "name_suffix{labels[,extra]}" or "name_suffix" when both are empty. */
static void series(struct sbuf *out, const char *name, const char *suffix, const char *labels, const char *extra)
{
    bool has_labels = labels && labels[0];
    bool has_extra = extra && extra[0];
    sbuf_adds(out, name);
    sbuf_adds(out, suffix);
    if (!has_labels && !has_extra)
        return;
    sbuf_add(out, "{", 1);
    if (has_labels)
        sbuf_adds(out, labels);
    if (has_labels && has_extra)
        sbuf_add(out, ",", 1);
    if (has_extra)
        sbuf_adds(out, extra);
    sbuf_add(out, "}", 1);
}

void metrics_hist_render(struct sbuf *out, const char *name, const char *labels, const struct metrics_hist *h)
{
    char le[32];
    uint64_t cum = 0;

    for (size_t i = 0; i < METRICS_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        rp_snprintf(le, sizeof le, "le=\"%s\"", bounds_text[i]);
        series(out, name, "_bucket", labels, le);
        sbuf_printf(out, " %" PRIu64 "\n", cum);
    }
    cum += h->counts[METRICS_HIST_BUCKETS];
    series(out, name, "_bucket", labels, "le=\"+Inf\"");
    sbuf_printf(out, " %" PRIu64 "\n", cum);
    /* Seconds with exact microsecond digits: integer arithmetic, no
     * rounding surprises in the text. */
    series(out, name, "_sum", labels, NULL);
    sbuf_printf(out, " %" PRIu64 ".%06" PRIu64 "\n", h->sum_us / 1000000u, h->sum_us % 1000000u);
    series(out, name, "_count", labels, NULL);
    sbuf_printf(out, " %" PRIu64 "\n", h->count);
}

void metrics_sample_u64(struct sbuf *out, const char *name, const char *labels, uint64_t v)
{
    series(out, name, "", labels, NULL);
    sbuf_printf(out, " %" PRIu64 "\n", v);
}

void metrics_sample_i64(struct sbuf *out, const char *name, const char *labels, int64_t v)
{
    series(out, name, "", labels, NULL);
    sbuf_printf(out, " %" PRId64 "\n", v);
}

void metrics_sample_f64(struct sbuf *out, const char *name, const char *labels, double v)
{
    series(out, name, "", labels, NULL);
    /* The exposition format spells the special values its own way. */
    if (isnan(v))
        sbuf_adds(out, " NaN\n");
    else if (isinf(v))
        sbuf_adds(out, v > 0 ? " +Inf\n" : " -Inf\n");
    else
        sbuf_printf(out, " %.15g\n", v);
}

void metrics_label_escape(struct sbuf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': sbuf_add(out, "\\\\", 2); break;
        case '"': sbuf_add(out, "\\\"", 2); break;
        case '\n': sbuf_add(out, "\\n", 2); break;
        default: sbuf_add(out, s, 1);
        }
    }
}

/* ---- registry ---- */

#define METRICS_MAX_RENDERERS 64

static struct {
    metrics_render_fn fn;
    void *arg;
} renderers[METRICS_MAX_RENDERERS];
static size_t num_renderers;

void metrics_register(metrics_render_fn fn, void *arg)
{
    if (num_renderers == METRICS_MAX_RENDERERS) {
        /* A startup-time programming error, not a runtime condition. */
        rp_log_err("metrics: more than %d render functions registered; ignoring one", METRICS_MAX_RENDERERS);
        return;
    }
    renderers[num_renderers].fn = fn;
    renderers[num_renderers].arg = arg;
    num_renderers++;
}

size_t metrics_render(struct sbuf *out)
{
    memset(seen, 0, sizeof seen);
    seen_count = 0;
    open_family = 0;
    split_families = 0;
    rendering = true;
    for (size_t i = 0; i < num_renderers; i++) {
        renderers[i].fn(out, renderers[i].arg);
        /* A family never continues into the next renderer's output. */
        open_family = 0;
    }
    rendering = false;
    return split_families;
}

void metrics_clear(void)
{
    num_renderers = 0;
}

/*
 * metrics.h — counters and latency histograms, rendered in the Prometheus
 * text format by the admin listener.
 *
 * There is no registry of individual metrics: each subsystem owns its
 * counters as plain struct fields (incremented on the hot path for the cost
 * of an add) and registers one render function that prints them.  That keeps
 * label sets bounded by construction (they come from config, not traffic).
 */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include <stdint.h>

#include "buf.h"

/* Bucket upper bounds in seconds, shared by every latency histogram:
 * 1ms .. 60s, roughly x2.5 per step. */
#define METRICS_HIST_BUCKETS 14
extern const double metrics_hist_bounds_s[METRICS_HIST_BUCKETS];

struct metrics_hist {
    uint64_t counts[METRICS_HIST_BUCKETS + 1]; /* last is +Inf */
    uint64_t count;
    uint64_t sum_us;
};

void metrics_hist_observe(struct metrics_hist *h, uint64_t us);
/* Estimate of quantile q (0..1) in microseconds (linear within a bucket). */
uint64_t metrics_hist_quantile(const struct metrics_hist *h, double q);
/* Render "name_bucket{labels,le=..}", _sum (seconds), _count.  labels is
 * the inside of {} without braces, or "" for none. */
void metrics_hist_render(struct sbuf *out, const char *name, const char *labels, const struct metrics_hist *h);

typedef void (*metrics_render_fn)(struct sbuf *out, void *arg);
/* Register a render function (at startup; up to 64). */
void metrics_register(metrics_render_fn fn, void *arg);
/* Render every registered subsystem. */
void metrics_render(struct sbuf *out);

/* ---- helpers for render functions ----
 *
 * A metric family's samples must be rendered together, under one "# TYPE"
 * line.  metrics_family() and metrics_hist_render() write that line the
 * first time a family name appears during a metrics_render() pass and skip
 * it afterwards, so a render function may loop over label sets calling
 * them freely.  (Outside a metrics_render() pass the line is always
 * written.) */

/* "# HELP name help" (when help is not NULL) and "# TYPE name type", where
 * type is "counter", "gauge", "histogram" or "untyped". */
void metrics_family(struct sbuf *out, const char *name, const char *type, const char *help);
/* One sample line "name{labels} value"; labels as for metrics_hist_render. */
void metrics_sample_u64(struct sbuf *out, const char *name, const char *labels, uint64_t v);
void metrics_sample_i64(struct sbuf *out, const char *name, const char *labels, int64_t v);
void metrics_sample_f64(struct sbuf *out, const char *name, const char *labels, double v);
/* Append s escaped as a label value (backslash, double quote, newline),
 * without the surrounding quotes. */
void metrics_label_escape(struct sbuf *out, const char *s);
/* Forget every registered render function (tests, shutdown). */
void metrics_clear(void);

#endif

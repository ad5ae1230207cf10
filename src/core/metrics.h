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
/* Render the samples "name_bucket{labels,le=..}", _sum (seconds), _count.
 * labels is the inside of {} without braces, or "" for none.  It writes no
 * "# TYPE" line: call metrics_family(out, name, "histogram", help) once
 * before the histograms of one family. */
void metrics_hist_render(struct sbuf *out, const char *name, const char *labels, const struct metrics_hist *h);

typedef void (*metrics_render_fn)(struct sbuf *out, void *arg);
/* Register a render function (at startup; up to 64). */
void metrics_register(metrics_render_fn fn, void *arg);
/* Render every registered subsystem.  Returns the number of families that
 * were opened again after another family had started (samples of one name
 * split across the page, which the exposition format forbids even where a
 * lenient parser such as promtool's merges them): 0 on a correct page.
 * Each one is also logged. */
size_t metrics_render(struct sbuf *out);

/* ---- helpers for render functions ----
 *
 * The rules of the text format that a page must keep: one metric name is
 * one family, owned by one render function; its "# HELP" and "# TYPE" lines
 * come once, before its samples, and every sample of the family follows
 * them without another family in between; label values are escaped.
 *
 * Every family starts with metrics_family(), the only writer of HELP and
 * TYPE lines, so a family cannot go without its help text.  Within one
 * metrics_render() pass, calling it again for the family that is still
 * open writes nothing (a render function may call it inside a loop);
 * calling it for a family that was closed by another one is a programming
 * error: nothing is written, metrics_render() counts and logs it.  (Outside
 * a metrics_render() pass the lines are always written.) */

/* "# HELP name help" and "# TYPE name type", where type is "counter",
 * "gauge" or "histogram".  help is one sentence (backslashes and newlines
 * are escaped).  Every family of the real page has one: NULL omits the HELP
 * line, which promtool's lint rejects, so it is for throwaway test
 * families only. */
void metrics_family(struct sbuf *out, const char *name, const char *type, const char *help);
/* Append the label key="value" to lb (the inside of {} being built), after
 * a comma when lb is not empty; value is escaped with
 * metrics_label_escape().  Every label whose value is not a literal of the
 * render function goes through here. */
void metrics_label(struct sbuf *lb, const char *key, const char *value);
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

/*
 * tool_stats.h — latency distributions for the tools' reports.
 *
 * Nearest-rank percentiles over the exact samples: a load test keeps every
 * sample (one per request), so there is no reason to approximate with
 * histogram buckets, and nearest rank returns a value that was actually
 * observed (p99 of 100 samples is the 99th smallest, not an interpolation).
 */
#ifndef TOOL_STATS_H
#define TOOL_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Summary of a set of microsecond samples, in milliseconds. */
struct tool_dist {
    double p50, p90, p99, mean, max;
    size_t n;
};

/* Sort v[0..n) in place and summarise it; all zero when n is 0. */
struct tool_dist tool_dist_of(int64_t *v, size_t n);

/* The nearest-rank q-quantile (0 < q <= 1) of sorted v[0..n), n > 0. */
int64_t tool_rank(const int64_t *v, size_t n, double q);

#endif

/*
 * tool_stats.c — nearest-rank latency distributions (see tool_stats.h).
 */
#include "tool_stats.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t tool_rank(const int64_t *v, size_t n, double q)
{
    RP_ASSERT(n > 0);
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

struct tool_dist tool_dist_of(int64_t *v, size_t n)
{
    struct tool_dist d = {0};
    d.n = n;
    if (n == 0)
        return d;
    qsort(v, n, sizeof *v, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    d.p50 = (double)tool_rank(v, n, 0.50) / 1000.0;
    d.p90 = (double)tool_rank(v, n, 0.90) / 1000.0;
    d.p99 = (double)tool_rank(v, n, 0.99) / 1000.0;
    d.mean = sum / (double)n / 1000.0;
    d.max = (double)v[n - 1] / 1000.0;
    return d;
}

/*
 * canary_stats.c — the statistics of the canary analysis: the tests
 * (normal tail, pooled z, Fisher exact, Mann-Whitney U, Agresti-Caffo
 * bounds, the alpha-spending schedule), the sample window they read, and
 * one look at that window (canary_analyze).  canary.c decides what a look
 * means for the rollout; canary.h explains the decision rule.
 *
 * Samples live in a ring of CANARY_BUCKETS time buckets covering the
 * window.  Request and error counts are exact; TTFT and TPOT values are
 * each a uniform reservoir of at most CANARY_BUCKET_SAMPLES per bucket and
 * group, so the memory is fixed whatever the traffic, and both groups are
 * sampled the same way over the same time span (a slow minute affects both
 * sides).  The analysis copies the window's samples of one metric at a
 * time into scratch arrays inside the struct: no allocation on the
 * analysis path either.
 */
#include "canary_int.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- sample window ---- */

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
    /* A server's group is 0 or 1 by config (enum canary_group). */
    RP_ASSERT(group == CANARY_STABLE || group == CANARY_CANARY);
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
    RP_ASSERT(group == CANARY_STABLE || group == CANARY_CANARY);
    reservoir_add(c, &bucket_at(c, now_us)->tpot, group ? 1 : 0, tpot_us);
}

/* ---- analysis ---- */

/* Agresti-Caffo confidence bound of (canary - stable) error ratio: add one
 * error and one success to each group, then the Wald interval.  Unlike the
 * plain Wald bound it behaves with zero errors and small counts.  z > 0
 * gives the upper bound, z < 0 the lower. */
double canary_ac_bound(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s, double z)
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

void canary_analyze(struct canary *c, uint64_t now_us, struct canary_analysis *a)
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
        a->err_lower = canary_ac_bound(a->errors[1], a->requests[1], a->errors[0], a->requests[0], -CANARY_MARGIN_Z);
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
    a->err_upper = canary_ac_bound(c->step_err[1], c->step_n[1], c->step_err[0], c->step_n[0], CANARY_MARGIN_Z);
    bool no_ttft = a->ttft_n[0] == 0 && a->ttft_n[1] == 0;
    /* TPOT gates only once it has been judged in this step: streams may be
     * rare or absent (see canary.h). */
    bool tpot_ok = a->tpot_judged ? a->tpot_ni_p < CANARY_MARGIN_ALPHA : !c->tpot_judged_in_step;
    a->within_margins = a->err_judged && a->err_upper < c->conf.error_margin &&
                        (a->ttft_judged ? a->ttft_ni_p < CANARY_MARGIN_ALPHA : no_ttft) && tpot_ok;
}

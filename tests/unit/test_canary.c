/*
 * test_canary.c — canary analysis.
 *
 *  - statistics against reference values: the normal tail, the pooled
 *    two-proportion z-test, Fisher's exact test (the "lady tasting tea"
 *    table, 17/70, and exact rational sums), Mann-Whitney U with and
 *    without ties (U counted pair by pair), the alpha-spending schedule;
 *  - stickiness of the tenant split;
 *  - a seeded simulation of a rollout with realistic noise (per-tenant
 *    latency, a daily-like load wave, error bursts that hit both groups):
 *    a bad canary (5% errors vs 0.5%, 2x slower TTFT, or on streams 2x
 *    slower tokens with the same TTFT) is rolled back, a healthy canary
 *    under the same noise is promoted with no false rollback over 200
 *    seeds, with and without streams (TPOT samples);
 *  - the TPOT promotion gate: too few TPOT samples do not block a step,
 *    but once TPOT was judged in a step it must be shown within its
 *    margin;
 *  - manual control, events, the admin API, metrics and the config section.
 *
 * Reference values were computed independently (exact integer
 * combinatorics for Fisher, pairwise counting for U, erfc for the normal
 * tail).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin_canary.h"
#include "canary.h"
#include "httpd.h"
#include "util.h"

#define SEC 1000000ull
#define MS 1000ull

static void assert_close(double got, double want, double rel)
{
    double tol = fabs(want) * rel + 1e-300;
    if (fabs(got - want) > tol) {
        print_error("got %.12g, want %.12g (rel %g)\n", got, want, rel);
        fail();
    }
}

/* ---- statistics ---- */

static void test_normal_tail(void **state)
{
    (void)state;
    assert_close(canary_norm_sf(1.96), 0.024997895148220435, 1e-12);
    assert_close(canary_norm_sf(0.0), 0.5, 1e-15);
    assert_close(canary_norm_sf(3.0), 0.0013498980316300957, 1e-12);
    assert_close(canary_norm_sf(-1.0), 0.8413447460685429, 1e-12);
    assert_true(canary_norm_sf(40.0) >= 0.0);
}

static void test_ztest(void **state)
{
    (void)state;
    double z;
    assert_close(canary_ztest(30, 1000, 100, 10000, &z), 1.2020874619048605e-08, 1e-9);
    assert_close(z, 5.580073122264577, 1e-12);
    assert_close(canary_ztest(5, 200, 20, 3800, &z), 0.00027818206040723236, 1e-9);
    assert_close(z, 3.4520405433035863, 1e-12);
    assert_close(canary_ztest(10, 1000, 10, 1000, &z), 0.5, 1e-12);
    assert_close(z, 0.0, 1e-12);
    /* Undefined cases are "no evidence". */
    assert_close(canary_ztest(0, 100, 0, 100, &z), 1.0, 0);
    assert_close(canary_ztest(100, 100, 50, 50, &z), 1.0, 0);
    assert_close(canary_ztest(0, 0, 1, 10, &z), 1.0, 0);
}

static void test_fisher(void **state)
{
    (void)state;
    /* Fisher's tea-tasting table [[3,1],[1,3]]: 17/70. */
    assert_close(canary_fisher(3, 4, 1, 4), 17.0 / 70.0, 1e-10);
    assert_close(canary_fisher(5, 200, 2, 3800), 5.757383919268846e-06, 1e-8);
    assert_close(canary_fisher(10, 200, 19, 3800), 6.797476049880292e-07, 1e-8);
    assert_close(canary_fisher(12, 1000, 40, 19000), 7.37774349205256e-06, 1e-8);
    /* Below the mode: computed as 1 - lower tail. */
    assert_close(canary_fisher(1, 200, 19, 3800), 0.6424121661629038, 1e-9);
    assert_close(canary_fisher(0, 100, 0, 100), 1.0, 0);
    /* The exact test is far more cautious than z for rare events. */
    double z;
    assert_true(canary_fisher(3, 200, 10, 3800) > 10.0 * canary_ztest(3, 200, 10, 3800, &z));
}

static void test_mann_whitney(void **state)
{
    (void)state;
    struct canary_mw mw;
    uint32_t a1[] = {19, 22, 16, 29, 24}, b1[] = {20, 11, 17, 12};
    assert_int_equal(canary_mann_whitney(a1, 5, b1, 4, &mw), RP_OK);
    assert_close(mw.u, 17.0, 0);
    assert_close(mw.z, 1.5921683328090657, 1e-12);
    assert_close(mw.p, 0.05567344326657024, 1e-10);
    assert_close(mw.auc, 17.0 / 20.0, 1e-12);
    assert_close(mw.median_c, 22.0, 0);
    assert_close(mw.median_s, 14.5, 0);

    /* Ties across and within groups (tie-corrected variance). */
    uint32_t a2[] = {12, 5, 7, 7, 9, 12, 12, 15, 20, 21}, b2[] = {8, 3, 5, 7, 8, 9, 10, 12, 13};
    assert_int_equal(canary_mann_whitney(a2, 10, b2, 9, &mw), RP_OK);
    assert_close(mw.u, 61.5, 0);
    assert_close(mw.z, 1.316245503764353, 1e-12);
    assert_close(mw.p, 0.09404582768122716, 1e-10);

    /* All equal: no evidence. */
    uint32_t a3[] = {5, 5, 5}, b3[] = {5, 5};
    canary_mann_whitney(a3, 3, b3, 2, &mw);
    assert_close(mw.p, 1.0, 0);
    assert_int_equal(canary_mann_whitney(a3, 0, b3, 2, &mw), RP_ERR);
}

static void test_look_alpha(void **state)
{
    (void)state;
    assert_close(canary_look_alpha(0.01, 30, 1), 0.0003225806451612903, 1e-12);
    assert_close(canary_look_alpha(0.01, 30, 30), 8.47457627118644e-05, 1e-12);
    assert_close(canary_look_alpha(0.01, 30, 60), 3.745318352059925e-05, 1e-12);
    /* Half of alpha over the planned looks, the whole of it in the limit. */
    double sum = 0.0;
    for (unsigned k = 1; k <= 30; k++)
        sum += canary_look_alpha(0.01, 30, k);
    assert_close(sum, 0.005, 1e-10);
    for (unsigned k = 31; k <= 1000000; k++)
        sum += canary_look_alpha(0.01, 30, k);
    assert_true(sum < 0.01 && sum > 0.0099);
}

/* ---- stickiness ---- */

static uint64_t tenant_hash(unsigned id)
{
    char key[32];
    int n = rp_snprintf(key, sizeof key, "tenant-%u", id);
    return rp_hash64(key, (size_t)n);
}

static void test_sticky(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    struct canary *c = canary_new("sticky", &conf, 0);
    int before[10000];
    size_t in = 0;
    for (unsigned i = 0; i < 10000; i++) {
        before[i] = canary_pick_group(c, tenant_hash(i));
        assert_int_equal(canary_pick_group(c, tenant_hash(i)), before[i]); /* same answer every time */
        in += (size_t)before[i];
    }
    /* 5% of 10000 tenants, within 4 standard deviations (~22). */
    assert_true(in > 500 - 88 && in < 500 + 88);
    /* Raising the weight only moves tenants to the canary. */
    canary_set_weight(c, 2500, 0);
    size_t in25 = 0;
    for (unsigned i = 0; i < 10000; i++) {
        int g = canary_pick_group(c, tenant_hash(i));
        if (before[i])
            assert_int_equal(g, CANARY_CANARY);
        in25 += (size_t)g;
    }
    assert_true(in25 > 2500 - 180 && in25 < 2500 + 180);
    canary_set_weight(c, 0, 0);
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(canary_pick_group(c, tenant_hash(i)), CANARY_STABLE);
    assert_int_equal(canary_pick_group(NULL, 1), CANARY_STABLE);
    canary_free(c);
}

/* ---- simulation ---- */

static uint64_t srng;
static uint64_t sim_rand64(void)
{
    /* splitmix64: independent of the module's own PRNG */
    uint64_t z = (srng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double sim_rand01(void)
{
    return (double)(sim_rand64() >> 11) * (1.0 / 9007199254740992.0);
}
static double sim_normal(void)
{
    double u1 = sim_rand01(), u2 = sim_rand01();
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#define SIM_TENANTS 2000

struct sim_params {
    double err_stable, err_canary; /* base error ratios */
    double ttft_canary_factor;     /* canary TTFT multiplier */
    double stream_share;           /* successful requests that are streams (TPOT samples) */
    double tpot_canary_factor;     /* canary TPOT multiplier (0 = 1) */
    unsigned rps;
    uint64_t max_us;
};

struct sim_result {
    enum canary_state state;
    uint64_t end_us;        /* rollback or promotion time since start */
    uint64_t canary_errors; /* canary errors users saw before rollback */
    uint64_t requests;
    uint64_t promotions;
    unsigned tpot_looks; /* analyses that judged TPOT */
    char reason[CANARY_REASON_MAX];
};

static double tenant_factor[SIM_TENANTS];
static uint64_t tenant_hashes[SIM_TENANTS];

static void sim_run(uint64_t seed, const struct sim_params *p, const struct canary_conf *conf, struct sim_result *r)
{
    srng = seed * 0x2545F4914F6CDD1Dull + 1;
    for (unsigned i = 0; i < SIM_TENANTS; i++) {
        tenant_hashes[i] = tenant_hash(i + (unsigned)seed * SIM_TENANTS);
        tenant_factor[i] = exp(0.2 * sim_normal()); /* some tenants send longer prompts */
    }
    uint64_t t0 = 1000 * SEC, t = t0;
    struct canary *c = canary_new("sim", conf, t0);
    memset(r, 0, sizeof *r);
    uint64_t step = SEC / p->rps, next_tick = t0 + SEC;
    while (t - t0 < p->max_us && (c->state == CANARY_RUNNING || c->state == CANARY_PAUSED)) {
        double secs = (double)(t - t0) / 1e6;
        /* Shared noise: a load wave, and a 20 s error burst every 7 min
         * that hits both groups alike (an upstream dependency hiccup). */
        double load = 1.0 + 0.3 * sin(2.0 * M_PI * secs / 240.0);
        bool burst = fmod(secs, 420.0) < 20.0;
        unsigned ten = (unsigned)(sim_rand64() % SIM_TENANTS);
        int g = canary_pick_group(c, tenant_hashes[ten]);
        double perr = (g ? p->err_canary : p->err_stable) + (burst ? 0.03 : 0.0);
        bool err = sim_rand01() < perr;
        uint64_t ttft = 0;
        if (!err) {
            double ms = 400.0 * load * tenant_factor[ten] * exp(0.5 * sim_normal());
            if (g)
                ms *= p->ttft_canary_factor;
            ttft = (uint64_t)(ms * 1000.0) + 1;
        }
        canary_record(c, g, err, ttft, t);
        /* Streams only when asked for: the other scenarios keep their
         * random sequence. */
        if (!err && p->stream_share > 0.0 && sim_rand01() < p->stream_share) {
            /* Decode slows with load (bigger batches) and with longer
             * contexts; now and then a long prefill joins the batch and
             * stalls a stream of either group. */
            double ms = 30.0 * load * sqrt(tenant_factor[ten]) * exp(0.25 * sim_normal());
            if (sim_rand01() < 0.03)
                ms *= 2.5;
            if (g && p->tpot_canary_factor > 0.0)
                ms *= p->tpot_canary_factor;
            canary_record_tpot(c, g, (uint64_t)(ms * 1000.0), t);
        }
        r->requests++;
        if (g && err && p->err_canary > p->err_stable)
            r->canary_errors++;
        t += step;
        while (next_tick <= t) {
            canary_tick(c, next_tick);
            if (c->last.valid && c->last.at_us == next_tick && c->last.tpot_judged)
                r->tpot_looks++;
            next_tick += SEC;
        }
    }
    r->state = c->state;
    r->end_us = t - t0;
    r->promotions = c->promotions_total;
    rp_snprintf(r->reason, sizeof r->reason, "%s", c->reason);
    canary_free(c);
}

/* Canary events go to stderr; keep the simulation's hundreds quiet. */
static int quiet_begin(void)
{
    fflush(stderr);
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    close(devnull);
    return saved;
}
static void quiet_end(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

#ifndef SEEDS
#define SEEDS 200
#endif

/* A healthy canary over SEEDS seeds: every run promoted, none rolled back.
 * Returns the number of analyses that judged TPOT over all runs. */
static uint64_t run_healthy(const char *what, const struct sim_params *p)
{
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    size_t promoted = 0, rolled = 0;
    uint64_t sum = 0, max = 0, tpot_looks = 0;
    int q = quiet_begin();
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct sim_result r;
        sim_run(seed, p, &conf, &r);
        tpot_looks += r.tpot_looks;
        if (r.state == CANARY_PROMOTED) {
            promoted++;
            sum += r.end_us;
            max = RP_MAX(max, r.end_us);
        }
        if (r.state == CANARY_ROLLED_BACK) {
            rolled++;
            quiet_end(q);
            print_message("false rollback, seed %llu: %s\n", (unsigned long long)seed, r.reason);
            q = quiet_begin();
        }
    }
    quiet_end(q);
    printf("%s, %d seeds: %zu promoted, %zu rolled back; time to 100%%: mean %.0f s, max %.0f s; "
           "%.1f looks per run judged TPOT\n",
           what, SEEDS, promoted, rolled, promoted ? (double)sum / (double)promoted / 1e6 : 0.0, (double)max / 1e6,
           (double)tpot_looks / SEEDS);
    assert_int_equal(rolled, 0);
    assert_int_equal(promoted, SEEDS);
    return tpot_looks;
}

/* No streams, hence no TPOT samples: TPOT is never judged and does not
 * hold the rollout back. */
static void test_sim_healthy_promoted(void **state)
{
    (void)state;
    struct sim_params p = {
        .err_stable = 0.005, .err_canary = 0.005, .ttft_canary_factor = 1.0, .rps = 20, .max_us = 7200 * SEC};
    assert_int_equal(run_healthy("healthy canary (0.5% errors, same TTFT, no streams)", &p), 0);
}

/* Half the answers are streams with noisy per-token times (load, context
 * length, stalls): three tests per look, still no false rollback, and TPOT
 * is actually judged on the way. */
static void test_sim_healthy_streaming_promoted(void **state)
{
    (void)state;
    struct sim_params p = {.err_stable = 0.005,
                           .err_canary = 0.005,
                           .ttft_canary_factor = 1.0,
                           .stream_share = 0.5,
                           .tpot_canary_factor = 1.0,
                           .rps = 20,
                           .max_us = 7200 * SEC};
    assert_true(run_healthy("healthy canary, 50% streams (same TPOT)", &p) > 0);
}

/* Every seed rolled back, the reason naming `word`; at most
 * max_promoted_first of them promoted once before (0: all caught at the
 * first step). */
static void run_bad(const char *what, const char *word, size_t max_promoted_first, const struct sim_params *p)
{
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    size_t rolled = 0, promoted_first = 0;
    uint64_t sum = 0, max = 0, errs = 0, reqs = 0;
    int q = quiet_begin();
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct sim_result r;
        sim_run(seed, p, &conf, &r);
        if (r.state == CANARY_ROLLED_BACK) {
            if (!strstr(r.reason, word)) {
                quiet_end(q);
                print_message("seed %llu rolled back for another reason: %s\n", (unsigned long long)seed, r.reason);
                fail();
            }
            rolled++;
            sum += r.end_us;
            max = RP_MAX(max, r.end_us);
            errs += r.canary_errors;
            reqs += r.requests;
        }
        promoted_first += r.promotions > 0;
    }
    quiet_end(q);
    printf("%s, %d seeds: %zu rolled back; time to rollback: mean %.0f s, max %.0f s; "
           "excess canary errors before rollback: %.1f per run (%.3f%% of all requests)\n",
           what, SEEDS, rolled, rolled ? (double)sum / (double)rolled / 1e6 : 0.0, (double)max / 1e6,
           rolled ? (double)errs / (double)rolled : 0.0, reqs ? 100.0 * (double)errs / (double)reqs : 0.0);
    assert_int_equal(rolled, SEEDS);
    /* Caught during the first step (5%), not promoted to expose more
     * users first. */
    assert_true(promoted_first <= max_promoted_first);
}

static void test_sim_bad_errors_rolled_back(void **state)
{
    (void)state;
    struct sim_params p = {
        .err_stable = 0.005, .err_canary = 0.05, .ttft_canary_factor = 1.0, .rps = 20, .max_us = 7200 * SEC};
    run_bad("bad canary (5% vs 0.5% errors)", "error ratio", 0, &p);
}

static void test_sim_bad_latency_rolled_back(void **state)
{
    (void)state;
    struct sim_params p = {
        .err_stable = 0.005, .err_canary = 0.005, .ttft_canary_factor = 2.0, .rps = 20, .max_us = 7200 * SEC};
    run_bad("slow canary (2x TTFT)", "TTFT", 0, &p);
}

/* Streams that decode 2x slower with the same TTFT: only TPOT sees it.
 * Half the answers are streams, so at the 5% step the canary gathers TPOT
 * samples at half its request rate; a seed whose tenants put few of them
 * on the canary can end the step below min_samples, and TPOT then does not
 * hold the step (it is caught at 25%).  Over 1000 seeds that happened
 * once: allow 0.5%. */
static void test_sim_bad_tpot_rolled_back(void **state)
{
    (void)state;
    struct sim_params p = {.err_stable = 0.005,
                           .err_canary = 0.005,
                           .ttft_canary_factor = 1.0,
                           .stream_share = 0.5,
                           .tpot_canary_factor = 2.0,
                           .rps = 20,
                           .max_us = 7200 * SEC};
    run_bad("slow-decoding canary (same TTFT, 2x TPOT, 50% streams)", "TPOT", SEEDS / 200, &p);
}

/* A small but real regression well below the practical margins (+0.1 pp
 * errors, 5% slower TTFT) is not worth a rollback: promoted.  (Effects
 * close to a margin are ambiguous at a 5% weight: the TTFT median of ~150
 * canary samples is only known to about +-10%.) */
static void test_sim_below_margin_promoted(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    struct sim_params p = {
        .err_stable = 0.005, .err_canary = 0.006, .ttft_canary_factor = 1.05, .rps = 20, .max_us = 7200 * SEC};
    int q = quiet_begin();
    size_t rolled = 0, promoted = 0;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct sim_result r;
        sim_run(seed, &p, &conf, &r);
        rolled += r.state == CANARY_ROLLED_BACK;
        promoted += r.state == CANARY_PROMOTED;
        if (r.state == CANARY_ROLLED_BACK) {
            quiet_end(q);
            print_message("below margin, seed %llu rolled back at %llu s: %s\n", (unsigned long long)seed,
                          (unsigned long long)(r.end_us / SEC), r.reason);
            q = quiet_begin();
        }
    }
    quiet_end(q);
    printf("small regression (0.6%% vs 0.5%% errors, 1.05x TTFT), %d seeds: %zu promoted, %zu rolled back\n", SEEDS,
           promoted, rolled);
    /* It is a (small) regression after all: over 1000 seeds 2 runs were
     * rolled back; allow 1%. */
    assert_true(rolled <= SEEDS / 100);
    assert_int_equal(promoted + rolled, SEEDS);
}

/* ---- manual control ---- */

struct evlog {
    char actions[32][16];
    size_t n;
};

static void on_event(void *arg, const struct canary *c, const struct canary_event *ev)
{
    struct evlog *l = arg;
    (void)c;
    if (l->n < 32)
        rp_snprintf(l->actions[l->n++], sizeof l->actions[0], "%s", ev->action);
}

static void test_manual(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    int q = quiet_begin();
    struct canary *c = canary_new("manual", &conf, 0);
    struct evlog log = {.n = 0};
    canary_set_event_cb(c, on_event, &log);
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_int_equal(canary_weight_bp(c), 500);

    assert_int_equal(canary_pause(c, SEC), RP_OK);
    assert_int_equal(c->state, CANARY_PAUSED);
    /* Paused: time passes, enough samples, no promotion. */
    for (uint64_t s = 0; s < 600; s++) {
        for (int k = 0; k < 20; k++)
            canary_record(c, k == 0, false, 100000 + (uint64_t)k * 1000, s * SEC);
        canary_tick(c, s * SEC);
    }
    assert_int_equal(canary_weight_bp(c), 500);
    assert_int_equal(canary_resume(c, 600 * SEC), RP_OK);
    assert_int_equal(c->state, CANARY_RUNNING);

    assert_int_equal(canary_promote(c, 601 * SEC), RP_OK);
    assert_int_equal(canary_weight_bp(c), 2500);
    assert_int_equal(canary_set_weight(c, 4000, 602 * SEC), RP_OK);
    assert_int_equal(c->state, CANARY_PAUSED);
    assert_int_equal(canary_promote(c, 603 * SEC), RP_OK); /* the step above 40% */
    assert_int_equal(canary_weight_bp(c), 5000);
    assert_int_equal(canary_set_weight(c, 10001, 604 * SEC), RP_ERR);

    assert_int_equal(canary_rollback(c, "bad deploy", 605 * SEC), RP_OK);
    assert_int_equal(c->state, CANARY_ROLLED_BACK);
    assert_int_equal(canary_weight_bp(c), 0);
    assert_non_null(strstr(c->reason, "bad deploy"));
    assert_int_equal(c->rollbacks_admin_total, 1);
    assert_int_equal(canary_promote(c, 606 * SEC), RP_ERR);
    assert_non_null(c->last_error);
    assert_int_equal(canary_pause(c, 606 * SEC), RP_ERR);

    /* Resume after a rollback restarts the rollout. */
    assert_int_equal(canary_resume(c, 607 * SEC), RP_OK);
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_int_equal(canary_weight_bp(c), 500);
    assert_int_equal(c->looks, 0);

    assert_int_equal(canary_set_weight(c, 10000, 608 * SEC), RP_OK);
    assert_int_equal(c->state, CANARY_PROMOTED);
    assert_int_equal(canary_promote(c, 609 * SEC), RP_ERR);
    assert_int_equal(canary_resume(c, 609 * SEC), RP_ERR);
    quiet_end(q);

    const char *want[] = {"pause", "resume", "promote", "set_weight", "promote", "rollback", "resume", "set_weight"};
    assert_int_equal(log.n, RP_ARRAY_LEN(want));
    for (size_t i = 0; i < log.n; i++)
        assert_string_equal(log.actions[i], want[i]);
    assert_int_equal(c->num_events, RP_ARRAY_LEN(want) + 1); /* + start */
    canary_free(c);
}

/* auto_rollback off: a regression pauses the rollout (once) and keeps the
 * weight; the operator decides. */
static void test_no_auto_rollback(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    conf.auto_rollback = false;
    struct sim_params p = {
        .err_stable = 0.005, .err_canary = 0.2, .ttft_canary_factor = 1.0, .rps = 20, .max_us = 600 * SEC};
    int q = quiet_begin();
    struct sim_result r;
    sim_run(3, &p, &conf, &r);
    quiet_end(q);
    assert_int_equal(r.state, CANARY_PAUSED);
    assert_non_null(strstr(r.reason, "regression"));
    assert_non_null(strstr(r.reason, "error ratio"));
}

/* Too little traffic to judge: the rollout waits, neither promotes nor
 * rolls back. */
static void test_waits_for_samples(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    struct canary *c = canary_new("thin", &conf, 0);
    for (uint64_t s = 0; s < 3600; s++) {
        if (s % 10 == 0) {
            canary_record(c, 0, false, 300000, s * SEC);
            canary_record(c, 1, s % 20 == 0, 300000, s * SEC);
        }
        canary_tick(c, s * SEC);
    }
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_int_equal(c->step, 0);
    assert_false(c->last.err_judged);
    assert_non_null(strstr(c->last.reason, "waiting for samples"));
    canary_free(c);
}

/* The TPOT promotion gate, deterministically.  One canary request in five
 * and one stable request in five get a stream; TPOT has the same
 * distribution in both groups.  `canary_tpot_every` thins the canary's
 * streams: every k-th second only (0: none). */
struct gate_run {
    uint64_t from_s, to_s;
    unsigned canary_tpot_every;
};

static void gate_feed(struct canary *c, const struct gate_run *run)
{
    for (uint64_t s = run->from_s; s < run->to_s; s++) {
        uint64_t t = s * SEC;
        for (int k = 0; k < 20; k++)
            canary_record(c, 0, false, (uint64_t)(200000.0 * exp(0.3 * sim_normal())), t);
        for (int k = 0; k < 5; k++)
            canary_record(c, 1, false, (uint64_t)(200000.0 * exp(0.3 * sim_normal())), t);
        for (int k = 0; k < 4; k++)
            canary_record_tpot(c, 0, (uint64_t)(30000.0 * exp(0.2 * sim_normal())), t);
        if (run->canary_tpot_every && s % run->canary_tpot_every == 0)
            canary_record_tpot(c, 1, (uint64_t)(30000.0 * exp(0.2 * sim_normal())), t);
        canary_tick(c, t + SEC - 1);
    }
}

static void test_tpot_gate(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    conf.window_us = 60 * SEC;
    conf.interval_us = 10 * SEC;
    conf.step_duration_us = 120 * SEC;
    conf.min_samples = 20;
    int q = quiet_begin();
    srng = 77;

    /* Sparse streams on the canary (12 per 60 s window, min_samples 20):
     * TPOT is never judged and the step passes on errors and TTFT. */
    struct canary *c = canary_new("gate-sparse", &conf, 0);
    gate_feed(c, &(struct gate_run){.from_s = 0, .to_s = 130, .canary_tpot_every = 5});
    assert_int_equal(c->step, 1);
    assert_int_equal(c->promotions_total, 1);
    assert_false(c->last.tpot_judged);
    canary_free(c);

    /* Streams for the first minute only: TPOT is judged within the margin
     * while they last, then the window slides past them.  The step's time
     * is up at 120 s, but the look without TPOT samples must not promote:
     * TPOT was part of the evidence of this step. */
    c = canary_new("gate-sticky", &conf, 0);
    gate_feed(c, &(struct gate_run){.from_s = 0, .to_s = 60, .canary_tpot_every = 1});
    assert_true(c->last.tpot_judged);
    assert_true(c->last.tpot_ni_p < CANARY_MARGIN_ALPHA);
    assert_true(c->tpot_judged_in_step);
    gate_feed(c, &(struct gate_run){.from_s = 60, .to_s = 200, .canary_tpot_every = 0});
    assert_int_equal(c->step, 0);
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_false(c->last.tpot_judged);
    assert_false(c->last.within_margins);
    assert_true(c->last.err_judged && c->last.ttft_judged);
    assert_non_null(strstr(c->last.reason, "TPOT not judged"));
    assert_non_null(strstr(c->last.reason, "not yet shown within margins"));
    /* Streams come back: shown within the margin again, promoted. */
    gate_feed(c, &(struct gate_run){.from_s = 200, .to_s = 260, .canary_tpot_every = 1});
    assert_int_equal(c->step, 1);
    assert_int_equal(c->promotions_total, 1);
    canary_free(c);

    canary_record_tpot(NULL, 1, 1000, 0); /* NULL-safe like canary_record */
    quiet_end(q);
}

/* ---- admin API, metrics, config ---- */

static void call(struct canary_set *set, const char *method, const char *path, const char *body,
                 struct httpd_response *resp)
{
    struct h1_message msg;
    memset(&msg, 0, sizeof msg);
    msg.method.p = method;
    msg.method.len = strlen(method);
    struct httpd_request req = {.msg = &msg,
                                .path = {.p = path, .len = strlen(path)},
                                .query = {.p = "", .len = 0},
                                .body = body,
                                .body_len = body ? strlen(body) : 0,
                                .peer = "127.0.0.1"};
    sbuf_reset(&resp->body);
    sbuf_reset(&resp->headers);
    resp->status = 200;
    resp->content_type = NULL;
    canary_admin_handler(set, &req, resp);
    sbuf_add(&resp->body, "", 1);
    resp->body.len--;
}

static void test_admin(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    int q = quiet_begin();
    struct canary_set set;
    canary_set_init(&set, NULL);
    struct httpd_response resp;
    memset(&resp, 0, sizeof resp);
    sbuf_init(&resp.body, 0);
    sbuf_init(&resp.headers, 0);

    /* No canary at all (NULL set, or an empty one). */
    call(NULL, "GET", "/api/v1/canary", NULL, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "{\"canaries\":[]}"));
    call(&set, "POST", "/api/v1/canary", "{\"action\":\"pause\"}", &resp);
    assert_int_equal(resp.status, 404);
    assert_non_null(strstr(resp.body.data, "no canary configured"));

    struct canary *c = canary_new("chat", &conf, rp_now_us());
    canary_set_add(&set, c);
    assert_ptr_equal(canary_set_find(&set, "chat", 4), c);
    assert_null(canary_set_find(&set, "cha", 3));
    sbuf_free(&resp.body);
    sbuf_free(&resp.headers);
    memset(&resp, 0, sizeof resp);
    sbuf_init(&resp.body, 0);
    sbuf_init(&resp.headers, 0);

    call(&set, "GET", "/api/v1/canary", NULL, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "{\"canaries\":[{\"upstream\":\"chat\",\"state\":\"running\",\"weight\":5"));

    call(&set, "GET", "/api/v1/canary/chat", NULL, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "\"steps\":[5,25,50,100]"));
    assert_non_null(strstr(resp.body.data, "\"analysis\":null"));
    assert_non_null(strstr(resp.body.data, "\"action\":\"start\""));

    call(&set, "GET", "/api/v1/canary/nope", NULL, &resp);
    assert_int_equal(resp.status, 404);
    call(&set, "GET", "/api/v1/canaryx", NULL, &resp);
    assert_int_equal(resp.status, 404);

    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"pause\"}", &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "\"state\":\"paused\""));
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"set_weight\",\"weight\":12.5}", &resp);
    assert_int_equal(resp.status, 200);
    assert_int_equal(canary_weight_bp(c), 1250);
    assert_non_null(strstr(resp.body.data, "\"weight\":12.5"));
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"set_weight\",\"weight\":150}", &resp);
    assert_int_equal(resp.status, 400);
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"set_weight\"}", &resp);
    assert_int_equal(resp.status, 400);
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"explode\"}", &resp);
    assert_int_equal(resp.status, 400);
    call(&set, "POST", "/api/v1/canary/chat", "not json", &resp);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body.data, "JSON object"));
    call(&set, "POST", "/api/v1/canary/chat", "[1]", &resp);
    assert_int_equal(resp.status, 400);
    /* Answers stay valid UTF-8: bytes that are not are refused, not echoed. */
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"pause\xff\"}", &resp);
    assert_int_equal(resp.status, 400);
    assert_true(rp_utf8_valid(resp.body.data, resp.body.len, NULL));
    assert_non_null(strstr(resp.body.data, "byte 0xFF at offset 16"));
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"", &resp);
    assert_int_equal(resp.status, 400);
    assert_true(rp_utf8_valid(resp.body.data, resp.body.len, NULL));
    json_t *ej = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    assert_non_null(ej);
    json_decref(ej);
    call(&set, "POST", "/api/v1/canary/chat", NULL, &resp);
    assert_int_equal(resp.status, 400);
    call(&set, "DELETE", "/api/v1/canary/chat", NULL, &resp);
    assert_int_equal(resp.status, 405);
    assert_non_null(strstr(resp.headers.data, "Allow: GET, HEAD, POST"));

    /* With a single canary the upstream may be left out. */
    call(&set, "POST", "/api/v1/canary", "{\"action\":\"rollback\",\"reason\":\"on-call said so\"}", &resp);
    assert_int_equal(resp.status, 200);
    assert_int_equal(c->state, CANARY_ROLLED_BACK);
    assert_non_null(strstr(resp.body.data, "on-call said so"));
    call(&set, "POST", "/api/v1/canary/chat", "{\"action\":\"promote\"}", &resp);
    assert_int_equal(resp.status, 409);
    assert_non_null(strstr(resp.body.data, "invalid_state"));
    call(&set, "POST", "/api/v1/canary/chat/", "{\"action\":\"resume\"}", &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "\"state\":\"running\""));

    /* Two canaries: the name is required. */
    struct canary *c2 = canary_new("embed", &conf, rp_now_us());
    canary_set_add(&set, c2);
    call(&set, "POST", "/api/v1/canary", "{\"action\":\"pause\"}", &resp);
    assert_int_equal(resp.status, 404);
    /* A canary of another owner is not listed. */
    struct canary *other = canary_new("elsewhere", &conf, rp_now_us());
    call(&set, "GET", "/api/v1/canary", NULL, &resp);
    assert_non_null(strstr(resp.body.data, "{\"canaries\":[{\"upstream\":\"embed\""));
    assert_null(strstr(resp.body.data, "elsewhere"));
    canary_free(other);
    canary_free(c2);
    assert_ptr_equal(set.head, c);
    quiet_end(q);

    sbuf_free(&resp.body);
    sbuf_free(&resp.headers);
    canary_free(c);
    assert_null(set.head);
}

static void test_metrics_and_state(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    conf.min_samples = 20;
    int q = quiet_begin();
    struct canary *c = canary_new("m", &conf, 0);
    for (uint64_t s = 0; s < 31; s++) {
        for (int k = 0; k < 10; k++) {
            canary_record(c, 0, k == 0 && s % 5 == 0, 200000 + (uint64_t)k * 997, s * SEC);
            canary_record(c, 1, false, 210000 + (uint64_t)k * 1009, s * SEC);
            canary_record_tpot(c, 0, 20000 + (uint64_t)k * 101, s * SEC);
            canary_record_tpot(c, 1, 20500 + (uint64_t)k * 103, s * SEC);
        }
    }
    canary_tick(c, 31 * SEC);
    quiet_end(q);
    assert_true(c->last.valid);
    assert_true(c->last.err_judged);
    assert_true(c->last.ttft_judged);
    assert_true(c->last.tpot_judged);
    assert_false(c->last.tpot_regressed);
    assert_int_equal(c->last.tpot_n[0], 310);
    assert_int_equal(c->last.tpot_n[1], 310);
    assert_close(c->last.alpha_test, canary_look_alpha(conf.alpha, c->planned_looks, 1) / 3.0, 1e-12);
    assert_int_equal(c->last.decision, CANARY_CONTINUE);

    struct sbuf s;
    sbuf_init(&s, 0);
    canary_metrics_render(&s, NULL);
    assert_int_equal(s.len, 0);
    struct canary_set set;
    canary_set_init(&set, NULL);
    canary_set_add(&set, c);
    canary_metrics_render(&s, &set);
    sbuf_add(&s, "", 1);
    assert_non_null(strstr(s.data, "rampart_canary_weight_ratio{upstream=\"m\"} 0.0500\n"));
    assert_non_null(strstr(s.data, "rampart_canary_state{upstream=\"m\",state=\"running\"} 1\n"));
    assert_non_null(strstr(s.data, "rampart_canary_requests_total{upstream=\"m\",group=\"canary\"} 310\n"));
    assert_non_null(strstr(s.data, "rampart_canary_decisions_total{upstream=\"m\",decision=\"continue\"} 1\n"));
    assert_non_null(strstr(s.data, "rampart_canary_ttft_p_value{upstream=\"m\"} "));
    assert_non_null(strstr(s.data, "rampart_canary_tpot_p_value{upstream=\"m\"} "));
    assert_non_null(strstr(s.data, "rampart_canary_tpot_median_seconds{upstream=\"m\",group=\"canary\"} 0.0209"));
    assert_non_null(strstr(s.data, "rampart_canary_tpot_ratio{upstream=\"m\"} 1.0"));
    assert_non_null(strstr(s.data, "# TYPE rampart_canary_rollbacks_total counter\n"));
    sbuf_free(&s);

    sbuf_init(&s, 0);
    canary_render_json(c, &s, 40 * SEC);
    sbuf_add(&s, "", 1);
    assert_non_null(strstr(s.data, "\"decision\":\"continue\""));
    assert_non_null(strstr(s.data, "\"errors\":{\"judged\":true"));
    assert_non_null(strstr(s.data, "\"test\":\"fisher\""));
    assert_non_null(strstr(s.data, "\"p_value\":"));
    assert_non_null(strstr(s.data, "\"tpot_ratio\":1.2"));
    assert_non_null(strstr(s.data, "\"tpot\":{\"judged\":true,\"regression\":false,\"stable\":{\"samples\":310,"));
    assert_non_null(strstr(s.data, "\"tpot_within_ratio_p_value\":"));
    assert_non_null(strstr(s.data, "\"tpot_required\":true"));
    assert_null(strstr(s.data, "nan"));
    assert_null(strstr(s.data, "inf"));
    sbuf_free(&s);
    canary_free(c);
}

/* ---- release identity and stored verdicts ---- */

static void test_release_id(void **state)
{
    (void)state;
    char a[CANARY_RELEASE_MAX], b[CANARY_RELEASE_MAX];
    struct canary_server_ref one[2] = {{"127.0.0.1:9003", 1}, {"127.0.0.1:9004", 2}};
    struct canary_server_ref swapped[2] = {{"127.0.0.1:9004", 2}, {"127.0.0.1:9003", 1}};
    canary_release_id(NULL, one, 2, a);
    assert_int_equal(strlen(a), strlen("servers-") + 16);
    assert_memory_equal(a, "servers-", 8);
    canary_release_id("", swapped, 2, b);
    assert_string_equal(a, b); /* the order in the file does not matter */
    struct canary_server_ref w[2] = {{"127.0.0.1:9003", 1}, {"127.0.0.1:9004", 3}};
    canary_release_id(NULL, w, 2, b);
    assert_string_not_equal(a, b); /* another weight: another release */
    struct canary_server_ref moved[2] = {{"127.0.0.1:9003", 1}, {"127.0.0.1:9005", 2}};
    canary_release_id(NULL, moved, 2, b);
    assert_string_not_equal(a, b);
    canary_release_id(NULL, one, 1, b);
    assert_string_not_equal(a, b);
    /* Address and weight cannot trade digits ("...:90031" + "1" vs "...:9003" + "11"). */
    struct canary_server_ref p1[1] = {{"127.0.0.1:90031", 1}}, p2[1] = {{"127.0.0.1:9003", 11}};
    canary_release_id(NULL, p1, 1, a);
    canary_release_id(NULL, p2, 1, b);
    assert_string_not_equal(a, b);
    /* A label names the release whatever the servers. */
    canary_release_id("v2.4.1", one, 2, a);
    assert_string_equal(a, "v2.4.1");
    canary_release_id("v2.4.1", moved, 2, b);
    assert_string_equal(b, "v2.4.1");
    enum canary_state st;
    for (int i = 0; i < CANARY_STATES; i++) {
        assert_int_equal(canary_state_from_name(canary_state_name((enum canary_state)i), &st), RP_OK);
        assert_int_equal(st, i);
    }
    assert_int_equal(canary_state_from_name("rolledback", &st), RP_ERR);
}

struct vlog {
    struct canary_verdict v[16];
    size_t n;
};

static void on_verdict(void *arg, const struct canary *c, const struct canary_verdict *v)
{
    struct vlog *l = arg;
    (void)c;
    if (l->n < RP_ARRAY_LEN(l->v))
        l->v[l->n++] = *v;
}

/* Every change after the start reaches the verdict callback with the new
 * state, the release it is about and why. */
static void test_verdict_cb(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    int q = quiet_begin();
    struct canary *c = canary_new("verdicts", &conf, 0);
    canary_set_release(c, "servers-00000000000000aa");
    struct vlog log = {.n = 0};
    canary_set_verdict_cb(c, on_verdict, &log);
    assert_int_equal(log.n, 0);
    assert_int_equal(canary_set_weight(c, 1250, SEC), RP_OK);
    assert_int_equal(canary_rollback(c, "bad deploy", 2 * SEC), RP_OK);
    assert_int_equal(canary_resume(c, 3 * SEC), RP_OK);
    assert_int_equal(canary_set_weight(c, 10000, 4 * SEC), RP_OK);
    quiet_end(q);
    assert_int_equal(log.n, 4);
    assert_int_equal(log.v[0].state, CANARY_PAUSED);
    assert_int_equal(log.v[0].weight_bp, 1250);
    assert_int_equal(log.v[1].state, CANARY_ROLLED_BACK);
    assert_int_equal(log.v[1].weight_bp, 0);
    assert_string_equal(log.v[1].source, "admin");
    assert_string_equal(log.v[1].release, "servers-00000000000000aa");
    assert_non_null(strstr(log.v[1].reason, "bad deploy"));
    assert_true(log.v[1].wall_ms > 1700000000000LL);
    assert_int_equal(log.v[2].state, CANARY_RUNNING); /* the resume replaces the rollback */
    assert_int_equal(log.v[2].weight_bp, 500);
    assert_int_equal(log.v[3].state, CANARY_PROMOTED);
    canary_free(c);
}

/* An automatic rollback goes through the callback too. */
static void test_verdict_auto_rollback(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    conf.interval_us = 5 * SEC;
    conf.min_samples = 50;
    int q = quiet_begin();
    struct canary *c = canary_new("verdict-auto", &conf, 0);
    canary_set_release(c, "v1");
    struct vlog log = {.n = 0};
    canary_set_verdict_cb(c, on_verdict, &log);
    for (uint64_t s = 0; s < 300 && c->state == CANARY_RUNNING; s++) {
        for (int k = 0; k < 40; k++) {
            int g = k % 4 == 0;
            canary_record(c, g, g && k % 8 == 0, 200000 + (uint64_t)k * 1000, s * SEC + (uint64_t)k * 1000);
        }
        canary_tick(c, s * SEC + SEC - 1);
    }
    quiet_end(q);
    assert_int_equal(c->state, CANARY_ROLLED_BACK);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.v[0].state, CANARY_ROLLED_BACK);
    assert_string_equal(log.v[0].source, "auto");
    assert_string_equal(log.v[0].release, "v1");
    assert_non_null(strstr(log.v[0].reason, "error ratio"));
    canary_free(c);
}

static struct canary_verdict make_verdict(const char *release, enum canary_state st, unsigned w, const char *why)
{
    struct canary_verdict v;
    memset(&v, 0, sizeof v);
    rp_snprintf(v.release, sizeof v.release, "%s", release);
    v.state = st;
    v.weight_bp = w;
    rp_snprintf(v.source, sizeof v.source, "auto");
    rp_snprintf(v.reason, sizeof v.reason, "%s", why);
    v.wall_ms = 1764000000123LL; /* 2025-11-24T16:00:00.123Z */
    return v;
}

/* The same release after a restart keeps its verdict; a new release, or a
 * rollout that was still running, starts fresh. */
static void test_restore(void **state)
{
    (void)state;
    struct canary_conf conf = CANARY_CONF_DEFAULT;
    const char *why = "error ratio 5.83% (n=103) vs stable 0.44% (n=2298)";
    struct canary_verdict rb = make_verdict("servers-00000000000000aa", CANARY_ROLLED_BACK, 0, why);
    int q = quiet_begin();

    /* Same release: rolled back at once, with the original reason and time. */
    struct canary *c = canary_new("restore", &conf, 0);
    struct evlog events = {.n = 0};
    struct vlog stored = {.n = 0};
    canary_set_event_cb(c, on_event, &events);
    canary_set_release(c, "servers-00000000000000aa");
    assert_true(canary_restore(c, &rb, SEC));
    canary_set_verdict_cb(c, on_verdict, &stored);
    assert_int_equal(c->state, CANARY_ROLLED_BACK);
    assert_int_equal(canary_weight_bp(c), 0);
    assert_string_equal(c->reason, why);
    assert_int_equal(c->state_since_ms, rb.wall_ms);
    assert_true(c->restored);
    assert_int_equal(events.n, 1);
    assert_string_equal(events.actions[0], "restore");
    assert_int_equal(stored.n, 0); /* a restore is not stored again */
    for (unsigned t = 0; t < 10000; t++)
        assert_int_equal(canary_pick_group(c, tenant_hash(t)), 0);
    /* Traffic and time do not bring it back, and it is never promoted. */
    for (uint64_t s = 1; s < 1200; s++) {
        canary_record(c, 0, false, 300000, s * SEC);
        assert_int_equal(canary_tick(c, s * SEC), CANARY_CONTINUE);
    }
    assert_int_equal(canary_weight_bp(c), 0);
    assert_int_equal(canary_promote(c, 1200 * SEC), RP_ERR);
    struct sbuf out;
    sbuf_init(&out, 0);
    canary_render_json(c, &out, 1200 * SEC);
    json_error_t jerr;
    json_t *doc = json_loadb(out.data, out.len, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "rolled_back");
    assert_string_equal(json_string_value(json_object_get(doc, "release")), "servers-00000000000000aa");
    assert_string_equal(json_string_value(json_object_get(doc, "state_since")), "2025-11-24T16:00:00.123Z");
    assert_true(json_is_true(json_object_get(doc, "restored")));
    assert_string_equal(json_string_value(json_object_get(doc, "reason")), why);
    json_decref(doc);
    sbuf_free(&out);
    /* The operator's way out is unchanged: resume starts a new attempt,
     * and that is stored. */
    assert_int_equal(canary_resume(c, 1201 * SEC), RP_OK);
    assert_int_equal(canary_weight_bp(c), 500);
    assert_false(c->restored);
    assert_int_equal(stored.n, 1);
    assert_int_equal(stored.v[0].state, CANARY_RUNNING);
    canary_free(c);

    /* Another release (the config changed): the verdict does not apply. */
    c = canary_new("restore", &conf, 0);
    canary_set_release(c, "servers-00000000000000bb");
    assert_false(canary_restore(c, &rb, SEC));
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_int_equal(canary_weight_bp(c), 500);
    assert_false(c->restored);
    canary_free(c);
    /* No release known: nothing can match. */
    c = canary_new("restore", &conf, 0);
    assert_false(canary_restore(c, &rb, SEC));
    assert_int_equal(canary_weight_bp(c), 500);
    canary_free(c);

    /* Promoted stays promoted. */
    struct canary_verdict pr = make_verdict("v2", CANARY_PROMOTED, 10000, "step 3 (50%) passed");
    c = canary_new("restore", &conf, 0);
    canary_set_release(c, "v2");
    assert_true(canary_restore(c, &pr, SEC));
    assert_int_equal(c->state, CANARY_PROMOTED);
    assert_int_equal(canary_weight_bp(c), 10000);
    assert_int_equal(c->step, conf.num_steps - 1);
    for (unsigned t = 0; t < 1000; t++)
        assert_int_equal(canary_pick_group(c, tenant_hash(t)), 1);
    canary_free(c);

    /* An operator's hold stays at its weight, paused. */
    struct canary_verdict pa = make_verdict("v2", CANARY_PAUSED, 1250, "weight set to 12.5% by admin");
    c = canary_new("restore", &conf, 0);
    canary_set_release(c, "v2");
    assert_true(canary_restore(c, &pa, SEC));
    assert_int_equal(c->state, CANARY_PAUSED);
    assert_int_equal(canary_weight_bp(c), 1250);
    assert_int_equal(c->step, 0);
    canary_free(c);

    /* A rollout still running starts again from the first step. */
    struct canary_verdict ru = make_verdict("v2", CANARY_RUNNING, 5000, "step 2 (25%) passed");
    c = canary_new("restore", &conf, 0);
    canary_set_release(c, "v2");
    assert_false(canary_restore(c, &ru, SEC));
    assert_int_equal(c->state, CANARY_RUNNING);
    assert_int_equal(canary_weight_bp(c), 500);
    canary_free(c);
    quiet_end(q);
}

/* The rows' defaults are CANARY_CONF_DEFAULT's: the table and the macro
 * cannot drift apart. */
static void test_conf_rows(void **state)
{
    (void)state;
    struct canary_conf d = CANARY_CONF_DEFAULT, t;
    memset(&t, 0, sizeof t);
    conf_fields_defaults(canary_conf_fields, &t);
    size_t rows = 0;
    for (const struct conf_field *f = canary_conf_fields; f->key; f++) {
        assert_non_null(conf_field_find(canary_conf_fields, f->key));
        if (f->kind == CONF_F_CUSTOM || f->kind == CONF_F_IGNORE)
            continue;
        assert_memory_equal((const char *)&t + f->offset, (const char *)&d + f->offset, f->size);
        rows++;
    }
    assert_true(rows > 0);
}

static void test_conf(void **state)
{
    (void)state;
    const char *y = "canary:\n  steps: [1, 10, \"50%\", 100]\n  step_duration: 10m\n  interval: 1m\n"
                    "  window: 10m\n  min_samples: 500\n  alpha: 0.05\n  error_margin: 2%\n"
                    "  latency_ratio: 1.5\n  auto_rollback: false\n";
    struct conf_doc *doc = conf_load_string("t.yaml", y, strlen(y));
    struct canary_conf c;
    canary_conf_default(&c);
    assert_int_equal(canary_conf_parse(doc, conf_get(conf_root(doc), "canary"), &c), RP_OK);
    assert_int_equal(c.num_steps, 4);
    assert_int_equal(c.steps_bp[0], 100);
    assert_int_equal(c.steps_bp[1], 1000);
    assert_int_equal(c.steps_bp[2], 5000);
    assert_int_equal(c.steps_bp[3], 10000);
    assert_int_equal(c.step_duration_us, 600 * SEC);
    assert_int_equal(c.interval_us, 60 * SEC);
    assert_int_equal(c.window_us, 600 * SEC);
    assert_int_equal(c.min_samples, 500);
    assert_close(c.alpha, 0.05, 1e-12);
    assert_close(c.error_margin, 0.02, 1e-12);
    assert_close(c.latency_ratio, 1.5, 1e-12);
    assert_close(c.tpot_ratio, 1.5, 1e-12); /* follows latency_ratio */
    assert_false(c.auto_rollback);
    assert_string_equal(c.release, ""); /* no label: named by the servers */
    conf_free(doc);

    y = "canary:\n  release: \"v2.4.1 (build 7)\"\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    canary_conf_default(&c);
    assert_int_equal(canary_conf_parse(doc, conf_get(conf_root(doc), "canary"), &c), RP_OK);
    assert_string_equal(c.release, "v2.4.1 (build 7)");
    conf_free(doc);

    y = "canary:\n  latency_ratio: 1.5\n  tpot_ratio: 1.1\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    canary_conf_default(&c);
    assert_close(c.tpot_ratio, 1.2, 1e-12);
    assert_int_equal(canary_conf_parse(doc, conf_get(conf_root(doc), "canary"), &c), RP_OK);
    assert_close(c.latency_ratio, 1.5, 1e-12);
    assert_close(c.tpot_ratio, 1.1, 1e-12);
    conf_free(doc);

    static const char *const bad[] = {
        "canary:\n  steps: [5, 25, 50]\n",          /* must end at 100 */
        "canary:\n  steps: [25, 5, 100]\n",         /* must increase */
        "canary:\n  steps: [0, 100]\n",             /* above 0 */
        "canary:\n  min_samples: 5\n",              /* too few for the approximation */
        "canary:\n  alpha: 0.9\n",                  /* out of range */
        "canary:\n  interval: 1m\n  window: 30s\n", /* window < interval */
        "canary:\n  latency_ratio: 0.5\n",
        "canary:\n  tpot_ratio: 0.9\n",
        "canary:\n  stepz: []\n",
        "canary:\n  release: \"\"\n",
        "canary:\n  release: [v1]\n",
        "canary:\n  release: \"a\\tb\"\n",
        "canary:\n  release: 0123456789012345678901234567890123456789012345678901234567890123\n",
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(bad); i++) {
        doc = conf_load_string("t.yaml", bad[i], strlen(bad[i]));
        canary_conf_default(&c);
        assert_int_equal(canary_conf_parse(doc, conf_get(conf_root(doc), "canary"), &c), RP_ERR);
        assert_true(conf_error_count(doc) >= 1);
        conf_free(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_tail),
        cmocka_unit_test(test_ztest),
        cmocka_unit_test(test_fisher),
        cmocka_unit_test(test_mann_whitney),
        cmocka_unit_test(test_look_alpha),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_sim_healthy_promoted),
        cmocka_unit_test(test_sim_healthy_streaming_promoted),
        cmocka_unit_test(test_sim_bad_errors_rolled_back),
        cmocka_unit_test(test_sim_bad_latency_rolled_back),
        cmocka_unit_test(test_sim_bad_tpot_rolled_back),
        cmocka_unit_test(test_sim_below_margin_promoted),
        cmocka_unit_test(test_manual),
        cmocka_unit_test(test_no_auto_rollback),
        cmocka_unit_test(test_waits_for_samples),
        cmocka_unit_test(test_tpot_gate),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_metrics_and_state),
        cmocka_unit_test(test_release_id),
        cmocka_unit_test(test_verdict_cb),
        cmocka_unit_test(test_verdict_auto_rollback),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_conf_rows),
        cmocka_unit_test(test_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

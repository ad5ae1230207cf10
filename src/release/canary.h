/*
 * canary.h — canary releases: a traffic split between an upstream's stable
 * and canary server groups, statistical comparison of the two, and
 * automatic promotion or rollback.
 *
 * Split: a tenant is in the canary when mix(tenant hash) mod 10000 is below
 * the weight in basis points.  The same tenant always lands on the same
 * side for a given weight, and raising the weight only moves tenants from
 * stable to canary, never back, so a user sees one version throughout.
 *
 * Judgement, every `interval`, over a sliding `window` (both groups over
 * the same time span):
 *   - error ratio (5xx, connect failures, timeouts per attempt): one-sided
 *     two-proportion test "canary worse than stable" — the pooled z-test
 *     when both groups expect at least CANARY_Z_MIN_EXPECTED errors, else
 *     Fisher's exact test (the normal tail is far too thin for rare
 *     events, which is exactly the regime of a low-error service);
 *   - time to first token of successful attempts: one-sided Mann-Whitney U
 *     "canary slower" (normal approximation with tie and continuity
 *     correction), as Kayenta's judge does;
 *   - time per output token of successful streams (from the first body
 *     byte to the end, per content event after the first): the same test.
 *     On a stream the first body byte comes at the end of the prefill, so
 *     TTFT cannot see a release that only decodes slower; TPOT can.
 * A metric is judged only when both groups have min_samples in the window.
 * A regression needs BOTH statistical significance (p below the look's
 * alpha: the canary is worse at all) AND practical significance with 95%
 * confidence (the canary is worse by at least the margin): the lower
 * Agresti-Caffo bound of the error-ratio difference is at least
 * error_margin, resp. Mann-Whitney still finds the canary slower after its
 * TTFTs (TPOTs) are divided by latency_ratio (tpot_ratio).  Testing the
 * margin with a confidence bound rather than the point estimate matters at
 * low weights: with ~150 canary samples a TTFT median is only known to
 * +-10%, so a canary 5% slower would often show a point estimate past a
 * 1.2 ratio.
 *
 * Repeated looks: the analysis looks at the data every interval over the
 * whole rollout, so a fixed per-look alpha would add up to a large false
 * rollback rate.  The family-wise alpha is spent over looks with
 *     alpha_k = alpha * K / ((K + k - 1) (K + k))
 * where K is the planned number of looks (steps before 100% x
 * ceil(step_duration / interval)) and k the look number.  The series
 * telescopes to exactly alpha over any number of looks, gives about alpha/K
 * to the first look (Bonferroni's share), half of alpha over the planned
 * looks, and keeps the other half for looks beyond the plan (a step waiting
 * for samples, a pause).  Each look tests up to three metrics, so each test
 * uses alpha_k / 3 (Bonferroni; the split is fixed so that the level of a
 * test does not depend on which other metrics had samples).
 *
 * Steps (default 5% -> 25% -> 50% -> 100%): a running rollout moves to the
 * next step when the step has lasted step_duration, the canary took at
 * least min_samples requests during it, and the latest look shows the
 * canary within the margins with 95% confidence (non-inferiority, the
 * mirror of the rollback test): the upper confidence bound of the error
 * ratio difference over the step (Agresti-Caffo) is below error_margin,
 * and Mann-Whitney finds canary TTFT / latency_ratio faster than stable
 * (p < 0.05), and, when TPOT is judged, canary TPOT / tpot_ratio faster
 * than stable.  "Enough samples" therefore means enough to show the canary
 * is fine, not merely too few to show it is bad: a bad canary is never
 * promoted for lack of evidence, it waits.  TPOT is the exception: only
 * streams have it, and an upstream may serve few or none, so a step in
 * which TPOT never had min_samples per group is judged on errors and TTFT
 * alone.  Once TPOT was judged during a step, though, a later look without
 * enough TPOT samples does not count as "within margins": otherwise a
 * sample count hovering around min_samples would let a canary through on
 * the look that happened to fall short.  Reaching 100% is the
 * promotion; the analysis stops there (no stable traffic is left).
 *
 * Every weight change starts a new exposure: the window is cleared, so the
 * canary's share of traffic is constant over the samples judged.  Mixing
 * samples from two weights would let anything that varies with time
 * (load, an upstream hiccup) fall unevenly on the two groups.  For the
 * same reason TTFT samples are thinned per bucket to the same sampling
 * rate in both groups before the tests (TPOT samples likewise).
 *
 * Manual control (admin API): pause (stops promotion, not protection: a
 * regression still rolls back), resume, rollback, promote (one step),
 * set_weight (holds the rollout at that weight, i.e. pauses it).  Every
 * change is an event: one JSON line on stderr, a ring of recent events in
 * the state document, counters in the metrics, and an optional callback
 * (e.g. the status page opening an incident on rollback).
 *
 * Verdicts outlive the process.  A release is identified by its `release:`
 * label or, without one, by a hash of the canary group's addresses and
 * weights (canary_release_id).  Every change after the start is also handed
 * to a verdict callback that stores it (status.c keeps it in the status
 * database), and at start canary_restore applies the stored verdict of the
 * same release: a rolled-back release stays at weight 0 after a restart, a
 * promoted one at 100%, one held by an operator at its weight.  A rollout
 * that was still running starts again from the first step, because the
 * evidence that earned its weight was in memory.  A different release (the
 * config changed) finds no verdict and starts fresh.  This module stays
 * free of storage: it only calls the callback and takes a verdict.
 *
 * Pure logic except the stderr event line: every function takes the time
 * from its caller, the metrics renderer from its set's loop.  Everything is bounded: TTFT and TPOT samples are
 * each a reservoir of CANARY_BUCKET_SAMPLES per window bucket per group.
 */
#ifndef RP_CANARY_H
#define RP_CANARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"

/* config.h includes this header for struct canary_conf: keep it light. */
struct ev_loop;

#define CANARY_MAX_STEPS 8
#define CANARY_BUCKETS 12
#define CANARY_BUCKET_SAMPLES 1024
#define CANARY_WINDOW_SAMPLES (CANARY_BUCKETS * CANARY_BUCKET_SAMPLES)
#define CANARY_EVENTS 16
#define CANARY_NAME_MAX 64
#define CANARY_REASON_MAX 240
#define CANARY_RELEASE_MAX 64    /* release id, and the release: label (63 bytes) */
#define CANARY_WEIGHT_MAX 10000u /* basis points: 100% */
/* Below this many expected errors in either group, the error test is
 * Fisher's exact test instead of the z-test. */
#define CANARY_Z_MIN_EXPECTED 100.0
/* Bonferroni split of a look's alpha: errors, TTFT, TPOT. */
#define CANARY_TESTS_PER_LOOK 3
/* One-sided 95% confidence for the margin checks, in both directions:
 * "worse by at least the margin" (rollback) and "within the margin"
 * (promotion). */
#define CANARY_MARGIN_Z 1.6448536269514722
#define CANARY_MARGIN_ALPHA 0.05

enum canary_group { CANARY_STABLE = 0, CANARY_CANARY = 1 };

struct canary_conf {
    unsigned steps_bp[CANARY_MAX_STEPS]; /* weights in basis points, increasing, last = 10000 */
    size_t num_steps;                    /* default 5%, 25%, 50%, 100% */
    uint64_t step_duration_us;           /* default 5m */
    uint64_t interval_us;                /* analysis cadence; default 30s */
    uint64_t window_us;                  /* samples judged; default 5m */
    unsigned min_samples;                /* per group and metric in the window; default 100 */
    double alpha;                        /* family-wise false-rollback bound; default 0.01 */
    double error_margin;                 /* error ratio difference that matters; default 0.01 (1 pp) */
    double latency_ratio;                /* TTFT median ratio that matters; default 1.2 */
    double tpot_ratio;                   /* TPOT median ratio that matters; default latency_ratio */
    bool auto_rollback;                  /* default true; false: a regression pauses and logs */
    char release[CANARY_RELEASE_MAX];    /* release: label of the canary's version; "" = named by its servers */
};

#define CANARY_CONF_DEFAULT                                                                                            \
    {                                                                                                                  \
        .steps_bp = {500, 2500, 5000, 10000}, .num_steps = 4, .step_duration_us = 300000000u,                          \
        .interval_us = 30000000u, .window_us = 300000000u, .min_samples = 100, .alpha = 0.01, .error_margin = 0.01,    \
        .latency_ratio = 1.2, .tpot_ratio = 1.2, .auto_rollback = true                                                 \
    }

void canary_conf_default(struct canary_conf *c);
/* Parse the `canary:` map of an upstream (NULL: defaults kept).  Keys:
 * steps (sequence of percentages, increasing, ending at 100),
 * step_duration, interval, window, min_samples, alpha, error_margin (a
 * fraction or "1%"), latency_ratio, tpot_ratio (default: latency_ratio),
 * auto_rollback, release (a label such as "v2.4.1", 1..63 printable
 * characters). */
int canary_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct canary_conf *out);
/* The rows of the section's plain keys (conf.h), for documentation and
 * tests; canary_conf_parse adds the checks that span keys. */
extern const struct conf_field canary_conf_fields[];

enum canary_state { CANARY_RUNNING = 0, CANARY_PAUSED, CANARY_ROLLED_BACK, CANARY_PROMOTED };
#define CANARY_STATES 4
enum canary_decision { CANARY_CONTINUE = 0, CANARY_PROMOTE, CANARY_ROLLBACK };
#define CANARY_DECISIONS 3

const char *canary_state_name(enum canary_state s);
/* Inverse of canary_state_name: RP_OK, or RP_ERR for an unknown name. */
int canary_state_from_name(const char *name, enum canary_state *out);
const char *canary_decision_name(enum canary_decision d);

/* ---- statistics (exported for tests) ---- */

/* Upper tail of the standard normal: P(Z > z). */
double canary_norm_sf(double z);

/* One-sided pooled two-proportion z-test, H1: canary ratio > stable ratio.
 * Returns the p-value and stores z (0 when undefined: no data, or both
 * groups all-error or error-free). */
double canary_ztest(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s, double *z);
/* One-sided Fisher exact test, same hypothesis: P(X >= err_c) for X
 * hypergeometric (n_c + n_s requests, err_c + err_s errors, n_c drawn). */
double canary_fisher(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s);

struct canary_mw {
    double u;   /* U of the canary sample */
    double z;   /* with tie and continuity correction */
    double p;   /* one-sided: canary stochastically greater */
    double auc; /* U / (n_c n_s): P(canary > stable) + 0.5 P(tie) */
    double median_c, median_s;
};
/* Mann-Whitney U.  Sorts both arrays in place.  RP_ERR when a sample is
 * empty. */
int canary_mann_whitney(uint32_t *canary, size_t n_c, uint32_t *stable, size_t n_s, struct canary_mw *out);

/* alpha_k of the spending schedule (see the file comment); k >= 1. */
double canary_look_alpha(double alpha, unsigned planned, unsigned k);

/* ---- runtime ---- */

struct canary_analysis {
    bool valid; /* an analysis ran */
    uint64_t at_us;
    unsigned look;     /* look number k (0: nothing judged yet) */
    double alpha_test; /* per-test alpha of this look (alpha_k / CANARY_TESTS_PER_LOOK) */
    /* errors */
    bool err_judged, err_regressed;
    bool err_exact; /* Fisher rather than z */
    uint64_t requests[2], errors[2];
    double err_ratio[2], err_diff, err_z, err_p;
    /* TTFT */
    bool ttft_judged, ttft_regressed;
    size_t ttft_n[2];
    double ttft_median_us[2], ttft_ratio, ttft_auc, ttft_z, ttft_p;
    /* TPOT (streams only) */
    bool tpot_judged, tpot_regressed;
    size_t tpot_n[2];
    double tpot_median_us[2], tpot_ratio, tpot_auc, tpot_z, tpot_p;
    /* margins */
    double err_lower;     /* 95% lower bound of the error-ratio difference (window) */
    double ttft_margin_p; /* p of "canary TTFT / latency_ratio still slower than stable" */
    double tpot_margin_p; /* p of "canary TPOT / tpot_ratio still slower than stable" */
    /* promotion gate (non-inferiority) */
    double err_upper;    /* 95% upper bound of the error-ratio difference over the step */
    double ttft_ni_p;    /* p of "canary TTFT / latency_ratio is faster than stable" */
    double tpot_ni_p;    /* p of "canary TPOT / tpot_ratio is faster than stable" */
    bool within_margins; /* every required bound inside its margin */
    enum canary_decision decision;
    char reason[CANARY_REASON_MAX];
};

struct canary_event {
    int64_t wall_ms;
    uint64_t at_us;
    char action[16]; /* start, promote, rollback, pause, resume, set_weight, regression, restore */
    char source[8];  /* auto, admin */
    unsigned from_bp, to_bp;
    char reason[CANARY_REASON_MAX];
};

struct canary;
typedef void (*canary_event_cb)(void *arg, const struct canary *c, const struct canary_event *ev);

/* The state a release was left in, as stored across restarts. */
struct canary_verdict {
    char release[CANARY_RELEASE_MAX]; /* canary_release_id */
    enum canary_state state;
    unsigned weight_bp;
    char source[8]; /* auto, admin */
    char reason[CANARY_REASON_MAX];
    int64_t wall_ms; /* when the state was reached */
};
typedef void (*canary_verdict_cb)(void *arg, const struct canary *c, const struct canary_verdict *v);

/* One server of the canary group, for canary_release_id. */
struct canary_server_ref {
    const char *address; /* as written in the config */
    unsigned weight;
};

/* A uniform reservoir of one latency metric per group. */
struct canary_reservoir {
    uint64_t seen[2]; /* samples offered */
    uint32_t n[2];    /* samples kept */
    uint32_t v[2][CANARY_BUCKET_SAMPLES];
};

struct canary_bucket {
    uint64_t epoch; /* bucket number + 1; 0 = empty */
    uint64_t requests[2], errors[2];
    struct canary_reservoir ttft, tpot;
};

struct canary {
    char upstream[CANARY_NAME_MAX];
    struct canary_conf conf;
    enum canary_state state;
    unsigned weight_bp;
    size_t step; /* index in conf.steps_bp of the current/last step */
    uint64_t step_started_us;
    uint64_t step_requests;          /* canary attempts since the step started */
    uint64_t step_n[2], step_err[2]; /* attempts and errors per group since the step started */
    uint64_t next_analysis_us;
    unsigned looks;
    unsigned planned_looks;
    bool regression_flagged;        /* auto_rollback off: pause logged once */
    bool tpot_judged_in_step;       /* TPOT had min_samples at some look of this exposure */
    char reason[CANARY_REASON_MAX]; /* why the state is what it is (rollback/pause) */
    const char *last_error;         /* why the last manual action was refused */
    struct canary_analysis last;
    uint64_t rng; /* reservoir sampling; deterministic per upstream */
    uint64_t bucket_us;
    struct canary_bucket buckets[CANARY_BUCKETS];
    uint32_t scratch[2][CANARY_WINDOW_SAMPLES]; /* one metric at a time */
    struct canary_event events[CANARY_EVENTS];
    size_t num_events, next_event;
    canary_event_cb cb;
    void *cb_arg;
    /* release identity and persistence */
    char release[CANARY_RELEASE_MAX]; /* "" until known */
    int64_t state_since_ms;           /* wall clock of the last change (0: the start) */
    bool restored;                    /* the state came from the stored verdict */
    canary_verdict_cb vcb;
    void *vcb_arg;
    /* counters */
    uint64_t requests_total[2], errors_total[2];
    uint64_t decisions_total[CANARY_DECISIONS];
    uint64_t rollbacks_auto_total, rollbacks_admin_total, promotions_total;
    /* membership of the owner's set (canary_set_add) */
    struct canary_set *set;
    struct canary *next_in_set;
};

/* The canaries of one owner (the upstream set): what the metrics renderer
 * and the admin API walk, instead of a process-wide list, so that two
 * owners (tests, a future reload) never see each other's canaries.  The
 * newest canary comes first.  loop is the clock of the admin API (NULL:
 * the monotonic clock, for tests). */
struct canary_set {
    struct canary *head;
    struct ev_loop *loop;
};

void canary_set_init(struct canary_set *set, struct ev_loop *loop);
/* Put c (may be NULL: nothing) in set; it leaves it in canary_free. */
void canary_set_add(struct canary_set *set, struct canary *c);
/* The canary of upstream (len bytes) in set, or NULL. */
struct canary *canary_set_find(const struct canary_set *set, const char *upstream, size_t len);
/* The set's current time: ev_now of its loop. */
uint64_t canary_set_now(const struct canary_set *set);

/* Create the canary of an upstream that has canary servers.  It starts
 * running at the first step.  conf is copied. */
struct canary *canary_new(const char *upstream, const struct canary_conf *conf, uint64_t now_us);
/* Free c, taking it out of its set first. */
void canary_free(struct canary *c);

/* Called on every event (after it is logged). */
void canary_set_event_cb(struct canary *c, canary_event_cb cb, void *arg);

/* The id of a release: the label when one is given (non-empty), else
 * "servers-" and 16 hex digits hashing the canary group's addresses and
 * weights, in any order.  out is always NUL-terminated. */
void canary_release_id(const char *label, const struct canary_server_ref *servers, size_t n,
                       char out[CANARY_RELEASE_MAX]);
/* Which release c is judging (shown in the state document, put in every
 * verdict). */
void canary_set_release(struct canary *c, const char *release_id);
/* Name c's release from the configuration: its release: label, else the
 * canary group among servers[n] (canary_release_id).  Done once when the
 * canary is made, before any stored verdict is looked up. */
#define CANARY_MAX_SERVERS 64 /* servers of one upstream (config.c checks) */
struct server_conf;
void canary_name_release(struct canary *c, const struct server_conf *servers, size_t n);
/* Called with the new state after every change except the start and a
 * restore (cb NULL: none).  Runs on the caller's thread, synchronously. */
void canary_set_verdict_cb(struct canary *c, canary_verdict_cb cb, void *arg);
/* Apply a stored verdict if it is about c's release and worth keeping:
 * rolled_back (weight 0), promoted (100%) or paused (at its weight), with
 * the original reason and time, logged as a "restore" event.  A running
 * verdict, or one about another release, is ignored: the rollout starts
 * fresh.  Returns whether the verdict was applied.  Call before traffic. */
bool canary_restore(struct canary *c, const struct canary_verdict *v, uint64_t now_us);

/* Which group serves this tenant (0 stable, 1 canary).  c may be NULL
 * (always stable).  tenant_hash: rp_hash64 of the tenant identity. */
int canary_pick_group(const struct canary *c, uint64_t tenant_hash);
static inline unsigned canary_weight_bp(const struct canary *c)
{
    return c ? c->weight_bp : 0;
}

/* Record one attempt on a server of group (0/1): error = 5xx, connect
 * failure or timeout; ttft_us = time to the first body byte of a
 * successful attempt, 0 when none (errors, or not measured).  Client-side
 * outcomes (4xx, the client leaving) are not recorded at all. */
void canary_record(struct canary *c, int group, bool error, uint64_t ttft_us, uint64_t now_us);

/* Record the time per output token of one successful stream on a server of
 * group: (end - first body byte) / (content events - 1), so only streams
 * with at least two content events have one.  Called in addition to
 * canary_record for the same attempt.  c may be NULL.  0 is a valid sample
 * (every token arrived in one read: a buffering release). */
void canary_record_tpot(struct canary *c, int group, uint64_t tpot_us, uint64_t now_us);

/* Run the analysis when an interval has passed (cheap otherwise; call it
 * from a timer every second or every interval).  Returns the decision it
 * took, CANARY_CONTINUE when none. */
enum canary_decision canary_tick(struct canary *c, uint64_t now_us);

/* Manual control.  RP_OK, or RP_ERR when the action makes no sense in the
 * current state (c->last_error says why).  reason may be NULL. */
int canary_pause(struct canary *c, uint64_t now_us);
int canary_resume(struct canary *c, uint64_t now_us);
int canary_rollback(struct canary *c, const char *reason, uint64_t now_us);
int canary_promote(struct canary *c, uint64_t now_us);
/* weight_bp 0..10000: hold at that weight (paused); 10000 promotes. */
int canary_set_weight(struct canary *c, unsigned weight_bp, uint64_t now_us);

/* The state document (JSON object) served by GET /api/v1/canary/<name>. */
void canary_render_json(const struct canary *c, struct sbuf *out, uint64_t now_us);

/* metrics_render_fn: every canary of the struct canary_set *arg. */
void canary_metrics_render(struct sbuf *out, void *arg);

#endif

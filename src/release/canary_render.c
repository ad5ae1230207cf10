/*
 * canary_render.c — what the canary shows: the state document of the
 * admin API (canary_render_json) and the Prometheus families.  Reads a
 * canary, never changes it.
 */
#include "canary_int.h"
#include "metrics.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- shared with canary.c ---- */

void canary_iso_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    gmtime_r(&t, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    rp_snprintf(buf, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

void canary_weight_json(struct sbuf *out, unsigned bp)
{
    sbuf_printf(out, "%g", (double)bp / 100.0);
}

static void event_json(struct sbuf *out, const struct canary_event *ev)
{
    char ts[48];
    canary_iso_time(ev->wall_ms, ts, sizeof ts);
    sbuf_printf(out, "{\"ts\":\"%s\",\"action\":\"%s\",\"source\":\"%s\",\"from_weight\":", ts, ev->action, ev->source);
    canary_weight_json(out, ev->from_bp);
    sbuf_adds(out, ",\"to_weight\":");
    canary_weight_json(out, ev->to_bp);
    sbuf_adds(out, ",\"reason\":\"");
    sbuf_json_str(out, ev->reason, strlen(ev->reason));
    sbuf_adds(out, "\"}");
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
    canary_weight_json(out, c->weight_bp);
    sbuf_printf(out, ",\"step\":%zu,\"steps\":[", c->step + 1);
    for (size_t i = 0; i < c->conf.num_steps; i++) {
        if (i)
            sbuf_adds(out, ",");
        canary_weight_json(out, c->conf.steps_bp[i]);
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
        canary_iso_time(c->state_since_ms, ts, sizeof ts);
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
    const struct canary_set *set = arg;
    const struct canary *head = set ? set->head : NULL;
    if (!head)
        return;
    static const char *const groups[2] = {"group=\"stable\"", "group=\"canary\""};
    metrics_family(out, "rampart_canary_weight_ratio", "gauge", "Share of tenants sent to the canary group (0..1).");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_weight_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", (double)c->weight_bp / 10000.0);
    }
    metrics_family(out, "rampart_canary_state", "gauge", "Rollout state (1 for the current state).");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int s = 0; s < CANARY_STATES; s++) {
            char lab[48];
            rp_snprintf(lab, sizeof lab, "state=\"%s\"", canary_state_name((enum canary_state)s));
            series(out, "rampart_canary_state", c, lab);
            sbuf_printf(out, "%d\n", (int)c->state == s);
        }
    metrics_family(out, "rampart_canary_step", "gauge", "Current rollout step (1-based).");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_step", c, NULL);
        sbuf_printf(out, "%zu\n", c->step + 1);
    }
    metrics_family(out, "rampart_canary_requests_total", "counter", "Attempts recorded per release group.");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_requests_total", c, groups[g]);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->requests_total[g]);
        }
    metrics_family(out, "rampart_canary_errors_total", "counter",
                   "Failed attempts (5xx, connect, timeout) per release group.");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_errors_total", c, groups[g]);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->errors_total[g]);
        }
    metrics_family(out, "rampart_canary_error_ratio", "gauge", "Error ratio in the window at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_error_ratio", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.err_ratio[g]);
        }
    metrics_family(out, "rampart_canary_error_difference", "gauge",
                   "Canary minus stable error ratio at the latest analysis (effect size).");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_error_difference", c, NULL);
        sbuf_printf(out, "%.6f\n", c->last.err_diff);
    }
    metrics_family(out, "rampart_canary_error_p_value", "gauge",
                   "p-value of 'canary errors more' at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_error_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.err_p : 1.0);
    }
    metrics_family(out, "rampart_canary_ttft_median_seconds", "gauge", "Median time to first token in the window.");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_ttft_median_seconds", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.ttft_median_us[g] / 1e6);
        }
    metrics_family(out, "rampart_canary_ttft_ratio", "gauge", "Canary / stable TTFT median at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_ttft_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", isfinite(c->last.ttft_ratio) ? c->last.ttft_ratio : 0.0);
    }
    metrics_family(out, "rampart_canary_ttft_p_value", "gauge",
                   "Mann-Whitney p-value of 'canary slower' at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_ttft_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.ttft_p : 1.0);
    }
    metrics_family(out, "rampart_canary_tpot_median_seconds", "gauge",
                   "Median time per output token of streams in the window (0: not judged).");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int g = 0; g < 2; g++) {
            series(out, "rampart_canary_tpot_median_seconds", c, groups[g]);
            sbuf_printf(out, "%.6f\n", c->last.tpot_median_us[g] / 1e6);
        }
    metrics_family(out, "rampart_canary_tpot_ratio", "gauge", "Canary / stable TPOT median at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_tpot_ratio", c, NULL);
        sbuf_printf(out, "%.4f\n", isfinite(c->last.tpot_ratio) ? c->last.tpot_ratio : 0.0);
    }
    metrics_family(out, "rampart_canary_tpot_p_value", "gauge",
                   "Mann-Whitney p-value of 'canary TPOT slower' at the latest analysis.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_tpot_p_value", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.valid ? c->last.tpot_p : 1.0);
    }
    metrics_family(out, "rampart_canary_alpha_per_test", "gauge",
                   "Significance level of each test at the latest look.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_alpha_per_test", c, NULL);
        sbuf_printf(out, "%.6g\n", c->last.alpha_test);
    }
    metrics_family(out, "rampart_canary_decisions_total", "counter", "Analysis decisions.");
    for (const struct canary *c = head; c; c = c->next_in_set)
        for (int d = 0; d < CANARY_DECISIONS; d++) {
            char lab[48];
            rp_snprintf(lab, sizeof lab, "decision=\"%s\"", canary_decision_name((enum canary_decision)d));
            series(out, "rampart_canary_decisions_total", c, lab);
            sbuf_printf(out, "%llu\n", (unsigned long long)c->decisions_total[d]);
        }
    metrics_family(out, "rampart_canary_rollbacks_total", "counter", "Rollbacks by source.");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_rollbacks_total", c, "source=\"auto\"");
        sbuf_printf(out, "%llu\n", (unsigned long long)c->rollbacks_auto_total);
        series(out, "rampart_canary_rollbacks_total", c, "source=\"admin\"");
        sbuf_printf(out, "%llu\n", (unsigned long long)c->rollbacks_admin_total);
    }
    metrics_family(out, "rampart_canary_promotions_total", "counter", "Step promotions (automatic and manual).");
    for (const struct canary *c = head; c; c = c->next_in_set) {
        series(out, "rampart_canary_promotions_total", c, NULL);
        sbuf_printf(out, "%llu\n", (unsigned long long)c->promotions_total);
    }
}

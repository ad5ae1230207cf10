/*
 * loadgen_report.c — what a run measured: one CSV row per request, a JSON
 * summary per phase and for the whole run, and the printed table.
 *
 * Two kinds of figure per phase: counts over the phase's arrivals (offered,
 * ok, goodput, latency percentiles of its successful requests), and rates
 * over completions that finished inside the phase's time window, so that a
 * backlog drained after an overload phase is not credited to it.  Goodput
 * is 2xx and complete, within the SLO when one is set.
 */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_stats.h"
#include "util.h"

const char *const lg_err_name[LG_E__COUNT] = {
    "", "connect", "io", "eof", "protocol", "truncated", "gave_up", "overflow", "unfinished",
};

struct lg_status_count {
    int status;
    size_t n;
};

struct lg_summary {
    const char *name;
    double mult, rate, dur_s;
    size_t offered, completed, ok, good, gave_up, errors, tokens;
    size_t ok_win, good_win; /* finished inside the phase's time window */
    size_t tokens_win;
    size_t err_counts[LG_E__COUNT];
    struct lg_status_count status[64];
    size_t nstatus;
    struct tool_dist ttft, total, hdr, lag;
};

static bool res_ok(const struct lg_result *x)
{
    return x->err == LG_OK && x->status >= 200 && x->status < 300;
}

static bool res_good(const struct lg_result *x)
{
    if (!res_ok(x))
        return false;
    if (lg_cfg.slo_ttft_s > 0 && (x->ttft_us < 0 || (double)x->ttft_us > lg_cfg.slo_ttft_s * 1e6))
        return false;
    if (lg_cfg.slo_total_s > 0 && (double)x->total_us > lg_cfg.slo_total_s * 1e6)
        return false;
    return true;
}

/* Summarise results of phase ph (or all when ph < 0). */
static void summarise(int ph, struct lg_summary *s, int64_t *scratch)
{
    memset(s, 0, sizeof *s);
    uint64_t win_lo = ph >= 0 ? lg_cfg.phases[ph].start_us : 0;
    uint64_t win_hi = ph >= 0 ? lg_cfg.phases[ph].end_us : lg_cfg.phases[lg_cfg.nphases - 1].end_us;
    /* Rates per second count completions by when they finished, so that a
     * backlog drained after an overload phase is not credited to it. */
    for (size_t i = 0; i < lg_nresults; i++) {
        const struct lg_result *x = &lg_results[i];
        uint64_t fin = x->sched_us + (uint64_t)RP_MAX(0, x->total_us);
        if (res_ok(x) && fin >= win_lo && fin < win_hi) {
            s->ok_win++;
            s->tokens_win += (size_t)RP_MAX(0, x->tokens);
            if (res_good(x))
                s->good_win++;
        }
    }
    for (size_t i = 0; i < lg_nresults; i++) {
        const struct lg_result *x = &lg_results[i];
        if (ph >= 0 && x->phase != ph)
            continue;
        s->offered++;
        if (x->status > 0) {
            size_t k;
            for (k = 0; k < s->nstatus && s->status[k].status != x->status; k++)
                ;
            if (k == s->nstatus && k < RP_ARRAY_LEN(s->status))
                s->status[s->nstatus++] = (struct lg_status_count){x->status, 0};
            if (k < s->nstatus)
                s->status[k].n++;
        }
        if (x->err == LG_OK && x->status > 0)
            s->completed++;
        if (res_ok(x)) {
            s->ok++;
            s->tokens += (size_t)RP_MAX(0, x->tokens);
        }
        if (res_good(x))
            s->good++;
        if (x->gave_up)
            s->gave_up++;
        else if (x->err != LG_OK)
            s->errors++;
        s->err_counts[x->err]++;
    }
    /* Latency distributions are over successful (2xx, complete) requests:
     * failures and give-ups have no meaningful total. */
    size_t m = 0;
#define COLLECT(field, cond)                                                                                           \
    do {                                                                                                               \
        m = 0;                                                                                                         \
        for (size_t i = 0; i < lg_nresults; i++) {                                                                     \
            const struct lg_result *x = &lg_results[i];                                                                \
            if ((ph >= 0 && x->phase != ph) || !(cond) || x->field < 0)                                                \
                continue;                                                                                              \
            scratch[m++] = x->field;                                                                                   \
        }                                                                                                              \
    } while (0)
    COLLECT(ttft_us, res_ok(x));
    s->ttft = tool_dist_of(scratch, m);
    COLLECT(total_us, res_ok(x));
    s->total = tool_dist_of(scratch, m);
    COLLECT(hdr_us, x->status > 0);
    s->hdr = tool_dist_of(scratch, m);
#undef COLLECT
    m = 0;
    for (size_t i = 0; i < lg_nresults; i++)
        if (ph < 0 || lg_results[i].phase == ph)
            scratch[m++] = lg_results[i].lag_us;
    s->lag = tool_dist_of(scratch, m);
    if (ph >= 0) {
        const struct lg_phase *p = &lg_cfg.phases[ph];
        s->mult = p->mult;
        s->rate = p->rate;
        s->dur_s = p->dur_s;
    } else {
        for (size_t i = 0; i < lg_cfg.nphases; i++)
            s->dur_s += lg_cfg.phases[i].dur_s;
        s->rate = s->dur_s > 0 ? (double)s->offered / s->dur_s : 0;
        s->mult = 0;
    }
}

static void json_dist(FILE *f, const char *name, const struct tool_dist *d)
{
    fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"max\":%.3f}", name, d->n,
            d->p50, d->p90, d->p99, d->mean, d->max);
}

static void json_summary(FILE *f, const struct lg_summary *s, int ph)
{
    double dur = s->dur_s > 0 ? s->dur_s : 1;
    fprintf(f, "{\"phase\":");
    if (ph >= 0)
        fprintf(f, "%d,\"multiplier\":%g,\"rate\":%g,", ph + 1, s->mult, s->rate);
    else
        fprintf(f, "\"all\",");
    fprintf(f,
            "\"duration_s\":%g,\"offered\":%zu,\"offered_rps\":%.3f,\"completed\":%zu,\"ok\":%zu,"
            "\"goodput\":%zu,\"goodput_fraction\":%.4f,\"ok_in_window\":%zu,\"ok_rps\":%.3f,"
            "\"goodput_in_window\":%zu,\"goodput_rps\":%.3f,"
            "\"gave_up\":%zu,\"errors\":%zu,\"tokens\":%zu,\"tokens_per_s\":%.1f,",
            s->dur_s, s->offered, (double)s->offered / dur, s->completed, s->ok, s->good,
            s->offered ? (double)s->good / (double)s->offered : 0.0, s->ok_win, (double)s->ok_win / dur, s->good_win,
            (double)s->good_win / dur, s->gave_up, s->errors, s->tokens, (double)s->tokens_win / dur);
    fprintf(f, "\"status\":{");
    for (size_t k = 0; k < s->nstatus; k++)
        fprintf(f, "%s\"%d\":%zu", k ? "," : "", s->status[k].status, s->status[k].n);
    fprintf(f, "},\"error_counts\":{");
    bool first = true;
    for (int e = 1; e < LG_E__COUNT; e++) {
        if (!s->err_counts[e])
            continue;
        fprintf(f, "%s\"%s\":%zu", first ? "" : ",", lg_err_name[e], s->err_counts[e]);
        first = false;
    }
    fprintf(f, "},");
    json_dist(f, "ttft_ms", &s->ttft);
    fputc(',', f);
    json_dist(f, "total_ms", &s->total);
    fputc(',', f);
    json_dist(f, "headers_ms", &s->hdr);
    fputc(',', f);
    json_dist(f, "launch_lag_ms", &s->lag);
    fputc('}', f);
}

static void print_row(const struct lg_summary *s, int ph)
{
    char name[16];
    double dur = s->dur_s > 0 ? s->dur_s : 1;
    if (ph >= 0)
        rp_snprintf(name, sizeof name, "%d (%gx)", ph + 1, s->mult);
    else
        rp_snprintf(name, sizeof name, "all");
    printf("%-9s %6.1f %9.1f %8zu %8.1f %8.1f %6.1f%% %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %7zu %7zu\n", name, s->dur_s,
           (double)s->offered / dur, s->offered, (double)s->ok_win / dur, (double)s->good_win / dur,
           s->offered ? 100.0 * (double)s->good / (double)s->offered : 0.0, s->ttft.p50, s->ttft.p90, s->ttft.p99,
           s->total.p50, s->total.p90, s->total.p99, s->gave_up, s->errors);
}

static void print_status_line(const struct lg_summary *s, int ph)
{
    if (ph >= 0)
        printf("  phase %d: ", ph + 1);
    else
        printf("  all: ");
    for (size_t k = 0; k < s->nstatus; k++)
        printf("%d=%zu ", s->status[k].status, s->status[k].n);
    for (int e = 1; e < LG_E__COUNT; e++)
        if (s->err_counts[e])
            printf("%s=%zu ", lg_err_name[e], s->err_counts[e]);
    printf("| launch lag p99 %.2f ms, max %.2f ms | tokens %zu\n", s->lag.p99, s->lag.max, s->tokens);
}

int lg_write_outputs(void)
{
    int rc = 0;
    int64_t *scratch = rp_xmalloc((lg_nresults + 1) * sizeof *scratch);
    struct lg_summary *sums = rp_xcalloc(lg_cfg.nphases + 1, sizeof *sums);
    for (size_t i = 0; i < lg_cfg.nphases; i++)
        summarise((int)i, &sums[i], scratch);
    summarise(-1, &sums[lg_cfg.nphases], scratch);

    if (lg_cfg.csv_path) {
        FILE *f = fopen(lg_cfg.csv_path, "w");
        if (!f) {
            rp_log_errno(errno, "open %s", lg_cfg.csv_path);
            rc = 1;
        } else {
            fprintf(f, "start_s,phase,tenant,priority,max_tokens,status,headers_ms,ttft_ms,total_ms,tokens,gave_up,"
                       "error,lag_ms\n");
            for (size_t i = 0; i < lg_nresults; i++) {
                const struct lg_result *x = &lg_results[i];
                fprintf(f, "%.6f,%d,%s,%s,%d,%d,", (double)x->sched_us / 1e6, x->phase + 1,
                        x->tenant >= 0 ? lg_cfg.tenants.name[x->tenant] : "",
                        x->prio >= 0 ? lg_cfg.prios.name[x->prio] : "", x->max_tokens, x->status);
                const int64_t t[3] = {x->hdr_us, x->ttft_us, x->total_us};
                for (int k = 0; k < 3; k++) {
                    if (t[k] >= 0)
                        fprintf(f, "%.3f,", (double)t[k] / 1000.0);
                    else
                        fputc(',', f);
                }
                fprintf(f, "%d,%d,", x->tokens, x->gave_up ? 1 : 0);
                if (x->err == LG_E_CONNECT || x->err == LG_E_IO)
                    fprintf(f, "%s:%s", lg_err_name[x->err], x->err_errno ? strerrorname_np(x->err_errno) : "");
                else
                    fputs(lg_err_name[x->err], f);
                fprintf(f, ",%.3f\n", (double)x->lag_us / 1000.0);
            }
            if (fclose(f) != 0) {
                rp_log_errno(errno, "write %s", lg_cfg.csv_path);
                rc = 1;
            }
        }
    }
    if (lg_cfg.json_path) {
        FILE *f = fopen(lg_cfg.json_path, "w");
        if (!f) {
            rp_log_errno(errno, "open %s", lg_cfg.json_path);
            rc = 1;
        } else {
            fprintf(f, "{\"url\":\"");
            for (const char *p = lg_cfg.url; *p; p++) {
                if (*p == '"' || *p == '\\')
                    fputc('\\', f);
                fputc(*p, f);
            }
            fprintf(f,
                    "\",\"arrivals\":\"%s\",\"base_rate\":%g,\"stream\":%s,\"give_up_s\":%g,\"slo_ttft_s\":%g,"
                    "\"slo_total_s\":%g,\"interrupted\":%s,\"phases\":[",
                    lg_cfg.poisson ? "poisson" : "fixed", lg_cfg.rate, lg_cfg.stream ? "true" : "false",
                    lg_cfg.give_up_s, lg_cfg.slo_ttft_s, lg_cfg.slo_total_s, lg.interrupted ? "true" : "false");
            for (size_t i = 0; i < lg_cfg.nphases; i++) {
                if (i)
                    fputc(',', f);
                json_summary(f, &sums[i], (int)i);
            }
            fprintf(f, "],\"total\":");
            json_summary(f, &sums[lg_cfg.nphases], -1);
            fprintf(f, "}\n");
            if (fclose(f) != 0) {
                rp_log_errno(errno, "write %s", lg_cfg.json_path);
                rc = 1;
            }
        }
    }
    if (!lg_cfg.quiet) {
        printf("loadgen: %s, %s arrivals, base rate %g/s, %s%s", lg_cfg.url, lg_cfg.poisson ? "Poisson" : "fixed-rate",
               lg_cfg.rate, lg_cfg.stream ? "streaming" : "non-streaming", lg_cfg.keepalive ? ", keep-alive" : "");
        if (lg_cfg.give_up_s > 0)
            printf(", give-up %gs", lg_cfg.give_up_s);
        if (lg_cfg.slo_ttft_s > 0)
            printf(", SLO TTFT <= %gs", lg_cfg.slo_ttft_s);
        if (lg_cfg.slo_total_s > 0)
            printf(", SLO total <= %gs", lg_cfg.slo_total_s);
        printf("%s\n", lg.interrupted ? " (interrupted)" : "");
        printf("%-9s %6s %9s %8s %8s %8s %7s %8s %8s %8s %8s %8s %8s %7s %7s\n", "phase", "dur_s", "offered/s", "sent",
               "ok/s", "good/s", "good%", "ttft50", "ttft90", "ttft99", "tot50", "tot90", "tot99", "gaveup", "errors");
        for (size_t i = 0; i < lg_cfg.nphases; i++)
            print_row(&sums[i], (int)i);
        print_row(&sums[lg_cfg.nphases], -1);
        printf("(ok/s, good/s: completions finishing inside the phase; good%%: share of the phase's arrivals\n"
               " that were good = 2xx and complete%s; latencies in ms from the scheduled arrival)\n",
               lg_cfg.slo_ttft_s > 0 || lg_cfg.slo_total_s > 0 ? " within the SLO" : "");
        for (size_t i = 0; i < lg_cfg.nphases; i++)
            print_status_line(&sums[i], (int)i);
        print_status_line(&sums[lg_cfg.nphases], -1);
    }
    free(sums);
    free(scratch);
    return rc;
}

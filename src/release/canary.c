/*
 * canary.c — the canary's traffic split and rollout state machine: steps,
 * promotion, rollback, manual control, events and stored verdicts (see
 * canary.h for the decision rule and why).  The statistics and the sample
 * window are in canary_stats.c, the state document and the metrics in
 * canary_render.c, the config section in canary_conf.c.
 *
 * The state machine is small:
 *
 *   RUNNING --regression (auto_rollback)--> ROLLED_BACK --resume--> RUNNING (step 0)
 *   RUNNING --step passed--> RUNNING (next step) ... --> PROMOTED (100%)
 *   RUNNING <--pause/resume--> PAUSED (analysis and rollback continue)
 *   any --set_weight--> PAUSED (or PROMOTED at 100%)
 */
#include "canary_int.h"
#include "ev.h"
#include "server.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *canary_state_name(enum canary_state s)
{
    switch (s) {
    case CANARY_RUNNING: return "running";
    case CANARY_PAUSED: return "paused";
    case CANARY_ROLLED_BACK: return "rolled_back";
    case CANARY_PROMOTED: return "promoted";
    }
    return "?";
}

int canary_state_from_name(const char *name, enum canary_state *out)
{
    for (int i = 0; i < CANARY_STATES; i++) {
        if (strcmp(name, canary_state_name((enum canary_state)i)) == 0) {
            *out = (enum canary_state)i;
            return RP_OK;
        }
    }
    return RP_ERR;
}

const char *canary_decision_name(enum canary_decision d)
{
    switch (d) {
    case CANARY_CONTINUE: return "continue";
    case CANARY_PROMOTE: return "promote";
    case CANARY_ROLLBACK: return "rollback";
    }
    return "?";
}

static void emit(struct canary *c, const char *action, const char *source, unsigned from_bp, const char *reason,
                 uint64_t now_us)
{
    struct canary_event *ev = &c->events[c->next_event];
    c->next_event = (c->next_event + 1) % CANARY_EVENTS;
    if (c->num_events < CANARY_EVENTS)
        c->num_events++;
    memset(ev, 0, sizeof *ev);
    ev->wall_ms = rp_wall_ms();
    ev->at_us = now_us;
    rp_snprintf(ev->action, sizeof ev->action, "%s", action);
    rp_snprintf(ev->source, sizeof ev->source, "%s", source);
    ev->from_bp = from_bp;
    ev->to_bp = c->weight_bp;
    /* Truncation of an over-long reason is fine: it is a message.  But
     * not inside a character: the reason is served as JSON. */
    snprintf(ev->reason, sizeof ev->reason, "%s", reason ? reason : "");
    ev->reason[rp_utf8_prefix(ev->reason, sizeof ev->reason)] = '\0';
    bool restore = strcmp(action, "restore") == 0;
    if (!restore) {
        c->state_since_ms = ev->wall_ms;
        c->restored = false;
    }

    /* One JSON line on stderr, like the access log: machine-readable. */
    struct sbuf line;
    sbuf_init(&line, 4096);
    char ts[48];
    canary_iso_time(ev->wall_ms, ts, sizeof ts);
    sbuf_printf(&line, "{\"ts\":\"%s\",\"level\":\"info\",\"event\":\"canary\",\"upstream\":\"", ts);
    sbuf_json_str(&line, c->upstream, strlen(c->upstream));
    sbuf_printf(&line, "\",\"action\":\"%s\",\"source\":\"%s\",\"state\":\"%s\",\"from_weight\":", ev->action,
                ev->source, canary_state_name(c->state));
    canary_weight_json(&line, ev->from_bp);
    sbuf_adds(&line, ",\"to_weight\":");
    canary_weight_json(&line, ev->to_bp);
    sbuf_adds(&line, ",\"reason\":\"");
    sbuf_json_str(&line, ev->reason, strlen(ev->reason));
    sbuf_adds(&line, "\"}\n");
    if (line.data)
        fwrite(line.data, 1, line.len, stderr);
    sbuf_free(&line);
    if (c->cb)
        c->cb(c->cb_arg, c, ev);
    /* The start is no verdict, and a restore is the stored one already. */
    if (c->vcb && !restore && strcmp(action, "start") != 0) {
        struct canary_verdict v;
        memset(&v, 0, sizeof v);
        memcpy(v.release, c->release, sizeof v.release);
        v.state = c->state;
        v.weight_bp = c->weight_bp;
        memcpy(v.source, ev->source, sizeof v.source);
        memcpy(v.reason, ev->reason, sizeof v.reason);
        v.wall_ms = ev->wall_ms;
        c->vcb(c->vcb_arg, c, &v);
    }
}

/* ---- lifecycle ---- */

static unsigned planned_looks(const struct canary_conf *conf)
{
    uint64_t per_step = (conf->step_duration_us + conf->interval_us - 1) / conf->interval_us;
    uint64_t k = per_step * (conf->num_steps > 1 ? conf->num_steps - 1 : 1);
    return (unsigned)RP_MAX(RP_MIN(k, (uint64_t)1000000), (uint64_t)1);
}

/* A new exposure (the weight changed): samples at the old weight are not
 * comparable (see canary.h), so the window and step counters restart. */
static void begin_exposure(struct canary *c, uint64_t now_us)
{
    memset(c->buckets, 0, sizeof c->buckets);
    c->step_started_us = now_us;
    c->step_requests = 0;
    memset(c->step_n, 0, sizeof c->step_n);
    memset(c->step_err, 0, sizeof c->step_err);
    c->tpot_judged_in_step = false;
    c->next_analysis_us = now_us + c->conf.interval_us;
}

/* A new rollout attempt: also forget the looks already spent. */
static void reset_rollout(struct canary *c)
{
    c->looks = 0;
    c->regression_flagged = false;
    memset(&c->last, 0, sizeof c->last);
}

static void enter_step(struct canary *c, size_t step, uint64_t now_us)
{
    c->step = step;
    c->weight_bp = c->conf.steps_bp[step];
    begin_exposure(c, now_us);
    if (c->weight_bp >= CANARY_WEIGHT_MAX)
        c->state = CANARY_PROMOTED;
}

struct canary *canary_new(const char *upstream, const struct canary_conf *conf, uint64_t now_us)
{
    struct canary *c = rp_xcalloc(1, sizeof *c);
    rp_snprintf(c->upstream, sizeof c->upstream, "%s", upstream ? upstream : "");
    c->conf = *conf;
    if (c->conf.num_steps == 0 || c->conf.num_steps > CANARY_MAX_STEPS) {
        struct canary_conf d = CANARY_CONF_DEFAULT;
        memcpy(c->conf.steps_bp, d.steps_bp, sizeof d.steps_bp);
        c->conf.num_steps = d.num_steps;
    }
    if (c->conf.interval_us == 0)
        c->conf.interval_us = 1;
    if (c->conf.window_us < CANARY_BUCKETS)
        c->conf.window_us = CANARY_BUCKETS;
    c->bucket_us = c->conf.window_us / CANARY_BUCKETS;
    /* A conf built in code before tpot_ratio existed has 0 there: follow
     * latency_ratio rather than divide by zero. */
    if (!(c->conf.tpot_ratio >= 1.0))
        c->conf.tpot_ratio = c->conf.latency_ratio >= 1.0 ? c->conf.latency_ratio : 1.0;
    if (!(c->conf.latency_ratio >= 1.0))
        c->conf.latency_ratio = 1.0;
    c->planned_looks = planned_looks(&c->conf);
    /* A fixed seed per upstream keeps runs reproducible; reservoir
     * sampling needs uniformity, not secrecy. */
    c->rng = rp_hash64(c->upstream, strlen(c->upstream)) | 1u;
    /* A label names the release on its own; without one the servers do,
     * which only the owner of the config knows (canary_set_release). */
    if (c->conf.release[0])
        canary_set_release(c, c->conf.release);
    c->state = CANARY_RUNNING;
    enter_step(c, 0, now_us);
    c->next_analysis_us = now_us + c->conf.interval_us;
    char why[CANARY_REASON_MAX];
    rp_snprintf(why, sizeof why, "rollout of %zu steps, %u planned looks, alpha %g", c->conf.num_steps,
                c->planned_looks, c->conf.alpha);
    emit(c, "start", "auto", 0, why, now_us);
    return c;
}

void canary_free(struct canary *c)
{
    if (!c)
        return;
    if (c->set) {
        struct canary **p = &c->set->head;
        while (*p && *p != c)
            p = &(*p)->next_in_set;
        /* c->set is only ever set by canary_set_add, which linked c. */
        RP_ASSERT(*p == c);
        if (*p)
            *p = c->next_in_set;
    }
    free(c);
}

/* ---- the owner's set ---- */

void canary_set_init(struct canary_set *set, struct ev_loop *loop)
{
    set->head = NULL;
    set->loop = loop;
}

void canary_set_add(struct canary_set *set, struct canary *c)
{
    if (!c)
        return;
    RP_ASSERT(!c->set);
    c->set = set;
    c->next_in_set = set->head;
    set->head = c;
}

struct canary *canary_set_find(const struct canary_set *set, const char *upstream, size_t len)
{
    for (struct canary *c = set ? set->head : NULL; c; c = c->next_in_set)
        if (strlen(c->upstream) == len && memcmp(c->upstream, upstream, len) == 0)
            return c;
    return NULL;
}

uint64_t canary_set_now(const struct canary_set *set)
{
    return set && set->loop ? ev_now(set->loop) : rp_now_us();
}

void canary_set_event_cb(struct canary *c, canary_event_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
}

/* ---- release identity and stored verdicts ---- */

static int cmp_server_ref(const void *a, const void *b)
{
    const struct canary_server_ref *x = a, *y = b;
    int d = strcmp(x->address ? x->address : "", y->address ? y->address : "");
    if (d)
        return d;
    return (x->weight > y->weight) - (x->weight < y->weight);
}

void canary_release_id(const char *label, const struct canary_server_ref *servers, size_t n,
                       char out[CANARY_RELEASE_MAX])
{
    if (label && label[0]) {
        rp_snprintf(out, CANARY_RELEASE_MAX, "%s", label);
        out[rp_utf8_prefix(out, CANARY_RELEASE_MAX)] = '\0';
        return;
    }
    /* Sorted, so that reordering the servers in the file is not a new
     * release; FNV-1a over "address\0weight\n" lines, incrementally. */
    struct canary_server_ref *v = n ? rp_xcalloc(n, sizeof *v) : NULL;
    if (n) {
        memcpy(v, servers, n * sizeof *v);
        qsort(v, n, sizeof *v, cmp_server_ref);
    }
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        char w[16];
        const char *a = v[i].address ? v[i].address : "";
        int wl = rp_snprintf(w, sizeof w, "%u\n", v[i].weight);
        for (size_t k = 0; k <= strlen(a); k++) /* the NUL separates address and weight */
            h = (h ^ (unsigned char)a[k]) * 1099511628211ull;
        for (int k = 0; k < wl; k++)
            h = (h ^ (unsigned char)w[k]) * 1099511628211ull;
    }
    free(v);
    rp_snprintf(out, CANARY_RELEASE_MAX, "servers-%016llx", (unsigned long long)h);
}

void canary_set_release(struct canary *c, const char *release_id)
{
    rp_snprintf(c->release, sizeof c->release, "%s", release_id ? release_id : "");
}

void canary_name_release(struct canary *c, const struct server_conf *servers, size_t n)
{
    struct canary_server_ref refs[CANARY_MAX_SERVERS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (servers[i].group != SERVER_GROUP_CANARY)
            continue;
        RP_ASSERT(k < RP_ARRAY_LEN(refs));
        if (k >= RP_ARRAY_LEN(refs))
            break;
        refs[k++] = (struct canary_server_ref){.address = servers[i].addr.text, .weight = servers[i].weight};
    }
    char id[CANARY_RELEASE_MAX];
    canary_release_id(c->conf.release, refs, k, id);
    canary_set_release(c, id);
}

void canary_set_verdict_cb(struct canary *c, canary_verdict_cb cb, void *arg)
{
    c->vcb = cb;
    c->vcb_arg = arg;
}

/* ---- split ---- */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finalizer: FNV's low digits are not uniform enough for a
     * mod-10000 split of similar tenant keys. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

int canary_pick_group(const struct canary *c, uint64_t tenant_hash)
{
    if (!c || c->weight_bp == 0)
        return CANARY_STABLE;
    return mix64(tenant_hash) % CANARY_WEIGHT_MAX < c->weight_bp ? CANARY_CANARY : CANARY_STABLE;
}

static void do_rollback(struct canary *c, const char *source, const char *reason, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    c->weight_bp = 0;
    c->state = CANARY_ROLLED_BACK;
    rp_snprintf(c->reason, sizeof c->reason, "%s", reason);
    if (strcmp(source, "auto") == 0)
        c->rollbacks_auto_total++;
    else
        c->rollbacks_admin_total++;
    emit(c, "rollback", source, from, reason, now_us);
}

static void advance(struct canary *c, const char *source, const char *reason, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    if (c->step + 1 >= c->conf.num_steps)
        return;
    enter_step(c, c->step + 1, now_us);
    c->promotions_total++;
    emit(c, "promote", source, from, reason, now_us);
}

static void describe_regression(const struct canary *c, const struct canary_analysis *a, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    if (a->err_regressed) {
        /* A truncated message is still a useful message. */
        rp_snprintf(buf, cap,
                    "error ratio %.2f%% (n=%llu) vs stable %.2f%% (n=%llu): +%.2f pp (95%% bound +%.2f pp >= %.2f "
                    "pp), p=%.2g < %.2g (%s)",
                    a->err_ratio[1] * 100.0, (unsigned long long)a->requests[1], a->err_ratio[0] * 100.0,
                    (unsigned long long)a->requests[0], a->err_diff * 100.0, a->err_lower * 100.0,
                    c->conf.error_margin * 100.0, a->err_p, a->alpha_test, a->err_exact ? "Fisher exact" : "z-test");
        len = strlen(buf);
    }
    if (a->ttft_regressed && len + 3 < cap) {
        rp_snprintf(buf + len, cap - len,
                    "%sTTFT median %.0f ms vs stable %.0f ms (x%.2f), Mann-Whitney p=%.2g < %.2g, slower than x%.2f "
                    "with p=%.2g",
                    len ? "; " : "", a->ttft_median_us[1] / 1000.0, a->ttft_median_us[0] / 1000.0, a->ttft_ratio,
                    a->ttft_p, a->alpha_test, c->conf.latency_ratio, a->ttft_margin_p);
        len = strlen(buf);
    }
    /* Per-token times are a few ms: one decimal more than TTFT. */
    if (a->tpot_regressed && len + 3 < cap)
        rp_snprintf(buf + len, cap - len,
                    "%sTPOT median %.1f ms vs stable %.1f ms (x%.2f), Mann-Whitney p=%.2g < %.2g, slower than x%.2f "
                    "with p=%.2g",
                    len ? "; " : "", a->tpot_median_us[1] / 1000.0, a->tpot_median_us[0] / 1000.0, a->tpot_ratio,
                    a->tpot_p, a->alpha_test, c->conf.tpot_ratio, a->tpot_margin_p);
}

enum canary_decision canary_tick(struct canary *c, uint64_t now_us)
{
    if (!c || (c->state != CANARY_RUNNING && c->state != CANARY_PAUSED))
        return CANARY_CONTINUE;
    if (now_us < c->next_analysis_us)
        return CANARY_CONTINUE;
    c->next_analysis_us = now_us + c->conf.interval_us;
    if (c->weight_bp == 0 || c->weight_bp >= CANARY_WEIGHT_MAX)
        return CANARY_CONTINUE; /* no split to compare */

    struct canary_analysis *a = &c->last;
    canary_analyze(c, now_us, a);
    enum canary_decision d = CANARY_CONTINUE;
    if (a->err_regressed || a->ttft_regressed || a->tpot_regressed) {
        char why[CANARY_REASON_MAX];
        describe_regression(c, a, why, sizeof why);
        rp_snprintf(a->reason, sizeof a->reason, "%s", why);
        if (c->conf.auto_rollback) {
            d = CANARY_ROLLBACK;
            do_rollback(c, "auto", why, now_us);
        } else if (!c->regression_flagged) {
            unsigned from = c->weight_bp;
            c->regression_flagged = true;
            c->state = CANARY_PAUSED;
            rp_snprintf(c->reason, sizeof c->reason, "regression (auto_rollback off): %s", why);
            emit(c, "regression", "auto", from, c->reason, now_us);
        }
    } else {
        uint64_t in_step = now_us - c->step_started_us;
        bool no_ttft = a->ttft_n[0] == 0 && a->ttft_n[1] == 0;
        if (!a->err_judged || !(a->ttft_judged || no_ttft)) {
            rp_snprintf(a->reason, sizeof a->reason,
                        "waiting for samples: requests %llu/%llu, TTFT samples %zu/%zu (need %u per group)",
                        (unsigned long long)a->requests[1], (unsigned long long)a->requests[0], a->ttft_n[1],
                        a->ttft_n[0], c->conf.min_samples);
        } else {
            char tpot[64];
            if (a->tpot_judged)
                rp_snprintf(tpot, sizeof tpot, "TPOT x%.2f (p=%.2g)", a->tpot_ratio, a->tpot_p);
            else
                rp_snprintf(tpot, sizeof tpot, "TPOT not judged (%zu/%zu samples)", a->tpot_n[1], a->tpot_n[0]);
            rp_snprintf(a->reason, sizeof a->reason,
                        "no regression: errors %+.2f pp (p=%.2g, bound %+.2f pp), TTFT x%.2f (p=%.2g), %s; %s",
                        a->err_diff * 100.0, a->err_p, a->err_upper * 100.0, a->ttft_ratio, a->ttft_p, tpot,
                        a->within_margins ? "within margins" : "not yet shown within margins");
        }
        if (c->state == CANARY_RUNNING && a->within_margins && in_step >= c->conf.step_duration_us &&
            c->step_requests >= c->conf.min_samples) {
            char why[CANARY_REASON_MAX];
            rp_snprintf(why, sizeof why, "step %zu (%g%%) passed: %llu s, %llu canary requests, %s", c->step + 1,
                        (double)c->weight_bp / 100.0, (unsigned long long)(in_step / 1000000u),
                        (unsigned long long)c->step_requests, a->reason);
            d = CANARY_PROMOTE;
            advance(c, "auto", why, now_us);
        }
    }
    a->decision = d;
    c->decisions_total[d]++;
    return d;
}

/* ---- manual control ---- */

int canary_pause(struct canary *c, uint64_t now_us)
{
    if (c->state == CANARY_PAUSED)
        return RP_OK;
    if (c->state != CANARY_RUNNING) {
        c->last_error = "the rollout is not running";
        return RP_ERR;
    }
    c->state = CANARY_PAUSED;
    rp_snprintf(c->reason, sizeof c->reason, "paused by admin");
    emit(c, "pause", "admin", c->weight_bp, c->reason, now_us);
    return RP_OK;
}

int canary_resume(struct canary *c, uint64_t now_us)
{
    unsigned from = c->weight_bp;
    switch (c->state) {
    case CANARY_RUNNING: return RP_OK;
    case CANARY_PROMOTED: c->last_error = "the canary is already promoted"; return RP_ERR;
    case CANARY_ROLLED_BACK:
        /* A new attempt (e.g. after a fixed release was deployed): judge
         * it on its own samples, from the first step. */
        reset_rollout(c);
        c->state = CANARY_RUNNING;
        enter_step(c, 0, now_us);
        break;
    case CANARY_PAUSED: {
        c->state = CANARY_RUNNING;
        c->regression_flagged = false;
        size_t s = 0;
        for (size_t i = 0; i < c->conf.num_steps; i++)
            if (c->conf.steps_bp[i] <= c->weight_bp)
                s = i;
        if (c->weight_bp < c->conf.steps_bp[0]) {
            enter_step(c, 0, now_us);
        } else {
            /* Keep the weight the admin chose (the samples are already at
             * that weight); the next promotion goes to the step above. */
            c->step = s;
            c->step_started_us = now_us;
        }
        break;
    }
    }
    c->reason[0] = '\0';
    c->next_analysis_us = now_us + c->conf.interval_us;
    emit(c, "resume", "admin", from, "resumed by admin", now_us);
    return RP_OK;
}

int canary_rollback(struct canary *c, const char *reason, uint64_t now_us)
{
    if (c->state == CANARY_ROLLED_BACK)
        return RP_OK;
    char why[CANARY_REASON_MAX];
    snprintf(why, sizeof why, "rolled back by admin%s%s", reason && reason[0] ? ": " : "", reason ? reason : "");
    why[rp_utf8_prefix(why, sizeof why)] = '\0'; /* an operator's text may be cut inside a character */
    do_rollback(c, "admin", why, now_us);
    return RP_OK;
}

int canary_promote(struct canary *c, uint64_t now_us)
{
    if (c->state == CANARY_PROMOTED) {
        c->last_error = "the canary is already promoted";
        return RP_ERR;
    }
    if (c->state == CANARY_ROLLED_BACK) {
        c->last_error = "the canary was rolled back: resume to start the rollout again";
        return RP_ERR;
    }
    /* The first step above the current weight (after set_weight the
     * weight may sit between steps). */
    size_t next = c->conf.num_steps - 1;
    for (size_t i = 0; i < c->conf.num_steps; i++) {
        if (c->conf.steps_bp[i] > c->weight_bp) {
            next = i;
            break;
        }
    }
    unsigned from = c->weight_bp;
    enter_step(c, next, now_us);
    c->promotions_total++;
    emit(c, "promote", "admin", from, "promoted by admin", now_us);
    return RP_OK;
}

int canary_set_weight(struct canary *c, unsigned weight_bp, uint64_t now_us)
{
    if (weight_bp > CANARY_WEIGHT_MAX) {
        c->last_error = "weight must be between 0 and 100";
        return RP_ERR;
    }
    unsigned from = c->weight_bp;
    if (c->state == CANARY_ROLLED_BACK && weight_bp > 0)
        reset_rollout(c); /* a new attempt */
    size_t s = 0;
    for (size_t i = 0; i < c->conf.num_steps; i++)
        if (c->conf.steps_bp[i] <= weight_bp)
            s = i;
    c->step = s;
    if (weight_bp != c->weight_bp)
        begin_exposure(c, now_us);
    c->weight_bp = weight_bp;
    c->state = weight_bp >= CANARY_WEIGHT_MAX ? CANARY_PROMOTED : CANARY_PAUSED;
    rp_snprintf(c->reason, sizeof c->reason, "weight set by admin");
    char why[64];
    rp_snprintf(why, sizeof why, "weight set to %g%% by admin", (double)weight_bp / 100.0);
    emit(c, "set_weight", "admin", from, why, now_us);
    return RP_OK;
}

bool canary_restore(struct canary *c, const struct canary_verdict *v, uint64_t now_us)
{
    if (!c || !v || !c->release[0] || strcmp(v->release, c->release) != 0)
        return false;
    unsigned from = c->weight_bp;
    switch (v->state) {
    case CANARY_RUNNING: return false;
    case CANARY_ROLLED_BACK:
        reset_rollout(c);
        c->state = CANARY_ROLLED_BACK;
        c->step = 0;
        c->weight_bp = 0;
        begin_exposure(c, now_us);
        break;
    case CANARY_PROMOTED:
        reset_rollout(c);
        enter_step(c, c->conf.num_steps - 1, now_us);
        break;
    case CANARY_PAUSED: {
        /* Held by an operator (or by a regression with auto_rollback off):
         * the hold survives; fresh samples at that weight. */
        unsigned w = RP_MIN(v->weight_bp, CANARY_WEIGHT_MAX);
        reset_rollout(c);
        if (w >= CANARY_WEIGHT_MAX) {
            enter_step(c, c->conf.num_steps - 1, now_us);
            break;
        }
        size_t st = 0;
        for (size_t i = 0; i < c->conf.num_steps; i++)
            if (c->conf.steps_bp[i] <= w)
                st = i;
        c->step = st;
        c->weight_bp = w;
        c->state = CANARY_PAUSED;
        c->regression_flagged = true; /* a regression pause is logged once, also across restarts */
        begin_exposure(c, now_us);
        break;
    }
    default: return false;
    }
    rp_snprintf(c->reason, sizeof c->reason, "%s", v->reason);
    c->restored = true;
    char ts[48], why[CANARY_REASON_MAX];
    canary_iso_time(v->wall_ms, ts, sizeof ts);
    rp_snprintf(why, sizeof why, "%s since %s (%s), kept across a restart", canary_state_name(c->state), ts,
                v->source[0] ? v->source : "auto");
    emit(c, "restore", "auto", from, why, now_us);
    c->state_since_ms = v->wall_ms;
    return true;
}

/*
 * retry.c — retry rules and the per-upstream retry budget.
 *
 * The budget is a ring of RETRY_BUCKETS counters covering the window; a
 * slot is reused when its bucket number is older than the window, so the
 * structure is fixed-size and every operation is O(RETRY_BUCKETS) at worst.
 * The newest bucket is partly filled, so the effective window is between
 * (B-1)/B and 1 times the configured one; both the requests and the retries
 * see the same window, so the ratio is unbiased.
 *
 * Only original requests feed the budget: counting retries as requests
 * would let retries earn more retries, which is the loop a budget exists to
 * break.
 */
#include "retry.h"
#include "ev.h"
#include "metrics.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void retry_conf_default(struct retry_conf *c)
{
    *c = (struct retry_conf)RETRY_CONF_DEFAULT;
}

/* One row per key, in the order the "unknown key" message lists them.
 * Defaults are RETRY_CONF_DEFAULT's (test_retry checks they agree).  The
 * window's bounds are checked below with their own message. */
const struct conf_field retry_conf_fields[] = {
    CONF_FIELD_FRACTION("budget", struct retry_conf, budget, 1.0, 0.1),
    CONF_FIELD_DOUBLE("min_per_second", struct retry_conf, min_per_second, 0.0, 1000000.0, 1.0),
    CONF_FIELD_UINT("max_per_request", struct retry_conf, max_per_request, 0, 10, 2),
    CONF_FIELD_DURATION("window", struct retry_conf, window_us, 0, UINT64_MAX, 10000000u),
    CONF_FIELD_END,
};

int retry_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct retry_conf *out)
{
    if (!node)
        return RP_OK;
    uint64_t old_window = out->window_us;
    int rc = conf_fields_parse(doc, node, retry_conf_fields, out);
    if (rc != RP_OK && node->kind != CONF_MAP)
        return rc;
    const struct conf_node *w = conf_get(node, "window");
    if (w && (out->window_us < 1000000u || out->window_us > 3600000000u)) {
        conf_error(doc, w, "retry window must be between 1s and 1h");
        out->window_us = old_window;
        rc = RP_ERR;
    }
    return rc;
}

const char *retry_verdict_name(enum retry_verdict v)
{
    switch (v) {
    case RETRY_YES: return "retry";
    case RETRY_NO_STARTED: return "response_started";
    case RETRY_NO_BODY: return "body_not_replayable";
    case RETRY_NO_KIND: return "not_retryable";
    case RETRY_NO_PER_REQUEST: return "max_per_request";
    case RETRY_NO_BUDGET: return "budget_exhausted";
    }
    return "?";
}

const char *retry_failure_name(enum retry_failure f)
{
    switch (f) {
    case RETRY_FAIL_CONNECT: return "connect";
    case RETRY_FAIL_CONNECT_TIMEOUT: return "connect_timeout";
    case RETRY_FAIL_STATUS_503: return "status_503";
    case RETRY_FAIL_STATUS_5XX: return "status_5xx";
    case RETRY_FAIL_RESET: return "reset";
    case RETRY_FAIL_TIMEOUT: return "timeout";
    }
    return "?";
}

bool retry_method_idempotent(const char *m, size_t len)
{
    /* Methods are case-sensitive (RFC 9110 9.1). */
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < RP_ARRAY_LEN(idem); i++)
        if (strlen(idem[i]) == len && memcmp(idem[i], m, len) == 0)
            return true;
    return false;
}

enum retry_verdict retry_check(const struct retry_conf *c, const struct retry_request *r)
{
    if (r->response_started)
        return RETRY_NO_STARTED;
    if (!r->body_replayable)
        return RETRY_NO_BODY;
    switch (r->failure) {
    case RETRY_FAIL_CONNECT:
    case RETRY_FAIL_CONNECT_TIMEOUT:
    case RETRY_FAIL_STATUS_503: break;
    case RETRY_FAIL_RESET:
        if (!r->idempotent)
            return RETRY_NO_KIND;
        break;
    case RETRY_FAIL_STATUS_5XX:
    case RETRY_FAIL_TIMEOUT:
    default: return RETRY_NO_KIND;
    }
    if (r->retries_done >= c->max_per_request)
        return RETRY_NO_PER_REQUEST;
    return RETRY_YES;
}

struct retry_budget *retry_budget_new(const char *upstream, const struct retry_conf *conf)
{
    struct retry_budget *b = rp_xcalloc(1, sizeof *b);
    rp_snprintf(b->upstream, sizeof b->upstream, "%s", upstream ? upstream : "");
    b->conf = *conf;
    if (b->conf.window_us < RETRY_BUCKETS)
        b->conf.window_us = RETRY_BUCKETS;
    b->bucket_us = b->conf.window_us / RETRY_BUCKETS;
    return b;
}

void retry_budget_free(struct retry_budget *b)
{
    if (!b)
        return;
    if (b->set) {
        struct retry_budget **p = &b->set->head;
        while (*p && *p != b)
            p = &(*p)->next_in_set;
        /* b->set is only ever set by retry_set_add, which linked b. */
        RP_ASSERT(*p == b);
        if (*p)
            *p = b->next_in_set;
    }
    free(b);
}

void retry_set_init(struct retry_set *set, struct ev_loop *loop)
{
    set->head = NULL;
    set->loop = loop;
}

void retry_set_add(struct retry_set *set, struct retry_budget *b)
{
    if (!b)
        return;
    RP_ASSERT(!b->set);
    b->set = set;
    b->next_in_set = set->head;
    set->head = b;
}

/* The slot for now, cleared if it held an older bucket.  Epochs are stored
 * +1 so a zeroed slot never matches bucket 0. */
static size_t slot_for(struct retry_budget *b, uint64_t now_us)
{
    uint64_t e = now_us / b->bucket_us + 1;
    size_t i = (size_t)(e % RETRY_BUCKETS);
    if (b->epoch[i] != e) {
        b->epoch[i] = e;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
    return i;
}

void retry_note_request(struct retry_budget *b, uint64_t now_us)
{
    size_t i = slot_for(b, now_us);
    if (b->requests[i] < UINT32_MAX)
        b->requests[i]++;
    b->requests_total++;
}

void retry_window(const struct retry_budget *b, uint64_t now_us, uint64_t *requests, uint64_t *retries,
                  double *allowance)
{
    uint64_t e = now_us / b->bucket_us + 1, req = 0, ret = 0;
    for (size_t i = 0; i < RETRY_BUCKETS; i++) {
        /* live when within the last RETRY_BUCKETS bucket numbers */
        if (b->epoch[i] != 0 && b->epoch[i] <= e && e - b->epoch[i] < RETRY_BUCKETS) {
            req += b->requests[i];
            ret += b->retries[i];
        }
    }
    if (requests)
        *requests = req;
    if (retries)
        *retries = ret;
    if (allowance)
        *allowance = b->conf.budget * (double)req + b->conf.min_per_second * ((double)b->conf.window_us / 1e6);
}

double retry_budget_used(const struct retry_budget *b, uint64_t now_us)
{
    uint64_t ret;
    double allow;
    retry_window(b, now_us, NULL, &ret, &allow);
    if (allow <= 0.0)
        return ret ? 1.0 : 0.0;
    return (double)ret / allow;
}

enum retry_verdict retry_decide(struct retry_budget *b, const struct retry_request *r, uint64_t now_us)
{
    static const struct retry_conf defaults = RETRY_CONF_DEFAULT;
    enum retry_verdict v = retry_check(b ? &b->conf : &defaults, r);
    if (!b)
        return v;
    if (v != RETRY_YES) {
        b->denied_rule_total++;
        return v;
    }
    uint64_t ret;
    double allow;
    retry_window(b, now_us, NULL, &ret, &allow);
    if ((double)(ret + 1) > allow) {
        b->denied_budget_total++;
        return RETRY_NO_BUDGET;
    }
    size_t i = slot_for(b, now_us);
    if (b->retries[i] < UINT32_MAX)
        b->retries[i]++;
    b->retries_total++;
    return RETRY_YES;
}

static void render_family(struct sbuf *out, const struct retry_budget *head, const char *name, const char *type,
                          const char *help, int which, uint64_t now_us)
{
    metrics_family(out, name, type, help);
    for (const struct retry_budget *b = head; b; b = b->next_in_set) {
        sbuf_printf(out, "%s{upstream=\"", name);
        metrics_label_escape(out, b->upstream);
        sbuf_adds(out, "\"} ");
        switch (which) {
        case 0: sbuf_printf(out, "%llu\n", (unsigned long long)b->requests_total); break;
        case 1: sbuf_printf(out, "%llu\n", (unsigned long long)b->retries_total); break;
        case 2: sbuf_printf(out, "%llu\n", (unsigned long long)b->denied_budget_total); break;
        case 3: sbuf_printf(out, "%llu\n", (unsigned long long)b->denied_rule_total); break;
        default: sbuf_printf(out, "%.6f\n", retry_budget_used(b, now_us)); break;
        }
    }
}

void retry_metrics_render(struct sbuf *out, void *arg)
{
    const struct retry_set *set = arg;
    const struct retry_budget *head = set ? set->head : NULL;
    if (!head)
        return;
    /* The loop's time: the window was filled with it. */
    uint64_t now = set->loop ? ev_now(set->loop) : rp_now_us();
    render_family(out, head, "rampart_retry_requests_total", "counter",
                  "Original requests counted by the retry budget.", 0, now);
    render_family(out, head, "rampart_retry_retries_total", "counter", "Retries made.", 1, now);
    render_family(out, head, "rampart_retry_budget_denied_total", "counter",
                  "Retryable failures not retried because the retry budget was spent.", 2, now);
    render_family(out, head, "rampart_retry_not_retryable_total", "counter",
                  "Failures not retried by rule (response started, body, kind, per-request cap).", 3, now);
    render_family(out, head, "rampart_retry_budget_used_ratio", "gauge",
                  "Retries in the window divided by the retries allowed in the window.", 4, now);
}

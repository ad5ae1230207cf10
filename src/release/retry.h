/*
 * retry.h — when a failed upstream attempt may be retried, and a retry
 * budget per upstream so retries cannot multiply an overload.
 *
 * Two separate questions, answered in this order by retry_decide():
 *
 *  1. Is this failure safe to retry?  Never once a response byte reached
 *     the client (the client would see two responses spliced together),
 *     never when the request body can no longer be replayed, never beyond
 *     max_per_request retries.  Then by failure kind: a connect failure
 *     (refused, unreachable, connect timeout) is always safe, because the
 *     request never reached a server; a 503 from the upstream before any
 *     byte was forwarded is safe, because by convention the server declined
 *     the request without doing it; a reset before the response head is
 *     safe only for idempotent methods (the server may have started the
 *     work); a response timeout or any other 5xx is never retried (the
 *     server may have done the work, and retrying a slow model request is
 *     how a retry storm starts).
 *
 *  2. Is there budget?  Over a sliding window (default 10 s) the upstream
 *     may retry at most budget x original requests (default 10%), plus a
 *     small floor of min_per_second x window so a quiet upstream can still
 *     recover an isolated connect failure.  This is the retry budget of
 *     Linkerd/Envoy and the ~10% client budget of the Google SRE book: under
 *     an overload that fails every request, retries add at most 10% load
 *     instead of multiplying it by (1 + max_per_request).
 *
 * Pure logic: every function takes now_us, nothing reads a clock.
 */
#ifndef RP_RETRY_H
#define RP_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"

#define RETRY_BUCKETS 10
#define RETRY_NAME_MAX 64

struct retry_conf {
    double budget;            /* retries <= budget x requests over the window; default 0.1 */
    double min_per_second;    /* floor of retries/s always allowed; default 1 */
    unsigned max_per_request; /* retries of one request; default 2 (3 attempts) */
    uint64_t window_us;       /* sliding window; default 10s */
};

#define RETRY_CONF_DEFAULT                                                                                             \
    {                                                                                                                  \
        .budget = 0.1, .min_per_second = 1.0, .max_per_request = 2, .window_us = 10000000u                             \
    }

void retry_conf_default(struct retry_conf *c);
/* Parse the `retry:` map of an upstream (node may be NULL: defaults kept).
 * Keys: budget (0..1, or a percentage such as "10%"), min_per_second,
 * max_per_request (0..10), window (duration).  Errors are recorded in doc;
 * returns RP_OK or RP_ERR. */
int retry_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct retry_conf *out);
/* The rows of the section's plain keys (conf.h), for documentation and
 * tests; retry_conf_parse adds the checks that span keys. */
extern const struct conf_field retry_conf_fields[];

/* What went wrong with the attempt. */
enum retry_failure {
    RETRY_FAIL_CONNECT = 0,     /* connect failed: refused, unreachable, reset during connect */
    RETRY_FAIL_CONNECT_TIMEOUT, /* connect did not complete in time */
    RETRY_FAIL_STATUS_503,      /* the upstream answered 503 (head not forwarded yet) */
    RETRY_FAIL_STATUS_5XX,      /* any other 5xx */
    RETRY_FAIL_RESET,           /* connection closed/reset after the request was sent, before the head */
    RETRY_FAIL_TIMEOUT,         /* no response head within the first-byte timeout */
};

/* What the proxy knows about the request when an attempt failed. */
struct retry_request {
    enum retry_failure failure;
    unsigned retries_done; /* retries already made for this request (0 after the first attempt) */
    bool response_started; /* any response byte (head included) reached the client */
    bool idempotent;       /* method is idempotent (retry_method_idempotent) */
    bool body_replayable;  /* no body, or the whole body is still buffered */
};

enum retry_verdict {
    RETRY_YES = 0,        /* retry now, on another server; the retry is counted */
    RETRY_NO_STARTED,     /* response bytes already reached the client */
    RETRY_NO_BODY,        /* the body cannot be replayed */
    RETRY_NO_KIND,        /* this failure kind is not retried */
    RETRY_NO_PER_REQUEST, /* max_per_request reached */
    RETRY_NO_BUDGET,      /* the upstream's retry budget is spent */
};

const char *retry_verdict_name(enum retry_verdict v);
const char *retry_failure_name(enum retry_failure f);

/* GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 9.2.2). */
bool retry_method_idempotent(const char *method, size_t len);

/* The rules without the budget (pure; no counting). */
enum retry_verdict retry_check(const struct retry_conf *c, const struct retry_request *r);

struct retry_budget {
    char upstream[RETRY_NAME_MAX];
    struct retry_conf conf;
    uint64_t bucket_us;            /* window / RETRY_BUCKETS */
    uint64_t epoch[RETRY_BUCKETS]; /* bucket number (now / bucket_us) each slot holds */
    uint32_t requests[RETRY_BUCKETS];
    uint32_t retries[RETRY_BUCKETS];
    /* counters for metrics */
    uint64_t requests_total;
    uint64_t retries_total;
    uint64_t denied_budget_total;
    uint64_t denied_rule_total; /* any other RETRY_NO_* verdict */
    struct retry_set *set;      /* owner's set (retry_set_add), NULL when in none */
    struct retry_budget *next_in_set;
};

/* Create a budget for upstream.  conf is copied. */
struct retry_budget *retry_budget_new(const char *upstream, const struct retry_conf *conf);
/* Leave its set, free. */
void retry_budget_free(struct retry_budget *b);

/* The budgets of one owner (the upstream set), for the metrics renderer:
 * an owner's list rather than a process-wide one, so two owners never
 * render each other's budgets.  loop is the renderer's clock for the
 * window gauges (NULL: the monotonic clock, for tests).  Newest first. */
struct ev_loop;
struct retry_set {
    struct retry_budget *head;
    struct ev_loop *loop;
};

void retry_set_init(struct retry_set *set, struct ev_loop *loop);
/* Put b (may be NULL: nothing) in set; it leaves in retry_budget_free. */
void retry_set_add(struct retry_set *set, struct retry_budget *b);

/* Count one original request (first attempt; never a retry). */
void retry_note_request(struct retry_budget *b, uint64_t now_us);

/* Apply the rules, then the budget.  On RETRY_YES the retry is counted
 * against the budget (call once per retry actually made).  b may be NULL:
 * rules only, no budget (and nothing counted). */
enum retry_verdict retry_decide(struct retry_budget *b, const struct retry_request *r, uint64_t now_us);

/* Window totals and the allowance (budget x requests + floor). */
void retry_window(const struct retry_budget *b, uint64_t now_us, uint64_t *requests, uint64_t *retries,
                  double *allowance);
/* Fraction of the allowance spent in the window (0..1+). */
double retry_budget_used(const struct retry_budget *b, uint64_t now_us);

/* metrics_render_fn: every budget of the struct retry_set *arg. */
void retry_metrics_render(struct sbuf *out, void *arg);

#endif

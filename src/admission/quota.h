/*
 * quota.h — per-tenant budgets: requests per second (or minute) and tokens
 * per minute, as token buckets, with reservation.
 *
 * The request bucket is the classic one: one token per request, refilled
 * at the configured rate, up to the burst.  The token bucket holds a
 * minute's worth of model tokens and refills continuously.  A request
 * *reserves* its worst case at admission — max_tokens (times n) plus the
 * prompt estimate — so a burst of concurrent requests cannot overspend a
 * budget that has not been charged yet (the weakness of gateways that
 * count tokens only after the response).  When the response ends the
 * reservation is settled with what the upstream reports (usage) or with
 * what was streamed, and the difference is refunded (or charged, if the
 * estimate was low).  A request refused later (overload) is cancelled:
 * everything is refunded.
 *
 * Pure logic: every call takes now_us; the state is a few doubles per
 * tenant, embedded in the tenant object.
 */
#ifndef RP_QUOTA_H
#define RP_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct quota_limits {
    double rps;                  /* request refill per second; 0 = unlimited */
    double req_burst;            /* request bucket size (>= 1 when rps > 0) */
    uint64_t tpm;                /* tokens per minute (also the bucket size); 0 = unlimited */
    uint64_t max_tokens_default; /* reserved when a request names no max_tokens */
};

struct quota_state {
    double req;            /* tokens in the request bucket */
    double tok;            /* tokens in the token bucket (may go negative: debt) */
    uint64_t req_t, tok_t; /* last refill */
    bool init;
    uint64_t reserved; /* outstanding reservations (tokens) */
    /* statistics (rendered per tenant) */
    uint64_t admitted, refused_requests, refused_tokens, refused_too_large;
    uint64_t tokens_used; /* settled usage */
};

/* Per request, embedded in the proxy's request object. */
struct quota_ticket {
    uint64_t reserved; /* tokens reserved */
    bool active;
};

enum quota_result {
    QUOTA_OK = 0,
    QUOTA_REQUESTS,  /* request rate exceeded -> 429 */
    QUOTA_TOKENS,    /* token budget exhausted -> 429 */
    QUOTA_TOO_LARGE, /* the request alone exceeds the token budget -> 429, no Retry-After */
};
const char *quota_result_name(enum quota_result r);

/* What the x-ratelimit-* headers and Retry-After say. */
struct quota_info {
    bool has_requests;
    uint64_t limit_requests, remaining_requests, reset_requests_ms;
    bool has_tokens;
    uint64_t limit_tokens, remaining_tokens, reset_tokens_ms;
    uint32_t retry_after_s; /* on refusal; 0 when waiting cannot help */
};

/* Tokens to reserve for a request: max_tokens (or the default when < 0)
 * times n (choices), plus the prompt estimate. */
uint64_t quota_need(const struct quota_limits *lim, int64_t max_tokens, uint32_t n, uint64_t prompt_tokens);

/* Check both buckets and, if both allow, charge one request and need
 * tokens (all or nothing).  Fills info (headers; retry_after on refusal).
 * Returns QUOTA_OK or why not. */
enum quota_result quota_reserve(struct quota_state *st, const struct quota_limits *lim, uint64_t need, uint64_t now_us,
                                struct quota_ticket *t, struct quota_info *info);
/* The response ended: replace the reservation by used tokens. */
void quota_settle(struct quota_state *st, const struct quota_limits *lim, struct quota_ticket *t, uint64_t used,
                  uint64_t now_us);
/* The request never reached the upstream: refund the request and tokens. */
void quota_cancel(struct quota_state *st, const struct quota_limits *lim, struct quota_ticket *t, uint64_t now_us);
/* Current header values without charging (for a successful response). */
void quota_peek(struct quota_state *st, const struct quota_limits *lim, uint64_t now_us, struct quota_info *info);
/* Would the buckets be full now (nothing to remember about this tenant)? */
bool quota_is_full(struct quota_state *st, const struct quota_limits *lim, uint64_t now_us);

/* Duration as OpenAI writes reset times: "250ms", "1s", "1.5s", "6m0s",
 * "1h2m3s".  Returns bytes written or -1 if it did not fit. */
int quota_format_reset(char *buf, size_t cap, uint64_t ms);
/* Append the x-ratelimit-* header lines ("name: value\r\n") for info, and
 * retry-after when with_retry and info->retry_after_s > 0. */
void quota_render_headers(struct sbuf *out, const struct quota_info *info, bool with_retry);

#endif

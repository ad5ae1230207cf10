/*
 * quota.c — token buckets with reservation.  See quota.h.
 *
 * Buckets refill lazily: each call first adds rate * elapsed, capped at
 * the bucket size, so an idle tenant costs nothing.  The token bucket may
 * go below zero when a settled usage exceeds its reservation (the prompt
 * estimate was low); the debt is bounded by one bucket and is repaid by
 * refill before the next reservation passes, which keeps the long-run rate
 * honest without refusing the response that is already on its way.
 */
#include "quota.h"

#include <math.h>
#include <string.h>

#include "util.h"

static const char *const result_names[] = {"ok", "requests", "tokens", "too_large"};

const char *quota_result_name(enum quota_result r)
{
    return (unsigned)r < RP_ARRAY_LEN(result_names) ? result_names[r] : "unknown";
}

static bool req_limited(const struct quota_limits *lim)
{
    return lim->rps > 0.0;
}

static bool tok_limited(const struct quota_limits *lim)
{
    return lim->tpm > 0;
}

static double req_cap(const struct quota_limits *lim)
{
    return lim->req_burst >= 1.0 ? lim->req_burst : 1.0;
}

static double tok_rate_per_us(const struct quota_limits *lim)
{
    return (double)lim->tpm / 60e6;
}

static void refill(struct quota_state *st, const struct quota_limits *lim, uint64_t now_us)
{
    if (!st->init) {
        st->req = req_cap(lim);
        st->tok = (double)lim->tpm;
        st->req_t = st->tok_t = now_us;
        st->init = true;
        return;
    }
    if (now_us > st->req_t) {
        st->req += lim->rps * (double)(now_us - st->req_t) / 1e6;
        if (st->req > req_cap(lim))
            st->req = req_cap(lim);
        st->req_t = now_us;
    }
    if (now_us > st->tok_t) {
        st->tok += tok_rate_per_us(lim) * (double)(now_us - st->tok_t);
        if (st->tok > (double)lim->tpm)
            st->tok = (double)lim->tpm;
        st->tok_t = now_us;
    }
}

static uint64_t ms_ceil(double us)
{
    if (us <= 0)
        return 0;
    return (uint64_t)ceil(us / 1000.0);
}

static void fill_info(const struct quota_state *st, const struct quota_limits *lim, struct quota_info *info)
{
    memset(info, 0, sizeof *info);
    if (req_limited(lim)) {
        double cap = req_cap(lim);
        info->has_requests = true;
        info->limit_requests = (uint64_t)cap;
        info->remaining_requests = st->req > 0 ? (uint64_t)floor(st->req) : 0;
        info->reset_requests_ms = ms_ceil((cap - st->req) / lim->rps * 1e6);
    }
    if (tok_limited(lim)) {
        info->has_tokens = true;
        info->limit_tokens = lim->tpm;
        info->remaining_tokens = st->tok > 0 ? (uint64_t)floor(st->tok) : 0;
        info->reset_tokens_ms = ms_ceil(((double)lim->tpm - st->tok) / tok_rate_per_us(lim));
    }
}

static uint32_t secs_ceil(double us)
{
    double s = ceil(us / 1e6);
    if (s < 1)
        s = 1;
    if (s > 86400)
        s = 86400;
    return (uint32_t)s;
}

uint64_t quota_need(const struct quota_limits *lim, int64_t max_tokens, uint32_t n, uint64_t prompt_tokens)
{
    uint64_t out = max_tokens >= 0 ? (uint64_t)max_tokens : lim->max_tokens_default;
    if (n < 1)
        n = 1;
    /* Saturate instead of wrapping: an absurd max_tokens must refuse, not
     * turn into a small number. */
    if (out > UINT64_MAX / 2 / n)
        return UINT64_MAX / 2;
    out *= n;
    if (prompt_tokens > UINT64_MAX / 2 - out)
        return UINT64_MAX / 2;
    return out + prompt_tokens;
}

enum quota_result quota_reserve(struct quota_state *st, const struct quota_limits *lim, uint64_t need, uint64_t now_us,
                                struct quota_ticket *t, struct quota_info *info)
{
    struct quota_info scratch;
    if (!info)
        info = &scratch;
    refill(st, lim, now_us);
    t->active = false;
    t->reserved = 0;
    enum quota_result r = QUOTA_OK;
    uint32_t retry = 0;
    if (req_limited(lim) && st->req < 1.0) {
        r = QUOTA_REQUESTS;
        retry = secs_ceil((1.0 - st->req) / lim->rps * 1e6);
    }
    if (tok_limited(lim)) {
        if (need > lim->tpm) {
            /* Waiting cannot help: no amount of refill covers it. */
            r = QUOTA_TOO_LARGE;
            retry = 0;
        } else if (st->tok < (double)need) {
            uint32_t rt = secs_ceil(((double)need - st->tok) / tok_rate_per_us(lim));
            if (r == QUOTA_OK)
                r = QUOTA_TOKENS;
            if (rt > retry)
                retry = rt;
        }
    }
    if (r != QUOTA_OK) {
        if (r == QUOTA_REQUESTS)
            st->refused_requests++;
        else if (r == QUOTA_TOKENS)
            st->refused_tokens++;
        else
            st->refused_too_large++;
        fill_info(st, lim, info);
        info->retry_after_s = retry;
        return r;
    }
    if (req_limited(lim))
        st->req -= 1.0;
    if (tok_limited(lim)) {
        st->tok -= (double)need;
        t->reserved = need;
        st->reserved += need;
    }
    t->active = true;
    st->admitted++;
    fill_info(st, lim, info);
    return QUOTA_OK;
}

void quota_settle(struct quota_state *st, const struct quota_limits *lim, struct quota_ticket *t, uint64_t used,
                  uint64_t now_us)
{
    if (!t->active)
        return;
    refill(st, lim, now_us);
    st->tokens_used += used;
    if (tok_limited(lim)) {
        st->tok += (double)t->reserved - (double)used;
        if (st->tok > (double)lim->tpm)
            st->tok = (double)lim->tpm;
        if (st->tok < -(double)lim->tpm)
            st->tok = -(double)lim->tpm;
        st->reserved -= RP_MIN(st->reserved, t->reserved);
    }
    t->active = false;
    t->reserved = 0;
}

void quota_cancel(struct quota_state *st, const struct quota_limits *lim, struct quota_ticket *t, uint64_t now_us)
{
    if (!t->active)
        return;
    refill(st, lim, now_us);
    if (req_limited(lim)) {
        st->req += 1.0;
        if (st->req > req_cap(lim))
            st->req = req_cap(lim);
    }
    if (tok_limited(lim)) {
        st->tok += (double)t->reserved;
        if (st->tok > (double)lim->tpm)
            st->tok = (double)lim->tpm;
        st->reserved -= RP_MIN(st->reserved, t->reserved);
    }
    if (st->admitted)
        st->admitted--;
    t->active = false;
    t->reserved = 0;
}

void quota_peek(struct quota_state *st, const struct quota_limits *lim, uint64_t now_us, struct quota_info *info)
{
    refill(st, lim, now_us);
    fill_info(st, lim, info);
}

bool quota_is_full(struct quota_state *st, const struct quota_limits *lim, uint64_t now_us)
{
    if (!st->init)
        return true;
    refill(st, lim, now_us);
    if (st->reserved > 0)
        return false;
    if (req_limited(lim) && st->req < req_cap(lim))
        return false;
    if (tok_limited(lim) && st->tok < (double)lim->tpm)
        return false;
    return true;
}

int quota_format_reset(char *buf, size_t cap, uint64_t ms)
{
    if (ms < 1000)
        return rp_snprintf(buf, cap, "%llums", (unsigned long long)ms);
    uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char sec[32];
    /* Seconds with up to three decimals, trailing zeros dropped (as Go's
     * time.Duration prints them, which is what OpenAI's headers use). */
    if (frac) {
        int n = rp_snprintf(sec, sizeof sec, "%llu.%03llu", (unsigned long long)s, (unsigned long long)frac);
        while (n > 0 && sec[n - 1] == '0')
            sec[--n] = '\0';
    } else {
        rp_snprintf(sec, sizeof sec, "%llu", (unsigned long long)s);
    }
    if (h)
        return rp_snprintf(buf, cap, "%lluh%llum%ss", (unsigned long long)h, (unsigned long long)m, sec);
    if (m)
        return rp_snprintf(buf, cap, "%llum%ss", (unsigned long long)m, sec);
    return rp_snprintf(buf, cap, "%ss", sec);
}

void quota_render_headers(struct sbuf *out, const struct quota_info *info, bool with_retry)
{
    char d[48];
    if (info->has_requests) {
        quota_format_reset(d, sizeof d, info->reset_requests_ms);
        sbuf_printf(out,
                    "x-ratelimit-limit-requests: %llu\r\nx-ratelimit-remaining-requests: %llu\r\n"
                    "x-ratelimit-reset-requests: %s\r\n",
                    (unsigned long long)info->limit_requests, (unsigned long long)info->remaining_requests, d);
    }
    if (info->has_tokens) {
        quota_format_reset(d, sizeof d, info->reset_tokens_ms);
        sbuf_printf(out,
                    "x-ratelimit-limit-tokens: %llu\r\nx-ratelimit-remaining-tokens: %llu\r\n"
                    "x-ratelimit-reset-tokens: %s\r\n",
                    (unsigned long long)info->limit_tokens, (unsigned long long)info->remaining_tokens, d);
    }
    if (with_retry && info->retry_after_s > 0)
        sbuf_printf(out, "retry-after: %u\r\n", info->retry_after_s);
}

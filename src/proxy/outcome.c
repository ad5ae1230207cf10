/*
 * outcome.c — the table behind outcome.h.
 */
#include "outcome.h"

#include "outlier.h"
#include "util.h"

/* Column values that depend on the upstream's status rather than on the
 * ending alone. */
#define FROM_STATUS (-1)
#define NO_RETRY (-1)

struct outcome_row {
    const char *name; /* access log */
    enum outcome_side side;
    bool timeout; /* an upstream timeout */
    int limiter;  /* enum admit_outcome, or FROM_STATUS */
    int retry;    /* enum retry_failure, or NO_RETRY */
    int outlier;  /* OUTLIER_*, or FROM_STATUS */
};

/* Shorthands for the rows below. */
#define CLIENT(n)                                                                                                      \
    {                                                                                                                  \
        n, OUTCOME_SIDE_CLIENT, false, ADMIT_CANCELLED, NO_RETRY, FROM_STATUS                                          \
    }
#define LOCAL(n)                                                                                                       \
    {                                                                                                                  \
        n, OUTCOME_SIDE_LOCAL, false, ADMIT_CANCELLED, NO_RETRY, FROM_STATUS                                           \
    }
#define UPSTREAM(n, timeout, limiter, retry, outlier)                                                                  \
    {                                                                                                                  \
        n, OUTCOME_SIDE_UPSTREAM, timeout, limiter, retry, outlier                                                     \
    }

/* Indexed by enum outcome; the static assertion below keeps the two in
 * step. */
/* clang-format off */
static const struct outcome_row rows[] = {
    [OUTCOME_OK] = {"ok", OUTCOME_SIDE_NONE, false, FROM_STATUS, NO_RETRY, FROM_STATUS},
    [OUTCOME_CLIENT_ABORT] = CLIENT("client_abort"),
    [OUTCOME_CLIENT_HEADER_TIMEOUT] = CLIENT("client_header_timeout"),
    [OUTCOME_CLIENT_BODY_TIMEOUT] = CLIENT("client_body_timeout"),
    [OUTCOME_CLIENT_SEND_TIMEOUT] = CLIENT("client_send_timeout"),
    [OUTCOME_BAD_REQUEST] = LOCAL("bad_request"),
    [OUTCOME_BAD_PATH] = LOCAL("bad_path"),
    [OUTCOME_BAD_CHUNKED_BODY] = LOCAL("bad_chunked_body"),
    [OUTCOME_BODY_TOO_LARGE] = LOCAL("body_too_large"),
    [OUTCOME_HEADER_TOO_LARGE] = LOCAL("header_too_large"),
    [OUTCOME_INVALID_REQUEST_BODY] = LOCAL("invalid_request_body"),
    [OUTCOME_NO_ROUTE] = LOCAL("no_route"),
    [OUTCOME_QUOTA_REQUESTS] = LOCAL("quota_requests"),
    [OUTCOME_QUOTA_TOKENS] = LOCAL("quota_tokens"),
    [OUTCOME_QUOTA_TOO_LARGE] = LOCAL("quota_too_large"),
    [OUTCOME_QUEUE_FULL] = LOCAL("queue_full"),
    [OUTCOME_QUEUE_EVICTED] = LOCAL("evicted"),
    [OUTCOME_QUEUE_DEADLINE] = LOCAL("deadline"),
    [OUTCOME_QUEUE_SHED] = LOCAL("shed"),
    [OUTCOME_NO_SERVER] = LOCAL("no_server"),
    /*                                           name                       timeout limiter        retry class                  outlier */
    [OUTCOME_UPSTREAM_CONNECT_FAILED] = UPSTREAM("upstream_connect_failed", false, ADMIT_FAILED, RETRY_FAIL_CONNECT, OUTLIER_CONNECT),
    [OUTCOME_UPSTREAM_CONNECT_TIMEOUT] = UPSTREAM("upstream_connect_timeout", true, ADMIT_OVERLOADED, RETRY_FAIL_CONNECT_TIMEOUT, OUTLIER_TIMEOUT),
    [OUTCOME_UPSTREAM_WRITE_FAILED] = UPSTREAM("upstream_write_failed", false, ADMIT_FAILED, RETRY_FAIL_RESET, OUTLIER_5XX),
    [OUTCOME_UPSTREAM_CLOSED] = UPSTREAM("upstream_closed", false, ADMIT_FAILED, RETRY_FAIL_RESET, OUTLIER_5XX),
    [OUTCOME_UPSTREAM_TIMEOUT] = UPSTREAM("upstream_timeout", true, ADMIT_OVERLOADED, RETRY_FAIL_TIMEOUT, OUTLIER_TIMEOUT),
    [OUTCOME_UPSTREAM_503] = UPSTREAM("upstream_503", false, ADMIT_FAILED, NO_RETRY, OUTLIER_5XX),
    [OUTCOME_BAD_UPSTREAM_RESPONSE] = UPSTREAM("bad_upstream_response", false, ADMIT_FAILED, NO_RETRY, OUTLIER_5XX),
    [OUTCOME_UPSTREAM_HEAD_TOO_LARGE] = UPSTREAM("upstream_head_too_large", false, ADMIT_FAILED, NO_RETRY, OUTLIER_5XX),
    [OUTCOME_BAD_UPSTREAM_CHUNKED] = UPSTREAM("bad_upstream_chunked", false, ADMIT_FAILED, NO_RETRY, OUTLIER_5XX),
    [OUTCOME_UPSTREAM_CUT] = UPSTREAM("upstream_closed_mid_response", false, ADMIT_FAILED, NO_RETRY, OUTLIER_5XX),
    [OUTCOME_UPSTREAM_IDLE_TIMEOUT] = UPSTREAM("upstream_idle_timeout", true, ADMIT_OVERLOADED, NO_RETRY, OUTLIER_TIMEOUT),
};
/* clang-format on */

_Static_assert(sizeof rows / sizeof rows[0] == OUTCOME_COUNT, "one row per outcome");

static const struct outcome_row *row(enum outcome o)
{
    RP_ASSERT((unsigned)o < OUTCOME_COUNT);
    return &rows[(unsigned)o < OUTCOME_COUNT ? o : OUTCOME_BAD_REQUEST];
}

const char *outcome_name(enum outcome o)
{
    return row(o)->name;
}

enum outcome_side outcome_side(enum outcome o)
{
    return row(o)->side;
}

bool outcome_upstream_failed(enum outcome o)
{
    return row(o)->side == OUTCOME_SIDE_UPSTREAM;
}

bool outcome_upstream_timeout(enum outcome o)
{
    return row(o)->timeout;
}

enum admit_outcome outcome_limiter(enum outcome o, int status, bool first_byte)
{
    int l = row(o)->limiter;
    if (l != FROM_STATUS)
        return (enum admit_outcome)l;
    if (first_byte && (status == 429 || status == 503))
        return ADMIT_OVERLOADED;
    return status >= 500 ? ADMIT_FAILED : ADMIT_DONE;
}

bool outcome_retry_class(enum outcome o, enum retry_failure *f)
{
    int r = row(o)->retry;
    if (r == NO_RETRY)
        return false;
    *f = (enum retry_failure)r;
    return true;
}

int outcome_outlier_class(enum outcome o, int status)
{
    int c = row(o)->outlier;
    if (c != FROM_STATUS)
        return c;
    return status >= 500 ? OUTLIER_5XX : OUTLIER_SUCCESS;
}

int outcome_status_seen(enum outcome o, int status)
{
    return outcome_upstream_failed(o) && status < 500 ? 502 : status;
}

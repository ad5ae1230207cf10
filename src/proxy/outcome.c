/*
 * outcome.c — the table behind outcome.h.
 */
#include "outcome.h"

#include <assert.h>

#include "util.h"

struct outcome_row {
    const char *name;
    enum outcome_side side;
    bool timeout;
};

/* Indexed by enum outcome; the static assertion below keeps the two in
 * step. */
static const struct outcome_row rows[] = {
    [OUTCOME_OK] = {"ok", OUTCOME_SIDE_NONE, false},
    [OUTCOME_CLIENT_ABORT] = {"client_abort", OUTCOME_SIDE_CLIENT, false},
    [OUTCOME_CLIENT_HEADER_TIMEOUT] = {"client_header_timeout", OUTCOME_SIDE_CLIENT, false},
    [OUTCOME_CLIENT_BODY_TIMEOUT] = {"client_body_timeout", OUTCOME_SIDE_CLIENT, false},
    [OUTCOME_CLIENT_SEND_TIMEOUT] = {"client_send_timeout", OUTCOME_SIDE_CLIENT, false},
    [OUTCOME_BAD_REQUEST] = {"bad_request", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_BAD_PATH] = {"bad_path", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_BAD_CHUNKED_BODY] = {"bad_chunked_body", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_BODY_TOO_LARGE] = {"body_too_large", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_HEADER_TOO_LARGE] = {"header_too_large", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_INVALID_REQUEST_BODY] = {"invalid_request_body", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_NO_ROUTE] = {"no_route", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUOTA_REQUESTS] = {"quota_requests", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUOTA_TOKENS] = {"quota_tokens", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUOTA_TOO_LARGE] = {"quota_too_large", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUEUE_FULL] = {"queue_full", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUEUE_EVICTED] = {"evicted", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUEUE_DEADLINE] = {"deadline", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_QUEUE_SHED] = {"shed", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_NO_SERVER] = {"no_server", OUTCOME_SIDE_LOCAL, false},
    [OUTCOME_UPSTREAM_CONNECT_FAILED] = {"upstream_connect_failed", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_CONNECT_TIMEOUT] = {"upstream_connect_timeout", OUTCOME_SIDE_UPSTREAM, true},
    [OUTCOME_UPSTREAM_WRITE_FAILED] = {"upstream_write_failed", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_CLOSED] = {"upstream_closed", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_TIMEOUT] = {"upstream_timeout", OUTCOME_SIDE_UPSTREAM, true},
    [OUTCOME_UPSTREAM_503] = {"upstream_503", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_BAD_UPSTREAM_RESPONSE] = {"bad_upstream_response", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_HEAD_TOO_LARGE] = {"upstream_head_too_large", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_BAD_UPSTREAM_CHUNKED] = {"bad_upstream_chunked", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_CUT] = {"upstream_closed_mid_response", OUTCOME_SIDE_UPSTREAM, false},
    [OUTCOME_UPSTREAM_IDLE_TIMEOUT] = {"upstream_idle_timeout", OUTCOME_SIDE_UPSTREAM, true},
};

_Static_assert(sizeof rows / sizeof rows[0] == OUTCOME_COUNT, "one row per outcome");

static const struct outcome_row *row(enum outcome o)
{
    assert((unsigned)o < OUTCOME_COUNT);
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

/*
 * outcome.h — how a request ended: one value per request, read by every
 * consumer.
 *
 * The proxy sets exactly one outcome when a request finishes.  The access
 * log prints its name; the concurrency limiter, outlier detection, the
 * retry policy and the status model each derive what they need from it
 * through the functions below, so no two of them can read the same ending
 * differently (a mid-stream cut is a failure for all of them, a client
 * that left is nobody's latency sample).
 *
 * Pure table lookups: no state, no I/O.
 */
#ifndef RAMPART_OUTCOME_H
#define RAMPART_OUTCOME_H

#include <stdbool.h>

enum outcome {
    OUTCOME_OK = 0,                 /* response delivered whole */
    /* the client ended it */
    OUTCOME_CLIENT_ABORT,           /* closed or reset its connection */
    OUTCOME_CLIENT_HEADER_TIMEOUT,  /* request head not complete in time */
    OUTCOME_CLIENT_BODY_TIMEOUT,    /* request body stalled */
    OUTCOME_CLIENT_SEND_TIMEOUT,    /* stopped reading the response */
    /* the request was refused before it reached a server */
    OUTCOME_BAD_REQUEST,
    OUTCOME_BAD_PATH,
    OUTCOME_BAD_CHUNKED_BODY,
    OUTCOME_BODY_TOO_LARGE,
    OUTCOME_HEADER_TOO_LARGE,
    OUTCOME_INVALID_REQUEST_BODY,
    OUTCOME_NO_ROUTE,
    OUTCOME_QUOTA_REQUESTS,
    OUTCOME_QUOTA_TOKENS,
    OUTCOME_QUOTA_TOO_LARGE,
    OUTCOME_QUEUE_FULL,
    OUTCOME_QUEUE_EVICTED,
    OUTCOME_QUEUE_DEADLINE,
    OUTCOME_QUEUE_SHED,
    OUTCOME_NO_SERVER,
    /* the upstream failed it */
    OUTCOME_UPSTREAM_CONNECT_FAILED,
    OUTCOME_UPSTREAM_CONNECT_TIMEOUT,
    OUTCOME_UPSTREAM_WRITE_FAILED,
    OUTCOME_UPSTREAM_CLOSED,        /* closed before a response head */
    OUTCOME_UPSTREAM_TIMEOUT,       /* no response head in time */
    OUTCOME_UPSTREAM_503,           /* answered 503 and no other server could */
    OUTCOME_BAD_UPSTREAM_RESPONSE,
    OUTCOME_UPSTREAM_HEAD_TOO_LARGE,
    OUTCOME_BAD_UPSTREAM_CHUNKED,
    OUTCOME_UPSTREAM_CUT,           /* closed mid-response */
    OUTCOME_UPSTREAM_IDLE_TIMEOUT,  /* stopped sending mid-response */
    OUTCOME_COUNT
};

/* Who ended the request. */
enum outcome_side {
    OUTCOME_SIDE_NONE = 0,          /* it completed */
    OUTCOME_SIDE_CLIENT,
    OUTCOME_SIDE_LOCAL,             /* rampart refused it */
    OUTCOME_SIDE_UPSTREAM,
};

/* Stable snake_case name, as the access log writes it. */
const char *outcome_name(enum outcome o);
enum outcome_side outcome_side(enum outcome o);

/* The request failed because of the upstream, whatever status line the
 * client may already have received (a stream cut after "200 OK" is a
 * failure).  The status model, the canary and outlier detection count it
 * as bad. */
bool outcome_upstream_failed(enum outcome o);

/* A timeout on the upstream side (connect, first byte, idle mid-stream). */
bool outcome_upstream_timeout(enum outcome o);

#endif

/*
 * outcome.h — how a request ended: one value per request, read by every
 * consumer.
 *
 * The proxy sets exactly one outcome when a request finishes.  One row of
 * the table in outcome.c says, for that ending, what each consumer makes
 * of it: the access log's name, the concurrency limiter's outcome, the
 * retry class, outlier detection's and the canary's class, and whether
 * the status page counts it as a failure.  No consumer interprets an
 * ending on its own, so no two can read it differently (a mid-stream cut
 * is a failure for all of them, a client that left is nobody's latency
 * sample).  As HAProxy's termination flags, it is the one place to change
 * when a new way to end appears.
 *
 * Pure table lookups: no state, no I/O.
 */
#ifndef RAMPART_OUTCOME_H
#define RAMPART_OUTCOME_H

#include <stdbool.h>

#include "admit.h"
#include "retry.h"

enum outcome {
    OUTCOME_OK = 0, /* response delivered whole */
    /* the client ended it */
    OUTCOME_CLIENT_ABORT,          /* closed or reset its connection */
    OUTCOME_CLIENT_HEADER_TIMEOUT, /* request head not complete in time */
    OUTCOME_CLIENT_BODY_TIMEOUT,   /* request body stalled */
    OUTCOME_CLIENT_SEND_TIMEOUT,   /* stopped reading the response */
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
    OUTCOME_UPSTREAM_CLOSED,  /* closed before a response head */
    OUTCOME_UPSTREAM_TIMEOUT, /* no response head in time */
    OUTCOME_UPSTREAM_503,     /* answered 503 and no other server could */
    OUTCOME_BAD_UPSTREAM_RESPONSE,
    OUTCOME_UPSTREAM_HEAD_TOO_LARGE,
    OUTCOME_BAD_UPSTREAM_CHUNKED,
    OUTCOME_UPSTREAM_CUT,          /* closed mid-response */
    OUTCOME_UPSTREAM_IDLE_TIMEOUT, /* stopped sending mid-response */
    OUTCOME_COUNT
};

/* Who ended the request. */
enum outcome_side {
    OUTCOME_SIDE_NONE = 0, /* it completed */
    OUTCOME_SIDE_CLIENT,
    OUTCOME_SIDE_LOCAL, /* rampart refused it */
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

/* What the concurrency limiter learns from a request that held a slot.
 * status is what the upstream answered (0 if nothing); first_byte says a
 * response head arrived.  Only a completed response is a latency sample;
 * an upstream that said it is overloaded (429/503 after a head) or did
 * not answer in time is a congestion signal; a client that left, stalled
 * or was refused tells nothing about the server. */
enum admit_outcome outcome_limiter(enum outcome o, int status, bool first_byte);

/* Whether this ending may be retried on another server, and as which
 * retry class.  The 5xx statuses that may be retried are the retry
 * policy's business (retry.h); this covers endings without a status. */
bool outcome_retry_class(enum outcome o, enum retry_failure *f);

/* Outlier detection's and the canary's class of an attempt
 * (OUTLIER_SUCCESS, OUTLIER_5XX, OUTLIER_CONNECT, OUTLIER_TIMEOUT): a
 * stream is judged by how it finished, not by its first byte. */
int outcome_outlier_class(enum outcome o, int status);

/* The status the status page counts for this request: the one the client
 * got, except that a response the upstream failed (a stream cut after
 * "200 OK") counts as 502. */
int outcome_status_seen(enum outcome o, int status);

#endif

/*
 * proxy_util.h — the proxy's pure helpers: the status-class counter slot,
 * the access log's durations, and the header checks the proxy makes on
 * the messages it relays.  No state, no I/O: unit-tested on their own
 * (tests/unit/test_proxy_helpers.c).  How an ending reads for the limiter,
 * outlier detection and retries is outcome.h's business.
 */
#ifndef RP_PROXY_UTIL_H
#define RP_PROXY_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "h1.h"

/* Per-status-class counters: 1xx..5xx, then "other". */
#define PROXY_STATUS_CLASSES 6
/* The counter slot of an HTTP status (0 for 1xx ... 4 for 5xx, 5 otherwise). */
int proxy_status_class(int status);

/* t - from in microseconds, or -1 when either is unknown (0) or t is
 * before from (the access log's "not reached"). */
int64_t proxy_since(uint64_t t, uint64_t from);

/* A client's X-Request-Id is kept when it is 1..64 of [A-Za-z0-9._:-]. */
bool proxy_valid_request_id(struct h1_str v);
/* Is header name listed in m's Connection header (so it is hop-by-hop)? */
bool proxy_named_in_connection(const struct h1_message *m, struct h1_str name);
/* A bodiless response whose headers speak of a body anyway (framing says
 * there is none: HEAD, 204, 304). */
bool proxy_announces_body(const struct h1_message *m);

#endif

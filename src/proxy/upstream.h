/*
 * upstream.h — upstream groups, their servers, keep-alive connection pools
 * and server selection.
 *
 * An upstream owns an array of servers; a server owns its idle keep-alive
 * connections (LIFO, so the warmest socket is reused first) and counts its
 * outstanding requests, which is what power-of-two-choices balances on.
 * The proxy owns a connection while a request uses it and gives it back
 * with upstream_conn_release(); idle connections are timed out here.
 */
#ifndef RP_UPSTREAM_H
#define RP_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "admit.h"
#include "buf.h"
#include "canary.h"
#include "config.h"
#include "ev.h"
#include "health.h"
#include "metrics.h"
#include "outlier.h"
#include "retry.h"

struct upstream;
struct server;
struct health_checker;
struct outlier;
struct retry_budget;
struct canary;

struct uconn {
    int fd;
    struct server *srv;
    struct buf in;             /* response bytes (head, and body when staged) */
    struct ev_timer timer;     /* connect / first byte / idle / pool idle */
    struct uconn *next, *prev; /* pool list */
    bool idle;                 /* in the pool */
    bool reused;               /* served a request before */
    void *owner;               /* the proxy request using it */
};

struct server {
    struct upstream *up;
    int index;
    const struct server_conf *conf;
    char name[64];           /* address text */
    unsigned inflight;       /* requests dispatched and not finished */
    bool usable;             /* false when administratively disabled */
    double weight_factor;    /* 0..1 slow-start ramp; 1 normally */
    struct uconn *idle_head; /* idle pool (LIFO) */
    size_t idle_count;
    /* counters */
    uint64_t requests;
    uint64_t connect_errors;
    uint64_t timeouts;
    uint64_t responses_5xx;
    struct metrics_hist ttfb;
    struct admit_limiter lim; /* concurrency limit (admission control) */
};

struct upstream {
    int index;
    const struct config_upstream *conf;
    struct ev_loop *loop;
    struct server *servers;
    size_t num_servers;
    unsigned rr_next;
    struct admit_queue queue; /* requests waiting for a free slot */
    void *owner;              /* the proxy */
    /* release safety (NULL when not configured) */
    struct health_checker *health; /* active checks */
    struct outlier *outlier;       /* passive ejection */
    struct retry_budget *retry;    /* retry budget */
    struct canary *canary;         /* stable/canary split and analysis */
    uint64_t ejections;
};

struct upstream_set {
    struct upstream *ups;
    size_t num;
    /* The release-safety instances of these upstreams: the args of their
     * metrics renderers (upstream_set_register_metrics) and, for the
     * canaries, of the admin API (canary_admin_register). */
    struct health_set health;
    struct outlier_set outliers;
    struct retry_set retries;
    struct canary_set canaries;
};

/* Build runtime state for every configured upstream, and register the
 * metrics of its release safety with the set as their arg (so the set
 * must outlive the last metrics_render, as the proxy does). */
struct upstream_set *upstream_set_create(struct ev_loop *loop, const struct config *cfg);
/* The release-safety families of /metrics (health, outlier, retry,
 * canary), each rendered once for the whole set. */
void upstream_set_register_metrics(struct upstream_set *set);
void upstream_set_free(struct upstream_set *set);

/* Choose a server for a new request: power of two choices on outstanding
 * requests (or round robin), among usable servers for which accept(srv,
 * arg) is true (accept may be NULL).  NULL when none qualifies. */
typedef bool (*upstream_accept_fn)(const struct server *srv, void *arg);
struct server *upstream_pick(struct upstream *up, upstream_accept_fn accept, void *arg);

/* May s take new requests now: not disabled, passing its health checks,
 * not ejected as an outlier. */
bool upstream_server_eligible(const struct server *s, uint64_t now_us);
/* Close every idle pooled connection of s (it went down or was ejected). */
void upstream_pool_flush(struct server *s);
/* Record how an attempt on s ended, for outlier detection and canary
 * analysis.  outcome: enum outlier_outcome; ttft_us 0 when unknown. */
void upstream_attempt_done(struct server *s, int outcome, uint64_t ttft_us, uint64_t now_us);
/* Periodic work (outlier ejection expiry, canary analysis); ~100 ms. */
void upstream_tick(struct upstream_set *set, uint64_t now_us);

/* Is there a server upstream_pick could choose?  Unlike upstream_pick it
 * changes no state (round-robin position), so it is the probe to use. */
bool upstream_any(struct upstream *up, upstream_accept_fn accept, void *arg);

/* A pooled connection that is still alive, or NULL (the caller connects). */
struct uconn *upstream_pool_get(struct server *srv);
/* Start a non-blocking connect.  *connected is true if it completed at
 * once.  NULL on immediate failure (errno set). */
struct uconn *upstream_connect(struct server *srv, bool *connected);
/* Return a healthy connection to the pool (or close it when the pool is
 * full). */
void upstream_conn_release(struct uconn *u);
/* Close and free a connection (never back to the pool). */
void upstream_conn_close(struct uconn *u);

#endif

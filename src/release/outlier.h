/*
 * outlier.h — passive outlier ejection: take a server out of rotation when
 * the failures the proxy observes on real traffic single it out from its
 * peers, for a time that grows each time it happens again.
 *
 * Outcomes (5xx, connect failure, timeout vs success) are counted per
 * server in a sliding window.  Two rules eject:
 *
 *  - consecutive failures: `consecutive_failures` failures in a row (default
 *    5), checked on every report, so a server that fails everything goes
 *    out after a handful of requests instead of at the next analysis;
 *  - success rate (after Envoy's outlier detection), checked every
 *    `interval`: a server with at least `min_requests` in the window is an
 *    outlier when its failure ratio exceeds its peers' mean by more than
 *    max(stdev_factor x peers' stdev, 5 x binomial noise, min_gap).  Peers
 *    are the other servers of the same release group (a canary's errors
 *    are judged by canary analysis, not here) with enough volume.  Leaving
 *    the server itself out of the mean and stdev is what makes the rule
 *    work with 2-5 servers, where Envoy's mean - 1.9 stdev over all hosts
 *    cannot flag anything (one outlier among n hosts is at most
 *    (n-1)/sqrt(n) population stdevs from the mean).  The noise term keeps
 *    a server from being ejected for a few unlucky failures at low volume,
 *    and min_gap keeps it from being ejected for a statistically real but
 *    harmless difference.
 *
 * Ejection lasts base_ejection x (number of ejections), capped at
 * max_ejection; the multiplier decays by one each time the server stays
 * eligible for as long as its last ejection lasted.  At most
 * max_ejection_percent of the servers are ejected at once (at least one
 * when there are two or more), and never the last server that is both
 * available (health checks) and not ejected.
 *
 * Pure logic: every function takes now_us.
 */
#ifndef RP_OUTLIER_H
#define RP_OUTLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"

/* config.h includes this header for struct outlier_conf, so only a
 * declaration here. */
struct server_conf;

/* Servers per upstream (config.c checks CONFIG_MAX_SERVERS fits). */
#define OUTLIER_MAX_SERVERS 64

#define OUTLIER_BUCKETS 10
#define OUTLIER_NAME_MAX 64
/* The noise term's multiplier: 5 binomial standard errors.  The analysis
 * looks every interval at overlapping windows, thousands of looks a day;
 * with 3 or 4 standard errors, simulated healthy servers at 1-30% errors
 * were still ejected now and then, with 5 never (200 x 10 min runs). */
#define OUTLIER_NOISE_Z 5.0

struct outlier_conf {
    bool enabled;                  /* default true */
    unsigned consecutive_failures; /* default 5; 0 disables the rule */
    uint64_t interval_us;          /* success-rate analysis cadence; default 10s */
    uint64_t window_us;            /* outcome window; default 30s */
    unsigned min_requests;         /* per server in the window; default 50 */
    double stdev_factor;           /* default 1.9 (Envoy) */
    double min_gap;                /* failure-ratio gap floor; default 0.05 */
    uint64_t base_ejection_us;     /* default 30s */
    uint64_t max_ejection_us;      /* default 300s */
    unsigned max_ejection_percent; /* default 50 */
};

#define OUTLIER_CONF_DEFAULT                                                                                           \
    {                                                                                                                  \
        .enabled = true, .consecutive_failures = 5, .interval_us = 10000000u, .window_us = 30000000u,                  \
        .min_requests = 50, .stdev_factor = 1.9, .min_gap = 0.05, .base_ejection_us = 30000000u,                       \
        .max_ejection_us = 300000000u, .max_ejection_percent = 50                                                      \
    }

void outlier_conf_default(struct outlier_conf *c);
/* Parse the `outlier:` map of an upstream (NULL: defaults kept).  Keys:
 * enabled, consecutive_failures, interval, window, min_requests,
 * stdev_factor, min_gap, base_ejection, max_ejection, max_ejection_percent. */
int outlier_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct outlier_conf *out);
/* The rows of the section's plain keys (conf.h), for documentation and
 * tests; outlier_conf_parse adds the checks that span keys. */
extern const struct conf_field outlier_conf_fields[];

enum outlier_outcome {
    OUTLIER_SUCCESS = 0,
    OUTLIER_5XX,     /* the upstream answered 5xx */
    OUTLIER_CONNECT, /* connect failed or was refused */
    OUTLIER_TIMEOUT, /* connect, first-byte or idle timeout */
};

enum outlier_reason { OUTLIER_REASON_NONE = 0, OUTLIER_REASON_CONSECUTIVE, OUTLIER_REASON_SUCCESS_RATE };

struct outlier_server {
    char name[64];  /* address text, for logs and metrics */
    int group;      /* release group from config (0 stable, 1 canary) */
    bool available; /* health checks say up (outlier_set_available) */
    bool ejected;
    enum outlier_reason reason; /* of the current/last ejection */
    uint64_t eject_until_us;
    uint64_t last_duration_us;  /* length of the last ejection */
    uint64_t eligible_since_us; /* when it last returned (decay of the multiplier) */
    unsigned multiplier;        /* ejections counted for the duration */
    unsigned consecutive;       /* failures in a row */
    uint64_t epoch[OUTLIER_BUCKETS];
    uint32_t total[OUTLIER_BUCKETS];
    uint32_t failed[OUTLIER_BUCKETS];
    double last_failure_ratio; /* at the last analysis (-1 when not enough volume) */
    double last_threshold;     /* ratio above which it would have been ejected (-1: not judged) */
    /* counters */
    uint64_t ejections_total;
    uint64_t failures_total;
    uint64_t requests_total;
};

struct outlier {
    char upstream[OUTLIER_NAME_MAX];
    struct outlier_conf conf;
    struct outlier_server servers[OUTLIER_MAX_SERVERS];
    size_t num_servers;
    uint64_t bucket_us;
    uint64_t next_analysis_us;
    uint64_t ejections_refused_total; /* ejections the share cap prevented */
    struct outlier_set *set;          /* owner's set (outlier_set_add), NULL when in none */
    struct outlier *next_in_set;
};

/* Create the detector for an upstream's servers (n <=
 * OUTLIER_MAX_SERVERS; more are ignored).  conf is copied.  All servers
 * start available and eligible. */
struct outlier *outlier_new(const char *upstream, const struct outlier_conf *conf, const struct server_conf *servers,
                            size_t n, uint64_t now_us);
/* Leave its set, free. */
void outlier_free(struct outlier *o);

/* Record the outcome of one attempt on server idx.  Returns true when this
 * report ejected the server (consecutive-failure rule); the caller may
 * then close its idle pooled connections. */
bool outlier_report(struct outlier *o, size_t idx, enum outlier_outcome outcome, uint64_t now_us);

/* Return servers whose ejection expired, and run the success-rate analysis
 * when an interval has passed since the last one.  Cheap to call often
 * (e.g. from a 1 s housekeeping timer).  Returns the number of servers
 * ejected by this call. */
size_t outlier_tick(struct outlier *o, uint64_t now_us);

/* May the balancer pick idx?  False while ejected (an expired ejection
 * counts as eligible even before the next tick). */
bool outlier_eligible(const struct outlier *o, size_t idx, uint64_t now_us);

/* Health-check state of idx: an unavailable server still counts as a
 * server but is never "the last eligible one". */
void outlier_set_available(struct outlier *o, size_t idx, bool available);

/* Servers currently ejected. */
size_t outlier_ejected_count(const struct outlier *o, uint64_t now_us);

/* The detectors of one owner (the upstream set), for the metrics renderer:
 * an owner's list rather than a process-wide one, so two owners never
 * render each other's servers.  loop is the renderer's clock (NULL: the
 * monotonic clock, for tests).  Newest first. */
struct ev_loop;
struct outlier_set {
    struct outlier *head;
    struct ev_loop *loop;
};

void outlier_set_init(struct outlier_set *set, struct ev_loop *loop);
/* Put o (may be NULL: nothing) in set; it leaves in outlier_free. */
void outlier_set_add(struct outlier_set *set, struct outlier *o);

/* metrics_render_fn: every detector of the struct outlier_set *arg. */
void outlier_metrics_render(struct sbuf *out, void *arg);

#endif

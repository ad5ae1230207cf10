/*
 * status.h — truthful status from the traffic rampart serves.
 *
 * The proxy reports every finished request (status_observe: O(1), no
 * allocation, no I/O).  From those samples status.c keeps, per component:
 *
 *   - 5-second slots covering the longest burn-rate window (6 h by
 *     default): the live status and the burn rates are sums over them;
 *   - minute slots (counts + time-to-first-byte histogram) that a timer
 *     flushes to SQLite once a minute in one short transaction;
 *   - 90 daily totals for the page's bars, loaded from the store at start
 *     and extended as minutes are flushed.
 *
 * A request is good when it is not a 5xx (our own overload 503 included)
 * and its time to first byte is within the component's objective; quota
 * refusals (429 from the quota layer) are neither good nor bad.
 *
 * Live status: operational / degraded_performance / partial_outage /
 * major_outage from the good ratio over a short window (60 s), worsening at
 * once and improving only after a quiet period (hysteresis); "no data" when
 * no request has been seen for a while.  Automatic incidents follow the SRE
 * workbook's multi-window burn rates.  Operators add incidents and schedule
 * maintenance through the admin API; maintenance moves itself from
 * scheduled to in_progress to completed at its times.
 *
 * The public listener serves every document from an in-memory snapshot
 * rebuilt every few seconds, with ETag and Cache-Control, so it costs a
 * copy per request and keeps answering while upstreams are down.
 */
#ifndef RP_STATUS_H
#define RP_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf.h"
#include "ev.h"

struct status;

#define STATUS_MAX_COMPONENTS 64
#define STATUS_MAX_UPSTREAMS 32 /* as many as the configuration allows */
#define STATUS_MAX_MATCH 16     /* routes and upstreams per component */
#define STATUS_MAX_RULES 4      /* burn-rate rules */

struct status_burn_rule {
    double factor;     /* burn rate that fires, e.g. 14.4 */
    uint64_t long_us;  /* e.g. 1h */
    uint64_t short_us; /* e.g. 5m */
};

struct status_component_conf {
    char *name;
    char *description;              /* may be NULL */
    char *routes[STATUS_MAX_MATCH]; /* path prefixes */
    size_t num_routes;
    char *upstreams[STATUS_MAX_MATCH]; /* upstream names */
    size_t num_upstreams;
    uint64_t latency_us; /* TTFB objective; 0 = status default */
    double target;       /* good-ratio objective (0.995); 0 = status default */
};

struct status_conf {
    bool enabled; /* a status: section is present */
    struct sockaddr_storage listen;
    socklen_t listen_len;
    char listen_text[64];
    char *db_path;
    char *page_name;     /* default "rampart" */
    char *page_url;      /* default "" */
    uint64_t refresh_us; /* snapshot rebuild and max-age, default 5s */

    /* live status */
    uint64_t window_us;        /* default 60s */
    uint64_t min_requests;     /* in the window to judge, default 5 */
    double degraded_below;     /* good ratio, default 0.95 */
    double partial_below;      /* non-5xx ratio, default 0.90 */
    double major_below;        /* non-5xx ratio, default 0.50 */
    uint64_t recover_after_us; /* quiet period before improving, default 2m */
    uint64_t no_data_after_us; /* silence before "no data", default 5m */

    /* objectives */
    uint64_t latency_us; /* TTFB objective, default 5s */
    double target;       /* default 0.995 */

    /* automatic incidents */
    bool auto_incidents; /* default true */
    struct status_burn_rule rules[STATUS_MAX_RULES];
    size_t num_rules;          /* default 14.4x 1h/5m and 6x 6h/30m */
    uint64_t resolve_after_us; /* sustained recovery, default 15m */

    uint64_t retention_us; /* minute rollups, default 400d */

    struct status_component_conf components[STATUS_MAX_COMPONENTS];
    size_t num_components; /* 0: one component per upstream */

    /* The configured upstreams by index (a NULL entry has no name), as
     * given to status_conf_parse: components name them, and without
     * components: each one is a component. */
    char *upstreams[STATUS_MAX_UPSTREAMS];
    size_t num_upstreams;
    bool upstreams_known; /* names were given (tests may parse without) */
};

/* Defaults for every field (enabled stays false). */
void status_conf_init(struct status_conf *sc);
/* Parse the `status:` section and the top-level `components:` list (either
 * may be NULL).  upstreams[num_upstreams] are the names of the configured
 * upstreams by index (an entry may be NULL); they are copied into sc and
 * components' upstreams: are checked against them.  upstreams NULL: no
 * check, and no implicit components (tests).  Errors are recorded in doc
 * with their positions; returns RP_OK or RP_ERR.  Call status_conf_init
 * first. */
int status_conf_parse(struct conf_doc *doc, const struct conf_node *status_node,
                      const struct conf_node *components_node, const char *const *upstreams, size_t num_upstreams,
                      struct status_conf *sc);
void status_conf_free(struct status_conf *sc);

/* Start the status subsystem: open the store, load history, start the
 * timers.  sc must outlive st.  The public listener is opened by
 * status_listen(), the admin routes for incidents and maintenances are the
 * admin's (admin_status.h), and the metrics are registered by whoever
 * wires the process (main.c).  loop may be NULL for tests: then no timer
 * runs; the test drives status_tick() itself.  NULL on error (logged). */
struct status *status_create(struct ev_loop *loop, const struct status_conf *sc);
/* Open the public listener (status: listen) of st, made with a loop.
 * RP_ERR when it cannot listen (logged with the address and cause). */
int status_listen(struct status *st);
/* The status families of /metrics, for metrics_register(fn, st). */
struct sbuf;
void status_metrics_render(struct sbuf *out, void *arg);
/* Flush the current minute, close the listener and the store. */
void status_free(struct status *st);
/* Stop accepting on the public listener (graceful shutdown). */
void status_stop_accepting(struct status *st);
/* Port of the public listener (tests with port 0), or -1. */
int status_port(const struct status *st);

/* Component fed by a request routed to upstream_idx with this path: the
 * component whose route prefix matches best, else the one listing the
 * upstream, else -1 (not counted).  Safe with st == NULL. */
int status_component_for(const struct status *st, int upstream_idx, const char *path, size_t len);

/* One finished request.  http_status 0 or 499 means the client went away
 * before a response: bad when it had already waited past the objective,
 * otherwise not counted.  now_us is the monotonic clock (ev_now).  O(1),
 * no allocation, no I/O; safe with st == NULL or component < 0. */
void status_observe(struct status *st, int component, int http_status, uint64_t ttfb_us, uint64_t total_us,
                    bool quota_refusal, uint64_t now_us);

/* Open an incident on behalf of another subsystem (release control rolled
 * a canary back), on the component fed by upstream_idx.  Stored before
 * returning.  RP_OK or RP_ERR. */
int status_report_incident(struct status *st, int upstream_idx, const char *name, const char *body, uint64_t now_us);

/* Keep the release verdicts of canary c (the canary of the upstream named
 * c->upstream, its release already named with canary_set_release) in the
 * status store, so a restart does not forget them: the verdict stored for
 * the release the canary describes (its release: label, else its canary
 * servers) is
 * restored into c at once, and every later change of c is stored before
 * the change returns.  A new release finds nothing and starts fresh.  A
 * rollback of c also opens an incident on the upstream's component, so
 * users who saw errors read why: status takes c's event callback
 * (canary_set_event_cb) for that.  st NULL detaches c (call it so before
 * status_free while c lives on).  Safe with c NULL.  RP_OK, or RP_ERR when
 * the store could not be read (logged, counted; c then runs from its
 * start). */
struct canary;
int status_track_canary(struct status *st, struct canary *c, uint64_t now_us);

/* ---- operator incidents and maintenances (status_ops.c) ----
 *
 * What the admin API does (src/admin/admin_status.c routes to these).
 * maint picks the collection: scheduled maintenances or incidents.  Each
 * answers in resp (status, JSON body; resp's sbufs initialised): the
 * incident or the list in Statuspage's shape, or an OpenAI-style error.
 * id_text is an incident id as the API shows it, uid_text an update id;
 * body[len] the request's JSON body.  Writes reach the store before the
 * answer and show on the page at once. */
struct httpd_response;
void status_ops_list(struct status *st, bool maint, struct httpd_response *resp);
void status_ops_get(struct status *st, bool maint, const char *id_text, size_t id_len, struct httpd_response *resp);
void status_ops_create(struct status *st, bool maint, const char *body, size_t len, struct httpd_response *resp);
void status_ops_edit(struct status *st, bool maint, const char *id_text, size_t id_len, const char *body, size_t len,
                     struct httpd_response *resp);
void status_ops_add_update(struct status *st, bool maint, const char *id_text, size_t id_len, const char *body,
                           size_t len, struct httpd_response *resp);
void status_ops_edit_update(struct status *st, bool maint, const char *id_text, size_t id_len, const char *uid_text,
                            size_t uid_len, const char *body, size_t len, struct httpd_response *resp);

/* ---- for tests and tools ---- */

/* Run everything the timers do, as of monotonic now_us: live status, burn
 * rates and automatic incidents, maintenance transitions, minute flush,
 * snapshot rebuild (when due or when something changed). */
void status_tick(struct status *st, uint64_t now_us);
/* Wall clock = monotonic + offset.  By default the offset follows the
 * system clock; tests pin it (0 makes monotonic microseconds wall time) right
 * after status_create: history is reloaded as of now_us, and requests not
 * driven by a tick (admin API) use the time of the last tick. */
void status_set_clock(struct status *st, int64_t wall_minus_mono_us, uint64_t now_us);
/* Current snapshot of a public document by path ("/", "/api/v2/...").
 * NULL when the path is not served.  *len and *etag set on success. */
const char *status_snapshot(struct status *st, const char *path, size_t *len, const char **etag);
/* Effective status (statuspage.h enum) of component i, or -1. */
int status_component_status(const struct status *st, int i);
/* Force a snapshot rebuild now. */
void status_refresh(struct status *st);

/* The live-status state machine on its own (pure; tests drive it). */
struct status_live {
    int level;              /* statuspage.h component status (NO_DATA..MAJOR_OUTAGE) */
    int last_known;         /* last level derived from traffic (never NO_DATA) */
    uint64_t calm_since[6]; /* per lower level L: verdicts have been <= L since (0 = not) */
    uint64_t last_traffic;  /* last evaluation that saw requests */
    uint64_t changed_at;
};

struct status_counts {
    uint64_t eligible; /* requests that count */
    uint64_t errors;   /* 5xx */
    uint64_t slow;     /* over the latency objective */
};

void status_live_init(struct status_live *l);
/* Level the counts call for, or -1 when there are too few requests. */
int status_live_classify(const struct status_conf *sc, const struct status_counts *w);
/* Advance with the window counts as of now; true when level changed. */
bool status_live_step(struct status_live *l, const struct status_conf *sc, const struct status_counts *w,
                      uint64_t now_us);
/* Burn rate: bad share of eligible divided by the error budget (1-target). */
double status_burn_rate(const struct status_counts *w, double target);

#endif

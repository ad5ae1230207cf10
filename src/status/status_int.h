/*
 * status_int.h — the state shared by the files of the status subsystem
 * (not a public interface: everything outside src/status/ uses status.h).
 *
 * The subsystem is split by concern, one struct status between them:
 *
 *   status_conf.c       the status: and components: sections
 *   status_model.c      samples, 5-s and minute rings, live status with
 *                       hysteresis, effective status, minute flush, tick
 *   status_incidents.c  the incident view, automatic (burn-rate) incidents,
 *                       the maintenance clock, incidents reported by release
 *                       control and the stored release verdicts
 *   status_ops.c        operator incidents and maintenances: the operations
 *                       behind the admin API (src/admin/admin_status.c)
 *   status_http.c       the snapshot of every public document and the
 *                       public listener that serves it
 *   status.c            life cycle (store, history, components), metrics,
 *                       lookups
 *
 * Data flow:
 *
 *   proxy ──status_observe──▶ 5-s slots ──▶ live status, burn rates
 *                         └─▶ minute slots ──(1 tx/min)──▶ store ──▶ daily bars
 *   admin API / burn rates / maintenance clock ──▶ store ──▶ incident view
 *   1-s timer ──▶ evaluate ──▶ snapshot (every document prebuilt + ETag)
 *
 * Time: the proxy passes the monotonic clock; rollups are keyed by wall-clock
 * minutes (they leave the process), so observe adds an offset refreshed once
 * a second.  Tests pin the offset and drive status_tick() with synthetic
 * time.
 */
#ifndef RP_STATUS_INT_H
#define RP_STATUS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ev.h"
#include "status.h"
#include "statuspage.h"
#include "store.h"

struct httpd_request;
struct httpd_response;

#define SLOT_US 5000000ULL /* live/burn slot */
#define MINUTE_US 60000000ULL
#define MINUTE_RING 128 /* minutes kept in memory (flush slack + sparkline) */
#define DAY_RING 128    /* >= STATUSPAGE_DAYS */
#define TICK_US 1000000ULL
#define BURN_EVERY_US 5000000ULL
#define FOLD_EVERY_US 3600000000ULL
#define FLUSH_RETRY_US 10000000ULL
#define VIEW_DAYS 90
#define VIEW_RECENT 50
#define VIEW_CAP 500
#define DAY_MS 86400000LL

/* TTFB histogram upper bounds in microseconds; the last bucket is open. */
extern const uint64_t status_hist_bounds_us[STORE_HIST_BUCKETS - 1];

struct fine_slot {
    int64_t idx;
    uint32_t total, excluded, errors, slow;
};

struct minute_slot {
    int64_t minute;
    uint32_t total, excluded, errors, slow;
    uint32_t hist[STORE_HIST_BUCKETS];
    uint8_t worst;
    bool flushed;
};

struct day_slot {
    int64_t day;
    uint64_t eligible, good;
    uint8_t worst;
};

struct comp {
    char code[STORE_CODE_MAX];
    const char *name;
    const char *description;
    int cid;
    int64_t created_ms, updated_ms;
    uint64_t latency_us;
    double target;

    struct fine_slot *fine;
    size_t nfine;
    struct minute_slot mins[MINUTE_RING];
    struct day_slot days[DAY_RING];

    struct status_live live;
    int effective; /* shown status (statuspage.h), may be NO_DATA */
    int reported;  /* JSON status, never NO_DATA */
    bool in_maintenance;

    int64_t auto_id;      /* open automatic incident, 0 = none */
    bool auto_monitoring; /* ...and its last update said monitoring */
    uint64_t calm_since;  /* recovery evidence since (0 = not calm) */
    bool armed;           /* may open a new automatic incident */

    /* totals since start, for /metrics */
    uint64_t n_good, n_errors, n_slow, n_excluded;
};

struct route_ent {
    const char *prefix;
    size_t len;
    int comp;
};

struct snap_doc {
    struct sbuf body;
    char etag[24];
};

struct status {
    struct ev_loop *loop;
    const struct status_conf *sc;
    struct store *store;
    struct httpd *httpd;
    struct ev_timer timer;

    int64_t wall_off_us;
    bool clock_pinned;
    uint64_t last_now_us; /* time of the last tick */

    struct comp *comps;
    size_t ncomps;
    char **owned_names; /* names of implicit components (one per upstream) */
    int upstream_map[STATUS_MAX_UPSTREAMS];
    struct route_ent *routes;
    size_t nroutes;
    const char **api_ids, **api_names;

    /* incidents and maintenances shown (newest first) */
    struct store_incident *view;
    size_t nview;

    /* snapshot */
    struct snap_doc docs[STATUSPAGE_DOC_COUNT];
    struct statuspage_component *vcomps;
    char page_id[STORE_CODE_MAX];
    bool dirty;
    bool built;
    uint64_t last_build_us;

    uint64_t last_burn_us;
    uint64_t last_fold_us;
    uint64_t last_flush_try_us;
    int64_t flush_minute; /* minutes before this are flushed (or empty) */
    struct store_rollup *rows;

    /* metrics */
    uint64_t store_errors;
    uint64_t dropped_minutes;
    uint64_t auto_opened, auto_resolved;
    uint64_t build_us;
};

/* Every sample adds to total and to at most one of excluded, errors and
 * slow (status_observe), so a slot's classes never add up to more than its
 * total: eligible = total - excluded and good = eligible - errors - slow
 * cannot wrap. */
static inline bool status_slot_sane(uint32_t total, uint32_t excluded, uint32_t errors, uint32_t slow)
{
    return (uint64_t)excluded + errors + slow <= total;
}

/* ---- clocks (status_model.c) ---- */

/* Wall-clock microseconds for monotonic now_us. */
static inline int64_t status_wall_us(const struct status *st, uint64_t now_us)
{
    return (int64_t)now_us + st->wall_off_us;
}

static inline int64_t status_now_ms(const struct status *st, uint64_t now_us)
{
    return status_wall_us(st, now_us) / 1000;
}

/* "Now" for work not driven by a tick (admin requests): the loop's clock,
 * or with a pinned test clock the time of the last tick. */
uint64_t status_loop_now(const struct status *st);

/* ---- model (status_model.c) ---- */

/* The minute slot of c for minute, cleared (and counted as dropped when it
 * still held unstored data) when it last held an older minute. */
struct minute_slot *status_minute_slot(struct status *st, struct comp *c, int64_t minute);
bool status_minute_has_data(const struct minute_slot *m);
/* Sum of the 5-s slots covering the last span_us (the current, partial
 * slot included). */
void status_window_sum(const struct comp *c, int64_t wall, uint64_t span_us, struct status_counts *out);
/* Effective status of every component from live status, the view's open
 * incidents and maintenances. */
void status_recompute(struct status *st, uint64_t now_us);
/* Store every minute before before_minute not yet stored (one transaction). */
void status_flush_minutes(struct status *st, int64_t before_minute);
void status_timer_cb(struct ev_loop *loop, struct ev_timer *t, void *arg);

/* ---- incidents (status_incidents.c) ---- */

int status_comp_index(const struct status *st, const char *code);
/* Reload the incident view from the store (and rebind automatic ones). */
void status_reload_view(struct status *st, uint64_t now_us);
void status_incident_set_status(struct store_incident *inc, int status, int64_t now_ms);
void status_incident_add_component(struct store_incident *inc, const char *code);
/* One transaction each; RP_ERR counted in store_errors. */
int status_write_new(struct status *st, struct store_incident *inc, struct store_update *u);
int status_write_update(struct status *st, struct store_incident *inc, struct store_update *u);
/* Burn-rate rules over every component: open or resolve automatic
 * incidents.  True when the store was written. */
bool status_burn_eval(struct status *st, uint64_t now_us);
/* Maintenance that is due moves on.  True when any was due. */
bool status_maintenance_eval(struct status *st, uint64_t now_us);

/* ---- snapshot and listener (status_http.c) ---- */

void status_build_view(struct status *st, uint64_t now_us, struct statuspage_view *v);
void status_rebuild(struct status *st, uint64_t now_us);
void status_http_serve(void *arg, const struct httpd_request *req, struct httpd_response *resp);

/* ---- life cycle (status.c) ---- */

/* (Re)load the rings from the store as of now_us, then the view. */
int status_load_history(struct status *st, uint64_t now_us);

#endif

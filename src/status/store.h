/*
 * store.h — SQLite persistence for the status subsystem.
 *
 * store.c is the only file that includes sqlite3.h; everything above it
 * sees plain C records.  One database file (WAL journal, synchronous=NORMAL)
 * holds:
 *
 *   components   stable id per component code, with its creation time;
 *   minutes      per component and wall-clock minute: request counts, the
 *                worst status shown during that minute and a time-to-first-
 *                byte histogram;
 *   days         the same counts folded per UTC day once minutes are older
 *                than the retention (400 days by default);
 *   incidents    incidents and scheduled maintenances, kept forever, with
 *                their updates and the components they affect;
 *   release_verdicts  per upstream and release, the last verdict of release
 *                control (rolled back, promoted, paused...), so a restart
 *                does not send traffic to a release already judged bad.
 *
 * Every write is one transaction that is committed before the call returns,
 * so a write the admin API acknowledged survives a kill -9 of the process
 * (WAL + synchronous=NORMAL: a committed transaction is in the WAL file in
 * the kernel's page cache; only an operating-system crash or power loss can
 * lose the last transactions).  Checkpoints, the only step that fsyncs, run
 * on a small background thread with its own connection, so the event loop
 * never waits for the disk to sync.
 *
 * Enumerated values (statuses, impacts) are stored as the small integers
 * defined in statuspage.h; this layer does not interpret them.
 *
 * Public incident and update ids are short opaque strings derived from the
 * row ids by an invertible mix (store_id_encode/decode), so they do not
 * reveal how many incidents exist yet need no extra column.
 */
#ifndef RP_STORE_H
#define RP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Buckets of the time-to-first-byte histogram kept per minute (status.c
 * owns the bucket bounds; the store keeps counts as an opaque blob). */
#define STORE_HIST_BUCKETS 16
/* Component codes are short ids (statuspage ids: 12 base-36 chars). */
#define STORE_CODE_MAX 16
/* Public id text: up to 13 base-36 digits plus NUL. */
#define STORE_ID_TEXT 16
/* Limits the admin API enforces and the loader relies on. */
#define STORE_MAX_UPDATES 100 /* updates per incident */
#define STORE_MAX_AFFECTED 64 /* components per incident / per update */

struct store;

/* One component-minute (t = minutes since the epoch) or component-day
 * (t = days since the epoch). */
struct store_rollup {
    int cid; /* component row id (store_component_ensure) */
    int64_t t;
    uint32_t total;                    /* every finished request */
    uint32_t excluded;                 /* neither good nor bad (quota refusals, ...) */
    uint32_t errors;                   /* 5xx, including our own overload refusals */
    uint32_t slow;                     /* not an error but over the latency objective */
    uint8_t worst;                     /* worst status shown (statuspage.h severity) */
    uint32_t hist[STORE_HIST_BUCKETS]; /* minutes only; zero for days */
};

struct store_affected {
    char code[STORE_CODE_MAX]; /* component code */
    int old_status;            /* statuspage component status, -1 = unknown */
    int new_status;
};

struct store_update {
    int64_t id;
    int status; /* statuspage incident/maintenance status */
    char *body;
    int64_t created_ms, updated_ms, display_ms;
    bool automatic; /* written by rampart, not by an operator */
    struct store_affected *affected;
    size_t num_affected;
};

struct store_incident {
    int64_t id;
    bool maintenance; /* a scheduled maintenance, not an incident */
    char *name;
    int status;
    int impact;
    bool automatic;                 /* opened by burn-rate evaluation */
    char auto_code[STORE_CODE_MAX]; /* the component an automatic incident is about */
    int64_t created_ms, updated_ms, started_ms;
    int64_t monitoring_ms, resolved_ms;           /* 0 = not yet */
    int64_t scheduled_for_ms, scheduled_until_ms; /* maintenance only */
    bool auto_transition;                         /* maintenance moves itself at its times */
    char (*components)[STORE_CODE_MAX];           /* affected component codes */
    size_t num_components;
    struct store_update *updates; /* newest first */
    size_t num_updates;
};

/* Open (creating if needed) the database at path: WAL, synchronous=NORMAL,
 * schema migrated, background checkpointer started.  NULL on error (logged
 * with the path and SQLite's message).  ":memory:" works (no checkpointer). */
struct store *store_open(const char *path);
/* Stop the checkpointer, checkpoint once more and close. */
void store_close(struct store *s);

/* Explicit transactions for multi-step writes (status.c composes "change
 * the incident row + add an update" atomically).  Each returns RP_OK or
 * RP_ERR; store_rollback is always safe to call after a failure. */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* ---- components ---- */

/* The row id for code, inserting it (with name and now) when new.  The
 * stored creation time is returned in *created_ms. */
int store_component_ensure(struct store *s, const char *code, const char *name, int64_t now_ms, int *cid,
                           int64_t *created_ms);

/* ---- rollups ---- */

/* Add rows to the minutes table in one transaction; a row for an existing
 * (cid, minute) is added to it (counts summed, worst kept at the maximum),
 * so a minute split across a restart is not lost. */
int store_minutes_put(struct store *s, const struct store_rollup *rows, size_t n);

typedef void (*store_rollup_cb)(void *arg, const struct store_rollup *row);

/* Minutes of cid in [from, to), ascending. */
int store_minutes_get(struct store *s, int cid, int64_t from_minute, int64_t to_minute, store_rollup_cb cb, void *arg);
/* Per-day sums of cid in [from_day, to_day), ascending: folded days and
 * days still held as minutes are merged, so callers need not know where
 * the retention boundary lies. */
int store_days_get(struct store *s, int cid, int64_t from_day, int64_t to_day, store_rollup_cb cb, void *arg);
/* Fold every minute older than before_minute into the days table and
 * delete those minutes, in one transaction.  Returns the number of minutes
 * folded (>= 0) or RP_ERR. */
int store_fold(struct store *s, int64_t before_minute);

/* ---- incidents and maintenance ---- */

/* Insert inc (its id is assigned and written back) with its components and
 * its first update (whose id is written back too).  Not transactional by
 * itself: call between store_begin and store_commit, or alone (SQLite then
 * wraps each statement, which is safe but not atomic). */
int store_incident_insert(struct store *s, struct store_incident *inc, struct store_update *first);
/* Rewrite inc's row and its component set (name, status, impact, times). */
int store_incident_save(struct store *s, const struct store_incident *inc);
/* Append an update to incident_id; u->id is written back. */
int store_update_insert(struct store *s, int64_t incident_id, struct store_update *u);
/* Replace an update's body and updated_ms.  *found is false when no such
 * update belongs to incident_id. */
int store_update_edit(struct store *s, int64_t incident_id, int64_t update_id, const char *body, int64_t now_ms,
                      bool *found);

/* Load one incident with its updates (newest first).  *found is false when
 * the id does not exist; *out is then untouched. */
int store_incident_get(struct store *s, int64_t id, struct store_incident *out, bool *found);
/* Load incidents and maintenances for display, newest first: every one not
 * yet resolved/completed, every one created at or after since_ms, and the
 * `recent` most recent of each kind; at most cap in total.  *out is an
 * array the caller frees with store_incidents_free. */
int store_incidents_load(struct store *s, int64_t since_ms, size_t recent, size_t cap, struct store_incident **out,
                         size_t *n);
void store_incident_clear(struct store_incident *inc);
void store_incidents_free(struct store_incident *v, size_t n);
/* Deep copy (for callers that keep an incident beyond a reload). */
void store_incident_copy(struct store_incident *dst, const struct store_incident *src);

/* ---- release verdicts ---- */

/* Field sizes follow canary.h (names, reasons); longer text is cut. */
struct store_release {
    char upstream[64];
    char release[64]; /* release id (canary_release_id) */
    char state[16];   /* canary state name ("rolled_back", "promoted", ...); text, so a
                       * reordered enum cannot change what a stored row means */
    unsigned weight_bp;
    char source[8]; /* auto, admin */
    char reason[240];
    int64_t at_ms; /* wall clock of the verdict */
};

/* Insert or replace the verdict on (r->upstream, r->release); committed
 * before returning (one statement). */
int store_release_put(struct store *s, const struct store_release *r);
/* The verdict on (upstream, release): *found false when none is stored
 * (*out is then untouched).  RP_OK or RP_ERR. */
int store_release_get(struct store *s, const char *upstream, const char *release, struct store_release *out,
                      bool *found);

/* ---- ids ---- */

/* Public text id for a row id; kind separates incidents ('i') from updates
 * ('u') so the two id spaces never look alike. */
void store_id_encode(char kind, int64_t rowid, char out[STORE_ID_TEXT]);
/* Inverse of store_id_encode: the row id, or -1 when text is not an id of
 * that kind. */
int64_t store_id_decode(char kind, const char *text, size_t len);

#endif

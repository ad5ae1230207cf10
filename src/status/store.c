/*
 * store.c — SQLite persistence for the status subsystem (see store.h).
 *
 * Threading: the connection in struct store is used only by the event-loop
 * thread.  A second connection lives on a checkpointer thread that wakes up
 * once a minute and runs a PASSIVE checkpoint: in WAL mode that is the only
 * operation that calls fsync, and a passive checkpoint never blocks the
 * writer, so the loop thread's transactions cost a write() into the page
 * cache and no disk wait.  Automatic checkpoints on the loop connection are
 * switched off for that reason.  An in-memory database has no WAL and no
 * checkpointer.
 *
 * Statements are prepared once at open and reset after each use; every
 * function that steps a statement leaves through one cleanup label that
 * resets it, so a failed step never leaves a statement (and its read
 * transaction) open.
 */
#include "store.h"
#include "util.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_SCHEMA_VERSION 1
#define STORE_CHECKPOINT_EVERY_S 60
#define STORE_BUSY_MS 200

/* Schema.  Columns are named for what they count; "neutral" is the store's
 * name for excluded requests because "excluded" is reserved inside SQLite's
 * upsert clause.  Rollups are keyed (component, time) so every query is a
 * range scan of the primary key; folding walks it per component (the
 * "cid IN (SELECT cid FROM components)" form) rather than scanning a year
 * of minutes. */
static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS components("
    "  cid INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS minutes("
    "  cid INTEGER NOT NULL, minute INTEGER NOT NULL, total INTEGER NOT NULL, neutral INTEGER NOT NULL,"
    "  errors INTEGER NOT NULL, slow INTEGER NOT NULL, worst INTEGER NOT NULL, hist BLOB,"
    "  PRIMARY KEY(cid, minute)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS days("
    "  cid INTEGER NOT NULL, day INTEGER NOT NULL, total INTEGER NOT NULL, neutral INTEGER NOT NULL,"
    "  errors INTEGER NOT NULL, slow INTEGER NOT NULL, worst INTEGER NOT NULL,"
    "  PRIMARY KEY(cid, day)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS incidents("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, maintenance INTEGER NOT NULL, name TEXT NOT NULL,"
    "  status INTEGER NOT NULL, impact INTEGER NOT NULL, automatic INTEGER NOT NULL,"
    "  auto_code TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    "  started_ms INTEGER NOT NULL, monitoring_ms INTEGER NOT NULL, resolved_ms INTEGER NOT NULL,"
    "  scheduled_for_ms INTEGER NOT NULL, scheduled_until_ms INTEGER NOT NULL,"
    "  auto_transition INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS incidents_created ON incidents(created_ms);"
    "CREATE INDEX IF NOT EXISTS incidents_open ON incidents(resolved_ms);"
    "CREATE TABLE IF NOT EXISTS incident_components("
    "  incident_id INTEGER NOT NULL REFERENCES incidents(id), pos INTEGER NOT NULL, code TEXT NOT NULL,"
    "  PRIMARY KEY(incident_id, pos)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS updates("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id INTEGER NOT NULL REFERENCES incidents(id),"
    "  status INTEGER NOT NULL, body TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL, display_ms INTEGER NOT NULL, automatic INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS updates_incident ON updates(incident_id, id);"
    "CREATE TABLE IF NOT EXISTS update_components("
    "  update_id INTEGER NOT NULL REFERENCES updates(id), pos INTEGER NOT NULL, code TEXT NOT NULL,"
    "  old_status INTEGER NOT NULL, new_status INTEGER NOT NULL,"
    "  PRIMARY KEY(update_id, pos)) WITHOUT ROWID;"
    /* Added after the first release of the schema.  CREATE IF NOT EXISTS
     * adds it to an existing database at the next start; the version stays
     * 1 because an older rampart simply ignores the table, so going back to
     * it needs no migration either. */
    "CREATE TABLE IF NOT EXISTS release_verdicts("
    "  upstream TEXT NOT NULL, release_id TEXT NOT NULL, state TEXT NOT NULL, weight_bp INTEGER NOT NULL,"
    "  source TEXT NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL,"
    "  PRIMARY KEY(upstream, release_id)) WITHOUT ROWID;";

enum store_stmt {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_COMP_INSERT,
    S_COMP_GET,
    S_MINUTE_PUT,
    S_MINUTES_GET,
    S_DAYS_GET,
    S_FOLD_DAYS,
    S_FOLD_DELETE,
    S_INC_INSERT,
    S_INC_SAVE,
    S_INC_GET,
    S_INC_LOAD,
    S_INC_COMP_DEL,
    S_INC_COMP_ADD,
    S_INC_COMP_GET,
    S_UPD_INSERT,
    S_UPD_EDIT,
    S_UPD_GET,
    S_UPD_COMP_ADD,
    S_UPD_COMP_GET,
    S_REL_PUT,
    S_REL_GET,
    S_COUNT
};

#define INC_COLS                                                                                                       \
    "id, maintenance, name, status, impact, automatic, auto_code, created_ms, updated_ms, started_ms,"                 \
    " monitoring_ms, resolved_ms, scheduled_for_ms, scheduled_until_ms, auto_transition"

static const char *const store_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_COMP_INSERT] = "INSERT OR IGNORE INTO components(code, name, created_ms) VALUES(?1, ?2, ?3)",
    [S_COMP_GET] = "SELECT cid, created_ms FROM components WHERE code = ?1",
    [S_MINUTE_PUT] = "INSERT INTO minutes(cid, minute, total, neutral, errors, slow, worst, hist)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                     " ON CONFLICT(cid, minute) DO UPDATE SET total = total + excluded.total,"
                     " neutral = neutral + excluded.neutral, errors = errors + excluded.errors,"
                     " slow = slow + excluded.slow, worst = MAX(worst, excluded.worst), hist = ?9",
    [S_MINUTES_GET] = "SELECT minute, total, neutral, errors, slow, worst, hist FROM minutes"
                      " WHERE cid = ?1 AND minute >= ?2 AND minute < ?3 ORDER BY minute",
    [S_DAYS_GET] = "SELECT day, SUM(total), SUM(neutral), SUM(errors), SUM(slow), MAX(worst) FROM ("
                   " SELECT day, total, neutral, errors, slow, worst FROM days"
                   "  WHERE cid = ?1 AND day >= ?2 AND day < ?3"
                   " UNION ALL"
                   " SELECT minute / 1440 AS day, total, neutral, errors, slow, worst FROM minutes"
                   "  WHERE cid = ?1 AND minute >= ?2 * 1440 AND minute < ?3 * 1440)"
                   " GROUP BY day ORDER BY day",
    [S_FOLD_DAYS] = "INSERT INTO days(cid, day, total, neutral, errors, slow, worst)"
                    " SELECT cid, minute / 1440, SUM(total), SUM(neutral), SUM(errors), SUM(slow), MAX(worst)"
                    " FROM minutes WHERE cid IN (SELECT cid FROM components) AND minute < ?1"
                    " GROUP BY cid, minute / 1440"
                    " ON CONFLICT(cid, day) DO UPDATE SET total = total + excluded.total,"
                    " neutral = neutral + excluded.neutral, errors = errors + excluded.errors,"
                    " slow = slow + excluded.slow, worst = MAX(worst, excluded.worst)",
    [S_FOLD_DELETE] = "DELETE FROM minutes WHERE cid IN (SELECT cid FROM components) AND minute < ?1",
    [S_INC_INSERT] = "INSERT INTO incidents(maintenance, name, status, impact, automatic, auto_code, created_ms,"
                     " updated_ms, started_ms, monitoring_ms, resolved_ms, scheduled_for_ms, scheduled_until_ms,"
                     " auto_transition) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [S_INC_SAVE] = "UPDATE incidents SET name = ?2, status = ?3, impact = ?4, updated_ms = ?5, started_ms = ?6,"
                   " monitoring_ms = ?7, resolved_ms = ?8, scheduled_for_ms = ?9, scheduled_until_ms = ?10,"
                   " auto_transition = ?11 WHERE id = ?1",
    [S_INC_GET] = "SELECT " INC_COLS " FROM incidents WHERE id = ?1",
    [S_INC_LOAD] = "SELECT " INC_COLS " FROM incidents"
                   " WHERE resolved_ms = 0 OR created_ms >= ?1"
                   "  OR id IN (SELECT id FROM incidents WHERE maintenance = 0 ORDER BY created_ms DESC, id DESC"
                   "            LIMIT ?2)"
                   "  OR id IN (SELECT id FROM incidents WHERE maintenance = 1 ORDER BY created_ms DESC, id DESC"
                   "            LIMIT ?2)"
                   " ORDER BY (resolved_ms = 0) DESC, created_ms DESC, id DESC LIMIT ?3",
    [S_INC_COMP_DEL] = "DELETE FROM incident_components WHERE incident_id = ?1",
    [S_INC_COMP_ADD] = "INSERT INTO incident_components(incident_id, pos, code) VALUES(?1, ?2, ?3)",
    [S_INC_COMP_GET] = "SELECT code FROM incident_components WHERE incident_id = ?1 ORDER BY pos LIMIT ?2",
    [S_UPD_INSERT] = "INSERT INTO updates(incident_id, status, body, created_ms, updated_ms, display_ms, automatic)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_UPD_EDIT] = "UPDATE updates SET body = ?3, updated_ms = ?4 WHERE id = ?2 AND incident_id = ?1",
    [S_UPD_GET] = "SELECT id, status, body, created_ms, updated_ms, display_ms, automatic FROM updates"
                  " WHERE incident_id = ?1 ORDER BY id DESC LIMIT ?2",
    [S_UPD_COMP_ADD] = "INSERT INTO update_components(update_id, pos, code, old_status, new_status)"
                       " VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_UPD_COMP_GET] = "SELECT uc.update_id, uc.code, uc.old_status, uc.new_status FROM update_components uc"
                       " JOIN updates u ON u.id = uc.update_id WHERE u.incident_id = ?1"
                       " ORDER BY uc.update_id DESC, uc.pos",
    [S_REL_PUT] = "INSERT INTO release_verdicts(upstream, release_id, state, weight_bp, source, reason, at_ms)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                  " ON CONFLICT(upstream, release_id) DO UPDATE SET state = excluded.state,"
                  " weight_bp = excluded.weight_bp, source = excluded.source, reason = excluded.reason,"
                  " at_ms = excluded.at_ms",
    [S_REL_GET] = "SELECT state, weight_bp, source, reason, at_ms FROM release_verdicts"
                  " WHERE upstream = ?1 AND release_id = ?2",
};

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[S_COUNT];
    bool in_tx;

    /* checkpointer */
    bool ckpt_running;
    pthread_t ckpt_thread;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_stop;
};

static void store_log(struct store *s, const char *what)
{
    rp_log_err("status store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* Reset a statement after use; bindings are overwritten on the next use. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

/* Run a statement that returns no rows. */
static int exec_stmt(struct store *s, enum store_stmt which)
{
    int rc = RP_OK;
    sqlite3_stmt *st = s->st[which];
    if (sqlite3_step(st) != SQLITE_DONE) {
        store_log(s, store_sql[which]);
        rc = RP_ERR;
    }
    stmt_done(st);
    return rc;
}

/* ---- checkpointer thread ---- */

static void *store_ckpt_main(void *arg)
{
    struct store *s = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        rp_log_err("status store %s: checkpointer cannot open: %s", s->path, db ? sqlite3_errmsg(db) : "?");
        goto out;
    }
    pthread_mutex_lock(&s->ckpt_mu);
    while (!s->ckpt_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += STORE_CHECKPOINT_EVERY_S;
        pthread_cond_timedwait(&s->ckpt_cv, &s->ckpt_mu, &ts);
        if (s->ckpt_stop)
            break;
        pthread_mutex_unlock(&s->ckpt_mu);
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            rp_log_err("status store %s: checkpoint: %s", s->path, sqlite3_errmsg(db));
        pthread_mutex_lock(&s->ckpt_mu);
    }
    pthread_mutex_unlock(&s->ckpt_mu);
out:
    sqlite3_close(db);
    return NULL;
}

/* ---- open / close ---- */

static int store_pragma(struct store *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        rp_log_err("status store %s: %s: %s", s->path, sql, err ? err : "?");
        sqlite3_free(err);
        return RP_ERR;
    }
    return RP_OK;
}

struct store *store_open(const char *path)
{
    struct store *s = rp_xcalloc(1, sizeof *s);
    bool memory = strcmp(path, ":memory:") == 0;
    s->path = rp_xstrdup(path);

    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rp_log_err("status store %s: cannot open: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    if (!memory) {
        /* journal_mode answers with the mode in effect: a file on a
         * filesystem without shared memory support would silently stay in
         * rollback mode, which fsyncs on every commit. */
        sqlite3_stmt *jm = NULL;
        bool wal = false;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &jm, NULL) == SQLITE_OK &&
            sqlite3_step(jm) == SQLITE_ROW) {
            const unsigned char *mode = sqlite3_column_text(jm, 0);
            wal = mode && strcmp((const char *)mode, "wal") == 0;
        }
        sqlite3_finalize(jm);
        if (!wal) {
            store_log(s, "cannot switch to WAL journal mode");
            goto fail;
        }
        if (store_pragma(s, "PRAGMA wal_autocheckpoint=0") != RP_OK)
            goto fail;
    }
    if (store_pragma(s, "PRAGMA synchronous=NORMAL") != RP_OK || store_pragma(s, "PRAGMA foreign_keys=ON") != RP_OK)
        goto fail;

    sqlite3_stmt *uv = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &uv, NULL) == SQLITE_OK && sqlite3_step(uv) == SQLITE_ROW)
        version = sqlite3_column_int(uv, 0);
    sqlite3_finalize(uv);
    if (version > STORE_SCHEMA_VERSION) {
        rp_log_err("status store %s: schema version %d is newer than this rampart understands (%d)", path, version,
                   STORE_SCHEMA_VERSION);
        goto fail;
    }
    if (store_pragma(s, "BEGIN") != RP_OK)
        goto fail;
    if (store_pragma(s, store_schema) != RP_OK || store_pragma(s, "PRAGMA user_version=1") != RP_OK) {
        store_pragma(s, "ROLLBACK");
        goto fail;
    }
    if (store_pragma(s, "COMMIT") != RP_OK)
        goto fail;

    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
            store_log(s, store_sql[i]);
            goto fail;
        }
    }

    if (!memory) {
        pthread_mutex_init(&s->ckpt_mu, NULL);
        pthread_cond_init(&s->ckpt_cv, NULL);
        if (pthread_create(&s->ckpt_thread, NULL, store_ckpt_main, s) != 0) {
            rp_log_err("status store %s: cannot start the checkpointer thread", path);
            pthread_mutex_destroy(&s->ckpt_mu);
            pthread_cond_destroy(&s->ckpt_cv);
            goto fail;
        }
        s->ckpt_running = true;
    }
    return s;

fail:
    store_close(s);
    return NULL;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
        pthread_join(s->ckpt_thread, NULL);
        pthread_mutex_destroy(&s->ckpt_mu);
        pthread_cond_destroy(&s->ckpt_cv);
    }
    if (s->in_tx)
        store_rollback(s);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db) {
        /* Fold the WAL into the database file so a stopped gateway leaves
         * one self-contained file behind. */
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(s->db);
    }
    free(s->path);
    free(s);
}

/* ---- transactions ---- */

int store_begin(struct store *s)
{
    if (exec_stmt(s, S_BEGIN) != RP_OK)
        return RP_ERR;
    s->in_tx = true;
    return RP_OK;
}

int store_commit(struct store *s)
{
    if (exec_stmt(s, S_COMMIT) != RP_OK) {
        store_rollback(s);
        return RP_ERR;
    }
    s->in_tx = false;
    return RP_OK;
}

void store_rollback(struct store *s)
{
    if (sqlite3_get_autocommit(s->db) == 0)
        exec_stmt(s, S_ROLLBACK);
    s->in_tx = false;
}

/* ---- components ---- */

int store_component_ensure(struct store *s, const char *code, const char *name, int64_t now_ms, int *cid,
                           int64_t *created_ms)
{
    int rc = RP_ERR;
    sqlite3_stmt *ins = s->st[S_COMP_INSERT], *get = s->st[S_COMP_GET];
    sqlite3_bind_text(ins, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, now_ms);
    if (sqlite3_step(ins) != SQLITE_DONE) {
        store_log(s, "insert component");
        goto cleanup;
    }
    sqlite3_bind_text(get, 1, code, -1, SQLITE_STATIC);
    if (sqlite3_step(get) != SQLITE_ROW) {
        store_log(s, "read component");
        goto cleanup;
    }
    *cid = sqlite3_column_int(get, 0);
    *created_ms = sqlite3_column_int64(get, 1);
    rc = RP_OK;
cleanup:
    stmt_done(ins);
    stmt_done(get);
    return rc;
}

/* ---- rollups ---- */

/* Histograms are stored as little-endian uint32 so a database file moves
 * between machines. */
static void hist_pack(const uint32_t *hist, unsigned char *out)
{
    for (int i = 0; i < STORE_HIST_BUCKETS; i++) {
        out[4 * i] = (unsigned char)hist[i];
        out[4 * i + 1] = (unsigned char)(hist[i] >> 8);
        out[4 * i + 2] = (unsigned char)(hist[i] >> 16);
        out[4 * i + 3] = (unsigned char)(hist[i] >> 24);
    }
}

static void hist_unpack(const unsigned char *in, size_t len, uint32_t *hist)
{
    memset(hist, 0, sizeof(uint32_t) * STORE_HIST_BUCKETS);
    for (size_t i = 0; i < STORE_HIST_BUCKETS && 4 * i + 3 < len; i++)
        hist[i] = (uint32_t)in[4 * i] | (uint32_t)in[4 * i + 1] << 8 | (uint32_t)in[4 * i + 2] << 16 |
                  (uint32_t)in[4 * i + 3] << 24;
}

int store_minutes_put(struct store *s, const struct store_rollup *rows, size_t n)
{
    int rc = RP_ERR;
    bool own_tx = !s->in_tx;
    sqlite3_stmt *st = s->st[S_MINUTE_PUT];
    sqlite3_stmt *get = s->st[S_MINUTES_GET];

    if (n == 0)
        return RP_OK;
    if (own_tx && store_begin(s) != RP_OK)
        return RP_ERR;
    for (size_t i = 0; i < n; i++) {
        const struct store_rollup *r = &rows[i];
        unsigned char blob[4 * STORE_HIST_BUCKETS];
        uint32_t merged[STORE_HIST_BUCKETS];
        memcpy(merged, r->hist, sizeof merged);
        /* A histogram cannot be summed in SQL: read the existing one (rare:
         * only a minute split across a restart has one) and add in C. */
        sqlite3_bind_int(get, 1, r->cid);
        sqlite3_bind_int64(get, 2, r->t);
        sqlite3_bind_int64(get, 3, r->t + 1);
        int step = sqlite3_step(get);
        if (step == SQLITE_ROW) {
            uint32_t old[STORE_HIST_BUCKETS];
            hist_unpack(sqlite3_column_blob(get, 6), (size_t)sqlite3_column_bytes(get, 6), old);
            for (int b = 0; b < STORE_HIST_BUCKETS; b++)
                merged[b] += old[b];
        } else if (step != SQLITE_DONE) {
            store_log(s, "read minute");
            stmt_done(get);
            goto cleanup;
        }
        stmt_done(get);
        hist_pack(merged, blob);
        sqlite3_bind_int(st, 1, r->cid);
        sqlite3_bind_int64(st, 2, r->t);
        sqlite3_bind_int64(st, 3, r->total);
        sqlite3_bind_int64(st, 4, r->excluded);
        sqlite3_bind_int64(st, 5, r->errors);
        sqlite3_bind_int64(st, 6, r->slow);
        sqlite3_bind_int(st, 7, r->worst);
        sqlite3_bind_blob(st, 8, blob, sizeof blob, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 9, blob, sizeof blob, SQLITE_TRANSIENT);
        int prc = sqlite3_step(st);
        stmt_done(st);
        if (prc != SQLITE_DONE) {
            store_log(s, "write minute");
            goto cleanup;
        }
    }
    if (own_tx && store_commit(s) != RP_OK)
        return RP_ERR;
    return RP_OK;
cleanup:
    if (own_tx)
        store_rollback(s);
    return rc;
}

static void row_read(sqlite3_stmt *st, int cid, bool with_hist, struct store_rollup *r)
{
    memset(r, 0, sizeof *r);
    r->cid = cid;
    r->t = sqlite3_column_int64(st, 0);
    r->total = (uint32_t)sqlite3_column_int64(st, 1);
    r->excluded = (uint32_t)sqlite3_column_int64(st, 2);
    r->errors = (uint32_t)sqlite3_column_int64(st, 3);
    r->slow = (uint32_t)sqlite3_column_int64(st, 4);
    r->worst = (uint8_t)sqlite3_column_int(st, 5);
    if (with_hist)
        hist_unpack(sqlite3_column_blob(st, 6), (size_t)sqlite3_column_bytes(st, 6), r->hist);
}

static int rollups_query(struct store *s, enum store_stmt which, int cid, int64_t from, int64_t to, store_rollup_cb cb,
                         void *arg)
{
    int rc = RP_ERR;
    sqlite3_stmt *st = s->st[which];
    sqlite3_bind_int(st, 1, cid);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    for (;;) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            store_log(s, "read rollups");
            goto cleanup;
        }
        struct store_rollup r;
        row_read(st, cid, which == S_MINUTES_GET, &r);
        cb(arg, &r);
    }
    rc = RP_OK;
cleanup:
    stmt_done(st);
    return rc;
}

int store_minutes_get(struct store *s, int cid, int64_t from_minute, int64_t to_minute, store_rollup_cb cb, void *arg)
{
    return rollups_query(s, S_MINUTES_GET, cid, from_minute, to_minute, cb, arg);
}

int store_days_get(struct store *s, int cid, int64_t from_day, int64_t to_day, store_rollup_cb cb, void *arg)
{
    return rollups_query(s, S_DAYS_GET, cid, from_day, to_day, cb, arg);
}

int store_fold(struct store *s, int64_t before_minute)
{
    int folded = RP_ERR;
    if (store_begin(s) != RP_OK)
        return RP_ERR;
    sqlite3_bind_int64(s->st[S_FOLD_DAYS], 1, before_minute);
    if (exec_stmt(s, S_FOLD_DAYS) != RP_OK)
        goto cleanup;
    sqlite3_bind_int64(s->st[S_FOLD_DELETE], 1, before_minute);
    if (exec_stmt(s, S_FOLD_DELETE) != RP_OK)
        goto cleanup;
    folded = sqlite3_changes(s->db);
    if (store_commit(s) != RP_OK)
        return RP_ERR;
    return folded;
cleanup:
    store_rollback(s);
    return RP_ERR;
}

/* ---- incidents ---- */

static int incident_components_write(struct store *s, const struct store_incident *inc)
{
    sqlite3_bind_int64(s->st[S_INC_COMP_DEL], 1, inc->id);
    if (exec_stmt(s, S_INC_COMP_DEL) != RP_OK)
        return RP_ERR;
    for (size_t i = 0; i < inc->num_components && i < STORE_MAX_AFFECTED; i++) {
        sqlite3_stmt *st = s->st[S_INC_COMP_ADD];
        sqlite3_bind_int64(st, 1, inc->id);
        sqlite3_bind_int(st, 2, (int)i);
        sqlite3_bind_text(st, 3, inc->components[i], -1, SQLITE_STATIC);
        if (exec_stmt(s, S_INC_COMP_ADD) != RP_OK)
            return RP_ERR;
    }
    return RP_OK;
}

int store_incident_insert(struct store *s, struct store_incident *inc, struct store_update *first)
{
    sqlite3_stmt *st = s->st[S_INC_INSERT];
    sqlite3_bind_int(st, 1, inc->maintenance);
    sqlite3_bind_text(st, 2, inc->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, inc->status);
    sqlite3_bind_int(st, 4, inc->impact);
    sqlite3_bind_int(st, 5, inc->automatic);
    sqlite3_bind_text(st, 6, inc->auto_code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, inc->created_ms);
    sqlite3_bind_int64(st, 8, inc->updated_ms);
    sqlite3_bind_int64(st, 9, inc->started_ms);
    sqlite3_bind_int64(st, 10, inc->monitoring_ms);
    sqlite3_bind_int64(st, 11, inc->resolved_ms);
    sqlite3_bind_int64(st, 12, inc->scheduled_for_ms);
    sqlite3_bind_int64(st, 13, inc->scheduled_until_ms);
    sqlite3_bind_int(st, 14, inc->auto_transition);
    if (exec_stmt(s, S_INC_INSERT) != RP_OK)
        return RP_ERR;
    inc->id = sqlite3_last_insert_rowid(s->db);
    if (incident_components_write(s, inc) != RP_OK)
        return RP_ERR;
    if (first && store_update_insert(s, inc->id, first) != RP_OK)
        return RP_ERR;
    return RP_OK;
}

int store_incident_save(struct store *s, const struct store_incident *inc)
{
    sqlite3_stmt *st = s->st[S_INC_SAVE];
    sqlite3_bind_int64(st, 1, inc->id);
    sqlite3_bind_text(st, 2, inc->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, inc->status);
    sqlite3_bind_int(st, 4, inc->impact);
    sqlite3_bind_int64(st, 5, inc->updated_ms);
    sqlite3_bind_int64(st, 6, inc->started_ms);
    sqlite3_bind_int64(st, 7, inc->monitoring_ms);
    sqlite3_bind_int64(st, 8, inc->resolved_ms);
    sqlite3_bind_int64(st, 9, inc->scheduled_for_ms);
    sqlite3_bind_int64(st, 10, inc->scheduled_until_ms);
    sqlite3_bind_int(st, 11, inc->auto_transition);
    if (exec_stmt(s, S_INC_SAVE) != RP_OK)
        return RP_ERR;
    return incident_components_write(s, inc);
}

int store_update_insert(struct store *s, int64_t incident_id, struct store_update *u)
{
    sqlite3_stmt *st = s->st[S_UPD_INSERT];
    sqlite3_bind_int64(st, 1, incident_id);
    sqlite3_bind_int(st, 2, u->status);
    sqlite3_bind_text(st, 3, u->body ? u->body : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, u->created_ms);
    sqlite3_bind_int64(st, 5, u->updated_ms);
    sqlite3_bind_int64(st, 6, u->display_ms);
    sqlite3_bind_int(st, 7, u->automatic);
    if (exec_stmt(s, S_UPD_INSERT) != RP_OK)
        return RP_ERR;
    u->id = sqlite3_last_insert_rowid(s->db);
    for (size_t i = 0; i < u->num_affected && i < STORE_MAX_AFFECTED; i++) {
        const struct store_affected *a = &u->affected[i];
        sqlite3_stmt *ac = s->st[S_UPD_COMP_ADD];
        sqlite3_bind_int64(ac, 1, u->id);
        sqlite3_bind_int(ac, 2, (int)i);
        sqlite3_bind_text(ac, 3, a->code, -1, SQLITE_STATIC);
        sqlite3_bind_int(ac, 4, a->old_status);
        sqlite3_bind_int(ac, 5, a->new_status);
        if (exec_stmt(s, S_UPD_COMP_ADD) != RP_OK)
            return RP_ERR;
    }
    return RP_OK;
}

int store_update_edit(struct store *s, int64_t incident_id, int64_t update_id, const char *body, int64_t now_ms,
                      bool *found)
{
    sqlite3_stmt *st = s->st[S_UPD_EDIT];
    sqlite3_bind_int64(st, 1, incident_id);
    sqlite3_bind_int64(st, 2, update_id);
    sqlite3_bind_text(st, 3, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
    if (exec_stmt(s, S_UPD_EDIT) != RP_OK)
        return RP_ERR;
    *found = sqlite3_changes(s->db) > 0;
    return RP_OK;
}

static char *col_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return rp_xstrdup(t ? (const char *)t : "");
}

static void col_code(sqlite3_stmt *st, int col, char out[STORE_CODE_MAX])
{
    const unsigned char *t = sqlite3_column_text(st, col);
    rp_snprintf(out, STORE_CODE_MAX, "%s", t ? (const char *)t : "");
}

static void incident_read_row(sqlite3_stmt *st, struct store_incident *inc)
{
    memset(inc, 0, sizeof *inc);
    inc->id = sqlite3_column_int64(st, 0);
    inc->maintenance = sqlite3_column_int(st, 1) != 0;
    inc->name = col_strdup(st, 2);
    inc->status = sqlite3_column_int(st, 3);
    inc->impact = sqlite3_column_int(st, 4);
    inc->automatic = sqlite3_column_int(st, 5) != 0;
    col_code(st, 6, inc->auto_code);
    inc->created_ms = sqlite3_column_int64(st, 7);
    inc->updated_ms = sqlite3_column_int64(st, 8);
    inc->started_ms = sqlite3_column_int64(st, 9);
    inc->monitoring_ms = sqlite3_column_int64(st, 10);
    inc->resolved_ms = sqlite3_column_int64(st, 11);
    inc->scheduled_for_ms = sqlite3_column_int64(st, 12);
    inc->scheduled_until_ms = sqlite3_column_int64(st, 13);
    inc->auto_transition = sqlite3_column_int(st, 14) != 0;
}

/* Components, updates and their affected components of one incident. */
static int incident_read_children(struct store *s, struct store_incident *inc)
{
    int rc = RP_ERR;
    sqlite3_stmt *cs = s->st[S_INC_COMP_GET], *us = s->st[S_UPD_GET], *as = s->st[S_UPD_COMP_GET];
    int step;

    inc->components = rp_xcalloc(STORE_MAX_AFFECTED, STORE_CODE_MAX);
    sqlite3_bind_int64(cs, 1, inc->id);
    sqlite3_bind_int(cs, 2, STORE_MAX_AFFECTED);
    while ((step = sqlite3_step(cs)) == SQLITE_ROW)
        col_code(cs, 0, inc->components[inc->num_components++]);
    if (step != SQLITE_DONE) {
        store_log(s, "read incident components");
        goto cleanup;
    }

    inc->updates = rp_xcalloc(STORE_MAX_UPDATES, sizeof *inc->updates);
    sqlite3_bind_int64(us, 1, inc->id);
    sqlite3_bind_int(us, 2, STORE_MAX_UPDATES);
    while ((step = sqlite3_step(us)) == SQLITE_ROW) {
        struct store_update *u = &inc->updates[inc->num_updates++];
        u->id = sqlite3_column_int64(us, 0);
        u->status = sqlite3_column_int(us, 1);
        u->body = col_strdup(us, 2);
        u->created_ms = sqlite3_column_int64(us, 3);
        u->updated_ms = sqlite3_column_int64(us, 4);
        u->display_ms = sqlite3_column_int64(us, 5);
        u->automatic = sqlite3_column_int(us, 6) != 0;
    }
    if (step != SQLITE_DONE) {
        store_log(s, "read incident updates");
        goto cleanup;
    }

    /* Both lists are ordered newest update first, so one merge pass
     * attaches every affected component to its update. */
    sqlite3_bind_int64(as, 1, inc->id);
    size_t ui = 0;
    while ((step = sqlite3_step(as)) == SQLITE_ROW) {
        int64_t uid = sqlite3_column_int64(as, 0);
        while (ui < inc->num_updates && inc->updates[ui].id > uid)
            ui++;
        if (ui >= inc->num_updates)
            continue; /* belongs to an update beyond the loaded window */
        struct store_update *u = &inc->updates[ui];
        if (u->id != uid)
            continue;
        if (!u->affected)
            u->affected = rp_xcalloc(STORE_MAX_AFFECTED, sizeof *u->affected);
        if (u->num_affected >= STORE_MAX_AFFECTED)
            continue;
        struct store_affected *a = &u->affected[u->num_affected++];
        col_code(as, 1, a->code);
        a->old_status = sqlite3_column_int(as, 2);
        a->new_status = sqlite3_column_int(as, 3);
    }
    if (step != SQLITE_DONE) {
        store_log(s, "read update components");
        goto cleanup;
    }
    rc = RP_OK;
cleanup:
    stmt_done(cs);
    stmt_done(us);
    stmt_done(as);
    return rc;
}

int store_incident_get(struct store *s, int64_t id, struct store_incident *out, bool *found)
{
    int rc = RP_ERR;
    struct store_incident inc;
    sqlite3_stmt *st = s->st[S_INC_GET];
    bool have_row = false;

    *found = false;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        incident_read_row(st, &inc);
        have_row = true;
    } else if (step != SQLITE_DONE) {
        store_log(s, "read incident");
        goto cleanup;
    }
    stmt_done(st);
    if (!have_row) {
        rc = RP_OK;
        goto cleanup;
    }
    if (incident_read_children(s, &inc) != RP_OK) {
        store_incident_clear(&inc);
        goto cleanup;
    }
    *out = inc;
    *found = true;
    rc = RP_OK;
cleanup:
    stmt_done(st);
    return rc;
}

int store_incidents_load(struct store *s, int64_t since_ms, size_t recent, size_t cap, struct store_incident **out,
                         size_t *n)
{
    int rc = RP_ERR;
    sqlite3_stmt *st = s->st[S_INC_LOAD];
    struct store_incident *v = rp_xcalloc(cap ? cap : 1, sizeof *v);
    size_t count = 0;
    int step = SQLITE_DONE;

    sqlite3_bind_int64(st, 1, since_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)recent);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)cap);
    while (count < cap && (step = sqlite3_step(st)) == SQLITE_ROW)
        incident_read_row(st, &v[count++]);
    if (count < cap && step != SQLITE_DONE) {
        store_log(s, "load incidents");
        goto cleanup;
    }
    stmt_done(st);
    for (size_t i = 0; i < count; i++)
        if (incident_read_children(s, &v[i]) != RP_OK)
            goto cleanup;
    *out = v;
    *n = count;
    v = NULL;
    rc = RP_OK;
cleanup:
    stmt_done(st);
    if (v)
        store_incidents_free(v, count);
    return rc;
}

void store_incident_clear(struct store_incident *inc)
{
    free(inc->name);
    free(inc->components);
    for (size_t i = 0; i < inc->num_updates; i++) {
        free(inc->updates[i].body);
        free(inc->updates[i].affected);
    }
    free(inc->updates);
    memset(inc, 0, sizeof *inc);
}

void store_incidents_free(struct store_incident *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        store_incident_clear(&v[i]);
    free(v);
}

void store_incident_copy(struct store_incident *dst, const struct store_incident *src)
{
    *dst = *src;
    dst->name = rp_xstrdup(src->name ? src->name : "");
    dst->components = rp_xcalloc(STORE_MAX_AFFECTED, STORE_CODE_MAX);
    if (src->num_components)
        memcpy(dst->components, src->components, src->num_components * STORE_CODE_MAX);
    dst->updates = rp_xcalloc(STORE_MAX_UPDATES, sizeof *dst->updates);
    for (size_t i = 0; i < src->num_updates; i++) {
        struct store_update *d = &dst->updates[i];
        const struct store_update *u = &src->updates[i];
        *d = *u;
        d->body = rp_xstrdup(u->body ? u->body : "");
        d->affected = NULL;
        if (u->num_affected) {
            d->affected = rp_xcalloc(STORE_MAX_AFFECTED, sizeof *d->affected);
            memcpy(d->affected, u->affected, u->num_affected * sizeof *d->affected);
        }
    }
}

/* ---- ids ---- */

/* Ids are 12 base-36 digits encoding a 60-bit value: row id multiplied by
 * an odd constant modulo 2^60 (a bijection) and xored with a per-kind
 * constant.  Decoding inverts both steps and rejects anything that does not
 * map back to a plausible row id. */
#define ID_BITS 60
#define ID_MASK ((UINT64_C(1) << ID_BITS) - 1)
#define ID_DIGITS 12
#define ID_MAX_ROW (INT64_C(1) << 40)

static uint64_t id_mul(char kind)
{
    return kind == 'u' ? UINT64_C(0x2545f4914f6cdd1d) : UINT64_C(0x9e3779b97f4a7c15);
}

static uint64_t id_xor(char kind)
{
    return (kind == 'u' ? UINT64_C(0x0f1e2d3c4b5a6978) : UINT64_C(0x0123456789abcdef)) & ID_MASK;
}

/* Inverse of an odd k modulo 2^64 by Newton's iteration (each step doubles
 * the number of correct low bits: 3 -> 6 -> ... -> 96). */
static uint64_t id_inverse(uint64_t k)
{
    uint64_t inv = k;
    for (int i = 0; i < 5; i++)
        inv *= 2 - k * inv;
    return inv;
}

void store_id_encode(char kind, int64_t rowid, char out[STORE_ID_TEXT])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t v = (((uint64_t)rowid * id_mul(kind)) & ID_MASK) ^ id_xor(kind);
    for (int i = ID_DIGITS - 1; i >= 0; i--) {
        out[i] = digits[v % 36];
        v /= 36;
    }
    out[ID_DIGITS] = '\0';
}

int64_t store_id_decode(char kind, const char *text, size_t len)
{
    uint64_t v = 0;
    if (len != ID_DIGITS)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'z')
            d = (unsigned)(c - 'a') + 10;
        else
            return -1;
        v = v * 36 + d; /* 36^12 < 2^63: no overflow */
    }
    if (v > ID_MASK)
        return -1;
    uint64_t row = ((v ^ id_xor(kind)) * id_inverse(id_mul(kind))) & ID_MASK;
    if (row == 0 || row >= (uint64_t)ID_MAX_ROW)
        return -1;
    return (int64_t)row;
}

/* ---- release verdicts ---- */

int store_release_put(struct store *s, const struct store_release *r)
{
    sqlite3_stmt *st = s->st[S_REL_PUT];
    sqlite3_bind_text(st, 1, r->upstream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->release, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->weight_bp);
    sqlite3_bind_text(st, 5, r->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->at_ms);
    return exec_stmt(s, S_REL_PUT);
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    rp_snprintf(out, cap, "%s", t ? (const char *)t : "");
}

int store_release_get(struct store *s, const char *upstream, const char *release, struct store_release *out,
                      bool *found)
{
    int rc = RP_ERR;
    sqlite3_stmt *st = s->st[S_REL_GET];
    *found = false;
    sqlite3_bind_text(st, 1, upstream, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, release, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        rp_snprintf(out->upstream, sizeof out->upstream, "%s", upstream);
        rp_snprintf(out->release, sizeof out->release, "%s", release);
        copy_col(st, 0, out->state, sizeof out->state);
        sqlite3_int64 w = sqlite3_column_int64(st, 1);
        out->weight_bp = w < 0 ? 0 : (unsigned)RP_MIN(w, (sqlite3_int64)UINT32_MAX);
        copy_col(st, 2, out->source, sizeof out->source);
        copy_col(st, 3, out->reason, sizeof out->reason);
        out->at_ms = sqlite3_column_int64(st, 4);
        *found = true;
        rc = RP_OK;
    } else if (step == SQLITE_DONE) {
        rc = RP_OK;
    } else {
        store_log(s, "read release verdict");
    }
    stmt_done(st);
    return rc;
}

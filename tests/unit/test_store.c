/*
 * test_store.c — SQLite persistence: minute rollups round-trip (histograms
 * included, a minute split across a restart is added up), daily sums merge
 * folded days with minutes, folding after the retention keeps every count,
 * incidents with updates and affected components round-trip and edit, and
 * a committed write survives the process being killed with SIGKILL, and
 * release verdicts round-trip, also in a database created before their
 * table existed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "statuspage.h"
#include "store.h"
#include "util.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    rp_snprintf(dir, sizeof dir, "/tmp/rampart-store-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    rp_snprintf(path, sizeof path, "%s/status.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    rp_snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct collect {
    struct store_rollup rows[2000];
    size_t n;
};

static void collect_cb(void *arg, const struct store_rollup *r)
{
    struct collect *c = arg;
    if (c->n < RP_ARRAY_LEN(c->rows))
        c->rows[c->n++] = *r;
}

static struct store_rollup row(int cid, int64_t t, uint32_t total, uint32_t errors, uint8_t worst)
{
    struct store_rollup r;
    memset(&r, 0, sizeof r);
    r.cid = cid;
    r.t = t;
    r.total = total;
    r.excluded = 1;
    r.errors = errors;
    r.slow = 2;
    r.worst = worst;
    r.hist[0] = total - errors;
    r.hist[STORE_HIST_BUCKETS - 1] = 7;
    return r;
}

static void test_components(void **state)
{
    (void)state;
    struct store *s = store_open(path);
    assert_non_null(s);
    int a, b, a2;
    int64_t ca, cb, ca2;
    assert_int_equal(store_component_ensure(s, "aaaaaaaaaaaa", "A", 1000, &a, &ca), RP_OK);
    assert_int_equal(store_component_ensure(s, "bbbbbbbbbbbb", "B", 2000, &b, &cb), RP_OK);
    assert_int_equal(store_component_ensure(s, "aaaaaaaaaaaa", "A renamed", 3000, &a2, &ca2), RP_OK);
    assert_int_not_equal(a, b);
    assert_int_equal(a, a2);
    assert_int_equal(ca2, 1000); /* creation time is kept */
    store_close(s);
}

static void test_minutes_roundtrip(void **state)
{
    (void)state;
    struct store *s = store_open(path);
    assert_non_null(s);
    int64_t m0 = 29400000; /* a minute in 2025 */
    struct store_rollup rows[3] = {row(1, m0, 100, 3, STATUSPAGE_OPERATIONAL),
                                   row(1, m0 + 1, 50, 50, STATUSPAGE_MAJOR_OUTAGE),
                                   row(2, m0, 10, 0, STATUSPAGE_OPERATIONAL)};
    assert_int_equal(store_minutes_put(s, rows, 3), RP_OK);
    /* The same minute again (a restart within it): counts add up. */
    struct store_rollup again = row(1, m0, 20, 1, STATUSPAGE_DEGRADED_PERFORMANCE);
    assert_int_equal(store_minutes_put(s, &again, 1), RP_OK);
    store_close(s);

    s = store_open(path);
    assert_non_null(s);
    struct collect *c = calloc(1, sizeof *c);
    assert_int_equal(store_minutes_get(s, 1, m0, m0 + 10, collect_cb, c), RP_OK);
    assert_int_equal(c->n, 2);
    assert_int_equal(c->rows[0].t, m0);
    assert_int_equal(c->rows[0].total, 120);
    assert_int_equal(c->rows[0].errors, 4);
    assert_int_equal(c->rows[0].excluded, 2);
    assert_int_equal(c->rows[0].slow, 4);
    assert_int_equal(c->rows[0].worst, STATUSPAGE_DEGRADED_PERFORMANCE);
    assert_int_equal(c->rows[0].hist[0], 97 + 19);
    assert_int_equal(c->rows[0].hist[STORE_HIST_BUCKETS - 1], 14);
    assert_int_equal(c->rows[1].worst, STATUSPAGE_MAJOR_OUTAGE);
    free(c);
    store_close(s);
}

static void test_fold_400_days(void **state)
{
    (void)state;
    struct store *s = store_open(":memory:");
    assert_non_null(s);
    int cid;
    int64_t created;
    assert_int_equal(store_component_ensure(s, "aaaaaaaaaaaa", "A", 0, &cid, &created), RP_OK);
    assert_int_equal(cid, 1);
    int64_t today = 20416; /* days since the epoch */
    int64_t now_min = today * 1440 + 600;
    /* 410 days of history: two minutes per day, plus today. */
    struct store_rollup *rows = calloc(2 * 411, sizeof *rows);
    size_t n = 0;
    for (int64_t d = today - 410; d <= today; d++) {
        rows[n++] = row(1, d * 1440 + 10, 100, 1, STATUSPAGE_OPERATIONAL);
        rows[n++] = row(1, d * 1440 + 900, 100, d % 7 == 0 ? 60 : 0,
                        d % 7 == 0 ? STATUSPAGE_MAJOR_OUTAGE : STATUSPAGE_OPERATIONAL);
    }
    assert_int_equal(store_minutes_put(s, rows, n), RP_OK);

    struct collect *before = calloc(1, sizeof *before), *after = calloc(1, sizeof *after);
    assert_int_equal(store_days_get(s, 1, today - 420, today + 1, collect_cb, before), RP_OK);
    assert_int_equal(before->n, 411);

    /* Keep 400 days of minutes; fold the rest. */
    int64_t cutoff = now_min - 400 * 1440;
    int folded = store_fold(s, cutoff);
    assert_true(folded > 0);
    assert_int_equal(folded, 2 * 10 + 1);       /* ten whole days, and one minute of the boundary day */
    assert_int_equal(store_fold(s, cutoff), 0); /* idempotent */

    struct collect *m = calloc(1, sizeof *m);
    assert_int_equal(store_minutes_get(s, 1, 0, now_min + 1440, collect_cb, m), RP_OK);
    assert_int_equal(m->n, n - (size_t)folded);
    assert_true(m->rows[0].t >= cutoff);
    free(m);

    /* Daily sums are unchanged by folding, whichever table holds them. */
    assert_int_equal(store_days_get(s, 1, today - 420, today + 1, collect_cb, after), RP_OK);
    assert_int_equal(after->n, before->n);
    for (size_t i = 0; i < after->n; i++) {
        assert_int_equal(after->rows[i].t, before->rows[i].t);
        assert_int_equal(after->rows[i].total, before->rows[i].total);
        assert_int_equal(after->rows[i].errors, before->rows[i].errors);
        assert_int_equal(after->rows[i].slow, before->rows[i].slow);
        assert_int_equal(after->rows[i].excluded, before->rows[i].excluded);
        assert_int_equal(after->rows[i].worst, before->rows[i].worst);
    }
    assert_int_equal(after->rows[0].total, 200);
    free(before);
    free(after);
    free(rows);
    store_close(s);
}

static void make_incident(struct store_incident *inc, struct store_update *u, struct store_affected *a,
                          char (*comps)[STORE_CODE_MAX])
{
    memset(inc, 0, sizeof *inc);
    memset(u, 0, sizeof *u);
    inc->name = "API errors";
    inc->status = STATUSPAGE_INVESTIGATING;
    inc->impact = STATUSPAGE_IMPACT_MAJOR;
    inc->created_ms = inc->updated_ms = inc->started_ms = 1764000000000LL;
    rp_snprintf(comps[0], STORE_CODE_MAX, "chat0000001a");
    rp_snprintf(comps[1], STORE_CODE_MAX, "embed000002b");
    inc->components = comps;
    inc->num_components = 2;
    u->status = STATUSPAGE_INVESTIGATING;
    u->body = "Looking into it.";
    u->created_ms = u->updated_ms = u->display_ms = inc->created_ms;
    rp_snprintf(a[0].code, STORE_CODE_MAX, "chat0000001a");
    a[0].old_status = STATUSPAGE_OPERATIONAL;
    a[0].new_status = STATUSPAGE_MAJOR_OUTAGE;
    u->affected = a;
    u->num_affected = 1;
}

static void test_incidents_roundtrip(void **state)
{
    (void)state;
    struct store *s = store_open(path);
    assert_non_null(s);
    struct store_incident inc;
    struct store_update u;
    struct store_affected a[1];
    char comps[2][STORE_CODE_MAX];
    make_incident(&inc, &u, a, comps);
    assert_int_equal(store_begin(s), RP_OK);
    assert_int_equal(store_incident_insert(s, &inc, &u), RP_OK);
    assert_int_equal(store_commit(s), RP_OK);
    assert_true(inc.id > 0);
    int64_t id = inc.id, first_update = u.id;

    /* A maintenance, to check kinds stay apart. */
    struct store_incident m;
    struct store_update mu;
    make_incident(&m, &mu, a, comps);
    m.maintenance = true;
    m.name = "Upgrade";
    m.status = mu.status = STATUSPAGE_SCHEDULED;
    m.impact = STATUSPAGE_IMPACT_MAINTENANCE;
    m.scheduled_for_ms = 1764100000000LL;
    m.scheduled_until_ms = 1764103600000LL;
    m.auto_transition = true;
    assert_int_equal(store_incident_insert(s, &m, &mu), RP_OK);

    /* Resolve with a second update. */
    struct store_incident got;
    bool found = false;
    assert_int_equal(store_incident_get(s, id, &got, &found), RP_OK);
    assert_true(found);
    got.status = STATUSPAGE_RESOLVED;
    got.resolved_ms = got.updated_ms = inc.created_ms + 60000;
    struct store_update u2 = {0};
    u2.status = STATUSPAGE_RESOLVED;
    u2.body = "Fixed.";
    u2.created_ms = got.resolved_ms;
    assert_int_equal(store_begin(s), RP_OK);
    assert_int_equal(store_incident_save(s, &got), RP_OK);
    assert_int_equal(store_update_insert(s, id, &u2), RP_OK);
    assert_int_equal(store_commit(s), RP_OK);
    store_incident_clear(&got);
    assert_int_equal(store_update_edit(s, id, first_update, "Looking into it (edited).", inc.created_ms + 1, &found),
                     RP_OK);
    assert_true(found);
    assert_int_equal(store_update_edit(s, id + 100, first_update, "x", 0, &found), RP_OK);
    assert_false(found);
    store_close(s);

    s = store_open(path);
    assert_non_null(s);
    struct store_incident *v = NULL;
    size_t n = 0;
    assert_int_equal(store_incidents_load(s, 0, 50, 500, &v, &n), RP_OK);
    assert_int_equal(n, 2);
    const struct store_incident *i0 = NULL, *m0 = NULL;
    for (size_t k = 0; k < n; k++) {
        if (v[k].maintenance)
            m0 = &v[k];
        else
            i0 = &v[k];
    }
    assert_non_null(i0);
    assert_non_null(m0);
    assert_string_equal(i0->name, "API errors");
    assert_int_equal(i0->status, STATUSPAGE_RESOLVED);
    assert_int_equal(i0->resolved_ms, inc.created_ms + 60000);
    assert_int_equal(i0->num_components, 2);
    assert_string_equal(i0->components[1], "embed000002b");
    assert_int_equal(i0->num_updates, 2);
    assert_string_equal(i0->updates[0].body, "Fixed."); /* newest first */
    assert_string_equal(i0->updates[1].body, "Looking into it (edited).");
    assert_int_equal(i0->updates[1].num_affected, 1);
    assert_string_equal(i0->updates[1].affected[0].code, "chat0000001a");
    assert_int_equal(i0->updates[1].affected[0].new_status, STATUSPAGE_MAJOR_OUTAGE);
    assert_int_equal(m0->scheduled_until_ms, 1764103600000LL);
    assert_true(m0->auto_transition);

    struct store_incident copy;
    store_incident_copy(&copy, i0);
    store_incidents_free(v, n);
    assert_string_equal(copy.updates[1].affected[0].code, "chat0000001a");
    store_incident_clear(&copy);

    assert_int_equal(store_incident_get(s, 999999, &got, &found), RP_OK);
    assert_false(found);
    store_close(s);
}

static void test_load_bounds(void **state)
{
    (void)state;
    struct store *s = store_open(":memory:");
    struct store_incident inc;
    struct store_update u;
    struct store_affected a[1];
    char comps[2][STORE_CODE_MAX];
    /* 80 old resolved incidents, 3 open ones. */
    for (int i = 0; i < 83; i++) {
        make_incident(&inc, &u, a, comps);
        inc.created_ms = 1000000 + i;
        if (i < 80) {
            inc.status = STATUSPAGE_RESOLVED;
            inc.resolved_ms = inc.created_ms + 1;
        } else {
            inc.created_ms = 10; /* very old but still open */
        }
        assert_int_equal(store_incident_insert(s, &inc, &u), RP_OK);
    }
    struct store_incident *v = NULL;
    size_t n = 0;
    /* Nothing is recent: the 50 most recent plus every open one. */
    assert_int_equal(store_incidents_load(s, INT64_MAX, 50, 500, &v, &n), RP_OK);
    assert_int_equal(n, 53);
    size_t open = 0;
    for (size_t k = 0; k < n; k++)
        open += v[k].resolved_ms == 0;
    assert_int_equal(open, 3);
    store_incidents_free(v, n);
    /* The cap holds, open ones first. */
    assert_int_equal(store_incidents_load(s, 0, 50, 5, &v, &n), RP_OK);
    assert_int_equal(n, 5);
    assert_int_equal(v[0].resolved_ms, 0);
    assert_int_equal(v[2].resolved_ms, 0);
    store_incidents_free(v, n);
    store_close(s);
}

/* An acknowledged write is one whose commit returned: kill the writer
 * right after, without closing, and read it back. */
static void test_survives_sigkill(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *s = store_open(path);
        if (!s)
            _exit(2);
        struct store_incident inc;
        struct store_update u;
        struct store_affected a[1];
        char comps[2][STORE_CODE_MAX];
        make_incident(&inc, &u, a, comps);
        inc.name = "Written before SIGKILL";
        if (store_begin(s) != RP_OK || store_incident_insert(s, &inc, &u) != RP_OK || store_commit(s) != RP_OK)
            _exit(3);
        struct store_rollup r = row(9, 123456, 42, 0, STATUSPAGE_OPERATIONAL);
        if (store_minutes_put(s, &r, 1) != RP_OK)
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    struct store *s = store_open(path);
    assert_non_null(s);
    struct store_incident *v = NULL;
    size_t n = 0;
    assert_int_equal(store_incidents_load(s, 0, 50, 500, &v, &n), RP_OK);
    bool found = false;
    for (size_t k = 0; k < n; k++)
        if (strcmp(v[k].name, "Written before SIGKILL") == 0)
            found = true;
    assert_true(found);
    store_incidents_free(v, n);
    struct collect *c = calloc(1, sizeof *c);
    assert_int_equal(store_minutes_get(s, 9, 123456, 123457, collect_cb, c), RP_OK);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->rows[0].total, 42);
    free(c);
    store_close(s);
}

static struct store_release verdict(const char *up, const char *rel, const char *state, unsigned w, int64_t at)
{
    struct store_release r;
    memset(&r, 0, sizeof r);
    rp_snprintf(r.upstream, sizeof r.upstream, "%s", up);
    rp_snprintf(r.release, sizeof r.release, "%s", rel);
    rp_snprintf(r.state, sizeof r.state, "%s", state);
    r.weight_bp = w;
    rp_snprintf(r.source, sizeof r.source, "auto");
    rp_snprintf(r.reason, sizeof r.reason, "error ratio 5.83%% vs stable 0.44%% \xe2\x80\x94 %s", rel);
    r.at_ms = at;
    return r;
}

static void expect_verdict(struct store *s, const struct store_release *want)
{
    struct store_release got;
    bool found = false;
    assert_int_equal(store_release_get(s, want->upstream, want->release, &got, &found), RP_OK);
    assert_true(found);
    assert_string_equal(got.upstream, want->upstream);
    assert_string_equal(got.release, want->release);
    assert_string_equal(got.state, want->state);
    assert_int_equal(got.weight_bp, want->weight_bp);
    assert_string_equal(got.source, want->source);
    assert_string_equal(got.reason, want->reason);
    assert_int_equal(got.at_ms, want->at_ms);
}

static void test_release_verdicts(void **state)
{
    (void)state;
    struct store *s = store_open(path);
    assert_non_null(s);
    struct store_release got;
    bool found = true;
    assert_int_equal(store_release_get(s, "chat", "servers-0123456789abcdef", &got, &found), RP_OK);
    assert_false(found);

    struct store_release a = verdict("chat", "servers-0123456789abcdef", "rolled_back", 0, 1764000000123LL);
    struct store_release b = verdict("chat", "v2.4.0", "promoted", 10000, 1764000100000LL);
    struct store_release c = verdict("embed", "servers-0123456789abcdef", "paused", 2500, 1764000200000LL);
    assert_int_equal(store_release_put(s, &a), RP_OK);
    assert_int_equal(store_release_put(s, &b), RP_OK);
    assert_int_equal(store_release_put(s, &c), RP_OK);
    expect_verdict(s, &a);
    expect_verdict(s, &b);
    expect_verdict(s, &c); /* same release id, another upstream: its own row */
    /* A later verdict on the same release replaces the earlier one (a
     * resume after a rollback must not leave the rollback behind). */
    struct store_release a2 = verdict("chat", "servers-0123456789abcdef", "running", 500, 1764000300000LL);
    rp_snprintf(a2.source, sizeof a2.source, "admin");
    assert_int_equal(store_release_put(s, &a2), RP_OK);
    expect_verdict(s, &a2);
    store_close(s);

    /* And it is all there after a restart. */
    s = store_open(path);
    assert_non_null(s);
    expect_verdict(s, &a2);
    expect_verdict(s, &b);
    expect_verdict(s, &c);
    assert_int_equal(store_release_get(s, "chat", "v9", &got, &found), RP_OK);
    assert_false(found);
    store_close(s);
}

/* A database written before release verdicts existed gains the table at
 * the next open and keeps everything it had. */
static void test_release_table_migration(void **state)
{
    (void)state;
    char old[160];
    rp_snprintf(old, sizeof old, "%s/old.db", dir);
    struct store *s = store_open(old);
    assert_non_null(s);
    int cid = 0, cid2 = 0;
    int64_t created = 0, created2 = 0;
    assert_int_equal(store_component_ensure(s, "chat0000001a", "Chat", 1111, &cid, &created), RP_OK);
    store_close(s);
    /* Make it look like the first schema: no verdict table. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE release_verdicts", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    s = store_open(old);
    assert_non_null(s);
    assert_int_equal(store_component_ensure(s, "chat0000001a", "Chat", 2222, &cid2, &created2), RP_OK);
    assert_int_equal(cid2, cid);
    assert_int_equal(created2, 1111);
    struct store_release a = verdict("chat", "servers-00000000000000ff", "rolled_back", 0, 5);
    assert_int_equal(store_release_put(s, &a), RP_OK);
    expect_verdict(s, &a);
    store_close(s);
    /* Opening again is a no-op for the schema. */
    s = store_open(old);
    assert_non_null(s);
    expect_verdict(s, &a);
    store_close(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    assert_null(store_open("/nonexistent-dir/for/sure/status.db"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_components),
        cmocka_unit_test(test_minutes_roundtrip),
        cmocka_unit_test(test_fold_400_days),
        cmocka_unit_test(test_incidents_roundtrip),
        cmocka_unit_test(test_load_bounds),
        cmocka_unit_test(test_survives_sigkill),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_release_verdicts),
        cmocka_unit_test(test_release_table_migration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_status.c — the status model on a deterministic clock: live-status
 * thresholds, hysteresis and "no data"; burn-rate incidents opening and
 * resolving on synthetic traffic; maintenance moving itself at its times;
 * the admin API's validation and effects; configuration errors; and a
 * restart that keeps history and incidents.
 *
 * Every scenario runs a real struct status (in-memory or temporary SQLite
 * database, no event loop) and drives status_observe() and status_tick()
 * with synthetic microseconds; the pinned clock makes them wall time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "admin_status.h"
#include "canary.h"
#include "conf.h"
#include "config.h"
#include "httpd.h"
#include "status.h"
#include "statuspage.h"
#include "util.h"

#define SEC 1000000ULL
#define MIN (60 * SEC)
#define T0 (1764000000ULL * SEC) /* 2025-11-24T16:00:00Z */

static const char base_yaml[] = "status:\n"
                                "  listen: 127.0.0.1:1\n"
                                "  db: \":memory:\"\n"
                                "  page: {name: Test AI, url: \"https://status.test\"}\n"
                                "  refresh: 60s\n"
                                "  live: {window: 60s, min_requests: 5, recover_after: 2m, no_data_after: 5m}\n"
                                "  objective: {target: 99.5, latency: 2s}\n"
                                "  incidents: {resolve_after: 5m}\n"
                                "components:\n"
                                "  - name: Chat\n"
                                "    description: Chat completions\n"
                                "    routes: [/v1/chat/]\n"
                                "  - name: Embeddings\n"
                                "    routes: [/v1/embeddings, /v1/embeddings/batch]\n";

struct fixture {
    struct conf_doc *doc;
    struct status_conf sc;
    struct status *st;
    uint64_t now;
};

static void parse_conf(struct fixture *f, const char *yaml)
{
    f->doc = conf_load_string("test.yaml", yaml, strlen(yaml));
    status_conf_init(&f->sc);
    int rc = status_conf_parse(f->doc, conf_get(conf_root(f->doc), "status"), conf_get(conf_root(f->doc), "components"),
                               NULL, 0, &f->sc);
    if (rc != RP_OK)
        fail_msg("config: %s", conf_error_at(f->doc, 0));
}

static void start(struct fixture *f, const char *yaml)
{
    memset(f, 0, sizeof *f);
    parse_conf(f, yaml);
    f->st = status_create(NULL, &f->sc);
    assert_non_null(f->st);
    f->now = T0;
    status_set_clock(f->st, 0, f->now);
}

static void stop(struct fixture *f)
{
    status_free(f->st);
    status_conf_free(&f->sc);
    conf_free(f->doc);
}

/* `secs` seconds of traffic at rps requests/second to component comp, of
 * which a share `bad` answers 500 (and `slow` takes 3 s to first byte),
 * ticking once a second. */
static void traffic(struct fixture *f, int comp, int secs, int rps, double bad, double slow)
{
    for (int s = 0; s < secs; s++) {
        for (int i = 0; i < rps; i++) {
            double x = (i + 0.5) / rps;
            int code = x < bad ? 500 : 200;
            uint64_t ttfb = (x >= bad && x < bad + slow) ? 3 * SEC : 200000;
            status_observe(f->st, comp, code, ttfb, ttfb + 1000, false, f->now + (uint64_t)i * (SEC / rps));
        }
        f->now += SEC;
        status_tick(f->st, f->now);
    }
}

static void idle(struct fixture *f, int secs)
{
    for (int s = 0; s < secs; s++) {
        f->now += SEC;
        status_tick(f->st, f->now);
    }
}

static json_t *doc_json(struct fixture *f, const char *path)
{
    size_t len;
    const char *etag;
    status_refresh(f->st);
    const char *body = status_snapshot(f->st, path, &len, &etag);
    assert_non_null(body);
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    if (!root)
        fail_msg("%s: %s", path, err.text);
    return root;
}

static int unresolved_count(struct fixture *f)
{
    json_t *root = doc_json(f, "/api/v2/incidents/unresolved.json");
    int n = (int)json_array_size(json_object_get(root, "incidents"));
    json_decref(root);
    return n;
}

/* ---- pure state machine ---- */

static void test_classify(void **state)
{
    (void)state;
    struct status_conf sc;
    status_conf_init(&sc);
    struct status_counts w = {100, 0, 0};
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_OPERATIONAL);
    w = (struct status_counts){100, 0, 5}; /* 95% good: at the threshold, not below */
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_OPERATIONAL);
    w = (struct status_counts){100, 0, 6};
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_DEGRADED_PERFORMANCE);
    w = (struct status_counts){100, 10, 0}; /* 90% available */
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_DEGRADED_PERFORMANCE);
    w = (struct status_counts){100, 11, 0};
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_PARTIAL_OUTAGE);
    w = (struct status_counts){100, 51, 0};
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_MAJOR_OUTAGE);
    w = (struct status_counts){100, 0, 100}; /* slow but answering */
    assert_int_equal(status_live_classify(&sc, &w), STATUSPAGE_DEGRADED_PERFORMANCE);
    w = (struct status_counts){4, 4, 0}; /* below min_requests: no verdict */
    assert_int_equal(status_live_classify(&sc, &w), -1);
    w = (struct status_counts){0, 0, 0};
    assert_int_equal(status_live_classify(&sc, &w), -1);
}

static void test_hysteresis(void **state)
{
    (void)state;
    struct status_conf sc;
    status_conf_init(&sc); /* recover_after 2m, no_data_after 5m */
    struct status_live l;
    status_live_init(&l);
    struct status_counts ok = {100, 0, 0}, part = {100, 20, 0}, major = {100, 80, 0}, slow = {100, 0, 30};
    uint64_t t = 1000 * SEC;

    assert_int_equal(l.level, STATUSPAGE_NO_DATA);
    assert_true(status_live_step(&l, &sc, &ok, t));
    assert_int_equal(l.level, STATUSPAGE_OPERATIONAL);
    /* Worse: immediately. */
    assert_true(status_live_step(&l, &sc, &major, t += SEC));
    assert_int_equal(l.level, STATUSPAGE_MAJOR_OUTAGE);
    /* Better: not before the quiet period... */
    for (int i = 0; i < 119; i++)
        assert_false(status_live_step(&l, &sc, &ok, t += SEC));
    assert_int_equal(l.level, STATUSPAGE_MAJOR_OUTAGE);
    /* ...a relapse restarts it... */
    assert_false(status_live_step(&l, &sc, &major, t += SEC));
    for (int i = 0; i < 60; i++)
        status_live_step(&l, &sc, &ok, t += SEC);
    assert_int_equal(l.level, STATUSPAGE_MAJOR_OUTAGE);
    /* ...and recovery goes only as far as the worst seen while quiet. */
    status_live_step(&l, &sc, &part, t += SEC);
    for (int i = 0; i < 100; i++)
        status_live_step(&l, &sc, &ok, t += SEC);
    assert_int_equal(l.level, STATUSPAGE_PARTIAL_OUTAGE);
    for (int i = 0; i < 121; i++)
        status_live_step(&l, &sc, &ok, t += SEC);
    assert_int_equal(l.level, STATUSPAGE_OPERATIONAL);
    /* Flapping around a threshold shows the worse state throughout. */
    for (int i = 0; i < 300; i++) {
        status_live_step(&l, &sc, i % 20 < 10 ? &slow : &ok, t += SEC);
        if (i >= 1)
            assert_int_equal(l.level, STATUSPAGE_DEGRADED_PERFORMANCE);
    }
}

static void test_no_data(void **state)
{
    (void)state;
    struct status_conf sc;
    status_conf_init(&sc);
    struct status_live l;
    status_live_init(&l);
    struct status_counts none = {0, 0, 0}, few = {3, 0, 0}, major = {50, 50, 0}, ok = {50, 0, 0};
    uint64_t t = 5000 * SEC;
    /* Silence and a trickle below min_requests are not "operational". */
    assert_false(status_live_step(&l, &sc, &none, t));
    assert_false(status_live_step(&l, &sc, &few, t += SEC));
    assert_int_equal(l.level, STATUSPAGE_NO_DATA);
    status_live_step(&l, &sc, &major, t += SEC);
    assert_int_equal(l.level, STATUSPAGE_MAJOR_OUTAGE);
    /* Clients giving up is not recovery: the outage holds... */
    for (int i = 0; i < 299; i++)
        status_live_step(&l, &sc, &none, t += SEC);
    assert_int_equal(l.level, STATUSPAGE_MAJOR_OUTAGE);
    /* ...until silence has lasted no_data_after; the last verdict is kept. */
    assert_true(status_live_step(&l, &sc, &none, t += SEC));
    assert_int_equal(l.level, STATUSPAGE_NO_DATA);
    assert_int_equal(l.last_known, STATUSPAGE_MAJOR_OUTAGE);
    /* Fresh traffic gives a verdict at once. */
    assert_true(status_live_step(&l, &sc, &ok, t += SEC));
    assert_int_equal(l.level, STATUSPAGE_OPERATIONAL);
}

static void test_burn_rate(void **state)
{
    (void)state;
    struct status_counts w = {1000, 5, 0};
    assert_true(fabs(status_burn_rate(&w, 0.995) - 1.0) < 1e-9);
    w = (struct status_counts){1000, 36, 36};
    assert_true(fabs(status_burn_rate(&w, 0.995) - 14.4) < 1e-9);
    w = (struct status_counts){0, 0, 0};
    assert_true(status_burn_rate(&w, 0.995) == 0.0);
}

/* ---- the model driven by traffic ---- */

static void test_outage_and_auto_incident(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_NO_DATA);
    traffic(&f, 0, 6 * 3600, 10, 0, 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_OPERATIONAL);
    assert_int_equal(status_component_status(f.st, 1), STATUSPAGE_NO_DATA);

    /* 100% errors: an outage shows within 60 s. */
    int major_at = -1, partial_at = -1;
    for (int s = 1; s <= 60; s++) {
        traffic(&f, 0, 1, 10, 1.0, 0);
        int lv = status_component_status(f.st, 0);
        if (lv >= STATUSPAGE_PARTIAL_OUTAGE && partial_at < 0)
            partial_at = s;
        if (lv == STATUSPAGE_MAJOR_OUTAGE && major_at < 0)
            major_at = s;
    }
    assert_true(partial_at > 0 && partial_at <= 15);
    assert_true(major_at > 0 && major_at <= 40);
    json_t *root = doc_json(&f, "/api/v2/components.json");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(root, "components"), 0), "status")),
        "major_outage");
    json_decref(root);
    root = doc_json(&f, "/api/v2/status.json");
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "status"), "indicator")), "critical");
    json_decref(root);

    /* 14.4x over 1 h needs 7.2% of the hour bad: about 4.3 minutes. */
    assert_int_equal(unresolved_count(&f), 0);
    traffic(&f, 0, 180, 10, 1.0, 0);
    assert_int_equal(unresolved_count(&f), 0);
    traffic(&f, 0, 90, 10, 1.0, 0);
    assert_int_equal(unresolved_count(&f), 1);
    root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    json_t *inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "name")), "Elevated error rate on Chat");
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "investigating");
    assert_string_equal(json_string_value(json_object_get(inc, "impact")), "critical");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(inc, "components"), 0), "name")), "Chat");
    json_decref(root);

    /* Recovery: operational after the quiet period; the incident stays
     * open while the 5-minute window still burns (about 280 s) and then
     * for resolve_after (5 min) of sustained recovery. */
    int left_major = -1, operational_at = -1;
    for (int s = 1; s <= 200; s++) {
        traffic(&f, 0, 1, 10, 0, 0);
        int lv = status_component_status(f.st, 0);
        if (lv != STATUSPAGE_MAJOR_OUTAGE && left_major < 0)
            left_major = s;
        if (lv == STATUSPAGE_OPERATIONAL && operational_at < 0)
            operational_at = s;
        if (left_major > 0)
            assert_true(lv <= STATUSPAGE_PARTIAL_OUTAGE); /* only ever steps down */
    }
    assert_true(left_major >= 120); /* no sooner than the quiet period */
    assert_true(operational_at > 0 && operational_at <= 190);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_OPERATIONAL);
    /* The incident follows: monitoring as soon as the component is
     * operational again, with the measured figures. */
    assert_int_equal(unresolved_count(&f), 1);
    root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "monitoring");
    json_t *ups = json_object_get(inc, "incident_updates");
    assert_int_equal(json_array_size(ups), 2);
    const char *mbody = json_string_value(json_object_get(json_array_get(ups, 0), "body"));
    assert_non_null(strstr(mbody, "100.0% were answered well"));
    json_decref(root);
    traffic(&f, 0, 300, 10, 0, 0);
    assert_int_equal(unresolved_count(&f), 1);
    traffic(&f, 0, 150, 10, 0, 0);
    assert_int_equal(unresolved_count(&f), 0);
    root = doc_json(&f, "/api/v2/incidents.json");
    inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "resolved");
    assert_false(json_is_null(json_object_get(inc, "resolved_at")));
    assert_int_equal(json_array_size(json_object_get(inc, "incident_updates")), 3);
    json_decref(root);
    stop(&f);
}

/* A relapse while monitoring goes back to investigating in the same
 * incident, and recovers again to monitoring: one incident, one story. */
static void test_auto_incident_relapse(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    traffic(&f, 0, 6 * 3600, 10, 0, 0);
    traffic(&f, 0, 330, 10, 1.0, 0);
    assert_int_equal(unresolved_count(&f), 1);
    json_t *root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    char id[64];
    rp_snprintf(id, sizeof id, "%s",
                json_string_value(json_object_get(json_array_get(json_object_get(root, "incidents"), 0), "id")));
    json_decref(root);
    traffic(&f, 0, 200, 10, 0, 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_OPERATIONAL);
    root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(root, "incidents"), 0), "status")),
        "monitoring");
    json_decref(root);

    /* failing again */
    traffic(&f, 0, 30, 10, 1.0, 0);
    assert_true(status_component_status(f.st, 0) > STATUSPAGE_OPERATIONAL);
    assert_int_equal(unresolved_count(&f), 1);
    root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    json_t *inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "id")), id);
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "investigating");
    json_t *ups = json_object_get(inc, "incident_updates");
    assert_int_equal(json_array_size(ups), 3);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(ups, 0), "body")), "failing again"));
    json_decref(root);

    /* and back */
    traffic(&f, 0, 200, 10, 0, 0);
    root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "id")), id);
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "monitoring");
    json_decref(root);
    stop(&f);
}

static void test_slow_burn_rule(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    /* 4% bad is 8x: under 14.4x, so only the 6 h / 30 min rule can fire,
     * and only once the long window holds enough of it. */
    traffic(&f, 0, 5 * 3600, 25, 0.0, 0);
    traffic(&f, 0, 3600, 25, 0.04, 0);
    assert_int_equal(unresolved_count(&f), 0);
    /* 96% good is "operational" right now, yet the budget burns 8x. */
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_OPERATIONAL);
    traffic(&f, 0, 4 * 3600, 25, 0.04, 0);
    assert_int_equal(unresolved_count(&f), 1);
    json_t *root = doc_json(&f, "/api/v2/incidents/unresolved.json");
    json_t *inc = json_array_get(json_object_get(root, "incidents"), 0);
    assert_string_equal(json_string_value(json_object_get(inc, "impact")), "minor");
    json_decref(root);
    stop(&f);
}

static void test_no_burn_below_budget(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    traffic(&f, 0, 2 * 3600, 20, 0.0025, 0); /* 0.5x burn: within budget */
    assert_int_equal(unresolved_count(&f), 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_OPERATIONAL);
    stop(&f);
}

static void test_auto_off(void **state)
{
    (void)state;
    struct fixture f;
    char yaml[2048];
    rp_snprintf(yaml, sizeof yaml, "%s", base_yaml);
    char *p = strstr(yaml, "{resolve_after: 5m}");
    memcpy(p, "{auto: false}      ", 19);
    start(&f, yaml);
    traffic(&f, 0, 900, 10, 1.0, 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_MAJOR_OUTAGE);
    assert_int_equal(unresolved_count(&f), 0);
    stop(&f);
}

static void test_sample_classes(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    /* Quota refusals alone: neither good nor bad, so still no data. */
    for (int s = 0; s < 90; s++) {
        for (int i = 0; i < 10; i++)
            status_observe(f.st, 0, 429, 1000, 2000, true, f.now);
        f.now += SEC;
        status_tick(f.st, f.now);
    }
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_NO_DATA);
    /* Slow answers: degraded, not an outage. */
    traffic(&f, 0, 60, 10, 0, 1.0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_DEGRADED_PERFORMANCE);
    /* Our own overload 503s are errors. */
    for (int s = 0; s < 60; s++) {
        for (int i = 0; i < 10; i++)
            status_observe(f.st, 1, 503, 0, 100, false, f.now);
        f.now += SEC;
        status_tick(f.st, f.now);
    }
    assert_int_equal(status_component_status(f.st, 1), STATUSPAGE_MAJOR_OUTAGE);
    /* Out-of-range components are ignored. */
    status_observe(f.st, -1, 500, 0, 0, false, f.now);
    status_observe(f.st, 99, 500, 0, 0, false, f.now);
    status_observe(NULL, 0, 500, 0, 0, false, f.now);
    stop(&f);
}

static void test_component_for(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    assert_int_equal(status_component_for(f.st, 0, "/v1/chat/completions", 20), 0);
    assert_int_equal(status_component_for(f.st, 0, "/v1/embeddings", 14), 1);
    assert_int_equal(status_component_for(f.st, 0, "/v1/embeddings/batch/x", 22), 1);
    assert_int_equal(status_component_for(f.st, 0, "/v1/models", 10), -1);
    assert_int_equal(status_component_for(NULL, 0, "/v1/chat/", 9), -1);
    stop(&f);
}

/* ---- admin API ---- */

struct resp {
    struct httpd_response r;
    json_t *json;
};

static void call(struct fixture *f, struct resp *out, const char *method, const char *path, const char *body)
{
    memset(out, 0, sizeof *out);
    sbuf_init(&out->r.headers, 0);
    sbuf_init(&out->r.body, 0);
    admin_status_request(f->st, method, path, body, &out->r);
    json_error_t err;
    out->json = json_loadb(out->r.body.data ? out->r.body.data : "", out->r.body.len, 0, &err);
    if (!out->json)
        fail_msg("%s %s -> %d: not JSON: %.200s", method, path, out->r.status, out->r.body.data);
}

static void done(struct resp *r)
{
    json_decref(r->json);
    sbuf_free(&r->r.headers);
    sbuf_free(&r->r.body);
}

static void expect_error(struct fixture *f, const char *method, const char *path, const char *body, int http,
                         const char *param, const char *code)
{
    struct resp r;
    call(f, &r, method, path, body);
    if (r.r.status != http)
        fail_msg("%s %s %s: status %d, want %d: %s", method, path, body ? body : "", r.r.status, http, r.r.body.data);
    json_t *e = json_object_get(r.json, "error");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    if (param)
        assert_string_equal(json_string_value(json_object_get(e, "param")), param);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_true(strlen(json_string_value(json_object_get(e, "message"))) > 10);
    done(&r);
}

static void test_admin_validation(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    const char *P = "/api/v1/incidents";
    expect_error(&f, "POST", P, "", 400, NULL, "invalid_json");
    expect_error(&f, "POST", P, "{\"name\":", 400, NULL, "invalid_json");
    expect_error(&f, "POST", P, "[1]", 400, NULL, "invalid_type");
    expect_error(&f, "POST", P, "{\"body\":\"x\"}", 400, "name", "missing_field");
    expect_error(&f, "POST", P, "{\"name\":\"x\"}", 400, "body", "missing_field");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"colour\":1}", 400, "colour", "unknown_field");
    expect_error(&f, "POST", P, "{\"name\":7,\"body\":\"y\"}", 400, "name", "invalid_type");
    expect_error(&f, "POST", P, "{\"name\":\"   \",\"body\":\"y\"}", 400, "name", "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"a\\nb\",\"body\":\"y\"}", 400, "name", "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"status\":\"fixed\"}", 400, "status", "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"status\":\"postmortem\"}", 400, "status",
                 "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"impact\":\"huge\"}", 400, "impact", "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"components\":{\"Nope\":\"major_outage\"}}", 400,
                 "components.Nope", "unknown_component");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"components\":{\"Chat\":\"down\"}}", 400,
                 "components.Chat", "invalid_value");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"components\":[\"Chat\",\"chat\"]}", 400,
                 "components[1]", "duplicate_component");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"y\",\"components\":\"Chat\"}", 400, "components",
                 "invalid_type");
    char big[12000];
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"name\":\"x\",\"body\":\"", 20);
    memcpy(big + sizeof big - 3, "\"}", 3);
    expect_error(&f, "POST", P, big, 400, "body", "too_long");
    expect_error(&f, "GET", "/api/v1/incidents/nosuchid0000", NULL, 404, "id", "not_found");
    expect_error(&f, "PUT", P, "{}", 405, NULL, "method_not_allowed");
    expect_error(&f, "GET", "/api/v1/incidentsx", NULL, 404, NULL, "not_found");

    const char *M = "/api/v1/maintenances";
    expect_error(&f, "POST", M, "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T17:00:00Z\"}", 400, "scheduled_until",
                 "missing_field");
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"soon\",\"scheduled_until\":\"2025-11-24T18:00:00Z\"}", 400,
                 "scheduled_for", "invalid_value");
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T17:00:00\",\"scheduled_until\":"
                 "\"2025-11-24T18:00:00Z\"}",
                 400, "scheduled_for", "invalid_value");
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T18:00:00Z\",\"scheduled_until\":"
                 "\"2025-11-24T17:00:00Z\"}",
                 400, "scheduled_until", "invalid_value");
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T10:00:00Z\",\"scheduled_until\":"
                 "\"2025-11-24T11:00:00Z\"}",
                 400, "scheduled_until", "invalid_value"); /* in the past */
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T17:00:00Z\",\"scheduled_until\":"
                 "\"2025-12-24T17:00:00Z\"}",
                 400, "scheduled_until", "invalid_value"); /* longer than 7 days */
    expect_error(&f, "POST", M,
                 "{\"name\":\"m\",\"scheduled_for\":\"2025-11-24T17:00:00Z\",\"scheduled_until\":"
                 "\"2025-11-24T18:00:00Z\",\"components\":{\"Chat\":\"major_outage\"}}",
                 400, "components.Chat", "invalid_value");
    assert_int_equal(unresolved_count(&f), 0);
    stop(&f);
}

/* n copies of a 3-byte character, so that byte limits (60, 80, 96, 320)
 * fall inside a character unless the cut is made on a boundary. */
static void euros(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + 3 * i, "\xe2\x82\xac", 3);
    out[3 * n] = '\0';
}

/* Error answers quote what the operator sent: they must stay valid UTF-8
 * (the answer is JSON, which `call` parses strictly) and invalid UTF-8 in
 * a body is refused before anything else with where it is. */
static void test_admin_utf8(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    const char *P = "/api/v1/incidents";
    char e[400], body[1200];
    euros(e, 101); /* 303 bytes */

    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\",\"components\":{\"%s\":\"major_outage\"}}", e);
    expect_error(&f, "POST", P, body, 400, NULL, "unknown_component");
    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\",\"components\":[\"%s\"]}", e);
    expect_error(&f, "POST", P, body, 400, "components[0]", "unknown_component");
    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\",\"%s\":1}", e);
    expect_error(&f, "POST", P, body, 400, NULL, "unknown_field");
    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\",\"status\":\"%s\"}", e);
    expect_error(&f, "POST", P, body, 400, "status", "invalid_value");
    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\",\"components\":{\"Chat\":\"%s\"}}", e);
    expect_error(&f, "POST", P, body, 400, "components.Chat", "invalid_value");
    rp_snprintf(body, sizeof body,
                "{\"name\":\"m\",\"scheduled_for\":\"%s\",\"scheduled_until\":\"2025-11-24T18:00:00Z\"}", e);
    expect_error(&f, "POST", "/api/v1/maintenances", body, 400, "scheduled_for", "invalid_value");
    /* A parse error next to multi-byte text: the parser's own message
     * quotes the text near the error. */
    rp_snprintf(body, sizeof body, "{\"name\":\"x\",\"body\":\"y\" \"%s\"}", e);
    expect_error(&f, "POST", P, body, 400, NULL, "invalid_json");

    /* Invalid UTF-8 anywhere: a precise 400 naming the offset. */
    struct resp r;
    call(&f, &r, "POST", P, "{\"name\":\"caf\xc3\",\"body\":\"y\"}");
    assert_int_equal(r.r.status, 400);
    json_t *err = json_object_get(r.json, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "invalid_utf8");
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "byte 0xC3 at offset 12"));
    done(&r);
    expect_error(&f, "POST", P, "{\"name\":\"\xed\xa0\x80\",\"body\":\"y\"}", 400, NULL, "invalid_utf8");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"\xff\"}", 400, NULL, "invalid_utf8");
    expect_error(&f, "POST", P, "{\"name\":\"x\",\"body\":\"\xc0\xbc\"}", 400, NULL, "invalid_utf8");
    assert_int_equal(unresolved_count(&f), 0);

    /* Valid multi-byte text is accepted and kept whole. */
    rp_snprintf(body, sizeof body, "{\"name\":\"%.150s\",\"body\":\"%s \xef\xbf\xbe\"}", e, e);
    call(&f, &r, "POST", P, body);
    assert_int_equal(r.r.status, 201);
    assert_int_equal(strlen(json_string_value(json_object_get(r.json, "name"))), 150);
    done(&r);
    assert_int_equal(unresolved_count(&f), 1);
    stop(&f);
}

static void test_reported_incident_shows(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    assert_int_equal(unresolved_count(&f), 0);
    assert_int_equal(
        status_report_incident(f.st, 0, "New release of chat rolled back", "bad build \x01\xef\xbf\xbf", f.now), RP_OK);
    /* At once, not after the next unrelated write. */
    assert_int_equal(unresolved_count(&f), 1);
    size_t len;
    const char *etag;
    const char *atom = status_snapshot(f.st, "/history.atom", &len, &etag);
    assert_non_null(atom);
    assert_non_null(memmem(atom, len, "New release of chat rolled back", 31));
    assert_null(memmem(atom, len, "\x01", 1));
    assert_null(memmem(atom, len, "\xef\xbf\xbf", 3));
    stop(&f);
}

/* "operational" in an operator's update is no evidence: written over a
 * silence (no traffic, nothing measured) it must not turn the component
 * green, and written over a measured outage it changes nothing.  A worse
 * statement still shows at once. */
static void test_operator_cannot_paint_green(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_NO_DATA);

    struct resp r;
    call(&f, &r, "POST", "/api/v1/incidents",
         "{\"name\":\"Checking\",\"body\":\"All fine, we think.\",\"components\":{\"Chat\":\"operational\"}}");
    assert_int_equal(r.r.status, 201);
    char path[128];
    rp_snprintf(path, sizeof path, "/api/v1/incidents/%s/updates", json_string_value(json_object_get(r.json, "id")));
    done(&r);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_NO_DATA);

    /* measured outage, then the same statement again */
    traffic(&f, 0, 120, 10, 1.0, 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_MAJOR_OUTAGE);
    call(&f, &r, "POST", path,
         "{\"status\":\"monitoring\",\"body\":\"Fixed.\",\"components\":{\"Chat\":\"operational\"}}");
    assert_int_equal(r.r.status, 201);
    done(&r);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_MAJOR_OUTAGE);

    /* worse than measured shows, whatever was measured */
    traffic(&f, 0, 400, 10, 0, 0);
    call(&f, &r, "POST", path,
         "{\"status\":\"identified\",\"body\":\"Slow.\",\"components\":{\"Chat\":\"degraded_performance\"}}");
    assert_int_equal(r.r.status, 201);
    done(&r);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_DEGRADED_PERFORMANCE);
    stop(&f);
}

static void test_admin_incident_lifecycle(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    traffic(&f, 0, 120, 10, 0, 0);
    traffic(&f, 1, 120, 10, 0, 0);

    struct resp r;
    call(&f, &r, "POST", "/api/v1/incidents",
         "{\"name\":\"Login <failures>\",\"body\":\"We are looking.\",\"components\":{\"Chat\":\"partial_outage\"}}");
    assert_int_equal(r.r.status, 201);
    char id[32];
    rp_snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "investigating");
    assert_string_equal(json_string_value(json_object_get(r.json, "impact")), "major");
    json_t *u = json_array_get(json_object_get(r.json, "incident_updates"), 0);
    json_t *a = json_array_get(json_object_get(u, "affected_components"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "old_status")), "operational");
    assert_string_equal(json_string_value(json_object_get(a, "new_status")), "partial_outage");
    done(&r);
    /* The operator's statement makes the component look worse at once... */
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_PARTIAL_OUTAGE);
    assert_int_equal(unresolved_count(&f), 1);

    char path[128];
    rp_snprintf(path, sizeof path, "/api/v1/incidents/%s/updates", id);
    expect_error(&f, "POST", path, "{\"status\":\"postmortem\",\"body\":\"x\"}", 400, "status", "invalid_transition");
    expect_error(&f, "POST", path, "{\"status\":\"identified\"}", 400, "body", "missing_field");
    call(&f, &r, "POST", path, "{\"status\":\"identified\",\"body\":\"Found it.\"}");
    assert_int_equal(r.r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "identified");
    done(&r);
    call(&f, &r, "POST", path,
         "{\"status\":\"monitoring\",\"body\":\"Fix deployed.\",\"components\":"
         "{\"Chat\":\"operational\"}}");
    assert_false(json_is_null(json_object_get(r.json, "monitoring_at")));
    done(&r);
    /* ...but can never make it look better than measured. */
    traffic(&f, 0, 120, 10, 1.0, 0);
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_MAJOR_OUTAGE);
    traffic(&f, 0, 400, 10, 0, 0);
    call(&f, &r, "POST", path, "{\"status\":\"resolved\",\"body\":\"All good.\"}");
    assert_false(json_is_null(json_object_get(r.json, "resolved_at")));
    u = json_array_get(json_object_get(r.json, "incident_updates"), 0);
    char upath[160];
    rp_snprintf(upath, sizeof upath, "%s/%s", path, json_string_value(json_object_get(u, "id")));
    done(&r);
    call(&f, &r, "POST", path, "{\"status\":\"postmortem\",\"body\":\"What happened.\"}");
    assert_int_equal(r.r.status, 201);
    done(&r);

    /* Edit text: the incident's name and an update's body. */
    rp_snprintf(path, sizeof path, "/api/v1/incidents/%s", id);
    expect_error(&f, "PATCH", path, "{}", 400, NULL, "missing_field");
    call(&f, &r, "PATCH", path, "{\"name\":\"Login failures\"}");
    assert_int_equal(r.r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Login failures");
    done(&r);
    call(&f, &r, "PATCH", upath, "{\"body\":\"All good now.\"}");
    assert_int_equal(r.r.status, 200);
    done(&r);
    call(&f, &r, "GET", path, NULL);
    assert_int_equal(r.r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "incident_updates")), 5);
    done(&r);

    json_t *root = doc_json(&f, "/api/v2/incidents.json");
    json_t *is = json_object_get(root, "incidents"), *inc = NULL;
    for (size_t i = 0; i < json_array_size(is); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(is, i), "id")), id) == 0)
            inc = json_array_get(is, i);
    assert_non_null(inc);
    assert_string_equal(json_string_value(json_object_get(inc, "name")), "Login failures");
    assert_string_equal(json_string_value(json_object_get(inc, "status")), "postmortem");
    json_decref(root);
    /* Maintenance ids are not incident ids. */
    rp_snprintf(path, sizeof path, "/api/v1/maintenances/%s", id);
    expect_error(&f, "GET", path, NULL, 404, "id", "not_found");
    size_t len;
    const char *etag;
    const char *html = status_snapshot(f.st, "/", &len, &etag);
    assert_non_null(strstr(html, "Login failures"));
    stop(&f);
}

static void test_maintenance_transitions(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    traffic(&f, 1, 60, 10, 0, 0);
    char body[512], start_s[32], end_s[32];
    statuspage_time((int64_t)(f.now / 1000) + 120000, start_s);
    statuspage_time((int64_t)(f.now / 1000) + 300000, end_s);
    rp_snprintf(body, sizeof body,
                "{\"name\":\"Index rebuild\",\"body\":\"Embeddings will be read-only.\",\"scheduled_for\":\"%s\","
                "\"scheduled_until\":\"%s\",\"components\":[\"Embeddings\"]}",
                start_s, end_s);
    struct resp r;
    call(&f, &r, "POST", "/api/v1/maintenances", body);
    assert_int_equal(r.r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "scheduled");
    assert_string_equal(json_string_value(json_object_get(r.json, "impact")), "maintenance");
    done(&r);

    /* Announced before it starts. */
    json_t *root = doc_json(&f, "/api/v2/scheduled-maintenances/upcoming.json");
    assert_int_equal(json_array_size(json_object_get(root, "scheduled_maintenances")), 1);
    json_decref(root);
    size_t len;
    const char *etag;
    assert_non_null(strstr(status_snapshot(f.st, "/", &len, &etag), "Index rebuild"));

    traffic(&f, 1, 119, 10, 0, 0);
    assert_int_equal(status_component_status(f.st, 1), STATUSPAGE_OPERATIONAL);
    traffic(&f, 1, 61, 10, 0.7, 0); /* errors during maintenance: expected, shown as maintenance */
    assert_int_equal(status_component_status(f.st, 1), STATUSPAGE_UNDER_MAINTENANCE);
    root = doc_json(&f, "/api/v2/scheduled-maintenances/active.json");
    json_t *m = json_array_get(json_object_get(root, "scheduled_maintenances"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "status")), "in_progress");
    json_decref(root);
    root = doc_json(&f, "/api/v2/components.json");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(root, "components"), 1), "status")),
        "under_maintenance");
    json_decref(root);
    assert_int_equal(unresolved_count(&f), 0); /* no automatic incident during maintenance */

    traffic(&f, 1, 180, 10, 0, 0);
    root = doc_json(&f, "/api/v2/scheduled-maintenances.json");
    m = json_array_get(json_object_get(root, "scheduled_maintenances"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "status")), "completed");
    assert_int_equal(json_array_size(json_object_get(m, "incident_updates")), 3);
    json_decref(root);
    assert_int_not_equal(status_component_status(f.st, 1), STATUSPAGE_UNDER_MAINTENANCE);
    root = doc_json(&f, "/api/v2/scheduled-maintenances/active.json");
    assert_int_equal(json_array_size(json_object_get(root, "scheduled_maintenances")), 0);
    json_decref(root);
    stop(&f);
}

static void test_etag_stable(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, base_yaml);
    size_t l1, l2;
    const char *e1, *e2;
    status_refresh(f.st);
    status_snapshot(f.st, "/api/v2/status.json", &l1, &e1);
    char first[32];
    rp_snprintf(first, sizeof first, "%s", e1);
    idle(&f, 10);
    status_refresh(f.st);
    status_snapshot(f.st, "/api/v2/status.json", &l2, &e2);
    assert_string_equal(first, e2); /* nothing changed: same tag, so 304s work */
    assert_null(status_snapshot(f.st, "/api/v2/nope.json", &l1, &e1));
    assert_non_null(status_snapshot(f.st, "/index.html", &l1, &e1));
    stop(&f);
}

static void test_restart_keeps_history(void **state)
{
    (void)state;
    char dir[] = "/tmp/rampart-status-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml[2048], db[128];
    rp_snprintf(db, sizeof db, "%s/status.db", dir);
    rp_snprintf(yaml, sizeof yaml, "%s", base_yaml);
    char *p = strstr(yaml, "\":memory:\"");
    char tail[2048];
    rp_snprintf(tail, sizeof tail, "%s", p + strlen("\":memory:\""));
    rp_snprintf(p, sizeof yaml - (size_t)(p - yaml), "\"%s\"%s", db, tail);

    struct fixture f;
    start(&f, yaml);
    traffic(&f, 0, 600, 10, 0.5, 0); /* half bad for ten minutes */
    struct resp r;
    call(&f, &r, "POST", "/api/v1/incidents", "{\"name\":\"Kept\",\"body\":\"Survives restarts.\"}");
    assert_int_equal(r.r.status, 201);
    done(&r);
    uint64_t now = f.now;
    stop(&f);

    memset(&f, 0, sizeof f);
    parse_conf(&f, yaml);
    f.st = status_create(NULL, &f.sc);
    assert_non_null(f.st);
    f.now = now + 5 * SEC;
    status_set_clock(f.st, 0, f.now);
    json_t *root = doc_json(&f, "/api/v2/components.json");
    json_t *c0 = json_array_get(json_object_get(root, "components"), 0);
    double up = json_real_value(json_object_get(c0, "rampart_uptime_90d"));
    assert_true(up > 49.0 && up < 51.0);
    json_decref(root);
    root = doc_json(&f, "/api/v2/incidents.json");
    json_t *is = json_object_get(root, "incidents");
    bool kept = false;
    for (size_t i = 0; i < json_array_size(is); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(is, i), "name")), "Kept") == 0)
            kept = true;
    assert_true(kept);
    json_decref(root);
    /* After restart the live state starts over: no data until traffic. */
    assert_int_equal(status_component_status(f.st, 0), STATUSPAGE_NO_DATA);
    stop(&f);

    char cmd[300];
    rp_snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- release verdicts across restarts ---- */

static void db_yaml(char *dir, char *yaml, size_t cap)
{
    char db[128], tail[2048];
    assert_non_null(mkdtemp(dir));
    rp_snprintf(db, sizeof db, "%s/status.db", dir);
    rp_snprintf(yaml, cap, "%s", base_yaml);
    char *p = strstr(yaml, "\":memory:\"");
    rp_snprintf(tail, sizeof tail, "%s", p + strlen("\":memory:\""));
    rp_snprintf(p, cap - (size_t)(p - yaml), "\"%s\"%s", db, tail);
}

/* An upstream with two stable servers and `ncanary` canary servers from
 * port 9003 on. */
static void upstream_conf(struct config_upstream *u, size_t ncanary, const char *label)
{
    memset(u, 0, sizeof *u);
    u->name = "chat";
    u->num_servers = 2 + ncanary;
    for (size_t i = 0; i < u->num_servers; i++) {
        rp_snprintf(u->servers[i].addr.text, sizeof u->servers[i].addr.text, "127.0.0.1:%zu", 9001 + i);
        u->servers[i].weight = 1;
        u->servers[i].group = i >= 2;
    }
    canary_conf_default(&u->canary);
    if (label)
        rp_snprintf(u->canary.release, sizeof u->canary.release, "%s", label);
    u->has_canary = true;
}

/* One process lifetime: start the status store, attach a fresh canary of
 * upstream u, run `act` on it, detach and stop.  Returns the canary's
 * state as it was right after attaching. */
struct life {
    enum canary_state state_at_start;
    unsigned weight_at_start;
    char reason_at_start[CANARY_REASON_MAX];
    int64_t since_at_start;
};

static void act_rollback(struct canary *c);

static void lifetime(const char *yaml, const struct config_upstream *u, void (*act)(struct canary *), struct life *out)
{
    struct fixture f;
    memset(&f, 0, sizeof f);
    parse_conf(&f, yaml);
    f.st = status_create(NULL, &f.sc);
    assert_non_null(f.st);
    f.now = T0;
    status_set_clock(f.st, 0, f.now);
    struct canary *c = canary_new(u->name, &u->canary, f.now);
    canary_name_release(c, u->servers, u->num_servers);
    assert_int_equal(status_track_canary(f.st, c, f.now), RP_OK);
    out->state_at_start = c->state;
    out->weight_at_start = canary_weight_bp(c);
    rp_snprintf(out->reason_at_start, sizeof out->reason_at_start, "%s", c->reason);
    out->since_at_start = c->state_since_ms;
    if (act)
        act(c);
    if (act == act_rollback) {
        /* The status page tells users why some of them saw errors. */
        size_t len = 0;
        const char *etag = NULL;
        const char *doc = status_snapshot(f.st, "/api/v2/incidents.json", &len, &etag);
        assert_non_null(doc);
        assert_non_null(memmem(doc, len, "New release of chat rolled back", 31));
    }
    assert_int_equal(status_track_canary(NULL, c, f.now), RP_OK);
    canary_free(c);
    stop(&f);
}

static void act_rollback(struct canary *c)
{
    assert_int_equal(canary_rollback(c, "5xx storm on the new build", T0 + SEC), RP_OK);
}

static void act_resume(struct canary *c)
{
    assert_int_equal(canary_resume(c, T0 + SEC), RP_OK);
}

static void act_promote_all(struct canary *c)
{
    assert_int_equal(canary_set_weight(c, 10000, T0 + SEC), RP_OK);
}

static void test_release_verdicts(void **state)
{
    (void)state;
    char dir[] = "/tmp/rampart-status-XXXXXX", yaml[2048];
    db_yaml(dir, yaml, sizeof yaml);
    int q = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2); /* canary events go to stderr */

    struct config_upstream u;
    upstream_conf(&u, 1, NULL);
    struct life l;
    lifetime(yaml, &u, act_rollback, &l);
    assert_int_equal(l.state_at_start, CANARY_RUNNING);
    /* Same config, same store: still rolled back, with the reason and time. */
    lifetime(yaml, &u, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_ROLLED_BACK);
    assert_int_equal(l.weight_at_start, 0);
    assert_non_null(strstr(l.reason_at_start, "5xx storm on the new build"));
    int64_t since = l.since_at_start;
    assert_true(since > 0);
    /* And again: a restore does not rewrite the time. */
    lifetime(yaml, &u, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_ROLLED_BACK);
    assert_int_equal(l.since_at_start, since);

    /* A new release (another canary server) starts fresh... */
    struct config_upstream u2;
    upstream_conf(&u2, 2, NULL);
    lifetime(yaml, &u2, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_RUNNING);
    assert_int_equal(l.weight_at_start, 500);
    /* ...so does a labelled one on the same servers... */
    struct config_upstream u3;
    upstream_conf(&u3, 1, "v2.4.1");
    lifetime(yaml, &u3, act_promote_all, &l);
    assert_int_equal(l.state_at_start, CANARY_RUNNING);
    /* ...which then stays promoted. */
    lifetime(yaml, &u3, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_PROMOTED);
    assert_int_equal(l.weight_at_start, 10000);
    /* Going back to the known-bad release finds it rolled back still. */
    lifetime(yaml, &u, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_ROLLED_BACK);

    /* Resuming it is a new attempt, and that survives a restart too. */
    lifetime(yaml, &u, act_resume, &l);
    lifetime(yaml, &u, NULL, &l);
    assert_int_equal(l.state_at_start, CANARY_RUNNING);
    assert_int_equal(l.weight_at_start, 500);

    dup2(q, 2);
    close(q);
    close(devnull);
    char cmd[300];
    rp_snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- configuration ---- */

static void conf_errors(const char *yaml, const char *want)
{
    struct conf_doc *doc = conf_load_string("t.yaml", yaml, strlen(yaml));
    struct status_conf sc;
    status_conf_init(&sc);
    int rc = status_conf_parse(doc, conf_get(conf_root(doc), "status"), conf_get(conf_root(doc), "components"), NULL, 0,
                               &sc);
    assert_int_equal(rc, RP_ERR);
    bool found = false;
    for (size_t i = 0; i < conf_error_count(doc); i++)
        if (strstr(conf_error_at(doc, i), want))
            found = true;
    if (!found)
        fail_msg("no error containing \"%s\"; first: %s", want, conf_error_at(doc, 0));
    status_conf_free(&sc);
    conf_free(doc);
}

static void test_conf(void **state)
{
    (void)state;
    struct fixture f;
    memset(&f, 0, sizeof f);
    parse_conf(&f, base_yaml);
    assert_true(f.sc.enabled);
    assert_int_equal(f.sc.num_components, 2);
    assert_int_equal(f.sc.components[1].num_routes, 2);
    assert_true(fabs(f.sc.target - 0.995) < 1e-12);
    assert_int_equal(f.sc.latency_us, 2 * SEC);
    assert_int_equal(f.sc.num_rules, 2);
    assert_true(f.sc.auto_incidents);
    assert_string_equal(f.sc.page_name, "Test AI");
    status_conf_free(&f.sc);
    conf_free(f.doc);

    conf_errors("status:\n  db: x.db\n", "listen");
    conf_errors("status:\n  listen: 127.0.0.1:1\n  colour: red\n", "colour");
    conf_errors("status:\n  listen: 127.0.0.1:1\n  live: {major_below: 0.99}\n", "major_below <= partial_below");
    conf_errors("status:\n  listen: 127.0.0.1:1\ncomponents:\n  - name: A\n", "routes: or upstreams:");
    conf_errors("status:\n  listen: 127.0.0.1:1\ncomponents:\n  - name: A\n    routes: [v1]\n", "starts with '/'");
    conf_errors(
        "status:\n  listen: 127.0.0.1:1\ncomponents:\n  - {name: A, routes: [/a]}\n  - {name: A, routes: [/b]}\n",
        "defined twice");
    conf_errors("status:\n  listen: 127.0.0.1:1\n  incidents:\n    burn_rates: [{factor: 2, long: 5m, short: 1h}]\n",
                "shorter than the long window");
    conf_errors("components:\n  - {name: A, routes: [/a]}\n", "needs a status: section");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_no_data),
        cmocka_unit_test(test_burn_rate),
        cmocka_unit_test(test_outage_and_auto_incident),
        cmocka_unit_test(test_auto_incident_relapse),
        cmocka_unit_test(test_slow_burn_rule),
        cmocka_unit_test(test_no_burn_below_budget),
        cmocka_unit_test(test_auto_off),
        cmocka_unit_test(test_sample_classes),
        cmocka_unit_test(test_component_for),
        cmocka_unit_test(test_admin_validation),
        cmocka_unit_test(test_admin_utf8),
        cmocka_unit_test(test_reported_incident_shows),
        cmocka_unit_test(test_operator_cannot_paint_green),
        cmocka_unit_test(test_admin_incident_lifecycle),
        cmocka_unit_test(test_maintenance_transitions),
        cmocka_unit_test(test_etag_stable),
        cmocka_unit_test(test_restart_keeps_history),
        cmocka_unit_test(test_release_verdicts),
        cmocka_unit_test(test_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_statuspage.c — the public documents rendered from a synthetic view:
 * every Statuspage v2 JSON document parses and carries exactly the field
 * names and enumerations Atlassian uses; feeds and the HTML page contain
 * the components and incidents and escape what operators typed.
 *
 * With STATUSPAGE_HTML_OUT=path set, the rendered page is also written to
 * that file (for looking at it in a browser).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statuspage.h"
#include "util.h"

#define T0 1764000000000LL /* 2025-11-24T16:00:00Z */
#define MIN_MS 60000LL
#define DAY 86400000LL

static struct statuspage_component comps[3];
static struct store_incident incs[4];
static struct store_update upd[6];
static struct store_affected aff[4];
static char inc_comps[4][2][STORE_CODE_MAX];
static struct statuspage_view view;

static void fill_days(struct statuspage_component *c, int worst_day, int worst)
{
    int64_t today = T0 / DAY;
    for (int d = 0; d < STATUSPAGE_DAYS; d++) {
        c->days[d].day = today - (STATUSPAGE_DAYS - 1) + d;
        if (d < 20) {
            c->days[d].worst = STATUSPAGE_NO_DATA;
            continue;
        }
        c->days[d].eligible = 10000;
        c->days[d].good = 10000;
        c->days[d].worst = STATUSPAGE_OPERATIONAL;
    }
    c->days[worst_day].good = 9400;
    c->days[worst_day].worst = worst;
    uint64_t e = 0, g = 0;
    for (int d = 0; d < STATUSPAGE_DAYS; d++)
        e += c->days[d].eligible, g += c->days[d].good;
    c->uptime = 100.0 * (double)g / (double)e;
    for (int s = 0; s < STATUSPAGE_SPARK; s++)
        c->spark_ms[s] = s % 17 == 5 ? -1 : 300 + (s * 37) % 400;
}

static void setup_view(void)
{
    memset(comps, 0, sizeof comps);
    memset(incs, 0, sizeof incs);
    memset(upd, 0, sizeof upd);

    rp_snprintf(comps[0].id, STORE_CODE_MAX, "chat0000001a");
    comps[0].name = "Chat completions";
    comps[0].description = "POST /v1/chat/completions";
    comps[0].status = STATUSPAGE_PARTIAL_OUTAGE;
    comps[0].reported = STATUSPAGE_PARTIAL_OUTAGE;
    rp_snprintf(comps[1].id, STORE_CODE_MAX, "embed000002b");
    comps[1].name = "Embeddings <beta>";
    comps[1].status = STATUSPAGE_OPERATIONAL;
    comps[1].reported = STATUSPAGE_OPERATIONAL;
    rp_snprintf(comps[2].id, STORE_CODE_MAX, "batch000003c");
    comps[2].name = "Batch";
    comps[2].status = STATUSPAGE_NO_DATA;
    comps[2].reported = STATUSPAGE_OPERATIONAL;
    for (int i = 0; i < 3; i++) {
        comps[i].created_ms = T0 - 100 * DAY;
        comps[i].updated_ms = T0 - 5 * MIN_MS;
        comps[i].position = i + 1;
        comps[i].latency_slo_ms = 2000;
        fill_days(&comps[i], 80 + i, STATUSPAGE_PARTIAL_OUTAGE - i);
    }
    for (int s = 0; s < STATUSPAGE_SPARK; s++)
        comps[2].spark_ms[s] = -1;
    comps[2].uptime = -1;

    /* 0: open automatic incident on chat */
    incs[0].id = 7;
    incs[0].name = "Elevated error rate on Chat completions";
    incs[0].status = STATUSPAGE_INVESTIGATING;
    incs[0].impact = STATUSPAGE_IMPACT_MAJOR;
    incs[0].automatic = true;
    rp_snprintf(incs[0].auto_code, STORE_CODE_MAX, "chat0000001a");
    incs[0].created_ms = incs[0].updated_ms = incs[0].started_ms = T0 - 10 * MIN_MS;
    rp_snprintf(inc_comps[0][0], STORE_CODE_MAX, "chat0000001a");
    incs[0].components = inc_comps[0];
    incs[0].num_components = 1;
    upd[0].id = 11;
    upd[0].status = STATUSPAGE_INVESTIGATING;
    upd[0].body = "12% of requests failed <b>badly</b> & \"quotes\"\nsecond line";
    upd[0].created_ms = upd[0].display_ms = T0 - 10 * MIN_MS;
    upd[0].automatic = true;
    rp_snprintf(aff[0].code, STORE_CODE_MAX, "chat0000001a");
    aff[0].old_status = STATUSPAGE_OPERATIONAL;
    aff[0].new_status = STATUSPAGE_PARTIAL_OUTAGE;
    upd[0].affected = &aff[0];
    upd[0].num_affected = 1;
    incs[0].updates = &upd[0];
    incs[0].num_updates = 1;

    /* 1: upcoming maintenance on embeddings */
    incs[1].id = 8;
    incs[1].maintenance = true;
    incs[1].name = "Database upgrade";
    incs[1].status = STATUSPAGE_SCHEDULED;
    incs[1].impact = STATUSPAGE_IMPACT_MAINTENANCE;
    incs[1].created_ms = incs[1].updated_ms = T0 - 20 * MIN_MS;
    incs[1].scheduled_for_ms = T0 + DAY;
    incs[1].scheduled_until_ms = T0 + DAY + 3600000;
    incs[1].auto_transition = true;
    rp_snprintf(inc_comps[1][0], STORE_CODE_MAX, "embed000002b");
    incs[1].components = inc_comps[1];
    incs[1].num_components = 1;
    upd[1].id = 12;
    upd[1].status = STATUSPAGE_SCHEDULED;
    upd[1].body = "We will upgrade the database.";
    upd[1].created_ms = T0 - 20 * MIN_MS;
    incs[1].updates = &upd[1];
    incs[1].num_updates = 1;

    /* 2: maintenance in progress */
    incs[2].id = 9;
    incs[2].maintenance = true;
    incs[2].name = "Network work";
    incs[2].status = STATUSPAGE_IN_PROGRESS;
    incs[2].impact = STATUSPAGE_IMPACT_MAINTENANCE;
    incs[2].created_ms = incs[2].updated_ms = T0 - 2 * DAY;
    incs[2].scheduled_for_ms = T0 - 30 * MIN_MS;
    incs[2].scheduled_until_ms = T0 + 30 * MIN_MS;
    upd[2].id = 13;
    upd[2].status = STATUSPAGE_IN_PROGRESS;
    upd[2].body = "In progress.";
    upd[2].created_ms = T0 - 30 * MIN_MS;
    upd[3].id = 14;
    upd[3].status = STATUSPAGE_SCHEDULED;
    upd[3].body = "Announced.";
    upd[3].created_ms = T0 - 2 * DAY;
    incs[2].updates = &upd[2];
    incs[2].num_updates = 2;

    /* 3: resolved incident 8 days ago on chat */
    incs[3].id = 3;
    incs[3].name = "Slow responses <script>alert(1)</script>";
    incs[3].status = STATUSPAGE_RESOLVED;
    incs[3].impact = STATUSPAGE_IMPACT_MINOR;
    incs[3].created_ms = incs[3].started_ms = T0 - 9 * DAY;
    incs[3].updated_ms = incs[3].resolved_ms = T0 - 9 * DAY + 3600000;
    rp_snprintf(inc_comps[3][0], STORE_CODE_MAX, "chat0000001a");
    incs[3].components = inc_comps[3];
    incs[3].num_components = 1;
    upd[4].id = 15;
    upd[4].status = STATUSPAGE_RESOLVED;
    upd[4].body = "Fixed.";
    upd[4].created_ms = T0 - 9 * DAY + 3600000;
    upd[5].id = 16;
    upd[5].status = STATUSPAGE_INVESTIGATING;
    upd[5].body = "Looking.";
    upd[5].created_ms = T0 - 9 * DAY;
    incs[3].updates = &upd[4];
    incs[3].num_updates = 2;

    memset(&view, 0, sizeof view);
    view.page_id = "page00000001";
    view.name = "Acme AI";
    view.url = "https://status.example.com/";
    view.now_ms = T0;
    view.updated_ms = T0 - 5 * MIN_MS;
    view.components = comps;
    view.num_components = 3;
    view.incidents = incs;
    view.num_incidents = 4;
    view.max_age_s = 5;
}

static json_t *render_json(enum statuspage_doc doc)
{
    struct sbuf out;
    json_error_t err;
    sbuf_init(&out, 0);
    statuspage_render(&out, &view, doc);
    json_t *root = json_loadb(out.data, out.len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        fail_msg("%s does not parse: %s (line %d): %.200s", statuspage_doc_path(doc), err.text, err.line, out.data);
    sbuf_free(&out);
    return root;
}

static char *render_text(enum statuspage_doc doc)
{
    struct sbuf out;
    sbuf_init(&out, 0);
    statuspage_render(&out, &view, doc);
    char *s = rp_xstrdup(out.data);
    sbuf_free(&out);
    return s;
}

/* Object has exactly these keys (plus allowed rampart_* extensions). */
static void assert_keys(json_t *obj, const char *const *keys)
{
    assert_true(json_is_object(obj));
    size_t n = 0;
    for (; keys[n]; n++)
        if (!json_object_get(obj, keys[n]))
            fail_msg("missing key \"%s\"", keys[n]);
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = strncmp(k, "rampart_", 8) == 0;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known)
            fail_msg("unexpected key \"%s\"", k);
    }
}

static bool in_enum(const char *s, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (s && strcmp(s, names[i]) == 0)
            return true;
    return false;
}

static const char *const page_keys[] = {"id", "name", "url", "time_zone", "updated_at", NULL};
static const char *const comp_keys[] = {"id",
                                        "name",
                                        "status",
                                        "created_at",
                                        "updated_at",
                                        "position",
                                        "description",
                                        "showcase",
                                        "start_date",
                                        "group_id",
                                        "page_id",
                                        "group",
                                        "only_show_if_degraded",
                                        NULL};
static const char *const inc_keys[] = {"id",         "name",          "status",           "impact",     "created_at",
                                       "updated_at", "monitoring_at", "resolved_at",      "started_at", "shortlink",
                                       "page_id",    "components",    "incident_updates", NULL};
static const char *const maint_keys[] = {
    "id",         "name",          "status",           "impact",        "created_at",
    "updated_at", "monitoring_at", "resolved_at",      "started_at",    "shortlink",
    "page_id",    "components",    "incident_updates", "scheduled_for", "scheduled_until",
    NULL};
static const char *const upd_keys[] = {
    "id", "incident_id", "status", "body", "created_at", "updated_at", "display_at", "affected_components", NULL};
static const char *const aff_keys[] = {"code", "name", "old_status", "new_status", NULL};
static const char *const comp_status[] = {"operational",  "degraded_performance", "partial_outage",
                                          "major_outage", "under_maintenance",    NULL};
static const char *const inc_status[] = {"investigating", "identified", "monitoring", "resolved", "postmortem", NULL};
static const char *const maint_status[] = {"scheduled", "in_progress", "verifying", "completed", NULL};
static const char *const impacts[] = {"none", "minor", "major", "critical", NULL};
static const char *const maint_impacts[] = {"none", "minor", "major", "critical", "maintenance", NULL};

static void check_time(json_t *v, bool nullable)
{
    if (nullable && json_is_null(v))
        return;
    assert_true(json_is_string(v));
    int64_t ms;
    assert_int_equal(statuspage_parse_time(json_string_value(v), &ms), RP_OK);
    /* Offset form like Atlassian's ("...+00:00"). */
    const char *s = json_string_value(v);
    assert_int_equal(strlen(s), 29);
    assert_string_equal(s + 23, "+00:00");
}

static void check_page(json_t *root)
{
    json_t *page = json_object_get(root, "page");
    assert_keys(page, page_keys);
    assert_string_equal(json_string_value(json_object_get(page, "id")), "page00000001");
    assert_string_equal(json_string_value(json_object_get(page, "name")), "Acme AI");
    assert_string_equal(json_string_value(json_object_get(page, "time_zone")), "Etc/UTC");
    check_time(json_object_get(page, "updated_at"), false);
}

static void check_component(json_t *c)
{
    assert_keys(c, comp_keys);
    assert_true(in_enum(json_string_value(json_object_get(c, "status")), comp_status));
    assert_true(json_is_integer(json_object_get(c, "position")));
    assert_true(json_is_boolean(json_object_get(c, "showcase")));
    assert_true(json_is_false(json_object_get(c, "group")));
    assert_true(json_is_null(json_object_get(c, "group_id")));
    assert_true(json_is_false(json_object_get(c, "only_show_if_degraded")));
    assert_int_equal(strlen(json_string_value(json_object_get(c, "start_date"))), 10);
    check_time(json_object_get(c, "created_at"), false);
    check_time(json_object_get(c, "updated_at"), false);
}

static void check_incident(json_t *inc, bool maint)
{
    assert_keys(inc, maint ? maint_keys : inc_keys);
    assert_true(in_enum(json_string_value(json_object_get(inc, "status")), maint ? maint_status : inc_status));
    assert_true(in_enum(json_string_value(json_object_get(inc, "impact")), maint ? maint_impacts : impacts));
    check_time(json_object_get(inc, "created_at"), false);
    check_time(json_object_get(inc, "monitoring_at"), true);
    check_time(json_object_get(inc, "resolved_at"), true);
    if (maint) {
        check_time(json_object_get(inc, "scheduled_for"), false);
        check_time(json_object_get(inc, "scheduled_until"), false);
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(inc, "components"), i, c) check_component(c);
    json_t *ups = json_object_get(inc, "incident_updates");
    assert_true(json_is_array(ups));
    assert_true(json_array_size(ups) >= 1);
    json_t *u;
    json_array_foreach(ups, i, u)
    {
        assert_keys(u, upd_keys);
        assert_string_equal(json_string_value(json_object_get(u, "incident_id")),
                            json_string_value(json_object_get(inc, "id")));
        assert_true(in_enum(json_string_value(json_object_get(u, "status")), maint ? maint_status : inc_status));
        check_time(json_object_get(u, "display_at"), false);
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(u, "affected_components"), k, a)
        {
            assert_keys(a, aff_keys);
            assert_true(in_enum(json_string_value(json_object_get(a, "old_status")), comp_status));
            assert_true(in_enum(json_string_value(json_object_get(a, "new_status")), comp_status));
        }
    }
}

static void test_names(void **state)
{
    (void)state;
    /* The enumerations exactly as Statuspage spells them. */
    for (int i = STATUSPAGE_OPERATIONAL; i < STATUSPAGE_CSTATUS_COUNT; i++)
        assert_true(in_enum(statuspage_cstatus_name(i), comp_status));
    for (int i = STATUSPAGE_INVESTIGATING; i <= STATUSPAGE_POSTMORTEM; i++)
        assert_true(in_enum(statuspage_istatus_name(i), inc_status));
    for (int i = STATUSPAGE_SCHEDULED; i <= STATUSPAGE_COMPLETED; i++)
        assert_true(in_enum(statuspage_istatus_name(i), maint_status));
    for (int i = STATUSPAGE_IMPACT_NONE; i <= STATUSPAGE_IMPACT_CRITICAL; i++)
        assert_true(in_enum(statuspage_impact_name(i), impacts));
    assert_true(statuspage_istatus_done(STATUSPAGE_RESOLVED));
    assert_true(statuspage_istatus_done(STATUSPAGE_COMPLETED));
    assert_false(statuspage_istatus_done(STATUSPAGE_MONITORING));
}

static void test_time(void **state)
{
    (void)state;
    char t[32];
    statuspage_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000+00:00");
    statuspage_time(T0 + 123, t);
    assert_string_equal(t, "2025-11-24T16:00:00.123+00:00");

    int64_t ms;
    assert_int_equal(statuspage_parse_time("2025-11-24T16:00:00.123+00:00", &ms), RP_OK);
    assert_int_equal(ms, T0 + 123);
    assert_int_equal(statuspage_parse_time("2025-11-24T16:00:00Z", &ms), RP_OK);
    assert_int_equal(ms, T0);
    assert_int_equal(statuspage_parse_time("2025-11-24T17:30:00+01:30", &ms), RP_OK);
    assert_int_equal(ms, T0);
    assert_int_equal(statuspage_parse_time("2025-11-24T08:00-0800", &ms), RP_OK);
    assert_int_equal(ms, T0);
    assert_int_equal(statuspage_parse_time("2024-02-29T00:00:00Z", &ms), RP_OK);
    /* Refused: no offset, bad dates, junk. */
    assert_int_equal(statuspage_parse_time("2025-11-24T16:00:00", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("2025-02-29T00:00:00Z", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("2025-13-01T00:00:00Z", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("2025-11-24T24:00:00Z", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("2025-11-24T16:00:00Zjunk", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("tomorrow", &ms), RP_ERR);
    assert_int_equal(statuspage_parse_time("", &ms), RP_ERR);
}

static void test_summary(void **state)
{
    (void)state;
    static const char *const keys[] = {"page", "components", "incidents", "scheduled_maintenances", "status", NULL};
    json_t *root = render_json(STATUSPAGE_DOC_SUMMARY);
    assert_keys(root, keys);
    check_page(root);
    json_t *cs = json_object_get(root, "components");
    assert_int_equal(json_array_size(cs), 3);
    size_t i;
    json_t *c;
    json_array_foreach(cs, i, c) check_component(c);
    /* No data stays inside Statuspage's enumeration, flagged by the extension. */
    json_t *batch = json_array_get(cs, 2);
    assert_string_equal(json_string_value(json_object_get(batch, "status")), "operational");
    assert_string_equal(json_string_value(json_object_get(batch, "rampart_status")), "no_data");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "status")), "partial_outage");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 1), "name")), "Embeddings <beta>");

    /* Unresolved incidents only; upcoming and active maintenance. */
    json_t *is = json_object_get(root, "incidents");
    assert_int_equal(json_array_size(is), 1);
    check_incident(json_array_get(is, 0), false);
    json_t *ms = json_object_get(root, "scheduled_maintenances");
    assert_int_equal(json_array_size(ms), 2);
    json_array_foreach(ms, i, c) check_incident(c, true);

    json_t *st = json_object_get(root, "status");
    static const char *const st_keys[] = {"indicator", "description", NULL};
    assert_keys(st, st_keys);
    assert_string_equal(json_string_value(json_object_get(st, "indicator")), "major");
    assert_string_equal(json_string_value(json_object_get(st, "description")), "Partial System Outage");
    json_decref(root);
}

static void test_documents(void **state)
{
    (void)state;
    json_t *root = render_json(STATUSPAGE_DOC_STATUS);
    static const char *const k_status[] = {"page", "status", NULL};
    assert_keys(root, k_status);
    check_page(root);
    json_decref(root);

    root = render_json(STATUSPAGE_DOC_COMPONENTS);
    static const char *const k_comp[] = {"page", "components", NULL};
    assert_keys(root, k_comp);
    json_decref(root);

    static const char *const k_inc[] = {"page", "incidents", NULL};
    root = render_json(STATUSPAGE_DOC_INCIDENTS);
    assert_keys(root, k_inc);
    json_t *is = json_object_get(root, "incidents");
    assert_int_equal(json_array_size(is), 2); /* maintenance is not an incident */
    size_t i;
    json_t *inc;
    json_array_foreach(is, i, inc) check_incident(inc, false);
    json_t *first = json_array_get(is, 0);
    json_t *u0 = json_array_get(json_object_get(first, "incident_updates"), 0);
    assert_string_equal(json_string_value(json_object_get(u0, "body")), upd[0].body);
    json_t *a0 = json_array_get(json_object_get(u0, "affected_components"), 0);
    assert_string_equal(json_string_value(json_object_get(a0, "code")), "chat0000001a");
    assert_string_equal(json_string_value(json_object_get(a0, "name")), "Chat completions");
    assert_string_equal(json_string_value(json_object_get(a0, "new_status")), "partial_outage");
    /* The id round-trips through the public encoding. */
    const char *id = json_string_value(json_object_get(first, "id"));
    assert_int_equal(store_id_decode('i', id, strlen(id)), 7);
    assert_non_null(
        strstr(json_string_value(json_object_get(first, "shortlink")), "https://status.example.com/#incident-"));
    json_decref(root);

    root = render_json(STATUSPAGE_DOC_UNRESOLVED);
    assert_int_equal(json_array_size(json_object_get(root, "incidents")), 1);
    json_decref(root);

    static const char *const k_m[] = {"page", "scheduled_maintenances", NULL};
    root = render_json(STATUSPAGE_DOC_MAINT_ALL);
    assert_keys(root, k_m);
    assert_int_equal(json_array_size(json_object_get(root, "scheduled_maintenances")), 2);
    json_decref(root);
    root = render_json(STATUSPAGE_DOC_MAINT_UPCOMING);
    json_t *up = json_object_get(root, "scheduled_maintenances");
    assert_int_equal(json_array_size(up), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(up, 0), "status")), "scheduled");
    json_decref(root);
    root = render_json(STATUSPAGE_DOC_MAINT_ACTIVE);
    up = json_object_get(root, "scheduled_maintenances");
    assert_int_equal(json_array_size(up), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(up, 0), "status")), "in_progress");
    json_decref(root);
}

static void test_overall(void **state)
{
    (void)state;
    int imp;
    const char *desc;
    struct statuspage_view v = view;
    v.num_incidents = 0;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_MAJOR);

    struct statuspage_component cs[2];
    memcpy(cs, comps, sizeof cs);
    v.components = cs;
    v.num_components = 2;
    cs[0].status = STATUSPAGE_OPERATIONAL;
    cs[1].status = STATUSPAGE_OPERATIONAL;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_NONE);
    assert_string_equal(desc, "All Systems Operational");
    cs[1].status = STATUSPAGE_DEGRADED_PERFORMANCE;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_MINOR);
    cs[1].status = STATUSPAGE_MAJOR_OUTAGE;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_CRITICAL);
    assert_string_equal(desc, "Major System Outage");
    cs[1].status = STATUSPAGE_UNDER_MAINTENANCE;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_NONE);
    assert_string_equal(desc, "Service Under Maintenance");
    cs[0].status = cs[1].status = STATUSPAGE_NO_DATA;
    statuspage_overall(&v, &imp, &desc);
    assert_string_equal(desc, "No Recent Traffic");
    /* An open incident's impact raises the indicator on its own. */
    v.incidents = incs;
    v.num_incidents = 1;
    statuspage_overall(&v, &imp, &desc);
    assert_int_equal(imp, STATUSPAGE_IMPACT_MAJOR);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_html(void **state)
{
    (void)state;
    char *html = render_text(STATUSPAGE_DOC_HTML);
    const char *out = getenv("STATUSPAGE_HTML_OUT");
    if (out) {
        FILE *f = fopen(out, "w");
        if (f) {
            fputs(html, f);
            fclose(f);
        }
    }
    assert_non_null(strstr(html, "<html lang=\"en\">"));
    assert_non_null(strstr(html, "name=\"viewport\""));
    assert_non_null(strstr(html, "<title>Acme AI status</title>"));
    assert_non_null(strstr(html, "Partial System Outage"));
    assert_non_null(strstr(html, "Chat completions"));
    assert_non_null(strstr(html, "Embeddings &lt;beta&gt;"));
    assert_null(strstr(html, "Embeddings <beta>"));
    /* Operator text is escaped everywhere, including tooltips. */
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "Slow responses &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(html, "&lt;b&gt;badly&lt;/b&gt; &amp; &quot;quotes&quot;"));
    /* Active incident with timeline, maintenance, history. */
    assert_non_null(strstr(html, "Active incidents"));
    assert_non_null(strstr(html, "Elevated error rate on Chat completions"));
    assert_non_null(strstr(html, "Database upgrade"));
    assert_non_null(strstr(html, "Network work"));
    assert_non_null(strstr(html, "Past incidents"));
    /* Upcoming maintenance is announced before it starts. */
    assert_true(strstr(html, "Database upgrade") < strstr(html, "id=\"components\""));
    /* 90 daily bars per component, a sparkline, a status badge in words. */
    assert_int_equal(count(html, "<ol class=\"bars\""), 3);
    assert_int_equal(count(html, "<li class=\"s-"), 3 * 90);
    assert_int_equal(count(html, "<svg "), 3);
    assert_non_null(strstr(html, ">Partial outage</span>"));
    assert_non_null(strstr(html, ">No data</span>"));
    /* Tooltip: uptime and incident title on the day the incident ran. */
    assert_non_null(strstr(html, "title=\"2025-11-15 · 94.00% uptime (10000 requests) · Partial outage · "
                                 "Incidents: Slow responses &lt;script&gt;"));
    assert_non_null(strstr(html, "94.00% uptime"));
    /* Nothing external: no scripts, no remote stylesheets or images. */
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "href=\"http"));
    assert_null(strstr(html, "<link rel=\"stylesheet\""));
    free(html);
}

static void test_feeds(void **state)
{
    (void)state;
    char *atom = render_text(STATUSPAGE_DOC_ATOM);
    assert_non_null(strstr(atom, "<feed xmlns=\"http://www.w3.org/2005/Atom\""));
    assert_int_equal(count(atom, "<entry>"), 4);
    assert_non_null(strstr(atom, "Slow responses &lt;script&gt;"));
    assert_null(strstr(atom, "<script"));
    assert_null(strstr(atom, "<b>"));
    assert_non_null(strstr(atom, "<link rel=\"self\" type=\"application/atom+xml\" "
                                 "href=\"https://status.example.com/history.atom\"/>"));
    free(atom);
    char *rss = render_text(STATUSPAGE_DOC_RSS);
    assert_non_null(strstr(rss, "<rss version=\"2.0\">"));
    assert_int_equal(count(rss, "<item>"), 4);
    assert_non_null(strstr(rss, "<pubDate>Mon, 24 Nov 2025 15:50:00 +0000</pubDate>"));
    assert_null(strstr(rss, "<script"));
    free(rss);
}

/* Whether every character of s is one XML 1.0 allows, and s valid UTF-8. */
static bool xml_clean(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = rp_utf8_next(s + i, len - i, &cp);
        if (n < 0)
            return false;
        if (!(cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) ||
              cp >= 0x10000))
            return false;
        i += (size_t)n;
    }
    return true;
}

static void test_markup_text(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"<a href=\"x\">&'", 14, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"},
        {"tab\tlf\ncr\r", 10, "tab\tlf\ncr\r"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"\xef\xbf\xbd", 3, "\xef\xbf\xbd"}, /* U+FFFD itself is fine */
        {"\xef\xbf\xbc", 3, "\xef\xbf\xbc"}, /* U+FFFC is allowed */
        {"a\xef\xbf\xbe"
         "b",
         5,
         "a\xef\xbf\xbd"
         "b"}, /* U+FFFE */
        {"a\xef\xbf\xbf"
         "b",
         5,
         "a\xef\xbf\xbd"
         "b"}, /* U+FFFF */
        {"a\x01"
         "b\x1f"
         "c",
         5,
         "a\xef\xbf\xbd"
         "b\xef\xbf\xbd"
         "c"},
        {"nul\0x", 5, "nul\xef\xbf\xbdx"},
        {"bad\xff"
         "x",
         5, "bad\xef\xbf\xbdx"},
        {"cut\xe2\x82", 5, "cut\xef\xbf\xbd\xef\xbf\xbd"},           /* one per bad byte */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* lone surrogate U+D800 */
        {"\xc0\xbc", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '<' must not become '<' */
        {"\xc3<", 2, "\xef\xbf\xbd&lt;"},                            /* a bad byte does not swallow markup */
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct sbuf o;
        sbuf_init(&o, 0);
        statuspage_markup_text(&o, cases[i].in, cases[i].len);
        sbuf_add(&o, "", 0);
        assert_int_equal(o.len, strlen(cases[i].out));
        assert_memory_equal(o.data ? o.data : "", cases[i].out, o.len);
        assert_true(xml_clean(o.data ? o.data : "", o.len));
        sbuf_free(&o);
    }
}

/* Characters XML forbids, typed into an incident (or produced by another
 * subsystem), must not make the feeds unparseable. */
static void test_feeds_forbidden(void **state)
{
    (void)state;
    char *name = incs[0].name, *body = upd[0].body;
    const char *pname = view.name;
    incs[0].name = "Outage \xef\xbf\xbe\xef\xbf\xbf ctl\x01\x08\x0b\x0c\x1b end";
    upd[0].body = "bad \xff\xfe bytes, surrogate \xed\xb2\x80, cut \xe2\x82";
    view.name = "Acme\x7f \xef\xbf\xbf";
    for (int d = STATUSPAGE_DOC_ATOM; d <= STATUSPAGE_DOC_RSS; d++) {
        char *x = render_text((enum statuspage_doc)d);
        size_t len = strlen(x);
        assert_true(xml_clean(x, len));
        assert_non_null(strstr(x, "Outage \xef\xbf\xbd\xef\xbf\xbd ctl"));
        assert_non_null(strstr(x, "bad \xef\xbf\xbd\xef\xbf\xbd bytes"));
        free(x);
    }
    char *html = render_text(STATUSPAGE_DOC_HTML);
    assert_true(xml_clean(html, strlen(html)));
    free(html);
    incs[0].name = name;
    upd[0].body = body;
    view.name = pname;
}

static void test_paths(void **state)
{
    (void)state;
    assert_string_equal(statuspage_doc_path(STATUSPAGE_DOC_SUMMARY), "/api/v2/summary.json");
    assert_string_equal(statuspage_doc_path(STATUSPAGE_DOC_UNRESOLVED), "/api/v2/incidents/unresolved.json");
    assert_string_equal(statuspage_doc_path(STATUSPAGE_DOC_MAINT_UPCOMING),
                        "/api/v2/scheduled-maintenances/upcoming.json");
    assert_string_equal(statuspage_doc_path(STATUSPAGE_DOC_MAINT_ACTIVE), "/api/v2/scheduled-maintenances/active.json");
    assert_string_equal(statuspage_doc_path(STATUSPAGE_DOC_ATOM), "/history.atom");
    assert_string_equal(statuspage_doc_type(STATUSPAGE_DOC_HTML), "text/html; charset=utf-8");
}

static void test_ids(void **state)
{
    (void)state;
    char a[STORE_ID_TEXT], b[STORE_ID_TEXT];
    for (int64_t r = 1; r < 5000; r += 7) {
        store_id_encode('i', r, a);
        store_id_encode('u', r, b);
        assert_int_equal(strlen(a), 12);
        assert_string_not_equal(a, b);
        assert_int_equal(store_id_decode('i', a, strlen(a)), r);
        assert_int_equal(store_id_decode('u', b, strlen(b)), r);
    }
    assert_int_equal(store_id_decode('i', "zzzzzzzzzzzz", 12), -1);
    assert_int_equal(store_id_decode('i', "abc", 3), -1);
    assert_int_equal(store_id_decode('i', "ABCDEFGHIJKL", 12), -1);
}

int main(void)
{
    setup_view();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_overall),
        cmocka_unit_test(test_html),
        cmocka_unit_test(test_feeds),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_markup_text),
        cmocka_unit_test(test_feeds_forbidden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

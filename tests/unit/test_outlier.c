/*
 * test_outlier.c — passive outlier ejection on a deterministic clock: a bad
 * server among good ones is ejected by the failure-ratio rule and by the
 * consecutive-failure rule, ejections grow and are capped, the multiplier
 * decays, the share cap never ejects every server, noise alone ejects
 * nothing, and canary servers are not judged against stable ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config.h"
#include "outlier.h"
#include "util.h"

#define SEC 1000000ull

static struct server_conf servers[8];

static void make_servers(size_t n)
{
    memset(servers, 0, sizeof servers);
    for (size_t i = 0; i < n; i++)
        rp_snprintf(servers[i].addr.text, sizeof servers[i].addr.text, "10.0.0.%zu:8000", i + 1);
}

/* Small deterministic PRNG for the traffic (independent of rp_rand). */
static uint64_t rng;
static double rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Send `rps` requests per second round-robin over the eligible servers
 * for `secs` seconds; server i fails with probability fail[i].  Ticks every
 * second.  Returns the time reached. */
static uint64_t drive(struct outlier *o, const double *fail, uint64_t t, unsigned secs, unsigned rps)
{
    size_t rr = 0;
    for (unsigned s = 0; s < secs; s++) {
        for (unsigned k = 0; k < rps; k++) {
            uint64_t now = t + (uint64_t)k * SEC / rps;
            for (size_t tries = 0; tries < o->num_servers; tries++) {
                size_t i = rr++ % o->num_servers;
                if (!outlier_eligible(o, i, now))
                    continue;
                outlier_report(o, i, rnd() < fail[i] ? OUTLIER_5XX : OUTLIER_SUCCESS, now);
                break;
            }
        }
        t += SEC;
        outlier_tick(o, t);
    }
    return t;
}

static void test_success_rate_ejects_bad_server(void **state)
{
    (void)state;
    make_servers(4);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    c.consecutive_failures = 0; /* only the ratio rule */
    uint64_t t = 1000 * SEC;
    struct outlier *o = outlier_new("api", &c, servers, 4, t);
    rng = 42;
    double fail[4] = {0.01, 0.01, 0.25, 0.01};
    t = drive(o, fail, t, 30, 40);
    assert_false(outlier_eligible(o, 2, t));
    assert_true(outlier_eligible(o, 0, t));
    assert_true(outlier_eligible(o, 1, t));
    assert_true(outlier_eligible(o, 3, t));
    assert_int_equal(o->servers[2].reason, OUTLIER_REASON_SUCCESS_RATE);
    assert_int_equal(o->servers[2].ejections_total, 1);
    assert_int_equal(outlier_ejected_count(o, t), 1);
    outlier_free(o);
}

/* Envoy's plain mean - 1.9 stdev over all hosts cannot flag one bad host
 * out of two; the leave-one-out comparison can. */
static void test_two_servers(void **state)
{
    (void)state;
    make_servers(2);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    c.consecutive_failures = 0;
    uint64_t t = 10 * SEC;
    struct outlier *o = outlier_new("pair", &c, servers, 2, t);
    rng = 7;
    double fail[2] = {0.0, 0.3};
    t = drive(o, fail, t, 20, 20);
    assert_false(outlier_eligible(o, 1, t));
    assert_true(outlier_eligible(o, 0, t));
    outlier_free(o);
}

static void test_noise_ejects_nothing(void **state)
{
    (void)state;
    make_servers(4);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    c.consecutive_failures = 0;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        uint64_t t = 10 * SEC;
        struct outlier *o = outlier_new("noisy", &c, servers, 4, t);
        rng = seed * 0x9E3779B97F4A7C15ull;
        double fail[4] = {0.03, 0.03, 0.03, 0.03};
        drive(o, fail, t, 120, 20);
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(o->servers[i].ejections_total, 0);
        outlier_free(o);
    }
}

static void fail_n(struct outlier *o, size_t idx, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++)
        outlier_report(o, idx, OUTLIER_CONNECT, now);
}

static void test_consecutive_and_growing_ejection(void **state)
{
    (void)state;
    make_servers(3);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT; /* 5 in a row, 30 s base, 300 s cap */
    uint64_t t = 100 * SEC;
    struct outlier *o = outlier_new("grow", &c, servers, 3, t);

    /* Four failures and a success: nothing. */
    fail_n(o, 1, 4, t);
    outlier_report(o, 1, OUTLIER_SUCCESS, t);
    fail_n(o, 1, 4, t);
    assert_true(outlier_eligible(o, 1, t));
    /* The fifth in a row ejects. */
    assert_true(outlier_report(o, 1, OUTLIER_TIMEOUT, t));
    assert_false(outlier_eligible(o, 1, t));
    assert_int_equal(o->servers[1].reason, OUTLIER_REASON_CONSECUTIVE);

    uint64_t expect[] = {30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300};
    for (size_t k = 0; k < RP_ARRAY_LEN(expect); k++) {
        if (k > 0) {
            fail_n(o, 1, 5, t);
            assert_false(outlier_eligible(o, 1, t));
        }
        assert_int_equal(o->servers[1].last_duration_us, expect[k] * SEC);
        assert_false(outlier_eligible(o, 1, t + expect[k] * SEC - 1));
        t += expect[k] * SEC;
        assert_true(outlier_eligible(o, 1, t));
        outlier_tick(o, t);
        assert_int_equal(outlier_ejected_count(o, t), 0);
    }
    assert_int_equal(o->servers[1].ejections_total, RP_ARRAY_LEN(expect));

    /* Staying good decays the multiplier: after 300 s it is one less. */
    unsigned m = o->servers[1].multiplier;
    t += 300 * SEC;
    outlier_tick(o, t);
    assert_int_equal(o->servers[1].multiplier, m - 1);
    outlier_free(o);
}

static void test_never_all(void **state)
{
    (void)state;
    make_servers(4);
    uint64_t t = 100 * SEC;

    /* Two servers, both failing everything: one stays. */
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    struct outlier *o = outlier_new("two", &c, servers, 2, t);
    fail_n(o, 0, 5, t);
    fail_n(o, 1, 50, t);
    assert_false(outlier_eligible(o, 0, t));
    assert_true(outlier_eligible(o, 1, t));
    assert_true(o->ejections_refused_total > 0);
    outlier_free(o);

    /* Four servers, 100% allowed: still at most three. */
    c.max_ejection_percent = 100;
    o = outlier_new("four", &c, servers, 4, t);
    for (size_t i = 0; i < 4; i++)
        fail_n(o, i, 5, t);
    assert_int_equal(outlier_ejected_count(o, t), 3);
    assert_true(outlier_eligible(o, 3, t));
    outlier_free(o);

    /* Default 50% of four: two. */
    c.max_ejection_percent = 50;
    o = outlier_new("half", &c, servers, 4, t);
    for (size_t i = 0; i < 4; i++)
        fail_n(o, i, 5, t);
    assert_int_equal(outlier_ejected_count(o, t), 2);
    outlier_free(o);

    /* 10% of four rounds to zero, but one ejection is always allowed. */
    c.max_ejection_percent = 10;
    o = outlier_new("tenth", &c, servers, 4, t);
    for (size_t i = 0; i < 4; i++)
        fail_n(o, i, 5, t);
    assert_int_equal(outlier_ejected_count(o, t), 1);
    outlier_free(o);

    /* The only other server is down for health checks: keep this one. */
    c.max_ejection_percent = 50;
    o = outlier_new("health", &c, servers, 2, t);
    outlier_set_available(o, 0, false);
    fail_n(o, 1, 10, t);
    assert_true(outlier_eligible(o, 1, t));
    outlier_free(o);

    /* A single server is never ejected. */
    o = outlier_new("one", &c, servers, 1, t);
    fail_n(o, 0, 100, t);
    assert_true(outlier_eligible(o, 0, t));
    outlier_free(o);
}

static void test_groups_judged_apart(void **state)
{
    (void)state;
    make_servers(3);
    servers[2].group = 1; /* the canary: its errors are canary analysis' business */
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    c.consecutive_failures = 0;
    uint64_t t = 10 * SEC;
    struct outlier *o = outlier_new("groups", &c, servers, 3, t);
    rng = 99;
    double fail[3] = {0.01, 0.01, 0.2};
    t = drive(o, fail, t, 40, 30);
    assert_true(outlier_eligible(o, 2, t));
    assert_int_equal(o->servers[2].ejections_total, 0);
    outlier_free(o);
}

static void test_disabled(void **state)
{
    (void)state;
    make_servers(2);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    c.enabled = false;
    struct outlier *o = outlier_new("off", &c, servers, 2, 0);
    fail_n(o, 0, 100, SEC);
    assert_true(outlier_eligible(o, 0, SEC));
    outlier_free(o);
}

static void test_metrics(void **state)
{
    (void)state;
    make_servers(2);
    struct outlier_conf c = OUTLIER_CONF_DEFAULT;
    uint64_t now = rp_now_us();
    struct outlier *o = outlier_new("met", &c, servers, 2, now);
    struct outlier_set set;
    outlier_set_init(&set, NULL);
    outlier_set_add(&set, o);
    outlier_set_add(&set, NULL);
    fail_n(o, 1, 5, now);
    struct sbuf s;
    sbuf_init(&s, 0);
    outlier_metrics_render(&s, NULL);
    assert_int_equal(s.len, 0);
    outlier_metrics_render(&s, &set);
    sbuf_add(&s, "", 1);
    assert_non_null(strstr(s.data, "rampart_outlier_ejected{upstream=\"met\",server=\"10.0.0.2:8000\"} 1\n"));
    assert_non_null(strstr(s.data, "rampart_outlier_ejected{upstream=\"met\",server=\"10.0.0.1:8000\"} 0\n"));
    assert_non_null(strstr(s.data, "rampart_outlier_ejections_total{upstream=\"met\",server=\"10.0.0.2:8000\"} 1\n"));
    sbuf_free(&s);
    /* A freed detector leaves its set. */
    outlier_free(o);
    assert_null(set.head);
    sbuf_init(&s, 0);
    outlier_metrics_render(&s, &set);
    assert_int_equal(s.len, 0);
    sbuf_free(&s);
}

/* The rows' defaults are OUTLIER_CONF_DEFAULT's: the table and the macro
 * cannot drift apart. */
static void test_conf_rows(void **state)
{
    (void)state;
    struct outlier_conf d = OUTLIER_CONF_DEFAULT, t;
    memset(&t, 0, sizeof t);
    conf_fields_defaults(outlier_conf_fields, &t);
    size_t rows = 0;
    for (const struct conf_field *f = outlier_conf_fields; f->key; f++) {
        assert_non_null(conf_field_find(outlier_conf_fields, f->key));
        if (f->kind == CONF_F_CUSTOM || f->kind == CONF_F_IGNORE)
            continue;
        assert_memory_equal((const char *)&t + f->offset, (const char *)&d + f->offset, f->size);
        rows++;
    }
    assert_true(rows > 0);
}

static void test_conf(void **state)
{
    (void)state;
    const char *y = "outlier:\n  consecutive_failures: 3\n  interval: 5s\n  window: 1m\n  min_requests: 20\n"
                    "  stdev_factor: 2.5\n  min_gap: 0.1\n  base_ejection: 10s\n  max_ejection: 2m\n"
                    "  max_ejection_percent: 34\n";
    struct conf_doc *doc = conf_load_string("t.yaml", y, strlen(y));
    struct outlier_conf c;
    outlier_conf_default(&c);
    assert_int_equal(outlier_conf_parse(doc, conf_get(conf_root(doc), "outlier"), &c), RP_OK);
    assert_int_equal(c.consecutive_failures, 3);
    assert_int_equal(c.interval_us, 5 * SEC);
    assert_int_equal(c.window_us, 60 * SEC);
    assert_int_equal(c.min_requests, 20);
    assert_true(c.stdev_factor == 2.5);
    assert_true(c.min_gap == 0.1);
    assert_int_equal(c.base_ejection_us, 10 * SEC);
    assert_int_equal(c.max_ejection_us, 120 * SEC);
    assert_int_equal(c.max_ejection_percent, 34);
    assert_true(c.enabled);
    conf_free(doc);

    y = "outlier:\n  base_ejection: 5m\n  max_ejection: 1m\n  max_ejection_percent: 101\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    outlier_conf_default(&c);
    assert_int_equal(outlier_conf_parse(doc, conf_get(conf_root(doc), "outlier"), &c), RP_ERR);
    assert_int_equal(conf_error_count(doc), 2);
    conf_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_rate_ejects_bad_server),
        cmocka_unit_test(test_two_servers),
        cmocka_unit_test(test_noise_ejects_nothing),
        cmocka_unit_test(test_consecutive_and_growing_ejection),
        cmocka_unit_test(test_never_all),
        cmocka_unit_test(test_groups_judged_apart),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_conf_rows),
        cmocka_unit_test(test_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_retry.c — retry rules and the retry budget, on a deterministic
 * clock: what is retryable, the per-request cap, the budget holding retries
 * to its fraction under an overload while allowing them at a low rate, the
 * window sliding, and the config section.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "retry.h"
#include "util.h"

#define SEC 1000000ull

static struct retry_request req(enum retry_failure f)
{
    return (struct retry_request){
        .failure = f, .retries_done = 0, .response_started = false, .idempotent = false, .body_replayable = true};
}

static void test_rules(void **state)
{
    (void)state;
    struct retry_conf c = RETRY_CONF_DEFAULT;
    struct retry_request r = req(RETRY_FAIL_CONNECT);
    assert_int_equal(retry_check(&c, &r), RETRY_YES);
    r.failure = RETRY_FAIL_CONNECT_TIMEOUT;
    assert_int_equal(retry_check(&c, &r), RETRY_YES);
    r.failure = RETRY_FAIL_STATUS_503;
    assert_int_equal(retry_check(&c, &r), RETRY_YES);
    /* The server may have done the work. */
    r.failure = RETRY_FAIL_STATUS_5XX;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_KIND);
    r.failure = RETRY_FAIL_TIMEOUT;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_KIND);
    /* A reset after sending: only idempotent methods. */
    r.failure = RETRY_FAIL_RESET;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_KIND);
    r.idempotent = true;
    assert_int_equal(retry_check(&c, &r), RETRY_YES);

    /* Never once the response started streaming, whatever the failure. */
    r = req(RETRY_FAIL_CONNECT);
    r.response_started = true;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_STARTED);
    r = req(RETRY_FAIL_STATUS_503);
    r.response_started = true;
    r.idempotent = true;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_STARTED);

    /* A body that was streamed through cannot be sent again. */
    r = req(RETRY_FAIL_CONNECT);
    r.body_replayable = false;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_BODY);

    /* Per-request cap. */
    r = req(RETRY_FAIL_CONNECT);
    r.retries_done = 1;
    assert_int_equal(retry_check(&c, &r), RETRY_YES);
    r.retries_done = 2;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_PER_REQUEST);
    c.max_per_request = 0;
    r.retries_done = 0;
    assert_int_equal(retry_check(&c, &r), RETRY_NO_PER_REQUEST);
}

static void test_methods(void **state)
{
    (void)state;
    assert_true(retry_method_idempotent("GET", 3));
    assert_true(retry_method_idempotent("PUT", 3));
    assert_true(retry_method_idempotent("DELETE", 6));
    assert_false(retry_method_idempotent("POST", 4));
    assert_false(retry_method_idempotent("PATCH", 5));
    assert_false(retry_method_idempotent("get", 3));
    assert_false(retry_method_idempotent("GETX", 3 + 1));
}

/* Overload: 1000 requests/s for 60 s, every attempt fails with a connect
 * error.  Retries must stay near 10% of requests (plus the small floor). */
static void test_budget_caps_under_overload(void **state)
{
    (void)state;
    struct retry_conf c = RETRY_CONF_DEFAULT; /* 10%, 1/s floor, 10 s window */
    struct retry_budget *b = retry_budget_new("api", &c);
    uint64_t t0 = 1000 * SEC, requests = 0, retries = 0;
    for (uint64_t ms = 0; ms < 60000; ms++) {
        uint64_t now = t0 + ms * 1000;
        retry_note_request(b, now);
        requests++;
        struct retry_request r = req(RETRY_FAIL_CONNECT);
        while (retry_decide(b, &r, now) == RETRY_YES) {
            retries++;
            r.retries_done++;
        }
    }
    double ratio = (double)retries / (double)requests;
    /* 10% + floor (1/s over 60k requests = 0.1%), with slack for the
     * partly filled newest bucket. */
    assert_true(ratio <= 0.102);
    assert_true(ratio >= 0.09);
    assert_true(b->denied_budget_total > 0);
    assert_true(retry_budget_used(b, t0 + 60 * SEC) <= 1.0);
    /* Every window of 10 s holds at most its allowance. */
    uint64_t wreq, wret;
    double allow;
    retry_window(b, t0 + 59 * SEC, &wreq, &wret, &allow);
    assert_true((double)wret <= allow);
    retry_budget_free(b);
}

/* Low rate: one request every 2 s, each fails once.  The floor lets every
 * one of them retry even though 10% of 5 requests is less than one. */
static void test_budget_allows_low_rate(void **state)
{
    (void)state;
    struct retry_conf c = RETRY_CONF_DEFAULT;
    struct retry_budget *b = retry_budget_new("quiet", &c);
    uint64_t t0 = 5 * SEC;
    for (int i = 0; i < 30; i++) {
        uint64_t now = t0 + (uint64_t)i * 2 * SEC;
        retry_note_request(b, now);
        struct retry_request r = req(RETRY_FAIL_CONNECT);
        assert_int_equal(retry_decide(b, &r, now), RETRY_YES);
    }
    assert_int_equal(b->retries_total, 30);
    assert_int_equal(b->denied_budget_total, 0);

    /* No floor, no requests: no retries. */
    struct retry_conf z = RETRY_CONF_DEFAULT;
    z.min_per_second = 0.0;
    struct retry_budget *b2 = retry_budget_new("strict", &z);
    struct retry_request r = req(RETRY_FAIL_CONNECT);
    assert_int_equal(retry_decide(b2, &r, t0), RETRY_NO_BUDGET);
    for (int i = 0; i < 10; i++)
        retry_note_request(b2, t0);
    assert_int_equal(retry_decide(b2, &r, t0), RETRY_YES); /* 10% of 10 = 1 */
    assert_int_equal(retry_decide(b2, &r, t0), RETRY_NO_BUDGET);
    retry_budget_free(b2);
    retry_budget_free(b);
}

/* The window slides: requests older than the window stop counting. */
static void test_budget_window_slides(void **state)
{
    (void)state;
    struct retry_conf c = RETRY_CONF_DEFAULT;
    c.min_per_second = 0.0;
    struct retry_budget *b = retry_budget_new("slide", &c);
    uint64_t t0 = 100 * SEC;
    for (int i = 0; i < 100; i++)
        retry_note_request(b, t0);
    uint64_t wreq;
    retry_window(b, t0 + 5 * SEC, &wreq, NULL, NULL);
    assert_int_equal(wreq, 100);
    retry_window(b, t0 + 11 * SEC, &wreq, NULL, NULL);
    assert_int_equal(wreq, 0);
    struct retry_request r = req(RETRY_FAIL_STATUS_503);
    assert_int_equal(retry_decide(b, &r, t0 + 11 * SEC), RETRY_NO_BUDGET);
    /* Rule refusals never touch the budget. */
    r.response_started = true;
    assert_int_equal(retry_decide(b, &r, t0), RETRY_NO_STARTED);
    assert_int_equal(b->denied_rule_total, 1);
    retry_budget_free(b);
}

static void test_metrics(void **state)
{
    (void)state;
    struct retry_conf c = RETRY_CONF_DEFAULT;
    struct retry_budget *b = retry_budget_new("m\"x", &c);
    struct retry_set set;
    retry_set_init(&set, NULL);
    retry_set_add(&set, b);
    uint64_t now = rp_now_us();
    retry_note_request(b, now);
    struct retry_request r = req(RETRY_FAIL_CONNECT);
    assert_int_equal(retry_decide(b, &r, now), RETRY_YES);
    struct sbuf s;
    sbuf_init(&s, 0);
    retry_metrics_render(&s, &set);
    sbuf_add(&s, "", 1);
    assert_non_null(strstr(s.data, "# TYPE rampart_retry_retries_total counter"));
    assert_non_null(strstr(s.data, "rampart_retry_retries_total{upstream=\"m\\\"x\"} 1\n"));
    assert_non_null(strstr(s.data, "rampart_retry_budget_used_ratio{upstream=\"m\\\"x\"} "));
    sbuf_free(&s);
    /* A freed budget leaves its set. */
    retry_budget_free(b);
    assert_null(set.head);
    sbuf_init(&s, 0);
    retry_metrics_render(&s, &set);
    assert_int_equal(s.len, 0);
    sbuf_free(&s);
}

/* The rows' defaults are RETRY_CONF_DEFAULT's: the table and the macro
 * cannot drift apart. */
static void test_conf_rows(void **state)
{
    (void)state;
    struct retry_conf d = RETRY_CONF_DEFAULT, t;
    memset(&t, 0, sizeof t);
    conf_fields_defaults(retry_conf_fields, &t);
    size_t rows = 0;
    for (const struct conf_field *f = retry_conf_fields; f->key; f++) {
        assert_non_null(conf_field_find(retry_conf_fields, f->key));
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
    const char *y = "retry:\n  budget: 20%\n  min_per_second: 5\n  max_per_request: 1\n  window: 30s\n";
    struct conf_doc *doc = conf_load_string("t.yaml", y, strlen(y));
    struct retry_conf c;
    retry_conf_default(&c);
    assert_int_equal(retry_conf_parse(doc, conf_get(conf_root(doc), "retry"), &c), RP_OK);
    assert_true(c.budget > 0.199 && c.budget < 0.201);
    assert_true(c.min_per_second == 5.0);
    assert_int_equal(c.max_per_request, 1);
    assert_int_equal(c.window_us, 30 * SEC);
    conf_free(doc);

    y = "retry:\n  budget: 2\n  max_per_request: 99\n  bogus: 1\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    retry_conf_default(&c);
    assert_int_equal(retry_conf_parse(doc, conf_get(conf_root(doc), "retry"), &c), RP_ERR);
    assert_int_equal(conf_error_count(doc), 3);
    conf_free(doc);

    /* Absent section: defaults. */
    retry_conf_default(&c);
    assert_int_equal(retry_conf_parse(NULL, NULL, &c), RP_OK);
    assert_true(c.budget == 0.1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_budget_caps_under_overload),
        cmocka_unit_test(test_budget_allows_low_rate),
        cmocka_unit_test(test_budget_window_slides),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_conf_rows),
        cmocka_unit_test(test_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

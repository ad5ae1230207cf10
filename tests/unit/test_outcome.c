/*
 * test_outcome.c — the outcome table: every ending has one row, and the
 * readings the consumers take from it agree with each other (an ending
 * the upstream caused is bad for every consumer, an ending the client or
 * rampart caused is nobody's latency sample and never retried).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "outcome.h"
#include "outlier.h"

static void test_names_unique_and_snake_case(void **state)
{
    (void)state;
    for (int a = 0; a < OUTCOME_COUNT; a++) {
        const char *n = outcome_name((enum outcome)a);
        assert_non_null(n);
        assert_true(strlen(n) > 0);
        for (const char *p = n; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (int b = a + 1; b < OUTCOME_COUNT; b++)
            assert_string_not_equal(n, outcome_name((enum outcome)b));
    }
    assert_string_equal(outcome_name(OUTCOME_OK), "ok");
    assert_string_equal(outcome_name(OUTCOME_UPSTREAM_CUT), "upstream_closed_mid_response");
}

static void test_client_and_local_endings_teach_nothing(void **state)
{
    (void)state;
    enum retry_failure f;
    for (int i = 0; i < OUTCOME_COUNT; i++) {
        enum outcome o = (enum outcome)i;
        enum outcome_side side = outcome_side(o);
        if (side != OUTCOME_SIDE_CLIENT && side != OUTCOME_SIDE_LOCAL)
            continue;
        /* whatever status was on the wire: a client that left or a
         * request rampart refused says nothing about the server */
        assert_int_equal(outcome_limiter(o, 200, true), ADMIT_CANCELLED);
        assert_int_equal(outcome_limiter(o, 503, true), ADMIT_CANCELLED);
        assert_false(outcome_retry_class(o, &f));
        assert_false(outcome_upstream_failed(o));
        assert_int_equal(outcome_status_seen(o, 429), 429);
    }
}

static void test_upstream_failures_are_bad_for_everyone(void **state)
{
    (void)state;
    int n = 0;
    for (int i = 0; i < OUTCOME_COUNT; i++) {
        enum outcome o = (enum outcome)i;
        if (outcome_side(o) != OUTCOME_SIDE_UPSTREAM)
            continue;
        n++;
        assert_true(outcome_upstream_failed(o));
        /* even after "200 OK" went out */
        assert_int_not_equal(outcome_limiter(o, 200, true), ADMIT_DONE);
        assert_int_not_equal(outcome_outlier_class(o, 200), OUTLIER_SUCCESS);
        assert_int_equal(outcome_status_seen(o, 200), 502);
        assert_int_equal(outcome_status_seen(o, 504), 504);
        /* a timeout is congestion, for the limiter and for ejection */
        if (outcome_upstream_timeout(o)) {
            assert_int_equal(outcome_limiter(o, 0, false), ADMIT_OVERLOADED);
            assert_int_equal(outcome_outlier_class(o, 0), OUTLIER_TIMEOUT);
        }
    }
    assert_true(n >= 10);
}

static void test_completed_response_reads_its_status(void **state)
{
    (void)state;
    assert_int_equal(outcome_limiter(OUTCOME_OK, 200, true), ADMIT_DONE);
    assert_int_equal(outcome_limiter(OUTCOME_OK, 404, true), ADMIT_DONE);
    assert_int_equal(outcome_limiter(OUTCOME_OK, 503, true), ADMIT_OVERLOADED);
    assert_int_equal(outcome_limiter(OUTCOME_OK, 429, true), ADMIT_OVERLOADED);
    assert_int_equal(outcome_limiter(OUTCOME_OK, 500, true), ADMIT_FAILED);
    /* a 503 rampart wrote itself (no head from the server) is no
     * congestion signal from that server */
    assert_int_equal(outcome_limiter(OUTCOME_OK, 503, false), ADMIT_FAILED);
    assert_int_equal(outcome_outlier_class(OUTCOME_OK, 200), OUTLIER_SUCCESS);
    assert_int_equal(outcome_outlier_class(OUTCOME_OK, 500), OUTLIER_5XX);
    assert_int_equal(outcome_status_seen(OUTCOME_OK, 200), 200);
}

static void test_retry_classes(void **state)
{
    (void)state;
    enum retry_failure f = RETRY_FAIL_STATUS_5XX;
    assert_true(outcome_retry_class(OUTCOME_UPSTREAM_CONNECT_FAILED, &f));
    assert_int_equal(f, RETRY_FAIL_CONNECT);
    assert_true(outcome_retry_class(OUTCOME_UPSTREAM_CONNECT_TIMEOUT, &f));
    assert_int_equal(f, RETRY_FAIL_CONNECT_TIMEOUT);
    assert_true(outcome_retry_class(OUTCOME_UPSTREAM_CLOSED, &f));
    assert_int_equal(f, RETRY_FAIL_RESET);
    assert_true(outcome_retry_class(OUTCOME_UPSTREAM_TIMEOUT, &f));
    assert_int_equal(f, RETRY_FAIL_TIMEOUT);
    /* once part of a response reached the client it cannot be replayed */
    assert_false(outcome_retry_class(OUTCOME_UPSTREAM_CUT, &f));
    assert_false(outcome_retry_class(OUTCOME_UPSTREAM_IDLE_TIMEOUT, &f));
    assert_false(outcome_retry_class(OUTCOME_OK, &f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_unique_and_snake_case),
        cmocka_unit_test(test_client_and_local_endings_teach_nothing),
        cmocka_unit_test(test_upstream_failures_are_bad_for_everyone),
        cmocka_unit_test(test_completed_response_reads_its_status),
        cmocka_unit_test(test_retry_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

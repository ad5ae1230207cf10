/*
 * test_quota.c — request and token buckets, reservation and settlement, on
 * a deterministic clock; and the OpenAI-style header values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quota.h"
#include "util.h"

#define SEC 1000000ull
#define MS 1000ull

static void test_rps_bucket(void **state)
{
    (void)state;
    struct quota_limits lim = {.rps = 2, .req_burst = 2, .tpm = 0, .max_tokens_default = 100};
    struct quota_state st = {0};
    struct quota_ticket t;
    struct quota_info info;
    assert_int_equal(quota_reserve(&st, &lim, 10, 0, &t, &info), QUOTA_OK);
    assert_true(info.has_requests);
    assert_false(info.has_tokens);
    assert_int_equal(info.limit_requests, 2);
    assert_int_equal(info.remaining_requests, 1);
    assert_int_equal(info.reset_requests_ms, 500);
    assert_int_equal(quota_reserve(&st, &lim, 10, 0, &t, &info), QUOTA_OK);
    assert_int_equal(quota_reserve(&st, &lim, 10, 0, &t, &info), QUOTA_REQUESTS);
    assert_int_equal(info.remaining_requests, 0);
    assert_int_equal(info.retry_after_s, 1);
    assert_false(t.active);
    /* Half a second refills one request. */
    assert_int_equal(quota_reserve(&st, &lim, 10, 499 * MS, &t, &info), QUOTA_REQUESTS);
    assert_int_equal(quota_reserve(&st, &lim, 10, 500 * MS, &t, &info), QUOTA_OK);
    /* Long idle: never more than the burst. */
    assert_int_equal(quota_reserve(&st, &lim, 10, 100 * SEC, &t, &info), QUOTA_OK);
    assert_int_equal(quota_reserve(&st, &lim, 10, 100 * SEC, &t, &info), QUOTA_OK);
    assert_int_equal(quota_reserve(&st, &lim, 10, 100 * SEC, &t, &info), QUOTA_REQUESTS);
    assert_int_equal(st.refused_requests, 3);
}

/* A concurrent burst cannot overspend: reservations count before any
 * usage is known. */
static void test_reservation_blocks_burst(void **state)
{
    (void)state;
    struct quota_limits lim = {.rps = 0, .tpm = 1000, .max_tokens_default = 100};
    struct quota_state st = {0};
    struct quota_ticket t[4];
    struct quota_info info;
    assert_int_equal(quota_reserve(&st, &lim, 400, 0, &t[0], &info), QUOTA_OK);
    assert_int_equal(info.remaining_tokens, 600);
    assert_int_equal(quota_reserve(&st, &lim, 400, 0, &t[1], &info), QUOTA_OK);
    assert_int_equal(st.reserved, 800);
    assert_int_equal(quota_reserve(&st, &lim, 400, 0, &t[2], &info), QUOTA_TOKENS);
    assert_int_equal(info.remaining_tokens, 200);
    /* 200 more tokens at 1000/min take 12 s. */
    assert_int_equal(info.retry_after_s, 12);
    assert_int_equal(info.reset_tokens_ms, 48000);
    assert_false(info.has_requests);

    /* Settling refunds what was not used: 300 come back. */
    quota_settle(&st, &lim, &t[0], 100, 1 * SEC);
    assert_false(t[0].active);
    assert_int_equal(st.reserved, 400);
    assert_int_equal(st.tokens_used, 100);
    assert_int_equal(quota_reserve(&st, &lim, 400, 1 * SEC, &t[2], &info), QUOTA_OK);
    /* 200 + 16.7 (refill) + 300 - 400 */
    assert_int_equal(info.remaining_tokens, 116);
    quota_settle(&st, &lim, &t[0], 100, 1 * SEC); /* twice: no effect */
    assert_int_equal(st.tokens_used, 100);

    /* Usage above the reservation is charged (a debt), bounded. */
    quota_settle(&st, &lim, &t[1], 5000, 1 * SEC);
    assert_int_equal(quota_reserve(&st, &lim, 1, 1 * SEC, &t[3], &info), QUOTA_TOKENS);
    assert_int_equal(info.remaining_tokens, 0);
    assert_true(st.tok >= -1000.0);

    /* Cancel gives everything back (the request never reached upstream). */
    struct quota_state s2 = {0};
    struct quota_limits l2 = {.rps = 1, .req_burst = 1, .tpm = 1000, .max_tokens_default = 100};
    assert_int_equal(quota_reserve(&s2, &l2, 900, 0, &t[0], &info), QUOTA_OK);
    assert_int_equal(quota_reserve(&s2, &l2, 1, 0, &t[1], &info), QUOTA_REQUESTS);
    quota_cancel(&s2, &l2, &t[0], 0);
    assert_int_equal(s2.reserved, 0);
    assert_int_equal(quota_reserve(&s2, &l2, 1000, 0, &t[1], &info), QUOTA_OK);
}

static void test_too_large_and_unlimited(void **state)
{
    (void)state;
    struct quota_limits lim = {.tpm = 1000, .max_tokens_default = 100};
    struct quota_state st = {0};
    struct quota_ticket t;
    struct quota_info info;
    assert_int_equal(quota_reserve(&st, &lim, 1001, 0, &t, &info), QUOTA_TOO_LARGE);
    assert_int_equal(info.retry_after_s, 0); /* waiting would not help */
    assert_int_equal(st.refused_too_large, 1);

    struct quota_limits none = {0};
    struct quota_state s2 = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(quota_reserve(&s2, &none, 1000000, 0, &t, &info), QUOTA_OK);
    assert_false(info.has_requests);
    assert_false(info.has_tokens);
    quota_settle(&s2, &none, &t, 5, 0);
    assert_int_equal(s2.tokens_used, 5);
}

static void test_need(void **state)
{
    (void)state;
    struct quota_limits lim = {.max_tokens_default = 256};
    assert_int_equal(quota_need(&lim, 100, 1, 50), 150);
    assert_int_equal(quota_need(&lim, -1, 1, 50), 306);
    assert_int_equal(quota_need(&lim, 100, 3, 50), 350);
    assert_int_equal(quota_need(&lim, 100, 0, 0), 100);
    assert_true(quota_need(&lim, INT64_MAX, 128, UINT64_MAX) >= UINT64_MAX / 4);
}

static void test_is_full(void **state)
{
    (void)state;
    struct quota_limits lim = {.rps = 1, .req_burst = 1, .tpm = 600, .max_tokens_default = 10};
    struct quota_state st = {0};
    struct quota_ticket t;
    assert_true(quota_is_full(&st, &lim, 0));
    quota_reserve(&st, &lim, 60, 0, &t, NULL);
    assert_false(quota_is_full(&st, &lim, 1 * SEC)); /* reservation outstanding */
    quota_settle(&st, &lim, &t, 60, 1 * SEC);
    /* 540 + 10/s: full again after 6 s in all. */
    assert_false(quota_is_full(&st, &lim, 5 * SEC));
    assert_true(quota_is_full(&st, &lim, 6 * SEC));
}

static void test_format_reset(void **state)
{
    (void)state;
    char b[32];
    struct {
        uint64_t ms;
        const char *want;
    } cases[] = {
        {0, "0ms"},          {20, "20ms"},       {999, "999ms"},  {1000, "1s"},     {1500, "1.5s"},
        {1020, "1.02s"},     {59999, "59.999s"}, {60000, "1m0s"}, {360000, "6m0s"}, {3723004, "1h2m3.004s"},
        {7200000, "2h0m0s"},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        assert_true(quota_format_reset(b, sizeof b, cases[i].ms) > 0);
        assert_string_equal(b, cases[i].want);
    }
    assert_int_equal(quota_format_reset(b, 3, 360000), -1);
}

static void test_headers(void **state)
{
    (void)state;
    struct quota_limits lim = {.rps = 1, .req_burst = 10, .tpm = 6000, .max_tokens_default = 10};
    struct quota_state st = {0};
    struct quota_ticket t;
    struct quota_info info;
    quota_reserve(&st, &lim, 600, 0, &t, &info);
    struct sbuf out;
    sbuf_init(&out, 0);
    quota_render_headers(&out, &info, true);
    assert_string_equal(out.data, "x-ratelimit-limit-requests: 10\r\n"
                                  "x-ratelimit-remaining-requests: 9\r\n"
                                  "x-ratelimit-reset-requests: 1s\r\n"
                                  "x-ratelimit-limit-tokens: 6000\r\n"
                                  "x-ratelimit-remaining-tokens: 5400\r\n"
                                  "x-ratelimit-reset-tokens: 6s\r\n");
    sbuf_reset(&out);
    for (int i = 0; i < 9; i++)
        quota_reserve(&st, &lim, 1, 0, &t, &info);
    assert_int_equal(quota_reserve(&st, &lim, 1, 0, &t, &info), QUOTA_REQUESTS);
    quota_render_headers(&out, &info, true);
    assert_non_null(strstr(out.data, "x-ratelimit-remaining-requests: 0\r\n"));
    assert_non_null(strstr(out.data, "retry-after: 1\r\n"));
    sbuf_reset(&out);
    quota_peek(&st, &lim, 500 * MS, &info);
    quota_render_headers(&out, &info, false);
    assert_null(strstr(out.data, "retry-after"));
    sbuf_free(&out);
    assert_string_equal(quota_result_name(QUOTA_TOKENS), "tokens");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rps_bucket),
        cmocka_unit_test(test_reservation_blocks_burst),
        cmocka_unit_test(test_too_large_and_unlimited),
        cmocka_unit_test(test_need),
        cmocka_unit_test(test_is_full),
        cmocka_unit_test(test_format_reset),
        cmocka_unit_test(test_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

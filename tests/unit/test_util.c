/*
 * test_util.c — the UTF-8 helpers: decoding against hand-encoded
 * sequences, every malformed form RFC 3629 forbids, and cutting a string
 * without splitting a character.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util.h"

static void test_utf8_next(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int n;
        uint32_t cp;
    } ok[] = {
        {"A", 1, 1, 0x41},
        {"\x7f", 1, 1, 0x7f},
        {"\xc2\x80", 2, 2, 0x80},
        {"\xc3\xa9", 2, 2, 0xe9},
        {"\xdf\xbf", 2, 2, 0x7ff},
        {"\xe0\xa0\x80", 3, 3, 0x800},
        {"\xe2\x82\xac", 3, 3, 0x20ac},
        {"\xed\x9f\xbf", 3, 3, 0xd7ff},
        {"\xee\x80\x80", 3, 3, 0xe000},
        {"\xef\xbf\xbe", 3, 3, 0xfffe}, /* a noncharacter, but valid UTF-8 */
        {"\xef\xbf\xbf", 3, 3, 0xffff},
        {"\xf0\x90\x80\x80", 4, 4, 0x10000},
        {"\xf0\x9f\x98\x80", 4, 4, 0x1f600},
        {"\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(ok); i++) {
        uint32_t cp = 0;
        assert_int_equal(rp_utf8_next(ok[i].s, ok[i].len, &cp), ok[i].n);
        assert_int_equal(cp, ok[i].cp);
    }
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"\x80", 1},                 /* lone continuation */
        {"\xbf", 1},                 /* lone continuation */
        {"\xc0\x80", 2},             /* overlong NUL */
        {"\xc1\xbf", 2},             /* overlong */
        {"\xe0\x80\x80", 3},         /* overlong */
        {"\xe0\x9f\xbf", 3},         /* overlong U+07FF */
        {"\xf0\x8f\xbf\xbf", 4},     /* overlong U+FFFF */
        {"\xed\xa0\x80", 3},         /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 3},         /* U+DFFF */
        {"\xf4\x90\x80\x80", 4},     /* U+110000 */
        {"\xf5\x80\x80\x80", 4},     /* no such lead byte */
        {"\xff", 1},                 /* never in UTF-8 */
        {"\xc3", 1},                 /* truncated */
        {"\xe2\x82", 2},             /* truncated */
        {"\xf0\x9f\x98", 3},         /* truncated */
        {"\xc3\x41", 2},             /* continuation missing */
        {"\xe2\x28\xa1", 3},         /* continuation missing */
        {"", 0},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(bad); i++) {
        uint32_t cp = 0;
        assert_int_equal(rp_utf8_next(bad[i].s, bad[i].len, &cp), RP_ERR);
    }
}

static void test_utf8_valid(void **state)
{
    (void)state;
    size_t at = 99;
    assert_true(rp_utf8_valid("", 0, &at));
    assert_true(rp_utf8_valid("plain ascii", 11, NULL));
    assert_true(rp_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, &at));
    assert_false(rp_utf8_valid("ab\xff" "cd", 5, &at));
    assert_int_equal(at, 2);
    assert_false(rp_utf8_valid("caf\xc3", 4, &at));
    assert_int_equal(at, 3);
    assert_false(rp_utf8_valid("x\xed\xa0\x80y", 5, &at));
    assert_int_equal(at, 1);
    /* A NUL is a valid character: length-delimited input decides. */
    assert_true(rp_utf8_valid("a\0b", 3, NULL));
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    /* "é" is 2 bytes, "€" 3, the emoji 4. */
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    assert_int_equal(rp_utf8_prefix(s, 0), 0);
    assert_int_equal(rp_utf8_prefix(s, 1), 1);
    assert_int_equal(rp_utf8_prefix(s, 2), 1); /* would split é */
    assert_int_equal(rp_utf8_prefix(s, 3), 3);
    assert_int_equal(rp_utf8_prefix(s, 4), 3);
    assert_int_equal(rp_utf8_prefix(s, 5), 3); /* would split € */
    assert_int_equal(rp_utf8_prefix(s, 6), 6);
    for (size_t m = 6; m < 10; m++)
        assert_int_equal(rp_utf8_prefix(s, m), 6); /* would split the emoji */
    assert_int_equal(rp_utf8_prefix(s, 10), 10);
    assert_int_equal(rp_utf8_prefix(s, 11), 11);
    assert_int_equal(rp_utf8_prefix(s, 1000), 11); /* stops at the NUL */
    /* Stops before invalid bytes, and at a NUL inside a sequence. */
    assert_int_equal(rp_utf8_prefix("ok\xff" "more", 100), 2);
    assert_int_equal(rp_utf8_prefix("ok\xe2\x82", 100), 2);
    char buf[4] = {'\xe2', '\x82', '\0', '\xac'};
    assert_int_equal(rp_utf8_prefix(buf, sizeof buf), 0);

    /* Every cut of a long multi-byte string stays valid and maximal. */
    char longs[400];
    size_t n = 0;
    while (n + 3 < sizeof longs) {
        memcpy(longs + n, "\xe2\x82\xac", 3);
        n += 3;
    }
    longs[n] = '\0';
    for (size_t m = 0; m <= n + 2; m++) {
        size_t k = rp_utf8_prefix(longs, m);
        assert_true(k <= m);
        assert_int_equal(k % 3, 0);
        assert_true(m > n ? k == n : m - k < 3);
        assert_true(rp_utf8_valid(longs, k, NULL));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_next),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

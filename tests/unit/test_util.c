/*
 * test_util.c — the UTF-8 helpers (decoding against hand-encoded
 * sequences, every malformed form RFC 3629 forbids, cutting a string
 * without splitting a character), bounded formatting, case-insensitive
 * comparison, hashing, the PRNG, checked allocation, clocks, and
 * RP_ASSERT: counted and survived by default, fatal with
 * RAMPART_ASSERT=abort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
        {"\x80", 1},             /* lone continuation */
        {"\xbf", 1},             /* lone continuation */
        {"\xc0\x80", 2},         /* overlong NUL */
        {"\xc1\xbf", 2},         /* overlong */
        {"\xe0\x80\x80", 3},     /* overlong */
        {"\xe0\x9f\xbf", 3},     /* overlong U+07FF */
        {"\xf0\x8f\xbf\xbf", 4}, /* overlong U+FFFF */
        {"\xed\xa0\x80", 3},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 3},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 4}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4}, /* no such lead byte */
        {"\xff", 1},             /* never in UTF-8 */
        {"\xc3", 1},             /* truncated */
        {"\xe2\x82", 2},         /* truncated */
        {"\xf0\x9f\x98", 3},     /* truncated */
        {"\xc3\x41", 2},         /* continuation missing */
        {"\xe2\x28\xa1", 3},     /* continuation missing */
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
    assert_false(rp_utf8_valid("ab\xff"
                               "cd",
                               5, &at));
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
    assert_int_equal(rp_utf8_prefix("ok\xff"
                                    "more",
                                    100),
                     2);
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

/* ---- rp_snprintf -------------------------------------------------------- */

static void test_snprintf(void **state)
{
    char buf[8];
    (void)state;
    memset(buf, 'x', sizeof buf);
    assert_int_equal(rp_snprintf(buf, sizeof buf, "%d-%s", 12, "ab"), 5);
    assert_string_equal(buf, "12-ab");
    /* 7 characters and the NUL fill the buffer exactly. */
    assert_int_equal(rp_snprintf(buf, sizeof buf, "%s", "1234567"), 7);
    assert_string_equal(buf, "1234567");
    /* One more is truncation: -1, and the buffer still ends in a NUL. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(rp_snprintf(buf, sizeof buf, "%s", "12345678"), -1);
    assert_int_equal(buf[7], '\0');
    assert_string_equal(buf, "1234567");
    assert_int_equal(rp_snprintf(buf, sizeof buf, "%s", "a much longer string"), -1);
    assert_string_equal(buf, "a much ");
    assert_int_equal(rp_snprintf(buf, sizeof buf, "%s", ""), 0);
    assert_string_equal(buf, "");
    /* No room at all. */
    char one[1] = {'z'};
    assert_int_equal(rp_snprintf(one, sizeof one, "%s", ""), 0);
    assert_int_equal(one[0], '\0');
    assert_int_equal(rp_snprintf(one, sizeof one, "a"), -1);
    assert_int_equal(one[0], '\0');
    assert_int_equal(rp_snprintf(NULL, 0, "abc"), -1);
}

/* ---- rp_strieq ---------------------------------------------------------- */

static void test_strieq(void **state)
{
    static const struct {
        const char *s;
        size_t len;
        const char *lit;
        bool eq;
    } cases[] = {
        {"Content-Length", 14, "content-length", true},
        {"CONTENT-LENGTH", 14, "content-length", true},
        {"content-length", 14, "CONTENT-LENGTH", true},
        {"Content-Length: 5", 14, "content-length", true}, /* length-delimited */
        {"Content-Lengt", 13, "content-length", false},    /* prefix of the literal */
        {"Content-Lengths", 15, "content-length", false},  /* literal is a prefix */
        {"", 0, "", true},
        {"", 0, "a", false},
        {"a", 1, "", false},
        {"keep-alive", 10, "Keep-Alive", true},
        {"keep_alive", 10, "keep-alive", false},
        /* Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by 32
         * but are not the same character; nor are '[' and '{'. */
        {"@", 1, "`", false},
        {"[", 1, "{", false},
        {"\xc3\x89", 2, "\xc3\xa9", false}, /* no Unicode folding */
        {"a\0b", 3, "a", false},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++)
        if (rp_strieq(cases[i].s, cases[i].len, cases[i].lit) != cases[i].eq)
            fail_msg("rp_strieq(\"%.*s\", %zu, \"%s\") should be %s", (int)cases[i].len, cases[i].s, cases[i].len,
                     cases[i].lit, cases[i].eq ? "true" : "false");
}

/* ---- hashing, PRNG, allocation, clocks ---------------------------------- */

/* util.h documents rp_hash64 as 64-bit FNV-1a: the published reference
 * values (offset basis 14695981039346656037, prime 1099511628211). */
/* The values are part of the published interface (status component ids
 * derive from them): pinned here so that no change of the function can
 * pass unnoticed. */
static void test_hash64_stable_values(void **state)
{
    (void)state;
    assert_true(rp_hash64("", 0) == 1469598103934665603ull);
    assert_true(rp_hash64("a", 1) == 0x44bd8ad473cd9906ull);
    assert_true(rp_hash64("foobar", 6) == 0x88fad7c0a8ff07f2ull);
    assert_true(rp_hash64("chat", 4) == 0xa97677a89c0dafddull);
}

static void test_hash64(void **state)
{
    (void)state;
    /* FNV-1a's step: xor the byte, multiply by the prime. */
    uint64_t h0 = rp_hash64("", 0);
    assert_true(rp_hash64("a", 1) == ((h0 ^ 'a') * 1099511628211ull));
    assert_true(rp_hash64("key-1", 5) != rp_hash64("key-2", 5));
    /* Length-delimited: bytes after len do not matter, a NUL inside does. */
    assert_true(rp_hash64("abcX", 3) == rp_hash64("abcY", 3));
    assert_true(rp_hash64("a\0b", 3) != rp_hash64("a", 1));
}

static void test_rand(void **state)
{
    uint64_t first[8];
    (void)state;
    rp_rand_seed(42);
    for (size_t i = 0; i < RP_ARRAY_LEN(first); i++)
        first[i] = rp_rand64();
    rp_rand_seed(42);
    for (size_t i = 0; i < RP_ARRAY_LEN(first); i++)
        assert_true(rp_rand64() == first[i]); /* deterministic when seeded */
    rp_rand_seed(43);
    assert_true(rp_rand64() != first[0]);
    /* Seed 0 (a fixed point of xorshift) is replaced: never stuck at 0. */
    rp_rand_seed(0);
    uint64_t a = rp_rand64(), b = rp_rand64();
    assert_true(a != 0 && b != 0 && a != b);

    rp_rand_seed(7);
    double sum = 0;
    int low = 0;
    for (int i = 0; i < 10000; i++) {
        double d = rp_rand01();
        assert_true(d >= 0.0 && d < 1.0);
        sum += d;
        low += d < 0.5;
    }
    assert_true(sum / 10000 > 0.45 && sum / 10000 < 0.55);
    assert_true(low > 4500 && low < 5500);
}

static void test_alloc(void **state)
{
    (void)state;
    char *p = rp_xstrndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = rp_xstrndup("a\0bc", 4); /* copies n bytes, NUL-terminated */
    assert_memory_equal(p, "a\0bc", 5);
    free(p);
    p = rp_xstrdup("");
    assert_string_equal(p, "");
    free(p);
    int *z = rp_xcalloc(16, sizeof *z);
    for (int i = 0; i < 16; i++)
        assert_int_equal(z[i], 0);
    z = rp_xrealloc(z, 1000 * sizeof *z);
    assert_int_equal(z[15], 0);
    free(z);
    /* Zero sizes still return something free() accepts. */
    void *q = rp_xmalloc(0);
    assert_non_null(q);
    free(q);
    q = rp_xcalloc(0, 0);
    assert_non_null(q);
    free(q);
}

static void test_clocks(void **state)
{
    (void)state;
    uint64_t a = rp_now_us();
    usleep(2000);
    uint64_t b = rp_now_us();
    assert_true(b >= a + 2000);
    assert_true(b - a < 5000000);
    int64_t w = rp_wall_ms();
    assert_true(w > 1600000000000ll);  /* after September 2020 */
    assert_true(w < 32503680000000ll); /* before the year 3000 */
}

/* ---- RP_ASSERT ---------------------------------------------------------- */

static int evaluations;
static bool counted_false(void)
{
    evaluations++;
    return false;
}

/* Restores RAMPART_ASSERT as it was (the Makefile runs the tests with
 * RAMPART_ASSERT=abort). */
static char *saved_mode;
static int save_mode(void **state)
{
    (void)state;
    const char *m = getenv("RAMPART_ASSERT");
    saved_mode = m ? strdup(m) : NULL;
    return 0;
}
static int restore_mode(void **state)
{
    (void)state;
    if (saved_mode)
        setenv("RAMPART_ASSERT", saved_mode, 1);
    else
        unsetenv("RAMPART_ASSERT");
    free(saved_mode);
    saved_mode = NULL;
    return 0;
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ABORT_DEFAULT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ABORT_DEFAULT 1
#endif
#endif
#ifndef TEST_ABORT_DEFAULT
#define TEST_ABORT_DEFAULT 0
#endif

static void test_assert_counts(void **state)
{
    (void)state;
    /* Any mode other than "abort" counts and returns. */
    setenv("RAMPART_ASSERT", "count", 1);
    uint64_t before = rp_assert_failures();
    RP_ASSERT(1 + 1 == 2);
    assert_true(rp_assert_failures() == before);
    int n = 3;
    RP_ASSERT(n < 0);
    assert_true(rp_assert_failures() == before + 1);
    RP_ASSERT(n == 4);
    RP_ASSERT(n == 5);
    assert_true(rp_assert_failures() == before + 3);
    /* The condition is evaluated exactly once, held or not. */
    evaluations = 0;
    RP_ASSERT(counted_false());
    assert_int_equal(evaluations, 1);
    assert_true(rp_assert_failures() == before + 4);
    evaluations = 0;
    RP_ASSERT(!counted_false());
    assert_int_equal(evaluations, 1);
    assert_true(rp_assert_failures() == before + 4);

    /* Unset: a production build counts; a sanitizer build aborts, so it
     * is only exercised in the first. */
    if (!TEST_ABORT_DEFAULT) {
        unsetenv("RAMPART_ASSERT");
        RP_ASSERT(n == 6);
        assert_true(rp_assert_failures() == before + 5);
    }
}

/* Runs one failing RP_ASSERT in a child with the given mode (NULL:
 * unset); returns the child's wait status. */
static int child_assert(const char *mode)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (mode)
            setenv("RAMPART_ASSERT", mode, 1);
        else
            unsetenv("RAMPART_ASSERT");
        /* Keep the expected failure's log line out of the test output. */
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        uint64_t before = rp_assert_failures(); /* inherited from the parent */
        int v = 1;
        RP_ASSERT(v == 2);
        _exit(rp_assert_failures() == before + 1 ? 0 : 2);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void test_assert_abort_mode(void **state)
{
    (void)state;
    int st = child_assert("abort");
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
    st = child_assert("count");
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    st = child_assert("Abort"); /* the word is exact */
    assert_true(WIFEXITED(st));
    st = child_assert(NULL);
    if (TEST_ABORT_DEFAULT) {
        assert_true(WIFSIGNALED(st));
    } else {
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_next),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_prefix),
        cmocka_unit_test(test_snprintf),
        cmocka_unit_test(test_strieq),
        cmocka_unit_test(test_hash64_stable_values),
        cmocka_unit_test(test_hash64),
        cmocka_unit_test(test_rand),
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test_setup_teardown(test_assert_counts, save_mode, restore_mode),
        cmocka_unit_test(test_assert_abort_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

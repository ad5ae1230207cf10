/*
 * test_uri.c — canonical request paths: the bypass variants of the
 * generation endpoint, escapes, dot segments (RFC 3986 5.4 where they
 * apply to a path), absolute-form and the other forms, refusals, exact
 * capacity, and properties over generated targets (idempotence, the
 * output invariants, and agreement with a straightforward left-to-right
 * reference implementation written here).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "uri.h"
#include "util.h"

/* Normalise a NUL-terminated target with a roomy buffer. */
static ssize_t norm(const char *target, char *out, size_t cap, struct uri_info *info)
{
    return uri_normalize_path(target, strlen(target), out, cap, info);
}

static void expect_path(const char *target, const char *want)
{
    char out[512];
    struct uri_info info;
    ssize_t n = norm(target, out, sizeof out, &info);
    if (n < 0 || strcmp(out, want) != 0)
        fail_msg("%s: got %zd \"%s\", want \"%s\"", target, n, n < 0 ? info.error : out, want);
    assert_int_equal(n, strlen(want));
    assert_null(info.error);
}

static void expect_err(const char *target, ssize_t rc, int status)
{
    char out[512];
    struct uri_info info;
    memset(out, 'x', sizeof out);
    ssize_t n = norm(target, out, sizeof out, &info);
    if (n != rc)
        fail_msg("%s: got %zd (%s), want %zd", target, n, n >= 0 ? out : info.error, rc);
    assert_int_equal(info.status, status);
    assert_non_null(info.error);
    assert_string_equal(out, "");
}

/* The reported bypass: every variant is the endpoint once normalised. */
static void test_endpoint_variants(void **state)
{
    (void)state;
    static const char *variants[] = {
        "/v1/chat/completions",
        "/v1/chat/%63ompletions",
        "/v1//chat/completions",
        "/v1/./chat/completions",
        "/v1/chat/completions/",
        "/v1/chat/completions?x=1",
        "//v1/chat//completions",
        "/v1/x/../chat/completions",
        "/v1/chat/%2e/completions",
        "/%76%31/%63%68%61%74/%63%6F%6D%70%6C%65%74%69%6F%6E%73",
        "/v1/chat/completions/.",
        "/v1/chat/completions/x/..",
        "http://api.example/v1/chat/completions",
        "HTTPS://Api.Example:8443/v1//chat/./completions?stream=1",
        "/V1/Chat/Completions",
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(variants); i++) {
        char out[128];
        ssize_t n = norm(variants[i], out, sizeof out, NULL);
        assert_true(n > 0);
        if (!uri_path_eq_endpoint(out, (size_t)n, "/v1/chat/completions"))
            fail_msg("%s -> %s not detected", variants[i], out);
    }
    /* ... and the helper is not "starts with". */
    assert_false(uri_path_eq_endpoint("/v1/chat/completionsx", 21, "/v1/chat/completions"));
    assert_false(uri_path_eq_endpoint("/v1/chat/completions//", 22, "/v1/chat/completions"));
    assert_false(uri_path_eq_endpoint("/v1/chat/completion", 19, "/v1/chat/completions"));
    assert_false(uri_path_eq_endpoint("/v1/chat", 8, "/v1/chat/completions"));
    assert_false(uri_path_eq_endpoint("/v1/completions", 15, "/v1/chat/completions"));
    assert_true(uri_path_eq_endpoint("/v1/completions/", 16, "/v1/completions"));
    assert_false(uri_path_eq_endpoint("/v1/chat/completions%2F", 23, "/v1/chat/completions"));
    /* the root endpoint: "/" only, never "//" */
    assert_true(uri_path_eq_endpoint("/", 1, "/"));
    assert_false(uri_path_eq_endpoint("//", 2, "/"));
    assert_false(uri_path_eq_endpoint("/", 1, ""));

    /* The generic normaliser keeps the trailing slash. */
    expect_path("/v1/chat/completions/", "/v1/chat/completions/");
    expect_path("/v1/chat/%63ompletions", "/v1/chat/completions");
    expect_path("/v1//chat/completions", "/v1/chat/completions");
    expect_path("/v1/./chat/completions", "/v1/chat/completions");
}

static void test_escapes(void **state)
{
    (void)state;
    /* unreserved: decoded, hex case-insensitive, letter case preserved */
    expect_path("/%41%62%7e%7E%2d%5f%2E%30", "/Ab~~-_.0");
    expect_path("/%7A%5A", "/zZ");
    /* reserved and others: kept, hex uppercased */
    expect_path("/a%3fb", "/a%3Fb");
    expect_path("/%3a%3F%23%25%20%c3%a9", "/%3A%3F%23%25%20%C3%A9");
    /* an encoded slash or backslash is refused: servers disagree on it */
    expect_err("/a%2fb", URI_ERR_BAD, 400);
    expect_err("/v1/chat%2Fcompletions", URI_ERR_BAD, 400);
    expect_err("/a/..%2f..%2fetc", URI_ERR_BAD, 400);
    expect_err("/a%5cb", URI_ERR_BAD, 400);
    expect_err("/a%5C..", URI_ERR_BAD, 400);
    /* "%25" decodes to '%' which is not unreserved: a second pass must not
     * turn "%252e" into "." */
    expect_path("/%252e%252e/x", "/%252e%252e/x");
    expect_path("/a/%25%32%65%25%32%65", "/a/%252e%252e");

    expect_err("/a%", URI_ERR_BAD, 400);
    expect_err("/a%4", URI_ERR_BAD, 400);
    expect_err("/a%4/", URI_ERR_BAD, 400);
    expect_err("/a%zz", URI_ERR_BAD, 400);
    expect_err("/a%g0", URI_ERR_BAD, 400);
    expect_err("/a%0g", URI_ERR_BAD, 400);
    expect_err("/%00", URI_ERR_BAD, 400);
    expect_err("/a/%00/..", URI_ERR_BAD, 400);
    expect_err("/%%41", URI_ERR_BAD, 400);
    /* %01..%1F and %7F are data the upstream decodes; only NUL is refused */
    expect_path("/%0d%0A", "/%0D%0A");
}

static void test_dot_segments(void **state)
{
    (void)state;
    /* RFC 3986 5.2.4 and the paths of the 5.4 examples (base
     * "/b/c/d;p" merged with the reference, then remove_dot_segments),
     * where the result stays under the root. */
    expect_path("/a/b/c/./../../g", "/a/g");
    expect_path("/mid/content=5/../6", "/mid/6");
    expect_path("/b/c/g", "/b/c/g");
    expect_path("/b/c/./g", "/b/c/g");
    expect_path("/b/c/g/", "/b/c/g/");
    expect_path("/b/c/.", "/b/c/");
    expect_path("/b/c/./", "/b/c/");
    expect_path("/b/c/..", "/b/");
    expect_path("/b/c/../", "/b/");
    expect_path("/b/c/../g", "/b/g");
    expect_path("/b/c/../..", "/");
    expect_path("/b/c/../../", "/");
    expect_path("/b/c/../../g", "/g");
    expect_path("/b/c/g.", "/b/c/g.");
    expect_path("/b/c/.g", "/b/c/.g");
    expect_path("/b/c/g..", "/b/c/g..");
    expect_path("/b/c/..g", "/b/c/..g");
    expect_path("/b/c/./../g", "/b/g");
    expect_path("/b/c/./g/.", "/b/c/g/");
    expect_path("/b/c/g/./h", "/b/c/g/h");
    expect_path("/b/c/g/../h", "/b/c/h");
    expect_path("/b/c/g;x=1/./y", "/b/c/g;x=1/y");
    expect_path("/b/c/g;x=1/../y", "/b/c/y");
    expect_path("/b/c/d;p", "/b/c/d;p");
    /* 5.4.2 "../../../g" from /b/c/d;p climbs above the root: refused */
    expect_err("/b/c/../../../g", URI_ERR_BAD, 400);
    expect_err("/../g", URI_ERR_BAD, 400);
    expect_err("/..", URI_ERR_BAD, 400);
    expect_err("/./../a", URI_ERR_BAD, 400);
    expect_err("/a/../../b/c/d", URI_ERR_BAD, 400);
    expect_err("/%2e%2e/a", URI_ERR_BAD, 400);
    expect_err("/a/b/../%2E./../c", URI_ERR_BAD, 400);

    /* decoded dots count */
    expect_path("/a/%2e%2E/b", "/b");
    expect_path("/a/.%2e/b", "/b");
    expect_path("/a/%2e./b", "/b");
    expect_path("/a/%2e/b", "/a/b");
    expect_path("/a/.../b", "/a/.../b");
    expect_path("/a/%2e%2e%2e/b", "/a/.../b");
    /* empty segments are merged before ".." applies */
    expect_path("/a//../b", "/b");
    expect_path("/a/b//..//c", "/a/c");
    expect_path("///", "/");
    expect_path("/", "/");
    expect_path("/.", "/");
    expect_path("/./", "/");
    expect_path("/a/..", "/");
    expect_path("/a/../", "/");
    expect_path("/a/b/..", "/a/");
}

static void test_forms(void **state)
{
    (void)state;
    char out[128];
    struct uri_info info;
    ssize_t n;

    /* origin-form: query split off untouched */
    n = norm("/v1/%61?q=%2e%2e&x=[1]|//#", out, sizeof out, &info);
    assert_int_equal(n, URI_ERR_BAD); /* '#' in the query is a fragment too */
    n = norm("/v1/%61?q=%2e%2e&x=[1]|//", out, sizeof out, &info);
    assert_int_equal(n, 5);
    assert_string_equal(out, "/v1/a");
    assert_int_equal(info.query_len, strlen("q=%2e%2e&x=[1]|//"));
    assert_memory_equal(info.query, "q=%2e%2e&x=[1]|//", info.query_len);
    assert_true(info.changed);
    assert_false(info.absolute);
    assert_null(info.authority);

    n = norm("/v1/models", out, sizeof out, &info);
    assert_int_equal(n, 10);
    assert_null(info.query);
    assert_false(info.changed);
    n = norm("/v1/models?", out, sizeof out, &info);
    assert_int_equal(n, 10);
    assert_non_null(info.query);
    assert_int_equal(info.query_len, 0);
    assert_false(info.changed);
    n = norm("/?a?b", out, sizeof out, &info);
    assert_int_equal(n, 1);
    assert_int_equal(info.query_len, 3);

    /* absolute-form */
    n = norm("http://Example.COM:8080/a/./b?x", out, sizeof out, &info);
    assert_int_equal(n, 4);
    assert_string_equal(out, "/a/b");
    assert_true(info.absolute);
    assert_int_equal(info.authority_len, strlen("Example.COM:8080"));
    assert_memory_equal(info.authority, "Example.COM:8080", info.authority_len);
    assert_int_equal(info.query_len, 1);
    n = norm("http://h/a", out, sizeof out, &info);
    assert_int_equal(n, 2);
    assert_false(info.changed); /* the path part is unchanged */
    n = norm("http://h", out, sizeof out, &info);
    assert_int_equal(n, 1);
    assert_string_equal(out, "/");
    assert_true(info.changed);
    assert_null(info.query);
    n = norm("https://h?q", out, sizeof out, &info);
    assert_int_equal(n, 1);
    assert_string_equal(out, "/");
    assert_int_equal(info.query_len, 1);
    assert_memory_equal(info.query, "q", 1);
    expect_path("HtTpS://[::1]:443//v1//models/", "/v1/models/");
    expect_path("http://127.0.0.1/%7euser", "/~user");

    expect_err("http://", URI_ERR_BAD, 400);
    expect_err("http:///a", URI_ERR_BAD, 400);
    expect_err("http://?q", URI_ERR_BAD, 400);
    expect_err("http://user@h/a", URI_ERR_BAD, 400);
    expect_err("http://u:p@h/a", URI_ERR_BAD, 400);
    expect_err("http://h#f", URI_ERR_BAD, 400);
    expect_err("http://h/a#f", URI_ERR_BAD, 400);
    expect_err("http://h\\x/a", URI_ERR_BAD, 400);
    expect_err("http:/h/a", URI_ERR_BAD, 400);
    expect_err("ftp://h/a", URI_ERR_BAD, 400);
    expect_err("httpx://h/a", URI_ERR_BAD, 400);
    expect_err("http://h/../a", URI_ERR_BAD, 400);
    expect_err("mailto:a@b", URI_ERR_BAD, 400);
    expect_err("", URI_ERR_BAD, 400);
    expect_err("a/b", URI_ERR_BAD, 400);
    expect_err("?q", URI_ERR_BAD, 400);

    /* not paths */
    expect_err("*", URI_ERR_NOPATH, 0);
    expect_err("example.com:443", URI_ERR_NOPATH, 0);
    expect_err("[::1]:8080", URI_ERR_NOPATH, 0);
    expect_err("**", URI_ERR_BAD, 400);
    expect_err("example.com:", URI_ERR_BAD, 400);
    expect_err("example.com:443443", URI_ERR_BAD, 400);
    expect_err("ex/ample.com:443", URI_ERR_BAD, 400);
}

static void test_bad_bytes(void **state)
{
    (void)state;
    expect_err("/a#", URI_ERR_BAD, 400);
    expect_err("/a#b", URI_ERR_BAD, 400);
    expect_err("/a b", URI_ERR_BAD, 400);
    expect_err("/a\\b", URI_ERR_BAD, 400);
    expect_err("/v1\\chat\\completions", URI_ERR_BAD, 400);
    expect_err("/a\"b", URI_ERR_BAD, 400);
    expect_err("/a<b>", URI_ERR_BAD, 400);
    expect_err("/a{b}", URI_ERR_BAD, 400);
    expect_err("/a|b", URI_ERR_BAD, 400);
    expect_err("/a^b", URI_ERR_BAD, 400);
    expect_err("/a`b", URI_ERR_BAD, 400);
    expect_err("/a[b]", URI_ERR_BAD, 400);
    expect_err("/a\x7f", URI_ERR_BAD, 400);
    expect_err("/a\x01", URI_ERR_BAD, 400);
    expect_err("/a\t", URI_ERR_BAD, 400);
    expect_err("/caf\xc3\xa9", URI_ERR_BAD, 400);
    expect_err("/a?b c", URI_ERR_BAD, 400);
    expect_err("/a?b\x80", URI_ERR_BAD, 400);
    expect_err("/a?b\r\n", URI_ERR_BAD, 400);
    /* every pchar is accepted raw */
    expect_path("/!$&'()*+,;=:@-._~AZaz09", "/!$&'()*+,;=:@-._~AZaz09");

    /* an embedded NUL byte (length-delimited input) */
    char out[32];
    struct uri_info info;
    assert_int_equal(uri_normalize_path("/a\0b", 4, out, sizeof out, &info), URI_ERR_BAD);
    assert_int_equal(info.status, 400);
    /* a length shorter than the string: only len bytes are read */
    assert_int_equal(uri_normalize_path("/ab%zz", 3, out, sizeof out, &info), 3);
    assert_string_equal(out, "/ab");
    /* and an escape cut by len is malformed */
    assert_int_equal(uri_normalize_path("/a%41", 4, out, sizeof out, &info), URI_ERR_BAD);
}

static void test_capacity(void **state)
{
    (void)state;
    char out[64];
    struct uri_info info;
    /* "/abc/def" is 8 bytes: cap 9 fits exactly, 8 does not */
    memset(out, 'x', sizeof out);
    assert_int_equal(norm("/abc/def", out, 9, &info), 8);
    assert_string_equal(out, "/abc/def");
    assert_int_equal(out[9], 'x'); /* nothing written past cap */
    memset(out, 'x', sizeof out);
    assert_int_equal(norm("/abc/def", out, 8, &info), URI_ERR_TOOLONG);
    assert_int_equal(info.status, 414);
    assert_int_equal(out[0], '\0');
    assert_int_equal(out[8], 'x');

    /* the trailing slash counts */
    assert_int_equal(norm("/abc/", out, 6, &info), 5);
    assert_int_equal(norm("/abc/", out, 5, &info), URI_ERR_TOOLONG);
    assert_int_equal(norm("/abc/.", out, 6, &info), 5);
    assert_string_equal(out, "/abc/");
    assert_int_equal(norm("/abc/.", out, 5, &info), URI_ERR_TOOLONG);

    /* the decision is on the final path: segments removed by ".." need no room */
    assert_int_equal(norm("/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/../b", out, 3, &info), 2);
    assert_string_equal(out, "/b");
    assert_int_equal(norm("/a/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/..", out, 4, &info), 3);
    assert_string_equal(out, "/a/");
    /* escapes that stay escaped take three bytes */
    assert_int_equal(norm("/%3f", out, 5, &info), 4);
    assert_int_equal(norm("/%3f", out, 4, &info), URI_ERR_TOOLONG);
    assert_int_equal(norm("/%41", out, 3, &info), 2);
    assert_string_equal(out, "/A");

    /* root needs two bytes */
    assert_int_equal(norm("/", out, 2, &info), 1);
    assert_int_equal(norm("/", out, 1, &info), URI_ERR_TOOLONG);
    assert_int_equal(out[0], '\0');
    assert_int_equal(norm("http://h", out, 2, &info), 1);
    assert_int_equal(norm("/a/..", out, 1, &info), URI_ERR_TOOLONG);
    assert_int_equal(norm("/", out, 0, &info), URI_ERR_TOOLONG);

    /* a malformed target is 400 even when it is also too long */
    assert_int_equal(norm("/aaaaaaaaaaaa/%zz", out, 4, &info), URI_ERR_BAD);
    assert_int_equal(norm("/aaaaaaaaaaaa/../..", out, 4, &info), URI_ERR_BAD);
    assert_int_equal(norm("/aaaaaaaaaaaa?#", out, 4, &info), URI_ERR_BAD);
    /* the query takes no room in out */
    assert_int_equal(norm("/a?bbbbbbbbbbbbbbbbbbbbbb", out, 3, &info), 2);
}

/* ---- properties over generated targets ---- */

/* Left-to-right reference: decode each segment to canonical form, keep a
 * stack of segment start offsets; merge empty segments, apply "." and "..".
 * Origin-form only, valid input only (the generator below makes sure). */
static ssize_t reference(const char *t, size_t len, char *out, size_t cap)
{
    size_t starts[512], depth = 0, o = 0, i = 0;
    bool trailing = false;
    while (i < len && t[i] != '?') {
        i++; /* the '/' */
        char seg[1024];
        size_t n = 0;
        while (i < len && t[i] != '/' && t[i] != '?') {
            unsigned char c = (unsigned char)t[i];
            if (c == '%') {
                unsigned v;
                sscanf(t + i + 1, "%2x", &v);
                i += 3;
                if (v == '/' || v == '\\')
                    return URI_ERR_BAD;
                if ((v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-' ||
                    v == '.' || v == '_' || v == '~') {
                    seg[n++] = (char)v;
                } else {
                    n += (size_t)snprintf(seg + n, 4, "%%%02X", v);
                }
            } else {
                seg[n++] = (char)c;
                i++;
            }
        }
        trailing = n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
        if (n == 0 || (n == 1 && seg[0] == '.'))
            continue;
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            if (depth == 0)
                return URI_ERR_BAD;
            o = starts[--depth];
            continue;
        }
        starts[depth++] = o;
        out[o++] = '/';
        memcpy(out + o, seg, n);
        o += n;
    }
    if (trailing || o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return o + 1 <= cap ? (ssize_t)o : URI_ERR_TOOLONG;
}

static const char *pieces[] = {
    "/", "/",  "/",   "//",  ".",   "..",  "/.",  "/..", "%2e",    "%2E", "%2e%2e", ".%2E", "a", "b", "Zz",
    "~", "-_", "%41", "%7e", "%7E", "%3f", "%3F", "%3a", "%c3%a9", "%25", "%252e",  ";p=1", ":", "@", "!$&'()*+,=",
};

static size_t gen(char *t, size_t cap)
{
    size_t n = 0;
    t[n++] = '/';
    int k = (int)(rp_rand64() % 12);
    for (int j = 0; j < k; j++) {
        const char *p = pieces[rp_rand64() % RP_ARRAY_LEN(pieces)];
        size_t pl = strlen(p);
        if (n + pl + 8 >= cap)
            break;
        memcpy(t + n, p, pl);
        n += pl;
    }
    if (rp_rand64() % 4 == 0) {
        memcpy(t + n, "?q=/../%2e", 10);
        n += 10;
    }
    return n;
}

static bool has_seg(const char *s, const char *seg)
{
    char probe[8];
    snprintf(probe, sizeof probe, "/%s/", seg);
    size_t pl = strlen(probe), sl = strlen(s);
    if (strstr(s, probe))
        return true;
    /* the last segment has no following '/' */
    return sl >= pl - 1 && memcmp(s + sl - (pl - 1), probe, pl - 1) == 0;
}

static void check_invariants(const char *o, size_t n)
{
    assert_int_equal(strlen(o), n);
    assert_int_equal(o[0], '/');
    assert_null(strstr(o, "//"));
    assert_false(has_seg(o, "."));
    assert_false(has_seg(o, ".."));
    for (size_t i = 0; i < n; i++) {
        if (o[i] != '%')
            continue;
        assert_true(i + 2 < n);
        for (int j = 1; j <= 2; j++)
            assert_true((o[i + j] >= '0' && o[i + j] <= '9') || (o[i + j] >= 'A' && o[i + j] <= 'F'));
        unsigned v;
        sscanf(o + i + 1, "%2x", &v);
        bool unres = (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-' ||
                     v == '.' || v == '_' || v == '~';
        assert_false(unres);
    }
}

static void test_properties(void **state)
{
    (void)state;
    rp_rand_seed(0x5eed0715u);
    int ok = 0, refused = 0;
    for (int iter = 0; iter < 5000; iter++) {
        char t[256], a[300], b[300], r[300];
        struct uri_info ia, ib;
        size_t len = gen(t, sizeof t);
        t[len] = '\0';

        ssize_t na = uri_normalize_path(t, len, a, sizeof a, &ia);
        ssize_t nr = reference(t, len, r, sizeof r);
        if (na != nr || (na >= 0 && strcmp(a, r) != 0))
            fail_msg("%s: got %zd \"%s\", reference %zd \"%s\"", t, na, na >= 0 ? a : "", nr, nr >= 0 ? r : "");
        if (na < 0) {
            assert_int_equal(na, URI_ERR_BAD);
            refused++;
            continue;
        }
        ok++;
        check_invariants(a, (size_t)na);
        assert_int_equal(ia.changed,
                         (size_t)na != (ia.query ? (size_t)(ia.query - 1 - t) : len) || memcmp(a, t, (size_t)na) != 0);

        /* idempotence: the output is a fixed point */
        ssize_t nb = uri_normalize_path(a, (size_t)na, b, sizeof b, &ib);
        assert_int_equal(nb, na);
        assert_string_equal(b, a);
        assert_false(ib.changed);

        /* exact capacity: fits in na + 1, not in na */
        assert_int_equal(uri_normalize_path(t, len, b, (size_t)na + 1, NULL), na);
        assert_string_equal(b, a);
        assert_int_equal(uri_normalize_path(t, len, b, (size_t)na, NULL), URI_ERR_TOOLONG);
    }
    /* the generator must exercise both outcomes */
    assert_true(ok > 1000);
    assert_true(refused > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_variants), cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_dot_segments),      cmocka_unit_test(test_forms),
        cmocka_unit_test(test_bad_bytes),         cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

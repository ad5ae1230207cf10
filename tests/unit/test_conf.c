/*
 * test_conf.c — conf.c: YAML loading with positions, bounds, refused
 * features, typed accessors, table-driven sections (conf_fields_*: every
 * row kind, defaults, absent keys, bounds, unknown keys from the table)
 * and the exact "FILE:LINE:COL: message" text.
 * Table-driven: each table row is one input and the exact expected result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "util.h"

static struct conf_doc *load(const char *text)
{
    return conf_load_string("t.yaml", text, strlen(text));
}

/* Every recorded error, in order, must equal want[] (NULL-ended). */
static void assert_errors(const struct conf_doc *doc, const char *const *want)
{
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < conf_error_count(doc); i++)
        if (i >= n)
            print_error("unexpected error: %s\n", conf_error_at(doc, i));
    assert_int_equal(conf_error_count(doc), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(conf_error_at(doc, i), want[i]);
}

/* ---- durations ---------------------------------------------------------- */

static void test_duration_good(void **state)
{
    static const struct {
        const char *in;
        uint64_t us;
    } cases[] = {
        {"250ms", 250000ull},
        {"10s", 10000000ull},
        {"2m", 120000000ull},
        {"1h", 3600000000ull},
        {"1d", 86400000000ull},
        {"1.5s", 1500000ull},
        {"0.25s", 250000ull},
        {"1.25ms", 1250ull},
        {"0.000001s", 1ull},
        {"0s", 0ull},
        {"0ms", 0ull},
        {"007s", 7000000ull},
        {"213503982d", 213503982ull * 86400000000ull}, /* largest whole day count */
        {"18446744073709551ms", 18446744073709551000ull},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        uint64_t v = 12345;
        if (conf_parse_duration_us(cases[i].in, &v) != RP_OK)
            fail_msg("duration \"%s\" refused", cases[i].in);
        if (v != cases[i].us)
            fail_msg("duration \"%s\": got %llu want %llu", cases[i].in, (unsigned long long)v,
                     (unsigned long long)cases[i].us);
    }
}

static void test_duration_bad(void **state)
{
    static const char *const cases[] = {
        "",
        "10",
        "10x",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.s",
        ".5s",
        "1.1234567s",
        "10 s",
        " 10s",
        "10s ",
        "10S",
        "10us",
        "1e3s",
        "1,5s",
        "0x10s",
        "1.5.5s",
        "10sm",
        "213503983d",             /* overflows 64-bit microseconds */
        "18446744073709551616ms", /* overflows while reading digits */
        "99999999999999999999s",
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        uint64_t v = 42;
        if (conf_parse_duration_us(cases[i], &v) != RP_ERR)
            fail_msg("duration \"%s\" accepted as %llu", cases[i], (unsigned long long)v);
        assert_int_equal(v, 42); /* untouched on error */
    }
}

/* The accessor's messages, exactly. */
static void test_duration_messages(void **state)
{
    static const struct {
        const char *yaml;
        const char *error; /* NULL: accepted */
    } cases[] = {
        {"d: 10x\n", "t.yaml:1:4: bad duration \"10x\": expected a number followed by ms, s, m, h or d"},
        {"d: 10\n", "t.yaml:1:4: bad duration \"10\": expected a number followed by ms, s, m, h or d"},
        {"d: 213503983d\n", "t.yaml:1:4: duration \"213503983d\" is too large"},
        {"d: [1s]\n", "t.yaml:1:4: expected a duration, got a sequence"},
        {"d:\n", "t.yaml:1:3: bad duration \"\": expected a number followed by ms, s, m, h or d"},
        {"d: 1.5s\n", NULL},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct conf_doc *doc = load(cases[i].yaml);
        uint64_t v = 7;
        int rc = conf_duration_us(doc, conf_get(conf_root(doc), "d"), &v);
        if (cases[i].error) {
            const char *want[] = {cases[i].error, NULL};
            assert_int_equal(rc, RP_ERR);
            assert_int_equal(v, 7);
            assert_errors(doc, want);
        } else {
            assert_int_equal(rc, RP_OK);
            assert_int_equal(v, 1500000);
            assert_int_equal(conf_error_count(doc), 0);
        }
        conf_free(doc);
    }
}

static void test_duration_range(void **state)
{
    struct conf_doc *doc = load("a: 0s\nb: 2d\nc: 500ms\n");
    const struct conf_node *root = conf_root(doc);
    uint64_t a = 1, b = 1, c = 1;
    (void)state;
    assert_int_equal(conf_duration_range(doc, conf_get(root, "a"), 1000, 86400000000ull, &a), RP_ERR);
    assert_int_equal(conf_duration_range(doc, conf_get(root, "b"), 1000, 86400000000ull, &b), RP_ERR);
    assert_int_equal(conf_duration_range(doc, conf_get(root, "c"), 1000, 86400000000ull, &c), RP_OK);
    assert_int_equal(a, 1);
    assert_int_equal(b, 1);
    assert_int_equal(c, 500000);
    const char *want[] = {
        "t.yaml:1:4: duration \"0s\" is out of range (allowed 1ms..1d)",
        "t.yaml:2:4: duration \"2d\" is out of range (allowed 1ms..1d)",
        NULL,
    };
    assert_errors(doc, want);
    conf_free(doc);
}

static void test_format_duration(void **state)
{
    static const struct {
        uint64_t us;
        const char *text;
    } cases[] = {
        {0, "0s"},         {1000, "1ms"},     {250000, "250ms"},      {1500000, "1500ms"},
        {10000000, "10s"}, {120000000, "2m"}, {3600000000ull, "1h"},  {86400000000ull, "1d"},
        {1, "0.001ms"},    {1500, "1.5ms"},   {1000001, "1.000001s"},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        char buf[32];
        uint64_t back = 0;
        assert_true(conf_format_duration(buf, sizeof buf, cases[i].us) > 0);
        assert_string_equal(buf, cases[i].text);
        /* What we print, we parse back to the same value. */
        assert_int_equal(conf_parse_duration_us(buf, &back), RP_OK);
        assert_int_equal(back, cases[i].us);
    }
    char tiny[3];
    assert_int_equal(conf_format_duration(tiny, sizeof tiny, 250000), -1);
}

/* ---- sizes -------------------------------------------------------------- */

static void test_size_good(void **state)
{
    static const struct {
        const char *in;
        uint64_t v;
    } cases[] = {
        {"0", 0},
        {"512", 512},
        {"16k", 16384},
        {"16K", 16384},
        {"1m", 1048576},
        {"10M", 10485760},
        {"1g", 1073741824},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183g", 17179869183ull << 30},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        uint64_t v = 1;
        if (conf_parse_size(cases[i].in, &v) != RP_OK)
            fail_msg("size \"%s\" refused", cases[i].in);
        assert_int_equal(v, cases[i].v);
    }
}

static void test_size_bad(void **state)
{
    static const char *const cases[] = {
        "",
        "k",
        "1x",
        "1kb",
        "1 k",
        "-1",
        "+1",
        "1.5k",
        "1t",
        " 1",
        "1k ",
        "0x10",
        "18446744073709551616",
        "17179869184g",
        "18014398509481984k",
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        uint64_t v = 9;
        if (conf_parse_size(cases[i], &v) != RP_ERR)
            fail_msg("size \"%s\" accepted as %llu", cases[i], (unsigned long long)v);
        assert_int_equal(v, 9);
    }
}

static void test_size_messages(void **state)
{
    struct conf_doc *doc = load("a: 1x\nb: 17179869184g\nc: 2m\nd: 16k\n");
    const struct conf_node *root = conf_root(doc);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    (void)state;
    assert_int_equal(conf_size(doc, conf_get(root, "a"), &a), RP_ERR);
    assert_int_equal(conf_size(doc, conf_get(root, "b"), &b), RP_ERR);
    assert_int_equal(conf_size_range(doc, conf_get(root, "c"), 1024, 1048576, &c), RP_ERR);
    assert_int_equal(conf_size_range(doc, conf_get(root, "d"), 1024, 1048576, &d), RP_OK);
    assert_int_equal(d, 16384);
    const char *want[] = {
        "t.yaml:1:4: bad size \"1x\": expected a number optionally followed by k, m or g",
        "t.yaml:2:4: size \"17179869184g\" is too large",
        "t.yaml:3:4: size \"2m\" is out of range (allowed 1k..1m)",
        NULL,
    };
    assert_errors(doc, want);
    conf_free(doc);
}

/* ---- addresses ---------------------------------------------------------- */

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t cap, unsigned *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)cap);
        *port = ntohs(sin->sin_port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, (socklen_t)cap);
        *port = ntohs(sin6->sin6_port);
    }
}

static void test_addr_good(void **state)
{
    static const struct {
        const char *in;
        int family;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080},
        {"0.0.0.0:1", AF_INET, "0.0.0.0", 1},
        {"10.1.2.3:65535", AF_INET, "10.1.2.3", 65535},
        {"[::1]:8080", AF_INET6, "::1", 8080},
        {"[::]:443", AF_INET6, "::", 443},
        {"[2001:db8::7]:9000", AF_INET6, "2001:db8::7", 9000},
        {"*:80", AF_INET, "0.0.0.0", 80},
        {":80", AF_INET, "0.0.0.0", 80},
        {"localhost:9001", AF_INET, "127.0.0.1", 9001}, /* names prefer IPv4 */
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char why[256] = "", host[INET6_ADDRSTRLEN];
        unsigned port = 0;
        if (conf_parse_addr(cases[i].in, &ss, &len, why, sizeof why) != RP_OK)
            fail_msg("address \"%s\" refused: %s", cases[i].in, why);
        assert_int_equal(ss.ss_family, cases[i].family);
        assert_int_equal(len, cases[i].family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        addr_text(&ss, host, sizeof host, &port);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
    }
}

static void test_addr_bad(void **state)
{
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"", "empty address"},
        {"127.0.0.1", "port required"},
        {"127.0.0.1:", "port required"},
        {"[::1]", "port required"},
        {"[::1]:", "port required"},
        {"127.0.0.1:0", "port must be a number from 1 to 65535"},
        {"127.0.0.1:65536", "port must be a number from 1 to 65535"},
        {"127.0.0.1:http", "port must be a number from 1 to 65535"},
        {"127.0.0.1:-1", "port must be a number from 1 to 65535"},
        {"127.0.0.1:80 ", "port must be a number from 1 to 65535"},
        {"::1:80", "IPv6 addresses need brackets, e.g. [::1]:8080"},
        {"[::1", "missing ']' after IPv6 address"},
        {"[::1]80", "expected ':' and a port after ']'"},
        {"[]:80", "empty IPv6 address"},
        {"[127.0.0.1]:80", "\"127.0.0.1\" is not an IPv6 address"},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        char why[256] = "";
        if (conf_parse_addr(cases[i].in, &ss, &len, why, sizeof why) != RP_ERR)
            fail_msg("address \"%s\" accepted", cases[i].in);
        assert_string_equal(why, cases[i].why);
    }
}

static void test_addr_messages(void **state)
{
    struct conf_doc *doc = load("a: 127.0.0.1\nb: {x: 1}\nc: \"[::1]:9901\"\n");
    const struct conf_node *root = conf_root(doc);
    struct sockaddr_storage ss;
    socklen_t len = 0;
    (void)state;
    assert_int_equal(conf_addr(doc, conf_get(root, "a"), &ss, &len), RP_ERR);
    assert_int_equal(conf_addr(doc, conf_get(root, "b"), &ss, &len), RP_ERR);
    assert_int_equal(conf_addr(doc, conf_get(root, "c"), &ss, &len), RP_OK);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9901);
    const char *want[] = {
        "t.yaml:1:4: bad address \"127.0.0.1\": port required",
        "t.yaml:2:4: expected an address (host:port), got a map",
        NULL,
    };
    assert_errors(doc, want);
    conf_free(doc);
}

/* ---- the tree and positions --------------------------------------------- */

static void test_positions(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1:8080\n"
                               "upstreams:\n"
                               "  chat:\n"
                               "    servers: [127.0.0.1:9001, 127.0.0.1:9002]\n"
                               "admin:\n"
                               "  listen: 127.0.0.1:9901\n";
    struct conf_doc *doc = load(yaml);
    const struct conf_node *root = conf_root(doc), *n;
    (void)state;
    assert_non_null(root);
    assert_int_equal(conf_error_count(doc), 0);
    assert_int_equal(root->kind, CONF_MAP);
    assert_null(root->key);
    assert_int_equal(conf_len(root), 3);

    n = conf_get(root, "listen");
    assert_non_null(n);
    assert_int_equal(n->kind, CONF_SCALAR);
    assert_string_equal(n->value, "127.0.0.1:8080");
    assert_string_equal(n->key, "listen");
    assert_int_equal(n->key_line, 1);
    assert_int_equal(n->key_col, 1);
    assert_int_equal(n->line, 1);
    assert_int_equal(n->col, 9);

    n = conf_get(conf_get(conf_get(root, "upstreams"), "chat"), "servers");
    assert_non_null(n);
    assert_int_equal(n->kind, CONF_SEQ);
    assert_int_equal(n->key_line, 4);
    assert_int_equal(n->key_col, 5);
    assert_int_equal(n->line, 4);
    assert_int_equal(n->col, 14);
    assert_int_equal(conf_len(n), 2);
    assert_string_equal(n->child->value, "127.0.0.1:9001");
    assert_null(n->child->key);
    assert_int_equal(n->child->col, 15);
    assert_string_equal(n->child->next->value, "127.0.0.1:9002");
    assert_int_equal(n->child->next->line, 4);
    assert_int_equal(n->child->next->col, 31);
    assert_null(n->child->next->next);

    n = conf_get(conf_get(root, "admin"), "listen");
    assert_int_equal(n->key_line, 6);
    assert_int_equal(n->key_col, 3);
    assert_int_equal(n->col, 11);

    assert_null(conf_get(root, "nope"));
    assert_null(conf_get(NULL, "listen"));
    assert_null(conf_get(conf_get(root, "listen"), "x")); /* not a map */
    assert_int_equal(conf_len(conf_get(root, "listen")), 0);
    assert_string_equal(conf_file_name(doc), "t.yaml");
    conf_free(doc);
}

static void test_scalar_styles(void **state)
{
    struct conf_doc *doc = load("a: 'single ''q'''\n"
                                "b: \"dq \\t tab\"\n"
                                "c: |\n  line1\n  line2\n"
                                "d: >-\n  folded\n  text\n"
                                "e:\n"
                                "\"f g\": 1\n");
    const struct conf_node *root = conf_root(doc);
    (void)state;
    assert_int_equal(conf_error_count(doc), 0);
    assert_string_equal(conf_get(root, "a")->value, "single 'q'");
    assert_string_equal(conf_get(root, "b")->value, "dq \t tab");
    assert_string_equal(conf_get(root, "c")->value, "line1\nline2\n");
    assert_string_equal(conf_get(root, "d")->value, "folded text");
    assert_string_equal(conf_get(root, "e")->value, "");
    assert_string_equal(conf_get(root, "f g")->value, "1");
    assert_int_equal(conf_get(root, "f g")->key_col, 1);
    conf_free(doc);
}

static void test_empty_documents(void **state)
{
    static const char *const cases[] = {"", "\n\n", "# only a comment\n"};
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct conf_doc *doc = load(cases[i]);
        assert_null(conf_root(doc));
        assert_int_equal(conf_error_count(doc), 0);
        conf_free(doc);
    }
    struct conf_doc *doc = conf_load_string("n.yaml", NULL, 0);
    assert_null(conf_root(doc));
    conf_free(doc);
}

/* ---- load errors: syntax, refused features, bounds ---------------------- */

static void test_load_errors(void **state)
{
    static const struct {
        const char *yaml;
        bool root; /* tree kept (errors that do not break the structure) */
        const char *errors[4];
    } cases[] = {
        {"a: b: c\n", false, {"t.yaml:1:5: syntax error: mapping values are not allowed in this context"}},
        {"a: [1, 2\n",
         false,
         {"t.yaml:2:1: syntax error: did not find expected ',' or ']' (while parsing a flow sequence at 1:4)"}},
        {"a:\n  b: 1\n c: 2\n",
         false,
         {"t.yaml:3:2: syntax error: did not find expected key (while parsing a block mapping at 1:1)"}},
        {"a: \"open\n",
         false,
         {"t.yaml:2:1: syntax error: found unexpected end of stream (while scanning a quoted scalar at 1:4)"}},
        {"\tx: 1\n",
         false,
         {"t.yaml:1:1: syntax error: found character that cannot start any token "
          "(while scanning for the next token at 1:1)"}},
        {"ok: 1\nbad: \x80\n", false, {"t.yaml:2:6: syntax error: invalid leading UTF-8 octet"}},
        {"a: &x 1\nb: *x\nc: !!str 5\nd: !custom {}\n",
         false,
         {"t.yaml:1:4: anchors are not supported (&x)", "t.yaml:2:4: aliases are not supported (*x)",
          "t.yaml:3:4: tags are not supported (!!str)", "t.yaml:4:4: tags are not supported (!custom)"}},
        {"? [a]\n: 1\n", false, {"t.yaml:1:3: map keys must be plain values, not a sequence"}},
        {"a: \"x\\0y\"\n", false, {"t.yaml:1:4: values must not contain NUL characters"}},
        {"a: 1\n---\nb: 2\n", false, {"t.yaml:2:1: only one YAML document is supported"}},
        {"a: 1\nb: 2\na: 3\nm: {x: 1, x: 2}\na: 4\n",
         true,
         {"t.yaml:3:1: duplicate key \"a\" (first at line 1, column 1)",
          "t.yaml:4:11: duplicate key \"x\" (first at line 4, column 5)",
          "t.yaml:5:1: duplicate key \"a\" (first at line 1, column 1)"}},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct conf_doc *doc = load(cases[i].yaml);
        const char *want[5] = {NULL};
        memcpy(want, cases[i].errors, sizeof cases[i].errors);
        assert_errors(doc, want);
        if (cases[i].root)
            assert_non_null(conf_root(doc));
        else
            assert_null(conf_root(doc));
        conf_free(doc);
    }
}

static void test_duplicate_keys_keep_first(void **state)
{
    struct conf_doc *doc = load("a: first\na: second\n");
    (void)state;
    assert_string_equal(conf_get(conf_root(doc), "a")->value, "first");
    conf_free(doc);
}

static void test_bounds(void **state)
{
    size_t n;
    char *text;
    struct conf_doc *doc;
    (void)state;

    /* Document size. */
    n = CONF_MAX_BYTES + 1;
    text = rp_xmalloc(n + 1);
    memset(text, '#', n);
    text[n] = '\0';
    doc = conf_load_string("big.yaml", text, n);
    assert_null(conf_root(doc));
    assert_int_equal(conf_error_count(doc), 1);
    assert_string_equal(conf_error_at(doc, 0), "big.yaml:1:1: file too large (1048577 bytes, max 1048576)");
    conf_free(doc);
    free(text);

    /* Nesting: CONF_MAX_DEPTH levels load, one more does not. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t d = CONF_MAX_DEPTH + (size_t)extra, o = 0;
        text = rp_xmalloc(2 * d + 2);
        for (size_t i = 0; i < d; i++)
            text[o++] = '[';
        for (size_t i = 0; i < d; i++)
            text[o++] = ']';
        text[o++] = '\n';
        text[o] = '\0';
        doc = load(text);
        if (extra) {
            assert_null(conf_root(doc));
            assert_int_equal(conf_error_count(doc), 1);
            assert_string_equal(conf_error_at(doc, 0), "t.yaml:1:65: nesting too deep (max 64 levels)");
        } else {
            assert_non_null(conf_root(doc));
            assert_int_equal(conf_error_count(doc), 0);
        }
        conf_free(doc);
        free(text);
    }

    /* Node count: a sequence of CONF_MAX_NODES items is one node too many. */
    n = CONF_MAX_NODES;
    text = rp_xmalloc(2 * n + 4);
    text[0] = '[';
    for (size_t i = 0; i < n; i++) {
        text[1 + 2 * i] = '1';
        text[2 + 2 * i] = ',';
    }
    text[2 * n] = ']';
    text[2 * n + 1] = '\0';
    doc = load(text);
    assert_null(conf_root(doc));
    assert_int_equal(conf_error_count(doc), 1);
    assert_string_equal(conf_error_at(doc, 0), "t.yaml:1:200000: too many nodes (max 100000)");
    conf_free(doc);
    free(text);
}

/* ---- keys and typed accessors ------------------------------------------- */

static void test_check_keys(void **state)
{
    static const char *const allowed[] = {"a", "b", "c", NULL};
    struct conf_doc *doc = load("a: 1\nfoo: 2\nc: 3\nbar:\n  x: 1\n");
    (void)state;
    assert_int_equal(conf_check_keys(doc, conf_root(doc), allowed), 2);
    const char *want[] = {
        "t.yaml:2:1: unknown key \"foo\" (expected one of: a, b, c)",
        "t.yaml:4:1: unknown key \"bar\" (expected one of: a, b, c)",
        NULL,
    };
    assert_errors(doc, want);
    /* Not a map, or no map: nothing to check. */
    assert_int_equal(conf_check_keys(doc, conf_get(conf_root(doc), "a"), allowed), 0);
    assert_int_equal(conf_check_keys(doc, NULL, allowed), 0);
    assert_int_equal(conf_error_count(doc), 2);
    conf_free(doc);
}

static void test_expect_and_require(void **state)
{
    struct conf_doc *doc = load("m: {x: 1}\ns: [1]\nv: hello\ne:\n");
    const struct conf_node *root = conf_root(doc);
    (void)state;
    assert_int_equal(conf_expect_map(doc, conf_get(root, "m")), RP_OK);
    assert_int_equal(conf_expect_seq(doc, conf_get(root, "s")), RP_OK);
    assert_int_equal(conf_expect_map(doc, conf_get(root, "s")), RP_ERR);
    assert_int_equal(conf_expect_seq(doc, conf_get(root, "m")), RP_ERR);
    assert_int_equal(conf_expect_map(doc, conf_get(root, "v")), RP_ERR);
    assert_int_equal(conf_expect_map(doc, conf_get(root, "e")), RP_ERR);
    assert_non_null(conf_require(doc, conf_get(root, "m"), "x"));
    assert_null(conf_require(doc, conf_get(root, "m"), "y"));
    assert_null(conf_require(doc, NULL, "z"));
    const char *want[] = {
        "t.yaml:1:1: missing required key \"y\"",
        "t.yaml:1:1: missing required key \"z\"",
        "t.yaml:1:4: expected a sequence, got a map",
        "t.yaml:2:4: expected a map, got a sequence",
        "t.yaml:3:4: expected a map, got \"hello\"",
        "t.yaml:4:3: expected a map, got an empty value",
        NULL,
    };
    assert_errors(doc, want);
    conf_free(doc);
}

static void test_scalar_accessors(void **state)
{
    static const char *const balance[] = {"p2c", "round_robin", NULL};
    struct conf_doc *doc = load("s: text\n"
                                "t: yes\n"
                                "f: False\n"
                                "bb: maybe\n"
                                "u: 42\n"
                                "ub: 4x\n"
                                "ur: 100\n"
                                "un: -1\n"
                                "ubig: 18446744073709551616\n"
                                "d: 0.75\n"
                                "db: nan\n"
                                "dr: 1.5\n"
                                "dw: \" 1\"\n"
                                "e: round_robin\n"
                                "eb: rr\n"
                                "m: {}\n");
    const struct conf_node *root = conf_root(doc);
    const char *s = "default";
    bool t = false, f = true, bb = true;
    uint64_t u = 0, ub = 5, ur = 5, un = 5, ubig = 5;
    double d = 0, db = 2, dr = 2, dw = 2;
    int e = -1, eb = -1;
    (void)state;

    assert_int_equal(conf_string(doc, NULL, &s), RP_OK); /* absent: default kept */
    assert_string_equal(s, "default");
    assert_int_equal(conf_string(doc, conf_get(root, "s"), &s), RP_OK);
    assert_string_equal(s, "text");
    assert_int_equal(conf_string(doc, conf_get(root, "m"), &s), RP_ERR);
    assert_int_equal(conf_bool(doc, conf_get(root, "t"), &t), RP_OK);
    assert_true(t);
    assert_int_equal(conf_bool(doc, conf_get(root, "f"), &f), RP_OK);
    assert_false(f);
    assert_int_equal(conf_bool(doc, conf_get(root, "bb"), &bb), RP_ERR);
    assert_true(bb);
    assert_int_equal(conf_uint(doc, conf_get(root, "u"), 0, 100, &u), RP_OK);
    assert_int_equal(u, 42);
    assert_int_equal(conf_uint(doc, conf_get(root, "ub"), 0, 100, &ub), RP_ERR);
    assert_int_equal(conf_uint(doc, conf_get(root, "ur"), 1, 64, &ur), RP_ERR);
    assert_int_equal(conf_uint(doc, conf_get(root, "un"), 0, 100, &un), RP_ERR);
    assert_int_equal(conf_uint(doc, conf_get(root, "ubig"), 0, UINT64_MAX, &ubig), RP_ERR);
    assert_int_equal(ub + ur + un + ubig, 20);
    assert_int_equal(conf_double(doc, conf_get(root, "d"), 0.0, 1.0, &d), RP_OK);
    assert_true(d == 0.75);
    assert_int_equal(conf_double(doc, conf_get(root, "db"), 0.0, 1.0, &db), RP_ERR);
    assert_int_equal(conf_double(doc, conf_get(root, "dr"), 0.0, 1.0, &dr), RP_ERR);
    assert_int_equal(conf_double(doc, conf_get(root, "dw"), 0.0, 1.0, &dw), RP_ERR);
    assert_true(db == 2 && dr == 2 && dw == 2);
    assert_int_equal(conf_enum(doc, conf_get(root, "e"), balance, &e), RP_OK);
    assert_int_equal(e, 1);
    assert_int_equal(conf_enum(doc, conf_get(root, "eb"), balance, &eb), RP_ERR);
    assert_int_equal(eb, -1);

    const char *want[] = {
        "t.yaml:4:5: bad boolean \"maybe\": expected true or false",
        "t.yaml:6:5: bad number \"4x\": expected a non-negative integer",
        "t.yaml:7:5: value \"100\" is out of range (allowed 1..64)",
        "t.yaml:8:5: bad number \"-1\": expected a non-negative integer",
        "t.yaml:9:7: value \"18446744073709551616\" is out of range (allowed 0..18446744073709551615)",
        "t.yaml:11:5: bad number \"nan\": expected a decimal number",
        "t.yaml:12:5: value \"1.5\" is out of range (allowed 0..1)",
        "t.yaml:13:5: bad number \" 1\": expected a decimal number",
        "t.yaml:15:5: bad value \"rr\" (expected one of: p2c, round_robin)",
        "t.yaml:16:4: expected a string, got a map",
        NULL,
    };
    assert_errors(doc, want);
    conf_free(doc);
}

/* ---- the error list ----------------------------------------------------- */

static void test_error_order_and_dedupe(void **state)
{
    struct conf_doc *doc = load("a: 1\nb: 2\nc: 3\n");
    const struct conf_node *root = conf_root(doc);
    (void)state;
    conf_error(doc, conf_get(root, "c"), "third");
    conf_error(doc, conf_get(root, "a"), "first");
    conf_error_key(doc, conf_get(root, "b"), "second at key");
    conf_error(doc, conf_get(root, "a"), "first");       /* same text: once */
    conf_error(doc, conf_get(root, "a"), "first again"); /* same place: in order */
    conf_error(doc, NULL, "document");
    const char *want[] = {
        "t.yaml:1:1: document",      "t.yaml:1:4: first", "t.yaml:1:4: first again",
        "t.yaml:2:1: second at key", "t.yaml:3:4: third", NULL,
    };
    assert_errors(doc, want);
    assert_null(conf_error_at(doc, 5));
    conf_free(doc);
}

static void test_error_cap_and_print(void **state)
{
    struct conf_doc *doc = load("a: 1\n");
    char *out = NULL;
    size_t outlen = 0;
    FILE *f;
    (void)state;
    for (int i = 0; i < CONF_MAX_ERRORS + 5; i++)
        conf_error(doc, NULL, "error %03d", i);
    assert_int_equal(conf_error_count(doc), CONF_MAX_ERRORS + 5);
    assert_string_equal(conf_error_at(doc, 0), "t.yaml:1:1: error 000");
    assert_null(conf_error_at(doc, CONF_MAX_ERRORS));

    f = open_memstream(&out, &outlen);
    assert_non_null(f);
    conf_print_errors(doc, f);
    fclose(f);
    assert_non_null(strstr(out, "t.yaml:1:1: error 000\nt.yaml:1:1: error 001\n"));
    assert_non_null(strstr(out, "t.yaml:1:1: error 099\nt.yaml:1:1: too many errors (5 more not shown)\n"));
    assert_null(strstr(out, "error 100"));
    free(out);
    conf_free(doc);
}

static void test_show_in_messages(void **state)
{
    char buf[CONF_SHOW_CAP], longv[200];
    (void)state;
    assert_string_equal(conf_show("a\"b\\c\x01", buf, sizeof buf), "a\\\"b\\\\c\\x01");
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    conf_show(longv, buf, sizeof buf);
    assert_int_equal(strlen(buf), 64 + 3);
    assert_string_equal(buf + 64, "...");
    /* Never cut a UTF-8 character, whatever the buffer. */
    assert_string_equal(conf_show("\xc3\xa9\xc3\xa9", buf, 8), "\xc3\xa9\xc3\xa9");
    assert_string_equal(conf_show("a\xc3\xa9\xc3\xa9", buf, 8), "a\xc3\xa9...");

    /* Whatever a section parser quotes, an error stays one line (found by
     * fuzz_conf: a raw value with a newline in a status error). */
    struct conf_doc *d1 = load("k: v\n");
    conf_error(d1, NULL, "no upstream named \"%s\"", "em\n\nt.yaml:9:9: forged\x7f");
    assert_int_equal(conf_error_count(d1), 1);
    assert_string_equal(conf_error_at(d1, 0), "t.yaml:1:1: no upstream named \"em\\x0a\\x0at.yaml:9:9: forged\\x7f\"");
    conf_free(d1);

    /* A path is shown whole (a cut path names no file), still escaped,
     * and cut only when the buffer is full. */
    char pbuf[CONF_SHOW_PATH_CAP];
    assert_string_equal(conf_show_path(longv, pbuf, sizeof pbuf), longv);
    assert_string_equal(conf_show_path("/tmp/a\nb\"c", pbuf, sizeof pbuf), "/tmp/a\\x0ab\\\"c");
    conf_show_path(longv, pbuf, 20);
    assert_string_equal(pbuf, "xxxxxxxxxxxxxxxx...");

    struct conf_doc *doc = load("k: \"bad\\ttab\\u00e9\"\n");
    uint64_t v;
    assert_int_equal(conf_size(doc, conf_get(conf_root(doc), "k"), &v), RP_ERR);
    assert_string_equal(
        conf_error_at(doc, 0),
        "t.yaml:1:4: bad size \"bad\\x09tab\xc3\xa9\": expected a number optionally followed by k, m or g");
    conf_free(doc);
}

/* ---- files -------------------------------------------------------------- */

static void test_load_file(void **state)
{
    char path[] = "/tmp/test_conf_XXXXXX";
    int fd = mkstemp(path);
    static const char yaml[] = "# comment\nkey: value\n";
    struct conf_doc *doc;
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, sizeof yaml - 1), (ssize_t)(sizeof yaml - 1));
    close(fd);
    doc = conf_load_file(path);
    assert_int_equal(conf_error_count(doc), 0);
    assert_string_equal(conf_get(conf_root(doc), "key")->value, "value");
    assert_int_equal(conf_get(conf_root(doc), "key")->line, 2);
    assert_string_equal(conf_file_name(doc), path);
    conf_free(doc);
    unlink(path);

    doc = conf_load_file("/nonexistent/rampart.yaml");
    assert_null(conf_root(doc));
    assert_int_equal(conf_error_count(doc), 1);
    assert_string_equal(conf_error_at(doc, 0), "/nonexistent/rampart.yaml:1:1: cannot open: No such file or directory");
    conf_free(doc);
}

/* ---- table-driven sections (conf_fields_*) ------------------------------ */

/* One member of every kind, with sentinels between the small integers so
 * a store of the wrong width shows. */
struct fsect {
    bool on;
    uint8_t u8;
    uint8_t guard8;
    uint16_t u16;
    uint16_t guard16;
    uint32_t u32;
    uint64_t u64;
    double ratio;
    uint64_t wait_us;
    uint32_t size32;
    uint64_t size64;
    int mode;
    char name[8];
    char code[16];
    int hook_calls;
    int hook_line;
    int other;
};

static const char *const fmodes[] = {"p2c", "round_robin", "random", NULL};

static int fhook(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    struct fsect *s = base;
    s->hook_calls++;
    s->hook_line = node->line;
    if (node->kind != CONF_SEQ) {
        conf_error(doc, node, "hook wants a list");
        return RP_ERR;
    }
    return RP_OK;
}

static const struct conf_field ffields[] = {
    CONF_FIELD_BOOL("on", struct fsect, on, true),
    CONF_FIELD_UINT("u8", struct fsect, u8, 1, 200, 7),
    CONF_FIELD_UINT("u16", struct fsect, u16, 0, 60000, 1000),
    CONF_FIELD_UINT("u32", struct fsect, u32, 10, 4000000000u, 20),
    CONF_FIELD_UINT("u64", struct fsect, u64, 0, UINT64_MAX, 5),
    CONF_FIELD_DOUBLE("ratio", struct fsect, ratio, 0.0, 1.0, 0.25),
    CONF_FIELD_DURATION("wait", struct fsect, wait_us, 1000, 3600000000ull, 10000000),
    CONF_FIELD_SIZE("size32", struct fsect, size32, 1024, 1u << 30, 16 * 1024),
    CONF_FIELD_SIZE("size64", struct fsect, size64, 0, UINT64_MAX, 1u << 20),
    CONF_FIELD_ENUM("mode", struct fsect, mode, fmodes, 1),
    CONF_FIELD_STRBUF("name", struct fsect, name, 1, "dflt"),
    CONF_FIELD_STRBUF("code", struct fsect, code, 3, "abc"),
    CONF_FIELD_CUSTOM("hook", fhook),
    CONF_FIELD_IGNORE("other"),
    CONF_FIELD_END,
};

static void fsect_defaults(struct fsect *s)
{
    memset(s, 0xa5, sizeof *s); /* garbage everywhere first */
    conf_fields_defaults(ffields, s);
}

static void test_fields_defaults(void **state)
{
    struct fsect s;
    (void)state;
    fsect_defaults(&s);
    assert_true(s.on);
    assert_int_equal(s.u8, 7);
    assert_int_equal(s.guard8, 0xa5);
    assert_int_equal(s.u16, 1000);
    assert_int_equal(s.guard16, 0xa5a5);
    assert_int_equal(s.u32, 20);
    assert_true(s.u64 == 5);
    assert_true(s.ratio == 0.25);
    assert_true(s.wait_us == 10000000);
    assert_int_equal(s.size32, 16 * 1024);
    assert_true(s.size64 == 1u << 20);
    assert_int_equal(s.mode, 1);
    assert_string_equal(s.name, "dflt");
    assert_string_equal(s.code, "abc");
    /* Custom and ignored rows own no member: untouched. */
    assert_int_equal(s.hook_calls, (int)0xa5a5a5a5);
    assert_int_equal(s.other, (int)0xa5a5a5a5);

    /* A STRBUF default longer than its member is cut to fit, terminated. */
    struct small {
        char tag[4];
        char after;
    } sm;
    static const struct conf_field sf[] = {
        CONF_FIELD_STRBUF("tag", struct small, tag, 0, "toolong"),
        CONF_FIELD_END,
    };
    memset(&sm, 'x', sizeof sm);
    conf_fields_defaults(sf, &sm);
    assert_string_equal(sm.tag, "too");
    assert_int_equal(sm.after, 'x');
    /* No default: the empty string. */
    static const struct conf_field sf0[] = {
        CONF_FIELD_STRBUF("tag", struct small, tag, 0, NULL),
        CONF_FIELD_END,
    };
    conf_fields_defaults(sf0, &sm);
    assert_string_equal(sm.tag, "");
}

static void test_fields_parse_every_kind(void **state)
{
    struct fsect s;
    struct conf_doc *doc = load("sect:\n"
                                "  on: false\n"
                                "  u8: 200\n"
                                "  u16: 60000\n"
                                "  u32: 4000000000\n"
                                "  u64: 18446744073709551615\n"
                                "  ratio: 0.5\n"
                                "  wait: 1.5s\n"
                                "  size32: 1g\n"
                                "  size64: 16g\n"
                                "  mode: random\n"
                                "  name: exactly\n"
                                "  code: xyz\n"
                                "  hook: [1, 2]\n"
                                "  other: {anything: [goes]}\n");
    (void)state;
    fsect_defaults(&s);
    s.hook_calls = 0;
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_OK);
    const char *none[] = {NULL};
    assert_errors(doc, none);
    assert_false(s.on);
    assert_int_equal(s.u8, 200);
    assert_int_equal(s.guard8, 0xa5);
    assert_int_equal(s.u16, 60000);
    assert_int_equal(s.guard16, 0xa5a5);
    assert_true(s.u32 == 4000000000u);
    assert_true(s.u64 == UINT64_MAX);
    assert_true(s.ratio == 0.5);
    assert_true(s.wait_us == 1500000);
    assert_true(s.size32 == 1u << 30);
    assert_true(s.size64 == 16ull << 30);
    assert_int_equal(s.mode, 2);
    assert_string_equal(s.name, "exactly"); /* 7 bytes: fills char[8] */
    assert_string_equal(s.code, "xyz");
    assert_int_equal(s.hook_calls, 1);
    assert_int_equal(s.hook_line, 14);
    assert_int_equal(s.other, (int)0xa5a5a5a5); /* ignored: someone else's */
    conf_free(doc);
}

static void test_fields_absent_keep(void **state)
{
    struct fsect s, before;
    struct conf_doc *doc = load("sect:\n  u16: 3\n");
    (void)state;
    fsect_defaults(&s);
    /* Values from an outer level (not the defaults) stay as they are. */
    s.u8 = 99;
    s.ratio = 0.75;
    rp_snprintf(s.name, sizeof s.name, "outer");
    s.hook_calls = 0;
    before = s;
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_OK);
    assert_int_equal(conf_error_count(doc), 0);
    assert_int_equal(s.u16, 3);
    before.u16 = 3;
    assert_memory_equal(&s, &before, sizeof s); /* nothing else changed */
    assert_int_equal(s.hook_calls, 0);          /* absent custom key: not called */

    /* No section at all: RP_OK, nothing touched, no error. */
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "missing"), ffields, &s), RP_OK);
    assert_memory_equal(&s, &before, sizeof s);
    /* An empty map changes nothing either. */
    struct conf_doc *d2 = load("sect: {}\n");
    assert_int_equal(conf_fields_parse(d2, conf_get(conf_root(d2), "sect"), ffields, &s), RP_OK);
    assert_memory_equal(&s, &before, sizeof s);
    assert_int_equal(conf_error_count(d2), 0);
    conf_free(d2);
    conf_free(doc);
}

static void test_fields_errors(void **state)
{
    struct fsect s, before;
    struct conf_doc *doc = load("sect:\n"
                                "  on: perhaps\n"
                                "  u8: 201\n"
                                "  u16: 60001\n"
                                "  u32: 9\n"
                                "  u64: 18446744073709551616\n"
                                "  ratio: 1.01\n"
                                "  wait: 2h\n"
                                "  size32: 2g\n"
                                "  size64: 1t\n"
                                "  mode: rr\n"
                                "  name: too-long\n"
                                "  code: ab\n"
                                "  hook: scalar\n");
    (void)state;
    fsect_defaults(&s);
    s.hook_calls = 0;
    before = s;
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_ERR);
    const char *want[] = {
        "t.yaml:2:7: bad boolean \"perhaps\": expected true or false",
        "t.yaml:3:7: value \"201\" is out of range (allowed 1..200)",
        "t.yaml:4:8: value \"60001\" is out of range (allowed 0..60000)",
        "t.yaml:5:8: value \"9\" is out of range (allowed 10..4000000000)",
        "t.yaml:6:8: value \"18446744073709551616\" is out of range (allowed 0..18446744073709551615)",
        "t.yaml:7:10: value \"1.01\" is out of range (allowed 0..1)",
        "t.yaml:8:9: duration \"2h\" is out of range (allowed 1ms..1h)",
        "t.yaml:9:11: size \"2g\" is out of range (allowed 1k..1g)",
        "t.yaml:10:11: bad size \"1t\": expected a number optionally followed by k, m or g",
        "t.yaml:11:9: bad value \"rr\" (expected one of: p2c, round_robin, random)",
        "t.yaml:12:9: too long (at most 7 bytes)",
        "t.yaml:13:9: too short (at least 3 bytes)",
        "t.yaml:14:9: hook wants a list",
        NULL,
    };
    assert_errors(doc, want);
    /* A refused value leaves the member as it was. */
    before.hook_calls = 1;
    before.hook_line = 14;
    assert_memory_equal(&s, &before, sizeof s);
    conf_free(doc);

    /* Empty and non-scalar values. */
    doc = load("sect:\n  name: ''\n  u8: [1]\n  wait: {a: 1}\n");
    fsect_defaults(&s);
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_ERR);
    const char *want2[] = {
        "t.yaml:2:9: must not be empty",
        "t.yaml:3:7: expected a number, got a sequence",
        "t.yaml:4:9: expected a duration, got a map",
        NULL,
    };
    assert_errors(doc, want2);
    assert_string_equal(s.name, "dflt");
    assert_int_equal(s.u8, 7);
    conf_free(doc);
}

struct floor_rows {
    uint64_t interval_us;
    double share;
};

static const struct conf_field floor_fields[] = {
    CONF_FIELD_DURATION_FLOOR("interval", struct floor_rows, interval_us, 100000, UINT64_MAX, 2000000),
    CONF_FIELD_FRACTION("share", struct floor_rows, share, 0.5, 0.25),
    CONF_FIELD_END,
};

/* A duration under its floor is refused with its own message and keeps
 * the value it had; a fraction reads "0.1" and "10%" alike and is bounded
 * by its maximum in both spellings. */
static void test_fields_floor_and_fraction(void **state)
{
    (void)state;
    struct floor_rows r;
    conf_fields_defaults(floor_fields, &r);
    assert_true(r.interval_us == 2000000 && r.share == 0.25);

    struct conf_doc *doc = load("interval: 50ms\nshare: 10%\n");
    assert_int_equal(conf_fields_parse(doc, conf_root(doc), floor_fields, &r), RP_ERR);
    assert_int_equal(conf_error_count(doc), 1);
    assert_string_equal(conf_error_at(doc, 0), "t.yaml:1:11: interval is too short");
    assert_true(r.interval_us == 2000000);
    assert_true(r.share > 0.0999 && r.share < 0.1001);
    conf_free(doc);

    doc = load("interval: 100ms\nshare: 0.4\n");
    assert_int_equal(conf_fields_parse(doc, conf_root(doc), floor_fields, &r), RP_OK);
    assert_true(r.interval_us == 100000 && r.share == 0.4);
    conf_free(doc);

    doc = load("share: 60%\n");
    assert_int_equal(conf_fields_parse(doc, conf_root(doc), floor_fields, &r), RP_ERR);
    assert_string_equal(conf_error_at(doc, 0), "t.yaml:1:8: expected a percentage between 0% and 50%");
    assert_true(r.share == 0.4);
    conf_free(doc);

    doc = load("share: 0.6\n");
    assert_int_equal(conf_fields_parse(doc, conf_root(doc), floor_fields, &r), RP_ERR);
    assert_true(r.share == 0.4);
    conf_free(doc);
}

static void test_fields_unknown_keys(void **state)
{
    struct fsect s;
    struct conf_doc *doc = load("sect:\n  u8: 5\n  nope: 1\n  On: true\n  ratio: 2\n");
    (void)state;
    fsect_defaults(&s);
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_ERR);
    /* The list of keys comes from the table, every row in order
     * (custom and ignored rows too); keys are case-sensitive. */
    const char *want[] = {
        "t.yaml:3:3: unknown key \"nope\" (expected one of: on, u8, u16, u32, u64, ratio, wait, size32, size64, "
        "mode, name, code, hook, other)",
        "t.yaml:4:3: unknown key \"On\" (expected one of: on, u8, u16, u32, u64, ratio, wait, size32, size64, "
        "mode, name, code, hook, other)",
        "t.yaml:5:10: value \"2\" is out of range (allowed 0..1)",
        NULL,
    };
    assert_errors(doc, want);
    /* Known keys are still parsed next to unknown ones. */
    assert_int_equal(s.u8, 5);
    assert_true(s.on); /* "On" is not "on" */
    conf_free(doc);

    /* Not a map: one error at the value, nothing parsed. */
    doc = load("sect: [u8]\nflat: 3\n");
    fsect_defaults(&s);
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "sect"), ffields, &s), RP_ERR);
    assert_int_equal(conf_fields_parse(doc, conf_get(conf_root(doc), "flat"), ffields, &s), RP_ERR);
    const char *want2[] = {
        "t.yaml:1:7: expected a map, got a sequence",
        "t.yaml:2:7: expected a map, got \"3\"",
        NULL,
    };
    assert_errors(doc, want2);
    assert_int_equal(s.u8, 7);
    conf_free(doc);
}

static void test_field_find(void **state)
{
    (void)state;
    const struct conf_field *f = conf_field_find(ffields, "wait");
    assert_non_null(f);
    assert_int_equal(f->kind, CONF_F_DURATION);
    assert_int_equal(f->offset, offsetof(struct fsect, wait_us));
    assert_int_equal(f->size, sizeof(uint64_t));
    assert_true(f->min == 1000 && f->max == 3600000000ull && f->def == 10000000);
    f = conf_field_find(ffields, "u8");
    assert_non_null(f);
    assert_int_equal(f->size, 1);
    assert_int_equal(conf_field_find(ffields, "hook")->kind, CONF_F_CUSTOM);
    assert_int_equal(conf_field_find(ffields, "other")->kind, CONF_F_IGNORE);
    assert_null(conf_field_find(ffields, "missing"));
    assert_null(conf_field_find(ffields, "U8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_good),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_duration_messages),
        cmocka_unit_test(test_duration_range),
        cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_size_good),
        cmocka_unit_test(test_size_bad),
        cmocka_unit_test(test_size_messages),
        cmocka_unit_test(test_addr_good),
        cmocka_unit_test(test_addr_bad),
        cmocka_unit_test(test_addr_messages),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_scalar_styles),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_duplicate_keys_keep_first),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_expect_and_require),
        cmocka_unit_test(test_scalar_accessors),
        cmocka_unit_test(test_error_order_and_dedupe),
        cmocka_unit_test(test_error_cap_and_print),
        cmocka_unit_test(test_show_in_messages),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_fields_defaults),
        cmocka_unit_test(test_fields_floor_and_fraction),
        cmocka_unit_test(test_fields_parse_every_kind),
        cmocka_unit_test(test_fields_absent_keep),
        cmocka_unit_test(test_fields_errors),
        cmocka_unit_test(test_fields_unknown_keys),
        cmocka_unit_test(test_field_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

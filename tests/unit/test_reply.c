/*
 * test_reply.c — reply.c, the one writer of locally generated responses:
 * the OpenAI error body (shape, null members, escaping, checked by parsing
 * it with jansson), the error type of every status, the connection
 * decision for HTTP/1.0 and 1.1, and the head's framing, read back with
 * our own response parser: Content-Length that matches the body, none for
 * 1xx/204/304, X-Request-Id, extra header lines, Date.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "h1.h"
#include "reply.h"
#include "util.h"

/* The error object of body (which must be exactly one JSON document and
 * a newline) with every member checked for type; caller decrefs. */
static json_t *parse_error_body(const char *body, size_t len)
{
    json_error_t err;
    assert_true(len > 0);
    assert_int_equal(body[len - 1], '\n');
    json_t *v = json_loadb(body, len, 0, &err);
    if (!v)
        fail_msg("error body is not JSON: %s: %.*s", err.text, (int)len, body);
    assert_true(json_is_object(v));
    assert_int_equal(json_object_size(v), 1);
    json_t *e = json_object_get(v, "error");
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(e), 4);
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_true(json_is_string(json_object_get(e, "type")));
    json_t *p = json_object_get(e, "param"), *c = json_object_get(e, "code");
    assert_true(p && (json_is_null(p) || json_is_string(p)));
    assert_true(c && (json_is_null(c) || json_is_string(c)));
    return v;
}

static const char *member(json_t *doc, const char *key)
{
    json_t *m = json_object_get(json_object_get(doc, "error"), key);
    return json_is_string(m) ? json_string_value(m) : NULL;
}

/* ---- body --------------------------------------------------------------- */

static void test_error_body_exact(void **state)
{
    struct sbuf s;
    (void)state;
    sbuf_init(&s, 0);
    reply_error_body(&s, 429, NULL, NULL, "rate_limit", "Too many requests");
    assert_string_equal(s.data, "{\"error\":{\"message\":\"Too many requests\",\"type\":\"rate_limit_exceeded\","
                                "\"param\":null,\"code\":\"rate_limit\"}}\n");
    sbuf_reset(&s);
    reply_error_body(&s, 400, "custom_type", "max_tokens", NULL, "bad");
    assert_string_equal(s.data, "{\"error\":{\"message\":\"bad\",\"type\":\"custom_type\","
                                "\"param\":\"max_tokens\",\"code\":null}}\n");
    /* A missing message is the empty string, never null: clients read it. */
    sbuf_reset(&s);
    reply_error_body(&s, 500, NULL, NULL, NULL, NULL);
    assert_string_equal(s.data,
                        "{\"error\":{\"message\":\"\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n");
    json_t *v = parse_error_body(s.data, s.len);
    assert_string_equal(member(v, "message"), "");
    json_decref(v);
    sbuf_free(&s);
}

static void test_error_body_escaping(void **state)
{
    /* Client text quoted in a message: quotes, backslashes, control bytes,
     * a try at closing the string and adding a member, UTF-8. */
    static const char *const msgs[] = {
        "model \"gpt-\\\" not found",
        "line1\nline2\r\n\ttab \x01\x1f\x7f",
        "\"},\"type\":\"injected\",\"x\":{\"",
        "caf\xc3\xa9 \xf0\x9f\x98\x80",
        "</script><b>",
    };
    struct sbuf s;
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(msgs); i++) {
        sbuf_init(&s, 0);
        reply_error_body(&s, 404, NULL, "p\"q", "c\\d", msgs[i]);
        json_t *v = parse_error_body(s.data, s.len);
        assert_string_equal(member(v, "message"), msgs[i]);
        assert_string_equal(member(v, "type"), "not_found_error");
        assert_string_equal(member(v, "param"), "p\"q");
        assert_string_equal(member(v, "code"), "c\\d");
        json_decref(v);
        /* One line: a raw newline would split the document. */
        assert_null(memchr(s.data, '\n', s.len - 1));
        sbuf_free(&s);
    }
}

static void test_error_types(void **state)
{
    static const struct {
        int status;
        const char *type;
    } cases[] = {
        {400, "invalid_request_error"},
        {408, "invalid_request_error"},
        {411, "invalid_request_error"},
        {413, "invalid_request_error"},
        {414, "invalid_request_error"},
        {415, "invalid_request_error"},
        {417, "invalid_request_error"},
        {422, "invalid_request_error"},
        {431, "invalid_request_error"},
        {501, "invalid_request_error"},
        {505, "invalid_request_error"},
        {401, "authentication_error"},
        {403, "authentication_error"},
        {404, "not_found_error"},
        {405, "not_found_error"},
        {429, "rate_limit_exceeded"},
        {503, "overloaded"},
        {502, "upstream_error"},
        {504, "upstream_error"},
        {409, "invalid_request_error"},
        {451, "invalid_request_error"},
        {499, "invalid_request_error"},
        {500, "server_error"},
        {507, "server_error"},
        {599, "server_error"},
        {200, "server_error"},
        {0, "server_error"},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        const char *t = reply_error_type(cases[i].status);
        if (!t || strcmp(t, cases[i].type) != 0)
            fail_msg("reply_error_type(%d) = %s, want %s", cases[i].status, t ? t : "NULL", cases[i].type);
    }
}

/* ---- connection decision -------------------------------------------------- */

static void test_conn(void **state)
{
    (void)state;
    assert_int_equal(reply_conn(false, 1), REPLY_CONN_NONE); /* 1.1 keeps alive by default */
    assert_int_equal(reply_conn(true, 1), REPLY_CONN_CLOSE);
    assert_int_equal(reply_conn(false, 0), REPLY_CONN_KEEP_ALIVE); /* 1.0 only when told */
    assert_int_equal(reply_conn(true, 0), REPLY_CONN_CLOSE);
}

static void test_no_body_statuses(void **state)
{
    (void)state;
    for (int st = 100; st < 200; st++)
        assert_true(reply_status_no_body(st));
    assert_true(reply_status_no_body(204));
    assert_true(reply_status_no_body(304));
    static const int with_body[] = {200, 201, 202, 203, 205, 206, 301, 302, 303, 307, 400, 404, 429, 500, 503};
    for (size_t i = 0; i < RP_ARRAY_LEN(with_body); i++)
        if (reply_status_no_body(with_body[i]))
            fail_msg("status %d carries a body", with_body[i]);
}

/* ---- head framing ----------------------------------------------------------- */

/* Parse the head at out with h1_parse_response; returns the head length. */
static size_t parse_head(const struct sbuf *out, struct h1_message *m, struct h1_header *hs, size_t cap)
{
    h1_message_init(m, hs, cap);
    int n = h1_parse_response(out->data, out->len, m, NULL, false);
    if (n <= 0)
        fail_msg("head does not parse (%d, %s): %s", n, m->error ? m->error : "", out->data);
    return (size_t)n;
}

/* The value of the only header called name, or NULL; fails when repeated. */
static const char *header(const struct h1_message *m, const char *name, char *buf, size_t cap)
{
    const char *found = NULL;
    for (size_t i = 0; i < m->num_headers; i++) {
        if (!rp_strieq(m->headers[i].name.p, m->headers[i].name.len, name))
            continue;
        if (found)
            fail_msg("header %s appears twice", name);
        rp_snprintf(buf, cap, "%.*s", (int)m->headers[i].value.len, m->headers[i].value.p);
        found = buf;
    }
    return found;
}

static void test_head_exact(void **state)
{
    struct sbuf s;
    (void)state;
    sbuf_init(&s, 0);
    reply_head(&s, &(struct reply_head){.status = 200, .content_length = 17});
    assert_string_equal(s.data, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n");

    sbuf_reset(&s);
    reply_head(&s, &(struct reply_head){.status = 503,
                                        .content_type = "text/plain; charset=utf-8",
                                        .content_length = 0,
                                        .conn = REPLY_CONN_CLOSE,
                                        .request_id = "req-42",
                                        .extra_headers = "Retry-After: 3\r\nX-A: b\r\n"});
    assert_string_equal(s.data, "HTTP/1.1 503 Service Unavailable\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                                "X-Request-Id: req-42\r\n"
                                "Retry-After: 3\r\nX-A: b\r\n"
                                "Connection: close\r\n\r\n");

    /* An empty request id writes no header. */
    sbuf_reset(&s);
    reply_head(
        &s, &(struct reply_head){.status = 404, .content_length = 2, .request_id = "", .conn = REPLY_CONN_KEEP_ALIVE});
    assert_string_equal(s.data, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                                "Connection: keep-alive\r\n\r\n");
    sbuf_free(&s);
}

static void test_head_no_body(void **state)
{
    static const int statuses[] = {204, 304, 100, 101, 103};
    struct sbuf s;
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(statuses); i++) {
        sbuf_init(&s, 0);
        /* content_length is ignored: these never carry one. */
        reply_head(&s, &(struct reply_head){.status = statuses[i], .content_length = 99, .request_id = "r1"});
        if (strstr(s.data, "Content-Length") || strstr(s.data, "Content-Type"))
            fail_msg("status %d has body headers: %s", statuses[i], s.data);
        assert_non_null(strstr(s.data, "X-Request-Id: r1\r\n"));
        if (statuses[i] >= 200) {
            struct h1_message m;
            struct h1_header hs[16];
            size_t n = parse_head(&s, &m, hs, 16);
            assert_int_equal(n, s.len);
            assert_int_equal(m.status, statuses[i]);
            assert_int_equal(m.framing, H1_BODY_NONE);
            assert_true(m.keep_alive);
        }
        sbuf_free(&s);
    }
}

static void test_head_connection(void **state)
{
    static const struct {
        bool close;
        int minor;
        const char *want; /* Connection value, or NULL for none */
    } cases[] = {
        {false, 1, NULL},
        {true, 1, "close"},
        {false, 0, "keep-alive"},
        {true, 0, "close"},
    };
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct sbuf s;
        struct h1_message m;
        struct h1_header hs[16];
        char v[64];
        sbuf_init(&s, 0);
        reply_head(&s, &(struct reply_head){
                           .status = 200, .content_length = 0, .conn = reply_conn(cases[i].close, cases[i].minor)});
        parse_head(&s, &m, hs, 16);
        const char *got = header(&m, "Connection", v, sizeof v);
        if (cases[i].want)
            assert_string_equal(got, cases[i].want);
        else
            assert_null(got);
        /* The status line is always HTTP/1.1, also to a 1.0 client. */
        assert_int_equal(m.minor_version, 1);
        assert_int_equal(m.keep_alive, !cases[i].close);
        sbuf_free(&s);
    }
}

static void test_head_date(void **state)
{
    struct sbuf s;
    struct h1_message m;
    struct h1_header hs[16];
    char v[64];
    (void)state;
    sbuf_init(&s, 0);
    reply_head(&s, &(struct reply_head){.status = 200, .content_length = 0, .date = true});
    parse_head(&s, &m, hs, 16);
    const char *d = header(&m, "Date", v, sizeof v);
    assert_non_null(d);
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    assert_int_equal(strlen(d), 29);
    assert_int_equal(d[3], ',');
    assert_string_equal(d + 25, " GMT");
    assert_non_null(strstr("Sun Mon Tue Wed Thu Fri Sat", (char[4]){d[0], d[1], d[2], '\0'}));
    sbuf_reset(&s);
    reply_head(&s, &(struct reply_head){.status = 200, .content_length = 0});
    assert_null(strstr(s.data, "Date:"));
    sbuf_free(&s);
}

/* ---- whole error responses ------------------------------------------------- */

static void test_error_response_framing(void **state)
{
    static const int statuses[] = {400, 404, 408, 413, 429, 431, 500, 502, 503, 504};
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(statuses); i++) {
        struct sbuf s;
        struct h1_message m;
        struct h1_header hs[16];
        char v[256];
        sbuf_init(&s, 0);
        /* The caller's content type is replaced: the body is JSON. */
        reply_error(&s,
                    &(struct reply_head){.status = statuses[i],
                                         .content_type = "text/html",
                                         .content_length = 12345,
                                         .conn = REPLY_CONN_CLOSE,
                                         .request_id = "abc-1",
                                         .extra_headers = "Retry-After: 1\r\n"},
                    NULL, "some_code", "message with \"quotes\" and \xc3\xa9");
        assert_false(s.truncated);
        size_t n = parse_head(&s, &m, hs, 16);
        assert_int_equal(m.status, statuses[i]);
        assert_int_equal(m.framing, H1_BODY_LENGTH);
        /* Content-Length is the body's real length: nothing before or
         * after it on the wire. */
        assert_int_equal(m.content_length, s.len - n);
        assert_string_equal(header(&m, "Content-Type", v, sizeof v), "application/json");
        assert_string_equal(header(&m, "X-Request-Id", v, sizeof v), "abc-1");
        assert_string_equal(header(&m, "Retry-After", v, sizeof v), "1");
        assert_string_equal(header(&m, "Connection", v, sizeof v), "close");
        assert_false(m.keep_alive);
        json_t *doc = parse_error_body(s.data + n, s.len - n);
        assert_string_equal(member(doc, "type"), reply_error_type(statuses[i]));
        assert_string_equal(member(doc, "code"), "some_code");
        assert_string_equal(member(doc, "message"), "message with \"quotes\" and \xc3\xa9");
        assert_null(member(doc, "param"));
        json_decref(doc);
        sbuf_free(&s);
    }
}

static void test_error_response_appends(void **state)
{
    struct sbuf s;
    (void)state;
    /* reply_error appends: what was in the builder stays in front. */
    sbuf_init(&s, 0);
    sbuf_adds(&s, "PREVIOUS");
    reply_error(&s, &(struct reply_head){.status = 400}, "t", NULL, "m");
    assert_memory_equal(s.data, "PREVIOUS", 8);
    assert_memory_equal(s.data + 8, "HTTP/1.1 400 Bad Request\r\n", 26);
    const char *body = strstr(s.data, "\r\n\r\n") + 4;
    assert_string_equal(body, "{\"error\":{\"message\":\"m\",\"type\":\"t\",\"param\":null,\"code\":null}}\n");
    sbuf_free(&s);
}

static void test_error_response_truncated(void **state)
{
    struct sbuf s;
    (void)state;
    /* The whole response does not fit the caller's builder. */
    sbuf_init(&s, 128);
    reply_error(&s, &(struct reply_head){.status = 503}, NULL, NULL,
                "a message long enough that the head and the body do not fit in 128 bytes together");
    assert_true(s.truncated);
    sbuf_free(&s);

    /* A message too big for the body builder marks the reply truncated,
     * even when the caller's builder would have room. */
    char big[10000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sbuf_init(&s, 0);
    reply_error(&s, &(struct reply_head){.status = 400}, NULL, NULL, big);
    assert_true(s.truncated);
    sbuf_free(&s);

    /* A message just under the body limit fits and frames correctly. */
    char msg[4000];
    memset(msg, '"', sizeof msg - 1); /* escaping doubles it: 7998 bytes */
    msg[sizeof msg - 1] = '\0';
    sbuf_init(&s, 0);
    reply_error(&s, &(struct reply_head){.status = 400}, NULL, NULL, msg);
    assert_false(s.truncated);
    struct h1_message m;
    struct h1_header hs[16];
    size_t n = parse_head(&s, &m, hs, 16);
    assert_int_equal(m.content_length, s.len - n);
    json_t *doc = parse_error_body(s.data + n, s.len - n);
    assert_string_equal(member(doc, "message"), msg);
    json_decref(doc);
    sbuf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_body_exact),
        cmocka_unit_test(test_error_body_escaping),
        cmocka_unit_test(test_error_types),
        cmocka_unit_test(test_conn),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_head_exact),
        cmocka_unit_test(test_head_no_body),
        cmocka_unit_test(test_head_connection),
        cmocka_unit_test(test_head_date),
        cmocka_unit_test(test_error_response_framing),
        cmocka_unit_test(test_error_response_appends),
        cmocka_unit_test(test_error_response_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

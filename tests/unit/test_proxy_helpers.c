/*
 * test_proxy_helpers.c — the proxy's pure helpers (proxy_util.c): status
 * classes, durations for the access log, and the header checks on relayed
 * messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "h1.h"
#include "proxy_util.h"
#include "util.h"

static struct h1_str str(const char *s)
{
    struct h1_str v = {s, strlen(s)};
    return v;
}

static void test_status_class(void **state)
{
    (void)state;
    assert_int_equal(proxy_status_class(100), 0);
    assert_int_equal(proxy_status_class(200), 1);
    assert_int_equal(proxy_status_class(299), 1);
    assert_int_equal(proxy_status_class(404), 3);
    assert_int_equal(proxy_status_class(599), 4);
    assert_int_equal(proxy_status_class(600), PROXY_STATUS_CLASSES - 1);
    assert_int_equal(proxy_status_class(99), PROXY_STATUS_CLASSES - 1);
    assert_int_equal(proxy_status_class(0), PROXY_STATUS_CLASSES - 1);
    assert_int_equal(proxy_status_class(-1), PROXY_STATUS_CLASSES - 1);
}

static void test_since(void **state)
{
    (void)state;
    assert_int_equal(proxy_since(150, 100), 50);
    assert_int_equal(proxy_since(100, 100), 0);
    /* Not reached, or never started: -1, never a huge unsigned value. */
    assert_int_equal(proxy_since(0, 100), -1);
    assert_int_equal(proxy_since(100, 0), -1);
    assert_int_equal(proxy_since(99, 100), -1);
}

static void test_request_id(void **state)
{
    (void)state;
    assert_true(proxy_valid_request_id(str("abc-DEF_0.9:x")));
    assert_true(proxy_valid_request_id(str("0123456789012345678901234567890123456789012345678901234567890123")));
    assert_false(proxy_valid_request_id(str("01234567890123456789012345678901234567890123456789012345678901234")));
    assert_false(proxy_valid_request_id(str("")));
    assert_false(proxy_valid_request_id(str("a b")));
    assert_false(proxy_valid_request_id(str("a\"b")));
    assert_false(proxy_valid_request_id(str("a\r\nX-Evil: 1")));
    assert_false(proxy_valid_request_id(str("caf\xc3\xa9")));
}

static struct h1_header hdrs[16];

static int parse(const char *head, struct h1_message *m)
{
    memset(m, 0, sizeof *m);
    m->headers = hdrs;
    m->headers_cap = 16;
    struct h1_limits lim = {0};
    return h1_parse_response(head, strlen(head), m, &lim, false);
}

static void test_named_in_connection(void **state)
{
    (void)state;
    struct h1_message m;
    assert_true(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                      "Content-Length: 0\r\n\r\n",
                      &m) > 0);
    assert_true(proxy_named_in_connection(&m, str("x-secret")));
    assert_true(proxy_named_in_connection(&m, str("X-SECRET")));
    assert_false(proxy_named_in_connection(&m, str("x-other")));
    /* A name too long to be a token of ours is not matched. */
    char longname[100];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(proxy_named_in_connection(&m, str(longname)));

    assert_true(parse("HTTP/1.1 200 OK\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n", &m) > 0);
    assert_false(proxy_named_in_connection(&m, str("x-secret")));
}

static void test_announces_body(void **state)
{
    (void)state;
    struct h1_message m;
    assert_true(parse("HTTP/1.1 204 No Content\r\n\r\n", &m) > 0);
    assert_false(proxy_announces_body(&m));
    assert_true(parse("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", &m) > 0);
    assert_false(proxy_announces_body(&m));
    assert_true(parse("HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n", &m) > 0);
    assert_true(proxy_announces_body(&m));
    assert_true(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 00\r\n\r\n", &m) > 0);
    assert_true(proxy_announces_body(&m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_class),   cmocka_unit_test(test_since),
        cmocka_unit_test(test_request_id),     cmocka_unit_test(test_named_in_connection),
        cmocka_unit_test(test_announces_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

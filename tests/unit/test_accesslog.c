/*
 * test_accesslog.c — accesslog.c: one complete JSON line per request with
 * a fixed set of fields in a fixed order, exact time and millisecond
 * formatting, null for what was not reached, escaping of request text,
 * buffering until flush, and the "off"/stdout/stderr/file destinations.
 * Lines are read back from a real file and parsed with jansson.
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
#include <sys/stat.h>
#include <unistd.h>

#include "accesslog.h"
#include "util.h"

/* Every key of a line, in the order written.  A field added to the log
 * must be added here, after checking that it cannot carry a secret. */
static const char *const keys[] = {
    "time",     "request_id", "method",  "path",     "client",     "tenant",        "status",   "bytes_in", "bytes_out",
    "upstream", "server",     "outcome", "queue_ms", "connect_ms", "first_byte_ms", "total_ms", NULL,
};

struct logfile {
    char path[64];
    struct accesslog *log;
};

static int open_log(void **state)
{
    struct logfile *lf = calloc(1, sizeof *lf);
    rp_snprintf(lf->path, sizeof lf->path, "/tmp/rampart-test-accesslog-XXXXXX");
    int fd = mkstemp(lf->path);
    assert_true(fd >= 0);
    close(fd);
    lf->log = accesslog_open(lf->path);
    assert_non_null(lf->log);
    *state = lf;
    return 0;
}

static int close_log(void **state)
{
    struct logfile *lf = *state;
    if (lf->log)
        accesslog_close(lf->log);
    unlink(lf->path);
    free(lf);
    return 0;
}

/* The whole file (NUL-terminated); caller frees. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Split the file into lines; every line must be one JSON object with
 * exactly keys[] in that order.  Returns the parsed lines (NULL-ended). */
static json_t **read_lines(const char *path, size_t *count)
{
    size_t len;
    char *text = slurp(path, &len);
    size_t n = 0, cap = 16;
    json_t **out = calloc(cap, sizeof *out);
    if (len)
        assert_int_equal(text[len - 1], '\n'); /* never a partial last line */
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t err;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, &err);
        if (!v)
            fail_msg("line %zu is not JSON: %s: %.*s", n + 1, err.text, (int)(nl - p), p);
        assert_true(json_is_object(v));
        /* Key order as written: scan the raw text. */
        const char *q = p;
        for (size_t k = 0; keys[k]; k++) {
            char needle[40];
            rp_snprintf(needle, sizeof needle, "\"%s\":", keys[k]);
            const char *at = strstr(q, needle);
            if (!at || at > nl)
                fail_msg("line %zu: key %s missing or out of order", n + 1, keys[k]);
            q = at + strlen(needle);
        }
        size_t nkeys = 0;
        while (keys[nkeys])
            nkeys++;
        assert_int_equal(json_object_size(v), nkeys);
        if (n + 1 >= cap) {
            cap *= 2;
            out = realloc(out, cap * sizeof *out);
        }
        out[n++] = v;
        p = nl + 1;
    }
    out[n] = NULL;
    free(text);
    *count = n;
    return out;
}

static void free_lines(json_t **lines)
{
    for (size_t i = 0; lines[i]; i++)
        json_decref(lines[i]);
    free(lines);
}

static const char *str(const json_t *line, const char *key)
{
    const json_t *v = json_object_get(line, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static double num(const json_t *line, const char *key)
{
    const json_t *v = json_object_get(line, key);
    if (!json_is_number(v))
        fail_msg("%s is not a number", key);
    return json_number_value(v);
}

static struct accesslog_entry sample(void)
{
    return (struct accesslog_entry){
        .time_ms = 1700000000123ll, /* 2023-11-14T22:13:20.123Z */
        .request_id = "req-1",
        .method = "POST",
        .path = "/v1/chat/completions",
        .client = "127.0.0.1",
        .tenant = "t-1a2b3c",
        .status = 200,
        .bytes_in = 42,
        .bytes_out = 1ull << 40,
        .upstream = "chat",
        .server = "127.0.0.1:9001",
        .outcome = "ok",
        .queue_us = 0,
        .connect_us = 1500,
        .first_byte_us = 1234567,
        .total_us = 2000001,
    };
}

static void test_one_line_exact(void **state)
{
    struct logfile *lf = *state;
    struct accesslog_entry e = sample();
    accesslog_write(lf->log, &e);
    accesslog_flush(lf->log);
    size_t len;
    char *text = slurp(lf->path, &len);
    assert_string_equal(text,
                        "{\"time\":\"2023-11-14T22:13:20.123Z\",\"request_id\":\"req-1\",\"method\":\"POST\","
                        "\"path\":\"/v1/chat/completions\",\"client\":\"127.0.0.1\",\"tenant\":\"t-1a2b3c\","
                        "\"status\":200,\"bytes_in\":42,\"bytes_out\":1099511627776,\"upstream\":\"chat\","
                        "\"server\":\"127.0.0.1:9001\",\"outcome\":\"ok\",\"queue_ms\":0.000,\"connect_ms\":1.500,"
                        "\"first_byte_ms\":1234.567,\"total_ms\":2000.001}\n");
    free(text);
}

static void test_not_reached_is_null(void **state)
{
    struct logfile *lf = *state;
    /* A request refused before any upstream: no tenant, no server, and
     * timings of phases never reached. */
    struct accesslog_entry e = {
        .time_ms = 86400000ll + 7, /* 1970-01-02T00:00:00.007Z */
        .request_id = "r",
        .method = "GET",
        .path = "/",
        .client = "::1",
        .status = 404,
        .outcome = "no_route",
        .queue_us = -1,
        .connect_us = -1,
        .first_byte_us = -1,
        .total_us = 250,
    };
    accesslog_write(lf->log, &e);
    accesslog_flush(lf->log);
    size_t n;
    json_t **lines = read_lines(lf->path, &n);
    assert_int_equal(n, 1);
    const json_t *l = lines[0];
    assert_string_equal(str(l, "time"), "1970-01-02T00:00:00.007Z");
    static const char *const nulls[] = {"tenant", "upstream", "server", "queue_ms", "connect_ms", "first_byte_ms"};
    for (size_t i = 0; i < RP_ARRAY_LEN(nulls); i++)
        if (!json_is_null(json_object_get(l, nulls[i])))
            fail_msg("%s should be null", nulls[i]);
    assert_true(num(l, "total_ms") == 0.25);
    assert_true(num(l, "status") == 404);
    assert_true(num(l, "bytes_in") == 0);
    free_lines(lines);
}

static void test_escaping(void **state)
{
    struct logfile *lf = *state;
    /* Request text is the client's: it must stay inside its string and
     * never break the line. */
    static const char *const evil[] = {
        "/a\"b\\c",     "/line\nbreak\r\n{\"status\":200}", "/ctl\x01\x1f\x7f\t", "/\",\"status\":999,\"x\":\"",
        "/caf\xc3\xa9",
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(evil); i++) {
        struct accesslog_entry e = sample();
        e.path = evil[i];
        e.method = evil[(i + 1) % RP_ARRAY_LEN(evil)];
        e.request_id = evil[(i + 2) % RP_ARRAY_LEN(evil)];
        accesslog_write(lf->log, &e);
    }
    accesslog_flush(lf->log);
    size_t n;
    json_t **lines = read_lines(lf->path, &n);
    assert_int_equal(n, RP_ARRAY_LEN(evil));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(str(lines[i], "path"), evil[i]);
        assert_string_equal(str(lines[i], "method"), evil[(i + 1) % RP_ARRAY_LEN(evil)]);
        assert_string_equal(str(lines[i], "request_id"), evil[(i + 2) % RP_ARRAY_LEN(evil)]);
        assert_true(num(lines[i], "status") == 200);
    }
    free_lines(lines);
}

static void test_only_given_fields(void **state)
{
    struct logfile *lf = *state;
    /* The line holds the entry's fields and nothing else: whatever else a
     * request carried (headers, body, query) has no way into it. */
    struct accesslog_entry e = sample();
    e.tenant = "acme";
    accesslog_write(lf->log, &e);
    accesslog_flush(lf->log);
    size_t len;
    char *text = slurp(lf->path, &len);
    static const char *const never[] = {"authorization", "Authorization", "cookie", "api_key", "Bearer", "?"};
    for (size_t i = 0; i < RP_ARRAY_LEN(never); i++)
        if (strstr(text, never[i]))
            fail_msg("line contains \"%s\": %s", never[i], text);
    free(text);
    size_t n;
    json_t **lines = read_lines(lf->path, &n); /* checks the exact key set */
    assert_int_equal(n, 1);
    assert_string_equal(str(lines[0], "tenant"), "acme");
    free_lines(lines);
}

static void test_many_lines_buffered(void **state)
{
    struct logfile *lf = *state;
    struct stat st;
    enum { N = 2000 };
    char path[32];
    for (int i = 0; i < N; i++) {
        struct accesslog_entry e = sample();
        rp_snprintf(path, sizeof path, "/item/%d", i);
        e.path = path;
        e.status = 200 + i % 300;
        e.total_us = i;
        accesslog_write(lf->log, &e);
        if (i == 0) {
            /* Buffered: nothing reaches the file before a flush. */
            assert_int_equal(stat(lf->path, &st), 0);
            assert_int_equal(st.st_size, 0);
        }
    }
    accesslog_flush(lf->log);
    size_t n;
    json_t **lines = read_lines(lf->path, &n);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        rp_snprintf(path, sizeof path, "/item/%d", i);
        assert_string_equal(str(lines[i], "path"), path);
        assert_true(num(lines[i], "status") == 200 + i % 300);
        assert_true(num(lines[i], "total_ms") == (double)i / 1000.0);
    }
    free_lines(lines);
}

static void test_close_flushes_and_appends(void **state)
{
    struct logfile *lf = *state;
    struct accesslog_entry e = sample();
    accesslog_write(lf->log, &e);
    accesslog_close(lf->log); /* flushes */
    lf->log = NULL;
    size_t n;
    json_t **lines = read_lines(lf->path, &n);
    assert_int_equal(n, 1);
    free_lines(lines);
    /* Reopening appends, never truncates. */
    lf->log = accesslog_open(lf->path);
    assert_non_null(lf->log);
    e.status = 503;
    accesslog_write(lf->log, &e);
    accesslog_flush(lf->log);
    lines = read_lines(lf->path, &n);
    assert_int_equal(n, 2);
    assert_true(num(lines[0], "status") == 200);
    assert_true(num(lines[1], "status") == 503);
    free_lines(lines);
}

static void test_oversized_line_never_partial(void **state)
{
    struct logfile *lf = *state;
    /* A line over the formatter's limit must not reach the file cut in
     * the middle: the file keeps only complete lines. */
    size_t big = 20000;
    char *path = malloc(big + 1);
    memset(path, 'p', big);
    path[0] = '/';
    path[big] = '\0';
    struct accesslog_entry e = sample();
    e.path = path;
    accesslog_write(lf->log, &e);
    e = sample();
    e.status = 201;
    accesslog_write(lf->log, &e);
    accesslog_flush(lf->log);
    size_t n;
    json_t **lines = read_lines(lf->path, &n);
    assert_true(n >= 1);
    assert_true(num(lines[n - 1], "status") == 201);
    free_lines(lines);
    free(path);
}

static void test_destinations(void **state)
{
    (void)state;
    struct accesslog_entry e = sample();
    /* "off" is a valid log that writes nothing. */
    struct accesslog *off = accesslog_open("off");
    assert_non_null(off);
    accesslog_write(off, &e);
    accesslog_flush(off);
    accesslog_close(off);
    /* A NULL log is accepted everywhere. */
    accesslog_write(NULL, &e);
    accesslog_flush(NULL);
    accesslog_close(NULL);
    /* stdout and stderr open without touching a file. */
    struct accesslog *so = accesslog_open("stdout");
    assert_non_null(so);
    accesslog_close(so);
    struct accesslog *se = accesslog_open("stderr");
    assert_non_null(se);
    accesslog_close(se);
    /* A path that cannot be opened is an error (logged). */
    assert_null(accesslog_open("/nonexistent-dir-for-rampart-tests/access.log"));
    /* The standard streams are still usable after closing their logs. */
    assert_true(fflush(stdout) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_line_exact, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_not_reached_is_null, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_escaping, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_only_given_fields, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_many_lines_buffered, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_close_flushes_and_appends, open_log, close_log),
        cmocka_unit_test_setup_teardown(test_oversized_line_never_partial, open_log, close_log),
        cmocka_unit_test(test_destinations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

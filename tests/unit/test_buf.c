/*
 * test_buf.c — buf.c: the bounded I/O buffer (pos/last/end, consumption,
 * compaction, the free list, fd reads and writes) and the string builder
 * (hard cap and truncation, printf past the stack buffer, JSON and HTML
 * escaping).  JSON escaping is checked both against exact text and by
 * parsing the result back with jansson.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

/* ---- struct buf ---------------------------------------------------------- */

static void test_alloc_and_views(void **state)
{
    struct buf b;
    (void)state;
    buf_alloc(&b);
    assert_non_null(b.start);
    assert_ptr_equal(b.pos, b.start);
    assert_ptr_equal(b.last, b.start);
    assert_int_equal(b.end - b.start, BUF_DEFAULT_SIZE);
    assert_true(buf_empty(&b));
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_free_tail(&b), BUF_DEFAULT_SIZE);

    assert_int_equal(buf_append(&b, "hello world", 11), 11);
    assert_int_equal(buf_len(&b), 11);
    assert_false(buf_empty(&b));
    assert_int_equal(buf_free_tail(&b), BUF_DEFAULT_SIZE - 11);
    assert_memory_equal(b.pos, "hello world", 11);

    buf_consume(&b, 6);
    assert_ptr_equal(b.pos, b.start + 6);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(b.pos, "world", 5);
    /* The free tail does not grow by consuming: only compaction moves bytes. */
    assert_int_equal(buf_free_tail(&b), BUF_DEFAULT_SIZE - 11);

    /* Emptied: both views go back to the start. */
    buf_consume(&b, 5);
    assert_ptr_equal(b.pos, b.start);
    assert_ptr_equal(b.last, b.start);
    assert_int_equal(buf_free_tail(&b), BUF_DEFAULT_SIZE);

    buf_append(&b, "abc", 3);
    buf_reset(&b);
    assert_true(buf_empty(&b));
    assert_ptr_equal(b.last, b.start);
    buf_release(&b);
    assert_null(b.start);
    assert_null(b.pos);
    assert_null(b.last);
    assert_null(b.end);
    buf_release(&b); /* released twice: nothing happens */
    assert_null(b.start);
}

static void test_compact(void **state)
{
    struct buf b;
    (void)state;
    buf_alloc_size(&b, 16);
    assert_int_equal(b.end - b.start, 16);
    assert_int_equal(buf_append(&b, "0123456789", 10), 10);
    char *start = b.start;

    /* Nothing consumed: compaction moves nothing. */
    buf_compact(&b);
    assert_ptr_equal(b.pos, start);
    assert_int_equal(buf_len(&b), 10);

    buf_consume(&b, 7);
    buf_compact(&b);
    assert_ptr_equal(b.start, start); /* same storage, never regrown */
    assert_ptr_equal(b.pos, b.start);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(b.pos, "789", 3);
    assert_int_equal(buf_free_tail(&b), 13);
    buf_release(&b);
}

static void test_append_compacts_and_bounds(void **state)
{
    struct buf b;
    (void)state;
    buf_alloc_size(&b, 16);
    assert_int_equal(buf_append(&b, "ABCDEFGHIJKLMN", 14), 14);
    buf_consume(&b, 10); /* "KLMN" pending at offset 10, 2 bytes of tail */
    assert_int_equal(buf_free_tail(&b), 2);

    /* 8 bytes do not fit in the tail but fit after compaction. */
    assert_int_equal(buf_append(&b, "12345678", 8), 8);
    assert_ptr_equal(b.pos, b.start);
    assert_int_equal(buf_len(&b), 12);
    assert_memory_equal(b.pos, "KLMN12345678", 12);

    /* Only 4 more fit: a partial append, never growth. */
    assert_int_equal(buf_append(&b, "abcdefgh", 8), 4);
    assert_int_equal(buf_len(&b), 16);
    assert_memory_equal(b.pos, "KLMN12345678abcd", 16);
    assert_ptr_equal(b.last, b.end);
    assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_int_equal(buf_len(&b), 16);

    /* Append fits in the tail: no compaction, pos stays. */
    buf_consume(&b, 4);
    buf_compact(&b);
    buf_consume(&b, 1);
    char *pos = b.pos;
    assert_int_equal(buf_append(&b, "zz", 2), 2);
    assert_ptr_equal(b.pos, pos);
    assert_memory_equal(b.pos, "2345678abcdzz", 13);
    buf_release(&b);
}

static void test_free_list(void **state)
{
    struct buf a, b, c;
    (void)state;
    buf_alloc(&a);
    char *pa = a.start;
    buf_append(&a, "dirty", 5);
    buf_consume(&a, 2);
    buf_release(&a);

    /* A default-size block comes back from the free list, reset. */
    buf_alloc(&b);
    assert_ptr_equal(b.start, pa);
    assert_ptr_equal(b.pos, b.start);
    assert_ptr_equal(b.last, b.start);
    assert_int_equal(b.end - b.start, BUF_DEFAULT_SIZE);

    /* Last in, first out. */
    buf_alloc(&c);
    char *pb = b.start, *pc = c.start;
    assert_ptr_not_equal(pb, pc);
    buf_release(&b);
    buf_release(&c);
    buf_alloc(&a);
    assert_ptr_equal(a.start, pc);
    buf_alloc(&b);
    assert_ptr_equal(b.start, pb);

    /* Another size is never handed out as a default block, and a default
     * request never gets a block of another size. */
    buf_alloc_size(&c, 100);
    assert_int_equal(c.end - c.start, 100);
    buf_release(&c);
    struct buf d;
    buf_alloc(&d);
    assert_int_equal(d.end - d.start, BUF_DEFAULT_SIZE);
    buf_release(&d);
    buf_release(&a);
    buf_release(&b);

    /* Many blocks at once: each one is distinct, whether cached or fresh. */
    enum { N = 300 };
    static struct buf many[N];
    for (size_t i = 0; i < N; i++) {
        buf_alloc(&many[i]);
        memset(many[i].start, (int)(i & 0xff), BUF_DEFAULT_SIZE);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal((unsigned char)many[i].start[BUF_DEFAULT_SIZE - 1], i & 0xff);
    for (size_t i = 0; i < N; i++)
        buf_release(&many[i]);
    for (size_t i = 0; i < N; i++)
        buf_alloc(&many[i]);
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            if (many[i].start == many[j].start)
                fail_msg("block %zu handed out twice (%zu)", i, j);
    for (size_t i = 0; i < N; i++)
        buf_release(&many[i]);
}

static void test_fd_io(void **state)
{
    int sv[2];
    struct buf b, out;
    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    buf_alloc_size(&b, 8);

    /* Nothing to read yet: would block. */
    assert_int_equal(buf_read_fd(&b, sv[0]), RP_AGAIN);

    assert_int_equal(write(sv[1], "0123456789", 10), 10);
    assert_int_equal(buf_read_fd(&b, sv[0]), 8); /* bounded by the buffer */
    assert_memory_equal(b.pos, "01234567", 8);
    /* Full and nothing consumed: no read at all (backpressure). */
    assert_int_equal(buf_read_fd(&b, sv[0]), RP_AGAIN);
    assert_int_equal(buf_len(&b), 8);
    /* Consumed bytes make room through compaction. */
    buf_consume(&b, 5);
    assert_int_equal(buf_read_fd(&b, sv[0]), 2);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(b.pos, "56789", 5);

    /* Writing consumes what was sent. */
    buf_alloc_size(&out, 64);
    buf_append(&out, "response bytes", 14);
    assert_int_equal(buf_write_fd(&out, sv[0]), 14);
    assert_true(buf_empty(&out));
    assert_int_equal(buf_write_fd(&out, sv[0]), 0); /* nothing pending */
    char got[32];
    assert_int_equal(read(sv[1], got, sizeof got), 14);
    assert_memory_equal(got, "response bytes", 14);

    /* EOF reads as 0. */
    close(sv[1]);
    buf_reset(&b);
    assert_int_equal(buf_read_fd(&b, sv[0]), 0);
    /* Writing to a closed peer is an error with errno kept (no SIGPIPE). */
    buf_append(&out, "x", 1);
    errno = 0;
    assert_int_equal(buf_write_fd(&out, sv[0]), RP_ERR);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(buf_len(&out), 1);
    close(sv[0]);

    /* A bad descriptor is an error, not "again". */
    buf_reset(&b);
    assert_int_equal(buf_read_fd(&b, -1), RP_ERR);
    assert_int_equal(errno, EBADF);
    buf_release(&b);
    buf_release(&out);
}

/* ---- struct sbuf -------------------------------------------------------- */

static void test_sbuf_basics(void **state)
{
    struct sbuf s;
    (void)state;
    sbuf_init(&s, 0);
    assert_int_equal(s.max, 16u << 20); /* 0 means 16 MiB */
    assert_int_equal(s.len, 0);
    assert_false(s.truncated);
    sbuf_adds(&s, "abc");
    sbuf_add(&s, "def", 2);
    sbuf_printf(&s, "-%d-%s", 42, "x");
    assert_int_equal(s.len, 10);
    assert_string_equal(s.data, "abcde-42-x"); /* always NUL-terminated */
    assert_true(s.cap > s.len);
    sbuf_add(&s, "\0z", 2); /* binary data keeps its length */
    assert_int_equal(s.len, 12);
    assert_memory_equal(s.data + 10, "\0z", 2);

    sbuf_reset(&s);
    assert_int_equal(s.len, 0);
    assert_string_equal(s.data, "");
    sbuf_free(&s);
    assert_null(s.data);
    assert_int_equal(s.cap, 0);

    /* reset on a builder that never allocated */
    sbuf_init(&s, 64);
    sbuf_reset(&s);
    assert_null(s.data);
    sbuf_free(&s);
}

static void test_sbuf_printf_long(void **state)
{
    struct sbuf s;
    char big[3000];
    (void)state;
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sbuf_init(&s, 0);
    sbuf_adds(&s, "<");
    /* Longer than the formatter's stack buffer. */
    sbuf_printf(&s, "%s|%d", big, 7);
    sbuf_adds(&s, ">");
    assert_int_equal(s.len, 1 + 2999 + 2 + 1);
    assert_int_equal(s.data[0], '<');
    assert_int_equal(s.data[1], 'q');
    assert_int_equal(s.data[2999], 'q');
    assert_memory_equal(s.data + 3000, "|7>", 3);
    assert_int_equal(s.data[s.len], '\0');
    assert_int_equal(strlen(s.data), s.len);
    sbuf_free(&s);

    /* Exactly at the stack buffer's edge (511 and 512 characters). */
    for (size_t n = 510; n <= 513; n++) {
        sbuf_init(&s, 0);
        sbuf_printf(&s, "%.*s", (int)n, big);
        assert_int_equal(s.len, n);
        assert_int_equal(strlen(s.data), n);
        sbuf_free(&s);
    }
}

static void test_sbuf_limits(void **state)
{
    struct sbuf s;
    (void)state;
    /* max counts the terminating NUL: 16 means at most 15 bytes. */
    sbuf_init(&s, 16);
    sbuf_adds(&s, "0123456789");
    assert_false(s.truncated);
    sbuf_adds(&s, "abcde");
    assert_int_equal(s.len, 15);
    assert_false(s.truncated);
    assert_true(s.cap <= s.max);
    sbuf_adds(&s, "X");
    assert_true(s.truncated);
    assert_int_equal(s.len, 15); /* an add that does not fit adds nothing */
    assert_string_equal(s.data, "0123456789abcde");
    assert_true(s.cap <= s.max);
    sbuf_reset(&s);
    assert_false(s.truncated);
    sbuf_free(&s);

    /* Once truncated, the builder stays marked: later small adds that fit
     * cannot make a cut document look whole. */
    sbuf_init(&s, 16);
    sbuf_adds(&s, "12345678");
    sbuf_adds(&s, "too long for the rest");
    assert_true(s.truncated);
    assert_int_equal(s.len, 8);
    sbuf_adds(&s, "ok");
    assert_true(s.truncated);
    sbuf_free(&s);

    /* printf past the stack buffer is refused under a small cap... */
    char big[1000];
    memset(big, 'w', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sbuf_init(&s, 600);
    sbuf_printf(&s, "%s", big);
    assert_true(s.truncated);
    assert_int_equal(s.len, 0);
    sbuf_free(&s);
    /* ... and a short one too. */
    sbuf_init(&s, 8);
    sbuf_printf(&s, "%d", 123456789);
    assert_true(s.truncated);
    assert_int_equal(s.len, 0);
    sbuf_free(&s);

    /* Growth never goes past max, even when doubling would. */
    sbuf_init(&s, 1000);
    for (int i = 0; i < 99; i++)
        sbuf_adds(&s, "0123456789");
    assert_int_equal(s.len, 990);
    assert_false(s.truncated);
    assert_true(s.cap <= 1000);
    sbuf_adds(&s, "0123456789");
    assert_true(s.truncated);
    assert_int_equal(s.len, 990);
    sbuf_free(&s);
}

static void json_escaped(const char *in, size_t n, const char *want)
{
    struct sbuf s;
    sbuf_init(&s, 0);
    sbuf_json_str(&s, in, n);
    const char *got = s.data ? s.data : ""; /* nothing appended: no storage yet */
    if (s.len != strlen(want) || strcmp(got, want) != 0)
        fail_msg("json of %zu bytes: got \"%s\" want \"%s\"", n, got, want);
    sbuf_free(&s);
}

static void test_json_str_exact(void **state)
{
    (void)state;
    json_escaped("plain", 5, "plain");
    json_escaped("", 0, "");
    json_escaped("a\"b", 3, "a\\\"b");
    json_escaped("back\\slash", 10, "back\\\\slash");
    json_escaped("l1\nl2\r\n\tx", 9, "l1\\nl2\\r\\n\\tx");
    json_escaped("\x01\x1f\x7f", 3, "\\u0001\\u001f\\u007f");
    json_escaped("\b\f", 2, "\\u0008\\u000c");
    /* n decides, not a NUL. */
    json_escaped("a\0b", 3, "a\\u0000b");
    json_escaped("abcdef", 3, "abc");
    /* UTF-8 passes through as it is; '/' needs no escape. */
    json_escaped("caf\xc3\xa9 \xe2\x82\xac /x", 12, "caf\xc3\xa9 \xe2\x82\xac /x");
    /* An injection attempt stays inside the string. */
    json_escaped("\",\"admin\":true,\"x\":\"", 20, "\\\",\\\"admin\\\":true,\\\"x\\\":\\\"");
}

static void test_json_str_round_trip(void **state)
{
    char in[256];
    size_t n = 0;
    (void)state;
    for (int c = 1; c < 0x80; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    n += 6;
    struct sbuf s;
    sbuf_init(&s, 0);
    sbuf_adds(&s, "[\"");
    sbuf_json_str(&s, in, n);
    sbuf_adds(&s, "\"]");
    json_error_t err;
    json_t *v = json_loadb(s.data, s.len, 0, &err);
    if (!v)
        fail_msg("escaped string is not JSON: %s (%s)", err.text, s.data);
    const json_t *str = json_array_get(v, 0);
    assert_true(json_is_string(str));
    assert_int_equal(json_string_length(str), n);
    assert_memory_equal(json_string_value(str), in, n);
    json_decref(v);
    /* Every control byte is escaped: none reaches the output raw. */
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.data[i] < 0x20 || s.data[i] == 0x7f)
            fail_msg("raw control byte 0x%02x at %zu", (unsigned char)s.data[i], i);
    sbuf_free(&s);
}

static void test_html(void **state)
{
    struct sbuf s;
    (void)state;
    sbuf_init(&s, 0);
    sbuf_html(&s, "<a href=\"x\">Tom & Jerry's</a>");
    assert_string_equal(s.data, "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
    sbuf_reset(&s);
    sbuf_html(&s, "caf\xc3\xa9");
    assert_string_equal(s.data, "caf\xc3\xa9");
    sbuf_reset(&s);
    sbuf_html(&s, "");
    assert_int_equal(s.len, 0);
    sbuf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_and_views),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_append_compacts_and_bounds),
        cmocka_unit_test(test_free_list),
        cmocka_unit_test(test_fd_io),
        cmocka_unit_test(test_sbuf_basics),
        cmocka_unit_test(test_sbuf_printf_long),
        cmocka_unit_test(test_sbuf_limits),
        cmocka_unit_test(test_json_str_exact),
        cmocka_unit_test(test_json_str_round_trip),
        cmocka_unit_test(test_html),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_h1.c — table-driven tests for the HTTP/1.1 parser (src/h1.c).
 *
 * Every head case runs three ways and must agree:
 *   whole        the complete bytes in one call;
 *   resumed      one buffer, one h1_message, called with prefixes of
 *                growing length (1, 2, 3, ...), which exercises the
 *                parser's resume path; bytes past the prefix are poisoned
 *                under ASan so a peek beyond len is caught;
 *   fresh        each prefix copied into an exact-size heap block and
 *                parsed from scratch (ASan catches any overread).
 * The incremental runs must return RP_AGAIN until the message is complete
 * (or, for refused messages, until the offending byte), then the same
 * result as the whole run, with identical derived fields.
 *
 * Chunked cases are fed whole, byte by byte, and split in two at every
 * position (and in three at every pair of positions for short bodies); the
 * decoded payload, bytes consumed and verdict must be identical.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h1.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NHDR 64

/* ---- head cases ---- */

enum { K_REQ, K_RSP, K_RSP_HEAD };

struct head_case {
    const char *name;
    int kind;
    const char *raw; /* the head (plus, for refused messages, anything) */
    size_t len;
    const char *tail; /* bytes after the head: body, next message */
    int rc;           /* 0: consumes exactly raw; else RP_ERR / RP_AGAIN */
    int status;       /* error_status (RP_ERR) or response status */
    /* derived fields; 0 / NULL means "not checked" */
    const char *framing; /* "none" "length" "chunked" "close" */
    uint64_t cl;         /* checked when framing is "length" */
    char ka;             /* 'y' / 'n' */
    char expect100;      /* 'y' / 'n' */
    char minor;          /* '0' / '1' */
    uint32_t conn;       /* H1_CONN_* bits that must be set */
    const char *method, *target, *host, *reason;
    size_t nhdr;
    const char *hname, *hvalue; /* h1_find_header(hname) must give hvalue */
    struct h1_limits lim;       /* zero: defaults */
};

#define B(s) .raw = (s), .len = sizeof(s) - 1
#define H "Host: example.com\r\n"
#define X10 "abcdefghij"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define T100 "abc\tdefghi" X10 X10 X10 X10 X10 X10 X10 X10 X10

#define OK_REQ .kind = K_REQ, .rc = 0
#define ERR_REQ(st) .kind = K_REQ, .rc = RP_ERR, .status = (st)
#define OK_RSP .kind = K_RSP, .rc = 0
#define ERR_RSP .kind = K_RSP, .rc = RP_ERR, .status = 502

static const struct head_case head_cases[] = {
    /* ---- accepted requests ---- */
    {"get-basic", OK_REQ, B("GET / HTTP/1.1\r\n" H "\r\n"), .framing = "none", .ka = 'y', .minor = '1', .method = "GET",
     .target = "/", .host = "example.com", .nhdr = 1, .expect100 = 'n'},
    {"http10-no-host", OK_REQ, B("GET /index.html HTTP/1.0\r\n\r\n"), .framing = "none", .ka = 'n', .minor = '0',
     .target = "/index.html"},
    {"http10-keep-alive", OK_REQ, B("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), .ka = 'y',
     .conn = H1_CONN_KEEP_ALIVE},
    {"http10-keep-alive-and-close", OK_REQ, B("GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n"), .ka = 'n',
     .conn = H1_CONN_KEEP_ALIVE | H1_CONN_CLOSE},
    {"http11-close", OK_REQ, B("GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n"), .ka = 'n', .conn = H1_CONN_CLOSE},
    {"http11-close-in-list", OK_REQ, B("GET / HTTP/1.1\r\n" H "Connection: x-foo ,  CLOSE \r\n\r\n"), .ka = 'n',
     .conn = H1_CONN_CLOSE},
    {"http11-close-second-field", OK_REQ,
     B("GET / HTTP/1.1\r\n" H "Connection: keep-alive\r\nConnection: close\r\n\r\n"), .ka = 'n'},
    {"http11-upgrade", OK_REQ, B("GET /ws HTTP/1.1\r\n" H "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
     .ka = 'y', .conn = H1_CONN_UPGRADE},
    {"post-content-length", OK_REQ, B("POST /v1/chat/completions HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n"),
     .tail = "hello", .framing = "length", .cl = 5, .method = "POST", .target = "/v1/chat/completions"},
    {"content-length-zero", OK_REQ, B("POST / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n"), .framing = "length",
     .cl = 0},
    {"content-length-list-same", OK_REQ, B("POST / HTTP/1.1\r\n" H "Content-Length: 7, 7,7\r\n\r\n"),
     .framing = "length", .cl = 7},
    {"content-length-fields-same", OK_REQ,
     B("POST / HTTP/1.1\r\n" H "Content-Length: 7\r\ncontent-length: 007\r\n\r\n"), .framing = "length", .cl = 7},
    {"content-length-max", OK_REQ, B("POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775807\r\n\r\n"),
     .framing = "length", .cl = 9223372036854775807ull},
    {"content-length-ows", OK_REQ, B("POST / HTTP/1.1\r\n" H "Content-Length: \t 42 \t\r\n\r\n"), .framing = "length",
     .cl = 42},
    {"chunked", OK_REQ, B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"), .tail = "0\r\n\r\n",
     .framing = "chunked"},
    {"chunked-mixed-case", OK_REQ, B("POST / HTTP/1.1\r\n" H "transfer-encoding: ChUnKeD\r\n\r\n"),
     .framing = "chunked"},
    {"expect-100", OK_REQ, B("POST / HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
     .expect100 = 'y', .framing = "length", .cl = 3},
    {"expect-100-mixed-case", OK_REQ, B("POST / HTTP/1.1\r\n" H "Expect: 100-Continue\r\n\r\n"), .expect100 = 'y'},
    {"expect-100-http10-ignored", OK_REQ, B("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), .expect100 = 'n'},
    {"leading-empty-lines", OK_REQ, B("\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n"), .method = "GET", .target = "/"},
    {"options-asterisk", OK_REQ, B("OPTIONS * HTTP/1.1\r\n" H "\r\n"), .method = "OPTIONS", .target = "*"},
    {"options-origin", OK_REQ, B("OPTIONS /x HTTP/1.1\r\n" H "\r\n"), .target = "/x"},
    {"connect-authority", OK_REQ, B("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
     .method = "CONNECT", .target = "example.com:443", .host = "example.com:443"},
    {"connect-ipv6", OK_REQ, B("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), .target = "[::1]:8443"},
    {"absolute-form", OK_REQ, B("GET http://example.com/x?y=1 HTTP/1.1\r\n" H "\r\n"),
     .target = "http://example.com/x?y=1"},
    {"query-and-pct", OK_REQ, B("GET /a%20b?q=1&r=%7B%7D HTTP/1.1\r\n" H "\r\n"), .target = "/a%20b?q=1&r=%7B%7D"},
    {"pipelined", OK_REQ, B("GET /a HTTP/1.1\r\n" H "\r\n"), .tail = "GET /b HTTP/1.1\r\n" H "\r\n", .target = "/a"},
    {"pipelined-after-body", OK_REQ, B("POST /a HTTP/1.1\r\n" H "Content-Length: 2\r\n\r\n"),
     .tail = "{}GET /b HTTP/1.1\r\n" H "\r\n", .cl = 2, .framing = "length"},
    {"value-ows-trimmed", OK_REQ, B("GET / HTTP/1.1\r\n" H "X-A: \t v a\tl \t \r\n\r\n"), .hname = "x-a",
     .hvalue = "v a\tl", .nhdr = 2},
    {"value-empty", OK_REQ, B("GET / HTTP/1.1\r\n" H "X-Empty:\r\n\r\n"), .hname = "X-EMPTY", .hvalue = ""},
    {"value-only-ows", OK_REQ, B("GET / HTTP/1.1\r\n" H "X-Empty:  \t \r\n\r\n"), .hname = "x-empty", .hvalue = ""},
    {"value-obs-text", OK_REQ, B("GET / HTTP/1.1\r\n" H "X-U: caf\xc3\xa9\r\n\r\n"), .hname = "x-u",
     .hvalue = "caf\xc3\xa9"},
    {"value-long-swar", OK_REQ,
     B("GET / HTTP/1.1\r\n" H "X-L: " X100 X100 X100 T100 X100 "\r\nX-M: " T100 T100 "\r\n\r\n"), .hname = "x-m",
     .hvalue = T100 T100, .nhdr = 3},
    {"near-miss-names", OK_REQ,
     B("POST / HTTP/1.1\r\n" H "X-Abcdefgh: close\r\nContent-Lengtx: 5\r\nTransfer-Encodinx: gzip\r\n"
       "Hosts: a/b\r\nExpects: x\r\n\r\n"),
     .framing = "none", .ka = 'y', .host = "example.com", .nhdr = 6},
    {"method-lowercase-token", OK_REQ, B("get / HTTP/1.1\r\n" H "\r\n"), .method = "get"},
    {"host-empty", OK_REQ, B("GET / HTTP/1.1\r\nHost:\r\n\r\n"), .host = ""},
    {"host-ipv6-port", OK_REQ, B("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"), .host = "[2001:db8::1]:8080"},
    {"host-after-others", OK_REQ, B("GET / HTTP/1.1\r\nAccept: */*\r\nUser-Agent: t\r\nhOsT: a.b\r\n\r\n"),
     .host = "a.b", .nhdr = 3},
    {"target-at-max-uri", OK_REQ, B("GET /123456789abcdef HTTP/1.1\r\n" H "\r\n"), .lim = {0, 0, 16}},
    {"head-at-max-bytes", OK_REQ, B("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .lim = {27, 0, 0}},
    {"headers-at-max", OK_REQ, B("GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\n\r\n"), .lim = {0, 3, 0}, .nhdr = 3},

    /* ---- refused requests ---- */
    {"bare-lf-request-line", ERR_REQ(400), B("GET / HTTP/1.1\nHost: a\r\n\r\n")},
    {"bare-lf-header", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: a\n\r\n")},
    {"bare-lf-end", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: a\r\n\n")},
    {"bare-lf-all", ERR_REQ(400), B("GET / HTTP/1.1\nHost: a\n\n")},
    {"bare-cr-in-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\rb\r\n\r\n")},
    {"bare-cr-request-line", ERR_REQ(400), B("GET / HTTP/1.1\rHost: a\r\n\r\n")},
    {"bare-cr-leading", ERR_REQ(400), B("\rGET / HTTP/1.1\r\n" H "\r\n")},
    {"version-2", ERR_REQ(505), B("GET / HTTP/2.0\r\n" H "\r\n")},
    {"version-1-2", ERR_REQ(505), B("GET / HTTP/1.2\r\n" H "\r\n")},
    {"version-0-9", ERR_REQ(505), B("GET / HTTP/0.9\r\n" H "\r\n")},
    {"version-lowercase", ERR_REQ(400), B("GET / http/1.1\r\n" H "\r\n")},
    {"version-1-10", ERR_REQ(400), B("GET / HTTP/1.10\r\n" H "\r\n")},
    {"version-no-dot", ERR_REQ(400), B("GET / HTTP/11\r\n" H "\r\n")},
    {"version-missing", ERR_REQ(400), B("GET /\r\n\r\n")},
    {"version-trailing-space", ERR_REQ(400), B("GET / HTTP/1.1 \r\n" H "\r\n")},
    {"double-space", ERR_REQ(400), B("GET  / HTTP/1.1\r\n" H "\r\n")},
    {"bad-method-char", ERR_REQ(400), B("GE(T / HTTP/1.1\r\n" H "\r\n")},
    {"empty-method", ERR_REQ(400), B(" / HTTP/1.1\r\n" H "\r\n")},
    {"tab-separator", ERR_REQ(400), B("GET\t/ HTTP/1.1\r\n" H "\r\n")},
    {"space-before-colon", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost : a\r\n\r\n")},
    {"tab-before-colon", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "Content-Length\t: 5\r\n\r\n")},
    {"obs-fold", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n")},
    {"obs-fold-tab", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\r\n\tb\r\n\r\n")},
    {"ws-before-first-header", ERR_REQ(400), B("GET / HTTP/1.1\r\n Host: a\r\n\r\n")},
    {"ctl-in-value", ERR_REQ(400),
     B("GET / HTTP/1.1\r\n" H "X: a\x01"
       "b\r\n\r\n")},
    {"esc-in-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\x1b[31m\r\n\r\n")},
    {"del-in-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n")},
    {"nul-in-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\0b\r\n\r\n")},
    {"nul-in-long-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: " X100 "\0" X10 "\r\n\r\n")},
    {"nul-in-target", ERR_REQ(400), B("GET /\0 HTTP/1.1\r\n" H "\r\n")},
    {"nul-in-name", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X\0Y: a\r\n\r\n")},
    {"nul-in-method", ERR_REQ(400), B("G\0T / HTTP/1.1\r\n" H "\r\n")},
    {"nul-leading", ERR_REQ(400), B("\0GET / HTTP/1.1\r\n" H "\r\n")},
    {"empty-name", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H ": a\r\n\r\n")},
    {"bad-name-char", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X@Y: a\r\n\r\n")},
    {"name-with-space", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X Y: a\r\n\r\n")},
    {"missing-host", ERR_REQ(400), B("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")},
    {"two-hosts", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n")},
    {"host-with-path", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")},
    {"host-with-userinfo", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n")},
    {"host-with-space", ERR_REQ(400), B("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")},
    {"cl-alpha", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: abc\r\n\r\n")},
    {"cl-list-differs", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 5, 6\r\n\r\n")},
    {"cl-fields-differ", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n")},
    {"cl-negative", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n")},
    {"cl-plus", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n")},
    {"cl-empty", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n")},
    {"cl-empty-element", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 5,,5\r\n\r\n")},
    {"cl-trailing-comma", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 5,\r\n\r\n")},
    {"cl-overflow-int64", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 9223372036854775808\r\n\r\n")},
    {"cl-overflow-uint64", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n")},
    {"cl-huge", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999999\r\n\r\n")},
    {"cl-hex", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 0x10\r\n\r\n")},
    {"cl-inner-space", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n")},
    {"te-gzip", ERR_REQ(501), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n")},
    {"te-gzip-chunked", ERR_REQ(501), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n")},
    {"te-identity", ERR_REQ(501), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n")},
    {"te-chunked-not-last", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n")},
    {"te-chunked-twice", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n")},
    {"te-chunked-two-fields", ERR_REQ(400),
     B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"te-then-cl", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")},
    {"cl-then-te", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"te-http10", ERR_REQ(400), B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"te-empty", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n")},
    {"te-trailing-comma", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked,\r\n\r\n")},
    {"te-with-param", ERR_REQ(400), B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;x=1\r\n\r\n")},
    {"te-vertical-tab", ERR_REQ(400),
     B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \x0b"
       "chunked\r\n\r\n")},
    {"expect-other", ERR_REQ(417), B("POST / HTTP/1.1\r\n" H "Expect: 200-ok\r\n\r\n")},
    {"expect-list-other", ERR_REQ(417), B("POST / HTTP/1.1\r\n" H "Expect: 100-continue, foo\r\n\r\n")},
    {"expect-empty", ERR_REQ(417), B("POST / HTTP/1.1\r\n" H "Expect:\r\n\r\n")},
    {"absolute-bad-scheme-start", ERR_REQ(400), B("GET 1http://a/ HTTP/1.1\r\n" H "\r\n")},
    {"absolute-bad-scheme-char", ERR_REQ(400), B("GET ht^tp://a/ HTTP/1.1\r\n" H "\r\n")},
    {"absolute-empty-after-scheme", ERR_REQ(400), B("GET http: HTTP/1.1\r\n" H "\r\n")},
    {"bare-cr-at-end", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "\rX\r\n")},
    {"bare-cr-after-value", ERR_REQ(400), B("GET / HTTP/1.1\r\n" H "X: a\r\r\n\r\n")},
    {"too-many-empty-lines", ERR_REQ(400), B("\r\n\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n")},
    {"asterisk-not-options", ERR_REQ(400), B("GET * HTTP/1.1\r\n" H "\r\n")},
    {"connect-origin-form", ERR_REQ(400), B("CONNECT / HTTP/1.1\r\n" H "\r\n")},
    {"connect-no-port", ERR_REQ(400), B("CONNECT example.com HTTP/1.1\r\n" H "\r\n")},
    {"connect-bad-port", ERR_REQ(400), B("CONNECT example.com:44x HTTP/1.1\r\n" H "\r\n")},
    {"connect-userinfo", ERR_REQ(400), B("CONNECT u@example.com:443 HTTP/1.1\r\n" H "\r\n")},
    {"target-no-form", ERR_REQ(400), B("GET foo HTTP/1.1\r\n" H "\r\n")},
    {"target-utf8", ERR_REQ(400), B("GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n")},
    {"target-del", ERR_REQ(400), B("GET /a\x7f HTTP/1.1\r\n" H "\r\n")},
    {"target-tab", ERR_REQ(400), B("GET /a\tb HTTP/1.1\r\n" H "\r\n")},
    {"tls-client-hello", ERR_REQ(400), B("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")},
    {"uri-too-long", ERR_REQ(414), B("GET /123456789abcdefg HTTP/1.1\r\n" H "\r\n"), .lim = {0, 0, 16}},
    {"uri-too-long-incomplete", ERR_REQ(414), B("GET /123456789abcdefghijklmnop"), .lim = {0, 0, 16}},
    {"uri-long-then-bad-byte", ERR_REQ(400), B("GET /123456789abcdef\x01"), .lim = {0, 0, 16}},
    {"head-over-max-bytes", ERR_REQ(431), B("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .lim = {26, 0, 0}},
    {"head-over-max-incomplete", ERR_REQ(431), B("GET / HTTP/1.1\r\nX-Long: " X100), .lim = {64, 0, 0}},
    {"empty-lines-count-in-limit", ERR_REQ(431), B("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), .lim = {28, 0, 0}},
    {"too-many-headers", ERR_REQ(431), B("GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\nC: 3\r\n\r\n"), .lim = {0, 3, 0}},

    /* ---- incomplete ---- */
    {"incomplete-no-end", .kind = K_REQ, .rc = RP_AGAIN, B("GET / HTTP/1.1\r\n" H)},
    {"incomplete-cr", .kind = K_REQ, .rc = RP_AGAIN, B("GET / HTTP/1.1\r\n" H "\r")},
    {"incomplete-empty-lines", .kind = K_REQ, .rc = RP_AGAIN, B("\r\n\r\n")},

    /* ---- responses ---- */
    {"rsp-200-length", OK_RSP, B("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), .tail = "hello", .status = 200,
     .reason = "OK", .framing = "length", .cl = 5, .ka = 'y'},
    {"rsp-200-chunked", OK_RSP, B("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .framing = "chunked",
     .ka = 'y'},
    {"rsp-200-close-delimited", OK_RSP, B("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"),
     .tail = "data: x\n\n", .framing = "close", .ka = 'n'},
    {"rsp-http10-length", OK_RSP, B("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"), .framing = "length", .cl = 2,
     .ka = 'n', .minor = '0'},
    {"rsp-http10-keep-alive", OK_RSP, B("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"),
     .ka = 'y'},
    {"rsp-close", OK_RSP, B("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"), .framing = "length",
     .cl = 2, .ka = 'n'},
    {"rsp-204-with-length", OK_RSP, B("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"), .framing = "none",
     .status = 204},
    {"rsp-304-with-chunked", OK_RSP, B("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .framing = "none"},
    {"rsp-100-continue", OK_RSP, B("HTTP/1.1 100 Continue\r\n\r\n"), .tail = "HTTP/1.1 200 OK\r\n\r\n",
     .framing = "none", .status = 100},
    {"rsp-101-upgrade", OK_RSP,
     B("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), .framing = "none",
     .conn = H1_CONN_UPGRADE},
    {"rsp-head", .kind = K_RSP_HEAD, .rc = 0, B("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), .framing = "none",
     .ka = 'y'},
    {"rsp-head-chunked", .kind = K_RSP_HEAD, .rc = 0, B("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .framing = "none"},
    {"rsp-no-reason", OK_RSP, B("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), .reason = "", .status = 200},
    {"rsp-empty-reason", OK_RSP, B("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), .reason = ""},
    {"rsp-reason-spaces", OK_RSP, B("HTTP/1.1 404 Not  Found here\r\nContent-Length: 0\r\n\r\n"),
     .reason = "Not  Found here", .status = 404},
    {"rsp-599", OK_RSP, B("HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n"), .status = 599},
    {"rsp-no-host-needed", OK_RSP, B("HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n"), .nhdr = 2},
    {"rsp-cl-and-te", ERR_RSP, B("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"rsp-te-cl", ERR_RSP, B("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")},
    {"rsp-204-cl-and-te", ERR_RSP, B("HTTP/1.1 204 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"rsp-te-gzip", ERR_RSP, B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")},
    {"rsp-te-http10", ERR_RSP, B("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"rsp-cl-differs", ERR_RSP, B("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")},
    {"rsp-http2", ERR_RSP, B("HTTP/2 200 OK\r\n\r\n")},
    {"rsp-http11-lowercase", ERR_RSP, B("http/1.1 200 OK\r\n\r\n")},
    {"rsp-http-1-2", ERR_RSP, B("HTTP/1.2 200 OK\r\n\r\n")},
    {"rsp-status-2-digits", ERR_RSP, B("HTTP/1.1 20 OK\r\n\r\n")},
    {"rsp-status-4-digits", ERR_RSP, B("HTTP/1.1 2000 OK\r\n\r\n")},
    {"rsp-status-099", ERR_RSP, B("HTTP/1.1 099 Low\r\n\r\n")},
    {"rsp-status-600", ERR_RSP, B("HTTP/1.1 600 High\r\n\r\n")},
    {"rsp-no-space", ERR_RSP, B("HTTP/1.1\r\n\r\n")},
    {"rsp-status-junk", ERR_RSP, B("HTTP/1.1 200X OK\r\n\r\n")},
    {"rsp-expect-ignored", OK_RSP, B("HTTP/1.1 200 OK\r\nExpect: nonsense\r\nHost: a/b\r\nContent-Length: 0\r\n\r\n"),
     .expect100 = 'n', .framing = "length"},
    {"rsp-two-spaces", ERR_RSP, B("HTTP/1.1  200 OK\r\n\r\n")},
    {"rsp-reason-ctl", ERR_RSP, B("HTTP/1.1 200 O\x01K\r\n\r\n")},
    {"rsp-bare-lf", ERR_RSP, B("HTTP/1.1 200 OK\nContent-Length: 0\n\n")},
    {"rsp-obs-fold", ERR_RSP, B("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n")},
    {"rsp-space-before-colon", ERR_RSP, B("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n")},
    {"rsp-leading-crlf", ERR_RSP, B("\r\nHTTP/1.1 200 OK\r\n\r\n")},
    {"rsp-too-large", ERR_RSP, B("HTTP/1.1 200 OK\r\nX: " X100 "\r\n\r\n"), .lim = {64, 0, 0}},
    {"rsp-too-many-headers", ERR_RSP, B("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), .lim = {0, 1, 0}},
    {"rsp-incomplete", .kind = K_RSP, .rc = RP_AGAIN, B("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")},
};

static int parse(const struct head_case *c, const char *buf, size_t len, struct h1_message *m)
{
    const struct h1_limits *lim = (c->lim.max_header_bytes || c->lim.max_headers || c->lim.max_uri) ? &c->lim : NULL;
    if (c->kind == K_REQ)
        return h1_parse_request(buf, len, m, lim);
    return h1_parse_response(buf, len, m, lim, c->kind == K_RSP_HEAD);
}

static long off_of(const char *base, const char *p)
{
    return p ? (long)(p - base) : -1;
}

#define SAME_VIEW(field)                                                                                               \
    do {                                                                                                               \
        if (off_of(ab, a->field.p) != off_of(bb, b->field.p) || a->field.len != b->field.len)                          \
            fail_msg("%s (%s): " #field " differs", name, how);                                                        \
    } while (0)
#define SAME(field)                                                                                                    \
    do {                                                                                                               \
        if (a->field != b->field)                                                                                      \
            fail_msg("%s (%s): " #field " differs", name, how);                                                        \
    } while (0)

/* Two parses of the same bytes (maybe at different addresses) must have
 * produced the same message. */
static void check_same(const char *name, const char *how, const struct h1_message *a, const char *ab,
                       const struct h1_message *b, const char *bb)
{
    SAME_VIEW(method);
    SAME_VIEW(target);
    SAME_VIEW(reason);
    SAME_VIEW(host);
    SAME(status);
    SAME(minor_version);
    SAME(num_headers);
    SAME(framing);
    SAME(content_length);
    SAME(keep_alive);
    SAME(expect_continue);
    SAME(conn_flags);
    for (size_t i = 0; i < a->num_headers; i++) {
        SAME_VIEW(headers[i].name);
        SAME_VIEW(headers[i].value);
    }
}

static bool view_is(struct h1_str v, const char *s)
{
    return v.p && v.len == strlen(s) && memcmp(v.p, s, v.len) == 0;
}

static const char *framing_name(enum h1_framing f)
{
    switch (f) {
    case H1_BODY_NONE: return "none";
    case H1_BODY_LENGTH: return "length";
    case H1_BODY_CHUNKED: return "chunked";
    case H1_BODY_CLOSE: return "close";
    }
    return "?";
}

/* The whole-message expectations of a case. */
static void check_expectations(const struct head_case *c, int rc, const struct h1_message *m, size_t total)
{
    int want = c->rc == 0 ? (int)c->len : c->rc;
    if (rc != want)
        fail_msg("%s: rc %d, want %d (error: %s)", c->name, rc, want, m->error ? m->error : "-");
    (void)total;
    if (rc == RP_ERR) {
        if (m->error_status != c->status)
            fail_msg("%s: status %d, want %d (%s)", c->name, m->error_status, c->status, m->error);
        if (!m->error || !*m->error)
            fail_msg("%s: no error text", c->name);
        return;
    }
    if (rc == RP_AGAIN)
        return;
    if (c->kind != K_REQ && c->status && m->status != c->status)
        fail_msg("%s: status %d, want %d", c->name, m->status, c->status);
    if (c->framing && strcmp(framing_name(m->framing), c->framing) != 0)
        fail_msg("%s: framing %s, want %s", c->name, framing_name(m->framing), c->framing);
    if (c->framing && strcmp(c->framing, "length") == 0 && m->content_length != c->cl)
        fail_msg("%s: content_length %llu, want %llu", c->name, (unsigned long long)m->content_length,
                 (unsigned long long)c->cl);
    if (c->ka && m->keep_alive != (c->ka == 'y'))
        fail_msg("%s: keep_alive %d", c->name, m->keep_alive);
    if (c->expect100 && m->expect_continue != (c->expect100 == 'y'))
        fail_msg("%s: expect_continue %d", c->name, m->expect_continue);
    if (c->minor && m->minor_version != c->minor - '0')
        fail_msg("%s: minor %d", c->name, m->minor_version);
    if ((m->conn_flags & c->conn) != c->conn)
        fail_msg("%s: conn_flags %#x", c->name, m->conn_flags);
    if (c->method && !view_is(m->method, c->method))
        fail_msg("%s: method %.*s", c->name, (int)m->method.len, m->method.p);
    if (c->target && !view_is(m->target, c->target))
        fail_msg("%s: target %.*s", c->name, (int)m->target.len, m->target.p);
    if (c->host && !view_is(m->host, c->host))
        fail_msg("%s: host %.*s", c->name, (int)m->host.len, m->host.p);
    if (c->reason && !view_is(m->reason, c->reason))
        fail_msg("%s: reason '%.*s'", c->name, (int)m->reason.len, m->reason.p);
    if (c->nhdr && m->num_headers != c->nhdr)
        fail_msg("%s: %zu headers, want %zu", c->name, m->num_headers, c->nhdr);
    if (c->hname) {
        const struct h1_header *h = h1_find_header(m, c->hname);
        if (!h || !view_is(h->value, c->hvalue))
            fail_msg("%s: header %s is '%.*s'", c->name, c->hname, h ? (int)h->value.len : 0, h ? h->value.p : "");
    }
}

/* Compare an incremental run's final state with the whole run. */
static void check_incremental(const struct head_case *c, const char *how, int rc, size_t at, const struct h1_message *m,
                              const char *mb, int whole_rc, const struct h1_message *w, const char *wb, size_t total)
{
    if (whole_rc == RP_AGAIN) {
        if (rc != RP_AGAIN)
            fail_msg("%s (%s): rc %d at %zu, want RP_AGAIN throughout", c->name, how, rc, at);
        return;
    }
    if (rc != whole_rc)
        fail_msg("%s (%s): rc %d at %zu of %zu, whole gave %d", c->name, how, rc, at, total, whole_rc);
    if (rc > 0) {
        if ((size_t)rc != at)
            fail_msg("%s (%s): complete at %zu but consumed %d", c->name, how, at, rc);
        check_same(c->name, how, m, mb, w, wb);
    } else {
        if (m->error_status != w->error_status || strcmp(m->error, w->error) != 0)
            fail_msg("%s (%s): error %d %s, whole gave %d %s", c->name, how, m->error_status, m->error, w->error_status,
                     w->error);
    }
}

static void run_head_case(const struct head_case *c)
{
    size_t tail_len = c->tail ? strlen(c->tail) : 0;
    size_t total = c->len + tail_len;
    char *full = malloc(total);
    struct h1_header wh[NHDR], ih[NHDR];
    struct h1_message w, m;
    int whole_rc, rc = RP_AGAIN;
    size_t k;

    assert_non_null(full);
    memcpy(full, c->raw, c->len);
    if (tail_len)
        memcpy(full + c->len, c->tail, tail_len);

    h1_message_init(&w, wh, NHDR);
    whole_rc = parse(c, full, total, &w);
    check_expectations(c, whole_rc, &w, total);

    /* same again on the same message: a finished parse restarts cleanly */
    {
        struct h1_header rh[NHDR];
        struct h1_message r;
        h1_message_init(&r, rh, NHDR);
        int r1 = parse(c, full, total, &r);
        int r2 = parse(c, full, total, &r);
        if (r1 != whole_rc || r2 != whole_rc)
            fail_msg("%s: re-parse gave %d then %d, want %d", c->name, r1, r2, whole_rc);
        if (r2 > 0)
            check_same(c->name, "reparse", &r, full, &w, full);
    }

    /* resumed: one buffer, growing prefixes, the rest poisoned */
    h1_message_init(&m, ih, NHDR);
    for (k = 1; k <= total; k++) {
        POISON(full + k, total - k);
        rc = parse(c, full, k, &m);
        UNPOISON(full + k, total - k);
        if (rc != RP_AGAIN)
            break;
    }
    check_incremental(c, "resumed", rc, k, &m, full, whole_rc, &w, full, total);
    size_t resumed_at = k;

    /* fresh: each prefix alone in an exact-size block */
    rc = RP_AGAIN;
    for (k = 1; k <= total; k++) {
        char *pre = malloc(k);
        assert_non_null(pre);
        memcpy(pre, full, k);
        h1_message_init(&m, ih, NHDR);
        rc = parse(c, pre, k, &m);
        if (rc != RP_AGAIN) {
            check_incremental(c, "fresh", rc, k, &m, pre, whole_rc, &w, full, total);
            free(pre);
            break;
        }
        free(pre);
    }
    if (rc == RP_AGAIN)
        check_incremental(c, "fresh", rc, k, &m, full, whole_rc, &w, full, total);
    else if (k != resumed_at)
        fail_msg("%s: fresh decided at %zu, resumed at %zu", c->name, k, resumed_at);
    free(full);
}

static void test_head_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(head_cases); i++)
        run_head_case(&head_cases[i]);
    print_message("  %zu head cases, each whole + resumed + fresh per prefix\n", RP_ARRAY_LEN(head_cases));
}

/* A partial head in one buffer, then the same bytes moved (compaction):
 * the parser must restart, not trust views into the old block. */
static void test_buffer_moved(void **state)
{
    (void)state;
    const char *req = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    size_t n = strlen(req);
    char *a = malloc(n), *b = malloc(n);
    struct h1_header hs[8];
    struct h1_message m;
    h1_message_init(&m, hs, 8);
    memcpy(a, req, n);
    assert_int_equal(h1_parse_request(a, 30, &m, NULL), RP_AGAIN);
    memcpy(b, req, n);
    memset(a, 'Z', n); /* the old block now holds garbage */
    assert_int_equal(h1_parse_request(b, n, &m, NULL), (int)n);
    assert_ptr_equal(m.target.p, b + 5);
    assert_ptr_equal(m.headers[0].name.p, b + 18);
    assert_int_equal(m.content_length, 3);
    /* a shorter length than already parsed also restarts */
    h1_message_init(&m, hs, 8);
    assert_int_equal(h1_parse_request(b, 40, &m, NULL), RP_AGAIN);
    assert_int_equal(h1_parse_request(b, 20, &m, NULL), RP_AGAIN);
    assert_int_equal(h1_parse_request(b, n, &m, NULL), (int)n);
    assert_true(view_is(m.host, "a"));
    /* empty input */
    h1_message_init(&m, hs, 8);
    assert_int_equal(h1_parse_request(b, 0, &m, NULL), RP_AGAIN);
    free(a);
    free(b);
}

/* The caller's array bounds the header count even below max_headers. */
static void test_headers_cap(void **state)
{
    (void)state;
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n";
    struct h1_header hs[2];
    struct h1_message m;
    h1_message_init(&m, hs, 1);
    assert_int_equal(h1_parse_request(req, strlen(req), &m, NULL), RP_ERR);
    assert_int_equal(m.error_status, 431);
    h1_message_init(&m, hs, 2);
    assert_int_equal(h1_parse_request(req, strlen(req), &m, NULL), (int)strlen(req));
    assert_int_equal(m.num_headers, 2);
}

/* Default limits: 16 KiB head, 8 KiB target. */
static void test_default_limits(void **state)
{
    (void)state;
    size_t n = H1_DEFAULT_MAX_URI + 64;
    char *req = malloc(n + 64);
    struct h1_header hs[4];
    struct h1_message m;
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', n);
    h1_message_init(&m, hs, 4);
    assert_int_equal(h1_parse_request(req, 5 + n, &m, NULL), RP_ERR);
    assert_int_equal(m.error_status, 414);
    free(req);

    n = H1_DEFAULT_MAX_HEADER_BYTES;
    req = malloc(n);
    const char *pre = "GET / HTTP/1.1\r\nX: ";
    memcpy(req, pre, strlen(pre));
    memset(req + strlen(pre), 'v', n - strlen(pre));
    h1_message_init(&m, hs, 4);
    assert_int_equal(h1_parse_request(req, n - 1, &m, NULL), RP_AGAIN);
    assert_int_equal(h1_parse_request(req, n, &m, NULL), RP_ERR);
    assert_int_equal(m.error_status, 431);
    free(req);
}

/* ---- chunked ---- */

struct chunk_case {
    const char *name;
    const char *raw;
    size_t len;
    const char *tail;    /* bytes after the body (must not be consumed) */
    int rc;              /* 0: done, consumed raw; RP_AGAIN: all consumed, not done; RP_ERR */
    const char *payload; /* decoded bytes (delivered before any error) */
    size_t payload_len;
    size_t max_line, max_trailer; /* 0: defaults */
};

#define P(s) .payload = (s), .payload_len = sizeof(s) - 1

static const struct chunk_case chunk_cases[] = {
    {"one-chunk", B("5\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"two-chunks", B("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), .rc = 0, P("hello world")},
    {"hex-cases", B("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"), .rc = 0, P("0123456789abcdefghij")},
    {"leading-zeros", B("0005\r\nhello\r\n000\r\n\r\n"), .rc = 0, P("hello")},
    {"sixteen-digits", B("0000000000000005\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"binary-payload", B("4\r\n\r\n\0\n\r\n0\r\n\r\n"), .rc = 0, P("\r\n\0\n")},
    {"ext-token", B("5;name=value\r\nhello\r\n0;last\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-several", B("5;a;b=1;c=\"x\"\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-quoted-escape", B("5;a=\"q \\\" s;,\"\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-bws", B("5 ; a = b ;c\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-at-max-line", B("5;abcdefghij\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello"), .max_line = 12},
    {"trailers", B("5\r\nhello\r\n0\r\nX-Checksum: 1\r\nY:\r\n\r\n"), .rc = 0, P("hello")},
    {"empty-body", B("0\r\n\r\n"), .rc = 0, P("")},
    {"stops-at-end", B("3\r\nabc\r\n0\r\n\r\n"), .tail = "GET / HTTP/1.1\r\n\r\n", .rc = 0, P("abc")},
    {"stops-at-end-trailers", B("0\r\nA: b\r\n\r\n"), .tail = "\r\n", .rc = 0, P("")},
    {"trailer-at-max", B("0\r\nA: b\r\n\r\n"), .rc = 0, P(""), .max_trailer = 8},
    {"incomplete-data", B("5\r\nhel"), .rc = RP_AGAIN, P("hel")},
    {"incomplete-size", B("5"), .rc = RP_AGAIN, P("")},
    {"incomplete-trailer", B("0\r\nA: b\r\n"), .rc = RP_AGAIN, P("")},
    {"size-2-62-accepted", B("4000000000000000\r\nab"), .rc = RP_AGAIN, P("ab")},

    {"bad-hex", B("g\r\nxxxxxxx"), .rc = RP_ERR, P("")},
    {"empty-size", B("\r\n"), .rc = RP_ERR, P("")},
    {"size-junk", B("5x\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"size-negative", B("-5\r\n"), .rc = RP_ERR, P("")},
    {"size-0x", B("0x5\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"size-over-2-62", B("4000000000000001\r\n"), .rc = RP_ERR, P("")},
    {"size-all-f", B("ffffffffffffffff\r\n"), .rc = RP_ERR, P("")},
    {"seventeen-digits", B("00000000000000005\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"size-bare-lf", B("5\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"size-ws-before-crlf", B("5 \r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"data-no-crlf", B("5\r\nhelloX\r\n0\r\n\r\n"), .rc = RP_ERR, P("hello")},
    {"data-lf-only", B("5\r\nhello\n0\r\n\r\n"), .rc = RP_ERR, P("hello")},
    {"data-cr-only", B("5\r\nhello\r0\r\n\r\n"), .rc = RP_ERR, P("hello")},
    {"data-too-long", B("3\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("hel")},
    {"second-size-bad", B("5\r\nhello\r\nZ\r\n"), .rc = RP_ERR, P("hello")},
    {"ext-ws-name-semi", B("5;a ;b\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-quoted-then-more", B("5;a=\"x\";b=\"\" ;c=\"\\\\\"\r\nhello\r\n0\r\n\r\n"), .rc = 0, P("hello")},
    {"ext-quoted-ctl", B("5;a=\"x\x01\"\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-quoted-escape-ctl", B("5;a=\"x\\\x01\"\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-after-quote-junk", B("5;a=\"x\"y\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-after-quote-ws-crlf", B("5;a=\"x\" \r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-name-ws-junk", B("5;a b\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-value-junk", B("5;a=b,\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-eq-junk", B("5;a=,\r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"size-cr-no-lf", B("5\rXhello\r\n"), .rc = RP_ERR, P("")},
    {"trailer-bare-cr", B("0\r\nX: a\rY\r\n\r\n"), .rc = RP_ERR, P("")},
    {"ext-empty", B("5;\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"ext-ctl", B("5;a=\x01\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"ext-bare-lf", B("5;a\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"ext-unterminated-quote", B("5;a=\"abc\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"ext-ws-before-crlf", B("5;a=b \r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-name-ws-crlf", B("5;a \r\nhello\r\n"), .rc = RP_ERR, P("")},
    {"ext-over-max-line", B("5;abcdefghijk\r\nhello\r\n0\r\n\r\n"), .rc = RP_ERR, P(""), .max_line = 12},
    {"ext-over-default-line",
     B("5;" X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100
           X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100
       "\r\nhello"),
     .rc = RP_ERR, P("")},
    {"trailer-obs-fold", B("0\r\nX: a\r\n b\r\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-bad-name", B("0\r\nX Y: a\r\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-no-colon", B("0\r\nXY\r\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-ctl", B("0\r\nX: \x01\r\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-nul", B("0\r\nX: a\0\r\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-bare-lf", B("0\r\nX: a\n\r\n"), .rc = RP_ERR, P("")},
    {"trailer-over-max", B("0\r\nA: bc\r\n\r\n"), .rc = RP_ERR, P(""), .max_trailer = 8},
    {"end-bare-cr", B("0\r\n\rX"), .rc = RP_ERR, P("")},
    {"end-bare-lf", B("0\r\n\n"), .rc = RP_ERR, P("")},
};

struct sink {
    char data[8192];
    size_t len;
    bool overflow;
};

static void sink_cb(void *arg, const char *d, size_t n)
{
    struct sink *s = arg;
    if (n == 0)
        fail_msg("on_data called with no bytes");
    if (s->len + n > sizeof s->data) {
        s->overflow = true;
        return;
    }
    memcpy(s->data + s->len, d, n);
    s->len += n;
}

struct feed_result {
    int rc; /* RP_ERR, RP_AGAIN (not done), 0 (done) */
    size_t consumed;
    const char *error;
    struct sink sink;
};

/* Feed buf in pieces ending at cuts[0] < cuts[1] < ... < len, each piece in
 * an exact-size heap block. */
static void feed(const struct chunk_case *c, const char *buf, size_t len, const size_t *cuts, size_t ncuts,
                 struct feed_result *r)
{
    struct h1_chunked ch;
    size_t from = 0;
    h1_chunked_init(&ch);
    if (c->max_line)
        ch.max_line = c->max_line;
    if (c->max_trailer)
        ch.max_trailer = c->max_trailer;
    memset(r, 0, sizeof *r);
    r->rc = RP_AGAIN;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        size_t n = to - from;
        char *piece = malloc(n ? n : 1);
        assert_non_null(piece);
        memcpy(piece, buf + from, n);
        ssize_t got = h1_chunked_feed(&ch, piece, n, sink_cb, &r->sink);
        free(piece);
        if (got == RP_ERR) {
            r->rc = RP_ERR;
            r->error = ch.error;
            if (!ch.error)
                fail_msg("%s: RP_ERR without error text", c->name);
            /* errors are sticky */
            if (h1_chunked_feed(&ch, "0\r\n\r\n", 5, NULL, NULL) != RP_ERR)
                fail_msg("%s: decoder recovered after an error", c->name);
            return;
        }
        if (got < 0 || (size_t)got > n)
            fail_msg("%s: feed returned %zd for %zu bytes", c->name, got, n);
        r->consumed += (size_t)got;
        if (ch.done) {
            r->rc = 0;
            if (h1_chunked_feed(&ch, "x", 1, NULL, NULL) != 0)
                fail_msg("%s: decoder consumed after the end", c->name);
            return;
        }
        if ((size_t)got != n)
            fail_msg("%s: consumed %zd of %zu without finishing", c->name, got, n);
        from = to;
    }
    if (ch.payload_total != r->sink.len)
        fail_msg("%s: payload_total %llu, delivered %zu", c->name, (unsigned long long)ch.payload_total, r->sink.len);
}

static void check_feed(const struct chunk_case *c, const char *how, const struct feed_result *r, size_t body_len)
{
    if (r->rc != c->rc)
        fail_msg("%s (%s): rc %d, want %d (error: %s)", c->name, how, r->rc, c->rc, r->error ? r->error : "-");
    if (r->rc != RP_ERR && r->consumed != body_len)
        fail_msg("%s (%s): consumed %zu, want %zu", c->name, how, r->consumed, body_len);
    if (r->sink.overflow || r->sink.len != c->payload_len || memcmp(r->sink.data, c->payload, c->payload_len) != 0)
        fail_msg("%s (%s): payload '%.*s' (%zu bytes)", c->name, how, (int)r->sink.len, r->sink.data, r->sink.len);
}

static void check_same_feed(const struct chunk_case *c, const char *how, const struct feed_result *a,
                            const struct feed_result *whole)
{
    if (a->rc == RP_ERR && strcmp(a->error, whole->error) != 0)
        fail_msg("%s (%s): error '%s', whole gave '%s'", c->name, how, a->error, whole->error);
}

static void run_chunk_case(const struct chunk_case *c)
{
    size_t tail_len = c->tail ? strlen(c->tail) : 0;
    size_t total = c->len + tail_len;
    char *full = malloc(total);
    struct feed_result *whole = malloc(sizeof *whole), *r = malloc(sizeof *r);
    size_t *cuts = malloc(sizeof(size_t) * (total + 1));
    assert_non_null(full);
    memcpy(full, c->raw, c->len);
    if (tail_len)
        memcpy(full + c->len, c->tail, tail_len);

    feed(c, full, total, NULL, 0, whole);
    check_feed(c, "whole", whole, c->len);

    for (size_t i = 0; i + 1 < total; i++)
        cuts[i] = i + 1;
    feed(c, full, total, cuts, total ? total - 1 : 0, r);
    check_feed(c, "byte by byte", r, c->len);
    check_same_feed(c, "byte by byte", r, whole);

    for (size_t i = 1; i < total; i++) {
        cuts[0] = i;
        feed(c, full, total, cuts, 1, r);
        check_feed(c, "split in two", r, c->len);
        check_same_feed(c, "split in two", r, whole);
    }
    if (total <= 200) {
        for (size_t i = 1; i < total; i++) {
            for (size_t j = i + 1; j < total; j++) {
                cuts[0] = i;
                cuts[1] = j;
                feed(c, full, total, cuts, 2, r);
                check_feed(c, "split in three", r, c->len);
                check_same_feed(c, "split in three", r, whole);
            }
        }
    }
    free(cuts);
    free(whole);
    free(r);
    free(full);
}

static void test_chunk_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(chunk_cases); i++)
        run_chunk_case(&chunk_cases[i]);
    print_message("  %zu chunked cases, each whole + byte by byte + every 2- and 3-way split\n",
                  RP_ARRAY_LEN(chunk_cases));
}

/* A large body in odd-sized reads: payload intact, counters right. */
static void test_chunk_large(void **state)
{
    (void)state;
    size_t n = 100000, cap = n + 64 * 1024;
    char *body = malloc(cap), *want = malloc(n);
    size_t bl = 0, wl = 0;
    unsigned seed = 7;
    while (wl < n) {
        size_t sz = 1 + (seed = seed * 1103515245u + 12345u) % 3000;
        if (sz > n - wl)
            sz = n - wl;
        bl += (size_t)snprintf(body + bl, cap - bl, "%zx;i=%zu\r\n", sz, wl);
        for (size_t i = 0; i < sz; i++)
            body[bl + i] = want[wl + i] = (char)(seed >> (i % 24));
        bl += sz;
        wl += sz;
        memcpy(body + bl, "\r\n", 2);
        bl += 2;
    }
    memcpy(body + bl, "0\r\nT: x\r\n\r\n", 11);
    bl += 11;

    struct h1_chunked ch;
    struct sink *s = calloc(1, sizeof *s + n);
    char *got = malloc(n);
    size_t gl = 0, off = 0;
    h1_chunked_init(&ch);
    while (off < bl) {
        size_t step = RP_MIN(bl - off, 1 + (size_t)((seed = seed * 1103515245u + 12345u) % 1500));
        s->len = 0;
        ssize_t r = h1_chunked_feed(&ch, body + off, step, sink_cb, s);
        assert_true(r >= 0);
        memcpy(got + gl, s->data, s->len);
        gl += s->len;
        off += (size_t)r;
        if (ch.done)
            break;
    }
    assert_true(ch.done);
    assert_int_equal(off, bl);
    assert_int_equal(gl, n);
    assert_int_equal(ch.payload_total, n);
    assert_memory_equal(got, want, n);
    free(got);
    free(s);
    free(body);
    free(want);
}

/* ---- helpers ---- */

static void test_find_header(void **state)
{
    (void)state;
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\nX-Tenant: t1\r\nx-tenant: t2\r\n\r\n";
    struct h1_header hs[8];
    struct h1_message m;
    h1_message_init(&m, hs, 8);
    assert_int_equal(h1_parse_request(req, strlen(req), &m, NULL), (int)strlen(req));
    const struct h1_header *h = h1_find_header(&m, "X-TENANT");
    assert_non_null(h);
    assert_true(view_is(h->value, "t1"));
    assert_null(h1_find_header(&m, "X-Tenan"));
    assert_null(h1_find_header(&m, "X-Tenants"));
    assert_non_null(h1_find_header(&m, "host"));
}

static struct h1_str S(const char *s) {
    return (struct h1_str){s, strlen(s)};
}

static void
test_list_has_token(void **state)
{
    (void)state;
    assert_true(h1_list_has_token(S("close"), "close"));
    assert_true(h1_list_has_token(S("Keep-Alive, Upgrade"), "upgrade"));
    assert_true(h1_list_has_token(S(" a ,\tb\t, c "), "b"));
    assert_true(h1_list_has_token(S(",,x,,"), "x"));
    assert_false(h1_list_has_token(S("closed"), "close"));
    assert_false(h1_list_has_token(S("xclose"), "close"));
    assert_false(h1_list_has_token(S("clo se"), "close"));
    assert_false(h1_list_has_token(S(""), "close"));
    assert_false(h1_list_has_token((struct h1_str){NULL, 0}, "close"));
    assert_false(h1_list_has_token(S(", ,"), ""));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    const char *yes[] = {"Connection", "keep-alive",         "Proxy-Connection",   "TE", "Trailer", "Transfer-Encoding",
                         "UPGRADE",    "Proxy-Authenticate", "proxy-authorization"};
    const char *no[] = {"Content-Length",           "Host", "Trailers", "T", "Authorization", "X-Connection",
                        "Upgrade-Insecure-Requests"};
    for (size_t i = 0; i < RP_ARRAY_LEN(yes); i++)
        if (!h1_is_hop_by_hop(S(yes[i])))
            fail_msg("%s should be hop-by-hop", yes[i]);
    for (size_t i = 0; i < RP_ARRAY_LEN(no); i++)
        if (h1_is_hop_by_hop(S(no[i])))
            fail_msg("%s should not be hop-by-hop", no[i]);
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(h1_reason(200), "OK");
    assert_string_equal(h1_reason(414), "URI Too Long");
    assert_string_equal(h1_reason(417), "Expectation Failed");
    assert_string_equal(h1_reason(429), "Too Many Requests");
    assert_string_equal(h1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(h1_reason(505), "HTTP Version Not Supported");
    assert_string_equal(h1_reason(299), "Unknown");
    assert_string_equal(h1_reason(-1), "Unknown");
}

static void test_write_response_head(void **state)
{
    (void)state;
    char out[256];
    struct h1_header hs[] = {{S("Content-Type"), S("application/json")}, {S("Content-Length"), S("2")}};
    ssize_t n = h1_write_response_head(out, sizeof out, 429, NULL, hs, 2);
    const char *want = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(out, want, (size_t)n);

    /* what we write, we parse back */
    struct h1_header ph[8];
    struct h1_message m;
    h1_message_init(&m, ph, 8);
    assert_int_equal(h1_parse_response(out, (size_t)n, &m, NULL, false), (int)n);
    assert_int_equal(m.status, 429);
    assert_int_equal(m.framing, H1_BODY_LENGTH);
    assert_int_equal(m.content_length, 2);

    /* exact fit, one byte short */
    assert_int_equal(h1_write_response_head(out, (size_t)n, 429, NULL, hs, 2), n);
    assert_int_equal(h1_write_response_head(out, (size_t)n - 1, 429, NULL, hs, 2), RP_ERR);
    /* no header splitting, no bad names, no bad status */
    struct h1_header evil_v[] = {{S("X"), S("a\r\nSet-Cookie: x")}};
    struct h1_header evil_n[] = {{S("X Y"), S("a")}};
    struct h1_header empty_n[] = {{S(""), S("a")}};
    assert_int_equal(h1_write_response_head(out, sizeof out, 200, NULL, evil_v, 1), RP_ERR);
    assert_int_equal(h1_write_response_head(out, sizeof out, 200, NULL, evil_n, 1), RP_ERR);
    assert_int_equal(h1_write_response_head(out, sizeof out, 200, NULL, empty_n, 1), RP_ERR);
    assert_int_equal(h1_write_response_head(out, sizeof out, 200, "O\nK", NULL, 0), RP_ERR);
    assert_int_equal(h1_write_response_head(out, sizeof out, 200, "OK", hs, 1), 51);
    assert_int_equal(h1_write_response_head(out, 12, 200, "OK", hs, 1), RP_ERR); /* status line */
    assert_int_equal(h1_write_response_head(out, 30, 200, "OK", hs, 1), RP_ERR); /* header */
    assert_int_equal(h1_write_response_head(out, 50, 200, "OK", hs, 1), RP_ERR); /* final CRLF */
    assert_int_equal(h1_write_response_head(out, sizeof out, 99, NULL, NULL, 0), RP_ERR);
    assert_int_equal(h1_write_response_head(out, sizeof out, 1000, NULL, NULL, 0), RP_ERR);
    n = h1_write_response_head(out, sizeof out, 204, "", NULL, 0);
    assert_int_equal(n, 17);
    assert_memory_equal(out, "HTTP/1.1 204 \r\n\r\n", 17);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_cases),          cmocka_unit_test(test_buffer_moved),
        cmocka_unit_test(test_headers_cap),         cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_chunk_cases),         cmocka_unit_test(test_chunk_large),
        cmocka_unit_test(test_find_header),         cmocka_unit_test(test_list_has_token),
        cmocka_unit_test(test_hop_by_hop),          cmocka_unit_test(test_reason),
        cmocka_unit_test(test_write_response_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * h1.h — HTTP/1.1 message parsing (RFC 9112), strict and zero-copy.
 *
 * The parser does no I/O and allocates nothing: it reads a buffer the caller
 * owns and fills views (pointer + length) into it, plus a header array the
 * caller provides.  Views stay valid as long as the caller keeps the bytes
 * in place.  A message may arrive in any number of pieces: the caller calls
 * the parser again with the grown buffer; the parser returns RP_AGAIN until
 * the header section is complete.  Feeding the same message whole or byte by
 * byte gives the same result (the unit tests check both).
 *
 * Return convention (util.h): bytes consumed by the header section (> 0),
 * RP_AGAIN (-2) for "incomplete", RP_ERR (-1) for a malformed or refused
 * message, in which case msg->error_status holds the HTTP status to answer
 * (400, 414, 417, 431, 501, 505; always 502 for responses) and msg->error
 * the reason (static string).  Errors are reported as soon as the offending
 * byte arrives, so garbage is refused without waiting for the end of the
 * section; a section that reaches max_header_bytes without ending is 431
 * even while incomplete.
 *
 * Smuggling rules (requests): both Content-Length and Transfer-Encoding,
 * differing or malformed Content-Length, a transfer coding other than a
 * final "chunked", whitespace before the colon, obs-fold, control
 * characters, and a missing or repeated Host on HTTP/1.1 are all refused.
 *
 * Line endings: only CRLF.  A bare LF or a bare CR anywhere in the head is
 * refused (400/502), as is any NUL or control character other than HTAB in
 * a field value.  Up to H1_MAX_EMPTY_LINES empty lines (CRLF) before a
 * request line are skipped (RFC 9112 2.2 robustness); they count in the
 * consumed bytes and in max_header_bytes.
 *
 * Incremental parsing: the parser remembers in msg->parse how far it got
 * when it returned RP_AGAIN; the next call with the same buffer (same
 * address, grown length, bytes already seen unchanged) resumes there, so a
 * head trickling in byte by byte costs linear time.  A call with a
 * different buffer address (the caller compacted or moved the bytes) or a
 * shorter length silently restarts from the first byte, as does every call
 * after h1_message_init.  After a final result (bytes or RP_ERR) a further
 * call re-parses from scratch.
 */
#ifndef RP_H1_H
#define RP_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

struct h1_str {
    const char *p;
    size_t len;
};

struct h1_header {
    struct h1_str name;
    struct h1_str value; /* leading/trailing OWS removed */
};

struct h1_limits {
    size_t max_header_bytes; /* whole header section incl. request line -> 431 */
    size_t max_headers;      /* header field count -> 431 */
    size_t max_uri;          /* request-target length -> 414 */
};
/* A zero field in h1_limits means "the default".  More header fields than
 * min(max_headers, msg->headers_cap) is 431. */

/* Empty lines tolerated before a request line (more -> 400). */
#define H1_MAX_EMPTY_LINES 2

#define H1_DEFAULT_MAX_HEADER_BYTES (16 * 1024)
#define H1_DEFAULT_MAX_HEADERS 100
#define H1_DEFAULT_MAX_URI (8 * 1024)

enum h1_framing {
    H1_BODY_NONE = 0, /* no body */
    H1_BODY_LENGTH,   /* content_length bytes */
    H1_BODY_CHUNKED,  /* chunked coding; see h1_chunked_* */
    H1_BODY_CLOSE,    /* responses only: body runs until the peer closes */
};

/* Connection option flags seen in Connection headers. */
#define H1_CONN_CLOSE 0x1u
#define H1_CONN_KEEP_ALIVE 0x2u
#define H1_CONN_UPGRADE 0x4u

struct h1_message {
    /* request line (requests) */
    struct h1_str method;
    struct h1_str target;
    /* status line (responses) */
    int status;
    struct h1_str reason;

    int minor_version;         /* HTTP/1.<minor>: 0 or 1 */
    struct h1_header *headers; /* caller's array ... */
    size_t headers_cap;        /* ... of this capacity (set before parsing) */
    size_t num_headers;

    /* semantics derived while parsing */
    enum h1_framing framing;
    uint64_t content_length; /* valid when framing == H1_BODY_LENGTH */
    bool keep_alive;         /* per version and Connection options */
    bool expect_continue;    /* requests: Expect: 100-continue */
    uint32_t conn_flags;     /* H1_CONN_* */
    struct h1_str host;      /* requests: the Host value, if any */

    /* set when RP_ERR is returned */
    int error_status;
    const char *error;

    /* Parser progress kept between calls that return RP_AGAIN.  Private to
     * h1.c; h1_message_init (or zeroing) resets it. */
    struct h1_parse_state {
        const char *base; /* buffer address of the previous call */
        size_t off;       /* bytes of it already parsed */
        size_t mark;      /* start of the token being parsed */
        uint16_t state;   /* 0: start of message */
        uint16_t flags;   /* framing headers seen so far */
    } parse;
};

/* Prepare msg to parse into headers[cap].  Must be called before the first
 * parse of each new message (it clears the derived fields). */
void h1_message_init(struct h1_message *msg, struct h1_header *headers, size_t cap);

/* Parse a request header section at buf[0..len).  See the file comment for
 * the return convention.  lim may be NULL for the defaults.
 *
 * Accepted request-targets: origin-form ("/..."), absolute-form
 * ("scheme:..."), "*" only with OPTIONS, authority-form ("host:port") only
 * and always with CONNECT.  Target bytes must be visible ASCII (0x21-0x7E);
 * anything else, including raw UTF-8, is 400.
 * Derived fields: framing is H1_BODY_CHUNKED with Transfer-Encoding,
 * H1_BODY_LENGTH with Content-Length (content_length may be 0), otherwise
 * H1_BODY_NONE.  Content-Length above INT64_MAX is 400.  keep_alive: 1.1
 * unless "close", 1.0 only with "keep-alive" (and never with "close").
 * Expect other than "100-continue" is 417; on HTTP/1.0 the expectation is
 * ignored (RFC 9110 10.1.1).  Host characters are checked (no '/', '@', '?',
 * whitespace...); an empty Host is accepted. */
int h1_parse_request(const char *buf, size_t len, struct h1_message *msg, const struct h1_limits *lim);

/* Parse a response header section.  head_request: the request was HEAD (the
 * response then has no body whatever its headers say).  1xx, 204 and 304
 * responses have no body.  A response with neither Content-Length nor
 * chunked is H1_BODY_CLOSE (and keep_alive is then false).  Errors set
 * error_status 502.  The status must be 100-599; "HTTP/1.1 200\r\n" (no
 * SP and no reason) is accepted with an empty reason.  Unknown transfer
 * codings and Content-Length together with Transfer-Encoding are refused
 * even where the status means "no body".  A 2xx answer to CONNECT has no
 * body either: the caller, which knows the method, handles that case. */
int h1_parse_response(const char *buf, size_t len, struct h1_message *msg, const struct h1_limits *lim,
                      bool head_request);

/* ---- chunked transfer coding ---- */

struct h1_chunked {
    int state;
    uint64_t chunk_left;    /* payload bytes left in the current chunk */
    uint64_t payload_total; /* payload bytes seen so far (for body limits) */
    size_t line_len;        /* bytes in the current size/extension/trailer line */
    size_t trailer_bytes;   /* bytes of trailer section so far */
    size_t max_line;        /* bound on a chunk-size line (default 4096) */
    size_t max_trailer;     /* bound on the trailer section (default 16 KiB) */
    bool done;              /* last-chunk and trailers consumed */
    const char *error;      /* set when RP_ERR is returned */
};

typedef void (*h1_data_cb)(void *arg, const char *data, size_t len);

void h1_chunked_init(struct h1_chunked *c);

/* Feed chunked-coded bytes buf[0..len).  Validates the framing and calls
 * on_data (may be NULL) for each run of payload bytes.  Returns the bytes
 * consumed: all of len, unless the message ended inside buf, in which case
 * it stops right after the final CRLF and c->done is set.  RP_ERR when the
 * coding is malformed (bad hex, size overflow, missing CRLF, over-long
 * line, bad trailer); c->error says why.  Works on any split of the input.
 * Strictness: chunk sizes are at most 16 hex digits and 2^62; extensions
 * must follow the grammar (";" name ["=" token / quoted-string]) with
 * optional whitespace only around ";" and "=", never before the CRLF;
 * every line ends in CRLF; trailer fields follow the header rules (token
 * name, no obs-fold, no control characters).  Errors are sticky; after
 * done, further calls return 0. */
ssize_t h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len, h1_data_cb on_data, void *arg);

/* The bytes fed so far end between two chunks (or before the first): a
 * relay may insert a whole chunk of its own there and the receiver's
 * decoder stays in step. */
bool h1_chunked_at_boundary(const struct h1_chunked *c);

/* ---- helpers ---- */

/* First header named name (case-insensitive), or NULL. */
const struct h1_header *h1_find_header(const struct h1_message *msg, const char *name);

/* Does the comma-separated list value contain token (case-insensitive)? */
bool h1_list_has_token(struct h1_str value, const char *token);

/* Hop-by-hop header per RFC 9110 7.6.1 (Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization). */
bool h1_is_hop_by_hop(struct h1_str name);

/* Reason phrase for a status code ("Unknown" if none). */
const char *h1_reason(int status);

/* Whether target[0..len) is an authority-form request-target (RFC 9112
 * 3.2.3): host ":" port, with a 1 to 5 digit port and host characters
 * that cannot carry a path, a query or userinfo. */
bool h1_authority_form(const char *target, size_t len);

/* Serialize a response head into out[cap]: "HTTP/1.1 <status> <reason>",
 * the n headers as "name: value", each line ending in CRLF, then the empty
 * line.  reason NULL means h1_reason(status).  Returns the bytes written,
 * or RP_ERR when it does not fit, status is not 100-999, a name is not a
 * token, or a value or the reason holds CR, LF or another control
 * character (a header can never split the response). */
ssize_t h1_write_response_head(char *out, size_t cap, int status, const char *reason, const struct h1_header *headers,
                               size_t n);

#endif

/*
 * h1.c — strict, zero-copy HTTP/1.1 parsing (RFC 9112).
 *
 * Design.  The head parser is one resumable state machine shared by
 * requests and responses.  Each state owns a tight loop over the bytes of
 * its class (token, request-target, field value) driven by 256-entry
 * tables, so the common case never calls a function per byte; field values
 * and targets are additionally skipped eight bytes at a time with a SWAR
 * test for "any control byte in this word".  Everything the parser learns
 * lives in the caller's h1_message (views, header array, derived fields)
 * plus a few words of progress (h1_parse_state), so a call that returns
 * RP_AGAIN can be resumed at the exact byte where it stopped.  Resuming and
 * restarting visit the bytes in the same order with the same state, which
 * is why a message fed whole and fed byte by byte gives the same answer,
 * including which error wins when a message has several.
 *
 * Semantics (Content-Length, Transfer-Encoding, Host, Connection, Expect)
 * are applied when each header line ends, not after the whole section:
 * conflicts are reported as early as possible and nothing needs a second
 * pass over the headers.
 *
 * Deliberately not supported: bare LF or bare CR line endings, obs-fold,
 * whitespace before the colon, transfer codings other than chunked, and
 * HTTP versions other than 1.0 and 1.1.  These are the usual request
 * smuggling levers and no client we serve needs them.
 *
 * The chunked decoder is a separate byte-level state machine (the chunk
 * size line is short; payload runs are handed out in bulk).
 */
#include "h1.h"

#include <limits.h>
#include <string.h>

/* ---- character classes ---- */

/* tchar (RFC 9110 5.6.2) */
/* clang-format off */
static const unsigned char tok_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* field-value bytes: HTAB, SP, VCHAR, obs-text.  Excludes NUL, CR, LF, the
 * other controls and DEL. */
static const unsigned char fld_tab[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes: visible ASCII only.  Stricter than some servers
 * (no raw UTF-8), which is what a gateway in front of APIs wants. */
static const unsigned char tgt_tab[256] = {
    ['!' ... '~'] = 1,
};

/* Host value bytes: reg-name, IP literals and a port (RFC 3986): no '/',
 * '?', '#', '@', whitespace or quotes, so a Host can't smuggle a path or
 * userinfo into whatever is built from it. */
static const unsigned char host_tab[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1,
    ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
    [':'] = 1, ['['] = 1, [']'] = 1,
};

/* hex digit value + 1 (0 means "not hex") */
static const unsigned char hex_tab[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};
/* clang-format on */

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Does the word hold a byte < 0x20 or == 0x7f?  Exact as a yes/no answer
 * (borrows can only blur *which* byte), which is all the skip loops need. */
static inline uint64_t swar_ctl(uint64_t x)
{
    uint64_t d = x ^ (ONES * 0x7f);
    return ((x - ONES * 0x20) & ~x & HIGHS) | ((d - ONES) & ~d & HIGHS);
}

/* Skip field-value bytes; returns the first byte that is not one, or end. */
static inline const unsigned char *scan_field(const unsigned char *p, const unsigned char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (swar_ctl(x))
                break;
            p += 8;
        }
        /* A control byte is within the next 8 (often an HTAB, which is
         * allowed): finish this word with the table. */
        const unsigned char *stop = end - p >= 8 ? p + 8 : end;
        while (p < stop && fld_tab[*p])
            p++;
        if (p < stop || p == end)
            return p;
    }
}

/* Skip request-target bytes up to stop.  Unlike field values, every byte
 * that stops the word test is also a byte that ends the target, so the
 * table only has to finish the word the test stopped in. */
static inline const unsigned char *scan_target(const unsigned char *p, const unsigned char *stop)
{
    while (stop - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        /* SP and below, DEL, and >= 0x80 all end the fast path */
        if ((x & HIGHS) | ((x - ONES * 0x21) & ~x & HIGHS) | swar_ctl(x))
            break;
        p += 8;
    }
    while (p < stop && tgt_tab[*p])
        p++;
    return p;
}

static inline unsigned char lower(unsigned char c)
{
    return (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

/* Case-insensitive equality of a view and a lowercase literal of known
 * length. */
static bool eq_lit(const char *s, size_t len, const char *lit, size_t llen)
{
    if (len != llen)
        return false;
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)s[i]) != (unsigned char)lit[i])
            return false;
    return true;
}
#define EQ_LIT(s, len, lit) eq_lit((s), (len), lit, sizeof(lit) - 1)

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Comma-separated list iteration (RFC 9110 5.6.1).  Yields each element
 * with OWS trimmed; empty elements are yielded too, so framing headers can
 * refuse them. */
struct list_it {
    const char *p, *end;
    bool done;
};

static bool list_next(struct list_it *it, const char **s, size_t *len)
{
    if (it->done)
        return false;
    const char *a = it->p, *b = it->p;
    while (b < it->end && *b != ',')
        b++;
    if (b == it->end)
        it->done = true;
    else
        it->p = b + 1;
    const char *e = b;
    while (a < e && is_ows((unsigned char)*a))
        a++;
    while (e > a && is_ows((unsigned char)e[-1]))
        e--;
    *s = a;
    *len = (size_t)(e - a);
    return true;
}

/* ---- head parser ---- */

enum {
    S_BEGIN = 0, /* fresh: pick request or response start */
    S_REQ_START, /* before the request line: empty lines or the method */
    S_REQ_START_LF,
    S_METHOD,
    S_TARGET,
    S_VERSION, /* "HTTP/x.y", shared by both start lines */
    S_REQ_CR,
    S_LINE_LF, /* LF ending the start line */
    S_RSP_SP,  /* SP after the response version */
    S_STATUS,
    S_STATUS_END,
    S_REASON,
    S_HDR_START,
    S_NAME,
    S_OWS,
    S_VALUE,
    S_HDR_LF,
    S_END_LF,
};

/* h1_parse_state.flags */
#define PF_RESPONSE 0x01u
#define PF_CL 0x02u
#define PF_TE 0x04u
#define PF_CHUNKED 0x08u
#define PF_HOST 0x10u

/* Status/reason carried out of the helpers that apply header semantics. */
struct verdict {
    int status;
    const char *why;
};

#define MAX_CONTENT_LENGTH ((uint64_t)INT64_MAX)

/* Content-Length: 1*DIGIT, possibly repeated as a list or over several
 * fields, all with the same value (RFC 9110 8.6).  Anything else is 400. */
static bool apply_content_length(struct h1_message *m, struct h1_str v, struct verdict *vd)
{
    struct h1_parse_state *ps = &m->parse;
    struct list_it it = {v.p, v.p + v.len, false};
    const char *s;
    size_t n;
    if (ps->flags & PF_TE) {
        *vd = (struct verdict){400, "Content-Length with Transfer-Encoding"};
        return false;
    }
    while (list_next(&it, &s, &n)) {
        uint64_t val = 0;
        if (n == 0) {
            *vd = (struct verdict){400, "empty Content-Length"};
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned d = (unsigned char)s[i] - (unsigned)'0';
            if (d > 9) {
                *vd = (struct verdict){400, "malformed Content-Length"};
                return false;
            }
            /* check before multiplying so the value can never wrap */
            if (val > (MAX_CONTENT_LENGTH - d) / 10) {
                *vd = (struct verdict){400, "Content-Length too large"};
                return false;
            }
            val = val * 10 + d;
        }
        if ((ps->flags & PF_CL) && val != m->content_length) {
            *vd = (struct verdict){400, "conflicting Content-Length"};
            return false;
        }
        m->content_length = val;
        ps->flags |= PF_CL;
    }
    return true;
}

/* Transfer-Encoding: we decode only chunked, which must come last and
 * once.  An unknown coding is 501 (RFC 9112 6.1); chunked twice or not
 * last is 400 because the body length could not be determined. */
static bool apply_transfer_encoding(struct h1_message *m, struct h1_str v, struct verdict *vd)
{
    struct h1_parse_state *ps = &m->parse;
    struct list_it it = {v.p, v.p + v.len, false};
    const char *s;
    size_t n;
    if (m->minor_version == 0) {
        /* RFC 9112 6.1: HTTP/1.0 framing with TE is faulty by definition */
        *vd = (struct verdict){400, "Transfer-Encoding in HTTP/1.0"};
        return false;
    }
    if (ps->flags & PF_CL) {
        *vd = (struct verdict){400, "Content-Length with Transfer-Encoding"};
        return false;
    }
    ps->flags |= PF_TE;
    while (list_next(&it, &s, &n)) {
        if (n == 0) {
            *vd = (struct verdict){400, "empty transfer coding"};
            return false;
        }
        if (EQ_LIT(s, n, "chunked")) {
            if (ps->flags & PF_CHUNKED) {
                *vd = (struct verdict){400, "chunked applied twice"};
                return false;
            }
            ps->flags |= PF_CHUNKED;
            continue;
        }
        if (ps->flags & PF_CHUNKED) {
            *vd = (struct verdict){400, "chunked is not the final coding"};
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!tok_tab[(unsigned char)s[i]]) {
                *vd = (struct verdict){400, "malformed transfer coding"};
                return false;
            }
        }
        *vd = (struct verdict){501, "unsupported transfer coding"};
        return false;
    }
    return true;
}

static void apply_connection(struct h1_message *m, struct h1_str v)
{
    struct list_it it = {v.p, v.p + v.len, false};
    const char *s;
    size_t n;
    while (list_next(&it, &s, &n)) {
        if (EQ_LIT(s, n, "close"))
            m->conn_flags |= H1_CONN_CLOSE;
        else if (EQ_LIT(s, n, "keep-alive"))
            m->conn_flags |= H1_CONN_KEEP_ALIVE;
        else if (EQ_LIT(s, n, "upgrade"))
            m->conn_flags |= H1_CONN_UPGRADE;
    }
}

/* Apply the semantics of the header just completed.  Dispatch on length
 * first: most headers are rejected after one integer compare. */
static bool apply_header(struct h1_message *m, const struct h1_header *h, struct verdict *vd)
{
    struct h1_parse_state *ps = &m->parse;
    bool response = ps->flags & PF_RESPONSE;
    const char *n = h->name.p;

    switch (h->name.len) {
    case 4:
        if (!response && EQ_LIT(n, 4, "host")) {
            if (ps->flags & PF_HOST) {
                *vd = (struct verdict){400, "more than one Host"};
                return false;
            }
            for (size_t i = 0; i < h->value.len; i++) {
                if (!host_tab[(unsigned char)h->value.p[i]]) {
                    *vd = (struct verdict){400, "malformed Host"};
                    return false;
                }
            }
            ps->flags |= PF_HOST;
            m->host = h->value;
        }
        break;
    case 6:
        if (!response && EQ_LIT(n, 6, "expect")) {
            struct list_it it = {h->value.p, h->value.p + h->value.len, false};
            const char *s;
            size_t len;
            while (list_next(&it, &s, &len)) {
                if (!EQ_LIT(s, len, "100-continue")) {
                    *vd = (struct verdict){417, "unsupported expectation"};
                    return false;
                }
            }
            /* HTTP/1.0 clients can't be sent a 100 (RFC 9110 10.1.1) */
            if (m->minor_version == 1)
                m->expect_continue = true;
        }
        break;
    case 10:
        if (EQ_LIT(n, 10, "connection"))
            apply_connection(m, h->value);
        break;
    case 14:
        if (EQ_LIT(n, 14, "content-length"))
            return apply_content_length(m, h->value, vd);
        break;
    case 17:
        if (EQ_LIT(n, 17, "transfer-encoding"))
            return apply_transfer_encoding(m, h->value, vd);
        break;
    default: break;
    }
    return true;
}

bool h1_authority_form(const char *target, size_t len)
{
    const unsigned char *t = (const unsigned char *)target;
    size_t colon = len;
    while (colon > 0 && t[colon - 1] != ':')
        colon--;
    if (colon < 2 || colon == len || len - colon > 5)
        return false;
    for (size_t i = colon; i < len; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    for (size_t i = 0; i < colon - 1; i++)
        if (!host_tab[t[i]])
            return false;
    return true;
}

/* Is the request-target form allowed for this method (RFC 9112 3.2)? */
static bool target_form_ok(struct h1_str method, const unsigned char *t, size_t len)
{
    bool connect = method.len == 7 && memcmp(method.p, "CONNECT", 7) == 0;
    if (connect)
        return h1_authority_form((const char *)t, len);
    if (t[0] == '/')
        return true;
    if (len == 1 && t[0] == '*')
        return method.len == 7 && memcmp(method.p, "OPTIONS", 7) == 0;
    /* absolute-form: scheme ":" ... */
    if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = t[i];
        if (c == ':')
            return i + 1 < len;
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
            return false;
    }
    return false;
}

static void reset_message(struct h1_message *m)
{
    struct h1_header *headers = m->headers;
    size_t cap = m->headers_cap;
    memset(m, 0, sizeof *m);
    m->headers = headers;
    m->headers_cap = cap;
}

void h1_message_init(struct h1_message *msg, struct h1_header *headers, size_t cap)
{
    memset(msg, 0, sizeof *msg);
    msg->headers = headers;
    msg->headers_cap = cap;
}

/* Final semantics once the empty line has arrived. */
static bool finish_head(struct h1_message *m, bool head_request, struct verdict *vd)
{
    uint16_t f = m->parse.flags;
    bool close = m->conn_flags & H1_CONN_CLOSE;
    bool ka = m->minor_version == 1 ? !close : ((m->conn_flags & H1_CONN_KEEP_ALIVE) && !close);

    if (f & PF_RESPONSE) {
        if (head_request || (m->status >= 100 && m->status < 200) || m->status == 204 || m->status == 304)
            m->framing = H1_BODY_NONE;
        else if (f & PF_TE)
            m->framing = H1_BODY_CHUNKED;
        else if (f & PF_CL)
            m->framing = H1_BODY_LENGTH;
        else {
            /* the body ends when the server closes: nothing can follow */
            m->framing = H1_BODY_CLOSE;
            ka = false;
        }
    } else {
        if (m->minor_version == 1 && !(f & PF_HOST)) {
            *vd = (struct verdict){400, "missing Host"};
            return false;
        }
        if (f & PF_TE)
            m->framing = H1_BODY_CHUNKED;
        else if (f & PF_CL)
            m->framing = H1_BODY_LENGTH;
        else
            m->framing = H1_BODY_NONE;
    }
    if (m->framing != H1_BODY_LENGTH)
        m->content_length = 0;
    m->keep_alive = ka;
    return true;
}

static size_t lim_or(size_t v, size_t dflt)
{
    return v ? v : dflt;
}

#define FAIL(st, msg)                                                                                                  \
    do {                                                                                                               \
        vd = (struct verdict){(st), (msg)};                                                                            \
        goto fail;                                                                                                     \
    } while (0)

static int parse_head(const char *buf, size_t len, struct h1_message *m, const struct h1_limits *lim, bool response,
                      bool head_request)
{
    struct h1_parse_state *ps = &m->parse;
    size_t max_hdr = H1_DEFAULT_MAX_HEADER_BYTES, max_fields = H1_DEFAULT_MAX_HEADERS, max_uri = H1_DEFAULT_MAX_URI;
    struct verdict vd;

    if (lim) {
        max_hdr = lim_or(lim->max_header_bytes, max_hdr);
        max_fields = lim_or(lim->max_headers, max_fields);
        max_uri = lim_or(lim->max_uri, max_uri);
    }
    if (max_hdr > INT_MAX) /* the consumed count is returned as an int */
        max_hdr = INT_MAX;
    if (max_fields > m->headers_cap)
        max_fields = m->headers_cap;
    if (len == 0)
        return RP_AGAIN;

    /* Resume only on the very bytes we stopped in; anything else restarts. */
    if (ps->state == S_BEGIN || ps->base != buf || ps->off > len || !(ps->flags & PF_RESPONSE) != !response) {
        reset_message(m);
        ps->flags = response ? PF_RESPONSE : 0;
        ps->state = response ? S_VERSION : S_REQ_START;
    }

    const unsigned char *b = (const unsigned char *)buf;
    const unsigned char *p = b + ps->off;
    const unsigned char *end = b + RP_MIN(len, max_hdr);
    size_t mark = ps->mark;
    unsigned state = ps->state;
    struct h1_header *h;

    for (;;) {
        if (p == end)
            goto more;
        switch (state) {
        case S_REQ_START:
            if (*p == '\r') {
                p++;
                state = S_REQ_START_LF;
                continue;
            }
            if (!tok_tab[*p])
                FAIL(400, "malformed request line");
            mark = (size_t)(p - b);
            state = S_METHOD;
            /* fall through */
        case S_METHOD:
            while (p < end && tok_tab[*p])
                p++;
            if (p == end)
                goto more;
            if (*p != ' ')
                FAIL(400, "malformed method");
            m->method = (struct h1_str){buf + mark, (size_t)(p - b) - mark};
            p++;
            mark = (size_t)(p - b);
            state = S_TARGET;
            continue;
        case S_REQ_START_LF:
            if (*p++ != '\n')
                FAIL(400, "bare CR");
            if ((size_t)(p - b) / 2 > H1_MAX_EMPTY_LINES)
                FAIL(400, "too many empty lines before request");
            state = S_REQ_START;
            continue;
        case S_TARGET: {
            /* invariant: target length so far <= max_uri */
            size_t room = max_uri - ((size_t)(p - b) - mark);
            const unsigned char *stop = (size_t)(end - p) > room ? p + room : end;
            p = scan_target(p, stop);
            if (p == end)
                goto more;
            if (p == stop && tgt_tab[*p])
                FAIL(414, "request-target too long");
            if (*p != ' ')
                FAIL(400, "malformed request-target");
            size_t tlen = (size_t)(p - b) - mark;
            if (tlen == 0 || !target_form_ok(m->method, b + mark, tlen))
                FAIL(400, "malformed request-target");
            m->target = (struct h1_str){buf + mark, tlen};
            p++;
            mark = (size_t)(p - b);
            state = S_VERSION;
            continue;
        }
        case S_VERSION: {
            /* "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3) */
            size_t i = (size_t)(p - b) - mark;
            if (i == 0 && end - p >= 8 && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '1' || p[7] == '0')) {
                p += 8; /* the usual case, in one compare */
            } else {
                for (; i < 8; i++, p++) {
                    if (p == end)
                        goto more;
                    unsigned char c = *p;
                    bool ok = i < 5 ? c == (unsigned char)"HTTP/"[i] : i == 6 ? c == '.' : (c >= '0' && c <= '9');
                    if (!ok)
                        FAIL(400, "malformed HTTP version");
                }
                if (b[mark + 5] != '1' || b[mark + 7] > '1')
                    FAIL(505, "unsupported HTTP version");
            }
            m->minor_version = b[mark + 7] - '0';
            state = response ? S_RSP_SP : S_REQ_CR;
            continue;
        }
        case S_REQ_CR:
            if (*p++ != '\r')
                FAIL(400, "malformed request line");
            state = S_LINE_LF;
            continue;
        case S_LINE_LF:
            if (*p++ != '\n')
                FAIL(400, "bare CR");
            state = S_HDR_START;
            continue;
        case S_RSP_SP:
            if (*p++ != ' ')
                FAIL(502, "malformed status line");
            mark = (size_t)(p - b);
            state = S_STATUS;
            continue;
        case S_STATUS: {
            size_t i = (size_t)(p - b) - mark;
            for (; i < 3; i++, p++) {
                if (p == end)
                    goto more;
                if (*p < '0' || *p > '9')
                    FAIL(502, "malformed status code");
            }
            int st = (b[mark] - '0') * 100 + (b[mark + 1] - '0') * 10 + (b[mark + 2] - '0');
            if (st < 100 || st > 599)
                FAIL(502, "status code out of range");
            m->status = st;
            state = S_STATUS_END;
            continue;
        }
        case S_STATUS_END:
            /* SP reason, or (tolerated) no reason at all */
            if (*p == '\r') {
                m->reason = (struct h1_str){buf + (p - b), 0};
                p++;
                state = S_LINE_LF;
                continue;
            }
            if (*p++ != ' ')
                FAIL(502, "malformed status line");
            mark = (size_t)(p - b);
            state = S_REASON;
            continue;
        case S_REASON:
            p = scan_field(p, end);
            if (p == end)
                goto more;
            if (*p != '\r')
                FAIL(502, "malformed reason phrase");
            m->reason = (struct h1_str){buf + mark, (size_t)(p - b) - mark};
            p++;
            state = S_LINE_LF;
            continue;
        case S_HDR_START:
            if (*p == '\r') {
                p++;
                state = S_END_LF;
                continue;
            }
            if (!tok_tab[*p]) {
                if (is_ows(*p))
                    FAIL(400, "obsolete line folding");
                FAIL(400, "malformed header name");
            }
            if (m->num_headers >= max_fields)
                FAIL(431, "too many header fields");
            mark = (size_t)(p - b);
            state = S_NAME;
            /* fall through */
        case S_NAME:
            while (p < end && tok_tab[*p])
                p++;
            if (p == end)
                goto more;
            if (*p != ':') {
                if (is_ows(*p))
                    FAIL(400, "whitespace before colon");
                FAIL(400, "malformed header name");
            }
            m->headers[m->num_headers].name = (struct h1_str){buf + mark, (size_t)(p - b) - mark};
            p++;
            state = S_OWS;
            continue;
        case S_OWS:
            while (p < end && is_ows(*p))
                p++;
            if (p == end)
                goto more;
            mark = (size_t)(p - b);
            state = S_VALUE;
            /* fall through */
        case S_VALUE: {
            p = scan_field(p, end);
            if (p == end)
                goto more;
            if (*p != '\r') {
                if (*p == '\n')
                    FAIL(400, "bare LF");
                FAIL(400, "control character in header value");
            }
            const unsigned char *e = p;
            while (e > b + mark && is_ows(e[-1]))
                e--;
            m->headers[m->num_headers].value = (struct h1_str){buf + mark, (size_t)(e - b) - mark};
            p++;
            state = S_HDR_LF;
            continue;
        }
        case S_HDR_LF:
            if (*p++ != '\n')
                FAIL(400, "bare CR");
            h = &m->headers[m->num_headers++];
            if (!apply_header(m, h, &vd))
                goto fail;
            state = S_HDR_START;
            continue;
        case S_END_LF:
            if (*p++ != '\n')
                FAIL(400, "bare CR");
            if (!finish_head(m, head_request, &vd))
                goto fail;
            ps->state = S_BEGIN; /* a later call starts over */
            return (int)(p - b);
        default: FAIL(400, "parser state corrupted");
        }
    }

more:
    if ((size_t)(end - b) >= max_hdr) {
        /* max_hdr bytes without the end of the section: refuse now rather
         * than let a slow peer hold the buffer */
        FAIL(431, "header section too large");
    }
    ps->base = buf;
    ps->off = (size_t)(p - b);
    ps->mark = mark;
    ps->state = (uint16_t)state;
    return RP_AGAIN;

fail:
    m->error_status = response ? 502 : vd.status;
    m->error = vd.why;
    ps->state = S_BEGIN;
    return RP_ERR;
}

int h1_parse_request(const char *buf, size_t len, struct h1_message *msg, const struct h1_limits *lim)
{
    return parse_head(buf, len, msg, lim, false, false);
}

int h1_parse_response(const char *buf, size_t len, struct h1_message *msg, const struct h1_limits *lim,
                      bool head_request)
{
    return parse_head(buf, len, msg, lim, true, head_request);
}

/* ---- chunked transfer coding ---- */

enum {
    C_SIZE0 = 0, /* first byte of a chunk-size line */
    C_SIZE,
    C_WS_SEMI, /* BWS after the size or a value: only ';' may follow */
    C_EXT_PRE, /* after ';': BWS then ext-name */
    C_EXT_NAME,
    C_EXT_POST,   /* BWS after ext-name: '=' or ';' */
    C_EXT_PREVAL, /* after '=': BWS then token or quoted-string */
    C_EXT_TOKV,
    C_EXT_QSTR,
    C_EXT_QESC,
    C_EXT_AFTERQ,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TR_START,
    C_TR_NAME,
    C_TR_VALUE,
    C_TR_LF,
    C_END_LF,
    C_DONE,
    C_ERROR,
};

#define H1_CHUNK_MAX ((uint64_t)1 << 62)
#define H1_CHUNK_MAX_DIGITS 16

void h1_chunked_init(struct h1_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->max_line = 4096;
    c->max_trailer = 16 * 1024;
}

bool h1_chunked_at_boundary(const struct h1_chunked *c)
{
    return c->state == C_SIZE0 && !c->done;
}

ssize_t h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len, h1_data_cb on_data, void *arg)
{
    const unsigned char *b = (const unsigned char *)buf;
    const unsigned char *p = b, *end = b + len;
    const char *why;

    if (c->state == C_ERROR)
        return RP_ERR;
    if (c->state == C_DONE || len == 0)
        return 0;

    while (p < end) {
        unsigned char ch = *p;
        int st = c->state;

        if (st == C_DATA) {
            /* the hot path: hand out as much payload as we have */
            size_t n = (size_t)(end - p);
            if ((uint64_t)n > c->chunk_left)
                n = (size_t)c->chunk_left;
            if (on_data)
                on_data(arg, (const char *)p, n);
            p += n;
            c->chunk_left -= n;
            c->payload_total += n;
            if (c->chunk_left == 0)
                c->state = C_DATA_CR;
            continue;
        }
        if (st >= C_SIZE0 && st <= C_EXT_AFTERQ && ch != '\r' && ++c->line_len > c->max_line) {
            why = "chunk size line too long";
            goto fail;
        }
        if (st >= C_TR_START && st <= C_END_LF && ++c->trailer_bytes > c->max_trailer) {
            why = "trailer section too large";
            goto fail;
        }
        p++;
        switch (st) {
        case C_SIZE0:
            if (!hex_tab[ch]) {
                why = "bad chunk size";
                goto fail;
            }
            c->chunk_left = hex_tab[ch] - 1u;
            c->state = C_SIZE;
            break;
        case C_SIZE:
            if (hex_tab[ch]) {
                /* the line starts with the digits, so line_len counts them */
                if (c->line_len > H1_CHUNK_MAX_DIGITS) {
                    why = "chunk size has too many digits";
                    goto fail;
                }
                c->chunk_left = c->chunk_left * 16 + (hex_tab[ch] - 1u);
                if (c->chunk_left > H1_CHUNK_MAX) {
                    why = "chunk size too large";
                    goto fail;
                }
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == ';') {
                c->state = C_EXT_PRE;
            } else if (is_ows(ch)) {
                c->state = C_WS_SEMI;
            } else {
                why = "bad chunk size";
                goto fail;
            }
            break;
        case C_WS_SEMI:
            if (ch == ';')
                c->state = C_EXT_PRE;
            else if (!is_ows(ch)) {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_PRE:
            if (tok_tab[ch])
                c->state = C_EXT_NAME;
            else if (!is_ows(ch)) {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_NAME:
            if (tok_tab[ch])
                break;
            if (ch == '\r')
                c->state = C_SIZE_LF;
            else if (ch == ';')
                c->state = C_EXT_PRE;
            else if (ch == '=')
                c->state = C_EXT_PREVAL;
            else if (is_ows(ch))
                c->state = C_EXT_POST;
            else {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_POST:
            if (ch == '=')
                c->state = C_EXT_PREVAL;
            else if (ch == ';')
                c->state = C_EXT_PRE;
            else if (!is_ows(ch)) {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_PREVAL:
            if (tok_tab[ch])
                c->state = C_EXT_TOKV;
            else if (ch == '"')
                c->state = C_EXT_QSTR;
            else if (!is_ows(ch)) {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_TOKV:
            if (tok_tab[ch])
                break;
            if (ch == '\r')
                c->state = C_SIZE_LF;
            else if (ch == ';')
                c->state = C_EXT_PRE;
            else if (is_ows(ch))
                c->state = C_WS_SEMI;
            else {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_QSTR:
            /* qdtext: HTAB, SP, VCHAR except '"' and '\', obs-text */
            if (ch == '"')
                c->state = C_EXT_AFTERQ;
            else if (ch == '\\')
                c->state = C_EXT_QESC;
            else if (!fld_tab[ch]) {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_EXT_QESC:
            if (!fld_tab[ch]) {
                why = "malformed chunk extension";
                goto fail;
            }
            c->state = C_EXT_QSTR;
            break;
        case C_EXT_AFTERQ:
            if (ch == '\r')
                c->state = C_SIZE_LF;
            else if (ch == ';')
                c->state = C_EXT_PRE;
            else if (is_ows(ch))
                c->state = C_WS_SEMI;
            else {
                why = "malformed chunk extension";
                goto fail;
            }
            break;
        case C_SIZE_LF:
            if (ch != '\n') {
                why = "missing LF after chunk size";
                goto fail;
            }
            c->line_len = 0;
            c->state = c->chunk_left ? C_DATA : C_TR_START;
            break;
        case C_DATA_CR:
            if (ch != '\r') {
                why = "missing CRLF after chunk data";
                goto fail;
            }
            c->state = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (ch != '\n') {
                why = "missing CRLF after chunk data";
                goto fail;
            }
            c->state = C_SIZE0;
            break;
        case C_TR_START:
            if (ch == '\r')
                c->state = C_END_LF;
            else if (tok_tab[ch])
                c->state = C_TR_NAME;
            else {
                why = is_ows(ch) ? "obsolete line folding in trailer" : "malformed trailer field";
                goto fail;
            }
            break;
        case C_TR_NAME:
            if (ch == ':')
                c->state = C_TR_VALUE;
            else if (!tok_tab[ch]) {
                why = "malformed trailer field";
                goto fail;
            }
            break;
        case C_TR_VALUE:
            if (ch == '\r')
                c->state = C_TR_LF;
            else if (!fld_tab[ch]) {
                why = "control character in trailer field";
                goto fail;
            }
            break;
        case C_TR_LF:
            if (ch != '\n') {
                why = "bare CR in trailer";
                goto fail;
            }
            c->state = C_TR_START;
            break;
        case C_END_LF:
            if (ch != '\n') {
                why = "bare CR after trailer section";
                goto fail;
            }
            c->state = C_DONE;
            c->done = true;
            return (ssize_t)(p - b);
        default: why = "decoder state corrupted"; goto fail;
        }
    }
    return (ssize_t)(p - b);

fail:
    c->state = C_ERROR;
    c->error = why;
    return RP_ERR;
}

/* ---- helpers ---- */

const struct h1_header *h1_find_header(const struct h1_message *msg, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < msg->num_headers; i++) {
        const struct h1_header *h = &msg->headers[i];
        if (h->name.len == nlen && rp_strieq(h->name.p, h->name.len, name))
            return h;
    }
    return NULL;
}

bool h1_list_has_token(struct h1_str value, const char *token)
{
    if (!value.p)
        return false;
    struct list_it it = {value.p, value.p + value.len, false};
    const char *s;
    size_t n;
    while (list_next(&it, &s, &n))
        if (n > 0 && rp_strieq(s, n, token))
            return true;
    return false;
}

bool h1_is_hop_by_hop(struct h1_str name)
{
    switch (name.len) {
    case 2: return EQ_LIT(name.p, name.len, "te");
    case 7: return EQ_LIT(name.p, name.len, "trailer") || EQ_LIT(name.p, name.len, "upgrade");
    case 10: return EQ_LIT(name.p, name.len, "connection") || EQ_LIT(name.p, name.len, "keep-alive");
    case 16: return EQ_LIT(name.p, name.len, "proxy-connection");
    case 17: return EQ_LIT(name.p, name.len, "transfer-encoding");
    case 18: return EQ_LIT(name.p, name.len, "proxy-authenticate");
    case 19: return EQ_LIT(name.p, name.len, "proxy-authorization");
    default: return false;
    }
}

const char *h1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Append n bytes at *o if they fit below e. */
static bool put(char **o, char *e, const char *s, size_t n)
{
    if ((size_t)(e - *o) < n)
        return false;
    memcpy(*o, s, n);
    *o += n;
    return true;
}

ssize_t h1_write_response_head(char *out, size_t cap, int status, const char *reason, const struct h1_header *headers,
                               size_t n)
{
    char *o = out, *e = out + cap;
    char code[4];

    if (status < 100 || status > 999)
        return RP_ERR;
    if (!reason)
        reason = h1_reason(status);
    code[0] = (char)('0' + status / 100);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    code[3] = ' ';
    size_t rlen = strlen(reason);
    for (size_t i = 0; i < rlen; i++)
        if (!fld_tab[(unsigned char)reason[i]])
            return RP_ERR;
    if (!put(&o, e, "HTTP/1.1 ", 9) || !put(&o, e, code, 4) || !put(&o, e, reason, rlen) || !put(&o, e, "\r\n", 2))
        return RP_ERR;
    for (size_t i = 0; i < n; i++) {
        const struct h1_header *h = &headers[i];
        if (h->name.len == 0)
            return RP_ERR;
        for (size_t j = 0; j < h->name.len; j++)
            if (!tok_tab[(unsigned char)h->name.p[j]])
                return RP_ERR;
        for (size_t j = 0; j < h->value.len; j++)
            if (!fld_tab[(unsigned char)h->value.p[j]])
                return RP_ERR;
        if (!put(&o, e, h->name.p, h->name.len) || !put(&o, e, ": ", 2) || !put(&o, e, h->value.p, h->value.len) ||
            !put(&o, e, "\r\n", 2))
            return RP_ERR;
    }
    if (!put(&o, e, "\r\n", 2))
        return RP_ERR;
    return (ssize_t)(o - out);
}

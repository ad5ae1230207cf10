/*
 * uri.c — canonical request paths (see uri.h for the rules).
 *
 * Two passes over the target, no scratch memory:
 *
 *  1. Forward: split the target into authority, path and query, and check
 *     every byte and escape.  Errors are found here, so the reason reported
 *     is the one for the leftmost offending byte, and the second pass can
 *     assume well-formed input.
 *  2. Backward over the path segments.  Resolving ".." from the right needs
 *     only a counter: a ".." asks to drop the next normal segment on its
 *     left; a normal segment met while the counter is positive is dropped.
 *     This matches the usual left-to-right stack (each ".." cancels the
 *     nearest kept segment before it, like matching parentheses), and a
 *     count left over at the root is exactly the "climbs above the root"
 *     case.  Kept segments are written right-aligned at the end of out,
 *     then moved to the front.  Only segments of the final result are ever
 *     written, which is what makes the 414 decision exact for any cap
 *     (a forward writer would need room for segments that a later ".."
 *     removes).
 */
#include "uri.h"

#include <string.h>

#include "h1.h"

#define C_UNRES 0x01 /* unreserved: ALPHA DIGIT - . _ ~ */
#define C_PCHAR 0x02 /* allowed raw in a path segment: unreserved, sub-delims, ':' '@' */
#define C_QUERY 0x04 /* allowed raw in the query: visible ASCII except '#' */
#define C_HOST 0x08  /* allowed in an authority: reg-name, IP literal, port */

/* clang-format off */
static const unsigned char cls[256] = {
    ['A' ... 'Z'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['a' ... 'z'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['0' ... '9'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['-'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['.'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['_'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    ['~'] = C_UNRES | C_PCHAR | C_QUERY | C_HOST,
    /* sub-delims */
    ['!'] = C_PCHAR | C_QUERY | C_HOST,
    ['$'] = C_PCHAR | C_QUERY | C_HOST,
    ['&'] = C_PCHAR | C_QUERY | C_HOST,
    ['\''] = C_PCHAR | C_QUERY | C_HOST,
    ['('] = C_PCHAR | C_QUERY | C_HOST,
    [')'] = C_PCHAR | C_QUERY | C_HOST,
    ['*'] = C_PCHAR | C_QUERY | C_HOST,
    ['+'] = C_PCHAR | C_QUERY | C_HOST,
    [','] = C_PCHAR | C_QUERY | C_HOST,
    [';'] = C_PCHAR | C_QUERY | C_HOST,
    ['='] = C_PCHAR | C_QUERY | C_HOST,
    [':'] = C_PCHAR | C_QUERY | C_HOST,
    /* '@' is a pchar, but in an authority it introduces userinfo */
    ['@'] = C_PCHAR | C_QUERY,
    /* '%' is checked as an escape in paths; kept as is in authority and query */
    ['%'] = C_QUERY | C_HOST,
    ['['] = C_QUERY | C_HOST,
    [']'] = C_QUERY | C_HOST,
    ['/'] = C_QUERY,
    ['?'] = C_QUERY,
    ['"'] = C_QUERY, ['<'] = C_QUERY, ['>'] = C_QUERY, ['\\'] = C_QUERY,
    ['^'] = C_QUERY, ['`'] = C_QUERY, ['{'] = C_QUERY, ['|'] = C_QUERY, ['}'] = C_QUERY,
};
/* clang-format on */

static const char hexup[] = "0123456789ABCDEF";

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Scheme prefix "http://" or "https://" (any case): its length, or 0. */
static size_t scheme_len(const char *t, size_t len)
{
    if (len >= 7 && rp_strieq(t, 7, "http://"))
        return 7;
    if (len >= 8 && rp_strieq(t, 8, "https://"))
        return 8;
    return 0;
}

/* Canonical byte count of a segment (validated by pass 1) and whether it
 * is "." (1) or ".." (2) once decoded; 0 for any other segment. */
static size_t seg_measure(const unsigned char *s, size_t n, int *dots)
{
    size_t out = 0, ndots = 0;
    bool only_dots = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '%') {
            c = (unsigned char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
            out += (cls[c] & C_UNRES) ? 1 : 3;
        } else {
            out++;
        }
        if (c == '.')
            ndots++;
        else
            only_dots = false;
    }
    *dots = (only_dots && ndots <= 2) ? (int)ndots : 0;
    return out;
}

/* Write the canonical form of a validated segment at dst. */
static void seg_write(char *dst, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c != '%') {
            *dst++ = (char)c;
            continue;
        }
        c = (unsigned char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
        i += 2;
        if (cls[c] & C_UNRES) {
            *dst++ = (char)c;
        } else {
            *dst++ = '%';
            *dst++ = hexup[c >> 4];
            *dst++ = hexup[c & 15];
        }
    }
}

static ssize_t fail(struct uri_info *info, char *out, size_t cap, ssize_t rc, int status, const char *why)
{
    if (cap > 0)
        out[0] = '\0';
    if (info) {
        *info = (struct uri_info){0};
        info->status = status;
        info->error = why;
    }
    return rc;
}

ssize_t uri_normalize_path(const char *target, size_t len, char *out, size_t cap, struct uri_info *info)
{
    const unsigned char *t = (const unsigned char *)target;
    size_t path = 0, path_end, auth = 0, auth_len = 0;
    bool absolute = false;

    /* ---- pass 1: forms, validation, query ---- */
    if (len == 0)
        return fail(info, out, cap, URI_ERR_BAD, 400, "empty request-target");
    if (t[0] != '/') {
        size_t sl = scheme_len(target, len);
        if (sl == 0) {
            if (len == 1 && t[0] == '*')
                return fail(info, out, cap, URI_ERR_NOPATH, 0, "asterisk-form request-target");
            if (h1_authority_form((const char *)t, len))
                return fail(info, out, cap, URI_ERR_NOPATH, 0, "authority-form request-target");
            return fail(info, out, cap, URI_ERR_BAD, 400, "unsupported request-target");
        }
        absolute = true;
        auth = sl;
        path = sl;
        while (path < len && t[path] != '/' && t[path] != '?' && t[path] != '#') {
            if (!(cls[t[path]] & C_HOST))
                return fail(info, out, cap, URI_ERR_BAD, 400,
                            t[path] == '@' ? "userinfo in request-target" : "invalid authority");
            path++;
        }
        auth_len = path - auth;
        if (auth_len == 0)
            return fail(info, out, cap, URI_ERR_BAD, 400, "empty authority");
    }
    path_end = path;
    while (path_end < len && t[path_end] != '?') {
        unsigned char c = t[path_end];
        if (c == '%') {
            if (len - path_end < 3 || hexval(t[path_end + 1]) < 0 || hexval(t[path_end + 2]) < 0)
                return fail(info, out, cap, URI_ERR_BAD, 400, "malformed percent-escape");
            int v = hexval(t[path_end + 1]) << 4 | hexval(t[path_end + 2]);
            if (v == 0)
                return fail(info, out, cap, URI_ERR_BAD, 400, "encoded NUL in path");
            /* Many servers (and the web frameworks model servers are built
             * on) decode "%2F" into a separator before routing, so an
             * encoded slash would be one path to rampart and another to
             * the upstream: a way around routes and token budgets.  "%5C"
             * likewise, for servers that read '\' as '/'. */
            if (v == '/' || v == '\\')
                return fail(info, out, cap, URI_ERR_BAD, 400, "encoded slash in path");
            path_end += 3;
            continue;
        }
        if (c == '#')
            return fail(info, out, cap, URI_ERR_BAD, 400, "fragment in request-target");
        if (c != '/' && !(cls[c] & C_PCHAR))
            return fail(info, out, cap, URI_ERR_BAD, 400, "invalid character in path");
        path_end++;
    }
    for (size_t i = path_end + 1; i < len; i++) {
        if (t[i] == '#')
            return fail(info, out, cap, URI_ERR_BAD, 400, "fragment in request-target");
        if (!(cls[t[i]] & C_QUERY))
            return fail(info, out, cap, URI_ERR_BAD, 400, "invalid character in query");
    }

    /* ---- pass 2: segments, right to left ---- */
    /* A trailing slash survives when the path ends with "/", "." or "..". */
    bool trailing = false;
    if (path_end > path) {
        size_t s = path_end;
        int dots;
        while (t[s - 1] != '/')
            s--;
        seg_measure(t + s, path_end - s, &dots);
        trailing = s == path_end || dots > 0;
    }
    if (cap == 0)
        return fail(info, out, cap, URI_ERR_TOOLONG, 414, "path too long");
    size_t end = cap - 1, w = end, skip = 0;
    bool too_long = false, any = false;
    size_t e = path_end;
    /* The path starts with '/' (origin-form by its first byte, absolute-
     * form because the authority stops at '/'), or is empty. */
    while (e > path) {
        size_t s = e;
        int dots;
        while (t[s - 1] != '/')
            s--;
        size_t n = seg_measure(t + s, e - s, &dots);
        if (e == s || dots == 1) {
            /* empty segment or ".": nothing */
        } else if (dots == 2) {
            skip++;
        } else if (skip > 0) {
            skip--;
        } else if (!too_long) {
            size_t need = n + 1 + (!any && trailing);
            if (need > w) {
                too_long = true;
            } else {
                if (!any && trailing)
                    out[--w] = '/';
                w -= n;
                seg_write(out + w, t + s, e - s);
                out[--w] = '/';
                any = true;
            }
        }
        e = s - 1;
    }
    if (skip > 0)
        return fail(info, out, cap, URI_ERR_BAD, 400, "path climbs above the root");
    if (!any && !too_long) {
        if (w < 1)
            too_long = true;
        else
            out[--w] = '/';
    }
    if (too_long)
        return fail(info, out, cap, URI_ERR_TOOLONG, 414, "path too long");

    size_t n = end - w;
    memmove(out, out + w, n);
    out[n] = '\0';
    if (info) {
        *info = (struct uri_info){0};
        if (path_end < len) {
            info->query = target + path_end + 1;
            info->query_len = len - path_end - 1;
        }
        if (absolute) {
            info->authority = target + auth;
            info->authority_len = auth_len;
        }
        info->absolute = absolute;
        info->changed = n != path_end - path || memcmp(out, target + path, n) != 0;
    }
    return (ssize_t)n;
}

bool uri_path_eq_endpoint(const char *norm, size_t len, const char *endpoint)
{
    size_t elen = strlen(endpoint);
    if (len == elen)
        return rp_strieq(norm, len, endpoint);
    return elen > 0 && endpoint[elen - 1] != '/' && len == elen + 1 && norm[elen] == '/' &&
           rp_strieq(norm, elen, endpoint);
}

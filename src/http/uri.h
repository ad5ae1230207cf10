/*
 * uri.h — one canonical form for the path of a request-target.
 *
 * Every decision the gateway takes from a path (route, model-API detection,
 * quotas, logs) must be taken on the same bytes, and those bytes must be
 * what the upstream will understand the path to be.  Comparing the raw
 * target lets "/v1/chat/%63ompletions", "/v1//chat/completions",
 * "/v1/./chat/completions" reach the generation endpoint without being
 * recognised as such.  uri_normalize_path() computes the canonical path
 * once per request; the caller uses only its result.
 *
 * Pure: no I/O, no allocation, no global state.
 *
 * Canonical form (RFC 3986 6.2.2, with empty segments merged):
 *   - origin-form "/p?q" and absolute-form "http[s]://authority/p?q"
 *     (scheme case-insensitive; RFC 9112 3.2.2: an empty path is "/";
 *     for OPTIONS, RFC 9112 3.2.4 makes it "*" instead: the caller knows
 *     the method and handles that case);
 *   - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are
 *     decoded; every other escape is kept with uppercase hex digits;
 *   - empty segments are dropped ("//" -> "/"), before dot segments are
 *     resolved, so "/a//../b" is "/b" (what a server merging slashes sees);
 *   - "." and ".." segments are removed (RFC 3986 5.2.4), after decoding,
 *     so "%2e%2E" is "..";
 *   - a trailing slash is kept: "/a/" and "/a" may be different resources,
 *     and the normaliser must not change what a path means.  A path whose
 *     last segment is "." or ".." ends in "/" ("/a/b/.." -> "/a/").
 * The result starts with "/", has no "//", no "." or ".." segment and no
 * escape of an unreserved character or with lowercase hex; normalising it
 * again gives the same bytes.
 *
 * Refused (URI_ERR_BAD, answer 400):
 *   - an empty target; a scheme other than http/https; "http:" without
 *     "//"; an empty authority, userinfo ("@") or other non-host bytes in
 *     the authority (RFC 9110 4.2.4 says to treat userinfo as an error);
 *   - '#' anywhere: a request-target carries no fragment (RFC 9112 3.2);
 *   - a malformed escape ("%", "%4", "%zz") or "%00" in the path;
 *   - an encoded slash or backslash ("%2F", "%5C") in the path: many
 *     servers decode it into a separator before routing, so it would name
 *     one resource to rampart and another to the upstream;
 *   - a path byte that is not a pchar or '/' (RFC 3986 3.3): controls,
 *     space, bytes >= 0x80, and the visible characters " < > [ \ ] ^ ` {
 *     | }.  The h1 parser already refuses the invisible ones; this module
 *     does not rely on it.  The backslash matters most: some servers read
 *     it as '/';
 *   - ".." that climbs above the root ("/../a", "/a/../../b"): never
 *     legitimate, and a client sending it is probing (nginx answers 400
 *     too);
 *   - in the query, only '#', controls, space and bytes >= 0x80.  The
 *     query is otherwise neither validated nor changed: it is forwarded
 *     as the client wrote it, and real clients put '[', ']' or '|' there.
 *
 * Sizes: the canonical path is never longer than the target, so a cap of
 * len + 1 always suffices.  With a smaller cap the result is exact: the
 * call fails with URI_ERR_TOOLONG if and only if the canonical path (plus
 * its NUL) does not fit, whatever the intermediate segments removed by
 * "..".  A malformed target is URI_ERR_BAD even when it is also too long.
 */
#ifndef RP_URI_H
#define RP_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* Return codes besides the length.  URI_ERR_BAD is RP_ERR; the others are
 * below RP_AGAIN so that no value can be taken for "partial input". */
#define URI_ERR_BAD RP_ERR   /* malformed or refused target: 400 */
#define URI_ERR_TOOLONG (-3) /* canonical path does not fit in cap: 414 */
#define URI_ERR_NOPATH                                                                                                 \
    (-4) /* asterisk-form "*" or authority-form
                                * "host:port": a valid target with no path;
                                * only OPTIONS and CONNECT use them, and the
                                * caller decides what to answer */

struct uri_info {
    /* Query after '?' (not including it), a view into the target; NULL
     * when the target has no '?' ("/p?" gives an empty, non-NULL query). */
    const char *query;
    size_t query_len;
    /* absolute-form only: "host[:port]" (a view into the target), which
     * RFC 9112 3.2.2 says replaces the Host header; NULL otherwise. */
    const char *authority;
    size_t authority_len;
    bool absolute; /* the target was in absolute-form */
    bool changed;  /* the result differs from the raw path bytes (the
                        path part of an absolute-form target; an empty one
                        counts as changed) */
    /* On a negative return: the HTTP status to answer (400, 414; 0 for
     * URI_ERR_NOPATH) and a static reason for logs. */
    int status;
    const char *error;
};

/* Normalise the path of the request-target target[0..len) into out[cap],
 * NUL-terminated.  Returns the length of the canonical path (>= 1, always
 * < cap), or URI_ERR_BAD, URI_ERR_TOOLONG or URI_ERR_NOPATH (see above).
 * On error out holds "" when cap > 0.  info may be NULL; when not, it is
 * filled on every return. */
ssize_t uri_normalize_path(const char *target, size_t len, char *out, size_t cap, struct uri_info *info);

/* Is the canonical path norm[0..len) the API endpoint "endpoint" (a
 * canonical path without a trailing slash, e.g. "/v1/chat/completions")?
 * Accepts one trailing slash and ignores ASCII case.
 *
 * Why not simply compare the canonical path: the normaliser has to keep
 * "/v1/chat/completions/" as written (it is another resource for RFC 3986,
 * and routing and logs must see what was sent), but common model servers
 * answer it as the endpoint itself (or redirect to it), and some match
 * paths case-insensitively.  Detection is a security check: treating a
 * variant as the generation endpoint only costs reading its body, missing
 * one lets it bypass the token budget.  So this test errs towards "yes". */
bool uri_path_eq_endpoint(const char *norm, size_t len, const char *endpoint);

#endif

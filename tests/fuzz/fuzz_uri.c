/*
 * fuzz_uri.c — the path normaliser on arbitrary bytes.  Each input is
 * normalised with a buffer that always suffices (len + 1) and with a small
 * one.  Checked: the roomy call never reports "too long"; the small one
 * agrees with it (same error, same path, or "too long" exactly when the
 * path does not fit); a result is NUL-terminated inside cap, starts with
 * '/', has no "//", no "." or ".." segment, only well-formed uppercase
 * escapes of non-unreserved bytes, and is a fixed point (normalising it
 * again gives the same bytes, unchanged).  Views in info stay inside the
 * input.
 */
#include <stdlib.h>
#include <string.h>

#include "uri.h"

#define SMALL_CAP 24

static bool unreserved(unsigned v)
{
    return (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-' || v == '.' ||
           v == '_' || v == '~';
}

static int hexup(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lowercase hex is a failure too */
}

static bool dot_seg(const char *s, size_t n, size_t i)
{
    /* s[i] == '/': is the segment after it "." or ".."? */
    size_t j = i + 1;
    while (j < n && s[j] == '.')
        j++;
    return (j == i + 2 || j == i + 3) && (j == n || s[j] == '/');
}

static void check_output(const char *o, ssize_t n, size_t cap)
{
    if (n < 1 || (size_t)n >= cap || o[n] != '\0' || strlen(o) != (size_t)n || o[0] != '/' || strstr(o, "//"))
        abort();
    for (ssize_t i = 0; i < n; i++) {
        if (o[i] == '/' && dot_seg(o, (size_t)n, (size_t)i))
            abort();
        if (o[i] == '%') {
            if (i + 2 >= n)
                abort();
            int h = hexup(o[i + 1]), l = hexup(o[i + 2]);
            if (h < 0 || l < 0 || unreserved((unsigned)(h << 4 | l)) || (h | l) == 0)
                abort();
        }
    }
}

static void check_info(const struct uri_info *in, const char *t, size_t len)
{
    if (in->query && (in->query < t || in->query + in->query_len > t + len || in->query[-1] != '?'))
        abort();
    if (in->authority && (in->authority < t || in->authority + in->authority_len > t + len || !in->absolute))
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *t = (const char *)data;
    char *big = malloc(size + 1), *again = malloc(size + 1);
    char small[SMALL_CAP];
    struct uri_info ib, is, ia;

    ssize_t nb = uri_normalize_path(t, size, big, size + 1, &ib);
    if (nb == URI_ERR_TOOLONG || (nb < 0 && nb != URI_ERR_BAD && nb != URI_ERR_NOPATH))
        abort();
    if (nb < 0 && (big[0] != '\0' || !ib.error))
        abort();

    ssize_t ns = uri_normalize_path(t, size, small, sizeof small, &is);
    if (nb >= 0 && (size_t)nb + 1 > sizeof small) {
        if (ns != URI_ERR_TOOLONG || is.status != 414)
            abort();
    } else if (ns != nb || (ns >= 0 && strcmp(small, big) != 0)) {
        abort();
    }

    if (nb >= 0) {
        check_output(big, nb, size + 1);
        check_info(&ib, t, size);
        ssize_t na = uri_normalize_path(big, (size_t)nb, again, size + 1, &ia);
        if (na != nb || strcmp(again, big) != 0 || ia.changed || ia.query || ia.absolute)
            abort();
        /* the endpoint helper: exact path, with or without one slash */
        if (!uri_path_eq_endpoint(big, (size_t)nb, big))
            abort();
        if (nb > 1 && big[nb - 1] == '/') {
            again[nb - 1] = '\0'; /* the path without its trailing slash */
            if (!uri_path_eq_endpoint(big, (size_t)nb, again))
                abort();
        }
    }
    free(big);
    free(again);
    return 0;
}

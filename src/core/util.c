/*
 * util.c — clocks, error logging, checked allocation and small helpers.
 * See util.h for the return-code convention used across the tree.
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "rampart";

uint64_t rp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t rp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rp_log_set_prog(const char *prog)
{
    log_prog = prog;
}

static void log_v(const char *level, int err, const char *fmt, va_list ap)
{
    char msg[1024];
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (err)
        fprintf(stderr, "%s %s[%d] %s: %s: %s\n", ts, log_prog, (int)getpid(), level, msg, strerror(err));
    else
        fprintf(stderr, "%s %s[%d] %s: %s\n", ts, log_prog, (int)getpid(), level, msg);
}

void rp_log_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v("error", 0, fmt, ap);
    va_end(ap);
}

void rp_log_errno(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v("error", err, fmt, ap);
    va_end(ap);
}

void rp_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v("info", 0, fmt, ap);
    va_end(ap);
}

static void oom(void)
{
    fputs("rampart: out of memory\n", stderr);
    abort();
}

void *rp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *rp_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *rp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

char *rp_xstrdup(const char *s)
{
    return rp_xstrndup(s, strlen(s));
}

char *rp_xstrndup(const char *s, size_t n)
{
    char *p = rp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int rp_snprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

bool rp_strieq(const char *s, size_t len, const char *lit)
{
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)lit[i];
        if (b == '\0')
            return false;
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return false;
    }
    return lit[len] == '\0';
}

uint64_t rp_hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t rand_state = 0x9e3779b97f4a7c15ull;

void rp_rand_seed(uint64_t seed)
{
    rand_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t rp_rand64(void)
{
    uint64_t x = rand_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rand_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double rp_rand01(void)
{
    return (double)(rp_rand64() >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- UTF-8 ---- */

int rp_utf8_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len == 0)
        return RP_ERR;
    uint32_t c = p[0];
    size_t n;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000, c &= 0x07;
    else
        return RP_ERR; /* continuation byte, 0xc0/0xc1 (overlong), 0xf5.. */
    if (len < n)
        return RP_ERR;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return RP_ERR;
        c = c << 6 | (p[i] & 0x3f);
    }
    /* Overlong forms would let one character hide behind another
     * encoding; surrogates are not characters. */
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return RP_ERR;
    *cp = c;
    return (int)n;
}

size_t rp_utf8_prefix(const char *s, size_t max_bytes)
{
    size_t i = 0;
    while (i < max_bytes && s[i]) {
        size_t avail = max_bytes - i;
        /* Never look past a NUL, even inside a truncated sequence. */
        size_t k = 0;
        while (k < avail && k < 4 && s[i + k])
            k++;
        uint32_t cp;
        int n = rp_utf8_next(s + i, k, &cp);
        if (n < 0)
            break;
        i += (size_t)n;
    }
    return i;
}

bool rp_utf8_valid(const char *s, size_t len, size_t *bad_at)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = rp_utf8_next(s + i, len - i, &cp);
        if (n < 0) {
            if (bad_at)
                *bad_at = i;
            return false;
        }
        i += (size_t)n;
    }
    return true;
}

/* ---- invariants ---- */

static uint64_t assert_failures;

#if defined(__SANITIZE_ADDRESS__)
#define RP_ASSERT_ABORT_DEFAULT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RP_ASSERT_ABORT_DEFAULT 1
#endif
#endif
#ifndef RP_ASSERT_ABORT_DEFAULT
#define RP_ASSERT_ABORT_DEFAULT 0
#endif

void rp_assert_fail(const char *cond, const char *file, int line)
{
    assert_failures++;
    rp_log_err("assertion failed: %s (%s:%d)", cond, file, line);
    const char *mode = getenv("RAMPART_ASSERT");
    bool do_abort = RP_ASSERT_ABORT_DEFAULT;
    if (mode)
        do_abort = strcmp(mode, "abort") == 0;
    if (do_abort)
        abort();
}

uint64_t rp_assert_failures(void)
{
    return assert_failures;
}

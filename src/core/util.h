/*
 * util.h — conventions shared by every rampart module.
 *
 * Return codes (one convention for the whole tree, written down once):
 *   RP_OK    (0)   success
 *   RP_ERR   (-1)  error; the callee has logged or recorded why
 *   RP_AGAIN (-2)  not yet: partial input, or the operation would block
 * Parsers return the number of bytes consumed (> 0) instead of RP_OK.
 *
 * Clocks: rp_now_us() is monotonic and is what every timeout, rate and
 * latency uses; rp_wall_ms() is the wall clock, used only for timestamps that
 * leave the process (logs, status history).  Pure-logic modules (admission,
 * status, canary) take "now" as an argument so their tests can drive a
 * deterministic clock.
 */
#ifndef RP_UTIL_H
#define RP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#define RP_OK 0
#define RP_ERR (-1)
#define RP_AGAIN (-2)

#define RP_VERSION "0.1.0"

#define RP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RP_UNUSED(x) ((void)(x))

/* Invariants.  RP_ASSERT(cond) states what must always hold (a counter
 * that cannot go below zero, a state that cannot be reached).  When it
 * does not hold, rp_assert_fail() logs "assertion failed: COND (FILE:LINE)"
 * and then:
 *   - aborts in sanitizer builds, and wherever the environment says
 *     RAMPART_ASSERT=abort (the unit and integration tests set it), so a
 *     broken invariant fails the test that broke it;
 *   - otherwise counts it (rp_assert_failures(), shown in /metrics) and
 *     returns, so a production gateway fails safe and keeps serving: the
 *     statement after RP_ASSERT still handles the impossible case.
 * The condition is always evaluated once: no side effects in it. */
#define RP_ASSERT(cond) ((cond) ? (void)0 : rp_assert_fail(#cond, __FILE__, __LINE__))
void rp_assert_fail(const char *cond, const char *file, int line);
uint64_t rp_assert_failures(void);

/* Monotonic microseconds since an arbitrary origin. */
uint64_t rp_now_us(void);
/* Wall-clock milliseconds since the Unix epoch. */
int64_t rp_wall_ms(void);

/* Error log to stderr, prefixed with the program name and time.  The errno
 * variant appends strerror(err) so a message always names its cause. */
void rp_log_set_prog(const char *prog);
void rp_log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rp_log_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rp_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that aborts on exhaustion: a gateway that cannot allocate a few
 * hundred bytes cannot do anything useful, and checking every call site
 * would hide the real bounds (which are enforced before allocating). */
void *rp_xmalloc(size_t n);
void *rp_xcalloc(size_t n, size_t size);
void *rp_xrealloc(void *p, size_t n);
char *rp_xstrdup(const char *s);
char *rp_xstrndup(const char *s, size_t n);

/* Bounded formatting into buf[cap]; returns bytes written (excluding NUL),
 * or -1 when the result was truncated. */
int rp_snprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ASCII case-insensitive comparison of a length-delimited string with a
 * NUL-terminated literal. */
bool rp_strieq(const char *s, size_t len, const char *lit);

/* 64-bit FNV-1a's step (xor the byte, multiply by the FNV prime) from the
 * offset basis 1469598103934665603, not FNV's published 14695981039346656037
 * (a digit short, since the first release).  The values must never change:
 * published status component ids, metrics label hashing and the canary's
 * per-upstream seed derive from them.  Not a keyed hash: tenant keys are
 * hashed with a salt by tenant.c. */
uint64_t rp_hash64(const void *data, size_t len);

/* UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF).  rp_utf8_next decodes the sequence at s[0..len): its length
 * (1..4) with *cp set, or RP_ERR when the bytes there are not a complete,
 * valid sequence. */
int rp_utf8_next(const char *s, size_t len, uint32_t *cp);
/* Length of the longest prefix of s, at most max_bytes long and stopping
 * at a NUL, made of whole valid characters: the place to cut a string
 * that must stay valid UTF-8 (printf "%.*s" with this length). */
size_t rp_utf8_prefix(const char *s, size_t max_bytes);
/* Whether s[0..len) is valid UTF-8; when not, *bad_at (may be NULL) is the
 * offset of the first byte that does not start a valid sequence. */
bool rp_utf8_valid(const char *s, size_t len, size_t *bad_at);

/* Small fast PRNG (xorshift64*), seeded per process; deterministic when
 * seeded explicitly. */
void rp_rand_seed(uint64_t seed);
uint64_t rp_rand64(void);
double rp_rand01(void); /* [0,1) */

#endif

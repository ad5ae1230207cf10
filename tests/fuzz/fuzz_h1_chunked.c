/*
 * fuzz_h1_chunked.c — the chunked decoder on arbitrary bytes.  The input is
 * fed whole and then in two pieces split at a point derived from the data;
 * verdict, bytes consumed and the decoded payload (as a hash) must agree.
 */
#include <stdlib.h>

#include "h1.h"

static void sum(void *arg, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *(uint64_t *)arg = (*(uint64_t *)arg ^ (unsigned char)d[i]) * 1099511628211ull;
}

static ssize_t run(const char *b, size_t n, size_t cut, uint64_t *h, struct h1_chunked *c)
{
    h1_chunked_init(c);
    c->max_line = 64; /* small bounds so the fuzzer reaches them */
    c->max_trailer = 256;
    ssize_t r1 = h1_chunked_feed(c, b, cut, sum, h);
    if (r1 < 0 || c->done)
        return r1;
    if ((size_t)r1 != cut)
        abort(); /* must consume all of a piece unless done */
    ssize_t r2 = h1_chunked_feed(c, b + cut, n - cut, sum, h);
    return r2 < 0 ? r2 : r1 + r2;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct h1_chunked a, b;
    uint64_t ha = 0, hb = 0;
    size_t cut = size ? (data[0] * 257u + data[size / 2]) % (size + 1) : 0;
    ssize_t ra = run((const char *)data, size, size, &ha, &a);
    ssize_t rb = run((const char *)data, size, cut, &hb, &b);
    if (ra != rb || ha != hb || a.done != b.done || a.payload_total != b.payload_total ||
        (ra >= 0 && (size_t)ra > size))
        abort();
    return 0;
}

/*
 * fuzz_llmreq.c — model-API awareness on hostile bytes: the request-body
 * parser (llmreq_parse) and the response usage scanner (llmreq_scan_*).
 *
 * Input: byte 0 picks the scanner mode (SSE or JSON) and bytes 1-2 pick
 * two cut points; the rest is the body.  The body goes whole into one
 * scanner and in three pieces into another: the scanner promises the same
 * result for any split, so every result field must agree, or we abort.
 */
#include <stdlib.h>
#include <string.h>

#include "llmreq.h"
#include "util.h"

static void scan(struct llmreq_scan *s, bool sse, const char *b, size_t n, size_t c1, size_t c2)
{
    llmreq_scan_init(s, sse);
    llmreq_scan_feed(s, b, c1);
    llmreq_scan_feed(s, b + c1, c2 - c1);
    llmreq_scan_feed(s, b + c2, n - c2);
    llmreq_scan_finish(s);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 3)
        return 0;
    bool sse = data[0] & 1;
    const char *body = (const char *)data + 3;
    size_t n = size - 3;
    size_t c1 = n ? (size_t)data[1] * n / 255 : 0, c2 = n ? (size_t)data[2] * n / 255 : 0;
    if (c1 > c2) {
        size_t t = c1;
        c1 = c2;
        c2 = t;
    }

    struct llmreq_info info;
    memset(&info, 0xa5, sizeof info); /* the parser must set what it reports */
    int rc = llmreq_parse(body, n, &info);
    if (rc == RP_OK) {
        if (memchr(info.model, '\0', sizeof info.model) == NULL || info.n == 0 || info.max_tokens < -1)
            abort();
    } else if (rc != RP_ERR || !info.error) {
        abort();
    }

    struct llmreq_scan a, b;
    scan(&a, sse, body, n, n, n);
    scan(&b, sse, body, n, c1, c2);
    if (a.has_usage != b.has_usage || a.prompt_tokens != b.prompt_tokens ||
        a.completion_tokens != b.completion_tokens || a.total_tokens != b.total_tokens ||
        a.data_events != b.data_events || a.content_events != b.content_events || a.content_chars != b.content_chars ||
        a.done != b.done)
        abort();
    uint64_t pa, ca, pb, cb;
    bool ua = llmreq_scan_usage(&a, 10, &pa, &ca), ub = llmreq_scan_usage(&b, 10, &pb, &cb);
    if (ua != ub || pa != pb || ca != cb)
        abort();
    return 0;
}

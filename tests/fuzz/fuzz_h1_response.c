/*
 * fuzz_h1_response.c — the response head parser (h1_parse_response) on
 * arbitrary bytes, for a response to GET and to HEAD.  Each input is
 * parsed whole, then resumed: first a prefix cut at a point derived from
 * the data, then the whole input with the same message (the RP_AGAIN
 * path the proxy takes as upstream bytes trickle in).  Verdict, framing,
 * status and header views must agree, and views must lie inside the head.
 */
#include <stdlib.h>
#include <string.h>

#include "h1.h"

/* small limits so inputs of fuzzer size reach the 431 paths */
static const struct h1_limits lim = {512, 16, 128};

static void same(const struct h1_message *a, const struct h1_message *b, int r, const char *buf, size_t size)
{
    if (r > 0 && (size_t)r > size)
        abort();
    if (a->num_headers != b->num_headers)
        abort();
    if (r == RP_ERR && (a->error_status != b->error_status || strcmp(a->error, b->error) != 0))
        abort();
    if (r <= 0)
        return;
    if (a->status != b->status || a->status < 100 || a->status > 599 || a->framing != b->framing ||
        a->content_length != b->content_length || a->keep_alive != b->keep_alive ||
        a->minor_version != b->minor_version || a->conn_flags != b->conn_flags)
        abort();
    if (a->reason.len && (a->reason.p < buf || a->reason.p + a->reason.len > buf + r))
        abort();
    for (size_t i = 0; i < a->num_headers; i++) {
        const struct h1_header *x = &a->headers[i], *y = &b->headers[i];
        if (x->name.p < buf || x->name.p + x->name.len > buf + r || x->value.p + x->value.len > buf + r)
            abort();
        if (x->name.p != y->name.p || x->name.len != y->name.len || x->value.p != y->value.p ||
            x->value.len != y->value.len)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct h1_header h1[16], h2[16];
    struct h1_message a, b;
    const char *buf = (const char *)data;
    size_t cut = size ? (data[0] * 131u + data[size - 1]) % size : 0;

    for (int head = 0; head < 2; head++) {
        h1_message_init(&a, h1, 16);
        h1_message_init(&b, h2, 16);
        int whole = h1_parse_response(buf, size, &a, &lim, head);
        int split = h1_parse_response(buf, cut, &b, &lim, head);
        if (split == RP_AGAIN)
            split = h1_parse_response(buf, size, &b, &lim, head);
        if (split != whole)
            abort();
        same(&a, &b, whole, buf, size);
        /* Responses to HEAD, 1xx, 204 and 304 never have a body, whatever
         * they announce (h1.h). */
        if (whole > 0 && (head || a.status < 200 || a.status == 204 || a.status == 304) && a.framing != H1_BODY_NONE)
            abort();
    }
    return 0;
}

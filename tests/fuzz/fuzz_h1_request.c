/*
 * fuzz_h1_request.c — the head parser on arbitrary bytes, as a request and
 * as a response.  Each input is parsed whole, then again in two calls split
 * at a point derived from the data (the resume path); both must agree, and
 * a success must consume at most the input with views inside it.
 */
#include <stdlib.h>
#include <string.h>

#include "h1.h"

/* small limits so inputs of fuzzer size reach the 414/431 paths */
static const struct h1_limits lim = {512, 16, 128};

static int parse(const char *b, size_t n, struct h1_message *m, int mode)
{
    return mode ? h1_parse_response(b, n, m, &lim, mode == 2) : h1_parse_request(b, n, m, &lim);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct h1_header h1[16], h2[16];
    struct h1_message a, b;
    const char *buf = (const char *)data;
    size_t cut = size ? (data[0] * 131u + data[size - 1]) % size : 0;
    /* mode: request, response, response to HEAD */
    for (int mode = 0; mode < 3; mode++) {
        h1_message_init(&a, h1, 16);
        h1_message_init(&b, h2, 16);
        int whole = parse(buf, size, &a, mode);
        int split = parse(buf, cut, &b, mode);
        if (split == RP_AGAIN)
            split = parse(buf, size, &b, mode);
        if (split != whole || (whole > 0 && (size_t)whole > size) || a.num_headers != b.num_headers ||
            (whole == RP_ERR && (a.error_status != b.error_status || strcmp(a.error, b.error) != 0)) ||
            (whole > 0 && (a.framing != b.framing || a.content_length != b.content_length ||
                           a.keep_alive != b.keep_alive || a.expect_continue != b.expect_continue)))
            abort();
        for (size_t i = 0; whole > 0 && i < a.num_headers; i++)
            if (a.headers[i].value.p + a.headers[i].value.len > buf + whole ||
                a.headers[i].value.p != b.headers[i].value.p || a.headers[i].value.len != b.headers[i].value.len)
                abort();
    }
    return 0;
}

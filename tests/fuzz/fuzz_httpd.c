/*
 * fuzz_httpd.c — the embedded server's request path (httpd.c: head
 * parsing with resume, Content-Length and chunked bodies, 100-continue,
 * limits, pipelining, the target split into path and query, keep-alive
 * and close decisions, response framing) through httpd_serve_bytes(),
 * which runs exactly that path with the socket replaced by memory.
 *
 * Byte 0 and 1 pick two cut points; the rest is what one client sends.
 * It is served as one read and again as three reads: the responses must be
 * the same bytes (Date and 100 Continue aside, see normalise()), since TCP
 * may split a stream anywhere.
 * The handler routes the way the admin and status handlers do (by path
 * prefix, query parsing) and echoes what it saw, so any difference in the
 * views it got shows up in the output.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "util.h"

static void handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    (void)arg;
    const struct h1_message *m = req->msg;
    if (req->path.len > 0 && req->path.p[0] != '/' && req->path.p[0] != '*')
        abort(); /* after the absolute-form split every path is origin-form */
    if (req->query.p < req->path.p + req->path.len)
        abort();
    if (httpd_path_is(req, "/healthz")) {
        resp->content_type = "text/plain";
        sbuf_adds(&resp->body, "ok\n");
        return;
    }
    if (req->path.len >= 5 && memcmp(req->path.p, "/api/", 5) == 0) {
        if (m->method.len != 3 || memcmp(m->method.p, "GET", 3) != 0) {
            httpd_add_header(resp, "Allow", "GET");
            httpd_json_error_code(resp, 405, "invalid_request_error", "method_not_allowed", "use GET");
            return;
        }
        /* key=value pairs of the query, as the status API reads them */
        const char *q = req->query.p, *end = q + req->query.len;
        while (q < end) {
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *e = amp ? amp : end;
            const char *eq = memchr(q, '=', (size_t)(e - q));
            sbuf_printf(&resp->body, "[%.*s]", (int)((eq ? eq : e) - q), q);
            q = e + (amp ? 1 : 0);
        }
    }
    if (req->path.len == 7 && memcmp(req->path.p, "/status", 7) == 0)
        resp->status = 204;
    sbuf_printf(&resp->body, "%.*s %.*s ?%.*s %zu:", (int)m->method.len, m->method.p, (int)req->path.len, req->path.p,
                (int)req->query.len, req->query.p, req->body_len);
    sbuf_add(&resp->body, req->body, req->body_len);
    for (size_t i = 0; i < m->num_headers; i++)
        sbuf_printf(&resp->body, "|%.*s", (int)m->headers[i].name.len, m->headers[i].name.p);
}

/* What legitimately depends on timing or on where reads split: the Date
 * line, and the interim 100 Continue (sent only when no body byte has
 * arrived with the head). */
static void cut_out(struct sbuf *s, char *p, size_t n)
{
    memmove(p, p + n, s->len - (size_t)(p - s->data) - n);
    s->len -= n;
}

static void normalise(struct sbuf *s)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    char *p;
    /* memmem, not strstr: echoed bodies may hold NUL bytes */
    while (s->len && (p = memmem(s->data, s->len, "\r\nDate: ", 8)) != NULL) {
        char *e = memmem(p + 2, s->len - (size_t)(p + 2 - s->data), "\r\n", 2);
        if (!e)
            break;
        cut_out(s, p, (size_t)(e - p));
    }
    while (s->len && (p = memmem(s->data, s->len, cont, sizeof cont - 1)) != NULL)
        cut_out(s, p, sizeof cont - 1);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;
    size_t c1 = (size_t)data[0] * n / 255, c2 = (size_t)data[1] * n / 255;
    if (c1 > c2) {
        size_t t = c1;
        c1 = c2;
        c2 = t;
    }
    /* small bounds so fuzzer-sized inputs reach 413 */
    struct httpd_opts o = {.max_body = 256};
    struct sbuf a, b;
    sbuf_init(&a, 64u << 20);
    sbuf_init(&b, 64u << 20);

    const char *p1[] = {in};
    size_t l1[] = {n};
    size_t ra = httpd_serve_bytes("fuzz", handler, NULL, &o, p1, l1, 1, &a);
    const char *p3[] = {in, in + c1, in + c2};
    size_t l3[] = {c1, c2 - c1, n - c2};
    size_t rb = httpd_serve_bytes("fuzz", handler, NULL, &o, p3, l3, 3, &b);
    normalise(&a);
    normalise(&b);
    if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
        abort();
    sbuf_free(&a);
    sbuf_free(&b);
    return 0;
}

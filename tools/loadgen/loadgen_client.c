/*
 * loadgen_client.c — one request's life, from launch to its result row.
 *
 * Each request is its own little state machine on the loop: connect (or
 * take a kept-alive connection that is still alive), write the request,
 * parse the response head with the gateway's own h1.c, then the body by
 * its framing (length, chunked, close-delimited).  A text/event-stream
 * body is scanned line by line for SSE events: the first event with
 * non-empty delta content is the time to first token, the usage chunk (or
 * the count of deltas) the tokens.  A non-streaming answer's first body
 * byte is its TTFT and its JSON usage its tokens.  The give-up timer is the
 * user closing the tab: the socket is simply closed.
 *
 * Latencies are measured from the scheduled arrival, not from when the
 * request happened to be sent, so a lagging generator cannot hide queueing
 * ("coordinated omission").
 */
#include "loadgen.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

struct lg_result *lg_results;
size_t lg_nresults;
static size_t cap_results;

enum lg_rstate { RS_CONNECTING, RS_WRITING, RS_HEAD, RS_BODY };

struct lg_req {
    size_t idx; /* into lg_results */
    int fd;
    enum lg_rstate state;
    uint64_t sched_abs; /* absolute monotonic scheduled time */
    struct buf in;
    struct sbuf out;
    size_t out_off;
    struct h1_message msg;
    struct h1_header hdrs[LG_RESP_HEADERS];
    enum h1_framing framing;
    uint64_t body_left;
    struct h1_chunked ch;
    bool sse;
    bool done_seen;
    bool keep_alive;
    bool reused; /* sent on a kept-alive connection */
    bool first_body;
    int deltas;
    int usage_tokens; /* -1 unknown */
    struct sbuf line; /* partial SSE line */
    struct sbuf json; /* non-streaming 2xx body */
    struct ev_timer giveup;
    struct lg_req *prev, *next; /* in-flight list */
};

struct lg_idle {
    int fd;
    struct lg_idle *prev, *next;
};

static void req_finish(struct lg_req *r, enum lg_err err, int err_errno);

static struct lg_result *res_of(const struct lg_req *r)
{
    return &lg_results[r->idx];
}

static int64_t since_sched(const struct lg_req *r)
{
    return (int64_t)(ev_now(lg.loop) - r->sched_abs);
}

static struct lg_result *result_new(void)
{
    if (lg_nresults == cap_results) {
        cap_results = cap_results ? cap_results * 2 : 4096;
        lg_results = rp_xrealloc(lg_results, cap_results * sizeof *lg_results);
    }
    struct lg_result *x = &lg_results[lg_nresults++];
    memset(x, 0, sizeof *x);
    x->hdr_us = x->ttft_us = x->total_us = -1;
    return x;
}

static void build_request(struct lg_req *r, const struct lg_result *x)
{
    struct sbuf *o = &r->out;
    char body[512 + 64];
    int blen = 0;
    if (!lg_cfg.get) {
        /* The prompt is spliced in separately below: it can be long. */
        blen = rp_snprintf(body, sizeof body, "\"max_tokens\":%d,\"stream\":%s%s}", x->max_tokens,
                           lg_cfg.stream ? "true" : "false",
                           lg_cfg.stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    }
    int plen = lg_range_pick(&lg_cfg.prompt_chars);
    char head_model[300];
    int hm = rp_snprintf(head_model, sizeof head_model,
                         "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"", lg_cfg.model);
    static const char mid[] = "\"}],";
    size_t content_len = lg_cfg.get ? 0 : (size_t)hm + (size_t)plen + sizeof mid - 1 + (size_t)blen;

    sbuf_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\n", lg_cfg.get ? "GET" : "POST", lg_cfg.path, lg_cfg.host_hdr);
    if (!lg_cfg.get) {
        sbuf_adds(o, "Content-Type: application/json\r\n");
        sbuf_printf(o, "Content-Length: %zu\r\n", content_len);
        if (lg_cfg.stream)
            sbuf_adds(o, "Accept: text/event-stream\r\n");
    }
    if (x->tenant >= 0)
        sbuf_printf(o, "Authorization: Bearer %s\r\n", lg_cfg.tenants.name[x->tenant]);
    if (x->prio >= 0)
        sbuf_printf(o, "x-priority: %s\r\n", lg_cfg.prios.name[x->prio]);
    for (size_t i = 0; i < lg_cfg.nextra; i++)
        sbuf_printf(o, "%s\r\n", lg_cfg.extra_headers[i]);
    if (!lg_cfg.keepalive)
        sbuf_adds(o, "Connection: close\r\n");
    sbuf_adds(o, "\r\n");
    if (!lg_cfg.get) {
        sbuf_add(o, head_model, (size_t)hm);
        sbuf_add(o, lg.prompt, (size_t)plen);
        sbuf_add(o, mid, sizeof mid - 1);
        sbuf_add(o, body, (size_t)blen);
    }
}

static void req_set_mask(struct lg_req *r, uint32_t mask)
{
    ev_mod(lg.loop, r->fd, mask);
}

/* ---- SSE ---- */

static void sse_line(struct lg_req *r, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return;
    p += 5;
    n -= 5;
    if (n && *p == ' ') {
        p++;
        n--;
    }
    const char *end = p + n;
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        r->done_seen = true;
        return;
    }
    /* A light scan instead of a JSON parse per event: an OpenAI chunk is
     * {"choices":[{"delta":{"content":"..."}}]} and a non-empty content
     * string is one token. */
    const char *d = memmem(p, n, "\"delta\"", 7);
    if (d) {
        const char *q = memmem(d, (size_t)(end - d), "\"content\":", 10);
        if (q) {
            q += 10;
            while (q < end && *q == ' ')
                q++;
            if (q + 1 < end && q[0] == '"' && q[1] != '"') {
                r->deltas++;
                struct lg_result *x = res_of(r);
                if (x->ttft_us < 0)
                    x->ttft_us = since_sched(r);
            }
        }
    }
    const char *u = memmem(p, n, "\"completion_tokens\":", 20);
    if (u) {
        u += 20;
        while (u < end && *u == ' ')
            u++;
        long v = 0;
        bool any = false;
        while (u < end && *u >= '0' && *u <= '9' && v < 100000000) {
            v = v * 10 + (*u++ - '0');
            any = true;
        }
        if (any)
            r->usage_tokens = (int)v;
    }
}

static void sse_feed(struct lg_req *r, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        if (!nl) {
            if (r->line.len + len > LG_MAX_LINE)
                return; /* an absurd line; it will be cut, not stored */
            sbuf_add(&r->line, data, len);
            return;
        }
        size_t n = (size_t)(nl - data);
        if (r->line.len > 0) {
            sbuf_add(&r->line, data, n);
            sse_line(r, r->line.data, r->line.len);
            sbuf_reset(&r->line);
        } else {
            sse_line(r, data, n);
        }
        data = nl + 1;
        len -= n + 1;
    }
}

static void body_cb(void *arg, const char *data, size_t len)
{
    struct lg_req *r = arg;
    struct lg_result *x = res_of(r);
    if (len == 0)
        return;
    if (!r->first_body) {
        r->first_body = true;
        if (!r->sse && x->ttft_us < 0)
            x->ttft_us = since_sched(r);
    }
    if (r->sse)
        sse_feed(r, data, len);
    else if (x->status >= 200 && x->status < 300 && r->json.len + len <= LG_MAX_JSON)
        sbuf_add(&r->json, data, len);
}

/* completion_tokens of a non-streaming answer. */
static int json_usage_tokens(const struct sbuf *b)
{
    if (!b->data || b->len == 0)
        return -1;
    json_t *root = json_loadb(b->data, b->len, 0, NULL);
    if (!root)
        return -1;
    json_t *ct = json_object_get(json_object_get(root, "usage"), "completion_tokens");
    int v = json_is_integer(ct) ? (int)json_integer_value(ct) : -1;
    json_decref(root);
    return v;
}

/* ---- keep-alive pool ---- */

static void idle_remove(struct lg_idle *i)
{
    if (i->prev)
        i->prev->next = i->next;
    else
        lg.idle = i->next;
    if (i->next)
        i->next->prev = i->prev;
    lg.nidle--;
}

static void idle_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    /* Anything on an idle connection (EOF, stray bytes) retires it. */
    struct lg_idle *i = arg;
    idle_remove(i);
    ev_del(loop, fd);
    close(fd);
    free(i);
}

static void idle_put(int fd)
{
    struct lg_idle *i = rp_xcalloc(1, sizeof *i);
    i->fd = fd;
    i->next = lg.idle;
    if (lg.idle)
        lg.idle->prev = i;
    lg.idle = i;
    lg.nidle++;
    if (ev_add(lg.loop, fd, EV_READ, idle_cb, i) < 0) {
        idle_remove(i);
        close(fd);
        free(i);
    }
}

static int idle_get(void)
{
    while (lg.idle) {
        struct lg_idle *i = lg.idle;
        int fd = i->fd;
        idle_remove(i);
        ev_del(lg.loop, fd);
        free(i);
        if (net_peer_alive(fd))
            return fd;
        close(fd);
    }
    return -1;
}

/* ---- the state machine ---- */

static void req_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg);

static void req_free(struct lg_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        lg.inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    lg.ninflight--;
    ev_timer_cancel(lg.loop, &r->giveup);
    buf_release(&r->in);
    sbuf_free(&r->out);
    sbuf_free(&r->line);
    sbuf_free(&r->json);
    free(r);
    if (lg.arrivals_done && lg.ninflight == 0)
        ev_stop(lg.loop);
}

/* Record the outcome and release the request (and its socket, unless it
 * goes back to the keep-alive pool). */
static void req_finish(struct lg_req *r, enum lg_err err, int err_errno)
{
    struct lg_result *x = res_of(r);
    x->err = (uint8_t)err;
    x->err_errno = err_errno;
    x->total_us = since_sched(r);
    if (err == LG_E_GAVE_UP)
        x->gave_up = true;
    if (r->sse)
        x->tokens = r->usage_tokens >= 0 ? r->usage_tokens : r->deltas;
    else if (err == LG_OK && x->status >= 200 && x->status < 300)
        x->tokens = RP_MAX(0, json_usage_tokens(&r->json));
    if (err == LG_OK && x->ttft_us < 0 && !r->sse)
        x->ttft_us = x->total_us;
    lg.done_count++;
    if (err == LG_OK && x->status >= 200 && x->status < 300)
        lg.ok_count++;
    if (r->fd >= 0) {
        ev_del(lg.loop, r->fd);
        if (err == LG_OK && lg_cfg.keepalive && r->keep_alive && buf_empty(&r->in))
            idle_put(r->fd);
        else
            close(r->fd);
        r->fd = -1;
    }
    req_free(r);
}

static void giveup_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    /* The user closes the tab: the socket is simply closed. */
    req_finish(arg, LG_E_GAVE_UP, 0);
}

/* Response complete (framing says so). */
static void req_complete(struct lg_req *r)
{
    struct lg_result *x = res_of(r);
    enum lg_err err = LG_OK;
    if (r->sse && x->status >= 200 && x->status < 300 && !r->done_seen)
        err = LG_E_TRUNCATED;
    req_finish(r, err, 0);
}

/* Feed body bytes from the input buffer.  RP_OK: complete; RP_AGAIN: more
 * needed; RP_ERR: malformed. */
static int req_body(struct lg_req *r)
{
    size_t n = buf_len(&r->in);
    switch (r->framing) {
    case H1_BODY_NONE: return RP_OK;
    case H1_BODY_LENGTH: {
        size_t take = (size_t)RP_MIN((uint64_t)n, r->body_left);
        body_cb(r, r->in.pos, take);
        buf_consume(&r->in, take);
        r->body_left -= take;
        return r->body_left == 0 ? RP_OK : RP_AGAIN;
    }
    case H1_BODY_CHUNKED: {
        ssize_t used = h1_chunked_feed(&r->ch, r->in.pos, n, body_cb, r);
        if (used < 0)
            return RP_ERR;
        buf_consume(&r->in, (size_t)used);
        return r->ch.done ? RP_OK : RP_AGAIN;
    }
    case H1_BODY_CLOSE:
        body_cb(r, r->in.pos, n);
        buf_consume(&r->in, n);
        return RP_AGAIN;
    }
    return RP_ERR;
}

static void req_on_head(struct lg_req *r)
{
    struct lg_result *x = res_of(r);
    x->status = (int16_t)r->msg.status;
    x->hdr_us = since_sched(r);
    r->framing = r->msg.framing;
    r->body_left = r->msg.content_length;
    r->keep_alive = r->msg.keep_alive;
    const struct h1_header *ct = h1_find_header(&r->msg, "content-type");
    r->sse = ct && memmem(ct->value.p, ct->value.len, "text/event-stream", 17) != NULL;
    if (r->framing == H1_BODY_CHUNKED)
        h1_chunked_init(&r->ch);
}

static void req_read(struct lg_req *r)
{
    for (;;) {
        ssize_t n = buf_read_fd(&r->in, r->fd);
        if (n == RP_AGAIN && buf_free_tail(&r->in) > 0)
            return;
        if (n == RP_ERR) {
            req_finish(r, LG_E_IO, errno);
            return;
        }
        bool eof = n == 0;
        if (r->state == RS_HEAD) {
            h1_message_init(&r->msg, r->hdrs, LG_RESP_HEADERS);
            int h = h1_parse_response(r->in.pos, buf_len(&r->in), &r->msg, NULL, false);
            if (h == RP_AGAIN) {
                if (eof) {
                    req_finish(r, buf_empty(&r->in) && r->reused ? LG_E_IO : LG_E_EOF, 0);
                    return;
                }
                if (buf_free_tail(&r->in) == 0 && r->in.pos == r->in.start) {
                    req_finish(r, LG_E_PROTO, 0);
                    return;
                }
                continue;
            }
            if (h < 0) {
                req_finish(r, LG_E_PROTO, 0);
                return;
            }
            if (r->msg.status >= 100 && r->msg.status < 200) {
                buf_consume(&r->in, (size_t)h); /* 100 Continue and friends */
                continue;
            }
            req_on_head(r);
            buf_consume(&r->in, (size_t)h);
            r->state = RS_BODY;
        }
        int b = req_body(r);
        if (b == RP_OK) {
            req_complete(r);
            return;
        }
        if (b == RP_ERR) {
            req_finish(r, LG_E_PROTO, 0);
            return;
        }
        if (eof) {
            if (r->framing == H1_BODY_CLOSE)
                req_complete(r);
            else
                req_finish(r, LG_E_EOF, 0);
            return;
        }
    }
}

static void req_write(struct lg_req *r)
{
    while (r->out_off < r->out.len) {
        ssize_t w = send(r->fd, r->out.data + r->out_off, r->out.len - r->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            r->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            req_set_mask(r, EV_WRITE | EV_READ);
            return;
        }
        req_finish(r, LG_E_IO, errno);
        return;
    }
    sbuf_free(&r->out);
    r->state = RS_HEAD;
    req_set_mask(r, EV_READ);
}

static void req_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct lg_req *r = arg;
    if (r->state == RS_CONNECTING) {
        int e = net_connect_result(r->fd);
        if (e != 0) {
            req_finish(r, LG_E_CONNECT, e);
            return;
        }
        r->state = RS_WRITING;
    }
    if (r->state == RS_WRITING) {
        req_write(r);
        return; /* the answer can wait for the next readiness report */
    }
    if (events & (EV_READ | EV_ERROR))
        req_read(r);
}

void lg_launch(uint64_t sched_rel, size_t phase)
{
    struct lg_result *x = result_new();
    x->sched_us = sched_rel;
    x->phase = (uint8_t)phase;
    x->tenant = (int8_t)lg_mix_pick(&lg_cfg.tenants);
    x->prio = (int8_t)lg_mix_pick(&lg_cfg.prios);
    x->max_tokens = lg_range_pick(&lg_cfg.max_tokens);
    uint64_t now = ev_now(lg.loop), sched_abs = lg.t0 + sched_rel;
    x->lag_us = now > sched_abs ? (uint32_t)RP_MIN(now - sched_abs, (uint64_t)UINT32_MAX) : 0;
    if (lg.ninflight >= lg_cfg.max_inflight) {
        /* Open loop means never waiting for a free slot in loadgen
         * itself: the arrival is recorded as lost. */
        x->err = LG_E_OVERFLOW;
        x->total_us = 0;
        lg.done_count++;
        return;
    }

    struct lg_req *r = rp_xcalloc(1, sizeof *r);
    r->idx = lg_nresults - 1;
    r->sched_abs = sched_abs;
    r->usage_tokens = -1;
    r->fd = -1;
    buf_alloc(&r->in);
    sbuf_init(&r->out, 0);
    sbuf_init(&r->line, LG_MAX_LINE + 1);
    sbuf_init(&r->json, LG_MAX_JSON + 1);
    ev_timer_init(&r->giveup, giveup_cb, r);
    r->next = lg.inflight;
    if (lg.inflight)
        lg.inflight->prev = r;
    lg.inflight = r;
    lg.ninflight++;
    build_request(r, x);
    if (lg_cfg.give_up_s > 0)
        ev_timer_arm_at(lg.loop, &r->giveup, sched_abs + (uint64_t)(lg_cfg.give_up_s * 1e6));

    int fd = lg_cfg.keepalive ? idle_get() : -1;
    int rc;
    if (fd >= 0) {
        r->reused = true;
        rc = RP_OK;
    } else {
        rc = net_connect((const struct sockaddr *)&lg_cfg.addr, lg_cfg.addr_len, &fd);
        if (rc == RP_ERR) {
            req_finish(r, LG_E_CONNECT, errno);
            return;
        }
    }
    r->fd = fd;
    r->state = rc == RP_OK ? RS_WRITING : RS_CONNECTING;
    if (ev_add(lg.loop, fd, rc == RP_OK ? EV_READ : EV_WRITE, req_io_cb, r) < 0) {
        req_finish(r, LG_E_CONNECT, errno);
        return;
    }
    if (r->state == RS_WRITING)
        req_write(r);
}

void lg_finish_all(void)
{
    while (lg.inflight)
        req_finish(lg.inflight, LG_E_UNFINISHED, 0);
}

void lg_idle_close_all(void)
{
    while (lg.idle) {
        struct lg_idle *i = lg.idle;
        idle_remove(i);
        ev_del(lg.loop, i->fd);
        close(i->fd);
        free(i);
    }
}

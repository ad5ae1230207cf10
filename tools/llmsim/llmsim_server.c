/*
 * llmsim_server.c — HTTP/1.1 serving on the event loop.
 *
 * One struct conn per client connection: keep-alive, one request at a
 * time, pipelined bytes wait in the input buffer.  The head is parsed with
 * the gateway's own h1.c (incrementally, so a slow head costs no rescans);
 * a body is read whole (Content-Length or chunked, at most 1 MiB) before
 * the request is dispatched to llmsim_api.c.
 *
 * Disconnects: the connection keeps EV_READ armed while a request runs, so
 * an EOF (client closed the tab) is seen at once; the seq is then aborted
 * and its slot freed, or, with --no-abort, it runs to the end with nobody
 * listening.
 *
 * Responses with a known length are framed by reply.c, the project's one
 * writer of local responses, so llmsim's errors have exactly the gateway's
 * OpenAI error shape.  A streamed head is written here: reply_head frames
 * every body by Content-Length, and a stream has none.
 */
#include "llmsim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "reply.h"
#include "util.h"

static void conn_free(struct conn *c);
static void conn_reset_request(struct conn *c);

/* ------------------------------------------------------------------ */
/* connection output                                                   */

static size_t out_pending(const struct conn *c)
{
    return c->out.len - c->out_off;
}

/* Write what we can.  Never frees c: a failure marks it broken and shuts
 * the socket down so epoll reports it and the I/O callback cleans up. */
void conn_flush(struct conn *c)
{
    if (c->broken)
        return;
    while (out_pending(c) > 0) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, out_pending(c), MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    if (out_pending(c) == 0) {
        /* Keep the builder's memory for the next response unless a large
         * non-streaming answer inflated it. */
        if (c->out.cap > 64 * 1024)
            sbuf_free(&c->out);
        else
            sbuf_reset(&c->out);
        c->out_off = 0;
    } else if (out_pending(c) > SIM_MAX_OUT_BACKLOG) {
        /* A client that stopped reading is treated as gone, as a server
         * with a bounded send queue would. */
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);
    }
}

void conn_update_mask(struct conn *c)
{
    uint32_t mask = 0;
    if (c->state != CS_BUSY || buf_free_tail(&c->in) > 0 || c->in.pos != c->in.start)
        mask |= EV_READ;
    if (out_pending(c) > 0)
        mask |= EV_WRITE;
    ev_mod(sim.loop, c->fd, mask);
}

/* The connection decision of this response, spelled as reply.h does. */
static enum reply_conn conn_reply_conn(struct conn *c)
{
    if (!c->keep_alive)
        c->close_after = true;
    return reply_conn(!c->keep_alive, c->http10 ? 0 : 1);
}

void conn_put_stream_head(struct conn *c, int status, const char *ctype)
{
    struct sbuf *o = &c->out;
    c->chunked_resp = !c->http10;
    if (c->http10)
        c->keep_alive = false; /* the body ends with the connection */
    enum reply_conn rc = conn_reply_conn(c);
    sbuf_printf(o, "HTTP/1.1 %d %s\r\n", status, h1_reason(status));
    sbuf_adds(o, "server: llmsim\r\n");
    sbuf_printf(o, "x-llmsim-version: %s\r\n", sim.cfg.version);
    sbuf_printf(o, "content-type: %s\r\n", ctype);
    sbuf_adds(o, "cache-control: no-cache\r\n");
    if (c->chunked_resp)
        sbuf_adds(o, "transfer-encoding: chunked\r\n");
    if (rc == REPLY_CONN_CLOSE)
        sbuf_adds(o, "connection: close\r\n");
    else if (rc == REPLY_CONN_KEEP_ALIVE)
        sbuf_adds(o, "connection: keep-alive\r\n");
    sbuf_adds(o, "\r\n");
}

void conn_send_whole(struct conn *c, int status, const char *ctype, const char *body, size_t len, const char *extra)
{
    char headers[256];
    rp_snprintf(headers, sizeof headers, "server: llmsim\r\nx-llmsim-version: %s\r\n%s", sim.cfg.version,
                extra ? extra : "");
    const struct reply_head h = {
        .status = status,
        .content_type = ctype,
        .content_length = len,
        .conn = conn_reply_conn(c),
        .extra_headers = headers,
    };
    reply_head(&c->out, &h);
    sbuf_add(&c->out, body, len);
    c->resp_complete = true;
    if (status >= 400 && status < 500)
        sim.st.requests_rejected++;
}

void conn_send_json(struct conn *c, int status, const struct sbuf *json, const char *extra)
{
    conn_send_whole(c, status, "application/json", json->data ? json->data : "", json->len, extra);
}

void conn_send_error(struct conn *c, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    reply_error_body(j, status, type, param, code, msg);
    conn_send_json(c, status, j, NULL);
}

void conn_put_event(struct conn *c, const char *payload, size_t len)
{
    size_t ev_len = 6 + len + 2;
    if (c->chunked_resp)
        sbuf_printf(&c->out, "%zx\r\n", ev_len);
    sbuf_add(&c->out, "data: ", 6);
    sbuf_add(&c->out, payload, len);
    sbuf_add(&c->out, "\n\n", 2);
    if (c->chunked_resp)
        sbuf_add(&c->out, "\r\n", 2);
}

/* ------------------------------------------------------------------ */
/* connection input: request head and body                             */

static void conn_arm_timer(struct conn *c, uint64_t us)
{
    ev_timer_arm(sim.loop, &c->timer, us);
}

static void conn_reset_request(struct conn *c)
{
    c->state = CS_HEAD;
    c->parse_pos = NULL;
    sbuf_free(&c->body);
    c->body_chunked = false;
    c->body_left = 0;
    c->body_too_big = false;
    c->expect_continue = false;
    c->resp_complete = false;
    c->close_after = false;
    c->chunked_resp = false;
    c->keep_alive = true;
    c->http10 = false;
    uint64_t t = buf_empty(&c->in) ? (uint64_t)(sim.cfg.keepalive_s * 1e6) : SIM_REQ_TIMEOUT_US;
    conn_arm_timer(c, t);
}

/* An early error before the body was read: answer and close, because the
 * rest of the input can no longer be framed. */
static void conn_fail(struct conn *c, int status, const char *why)
{
    c->keep_alive = false;
    c->state = CS_BUSY;
    conn_send_error(c, status, "invalid_request_error", NULL, NULL, "%s", why);
}

static void body_data_cb(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    if (c->body.len + len > SIM_MAX_BODY) {
        c->body_too_big = true;
        return;
    }
    sbuf_add(&c->body, data, len);
}

/* Parse as much of the pending request as the input allows.  RP_OK when a
 * request was dispatched or answered (state is CS_BUSY), RP_AGAIN when more
 * input is needed. */
static int conn_parse(struct conn *c)
{
    if (c->state == CS_HEAD) {
        if (buf_empty(&c->in))
            return RP_AGAIN;
        if (c->parse_pos != c->in.pos) {
            /* The bytes moved (compaction) or a new message starts. */
            h1_message_init(&c->msg, c->hdrs, SIM_HEADERS);
            c->parse_pos = c->in.pos;
        }
        const struct h1_limits lim = {
            .max_header_bytes = 16 * 1024, .max_headers = SIM_HEADERS, .max_uri = SIM_TARGET_MAX};
        int n = h1_parse_request(c->in.pos, buf_len(&c->in), &c->msg, &lim);
        if (n == RP_AGAIN) {
            if (buf_len(&c->in) >= (size_t)(c->in.end - c->in.start)) {
                conn_fail(c, 431, "Request header section too large.");
                return RP_OK;
            }
            conn_arm_timer(c, SIM_REQ_TIMEOUT_US);
            return RP_AGAIN;
        }
        if (n < 0) {
            conn_fail(c, c->msg.error_status ? c->msg.error_status : 400, c->msg.error ? c->msg.error : "Bad request.");
            return RP_OK;
        }
        rp_snprintf(c->method, sizeof c->method, "%.*s", (int)RP_MIN(c->msg.method.len, sizeof c->method - 1),
                    c->msg.method.p);
        rp_snprintf(c->target, sizeof c->target, "%.*s", (int)RP_MIN(c->msg.target.len, (size_t)SIM_TARGET_MAX),
                    c->msg.target.p);
        c->http10 = c->msg.minor_version == 0;
        c->keep_alive = c->msg.keep_alive;
        c->expect_continue = c->msg.expect_continue;
        enum h1_framing fr = c->msg.framing;
        uint64_t clen = c->msg.content_length;
        buf_consume(&c->in, (size_t)n);
        c->parse_pos = NULL;
        sbuf_init(&c->body, SIM_MAX_BODY + 1);
        if (fr == H1_BODY_LENGTH) {
            if (clen > SIM_MAX_BODY) {
                conn_fail(c, 413, "Request body larger than 1 MiB.");
                return RP_OK;
            }
            c->body_left = clen;
        } else if (fr == H1_BODY_CHUNKED) {
            c->body_chunked = true;
            h1_chunked_init(&c->chunked);
        }
        c->state = CS_BODY;
    }
    if (c->state == CS_BODY) {
        bool done;
        if (c->body_chunked) {
            ssize_t used = h1_chunked_feed(&c->chunked, c->in.pos, buf_len(&c->in), body_data_cb, c);
            if (used < 0) {
                conn_fail(c, 400, c->chunked.error ? c->chunked.error : "Malformed chunked body.");
                return RP_OK;
            }
            buf_consume(&c->in, (size_t)used);
            if (c->body_too_big) {
                conn_fail(c, 413, "Request body larger than 1 MiB.");
                return RP_OK;
            }
            done = c->chunked.done;
        } else {
            size_t take = (size_t)RP_MIN((uint64_t)buf_len(&c->in), c->body_left);
            sbuf_add(&c->body, c->in.pos, take);
            buf_consume(&c->in, take);
            c->body_left -= take;
            done = c->body_left == 0;
        }
        if (!done) {
            if (c->expect_continue) {
                sbuf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->expect_continue = false;
            }
            conn_arm_timer(c, SIM_REQ_TIMEOUT_US);
            return RP_AGAIN;
        }
        c->state = CS_BUSY;
        ev_timer_cancel(sim.loop, &c->timer);
        api_dispatch(c);
        return RP_OK;
    }
    return RP_AGAIN;
}

/* Move the connection forward as far as its input and output allow.  May
 * free c. */
void conn_drive(struct conn *c)
{
    if (c->broken) {
        conn_free(c);
        return;
    }
    for (;;) {
        conn_flush(c);
        if (c->broken) {
            conn_free(c);
            return;
        }
        if (c->state == CS_BUSY) {
            if (!c->resp_complete || out_pending(c) > 0)
                break;
            if (c->close_after) {
                /* Our FIN first, then drain what the client still sends so
                 * the kernel does not turn the close into a reset that could
                 * destroy the response in flight. */
                shutdown(c->fd, SHUT_WR);
                c->state = CS_LINGER;
                buf_reset(&c->in);
                conn_arm_timer(c, SIM_LINGER_US);
                break;
            }
            conn_reset_request(c);
        }
        if (c->state == CS_HEAD || c->state == CS_BODY) {
            if (conn_parse(c) == RP_AGAIN) {
                conn_flush(c); /* a 100 Continue may be pending */
                break;
            }
            continue;
        }
        break;
    }
    if (c->broken) {
        conn_free(c);
        return;
    }
    conn_update_mask(c);
}

static void conn_free(struct conn *c)
{
    if (c->seq) {
        seq_abort(c->seq);
        c->seq = NULL;
    }
    ev_timer_cancel(sim.loop, &c->timer);
    ev_del(sim.loop, c->fd);
    close(c->fd);
    buf_release(&c->in);
    sbuf_free(&c->out);
    sbuf_free(&c->body);
    sim.st.connections_open--;
    free(c);
}

static void conn_timer_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct conn *c = arg;
    /* Idle keep-alive, a stalled request, or the end of lingering. */
    if (c->state != CS_BUSY)
        conn_free(c);
}

static void conn_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct conn *c = arg;
    if (c->broken) {
        conn_free(c);
        return;
    }
    if (events & (EV_READ | EV_ERROR)) {
        for (;;) {
            if (c->state == CS_LINGER)
                buf_reset(&c->in);
            ssize_t n = buf_read_fd(&c->in, c->fd);
            if (n == RP_AGAIN)
                break;
            if (n <= 0) {
                /* EOF or error: the client is gone (or done, when lingering). */
                conn_free(c);
                return;
            }
            if (c->state != CS_LINGER)
                break;
        }
        if (c->state == CS_LINGER)
            return;
    }
    conn_drive(c);
}

void conn_accept_resume_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    ev_mod(loop, sim.lfd, EV_READ);
}

void conn_listen_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    for (int i = 0; i < SIM_ACCEPT_BATCH; i++) {
        int cfd = net_accept(fd, NULL, NULL);
        if (cfd == RP_AGAIN)
            return;
        if (cfd < 0) {
            /* Out of descriptors: pause accepting instead of spinning. */
            rp_log_errno(errno, "accept");
            ev_mod(loop, fd, 0);
            ev_timer_arm(loop, &sim.accept_pause, 100000);
            return;
        }
        struct conn *c = rp_xcalloc(1, sizeof *c);
        c->fd = cfd;
        buf_alloc(&c->in);
        sbuf_init(&c->out, 0);
        sbuf_init(&c->body, SIM_MAX_BODY + 1);
        ev_timer_init(&c->timer, conn_timer_cb, c);
        if (ev_add(loop, cfd, EV_READ, conn_io_cb, c) < 0) {
            rp_log_errno(errno, "ev_add");
            close(cfd);
            buf_release(&c->in);
            free(c);
            continue;
        }
        sim.st.connections_accepted++;
        sim.st.connections_open++;
        conn_reset_request(c);
    }
}

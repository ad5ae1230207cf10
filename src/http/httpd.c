/*
 * httpd.c — the embedded HTTP/1.1 server behind the admin and status
 * listeners (see httpd.h).
 *
 * Each connection is a small state machine on the shared event loop:
 *
 *   HEAD   read until h1_parse_request() has a whole head (bounded by the
 *          16 KiB input buffer and the h1 limits);
 *   BODY   decode Content-Length or chunked bytes into a body builder
 *          capped at max_body (413 beyond);
 *   WRITE  the handler has run; the response (head + body, two sbufs sent
 *          with one sendmsg) drains as the socket accepts it;
 *   LINGER after a "Connection: close" response: our side is shut down and
 *          we discard what the client still sends for a moment, so unread
 *          input cannot turn our close into a reset that destroys the
 *          response before the client reads it.
 *
 * Pipelining needs no queue: while a response is being written the
 * connection does not read, so requests are parsed and answered strictly
 * one after another, and a client that sends without reading is stopped by
 * TCP flow control instead of by our memory.
 *
 * The request head stays where the parser found it (in the input buffer)
 * while the handler runs.  When a body must be read first, more reads may
 * compact that buffer, so the head is copied aside and parsed again from
 * the copy; re-parsing a few hundred bytes is simpler and safer than
 * relocating every view.
 *
 * One timer per connection, whose meaning follows the state: the request
 * timeout from the first byte of a request (or from accept) until it is
 * dispatched, the idle timeout between keep-alive requests and as the
 * no-progress limit while writing, and a short linger limit.
 *
 * Work per wakeup is bounded (a batch of accepts, one read, a few
 * pipelined requests) so this server stays fair to the thousands of proxy
 * sockets on the same level-triggered loop.
 *
 * httpd_serve_bytes() drives the same steps (step_head, step_body,
 * dispatch, build_response) with memory in place of the socket, so the
 * unit tests and the fuzzer exercise the request path itself rather than a
 * copy of it.
 */
#include "httpd.h"
#include "net.h"
#include "reply.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HTTPD_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTPD_DEFAULT_MAX_CONNS 1024
#define HTTPD_DEFAULT_IDLE_US (30 * 1000000ull)
#define HTTPD_DEFAULT_REQUEST_US (10 * 1000000ull)

#define HTTPD_ACCEPT_BATCH 64           /* accepts per wakeup */
#define HTTPD_PIPELINE_BUDGET 8         /* requests answered per wakeup */
#define HTTPD_WRITE_BUDGET (512 * 1024) /* response bytes written per wakeup */
#define HTTPD_ACCEPT_PAUSE_US 100000    /* back-off when out of descriptors */
#define HTTPD_LINGER_US 2000000         /* how long a closing connection drains */
#define HTTPD_LINGER_MAX_BYTES (1024 * 1024)
#define HTTPD_KEEP_BODY_CAP (64 * 1024) /* larger response buffers are freed after use */
#define HTTPD_MAX_RESPONSE (64u << 20)  /* a handler's body beyond this is a 500 */

enum conn_state { C_HEAD, C_BODY, C_WRITE, C_LINGER };

struct httpd_conn {
    struct httpd *h;
    struct httpd_conn *prev, *next;
    int fd;
    enum conn_state state;
    bool req_started;  /* bytes of a request have arrived (request timer runs) */
    bool close_after;  /* close once the current response is written */
    bool head_req;     /* current request is HEAD: no body bytes in the response */
    bool rd_eof;       /* the client shut down its side: answer what is buffered, then close */
    bool head_parsing; /* msg holds the parser's progress on a partial head */
    struct ev_timer timer;
    struct buf in;
    char peer[NET_ADDR_TEXT_MAX];

    /* request being read */
    struct h1_message msg;
    struct h1_header headers[H1_DEFAULT_MAX_HEADERS];
    size_t head_len;       /* head bytes still at in.pos (no-body requests) */
    struct sbuf head_copy; /* head kept aside while the body is read */
    struct h1_chunked chunked;
    uint64_t body_left; /* Content-Length bytes still to read */
    struct sbuf body;   /* decoded body, bounded by max_body */
    bool body_too_large;

    /* response being written: out_head, then resp.body[0..out_body_len) */
    struct httpd_response resp;
    struct sbuf out_head;
    size_t out_body_len;
    size_t out_off;
    size_t linger_bytes;
};

struct httpd {
    struct ev_loop *loop;
    int lfd;
    int port;
    char *name;
    char addr_text[NET_ADDR_TEXT_MAX];
    httpd_handler handler;
    void *arg;
    struct httpd_opts opts;
    struct h1_limits limits;
    struct httpd_conn *conns;
    size_t nconns;
    bool accepting;
    struct ev_timer accept_timer;
    uint64_t last_accept_log_us;
};

static int conn_process(struct httpd_conn *c);
static int conn_flush(struct httpd_conn *c);

/* ---- small helpers ---- */

/* RFC 9110 token characters, for header names set by handlers. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static void set_mask(struct httpd_conn *c, uint32_t mask)
{
    /* ev_mod only fails for an fd it does not know, which would be a bug
     * here; the connection then times out rather than spinning. */
    if (ev_mod(c->h->loop, c->fd, mask) < 0)
        rp_log_errno(errno, "%s: epoll update for %s", c->h->name, c->peer);
}

/* Connections served by httpd_serve_bytes() have no loop: no timers. */
static void conn_arm(struct httpd_conn *c, uint64_t us)
{
    if (c->h->loop)
        ev_timer_arm(c->h->loop, &c->timer, us);
}

/* ---- connection lifetime ---- */

static void conn_init(struct httpd *h, struct httpd_conn *c)
{
    c->h = h;
    c->state = C_HEAD;
    sbuf_init(&c->head_copy, 0);
    /* +1: sbuf keeps a terminating NUL inside its cap. */
    sbuf_init(&c->body, h->opts.max_body + 1);
    sbuf_init(&c->resp.headers, 64 * 1024);
    sbuf_init(&c->resp.body, HTTPD_MAX_RESPONSE);
    sbuf_init(&c->out_head, 0);
}

static void conn_release(struct httpd_conn *c)
{
    buf_release(&c->in);
    sbuf_free(&c->head_copy);
    sbuf_free(&c->body);
    sbuf_free(&c->resp.headers);
    sbuf_free(&c->resp.body);
    sbuf_free(&c->out_head);
    free(c);
}

static void conn_close(struct httpd_conn *c)
{
    struct httpd *h = c->h;
    ev_timer_cancel(h->loop, &c->timer);
    ev_del(h->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->nconns--;
    conn_release(c);
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg);
static void conn_io(struct ev_loop *loop, int fd, uint32_t events, void *arg);

static void conn_new(struct httpd *h, int fd, const struct sockaddr_storage *peer)
{
    struct httpd_conn *c = rp_xcalloc(1, sizeof *c);
    conn_init(h, c);
    c->fd = fd;
    net_addr_text((const struct sockaddr *)peer, c->peer, sizeof c->peer);
    ev_timer_init(&c->timer, conn_timeout, c);
    if (ev_add(h->loop, fd, EV_READ, conn_io, c) < 0) {
        rp_log_errno(errno, "%s: cannot watch connection from %s", h->name, c->peer);
        close(fd);
        conn_release(c);
        return;
    }
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    /* A new connection must produce a request within the request timeout:
     * an open socket that never speaks is not a free slot. */
    ev_timer_arm(h->loop, &c->timer, h->opts.request_timeout_us);
}

/* ---- responses ---- */

/* Serialize c->resp into out_head (appending: an interim 100 Continue may
 * still be waiting there) and queue it. */
static void build_response(struct httpd_conn *c)
{
    struct httpd *h = c->h;
    struct httpd_response *r = &c->resp;

    if (r->status < 200 || r->status > 599) {
        rp_log_err("%s: handler returned status %d for %s", h->name, r->status, c->peer);
        httpd_json_error(r, 500, "server_error", "internal error: invalid response status");
    }
    if (r->body.truncated || r->headers.truncated) {
        rp_log_err("%s: response too large for %s", h->name, c->peer);
        sbuf_reset(&r->headers);
        httpd_json_error(r, 500, "server_error", "internal error: response too large");
    }
    if (!h->accepting)
        c->close_after = true;
    /* From here the idle timeout bounds how long the client may stall
     * while we write (re-armed on progress in conn_flush). */
    conn_arm(c, h->opts.idle_timeout_us);

    bool no_body = reply_status_no_body(r->status);
    struct sbuf *o = &c->out_head;
    reply_head(o, &(struct reply_head){.status = r->status,
                                       .content_type = r->content_type,
                                       .content_length = r->body.len,
                                       .conn = reply_conn(c->close_after, c->msg.minor_version),
                                       .extra_headers = r->headers.len ? r->headers.data : NULL,
                                       .date = true});
    c->out_body_len = (no_body || c->head_req) ? 0 : r->body.len;
    c->state = C_WRITE;
}

static void reset_response(struct httpd_response *r)
{
    r->status = 200;
    r->content_type = NULL;
    sbuf_reset(&r->headers);
    sbuf_reset(&r->body);
}

/* Answer an error the server itself detected (framing, limits, timeouts)
 * and close afterwards: after such an error the position of the next
 * request in the byte stream is unknown. */
static void respond_error(struct httpd_conn *c, int status, const char *message)
{
    reset_response(&c->resp);
    httpd_json_error(&c->resp, status, status >= 500 ? "server_error" : "invalid_request_error", message);
    c->close_after = true;
    build_response(c);
}

static bool out_pending(const struct httpd_conn *c)
{
    return c->out_off < c->out_head.len + c->out_body_len;
}

/* Write what is queued: RP_OK when all of it is out, RP_AGAIN when the
 * socket is full or this wakeup's share is spent, RP_ERR when the peer is
 * gone. */
static int conn_flush(struct httpd_conn *c)
{
    size_t hl = c->out_head.len, total = hl + c->out_body_len, sent = 0;
    while (c->out_off < total) {
        /* A fast reader of a large page must not hold the loop: yield, and
         * level-triggered EV_WRITE brings us back next iteration. */
        if (sent >= HTTPD_WRITE_BUDGET)
            return RP_AGAIN;
        struct iovec iov[2];
        size_t n = 0;
        if (c->out_off < hl) {
            iov[n].iov_base = c->out_head.data + c->out_off;
            iov[n].iov_len = hl - c->out_off;
            n++;
        }
        size_t boff = c->out_off > hl ? c->out_off - hl : 0;
        if (c->out_body_len > boff) {
            iov[n].iov_base = c->resp.body.data + boff;
            iov[n].iov_len = c->out_body_len - boff;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RP_AGAIN;
            return RP_ERR;
        }
        c->out_off += (size_t)w;
        sent += (size_t)w;
        /* Progress while writing a response pushes the send deadline out;
         * an interim 100 Continue must not extend the request timeout. */
        if (c->state == C_WRITE)
            ev_timer_arm(c->h->loop, &c->timer, c->h->opts.idle_timeout_us);
    }
    return RP_OK;
}

static void split_target(struct h1_str t, struct h1_str *path, struct h1_str *query)
{
    const char *p = t.p;
    size_t n = t.len;

    /* absolute-form (RFC 9112 3.2.2): keep only the path and query. */
    if (n > 0 && p[0] != '/' && p[0] != '*') {
        const char *s = memmem(p, n, "://", 3);
        if (s) {
            const char *a = s + 3;
            const char *end = p + n;
            const char *slash = memchr(a, '/', (size_t)(end - a));
            if (slash) {
                n = (size_t)(end - slash);
                p = slash;
            } else {
                p = "/";
                n = 1;
            }
        }
    }
    const char *q = memchr(p, '?', n);
    if (q) {
        path->p = p;
        path->len = (size_t)(q - p);
        query->p = q + 1;
        query->len = n - path->len - 1;
    } else {
        path->p = p;
        path->len = n;
        query->p = p + n;
        query->len = 0;
    }
}

/* Handlers match paths by prefix: they must see "/..." (or "*").  The
 * parser accepts any absolute-URI, but an http(s) URI without "//host"
 * (e.g. "http:x/y") has no path to give them: answer 400 rather than hand
 * a handler a path that matches nothing it knows. */
static bool target_ok(struct h1_str t)
{
    struct h1_str path, query;
    split_target(t, &path, &query);
    return path.len > 0 && (path.p[0] == '/' || (path.len == 1 && path.p[0] == '*'));
}

/* The whole request is here: run the handler and queue its response. */
static void dispatch(struct httpd_conn *c)
{
    struct httpd *h = c->h;
    struct httpd_request req;

    memset(&req, 0, sizeof req);
    req.msg = &c->msg;
    split_target(c->msg.target, &req.path, &req.query);
    req.body = c->body.data ? c->body.data : "";
    req.body_len = c->body.len;
    req.peer = c->peer;

    reset_response(&c->resp);
    if (!c->msg.keep_alive)
        c->close_after = true;
    h->handler(h->arg, &req, &c->resp);
    build_response(c);

    /* The handler is done with the views: drop the request. */
    if (c->head_len) {
        buf_consume(&c->in, c->head_len);
        c->head_len = 0;
    }
    sbuf_reset(&c->head_copy);
    if (c->body.cap > HTTPD_KEEP_BODY_CAP)
        sbuf_free(&c->body);
    sbuf_reset(&c->body);
}

static void body_data(void *arg, const char *data, size_t len)
{
    struct httpd_conn *c = arg;
    if (c->body_too_large)
        return;
    if (len > c->h->opts.max_body - c->body.len) {
        c->body_too_large = true;
        return;
    }
    sbuf_add(&c->body, data, len);
}

/* Steps return RP_OK after progress (state changed, response queued),
 * RP_AGAIN when more input is needed. */
static int step_head(struct httpd_conn *c)
{
    struct httpd *h = c->h;
    size_t len = buf_len(&c->in);

    if (len == 0)
        return RP_AGAIN;
    if (!c->req_started) {
        c->req_started = true;
        conn_arm(c, h->opts.request_timeout_us);
    }
    c->head_req = false;
    c->close_after = false;
    c->body_too_large = false;
    /* Initialise once per message: between RP_AGAIN results the parser
     * keeps its progress in msg and resumes where it stopped (as long as
     * the bytes did not move), so a head trickling in costs linear time. */
    if (!c->head_parsing) {
        h1_message_init(&c->msg, c->headers, RP_ARRAY_LEN(c->headers));
        c->head_parsing = true;
    }
    int n = h1_parse_request(c->in.pos, len, &c->msg, &h->limits);
    if (n != RP_AGAIN)
        c->head_parsing = false;
    if (n == RP_AGAIN) {
        /* The input buffer is the hard bound on a head even if the parser
         * would accept more. */
        if (len < h->limits.max_header_bytes && len < (size_t)(c->in.end - c->in.start))
            return RP_AGAIN;
        respond_error(c, 431, "request header section too large");
        return RP_OK;
    }
    if (n < 0) {
        int status = c->msg.error_status >= 400 ? c->msg.error_status : 400;
        respond_error(c, status, c->msg.error ? c->msg.error : "malformed request");
        return RP_OK;
    }
    c->head_len = (size_t)n;
    c->head_req = rp_strieq(c->msg.method.p, c->msg.method.len, "HEAD");
    if (!target_ok(c->msg.target)) {
        respond_error(c, 400, "invalid request target");
        return RP_OK;
    }

    switch (c->msg.framing) {
    case H1_BODY_NONE: dispatch(c); return RP_OK;
    case H1_BODY_LENGTH:
        if (c->msg.content_length > h->opts.max_body) {
            respond_error(c, 413, "request body too large");
            return RP_OK;
        }
        c->body_left = c->msg.content_length;
        if (c->body_left == 0) {
            dispatch(c);
            return RP_OK;
        }
        break;
    case H1_BODY_CHUNKED: h1_chunked_init(&c->chunked); break;
    default: respond_error(c, 400, "unsupported request framing"); return RP_OK;
    }

    /* Keep the head aside: reading the body may compact the input
     * buffer under the parser's views. */
    sbuf_reset(&c->head_copy);
    sbuf_add(&c->head_copy, c->in.pos, (size_t)n);
    h1_message_init(&c->msg, c->headers, RP_ARRAY_LEN(c->headers));
    if (c->head_copy.truncated || h1_parse_request(c->head_copy.data, (size_t)n, &c->msg, &h->limits) != n) {
        respond_error(c, 500, "internal error: request head");
        return RP_OK;
    }
    buf_consume(&c->in, (size_t)n);
    c->head_len = 0;
    c->state = C_BODY;
    /* A client waiting for 100 Continue gets it only when the body is
     * acceptable (oversize ones got 413 above) and has not started. */
    if (c->msg.expect_continue && c->msg.minor_version >= 1 && buf_empty(&c->in))
        sbuf_adds(&c->out_head, "HTTP/1.1 100 Continue\r\n\r\n");
    return RP_OK;
}

static int step_body(struct httpd_conn *c)
{
    size_t len = buf_len(&c->in);
    if (len == 0)
        return RP_AGAIN;

    if (c->msg.framing == H1_BODY_LENGTH) {
        size_t n = (size_t)RP_MIN((uint64_t)len, c->body_left);
        sbuf_add(&c->body, c->in.pos, n);
        buf_consume(&c->in, n);
        c->body_left -= n;
        if (c->body_left > 0)
            return RP_AGAIN;
    } else {
        ssize_t n = h1_chunked_feed(&c->chunked, c->in.pos, len, body_data, c);
        /* The first problem in the byte stream decides the answer, however
         * reads split it: data past the limit that precedes a framing error
         * in the same read is a 413, as it is when the reads split between
         * the two. */
        if (c->body_too_large || c->body.truncated) {
            respond_error(c, 413, "request body too large");
            return RP_OK;
        }
        if (n < 0) {
            respond_error(c, 400, c->chunked.error ? c->chunked.error : "malformed chunked body");
            return RP_OK;
        }
        buf_consume(&c->in, (size_t)n);
        if (!c->chunked.done)
            return RP_AGAIN;
    }
    c->state = C_HEAD; /* dispatch moves on to WRITE */
    dispatch(c);
    return RP_OK;
}

/* The response is on the wire: close, linger, or wait for the next
 * request.  RP_ERR when the connection was closed. */
static void drop_response(struct httpd_conn *c)
{
    sbuf_reset(&c->out_head);
    if (c->out_head.cap > HTTPD_KEEP_BODY_CAP)
        sbuf_free(&c->out_head);
    if (c->resp.body.cap > HTTPD_KEEP_BODY_CAP)
        sbuf_free(&c->resp.body);
    c->out_off = 0;
    c->out_body_len = 0;
}

static int finish_response(struct httpd_conn *c)
{
    struct httpd *h = c->h;

    drop_response(c);

    if (c->close_after) {
        if (c->rd_eof) {
            conn_close(c);
            return RP_ERR;
        }
        /* Half-close and drain: see the file comment on LINGER. */
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->linger_bytes = 0;
        buf_release(&c->in);
        set_mask(c, EV_READ);
        ev_timer_arm(h->loop, &c->timer, HTTPD_LINGER_US);
        return RP_OK;
    }
    c->state = C_HEAD;
    c->req_started = false;
    ev_timer_arm(h->loop, &c->timer, h->opts.idle_timeout_us);
    /* An idle keep-alive connection holds no input buffer. */
    if (buf_empty(&c->in))
        buf_release(&c->in);
    return RP_OK;
}

/* Drive the connection as far as the buffered input and the socket allow.
 * RP_ERR when the connection was closed (c is freed). */
static int conn_process(struct httpd_conn *c)
{
    int budget = HTTPD_PIPELINE_BUDGET;

    for (;;) {
        if (out_pending(c)) {
            int r = conn_flush(c);
            if (r == RP_ERR) {
                conn_close(c);
                return RP_ERR;
            }
            if (r == RP_AGAIN && c->state == C_WRITE) {
                set_mask(c, EV_WRITE);
                return RP_OK;
            }
            if (r == RP_OK) {
                if (c->state != C_WRITE) {
                    /* only an interim response was pending */
                    sbuf_reset(&c->out_head);
                    c->out_off = 0;
                } else {
                    if (finish_response(c) == RP_ERR)
                        return RP_ERR;
                    if (c->state == C_LINGER)
                        return RP_OK;
                    if (--budget == 0) {
                        /* Yield to the other sockets on the loop; a
                         * writable socket calls us right back. */
                        set_mask(c, buf_empty(&c->in) ? EV_READ : EV_WRITE);
                        return RP_OK;
                    }
                }
            }
        }
        if (c->state == C_LINGER || c->state == C_WRITE)
            return RP_OK; /* LINGER: conn_io drains; WRITE: waiting above */
        int r = c->state == C_HEAD ? step_head(c) : step_body(c);
        if (r == RP_AGAIN) {
            if (c->rd_eof) {
                /* No complete request left and none can come. */
                conn_close(c);
                return RP_ERR;
            }
            set_mask(c, EV_READ | (out_pending(c) ? EV_WRITE : 0));
            return RP_OK;
        }
    }
}

static int conn_read(struct httpd_conn *c)
{
    if (!c->in.start)
        buf_alloc(&c->in);
    ssize_t n = buf_read_fd(&c->in, c->fd);
    if (n == RP_ERR) {
        conn_close(c);
        return RP_ERR;
    }
    if (n == 0) {
        /* Half-close: requests already buffered are still answered. */
        c->rd_eof = true;
        if (buf_empty(&c->in) && !out_pending(c)) {
            conn_close(c);
            return RP_ERR;
        }
    }
    return conn_process(c);
}

static void linger_read(struct httpd_conn *c)
{
    static char scratch[16 * 1024]; /* discarded bytes; the loop is single-threaded */
    for (;;) {
        ssize_t n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n > 0) {
            c->linger_bytes += (size_t)n;
            if (c->linger_bytes > HTTPD_LINGER_MAX_BYTES)
                break;
            return; /* level-triggered: called again if more is there */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* EOF or error: the client is done */
    }
    conn_close(c);
}

static void conn_io(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct httpd_conn *c = arg;
    RP_UNUSED(loop);
    RP_UNUSED(fd);

    if (c->state == C_LINGER) {
        linger_read(c);
        return;
    }
    if ((events & EV_READ) && c->state != C_WRITE && !c->rd_eof) {
        (void)conn_read(c);
        return;
    }
    (void)conn_process(c);
}

static void conn_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct httpd_conn *c = arg;
    RP_UNUSED(loop);
    RP_UNUSED(t);

    switch (c->state) {
    case C_HEAD:
        if (!c->req_started) {
            conn_close(c); /* idle keep-alive, or a connection that never spoke */
            return;
        }
        /* fall through */
    case C_BODY:
        /* Too slow to send a request: say so, and stop listening. */
        buf_release(&c->in);
        c->rd_eof = true;
        respond_error(c, 408, "request timed out");
        (void)conn_process(c);
        return;
    case C_WRITE:
    case C_LINGER: conn_close(c); return;
    }
}

/* ---- listener ---- */

static void refuse(struct httpd *h, int fd)
{
    struct sbuf msg;
    sbuf_init(&msg, 1024);
    reply_error(&msg, &(struct reply_head){.status = 503, .conn = REPLY_CONN_CLOSE}, "server_error", NULL,
                "too many connections");
    size_t n = msg.truncated ? 0 : msg.len;
    /* Best effort and never blocking: the point is to shed this peer. */
    if (n > 0)
        (void)send(fd, msg.data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    sbuf_free(&msg);
    close(fd);
    uint64_t now = ev_now(h->loop);
    if (now - h->last_accept_log_us >= 1000000) {
        h->last_accept_log_us = now;
        rp_log_err("%s: connection limit (%zu) reached; refusing connections", h->name, h->opts.max_connections);
    }
}

static void accept_resume(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct httpd *h = arg;
    RP_UNUSED(t);
    if (h->accepting && h->lfd >= 0)
        (void)ev_mod(loop, h->lfd, EV_READ);
}

static void on_accept(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct httpd *h = arg;
    RP_UNUSED(fd);
    RP_UNUSED(events);

    for (int i = 0; i < HTTPD_ACCEPT_BATCH && h->accepting; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        memset(&peer, 0, sizeof peer);
        int cfd = net_accept(h->lfd, &peer, &plen);
        if (cfd == RP_AGAIN)
            return;
        if (cfd == RP_ERR) {
            int err = errno;
            uint64_t now = ev_now(loop);
            if (now - h->last_accept_log_us >= 1000000) {
                h->last_accept_log_us = now;
                rp_log_errno(err, "%s: accept on %s", h->name, h->addr_text);
            }
            /* Out of descriptors or memory: the pending connection stays
             * queued and level-triggered epoll would call us in a tight
             * loop.  Pause accepting for a moment instead. */
            (void)ev_mod(loop, h->lfd, 0);
            ev_timer_arm(loop, &h->accept_timer, HTTPD_ACCEPT_PAUSE_US);
            return;
        }
        if (h->nconns >= h->opts.max_connections) {
            refuse(h, cfd);
            continue;
        }
        conn_new(h, cfd, &peer);
    }
}

/* A server without a listener or a loop: httpd_start() adds both. */
static struct httpd *httpd_new(const char *name, httpd_handler handler, void *arg, const struct httpd_opts *opts)
{
    struct httpd *h = rp_xcalloc(1, sizeof *h);
    h->lfd = -1;
    h->name = rp_xstrdup(name ? name : "httpd");
    h->handler = handler;
    h->arg = arg;
    if (opts)
        h->opts = *opts;
    if (h->opts.max_body == 0)
        h->opts.max_body = HTTPD_DEFAULT_MAX_BODY;
    if (h->opts.max_connections == 0)
        h->opts.max_connections = HTTPD_DEFAULT_MAX_CONNS;
    if (h->opts.idle_timeout_us == 0)
        h->opts.idle_timeout_us = HTTPD_DEFAULT_IDLE_US;
    if (h->opts.request_timeout_us == 0)
        h->opts.request_timeout_us = HTTPD_DEFAULT_REQUEST_US;
    /* The head must fit the input buffer together with nothing else. */
    h->limits.max_header_bytes = RP_MIN((size_t)H1_DEFAULT_MAX_HEADER_BYTES, (size_t)BUF_DEFAULT_SIZE);
    h->limits.max_headers = H1_DEFAULT_MAX_HEADERS;
    h->limits.max_uri = H1_DEFAULT_MAX_URI;
    ev_timer_init(&h->accept_timer, accept_resume, h);
    return h;
}

struct httpd *httpd_start(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addrlen, const char *name,
                          httpd_handler handler, void *arg, const struct httpd_opts *opts)
{
    struct httpd *h = httpd_new(name, handler, arg, opts);
    h->loop = loop;
    net_addr_text(addr, h->addr_text, sizeof h->addr_text);
    h->lfd = net_listen(addr, addrlen, 511);
    if (h->lfd < 0) {
        rp_log_errno(errno, "%s: cannot listen on %s", h->name, h->addr_text);
        goto fail;
    }
    if (ev_add(loop, h->lfd, EV_READ, on_accept, h) < 0) {
        rp_log_errno(errno, "%s: cannot watch listener on %s", h->name, h->addr_text);
        goto fail;
    }
    h->port = net_local_port(h->lfd);
    h->accepting = true;
    return h;

fail:
    if (h->lfd >= 0)
        close(h->lfd);
    free(h->name);
    free(h);
    return NULL;
}

void httpd_stop_accepting(struct httpd *h)
{
    if (!h)
        return;
    h->accepting = false;
    ev_timer_cancel(h->loop, &h->accept_timer);
    if (h->lfd >= 0) {
        ev_del(h->loop, h->lfd);
        close(h->lfd);
        h->lfd = -1;
    }
    /* Idle connections go now; a request in progress is answered (with
     * Connection: close) and its connection closes after it. */
    struct httpd_conn *c = h->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == C_HEAD && !c->req_started)
            conn_close(c);
    }
}

void httpd_free(struct httpd *h)
{
    if (!h)
        return;
    httpd_stop_accepting(h);
    while (h->conns)
        conn_close(h->conns);
    free(h->name);
    free(h);
}

int httpd_port(const struct httpd *h)
{
    return h->port;
}

/* ---- the request path without sockets ---- */

/* conn_process() with the socket replaced by out: queued responses are
 * appended whole.  Returns true when the connection would close now. */
static bool serve_buffered(struct httpd_conn *c, struct sbuf *out, size_t *responses)
{
    for (;;) {
        if (out_pending(c)) {
            sbuf_add(out, c->out_head.data, c->out_head.len);
            if (c->out_body_len)
                sbuf_add(out, c->resp.body.data, c->out_body_len);
            if (c->state != C_WRITE) {
                sbuf_reset(&c->out_head); /* only an interim response */
                c->out_off = 0;
            } else {
                (*responses)++;
                drop_response(c);
                if (c->close_after)
                    return true;
                c->state = C_HEAD;
                c->req_started = false;
            }
        }
        int r = c->state == C_HEAD ? step_head(c) : step_body(c);
        if (r == RP_AGAIN)
            return c->rd_eof;
    }
}

size_t httpd_serve_bytes(const char *name, httpd_handler handler, void *arg, const struct httpd_opts *opts,
                         const char *const *pieces, const size_t *lens, size_t npieces, struct sbuf *out)
{
    struct httpd *h = httpd_new(name, handler, arg, opts);
    struct httpd_conn *c = rp_xcalloc(1, sizeof *c);
    size_t responses = 0;
    bool closed = false;

    h->accepting = true;
    conn_init(h, c);
    rp_snprintf(c->peer, sizeof c->peer, "127.0.0.1:1");
    buf_alloc(&c->in);
    for (size_t i = 0; i < npieces && !closed; i++) {
        size_t off = 0;
        do {
            /* Compact only when the tail is full, as buf_read_fd() does:
             * the same bytes move at the same moments as on a socket. */
            if (buf_free_tail(&c->in) == 0)
                buf_compact(&c->in);
            size_t took = buf_append(&c->in, pieces[i] + off, lens[i] - off);
            off += took;
            if (i + 1 == npieces && off == lens[i])
                c->rd_eof = true;
            size_t before = buf_len(&c->in);
            closed = serve_buffered(c, out, &responses);
            /* A full buffer that nothing consumed: conn_read() would wait
             * for ever (until the request timeout); stop here. */
            if (!closed && off < lens[i] && took == 0 && buf_len(&c->in) == before)
                closed = true;
        } while (!closed && off < lens[i]);
    }
    if (!closed && npieces == 0) {
        c->rd_eof = true;
        serve_buffered(c, out, &responses);
    }
    conn_release(c);
    free(h->name);
    free(h);
    return responses;
}

/* ---- helpers for handlers ---- */

void httpd_json_error_code(struct httpd_response *resp, int status, const char *type, const char *code,
                           const char *message)
{
    resp->status = status;
    resp->content_type = "application/json";
    sbuf_reset(&resp->body);
    reply_error_body(&resp->body, status, type, NULL, code, message);
}

void httpd_json_error(struct httpd_response *resp, int status, const char *type, const char *message)
{
    httpd_json_error_code(resp, status, type, NULL, message);
}

bool httpd_path_is(const struct httpd_request *req, const char *path)
{
    size_t n = strlen(path);
    return req->path.len == n && memcmp(req->path.p, path, n) == 0;
}

void httpd_add_header(struct httpd_response *resp, const char *name, const char *value)
{
    /* A name that is not a token or a value with CR/LF would let a handler
     * (or data it echoes) inject headers; drop it loudly instead. */
    if (!name[0])
        goto bad;
    for (const char *p = name; *p; p++)
        if (!is_tchar((unsigned char)*p))
            goto bad;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            goto bad;
    sbuf_printf(&resp->headers, "%s: %s\r\n", name, value);
    return;

bad:
    rp_log_err("httpd: refusing to add malformed header \"%s\"", name);
}

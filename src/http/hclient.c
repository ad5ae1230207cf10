/*
 * hclient.c — one outgoing HTTP/1.1 exchange on the event loop (hclient.h).
 *
 * States: CONNECTING (EV_WRITE until the connect completes), SENDING
 * (EV_WRITE until the request is out), READING (EV_READ: the head into
 * h->in, resumably parsed by h1_parse_response, then the body by its
 * framing).  One deadline timer bounds the whole exchange; a second, zero
 * delay timer reports failures found inside hclient_start on the next loop
 * pass, so fn never runs under the caller's feet.
 *
 * The resolver runs getaddrinfo in a detached thread per lookup.  The
 * lookup and the loop share one struct with a reference count of two: the
 * thread drops its reference when done, the loop when it has delivered the
 * result or was cancelled; the last one frees.  The thread tells the loop
 * through an eventfd, the one thing the loop watches.
 */
#include "hclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "ev.h"
#include "h1.h"
#include "net.h"
#include "util.h"

enum hclient_phase { HC_CONNECTING, HC_HANDSHAKE, HC_SENDING, HC_READING, HC_DONE };

struct hclient {
    struct ev_loop *loop;
    hclient_done_fn fn;
    void *arg;
    int fd;
    enum hclient_phase phase;
    struct ev_timer deadline;
    struct ev_timer defer; /* reports a failure found in hclient_start */
    uint64_t started_us, ttfb_us;
    bool head_request;
    SSL *ssl;           /* HTTPS: the session over fd */
    char tls_name[256]; /* name checked in the certificate and sent as SNI */

    struct sbuf req; /* request bytes */
    size_t sent;

    char in[HCLIENT_HEAD_MAX]; /* the head (fixed address: the parser resumes) */
    size_t in_len;
    struct h1_header hdrs[HCLIENT_HEADERS_MAX];
    struct h1_message msg;
    bool have_head;
    int status;
    enum h1_framing framing;
    uint64_t left; /* H1_BODY_LENGTH: bytes still to come */
    struct h1_chunked chunked;

    char *body; /* kept body, body_max bytes */
    size_t body_len, body_max;

    char error[HCLIENT_ERROR_MAX];
};

static bool field_ok(const char *s, bool allow_empty)
{
    if (s == NULL || (!allow_empty && *s == '\0'))
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static void hc_close(struct hclient *h)
{
    if (h->ssl) {
        SSL_free(h->ssl);
        h->ssl = NULL;
    }
    if (h->fd >= 0) {
        ev_del(h->loop, h->fd);
        close(h->fd);
        h->fd = -1;
    }
    ev_timer_cancel(h->loop, &h->deadline);
    ev_timer_cancel(h->loop, &h->defer);
}

static void hc_free(struct hclient *h)
{
    hc_close(h);
    sbuf_free(&h->req);
    free(h->body);
    free(h);
}

/* The one way an exchange ends: error NULL for a whole response. */
static void hc_finish(struct hclient *h, const char *error)
{
    RP_ASSERT(h->phase != HC_DONE);
    h->phase = HC_DONE;
    hc_close(h);
    uint64_t now = ev_now(h->loop);
    struct hclient_result r = {
        .status = h->status,
        .error = error,
        .body = h->body ? h->body : "",
        .body_len = h->body_len,
        .ttfb_us = h->ttfb_us,
        .total_us = now > h->started_us ? now - h->started_us : 0,
    };
    h->fn(h->arg, &r);
    hc_free(h);
}

static void hc_fail_errno(struct hclient *h, const char *what, int err)
{
    rp_snprintf(h->error, sizeof h->error, "%s: %s", what, strerror(err));
    hc_finish(h, h->error);
}

/* ---- transport: plain socket or TLS ----
 *
 * hc_recv/hc_send return bytes moved, 0 at the peer's end of stream, or
 * RP_AGAIN (try when the loop says so; the wanted events are set) or
 * RP_ERR (h->error says why). */

static void hc_tls_error(struct hclient *h, const char *what)
{
    unsigned long e = ERR_get_error();
    long v = h->ssl ? SSL_get_verify_result(h->ssl) : X509_V_OK;
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    if (v != X509_V_OK)
        rp_snprintf(h->error, sizeof h->error, "tls: %s: %s", what, X509_verify_cert_error_string(v));
    else if (why)
        rp_snprintf(h->error, sizeof h->error, "tls: %s: %s", what, why);
    else
        rp_snprintf(h->error, sizeof h->error, "tls: %s failed", what);
    ERR_clear_error();
}

/* Maps an SSL_* result to RP_AGAIN (events to wait for set) or RP_ERR. */
static int hc_tls_want(struct hclient *h, int rc, const char *what)
{
    int e = SSL_get_error(h->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (ev_mod(h->loop, h->fd, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE) != RP_OK) {
            rp_snprintf(h->error, sizeof h->error, "watch: %s", strerror(errno));
            return RP_ERR;
        }
        return RP_AGAIN;
    }
    if (e == SSL_ERROR_SYSCALL && errno != 0 && ERR_peek_error() == 0)
        rp_snprintf(h->error, sizeof h->error, "%s: %s", what, strerror(errno));
    else
        hc_tls_error(h, what);
    return RP_ERR;
}

static ssize_t hc_recv(struct hclient *h, char *dst, size_t cap)
{
    if (h->ssl == NULL) {
        for (;;) {
            ssize_t n = recv(h->fd, dst, cap, 0);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RP_AGAIN;
            rp_snprintf(h->error, sizeof h->error, "recv: %s", strerror(errno));
            return RP_ERR;
        }
    }
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(h->ssl, dst, (int)RP_MIN(cap, (size_t)INT32_MAX));
    if (n > 0)
        return n;
    int e = SSL_get_error(h->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0; /* close_notify: a clean end */
    /* A TCP close without close_notify is an end the peer did not sign:
     * acceptable where the framing already says the response is whole (the
     * caller finishes before reading again), a cut for close-delimited
     * bodies, so it is an error here. */
    return hc_tls_want(h, n, "recv");
}

static ssize_t hc_send_raw(struct hclient *h, const char *src, size_t len)
{
    if (h->ssl == NULL) {
        for (;;) {
            ssize_t n = send(h->fd, src, len, MSG_NOSIGNAL);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RP_AGAIN;
            rp_snprintf(h->error, sizeof h->error, "send: %s", strerror(errno));
            return RP_ERR;
        }
    }
    ERR_clear_error();
    errno = 0;
    int n = SSL_write(h->ssl, src, (int)RP_MIN(len, (size_t)INT32_MAX));
    if (n > 0)
        return n;
    return hc_tls_want(h, n, "send");
}

static void keep_body(struct hclient *h, const char *data, size_t len)
{
    size_t room = h->body_max - h->body_len;
    size_t n = RP_MIN(room, len);
    if (n > 0) {
        memcpy(h->body + h->body_len, data, n);
        h->body_len += n;
    }
}

static void on_chunk_data(void *arg, const char *data, size_t len)
{
    keep_body(arg, data, len);
}

/* Body bytes in data[len].  True when the exchange ended (h is gone). */
static bool hc_body(struct hclient *h, const char *data, size_t len)
{
    switch (h->framing) {
    case H1_BODY_NONE: hc_finish(h, NULL); return true;
    case H1_BODY_LENGTH: {
        size_t n = len < h->left ? len : (size_t)h->left;
        keep_body(h, data, n);
        h->left -= n;
        if (h->left == 0) {
            hc_finish(h, NULL);
            return true;
        }
        return false;
    }
    case H1_BODY_CHUNKED: {
        ssize_t n = h1_chunked_feed(&h->chunked, data, len, on_chunk_data, h);
        if (n < 0) {
            rp_snprintf(h->error, sizeof h->error, "bad response: %s",
                        h->chunked.error ? h->chunked.error : "chunked coding");
            hc_finish(h, h->error);
            return true;
        }
        if (h->chunked.done) {
            hc_finish(h, NULL);
            return true;
        }
        return false;
    }
    case H1_BODY_CLOSE: keep_body(h, data, len); return false;
    }
    return false;
}

/* The peer closed.  Ends the exchange. */
static void hc_eof(struct hclient *h)
{
    if (!h->have_head) {
        hc_finish(h, h->in_len == 0 ? "closed before a response" : "bad response: cut inside the head");
        return;
    }
    hc_finish(h, h->framing == H1_BODY_CLOSE ? NULL : "response cut short");
}

/* True when the exchange ended. */
static bool hc_parse_head(struct hclient *h)
{
    static const struct h1_limits lim = {.max_header_bytes = HCLIENT_HEAD_MAX, .max_headers = HCLIENT_HEADERS_MAX};
    int n = h1_parse_response(h->in, h->in_len, &h->msg, &lim, h->head_request);
    if (n == RP_AGAIN) {
        if (h->in_len == sizeof h->in) {
            hc_finish(h, "bad response: head too large");
            return true;
        }
        return false;
    }
    if (n < 0) {
        rp_snprintf(h->error, sizeof h->error, "bad response: %s", h->msg.error ? h->msg.error : "malformed head");
        hc_finish(h, h->error);
        return true;
    }
    if (h->msg.status >= 100 && h->msg.status < 200) {
        /* An interim answer (100 Continue): the real one follows. */
        size_t rest = h->in_len - (size_t)n;
        memmove(h->in, h->in + n, rest);
        h->in_len = rest;
        h1_message_init(&h->msg, h->hdrs, HCLIENT_HEADERS_MAX);
        return rest > 0 ? hc_parse_head(h) : false;
    }
    h->have_head = true;
    h->ttfb_us = ev_now(h->loop) - h->started_us;
    h->status = h->msg.status;
    h->framing = h->msg.framing;
    h->left = h->msg.content_length;
    if (h->framing == H1_BODY_LENGTH && h->left == 0)
        h->framing = H1_BODY_NONE;
    if (h->framing == H1_BODY_NONE) {
        hc_finish(h, NULL);
        return true;
    }
    size_t rest = h->in_len - (size_t)n;
    return rest > 0 && hc_body(h, h->in + n, rest);
}

static void hc_read(struct hclient *h)
{
    char tmp[16384];
    for (;;) {
        char *dst;
        size_t cap;
        if (h->have_head) {
            dst = tmp;
            cap = sizeof tmp;
        } else {
            dst = h->in + h->in_len;
            cap = sizeof h->in - h->in_len;
        }
        ssize_t n = hc_recv(h, dst, cap);
        if (n == RP_AGAIN)
            return;
        if (n == RP_ERR) {
            hc_finish(h, h->error);
            return;
        }
        if (n == 0) {
            hc_eof(h);
            return;
        }
        if (h->have_head) {
            if (hc_body(h, tmp, (size_t)n))
                return;
        } else {
            h->in_len += (size_t)n;
            if (hc_parse_head(h))
                return;
        }
    }
}

static void hc_send(struct hclient *h)
{
    while (h->sent < h->req.len) {
        ssize_t n = hc_send_raw(h, h->req.data + h->sent, h->req.len - h->sent);
        if (n == RP_AGAIN)
            return;
        if (n < 0) {
            hc_finish(h, h->error);
            return;
        }
        h->sent += (size_t)n;
    }
    h->phase = HC_READING;
    if (ev_mod(h->loop, h->fd, EV_READ) != RP_OK)
        hc_fail_errno(h, "watch", errno);
    else if (h->ssl && SSL_pending(h->ssl) > 0)
        hc_read(h);
}

static void hc_handshake(struct hclient *h)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(h->ssl);
    if (rc == 1) {
        h->phase = HC_SENDING;
        if (ev_mod(h->loop, h->fd, EV_WRITE) != RP_OK)
            hc_fail_errno(h, "watch", errno);
        else
            hc_send(h);
        return;
    }
    if (hc_tls_want(h, rc, "handshake") == RP_ERR)
        hc_finish(h, h->error);
}

/* The connection is up: start TLS, or send. */
static void hc_connected(struct hclient *h)
{
    if (h->ssl) {
        if (SSL_set_fd(h->ssl, h->fd) != 1) {
            hc_tls_error(h, "set up");
            hc_finish(h, h->error);
            return;
        }
        h->phase = HC_HANDSHAKE;
        hc_handshake(h);
        return;
    }
    h->phase = HC_SENDING;
    hc_send(h);
}

static void hc_io(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct hclient *h = arg;
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    RP_UNUSED(events);
    switch (h->phase) {
    case HC_CONNECTING: {
        int err = net_connect_result(h->fd);
        if (err != 0) {
            hc_fail_errno(h, "connect", err);
            return;
        }
        hc_connected(h);
        return;
    }
    case HC_HANDSHAKE: hc_handshake(h); return;
    case HC_SENDING: hc_send(h); return;
    case HC_READING: hc_read(h); return;
    case HC_DONE: return;
    }
}

static void hc_deadline(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    hc_finish(arg, "timeout");
}

static void hc_deferred(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct hclient *h = arg;
    hc_finish(h, h->error);
}

/* The TLS session of h, verifying tls_name (or host without its port). */
static int hc_tls_setup(struct hclient *h, const struct hclient_req *rq)
{
    const char *name = rq->tls_name;
    size_t len;
    if (name) {
        len = strlen(name);
    } else {
        /* "[::1]:8443" -> "::1", "example.com:8443" -> "example.com" */
        name = rq->host;
        len = strlen(name);
        if (name[0] == '[') {
            const char *close_br = strchr(name, ']');
            if (close_br == NULL)
                return RP_ERR;
            name++;
            len = (size_t)(close_br - name);
        } else {
            const char *colon = strrchr(name, ':');
            if (colon && strchr(name, ':') == colon)
                len = (size_t)(colon - name);
        }
    }
    if (len == 0 || len >= sizeof h->tls_name)
        return RP_ERR;
    memcpy(h->tls_name, name, len);
    h->tls_name[len] = '\0';
    h->ssl = SSL_new(rq->tls_ctx);
    if (h->ssl == NULL)
        return RP_ERR;
    SSL_set_connect_state(h->ssl);
    struct in6_addr ip6;
    struct in_addr ip4;
    bool is_ip = inet_pton(AF_INET, h->tls_name, &ip4) == 1 || inet_pton(AF_INET6, h->tls_name, &ip6) == 1;
    if (is_ip) {
        /* An address is checked against the certificate's IP entries and is
         * not sent as SNI (RFC 6066 3). */
        X509_VERIFY_PARAM *vp = SSL_get0_param(h->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, h->tls_name) != 1)
            return RP_ERR;
    } else {
        if (SSL_set_tlsext_host_name(h->ssl, h->tls_name) != 1 || SSL_set1_host(h->ssl, h->tls_name) != 1)
            return RP_ERR;
    }
    SSL_set_verify(h->ssl, SSL_VERIFY_PEER, NULL);
    return RP_OK;
}

struct hclient *hclient_start(struct ev_loop *loop, const struct hclient_req *rq, hclient_done_fn fn, void *arg)
{
    if (!field_ok(rq->method, false) || !field_ok(rq->host, false) || !field_ok(rq->target, false) || fn == NULL ||
        rq->addr == NULL)
        return NULL;
    size_t body_len = rq->body ? rq->body_len : 0;
    if (body_len > HCLIENT_REQ_MAX)
        return NULL;
    struct hclient *h = rp_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->fn = fn;
    h->arg = arg;
    h->fd = -1;
    ev_timer_init(&h->deadline, hc_deadline, h);
    ev_timer_init(&h->defer, hc_deferred, h);
    h->started_us = ev_now(loop);
    h->head_request = strcmp(rq->method, "HEAD") == 0;
    h1_message_init(&h->msg, h->hdrs, HCLIENT_HEADERS_MAX);
    h1_chunked_init(&h->chunked);
    h->body_max = rq->body_max;
    h->body = rq->body_max ? rp_xmalloc(rq->body_max) : NULL;

    sbuf_init(&h->req, HCLIENT_REQ_MAX + 8192);
    sbuf_printf(&h->req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: rampart/%s\r\n", rq->method,
                rq->target, rq->host, RP_VERSION);
    if (rq->headers)
        sbuf_adds(&h->req, rq->headers);
    if (body_len > 0 || strcmp(rq->method, "POST") == 0 || strcmp(rq->method, "PUT") == 0)
        sbuf_printf(&h->req, "Content-Length: %zu\r\n", body_len);
    sbuf_add(&h->req, "\r\n", 2);
    if (body_len > 0)
        sbuf_add(&h->req, rq->body, body_len);
    if (h->req.truncated) {
        hc_free(h);
        return NULL;
    }
    if (rq->tls_ctx && hc_tls_setup(h, rq) != RP_OK) {
        hc_free(h);
        return NULL;
    }

    uint64_t timeout = rq->timeout_us ? rq->timeout_us : 10000000u;
    ev_timer_arm(loop, &h->deadline, timeout);
    int fd = -1;
    int rc = net_connect(rq->addr, rq->addr_len, &fd);
    if (rc == RP_ERR) {
        rp_snprintf(h->error, sizeof h->error, "connect: %s", strerror(errno));
        ev_timer_arm(loop, &h->defer, 0);
        return h;
    }
    h->fd = fd;
    h->phase = HC_CONNECTING; /* a connect that completed at once shows as writable */
    if (ev_add(loop, fd, EV_WRITE, hc_io, h) != RP_OK) {
        rp_snprintf(h->error, sizeof h->error, "watch: %s", strerror(errno));
        close(fd);
        h->fd = -1;
        ev_timer_arm(loop, &h->defer, 0);
    }
    return h;
}

void hclient_cancel(struct hclient *h)
{
    if (h == NULL)
        return;
    RP_ASSERT(h->phase != HC_DONE);
    hc_free(h);
}

struct ssl_ctx_st *hclient_tls_ctx_new(const char *ca_file, char *err, size_t err_cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        rp_snprintf(err, err_cap, "cannot create a TLS context: %s", ERR_reason_error_string(ERR_get_error()));
        return NULL;
    }
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file && access(ca_file, R_OK) != 0) {
        rp_snprintf(err, err_cap, "%s: %s", ca_file, strerror(errno));
        SSL_CTX_free(ctx);
        return NULL;
    }
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        const char *why = ERR_reason_error_string(ERR_get_error());
        rp_snprintf(err, err_cap, "%s: cannot load trust anchors: %s", ca_file ? ca_file : "system trust store",
                    why ? why : "no PEM certificate found");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void hclient_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- name resolution ---- */

#define RESOLVE_HOST_MAX 256
#define RESOLVE_PORT_MAX 32

struct hclient_resolve {
    struct ev_loop *loop;
    hclient_resolved_fn fn;
    void *arg;
    int efd;               /* the thread writes here when done */
    struct ev_timer defer; /* numeric hosts: delivered on the next pass */
    atomic_int refs;       /* the loop's and the thread's */
    atomic_bool cancelled; /* set by the loop: the thread only cleans up */
    char host[RESOLVE_HOST_MAX];
    char port[RESOLVE_PORT_MAX];
    /* written by the thread before it signals, read by the loop after */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char error[HCLIENT_ERROR_MAX];
};

static atomic_int resolvers_running;

static void resolve_unref(struct hclient_resolve *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        if (r->efd >= 0)
            close(r->efd);
        free(r);
    }
}

static void resolve_lookup(struct hclient_resolve *r, int flags)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = flags};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->host, r->port, &hints, &res);
    if (rc != 0 || res == NULL) {
        rp_snprintf(r->error, sizeof r->error, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        r->addr_len = 0;
    } else {
        RP_ASSERT(res->ai_addrlen <= sizeof r->addr);
        memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
        r->addr_len = res->ai_addrlen;
        r->error[0] = '\0';
    }
    if (res)
        freeaddrinfo(res);
}

static void *resolve_thread(void *arg)
{
    struct hclient_resolve *r = arg;
    if (!atomic_load(&r->cancelled))
        resolve_lookup(r, AI_ADDRCONFIG);
    uint64_t one = 1;
    /* The loop may have stopped watching (cancelled): the write is then
     * harmless, the descriptor still belongs to r until the last unref. */
    ssize_t n = write(r->efd, &one, sizeof one);
    RP_UNUSED(n);
    atomic_fetch_sub(&resolvers_running, 1);
    resolve_unref(r);
    return NULL;
}

static void resolve_deliver(struct hclient_resolve *r)
{
    if (r->addr_len > 0)
        r->fn(r->arg, (const struct sockaddr *)&r->addr, r->addr_len, NULL);
    else
        r->fn(r->arg, NULL, 0, r->error[0] ? r->error : "name not resolved");
}

static void resolve_io(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct hclient_resolve *r = arg;
    RP_UNUSED(events);
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof v);
    if (n != (ssize_t)sizeof v)
        return; /* spurious wake-up: the thread has not written yet */
    ev_del(loop, fd);
    resolve_deliver(r);
    resolve_unref(r);
}

static void resolve_deferred(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct hclient_resolve *r = arg;
    resolve_deliver(r);
    resolve_unref(r);
}

struct hclient_resolve *hclient_resolve_start(struct ev_loop *loop, const char *host, const char *port,
                                              hclient_resolved_fn fn, void *arg)
{
    if (host == NULL || port == NULL || fn == NULL || *host == '\0' || *port == '\0' ||
        strlen(host) >= RESOLVE_HOST_MAX || strlen(port) >= RESOLVE_PORT_MAX)
        return NULL;
    struct hclient_resolve *r = rp_xcalloc(1, sizeof *r);
    r->loop = loop;
    r->fn = fn;
    r->arg = arg;
    r->efd = -1;
    ev_timer_init(&r->defer, resolve_deferred, r);
    rp_snprintf(r->host, sizeof r->host, "%s", host);
    rp_snprintf(r->port, sizeof r->port, "%s", port);

    /* Numeric hosts (the common case on loopback and in tests) need no
     * thread: getaddrinfo with AI_NUMERICHOST does not block. */
    resolve_lookup(r, AI_NUMERICHOST | AI_NUMERICSERV);
    if (r->addr_len > 0) {
        atomic_init(&r->refs, 1);
        ev_timer_arm(loop, &r->defer, 0);
        return r;
    }
    r->error[0] = '\0';

    if (atomic_fetch_add(&resolvers_running, 1) >= HCLIENT_RESOLVERS_MAX) {
        atomic_fetch_sub(&resolvers_running, 1);
        free(r);
        return NULL;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0 || ev_add(loop, r->efd, EV_READ, resolve_io, r) != RP_OK)
        goto fail;
    atomic_init(&r->refs, 2);
    pthread_attr_t attr;
    pthread_t tid;
    if (pthread_attr_init(&attr) != 0)
        goto fail_watch;
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void)pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&tid, &attr, resolve_thread, r);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail_watch;
    return r;

fail_watch:
    ev_del(loop, r->efd);
fail:
    atomic_fetch_sub(&resolvers_running, 1);
    if (r->efd >= 0)
        close(r->efd);
    free(r);
    return NULL;
}

void hclient_resolve_cancel(struct hclient_resolve *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->cancelled, true);
    if (r->efd >= 0)
        ev_del(r->loop, r->efd);
    ev_timer_cancel(r->loop, &r->defer);
    resolve_unref(r);
}

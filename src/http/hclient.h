/*
 * hclient.h — one outgoing HTTP/1.1 exchange on the event loop.
 *
 * For rampart's own requests to other services (webhook deliveries,
 * synthetic probes): connect, send one request with "Connection: close",
 * read the response head with the h1 parser and a bounded part of its body
 * (Content-Length, chunked or close-delimited), all non-blocking and under
 * one deadline.  It is not the proxy's upstream path: no pooling, no
 * streaming to a client.
 *
 * Contract:
 *   - the request fields are copied by hclient_start; the caller's memory
 *     may go at once;
 *   - fn is called exactly once, from the loop, never from inside
 *     hclient_start (a failure to connect is reported on the next loop
 *     pass), unless hclient_cancel was called first;
 *   - after fn returns the handle is gone (do not cancel it);
 *   - memory is bounded: the head by HCLIENT_HEAD_MAX, the kept body by
 *     body_max; the rest of the body is read and dropped.
 *
 * Names are resolved apart (hclient_resolve_start), in a short-lived
 * thread, because getaddrinfo blocks and nothing may block the loop.
 *
 * HTTPS: give a client context (hclient_tls_ctx_new) in the request.  The
 * peer's certificate must chain to the context's trust anchors and name
 * the request's tls_name (default: host without its port); a failed check
 * ends the exchange with "tls: ..." before any byte of the request leaves.
 */
#ifndef RP_HCLIENT_H
#define RP_HCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

#define HCLIENT_HEAD_MAX (16 * 1024)  /* response head bytes */
#define HCLIENT_HEADERS_MAX 64        /* response header fields */
#define HCLIENT_REQ_MAX (1024 * 1024) /* request head + body bytes */
#define HCLIENT_ERROR_MAX 96
#define HCLIENT_RESOLVERS_MAX 16 /* resolutions running at once */

struct hclient_req {
    const struct sockaddr *addr; /* where to connect */
    socklen_t addr_len;
    const char *method;  /* "GET", "POST", ... */
    const char *host;    /* Host header value */
    const char *target;  /* "/path?query" */
    const char *headers; /* extra header lines, each ending "\r\n"; may be NULL */
    const char *body;    /* request body (Content-Length is added); may be NULL */
    size_t body_len;
    uint64_t timeout_us;        /* bound on the whole exchange; 0 = 10 s */
    size_t body_max;            /* response body bytes kept (the rest is read and dropped) */
    struct ssl_ctx_st *tls_ctx; /* HTTPS when set (hclient_tls_ctx_new) */
    const char *tls_name;       /* name to verify and send as SNI; NULL: host without ":port" */
};

struct hclient_result {
    int status;        /* HTTP status; 0 when there was no valid response */
    const char *error; /* NULL when a whole response arrived; else a short
                          reason: "connect: Connection refused", "timeout",
                          "bad response: ...", "response cut short" (status
                          then set), ... */
    const char *body;  /* the kept response body (valid during the callback) */
    size_t body_len;
    uint64_t ttfb_us;  /* from start to the response head (0: none) */
    uint64_t total_us; /* from start to the end */
};

struct hclient;
typedef void (*hclient_done_fn)(void *arg, const struct hclient_result *r);

/* Start an exchange.  NULL when the request is invalid (no method, host or
 * target, CR/LF in them, over HCLIENT_REQ_MAX); nothing is called then. */
struct hclient *hclient_start(struct ev_loop *loop, const struct hclient_req *rq, hclient_done_fn fn, void *arg);
/* Abandon an exchange whose fn has not been called; fn never will be. */
void hclient_cancel(struct hclient *h);

/* A TLS client context that verifies peers against ca_file (PEM), or the
 * system's trust store when ca_file is NULL; TLS 1.2 at least.  NULL with a
 * reason in err on failure.  Free with hclient_tls_ctx_free. */
struct ssl_ctx_st *hclient_tls_ctx_new(const char *ca_file, char *err, size_t err_cap);
void hclient_tls_ctx_free(struct ssl_ctx_st *ctx);

/* ---- name resolution ---- */

struct hclient_resolve;
/* addr is the first address getaddrinfo gave (valid during the call), or
 * NULL with error set ("Name or service not known", ...). */
typedef void (*hclient_resolved_fn)(void *arg, const struct sockaddr *addr, socklen_t len, const char *error);
/* Resolve host and port (a number or a service name) for a TCP connection.
 * A numeric host is converted at once; a name is looked up in a thread.
 * Same rules as hclient_start: fn once, from the loop, never from inside;
 * no call after hclient_resolve_cancel.  The caller bounds the time (cancel
 * on its own timer); the handle is gone once fn has been called.  NULL
 * when host or port is empty or too long, or when HCLIENT_RESOLVERS_MAX
 * lookups are already running. */
struct hclient_resolve *hclient_resolve_start(struct ev_loop *loop, const char *host, const char *port,
                                              hclient_resolved_fn fn, void *arg);
void hclient_resolve_cancel(struct hclient_resolve *r);

#endif

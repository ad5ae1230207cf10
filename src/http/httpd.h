/*
 * httpd.h — a small embedded HTTP/1.1 server for rampart's own endpoints
 * (admin API, metrics, the public status page).  Not the proxy path.
 *
 * Each accepted connection reads one request at a time (h1 parser, bounded
 * head and body), calls the handler synchronously, writes the response, and
 * keeps the connection alive per HTTP/1.1 rules.  Handlers build their whole
 * response in memory (an sbuf), which suits small JSON/HTML documents; they
 * must not block.  Slow or idle peers are timed out.  The server runs on
 * the same event loop as the proxy but on its own listener, so it keeps
 * answering while upstreams are down or the proxy is saturated.
 */
#ifndef RP_HTTPD_H
#define RP_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "buf.h"
#include "ev.h"
#include "h1.h"

struct httpd;

struct httpd_request {
    const struct h1_message *msg; /* method, headers, ... */
    struct h1_str path;           /* target without the query string */
    struct h1_str query;          /* after '?', may be empty */
    const char *body;             /* request body (Content-Length or chunked, decoded) */
    size_t body_len;
    const char *peer; /* client address as text */
};

struct httpd_response {
    int status;               /* default 200 */
    const char *content_type; /* default "application/json" */
    struct sbuf headers;      /* extra header lines, each ending in \r\n */
    struct sbuf body;
};

/* Called once per complete request, on the loop thread.  resp arrives with
 * status 200, no content type (application/json is sent) and empty
 * builders.  The request's views are valid only during the call.  A
 * handler may call httpd_stop_accepting() but must not free the server it
 * runs in. */
typedef void (*httpd_handler)(void *arg, const struct httpd_request *req, struct httpd_response *resp);

struct httpd_opts {
    size_t max_body;             /* default 1 MiB -> 413 */
    size_t max_connections;      /* default 1024 */
    uint64_t idle_timeout_us;    /* default 30s */
    uint64_t request_timeout_us; /* whole request within, default 10s */
};

/* Listen on addr and serve with handler.  NULL on error (logged, naming the
 * address and errno).  opts may be NULL for defaults. */
struct httpd *httpd_start(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addrlen, const char *name,
                          httpd_handler handler, void *arg, const struct httpd_opts *opts);
/* Stop accepting and close idle connections; busy ones finish. */
void httpd_stop_accepting(struct httpd *h);
/* Close everything and free. */
void httpd_free(struct httpd *h);
/* Port actually bound (useful with port 0). */
int httpd_port(const struct httpd *h);

/* The request path of one connection without sockets, timers or a loop
 * (tests and fuzzing): the bytes a client sends arrive in npieces reads
 * (pieces[i], lens[i]), then the client half-closes.  Each response, with
 * its head, is appended to out as it would be written.  Returns the number
 * of responses (interim 100 Continue not counted). */
size_t httpd_serve_bytes(const char *name, httpd_handler handler, void *arg, const struct httpd_opts *opts,
                         const char *const *pieces, const size_t *lens, size_t npieces, struct sbuf *out);

/* Helpers for handlers. */
/* Replace the response with an error in the OpenAI shape:
 * {"error":{"message":...,"type":...,"param":null,"code":null}}. */
void httpd_json_error(struct httpd_response *resp, int status, const char *type, const char *message);
/* Same with a machine-readable code string (NULL gives null). */
void httpd_json_error_code(struct httpd_response *resp, int status, const char *type, const char *code,
                           const char *message);
bool httpd_path_is(const struct httpd_request *req, const char *path);
void httpd_add_header(struct httpd_response *resp, const char *name, const char *value);

#endif

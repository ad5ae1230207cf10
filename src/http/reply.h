/*
 * reply.h — the one writer of locally generated HTTP responses.
 *
 * Every response rampart makes up itself (the proxy's refusals and errors,
 * the admin and status listeners, llmsim) is written here, so they share
 * one error shape and one set of framing rules:
 *   - the body of an error is OpenAI's:
 *       {"error":{"message":"...","type":"...","param":null|"...","code":null|"..."}}
 *     with every string JSON-escaped (a message may quote client text);
 *   - the head carries Content-Length (none for 204/304), the connection
 *     decision (reply_conn()) and the caller's extra header lines.
 * Pure formatting into a struct sbuf; no I/O.  A truncated sbuf means the
 * reply did not fit: the caller must not send it (sbuf.truncated).
 */
#ifndef RP_REPLY_H
#define RP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* The error "type" for an HTTP status, as OpenAI's API names them
 * (invalid_request_error, not_found_error, rate_limit_exceeded,
 * overloaded, upstream_error, server_error). */
const char *reply_error_type(int status);

/* What a reply says about the connection. */
enum reply_conn {
    REPLY_CONN_NONE = 0,   /* HTTP/1.1 keep-alive: say nothing */
    REPLY_CONN_CLOSE,      /* "Connection: close" */
    REPLY_CONN_KEEP_ALIVE, /* "Connection: keep-alive" (HTTP/1.0 keeps alive only when told) */
};

/* The connection header for a reply: close when asked, keep-alive spelled
 * out for an HTTP/1.0 client, nothing otherwise. */
enum reply_conn reply_conn(bool close, int client_minor);

/* Append the OpenAI error object (and a newline) to out.  type NULL means
 * reply_error_type(status); param and code NULL are JSON null. */
void reply_error_body(struct sbuf *out, int status, const char *type, const char *param, const char *code,
                      const char *message);

struct reply_head {
    int status;
    const char *content_type; /* NULL: application/json */
    size_t content_length;    /* ignored for 204 and 304, which carry no body */
    enum reply_conn conn;
    const char *request_id;    /* "X-Request-Id: ..." when not NULL or "" */
    const char *extra_headers; /* complete "Name: value\r\n" lines, or NULL */
    bool date;                 /* add a Date header */
};

/* Append the status line and headers, ending with the empty line. */
void reply_head(struct sbuf *out, const struct reply_head *h);

/* Head and error body together: the whole response for a local error. */
void reply_error(struct sbuf *out, const struct reply_head *h, const char *type, const char *code, const char *message);

/* Whether a response with this status carries no body (204, 304, 1xx). */
bool reply_status_no_body(int status);

#endif

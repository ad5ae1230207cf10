/*
 * accesslog.h — one JSON line per finished request.
 *
 * What is logged is fixed here, not configurable, so that nothing secret
 * can be added by accident: never bodies, query strings, Authorization,
 * cookies or API keys (tenants appear only as their hashed short id).
 */
#ifndef RP_ACCESSLOG_H
#define RP_ACCESSLOG_H

#include <stdint.h>

struct accesslog;

struct accesslog_entry {
    int64_t time_ms; /* wall clock when the request finished */
    const char *request_id;
    const char *method;
    const char *path;                                      /* without the query string */
    const char *client;                                    /* client IP */
    const char *tenant;                                    /* hashed short id, or NULL */
    int status;                                            /* status sent (499: client left first) */
    uint64_t bytes_in;                                     /* request body bytes */
    uint64_t bytes_out;                                    /* response bytes sent to the client */
    const char *upstream;                                  /* upstream name, or NULL */
    const char *server;                                    /* server address, or NULL */
    const char *outcome;                                   /* "ok", "client_abort", "upstream_timeout", ... */
    int64_t queue_us, connect_us, first_byte_us, total_us; /* -1: not reached */
};

/* spec: "stdout", "stderr", "off", or a file path (appended). NULL on error
 * (logged). */
struct accesslog *accesslog_open(const char *spec);
void accesslog_write(struct accesslog *log, const struct accesslog_entry *e);
void accesslog_flush(struct accesslog *log);
void accesslog_close(struct accesslog *log);

#endif

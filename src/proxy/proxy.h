/*
 * proxy.h — the reverse proxy: client connections, request forwarding and
 * response streaming.
 */
#ifndef RP_PROXY_H
#define RP_PROXY_H

#include "accesslog.h"
#include "config.h"
#include "ev.h"
#include "upstream.h"

struct proxy;

/* Create the proxy and bind its listeners.  NULL on error (logged with the
 * address and cause). */
struct proxy *proxy_create(struct ev_loop *loop, const struct config *cfg, struct accesslog *log);
/* Stop accepting, close idle client connections, and let requests in
 * flight finish.  done(arg) runs once no client connection is left. */
void proxy_drain(struct proxy *px, void (*done)(void *arg), void *arg);
/* Client connections currently open. */
size_t proxy_connections(const struct proxy *px);
/* Bound listener port (the first), for tests using port 0. */
int proxy_port(const struct proxy *px);
void proxy_free(struct proxy *px);

struct status;
/* Feed finished requests to the status model (may be NULL). */
void proxy_set_status(struct proxy *px, struct status *st);

#endif

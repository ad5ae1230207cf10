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

/* Create the proxy: upstreams, pools, admission, tenants.  It accepts
 * nothing until given listening sockets (proxy_listen), so the wiring can
 * start everything else first. */
struct proxy *proxy_create(struct ev_loop *loop, const struct config *cfg, struct accesslog *log);
/* Accept client connections on the listening socket fd (non-blocking),
 * which the proxy now owns and closes when it drains or is freed; name is
 * for messages.  RP_ERR (logged, fd closed) when it cannot be watched. */
int proxy_listen(struct proxy *px, int fd, const char *name);
/* The proxy's own families of /metrics, its admission's and its
 * tenants' (metrics_register, in page order). */
void proxy_register_metrics(struct proxy *px);
struct sbuf;
void proxy_metrics_render(struct sbuf *out, void *arg);
/* The upstreams and their release-safety instances (canaries, health
 * checkers, ...), for the wiring of the admin API and the status page. */
struct upstream_set *proxy_upstreams(const struct proxy *px);
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

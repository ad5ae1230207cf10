/*
 * admin.h — the admin listener: /metrics, /healthz, and the write APIs that
 * subsystems register (incidents, maintenance, canary control).
 *
 * Reads are open on the admin listener (which binds to loopback by
 * default); every non-GET route requires "Authorization: Bearer <token>"
 * where the token comes from the file named by admin.token_file.  Without a
 * token file, write routes answer 403 with an explanation.
 */
#ifndef RP_ADMIN_H
#define RP_ADMIN_H

#include "ev.h"
#include "httpd.h"
#include "server.h"

struct admin;

/* A subsystem's handler for every request whose path starts with prefix. */
void admin_route(struct admin *a, const char *prefix, httpd_handler handler, void *arg);

/* Listen on listen (NULL: "no admin listener configured", NULL); writes
 * need the token read from token_file (NULL: writes disabled). */
struct admin *admin_start(struct ev_loop *loop, const struct server_addr *listen, const char *token_file);
void admin_stop_accepting(struct admin *a);
void admin_free(struct admin *a);
int admin_port(const struct admin *a);

#endif

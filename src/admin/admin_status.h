/*
 * admin_status.h — the admin API for the status page: incidents and
 * scheduled maintenances, in Statuspage's shape.
 *
 *   GET  PREFIX                        list
 *   POST PREFIX                        create
 *   GET  PREFIX/ID, PATCH PREFIX/ID    read, edit
 *   POST PREFIX/ID/updates             add an update
 *   PATCH PREFIX/ID/updates/UID        edit an update's body
 *
 * with PREFIX /api/v1/incidents or /api/v1/maintenances.  This file only
 * routes; what each request does is the status subsystem's (status_ops_*
 * in status.h).  main.c registers it for both prefixes:
 *
 *     admin_route(admin, "/api/v1/incidents", admin_status_handler, st);
 *     admin_route(admin, "/api/v1/maintenances", admin_status_handler, st);
 */
#ifndef RP_ADMIN_STATUS_H
#define RP_ADMIN_STATUS_H

#include "httpd.h"

struct status;

/* httpd_handler for both prefixes; arg is the struct status. */
void admin_status_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp);

/* Run one request (method, path, JSON body or NULL) as if it came through
 * the admin listener (tests).  resp's sbufs must be initialised. */
void admin_status_request(struct status *st, const char *method, const char *path, const char *body,
                          struct httpd_response *resp);

#endif

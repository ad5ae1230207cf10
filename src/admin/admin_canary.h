/*
 * admin_canary.h — the admin API of the canaries: read their state and
 * steer a rollout by hand.
 *
 *   GET  /api/v1/canary          {"canaries":[<state>...]}
 *   GET  /api/v1/canary/<name>   <state> (canary_render_json)
 *   POST /api/v1/canary/<name>   {"action":"pause"|"resume"|"rollback"|"promote"|"set_weight",
 *                                 "weight":N (percent, set_weight), "reason":"..." (optional)}
 *   (POST /api/v1/canary works too when exactly one canary exists.)
 *
 * This file only parses and routes; what an action does is canary.c's
 * (canary_pause, canary_set_weight, ...).  Writes are authorized by
 * admin.c before the handler runs.  main.c registers it with the canaries
 * of the upstream set.
 */
#ifndef RP_ADMIN_CANARY_H
#define RP_ADMIN_CANARY_H

#include "httpd.h"

struct admin;
struct canary_set;

#define ADMIN_CANARY_PREFIX "/api/v1/canary"

/* httpd_handler; arg is the struct canary_set (NULL: no canary). */
void canary_admin_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp);
/* admin_route(a, ADMIN_CANARY_PREFIX, canary_admin_handler, set). */
void canary_admin_register(struct admin *a, struct canary_set *set);

#endif

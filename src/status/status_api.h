/*
 * status_api.h — validation of the admin API's JSON bodies for incidents
 * and scheduled maintenance.
 *
 * Pure functions: a body goes in, either a typed request or a precise error
 * comes out (which field, what is wrong, what would be accepted).  status.c
 * applies valid requests to the store; keeping validation apart makes every
 * rule testable without a server.  A body must be valid UTF-8 (refused
 * with code invalid_utf8 and the offset of the first bad byte otherwise),
 * then it is parsed with jansson.  Messages quote at most 60 bytes of what
 * was sent, cut on a character boundary, so they stay valid UTF-8.
 *
 * Accepted bodies (unknown fields are refused, so a typo never passes
 * silently):
 *
 *   POST  /api/v1/incidents              {name, body, status?, impact?, components?}
 *   POST  /api/v1/incidents/ID/updates   {status, body, impact?, components?}
 *   PATCH /api/v1/incidents/ID           {name?, impact?}            (at least one)
 *   PATCH /api/v1/incidents/ID/updates/UID  {body}
 *   POST  /api/v1/maintenances           {name, scheduled_for, scheduled_until, body?,
 *                                         components?, auto_transition?}
 *   POST  /api/v1/maintenances/ID/updates   {status, body}
 *   PATCH /api/v1/maintenances/ID        {name?, scheduled_for?, scheduled_until?, auto_transition?}
 *   PATCH /api/v1/maintenances/ID/updates/UID  {body}
 *
 * components is either an object {"<component id or name>": "<component
 * status>"} or an array of component ids or names (status unchanged).
 */
#ifndef RP_STATUS_API_H
#define RP_STATUS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define STATUS_API_NAME_MAX 200   /* bytes */
#define STATUS_API_BODY_MAX 10000 /* bytes */
#define STATUS_API_COMPONENTS_MAX 64
/* Maintenance may be scheduled up to a year ahead and last up to a week. */
#define STATUS_API_MAINT_AHEAD_MS (366LL * 86400000)
#define STATUS_API_MAINT_LONGEST_MS (7LL * 86400000)

enum status_api_kind {
    STATUS_API_INCIDENT_CREATE,
    STATUS_API_INCIDENT_UPDATE,
    STATUS_API_INCIDENT_EDIT,
    STATUS_API_MAINT_CREATE,
    STATUS_API_MAINT_UPDATE,
    STATUS_API_MAINT_EDIT,
    STATUS_API_UPDATE_EDIT,
};

/* The known components, for resolving ids and names in requests. */
struct status_api_components {
    size_t n;
    const char *const *ids;
    const char *const *names;
};

struct status_api_req {
    bool has_name, has_body, has_status, has_impact, has_components;
    bool has_for, has_until, has_auto;
    char *name;
    char *body;
    int status; /* statuspage.h istatus */
    int impact; /* statuspage.h impact */
    size_t num_components;
    int comp[STATUS_API_COMPONENTS_MAX];        /* index into the components table */
    int comp_status[STATUS_API_COMPONENTS_MAX]; /* statuspage.h cstatus, -1 = unchanged */
    int64_t scheduled_for_ms, scheduled_until_ms;
    bool auto_transition;
};

struct status_api_error {
    int http;       /* 400 */
    char param[96]; /* the offending field, e.g. "components.chat" */
    char code[32];  /* machine-readable: missing_field, invalid_type, ... */
    char message[320];
};

/* Parse and validate body for kind.  now_ms is used for maintenance times.
 * RP_OK with *out filled (free with status_api_req_free), or RP_ERR with
 * *err filled. */
int status_api_parse(enum status_api_kind kind, const char *body, size_t len, const struct status_api_components *c,
                     int64_t now_ms, struct status_api_req *out, struct status_api_error *err);
void status_api_req_free(struct status_api_req *r);

/* Record an error (printf-style message). */
void status_api_fail(struct status_api_error *err, int http, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The error as OpenAI shapes it (reply_error_body), type invalid_request_error. */
void status_api_error_json(struct sbuf *out, const struct status_api_error *err);

#endif

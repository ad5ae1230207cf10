/*
 * statuspage.h — the public face of the status subsystem: Statuspage v2
 * compatible JSON documents, Atom/RSS feeds of incidents and maintenance,
 * and the HTML status page.
 *
 * Rendering is pure: status.c fills a struct statuspage_view (components
 * with their live status, daily bars and latency sparkline; incidents and
 * maintenances from the store) and asks for each document in turn.  Nothing
 * here reads the clock, the store or the network, so tests render synthetic
 * views and check the output byte for byte.
 *
 * The vocabulary (statuses, impacts, the overall indicator) is Atlassian
 * Statuspage's, so existing consumers parse rampart's JSON unchanged.  The
 * one addition is the component state "no data": Statuspage has no such
 * value, so JSON keeps `status` within its enumeration (the last status
 * derived from traffic, or "operational" for a component never measured)
 * and adds `rampart_status: "no_data"`; the HTML page says "No data".
 */
#ifndef RP_STATUSPAGE_H
#define RP_STATUSPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

/* Component status, ordered by severity (a day's bar shows the maximum). */
enum statuspage_cstatus {
    STATUSPAGE_NO_DATA = 0,
    STATUSPAGE_OPERATIONAL,
    STATUSPAGE_UNDER_MAINTENANCE,
    STATUSPAGE_DEGRADED_PERFORMANCE,
    STATUSPAGE_PARTIAL_OUTAGE,
    STATUSPAGE_MAJOR_OUTAGE,
    STATUSPAGE_CSTATUS_COUNT
};

/* Incident statuses, then scheduled-maintenance statuses. */
enum statuspage_istatus {
    STATUSPAGE_INVESTIGATING = 0,
    STATUSPAGE_IDENTIFIED,
    STATUSPAGE_MONITORING,
    STATUSPAGE_RESOLVED,
    STATUSPAGE_POSTMORTEM,
    STATUSPAGE_SCHEDULED,
    STATUSPAGE_IN_PROGRESS,
    STATUSPAGE_VERIFYING,
    STATUSPAGE_COMPLETED,
    STATUSPAGE_ISTATUS_COUNT
};

enum statuspage_impact {
    STATUSPAGE_IMPACT_NONE = 0,
    STATUSPAGE_IMPACT_MINOR,
    STATUSPAGE_IMPACT_MAJOR,
    STATUSPAGE_IMPACT_CRITICAL,
    STATUSPAGE_IMPACT_MAINTENANCE,
    STATUSPAGE_IMPACT_COUNT
};

/* Wire names ("major_outage", "in_progress", "critical", ...); "no_data"
 * for STATUSPAGE_NO_DATA.  NULL-terminated tables for lookups. */
extern const char *const statuspage_cstatus_names[STATUSPAGE_CSTATUS_COUNT + 1];
extern const char *const statuspage_istatus_names[STATUSPAGE_ISTATUS_COUNT + 1];
extern const char *const statuspage_impact_names[STATUSPAGE_IMPACT_COUNT + 1];
const char *statuspage_cstatus_name(int s);
const char *statuspage_istatus_name(int s);
const char *statuspage_impact_name(int s);
/* Human labels ("Major outage", "In progress"). */
const char *statuspage_cstatus_label(int s);
const char *statuspage_istatus_label(int s);
/* Is this status final (resolved/postmortem/completed)? */
bool statuspage_istatus_done(int s);

#define STATUSPAGE_DAYS 90
#define STATUSPAGE_SPARK 60

struct statuspage_day {
    int64_t day;       /* days since the epoch (UTC) */
    uint64_t eligible; /* requests that count (good + bad) */
    uint64_t good;
    int worst; /* enum statuspage_cstatus; NO_DATA when unmeasured */
};

struct statuspage_component {
    char id[STORE_CODE_MAX];
    const char *name;
    const char *description; /* may be NULL */
    int status;              /* effective status, may be STATUSPAGE_NO_DATA */
    int reported;            /* JSON "status": never NO_DATA */
    int64_t created_ms, updated_ms;
    int position;                                /* 1-based */
    double uptime;                               /* 90-day good/eligible in percent; < 0 = no data */
    struct statuspage_day days[STATUSPAGE_DAYS]; /* oldest first; the last is today */
    int32_t spark_ms[STATUSPAGE_SPARK];          /* p95 TTFB per minute, oldest first; -1 = no traffic */
    uint64_t latency_slo_ms;
};

struct statuspage_view {
    const char *page_id;
    const char *name;
    const char *url; /* public URL of the page, may be "" */
    int64_t now_ms;
    int64_t updated_ms; /* page.updated_at: the last change of anything shown */
    const struct statuspage_component *components;
    size_t num_components;
    const struct store_incident *incidents; /* both kinds, newest first */
    size_t num_incidents;
    uint64_t max_age_s; /* shown in the page footer ("refreshed every ...") */
};

enum statuspage_doc {
    STATUSPAGE_DOC_HTML = 0,
    STATUSPAGE_DOC_SUMMARY,
    STATUSPAGE_DOC_STATUS,
    STATUSPAGE_DOC_COMPONENTS,
    STATUSPAGE_DOC_INCIDENTS,
    STATUSPAGE_DOC_UNRESOLVED,
    STATUSPAGE_DOC_MAINT_ALL,
    STATUSPAGE_DOC_MAINT_UPCOMING,
    STATUSPAGE_DOC_MAINT_ACTIVE,
    STATUSPAGE_DOC_ATOM,
    STATUSPAGE_DOC_RSS,
    STATUSPAGE_DOC_COUNT
};

/* The request path that serves doc ("/", "/api/v2/summary.json", ...) and
 * its Content-Type. */
const char *statuspage_doc_path(enum statuspage_doc doc);
const char *statuspage_doc_type(enum statuspage_doc doc);

/* Append document doc for view v to out. */
void statuspage_render(struct sbuf *out, const struct statuspage_view *v, enum statuspage_doc doc);

/* One incident or maintenance as a Statuspage JSON object (the admin API
 * answers with it). */
void statuspage_incident_json(struct sbuf *out, const struct statuspage_view *v, const struct store_incident *inc);

/* Overall indicator (none/minor/major/critical) and its description. */
void statuspage_overall(const struct statuspage_view *v, int *impact, const char **description);

/* Append s[0..len) as text for HTML or XML (element content or a quoted
 * attribute): & < > " ' escaped, and everything an XML parser refuses
 * replaced with U+FFFD: invalid UTF-8 (one per bad byte, lone surrogates
 * included), C0 controls other than tab, LF and CR, U+FFFE and U+FFFF. */
void statuspage_markup_text(struct sbuf *out, const char *s, size_t len);

/* ISO 8601 with milliseconds and a numeric offset, UTC:
 * "2025-11-26T09:05:03.120+00:00".  out needs 32 bytes. */
void statuspage_time(int64_t ms, char out[32]);
/* Parse the same shapes back (offset "Z" or "+hh:mm"/"-hh:mm"/"+hhmm",
 * seconds and fraction optional).  RP_OK or RP_ERR. */
int statuspage_parse_time(const char *s, int64_t *ms);

#endif

/*
 * statuspage.c — render the status view as Statuspage v2 JSON, Atom and RSS
 * feeds, and one self-contained HTML page (see statuspage.h).
 *
 * Everything is written with sbuf and explicit escaping (sbuf_json_str for
 * JSON, statuspage_markup_text for HTML and XML), never with format strings
 * that embed user text, so an incident title cannot break out of its
 * context.
 *
 * The page needs no JavaScript and loads nothing else: CSS is inline, the
 * latency sparkline is inline SVG, the 90 daily bars are list items whose
 * title attribute is the tooltip and whose visually hidden text carries the
 * same information for screen readers.  Colours meet WCAG AA against white
 * (badges: white text on the colour, >= 4.5:1; bars: >= 3:1 as graphics),
 * and every status is also written as text, never conveyed by colour alone.
 * Below 640 px the bars show the last 30 days so each stays tappable.
 */
#include "statuspage.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const statuspage_cstatus_names[STATUSPAGE_CSTATUS_COUNT + 1] = {
    "no_data", "operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage", NULL,
};

const char *const statuspage_istatus_names[STATUSPAGE_ISTATUS_COUNT + 1] = {
    "investigating", "identified",  "monitoring", "resolved",  "postmortem",
    "scheduled",     "in_progress", "verifying",  "completed", NULL,
};

const char *const statuspage_impact_names[STATUSPAGE_IMPACT_COUNT + 1] = {
    "none", "minor", "major", "critical", "maintenance", NULL,
};

static const char *const cstatus_labels[STATUSPAGE_CSTATUS_COUNT] = {
    "No data", "Operational", "Under maintenance", "Degraded performance", "Partial outage", "Major outage",
};

static const char *const istatus_labels[STATUSPAGE_ISTATUS_COUNT] = {
    "Investigating", "Identified",  "Monitoring", "Resolved",  "Postmortem",
    "Scheduled",     "In progress", "Verifying",  "Completed",
};

/* CSS class per component status (also used for bars and the banner). */
static const char *const cstatus_class[STATUSPAGE_CSTATUS_COUNT] = {
    "s-none", "s-op", "s-maint", "s-deg", "s-part", "s-major",
};

const char *statuspage_cstatus_name(int s)
{
    return s >= 0 && s < STATUSPAGE_CSTATUS_COUNT ? statuspage_cstatus_names[s] : "operational";
}

const char *statuspage_istatus_name(int s)
{
    return s >= 0 && s < STATUSPAGE_ISTATUS_COUNT ? statuspage_istatus_names[s] : "investigating";
}

const char *statuspage_impact_name(int s)
{
    return s >= 0 && s < STATUSPAGE_IMPACT_COUNT ? statuspage_impact_names[s] : "none";
}

const char *statuspage_cstatus_label(int s)
{
    return s >= 0 && s < STATUSPAGE_CSTATUS_COUNT ? cstatus_labels[s] : "Unknown";
}

const char *statuspage_istatus_label(int s)
{
    return s >= 0 && s < STATUSPAGE_ISTATUS_COUNT ? istatus_labels[s] : "Unknown";
}

bool statuspage_istatus_done(int s)
{
    return s == STATUSPAGE_RESOLVED || s == STATUSPAGE_POSTMORTEM || s == STATUSPAGE_COMPLETED;
}

/* Status for JSON: Statuspage has no "no data", see statuspage.h. */
static int wire_cstatus(int s)
{
    return s <= STATUSPAGE_NO_DATA || s >= STATUSPAGE_CSTATUS_COUNT ? STATUSPAGE_OPERATIONAL : s;
}

/* ---- documents ---- */

static const struct {
    const char *path;
    const char *type;
} docs[STATUSPAGE_DOC_COUNT] = {
    [STATUSPAGE_DOC_HTML] = {"/", "text/html; charset=utf-8"},
    [STATUSPAGE_DOC_SUMMARY] = {"/api/v2/summary.json", "application/json"},
    [STATUSPAGE_DOC_STATUS] = {"/api/v2/status.json", "application/json"},
    [STATUSPAGE_DOC_COMPONENTS] = {"/api/v2/components.json", "application/json"},
    [STATUSPAGE_DOC_INCIDENTS] = {"/api/v2/incidents.json", "application/json"},
    [STATUSPAGE_DOC_UNRESOLVED] = {"/api/v2/incidents/unresolved.json", "application/json"},
    [STATUSPAGE_DOC_MAINT_ALL] = {"/api/v2/scheduled-maintenances.json", "application/json"},
    [STATUSPAGE_DOC_MAINT_UPCOMING] = {"/api/v2/scheduled-maintenances/upcoming.json", "application/json"},
    [STATUSPAGE_DOC_MAINT_ACTIVE] = {"/api/v2/scheduled-maintenances/active.json", "application/json"},
    [STATUSPAGE_DOC_ATOM] = {"/history.atom", "application/atom+xml; charset=utf-8"},
    [STATUSPAGE_DOC_RSS] = {"/history.rss", "application/rss+xml; charset=utf-8"},
};

const char *statuspage_doc_path(enum statuspage_doc doc)
{
    return doc < STATUSPAGE_DOC_COUNT ? docs[doc].path : NULL;
}

const char *statuspage_doc_type(enum statuspage_doc doc)
{
    return doc < STATUSPAGE_DOC_COUNT ? docs[doc].type : NULL;
}

/* ---- time ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static void tm_from_ms(int64_t ms, struct tm *tm)
{
    time_t t = (time_t)floor_div(ms, 1000);
    gmtime_r(&t, tm);
}

void statuspage_time(int64_t ms, char out[32])
{
    struct tm tm;
    tm_from_ms(ms, &tm);
    int frac = (int)(ms - floor_div(ms, 1000) * 1000);
    rp_snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* RFC 822 date for RSS. */
static void time_rfc822(int64_t ms, char out[40])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    tm_from_ms(ms, &tm);
    rp_snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
                months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "2025-11-26 09:05 UTC" for people. */
static void time_human(int64_t ms, char out[32])
{
    struct tm tm;
    tm_from_ms(ms, &tm);
    rp_snprintf(out, 32, "%04d-%02d-%02d %02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min);
}

static void date_of_day(int64_t day, char out[16])
{
    struct tm tm;
    tm_from_ms(day * 86400000, &tm);
    rp_snprintf(out, 16, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Days from civil date (proleptic Gregorian), after H. Hinnant's
 * well-known derivation: exact for every year we can meet. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool parse_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

int statuspage_parse_time(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec = 0, frac = 0;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) || *p++ != '-' ||
        !parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return RP_ERR;
    p++;
    if (!parse_digits(&p, 2, &h) || *p++ != ':' || !parse_digits(&p, 2, &mi))
        return RP_ERR;
    if (*p == ':') {
        p++;
        if (!parse_digits(&p, 2, &sec))
            return RP_ERR;
        if (*p == '.') {
            p++;
            int scale = 100, digits = 0;
            while (*p >= '0' && *p <= '9') {
                if (digits < 3)
                    frac += (*p - '0') * scale;
                scale /= 10;
                digits++;
                p++;
            }
            if (digits == 0 || digits > 9)
                return RP_ERR;
        }
    }
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return RP_ERR;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return RP_ERR;
    int off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!parse_digits(&p, 2, &oh))
            return RP_ERR;
        if (*p == ':')
            p++;
        if (!parse_digits(&p, 2, &om) || oh > 23 || om > 59)
            return RP_ERR;
        off_min = sign * (oh * 60 + om);
    } else {
        return RP_ERR; /* a time without an offset is ambiguous */
    }
    if (*p != '\0')
        return RP_ERR;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + (sec > 59 ? 59 : sec) - (int64_t)off_min * 60;
    *ms = secs * 1000 + frac;
    return RP_OK;
}

/* ---- JSON helpers ---- */

static void j_str(struct sbuf *o, const char *s)
{
    if (!s) {
        sbuf_adds(o, "null");
        return;
    }
    sbuf_add(o, "\"", 1);
    sbuf_json_str(o, s, strlen(s));
    sbuf_add(o, "\"", 1);
}

static void j_time(struct sbuf *o, int64_t ms)
{
    char t[32];
    if (ms <= 0) {
        sbuf_adds(o, "null");
        return;
    }
    statuspage_time(ms, t);
    sbuf_printf(o, "\"%s\"", t);
}

/* "key": prefix with a comma unless first. */
static void j_key(struct sbuf *o, bool *first, const char *key)
{
    if (!*first)
        sbuf_add(o, ",", 1);
    *first = false;
    sbuf_printf(o, "\"%s\":", key);
}

static void j_page(struct sbuf *o, const struct statuspage_view *v)
{
    sbuf_adds(o, "\"page\":{\"id\":");
    j_str(o, v->page_id);
    sbuf_adds(o, ",\"name\":");
    j_str(o, v->name);
    sbuf_adds(o, ",\"url\":");
    j_str(o, v->url);
    sbuf_adds(o, ",\"time_zone\":\"Etc/UTC\",\"updated_at\":");
    j_time(o, v->updated_ms);
    sbuf_add(o, "}", 1);
}

static const struct statuspage_component *find_component(const struct statuspage_view *v, const char *code)
{
    for (size_t i = 0; i < v->num_components; i++)
        if (strcmp(v->components[i].id, code) == 0)
            return &v->components[i];
    return NULL;
}

static void j_component(struct sbuf *o, const struct statuspage_view *v, const struct statuspage_component *c)
{
    char date[16];
    date_of_day(floor_div(c->created_ms, 86400000), date);
    sbuf_adds(o, "{\"id\":");
    j_str(o, c->id);
    sbuf_adds(o, ",\"name\":");
    j_str(o, c->name);
    sbuf_printf(o, ",\"status\":\"%s\",\"created_at\":", statuspage_cstatus_name(wire_cstatus(c->reported)));
    j_time(o, c->created_ms);
    sbuf_adds(o, ",\"updated_at\":");
    j_time(o, c->updated_ms);
    sbuf_printf(o, ",\"position\":%d,\"description\":", c->position);
    j_str(o, c->description && c->description[0] ? c->description : NULL);
    sbuf_printf(o, ",\"showcase\":true,\"start_date\":\"%s\",\"group_id\":null,\"page_id\":", date);
    j_str(o, v->page_id);
    sbuf_printf(o, ",\"group\":false,\"only_show_if_degraded\":false,\"rampart_status\":\"%s\"",
                statuspage_cstatus_name(c->status));
    if (c->uptime >= 0)
        sbuf_printf(o, ",\"rampart_uptime_90d\":%.4f", c->uptime);
    else
        sbuf_adds(o, ",\"rampart_uptime_90d\":null");
    sbuf_add(o, "}", 1);
}

static void j_components(struct sbuf *o, const struct statuspage_view *v)
{
    sbuf_adds(o, "\"components\":[");
    for (size_t i = 0; i < v->num_components; i++) {
        if (i)
            sbuf_add(o, ",", 1);
        j_component(o, v, &v->components[i]);
    }
    sbuf_add(o, "]", 1);
}

static void shortlink(struct sbuf *o, const struct statuspage_view *v, const struct store_incident *inc)
{
    char id[STORE_ID_TEXT];
    store_id_encode('i', inc->id, id);
    struct sbuf tmp;
    sbuf_init(&tmp, 4096);
    const char *url = v->url && v->url[0] ? v->url : "";
    size_t ulen = strlen(url);
    while (ulen && url[ulen - 1] == '/')
        ulen--;
    sbuf_add(&tmp, url, ulen);
    sbuf_printf(&tmp, "/#%s-%s", inc->maintenance ? "maintenance" : "incident", id);
    j_str(o, tmp.data);
    sbuf_free(&tmp);
}

void statuspage_incident_json(struct sbuf *o, const struct statuspage_view *v, const struct store_incident *inc)
{
    char id[STORE_ID_TEXT], uid[STORE_ID_TEXT];
    bool first = true;
    store_id_encode('i', inc->id, id);
    sbuf_add(o, "{", 1);
    j_key(o, &first, "id");
    j_str(o, id);
    j_key(o, &first, "name");
    j_str(o, inc->name);
    j_key(o, &first, "status");
    j_str(o, statuspage_istatus_name(inc->status));
    j_key(o, &first, "impact");
    j_str(o, statuspage_impact_name(inc->impact));
    j_key(o, &first, "created_at");
    j_time(o, inc->created_ms);
    j_key(o, &first, "updated_at");
    j_time(o, inc->updated_ms);
    j_key(o, &first, "monitoring_at");
    j_time(o, inc->monitoring_ms);
    j_key(o, &first, "resolved_at");
    j_time(o, inc->resolved_ms);
    j_key(o, &first, "started_at");
    j_time(o, inc->started_ms ? inc->started_ms : inc->created_ms);
    j_key(o, &first, "shortlink");
    shortlink(o, v, inc);
    j_key(o, &first, "page_id");
    j_str(o, v->page_id);
    if (inc->maintenance) {
        j_key(o, &first, "scheduled_for");
        j_time(o, inc->scheduled_for_ms);
        j_key(o, &first, "scheduled_until");
        j_time(o, inc->scheduled_until_ms);
    }
    j_key(o, &first, "components");
    sbuf_add(o, "[", 1);
    bool cfirst = true;
    for (size_t i = 0; i < inc->num_components; i++) {
        const struct statuspage_component *c = find_component(v, inc->components[i]);
        if (!c)
            continue; /* a component since removed from the configuration */
        if (!cfirst)
            sbuf_add(o, ",", 1);
        cfirst = false;
        j_component(o, v, c);
    }
    sbuf_add(o, "]", 1);
    j_key(o, &first, "incident_updates");
    sbuf_add(o, "[", 1);
    for (size_t i = 0; i < inc->num_updates; i++) {
        const struct store_update *u = &inc->updates[i];
        store_id_encode('u', u->id, uid);
        if (i)
            sbuf_add(o, ",", 1);
        sbuf_adds(o, "{\"id\":");
        j_str(o, uid);
        sbuf_adds(o, ",\"incident_id\":");
        j_str(o, id);
        sbuf_adds(o, ",\"status\":");
        j_str(o, statuspage_istatus_name(u->status));
        sbuf_adds(o, ",\"body\":");
        j_str(o, u->body ? u->body : "");
        sbuf_adds(o, ",\"created_at\":");
        j_time(o, u->created_ms);
        sbuf_adds(o, ",\"updated_at\":");
        j_time(o, u->updated_ms ? u->updated_ms : u->created_ms);
        sbuf_adds(o, ",\"display_at\":");
        j_time(o, u->display_ms ? u->display_ms : u->created_ms);
        sbuf_adds(o, ",\"affected_components\":[");
        for (size_t k = 0; k < u->num_affected; k++) {
            const struct store_affected *a = &u->affected[k];
            const struct statuspage_component *c = find_component(v, a->code);
            if (k)
                sbuf_add(o, ",", 1);
            sbuf_adds(o, "{\"code\":");
            j_str(o, a->code);
            sbuf_adds(o, ",\"name\":");
            j_str(o, c ? c->name : a->code);
            sbuf_printf(o, ",\"old_status\":\"%s\",\"new_status\":\"%s\"}",
                        statuspage_cstatus_name(wire_cstatus(a->old_status)),
                        statuspage_cstatus_name(wire_cstatus(a->new_status)));
        }
        sbuf_adds(o, "]}");
    }
    sbuf_add(o, "]", 1);
    sbuf_add(o, "}", 1);
}

enum inc_filter { F_INCIDENTS, F_UNRESOLVED, F_MAINT_ALL, F_MAINT_UPCOMING, F_MAINT_ACTIVE, F_MAINT_SUMMARY };

static bool inc_matches(const struct store_incident *inc, enum inc_filter f)
{
    switch (f) {
    case F_INCIDENTS: return !inc->maintenance;
    case F_UNRESOLVED: return !inc->maintenance && !statuspage_istatus_done(inc->status);
    case F_MAINT_ALL: return inc->maintenance;
    case F_MAINT_UPCOMING: return inc->maintenance && inc->status == STATUSPAGE_SCHEDULED;
    case F_MAINT_ACTIVE:
        return inc->maintenance && (inc->status == STATUSPAGE_IN_PROGRESS || inc->status == STATUSPAGE_VERIFYING);
    case F_MAINT_SUMMARY: return inc->maintenance && !statuspage_istatus_done(inc->status);
    }
    return false;
}

/* Statuspage's lists hold the 50 most recent. */
#define LIST_MAX 50

static void j_incidents(struct sbuf *o, const struct statuspage_view *v, const char *key, enum inc_filter f)
{
    size_t shown = 0;
    sbuf_printf(o, "\"%s\":[", key);
    for (size_t i = 0; i < v->num_incidents && shown < LIST_MAX; i++) {
        if (!inc_matches(&v->incidents[i], f))
            continue;
        if (shown++)
            sbuf_add(o, ",", 1);
        statuspage_incident_json(o, v, &v->incidents[i]);
    }
    sbuf_add(o, "]", 1);
}

void statuspage_overall(const struct statuspage_view *v, int *impact, const char **description)
{
    int worst = STATUSPAGE_NO_DATA;
    int imp = STATUSPAGE_IMPACT_NONE;
    bool maint = false;
    for (size_t i = 0; i < v->num_components; i++) {
        int s = v->components[i].status;
        if (s == STATUSPAGE_UNDER_MAINTENANCE)
            maint = true;
        if (s > worst)
            worst = s;
    }
    if (worst == STATUSPAGE_DEGRADED_PERFORMANCE)
        imp = STATUSPAGE_IMPACT_MINOR;
    else if (worst == STATUSPAGE_PARTIAL_OUTAGE)
        imp = STATUSPAGE_IMPACT_MAJOR;
    else if (worst == STATUSPAGE_MAJOR_OUTAGE)
        imp = STATUSPAGE_IMPACT_CRITICAL;
    for (size_t i = 0; i < v->num_incidents; i++) {
        const struct store_incident *inc = &v->incidents[i];
        if (inc->maintenance || statuspage_istatus_done(inc->status))
            continue;
        if (inc->impact > imp && inc->impact <= STATUSPAGE_IMPACT_CRITICAL)
            imp = inc->impact;
    }
    *impact = imp;
    switch (imp) {
    case STATUSPAGE_IMPACT_CRITICAL: *description = "Major System Outage"; break;
    case STATUSPAGE_IMPACT_MAJOR: *description = "Partial System Outage"; break;
    case STATUSPAGE_IMPACT_MINOR: *description = "Minor Service Outage"; break;
    default:
        if (maint)
            *description = "Service Under Maintenance";
        else if (worst == STATUSPAGE_NO_DATA && v->num_components > 0)
            *description = "No Recent Traffic";
        else
            *description = "All Systems Operational";
    }
}

static void j_status(struct sbuf *o, const struct statuspage_view *v)
{
    int imp;
    const char *desc;
    statuspage_overall(v, &imp, &desc);
    sbuf_printf(o, "\"status\":{\"indicator\":\"%s\",\"description\":", statuspage_impact_name(imp));
    j_str(o, desc);
    sbuf_add(o, "}", 1);
}

static void render_json(struct sbuf *o, const struct statuspage_view *v, enum statuspage_doc doc)
{
    sbuf_add(o, "{", 1);
    j_page(o, v);
    sbuf_add(o, ",", 1);
    switch (doc) {
    case STATUSPAGE_DOC_SUMMARY:
        j_components(o, v);
        sbuf_add(o, ",", 1);
        j_incidents(o, v, "incidents", F_UNRESOLVED);
        sbuf_add(o, ",", 1);
        j_incidents(o, v, "scheduled_maintenances", F_MAINT_SUMMARY);
        sbuf_add(o, ",", 1);
        j_status(o, v);
        break;
    case STATUSPAGE_DOC_STATUS: j_status(o, v); break;
    case STATUSPAGE_DOC_COMPONENTS: j_components(o, v); break;
    case STATUSPAGE_DOC_INCIDENTS: j_incidents(o, v, "incidents", F_INCIDENTS); break;
    case STATUSPAGE_DOC_UNRESOLVED: j_incidents(o, v, "incidents", F_UNRESOLVED); break;
    case STATUSPAGE_DOC_MAINT_ALL: j_incidents(o, v, "scheduled_maintenances", F_MAINT_ALL); break;
    case STATUSPAGE_DOC_MAINT_UPCOMING: j_incidents(o, v, "scheduled_maintenances", F_MAINT_UPCOMING); break;
    case STATUSPAGE_DOC_MAINT_ACTIVE: j_incidents(o, v, "scheduled_maintenances", F_MAINT_ACTIVE); break;
    default: break;
    }
    sbuf_adds(o, "}\n");
}

/* ---- markup text ---- */

/* Whether XML 1.0 allows code point cp in a document at all (its Char
 * production); HTML calls the same code points parse errors. */
static bool xml_char(uint32_t cp)
{
    return cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) ||
           (cp >= 0x10000 && cp <= 0x10ffff);
}

void statuspage_markup_text(struct sbuf *o, const char *s, size_t len)
{
    /* One U+FFFD per bad byte or forbidden character: a reader sees that
     * something was there, and a single stray byte cannot swallow the
     * valid characters after it.  A feed reader that meets one forbidden
     * character rejects the whole feed, not just the entry. */
    static const char repl[] = "\xef\xbf\xbd";
    size_t i = 0, run = 0; /* s[run..i) is plain text not yet copied */
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '<': esc = "&lt;"; break;
        case '>': esc = "&gt;"; break;
        case '&': esc = "&amp;"; break;
        case '"': esc = "&quot;"; break;
        case '\'': esc = "&#39;"; break;
        default: break;
        }
        if (esc) {
            sbuf_add(o, s + run, i - run);
            sbuf_adds(o, esc);
            run = ++i;
            continue;
        }
        uint32_t cp;
        int n = c < 0x80 ? 1 : rp_utf8_next(s + i, len - i, &cp);
        if (c < 0x80)
            cp = c;
        if (n > 0 && xml_char(cp)) {
            i += (size_t)n;
            continue;
        }
        sbuf_add(o, s + run, i - run);
        sbuf_add(o, repl, sizeof repl - 1);
        i += n > 0 ? (size_t)n : 1;
        run = i;
    }
    sbuf_add(o, s + run, i - run);
}

/* ---- feeds ---- */

static void x_text(struct sbuf *o, const char *s)
{
    s = s ? s : "";
    statuspage_markup_text(o, s, strlen(s));
}

/* The body of one incident as HTML (then escaped again into the feed). */
static void incident_html_summary(struct sbuf *h, const struct store_incident *inc)
{
    char t[32];
    if (inc->maintenance) {
        char a[32], b[32];
        time_human(inc->scheduled_for_ms, a);
        time_human(inc->scheduled_until_ms, b);
        sbuf_adds(h, "<p><strong>Scheduled:</strong> ");
        sbuf_adds(h, a);
        sbuf_adds(h, " to ");
        sbuf_adds(h, b);
        sbuf_adds(h, "</p>");
    }
    for (size_t i = 0; i < inc->num_updates; i++) {
        const struct store_update *u = &inc->updates[i];
        time_human(u->display_ms ? u->display_ms : u->created_ms, t);
        sbuf_adds(h, "<p><small>");
        sbuf_adds(h, t);
        sbuf_adds(h, "</small><br><strong>");
        sbuf_adds(h, statuspage_istatus_label(u->status));
        sbuf_adds(h, "</strong> - ");
        sbuf_html(h, u->body ? u->body : "");
        sbuf_adds(h, "</p>");
    }
}

static void feed_link(struct sbuf *o, const struct statuspage_view *v, const char *suffix)
{
    const char *url = v->url && v->url[0] ? v->url : "";
    size_t ulen = strlen(url);
    while (ulen && url[ulen - 1] == '/')
        ulen--;
    struct sbuf tmp;
    sbuf_init(&tmp, 4096);
    sbuf_add(&tmp, url, ulen);
    sbuf_adds(&tmp, suffix);
    x_text(o, tmp.data);
    sbuf_free(&tmp);
}

static void entry_id(struct sbuf *o, const struct statuspage_view *v, const struct store_incident *inc)
{
    char id[STORE_ID_TEXT];
    store_id_encode('i', inc->id, id);
    sbuf_adds(o, "urn:rampart:");
    x_text(o, v->page_id);
    sbuf_printf(o, ":%s:%s", inc->maintenance ? "maintenance" : "incident", id);
}

static void render_atom(struct sbuf *o, const struct statuspage_view *v)
{
    char t[32], id[STORE_ID_TEXT];
    struct sbuf h;
    sbuf_init(&h, 1u << 20);
    sbuf_adds(o, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" "
                 "xml:lang=\"en\">\n<id>urn:rampart:");
    x_text(o, v->page_id);
    sbuf_adds(o, ":history</id>\n<title>");
    x_text(o, v->name);
    sbuf_adds(o, " status - incident history</title>\n<updated>");
    statuspage_time(v->updated_ms > 0 ? v->updated_ms : v->now_ms, t);
    sbuf_adds(o, t);
    sbuf_adds(o, "</updated>\n<author><name>");
    x_text(o, v->name);
    sbuf_adds(o, "</name></author>\n<link rel=\"alternate\" type=\"text/html\" href=\"");
    feed_link(o, v, "/");
    sbuf_adds(o, "\"/>\n<link rel=\"self\" type=\"application/atom+xml\" href=\"");
    feed_link(o, v, "/history.atom");
    sbuf_adds(o, "\"/>\n");
    size_t shown = 0;
    for (size_t i = 0; i < v->num_incidents && shown < LIST_MAX; i++, shown++) {
        const struct store_incident *inc = &v->incidents[i];
        store_id_encode('i', inc->id, id);
        sbuf_adds(o, "<entry>\n<id>");
        entry_id(o, v, inc);
        sbuf_adds(o, "</id>\n<title>");
        if (inc->maintenance)
            sbuf_adds(o, "Maintenance: ");
        x_text(o, inc->name);
        sbuf_adds(o, " (");
        sbuf_adds(o, statuspage_istatus_label(inc->status));
        sbuf_adds(o, ")</title>\n<published>");
        statuspage_time(inc->created_ms, t);
        sbuf_adds(o, t);
        sbuf_adds(o, "</published>\n<updated>");
        statuspage_time(inc->updated_ms ? inc->updated_ms : inc->created_ms, t);
        sbuf_adds(o, t);
        sbuf_adds(o, "</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"");
        feed_link(o, v, inc->maintenance ? "/#maintenance-" : "/#incident-");
        sbuf_adds(o, id);
        sbuf_adds(o, "\"/>\n<content type=\"html\">");
        sbuf_reset(&h);
        incident_html_summary(&h, inc);
        x_text(o, h.data ? h.data : "");
        sbuf_adds(o, "</content>\n</entry>\n");
    }
    sbuf_adds(o, "</feed>\n");
    sbuf_free(&h);
}

static void render_rss(struct sbuf *o, const struct statuspage_view *v)
{
    char t[40], id[STORE_ID_TEXT];
    struct sbuf h;
    sbuf_init(&h, 1u << 20);
    sbuf_adds(o, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\">\n<channel>\n<title>");
    x_text(o, v->name);
    sbuf_adds(o, " status - incident history</title>\n<link>");
    feed_link(o, v, "/");
    sbuf_adds(o, "</link>\n<description>Incidents and scheduled maintenance for ");
    x_text(o, v->name);
    sbuf_adds(o, "</description>\n<language>en</language>\n<lastBuildDate>");
    time_rfc822(v->updated_ms > 0 ? v->updated_ms : v->now_ms, t);
    sbuf_adds(o, t);
    sbuf_adds(o, "</lastBuildDate>\n");
    size_t shown = 0;
    for (size_t i = 0; i < v->num_incidents && shown < LIST_MAX; i++, shown++) {
        const struct store_incident *inc = &v->incidents[i];
        store_id_encode('i', inc->id, id);
        sbuf_adds(o, "<item>\n<title>");
        if (inc->maintenance)
            sbuf_adds(o, "Maintenance: ");
        x_text(o, inc->name);
        sbuf_adds(o, " (");
        sbuf_adds(o, statuspage_istatus_label(inc->status));
        sbuf_adds(o, ")</title>\n<link>");
        feed_link(o, v, inc->maintenance ? "/#maintenance-" : "/#incident-");
        sbuf_adds(o, id);
        sbuf_adds(o, "</link>\n<guid isPermaLink=\"false\">");
        entry_id(o, v, inc);
        sbuf_adds(o, "</guid>\n<pubDate>");
        time_rfc822(inc->created_ms, t);
        sbuf_adds(o, t);
        sbuf_adds(o, "</pubDate>\n<description>");
        sbuf_reset(&h);
        incident_html_summary(&h, inc);
        x_text(o, h.data ? h.data : "");
        sbuf_adds(o, "</description>\n</item>\n");
    }
    sbuf_adds(o, "</channel>\n</rss>\n");
    sbuf_free(&h);
}

/* ---- HTML ---- */

static const char page_css[] =
    ":root{--fg:#1f2328;--muted:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0;"
    "--op:#1a7f37;--deg:#9a6700;--part:#bc4c00;--major:#cf222e;--maint:#0969da;--none:#6e7781}"
    "*{box-sizing:border-box}"
    "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;"
    "color:var(--fg);background:var(--bg)}"
    ".wrap{max-width:860px;margin:0 auto;padding:16px}"
    "a{color:#0550ae}a:focus-visible,summary:focus-visible{outline:3px solid #0969da;outline-offset:2px}"
    ".skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;padding:8px;z-index:9}"
    "header h1{font-size:1.6rem;margin:8px 0 16px}"
    "h2{font-size:1.25rem;margin:32px 0 12px}h3{font-size:1.05rem;margin:0}"
    ".vh{position:absolute!important;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;"
    "clip:rect(0 0 0 0);white-space:nowrap;border:0}"
    ".banner{border-radius:8px;padding:16px 20px;color:#fff}"
    ".banner p{margin:0}.banner .big{font-size:1.35rem;font-weight:700}.banner .sub{opacity:.95;font-size:.9rem}"
    ".s-op{background:var(--op)}.s-deg{background:var(--deg)}.s-part{background:var(--part)}"
    ".s-major{background:var(--major)}.s-maint{background:var(--maint)}.s-none{background:var(--none)}"
    ".card{border:1px solid var(--line);border-radius:8px;padding:16px;margin:12px 0;background:var(--bg)}"
    ".incident{border-left:6px solid var(--part)}.incident.i-critical{border-left-color:var(--major)}"
    ".incident.i-minor{border-left-color:var(--deg)}.incident.i-none{border-left-color:var(--none)}"
    ".incident.i-maintenance{border-left-color:var(--maint)}"
    ".meta{color:var(--muted);font-size:.9rem;margin:4px 0 8px}"
    ".timeline{list-style:none;margin:0;padding:0}.timeline li{padding:6px 0;border-top:1px solid var(--line)}"
    ".timeline li:first-child{border-top:0}.body{white-space:pre-line;margin:0}"
    ".when{color:var(--muted);font-size:.85rem;margin:0}"
    ".comps{list-style:none;margin:0;padding:0}"
    ".comp{border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:0 0 12px}"
    ".comp-head{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:8px}"
    ".badge{display:inline-block;color:#fff;border-radius:999px;padding:2px 10px;font-size:.85rem;"
    "font-weight:600}"
    ".desc{color:var(--muted);margin:4px 0 0;font-size:.92rem}"
    ".bars{display:flex;gap:2px;list-style:none;margin:12px 0 4px;padding:0;height:34px}"
    ".bars li{flex:1 1 0;min-width:0;border-radius:2px}.bars li.s-none{background:#d1d9e0}"
    ".axis{display:flex;justify-content:space-between;color:var(--muted);font-size:.8rem}"
    ".axis .n30{display:none}"
    ".spark{margin:10px 0 0}.spark svg{display:block;width:100%;height:44px;background:var(--card);"
    "border-radius:4px}"
    ".spark figcaption{color:var(--muted);font-size:.8rem}"
    ".legend{color:var(--muted);font-size:.88rem}"
    "details{border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:8px 0}"
    "summary{cursor:pointer;font-weight:600}summary .meta{font-weight:400}"
    "footer{margin:40px 0 16px;color:var(--muted);font-size:.88rem;border-top:1px solid var(--line);"
    "padding-top:12px}"
    "@media (max-width:640px){.bars li:nth-child(-n+60){display:none}.axis .n90{display:none}"
    ".axis .n30{display:inline}.wrap{padding:12px}}"
    "@media (prefers-reduced-motion:reduce){*{scroll-behavior:auto}}";

static void h(struct sbuf *o, const char *s)
{
    s = s ? s : "";
    statuspage_markup_text(o, s, strlen(s));
}

static void h_time(struct sbuf *o, int64_t ms)
{
    char iso[32], human[32];
    statuspage_time(ms, iso);
    time_human(ms, human);
    sbuf_printf(o, "<time datetime=\"%s\">%s</time>", iso, human);
}

/* "99.95%" without rounding a partial day up to a perfect one. */
static void fmt_uptime(char *out, size_t cap, double pct)
{
    if (pct >= 100.0) {
        rp_snprintf(out, cap, "100%%");
        return;
    }
    double f = floor(pct * 100.0) / 100.0;
    rp_snprintf(out, cap, "%.2f%%", f);
}

static void fmt_ms(char *out, size_t cap, int64_t ms)
{
    if (ms < 1000)
        rp_snprintf(out, cap, "%d ms", (int)ms);
    else
        rp_snprintf(out, cap, "%.1f s", (double)ms / 1000.0);
}

static bool incident_affects(const struct store_incident *inc, const char *code)
{
    if (inc->automatic && strcmp(inc->auto_code, code) == 0)
        return true;
    for (size_t i = 0; i < inc->num_components; i++)
        if (strcmp(inc->components[i], code) == 0)
            return true;
    return false;
}

static void components_names(struct sbuf *o, const struct statuspage_view *v, const struct store_incident *inc)
{
    size_t shown = 0;
    for (size_t i = 0; i < inc->num_components; i++) {
        const struct statuspage_component *c = find_component(v, inc->components[i]);
        if (!c)
            continue;
        if (shown++)
            sbuf_adds(o, ", ");
        h(o, c->name);
    }
    if (!shown)
        sbuf_adds(o, "none listed");
}

static void html_incident(struct sbuf *o, const struct statuspage_view *v, const struct store_incident *inc, bool open)
{
    char id[STORE_ID_TEXT];
    store_id_encode('i', inc->id, id);
    const char *kind = inc->maintenance ? "maintenance" : "incident";
    if (open) {
        sbuf_printf(o, "<article class=\"card incident i-%s\" id=\"%s-%s\" aria-labelledby=\"t-%s\">",
                    statuspage_impact_name(inc->impact), kind, id, id);
        sbuf_printf(o, "<h3 id=\"t-%s\">", id);
        h(o, inc->name);
        sbuf_adds(o, "</h3><p class=\"meta\">");
    } else {
        sbuf_printf(o, "<details id=\"%s-%s\"><summary>", kind, id);
        h(o, inc->name);
        sbuf_adds(o, " <span class=\"meta\">(");
        sbuf_adds(o, statuspage_istatus_label(inc->status));
        sbuf_adds(o, ", ");
        h_time(o, inc->started_ms ? inc->started_ms : inc->created_ms);
        sbuf_adds(o, ")</span></summary><p class=\"meta\">");
    }
    sbuf_adds(o, "Status: <strong>");
    sbuf_adds(o, statuspage_istatus_label(inc->status));
    sbuf_adds(o, "</strong>");
    if (inc->maintenance) {
        sbuf_adds(o, " · Scheduled ");
        h_time(o, inc->scheduled_for_ms);
        sbuf_adds(o, " to ");
        h_time(o, inc->scheduled_until_ms);
    } else {
        sbuf_printf(o, " · Impact: %s", statuspage_impact_name(inc->impact));
    }
    sbuf_adds(o, " · Affects: ");
    components_names(o, v, inc);
    if (inc->automatic)
        sbuf_adds(o, " · Opened automatically from measured traffic");
    sbuf_adds(o, "</p><ol class=\"timeline\" aria-label=\"Updates, newest first\">");
    for (size_t i = 0; i < inc->num_updates; i++) {
        const struct store_update *u = &inc->updates[i];
        sbuf_adds(o, "<li><p class=\"body\"><strong>");
        sbuf_adds(o, statuspage_istatus_label(u->status));
        sbuf_adds(o, "</strong> - ");
        h(o, u->body);
        sbuf_adds(o, "</p><p class=\"when\">");
        h_time(o, u->display_ms ? u->display_ms : u->created_ms);
        sbuf_adds(o, "</p></li>");
    }
    sbuf_adds(o, "</ol>");
    sbuf_adds(o, open ? "</article>" : "</details>");
}

/* Titles of incidents touching component c during day d, for the bar's
 * tooltip; at most three, then a count. */
static void day_incidents(struct sbuf *o, const struct statuspage_view *v, const struct statuspage_component *c,
                          int64_t day)
{
    int64_t from = day * 86400000, to = from + 86400000;
    size_t n = 0;
    for (size_t i = 0; i < v->num_incidents; i++) {
        const struct store_incident *inc = &v->incidents[i];
        if (inc->maintenance || !incident_affects(inc, c->id))
            continue;
        int64_t start = inc->started_ms ? inc->started_ms : inc->created_ms;
        int64_t end = inc->resolved_ms ? inc->resolved_ms : v->now_ms;
        if (start >= to || end < from)
            continue;
        if (n < 3) {
            sbuf_adds(o, n ? "; " : " · Incidents: ");
            h(o, inc->name);
        }
        n++;
    }
    if (n > 3)
        sbuf_printf(o, "; and %zu more", n - 3);
}

static void html_bars(struct sbuf *o, const struct statuspage_view *v, const struct statuspage_component *c)
{
    char up[16], date[16];
    sbuf_adds(o, "<ol class=\"bars\" aria-label=\"Daily status of ");
    h(o, c->name);
    sbuf_adds(o, " for the last 90 days, oldest first\">");
    for (int i = 0; i < STATUSPAGE_DAYS; i++) {
        const struct statuspage_day *d = &c->days[i];
        int w = d->worst >= 0 && d->worst < STATUSPAGE_CSTATUS_COUNT ? d->worst : STATUSPAGE_NO_DATA;
        struct sbuf tip;
        sbuf_init(&tip, 4096);
        date_of_day(d->day, date);
        sbuf_adds(&tip, date);
        if (d->eligible > 0) {
            fmt_uptime(up, sizeof up, 100.0 * (double)d->good / (double)d->eligible);
            sbuf_printf(&tip, " · %s uptime (%llu requests) · %s", up, (unsigned long long)d->eligible,
                        statuspage_cstatus_label(w == STATUSPAGE_NO_DATA ? STATUSPAGE_OPERATIONAL : w));
        } else if (w != STATUSPAGE_NO_DATA) {
            sbuf_printf(&tip, " · no requests · %s", statuspage_cstatus_label(w));
        } else {
            sbuf_adds(&tip, " · No data");
        }
        /* The tooltip text is built unescaped, then escaped once here. */
        struct sbuf inc;
        sbuf_init(&inc, 4096);
        day_incidents(&inc, v, c, d->day);
        sbuf_printf(o, "<li class=\"%s\" title=\"", cstatus_class[w]);
        h(o, tip.data);
        sbuf_add(o, inc.data ? inc.data : "", inc.len); /* already escaped */
        sbuf_adds(o, "\"><span class=\"vh\">");
        h(o, tip.data);
        sbuf_add(o, inc.data ? inc.data : "", inc.len);
        sbuf_adds(o, "</span></li>");
        sbuf_free(&tip);
        sbuf_free(&inc);
    }
    sbuf_adds(o, "</ol><div class=\"axis\" aria-hidden=\"true\"><span class=\"n90\">90 days ago</span>"
                 "<span class=\"n30\">30 days ago</span><span>");
    if (c->uptime >= 0) {
        fmt_uptime(up, sizeof up, c->uptime);
        sbuf_printf(o, "%s uptime", up);
    } else {
        sbuf_adds(o, "no data");
    }
    sbuf_adds(o, "</span><span>Today</span></div>");
}

static void html_spark(struct sbuf *o, const struct statuspage_component *c, size_t idx)
{
    const int W = 600, H = 44, PAD = 4;
    int32_t maxv = 0, last = -1;
    int points = 0;
    char a[24], b[24], slo[24];
    for (int i = 0; i < STATUSPAGE_SPARK; i++) {
        if (c->spark_ms[i] < 0)
            continue;
        points++;
        last = c->spark_ms[i];
        if (c->spark_ms[i] > maxv)
            maxv = c->spark_ms[i];
    }
    fmt_ms(slo, sizeof slo, (int64_t)c->latency_slo_ms);
    sbuf_adds(o, "<figure class=\"spark\">");
    sbuf_printf(o,
                "<svg viewBox=\"0 0 %d %d\" preserveAspectRatio=\"none\" role=\"img\" aria-labelledby=\"sp%zu\" "
                "focusable=\"false\"><title id=\"sp%zu\">",
                W, H, idx, idx);
    if (points == 0) {
        sbuf_adds(o, "No requests in the last hour");
    } else {
        fmt_ms(a, sizeof a, last);
        fmt_ms(b, sizeof b, maxv);
        sbuf_printf(o, "Time to first byte, 95th percentile per minute over the last hour: latest %s, highest %s", a,
                    b);
    }
    sbuf_adds(o, "</title>");
    if (points > 0) {
        double scale = maxv > 0 ? (double)(H - 2 * PAD) / (double)maxv : 0;
        if (c->latency_slo_ms > 0 && (int64_t)c->latency_slo_ms <= maxv) {
            double y = H - PAD - scale * (double)c->latency_slo_ms;
            sbuf_printf(o,
                        "<line x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#cf222e\" "
                        "stroke-dasharray=\"6 4\" vector-effect=\"non-scaling-stroke\"/>",
                        W, y, y);
        }
        /* One polyline per run of minutes with traffic: a gap in the line
         * is a minute without requests, not a fall to zero. */
        bool open = false;
        for (int i = 0; i < STATUSPAGE_SPARK; i++) {
            int32_t ms = c->spark_ms[i];
            if (ms < 0) {
                if (open)
                    sbuf_adds(o, "\"/>");
                open = false;
                continue;
            }
            double x = (double)i * (double)W / (STATUSPAGE_SPARK - 1);
            double y = H - PAD - scale * (double)ms;
            bool alone = (i == 0 || c->spark_ms[i - 1] < 0) && (i == STATUSPAGE_SPARK - 1 || c->spark_ms[i + 1] < 0);
            if (alone) {
                sbuf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"#0550ae\"/>", x, y);
                continue;
            }
            if (!open) {
                sbuf_adds(o, "<polyline fill=\"none\" stroke=\"#0550ae\" stroke-width=\"2\" "
                             "vector-effect=\"non-scaling-stroke\" points=\"");
                open = true;
            }
            sbuf_printf(o, "%.1f,%.1f ", x, y);
        }
        if (open)
            sbuf_adds(o, "\"/>");
    }
    sbuf_adds(o, "</svg><figcaption>Time to first byte (p95 per minute), last hour");
    if (points > 0) {
        fmt_ms(a, sizeof a, last);
        sbuf_printf(o, ": latest %s", a);
    }
    sbuf_printf(o, ". Objective: %s.</figcaption></figure>", slo);
}

static void render_html(struct sbuf *o, const struct statuspage_view *v)
{
    int imp;
    const char *desc;
    statuspage_overall(v, &imp, &desc);
    int banner = STATUSPAGE_OPERATIONAL;
    switch (imp) {
    case STATUSPAGE_IMPACT_CRITICAL: banner = STATUSPAGE_MAJOR_OUTAGE; break;
    case STATUSPAGE_IMPACT_MAJOR: banner = STATUSPAGE_PARTIAL_OUTAGE; break;
    case STATUSPAGE_IMPACT_MINOR: banner = STATUSPAGE_DEGRADED_PERFORMANCE; break;
    default:
        if (strcmp(desc, "Service Under Maintenance") == 0)
            banner = STATUSPAGE_UNDER_MAINTENANCE;
        else if (strcmp(desc, "No Recent Traffic") == 0)
            banner = STATUSPAGE_NO_DATA;
    }

    sbuf_adds(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    h(o, v->name);
    sbuf_adds(o, " status</title>\n<meta name=\"description\" content=\"Live status of ");
    h(o, v->name);
    sbuf_adds(o, ", measured from real traffic\">\n<meta name=\"color-scheme\" content=\"light\">\n"
                 "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incident history (Atom)\" "
                 "href=\"/history.atom\">\n"
                 "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"Incident history (RSS)\" "
                 "href=\"/history.rss\">\n<style>");
    sbuf_adds(o, page_css);
    sbuf_adds(o, "</style>\n</head>\n<body>\n<a class=\"skip\" href=\"#components\">Skip to components</a>\n"
                 "<div class=\"wrap\">\n<header><h1>");
    h(o, v->name);
    sbuf_adds(o, " status</h1></header>\n<main>\n");

    /* Banner */
    sbuf_printf(o, "<section class=\"banner %s\" aria-labelledby=\"overall\"><p class=\"big\" id=\"overall\">",
                cstatus_class[banner]);
    h(o, desc);
    sbuf_adds(o, "</p><p class=\"sub\">Computed from the requests this gateway serves");
    if (v->updated_ms > 0) {
        sbuf_adds(o, " · last change ");
        h_time(o, v->updated_ms);
    }
    sbuf_adds(o, "</p></section>\n");

    /* Active incidents */
    size_t n_open = 0;
    for (size_t i = 0; i < v->num_incidents; i++)
        if (inc_matches(&v->incidents[i], F_UNRESOLVED))
            n_open++;
    if (n_open) {
        sbuf_adds(o, "<section aria-labelledby=\"h-active\"><h2 id=\"h-active\">Active incidents</h2>");
        for (size_t i = 0; i < v->num_incidents; i++)
            if (inc_matches(&v->incidents[i], F_UNRESOLVED))
                html_incident(o, v, &v->incidents[i], true);
        sbuf_adds(o, "</section>\n");
    }

    /* Maintenance: in progress first, then upcoming (soonest first). */
    size_t n_maint = 0;
    for (size_t i = 0; i < v->num_incidents; i++)
        if (inc_matches(&v->incidents[i], F_MAINT_SUMMARY))
            n_maint++;
    if (n_maint) {
        sbuf_adds(o, "<section aria-labelledby=\"h-maint\"><h2 id=\"h-maint\">Scheduled maintenance</h2>");
        for (size_t i = 0; i < v->num_incidents; i++)
            if (inc_matches(&v->incidents[i], F_MAINT_ACTIVE))
                html_incident(o, v, &v->incidents[i], true);
        /* The list is newest-created first; show upcoming by start time. */
        int64_t after = INT64_MIN;
        for (size_t shown = 0; shown < n_maint; shown++) {
            const struct store_incident *next = NULL;
            for (size_t i = 0; i < v->num_incidents; i++) {
                const struct store_incident *m = &v->incidents[i];
                if (!inc_matches(m, F_MAINT_UPCOMING) || m->scheduled_for_ms <= after)
                    continue;
                if (!next || m->scheduled_for_ms < next->scheduled_for_ms)
                    next = m;
            }
            if (!next)
                break;
            html_incident(o, v, next, true);
            after = next->scheduled_for_ms;
            /* Equal start times: show every one of them. */
            for (size_t i = 0; i < v->num_incidents; i++) {
                const struct store_incident *m = &v->incidents[i];
                if (m != next && inc_matches(m, F_MAINT_UPCOMING) && m->scheduled_for_ms == after)
                    html_incident(o, v, m, true);
            }
        }
        sbuf_adds(o, "</section>\n");
    }

    /* Components */
    sbuf_adds(o, "<section id=\"components\" aria-labelledby=\"h-comp\"><h2 id=\"h-comp\">Components</h2>"
                 "<p class=\"legend\">Each bar is one day, coloured by the worst status measured that day; "
                 "uptime is the share of good requests (not a server error and a first byte within the "
                 "objective).</p><ul class=\"comps\">");
    for (size_t i = 0; i < v->num_components; i++) {
        const struct statuspage_component *c = &v->components[i];
        int s = c->status >= 0 && c->status < STATUSPAGE_CSTATUS_COUNT ? c->status : STATUSPAGE_NO_DATA;
        sbuf_printf(o, "<li class=\"comp\" id=\"component-%s\"><div class=\"comp-head\"><h3>", c->id);
        h(o, c->name);
        sbuf_printf(o, "</h3><span class=\"badge %s\"><span class=\"vh\">Status: </span>%s</span></div>",
                    cstatus_class[s], statuspage_cstatus_label(s));
        if (c->description && c->description[0]) {
            sbuf_adds(o, "<p class=\"desc\">");
            h(o, c->description);
            sbuf_adds(o, "</p>");
        }
        html_bars(o, v, c);
        html_spark(o, c, i);
        sbuf_adds(o, "</li>");
    }
    sbuf_adds(o, "</ul></section>\n");

    /* History */
    sbuf_adds(o, "<section aria-labelledby=\"h-hist\"><h2 id=\"h-hist\">Past incidents and maintenance</h2>");
    size_t past = 0;
    for (size_t i = 0; i < v->num_incidents && past < LIST_MAX; i++) {
        const struct store_incident *inc = &v->incidents[i];
        if (!statuspage_istatus_done(inc->status))
            continue;
        html_incident(o, v, inc, false);
        past++;
    }
    if (!past)
        sbuf_adds(o, "<p>No incidents reported.</p>");
    sbuf_adds(o, "</section>\n</main>\n<footer><p>Subscribe: <a href=\"/history.atom\">Atom feed</a> · "
                 "<a href=\"/history.rss\">RSS feed</a> · API: <a href=\"/api/v2/summary.json\">summary.json</a>"
                 "</p><p>");
    unsigned long long every = v->max_age_s ? v->max_age_s : 5;
    if (every == 1)
        sbuf_adds(o, "This page is regenerated every second and works without JavaScript. Times are UTC.");
    else
        sbuf_printf(o, "This page is regenerated every %llu seconds and works without JavaScript. Times are UTC.",
                    every);
    sbuf_adds(o, "</p></footer>\n</div>\n</body>\n</html>\n");
}

void statuspage_render(struct sbuf *out, const struct statuspage_view *v, enum statuspage_doc doc)
{
    switch (doc) {
    case STATUSPAGE_DOC_HTML: render_html(out, v); break;
    case STATUSPAGE_DOC_ATOM: render_atom(out, v); break;
    case STATUSPAGE_DOC_RSS: render_rss(out, v); break;
    default: render_json(out, v, doc); break;
    }
}

/*
 * status_api.c — validate admin API bodies for incidents and maintenance
 * (see status_api.h).
 *
 * Each error names the field by its JSON path ("components.chat"), says
 * what is wrong and, where the set is small, what is accepted, because the
 * person reading it is an operator in the middle of an incident.  The
 * first error found is reported; fields are checked in a fixed order
 * (unknown fields first, then required ones, then values) so the same body
 * always yields the same error.
 */
#include "status_api.h"
#include "reply.h"
#include "statuspage.h"
#include "util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void status_api_fail(struct status_api_error *err, int http, const char *param, const char *code, const char *fmt, ...)
{
    va_list ap;
    err->http = http;
    rp_snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    rp_snprintf(err->code, sizeof err->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* The message is answered as JSON: a cut in the middle of a character
     * (or invalid bytes quoted from elsewhere) would make it invalid. */
    err->message[rp_utf8_prefix(err->message, sizeof err->message)] = '\0';
    err->param[rp_utf8_prefix(err->param, sizeof err->param)] = '\0';
}

/* Quoted user text is cut to this many bytes, on a character boundary. */
#define QUOTE_MAX 60
#define QUOTE(s) (int)rp_utf8_prefix((s), QUOTE_MAX), (s)

void status_api_error_json(struct sbuf *out, const struct status_api_error *err)
{
    /* The type stays invalid_request_error whatever the HTTP status, as
     * the admin API has always answered; an empty param is JSON null. */
    reply_error_body(out, err->http, "invalid_request_error", err->param[0] ? err->param : NULL, err->code,
                     err->message);
}

void status_api_req_free(struct status_api_req *r)
{
    free(r->name);
    free(r->body);
    r->name = r->body = NULL;
}

/* "a, b or c" from a NULL-terminated name table, between lo and hi. */
static void names_list(char *out, size_t cap, const char *const *names, int lo, int hi)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = lo; i <= hi; i++) {
        const char *sep = i == lo ? "" : (i == hi ? " or " : ", ");
        int n = rp_snprintf(out + used, cap - used, "%s%s", sep, names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* ---- field helpers ---- */

struct field_rule {
    const char *name;
    bool required;
};

static int check_fields(json_t *obj, const struct field_rule *rules, size_t n, struct status_api_error *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        bool known = false;
        for (size_t i = 0; i < n; i++)
            if (strcmp(rules[i].name, key) == 0)
                known = true;
        if (!known) {
            char allowed[256];
            size_t used = 0;
            allowed[0] = '\0';
            for (size_t i = 0; i < n; i++) {
                int w = rp_snprintf(allowed + used, sizeof allowed - used, "%s%s", i ? ", " : "", rules[i].name);
                if (w < 0)
                    break;
                used += (size_t)w;
            }
            status_api_fail(err, 400, key, "unknown_field", "unknown field \"%.*s\" (accepted: %s)", QUOTE(key),
                            allowed);
            return RP_ERR;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (rules[i].required && !json_object_get(obj, rules[i].name)) {
            status_api_fail(err, 400, rules[i].name, "missing_field", "%s: required field is missing", rules[i].name);
            return RP_ERR;
        }
    }
    return RP_OK;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* A text field: a string of 1..max bytes, not blank, without control
 * characters (a body may contain newlines and tabs). */
static int get_text(json_t *obj, const char *key, size_t max, bool multiline, char **out, struct status_api_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        status_api_fail(err, 400, key, "invalid_type", "%s: must be a string, not %s", key, json_type_name(v));
        return RP_ERR;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len > max) {
        status_api_fail(err, 400, key, "too_long", "%s: must be at most %zu bytes (got %zu)", key, max, len);
        return RP_ERR;
    }
    bool blank = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0' || c == 0x7f || (c < 0x20 && !(multiline && (c == '\n' || c == '\t' || c == '\r')))) {
            status_api_fail(err, 400, key, "invalid_value", "%s: control character U+%04X at byte %zu is not allowed%s",
                            key, c, i, multiline ? "" : " (use a single line)");
            return RP_ERR;
        }
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r')
            blank = false;
    }
    if (blank) {
        status_api_fail(err, 400, key, "invalid_value", "%s: must not be empty or blank", key);
        return RP_ERR;
    }
    *out = rp_xstrndup(s, len);
    return RP_OK;
}

/* An enumerated string among names[lo..hi]. */
static int get_enum(json_t *obj, const char *key, const char *const *names, int lo, int hi, int *out,
                    struct status_api_error *err)
{
    json_t *v = json_object_get(obj, key);
    char list[256];
    names_list(list, sizeof list, names, lo, hi);
    if (!json_is_string(v)) {
        status_api_fail(err, 400, key, "invalid_type", "%s: must be a string (one of %s), not %s", key, list,
                        json_type_name(v));
        return RP_ERR;
    }
    const char *s = json_string_value(v);
    for (int i = lo; i <= hi; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return RP_OK;
        }
    }
    status_api_fail(err, 400, key, "invalid_value", "%s: \"%.*s\" is not one of %s", key, QUOTE(s), list);
    return RP_ERR;
}

static int get_time(json_t *obj, const char *key, int64_t *out, struct status_api_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        status_api_fail(err, 400, key, "invalid_type",
                        "%s: must be an ISO 8601 string such as \"2025-01-31T22:00:00Z\", not %s", key,
                        json_type_name(v));
        return RP_ERR;
    }
    if (statuspage_parse_time(json_string_value(v), out) != RP_OK) {
        status_api_fail(err, 400, key, "invalid_value",
                        "%s: \"%.*s\" is not an ISO 8601 time with an offset (e.g. \"2025-01-31T22:00:00Z\" or "
                        "\"2025-01-31T23:00:00+01:00\")",
                        key, QUOTE(json_string_value(v)));
        return RP_ERR;
    }
    return RP_OK;
}

static int find_component(const struct status_api_components *c, const char *s)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->ids[i], s) == 0)
            return (int)i;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], s) == 0)
            return (int)i;
    for (size_t i = 0; i < c->n; i++)
        if (strcasecmp(c->names[i], s) == 0)
            return (int)i;
    return -1;
}

static void unknown_component(const struct status_api_components *c, const char *param, const char *s,
                              struct status_api_error *err)
{
    char known[200];
    size_t used = 0;
    known[0] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        int w = rp_snprintf(known + used, sizeof known - used, "%s\"%s\" (%s)", i ? ", " : "", c->names[i], c->ids[i]);
        if (w < 0) {
            size_t at = rp_utf8_prefix(known, used < sizeof known - 4 ? used : sizeof known - 4);
            rp_snprintf(known + at, 4, "...");
            break;
        }
        used += (size_t)w;
    }
    status_api_fail(err, 400, param, "unknown_component", "%s: no component \"%.*s\"; known components: %s", param,
                    QUOTE(s), c->n ? known : "none");
}

static int add_component(struct status_api_req *r, int idx, int st, const char *param, const char *s,
                         struct status_api_error *err)
{
    for (size_t i = 0; i < r->num_components; i++) {
        if (r->comp[i] == idx) {
            status_api_fail(err, 400, param, "duplicate_component", "%s: component \"%.*s\" is listed twice", param,
                            QUOTE(s));
            return RP_ERR;
        }
    }
    if (r->num_components >= STATUS_API_COMPONENTS_MAX) {
        status_api_fail(err, 400, "components", "too_many", "components: at most %d components",
                        STATUS_API_COMPONENTS_MAX);
        return RP_ERR;
    }
    r->comp[r->num_components] = idx;
    r->comp_status[r->num_components] = st;
    r->num_components++;
    return RP_OK;
}

static int get_components(json_t *obj, const struct status_api_components *c, bool with_status,
                          struct status_api_req *r, struct status_api_error *err)
{
    json_t *v = json_object_get(obj, "components");
    char param[96];
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            rp_snprintf(param, sizeof param, "components[%zu]", i);
            if (!json_is_string(item)) {
                status_api_fail(err, 400, param, "invalid_type", "%s: must be a component id or name, not %s", param,
                                json_type_name(item));
                return RP_ERR;
            }
            int idx = find_component(c, json_string_value(item));
            if (idx < 0) {
                unknown_component(c, param, json_string_value(item), err);
                return RP_ERR;
            }
            if (add_component(r, idx, -1, param, json_string_value(item), err) != RP_OK)
                return RP_ERR;
        }
        return RP_OK;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *val;
        char list[256];
        names_list(list, sizeof list, statuspage_cstatus_names, STATUSPAGE_OPERATIONAL, STATUSPAGE_MAJOR_OUTAGE);
        json_object_foreach(v, key, val)
        {
            rp_snprintf(param, sizeof param, "components.%.*s", (int)rp_utf8_prefix(key, 80), key);
            int idx = find_component(c, key);
            if (idx < 0) {
                unknown_component(c, param, key, err);
                return RP_ERR;
            }
            int st = -1;
            if (!with_status) {
                /* Maintenance marks its components under_maintenance
                 * itself; a status here would be ignored, so refuse it. */
                if (!json_is_null(val) && !json_is_true(val)) {
                    status_api_fail(err, 400, param, "invalid_value",
                                    "%s: maintenance sets the component status itself; list components as an "
                                    "array of ids or names",
                                    param);
                    return RP_ERR;
                }
            } else if (!json_is_string(val)) {
                status_api_fail(err, 400, param, "invalid_type", "%s: must be a component status (%s), not %s", param,
                                list, json_type_name(val));
                return RP_ERR;
            } else {
                const char *s = json_string_value(val);
                for (int k = STATUSPAGE_OPERATIONAL; k <= STATUSPAGE_MAJOR_OUTAGE; k++)
                    if (strcmp(s, statuspage_cstatus_names[k]) == 0)
                        st = k;
                if (st < 0) {
                    status_api_fail(err, 400, param, "invalid_value", "%s: \"%.*s\" is not one of %s", param, QUOTE(s),
                                    list);
                    return RP_ERR;
                }
            }
            if (add_component(r, idx, st, param, key, err) != RP_OK)
                return RP_ERR;
        }
        return RP_OK;
    }
    status_api_fail(err, 400, "components", "invalid_type",
                    "components: must be an object {\"component\": \"status\"} or an array of component ids, not %s",
                    json_type_name(v));
    return RP_ERR;
}

/* Field tables per request kind. */
static const struct field_rule rules_inc_create[] = {
    {"name", true}, {"body", true}, {"status", false}, {"impact", false}, {"components", false},
};
static const struct field_rule rules_inc_update[] = {
    {"status", true},
    {"body", true},
    {"impact", false},
    {"components", false},
};
static const struct field_rule rules_inc_edit[] = {{"name", false}, {"impact", false}};
static const struct field_rule rules_maint_create[] = {
    {"name", true},  {"scheduled_for", true}, {"scheduled_until", true},
    {"body", false}, {"components", false},   {"auto_transition", false},
};
static const struct field_rule rules_maint_update[] = {{"status", true}, {"body", true}};
static const struct field_rule rules_maint_edit[] = {
    {"name", false}, {"scheduled_for", false}, {"scheduled_until", false}, {"auto_transition", false}};
static const struct field_rule rules_update_edit[] = {{"body", true}};

static int parse_fields(enum status_api_kind kind, json_t *root, const struct status_api_components *c, int64_t now_ms,
                        struct status_api_req *r, struct status_api_error *err)
{
    const struct field_rule *rules;
    size_t nrules;
    switch (kind) {
    case STATUS_API_INCIDENT_CREATE: rules = rules_inc_create, nrules = RP_ARRAY_LEN(rules_inc_create); break;
    case STATUS_API_INCIDENT_UPDATE: rules = rules_inc_update, nrules = RP_ARRAY_LEN(rules_inc_update); break;
    case STATUS_API_INCIDENT_EDIT: rules = rules_inc_edit, nrules = RP_ARRAY_LEN(rules_inc_edit); break;
    case STATUS_API_MAINT_CREATE: rules = rules_maint_create, nrules = RP_ARRAY_LEN(rules_maint_create); break;
    case STATUS_API_MAINT_UPDATE: rules = rules_maint_update, nrules = RP_ARRAY_LEN(rules_maint_update); break;
    case STATUS_API_MAINT_EDIT: rules = rules_maint_edit, nrules = RP_ARRAY_LEN(rules_maint_edit); break;
    default: rules = rules_update_edit, nrules = RP_ARRAY_LEN(rules_update_edit); break;
    }
    if (check_fields(root, rules, nrules, err) != RP_OK)
        return RP_ERR;
    bool maint = kind == STATUS_API_MAINT_CREATE || kind == STATUS_API_MAINT_UPDATE || kind == STATUS_API_MAINT_EDIT;

    if (json_object_get(root, "name")) {
        if (get_text(root, "name", STATUS_API_NAME_MAX, false, &r->name, err) != RP_OK)
            return RP_ERR;
        r->has_name = true;
    }
    if (json_object_get(root, "body")) {
        if (get_text(root, "body", STATUS_API_BODY_MAX, true, &r->body, err) != RP_OK)
            return RP_ERR;
        r->has_body = true;
    }
    if (json_object_get(root, "status")) {
        int lo, hi;
        if (maint) {
            lo = STATUSPAGE_SCHEDULED, hi = STATUSPAGE_COMPLETED;
        } else if (kind == STATUS_API_INCIDENT_CREATE) {
            /* A postmortem follows a resolution: a new incident cannot
             * start as one. */
            lo = STATUSPAGE_INVESTIGATING, hi = STATUSPAGE_RESOLVED;
        } else {
            lo = STATUSPAGE_INVESTIGATING, hi = STATUSPAGE_POSTMORTEM;
        }
        if (get_enum(root, "status", statuspage_istatus_names, lo, hi, &r->status, err) != RP_OK)
            return RP_ERR;
        r->has_status = true;
    }
    if (json_object_get(root, "impact")) {
        if (get_enum(root, "impact", statuspage_impact_names, STATUSPAGE_IMPACT_NONE, STATUSPAGE_IMPACT_CRITICAL,
                     &r->impact, err) != RP_OK)
            return RP_ERR;
        r->has_impact = true;
    }
    if (json_object_get(root, "components")) {
        if (get_components(root, c, !maint, r, err) != RP_OK)
            return RP_ERR;
        r->has_components = true;
    }
    if (json_object_get(root, "auto_transition")) {
        json_t *v = json_object_get(root, "auto_transition");
        if (!json_is_boolean(v)) {
            status_api_fail(err, 400, "auto_transition", "invalid_type",
                            "auto_transition: must be true or false, not %s", json_type_name(v));
            return RP_ERR;
        }
        r->auto_transition = json_is_true(v);
        r->has_auto = true;
    }
    if (json_object_get(root, "scheduled_for")) {
        if (get_time(root, "scheduled_for", &r->scheduled_for_ms, err) != RP_OK)
            return RP_ERR;
        r->has_for = true;
    }
    if (json_object_get(root, "scheduled_until")) {
        if (get_time(root, "scheduled_until", &r->scheduled_until_ms, err) != RP_OK)
            return RP_ERR;
        r->has_until = true;
    }

    if (kind == STATUS_API_INCIDENT_EDIT && !r->has_name && !r->has_impact) {
        status_api_fail(err, 400, NULL, "missing_field", "nothing to change: give name and/or impact");
        return RP_ERR;
    }
    if (kind == STATUS_API_MAINT_EDIT && !r->has_name && !r->has_for && !r->has_until && !r->has_auto) {
        status_api_fail(err, 400, NULL, "missing_field",
                        "nothing to change: give name, scheduled_for, scheduled_until and/or auto_transition");
        return RP_ERR;
    }
    if (kind == STATUS_API_MAINT_CREATE) {
        if (!r->has_auto)
            r->auto_transition = true;
        if (r->scheduled_until_ms <= r->scheduled_for_ms) {
            status_api_fail(err, 400, "scheduled_until", "invalid_value",
                            "scheduled_until: must be after scheduled_for");
            return RP_ERR;
        }
        if (r->scheduled_until_ms <= now_ms) {
            status_api_fail(err, 400, "scheduled_until", "invalid_value",
                            "scheduled_until: is in the past; maintenance must end in the future");
            return RP_ERR;
        }
        if (r->scheduled_for_ms > now_ms + STATUS_API_MAINT_AHEAD_MS) {
            status_api_fail(err, 400, "scheduled_for", "invalid_value", "scheduled_for: at most 366 days ahead");
            return RP_ERR;
        }
        if (r->scheduled_until_ms - r->scheduled_for_ms > STATUS_API_MAINT_LONGEST_MS) {
            status_api_fail(err, 400, "scheduled_until", "invalid_value",
                            "scheduled_until: a maintenance window lasts at most 7 days");
            return RP_ERR;
        }
    }
    return RP_OK;
}

int status_api_parse(enum status_api_kind kind, const char *body, size_t len, const struct status_api_components *c,
                     int64_t now_ms, struct status_api_req *out, struct status_api_error *err)
{
    int rc = RP_ERR;
    json_error_t jerr;
    json_t *root = NULL;

    memset(out, 0, sizeof *out);
    if (len == 0) {
        status_api_fail(err, 400, NULL, "invalid_json", "request body is empty; send a JSON object");
        goto cleanup;
    }
    /* JSON text is UTF-8 (RFC 8259).  Checked here rather than left to the
     * parser so the answer says where the bad byte is, and never quotes
     * it: the parser's message would. */
    size_t bad = 0;
    if (!rp_utf8_valid(body, len, &bad)) {
        status_api_fail(err, 400, NULL, "invalid_utf8",
                        "request body is not valid UTF-8: byte 0x%02X at offset %zu does not start a valid sequence",
                        (unsigned)(unsigned char)body[bad], bad);
        goto cleanup;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        status_api_fail(err, 400, NULL, "invalid_json", "request body is not valid JSON: %.*s (line %d, column %d)",
                        (int)rp_utf8_prefix(jerr.text, sizeof jerr.text), jerr.text, jerr.line, jerr.column);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        status_api_fail(err, 400, NULL, "invalid_type", "request body must be a JSON object, not %s",
                        json_type_name(root));
        goto cleanup;
    }
    rc = parse_fields(kind, root, c, now_ms, out, err);
cleanup:
    json_decref(root);
    if (rc != RP_OK)
        status_api_req_free(out);
    return rc;
}

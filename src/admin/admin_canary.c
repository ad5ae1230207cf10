/*
 * admin_canary.c — the canary admin API (see admin_canary.h): paths,
 * methods and action bodies.  The canaries come from the handler's arg,
 * the owner's struct canary_set, and so does the clock.
 */
#include "admin_canary.h"
#include "admin.h"
#include "canary.h"
#include "h1.h"
#include "util.h"

#include <jansson.h>
#include <string.h>

static bool method_is(const struct httpd_request *req, const char *m)
{
    return req->msg && req->msg->method.len == strlen(m) && memcmp(req->msg->method.p, m, req->msg->method.len) == 0;
}

static void bad_request(struct httpd_response *resp, const char *msg)
{
    httpd_json_error(resp, 400, "invalid_request_error", msg);
}

static int apply_action(struct canary *c, json_t *body, struct httpd_response *resp, uint64_t now_us)
{
    json_t *jact = json_object_get(body, "action");
    if (!json_is_string(jact)) {
        bad_request(resp, "\"action\" is required: pause, resume, rollback, promote or set_weight");
        return RP_ERR;
    }
    const char *act = json_string_value(jact);
    json_t *jreason = json_object_get(body, "reason");
    const char *reason = NULL;
    if (jreason) {
        if (!json_is_string(jreason) || json_string_length(jreason) > 200) {
            bad_request(resp, "\"reason\" must be a string of at most 200 bytes");
            return RP_ERR;
        }
        reason = json_string_value(jreason);
    }
    int rc;
    if (strcmp(act, "pause") == 0) {
        rc = canary_pause(c, now_us);
    } else if (strcmp(act, "resume") == 0) {
        rc = canary_resume(c, now_us);
    } else if (strcmp(act, "rollback") == 0) {
        rc = canary_rollback(c, reason, now_us);
    } else if (strcmp(act, "promote") == 0) {
        rc = canary_promote(c, now_us);
    } else if (strcmp(act, "set_weight") == 0) {
        json_t *jw = json_object_get(body, "weight");
        double w = json_is_number(jw) ? json_number_value(jw) : -1.0;
        if (!(w >= 0.0 && w <= 100.0)) {
            bad_request(resp, "set_weight needs \"weight\": a number of percent between 0 and 100");
            return RP_ERR;
        }
        rc = canary_set_weight(c, (unsigned)(w * 100.0 + 0.5), now_us);
    } else {
        bad_request(resp, "unknown action: expected pause, resume, rollback, promote or set_weight");
        return RP_ERR;
    }
    if (rc != RP_OK) {
        httpd_json_error_code(resp, 409, "invalid_request_error", "invalid_state",
                              c->last_error ? c->last_error : "not possible in the current state");
        return RP_ERR;
    }
    return RP_OK;
}

void canary_admin_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    const struct canary_set *set = arg;
    struct canary *head = set ? set->head : NULL;
    uint64_t now = canary_set_now(set);
    size_t plen = strlen(ADMIN_CANARY_PREFIX);
    if (req->path.len < plen || memcmp(req->path.p, ADMIN_CANARY_PREFIX, plen) != 0) {
        httpd_json_error(resp, 404, "not_found_error", "no such endpoint");
        return;
    }
    const char *rest = req->path.p + plen;
    size_t rlen = req->path.len - plen;
    if (rlen > 0 && rest[0] != '/') {
        httpd_json_error(resp, 404, "not_found_error", "no such endpoint");
        return;
    }
    if (rlen > 0) {
        rest++;
        rlen--;
    }
    while (rlen > 0 && rest[rlen - 1] == '/')
        rlen--;
    struct canary *c = NULL;
    if (rlen > 0) {
        c = canary_set_find(set, rest, rlen);
        if (!c) {
            httpd_json_error(resp, 404, "not_found_error", "no canary for that upstream");
            return;
        }
    }
    resp->status = 200;
    resp->content_type = "application/json";
    if (method_is(req, "GET") || method_is(req, "HEAD")) {
        sbuf_reset(&resp->body);
        if (c) {
            canary_render_json(c, &resp->body, now);
        } else {
            sbuf_adds(&resp->body, "{\"canaries\":[");
            for (const struct canary *k = head; k; k = k->next_in_set) {
                if (k != head)
                    sbuf_adds(&resp->body, ",");
                canary_render_json(k, &resp->body, now);
            }
            sbuf_adds(&resp->body, "]}");
        }
        sbuf_adds(&resp->body, "\n");
        return;
    }
    if (!method_is(req, "POST")) {
        httpd_add_header(resp, "Allow", "GET, HEAD, POST");
        httpd_json_error(resp, 405, "invalid_request_error", "use GET to read or POST an action");
        return;
    }
    if (!c) {
        if (head && !head->next_in_set) {
            c = head;
        } else {
            httpd_json_error(resp, 404, "not_found_error",
                             head ? "name the upstream: POST /api/v1/canary/<upstream>" : "no canary configured");
            return;
        }
    }
    json_error_t jerr;
    size_t bad = 0;
    /* The parser's message quotes the bytes near the error: never echo
     * bytes that are not UTF-8, and never cut a character in two. */
    if (req->body && !rp_utf8_valid(req->body, req->body_len, &bad)) {
        char msg[128];
        rp_snprintf(msg, sizeof msg, "the body is not valid UTF-8: byte 0x%02X at offset %zu",
                    (unsigned)(unsigned char)req->body[bad], bad);
        bad_request(resp, msg);
        return;
    }
    json_t *body = req->body && req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
    if (!body || !json_is_object(body)) {
        char msg[256];
        const char *why = body ? "" : (req->body_len ? jerr.text : "empty body");
        rp_snprintf(msg, sizeof msg, "the body must be a JSON object%s%.*s", body ? "" : ": ",
                    (int)rp_utf8_prefix(why, 180), why);
        bad_request(resp, msg);
        json_decref(body);
        return;
    }
    if (apply_action(c, body, resp, now) == RP_OK) {
        sbuf_reset(&resp->body);
        canary_render_json(c, &resp->body, now);
        sbuf_adds(&resp->body, "\n");
    }
    json_decref(body);
}

void canary_admin_register(struct admin *a, struct canary_set *set)
{
    admin_route(a, ADMIN_CANARY_PREFIX, canary_admin_handler, set);
}

/*
 * llmsim_api.c — the endpoints: POST /v1/chat/completions (OpenAI's request
 * and response shapes, JSON or SSE), GET /v1/models, GET /health, and the
 * control API GET /sim/stats, GET|POST /sim/config.
 *
 * Requests are validated as OpenAI's API does, with the same error object
 * (type invalid_request_error, the offending field in "param"), so a client
 * or the gateway in front sees what a real server would answer.  Bodies are
 * parsed with jansson: they arrive whole and once per request, and a
 * simulator can afford a real JSON parser there (the per-token path in
 * llmsim_model.c formats its JSON directly).
 */
#include "llmsim.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "util.h"

static void handle_health(struct conn *c);
static void handle_config_get(struct conn *c);

bool api_version_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > SIM_VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '-' || ch == '_' || ch == '+' || ch == ':';
        if (!ok)
            return false;
    }
    return true;
}

/* Sum of the characters of all message contents (string, or an array of
 * parts with "text"), or -1 with *why set when messages is malformed. */
static long count_prompt_chars(json_t *messages, const char **why, char *param, size_t pcap)
{
    long chars = 0;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        rp_snprintf(param, pcap, "messages[%zu]", i);
        if (!json_is_object(m)) {
            *why = "must be an object";
            return -1;
        }
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            rp_snprintf(param, pcap, "messages[%zu].role", i);
            *why = "is required and must be a string";
            return -1;
        }
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            chars += (long)json_string_length(content);
        } else if (json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part)
            {
                json_t *text = json_is_object(part) ? json_object_get(part, "text") : NULL;
                if (json_is_string(text))
                    chars += (long)json_string_length(text);
            }
        } else if (content && !json_is_null(content)) {
            rp_snprintf(param, pcap, "messages[%zu].content", i);
            *why = "must be a string, an array of parts or null";
            return -1;
        }
    }
    return chars;
}

static void handle_chat(struct conn *c)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &jerr);
    char param[64];
    const char *why = NULL;

    if (!root) {
        conn_send_error(c, 400, "invalid_request_error", NULL, "invalid_json",
                        "We could not parse the JSON body of your request: %s (line %d, column %d)", jerr.text,
                        jerr.line, jerr.column);
        return;
    }
    if (!json_is_object(root)) {
        conn_send_error(c, 400, "invalid_request_error", NULL, "invalid_json",
                        "The request body must be a JSON object.");
        goto done;
    }
    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        conn_send_error(c, 400, "invalid_request_error", "messages", NULL,
                        "'messages' is required and must be a non-empty array.");
        goto done;
    }
    long chars = count_prompt_chars(messages, &why, param, sizeof param);
    if (chars < 0) {
        conn_send_error(c, 400, "invalid_request_error", param, NULL, "'%s' %s.", param, why);
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_string(model)) {
        conn_send_error(c, 400, "invalid_request_error", "model", NULL, "'model' must be a string.");
        goto done;
    }
    if (model && json_string_length(model) > SIM_MODEL_MAX) {
        conn_send_error(c, 400, "invalid_request_error", "model", NULL, "'model' is longer than %d characters.",
                        SIM_MODEL_MAX);
        goto done;
    }
    /* max_completion_tokens is the newer name; either is accepted. */
    const char *mt_name = "max_completion_tokens";
    json_t *mt = json_object_get(root, mt_name);
    if (!mt || json_is_null(mt)) {
        mt_name = "max_tokens";
        mt = json_object_get(root, mt_name);
    }
    long long max_tokens = -1;
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > SIM_MAX_TOKENS) {
            conn_send_error(c, 400, "invalid_request_error", mt_name, NULL, "'%s' must be an integer between 1 and %d.",
                            mt_name, SIM_MAX_TOKENS);
            goto done;
        }
        max_tokens = json_integer_value(mt);
    }
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        conn_send_error(c, 400, "invalid_request_error", "stream", NULL, "'stream' must be a boolean.");
        goto done;
    }
    bool include_usage = false;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        json_t *iu = json_is_object(so) ? json_object_get(so, "include_usage") : NULL;
        if (!json_is_object(so) || (iu && !json_is_boolean(iu))) {
            conn_send_error(c, 400, "invalid_request_error", "stream_options", NULL,
                            "'stream_options' must be an object whose 'include_usage' is a boolean.");
            goto done;
        }
        include_usage = json_is_true(iu);
    }

    struct seq *s = rp_xcalloc(1, sizeof *s);
    s->c = c;
    s->id = ++sim.next_id ^ (rp_rand64() & 0xffffffff00000000ull);
    s->created = rp_wall_ms() / 1000;
    s->prompt_tokens = (int)RP_MAX(1, (chars + 3) / 4);
    s->stream = json_is_true(stream);
    s->include_usage = s->stream && include_usage;
    if (max_tokens > 0) {
        s->target_tokens = (int)max_tokens;
        s->finish_length = true;
    } else {
        double d = sim.cfg.default_tokens, sp = sim.cfg.default_spread;
        double lo = d * (1.0 - sp), hi = d * (1.0 + sp);
        s->target_tokens = (int)RP_MAX(1.0, floor(lo + rp_rand01() * (hi - lo + 1.0)));
    }
    {
        const char *name = model ? json_string_value(model) : sim.cfg.model;
        struct sbuf mj;
        sbuf_init(&mj, 0);
        sbuf_json_str(&mj, name, strlen(name));
        rp_snprintf(s->model_json, sizeof s->model_json, "%s", mj.data ? mj.data : "");
        sbuf_free(&mj);
    }
    sim.st.requests_received++;
    c->seq = s;
    seq_submit(s); /* may answer 500 at once */
done:
    json_decref(root);
}

static void render_config(struct sbuf *j)
{
    const struct sim_cfg *k = &sim.cfg;
    sbuf_printf(j,
                "{\"slots\":%d,\"prefill_base_ms\":%g,\"prefill_per_token_us\":%g,\"token_ms\":%g,"
                "\"batch_slowdown\":%g,\"default_tokens\":%d,\"default_tokens_spread\":%g,"
                "\"error_rate\":%g,\"added_latency_ms\":%g,",
                k->slots, k->prefill_base_ms, k->prefill_per_token_us, k->token_ms, k->batch_slowdown,
                k->default_tokens, k->default_spread, k->error_rate, k->added_latency_ms);
    if (k->bad_release)
        sbuf_printf(j, "\"bad_release\":{\"error_rate\":%g,\"token_slowdown\":%g},", k->bad_error_rate,
                    k->bad_token_slowdown);
    else
        sbuf_adds(j, "\"bad_release\":null,");
    sbuf_printf(j, "\"health_fail\":%s,\"no_abort\":%s,\"version\":\"%s\",\"model\":\"",
                k->health_fail ? "true" : "false", k->no_abort ? "true" : "false", k->version);
    sbuf_json_str(j, k->model, strlen(k->model));
    sbuf_adds(j, "\"}");
}

static void handle_stats(struct conn *c)
{
    struct sbuf *j = &sim.scratch;
    const struct sim_stats *t = &sim.st;
    double svc = seq_service_ms_estimate(sim.cfg.default_tokens, 0);
    sbuf_reset(j);
    sbuf_printf(j,
                "{\"version\":\"%s\",\"slots\":%d,\"slots_busy\":%zu,\"decoding\":%zu,\"queue_len\":%zu,"
                "\"max_queue_len\":%llu,\"token_interval_ms\":%.3f,",
                sim.cfg.version, sim.cfg.slots, sim.running.len, sim.decoding, sim.queue.len,
                (unsigned long long)t->max_queue_len, (double)seq_token_interval_us() / 1000.0);
    sbuf_printf(j,
                "\"tokens_generated\":%llu,\"tokens_wasted\":%llu,\"tokens_after_disconnect\":%llu,"
                "\"requests_received\":%llu,\"requests_served\":%llu,\"requests_aborted\":%llu,"
                "\"requests_failed\":%llu,\"requests_rejected\":%llu,",
                (unsigned long long)t->tokens_generated, (unsigned long long)t->tokens_wasted,
                (unsigned long long)t->tokens_after_disconnect, (unsigned long long)t->requests_received,
                (unsigned long long)t->requests_served, (unsigned long long)t->requests_aborted,
                (unsigned long long)t->requests_failed, (unsigned long long)t->requests_rejected);
    sbuf_printf(j,
                "\"connections_open\":%ld,\"connections_accepted\":%llu,\"uptime_s\":%.3f,"
                "\"service_ms_estimate\":%.1f,\"capacity_rps_estimate\":%.3f,\"config\":",
                t->connections_open, (unsigned long long)t->connections_accepted,
                (double)(rp_now_us() - sim.started_us) / 1e6, svc, svc > 0 ? sim.cfg.slots * 1000.0 / svc : 0.0);
    render_config(j);
    sbuf_adds(j, "}");
    conn_send_json(c, 200, j, NULL);
}

/* Read one number field; false (and a 400 sent) when present but invalid. */
static bool cfg_number(struct conn *c, json_t *obj, const char *key, const char *param, double lo, double hi,
                       double *out, bool *present)
{
    json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi ||
        !isfinite(json_number_value(v))) {
        conn_send_error(c, 400, "invalid_request_error", param, "invalid_value",
                        "'%s' must be a number between %g and %g.", param, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* POST /sim/config: validate every field first, then apply all at once, so
 * a bad request changes nothing. */
static void handle_config_post(struct conn *c)
{
    static const char *const known[] = {"error_rate",      "added_latency_ms",     "slots",          "version",
                                        "bad_release",     "health_fail",          "token_ms",       "batch_slowdown",
                                        "prefill_base_ms", "prefill_per_token_us", "default_tokens", "no_abort"};
    json_error_t jerr;
    json_t *root = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &jerr);
    struct sim_cfg n = sim.cfg;
    bool p;

    if (!root) {
        conn_send_error(c, 400, "invalid_request_error", NULL, "invalid_json", "Invalid JSON: %s (line %d, column %d)",
                        jerr.text, jerr.line, jerr.column);
        return;
    }
    if (!json_is_object(root)) {
        conn_send_error(c, 400, "invalid_request_error", NULL, "invalid_json", "The body must be a JSON object.");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        bool ok = false;
        for (size_t i = 0; i < RP_ARRAY_LEN(known); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            conn_send_error(c, 400, "invalid_request_error", key, "unknown_field",
                            "Unknown field '%s'; known: error_rate, added_latency_ms, slots, version, bad_release, "
                            "health_fail, token_ms, batch_slowdown, prefill_base_ms, prefill_per_token_us, "
                            "default_tokens, no_abort.",
                            key);
            goto done;
        }
    }
    if (!cfg_number(c, root, "error_rate", "error_rate", 0, 1, &n.error_rate, &p) ||
        !cfg_number(c, root, "added_latency_ms", "added_latency_ms", 0, 600000, &n.added_latency_ms, &p) ||
        !cfg_number(c, root, "token_ms", "token_ms", 0, 60000, &n.token_ms, &p) ||
        !cfg_number(c, root, "batch_slowdown", "batch_slowdown", 0, 1000, &n.batch_slowdown, &p) ||
        !cfg_number(c, root, "prefill_base_ms", "prefill_base_ms", 0, 600000, &n.prefill_base_ms, &p) ||
        !cfg_number(c, root, "prefill_per_token_us", "prefill_per_token_us", 0, 1e6, &n.prefill_per_token_us, &p))
        goto done;
    json_t *slots = json_object_get(root, "slots");
    if (slots) {
        if (!json_is_integer(slots) || json_integer_value(slots) < 1 || json_integer_value(slots) > SIM_MAX_SLOTS) {
            conn_send_error(c, 400, "invalid_request_error", "slots", "invalid_value",
                            "'slots' must be an integer between 1 and %d.", SIM_MAX_SLOTS);
            goto done;
        }
        n.slots = (int)json_integer_value(slots);
    }
    json_t *dt = json_object_get(root, "default_tokens");
    if (dt) {
        if (!json_is_integer(dt) || json_integer_value(dt) < 1 || json_integer_value(dt) > SIM_MAX_TOKENS) {
            conn_send_error(c, 400, "invalid_request_error", "default_tokens", "invalid_value",
                            "'default_tokens' must be an integer between 1 and %d.", SIM_MAX_TOKENS);
            goto done;
        }
        n.default_tokens = (int)json_integer_value(dt);
    }
    json_t *ver = json_object_get(root, "version");
    if (ver) {
        if (!json_is_string(ver) || !api_version_ok(json_string_value(ver))) {
            conn_send_error(c, 400, "invalid_request_error", "version", "invalid_value",
                            "'version' must be a string of 1-%d characters from [A-Za-z0-9._:+-].", SIM_VERSION_MAX);
            goto done;
        }
        rp_snprintf(n.version, sizeof n.version, "%s", json_string_value(ver));
    }
    const char *bools[] = {"health_fail", "no_abort"};
    bool *bdst[] = {&n.health_fail, &n.no_abort};
    for (size_t i = 0; i < RP_ARRAY_LEN(bools); i++) {
        json_t *b = json_object_get(root, bools[i]);
        if (!b)
            continue;
        if (!json_is_boolean(b)) {
            conn_send_error(c, 400, "invalid_request_error", bools[i], "invalid_value", "'%s' must be a boolean.",
                            bools[i]);
            goto done;
        }
        *bdst[i] = json_is_true(b);
    }
    json_t *bad = json_object_get(root, "bad_release");
    if (bad) {
        if (json_is_null(bad) || json_is_false(bad)) {
            n.bad_release = false;
        } else if (json_is_object(bad)) {
            json_object_foreach(bad, key, val)
            {
                if (strcmp(key, "error_rate") != 0 && strcmp(key, "token_slowdown") != 0) {
                    char pn[96];
                    rp_snprintf(pn, sizeof pn, "bad_release.%s", key);
                    conn_send_error(c, 400, "invalid_request_error", pn, "unknown_field",
                                    "Unknown field '%s'; bad_release takes error_rate and token_slowdown.", pn);
                    goto done;
                }
            }
            n.bad_error_rate = 0;
            n.bad_token_slowdown = 1;
            if (!cfg_number(c, bad, "error_rate", "bad_release.error_rate", 0, 1, &n.bad_error_rate, &p) ||
                !cfg_number(c, bad, "token_slowdown", "bad_release.token_slowdown", 0.01, 1000, &n.bad_token_slowdown,
                            &p))
                goto done;
            n.bad_release = true;
        } else {
            conn_send_error(c, 400, "invalid_request_error", "bad_release", "invalid_value",
                            "'bad_release' must be an object {error_rate, token_slowdown} or null.");
            goto done;
        }
    }
    sim.cfg = n;
    seq_sched_fill(); /* more slots take queued work at once */
    rp_log_info("config changed: slots=%d error_rate=%g added_latency_ms=%g version=%s bad_release=%s health_fail=%s",
                n.slots, n.error_rate, n.added_latency_ms, n.version, n.bad_release ? "on" : "off",
                n.health_fail ? "yes" : "no");
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    render_config(j);
    conn_send_json(c, 200, j, NULL);
done:
    json_decref(root);
}

static void handle_models(struct conn *c)
{
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    sbuf_adds(j, "{\"object\":\"list\",\"data\":[{\"id\":\"");
    sbuf_json_str(j, sim.cfg.model, strlen(sim.cfg.model));
    sbuf_printf(j, "\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"llmsim\"}]}",
                (long long)sim.started_wall_s);
    conn_send_json(c, 200, j, NULL);
}

static bool method_is(const struct conn *c, const char *m)
{
    return strcmp(c->method, m) == 0;
}

/* Route one complete request. */
void api_dispatch(struct conn *c)
{
    char path[SIM_TARGET_MAX + 1];
    size_t plen = strcspn(c->target, "?");
    rp_snprintf(path, sizeof path, "%.*s", (int)plen, c->target);

    struct route {
        const char *path, *method;
        void (*fn)(struct conn *);
    };
    static const struct route routes[] = {
        {"/v1/chat/completions", "POST", handle_chat},
        {"/v1/models", "GET", handle_models},
        {"/health", "GET", handle_health},
        {"/sim/stats", "GET", handle_stats},
        {"/sim/config", "POST", handle_config_post},
        {"/sim/config", "GET", handle_config_get},
    };
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < RP_ARRAY_LEN(routes); i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        path_known = true;
        if (method_is(c, routes[i].method)) {
            routes[i].fn(c);
            return;
        }
        size_t al = strlen(allow);
        rp_snprintf(allow + al, sizeof allow - al, "%s%s", al ? ", " : "", routes[i].method);
    }
    if (path_known) {
        char extra[96];
        rp_snprintf(extra, sizeof extra, "allow: %s\r\n", allow);
        char msg[160];
        rp_snprintf(msg, sizeof msg, "Method %s is not allowed here; use %s.", c->method, allow);
        struct sbuf *j = &sim.scratch;
        sbuf_reset(j);
        reply_error_body(j, 405, "invalid_request_error", NULL, "method_not_allowed", msg);
        conn_send_json(c, 405, j, extra);
        return;
    }
    conn_send_error(c, 404, "invalid_request_error", NULL, "unknown_url", "Unknown request URL: %s %s.", c->method,
                    path);
}

static void handle_health(struct conn *c)
{
    if (sim.cfg.health_fail) {
        static const char body[] = "{\"status\":\"failing\"}";
        conn_send_whole(c, 503, "application/json", body, sizeof body - 1, NULL);
    } else {
        static const char body[] = "{\"status\":\"ok\"}";
        conn_send_whole(c, 200, "application/json", body, sizeof body - 1, NULL);
    }
}

static void handle_config_get(struct conn *c)
{
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    render_config(j);
    conn_send_json(c, 200, j, NULL);
}

/*
 * proxy_request.c — one request of a client connection, from its head to
 * its end: the one writer of local replies (client_reply_error, req_reply),
 * the request head (checks, routing, tenant, the rewritten upstream head),
 * the request body (c->in -> r->out -> the upstream), and completion
 * (req_finish, where the request's one outcome is decided, and req_clear).
 *
 * Kept apart from the connection (proxy.c) and from admission and the
 * response (proxy_forward.c): this is what a request is and how it ends,
 * whoever ends it.
 */
#include "proxy_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accesslog.h"
#include "admit.h"
#include "buf.h"
#include "config.h"
#include "h1.h"
#include "llmreq.h"
#include "metrics.h"
#include "outcome.h"
#include "quota.h"
#include "reply.h"
#include "status.h"
#include "tenant.h"
#include "upstream.h"
#include "uri.h"
#include "util.h"

/* ---------------------------------------------------------------------- */
/* error replies                                                           */

/* The one writer of locally generated responses: a complete response on
 * c->out, with an OpenAI-shaped JSON body so API clients parse it like any
 * other API error.  message may hold client-supplied text (a parameter
 * name): it is escaped. */
void client_reply_error(struct client *c, int status, const char *code, const char *message, const char *extra_headers,
                        bool close)
{
    struct request *r = &c->r;
    struct sbuf b;
    sbuf_init(&b, 16384);
    reply_error(&b,
                &(struct reply_head){.status = status,
                                     .conn = reply_conn(close, r->client_minor),
                                     .request_id = r->id,
                                     .extra_headers = extra_headers},
                NULL, code, message);
    /* Never write half a response: a reply that cannot fit (c->out holds
     * a large unsent response) ends the connection instead. */
    if (!c->out.start)
        buf_alloc(&c->out);
    if (buf_free_tail(&c->out) < b.len)
        buf_compact(&c->out);
    if (b.truncated || buf_free_tail(&c->out) < b.len) {
        c->close_after = true;
        sbuf_free(&b);
        return;
    }
    buf_append(&c->out, b.data, b.len);
    r->bytes_out += b.len;
    sbuf_free(&b);
}

/* Answer the current request locally and end it: the one path for every
 * locally generated response (errors, refusals, timeouts).  The connection
 * closes after the reply when asked, when the client did not ask for
 * keep-alive, or when the request body was not read whole (its bytes must
 * never be parsed as a request); it then lingers (client_linger). */
void req_reply(struct client *c, int status, const char *code, const char *msg, const char *extra_headers,
               enum outcome o, bool close)
{
    struct request *r = &c->r;
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    close = close || !r->req_body_done || !r->client_keep_alive || c->px->draining;
    client_reply_error(c, status, code, msg, extra_headers, close);
    if (close)
        c->close_after = true;
    r->state = R_LOCAL;
    req_finish(c, status, o);
    req_clear(c);
    client_flush(c);
}

/* ---------------------------------------------------------------------- */
/* request completion                                                      */

/* Give back everything the request holds outside the connection: its
 * queue place, its concurrency slot, its quota reservation and its tenant
 * reference.
 *
 * Quotas: a request that reached an upstream keeps its request charge
 * whatever happened next (the work was done or started): an error, a
 * non-model path or a client that left mid-answer is no free request.  Its
 * tokens are settled from the usage the response reported, or stay
 * reserved when it reported none.  Only a request that never reached an
 * upstream (refused after the reservation: queue full, deadline, no
 * server; or its client left the queue) is refunded. */
static void req_release_admission(struct client *c, int status, enum outcome o, uint64_t now)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    if (r->queued) {
        admit_cancel(&r->up->queue, &r->waiter, now);
        r->queued = false;
        queue_arm(r->up);
    }
    if (admit_slot_held(&r->slot)) {
        admit_slot_give(&r->slot, now, outcome_limiter(o, status, r->t_first_byte != 0));
        pump_schedule(r->up);
    }
    if (r->tenant) {
        struct tenant *t = r->tenant;
        if (r->qt.active) {
            uint64_t prompt = 0, completion = 0;
            if (r->scan_on) {
                llmreq_scan_finish(&r->scan);
                llmreq_scan_usage(&r->scan, r->info.prompt_tokens, &prompt, &completion);
            }
            if (!r->t_dispatch && (outcome_side(o) == OUTCOME_SIDE_LOCAL || outcome_side(o) == OUTCOME_SIDE_CLIENT)) {
                quota_cancel(&t->quota, &t->policy->quota, &r->qt, now);
            } else if (r->scan_on && (prompt || completion)) {
                quota_settle(&t->quota, &t->policy->quota, &r->qt, prompt + completion, now);
                t->tokens_prompt += prompt;
                t->tokens_completion += completion;
            } else {
                quota_settle(&t->quota, &t->policy->quota, &r->qt, r->qt.reserved, now);
            }
        }
        tenant_release(px->tenants, t, now);
        r->tenant = NULL;
    }
}

/* Report how the current attempt ended to outlier detection and canary
 * analysis, once per attempt. */
void req_attempt_done(struct client *c, int outcome, uint64_t ttft_us)
{
    struct request *r = &c->r;
    if (r->attempt_recorded || !r->srv)
        return;
    r->attempt_recorded = true;
    upstream_attempt_done(r->srv, outcome, ttft_us, ev_now(c->px->loop));
}

uint64_t req_attempt_ttft(const struct request *r)
{
    uint64_t t = r->t_first_body ? r->t_first_body : r->t_first_byte;
    return t && r->t_dispatch && t >= r->t_dispatch ? t - r->t_dispatch : 0;
}

/* Account for and log the current request, release its server slot and
 * admission state.  Runs once per request, and is where the request's one
 * outcome is decided.  The upstream connection must already be released
 * or closed by the caller. */
void req_finish(struct client *c, int status, enum outcome o)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    if (r->finished)
        return;
    r->finished = true;
    r->outcome = o;
    c->served++;
    uint64_t now = ev_now(px->loop);
    const char *server = r->srv ? r->srv->name : NULL;
    if (r->srv) {
        if (status >= 500 && r->t_first_byte == 0)
            r->srv->responses_5xx++;
        /* Attempts that ended on the client's side say nothing about the
         * server; every other ending is judged here. */
        if (outcome_side(o) != OUTCOME_SIDE_CLIENT && outcome_side(o) != OUTCOME_SIDE_LOCAL)
            req_attempt_done(c, outcome_outlier_class(o, status), req_attempt_ttft(r));
    }
    /* The slot, and with it the in-flight counts, went back above. */
    req_release_admission(c, status, o, now);
    r->srv = NULL;
    int row = r->up ? r->up->index : (int)px->cfg->num_upstreams;
    px->requests[row][proxy_status_class(status)]++;
    if (r->t_first_byte && r->t_dispatch)
        metrics_hist_observe(&px->ttfb, r->t_first_byte - r->t_dispatch);
    if (r->t_start)
        metrics_hist_observe(&px->total, now - r->t_start);

    struct accesslog_entry e = {
        .time_ms = rp_wall_ms(),
        .request_id = r->id,
        .method = r->method,
        .path = r->path,
        .client = c->ip,
        .tenant = r->tenant_label[0] ? r->tenant_label : NULL,
        .status = status,
        .bytes_in = r->req_body_bytes,
        .bytes_out = r->bytes_out,
        .upstream = r->up ? r->up->conf->name : NULL,
        .server = server,
        .outcome = outcome_name(o),
        .queue_us = proxy_since(r->t_dispatch, r->t_start),
        .connect_us = proxy_since(r->t_connected, r->t_dispatch),
        .first_byte_us = proxy_since(r->t_first_body ? r->t_first_body : r->t_first_byte, r->t_dispatch),
        .total_us = proxy_since(now, r->t_start),
    };
    accesslog_write(px->log, &e);
    if (px->status && r->up) {
        int comp = status_component_for(px->status, r->up->index, r->path, strlen(r->path));
        int64_t fb = proxy_since(r->t_first_body ? r->t_first_body : r->t_first_byte, r->t_start);
        /* A response the upstream cut is bad whatever its status line
         * said; a client that left before any answer is not counted. */
        int seen = outcome_status_seen(o, status);
        status_observe(px->status, comp, seen, fb < 0 ? 0 : (uint64_t)fb, now - r->t_start, r->quota_refused, now);
    }
    r->status = status;
}

/* Drop the request state after its response has been fully queued on
 * c->out; the connection continues with the next pipelined request. */
void req_clear(struct client *c)
{
    struct request *r = &c->r;
    buf_release(&r->out);
    memset(r, 0, sizeof *r);
    c->has_req = false;
}

/* ---------------------------------------------------------------------- */
/* request head                                                            */

bool req_out_add(struct buf *b, const char *p, size_t n)
{
    return buf_append(b, p, n) == n;
}

bool req_out_adds(struct buf *b, const char *s)
{
    return req_out_add(b, s, strlen(s));
}

/* Build the upstream request head into r->out.  false if it does not fit
 * (the head limit keeps that from happening with sane limits). */
/* The request line carries the canonical path and the query as the client
 * wrote it, so the upstream serves exactly the resource rampart judged.
 * Host comes first: the client's, the authority of an absolute-form target
 * (RFC 9112 3.2.2: it replaces Host), or, for an HTTP/1.0 client that sent
 * none, the address of the upstream's first server, since HTTP/1.1
 * requires one. */
static bool build_upstream_head(struct client *c, const struct h1_message *m, struct h1_str path, const char *query,
                                size_t query_len, struct h1_str host)
{
    struct request *r = &c->r;
    struct buf *b = &r->out;
    bool ok = true;
    ok &= req_out_add(b, m->method.p, m->method.len);
    ok &= req_out_adds(b, " ");
    ok &= req_out_add(b, path.p, path.len);
    if (query) {
        ok &= req_out_adds(b, "?");
        ok &= req_out_add(b, query, query_len);
    }
    ok &= req_out_adds(b, " HTTP/1.1\r\nHost: ");
    if (host.p && host.len)
        ok &= req_out_add(b, host.p, host.len);
    else
        ok &= req_out_adds(b, r->up->num_servers ? r->up->servers[0].name : "localhost");
    ok &= req_out_adds(b, "\r\n");
    bool xff_done = false;
    for (size_t i = 0; i < m->num_headers && ok; i++) {
        const struct h1_header *h = &m->headers[i];
        struct h1_str n = h->name;
        if (h1_is_hop_by_hop(n) || rp_strieq(n.p, n.len, "host") || rp_strieq(n.p, n.len, "content-length") ||
            rp_strieq(n.p, n.len, "expect") || rp_strieq(n.p, n.len, "x-forwarded-proto") ||
            rp_strieq(n.p, n.len, "x-request-id"))
            continue;
        if (rp_strieq(n.p, n.len, "x-forwarded-for")) {
            if (xff_done)
                continue;
            /* Fold every X-Forwarded-For line into the first, then add the
             * client: upstreams that read only one line see the chain. */
            ok &= req_out_adds(b, "X-Forwarded-For: ");
            bool first = true;
            for (size_t j = i; j < m->num_headers; j++) {
                const struct h1_header *x = &m->headers[j];
                if (!rp_strieq(x->name.p, x->name.len, "x-forwarded-for") || x->value.len == 0)
                    continue;
                if (!first)
                    ok &= req_out_adds(b, ", ");
                ok &= req_out_add(b, x->value.p, x->value.len);
                first = false;
            }
            if (!first)
                ok &= req_out_adds(b, ", ");
            ok &= req_out_adds(b, c->ip);
            ok &= req_out_adds(b, "\r\n");
            xff_done = true;
            continue;
        }
        if (proxy_named_in_connection(m, n))
            continue;
        ok &= req_out_add(b, n.p, n.len);
        ok &= req_out_adds(b, ": ");
        ok &= req_out_add(b, h->value.p, h->value.len);
        ok &= req_out_adds(b, "\r\n");
    }
    char line[160];
    if (m->framing == H1_BODY_LENGTH) {
        int n = rp_snprintf(line, sizeof line, "Content-Length: %llu\r\n", (unsigned long long)m->content_length);
        ok &= n > 0 && req_out_add(b, line, (size_t)n);
    } else if (m->framing == H1_BODY_CHUNKED) {
        ok &= req_out_adds(b, "Transfer-Encoding: chunked\r\n");
    }
    if (!xff_done) {
        ok &= req_out_adds(b, "X-Forwarded-For: ");
        ok &= req_out_adds(b, c->ip);
        ok &= req_out_adds(b, "\r\n");
    }
    ok &= req_out_adds(b, "X-Forwarded-Proto: http\r\nX-Request-Id: ");
    ok &= req_out_adds(b, r->id);
    ok &= req_out_adds(b, "\r\n\r\n");
    return ok;
}

static void make_request_id(struct request *r, const struct h1_message *m)
{
    const struct h1_header *h = h1_find_header(m, "x-request-id");
    if (h && proxy_valid_request_id(h->value)) {
        memcpy(r->id, h->value.p, h->value.len);
        r->id[h->value.len] = '\0';
        return;
    }
    rp_snprintf(r->id, sizeof r->id, "%016llx%016llx", (unsigned long long)rp_rand64(),
                (unsigned long long)rp_rand64());
}

static void copy_view(char *dst, size_t cap, struct h1_str v)
{
    size_t n = RP_MIN(v.len, cap - 1);
    memcpy(dst, v.p, n);
    dst[n] = '\0';
}

/* Start a new request from a parsed head of n bytes at c->in.pos. */
void req_start(struct client *c, const struct h1_message *m, size_t n)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    memset(r, 0, sizeof *r);
    c->has_req = true;
    c->head_started = false;
    if (!c->out.start)
        buf_alloc(&c->out);
    r->t_start = ev_now(px->loop);
    copy_view(r->method, sizeof r->method, m->method);
    make_request_id(r, m);
    r->head_method = rp_strieq(m->method.p, m->method.len, "HEAD");
    r->client_keep_alive = m->keep_alive && !px->draining;
    r->client_minor = m->minor_version;
    r->expect_continue = m->expect_continue;
    r->req_framing = m->framing;
    r->req_body_left = m->framing == H1_BODY_LENGTH ? m->content_length : 0;
    r->req_body_done = m->framing == H1_BODY_NONE || (m->framing == H1_BODY_LENGTH && m->content_length == 0);
    h1_chunked_init(&r->req_chunk);
    r->replayable = true;

    /* One canonical path for every decision (route, model-API detection,
     * quotas, status component, log) and for the upstream, so that no
     * spelling of a path is judged as one resource and served as another. */
    char *path = px->path_buf;
    struct uri_info ui_info;
    ssize_t plen = uri_normalize_path(m->target.p, m->target.len, path, px->path_cap, &ui_info);
    if (plen < 0) {
        copy_view(r->path, sizeof r->path, m->target);
        buf_consume(&c->in, n);
        if (plen == URI_ERR_TOOLONG)
            req_reply(c, 414, "uri_too_long", "request path too long", NULL, OUTCOME_BAD_PATH, false);
        else
            req_reply(c, 400, "bad_path", ui_info.error ? ui_info.error : "malformed request target", NULL,
                      OUTCOME_BAD_PATH, false);
        return;
    }
    copy_view(r->path, sizeof r->path, (struct h1_str){path, (size_t)plen});

    if (m->framing == H1_BODY_LENGTH && m->content_length > px->cfg->limits.max_body) {
        buf_consume(&c->in, n);
        req_reply(c, 413, "body_too_large", "request body exceeds the configured limit", NULL, OUTCOME_BODY_TOO_LARGE,
                  true);
        return;
    }

    int ui = config_route(px->cfg, path, (size_t)plen);
    if (ui < 0) {
        buf_consume(&c->in, n);
        req_reply(c, 404, "no_route", "no route for this path", NULL, OUTCOME_NO_ROUTE, false);
        return;
    }
    r->up = &px->ups->ups[ui];
    r->model_api = plen >= 4 && strncmp(path, "/v1/", 4) == 0;
    /* Only the generation endpoints carry max_tokens; other /v1/ paths
     * (files, audio) may hold any body and are streamed untouched. */
    r->generation = (uri_path_eq_endpoint(path, (size_t)plen, "/v1/chat/completions") ||
                     uri_path_eq_endpoint(path, (size_t)plen, "/v1/completions")) &&
                    rp_strieq(m->method.p, m->method.len, "POST");
    /* Bodies that fit the request buffer are read whole before admission:
     * a slow or stalled upload then holds a connection, never an upstream
     * slot.  Larger (or chunked) bodies are read up to the buffer, then
     * streamed. */
    size_t rbuf = px->cfg->limits.request_buffer;
    bool has_body = !r->req_body_done;
    size_t body_room = 0;
    if (has_body && rbuf > 0) {
        if (m->framing == H1_BODY_LENGTH)
            body_room = (size_t)RP_MIN((uint64_t)rbuf, m->content_length);
        else
            body_room = RP_MIN(rbuf, (size_t)BUF_DEFAULT_SIZE);
    }
    r->llm =
        r->generation && m->framing == H1_BODY_LENGTH && m->content_length > 0 && m->content_length <= (uint64_t)rbuf;

    /* Tenant and class come from headers, so decide them while the views
     * into c->in are alive. */
    const struct h1_header *auth = h1_find_header(m, "authorization");
    const char *ident_name = tenant_ident_header(px->tenants);
    const struct h1_header *ident = ident_name ? h1_find_header(m, ident_name) : NULL;
    struct tenant_req treq = {
        .authorization = auth ? auth->value.p : NULL,
        .authorization_len = auth ? auth->value.len : 0,
        .header = ident ? ident->value.p : NULL,
        .header_len = ident ? ident->value.len : 0,
        .addr = (const struct sockaddr *)&c->peer,
        .addrlen = c->peer_len,
    };
    r->tenant = tenant_identify(px->tenants, &treq, r->t_start);
    rp_snprintf(r->tenant_label, sizeof r->tenant_label, "%s", r->tenant->label);
    const struct h1_header *prio = h1_find_header(m, tenant_priority_header(px->tenants));
    r->cls = tenant_class(r->tenant, prio ? prio->value.p : NULL, prio ? prio->value.len : 0);

    size_t out_size = RP_MAX((size_t)BUF_DEFAULT_SIZE, px->cfg->limits.max_header_bytes + 4096 + (size_t)plen);
    out_size += body_room;
    buf_alloc_size(&r->out, out_size);
    struct h1_str host = ui_info.authority ? (struct h1_str){ui_info.authority, ui_info.authority_len} : m->host;
    if (!build_upstream_head(c, m, (struct h1_str){path, (size_t)plen}, ui_info.query, ui_info.query_len, host)) {
        buf_consume(&c->in, n);
        req_reply(c, 431, "header_too_large", "request header section too large", NULL, OUTCOME_HEADER_TOO_LARGE, true);
        return;
    }
    r->head_len = buf_len(&r->out);
    buf_consume(&c->in, n);
    /* The views into c->in are dead from here on. */
    if (body_room > 0) {
        r->state = R_BUFFERING;
        if (r->expect_continue) {
            r->expect_continue = false;
            if (r->client_minor >= 1)
                buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        pump_request_body(c);
        if (!c->has_req || r->finished)
            return;
        if (!r->req_body_done && buf_free_tail(&r->out) > 0) {
            client_timer_settle(c);
            client_flush(c);
            return;
        }
    }
    client_timer_settle(c);
    req_admit(c);
}

/* ---------------------------------------------------------------------- */
/* request body: c->in -> r->out                                           */

void pump_request_body(struct client *c)
{
    struct request *r = &c->r;
    struct proxy *px = c->px;
    if (r->req_body_done || buf_empty(&c->in))
        return;
    size_t room = buf_free_tail(&r->out);
    if (room == 0 && r->out_sent > 0) {
        /* Make room by dropping what the upstream already has; the
         * request can no longer be replayed. */
        r->out.pos += r->out_sent;
        r->out_sent = 0;
        buf_compact(&r->out);
        r->replayable = false;
        room = buf_free_tail(&r->out);
    }
    size_t avail = buf_len(&c->in);
    size_t n = RP_MIN(room, avail);
    if (n == 0)
        return;
    uint64_t before = r->req_body_bytes;
    if (r->req_framing == H1_BODY_LENGTH) {
        n = (size_t)RP_MIN((uint64_t)n, r->req_body_left);
        buf_append(&r->out, c->in.pos, n);
        buf_consume(&c->in, n);
        r->req_body_left -= n;
        r->req_body_bytes += n;
        if (r->req_body_left == 0)
            r->req_body_done = true;
    } else if (r->req_framing == H1_BODY_CHUNKED) {
        uint64_t total = r->req_chunk.payload_total;
        ssize_t used = h1_chunked_feed(&r->req_chunk, c->in.pos, n, NULL, NULL);
        if (used < 0) {
            req_reply(c, 400, "bad_chunked_body", "malformed chunked request body", NULL, OUTCOME_BAD_CHUNKED_BODY,
                      true);
            return;
        }
        buf_append(&r->out, c->in.pos, (size_t)used);
        buf_consume(&c->in, (size_t)used);
        r->req_body_bytes += r->req_chunk.payload_total - total;
        if (r->req_chunk.payload_total > px->cfg->limits.max_body) {
            req_reply(c, 413, "body_too_large", "request body exceeds the configured limit", NULL,
                      OUTCOME_BODY_TOO_LARGE, true);
            return;
        }
        if (r->req_chunk.done)
            r->req_body_done = true;
    }
    /* Progress: the client is sending, so its pause bound starts again. */
    if (r->req_body_bytes != before && !r->req_body_done && !c->out_blocked)
        client_timer_arm(c, CT_BODY, px->cfg->timeouts.client_body_us);
    client_timer_settle(c);
}

/* Write pending r->out bytes to the upstream. */
void req_send(struct client *c)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    struct uconn *u = r->u;
    if (r->expect_continue && !r->req_body_done && r->state == R_SENDING) {
        /* Only now, with a connection in hand, invite the body: a request
         * refused earlier never makes the client send it. */
        r->expect_continue = false;
        if (c->r.client_minor >= 1)
            buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        client_flush(c);
        if (c->dead || !c->has_req)
            return;
    }
    pump_request_body(c);
    if (!c->has_req || !r->u)
        return;
    for (;;) {
        size_t pending = buf_len(&r->out) - r->out_sent;
        if (pending == 0)
            break;
        ssize_t w = send(u->fd, r->out.pos + r->out_sent, pending, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            /* The upstream went away while we were sending. */
            r->srv->connect_errors++;
            proxy_upstream_fail(c, 502, "upstream_write_failed", "upstream connection failed",
                                OUTCOME_UPSTREAM_WRITE_FAILED);
            return;
        }
        r->out_sent += (size_t)w;
        if (!r->replayable) {
            r->out.pos += r->out_sent;
            r->out_sent = 0;
            if (r->out.pos == r->out.last)
                r->out.pos = r->out.last = r->out.start;
        }
        pump_request_body(c);
        if (!c->has_req)
            return;
    }
    bool all_sent = buf_len(&r->out) == r->out_sent;
    uint32_t m = EV_READ;
    if (!all_sent)
        m |= EV_WRITE;
    ev_mod(px->loop, u->fd, m);
    if (r->state == R_SENDING && all_sent && r->req_body_done) {
        r->state = R_WAIT_HEAD;
        ev_timer_arm(px->loop, &u->timer, r->up->conf->first_byte_timeout_us);
    } else if (r->state == R_SENDING && !ev_timer_armed(&u->timer)) {
        ev_timer_arm(px->loop, &u->timer, r->up->conf->first_byte_timeout_us);
    }
    client_timer_settle(c);
    client_update_events(c);
}

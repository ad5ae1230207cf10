/*
 * proxy_forward.c — a request on its way to an upstream and its response
 * on the way back: admission (quota, a concurrency slot or a place in the
 * queue, and the queue driver's callbacks), server choice within the
 * canary group, retries, dispatch to a pooled or new connection, then the
 * response head, the streaming of its body against its framing, the SSE
 * error event, and every upstream failure (upstream_fail).
 *
 * Kept apart from the request itself (proxy_request.c) and from the client
 * connection (proxy.c): this is where a request meets the admission layer
 * and the upstream pools, and where the upstream's answer is read.
 */
#include "proxy_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "admit_driver.h"
#include "buf.h"
#include "canary.h"
#include "h1.h"
#include "llmreq.h"
#include "metrics.h"
#include "net.h"
#include "outcome.h"
#include "outlier.h"
#include "quota.h"
#include "reply.h"
#include "retry.h"
#include "tenant.h"
#include "upstream.h"
#include "util.h"

static void upstream_event(struct ev_loop *loop, int fd, uint32_t events, void *arg);
static void req_dispatch(struct client *c, struct server *s);

/* ---------------------------------------------------------------------- */
/* dispatch                                                                */

struct pick_ctx {
    int group; /* -1: any */
    uint64_t tried;
    bool need_slot;
};

static bool pick_accept(const struct server *s, void *arg)
{
    const struct pick_ctx *ctx = arg;
    if (s->index < 64 && (ctx->tried & (1ull << s->index)))
        return false;
    if (ctx->group >= 0 && s->conf->group != ctx->group)
        return false;
    return !ctx->need_slot || admit_free_slots(&s->lim) > 0;
}

/* A server for r: in its canary group when one of those qualifies, else
 * any group (a sticky split must not turn into an outage). */
static struct server *pick_server(struct request *r, bool need_slot)
{
    struct pick_ctx ctx = {.group = r->up->canary ? r->group : -1, .tried = r->tried, .need_slot = need_slot};
    struct server *s = upstream_pick(r->up, pick_accept, &ctx);
    if (!s && ctx.group >= 0) {
        ctx.group = -1;
        s = upstream_pick(r->up, pick_accept, &ctx);
    }
    return s;
}

/* Try the request again on another server, if nothing has reached the
 * client, the whole request is still in r->out, and the retry budget
 * allows.  true when a new attempt was started. */
static bool try_retry(struct client *c, enum retry_failure f, enum admit_outcome how)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    uint64_t now = ev_now(px->loop);
    if (!r->srv || r->bytes_out > 0 || r->state == R_STREAMING || r->state == R_LOCAL)
        return false;
    struct retry_request rr = {
        .failure = f,
        .retries_done = r->retries,
        .response_started = false,
        .idempotent = retry_method_idempotent(r->method, strlen(r->method)),
        .body_replayable = r->replayable && r->req_body_done && r->out_sent <= buf_len(&r->out),
    };
    /* Nowhere else to go is not a retry: probe first so the budget only
     * counts retries that happen. */
    struct pick_ctx probe = {
        .group = -1, .tried = r->tried | (r->srv->index < 64 ? 1ull << r->srv->index : 0), .need_slot = true};
    if (!upstream_any(r->up, pick_accept, &probe))
        return false;
    if (retry_decide(r->up->retry, &rr, now) != RETRY_YES)
        return false;
    /* End the failed attempt: its connection, its slot. */
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    struct server *old = r->srv;
    r->tried = probe.tried;
    RP_ASSERT(admit_slot_held(&r->slot) && r->slot.lim == &old->lim);
    admit_slot_give(&r->slot, now, how);
    r->srv = NULL;
    pump_schedule(r->up);
    struct server *s = pick_server(r, true);
    if (!s || admit_slot_take(&r->slot, &s->lim, &s->inflight, &px->inflight, now) != RP_OK)
        return false;
    r->retries++;
    px->retries++;
    r->out_sent = 0;
    r->t_first_byte = r->t_first_body = r->t_connected = 0;
    r->attempt_recorded = false;
    r->status = 0;
    req_dispatch(c, s);
    return true;
}

/* An SSE stream that the upstream cut: the client already holds "200 OK"
 * and some events.  Closing alone leaves the official SDKs with a bare
 * "terminated" error; an OpenAI-style error event is what they turn into
 * an API error.  The stream's own terminator (the last chunk, or
 * "data: [DONE]") is still withheld, so the cut stays visible in the
 * framing to any client that checks it. */
static void sse_error_event(struct client *c, const char *code, const char *msg)
{
    struct request *r = &c->r;
    struct sbuf e;
    sbuf_init(&e, 1024);
    sbuf_adds(&e, "\n\ndata: ");
    reply_error_body(&e, 502, "upstream_error", NULL, code, msg); /* ends with one newline */
    sbuf_adds(&e, "\n");
    const char *ev = e.data;
    size_t n = e.len;
    if (e.truncated || buf_free_tail(&c->out) < n + 32)
        buf_compact(&c->out);
    if (e.truncated || buf_free_tail(&c->out) < n + 32) {
        sbuf_free(&e);
        return;
    }
    if (r->resp_framing == H1_BODY_CHUNKED && !r->resp_decode) {
        /* Inside an unfinished chunk the client's decoder still expects
         * that chunk's bytes: the event cannot be framed; just cut. */
        if (!r->resp_boundary) {
            sbuf_free(&e);
            return;
        }
        char sz[32];
        int k = rp_snprintf(sz, sizeof sz, "%x\r\n", (unsigned)n);
        buf_append(&c->out, sz, (size_t)k);
        buf_append(&c->out, ev, (size_t)n);
        buf_append(&c->out, "\r\n", 2);
    } else if (r->resp_framing == H1_BODY_CLOSE || r->resp_decode) {
        buf_append(&c->out, ev, (size_t)n);
    } else {
        sbuf_free(&e);
        return; /* Content-Length framing has no room for more bytes */
    }
    r->bytes_out += (uint64_t)n;
    sbuf_free(&e);
}

void proxy_upstream_fail(struct client *c, int status, const char *code, const char *msg, enum outcome o)
{
    struct request *r = &c->r;
    if (r->srv && !r->attempt_recorded)
        req_attempt_done(c, outcome_outlier_class(o, status), req_attempt_ttft(r));
    enum retry_failure rf;
    if (outcome_retry_class(o, &rf) && try_retry(c, rf, outcome_limiter(o, 0, false)))
        return;
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    if (r->state == R_STREAMING && !r->committed) {
        /* The response head (and maybe some body) is still on c->out,
         * unsent: take it back and answer with the error instead. */
        c->out.last = c->out.pos + RP_MIN(r->resp_mark, buf_len(&c->out));
        r->bytes_out = 0;
        r->state = R_WAIT_HEAD;
    }
    if (r->state == R_STREAMING) {
        /* Part of the response is already with the client: the only
         * honest signals left are an error event for a stream, and
         * cutting the connection. */
        if (r->resp_sse)
            sse_error_event(c, code, msg);
        req_finish(c, r->status, o);
        c->close_after = true;
        r->state = R_LOCAL;
        req_clear(c);
        client_flush(c);
        return;
    }
    req_reply(c, status, code, msg, NULL, o, false);
}

static void upstream_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct client *c = arg;
    struct request *r = &c->r;
    if (r->srv)
        r->srv->timeouts++;
    if (r->state == R_CONNECTING) {
        if (r->srv)
            r->srv->connect_errors++;
        proxy_upstream_fail(c, 504, "upstream_connect_timeout", "upstream connect timed out",
                            OUTCOME_UPSTREAM_CONNECT_TIMEOUT);
    } else if (r->state == R_STREAMING) {
        proxy_upstream_fail(c, 504, "upstream_idle_timeout", "upstream stopped sending", OUTCOME_UPSTREAM_IDLE_TIMEOUT);
    } else {
        proxy_upstream_fail(c, 504, "upstream_timeout", "upstream did not answer in time", OUTCOME_UPSTREAM_TIMEOUT);
    }
}

static void uconn_attach(struct client *c, struct uconn *u)
{
    struct request *r = &c->r;
    r->u = u;
    u->owner = c;
    ev_timer_init(&u->timer, upstream_timeout, c);
    if (!u->in.start)
        buf_alloc(&u->in);
}

/* x-ratelimit-* lines for a model-API response (and retry-after when
 * refusing), per OpenAI's conventions. */
static void ratelimit_headers(struct client *c, struct sbuf *out, const struct quota_info *refusal)
{
    struct request *r = &c->r;
    if (refusal) {
        quota_render_headers(out, refusal, true);
        return;
    }
    if (!r->model_api || !r->tenant)
        return;
    struct quota_info qi;
    quota_peek(&r->tenant->quota, &r->tenant->policy->quota, ev_now(c->px->loop), &qi);
    quota_render_headers(out, &qi, false);
}

/* Refuse the request without touching the upstream. */
static void req_refuse(struct client *c, int status, const char *code, const char *msg, enum outcome o,
                       uint32_t retry_after_s, const struct quota_info *qi)
{
    struct sbuf h;
    sbuf_init(&h, 2048);
    if (qi)
        ratelimit_headers(c, &h, qi);
    else {
        ratelimit_headers(c, &h, NULL);
        if (retry_after_s)
            sbuf_printf(&h, "Retry-After: %u\r\n", retry_after_s);
    }
    req_reply(c, status, code, msg, h.data ? h.data : "", o, false);
    sbuf_free(&h);
}

static bool server_has_slot(const struct server *s, void *arg)
{
    RP_UNUSED(arg);
    return admit_free_slots(&s->lim) > 0;
}

static struct client *client_of_waiter(struct admit_waiter *w)
{
    return (struct client *)((char *)w - offsetof(struct client, r) - offsetof(struct request, waiter));
}

static void refuse_overloaded(struct client *c, enum admit_reason why)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    struct upstream *up = r->up;
    r->queued = false; /* already out of the queue */
    px->refused_overload++;
    if (r->tenant)
        r->tenant->refused_overload++;
    uint32_t ra = admit_retry_after(&up->queue, admit_queue_len(&up->queue));
    const char *msg = why == ADMIT_R_FULL      ? "the service is overloaded: the queue is full, retry later"
                      : why == ADMIT_R_EVICTED ? "the service is overloaded: a higher-priority request took this place"
                      : why == ADMIT_R_SHED    ? "the service is overloaded: shed from a standing queue, retry later"
                                               : "the service is overloaded: no capacity within the queue deadline";
    enum outcome o = why == ADMIT_R_FULL      ? OUTCOME_QUEUE_FULL
                     : why == ADMIT_R_EVICTED ? OUTCOME_QUEUE_EVICTED
                     : why == ADMIT_R_SHED    ? OUTCOME_QUEUE_SHED
                                              : OUTCOME_QUEUE_DEADLINE;
    req_refuse(c, 503, "overloaded", msg, o, ra, NULL);
}

/* Admission: quota first (429), then a free concurrency slot on some
 * server, else a place in the upstream's queue (503 when none). */
void req_admit(struct client *c)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    struct upstream *up = r->up;
    uint64_t now = ev_now(px->loop);
    struct tenant *t = r->tenant;

    if (r->llm) {
        const char *body = r->out.pos + r->head_len;
        size_t blen = buf_len(&r->out) - r->head_len;
        if (llmreq_parse(body, blen, &r->info) != RP_OK) {
            char msg[256];
            rp_snprintf(msg, sizeof msg, "%s%s%s", r->info.error ? r->info.error : "invalid request body",
                        r->info.error_param ? ": " : "", r->info.error_param ? r->info.error_param : "");
            req_refuse(c, 400, "invalid_request_body", msg, OUTCOME_INVALID_REQUEST_BODY, 0, NULL);
            return;
        }
    } else {
        r->info.max_tokens = -1;
        r->info.n = 1;
    }
    /* Only generation requests spend tokens; listing models does not.  A
     * generation body too large or chunked to read first reserves the
     * tenant's default. */
    uint64_t need =
        r->generation ? quota_need(&t->policy->quota, r->info.max_tokens, r->info.n, r->info.prompt_tokens) : 0;
    struct quota_info qi;
    enum quota_result qr = quota_reserve(&t->quota, &t->policy->quota, need, now, &r->qt, &qi);
    if (qr != QUOTA_OK) {
        px->refused_quota++;
        r->quota_refused = true;
        const char *msg = qr == QUOTA_REQUESTS ? "rate limit reached for requests"
                          : qr == QUOTA_TOKENS ? "rate limit reached for tokens"
                                               : "request is larger than the token budget per minute";
        req_refuse(c, 429, "rate_limit_exceeded", msg,
                   qr == QUOTA_REQUESTS ? OUTCOME_QUOTA_REQUESTS
                   : qr == QUOTA_TOKENS ? OUTCOME_QUOTA_TOKENS
                                        : OUTCOME_QUOTA_TOO_LARGE,
                   0, &qi);
        return;
    }
    r->group = canary_pick_group(up->canary, tenant_flow_key(t));
    retry_note_request(up->retry, now);
    struct pick_ctx any = {.group = -1};
    if (!upstream_any(up, pick_accept, &any)) {
        req_refuse(c, 503, "no_server", "no upstream server is available", OUTCOME_NO_SERVER, 5, NULL);
        return;
    }
    /* Waiters go first: a new arrival never overtakes the queue. */
    if (admit_queue_len(&up->queue) == 0) {
        struct server *s = pick_server(r, true);
        if (s && admit_slot_take(&r->slot, &s->lim, &s->inflight, &px->inflight, now) == RP_OK) {
            req_dispatch(c, s);
            return;
        }
    }
    struct admit_waiter *evicted = NULL;
    if (admit_enqueue(&up->queue, &r->waiter, tenant_flow_key(t), r->cls, 1, t->policy->weight, now, &evicted) !=
        RP_OK) {
        refuse_overloaded(c, ADMIT_R_FULL);
        return;
    }
    r->queued = true;
    r->state = R_QUEUED;
    if (evicted)
        refuse_overloaded(client_of_waiter(evicted), ADMIT_R_EVICTED);
    queue_arm(up);
    pump_schedule(up);
    client_update_events(c);
}

/* ---- the admission queue ----
 *
 * admit_driver runs the queue's timers; the proxy says what a waiter that
 * leaves the queue means: a dispatch (on_admit) or a 503 (on_refuse). */

static struct admit_driver *driver_of(struct upstream *up)
{
    struct proxy *px = up->owner;
    return &px->drivers[up->index];
}

static bool queue_has_room(void *arg)
{
    return upstream_any(arg, server_has_slot, NULL);
}

static int queue_on_admit(void *arg, struct admit_waiter *w, uint64_t now)
{
    RP_UNUSED(arg);
    struct client *c = client_of_waiter(w);
    struct proxy *px = c->px;
    c->r.queued = false;
    struct server *s = pick_server(&c->r, true);
    if (!s || admit_slot_take(&c->r.slot, &s->lim, &s->inflight, &px->inflight, now) != RP_OK)
        return RP_AGAIN;
    req_dispatch(c, s);
    return RP_OK;
}

static void queue_on_refuse(void *arg, struct admit_waiter *w, enum admit_reason why)
{
    RP_UNUSED(arg);
    refuse_overloaded(client_of_waiter(w), why);
}

const struct admit_driver_ops proxy_queue_ops = {
    .has_room = queue_has_room,
    .on_admit = queue_on_admit,
    .on_refuse = queue_on_refuse,
};

void queue_arm(struct upstream *up)
{
    admit_driver_arm(driver_of(up));
}

void pump_schedule(struct upstream *up)
{
    admit_driver_schedule(driver_of(up));
}

/* Get a connection to server s (admitted: the slot is held) and start
 * sending. */
static void req_dispatch(struct client *c, struct server *s)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    /* The slot taken for s counted s->inflight and px->inflight. */
    RP_ASSERT(r->slot.lim == &s->lim);
    r->srv = s;
    s->requests++;
    r->t_dispatch = ev_now(px->loop);

    struct uconn *u = upstream_pool_get(s);
    if (u) {
        uconn_attach(c, u);
        ev_set_handler(px->loop, u->fd, upstream_event, c);
        r->t_connected = r->t_dispatch;
        r->state = R_SENDING;
        req_send(c);
        return;
    }
    bool connected = false;
    u = upstream_connect(s, &connected);
    if (!u) {
        s->connect_errors++;
        proxy_upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
                            OUTCOME_UPSTREAM_CONNECT_FAILED);
        return;
    }
    uconn_attach(c, u);
    if (ev_add(px->loop, u->fd, connected ? 0 : EV_WRITE, upstream_event, c) != RP_OK) {
        s->connect_errors++;
        proxy_upstream_fail(c, 502, "upstream_connect_failed", "cannot register upstream socket",
                            OUTCOME_UPSTREAM_CONNECT_FAILED);
        return;
    }
    if (connected) {
        r->t_connected = ev_now(px->loop);
        r->state = R_SENDING;
        req_send(c);
        return;
    }
    r->state = R_CONNECTING;
    ev_timer_arm(px->loop, &u->timer, r->up->conf->connect_timeout_us);
}

/* ---------------------------------------------------------------------- */
/* response                                                                */

static bool resp_head_to_client(struct client *c, const struct h1_message *m)
{
    struct request *r = &c->r;
    struct buf *b = &c->out;
    char line[256];
    int n = rp_snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", m->status, h1_reason(m->status));
    bool ok = n > 0;
    if (buf_free_tail(b) < (size_t)(c->px->cfg->limits.max_header_bytes + 512))
        buf_compact(b);
    ok = ok && req_out_add(b, line, (size_t)n);
    for (size_t i = 0; i < m->num_headers && ok; i++) {
        const struct h1_header *h = &m->headers[i];
        struct h1_str nm = h->name;
        if (h1_is_hop_by_hop(nm) || rp_strieq(nm.p, nm.len, "x-request-id") || proxy_named_in_connection(m, nm))
            continue;
        /* Framing is ours to write.  A 204 (and a 1xx) never carries a
         * Content-Length (RFC 9110 8.6); for HEAD and 304 the upstream's
         * value describes the representation and passes through. */
        if (rp_strieq(nm.p, nm.len, "content-length") && (r->resp_framing != H1_BODY_NONE || m->status == 204))
            continue;
        ok &= req_out_add(b, nm.p, nm.len);
        ok &= req_out_adds(b, ": ");
        ok &= req_out_add(b, h->value.p, h->value.len);
        ok &= req_out_adds(b, "\r\n");
    }
    if (r->resp_framing == H1_BODY_LENGTH) {
        n = rp_snprintf(line, sizeof line, "Content-Length: %llu\r\n", (unsigned long long)m->content_length);
        ok &= n > 0 && req_out_add(b, line, (size_t)n);
    } else if (r->resp_framing == H1_BODY_CHUNKED && !r->resp_decode) {
        ok &= req_out_adds(b, "Transfer-Encoding: chunked\r\n");
    }
    ok &= req_out_adds(b, "X-Request-Id: ");
    ok &= req_out_adds(b, r->id);
    ok &= req_out_adds(b, "\r\n");
    if (r->model_api && r->tenant) {
        struct sbuf h;
        sbuf_init(&h, 1024);
        ratelimit_headers(c, &h, NULL);
        if (h.len)
            ok &= req_out_add(b, h.data, h.len);
        sbuf_free(&h);
    }
    if (r->resp_close)
        ok &= req_out_adds(b, "Connection: close\r\n");
    else if (r->client_minor == 0)
        ok &= req_out_adds(b, "Connection: keep-alive\r\n");
    ok &= req_out_adds(b, "\r\n");
    return ok;
}

/* Response payload seen (decoded): the first byte is the latency signal
 * for the limiter (for a model server, its first token), and the payload
 * feeds the usage scanner that settles token quotas. */
static void resp_payload(struct client *c, const char *data, size_t len)
{
    struct request *r = &c->r;
    if (len == 0)
        return;
    if (!r->t_first_body) {
        r->t_first_body = ev_now(c->px->loop);
        if (admit_slot_held(&r->slot)) {
            /* The sample may raise the limit: let waiters use it now. */
            admit_slot_first_byte(&r->slot, r->t_first_body);
            pump_schedule(r->up);
        }
    }
    if (r->scan_on)
        llmreq_scan_feed(&r->scan, data, len);
}

static void on_chunk_data(void *arg, const char *data, size_t len)
{
    struct client *c = arg;
    resp_payload(c, data, len);
    if (c->r.resp_decode)
        buf_append(&c->out, data, len);
}

/* The response is complete: give the upstream connection back (or close
 * it), account, and move on to the next request.  A connection goes back
 * to the pool only when the upstream's response allows it and nothing
 * beyond the response arrived: a stray byte would become the next
 * request's response. */
static void resp_complete(struct client *c)
{
    struct request *r = &c->r;
    struct uconn *u = r->u;
    r->resp_done = true;
    if (u) {
        if (r->up_keep_alive) /* release closes it if bytes follow the response */
            upstream_conn_release(u);
        else
            upstream_conn_close(u);
        r->u = NULL;
    }
    if (r->resp_close)
        c->close_after = true;
    /* Time per output token of a stream that ended normally: TTFT (first
     * body byte) ends at the prefill, so a release that only decodes
     * slower shows here.  Before req_finish, which clears r->srv. */
    if (r->srv && r->srv->up->canary && r->scan_on && r->status < 300 && r->t_first_body) {
        llmreq_scan_finish(&r->scan); /* idempotent: a last event without its blank line */
        if (r->scan.content_events >= 2) {
            uint64_t now = ev_now(c->px->loop);
            uint64_t tpot = (now - r->t_first_body) / (r->scan.content_events - 1);
            canary_record_tpot(r->srv->up->canary, r->srv->conf->group, tpot, now);
        }
    }
    req_finish(c, r->status, OUTCOME_OK);
    req_clear(c);
    client_flush(c);
}

/* Move response body bytes from u->in to c->out as far as c->out has room,
 * checking them against the framing. */
void resp_pump(struct client *c)
{
    struct request *r = &c->r;
    struct uconn *u = r->u;
    for (;;) {
        size_t avail = buf_len(&u->in);
        if (avail == 0)
            break;
        if (buf_free_tail(&c->out) < 64)
            buf_compact(&c->out);
        size_t room = buf_free_tail(&c->out);
        if (room == 0)
            break;
        size_t n = RP_MIN(avail, room);
        if (r->resp_framing == H1_BODY_LENGTH) {
            n = (size_t)RP_MIN((uint64_t)n, r->resp_left);
            resp_payload(c, u->in.pos, n);
            buf_append(&c->out, u->in.pos, n);
            buf_consume(&u->in, n);
            r->resp_left -= n;
            r->bytes_out += n;
            if (r->resp_left == 0) {
                resp_complete(c);
                return;
            }
        } else if (r->resp_framing == H1_BODY_CHUNKED) {
            ssize_t used;
            size_t before = buf_len(&c->out);
            used = h1_chunked_feed(&r->resp_chunk, u->in.pos, n, on_chunk_data, c);
            if (used > 0 && !r->resp_decode)
                buf_append(&c->out, u->in.pos, (size_t)used);
            if (used < 0) {
                proxy_upstream_fail(c, 502, "bad_upstream_response", "malformed chunked response",
                                    OUTCOME_BAD_UPSTREAM_CHUNKED);
                return;
            }
            buf_consume(&u->in, (size_t)used);
            /* Where the client's decoder stands: a failed feed leaves the
             * parser's own state undefined, so remember it now. */
            r->resp_boundary = h1_chunked_at_boundary(&r->resp_chunk);
            r->bytes_out += buf_len(&c->out) - before;
            if (r->resp_chunk.done) {
                resp_complete(c);
                return;
            }
        } else { /* H1_BODY_CLOSE */
            resp_payload(c, u->in.pos, n);
            buf_append(&c->out, u->in.pos, n);
            buf_consume(&u->in, n);
            r->bytes_out += n;
        }
    }
}

static void resp_head(struct client *c)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    struct uconn *u = r->u;
    for (;;) {
        struct h1_header hdrs[H1_DEFAULT_MAX_HEADERS];
        struct h1_message m;
        h1_message_init(&m, hdrs, RP_ARRAY_LEN(hdrs));
        int n = h1_parse_response(u->in.pos, buf_len(&u->in), &m, &px->lim, r->head_method);
        if (n == RP_AGAIN) {
            if (buf_free_tail(&u->in) == 0 && u->in.pos == u->in.start) {
                proxy_upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
                                    OUTCOME_UPSTREAM_HEAD_TOO_LARGE);
            }
            return;
        }
        if (n < 0) {
            proxy_upstream_fail(c, 502, "bad_upstream_response", "malformed upstream response",
                                OUTCOME_BAD_UPSTREAM_RESPONSE);
            return;
        }
        if (m.status >= 100 && m.status < 200) {
            if (m.status == 101) {
                proxy_upstream_fail(c, 502, "bad_upstream_response", "unexpected protocol switch",
                                    OUTCOME_BAD_UPSTREAM_RESPONSE);
                return;
            }
            /* Interim responses are dropped: we answered Expect ourselves. */
            buf_consume(&u->in, (size_t)n);
            continue;
        }
        r->status = m.status;
        r->t_first_byte = ev_now(px->loop);
        if (m.status >= 500) {
            req_attempt_done(c, OUTLIER_5XX, 0);
            /* A 503 before any byte went out: another server may serve it. */
            if (m.status == 503 && try_retry(c, RETRY_FAIL_STATUS_503, ADMIT_OVERLOADED))
                return;
            if (!r->u) {
                proxy_upstream_fail(c, 503, "upstream_unavailable", "upstream answered 503", OUTCOME_UPSTREAM_503);
                return;
            }
        }
        r->resp_framing = m.framing;
        r->resp_left = m.content_length;
        h1_chunked_init(&r->resp_chunk);
        r->resp_boundary = true;
        r->resp_decode = m.framing == H1_BODY_CHUNKED && r->client_minor == 0;
        r->resp_close =
            !r->client_keep_alive || px->draining || m.framing == H1_BODY_CLOSE || r->resp_decode || !r->req_body_done;
        /* Reuse needs the upstream's consent (HTTP/1.0 without keep-alive
         * or "Connection: close" withhold it).  A bodiless response (HEAD,
         * 204, 304) that still announces a body is a server that may send
         * one anyway, and those late bytes would be read as the next
         * request's response: such a connection is not reused either. */
        r->up_keep_alive = m.keep_alive && m.framing != H1_BODY_CLOSE;
        if (m.framing == H1_BODY_NONE && m.status != 304 && proxy_announces_body(&m))
            r->up_keep_alive = false;
        if (r->status >= 500)
            r->srv->responses_5xx++;
        metrics_hist_observe(&r->srv->ttfb, r->t_first_byte - r->t_dispatch);
        const struct h1_header *ct = h1_find_header(&m, "content-type");
        r->resp_sse = ct && ct->value.len >= 17 && rp_strieq(ct->value.p, 17, "text/event-stream");
        /* The usage scanner settles token quotas and counts the content
         * events of a stream, which canary analysis needs for TPOT. */
        if ((r->qt.active || r->up->canary) && r->model_api && r->status < 300) {
            llmreq_scan_init(&r->scan, r->resp_sse);
            r->scan_on = true;
        }
        r->resp_mark = buf_len(&c->out);
        if (!resp_head_to_client(c, &m)) {
            c->out.last = c->out.pos + r->resp_mark;
            proxy_upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
                                OUTCOME_UPSTREAM_HEAD_TOO_LARGE);
            return;
        }
        r->bytes_out += buf_len(&c->out) - r->resp_mark;
        buf_consume(&u->in, (size_t)n);
        r->replayable = false;
        buf_release(&r->out);
        r->state = R_STREAMING;
        if (m.framing == H1_BODY_NONE || (m.framing == H1_BODY_LENGTH && m.content_length == 0)) {
            if (admit_slot_held(&r->slot)) {
                admit_slot_first_byte(&r->slot, r->t_first_byte);
                pump_schedule(r->up);
            }
            resp_complete(c);
            return;
        }
        ev_timer_arm(px->loop, &u->timer, r->up->conf->idle_timeout_us);
        resp_pump(c);
        return;
    }
}

static void upstream_read(struct client *c)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    struct uconn *u = r->u;
    if (r->state == R_STREAMING && buf_free_tail(&c->out) == 0 && c->out.pos == c->out.start) {
        /* Client is slow: leave bytes in the kernel (backpressure). */
        ev_mod(px->loop, u->fd, 0);
        return;
    }
    ssize_t n = buf_read_fd(&u->in, u->fd);
    if (n == RP_AGAIN) {
        if (buf_free_tail(&u->in) == 0)
            ev_mod(px->loop, u->fd, 0);
        return;
    }
    if (n == 0 || n == RP_ERR) {
        if (r->state == R_STREAMING && r->resp_framing == H1_BODY_CLOSE) {
            resp_pump(c);
            if (c->has_req && r->u) {
                r->u = NULL;
                upstream_conn_close(u);
                resp_complete(c);
            }
            return;
        }
        if (r->state == R_STREAMING) {
            proxy_upstream_fail(c, 502, "upstream_closed", "upstream closed mid-response", OUTCOME_UPSTREAM_CUT);
            return;
        }
        r->srv->connect_errors++;
        proxy_upstream_fail(c, 502, "upstream_closed", "upstream closed the connection before responding",
                            OUTCOME_UPSTREAM_CLOSED);
        return;
    }
    if (r->state == R_STREAMING) {
        ev_timer_arm(px->loop, &u->timer, r->up->conf->idle_timeout_us);
        resp_pump(c);
    } else {
        resp_head(c);
    }
    if (!c->dead && c->has_req && c->r.u == u)
        client_flush(c);
}

static void upstream_event(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct client *c = arg;
    struct request *r = &c->r;
    if (!c->has_req || !r->u)
        return;
    if (r->state == R_CONNECTING) {
        int err = net_connect_result(r->u->fd);
        if (err != 0) {
            r->srv->connect_errors++;
            errno = err;
            proxy_upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
                                OUTCOME_UPSTREAM_CONNECT_FAILED);
            return;
        }
        ev_timer_cancel(c->px->loop, &r->u->timer);
        r->t_connected = ev_now(c->px->loop);
        r->state = R_SENDING;
        req_send(c);
        return;
    }
    if ((events & EV_WRITE) && (r->state == R_SENDING || r->state == R_WAIT_HEAD)) {
        req_send(c);
        if (!c->has_req || !r->u)
            return;
    }
    if (events & (EV_READ | EV_ERROR))
        upstream_read(c);
}

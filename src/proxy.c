/*
 * proxy.c — the client session state machine: parse a request, choose an
 * upstream server, forward the request, stream the response back.
 *
 * One client connection runs one request at a time; pipelined requests
 * wait in the input buffer and are parsed only after the previous response
 * has been handed to the client, which answers them in order.
 *
 * Buffers (all fixed size, see buf.h):
 *   c->in   bytes from the client: the request head, body, and pipelined
 *           requests.  Parsed in place; the parser's views into it are used
 *           only until the rewritten head has been built.
 *   r->out  bytes for the upstream: the rewritten head, then the body as it
 *           arrives.  Kept whole until the first response byte when it fits,
 *           so a request can be replayed on another connection.
 *   u->in   bytes from the upstream: the response head, then body bytes.
 *   c->out  bytes for the client: error replies, the rewritten response head
 *           and the body, validated against its framing on the way.
 * A full c->out stops upstream reads; a full r->out stops client reads.
 * That is the whole backpressure scheme, and it bounds memory per
 * connection to four buffers.
 *
 * The client leaving (EOF or error) closes the upstream connection at once
 * rather than returning it to the pool: for a model server, closing is what
 * stops the generation.
 *
 * Timeouts: one timer per client connection (header, body idle, keep-alive
 * idle, send) and one per upstream connection (connect, first byte, idle
 * between body reads).
 */
#include "proxy.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "buf.h"
#include "h1.h"
#include "llmreq.h"
#include "metrics.h"
#include "net.h"
#include "outlier.h"
#include "quota.h"
#include "retry.h"
#include "canary.h"
#include "status.h"
#include "tenant.h"
#include "util.h"

/* Model-API request bodies up to this size are read whole before admission
 * so max_tokens and the prompt size are known (token quotas reserve them);
 * larger or chunked bodies are streamed and reserve the tenant's default. */
#define PROXY_LLM_BODY_MAX (1024u * 1024u)

enum req_state {
    R_NONE = 0,
    R_BUFFERING,     /* reading a model-API body whole before admission */
    R_QUEUED,        /* waiting in the upstream's admission queue */
    R_CONNECTING,    /* waiting for an upstream connection */
    R_SENDING,       /* writing the request (head and body) */
    R_WAIT_HEAD,     /* request sent (or being sent), waiting for the response head */
    R_STREAMING,     /* response head sent, body streaming */
    R_LOCAL,         /* a locally generated response is being written */
};

struct request {
    enum req_state state;
    char method[16];
    char path[256];            /* without the query string, truncated for logs */
    char id[80];
    bool head_method;
    bool client_keep_alive;
    int client_minor;
    bool expect_continue;

    /* request body */
    enum h1_framing req_framing;
    uint64_t req_body_left;    /* H1_BODY_LENGTH */
    struct h1_chunked req_chunk;
    bool req_body_done;
    uint64_t req_body_bytes;
    bool replayable;           /* r->out still holds the whole request */
    size_t out_sent;           /* bytes of r->out written to the upstream */

    struct upstream *up;
    struct server *srv;
    struct uconn *u;
    struct buf out;

    /* response */
    int status;
    enum h1_framing resp_framing;
    uint64_t resp_left;
    struct h1_chunked resp_chunk;
    bool resp_decode;          /* de-chunk for an HTTP/1.0 client */
    bool resp_close;           /* close the client after this response */
    bool resp_done;
    uint64_t bytes_out;

    uint64_t t_start, t_dispatch, t_connected, t_first_byte, t_first_body;
    bool finished;             /* req_finish ran: accounted and logged */

    /* admission and quotas */
    bool model_api;            /* path under /v1/: OpenAI conventions apply */
    bool generation;           /* POST to a generation endpoint: spends tokens */
    bool llm;                  /* body read whole and parsed (llmreq) */
    size_t head_len;           /* rewritten head bytes at the start of r->out */
    struct tenant *tenant;
    enum admit_class cls;
    struct admit_waiter waiter;
    bool queued;
    struct admit_ticket ticket;
    bool has_ticket;
    struct quota_ticket qt;
    struct llmreq_info info;
    struct llmreq_scan scan;
    bool scan_on;
    char tenant_label[TENANT_NAME_MAX];

    /* release safety */
    int group;                 /* canary group this request prefers */
    uint64_t tried;            /* servers already tried (bit per index) */
    unsigned retries;
    bool attempt_recorded;     /* outcome of the current attempt reported */
    bool quota_refused;        /* answered 429 by our own quotas */
};

struct client {
    struct proxy *px;
    int fd;
    struct client *next, *prev;
    struct buf in, out;
    struct ev_timer timer;
    char ip[48];
    struct sockaddr_storage peer;
    socklen_t peer_len;
    bool head_started;
    bool close_after;          /* close once c->out is flushed */
    bool has_req;
    bool out_blocked;          /* c->out waits for EV_WRITE */
    bool dead;                 /* closed; memory freed at the end of the loop pass */
    struct request r;
};

#define CLASS_SLOTS 6 /* 1xx..5xx, other */

struct proxy {
    struct ev_loop *loop;
    const struct config *cfg;
    struct upstream_set *ups;
    struct accesslog *log;
    struct h1_limits lim;
    int lfds[CONFIG_MAX_LISTEN];
    size_t num_lfds;
    bool accept_paused;
    bool draining;
    void (*drained_cb)(void *);
    void *drained_arg;
    struct client *clients;
    size_t num_clients;
    struct client *graveyard;  /* closed clients awaiting free */
    struct ev_timer reap_timer;
    struct ev_timer flush_timer;
    struct ev_timer tick_timer;
    struct tenant_table *tenants;
    struct status *status;

    /* metrics */
    uint64_t requests[CONFIG_MAX_UPSTREAMS + 1][CLASS_SLOTS]; /* last row: no upstream */
    uint64_t inflight;
    uint64_t client_aborts;
    uint64_t bad_requests;
    uint64_t accepted;
    uint64_t refused_quota, refused_overload;
    uint64_t retries;
    struct metrics_hist ttfb, total;
};

static void client_event(struct ev_loop *loop, int fd, uint32_t events, void *arg);
static void upstream_event(struct ev_loop *loop, int fd, uint32_t events, void *arg);
static void client_process(struct client *c);
static void client_flush(struct client *c);
static void req_finish(struct client *c, int status, const char *outcome);
static void resp_pump(struct client *c);
static void req_send(struct client *c);
static void req_admit(struct client *c);
static void pump_request_body(struct client *c);
static void req_dispatch(struct client *c, struct server *s);
static void queue_arm(struct proxy *px, struct upstream *up);
static void pump_schedule(struct upstream *up);

/* ---------------------------------------------------------------------- */
/* error replies                                                           */

static const char *error_type(int status)
{
    switch (status) {
    case 400: case 413: case 414: case 417: case 431: case 501: case 505:
        return "invalid_request_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_exceeded";
    case 503:
        return "overloaded";
    case 502: case 504:
        return "upstream_error";
    default:
        return "server_error";
    }
}

/* Queue a complete local response on c->out.  OpenAI-shaped JSON so API
 * clients parse it like any other API error. */
static void client_reply_error(struct client *c, int status, const char *code, const char *message,
                               const char *extra_headers)
{
    struct request *r = &c->r;
    char body[512];
    int blen = rp_snprintf(body, sizeof body,
                           "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n",
                           message, error_type(status), code);
    if (blen < 0)
        blen = 0;
    char head[1024];
    int hlen = rp_snprintf(head, sizeof head,
                           "HTTP/1.1 %d %s\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %d\r\n"
                           "%s%s%s"
                           "%s"
                           "\r\n",
                           status, h1_reason(status), blen, r->id[0] ? "X-Request-Id: " : "", r->id,
                           r->id[0] ? "\r\n" : "", extra_headers ? extra_headers : "");
    if (hlen < 0)
        hlen = 0;
    /* A local reply must fit; the buffer is at least 16 KiB and replies
     * are well under 2 KiB, but never write half a response. */
    if (!c->out.start)
        buf_alloc(&c->out);
    if (buf_free_tail(&c->out) < (size_t)(hlen + blen + 32))
        buf_compact(&c->out);
    if (buf_free_tail(&c->out) < (size_t)(hlen + blen + 32)) {
        c->close_after = true;
        return;
    }
    buf_append(&c->out, head, (size_t)hlen);
    buf_append(&c->out, body, (size_t)blen);
    r->bytes_out += (uint64_t)(hlen + blen);
}

/* ---------------------------------------------------------------------- */
/* connection lifetime                                                     */

static void client_set_timer(struct client *c, uint64_t us)
{
    if (c->dead)
        return;
    ev_timer_arm(c->px->loop, &c->timer, us);
}

static void maybe_resume_accept(struct proxy *px);

static void client_close(struct client *c)
{
    struct proxy *px = c->px;
    if (c->dead)
        return;
    if (c->has_req) {
        struct request *r = &c->r;
        if (r->u) {
            upstream_conn_close(r->u);
            r->u = NULL;
        }
        if (!r->finished) {
            px->client_aborts++;
            req_finish(c, 499, "client_abort");
        }
        buf_release(&r->out);
        c->has_req = false;
    }
    ev_timer_cancel(px->loop, &c->timer);
    ev_del(px->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    buf_release(&c->in);
    buf_release(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        px->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    px->num_clients--;
    /* The memory outlives this call: callers up the stack may still look
     * at c (and see c->dead); it is freed once the loop pass is over. */
    c->dead = true;
    c->next = px->graveyard;
    px->graveyard = c;
    ev_timer_arm(px->loop, &px->reap_timer, 0);
    maybe_resume_accept(px);
    if (px->draining && px->num_clients == 0 && px->drained_cb) {
        void (*cb)(void *) = px->drained_cb;
        px->drained_cb = NULL;
        cb(px->drained_arg);
    }
}

/* Interest on the client socket: read while there is room for input and
 * no reply is pending a flush-then-close; write while c->out is blocked. */
static void client_update_events(struct client *c)
{
    if (c->dead)
        return;
    uint32_t m = 0;
    bool room = !c->in.start || buf_free_tail(&c->in) > 0 || c->in.pos != c->in.start;
    if (room && !c->close_after)
        m |= EV_READ;
    if (c->out_blocked)
        m |= EV_WRITE;
    ev_mod(c->px->loop, c->fd, m);
}

/* Between requests an idle keep-alive connection holds no buffers: they go
 * back to the free list (buf.c) and come back on the next read. */
static void client_trim(struct client *c)
{
    if (c->has_req || c->head_started)
        return;
    if (buf_empty(&c->out))
        buf_release(&c->out);
    if (buf_empty(&c->in))
        buf_release(&c->in);
}

static void client_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct client *c = arg;
    if (c->has_req) {
        struct request *r = &c->r;
        if (r->state == R_STREAMING || r->state == R_LOCAL || r->bytes_out > 0) {
            /* The client stopped reading: nothing useful can be sent. */
            req_finish(c, r->status ? r->status : 499, "client_send_timeout");
            client_close(c);
            return;
        }
        if (!r->req_body_done) {
            /* Body stalled: the upstream got part of a request; drop both. */
            if (r->u) {
                upstream_conn_close(r->u);
                r->u = NULL;
            }
            client_reply_error(c, 408, "request_timeout", "request body timed out", "Connection: close\r\n");
            c->close_after = true;
            req_finish(c, 408, "client_body_timeout");
            client_flush(c);
            return;
        }
        return;
    }
    if (c->head_started) {
        c->r.id[0] = '\0';
        client_reply_error(c, 408, "request_timeout", "request header timed out", "Connection: close\r\n");
        c->close_after = true;
        client_flush(c);
        return;
    }
    client_close(c); /* keep-alive idle */
}

static void accept_event(struct ev_loop *loop, int fd, uint32_t events, void *arg);

static void maybe_resume_accept(struct proxy *px)
{
    if (!px->accept_paused || px->draining || px->num_clients >= px->cfg->limits.max_connections)
        return;
    px->accept_paused = false;
    for (size_t i = 0; i < px->num_lfds; i++)
        ev_mod(px->loop, px->lfds[i], EV_READ);
}

static void accept_event(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    struct proxy *px = arg;
    for (int i = 0; i < 64; i++) {
        if (px->num_clients >= px->cfg->limits.max_connections) {
            /* At the cap: stop accepting (the kernel backlog holds the
             * rest) instead of accepting and dropping. */
            px->accept_paused = true;
            for (size_t j = 0; j < px->num_lfds; j++)
                ev_mod(loop, px->lfds[j], 0);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int cfd = net_accept(fd, &peer, &plen);
        if (cfd == RP_AGAIN)
            return;
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                rp_log_errno(errno, "accept");
                px->accept_paused = true;
                for (size_t j = 0; j < px->num_lfds; j++)
                    ev_mod(loop, px->lfds[j], 0);
            }
            return;
        }
        struct client *c = rp_xcalloc(1, sizeof *c);
        c->px = px;
        c->fd = cfd;
        net_ip_text((struct sockaddr *)&peer, c->ip, sizeof c->ip);
        c->peer = peer;
        c->peer_len = plen;
        ev_timer_init(&c->timer, client_timeout, c);
        if (ev_add(loop, cfd, EV_READ, client_event, c) != RP_OK) {
            rp_log_errno(errno, "register client socket");
            close(cfd);
            buf_release(&c->in);
            buf_release(&c->out);
            free(c);
            continue;
        }
        c->next = px->clients;
        if (px->clients)
            px->clients->prev = c;
        px->clients = c;
        px->num_clients++;
        px->accepted++;
        client_set_timer(c, px->cfg->timeouts.client_header_us);
    }
}

/* ---------------------------------------------------------------------- */
/* request completion                                                      */

static int status_class(int status)
{
    if (status >= 100 && status < 600)
        return status / 100 - 1;
    return CLASS_SLOTS - 1;
}

static int64_t since(uint64_t t, uint64_t from)
{
    return t && from && t >= from ? (int64_t)(t - from) : -1;
}

/* How the request ended, for the concurrency limiter: only a completed
 * response carries a clean latency signal; an upstream that says it is
 * overloaded (429/503) or does not accept connections in time is a
 * congestion signal; a client that left tells nothing about the server. */
static enum admit_outcome admit_outcome_of(const struct request *r, int status, const char *outcome)
{
    if (strcmp(outcome, "client_abort") == 0 || strcmp(outcome, "client_send_timeout") == 0)
        return ADMIT_CANCELLED;
    if (strcmp(outcome, "upstream_connect_timeout") == 0 || strcmp(outcome, "upstream_timeout") == 0)
        return ADMIT_OVERLOADED;
    if (r->t_first_byte && (status == 429 || status == 503))
        return ADMIT_OVERLOADED;
    if (strcmp(outcome, "ok") != 0 || status >= 500)
        return ADMIT_FAILED;
    return ADMIT_DONE;
}

/* Give back everything the request holds outside the connection: its
 * queue place, its concurrency slot, its quota reservation (settled from
 * the usage seen in the response) and its tenant reference. */
static void req_release_admission(struct client *c, int status, const char *outcome, uint64_t now)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    if (r->queued) {
        admit_cancel(&r->up->queue, &r->waiter, now);
        r->queued = false;
        queue_arm(px, r->up);
    }
    if (r->has_ticket) {
        admit_release(&r->srv->lim, &r->ticket, now, admit_outcome_of(r, status, outcome));
        r->has_ticket = false;
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
            if (r->scan_on && (prompt || completion)) {
                quota_settle(&t->quota, &t->policy->quota, &r->qt, prompt + completion, now);
                t->tokens_prompt += prompt;
                t->tokens_completion += completion;
            } else {
                quota_cancel(&t->quota, &t->policy->quota, &r->qt, now);
            }
        }
        tenant_release(px->tenants, t, now);
        r->tenant = NULL;
    }
}

/* Account for and log the current request, release its server slot and
 * admission state.  Runs once per request.  The upstream connection must
 * already be released or closed by the caller. */
static void req_finish(struct client *c, int status, const char *outcome)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    if (r->finished)
        return;
    r->finished = true;
    uint64_t now = ev_now(px->loop);
    const char *server = r->srv ? r->srv->name : NULL;
    if (r->srv) {
        if (status >= 500 && r->t_first_byte == 0)
            r->srv->responses_5xx++;
    }
    req_release_admission(c, status, outcome, now);
    if (r->srv) {
        r->srv->inflight--;
        px->inflight--;
        r->srv = NULL;
    }
    int row = r->up ? r->up->index : (int)px->cfg->num_upstreams;
    px->requests[row][status_class(status)]++;
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
        .outcome = outcome,
        .queue_us = since(r->t_dispatch, r->t_start),
        .connect_us = since(r->t_connected, r->t_dispatch),
        .first_byte_us = since(r->t_first_body ? r->t_first_body : r->t_first_byte, r->t_dispatch),
        .total_us = since(now, r->t_start),
    };
    accesslog_write(px->log, &e);
    if (px->status && r->up) {
        int comp = status_component_for(px->status, r->up->index, r->path, strlen(r->path));
        int64_t fb = since(r->t_first_body ? r->t_first_body : r->t_first_byte, r->t_start);
        status_observe(px->status, comp, status, fb < 0 ? 0 : (uint64_t)fb, now - r->t_start, r->quota_refused,
                       now);
    }
    r->status = status;
}

/* Drop the request state after its response has been fully queued on
 * c->out; the connection continues with the next pipelined request. */
static void req_clear(struct client *c)
{
    struct request *r = &c->r;
    buf_release(&r->out);
    memset(r, 0, sizeof *r);
    c->has_req = false;
}

/* ---------------------------------------------------------------------- */
/* request head                                                            */

static bool valid_request_id(struct h1_str v)
{
    if (v.len == 0 || v.len > 64)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char ch = v.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

static bool named_in_connection(const struct h1_message *m, struct h1_str name)
{
    if (!m->conn_flags && !h1_find_header(m, "connection"))
        return false;
    char tok[64];
    if (name.len >= sizeof tok)
        return false;
    memcpy(tok, name.p, name.len);
    tok[name.len] = '\0';
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct h1_header *h = &m->headers[i];
        if (rp_strieq(h->name.p, h->name.len, "connection") && h1_list_has_token(h->value, tok))
            return true;
    }
    return false;
}

static bool out_add(struct buf *b, const char *p, size_t n)
{
    return buf_append(b, p, n) == n;
}

static bool out_adds(struct buf *b, const char *s)
{
    return out_add(b, s, strlen(s));
}

/* Build the upstream request head into r->out.  false if it does not fit
 * (the head limit keeps that from happening with sane limits). */
static bool build_upstream_head(struct client *c, const struct h1_message *m)
{
    struct request *r = &c->r;
    struct buf *b = &r->out;
    bool ok = true;
    ok &= out_add(b, m->method.p, m->method.len);
    ok &= out_adds(b, " ");
    ok &= out_add(b, m->target.p, m->target.len);
    ok &= out_adds(b, " HTTP/1.1\r\n");
    bool xff_done = false;
    for (size_t i = 0; i < m->num_headers && ok; i++) {
        const struct h1_header *h = &m->headers[i];
        struct h1_str n = h->name;
        if (h1_is_hop_by_hop(n) || rp_strieq(n.p, n.len, "content-length") || rp_strieq(n.p, n.len, "expect") ||
            rp_strieq(n.p, n.len, "x-forwarded-proto") || rp_strieq(n.p, n.len, "x-request-id"))
            continue;
        if (rp_strieq(n.p, n.len, "x-forwarded-for")) {
            if (xff_done)
                continue;
            /* Fold every X-Forwarded-For line into the first, then add the
             * client: upstreams that read only one line see the chain. */
            ok &= out_adds(b, "X-Forwarded-For: ");
            bool first = true;
            for (size_t j = i; j < m->num_headers; j++) {
                const struct h1_header *x = &m->headers[j];
                if (!rp_strieq(x->name.p, x->name.len, "x-forwarded-for") || x->value.len == 0)
                    continue;
                if (!first)
                    ok &= out_adds(b, ", ");
                ok &= out_add(b, x->value.p, x->value.len);
                first = false;
            }
            if (!first)
                ok &= out_adds(b, ", ");
            ok &= out_adds(b, c->ip);
            ok &= out_adds(b, "\r\n");
            xff_done = true;
            continue;
        }
        if (named_in_connection(m, n))
            continue;
        ok &= out_add(b, n.p, n.len);
        ok &= out_adds(b, ": ");
        ok &= out_add(b, h->value.p, h->value.len);
        ok &= out_adds(b, "\r\n");
    }
    char line[160];
    if (m->framing == H1_BODY_LENGTH) {
        int n = rp_snprintf(line, sizeof line, "Content-Length: %llu\r\n", (unsigned long long)m->content_length);
        ok &= n > 0 && out_add(b, line, (size_t)n);
    } else if (m->framing == H1_BODY_CHUNKED) {
        ok &= out_adds(b, "Transfer-Encoding: chunked\r\n");
    }
    if (!xff_done) {
        ok &= out_adds(b, "X-Forwarded-For: ");
        ok &= out_adds(b, c->ip);
        ok &= out_adds(b, "\r\n");
    }
    ok &= out_adds(b, "X-Forwarded-Proto: http\r\nX-Request-Id: ");
    ok &= out_adds(b, r->id);
    ok &= out_adds(b, "\r\n\r\n");
    return ok;
}

static void make_request_id(struct request *r, const struct h1_message *m)
{
    const struct h1_header *h = h1_find_header(m, "x-request-id");
    if (h && valid_request_id(h->value)) {
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
static void req_start(struct client *c, const struct h1_message *m, size_t n)
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
    size_t plen = m->target.len;
    const char *q = memchr(m->target.p, '?', plen);
    if (q)
        plen = (size_t)(q - m->target.p);
    copy_view(r->path, sizeof r->path, (struct h1_str){m->target.p, plen});
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

    if (m->framing == H1_BODY_LENGTH && m->content_length > px->cfg->limits.max_body) {
        buf_consume(&c->in, n);
        client_reply_error(c, 413, "body_too_large", "request body exceeds the configured limit",
                           "Connection: close\r\n");
        c->close_after = true;
        req_finish(c, 413, "body_too_large");
        req_clear(c);
        client_flush(c);
        return;
    }

    int ui = config_route(px->cfg, r->path, strlen(r->path));
    if (ui < 0) {
        buf_consume(&c->in, n);
        /* The body (if any) is not read: close after the reply so its
         * bytes are never parsed as a request. */
        bool close = !r->req_body_done || !r->client_keep_alive;
        client_reply_error(c, 404, "no_route", "no route for this path", close ? "Connection: close\r\n" : NULL);
        c->close_after = close;
        req_finish(c, 404, "no_route");
        req_clear(c);
        client_flush(c);
        return;
    }
    r->up = &px->ups->ups[ui];
    r->model_api = strncmp(r->path, "/v1/", 4) == 0;
    /* Only the generation endpoints carry max_tokens; other /v1/ paths
     * (files, audio) may hold any body and are streamed untouched. */
    r->generation = (strcmp(r->path, "/v1/chat/completions") == 0 || strcmp(r->path, "/v1/completions") == 0) &&
                    rp_strieq(m->method.p, m->method.len, "POST");
    r->llm = r->generation && m->framing == H1_BODY_LENGTH && m->content_length > 0 &&
             m->content_length <= PROXY_LLM_BODY_MAX;

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
    r->tenant->requests++;

    size_t out_size = RP_MAX((size_t)BUF_DEFAULT_SIZE, px->cfg->limits.max_header_bytes + 4096);
    if (r->llm)
        out_size += (size_t)m->content_length;
    buf_alloc_size(&r->out, out_size);
    if (!build_upstream_head(c, m)) {
        buf_consume(&c->in, n);
        client_reply_error(c, 431, "header_too_large", "request header section too large", "Connection: close\r\n");
        c->close_after = true;
        req_finish(c, 431, "header_too_large");
        req_clear(c);
        client_flush(c);
        return;
    }
    r->head_len = buf_len(&r->out);
    buf_consume(&c->in, n);
    /* The views into c->in are dead from here on. */
    if (r->llm) {
        /* Read the body whole first: admission needs max_tokens. */
        r->state = R_BUFFERING;
        if (r->expect_continue) {
            r->expect_continue = false;
            if (r->client_minor >= 1)
                buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        pump_request_body(c);
        if (!c->has_req || r->finished)
            return;
        if (!r->req_body_done) {
            client_flush(c);
            return;
        }
    }
    req_admit(c);
}

/* ---------------------------------------------------------------------- */
/* dispatch                                                                */

/* Report how the current attempt ended to outlier detection and canary
 * analysis, once per attempt. */
static void attempt_done(struct client *c, int outcome, uint64_t ttft_us)
{
    struct request *r = &c->r;
    if (r->attempt_recorded || !r->srv)
        return;
    r->attempt_recorded = true;
    upstream_attempt_done(r->srv, outcome, ttft_us, ev_now(c->px->loop));
}

struct pick_ctx {
    int group;      /* -1: any */
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

/* Which failures may be retried, by the outcome names used below. */
static bool retry_failure_of(const char *outcome, enum retry_failure *f)
{
    if (strcmp(outcome, "upstream_connect_failed") == 0)
        *f = RETRY_FAIL_CONNECT;
    else if (strcmp(outcome, "upstream_connect_timeout") == 0)
        *f = RETRY_FAIL_CONNECT_TIMEOUT;
    else if (strcmp(outcome, "upstream_closed") == 0 || strcmp(outcome, "upstream_write_failed") == 0)
        *f = RETRY_FAIL_RESET;
    else if (strcmp(outcome, "upstream_timeout") == 0)
        *f = RETRY_FAIL_TIMEOUT;
    else
        return false;
    return true;
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
    struct pick_ctx probe = {.group = -1, .tried = r->tried | (r->srv->index < 64 ? 1ull << r->srv->index : 0),
                             .need_slot = true};
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
    if (r->has_ticket) {
        admit_release(&old->lim, &r->ticket, now, how);
        r->has_ticket = false;
    }
    old->inflight--;
    px->inflight--;
    r->srv = NULL;
    pump_schedule(r->up);
    struct server *s = pick_server(r, true);
    if (!s || admit_acquire(&s->lim, now, &r->ticket) != RP_OK)
        return false;
    r->has_ticket = true;
    r->retries++;
    px->retries++;
    r->out_sent = 0;
    r->t_first_byte = r->t_first_body = r->t_connected = 0;
    r->attempt_recorded = false;
    r->status = 0;
    req_dispatch(c, s);
    return true;
}

static void upstream_fail(struct client *c, int status, const char *code, const char *msg, const char *outcome)
{
    struct request *r = &c->r;
    if (r->srv && !r->attempt_recorded) {
        int oc = strstr(outcome, "timeout") ? OUTLIER_TIMEOUT
                 : strcmp(outcome, "upstream_connect_failed") == 0 ? OUTLIER_CONNECT
                                                                   : OUTLIER_5XX;
        attempt_done(c, oc, 0);
    }
    enum retry_failure rf;
    if (retry_failure_of(outcome, &rf) &&
        try_retry(c, rf, strstr(outcome, "timeout") ? ADMIT_OVERLOADED : ADMIT_FAILED))
        return;
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    if (r->state == R_STREAMING || r->bytes_out > 0) {
        /* Part of the response is already with the client: the only
         * honest signal left is to cut the connection. */
        req_finish(c, r->status, outcome);
        client_close(c);
        return;
    }
    bool close = !r->req_body_done || !r->client_keep_alive;
    r->state = R_LOCAL;
    client_reply_error(c, status, code, msg, close ? "Connection: close\r\n" : NULL);
    if (close)
        c->close_after = true;
    req_finish(c, status, outcome);
    req_clear(c);
    client_flush(c);
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
        upstream_fail(c, 504, "upstream_connect_timeout", "upstream connect timed out", "upstream_connect_timeout");
    } else if (r->state == R_STREAMING) {
        upstream_fail(c, 504, "upstream_idle_timeout", "upstream stopped sending", "upstream_idle_timeout");
    } else {
        upstream_fail(c, 504, "upstream_timeout", "upstream did not answer in time", "upstream_timeout");
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
static void req_refuse(struct client *c, int status, const char *code, const char *msg, const char *outcome,
                       uint32_t retry_after_s, const struct quota_info *qi)
{
    struct request *r = &c->r;
    struct sbuf h;
    sbuf_init(&h, 2048);
    if (qi)
        ratelimit_headers(c, &h, qi);
    else {
        ratelimit_headers(c, &h, NULL);
        if (retry_after_s)
            sbuf_printf(&h, "Retry-After: %u\r\n", retry_after_s);
    }
    /* The body of a refused request may still be on its way: without
     * reading it the connection cannot carry another request. */
    bool close = !r->req_body_done || !r->client_keep_alive;
    if (close)
        sbuf_adds(&h, "Connection: close\r\n");
    client_reply_error(c, status, code, msg, h.data ? h.data : "");
    sbuf_free(&h);
    if (close)
        c->close_after = true;
    r->state = R_LOCAL;
    req_finish(c, status, outcome);
    req_clear(c);
    client_flush(c);
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
    const char *msg = why == ADMIT_R_FULL       ? "the service is overloaded: the queue is full, retry later"
                      : why == ADMIT_R_EVICTED  ? "the service is overloaded: a higher-priority request took this place"
                      : why == ADMIT_R_SHED     ? "the service is overloaded: shed from a standing queue, retry later"
                                                : "the service is overloaded: no capacity within the queue deadline";
    req_refuse(c, 503, "overloaded", msg, admit_reason_name(why), ra, NULL);
}

/* Admission: quota first (429), then a free concurrency slot on some
 * server, else a place in the upstream's queue (503 when none). */
static void req_admit(struct client *c)
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
            req_refuse(c, 400, "invalid_request_body", msg, "invalid_request_body", 0, NULL);
            return;
        }
    } else {
        r->info.max_tokens = -1;
        r->info.n = 1;
    }
    /* Only generation requests spend tokens; listing models does not.  A
     * generation body too large or chunked to read first reserves the
     * tenant's default. */
    uint64_t need = r->generation
                        ? quota_need(&t->policy->quota, r->info.max_tokens, r->info.n, r->info.prompt_tokens)
                        : 0;
    struct quota_info qi;
    enum quota_result qr = quota_reserve(&t->quota, &t->policy->quota, need, now, &r->qt, &qi);
    if (qr != QUOTA_OK) {
        px->refused_quota++;
        r->quota_refused = true;
        const char *msg = qr == QUOTA_REQUESTS ? "rate limit reached for requests"
                          : qr == QUOTA_TOKENS ? "rate limit reached for tokens"
                                               : "request is larger than the token budget per minute";
        req_refuse(c, 429, "rate_limit_exceeded", msg, quota_result_name(qr), 0, &qi);
        return;
    }
    r->group = canary_pick_group(up->canary, tenant_flow_key(t));
    retry_note_request(up->retry, now);
    struct pick_ctx any = {.group = -1};
    if (!upstream_any(up, pick_accept, &any)) {
        req_refuse(c, 503, "no_server", "no upstream server is available", "no_server", 5, NULL);
        return;
    }
    /* Waiters go first: a new arrival never overtakes the queue. */
    if (admit_queue_len(&up->queue) == 0) {
        struct server *s = pick_server(r, true);
        if (s && admit_acquire(&s->lim, now, &r->ticket) == RP_OK) {
            r->has_ticket = true;
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
    queue_arm(px, up);
    pump_schedule(up);
    client_update_events(c);
}

/* ---- the admission queue ---- */

static void queue_expire(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct upstream *up = arg;
    struct proxy *px = up->owner;
    enum admit_reason why;
    struct admit_waiter *w;
    while ((w = admit_expire(&up->queue, ev_now(loop), &why)) != NULL)
        refuse_overloaded(client_of_waiter(w), why);
    queue_arm(px, up);
}

static void queue_arm(struct proxy *px, struct upstream *up)
{
    uint64_t when = admit_queue_len(&up->queue) ? admit_next_timer(&up->queue, ev_now(px->loop)) : 0;
    if (when == 0) {
        ev_timer_cancel(px->loop, &up->queue_timer);
        return;
    }
    ev_timer_arm_at(px->loop, &up->queue_timer, when);
}

/* Hand free slots to waiters.  Runs from a zero-delay timer rather than
 * inline, so a dispatch that fails at once (and frees its slot again)
 * cannot recurse into the queue. */
static void queue_pump(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct upstream *up = arg;
    struct proxy *px = up->owner;
    while (admit_queue_len(&up->queue) > 0) {
        uint64_t now = ev_now(loop);
        if (!upstream_any(up, server_has_slot, NULL))
            break;
        struct admit_waiter *w = admit_dequeue(&up->queue, now);
        if (!w)
            break;
        struct client *c = client_of_waiter(w);
        c->r.queued = false;
        struct server *s = pick_server(&c->r, true);
        if (!s || admit_acquire(&s->lim, now, &c->r.ticket) != RP_OK) {
            /* Cannot happen (the slot was free); fail safe. */
            refuse_overloaded(c, ADMIT_R_FULL);
            continue;
        }
        c->r.has_ticket = true;
        req_dispatch(c, s);
    }
    queue_arm(px, up);
}

static void pump_schedule(struct upstream *up)
{
    if (admit_queue_len(&up->queue) == 0 || ev_timer_armed(&up->pump_timer))
        return;
    ev_timer_arm(up->loop, &up->pump_timer, 0);
}

/* Get a connection to server s (admitted: the slot is held) and start
 * sending. */
static void req_dispatch(struct client *c, struct server *s)
{
    struct proxy *px = c->px;
    struct request *r = &c->r;
    r->srv = s;
    s->inflight++;
    s->requests++;
    px->inflight++;
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
        upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
                      "upstream_connect_failed");
        return;
    }
    uconn_attach(c, u);
    if (ev_add(px->loop, u->fd, connected ? 0 : EV_WRITE, upstream_event, c) != RP_OK) {
        s->connect_errors++;
        upstream_fail(c, 502, "upstream_connect_failed", "cannot register upstream socket", "upstream_connect_failed");
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
/* request body: c->in -> r->out                                           */

static void pump_request_body(struct client *c)
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
    if (r->req_framing == H1_BODY_LENGTH) {
        n = (size_t)RP_MIN((uint64_t)n, r->req_body_left);
        buf_append(&r->out, c->in.pos, n);
        buf_consume(&c->in, n);
        r->req_body_left -= n;
        r->req_body_bytes += n;
        if (r->req_body_left == 0)
            r->req_body_done = true;
    } else if (r->req_framing == H1_BODY_CHUNKED) {
        uint64_t before = r->req_chunk.payload_total;
        ssize_t used = h1_chunked_feed(&r->req_chunk, c->in.pos, n, NULL, NULL);
        if (used < 0) {
            if (r->u) {
                upstream_conn_close(r->u);
                r->u = NULL;
            }
            client_reply_error(c, 400, "bad_chunked_body", "malformed chunked request body", "Connection: close\r\n");
            c->close_after = true;
            req_finish(c, 400, "bad_chunked_body");
            req_clear(c);
            client_flush(c);
            return;
        }
        buf_append(&r->out, c->in.pos, (size_t)used);
        buf_consume(&c->in, (size_t)used);
        r->req_body_bytes += r->req_chunk.payload_total - before;
        if (r->req_chunk.payload_total > px->cfg->limits.max_body) {
            if (r->u) {
                upstream_conn_close(r->u);
                r->u = NULL;
            }
            client_reply_error(c, 413, "body_too_large", "request body exceeds the configured limit",
                               "Connection: close\r\n");
            c->close_after = true;
            req_finish(c, 413, "body_too_large");
            req_clear(c);
            client_flush(c);
            return;
        }
        if (r->req_chunk.done)
            r->req_body_done = true;
    }
    if (!r->req_body_done)
        client_set_timer(c, px->cfg->timeouts.client_body_us);
}

/* Write pending r->out bytes to the upstream. */
static void req_send(struct client *c)
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
            upstream_fail(c, 502, "upstream_write_failed", "upstream connection failed", "upstream_write_failed");
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
    client_update_events(c);
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
    ok = ok && out_add(b, line, (size_t)n);
    for (size_t i = 0; i < m->num_headers && ok; i++) {
        const struct h1_header *h = &m->headers[i];
        struct h1_str nm = h->name;
        if (h1_is_hop_by_hop(nm) || rp_strieq(nm.p, nm.len, "x-request-id") || named_in_connection(m, nm))
            continue;
        if (rp_strieq(nm.p, nm.len, "content-length") && r->resp_framing != H1_BODY_NONE)
            continue;
        ok &= out_add(b, nm.p, nm.len);
        ok &= out_adds(b, ": ");
        ok &= out_add(b, h->value.p, h->value.len);
        ok &= out_adds(b, "\r\n");
    }
    if (r->resp_framing == H1_BODY_LENGTH) {
        n = rp_snprintf(line, sizeof line, "Content-Length: %llu\r\n", (unsigned long long)m->content_length);
        ok &= n > 0 && out_add(b, line, (size_t)n);
    } else if (r->resp_framing == H1_BODY_CHUNKED && !r->resp_decode) {
        ok &= out_adds(b, "Transfer-Encoding: chunked\r\n");
    }
    ok &= out_adds(b, "X-Request-Id: ");
    ok &= out_adds(b, r->id);
    ok &= out_adds(b, "\r\n");
    if (r->model_api && r->tenant) {
        struct sbuf h;
        sbuf_init(&h, 1024);
        ratelimit_headers(c, &h, NULL);
        if (h.len)
            ok &= out_add(b, h.data, h.len);
        sbuf_free(&h);
    }
    if (r->resp_close)
        ok &= out_adds(b, "Connection: close\r\n");
    else if (r->client_minor == 0)
        ok &= out_adds(b, "Connection: keep-alive\r\n");
    ok &= out_adds(b, "\r\n");
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
        if (r->has_ticket)
            admit_first_byte(&r->srv->lim, &r->ticket, r->t_first_body);
        if (r->status < 500)
            attempt_done(c, OUTLIER_SUCCESS, r->t_first_body - r->t_dispatch);
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
 * it), account, and move on to the next request. */
static void resp_complete(struct client *c, bool upstream_reusable)
{
    struct request *r = &c->r;
    struct uconn *u = r->u;
    r->resp_done = true;
    if (u) {
        if (upstream_reusable && buf_empty(&u->in))
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
    req_finish(c, r->status, "ok");
    req_clear(c);
    client_set_timer(c, c->px->cfg->timeouts.client_idle_us);
    client_flush(c);
    if (!c->dead && !c->close_after)
        client_process(c);
}

/* Move response body bytes from u->in to c->out as far as c->out has room,
 * checking them against the framing. */
static void resp_pump(struct client *c)
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
                resp_complete(c, true);
                return;
            }
        } else if (r->resp_framing == H1_BODY_CHUNKED) {
            ssize_t used;
            size_t before = buf_len(&c->out);
            used = h1_chunked_feed(&r->resp_chunk, u->in.pos, n, on_chunk_data, c);
            if (used > 0 && !r->resp_decode)
                buf_append(&c->out, u->in.pos, (size_t)used);
            if (used < 0) {
                upstream_fail(c, 502, "bad_upstream_response", "malformed chunked response",
                              "bad_upstream_chunked");
                return;
            }
            buf_consume(&u->in, (size_t)used);
            r->bytes_out += buf_len(&c->out) - before;
            if (r->resp_chunk.done) {
                resp_complete(c, true);
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
                upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
                              "upstream_head_too_large");
            }
            return;
        }
        if (n < 0) {
            upstream_fail(c, 502, "bad_upstream_response", "malformed upstream response", "bad_upstream_response");
            return;
        }
        if (m.status >= 100 && m.status < 200) {
            if (m.status == 101) {
                upstream_fail(c, 502, "bad_upstream_response", "unexpected protocol switch", "bad_upstream_response");
                return;
            }
            /* Interim responses are dropped: we answered Expect ourselves. */
            buf_consume(&u->in, (size_t)n);
            continue;
        }
        r->status = m.status;
        r->t_first_byte = ev_now(px->loop);
        if (m.status >= 500) {
            attempt_done(c, OUTLIER_5XX, 0);
            /* A 503 before any byte went out: another server may serve it. */
            if (m.status == 503 && try_retry(c, RETRY_FAIL_STATUS_503, ADMIT_OVERLOADED))
                return;
            if (!r->u) {
                upstream_fail(c, 503, "upstream_unavailable", "upstream answered 503", "upstream_503");
                return;
            }
        }
        r->resp_framing = m.framing;
        r->resp_left = m.content_length;
        h1_chunked_init(&r->resp_chunk);
        r->resp_decode = m.framing == H1_BODY_CHUNKED && r->client_minor == 0;
        r->resp_close = !r->client_keep_alive || px->draining || m.framing == H1_BODY_CLOSE || r->resp_decode ||
                        !r->req_body_done;
        if (r->status >= 500)
            r->srv->responses_5xx++;
        metrics_hist_observe(&r->srv->ttfb, r->t_first_byte - r->t_dispatch);
        /* The usage scanner settles token quotas and counts the content
         * events of a stream, which canary analysis needs for TPOT. */
        if ((r->qt.active || r->up->canary) && r->model_api && r->status < 300) {
            const struct h1_header *ct = h1_find_header(&m, "content-type");
            bool sse = ct && ct->value.len >= 17 && rp_strieq(ct->value.p, 17, "text/event-stream");
            llmreq_scan_init(&r->scan, sse);
            r->scan_on = true;
        }
        size_t before = buf_len(&c->out);
        if (!resp_head_to_client(c, &m)) {
            upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
                          "upstream_head_too_large");
            return;
        }
        r->bytes_out += buf_len(&c->out) - before;
        buf_consume(&u->in, (size_t)n);
        r->replayable = false;
        buf_release(&r->out);
        r->state = R_STREAMING;
        bool keep = m.keep_alive;
        if (m.framing == H1_BODY_NONE || (m.framing == H1_BODY_LENGTH && m.content_length == 0)) {
            if (r->has_ticket)
                admit_first_byte(&r->srv->lim, &r->ticket, r->t_first_byte);
            if (r->status < 500)
                attempt_done(c, OUTLIER_SUCCESS, r->t_first_byte - r->t_dispatch);
            resp_complete(c, keep);
            return;
        }
        if (!keep && m.framing != H1_BODY_CLOSE) {
            /* Remember that the upstream will close: the connection must
             * not go back to the pool even if the body ends cleanly. */
            u->reused = false;
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
                resp_complete(c, false);
            }
            return;
        }
        if (r->state == R_STREAMING) {
            upstream_fail(c, 502, "upstream_closed", "upstream closed mid-response", "upstream_closed_mid_response");
            return;
        }
        r->srv->connect_errors++;
        upstream_fail(c, 502, "upstream_closed", "upstream closed the connection before responding",
                      "upstream_closed");
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
            upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
                          "upstream_connect_failed");
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

/* ---------------------------------------------------------------------- */
/* client side                                                             */

/* Write c->out; close or continue once it is empty. */
static void client_flush(struct client *c)
{
    struct proxy *px = c->px;
    if (c->dead)
        return;
    while (!buf_empty(&c->out)) {
        ssize_t w = buf_write_fd(&c->out, c->fd);
        if (w == RP_AGAIN) {
            if (!c->out_blocked) {
                c->out_blocked = true;
                client_set_timer(c, px->cfg->timeouts.send_us);
            }
            client_update_events(c);
            return;
        }
        if (w < 0) {
            if (c->has_req) {
                px->client_aborts++;
                req_finish(c, c->r.status ? c->r.status : 499, "client_abort");
            }
            client_close(c);
            return;
        }
    }
    if (c->out_blocked) {
        c->out_blocked = false;
        if (c->has_req && c->r.state == R_STREAMING)
            client_set_timer(c, px->cfg->timeouts.send_us);
    }
    if (c->close_after) {
        if (!c->has_req) {
            client_close(c);
            return;
        }
    }
    /* Room again on c->out: let a stalled upstream continue. */
    if (c->has_req && c->r.state == R_STREAMING && c->r.u) {
        struct uconn *u = c->r.u;
        if (!buf_empty(&u->in)) {
            resp_pump(c);
            if (!c->has_req || c->r.u != u)
                return;
            if (!buf_empty(&c->out)) {
                client_flush(c);
                return;
            }
        }
        ev_mod(px->loop, u->fd, EV_READ);
    }
    client_trim(c);
    client_update_events(c);
}

static void client_read(struct client *c)
{
    struct proxy *px = c->px;
    if (!c->in.start)
        buf_alloc(&c->in);
    ssize_t n = buf_read_fd(&c->in, c->fd);
    if (n == RP_AGAIN)
        return;
    if (n == 0 || n == RP_ERR) {
        if (c->has_req) {
            /* The client left with a request in flight: cancel upstream
             * work by closing its connection. */
            px->client_aborts++;
            req_finish(c, 499, "client_abort");
        }
        client_close(c);
        return;
    }
    client_process(c);
}

/* Parse the next request if none is active, or feed the active request's
 * body. */
static void client_process(struct client *c)
{
    struct proxy *px = c->px;
    if (c->has_req) {
        struct request *r = &c->r;
        if (r->state == R_BUFFERING) {
            pump_request_body(c);
            if (!c->has_req || r->finished)
                return;
            if (r->req_body_done)
                req_admit(c);
            else
                client_update_events(c);
            return;
        }
        if (!r->req_body_done && r->u && (r->state == R_SENDING || r->state == R_WAIT_HEAD))
            req_send(c);
        else
            client_update_events(c);
        return;
    }
    if (c->close_after)
        return;
    if (buf_empty(&c->in)) {
        client_trim(c);
        client_update_events(c);
        return;
    }
    if (!c->head_started) {
        c->head_started = true;
        client_set_timer(c, px->cfg->timeouts.client_header_us);
    }
    struct h1_header hdrs[H1_DEFAULT_MAX_HEADERS * 2];
    struct h1_message m;
    h1_message_init(&m, hdrs, RP_MIN(RP_ARRAY_LEN(hdrs), px->lim.max_headers + 1));
    int n = h1_parse_request(c->in.pos, buf_len(&c->in), &m, &px->lim);
    if (n == RP_AGAIN) {
        if (buf_free_tail(&c->in) == 0) {
            if (c->in.pos != c->in.start) {
                buf_compact(&c->in);
            } else {
                m.error_status = 431;
                m.error = "request header section too large";
                n = RP_ERR;
            }
        }
        if (n == RP_AGAIN) {
            client_update_events(c);
            return;
        }
    }
    if (n < 0) {
        px->bad_requests++;
        c->has_req = true; /* for logging */
        memset(&c->r, 0, sizeof c->r);
        rp_snprintf(c->r.method, sizeof c->r.method, "-");
        rp_snprintf(c->r.path, sizeof c->r.path, "-");
        c->r.t_start = ev_now(px->loop);
        int st = m.error_status ? m.error_status : 400;
        client_reply_error(c, st, "bad_request", m.error ? m.error : "malformed request", "Connection: close\r\n");
        c->close_after = true;
        req_finish(c, st, "bad_request");
        req_clear(c);
        buf_reset(&c->in);
        client_flush(c);
        return;
    }
    req_start(c, &m, (size_t)n);
}

static void client_event(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct client *c = arg;
    if (events & EV_WRITE) {
        client_flush(c);
        /* client_flush may have freed c: only continue via the loop. */
        return;
    }
    if (events & (EV_READ | EV_ERROR))
        client_read(c);
}

/* ---------------------------------------------------------------------- */
/* lifecycle, metrics                                                      */

static void render_metrics(struct sbuf *out, void *arg)
{
    struct proxy *px = arg;
    static const char *classes[CLASS_SLOTS] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
    sbuf_adds(out, "# HELP rampart_requests_total Requests answered, by upstream and status class.\n"
                   "# TYPE rampart_requests_total counter\n");
    for (size_t i = 0; i <= px->cfg->num_upstreams; i++) {
        const char *name = i < px->cfg->num_upstreams ? px->cfg->upstreams[i].name : "none";
        for (int k = 0; k < CLASS_SLOTS; k++)
            if (px->requests[i][k])
                sbuf_printf(out, "rampart_requests_total{upstream=\"%s\",class=\"%s\"} %llu\n", name, classes[k],
                            (unsigned long long)px->requests[i][k]);
    }
    sbuf_printf(out,
                "# TYPE rampart_inflight_requests gauge\nrampart_inflight_requests %llu\n"
                "# TYPE rampart_client_connections gauge\nrampart_client_connections %zu\n"
                "# TYPE rampart_client_aborts_total counter\nrampart_client_aborts_total %llu\n"
                "# TYPE rampart_bad_requests_total counter\nrampart_bad_requests_total %llu\n"
                "# TYPE rampart_client_connections_accepted_total counter\n"
                "rampart_client_connections_accepted_total %llu\n",
                (unsigned long long)px->inflight, px->num_clients, (unsigned long long)px->client_aborts,
                (unsigned long long)px->bad_requests, (unsigned long long)px->accepted);
    sbuf_adds(out, "# TYPE rampart_upstream_connect_errors_total counter\n");
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        for (size_t j = 0; j < up->num_servers; j++)
            sbuf_printf(out, "rampart_upstream_connect_errors_total{upstream=\"%s\",server=\"%s\"} %llu\n",
                        up->conf->name, up->servers[j].name, (unsigned long long)up->servers[j].connect_errors);
    }
    sbuf_adds(out, "# TYPE rampart_upstream_inflight gauge\n");
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        for (size_t j = 0; j < up->num_servers; j++)
            sbuf_printf(out, "rampart_upstream_inflight{upstream=\"%s\",server=\"%s\"} %u\n", up->conf->name,
                        up->servers[j].name, up->servers[j].inflight);
    }
    sbuf_adds(out, "# TYPE rampart_first_byte_seconds histogram\n");
    metrics_hist_render(out, "rampart_first_byte_seconds", "", &px->ttfb);
    sbuf_adds(out, "# TYPE rampart_request_duration_seconds histogram\n");
    metrics_hist_render(out, "rampart_request_duration_seconds", "", &px->total);
}

static void reap_clients(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct proxy *px = arg;
    while (px->graveyard) {
        struct client *c = px->graveyard;
        px->graveyard = c->next;
        free(c);
    }
}

/* Periodic release-safety and limiter work. */
static void housekeeping_tick(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct proxy *px = arg;
    upstream_tick(px->ups, ev_now(loop));
    ev_timer_arm(loop, t, 100000);
}

static void flush_tick(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct proxy *px = arg;
    accesslog_flush(px->log);
    ev_timer_arm(loop, t, 500000);
}

struct proxy *proxy_create(struct ev_loop *loop, const struct config *cfg, struct accesslog *log)
{
    struct proxy *px = rp_xcalloc(1, sizeof *px);
    px->loop = loop;
    px->cfg = cfg;
    px->log = log;
    /* Timers first: the failure path below cancels them. */
    ev_timer_init(&px->flush_timer, flush_tick, px);
    ev_timer_init(&px->reap_timer, reap_clients, px);
    ev_timer_init(&px->tick_timer, housekeeping_tick, px);
    px->lim.max_header_bytes = cfg->limits.max_header_bytes;
    px->lim.max_headers = RP_MIN(cfg->limits.max_headers, (size_t)H1_DEFAULT_MAX_HEADERS * 2 - 1);
    px->lim.max_uri = cfg->limits.max_uri;
    px->ups = upstream_set_create(loop, cfg);
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        up->owner = px;
        /* Initialised once: re-initialising an armed timer would corrupt
         * the loop's heap. */
        ev_timer_init(&up->queue_timer, queue_expire, up);
        ev_timer_init(&up->pump_timer, queue_pump, up);
    }
    px->tenants = tenant_table_new(&cfg->tenants, NULL);
    for (size_t i = 0; i < cfg->num_listen; i++) {
        const struct config_addr *a = &cfg->listen[i];
        int fd = net_listen((const struct sockaddr *)&a->ss, a->len, 4096);
        if (fd < 0) {
            rp_log_errno(errno, "cannot listen on %s", a->text);
            goto fail;
        }
        px->lfds[px->num_lfds++] = fd;
        if (ev_add(loop, fd, EV_READ, accept_event, px) != RP_OK) {
            rp_log_errno(errno, "cannot watch listener %s", a->text);
            goto fail;
        }
    }
    ev_timer_arm(loop, &px->flush_timer, 500000);
    ev_timer_arm(loop, &px->tick_timer, 100000);
    metrics_register(render_metrics, px);
    admit_metrics_register();
    metrics_register(tenant_metrics_render, px->tenants);
    return px;
fail:
    proxy_free(px);
    return NULL;
}

static void close_listeners(struct proxy *px)
{
    for (size_t i = 0; i < px->num_lfds; i++) {
        ev_del(px->loop, px->lfds[i]);
        close(px->lfds[i]);
    }
    px->num_lfds = 0;
}

void proxy_drain(struct proxy *px, void (*done)(void *arg), void *arg)
{
    px->draining = true;
    px->drained_cb = done;
    px->drained_arg = arg;
    close_listeners(px);
    /* Idle keep-alive connections have nothing in flight: close them now.
     * Busy ones finish their current response with Connection: close. */
    struct client *c = px->clients, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->has_req && buf_empty(&c->out) && !c->head_started)
            client_close(c);
        else if (c->has_req)
            c->r.client_keep_alive = false;
    }
    if (px->num_clients == 0 && px->drained_cb) {
        px->drained_cb = NULL;
        done(arg);
    }
}

/* A canary rolled back: tell the users on the status page too. */
static void on_canary_event(void *arg, const struct canary *cn, const struct canary_event *ev)
{
    RP_UNUSED(cn);
    struct upstream *up = arg;
    struct proxy *px = up->owner;
    if (!px->status || strcmp(ev->action, "rollback") != 0)
        return;
    char name[160], body[512];
    rp_snprintf(name, sizeof name, "New release of %s rolled back", up->conf->name);
    rp_snprintf(body, sizeof body,
                "A new version of %s was serving part of the traffic and did worse than the current one (%s). "
                "rampart sent all traffic back to the current version%s. Some requests may have failed or been "
                "slow meanwhile.",
                up->conf->name, ev->reason[0] ? ev->reason : "regression detected",
                strcmp(ev->source, "admin") == 0 ? " on an operator's request" : " automatically");
    status_report_incident(px->status, up->index, name, body, ev_now(px->loop));
}

void proxy_set_status(struct proxy *px, struct status *st)
{
    px->status = st;
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        if (up->canary)
            canary_set_event_cb(up->canary, st ? on_canary_event : NULL, up);
    }
}

size_t proxy_connections(const struct proxy *px)
{
    return px->num_clients;
}

int proxy_port(const struct proxy *px)
{
    return px->num_lfds ? net_local_port(px->lfds[0]) : -1;
}

void proxy_free(struct proxy *px)
{
    if (!px)
        return;
    px->drained_cb = NULL;
    while (px->clients)
        client_close(px->clients);
    close_listeners(px);
    ev_timer_cancel(px->loop, &px->flush_timer);
    ev_timer_cancel(px->loop, &px->tick_timer);
    ev_timer_cancel(px->loop, &px->reap_timer);
    reap_clients(px->loop, &px->reap_timer, px);
    accesslog_flush(px->log);
    upstream_set_free(px->ups);
    tenant_table_free(px->tenants);
    free(px);
}

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
 * Timeouts: one timer per client connection, whose purpose (enum
 * client_timer) follows the connection's state: the request head must
 * arrive within client_header; a body being read may pause at most
 * client_body; a blocked c->out may wait at most send; a connection
 * between requests idles at most client_idle; a closing connection lingers
 * at most lingering.  While a request waits for or streams from its
 * upstream, no client timer runs unless the client blocks us: a stream
 * lasts as long as the upstream keeps sending.  One timer per upstream
 * connection covers connect, first byte and idle between body reads.
 *
 * How a request ended is one enum outcome (outcome.h), set once in
 * req_finish; the limiter, outlier detection, the canary, the status model
 * and the access log all derive their reading from it.
 *
 * Every locally generated answer goes through req_reply(), and every
 * connection that ends after a reply goes through the lingering close.
 */
#include "proxy.h"
#include "proxy_util.h"

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
#include "h1.h"
#include "llmreq.h"
#include "metrics.h"
#include "net.h"
#include "outcome.h"
#include "outlier.h"
#include "quota.h"
#include "reply.h"
#include "retry.h"
#include "canary.h"
#include "status.h"
#include "tenant.h"
#include "uri.h"
#include "util.h"

/* What the client connection's one timer is for. */
enum client_timer {
    CT_NONE = 0,
    CT_HEADER, /* waiting for (the rest of) a request head */
    CT_BODY,   /* waiting for request body bytes */
    CT_SEND,   /* c->out blocked on a client that does not read */
    CT_IDLE,   /* keep-alive, between requests */
    CT_LINGER, /* reply sent, write side shut, discarding input */
};

enum req_state {
    R_NONE = 0,
    R_BUFFERING,  /* reading the body (up to limits.request_buffer) before admission */
    R_QUEUED,     /* waiting in the upstream's admission queue */
    R_CONNECTING, /* waiting for an upstream connection */
    R_SENDING,    /* writing the request (head and body) */
    R_WAIT_HEAD,  /* request sent (or being sent), waiting for the response head */
    R_STREAMING,  /* response head sent, body streaming */
    R_LOCAL,      /* a locally generated response is being written */
};

struct request {
    enum req_state state;
    char method[16];
    char path[256]; /* without the query string, truncated for logs */
    char id[80];
    bool head_method;
    bool client_keep_alive;
    int client_minor;
    bool expect_continue;

    /* request body */
    enum h1_framing req_framing;
    uint64_t req_body_left; /* H1_BODY_LENGTH */
    struct h1_chunked req_chunk;
    bool req_body_done;
    uint64_t req_body_bytes;
    bool replayable; /* r->out still holds the whole request */
    size_t out_sent; /* bytes of r->out written to the upstream */

    struct upstream *up;
    struct server *srv;
    struct uconn *u;
    struct buf out;

    /* response */
    int status;
    enum h1_framing resp_framing;
    uint64_t resp_left;
    struct h1_chunked resp_chunk;
    bool resp_decode; /* de-chunk for an HTTP/1.0 client */
    bool resp_close;  /* close the client after this response */
    bool resp_done;
    uint64_t bytes_out;

    bool up_keep_alive; /* the upstream's response allows reuse */
    bool resp_sse;      /* text/event-stream response */
    bool committed;     /* response bytes have reached the client socket */
    bool resp_boundary; /* chunked relay: the client's decoder is between chunks */
    size_t resp_mark;   /* bytes on c->out before this response's head */

    uint64_t t_start, t_dispatch, t_connected, t_first_byte, t_first_body;
    bool finished;        /* req_finish ran: accounted and logged */
    enum outcome outcome; /* set by req_finish */

    /* admission and quotas */
    bool model_api;  /* path under /v1/: OpenAI conventions apply */
    bool generation; /* POST to a generation endpoint: spends tokens */
    bool llm;        /* generation body read whole and parsed (llmreq) */
    size_t head_len; /* rewritten head bytes at the start of r->out */
    struct tenant *tenant;
    enum admit_class cls;
    struct admit_waiter waiter;
    bool queued;
    struct admit_slot slot; /* concurrency slot on r->srv while dispatched */
    struct quota_ticket qt;
    struct llmreq_info info;
    struct llmreq_scan scan;
    bool scan_on;
    char tenant_label[TENANT_NAME_MAX];

    /* release safety */
    int group;      /* canary group this request prefers */
    uint64_t tried; /* servers already tried (bit per index) */
    unsigned retries;
    bool attempt_recorded; /* outcome of the current attempt reported */
    bool quota_refused;    /* answered 429 by our own quotas */
};

struct client {
    struct proxy *px;
    int fd;
    struct client *next, *prev;
    struct buf in, out;
    struct ev_timer timer;
    enum client_timer tkind; /* what timer is armed for (CT_NONE: not armed) */
    uint64_t linger_until;   /* CT_LINGER: close by then whatever arrives */
    uint64_t served;         /* requests finished on this connection */
    char ip[48];
    struct sockaddr_storage peer;
    socklen_t peer_len;
    bool head_started;
    bool close_after; /* close once c->out is flushed */
    bool has_req;
    bool out_blocked;   /* c->out waits for EV_WRITE */
    bool dead;          /* closed; memory freed at the end of the loop pass */
    bool lingering;     /* write side shut; reading only to discard */
    bool processing;    /* client_process is on the stack: do not re-enter */
    bool process_again; /* ...and was asked to run once more */
    /* A request head that did not arrive in one read: the parser's state
     * and the headers parsed so far, so the next read resumes where the
     * last one stopped instead of re-parsing from the first byte (a head
     * trickling in byte by byte costs linear time).  Allocated only then,
     * freed once the head is complete or refused. */
    struct client_head *head;
    struct request r;
};

#define CLIENT_HEAD_MAX_HEADERS (H1_DEFAULT_MAX_HEADERS * 2)

struct client_head {
    struct h1_message m;
    struct h1_header hdrs[CLIENT_HEAD_MAX_HEADERS];
};

#define CLASS_SLOTS PROXY_STATUS_CLASSES /* 1xx..5xx, other */

struct proxy {
    struct ev_loop *loop;
    const struct config *cfg;
    struct upstream_set *ups;
    struct accesslog *log;
    struct h1_limits lim;
    char *path_buf; /* canonical path of the request being started */
    size_t path_cap;
    int lfds[CONFIG_MAX_LISTEN];
    size_t num_lfds;
    bool accept_paused;
    bool draining;
    void (*drained_cb)(void *);
    void *drained_arg;
    struct client *clients;
    size_t num_clients;
    struct client *graveyard; /* closed clients awaiting free */
    struct ev_timer reap_timer;
    struct ev_timer flush_timer;
    struct ev_timer tick_timer;
    struct tenant_table *tenants;
    struct status *status;
    struct admit_driver *drivers; /* per upstream (by index): its queue's pump and deadline timer */
    struct admit_metrics admit;   /* the limiters and queues of px->ups, on /metrics */

    /* metrics */
    uint64_t requests[CONFIG_MAX_UPSTREAMS + 1][CLASS_SLOTS]; /* last row: no upstream */
    uint64_t inflight;                                        /* counted by admit_slot_take / admit_slot_give */
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
static void client_process_one(struct client *c);
static void client_flush(struct client *c);
static void req_finish(struct client *c, int status, enum outcome o);
static void client_timer_settle(struct client *c);
static void req_clear(struct client *c);
static void resp_pump(struct client *c);
static void req_send(struct client *c);
static void req_admit(struct client *c);
static void pump_request_body(struct client *c);
static void req_dispatch(struct client *c, struct server *s);
static void queue_arm(struct upstream *up);
static void pump_schedule(struct upstream *up);

/* ---------------------------------------------------------------------- */
/* error replies                                                           */

/* The one writer of locally generated responses: a complete response on
 * c->out, with an OpenAI-shaped JSON body so API clients parse it like any
 * other API error.  message may hold client-supplied text (a parameter
 * name): it is escaped. */
static void client_reply_error(struct client *c, int status, const char *code, const char *message,
                               const char *extra_headers, bool close)
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

/* ---------------------------------------------------------------------- */
/* connection lifetime                                                     */

static void client_timer_arm(struct client *c, enum client_timer kind, uint64_t us)
{
    if (c->dead)
        return;
    c->tkind = kind;
    ev_timer_arm(c->px->loop, &c->timer, us);
}

static void client_timer_stop(struct client *c)
{
    c->tkind = CT_NONE;
    ev_timer_cancel(c->px->loop, &c->timer);
}

/* The request is waiting for body bytes that only the client can send:
 * being read before admission, or streamed while r->out has room. */
static bool req_waits_for_body(const struct client *c)
{
    const struct request *r = &c->r;
    if (!c->has_req || r->req_body_done || r->finished)
        return false;
    if (r->state == R_BUFFERING)
        return true;
    return (r->state == R_SENDING || r->state == R_WAIT_HEAD || r->state == R_STREAMING) && r->out.start &&
           buf_free_tail(&r->out) > 0;
}

/* Make the timer's purpose match the connection's state.  A timer whose
 * purpose stays is left running (its deadline is not pushed back); the
 * places that see progress (body bytes, bytes written) re-arm explicitly. */
static void client_timer_settle(struct client *c)
{
    struct proxy *px = c->px;
    if (c->dead || c->lingering)
        return;
    enum client_timer want = CT_NONE;
    uint64_t us = 0;
    if (c->out_blocked) {
        want = CT_SEND;
        us = px->cfg->timeouts.send_us;
    } else if (c->has_req) {
        if (req_waits_for_body(c)) {
            want = CT_BODY;
            us = px->cfg->timeouts.client_body_us;
        }
    } else if (c->head_started || c->served == 0) {
        want = CT_HEADER;
        us = px->cfg->timeouts.client_header_us;
    } else {
        want = CT_IDLE;
        us = px->cfg->timeouts.client_idle_us;
    }
    if (want == c->tkind)
        return;
    if (want == CT_NONE)
        client_timer_stop(c);
    else
        client_timer_arm(c, want, us);
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
            req_finish(c, 499, OUTCOME_CLIENT_ABORT);
        }
        buf_release(&r->out);
        c->has_req = false;
    }
    ev_timer_cancel(px->loop, &c->timer);
    ev_del(px->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    free(c->head);
    c->head = NULL;
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

/* The last reply is on the wire and the connection must end.  Closing a
 * socket whose receive queue holds unread bytes makes the kernel send a
 * reset, and a client still sending (a large head, a body we refused)
 * would then lose the reply it has not read yet.  So: shut the write side
 * (the client sees the reply, then EOF), read and discard until the client
 * closes, pauses or the lingering bound passes, then close. */
static void client_linger(struct client *c)
{
    struct proxy *px = c->px;
    uint64_t bound = px->cfg->timeouts.lingering_us;
    if (bound == 0 || px->draining) {
        client_close(c);
        return;
    }
    if (shutdown(c->fd, SHUT_WR) < 0) {
        client_close(c);
        return;
    }
    c->lingering = true;
    c->linger_until = ev_now(px->loop) + bound;
    buf_reset(&c->in);
    /* The pause between two reads of discarded input is bounded too, by
     * at most a second: a client that has stopped sending is done. */
    client_timer_arm(c, CT_LINGER, RP_MIN(bound, 1000000ull));
    ev_mod(px->loop, c->fd, EV_READ);
}

static void client_linger_read(struct client *c)
{
    char sink[16384];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t now = ev_now(c->px->loop);
            if (now >= c->linger_until) {
                client_close(c);
                return;
            }
            client_timer_arm(c, CT_LINGER, RP_MIN(c->linger_until - now, 1000000ull));
            return;
        }
        client_close(c); /* EOF or error: the client is done */
        return;
    }
    if (ev_now(c->px->loop) >= c->linger_until)
        client_close(c);
}

/* Interest on the client socket: read while there is room for input and
 * no reply is pending a flush-then-close; write while c->out is blocked. */
static void client_update_events(struct client *c)
{
    if (c->dead || c->lingering)
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

/* Answer the current request locally and end it: the one path for every
 * locally generated response (errors, refusals, timeouts).  The connection
 * closes after the reply when asked, when the client did not ask for
 * keep-alive, or when the request body was not read whole (its bytes must
 * never be parsed as a request); it then lingers (client_linger). */
static void req_reply(struct client *c, int status, const char *code, const char *msg, const char *extra_headers,
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

static void client_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct client *c = arg;
    enum client_timer kind = c->tkind;
    c->tkind = CT_NONE;
    switch (kind) {
    case CT_LINGER: client_linger_read(c); return;
    case CT_SEND:
        /* The client stopped reading: nothing useful can be sent. */
        if (c->has_req && !c->r.finished)
            req_finish(c, c->r.status ? c->r.status : 499, OUTCOME_CLIENT_SEND_TIMEOUT);
        client_close(c);
        return;
    case CT_BODY:
        if (c->has_req && !c->r.finished && !c->r.req_body_done) {
            struct request *r = &c->r;
            if (r->state != R_STREAMING && !r->committed) {
                /* Nothing of a response has gone out: say why. */
                req_reply(c, 408, "request_timeout", "request body timed out", NULL, OUTCOME_CLIENT_BODY_TIMEOUT, true);
                return;
            }
            req_finish(c, r->status, OUTCOME_CLIENT_BODY_TIMEOUT);
            client_close(c);
            return;
        }
        client_timer_settle(c);
        return;
    case CT_HEADER:
        if (c->head_started && !c->has_req) {
            c->r.id[0] = '\0';
            c->r.client_minor = 1;
            client_reply_error(c, 408, "request_timeout", "request header timed out", NULL, true);
            c->close_after = true;
            client_flush(c);
            return;
        }
        client_close(c);
        return;
    case CT_IDLE:
        client_close(c); /* keep-alive idle */
        return;
    case CT_NONE: return;
    }
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
        client_timer_arm(c, CT_HEADER, px->cfg->timeouts.client_header_us);
    }
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
static void attempt_done(struct client *c, int outcome, uint64_t ttft_us)
{
    struct request *r = &c->r;
    if (r->attempt_recorded || !r->srv)
        return;
    r->attempt_recorded = true;
    upstream_attempt_done(r->srv, outcome, ttft_us, ev_now(c->px->loop));
}

static uint64_t attempt_ttft(const struct request *r)
{
    uint64_t t = r->t_first_body ? r->t_first_body : r->t_first_byte;
    return t && r->t_dispatch && t >= r->t_dispatch ? t - r->t_dispatch : 0;
}

/* Account for and log the current request, release its server slot and
 * admission state.  Runs once per request, and is where the request's one
 * outcome is decided.  The upstream connection must already be released
 * or closed by the caller. */
static void req_finish(struct client *c, int status, enum outcome o)
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
            attempt_done(c, outcome_outlier_class(o, status), attempt_ttft(r));
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
static void req_clear(struct client *c)
{
    struct request *r = &c->r;
    buf_release(&r->out);
    memset(r, 0, sizeof *r);
    c->has_req = false;
}

/* ---------------------------------------------------------------------- */
/* request head                                                            */

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
    ok &= out_add(b, m->method.p, m->method.len);
    ok &= out_adds(b, " ");
    ok &= out_add(b, path.p, path.len);
    if (query) {
        ok &= out_adds(b, "?");
        ok &= out_add(b, query, query_len);
    }
    ok &= out_adds(b, " HTTP/1.1\r\nHost: ");
    if (host.p && host.len)
        ok &= out_add(b, host.p, host.len);
    else
        ok &= out_adds(b, r->up->num_servers ? r->up->servers[0].name : "localhost");
    ok &= out_adds(b, "\r\n");
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
        if (proxy_named_in_connection(m, n))
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

static void upstream_fail(struct client *c, int status, const char *code, const char *msg, enum outcome o)
{
    struct request *r = &c->r;
    if (r->srv && !r->attempt_recorded)
        attempt_done(c, outcome_outlier_class(o, status), attempt_ttft(r));
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
        upstream_fail(c, 504, "upstream_connect_timeout", "upstream connect timed out",
                      OUTCOME_UPSTREAM_CONNECT_TIMEOUT);
    } else if (r->state == R_STREAMING) {
        upstream_fail(c, 504, "upstream_idle_timeout", "upstream stopped sending", OUTCOME_UPSTREAM_IDLE_TIMEOUT);
    } else {
        upstream_fail(c, 504, "upstream_timeout", "upstream did not answer in time", OUTCOME_UPSTREAM_TIMEOUT);
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

static const struct admit_driver_ops queue_ops = {
    .has_room = queue_has_room,
    .on_admit = queue_on_admit,
    .on_refuse = queue_on_refuse,
};

static void queue_arm(struct upstream *up)
{
    admit_driver_arm(driver_of(up));
}

static void pump_schedule(struct upstream *up)
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
        upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
                      OUTCOME_UPSTREAM_CONNECT_FAILED);
        return;
    }
    uconn_attach(c, u);
    if (ev_add(px->loop, u->fd, connected ? 0 : EV_WRITE, upstream_event, c) != RP_OK) {
        s->connect_errors++;
        upstream_fail(c, 502, "upstream_connect_failed", "cannot register upstream socket",
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
            upstream_fail(c, 502, "upstream_write_failed", "upstream connection failed", OUTCOME_UPSTREAM_WRITE_FAILED);
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
        if (h1_is_hop_by_hop(nm) || rp_strieq(nm.p, nm.len, "x-request-id") || proxy_named_in_connection(m, nm))
            continue;
        /* Framing is ours to write.  A 204 (and a 1xx) never carries a
         * Content-Length (RFC 9110 8.6); for HEAD and 304 the upstream's
         * value describes the representation and passes through. */
        if (rp_strieq(nm.p, nm.len, "content-length") && (r->resp_framing != H1_BODY_NONE || m->status == 204))
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
                upstream_fail(c, 502, "bad_upstream_response", "malformed chunked response",
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
                upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
                              OUTCOME_UPSTREAM_HEAD_TOO_LARGE);
            }
            return;
        }
        if (n < 0) {
            upstream_fail(c, 502, "bad_upstream_response", "malformed upstream response",
                          OUTCOME_BAD_UPSTREAM_RESPONSE);
            return;
        }
        if (m.status >= 100 && m.status < 200) {
            if (m.status == 101) {
                upstream_fail(c, 502, "bad_upstream_response", "unexpected protocol switch",
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
            attempt_done(c, OUTLIER_5XX, 0);
            /* A 503 before any byte went out: another server may serve it. */
            if (m.status == 503 && try_retry(c, RETRY_FAIL_STATUS_503, ADMIT_OVERLOADED))
                return;
            if (!r->u) {
                upstream_fail(c, 503, "upstream_unavailable", "upstream answered 503", OUTCOME_UPSTREAM_503);
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
            upstream_fail(c, 502, "bad_upstream_response", "upstream response head too large",
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
            upstream_fail(c, 502, "upstream_closed", "upstream closed mid-response", OUTCOME_UPSTREAM_CUT);
            return;
        }
        r->srv->connect_errors++;
        upstream_fail(c, 502, "upstream_closed", "upstream closed the connection before responding",
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
            upstream_fail(c, 502, "upstream_connect_failed", "cannot connect to the upstream server",
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

/* ---------------------------------------------------------------------- */
/* client side                                                             */

/* Write c->out; once it is empty, end the connection (close_after), let a
 * stalled upstream continue, or go on with the next pipelined request. */
static void client_flush(struct client *c)
{
    struct proxy *px = c->px;
    if (c->dead || c->lingering)
        return;
    bool wrote = false;
    while (!buf_empty(&c->out)) {
        ssize_t w = buf_write_fd(&c->out, c->fd);
        if (w == RP_AGAIN) {
            /* Blocked: the send bound runs from the last progress. */
            if (!c->out_blocked || wrote) {
                c->out_blocked = true;
                client_timer_arm(c, CT_SEND, px->cfg->timeouts.send_us);
            }
            client_update_events(c);
            return;
        }
        if (w < 0) {
            if (c->has_req && !c->r.finished) {
                px->client_aborts++;
                req_finish(c, c->r.status ? c->r.status : 499, OUTCOME_CLIENT_ABORT);
            }
            client_close(c);
            return;
        }
        wrote = true;
        if (c->has_req && c->r.state == R_STREAMING)
            c->r.committed = true;
    }
    c->out_blocked = false;
    if (c->close_after && !c->has_req) {
        client_linger(c);
        return;
    }
    /* Room again on c->out: let a stalled upstream continue. */
    if (c->has_req && c->r.state == R_STREAMING && c->r.u) {
        struct uconn *u = c->r.u;
        if (!buf_empty(&u->in)) {
            resp_pump(c);
            if (c->dead || !c->has_req || c->r.u != u) {
                /* The response completed (or failed) inside the pump;
                 * what it queued still has to go out. */
                if (!c->dead && !buf_empty(&c->out))
                    client_flush(c);
                else if (!c->dead && !c->has_req)
                    client_process(c);
                return;
            }
            if (!buf_empty(&c->out)) {
                client_flush(c);
                return;
            }
        }
        ev_mod(px->loop, u->fd, EV_READ);
    }
    client_timer_settle(c);
    if (!c->has_req && !c->close_after && c->in.start && !buf_empty(&c->in)) {
        /* A pipelined request waits in c->in: answer it now, whatever
         * answered the previous one (upstream or a local reply). */
        client_process(c);
        return;
    }
    client_trim(c);
    client_update_events(c);
}

static void client_read(struct client *c)
{
    struct proxy *px = c->px;
    if (c->lingering) {
        client_linger_read(c);
        return;
    }
    if (!c->in.start)
        buf_alloc(&c->in);
    ssize_t n = buf_read_fd(&c->in, c->fd);
    if (n == RP_AGAIN)
        return;
    if (n == 0 || n == RP_ERR) {
        if (c->has_req && !c->r.finished) {
            /* The client left with a request in flight: cancel upstream
             * work by closing its connection. */
            px->client_aborts++;
            req_finish(c, 499, OUTCOME_CLIENT_ABORT);
        }
        client_close(c);
        return;
    }
    client_process(c);
}

/* Parse the next request if none is active, or feed the active request's
 * body.  Re-entry (a local reply flushed from inside req_start) is turned
 * into another turn of the loop here, so a burst of pipelined requests
 * answered locally cannot grow the stack. */
static void client_process(struct client *c)
{
    if (c->processing) {
        c->process_again = true;
        return;
    }
    c->processing = true;
    do {
        c->process_again = false;
        client_process_one(c);
    } while (!c->dead && c->process_again);
    if (!c->dead)
        c->processing = false;
}

static void client_process_one(struct client *c)
{
    struct proxy *px = c->px;
    if (c->lingering)
        return;
    if (c->has_req) {
        struct request *r = &c->r;
        if (r->state == R_BUFFERING) {
            pump_request_body(c);
            if (!c->has_req || r->finished)
                return;
            if (r->req_body_done || buf_free_tail(&r->out) == 0)
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
    if (!c->in.start || buf_empty(&c->in)) {
        client_trim(c);
        client_update_events(c);
        return;
    }
    if (!buf_empty(&c->out)) {
        /* The previous response is still going out: parse the next
         * request once it has (client_flush comes back here), so
         * responses never overtake each other and memory stays bounded. */
        client_update_events(c);
        return;
    }
    if (!c->head_started) {
        c->head_started = true;
        client_timer_arm(c, CT_HEADER, px->cfg->timeouts.client_header_us);
    }
    /* Most heads arrive whole: parse on the stack, and keep the parser's
     * state only when the head is incomplete. */
    struct client_head local;
    struct h1_message *m = c->head ? &c->head->m : &local.m;
    if (!c->head)
        h1_message_init(m, local.hdrs, RP_MIN((size_t)CLIENT_HEAD_MAX_HEADERS, px->lim.max_headers + 1));
    int n = h1_parse_request(c->in.pos, buf_len(&c->in), m, &px->lim);
    if (n == RP_AGAIN) {
        if (buf_free_tail(&c->in) == 0) {
            if (c->in.pos != c->in.start) {
                buf_compact(&c->in); /* the bytes move: the next parse starts over */
            } else {
                m->error_status = 431;
                m->error = "request header section too large";
                n = RP_ERR;
            }
        }
        if (n == RP_AGAIN) {
            if (!c->head) {
                c->head = rp_xmalloc(sizeof *c->head);
                *c->head = local;
                c->head->m.headers = c->head->hdrs;
            }
            client_update_events(c);
            return;
        }
    }
    /* Whole or refused: copy what the rest reads out of the kept state,
     * which goes now (the header views point into c->in, not into it). */
    struct client_head *kept = c->head;
    c->head = NULL;
    if (kept) {
        local = *kept;
        local.m.headers = local.hdrs;
        m = &local.m;
        free(kept);
    }
    if (n < 0) {
        px->bad_requests++;
        c->has_req = true; /* for logging */
        c->head_started = false;
        memset(&c->r, 0, sizeof c->r);
        rp_snprintf(c->r.method, sizeof c->r.method, "-");
        rp_snprintf(c->r.path, sizeof c->r.path, "-");
        c->r.t_start = ev_now(px->loop);
        c->r.client_minor = 1;
        buf_reset(&c->in);
        int st = m->error_status ? m->error_status : 400;
        req_reply(c, st, "bad_request", m->error ? m->error : "malformed request", NULL, OUTCOME_BAD_REQUEST, true);
        return;
    }
    req_start(c, m, (size_t)n);
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

/* The labels of one server's series: {upstream="...",server="..."}. */
static const char *server_labels(struct sbuf *lb, const struct upstream *up, const struct server *s)
{
    sbuf_reset(lb);
    metrics_label(lb, "upstream", up->conf->name);
    metrics_label(lb, "server", s->name);
    return lb->data;
}

void proxy_metrics_render(struct sbuf *out, void *arg)
{
    struct proxy *px = arg;
    static const char *classes[CLASS_SLOTS] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
    struct sbuf lb;
    sbuf_init(&lb, 512);

    metrics_family(out, "rampart_requests_total", "counter", "Requests answered, by upstream and status class.");
    for (size_t i = 0; i <= px->cfg->num_upstreams; i++) {
        const char *name = i < px->cfg->num_upstreams ? px->cfg->upstreams[i].name : "none";
        for (int k = 0; k < CLASS_SLOTS; k++) {
            if (!px->requests[i][k])
                continue;
            sbuf_reset(&lb);
            metrics_label(&lb, "upstream", name);
            metrics_label(&lb, "class", classes[k]);
            metrics_sample_u64(out, "rampart_requests_total", lb.data, px->requests[i][k]);
        }
    }
    metrics_family(out, "rampart_inflight_requests", "gauge",
                   "Requests dispatched to an upstream server and not finished.");
    metrics_sample_u64(out, "rampart_inflight_requests", "", px->inflight);
    metrics_family(out, "rampart_client_connections", "gauge", "Open client connections.");
    metrics_sample_u64(out, "rampart_client_connections", "", px->num_clients);
    metrics_family(out, "rampart_client_aborts_total", "counter",
                   "Requests whose client went away before the response was complete.");
    metrics_sample_u64(out, "rampart_client_aborts_total", "", px->client_aborts);
    metrics_family(out, "rampart_bad_requests_total", "counter", "Client requests that could not be parsed.");
    metrics_sample_u64(out, "rampart_bad_requests_total", "", px->bad_requests);
    metrics_family(out, "rampart_client_connections_accepted_total", "counter", "Client connections accepted.");
    metrics_sample_u64(out, "rampart_client_connections_accepted_total", "", px->accepted);

    metrics_family(out, "rampart_upstream_connect_errors_total", "counter",
                   "Failed or timed-out connects to the server.");
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        for (size_t j = 0; j < up->num_servers; j++) {
            metrics_sample_u64(out, "rampart_upstream_connect_errors_total", server_labels(&lb, up, &up->servers[j]),
                               up->servers[j].connect_errors);
        }
    }
    metrics_family(out, "rampart_upstream_inflight", "gauge", "Requests dispatched to the server and not finished.");
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        for (size_t j = 0; j < up->num_servers; j++) {
            metrics_sample_u64(out, "rampart_upstream_inflight", server_labels(&lb, up, &up->servers[j]),
                               up->servers[j].inflight);
        }
    }
    /* The per-server histogram has its own name: one name with and without
     * a server label would be two families under one TYPE. */
    metrics_family(out, "rampart_upstream_first_byte_seconds", "histogram",
                   "Time from dispatching a request to the server to the first byte of its response.");
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        for (size_t j = 0; j < up->num_servers; j++) {
            metrics_hist_render(out, "rampart_upstream_first_byte_seconds", server_labels(&lb, up, &up->servers[j]),
                                &up->servers[j].ttfb);
        }
    }
    metrics_family(out, "rampart_first_byte_seconds", "histogram",
                   "Time from dispatching a request upstream to the first byte of its response.");
    metrics_hist_render(out, "rampart_first_byte_seconds", "", &px->ttfb);
    metrics_family(out, "rampart_request_duration_seconds", "histogram",
                   "Time from receiving a request to the end of its response.");
    metrics_hist_render(out, "rampart_request_duration_seconds", "", &px->total);
    sbuf_free(&lb);
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
    /* The tick may have raised limits (and health may have changed):
     * hand the new room to waiters. */
    for (size_t i = 0; i < px->ups->num; i++)
        pump_schedule(&px->ups->ups[i]);
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
    /* A canonical path is never longer than its target. */
    px->path_cap = cfg->limits.max_uri + 1;
    px->path_buf = rp_xmalloc(px->path_cap);
    px->ups = upstream_set_create(loop, cfg);
    px->drivers = rp_xcalloc(px->ups->num ? px->ups->num : 1, sizeof *px->drivers);
    admit_metrics_init(&px->admit);
    for (size_t i = 0; i < px->ups->num; i++) {
        struct upstream *up = &px->ups->ups[i];
        RP_ASSERT(up->index == (int)i);
        up->owner = px;
        admit_driver_init(&px->drivers[i], loop, &up->queue, &queue_ops, up);
        /* In creation order: the series are listed as they always were. */
        for (size_t j = 0; j < up->num_servers; j++)
            admit_metrics_add_limiter(&px->admit, &up->servers[j].lim);
        admit_metrics_add_queue(&px->admit, &up->queue);
    }
    px->tenants = tenant_table_new(&cfg->tenants, NULL);
    ev_timer_arm(loop, &px->flush_timer, 500000);
    ev_timer_arm(loop, &px->tick_timer, 100000);
    return px;
}

int proxy_listen(struct proxy *px, int fd, const char *name)
{
    RP_ASSERT(px->num_lfds < RP_ARRAY_LEN(px->lfds));
    if (px->num_lfds >= RP_ARRAY_LEN(px->lfds) || ev_add(px->loop, fd, EV_READ, accept_event, px) != RP_OK) {
        rp_log_errno(errno, "cannot watch listener %s", name);
        close(fd);
        return RP_ERR;
    }
    px->lfds[px->num_lfds++] = fd;
    return RP_OK;
}

void proxy_register_metrics(struct proxy *px)
{
    metrics_register(proxy_metrics_render, px);
    admit_metrics_register(&px->admit);
    metrics_register(tenant_metrics_render, px->tenants);
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

void proxy_set_status(struct proxy *px, struct status *st)
{
    px->status = st;
}

struct upstream_set *proxy_upstreams(const struct proxy *px)
{
    return px->ups;
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
    /* After the clients: closing one gives its slot back and schedules
     * the pump.  Before the queues go with the upstream set. */
    for (size_t i = 0; px->drivers && i < px->ups->num; i++)
        admit_driver_stop(&px->drivers[i]);
    free(px->drivers);
    upstream_set_free(px->ups);
    tenant_table_free(px->tenants);
    free(px->path_buf);
    free(px);
}

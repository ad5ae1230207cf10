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
 *
 * This file holds the connection's lifetime (timers, lingering close,
 * close and reap), the client side (flush, the parse loop, events,
 * accept), the proxy's lifecycle and its metrics.  The request itself
 * lives in proxy_request.c, admission and the upstream side in
 * proxy_forward.c; proxy_int.h is what they share.
 */
#include "proxy.h"
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
#include "h1.h"
#include "metrics.h"
#include "net.h"
#include "tenant.h"
#include "util.h"

static void client_event(struct ev_loop *loop, int fd, uint32_t events, void *arg);
static void client_process(struct client *c);
static void client_process_one(struct client *c);

/* ---------------------------------------------------------------------- */
/* connection lifetime                                                     */

void client_timer_arm(struct client *c, enum client_timer kind, uint64_t us)
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
void client_timer_settle(struct client *c)
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
void client_update_events(struct client *c)
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
/* client side                                                             */

/* Write c->out; once it is empty, end the connection (close_after), let a
 * stalled upstream continue, or go on with the next pipelined request. */
void client_flush(struct client *c)
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
        admit_driver_init(&px->drivers[i], loop, &up->queue, &proxy_queue_ops, up);
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

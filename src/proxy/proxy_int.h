/*
 * proxy_int.h — private to the proxy's files (proxy.c, proxy_request.c,
 * proxy_forward.c): the client connection, its request and the proxy
 * itself, and the functions those files call across each other.
 *
 * The client session is one state machine cut into files by concern:
 *   proxy.c          connection lifetime (timers, lingering close, close
 *                    and reap), the client side (flush, parse loop,
 *                    events, accept), lifecycle and the proxy's metrics
 *   proxy_request.c  local replies, the request head and body, and how a
 *                    request ends (req_finish, req_clear)
 *   proxy_forward.c  admission, server choice, retries, dispatch, and the
 *                    response side (head, streaming, upstream failures)
 */
#ifndef RP_PROXY_INT_H
#define RP_PROXY_INT_H

#include "proxy.h"
#include "proxy_util.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admit.h"
#include "admit_driver.h"
#include "buf.h"
#include "h1.h"
#include "llmreq.h"
#include "metrics.h"
#include "outcome.h"
#include "quota.h"
#include "tenant.h"

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

/* proxy.c: connection lifetime and the client side */
void client_timer_arm(struct client *c, enum client_timer kind, uint64_t us);
void client_timer_settle(struct client *c);
void client_update_events(struct client *c);
void client_flush(struct client *c);

/* proxy_request.c: local replies, request head and body, completion */
void client_reply_error(struct client *c, int status, const char *code, const char *message, const char *extra_headers,
                        bool close);
void req_reply(struct client *c, int status, const char *code, const char *msg, const char *extra_headers,
               enum outcome o, bool close);
void req_attempt_done(struct client *c, int outcome, uint64_t ttft_us);
uint64_t req_attempt_ttft(const struct request *r);
void req_finish(struct client *c, int status, enum outcome o);
void req_clear(struct client *c);
bool req_out_add(struct buf *b, const char *p, size_t n);
bool req_out_adds(struct buf *b, const char *s);
void req_start(struct client *c, const struct h1_message *m, size_t n);
void pump_request_body(struct client *c);
void req_send(struct client *c);

/* proxy_forward.c: admission, dispatch, the response side */
extern const struct admit_driver_ops proxy_queue_ops;
void proxy_upstream_fail(struct client *c, int status, const char *code, const char *msg, enum outcome o);
void req_admit(struct client *c);
void queue_arm(struct upstream *up);
void pump_schedule(struct upstream *up);
void resp_pump(struct client *c);

#endif

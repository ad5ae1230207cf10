/*
 * llmsim.h — the parts of llmsim shared by its files.
 *
 * llmsim is an OpenAI-compatible model server simulator that behaves like a
 * continuous-batching GPU server under load (docs/llmsim.md).  Its files:
 *
 *   llmsim_model.c   the capacity model: slots, FIFO, prefill, the batch
 *                    tick that emits one token per decoding sequence, aborts
 *                    and injected faults (seq_*)
 *   llmsim_server.c  HTTP/1.1 serving on the event loop: accept, request
 *                    parsing, keep-alive, lingering close, response framing
 *                    (conn_*)
 *   llmsim_api.c     the endpoints: chat completions, models, health, and
 *                    the /sim/stats and /sim/config control API (api_*)
 *   llmsim_main.c    command line and start-up
 *
 * One process, one loop, one global state (sim): the simulator is a
 * program, not a library, and every file works on the same engine.
 */
#ifndef LLMSIM_H
#define LLMSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ev.h"
#include "h1.h"

#define SIM_MAX_BODY (1u << 20)        /* request body bound -> 413 */
#define SIM_MAX_OUT_BACKLOG (4u << 20) /* unread stream bytes before we give up on a client */
#define SIM_MAX_TOKENS 65536           /* max_tokens bound -> 400 */
#define SIM_MAX_SLOTS 100000
#define SIM_VERSION_MAX 64
#define SIM_MODEL_MAX 128
#define SIM_TARGET_MAX 2048
#define SIM_HEADERS 64
#define SIM_REQ_TIMEOUT_US (30u * 1000000u) /* a started request head/body must arrive in this time */
#define SIM_LINGER_US (2u * 1000000u)       /* drain unread input after our FIN */
#define SIM_ACCEPT_BATCH 64
#define SIM_MAX_FDS 1000000 /* bound of the loop's fd table */

/* ------------------------------------------------------------------ */
/* configuration and counters                                          */

struct sim_cfg {
    int slots;
    double prefill_base_ms;
    double prefill_per_token_us;
    double token_ms;
    double batch_slowdown;
    int default_tokens;
    double default_spread;
    double error_rate;
    double added_latency_ms;
    bool bad_release;
    double bad_error_rate;
    double bad_token_slowdown;
    bool health_fail;
    bool no_abort;
    bool late_headers;
    double keepalive_s;
    char version[SIM_VERSION_MAX + 1];
    char model[SIM_MODEL_MAX + 1];
};

struct sim_stats {
    uint64_t tokens_generated;
    uint64_t tokens_wasted;
    uint64_t tokens_after_disconnect;
    uint64_t requests_received; /* chat completions parsed */
    uint64_t requests_served;   /* chat completions delivered whole */
    uint64_t requests_aborted;  /* client left before the end */
    uint64_t requests_failed;   /* injected 500s */
    uint64_t requests_rejected; /* 4xx answers, any endpoint */
    uint64_t connections_accepted;
    uint64_t max_queue_len;
    long connections_open;
};

enum seq_state { SEQ_DELAY, SEQ_QUEUED, SEQ_PREFILL, SEQ_DECODE };

struct conn;

/* One chat completion in the engine. */
struct seq {
    struct conn *c; /* NULL once the client left (--no-abort) */
    enum seq_state state;
    struct ev_timer timer;   /* added latency, then prefill */
    struct seq *prev, *next; /* queue or running list */
    uint64_t id;
    int64_t created; /* wall seconds, for the JSON */
    int prompt_tokens;
    int target_tokens;
    int generated;
    bool stream;
    bool include_usage;
    bool finish_length; /* max_tokens reached (else "stop") */
    bool headers_sent;
    char model_json[6 * SIM_MODEL_MAX + 1]; /* JSON-escaped model name (\u00XX worst case) */
};

struct seq_list {
    struct seq *head, *tail;
    size_t len;
};

enum conn_state { CS_HEAD, CS_BODY, CS_BUSY, CS_LINGER };

/* One client connection: HTTP/1.1 keep-alive, one request at a time;
 * pipelined bytes wait in the input buffer. */
struct conn {
    int fd;
    enum conn_state state;
    struct buf in;
    const char *parse_pos; /* in.pos at the last parse call (for incremental parsing) */
    struct h1_message msg;
    struct h1_header hdrs[SIM_HEADERS];
    struct sbuf out;
    size_t out_off; /* bytes of out already written */
    struct sbuf body;
    struct h1_chunked chunked;
    bool body_chunked;
    uint64_t body_left;
    bool body_too_big;
    bool expect_continue;
    char method[16];
    char target[SIM_TARGET_MAX + 1];
    bool keep_alive; /* this response may leave the connection open */
    bool http10;
    bool resp_complete; /* the whole response is in out */
    bool close_after;   /* close once out is flushed */
    bool chunked_resp;  /* streaming body uses chunked coding */
    bool broken;        /* a write failed or the client stopped reading */
    struct seq *seq;
    struct ev_timer timer; /* idle / request / linger timeout */
};

struct sim_state {
    struct ev_loop *loop;
    int lfd;
    int sfd;
    struct sim_cfg cfg;
    struct sim_stats st;
    struct seq_list queue;   /* waiting for a slot, FIFO, unbounded */
    struct seq_list running; /* prefilling or decoding */
    size_t decoding;
    struct ev_timer tick; /* the engine step */
    struct ev_timer accept_pause;
    uint64_t next_id;
    uint64_t started_us;
    int64_t started_wall_s;
    struct sbuf scratch; /* one response body at a time */
};

extern struct sim_state sim;

/* ---- llmsim_model.c: the capacity model ---- */

/* Per-sequence token interval for the current batch (microseconds). */
uint64_t seq_token_interval_us(void);
/* Service time of one request at a full batch, the figure capacity
 * (slots / service time) is computed from (milliseconds). */
double seq_service_ms_estimate(int out_tokens, int prompt_tokens);
/* A filled-in sequence (c, id, tokens, stream flags, model) enters the
 * engine: the added latency first, then the fault decision and the queue.
 * May answer c at once (an injected 500); the caller drives c. */
void seq_submit(struct seq *s);
/* The client of s left: free its place in the queue or its slot (unless
 * --no-abort keeps it running for nobody). */
void seq_abort(struct seq *s);
/* Move queued sequences into free slots, oldest first. */
void seq_sched_fill(void);
/* The engine step timer (sim.tick). */
void seq_tick_cb(struct ev_loop *loop, struct ev_timer *t, void *arg);

/* ---- llmsim_server.c: HTTP/1.1 on the event loop ---- */

/* Write what the socket takes.  Never frees c: a failure marks it broken. */
void conn_flush(struct conn *c);
void conn_update_mask(struct conn *c);
/* Move c forward as far as its input and output allow.  May free c. */
void conn_drive(struct conn *c);
/* The head of a streamed body (chunked on 1.1, close-delimited on 1.0). */
void conn_put_stream_head(struct conn *c, int status, const char *ctype);
/* One SSE event "data: <payload>\n\n", framed as one chunk when chunked. */
void conn_put_event(struct conn *c, const char *payload, size_t len);
/* A whole response with a body; extra: complete header lines or NULL. */
void conn_send_whole(struct conn *c, int status, const char *ctype, const char *body, size_t len, const char *extra);
void conn_send_json(struct conn *c, int status, const struct sbuf *json, const char *extra);
/* An OpenAI error object (reply.h); param and code NULL are JSON null. */
void conn_send_error(struct conn *c, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));
/* The listening socket's callback, and its resumption after EMFILE. */
void conn_listen_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg);
void conn_accept_resume_cb(struct ev_loop *loop, struct ev_timer *t, void *arg);

/* ---- llmsim_api.c: endpoints ---- */

/* Route one complete request (method, target and body are in c). */
void api_dispatch(struct conn *c);
/* A version label goes into a response header and JSON unescaped, so it is
 * restricted to a safe alphabet: [A-Za-z0-9._:+-], 1..SIM_VERSION_MAX. */
bool api_version_ok(const char *v);

#endif

/*
 * llmsim — an OpenAI-compatible model server simulator that behaves like a
 * continuous-batching GPU server under load.
 *
 * Why it exists: every overload, fairness and release-safety feature of the
 * gateway is judged against a backend, and a backend that answers in a
 * constant time hides exactly the behaviour those features exist for.  Real
 * model servers (vLLM, TGI) run a fixed number of sequences at once, queue
 * everything else in an unbounded FIFO, slow every sequence down as the
 * batch fills, and keep burning GPU time for clients that already left
 * unless they notice the disconnect.  llmsim reproduces those properties
 * with a small, documented capacity model (docs/llmsim.md):
 *
 *   slots          S sequences run at once; the rest wait in a FIFO
 *   prefill        base_ms + per_token_us * prompt_tokens / 1000   (ms)
 *   token interval token_ms * (1 + batch_slowdown * (busy-1)/(S-1))
 *                  (* bad_release.token_slowdown while a bad release is on)
 *   output length  max_tokens, else uniform default_tokens * (1 +- spread)
 *
 * Structure: one epoll loop (ev.c), one struct conn per client connection
 * (HTTP/1.1 keep-alive, one request at a time, pipelined bytes wait in the
 * input buffer), and one struct seq per chat completion.  A seq is first
 * delayed (added latency), then queued, then prefilled (its own one-shot
 * timer), then decoded.  Decoding is driven by a single batch tick timer:
 * each tick every decoding sequence emits one token, exactly like an
 * engine step of a continuous-batching server, so thousands of streams
 * cost one timer and a list walk, not thousands of timers.
 *
 * Disconnects: the connection keeps EV_READ armed while a request runs, so
 * an EOF (client closed the tab) is seen at once; the seq is then aborted
 * and its slot freed, or, with --no-abort, it runs to the end with nobody
 * listening.  Token-path code never frees a connection: a failed write only
 * marks it broken and lets the I/O callback clean up, which keeps the batch
 * walk free of use-after-free hazards.
 *
 * Left out on purpose: TLS, HTTP/2, real tokenisation (prompt tokens are
 * estimated as characters/4), n > 1 choices, tool calls.
 */
#include "buf.h"
#include "ev.h"
#include "h1.h"
#include "net.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SIM_MAX_BODY        (1u << 20)  /* request body bound -> 413 */
#define SIM_MAX_OUT_BACKLOG (4u << 20)  /* unread stream bytes before we give up on a client */
#define SIM_MAX_TOKENS      65536       /* max_tokens bound -> 400 */
#define SIM_MAX_SLOTS       100000
#define SIM_VERSION_MAX     64
#define SIM_MODEL_MAX       128
#define SIM_TARGET_MAX      2048
#define SIM_HEADERS         64
#define SIM_REQ_TIMEOUT_US  (30u * 1000000u) /* a started request head/body must arrive in this time */
#define SIM_LINGER_US       (2u * 1000000u)  /* drain unread input after our FIN */
#define SIM_ACCEPT_BATCH    64

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
    uint64_t requests_received;   /* chat completions parsed */
    uint64_t requests_served;     /* chat completions delivered whole */
    uint64_t requests_aborted;    /* client left before the end */
    uint64_t requests_failed;     /* injected 500s */
    uint64_t requests_rejected;   /* 4xx answers, any endpoint */
    uint64_t connections_accepted;
    uint64_t max_queue_len;
    long connections_open;
};

enum seq_state { SEQ_DELAY, SEQ_QUEUED, SEQ_PREFILL, SEQ_DECODE };

struct conn;

struct seq {
    struct conn *c;           /* NULL once the client left (--no-abort) */
    enum seq_state state;
    struct ev_timer timer;    /* added latency, then prefill */
    struct seq *prev, *next;  /* queue or running list */
    uint64_t id;
    int64_t created;          /* wall seconds, for the JSON */
    int prompt_tokens;
    int target_tokens;
    int generated;
    bool stream;
    bool include_usage;
    bool finish_length;       /* max_tokens reached (else "stop") */
    bool headers_sent;
    char model_json[6 * SIM_MODEL_MAX + 1]; /* JSON-escaped model name (\u00XX worst case) */
};

struct seq_list {
    struct seq *head, *tail;
    size_t len;
};

enum conn_state { CS_HEAD, CS_BODY, CS_BUSY, CS_LINGER };

struct conn {
    int fd;
    enum conn_state state;
    struct buf in;
    const char *parse_pos;    /* in.pos at the last parse call (for incremental parsing) */
    struct h1_message msg;
    struct h1_header hdrs[SIM_HEADERS];
    struct sbuf out;
    size_t out_off;           /* bytes of out already written */
    struct sbuf body;
    struct h1_chunked chunked;
    bool body_chunked;
    uint64_t body_left;
    bool body_too_big;
    bool expect_continue;
    char method[16];
    char target[SIM_TARGET_MAX + 1];
    bool keep_alive;          /* this response may leave the connection open */
    bool http10;
    bool resp_complete;       /* the whole response is in out */
    bool close_after;         /* close once out is flushed */
    bool chunked_resp;        /* streaming body uses chunked coding */
    bool broken;              /* a write failed or the client stopped reading */
    struct seq *seq;
    struct ev_timer timer;    /* idle / request / linger timeout */
};

static struct {
    struct ev_loop *loop;
    int lfd;
    int sfd;
    struct sim_cfg cfg;
    struct sim_stats st;
    struct seq_list queue;    /* waiting for a slot, FIFO, unbounded */
    struct seq_list running;  /* prefilling or decoding */
    size_t decoding;
    struct ev_timer tick;     /* the engine step */
    struct ev_timer accept_pause;
    uint64_t next_id;
    uint64_t started_us;
    int64_t started_wall_s;
    struct sbuf scratch;
} sim;

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static void list_push(struct seq_list *l, struct seq *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->len++;
}

static void list_remove(struct seq_list *l, struct seq *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
    l->len--;
}

static struct seq *list_pop(struct seq_list *l)
{
    struct seq *s = l->head;
    if (s)
        list_remove(l, s);
    return s;
}

/* A version label goes into a response header and JSON unescaped, so it is
 * restricted to a safe alphabet. */
static bool version_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > SIM_VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '-' || ch == '_' || ch == '+' || ch == ':';
        if (!ok)
            return false;
    }
    return true;
}

static double effective_error_rate(void)
{
    double r = sim.cfg.error_rate;
    if (sim.cfg.bad_release && sim.cfg.bad_error_rate > r)
        r = sim.cfg.bad_error_rate;
    return r;
}

/* Per-sequence token interval for the current batch (microseconds). */
static uint64_t token_interval_us(void)
{
    double busy = (double)sim.running.len;
    double denom = sim.cfg.slots > 1 ? (double)(sim.cfg.slots - 1) : 1.0;
    double load = busy > 1 ? (busy - 1) / denom : 0.0;
    double ms = sim.cfg.token_ms * (1.0 + sim.cfg.batch_slowdown * load);
    if (sim.cfg.bad_release)
        ms *= sim.cfg.bad_token_slowdown;
    return (uint64_t)(ms * 1000.0);
}

static uint64_t prefill_us(int prompt_tokens)
{
    double ms = sim.cfg.prefill_base_ms + sim.cfg.prefill_per_token_us * prompt_tokens / 1000.0;
    return (uint64_t)(ms * 1000.0);
}

/* Service time of one default-sized request at a full batch, the figure
 * that capacity (slots / service time) is computed from. */
static double service_ms_estimate(int out_tokens, int prompt_tokens)
{
    double step = sim.cfg.token_ms * (1.0 + sim.cfg.batch_slowdown);
    if (sim.cfg.slots <= 1)
        step = sim.cfg.token_ms;
    return (double)prefill_us(prompt_tokens) / 1000.0 + (out_tokens > 1 ? out_tokens - 1 : 0) * step;
}

static const char *const sim_words[] = {
    "the",    "model",  "answers", "with",   "a",       "steady", "stream", "of",
    "plain",  "words",  "so",      "that",   "every",   "token",  "is",     "easy",
    "to",     "count",  "and",     "each",   "chunk",   "carries","one",    "word",
    "while",  "the",    "batch",   "fills",  "up",      "slowly", "under",  "load",
    "gateway","queue",  "slot",    "latency","budget",  "tenant", "stream", "reply",
};

static const char *next_word(void)
{
    return sim_words[rp_rand64() % RP_ARRAY_LEN(sim_words)];
}

/* ------------------------------------------------------------------ */
/* connection output                                                   */

static void conn_drive(struct conn *c);
static void conn_free(struct conn *c);
static void handle_health(struct conn *c);
static void handle_config_get(struct conn *c);
static void seq_abort(struct seq *s);
static void sched_fill(void);

static size_t out_pending(const struct conn *c)
{
    return c->out.len - c->out_off;
}

/* Write what we can.  Never frees c: a failure marks it broken and shuts
 * the socket down so epoll reports it and the I/O callback cleans up. */
static void conn_flush(struct conn *c)
{
    if (c->broken)
        return;
    while (out_pending(c) > 0) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, out_pending(c), MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    if (out_pending(c) == 0) {
        /* Keep the builder's memory for the next response unless a large
         * non-streaming answer inflated it. */
        if (c->out.cap > 64 * 1024)
            sbuf_free(&c->out);
        else
            sbuf_reset(&c->out);
        c->out_off = 0;
    } else if (out_pending(c) > SIM_MAX_OUT_BACKLOG) {
        /* A client that stopped reading is treated as gone, as a server
         * with a bounded send queue would. */
        c->broken = true;
        shutdown(c->fd, SHUT_RDWR);
    }
}

static void conn_update_mask(struct conn *c)
{
    uint32_t mask = 0;
    if (c->state != CS_BUSY || buf_free_tail(&c->in) > 0 || c->in.pos != c->in.start)
        mask |= EV_READ;
    if (out_pending(c) > 0)
        mask |= EV_WRITE;
    ev_mod(sim.loop, c->fd, mask);
}

/* Response head.  content_length < 0: a streamed body (chunked on 1.1,
 * close-delimited on 1.0). */
static void put_head(struct conn *c, int status, const char *ctype, long long content_length,
                     const char *extra)
{
    struct sbuf *o = &c->out;
    if (content_length < 0) {
        c->chunked_resp = !c->http10;
        if (c->http10)
            c->keep_alive = false;
    }
    if (!c->keep_alive)
        c->close_after = true;
    sbuf_printf(o, "HTTP/1.1 %d %s\r\n", status, h1_reason(status));
    sbuf_adds(o, "server: llmsim\r\n");
    sbuf_printf(o, "x-llmsim-version: %s\r\n", sim.cfg.version);
    sbuf_printf(o, "content-type: %s\r\n", ctype);
    if (content_length >= 0)
        sbuf_printf(o, "content-length: %lld\r\n", content_length);
    else {
        sbuf_adds(o, "cache-control: no-cache\r\n");
        if (c->chunked_resp)
            sbuf_adds(o, "transfer-encoding: chunked\r\n");
    }
    if (extra)
        sbuf_adds(o, extra);
    sbuf_adds(o, c->keep_alive ? (c->http10 ? "connection: keep-alive\r\n" : "") : "connection: close\r\n");
    sbuf_adds(o, "\r\n");
}

/* A whole response with a body. */
static void send_whole(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                       const char *extra)
{
    put_head(c, status, ctype, (long long)len, extra);
    sbuf_add(&c->out, body, len);
    c->resp_complete = true;
    if (status >= 400 && status < 500)
        sim.st.requests_rejected++;
}

static void send_json(struct conn *c, int status, struct sbuf *json, const char *extra)
{
    send_whole(c, status, "application/json", json->data ? json->data : "", json->len, extra);
}

/* OpenAI error shape: {"error":{"message","type","param","code"}}. */
static void send_error(struct conn *c, int status, const char *type, const char *param, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(struct conn *c, int status, const char *type, const char *param, const char *code,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    sbuf_adds(j, "{\"error\":{\"message\":\"");
    sbuf_json_str(j, msg, strlen(msg));
    sbuf_printf(j, "\",\"type\":\"%s\",\"param\":", type);
    if (param) {
        sbuf_adds(j, "\"");
        sbuf_json_str(j, param, strlen(param));
        sbuf_adds(j, "\"");
    } else {
        sbuf_adds(j, "null");
    }
    sbuf_adds(j, ",\"code\":");
    if (code)
        sbuf_printf(j, "\"%s\"", code);
    else
        sbuf_adds(j, "null");
    sbuf_adds(j, "}}");
    send_json(c, status, j, NULL);
}

/* One SSE event "data: <payload>\n\n", framed as one chunk when chunked. */
static void put_event(struct conn *c, const char *payload, size_t len)
{
    size_t ev_len = 6 + len + 2;
    if (c->chunked_resp)
        sbuf_printf(&c->out, "%zx\r\n", ev_len);
    sbuf_add(&c->out, "data: ", 6);
    sbuf_add(&c->out, payload, len);
    sbuf_add(&c->out, "\n\n", 2);
    if (c->chunked_resp)
        sbuf_add(&c->out, "\r\n", 2);
}

/* ------------------------------------------------------------------ */
/* sequences: the capacity model                                       */

static void seq_chunk_prefix(struct sbuf *j, const struct seq *s)
{
    sbuf_printf(j,
                "{\"id\":\"chatcmpl-%016llx\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                "\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":",
                (unsigned long long)s->id, (long long)s->created, s->model_json, sim.cfg.version);
}

static void seq_send_stream_head(struct seq *s)
{
    put_head(s->c, 200, "text/event-stream", -1, NULL);
    s->headers_sent = true;
}

static void seq_put_delta(struct seq *s, const char *delta_json, const char *finish)
{
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    seq_chunk_prefix(j, s);
    sbuf_printf(j, "[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":%s}]", delta_json, finish);
    if (s->include_usage)
        sbuf_adds(j, ",\"usage\":null");
    sbuf_adds(j, "}");
    put_event(s->c, j->data, j->len);
}

static void seq_free(struct seq *s)
{
    ev_timer_cancel(sim.loop, &s->timer);
    free(s);
}

/* Leave the running list (slot freed) and let queued work in. */
static void seq_release_slot(struct seq *s)
{
    if (s->state == SEQ_DECODE)
        sim.decoding--;
    list_remove(&sim.running, s);
}

/* The sequence produced its last token: deliver the ending and free it. */
static void seq_finish(struct seq *s)
{
    struct conn *c = s->c;
    seq_release_slot(s);
    if (!c) {
        seq_free(s);
        sched_fill();
        return;
    }
    const char *finish = s->finish_length ? "\"length\"" : "\"stop\"";
    int total = s->prompt_tokens + s->generated;
    if (s->stream) {
        seq_put_delta(s, "{}", finish);
        if (s->include_usage) {
            struct sbuf *j = &sim.scratch;
            sbuf_reset(j);
            seq_chunk_prefix(j, s);
            sbuf_printf(j, "[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}",
                        s->prompt_tokens, s->generated, total);
            put_event(c, j->data, j->len);
        }
        put_event(c, "[DONE]", 6);
        if (c->chunked_resp)
            sbuf_add(&c->out, "0\r\n\r\n", 5);
        c->resp_complete = true;
    } else {
        struct sbuf j;
        sbuf_init(&j, 0);
        sbuf_printf(&j,
                    "{\"id\":\"chatcmpl-%016llx\",\"object\":\"chat.completion\",\"created\":%lld,"
                    "\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":[{\"index\":0,"
                    "\"message\":{\"role\":\"assistant\",\"content\":\"",
                    (unsigned long long)s->id, (long long)s->created, s->model_json, sim.cfg.version);
        for (int i = 0; i < s->generated; i++) {
            sbuf_adds(&j, next_word());
            sbuf_adds(&j, " ");
        }
        sbuf_printf(&j,
                    "\"},\"logprobs\":null,\"finish_reason\":%s}],"
                    "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}",
                    finish, s->prompt_tokens, s->generated, total);
        send_json(c, 200, &j, NULL);
        sbuf_free(&j);
    }
    sim.st.requests_served++;
    c->seq = NULL;
    seq_free(s);
    sched_fill();
    conn_drive(c); /* may free c; nothing below touches it */
}

/* One token for s.  Returns false when s is gone (finished). */
static bool seq_emit_token(struct seq *s)
{
    s->generated++;
    sim.st.tokens_generated++;
    if (!s->c) {
        sim.st.tokens_wasted++;
        sim.st.tokens_after_disconnect++;
    } else if (s->stream) {
        if (!s->headers_sent)
            seq_send_stream_head(s);
        if (s->generated == 1)
            seq_put_delta(s, "{\"role\":\"assistant\",\"content\":\"\"}", "null");
        char delta[64];
        rp_snprintf(delta, sizeof delta, "{\"content\":\"%s \"}", next_word());
        seq_put_delta(s, delta, "null");
    }
    if (s->generated >= s->target_tokens) {
        seq_finish(s);
        return false;
    }
    if (s->c && s->stream) {
        conn_flush(s->c);
        if (!s->c->broken)
            conn_update_mask(s->c); /* wait for EV_WRITE if the socket is full */
    }
    return true;
}

static void tick_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(arg);
    uint64_t planned = t->when_us;
    struct seq *s = sim.running.head;
    while (s) {
        /* seq_finish may append newly admitted sequences at the tail (they
         * are prefilling and skipped) but never frees another sequence. */
        struct seq *next = s->next;
        if (s->state == SEQ_DECODE)
            seq_emit_token(s);
        s = next;
    }
    if (sim.decoding > 0) {
        /* Keep the step cadence independent of how long the walk took, but
         * never fire a burst of catch-up steps after a stall. */
        uint64_t now = ev_now(loop), when = planned + token_interval_us();
        ev_timer_arm_at(loop, &sim.tick, when > now ? when : now);
    }
}

static void prefill_done_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct seq *s = arg;
    s->state = SEQ_DECODE;
    sim.decoding++;
    /* The first token comes out of the prefill step itself. */
    if (!seq_emit_token(s))
        return;
    if (!ev_timer_armed(&sim.tick))
        ev_timer_arm(loop, &sim.tick, token_interval_us());
}

static void seq_start(struct seq *s)
{
    s->state = SEQ_PREFILL;
    list_push(&sim.running, s);
    ev_timer_init(&s->timer, prefill_done_cb, s);
    ev_timer_arm(sim.loop, &s->timer, prefill_us(s->prompt_tokens));
}

/* Move queued sequences into free slots, oldest first. */
static void sched_fill(void)
{
    while ((int)sim.running.len < sim.cfg.slots && sim.queue.len > 0)
        seq_start(list_pop(&sim.queue));
}

/* After the added latency: fail (fault injection) or enter the engine.
 * from_timer: called from the latency timer, so the connection must be
 * driven here; otherwise the caller (request dispatch) drives it. */
static void seq_admit(struct seq *s, bool from_timer)
{
    struct conn *c = s->c;
    if (effective_error_rate() > 0 && rp_rand01() < effective_error_rate()) {
        sim.st.requests_failed++;
        seq_free(s);
        if (!c)
            return; /* --no-abort: the client left during the added latency */
        c->seq = NULL;
        send_error(c, 500, "server_error", NULL, "llmsim_injected_fault",
                   "The server had an error while processing your request (injected by llmsim).");
        if (from_timer)
            conn_drive(c); /* may free c */
        return;
    }
    /* Like an ASGI server, a streaming answer's head leaves at once; the
     * wait for a slot is then only visible as time to first token. */
    if (c && s->stream && !sim.cfg.late_headers) {
        seq_send_stream_head(s);
        conn_flush(c);
    }
    s->state = SEQ_QUEUED;
    list_push(&sim.queue, s);
    sched_fill();
    if (sim.queue.len > sim.st.max_queue_len)
        sim.st.max_queue_len = sim.queue.len;
    if (c && !c->broken)
        conn_update_mask(c);
}

static void delay_done_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    seq_admit(arg, true);
}

/* The client left while s was in progress. */
static void seq_abort(struct seq *s)
{
    s->c = NULL;
    sim.st.requests_aborted++;
    /* Everything generated for an answer that will never arrive whole is
     * wasted work. */
    sim.st.tokens_wasted += (uint64_t)s->generated;
    /* A server that does not watch its clients runs everything it has
     * accepted, queued or not, to the end for nobody. */
    if (sim.cfg.no_abort)
        return;
    switch (s->state) {
    case SEQ_DELAY:
        seq_free(s);
        return;
    case SEQ_QUEUED:
        list_remove(&sim.queue, s);
        seq_free(s);
        return;
    case SEQ_PREFILL:
    case SEQ_DECODE:
        seq_release_slot(s);
        seq_free(s);
        sched_fill();
        return;
    }
}

/* ------------------------------------------------------------------ */
/* endpoints                                                           */

/* Sum of the characters of all message contents (string, or an array of
 * parts with "text"), or -1 with *why set when messages is malformed. */
static long count_prompt_chars(json_t *messages, const char **why, char *param, size_t pcap)
{
    long chars = 0;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
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
            json_array_foreach(content, k, part) {
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
        send_error(c, 400, "invalid_request_error", NULL, "invalid_json",
                   "We could not parse the JSON body of your request: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
        return;
    }
    if (!json_is_object(root)) {
        send_error(c, 400, "invalid_request_error", NULL, "invalid_json", "The request body must be a JSON object.");
        goto done;
    }
    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        send_error(c, 400, "invalid_request_error", "messages", NULL,
                   "'messages' is required and must be a non-empty array.");
        goto done;
    }
    long chars = count_prompt_chars(messages, &why, param, sizeof param);
    if (chars < 0) {
        send_error(c, 400, "invalid_request_error", param, NULL, "'%s' %s.", param, why);
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_string(model)) {
        send_error(c, 400, "invalid_request_error", "model", NULL, "'model' must be a string.");
        goto done;
    }
    if (model && json_string_length(model) > SIM_MODEL_MAX) {
        send_error(c, 400, "invalid_request_error", "model", NULL, "'model' is longer than %d characters.",
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
            send_error(c, 400, "invalid_request_error", mt_name, NULL,
                       "'%s' must be an integer between 1 and %d.", mt_name, SIM_MAX_TOKENS);
            goto done;
        }
        max_tokens = json_integer_value(mt);
    }
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        send_error(c, 400, "invalid_request_error", "stream", NULL, "'stream' must be a boolean.");
        goto done;
    }
    bool include_usage = false;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        json_t *iu = json_is_object(so) ? json_object_get(so, "include_usage") : NULL;
        if (!json_is_object(so) || (iu && !json_is_boolean(iu))) {
            send_error(c, 400, "invalid_request_error", "stream_options", NULL,
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
    ev_timer_init(&s->timer, delay_done_cb, s);
    if (sim.cfg.added_latency_ms > 0) {
        s->state = SEQ_DELAY;
        ev_timer_arm(sim.loop, &s->timer, (uint64_t)(sim.cfg.added_latency_ms * 1000.0));
    } else {
        seq_admit(s, false); /* may answer 500 at once */
    }
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
    double svc = service_ms_estimate(sim.cfg.default_tokens, 0);
    sbuf_reset(j);
    sbuf_printf(j,
                "{\"version\":\"%s\",\"slots\":%d,\"slots_busy\":%zu,\"decoding\":%zu,\"queue_len\":%zu,"
                "\"max_queue_len\":%llu,\"token_interval_ms\":%.3f,",
                sim.cfg.version, sim.cfg.slots, sim.running.len, sim.decoding, sim.queue.len,
                (unsigned long long)t->max_queue_len, (double)token_interval_us() / 1000.0);
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
    send_json(c, 200, j, NULL);
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
        send_error(c, 400, "invalid_request_error", param, "invalid_value", "'%s' must be a number between %g and %g.",
                   param, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* POST /sim/config: validate every field first, then apply all at once, so
 * a bad request changes nothing. */
static void handle_config_post(struct conn *c)
{
    static const char *const known[] = {"error_rate", "added_latency_ms", "slots", "version", "bad_release",
                                        "health_fail", "token_ms", "batch_slowdown", "prefill_base_ms",
                                        "prefill_per_token_us", "default_tokens", "no_abort"};
    json_error_t jerr;
    json_t *root = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &jerr);
    struct sim_cfg n = sim.cfg;
    bool p;

    if (!root) {
        send_error(c, 400, "invalid_request_error", NULL, "invalid_json", "Invalid JSON: %s (line %d, column %d)",
                   jerr.text, jerr.line, jerr.column);
        return;
    }
    if (!json_is_object(root)) {
        send_error(c, 400, "invalid_request_error", NULL, "invalid_json", "The body must be a JSON object.");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool ok = false;
        for (size_t i = 0; i < RP_ARRAY_LEN(known); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            send_error(c, 400, "invalid_request_error", key, "unknown_field",
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
            send_error(c, 400, "invalid_request_error", "slots", "invalid_value",
                       "'slots' must be an integer between 1 and %d.", SIM_MAX_SLOTS);
            goto done;
        }
        n.slots = (int)json_integer_value(slots);
    }
    json_t *dt = json_object_get(root, "default_tokens");
    if (dt) {
        if (!json_is_integer(dt) || json_integer_value(dt) < 1 || json_integer_value(dt) > SIM_MAX_TOKENS) {
            send_error(c, 400, "invalid_request_error", "default_tokens", "invalid_value",
                       "'default_tokens' must be an integer between 1 and %d.", SIM_MAX_TOKENS);
            goto done;
        }
        n.default_tokens = (int)json_integer_value(dt);
    }
    json_t *ver = json_object_get(root, "version");
    if (ver) {
        if (!json_is_string(ver) || !version_ok(json_string_value(ver))) {
            send_error(c, 400, "invalid_request_error", "version", "invalid_value",
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
            send_error(c, 400, "invalid_request_error", bools[i], "invalid_value", "'%s' must be a boolean.",
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
            json_object_foreach(bad, key, val) {
                if (strcmp(key, "error_rate") != 0 && strcmp(key, "token_slowdown") != 0) {
                    char pn[96];
                    rp_snprintf(pn, sizeof pn, "bad_release.%s", key);
                    send_error(c, 400, "invalid_request_error", pn, "unknown_field",
                               "Unknown field '%s'; bad_release takes error_rate and token_slowdown.", pn);
                    goto done;
                }
            }
            n.bad_error_rate = 0;
            n.bad_token_slowdown = 1;
            if (!cfg_number(c, bad, "error_rate", "bad_release.error_rate", 0, 1, &n.bad_error_rate, &p) ||
                !cfg_number(c, bad, "token_slowdown", "bad_release.token_slowdown", 0.01, 1000,
                            &n.bad_token_slowdown, &p))
                goto done;
            n.bad_release = true;
        } else {
            send_error(c, 400, "invalid_request_error", "bad_release", "invalid_value",
                       "'bad_release' must be an object {error_rate, token_slowdown} or null.");
            goto done;
        }
    }
    sim.cfg = n;
    sched_fill(); /* more slots take queued work at once */
    rp_log_info("config changed: slots=%d error_rate=%g added_latency_ms=%g version=%s bad_release=%s health_fail=%s",
                n.slots, n.error_rate, n.added_latency_ms, n.version, n.bad_release ? "on" : "off",
                n.health_fail ? "yes" : "no");
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    render_config(j);
    send_json(c, 200, j, NULL);
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
    send_json(c, 200, j, NULL);
}

static bool method_is(const struct conn *c, const char *m)
{
    return strcmp(c->method, m) == 0;
}

/* Route one complete request. */
static void dispatch(struct conn *c)
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
        struct sbuf *j = &sim.scratch;
        sbuf_reset(j);
        sbuf_printf(j, "{\"error\":{\"message\":\"Method %s is not allowed here; use %s.\",\"type\":"
                       "\"invalid_request_error\",\"param\":null,\"code\":\"method_not_allowed\"}}",
                    c->method, allow);
        send_json(c, 405, j, extra);
        return;
    }
    send_error(c, 404, "invalid_request_error", NULL, "unknown_url", "Unknown request URL: %s %s.", c->method,
               path);
}

static void handle_health(struct conn *c)
{
    if (sim.cfg.health_fail) {
        static const char body[] = "{\"status\":\"failing\"}";
        send_whole(c, 503, "application/json", body, sizeof body - 1, NULL);
    } else {
        static const char body[] = "{\"status\":\"ok\"}";
        send_whole(c, 200, "application/json", body, sizeof body - 1, NULL);
    }
}

static void handle_config_get(struct conn *c)
{
    struct sbuf *j = &sim.scratch;
    sbuf_reset(j);
    render_config(j);
    send_json(c, 200, j, NULL);
}

/* ------------------------------------------------------------------ */
/* connection input: request head and body                             */

static void conn_arm_timer(struct conn *c, uint64_t us)
{
    ev_timer_arm(sim.loop, &c->timer, us);
}

static void conn_reset_request(struct conn *c)
{
    c->state = CS_HEAD;
    c->parse_pos = NULL;
    sbuf_free(&c->body);
    c->body_chunked = false;
    c->body_left = 0;
    c->body_too_big = false;
    c->expect_continue = false;
    c->resp_complete = false;
    c->close_after = false;
    c->chunked_resp = false;
    c->keep_alive = true;
    c->http10 = false;
    uint64_t t = buf_empty(&c->in) ? (uint64_t)(sim.cfg.keepalive_s * 1e6) : SIM_REQ_TIMEOUT_US;
    conn_arm_timer(c, t);
}

/* An early error before the body was read: answer and close, because the
 * rest of the input can no longer be framed. */
static void conn_fail(struct conn *c, int status, const char *why)
{
    c->keep_alive = false;
    c->state = CS_BUSY;
    send_error(c, status, "invalid_request_error", NULL, NULL, "%s", why);
}

static void body_data_cb(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    if (c->body.len + len > SIM_MAX_BODY) {
        c->body_too_big = true;
        return;
    }
    sbuf_add(&c->body, data, len);
}

/* Parse as much of the pending request as the input allows.  RP_OK when a
 * request was dispatched or answered (state is CS_BUSY), RP_AGAIN when more
 * input is needed. */
static int conn_parse(struct conn *c)
{
    if (c->state == CS_HEAD) {
        if (buf_empty(&c->in))
            return RP_AGAIN;
        if (c->parse_pos != c->in.pos) {
            /* The bytes moved (compaction) or a new message starts. */
            h1_message_init(&c->msg, c->hdrs, SIM_HEADERS);
            c->parse_pos = c->in.pos;
        }
        const struct h1_limits lim = {.max_header_bytes = 16 * 1024, .max_headers = SIM_HEADERS,
                                      .max_uri = SIM_TARGET_MAX};
        int n = h1_parse_request(c->in.pos, buf_len(&c->in), &c->msg, &lim);
        if (n == RP_AGAIN) {
            if (buf_len(&c->in) >= (size_t)(c->in.end - c->in.start)) {
                conn_fail(c, 431, "Request header section too large.");
                return RP_OK;
            }
            conn_arm_timer(c, SIM_REQ_TIMEOUT_US);
            return RP_AGAIN;
        }
        if (n < 0) {
            conn_fail(c, c->msg.error_status ? c->msg.error_status : 400, c->msg.error ? c->msg.error : "Bad request.");
            return RP_OK;
        }
        rp_snprintf(c->method, sizeof c->method, "%.*s", (int)RP_MIN(c->msg.method.len, sizeof c->method - 1),
                    c->msg.method.p);
        rp_snprintf(c->target, sizeof c->target, "%.*s", (int)RP_MIN(c->msg.target.len, (size_t)SIM_TARGET_MAX),
                    c->msg.target.p);
        c->http10 = c->msg.minor_version == 0;
        c->keep_alive = c->msg.keep_alive;
        c->expect_continue = c->msg.expect_continue;
        enum h1_framing fr = c->msg.framing;
        uint64_t clen = c->msg.content_length;
        buf_consume(&c->in, (size_t)n);
        c->parse_pos = NULL;
        sbuf_init(&c->body, SIM_MAX_BODY + 1);
        if (fr == H1_BODY_LENGTH) {
            if (clen > SIM_MAX_BODY) {
                conn_fail(c, 413, "Request body larger than 1 MiB.");
                return RP_OK;
            }
            c->body_left = clen;
        } else if (fr == H1_BODY_CHUNKED) {
            c->body_chunked = true;
            h1_chunked_init(&c->chunked);
        }
        c->state = CS_BODY;
    }
    if (c->state == CS_BODY) {
        bool done;
        if (c->body_chunked) {
            ssize_t used = h1_chunked_feed(&c->chunked, c->in.pos, buf_len(&c->in), body_data_cb, c);
            if (used < 0) {
                conn_fail(c, 400, c->chunked.error ? c->chunked.error : "Malformed chunked body.");
                return RP_OK;
            }
            buf_consume(&c->in, (size_t)used);
            if (c->body_too_big) {
                conn_fail(c, 413, "Request body larger than 1 MiB.");
                return RP_OK;
            }
            done = c->chunked.done;
        } else {
            size_t take = (size_t)RP_MIN((uint64_t)buf_len(&c->in), c->body_left);
            sbuf_add(&c->body, c->in.pos, take);
            buf_consume(&c->in, take);
            c->body_left -= take;
            done = c->body_left == 0;
        }
        if (!done) {
            if (c->expect_continue) {
                sbuf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->expect_continue = false;
            }
            conn_arm_timer(c, SIM_REQ_TIMEOUT_US);
            return RP_AGAIN;
        }
        c->state = CS_BUSY;
        ev_timer_cancel(sim.loop, &c->timer);
        dispatch(c);
        return RP_OK;
    }
    return RP_AGAIN;
}

/* Move the connection forward as far as its input and output allow.  May
 * free c. */
static void conn_drive(struct conn *c)
{
    if (c->broken) {
        conn_free(c);
        return;
    }
    for (;;) {
        conn_flush(c);
        if (c->broken) {
            conn_free(c);
            return;
        }
        if (c->state == CS_BUSY) {
            if (!c->resp_complete || out_pending(c) > 0)
                break;
            if (c->close_after) {
                /* Our FIN first, then drain what the client still sends so
                 * the kernel does not turn the close into a reset that could
                 * destroy the response in flight. */
                shutdown(c->fd, SHUT_WR);
                c->state = CS_LINGER;
                buf_reset(&c->in);
                conn_arm_timer(c, SIM_LINGER_US);
                break;
            }
            conn_reset_request(c);
        }
        if (c->state == CS_HEAD || c->state == CS_BODY) {
            if (conn_parse(c) == RP_AGAIN) {
                conn_flush(c); /* a 100 Continue may be pending */
                break;
            }
            continue;
        }
        break;
    }
    if (c->broken) {
        conn_free(c);
        return;
    }
    conn_update_mask(c);
}

static void conn_free(struct conn *c)
{
    if (c->seq) {
        seq_abort(c->seq);
        c->seq = NULL;
    }
    ev_timer_cancel(sim.loop, &c->timer);
    ev_del(sim.loop, c->fd);
    close(c->fd);
    buf_release(&c->in);
    sbuf_free(&c->out);
    sbuf_free(&c->body);
    sim.st.connections_open--;
    free(c);
}

static void conn_timer_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    struct conn *c = arg;
    /* Idle keep-alive, a stalled request, or the end of lingering. */
    if (c->state != CS_BUSY)
        conn_free(c);
}

static void conn_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct conn *c = arg;
    if (c->broken) {
        conn_free(c);
        return;
    }
    if (events & (EV_READ | EV_ERROR)) {
        for (;;) {
            if (c->state == CS_LINGER)
                buf_reset(&c->in);
            ssize_t n = buf_read_fd(&c->in, c->fd);
            if (n == RP_AGAIN)
                break;
            if (n <= 0) {
                /* EOF or error: the client is gone (or done, when lingering). */
                conn_free(c);
                return;
            }
            if (c->state != CS_LINGER)
                break;
        }
        if (c->state == CS_LINGER)
            return;
    }
    conn_drive(c);
}

static void accept_resume_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    ev_mod(loop, sim.lfd, EV_READ);
}

static void listen_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    for (int i = 0; i < SIM_ACCEPT_BATCH; i++) {
        int cfd = net_accept(fd, NULL, NULL);
        if (cfd == RP_AGAIN)
            return;
        if (cfd < 0) {
            /* Out of descriptors: pause accepting instead of spinning. */
            rp_log_errno(errno, "accept");
            ev_mod(loop, fd, 0);
            ev_timer_arm(loop, &sim.accept_pause, 100000);
            return;
        }
        struct conn *c = rp_xcalloc(1, sizeof *c);
        c->fd = cfd;
        buf_alloc(&c->in);
        sbuf_init(&c->out, 0);
        sbuf_init(&c->body, SIM_MAX_BODY + 1);
        ev_timer_init(&c->timer, conn_timer_cb, c);
        if (ev_add(loop, cfd, EV_READ, conn_io_cb, c) < 0) {
            rp_log_errno(errno, "ev_add");
            close(cfd);
            buf_release(&c->in);
            free(c);
            continue;
        }
        sim.st.connections_accepted++;
        sim.st.connections_open++;
        conn_reset_request(c);
    }
}

static void signal_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        rp_log_info("signal %u, exiting", si.ssi_signo);
    ev_stop(loop);
}

/* ------------------------------------------------------------------ */
/* command line                                                        */

static void usage(FILE *f)
{
    fprintf(f,
"usage: llmsim [options]\n"
"\n"
"OpenAI-compatible model server simulator with a continuous-batching capacity\n"
"model.  Endpoints: POST /v1/chat/completions (JSON or \"stream\":true SSE),\n"
"GET /v1/models, GET /health, GET /sim/stats, GET|POST /sim/config.\n"
"\n"
"Capacity model:\n"
"  S = --slots sequences run at once; further requests wait in an unbounded FIFO.\n"
"  prefill (time to first token once running)\n"
"      = prefill_base_ms + prefill_per_token_us * prompt_tokens / 1000   [ms]\n"
"      prompt_tokens = ceil(characters of all message contents / 4)\n"
"  token interval per sequence, busy = running sequences\n"
"      = token_ms * (1 + batch_slowdown * (busy - 1) / (S - 1))          [ms]\n"
"      (times bad_release.token_slowdown while a bad release is set)\n"
"  output tokens = max_tokens, or uniform in default_tokens * (1 +- spread)\n"
"  service time at a full batch = prefill + (tokens - 1) * token_ms * (1 + batch_slowdown)\n"
"  capacity [req/s] = S / service time\n"
"\n"
"Options:\n"
"  --listen ADDR:PORT        listen address (default 127.0.0.1:9001)\n"
"  --port N                  listen on 127.0.0.1:N\n"
"  --slots N                 concurrent sequences (default 16)\n"
"  --prefill-base-ms X       fixed prefill time (default 20)\n"
"  --prefill-per-token-us X  prefill time per prompt token (default 100)\n"
"  --token-ms X              per-token interval with one sequence (default 20)\n"
"  --batch-slowdown X        extra interval fraction at a full batch (default 1.0)\n"
"  --default-tokens N        mean output length without max_tokens (default 128)\n"
"  --default-tokens-spread F uniform spread around the mean, 0..1 (default 0.5)\n"
"  --no-abort                keep generating for clients that disconnected\n"
"  --late-headers            send a stream's response head with its first token\n"
"                            (default: at once, as ASGI servers do)\n"
"  --keepalive-timeout S     close idle keep-alive connections after S seconds (default 5)\n"
"  --model NAME              model id reported (default llmsim-1)\n"
"Fault and change injection (also at run time through POST /sim/config):\n"
"  --error-rate F            fraction of chat requests answered 500 (default 0)\n"
"  --added-latency-ms X      delay before a request enters the queue (default 0)\n"
"  --version LABEL           version label: x-llmsim-version header, system_fingerprint\n"
"                            (default v1); --version alone prints the program version\n"
"  --bad-release ERR:SLOW    start in a bad release: error rate ERR, token interval x SLOW\n"
"  --health-fail             GET /health answers 503\n"
"  --seed N                  PRNG seed (default: time based)\n"
"  -h, --help                this text\n"
"  -V                        print the program version\n");
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* "host:port" or "[v6]:port" into a sockaddr. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec)
        return RP_ERR;
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return RP_ERR;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return RP_ERR;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return RP_OK;
}

static int raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1000000 ? 1000000 : (int)rl.rlim_cur;
}

int main(int argc, char **argv)
{
    enum {
        O_LISTEN = 256, O_PORT, O_SLOTS, O_PBASE, O_PTOK, O_TOKMS, O_SLOW, O_DEFTOK, O_SPREAD, O_NOABORT,
        O_LATEHDR, O_KA, O_MODEL, O_ERR, O_LAT, O_VERSION, O_BAD, O_HFAIL, O_SEED,
    };
    static const struct option opts[] = {
        {"listen", required_argument, 0, O_LISTEN},
        {"port", required_argument, 0, O_PORT},
        {"slots", required_argument, 0, O_SLOTS},
        {"prefill-base-ms", required_argument, 0, O_PBASE},
        {"prefill-per-token-us", required_argument, 0, O_PTOK},
        {"token-ms", required_argument, 0, O_TOKMS},
        {"batch-slowdown", required_argument, 0, O_SLOW},
        {"default-tokens", required_argument, 0, O_DEFTOK},
        {"default-tokens-spread", required_argument, 0, O_SPREAD},
        {"no-abort", no_argument, 0, O_NOABORT},
        {"late-headers", no_argument, 0, O_LATEHDR},
        {"keepalive-timeout", required_argument, 0, O_KA},
        {"model", required_argument, 0, O_MODEL},
        {"error-rate", required_argument, 0, O_ERR},
        {"added-latency-ms", required_argument, 0, O_LAT},
        {"version", optional_argument, 0, O_VERSION},
        {"bad-release", required_argument, 0, O_BAD},
        {"health-fail", no_argument, 0, O_HFAIL},
        {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct sim_cfg *k = &sim.cfg;
    *k = (struct sim_cfg){.slots = 16, .prefill_base_ms = 20, .prefill_per_token_us = 100, .token_ms = 20,
                          .batch_slowdown = 1.0, .default_tokens = 128, .default_spread = 0.5,
                          .bad_token_slowdown = 1.0, .keepalive_s = 5};
    rp_snprintf(k->version, sizeof k->version, "v1");
    rp_snprintf(k->model, sizeof k->model, "llmsim-1");
    const char *listen_spec = "127.0.0.1:9001";
    char port_spec[64];
    uint64_t seed = rp_now_us() ^ ((uint64_t)getpid() << 32);
    int o, ival;
    bool ok = true;

    rp_log_set_prog("llmsim");
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        const char *a = optarg;
        switch (o) {
        case O_LISTEN: listen_spec = a; break;
        case O_PORT:
            ok = parse_int(a, 0, 65535, &ival);
            rp_snprintf(port_spec, sizeof port_spec, "127.0.0.1:%d", ival);
            listen_spec = port_spec;
            break;
        case O_SLOTS: ok = parse_int(a, 1, SIM_MAX_SLOTS, &k->slots); break;
        case O_PBASE: ok = parse_double(a, 0, 600000, &k->prefill_base_ms); break;
        case O_PTOK: ok = parse_double(a, 0, 1e6, &k->prefill_per_token_us); break;
        case O_TOKMS: ok = parse_double(a, 0, 60000, &k->token_ms); break;
        case O_SLOW: ok = parse_double(a, 0, 1000, &k->batch_slowdown); break;
        case O_DEFTOK: ok = parse_int(a, 1, SIM_MAX_TOKENS, &k->default_tokens); break;
        case O_SPREAD: ok = parse_double(a, 0, 1, &k->default_spread); break;
        case O_NOABORT: k->no_abort = true; break;
        case O_LATEHDR: k->late_headers = true; break;
        case O_KA: ok = parse_double(a, 0.001, 86400, &k->keepalive_s); break;
        case O_MODEL:
            ok = strlen(a) > 0 && strlen(a) <= SIM_MODEL_MAX;
            if (ok)
                rp_snprintf(k->model, sizeof k->model, "%s", a);
            break;
        case O_ERR: ok = parse_double(a, 0, 1, &k->error_rate); break;
        case O_LAT: ok = parse_double(a, 0, 600000, &k->added_latency_ms); break;
        case O_VERSION:
            /* "--version" alone prints the program version; with a value
             * ("--version v2" or "--version=v2") it sets the label. */
            if (!a && optind < argc && argv[optind][0] != '-')
                a = argv[optind++];
            if (!a) {
                printf("llmsim %s\n", RP_VERSION);
                return 0;
            }
            ok = version_ok(a);
            if (ok)
                rp_snprintf(k->version, sizeof k->version, "%s", a);
            break;
        case O_BAD: {
            char *end;
            errno = 0;
            k->bad_error_rate = strtod(a, &end);
            ok = *end == ':' && k->bad_error_rate >= 0 && k->bad_error_rate <= 1 &&
                 parse_double(end + 1, 0.01, 1000, &k->bad_token_slowdown);
            k->bad_release = ok;
            break;
        }
        case O_HFAIL: k->health_fail = true; break;
        case O_SEED: {
            char *end;
            errno = 0;
            seed = strtoull(a, &end, 10);
            ok = !errno && end != a && !*end;
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("llmsim %s\n", RP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "llmsim: invalid value for --%s: '%s' (see --help)\n", opts[o - O_LISTEN].name,
                    a ? a : "");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "llmsim: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (parse_listen(listen_spec, &ss, &sl) < 0) {
        fprintf(stderr, "llmsim: --listen wants a numeric ADDR:PORT, got '%s'\n", listen_spec);
        return 2;
    }
    rp_rand_seed(seed);
    signal(SIGPIPE, SIG_IGN);

    int max_fds = raise_nofile();
    sim.loop = ev_create(max_fds);
    if (!sim.loop)
        return 1;
    sim.started_us = rp_now_us();
    sim.started_wall_s = rp_wall_ms() / 1000;
    sbuf_init(&sim.scratch, 0);
    ev_timer_init(&sim.tick, tick_cb, NULL);
    ev_timer_init(&sim.accept_pause, accept_resume_cb, NULL);

    sim.lfd = net_listen((struct sockaddr *)&ss, sl, 4096);
    if (sim.lfd < 0) {
        rp_log_errno(errno, "listen on %s", listen_spec);
        return 1;
    }
    if (ev_add(sim.loop, sim.lfd, EV_READ, listen_cb, NULL) < 0) {
        rp_log_errno(errno, "ev_add listener");
        return 1;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sim.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sim.sfd < 0 || ev_add(sim.loop, sim.sfd, EV_READ, signal_cb, NULL) < 0) {
        rp_log_errno(errno, "signalfd");
        return 1;
    }

    double svc = service_ms_estimate(k->default_tokens, 0);
    rp_log_info("listening on %s: slots=%d token_ms=%g batch_slowdown=%g prefill=%g+%gus/tok version=%s "
                "(~%.1f req/s at %d tokens)",
                listen_spec, k->slots, k->token_ms, k->batch_slowdown, k->prefill_base_ms, k->prefill_per_token_us,
                k->version, svc > 0 ? k->slots * 1000.0 / svc : 0.0, k->default_tokens);
    int rc = ev_run(sim.loop);
    /* Exit without tearing down every connection: the kernel closes them,
     * and clients see the same EOF a crashed server would give. */
    sbuf_free(&sim.scratch);
    return rc == RP_OK ? 0 : 1;
}

/*
 * llmsim_model.c — the capacity model of a continuous-batching server.
 *
 * Real model servers (vLLM, TGI) run a fixed number of sequences at once,
 * queue everything else in an unbounded FIFO, slow every sequence down as
 * the batch fills, and keep burning GPU time for clients that already left
 * unless they notice the disconnect.  This file reproduces those properties
 * with a small, documented model (docs/llmsim.md):
 *
 *   slots          S sequences run at once; the rest wait in a FIFO
 *   prefill        base_ms + per_token_us * prompt_tokens / 1000   (ms)
 *   token interval token_ms * (1 + batch_slowdown * (busy-1)/(S-1))
 *                  (* bad_release.token_slowdown while a bad release is on)
 *   output length  max_tokens, else uniform default_tokens * (1 +- spread)
 *
 * A seq is first delayed (added latency), then either failed (injected
 * fault) or queued, then prefilled (its own one-shot timer), then decoded.
 * Decoding is driven by a single batch tick timer: each tick every decoding
 * sequence emits one token, exactly like an engine step of a continuous-
 * batching server, so thousands of streams cost one timer and a list walk,
 * not thousands of timers.
 *
 * Token-path code never frees a connection: a failed write only marks it
 * broken (conn_flush) and lets the I/O callback clean up, which keeps the
 * batch walk free of use-after-free hazards.
 */
#include "llmsim.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

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

static double effective_error_rate(void)
{
    double r = sim.cfg.error_rate;
    if (sim.cfg.bad_release && sim.cfg.bad_error_rate > r)
        r = sim.cfg.bad_error_rate;
    return r;
}

/* Per-sequence token interval for the current batch (microseconds). */
uint64_t seq_token_interval_us(void)
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
double seq_service_ms_estimate(int out_tokens, int prompt_tokens)
{
    double step = sim.cfg.token_ms * (1.0 + sim.cfg.batch_slowdown);
    if (sim.cfg.slots <= 1)
        step = sim.cfg.token_ms;
    return (double)prefill_us(prompt_tokens) / 1000.0 + (out_tokens > 1 ? out_tokens - 1 : 0) * step;
}

static const char *const sim_words[] = {
    "the",   "model",   "answers", "with",  "a",     "steady",  "stream", "of",     "plain",  "words",
    "so",    "that",    "every",   "token", "is",    "easy",    "to",     "count",  "and",    "each",
    "chunk", "carries", "one",     "word",  "while", "the",     "batch",  "fills",  "up",     "slowly",
    "under", "load",    "gateway", "queue", "slot",  "latency", "budget", "tenant", "stream", "reply",
};

static const char *next_word(void)
{
    return sim_words[rp_rand64() % RP_ARRAY_LEN(sim_words)];
}

/* ------------------------------------------------------------------ */
/* sequences                                                           */

static void seq_chunk_prefix(struct sbuf *j, const struct seq *s)
{
    sbuf_printf(j,
                "{\"id\":\"chatcmpl-%016llx\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
                "\"model\":\"%s\",\"system_fingerprint\":\"%s\",\"choices\":",
                (unsigned long long)s->id, (long long)s->created, s->model_json, sim.cfg.version);
}

static void seq_send_stream_head(struct seq *s)
{
    conn_put_stream_head(s->c, 200, "text/event-stream");
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
    conn_put_event(s->c, j->data, j->len);
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
        seq_sched_fill();
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
            conn_put_event(c, j->data, j->len);
        }
        conn_put_event(c, "[DONE]", 6);
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
        conn_send_json(c, 200, &j, NULL);
        sbuf_free(&j);
    }
    sim.st.requests_served++;
    c->seq = NULL;
    seq_free(s);
    seq_sched_fill();
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

void seq_tick_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
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
        uint64_t now = ev_now(loop), when = planned + seq_token_interval_us();
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
        ev_timer_arm(loop, &sim.tick, seq_token_interval_us());
}

static void seq_start(struct seq *s)
{
    s->state = SEQ_PREFILL;
    list_push(&sim.running, s);
    ev_timer_init(&s->timer, prefill_done_cb, s);
    ev_timer_arm(sim.loop, &s->timer, prefill_us(s->prompt_tokens));
}

/* Move queued sequences into free slots, oldest first. */
void seq_sched_fill(void)
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
        conn_send_error(c, 500, "server_error", NULL, "llmsim_injected_fault",
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
    seq_sched_fill();
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

void seq_submit(struct seq *s)
{
    ev_timer_init(&s->timer, delay_done_cb, s);
    if (sim.cfg.added_latency_ms > 0) {
        s->state = SEQ_DELAY;
        ev_timer_arm(sim.loop, &s->timer, (uint64_t)(sim.cfg.added_latency_ms * 1000.0));
    } else {
        seq_admit(s, false); /* may answer 500 at once */
    }
}

/* The client left while s was in progress. */
void seq_abort(struct seq *s)
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
    case SEQ_DELAY: seq_free(s); return;
    case SEQ_QUEUED:
        list_remove(&sim.queue, s);
        seq_free(s);
        return;
    case SEQ_PREFILL:
    case SEQ_DECODE:
        seq_release_slot(s);
        seq_free(s);
        seq_sched_fill();
        return;
    }
}

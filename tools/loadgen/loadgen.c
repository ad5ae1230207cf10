/*
 * loadgen — an open-loop, SSE-aware HTTP load generator for chat APIs.
 *
 * Open loop: request k is sent at its scheduled arrival time (fixed rate or
 * Poisson, per phase of a rate schedule) whatever happened to the earlier
 * ones, the way independent users arrive.  A closed-loop tool (a fixed set
 * of connections that each wait for the previous answer) slows its own
 * offered load down exactly when the server is overloaded, which hides the
 * collapse the gateway must prevent.  Latencies are measured from the
 * scheduled arrival, not from when the request happened to be sent, so a
 * lagging generator cannot hide queueing either ("coordinated omission");
 * the launch lag is reported separately to show the generator keeps up.
 *
 * Why not an existing tool (Debian packages considered):
 *   - wrk, ab, hey, siege: closed-loop connection pools; no Poisson arrivals,
 *     no rate schedule, no SSE parsing (no time to first token), no per-
 *     request give-up, no tenant/priority/max_tokens mix.  (wrk2's constant
 *     rate mode is not packaged, and it is still closed-loop per connection.)
 *   - h2load: has a rate mode (new connections per second) but measures
 *     whole responses only: no TTFT of a stream, no give-up that closes the
 *     socket mid-stream, no per-request header mix, no goodput under an SLO.
 *   - vLLM's benchmark_serving.py (the field's reference, open-loop Poisson)
 *     is not packaged and needs the Python ML stack.
 * loadgen reuses the gateway's event loop (ev.c) and HTTP parser (h1.c), so
 * it is one single-threaded process that sustains 10,000 requests per
 * second on new connections (docs/loadgen.md has the measurement).
 *
 * Per request it records: phase, tenant, priority, max_tokens, status,
 * time to response head, time to first token (first SSE event with
 * non-empty delta content; first body byte for non-streaming answers),
 * total time, tokens (the usage chunk when present, else counted deltas),
 * whether the client gave up, and an error class.  Results live in one
 * compact array and are written (CSV, JSON summary, table) at the end, so
 * no file I/O happens while the load runs.
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

#define LG_MAX_PHASES   64
#define LG_MAX_MIX      32
#define LG_MAX_HEADERS  8
#define LG_RESP_HEADERS 64
#define LG_MAX_LINE     (1u << 20)  /* one SSE line */
#define LG_MAX_JSON     (8u << 20)  /* non-streaming body kept for its usage */
#define LG_LAUNCH_BATCH 2000        /* arrivals launched per timer run before yielding to I/O */

/* ------------------------------------------------------------------ */
/* configuration                                                       */

struct lg_phase {
    double mult;
    double dur_s;
    double rate;        /* mult * base rate */
    uint64_t start_us;  /* relative to t0 */
    uint64_t end_us;
};

struct lg_mix {
    size_t n;
    char name[LG_MAX_MIX][64];
    double weight[LG_MAX_MIX];
    double total;
};

struct lg_range {
    int lo, hi;
};

static struct {
    /* target */
    char url[1024];
    char host_hdr[300];
    char path[1024];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    /* load */
    double rate;
    bool poisson;
    struct lg_phase phases[LG_MAX_PHASES];
    size_t nphases;
    /* request mix */
    struct lg_mix tenants;
    struct lg_mix prios;
    struct lg_range max_tokens;
    struct lg_range prompt_chars;
    bool stream;
    bool get;
    bool keepalive;
    char model[128];
    char extra_headers[LG_MAX_HEADERS][512];
    size_t nextra;
    /* client behaviour and SLO */
    double give_up_s;
    double slo_ttft_s;
    double slo_total_s;
    double drain_s;
    long max_inflight;
    /* output */
    const char *csv_path;
    const char *json_path;
    bool quiet;
    bool progress;
    uint64_t seed;
} cfg;

/* ------------------------------------------------------------------ */
/* results                                                             */

enum lg_err {
    LG_OK = 0,
    LG_E_CONNECT,    /* connect failed */
    LG_E_IO,         /* reset / write or read error */
    LG_E_EOF,        /* closed before the response was complete */
    LG_E_PROTO,      /* malformed response */
    LG_E_TRUNCATED,  /* 2xx stream ended without [DONE] */
    LG_E_GAVE_UP,    /* our give-up timeout */
    LG_E_OVERFLOW,   /* too many requests in flight in loadgen itself */
    LG_E_UNFINISHED, /* still running when the drain time ended */
    LG_E__COUNT,
};

static const char *const lg_err_name[LG_E__COUNT] = {
    "", "connect", "io", "eof", "protocol", "truncated", "gave_up", "overflow", "unfinished",
};

struct lg_result {
    uint64_t sched_us;   /* scheduled arrival, relative to t0 */
    uint32_t lag_us;     /* actual launch - scheduled */
    int64_t hdr_us;      /* from scheduled arrival; -1 when not reached */
    int64_t ttft_us;
    int64_t total_us;
    int32_t tokens;
    int16_t status;      /* 0: no response head */
    uint8_t phase;
    int8_t tenant;       /* -1: none */
    int8_t prio;
    uint8_t err;
    bool gave_up;
    int32_t max_tokens;
    int32_t err_errno;
};

static struct lg_result *results;
static size_t nresults, cap_results;

enum lg_rstate { RS_CONNECTING, RS_WRITING, RS_HEAD, RS_BODY };

struct lg_req {
    size_t idx;               /* into results */
    int fd;
    enum lg_rstate state;
    uint64_t sched_abs;       /* absolute monotonic scheduled time */
    struct buf in;
    struct sbuf out;
    size_t out_off;
    struct h1_message msg;
    struct h1_header hdrs[LG_RESP_HEADERS];
    enum h1_framing framing;
    uint64_t body_left;
    struct h1_chunked ch;
    bool sse;
    bool done_seen;
    bool keep_alive;
    bool reused;              /* sent on a kept-alive connection */
    bool first_body;
    int deltas;
    int usage_tokens;         /* -1 unknown */
    struct sbuf line;         /* partial SSE line */
    struct sbuf json;         /* non-streaming 2xx body */
    struct ev_timer giveup;
    struct lg_req *prev, *next; /* in-flight list */
};

struct lg_idle {
    int fd;
    struct lg_idle *prev, *next;
};

static struct {
    struct ev_loop *loop;
    uint64_t t0;              /* absolute start */
    size_t phase;             /* current arrival phase */
    uint64_t next_arrival;    /* relative to t0 */
    double next_arrival_f;    /* the same, unrounded, so fixed gaps of a
                               * fractional microsecond do not drift */
    bool arrivals_done;
    struct ev_timer arrive;
    struct ev_timer drain;
    struct ev_timer progress;
    struct lg_req *inflight;
    long ninflight;
    struct lg_idle *idle;
    long nidle;
    const char *prompt;       /* prompt text, longest needed */
    size_t prompt_len;
    bool interrupted;
    uint64_t done_count, ok_count;
} lg;

/* ------------------------------------------------------------------ */
/* parsing of options                                                  */

/* "20s", "500ms", "2m", "1.5" (seconds). */
static bool parse_dur(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0) || !isfinite(v))
        return false;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        *out = v;
    else if (strcmp(end, "ms") == 0)
        *out = v / 1000.0;
    else if (strcmp(end, "m") == 0)
        *out = v * 60.0;
    else
        return false;
    return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* "64" or "32-256". */
static bool parse_range(const char *s, int lo, int hi, struct lg_range *r)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (errno || end == s)
        return false;
    if (*end == '-') {
        const char *p = end + 1;
        b = strtol(p, &end, 10);
        if (errno || end == p)
            return false;
    }
    if (*end || a < lo || b > hi || a > b)
        return false;
    r->lo = (int)a;
    r->hi = (int)b;
    return true;
}

/* "name:weight,name:weight" (weight defaults to 1). */
static bool parse_mix(const char *s, struct lg_mix *m)
{
    m->n = 0;
    m->total = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        if (len == 0 || m->n == LG_MAX_MIX)
            return false;
        char item[128];
        if (len >= sizeof item)
            return false;
        memcpy(item, s, len);
        item[len] = '\0';
        char *colon = strrchr(item, ':');
        double w = 1;
        if (colon) {
            *colon = '\0';
            if (!parse_num(colon + 1, 0, 1e9, &w))
                return false;
        }
        size_t nl = strlen(item);
        if (nl == 0 || nl >= sizeof m->name[0])
            return false;
        /* Names go into header values: visible ASCII only. */
        for (size_t i = 0; i < nl; i++)
            if (item[i] <= 0x20 || item[i] >= 0x7f || item[i] == ',')
                return false;
        memcpy(m->name[m->n], item, nl + 1);
        m->weight[m->n] = w;
        m->total += w;
        m->n++;
        s += len;
        if (*s == ',')
            s++;
    }
    return m->n > 0 && m->total > 0;
}

static int mix_pick(const struct lg_mix *m)
{
    if (m->n == 0)
        return -1;
    double x = rp_rand01() * m->total;
    for (size_t i = 0; i < m->n; i++) {
        if (x < m->weight[i])
            return (int)i;
        x -= m->weight[i];
    }
    return (int)m->n - 1;
}

static int range_pick(const struct lg_range *r)
{
    if (r->hi <= r->lo)
        return r->lo;
    return r->lo + (int)(rp_rand64() % (uint64_t)(r->hi - r->lo + 1));
}

/* "1x:20s,5x:30s,1x:20s". */
static bool parse_schedule(const char *s)
{
    cfg.nphases = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char item[64];
        if (len == 0 || len >= sizeof item || cfg.nphases == LG_MAX_PHASES)
            return false;
        memcpy(item, s, len);
        item[len] = '\0';
        char *colon = strchr(item, ':');
        if (!colon)
            return false;
        *colon = '\0';
        size_t ml = strlen(item);
        if (ml > 0 && (item[ml - 1] == 'x' || item[ml - 1] == 'X'))
            item[ml - 1] = '\0';
        struct lg_phase *p = &cfg.phases[cfg.nphases];
        if (!parse_num(item, 0, 1e6, &p->mult) || !parse_dur(colon + 1, &p->dur_s) || p->dur_s <= 0)
            return false;
        cfg.nphases++;
        s += len;
        if (*s == ',')
            s++;
    }
    return cfg.nphases > 0;
}

/* http://host[:port]/path; the host is resolved once, here. */
static bool parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        return false;
    p += 7;
    size_t alen = strcspn(p, "/?#");
    if (alen == 0 || alen >= sizeof cfg.host_hdr)
        return false;
    memcpy(cfg.host_hdr, p, alen);
    cfg.host_hdr[alen] = '\0';
    const char *path = p + alen;
    if (*path == '\0')
        path = "/";
    if (*path == '#' || strlen(path) >= sizeof cfg.path)
        return false;
    rp_snprintf(cfg.path, sizeof cfg.path, "%s%s", *path == '?' ? "/" : "", path);

    char host[256], port[16] = "80";
    const char *h = cfg.host_hdr, *colon;
    size_t hl;
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb)
            return false;
        hl = (size_t)(rb - h - 1);
        h++;
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = strrchr(h, ':');
        hl = colon ? (size_t)(colon - h) : strlen(h);
    }
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon && rp_snprintf(port, sizeof port, "%s", colon + 1) < 0)
        return false;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "loadgen: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return false;
    }
    memcpy(&cfg.addr, res->ai_addr, res->ai_addrlen);
    cfg.addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

/* ------------------------------------------------------------------ */
/* request lifecycle                                                   */

static void req_finish(struct lg_req *r, enum lg_err err, int err_errno);

static struct lg_result *res_of(const struct lg_req *r)
{
    return &results[r->idx];
}

static int64_t since_sched(const struct lg_req *r)
{
    return (int64_t)(ev_now(lg.loop) - r->sched_abs);
}

static struct lg_result *result_new(void)
{
    if (nresults == cap_results) {
        cap_results = cap_results ? cap_results * 2 : 4096;
        results = rp_xrealloc(results, cap_results * sizeof *results);
    }
    struct lg_result *x = &results[nresults++];
    memset(x, 0, sizeof *x);
    x->hdr_us = x->ttft_us = x->total_us = -1;
    return x;
}

static void build_request(struct lg_req *r, const struct lg_result *x)
{
    struct sbuf *o = &r->out;
    char body[512 + 64];
    int blen = 0;
    if (!cfg.get) {
        /* The prompt is spliced in separately below: it can be long. */
        blen = rp_snprintf(body, sizeof body, "\"max_tokens\":%d,\"stream\":%s%s}", x->max_tokens,
                           cfg.stream ? "true" : "false",
                           cfg.stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    }
    int plen = range_pick(&cfg.prompt_chars);
    char head_model[300];
    int hm = rp_snprintf(head_model, sizeof head_model, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"",
                         cfg.model);
    static const char mid[] = "\"}],";
    size_t content_len = cfg.get ? 0 : (size_t)hm + (size_t)plen + sizeof mid - 1 + (size_t)blen;

    sbuf_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\n", cfg.get ? "GET" : "POST", cfg.path, cfg.host_hdr);
    if (!cfg.get) {
        sbuf_adds(o, "Content-Type: application/json\r\n");
        sbuf_printf(o, "Content-Length: %zu\r\n", content_len);
        if (cfg.stream)
            sbuf_adds(o, "Accept: text/event-stream\r\n");
    }
    if (x->tenant >= 0)
        sbuf_printf(o, "Authorization: Bearer %s\r\n", cfg.tenants.name[x->tenant]);
    if (x->prio >= 0)
        sbuf_printf(o, "x-priority: %s\r\n", cfg.prios.name[x->prio]);
    for (size_t i = 0; i < cfg.nextra; i++)
        sbuf_printf(o, "%s\r\n", cfg.extra_headers[i]);
    if (!cfg.keepalive)
        sbuf_adds(o, "Connection: close\r\n");
    sbuf_adds(o, "\r\n");
    if (!cfg.get) {
        sbuf_add(o, head_model, (size_t)hm);
        sbuf_add(o, lg.prompt, (size_t)plen);
        sbuf_add(o, mid, sizeof mid - 1);
        sbuf_add(o, body, (size_t)blen);
    }
}

static void req_set_mask(struct lg_req *r, uint32_t mask)
{
    ev_mod(lg.loop, r->fd, mask);
}

/* ---- SSE ---- */

static void sse_line(struct lg_req *r, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return;
    p += 5;
    n -= 5;
    if (n && *p == ' ') {
        p++;
        n--;
    }
    const char *end = p + n;
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        r->done_seen = true;
        return;
    }
    /* A light scan instead of a JSON parse per event: an OpenAI chunk is
     * {"choices":[{"delta":{"content":"..."}}]} and a non-empty content
     * string is one token. */
    const char *d = memmem(p, n, "\"delta\"", 7);
    if (d) {
        const char *q = memmem(d, (size_t)(end - d), "\"content\":", 10);
        if (q) {
            q += 10;
            while (q < end && *q == ' ')
                q++;
            if (q + 1 < end && q[0] == '"' && q[1] != '"') {
                r->deltas++;
                struct lg_result *x = res_of(r);
                if (x->ttft_us < 0)
                    x->ttft_us = since_sched(r);
            }
        }
    }
    const char *u = memmem(p, n, "\"completion_tokens\":", 20);
    if (u) {
        u += 20;
        while (u < end && *u == ' ')
            u++;
        long v = 0;
        bool any = false;
        while (u < end && *u >= '0' && *u <= '9' && v < 100000000) {
            v = v * 10 + (*u++ - '0');
            any = true;
        }
        if (any)
            r->usage_tokens = (int)v;
    }
}

static void sse_feed(struct lg_req *r, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        if (!nl) {
            if (r->line.len + len > LG_MAX_LINE)
                return; /* an absurd line; it will be cut, not stored */
            sbuf_add(&r->line, data, len);
            return;
        }
        size_t n = (size_t)(nl - data);
        if (r->line.len > 0) {
            sbuf_add(&r->line, data, n);
            sse_line(r, r->line.data, r->line.len);
            sbuf_reset(&r->line);
        } else {
            sse_line(r, data, n);
        }
        data = nl + 1;
        len -= n + 1;
    }
}

static void body_cb(void *arg, const char *data, size_t len)
{
    struct lg_req *r = arg;
    struct lg_result *x = res_of(r);
    if (len == 0)
        return;
    if (!r->first_body) {
        r->first_body = true;
        if (!r->sse && x->ttft_us < 0)
            x->ttft_us = since_sched(r);
    }
    if (r->sse)
        sse_feed(r, data, len);
    else if (x->status >= 200 && x->status < 300 && r->json.len + len <= LG_MAX_JSON)
        sbuf_add(&r->json, data, len);
}

/* completion_tokens of a non-streaming answer. */
static int json_usage_tokens(const struct sbuf *b)
{
    if (!b->data || b->len == 0)
        return -1;
    json_t *root = json_loadb(b->data, b->len, 0, NULL);
    if (!root)
        return -1;
    json_t *ct = json_object_get(json_object_get(root, "usage"), "completion_tokens");
    int v = json_is_integer(ct) ? (int)json_integer_value(ct) : -1;
    json_decref(root);
    return v;
}

/* ---- keep-alive pool ---- */

static void idle_remove(struct lg_idle *i)
{
    if (i->prev)
        i->prev->next = i->next;
    else
        lg.idle = i->next;
    if (i->next)
        i->next->prev = i->prev;
    lg.nidle--;
}

static void idle_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    /* Anything on an idle connection (EOF, stray bytes) retires it. */
    struct lg_idle *i = arg;
    idle_remove(i);
    ev_del(loop, fd);
    close(fd);
    free(i);
}

static void idle_put(int fd)
{
    struct lg_idle *i = rp_xcalloc(1, sizeof *i);
    i->fd = fd;
    i->next = lg.idle;
    if (lg.idle)
        lg.idle->prev = i;
    lg.idle = i;
    lg.nidle++;
    if (ev_add(lg.loop, fd, EV_READ, idle_cb, i) < 0) {
        idle_remove(i);
        close(fd);
        free(i);
    }
}

static int idle_get(void)
{
    while (lg.idle) {
        struct lg_idle *i = lg.idle;
        int fd = i->fd;
        idle_remove(i);
        ev_del(lg.loop, fd);
        free(i);
        if (net_peer_alive(fd))
            return fd;
        close(fd);
    }
    return -1;
}

/* ---- the state machine ---- */

static void req_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg);

static void req_free(struct lg_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        lg.inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    lg.ninflight--;
    ev_timer_cancel(lg.loop, &r->giveup);
    buf_release(&r->in);
    sbuf_free(&r->out);
    sbuf_free(&r->line);
    sbuf_free(&r->json);
    free(r);
    if (lg.arrivals_done && lg.ninflight == 0)
        ev_stop(lg.loop);
}

/* Record the outcome and release the request (and its socket, unless it
 * goes back to the keep-alive pool). */
static void req_finish(struct lg_req *r, enum lg_err err, int err_errno)
{
    struct lg_result *x = res_of(r);
    x->err = (uint8_t)err;
    x->err_errno = err_errno;
    x->total_us = since_sched(r);
    if (err == LG_E_GAVE_UP)
        x->gave_up = true;
    if (r->sse)
        x->tokens = r->usage_tokens >= 0 ? r->usage_tokens : r->deltas;
    else if (err == LG_OK && x->status >= 200 && x->status < 300)
        x->tokens = RP_MAX(0, json_usage_tokens(&r->json));
    if (err == LG_OK && x->ttft_us < 0 && !r->sse)
        x->ttft_us = x->total_us;
    lg.done_count++;
    if (err == LG_OK && x->status >= 200 && x->status < 300)
        lg.ok_count++;
    if (r->fd >= 0) {
        ev_del(lg.loop, r->fd);
        if (err == LG_OK && cfg.keepalive && r->keep_alive && buf_empty(&r->in))
            idle_put(r->fd);
        else
            close(r->fd);
        r->fd = -1;
    }
    req_free(r);
}

static void giveup_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    /* The user closes the tab: the socket is simply closed. */
    req_finish(arg, LG_E_GAVE_UP, 0);
}

/* Response complete (framing says so). */
static void req_complete(struct lg_req *r)
{
    struct lg_result *x = res_of(r);
    enum lg_err err = LG_OK;
    if (r->sse && x->status >= 200 && x->status < 300 && !r->done_seen)
        err = LG_E_TRUNCATED;
    req_finish(r, err, 0);
}

/* Feed body bytes from the input buffer.  RP_OK: complete; RP_AGAIN: more
 * needed; RP_ERR: malformed. */
static int req_body(struct lg_req *r)
{
    size_t n = buf_len(&r->in);
    switch (r->framing) {
    case H1_BODY_NONE:
        return RP_OK;
    case H1_BODY_LENGTH: {
        size_t take = (size_t)RP_MIN((uint64_t)n, r->body_left);
        body_cb(r, r->in.pos, take);
        buf_consume(&r->in, take);
        r->body_left -= take;
        return r->body_left == 0 ? RP_OK : RP_AGAIN;
    }
    case H1_BODY_CHUNKED: {
        ssize_t used = h1_chunked_feed(&r->ch, r->in.pos, n, body_cb, r);
        if (used < 0)
            return RP_ERR;
        buf_consume(&r->in, (size_t)used);
        return r->ch.done ? RP_OK : RP_AGAIN;
    }
    case H1_BODY_CLOSE:
        body_cb(r, r->in.pos, n);
        buf_consume(&r->in, n);
        return RP_AGAIN;
    }
    return RP_ERR;
}

static void req_on_head(struct lg_req *r)
{
    struct lg_result *x = res_of(r);
    x->status = (int16_t)r->msg.status;
    x->hdr_us = since_sched(r);
    r->framing = r->msg.framing;
    r->body_left = r->msg.content_length;
    r->keep_alive = r->msg.keep_alive;
    const struct h1_header *ct = h1_find_header(&r->msg, "content-type");
    r->sse = ct && memmem(ct->value.p, ct->value.len, "text/event-stream", 17) != NULL;
    if (r->framing == H1_BODY_CHUNKED)
        h1_chunked_init(&r->ch);
}

static void req_read(struct lg_req *r)
{
    for (;;) {
        ssize_t n = buf_read_fd(&r->in, r->fd);
        if (n == RP_AGAIN && buf_free_tail(&r->in) > 0)
            return;
        if (n == RP_ERR) {
            req_finish(r, LG_E_IO, errno);
            return;
        }
        bool eof = n == 0;
        if (r->state == RS_HEAD) {
            h1_message_init(&r->msg, r->hdrs, LG_RESP_HEADERS);
            int h = h1_parse_response(r->in.pos, buf_len(&r->in), &r->msg, NULL, false);
            if (h == RP_AGAIN) {
                if (eof) {
                    req_finish(r, buf_empty(&r->in) && r->reused ? LG_E_IO : LG_E_EOF, 0);
                    return;
                }
                if (buf_free_tail(&r->in) == 0 && r->in.pos == r->in.start) {
                    req_finish(r, LG_E_PROTO, 0);
                    return;
                }
                continue;
            }
            if (h < 0) {
                req_finish(r, LG_E_PROTO, 0);
                return;
            }
            if (r->msg.status >= 100 && r->msg.status < 200) {
                buf_consume(&r->in, (size_t)h); /* 100 Continue and friends */
                continue;
            }
            req_on_head(r);
            buf_consume(&r->in, (size_t)h);
            r->state = RS_BODY;
        }
        int b = req_body(r);
        if (b == RP_OK) {
            req_complete(r);
            return;
        }
        if (b == RP_ERR) {
            req_finish(r, LG_E_PROTO, 0);
            return;
        }
        if (eof) {
            if (r->framing == H1_BODY_CLOSE)
                req_complete(r);
            else
                req_finish(r, LG_E_EOF, 0);
            return;
        }
    }
}

static void req_write(struct lg_req *r)
{
    while (r->out_off < r->out.len) {
        ssize_t w = send(r->fd, r->out.data + r->out_off, r->out.len - r->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            r->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            req_set_mask(r, EV_WRITE | EV_READ);
            return;
        }
        req_finish(r, LG_E_IO, errno);
        return;
    }
    sbuf_free(&r->out);
    r->state = RS_HEAD;
    req_set_mask(r, EV_READ);
}

static void req_io_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    struct lg_req *r = arg;
    if (r->state == RS_CONNECTING) {
        int e = net_connect_result(r->fd);
        if (e != 0) {
            req_finish(r, LG_E_CONNECT, e);
            return;
        }
        r->state = RS_WRITING;
    }
    if (r->state == RS_WRITING) {
        req_write(r);
        return; /* the answer can wait for the next readiness report */
    }
    if (events & (EV_READ | EV_ERROR))
        req_read(r);
}

static void launch(uint64_t sched_rel, size_t phase)
{
    struct lg_result *x = result_new();
    x->sched_us = sched_rel;
    x->phase = (uint8_t)phase;
    x->tenant = (int8_t)mix_pick(&cfg.tenants);
    x->prio = (int8_t)mix_pick(&cfg.prios);
    x->max_tokens = range_pick(&cfg.max_tokens);
    uint64_t now = ev_now(lg.loop), sched_abs = lg.t0 + sched_rel;
    x->lag_us = now > sched_abs ? (uint32_t)RP_MIN(now - sched_abs, (uint64_t)UINT32_MAX) : 0;
    if (lg.ninflight >= cfg.max_inflight) {
        /* Open loop means never waiting for a free slot in loadgen
         * itself: the arrival is recorded as lost. */
        x->err = LG_E_OVERFLOW;
        x->total_us = 0;
        lg.done_count++;
        return;
    }

    struct lg_req *r = rp_xcalloc(1, sizeof *r);
    r->idx = nresults - 1;
    r->sched_abs = sched_abs;
    r->usage_tokens = -1;
    r->fd = -1;
    buf_alloc(&r->in);
    sbuf_init(&r->out, 0);
    sbuf_init(&r->line, LG_MAX_LINE + 1);
    sbuf_init(&r->json, LG_MAX_JSON + 1);
    ev_timer_init(&r->giveup, giveup_cb, r);
    r->next = lg.inflight;
    if (lg.inflight)
        lg.inflight->prev = r;
    lg.inflight = r;
    lg.ninflight++;
    build_request(r, x);
    if (cfg.give_up_s > 0)
        ev_timer_arm_at(lg.loop, &r->giveup, sched_abs + (uint64_t)(cfg.give_up_s * 1e6));

    int fd = cfg.keepalive ? idle_get() : -1;
    int rc;
    if (fd >= 0) {
        r->reused = true;
        rc = RP_OK;
    } else {
        rc = net_connect((const struct sockaddr *)&cfg.addr, cfg.addr_len, &fd);
        if (rc == RP_ERR) {
            req_finish(r, LG_E_CONNECT, errno);
            return;
        }
    }
    r->fd = fd;
    r->state = rc == RP_OK ? RS_WRITING : RS_CONNECTING;
    if (ev_add(lg.loop, fd, rc == RP_OK ? EV_READ : EV_WRITE, req_io_cb, r) < 0) {
        req_finish(r, LG_E_CONNECT, errno);
        return;
    }
    if (r->state == RS_WRITING)
        req_write(r);
}

/* ------------------------------------------------------------------ */
/* arrivals                                                            */

static void finish_run(void);

static bool next_arrival(void)
{
    /* Advance lg.next_arrival within the current phase, moving to the next
     * phase when it runs past the end.  false when the schedule is over. */
    while (lg.phase < cfg.nphases) {
        const struct lg_phase *p = &cfg.phases[lg.phase];
        if (p->rate > 0) {
            double gap = cfg.poisson ? -log(1.0 - rp_rand01()) / p->rate : 1.0 / p->rate;
            double t = lg.next_arrival_f + gap * 1e6;
            if (t < (double)p->end_us) {
                lg.next_arrival_f = t;
                lg.next_arrival = (uint64_t)t;
                return true;
            }
        }
        lg.phase++;
        if (lg.phase < cfg.nphases) {
            /* The first arrival of a phase is at its start (fixed rate) or
             * one exponential gap into it (Poisson). */
            const struct lg_phase *q = &cfg.phases[lg.phase];
            lg.next_arrival = q->start_us;
            lg.next_arrival_f = (double)q->start_us;
            if (q->rate > 0 && !cfg.poisson)
                return true;
        }
    }
    return false;
}

static void arrive_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    uint64_t now = ev_update_now(loop);
    for (int i = 0; i < LG_LAUNCH_BATCH; i++) {
        if (lg.t0 + lg.next_arrival > now) {
            ev_timer_arm_at(loop, &lg.arrive, lg.t0 + lg.next_arrival);
            return;
        }
        launch(lg.next_arrival, lg.phase);
        if (!next_arrival()) {
            lg.arrivals_done = true;
            finish_run();
            return;
        }
    }
    ev_timer_arm_at(loop, &lg.arrive, now); /* behind: let I/O run, then continue */
}

static void drain_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    while (lg.inflight)
        req_finish(lg.inflight, LG_E_UNFINISHED, 0);
    ev_stop(loop);
}

static void finish_run(void)
{
    /* Arrivals are over; the run ends when the last request has finished
     * or the drain time has passed. */
    ev_timer_arm(lg.loop, &lg.drain, (uint64_t)(cfg.drain_s * 1e6));
    if (lg.ninflight == 0)
        ev_stop(lg.loop);
}

static void progress_cb(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    double el = (double)(ev_now(loop) - lg.t0) / 1e6;
    fprintf(stderr, "loadgen: t=%.0fs phase=%zu sent=%zu in_flight=%ld done=%llu ok=%llu\n", el,
            RP_MIN(lg.phase + 1, cfg.nphases), nresults, lg.ninflight, (unsigned long long)lg.done_count,
            (unsigned long long)lg.ok_count);
    ev_timer_arm(loop, &lg.progress, 1000000);
}

static void signal_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    struct signalfd_siginfo si;
    (void)!read(fd, &si, sizeof si);
    /* Stop offering load, keep what was measured. */
    lg.interrupted = true;
    while (lg.inflight)
        req_finish(lg.inflight, LG_E_UNFINISHED, 0);
    ev_stop(loop);
}

/* ------------------------------------------------------------------ */
/* summary                                                             */

struct lg_dist {
    double p50, p90, p99, mean, max;
    size_t n;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles of v[0..n) in milliseconds (v is sorted). */
static struct lg_dist dist_of(int64_t *v, size_t n)
{
    struct lg_dist d = {0};
    d.n = n;
    if (n == 0)
        return d;
    qsort(v, n, sizeof *v, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    const double q[3] = {0.50, 0.90, 0.99};
    double *out[3] = {&d.p50, &d.p90, &d.p99};
    for (int k = 0; k < 3; k++) {
        size_t rank = (size_t)ceil(q[k] * (double)n);
        if (rank < 1)
            rank = 1;
        *out[k] = (double)v[rank - 1] / 1000.0;
    }
    d.mean = sum / (double)n / 1000.0;
    d.max = (double)v[n - 1] / 1000.0;
    return d;
}

struct lg_status_count {
    int status;
    size_t n;
};

struct lg_summary {
    const char *name;
    double mult, rate, dur_s;
    size_t offered, completed, ok, good, gave_up, errors, tokens;
    size_t ok_win, good_win;  /* finished inside the phase's time window */
    size_t tokens_win;
    size_t err_counts[LG_E__COUNT];
    struct lg_status_count status[64];
    size_t nstatus;
    struct lg_dist ttft, total, hdr, lag;
};

static bool res_ok(const struct lg_result *x)
{
    return x->err == LG_OK && x->status >= 200 && x->status < 300;
}

static bool res_good(const struct lg_result *x)
{
    if (!res_ok(x))
        return false;
    if (cfg.slo_ttft_s > 0 && (x->ttft_us < 0 || (double)x->ttft_us > cfg.slo_ttft_s * 1e6))
        return false;
    if (cfg.slo_total_s > 0 && (double)x->total_us > cfg.slo_total_s * 1e6)
        return false;
    return true;
}

/* Summarise results of phase ph (or all when ph < 0). */
static void summarise(int ph, struct lg_summary *s, int64_t *scratch)
{
    memset(s, 0, sizeof *s);
    uint64_t win_lo = ph >= 0 ? cfg.phases[ph].start_us : 0;
    uint64_t win_hi = ph >= 0 ? cfg.phases[ph].end_us : cfg.phases[cfg.nphases - 1].end_us;
    /* Rates per second count completions by when they finished, so that a
     * backlog drained after an overload phase is not credited to it. */
    for (size_t i = 0; i < nresults; i++) {
        const struct lg_result *x = &results[i];
        uint64_t fin = x->sched_us + (uint64_t)RP_MAX(0, x->total_us);
        if (res_ok(x) && fin >= win_lo && fin < win_hi) {
            s->ok_win++;
            s->tokens_win += (size_t)RP_MAX(0, x->tokens);
            if (res_good(x))
                s->good_win++;
        }
    }
    for (size_t i = 0; i < nresults; i++) {
        const struct lg_result *x = &results[i];
        if (ph >= 0 && x->phase != ph)
            continue;
        s->offered++;
        if (x->status > 0) {
            size_t k;
            for (k = 0; k < s->nstatus && s->status[k].status != x->status; k++)
                ;
            if (k == s->nstatus && k < RP_ARRAY_LEN(s->status))
                s->status[s->nstatus++] = (struct lg_status_count){x->status, 0};
            if (k < s->nstatus)
                s->status[k].n++;
        }
        if (x->err == LG_OK && x->status > 0)
            s->completed++;
        if (res_ok(x)) {
            s->ok++;
            s->tokens += (size_t)RP_MAX(0, x->tokens);
        }
        if (res_good(x))
            s->good++;
        if (x->gave_up)
            s->gave_up++;
        else if (x->err != LG_OK)
            s->errors++;
        s->err_counts[x->err]++;
    }
    /* Latency distributions are over successful (2xx, complete) requests:
     * failures and give-ups have no meaningful total. */
    size_t m = 0;
#define COLLECT(field, cond)                                                    \
    do {                                                                        \
        m = 0;                                                                  \
        for (size_t i = 0; i < nresults; i++) {                                 \
            const struct lg_result *x = &results[i];                            \
            if ((ph >= 0 && x->phase != ph) || !(cond) || x->field < 0)         \
                continue;                                                       \
            scratch[m++] = x->field;                                            \
        }                                                                       \
    } while (0)
    COLLECT(ttft_us, res_ok(x));
    s->ttft = dist_of(scratch, m);
    COLLECT(total_us, res_ok(x));
    s->total = dist_of(scratch, m);
    COLLECT(hdr_us, x->status > 0);
    s->hdr = dist_of(scratch, m);
#undef COLLECT
    m = 0;
    for (size_t i = 0; i < nresults; i++)
        if (ph < 0 || results[i].phase == ph)
            scratch[m++] = results[i].lag_us;
    s->lag = dist_of(scratch, m);
    if (ph >= 0) {
        const struct lg_phase *p = &cfg.phases[ph];
        s->mult = p->mult;
        s->rate = p->rate;
        s->dur_s = p->dur_s;
    } else {
        for (size_t i = 0; i < cfg.nphases; i++)
            s->dur_s += cfg.phases[i].dur_s;
        s->rate = s->dur_s > 0 ? (double)s->offered / s->dur_s : 0;
        s->mult = 0;
    }
}

static void json_dist(FILE *f, const char *name, const struct lg_dist *d)
{
    fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"max\":%.3f}", name, d->n,
            d->p50, d->p90, d->p99, d->mean, d->max);
}

static void json_summary(FILE *f, const struct lg_summary *s, int ph)
{
    double dur = s->dur_s > 0 ? s->dur_s : 1;
    fprintf(f, "{\"phase\":");
    if (ph >= 0)
        fprintf(f, "%d,\"multiplier\":%g,\"rate\":%g,", ph + 1, s->mult, s->rate);
    else
        fprintf(f, "\"all\",");
    fprintf(f,
            "\"duration_s\":%g,\"offered\":%zu,\"offered_rps\":%.3f,\"completed\":%zu,\"ok\":%zu,"
            "\"goodput\":%zu,\"goodput_fraction\":%.4f,\"ok_in_window\":%zu,\"ok_rps\":%.3f,"
            "\"goodput_in_window\":%zu,\"goodput_rps\":%.3f,"
            "\"gave_up\":%zu,\"errors\":%zu,\"tokens\":%zu,\"tokens_per_s\":%.1f,",
            s->dur_s, s->offered, (double)s->offered / dur, s->completed, s->ok, s->good,
            s->offered ? (double)s->good / (double)s->offered : 0.0, s->ok_win, (double)s->ok_win / dur, s->good_win,
            (double)s->good_win / dur, s->gave_up, s->errors, s->tokens, (double)s->tokens_win / dur);
    fprintf(f, "\"status\":{");
    for (size_t k = 0; k < s->nstatus; k++)
        fprintf(f, "%s\"%d\":%zu", k ? "," : "", s->status[k].status, s->status[k].n);
    fprintf(f, "},\"error_counts\":{");
    bool first = true;
    for (int e = 1; e < LG_E__COUNT; e++) {
        if (!s->err_counts[e])
            continue;
        fprintf(f, "%s\"%s\":%zu", first ? "" : ",", lg_err_name[e], s->err_counts[e]);
        first = false;
    }
    fprintf(f, "},");
    json_dist(f, "ttft_ms", &s->ttft);
    fputc(',', f);
    json_dist(f, "total_ms", &s->total);
    fputc(',', f);
    json_dist(f, "headers_ms", &s->hdr);
    fputc(',', f);
    json_dist(f, "launch_lag_ms", &s->lag);
    fputc('}', f);
}

static void print_row(const struct lg_summary *s, int ph)
{
    char name[16];
    double dur = s->dur_s > 0 ? s->dur_s : 1;
    if (ph >= 0)
        rp_snprintf(name, sizeof name, "%d (%gx)", ph + 1, s->mult);
    else
        rp_snprintf(name, sizeof name, "all");
    printf("%-9s %6.1f %9.1f %8zu %8.1f %8.1f %6.1f%% %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %7zu %7zu\n", name,
           s->dur_s, (double)s->offered / dur, s->offered, (double)s->ok_win / dur, (double)s->good_win / dur,
           s->offered ? 100.0 * (double)s->good / (double)s->offered : 0.0, s->ttft.p50, s->ttft.p90, s->ttft.p99,
           s->total.p50, s->total.p90, s->total.p99, s->gave_up, s->errors);
}

static void print_status_line(const struct lg_summary *s, int ph)
{
    if (ph >= 0)
        printf("  phase %d: ", ph + 1);
    else
        printf("  all: ");
    for (size_t k = 0; k < s->nstatus; k++)
        printf("%d=%zu ", s->status[k].status, s->status[k].n);
    for (int e = 1; e < LG_E__COUNT; e++)
        if (s->err_counts[e])
            printf("%s=%zu ", lg_err_name[e], s->err_counts[e]);
    printf("| launch lag p99 %.2f ms, max %.2f ms | tokens %zu\n", s->lag.p99, s->lag.max, s->tokens);
}

static int write_outputs(void)
{
    int rc = 0;
    int64_t *scratch = rp_xmalloc((nresults + 1) * sizeof *scratch);
    struct lg_summary *sums = rp_xcalloc(cfg.nphases + 1, sizeof *sums);
    for (size_t i = 0; i < cfg.nphases; i++)
        summarise((int)i, &sums[i], scratch);
    summarise(-1, &sums[cfg.nphases], scratch);

    if (cfg.csv_path) {
        FILE *f = fopen(cfg.csv_path, "w");
        if (!f) {
            rp_log_errno(errno, "open %s", cfg.csv_path);
            rc = 1;
        } else {
            fprintf(f, "start_s,phase,tenant,priority,max_tokens,status,headers_ms,ttft_ms,total_ms,tokens,gave_up,"
                       "error,lag_ms\n");
            for (size_t i = 0; i < nresults; i++) {
                const struct lg_result *x = &results[i];
                fprintf(f, "%.6f,%d,%s,%s,%d,%d,", (double)x->sched_us / 1e6, x->phase + 1,
                        x->tenant >= 0 ? cfg.tenants.name[x->tenant] : "",
                        x->prio >= 0 ? cfg.prios.name[x->prio] : "", x->max_tokens, x->status);
                const int64_t t[3] = {x->hdr_us, x->ttft_us, x->total_us};
                for (int k = 0; k < 3; k++) {
                    if (t[k] >= 0)
                        fprintf(f, "%.3f,", (double)t[k] / 1000.0);
                    else
                        fputc(',', f);
                }
                fprintf(f, "%d,%d,", x->tokens, x->gave_up ? 1 : 0);
                if (x->err == LG_E_CONNECT || x->err == LG_E_IO)
                    fprintf(f, "%s:%s", lg_err_name[x->err], x->err_errno ? strerrorname_np(x->err_errno) : "");
                else
                    fputs(lg_err_name[x->err], f);
                fprintf(f, ",%.3f\n", (double)x->lag_us / 1000.0);
            }
            if (fclose(f) != 0) {
                rp_log_errno(errno, "write %s", cfg.csv_path);
                rc = 1;
            }
        }
    }
    if (cfg.json_path) {
        FILE *f = fopen(cfg.json_path, "w");
        if (!f) {
            rp_log_errno(errno, "open %s", cfg.json_path);
            rc = 1;
        } else {
            fprintf(f, "{\"url\":\"");
            for (const char *p = cfg.url; *p; p++) {
                if (*p == '"' || *p == '\\')
                    fputc('\\', f);
                fputc(*p, f);
            }
            fprintf(f, "\",\"arrivals\":\"%s\",\"base_rate\":%g,\"stream\":%s,\"give_up_s\":%g,\"slo_ttft_s\":%g,"
                       "\"slo_total_s\":%g,\"interrupted\":%s,\"phases\":[",
                    cfg.poisson ? "poisson" : "fixed", cfg.rate, cfg.stream ? "true" : "false", cfg.give_up_s,
                    cfg.slo_ttft_s, cfg.slo_total_s, lg.interrupted ? "true" : "false");
            for (size_t i = 0; i < cfg.nphases; i++) {
                if (i)
                    fputc(',', f);
                json_summary(f, &sums[i], (int)i);
            }
            fprintf(f, "],\"total\":");
            json_summary(f, &sums[cfg.nphases], -1);
            fprintf(f, "}\n");
            if (fclose(f) != 0) {
                rp_log_errno(errno, "write %s", cfg.json_path);
                rc = 1;
            }
        }
    }
    if (!cfg.quiet) {
        printf("loadgen: %s, %s arrivals, base rate %g/s, %s%s", cfg.url, cfg.poisson ? "Poisson" : "fixed-rate",
               cfg.rate, cfg.stream ? "streaming" : "non-streaming", cfg.keepalive ? ", keep-alive" : "");
        if (cfg.give_up_s > 0)
            printf(", give-up %gs", cfg.give_up_s);
        if (cfg.slo_ttft_s > 0)
            printf(", SLO TTFT <= %gs", cfg.slo_ttft_s);
        if (cfg.slo_total_s > 0)
            printf(", SLO total <= %gs", cfg.slo_total_s);
        printf("%s\n", lg.interrupted ? " (interrupted)" : "");
        printf("%-9s %6s %9s %8s %8s %8s %7s %8s %8s %8s %8s %8s %8s %7s %7s\n", "phase", "dur_s", "offered/s", "sent",
               "ok/s", "good/s", "good%", "ttft50", "ttft90", "ttft99", "tot50", "tot90", "tot99", "gaveup", "errors");
        for (size_t i = 0; i < cfg.nphases; i++)
            print_row(&sums[i], (int)i);
        print_row(&sums[cfg.nphases], -1);
        printf("(ok/s, good/s: completions finishing inside the phase; good%%: share of the phase's arrivals\n"
               " that were good = 2xx and complete%s; latencies in ms from the scheduled arrival)\n",
               cfg.slo_ttft_s > 0 || cfg.slo_total_s > 0 ? " within the SLO" : "");
        for (size_t i = 0; i < cfg.nphases; i++)
            print_status_line(&sums[i], (int)i);
        print_status_line(&sums[cfg.nphases], -1);
    }
    free(sums);
    free(scratch);
    return rc;
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static void usage(FILE *f)
{
    fprintf(f,
"usage: loadgen --url http://HOST:PORT/PATH [options]\n"
"\n"
"Open-loop load generator for OpenAI-style chat APIs: requests arrive on a\n"
"schedule (fixed rate or Poisson) whatever the server does, each on its own\n"
"connection like an independent user.  Streams are parsed as SSE to measure\n"
"time to first token.\n"
"\n"
"Load:\n"
"  --url URL              target (default http://127.0.0.1:8080/v1/chat/completions)\n"
"  --rate R               base arrival rate, requests/s (default 10)\n"
"  --poisson              exponential inter-arrival times (default: fixed spacing)\n"
"  --duration D           run length when there is no schedule (default 10s)\n"
"  --schedule S           phases as multiples of --rate, e.g. \"1x:20s,5x:30s,1x:20s\"\n"
"Request mix:\n"
"  --tenants MIX          e.g. \"t1:4,t2:1\": weights; sends Authorization: Bearer <tenant>\n"
"  --priority MIX         e.g. \"interactive:3,batch:1\": sends x-priority: <class>\n"
"  --max-tokens N|LO-HI   max_tokens per request, fixed or uniform (default 64)\n"
"  --prompt-chars N|LO-HI prompt length in characters (default 200)\n"
"  --model NAME           model field (default llmsim-1)\n"
"  --stream / --no-stream request SSE streaming (default on)\n"
"  --method GET           send bodiless GETs instead (plain HTTP servers)\n"
"  --header 'N: V'        extra request header (repeatable, up to 8)\n"
"  --keepalive            reuse connections (default: a new connection per request)\n"
"Client behaviour and SLO:\n"
"  --give-up D            close the connection if not done D after arrival (user leaves)\n"
"  --slo-ttft D           goodput counts 2xx answers with TTFT <= D\n"
"  --slo-total D          ... and total time <= D\n"
"  --drain D              after the last arrival, wait at most D for in-flight requests\n"
"                         (default: the give-up time, or 30s)\n"
"  --max-inflight N       requests in flight before arrivals are dropped as 'overflow'\n"
"Output:\n"
"  --csv FILE             one row per request\n"
"  --json FILE            per-phase summary\n"
"  --progress             a status line on stderr every second\n"
"  --quiet                no table on stdout\n"
"  --seed N               PRNG seed (default: time based)\n"
"Durations take s, ms or m suffixes (plain numbers are seconds).\n");
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
        O_URL = 256, O_RATE, O_POISSON, O_DURATION, O_SCHEDULE, O_TENANTS, O_PRIORITY, O_MAXTOK, O_PROMPT,
        O_MODEL, O_STREAM, O_NOSTREAM, O_METHOD, O_HEADER, O_KEEPALIVE, O_GIVEUP, O_SLOTTFT, O_SLOTOTAL,
        O_DRAIN, O_MAXINFL, O_CSV, O_JSON, O_PROGRESS, O_QUIET, O_SEED,
    };
    static const struct option opts[] = {
        {"url", required_argument, 0, O_URL},
        {"rate", required_argument, 0, O_RATE},
        {"poisson", no_argument, 0, O_POISSON},
        {"duration", required_argument, 0, O_DURATION},
        {"schedule", required_argument, 0, O_SCHEDULE},
        {"tenants", required_argument, 0, O_TENANTS},
        {"priority", required_argument, 0, O_PRIORITY},
        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"prompt-chars", required_argument, 0, O_PROMPT},
        {"model", required_argument, 0, O_MODEL},
        {"stream", no_argument, 0, O_STREAM},
        {"no-stream", no_argument, 0, O_NOSTREAM},
        {"method", required_argument, 0, O_METHOD},
        {"header", required_argument, 0, O_HEADER},
        {"keepalive", no_argument, 0, O_KEEPALIVE},
        {"give-up", required_argument, 0, O_GIVEUP},
        {"slo-ttft", required_argument, 0, O_SLOTTFT},
        {"slo-total", required_argument, 0, O_SLOTOTAL},
        {"drain", required_argument, 0, O_DRAIN},
        {"max-inflight", required_argument, 0, O_MAXINFL},
        {"csv", required_argument, 0, O_CSV},
        {"json", required_argument, 0, O_JSON},
        {"progress", no_argument, 0, O_PROGRESS},
        {"quiet", no_argument, 0, O_QUIET},
        {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    const char *url = "http://127.0.0.1:8080/v1/chat/completions";
    double duration = 10, v;
    bool have_schedule = false;
    cfg.rate = 10;
    cfg.stream = true;
    cfg.max_tokens = (struct lg_range){64, 64};
    cfg.prompt_chars = (struct lg_range){200, 200};
    cfg.drain_s = -1;
    cfg.seed = rp_now_us() ^ ((uint64_t)getpid() << 32);
    rp_snprintf(cfg.model, sizeof cfg.model, "llmsim-1");
    rp_log_set_prog("loadgen");

    int o;
    bool ok = true;
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        const char *a = optarg;
        switch (o) {
        case O_URL: url = a; break;
        case O_RATE: ok = parse_num(a, 0, 1e7, &cfg.rate); break;
        case O_POISSON: cfg.poisson = true; break;
        case O_DURATION: ok = parse_dur(a, &duration) && duration > 0; break;
        case O_SCHEDULE: ok = parse_schedule(a); have_schedule = ok; break;
        case O_TENANTS: ok = parse_mix(a, &cfg.tenants); break;
        case O_PRIORITY: ok = parse_mix(a, &cfg.prios); break;
        case O_MAXTOK: ok = parse_range(a, 1, 1000000, &cfg.max_tokens); break;
        case O_PROMPT: ok = parse_range(a, 1, 1 << 20, &cfg.prompt_chars); break;
        case O_MODEL:
            ok = strlen(a) > 0 && strlen(a) < sizeof cfg.model && !strpbrk(a, "\"\\");
            if (ok)
                rp_snprintf(cfg.model, sizeof cfg.model, "%s", a);
            break;
        case O_STREAM: cfg.stream = true; break;
        case O_NOSTREAM: cfg.stream = false; break;
        case O_METHOD:
            ok = strcmp(a, "GET") == 0 || strcmp(a, "POST") == 0;
            cfg.get = strcmp(a, "GET") == 0;
            break;
        case O_HEADER:
            ok = cfg.nextra < LG_MAX_HEADERS && strchr(a, ':') && !strpbrk(a, "\r\n") &&
                 rp_snprintf(cfg.extra_headers[cfg.nextra], sizeof cfg.extra_headers[0], "%s", a) > 0;
            if (ok)
                cfg.nextra++;
            break;
        case O_KEEPALIVE: cfg.keepalive = true; break;
        case O_GIVEUP: ok = parse_dur(a, &cfg.give_up_s); break;
        case O_SLOTTFT: ok = parse_dur(a, &cfg.slo_ttft_s); break;
        case O_SLOTOTAL: ok = parse_dur(a, &cfg.slo_total_s); break;
        case O_DRAIN: ok = parse_dur(a, &cfg.drain_s); break;
        case O_MAXINFL:
            ok = parse_num(a, 1, 1e7, &v);
            cfg.max_inflight = (long)v;
            break;
        case O_CSV: cfg.csv_path = a; break;
        case O_JSON: cfg.json_path = a; break;
        case O_PROGRESS: cfg.progress = true; break;
        case O_QUIET: cfg.quiet = true; break;
        case O_SEED: {
            char *end;
            errno = 0;
            cfg.seed = strtoull(a, &end, 10);
            ok = !errno && end != a && !*end;
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("loadgen %s\n", RP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "loadgen: invalid value for --%s: '%s' (see --help)\n", opts[o - O_URL].name, a);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    rp_snprintf(cfg.url, sizeof cfg.url, "%s", url);
    if (!parse_url(url)) {
        fprintf(stderr, "loadgen: --url wants http://HOST[:PORT]/PATH, got '%s'\n", url);
        return 2;
    }
    if (!have_schedule) {
        cfg.nphases = 1;
        cfg.phases[0] = (struct lg_phase){.mult = 1, .dur_s = duration};
    }
    uint64_t at = 0;
    for (size_t i = 0; i < cfg.nphases; i++) {
        struct lg_phase *p = &cfg.phases[i];
        p->rate = p->mult * cfg.rate;
        p->start_us = at;
        at += (uint64_t)(p->dur_s * 1e6);
        p->end_us = at;
    }
    if (cfg.drain_s < 0)
        cfg.drain_s = cfg.give_up_s > 0 ? cfg.give_up_s + 1 : 30;
    rp_rand_seed(cfg.seed);
    signal(SIGPIPE, SIG_IGN);

    int max_fds = raise_nofile();
    if (cfg.max_inflight <= 0)
        cfg.max_inflight = max_fds > 200 ? max_fds - 100 : max_fds / 2;
    if (cfg.max_inflight > max_fds - 50)
        cfg.max_inflight = RP_MAX(1, max_fds - 50);

    /* One prompt text, sliced per request. */
    size_t plen = (size_t)cfg.prompt_chars.hi;
    char *prompt = rp_xmalloc(plen + 1);
    static const char words[] = "please explain how a gateway protects a model server from overload ";
    for (size_t i = 0; i < plen; i++)
        prompt[i] = words[i % (sizeof words - 1)];
    prompt[plen] = '\0';
    lg.prompt = prompt;
    lg.prompt_len = plen;

    lg.loop = ev_create(max_fds);
    if (!lg.loop)
        return 1;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || ev_add(lg.loop, sfd, EV_READ, signal_cb, NULL) < 0) {
        rp_log_errno(errno, "signalfd");
        return 1;
    }
    ev_timer_init(&lg.arrive, arrive_cb, NULL);
    ev_timer_init(&lg.drain, drain_cb, NULL);
    ev_timer_init(&lg.progress, progress_cb, NULL);

    /* Start a few milliseconds out so the first arrivals are not late. */
    lg.t0 = ev_update_now(lg.loop) + 5000;
    lg.phase = 0;
    lg.next_arrival = 0;
    /* A fixed-rate run starts with an arrival at 0; a Poisson run (or one
     * whose first phase is idle) one gap later. */
    if ((cfg.phases[0].rate <= 0 || cfg.poisson) && !next_arrival())
        lg.arrivals_done = true;
    if (lg.arrivals_done)
        finish_run();
    else
        ev_timer_arm_at(lg.loop, &lg.arrive, lg.t0 + lg.next_arrival);
    if (cfg.progress)
        ev_timer_arm(lg.loop, &lg.progress, 1000000);

    int rc = ev_run(lg.loop);
    while (lg.inflight)
        req_finish(lg.inflight, LG_E_UNFINISHED, 0);
    while (lg.idle) {
        struct lg_idle *i = lg.idle;
        idle_remove(i);
        ev_del(lg.loop, i->fd);
        close(i->fd);
        free(i);
    }
    int wrc = write_outputs();
    free(results);
    free(prompt);
    ev_destroy(lg.loop);
    if (rc != RP_OK)
        return 1;
    return wrc ? 1 : (lg.interrupted ? 130 : 0);
}

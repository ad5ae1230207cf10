/*
 * health.c — active health checks: the per-server state machine (pure) and
 * the checker that runs HTTP probes on the event loop.
 *
 * A probe is one short-lived connection per check ("Connection: close"):
 * reusing a keep-alive connection would test the connection rather than the
 * server's ability to accept new ones, which is what the proxy needs.  The
 * probe reads only until the end of the status line (bounded by
 * HEALTH_READ_MAX) and closes; the body is never read, so a health endpoint
 * that streams or sends a large page costs nothing.
 *
 * Each probe owns one fd at most and one timer; the timer is the deadline
 * while a check runs and the next start while idle, so there is no state in
 * which a probe has no timer armed (except after free).
 */
#include "health.h"
#include "server.h"
#include "net.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- configuration ---- */

void health_conf_default(struct health_conf *c)
{
    *c = (struct health_conf)HEALTH_CONF_DEFAULT;
}

static int copy_string(struct conf_doc *doc, const struct conf_node *n, char *dst, size_t cap, bool need_slash)
{
    const char *s = NULL;
    if (!n)
        return RP_OK;
    if (conf_string(doc, n, &s) != RP_OK)
        return RP_ERR;
    for (const char *p = s; *p; p++) {
        /* Goes into a request line or header: refuse anything that could
         * split it. */
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            conf_error(doc, n, "must not contain spaces or control characters");
            return RP_ERR;
        }
    }
    if (need_slash && s[0] != '/') {
        conf_error(doc, n, "path must start with '/'");
        return RP_ERR;
    }
    if (rp_snprintf(dst, cap, "%s", s) < 0) {
        conf_error(doc, n, "too long (at most %zu bytes)", cap - 1);
        return RP_ERR;
    }
    return RP_OK;
}

static int row_path(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct health_conf *c = base;
    return copy_string(doc, n, c->path, sizeof c->path, true);
}

static int row_host(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct health_conf *c = base;
    return copy_string(doc, n, c->host, sizeof c->host, false);
}

/* One row per key, in the order the "unknown key" message lists them.
 * Defaults are HEALTH_CONF_DEFAULT's (test_health checks they agree).  The
 * floors of interval and timeout, and timeout < interval, are checked
 * below with their own messages. */
const struct conf_field health_conf_fields[] = {
    CONF_FIELD_BOOL("enabled", struct health_conf, enabled, false),
    CONF_FIELD_CUSTOM("path", row_path),
    CONF_FIELD_CUSTOM("host", row_host),
    CONF_FIELD_DURATION("interval", struct health_conf, interval_us, 0, UINT64_MAX, 2000000u),
    CONF_FIELD_DURATION("timeout", struct health_conf, timeout_us, 0, UINT64_MAX, 1000000u),
    CONF_FIELD_UINT("rise", struct health_conf, rise, 1, 100, 2),
    CONF_FIELD_UINT("fall", struct health_conf, fall, 1, 100, 3),
    CONF_FIELD_DURATION("slow_start", struct health_conf, slow_start_us, 0, UINT64_MAX, 30000000u),
    CONF_FIELD_END,
};

int health_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct health_conf *out)
{
    if (!node)
        return RP_OK;
    /* A health_check: section turns the checks on unless it says otherwise. */
    out->enabled = true;
    int rc = conf_fields_parse(doc, node, health_conf_fields, out);
    if (rc != RP_OK && node->kind != CONF_MAP)
        return rc;
    const struct conf_node *ni = conf_get(node, "interval"), *nt = conf_get(node, "timeout");
    /* A value that failed to parse kept the default, which is above both
     * floors: only a parsed one can be too short. */
    if (out->interval_us < 100000u) {
        conf_error(doc, ni, "interval must be at least 100ms");
        rc = RP_ERR;
    }
    if (out->timeout_us < 10000u) {
        conf_error(doc, nt, "timeout must be at least 10ms");
        rc = RP_ERR;
    }
    if (rc == RP_OK && out->timeout_us >= out->interval_us) {
        /* One check per server at a time: a check must end before the
         * next is due. */
        conf_error(doc, nt ? nt : node, "timeout must be shorter than interval");
        rc = RP_ERR;
    }
    return rc;
}

/* ---- state machine ---- */

const char *health_result_name(enum health_result r)
{
    switch (r) {
    case HEALTH_PASS: return "pass";
    case HEALTH_FAIL_CONNECT: return "connect";
    case HEALTH_FAIL_TIMEOUT: return "timeout";
    case HEALTH_FAIL_STATUS: return "status";
    case HEALTH_FAIL_PROTO: return "protocol";
    }
    return "?";
}

void health_server_init(struct health_server *s, uint64_t now_us)
{
    memset(s, 0, sizeof *s);
    s->up = true;
    s->up_since_us = now_us;
    s->last_change_us = now_us;
}

enum health_change health_server_report(struct health_server *s, const struct health_conf *c, enum health_result r,
                                        int status, uint64_t now_us)
{
    /* r comes from probe_finish, always one of enum health_result. */
    RP_ASSERT((unsigned)r < HEALTH_RESULTS);
    if ((unsigned)r < HEALTH_RESULTS)
        s->checks_total[r]++;
    s->last_result = r;
    s->last_status = status;
    if (r == HEALTH_PASS) {
        s->fails = 0;
        if (s->passes < UINT32_MAX)
            s->passes++;
        if (!s->up && s->passes >= c->rise) {
            s->up = true;
            s->up_since_us = now_us;
            s->ramping = c->slow_start_us > 0;
            s->last_change_us = now_us;
            return HEALTH_WENT_UP;
        }
        return HEALTH_NO_CHANGE;
    }
    s->passes = 0;
    if (s->fails < UINT32_MAX)
        s->fails++;
    if (s->up && s->fails >= c->fall) {
        s->up = false;
        s->ramping = false;
        s->last_change_us = now_us;
        s->downs_total++;
        return HEALTH_WENT_DOWN;
    }
    return HEALTH_NO_CHANGE;
}

double health_server_weight(const struct health_server *s, const struct health_conf *c, uint64_t now_us)
{
    if (!s->up)
        return 0.0;
    if (!s->ramping || c->slow_start_us == 0)
        return 1.0;
    if (now_us < s->up_since_us)
        return HEALTH_SLOW_START_FLOOR;
    uint64_t t = now_us - s->up_since_us;
    if (t >= c->slow_start_us)
        return 1.0;
    double f = (double)t / (double)c->slow_start_us;
    return HEALTH_SLOW_START_FLOOR + (1.0 - HEALTH_SLOW_START_FLOOR) * f;
}

int health_parse_status_line(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', RP_MIN(len, (size_t)HEALTH_READ_MAX));
    if (!nl)
        return len >= HEALTH_READ_MAX ? RP_ERR : RP_AGAIN;
    size_t n = (size_t)(nl - buf);
    /* "HTTP/1.x NNN" is 12 bytes; then SP reason, or the end of line. */
    if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ')
        return RP_ERR;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return RP_ERR;
        status = status * 10 + (buf[i] - '0');
    }
    if (n > 12 && buf[12] != ' ' && buf[12] != '\r')
        return RP_ERR;
    if (status < 100 || status > 599)
        return RP_ERR;
    return status;
}

/* ---- the checker ---- */

enum probe_phase { PROBE_IDLE = 0, PROBE_CONNECTING, PROBE_SENDING, PROBE_READING };

struct health_probe {
    struct health_checker *hc;
    size_t idx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[HEALTH_NAME_MAX];
    int fd;
    enum probe_phase phase;
    uint64_t started_us;
    struct ev_timer timer;
    char req[HEALTH_PATH_MAX + HEALTH_HOST_MAX + 128];
    size_t req_len, req_sent;
    char rbuf[HEALTH_READ_MAX];
    size_t rlen;
    struct health_server st;
};

struct health_checker {
    struct ev_loop *loop;
    char upstream[HEALTH_NAME_MAX];
    struct health_conf conf;
    health_change_cb cb;
    void *cb_arg;
    size_t num;
    struct health_probe probes[HEALTH_MAX_SERVERS];
    struct health_set *set; /* owner's set (health_set_add), NULL when in none */
    struct health_checker *next_in_set;
};

static void probe_close(struct health_probe *p)
{
    if (p->fd >= 0) {
        ev_del(p->hc->loop, p->fd);
        close(p->fd);
        p->fd = -1;
    }
}

static void probe_finish(struct health_probe *p, enum health_result r, int status)
{
    struct health_checker *hc = p->hc;
    probe_close(p);
    p->phase = PROBE_IDLE;
    uint64_t now = ev_now(hc->loop);
    /* Next check one interval after this one started, so the cadence does
     * not drift by the check's duration. */
    uint64_t next = p->started_us + hc->conf.interval_us;
    if (next <= now)
        next = now + hc->conf.interval_us;
    ev_timer_arm_at(hc->loop, &p->timer, next);
    enum health_change ch = health_server_report(&p->st, &hc->conf, r, status, now);
    if (ch == HEALTH_NO_CHANGE)
        return;
    if (ch == HEALTH_WENT_DOWN)
        rp_log_info("health: upstream %s server %s is down (%s, status %d, %u failed checks)", hc->upstream, p->name,
                    health_result_name(r), status, p->st.fails);
    else
        rp_log_info("health: upstream %s server %s is up (%u passed checks; slow start %llu ms)", hc->upstream, p->name,
                    p->st.passes, (unsigned long long)(hc->conf.slow_start_us / 1000u));
    if (hc->cb)
        hc->cb(hc->cb_arg, p->idx, ch == HEALTH_WENT_UP);
}

static void probe_read(struct health_probe *p)
{
    for (;;) {
        if (p->rlen == sizeof p->rbuf) {
            probe_finish(p, HEALTH_FAIL_PROTO, 0);
            return;
        }
        ssize_t n = recv(p->fd, p->rbuf + p->rlen, sizeof p->rbuf - p->rlen, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            probe_finish(p, HEALTH_FAIL_PROTO, 0);
            return;
        }
        if (n == 0) {
            int st = health_parse_status_line(p->rbuf, p->rlen);
            if (st > 0)
                probe_finish(p, st >= 200 && st < 400 ? HEALTH_PASS : HEALTH_FAIL_STATUS, st);
            else
                probe_finish(p, HEALTH_FAIL_PROTO, 0);
            return;
        }
        p->rlen += (size_t)n;
        int st = health_parse_status_line(p->rbuf, p->rlen);
        if (st == RP_AGAIN)
            continue;
        if (st < 0)
            probe_finish(p, HEALTH_FAIL_PROTO, 0);
        else
            probe_finish(p, st >= 200 && st < 400 ? HEALTH_PASS : HEALTH_FAIL_STATUS, st);
        return;
    }
}

static void probe_send(struct health_probe *p)
{
    while (p->req_sent < p->req_len) {
        ssize_t n = send(p->fd, p->req + p->req_sent, p->req_len - p->req_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            probe_finish(p, HEALTH_FAIL_CONNECT, 0);
            return;
        }
        p->req_sent += (size_t)n;
    }
    p->phase = PROBE_READING;
    if (ev_mod(p->hc->loop, p->fd, EV_READ) != RP_OK)
        probe_finish(p, HEALTH_FAIL_CONNECT, 0);
}

static void probe_io(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct health_probe *p = arg;
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    RP_UNUSED(events);
    switch (p->phase) {
    case PROBE_CONNECTING: {
        int err = net_connect_result(p->fd);
        if (err != 0) {
            probe_finish(p, HEALTH_FAIL_CONNECT, 0);
            return;
        }
        p->phase = PROBE_SENDING;
        probe_send(p);
        return;
    }
    case PROBE_SENDING: probe_send(p); return;
    case PROBE_READING: probe_read(p); return;
    case PROBE_IDLE: return;
    }
}

static void probe_start(struct health_probe *p)
{
    struct health_checker *hc = p->hc;
    p->started_us = ev_now(hc->loop);
    p->rlen = 0;
    p->req_sent = 0;
    int fd = -1;
    int rc = net_connect((const struct sockaddr *)&p->addr, p->addrlen, &fd);
    if (rc == RP_ERR) {
        probe_finish(p, HEALTH_FAIL_CONNECT, 0);
        return;
    }
    p->fd = fd;
    p->phase = rc == RP_OK ? PROBE_SENDING : PROBE_CONNECTING;
    if (ev_add(hc->loop, fd, EV_WRITE, probe_io, p) != RP_OK) {
        rp_log_errno(errno, "health: upstream %s server %s: cannot watch the check's socket", hc->upstream, p->name);
        close(fd);
        p->fd = -1;
        probe_finish(p, HEALTH_FAIL_CONNECT, 0);
        return;
    }
    ev_timer_arm_at(hc->loop, &p->timer, p->started_us + hc->conf.timeout_us);
}

static void probe_timer(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    struct health_probe *p = arg;
    RP_UNUSED(loop);
    RP_UNUSED(t);
    if (p->phase == PROBE_IDLE)
        probe_start(p);
    else
        probe_finish(p, HEALTH_FAIL_TIMEOUT, 0);
}

struct health_checker *health_checker_new(struct ev_loop *loop, const char *upstream, const struct health_conf *conf,
                                          const struct server_conf *servers, size_t n, health_change_cb cb, void *arg)
{
    if (!conf->enabled)
        return NULL;
    struct health_checker *hc = rp_xcalloc(1, sizeof *hc);
    hc->loop = loop;
    rp_snprintf(hc->upstream, sizeof hc->upstream, "%s", upstream ? upstream : "");
    hc->conf = *conf;
    hc->cb = cb;
    hc->cb_arg = arg;
    hc->num = RP_MIN(n, (size_t)HEALTH_MAX_SERVERS);
    uint64_t now = ev_now(loop);
    for (size_t i = 0; i < hc->num; i++) {
        struct health_probe *p = &hc->probes[i];
        p->hc = hc;
        p->idx = i;
        p->fd = -1;
        memcpy(&p->addr, &servers[i].addr.ss, sizeof p->addr);
        p->addrlen = servers[i].addr.len;
        rp_snprintf(p->name, sizeof p->name, "%s", servers[i].addr.text);
        const char *host = conf->host[0] ? conf->host : servers[i].addr.text;
        int len = rp_snprintf(p->req, sizeof p->req,
                              "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rampart-health/" RP_VERSION
                              "\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                              conf->path, host);
        p->req_len = len > 0 ? (size_t)len : 0; /* sizes are bounded by the conf limits */
        health_server_init(&p->st, now);
        ev_timer_init(&p->timer, probe_timer, p);
        /* Spread first checks over one interval. */
        ev_timer_arm_at(loop, &p->timer, now + conf->interval_us * i / (hc->num ? hc->num : 1));
    }
    return hc;
}

void health_checker_free(struct health_checker *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->num; i++) {
        ev_timer_cancel(hc->loop, &hc->probes[i].timer);
        probe_close(&hc->probes[i]);
    }
    if (hc->set) {
        struct health_checker **p = &hc->set->head;
        while (*p && *p != hc)
            p = &(*p)->next_in_set;
        /* hc->set is only ever set by health_set_add, which linked hc. */
        RP_ASSERT(*p == hc);
        if (*p)
            *p = hc->next_in_set;
    }
    free(hc);
}

void health_set_init(struct health_set *set, struct ev_loop *loop)
{
    set->head = NULL;
    set->loop = loop;
}

void health_set_add(struct health_set *set, struct health_checker *hc)
{
    if (!hc)
        return;
    RP_ASSERT(!hc->set);
    hc->set = set;
    hc->next_in_set = set->head;
    set->head = hc;
}

size_t health_checker_count(const struct health_checker *hc)
{
    return hc ? hc->num : 0;
}

const struct health_server *health_checker_server(const struct health_checker *hc, size_t idx)
{
    return hc && idx < hc->num ? &hc->probes[idx].st : NULL;
}

bool health_checker_up(const struct health_checker *hc, size_t idx)
{
    if (!hc || idx >= hc->num)
        return true; /* no checks: nothing says it is down */
    return hc->probes[idx].st.up;
}

double health_checker_weight(const struct health_checker *hc, size_t idx, uint64_t now_us)
{
    if (!hc || idx >= hc->num)
        return 1.0;
    return health_server_weight(&hc->probes[idx].st, &hc->conf, now_us);
}

static void labels(struct sbuf *out, const char *name, const struct health_checker *hc, const struct health_probe *p)
{
    sbuf_printf(out, "%s{upstream=\"", name);
    metrics_label_escape(out, hc->upstream);
    sbuf_adds(out, "\",server=\"");
    metrics_label_escape(out, p->name);
    sbuf_adds(out, "\"");
}

void health_metrics_render(struct sbuf *out, void *arg)
{
    const struct health_set *set = arg;
    const struct health_checker *head = set ? set->head : NULL;
    if (!head)
        return;
    /* The loop's time: the slow-start ramp was started with it. */
    uint64_t now = set->loop ? ev_now(set->loop) : rp_now_us();
    metrics_family(out, "rampart_health_up", "gauge", "Active health-check state of the server (1 up, 0 down).");
    for (const struct health_checker *hc = head; hc; hc = hc->next_in_set)
        for (size_t i = 0; i < hc->num; i++) {
            labels(out, "rampart_health_up", hc, &hc->probes[i]);
            sbuf_printf(out, "} %d\n", hc->probes[i].st.up ? 1 : 0);
        }
    metrics_family(out, "rampart_health_weight_ratio", "gauge",
                   "Share of the server's weight in use (slow start ramps it).");
    for (const struct health_checker *hc = head; hc; hc = hc->next_in_set)
        for (size_t i = 0; i < hc->num; i++) {
            labels(out, "rampart_health_weight_ratio", hc, &hc->probes[i]);
            sbuf_printf(out, "} %.3f\n", health_server_weight(&hc->probes[i].st, &hc->conf, now));
        }
    metrics_family(out, "rampart_health_checks_total", "counter", "Health checks by result.");
    for (const struct health_checker *hc = head; hc; hc = hc->next_in_set)
        for (size_t i = 0; i < hc->num; i++)
            for (int r = 0; r < HEALTH_RESULTS; r++) {
                labels(out, "rampart_health_checks_total", hc, &hc->probes[i]);
                sbuf_printf(out, ",result=\"%s\"} %llu\n", health_result_name((enum health_result)r),
                            (unsigned long long)hc->probes[i].st.checks_total[r]);
            }
    metrics_family(out, "rampart_health_down_total", "counter", "Transitions of the server to down.");
    for (const struct health_checker *hc = head; hc; hc = hc->next_in_set)
        for (size_t i = 0; i < hc->num; i++) {
            labels(out, "rampart_health_down_total", hc, &hc->probes[i]);
            sbuf_printf(out, "} %llu\n", (unsigned long long)hc->probes[i].st.downs_total);
        }
}

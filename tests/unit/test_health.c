/*
 * test_health.c — active health checks.
 *
 * The state machine on a deterministic clock: rise/fall counts, the
 * slow-start ramp, status-line parsing.  Then the checker for real, on an
 * event loop against a loopback listener in the same process that answers
 * 200, then 500, then nothing at all (timeout), and against a closed port
 * (refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "net.h"
#include "util.h"

#define SEC 1000000ull
#define MS 1000ull

/* ---- pure logic ---- */

static void test_rise_fall(void **state)
{
    (void)state;
    struct health_conf c = HEALTH_CONF_DEFAULT; /* rise 2, fall 3, slow start 30 s */
    struct health_server s;
    uint64_t t = 100 * SEC;
    health_server_init(&s, t);
    assert_true(health_server_up(&s));
    /* Starting servers take a full share: no ramp at startup. */
    assert_true(health_server_weight(&s, &c, t) == 1.0);

    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_STATUS, 500, t), HEALTH_NO_CHANGE);
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_TIMEOUT, 0, t), HEALTH_NO_CHANGE);
    /* A pass in between resets the run. */
    assert_int_equal(health_server_report(&s, &c, HEALTH_PASS, 200, t), HEALTH_NO_CHANGE);
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_CONNECT, 0, t), HEALTH_NO_CHANGE);
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_CONNECT, 0, t), HEALTH_NO_CHANGE);
    assert_true(health_server_up(&s));
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_CONNECT, 0, t), HEALTH_WENT_DOWN);
    assert_false(health_server_up(&s));
    assert_true(health_server_weight(&s, &c, t) == 0.0);
    assert_int_equal(s.downs_total, 1);
    /* Further failures change nothing. */
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_CONNECT, 0, t), HEALTH_NO_CHANGE);

    /* One pass is not enough (rise 2). */
    t += 2 * SEC;
    assert_int_equal(health_server_report(&s, &c, HEALTH_PASS, 200, t), HEALTH_NO_CHANGE);
    assert_false(health_server_up(&s));
    assert_int_equal(health_server_report(&s, &c, HEALTH_FAIL_STATUS, 503, t), HEALTH_NO_CHANGE);
    assert_int_equal(health_server_report(&s, &c, HEALTH_PASS, 200, t), HEALTH_NO_CHANGE);
    t += 2 * SEC;
    assert_int_equal(health_server_report(&s, &c, HEALTH_PASS, 204, t), HEALTH_WENT_UP);
    assert_true(health_server_up(&s));
    assert_int_equal(s.last_status, 204);
    assert_int_equal(s.checks_total[HEALTH_PASS], 4);
    assert_int_equal(s.checks_total[HEALTH_FAIL_CONNECT], 4);
}

static void test_slow_start(void **state)
{
    (void)state;
    struct health_conf c = HEALTH_CONF_DEFAULT;
    c.rise = 1;
    c.fall = 1;
    c.slow_start_us = 20 * SEC;
    struct health_server s;
    uint64_t t = 50 * SEC;
    health_server_init(&s, t);
    health_server_report(&s, &c, HEALTH_FAIL_CONNECT, 0, t);
    t += 10 * SEC;
    assert_int_equal(health_server_report(&s, &c, HEALTH_PASS, 200, t), HEALTH_WENT_UP);
    /* Linear from the floor to 1 over slow_start. */
    double w0 = health_server_weight(&s, &c, t);
    assert_true(w0 > HEALTH_SLOW_START_FLOOR - 1e-9 && w0 < HEALTH_SLOW_START_FLOOR + 1e-9);
    double w5 = health_server_weight(&s, &c, t + 5 * SEC);
    assert_true(w5 > 0.324 && w5 < 0.326); /* 0.1 + 0.9 x 0.25 */
    double w10 = health_server_weight(&s, &c, t + 10 * SEC);
    assert_true(w10 > 0.549 && w10 < 0.551);
    assert_true(health_server_weight(&s, &c, t + 20 * SEC) == 1.0);
    assert_true(health_server_weight(&s, &c, t + 100 * SEC) == 1.0);
    /* Monotonic. */
    double prev = 0.0;
    for (uint64_t dt = 0; dt <= 25 * SEC; dt += SEC / 4) {
        double w = health_server_weight(&s, &c, t + dt);
        assert_true(w >= prev);
        prev = w;
    }
    /* Going down mid-ramp and back restarts the ramp. */
    health_server_report(&s, &c, HEALTH_FAIL_STATUS, 500, t + 15 * SEC);
    assert_true(health_server_weight(&s, &c, t + 15 * SEC) == 0.0);
    health_server_report(&s, &c, HEALTH_PASS, 200, t + 16 * SEC);
    double w = health_server_weight(&s, &c, t + 16 * SEC);
    assert_true(w > HEALTH_SLOW_START_FLOOR - 1e-9 && w < HEALTH_SLOW_START_FLOOR + 1e-9);

    /* slow_start 0: full weight at once. */
    c.slow_start_us = 0;
    health_server_report(&s, &c, HEALTH_FAIL_STATUS, 500, t + 17 * SEC);
    health_server_report(&s, &c, HEALTH_PASS, 200, t + 18 * SEC);
    assert_true(health_server_weight(&s, &c, t + 18 * SEC) == 1.0);
}

static void test_status_line(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n", 200},
        {"HTTP/1.0 503 Service Unavailable\r\n", 503},
        {"HTTP/1.1 204\r\n", 204},
        {"HTTP/1.1 301 Moved\n", 301},
        {"HTTP/1.1 200 OK", RP_AGAIN},
        {"HTTP/1.1 2", RP_AGAIN},
        {"", RP_AGAIN},
        {"HTTP/2 200\r\n", RP_ERR},
        {"HTTP/1.1 20\r\n", RP_ERR},
        {"HTTP/1.1 2000\r\n", RP_ERR},
        {"HTTP/1.1 099 x\r\n", RP_ERR},
        {"SSH-2.0-OpenSSH\r\n", RP_ERR},
        {"HTTP/1.1 abc\r\n", RP_ERR},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++)
        assert_int_equal(health_parse_status_line(cases[i].in, strlen(cases[i].in)), cases[i].want);
    char big[HEALTH_READ_MAX];
    memset(big, 'x', sizeof big);
    assert_int_equal(health_parse_status_line(big, sizeof big), RP_ERR);
}

/* The rows' defaults are HEALTH_CONF_DEFAULT's: the table and the macro
 * cannot drift apart. */
static void test_conf_rows(void **state)
{
    (void)state;
    struct health_conf d = HEALTH_CONF_DEFAULT, t;
    memset(&t, 0, sizeof t);
    conf_fields_defaults(health_conf_fields, &t);
    size_t rows = 0;
    for (const struct conf_field *f = health_conf_fields; f->key; f++) {
        assert_non_null(conf_field_find(health_conf_fields, f->key));
        if (f->kind == CONF_F_CUSTOM || f->kind == CONF_F_IGNORE)
            continue;
        assert_memory_equal((const char *)&t + f->offset, (const char *)&d + f->offset, f->size);
        rows++;
    }
    assert_true(rows > 0);
}

static void test_conf(void **state)
{
    (void)state;
    const char *y = "health_check:\n  path: /ready\n  host: api.internal\n  interval: 500ms\n  timeout: 200ms\n"
                    "  rise: 3\n  fall: 1\n  slow_start: 1m\n";
    struct conf_doc *doc = conf_load_string("t.yaml", y, strlen(y));
    struct health_conf c;
    health_conf_default(&c);
    assert_false(c.enabled);
    assert_int_equal(health_conf_parse(doc, conf_get(conf_root(doc), "health_check"), &c), RP_OK);
    assert_true(c.enabled);
    assert_string_equal(c.path, "/ready");
    assert_string_equal(c.host, "api.internal");
    assert_int_equal(c.interval_us, 500 * MS);
    assert_int_equal(c.timeout_us, 200 * MS);
    assert_int_equal(c.rise, 3);
    assert_int_equal(c.fall, 1);
    assert_int_equal(c.slow_start_us, 60 * SEC);
    conf_free(doc);

    y = "health_check:\n  path: \"no slash\"\n  interval: 1s\n  timeout: 2s\n  rise: 0\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    health_conf_default(&c);
    assert_int_equal(health_conf_parse(doc, conf_get(conf_root(doc), "health_check"), &c), RP_ERR);
    assert_true(conf_error_count(doc) >= 2);
    conf_free(doc);

    y = "health_check:\n  enabled: false\n";
    doc = conf_load_string("t.yaml", y, strlen(y));
    health_conf_default(&c);
    assert_int_equal(health_conf_parse(doc, conf_get(conf_root(doc), "health_check"), &c), RP_OK);
    assert_false(c.enabled);
    conf_free(doc);
}

/* ---- the checker against a loopback server ---- */

enum mode { MODE_200, MODE_500, MODE_SILENT };

struct peer {
    struct ev_loop *loop;
    int lfd;
    enum mode mode;
    int silent_fds[64];
    size_t num_silent;
    char first_request[512];
    size_t requests;
};

struct conn {
    struct peer *peer;
    char buf[1024];
    size_t len;
};

static void conn_io(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct conn *c = arg;
    (void)events;
    ssize_t n = read(fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        if (!strstr(c->buf, "\r\n\r\n"))
            return;
        struct peer *p = c->peer;
        if (p->requests++ == 0)
            rp_snprintf(p->first_request, sizeof p->first_request, "%s", c->buf);
        if (p->mode == MODE_SILENT) {
            ev_del(loop, fd);
            if (p->num_silent < RP_ARRAY_LEN(p->silent_fds))
                p->silent_fds[p->num_silent++] = fd;
            else
                close(fd);
            free(c);
            return;
        }
        const char *resp = p->mode == MODE_200 ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                                               : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
        ssize_t w = write(fd, resp, strlen(resp));
        (void)w;
    }
    ev_del(loop, fd);
    close(fd);
    free(c);
}

static void peer_accept(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct peer *p = arg;
    (void)events;
    for (;;) {
        int cfd = net_accept(fd, NULL, NULL);
        if (cfd < 0)
            return;
        struct conn *c = rp_xcalloc(1, sizeof *c);
        c->peer = p;
        assert_int_equal(ev_add(loop, cfd, EV_READ, conn_io, c), RP_OK);
    }
}

struct watch {
    struct ev_loop *loop;
    struct ev_timer tick, deadline;
    struct health_checker *hc;
    size_t downs, ups;
    bool want_up; /* stop when the server reaches this state ... */
    bool stop_on_change;
};

static void on_change(void *arg, size_t server, bool up)
{
    struct watch *w = arg;
    assert_int_equal(server, 0);
    if (up)
        w->ups++;
    else
        w->downs++;
    if (w->stop_on_change && up == w->want_up)
        ev_stop(w->loop);
}

static void on_deadline(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    ev_stop(loop);
}

/* Run the loop until the watched change happens or max_ms passes; returns
 * the elapsed milliseconds. */
static uint64_t run_until(struct watch *w, bool want_up, uint64_t max_ms)
{
    w->want_up = want_up;
    w->stop_on_change = true;
    uint64_t t0 = ev_update_now(w->loop);
    ev_timer_arm(w->loop, &w->deadline, max_ms * MS);
    ev_run(w->loop);
    ev_timer_cancel(w->loop, &w->deadline);
    w->stop_on_change = false;
    return (ev_update_now(w->loop) - t0) / MS;
}

static void run_for(struct watch *w, uint64_t ms)
{
    w->stop_on_change = false;
    ev_update_now(w->loop);
    ev_timer_arm(w->loop, &w->deadline, ms * MS);
    ev_run(w->loop);
}

static void test_checker_io(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_create(1024);
    assert_non_null(loop);

    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct peer peer = {.loop = loop, .mode = MODE_200};
    peer.lfd = net_listen((struct sockaddr *)&a, sizeof a, 64);
    assert_true(peer.lfd >= 0);
    int port = net_local_port(peer.lfd);
    assert_true(port > 0);
    assert_int_equal(ev_add(loop, peer.lfd, EV_READ, peer_accept, &peer), RP_OK);

    struct server_conf srv;
    memset(&srv, 0, sizeof srv);
    a.sin_port = htons((uint16_t)port);
    memcpy(&srv.addr.ss, &a, sizeof a);
    srv.addr.len = sizeof a;
    rp_snprintf(srv.addr.text, sizeof srv.addr.text, "127.0.0.1:%d", port);

    struct health_conf c = HEALTH_CONF_DEFAULT;
    c.enabled = true;
    c.interval_us = 100 * MS;
    c.timeout_us = 60 * MS;
    c.rise = 2;
    c.fall = 2;
    c.slow_start_us = 10 * SEC;

    struct watch w = {.loop = loop};
    ev_timer_init(&w.deadline, on_deadline, NULL);
    w.hc = health_checker_new(loop, "llm", &c, &srv, 1, on_change, &w);
    assert_non_null(w.hc);
    struct health_set set;
    health_set_init(&set, loop);
    health_set_add(&set, w.hc);

    /* Healthy: checks pass, nothing changes. */
    run_for(&w, 350);
    const struct health_server *s = health_checker_server(w.hc, 0);
    assert_true(s->checks_total[HEALTH_PASS] >= 3);
    assert_int_equal(w.downs, 0);
    assert_true(health_checker_up(w.hc, 0));
    assert_int_equal(s->last_status, 200);
    char want[128];
    rp_snprintf(want, sizeof want, "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", port);
    assert_memory_equal(peer.first_request, want, strlen(want));
    assert_non_null(strstr(peer.first_request, "Connection: close\r\n"));

    /* 500: down after two failed checks, i.e. within about two intervals. */
    peer.mode = MODE_500;
    uint64_t ms = run_until(&w, false, 2000);
    assert_int_equal(w.downs, 1);
    assert_true(ms <= 2 * 100 + 300); /* two intervals, with slack for a loaded machine */
    assert_false(health_checker_up(w.hc, 0));
    assert_int_equal(s->last_result, HEALTH_FAIL_STATUS);
    assert_int_equal(s->last_status, 500);
    assert_true(health_checker_weight(w.hc, 0, ev_now(loop)) == 0.0);

    /* 200 again: up after two passes, and ramping. */
    peer.mode = MODE_200;
    ms = run_until(&w, true, 2000);
    assert_int_equal(w.ups, 1);
    assert_true(ms <= 2 * 100 + 300); /* two intervals, with slack for a loaded machine */
    double wt = health_checker_weight(w.hc, 0, ev_now(loop));
    assert_true(wt >= HEALTH_SLOW_START_FLOOR && wt < 0.2);

    /* Accepts but never answers: the check times out. */
    peer.mode = MODE_SILENT;
    ms = run_until(&w, false, 2000);
    assert_int_equal(w.downs, 2);
    assert_int_equal(s->last_result, HEALTH_FAIL_TIMEOUT);
    assert_true(s->checks_total[HEALTH_FAIL_TIMEOUT] >= 2);

    /* Metrics list the server. */
    struct sbuf m;
    sbuf_init(&m, 0);
    health_metrics_render(&m, &set);
    sbuf_add(&m, "", 1);
    char line[160];
    rp_snprintf(line, sizeof line, "rampart_health_up{upstream=\"llm\",server=\"127.0.0.1:%d\"} 0\n", port);
    assert_non_null(strstr(m.data, line));
    assert_non_null(strstr(m.data, "result=\"timeout\"} "));
    sbuf_free(&m);

    /* A freed checker leaves its set: nothing left to render. */
    health_checker_free(w.hc);
    assert_null(set.head);
    sbuf_init(&m, 0);
    health_metrics_render(&m, &set);
    assert_int_equal(m.len, 0);
    sbuf_free(&m);
    ev_del(loop, peer.lfd);
    close(peer.lfd);
    for (size_t i = 0; i < peer.num_silent; i++)
        close(peer.silent_fds[i]);

    /* A closed port: refused, down after `fall` checks. */
    struct watch w2 = {.loop = loop};
    ev_timer_init(&w2.deadline, on_deadline, NULL);
    w2.hc = health_checker_new(loop, "gone", &c, &srv, 1, on_change, &w2);
    run_until(&w2, false, 2000);
    assert_int_equal(w2.downs, 1);
    assert_int_equal(health_checker_server(w2.hc, 0)->last_result, HEALTH_FAIL_CONNECT);
    health_checker_free(w2.hc);

    /* Disabled: no checker, and the NULL checker says "up". */
    c.enabled = false;
    assert_null(health_checker_new(loop, "off", &c, &srv, 1, NULL, NULL));
    assert_true(health_checker_up(NULL, 0));
    assert_true(health_checker_weight(NULL, 0, 0) == 1.0);
    ev_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rise_fall), cmocka_unit_test(test_slow_start), cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_conf_rows), cmocka_unit_test(test_conf),       cmocka_unit_test(test_checker_io),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

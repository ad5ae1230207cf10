/*
 * test_httpd.c — the embedded server and the admin listener, end to end
 * over loopback sockets.
 *
 * The event loop runs in a second thread with every server started before
 * it (the loop is single-threaded; nothing here touches it concurrently);
 * the test thread is a plain blocking HTTP client.  A timer polls a stop
 * flag so teardown ends the loop from the loop's own thread.
 *
 * Servers:
 *   admin     token file present, routes /admin/ and /admin/echo
 *   admin_ro  no token file (writes -> 403)
 *   echo      bare httpd, tight limits (max_body 64, short timeouts)
 *   small     bare httpd with max_connections 2
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "admin_token.h"
#include "config.h"
#include "httpd.h"
#include "metrics.h"
#include "util.h"

#define TOKEN "s3cret-Token_42-xyz" /* at least ADMIN_TOKEN_MIN characters */

static struct {
    struct ev_loop *loop;
    struct admin *admin, *admin_ro;
    struct httpd *echo, *small;
    struct ev_timer stop_timer;
    atomic_bool stop;
    pthread_t thread;
    char token_path[64];
} S;

/* ---- server side (runs on the loop thread) ---- */

static void echo_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    const char *tag = arg;
    resp->content_type = "text/plain";
    /* /big?N answers N bytes of a known pattern (backpressure test). */
    if (httpd_path_is(req, "/big")) {
        size_t n = (size_t)strtoul(req->query.p, NULL, 10);
        char block[4096];
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = "0123456789abcdef"[i % 16];
        for (size_t done = 0; done < n; done += sizeof block)
            sbuf_add(&resp->body, block, RP_MIN(sizeof block, n - done));
        return;
    }
    if (httpd_path_is(req, "/status")) {
        resp->status = 201;
        httpd_add_header(resp, "X-Test", "yes");
        httpd_add_header(resp, "X-Bad", "a\r\nInjected: 1"); /* refused */
    }
    sbuf_printf(&resp->body, "%s %.*s %.*s?%.*s %zu:", tag, (int)req->msg->method.len, req->msg->method.p,
                (int)req->path.len, req->path.p, (int)req->query.len, req->query.p, req->body_len);
    sbuf_add(&resp->body, req->body, req->body_len);
}

static void render_test_metrics(struct sbuf *out, void *arg)
{
    (void)arg;
    metrics_family(out, "rp_test_metric", "gauge", NULL);
    metrics_sample_u64(out, "rp_test_metric", "", 42);
}

static void stop_check(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    (void)arg;
    if (atomic_load(&S.stop))
        ev_stop(loop);
    else
        ev_timer_arm(loop, t, 10000);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ev_run(S.loop);
    return NULL;
}

static struct config admin_config(const char *token_file)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.has_admin = true;
    struct sockaddr_in *a = (struct sockaddr_in *)&cfg.admin_listen.ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = 0;
    cfg.admin_listen.len = sizeof *a;
    snprintf(cfg.admin_listen.text, sizeof cfg.admin_listen.text, "127.0.0.1:0");
    cfg.admin_token_file = (char *)token_file;
    return cfg;
}

/* The listener from the admin: section as the gateway's main() passes it. */
static struct admin *start_admin(struct ev_loop *loop, const struct config *cfg)
{
    return admin_start(loop, cfg->has_admin ? &cfg->admin_listen : NULL, cfg->admin_token_file);
}

static struct httpd *start_echo(const char *tag, const struct httpd_opts *opts)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return httpd_start(S.loop, (struct sockaddr *)&a, sizeof a, tag, echo_handler, (void *)tag, opts);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    fclose(f);
    return chmod(path, mode);
}

static int group_setup(void **state)
{
    (void)state;
    S.loop = ev_create(4096);
    assert_non_null(S.loop);

    snprintf(S.token_path, sizeof S.token_path, "/tmp/rp-test-token-%d", (int)getpid());
    assert_int_equal(write_file(S.token_path, TOKEN "\n", 0600), 0);

    struct config cfg = admin_config(S.token_path);
    S.admin = start_admin(S.loop, &cfg);
    assert_non_null(S.admin);
    admin_route(S.admin, "/admin/", echo_handler, "admin");
    admin_route(S.admin, "/admin/echo", echo_handler, "admin-echo");
    metrics_clear();
    metrics_register(render_test_metrics, NULL);

    struct config ro = admin_config(NULL);
    S.admin_ro = start_admin(S.loop, &ro);
    assert_non_null(S.admin_ro);
    admin_route(S.admin_ro, "/admin/", echo_handler, "ro");

    struct httpd_opts eo = {
        .max_body = 64,
        .max_connections = 64,
        .idle_timeout_us = 300000,
        .request_timeout_us = 400000,
    };
    S.echo = start_echo("echo", &eo);
    assert_non_null(S.echo);
    struct httpd_opts so = {.max_connections = 2};
    S.small = start_echo("small", &so);
    assert_non_null(S.small);

    ev_timer_init(&S.stop_timer, stop_check, NULL);
    ev_timer_arm(S.loop, &S.stop_timer, 10000);
    assert_int_equal(pthread_create(&S.thread, NULL, loop_main, NULL), 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    atomic_store(&S.stop, true);
    pthread_join(S.thread, NULL);
    ev_timer_cancel(S.loop, &S.stop_timer);
    admin_free(S.admin);
    admin_free(S.admin_ro);
    httpd_free(S.echo);
    httpd_free(S.small);
    ev_destroy(S.loop);
    metrics_clear();
    unlink(S.token_path);
    return 0;
}

/* ---- client side ---- */

struct client {
    int fd;
    char *data;
    size_t len, cap;
};

struct resp {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
};

static void client_open(struct client *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    c->cap = 1 << 16;
    c->data = malloc(c->cap);
}

static void client_close(struct client *c)
{
    close(c->fd);
    free(c->data);
}

static void client_send(struct client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void client_sends(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Read more bytes; 0 on EOF, -1 on timeout/error. */
static ssize_t client_fill(struct client *c)
{
    if (c->len == c->cap) {
        c->cap *= 2;
        c->data = realloc(c->data, c->cap);
    }
    ssize_t n = recv(c->fd, c->data + c->len, c->cap - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

/* Read one response (head, then Content-Length bytes unless no_body).
 * Returns 0, or -1 when the connection ended first. */
static int read_response(struct client *c, struct resp *r, bool no_body)
{
    char *end;
    memset(r, 0, sizeof *r);
    while (!(end = memmem(c->data, c->len, "\r\n\r\n", 4)))
        if (client_fill(c) <= 0)
            return -1;
    size_t head_len = (size_t)(end - c->data) + 4;
    assert_true(head_len < sizeof r->head);
    memcpy(r->head, c->data, head_len);
    r->head[head_len] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    const char *cl = strcasestr(r->head, "\r\ncontent-length:");
    if (cl && !no_body && r->status >= 200)
        r->body_len = strtoul(cl + 17, NULL, 10);
    while (c->len < head_len + r->body_len)
        if (client_fill(c) <= 0)
            return -1;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, c->data + head_len, r->body_len);
    r->body[r->body_len] = '\0';
    size_t used = head_len + r->body_len;
    memmove(c->data, c->data + used, c->len - used);
    c->len -= used;
    return 0;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* true when the server closed the connection (EOF) with nothing more. */
static bool closed_by_server(struct client *c)
{
    return c->len == 0 && client_fill(c) == 0;
}

/* One request on a fresh connection; returns the response. */
static void roundtrip(int port, const char *req, struct resp *r)
{
    struct client c;
    client_open(&c, port);
    client_sends(&c, req);
    assert_int_equal(read_response(&c, r, strncmp(req, "HEAD ", 5) == 0), 0);
    client_close(&c);
}

static bool has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- admin ---- */

static void test_healthz(void **state)
{
    (void)state;
    struct resp r;
    roundtrip(admin_port(S.admin), "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}\n");
    assert_true(has_header(&r, "\r\nContent-Type: application/json\r\n"));
    assert_true(has_header(&r, "\r\nDate: "));
    assert_false(has_header(&r, "Connection: close"));
    resp_free(&r);

    /* HEAD: same headers, no body (the next response on the connection
     * would be corrupted otherwise). */
    struct client c;
    client_open(&c, admin_port(S.admin));
    client_sends(&c, "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(read_response(&c, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Length: 16\r\n"));
    resp_free(&r);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "{\"status\":\"ok\"}\n");
    resp_free(&r);
    client_close(&c);
}

static void test_metrics_page(void **state)
{
    (void)state;
    struct resp r;
    roundtrip(admin_port(S.admin), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(r.body, "# TYPE rampart_up gauge\nrampart_up 1\n"));
    assert_non_null(strstr(r.body, "rampart_build_info{version=\"" RP_VERSION "\"} 1\n"));
    assert_non_null(strstr(r.body, "\nprocess_start_time_seconds "));
    assert_non_null(strstr(r.body, "# TYPE rp_test_metric gauge\nrp_test_metric 42\n"));
    resp_free(&r);
}

static void test_admin_auth(void **state)
{
    (void)state;
    int port = admin_port(S.admin);
    struct resp r;

    roundtrip(port, "POST /admin/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", &r);
    assert_int_equal(r.status, 401);
    assert_true(has_header(&r, "\r\nWWW-Authenticate: Bearer"));
    assert_non_null(strstr(r.body, "\"type\":\"authentication_error\""));
    assert_null(strstr(r.body, TOKEN));
    resp_free(&r);

    roundtrip(port,
              "POST /admin/echo HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN "x\r\n"
              "Content-Length: 2\r\n\r\nhi",
              &r);
    assert_int_equal(r.status, 401);
    assert_true(has_header(&r, "\r\nWWW-Authenticate: Bearer"));
    resp_free(&r);

    /* A prefix of the token is not the token. */
    roundtrip(port, "DELETE /admin/echo HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\n\r\n", &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    roundtrip(port, "POST /admin/echo HTTP/1.1\r\nHost: a\r\nAuthorization: Basic " TOKEN "\r\n\r\n", &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    /* Unknown paths are refused before routing: no probing without the
     * token. */
    roundtrip(port, "POST /nope HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    roundtrip(port,
              "POST /admin/echo/x?y=1 HTTP/1.1\r\nHost: a\r\nAuthorization: bearer  " TOKEN "\r\n"
              "Content-Length: 2\r\n\r\nhi",
              &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "admin-echo POST /admin/echo/x?y=1 2:hi");
    resp_free(&r);

    /* Reads are open; the longest registered prefix wins. */
    roundtrip(port, "GET /admin/other HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "admin GET /admin/other? 0:");
    resp_free(&r);

    roundtrip(port, "POST /healthz HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "\r\nAllow: GET, HEAD\r\n"));
    resp_free(&r);
}

static void test_admin_no_token_file(void **state)
{
    (void)state;
    struct resp r;
    roundtrip(admin_port(S.admin_ro), "POST /admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN "\r\n\r\n",
              &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "{\"error\":{\"message\":\"admin writes are disabled: set admin.token_file\","
                                   "\"type\":\"forbidden\","));
    resp_free(&r);
    roundtrip(admin_port(S.admin_ro), "GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_admin_not_found(void **state)
{
    (void)state;
    struct resp r;
    roundtrip(admin_port(S.admin), "GET /nothing/here HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_true(has_header(&r, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(r.body, "{\"error\":{\"message\":"));
    assert_non_null(strstr(r.body, "\"type\":\"not_found_error\""));
    resp_free(&r);
}

static void test_admin_token_file_errors(void **state)
{
    (void)state;
    /* A separate loop: the shared one belongs to the loop thread. */
    struct ev_loop *loop = ev_create(64);
    char path[64];
    snprintf(path, sizeof path, "/tmp/rp-test-empty-%d", (int)getpid());

    struct config cfg = admin_config("/nonexistent/rampart-token");
    assert_null(start_admin(loop, &cfg));

    assert_int_equal(write_file(path, "\n \n", 0600), 0);
    cfg = admin_config(path);
    assert_null(start_admin(loop, &cfg));

    assert_int_equal(write_file(path, "two words\n", 0600), 0);
    assert_null(start_admin(loop, &cfg));

    /* Refused, not warned about: open to group or others, or guessable. */
    assert_int_equal(write_file(path, TOKEN "\n", 0644), 0);
    assert_null(start_admin(loop, &cfg));
    assert_int_equal(write_file(path, TOKEN "\n", 0640), 0);
    assert_null(start_admin(loop, &cfg));
    assert_int_equal(write_file(path, "fifteen-chars-x\n", 0600), 0);
    assert_null(start_admin(loop, &cfg));
    assert_int_equal(write_file(path, "sixteen-chars-xy\n", 0600), 0);
    struct admin *ok = start_admin(loop, &cfg);
    assert_non_null(ok);
    admin_free(ok);

    struct config none;
    memset(&none, 0, sizeof none);
    assert_null(start_admin(loop, &none));

    unlink(path);
    ev_destroy(loop);
}

static void test_admin_token_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        int rc;
        size_t start, tlen;
        const char *why;
    } cases[] = {
        {"0123456789abcdef", 16, RP_OK, 0, 16, NULL},
        {" \t0123456789abcdef\r\n\n", 21, RP_OK, 2, 16, NULL},
        {"0123456789abcde\n", 16, RP_ERR, 0, 0, "the token is 15 characters, at least 16 are required"},
        {"", 0, RP_ERR, 0, 0, "empty"},
        {" \r\n\t", 4, RP_ERR, 0, 0, "empty"},
        {"0123456789\tabcdef", 17, RP_ERR, 0, 0, "the token contains whitespace or non-printable bytes"},
        {"0123456789abcdef\x7f", 17, RP_ERR, 0, 0, "the token contains whitespace or non-printable bytes"},
        {"0123456789abcdef\xc3\xa9", 18, RP_ERR, 0, 0, "the token contains whitespace or non-printable bytes"},
        {"0123456789\0abcdef", 17, RP_ERR, 0, 0, "the token contains whitespace or non-printable bytes"},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        size_t start = 99, tlen = 99;
        char why[128] = "";
        int rc = admin_token_parse(cases[i].in, cases[i].len, &start, &tlen, why, sizeof why);
        assert_int_equal(rc, cases[i].rc);
        if (rc == RP_OK) {
            assert_int_equal(start, cases[i].start);
            assert_int_equal(tlen, cases[i].tlen);
        } else {
            assert_string_equal(why, cases[i].why);
        }
    }
}

/* ---- httpd ---- */

static void test_pipelined_in_order(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    client_open(&c, httpd_port(S.echo));
    client_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                     "GET /c?q HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /a? 0:");
    resp_free(&r);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo POST /b? 3:abc");
    resp_free(&r);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /c?q 0:");
    resp_free(&r);

    /* More than one wakeup's budget of pipelined requests. */
    char req[64];
    for (int i = 0; i < 40; i++) {
        snprintf(req, sizeof req, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        client_sends(&c, req);
    }
    for (int i = 0; i < 40; i++) {
        char want[64];
        snprintf(want, sizeof want, "echo GET /p%d? 0:", i);
        assert_int_equal(read_response(&c, &r, false), 0);
        assert_string_equal(r.body, want);
        resp_free(&r);
    }
    client_close(&c);
}

/* A head and body trickling in a byte at a time (resumed parsing). */
static void test_byte_by_byte(void **state)
{
    (void)state;
    static const char req[] = "POST /slow?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
                              "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    struct client c;
    struct resp r;
    int one = 1;
    client_open(&c, httpd_port(S.echo));
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; i < sizeof req - 1; i++) {
        client_send(&c, &req[i], 1);
        usleep(300);
    }
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo POST /slow?x=1 4:body");
    resp_free(&r);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /next? 0:");
    resp_free(&r);
    client_close(&c);
}

static void test_status_and_headers(void **state)
{
    (void)state;
    struct resp r;
    roundtrip(httpd_port(S.echo), "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 201);
    assert_true(has_header(&r, "\r\nX-Test: yes\r\n"));
    assert_false(has_header(&r, "Injected"));
    assert_true(has_header(&r, "\r\nContent-Type: text/plain\r\n"));
    resp_free(&r);
}

static void test_body_limits(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    int port = httpd_port(S.echo);

    /* Declared too large: refused from the head, connection closed. */
    client_open(&c, port);
    client_sends(&c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);

    /* Exactly max_body is fine. */
    char big[256];
    snprintf(big, sizeof big, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n%064d", 7);
    roundtrip(port, big, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen("echo POST /x? 64:") + 64);
    resp_free(&r);

    /* Chunked: decoded; and too large once decoded. */
    roundtrip(port,
              "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
              &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "echo POST /x? 11:hello world");
    resp_free(&r);

    client_open(&c, port);
    client_sends(&c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++)
        client_sends(&c, "10\r\n0123456789abcdef\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    client_close(&c);

    /* Broken chunked framing. */
    roundtrip(port, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_expect_continue(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    client_open(&c, httpd_port(S.echo));
    client_sends(&c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 100);
    resp_free(&r);
    client_sends(&c, "hello");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "echo POST /x? 5:hello");
    resp_free(&r);
    client_close(&c);
}

static void test_malformed(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    client_open(&c, httpd_port(S.echo));
    client_sends(&c, "GARBAGE\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(r.body, "{\"error\":{\"message\":\""));
    assert_non_null(strstr(r.body, "\"param\":null,\"code\":null}}"));
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);

    /* An expectation we cannot meet. */
    roundtrip(httpd_port(S.echo), "POST / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", &r);
    assert_int_equal(r.status, 417);
    resp_free(&r);

    /* Missing Host on HTTP/1.1. */
    roundtrip(httpd_port(S.echo), "GET / HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    /* A head larger than the input buffer. */
    client_open(&c, httpd_port(S.echo));
    client_sends(&c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    char pad[1024];
    memset(pad, 'a', sizeof pad);
    for (int i = 0; i < 20; i++)
        client_send(&c, pad, sizeof pad);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    client_close(&c);
}

static void test_connection_close_and_http10(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    int port = httpd_port(S.echo);

    client_open(&c, port);
    client_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /a? 0:");
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    resp_free(&r);
    assert_true(closed_by_server(&c)); /* /b is never answered */
    client_close(&c);

    client_open(&c, port);
    client_sends(&c, "GET /a HTTP/1.0\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);

    client_open(&c, port);
    client_sends(&c, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_true(has_header(&r, "\r\nConnection: keep-alive\r\n"));
    resp_free(&r);
    client_sends(&c, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /b? 0:");
    resp_free(&r);
    client_close(&c);

    /* Half-close after the request: still answered. */
    client_open(&c, port);
    client_sends(&c, "GET /h HTTP/1.1\r\nHost: x\r\n\r\n");
    shutdown(c.fd, SHUT_WR);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "echo GET /h? 0:");
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);
}

static void test_timeouts(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    int port = httpd_port(S.echo);

    /* Idle keep-alive connection: closed after idle_timeout (300ms). */
    client_open(&c, port);
    client_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    resp_free(&r);
    double t0 = now_s();
    assert_true(closed_by_server(&c));
    double dt = now_s() - t0;
    assert_true(dt > 0.2 && dt < 3.0);
    client_close(&c);

    /* A request that never completes: 408 after request_timeout. */
    client_open(&c, port);
    client_sends(&c, "GET /a HTTP/1.1\r\nHost: x\r\n");
    t0 = now_s();
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 408);
    assert_true(now_s() - t0 > 0.3);
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);

    /* A connection that never speaks is closed too. */
    client_open(&c, port);
    assert_true(closed_by_server(&c));
    client_close(&c);
}

static void test_large_response_backpressure(void **state)
{
    (void)state;
    struct client c;
    struct resp r;
    const size_t n = 8u << 20;
    client_open(&c, httpd_port(S.small));
    client_sends(&c, "GET /big?8388608 HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Let the server fill the socket and wait for EV_WRITE. */
    usleep(100000);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, n);
    for (size_t i = 0; i < n; i += 4099)
        assert_int_equal(r.body[i], "0123456789abcdef"[i % 16]);
    resp_free(&r);
    /* The connection is still usable afterwards. */
    client_sends(&c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_string_equal(r.body, "small GET /after? 0:");
    resp_free(&r);
    client_close(&c);
}

/* ---- the request path without sockets ---- */

/* Responses with their Date lines removed (the clock may tick between two
 * runs). */
static void strip_dates(struct sbuf *s)
{
    char *p;
    while ((p = strstr(s->data, "\r\nDate: ")) != NULL) {
        char *e = strstr(p + 2, "\r\n");
        memmove(p, e, s->len - (size_t)(e - s->data) + 1);
        s->len -= (size_t)(e - p);
    }
}

static void test_serve_bytes_any_split(void **state)
{
    (void)state;
    static const char req[] = "GET /a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n0\r\n\r\n"
                              "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
                              "GET /never HTTP/1.1\r\n\r\n";
    const size_t n = sizeof req - 1;
    struct httpd_opts o = {.max_body = 64};
    struct sbuf whole, split;
    sbuf_init(&whole, 1 << 20);
    sbuf_init(&split, 1 << 20);

    const char *p1[] = {req};
    size_t l1[] = {n};
    assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, p1, l1, 1, &whole), 3);
    strip_dates(&whole);
    assert_non_null(strstr(whole.data, "d GET /a?x=1 0:"));
    assert_non_null(strstr(whole.data, "d POST /b? 3:abc"));
    assert_non_null(strstr(whole.data, "Connection: close\r\n\r\nd POST /c? 2:hi"));
    assert_null(strstr(whole.data, "/never")); /* after Connection: close */

    /* Every single cut, then byte by byte: the same bytes out. */
    for (size_t cut = 0; cut <= n; cut++) {
        const char *p2[] = {req, req + cut};
        size_t l2[] = {cut, n - cut};
        sbuf_reset(&split);
        assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, p2, l2, 2, &split), 3);
        strip_dates(&split);
        assert_int_equal(split.len, whole.len);
        assert_memory_equal(split.data, whole.data, whole.len);
    }
    const char *bytes[sizeof req];
    size_t ones[sizeof req];
    for (size_t i = 0; i < n; i++) {
        bytes[i] = req + i;
        ones[i] = 1;
    }
    sbuf_reset(&split);
    assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, bytes, ones, n, &split), 3);
    strip_dates(&split);
    assert_string_equal(split.data, whole.data);

    /* A malformed head is answered once, then the connection closes. */
    const char bad[] = "GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    const char *p3[] = {bad};
    size_t l3[] = {sizeof bad - 1};
    sbuf_reset(&split);
    assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, p3, l3, 1, &split), 1);
    assert_true(strncmp(split.data, "HTTP/1.1 400 ", 13) == 0);

    /* An absolute-form target without "//host" has no path (found by
     * fuzz_httpd): 400, never a handler call with "http:,/x" as path. */
    const char nopath[] = "GET http:,/api/v1/summary.json HTTP/1.1\r\nHost: a\r\n\r\n";
    const char *p4[] = {nopath};
    size_t l4[] = {sizeof nopath - 1};
    sbuf_reset(&split);
    assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, p4, l4, 1, &split), 1);
    assert_true(strncmp(split.data, "HTTP/1.1 400 ", 13) == 0);
    assert_non_null(strstr(split.data, "invalid request target"));

    /* Chunk data past max_body, then a framing error (found by
     * fuzz_httpd): 413 whether or not a read splits the two. */
    char over[200];
    int ol = snprintf(over, sizeof over,
                      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                      "40\r\n%064dXX",
                      0);
    for (size_t cut = 0; cut <= (size_t)ol; cut++) {
        const char *p5[] = {over, over + cut};
        size_t l5[] = {cut, (size_t)ol - cut};
        sbuf_reset(&split);
        assert_int_equal(httpd_serve_bytes("t", echo_handler, "d", &o, p5, l5, 2, &split), 1);
        assert_true(strncmp(split.data, "HTTP/1.1 413 ", 13) == 0);
    }
    sbuf_free(&whole);
    sbuf_free(&split);
}

static void test_max_connections(void **state)
{
    (void)state;
    struct client a, b, c;
    struct resp r;
    int port = httpd_port(S.small);

    usleep(100000); /* let the server notice earlier tests' closes */
    client_open(&a, port);
    client_open(&b, port);
    /* A response on each proves both were accepted and counted. */
    client_sends(&a, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&a, &r, false), 0);
    resp_free(&r);
    client_sends(&b, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&b, &r, false), 0);
    resp_free(&r);

    client_open(&c, port);
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    resp_free(&r);
    assert_true(closed_by_server(&c));
    client_close(&c);

    /* Capacity comes back when a connection goes. */
    client_close(&a);
    usleep(50000);
    client_open(&c, port);
    client_sends(&c, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(&c);
    client_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),           cmocka_unit_test(test_metrics_page),
        cmocka_unit_test(test_admin_auth),        cmocka_unit_test(test_admin_no_token_file),
        cmocka_unit_test(test_admin_not_found),   cmocka_unit_test(test_admin_token_file_errors),
        cmocka_unit_test(test_admin_token_parse), cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_byte_by_byte),      cmocka_unit_test(test_status_and_headers),
        cmocka_unit_test(test_body_limits),       cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_malformed),         cmocka_unit_test(test_connection_close_and_http10),
        cmocka_unit_test(test_timeouts),          cmocka_unit_test(test_large_response_backpressure),
        cmocka_unit_test(test_max_connections),   cmocka_unit_test(test_serve_bytes_any_split),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

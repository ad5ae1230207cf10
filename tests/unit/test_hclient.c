/*
 * test_hclient.c — the outgoing HTTP client on a real loop against a real
 * loopback server run by the same loop: each framing (Content-Length,
 * chunked, close-delimited, none), the bound on the kept body, an interim
 * 100 answer, refused connections and silent servers, a response cut
 * short, malformed heads, cancellation, and name resolution (numeric and
 * through the resolver thread).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ev.h"
#include "hclient.h"
#include "net.h"
#include "util.h"

/* A server that reads one request head and answers with canned bytes,
 * then closes (or, with hold, keeps the connection open and silent). */
struct server {
    struct ev_loop *loop;
    int lfd, cfd;
    int port;
    const char *answer;
    size_t answer_len;
    bool hold;
    bool silent; /* never answer */
    char req[8192];
    size_t req_len;
};

struct outcome {
    int calls;
    int status;
    char error[128];
    char body[4096];
    size_t body_len;
    bool has_error;
    struct ev_loop *loop;
};

static void srv_conn(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct server *s = arg;
    RP_UNUSED(events);
    ssize_t n = recv(fd, s->req + s->req_len, sizeof s->req - 1 - s->req_len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        ev_del(loop, fd);
        close(fd);
        s->cfd = -1;
        return;
    }
    s->req_len += (size_t)n;
    s->req[s->req_len] = '\0';
    char *end = strstr(s->req, "\r\n\r\n");
    if (end == NULL || s->silent)
        return;
    /* Wait for the body as announced. */
    const char *cl = strstr(s->req, "Content-Length: ");
    size_t want = cl ? (size_t)atoi(cl + 16) : 0;
    if (s->req_len < (size_t)(end + 4 - s->req) + want)
        return;
    ssize_t w = send(fd, s->answer, s->answer_len, MSG_NOSIGNAL);
    assert_int_equal((size_t)w, s->answer_len);
    if (!s->hold) {
        ev_del(loop, fd);
        close(fd);
        s->cfd = -1;
    }
}

static void srv_accept(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    struct server *s = arg;
    RP_UNUSED(events);
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    s->cfd = c;
    assert_int_equal(ev_add(loop, c, EV_READ, srv_conn, s), RP_OK);
}

/* The next server keeps its connection open after answering. */
static bool next_hold;

static void srv_start(struct server *s, struct ev_loop *loop, const char *answer)
{
    memset(s, 0, sizeof *s);
    s->hold = next_hold;
    s->loop = loop;
    s->cfd = -1;
    s->answer = answer;
    s->answer_len = answer ? strlen(answer) : 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->lfd = net_listen((const struct sockaddr *)&a, sizeof a, 16);
    assert_true(s->lfd >= 0);
    s->port = net_local_port(s->lfd);
    assert_int_equal(ev_add(loop, s->lfd, EV_READ, srv_accept, s), RP_OK);
}

static void srv_stop(struct server *s)
{
    if (s->cfd >= 0) {
        ev_del(s->loop, s->cfd);
        close(s->cfd);
    }
    ev_del(s->loop, s->lfd);
    close(s->lfd);
}

static void done(void *arg, const struct hclient_result *r)
{
    struct outcome *o = arg;
    o->calls++;
    o->status = r->status;
    o->has_error = r->error != NULL;
    rp_snprintf(o->error, sizeof o->error, "%s", r->error ? r->error : "");
    o->body_len = RP_MIN(r->body_len, sizeof o->body);
    memcpy(o->body, r->body, o->body_len);
    ev_stop(o->loop);
}

static void guard(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    RP_UNUSED(arg);
    ev_stop(loop);
}

/* Run one exchange against a server answering answer; body_max bytes kept. */
static void exchange(const char *answer, size_t body_max, struct outcome *o, struct server *s, const char *method,
                     const char *body)
{
    struct ev_loop *loop = ev_create(256);
    assert_non_null(loop);
    srv_start(s, loop, answer);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(o, 0, sizeof *o);
    o->loop = loop;
    struct hclient_req rq = {.addr = (const struct sockaddr *)&a,
                             .addr_len = sizeof a,
                             .method = method,
                             .host = "example.test",
                             .target = "/hook?x=1",
                             .headers = "X-Test: yes\r\n",
                             .body = body,
                             .body_len = body ? strlen(body) : 0,
                             .timeout_us = 500000,
                             .body_max = body_max};
    struct hclient *h = hclient_start(loop, &rq, done, o);
    assert_non_null(h);
    assert_int_equal(o->calls, 0); /* never from inside hclient_start */
    struct ev_timer g;
    ev_timer_init(&g, guard, NULL);
    ev_timer_arm(loop, &g, 5000000);
    assert_int_equal(ev_run(loop), RP_OK);
    ev_timer_cancel(loop, &g);
    srv_stop(s);
    ev_destroy(loop);
}

static void test_content_length(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    exchange("HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello", 64, &o, &s, "POST", "{\"a\":1}");
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 201);
    assert_int_equal(o.body_len, 5);
    assert_memory_equal(o.body, "hello", 5);
    /* The request as sent: method, target, Host, extra header, framing, body. */
    assert_non_null(strstr(s.req, "POST /hook?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(s.req, "\r\nHost: example.test\r\n"));
    assert_non_null(strstr(s.req, "\r\nX-Test: yes\r\n"));
    assert_non_null(strstr(s.req, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(s.req, "\r\nContent-Length: 7\r\n\r\n{\"a\":1}"));
}

static void test_chunked_and_bound(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", 6, &o, &s,
             "GET", NULL);
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body_len, 6); /* body_max */
    assert_memory_equal(o.body, "abcdef", 6);
    assert_null(strstr(s.req, "Content-Length")); /* a GET without body announces none */
}

static void test_close_delimited_and_interim(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    exchange("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close", 64, &o, &s, "GET", NULL);
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body_len, 11);
    assert_memory_equal(o.body, "until close", 11);
}

static void test_no_body_and_head(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    next_hold = true;
    /* 204 has no body: the exchange ends at the head even though the
     * server keeps the connection open. */
    exchange("HTTP/1.1 204 No Content\r\n\r\n", 64, &o, &s, "DELETE", NULL);
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 204);
    exchange("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 64, &o, &s, "HEAD", NULL);
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body_len, 0);
    next_hold = false;
}

static void test_cut_and_bad(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    exchange("HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nabc", 64, &o, &s, "GET", NULL);
    assert_int_equal(o.calls, 1);
    assert_true(o.has_error);
    assert_string_equal(o.error, "response cut short");
    assert_int_equal(o.status, 500);
    exchange("HTTP/1.1 2000 What\r\n\r\n", 64, &o, &s, "GET", NULL);
    assert_true(o.has_error);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.error, "bad response"));
    exchange("", 64, &o, &s, "GET", NULL);
    assert_true(o.has_error);
    assert_string_equal(o.error, "closed before a response");
    exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 64, &o, &s, "GET", NULL);
    assert_true(o.has_error);
    assert_non_null(strstr(o.error, "bad response"));
}

static void test_timeout(void **state)
{
    RP_UNUSED(state);
    struct outcome o;
    struct server s;
    struct ev_loop *loop = ev_create(256);
    srv_start(&s, loop, NULL);
    s.silent = true;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)s.port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(&o, 0, sizeof o);
    o.loop = loop;
    struct hclient_req rq = {.addr = (const struct sockaddr *)&a,
                             .addr_len = sizeof a,
                             .method = "GET",
                             .host = "h",
                             .target = "/",
                             .timeout_us = 100000};
    assert_non_null(hclient_start(loop, &rq, done, &o));
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.error, "timeout");
    srv_stop(&s);
    ev_destroy(loop);
}

static void test_refused_and_invalid(void **state)
{
    RP_UNUSED(state);
    struct ev_loop *loop = ev_create(256);
    /* A port nobody listens on: bind one, note it, close it. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = net_listen((const struct sockaddr *)&a, sizeof a, 1);
    int port = net_local_port(fd);
    close(fd);
    a.sin_port = htons((uint16_t)port);
    struct outcome o = {.loop = loop};
    struct hclient_req rq = {
        .addr = (const struct sockaddr *)&a, .addr_len = sizeof a, .method = "GET", .host = "h", .target = "/"};
    assert_non_null(hclient_start(loop, &rq, done, &o));
    assert_int_equal(o.calls, 0);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.error, "connect: Connection refused");

    /* Header injection through a field is refused up front. */
    rq.target = "/\r\nX-Evil: 1";
    assert_null(hclient_start(loop, &rq, done, &o));
    rq.target = "/";
    rq.host = "";
    assert_null(hclient_start(loop, &rq, done, &o));
    ev_destroy(loop);
}

static void test_cancel(void **state)
{
    RP_UNUSED(state);
    struct ev_loop *loop = ev_create(256);
    struct server s;
    srv_start(&s, loop, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)s.port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct outcome o = {.loop = loop};
    struct hclient_req rq = {
        .addr = (const struct sockaddr *)&a, .addr_len = sizeof a, .method = "GET", .host = "h", .target = "/"};
    struct hclient *h = hclient_start(loop, &rq, done, &o);
    assert_non_null(h);
    hclient_cancel(h);
    struct ev_timer g;
    ev_timer_init(&g, guard, NULL);
    ev_timer_arm(loop, &g, 200000);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(o.calls, 0);
    srv_stop(&s);
    ev_destroy(loop);
}

/* ---- HTTPS ----
 *
 * A self-signed certificate for "localhost" and 127.0.0.1 made at test
 * time, and a TLS server in a thread (blocking I/O: it is the peer, not
 * the code under test) that answers one request per connection. */

struct tls_server {
    SSL_CTX *ctx;
    int lfd, port;
    int conns; /* connections to serve, then the thread ends */
    char ca_path[64];
    pthread_t tid;
};

static void add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static void tls_server_init(struct tls_server *t, int conns)
{
    memset(t, 0, sizeof *t);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    add_ext(cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);

    rp_snprintf(t->ca_path, sizeof t->ca_path, "/tmp/rampart-test-ca-%d.pem", (int)getpid());
    FILE *f = fopen(t->ca_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, cert);
    fclose(f);

    t->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(t->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(t->ctx, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    t->lfd = net_listen((const struct sockaddr *)&a, sizeof a, 16);
    assert_true(t->lfd >= 0);
    t->port = net_local_port(t->lfd);
    t->conns = conns;
}

static void *tls_server_run(void *arg)
{
    struct tls_server *t = arg;
    for (int i = 0; i < t->conns; i++) {
        int c = -1;
        while (c < 0) {
            c = accept(t->lfd, NULL, NULL); /* the listener is non-blocking */
            if (c < 0)
                usleep(1000);
        }
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            char req[4096];
            size_t len = 0;
            while (len < sizeof req - 1) {
                int n = SSL_read(ssl, req + len, (int)(sizeof req - 1 - len));
                if (n <= 0)
                    break;
                len += (size_t)n;
                req[len] = '\0';
                if (strstr(req, "\r\n\r\n"))
                    break;
            }
            const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure";
            SSL_write(ssl, answer, (int)strlen(answer));
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(c);
    }
    return NULL;
}

static void tls_server_done(struct tls_server *t)
{
    pthread_join(t->tid, NULL);
    close(t->lfd);
    SSL_CTX_free(t->ctx);
    unlink(t->ca_path);
}

static void https_exchange(SSL_CTX *ctx, int port, const char *tls_name, struct outcome *o)
{
    struct ev_loop *loop = ev_create(256);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(o, 0, sizeof *o);
    o->loop = loop;
    struct hclient_req rq = {.addr = (const struct sockaddr *)&a,
                             .addr_len = sizeof a,
                             .method = "GET",
                             .host = "localhost:8443",
                             .target = "/",
                             .timeout_us = 3000000,
                             .body_max = 64,
                             .tls_ctx = ctx,
                             .tls_name = tls_name};
    assert_non_null(hclient_start(loop, &rq, done, o));
    assert_int_equal(ev_run(loop), RP_OK);
    ev_destroy(loop);
}

static void test_https(void **state)
{
    RP_UNUSED(state);
    struct tls_server t;
    tls_server_init(&t, 3);
    assert_int_equal(pthread_create(&t.tid, NULL, tls_server_run, &t), 0);
    char err[128];
    SSL_CTX *ctx = hclient_tls_ctx_new(t.ca_path, err, sizeof err);
    assert_non_null(ctx);

    struct outcome o;
    /* The name comes from Host without its port. */
    https_exchange(ctx, t.port, NULL, &o);
    assert_int_equal(o.calls, 1);
    assert_false(o.has_error);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body_len, 6);
    assert_memory_equal(o.body, "secure", 6);

    /* A certificate for another name is refused before the request leaves. */
    https_exchange(ctx, t.port, "api.example.com", &o);
    assert_true(o.has_error);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.error, "tls: handshake"));
    assert_non_null(strstr(o.error, "mismatch"));
    print_message("wrong name: %s\n", o.error);
    hclient_tls_ctx_free(ctx);

    /* Trusting the system store only: the self-signed certificate fails. */
    ctx = hclient_tls_ctx_new(NULL, err, sizeof err);
    assert_non_null(ctx);
    https_exchange(ctx, t.port, NULL, &o);
    assert_true(o.has_error);
    assert_non_null(strstr(o.error, "tls: handshake"));
    print_message("untrusted: %s\n", o.error);
    hclient_tls_ctx_free(ctx);

    assert_null(hclient_tls_ctx_new("/nonexistent/ca.pem", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    print_message("missing CA file: %s\n", err);
    tls_server_done(&t);
}

struct resolved {
    int calls;
    int family;
    int port;
    char error[128];
    struct ev_loop *loop;
};

static void on_resolved(void *arg, const struct sockaddr *addr, socklen_t len, const char *error)
{
    struct resolved *r = arg;
    r->calls++;
    RP_UNUSED(len);
    if (addr) {
        r->family = addr->sa_family;
        r->port = addr->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)addr)->sin_port)
                                             : ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    }
    rp_snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    ev_stop(r->loop);
}

static void test_resolve(void **state)
{
    RP_UNUSED(state);
    struct ev_loop *loop = ev_create(256);
    struct ev_timer g;
    ev_timer_init(&g, guard, NULL);

    struct resolved r = {.loop = loop};
    assert_non_null(hclient_resolve_start(loop, "127.0.0.1", "8080", on_resolved, &r));
    assert_int_equal(r.calls, 0);
    ev_timer_arm(loop, &g, 5000000);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.family, AF_INET);
    assert_int_equal(r.port, 8080);

    /* A name goes through the resolver thread (/etc/hosts has localhost). */
    memset(&r, 0, sizeof r);
    r.loop = loop;
    assert_non_null(hclient_resolve_start(loop, "localhost", "443", on_resolved, &r));
    assert_int_equal(r.calls, 0);
    ev_timer_arm(loop, &g, 10000000);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.port, 443);
    assert_true(r.family == AF_INET || r.family == AF_INET6);

    /* A lookup that fails (an unknown service name, so that no DNS server
     * is needed) reports a reason. */
    memset(&r, 0, sizeof r);
    r.loop = loop;
    assert_non_null(hclient_resolve_start(loop, "localhost", "no-such-service-name", on_resolved, &r));
    ev_timer_arm(loop, &g, 20000000);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.family, 0);
    assert_true(r.error[0] != '\0');

    /* Cancelled lookups never call back, numeric or not. */
    memset(&r, 0, sizeof r);
    r.loop = loop;
    hclient_resolve_cancel(hclient_resolve_start(loop, "127.0.0.1", "1", on_resolved, &r));
    hclient_resolve_cancel(hclient_resolve_start(loop, "localhost", "1", on_resolved, &r));
    ev_timer_arm(loop, &g, 300000);
    assert_int_equal(ev_run(loop), RP_OK);
    assert_int_equal(r.calls, 0);

    assert_null(hclient_resolve_start(loop, "", "80", on_resolved, &r));
    ev_timer_cancel(loop, &g);
    ev_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked_and_bound),
        cmocka_unit_test(test_close_delimited_and_interim),
        cmocka_unit_test(test_no_body_and_head),
        cmocka_unit_test(test_cut_and_bad),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused_and_invalid),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_https),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_upstream.c — servers, picking and the keep-alive pool, on a real
 * event loop and real loopback sockets: round robin and P2C choose among
 * eligible servers only, a probe (upstream_any) changes no state, an
 * ejected server takes no new requests, a pooled connection comes back
 * only while its peer keeps it open, and a full pool closes instead of
 * growing.
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
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "net.h"
#include "outlier.h"
#include "upstream.h"
#include "util.h"

struct fixture {
    struct ev_loop *loop;
    struct config cfg;
    struct upstream_set *set;
    int lfd[3];
    int port[3];
};

static int listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = net_listen((const struct sockaddr *)&a, sizeof a, 16);
    assert_true(fd >= 0);
    *port = net_local_port(fd);
    assert_true(*port > 0);
    return fd;
}

/* Three servers that accept connections (nobody reads them), with the
 * upstream keys given in extra. */
static void setup(struct fixture *f, const char *extra)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 3; i++)
        f->lfd[i] = listener(&f->port[i]);
    char yaml[1024];
    rp_snprintf(yaml, sizeof yaml,
                "listen: 127.0.0.1:1\n"
                "upstreams:\n"
                "  chat:\n"
                "    servers: [127.0.0.1:%d, 127.0.0.1:%d, 127.0.0.1:%d]\n"
                "%s",
                f->port[0], f->port[1], f->port[2], extra);
    assert_int_equal(config_load_string("u.yaml", yaml, &f->cfg, stderr), RP_OK);
    f->loop = ev_create(256);
    assert_non_null(f->loop);
    f->set = upstream_set_create(f->loop, &f->cfg);
    assert_non_null(f->set);
    assert_int_equal(f->set->num, 1);
    assert_int_equal(f->set->ups[0].num_servers, 3);
}

static void teardown(struct fixture *f)
{
    upstream_set_free(f->set);
    ev_destroy(f->loop);
    config_free(&f->cfg);
    for (int i = 0; i < 3; i++)
        close(f->lfd[i]);
}

static bool not_first(const struct server *s, void *arg)
{
    (void)arg;
    return s->index != 0;
}

static void test_round_robin_cycles_over_eligible_servers(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "    balance: round_robin\n");
    struct upstream *up = &f.set->ups[0];
    int seen[3] = {0};
    for (int i = 0; i < 9; i++)
        seen[upstream_pick(up, NULL, NULL)->index]++;
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 3);
    /* accept filters; a probe does not move the rotation */
    for (int i = 0; i < 4; i++)
        assert_int_not_equal(upstream_pick(up, not_first, NULL)->index, 0);
    unsigned before = up->rr_next;
    assert_true(upstream_any(up, not_first, NULL));
    assert_int_equal(up->rr_next, before);
    /* a disabled server is never chosen, and with none left there is none */
    up->servers[1].usable = false;
    up->servers[2].usable = false;
    for (int i = 0; i < 4; i++)
        assert_int_equal(upstream_pick(up, NULL, NULL)->index, 0);
    assert_null(upstream_pick(up, not_first, NULL));
    assert_false(upstream_any(up, not_first, NULL));
    teardown(&f);
}

static void test_p2c_prefers_fewer_outstanding(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "");
    struct upstream *up = &f.set->ups[0];
    up->servers[0].inflight = 50;
    up->servers[1].inflight = 50;
    up->servers[2].inflight = 0;
    int idle = 0;
    for (int i = 0; i < 200; i++)
        idle += upstream_pick(up, NULL, NULL)->index == 2;
    /* two random choices: the idle server wins whenever it is one of them
     * (2 in 3 of the pairs), never fewer */
    assert_true(idle > 100);
    teardown(&f);
}

static void test_ejected_server_takes_no_new_requests(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "    balance: round_robin\n    outlier: {consecutive_failures: 2}\n");
    struct upstream *up = &f.set->ups[0];
    uint64_t now = rp_now_us();
    assert_true(upstream_server_eligible(&up->servers[1], now));
    upstream_attempt_done(&up->servers[1], OUTLIER_5XX, 0, now);
    assert_true(upstream_server_eligible(&up->servers[1], now));
    upstream_attempt_done(&up->servers[1], OUTLIER_5XX, 0, now);
    assert_false(upstream_server_eligible(&up->servers[1], now));
    for (int i = 0; i < 6; i++)
        assert_int_not_equal(upstream_pick(up, NULL, NULL)->index, 1);
    teardown(&f);
}

/* Connect to server s and accept the other end. */
static struct uconn *connected(struct fixture *f, struct server *s, int *peer)
{
    bool now = false;
    struct uconn *u = upstream_connect(s, &now);
    assert_non_null(u);
    *peer = accept(f->lfd[s->index], NULL, NULL);
    assert_true(*peer >= 0);
    /* loopback: the connect has completed by the time accept returns */
    assert_int_equal(net_connect_result(u->fd), 0);
    assert_int_equal(ev_add(f->loop, u->fd, 0, NULL, u), RP_OK);
    return u;
}

static void test_pool_gives_back_only_live_connections(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, "    pool: {max_idle: 1}\n");
    struct server *s = &f.set->ups[0].servers[0];
    int p1, p2;
    struct uconn *a = connected(&f, s, &p1);
    struct uconn *b = connected(&f, s, &p2);

    upstream_conn_release(a);
    assert_int_equal(s->idle_count, 1);
    /* the pool holds max_idle: the second one is closed, not kept */
    upstream_conn_release(b);
    assert_int_equal(s->idle_count, 1);

    struct uconn *again = upstream_pool_get(s);
    assert_ptr_equal(again, a);
    assert_true(again->reused);
    assert_int_equal(s->idle_count, 0);
    assert_null(upstream_pool_get(s));

    /* a peer that closed while the connection was idle: not handed out */
    upstream_conn_release(again);
    assert_int_equal(s->idle_count, 1);
    close(p1);
    usleep(20000);
    assert_null(upstream_pool_get(s));
    assert_int_equal(s->idle_count, 0);
    close(p2);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_cycles_over_eligible_servers),
        cmocka_unit_test(test_p2c_prefers_fewer_outstanding),
        cmocka_unit_test(test_ejected_server_takes_no_new_requests),
        cmocka_unit_test(test_pool_gives_back_only_live_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

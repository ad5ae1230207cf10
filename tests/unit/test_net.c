/*
 * test_net.c — socket helpers against real loopback sockets: listen on port
 * 0, connect, accept, liveness of an idle peer, address text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

static struct sockaddr_in loopback4(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    assert_int_equal(poll(&p, 1, 2000), 1);
}

/* Accept with a bounded wait: the connection may not be queued yet. */
static int accept_wait(int lfd, struct sockaddr_storage *peer, socklen_t *len)
{
    wait_fd(lfd, POLLIN);
    return net_accept(lfd, peer, len);
}

static void test_listen_connect_accept(void **state)
{
    (void)state;
    struct sockaddr_in a = loopback4(0);
    int lfd = net_listen((struct sockaddr *)&a, sizeof a, 16);
    assert_true(lfd >= 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    int port = net_local_port(lfd);
    assert_true(port > 0);

    /* Nothing pending yet. */
    assert_int_equal(net_accept(lfd, NULL, NULL), RP_AGAIN);

    struct sockaddr_in to = loopback4(port);
    int cfd = -1;
    int r = net_connect((struct sockaddr *)&to, sizeof to, &cfd);
    assert_true(r == RP_OK || r == RP_AGAIN);
    assert_true(cfd >= 0);
    assert_true(fcntl(cfd, F_GETFL) & O_NONBLOCK);
    wait_fd(cfd, POLLOUT);
    assert_int_equal(net_connect_result(cfd), 0);

    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    int sfd = accept_wait(lfd, &peer, &plen);
    assert_true(sfd >= 0);
    assert_true(fcntl(sfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(sfd, F_GETFD) & FD_CLOEXEC);
    int nodelay = 0;
    socklen_t ol = sizeof nodelay;
    assert_int_equal(getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &ol), 0);
    assert_true(nodelay != 0);

    /* The peer address is the client's local address. */
    char text[NET_ADDR_TEXT_MAX], want[NET_ADDR_TEXT_MAX];
    net_addr_text((struct sockaddr *)&peer, text, sizeof text);
    snprintf(want, sizeof want, "127.0.0.1:%d", net_local_port(cfd));
    assert_string_equal(text, want);
    net_ip_text((struct sockaddr *)&peer, text, sizeof text);
    assert_string_equal(text, "127.0.0.1");

    close(sfd);
    close(cfd);
    close(lfd);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* Find a port nobody listens on: bind one, note it, close it. */
    struct sockaddr_in a = loopback4(0);
    int lfd = net_listen((struct sockaddr *)&a, sizeof a, 1);
    assert_true(lfd >= 0);
    int port = net_local_port(lfd);
    close(lfd);

    struct sockaddr_in to = loopback4(port);
    int cfd = -1;
    int r = net_connect((struct sockaddr *)&to, sizeof to, &cfd);
    if (r == RP_ERR) {
        assert_int_equal(errno, ECONNREFUSED);
        assert_int_equal(cfd, -1);
        return;
    }
    assert_int_equal(r, RP_AGAIN);
    wait_fd(cfd, POLLOUT);
    assert_int_equal(net_connect_result(cfd), ECONNREFUSED);
    close(cfd);
}

static void test_listen_in_use(void **state)
{
    (void)state;
    struct sockaddr_in a = loopback4(0);
    int lfd = net_listen((struct sockaddr *)&a, sizeof a, 1);
    assert_true(lfd >= 0);
    struct sockaddr_in b = loopback4(net_local_port(lfd));
    errno = 0;
    assert_int_equal(net_listen((struct sockaddr *)&b, sizeof b, 1), RP_ERR);
    assert_int_equal(errno, EADDRINUSE);
    close(lfd);
}

static void test_peer_alive(void **state)
{
    (void)state;
    struct sockaddr_in a = loopback4(0);
    int lfd = net_listen((struct sockaddr *)&a, sizeof a, 4);
    assert_true(lfd >= 0);
    struct sockaddr_in to = loopback4(net_local_port(lfd));
    int cfd = -1;
    assert_true(net_connect((struct sockaddr *)&to, sizeof to, &cfd) != RP_ERR);
    int sfd = accept_wait(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    wait_fd(cfd, POLLOUT);

    /* Idle and open: reusable. */
    assert_true(net_peer_alive(cfd));

    /* Unexpected bytes from the server: not reusable, and the peek must
     * leave them in place. */
    assert_int_equal(write(sfd, "x", 1), 1);
    wait_fd(cfd, POLLIN);
    assert_false(net_peer_alive(cfd));
    char c = 0;
    assert_int_equal(read(cfd, &c, 1), 1);
    assert_int_equal(c, 'x');
    assert_true(net_peer_alive(cfd));

    /* The server closed: not reusable. */
    close(sfd);
    wait_fd(cfd, POLLIN);
    assert_false(net_peer_alive(cfd));

    close(cfd);
    close(lfd);
}

static void test_ipv6_text(void **state)
{
    (void)state;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(8080);
    a.sin6_addr = in6addr_loopback;
    char text[NET_ADDR_TEXT_MAX];
    net_addr_text((struct sockaddr *)&a, text, sizeof text);
    assert_string_equal(text, "[::1]:8080");
    net_ip_text((struct sockaddr *)&a, text, sizeof text);
    assert_string_equal(text, "::1");

    /* Listening on v6 loopback works where the host has IPv6. */
    a.sin6_port = 0;
    int lfd = net_listen((struct sockaddr *)&a, sizeof a, 1);
    if (lfd >= 0) {
        assert_true(net_local_port(lfd) > 0);
        close(lfd);
    }

    /* A buffer too small is still terminated. */
    char tiny[4];
    net_addr_text((struct sockaddr *)&a, tiny, sizeof tiny);
    assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_connect_accept),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_listen_in_use),
        cmocka_unit_test(test_peer_alive),
        cmocka_unit_test(test_ipv6_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * net.c — socket helpers (see net.h).
 *
 * Sockets are created with SOCK_NONBLOCK|SOCK_CLOEXEC and accepted with
 * accept4() so there is never a window where a descriptor is blocking or
 * inheritable.  Errors are returned, not logged: on failure the helper
 * closes what it opened and restores errno so the caller's message names
 * the real cause.
 */
#include "net.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static bool is_inet(int family)
{
    return family == AF_INET || family == AF_INET6;
}

/* Close fd without letting close() overwrite the errno we are reporting. */
static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

int net_listen(const struct sockaddr *a, socklen_t len, int backlog)
{
    int one = 1;
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return RP_ERR;
    /* Restarting while old connections sit in TIME_WAIT must not fail the
     * bind. */
    if (is_inet(a->sa_family) && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, a, len) < 0)
        goto fail;
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        goto fail;
    return fd;

fail:
    close_keep_errno(fd);
    return RP_ERR;
}

int net_accept(int lfd, struct sockaddr_storage *peer, socklen_t *len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd, one = 1;

    for (;;) {
        fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno == EINTR)
            continue;
        /* ECONNABORTED: the peer reset before we accepted; there may be
         * more behind it, so this is "nothing now", not a failure.  The
         * network errors accept(2) lists as pending are the same case. */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO || errno == ENETDOWN ||
            errno == ENOPROTOOPT || errno == EHOSTDOWN || errno == ENONET || errno == EHOSTUNREACH ||
            errno == EOPNOTSUPP || errno == ENETUNREACH)
            return RP_AGAIN;
        return RP_ERR;
    }
    /* Best effort: a failure here costs latency, not correctness. */
    if (is_inet(ss.ss_family))
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (peer) {
        size_t n = RP_MIN((size_t)sl, sizeof *peer);
        memcpy(peer, &ss, n);
    }
    if (len)
        *len = sl;
    return fd;
}

int net_connect(const struct sockaddr *a, socklen_t len, int *fd_out)
{
    int one = 1;
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return RP_ERR;
    if (is_inet(a->sa_family))
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        if (connect(fd, a, len) == 0) {
            *fd_out = fd;
            return RP_OK;
        }
        if (errno == EINTR)
            continue; /* Linux keeps connecting; the retry reports EALREADY */
        break;
    }
    if (errno == EINPROGRESS || errno == EALREADY) {
        *fd_out = fd;
        return RP_AGAIN;
    }
    close_keep_errno(fd);
    return RP_ERR;
}

int net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

int net_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return RP_ERR;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    errno = EAFNOSUPPORT;
    return RP_ERR;
}

void net_ip_text(const struct sockaddr *a, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    if (a->sa_family == AF_INET) {
        if (inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, buf, (socklen_t)cap))
            return;
    } else if (a->sa_family == AF_INET6) {
        if (inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, buf, (socklen_t)cap))
            return;
    } else if (a->sa_family == AF_UNIX) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)a;
        if (rp_snprintf(buf, cap, "unix:%.*s", (int)sizeof u->sun_path, u->sun_path) >= 0)
            return;
    }
    rp_snprintf(buf, cap, "?");
}

void net_addr_text(const struct sockaddr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    int r = -1;

    if (cap == 0)
        return;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)a;
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip))
            r = rp_snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip))
            r = rp_snprintf(buf, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else if (a->sa_family == AF_UNIX) {
        net_ip_text(a, buf, cap);
        return;
    }
    if (r < 0)
        rp_snprintf(buf, cap, "?");
}

bool net_peer_alive(int fd)
{
    char c;
    for (;;) {
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

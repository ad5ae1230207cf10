/*
 * net.h — socket helpers: non-blocking listen/accept/connect and address
 * text.
 *
 * Every socket these helpers create is non-blocking and close-on-exec, so
 * the event loop never stalls on one and a reload/exec never leaks one.
 * The helpers log nothing: they return a code with errno set, and the
 * caller, which knows what the socket was for ("admin listener on ..."),
 * writes the message.
 */
#ifndef RP_NET_H
#define RP_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest text net_addr_text() produces: "[" v6 "]:" port, plus NUL. */
#define NET_ADDR_TEXT_MAX 64

/* Bind and listen on a (SO_REUSEADDR).  Returns the listening fd, or
 * RP_ERR with errno set (the socket, if any, is closed). */
int net_listen(const struct sockaddr *a, socklen_t len, int backlog);

/* Accept one connection from the listening socket lfd; peer/len may be
 * NULL.  The new socket is non-blocking, close-on-exec and, for TCP, has
 * TCP_NODELAY set (responses are written whole, so Nagle only adds
 * latency).  Returns the fd; RP_AGAIN when there is nothing to accept (or
 * the peer gave up before we got to it); RP_ERR with errno set otherwise
 * (EMFILE/ENFILE mean "out of descriptors": back off, don't spin). */
int net_accept(int lfd, struct sockaddr_storage *peer, socklen_t *len);

/* Start a non-blocking connect to a.  On RP_OK (connected at once, e.g.
 * loopback) or RP_AGAIN (in progress: wait for EV_WRITE, then call
 * net_connect_result) the socket is stored in *fd_out.  RP_ERR with errno
 * set otherwise, *fd_out untouched. */
int net_connect(const struct sockaddr *a, socklen_t len, int *fd_out);

/* Outcome of a non-blocking connect once the socket is writable: 0 when
 * connected, else the errno value (ECONNREFUSED, ETIMEDOUT, ...). */
int net_connect_result(int fd);

/* Local port a socket is bound to (host order), or RP_ERR. */
int net_local_port(int fd);

/* "1.2.3.4:80" / "[::1]:80" / "unix:/path"; "?" for anything else.
 * Always NUL-terminates buf (cap >= 1). */
void net_addr_text(const struct sockaddr *a, char *buf, size_t cap);

/* The address alone: "1.2.3.4" / "::1". */
void net_ip_text(const struct sockaddr *a, char *buf, size_t cap);

/* Is an idle connection still usable?  true when a non-blocking peek finds
 * nothing to read and no error: the peer has neither closed nor sent
 * anything.  Anything else (EOF, unexpected bytes, an error) means the
 * connection must not be reused.  Checked before handing out a pooled
 * upstream connection, so a request is never written into a socket the
 * server already closed. */
bool net_peer_alive(int fd);

#endif

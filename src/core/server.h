/*
 * server.h — the types that name a server: where it is and how it was
 * configured.  Types only, no functions.
 *
 * The configuration fills them, and every subsystem that keeps state per
 * server (health checks, outlier detection, the upstream pools) reads them.
 * They live here, below all of those, so that none of them has to include
 * the configuration schema to learn a server's address.
 */
#ifndef RP_SERVER_H
#define RP_SERVER_H

#include <sys/socket.h>

/* An address as configured. */
struct server_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* as written, for logs and metrics labels */
    int line, col; /* where it was written, for the start-up checks' errors */
};

/* Release groups of a server (release control sends a share of tenants to
 * the canary group). */
enum server_group { SERVER_GROUP_STABLE = 0, SERVER_GROUP_CANARY = 1 };

struct server_conf {
    struct server_addr addr;
    unsigned weight; /* default 1 */
    int group;       /* enum server_group */
};

#endif

/*
 * health.h — active HTTP health checks of upstream servers.
 *
 * Two layers:
 *
 *  - the state machine of one server (struct health_server), pure logic:
 *    `fall` failed checks in a row take an up server down, `rise` passed
 *    checks in a row bring a down server back up (HAProxy's rise/fall), and
 *    a server that comes back ramps its weight linearly from
 *    HEALTH_SLOW_START_FLOOR to 100% over `slow_start` (HAProxy's
 *    slowstart), so a server that just restarted (cold caches, a model
 *    still loading) is not handed a full share at once.  Servers start up,
 *    at full weight: at startup there is nothing to protect them from yet,
 *    and starting down would refuse traffic for rise x interval.
 *
 *  - the checker (struct health_checker), which runs the checks of one
 *    upstream's servers on the event loop: every `interval` a non-blocking
 *    connect, "GET <path> HTTP/1.1" with Host and "Connection: close", and
 *    a bounded read of the status line; 2xx and 3xx pass, anything else
 *    (connect error, timeout, other status, malformed or oversized status
 *    line, close before it) fails.  A single timer per server is either the
 *    next check's start or the running check's deadline.  First checks are
 *    spread over the interval so N servers are not probed in one burst.
 */
#ifndef RP_HEALTH_H
#define RP_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "conf.h"
#include "ev.h"

/* config.h includes this header for struct health_conf, so only a
 * declaration here. */
struct server_conf;

#define HEALTH_PATH_MAX 256
#define HEALTH_HOST_MAX 128
#define HEALTH_NAME_MAX 64
/* Weight share of a server the moment it comes back (slow start starts
 * here, not at zero, so it gets a little traffic to prove itself). */
#define HEALTH_SLOW_START_FLOOR 0.1
/* Bytes read looking for the end of the status line. */
#define HEALTH_READ_MAX 512
/* Servers per checker (config.c allows CONFIG_MAX_SERVERS and checks it fits). */
#define HEALTH_MAX_SERVERS 64

struct health_conf {
    bool enabled;               /* the section is present (or enabled: true) */
    char path[HEALTH_PATH_MAX]; /* default "/health" */
    char host[HEALTH_HOST_MAX]; /* Host header; empty: the server's address text */
    uint64_t interval_us;       /* default 2s */
    uint64_t timeout_us;        /* default 1s (connect to status line) */
    unsigned rise;              /* default 2 */
    unsigned fall;              /* default 3 */
    uint64_t slow_start_us;     /* default 30s; 0 disables */
};

#define HEALTH_CONF_DEFAULT                                                                                            \
    {                                                                                                                  \
        .enabled = false, .path = "/health", .host = "", .interval_us = 2000000u, .timeout_us = 1000000u, .rise = 2,   \
        .fall = 3, .slow_start_us = 30000000u                                                                          \
    }

void health_conf_default(struct health_conf *c);
/* Parse the `health_check:` map of an upstream (NULL: defaults kept, and
 * checks stay disabled).  Keys: enabled, path, host, interval, timeout,
 * rise, fall, slow_start.  A present section enables checks unless it says
 * enabled: false.  timeout must be shorter than interval. */
int health_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct health_conf *out);
/* The rows of the section's plain keys (conf.h), for documentation and
 * tests; health_conf_parse adds the checks that span keys. */
extern const struct conf_field health_conf_fields[];

/* ---- the state machine of one server ---- */

enum health_result {
    HEALTH_PASS = 0,
    HEALTH_FAIL_CONNECT, /* refused, unreachable, ... */
    HEALTH_FAIL_TIMEOUT, /* no status line within timeout */
    HEALTH_FAIL_STATUS,  /* a status other than 2xx/3xx */
    HEALTH_FAIL_PROTO,   /* closed early, malformed or oversized status line */
};
#define HEALTH_RESULTS 5

enum health_change { HEALTH_NO_CHANGE = 0, HEALTH_WENT_DOWN, HEALTH_WENT_UP };

struct health_server {
    bool up;
    unsigned passes;      /* passed checks in a row */
    unsigned fails;       /* failed checks in a row */
    uint64_t up_since_us; /* start of the slow-start ramp */
    bool ramping;         /* came back up (not initial state) and ramp not over */
    uint64_t last_change_us;
    int last_status; /* HTTP status of the last check (0: none) */
    enum health_result last_result;
    uint64_t checks_total[HEALTH_RESULTS];
    uint64_t downs_total; /* transitions to down */
};

void health_server_init(struct health_server *s, uint64_t now_us);
/* Feed one check result; returns the transition it caused. */
enum health_change health_server_report(struct health_server *s, const struct health_conf *c, enum health_result r,
                                        int status, uint64_t now_us);
/* Should the balancer send new requests to it? */
static inline bool health_server_up(const struct health_server *s)
{
    return s->up;
}
/* Weight multiplier in [0, 1]: 0 when down, ramping from
 * HEALTH_SLOW_START_FLOOR to 1 during slow start, else 1. */
double health_server_weight(const struct health_server *s, const struct health_conf *c, uint64_t now_us);

const char *health_result_name(enum health_result r);

/* Parse a status line "HTTP/1.x NNN ..." in buf[0..len).  Returns the
 * status (100..599), RP_AGAIN when no complete line is there yet, RP_ERR
 * when malformed. */
int health_parse_status_line(const char *buf, size_t len);

/* ---- the checker ---- */

struct health_checker;

/* Called on every up/down transition (not on slow-start progress), from the
 * event loop.  It must not free the checker. */
typedef void (*health_change_cb)(void *arg, size_t server, bool up);

/* Start checking servers[0..n) of upstream on loop (n <= HEALTH_MAX_SERVERS).
 * conf and the server addresses are copied.  cb may be NULL.  Returns NULL
 * (logged) when conf->enabled is false. */
struct health_checker *health_checker_new(struct ev_loop *loop, const char *upstream, const struct health_conf *conf,
                                          const struct server_conf *servers, size_t n, health_change_cb cb, void *arg);
/* Cancel timers, close any check in flight, leave its set, free. */
void health_checker_free(struct health_checker *hc);

size_t health_checker_count(const struct health_checker *hc);
const struct health_server *health_checker_server(const struct health_checker *hc, size_t idx);
bool health_checker_up(const struct health_checker *hc, size_t idx);
double health_checker_weight(const struct health_checker *hc, size_t idx, uint64_t now_us);

/* The checkers of one owner (the upstream set), for the metrics renderer:
 * an owner's list rather than a process-wide one, so two owners never
 * render each other's servers.  loop is the renderer's clock (NULL: the
 * monotonic clock, for tests).  Newest first. */
struct health_set {
    struct health_checker *head;
    struct ev_loop *loop;
};

void health_set_init(struct health_set *set, struct ev_loop *loop);
/* Put hc (may be NULL: nothing) in set; it leaves in health_checker_free. */
void health_set_add(struct health_set *set, struct health_checker *hc);

/* metrics_render_fn: every checker of the struct health_set *arg. */
void health_metrics_render(struct sbuf *out, void *arg);

#endif

/*
 * config.h — the gateway's configuration, as loaded from YAML.
 *
 * config.c owns the top-level schema (listeners, upstreams, routes, limits,
 * timeouts, logging) and calls each subsystem's section parser for its own
 * key (overload, tenants, status/components; per upstream health_check,
 * outlier, retry, canary, overload).  All durations are microseconds, sizes
 * bytes.  The struct is immutable after config_load(); runtime state lives
 * elsewhere.  The schema is documented in docs/configuration.md.
 */
#ifndef RP_CONFIG_H
#define RP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admit.h"
#include "canary.h"
#include "conf.h"
#include "health.h"
#include "outlier.h"
#include "retry.h"
#include "server.h"
#include "status.h"
#include "tenant.h"

#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_SERVERS 64
#define CONFIG_MAX_UPSTREAMS 32
#define CONFIG_MAX_ROUTES 64
/* Upstream names.  63, not 64: the subsystems copy the name into 64-byte
 * buffers (canary, outlier, retry, health), and a cut name would make
 * e.g. the canary admin API unable to find its upstream. */
#define CONFIG_NAME_MAX 63

enum config_balance { CONFIG_BALANCE_P2C = 0, CONFIG_BALANCE_ROUND_ROBIN };

struct config_upstream {
    char *name;
    struct server_conf servers[CONFIG_MAX_SERVERS];
    size_t num_servers;
    enum config_balance balance;    /* balance: p2c | round_robin */
    uint64_t connect_timeout_us;    /* default 2s */
    uint64_t first_byte_timeout_us; /* default 60s: request sent -> response head */
    uint64_t idle_timeout_us;       /* default 60s: between response body reads */
    size_t pool_max_idle;           /* idle keep-alive connections kept per server, default 64 */
    uint64_t pool_idle_timeout_us;  /* default 60s */
    /* Subsystem sections.  Every one holds its defaults when its key is
     * absent, so the proxy never checks for presence (except has_canary
     * and health.enabled, which say whether to run the machinery at all). */
    struct admit_conf overload;  /* the global overload: section, with this upstream's overload: applied on top */
    struct health_conf health;   /* health_check: (health.enabled: the section is present and not disabled) */
    struct outlier_conf outlier; /* outlier: */
    struct retry_conf retry;     /* retry: */
    struct canary_conf canary;   /* canary: (defaults when absent; used only when has_canary) */
    bool has_canary;             /* some server is in group canary: run a canary for this upstream */
};

struct config_route {
    char *prefix; /* path prefix, e.g. "/v1/" */
    int upstream; /* index into upstreams */
};

struct config_limits {
    size_t max_header_bytes; /* 16k -> 431 */
    size_t max_headers;      /* 100 -> 431 */
    size_t max_uri;          /* 8k  -> 414 */
    uint64_t max_body;       /* 10m -> 413 */
    size_t max_connections;  /* client connections, default 10000 */
    size_t request_buffer;   /* bodies up to this are read whole before admission, default 1m */
};

struct config_timeouts {
    uint64_t client_header_us; /* whole request head must arrive within, default 10s */
    uint64_t client_body_us;   /* idle between request body reads, default 30s */
    uint64_t client_idle_us;   /* keep-alive idle, default 60s */
    uint64_t send_us;          /* client not reading while we have data, default 60s */
    uint64_t drain_us;         /* graceful shutdown limit, default 15s */
    uint64_t lingering_us;     /* read and discard after a closing reply, at most, default 5s */
};

struct config {
    char *path;
    struct server_addr listen[CONFIG_MAX_LISTEN];
    size_t num_listen;
    struct config_upstream upstreams[CONFIG_MAX_UPSTREAMS];
    size_t num_upstreams;
    struct config_route routes[CONFIG_MAX_ROUTES];
    size_t num_routes;
    bool has_admin;
    struct server_addr admin_listen;
    char *admin_token_file; /* admin: token_file (write APIs) */
    struct config_limits limits;
    struct config_timeouts timeouts;
    char *access_log;           /* log: access: "stdout" (default), "off", or a path */
    struct admit_conf overload; /* overload: (per-upstream copies in upstreams[i].overload are what to use) */
    struct tenant_conf tenants; /* tenants: */
    struct status_conf status;  /* status: and components: */
    bool has_status;            /* a status: section is present (== status.enabled): run the status listener */
};

/* Load and validate path.  On success returns RP_OK and fills *cfg.  On
 * failure prints every error as "FILE:LINE:COL: message" to err (if not
 * NULL) and returns RP_ERR. */
/* cfg need not be initialised (it is zeroed first).  On RP_ERR it is left
 * freed and zeroed, so config_free() on it is harmless.  struct config is
 * large (about 470 KiB): give it static or heap storage, not the stack. */
int config_load(const char *path, struct config *cfg, FILE *err);
/* config_load, then config_check_startup(): what both `rampart -t` and
 * start-up call, so the check can never pass a file start-up refuses. */
int config_load_startup(const char *path, struct config *cfg, FILE *err);
/* Every check start-up makes beyond the schema, without changing anything
 * on disk: each listener can be bound (a port in use is left to start-up:
 * `-t` may run next to the gateway it replaces); admin.token_file passes
 * admin_token_read(); the access log file and the status database can be
 * opened for writing (or created in an existing, writable directory).
 * Errors are recorded in doc at the key naming the file, or at the
 * address; cfg may be partly parsed.  RP_OK when none was found. */
int config_check_startup(struct conf_doc *doc, const struct config *cfg);
/* Same from a string (tests). */
int config_load_string(const char *name, const char *yaml, struct config *cfg, FILE *err);
void config_free(struct config *cfg);
/* Parse an already loaded document into cfg; errors are recorded in doc
 * (conf_error_count / conf_error_at) and nothing is printed.  RP_OK when
 * doc holds no errors at all afterwards.  On RP_ERR cfg is left freed. */
int config_load_doc(struct conf_doc *doc, struct config *cfg);

/* Upstream index for a request path (routes, first match; a single
 * upstream takes everything), or -1 when no route matches. */
int config_route(const struct config *cfg, const char *path, size_t len);

#endif

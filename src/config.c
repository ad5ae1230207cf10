/*
 * config.c — the gateway's top-level configuration schema.
 *
 * The YAML document is loaded by conf.c and stays alive while the sections
 * below are parsed, so every parser reads its part with the conf_*
 * accessors and records errors in the one list the document owns.  Nothing
 * stops at the first error: each section parses what it can, defaults what
 * is missing, and conf_print_errors() lists every mistake in file order.
 * Strings that outlive the document are copied into struct config.
 *
 * Adding a section
 * ----------------
 * A top-level key is one entry in config_sections[]:
 *
 *     { "tenants", false, parse_tenants, free_tenants },
 *
 * with
 *
 *     int  parse_tenants(struct conf_doc *doc, const struct conf_node *node,
 *                        struct config *cfg);
 *     void free_tenants(struct config *cfg);   (or NULL)
 *
 * and the section's fields added to struct config.  The contract:
 *   - parse is called exactly once per load, in table order, with node NULL
 *     when the key is absent: it sets its defaults first, then overrides
 *     them from node.  A section may read what earlier entries filled in
 *     (routes come after upstreams to look names up).
 *   - it records errors with conf_error*() and the typed accessors and
 *     keeps going; its return value (RP_OK/RP_ERR) is informational, the
 *     document's error count decides the load.
 *   - it calls conf_check_keys() on its own map; config.c rejects unknown
 *     top-level keys from the table itself, so the entry is all it takes
 *     for the key to be accepted.
 *   - `required` makes config.c report "missing required key" (parse is
 *     still called, with NULL).
 *   - free releases what parse allocated; it runs for every load, also a
 *     failed one, on a struct that parse may have filled only partly (and
 *     that is zeroed before parsing).
 * Keys inside an upstream (health_check, outlier, retry, canary, ...) are
 * rows of upstream_fields[] (struct conf_field, conf.h: one row per key,
 * from which the known keys and the errors derive), read into a struct
 * config_upstream; the keys of the other sections of this file are rows
 * of the same kind (limits_fields[], timeouts_fields[], admin_fields[],
 * log_fields[], pool_fields[]).  Checks across the keys of one upstream go
 * in check_upstream(), checks across sections in validate().
 *
 * Two keys do not fit "one node, one parser":
 *   - an upstream's overload: is applied on top of the global overload:
 *     section, which is parsed after the upstreams; so the upstream key's
 *     parser only accepts the key, and parse_overload() applies every
 *     upstream's override once the global section is known;
 *   - status_conf_parse() reads status: and the top-level components:
 *     together; the components entry only makes the key known, and
 *     parse_status() looks it up in the document root.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_token.h"
#include "util.h"

#define CONFIG_PREFIX_MAX 1024 /* route prefixes */
#define SEC(x) ((uint64_t)(x)*1000000ull)
#define MSEC(x) ((uint64_t)(x)*1000ull)

/* ---- section tables ----------------------------------------------------- */

struct config_section {
    const char *key;
    bool required;
    int (*parse)(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
    void (*free)(struct config *cfg);
};

static int parse_listen(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static int parse_upstreams(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_upstreams(struct config *cfg);
static int parse_routes(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_routes(struct config *cfg);
static int parse_admin(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_admin(struct config *cfg);
static int parse_limits(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static int parse_timeouts(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static int parse_log(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_log(struct config *cfg);
static int parse_overload(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static int parse_tenants(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_tenants(struct config *cfg);
static int parse_status(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);
static void free_status(struct config *cfg);
static int parse_components(struct conf_doc *doc, const struct conf_node *node, struct config *cfg);

static const struct config_section config_sections[] = {
    {"listen", true, parse_listen, NULL},
    {"upstreams", true, parse_upstreams, free_upstreams},
    {"routes", false, parse_routes, free_routes}, /* after upstreams: looks names up */
    {"admin", false, parse_admin, free_admin},
    {"limits", false, parse_limits, NULL},
    {"timeouts", false, parse_timeouts, NULL},
    {"log", false, parse_log, free_log},
    {"overload", false, parse_overload, NULL}, /* after upstreams: applies their overrides */
    {"tenants", false, parse_tenants, free_tenants},
    {"status", false, parse_status, free_status},  /* after upstreams: components name them */
    {"components", false, parse_components, NULL}, /* parsed by parse_status */
};

static int up_servers(struct conf_doc *doc, const struct conf_node *node, void *base);
static int up_pool(struct conf_doc *doc, const struct conf_node *node, void *base);
static int up_health(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up);
static int up_outlier(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up);
static int up_retry(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up);
static int up_canary(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up);
static int up_health_row(struct conf_doc *doc, const struct conf_node *node, void *base);
static int up_outlier_row(struct conf_doc *doc, const struct conf_node *node, void *base);
static int up_retry_row(struct conf_doc *doc, const struct conf_node *node, void *base);
static int up_canary_row(struct conf_doc *doc, const struct conf_node *node, void *base);

static const char *const balance_names[] = {"p2c", "round_robin", NULL};

/* The keys of one upstream, one row each (conf.h): the row is what makes
 * a key known, so a key cannot be accepted and then ignored.  Sections of
 * their own (health_check, outlier, ...) are custom rows that call the
 * subsystem's parser; upstream_defaults() sets every default first. */
static const struct conf_field upstream_fields[] = {
    CONF_FIELD_CUSTOM("servers", up_servers), /* required: checked in parse_upstream() */
    CONF_FIELD_ENUM("balance", struct config_upstream, balance, balance_names, CONFIG_BALANCE_P2C),
    CONF_FIELD_DURATION("connect_timeout", struct config_upstream, connect_timeout_us, MSEC(1), SEC(3600), SEC(2)),
    CONF_FIELD_DURATION("first_byte_timeout", struct config_upstream, first_byte_timeout_us, MSEC(1), SEC(86400),
                        SEC(60)),
    CONF_FIELD_DURATION("idle_timeout", struct config_upstream, idle_timeout_us, MSEC(1), SEC(86400), SEC(60)),
    CONF_FIELD_CUSTOM("pool", up_pool),
    CONF_FIELD_IGNORE("overload"), /* applied on top of the global section by parse_overload() */
    CONF_FIELD_CUSTOM("health_check", up_health_row),
    CONF_FIELD_CUSTOM("outlier", up_outlier_row),
    CONF_FIELD_CUSTOM("retry", up_retry_row),
    CONF_FIELD_CUSTOM("canary", up_canary_row),
    CONF_FIELD_END,
};

/* pool: inside an upstream; its fields live in struct config_upstream. */
static const struct conf_field pool_fields[] = {
    CONF_FIELD_UINT("max_idle", struct config_upstream, pool_max_idle, 0, 10000, 64),
    CONF_FIELD_DURATION("idle_timeout", struct config_upstream, pool_idle_timeout_us, MSEC(1), SEC(86400), SEC(60)),
    CONF_FIELD_END,
};

/* The subsystems size their per-server tables and name buffers for what
 * this file accepts; a mismatch would silently drop servers or cut names. */
_Static_assert(CONFIG_MAX_SERVERS <= HEALTH_MAX_SERVERS, "health checker holds every server");
_Static_assert(CONFIG_MAX_SERVERS <= OUTLIER_MAX_SERVERS, "outlier detector holds every server");
_Static_assert(CONFIG_MAX_UPSTREAMS <= STATUS_MAX_UPSTREAMS, "status holds every upstream");
_Static_assert(CONFIG_MAX_SERVERS <= CANARY_MAX_SERVERS, "a release is named from every canary server");
_Static_assert(CONFIG_NAME_MAX < HEALTH_NAME_MAX && CONFIG_NAME_MAX < OUTLIER_NAME_MAX &&
                   CONFIG_NAME_MAX < RETRY_NAME_MAX && CONFIG_NAME_MAX < CANARY_NAME_MAX,
               "an upstream name fits every subsystem's name buffer");

/* ---- small helpers ------------------------------------------------------ */

static bool addr_equal(const struct server_addr *a, const struct server_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss, *y = (const struct sockaddr_in *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss, *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Resolve node into a, keeping the text as written (shortened to fit:
 * it is only a label). */
static int parse_addr(struct conf_doc *doc, const struct conf_node *node, struct server_addr *a)
{
    if (conf_addr(doc, node, &a->ss, &a->len) != RP_OK)
        return RP_ERR;
    snprintf(a->text, sizeof a->text, "%s", node->value);
    a->line = node->line;
    a->col = node->col;
    return RP_OK;
}

/* A list of addresses, or a single one written as a plain value. */
static int parse_addr_list(struct conf_doc *doc, const struct conf_node *node, const char *what,
                           struct server_addr *out, size_t max, size_t *num)
{
    const struct conf_node *items = node;
    int rc = RP_OK;
    if (node->kind == CONF_MAP) {
        conf_error(doc, node, "expected an address or a list of addresses, got a map");
        return RP_ERR;
    }
    if (node->kind == CONF_SEQ) {
        items = node->child;
        if (!items) {
            conf_error(doc, node, "at least one %s address is required", what);
            return RP_ERR;
        }
    }
    for (const struct conf_node *it = items; it; it = node->kind == CONF_SEQ ? it->next : NULL) {
        struct server_addr a;
        bool dup = false;
        if (*num == max) {
            conf_error(doc, it, "too many %s addresses (max %zu)", what, max);
            return RP_ERR;
        }
        memset(&a, 0, sizeof a);
        if (parse_addr(doc, it, &a) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        for (size_t i = 0; i < *num && !dup; i++)
            dup = addr_equal(&out[i], &a);
        if (dup) {
            char shown[CONF_SHOW_CAP];
            conf_error(doc, it, "duplicate %s address \"%s\"", what, conf_show(a.text, shown, sizeof shown));
            rc = RP_ERR;
            continue;
        }
        out[(*num)++] = a;
    }
    return rc;
}

/* ---- listen ------------------------------------------------------------- */

static int parse_listen(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    if (!node)
        return RP_OK; /* required: reported by the driver */
    return parse_addr_list(doc, node, "listen", cfg->listen, CONFIG_MAX_LISTEN, &cfg->num_listen);
}

/* ---- upstreams ---------------------------------------------------------- */

static int parse_server(struct conf_doc *doc, const struct conf_node *node, struct server_conf *srv)
{
    static const char *const keys[] = {"address", "weight", "group", NULL};
    static const char *const groups[] = {"stable", "canary", NULL};
    uint64_t weight = 1;
    int rc = RP_OK;

    srv->weight = 1;
    srv->group = 0;
    if (node->kind == CONF_SCALAR)
        return parse_addr(doc, node, &srv->addr);
    if (node->kind != CONF_MAP) {
        conf_error(doc, node, "expected a server (\"host:port\" or a map with address, weight, group), got a sequence");
        return RP_ERR;
    }
    if (conf_check_keys(doc, node, keys))
        rc = RP_ERR;
    const struct conf_node *addr = conf_require(doc, node, "address");
    if (!addr || parse_addr(doc, addr, &srv->addr) != RP_OK)
        rc = RP_ERR;
    if (conf_uint(doc, conf_get(node, "weight"), 1, 1000, &weight) != RP_OK)
        rc = RP_ERR;
    srv->weight = (unsigned)weight;
    if (conf_enum(doc, conf_get(node, "group"), groups, &srv->group) != RP_OK)
        rc = RP_ERR;
    return rc;
}

static int up_servers(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    struct config_upstream *up = base;
    const struct conf_node *items = node;
    const struct conf_node *first_at[CONFIG_MAX_SERVERS];
    bool stable = false;
    int rc = RP_OK;

    if (!node)
        return RP_OK; /* required: reported by the driver */
    if (node->kind == CONF_SEQ) {
        items = node->child;
        if (!items) {
            conf_error(doc, node, "at least one server is required");
            return RP_ERR;
        }
    } else if (node->kind == CONF_MAP) {
        conf_error(doc, node, "expected a list of servers, got a map");
        return RP_ERR;
    }
    for (const struct conf_node *it = items; it; it = node->kind == CONF_SEQ ? it->next : NULL) {
        struct server_conf srv;
        size_t dup = SIZE_MAX;
        if (up->num_servers == CONFIG_MAX_SERVERS) {
            conf_error(doc, it, "too many servers (max %d)", CONFIG_MAX_SERVERS);
            return RP_ERR;
        }
        memset(&srv, 0, sizeof srv);
        if (parse_server(doc, it, &srv) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        for (size_t i = 0; i < up->num_servers && dup == SIZE_MAX; i++)
            if (addr_equal(&up->servers[i].addr, &srv.addr))
                dup = i;
        if (dup != SIZE_MAX) {
            char shown[CONF_SHOW_CAP];
            conf_error(doc, it, "duplicate server \"%s\" (also at line %d)",
                       conf_show(srv.addr.text, shown, sizeof shown), first_at[dup]->line);
            rc = RP_ERR;
            continue;
        }
        first_at[up->num_servers] = it;
        up->servers[up->num_servers++] = srv;
        stable = stable || srv.group == 0;
    }
    /* Release control shifts traffic between groups; it needs a baseline. */
    if (up->num_servers > 0 && !stable) {
        conf_error(doc, node, "at least one server must be in group \"stable\"");
        rc = RP_ERR;
    }
    return rc;
}

static int up_pool(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    return conf_fields_parse(doc, node, pool_fields, base);
}

static int up_health(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    health_conf_default(&up->health);
    return health_conf_parse(doc, node, &up->health);
}

static int up_outlier(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    outlier_conf_default(&up->outlier);
    return outlier_conf_parse(doc, node, &up->outlier);
}

static int up_retry(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    retry_conf_default(&up->retry);
    return retry_conf_parse(doc, node, &up->retry);
}

/* Whether the upstream has canary servers is decided in check_upstream(),
 * which also sees the servers as written. */
static int up_canary(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    canary_conf_default(&up->canary);
    return canary_conf_parse(doc, node, &up->canary);
}

static int up_health_row(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    return up_health(doc, node, base);
}

static int up_outlier_row(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    return up_outlier(doc, node, base);
}

static int up_retry_row(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    return up_retry(doc, node, base);
}

static int up_canary_row(struct conf_doc *doc, const struct conf_node *node, void *base)
{
    return up_canary(doc, node, base);
}

/* Every default of an upstream, before any of its keys is read: a broken
 * upstream still holds sane values, and each key's own errors are still
 * reported.  (The subsystem parsers set their defaults when given no
 * node.) */
static void upstream_defaults(struct conf_doc *doc, struct config_upstream *up)
{
    conf_fields_defaults(upstream_fields, up);
    conf_fields_defaults(pool_fields, up);
    admit_conf_default(&up->overload);
    up_health(doc, NULL, up);
    up_outlier(doc, NULL, up);
    up_retry(doc, NULL, up);
    up_canary(doc, NULL, up);
}

/* Does some server item say group: canary, parsed or not?  A canary server
 * whose address failed to parse is not in up->servers, but it was meant to
 * be there: its own error says what is wrong. */
static bool canary_written(const struct conf_node *servers)
{
    if (!servers || servers->kind != CONF_SEQ)
        return false;
    for (const struct conf_node *it = servers->child; it; it = it->next) {
        const struct conf_node *g = conf_get(it, "group");
        if (g && g->kind == CONF_SCALAR && strcmp(g->value, "canary") == 0)
            return true;
    }
    return false;
}

/* Checks across the keys of one upstream (map node). */
static int check_upstream(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    const struct conf_node *cn = conf_get(node, "canary");
    up->has_canary = false;
    for (size_t i = 0; i < up->num_servers; i++)
        up->has_canary = up->has_canary || up->servers[i].group == 1;
    /* A canary section with nothing to split traffic to is a mistake (a
     * forgotten group: canary, or a leftover from the last release).  With
     * no server parsed at all, the servers' own errors say enough. */
    if (cn && up->num_servers > 0 && !up->has_canary && !canary_written(conf_get(node, "servers"))) {
        conf_error_key(doc, cn, "canary needs at least one server in group \"canary\"");
        return RP_ERR;
    }
    return RP_OK;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

static int parse_upstream(struct conf_doc *doc, const struct conf_node *node, struct config_upstream *up)
{
    int rc = RP_OK;
    upstream_defaults(doc, up);
    if (conf_fields_parse(doc, node, upstream_fields, up) != RP_OK)
        rc = RP_ERR;
    if (node->kind != CONF_MAP)
        return RP_ERR;
    if (!conf_get(node, "servers")) {
        conf_error_key(doc, node, "missing required key \"servers\"");
        rc = RP_ERR;
    }
    if (check_upstream(doc, node, up) != RP_OK)
        rc = RP_ERR;
    return rc;
}

static int parse_upstreams(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    int rc = RP_OK;
    if (!node)
        return RP_OK; /* required: reported by the driver */
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (!node->child) {
        conf_error_key(doc, node, "at least one upstream is required");
        return RP_ERR;
    }
    for (const struct conf_node *u = node->child; u; u = u->next) {
        char shown[CONF_SHOW_CAP];
        if (cfg->num_upstreams == CONFIG_MAX_UPSTREAMS) {
            conf_error_key(doc, u, "too many upstreams (max %d)", CONFIG_MAX_UPSTREAMS);
            return RP_ERR;
        }
        if (!valid_name(u->key)) {
            conf_error_key(doc, u, "bad upstream name \"%s\": use 1 to %d letters, digits, '_', '-' or '.'",
                           conf_show(u->key, shown, sizeof shown), CONFIG_NAME_MAX);
            rc = RP_ERR;
        }
        /* Duplicate names were reported by the loader; keep the first. */
        bool dup = false;
        for (size_t i = 0; i < cfg->num_upstreams && !dup; i++)
            dup = strcmp(cfg->upstreams[i].name, u->key) == 0;
        if (dup)
            continue;
        struct config_upstream *up = &cfg->upstreams[cfg->num_upstreams++];
        up->name = rp_xstrdup(u->key);
        if (parse_upstream(doc, u, up) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}

static void free_upstreams(struct config *cfg)
{
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        free(cfg->upstreams[i].name);
        cfg->upstreams[i].name = NULL;
    }
}

/* ---- routes ------------------------------------------------------------- */

static int find_upstream(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool valid_prefix(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_PREFIX_MAX || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int parse_route(struct conf_doc *doc, const struct conf_node *node, struct config *cfg,
                       const struct conf_node **prefix_at)
{
    static const char *const keys[] = {"prefix", "upstream", NULL};
    const struct conf_node *pn, *un;
    const char *prefix = NULL, *name = NULL;
    int rc = RP_OK, up = -1;

    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys))
        rc = RP_ERR;
    pn = conf_require(doc, node, "prefix");
    un = conf_require(doc, node, "upstream");
    if (!pn || !un)
        rc = RP_ERR;
    if (pn && conf_string(doc, pn, &prefix) == RP_OK && !valid_prefix(prefix)) {
        char shown[CONF_SHOW_CAP];
        conf_error(doc, pn,
                   "bad route prefix \"%s\": must start with '/', without spaces or control characters "
                   "(max %d bytes)",
                   conf_show(prefix, shown, sizeof shown), CONFIG_PREFIX_MAX);
        prefix = NULL;
    }
    if (!prefix)
        rc = RP_ERR;
    if (un && conf_string(doc, un, &name) == RP_OK) {
        up = find_upstream(cfg, name);
        /* With no upstream parsed at all, "missing upstreams" says it all. */
        if (up < 0 && cfg->num_upstreams > 0) {
            char list[512], shown[CONF_SHOW_CAP];
            size_t o = 0;
            list[0] = '\0';
            for (size_t i = 0; i < cfg->num_upstreams; i++) {
                int n = rp_snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cfg->upstreams[i].name);
                if (n < 0)
                    break;
                o += (size_t)n;
            }
            conf_error(doc, un, "unknown upstream \"%s\" (expected one of: %s)", conf_show(name, shown, sizeof shown),
                       list);
        }
    }
    if (up < 0)
        rc = RP_ERR;
    if (rc != RP_OK)
        return rc;

    /* First match wins, so a route under an earlier, shorter prefix can
     * never be chosen: that is always a mistake in the order. */
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const char *p = cfg->routes[i].prefix;
        if (strncmp(prefix, p, strlen(p)) == 0) {
            conf_error(doc, pn, "route \"%s\" is never used: route \"%s\" (line %d) matches first", prefix, p,
                       prefix_at[i]->line);
            return RP_ERR;
        }
    }
    prefix_at[cfg->num_routes] = pn;
    cfg->routes[cfg->num_routes].prefix = rp_xstrdup(prefix);
    cfg->routes[cfg->num_routes].upstream = up;
    cfg->num_routes++;
    return RP_OK;
}

static int parse_routes(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    const struct conf_node *prefix_at[CONFIG_MAX_ROUTES];
    int rc = RP_OK;
    if (!node)
        return RP_OK;
    if (conf_expect_seq(doc, node) != RP_OK)
        return RP_ERR;
    for (const struct conf_node *r = node->child; r; r = r->next) {
        if (cfg->num_routes == CONFIG_MAX_ROUTES) {
            conf_error(doc, r, "too many routes (max %d)", CONFIG_MAX_ROUTES);
            return RP_ERR;
        }
        if (parse_route(doc, r, cfg, prefix_at) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}

static void free_routes(struct config *cfg)
{
    for (size_t i = 0; i < cfg->num_routes; i++) {
        free(cfg->routes[i].prefix);
        cfg->routes[i].prefix = NULL;
    }
}

/* ---- admin, limits, timeouts, log --------------------------------------- */

static int admin_listen_row(struct conf_doc *doc, const struct conf_node *ln, void *base)
{
    struct config *cfg = base;
    if (parse_addr(doc, ln, &cfg->admin_listen) != RP_OK)
        return RP_ERR;
    int rc = RP_OK;
    for (size_t i = 0; i < cfg->num_listen; i++) {
        if (addr_equal(&cfg->listen[i], &cfg->admin_listen)) {
            char shown[CONF_SHOW_CAP];
            conf_error(doc, ln, "admin listen address \"%s\" is also a proxy listen address",
                       conf_show(cfg->admin_listen.text, shown, sizeof shown));
            rc = RP_ERR;
        }
    }
    return rc;
}

static int admin_token_row(struct conf_doc *doc, const struct conf_node *tn, void *base)
{
    struct config *cfg = base;
    const char *token = NULL;
    if (conf_string(doc, tn, &token) != RP_OK)
        return RP_ERR;
    if (!token[0]) {
        conf_error(doc, tn, "token_file must not be empty");
        return RP_ERR;
    }
    cfg->admin_token_file = rp_xstrdup(token);
    return RP_OK;
}

/* admin: rows read into struct config itself. */
static const struct conf_field admin_fields[] = {
    CONF_FIELD_CUSTOM("listen", admin_listen_row), /* required */
    CONF_FIELD_CUSTOM("token_file", admin_token_row),
    CONF_FIELD_END,
};

static int parse_admin(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    if (!node)
        return RP_OK;
    int rc = conf_fields_parse(doc, node, admin_fields, cfg);
    if (node->kind != CONF_MAP)
        return RP_ERR;
    cfg->has_admin = true;
    if (!conf_require(doc, node, "listen"))
        rc = RP_ERR;
    return rc;
}

static void free_admin(struct config *cfg)
{
    free(cfg->admin_token_file);
    cfg->admin_token_file = NULL;
}

static const struct conf_field limits_fields[] = {
    CONF_FIELD_SIZE("max_header_bytes", struct config_limits, max_header_bytes, 1024, 1024 * 1024, 16 * 1024),
    CONF_FIELD_UINT("max_headers", struct config_limits, max_headers, 1, 10000, 100),
    CONF_FIELD_SIZE("max_uri", struct config_limits, max_uri, 64, 1024 * 1024, 8 * 1024),
    CONF_FIELD_SIZE("max_body", struct config_limits, max_body, 0, UINT64_MAX, 10ull * 1024 * 1024),
    CONF_FIELD_UINT("max_connections", struct config_limits, max_connections, 1, 1000000, 10000),
    /* Bodies up to this size are read whole before the request asks for
     * an upstream slot, so a slow or stalled upload never holds one. */
    CONF_FIELD_SIZE("request_buffer", struct config_limits, request_buffer, 0, 64 * 1024 * 1024, 1024 * 1024),
    CONF_FIELD_END,
};

static int parse_limits(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    conf_fields_defaults(limits_fields, &cfg->limits);
    return conf_fields_parse(doc, node, limits_fields, &cfg->limits);
}

static const struct conf_field timeouts_fields[] = {
    CONF_FIELD_DURATION("client_header", struct config_timeouts, client_header_us, MSEC(1), SEC(86400), SEC(10)),
    CONF_FIELD_DURATION("client_body", struct config_timeouts, client_body_us, MSEC(1), SEC(86400), SEC(30)),
    CONF_FIELD_DURATION("client_idle", struct config_timeouts, client_idle_us, MSEC(1), SEC(86400), SEC(60)),
    CONF_FIELD_DURATION("send", struct config_timeouts, send_us, MSEC(1), SEC(86400), SEC(60)),
    /* 0 is allowed: close everything at once on shutdown. */
    CONF_FIELD_DURATION("drain", struct config_timeouts, drain_us, 0, SEC(86400), SEC(15)),
    /* 0 turns lingering off: close at once after the last reply. */
    CONF_FIELD_DURATION("lingering", struct config_timeouts, lingering_us, 0, SEC(300), SEC(5)),
    CONF_FIELD_END,
};

static int parse_timeouts(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    conf_fields_defaults(timeouts_fields, &cfg->timeouts);
    return conf_fields_parse(doc, node, timeouts_fields, &cfg->timeouts);
}

static int log_access_row(struct conf_doc *doc, const struct conf_node *an, void *base)
{
    struct config *cfg = base;
    const char *access = NULL;
    if (conf_string(doc, an, &access) != RP_OK)
        return RP_ERR;
    if (!access[0]) {
        conf_error(doc, an, "access must be \"stdout\", \"off\" or a file path");
        return RP_ERR;
    }
    free(cfg->access_log);
    cfg->access_log = rp_xstrdup(access);
    return RP_OK;
}

static const struct conf_field log_fields[] = {
    CONF_FIELD_CUSTOM("access", log_access_row), /* "stdout" (default), "off" or a path */
    CONF_FIELD_END,
};

static int parse_log(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    cfg->access_log = rp_xstrdup("stdout");
    return conf_fields_parse(doc, node, log_fields, cfg);
}

static void free_log(struct config *cfg)
{
    free(cfg->access_log);
    cfg->access_log = NULL;
}

/* ---- overload, tenants, status ------------------------------------------ */

/* The global section first, then each upstream's overload: on top of a
 * copy of it, so an upstream states only what differs. */
static int parse_overload(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    const struct conf_node *ups = conf_get(conf_root(doc), "upstreams");
    int rc = RP_OK;

    admit_conf_default(&cfg->overload);
    if (admit_conf_parse(doc, node, &cfg->overload) != RP_OK)
        rc = RP_ERR;
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        struct config_upstream *up = &cfg->upstreams[i];
        /* conf_get finds the first of duplicate names: the one parse_upstreams kept. */
        const struct conf_node *ov = conf_get(conf_get(ups, up->name), "overload");
        up->overload = cfg->overload;
        if (admit_conf_parse(doc, ov, &up->overload) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}

static int parse_tenants(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    tenant_conf_default(&cfg->tenants);
    return tenant_conf_parse(doc, node, &cfg->tenants);
}

static void free_tenants(struct config *cfg)
{
    tenant_conf_free(&cfg->tenants);
}

static int parse_status(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    int rc;
    /* Status learns the upstreams by name, not through this schema. */
    const char *names[CONFIG_MAX_UPSTREAMS];
    size_t n = 0;
    for (; n < cfg->num_upstreams && n < CONFIG_MAX_UPSTREAMS; n++)
        names[n] = cfg->upstreams[n].name;
    status_conf_init(&cfg->status);
    rc = status_conf_parse(doc, node, conf_get(conf_root(doc), "components"), names, n, &cfg->status);
    cfg->has_status = cfg->status.enabled;
    return rc;
}

static void free_status(struct config *cfg)
{
    status_conf_free(&cfg->status);
    cfg->has_status = false;
}

/* Read by parse_status() together with status:. */
static int parse_components(struct conf_doc *doc, const struct conf_node *node, struct config *cfg)
{
    (void)doc;
    (void)node;
    (void)cfg;
    return RP_OK;
}

/* ---- driver ------------------------------------------------------------- */

/* The public status listener must not take over a proxy or admin port: a
 * clash would fail at bind time, far from the line that caused it. */
static void check_status_listen(struct conf_doc *doc, const struct conf_node *root, struct config *cfg)
{
    const struct conf_node *ln = conf_get(conf_get(root, "status"), "listen");
    struct server_addr a;
    char shown[CONF_SHOW_CAP];

    if (!cfg->has_status || cfg->status.listen_len == 0 || !ln)
        return;
    memset(&a, 0, sizeof a);
    a.ss = cfg->status.listen;
    a.len = cfg->status.listen_len;
    conf_show(cfg->status.listen_text, shown, sizeof shown);
    for (size_t i = 0; i < cfg->num_listen; i++) {
        if (addr_equal(&cfg->listen[i], &a)) {
            conf_error(doc, ln, "status listen address \"%s\" is also a proxy listen address", shown);
            return;
        }
    }
    if (cfg->has_admin && cfg->admin_listen.len && addr_equal(&cfg->admin_listen, &a))
        conf_error(doc, ln, "status listen address \"%s\" is also the admin listen address", shown);
}

/* Checks that need several sections at once. */
static void validate(struct conf_doc *doc, const struct conf_node *root, struct config *cfg)
{
    const struct conf_node *ups = conf_get(root, "upstreams");
    const struct conf_node *routes = conf_get(root, "routes");
    /* A present but broken routes section has reported its own errors. */
    bool routes_given = routes && !(routes->kind == CONF_SEQ && !routes->child);
    if (cfg->num_upstreams > 1 && !routes_given)
        conf_error_key(doc, ups, "several upstreams need routes");
    check_status_listen(doc, root, cfg);
}

/* Fill cfg from doc, recording errors in doc; cfg may be partly filled
 * afterwards (the caller frees it when doc holds errors).  RP_ERR when the
 * document has no usable root map, so nothing was parsed. */
static int parse_doc(struct conf_doc *doc, struct config *cfg)
{
    const struct conf_node *root = conf_root(doc);
    const char *keys[RP_ARRAY_LEN(config_sections) + 1];

    memset(cfg, 0, sizeof(*cfg));
    cfg->path = rp_xstrdup(conf_file_name(doc));
    if (!root) {
        /* Either the loader recorded why, or the file holds no document. */
        if (conf_error_count(doc) == 0)
            conf_error(doc, NULL, "the configuration is empty");
        return RP_ERR;
    }
    if (conf_expect_map(doc, root) != RP_OK)
        return RP_ERR;
    for (size_t i = 0; i < RP_ARRAY_LEN(config_sections); i++)
        keys[i] = config_sections[i].key;
    keys[RP_ARRAY_LEN(config_sections)] = NULL;
    conf_check_keys(doc, root, keys);

    for (size_t i = 0; i < RP_ARRAY_LEN(config_sections); i++) {
        const struct config_section *s = &config_sections[i];
        const struct conf_node *node = s->required ? conf_require(doc, root, s->key) : conf_get(root, s->key);
        s->parse(doc, node, cfg);
    }
    validate(doc, root, cfg);
    return RP_OK;
}

int config_load_doc(struct conf_doc *doc, struct config *cfg)
{
    parse_doc(doc, cfg);
    if (conf_error_count(doc) == 0)
        return RP_OK;
    config_free(cfg);
    return RP_ERR;
}

static int finish(struct conf_doc *doc, struct config *cfg, FILE *err)
{
    int rc = config_load_doc(doc, cfg);
    if (rc != RP_OK)
        conf_print_errors(doc, err);
    conf_free(doc);
    return rc;
}

int config_load(const char *path, struct config *cfg, FILE *err)
{
    return finish(conf_load_file(path), cfg, err);
}

int config_load_startup(const char *path, struct config *cfg, FILE *err)
{
    struct conf_doc *doc = conf_load_file(path);
    int rc = RP_ERR;

    /* The start-up checks run on a partly parsed configuration too, so one
     * run lists schema mistakes and unusable files together. */
    if (parse_doc(doc, cfg) == RP_OK)
        config_check_startup(doc, cfg);
    if (conf_error_count(doc) == 0) {
        rc = RP_OK;
    } else {
        conf_print_errors(doc, err);
        config_free(cfg);
    }
    conf_free(doc);
    return rc;
}

int config_load_string(const char *name, const char *yaml, struct config *cfg, FILE *err)
{
    return finish(conf_load_string(name, yaml, yaml ? strlen(yaml) : 0), cfg, err);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = RP_ARRAY_LEN(config_sections); i > 0; i--)
        if (config_sections[i - 1].free)
            config_sections[i - 1].free(cfg);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- start-up checks ---------------------------------------------------- */

/* The directory part of path ("." when it has none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return rp_xstrdup(".");
    if (slash == path)
        return rp_xstrdup("/");
    return rp_xstrndup(path, (size_t)(slash - path));
}

/* The directory a file will be created in exists and lets us create it.
 * what names the file in the message ("access log \"x\""). */
static int check_dir_writable(struct conf_doc *doc, const struct conf_node *at, const char *what, const char *path)
{
    char *dir = dir_of(path);
    char shown[CONF_SHOW_PATH_CAP];
    struct stat st;
    int rc = RP_ERR;

    conf_show_path(dir, shown, sizeof shown);
    if (stat(dir, &st) < 0) {
        if (errno == ENOENT)
            conf_error_key(doc, at, "%s: directory \"%s\" does not exist", what, shown);
        else
            conf_error_key(doc, at, "%s: directory \"%s\": %s", what, shown, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        conf_error_key(doc, at, "%s: \"%s\" is not a directory", what, shown);
    } else if (access(dir, W_OK | X_OK) < 0) {
        conf_error_key(doc, at, "%s: directory \"%s\" is not writable: %s", what, shown, strerror(errno));
    } else {
        rc = RP_OK;
    }
    free(dir);
    return rc;
}

/* A file start-up opens for writing, creating it when missing: an
 * existing one must be a writable regular file, a missing one needs a
 * writable directory.  Nothing is created here: `rampart -t` leaves no
 * trace.  dir_too: the directory must be writable even when the file
 * exists (SQLite creates its journal files next to the database). */
static int check_output_file(struct conf_doc *doc, const struct conf_node *at, const char *kind, const char *path,
                             int mode, bool dir_too)
{
    char shown[CONF_SHOW_PATH_CAP], what[CONF_SHOW_PATH_CAP + 64];
    struct stat st;

    rp_snprintf(what, sizeof what, "%s \"%s\"", kind, conf_show_path(path, shown, sizeof shown));
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return check_dir_writable(doc, at, what, path);
        conf_error_key(doc, at, "%s: %s", what, strerror(errno));
        return RP_ERR;
    }
    if (!S_ISREG(st.st_mode)) {
        conf_error_key(doc, at, "%s is not a regular file", what);
        return RP_ERR;
    }
    if (access(path, mode) < 0) {
        conf_error_key(doc, at, "%s is not %s: %s", what, mode & R_OK ? "readable and writable" : "writable",
                       strerror(errno));
        return RP_ERR;
    }
    return dir_too ? check_dir_writable(doc, at, what, path) : RP_OK;
}

/* An existing, non-empty status database must be an SQLite file: pointing
 * status.db at some other file would fail start-up (and must never
 * overwrite it).  SQLite files start with this 16-byte header. */
static void check_sqlite_file(struct conf_doc *doc, const struct conf_node *at, const char *path)
{
    static const char magic[16] = "SQLite format 3";
    char head[16], shown[CONF_SHOW_PATH_CAP];
    FILE *f = fopen(path, "rbe");
    size_t n;

    if (!f)
        return; /* missing: created at start (its directory was checked) */
    n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n > 0 && (n < sizeof head || memcmp(head, magic, sizeof magic) != 0))
        conf_error_key(doc, at, "status database \"%s\" is not an SQLite database",
                       conf_show_path(path, shown, sizeof shown));
}

/* Bind (without listening) the way net_listen() does, to find addresses
 * this host cannot take (not local, privileged port).  A port in use is
 * not reported: `rampart -t` runs next to the gateway it will replace, and
 * start-up reports it when it binds for real. */
static void check_bind(struct conf_doc *doc, const struct conf_node *at, const char *what,
                       const struct sockaddr_storage *ss, socklen_t len, const char *text)
{
    char shown[CONF_SHOW_CAP];
    int one = 1, fd;

    if (len == 0 || !at)
        return;
    fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conf_error(doc, at, "cannot listen on %s address \"%s\": %s", what, conf_show(text, shown, sizeof shown),
                   strerror(errno));
        return;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 && errno != EADDRINUSE)
        conf_error(doc, at, "cannot listen on %s address \"%s\": %s", what, conf_show(text, shown, sizeof shown),
                   strerror(errno));
    close(fd);
}

static void check_listeners(struct conf_doc *doc, const struct conf_node *root, const struct config *cfg)
{
    for (size_t i = 0; i < cfg->num_listen; i++) {
        /* Positions, not nodes, outlive the document. */
        struct conf_node at = {.kind = CONF_SCALAR, .line = cfg->listen[i].line, .col = cfg->listen[i].col};
        check_bind(doc, &at, "proxy", &cfg->listen[i].ss, cfg->listen[i].len, cfg->listen[i].text);
    }
    if (cfg->has_admin)
        check_bind(doc, conf_get(conf_get(root, "admin"), "listen"), "admin", &cfg->admin_listen.ss,
                   cfg->admin_listen.len, cfg->admin_listen.text);
    if (cfg->has_status)
        check_bind(doc, conf_get(conf_get(root, "status"), "listen"), "status", &cfg->status.listen,
                   cfg->status.listen_len, cfg->status.listen_text);
}

int config_check_startup(struct conf_doc *doc, const struct config *cfg)
{
    const struct conf_node *root = conf_root(doc);
    size_t before = conf_error_count(doc);
    char why[1024];

    check_listeners(doc, root, cfg);

    const struct conf_node *tn = conf_get(conf_get(root, "admin"), "token_file");
    if (cfg->admin_token_file && tn && admin_token_read(cfg->admin_token_file, NULL, NULL, why, sizeof why) != RP_OK)
        conf_error_key(doc, tn, "%s", why);

    const struct conf_node *an = conf_get(conf_get(root, "log"), "access");
    const char *log = cfg->access_log;
    if (an && log && strcmp(log, "stdout") != 0 && strcmp(log, "stderr") != 0 && strcmp(log, "off") != 0)
        check_output_file(doc, an, "access log", log, W_OK, false);

    if (cfg->has_status) {
        const struct conf_node *sn = conf_get(root, "status");
        const struct conf_node *dn = conf_get(sn, "db");
        const char *db = cfg->status.db_path ? cfg->status.db_path : "rampart-status.db";
        if (check_output_file(doc, dn ? dn : sn, "status database", db, R_OK | W_OK, true) == RP_OK)
            check_sqlite_file(doc, dn ? dn : sn, db);
    }
    return conf_error_count(doc) == before ? RP_OK : RP_ERR;
}

int config_route(const struct config *cfg, const char *path, size_t len)
{
    if (cfg->num_routes == 0)
        return cfg->num_upstreams == 1 ? 0 : -1;
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct config_route *r = &cfg->routes[i];
        size_t plen = strlen(r->prefix);
        if (plen <= len && memcmp(path, r->prefix, plen) == 0)
            return r->upstream;
    }
    return -1;
}

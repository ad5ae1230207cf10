/*
 * tenant.h — who is asking: tenant identity, policy (class, share,
 * budgets) and the bounded table of tenants the gateway tracks.
 *
 * Identity.  A request's tenant comes from its API key (Authorization:
 * Bearer ...), from a configured header, or from the client address (also
 * the fallback when the key or header is missing).  The credential is
 * never stored: the table keys tenants by a keyed SHA-256 of it, with a
 * salt drawn at process start, so neither memory nor logs hold anything
 * that could be replayed or matched against a leaked key list.  Logs and
 * metrics name a tenant by its configured name, or by a short id such as
 * "t-3fa2c1" derived from that salted digest.
 *
 * Configuration names API keys by their SHA-256 (hex), or points at a key
 * file read once at load (each line hashed, the text wiped), so the config
 * itself holds no secret; docs/overload.md shows how to compute the digest.
 *
 * Bounds.  Configured tenants are always tracked.  Others take one of
 * max_tracked slots; an idle one is recycled (least recently used first)
 * once its budgets have refilled, so forgetting it gives nothing away.
 * When every slot is busy, newcomers share the "other" tenant (and its
 * budget) until one frees.
 */
#ifndef RP_TENANT_H
#define RP_TENANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admit.h"
#include "buf.h"
#include "conf.h"
#include "quota.h"

#define TENANT_NAME_MAX 48
#define TENANT_ID_LEN 16 /* bytes of salted digest kept */
#define TENANT_MAX_CREDENTIAL 4096

enum tenant_ident { TENANT_BY_API_KEY = 0, TENANT_BY_HEADER, TENANT_BY_ADDRESS };

struct tenant_policy {
    char name[TENANT_NAME_MAX]; /* configured name ("" for the defaults) */
    enum admit_class cls;       /* class of its requests, default interactive */
    enum admit_class max_class; /* best class a priority header may ask for */
    bool allow_priority_header;
    uint32_t weight; /* fair-queueing share, default 1 */
    struct quota_limits quota;
};

struct tenant_net {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

struct tenant_entry {
    struct tenant_policy policy;
    uint8_t (*keys)[32]; /* SHA-256 of API keys / header values */
    size_t nkeys;
    struct tenant_net *nets; /* identify: address */
    size_t nnets;
};

struct tenant_conf {
    enum tenant_ident ident;
    char header[64];          /* identify: header -> its name */
    char priority_header[64]; /* default "x-priority" */
    uint32_t max_tracked;     /* default 1024 */
    struct tenant_policy defaults;
    struct tenant_entry *entries;
    size_t nentries;
};

void tenant_conf_default(struct tenant_conf *c);
/* Parse the "tenants:" section (node may be NULL).  Errors at the node. */
int tenant_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct tenant_conf *c);
void tenant_conf_free(struct tenant_conf *c);

/* ---- runtime -------------------------------------------------------------- */

struct tenant {
    uint8_t id[TENANT_ID_LEN];
    char label[TENANT_NAME_MAX]; /* configured name, "t-xxxxxx" or "other" */
    const struct tenant_policy *policy;
    struct quota_state quota;
    uint32_t refs; /* live requests holding it */
    uint64_t last_used_us;
    bool configured, other, in_table;
    struct tenant *hnext;         /* id hash chain */
    struct tenant *lprev, *lnext; /* idle LRU */
    /* statistics, updated by the proxy */
    uint64_t requests;
    uint64_t refused_overload;
    uint64_t tokens_prompt, tokens_completion;
};

/* What the proxy knows of a request (views into its buffers). */
struct tenant_req {
    const char *authorization; /* Authorization value, or NULL */
    size_t authorization_len;
    const char *header; /* the configured identity header's value, or NULL */
    size_t header_len;
    const struct sockaddr *addr; /* client address */
    socklen_t addrlen;
};

struct tenant_table;

/* salt: 32 bytes, or NULL to draw one (the normal case; tests pass one). */
struct tenant_table *tenant_table_new(const struct tenant_conf *conf, const uint8_t *salt);
void tenant_table_free(struct tenant_table *tt);

/* The tenant of a request, with a reference taken (never NULL). */
struct tenant *tenant_identify(struct tenant_table *tt, const struct tenant_req *req, uint64_t now_us);
/* Drop the reference when the request is finished. */
void tenant_release(struct tenant_table *tt, struct tenant *t, uint64_t now_us);
/* Class for a request: the tenant's, or the priority header's value when
 * the tenant may set it, never better than the tenant's max_class.
 * prio may be NULL. */
enum admit_class tenant_class(const struct tenant *t, const char *prio, size_t len);
/* Stable key for the admission queue's per-tenant sub-queues. */
uint64_t tenant_flow_key(const struct tenant *t);
const char *tenant_priority_header(const struct tenant_table *tt);
const char *tenant_ident_header(const struct tenant_table *tt);
size_t tenant_tracked(const struct tenant_table *tt);

/* Prometheus lines: configured tenants, "other", and the busiest tracked
 * ones (at most TENANT_METRICS_TOP), so cardinality stays bounded. */
#define TENANT_METRICS_TOP 20
void tenant_metrics_render(struct sbuf *out, void *table);

#endif

/*
 * tenant.c — tenant identity, configuration and the bounded tenant table.
 * See tenant.h for what is stored (and what never is).
 *
 * Two digests are involved, for two different jobs:
 *   - SHA-256(credential), unsalted, only to find a configured tenant
 *     (the config lists those digests); computed on the stack and wiped;
 *   - SHA-256(salt || kind || credential), the identity kept in the table
 *     and the source of the printable id.  The salt is random per process,
 *     so the kept value matches nothing outside this process.
 */
#include "tenant.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "metrics.h"
#include "util.h"

#define TENANT_MAX_KEYS 100000   /* configured key digests in total */
#define TENANT_MAX_ENTRIES 10000 /* configured tenants */
#define KEY_FILE_MAX (1024 * 1024)

/* ---- configuration ----------------------------------------------------------
 *
 * Plain scalar keys are conf_field rows.  The policy keys are the same in
 * the default: map and in each list entry, so they are one macro of rows,
 * for a base struct and the path from it to its struct tenant_policy.
 * What spans keys (max_class against class, requests per second or per
 * minute with a burst, which matchers tenants.identify allows) is code
 * after the table. */

static const char *const class_names[] = {"critical", "interactive", "batch", NULL};
static const char *const ident_names[] = {"api_key", "header", "address", NULL};

#define POLICY_FIELDS(type, path)                                                                                      \
    CONF_FIELD_ENUM("class", type, path cls, class_names, ADMIT_INTERACTIVE),                                          \
        CONF_FIELD_ENUM("max_class", type, path max_class, class_names, ADMIT_INTERACTIVE),                            \
        CONF_FIELD_BOOL("allow_priority_header", type, path allow_priority_header, false),                             \
        CONF_FIELD_UINT("weight", type, path weight, 1, 1000,                                                          \
                        1), /* The request rate and its burst depend on each other: policy_cross(). */                 \
        CONF_FIELD_IGNORE("requests_per_second"), CONF_FIELD_IGNORE("requests_per_minute"),                            \
        CONF_FIELD_IGNORE("burst"),                                                                                    \
        CONF_FIELD_UINT("tokens_per_minute", type, path quota.tpm, 0, 1000000000000ull, 0),                            \
        CONF_FIELD_UINT("max_tokens_default", type, path quota.max_tokens_default, 1, 10000000, 4096)

static const struct conf_field policy_fields[] = {
    POLICY_FIELDS(struct tenant_policy, ),
    CONF_FIELD_END,
};

static void policy_default(struct tenant_policy *p)
{
    memset(p, 0, sizeof *p);
    conf_fields_defaults(policy_fields, p);
    /* No request rate: unlimited. */
    p->quota.rps = 0;
    p->quota.req_burst = 0;
}

void tenant_conf_free(struct tenant_conf *c)
{
    for (size_t i = 0; i < c->nentries; i++) {
        if (c->entries[i].keys)
            OPENSSL_cleanse(c->entries[i].keys, c->entries[i].nkeys * 32);
        free(c->entries[i].keys);
        free(c->entries[i].nets);
    }
    free(c->entries);
    c->entries = NULL;
    c->nentries = 0;
}

static bool is_token_char(int ch)
{
    return isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* An HTTP field name, stored lowercase. */
static int header_name(struct conf_doc *doc, const struct conf_node *n, char *out, size_t cap)
{
    const char *s = NULL;
    if (!n)
        return RP_OK;
    if (conf_string(doc, n, &s) != RP_OK)
        return RP_ERR;
    size_t len = strlen(s);
    if (len == 0 || len >= cap) {
        conf_error(doc, n, "header name must be 1..%zu characters", cap - 1);
        return RP_ERR;
    }
    for (size_t i = 0; i < len; i++)
        if (!is_token_char((unsigned char)s[i])) {
            conf_error(doc, n, "invalid character in header name");
            return RP_ERR;
        }
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
    return RP_OK;
}

/* What the policy rows cannot say on their own.  n is the map they were
 * read from. */
static int policy_cross(struct conf_doc *doc, const struct conf_node *n, struct tenant_policy *p)
{
    int rc = RP_OK;
    const struct conf_node *maxc = conf_get(n, "max_class");
    /* Without max_class, a tenant may not ask above its own class. */
    if (!maxc)
        p->max_class = p->cls;
    if (maxc && p->max_class > p->cls) {
        conf_error(doc, maxc, "max_class %s is below class %s", admit_class_name(p->max_class),
                   admit_class_name(p->cls));
        rc = RP_ERR;
    }

    const struct conf_node *rps = conf_get(n, "requests_per_second"), *rpm = conf_get(n, "requests_per_minute");
    const struct conf_node *burst = conf_get(n, "burst");
    if (rps && rpm) {
        conf_error_key(doc, rpm, "give requests_per_second or requests_per_minute, not both");
        rc = RP_ERR;
    } else if (rps) {
        double v = 0;
        if (conf_double(doc, rps, 0, 1e6, &v) == RP_OK) {
            p->quota.rps = v;
            p->quota.req_burst = v > 1 ? ceil(v) : 1;
        } else {
            rc = RP_ERR;
        }
    } else if (rpm) {
        uint64_t v = 0;
        if (conf_uint(doc, rpm, 0, 100000000, &v) == RP_OK) {
            /* Per minute, as OpenAI states it: a minute's worth of burst. */
            p->quota.rps = (double)v / 60.0;
            p->quota.req_burst = v ? (double)v : 0;
        } else {
            rc = RP_ERR;
        }
    }
    if (burst) {
        uint64_t b = 0;
        if (conf_uint(doc, burst, 1, 100000000, &b) == RP_OK)
            p->quota.req_burst = (double)b;
        else
            rc = RP_ERR;
    }
    return rc;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

static int add_key(struct conf_doc *doc, const struct conf_node *at, struct tenant_entry *e, const uint8_t d[32])
{
    if (e->nkeys >= TENANT_MAX_KEYS) {
        conf_error(doc, at, "too many keys (max %d)", TENANT_MAX_KEYS);
        return RP_ERR;
    }
    e->keys = rp_xrealloc(e->keys, (e->nkeys + 1) * 32);
    memcpy(e->keys[e->nkeys], d, 32);
    e->nkeys++;
    return RP_OK;
}

static int key_hex(struct conf_doc *doc, const struct conf_node *n, struct tenant_entry *e)
{
    const char *s = NULL;
    if (conf_string(doc, n, &s) != RP_OK)
        return RP_ERR;
    uint8_t d[32];
    if (strlen(s) != 64) {
        conf_error(doc, n, "key_sha256 must be 64 hex digits (the SHA-256 of the key)");
        return RP_ERR;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            conf_error(doc, n, "key_sha256 must be 64 hex digits (the SHA-256 of the key)");
            return RP_ERR;
        }
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    return add_key(doc, n, e, d);
}

/* The digest of a plain value (header value); the value stays in config
 * text, which is not secret for header identities. */
static int value_digest(struct conf_doc *doc, const struct conf_node *n, struct tenant_entry *e)
{
    const char *s = NULL;
    if (conf_string(doc, n, &s) != RP_OK)
        return RP_ERR;
    if (!*s || strlen(s) > TENANT_MAX_CREDENTIAL) {
        conf_error(doc, n, "header_value must be 1..%d characters", TENANT_MAX_CREDENTIAL);
        return RP_ERR;
    }
    uint8_t d[32];
    SHA256((const unsigned char *)s, strlen(s), d);
    return add_key(doc, n, e, d);
}

/* One key per line; blank lines and lines starting with '#' skipped.  The
 * file's text is wiped from memory once hashed. */
static int key_file(struct conf_doc *doc, const struct conf_node *n, struct tenant_entry *e)
{
    const char *path = NULL;
    if (conf_string(doc, n, &path) != RP_OK)
        return RP_ERR;
    /* Non-blocking, and only a regular file: a FIFO or a device named by
     * mistake must not hang start-up (or rampart -t). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        conf_error(doc, n, "cannot read key file: %s", strerror(errno));
        return RP_ERR;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        conf_error(doc, n, "key file is not a regular file");
        close(fd);
        return RP_ERR;
    }
    if (st.st_size > KEY_FILE_MAX) {
        conf_error(doc, n, "key file is larger than %d bytes", KEY_FILE_MAX);
        close(fd);
        return RP_ERR;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = rp_xmalloc(cap);
    size_t len = 0;
    int rc = RP_OK;
    /* Read to EOF (a file that grew since fstat is cut at cap and
     * refused as too large). */
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            conf_error(doc, n, "cannot read key file: %s", strerror(errno));
            rc = RP_ERR;
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap) {
            conf_error(doc, n, "key file is larger than %d bytes", KEY_FILE_MAX);
            rc = RP_ERR;
            break;
        }
    }
    close(fd);
    size_t found = 0;
    for (size_t i = 0; rc == RP_OK && i < len;) {
        size_t j = i;
        while (j < len && buf[j] != '\n')
            j++;
        size_t a = i, b = j;
        while (a < b && isspace((unsigned char)buf[a]))
            a++;
        while (b > a && isspace((unsigned char)buf[b - 1]))
            b--;
        if (b > a && buf[a] != '#') {
            uint8_t d[32];
            SHA256((const unsigned char *)buf + a, b - a, d);
            if (add_key(doc, n, e, d) != RP_OK)
                rc = RP_ERR;
            OPENSSL_cleanse(d, sizeof d);
            found++;
        }
        i = j + 1;
    }
    if (rc == RP_OK && found == 0) {
        conf_error(doc, n, "key file holds no key");
        rc = RP_ERR;
    }
    OPENSSL_cleanse(buf, cap);
    free(buf);
    return rc;
}

static int parse_net(struct conf_doc *doc, const struct conf_node *n, struct tenant_entry *e)
{
    const char *s = NULL;
    if (conf_string(doc, n, &s) != RP_OK)
        return RP_ERR;
    char text[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof text) {
        conf_error(doc, n, "invalid address (want an IP address or CIDR, e.g. 10.0.0.0/8)");
        return RP_ERR;
    }
    memcpy(text, s, alen);
    text[alen] = '\0';
    struct tenant_net net;
    memset(&net, 0, sizeof net);
    unsigned maxp;
    if (inet_pton(AF_INET, text, net.addr) == 1) {
        net.family = AF_INET;
        maxp = 32;
    } else if (inet_pton(AF_INET6, text, net.addr) == 1) {
        net.family = AF_INET6;
        maxp = 128;
    } else {
        conf_error(doc, n, "invalid address (want an IP address or CIDR, e.g. 10.0.0.0/8)");
        return RP_ERR;
    }
    net.prefix = maxp;
    if (slash) {
        char *end = NULL;
        errno = 0;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (errno || !end || *end || end == slash + 1 || p > maxp) {
            conf_error(doc, n, "invalid prefix length (0..%u)", maxp);
            return RP_ERR;
        }
        net.prefix = (unsigned)p;
    }
    if (e->nnets >= 1024) {
        conf_error(doc, n, "too many addresses (max 1024)");
        return RP_ERR;
    }
    e->nets = rp_xrealloc(e->nets, (e->nnets + 1) * sizeof *e->nets);
    e->nets[e->nnets++] = net;
    return RP_OK;
}

/* A scalar or a sequence of scalars, each handed to fn. */
static int each_scalar(struct conf_doc *doc, const struct conf_node *n, struct tenant_entry *e,
                       int (*fn)(struct conf_doc *, const struct conf_node *, struct tenant_entry *))
{
    if (!n)
        return RP_OK;
    if (n->kind != CONF_SEQ)
        return fn(doc, n, e);
    int rc = RP_OK;
    for (const struct conf_node *c = n->child; c; c = c->next)
        if (fn(doc, c, e) != RP_OK)
            rc = RP_ERR;
    return rc;
}

static const struct conf_field entry_fields[] = {
    /* Read after the table: name is required, and which matchers are
     * allowed depends on tenants.identify. */
    CONF_FIELD_IGNORE("name"),
    CONF_FIELD_IGNORE("key_sha256"),
    CONF_FIELD_IGNORE("key_file"),
    CONF_FIELD_IGNORE("header_value"),
    CONF_FIELD_IGNORE("address"),
    POLICY_FIELDS(struct tenant_entry, policy.),
    CONF_FIELD_END,
};

static int parse_entry(struct conf_doc *doc, const struct conf_node *n, struct tenant_conf *c, struct tenant_entry *e)
{
    if (conf_expect_map(doc, n) != RP_OK)
        return RP_ERR;
    /* An entry starts from the defaults: what it does not say, it inherits. */
    e->policy = c->defaults;
    int rc = conf_fields_parse(doc, n, entry_fields, e);
    const struct conf_node *nm = conf_require(doc, n, "name");
    const char *name = NULL;
    if (nm && conf_string(doc, nm, &name) == RP_OK) {
        size_t len = strlen(name);
        bool ok = len > 0 && len < TENANT_NAME_MAX;
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)name[i]) || strchr("-_.", name[i]);
        if (!ok) {
            conf_error(doc, nm, "tenant name must be 1..%d of [A-Za-z0-9._-]", TENANT_NAME_MAX - 1);
            rc = RP_ERR;
        } else if (strcmp(name, "other") == 0 || (len >= 2 && name[0] == 't' && name[1] == '-')) {
            conf_error(doc, nm, "tenant name \"%s\" is reserved", name);
            rc = RP_ERR;
        } else {
            rp_snprintf(e->policy.name, sizeof e->policy.name, "%s", name);
        }
    } else {
        rc = RP_ERR;
    }
    if (policy_cross(doc, n, &e->policy) != RP_OK)
        rc = RP_ERR;
    const struct conf_node *kh = conf_get(n, "key_sha256"), *kf = conf_get(n, "key_file");
    const struct conf_node *hv = conf_get(n, "header_value"), *ad = conf_get(n, "address");
    if ((kh || kf) && c->ident != TENANT_BY_API_KEY) {
        conf_error_key(doc, kh ? kh : kf, "key_sha256/key_file need tenants.identify: api_key");
        rc = RP_ERR;
    }
    if (hv && c->ident != TENANT_BY_HEADER) {
        conf_error_key(doc, hv, "header_value needs tenants.identify: header");
        rc = RP_ERR;
    }
    if (each_scalar(doc, kh, e, key_hex) != RP_OK)
        rc = RP_ERR;
    if (kf && key_file(doc, kf, e) != RP_OK)
        rc = RP_ERR;
    if (each_scalar(doc, hv, e, value_digest) != RP_OK)
        rc = RP_ERR;
    if (each_scalar(doc, ad, e, parse_net) != RP_OK)
        rc = RP_ERR;
    if (rc == RP_OK && e->nkeys == 0 && e->nnets == 0) {
        conf_error(doc, n, "tenant \"%s\" matches nothing: give key_sha256, key_file, header_value or address",
                   e->policy.name);
        rc = RP_ERR;
    }
    return rc;
}

static int parse_header(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct tenant_conf *c = base;
    return header_name(doc, n, c->header, sizeof c->header);
}

static int parse_priority_header(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct tenant_conf *c = base;
    return header_name(doc, n, c->priority_header, sizeof c->priority_header);
}

static int parse_default(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct tenant_conf *c = base;
    int rc = conf_fields_parse(doc, n, policy_fields, &c->defaults);
    if (n->kind != CONF_MAP)
        return rc;
    if (policy_cross(doc, n, &c->defaults) != RP_OK)
        rc = RP_ERR;
    return rc;
}

/* After default: (the row order): entries start from the defaults. */
static int parse_list(struct conf_doc *doc, const struct conf_node *list, void *base)
{
    struct tenant_conf *c = base;
    int rc = RP_OK;
    if (conf_expect_seq(doc, list) != RP_OK)
        return RP_ERR;
    size_t n = conf_len(list);
    if (n > TENANT_MAX_ENTRIES) {
        conf_error(doc, list, "too many tenants (max %d)", TENANT_MAX_ENTRIES);
        return RP_ERR;
    }
    c->entries = rp_xcalloc(n, sizeof *c->entries);
    for (const struct conf_node *it = list->child; it; it = it->next) {
        struct tenant_entry *e = &c->entries[c->nentries++];
        if (parse_entry(doc, it, c, e) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        for (size_t j = 0; j + 1 < c->nentries; j++)
            if (strcmp(c->entries[j].policy.name, e->policy.name) == 0) {
                conf_error(doc, conf_get(it, "name"), "duplicate tenant name \"%s\"", e->policy.name);
                rc = RP_ERR;
            }
    }
    return rc;
}

/* identify comes first: the entries' matchers depend on it. */
static const struct conf_field tenants_fields[] = {
    CONF_FIELD_ENUM("identify", struct tenant_conf, ident, ident_names, TENANT_BY_API_KEY),
    CONF_FIELD_CUSTOM("header", parse_header),
    /* Default "x-priority" (tenant_conf_default). */
    CONF_FIELD_CUSTOM("priority_header", parse_priority_header),
    CONF_FIELD_UINT("max_tracked", struct tenant_conf, max_tracked, 1, 1000000, 1024),
    CONF_FIELD_CUSTOM("default", parse_default),
    CONF_FIELD_CUSTOM("list", parse_list),
    CONF_FIELD_END,
};

void tenant_conf_default(struct tenant_conf *c)
{
    memset(c, 0, sizeof *c);
    conf_fields_defaults(tenants_fields, c);
    rp_snprintf(c->priority_header, sizeof c->priority_header, "%s", "x-priority");
    policy_default(&c->defaults);
}

int tenant_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct tenant_conf *c)
{
    if (!node)
        return RP_OK;
    int rc = conf_fields_parse(doc, node, tenants_fields, c);
    if (node->kind != CONF_MAP)
        return rc;
    if (c->ident == TENANT_BY_HEADER && !c->header[0]) {
        conf_error(doc, conf_get(node, "identify"), "identify: header needs tenants.header (the header's name)");
        rc = RP_ERR;
    }
    return rc;
}

/* ---- table ---------------------------------------------------------------------- */

struct keyref {
    uint8_t d[32];
    uint32_t entry;
};

struct tenant_table {
    const struct tenant_conf *conf;
    uint8_t salt[32];
    struct keyref *keys;
    size_t nkeys;
    struct tenant *configured;
    struct tenant other;
    struct tenant *slots;
    struct tenant *free_slots;
    struct tenant **htab;
    size_t hmask;
    struct tenant *lru_head, *lru_tail; /* idle dynamic tenants, oldest first */
    size_t tracked;
};

static int keyref_cmp(const void *a, const void *b)
{
    return memcmp(((const struct keyref *)a)->d, ((const struct keyref *)b)->d, 32);
}

/* id = SHA-256(salt || kind || data), first TENANT_ID_LEN bytes. */
static void salted_id(const struct tenant_table *tt, char kind, const void *data, size_t len,
                      uint8_t out[TENANT_ID_LEN])
{
    uint8_t buf[32 + 1 + TENANT_MAX_CREDENTIAL];
    uint8_t md[32];
    if (len > TENANT_MAX_CREDENTIAL)
        len = TENANT_MAX_CREDENTIAL; /* callers bound it; belt and braces */
    memcpy(buf, tt->salt, 32);
    buf[32] = (uint8_t)kind;
    memcpy(buf + 33, data, len);
    SHA256(buf, 33 + len, md);
    memcpy(out, md, TENANT_ID_LEN);
    OPENSSL_cleanse(buf, 33 + len);
    OPENSSL_cleanse(md, sizeof md);
}

static void label_from_id(struct tenant *t)
{
    rp_snprintf(t->label, sizeof t->label, "t-%02x%02x%02x", t->id[0], t->id[1], t->id[2]);
}

struct tenant_table *tenant_table_new(const struct tenant_conf *conf, const uint8_t *salt)
{
    struct tenant_table *tt = rp_xcalloc(1, sizeof *tt);
    tt->conf = conf;
    if (salt) {
        memcpy(tt->salt, salt, 32);
    } else if (RAND_bytes(tt->salt, sizeof tt->salt) != 1) {
        /* A predictable salt would make the kept digests linkable to
         * keys: refuse to run, like an allocation failure. */
        rp_log_err("tenant: cannot draw a random salt");
        abort();
    }
    size_t nk = 0;
    for (size_t i = 0; i < conf->nentries; i++)
        nk += conf->entries[i].nkeys;
    tt->keys = rp_xcalloc(nk ? nk : 1, sizeof *tt->keys);
    for (size_t i = 0; i < conf->nentries; i++)
        for (size_t k = 0; k < conf->entries[i].nkeys; k++) {
            memcpy(tt->keys[tt->nkeys].d, conf->entries[i].keys[k], 32);
            tt->keys[tt->nkeys].entry = (uint32_t)i;
            tt->nkeys++;
        }
    qsort(tt->keys, tt->nkeys, sizeof *tt->keys, keyref_cmp);

    tt->configured = rp_xcalloc(conf->nentries ? conf->nentries : 1, sizeof *tt->configured);
    for (size_t i = 0; i < conf->nentries; i++) {
        struct tenant *t = &tt->configured[i];
        t->policy = &conf->entries[i].policy;
        t->configured = true;
        salted_id(tt, 'c', t->policy->name, strlen(t->policy->name), t->id);
        rp_snprintf(t->label, sizeof t->label, "%s", t->policy->name);
    }
    tt->other.policy = &conf->defaults;
    tt->other.other = true;
    salted_id(tt, 'o', "", 0, tt->other.id);
    rp_snprintf(tt->other.label, sizeof tt->other.label, "%s", "other");

    uint32_t n = conf->max_tracked ? conf->max_tracked : 1;
    tt->slots = rp_xcalloc(n, sizeof *tt->slots);
    for (uint32_t i = n; i > 0; i--) {
        tt->slots[i - 1].lnext = tt->free_slots;
        tt->free_slots = &tt->slots[i - 1];
    }
    size_t hs = 16;
    while (hs < 2 * (size_t)n)
        hs <<= 1;
    tt->htab = rp_xcalloc(hs, sizeof *tt->htab);
    tt->hmask = hs - 1;
    return tt;
}

void tenant_table_free(struct tenant_table *tt)
{
    if (!tt)
        return;
    OPENSSL_cleanse(tt->salt, sizeof tt->salt);
    free(tt->keys);
    free(tt->configured);
    free(tt->slots);
    free(tt->htab);
    free(tt);
}

static size_t id_bucket(const struct tenant_table *tt, const uint8_t id[TENANT_ID_LEN])
{
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)h & tt->hmask;
}

static void lru_unlink(struct tenant_table *tt, struct tenant *t)
{
    if (t->lprev)
        t->lprev->lnext = t->lnext;
    else
        tt->lru_head = t->lnext;
    if (t->lnext)
        t->lnext->lprev = t->lprev;
    else
        tt->lru_tail = t->lprev;
    t->lprev = t->lnext = NULL;
}

static void lru_append(struct tenant_table *tt, struct tenant *t)
{
    t->lnext = NULL;
    t->lprev = tt->lru_tail;
    if (tt->lru_tail)
        tt->lru_tail->lnext = t;
    else
        tt->lru_head = t;
    tt->lru_tail = t;
}

static void hash_unlink(struct tenant_table *tt, struct tenant *t)
{
    for (struct tenant **pp = &tt->htab[id_bucket(tt, t->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == t) {
            *pp = t->hnext;
            t->hnext = NULL;
            return;
        }
}

/* "Bearer <token>": the token, or NULL. */
static const char *bearer_token(const char *v, size_t len, size_t *tlen)
{
    if (!v || len < 7 || !rp_strieq(v, 6, "bearer") || (v[6] != ' ' && v[6] != '\t'))
        return NULL;
    size_t i = 6;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    size_t j = len;
    while (j > i && (v[j - 1] == ' ' || v[j - 1] == '\t'))
        j--;
    if (j == i || j - i > TENANT_MAX_CREDENTIAL)
        return NULL;
    for (size_t k = i; k < j; k++)
        if (v[k] == ' ' || v[k] == '\t')
            return NULL;
    *tlen = j - i;
    return v + i;
}

/* Raw address bytes (IPv4-mapped IPv6 as IPv4), family in *fam. */
static size_t addr_bytes(const struct sockaddr *sa, socklen_t len, uint8_t out[16], int *fam)
{
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *fam = AF_INET;
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, a->s6_addr + 12, 4);
            *fam = AF_INET;
            return 4;
        }
        memcpy(out, a->s6_addr, 16);
        *fam = AF_INET6;
        return 16;
    }
    *fam = 0;
    return 0;
}

static bool net_match(const struct tenant_net *n, int fam, const uint8_t *a)
{
    if (n->family != fam)
        return false;
    unsigned full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, a, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((n->addr[full] & mask) != (a[full] & mask))
            return false;
    }
    return true;
}

static struct tenant *take(struct tenant *t, uint64_t now_us)
{
    t->refs++;
    t->last_used_us = now_us;
    t->requests++;
    return t;
}

struct tenant *tenant_identify(struct tenant_table *tt, const struct tenant_req *req, uint64_t now_us)
{
    const struct tenant_conf *c = tt->conf;
    const char *cred = NULL;
    size_t clen = 0;
    char kind = 'a';
    if (c->ident == TENANT_BY_API_KEY) {
        cred = bearer_token(req->authorization, req->authorization_len, &clen);
        if (cred)
            kind = 'k';
    } else if (c->ident == TENANT_BY_HEADER && req->header && req->header_len > 0 &&
               req->header_len <= TENANT_MAX_CREDENTIAL) {
        cred = req->header;
        clen = req->header_len;
        kind = 'h';
    }
    uint8_t abuf[16];
    int fam = 0;
    if (kind == 'a') {
        clen = addr_bytes(req->addr, req->addrlen, abuf, &fam);
        cred = (const char *)abuf;
    }

    /* Configured tenants first. */
    if (kind != 'a' && tt->nkeys) {
        struct keyref probe;
        SHA256((const unsigned char *)cred, clen, probe.d);
        const struct keyref *hit = bsearch(&probe, tt->keys, tt->nkeys, sizeof *tt->keys, keyref_cmp);
        OPENSSL_cleanse(probe.d, sizeof probe.d);
        if (hit)
            return take(&tt->configured[hit->entry], now_us);
    } else if (kind == 'a' && fam) {
        for (size_t i = 0; i < c->nentries; i++)
            for (size_t k = 0; k < c->entries[i].nnets; k++)
                if (net_match(&c->entries[i].nets[k], fam, abuf))
                    return take(&tt->configured[i], now_us);
    }

    uint8_t id[TENANT_ID_LEN];
    salted_id(tt, kind, cred, clen, id);
    size_t b = id_bucket(tt, id);
    for (struct tenant *t = tt->htab[b]; t; t = t->hnext)
        if (memcmp(t->id, id, TENANT_ID_LEN) == 0) {
            if (t->refs == 0)
                lru_unlink(tt, t);
            return take(t, now_us);
        }

    struct tenant *t = tt->free_slots;
    if (t) {
        tt->free_slots = t->lnext;
        tt->tracked++;
    } else if (tt->lru_head && quota_is_full(&tt->lru_head->quota, &tt->lru_head->policy->quota, now_us)) {
        /* Recycle the longest-idle tenant; its budgets are full again, so
         * forgetting it grants nothing. */
        t = tt->lru_head;
        lru_unlink(tt, t);
        hash_unlink(tt, t);
    } else {
        return take(&tt->other, now_us);
    }
    memset(t, 0, sizeof *t);
    memcpy(t->id, id, TENANT_ID_LEN);
    label_from_id(t);
    t->policy = &c->defaults;
    t->in_table = true;
    t->hnext = tt->htab[b];
    tt->htab[b] = t;
    return take(t, now_us);
}

void tenant_release(struct tenant_table *tt, struct tenant *t, uint64_t now_us)
{
    if (!t || t->refs == 0)
        return;
    t->refs--;
    t->last_used_us = now_us;
    if (t->refs == 0 && t->in_table)
        lru_append(tt, t);
}

enum admit_class tenant_class(const struct tenant *t, const char *prio, size_t len)
{
    const struct tenant_policy *p = t->policy;
    enum admit_class c = p->cls;
    if (prio && len && p->allow_priority_header) {
        int want = admit_class_parse(prio, len);
        if (want >= 0) {
            c = (enum admit_class)want;
            if (c < p->max_class)
                c = p->max_class; /* never above what the tenant may ask */
        }
    }
    return c;
}

uint64_t tenant_flow_key(const struct tenant *t)
{
    uint64_t k;
    memcpy(&k, t->id, sizeof k);
    return k;
}

const char *tenant_priority_header(const struct tenant_table *tt)
{
    return tt->conf->priority_header;
}

const char *tenant_ident_header(const struct tenant_table *tt)
{
    return tt->conf->ident == TENANT_BY_HEADER ? tt->conf->header : NULL;
}

size_t tenant_tracked(const struct tenant_table *tt)
{
    return tt->tracked;
}

/* ---- metrics ----------------------------------------------------------------------- */

static void render_one(struct sbuf *out, struct sbuf *lb, const struct tenant *t, int what)
{
    sbuf_reset(lb);
    sbuf_adds(lb, "tenant=\"");
    metrics_label_escape(lb, t->label);
    sbuf_adds(lb, "\"");
    size_t base = lb->len;
    switch (what) {
    case 0: metrics_sample_u64(out, "rampart_tenant_requests_total", lb->data, t->requests); break;
    case 1: {
        const char *rs[] = {"requests", "tokens", "too_large", "overload"};
        uint64_t vs[] = {t->quota.refused_requests, t->quota.refused_tokens, t->quota.refused_too_large,
                         t->refused_overload};
        for (size_t i = 0; i < 4; i++) {
            lb->len = base;
            lb->data[base] = '\0';
            sbuf_printf(lb, ",reason=\"%s\"", rs[i]);
            metrics_sample_u64(out, "rampart_tenant_refused_total", lb->data, vs[i]);
        }
        break;
    }
    case 2:
        sbuf_adds(lb, ",kind=\"prompt\"");
        metrics_sample_u64(out, "rampart_tenant_tokens_total", lb->data, t->tokens_prompt);
        lb->len = base;
        lb->data[base] = '\0';
        sbuf_adds(lb, ",kind=\"completion\"");
        metrics_sample_u64(out, "rampart_tenant_tokens_total", lb->data, t->tokens_completion);
        break;
    case 3: metrics_sample_u64(out, "rampart_tenant_reserved_tokens", lb->data, t->quota.reserved); break;
    }
}

void tenant_metrics_render(struct sbuf *out, void *table)
{
    struct tenant_table *tt = table;
    const struct tenant *top[TENANT_METRICS_TOP];
    size_t ntop = 0;
    /* The busiest tracked tenants by requests: a bounded insertion sort. */
    uint32_t n = tt->conf->max_tracked ? tt->conf->max_tracked : 1;
    for (uint32_t i = 0; i < n; i++) {
        const struct tenant *t = &tt->slots[i];
        if (!t->in_table)
            continue;
        size_t pos = ntop;
        while (pos > 0 && top[pos - 1]->requests < t->requests)
            pos--;
        if (pos >= TENANT_METRICS_TOP)
            continue;
        size_t last = ntop < TENANT_METRICS_TOP ? ntop : TENANT_METRICS_TOP - 1;
        for (size_t k = last; k > pos; k--)
            top[k] = top[k - 1];
        top[pos] = t;
        if (ntop < TENANT_METRICS_TOP)
            ntop++;
    }
    static const char *const fam[][3] = {
        {"rampart_tenant_requests_total", "counter", "Requests per tenant"},
        {"rampart_tenant_refused_total", "counter", "Refusals per tenant and reason"},
        {"rampart_tenant_tokens_total", "counter", "Model tokens per tenant (settled usage)"},
        {"rampart_tenant_reserved_tokens", "gauge", "Tokens reserved by requests in flight"},
    };
    struct sbuf lb;
    sbuf_init(&lb, 512);
    for (int w = 0; w < 4; w++) {
        metrics_family(out, fam[w][0], fam[w][1], fam[w][2]);
        for (size_t i = 0; i < tt->conf->nentries; i++)
            render_one(out, &lb, &tt->configured[i], w);
        render_one(out, &lb, &tt->other, w);
        for (size_t i = 0; i < ntop; i++)
            render_one(out, &lb, top[i], w);
    }
    metrics_family(out, "rampart_tenants_tracked", "gauge", "Unconfigured tenants currently tracked");
    metrics_sample_u64(out, "rampart_tenants_tracked", "", tt->tracked);
    sbuf_free(&lb);
}

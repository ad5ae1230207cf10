/*
 * status_conf.c — the `status:` section and the top-level `components:`
 * list (see status.h for what each key means).
 *
 * Plain scalars are rows of conf_field tables, so a key cannot be accepted
 * without being parsed (nor the other way round), and the known-keys lists
 * and range messages come from the rows.  What the rows cannot say stays
 * code: checks across keys (threshold order, short < long window), keys
 * whose value is a nested map or list, and strings kept as allocated
 * copies.
 */
#include "status.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define SEC_US 1000000ULL
#define MIN_US (60 * SEC_US)
#define HOUR_US (60 * MIN_US)
#define DAY_US (24 * HOUR_US)

/* Shortest burn-rate short window: one live/burn slot (status_int.h). */
#define RULE_SHORTEST_US (5 * SEC_US)

static int parse_listen(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_db(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_page(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_live(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_objective(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_incidents(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_target(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_comp_target(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_page_name(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_page_url(struct conf_doc *doc, const struct conf_node *n, void *base);
static int parse_burn_rates(struct conf_doc *doc, const struct conf_node *n, void *base);

/* status: */
static const struct conf_field status_fields[] = {
    CONF_FIELD_CUSTOM("listen", parse_listen),
    CONF_FIELD_CUSTOM("db", parse_db),
    CONF_FIELD_CUSTOM("page", parse_page),
    CONF_FIELD_DURATION("refresh", struct status_conf, refresh_us, 1 * SEC_US, 60 * SEC_US, 5 * SEC_US),
    CONF_FIELD_CUSTOM("live", parse_live),
    CONF_FIELD_CUSTOM("objective", parse_objective),
    CONF_FIELD_CUSTOM("incidents", parse_incidents),
    CONF_FIELD_DURATION("retention", struct status_conf, retention_us, DAY_US, 3650 * DAY_US, 400 * DAY_US),
    CONF_FIELD_END,
};

/* status.page: */
static const struct conf_field page_fields[] = {
    CONF_FIELD_CUSTOM("name", parse_page_name),
    CONF_FIELD_CUSTOM("url", parse_page_url),
    CONF_FIELD_END,
};

/* status.live: the thresholds' order is checked in parse_live(). */
static const struct conf_field live_fields[] = {
    CONF_FIELD_DURATION("window", struct status_conf, window_us, 10 * SEC_US, 10 * MIN_US, MIN_US),
    CONF_FIELD_UINT("min_requests", struct status_conf, min_requests, 1, 1000000, 5),
    CONF_FIELD_DOUBLE("degraded_below", struct status_conf, degraded_below, 0.0, 1.0, 0.95),
    CONF_FIELD_DOUBLE("partial_below", struct status_conf, partial_below, 0.0, 1.0, 0.90),
    CONF_FIELD_DOUBLE("major_below", struct status_conf, major_below, 0.0, 1.0, 0.50),
    CONF_FIELD_DURATION("recover_after", struct status_conf, recover_after_us, 0, HOUR_US, 2 * MIN_US),
    CONF_FIELD_DURATION("no_data_after", struct status_conf, no_data_after_us, 10 * SEC_US, DAY_US, 5 * MIN_US),
    CONF_FIELD_END,
};

/* status.objective: the target is written in percent (99.5), kept as a
 * ratio (0.995); the default of latency is status_conf_init's. */
static const struct conf_field objective_fields[] = {
    CONF_FIELD_CUSTOM("target", parse_target),
    CONF_FIELD_DURATION("latency", struct status_conf, latency_us, 1000, 10 * MIN_US, 5 * SEC_US),
    CONF_FIELD_END,
};

/* components[].objective: 0 means "the status default", so no defaults. */
static const struct conf_field comp_objective_fields[] = {
    CONF_FIELD_CUSTOM("target", parse_comp_target),
    CONF_FIELD_DURATION("latency", struct status_component_conf, latency_us, 1000, 10 * MIN_US, 0),
    CONF_FIELD_END,
};

/* status.incidents: */
static const struct conf_field incidents_fields[] = {
    CONF_FIELD_BOOL("auto", struct status_conf, auto_incidents, true),
    CONF_FIELD_DURATION("resolve_after", struct status_conf, resolve_after_us, 0, DAY_US, 15 * MIN_US),
    CONF_FIELD_CUSTOM("burn_rates", parse_burn_rates),
    CONF_FIELD_END,
};

/* status.incidents.burn_rates[]: every key is required; short < long is
 * checked in parse_burn_rates(). */
static const struct conf_field rule_fields[] = {
    CONF_FIELD_DOUBLE("factor", struct status_burn_rule, factor, 1.0, 1000.0, 0.0),
    CONF_FIELD_DURATION("long", struct status_burn_rule, long_us, 10 * SEC_US, DAY_US, 0),
    CONF_FIELD_DURATION("short", struct status_burn_rule, short_us, RULE_SHORTEST_US, DAY_US, 0),
    CONF_FIELD_END,
};

void status_conf_init(struct status_conf *sc)
{
    memset(sc, 0, sizeof *sc);
    conf_fields_defaults(status_fields, sc);
    conf_fields_defaults(live_fields, sc);
    conf_fields_defaults(objective_fields, sc);
    conf_fields_defaults(incidents_fields, sc);
    sc->target = 0.995;
    sc->rules[0] = (struct status_burn_rule){14.4, HOUR_US, 5 * MIN_US};
    sc->rules[1] = (struct status_burn_rule){6.0, 6 * HOUR_US, 30 * MIN_US};
    sc->num_rules = 2;
}

void status_conf_free(struct status_conf *sc)
{
    free(sc->db_path);
    free(sc->page_name);
    free(sc->page_url);
    for (size_t i = 0; i < sc->num_components; i++) {
        struct status_component_conf *c = &sc->components[i];
        free(c->name);
        free(c->description);
        for (size_t k = 0; k < c->num_routes; k++)
            free(c->routes[k]);
        for (size_t k = 0; k < c->num_upstreams; k++)
            free(c->upstreams[k]);
    }
    for (size_t u = 0; u < sc->num_upstreams; u++)
        free(sc->upstreams[u]);
    status_conf_init(sc);
}

static void conf_strdup(struct conf_doc *doc, const struct conf_node *n, size_t max, char **out)
{
    const char *s = NULL;
    if (!n || conf_string(doc, n, &s) != RP_OK || !s)
        return;
    if (strlen(s) > max) {
        conf_error(doc, n, "too long (at most %zu bytes)", max);
        return;
    }
    free(*out);
    *out = rp_xstrdup(s);
}

static int parse_listen(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct status_conf *sc = base;
    if (conf_addr(doc, n, &sc->listen, &sc->listen_len) != RP_OK)
        return RP_ERR;
    if (n->value)
        rp_snprintf(sc->listen_text, sizeof sc->listen_text, "%.63s", n->value);
    return RP_OK;
}

static int parse_db(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    conf_strdup(doc, n, 4096, &((struct status_conf *)base)->db_path);
    return RP_OK;
}

static int parse_page_name(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    conf_strdup(doc, n, 100, &((struct status_conf *)base)->page_name);
    return RP_OK;
}

static int parse_page_url(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    conf_strdup(doc, n, 1024, &((struct status_conf *)base)->page_url);
    return RP_OK;
}

static int parse_page(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return conf_fields_parse(doc, n, page_fields, base);
}

static int parse_live(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct status_conf *sc = base;
    if (conf_expect_map(doc, n) != RP_OK)
        return RP_ERR;
    int rc = conf_fields_parse(doc, n, live_fields, sc);
    if (!(sc->major_below <= sc->partial_below && sc->partial_below <= sc->degraded_below)) {
        conf_error(doc, n, "thresholds must satisfy major_below <= partial_below <= degraded_below");
        rc = RP_ERR;
    }
    return rc;
}

/* A target in percent into *target (a ratio); unchanged on error. */
static int target_pct(struct conf_doc *doc, const struct conf_node *n, double *target)
{
    double pct = *target * 100.0;
    if (conf_double(doc, n, 50.0, 99.9999, &pct) != RP_OK)
        return RP_ERR;
    *target = pct / 100.0;
    return RP_OK;
}

static int parse_target(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return target_pct(doc, n, &((struct status_conf *)base)->target);
}

static int parse_comp_target(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return target_pct(doc, n, &((struct status_component_conf *)base)->target);
}

static int parse_objective(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return conf_fields_parse(doc, n, objective_fields, base);
}

static int parse_incidents(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return conf_fields_parse(doc, n, incidents_fields, base);
}

static int parse_burn_rates(struct conf_doc *doc, const struct conf_node *br, void *base)
{
    struct status_conf *sc = base;
    if (conf_expect_seq(doc, br) != RP_OK)
        return RP_ERR;
    size_t before = conf_error_count(doc);
    sc->num_rules = 0;
    for (const struct conf_node *r = br->child; r; r = r->next) {
        if (sc->num_rules >= STATUS_MAX_RULES) {
            conf_error(doc, r, "at most %d burn-rate rules", STATUS_MAX_RULES);
            break;
        }
        if (conf_expect_map(doc, r) != RP_OK)
            continue;
        const struct conf_node *f = conf_get(r, "factor");
        const struct conf_node *l = conf_get(r, "long");
        const struct conf_node *s = conf_get(r, "short");
        if (!f || !l || !s) {
            /* Name every missing key, and the unknown ones, but do not
             * judge a rule that is not whole. */
            const char *keys[RP_ARRAY_LEN(rule_fields)];
            size_t nk = 0;
            for (const struct conf_field *rf = rule_fields; rf->key; rf++)
                keys[nk++] = rf->key;
            keys[nk] = NULL;
            conf_check_keys(doc, r, keys);
            for (const struct conf_field *rf = rule_fields; rf->key; rf++)
                conf_require(doc, r, rf->key);
            continue;
        }
        /* Each value is stored only when valid, so a rule whose three
         * values are all set is whole (an unknown key beside them is
         * reported, and does not cost the rule). */
        struct status_burn_rule rule = {0, 0, 0};
        conf_fields_parse(doc, r, rule_fields, &rule);
        if (!(rule.factor >= 1.0 && rule.factor <= 1000.0) || !rule.long_us || !rule.short_us)
            continue;
        if (rule.short_us >= rule.long_us) {
            conf_error(doc, s, "short window must be shorter than the long window");
            continue;
        }
        sc->rules[sc->num_rules++] = rule;
    }
    if (sc->num_rules == 0)
        conf_error(doc, br, "at least one burn-rate rule is needed (or set auto: false)");
    return conf_error_count(doc) > before ? RP_ERR : RP_OK;
}

static void parse_list(struct conf_doc *doc, const struct conf_node *n, char **out, size_t *count, bool route)
{
    if (!n || conf_expect_seq(doc, n) != RP_OK)
        return;
    for (const struct conf_node *it = n->child; it; it = it->next) {
        const char *s = NULL;
        if (conf_string(doc, it, &s) != RP_OK || !s)
            continue;
        if (*count >= STATUS_MAX_MATCH) {
            conf_error(doc, it, "at most %d entries", STATUS_MAX_MATCH);
            return;
        }
        if (route && s[0] != '/') {
            conf_error(doc, it, "a route prefix starts with '/'");
            continue;
        }
        if (!s[0] || strlen(s) > 256) {
            conf_error(doc, it, "must be 1 to 256 characters");
            continue;
        }
        out[(*count)++] = rp_xstrdup(s);
    }
}

static bool upstream_known(const struct status_conf *sc, const char *name)
{
    for (size_t u = 0; u < sc->num_upstreams; u++)
        if (sc->upstreams[u] && strcmp(sc->upstreams[u], name) == 0)
            return true;
    return false;
}

static int parse_comp_name(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct status_component_conf *c = base;
    conf_strdup(doc, n, 100, &c->name);
    if (c->name && !c->name[0])
        conf_error(doc, n, "a component needs a non-empty name");
    return RP_OK;
}

static int parse_comp_description(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    conf_strdup(doc, n, 500, &((struct status_component_conf *)base)->description);
    return RP_OK;
}

static int parse_comp_routes(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct status_component_conf *c = base;
    parse_list(doc, n, c->routes, &c->num_routes, true);
    return RP_OK;
}

static int parse_comp_upstreams(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct status_component_conf *c = base;
    parse_list(doc, n, c->upstreams, &c->num_upstreams, false);
    return RP_OK;
}

static int parse_comp_objective(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return conf_fields_parse(doc, n, comp_objective_fields, base);
}

/* components[]: a name is required and unique, upstreams must exist, and
 * some traffic must feed the component: checked in parse_components(). */
static const struct conf_field component_fields[] = {
    CONF_FIELD_CUSTOM("name", parse_comp_name),           CONF_FIELD_CUSTOM("description", parse_comp_description),
    CONF_FIELD_CUSTOM("routes", parse_comp_routes),       CONF_FIELD_CUSTOM("upstreams", parse_comp_upstreams),
    CONF_FIELD_CUSTOM("objective", parse_comp_objective), CONF_FIELD_END,
};

static void parse_components(struct conf_doc *doc, const struct conf_node *n, struct status_conf *sc)
{
    if (conf_expect_seq(doc, n) != RP_OK)
        return;
    for (const struct conf_node *it = n->child; it; it = it->next) {
        if (sc->num_components >= STATUS_MAX_COMPONENTS) {
            conf_error(doc, it, "at most %d components", STATUS_MAX_COMPONENTS);
            return;
        }
        if (conf_expect_map(doc, it) != RP_OK)
            continue;
        struct status_component_conf *c = &sc->components[sc->num_components++];
        memset(c, 0, sizeof *c);
        conf_fields_parse(doc, it, component_fields, c);
        const struct conf_node *name = conf_get(it, "name");
        if (!name)
            conf_require(doc, it, "name");
        for (size_t k = 0; c->name && k + 1 < sc->num_components; k++)
            if (sc->components[k].name && strcmp(sc->components[k].name, c->name) == 0)
                conf_error(doc, name, "component \"%s\" is defined twice", c->name);
        const struct conf_node *ups = conf_get(it, "upstreams");
        if (sc->upstreams_known && ups) {
            const struct conf_node *un = ups->child;
            for (size_t k = 0; k < c->num_upstreams; k++, un = un ? un->next : NULL)
                if (!upstream_known(sc, c->upstreams[k]))
                    conf_error(doc, un ? un : ups, "no upstream named \"%s\"", c->upstreams[k]);
        }
        if (c->num_routes == 0 && c->num_upstreams == 0)
            conf_error(doc, it, "component needs routes: or upstreams: to say which traffic feeds it");
    }
}

int status_conf_parse(struct conf_doc *doc, const struct conf_node *sn, const struct conf_node *cn,
                      const char *const *upstreams, size_t num_upstreams, struct status_conf *sc)
{
    size_t before = conf_error_count(doc);

    if (upstreams) {
        /* The configuration cannot hold more; a caller that passes more
         * has a limit out of step with ours. */
        RP_ASSERT(num_upstreams <= STATUS_MAX_UPSTREAMS);
        if (num_upstreams > STATUS_MAX_UPSTREAMS)
            num_upstreams = STATUS_MAX_UPSTREAMS;
        for (size_t u = 0; u < num_upstreams; u++)
            sc->upstreams[u] = upstreams[u] ? rp_xstrdup(upstreams[u]) : NULL;
        sc->num_upstreams = num_upstreams;
        sc->upstreams_known = true;
    }
    if (!sn) {
        if (cn)
            conf_error_key(doc, cn, "components: needs a status: section (with listen:) that publishes them");
        return conf_error_count(doc) > before ? RP_ERR : RP_OK;
    }
    if (conf_expect_map(doc, sn) != RP_OK)
        return RP_ERR;
    sc->enabled = true;
    conf_fields_parse(doc, sn, status_fields, sc);
    if (!conf_get(sn, "listen"))
        conf_require(doc, sn, "listen");
    if (!sc->db_path)
        sc->db_path = rp_xstrdup("rampart-status.db");
    if (!sc->page_name)
        sc->page_name = rp_xstrdup("rampart");
    if (!sc->page_url)
        sc->page_url = rp_xstrdup("");
    if (cn)
        parse_components(doc, cn, sc);
    return conf_error_count(doc) > before ? RP_ERR : RP_OK;
}

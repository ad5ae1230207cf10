/*
 * admit_conf.c — the overload: section (global, and per upstream on top of
 * the global result).
 *
 * Plain scalar keys are rows of a conf_field table, so a key cannot be
 * accepted without being parsed; what spans several keys (max_concurrency
 * alone means static, static needs max_concurrency, min <= max) and the
 * per-class waits stay as code after the table has run.
 */
#include "admit.h"

#include <string.h>

#include "util.h"

#define MS_US 1000ull
#define SEC_US 1000000ull
#define HOUR_US (3600ull * SEC_US)

/* "auto" or a duration; auto stores 0.  The bounds are the row's. */
static int duration_or_auto(struct conf_doc *doc, const struct conf_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
    if (n->kind == CONF_SCALAR && n->value && strcmp(n->value, "auto") == 0) {
        *out = 0;
        return RP_OK;
    }
    return conf_duration_range(doc, n, min, max, out);
}

static int parse_probe_interval(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct admit_limiter_conf *l = base;
    return duration_or_auto(doc, n, 10 * MS_US, 600 * SEC_US, &l->probe_interval_us);
}

static int parse_standing_wait(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct admit_queue_conf *q = base;
    return duration_or_auto(doc, n, 1 * MS_US, HOUR_US, &q->standing_wait_us);
}

/* queue.max_wait sets every class; classes: may then override one. */
static int parse_max_wait(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct admit_queue_conf *q = base;
    uint64_t v = q->max_wait_us[ADMIT_INTERACTIVE];
    if (conf_duration_range(doc, n, 1 * MS_US, HOUR_US, &v) != RP_OK)
        return RP_ERR;
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
        q->max_wait_us[i] = v;
    return RP_OK;
}

static const struct conf_field codel_fields[] = {
    CONF_FIELD_DURATION("target", struct admit_queue_conf, codel_target_us, 100, 60 * SEC_US, 20 * MS_US),
    CONF_FIELD_DURATION("interval", struct admit_queue_conf, codel_interval_us, 1 * MS_US, 60 * SEC_US, 100 * MS_US),
    CONF_FIELD_END,
};

static int parse_codel(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return conf_fields_parse(doc, n, codel_fields, base);
}

static const char *const mode_names[] = {"adaptive", "static", NULL};

static const struct conf_field limiter_fields[] = {
    CONF_FIELD_ENUM("mode", struct admit_limiter_conf, mode, mode_names, ADMIT_MODE_ADAPTIVE),
    /* 0 by default: adaptive.  Written alone, it means static (below). */
    CONF_FIELD_UINT("max_concurrency", struct admit_limiter_conf, max_concurrency, 1, 100000, 0),
    CONF_FIELD_UINT("initial", struct admit_limiter_conf, initial, 1, 100000, 8),
    CONF_FIELD_UINT("min", struct admit_limiter_conf, min, 1, 100000, 1),
    CONF_FIELD_UINT("max", struct admit_limiter_conf, max, 1, 100000, 1000),
    CONF_FIELD_DOUBLE("tolerance", struct admit_limiter_conf, tolerance, 0.05, 100.0, 0.5),
    CONF_FIELD_DURATION("sample_interval", struct admit_limiter_conf, sample_interval_us, 1 * MS_US, 10 * SEC_US,
                        100 * MS_US),
    CONF_FIELD_DURATION("baseline_window", struct admit_limiter_conf, baseline_window_us, 1 * SEC_US, HOUR_US,
                        10 * SEC_US),
    /* "auto" (0, the default) or a duration. */
    CONF_FIELD_CUSTOM("probe_interval", parse_probe_interval),
    CONF_FIELD_END,
};

static const struct conf_field queue_fields[] = {
    CONF_FIELD_UINT("max_length", struct admit_queue_conf, max_length, 1, 1000000, 1024),
    /* Every class's wait (default 10s); classes: overrides one. */
    CONF_FIELD_CUSTOM("max_wait", parse_max_wait),
    /* {target, interval}: codel_fields. */
    CONF_FIELD_CUSTOM("codel", parse_codel),
    CONF_FIELD_BOOL("lifo", struct admit_queue_conf, lifo, true),
    /* "auto" (0, the default: 4 departure intervals) or a duration. */
    CONF_FIELD_CUSTOM("standing_wait", parse_standing_wait),
    CONF_FIELD_UINT("credit", struct admit_queue_conf, credit, 0, 1000, 4),
    CONF_FIELD_END,
};

void admit_conf_default(struct admit_conf *c)
{
    memset(c, 0, sizeof *c);
    conf_fields_defaults(limiter_fields, &c->limiter);
    c->limiter.probe_interval_us = 0;
    conf_fields_defaults(queue_fields, &c->queue);
    conf_fields_defaults(codel_fields, &c->queue);
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++)
        c->queue.max_wait_us[i] = 10 * SEC_US;
    c->queue.standing_wait_us = 0;
}

static int parse_limiter(struct conf_doc *doc, const struct conf_node *node, struct admit_limiter_conf *l)
{
    const struct conf_node *mode = conf_get(node, "mode");
    const struct conf_node *mc = conf_get(node, "max_concurrency");
    int rc = conf_fields_parse(doc, node, limiter_fields, l);
    if (node->kind != CONF_MAP)
        return rc;
    /* max_concurrency alone means static (HAProxy's maxconn). */
    if (!mode && mc)
        l->mode = ADMIT_MODE_STATIC;
    /* A max_concurrency that was written but refused has its own error. */
    if (l->mode == ADMIT_MODE_STATIC && l->max_concurrency == 0 && !mc) {
        conf_error(doc, mode ? mode : node, "mode static needs max_concurrency");
        rc = RP_ERR;
    }
    if (l->min > l->max) {
        conf_error(doc, conf_get(node, "min") ? conf_get(node, "min") : node, "min (%u) is above max (%u)", l->min,
                   l->max);
        rc = RP_ERR;
    }
    return rc;
}

/* classes: {critical: {max_wait: 30s}, batch: {max_wait: 2s}} */
static int parse_classes(struct conf_doc *doc, const struct conf_node *node, struct admit_queue_conf *q)
{
    static const char *const keys[] = {"critical", "interactive", "batch", NULL};
    static const char *const ckeys[] = {"max_wait", NULL};
    int rc = RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    for (int i = 0; i < ADMIT_NUM_CLASSES; i++) {
        const struct conf_node *c = conf_get(node, admit_class_name((enum admit_class)i));
        if (!c)
            continue;
        if (conf_expect_map(doc, c) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        if (conf_check_keys(doc, c, ckeys) > 0)
            rc = RP_ERR;
        if (conf_duration_range(doc, conf_get(c, "max_wait"), 1 * MS_US, HOUR_US, &q->max_wait_us[i]) != RP_OK)
            rc = RP_ERR;
    }
    return rc;
}

int admit_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct admit_conf *c)
{
    static const char *const keys[] = {"limiter", "queue", "classes", NULL};
    int rc = RP_OK;
    if (!node)
        return RP_OK;
    if (conf_expect_map(doc, node) != RP_OK)
        return RP_ERR;
    if (conf_check_keys(doc, node, keys) > 0)
        rc = RP_ERR;
    const struct conf_node *n;
    if ((n = conf_get(node, "limiter")) && parse_limiter(doc, n, &c->limiter) != RP_OK)
        rc = RP_ERR;
    if ((n = conf_get(node, "queue")) && conf_fields_parse(doc, n, queue_fields, &c->queue) != RP_OK)
        rc = RP_ERR;
    /* After queue: per-class waits override queue.max_wait. */
    if ((n = conf_get(node, "classes")) && parse_classes(doc, n, &c->queue) != RP_OK)
        rc = RP_ERR;
    return rc;
}

/*
 * canary_conf.c — the `canary:` section of an upstream (keys in canary.h).
 */
#include "canary.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---- */

void canary_conf_default(struct canary_conf *c)
{
    *c = (struct canary_conf)CANARY_CONF_DEFAULT;
}

static int parse_steps(struct conf_doc *doc, const struct conf_node *n, struct canary_conf *out)
{
    if (!n)
        return RP_OK;
    if (conf_expect_seq(doc, n) != RP_OK)
        return RP_ERR;
    unsigned steps[CANARY_MAX_STEPS];
    size_t k = 0;
    int rc = RP_OK;
    for (const struct conf_node *e = n->child; e; e = e->next) {
        if (k == CANARY_MAX_STEPS) {
            conf_error(doc, e, "at most %d steps", CANARY_MAX_STEPS);
            return RP_ERR;
        }
        double pct = 0.0;
        if (conf_fraction(doc, e, 100.0, &pct) != RP_OK) {
            rc = RP_ERR;
            continue;
        }
        /* A bare number is a percentage ("5"), "5%" parses as 0.05 above. */
        bool has_pct = e->value && e->value[0] && e->value[strlen(e->value) - 1] == '%';
        double bp = has_pct ? pct * 10000.0 : pct * 100.0;
        if (bp <= 0.0 || bp > 10000.0) {
            conf_error(doc, e, "a step is a weight above 0 and at most 100 (percent)");
            rc = RP_ERR;
            continue;
        }
        unsigned v = (unsigned)(bp + 0.5);
        if (k > 0 && v <= steps[k - 1]) {
            conf_error(doc, e, "steps must increase");
            rc = RP_ERR;
            continue;
        }
        steps[k++] = v;
    }
    if (rc != RP_OK)
        return rc;
    if (k < 2 || steps[k - 1] != CANARY_WEIGHT_MAX) {
        conf_error(doc, n, "steps need at least one weight below 100 and must end at 100 (the promotion)");
        return RP_ERR;
    }
    memcpy(out->steps_bp, steps, k * sizeof steps[0]);
    out->num_steps = k;
    return RP_OK;
}

/* The label is the key under which verdicts are stored and it shows in
 * logs and JSON: printable text only, short. */
static int parse_release(struct conf_doc *doc, const struct conf_node *n, struct canary_conf *out)
{
    const char *v = NULL;
    if (!n)
        return RP_OK;
    if (conf_string(doc, n, &v) != RP_OK)
        return RP_ERR;
    size_t len = strlen(v);
    if (len == 0 || len >= CANARY_RELEASE_MAX || !rp_utf8_valid(v, len, NULL)) {
        conf_error(doc, n, "release must be 1 to %d bytes of UTF-8 text", CANARY_RELEASE_MAX - 1);
        return RP_ERR;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) {
            conf_error(doc, n, "release must not contain control characters");
            return RP_ERR;
        }
    }
    memcpy(out->release, v, len + 1);
    return RP_OK;
}

static int row_steps(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return parse_steps(doc, n, base);
}

static int row_error_margin(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    struct canary_conf *c = base;
    return conf_fraction(doc, n, 1.0, &c->error_margin);
}

static int row_release(struct conf_doc *doc, const struct conf_node *n, void *base)
{
    return parse_release(doc, n, base);
}

/* One row per key, in the order the "unknown key" message lists them.
 * Defaults are CANARY_CONF_DEFAULT's (test_canary checks they agree).
 * Durations have their floors below (a shorter value keeps the old one,
 * with its own message), Mann-Whitney's normal approximation is poor
 * below ~20 samples, and tpot_ratio without its own key follows
 * latency_ratio. */
const struct conf_field canary_conf_fields[] = {
    CONF_FIELD_CUSTOM("steps", row_steps),
    CONF_FIELD_DURATION_FLOOR("step_duration", struct canary_conf, step_duration_us, 1000000u, UINT64_MAX, 300000000u),
    CONF_FIELD_DURATION_FLOOR("interval", struct canary_conf, interval_us, 100000u, UINT64_MAX, 30000000u),
    CONF_FIELD_DURATION_FLOOR("window", struct canary_conf, window_us, 1000000u, UINT64_MAX, 300000000u),
    CONF_FIELD_UINT("min_samples", struct canary_conf, min_samples, 20, 1000000, 100),
    CONF_FIELD_DOUBLE("alpha", struct canary_conf, alpha, 1e-9, 0.5, 0.01),
    CONF_FIELD_CUSTOM("error_margin", row_error_margin),
    CONF_FIELD_DOUBLE("latency_ratio", struct canary_conf, latency_ratio, 1.0, 100.0, 1.2),
    CONF_FIELD_DOUBLE("tpot_ratio", struct canary_conf, tpot_ratio, 1.0, 100.0, 1.2),
    CONF_FIELD_BOOL("auto_rollback", struct canary_conf, auto_rollback, true),
    CONF_FIELD_CUSTOM("release", row_release),
    CONF_FIELD_END,
};

int canary_conf_parse(struct conf_doc *doc, const struct conf_node *node, struct canary_conf *out)
{
    if (!node)
        return RP_OK;
    /* The rows' duration floors: a window bucket, an analysis, a step
     * must each be long enough to hold samples. */
    int rc = conf_fields_parse(doc, node, canary_conf_fields, out);
    if (rc != RP_OK && node->kind != CONF_MAP)
        return rc;
    /* Without its own key the TPOT margin follows latency_ratio: whoever
     * relaxed or tightened the latency margin meant latency in general. */
    if (!conf_get(node, "tpot_ratio"))
        out->tpot_ratio = out->latency_ratio;
    if (rc == RP_OK && out->window_us < out->interval_us) {
        conf_error(doc, node, "window must be at least one interval");
        rc = RP_ERR;
    }
    return rc;
}

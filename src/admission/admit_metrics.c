/*
 * admit_metrics.c — the limiters and queues an owner (the proxy, for its
 * upstream set) lists on /metrics, and their rendering.
 *
 * The owner is the render function's argument, not a process-wide list:
 * two sets of upstreams (a test next to a running proxy, a reload) never
 * show each other's series, and a limiter freed with its upstream set is
 * unlinked from the owner that listed it.
 */
#include "admit.h"

#include "util.h"

void admit_metrics_init(struct admit_metrics *m)
{
    m->limiters = NULL;
    m->queues = NULL;
    m->registered = false;
}

/* Prepended: the series come out newest first, as they always have. */
void admit_metrics_add_limiter(struct admit_metrics *m, struct admit_limiter *l)
{
    if (l->reg)
        admit_limiter_unregister(l);
    l->reg = m;
    l->reg_next = m->limiters;
    m->limiters = l;
}

void admit_metrics_add_queue(struct admit_metrics *m, struct admit_queue *q)
{
    if (q->reg)
        admit_queue_unregister(q);
    q->reg = m;
    q->reg_next = m->queues;
    m->queues = q;
}

void admit_limiter_unregister(struct admit_limiter *l)
{
    if (!l->reg)
        return;
    for (struct admit_limiter **pp = &l->reg->limiters; *pp; pp = &(*pp)->reg_next)
        if (*pp == l) {
            *pp = l->reg_next;
            break;
        }
    l->reg_next = NULL;
    l->reg = NULL;
}

void admit_queue_unregister(struct admit_queue *q)
{
    if (!q->reg)
        return;
    for (struct admit_queue **pp = &q->reg->queues; *pp; pp = &(*pp)->reg_next)
        if (*pp == q) {
            *pp = q->reg_next;
            break;
        }
    q->reg_next = NULL;
    q->reg = NULL;
}

/* ---- metrics ---------------------------------------------------------------------- */

static void label_name(struct sbuf *lb, const char *key, const char *name)
{
    sbuf_reset(lb);
    sbuf_adds(lb, key);
    sbuf_adds(lb, "=\"");
    metrics_label_escape(lb, name);
    sbuf_adds(lb, "\"");
}

void admit_metrics_render(struct sbuf *out, void *arg)
{
    const struct admit_metrics *m = arg;
    if (!m)
        return;
    struct sbuf lb, lb2;
    sbuf_init(&lb, 512);
    sbuf_init(&lb2, 512);

    if (m->limiters) {
        metrics_family(out, "rampart_admit_limit", "gauge", "Current concurrency limit per server");
        for (struct admit_limiter *l = m->limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_u64(out, "rampart_admit_limit", lb.data, admit_limit(l));
        }
        metrics_family(out, "rampart_admit_inflight", "gauge", "Requests holding a slot per server");
        for (struct admit_limiter *l = m->limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_u64(out, "rampart_admit_inflight", lb.data, l->inflight);
        }
        metrics_family(out, "rampart_admit_baseline_seconds", "gauge",
                       "Learned no-queue time to first byte per server");
        for (struct admit_limiter *l = m->limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            metrics_sample_f64(out, "rampart_admit_baseline_seconds", lb.data, l->baseline_us / 1e6);
        }
        metrics_family(out, "rampart_admit_limit_changes_total", "counter", "Adaptive limit changes");
        for (struct admit_limiter *l = m->limiters; l; l = l->reg_next) {
            label_name(&lb, "server", l->name);
            sbuf_reset(&lb2);
            sbuf_printf(&lb2, "%s,direction=\"down\"", lb.data);
            metrics_sample_u64(out, "rampart_admit_limit_changes_total", lb2.data, l->decreases);
            sbuf_reset(&lb2);
            sbuf_printf(&lb2, "%s,direction=\"up\"", lb.data);
            metrics_sample_u64(out, "rampart_admit_limit_changes_total", lb2.data, l->increases);
        }
    }
    if (m->queues) {
        metrics_family(out, "rampart_queue_length", "gauge", "Waiters per upstream and class");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next)
            for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                label_name(&lb, "upstream", q->name);
                sbuf_printf(&lb, ",class=\"%s\"", admit_class_name((enum admit_class)c));
                metrics_sample_u64(out, "rampart_queue_length", lb.data, q->cls[c].len);
            }
        metrics_family(out, "rampart_queue_standing", "gauge", "1 while the queue is standing (LIFO, shedding)");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_sample_u64(out, "rampart_queue_standing", lb.data, q->standing ? 1 : 0);
        }
        metrics_family(out, "rampart_queue_drain_rate", "gauge", "Observed dequeues per second");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_sample_f64(out, "rampart_queue_drain_rate", lb.data, q->drain_rate);
        }
        metrics_family(out, "rampart_queue_dequeued_total", "counter", "Waiters dispatched");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next)
            for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                label_name(&lb, "upstream", q->name);
                sbuf_printf(&lb, ",class=\"%s\"", admit_class_name((enum admit_class)c));
                metrics_sample_u64(out, "rampart_queue_dequeued_total", lb.data, q->dequeued[c]);
            }
        metrics_family(out, "rampart_queue_refused_total", "counter", "Waiters refused, by reason and class");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next)
            for (int r = 1; r < ADMIT_NUM_REASONS; r++)
                for (int c = 0; c < ADMIT_NUM_CLASSES; c++) {
                    label_name(&lb, "upstream", q->name);
                    sbuf_printf(&lb, ",reason=\"%s\",class=\"%s\"", admit_reason_name((enum admit_reason)r),
                                admit_class_name((enum admit_class)c));
                    metrics_sample_u64(out, "rampart_queue_refused_total", lb.data, q->dropped[r][c]);
                }
        metrics_family(out, "rampart_queue_wait_seconds", "histogram",
                       "Time waiters spent queued before they were dispatched");
        for (struct admit_queue *q = m->queues; q; q = q->reg_next) {
            label_name(&lb, "upstream", q->name);
            metrics_hist_render(out, "rampart_queue_wait_seconds", lb.data, &q->wait);
        }
    }
    sbuf_free(&lb);
    sbuf_free(&lb2);
}

void admit_metrics_register(struct admit_metrics *m)
{
    if (m->registered)
        return;
    m->registered = true;
    metrics_register(admit_metrics_render, m);
}

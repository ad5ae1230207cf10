/*
 * upstream.c — upstream servers, keep-alive pools and balancing.
 *
 * Balancing is power-of-two-choices on outstanding requests: pick two
 * distinct usable servers at random and take the one with fewer requests in
 * flight (weighted by its configured weight and slow-start factor).  It
 * needs no global scan, reacts to a slow server within a request or two,
 * and avoids the herd behaviour of "least outstanding" when many requests
 * arrive together.  Round robin is kept as an option for identical servers.
 *
 * Pools: an idle connection sits in its server's LIFO list with a pool-idle
 * timer.  Before reuse it is probed with recv(MSG_PEEK): a connection the
 * server closed (EOF) or that carries unexpected bytes is dropped rather
 * than handed to a request, which would otherwise fail mid-flight.
 */
#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

static void pool_idle_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(t);
    upstream_conn_close(arg);
}

static void pool_idle_event(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(loop);
    RP_UNUSED(fd);
    RP_UNUSED(events);
    /* An idle connection must stay silent: EOF, an error or stray bytes all
     * mean it is no longer usable. */
    upstream_conn_close(arg);
}

static void on_health_change(void *arg, size_t idx, bool up_now)
{
    struct upstream *up = arg;
    /* The checker was built over this upstream's servers. */
    RP_ASSERT(idx < up->num_servers);
    if (idx >= up->num_servers)
        return;
    if (up->outlier)
        outlier_set_available(up->outlier, idx, up_now);
    if (!up_now)
        upstream_pool_flush(&up->servers[idx]);
}

void upstream_set_register_metrics(struct upstream_set *set)
{
    metrics_register(health_metrics_render, &set->health);
    metrics_register(outlier_metrics_render, &set->outliers);
    metrics_register(retry_metrics_render, &set->retries);
    metrics_register(canary_metrics_render, &set->canaries);
}

struct upstream_set *upstream_set_create(struct ev_loop *loop, const struct config *cfg)
{
    struct upstream_set *set = rp_xcalloc(1, sizeof *set);
    set->num = cfg->num_upstreams;
    set->ups = rp_xcalloc(set->num, sizeof *set->ups);
    health_set_init(&set->health, loop);
    outlier_set_init(&set->outliers, loop);
    retry_set_init(&set->retries, loop);
    canary_set_init(&set->canaries, loop);
    for (size_t i = 0; i < set->num; i++) {
        struct upstream *up = &set->ups[i];
        up->index = (int)i;
        up->conf = &cfg->upstreams[i];
        up->loop = loop;
        up->num_servers = up->conf->num_servers;
        up->servers = rp_xcalloc(up->num_servers, sizeof *up->servers);
        for (size_t j = 0; j < up->num_servers; j++) {
            struct server *s = &up->servers[j];
            s->up = up;
            s->index = (int)j;
            s->conf = &up->conf->servers[j];
            s->usable = true;
            s->weight_factor = 1.0;
            rp_snprintf(s->name, sizeof s->name, "%s", s->conf->addr.text);
            char label[sizeof s->lim.name];
            rp_snprintf(label, sizeof label, "%s/%s", up->conf->name, s->name);
            admit_limiter_init(&s->lim, &up->conf->overload.limiter, label, rp_now_us());
        }
        admit_queue_init(&up->queue, &up->conf->overload.queue, up->conf->name);
        uint64_t now = rp_now_us();
        up->health = health_checker_new(loop, up->conf->name, &up->conf->health, up->conf->servers, up->num_servers,
                                        on_health_change, up);
        up->outlier = outlier_new(up->conf->name, &up->conf->outlier, up->conf->servers, up->num_servers, now);
        up->retry = retry_budget_new(up->conf->name, &up->conf->retry);
        if (up->conf->has_canary)
            up->canary = canary_new(up->conf->name, &up->conf->canary, now);
        if (up->canary)
            canary_name_release(up->canary, up->conf->servers, up->conf->num_servers);
        health_set_add(&set->health, up->health);
        outlier_set_add(&set->outliers, up->outlier);
        retry_set_add(&set->retries, up->retry);
        canary_set_add(&set->canaries, up->canary);
    }
    return set;
}

void upstream_set_free(struct upstream_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->num; i++) {
        struct upstream *up = &set->ups[i];
        for (size_t j = 0; j < up->num_servers; j++) {
            struct server *s = &up->servers[j];
            while (s->idle_head)
                upstream_conn_close(s->idle_head);
            admit_limiter_unregister(&s->lim);
        }
        health_checker_free(up->health);
        outlier_free(up->outlier);
        retry_budget_free(up->retry);
        canary_free(up->canary);
        admit_queue_free(&up->queue);
        free(up->servers);
    }
    free(set->ups);
    free(set);
}

/* Load of a server relative to its capacity share; lower is better. */
static double server_load(const struct server *s)
{
    double w = (double)(s->conf->weight ? s->conf->weight : 1) * s->weight_factor;
    if (w < 0.01)
        w = 0.01;
    /* No "+1": idle servers tie, and the tie goes to the first (weighted)
     * draw, which is what gives a slow-starting server its partial share. */
    return (double)s->inflight / w;
}

static double server_weight(const struct server *s)
{
    double w = (double)(s->conf->weight ? s->conf->weight : 1) * s->weight_factor;
    return w < 0.01 ? 0.01 : w;
}

/* Index into cand[0..k) drawn with probability proportional to weight,
 * skipping index skip (or none when skip == k). */
static size_t weighted_draw(struct server **cand, size_t k, size_t skip)
{
    double total = 0;
    for (size_t i = 0; i < k; i++)
        if (i != skip)
            total += server_weight(cand[i]);
    double x = rp_rand01() * total;
    size_t last = k;
    for (size_t i = 0; i < k; i++) {
        if (i == skip)
            continue;
        last = i;
        x -= server_weight(cand[i]);
        if (x < 0)
            return i;
    }
    return last;
}

static size_t collect(struct upstream *up, upstream_accept_fn accept, void *arg, struct server **cand)
{
    uint64_t now = ev_now(up->loop);
    size_t k = 0;
    for (size_t i = 0; i < up->num_servers; i++) {
        struct server *s = &up->servers[i];
        if (upstream_server_eligible(s, now) && (!accept || accept(s, arg))) {
            s->weight_factor = health_checker_weight(up->health, (size_t)s->index, now);
            cand[k++] = s;
        }
    }
    return k;
}

bool upstream_any(struct upstream *up, upstream_accept_fn accept, void *arg)
{
    struct server *cand[CONFIG_MAX_SERVERS];
    return collect(up, accept, arg, cand) > 0;
}

struct server *upstream_pick(struct upstream *up, upstream_accept_fn accept, void *arg)
{
    size_t n = up->num_servers;
    struct server *cand[CONFIG_MAX_SERVERS];
    size_t k = collect(up, accept, arg, cand);
    if (k == 0)
        return NULL;
    if (k == 1)
        return cand[0];
    if (up->conf->balance == CONFIG_BALANCE_ROUND_ROBIN) {
        /* Round robin over the eligible set, stable across calls. */
        for (size_t tries = 0; tries < n; tries++) {
            struct server *s = &up->servers[up->rr_next++ % n];
            for (size_t i = 0; i < k; i++)
                if (cand[i] == s)
                    return s;
        }
        return cand[0];
    }
    /* The two choices are drawn in proportion to weight (configured weight
     * times the slow-start ramp), so a recovering server gets its share
     * even when every server is idle and loads tie. */
    size_t a = weighted_draw(cand, k, k);
    size_t b = weighted_draw(cand, k, a);
    return server_load(cand[a]) <= server_load(cand[b]) ? cand[a] : cand[b];
}

bool upstream_server_eligible(const struct server *s, uint64_t now_us)
{
    const struct upstream *up = s->up;
    return s->usable && health_checker_up(up->health, (size_t)s->index) &&
           (!up->outlier || outlier_eligible(up->outlier, (size_t)s->index, now_us));
}

void upstream_pool_flush(struct server *s)
{
    while (s->idle_head)
        upstream_conn_close(s->idle_head);
}

void upstream_attempt_done(struct server *s, int outcome, uint64_t ttft_us, uint64_t now_us)
{
    struct upstream *up = s->up;
    if (up->outlier && outlier_report(up->outlier, (size_t)s->index, (enum outlier_outcome)outcome, now_us)) {
        up->ejections++;
        upstream_pool_flush(s);
    }
    if (up->canary)
        canary_record(up->canary, s->conf->group, outcome != OUTLIER_SUCCESS, ttft_us, now_us);
}

void upstream_tick(struct upstream_set *set, uint64_t now_us)
{
    for (size_t i = 0; i < set->num; i++) {
        struct upstream *up = &set->ups[i];
        if (up->outlier)
            outlier_tick(up->outlier, now_us);
        if (up->canary)
            canary_tick(up->canary, now_us);
        for (size_t j = 0; j < up->num_servers; j++)
            admit_limiter_tick(&up->servers[j].lim, now_us);
    }
}

static void pool_unlink(struct uconn *u)
{
    struct server *s = u->srv;
    if (!u->idle)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        s->idle_head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    u->idle = false;
    /* Every idle connection is counted once, in upstream_conn_release. */
    RP_ASSERT(s->idle_count > 0);
    if (s->idle_count > 0)
        s->idle_count--;
}

struct uconn *upstream_pool_get(struct server *srv)
{
    struct ev_loop *loop = srv->up->loop;
    while (srv->idle_head) {
        struct uconn *u = srv->idle_head;
        pool_unlink(u);
        ev_timer_cancel(loop, &u->timer);
        if (net_peer_alive(u->fd)) {
            ev_mod(loop, u->fd, 0);
            u->reused = true;
            return u;
        }
        upstream_conn_close(u);
    }
    return NULL;
}

struct uconn *upstream_connect(struct server *srv, bool *connected)
{
    int fd = -1;
    int rc = net_connect((const struct sockaddr *)&srv->conf->addr.ss, srv->conf->addr.len, &fd);
    if (rc == RP_ERR)
        return NULL;
    struct uconn *u = rp_xcalloc(1, sizeof *u);
    u->fd = fd;
    u->srv = srv;
    ev_timer_init(&u->timer, NULL, u);
    *connected = rc == RP_OK;
    return u;
}

void upstream_conn_release(struct uconn *u)
{
    struct server *s = u->srv;
    struct ev_loop *loop = s->up->loop;
    const struct config_upstream *uc = s->up->conf;
    u->owner = NULL;
    ev_timer_cancel(loop, &u->timer);
    if (s->idle_count >= uc->pool_max_idle || !buf_empty(&u->in)) {
        upstream_conn_close(u);
        return;
    }
    buf_release(&u->in);
    /* Watch the idle socket so a server-side close frees it at once. */
    ev_set_handler(loop, u->fd, pool_idle_event, u);
    if (ev_mod(loop, u->fd, EV_READ) != RP_OK) {
        upstream_conn_close(u);
        return;
    }
    ev_timer_init(&u->timer, pool_idle_timeout, u);
    ev_timer_arm(loop, &u->timer, uc->pool_idle_timeout_us);
    u->idle = true;
    u->prev = NULL;
    u->next = s->idle_head;
    if (s->idle_head)
        s->idle_head->prev = u;
    s->idle_head = u;
    s->idle_count++;
}

void upstream_conn_close(struct uconn *u)
{
    if (!u)
        return;
    struct ev_loop *loop = u->srv->up->loop;
    pool_unlink(u);
    ev_timer_cancel(loop, &u->timer);
    ev_del(loop, u->fd);
    close(u->fd);
    buf_release(&u->in);
    free(u);
}

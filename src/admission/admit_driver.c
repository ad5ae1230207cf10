/*
 * admit_driver.c — the pump and the expiry timer of an admission queue.
 * See admit_driver.h.
 */
#include "admit_driver.h"

#include <string.h>

#include "util.h"

static void pump_fired(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct admit_driver *d = arg;
    admit_driver_pump(d, ev_now(loop));
}

static void expire_fired(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct admit_driver *d = arg;
    admit_driver_expire(d, ev_now(loop));
}

void admit_driver_init(struct admit_driver *d, struct ev_loop *loop, struct admit_queue *q,
                       const struct admit_driver_ops *ops, void *arg)
{
    memset(d, 0, sizeof *d);
    d->q = q;
    d->loop = loop;
    d->ops = ops;
    d->arg = arg;
    ev_timer_init(&d->expire_timer, expire_fired, d);
    ev_timer_init(&d->pump_timer, pump_fired, d);
}

void admit_driver_stop(struct admit_driver *d)
{
    if (!d->loop)
        return;
    ev_timer_cancel(d->loop, &d->expire_timer);
    ev_timer_cancel(d->loop, &d->pump_timer);
}

void admit_driver_schedule(struct admit_driver *d)
{
    if (!d->loop || admit_queue_len(d->q) == 0 || ev_timer_armed(&d->pump_timer))
        return;
    ev_timer_arm(d->loop, &d->pump_timer, 0);
}

void admit_driver_arm(struct admit_driver *d)
{
    if (!d->loop)
        return;
    uint64_t when = admit_queue_len(d->q) ? admit_next_timer(d->q, ev_now(d->loop)) : 0;
    if (when == 0) {
        ev_timer_cancel(d->loop, &d->expire_timer);
        return;
    }
    ev_timer_arm_at(d->loop, &d->expire_timer, when);
}

void admit_driver_pump(struct admit_driver *d, uint64_t now_us)
{
    d->pumps++;
    while (admit_queue_len(d->q) > 0) {
        if (!d->ops->has_room(d->arg))
            break;
        struct admit_waiter *w = admit_dequeue(d->q, now_us);
        if (!w)
            break;
        int rc = d->ops->on_admit(d->arg, w, now_us);
        /* has_room() said a slot was free and nothing ran in between. */
        RP_ASSERT(rc == RP_OK);
        if (rc != RP_OK)
            d->ops->on_refuse(d->arg, w, ADMIT_R_FULL);
    }
    admit_driver_arm(d);
}

void admit_driver_expire(struct admit_driver *d, uint64_t now_us)
{
    enum admit_reason why;
    struct admit_waiter *w;
    while ((w = admit_expire(d->q, now_us, &why)) != NULL)
        d->ops->on_refuse(d->arg, w, why);
    admit_driver_arm(d);
}

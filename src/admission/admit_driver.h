/*
 * admit_driver.h — the event-loop side of an upstream's admission queue:
 * the pump that hands free concurrency slots to waiters, and the timer
 * that refuses waiters whose deadline passed (or that a standing queue
 * sheds).
 *
 * The driver decides when waiters leave the queue; its owner (the proxy)
 * decides what that means through two callbacks: on_admit (take a slot on
 * a server of its choosing and dispatch) and on_refuse (answer 503).  Both
 * timers belong to the driver.
 *
 * Free slots are handed out from a zero-delay timer, never from inside the
 * call that freed them: a dispatch that fails at once (and frees its slot
 * again) would otherwise recurse into the queue.
 *
 * A driver without a loop (loop NULL) arms nothing: its user calls
 * admit_driver_pump() and admit_driver_expire() with its own clock (the
 * unit tests, which run the real pump on simulated time).
 */
#ifndef RP_ADMIT_DRIVER_H
#define RP_ADMIT_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "admit.h"
#include "ev.h"

struct admit_driver_ops {
    /* Whether some server could take a waiter now (a free slot on an
     * eligible server).  Must not change any state. */
    bool (*has_room)(void *arg);
    /* w has left the queue: take a slot for it (admit_slot_take) and start
     * it.  RP_OK, or RP_AGAIN when no slot could be taken after all (the
     * driver then refuses w with ADMIT_R_FULL). */
    int (*on_admit)(void *arg, struct admit_waiter *w, uint64_t now_us);
    /* w has left the queue unserved (deadline, shed, no slot): answer it. */
    void (*on_refuse)(void *arg, struct admit_waiter *w, enum admit_reason why);
};

struct admit_driver {
    struct admit_queue *q;
    struct ev_loop *loop; /* NULL: the user drives pump and expiry */
    const struct admit_driver_ops *ops;
    void *arg;
    struct ev_timer expire_timer; /* the queue's next deadline or shedding time */
    struct ev_timer pump_timer;   /* zero-delay: hand free slots to waiters */
    uint64_t pumps;               /* pump runs (for tests) */
};

/* q is not owned.  Initialise once: re-initialising an armed timer would
 * corrupt the loop's heap. */
void admit_driver_init(struct admit_driver *d, struct ev_loop *loop, struct admit_queue *q,
                       const struct admit_driver_ops *ops, void *arg);
/* Cancel both timers (before the queue is freed). */
void admit_driver_stop(struct admit_driver *d);

/* Run the pump soon (after slots were freed or added, or a waiter came):
 * a no-op while the queue is empty or a run is already due. */
void admit_driver_schedule(struct admit_driver *d);
/* Re-arm the expiry timer for the queue as it is now (after an enqueue or
 * a cancel); cancels it when the queue is empty. */
void admit_driver_arm(struct admit_driver *d);

/* Hand free slots to waiters now, then re-arm the expiry timer.  What the
 * pump timer runs. */
void admit_driver_pump(struct admit_driver *d, uint64_t now_us);
/* Refuse every waiter whose wait is over at now, then re-arm.  What the
 * expiry timer runs. */
void admit_driver_expire(struct admit_driver *d, uint64_t now_us);

#endif

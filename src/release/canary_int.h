/*
 * canary_int.h — what the files of the canary share and nobody else needs:
 * canary.c (state machine, events, verdicts), canary_stats.c (sample
 * window and analysis), canary_render.c (state document and metrics),
 * canary_conf.c (the config section).  The public API is canary.h.
 */
#ifndef RP_CANARY_INT_H
#define RP_CANARY_INT_H

#include "canary.h"

/* Agresti-Caffo confidence bound of (canary - stable) error ratio; z > 0
 * gives the upper bound, z < 0 the lower. */
double canary_ac_bound(uint64_t err_c, uint64_t n_c, uint64_t err_s, uint64_t n_s, double z);

/* One look at the window: counts, tests, margins and the promotion gate
 * into *a.  Spends a look (c->looks) when any metric had enough samples. */
void canary_analyze(struct canary *c, uint64_t now_us, struct canary_analysis *a);

/* "2026-01-02T03:04:05.678Z" for a wall-clock time in ms. */
void canary_iso_time(int64_t ms, char *buf, size_t cap);
/* A weight in basis points as a JSON number of percent ("12.5"). */
void canary_weight_json(struct sbuf *out, unsigned bp);

#endif

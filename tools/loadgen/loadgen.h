/*
 * loadgen.h — the parts of loadgen shared by its files.
 *
 * loadgen is an open-loop, SSE-aware HTTP load generator for chat APIs
 * (docs/loadgen.md).  Its files:
 *
 *   loadgen_schedule.c  the rate schedule and the request mix: parsing the
 *                       phases and mixes, and the arrival timer that
 *                       launches request k at its scheduled time
 *   loadgen_client.c    one request's life: connect (or a kept-alive
 *                       connection), write, parse the response head, the
 *                       body and its SSE events, give up, record the result
 *   loadgen_report.c    per-phase summaries: CSV rows, the JSON summary and
 *                       the printed table
 *   loadgen_main.c      command line and start-up
 *
 * One process, one loop, one global state: the options (lg_cfg), the run
 * (lg) and the results array (lg_results), which is written only at the
 * end so no file I/O happens while the load runs.
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "ev.h"
#include "h1.h"

#define LG_MAX_PHASES 64
#define LG_MAX_MIX 32
#define LG_MAX_HEADERS 8
#define LG_RESP_HEADERS 64
#define LG_MAX_LINE (1u << 20) /* one SSE line */
#define LG_MAX_JSON (8u << 20) /* non-streaming body kept for its usage */
#define LG_LAUNCH_BATCH 2000   /* arrivals launched per timer run before yielding to I/O */
#define LG_MAX_FDS 1000000     /* bound of the loop's fd table */

/* ------------------------------------------------------------------ */
/* configuration                                                       */

struct lg_phase {
    double mult;
    double dur_s;
    double rate;       /* mult * base rate */
    uint64_t start_us; /* relative to t0 */
    uint64_t end_us;
};

struct lg_mix {
    size_t n;
    char name[LG_MAX_MIX][64];
    double weight[LG_MAX_MIX];
    double total;
};

struct lg_range {
    int lo, hi;
};

struct lg_config {
    /* target */
    char url[1024];
    char host_hdr[300];
    char path[1024];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    /* load */
    double rate;
    bool poisson;
    struct lg_phase phases[LG_MAX_PHASES];
    size_t nphases;
    /* request mix */
    struct lg_mix tenants;
    struct lg_mix prios;
    struct lg_range max_tokens;
    struct lg_range prompt_chars;
    bool stream;
    bool get;
    bool keepalive;
    char model[128];
    char extra_headers[LG_MAX_HEADERS][512];
    size_t nextra;
    /* client behaviour and SLO */
    double give_up_s;
    double slo_ttft_s;
    double slo_total_s;
    double drain_s;
    long max_inflight;
    /* output */
    const char *csv_path;
    const char *json_path;
    bool quiet;
    bool progress;
    uint64_t seed;
};

extern struct lg_config lg_cfg;

/* ------------------------------------------------------------------ */
/* results                                                             */

enum lg_err {
    LG_OK = 0,
    LG_E_CONNECT,    /* connect failed */
    LG_E_IO,         /* reset / write or read error */
    LG_E_EOF,        /* closed before the response was complete */
    LG_E_PROTO,      /* malformed response */
    LG_E_TRUNCATED,  /* 2xx stream ended without [DONE] */
    LG_E_GAVE_UP,    /* our give-up timeout */
    LG_E_OVERFLOW,   /* too many requests in flight in loadgen itself */
    LG_E_UNFINISHED, /* still running when the drain time ended */
    LG_E__COUNT,
};

/* The error column of the CSV and the summaries ("" for LG_OK). */
extern const char *const lg_err_name[LG_E__COUNT];

struct lg_result {
    uint64_t sched_us; /* scheduled arrival, relative to t0 */
    uint32_t lag_us;   /* actual launch - scheduled */
    int64_t hdr_us;    /* from scheduled arrival; -1 when not reached */
    int64_t ttft_us;
    int64_t total_us;
    int32_t tokens;
    int16_t status; /* 0: no response head */
    uint8_t phase;
    int8_t tenant; /* -1: none */
    int8_t prio;
    uint8_t err;
    bool gave_up;
    int32_t max_tokens;
    int32_t err_errno;
};

/* One row per arrival, in arrival order (grown by doubling). */
extern struct lg_result *lg_results;
extern size_t lg_nresults;

struct lg_req;  /* one request in flight (loadgen_client.c) */
struct lg_idle; /* one kept-alive connection */

/* The run. */
struct lg_run {
    struct ev_loop *loop;
    uint64_t t0;           /* absolute start */
    size_t phase;          /* current arrival phase */
    uint64_t next_arrival; /* relative to t0 */
    double next_arrival_f; /* the same, unrounded, so fixed gaps of a
                               * fractional microsecond do not drift */
    bool arrivals_done;
    struct ev_timer arrive;
    struct ev_timer drain;
    struct ev_timer progress;
    struct lg_req *inflight;
    long ninflight;
    struct lg_idle *idle;
    long nidle;
    const char *prompt; /* prompt text, longest needed */
    size_t prompt_len;
    bool interrupted;
    uint64_t done_count, ok_count;
};

extern struct lg_run lg;

/* ---- loadgen_schedule.c: rate schedule, request mix, arrivals ---- */

/* "64" or "32-256": a fixed value or a uniform range within [lo, hi]. */
bool lg_parse_range(const char *s, int lo, int hi, struct lg_range *r);
/* "name:weight,name:weight" (weight defaults to 1). */
bool lg_parse_mix(const char *s, struct lg_mix *m);
/* "1x:20s,5x:30s,1x:20s" into lg_cfg.phases. */
bool lg_parse_schedule(const char *s);
/* A weighted pick from m (-1 when m is empty), a uniform one from r. */
int lg_mix_pick(const struct lg_mix *m);
int lg_range_pick(const struct lg_range *r);
/* Set up the timers and the first arrival; the loop then runs the load. */
void lg_schedule_start(void);

/* ---- loadgen_client.c: one request's life ---- */

/* Start the request scheduled at sched_rel (relative to lg.t0). */
void lg_launch(uint64_t sched_rel, size_t phase);
/* End every request still in flight as "unfinished" (drain time over, or
 * interrupted). */
void lg_finish_all(void);
/* Close the kept-alive connections. */
void lg_idle_close_all(void);

/* ---- loadgen_report.c: summaries ---- */

/* Write the CSV, the JSON summary and the table as configured; 0, or 1
 * when a file could not be written. */
int lg_write_outputs(void);

#endif

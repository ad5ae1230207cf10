/*
 * loadgen_main.c — loadgen's command line and start-up.
 *
 * loadgen is an open-loop, SSE-aware HTTP load generator for chat APIs
 * (loadgen.h lists its files; loadgen_schedule.c says why open loop).
 *
 * Why not an existing tool (Debian packages considered):
 *   - wrk, ab, hey, siege: closed-loop connection pools; no Poisson arrivals,
 *     no rate schedule, no SSE parsing (no time to first token), no per-
 *     request give-up, no tenant/priority/max_tokens mix.  (wrk2's constant
 *     rate mode is not packaged, and it is still closed-loop per connection.)
 *   - h2load: has a rate mode (new connections per second) but measures
 *     whole responses only: no TTFT of a stream, no give-up that closes the
 *     socket mid-stream, no per-request header mix, no goodput under an SLO.
 *   - vLLM's benchmark_serving.py (the field's reference, open-loop Poisson)
 *     is not packaged and needs the Python ML stack.
 * loadgen reuses the gateway's event loop (ev.c) and HTTP parser (h1.c), so
 * it is one single-threaded process that sustains 10,000 requests per
 * second on new connections (docs/loadgen.md has the measurement).
 *
 * Per request it records: phase, tenant, priority, max_tokens, status,
 * time to response head, time to first token (first SSE event with
 * non-empty delta content; first body byte for non-streaming answers),
 * total time, tokens (the usage chunk when present, else counted deltas),
 * whether the client gave up, and an error class.  Results live in one
 * compact array and are written (CSV, JSON summary, table) at the end, so
 * no file I/O happens while the load runs.
 */
#include "loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "proc.h"
#include "tool_args.h"
#include "util.h"

struct lg_config lg_cfg;
struct lg_run lg;

/* http://host[:port]/path; the host is resolved once, here. */
static bool parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        return false;
    p += 7;
    size_t alen = strcspn(p, "/?#");
    if (alen == 0 || alen >= sizeof lg_cfg.host_hdr)
        return false;
    memcpy(lg_cfg.host_hdr, p, alen);
    lg_cfg.host_hdr[alen] = '\0';
    const char *path = p + alen;
    if (*path == '\0')
        path = "/";
    if (*path == '#' || strlen(path) >= sizeof lg_cfg.path)
        return false;
    rp_snprintf(lg_cfg.path, sizeof lg_cfg.path, "%s%s", *path == '?' ? "/" : "", path);

    char host[256], port[16] = "80";
    const char *h = lg_cfg.host_hdr, *colon;
    size_t hl;
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb)
            return false;
        hl = (size_t)(rb - h - 1);
        h++;
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = strrchr(h, ':');
        hl = colon ? (size_t)(colon - h) : strlen(h);
    }
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon && rp_snprintf(port, sizeof port, "%s", colon + 1) < 0)
        return false;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "loadgen: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return false;
    }
    memcpy(&lg_cfg.addr, res->ai_addr, res->ai_addrlen);
    lg_cfg.addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static void signal_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    struct signalfd_siginfo si;
    (void)!read(fd, &si, sizeof si);
    /* Stop offering load, keep what was measured. */
    lg.interrupted = true;
    lg_finish_all();
    ev_stop(loop);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen --url http://HOST:PORT/PATH [options]\n"
               "\n"
               "Open-loop load generator for OpenAI-style chat APIs: requests arrive on a\n"
               "schedule (fixed rate or Poisson) whatever the server does, each on its own\n"
               "connection like an independent user.  Streams are parsed as SSE to measure\n"
               "time to first token.\n"
               "\n"
               "Load:\n"
               "  --url URL              target (default http://127.0.0.1:8080/v1/chat/completions)\n"
               "  --rate R               base arrival rate, requests/s (default 10)\n"
               "  --poisson              exponential inter-arrival times (default: fixed spacing)\n"
               "  --duration D           run length when there is no schedule (default 10s)\n"
               "  --schedule S           phases as multiples of --rate, e.g. \"1x:20s,5x:30s,1x:20s\"\n"
               "Request mix:\n"
               "  --tenants MIX          e.g. \"t1:4,t2:1\": weights; sends Authorization: Bearer <tenant>\n"
               "  --priority MIX         e.g. \"interactive:3,batch:1\": sends x-priority: <class>\n"
               "  --max-tokens N|LO-HI   max_tokens per request, fixed or uniform (default 64)\n"
               "  --prompt-chars N|LO-HI prompt length in characters (default 200)\n"
               "  --model NAME           model field (default llmsim-1)\n"
               "  --stream / --no-stream request SSE streaming (default on)\n"
               "  --method GET           send bodiless GETs instead (plain HTTP servers)\n"
               "  --header 'N: V'        extra request header (repeatable, up to 8)\n"
               "  --keepalive            reuse connections (default: a new connection per request)\n"
               "Client behaviour and SLO:\n"
               "  --give-up D            close the connection if not done D after arrival (user leaves)\n"
               "  --slo-ttft D           goodput counts 2xx answers with TTFT <= D\n"
               "  --slo-total D          ... and total time <= D\n"
               "  --drain D              after the last arrival, wait at most D for in-flight requests\n"
               "                         (default: the give-up time, or 30s)\n"
               "  --max-inflight N       requests in flight before arrivals are dropped as 'overflow'\n"
               "Output:\n"
               "  --csv FILE             one row per request\n"
               "  --json FILE            per-phase summary\n"
               "  --progress             a status line on stderr every second\n"
               "  --quiet                no table on stdout\n"
               "  --seed N               PRNG seed (default: time based)\n"
               "Durations take s, ms or m suffixes (plain numbers are seconds).\n");
}

int main(int argc, char **argv)
{
    enum {
        O_URL = 256,
        O_RATE,
        O_POISSON,
        O_DURATION,
        O_SCHEDULE,
        O_TENANTS,
        O_PRIORITY,
        O_MAXTOK,
        O_PROMPT,
        O_MODEL,
        O_STREAM,
        O_NOSTREAM,
        O_METHOD,
        O_HEADER,
        O_KEEPALIVE,
        O_GIVEUP,
        O_SLOTTFT,
        O_SLOTOTAL,
        O_DRAIN,
        O_MAXINFL,
        O_CSV,
        O_JSON,
        O_PROGRESS,
        O_QUIET,
        O_SEED,
    };
    static const struct option opts[] = {
        {"url", required_argument, 0, O_URL},
        {"rate", required_argument, 0, O_RATE},
        {"poisson", no_argument, 0, O_POISSON},
        {"duration", required_argument, 0, O_DURATION},
        {"schedule", required_argument, 0, O_SCHEDULE},
        {"tenants", required_argument, 0, O_TENANTS},
        {"priority", required_argument, 0, O_PRIORITY},
        {"max-tokens", required_argument, 0, O_MAXTOK},
        {"prompt-chars", required_argument, 0, O_PROMPT},
        {"model", required_argument, 0, O_MODEL},
        {"stream", no_argument, 0, O_STREAM},
        {"no-stream", no_argument, 0, O_NOSTREAM},
        {"method", required_argument, 0, O_METHOD},
        {"header", required_argument, 0, O_HEADER},
        {"keepalive", no_argument, 0, O_KEEPALIVE},
        {"give-up", required_argument, 0, O_GIVEUP},
        {"slo-ttft", required_argument, 0, O_SLOTTFT},
        {"slo-total", required_argument, 0, O_SLOTOTAL},
        {"drain", required_argument, 0, O_DRAIN},
        {"max-inflight", required_argument, 0, O_MAXINFL},
        {"csv", required_argument, 0, O_CSV},
        {"json", required_argument, 0, O_JSON},
        {"progress", no_argument, 0, O_PROGRESS},
        {"quiet", no_argument, 0, O_QUIET},
        {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    const char *url = "http://127.0.0.1:8080/v1/chat/completions";
    double duration = 10, v;
    bool have_schedule = false;
    lg_cfg.rate = 10;
    lg_cfg.stream = true;
    lg_cfg.max_tokens = (struct lg_range){64, 64};
    lg_cfg.prompt_chars = (struct lg_range){200, 200};
    lg_cfg.drain_s = -1;
    lg_cfg.seed = rp_now_us() ^ ((uint64_t)getpid() << 32);
    rp_snprintf(lg_cfg.model, sizeof lg_cfg.model, "llmsim-1");
    rp_log_set_prog("loadgen");

    int o;
    bool ok = true;
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        const char *a = optarg;
        switch (o) {
        case O_URL: url = a; break;
        case O_RATE: ok = tool_parse_double(a, 0, 1e7, &lg_cfg.rate); break;
        case O_POISSON: lg_cfg.poisson = true; break;
        case O_DURATION: ok = tool_parse_seconds(a, &duration) && duration > 0; break;
        case O_SCHEDULE:
            ok = lg_parse_schedule(a);
            have_schedule = ok;
            break;
        case O_TENANTS: ok = lg_parse_mix(a, &lg_cfg.tenants); break;
        case O_PRIORITY: ok = lg_parse_mix(a, &lg_cfg.prios); break;
        case O_MAXTOK: ok = lg_parse_range(a, 1, 1000000, &lg_cfg.max_tokens); break;
        case O_PROMPT: ok = lg_parse_range(a, 1, 1 << 20, &lg_cfg.prompt_chars); break;
        case O_MODEL:
            ok = strlen(a) > 0 && strlen(a) < sizeof lg_cfg.model && !strpbrk(a, "\"\\");
            if (ok)
                rp_snprintf(lg_cfg.model, sizeof lg_cfg.model, "%s", a);
            break;
        case O_STREAM: lg_cfg.stream = true; break;
        case O_NOSTREAM: lg_cfg.stream = false; break;
        case O_METHOD:
            ok = strcmp(a, "GET") == 0 || strcmp(a, "POST") == 0;
            lg_cfg.get = strcmp(a, "GET") == 0;
            break;
        case O_HEADER:
            ok = lg_cfg.nextra < LG_MAX_HEADERS && strchr(a, ':') && !strpbrk(a, "\r\n") &&
                 rp_snprintf(lg_cfg.extra_headers[lg_cfg.nextra], sizeof lg_cfg.extra_headers[0], "%s", a) > 0;
            if (ok)
                lg_cfg.nextra++;
            break;
        case O_KEEPALIVE: lg_cfg.keepalive = true; break;
        case O_GIVEUP: ok = tool_parse_seconds(a, &lg_cfg.give_up_s); break;
        case O_SLOTTFT: ok = tool_parse_seconds(a, &lg_cfg.slo_ttft_s); break;
        case O_SLOTOTAL: ok = tool_parse_seconds(a, &lg_cfg.slo_total_s); break;
        case O_DRAIN: ok = tool_parse_seconds(a, &lg_cfg.drain_s); break;
        case O_MAXINFL:
            ok = tool_parse_double(a, 1, 1e7, &v);
            lg_cfg.max_inflight = (long)v;
            break;
        case O_CSV: lg_cfg.csv_path = a; break;
        case O_JSON: lg_cfg.json_path = a; break;
        case O_PROGRESS: lg_cfg.progress = true; break;
        case O_QUIET: lg_cfg.quiet = true; break;
        case O_SEED: ok = tool_parse_u64(a, &lg_cfg.seed); break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("loadgen %s\n", RP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "loadgen: invalid value for --%s: '%s' (see --help)\n", opts[o - O_URL].name, a);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    rp_snprintf(lg_cfg.url, sizeof lg_cfg.url, "%s", url);
    if (!parse_url(url)) {
        fprintf(stderr, "loadgen: --url wants http://HOST[:PORT]/PATH, got '%s'\n", url);
        return 2;
    }
    if (!have_schedule) {
        lg_cfg.nphases = 1;
        lg_cfg.phases[0] = (struct lg_phase){.mult = 1, .dur_s = duration};
    }
    uint64_t at = 0;
    for (size_t i = 0; i < lg_cfg.nphases; i++) {
        struct lg_phase *p = &lg_cfg.phases[i];
        p->rate = p->mult * lg_cfg.rate;
        p->start_us = at;
        at += (uint64_t)(p->dur_s * 1e6);
        p->end_us = at;
    }
    if (lg_cfg.drain_s < 0)
        lg_cfg.drain_s = lg_cfg.give_up_s > 0 ? lg_cfg.give_up_s + 1 : 30;
    rp_rand_seed(lg_cfg.seed);

    int max_fds = RP_MIN(proc_raise_nofile(LG_MAX_FDS), LG_MAX_FDS);
    if (lg_cfg.max_inflight <= 0)
        lg_cfg.max_inflight = max_fds > 200 ? max_fds - 100 : max_fds / 2;
    if (lg_cfg.max_inflight > max_fds - 50)
        lg_cfg.max_inflight = RP_MAX(1, max_fds - 50);

    /* One prompt text, sliced per request. */
    size_t plen = (size_t)lg_cfg.prompt_chars.hi;
    char *prompt = rp_xmalloc(plen + 1);
    static const char words[] = "please explain how a gateway protects a model server from overload ";
    for (size_t i = 0; i < plen; i++)
        prompt[i] = words[i % (sizeof words - 1)];
    prompt[plen] = '\0';
    lg.prompt = prompt;
    lg.prompt_len = plen;

    lg.loop = ev_create(max_fds);
    if (!lg.loop)
        return 1;
    int sfd = proc_signalfd();
    if (sfd < 0 || ev_add(lg.loop, sfd, EV_READ, signal_cb, NULL) < 0) {
        rp_log_errno(errno, "signalfd");
        return 1;
    }
    lg_schedule_start();

    int rc = ev_run(lg.loop);
    lg_finish_all();
    lg_idle_close_all();
    int wrc = lg_write_outputs();
    free(lg_results);
    free(prompt);
    ev_destroy(lg.loop);
    if (rc != RP_OK)
        return 1;
    return wrc ? 1 : (lg.interrupted ? 130 : 0);
}

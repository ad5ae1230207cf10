/*
 * llmsim_main.c — llmsim's command line and start-up.
 *
 * Why llmsim exists: every overload, fairness and release-safety feature of
 * the gateway is judged against a backend, and a backend that answers in a
 * constant time hides exactly the behaviour those features exist for.
 * llmsim behaves like a continuous-batching model server under load
 * (llmsim.h lists its files; docs/llmsim.md specifies the model).
 *
 * Left out on purpose: TLS, HTTP/2, real tokenisation (prompt tokens are
 * estimated as characters/4), n > 1 choices, tool calls.
 */
#include "llmsim.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "proc.h"
#include "tool_args.h"
#include "util.h"

struct sim_state sim;

static void signal_cb(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    RP_UNUSED(arg);
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        rp_log_info("signal %u, exiting", si.ssi_signo);
    ev_stop(loop);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: llmsim [options]\n"
               "\n"
               "OpenAI-compatible model server simulator with a continuous-batching capacity\n"
               "model.  Endpoints: POST /v1/chat/completions (JSON or \"stream\":true SSE),\n"
               "GET /v1/models, GET /health, GET /sim/stats, GET|POST /sim/config.\n"
               "\n"
               "Capacity model:\n"
               "  S = --slots sequences run at once; further requests wait in an unbounded FIFO.\n"
               "  prefill (time to first token once running)\n"
               "      = prefill_base_ms + prefill_per_token_us * prompt_tokens / 1000   [ms]\n"
               "      prompt_tokens = ceil(characters of all message contents / 4)\n"
               "  token interval per sequence, busy = running sequences\n"
               "      = token_ms * (1 + batch_slowdown * (busy - 1) / (S - 1))          [ms]\n"
               "      (times bad_release.token_slowdown while a bad release is set)\n"
               "  output tokens = max_tokens, or uniform in default_tokens * (1 +- spread)\n"
               "  service time at a full batch = prefill + (tokens - 1) * token_ms * (1 + batch_slowdown)\n"
               "  capacity [req/s] = S / service time\n"
               "\n"
               "Options:\n"
               "  --listen ADDR:PORT        listen address (default 127.0.0.1:9001)\n"
               "  --port N                  listen on 127.0.0.1:N\n"
               "  --slots N                 concurrent sequences (default 16)\n"
               "  --prefill-base-ms X       fixed prefill time (default 20)\n"
               "  --prefill-per-token-us X  prefill time per prompt token (default 100)\n"
               "  --token-ms X              per-token interval with one sequence (default 20)\n"
               "  --batch-slowdown X        extra interval fraction at a full batch (default 1.0)\n"
               "  --default-tokens N        mean output length without max_tokens (default 128)\n"
               "  --default-tokens-spread F uniform spread around the mean, 0..1 (default 0.5)\n"
               "  --no-abort                keep generating for clients that disconnected\n"
               "  --late-headers            send a stream's response head with its first token\n"
               "                            (default: at once, as ASGI servers do)\n"
               "  --keepalive-timeout S     close idle keep-alive connections after S seconds (default 5;\n"
               "                            a unit is allowed too: 500ms, 2m)\n"
               "  --model NAME              model id reported (default llmsim-1)\n"
               "Fault and change injection (also at run time through POST /sim/config):\n"
               "  --error-rate F            fraction of chat requests answered 500 (default 0)\n"
               "  --added-latency-ms X      delay before a request enters the queue (default 0)\n"
               "  --version LABEL           version label: x-llmsim-version header, system_fingerprint\n"
               "                            (default v1); --version alone prints the program version\n"
               "  --bad-release ERR:SLOW    start in a bad release: error rate ERR, token interval x SLOW\n"
               "  --health-fail             GET /health answers 503\n"
               "  --seed N                  PRNG seed (default: time based)\n"
               "  -h, --help                this text\n"
               "  -V                        print the program version\n");
}

/* "host:port" or "[v6]:port" into a sockaddr. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec)
        return RP_ERR;
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return RP_ERR;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return RP_ERR;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return RP_OK;
}

int main(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_PORT,
        O_SLOTS,
        O_PBASE,
        O_PTOK,
        O_TOKMS,
        O_SLOW,
        O_DEFTOK,
        O_SPREAD,
        O_NOABORT,
        O_LATEHDR,
        O_KA,
        O_MODEL,
        O_ERR,
        O_LAT,
        O_VERSION,
        O_BAD,
        O_HFAIL,
        O_SEED,
    };
    static const struct option opts[] = {
        {"listen", required_argument, 0, O_LISTEN},
        {"port", required_argument, 0, O_PORT},
        {"slots", required_argument, 0, O_SLOTS},
        {"prefill-base-ms", required_argument, 0, O_PBASE},
        {"prefill-per-token-us", required_argument, 0, O_PTOK},
        {"token-ms", required_argument, 0, O_TOKMS},
        {"batch-slowdown", required_argument, 0, O_SLOW},
        {"default-tokens", required_argument, 0, O_DEFTOK},
        {"default-tokens-spread", required_argument, 0, O_SPREAD},
        {"no-abort", no_argument, 0, O_NOABORT},
        {"late-headers", no_argument, 0, O_LATEHDR},
        {"keepalive-timeout", required_argument, 0, O_KA},
        {"model", required_argument, 0, O_MODEL},
        {"error-rate", required_argument, 0, O_ERR},
        {"added-latency-ms", required_argument, 0, O_LAT},
        {"version", optional_argument, 0, O_VERSION},
        {"bad-release", required_argument, 0, O_BAD},
        {"health-fail", no_argument, 0, O_HFAIL},
        {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct sim_cfg *k = &sim.cfg;
    *k = (struct sim_cfg){.slots = 16,
                          .prefill_base_ms = 20,
                          .prefill_per_token_us = 100,
                          .token_ms = 20,
                          .batch_slowdown = 1.0,
                          .default_tokens = 128,
                          .default_spread = 0.5,
                          .bad_token_slowdown = 1.0,
                          .keepalive_s = 5};
    rp_snprintf(k->version, sizeof k->version, "v1");
    rp_snprintf(k->model, sizeof k->model, "llmsim-1");
    const char *listen_spec = "127.0.0.1:9001";
    char port_spec[64];
    uint64_t seed = rp_now_us() ^ ((uint64_t)getpid() << 32);
    int o, ival;
    bool ok = true;

    rp_log_set_prog("llmsim");
    while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        const char *a = optarg;
        switch (o) {
        case O_LISTEN: listen_spec = a; break;
        case O_PORT:
            ok = tool_parse_int(a, 0, 65535, &ival);
            rp_snprintf(port_spec, sizeof port_spec, "127.0.0.1:%d", ival);
            listen_spec = port_spec;
            break;
        case O_SLOTS: ok = tool_parse_int(a, 1, SIM_MAX_SLOTS, &k->slots); break;
        case O_PBASE: ok = tool_parse_double(a, 0, 600000, &k->prefill_base_ms); break;
        case O_PTOK: ok = tool_parse_double(a, 0, 1e6, &k->prefill_per_token_us); break;
        case O_TOKMS: ok = tool_parse_double(a, 0, 60000, &k->token_ms); break;
        case O_SLOW: ok = tool_parse_double(a, 0, 1000, &k->batch_slowdown); break;
        case O_DEFTOK: ok = tool_parse_int(a, 1, SIM_MAX_TOKENS, &k->default_tokens); break;
        case O_SPREAD: ok = tool_parse_double(a, 0, 1, &k->default_spread); break;
        case O_NOABORT: k->no_abort = true; break;
        case O_LATEHDR: k->late_headers = true; break;
        case O_KA:
            ok = tool_parse_seconds(a, &k->keepalive_s) && k->keepalive_s >= 0.001 && k->keepalive_s <= 86400;
            break;
        case O_MODEL:
            ok = strlen(a) > 0 && strlen(a) <= SIM_MODEL_MAX;
            if (ok)
                rp_snprintf(k->model, sizeof k->model, "%s", a);
            break;
        case O_ERR: ok = tool_parse_double(a, 0, 1, &k->error_rate); break;
        case O_LAT: ok = tool_parse_double(a, 0, 600000, &k->added_latency_ms); break;
        case O_VERSION:
            /* "--version" alone prints the program version; with a value
             * ("--version v2" or "--version=v2") it sets the label. */
            if (!a && optind < argc && argv[optind][0] != '-')
                a = argv[optind++];
            if (!a) {
                printf("llmsim %s\n", RP_VERSION);
                return 0;
            }
            ok = api_version_ok(a);
            if (ok)
                rp_snprintf(k->version, sizeof k->version, "%s", a);
            break;
        case O_BAD: {
            char *end;
            errno = 0;
            k->bad_error_rate = strtod(a, &end);
            ok = *end == ':' && k->bad_error_rate >= 0 && k->bad_error_rate <= 1 &&
                 tool_parse_double(end + 1, 0.01, 1000, &k->bad_token_slowdown);
            k->bad_release = ok;
            break;
        }
        case O_HFAIL: k->health_fail = true; break;
        case O_SEED: ok = tool_parse_u64(a, &seed); break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("llmsim %s\n", RP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "llmsim: invalid value for --%s: '%s' (see --help)\n", opts[o - O_LISTEN].name, a ? a : "");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "llmsim: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (parse_listen(listen_spec, &ss, &sl) < 0) {
        fprintf(stderr, "llmsim: --listen wants a numeric ADDR:PORT, got '%s'\n", listen_spec);
        return 2;
    }
    rp_rand_seed(seed);

    int max_fds = RP_MIN(proc_raise_nofile(SIM_MAX_FDS), SIM_MAX_FDS);
    sim.loop = ev_create(max_fds);
    if (!sim.loop)
        return 1;
    sim.started_us = rp_now_us();
    sim.started_wall_s = rp_wall_ms() / 1000;
    sbuf_init(&sim.scratch, 0);
    ev_timer_init(&sim.tick, seq_tick_cb, NULL);
    ev_timer_init(&sim.accept_pause, conn_accept_resume_cb, NULL);

    sim.lfd = net_listen((struct sockaddr *)&ss, sl, 4096);
    if (sim.lfd < 0) {
        rp_log_errno(errno, "listen on %s", listen_spec);
        return 1;
    }
    if (ev_add(sim.loop, sim.lfd, EV_READ, conn_listen_cb, NULL) < 0) {
        rp_log_errno(errno, "ev_add listener");
        return 1;
    }

    sim.sfd = proc_signalfd();
    if (sim.sfd < 0 || ev_add(sim.loop, sim.sfd, EV_READ, signal_cb, NULL) < 0) {
        rp_log_errno(errno, "signalfd");
        return 1;
    }

    double svc = seq_service_ms_estimate(k->default_tokens, 0);
    rp_log_info("listening on %s: slots=%d token_ms=%g batch_slowdown=%g prefill=%g+%gus/tok version=%s "
                "(~%.1f req/s at %d tokens)",
                listen_spec, k->slots, k->token_ms, k->batch_slowdown, k->prefill_base_ms, k->prefill_per_token_us,
                k->version, svc > 0 ? k->slots * 1000.0 / svc : 0.0, k->default_tokens);
    int rc = ev_run(sim.loop);
    /* Exit without tearing down every connection: the kernel closes them,
     * and clients see the same EOF a crashed server would give. */
    sbuf_free(&sim.scratch);
    return rc == RP_OK ? 0 : 1;
}

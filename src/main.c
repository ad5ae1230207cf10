/*
 * main.c — the rampart command line: load the configuration, wire the
 * subsystems onto one event loop, run, and drain on SIGTERM/SIGINT.
 *
 * Signals arrive through a signalfd watched by the loop, so a signal is
 * just another event: no handler runs in the middle of a state machine.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "admin_status.h"
#include "admin_canary.h"
#include "config.h"
#include "ev.h"
#include "metrics.h"
#include "net.h"
#include "proc.h"
#include "proxy.h"
#include "status.h"
#include "util.h"

static const char usage_text[] = "usage: rampart -c FILE        run the gateway with configuration FILE\n"
                                 "       rampart -t -c FILE     check FILE and exit (0: valid, 1: errors listed)\n"
                                 "       rampart -h | --help    show this help\n"
                                 "       rampart --version      show the version\n";

struct app {
    struct ev_loop *loop;
    struct proxy *px;
    struct admin *admin;
    struct status *status;
    struct ev_timer drain_timer;
    int sigfd;
    bool stopping;
    const struct config *cfg;
};

static void drained(void *arg)
{
    struct app *app = arg;
    rp_log_info("drained, exiting");
    ev_stop(app->loop);
}

static void drain_timeout(struct ev_loop *loop, struct ev_timer *t, void *arg)
{
    RP_UNUSED(t);
    struct app *app = arg;
    rp_log_info("drain timeout: closing %zu connections", proxy_connections(app->px));
    ev_stop(loop);
}

static void signal_event(struct ev_loop *loop, int fd, uint32_t events, void *arg)
{
    RP_UNUSED(events);
    struct app *app = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (app->stopping) {
            rp_log_info("second signal: exiting now");
            ev_stop(loop);
            return;
        }
        app->stopping = true;
        rp_log_info("signal %u: draining (up to %llu ms)", si.ssi_signo,
                    (unsigned long long)(app->cfg->timeouts.drain_us / 1000));
        if (app->admin)
            admin_stop_accepting(app->admin);
        if (app->status)
            status_stop_accepting(app->status);
        ev_timer_init(&app->drain_timer, drain_timeout, app);
        ev_timer_arm(loop, &app->drain_timer, app->cfg->timeouts.drain_us);
        proxy_drain(app->px, drained, app);
    }
}

static int setup_signals(struct app *app)
{
    app->sigfd = proc_signalfd();
    if (app->sigfd < 0)
        return RP_ERR;
    return ev_add(app->loop, app->sigfd, EV_READ, signal_event, app);
}

/* Release verdicts outlive the process: each canary's are restored from
 * the status store and the next ones stored there; a rollback opens an
 * incident on the page.  st NULL detaches them. */
static void track_canaries(struct upstream_set *ups, struct status *st, uint64_t now_us)
{
    for (size_t i = 0; i < ups->num; i++)
        status_track_canary(st, ups->ups[i].canary, now_us);
}

/* The proxy's listening sockets, in configuration order. */
static int open_listeners(struct app *app)
{
    const struct config *cfg = app->cfg;
    for (size_t i = 0; i < cfg->num_listen; i++) {
        const struct server_addr *a = &cfg->listen[i];
        int fd = net_listen((const struct sockaddr *)&a->ss, a->len, 4096);
        if (fd < 0) {
            rp_log_errno(errno, "cannot listen on %s", a->text);
            return RP_ERR;
        }
        if (proxy_listen(app->px, fd, a->text) != RP_OK)
            return RP_ERR;
    }
    return RP_OK;
}

static int run(const struct config *cfg)
{
    int rc = 1;
    struct app app = {.sigfd = -1, .cfg = cfg};
    struct accesslog *log = NULL;
    /* clients and their upstream connections, plus the admin and status
     * listeners' own connection caps */
    int max_fds = proc_raise_nofile(cfg->limits.max_connections * 2 + 256 + 1024 + 4096);

    app.loop = ev_create(max_fds);
    if (!app.loop)
        goto out;
    if (setup_signals(&app) != RP_OK) {
        rp_log_errno(errno, "signal setup");
        goto out;
    }
    log = accesslog_open(cfg->access_log);
    if (!log)
        goto out;
    app.px = proxy_create(app.loop, cfg, log);
    if (!app.px)
        goto out;
    struct upstream_set *ups = proxy_upstreams(app.px);
    if (cfg->has_admin) {
        app.admin = admin_start(app.loop, &cfg->admin_listen, cfg->admin_token_file);
        if (!app.admin)
            goto out;
        canary_admin_register(app.admin, &ups->canaries);
    }
    if (cfg->has_status) {
        app.status = status_create(app.loop, &cfg->status);
        if (!app.status || status_listen(app.status) != RP_OK)
            goto out;
        if (app.admin) {
            admin_route(app.admin, "/api/v1/incidents", admin_status_handler, app.status);
            admin_route(app.admin, "/api/v1/maintenances", admin_status_handler, app.status);
        }
        proxy_set_status(app.px, app.status);
        track_canaries(ups, app.status, ev_now(app.loop));
    }
    /* The page lists the families in this order. */
    upstream_set_register_metrics(ups);
    proxy_register_metrics(app.px);
    if (app.status)
        metrics_register(status_metrics_render, app.status);
    /* Clients last: once the proxy port answers, everything else (admin,
     * status, metrics) is up. */
    if (open_listeners(&app) != RP_OK)
        goto out;
    rp_log_info("rampart %s listening on %s (%zu upstreams)", RP_VERSION, cfg->listen[0].text, cfg->num_upstreams);
    if (ev_run(app.loop) != RP_OK)
        goto out;
    rc = 0;
out:
    if (app.px) {
        track_canaries(proxy_upstreams(app.px), NULL, 0);
        proxy_set_status(app.px, NULL);
    }
    /* No scrape can come any more: forget the renderers before their
     * owners go. */
    admin_free(app.admin);
    metrics_clear();
    status_free(app.status);
    proxy_free(app.px);
    accesslog_close(log);
    if (app.sigfd >= 0) {
        if (app.loop)
            ev_del(app.loop, app.sigfd);
        close(app.sigfd);
    }
    ev_destroy(app.loop);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool test_only = false;
    rp_log_set_prog("rampart");
    rp_rand_seed(rp_now_us() ^ ((uint64_t)getpid() << 32));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("rampart %s\n", RP_VERSION);
            return 0;
        }
        if (strcmp(a, "-t") == 0) {
            test_only = true;
            continue;
        }
        if (strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "rampart: -c needs a file\n%s", usage_text);
                return 2;
            }
            path = argv[++i];
            continue;
        }
        fprintf(stderr, "rampart: unknown option '%s'\n%s", a, usage_text);
        return 2;
    }
    if (!path) {
        fprintf(stderr, "rampart: no configuration file (use -c FILE)\n%s", usage_text);
        return 2;
    }

    static struct config cfg; /* large: keep it off the stack */
    /* The same checks for -t and for a real start: -t must never pass a
     * file that start-up would refuse. */
    if (config_load_startup(path, &cfg, stderr) != RP_OK)
        return 1;
    if (test_only) {
        printf("%s: configuration ok\n", path);
        config_free(&cfg);
        return 0;
    }
    int rc = run(&cfg);
    config_free(&cfg);
    return rc;
}

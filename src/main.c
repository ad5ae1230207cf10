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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "canary.h"
#include "config.h"
#include "ev.h"
#include "proxy.h"
#include "status.h"
#include "util.h"

static const char usage_text[] =
    "usage: rampart -c FILE        run the gateway with configuration FILE\n"
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
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return RP_ERR;
    app->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (app->sigfd < 0)
        return RP_ERR;
    signal(SIGPIPE, SIG_IGN);
    return ev_add(app->loop, app->sigfd, EV_READ, signal_event, app);
}

/* Room for every client plus its upstream connection and some slack. */
static int raise_fd_limit(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    rlim_t need = (rlim_t)want;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
}

static int run(const struct config *cfg)
{
    int rc = 1;
    struct app app = {.sigfd = -1, .cfg = cfg};
    struct accesslog *log = NULL;
    /* clients and their upstream connections, plus the admin and status
     * listeners' own connection caps */
    int max_fds = raise_fd_limit(cfg->limits.max_connections * 2 + 256 + 1024 + 4096);

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
    if (cfg->has_admin) {
        app.admin = admin_start(app.loop, cfg);
        if (!app.admin)
            goto out;
        canary_admin_register(app.admin);
    }
    if (cfg->has_status) {
        app.status = status_create(app.loop, &cfg->status, cfg, app.admin);
        if (!app.status)
            goto out;
        proxy_set_status(app.px, app.status);
    }
    rp_log_info("rampart %s listening on %s (%zu upstreams)", RP_VERSION, cfg->listen[0].text, cfg->num_upstreams);
    if (ev_run(app.loop) != RP_OK)
        goto out;
    rc = 0;
out:
    if (app.px)
        proxy_set_status(app.px, NULL);
    status_free(app.status);
    admin_free(app.admin);
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

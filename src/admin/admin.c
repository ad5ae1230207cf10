/*
 * admin.c — the admin listener (see admin.h): /healthz, /metrics, and the
 * write APIs other subsystems register by path prefix.
 *
 * Authorization is deliberately simple: reads (GET/HEAD) are open, since
 * the listener binds to loopback by default and serves only what a
 * Prometheus scrape or a status check needs; every other method needs the
 * bearer token read once at start from admin.token_file.  The check runs
 * before routing, so an unauthenticated client learns nothing about which
 * write routes exist.  The token is compared in constant time with respect
 * to its contents and is never logged, echoed or kept in more than one
 * place; it is wiped on free.
 *
 * Without a token file, writes answer 403 with the setting to change,
 * rather than 401: there is no token the client could have sent.
 */
#include "admin.h"
#include "admin_token.h"
#include "metrics.h"
#include "net.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADMIN_MAX_ROUTES 32

struct admin_route_ent {
    char *prefix;
    size_t len;
    httpd_handler handler;
    void *arg;
};

struct admin {
    struct httpd *httpd;
    char *token; /* NULL: writes disabled */
    size_t token_len;
    struct admin_route_ent routes[ADMIN_MAX_ROUTES]; /* longest prefix first */
    size_t num_routes;
    double start_time_s; /* process start, Unix seconds */
};

/* ---- authorization ---- */

static bool token_equal(const char *given, size_t glen, const char *want, size_t wlen)
{
    volatile unsigned char diff = (unsigned char)(glen != wlen);
    for (size_t i = 0; i < wlen; i++) {
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)want[i]);
    }
    return diff == 0;
}

static bool is_read_method(const struct h1_message *m)
{
    return rp_strieq(m->method.p, m->method.len, "GET") || rp_strieq(m->method.p, m->method.len, "HEAD");
}

/* true when the request may write; otherwise resp holds the refusal. */
static bool authorized(const struct admin *a, const struct httpd_request *req, struct httpd_response *resp)
{
    if (!a->token) {
        httpd_json_error_code(resp, 403, "forbidden", "admin_writes_disabled",
                              "admin writes are disabled: set admin.token_file");
        return false;
    }
    const struct h1_header *hd = h1_find_header(req->msg, "Authorization");
    if (!hd) {
        httpd_add_header(resp, "WWW-Authenticate", "Bearer realm=\"rampart-admin\"");
        httpd_json_error_code(resp, 401, "authentication_error", "missing_token",
                              "admin writes need an Authorization: Bearer token");
        return false;
    }
    const char *v = hd->value.p;
    size_t n = hd->value.len;
    bool ok = false;
    if (n > 7 && rp_strieq(v, 6, "Bearer") && (v[6] == ' ' || v[6] == '\t')) {
        size_t i = 7;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        ok = token_equal(v + i, n - i, a->token, a->token_len);
    }
    if (!ok) {
        httpd_add_header(resp, "WWW-Authenticate", "Bearer realm=\"rampart-admin\", error=\"invalid_token\"");
        httpd_json_error_code(resp, 401, "authentication_error", "invalid_token", "invalid admin token");
        return false;
    }
    return true;
}

/* ---- built-in endpoints ---- */

/* Process start time from the kernel (boot time + start ticks), so the
 * value is right even when the admin listener starts late; falls back to
 * "now" where /proc is unavailable. */
static double process_start_time(void)
{
    char buf[1024];
    double now = (double)rp_wall_ms() / 1000.0;
    unsigned long long start_ticks = 0, btime = 0;
    long hz = sysconf(_SC_CLK_TCK);
    bool have_ticks = false, have_btime = false;

    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* The command name may contain spaces and parentheses: fields are
         * counted from the last ')'.  starttime is field 22; the text after
         * ") " begins with field 3. */
        char *p = strrchr(buf, ')');
        if (p) {
            p++;
            int field = 2;
            while (*p && field < 22) {
                if (*p == ' ')
                    field++;
                p++;
            }
            if (field == 22 && sscanf(p, "%llu", &start_ticks) == 1)
                have_ticks = true;
        }
    }
    f = fopen("/proc/stat", "re");
    if (f) {
        while (fgets(buf, sizeof buf, f)) {
            if (sscanf(buf, "btime %llu", &btime) == 1) {
                have_btime = true;
                break;
            }
        }
        fclose(f);
    }
    if (!have_ticks || !have_btime || hz <= 0)
        return now;
    return (double)btime + (double)start_ticks / (double)hz;
}

static void render_process(struct admin *a, struct sbuf *out)
{
    struct rusage ru;
    char labels[64];

    metrics_family(out, "rampart_up", "gauge", "1 while the rampart process is running.");
    metrics_sample_u64(out, "rampart_up", "", 1);
    metrics_family(out, "rampart_build_info", "gauge", "Build information; the value is always 1.");
    rp_snprintf(labels, sizeof labels, "version=\"%s\"", RP_VERSION);
    metrics_sample_u64(out, "rampart_build_info", labels, 1);
    metrics_family(out, "rampart_assertion_failures_total", "counter",
                   "Broken internal invariants (RP_ASSERT) since start; anything above 0 is a bug to report.");
    metrics_sample_u64(out, "rampart_assertion_failures_total", "", rp_assert_failures());
    metrics_family(out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    metrics_sample_f64(out, "process_start_time_seconds", "", a->start_time_s);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
        metrics_family(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
        metrics_sample_f64(out, "process_cpu_seconds_total", "", cpu);
    }
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        unsigned long long size, resident;
        long page = sysconf(_SC_PAGESIZE);
        if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0) {
            metrics_family(out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
            metrics_sample_u64(out, "process_resident_memory_bytes", "", (uint64_t)resident * (uint64_t)page);
        }
        fclose(f);
    }
}

static void method_not_allowed(struct httpd_response *resp)
{
    httpd_add_header(resp, "Allow", "GET, HEAD");
    httpd_json_error(resp, 405, "invalid_request_error", "method not allowed");
}

static void admin_handle(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
    struct admin *a = arg;
    bool read = is_read_method(req->msg);

    if (!read && !authorized(a, req, resp))
        return;

    if (httpd_path_is(req, "/healthz")) {
        if (!read) {
            method_not_allowed(resp);
            return;
        }
        sbuf_adds(&resp->body, "{\"status\":\"ok\"}\n");
        return;
    }
    if (httpd_path_is(req, "/metrics")) {
        if (!read) {
            method_not_allowed(resp);
            return;
        }
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        render_process(a, &resp->body);
        metrics_render(&resp->body);
        return;
    }
    for (size_t i = 0; i < a->num_routes; i++) {
        const struct admin_route_ent *r = &a->routes[i];
        if (req->path.len >= r->len && memcmp(req->path.p, r->prefix, r->len) == 0) {
            r->handler(r->arg, req, resp);
            return;
        }
    }
    httpd_json_error_code(resp, 404, "not_found_error", "unknown_endpoint", "no such admin endpoint");
}

/* ---- public ---- */

/* Log the address actually bound (the configured port may be 0). */
static void log_listening(const struct admin *a, const struct server_addr *ca)
{
    struct sockaddr_storage ss = ca->ss;
    char text[NET_ADDR_TEXT_MAX];
    int port = httpd_port(a->httpd);

    if (ss.ss_family == AF_INET && port > 0)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else if (ss.ss_family == AF_INET6 && port > 0)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    net_addr_text((const struct sockaddr *)&ss, text, sizeof text);
    rp_log_info("admin: listening on %s (writes %s)", text, a->token ? "enabled" : "disabled: no admin.token_file");
}

void admin_route(struct admin *a, const char *prefix, httpd_handler handler, void *arg)
{
    size_t len = strlen(prefix), i;

    for (i = 0; i < a->num_routes; i++) {
        if (a->routes[i].len == len && memcmp(a->routes[i].prefix, prefix, len) == 0) {
            rp_log_err("admin: route %s registered twice; the later one wins", prefix);
            a->routes[i].handler = handler;
            a->routes[i].arg = arg;
            return;
        }
    }
    if (a->num_routes == ADMIN_MAX_ROUTES) {
        rp_log_err("admin: more than %d routes; ignoring %s", ADMIN_MAX_ROUTES, prefix);
        return;
    }
    /* Keep longest prefixes first (ties in registration order) so the
     * first match is the most specific. */
    for (i = 0; i < a->num_routes && a->routes[i].len >= len; i++)
        ;
    memmove(&a->routes[i + 1], &a->routes[i], (a->num_routes - i) * sizeof a->routes[0]);
    a->routes[i] = (struct admin_route_ent){.prefix = rp_xstrdup(prefix), .len = len, .handler = handler, .arg = arg};
    a->num_routes++;
}

struct admin *admin_start(struct ev_loop *loop, const struct server_addr *listen, const char *token_file)
{
    struct admin *a;

    if (!listen) {
        rp_log_err("admin: no admin listener configured");
        return NULL;
    }
    a = rp_xcalloc(1, sizeof *a);
    a->start_time_s = process_start_time();
    if (token_file) {
        char why[512];
        if (admin_token_read(token_file, &a->token, &a->token_len, why, sizeof why) != RP_OK) {
            rp_log_err("admin: %s", why);
            goto fail;
        }
    }
    a->httpd = httpd_start(loop, (const struct sockaddr *)&listen->ss, listen->len, "admin", admin_handle, a, NULL);
    if (!a->httpd)
        goto fail;
    log_listening(a, listen);
    return a;

fail:
    admin_free(a);
    return NULL;
}

void admin_stop_accepting(struct admin *a)
{
    if (a)
        httpd_stop_accepting(a->httpd);
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    httpd_free(a->httpd);
    for (size_t i = 0; i < a->num_routes; i++)
        free(a->routes[i].prefix);
    if (a->token) {
        explicit_bzero(a->token, a->token_len + 1);
        free(a->token);
    }
    free(a);
}

int admin_port(const struct admin *a)
{
    return httpd_port(a->httpd);
}

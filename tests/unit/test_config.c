/*
 * test_config.c — config.c: the top-level schema, its defaults, routing,
 * the subsystem sections it wires in (overload, tenants, status and
 * components; per upstream health_check, outlier, retry, canary and the
 * overload override), and every error class with its exact
 * "FILE:LINE:COL: message" text.  Error cases are one table: YAML in, the
 * complete list of errors out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

/* struct config is large: keep it off the stack. */
static struct config cfg;

static const char minimal_yaml[] = "listen: 127.0.0.1:8080\n"
                                   "upstreams:\n"
                                   "  chat:\n"
                                   "    servers: [127.0.0.1:9001, 127.0.0.1:9002]\n"
                                   "admin:\n"
                                   "  listen: 127.0.0.1:9901\n";

/* examples/NAME from the repository root, or relative to this file when
 * the test runs from elsewhere. */
static const char *example(const char *name, char *buf, size_t cap)
{
    const char *slash;
    snprintf(buf, cap, "examples/%s", name);
    if (access(buf, R_OK) == 0)
        return buf;
    slash = strrchr(__FILE__, '/');
    snprintf(buf, cap, "%.*s/../../examples/%s", slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".", name);
    return buf;
}

static unsigned port_of(const struct server_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static const char *ip_of(const struct server_addr *a, char *buf, size_t cap)
{
    if (a->ss.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, buf, (socklen_t)cap);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, buf, (socklen_t)cap);
}

static int route(const char *path)
{
    return config_route(&cfg, path, strlen(path));
}

#define US(s) ((uint64_t)(s)*1000000ull)

/* The overload section as admit_conf_default() leaves it. */
static void check_overload_default(const struct admit_conf *o)
{
    assert_int_equal(o->limiter.mode, ADMIT_MODE_ADAPTIVE);
    assert_int_equal(o->limiter.max_concurrency, 0);
    assert_int_equal(o->limiter.initial, 8);
    assert_int_equal(o->limiter.min, 1);
    assert_int_equal(o->limiter.max, 1000);
    assert_true(o->limiter.tolerance == 0.5);
    assert_int_equal(o->limiter.sample_interval_us, 100000);
    assert_int_equal(o->limiter.baseline_window_us, US(10));
    assert_int_equal(o->limiter.probe_interval_us, 0);
    assert_int_equal(o->queue.max_length, 1024);
    for (int c = 0; c < ADMIT_NUM_CLASSES; c++)
        assert_int_equal(o->queue.max_wait_us[c], US(10));
    assert_int_equal(o->queue.codel_target_us, 20000);
    assert_int_equal(o->queue.codel_interval_us, 100000);
    assert_true(o->queue.lifo);
    assert_int_equal(o->queue.standing_wait_us, 0);
    assert_int_equal(o->queue.credit, 4);
}

/* Every per-upstream subsystem section as it is without its key. */
static void check_upstream_sections_default(const struct config_upstream *up)
{
    check_overload_default(&up->overload);

    assert_false(up->health.enabled);
    assert_string_equal(up->health.path, "/health");
    assert_string_equal(up->health.host, "");
    assert_int_equal(up->health.interval_us, US(2));
    assert_int_equal(up->health.timeout_us, US(1));
    assert_int_equal(up->health.rise, 2);
    assert_int_equal(up->health.fall, 3);
    assert_int_equal(up->health.slow_start_us, US(30));

    assert_true(up->outlier.enabled);
    assert_int_equal(up->outlier.consecutive_failures, 5);
    assert_int_equal(up->outlier.interval_us, US(10));
    assert_int_equal(up->outlier.window_us, US(30));
    assert_int_equal(up->outlier.min_requests, 50);
    assert_true(up->outlier.stdev_factor == 1.9);
    assert_true(up->outlier.min_gap == 0.05);
    assert_int_equal(up->outlier.base_ejection_us, US(30));
    assert_int_equal(up->outlier.max_ejection_us, US(300));
    assert_int_equal(up->outlier.max_ejection_percent, 50);

    assert_true(up->retry.budget == 0.1);
    assert_true(up->retry.min_per_second == 1.0);
    assert_int_equal(up->retry.max_per_request, 2);
    assert_int_equal(up->retry.window_us, US(10));

    assert_int_equal(up->canary.num_steps, 4);
    assert_int_equal(up->canary.steps_bp[0], 500);
    assert_int_equal(up->canary.steps_bp[1], 2500);
    assert_int_equal(up->canary.steps_bp[2], 5000);
    assert_int_equal(up->canary.steps_bp[3], 10000);
    assert_int_equal(up->canary.step_duration_us, US(300));
    assert_int_equal(up->canary.interval_us, US(30));
    assert_int_equal(up->canary.window_us, US(300));
    assert_int_equal(up->canary.min_samples, 100);
    assert_true(up->canary.alpha == 0.01);
    assert_true(up->canary.error_margin == 0.01);
    assert_true(up->canary.latency_ratio == 1.2);
    assert_true(up->canary.auto_rollback);
}

/* tenants: and status: as they are without their keys. */
static void check_global_sections_default(void)
{
    check_overload_default(&cfg.overload);

    assert_int_equal(cfg.tenants.ident, TENANT_BY_API_KEY);
    assert_string_equal(cfg.tenants.header, "");
    assert_string_equal(cfg.tenants.priority_header, "x-priority");
    assert_int_equal(cfg.tenants.max_tracked, 1024);
    assert_int_equal(cfg.tenants.defaults.cls, ADMIT_INTERACTIVE);
    assert_int_equal(cfg.tenants.defaults.max_class, ADMIT_INTERACTIVE);
    assert_false(cfg.tenants.defaults.allow_priority_header);
    assert_int_equal(cfg.tenants.defaults.weight, 1);
    assert_null(cfg.tenants.entries);
    assert_int_equal(cfg.tenants.nentries, 0);

    assert_false(cfg.has_status);
    assert_false(cfg.status.enabled);
    assert_int_equal(cfg.status.listen_len, 0);
    assert_int_equal(cfg.status.refresh_us, US(5));
    assert_int_equal(cfg.status.window_us, US(60));
    assert_int_equal(cfg.status.latency_us, US(5));
    assert_true(cfg.status.target == 0.995);
    assert_true(cfg.status.auto_incidents);
    assert_int_equal(cfg.status.num_rules, 2);
    assert_int_equal(cfg.status.num_components, 0);
}

/* ---- the minimal file ---------------------------------------------------- */

static void check_minimal(void)
{
    char ip[64];
    assert_int_equal(cfg.num_listen, 1);
    assert_string_equal(cfg.listen[0].text, "127.0.0.1:8080");
    assert_int_equal(cfg.listen[0].ss.ss_family, AF_INET);
    assert_int_equal(cfg.listen[0].len, sizeof(struct sockaddr_in));
    assert_string_equal(ip_of(&cfg.listen[0], ip, sizeof ip), "127.0.0.1");
    assert_int_equal(port_of(&cfg.listen[0]), 8080);

    assert_int_equal(cfg.num_upstreams, 1);
    const struct config_upstream *up = &cfg.upstreams[0];
    assert_string_equal(up->name, "chat");
    assert_int_equal(up->num_servers, 2);
    assert_string_equal(up->servers[0].addr.text, "127.0.0.1:9001");
    assert_int_equal(port_of(&up->servers[0].addr), 9001);
    assert_string_equal(up->servers[1].addr.text, "127.0.0.1:9002");
    assert_int_equal(port_of(&up->servers[1].addr), 9002);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(up->servers[i].weight, 1);
        assert_int_equal(up->servers[i].group, 0);
    }
    assert_int_equal(up->balance, CONFIG_BALANCE_P2C);
    assert_int_equal(up->connect_timeout_us, 2000000);
    assert_int_equal(up->first_byte_timeout_us, 60000000);
    assert_int_equal(up->idle_timeout_us, 60000000);
    assert_int_equal(up->pool_max_idle, 64);
    assert_int_equal(up->pool_idle_timeout_us, 60000000);
    check_upstream_sections_default(up);
    assert_false(up->has_canary);

    assert_int_equal(cfg.num_routes, 0);
    assert_true(cfg.has_admin);
    assert_string_equal(cfg.admin_listen.text, "127.0.0.1:9901");
    assert_int_equal(port_of(&cfg.admin_listen), 9901);
    assert_null(cfg.admin_token_file);

    assert_int_equal(cfg.limits.max_header_bytes, 16384);
    assert_int_equal(cfg.limits.max_headers, 100);
    assert_int_equal(cfg.limits.max_uri, 8192);
    assert_int_equal(cfg.limits.max_body, 10485760);
    assert_int_equal(cfg.limits.max_connections, 10000);
    assert_int_equal(cfg.timeouts.client_header_us, 10000000);
    assert_int_equal(cfg.timeouts.client_body_us, 30000000);
    assert_int_equal(cfg.timeouts.client_idle_us, 60000000);
    assert_int_equal(cfg.timeouts.send_us, 60000000);
    assert_int_equal(cfg.timeouts.drain_us, 15000000);
    assert_string_equal(cfg.access_log, "stdout");
    check_global_sections_default();

    /* One upstream and no routes: everything goes to it. */
    assert_int_equal(route("/v1/chat/completions"), 0);
    assert_int_equal(route("/"), 0);
    assert_int_equal(route(""), 0);
}

static void test_minimal_string(void **state)
{
    (void)state;
    assert_int_equal(config_load_string("min.yaml", minimal_yaml, &cfg, stderr), RP_OK);
    assert_string_equal(cfg.path, "min.yaml");
    check_minimal();
    config_free(&cfg);
    assert_null(cfg.path);
    assert_int_equal(cfg.num_upstreams, 0);
    config_free(&cfg); /* twice is harmless */
}

static void test_minimal_example_file(void **state)
{
    char path[512];
    (void)state;
    example("minimal.yaml", path, sizeof path);
    assert_int_equal(config_load(path, &cfg, stderr), RP_OK);
    assert_string_equal(cfg.path, path);
    check_minimal();
    config_free(&cfg);
}

/* ---- the full example ---------------------------------------------------- */

static void test_full_example_file(void **state)
{
    char path[512], ip[64];
    char *out = NULL;
    size_t outlen = 0;
    FILE *err = open_memstream(&out, &outlen);
    (void)state;
    assert_non_null(err);
    example("full.yaml", path, sizeof path);
    int rc = config_load(path, &cfg, err);
    fclose(err);
    assert_string_equal(out, ""); /* not a single error */
    free(out);
    assert_int_equal(rc, RP_OK);

    assert_int_equal(cfg.num_listen, 2);
    assert_int_equal(port_of(&cfg.listen[1]), 8081);
    assert_int_equal(cfg.num_upstreams, 2);

    const struct config_upstream *chat = &cfg.upstreams[0];
    assert_string_equal(chat->name, "chat");
    assert_int_equal(chat->num_servers, 3);
    assert_int_equal(chat->servers[1].weight, 2);
    assert_int_equal(chat->servers[1].group, 0);
    assert_string_equal(chat->servers[2].addr.text, "127.0.0.1:9003");
    assert_int_equal(chat->servers[2].group, 1);
    assert_int_equal(chat->balance, CONFIG_BALANCE_P2C);
    assert_int_equal(chat->pool_max_idle, 64);

    const struct config_upstream *emb = &cfg.upstreams[1];
    assert_string_equal(emb->name, "embeddings");
    assert_int_equal(emb->balance, CONFIG_BALANCE_ROUND_ROBIN);
    assert_int_equal(emb->num_servers, 2);
    assert_string_equal(emb->servers[1].addr.text, "localhost:9102");
    assert_string_equal(ip_of(&emb->servers[1].addr, ip, sizeof ip), "127.0.0.1");

    assert_int_equal(cfg.num_routes, 2);
    assert_int_equal(route("/v1/embeddings"), 1);
    assert_int_equal(route("/v1/chat/completions"), 0);
    assert_int_equal(route("/healthz"), -1);
    assert_int_equal(route("/v1"), -1);

    assert_string_equal(cfg.admin_token_file, "/etc/rampart/admin.token");
    assert_int_equal(cfg.limits.max_body, 10485760);
    assert_int_equal(cfg.timeouts.drain_us, 15000000);
    assert_string_equal(cfg.access_log, "stdout");

    /* The global overload section, and each upstream's view of it. */
    assert_int_equal(cfg.overload.queue.max_length, 1024);
    assert_int_equal(cfg.overload.queue.max_wait_us[ADMIT_CRITICAL], US(30));
    assert_int_equal(cfg.overload.queue.max_wait_us[ADMIT_INTERACTIVE], US(10));
    assert_int_equal(cfg.overload.queue.max_wait_us[ADMIT_BATCH], US(2));
    assert_int_equal(chat->overload.queue.max_length, 2048);
    assert_int_equal(chat->overload.queue.max_wait_us[ADMIT_BATCH], US(2));
    assert_int_equal(chat->overload.limiter.mode, ADMIT_MODE_ADAPTIVE);
    assert_int_equal(emb->overload.limiter.mode, ADMIT_MODE_STATIC);
    assert_int_equal(emb->overload.limiter.max_concurrency, 64);
    assert_int_equal(emb->overload.queue.max_length, 1024);

    /* chat shows every per-upstream section; embeddings has defaults. */
    assert_true(chat->health.enabled);
    assert_string_equal(chat->health.path, "/health");
    assert_int_equal(chat->health.fall, 3);
    assert_true(chat->outlier.enabled);
    assert_true(chat->retry.budget == 0.1);
    assert_true(chat->has_canary);
    assert_int_equal(chat->canary.num_steps, 4);
    assert_true(chat->canary.error_margin == 0.01);
    assert_false(emb->health.enabled);
    assert_false(emb->has_canary);

    assert_int_equal(cfg.tenants.ident, TENANT_BY_API_KEY);
    assert_int_equal(cfg.tenants.nentries, 3);
    assert_string_equal(cfg.tenants.entries[0].policy.name, "acme");
    assert_int_equal(cfg.tenants.entries[0].nkeys, 1);
    assert_int_equal(cfg.tenants.entries[0].policy.max_class, ADMIT_CRITICAL);
    assert_string_equal(cfg.tenants.entries[1].policy.name, "beta");
    assert_int_equal(cfg.tenants.entries[1].policy.cls, ADMIT_BATCH);
    assert_string_equal(cfg.tenants.entries[2].policy.name, "lab");
    assert_int_equal(cfg.tenants.entries[2].nnets, 2);

    assert_true(cfg.has_status);
    assert_true(cfg.status.enabled);
    assert_string_equal(cfg.status.listen_text, "127.0.0.1:8090");
    assert_string_equal(cfg.status.db_path, "/var/lib/rampart/status.db");
    assert_string_equal(cfg.status.page_name, "Example AI");
    assert_int_equal(cfg.status.num_components, 2);
    assert_string_equal(cfg.status.components[0].name, "Chat");
    assert_string_equal(cfg.status.components[1].upstreams[0], "embeddings");
    config_free(&cfg);
}

/* ---- values other than the defaults ------------------------------------- */

static void test_explicit_values(void **state)
{
    static const char yaml[] = "listen: [\"*:8080\", \"[::1]:8443\"]\n"
                               "upstreams:\n"
                               "  a:\n"
                               "    servers:\n"
                               "      - {address: 127.0.0.1:9001, weight: 1000}\n"
                               "      - {address: \"[::1]:9001\", group: canary}\n"
                               "    balance: round_robin\n"
                               "    connect_timeout: 250ms\n"
                               "    first_byte_timeout: 1.5s\n"
                               "    idle_timeout: 2m\n"
                               "    pool: {max_idle: 0, idle_timeout: 1h}\n"
                               "routes:\n"
                               "  - {prefix: /v1/, upstream: a}\n"
                               "admin: {listen: 127.0.0.1:9901, token_file: tok}\n"
                               "limits:\n"
                               "  max_header_bytes: 1m\n"
                               "  max_headers: 10000\n"
                               "  max_uri: 64\n"
                               "  max_body: 0\n"
                               "  max_connections: 1\n"
                               "timeouts:\n"
                               "  client_header: 1ms\n"
                               "  client_body: 1d\n"
                               "  client_idle: 5s\n"
                               "  send: 7s\n"
                               "  drain: 0s\n"
                               "log: {access: \"off\"}\n";
    char ip[64];
    (void)state;
    assert_int_equal(config_load_string("x.yaml", yaml, &cfg, stderr), RP_OK);
    assert_int_equal(cfg.num_listen, 2);
    assert_string_equal(ip_of(&cfg.listen[0], ip, sizeof ip), "0.0.0.0");
    assert_int_equal(cfg.listen[1].ss.ss_family, AF_INET6);
    assert_int_equal(port_of(&cfg.listen[1]), 8443);
    const struct config_upstream *up = &cfg.upstreams[0];
    assert_int_equal(up->servers[0].weight, 1000);
    assert_int_equal(up->servers[1].group, 1);
    assert_int_equal(up->servers[1].weight, 1);
    assert_int_equal(up->balance, CONFIG_BALANCE_ROUND_ROBIN);
    assert_int_equal(up->connect_timeout_us, 250000);
    assert_int_equal(up->first_byte_timeout_us, 1500000);
    assert_int_equal(up->idle_timeout_us, 120000000);
    assert_int_equal(up->pool_max_idle, 0);
    assert_int_equal(up->pool_idle_timeout_us, 3600000000ull);
    assert_string_equal(cfg.admin_token_file, "tok");
    assert_int_equal(cfg.limits.max_header_bytes, 1048576);
    assert_int_equal(cfg.limits.max_headers, 10000);
    assert_int_equal(cfg.limits.max_uri, 64);
    assert_int_equal(cfg.limits.max_body, 0);
    assert_int_equal(cfg.limits.max_connections, 1);
    assert_int_equal(cfg.timeouts.client_header_us, 1000);
    assert_int_equal(cfg.timeouts.client_body_us, 86400000000ull);
    assert_int_equal(cfg.timeouts.client_idle_us, 5000000);
    assert_int_equal(cfg.timeouts.send_us, 7000000);
    assert_int_equal(cfg.timeouts.drain_us, 0);
    assert_string_equal(cfg.access_log, "off");
    assert_false(!cfg.has_admin);
    /* One upstream with routes: only matching paths go to it. */
    assert_int_equal(route("/v1/x"), 0);
    assert_int_equal(route("/v2/x"), -1);
    config_free(&cfg);

    assert_int_equal(config_load_string("y.yaml",
                                        "listen: 127.0.0.1:1\n"
                                        "upstreams: {u: {servers: 127.0.0.1:2}}\n"
                                        "log: {access: /var/log/rampart/access.log}\n",
                                        &cfg, stderr),
                     RP_OK);
    assert_int_equal(cfg.upstreams[0].num_servers, 1);
    assert_false(cfg.has_admin);
    assert_string_equal(cfg.access_log, "/var/log/rampart/access.log");
    config_free(&cfg);
}

/* ---- subsystem sections ------------------------------------------------- */

static void test_sections_explicit(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1:8080\n"
                               "upstreams:\n"
                               "  chat:\n"
                               "    servers:\n"
                               "      - 127.0.0.1:9001\n"
                               "      - {address: 127.0.0.1:9002, group: canary}\n"
                               "    health_check: {path: /ready, host: chat.internal, interval: 5s, timeout: 500ms,\n"
                               "                   rise: 1, fall: 10, slow_start: 0s}\n"
                               "    outlier: {enabled: false, consecutive_failures: 0, min_requests: 10,\n"
                               "              base_ejection: 10s, max_ejection: 1m, max_ejection_percent: 100}\n"
                               "    retry: {budget: 20%, min_per_second: 0, max_per_request: 0, window: 30s}\n"
                               "    canary: {steps: [1, 10, 100], step_duration: 1m, interval: 10s, window: 1m,\n"
                               "             min_samples: 20, alpha: 0.05, error_margin: 0.02, latency_ratio: 1.5,\n"
                               "             auto_rollback: false}\n"
                               "overload:\n"
                               "  limiter: {mode: static, max_concurrency: 12}\n"
                               "  queue: {max_length: 10, max_wait: 3s, lifo: false, standing_wait: 1s, credit: 0}\n"
                               "tenants:\n"
                               "  identify: header\n"
                               "  header: X-Tenant\n"
                               "  max_tracked: 5\n"
                               "  default: {class: batch, weight: 3, requests_per_minute: 60}\n"
                               "  list:\n"
                               "    - {name: team-a, header_value: a, class: critical}\n"
                               "status:\n"
                               "  listen: 127.0.0.1:8090\n"
                               "  refresh: 2s\n"
                               "  objective: {target: 99, latency: 1s}\n"
                               "components:\n"
                               "  - {name: Chat, routes: [/v1/chat/]}\n";
    (void)state;
    assert_int_equal(config_load_string("s.yaml", yaml, &cfg, stderr), RP_OK);
    const struct config_upstream *up = &cfg.upstreams[0];
    assert_true(up->has_canary);

    assert_true(up->health.enabled); /* a present section enables checks */
    assert_string_equal(up->health.path, "/ready");
    assert_string_equal(up->health.host, "chat.internal");
    assert_int_equal(up->health.interval_us, US(5));
    assert_int_equal(up->health.timeout_us, 500000);
    assert_int_equal(up->health.rise, 1);
    assert_int_equal(up->health.fall, 10);
    assert_int_equal(up->health.slow_start_us, 0);

    assert_false(up->outlier.enabled);
    assert_int_equal(up->outlier.consecutive_failures, 0);
    assert_int_equal(up->outlier.min_requests, 10);
    assert_int_equal(up->outlier.base_ejection_us, US(10));
    assert_int_equal(up->outlier.max_ejection_us, US(60));
    assert_int_equal(up->outlier.max_ejection_percent, 100);
    assert_int_equal(up->outlier.window_us, US(30)); /* not given: default */

    assert_true(up->retry.budget == 0.2);
    assert_true(up->retry.min_per_second == 0.0);
    assert_int_equal(up->retry.max_per_request, 0);
    assert_int_equal(up->retry.window_us, US(30));

    assert_int_equal(up->canary.num_steps, 3);
    assert_int_equal(up->canary.steps_bp[0], 100);
    assert_int_equal(up->canary.steps_bp[1], 1000);
    assert_int_equal(up->canary.steps_bp[2], 10000);
    assert_int_equal(up->canary.step_duration_us, US(60));
    assert_int_equal(up->canary.interval_us, US(10));
    assert_int_equal(up->canary.window_us, US(60));
    assert_int_equal(up->canary.min_samples, 20);
    assert_true(up->canary.alpha == 0.05);
    assert_true(up->canary.error_margin == 0.02);
    assert_true(up->canary.latency_ratio == 1.5);
    assert_false(up->canary.auto_rollback);

    /* No override: the upstream's overload is the global section. */
    assert_int_equal(cfg.overload.limiter.mode, ADMIT_MODE_STATIC);
    assert_int_equal(cfg.overload.limiter.max_concurrency, 12);
    assert_int_equal(cfg.overload.queue.max_length, 10);
    assert_int_equal(cfg.overload.queue.max_wait_us[ADMIT_BATCH], US(3));
    assert_false(cfg.overload.queue.lifo);
    assert_int_equal(cfg.overload.queue.standing_wait_us, US(1));
    assert_int_equal(cfg.overload.queue.credit, 0);
    assert_memory_equal(&up->overload.limiter, &cfg.overload.limiter, sizeof cfg.overload.limiter);
    assert_memory_equal(&up->overload.queue, &cfg.overload.queue, sizeof cfg.overload.queue);

    assert_int_equal(cfg.tenants.ident, TENANT_BY_HEADER);
    assert_string_equal(cfg.tenants.header, "x-tenant"); /* field names are stored lowercase */
    assert_int_equal(cfg.tenants.max_tracked, 5);
    assert_int_equal(cfg.tenants.defaults.cls, ADMIT_BATCH);
    assert_int_equal(cfg.tenants.defaults.weight, 3);
    assert_int_equal(cfg.tenants.nentries, 1);
    assert_string_equal(cfg.tenants.entries[0].policy.name, "team-a");
    assert_int_equal(cfg.tenants.entries[0].policy.cls, ADMIT_CRITICAL);
    assert_int_equal(cfg.tenants.entries[0].policy.weight, 3); /* inherited from default */
    assert_int_equal(cfg.tenants.entries[0].nkeys, 1);

    assert_true(cfg.has_status);
    assert_int_equal(port_of(&(struct server_addr){.ss = cfg.status.listen}), 8090);
    assert_string_equal(cfg.status.db_path, "rampart-status.db");
    assert_string_equal(cfg.status.page_name, "rampart");
    assert_int_equal(cfg.status.refresh_us, US(2));
    assert_true(cfg.status.target > 0.98999 && cfg.status.target < 0.99001);
    assert_int_equal(cfg.status.latency_us, US(1));
    assert_int_equal(cfg.status.num_components, 1);
    assert_string_equal(cfg.status.components[0].routes[0], "/v1/chat/");
    config_free(&cfg);
    /* Freed and zeroed, the subsystem parts too. */
    assert_null(cfg.tenants.entries);
    assert_null(cfg.status.db_path);
    assert_false(cfg.has_status);
}

/* Each upstream's overload: is the global section with its own keys on
 * top; keys it does not give keep the global values, not the defaults. */
static void test_overload_override(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1:8080\n"
                               "upstreams:\n"
                               "  a:\n"
                               "    servers: [127.0.0.1:9001]\n"
                               "    overload:\n"
                               "      queue: {max_length: 50}\n"
                               "      classes: {batch: {max_wait: 1s}}\n"
                               "  b:\n"
                               "    servers: [127.0.0.1:9002]\n"
                               "  c:\n"
                               "    servers: [127.0.0.1:9003]\n"
                               "    overload: {limiter: {max_concurrency: 10}}\n"
                               "routes:\n"
                               "  - {prefix: /a/, upstream: a}\n"
                               "  - {prefix: /b/, upstream: b}\n"
                               "  - {prefix: /c/, upstream: c}\n"
                               /* After the upstreams in the file: order does not matter. */
                               "overload:\n"
                               "  limiter: {initial: 16, max: 200}\n"
                               "  queue: {max_length: 100, max_wait: 5s}\n";
    (void)state;
    assert_int_equal(config_load_string("o.yaml", yaml, &cfg, stderr), RP_OK);
    const struct admit_conf *g = &cfg.overload, *a = &cfg.upstreams[0].overload, *b = &cfg.upstreams[1].overload,
                            *c = &cfg.upstreams[2].overload;
    assert_int_equal(g->limiter.initial, 16);
    assert_int_equal(g->limiter.max, 200);
    assert_int_equal(g->queue.max_length, 100);
    assert_int_equal(g->queue.max_wait_us[ADMIT_BATCH], US(5));
    assert_int_equal(g->limiter.mode, ADMIT_MODE_ADAPTIVE);

    assert_int_equal(a->queue.max_length, 50);
    assert_int_equal(a->queue.max_wait_us[ADMIT_BATCH], US(1));
    assert_int_equal(a->queue.max_wait_us[ADMIT_CRITICAL], US(5));
    assert_int_equal(a->limiter.initial, 16);
    assert_int_equal(a->limiter.max, 200);

    assert_memory_equal(&b->limiter, &g->limiter, sizeof g->limiter);
    assert_memory_equal(&b->queue, &g->queue, sizeof g->queue);

    assert_int_equal(c->limiter.mode, ADMIT_MODE_STATIC);
    assert_int_equal(c->limiter.max_concurrency, 10);
    assert_int_equal(c->limiter.max, 200);
    assert_int_equal(c->queue.max_length, 100);
    config_free(&cfg);

    /* Without a global section an override starts from the defaults. */
    assert_int_equal(config_load_string("o2.yaml",
                                        "listen: 127.0.0.1:8080\n"
                                        "upstreams: {a: {servers: [127.0.0.1:9001], overload: {queue: {credit: 9}}}}\n",
                                        &cfg, stderr),
                     RP_OK);
    check_overload_default(&cfg.overload);
    assert_int_equal(cfg.upstreams[0].overload.queue.credit, 9);
    assert_int_equal(cfg.upstreams[0].overload.queue.max_length, 1024);
    config_free(&cfg);
}

/* Canary servers alone turn the canary on, with the default plan. */
static void test_canary_without_section(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1:8080\n"
                               "upstreams:\n"
                               "  chat:\n"
                               "    servers: [127.0.0.1:9001, {address: 127.0.0.1:9002, group: canary}]\n";
    (void)state;
    assert_int_equal(config_load_string("c.yaml", yaml, &cfg, stderr), RP_OK);
    assert_true(cfg.upstreams[0].has_canary);
    assert_int_equal(cfg.upstreams[0].canary.num_steps, 4);
    assert_int_equal(cfg.upstreams[0].canary.steps_bp[0], 500);
    config_free(&cfg);
}

/* ---- routing ------------------------------------------------------------- */

static void test_routes_first_match(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1:8080\n"
                               "upstreams:\n"
                               "  a: {servers: [127.0.0.1:9001]}\n"
                               "  b: {servers: [127.0.0.1:9002]}\n"
                               "  c: {servers: [127.0.0.1:9003]}\n"
                               "routes:\n"
                               "  - {prefix: /v1/chat/, upstream: b}\n"
                               "  - {prefix: /v1/, upstream: a}\n"
                               "  - {prefix: /, upstream: c}\n";
    (void)state;
    assert_int_equal(config_load_string("r.yaml", yaml, &cfg, stderr), RP_OK);
    assert_int_equal(cfg.num_routes, 3);
    assert_string_equal(cfg.routes[0].prefix, "/v1/chat/");
    assert_int_equal(route("/v1/chat/completions"), 1);
    assert_int_equal(route("/v1/embeddings"), 0);
    assert_int_equal(route("/v1"), 2);
    assert_int_equal(route("/metrics"), 2);
    assert_int_equal(route(""), -1);
    /* The length bounds the match: the path need not be NUL-terminated. */
    assert_int_equal(config_route(&cfg, "/v1/chat/completions", 4), 0);
    assert_int_equal(config_route(&cfg, "/v1/chat/completions", 3), 2);
    config_free(&cfg);

    /* First match in order, not longest prefix: with a shorter prefix
     * first (which the loader refuses as a dead route), it still wins. */
    static char p_short[] = "/v1/", p_long[] = "/v1/chat/";
    memset(&cfg, 0, sizeof cfg);
    cfg.num_upstreams = 2;
    cfg.num_routes = 2;
    cfg.routes[0].prefix = p_short;
    cfg.routes[0].upstream = 0;
    cfg.routes[1].prefix = p_long;
    cfg.routes[1].upstream = 1;
    assert_int_equal(route("/v1/chat/completions"), 0);
    memset(&cfg, 0, sizeof cfg);
    /* No upstream, no route: nothing matches. */
    assert_int_equal(route("/"), -1);
}

/* ---- errors -------------------------------------------------------------- */

#define BASE "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers: [127.0.0.1:9001]\n"
#define KEYS_TOP "listen, upstreams, routes, admin, limits, timeouts, log, overload, tenants, status, components"
#define KEYS_UP                                                                                                        \
    "servers, balance, connect_timeout, first_byte_timeout, idle_timeout, pool, overload, health_check, outlier, "     \
    "retry, canary"
/* An upstream with a stable and a canary server; its keys go at column 5. */
#define BASE_CANARY                                                                                                    \
    "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers:\n      - 127.0.0.1:9001\n"                              \
    "      - {address: 127.0.0.1:9002, group: canary}\n"

static const struct {
    const char *name;
    const char *yaml;
    const char *errors[8];
} error_cases[] = {
    {"unknown top-level key", BASE "foo: 1\n", {"t.yaml:5:1: unknown key \"foo\" (expected one of: " KEYS_TOP ")"}},
    {"unknown upstream key",
     BASE "    balanse: p2c\n",
     {"t.yaml:5:5: unknown key \"balanse\" (expected one of: " KEYS_UP ")"}},
    {"unknown section key",
     BASE "limits: {max_body: 1m, max_bodies: 2}\n",
     {"t.yaml:5:24: unknown key \"max_bodies\" (expected one of: max_header_bytes, max_headers, max_uri, "
      "max_body, max_connections, request_buffer)"}},
    {"bad listen address",
     "listen: 127.0.0.1\nupstreams: {chat: {servers: [127.0.0.1:9001]}}\n",
     {"t.yaml:1:9: bad address \"127.0.0.1\": port required"}},
    {"bad server address",
     "listen: 127.0.0.1:8080\nupstreams: {chat: {servers: [\"::1:9001\"]}}\n",
     {"t.yaml:2:30: bad address \"::1:9001\": IPv6 addresses need brackets, e.g. [::1]:8080"}},
    {"bad duration",
     BASE "    connect_timeout: 10x\n",
     {"t.yaml:5:22: bad duration \"10x\": expected a number followed by ms, s, m, h or d"}},
    {"duration out of range",
     BASE "timeouts: {send: 0s, drain: 2d}\n",
     {"t.yaml:5:18: duration \"0s\" is out of range (allowed 1ms..1d)",
      "t.yaml:5:29: duration \"2d\" is out of range (allowed 0s..1d)"}},
    {"route to a missing upstream",
     BASE "routes:\n  - prefix: /v1/\n    upstream: chta\n",
     {"t.yaml:7:15: unknown upstream \"chta\" (expected one of: chat)"}},
    {"several upstreams without routes",
     BASE "  embed:\n    servers: [127.0.0.1:9002]\n",
     {"t.yaml:2:1: several upstreams need routes"}},
    {"several upstreams with an empty route list",
     BASE "  embed:\n    servers: [127.0.0.1:9002]\nroutes: []\n",
     {"t.yaml:2:1: several upstreams need routes"}},
    {"yaml syntax error",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers: [127.0.0.1:9001\n",
     {"t.yaml:5:1: syntax error: did not find expected ',' or ']' (while parsing a flow sequence at 4:14)"}},
    {"yaml syntax error in a block",
     "listen: 127.0.0.1:8080\n upstreams: x\n",
     {"t.yaml:2:11: syntax error: mapping values are not allowed in this context"}},
    {"duplicate key",
     BASE "listen: 127.0.0.1:8081\n",
     {"t.yaml:5:1: duplicate key \"listen\" (first at line 1, column 1)"}},
    {"missing required sections",
     "admin:\n  listen: 127.0.0.1:9901\n",
     {"t.yaml:1:1: missing required key \"listen\"", "t.yaml:1:1: missing required key \"upstreams\""}},
    {"empty file", "", {"t.yaml:1:1: the configuration is empty"}},
    {"comments only", "# nothing\n", {"t.yaml:1:1: the configuration is empty"}},
    {"not a map", "- listen\n", {"t.yaml:1:1: expected a map, got a sequence"}},
    {"upstreams not a map",
     "listen: 127.0.0.1:8080\nupstreams: [a]\n",
     {"t.yaml:2:12: expected a map, got a sequence"}},
    {"no upstream", "listen: 127.0.0.1:8080\nupstreams: {}\n", {"t.yaml:2:1: at least one upstream is required"}},
    {"upstream without servers",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    balance: p2c\n",
     {"t.yaml:3:3: missing required key \"servers\""}},
    {"empty server list",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers: []\n",
     {"t.yaml:4:14: at least one server is required"}},
    {"bad upstream name",
     "listen: 127.0.0.1:8080\nupstreams:\n  \"chat v2\":\n    servers: [127.0.0.1:9001]\n",
     {"t.yaml:3:3: bad upstream name \"chat v2\": use 1 to 63 letters, digits, '_', '-' or '.'"}},
    {"server map errors",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers:\n"
     "      - {adress: 127.0.0.1:9001, weight: 0}\n"
     "      - {address: 127.0.0.1:9002, group: blue}\n",
     {"t.yaml:5:9: missing required key \"address\"",
      "t.yaml:5:10: unknown key \"adress\" (expected one of: address, weight, group)",
      "t.yaml:5:42: value \"0\" is out of range (allowed 1..1000)",
      "t.yaml:6:42: bad value \"blue\" (expected one of: stable, canary)"}},
    {"only canary servers",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers:\n      - {address: 127.0.0.1:9001, group: canary}\n",
     {"t.yaml:5:7: at least one server must be in group \"stable\""}},
    {"duplicate server",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers: [127.0.0.1:9001, \"127.0.0.1:9001\"]\n",
     {"t.yaml:4:31: duplicate server \"127.0.0.1:9001\" (also at line 4)"}},
    {"duplicate listen and admin clash",
     "listen: [127.0.0.1:8080, 127.0.0.1:8080]\nupstreams: {chat: {servers: [127.0.0.1:9001]}}\n"
     "admin: {listen: 127.0.0.1:8080}\n",
     {"t.yaml:1:26: duplicate listen address \"127.0.0.1:8080\"",
      "t.yaml:3:17: admin listen address \"127.0.0.1:8080\" is also a proxy listen address"}},
    {"admin without listen", BASE "admin: {token_file: t}\n", {"t.yaml:5:1: missing required key \"listen\""}},
    {"admin empty token_file",
     BASE "admin: {listen: 127.0.0.1:9901, token_file: \"\"}\n",
     {"t.yaml:5:45: token_file must not be empty"}},
    {"bad route prefix and dead route",
     BASE "routes:\n  - {prefix: v1, upstream: chat}\n  - {prefix: /v1/, upstream: chat}\n"
          "  - {prefix: /v1/chat, upstream: chat}\n  - {upstream: chat}\n",
     {"t.yaml:6:14: bad route prefix \"v1\": must start with '/', without spaces or control characters (max 1024 "
      "bytes)",
      "t.yaml:8:14: route \"/v1/chat\" is never used: route \"/v1/\" (line 7) matches first",
      "t.yaml:9:5: missing required key \"prefix\""}},
    {"routes not a list", BASE "routes: {prefix: /}\n", {"t.yaml:5:9: expected a sequence, got a map"}},
    {"bad sizes and numbers",
     BASE "limits:\n  max_header_bytes: 512\n  max_headers: lots\n  max_body: 1x\n",
     {"t.yaml:6:21: size \"512\" is out of range (allowed 1k..1m)",
      "t.yaml:7:16: bad number \"lots\": expected a non-negative integer",
      "t.yaml:8:13: bad size \"1x\": expected a number optionally followed by k, m or g"}},
    {"bad log", BASE "log: {access: \"\"}\n", {"t.yaml:5:15: access must be \"stdout\", \"off\" or a file path"}},
    {"section of the wrong kind",
     BASE "timeouts: 10s\nlog: [stdout]\n",
     {"t.yaml:5:11: expected a map, got \"10s\"", "t.yaml:6:6: expected a map, got a sequence"}},
    {"too many listen addresses",
     "listen: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:4, 127.0.0.1:5, 127.0.0.1:6, 127.0.0.1:7,"
     " 127.0.0.1:8, 127.0.0.1:9]\nupstreams: {chat: {servers: [127.0.0.1:9001]}}\n",
     {"t.yaml:1:114: too many listen addresses (max 8)"}},
    {"refused yaml features", BASE "timeouts: &t {send: 1s}\n", {"t.yaml:5:11: anchors are not supported (&t)"}},
    {"upstream name too long for the subsystems",
     "listen: 127.0.0.1:8080\nupstreams:\n"
     "  a234567890123456789012345678901234567890123456789012345678901234: {servers: [127.0.0.1:9001]}\n",
     {"t.yaml:3:3: bad upstream name \"a234567890123456789012345678901234567890123456789012345678901234\": use 1 to "
      "63 letters, digits, '_', '-' or '.'"}},

    /* Subsystem sections: each reports at the offending value. */
    {"bad overload value",
     BASE "overload:\n  limiter: {mode: fast}\n  queue: {max_length: 0}\n",
     {"t.yaml:6:19: bad value \"fast\" (expected one of: adaptive, static)",
      "t.yaml:7:23: value \"0\" is out of range (allowed 1..1000000)"}},
    {"overload of the wrong kind", BASE "overload: [1]\n", {"t.yaml:5:11: expected a map, got a sequence"}},
    {"bad per-upstream overload",
     BASE "    overload: {queue: {max_wait: 0s}, limits: {}}\n",
     {"t.yaml:5:34: duration \"0s\" is out of range (allowed 1ms..1h)",
      "t.yaml:5:39: unknown key \"limits\" (expected one of: limiter, queue, classes)"}},
    {"per-upstream overload checked against the global one",
     BASE "    overload: {limiter: {min: 50}}\noverload: {limiter: {max: 20}}\n",
     {"t.yaml:5:31: min (50) is above max (20)"}},
    {"per-upstream overload of the wrong kind", BASE "    overload: on\n", {"t.yaml:5:15: expected a map, got \"on\""}},
    {"bad tenants",
     BASE "tenants:\n  identify: cookie\n  list:\n    - {name: acme, key_sha256: abc}\n"
          "    - {name: other, address: 10.0.0.0/8}\n",
     {"t.yaml:6:13: bad value \"cookie\" (expected one of: api_key, header, address)",
      "t.yaml:8:32: key_sha256 must be 64 hex digits (the SHA-256 of the key)",
      "t.yaml:9:14: tenant name \"other\" is reserved"}},
    {"bad health_check",
     BASE "    health_check: {interval: 1s, timeout: 2s}\n",
     {"t.yaml:5:43: timeout must be shorter than interval"}},
    {"bad health_check path",
     BASE "    health_check:\n      path: health\n      fall: 0\n",
     {"t.yaml:6:13: path must start with '/'", "t.yaml:7:13: value \"0\" is out of range (allowed 1..100)"}},
    {"bad outlier",
     BASE "    outlier:\n      max_ejection_percent: 101\n      min_gap: lots\n",
     {"t.yaml:6:29: value \"101\" is out of range (allowed 0..100)",
      "t.yaml:7:16: bad number \"lots\": expected a decimal number"}},
    {"bad retry",
     BASE "    retry: {window: 2h, max_per_request: 11}\n",
     {"t.yaml:5:21: retry window must be between 1s and 1h",
      "t.yaml:5:42: value \"11\" is out of range (allowed 0..10)"}},
    {"bad canary", BASE_CANARY "    canary:\n      steps: [50, 25, 100]\n", {"t.yaml:8:19: steps must increase"}},
    {"canary section without canary servers",
     BASE "    canary: {interval: 10s}\n",
     {"t.yaml:5:5: canary needs at least one server in group \"canary\""}},
    {"canary server with a bad address: one error, not two",
     "listen: 127.0.0.1:8080\nupstreams:\n  chat:\n    servers:\n      - 127.0.0.1:9001\n"
     "      - {address: 127.0.0.1, group: canary}\n    canary: {}\n",
     {"t.yaml:6:19: bad address \"127.0.0.1\": port required"}},
    {"bad status",
     BASE "status:\n  refresh: 2m\n  live: {window: 1s}\n",
     {"t.yaml:5:1: missing required key \"listen\"", "t.yaml:6:12: duration \"2m\" is out of range (allowed 1s..1m)",
      "t.yaml:7:18: duration \"1s\" is out of range (allowed 10s..10m)"}},
    {"components without status",
     BASE "components:\n  - {name: Chat, upstreams: [chat]}\n",
     {"t.yaml:5:1: components: needs a status: section (with listen:) that publishes them"}},
    {"component naming an unknown upstream",
     BASE "status: {listen: 127.0.0.1:8090}\ncomponents:\n  - {name: Chat, upstreams: [chta]}\n",
     {"t.yaml:7:30: no upstream named \"chta\""}},
    {"status listen on a proxy address",
     BASE "status: {listen: 127.0.0.1:8080}\n",
     {"t.yaml:5:18: status listen address \"127.0.0.1:8080\" is also a proxy listen address"}},
    {"status listen on the admin address",
     BASE "admin: {listen: 127.0.0.1:9901}\nstatus: {listen: 127.0.0.1:9901}\n",
     {"t.yaml:6:18: status listen address \"127.0.0.1:9901\" is also the admin listen address"}},
    /* Everything the subsystems allocate is freed on a failed load (ASan). */
    {"failed load with allocated sections",
     BASE "    retry: {budget: 2}\n"
          "tenants:\n  list:\n    - {name: acme, address: [10.0.0.0/8]}\n"
          "status: {listen: 127.0.0.1:8090, db: s.db}\ncomponents:\n  - {name: Chat, upstreams: [chat]}\n",
     {"t.yaml:5:21: value \"2\" is out of range (allowed 0..1)"}},
};

/* Every case runs before the test fails, so one run shows every
 * mismatch (and the complete error list of each failing case). */
static void test_error_cases(void **state)
{
    size_t failed = 0;
    (void)state;
    for (size_t i = 0; i < RP_ARRAY_LEN(error_cases); i++) {
        const char *const *want = error_cases[i].errors;
        size_t n = 0;
        bool ok;
        struct conf_doc *doc = conf_load_string("t.yaml", error_cases[i].yaml, strlen(error_cases[i].yaml));
        int rc = config_load_doc(doc, &cfg);
        while (n < RP_ARRAY_LEN(error_cases[i].errors) && want[n])
            n++;
        ok = rc == RP_ERR && conf_error_count(doc) == n;
        for (size_t k = 0; ok && k < n; k++)
            ok = strcmp(conf_error_at(doc, k), want[k]) == 0;
        if (!ok) {
            print_error("case \"%s\": rc %d\n", error_cases[i].name, rc);
            for (size_t k = 0; k < n; k++)
                print_error("  want: %s\n", want[k]);
            for (size_t k = 0; k < conf_error_count(doc); k++)
                print_error("  got:  %s\n", conf_error_at(doc, k));
            failed++;
        }
        /* A failed load leaves nothing behind. */
        assert_null(cfg.path);
        assert_int_equal(cfg.num_upstreams, 0);
        assert_null(cfg.access_log);
        assert_null(cfg.tenants.entries);
        assert_int_equal(cfg.status.num_components, 0);
        assert_false(cfg.has_status);
        conf_free(doc);
    }
    if (failed)
        fail_msg("%zu of %zu error cases failed", failed, RP_ARRAY_LEN(error_cases));
}

/* Many mistakes, one run: every one is printed, in file order. */
static void test_all_errors_printed(void **state)
{
    static const char yaml[] = "listen: 127.0.0.1\n"
                               "upstreams:\n"
                               "  chat:\n"
                               "    servers: [127.0.0.1:9001]\n"
                               "    first_byte_timeout: 60\n"
                               "  embed:\n"
                               "    servers: [localhost]\n"
                               "routes:\n"
                               "  - {prefix: /v1/embeddings, upstream: embeddings}\n"
                               "  - {prefix: /v1/, upstream: chat}\n"
                               "timeouts: {client_idle: 1y}\n"
                               "logs: {access: off}\n";
    static const char want[] = "bad.yaml:1:9: bad address \"127.0.0.1\": port required\n"
                               "bad.yaml:5:25: bad duration \"60\": expected a number followed by ms, s, m, h or d\n"
                               "bad.yaml:7:15: bad address \"localhost\": port required\n"
                               "bad.yaml:9:40: unknown upstream \"embeddings\" (expected one of: chat, embed)\n"
                               "bad.yaml:11:25: bad duration \"1y\": expected a number followed by ms, s, m, h or d\n"
                               "bad.yaml:12:1: unknown key \"logs\" (expected one of: " KEYS_TOP ")\n";
    char *out = NULL;
    size_t outlen = 0;
    FILE *err = open_memstream(&out, &outlen);
    (void)state;
    assert_non_null(err);
    assert_int_equal(config_load_string("bad.yaml", yaml, &cfg, err), RP_ERR);
    fclose(err);
    assert_string_equal(out, want);
    free(out);
    assert_int_equal(cfg.num_upstreams, 0);
    /* NULL stream: nothing printed, same result. */
    assert_int_equal(config_load_string("bad.yaml", yaml, &cfg, NULL), RP_ERR);
}

static void test_missing_file(void **state)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *err = open_memstream(&out, &outlen);
    (void)state;
    assert_int_equal(config_load("/nonexistent/rampart.yaml", &cfg, err), RP_ERR);
    fclose(err);
    assert_string_equal(out, "/nonexistent/rampart.yaml:1:1: cannot open: No such file or directory\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_string),
        cmocka_unit_test(test_minimal_example_file),
        cmocka_unit_test(test_full_example_file),
        cmocka_unit_test(test_explicit_values),
        cmocka_unit_test(test_sections_explicit),
        cmocka_unit_test(test_overload_override),
        cmocka_unit_test(test_canary_without_section),
        cmocka_unit_test(test_routes_first_match),
        cmocka_unit_test(test_error_cases),
        cmocka_unit_test(test_all_errors_printed),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

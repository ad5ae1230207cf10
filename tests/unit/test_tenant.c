/*
 * test_tenant.c — tenant configuration, identification (API key, header,
 * address), the priority rules, the bounded table, and that no credential
 * is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include <openssl/sha.h>

#include "conf.h"
#include "tenant.h"
#include "util.h"

#define SEC 1000000ull

static const uint8_t salt_a[32] = {1, 2, 3};
static const uint8_t salt_b[32] = {9, 9, 9};

static void sha_hex(const char *s, char out[65])
{
    uint8_t d[32];
    SHA256((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int load(const char *yaml, struct tenant_conf *c, char *err, size_t errcap)
{
    struct conf_doc *doc = conf_load_string("t.yaml", yaml, strlen(yaml));
    tenant_conf_default(c);
    tenant_conf_parse(doc, conf_get(conf_root(doc), "tenants"), c);
    int n = (int)conf_error_count(doc);
    if (err && errcap) {
        err[0] = 0;
        if (n)
            rp_snprintf(err, errcap, "%s", conf_error_at(doc, 0));
    }
    conf_free(doc);
    return n;
}

static struct tenant_req bearer(const char *auth)
{
    static struct sockaddr_in sin;
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    struct tenant_req r = {0};
    r.authorization = auth;
    r.authorization_len = auth ? strlen(auth) : 0;
    r.addr = (const struct sockaddr *)&sin;
    r.addrlen = sizeof sin;
    return r;
}

static void test_conf_parse(void **state)
{
    (void)state;
    char hex[65], yaml[2048], err[512];
    sha_hex("sk-acme-1", hex);
    char path[] = "/tmp/rampart-keysXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *keys = "# keys of beta\nsk-beta-1\n\n  sk-beta-2  \n";
    assert_int_equal(write(fd, keys, strlen(keys)), (ssize_t)strlen(keys));
    close(fd);
    rp_snprintf(yaml, sizeof yaml,
                "tenants:\n"
                "  identify: api_key\n"
                "  max_tracked: 16\n"
                "  default: {class: batch, requests_per_second: 5, tokens_per_minute: 10000}\n"
                "  list:\n"
                "    - name: acme\n"
                "      key_sha256: %s\n"
                "      class: interactive\n"
                "      max_class: critical\n"
                "      allow_priority_header: true\n"
                "      weight: 3\n"
                "      requests_per_minute: 600\n"
                "    - name: beta\n"
                "      key_file: %s\n"
                "      address: [10.0.0.0/8, \"2001:db8::/32\"]\n",
                hex, path);
    struct tenant_conf c;
    assert_int_equal(load(yaml, &c, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(c.max_tracked, 16);
    assert_int_equal(c.defaults.cls, ADMIT_BATCH);
    assert_true(c.defaults.quota.rps == 5.0);
    assert_true(c.defaults.quota.req_burst == 5.0);
    assert_int_equal(c.defaults.quota.tpm, 10000);
    assert_int_equal(c.nentries, 2);
    assert_string_equal(c.entries[0].policy.name, "acme");
    assert_int_equal(c.entries[0].policy.cls, ADMIT_INTERACTIVE);
    assert_int_equal(c.entries[0].policy.max_class, ADMIT_CRITICAL);
    assert_int_equal(c.entries[0].policy.weight, 3);
    assert_true(c.entries[0].policy.quota.rps == 10.0);
    assert_true(c.entries[0].policy.quota.req_burst == 600.0);
    assert_int_equal(c.entries[0].policy.quota.tpm, 10000); /* inherited */
    assert_int_equal(c.entries[0].nkeys, 1);
    assert_int_equal(c.entries[1].nkeys, 2);
    assert_int_equal(c.entries[1].nnets, 2);
    /* max_class defaults to the class: no raising by header. */
    assert_int_equal(c.entries[1].policy.max_class, ADMIT_BATCH);
    tenant_conf_free(&c);
}

static void test_conf_errors(void **state)
{
    (void)state;
    struct tenant_conf c;
    char err[512];
    struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"tenants:\n  identify: cookie\n", "t.yaml:2:"},
        {"tenants:\n  identify: header\n", "tenants.header"},
        {"tenants:\n  list:\n    - name: a\n      key_sha256: abc\n", "t.yaml:4:"},
        {"tenants:\n  list:\n    - name: a\n      key_sha256: "
         "zz00000000000000000000000000000000000000000000000000000000000000\n",
         "64 hex"},
        {"tenants:\n  list:\n    - name: a\n      address: 10.0.0.0/99\n", "prefix"},
        {"tenants:\n  list:\n    - name: a\n      address: banana\n", "t.yaml:4:"},
        {"tenants:\n  list:\n    - name: a\n      class: batch\n      max_class: batch\n      address: 10.1.1.1\n"
         "    - name: a\n      address: 10.1.1.2\n",
         "duplicate"},
        {"tenants:\n  list:\n    - name: other\n      address: 10.1.1.1\n", "reserved"},
        {"tenants:\n  list:\n    - name: a\n", "matches nothing"},
        {"tenants:\n  list:\n    - address: 10.1.1.1\n", "name"},
        {"tenants:\n  identify: address\n  list:\n    - name: a\n      key_sha256: "
         "0000000000000000000000000000000000000000000000000000000000000000\n",
         "identify: api_key"},
        {"tenants:\n  default: {class: batch, max_class: batch, requests_per_second: 1, requests_per_minute: 60}\n",
         "not both"},
        {"tenants:\n  default: {class: batch, max_class: critical}\n", ""},
        {"tenants:\n  default: {class: interactive, max_class: batch}\n", "below"},
        {"tenants:\n  list:\n    - name: a\n      key_file: /nonexistent/keys\n", "cannot read"},
        {"tenants:\n  bogus: 1\n", "bogus"},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        int n = load(cases[i].yaml, &c, err, sizeof err);
        if (cases[i].want[0]) {
            if (n < 1 || !strstr(err, cases[i].want))
                fail_msg("case %zu: got %d errors, first: %s", i, n, err);
        } else {
            assert_int_equal(n, 0);
        }
        tenant_conf_free(&c);
    }
}

/* A key file that is a FIFO (or a directory) is refused at once; reading it
 * would block start-up (and rampart -t) for as long as nobody writes. */
static void test_key_file_must_be_regular(void **state)
{
    (void)state;
    char fifo[64], yaml[256], err[512];
    rp_snprintf(fifo, sizeof fifo, "/tmp/rp-test-fifo-%d", (int)getpid());
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *paths[] = {fifo, "/tmp"};
    for (size_t i = 0; i < RP_ARRAY_LEN(paths); i++) {
        rp_snprintf(yaml, sizeof yaml, "tenants:\n  list:\n    - name: a\n      key_file: %s\n", paths[i]);
        struct tenant_conf c;
        int n = load(yaml, &c, err, sizeof err);
        if (n < 1 || !strstr(err, "not a regular file"))
            fail_msg("%s: got %d errors, first: %s", paths[i], n, err);
        tenant_conf_free(&c);
    }
    unlink(fifo);
}

static void test_identify_key(void **state)
{
    (void)state;
    char hex[65], yaml[512];
    sha_hex("sk-acme-1", hex);
    rp_snprintf(yaml, sizeof yaml, "tenants:\n  list:\n    - name: acme\n      key_sha256: %s\n", hex);
    struct tenant_conf c;
    assert_int_equal(load(yaml, &c, NULL, 0), 0);
    struct tenant_table *tt = tenant_table_new(&c, salt_a);

    struct tenant_req r = bearer("Bearer sk-acme-1");
    struct tenant *acme = tenant_identify(tt, &r, 0);
    assert_true(acme->configured);
    assert_string_equal(acme->label, "acme");
    r = bearer("bearer   sk-acme-1  ");
    assert_ptr_equal(tenant_identify(tt, &r, 0), acme);
    assert_int_equal(acme->refs, 2);

    r = bearer("Bearer sk-unknown-7");
    struct tenant *u1 = tenant_identify(tt, &r, 0);
    assert_false(u1->configured);
    assert_int_equal(strlen(u1->label), 8);
    assert_memory_equal(u1->label, "t-", 2);
    assert_ptr_equal(tenant_identify(tt, &r, 0), u1);
    r = bearer("Bearer sk-unknown-8");
    struct tenant *u2 = tenant_identify(tt, &r, 0);
    assert_ptr_not_equal(u1, u2);
    assert_int_not_equal(tenant_flow_key(u1), tenant_flow_key(u2));

    /* The key is never kept: neither its text nor its plain SHA-256 is in
     * the tenant object. */
    uint8_t d[32];
    SHA256((const unsigned char *)"sk-unknown-7", 12, d);
    const uint8_t *mem = (const uint8_t *)u1;
    for (size_t i = 0; i + 12 <= sizeof *u1; i++)
        assert_false(memcmp(mem + i, "sk-unknown-7", 12) == 0);
    for (size_t i = 0; i + 8 <= sizeof *u1; i++)
        assert_false(memcmp(mem + i, d, 8) == 0);

    /* Not a bearer credential, or none: the client address. */
    r = bearer("Basic dXNlcjpwYXNz");
    struct tenant *a1 = tenant_identify(tt, &r, 0);
    r = bearer(NULL);
    assert_ptr_equal(tenant_identify(tt, &r, 0), a1);
    r = bearer("Bearer ");
    assert_ptr_equal(tenant_identify(tt, &r, 0), a1);
    r = bearer("Bearer two tokens");
    assert_ptr_equal(tenant_identify(tt, &r, 0), a1);

    /* A different salt (another process) gives different ids. */
    struct tenant_table *tt2 = tenant_table_new(&c, salt_b);
    r = bearer("Bearer sk-unknown-7");
    struct tenant *v1 = tenant_identify(tt2, &r, 0);
    assert_string_not_equal(v1->label, u1->label);
    tenant_table_free(tt2);

    /* A random salt works too. */
    struct tenant_table *tt3 = tenant_table_new(&c, NULL);
    assert_non_null(tenant_identify(tt3, &r, 0));
    tenant_table_free(tt3);

    tenant_table_free(tt);
    tenant_conf_free(&c);
}

static void test_identify_header_and_address(void **state)
{
    (void)state;
    struct tenant_conf c;
    assert_int_equal(load("tenants:\n  identify: header\n  header: X-Tenant\n  list:\n"
                          "    - name: blue\n      header_value: blue-team\n"
                          "    - name: lab\n      address: [192.0.2.0/24]\n",
                          &c, NULL, 0),
                     0);
    assert_string_equal(c.header, "x-tenant");
    struct tenant_table *tt = tenant_table_new(&c, salt_a);
    assert_string_equal(tenant_ident_header(tt), "x-tenant");
    struct tenant_req r = bearer(NULL);
    r.header = "blue-team";
    r.header_len = 9;
    assert_string_equal(tenant_identify(tt, &r, 0)->label, "blue");
    r.header = "green";
    r.header_len = 5;
    struct tenant *g = tenant_identify(tt, &r, 0);
    assert_false(g->configured);
    /* No header: the address, which matches the lab's network. */
    r.header = NULL;
    r.header_len = 0;
    assert_string_equal(tenant_identify(tt, &r, 0)->label, "lab");
    struct sockaddr_in6 s6 = {0};
    s6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.0.2.200", &s6.sin6_addr);
    r.addr = (const struct sockaddr *)&s6;
    r.addrlen = sizeof s6;
    assert_string_equal(tenant_identify(tt, &r, 0)->label, "lab");
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    assert_false(tenant_identify(tt, &r, 0)->configured);
    tenant_table_free(tt);
    tenant_conf_free(&c);
}

static void test_priority(void **state)
{
    (void)state;
    struct tenant_conf c;
    assert_int_equal(load("tenants:\n  list:\n"
                          "    - name: vip\n      address: 10.0.0.1\n      class: interactive\n"
                          "      max_class: critical\n      allow_priority_header: true\n"
                          "    - name: std\n      address: 10.0.0.2\n      class: interactive\n"
                          "      allow_priority_header: true\n"
                          "    - name: plain\n      address: 10.0.0.3\n      class: batch\n",
                          &c, NULL, 0),
                     0);
    struct tenant vip = {.policy = &c.entries[0].policy};
    struct tenant std = {.policy = &c.entries[1].policy};
    struct tenant plain = {.policy = &c.entries[2].policy};
    assert_int_equal(tenant_class(&vip, NULL, 0), ADMIT_INTERACTIVE);
    assert_int_equal(tenant_class(&vip, "critical", 8), ADMIT_CRITICAL);
    assert_int_equal(tenant_class(&vip, "batch", 5), ADMIT_BATCH);
    assert_int_equal(tenant_class(&vip, "urgent", 6), ADMIT_INTERACTIVE);
    /* Allowed, but never above max_class (= its class here). */
    assert_int_equal(tenant_class(&std, "critical", 8), ADMIT_INTERACTIVE);
    assert_int_equal(tenant_class(&std, "batch", 5), ADMIT_BATCH);
    /* Not allowed: the header is ignored. */
    assert_int_equal(tenant_class(&plain, "critical", 8), ADMIT_BATCH);
    assert_int_equal(tenant_class(&plain, "interactive", 11), ADMIT_BATCH);
    tenant_conf_free(&c);
}

static void test_bounded_table(void **state)
{
    (void)state;
    struct tenant_conf c;
    assert_int_equal(load("tenants:\n  max_tracked: 2\n  default: {tokens_per_minute: 600}\n", &c, NULL, 0), 0);
    struct tenant_table *tt = tenant_table_new(&c, salt_a);
    struct tenant_req r1 = bearer("Bearer k1"), r2 = bearer("Bearer k2"), r3 = bearer("Bearer k3");
    struct tenant *t1 = tenant_identify(tt, &r1, 0);
    struct tenant *t2 = tenant_identify(tt, &r2, 0);
    assert_int_equal(tenant_tracked(tt), 2);
    /* Both slots held by live requests: the newcomer shares "other". */
    struct tenant *t3 = tenant_identify(tt, &r3, 0);
    assert_true(t3->other);
    assert_string_equal(t3->label, "other");
    tenant_release(tt, t3, 0);

    /* t1 goes idle with a spent budget: not recycled until refilled. */
    struct quota_ticket qt;
    assert_int_equal(quota_reserve(&t1->quota, &t1->policy->quota, 600, 0, &qt, NULL), QUOTA_OK);
    quota_settle(&t1->quota, &t1->policy->quota, &qt, 600, 0);
    tenant_release(tt, t1, 0);
    assert_true(tenant_identify(tt, &r3, 1 * SEC)->other);
    /* A minute later t1's budget is full again: its slot is reused. */
    struct tenant *t3b = tenant_identify(tt, &r3, 61 * SEC);
    assert_false(t3b->other);
    assert_ptr_equal(t3b, t1);
    assert_int_equal(tenant_tracked(tt), 2);
    /* k1 comes back as a new tenant (t2 is still held: "other"). */
    assert_true(tenant_identify(tt, &r1, 62 * SEC)->other);
    tenant_release(tt, t2, 63 * SEC);
    struct tenant *t1b = tenant_identify(tt, &r1, 64 * SEC);
    assert_ptr_equal(t1b, t2);
    assert_int_equal(t1b->refs, 1);

    struct sbuf out;
    sbuf_init(&out, 0);
    tenant_metrics_render(&out, tt);
    assert_non_null(strstr(out.data, "rampart_tenant_requests_total{tenant=\"other\"}"));
    assert_non_null(strstr(out.data, "rampart_tenant_refused_total{tenant=\"other\",reason=\"tokens\"} 0"));
    assert_non_null(strstr(out.data, "rampart_tenants_tracked 2"));
    sbuf_free(&out);
    tenant_table_free(tt);
    tenant_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_parse),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_key_file_must_be_regular),
        cmocka_unit_test(test_identify_key),
        cmocka_unit_test(test_identify_header_and_address),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_bounded_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_metrics.c — histogram bucketing at the bounds, quantile estimates,
 * the exact Prometheus text of a rendered histogram and a render pass, and
 * the family rules of a page: HELP and TYPE once per family, a family split
 * across the page detected, label values escaped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

static void test_bounds_table(void **state)
{
    (void)state;
    static const double want[METRICS_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10,   60};
    for (size_t i = 0; i < METRICS_HIST_BUCKETS; i++)
        assert_true(metrics_hist_bounds_s[i] == want[i]);
}

static void test_observe_buckets(void **state)
{
    (void)state;
    struct metrics_hist h = {0};
    metrics_hist_observe(&h, 0);        /* bucket 0 */
    metrics_hist_observe(&h, 1000);     /* exactly 1ms: le="0.001" is inclusive */
    metrics_hist_observe(&h, 1001);     /* bucket 1 */
    metrics_hist_observe(&h, 60000000); /* exactly 60s: last finite bucket */
    metrics_hist_observe(&h, 60000001); /* +Inf */
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.counts[METRICS_HIST_BUCKETS - 1], 1);
    assert_int_equal(h.counts[METRICS_HIST_BUCKETS], 1);
    assert_int_equal(h.count, 5);
    assert_int_equal(h.sum_us, 0 + 1000 + 1001 + 60000000 + 60000001);
}

static void test_quantile(void **state)
{
    (void)state;
    struct metrics_hist h = {0};
    assert_int_equal(metrics_hist_quantile(&h, 0.5), 0);

    for (int i = 0; i < 100; i++)
        metrics_hist_observe(&h, 1500);
    /* All in (1ms, 2.5ms]: linear inside the bucket. */
    assert_int_equal(metrics_hist_quantile(&h, 0.5), 1750);
    assert_int_equal(metrics_hist_quantile(&h, 1.0), 2500);
    assert_int_equal(metrics_hist_quantile(&h, 0.0), 1000);
    assert_int_equal(metrics_hist_quantile(&h, 7.0), 2500); /* clamped */
    assert_int_equal(metrics_hist_quantile(&h, -1.0), 1000);
    assert_int_equal(metrics_hist_quantile(&h, NAN), 1000);

    struct metrics_hist m = {0};
    for (int i = 0; i < 50; i++)
        metrics_hist_observe(&m, 500); /* (0, 1ms] */
    for (int i = 0; i < 50; i++)
        metrics_hist_observe(&m, 750000); /* (0.5s, 1s] */
    assert_int_equal(metrics_hist_quantile(&m, 0.5), 1000);
    assert_int_equal(metrics_hist_quantile(&m, 0.75), 750000);
    assert_int_equal(metrics_hist_quantile(&m, 0.99), 990000);

    struct metrics_hist inf = {0};
    metrics_hist_observe(&inf, 100000000);
    assert_int_equal(metrics_hist_quantile(&inf, 0.5), 60000000);
}

static const char *hist_text = "rp_test_seconds_bucket{up=\"a\",le=\"0.001\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.0025\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.005\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.01\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.025\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.05\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.1\"} 1\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.25\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"0.5\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"1\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"2.5\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"5\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"10\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"60\"} 2\n"
                               "rp_test_seconds_bucket{up=\"a\",le=\"+Inf\"} 3\n"
                               "rp_test_seconds_sum{up=\"a\"} 61.200500\n"
                               "rp_test_seconds_count{up=\"a\"} 3\n";

static void test_hist_render_exact(void **state)
{
    (void)state;
    struct metrics_hist h = {0};
    metrics_hist_observe(&h, 500);
    metrics_hist_observe(&h, 200000);
    metrics_hist_observe(&h, 61000000);
    struct sbuf out;
    sbuf_init(&out, 0);
    metrics_hist_render(&out, "rp_test_seconds", "up=\"a\"", &h);
    assert_string_equal(out.data, hist_text);
    sbuf_free(&out);
}

static void test_hist_render_no_labels(void **state)
{
    (void)state;
    struct metrics_hist h = {0};
    struct sbuf out;
    sbuf_init(&out, 0);
    metrics_hist_render(&out, "x", "", &h);
    /* Samples only: the family's lines belong to metrics_family(). */
    assert_null(strstr(out.data, "# "));
    assert_non_null(strstr(out.data, "x_bucket{le=\"0.001\"} 0\n"));
    assert_non_null(strstr(out.data, "\nx_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(out.data, "\nx_sum 0.000000\nx_count 0\n"));
    sbuf_free(&out);
}

struct two {
    struct metrics_hist a, b;
};

/* Two label sets of one histogram family plus a counter family rendered
 * twice: each TYPE line must appear once. */
static void render_hists(struct sbuf *out, void *arg)
{
    struct two *t = arg;
    metrics_family(out, "rp_lat_seconds", "histogram", "Latency.");
    metrics_hist_render(out, "rp_lat_seconds", "s=\"a\"", &t->a);
    metrics_hist_render(out, "rp_lat_seconds", "s=\"b\"", &t->b);
}

static void render_counters(struct sbuf *out, void *arg)
{
    (void)arg;
    metrics_family(out, "rp_requests_total", "counter", "Requests seen.");
    metrics_sample_u64(out, "rp_requests_total", "code=\"200\"", 7);
    metrics_family(out, "rp_requests_total", "counter", "Requests seen.");
    metrics_sample_u64(out, "rp_requests_total", "code=\"500\"", 1);
    metrics_family(out, "rp_temp", "gauge", "Temperature.");
    metrics_sample_i64(out, "rp_temp", "", -3);
    metrics_family(out, "rp_ratio", "gauge", "Ratio.");
    metrics_sample_f64(out, "rp_ratio", "k=\"half\"", 0.5);
    metrics_sample_f64(out, "rp_ratio", "k=\"nan\"", NAN);
    metrics_sample_f64(out, "rp_ratio", "k=\"inf\"", INFINITY);
    metrics_sample_f64(out, "rp_ratio", "k=\"big\"", 1732661234.567);
}

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_render_pass(void **state)
{
    (void)state;
    struct two t = {0};
    metrics_hist_observe(&t.a, 3000);
    metrics_clear();
    metrics_register(render_hists, &t);
    metrics_register(render_counters, NULL);

    for (int pass = 0; pass < 2; pass++) { /* the dedup set resets per pass */
        struct sbuf out;
        sbuf_init(&out, 0);
        assert_int_equal(metrics_render(&out), 0);
        assert_int_equal(count_occurrences(out.data, "# HELP rp_lat_seconds Latency.\n"
                                                     "# TYPE rp_lat_seconds histogram\n"),
                         1);
        assert_int_equal(count_occurrences(out.data, "# TYPE rp_lat_seconds histogram\n"), 1);
        assert_int_equal(count_occurrences(out.data, "# TYPE rp_requests_total counter\n"), 1);
        assert_int_equal(count_occurrences(out.data, "# HELP rp_requests_total Requests seen.\n"), 1);
        assert_non_null(strstr(out.data, "rp_lat_seconds_bucket{s=\"a\",le=\"0.005\"} 1\n"));
        assert_non_null(strstr(out.data, "rp_lat_seconds_bucket{s=\"b\",le=\"0.005\"} 0\n"));
        assert_non_null(strstr(out.data, "rp_requests_total{code=\"200\"} 7\n"
                                         "rp_requests_total{code=\"500\"} 1\n"));
        assert_non_null(strstr(out.data, "# HELP rp_temp Temperature.\n# TYPE rp_temp gauge\nrp_temp -3\n"));
        assert_non_null(strstr(out.data, "rp_ratio{k=\"half\"} 0.5\n"
                                         "rp_ratio{k=\"nan\"} NaN\n"
                                         "rp_ratio{k=\"inf\"} +Inf\n"
                                         "rp_ratio{k=\"big\"} 1732661234.567\n"));
        sbuf_free(&out);
    }
    metrics_clear();
    struct sbuf empty;
    sbuf_init(&empty, 0);
    metrics_render(&empty);
    assert_int_equal(empty.len, 0);
    sbuf_free(&empty);
}

/* Two renderers using one family name, and one renderer reopening a family
 * after another: the lines are written once and both mistakes counted. */
static void render_x(struct sbuf *out, void *arg)
{
    (void)arg;
    metrics_family(out, "rp_x", "counter", "X.");
    metrics_sample_u64(out, "rp_x", "a=\"1\"", 1);
}

static void render_y_then_x(struct sbuf *out, void *arg)
{
    (void)arg;
    metrics_family(out, "rp_y", "gauge", "Y.");
    metrics_sample_u64(out, "rp_y", "", 2);
    metrics_family(out, "rp_y", "gauge", "Y."); /* still open: fine */
    metrics_family(out, "rp_x", "counter", "X.");
    metrics_sample_u64(out, "rp_x", "a=\"2\"", 3);
}

static void render_z_y_z(struct sbuf *out, void *arg)
{
    (void)arg;
    metrics_family(out, "rp_z", "gauge", "Z.");
    metrics_family(out, "rp_w", "gauge", "W.");
    metrics_family(out, "rp_z", "gauge", "Z.");
}

static void test_split_family(void **state)
{
    (void)state;
    metrics_clear();
    metrics_register(render_x, NULL);
    metrics_register(render_y_then_x, NULL);
    metrics_register(render_z_y_z, NULL);
    struct sbuf out;
    sbuf_init(&out, 0);
    assert_int_equal(metrics_render(&out), 2);
    assert_int_equal(count_occurrences(out.data, "# TYPE rp_x counter\n"), 1);
    assert_int_equal(count_occurrences(out.data, "# HELP rp_x X.\n"), 1);
    assert_int_equal(count_occurrences(out.data, "# TYPE rp_y gauge\n"), 1);
    assert_int_equal(count_occurrences(out.data, "# TYPE rp_z gauge\n"), 1);
    sbuf_free(&out);

    /* A correct page afterwards: the count belongs to one pass. */
    metrics_clear();
    metrics_register(render_x, NULL);
    sbuf_init(&out, 0);
    assert_int_equal(metrics_render(&out), 0);
    sbuf_free(&out);
    metrics_clear();
}

static void test_family_help(void **state)
{
    (void)state;
    struct sbuf out;
    sbuf_init(&out, 0);
    /* Outside a pass the lines are always written; HELP escapes only
     * backslash and newline. */
    metrics_family(&out, "rp_h", "gauge", "Path C:\\x, \"quoted\"\nsecond line.");
    assert_string_equal(out.data, "# HELP rp_h Path C:\\\\x, \"quoted\"\\nsecond line.\n# TYPE rp_h gauge\n");
    sbuf_reset(&out);
    metrics_family(&out, "rp_h", "gauge", "Again.");
    assert_string_equal(out.data, "# HELP rp_h Again.\n# TYPE rp_h gauge\n");
    sbuf_free(&out);
}

static void test_label_builder(void **state)
{
    (void)state;
    struct sbuf lb;
    sbuf_init(&lb, 0);
    metrics_label(&lb, "upstream", "chat");
    assert_string_equal(lb.data, "upstream=\"chat\"");
    metrics_label(&lb, "server", "a\"b\\c\nd");
    assert_string_equal(lb.data, "upstream=\"chat\",server=\"a\\\"b\\\\c\\nd\"");
    sbuf_reset(&lb);
    metrics_label(&lb, "k", "");
    assert_string_equal(lb.data, "k=\"\"");
    struct sbuf out;
    sbuf_init(&out, 0);
    metrics_sample_u64(&out, "rp_s", lb.data, 5);
    assert_string_equal(out.data, "rp_s{k=\"\"} 5\n");
    sbuf_free(&out);
    sbuf_free(&lb);
}

static void test_label_escape(void **state)
{
    (void)state;
    struct sbuf out;
    sbuf_init(&out, 0);
    metrics_label_escape(&out, "a\"b\\c\nd");
    assert_string_equal(out.data, "a\\\"b\\\\c\\nd");
    sbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_table),
        cmocka_unit_test(test_observe_buckets),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_hist_render_exact),
        cmocka_unit_test(test_hist_render_no_labels),
        cmocka_unit_test(test_render_pass),
        cmocka_unit_test(test_split_family),
        cmocka_unit_test(test_family_help),
        cmocka_unit_test(test_label_builder),
        cmocka_unit_test(test_label_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

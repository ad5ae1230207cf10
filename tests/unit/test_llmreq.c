/*
 * test_llmreq.c — request parsing (valid, invalid, missing fields) and the
 * response usage scanner, fed whole, byte by byte and split at every
 * position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "llmreq.h"
#include "util.h"

/* ---- requests ---------------------------------------------------------------- */

static void test_parse_valid(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"llama-3\",\"max_tokens\":256,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"n\":2,"
                       "\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9llo\"},"
                       "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x/y.png\"}}]}]}";
    struct llmreq_info in;
    assert_int_equal(llmreq_parse(body, strlen(body), &in), RP_OK);
    assert_true(in.parsed);
    assert_int_equal(in.max_tokens, 256);
    assert_int_equal(in.n, 2);
    assert_true(in.stream);
    assert_true(in.include_usage);
    assert_string_equal(in.model, "llama-3");
    assert_int_equal(in.messages, 2);
    /* "You are terse." (14) + "héllo" (5 code points) */
    assert_int_equal(in.prompt_chars, 19);
    /* ceil(19/4)=5 + image 85 + 2 messages * 4 + 3 */
    assert_int_equal(in.prompt_tokens, 5 + 85 + 8 + 3);

    /* max_completion_tokens wins over max_tokens. */
    const char *b2 = "{\"max_tokens\":10,\"max_completion_tokens\":20,\"messages\":[]}";
    assert_int_equal(llmreq_parse(b2, strlen(b2), &in), RP_OK);
    assert_int_equal(in.max_tokens, 20);

    /* Legacy completions prompt. */
    const char *b3 = "{\"prompt\":[\"abcd\",\"efgh\"],\"max_tokens\":null}";
    assert_int_equal(llmreq_parse(b3, strlen(b3), &in), RP_OK);
    assert_int_equal(in.prompt_chars, 8);
    assert_int_equal(in.max_tokens, -1);
}

static void test_parse_missing(void **state)
{
    (void)state;
    struct llmreq_info in;
    assert_int_equal(llmreq_parse("{}", 2, &in), RP_OK);
    assert_int_equal(in.max_tokens, -1);
    assert_int_equal(in.n, 1);
    assert_false(in.stream);
    assert_false(in.include_usage);
    assert_string_equal(in.model, "");
    assert_int_equal(in.prompt_tokens, LLMREQ_TOKENS_PER_REPLY);
    const char *b = "{\"messages\":[{\"role\":\"user\",\"content\":null}],\"stream\":null,\"stream_options\":null}";
    assert_int_equal(llmreq_parse(b, strlen(b), &in), RP_OK);
    assert_int_equal(in.messages, 1);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    struct {
        const char *body;
        const char *param;
    } cases[] = {
        {"", NULL},
        {"not json", NULL},
        {"[1,2]", NULL},
        {"{\"a\":1,\"a\":2}", NULL},
        {"{\"max_tokens\":\"10\"}", "max_tokens"},
        {"{\"max_tokens\":-1}", "max_tokens"},
        {"{\"max_tokens\":1.5}", "max_tokens"},
        {"{\"max_completion_tokens\":true}", "max_completion_tokens"},
        {"{\"n\":0}", "n"},
        {"{\"n\":1000}", "n"},
        {"{\"stream\":\"yes\"}", "stream"},
        {"{\"stream_options\":[]}", "stream_options"},
        {"{\"stream_options\":{\"include_usage\":1}}", "stream_options"},
        {"{\"model\":5}", "model"},
        {"{\"messages\":{}}", "messages"},
        {"{\"messages\":[1]}", "messages"},
        {"{\"messages\":[{\"content\":5}]}", "messages"},
        {"{\"messages\":[{\"content\":[\"x\"]}]}", "messages"},
    };
    for (size_t i = 0; i < RP_ARRAY_LEN(cases); i++) {
        struct llmreq_info in;
        assert_int_equal(llmreq_parse(cases[i].body, strlen(cases[i].body), &in), RP_ERR);
        assert_non_null(in.error);
        if (cases[i].param)
            assert_string_equal(in.error_param, cases[i].param);
        else
            assert_null(in.error_param);
    }
}

static void test_parse_too_large(void **state)
{
    (void)state;
    size_t n = LLMREQ_MAX_PARSE + 1;
    char *b = malloc(n);
    assert_non_null(b);
    memset(b, 'x', n);
    struct llmreq_info in;
    assert_int_equal(llmreq_parse(b, n, &in), RP_OK);
    assert_false(in.parsed);
    assert_int_equal(in.max_tokens, -1);
    assert_true(in.prompt_tokens >= n / 4);
    free(b);
}

/* ---- scanner ------------------------------------------------------------------- */

struct scan_expect {
    bool has_usage;
    int64_t prompt, completion;
    uint64_t data_events, content_events;
    bool done;
};

static void check_scan(const struct llmreq_scan *s, const struct scan_expect *e)
{
    assert_int_equal(s->has_usage, e->has_usage);
    assert_int_equal(s->prompt_tokens, e->prompt);
    assert_int_equal(s->completion_tokens, e->completion);
    assert_int_equal(s->data_events, e->data_events);
    assert_int_equal(s->content_events, e->content_events);
    assert_int_equal(s->done, e->done);
}

/* Whole, byte by byte, and in two pieces at every split point. */
static void scan_all_ways(const char *text, bool sse, const struct scan_expect *e)
{
    size_t len = strlen(text);
    struct llmreq_scan s;
    llmreq_scan_init(&s, sse);
    llmreq_scan_feed(&s, text, len);
    llmreq_scan_finish(&s);
    check_scan(&s, e);
    llmreq_scan_init(&s, sse);
    for (size_t i = 0; i < len; i++)
        llmreq_scan_feed(&s, text + i, 1);
    llmreq_scan_finish(&s);
    check_scan(&s, e);
    for (size_t cut = 0; cut <= len; cut++) {
        llmreq_scan_init(&s, sse);
        llmreq_scan_feed(&s, text, cut);
        llmreq_scan_feed(&s, text + cut, len - cut);
        llmreq_scan_finish(&s);
        check_scan(&s, e);
    }
}

static void test_scan_json_body(void **state)
{
    (void)state;
    const char *body = "{\n  \"id\": \"chatcmpl-1\", \"object\": \"chat.completion\",\n"
                       "  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", "
                       "\"content\": \"The \\\"usage\\\": {\\\"completion_tokens\\\": 999} is text.\"},"
                       " \"usage\": {\"completion_tokens\": 777}}],\n"
                       "  \"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 34, \"total_tokens\": 46,"
                       " \"completion_tokens_details\": {\"reasoning_tokens\": 5}}\n}\n";
    struct scan_expect e = {true, 12, 34, 0, 0, false};
    scan_all_ways(body, false, &e);
    struct llmreq_scan s;
    llmreq_scan_init(&s, false);
    llmreq_scan_feed(&s, body, strlen(body));
    llmreq_scan_finish(&s);
    assert_int_equal(s.total_tokens, 46);
    uint64_t p, c;
    assert_true(llmreq_scan_usage(&s, 99, &p, &c));
    assert_int_equal(p, 12);
    assert_int_equal(c, 34);

    /* No usage: the estimate from content characters. */
    const char *nousage = "{\"choices\":[{\"message\":{\"content\":\"abcdefgh\"}}],\"usage\":null}";
    struct scan_expect e2 = {false, -1, -1, 0, 0, false};
    scan_all_ways(nousage, false, &e2);
    llmreq_scan_init(&s, false);
    llmreq_scan_feed(&s, nousage, strlen(nousage));
    llmreq_scan_finish(&s);
    assert_false(llmreq_scan_usage(&s, 99, &p, &c));
    assert_int_equal(p, 99);
    assert_int_equal(c, 2);

    /* A number at the very end of the body (no closing brace yet). */
    const char *cut = "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":123";
    struct scan_expect e3 = {true, 5, 123, 0, 0, false};
    scan_all_ways(cut, false, &e3);
}

static const char *sse_stream =
    ": keep-alive\n"
    "event: message\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo \\\"usage\\\":{\\\"prompt_tokens\\\":1}\"}}],"
    "\"usage\":null}\n"
    "\n"
    "id: 7\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":2,"
    "\"total_tokens\":23}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static void test_scan_sse(void **state)
{
    (void)state;
    struct scan_expect e = {true, 21, 2, 5, 2, true};
    scan_all_ways(sse_stream, true, &e);

    /* The same with CRLF line ends (and a lone CR in one place). */
    char crlf[4096];
    size_t n = 0;
    for (const char *p = sse_stream; *p && n + 2 < sizeof crlf; p++) {
        if (*p == '\n') {
            crlf[n++] = '\r';
            if (p != sse_stream + 12) /* after ": keep-alive": a lone CR */
                crlf[n++] = '\n';
        } else {
            crlf[n++] = *p;
        }
    }
    crlf[n] = '\0';
    scan_all_ways(crlf, true, &e);
}

static void test_scan_sse_no_usage(void **state)
{
    (void)state;
    const char *s = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
                    "data:{\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
                    "data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\n\n"
                    "data: {\"choices\":[{\"text\":\"legacy\"}]}\n\n"
                    "data: [DONE]\n\n";
    struct scan_expect e = {false, -1, -1, 4, 4, true};
    scan_all_ways(s, true, &e);
    struct llmreq_scan sc;
    llmreq_scan_init(&sc, true);
    llmreq_scan_feed(&sc, s, strlen(s));
    llmreq_scan_finish(&sc);
    uint64_t p, c;
    assert_false(llmreq_scan_usage(&sc, 40, &p, &c));
    assert_int_equal(p, 40);
    assert_int_equal(c, 4);

    /* Multi-line data joins with a newline; a last event without its
     * blank line still counts at finish. */
    const char *ml = "data: {\"usage\":\n"
                     "data: {\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"
                     "data: {\"choices\":[{\"delta\":{\"content\":\"z\"}}]}";
    struct scan_expect e2 = {true, 3, 4, 2, 1, false};
    scan_all_ways(ml, true, &e2);

    /* Non-data fields and comments never reach the JSON lexer. */
    const char *odd = "event: {\"usage\":{\"completion_tokens\":9}}\n"
                      ": {\"usage\":{\"completion_tokens\":9}}\n"
                      "datax: {\"usage\":{\"completion_tokens\":9}}\n"
                      "\n";
    struct scan_expect e3 = {false, -1, -1, 0, 0, false};
    scan_all_ways(odd, true, &e3);
}

/* Random garbage never crashes or overflows (bounded state). */
static void test_scan_garbage(void **state)
{
    (void)state;
    rp_rand_seed(99);
    char buf[4096];
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            static const char alpha[] = "{}[]\":,\\u0123456789 \n\rdata:usage_tokens";
            buf[i] = alpha[rp_rand64() % (sizeof alpha - 1)];
        }
        struct llmreq_scan s;
        llmreq_scan_init(&s, round & 1);
        llmreq_scan_feed(&s, buf, sizeof buf);
        llmreq_scan_finish(&s);
        uint64_t p, c;
        llmreq_scan_usage(&s, 1, &p, &c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),       cmocka_unit_test(test_parse_missing),
        cmocka_unit_test(test_parse_invalid),     cmocka_unit_test(test_parse_too_large),
        cmocka_unit_test(test_scan_json_body),    cmocka_unit_test(test_scan_sse),
        cmocka_unit_test(test_scan_sse_no_usage), cmocka_unit_test(test_scan_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

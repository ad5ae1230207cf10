/*
 * llmreq.c — request fields and prompt estimate (jansson), and the
 * incremental usage scanner for responses.  See llmreq.h.
 *
 * The scanner is two small state machines stacked: SSE line framing
 * (fields, "data:" lines, blank line = end of event) feeding a JSON lexer
 * that only tracks what it needs: nesting depth, whether it is inside a
 * string (and escapes), the last short string (to recognise keys) and the
 * digits of a number.  Everything is byte-at-a-time with no lookahead, which
 * is what makes any split of the input give the same answer.
 */
#include "llmreq.h"

#include <jansson.h>
#include <string.h>

#include "util.h"

/* ---- requests ------------------------------------------------------------------ */

static uint64_t utf8_chars(const char *s, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static int fail(struct llmreq_info *out, const char *msg, const char *param)
{
    out->error = msg;
    out->error_param = param;
    return RP_ERR;
}

/* A message's content: a string, or an array of parts. */
static int content_size(json_t *content, struct llmreq_info *out, uint64_t *extra_tokens)
{
    if (!content || json_is_null(content))
        return RP_OK;
    if (json_is_string(content)) {
        out->prompt_chars += utf8_chars(json_string_value(content), json_string_length(content));
        return RP_OK;
    }
    if (!json_is_array(content))
        return fail(out, "message content must be a string or an array of parts", "messages");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        if (!json_is_object(part))
            return fail(out, "message content parts must be objects", "messages");
        json_t *text = json_object_get(part, "text");
        if (json_is_string(text))
            out->prompt_chars += utf8_chars(json_string_value(text), json_string_length(text));
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type && (strcmp(type, "image_url") == 0 || strcmp(type, "input_image") == 0))
            *extra_tokens += LLMREQ_TOKENS_PER_IMAGE;
    }
    return RP_OK;
}

static int get_count(json_t *root, const char *key, int64_t max, int64_t *v, struct llmreq_info *out, const char *msg)
{
    json_t *j = json_object_get(root, key);
    if (!j || json_is_null(j))
        return RP_OK;
    if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > max)
        return fail(out, msg, key);
    *v = (int64_t)json_integer_value(j);
    return RP_OK;
}

int llmreq_parse(const char *body, size_t len, struct llmreq_info *out)
{
    memset(out, 0, sizeof *out);
    out->max_tokens = -1;
    out->n = 1;
    if (len > LLMREQ_MAX_PARSE) {
        /* Too large to parse on the event loop: estimate from size alone. */
        out->prompt_chars = len;
        out->prompt_tokens = len / 4 + LLMREQ_TOKENS_PER_REPLY;
        return RP_OK;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(out, "the request body is not valid JSON", NULL);
    int rc = RP_OK;
    uint64_t extra = 0;
    if (!json_is_object(root)) {
        rc = fail(out, "the request body must be a JSON object", NULL);
        goto done;
    }
    out->parsed = true;

    int64_t v = -1;
    if ((rc = get_count(root, "max_tokens", INT32_MAX, &v, out, "max_tokens must be a non-negative integer")) != RP_OK)
        goto done;
    out->max_tokens = v;
    v = -1;
    if ((rc = get_count(root, "max_completion_tokens", INT32_MAX, &v, out,
                        "max_completion_tokens must be a non-negative integer")) != RP_OK)
        goto done;
    if (v >= 0)
        out->max_tokens = v; /* the newer name wins when both are given */
    v = 1;
    if ((rc = get_count(root, "n", 128, &v, out, "n must be an integer between 1 and 128")) != RP_OK)
        goto done;
    if (v < 1) {
        rc = fail(out, "n must be an integer between 1 and 128", "n");
        goto done;
    }
    out->n = (uint32_t)v;

    json_t *j = json_object_get(root, "stream");
    if (j && !json_is_null(j)) {
        if (!json_is_boolean(j)) {
            rc = fail(out, "stream must be a boolean", "stream");
            goto done;
        }
        out->stream = json_is_true(j);
    }
    j = json_object_get(root, "stream_options");
    if (j && !json_is_null(j)) {
        if (!json_is_object(j)) {
            rc = fail(out, "stream_options must be an object", "stream_options");
            goto done;
        }
        json_t *iu = json_object_get(j, "include_usage");
        if (iu && !json_is_null(iu) && !json_is_boolean(iu)) {
            rc = fail(out, "stream_options.include_usage must be a boolean", "stream_options");
            goto done;
        }
        out->include_usage = json_is_true(iu);
    }
    j = json_object_get(root, "model");
    if (j && !json_is_null(j)) {
        if (!json_is_string(j)) {
            rc = fail(out, "model must be a string", "model");
            goto done;
        }
        rp_snprintf(out->model, sizeof out->model, "%s", json_string_value(j));
    }

    j = json_object_get(root, "messages");
    if (j && !json_is_null(j)) {
        if (!json_is_array(j)) {
            rc = fail(out, "messages must be an array", "messages");
            goto done;
        }
        size_t i;
        json_t *m;
        json_array_foreach(j, i, m)
        {
            if (!json_is_object(m)) {
                rc = fail(out, "each message must be an object", "messages");
                goto done;
            }
            out->messages++;
            if ((rc = content_size(json_object_get(m, "content"), out, &extra)) != RP_OK)
                goto done;
        }
    }
    /* Legacy completions: "prompt" is a string or an array of strings. */
    j = json_object_get(root, "prompt");
    if (json_is_string(j)) {
        out->prompt_chars += utf8_chars(json_string_value(j), json_string_length(j));
    } else if (json_is_array(j)) {
        size_t i;
        json_t *p;
        json_array_foreach(j, i, p) if (json_is_string(p)) out->prompt_chars +=
            utf8_chars(json_string_value(p), json_string_length(p));
    }
    /* chars / 4, rounded up: the usual rule of thumb for English text with
     * BPE tokenizers; good enough to reserve, since settling corrects it. */
    out->prompt_tokens = (out->prompt_chars + 3) / 4 + extra + (uint64_t)out->messages * LLMREQ_TOKENS_PER_MESSAGE +
                         LLMREQ_TOKENS_PER_REPLY;
done:
    json_decref(root);
    return rc;
}

/* ---- response scanner ------------------------------------------------------------ */

enum { K_NONE = 0, K_USAGE, K_PROMPT, K_COMPLETION, K_TOTAL, K_CONTENT, K_SKIP };
enum { L_START = 0, L_FIELD, L_SPACE, L_DATA, L_IGNORE };

void llmreq_scan_init(struct llmreq_scan *s, bool sse)
{
    memset(s, 0, sizeof *s);
    s->sse = sse;
    s->prompt_tokens = s->completion_tokens = s->total_tokens = -1;
}

static uint8_t classify(const struct llmreq_scan *s)
{
    if (s->str_over)
        return K_NONE;
    size_t n = s->str_len;
    if (n == 5 && memcmp(s->str, "usage", 5) == 0)
        return K_USAGE;
    if (n == 13 && memcmp(s->str, "prompt_tokens", 13) == 0)
        return K_PROMPT;
    if (n == 17 && memcmp(s->str, "completion_tokens", 17) == 0)
        return K_COMPLETION;
    if (n == 12 && memcmp(s->str, "total_tokens", 12) == 0)
        return K_TOTAL;
    if ((n == 7 && memcmp(s->str, "content", 7) == 0) || (n == 4 && memcmp(s->str, "text", 4) == 0))
        return K_CONTENT;
    return K_NONE;
}

static void json_reset(struct llmreq_scan *s)
{
    s->depth = s->usage_depth = 0;
    s->in_str = s->esc = s->after_str = s->in_num = false;
    s->uesc = 0;
    s->last_key = s->expect = s->value_for = s->num_for = K_NONE;
}

static void end_number(struct llmreq_scan *s)
{
    if (!s->in_num)
        return;
    s->in_num = false;
    int64_t v = (int64_t)s->num;
    s->has_usage = true;
    if (s->num_for == K_PROMPT)
        s->prompt_tokens = v;
    else if (s->num_for == K_COMPLETION)
        s->completion_tokens = v;
    else if (s->num_for == K_TOTAL)
        s->total_tokens = v;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static void json_byte(struct llmreq_scan *s, char ch)
{
    if (s->in_str) {
        if (s->uesc) {
            s->uesc--; /* hex digits of \uXXXX: the escape was counted */
            return;
        }
        if (s->esc) {
            s->esc = false;
            if (ch == 'u')
                s->uesc = 4;
            s->str_chars++;
            if (s->str_len < sizeof s->str)
                s->str[s->str_len++] = ch;
            else
                s->str_over = true;
            return;
        }
        if (ch == '\\') {
            s->esc = true;
            return;
        }
        if (ch == '"') {
            s->in_str = false;
            if (s->value_for == K_CONTENT) {
                if (s->str_chars > 0)
                    s->ev_content = true;
                s->content_chars += s->str_chars;
                s->value_for = K_NONE;
            } else if (s->value_for == K_NONE) {
                /* Possibly a key: decided by the next non-blank byte. */
                s->last_key = classify(s);
                s->after_str = true;
            }
            s->value_for = K_NONE;
            return;
        }
        if (((unsigned char)ch & 0xC0) != 0x80)
            s->str_chars++;
        if (s->str_len < sizeof s->str)
            s->str[s->str_len++] = ch;
        else
            s->str_over = true;
        return;
    }
    if (s->in_num) {
        if (ch >= '0' && ch <= '9') {
            if (s->num_digits < 18) {
                s->num = s->num * 10 + (uint64_t)(ch - '0');
                s->num_digits++;
            }
            return;
        }
        end_number(s);
    }
    if (is_ws(ch))
        return;
    if (s->after_str) {
        s->after_str = false;
        if (ch == ':') {
            s->expect = s->last_key;
            return;
        }
    }
    uint8_t expect = s->expect;
    s->expect = K_NONE;
    switch (ch) {
    case '"':
        s->in_str = true;
        s->esc = false;
        s->str_len = 0;
        s->str_over = false;
        s->str_chars = 0;
        /* After "content": a string to measure; after another tracked key:
         * a value to skip (not a key); otherwise it may be a key. */
        s->value_for = expect == K_NONE ? K_NONE : expect == K_CONTENT ? K_CONTENT : K_SKIP;
        break;
    case '{':
    case '[':
        if (ch == '{' && expect == K_USAGE && s->depth == 1)
            s->usage_depth = s->depth + 1;
        if (s->depth < UINT32_MAX)
            s->depth++;
        break;
    case '}':
    case ']':
        if (s->usage_depth && s->depth == s->usage_depth)
            s->usage_depth = 0;
        if (s->depth > 0)
            s->depth--;
        break;
    default:
        if (ch >= '0' && ch <= '9' && (expect == K_PROMPT || expect == K_COMPLETION || expect == K_TOTAL) &&
            s->usage_depth && s->depth == s->usage_depth) {
            s->in_num = true;
            s->num = (uint64_t)(ch - '0');
            s->num_digits = 1;
            s->num_for = expect;
        }
        break;
    }
}

static void dispatch_event(struct llmreq_scan *s)
{
    end_number(s);
    if (s->ev_data) {
        if (s->head_len == 6 && memcmp(s->head, "[DONE]", 6) == 0) {
            s->done = true;
        } else {
            s->data_events++;
            if (s->ev_content)
                s->content_events++;
        }
    }
    s->ev_data = s->ev_content = false;
    s->head_len = 0;
    json_reset(s);
}

static void end_line(struct llmreq_scan *s)
{
    if (s->line == L_START)
        dispatch_event(s); /* blank line: the event is complete */
    s->line = L_START;
}

static void sse_byte(struct llmreq_scan *s, char ch)
{
    if (ch == '\r') {
        end_line(s);
        s->saw_cr = true;
        return;
    }
    if (ch == '\n') {
        if (s->saw_cr) {
            s->saw_cr = false;
            return;
        }
        end_line(s);
        return;
    }
    s->saw_cr = false;
    switch (s->line) {
    case L_START:
        if (ch == ':') {
            s->line = L_IGNORE; /* comment */
            return;
        }
        s->field_len = 0;
        s->line = L_FIELD;
        /* fall through */
    case L_FIELD:
        if (ch == ':') {
            if (s->field_len == 4 && memcmp(s->field, "data", 4) == 0) {
                /* Several data lines of one event are joined by a newline. */
                if (s->ev_data)
                    json_byte(s, '\n');
                s->ev_first_line = !s->ev_data;
                s->ev_data = true;
                s->line = L_SPACE;
            } else {
                s->line = L_IGNORE;
            }
            return;
        }
        if (s->field_len < sizeof s->field)
            s->field[s->field_len++] = ch;
        else
            s->line = L_IGNORE;
        return;
    case L_SPACE:
        s->line = L_DATA;
        if (ch == ' ')
            return;
        /* fall through */
    case L_DATA:
        if (s->ev_first_line) {
            if (s->head_len < sizeof s->head)
                s->head[s->head_len++] = ch;
        }
        json_byte(s, ch);
        return;
    default: return;
    }
}

void llmreq_scan_feed(struct llmreq_scan *s, const char *data, size_t len)
{
    if (s->sse) {
        for (size_t i = 0; i < len; i++)
            sse_byte(s, data[i]);
    } else {
        for (size_t i = 0; i < len; i++)
            json_byte(s, data[i]);
    }
}

void llmreq_scan_finish(struct llmreq_scan *s)
{
    if (s->sse) {
        if (s->line != L_START)
            end_line(s);
        if (s->ev_data)
            dispatch_event(s);
    } else {
        end_number(s);
    }
}

bool llmreq_scan_usage(const struct llmreq_scan *s, uint64_t prompt_estimate, uint64_t *prompt, uint64_t *completion)
{
    bool have = s->has_usage && s->completion_tokens >= 0;
    *prompt = s->has_usage && s->prompt_tokens >= 0 ? (uint64_t)s->prompt_tokens : prompt_estimate;
    if (have)
        *completion = (uint64_t)s->completion_tokens;
    else if (s->sse)
        *completion = s->content_events;
    else
        *completion = (s->content_chars + 3) / 4;
    return have;
}

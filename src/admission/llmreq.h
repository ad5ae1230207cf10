/*
 * llmreq.h — what the gateway needs to know about model-API traffic.
 *
 * Requests: from a chat-completions (or legacy completions) JSON body,
 * read max_tokens / max_completion_tokens, n, stream,
 * stream_options.include_usage and the model, and estimate the prompt's
 * size (characters / 4 of the message contents, plus a small overhead per
 * message).  That is what the token budget reserves before the request is
 * sent (quota.h).  Parsed with jansson; the body is bounded by the proxy.
 *
 * Responses: an incremental scanner that reads a response body as it
 * streams past — a JSON document or Server-Sent Events — and finds
 * "usage": {"prompt_tokens": .., "completion_tokens": ..} in the top-level
 * object of the document or of any event, while counting the SSE events
 * that carry content (a fallback token count when the upstream reports no
 * usage: one token per content event, as model servers stream).  It keeps
 * a fixed-size state, never buffers the body, and gives the same result
 * for any split of the input (the unit tests feed every split).  It knows
 * JSON strings and escapes, so text that merely looks like a usage object
 * inside generated content is not taken for one.
 */
#ifndef RP_LLMREQ_H
#define RP_LLMREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bodies above this are not parsed: the prompt is estimated from the body
 * size and max_tokens is unknown (the default reservation applies). */
#define LLMREQ_MAX_PARSE (8u * 1024 * 1024)
/* Per-message overhead of the chat format, and the reply's priming. */
#define LLMREQ_TOKENS_PER_MESSAGE 4
#define LLMREQ_TOKENS_PER_REPLY 3
/* A flat charge for an image part (the low-detail cost). */
#define LLMREQ_TOKENS_PER_IMAGE 85

struct llmreq_info {
    bool parsed;        /* false: too large to parse (estimates only) */
    int64_t max_tokens; /* max_completion_tokens, else max_tokens; -1 when absent */
    uint32_t n;         /* choices requested, default 1 */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    uint32_t messages;
    uint64_t prompt_chars;  /* characters (code points) of text contents */
    uint64_t prompt_tokens; /* the estimate */
    char model[128];        /* "" when absent; truncated if longer */
    /* on RP_ERR (answer 400 invalid_request_error): */
    const char *error;       /* message (static text) */
    const char *error_param; /* offending field, or NULL for the body itself */
};

/* RP_OK with *out filled, or RP_ERR when the body is not a JSON object or
 * a known field has the wrong type (out->error, out->error_param). */
int llmreq_parse(const char *body, size_t len, struct llmreq_info *out);

/* ---- response scanner ---------------------------------------------------- */

struct llmreq_scan {
    bool sse;
    /* SSE framing */
    uint8_t line; /* internal line state */
    uint8_t field_len;
    char field[8];
    bool saw_cr;
    bool ev_data, ev_content, ev_first_line;
    uint8_t head_len;
    char head[8]; /* first bytes of the event's data */
    /* JSON lexer */
    uint32_t depth, usage_depth;
    bool in_str, esc, after_str, in_num;
    uint8_t uesc;
    uint8_t str_len;
    bool str_over;
    char str[24];
    uint32_t str_chars;
    uint8_t last_key, expect, value_for, num_for;
    uint64_t num;
    uint8_t num_digits;
    /* results */
    bool has_usage;
    int64_t prompt_tokens, completion_tokens, total_tokens; /* -1 unknown */
    uint64_t data_events;                                   /* SSE events with data (excluding [DONE]) */
    uint64_t content_events;                                /* ... of which carried non-empty content */
    uint64_t content_chars;                                 /* characters of content/text string values */
    bool done;                                              /* SSE "[DONE]" seen */
};

void llmreq_scan_init(struct llmreq_scan *s, bool sse);
void llmreq_scan_feed(struct llmreq_scan *s, const char *data, size_t len);
/* End of body: completes a pending number or an unterminated last event. */
void llmreq_scan_finish(struct llmreq_scan *s);
/* Tokens to settle: the reported usage when present (returns true), else
 * prompt_estimate and the streamed count (content events for SSE, content
 * characters / 4 for a JSON body). */
bool llmreq_scan_usage(const struct llmreq_scan *s, uint64_t prompt_estimate, uint64_t *prompt, uint64_t *completion);

#endif

/*
 * reply.c — the one writer of locally generated responses (see reply.h).
 */
#include "reply.h"

#include <string.h>
#include <time.h>

#include "h1.h"
#include "util.h"

const char *reply_error_type(int status)
{
    switch (status) {
    case 400:
    case 408:
    case 411:
    case 413:
    case 414:
    case 415:
    case 417:
    case 422:
    case 431:
    case 501:
    case 505: return "invalid_request_error";
    case 401:
    case 403: return "authentication_error";
    case 404:
    case 405: return "not_found_error";
    case 429: return "rate_limit_exceeded";
    case 503: return "overloaded";
    case 502:
    case 504: return "upstream_error";
    default: return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
    }
}

enum reply_conn reply_conn(bool close, int client_minor)
{
    if (close)
        return REPLY_CONN_CLOSE;
    return client_minor == 0 ? REPLY_CONN_KEEP_ALIVE : REPLY_CONN_NONE;
}

bool reply_status_no_body(int status)
{
    return status == 204 || status == 304 || (status >= 100 && status < 200);
}

static void json_str_or_null(struct sbuf *out, const char *s)
{
    if (!s) {
        sbuf_adds(out, "null");
        return;
    }
    sbuf_add(out, "\"", 1);
    sbuf_json_str(out, s, strlen(s));
    sbuf_add(out, "\"", 1);
}

void reply_error_body(struct sbuf *out, int status, const char *type, const char *param, const char *code,
                      const char *message)
{
    sbuf_adds(out, "{\"error\":{\"message\":");
    json_str_or_null(out, message ? message : "");
    sbuf_adds(out, ",\"type\":");
    json_str_or_null(out, type ? type : reply_error_type(status));
    sbuf_adds(out, ",\"param\":");
    json_str_or_null(out, param);
    sbuf_adds(out, ",\"code\":");
    json_str_or_null(out, code);
    sbuf_adds(out, "}}\n");
}

/* IMF-fixdate, formatted once per second. */
static const char *http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static char text[40];
    static time_t cached = (time_t)-1;
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        rp_snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
                    months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = now;
    }
    return text;
}

void reply_head(struct sbuf *out, const struct reply_head *h)
{
    sbuf_printf(out, "HTTP/1.1 %d %s\r\n", h->status, h1_reason(h->status));
    if (h->date)
        sbuf_printf(out, "Date: %s\r\n", http_date());
    if (!reply_status_no_body(h->status))
        sbuf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                    h->content_type ? h->content_type : "application/json", h->content_length);
    /* A request id may come from the client: one with CR or LF in it
     * would add header lines of its own, so it is left out (the proxy
     * validates ids before they get here). */
    if (h->request_id && h->request_id[0]) {
        bool clean = strpbrk(h->request_id, "\r\n") == NULL;
        RP_ASSERT(clean);
        if (clean)
            sbuf_printf(out, "X-Request-Id: %s\r\n", h->request_id);
    }
    if (h->extra_headers) {
        /* Written by rampart itself, as complete lines. */
        size_t xl = strlen(h->extra_headers);
        RP_ASSERT(xl == 0 || (xl >= 2 && memcmp(h->extra_headers + xl - 2, "\r\n", 2) == 0));
        sbuf_add(out, h->extra_headers, xl);
    }
    if (h->conn == REPLY_CONN_CLOSE)
        sbuf_adds(out, "Connection: close\r\n");
    else if (h->conn == REPLY_CONN_KEEP_ALIVE)
        sbuf_adds(out, "Connection: keep-alive\r\n");
    sbuf_adds(out, "\r\n");
}

void reply_error(struct sbuf *out, const struct reply_head *h, const char *type, const char *code, const char *message)
{
    /* An error has a body; these statuses must not carry one. */
    RP_ASSERT(!reply_status_no_body(h->status));
    struct sbuf body;
    sbuf_init(&body, 8192);
    reply_error_body(&body, h->status, type, NULL, code, message);
    struct reply_head hh = *h;
    hh.content_type = "application/json";
    hh.content_length = body.len;
    reply_head(out, &hh);
    sbuf_add(out, body.data, body.len);
    if (body.truncated)
        out->truncated = true;
    sbuf_free(&body);
}

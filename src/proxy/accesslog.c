/*
 * accesslog.c — JSON access log lines, buffered.
 *
 * Lines are formatted into a fixed buffer and written with stdio in full
 * buffering mode; the owner flushes on a short timer and at exit, so a
 * busy gateway does one write(2) per few hundred requests instead of one
 * per request.
 */
#include "accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "util.h"

struct accesslog {
    FILE *f;
    bool own;
    struct sbuf line;
};

struct accesslog *accesslog_open(const char *spec)
{
    struct accesslog *log = rp_xcalloc(1, sizeof *log);
    if (!spec || strcmp(spec, "stdout") == 0) {
        log->f = stdout;
    } else if (strcmp(spec, "stderr") == 0) {
        log->f = stderr;
    } else if (strcmp(spec, "off") == 0) {
        log->f = NULL;
    } else {
        log->f = fopen(spec, "ae");
        if (!log->f) {
            rp_log_errno(errno, "cannot open access log %s", spec);
            free(log);
            return NULL;
        }
        log->own = true;
    }
    if (log->f)
        setvbuf(log->f, NULL, _IOFBF, 64 * 1024);
    sbuf_init(&log->line, 8192);
    return log;
}

static void add_str(struct sbuf *s, const char *key, const char *v)
{
    sbuf_printf(s, ",\"%s\":", key);
    if (!v) {
        sbuf_adds(s, "null");
        return;
    }
    sbuf_adds(s, "\"");
    sbuf_json_str(s, v, strlen(v));
    sbuf_adds(s, "\"");
}

static void add_ms(struct sbuf *s, const char *key, int64_t us)
{
    if (us < 0)
        sbuf_printf(s, ",\"%s\":null", key);
    else
        sbuf_printf(s, ",\"%s\":%.3f", key, (double)us / 1000.0);
}

void accesslog_write(struct accesslog *log, const struct accesslog_entry *e)
{
    if (!log || !log->f)
        return;
    struct sbuf *s = &log->line;
    sbuf_reset(s);
    time_t secs = (time_t)(e->time_ms / 1000);
    struct tm tm;
    char ts[32];
    gmtime_r(&secs, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    sbuf_printf(s, "{\"time\":\"%s.%03dZ\"", ts, (int)(e->time_ms % 1000));
    add_str(s, "request_id", e->request_id);
    add_str(s, "method", e->method);
    add_str(s, "path", e->path);
    add_str(s, "client", e->client);
    add_str(s, "tenant", e->tenant);
    sbuf_printf(s, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu", e->status, (unsigned long long)e->bytes_in,
                (unsigned long long)e->bytes_out);
    add_str(s, "upstream", e->upstream);
    add_str(s, "server", e->server);
    add_str(s, "outcome", e->outcome);
    add_ms(s, "queue_ms", e->queue_us);
    add_ms(s, "connect_ms", e->connect_us);
    add_ms(s, "first_byte_ms", e->first_byte_us);
    add_ms(s, "total_ms", e->total_us);
    sbuf_adds(s, "}\n");
    if (!s->truncated)
        fwrite(s->data, 1, s->len, log->f);
}

void accesslog_flush(struct accesslog *log)
{
    if (log && log->f)
        fflush(log->f);
}

void accesslog_close(struct accesslog *log)
{
    if (!log)
        return;
    accesslog_flush(log);
    if (log->own)
        fclose(log->f);
    sbuf_free(&log->line);
    free(log);
}

/*
 * buf.c — bounded I/O buffers with a free list, and the string builder.
 */
#include "buf.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A small cache of default-size blocks.  Bounded so an idle gateway gives
 * memory back after a burst. */
#define BUF_FREE_MAX 256
static char *free_blocks[BUF_FREE_MAX];
static size_t free_count;

void buf_alloc_size(struct buf *b, size_t size)
{
    char *p;
    if (size == BUF_DEFAULT_SIZE && free_count > 0)
        p = free_blocks[--free_count];
    else
        p = rp_xmalloc(size);
    b->start = b->pos = b->last = p;
    b->end = p + size;
}

void buf_alloc(struct buf *b)
{
    buf_alloc_size(b, BUF_DEFAULT_SIZE);
}

void buf_release(struct buf *b)
{
    if (!b->start)
        return;
    if ((size_t)(b->end - b->start) == BUF_DEFAULT_SIZE && free_count < BUF_FREE_MAX)
        free_blocks[free_count++] = b->start;
    else
        free(b->start);
    b->start = b->pos = b->last = b->end = NULL;
}

void buf_compact(struct buf *b)
{
    size_t n = buf_len(b);
    if (b->pos == b->start)
        return;
    if (n)
        memmove(b->start, b->pos, n);
    b->pos = b->start;
    b->last = b->start + n;
}

void buf_consume(struct buf *b, size_t n)
{
    b->pos += n;
    if (b->pos >= b->last)
        b->pos = b->last = b->start;
}

size_t buf_append(struct buf *b, const void *data, size_t n)
{
    size_t room = buf_free_tail(b);
    if (n > room) {
        buf_compact(b);
        room = buf_free_tail(b);
    }
    if (n > room)
        n = room;
    memcpy(b->last, data, n);
    b->last += n;
    return n;
}

ssize_t buf_read_fd(struct buf *b, int fd)
{
    if (buf_free_tail(b) == 0)
        buf_compact(b);
    size_t room = buf_free_tail(b);
    if (room == 0)
        return RP_AGAIN;
    for (;;) {
        ssize_t n = read(fd, b->last, room);
        if (n > 0) {
            b->last += n;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RP_AGAIN;
        return RP_ERR;
    }
}

ssize_t buf_write_fd(struct buf *b, int fd)
{
    size_t n = buf_len(b);
    if (n == 0)
        return 0;
    for (;;) {
        ssize_t w = send(fd, b->pos, n, MSG_NOSIGNAL);
        if (w >= 0) {
            buf_consume(b, (size_t)w);
            return w;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RP_AGAIN;
        return RP_ERR;
    }
}

/* ---- string builder ---- */

void sbuf_init(struct sbuf *s, size_t max)
{
    s->data = NULL;
    s->len = s->cap = 0;
    s->max = max ? max : (16u << 20);
    s->truncated = false;
}

void sbuf_free(struct sbuf *s)
{
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

void sbuf_reset(struct sbuf *s)
{
    s->len = 0;
    s->truncated = false;
    if (s->data)
        s->data[0] = '\0';
}

static bool sbuf_reserve(struct sbuf *s, size_t n)
{
    if (s->len + n + 1 > s->max) {
        s->truncated = true;
        return false;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        if (cap > s->max)
            cap = s->max;
        s->data = rp_xrealloc(s->data, cap);
        s->cap = cap;
    }
    return true;
}

void sbuf_add(struct sbuf *s, const void *data, size_t n)
{
    if (!sbuf_reserve(s, n))
        return;
    memcpy(s->data + s->len, data, n);
    s->len += n;
    s->data[s->len] = '\0';
}

void sbuf_adds(struct sbuf *s, const char *str)
{
    sbuf_add(s, str, strlen(str));
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sbuf_add(s, tmp, (size_t)n);
        return;
    }
    if (!sbuf_reserve(s, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void sbuf_json_str(struct sbuf *s, const char *str, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)str[i];
        switch (c) {
        case '"': sbuf_add(s, "\\\"", 2); break;
        case '\\': sbuf_add(s, "\\\\", 2); break;
        case '\n': sbuf_add(s, "\\n", 2); break;
        case '\r': sbuf_add(s, "\\r", 2); break;
        case '\t': sbuf_add(s, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f)
                sbuf_printf(s, "\\u%04x", c);
            else
                sbuf_add(s, &str[i], 1);
        }
    }
}

void sbuf_html(struct sbuf *s, const char *str)
{
    for (; *str; str++) {
        switch (*str) {
        case '<': sbuf_adds(s, "&lt;"); break;
        case '>': sbuf_adds(s, "&gt;"); break;
        case '&': sbuf_adds(s, "&amp;"); break;
        case '"': sbuf_adds(s, "&quot;"); break;
        case '\'': sbuf_adds(s, "&#39;"); break;
        default: sbuf_add(s, str, 1);
        }
    }
}

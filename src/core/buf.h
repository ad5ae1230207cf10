/*
 * buf.h — bounded byte buffers.
 *
 * struct buf is the I/O buffer of every connection: a fixed capacity chosen
 * at creation, with a read position (pos) and a write position (last), as
 * in nginx's ngx_buf_t.  Bytes in [pos, last) are pending; space after last
 * is free.  Nothing grows: a full buffer means "stop reading from that
 * peer" (backpressure), never "allocate more".  Buffer memory comes from a
 * small free list so busy connections don't churn malloc.
 *
 * struct sbuf is a growable string builder for responses that are built
 * whole (JSON documents, metrics pages, status pages), with a hard cap; a
 * builder that hits its cap is marked truncated instead of growing further.
 */
#ifndef RP_BUF_H
#define RP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct buf {
    char *start; /* first byte of storage */
    char *pos;   /* first unconsumed byte */
    char *last;  /* one past the last valid byte */
    char *end;   /* one past the storage */
};

#define BUF_DEFAULT_SIZE (16 * 1024)

/* Get storage of BUF_DEFAULT_SIZE (from the free list) / give it back. */
void buf_alloc(struct buf *b);
void buf_alloc_size(struct buf *b, size_t size);
void buf_release(struct buf *b);
static inline size_t buf_len(const struct buf *b)
{
    return (size_t)(b->last - b->pos);
}
static inline size_t buf_free_tail(const struct buf *b)
{
    return (size_t)(b->end - b->last);
}
static inline bool buf_empty(const struct buf *b)
{
    return b->pos == b->last;
}
static inline void buf_reset(struct buf *b)
{
    b->pos = b->last = b->start;
}
/* Move pending bytes to the start so the whole free space is at the tail. */
void buf_compact(struct buf *b);
/* Consume n bytes from the front (resets to start when emptied). */
void buf_consume(struct buf *b, size_t n);
/* Append up to n bytes; returns how many fit. */
size_t buf_append(struct buf *b, const void *data, size_t n);

/* read()/write() wrappers: bytes moved, 0 on EOF (read), RP_AGAIN when the
 * socket would block, RP_ERR on error (errno kept). */
ssize_t buf_read_fd(struct buf *b, int fd);
ssize_t buf_write_fd(struct buf *b, int fd);

struct sbuf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;     /* hard cap; 0 means 16 MiB */
    bool truncated; /* an append did not fit under max */
};

void sbuf_init(struct sbuf *s, size_t max);
void sbuf_free(struct sbuf *s);
void sbuf_reset(struct sbuf *s);
void sbuf_add(struct sbuf *s, const void *data, size_t n);
void sbuf_adds(struct sbuf *s, const char *str);
void sbuf_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append str as the contents of a JSON string (without quotes), escaping
 * quotes, backslashes and control characters. */
void sbuf_json_str(struct sbuf *s, const char *str, size_t n);
/* Append str escaped for HTML text and attribute values. */
void sbuf_html(struct sbuf *s, const char *str);

#endif

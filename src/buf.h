/* A growable byte buffer with an optional size limit: the one way pollcast builds text
 * (patches, frames, bodies). Appends fail cleanly instead of growing past the limit. */
#ifndef POLLCAST_BUF_H
#define POLLCAST_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data;   /* always NUL-terminated once anything was appended */
    size_t len;   /* bytes used, not counting the terminator */
    size_t cap;   /* bytes allocated */
    size_t limit; /* maximum len; 0 means no limit */
};

/* Sets an empty buffer that may grow up to limit bytes (0: unbounded). Cannot fail. */
void buf_init(struct buf *b, size_t limit);

/* Frees the storage and leaves an empty buffer. Accepts a zeroed buffer. */
void buf_dispose(struct buf *b);

/* Makes room for n more bytes. Returns 0, or -1 when out of memory or past the limit. */
int buf_reserve(struct buf *b, size_t n);

/* Appends n bytes. Returns 0, or -1 (the buffer is unchanged) when it cannot. */
int buf_append(struct buf *b, const void *data, size_t n);

/* Appends a NUL-terminated string. Returns 0 or -1 as buf_append. */
int buf_puts(struct buf *b, const char *s);

/* Appends one byte. Returns 0 or -1 as buf_append. */
int buf_putc(struct buf *b, char c);

/* Appends printf-style formatted text. Returns 0 or -1. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends the decimal form of v. Returns 0 or -1. */
int buf_put_u64(struct buf *b, uint64_t v);

/* Shrinks the content to len bytes (len <= b->len). Cannot fail. */
void buf_truncate(struct buf *b, size_t len);

/* Hands the storage to the caller (who frees it with free()) and leaves the buffer empty.
 * Returns a NUL-terminated string ("" allocated if the buffer was empty), or NULL on OOM. */
char *buf_steal(struct buf *b, size_t *len);

#endif

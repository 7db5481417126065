/* RFC 6901 JSON Pointer: building escaped paths (diff) and reading them back (apply). */
#ifndef POLLCAST_JSON_POINTER_H
#define POLLCAST_JSON_POINTER_H

#include <stddef.h>

#include "buf.h"

/* Appends "/" and the segment seg[0..n) with '~' written "~0" and '/' written "~1".
 * The path stays in decoded form (not a JSON string); write it out with json_write_string.
 * Returns 0 or -1 when the buffer cannot grow. */
int json_pointer_append(struct buf *path, const char *seg, size_t n);

/* Appends "/" and the decimal index i. Returns 0 or -1. */
int json_pointer_append_index(struct buf *path, size_t i);

/* Reads the next segment of the pointer text at *p (before end) into seg (cleared first),
 * unescaping ~0 and ~1, and advances *p. Returns 1 when a segment was read, 0 at the end of the
 * pointer, -1 when the pointer is malformed (does not start with '/', or '~' not followed by
 * '0' or '1') or seg cannot grow. An empty pointer ("") has no segments: the whole document. */
int json_pointer_next(const char **p, const char *end, struct buf *seg);

/* Reads an array index segment: "0" or a digit string without leading zeros that fits the
 * array size bound. Returns 0 and stores the index, 1 for "-" (past the end), -1 otherwise. */
int json_pointer_index(const char *seg, size_t n, size_t *index);

#endif

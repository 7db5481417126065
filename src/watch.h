/* The parts of `pollcast watch` that do no I/O, so that tests can drive them byte by byte: an
 * event-stream parser (the WHATWG "text/event-stream" rules), and a follower that keeps the live
 * document from `data` and `patch` events, selects a sub-value by JSON Pointer, lists the changes
 * as leaf-level RFC 6902 operations and renders the document as indented JSON. */
#ifndef POLLCAST_WATCH_H
#define POLLCAST_WATCH_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "json/json.h"

/* ---- event-stream parser ------------------------------------------------------------------ */

/* One dispatched event. Everything points into the parser and is valid during the callback
 * only. data is NUL-terminated (and may hold other NUL bytes: len counts them). */
struct watch_sse_event {
    const char *type; /* "message" when the stream named none */
    const char *data;
    size_t len;
    const char *id; /* the last event ID after this event ("" when none) */
};

/* Receives each event; a non-zero return stops watch_sse_feed, which returns it. */
typedef int (*watch_sse_fn)(void *arg, const struct watch_sse_event *ev);

#define WATCH_SSE_MAX_ID  1024 /* longer ids are dropped: the stream then cannot be resumed */
#define WATCH_SSE_TOO_BIG (-1)

struct watch_sse {
    struct buf line;    /* the line being read, without its terminator */
    struct buf data;    /* the data buffer of the event being read */
    struct buf type;    /* the event type buffer */
    struct buf id;      /* the last event ID buffer */
    struct buf last_id; /* the last event ID string (set when an event is dispatched) */
    long retry_ms;      /* the last valid retry: field, -1 before any */
    int after_cr;       /* the previous byte ended a line with CR: skip a following LF */
    int started;        /* a byte was seen since the last reset (a BOM is skipped only first) */
    size_t max_event;
    watch_sse_fn on_event;
    void *arg;
};

/* Sets up a parser whose lines and events may reach max_event bytes. Cannot fail. */
void watch_sse_init(struct watch_sse *p, size_t max_event, watch_sse_fn on_event, void *arg);

/* Frees the buffers. Accepts a zeroed parser. */
void watch_sse_dispose(struct watch_sse *p);

/* Prepares for a new connection: the partial line and event are dropped; the last event ID and
 * the reconnection time are kept, as EventSource does. Cannot fail. */
void watch_sse_reset(struct watch_sse *p);

/* Forgets the last event ID too (the next connection asks for a fresh snapshot). */
void watch_sse_forget_id(struct watch_sse *p);

/* Parses n more bytes of the stream, calling on_event for every complete event. Lines may end
 * in CRLF, LF or CR, split anywhere between calls. Returns 0, WATCH_SSE_TOO_BIG when a line or
 * the data of one event grows past max_event (or memory runs out), or the first non-zero value
 * on_event returned. After a non-zero return the parser must be reset before further use. */
int watch_sse_feed(struct watch_sse *p, const char *bytes, size_t n);

/* ---- the live document -------------------------------------------------------------------- */

struct watch_doc {
    cJSON *root;   /* the document, NULL before the first snapshot */
    char *pointer; /* the selection: an RFC 6901 pointer, "" for the whole document */
    size_t pointer_len;
};

/* Sets up an empty follower showing the value at pointer (NULL: the whole document), which must
 * be a valid pointer (see watch_pointer_check). Returns 0, or -1 when out of memory. */
int watch_doc_init(struct watch_doc *w, const char *pointer);

/* Frees the document. Accepts a zeroed follower. */
void watch_doc_dispose(struct watch_doc *w);

/* Takes a `data` event: the whole document. When changes is not NULL, appends to it the compact
 * JSON array of the changes inside the selection since the previous document (leaf-level ops
 * with full paths, as watch_doc_patch lists them), or "null" when this is the first document.
 * Returns 0, or -1 with a message in err when the text is not JSON or out of memory (the
 * previous document is kept). */
int watch_doc_snapshot(struct watch_doc *w, const char *text, size_t len, struct buf *changes,
                       char *err, size_t errlen);

/* Takes a `patch` event: an RFC 6902 array, applied atomically with json_patch_apply. When
 * changes is not NULL, appends the compact JSON array of what changed inside the selection:
 * the patch's ops that fall inside it, except that an op on the selection's parent and a replace
 * of an object or array by another are given as the differences they make (json_diff), so that
 * every op names a leaf that changed; "test" ops and ops outside the selection are left out.
 * Returns 0, or -1 with a message in err when there is no document yet, the text is not JSON, or
 * the patch does not apply (the document is then unchanged: the caller should resynchronise). */
int watch_doc_patch(struct watch_doc *w, const char *text, size_t len, struct buf *changes,
                    char *err, size_t errlen);

/* Returns the selected value of the current document (owned by it), or NULL when there is no
 * document or nothing at the pointer. */
const cJSON *watch_doc_selected(const struct watch_doc *w);

/* Appends the compact JSON of the selected value, or nothing when there is none.
 * Returns 1 when a value was written, 0 when there is none, -1 when out cannot grow. */
int watch_doc_write_selected(const struct watch_doc *w, struct buf *out);

/* Appends v as JSON indented by two spaces per level, one line per scalar, member or bracket,
 * ending with a newline. When changes (a parsed array as watch_doc_patch produces, or NULL) names
 * paths, lines at or below the target path of an add, replace, copy or move (relative to base,
 * the pointer v sits at) start with the byte '\x01' so that a terminal can highlight them.
 * Returns 0, or -1 when out cannot grow or v nests deeper than JSON_CJSON_MAX_DEPTH. */
int watch_render(struct buf *out, const cJSON *v, const char *base, size_t base_len,
                 const struct json_node *changes);

/* Appends one change as a line without its newline: "replace /prices/ACME 10.19",
 * "remove /orders/0", "move /a/3 from /a/0" (paths as watch_format_path writes them). Returns 0, or
 * -1 when out cannot grow or op is not an op object. */
int watch_format_change(struct buf *out, const struct json_node *op);

/* Appends pointer p[0..n) as watch_format_change writes paths: bare, or as a JSON string when
 * it is empty or holds a space, a quote, a backslash or a control character. Returns 0 or -1. */
int watch_format_path(struct buf *out, const char *p, size_t n);

/* Returns 0 when p is a valid RFC 6901 pointer ("" or "/..." with ~0 and ~1 escapes only),
 * -1 otherwise. */
int watch_pointer_check(const char *p);

/* Converts a jq path (".", ".a.b", ".a[0]", ".[\"x y\"]", ."x-y") into a pointer appended to
 * out. Returns 0, or -1 when the path uses anything else (pipes, iterators, slices). */
int watch_jq_to_pointer(const char *jq, struct buf *out);

#endif

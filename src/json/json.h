/* JSON documents with full fidelity: a parser that keeps the exact text of every value, an
 * immutable arena tree with a subtree hash and compact size on every node, equality, lookup and
 * compact serialization. Numbers are never converted: a value goes out byte for byte as the
 * upstream wrote it, so 64-bit ids, 1e400 and strings holding \u0000 survive. */
#ifndef POLLCAST_JSON_H
#define POLLCAST_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

enum json_node_flags {
    JSON_COMPACT = 1, /* text[0..len) is exactly the compact serialization of the value */
    JSON_ESCAPED = 2, /* a string whose text holds backslash escapes */
};

struct json_member;

/* One value. Nodes are immutable once parsed and live as long as their document. */
struct json_node {
    uint64_t hash;      /* subtree hash: equal values (json_equal) have equal hashes (objects ignore
                           order, strings are hashed decoded) */
    const char *text;   /* the value as written in the source (strings include their quotes) */
    uint32_t len;       /* bytes of text */
    uint32_t size;      /* bytes of the compact serialization (json_write output) */
    uint32_t count;     /* elements of an array, members of an object, 0 otherwise */
    uint8_t type;       /* enum json_type */
    uint8_t flags;      /* enum json_node_flags */
    uint8_t index_bits; /* objects: log2 of the key index's slot count, 0 without an index */
    union {
        struct json_node **items;    /* JSON_ARRAY: count elements */
        struct json_member *members; /* JSON_OBJECT: count members, in document order */
    } u;
    uint32_t *index; /* objects with many members: slots holding member position + 1, 0 empty */
};

/* One object member. Keys are compared on their decoded bytes, case-sensitively. */
struct json_member {
    const char *key;  /* decoded key bytes, not NUL-terminated, may hold NUL */
    uint32_t klen;    /* bytes of key */
    uint32_t khash;   /* json_hash_key(key, klen) */
    const char *kraw; /* the key as written, with its quotes */
    uint32_t kraw_len;
    struct json_node *value;
};

/* A parsed document: the source text it points into and the arena holding its nodes. */
struct json_doc {
    struct json_node *root;
    char *text; /* owned; NUL-terminated */
    size_t len;
    struct json_arena *arena;
};

struct json_error {
    size_t offset; /* byte offset in the input where parsing stopped */
    char msg[128]; /* "expected ':' after object key", ... */
};

/* Parse limits. A zeroed struct, or NULL, means the defaults below. */
struct json_parse_opts {
    unsigned max_depth; /* nesting of arrays and objects; default JSON_DEFAULT_MAX_DEPTH */
    size_t max_values;  /* values (nodes) in the document; 0: no limit. A node takes about 56
                           bytes, so a dense input such as [0,0,...] grows about 28-fold */
};

#define JSON_DEFAULT_MAX_DEPTH 1000
#define JSON_MAX_INPUT         0xFFFFFFF0u /* node offsets and sizes are 32-bit */

/* Parses RFC 8259 JSON (one value, optional surrounding whitespace, an optional UTF-8 BOM is
 * skipped) with strict grammar and UTF-8 validation. Duplicate object keys: the last value wins,
 * kept at the position of the first occurrence, as JavaScript's JSON.parse does.
 * json_parse_owned takes ownership of text (a malloc'd buffer of len bytes plus one spare byte
 * for a terminator, which it writes) only on success; on failure the caller still owns it.
 * Both return NULL on error, with err (if not NULL) saying where and why. */
struct json_doc *json_parse_owned(char *text, size_t len, const struct json_parse_opts *opts,
                                  struct json_error *err);

/* As json_parse_owned, but copies text; the caller keeps its buffer. */
struct json_doc *json_parse(const char *text, size_t len, const struct json_parse_opts *opts,
                            struct json_error *err);

/* Frees the document, its nodes and its text. Accepts NULL. */
void json_doc_free(struct json_doc *doc);

/* Returns the member value of obj named key (decoded bytes), or NULL when there is none or obj
 * is not an object. Constant time for objects with an index, linear for small ones. */
const struct json_node *json_object_get(const struct json_node *obj, const char *key, size_t klen);

/* Returns the position of the member named key in obj->u.members, or -1. */
long json_object_find(const struct json_node *obj, const char *key, size_t klen);

/* Returns 1 when a and b hold the same value, 0 otherwise. Strings compare by their decoded
 * bytes (so "\u00e9" and "é", "\/" and "/" are equal), numbers by their text (so 1.0 and 1
 * differ); objects ignore member order, as keys compare decoded too. Equal values have equal
 * hashes. Cannot fail. */
int json_equal(const struct json_node *a, const struct json_node *b);

/* Appends the compact serialization of n (n->size bytes, scalars exactly as written).
 * Returns 0, or -1 when the buffer cannot grow. */
int json_write(struct buf *out, const struct json_node *n);

/* Writes the compact serialization of n (exactly n->size bytes) to dst, which must have room
 * for it, and returns the end of what it wrote. Cannot fail. */
char *json_write_raw(char *dst, const struct json_node *n);

/* Appends n indented by indent spaces per level (0 is compact). Returns 0 or -1. */
int json_write_pretty(struct buf *out, const struct json_node *n, int indent);

/* Appends bytes s[0..n) as a JSON string literal with quotes, escaping '"', '\\' and control
 * characters; a lone surrogate encoded in WTF-8 becomes \uXXXX. Returns 0 or -1. */
int json_write_string(struct buf *out, const char *s, size_t n);

/* Appends the decoded bytes of a string node (escapes resolved; a lone surrogate as WTF-8).
 * Returns 0, or -1 when the buffer cannot grow or n is not a string. */
int json_string_decode(const struct json_node *n, struct buf *out);

/* Decodes the body of a JSON string literal (raw, without quotes, already validated) into out.
 * Returns 0 or -1. */
int json_unescape(const char *raw, size_t len, struct buf *out);

/* 64-bit hash of bytes; the function every subtree hash is built from. */
uint64_t json_hash_bytes(const void *data, size_t len, uint64_t seed);

/* The 32-bit key hash stored in json_member.khash. */
uint32_t json_hash_key(const char *key, size_t klen);

/* Name of a type for messages: "null", "boolean", "number", "string", "array", "object". */
const char *json_type_name(int type);

#endif

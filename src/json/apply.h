/* RFC 6902 JSON Patch application on cJSON trees (cJSON is pollcast's mutable tree), with the
 * fidelity of the parser kept: json_to_cjson turns every number and every string into a cJSON_Raw
 * item holding its exact JSON text, so 9007199254740993, 1e400, 1.10 and "a\u0000b" go out as
 * written. Keys are cJSON's NUL-terminated strings: a document or patch value holding a member
 * name with a NUL byte ("a\u0000b" as a key) cannot be represented and is refused. */
#ifndef POLLCAST_JSON_APPLY_H
#define POLLCAST_JSON_APPLY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "json/json.h"

/* Nesting of arrays and objects that every function here accepts and produces at most: the
 * parser's default, so whatever the applier writes parses back. Every recursion below is bounded
 * by it. */
#define JSON_CJSON_MAX_DEPTH JSON_DEFAULT_MAX_DEPTH

/* Limits of one json_patch_apply call. A zeroed struct, or NULL, means the defaults. */
struct json_patch_opts {
    unsigned max_depth;    /* nesting the patched document may reach; at most and by default
                              JSON_CJSON_MAX_DEPTH */
    size_t max_copy_nodes; /* values that "copy" ops may create in one call, in total;
                              default JSON_PATCH_MAX_COPY_NODES (copies can double a document
                              per op) */
};

#define JSON_PATCH_MAX_COPY_NODES ((size_t)1 << 20)

struct json_patch_error {
    long op;       /* index of the failing op in the patch array, from 0 (out of memory during
                      an op counts as that op failing); -1 when the failure concerns the patch
                      as a whole (not an array, no document) */
    char msg[256]; /* "op 3: path /a/b: no such member", "patch is not a JSON array" */
};

/* Converts a fidelity tree into a new cJSON tree: null/true/false become cJSON_NULL/True/False,
 * numbers and strings cJSON_Raw items holding their exact source text (strings with quotes and
 * escapes as written), arrays and objects keep their order. Returns the tree, owned by the
 * caller (cJSON_Delete), or NULL with a message in err (when not NULL) when out of memory, when
 * a member name holds a NUL byte, or when n nests deeper than JSON_CJSON_MAX_DEPTH. */
cJSON *json_to_cjson(const struct json_node *n, char *err, size_t errlen);

/* Applies the operations of patch (a JSON array of op objects) to *doc in order, atomically:
 * on success *doc is the patched document (possibly a different root item: ops on path ""
 * replace it; the old root is freed), on failure *doc is left exactly as it was, same items,
 * same order. All six ops of RFC 6902 with RFC 6901 pointers: "-" appends, indices have no
 * leading zeros and must exist (add also accepts the size), "from" may not be a proper prefix of
 * "path" in a move, "" is the whole document (add, replace, copy and move may replace it;
 * remove may not). An op object lacking a member its op needs (op, path, from, value) or holding
 * it with the wrong type is an error; other members are ignored. "test" compares as RFC 6902
 * section 4.6 says (see json_cjson_equal). Values added from the patch are converted as
 * json_to_cjson does (so a patch value with a NUL key fails that op). *doc must be a tree the
 * caller owns; items of the patch are copied, patch itself is not kept.
 * Returns 0, or -1 with err (when not NULL) saying which op failed and why. */
int json_patch_apply(cJSON **doc, const struct json_node *patch, const struct json_patch_opts *opts,
                     struct json_patch_error *err);

/* Convenience for tests and tools: converts doc, applies patch with default limits and appends
 * the compact result to out. Returns 0, or -1 with err set (op -1 and a message when doc cannot
 * be converted or out cannot grow); out is back at its length on entry after a failure. */
int json_patch_apply_node(const struct json_node *doc, const struct json_node *patch,
                          struct buf *out, struct json_patch_error *err);

/* Appends the compact JSON text of item: Raw items verbatim, keys and plain strings escaped as
 * json_write_string does (a lone surrogate held as WTF-8 becomes \uXXXX), plain numbers as
 * integers when they are exact, else with 17 significant digits (non-finite as null).
 * Returns 0, or -1 (out back at its length on entry) when out cannot grow, an item has an
 * invalid type or the tree nests deeper than JSON_CJSON_MAX_DEPTH. */
int json_cjson_write(struct buf *out, const cJSON *item);

/* Compares two values as RFC 6902 "test" does: same type; strings equal when their decoded
 * bytes are (Raw strings are unescaped, so "\u0041" equals "A"); numbers equal when their
 * values are, exactly (1, 1.0, 10e-1 and 1E0 are equal; -0 equals 0; no rounding through
 * double when both are Raw; a number whose exponent does not fit in 17 digits equals only the
 * same text); objects equal when they have the same member names with equal values, in any
 * order; arrays element by element. Works on plain cJSON items too.
 * Returns 1 when equal, 0 when not, -1 when out of memory or deeper than JSON_CJSON_MAX_DEPTH. */
int json_cjson_equal(const cJSON *a, const cJSON *b);

#endif

/* RFC 6902 JSON Patch generation: the smallest practical patch between two fidelity trees,
 * with moves inside arrays, identity matching of array elements, and a bounded worst case. */
#ifndef POLLCAST_JSON_DIFF_H
#define POLLCAST_JSON_DIFF_H

#include <stddef.h>

#include "buf.h"
#include "json/json.h"

struct json_diff_opts {
    /* Member names that identify an object inside an array (an element whose identity member
     * has the same value in both documents is patched in place or moved, never removed and
     * added again). NULL-terminated; NULL means {"id", NULL}. */
    const char *const *id_keys;
};

/* Appends to out the compact JSON text of an RFC 6902 patch (an array, "[]" when a and b are
 * equal) that turns a into b when its operations are applied in order. Paths follow RFC 6901.
 * Stores the number of operations in *nops when nops is not NULL.
 * Returns 0, or -1 when out cannot grow (out is then back at its length on entry). */
int json_diff(const struct json_node *a, const struct json_node *b,
              const struct json_diff_opts *opts, struct buf *out, size_t *nops);

#endif

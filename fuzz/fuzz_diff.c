/* Fuzzes json_diff with json_patch_apply_node: the input is two JSON documents separated by a
 * NUL byte; the patch from the first to the second, applied to the first, must give a document
 * equal to the second, and the patch of a document to itself must be empty. "Equal" is
 * json_equal: strings by their decoded bytes (escapes may differ), numbers by their text. So
 * that a wrong json_equal cannot hide a wrong patch, json_equal is checked against a second walk
 * that decodes strings with json_string_decode, and documents json_equal calls equal must diff to
 * []. */
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "fuzz.h"
#include "json/apply.h"
#include "json/diff.h"
#include "json/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

/* True when the applier cannot represent the document at all (a member name holding a NUL
 * byte, nesting beyond its limit): json_to_cjson refuses it, and so would the apply. */
static int unrepresentable(const struct json_node *n)
{
    char err[128];
    cJSON *c = json_to_cjson(n, err, sizeof err);
    if (c == NULL)
        return 1;
    cJSON_Delete(c);
    return 0;
}

/* A second opinion on json_equal: the same values, with strings decoded by json_string_decode
 * (json_unescape) rather than by the decoder json_equal uses, and without the hashes. */
static int equal_decoded(const struct json_node *a, const struct json_node *b)
{
    if (a->type != b->type || a->count != b->count)
        return 0;
    switch (a->type) {
    case JSON_STRING: {
        struct buf x, y;
        buf_init(&x, 0);
        buf_init(&y, 0);
        FUZZ_ASSERT(json_string_decode(a, &x) == 0 && json_string_decode(b, &y) == 0);
        int eq = x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
        buf_dispose(&x);
        buf_dispose(&y);
        return eq;
    }
    case JSON_NUMBER:
        return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
    case JSON_ARRAY:
        for (uint32_t i = 0; i < a->count; i++)
            if (!equal_decoded(a->u.items[i], b->u.items[i]))
                return 0;
        return 1;
    case JSON_OBJECT:
        for (uint32_t i = 0; i < a->count; i++) {
            const struct json_member *m = &a->u.members[i];
            const struct json_node *o = json_object_get(b, m->key, m->klen);
            if (o == NULL || !equal_decoded(m->value, o))
                return 0;
        }
        return 1;
    default:
        return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memchr(data, '\0', size);
    if (sep == NULL)
        return 0;
    size_t alen = (size_t)(sep - data);
    struct json_doc *a = json_parse((const char *)data, alen, NULL, NULL);
    struct json_doc *b = a ? json_parse((const char *)sep + 1, size - alen - 1, NULL, NULL) : NULL;
    struct buf patch, out;
    buf_init(&patch, 0);
    buf_init(&out, 0);
    struct json_doc *pd = NULL, *res = NULL;
    if (a == NULL || b == NULL)
        goto out;
    size_t nops = 0;
    FUZZ_ASSERT(json_diff(b->root, b->root, NULL, &patch, &nops) == 0);
    FUZZ_ASSERT(nops == 0 && patch.len == 2 && memcmp(patch.data, "[]", 2) == 0);
    buf_truncate(&patch, 0);
    FUZZ_ASSERT(json_diff(a->root, b->root, NULL, &patch, &nops) == 0);
    /* Equal values (whatever their escapes, key order or whitespace) have no patch. */
    FUZZ_ASSERT(json_equal(a->root, b->root) == equal_decoded(a->root, b->root));
    FUZZ_ASSERT(!json_equal(a->root, b->root) || nops == 0);
    FUZZ_ASSERT(json_equal(a->root, b->root) == json_equal(b->root, a->root));
    FUZZ_ASSERT(!json_equal(a->root, b->root) || a->root->hash == b->root->hash);
    /* The ops wrap values of b in two more levels of nesting. */
    struct json_parse_opts popts = {.max_depth = JSON_DEFAULT_MAX_DEPTH + 8};
    struct json_error perr;
    pd = json_parse(patch.data, patch.len, &popts, &perr);
    if (pd == NULL)
        fprintf(stderr, "patch does not parse at %zu: %s\n%s\n", perr.offset, perr.msg, patch.data);
    FUZZ_ASSERT(pd != NULL);
    FUZZ_ASSERT(pd->root->type == JSON_ARRAY && pd->root->count == nops);
    struct json_patch_error err;
    if (json_patch_apply_node(a->root, pd->root, &out, &err) != 0) {
        if (unrepresentable(a->root) || unrepresentable(b->root))
            goto out;
        fprintf(stderr, "patch does not apply: op %ld: %s\npatch: %s\n", err.op, err.msg,
                patch.data);
        FUZZ_ASSERT(!"the patch applies");
    }
    res = json_parse(out.data, out.len, NULL, NULL);
    FUZZ_ASSERT(res != NULL);
    if (!json_equal(res->root, b->root))
        fprintf(stderr, "patch: %s\nresult: %s\n", patch.data, out.data);
    FUZZ_ASSERT(json_equal(res->root, b->root));
    FUZZ_ASSERT(equal_decoded(res->root, b->root));
out:
    json_doc_free(a);
    json_doc_free(b);
    json_doc_free(pd);
    json_doc_free(res);
    buf_dispose(&patch);
    buf_dispose(&out);
    return 0;
}

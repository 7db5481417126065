/* Fuzzes json_diff with json_patch_apply_node: the input is two JSON documents separated by a
 * NUL byte; the patch from the first to the second, applied to the first, must give a document
 * equal to the second, and the patch of a document to itself must be empty. */
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
out:
    json_doc_free(a);
    json_doc_free(b);
    json_doc_free(pd);
    json_doc_free(res);
    buf_dispose(&patch);
    buf_dispose(&out);
    return 0;
}

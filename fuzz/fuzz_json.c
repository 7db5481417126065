/* Fuzzes the fidelity JSON parser: whatever it accepts must serialize (compact and pretty) to
 * text that parses back to an equal document, and compact serialization must be stable. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "json/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

/* Parses text and checks it equals doc, with the same hash and the same compact text. */
static void check_reparse(const struct json_doc *doc, const struct buf *text,
                          const struct buf *compact)
{
    struct json_error err;
    struct json_doc *again = json_parse(text->data ? text->data : "", text->len, NULL, &err);
    if (again == NULL)
        fprintf(stderr, "reparse failed at %zu: %s\n", err.offset, err.msg);
    FUZZ_ASSERT(again != NULL);
    FUZZ_ASSERT(json_equal(doc->root, again->root));
    FUZZ_ASSERT(doc->root->hash == again->root->hash);
    FUZZ_ASSERT(doc->root->size == again->root->size);
    struct buf w;
    buf_init(&w, 0);
    FUZZ_ASSERT(json_write(&w, again->root) == 0);
    FUZZ_ASSERT(w.len == compact->len && memcmp(w.data, compact->data, w.len) == 0);
    buf_dispose(&w);
    json_doc_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_doc *doc = json_parse((const char *)data, size, NULL, NULL);
    if (doc == NULL)
        return 0;
    FUZZ_ASSERT(json_equal(doc->root, doc->root));
    struct buf compact, pretty;
    buf_init(&compact, 0);
    buf_init(&pretty, 0);
    FUZZ_ASSERT(json_write(&compact, doc->root) == 0);
    FUZZ_ASSERT(compact.len == doc->root->size);
    /* json_write_raw writes the same bytes. */
    char *raw = malloc(doc->root->size + 1);
    FUZZ_ASSERT(raw != NULL);
    char *end = json_write_raw(raw, doc->root);
    FUZZ_ASSERT((size_t)(end - raw) == compact.len && memcmp(raw, compact.data, compact.len) == 0);
    free(raw);
    check_reparse(doc, &compact, &compact);
    FUZZ_ASSERT(json_write_pretty(&pretty, doc->root, 2) == 0);
    check_reparse(doc, &pretty, &compact);
    buf_dispose(&compact);
    buf_dispose(&pretty);
    json_doc_free(doc);
    return 0;
}

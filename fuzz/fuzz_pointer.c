/* Fuzzes RFC 6901 JSON Pointers: a pointer that parses must be rebuilt byte for byte from its
 * segments by json_pointer_append, array indices must read back as written, and the pointer is
 * also used as the path of a "test" op on a fixed document (which must not crash). */
#include <inttypes.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "json/apply.h"
#include "json/json.h"
#include "json/pointer.h"

static struct json_doc *doc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char text[] = "{\"a\":{\"b\":[1,2,{\"c~/\":1,\"\":[[]]}]},\"\":1,\"0\":[0],"
                               "\"~\":{\"/\":null}}";
    doc = json_parse(text, sizeof text - 1, NULL, NULL);
    return doc ? 0 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct buf seg, rebuilt, patch, out;
    buf_init(&seg, 0);
    buf_init(&rebuilt, 0);
    buf_init(&patch, 0);
    buf_init(&out, 0);
    int r;
    for (;;) {
        r = json_pointer_next(&p, end, &seg);
        if (r != 1)
            break;
        FUZZ_ASSERT(json_pointer_append(&rebuilt, seg.data ? seg.data : "", seg.len) == 0);
        size_t index;
        int ir = json_pointer_index(seg.data ? seg.data : "", seg.len, &index);
        if (ir == 0) {
            char digits[32];
            int n = snprintf(digits, sizeof digits, "%zu", index);
            FUZZ_ASSERT((size_t)n == seg.len && memcmp(digits, seg.data, seg.len) == 0);
        } else if (ir == 1) {
            FUZZ_ASSERT(seg.len == 1 && seg.data[0] == '-');
        }
    }
    if (r == 0) {
        FUZZ_ASSERT(p == end);
        FUZZ_ASSERT(rebuilt.len == size && (size == 0 || memcmp(rebuilt.data, data, size) == 0));
    }
    /* The same text as the path of an op, whatever it holds. */
    buf_puts(&patch, "[{\"op\":\"test\",\"path\":");
    json_write_string(&patch, (const char *)data, size);
    buf_puts(&patch, ",\"value\":1}]");
    struct json_doc *pd = json_parse(patch.data, patch.len, NULL, NULL);
    if (pd != NULL) {
        struct json_patch_error err;
        json_patch_apply_node(doc->root, pd->root, &out, &err);
        json_doc_free(pd);
    }
    buf_dispose(&seg);
    buf_dispose(&rebuilt);
    buf_dispose(&patch);
    buf_dispose(&out);
    return 0;
}

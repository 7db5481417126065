/* Fuzzes the SSE event ids (hub_format_id / hub_parse_id), which come back from clients as
 * Last-Event-ID: any text that parses must format and parse back to the same pair, and every
 * pair of 64-bit values (epochs carry random bits, up to 13 base-36 digits) must survive the
 * round trip. */
#include <string.h>

#include "fuzz.h"
#include "hub.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[64], again[64];
    uint64_t e, s, e2, s2;
    if (size >= 16) {
        memcpy(&e, data, 8);
        memcpy(&s, data + 8, 8);
        size_t n = hub_format_id(id, e, s);
        FUZZ_ASSERT(n == strlen(id) && n < 32);
        FUZZ_ASSERT(hub_parse_id(id, &e2, &s2) == 0 && e2 == e && s2 == s);
    }
    /* The input as a client's Last-Event-ID (a header value: up to the first NUL). */
    char *text = malloc(size + 1);
    FUZZ_ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    if (hub_parse_id(text, &e, &s) == 0) {
        size_t len = hub_format_id(again, e, s);
        FUZZ_ASSERT(len < sizeof again);
        FUZZ_ASSERT(hub_parse_id(again, &e2, &s2) == 0 && e2 == e && s2 == s);
    }
    free(text);
    FUZZ_ASSERT(hub_parse_id(NULL, &e, &s) == -1);
    return 0;
}

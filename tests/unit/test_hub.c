/* Unit tests of the hub's ids: topic epochs (hub_epoch_next on a fixed clock, as instances
 * started in the same millisecond) and the id text (hub_format_id / hub_parse_id). */
#include "harness.h"

#include <stdint.h>

#include "hub.h"

#define FIXED_MS 1764979200123ull /* 2025-12-06T00:00:00.123Z */
#define DRAWS    200

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Instances that make the same topic in the same millisecond: each starts with last = 0. */
static void test_epoch_same_millisecond(void)
{
    uint64_t e[DRAWS];
    for (size_t i = 0; i < DRAWS; i++) {
        e[i] = hub_epoch_next(FIXED_MS, 0);
        /* The time is the high part, so epochs of later milliseconds are larger. */
        CHECK(e[i] >> HUB_EPOCH_RANDOM_BITS == FIXED_MS - HUB_EPOCH_BASE_MS);
    }
    qsort(e, DRAWS, sizeof(e[0]), cmp_u64);
    size_t same = 0;
    for (size_t i = 1; i < DRAWS; i++)
        same += e[i] == e[i - 1];
    /* With 22 random bits, 200 draws share a value with a chance of about 0.5%, two pairs
     * about 1 in 100,000: the old clock-only epochs were all equal. */
    CHECK(same <= 1);
    char a[40], b[40];
    hub_format_id(a, e[0], 1);
    hub_format_id(b, e[DRAWS - 1], 1);
    CHECK(strcmp(a, b) != 0);
}

static void test_epoch_increases(void)
{
    /* In one process, epochs increase even when the clock stands still or goes back. */
    uint64_t last = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t e = hub_epoch_next(FIXED_MS - (uint64_t)(i % 3 == 2), last);
        CHECK(e > last);
        if (i > 0) /* the same millisecond again: never more than one millisecond's worth */
            CHECK(e - last <= (UINT64_C(1) << HUB_EPOCH_RANDOM_BITS) + 65536);
        last = e;
    }
    /* A later millisecond gives a larger epoch than any of the earlier one. */
    uint64_t a = hub_epoch_next(FIXED_MS, 0);
    uint64_t b = hub_epoch_next(FIXED_MS + 1, 0);
    CHECK(b > a);
    /* A clock before the base counts as the base. */
    CHECK(hub_epoch_next(0, 0) >> HUB_EPOCH_RANDOM_BITS == 0);
}

static void test_id_text(void)
{
    char id[40];
    uint64_t epoch = 0, seq = 0;
    /* Today's epochs: 12 base36 digits or fewer, [0-9a-z.] only. */
    uint64_t e = hub_epoch_next(FIXED_MS, 0);
    size_t n = hub_format_id(id, e, 42);
    CHECK(n <= 12 + 1 + 2);
    for (size_t i = 0; i < n; i++)
        CHECK((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || id[i] == '.');
    REQUIRE(hub_parse_id(id, &epoch, &seq) == 0);
    CHECK(epoch == e);
    CHECK(seq == 42);
    /* The largest epoch (13 digits) round-trips; past 64 bits is malformed. */
    hub_format_id(id, UINT64_MAX, 1);
    CHECK_STR(id, "3w5e11264sgsf.1");
    REQUIRE(hub_parse_id(id, &epoch, &seq) == 0);
    CHECK(epoch == UINT64_MAX);
    CHECK(hub_parse_id("3w5e11264sgsg.1", &epoch, &seq) == -1);
    CHECK(hub_parse_id("zzzzzzzzzzzzz.1", &epoch, &seq) == -1);
    CHECK(hub_parse_id("10000000000000.1", &epoch, &seq) == -1);
    CHECK(hub_parse_id("mxc2fku6.2", &epoch, &seq) == 0);
    CHECK(hub_parse_id("MXC2FKU6.2", &epoch, &seq) == -1);
    CHECK(hub_parse_id("a.", &epoch, &seq) == -1);
}

int main(void)
{
    RUN(test_epoch_same_millisecond);
    RUN(test_epoch_increases);
    RUN(test_id_text);
    return harness_report("test_hub");
}

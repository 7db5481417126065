/* Tests of ratelimit.c: the burst and the refill rate of one address's bucket, independence of
 * addresses, IPv6 grouped by /64 and IPv4-mapped IPv6 counted as IPv4, eviction of the stalest
 * address when the table is full, a clock that goes back, huge idle times, many addresses
 * (hash chains stay correct through evictions) and the degenerate parameters. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "harness.h"
#include "ratelimit.h"

static struct sockaddr_in v4(const char *s)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    inet_pton(AF_INET, s, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *s)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(40000);
    inet_pton(AF_INET6, s, &a.sin6_addr);
    return a;
}

static int allow4(struct ratelimit *rl, const char *s, uint64_t now)
{
    struct sockaddr_in a = v4(s);
    return ratelimit_allow(rl, (struct sockaddr *)&a, sizeof(a), now);
}

static int allow6(struct ratelimit *rl, const char *s, uint64_t now)
{
    struct sockaddr_in6 a = v6(s);
    return ratelimit_allow(rl, (struct sockaddr *)&a, sizeof(a), now);
}

#define ALLOW4 allow4
#define ALLOW6 allow6

/* How many of n calls at time now are allowed. */
static int allowed4(struct ratelimit *rl, const char *addr, int n, uint64_t now)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += ALLOW4(rl, addr, now);
    return k;
}

static void test_burst_then_rate(void)
{
    struct ratelimit *rl = ratelimit_new(10, 5, 64);
    REQUIRE(rl != NULL);
    uint64_t t = 1000000;
    /* A new address has a full bucket: exactly the burst, then nothing at the same instant. */
    CHECK_INT(allowed4(rl, "192.0.2.1", 8, t), 5);
    CHECK_INT(ALLOW4(rl, "192.0.2.1", t), 0);
    /* 10 per second: one token each 100 ms, none before. */
    CHECK_INT(ALLOW4(rl, "192.0.2.1", t + 99), 0);
    CHECK_INT(ALLOW4(rl, "192.0.2.1", t + 100), 1);
    CHECK_INT(ALLOW4(rl, "192.0.2.1", t + 100), 0);
    /* 350 ms later: three and a half tokens, so three connections. */
    CHECK_INT(allowed4(rl, "192.0.2.1", 10, t + 450), 3);
    /* The half token carries over: 50 ms more make a whole one. */
    CHECK_INT(ALLOW4(rl, "192.0.2.1", t + 500), 1);
    /* A long idle fills the bucket to the burst, not beyond. */
    CHECK_INT(allowed4(rl, "192.0.2.1", 100, t + 3600 * 1000), 5);
    /* One second of steady calls every 10 ms from an empty bucket: 10 allowed. */
    uint64_t s = t + 3600 * 1000;
    int k = 0;
    for (uint64_t ms = 10; ms <= 1000; ms += 10)
        k += ALLOW4(rl, "192.0.2.1", s + ms);
    CHECK_INT(k, 10);
    ratelimit_free(rl);
}

static void test_addresses_are_independent(void)
{
    struct ratelimit *rl = ratelimit_new(1, 3, 64);
    REQUIRE(rl != NULL);
    CHECK_INT(allowed4(rl, "198.51.100.7", 10, 5000), 3);
    CHECK_INT(allowed4(rl, "198.51.100.8", 10, 5000), 3);
    /* The port is not part of the key. */
    struct sockaddr_in a = v4("198.51.100.7");
    a.sin_port = htons(1);
    CHECK_INT(ratelimit_allow(rl, (struct sockaddr *)&a, sizeof(a), 5000), 0);
    /* IPv6: one bucket per /64; another /64 has its own. */
    CHECK_INT(ALLOW6(rl, "2001:db8:1:2::1", 5000), 1);
    CHECK_INT(ALLOW6(rl, "2001:db8:1:2:ffff:ffff:ffff:ffff", 5000), 1);
    CHECK_INT(ALLOW6(rl, "2001:db8:1:2:dead:beef::", 5000), 1);
    CHECK_INT(ALLOW6(rl, "2001:db8:1:2::99", 5000), 0);
    CHECK_INT(ALLOW6(rl, "2001:db8:1:3::1", 5000), 1);
    CHECK_INT(ALLOW6(rl, "2001:db8:1:1::1", 5000), 1);
    /* IPv4-mapped IPv6 (a dual-stack socket) shares the IPv4 address's bucket. */
    CHECK_INT(allowed4(rl, "203.0.113.9", 2, 5000), 2);
    CHECK_INT(ALLOW6(rl, "::ffff:203.0.113.9", 5000), 1);
    CHECK_INT(ALLOW6(rl, "::ffff:203.0.113.9", 5000), 0);
    CHECK_INT(ALLOW4(rl, "203.0.113.9", 5000), 0);
    /* ...but the IPv6 address ::cb00:7109 (no ffff) is another client. */
    CHECK_INT(ALLOW6(rl, "::cb00:7109", 5000), 1);
    ratelimit_free(rl);
}

static void test_eviction_of_the_stalest(void)
{
    struct ratelimit *rl = ratelimit_new(1, 2, 3);
    REQUIRE(rl != NULL);
    /* A, B, C exhaust their buckets; B is then seen again, so A is the stalest. */
    CHECK_INT(allowed4(rl, "10.0.0.1", 3, 100), 2);
    CHECK_INT(allowed4(rl, "10.0.0.2", 3, 101), 2);
    CHECK_INT(allowed4(rl, "10.0.0.3", 3, 102), 2);
    CHECK_INT(ALLOW4(rl, "10.0.0.2", 103), 0);
    CHECK_INT(ALLOW4(rl, "10.0.0.1", 104), 0);
    /* Seen last: A at 104, B at 103, C at 102. D evicts C, the stalest. */
    CHECK_INT(allowed4(rl, "10.0.0.4", 3, 105), 2);
    /* C comes back as a new address with a full bucket (and evicts B, now the stalest). */
    CHECK_INT(allowed4(rl, "10.0.0.3", 3, 106), 2);
    /* A and D were kept: still empty. */
    CHECK_INT(ALLOW4(rl, "10.0.0.1", 107), 0);
    CHECK_INT(ALLOW4(rl, "10.0.0.4", 107), 0);
    /* B was forgotten: full again. */
    CHECK_INT(allowed4(rl, "10.0.0.2", 3, 108), 2);
    ratelimit_free(rl);
}

static void test_clock_and_extremes(void)
{
    struct ratelimit *rl = ratelimit_new(1000, 1, 8);
    REQUIRE(rl != NULL);
    CHECK_INT(ALLOW4(rl, "192.0.2.50", 10000), 1);
    CHECK_INT(ALLOW4(rl, "192.0.2.50", 10000), 0);
    /* A clock that goes back refills nothing, and does not refill twice when it comes back. */
    CHECK_INT(ALLOW4(rl, "192.0.2.50", 5000), 0);
    CHECK_INT(ALLOW4(rl, "192.0.2.50", 10000), 0);
    CHECK_INT(ALLOW4(rl, "192.0.2.50", 10001), 1);
    /* An idle of almost 2^64 ms does not overflow: the bucket is full, not empty. */
    CHECK_INT(ALLOW4(rl, "192.0.2.50", UINT64_MAX - 1), 1);
    CHECK_INT(ALLOW4(rl, "192.0.2.50", UINT64_MAX - 1), 0);
    ratelimit_free(rl);

    /* The largest rate and burst the config accepts. */
    rl = ratelimit_new(10000000, 10000000, 4);
    REQUIRE(rl != NULL);
    CHECK_INT(allowed4(rl, "192.0.2.51", 1000, 1), 1000);
    CHECK_INT(ALLOW4(rl, "192.0.2.51", UINT64_MAX), 1);
    ratelimit_free(rl);

    /* Burst 0 is taken as 1; max_entries 0 as 1; rate 0 limits nothing. */
    rl = ratelimit_new(1, 0, 0);
    REQUIRE(rl != NULL);
    CHECK_INT(ALLOW4(rl, "192.0.2.52", 1), 1);
    CHECK_INT(ALLOW4(rl, "192.0.2.52", 1), 0);
    CHECK_INT(allowed4(rl, "192.0.2.53", 2, 1), 1);
    CHECK_INT(ALLOW4(rl, "192.0.2.52", 2), 1); /* forgotten: a one-entry table */
    ratelimit_free(rl);
    rl = ratelimit_new(0, 1, 4);
    REQUIRE(rl != NULL);
    CHECK_INT(allowed4(rl, "192.0.2.54", 100, 1), 100);
    ratelimit_free(rl);

    /* Addresses without a key are not limited; NULL is accepted by free. */
    rl = ratelimit_new(1, 1, 4);
    REQUIRE(rl != NULL);
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    for (int i = 0; i < 5; i++)
        CHECK_INT(ratelimit_allow(rl, (struct sockaddr *)&un, sizeof(un), 1), 1);
    struct sockaddr_in short4 = v4("192.0.2.55");
    CHECK_INT(ratelimit_allow(rl, (struct sockaddr *)&short4, 4, 1), 1);
    CHECK_INT(ratelimit_allow(rl, NULL, 0, 1), 1);
    ratelimit_free(rl);
    ratelimit_free(NULL);
}

/* Many addresses through a small table: each new address always gets its burst (the table never
 * confuses two addresses, even after chains were relinked by thousands of evictions), and
 * addresses seen recently keep their state. */
static void test_many_addresses(void)
{
    enum { TABLE = 257, ROUNDS = 20000 };
    struct ratelimit *rl = ratelimit_new(1, 2, TABLE);
    REQUIRE(rl != NULL);
    int bad = 0;
    char a[64];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(a, sizeof(a), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (ALLOW4(rl, a, 1000) != 1 || ALLOW4(rl, a, 1000) != 1 || ALLOW4(rl, a, 1000) != 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    /* The last TABLE addresses are still known, and empty (checked oldest first, so that each
     * check evicts nothing); the one before them was forgotten: a full bucket again. */
    bad = 0;
    for (int i = ROUNDS - TABLE; i < ROUNDS; i++) {
        snprintf(a, sizeof(a), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (ALLOW4(rl, a, 1000) != 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    int j = ROUNDS - TABLE - 1;
    snprintf(a, sizeof(a), "10.%d.%d.%d", (j >> 16) & 255, (j >> 8) & 255, j & 255);
    CHECK_INT(ALLOW4(rl, a, 1000), 1);
    /* The same through IPv6 /64s. */
    bad = 0;
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(a, sizeof(a), "2001:db8:%x:%x::1", (i >> 16) & 0xffff, i & 0xffff);
        if (ALLOW6(rl, a, 1000) != 1 || ALLOW6(rl, a, 1000) != 1 || ALLOW6(rl, a, 1000) != 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    ratelimit_free(rl);
}

/* O(1) per call: a million calls over 65,536 addresses in a full table take well under a
 * second (generous: sanitizer builds run it too). */
static void test_cost_per_call(void)
{
    struct ratelimit *rl = ratelimit_new(50, 200, 65536);
    REQUIRE(rl != NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sockaddr_in a = v4("0.0.0.0");
    long allowed = 0;
    for (uint32_t i = 0; i < 1000000; i++) {
        a.sin_addr.s_addr = htonl(0x0a000000u + (i * 2654435761u) % 100000u);
        allowed += ratelimit_allow(rl, (struct sockaddr *)&a, sizeof(a), i / 100);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    fprintf(stderr, "test_cost_per_call: 1e6 calls in %.1f ms, %ld allowed\n", ms, allowed);
    CHECK(ms < 3000);
    /* 100,000 addresses over a 65,536-entry table: evictions happen, and each call is allowed
     * (every address is seen ten times at most, under its burst of 200). */
    CHECK_INT(allowed, 1000000);
    ratelimit_free(rl);
}

int main(void)
{
    RUN(test_burst_then_rate);
    RUN(test_addresses_are_independent);
    RUN(test_eviction_of_the_stalest);
    RUN(test_clock_and_extremes);
    RUN(test_many_addresses);
    RUN(test_cost_per_call);
    return harness_report("test_ratelimit");
}

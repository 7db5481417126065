/* Per-address token buckets for the rate of new connections. Every entry lives in one array
 * allocated up front (no allocation per call), found through a chained hash table keyed with
 * SipHash and a random seed (so that clients cannot aim many addresses at one chain), and kept
 * on a least-recently-used list so that a full table forgets its stalest address in O(1). */
#include "ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NIL UINT32_MAX
/* Tokens are counted in thousandths, so that a rate in tokens per second refills exactly
 * `rate` units per millisecond without floating point. */
#define MILLI 1000u
/* Indexes are 32-bit; far more entries than any server tracks. */
#define MAX_ENTRIES (1u << 24)

struct rl_entry {
    uint64_t k0, k1;       /* the address key: see key_of */
    uint64_t tokens;       /* thousandths of a token */
    uint64_t last_ms;      /* when tokens was last brought up to date */
    uint32_t chain;        /* next entry in the same hash bucket */
    uint32_t newer, older; /* neighbours on the LRU list */
    uint32_t bucket;
};

struct ratelimit {
    uint64_t rate;     /* thousandths of a token per millisecond (= tokens per second) */
    uint64_t capacity; /* burst, in thousandths */
    uint64_t full_ms;  /* time that refills an empty bucket; longer idles just fill it */
    uint64_t seed[2];
    uint32_t max, used;
    uint32_t mask;     /* buckets - 1 */
    uint32_t *buckets; /* head entry of each chain, NIL when empty */
    uint32_t newest, oldest;
    struct rl_entry *entries;
};

/* ---- SipHash-1-3 of a 16-byte key ---------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash16(const uint64_t seed[2], uint64_t m0, uint64_t m1)
{
    uint64_t v0 = seed[0] ^ 0x736f6d6570736575ull, v1 = seed[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = seed[0] ^ 0x6c7967656e657261ull, v3 = seed[1] ^ 0x7465646279746573ull;
    v3 ^= m0;
    SIPROUND;
    v0 ^= m0;
    v3 ^= m1;
    SIPROUND;
    v0 ^= m1;
    uint64_t b = (uint64_t)16 << 56;
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- keys ---------------------------------------------------------------------------------- */

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The key of a client: an IPv4 address whole (also when it comes IPv4-mapped on an IPv6
 * socket), an IPv6 address by its /64, since one subscriber line usually holds a whole /64.
 * k1 tells the families apart. Returns 0, or -1 for an address that has no key. */
static int key_of(const struct sockaddr *addr, socklen_t len, uint64_t *k0, uint64_t *k1)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (addr == NULL)
        return -1;
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        *k0 = in->sin_addr.s_addr;
        *k1 = 4;
        return 0;
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            uint32_t v4;
            memcpy(&v4, a + 12, sizeof(v4));
            *k0 = v4;
            *k1 = 4;
        } else {
            *k0 = load64(a);
            *k1 = 6;
        }
        return 0;
    }
    return -1;
}

/* ---- the table ----------------------------------------------------------------------------- */

struct ratelimit *ratelimit_new(uint64_t rate_per_s, uint64_t burst, size_t max_entries)
{
    if (burst == 0)
        burst = 1;
    if (burst > UINT64_MAX / MILLI / 2)
        burst = UINT64_MAX / MILLI / 2;
    if (max_entries == 0)
        max_entries = 1;
    if (max_entries > MAX_ENTRIES)
        max_entries = MAX_ENTRIES;
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    rl->rate = rate_per_s;
    rl->capacity = burst * MILLI;
    rl->full_ms = rate_per_s ? rl->capacity / rate_per_s + 1 : 0;
    rl->max = (uint32_t)max_entries;
    /* Twice as many buckets as entries, a power of two: chains of one or two entries. */
    uint32_t nb = 2;
    while (nb < 2 * rl->max)
        nb <<= 1;
    rl->mask = nb - 1;
    rl->buckets = malloc((size_t)nb * sizeof(*rl->buckets));
    rl->entries = malloc((size_t)rl->max * sizeof(*rl->entries));
    if (rl->buckets == NULL || rl->entries == NULL) {
        ratelimit_free(rl);
        return NULL;
    }
    for (uint32_t i = 0; i < nb; i++)
        rl->buckets[i] = NIL;
    rl->newest = rl->oldest = NIL;
    if (getrandom(rl->seed, sizeof(rl->seed), GRND_NONBLOCK) != (ssize_t)sizeof(rl->seed)) {
        /* No entropy yet (early boot): a seed that still differs per process and run. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rl->seed[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)rl;
        rl->seed[1] = (uint64_t)ts.tv_sec ^ rotl(rl->seed[0], 29);
    }
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->buckets);
    free(rl->entries);
    free(rl);
}

static void lru_unlink(struct ratelimit *rl, uint32_t i)
{
    struct rl_entry *e = &rl->entries[i];
    if (e->newer != NIL)
        rl->entries[e->newer].older = e->older;
    else
        rl->newest = e->older;
    if (e->older != NIL)
        rl->entries[e->older].newer = e->newer;
    else
        rl->oldest = e->newer;
}

static void lru_push_newest(struct ratelimit *rl, uint32_t i)
{
    struct rl_entry *e = &rl->entries[i];
    e->newer = NIL;
    e->older = rl->newest;
    if (rl->newest != NIL)
        rl->entries[rl->newest].newer = i;
    rl->newest = i;
    if (rl->oldest == NIL)
        rl->oldest = i;
}

/* Removes entry i from its hash chain. Chains hold one or two entries on average. */
static void chain_unlink(struct ratelimit *rl, uint32_t i)
{
    uint32_t *link = &rl->buckets[rl->entries[i].bucket];
    while (*link != i)
        link = &rl->entries[*link].chain;
    *link = rl->entries[i].chain;
}

/* The entry of (k0, k1), created with a full bucket when the address is new; a full table
 * gives up its least recently seen address. Never fails. */
static struct rl_entry *entry_for(struct ratelimit *rl, uint64_t k0, uint64_t k1, uint64_t now_ms)
{
    uint32_t b = (uint32_t)siphash16(rl->seed, k0, k1) & rl->mask;
    for (uint32_t i = rl->buckets[b]; i != NIL; i = rl->entries[i].chain) {
        struct rl_entry *e = &rl->entries[i];
        if (e->k0 == k0 && e->k1 == k1) {
            if (rl->newest != i) {
                lru_unlink(rl, i);
                lru_push_newest(rl, i);
            }
            return e;
        }
    }
    uint32_t i;
    if (rl->used < rl->max) {
        i = rl->used++;
    } else {
        i = rl->oldest;
        lru_unlink(rl, i);
        chain_unlink(rl, i);
    }
    struct rl_entry *e = &rl->entries[i];
    e->k0 = k0;
    e->k1 = k1;
    e->tokens = rl->capacity;
    e->last_ms = now_ms;
    e->bucket = b;
    e->chain = rl->buckets[b];
    rl->buckets[b] = i;
    lru_push_newest(rl, i);
    return e;
}

int ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
                    uint64_t now_ms)
{
    uint64_t k0, k1;
    /* No rate means no limit; an address without a key (not IP) is not limited either. */
    if (rl == NULL || rl->rate == 0 || key_of(addr, len, &k0, &k1) != 0)
        return 1;
    struct rl_entry *e = entry_for(rl, k0, k1, now_ms);
    if (now_ms > e->last_ms) {
        /* Bound the elapsed time first, so that the product cannot overflow. */
        uint64_t elapsed = now_ms - e->last_ms;
        if (elapsed >= rl->full_ms)
            e->tokens = rl->capacity;
        else if (e->tokens + elapsed * rl->rate >= rl->capacity)
            e->tokens = rl->capacity;
        else
            e->tokens += elapsed * rl->rate;
        e->last_ms = now_ms;
    }
    /* A clock that went back refills nothing until it passes last_ms again. */
    if (e->tokens < MILLI)
        return 0;
    e->tokens -= MILLI;
    return 1;
}

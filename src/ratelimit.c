/* PLACEHOLDER until the limiter lands: allows everything. */
#include "ratelimit.h"

#include <stdlib.h>

struct ratelimit {
    int unused;
};

struct ratelimit *ratelimit_new(uint64_t rate_per_s, uint64_t burst, size_t max_entries)
{
    return calloc(1, sizeof(struct ratelimit));
}

void ratelimit_free(struct ratelimit *rl)
{
    free(rl);
}

int ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
                    uint64_t now_ms)
{
    return 1;
}

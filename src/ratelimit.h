/* Per-address rate limit of new connections: a token bucket per client address (IPv6 by /64),
 * in a bounded table, so that one client cannot flood the server with connections. */
#ifndef POLLCAST_RATELIMIT_H
#define POLLCAST_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit;

/* Returns a limiter allowing rate_per_s new connections per address on average and bursts of
 * burst, tracking at most max_entries addresses (the stalest are forgotten first). NULL on
 * OOM. */
struct ratelimit *ratelimit_new(uint64_t rate_per_s, uint64_t burst, size_t max_entries);

/* Frees the limiter. Accepts NULL. */
void ratelimit_free(struct ratelimit *rl);

/* Takes one token for a new connection from addr at now_ms. Returns 1 when it may proceed, 0
 * when the address is over its rate. */
int ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
                    uint64_t now_ms);

#endif

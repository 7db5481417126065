/* Host name lookups off the event loop: getaddrinfo runs in a thread per lookup, its result comes
 * back on the loop through a pipe, and a loop timer bounds how long the caller waits. Used to
 * judge an ad-hoc URL's addresses before its stream starts; the address check at connect stays
 * what stops DNS rebinding. */
#ifndef POLLCAST_RESOLVE_H
#define POLLCAST_RESOLVE_H

#include <stdint.h>

struct addrinfo;
struct loop;
struct resolver;
struct resolve_job;

enum resolve_status {
    RESOLVE_OK,      /* ai holds the addresses */
    RESOLVE_FAILED,  /* the name did not resolve (ai is NULL) */
    RESOLVE_TIMEOUT, /* no answer within the timeout (ai is NULL) */
};

/* Called once per lookup, on the loop, unless the lookup was cancelled. ai (may be NULL) is
 * valid during the call only. The job is freed after the callback returns. */
typedef void (*resolve_cb)(void *arg, enum resolve_status status, const struct addrinfo *ai);

/* Returns a resolver on loop that runs at most max_jobs lookups at once, or NULL on failure
 * (OOM, no pipe). */
struct resolver *resolver_new(struct loop *loop, unsigned max_jobs);

/* Cancels every lookup (their callbacks are not called), waits for the lookup threads still
 * running (each is bounded by the system resolver's own timeouts) and frees. Accepts NULL. */
void resolver_free(struct resolver *r);

/* Starts looking up host (a name or an address, for TCP) and calls cb on the loop with the
 * result, or with RESOLVE_TIMEOUT after timeout_ms. Never calls cb from inside this call.
 * Returns the job, which the caller may cancel until cb runs; NULL when max_jobs lookups are
 * running already or on failure (cb is then never called). host is copied. */
struct resolve_job *resolver_start(struct resolver *r, const char *host, uint64_t timeout_ms,
                                   resolve_cb cb, void *arg);

/* Cancels a job whose callback has not run: it never will. Cannot fail. */
void resolve_cancel(struct resolve_job *job);

#endif

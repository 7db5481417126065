/* Unit tests of the threaded resolver on the event loop: a lookup's callback runs on the loop
 * (never from resolver_start), a cancelled one never runs, max_jobs bounds the lookups, and the
 * resolver frees with lookups in flight. */
#include "harness.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "loop.h"
#include "resolve.h"

struct result {
    struct loop *loop;
    int calls;
    enum resolve_status status;
    int loopback; /* every address was loopback */
    int naddrs;
};

static void on_result(void *arg, enum resolve_status status, const struct addrinfo *ai)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    r->loopback = 1;
    for (; ai; ai = ai->ai_next) {
        r->naddrs++;
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)ai->ai_addr;
            r->loopback &= (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ai->ai_addr;
            r->loopback &= IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
        }
    }
    loop_stop(r->loop);
}

static void on_guard(struct loop *loop, struct loop_timer *t, void *arg)
{
    *(int *)arg = 1;
    loop_stop(loop);
}

/* Runs the loop until a callback stops it or timeout_ms pass; returns 1 on the timeout. */
static int run_for(struct loop *loop, uint64_t timeout_ms)
{
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, timeout_ms);
    loop_run(loop);
    loop_timer_free(guard);
    return timed_out;
}

static void test_lookup(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct resolver *rs = resolver_new(loop, 4);
    REQUIRE(rs != NULL);
    struct result r = {.loop = loop};
    REQUIRE(resolver_start(rs, "localhost", 5000, on_result, &r) != NULL);
    CHECK_INT(r.calls, 0); /* never from inside resolver_start */
    CHECK_INT(run_for(loop, 8000), 0);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, RESOLVE_OK);
    CHECK(r.naddrs >= 1 && r.loopback);

    /* A name that cannot resolve (RFC 6761 .invalid). */
    struct result bad = {.loop = loop};
    REQUIRE(resolver_start(rs, "no-such-host.invalid", 5000, on_result, &bad) != NULL);
    CHECK_INT(run_for(loop, 8000), 0);
    CHECK_INT(bad.calls, 1);
    CHECK(bad.status == RESOLVE_FAILED || bad.status == RESOLVE_TIMEOUT);
    CHECK_INT(bad.naddrs, 0);
    resolver_free(rs);
    loop_free(loop);
}

static void test_cancel_and_bounds(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct resolver *rs = resolver_new(loop, 2);
    REQUIRE(rs != NULL);
    struct result a = {.loop = loop}, b = {.loop = loop}, c = {.loop = loop};
    struct resolve_job *ja = resolver_start(rs, "localhost", 5000, on_result, &a);
    struct resolve_job *jb = resolver_start(rs, "127.0.0.1", 5000, on_result, &b);
    REQUIRE(ja != NULL && jb != NULL);
    /* Two lookups at most. */
    CHECK(resolver_start(rs, "localhost", 5000, on_result, &c) == NULL);
    resolve_cancel(ja);
    CHECK_INT(run_for(loop, 8000), 0); /* b's callback stops the loop */
    CHECK_INT(b.calls, 1);
    CHECK_INT(b.status, RESOLVE_OK);
    /* Give a's thread time to report: its callback must never run. */
    CHECK_INT(run_for(loop, 300), 1);
    CHECK_INT(a.calls, 0);
    /* Slots are free again once the threads reported. */
    REQUIRE(resolver_start(rs, "localhost", 5000, on_result, &c) != NULL);
    /* Freed with a lookup in flight: no callback, no leak. */
    resolver_free(rs);
    CHECK_INT(c.calls, 0);
    loop_free(loop);
}

int main(void)
{
    RUN(test_lookup);
    RUN(test_cancel_and_bounds);
    return harness_report("test_resolve");
}

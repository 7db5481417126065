/* Unit tests of the event loop: fd watches, the timer heap, deferred callbacks, and callbacks
 * that free or unwatch things during dispatch. */
#include "harness.h"
#include "loop.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A timer that stops the loop, so that no test can hang: tests wait on events and this is only
 * the bound. */
static void on_guard(struct loop *loop, struct loop_timer *t, void *arg)
{
    *(int *)arg = 1;
    loop_stop(loop);
}

/* ---- fd watches ---- */

struct fdctx {
    int calls;
    uint32_t events;
    int fd;
    int unwatch_self;
    int stop_after;
    char got[16];
};

static void on_readable(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct fdctx *c = arg;
    c->calls++;
    c->events = events;
    c->fd = fd;
    if (events & EPOLLIN) {
        ssize_t n = read(fd, c->got, sizeof(c->got) - 1);
        c->got[n > 0 ? n : 0] = '\0';
    }
    if (c->unwatch_self)
        CHECK_INT(loop_unwatch(loop, fd), 0);
    if (c->calls >= c->stop_after)
        loop_stop(loop);
}

static void test_fd_watch(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    struct fdctx c = {.stop_after = 1};
    CHECK_INT(loop_watch(loop, p[0], EPOLLIN, on_readable, &c), 0);
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 2000);
    CHECK_INT(write(p[1], "hi", 2), 2);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(timed_out, 0);
    CHECK_INT(c.calls, 1);
    CHECK_INT(c.fd, p[0]);
    CHECK(c.events & EPOLLIN);
    CHECK_STR(c.got, "hi");

    /* Replacing the watch: now for EPOLLOUT on the write end, with the same context. */
    c.calls = 0;
    CHECK_INT(loop_watch(loop, p[1], EPOLLOUT, on_readable, &c), 0);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(c.calls, 1);
    CHECK_INT(c.fd, p[1]);
    CHECK(c.events & EPOLLOUT);
    CHECK_INT(loop_unwatch(loop, p[1]), 0);

    /* Unwatching from its own callback: a level-triggered fd with data left is not called again. */
    c.calls = 0;
    c.unwatch_self = 1;
    c.stop_after = 100;
    CHECK_INT(write(p[1], "0123456789abcdefghij", 20), 20);
    loop_timer_start(guard, 100);
    timed_out = 0;
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(timed_out, 1);
    CHECK_INT(c.calls, 1);

    /* Errors. */
    CHECK_INT(loop_unwatch(loop, p[0]), -1);
    CHECK_INT(loop_watch(loop, -1, EPOLLIN, on_readable, &c), -1);
    CHECK_INT(loop_unwatch(loop, 100000), -1);

    loop_timer_free(guard);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}

/* Two pipes readable in the same iteration: whichever runs first unwatches and closes the other,
 * then watches a fresh pipe that gets the same fd number. The stale event of the closed fd must
 * reach neither the old callback nor the new one. */
struct swapctx {
    int a[2], b[2], fresh[2];
    int first, other_calls, fresh_calls;
    struct fdctx fresh_ctx;
};

static void on_fresh(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct swapctx *s = arg;
    s->fresh_calls++;
}

static void on_swap(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct swapctx *s = arg;
    if (s->first) {
        s->other_calls++;
        return;
    }
    s->first = fd;
    int victim = fd == s->a[0] ? s->b[0] : s->a[0];
    CHECK_INT(loop_unwatch(loop, victim), 0);
    close(victim);
    /* The lowest free number is the one just closed. */
    CHECK(pipe2(s->fresh, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK_INT(s->fresh[0], victim);
    CHECK_INT(loop_watch(loop, s->fresh[0], EPOLLIN, on_fresh, s), 0);
    CHECK_INT(loop_unwatch(loop, fd), 0);
    loop_stop(loop);
}

static void test_stale_events(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct swapctx s;
    memset(&s, 0, sizeof(s));
    REQUIRE(pipe2(s.a, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(pipe2(s.b, O_NONBLOCK | O_CLOEXEC) == 0);
    /* Close the write ends' numbers out of the way so that the fresh pipe's read end takes the
     * victim's number: write first, then keep only read ends and the two write ends open. */
    CHECK_INT(write(s.a[1], "x", 1), 1);
    CHECK_INT(write(s.b[1], "x", 1), 1);
    CHECK_INT(loop_watch(loop, s.a[0], EPOLLIN, on_swap, &s), 0);
    CHECK_INT(loop_watch(loop, s.b[0], EPOLLIN, on_swap, &s), 0);
    CHECK_INT(loop_run(loop), 0);
    CHECK(s.first != 0);
    CHECK_INT(s.other_calls, 0);
    CHECK_INT(s.fresh_calls, 0);
    /* One more iteration: the fresh pipe is empty, so still nothing. */
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 50);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(s.fresh_calls, 0);
    CHECK_INT(s.other_calls, 0);
    /* And it does work once written to. */
    CHECK_INT(write(s.fresh[1], "y", 1), 1);
    loop_timer_start(guard, 50);
    CHECK_INT(loop_run(loop), 0);
    CHECK(s.fresh_calls >= 1);
    CHECK_INT(loop_unwatch(loop, s.fresh[0]), 0);
    loop_timer_free(guard);
    close(s.first);
    close(s.a[1]);
    close(s.b[1]);
    close(s.fresh[0]);
    close(s.fresh[1]);
    loop_free(loop);
}

/* ---- timers ---- */

struct tctx {
    int order[64];
    int n;
    struct loop_timer *timers[8];
    uint64_t fired_at[8];
};

struct tentry {
    struct tctx *c;
    int id;
};

static void on_order(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct tentry *e = arg;
    e->c->order[e->c->n++] = e->id;
    e->c->fired_at[e->id] = loop_now_ms(loop);
}

static void test_timer_order(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct tctx c;
    memset(&c, 0, sizeof(c));
    struct tentry e[6];
    uint64_t delays[6] = {30, 10, 20, 10, 0, 50};
    for (int i = 0; i < 6; i++) {
        e[i].c = &c;
        e[i].id = i;
        c.timers[i] = loop_timer_new(loop, on_order, &e[i]);
        REQUIRE(c.timers[i] != NULL);
        CHECK_INT(loop_timer_active(c.timers[i]), 0);
        loop_timer_start(c.timers[i], delays[i]);
        CHECK_INT(loop_timer_active(c.timers[i]), 1);
    }
    uint64_t start = loop_now_ms(loop);
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 80);
    CHECK_INT(loop_run(loop), 0);
    /* Equal delays fire in start order. */
    int want[] = {4, 1, 3, 2, 0, 5};
    CHECK_INT(c.n, 6);
    for (int i = 0; i < 6 && i < c.n; i++)
        CHECK_INT(c.order[i], want[i]);
    for (int i = 0; i < 6; i++) {
        CHECK(c.fired_at[i] >= start + delays[i]);
        CHECK_INT(loop_timer_active(c.timers[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        loop_timer_free(c.timers[i]);
    loop_timer_free(guard);
    loop_free(loop);
}

static void test_timer_stop_restart(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct tctx c;
    memset(&c, 0, sizeof(c));
    struct tentry e[3] = {{&c, 0}, {&c, 1}, {&c, 2}};
    for (int i = 0; i < 3; i++)
        c.timers[i] = loop_timer_new(loop, on_order, &e[i]);
    loop_timer_start(c.timers[0], 10);
    loop_timer_start(c.timers[1], 20);
    loop_timer_start(c.timers[2], 30);
    loop_timer_stop(c.timers[1]);
    loop_timer_stop(c.timers[1]); /* stopping a stopped timer is fine */
    CHECK_INT(loop_timer_active(c.timers[1]), 0);
    loop_timer_start(c.timers[0], 40); /* restart pushes it back */
    uint64_t start = loop_now_ms(loop);
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 70);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(c.n, 2);
    CHECK_INT(c.order[0], 2);
    CHECK_INT(c.order[1], 0);
    CHECK(c.fired_at[0] >= start + 40);
    for (int i = 0; i < 3; i++)
        loop_timer_free(c.timers[i]);
    loop_timer_free(guard);
    loop_free(loop);
}

/* A timer that frees itself, one that frees another due at the same time, and one that
 * restarts itself with a zero delay (which must wait for the next iteration, not spin). */
struct selfctx {
    struct loop_timer *self, *victim, *again;
    int self_calls, victim_calls, again_calls;
    int iterations_seen;
};

static void on_free_self(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct selfctx *s = arg;
    s->self_calls++;
    CHECK(t == s->self);
    loop_timer_free(t);
    s->self = NULL;
    loop_timer_free(s->victim);
    s->victim = NULL;
}

static void on_victim(struct loop *loop, struct loop_timer *t, void *arg)
{
    ((struct selfctx *)arg)->victim_calls++;
}

static void on_again(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct selfctx *s = arg;
    if (++s->again_calls < 5)
        loop_timer_start(t, 0);
    else
        loop_stop(loop);
}

static void test_timer_free_in_callback(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct selfctx s;
    memset(&s, 0, sizeof(s));
    s.self = loop_timer_new(loop, on_free_self, &s);
    s.victim = loop_timer_new(loop, on_victim, &s);
    s.again = loop_timer_new(loop, on_again, &s);
    loop_timer_start(s.self, 5);
    loop_timer_start(s.victim, 5);
    loop_timer_start(s.again, 10);
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 2000);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(timed_out, 0);
    CHECK_INT(s.self_calls, 1);
    CHECK_INT(s.victim_calls, 0);
    CHECK_INT(s.again_calls, 5);
    loop_timer_free(s.again);
    loop_timer_free(guard);
    loop_timer_free(NULL);
    loop_free(loop);
}

/* 10,000 timers with scattered delays fire in non-decreasing due order, each once. */
struct manyctx {
    uint64_t *due;
    int *fired;
    uint64_t last_due;
    int n, out_of_order, total;
};

struct manyent {
    struct manyctx *c;
    int id;
};

static void on_many(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct manyent *e = arg;
    struct manyctx *c = e->c;
    if (c->due[e->id] < c->last_due)
        c->out_of_order++;
    c->last_due = c->due[e->id];
    c->fired[e->id]++;
    if (++c->n == c->total)
        loop_stop(loop);
}

static void test_many_timers(void)
{
    enum { N = 10000 };
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct manyctx c = {.total = N};
    c.due = calloc(N, sizeof(*c.due));
    c.fired = calloc(N, sizeof(*c.fired));
    struct manyent *ents = calloc(N, sizeof(*ents));
    struct loop_timer **timers = calloc(N, sizeof(*timers));
    REQUIRE(c.due && c.fired && ents && timers);
    uint64_t start = loop_now_ms(loop);
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        uint64_t delay = (seed >> 16) % 200;
        ents[i].c = &c;
        ents[i].id = i;
        timers[i] = loop_timer_new(loop, on_many, &ents[i]);
        REQUIRE(timers[i] != NULL);
        loop_timer_start(timers[i], delay + 1000); /* moved below: exercises restart */
        c.due[i] = start + delay;
        loop_timer_start(timers[i], delay);
    }
    /* Stop every tenth and restart it at the same due time: heap removal in the middle. */
    for (int i = 0; i < N; i += 10) {
        loop_timer_stop(timers[i]);
        loop_timer_start(timers[i], c.due[i] - start);
    }
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 5000);
    uint64_t t0 = mono_ms();
    CHECK_INT(loop_run(loop), 0);
    uint64_t elapsed = mono_ms() - t0;
    CHECK_INT(timed_out, 0);
    CHECK_INT(c.n, N);
    CHECK_INT(c.out_of_order, 0);
    int once = 1;
    for (int i = 0; i < N; i++)
        if (c.fired[i] != 1)
            once = 0;
    CHECK(once);
    CHECK(elapsed < 1500);
    for (int i = 0; i < N; i++)
        loop_timer_free(timers[i]);
    loop_timer_free(guard);
    free(timers);
    free(ents);
    free(c.due);
    free(c.fired);
    loop_free(loop);
}

/* ---- deferred callbacks ---- */

struct dctx {
    int order[256];
    int n;
    struct loop *loop;
};

static void on_defer(struct loop *loop, void *arg);

struct dent {
    struct dctx *c;
    int id;
    int chain; /* defers this one more from inside */
};

static struct dent dents[8];

static void on_defer(struct loop *loop, void *arg)
{
    struct dent *e = arg;
    if (e->c->n < 256)
        e->c->order[e->c->n] = e->id;
    e->c->n++;
    if (e->chain)
        CHECK_INT(loop_defer(loop, on_defer, &dents[e->chain]), 0);
}

static void on_defer_stop(struct loop *loop, void *arg)
{
    loop_stop(loop);
}

static void on_timer_defers(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct dctx *c = arg;
    c->order[c->n++] = 100;
    CHECK_INT(loop_defer(loop, on_defer, &dents[0]), 0);
    CHECK_INT(loop_defer(loop, on_defer, &dents[1]), 0);
    CHECK_INT(loop_defer(loop, on_defer, &dents[2]), 0);
    CHECK_INT(loop_defer(loop, on_defer, &dents[3]), 0);
    loop_defer_cancel(loop, on_defer, &dents[3]);
    CHECK_INT(loop_defer(loop, on_defer_stop, NULL), 0);
}

static void test_defer(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct dctx c = {.loop = loop};
    for (int i = 0; i < 8; i++) {
        dents[i].c = &c;
        dents[i].id = i;
        dents[i].chain = 0;
    }
    /* Deferred from a deferred callback: runs after everything queued before it, in a later
     * drain; here the loop stops first, so it waits for the next loop_run. */
    dents[1].chain = 4;
    struct loop_timer *t = loop_timer_new(loop, on_timer_defers, &c);
    loop_timer_start(t, 1);
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 2000);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(timed_out, 0);
    int want[] = {100, 0, 1, 2};
    CHECK_INT(c.n, 4);
    for (int i = 0; i < 4 && i < c.n; i++)
        CHECK_INT(c.order[i], want[i]);

    /* Many deferred at once (the ring grows and wraps), after the one still queued. */
    c.n = 0;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 5; i++)
            CHECK_INT(loop_defer(loop, on_defer, &dents[5]), 0);
    CHECK_INT(loop_defer(loop, on_defer_stop, NULL), 0);
    for (int i = 0; i < 100; i++)
        CHECK_INT(loop_defer(loop, on_defer, &dents[6]), 0);
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(c.n, 116);
    CHECK_INT(c.order[0], 4);
    CHECK_INT(c.order[1], 5);
    CHECK_INT(c.order[115], 6);
    /* loop_free runs what is left. */
    c.n = 0;
    CHECK_INT(loop_defer(loop, on_defer, &dents[7]), 0);
    loop_timer_free(t);
    loop_timer_free(guard);
    loop_free(loop);
    CHECK_INT(c.n, 1);
}

/* ---- scale: many fds ---- */

struct countctx {
    int n, want;
};

static void on_count(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct countctx *c = arg;
    c->n++;
    loop_unwatch(loop, fd);
    if (c->n == c->want)
        loop_stop(loop);
}

static void test_many_fds(void)
{
    /* Raise the soft fd limit as far as the hard one allows (the daemon does the same), then
     * watch up to 10,000 pipes, each costing two fds. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long max = sysconf(_SC_OPEN_MAX);
    int pairs = max > 20200 ? 10000 : (int)(max / 2 - 100);
    REQUIRE(pairs > 10);
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    int(*p)[2] = calloc((size_t)pairs, sizeof(*p));
    REQUIRE(p != NULL);
    struct countctx c = {0, 0};
    int made = 0;
    for (int i = 0; i < pairs; i++) {
        if (pipe2(p[i], O_NONBLOCK | O_CLOEXEC) != 0)
            break;
        made++;
        CHECK_INT(loop_watch(loop, p[i][0], EPOLLIN, on_count, &c), 0);
        CHECK_INT(write(p[i][1], "z", 1), 1);
    }
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, 2000);
    c.want = made;
    uint64_t t0 = mono_ms();
    /* Each callback unwatches its fd; the last one stops the loop. */
    CHECK_INT(loop_run(loop), 0);
    CHECK_INT(timed_out, 0);
    CHECK_INT(c.n, made);
    CHECK(made >= 400);
    CHECK(mono_ms() - t0 < 1000);
    for (int i = 0; i < made; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    free(p);
    loop_timer_free(guard);
    loop_free(loop);
}

static void test_wall_and_now(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    CHECK(loop_wall_ms() > 1600000000000ull);
    uint64_t a = loop_now_ms(loop);
    CHECK(a > 0);
    loop_free(loop);
    loop_free(NULL);
}

int main(void)
{
    RUN(test_fd_watch);
    RUN(test_stale_events);
    RUN(test_timer_order);
    RUN(test_timer_stop_restart);
    RUN(test_timer_free_in_callback);
    RUN(test_many_timers);
    RUN(test_defer);
    RUN(test_many_fds);
    RUN(test_wall_and_now);
    return harness_report("test_loop");
}

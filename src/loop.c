/* The event loop: level-triggered epoll watches in a table indexed by fd, a binary min-heap of
 * one-shot timers, and a FIFO of deferred callbacks. All storage grows by doubling and is reused,
 * so an iteration in steady state allocates nothing. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* How many ready fds one epoll_wait returns; more simply wait for the next iteration. */
#define LOOP_EVENTS 512

#define TIMER_STOPPED SIZE_MAX

struct watch {
    loop_fd_cb cb;
    void *arg;
    uint32_t gen; /* bumped on every (re)registration; stale ready events carry an old one */
    uint8_t active;
};

struct loop_timer {
    struct loop *loop;
    loop_timer_cb cb;
    void *arg;
    uint64_t due; /* loop time in ms */
    uint64_t seq; /* start order, so that timers due at the same ms fire first-started first */
    size_t index; /* position in the heap, TIMER_STOPPED when disarmed */
};

struct deferred {
    loop_defer_cb cb;
    void *arg;
};

struct loop {
    int epfd;
    pthread_mutex_t *lock; /* held while callbacks run (loop_set_lock), NULL: none */
    int stopping;
    uint64_t now;

    struct watch *watches; /* indexed by fd */
    size_t nwatches;

    struct loop_timer **heap;
    size_t nheap, heapcap;
    size_t ntimers; /* timers allocated: the heap always has room for all of them */
    uint64_t timer_seq;

    struct deferred *defers; /* ring buffer */
    size_t dhead, dcount, dcap;

    struct epoll_event events[LOOP_EVENTS];
};

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void update_time(struct loop *loop)
{
    loop->now = clock_ms(CLOCK_MONOTONIC);
}

uint64_t loop_now_ms(struct loop *loop)
{
    return loop->now;
}

uint64_t loop_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

struct loop *loop_new(void)
{
    struct loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    update_time(loop);
    return loop;
}

static void run_deferred(struct loop *loop, size_t max);

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    /* Deferred callbacks typically reap objects: run them so that nothing leaks. Each may defer
     * more; a bounded number of rounds keeps a callback that always re-defers from hanging. */
    for (int round = 0; round < 16 && loop->dcount; round++)
        run_deferred(loop, loop->dcount);
    close(loop->epfd);
    free(loop->watches);
    free(loop->heap);
    free(loop->defers);
    free(loop);
}

/* ---- fd watches ---- */

static int grow_watches(struct loop *loop, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need <= loop->nwatches)
        return 0;
    size_t n = loop->nwatches ? loop->nwatches : 64;
    while (n < need)
        n *= 2;
    struct watch *w = realloc(loop->watches, n * sizeof(*w));
    if (w == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memset(w + loop->nwatches, 0, (n - loop->nwatches) * sizeof(*w));
    loop->watches = w;
    loop->nwatches = n;
    return 0;
}

int loop_watch(struct loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
    if (fd < 0 || cb == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (grow_watches(loop, fd) != 0)
        return -1;
    struct watch *w = &loop->watches[fd];
    uint32_t gen = w->gen + 1;
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd};
    /* A watched fd that was closed without loop_unwatch has silently left the epoll set, and a
     * new fd may now carry its number: fall back between MOD and ADD instead of trusting the
     * table. */
    int rc;
    if (w->active) {
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
        if (rc != 0 && errno == ENOENT)
            rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
    } else {
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
        if (rc != 0 && errno == EEXIST)
            rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (rc != 0)
        return -1;
    /* The new generation makes events already fetched for the old registration stale: they are
     * dropped, and level triggering reports whatever is still pending on the next iteration. */
    w->gen = gen;
    w->cb = cb;
    w->arg = arg;
    w->active = 1;
    return 0;
}

int loop_unwatch(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatches || !loop->watches[fd].active) {
        errno = ENOENT;
        return -1;
    }
    struct watch *w = &loop->watches[fd];
    w->active = 0;
    w->gen++;
    w->cb = NULL;
    w->arg = NULL;
    /* EBADF or ENOENT mean the fd was closed first and has already left the epoll set. */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) != 0 && errno != EBADF && errno != ENOENT)
        return -1;
    return 0;
}

/* ---- timers: a binary min-heap ordered by (due, seq) ---- */

static int timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct loop *loop, size_t i, struct loop_timer *t)
{
    loop->heap[i] = t;
    t->index = i;
}

static void heap_up(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    size_t n = loop->nheap;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(struct loop *loop, struct loop_timer *t)
{
    size_t i = t->index;
    struct loop_timer *last = loop->heap[--loop->nheap];
    t->index = TIMER_STOPPED;
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

struct loop_timer *loop_timer_new(struct loop *loop, loop_timer_cb cb, void *arg)
{
    /* Reserve the timer's heap slot now, so that loop_timer_start never allocates or fails. */
    if (loop->ntimers == loop->heapcap) {
        size_t n = loop->heapcap ? loop->heapcap * 2 : 64;
        struct loop_timer **h = realloc(loop->heap, n * sizeof(*h));
        if (h == NULL)
            return NULL;
        loop->heap = h;
        loop->heapcap = n;
    }
    struct loop_timer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->loop = loop;
    t->cb = cb;
    t->arg = arg;
    t->index = TIMER_STOPPED;
    loop->ntimers++;
    return t;
}

void loop_timer_start(struct loop_timer *t, uint64_t delay_ms)
{
    struct loop *loop = t->loop;
    if (t->index != TIMER_STOPPED)
        heap_remove(loop, t);
    t->due = delay_ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + delay_ms;
    t->seq = loop->timer_seq++;
    loop->heap[loop->nheap] = t;
    t->index = loop->nheap++;
    heap_up(loop, t->index);
}

void loop_timer_stop(struct loop_timer *t)
{
    if (t->index != TIMER_STOPPED)
        heap_remove(t->loop, t);
}

int loop_timer_active(const struct loop_timer *t)
{
    return t->index != TIMER_STOPPED;
}

void loop_timer_free(struct loop_timer *t)
{
    if (t == NULL)
        return;
    loop_timer_stop(t);
    t->loop->ntimers--;
    free(t);
}

/* Fires the timers due by now that were started before this pass began: one restarted with a
 * zero delay from its own callback waits for the next iteration instead of spinning here. */
static void run_timers(struct loop *loop)
{
    uint64_t pass = loop->timer_seq;
    while (loop->nheap) {
        struct loop_timer *t = loop->heap[0];
        if (t->due > loop->now || t->seq >= pass)
            break;
        heap_remove(loop, t);
        /* t may be freed by its callback: it is not touched afterwards. */
        t->cb(loop, t, t->arg);
    }
}

/* ---- deferred callbacks: a ring buffer ---- */

int loop_defer(struct loop *loop, loop_defer_cb cb, void *arg)
{
    if (loop->dcount == loop->dcap) {
        size_t n = loop->dcap ? loop->dcap * 2 : 64;
        struct deferred *d = malloc(n * sizeof(*d));
        if (d == NULL)
            return -1;
        for (size_t i = 0; i < loop->dcount; i++)
            d[i] = loop->defers[(loop->dhead + i) % loop->dcap];
        free(loop->defers);
        loop->defers = d;
        loop->dcap = n;
        loop->dhead = 0;
    }
    struct deferred *slot = &loop->defers[(loop->dhead + loop->dcount) % loop->dcap];
    slot->cb = cb;
    slot->arg = arg;
    loop->dcount++;
    return 0;
}

void loop_defer_cancel(struct loop *loop, loop_defer_cb cb, void *arg)
{
    for (size_t i = 0; i < loop->dcount; i++) {
        struct deferred *d = &loop->defers[(loop->dhead + i) % loop->dcap];
        if (d->cb == cb && d->arg == arg)
            d->cb = NULL;
    }
}

/* Runs at most max queued callbacks: those deferred while running wait for the next call. */
static void run_deferred(struct loop *loop, size_t max)
{
    while (max-- && loop->dcount) {
        struct deferred d = loop->defers[loop->dhead];
        loop->dhead = (loop->dhead + 1) % loop->dcap;
        loop->dcount--;
        if (d.cb)
            d.cb(loop, d.arg);
    }
}

/* ---- the loop ---- */

static int wait_timeout(struct loop *loop)
{
    if (loop->stopping || loop->dcount)
        return 0;
    if (loop->nheap == 0)
        return -1;
    uint64_t due = loop->heap[0]->due;
    if (due <= loop->now)
        return 0;
    uint64_t d = due - loop->now;
    return d > INT_MAX ? INT_MAX : (int)d;
}

static void dispatch_fds(struct loop *loop, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t data = loop->events[i].data.u64;
        int fd = (int)(uint32_t)data;
        uint32_t gen = (uint32_t)(data >> 32);
        /* An earlier callback of this batch may have unwatched fd, or closed it and watched a
         * new fd with the same number: the generation tells. */
        if ((size_t)fd >= loop->nwatches)
            continue;
        struct watch *w = &loop->watches[fd];
        if (!w->active || w->gen != gen)
            continue;
        w->cb(loop, fd, loop->events[i].events, w->arg);
    }
}

void loop_set_lock(struct loop *loop, pthread_mutex_t *mutex)
{
    loop->lock = mutex;
}

int loop_run(struct loop *loop)
{
    int rc = 0;
    if (loop->lock)
        pthread_mutex_lock(loop->lock);
    update_time(loop);
    while (!loop->stopping) {
        int timeout = wait_timeout(loop);
        if (loop->lock)
            pthread_mutex_unlock(loop->lock);
        int n = epoll_wait(loop->epfd, loop->events, LOOP_EVENTS, timeout);
        int err = errno;
        /* The time is taken under the lock: other threads read it (loop_now_ms) under it. */
        if (loop->lock)
            pthread_mutex_lock(loop->lock);
        if (n < 0 && err != EINTR) {
            rc = -1;
            break;
        }
        update_time(loop);
        if (n > 0)
            dispatch_fds(loop, n);
        run_deferred(loop, loop->dcount);
        run_timers(loop);
        run_deferred(loop, loop->dcount);
    }
    loop->stopping = 0;
    if (loop->lock)
        pthread_mutex_unlock(loop->lock);
    return rc;
}

void loop_stop(struct loop *loop)
{
    loop->stopping = 1;
}

/* handover: what it costs when the thread that queues an event for a subscriber is not the one
 * that sends it.
 *
 *   make -C bench/load handover
 *   bench/load/handover [ITEMS [ROUNDS]]        (10000 and 30; needs two CPUs)
 *
 * With io_threads = 1, pollcast's main thread queues a publish for every subscriber (the hub's
 * walk: the subscriber's two cache lines and its stream's first one are written) and then sends
 * each, on one CPU. With 2 or more, the main thread queues and an I/O thread, on another CPU for
 * about half the subscribers, sends: every line the walk wrote moves to the sending CPU, and back
 * again at the next publish, as the send writes them too (the queue's head, the idle flag). This
 * times that pattern without the sends: ITEMS separately allocated items of three cache lines,
 * visited in a shuffled order (fetched ahead 8 items, as pollcast's walks do). A round is a walk
 * that writes one word in each line, then a visit that reads those and writes two of the lines.
 * "same": one thread on CPU 0 does both; "cross": the walk on CPU 0, the visit on CPU 1, taking
 * turns. Prints the median ns per item of each phase over ROUNDS rounds, and the difference. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct item {
    _Alignas(64) uint64_t a[8]; /* the subscriber's first line: queue length, idle */
    uint64_t b[8];              /* its second: the queue slot, the tally */
    uint64_t c[8];              /* the stream's first line: ready list, socket */
};

#define AHEAD 8
#define MAX_ROUNDS 1000

static struct item **items;
static size_t n_items;
static unsigned rounds;
static atomic_int turn; /* 0: the walk's, 1: the visit's, 2: stop */
static double walk_ns[MAX_ROUNDS], visit_ns[MAX_ROUNDS];
static volatile uint64_t sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
        fprintf(stderr, "handover: cannot bind to CPU %d\n", cpu);
        exit(1);
    }
}

static void walk(void)
{
    for (size_t i = 0; i < n_items; i++) {
        if (i + AHEAD < n_items)
            __builtin_prefetch(items[i + AHEAD], 1);
        struct item *it = items[i];
        it->a[0]++;
        it->b[0]++;
        it->c[0]++;
    }
}

static void visit(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n_items; i++) {
        if (i + AHEAD < n_items)
            __builtin_prefetch(items[i + AHEAD], 1);
        struct item *it = items[i];
        sum += it->a[0] + it->b[0] + it->c[0];
        it->a[1]++;
        it->b[1]++;
    }
    sink = sum;
}

static void *visitor(void *arg)
{
    pin(1);
    for (unsigned r = 0; r < rounds; r++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 1)
            ;
        double t0 = now_ns();
        visit();
        visit_ns[r] = (now_ns() - t0) / n_items;
        atomic_store_explicit(&turn, 0, memory_order_release);
    }
    return arg;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void run(int cross, double *walk_med, double *visit_med)
{
    pthread_t th;
    pin(0);
    if (cross) {
        atomic_store(&turn, 0);
        if (pthread_create(&th, NULL, visitor, NULL) != 0) {
            fprintf(stderr, "handover: cannot start a thread\n");
            exit(1);
        }
    }
    for (unsigned r = 0; r < rounds; r++) {
        double t0 = now_ns();
        walk();
        walk_ns[r] = (now_ns() - t0) / n_items;
        if (cross) {
            atomic_store_explicit(&turn, 1, memory_order_release);
            while (atomic_load_explicit(&turn, memory_order_acquire) != 0)
                ;
        } else {
            t0 = now_ns();
            visit();
            visit_ns[r] = (now_ns() - t0) / n_items;
        }
    }
    if (cross)
        pthread_join(th, NULL);
    *walk_med = median(walk_ns, rounds);
    *visit_med = median(visit_ns, rounds);
}

int main(int argc, char **argv)
{
    n_items = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 30;
    if (n_items < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: handover [ITEMS [ROUNDS <= %d]]\n", MAX_ROUNDS);
        return 2;
    }
    items = malloc(n_items * sizeof(*items));
    if (items == NULL)
        return 1;
    for (size_t i = 0; i < n_items; i++) {
        items[i] = aligned_alloc(64, sizeof(struct item));
        if (items[i] == NULL)
            return 1;
        for (int k = 0; k < 8; k++)
            items[i]->a[k] = items[i]->b[k] = items[i]->c[k] = 0;
    }
    srand(1);
    for (size_t i = n_items - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        struct item *t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
    double sw, sv, cw, cv;
    run(0, &sw, &sv);
    run(1, &cw, &cv);
    printf("items %zu, rounds %u: ns per item, median\n", n_items, rounds);
    printf("same CPU:   walk %6.1f  visit %6.1f  both %6.1f\n", sw, sv, sw + sv);
    printf("cross CPU:  walk %6.1f  visit %6.1f  both %6.1f\n", cw, cv, cw + cv);
    printf("difference: %+.1f ns per item\n", (cw + cv) - (sw + sv));
    return 0;
}

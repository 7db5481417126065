/* cpuprobe: how much work two CPUs of this machine do at once, against one alone.
 *
 *   cpuprobe [ROUNDS]      one JSON line on stdout
 *
 * A virtual machine's CPUs may be threads of one host core, or share the host with other
 * guests: two of them busy at once can then each run much slower than one alone. The load
 * matrix compares 1 I/O thread with 2 on such a machine, so a run records this first (run.mjs):
 * a fixed piece of work, timed on the first CPU of the affinity mask alone, on the second alone,
 * then on both at once. Two kinds of work:
 *   alu   eight independent multiply-add chains, in registers;
 *   sock  1 KiB through a Unix socket pair and back (write, read): system calls and the
 *         kernel's socket code, nearer to what a sending thread does.
 * speedup = 2 x (mean time alone) / (the slower of the two at once): 2.0 when the two CPUs do
 * twice the work of one, 1.0 when together they do no more than one alone. The median of ROUNDS
 * (3) rounds is reported. Takes about 1 s per round. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ALU_ITERS 40000000L
#define SOCK_ITERS 60000L

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t work_alu(void)
{
    uint64_t s[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (long i = 0; i < ALU_ITERS; i++) {
        for (int k = 0; k < 8; k++)
            s[k] = s[k] * 3 + (s[k] >> 7);
        __asm__ volatile("" : "+r"(s[0]), "+r"(s[1]), "+r"(s[2]), "+r"(s[3]));
    }
    return s[0] ^ s[5];
}

static uint64_t work_sock(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("cpuprobe: socketpair");
        exit(1);
    }
    char buf[1024];
    memset(buf, 'x', sizeof(buf));
    uint64_t got = 0;
    for (long i = 0; i < SOCK_ITERS; i++) {
        if (write(sv[0], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
            perror("cpuprobe: write");
            exit(1);
        }
        ssize_t r = read(sv[1], buf, sizeof(buf));
        if (r <= 0) {
            perror("cpuprobe: read");
            exit(1);
        }
        got += (uint64_t)r;
    }
    close(sv[0]);
    close(sv[1]);
    return got;
}

struct job {
    int cpu;
    int kind; /* 0 alu, 1 sock */
    pthread_barrier_t *start;
    double secs;
    uint64_t sink;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(j->cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0) {
        fprintf(stderr, "cpuprobe: cannot bind to CPU %d\n", j->cpu);
        exit(1);
    }
    if (j->start)
        pthread_barrier_wait(j->start);
    double t0 = now_s();
    j->sink = j->kind == 0 ? work_alu() : work_sock();
    j->secs = now_s() - t0;
    return NULL;
}

/* Runs the work on cpus[0..n-1] at once; the time of each in secs. */
static void run_on(const int *cpus, int n, int kind, double *secs)
{
    pthread_t t[2];
    struct job j[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        j[i] = (struct job){.cpu = cpus[i], .kind = kind, .start = &start};
        if (pthread_create(&t[i], NULL, run_job, &j[i]) != 0) {
            fprintf(stderr, "cpuprobe: cannot start a thread\n");
            exit(1);
        }
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        secs[i] = j[i].secs;
    }
    pthread_barrier_destroy(&start);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (rounds < 1 || rounds > 50) {
        fprintf(stderr, "usage: cpuprobe [ROUNDS 1..50]\n");
        return 2;
    }
    cpu_set_t mask;
    int cpus[2], ncpu = 0;
    if (sched_getaffinity(0, sizeof(mask), &mask) != 0) {
        perror("cpuprobe: sched_getaffinity");
        return 1;
    }
    for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
        if (CPU_ISSET(c, &mask))
            cpus[ncpu++] = c;
    if (ncpu < 2) {
        printf("{\"cpus\":%d}\n", ncpu);
        return 0;
    }
    static const char *const names[2] = {"alu", "sock"};
    printf("{\"cpus\":[%d,%d]", cpus[0], cpus[1]);
    for (int kind = 0; kind < 2; kind++) {
        double speedup[50], alone[50], together[50];
        for (int r = 0; r < rounds; r++) {
            double a0, a1, both[2];
            run_on(&cpus[0], 1, kind, &a0);
            run_on(&cpus[1], 1, kind, &a1);
            run_on(cpus, 2, kind, both);
            double slow = both[0] > both[1] ? both[0] : both[1];
            alone[r] = (a0 + a1) / 2;
            together[r] = slow;
            speedup[r] = 2 * alone[r] / slow;
        }
        qsort(speedup, (size_t)rounds, sizeof(double), cmp_double);
        qsort(alone, (size_t)rounds, sizeof(double), cmp_double);
        qsort(together, (size_t)rounds, sizeof(double), cmp_double);
        printf(",\"%s\":{\"alone_s\":%.4f,\"together_s\":%.4f,\"speedup\":%.3f}", names[kind],
               alone[rounds / 2], together[rounds / 2], speedup[rounds / 2]);
    }
    printf("}\n");
    return 0;
}

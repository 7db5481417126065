/* sendcost: what one send costs a writer, by how it is made and whether the process has threads.
 *
 *   make -C bench/load sendcost        (needs liburing-dev: apt-get install liburing-dev)
 *   taskset -c 1 bench/load/sendcost [ROUNDS [SINGLE_ROUNDS]]
 *
 * pollcast's writer makes one send per subscriber per event, to a socket it does not otherwise
 * touch. With 2 or more I/O threads the process is multi-threaded, and each send then pays what
 * Linux and glibc charge a multi-threaded process: the kernel takes a reference on the socket's
 * file for the call (a single-threaded process borrows it), and glibc's send() switches
 * asynchronous cancellation on and off around it. Issue 13 asked whether that explains the
 * 2-thread CPU per event; this measures it alone.
 *
 * 64 loopback TCP connections; a round sends 1,100 bytes (a patch event's size in the load
 * matrix) to each in turn, then drains them. Only the sends are timed (CPU time of this thread;
 * on loopback a send also runs the receiving side's TCP code). Three ways of sending:
 *   send()            glibc's wrapper, as pollcast calls it;
 *   syscall(sendto)   the same system call without glibc's cancellation handling;
 *   io_uring          one io_uring_enter per round for the 64 sends, the sockets registered as
 *                     fixed files (no file reference per send).
 * SINGLE_ROUNDS (3) lines are printed while the process has one thread, then 3 after an idle
 * thread was started (it only sleeps). Prints ns of CPU per send. */
#define _GNU_SOURCE
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NSOCK 64
#define LEN 1100

enum how { HOW_SEND, HOW_SYSCALL, HOW_URING };

static int snd[NSOCK], rcv[NSOCK];
static char buf[LEN], sink[1 << 16];
static struct io_uring ring;

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void drain(void)
{
    for (int i = 0; i < NSOCK; i++)
        while (recv(rcv[i], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
}

static void send_round(enum how how)
{
    if (how == HOW_URING) {
        for (int i = 0; i < NSOCK; i++) {
            struct io_uring_sqe *e = io_uring_get_sqe(&ring);
            io_uring_prep_send(e, i, buf, LEN, MSG_NOSIGNAL | MSG_DONTWAIT);
            e->flags |= IOSQE_FIXED_FILE;
        }
        if (io_uring_submit_and_wait(&ring, NSOCK) < 0)
            die("io_uring_submit_and_wait");
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (cqe->res != LEN) {
                fprintf(stderr, "sendcost: io_uring send returned %d\n", cqe->res);
                exit(1);
            }
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        return;
    }
    for (int i = 0; i < NSOCK; i++) {
        long n = how == HOW_SYSCALL
                     ? syscall(SYS_sendto, snd[i], buf, LEN, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0)
                     : (long)send(snd[i], buf, LEN, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != LEN)
            die("send");
    }
}

/* ns of CPU per send over rounds rounds. */
static double measure(enum how how, int rounds)
{
    double spent = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = thread_cpu_s();
        send_round(how);
        spent += thread_cpu_s() - t0;
        drain();
    }
    return spent / ((double)rounds * NSOCK) * 1e9;
}

static void *sleeper(void *arg)
{
    for (;;)
        pause();
    return arg;
}

static void connect_all(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l, NSOCK) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        die("listen");
    for (int i = 0; i < NSOCK; i++) {
        int one = 1;
        snd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (snd[i] < 0 || connect(snd[i], (struct sockaddr *)&a, sizeof(a)) != 0)
            die("connect");
        if ((rcv[i] = accept(l, NULL, NULL)) < 0)
            die("accept");
        setsockopt(snd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    close(l);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 3000;
    int single = argc > 2 ? atoi(argv[2]) : 3;
    if (rounds < 1 || single < 0) {
        fprintf(stderr, "usage: sendcost [ROUNDS [SINGLE_ROUNDS]]\n");
        return 2;
    }
    connect_all();
    if (io_uring_queue_init(2 * NSOCK, &ring, 0) != 0 ||
        io_uring_register_files(&ring, snd, NSOCK) != 0) {
        fprintf(stderr, "sendcost: io_uring is not available here\n");
        return 1;
    }
    measure(HOW_SEND, rounds / 4); /* warm-up */
    printf("ns of CPU per send, %d loopback TCP sockets, %d bytes, %d rounds a figure\n", NSOCK,
           LEN, rounds);
    for (int threaded = 0; threaded <= 1; threaded++) {
        if (threaded) {
            pthread_t t;
            if (pthread_create(&t, NULL, sleeper, NULL) != 0)
                die("pthread_create");
        }
        for (int r = 0; r < (threaded ? 3 : single); r++) {
            double a = measure(HOW_SEND, rounds), b = measure(HOW_SYSCALL, rounds),
                   c = measure(HOW_URING, rounds);
            printf("%s  send() %5.0f   syscall(sendto) %5.0f   io_uring %5.0f\n",
                   threaded ? "multi-threaded " : "single-threaded", a, b, c);
        }
    }
    return 0;
}

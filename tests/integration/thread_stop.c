/* thread_stop TID [SECONDS]: stops one thread of another process, not the process (ptrace:
 * PTRACE_SEIZE, then PTRACE_INTERRUPT, which stops only the tracee thread; SIGSTOP would stop
 * every thread), prints "stopped" once it is, and lets it run again when its standard input
 * ends or after SECONDS (30 by default), then prints "resumed". For tests that need one I/O
 * thread of pollcast to stall while the others go on (integration.io_share). Needs the right to
 * trace the process (root, or the same user under a permissive yama ptrace_scope). If this
 * program dies first, the kernel detaches the thread, which runs again. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: thread_stop TID [SECONDS]\n");
        return 2;
    }
    pid_t tid = (pid_t)atoi(argv[1]);
    int secs = argc == 3 ? atoi(argv[2]) : 30;
    if (tid <= 0 || secs <= 0 || secs > 600) {
        fprintf(stderr, "thread_stop: bad TID or SECONDS\n");
        return 2;
    }
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0) {
        fprintf(stderr, "thread_stop: cannot trace thread %d: %s\n", (int)tid, strerror(errno));
        return 1;
    }
    if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) != 0) {
        fprintf(stderr, "thread_stop: cannot stop thread %d: %s\n", (int)tid, strerror(errno));
        return 1;
    }
    int status;
    if (waitpid(tid, &status, __WALL) != tid || !WIFSTOPPED(status)) {
        fprintf(stderr, "thread_stop: thread %d did not stop (status %#x)\n", (int)tid, status);
        return 1;
    }
    printf("stopped\n");
    fflush(stdout);
    /* Until stdin ends (or says anything) or the time is up. */
    struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
    while (poll(&in, 1, secs * 1000) < 0 && errno == EINTR)
        ;
    if (ptrace(PTRACE_DETACH, tid, NULL, NULL) != 0) {
        fprintf(stderr, "thread_stop: cannot let thread %d go: %s\n", (int)tid, strerror(errno));
        return 1;
    }
    printf("resumed\n");
    return 0;
}

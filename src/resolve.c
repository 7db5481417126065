/* Threaded getaddrinfo with the result handed back on the event loop. A job belongs to the loop
 * side except for host, ai and gai_rc, which its thread writes before it writes the job's
 * address into the pipe, its last act; the loop reads the pipe, joins the thread, and only then
 * touches those fields. */
#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"

struct resolve_job {
    struct resolver *r;
    struct resolve_job *prev, *next; /* r->jobs: every job whose thread has not reported */
    pthread_t thread;
    char *host;
    struct addrinfo *ai; /* written by the thread */
    int gai_rc;          /* written by the thread */
    struct loop_timer *timer;
    resolve_cb cb;
    void *arg;
    int done; /* the callback ran, or the job was cancelled: only the thread is awaited */
};

struct resolver {
    struct loop *loop;
    int fds[2]; /* threads write job addresses to fds[1] */
    unsigned max_jobs, running;
    struct resolve_job *jobs;
};

static void *lookup_thread(void *arg)
{
    struct resolve_job *job = arg;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    job->gai_rc = getaddrinfo(job->host, NULL, &hints, &job->ai);
    /* A pointer is far below PIPE_BUF, and the pipe holds max_jobs of them: the write is whole
     * and does not block. */
    ssize_t n;
    do
        n = write(job->r->fds[1], &job, sizeof(job));
    while (n < 0 && errno == EINTR);
    return NULL;
}

static void job_free(struct resolve_job *job)
{
    struct resolver *r = job->r;
    if (job->prev)
        job->prev->next = job->next;
    else
        r->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    r->running--;
    loop_timer_free(job->timer);
    if (job->ai)
        freeaddrinfo(job->ai);
    free(job->host);
    free(job);
}

static void on_reported(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct resolve_job *job;
    for (;;) {
        ssize_t n = read(fd, &job, sizeof(job));
        if (n != (ssize_t)sizeof(job))
            return; /* EAGAIN: nothing more; a short read cannot happen on a pipe */
        pthread_join(job->thread, NULL);
        if (!job->done) {
            job->done = 1;
            loop_timer_stop(job->timer);
            job->cb(job->arg, job->gai_rc == 0 ? RESOLVE_OK : RESOLVE_FAILED,
                    job->gai_rc == 0 ? job->ai : NULL);
        }
        job_free(job);
    }
}

static void on_timeout(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct resolve_job *job = arg;
    if (job->done)
        return;
    /* The thread goes on until getaddrinfo returns; the job is freed when it reports. */
    job->done = 1;
    job->cb(job->arg, RESOLVE_TIMEOUT, NULL);
}

struct resolver *resolver_new(struct loop *loop, unsigned max_jobs)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->max_jobs = max_jobs ? max_jobs : 1;
    if (pipe2(r->fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(r);
        return NULL;
    }
    /* Only the reading end is non-blocking: a thread's write must not fail with EAGAIN. */
    fcntl(r->fds[1], F_SETFL, 0);
    if (loop_watch(loop, r->fds[0], EPOLLIN, on_reported, r) != 0) {
        close(r->fds[0]);
        close(r->fds[1]);
        free(r);
        return NULL;
    }
    return r;
}

void resolver_free(struct resolver *r)
{
    if (r == NULL)
        return;
    loop_unwatch(r->loop, r->fds[0]);
    while (r->jobs) {
        struct resolve_job *job = r->jobs;
        pthread_join(job->thread, NULL);
        job_free(job);
    }
    close(r->fds[0]);
    close(r->fds[1]);
    free(r);
}

struct resolve_job *resolver_start(struct resolver *r, const char *host, uint64_t timeout_ms,
                                   resolve_cb cb, void *arg)
{
    if (r->running >= r->max_jobs)
        return NULL;
    struct resolve_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    job->r = r;
    job->cb = cb;
    job->arg = arg;
    job->host = strdup(host);
    job->timer = loop_timer_new(r->loop, on_timeout, job);
    if (job->host == NULL || job->timer == NULL)
        goto fail;
    if (pthread_create(&job->thread, NULL, lookup_thread, job) != 0)
        goto fail;
    job->next = r->jobs;
    if (r->jobs)
        r->jobs->prev = job;
    r->jobs = job;
    r->running++;
    loop_timer_start(job->timer, timeout_ms);
    return job;
fail:
    loop_timer_free(job->timer);
    free(job->host);
    free(job);
    return NULL;
}

void resolve_cancel(struct resolve_job *job)
{
    job->done = 1;
    loop_timer_stop(job->timer);
}

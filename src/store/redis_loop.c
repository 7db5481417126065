/* The hiredis adapter for pollcast's loop. hiredis may free the context (and call cleanup)
 * from inside redisAsyncHandleRead, so the watch record outlives it until the loop's deferred
 * callbacks run: the fd callback never touches a freed record. */
#include "store/redis_loop.h"

#include <stdlib.h>
#include <sys/epoll.h>

#include "log.h"
#include "loop.h"

struct redis_watch {
    struct loop *loop;
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    int fd;
    uint32_t events; /* EPOLLIN, EPOLLOUT wanted */
};

static void on_ready(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct redis_watch *w = arg;
    if (w->ac && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleRead(w->ac);
    /* The read may have freed the context: w->ac is then NULL. */
    if (w->ac && (events & (EPOLLOUT | EPOLLERR)))
        redisAsyncHandleWrite(w->ac);
}

static void watch_update(struct redis_watch *w)
{
    if (w->ac == NULL)
        return;
    if (w->events)
        loop_watch(w->loop, w->fd, w->events, on_ready, w);
    else
        loop_unwatch(w->loop, w->fd);
}

static void add_read(void *arg)
{
    struct redis_watch *w = arg;
    w->events |= EPOLLIN;
    watch_update(w);
}

static void del_read(void *arg)
{
    struct redis_watch *w = arg;
    w->events &= ~(uint32_t)EPOLLIN;
    watch_update(w);
}

static void add_write(void *arg)
{
    struct redis_watch *w = arg;
    w->events |= EPOLLOUT;
    watch_update(w);
}

static void del_write(void *arg)
{
    struct redis_watch *w = arg;
    w->events &= ~(uint32_t)EPOLLOUT;
    watch_update(w);
}

static void free_watch(struct loop *loop, void *arg)
{
    free(arg);
}

static void cleanup(void *arg)
{
    struct redis_watch *w = arg;
    loop_unwatch(w->loop, w->fd);
    w->ac = NULL;
    /* Freed after the current dispatch: on_ready may still be on the stack. */
    if (loop_defer(w->loop, free_watch, w) != 0)
        log_msg(LOG_WARN, "redis: out of memory; %zu bytes leaked", sizeof(*w));
}

int redis_loop_attach(redisAsyncContext *ac, struct loop *loop)
{
    if (ac->ev.data != NULL)
        return -1;
    struct redis_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->loop = loop;
    w->ac = ac;
    w->fd = ac->c.fd;
    ac->ev.data = w;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}

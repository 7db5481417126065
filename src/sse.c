/* The streaming response of one subscriber: MHD pulls bytes with sse_read; when the hub has
 * none, the connection is suspended until the hub wakes it. The loop watches the socket for a
 * hang-up from the start of the stream to its end. */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "loop.h"

struct sse_conn {
    struct MHD_Connection *conn;
    struct subscriber *sub;
    int suspended;
    sse_kick_fn kick;
    void *kick_arg;
    struct loop *loop;
    int fd;       /* the client socket, -1 when unknown */
    int watching; /* the loop watches fd for a hang-up, for the whole life of the stream */
};

static void unwatch(struct sse_conn *c)
{
    if (c->watching) {
        loop_unwatch(c->loop, c->fd);
        c->watching = 0;
    }
}

static void sse_wake(void *ctx)
{
    struct sse_conn *c = ctx;
    if (c->suspended) {
        c->suspended = 0;
        MHD_resume_connection(c->conn);
        /* In external mode MHD acts on a resume only when it runs next: ask for a run. */
        c->kick(c->kick_arg);
    }
}

static const struct subscriber_ops sse_ops = {.wake = sse_wake};

/* The client closed or reset its connection: end the stream now rather than at the next
 * keepalive write, so that its slot and descriptor are freed. A parked stream is woken to end;
 * one that is writing ends after the event in progress (MHD may also see the error first). The
 * watch is edge-triggered, so this runs once per hang-up, never in a loop while MHD finishes. */
static void on_hangup(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct sse_conn *c = arg;
    unwatch(c);
    hub_subscriber_close(c->sub);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_conn *c = cls;
    long n = subscriber_read(c->sub, buf, max);
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == 0) {
        /* Nothing to send: park the connection instead of being asked again at once. */
        c->suspended = 1;
        MHD_suspend_connection(c->conn);
        return 0;
    }
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    struct sse_conn *c = cls;
    unwatch(c);
    hub_unsubscribe(c->sub);
    free(c);
}

enum MHD_Result sse_add_headers(struct MHD_Response *r)
{
    if (MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8") != MHD_YES ||
        MHD_add_response_header(r, "Cache-Control", "no-cache") != MHD_YES ||
        MHD_add_response_header(r, "X-Accel-Buffering", "no") != MHD_YES)
        return MHD_NO;
    return MHD_YES;
}

struct MHD_Response *sse_response_new(struct loop *loop, struct MHD_Connection *conn,
                                      struct topic *topic, enum hub_mode mode,
                                      const char *last_event_id, sse_kick_fn kick, void *kick_arg)
{
    struct sse_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->conn = conn;
    c->loop = loop;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = ci ? ci->connect_fd : -1;
    c->kick = kick;
    c->kick_arg = kick_arg;
    c->sub = hub_subscribe(topic, mode, last_event_id, &sse_ops, c);
    if (c->sub == NULL) {
        free(c);
        return NULL;
    }
    /* While a stream is parked MHD does not look at its socket, so the loop watches it for a
     * hang-up. One registration for the stream's life: watching only while parked cost two
     * epoll_ctl calls per subscriber per event (issue 13). Without the watch (no fd, or epoll
     * refused) a vanished client is still noticed at the next keepalive write. */
    if (c->fd >= 0 && loop_watch(loop, c->fd, EPOLLRDHUP | EPOLLET, on_hangup, c) == 0)
        c->watching = 1;
    /* The block is MHD's buffer for HTTP/1.0 clients only; HTTP/1.1 streams are read straight
     * into the connection's pool. Every stream allocates (and MHD zeroes) one, so it is small. */
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256, sse_read, c, sse_free);
    if (r == NULL) {
        sse_free(c);
        return NULL;
    }
    if (sse_add_headers(r) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    /* A stream may be quiet for long; only the keepalive comments show it is alive. */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
    return r;
}

struct MHD_Response *sse_response_retry_later(uint64_t retry_ms)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "retry: %llu\n\n", (unsigned long long)retry_ms);
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, text, MHD_RESPMEM_MUST_COPY);
    if (r && sse_add_headers(r) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

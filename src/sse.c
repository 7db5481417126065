/* The streaming response of one subscriber. MHD writes the head of a stream: the status line,
 * the headers and what the hub has for it at once (retry:, snapshot or missed patches), pulling
 * the bytes with sse_read. The first time sse_read finds nothing, the connection is suspended
 * for the rest of the stream ("detached") and the stream's writer sends what comes next straight
 * to the client socket: MHD is not resumed per event, so it never walks its list of suspended
 * connections per publish (libmicrohttpd 0.9.75 walks every one of them in the first MHD_run
 * after any resume, in proportion to all parked streams; issue 13). When the stream ends, the
 * connection is resumed once and sse_read answers the end, so that MHD writes the terminating
 * chunk (HTTP/1.1) or closes (HTTP/1.0), then frees the stream through sse_free.
 *
 * Why the hand-over is safe: MHD calls the content reader of a chunked body only once its write
 * buffer is empty (state CHUNKED_BODY_UNREADY follows check_write_done), and that of an HTTP/1.0
 * close-delimited body only once the previous block was sent whole (try_ready_normal_body), so
 * when sse_read returns 0 every byte MHD took has left its buffers; and a suspended connection's
 * socket is not looked at by MHD until it is resumed. The framing is MHD's choice, mirrored
 * here: chunked for HTTP/1.1 (and 1.2 to 1.9) requests, close-delimited for HTTP/1.0.
 *
 * A writer reads from the hub into its scratch buffer and sends; only what the socket does not
 * take is copied into a buffer of the stream, and then the stream reads nothing more from the
 * hub until the socket took it (EPOLLOUT), so the hub's queue bound still resets a subscriber
 * that does not keep up. The loop watches each stream's socket for a hang-up (EPOLLRDHUP,
 * edge-triggered), registered once for the stream's life; EPOLLOUT is added only while a stream
 * is held back by its socket. */
#include "sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "loop.h"

/* What a writer reads from the hub at once, and so the most a stream holds back. */
#define SSE_SCRATCH 65536
/* Room for a chunk's head ("FFFFFFFF\r\n") before the data, and its "\r\n" after. */
#define CHUNK_HEAD 10
#define CHUNK_TAIL 2

#define WATCH_HANGUP   (EPOLLRDHUP | EPOLLET)
#define WATCH_WRITABLE (EPOLLRDHUP | EPOLLOUT | EPOLLET)

enum sse_end {
    SSE_GOING = 0,
    SSE_END_OK,    /* sse_read answers the end of the stream: MHD ends the response properly */
    SSE_END_ERROR, /* the socket failed: MHD closes it */
};

struct sse_conn {
    struct MHD_Connection *conn;
    struct subscriber *sub;
    struct sse_writer *w;
    sse_kick_fn kick;
    void *kick_arg;
    int fd;                /* the client socket */
    unsigned watching : 1; /* the loop watches fd (hang-up; and EPOLLOUT while held back) */
    unsigned chunked : 1;  /* MHD frames the body in chunks (HTTP/1.1) */
    unsigned detached : 1; /* suspended for good: the writer sends the stream */
    unsigned queued : 1;   /* on the writer's ready list */
    unsigned listed : 1;   /* on the writer's list of detached streams */
    unsigned ending : 2;   /* enum sse_end: resumed for the end */
    /* What the socket did not take, while it is held back. */
    char *held;
    size_t held_len, held_off;
    /* The writer's ready list and its list of detached streams. */
    struct sse_conn *rprev, *rnext;
    struct sse_conn *dprev, *dnext;
};

struct sse_writer {
    struct loop *loop;
    struct sse_conn *ready_head, *ready_tail;
    struct sse_conn *detached;
    int scheduled;            /* a flush is deferred, or on the timer */
    struct loop_timer *timer; /* the flush when the defer queue is out of memory */
    char scratch[CHUNK_HEAD + SSE_SCRATCH + CHUNK_TAIL];
};

static void unwatch(struct sse_conn *c)
{
    if (c->watching) {
        loop_unwatch(c->w->loop, c->fd);
        c->watching = 0;
    }
}

static void ready_unlink(struct sse_conn *c)
{
    struct sse_writer *w = c->w;
    if (!c->queued)
        return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        w->ready_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    else
        w->ready_tail = c->rprev;
    c->rprev = c->rnext = NULL;
    c->queued = 0;
}

static void detached_unlink(struct sse_conn *c)
{
    if (!c->listed)
        return;
    c->listed = 0;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        c->w->detached = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    c->dprev = c->dnext = NULL;
}

/* Hands the stream back to MHD for its end: sse_read answers how next. Once. The daemon is
 * asked to run when kick is 1. */
static void stream_end_kick(struct sse_conn *c, enum sse_end how, int kick)
{
    if (c->ending != SSE_GOING)
        return;
    c->ending = how;
    ready_unlink(c);
    detached_unlink(c);
    free(c->held);
    c->held = NULL;
    c->held_len = c->held_off = 0;
    MHD_resume_connection(c->conn);
    /* In external mode MHD acts on a resume only when it runs next: ask for a run. */
    if (kick)
        c->kick(c->kick_arg);
}

static void stream_end(struct sse_conn *c, enum sse_end how)
{
    stream_end_kick(c, how, 1);
}

/* The socket refused the stream's bytes for good (reset, broken pipe): the client is gone. */
static void stream_fail(struct sse_conn *c)
{
    hub_subscriber_close(c->sub);
    stream_end(c, SSE_END_ERROR);
}

static void on_socket(struct loop *loop, int fd, uint32_t events, void *arg);

/* Watches for EPOLLOUT too (held 1) or for the hang-up only (held 0). An epoll_ctl, made only
 * when the socket holds a stream back and when it takes the rest. Returns 0 or -1. */
static int watch_writable(struct sse_conn *c, int held)
{
    if (loop_watch(c->w->loop, c->fd, held ? WATCH_WRITABLE : WATCH_HANGUP, on_socket, c) != 0)
        return -1;
    c->watching = 1;
    return 0;
}

/* Sends len bytes at p; what the socket does not take is kept in c->held and the socket watched
 * for EPOLLOUT. Returns 1 when everything went, 0 when some is held, -1 when the stream failed
 * (it is ended). */
static int stream_send(struct sse_conn *c, const char *p, size_t len)
{
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)len)
        return 1;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            stream_fail(c);
            return -1;
        }
        n = 0;
    }
    size_t rest = len - (size_t)n;
    c->held = malloc(rest);
    if (c->held == NULL || watch_writable(c, 1) != 0) {
        /* Without memory or the watch the rest cannot wait: cut the stream rather than send
         * half an event and carry on. */
        stream_fail(c);
        return -1;
    }
    memcpy(c->held, p + n, rest);
    c->held_len = rest;
    c->held_off = 0;
    return 0;
}

/* Sends what the stream holds back. Returns 1 when it all went (the EPOLLOUT watch is dropped),
 * 0 when some is still held, -1 when the stream failed. */
static int stream_send_held(struct sse_conn *c)
{
    size_t len = c->held_len - c->held_off;
    ssize_t n = send(c->fd, c->held + c->held_off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        stream_fail(c);
        return -1;
    }
    c->held_off += (size_t)n;
    if (c->held_off < c->held_len)
        return 0;
    free(c->held);
    c->held = NULL;
    c->held_len = c->held_off = 0;
    if (watch_writable(c, 0) != 0) {
        stream_fail(c);
        return -1;
    }
    return 1;
}

/* Writes a detached stream: what it held back first, then what the hub has, until the hub has
 * nothing (the subscriber is then idle and wakes the stream when it has), the socket holds the
 * stream back, or the stream ends. */
static void stream_pump(struct sse_conn *c)
{
    struct sse_writer *w = c->w;
    if (c->ending != SSE_GOING)
        return;
    if (c->held && stream_send_held(c) != 1)
        return;
    char *data = w->scratch + CHUNK_HEAD;
    for (;;) {
        long n = subscriber_read(c->sub, data, SSE_SCRATCH);
        if (n < 0) {
            stream_end(c, SSE_END_OK);
            return;
        }
        if (n == 0)
            return;
        char *p = data;
        size_t len = (size_t)n;
        if (c->chunked) {
            char head[CHUNK_HEAD + 1];
            int h = snprintf(head, sizeof(head), "%lx\r\n", (unsigned long)n);
            p -= h;
            memcpy(p, head, (size_t)h);
            memcpy(data + n, "\r\n", CHUNK_TAIL);
            len += (size_t)h + CHUNK_TAIL;
        }
        if (stream_send(c, p, len) != 1)
            return;
    }
}

static void writer_flush(struct sse_writer *w)
{
    w->scheduled = 0;
    /* Streams woken while this runs (none should be: the hub wakes only from its own work) are
     * appended and served in the same pass. */
    while (w->ready_head) {
        struct sse_conn *c = w->ready_head;
        ready_unlink(c);
        stream_pump(c);
    }
}

static void on_flush_deferred(struct loop *loop, void *arg)
{
    writer_flush(arg);
}

static void on_flush_timer(struct loop *loop, struct loop_timer *timer, void *arg)
{
    writer_flush(arg);
}

/* The hub has bytes for a detached stream, or ends it: it is written after the current
 * dispatch, with every other stream woken in it (a publish wakes every idle subscriber of its
 * topic), by one flush. */
static void sse_wake(void *ctx)
{
    struct sse_conn *c = ctx;
    struct sse_writer *w = c->w;
    /* The hub wakes a subscriber only after a read found nothing, which detached its stream. */
    if (!c->detached || c->queued || c->ending != SSE_GOING)
        return;
    c->queued = 1;
    c->rprev = w->ready_tail;
    c->rnext = NULL;
    if (w->ready_tail)
        w->ready_tail->rnext = c;
    else
        w->ready_head = c;
    w->ready_tail = c;
    if (w->scheduled)
        return;
    w->scheduled = 1;
    if (loop_defer(w->loop, on_flush_deferred, w) != 0)
        loop_timer_start(w->timer, 0); /* out of memory for the defer queue: a timer cannot fail */
}

static const struct subscriber_ops sse_ops = {.wake = sse_wake};

/* The socket: the client closed or reset its connection, or it takes bytes again after holding
 * a stream back. A hang-up ends the stream now rather than at the next keepalive write, so that
 * its slot and descriptor are freed: a detached stream is woken to end (or ended at once when
 * its socket holds bytes back, which the client will never read); one that MHD still writes
 * ends after the event in progress (MHD may also see the error first). The watch is
 * edge-triggered, so a hang-up is reported once, never in a loop while MHD finishes. */
static void on_socket(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct sse_conn *c = arg;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        unwatch(c);
        hub_subscriber_close(c->sub);
        if (c->detached && c->held)
            stream_end(c, SSE_END_ERROR);
        return;
    }
    if ((events & EPOLLOUT) && c->held)
        stream_pump(c);
}

/* The first read that finds nothing: MHD's buffers are empty (see the top of this file), the
 * connection is suspended for the rest of the stream and the writer takes it over. Nothing of
 * MHD's sending state delays the writer: MHD sets TCP_NODELAY before it pushes a body's first
 * piece (the retry: line, always there) and does not cork (strace of 0.9.75, HTTP/1.1 and 1.0:
 * headers, setsockopt TCP_NODELAY 1, the retry: line, then the writer's sends), so the writer
 * makes no socket option call of its own. */
static void stream_detach(struct sse_conn *c)
{
    struct sse_writer *w = c->w;
    MHD_suspend_connection(c->conn);
    c->detached = 1;
    c->listed = 1;
    c->dprev = NULL;
    c->dnext = w->detached;
    if (w->detached)
        w->detached->dprev = c;
    w->detached = c;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_conn *c = cls;
    if (c->ending == SSE_END_OK)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (c->ending == SSE_END_ERROR)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    long n = subscriber_read(c->sub, buf, max);
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == 0) {
        stream_detach(c);
        return 0;
    }
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    struct sse_conn *c = cls;
    unwatch(c);
    ready_unlink(c);
    detached_unlink(c);
    free(c->held);
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

int sse_chunked(const char *version)
{
    /* libmicrohttpd 0.9.75 (setup_reply_properties): a body of unknown size is chunked for an
     * HTTP/1.1-compatible request (1.1, and 1.2 to 1.9), delimited by the close for 1.0. */
    return version && strlen(version) == 8 && strncmp(version, "HTTP/1.", 7) == 0 &&
           version[7] >= '1' && version[7] <= '9';
}

struct MHD_Response *sse_response_new(struct sse_writer *w, struct MHD_Connection *conn,
                                      struct topic *topic, enum hub_mode mode,
                                      const char *last_event_id, int chunked, sse_kick_fn kick,
                                      void *kick_arg)
{
    struct sse_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->conn = conn;
    c->w = w;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    /* The writer needs the socket (libmicrohttpd 0.9.75 always tells it). */
    if (ci == NULL || ci->connect_fd < 0) {
        free(c);
        return NULL;
    }
    c->fd = ci->connect_fd;
    c->chunked = chunked ? 1 : 0;
    c->kick = kick;
    c->kick_arg = kick_arg;
    c->sub = hub_subscribe(topic, mode, last_event_id, &sse_ops, c);
    if (c->sub == NULL) {
        free(c);
        return NULL;
    }
    /* While a stream is parked MHD does not look at its socket, so the loop watches it for a
     * hang-up. One registration for the stream's life: watching only while parked cost two
     * epoll_ctl calls per subscriber per event (issue 13). Without the watch (epoll refused) a
     * vanished client is still noticed at the next keepalive write. */
    watch_writable(c, 0);
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

struct sse_writer *sse_writer_new(struct loop *loop)
{
    struct sse_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->timer = loop_timer_new(loop, on_flush_timer, w);
    if (w->timer == NULL) {
        free(w);
        return NULL;
    }
    return w;
}

void sse_writer_end_all(struct sse_writer *w)
{
    /* MHD_stop_daemon follows: no run to ask for. */
    while (w && w->detached)
        stream_end_kick(w->detached, SSE_END_ERROR, 0);
}

void sse_writer_free(struct sse_writer *w)
{
    if (w == NULL)
        return;
    if (w->scheduled)
        loop_defer_cancel(w->loop, on_flush_deferred, w);
    loop_timer_free(w->timer);
    free(w);
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

/* The streaming response of one subscriber, and the writers that send the streams.
 *
 * Detach. MHD writes the head of a stream: the status line, the headers and what the hub has for
 * it at once (retry:, snapshot or missed patches), pulling the bytes with sse_read. The first time
 * sse_read finds nothing, the connection is suspended for the rest of the stream ("detached") and
 * a writer sends what comes next straight to the client socket: MHD is not resumed per event, so
 * it never walks its list of suspended connections per publish (libmicrohttpd 0.9.75 walks every
 * one of them in the first MHD_run after any resume; issue 13). Then the connection is let go
 * (released, see stream_detach): pollcast keeps a duplicate of the socket and MHD frees the
 * connection, its pool sized for the largest request the limits admit. When a released stream
 * ends, pollcast writes the terminating chunk (HTTP/1.1) and gives the socket back to MHD as a new
 * connection for the next request, or closes it (HTTP/1.0, a failed stream), and frees the stream
 * once MHD has freed the response too (sse_free). A connection that could not be let go is resumed
 * once at the end and sse_read answers the end, so that MHD writes the terminating chunk or
 * closes, then frees the stream through sse_free. Why the hand-over is safe: MHD calls the content
 * reader of a chunked body only once its write buffer is empty (state CHUNKED_BODY_UNREADY follows
 * check_write_done), and that of an HTTP/1.0 close-delimited body only once the previous block was
 * sent whole (try_ready_normal_body), so when sse_read returns 0 every byte MHD took has left its
 * buffers; and MHD does not look at a suspended connection's socket until it is resumed. The
 * framing is MHD's choice, mirrored: chunked for HTTP/1.1 (and 1.2 to 1.9) requests, none for
 * HTTP/1.0.
 *
 * Writing. A writer takes the streams the hub woke (its ready list), reads their bytes from the
 * hub into its batch buffer, then sends each; only what a socket does not take is copied into a
 * buffer of the stream, which then reads nothing more from the hub until the socket took it
 * (EPOLLOUT), so the hub's queue bound still resets a subscriber that does not keep up. Each
 * stream's socket is watched for a hang-up (EPOLLRDHUP, edge-triggered), registered once for the
 * stream's life (and once more when it moves to an I/O thread); EPOLLOUT only while held back.
 *
 * Threads ([server] io_threads). With 1, one writer on the main loop sends every stream. With
 * N >= 2, N I/O threads, each with its own loop (epoll) and writer, send the detached streams;
 * MHD (accept, requests, routing), the hub and the pollers stay on the main thread. The hub is
 * single-threaded logic behind one lock (struct sse_io's lock): the main loop holds it while it
 * runs its callbacks and releases it only in epoll_wait (loop_set_lock); an I/O thread takes it
 * to move new streams in, to read its ready streams' bytes from the hub (subscriber_read, which
 * touches the frames' refcounts) into its own buffer, and to report ends and failures, and
 * releases it around the sends, which are most of the cost. Hand-offs: a stream detaches on the
 * main thread, which moves it to the next I/O thread's incoming list (round robin) and wakes
 * that thread through its eventfd; the hub's wake (called under the lock, from whichever thread
 * changed the hub) appends the stream to its thread's ready list and writes the eventfd only
 * when the list was idle, so a publish hands work to each thread once, not once per subscriber.
 * A stream that ends goes back to the main thread on the ended list (eventfd again), which
 * resumes its MHD connection: MHD is only ever called from the main thread.
 *
 * Sharing. A thread that has sent every ready stream of its own takes those of another thread
 * (ready_next): same number of streams is not same work, as CPU time per send and the CPU a
 * thread gets both vary. A stream being sent is marked (sending) and no other writer reads it
 * until the send's outcome is in, so its bytes keep their order. Only the stream's own thread
 * touches its loop's watch of the socket, so an outcome that needs it (bytes held back: watch
 * EPOLLOUT; the socket failed or the stream ended: unwatch) goes back to that thread on its
 * handback list, and the stream stays marked until that thread took it. */
#include "sse.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop.h"

/* A writer's batch: the bytes it reads from the hub before it sends them, and so (with the
 * framing) the most a stream holds back. */
#define BATCH_BYTES (256 * 1024)
#define BATCH_ITEMS 1024
/* A read with less room than this waits for the next batch. */
#define MIN_ROOM 1024
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

struct sse_writer;

enum list_kind {
    LISTED_NOT = 0,
    LISTED_INCOMING, /* handed to an I/O thread, not yet watched by its loop */
    LISTED_STREAMS,  /* sent by its writer */
};

/* Fields marked (lock) are read and written under the io lock when there are I/O threads; the
 * others belong to the thread of the stream's writer. Those sse_wake touches come first, in one
 * cache line: the hub asks for it ahead of each wake (hub.c, sub_prefetch). */
struct sse_conn {
    struct sse_writer *w;           /* the main writer until the stream moves to an I/O thread */
    struct sse_conn *rprev, *rnext; /* (lock) w's ready list; then the io's ended list */
    /* Bytes, not bit-fields: those under the lock and those of the writer's thread must not
     * share a memory location. */
    uint8_t detached; /* (lock) suspended for good: a writer sends the stream */
    uint8_t ending;   /* (lock) enum sse_end: handed back to MHD for the end */
    uint8_t queued;   /* (lock) on w's ready list */
    uint8_t listed;   /* (lock) enum list_kind: on w's incoming or streams list */
    uint8_t sending;  /* (lock) a writer read its bytes and sends them (or hands them back) */
    uint8_t rewake;   /* (lock) woken while sending: goes back on the ready list after */
    uint8_t blocked;  /* (lock) the socket holds bytes back: written again from its EPOLLOUT */
    uint8_t hung_up;  /* (lock) the client closed or reset: what it does not take is dropped */
    int8_t hb_sent;   /* (lock) on w's handback list: the other writer's send outcome */
    uint8_t hb_end;   /* (lock) and whether the hub ended the stream with that read */
    uint8_t end_held; /* (lock) the hub ended the stream: it ends once its held bytes are out */
    uint8_t watching; /* w's loop watches fd (hang-up; and EPOLLOUT while held back) */
    uint8_t chunked;  /* MHD frames the body in chunks (HTTP/1.1) */
    uint8_t released; /* MHD let the connection go at detach: fd is a duplicate, pollcast's own */
    uint8_t mhd_done; /* released: MHD freed the response (sse_free) */
    uint8_t finished; /* released: the stream ended (fd closed or given back, unsubscribed) */
    int fd;           /* the client socket */
    int *released_flag; /* the owner's, set to 1 at the release (sse_response_new) */
    struct MHD_Connection *conn;
    struct subscriber *sub;
    sse_kick_fn kick;
    void *kick_arg;
    /* What the socket did not take, while it is held back: written by the thread that sent,
     * then its writer's (the lock hands it over). */
    char *held;
    size_t held_len, held_off;
    struct sse_conn *lprev, *lnext; /* (lock) w's incoming or streams list */
    struct sse_conn *hnext;         /* (lock) w's handback list */
};

/* One item of a batch: a stream's bytes in the batch buffer, and whether the hub ended it. */
struct batch_item {
    struct sse_conn *c;
    size_t off, len;
    int end;
    int sent; /* after the send: 1 all of it, 0 some held back, -1 the socket failed */
};

struct sse_writer {
    struct sse_io *io;
    struct loop *loop;
    int own_thread; /* an I/O thread: takes the io lock itself (the main loop holds it) */
    pthread_t thread;
    int started;
    int cpu;                  /* the CPU the I/O thread is bound to, or -1 */
    int efd;                  /* an I/O thread's eventfd: new streams, ready streams, stop */
    int signalled;            /* (lock) efd was written and the thread has not looked yet */
    int stopping;             /* (lock) */
    int scheduled;            /* the main writer: a flush is deferred, or on the timer */
    struct loop_timer *timer; /* its flush when the defer queue is out of memory */
    struct sse_conn *ready_head, *ready_tail; /* (lock) streams the hub woke */
    struct sse_conn *incoming;                /* (lock) detached, not yet watched here */
    struct sse_conn *streams;                 /* (lock) the detached streams it sends */
    struct sse_conn *handback;                /* (lock) its streams another writer sent, with
                                                 an outcome that needs this loop */
    unsigned index;                           /* an I/O thread's place in io->threads */
    struct batch_item items[BATCH_ITEMS];
    char buf[BATCH_BYTES];
};

struct sse_io {
    pthread_mutex_t lock;
    struct loop *loop;
    struct sse_writer *main;
    struct sse_writer **threads;
    unsigned nthreads, next;
    int stopped;            /* the threads were joined: everything is the main thread's */
    int efd;                /* the main loop's eventfd: streams ended by I/O threads */
    int watching;           /* the main loop watches efd */
    int ended_signalled;    /* (lock) */
    struct sse_conn *ended; /* (lock) streams to resume, linked by rnext */
    uint64_t shared;        /* (lock) writes of another I/O thread's stream */
    int placeholder;        /* put under MHD's descriptor of a released stream; -1: none */
    unsigned released;      /* released streams MHD has let go and that have not ended: sockets
                               only pollcast holds (main thread) */
    sse_giveback_fn giveback;
    void *giveback_arg;
};

/* The io lock, taken by I/O threads only: the main loop holds it while its callbacks run. */
static void writer_lock(struct sse_writer *w)
{
    if (w->own_thread)
        pthread_mutex_lock(&w->io->lock);
}

static void writer_unlock(struct sse_writer *w)
{
    if (w->own_thread)
        pthread_mutex_unlock(&w->io->lock);
}

static void efd_signal(int efd)
{
    uint64_t one = 1;
    /* A full counter still wakes the reader: nothing to do on EAGAIN. */
    (void)!write(efd, &one, sizeof(one));
}

static void efd_drain(int efd)
{
    uint64_t n;
    (void)!read(efd, &n, sizeof(n));
}

static void unwatch(struct sse_conn *c)
{
    if (c->watching) {
        loop_unwatch(c->w->loop, c->fd);
        c->watching = 0;
    }
}

static void on_socket(struct loop *loop, int fd, uint32_t events, void *arg);

/* Watches fd on the writer's loop for EPOLLOUT too (held 1) or for the hang-up only (held 0).
 * An epoll_ctl: when the stream starts or moves to its thread, when the socket holds it back and
 * when it takes the rest. Returns 0 or -1. */
static int watch_socket(struct sse_conn *c, int held)
{
    if (loop_watch(c->w->loop, c->fd, held ? WATCH_WRITABLE : WATCH_HANGUP, on_socket, c) != 0)
        return -1;
    c->watching = 1;
    return 0;
}

/* ---- lists (lock) ------------------------------------------------------------------------ */

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

/* Appends c to its writer's ready list. Returns 1 when the list was empty. */
static int ready_push(struct sse_conn *c)
{
    struct sse_writer *w = c->w;
    if (c->queued)
        return 0;
    c->queued = 1;
    c->rprev = w->ready_tail;
    c->rnext = NULL;
    int was_empty = w->ready_tail == NULL;
    if (w->ready_tail)
        w->ready_tail->rnext = c;
    else
        w->ready_head = c;
    w->ready_tail = c;
    return was_empty;
}

static void list_unlink(struct sse_conn *c, struct sse_conn **head)
{
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        *head = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    c->lprev = c->lnext = NULL;
}

static void list_push(struct sse_conn *c, struct sse_conn **head)
{
    c->lprev = NULL;
    c->lnext = *head;
    if (*head)
        (*head)->lprev = c;
    *head = c;
}

/* Takes c off its writer's incoming or streams list. */
static void streams_unlink(struct sse_conn *c)
{
    if (c->listed == LISTED_NOT)
        return;
    list_unlink(c, c->listed == LISTED_INCOMING ? &c->w->incoming : &c->w->streams);
    c->listed = LISTED_NOT;
}

static void on_flush_deferred(struct loop *loop, void *arg);

/* Makes the writer run soon: an I/O thread is woken once until it looks, the main writer
 * flushes after the current dispatch. (lock) */
static void writer_signal(struct sse_writer *w)
{
    if (w->own_thread) {
        if (!w->signalled) {
            w->signalled = 1;
            efd_signal(w->efd);
        }
        return;
    }
    if (w->scheduled)
        return;
    w->scheduled = 1;
    if (loop_defer(w->loop, on_flush_deferred, w) != 0)
        loop_timer_start(w->timer, 0); /* out of memory for the defer queue: a timer cannot fail */
}

/* ---- the end of a stream ------------------------------------------------------------------ */

static void release_finish(struct sse_conn *c);

/* Hands the stream back to MHD for its end (sse_read answers how next), or ends a released one
 * (release_finish). Once. Called by the thread of the stream's writer, under the lock. An I/O
 * thread queues it for the main thread, which resumes the connection (MHD is called from the
 * main thread only). */
static void stream_end(struct sse_conn *c, enum sse_end how)
{
    struct sse_io *io = c->w->io;
    if (c->ending != SSE_GOING)
        return;
    c->ending = how;
    ready_unlink(c);
    streams_unlink(c);
    unwatch(c);
    free(c->held);
    c->held = NULL;
    c->held_len = c->held_off = 0;
    if (c->w->own_thread && !io->stopped) {
        c->rnext = io->ended;
        io->ended = c;
        if (!io->ended_signalled) {
            io->ended_signalled = 1;
            efd_signal(io->efd);
        }
        return;
    }
    if (c->released) {
        release_finish(c);
        return;
    }
    MHD_resume_connection(c->conn);
    /* In external mode MHD acts on a resume only when it runs next: ask for a run (not when the
     * daemon is about to stop). */
    if (!io->stopped)
        c->kick(c->kick_arg);
}

/* A released stream ends (main thread, under the lock): what MHD would have done is pollcast's.
 * A body that ended cleanly gets its terminating chunk (HTTP/1.1), and the connection then waits
 * for its next request as any kept-alive one, given back to MHD as a new connection
 * (io->giveback); an HTTP/1.0 body ends with the close, and a failed stream is closed. Then the
 * subscriber goes, which releases the owner's request (its access log line is written then). */
static void release_finish(struct sse_conn *c)
{
    struct sse_io *io = c->w->io;
    int given = 0;
    if (c->ending == SSE_END_OK && c->chunked &&
        send(c->fd, "0\r\n\r\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT) == 5 && io->giveback &&
        !io->stopped)
        given = io->giveback(io->giveback_arg, c->fd);
    if (!given)
        close(c->fd);
    c->fd = -1;
    if (c->mhd_done)
        io->released--;
    hub_unsubscribe(c->sub);
    c->sub = NULL;
    c->finished = 1;
    if (c->mhd_done)
        free(c);
}

/* The client is gone (its socket failed): the hub is told, the stream ends. (lock) */
static void stream_fail(struct sse_conn *c)
{
    hub_subscriber_close(c->sub);
    stream_end(c, SSE_END_ERROR);
}

/* The main thread: streams the I/O threads ended are resumed. */
static void on_ended(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct sse_io *io = arg;
    efd_drain(io->efd);
    io->ended_signalled = 0;
    while (io->ended) {
        struct sse_conn *c = io->ended;
        io->ended = c->rnext;
        c->rnext = NULL;
        if (c->released) {
            release_finish(c);
            continue;
        }
        MHD_resume_connection(c->conn);
        c->kick(c->kick_arg);
    }
}

/* ---- sending (no lock: the stream is marked as being sent by this thread) ------------------ */

/* send(2) without glibc's wrapper. In a process with threads the wrapper turns asynchronous
 * cancellation on and off around every call, which nothing here uses: about 40 ns of a ~1.3 us
 * send, 1% of the CPU per event with 2 I/O threads (bench/RESULTS.md, issue 13, round six). */
static ssize_t sock_send(int fd, const void *p, size_t len)
{
    return syscall(SYS_sendto, fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
}

/* Sends len bytes at p; what the socket does not take is kept in c->held (the caller has the
 * socket watched for EPOLLOUT, under the lock). Returns 1 when everything went, 0 when some is
 * held, -1 when the socket failed or no memory was left for the rest (the caller fails the
 * stream under the lock: it is cut rather than sent with half an event missing). */
static int stream_send(struct sse_conn *c, const char *p, size_t len)
{
    ssize_t n = sock_send(c->fd, p, len);
    if (n == (ssize_t)len)
        return 1;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        n = 0;
    }
    size_t rest = len - (size_t)n;
    c->held = malloc(rest);
    if (c->held == NULL)
        return -1;
    memcpy(c->held, p + n, rest);
    c->held_len = rest;
    c->held_off = 0;
    return 0;
}

/* Sends what the stream holds back. Returns 1 when it all went (the EPOLLOUT watch is dropped),
 * 0 when some is still held, -1 when the socket failed. */
static int stream_send_held(struct sse_conn *c)
{
    size_t len = c->held_len - c->held_off;
    ssize_t n = sock_send(c->fd, c->held + c->held_off, len);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    c->held_off += (size_t)n;
    if (c->held_off < c->held_len)
        return 0;
    free(c->held);
    c->held = NULL;
    c->held_len = c->held_off = 0;
    return watch_socket(c, 0) == 0 ? 1 : -1;
}

/* ---- the writer --------------------------------------------------------------------------- */

/* What became of the bytes of stream c that w read and sent: sent is 1 when they all went, 0
 * when the socket held some back, -1 when it failed; end, the hub ended the stream with that
 * read. The outcomes that need the stream's loop (the EPOLLOUT watch, the end of the stream:
 * a loop is its thread's only) go back to the stream's own writer when w is another; the stream
 * counts as being sent until that writer took them. (lock) */
static void stream_sent(struct sse_writer *w, struct sse_conn *c, int sent, int end)
{
    if (c->w != w && (sent != 1 || end)) {
        c->hb_sent = (int8_t)sent;
        c->hb_end = (uint8_t)end;
        c->hnext = c->w->handback;
        c->w->handback = c;
        writer_signal(c->w);
        return;
    }
    int rewake = c->rewake;
    c->sending = 0;
    c->rewake = 0;
    if (sent < 0) {
        stream_fail(c);
    } else if (sent == 0) {
        /* A client that hung up meanwhile would never take the rest. */
        if (c->hung_up || watch_socket(c, 1) != 0) {
            stream_fail(c);
            return;
        }
        c->blocked = 1;
        c->end_held = (uint8_t)end;
    } else if (end) {
        stream_end(c, SSE_END_OK);
    } else if (rewake) {
        ready_push(c);
        writer_signal(c->w);
    }
}

/* Moves the streams the main thread handed over onto this thread's loop, and takes what other
 * writers sent of its streams back. (lock) */
static void writer_adopt(struct sse_writer *w)
{
    while (w->incoming) {
        struct sse_conn *c = w->incoming;
        list_unlink(c, &w->incoming);
        list_push(c, &w->streams);
        c->listed = LISTED_STREAMS;
        /* Without the watch a hang-up is noticed at the next failed write. */
        watch_socket(c, 0);
    }
    while (w->handback) {
        struct sse_conn *c = w->handback;
        w->handback = c->hnext;
        c->hnext = NULL;
        stream_sent(w, c, c->hb_sent, c->hb_end);
    }
}

/* The next ready stream for w: the first of its own, else (an I/O thread with none left) the
 * first of another I/O thread's, in turn. Sharing the work so: the threads get the same number
 * of streams, but not the same CPU time per send nor the same CPU time at all (the main thread
 * runs where it can), and at 10,000 subscribers of one publish on 2 CPUs one thread finished up
 * to 12 ms after the other while none helped (issue 13). (lock) */
static struct sse_conn *ready_next(struct sse_writer *w)
{
    if (w->ready_head || !w->own_thread)
        return w->ready_head;
    struct sse_io *io = w->io;
    for (unsigned k = 1; k < io->nthreads; k++) {
        struct sse_writer *o = io->threads[(w->index + k) % io->nthreads];
        if (o->ready_head)
            return o->ready_head;
    }
    return NULL;
}

/* Reads the ready streams' bytes from the hub into the batch, each framed as one chunk when its
 * response is chunked, and marks each stream as being sent. A stream whose bytes do not all fit
 * stays first on its ready list for the next batch. Returns the number of items. (lock) */
static size_t writer_fill(struct sse_writer *w)
{
    size_t n = 0, used = 0;
    struct sse_conn *c;
    while (n < BATCH_ITEMS && BATCH_BYTES - used >= MIN_ROOM && (c = ready_next(w)) != NULL) {
        /* The list is in no cache after a publish woke thousands: ask for the next stream's
         * subscriber, and for the stream after it, while this one is read (as the hub's walk
         * does). */
        struct sse_conn *next = c->rnext;
        if (next) {
            __builtin_prefetch(next->rnext);
            __builtin_prefetch(next->sub);
            __builtin_prefetch((const char *)next->sub + 64);
        }
        if (c->blocked || c->sending || c->ending != SSE_GOING) {
            /* A held stream is written again from its EPOLLOUT; one that a writer is sending
             * goes back on its list once sent. */
            ready_unlink(c);
            if (c->sending)
                c->rewake = 1;
            continue;
        }
        char *data = w->buf + used + CHUNK_HEAD;
        size_t room = BATCH_BYTES - used - CHUNK_HEAD - CHUNK_TAIL, got = 0;
        int end = 0, full = 0;
        /* Until the hub has nothing (the read of 0 marks the subscriber idle: its next event
         * wakes the stream), ends it, or the batch is full. */
        for (;;) {
            long k = subscriber_read(c->sub, data + got, room - got);
            if (k < 0) {
                end = 1;
                break;
            }
            if (k == 0)
                break;
            got += (size_t)k;
            if (got == room) {
                full = 1;
                break;
            }
        }
        if (!full)
            ready_unlink(c);
        if (got == 0 && !end)
            continue;
        c->sending = 1;
        if (c->w != w)
            w->io->shared++;
        struct batch_item *it = &w->items[n++];
        it->c = c;
        it->end = end;
        it->off = used + CHUNK_HEAD;
        it->len = got;
        if (got && c->chunked) {
            /* The chunk's size in hex and CRLF, written backwards before the data. */
            char *p = data;
            *--p = '\n';
            *--p = '\r';
            for (size_t v = got; v; v >>= 4) /* got > 0 */
                *--p = "0123456789abcdef"[v & 15];
            size_t h = (size_t)(data - p);
            it->off -= h;
            memcpy(data + got, "\r\n", CHUNK_TAIL);
            it->len += h + CHUNK_TAIL;
        }
        used += CHUNK_HEAD + got + CHUNK_TAIL;
        if (full)
            break;
    }
    return n;
}

/* Writes the streams the hub woke, batch after batch, until none is ready. Runs on the writer's
 * thread; takes the lock for reading from the hub and for the outcomes, not for the sends. */
static void writer_flush(struct sse_writer *w)
{
    size_t n = 0;
    writer_lock(w);
    for (;;) {
        for (size_t i = 0; i < n; i++)
            stream_sent(w, w->items[i].c, w->items[i].sent, w->items[i].end);
        w->signalled = 0;
        w->scheduled = 0;
        writer_adopt(w);
        n = writer_fill(w);
        if (n == 0)
            break;
        writer_unlock(w);
        for (size_t i = 0; i < n; i++) {
            struct batch_item *it = &w->items[i];
            it->sent = it->len ? stream_send(it->c, w->buf + it->off, it->len) : 1;
        }
        writer_lock(w);
    }
    writer_unlock(w);
}

static void on_flush_deferred(struct loop *loop, void *arg)
{
    writer_flush(arg);
}

static void on_flush_timer(struct loop *loop, struct loop_timer *timer, void *arg)
{
    writer_flush(arg);
}

/* An I/O thread's eventfd: streams to adopt or write, or the stop. */
static void on_writer_signal(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct sse_writer *w = arg;
    efd_drain(w->efd);
    writer_lock(w);
    int stop = w->stopping;
    writer_unlock(w);
    if (stop) {
        loop_stop(loop);
        return;
    }
    writer_flush(w);
}

static void *writer_main(void *arg)
{
    struct sse_writer *w = arg;
    loop_run(w->loop);
    return NULL;
}

/* The socket: the client closed or reset its connection, or it takes bytes again after holding
 * a stream back. A hang-up ends the stream now rather than at the next keepalive write, so that
 * its slot and descriptor are freed: a detached stream is woken to end (or ended at once when
 * its socket holds bytes back, which the client will never read); one that MHD still writes
 * ends after the event in progress (MHD may also see the error first). The watch is
 * edge-triggered, so a hang-up is reported once, never in a loop while MHD finishes. */
static void on_socket(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct sse_conn *c = arg;
    struct sse_writer *w = c->w;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        writer_lock(w);
        unwatch(c);
        c->hung_up = 1;
        hub_subscriber_close(c->sub);
        if (c->blocked)
            stream_end(c, SSE_END_ERROR);
        writer_unlock(w);
        return;
    }
    /* EPOLLOUT is watched only while the stream is blocked, and then nobody else sends it. */
    if (!(events & EPOLLOUT) || c->held == NULL)
        return;
    int rc = stream_send_held(c);
    if (rc == 0)
        return;
    writer_lock(w);
    c->blocked = 0;
    if (rc < 0)
        stream_fail(c);
    else if (c->end_held)
        stream_end(c, SSE_END_OK);
    else
        ready_push(c);
    writer_unlock(w);
    if (rc > 0)
        writer_flush(w);
}

/* ---- the hub's side ----------------------------------------------------------------------- */

/* The hub has bytes for a detached stream, or ends it: its writer is told (an I/O thread's
 * eventfd is written once until it looks; the main writer flushes after the current dispatch),
 * and writes it with every other stream woken meanwhile (a publish wakes every idle subscriber
 * of its topic). Called by the hub, under the lock. */
static void sse_wake(void *ctx)
{
    struct sse_conn *c = ctx;
    /* The hub wakes a subscriber only after a read found nothing, which detached its stream. */
    if (!c->detached || c->ending != SSE_GOING)
        return;
    ready_push(c);
    writer_signal(c->w);
}

static const struct subscriber_ops sse_ops = {.wake = sse_wake};

/* The first read that finds nothing: MHD's buffers are empty (see the top of this file), the
 * connection is suspended for the rest of the stream and a writer takes it over: the main one,
 * or the next I/O thread, to which the socket's watch moves. Nothing of MHD's sending state
 * delays the writer: MHD sets TCP_NODELAY before it pushes a body's first piece (the retry:
 * line, always there) and does not cork (strace of 0.9.75, HTTP/1.1 and 1.0: headers,
 * setsockopt TCP_NODELAY 1, the retry: line, then the writer's sends), so the writer makes no
 * socket option call of its own. Main thread, under the lock. */
static void stream_detach(struct sse_conn *c)
{
    struct sse_io *io = c->w->io;
    MHD_suspend_connection(c->conn);
    c->detached = 1;
    /* The release: MHD's connection, with its pool (sized for the largest request the limits
     * admit, ~12 KiB at the defaults), is not needed for the rest of the stream, and 0.9.75 has
     * no call that lets a connection go but leaves its socket open. So pollcast keeps a
     * duplicate of the socket, puts the placeholder (an unconnected Unix socket) under MHD's
     * descriptor and resumes the connection: MHD then fails on the placeholder (sse_read answers
     * an error too), closes it and frees the connection; its shutdown and close reach the
     * placeholder only. Safe because a suspended connection is out of MHD's epoll set (suspend
     * removed it) and MHD does not look at it until the resume is run; the loop's watch is keyed
     * by descriptor, so it moves to the duplicate. ~1 KiB per idle subscriber is left, against
     * ~12.7 (bench/RESULTS.md). Without a descriptor to spare, MHD keeps the connection as
     * before. */
    if (io->placeholder >= 0) {
        int was = c->watching;
        unwatch(c);
        int nfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
        if (nfd >= 0 && dup2(io->placeholder, c->fd) >= 0) {
            c->fd = nfd;
            c->released = 1;
            if (c->released_flag)
                *c->released_flag = 1;
            MHD_resume_connection(c->conn);
            c->kick(c->kick_arg);
        } else if (nfd >= 0) {
            close(nfd);
        }
        if (was && io->nthreads == 0)
            watch_socket(c, 0);
    }
    if (io->nthreads == 0) {
        list_push(c, &c->w->streams);
        c->listed = LISTED_STREAMS;
        return;
    }
    unwatch(c);
    struct sse_writer *w = io->threads[io->next++ % io->nthreads];
    c->w = w;
    list_push(c, &w->incoming);
    c->listed = LISTED_INCOMING;
    writer_signal(w);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_conn *c = cls;
    if (c->released)
        return MHD_CONTENT_READER_END_WITH_ERROR;
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

/* MHD frees the response: the stream ended (its writer let it go) or never detached. Main
 * thread, under the lock. */
static void sse_free(void *cls)
{
    struct sse_conn *c = cls;
    if (c->released) {
        /* From here the socket counts as pollcast's alone (sse_io_released): counted earlier,
         * it would count twice while MHD still had the connection. */
        c->conn = NULL;
        c->mhd_done = 1;
        if (c->finished)
            free(c);
        else
            c->w->io->released++;
        return;
    }
    unwatch(c);
    ready_unlink(c);
    streams_unlink(c);
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

struct MHD_Response *sse_response_new(struct sse_io *io, struct MHD_Connection *conn,
                                      struct topic *topic, enum hub_mode mode,
                                      const char *last_event_id, int chunked, sse_kick_fn kick,
                                      void *kick_arg, int *released)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    /* The writer needs the socket (libmicrohttpd 0.9.75 always tells it). */
    if (ci == NULL || ci->connect_fd < 0)
        return NULL;
    struct sse_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->conn = conn;
    c->w = io->main;
    c->fd = ci->connect_fd;
    c->chunked = chunked ? 1 : 0;
    c->kick = kick;
    c->kick_arg = kick_arg;
    c->released_flag = released;
    c->sub = hub_subscribe(topic, mode, last_event_id, &sse_ops, c);
    if (c->sub == NULL) {
        free(c);
        return NULL;
    }
    /* While a stream is parked MHD does not look at its socket, so the loop watches it for a
     * hang-up. One registration for the stream's life (and one more on its I/O thread):
     * watching only while parked cost two epoll_ctl calls per subscriber per event (issue 13).
     * Without the watch (epoll refused) a vanished client is still noticed at the next
     * keepalive write. */
    watch_socket(c, 0);
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

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void writer_free(struct sse_writer *w)
{
    if (w == NULL)
        return;
    if (w->own_thread) {
        if (w->efd >= 0) {
            loop_unwatch(w->loop, w->efd);
            close(w->efd);
        }
        loop_free(w->loop);
    } else {
        if (w->scheduled)
            loop_defer_cancel(w->loop, on_flush_deferred, w);
        loop_timer_free(w->timer);
    }
    free(w);
}

static struct sse_writer *writer_new(struct sse_io *io, int own_thread)
{
    struct sse_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->io = io;
    w->own_thread = own_thread;
    w->efd = -1;
    w->cpu = -1;
    if (!own_thread) {
        w->loop = io->loop;
        w->timer = loop_timer_new(w->loop, on_flush_timer, w);
        if (w->timer == NULL) {
            free(w);
            return NULL;
        }
        return w;
    }
    w->loop = loop_new();
    if (w->loop)
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->loop == NULL || w->efd < 0 ||
        loop_watch(w->loop, w->efd, EPOLLIN, on_writer_signal, w) != 0) {
        if (w->efd >= 0)
            close(w->efd);
        w->efd = -1;
        writer_free(w);
        return NULL;
    }
    return w;
}

/* Stops and joins the I/O threads; from then on every stream is the main thread's. */
static void io_stop_threads(struct sse_io *io)
{
    if (io->stopped)
        return;
    for (unsigned i = 0; i < io->nthreads; i++) {
        struct sse_writer *w = io->threads[i];
        if (!w->started)
            continue;
        pthread_mutex_lock(&io->lock);
        w->stopping = 1;
        pthread_mutex_unlock(&io->lock);
        efd_signal(w->efd);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
    io->stopped = 1;
}

/* bind: each I/O thread on a CPU of its own, when there are as many CPUs in the process's
 * affinity mask as threads. Why: the main thread wakes every I/O thread at once when a change
 * is published, and the kernel may put two of them on one CPU for a while: at 10,000
 * subscribers on 2 CPUs the last deliveries of a publish came up to half as late again in single
 * runs before the keepalive wheel (hub.c); the matrix since shows no difference either way
 * (bench/RESULTS.md, round three). Not when there are more CPUs than threads (which of them would
 * be a guess) nor fewer (two bound to one CPU could never move apart). A refusal (a seccomp policy,
 * say) leaves the thread where the kernel puts it. */
static void bind_threads(struct sse_io *io)
{
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) != 0 ||
        (unsigned)CPU_COUNT(&mask) != io->nthreads)
        return;
    unsigned i = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && i < io->nthreads; cpu++) {
        if (!CPU_ISSET(cpu, &mask))
            continue;
        struct sse_writer *w = io->threads[i++];
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (pthread_setaffinity_np(w->thread, sizeof(one), &one) == 0)
            w->cpu = cpu;
    }
}

struct sse_io *sse_io_new(struct loop *loop, unsigned threads, int bind, char *err, size_t errlen)
{
    struct sse_io *io = calloc(1, sizeof(*io));
    if (io == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&io->lock, NULL);
    io->loop = loop;
    io->efd = -1;
    io->placeholder = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    io->main = writer_new(io, 0);
    if (io->main == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (threads < 2)
        return io;
    io->threads = calloc(threads, sizeof(*io->threads));
    io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->threads == NULL || io->efd < 0 ||
        loop_watch(loop, io->efd, EPOLLIN, on_ended, io) != 0) {
        snprintf(err, errlen, "cannot set up the I/O threads: %s", strerror(errno));
        goto fail;
    }
    io->watching = 1;
    for (unsigned i = 0; i < threads; i++) {
        io->threads[i] = writer_new(io, 1);
        if (io->threads[i] == NULL) {
            snprintf(err, errlen, "cannot set up I/O thread %u: %s", i + 1, strerror(errno));
            goto fail;
        }
        io->threads[i]->index = i;
        io->nthreads = i + 1;
    }
    /* From here on the main loop runs its callbacks under the lock. */
    loop_set_lock(loop, &io->lock);
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&io->threads[i]->thread, NULL, writer_main, io->threads[i]);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start I/O thread %u: %s", i + 1, strerror(rc));
            goto fail;
        }
        io->threads[i]->started = 1;
        /* "pollcast-io1": how top -H and /proc/PID/task/TID/comm tell them (16 bytes at most). */
        char name[16];
        snprintf(name, sizeof(name), "pollcast-io%u", (i + 1) % 1000u); /* at most 64 */
        pthread_setname_np(io->threads[i]->thread, name);
    }
    if (bind)
        bind_threads(io);
    return io;
fail:
    sse_io_free(io);
    return NULL;
}

size_t sse_io_describe(const struct sse_io *io, char *out, size_t len)
{
    if (io->nthreads == 0)
        return (size_t)snprintf(out, len, "the main thread writes the streams");
    size_t n = (size_t)snprintf(out, len, "%u I/O threads", io->nthreads);
    unsigned bound = 0;
    for (unsigned i = 0; i < io->nthreads; i++)
        bound += io->threads[i]->cpu >= 0;
    if (bound == 0)
        return n + (size_t)snprintf(out + n, n < len ? len - n : 0, ", not bound to CPUs");
    /* "on CPUs 0,1", "any" for a thread whose binding was refused. */
    for (unsigned i = 0; i < io->nthreads && n < len; i++) {
        int cpu = io->threads[i]->cpu;
        if (cpu >= 0)
            n += (size_t)snprintf(out + n, len - n, "%s%d", i ? "," : ", on CPUs ", cpu);
        else
            n += (size_t)snprintf(out + n, len - n, "%sany", i ? "," : ", on CPUs ");
    }
    return n;
}

unsigned sse_io_released(const struct sse_io *io)
{
    return io->released;
}

void sse_io_set_giveback(struct sse_io *io, sse_giveback_fn fn, void *arg)
{
    io->giveback = fn;
    io->giveback_arg = arg;
}

const uint64_t *sse_io_shared_writes(const struct sse_io *io)
{
    return &io->shared;
}

void sse_io_end_all(struct sse_io *io)
{
    if (io == NULL)
        return;
    io_stop_threads(io);
    /* Streams ended by an I/O thread and not yet resumed. */
    while (io->ended) {
        struct sse_conn *c = io->ended;
        io->ended = c->rnext;
        c->rnext = NULL;
        if (c->released)
            release_finish(c);
        else
            MHD_resume_connection(c->conn);
    }
    for (unsigned i = 0; i <= io->nthreads; i++) {
        struct sse_writer *w = i < io->nthreads ? io->threads[i] : io->main;
        while (w->incoming)
            stream_end(w->incoming, SSE_END_ERROR);
        while (w->streams)
            stream_end(w->streams, SSE_END_ERROR);
    }
}

void sse_io_free(struct sse_io *io)
{
    if (io == NULL)
        return;
    io_stop_threads(io);
    if (io->watching)
        loop_unwatch(io->loop, io->efd);
    if (io->efd >= 0)
        close(io->efd);
    if (io->placeholder >= 0)
        close(io->placeholder);
    for (unsigned i = 0; i < io->nthreads; i++)
        writer_free(io->threads[i]);
    free(io->threads);
    writer_free(io->main);
    loop_set_lock(io->loop, NULL);
    pthread_mutex_destroy(&io->lock);
    free(io);
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

/* Server-Sent Events over libmicrohttpd: a streaming response per subscriber whose body is read
 * from the hub. MHD writes the head of the stream; once the subscriber has nothing to send, the
 * connection is suspended, then let go (MHD frees it, pollcast keeps the socket), and a writer
 * (the main loop's, or one of the I/O threads') sends the events straight to the socket when the
 * hub wakes the stream. At the stream's end pollcast ends the response (and gives a kept-alive
 * connection back to MHD for its next request); where the connection could not be let go, it is
 * resumed once and MHD ends the response. The loop watches each
 * stream's socket for a hang-up (registered once per stream, edge-triggered) and ends the stream at
 * once when the client is gone. */
#ifndef POLLCAST_SSE_H
#define POLLCAST_SSE_H

#include <microhttpd.h>

#include "hub.h"

struct loop;
struct sse_io;

/* Called after a suspended stream was resumed: the daemon must run soon (in external mode MHD
 * acts on resumes only inside MHD_run). Called once per resume; may coalesce. */
typedef void (*sse_kick_fn)(void *arg);

/* Returns the writers of the streams of MHD connections driven on loop: with threads < 2, one
 * writer on loop; with threads >= 2, that many I/O threads, started here (with bind, each bound
 * to a CPU of its own when the process may run on exactly that many), and loop then runs its
 * callbacks under the lock that guards the hub (loop_set_lock; see sse.c). Returns NULL with a
 * message in err (errlen bytes) when memory, an eventfd or a thread is not available. */
struct sse_io *sse_io_new(struct loop *loop, unsigned threads, int bind, char *err, size_t errlen);

/* Writes into out (len bytes) who writes the streams, for the log: "2 I/O threads, on CPUs 0,1".
 * Returns what snprintf returns. */
size_t sse_io_describe(const struct sse_io *io, char *out, size_t len);

/* The count of stream writes an I/O thread made for a stream of another I/O thread, which had
 * not got to it yet (see ready_next in sse.c); 0 with fewer than 2 I/O threads. Read it under
 * the lock (from the main loop's callbacks). */
const uint64_t *sse_io_shared_writes(const struct sse_io *io);

/* Takes the socket of a stream that ended cleanly on an HTTP/1.1 connection whose libmicrohttpd
 * connection was let go (see sse_response_new), once its terminating chunk is sent: the
 * connection then waits for its next request. Returns 1 when it took fd (it closes it when it
 * cannot use it), 0 when the caller is to close it. Main thread, under the lock. */
typedef int (*sse_giveback_fn)(void *arg, int fd);
void sse_io_set_giveback(struct sse_io *io, sse_giveback_fn fn, void *arg);

/* The streams whose libmicrohttpd connection was let go and that have not ended: their sockets
 * are pollcast's, and count against the connection limit beside MHD's own. Main thread. */
unsigned sse_io_released(const struct sse_io *io);

/* Stops the I/O threads, then ends every stream the writers send now, as if its socket had
 * failed, and resumes their connections: MHD_stop_daemon refuses suspended connections. Call
 * it first when the server stops, outside the loop (the lock is not held then); MHD frees the
 * streams. Accepts NULL. */
void sse_io_end_all(struct sse_io *io);

/* Stops the I/O threads and frees the writers. Their streams must have been freed
 * (MHD_stop_daemon). Accepts NULL. */
void sse_io_free(struct sse_io *io);

/* Returns 1 when libmicrohttpd frames a body of unknown size in chunks for a request of this
 * HTTP version ("HTTP/1.1"), 0 when it delimits it by closing the connection ("HTTP/1.0"). */
int sse_chunked(const char *version);

/* Returns a 200 text/event-stream response for a new subscriber of topic on conn (the headers
 * of the wire contract are set; the caller may add more, queues it and destroys its reference),
 * written by io's writers once MHD has sent its head; chunked is sse_chunked of the request's
 * version. Once the stream is under way its MHD connection is let go ("released": its socket
 * is kept, MHD frees the rest, and MHD's request-completed callback comes then) and *released
 * (when not NULL) is set to 1; the stream's end is then io's, and the subscriber lives until
 * it. Returns NULL on OOM, or when MHD does not tell the connection's socket. Main thread. */
struct MHD_Response *sse_response_new(struct sse_io *io, struct MHD_Connection *conn,
                                      struct topic *topic, enum hub_mode mode,
                                      const char *last_event_id, int chunked, sse_kick_fn kick,
                                      void *kick_arg, int *released);

/* Returns a 200 text/event-stream response that only says "retry: retry_ms" and ends: what an
 * overloaded server answers so that EventSource clients come back later instead of giving up
 * (any non-200 status stops an EventSource for good). NULL on OOM. */
struct MHD_Response *sse_response_retry_later(uint64_t retry_ms);

/* Sets the headers every event stream carries. Returns MHD_YES or MHD_NO. */
enum MHD_Result sse_add_headers(struct MHD_Response *r);

#endif

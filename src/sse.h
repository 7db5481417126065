/* Server-Sent Events over libmicrohttpd: a streaming response per subscriber whose body is read
 * from the hub. When the subscriber has nothing to send the connection is suspended (no busy
 * loop, no thread); the hub's wake resumes it. While suspended, MHD does not look at the socket,
 * so the loop watches it for a hang-up (registered once per stream, edge-triggered) and ends the
 * stream at once when the client is gone. */
#ifndef POLLCAST_SSE_H
#define POLLCAST_SSE_H

#include <microhttpd.h>

#include "hub.h"

struct loop;

/* Called after a suspended stream was resumed: the daemon must run soon (in external mode MHD
 * acts on resumes only inside MHD_run). Called once per resume; may coalesce. */
typedef void (*sse_kick_fn)(void *arg);

/* Returns a 200 text/event-stream response for a new subscriber of topic on conn (the headers
 * of the wire contract are set; the caller may add more, queues it and destroys its reference).
 * The subscriber lives until the connection closes. Returns NULL on OOM. */
struct MHD_Response *sse_response_new(struct loop *loop, struct MHD_Connection *conn,
                                      struct topic *topic, enum hub_mode mode,
                                      const char *last_event_id, sse_kick_fn kick,
                                      void *kick_arg);

/* Returns a 200 text/event-stream response that only says "retry: retry_ms" and ends: what an
 * overloaded server answers so that EventSource clients come back later instead of giving up
 * (any non-200 status stops an EventSource for good). NULL on OOM. */
struct MHD_Response *sse_response_retry_later(uint64_t retry_ms);

/* Sets the headers every event stream carries. Returns MHD_YES or MHD_NO. */
enum MHD_Result sse_add_headers(struct MHD_Response *r);

#endif

/* What the files of the HTTP front share (server.c, streams.c, proxy.c, ops.c): the server and
 * request records, and the helpers each route uses to answer. Not part of the public interface,
 * which is http.h. */
#ifndef POLLCAST_HTTP_INTERNAL_H
#define POLLCAST_HTTP_INTERNAL_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "buf.h"
#include "http.h"
#include "hub.h"
#include "loop.h"

/* Lookups running at once; past that, a stream starts without one (the check at connect still
 * refuses the address). */
#define MAX_LOOKUPS 32

/* Why a request was refused, the label of pollcast_requests_rejected_total. */
enum reject_reason {
    REJECT_BAD_REQUEST,
    REJECT_UNAUTHORIZED,
    REJECT_FORBIDDEN,
    REJECT_NOT_FOUND,
    REJECT_METHOD,
    REJECT_OVERLOAD,
    REJECT_UNAVAILABLE,
    REJECT_RATE_LIMITED,
    REJECT_CONFLICT,  /* 409 and 412: a publish that does not apply to the current version */
    REJECT_TOO_LARGE, /* 413: a publish body over its cap */
    REJECT_COUNT
};
/* Why the server ended a stream that was going on, the label of pollcast_streams_ended_total
 * (and the access log's reason). */
enum ended_reason { ENDED_TOKEN_EXPIRED, ENDED_AUTH_CHANGED, ENDED_COUNT };
extern const char *const http_ended_names[ENDED_COUNT];

extern const char *const http_reject_names[REJECT_COUNT];

/* One request, from its request line (MHD's URI callback) to its completion. Its tally is shared
 * with the hub when the request becomes a stream; the last of the two to let go frees it. */
struct request {
    struct subscriber_tally tally; /* first member: release() finds the request from it */
    struct http_server *srv;
    char *uri;         /* the request target as received (path and query, still encoded) */
    uint64_t start_ms; /* loop clock */
    int seen;          /* handle() has had the headers */
    int refused;       /* answered from the request line: nothing more to do */
    int counted;       /* holds one of its address's subscriber slots */
    int opened;        /* a stream was started */
    int released;      /* its MHD connection was let go (sse_response_new): the request ends with
                          the stream's subscriber (request_release), not with MHD's completion */
    int chunked;       /* MHD chunks a body of unknown size for its HTTP version (sse_chunked) */
    unsigned status;   /* of the answer, 0 until known */
    char *stream;      /* what the access log names (stream name, URL without its query);
                          NULL: not a stream request, not logged */
    char client[64];   /* numeric client address */
    /* An authenticated stream, while it goes on: its token and what the token had to grant
     * (a stream name, or a canonical URL when grant_url), checked again on reload, and the
     * timer that ends it when the token expires. */
    char *token;
    char *grant_target;
    int grant_url;
    uint64_t exp_ms; /* the token's exp, wall clock */
    struct loop_timer *expiry;
    struct request *auth_prev, *auth_next; /* http_server.authed */
    /* The first subscriber of an ad-hoc topic: its host name is resolved while the connection
     * is suspended (lookup set, linked in srv->resolving), then the request is routed again. */
    struct resolve_job *lookup;
    struct MHD_Connection *conn;
    struct request *rprev, *rnext;
    int looked_up;        /* the lookup ended (or could not run): do not look up again */
    char *lookup_refused; /* the lookup found a refused address: why, for the 403 (owned) */
    /* A publish request (PUT, PATCH, POST .../refresh) admitted at its headers: what it asks
     * for, and its body as it arrives, kept up to body_cap bytes. */
    int publish;    /* enum http_publish_kind; 0: not a publish request */
    char *pub_name; /* the stream's name (owned) */
    struct buf body;
    size_t body_cap;
    int body_too_big; /* more than body_cap bytes came: the rest was dropped */
    /* A publish the store answers later (cluster mode): the connection waits suspended, linked
     * in http_server.pub_waiting (pprev, pnext), until the hub tells the outcome, or (queued)
     * until the publish of another request to the same topic ends. */
    struct topic *pub_topic; /* while waiting */
    int pub_waiting;
    int pub_queued; /* waits for another request's publish to the topic to end, not its own */
    int pub_result; /* the outcome (enum hub_put), once told */
    int pub_told;
    int pub_tries;   /* publishes refused because another node published first */
    char pub_id[40]; /* the id of the version published */
    /* A plain read (Accept: application/json): answered from the topic's document; while the
     * topic has none yet, the connection waits suspended, a transient subscriber keeping the
     * topic alive and waking the request, the timer bounding the wait. */
    int plain; /* the request is a plain read */
    struct subscriber *plain_sub;
    struct topic *plain_topic;
    struct loop_timer *plain_timer;
    int plain_suspended; /* linked in http_server.plain_waiting */
    int plain_timed_out;
    struct request *pprev, *pnext;
};

struct http_server {
    struct addr_count **per_addr; /* subscribers per client address, ADDR_BUCKETS chains */
    struct loop *loop;
    struct hub *hub;
    struct http_params p;
    struct MHD_Daemon *daemon;
    int epoll_fd;
    struct loop_timer *timer;
    int quiesced;
    int giving_back; /* give_back is adding a connection: accept_policy lets it through */
    int run_pending;        /* an MHD_run for resumed streams is deferred or on resume_timer */
    int resumes_waiting;    /* streams were resumed since the last MHD_run */
    uint64_t resume_run_ms; /* loop time of the last MHD_run that served resumed streams */
    struct loop_timer *resume_timer;
    struct sse_io *sse;     /* writes the streams once MHD has sent their head */
    struct ratelimit *rate; /* NULL: no per-address connection rate limit */
    unsigned port;
    uint64_t rejected[REJECT_COUNT];
    uint64_t ended[ENDED_COUNT];
    struct request *authed; /* the authenticated streams going on */
    struct request *cur;    /* the request handle() is answering, for the helpers below */
    struct metrics *metrics;
    struct resolver *resolver;     /* host lookups of ad-hoc URLs at admission */
    struct request *resolving;     /* requests suspended while their host resolves */
    struct request *plain_waiting; /* plain reads suspended until their topic's first document */
    struct request *pub_waiting;   /* publishes suspended until the store answers */
    http_ready_fn ready_fn;        /* extra /readyz members (cluster state); NULL: none */
    void *ready_arg;
};

/* ---- server.c ---- */

/* Counts a refusal under why, and notes status for the access log. */
void http_count_reject(struct http_server *srv, enum reject_reason why, unsigned status);

/* Asks for the MHD_run that serves resumed streams (MHD_resume_connection was called): soon,
 * batched with other resumes (see server.c). Cannot fail. */
void http_kick_daemon(void *arg);

/* The origin to allow for this request, or NULL. */
const char *http_cors_origin(const struct http_server *srv, struct MHD_Connection *c);

/* Adds Access-Control-Allow-Origin (and Vary, and Access-Control-Expose-Headers for the ETag of
 * plain reads and publishes and the Retry-After of 503s) when the request's Origin is allowed. */
void http_add_cors(const struct http_server *srv, struct MHD_Connection *c, struct MHD_Response *r);

/* Adds the CORS headers to r, notes status for the access log, queues r on c and drops the
 * caller's reference to r (always, also on failure). Returns MHD's answer. */
enum MHD_Result http_queue_response(struct http_server *srv, struct MHD_Connection *c,
                                    unsigned status, struct MHD_Response *r);

/* Queues a complete answer of the given type (body copied, Cache-Control: no-store, CORS).
 * Returns MHD's result: MHD_NO on failure. */
enum MHD_Result http_send_text(struct http_server *srv, struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len);

/* An RFC 9457 problem answer: {"status":..,"title":..,"detail":..}, with one more header when
 * hname is not NULL. */
enum MHD_Result http_send_problem_with(struct http_server *srv, struct MHD_Connection *c,
                                       unsigned status, const char *title, const char *detail,
                                       const char *hname, const char *hvalue);

/* A new problem object {"status","title","detail"} (detail may be NULL) for
 * http_send_problem_json, or NULL on OOM. */
cJSON *http_problem_new(unsigned status, const char *title, const char *detail);

/* Sends the problem object o (taken, freed here; NULL sends nothing and returns MHD_NO) as an
 * application/problem+json answer of status, counted under its reject reason, with one more
 * header when hname is not NULL. */
enum MHD_Result http_send_problem_json(struct http_server *srv, struct MHD_Connection *c,
                                       unsigned status, cJSON *o, const char *hname,
                                       const char *hvalue);

/* 405 with the Allow header given. */
enum MHD_Result http_send_method_not_allowed(struct http_server *srv, struct MHD_Connection *c,
                                             const char *allow);

/* http_send_problem_with without an extra header. */
enum MHD_Result http_send_problem(struct http_server *srv, struct MHD_Connection *c,
                                  unsigned status, const char *title, const char *detail);

/* 403 for a valid token that does not grant what the request asks for (RFC 6750, 3.1). */
enum MHD_Result http_send_insufficient_scope(struct http_server *srv, struct MHD_Connection *c,
                                             const char *detail);

/* The overload answer: 200 with a long retry: and the connection closed (an EventSource retries
 * after a non-200 never). */
enum MHD_Result http_send_retry_later(struct http_server *srv, struct MHD_Connection *c);

/* Streams held by one client address. */
unsigned http_addr_streams(struct http_server *srv, const char *addr);

/* Counts one more stream for addr. Returns 0, or -1 on OOM. */
int http_addr_take(struct http_server *srv, const char *addr);

/* ---- streams.c ---- */

/* Reads ?interval=SECONDS into *ms, clamped to [lo, hi]. Returns 0, or -1 when malformed. */
int http_query_interval(struct MHD_Connection *c, uint64_t lo, uint64_t hi, uint64_t *ms);

/* Reads ?mode=patch|snapshot into *mode. Returns 0, or -1 when malformed. */
int http_query_mode(struct MHD_Connection *c, enum hub_mode *mode);

/* Notes what the current request's token had to grant: target (a stream name, or a canonical
 * URL when url). Returns 0, or -1 on OOM. */
int http_auth_keep_target(struct http_server *srv, const char *target, int url);

/* Takes q off the list of authenticated streams and drops its timer and token. Safe on a request
 * that is not on it, and from its timer's callback. */
void http_auth_untrack(struct http_server *srv, struct request *q);

/* Starts the SSE stream of topic key (created from spec if new; spec's timeout is capped
 * here) for the current request, or answers retry-later when a limit is reached. */
enum MHD_Result http_start_stream(struct http_server *srv, struct MHD_Connection *c,
                                  const char *key, struct topic_spec *spec, enum hub_mode mode);

/* 1 when the request asks for a plain read: its Accept names application/json and not
 * text/event-stream (EventSource sends the latter; curl's default is neither). */
int http_wants_json(struct MHD_Connection *c);

/* Answers a plain read of topic key (created from spec when new, its poller polling at once):
 * the current document with ETag "<id>" (304 for a matching If-None-Match) and Cache-Control:
 * max-age from the interval; while the topic has no document yet, suspends the connection until
 * it has one, at most the poll timeout (then 504). Called again when the connection resumes. */
enum MHD_Result http_plain_read(struct http_server *srv, struct MHD_Connection *c, const char *key,
                                struct topic_spec *spec);

/* Ends the plain read of q, if any: its subscriber, timer and wait. Cannot fail. */
void http_plain_end(struct http_server *srv, struct request *q);

/* Resumes every plain read that waits (before the daemon stops). Cannot fail. */
void http_plain_abort(struct http_server *srv);

/* 1 when an If-Match or If-None-Match value (entity tags, or "*") names id; strong comparison:
 * weak tags (W/"...") never match. An empty id matches nothing. */
int http_etag_match(const char *value, const char *id);

/* Names the current request in the access log: a stream name, or a URL of which only the part
 * before the query is kept (queries may carry tokens). */
void http_name_request(struct http_server *srv, struct MHD_Connection *c, const char *what);

/* With [auth] configured: reads the token from the Authorization header, the access_token
 * query parameter or the cookie and checks it. Returns 1 with *grant filled (the caller disposes
 * it), 0 when auth is off, or -1 after queueing the 401/503 answer in *rc. */
int http_authenticate(struct http_server *srv, struct MHD_Connection *c, struct auth_grant *grant,
                      enum MHD_Result *rc, int compat, const char *sd_token);

/* GET /streams/NAME. */
enum MHD_Result http_route_stream(struct http_server *srv, struct MHD_Connection *c,
                                  const char *name);

/* ---- proxy.c ---- */

/* Takes q off the list of requests waiting for a host lookup. */
void http_resolving_unlink(struct http_server *srv, struct request *q);

/* Ends the lookups of suspended requests (their callbacks are not called) and resumes them. */
void http_resolving_abort(struct http_server *srv);

/* GET /proxy?url=. */
enum MHD_Result http_route_proxy(struct http_server *srv, struct MHD_Connection *c);

/* GET /{absolute-url}, the Streamdata.io form (target without its leading slash). */
enum MHD_Result http_route_compat(struct http_server *srv, struct MHD_Connection *c,
                                  const char *target);

/* Returns 1 when the request target is the Streamdata.io form "/http://..." or "/https://...". */
int http_compat_target(const char *uri);

/* ---- publish.c ---- */

enum http_publish_kind { HTTP_PUBLISH_PUT = 1, HTTP_PUBLISH_PATCH, HTTP_PUBLISH_REFRESH };

/* The headers of a PUT, PATCH or POST request are in: routes it (PUT and PATCH on
 * /streams/NAME, POST on /streams/NAME/refresh), authenticates the publisher and checks the
 * announced size. Either queues the refusal (q->status is then set) or admits the request
 * (q->publish set) so that its body is read. Returns MHD's result. */
enum MHD_Result http_publish_begin(struct http_server *srv, struct MHD_Connection *c,
                                   const char *url, const char *method);

/* Keeps n more body bytes of an admitted publish request, up to its cap. Cannot fail: past the
 * cap (or out of memory) the request is marked too big. */
void http_publish_body(struct request *q, const char *data, size_t n);

/* The whole request is in: publishes (PUT, PATCH) or refreshes, and answers. */
enum MHD_Result http_publish_finish(struct http_server *srv, struct MHD_Connection *c);

/* Ends the wait of a publish the store has not answered (its outcome is no longer told), and
 * resumes it when resume is set. Cannot fail. */
void http_publish_end(struct http_server *srv, struct request *q, int resume);

/* Resumes every publish that waits (before the daemon stops). Cannot fail. */
void http_publish_abort(struct http_server *srv);

/* Loads the state files of push streams into their topics, for streams that have one and whose
 * topic has no document yet. Cannot fail (a file that cannot be read is logged). */
void http_publish_load_state(struct http_server *srv);

/* The topic of push stream st (created when new, its state file loaded), or NULL when it cannot
 * be made (OOM, max_pollers). */
struct topic *http_push_topic(struct http_server *srv, const struct http_stream *st);

/* ---- ops.c ---- */

/* GET /streams: the configured stream names, for the viewer and for discovery. */
enum MHD_Result http_route_stream_list(struct http_server *srv, struct MHD_Connection *c);

/* Registers the hub's and the front's series. Returns 0 or -1 (OOM). */
int http_register_metrics(struct http_server *srv);

/* GET /metrics in the Prometheus text format. */
enum MHD_Result http_route_metrics(struct http_server *srv, struct MHD_Connection *c);

/* GET /_demo/upstream.json: the demo document for the current second. */
enum MHD_Result http_route_demo(struct http_server *srv, struct MHD_Connection *c);

/* An OPTIONS preflight for url: 204 with the CORS headers when the origin is allowed (the
 * methods and headers of url's routes: publishing on /streams/NAME and .../refresh). */
enum MHD_Result http_preflight(struct http_server *srv, struct MHD_Connection *c, const char *url);

/* {"status":"ready"}, plus what the ready hook adds; 503 while shutting down or while the hook
 * says the node is not ready yet. */
enum MHD_Result http_route_readyz(struct http_server *srv, struct MHD_Connection *c);

#endif

/* libmicrohttpd on the event loop, and the routing of the wire contract: streams, ad-hoc
 * proxying (and its Streamdata.io form), CORS, health, readiness, metrics, the access log and the
 * demo document. Every answer before a stream starts is a problem+json body with the status
 * PRODUCT.md lists. */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json/json.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "ratelimit.h"
#include "resolve.h"
#include "sse.h"
#include "ssrf.h"
#include "viewer.h"

#define MAX_LAST_EVENT_ID  64
#define COMPAT_MAX_HEADERS 16
#define COMPAT_MAX_HEADER  4096

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
    REJECT_COUNT
};
/* Why the server ended a stream that was going on, the label of pollcast_streams_ended_total
 * (and the access log's reason). */
enum ended_reason { ENDED_TOKEN_EXPIRED, ENDED_AUTH_CHANGED, ENDED_COUNT };
static const char *const ended_names[ENDED_COUNT] = {"token_expired", "auth_changed"};

static const char *const reject_names[REJECT_COUNT] = {"bad_request", "unauthorized", "forbidden",
                                                       "not_found",   "method",       "overload",
                                                       "unavailable", "rate_limited"};

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
    int looked_up;     /* the lookup ended (or could not run): do not look up again */
    char *lookup_refused; /* the lookup found a refused address: why, for the 403 (owned) */
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
    int run_pending;        /* an MHD_run for resumed streams is deferred or on resume_timer */
    int resumes_waiting;    /* streams were resumed since the last MHD_run */
    uint64_t resume_run_ms; /* loop time of the last MHD_run that served resumed streams */
    struct loop_timer *resume_timer;
    struct ratelimit *rate; /* NULL: no per-address connection rate limit */
    unsigned port;
    uint64_t rejected[REJECT_COUNT];
    uint64_t ended[ENDED_COUNT];
    struct request *authed; /* the authenticated streams going on */
    struct request *cur;    /* the request handle() is answering, for the helpers below */
    struct metrics *metrics;
    struct resolver *resolver; /* host lookups of ad-hoc URLs at admission */
    struct request *resolving; /* requests suspended while their host resolves */
    http_ready_fn ready_fn; /* extra /readyz members (cluster state); NULL: none */
    void *ready_arg;
};

static void count_reject(struct http_server *srv, enum reject_reason why, unsigned status)
{
    srv->rejected[why]++;
    if (srv->cur)
        srv->cur->status = status;
}

/* ---- the daemon on the loop -------------------------------------------------------------- */

/* The shortest time between two MHD runs that serve resumed streams: 1 ms per RESUME_GAP_CONNS
 * open connections, at most RESUME_GAP_MAX_MS (see kick_daemon). */
#define RESUME_GAP_MAX_MS 10u
#define RESUME_GAP_CONNS  1000u

static void run_daemon(struct http_server *srv)
{
    if (srv->resumes_waiting) {
        srv->resumes_waiting = 0;
        srv->resume_run_ms = loop_now_ms(srv->loop);
    }
    MHD_run(srv->daemon);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(srv->daemon, &timeout) == MHD_YES)
        loop_timer_start(srv->timer, timeout);
    else
        loop_timer_stop(srv->timer);
}

/* The MHD_run that kick_daemon asked for; skipped when another run has served the resumes. */
static void run_resumed(struct http_server *srv)
{
    srv->run_pending = 0;
    if (srv->resumes_waiting)
        run_daemon(srv);
}

static void on_deferred_run(struct loop *loop, void *arg)
{
    run_resumed(arg);
}

static void on_resume_timer(struct loop *loop, struct loop_timer *timer, void *arg)
{
    run_resumed(arg);
}

/* Resumed streams are processed by one MHD_run after the current dispatch, however many were
 * resumed during it (one publish resumes every idle subscriber of a topic). In external epoll
 * mode, libmicrohttpd 0.9.75 walks its whole list of suspended connections in the first MHD_run
 * after any resume, so a run per resume costs in proportion to every parked stream (1,000
 * upstreams changing at 1/s beside 10,000 idle subscribers doubled the CPU; issue 13). Runs for
 * resumes are therefore at least one gap apart: 1 ms per 1,000 open connections, at most
 * RESUME_GAP_MAX_MS. A resume after a quiet gap (one publish a second, a keepalive round) is
 * served at once; resumes that come closer together wait for the gap to end and share one walk.
 * Measured: 2.0x -> 1.4-1.55x the CPU of the same upstreams alone, +5-6 ms at the median; a
 * longer gap added latency without saving CPU (bench/RESULTS.md). */
static void kick_daemon(void *arg)
{
    struct http_server *srv = arg;
    srv->resumes_waiting = 1;
    if (srv->run_pending)
        return;
    uint64_t now = loop_now_ms(srv->loop);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    uint64_t gap = info ? info->num_connections / RESUME_GAP_CONNS : 0;
    if (gap > RESUME_GAP_MAX_MS)
        gap = RESUME_GAP_MAX_MS;
    uint64_t since = now - srv->resume_run_ms;
    if (since < gap) {
        loop_timer_start(srv->resume_timer, gap - since);
        srv->run_pending = 1;
    } else if (loop_defer(srv->loop, on_deferred_run, srv) == 0) {
        srv->run_pending = 1;
    } else {
        /* Out of memory for the defer queue: the timer cannot fail. */
        loop_timer_start(srv->resume_timer, 0);
        srv->run_pending = 1;
    }
}

static void on_daemon_ready(struct loop *loop, int fd, uint32_t events, void *arg)
{
    run_daemon(arg);
}

static void on_daemon_timer(struct loop *loop, struct loop_timer *timer, void *arg)
{
    run_daemon(arg);
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_msg(LOG_DEBUG, "http: %s", msg);
}

/* Keepalive probes on every accepted socket, so that clients that vanished without a FIN are
 * noticed even while their stream is quiet. */
/* A connection's deadline for sending a complete request. MHD's own timeout is on inactivity, so
 * a client that drips a header byte now and then (slowloris) would never meet it. */
struct conn_guard {
    struct loop_timer *timer;
    int fd;
};

static void on_request_deadline(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct conn_guard *g = arg;
    /* MHD watches the socket while it reads a request: it sees the end at once and closes the
     * connection through its usual path. */
    shutdown(g->fd, SHUT_RDWR);
}

/* Keepalive probes on every accepted socket, so that clients that vanished without a FIN are
 * noticed; and the deadline for the first request. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn_guard *g = *socket_ctx;
        if (g) {
            loop_timer_free(g->timer);
            free(g);
            *socket_ctx = NULL;
        }
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    int fd = ci->connect_fd, on = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    struct conn_guard *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return;
    g->fd = fd;
    g->timer = loop_timer_new(srv->loop, on_request_deadline, g);
    if (g->timer == NULL) {
        free(g);
        return;
    }
    unsigned secs = srv->p.request_timeout_s ? srv->p.request_timeout_s : 30u;
    loop_timer_start(g->timer, (uint64_t)secs * 1000);
    *socket_ctx = g;
}

/* What a request's headers add up to: their number, and whether a value holds a CR, LF or NUL
 * (a request could be split on them further along the way). */
struct header_scan {
    size_t fields;
    int control;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct header_scan *hs = cls;
    hs->fields++;
    for (size_t i = 0; value && i < value_size; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            hs->control = 1;
    return MHD_YES;
}

/* Counts the values it is called with, into *cls (a size_t). */
static enum MHD_Result count_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    ++*(size_t *)cls;
    return MHD_YES;
}

/* The header bytes of a request, as max_header_bytes counts them: its header lines as received,
 * each with its line ending, without the request line and the empty line that ends them. */
static size_t header_bytes(struct MHD_Connection *c, const char *method, const char *uri,
                           const char *version)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t line = strlen(method) + 1 + strlen(uri) + 1 + strlen(version) + 2 + 2;
    return ci && ci->header_size > line ? ci->header_size - line : 0;
}

size_t http_connection_memory(size_t max_url_length, size_t max_header_bytes)
{
    /* libmicrohttpd keeps in one pool per connection the request line and the header lines as
     * received, a second copy of the Cookie value, a 64-byte record per header field, cookie and
     * query parameter, and then the answer's header. Every request within the limits fits (the
     * URL, the header lines and the cookie copy); so does one with twice the URL or twice the
     * header lines, so that it is read whole and gets pollcast's own 414 or 431. */
    size_t within = max_url_length + 2 * max_header_bytes;
    size_t twice_url = 2 * max_url_length, twice_headers = 2 * max_header_bytes;
    size_t most = within > twice_url ? within : twice_url;
    if (twice_headers > most)
        most = twice_headers;
    return most + (HTTP_MAX_HEADER_FIELDS + HTTP_MAX_QUERY_PARAMS) * 64 + 1024;
}

/* The request's headers are complete: the connection met its deadline. */
static void request_arrived(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_guard *g = ci ? ci->socket_context : NULL;
    if (g)
        loop_timer_stop(g->timer);
}

/* A client over its connection rate is refused at accept: the TCP connection is closed before
 * any request is read. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_server *srv = cls;
    if (srv->rate && !ratelimit_allow(srv->rate, addr, addrlen, loop_now_ms(srv->loop))) {
        srv->rejected[REJECT_RATE_LIMITED]++;
        return MHD_NO;
    }
    return MHD_YES;
}

/* ---- responses --------------------------------------------------------------------------- */

/* The origin to allow for this request, or NULL. */
static const char *cors_origin(const struct http_server *srv, struct MHD_Connection *c)
{
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin == NULL || srv->p.cors_origins == NULL)
        return NULL;
    for (const char *const *o = srv->p.cors_origins; *o; o++) {
        if (strcmp(*o, "*") == 0)
            return "*";
        if (strcmp(*o, origin) == 0)
            return origin;
    }
    return NULL;
}

static void add_cors(const struct http_server *srv, struct MHD_Connection *c,
                     struct MHD_Response *r)
{
    const char *origin = cors_origin(srv, c);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
}

static enum MHD_Result send_text(struct http_server *srv, struct MHD_Connection *c, unsigned status,
                                 const char *type, const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* An RFC 9457 problem answer: {"status":..,"title":..,"detail":..}, with one more header when
 * hname is not NULL. */
static enum MHD_Result send_problem_with(struct http_server *srv, struct MHD_Connection *c,
                                         unsigned status, const char *title, const char *detail,
                                         const char *hname, const char *hvalue)
{
    enum reject_reason why = status == MHD_HTTP_BAD_REQUEST || status == MHD_HTTP_URI_TOO_LONG ||
                                     status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE
                                 ? REJECT_BAD_REQUEST
                             : status == MHD_HTTP_UNAUTHORIZED       ? REJECT_UNAUTHORIZED
                             : status == MHD_HTTP_FORBIDDEN          ? REJECT_FORBIDDEN
                             : status == MHD_HTTP_NOT_FOUND          ? REJECT_NOT_FOUND
                             : status == MHD_HTTP_METHOD_NOT_ALLOWED ? REJECT_METHOD
                                                                     : REJECT_UNAVAILABLE;
    count_reject(srv, why, status);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "status", status);
    cJSON_AddStringToObject(o, "title", title);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/problem+json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    /* What follows an oversized request on the connection cannot be trusted to be a request. */
    if (status == MHD_HTTP_URI_TOO_LONG || status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE)
        MHD_add_response_header(r, "Connection", "close");
    if (hname)
        MHD_add_response_header(r, hname, hvalue);
    add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_problem(struct http_server *srv, struct MHD_Connection *c,
                                    unsigned status, const char *title, const char *detail)
{
    return send_problem_with(srv, c, status, title, detail, NULL, NULL);
}

/* 403 for a valid token that does not grant what the request asks for (RFC 6750, 3.1). */
static enum MHD_Result send_insufficient_scope(struct http_server *srv, struct MHD_Connection *c,
                                               const char *detail)
{
    return send_problem_with(srv, c, MHD_HTTP_FORBIDDEN, "Not allowed", detail, "WWW-Authenticate",
                             "Bearer error=\"insufficient_scope\"");
}

static enum MHD_Result send_retry_later(struct http_server *srv, struct MHD_Connection *c)
{
    count_reject(srv, srv->quiesced ? REJECT_UNAVAILABLE : REJECT_OVERLOAD, MHD_HTTP_OK);
    struct MHD_Response *r = sse_response_retry_later(srv->p.overload_retry_ms);
    if (r == NULL)
        return MHD_NO;
    add_cors(srv, c, r);
    MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- streams ----------------------------------------------------------------------------- */

/* Reads ?interval=SECONDS into *ms, clamped to [lo, hi]. Returns 0, or -1 when malformed. */
static int query_interval(struct MHD_Connection *c, uint64_t lo, uint64_t hi, uint64_t *ms)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "interval");
    if (v == NULL)
        return 0;
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno || !isfinite(s) || s <= 0 || s > 86400 * 7)
        return -1;
    uint64_t want = (uint64_t)llround(s * 1000);
    if (lo && want < lo)
        want = lo;
    if (hi && want > hi)
        want = hi;
    *ms = want;
    return 0;
}

static int query_mode(struct MHD_Connection *c, enum hub_mode *mode)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mode");
    if (v == NULL)
        return 0;
    if (strcmp(v, "patch") == 0)
        *mode = HUB_MODE_PATCH;
    else if (strcmp(v, "snapshot") == 0)
        *mode = HUB_MODE_SNAPSHOT;
    else
        return -1;
    return 0;
}

/* The client's last event id: the Last-Event-ID header, else ?lastEventId= (for clients that
 * cannot set headers). An id too long to be ours counts as unknown. */
static const char *last_event_id(struct MHD_Connection *c)
{
    const char *id = NULL;
    size_t len = 0;
    if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, "Last-Event-ID", 13, &id, &len) !=
            MHD_YES ||
        id == NULL)
        MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "lastEventId", 11, &id, &len);
    /* An id that is too long, or that a NUL would cut short, is not one of ours. */
    if (id == NULL || len > MAX_LAST_EVENT_ID || strlen(id) != len)
        return NULL;
    return id;
}

/* ---- subscribers per client address ----------------------------------------------------- */

#define ADDR_BUCKETS 4096

/* How many streams one client address holds; entries exist only while it holds some. */
struct addr_count {
    struct addr_count *next;
    unsigned n;
    char addr[64];
};

static struct addr_count **addr_slot(struct http_server *srv, const char *addr)
{
    size_t b = (size_t)(json_hash_bytes(addr, strlen(addr), 0x6970) % ADDR_BUCKETS);
    struct addr_count **pp = &srv->per_addr[b];
    while (*pp && strcmp((*pp)->addr, addr) != 0)
        pp = &(*pp)->next;
    return pp;
}

static unsigned addr_streams(struct http_server *srv, const char *addr)
{
    struct addr_count **pp = addr_slot(srv, addr);
    return *pp ? (*pp)->n : 0;
}

/* Counts one more stream for addr. Returns 0, or -1 on OOM. */
static int addr_take(struct http_server *srv, const char *addr)
{
    struct addr_count **pp = addr_slot(srv, addr);
    if (*pp == NULL) {
        struct addr_count *e = calloc(1, sizeof(*e));
        if (e == NULL)
            return -1;
        snprintf(e->addr, sizeof(e->addr), "%s", addr);
        *pp = e;
    }
    (*pp)->n++;
    return 0;
}

static void addr_release(struct http_server *srv, const char *addr)
{
    struct addr_count **pp = addr_slot(srv, addr);
    struct addr_count *e = *pp;
    if (e && --e->n == 0) {
        *pp = e->next;
        free(e);
    }
}

/* ---- authenticated streams --------------------------------------------------------------- */

/* Notes what the current request's token had to grant: target (a stream name, or a canonical
 * URL when url). Returns 0, or -1 on OOM. */
static int auth_keep_target(struct http_server *srv, const char *target, int url)
{
    struct request *q = srv->cur;
    if (q == NULL)
        return 0;
    free(q->grant_target);
    q->grant_target = strdup(target);
    q->grant_url = url;
    return q->grant_target ? 0 : -1;
}

/* Takes q off the list of authenticated streams and drops its timer and token. Safe on a request
 * that is not on it, and from its timer's callback. */
static void auth_untrack(struct http_server *srv, struct request *q)
{
    if (q->expiry == NULL)
        return;
    if (q->auth_prev)
        q->auth_prev->auth_next = q->auth_next;
    else
        srv->authed = q->auth_next;
    if (q->auth_next)
        q->auth_next->auth_prev = q->auth_prev;
    q->auth_prev = q->auth_next = NULL;
    loop_timer_free(q->expiry);
    q->expiry = NULL;
    free(q->token);
    q->token = NULL;
}

/* Ends q's stream with a last "stream-end" event that says why ({"reason","detail"}), counted
 * and logged under ended_names[why]. An EventSource reconnects after it and, with the same
 * token, gets the 401 or 403 that explains. */
static void auth_end_stream(struct http_server *srv, struct request *q, enum ended_reason why,
                            const char *detail)
{
    auth_untrack(srv, q);
    if (q->tally.sub == NULL)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "reason", ended_names[why]);
    cJSON_AddStringToObject(o, "detail", detail);
    char *data = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    struct buf b;
    buf_init(&b, 0);
    if (data)
        buf_printf(&b, "event: stream-end\ndata: %s\n\n", data);
    free(data);
    srv->ended[why]++;
    hub_subscriber_end(q->tally.sub, ended_names[why], b.data, b.len);
    buf_dispose(&b);
}

/* Arms q's timer for the moment its token stops being accepted: exp plus the leeway. Returns 0,
 * or -1 when that moment has come. */
static int auth_arm(struct http_server *srv, struct request *q)
{
    uint64_t end = q->exp_ms + auth_leeway_ms(srv->p.auth), now = auth_now_ms();
    if (now >= end)
        return -1;
    loop_timer_start(q->expiry, end - now);
    return 0;
}

static void on_token_expiry(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct request *q = arg;
    /* The loop's timers count from its cached clock, which may lag the wall clock by the time
     * the current dispatch took: the stream ends only once the token would be refused. */
    if (auth_arm(q->srv, q) == 0)
        return;
    auth_end_stream(q->srv, q, ENDED_TOKEN_EXPIRED, "the token expired");
}

/* Puts a stream that has just started on the list of authenticated streams, with its timer. */
static void auth_track(struct http_server *srv, struct request *q)
{
    q->expiry = loop_timer_new(srv->loop, on_token_expiry, q);
    if (q->expiry == NULL) {
        /* Without a timer the stream could outlive its token: it ends at once instead. */
        if (q->tally.sub)
            hub_subscriber_end(q->tally.sub, "out_of_memory", NULL, 0);
        return;
    }
    q->auth_next = srv->authed;
    if (srv->authed)
        srv->authed->auth_prev = q;
    srv->authed = q;
    if (auth_arm(srv, q) != 0)
        loop_timer_start(q->expiry, 0);
}

void http_server_recheck_auth(struct http_server *srv)
{
    uint64_t now = auth_now_ms();
    struct request *next;
    for (struct request *q = srv->authed; q; q = next) {
        next = q->auth_next;
        if (srv->p.auth == NULL) {
            /* Auth is off now: the stream needs no token any more. */
            auth_untrack(srv, q);
            continue;
        }
        struct auth_grant g;
        char why[256] = "";
        int ok = auth_check(srv->p.auth, q->token, now, &g, why, sizeof(why));
        if (ok == AUTH_OK && !(q->grant_url ? auth_grant_allows_url(&g, q->grant_target)
                                            : auth_grant_allows_stream(&g, q->grant_target))) {
            ok = AUTH_INVALID;
            snprintf(why, sizeof(why), "the token does not grant this %s",
                     q->grant_url ? "URL" : "stream");
        }
        if (ok == AUTH_OK) {
            q->exp_ms = g.exp_ms;
            if (auth_arm(srv, q) != 0)
                loop_timer_start(q->expiry, 0);
        } else if (ok == AUTH_INVALID) {
            char detail[300];
            snprintf(detail, sizeof(detail), "the reloaded [auth] refuses the token: %s", why);
            auth_end_stream(srv, q, ENDED_AUTH_CHANGED, detail);
        }
        /* Out of memory: the stream goes on under its old check. */
        auth_grant_dispose(&g);
    }
}

static enum MHD_Result start_stream(struct http_server *srv, struct MHD_Connection *c,
                                    const char *key, struct topic_spec *spec, enum hub_mode mode)
{
    /* A request must end before the next tick is due: at most 80% of the interval, but never
     * below a second (a tick that finds its request still running is skipped). */
    uint64_t cap = spec->poll.interval_ms * 4 / 5;
    if (cap < 1000)
        cap = 1000;
    if (spec->poll.timeout_ms == 0 || spec->poll.timeout_ms > cap)
        spec->poll.timeout_ms = cap;
    if (srv->quiesced)
        return send_retry_later(srv, c);
    if (hub_stats(srv->hub)->subscribers >= srv->p.max_subscribers)
        return send_retry_later(srv, c);
    /* The per-address limit counts streams, not connections: an address at its limit can still
     * reach /healthz or /metrics. */
    struct request *cur = srv->cur;
    int per_addr = srv->p.max_connections_per_ip && cur && cur->client[0];
    if (per_addr && addr_streams(srv, cur->client) >= srv->p.max_connections_per_ip)
        return send_retry_later(srv, c);
    struct topic *t = hub_topic_get(srv->hub, key, spec);
    if (t == NULL)
        return send_retry_later(srv, c);
    /* The subscriber sse_response_new creates counts what it is sent into the request's tally,
     * for the access log. */
    hub_set_next_tally(srv->hub, srv->cur ? &srv->cur->tally : NULL);
    struct MHD_Response *r =
        sse_response_new(srv->loop, c, t, mode, last_event_id(c), kick_daemon, srv);
    hub_set_next_tally(srv->hub, NULL);
    if (r == NULL)
        return MHD_NO;
    add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    if (rc == MHD_YES && srv->cur) {
        struct request *q = srv->cur;
        q->status = MHD_HTTP_OK;
        q->opened = 1;
        if (per_addr && addr_take(srv, q->client) == 0)
            q->counted = 1;
        if (q->token && q->grant_target)
            auth_track(srv, q);
        if (srv->p.access_log && q->stream)
            log_event(
                LOG_INFO, "stream opened",
                (struct log_field[]){LOG_STR("client", q->client), LOG_STR("stream", q->stream)},
                2);
    }
    return rc;
}

/* ---- resolving an ad-hoc host at admission ------------------------------------------------ */

/* Lookups running at once; past that, a stream starts without one (the check at connect still
 * refuses the address). */
#define MAX_LOOKUPS 32

/* Writes the host of a canonical URL into host when it is a name (not an address literal).
 * Returns 0, or -1 for a literal (ssrf_check_literal judged it already) or a name too long. */
static int url_host_name(const char *canonical, char *host, size_t hostlen)
{
    const char *h = strstr(canonical, "://");
    if (h == NULL || h[3] == '[')
        return -1;
    h += 3;
    size_t n = strcspn(h, ":/?#");
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 ? -1 : 0;
}

static void resolving_unlink(struct http_server *srv, struct request *q)
{
    if (q->rprev)
        q->rprev->rnext = q->rnext;
    else if (srv->resolving == q)
        srv->resolving = q->rnext;
    if (q->rnext)
        q->rnext->rprev = q->rprev;
    q->rprev = q->rnext = NULL;
}

/* The lookup of a suspended request ended: every address it gave must pass the address policy
 * (a name with a refused address is refused, as rebinding setups mix them); a name that does
 * not resolve in time is let through, and its poller reports what happens at connect. Then the
 * request is routed again. */
static void on_resolved(void *arg, enum resolve_status status, const struct addrinfo *ai)
{
    struct request *q = arg;
    struct http_server *srv = q->srv;
    char why[160];
    q->lookup = NULL;
    q->looked_up = 1;
    for (; status == RESOLVE_OK && ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!ssrf_addr_allowed(ai->ai_addr, ai->ai_addrlen, srv->p.allow_cidrs, why, sizeof(why))) {
            char detail[256];
            snprintf(detail, sizeof(detail), "the host resolves to a refused address: %s", why);
            free(q->lookup_refused);
            /* Out of memory leaves it NULL: the connect-time check still refuses the address. */
            q->lookup_refused = strdup(detail);
            break;
        }
    }
    resolving_unlink(srv, q);
    MHD_resume_connection(q->conn);
    kick_daemon(srv);
}

/* Ends the lookups of suspended requests (their callbacks are not called) and resumes them. */
static void resolving_abort(struct http_server *srv)
{
    while (srv->resolving) {
        struct request *q = srv->resolving;
        resolve_cancel(q->lookup);
        q->lookup = NULL;
        q->looked_up = 1;
        resolving_unlink(srv, q);
        MHD_resume_connection(q->conn);
    }
}

/* Starts the stream of an admitted ad-hoc URL (canonical). When the topic is new and the host
 * is a name, the connection is first suspended while the name resolves (at most [allow]
 * connect_timeout), so that a name resolving to a refused address gets its 403 at once instead
 * of a stream of upstream-error events; handle() runs again when the lookup ends. */
static enum MHD_Result start_adhoc(struct http_server *srv, struct MHD_Connection *c,
                                   const char *key, const char *canonical, struct topic_spec *spec,
                                   enum hub_mode mode)
{
    struct request *q = srv->cur;
    char host[256];
    if (q && q->lookup_refused)
        return send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed", q->lookup_refused);
    if (q && !q->looked_up && srv->resolver && !srv->quiesced &&
        hub_topic_find(srv->hub, key) == NULL &&
        url_host_name(canonical, host, sizeof(host)) == 0) {
        q->looked_up = 1;
        uint64_t timeout = srv->p.adhoc.connect_timeout_ms ? srv->p.adhoc.connect_timeout_ms : 3000;
        q->lookup = resolver_start(srv->resolver, host, timeout, on_resolved, q);
        if (q->lookup) {
            q->conn = c;
            q->rnext = srv->resolving;
            if (srv->resolving)
                srv->resolving->rprev = q;
            srv->resolving = q;
            MHD_suspend_connection(c);
            return MHD_YES;
        }
    }
    return start_stream(srv, c, key, spec, mode);
}

/* Names the current request in the access log: a stream name, or a URL of which only the part
 * before the query is kept (queries may carry tokens). */
static void name_request(struct http_server *srv, struct MHD_Connection *c, const char *what)
{
    struct request *q = srv->cur;
    if (q == NULL || q->stream)
        return;
    /* Userinfo ("https://user:pass@host/") is a secret too. */
    const char *auth = strstr(what, "://");
    if (auth) {
        auth += 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', alen);
        if (at) {
            struct buf b;
            buf_init(&b, 0);
            buf_append(&b, what, (size_t)(auth - what));
            buf_append(&b, at + 1, strcspn(at + 1, "?#"));
            q->stream = buf_steal(&b, NULL);
        }
    }
    if (q->stream == NULL)
        q->stream = strndup(what, strcspn(what, "?#"));
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in);
        if (getnameinfo(ci->client_addr, len, q->client, sizeof(q->client), NULL, 0,
                        NI_NUMERICHOST) != 0)
            snprintf(q->client, sizeof(q->client), "?");
    }
}

/* With [auth] configured: reads the token from the Authorization header, the access_token
 * query parameter or the cookie and checks it. Returns 1 with *grant filled (the caller disposes
 * it), 0 when auth is off, or -1 after queueing the 401/503 answer in *rc. */
static int authenticate(struct http_server *srv, struct MHD_Connection *c, struct auth_grant *grant,
                        enum MHD_Result *rc, int compat, const char *sd_token)
{
    if (srv->p.auth == NULL)
        return 0;
    /* On the Streamdata.io form the query belongs to the upstream URL: its token is X-Sd-Token
     * (query parameter or header) instead of access_token. */
    const char *query_token =
        compat ? sd_token : MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token");
    char token[AUTH_MAX_TOKEN + 1];
    int found = auth_token_from_request(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), query_token,
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie"), srv->p.auth_cookie, token,
        sizeof(token));
    char why[256] = "a bearer token is required";
    int status = MHD_HTTP_UNAUTHORIZED;
    if (found == 1) {
        int ok = auth_check(srv->p.auth, token, auth_now_ms(), grant, why, sizeof(why));
        /* The stream keeps its token, to end when it expires and to be checked again when the
         * keys change. */
        struct request *q = srv->cur;
        if (ok == AUTH_OK && q) {
            free(q->token);
            q->token = strdup(token);
            q->exp_ms = grant->exp_ms;
            if (q->token == NULL) {
                auth_grant_dispose(grant);
                ok = AUTH_NOMEM;
            }
        }
        if (ok == AUTH_OK)
            return 1;
        if (ok == AUTH_NOMEM)
            status = MHD_HTTP_SERVICE_UNAVAILABLE;
    } else if (found < 0) {
        snprintf(why, sizeof(why), "the token is malformed");
    }
    count_reject(srv, status == MHD_HTTP_UNAUTHORIZED ? REJECT_UNAUTHORIZED : REJECT_UNAVAILABLE,
                 (unsigned)status);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "status", status);
    cJSON_AddStringToObject(o, "title",
                            status == MHD_HTTP_UNAUTHORIZED ? "Unauthorized" : "Unavailable");
    cJSON_AddStringToObject(o, "detail", why);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY) : NULL;
    free(body);
    *rc = MHD_NO;
    if (r == NULL)
        return -1;
    MHD_add_response_header(r, "Content-Type", "application/problem+json");
    /* RFC 6750, 3.1: no error code when the request had no token; invalid_token when the one
     * it had is refused. A 503 (out of memory) is no challenge. */
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate",
                                found < 0 || found == 1 ? "Bearer error=\"invalid_token\""
                                                        : "Bearer");
    add_cors(srv, c, r);
    *rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return -1;
}

static enum MHD_Result route_stream(struct http_server *srv, struct MHD_Connection *c,
                                    const char *name)
{
    /* The token is checked before the name, so that nobody unauthenticated can probe which
     * streams exist. */
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    name_request(srv, c, name);
    int authed = authenticate(srv, c, &grant, &rc, 0, NULL);
    if (authed < 0)
        return rc;
    int granted = authed == 0 || auth_grant_allows_stream(&grant, name);
    auth_grant_dispose(&grant);
    if (authed == 1 && granted && auth_keep_target(srv, name, 0) != 0)
        return MHD_NO;
    const struct http_stream *st = NULL;
    for (size_t i = 0; i < srv->p.nstreams; i++)
        if (strcmp(srv->p.streams[i].name, name) == 0)
            st = &srv->p.streams[i];
    if (st == NULL)
        return send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Unknown stream",
                            "no upstream of that name is configured");
    if (!granted)
        return send_insufficient_scope(srv, c, "the token does not grant this stream");
    struct topic_spec spec = st->spec;
    enum hub_mode mode = st->mode;
    if (query_interval(c, st->min_interval_ms, st->max_interval_ms, &spec.poll.interval_ms) != 0)
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad interval",
                            "interval takes a number of seconds, such as 5 or 0.5");
    if (query_mode(c, &mode) != 0)
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode", "mode is patch or snapshot");
    /* Client headers the config lets through join the configured ones; their values are part
     * of the poller's key, so that clients sending different values never share a poller. */
    struct buf key;
    buf_init(&key, 0);
    const char *lines[CONFIG_MAX_LIST_ITEMS * 2];
    struct buf fwd[CONFIG_MAX_LIST_ITEMS];
    size_t nlines = 0, nfwd = 0;
    rc = MHD_NO;
    if (buf_printf(&key, "s:%s|%llu", st->name, (unsigned long long)spec.poll.interval_ms) != 0)
        goto out;
    if (st->request_id && buf_printf(&key, "|%s", st->request_id) != 0)
        goto out;
    for (size_t i = 0; i < spec.poll.nheaders && nlines < CONFIG_MAX_LIST_ITEMS; i++)
        lines[nlines++] = spec.poll.headers[i];
    for (const char *const *f = st->forward_headers; f && *f && nfwd < CONFIG_MAX_LIST_ITEMS;
         f++) {
        const char *v = NULL;
        size_t vlen = 0;
        if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, *f, strlen(*f), &v, &vlen) !=
                MHD_YES ||
            v == NULL)
            continue;
        if (strlen(v) != vlen || strpbrk(v, "\r\n") != NULL || vlen > 4096) {
            rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad header",
                              "a forwarded header holds a control byte or is too long");
            goto out;
        }
        buf_init(&fwd[nfwd], 0);
        if (buf_printf(&fwd[nfwd], "%s: %s", *f, v) != 0 ||
            buf_printf(&key, "|%zu:%s", fwd[nfwd].len, fwd[nfwd].data) != 0) {
            nfwd++;
            goto out;
        }
        lines[nlines++] = fwd[nfwd++].data;
    }
    spec.poll.headers = lines;
    spec.poll.nheaders = nlines;
    rc = start_stream(srv, c, key.data, &spec, mode);
out:
    for (size_t i = 0; i < nfwd; i++)
        buf_dispose(&fwd[i]);
    buf_dispose(&key);
    return rc;
}

/* GET /streams: the configured stream names, for the viewer and for discovery. */
static enum MHD_Result route_stream_list(struct http_server *srv, struct MHD_Connection *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "streams");
    for (size_t i = 0; i < srv->p.nstreams; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", srv->p.streams[i].name);
        char path[128];
        snprintf(path, sizeof(path), "/streams/%s", srv->p.streams[i].name);
        cJSON_AddStringToObject(e, "path", path);
        cJSON_AddNumberToObject(e, "interval_ms", (double)srv->p.streams[i].spec.poll.interval_ms);
        cJSON_AddItemToArray(a, e);
    }
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL)
        return MHD_NO;
    enum MHD_Result rc = send_text(srv, c, MHD_HTTP_OK, "application/json", body, strlen(body));
    free(body);
    return rc;
}

/* The checks every client-chosen URL passes (/proxy and the Streamdata.io form): it is
 * normalised into canon, must match an allow rule, must not name a refused address literally,
 * and must be granted by the token when there is one (grant not NULL). Returns 1 when admitted;
 * otherwise 0, with the problem answer queued and its result in *rc. */
static int admit_adhoc(struct http_server *srv, struct MHD_Connection *c, const char *url,
                       const struct auth_grant *grant, struct buf *canon, enum MHD_Result *rc)
{
    char why[256];
    if (ssrf_normalize_url(url, canon, why, sizeof(why)) != 0)
        *rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", why);
    else if (!ssrf_url_allowed(canon->data, srv->p.allow_prefixes))
        *rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed",
                           "the URL matches no allow rule of this server");
    else if (ssrf_check_literal(canon->data, srv->p.allow_cidrs, why, sizeof(why)) != 0)
        *rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed", why);
    else if (grant && !auth_grant_allows_url(grant, canon->data))
        *rc = send_insufficient_scope(srv, c, "the token does not grant this URL");
    else if (grant && auth_keep_target(srv, canon->data, 1) != 0)
        *rc = MHD_NO;
    else
        return 1;
    return 0;
}

static enum MHD_Result route_proxy(struct http_server *srv, struct MHD_Connection *c)
{
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    const char *url = NULL;
    MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "url", 3, &url, NULL);
    name_request(srv, c, url && *url ? url : "/proxy");
    url = NULL;
    int authed = authenticate(srv, c, &grant, &rc, 0, NULL);
    if (authed < 0)
        return rc;
    size_t url_len = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "url", 3, &url, &url_len) !=
            MHD_YES ||
        url == NULL || *url == '\0') {
        auth_grant_dispose(&grant);
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Missing url",
                            "use /proxy?url=<percent-encoded absolute http(s) URL>");
    }
    struct buf canon;
    buf_init(&canon, 0);
    if (strlen(url) != url_len) {
        rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", "the URL holds a NUL byte");
    } else if (admit_adhoc(srv, c, url, authed == 1 ? &grant : NULL, &canon, &rc)) {
        /* The name (for logs) leaves the query out: it may carry the upstream's tokens. */
        char *name = strndup(canon.data, strcspn(canon.data, "?#"));
        struct topic_spec spec = {.poll = srv->p.adhoc,
                                  .name = name ? name : "adhoc",
                                  .id_keys = srv->p.adhoc_id_keys,
                                  .error_repeat_ms = srv->p.adhoc_error_repeat_ms,
                                  .any_content_type = srv->p.adhoc_any_content_type};
        spec.poll.url = canon.data;
        spec.poll.adhoc = 1;
        enum hub_mode mode = HUB_MODE_PATCH;
        struct buf key;
        buf_init(&key, 0);
        if (query_interval(c, srv->p.adhoc_min_interval_ms, srv->p.adhoc_max_interval_ms,
                           &spec.poll.interval_ms) != 0)
            rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad interval",
                              "interval takes a number of seconds, such as 5 or 0.5");
        else if (query_mode(c, &mode) != 0)
            rc =
                send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode", "mode is patch or snapshot");
        else if (buf_printf(&key, "p:%s|%llu", canon.data,
                            (unsigned long long)spec.poll.interval_ms) != 0)
            rc = MHD_NO;
        else
            rc = start_adhoc(srv, c, key.data, canon.data, &spec, mode);
        buf_dispose(&key);
        free(name);
    }
    buf_dispose(&canon);
    auth_grant_dispose(&grant);
    return rc;
}

/* ---- the Streamdata.io form ------------------------------------------------------------- */

/* What GET /{absolute-url} asks for, once the X-Sd-* parameters are taken out of the URL. */
struct compat_req {
    struct buf url; /* the upstream URL, the X-Sd-* query parameters removed */
    char *token;    /* X-Sd-Token, or NULL */
    char *headers[COMPAT_MAX_HEADERS];
    size_t nheaders;
    const char *error; /* why the request is malformed, NULL when it is not */
};

static void compat_dispose(struct compat_req *cr)
{
    buf_dispose(&cr->url);
    free(cr->token);
    for (size_t i = 0; i < cr->nheaders; i++)
        free(cr->headers[i]);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes n bytes of a query component (%XX, '+' as a space). Returns a string, or NULL when it
 * is malformed or decodes to a NUL, CR or LF. */
static char *query_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (ch == '\0' || ch == '\r' || ch == '\n') {
            free(out);
            return NULL;
        }
        out[k++] = ch;
    }
    out[k] = '\0';
    return out;
}

static void compat_add_header(struct compat_req *cr, char *line)
{
    if (line == NULL || strlen(line) > COMPAT_MAX_HEADER || strchr(line, '\r') ||
        strchr(line, '\n')) {
        free(line);
        cr->error = "an X-Sd-Header is malformed or too long";
    } else if (cr->nheaders == COMPAT_MAX_HEADERS) {
        free(line);
        cr->error = "too many X-Sd-Header";
    } else {
        cr->headers[cr->nheaders++] = line;
    }
}

static enum MHD_Result compat_header_it(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct compat_req *cr = cls;
    if (strcasecmp(key, "X-Sd-Header") == 0 && value)
        compat_add_header(cr, strdup(value));
    return MHD_YES;
}

/* Splits target ("https://host/path?a=1&X-Sd-Token=..") into cr. */
static void compat_parse(struct MHD_Connection *c, const char *target, struct compat_req *cr)
{
    memset(cr, 0, sizeof(*cr));
    buf_init(&cr->url, 0);
    size_t base = strcspn(target, "?#");
    buf_append(&cr->url, target, base);
    const char *q = target[base] == '?' ? target + base + 1 : NULL;
    size_t qlen = q ? strcspn(q, "#") : 0;
    int first = 1;
    while (q && qlen > 0) {
        size_t plen = strcspn(q, "&");
        if (plen > qlen)
            plen = qlen;
        size_t nlen = strcspn(q, "=");
        if (nlen > plen)
            nlen = plen;
        char *name = query_decode(q, nlen);
        int token = name && strcasecmp(name, "X-Sd-Token") == 0;
        int header = name && strcasecmp(name, "X-Sd-Header") == 0;
        free(name);
        const char *val = nlen < plen ? q + nlen + 1 : q + plen;
        size_t vlen = nlen < plen ? plen - nlen - 1 : 0;
        if (token) {
            free(cr->token);
            cr->token = query_decode(val, vlen);
            if (cr->token == NULL)
                cr->error = "X-Sd-Token is malformed";
        } else if (header) {
            compat_add_header(cr, query_decode(val, vlen));
        } else if (plen > 0) {
            buf_putc(&cr->url, first ? '?' : '&');
            buf_append(&cr->url, q, plen);
            first = 0;
        }
        q += plen;
        qlen -= plen;
        if (qlen > 0) {
            q++;
            qlen--;
        }
    }
    if (cr->token == NULL) {
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Sd-Token");
        if (h)
            cr->token = strdup(h);
    }
    MHD_get_connection_values(c, MHD_HEADER_KIND, compat_header_it, cr);
    if (cr->url.data == NULL)
        cr->error = "out of memory";
}

/* Checks a "Name: value" line of X-Sd-Header against the names [allow] forward_header lists.
 * Returns NULL when it may be sent, or why not. */
static const char *compat_header_check(const struct http_server *srv, const char *line)
{
    size_t n = strcspn(line, ":");
    if (line[n] != ':' || n == 0)
        return "an X-Sd-Header is not \"Name: value\"";
    for (size_t i = 0; i < n; i++)
        if (!(line[i] > ' ' && line[i] < 0x7f && strchr("()<>@,;:\\\"/[]?={}", line[i]) == NULL))
            return "an X-Sd-Header has an invalid name";
    for (const char *const *f = srv->p.adhoc_forward_headers; f && *f; f++)
        if (strlen(*f) == n && strncasecmp(*f, line, n) == 0)
            return NULL;
    return "this server forwards no such header (see [allow] forward_header)";
}

static enum MHD_Result route_compat(struct http_server *srv, struct MHD_Connection *c,
                                    const char *target)
{
    struct compat_req cr;
    compat_parse(c, target, &cr);
    name_request(srv, c, cr.url.data ? cr.url.data : "compat");
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    int authed = authenticate(srv, c, &grant, &rc, 1, cr.token);
    if (authed < 0) {
        compat_dispose(&cr);
        return rc;
    }
    const char *bad = cr.error;
    for (size_t i = 0; bad == NULL && i < cr.nheaders; i++)
        bad = compat_header_check(srv, cr.headers[i]);
    struct buf canon;
    buf_init(&canon, 0);
    if (cr.error) {
        rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad request", cr.error);
    } else if (bad) {
        rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "Header not allowed", bad);
    } else if (admit_adhoc(srv, c, cr.url.data, authed == 1 ? &grant : NULL, &canon, &rc)) {
        char *name = strndup(canon.data, strcspn(canon.data, "?#"));
        struct topic_spec spec = {.poll = srv->p.adhoc,
                                  .name = name ? name : "compat",
                                  .id_keys = srv->p.adhoc_id_keys,
                                  .error_repeat_ms = srv->p.adhoc_error_repeat_ms,
                                  .any_content_type = srv->p.adhoc_any_content_type,
                                  .compat = 1};
        spec.poll.url = canon.data;
        spec.poll.adhoc = 1;
        spec.poll.headers = (const char *const *)cr.headers;
        spec.poll.nheaders = cr.nheaders;
        /* Subscribers share a poller when URL, headers and interval are the same; the key holds
         * the header lines (never logged), one per line since none can hold a line feed. */
        struct buf key;
        buf_init(&key, 0);
        int kr =
            buf_printf(&key, "c:%s\n%llu", canon.data, (unsigned long long)spec.poll.interval_ms);
        for (size_t i = 0; i < cr.nheaders; i++)
            kr |= buf_printf(&key, "\n%s", cr.headers[i]);
        rc = kr ? MHD_NO : start_adhoc(srv, c, key.data, canon.data, &spec, HUB_MODE_PATCH);
        buf_dispose(&key);
        free(name);
    }
    buf_dispose(&canon);
    auth_grant_dispose(&grant);
    compat_dispose(&cr);
    return rc;
}

/* Returns 1 when the request target is the Streamdata.io form "/http://..." or "/https://...". */
static int compat_target(const char *uri)
{
    return strncasecmp(uri, "/http://", 8) == 0 || strncasecmp(uri, "/https://", 9) == 0;
}

/* ---- health, metrics, demo --------------------------------------------------------------- */

/* Registers the hub's and the front's series. Returns 0 or -1 (OOM). */
static int register_metrics(struct http_server *srv)
{
    static const uint64_t one = 1;
    const struct hub_stats *s = hub_stats(srv->hub);
    struct metrics *m = srv->metrics;
    int rc = 0;
    rc |= metrics_add(m, "pollcast_build_info", METRICS_GAUGE,
                      "Always 1; the version label says which pollcast this is.", "version",
                      POLLCAST_VERSION, &one);
    rc |= metrics_add(m, "pollcast_subscribers", METRICS_GAUGE, "Connected subscribers.", NULL,
                      NULL, &s->subscribers);
    rc |= metrics_add(m, "pollcast_pollers", METRICS_GAUGE,
                      "Upstream pollers running on this node, named and ad-hoc.", NULL, NULL,
                      &s->pollers);
    static const char *const outcomes[] = {"changed", "unchanged", "not_modified", "failed",
                                           "rejected"};
    const uint64_t *polls[] = {&s->polls_changed, &s->polls_unchanged, &s->polls_not_modified,
                               &s->polls_failed, &s->polls_rejected};
    for (size_t i = 0; i < 5; i++)
        rc |= metrics_add(m, "pollcast_polls_total", METRICS_COUNTER,
                          "Upstream polls by outcome: changed, unchanged (same body), "
                          "not_modified (304), failed (transport or status), rejected (not JSON).",
                          "outcome", outcomes[i], polls[i]);
    rc |= metrics_add_histogram(m, "pollcast_upstream_latency_seconds",
                                "Upstream request time, from start to end.", &s->upstream_latency);
    rc |= metrics_add(m, "pollcast_upstream_bytes_total", METRICS_COUNTER,
                      "Bytes received from upstreams (on the wire).", NULL, NULL, &s->bytes_in);
    rc |= metrics_add(m, "pollcast_sent_bytes_total", METRICS_COUNTER,
                      "Bytes written to subscribers.", NULL, NULL, &s->bytes_out);
    rc |= metrics_add_histogram(m, "pollcast_patch_bytes",
                                "Size of each JSON Patch published, in bytes.", &s->patch_bytes);
    rc |= metrics_add(m, "pollcast_events_published_total", METRICS_COUNTER,
                      "Document events (data, patch) published to topics.", NULL, NULL,
                      &s->events_published);
    rc |= metrics_add(m, "pollcast_events_delivered_total", METRICS_COUNTER,
                      "Events written out whole to subscribers (keepalives excluded).", NULL, NULL,
                      &s->events_delivered);
    rc |= metrics_add(m, "pollcast_subscribers_reset_total", METRICS_COUNTER,
                      "Slow subscribers whose backlog was replaced by a snapshot.", NULL, NULL,
                      &s->subscribers_reset);
    for (size_t i = 0; i < REJECT_COUNT; i++)
        rc |= metrics_add(m, "pollcast_requests_rejected_total", METRICS_COUNTER,
                          "Requests refused, by reason.", "reason", reject_names[i],
                          &srv->rejected[i]);
    for (size_t i = 0; i < ENDED_COUNT; i++)
        rc |= metrics_add(m, "pollcast_streams_ended_total", METRICS_COUNTER,
                          "Streams the server ended while they went on, by reason: the token "
                          "expired, or a reload's [auth] no longer accepts it.",
                          "reason", ended_names[i], &srv->ended[i]);
    return rc ? -1 : 0;
}

struct metrics *http_server_metrics(struct http_server *srv)
{
    return srv->metrics;
}

static enum MHD_Result route_metrics(struct http_server *srv, struct MHD_Connection *c)
{
    struct buf b;
    buf_init(&b, 0);
    if (metrics_write(srv->metrics, &b) != 0) {
        buf_dispose(&b);
        return MHD_NO;
    }
    enum MHD_Result rc =
        send_text(srv, c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_dispose(&b);
    return rc;
}

static uint64_t demo_rand(uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x;
}

/* The demo document is a function of the time alone (every answer for second t is the same), and
 * each second changes only a few of its values, in the ways real APIs change, so that the stream
 * shows small and varied patches:
 *   tick           every second
 *   prices         two of the ten symbols every second (symbol i moves when t % 5 == i % 5)
 *   orders         order n is placed at 4n (an add at the end), its quantity changes at 4n + 7,
 *                  every other order is rushed at 4n + 13 (set rush: true and moved to the front,
 *                  newest rush first), and it is filled at 4n + 30 (removed)
 *   filled_today   orders filled since midnight UTC
 * Order ids shown are 1000 + n % 9000: the id of an order is unique among the open ones. */
#define DEMO_SYMBOLS     10
#define DEMO_PLACE_EVERY 4u
#define DEMO_QTY_AT      7u
#define DEMO_RUSH_AT     13u
#define DEMO_FILL_AT     30u
#define DEMO_MAX_ORDERS  (DEMO_FILL_AT / DEMO_PLACE_EVERY + 1)

struct demo_order {
    uint64_t id;
    int rushed;
};

/* Rushed orders first, the most recently rushed (highest id) leading; then the others by id. */
static int demo_order_before(const struct demo_order *a, const struct demo_order *b)
{
    if (a->rushed != b->rushed)
        return a->rushed;
    return a->rushed ? a->id > b->id : a->id < b->id;
}

int http_demo_document(struct buf *out, uint64_t t)
{
    static const char *symbols[DEMO_SYMBOLS] = {"ACME",  "GLOBX",  "INITECH", "UMBRL",  "WAYNE",
                                                "STARK", "TYRELL", "CYBRDN",  "SOYLNT", "WONKA"};
    static const char *items[] = {"anvil",
                                  "rocket skates",
                                  "giant magnet",
                                  "tornado seeds",
                                  "jet-propelled pogo stick",
                                  "earthquake pills",
                                  "bird seed"};
    static const char *customers[] = {"Wile E. Coyote", "Elmer Fudd", "Yosemite Sam", "Marvin",
                                      "Daffy Duck"};
    int rc = buf_printf(out,
                        "{\"source\":\"pollcast demo\",\"tick\":%llu,\"currency\":\"USD\","
                        "\"prices\":{",
                        (unsigned long long)t);
    for (size_t i = 0; i < DEMO_SYMBOLS; i++) {
        /* step: how often symbol i has moved; a bounded walk of 7 scales around its base. */
        uint64_t step = (t + 5 - i % 5) / 5;
        long cents = 1000 + 1150 * (long)i;
        for (uint64_t k = 0; k < 7; k++)
            cents += (long)(demo_rand(i, step >> k) % 41) - 20;
        rc |= buf_printf(out, "%s\"%s\":%ld.%02ld", i ? "," : "", symbols[i], cents / 100,
                         cents % 100);
    }
    /* The open orders: placed (4n <= t) and not yet filled (t < 4n + 30). */
    struct demo_order o[DEMO_MAX_ORDERS];
    size_t n = 0;
    uint64_t last = t / DEMO_PLACE_EVERY;
    uint64_t first = t >= DEMO_FILL_AT ? (t - DEMO_FILL_AT) / DEMO_PLACE_EVERY + 1 : 0; /* filled */
    for (uint64_t id = first; id <= last && n < DEMO_MAX_ORDERS; id++) {
        struct demo_order x = {id,
                               (demo_rand(id, 7) & 1) && t >= id * DEMO_PLACE_EVERY + DEMO_RUSH_AT};
        size_t j = n++;
        for (; j > 0 && demo_order_before(&x, &o[j - 1]); j--)
            o[j] = o[j - 1];
        o[j] = x;
    }
    rc |= buf_puts(out, "},\"orders\":[");
    for (size_t k = 0; k < n; k++) {
        uint64_t id = o[k].id;
        int later = t >= id * DEMO_PLACE_EVERY + DEMO_QTY_AT;
        rc |=
            buf_printf(out,
                       "%s{\"id\":%llu,\"customer\":\"%s\",\"item\":\"%s\",\"qty\":%llu,"
                       "\"rush\":%s}",
                       k ? "," : "", (unsigned long long)(1000 + id % 9000), customers[id % 5],
                       items[id % 7], (unsigned long long)(1 + demo_rand(id, (uint64_t)later) % 9),
                       o[k].rushed ? "true" : "false");
    }
    uint64_t midnight = t - t % 86400;
    uint64_t before = midnight >= DEMO_FILL_AT ? (midnight - DEMO_FILL_AT) / DEMO_PLACE_EVERY + 1
                                               : 0; /* filled before midnight */
    rc |= buf_printf(out, "],\"filled_today\":%llu}", (unsigned long long)(first - before));
    return rc ? -1 : 0;
}

static enum MHD_Result route_demo(struct http_server *srv, struct MHD_Connection *c)
{
    struct buf b;
    buf_init(&b, 0);
    if (http_demo_document(&b, loop_wall_ms() / 1000) != 0) {
        buf_dispose(&b);
        return MHD_NO;
    }
    enum MHD_Result rc = send_text(srv, c, MHD_HTTP_OK, "application/json", b.data, b.len);
    buf_dispose(&b);
    return rc;
}

/* ---- routing ----------------------------------------------------------------------------- */

static enum MHD_Result preflight(struct http_server *srv, struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    const char *origin = cors_origin(srv, c);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                srv->p.compat
                                    ? "Last-Event-ID, Authorization, Cache-Control, X-Sd-Token, "
                                      "X-Sd-Header"
                                    : "Last-Event-ID, Authorization, Cache-Control");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return rc;
}

/* {"status":"ready"}, plus what the ready hook adds; 503 while shutting down or while the hook
 * says the node is not ready yet. */
static enum MHD_Result route_readyz(struct http_server *srv, struct MHD_Connection *c)
{
    if (srv->quiesced)
        return send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Shutting down", NULL);
    if (srv->ready_fn == NULL)
        return send_text(srv, c, MHD_HTTP_OK, "application/json", "{\"status\":\"ready\"}", 18);
    struct buf b;
    buf_init(&b, 0);
    int ready = srv->ready_fn(srv->ready_arg, &b);
    struct buf out;
    buf_init(&out, 0);
    int rc = buf_printf(&out, "{\"status\":\"%s\"%s%.*s}", ready ? "ready" : "starting",
                        b.len ? "," : "", (int)b.len, b.data ? b.data : "");
    buf_dispose(&b);
    enum MHD_Result r = rc ? MHD_NO
                           : send_text(srv, c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                                       "application/json", out.data, out.len);
    buf_dispose(&out);
    return r;
}

void http_server_set_ready(struct http_server *srv, http_ready_fn fn, void *arg)
{
    srv->ready_fn = fn;
    srv->ready_arg = arg;
}

static enum MHD_Result route(struct http_server *srv, struct MHD_Connection *c, const char *url,
                             int head, int options)
{
    if (options)
        return preflight(srv, c);
    if (strcmp(url, "/healthz") == 0)
        return send_text(srv, c, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", 15);
    if (strcmp(url, "/readyz") == 0)
        return route_readyz(srv, c);
    if (strcmp(url, "/metrics") == 0 && srv->p.metrics)
        return route_metrics(srv, c);
    if (srv->p.demo && strcmp(url, "/_demo/upstream.json") == 0)
        return route_demo(srv, c);
    if (strcmp(url, "/") == 0 && srv->p.viewer) {
        size_t len;
        const char *page = viewer_page(&len);
        return send_text(srv, c, MHD_HTTP_OK, "text/html; charset=utf-8", page, len);
    }
    if (strcmp(url, "/streams") == 0 || strcmp(url, "/streams/") == 0)
        return route_stream_list(srv, c);
    if (head)
        return send_problem(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Use GET", NULL);
    if (strncmp(url, "/streams/", 9) == 0 && url[9] != '\0')
        return route_stream(srv, c, url + 9);
    if (strcmp(url, "/proxy") == 0)
        return route_proxy(srv, c);
    /* The Streamdata.io form is read from the target as received: MHD has split off and
     * decoded its query, which belongs to the upstream URL. */
    if (srv->p.compat && srv->cur && compat_target(srv->cur->uri))
        return route_compat(srv, c, srv->cur->uri + 1);
    return send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Not found", NULL);
}

/* The checks on a request whose headers are complete: its size against the limits and control
 * bytes in its header values. Returns MHD_YES to go on (the answer comes once the request is
 * whole), or the result of queueing the refusal. */
static enum MHD_Result check_request(struct http_server *srv, struct MHD_Connection *c,
                                     const char *method, const char *version)
{
    struct request *q = srv->cur;
    struct header_scan hs = {0, 0};
    size_t params = 0;
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, scan_header, &hs);
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, count_value, &params);
    /* Each cookie takes a record as a header field does. */
    MHD_get_connection_values_n(c, MHD_COOKIE_KIND, count_value, &hs.fields);
    /* The URL first: a long query is what the client should shorten. */
    if (srv->p.max_url_length && strlen(q->uri) > srv->p.max_url_length)
        return send_problem(srv, c, MHD_HTTP_URI_TOO_LONG, "URI too long",
                            "the request target is longer than max_url_length");
    if (params > HTTP_MAX_QUERY_PARAMS)
        return send_problem(srv, c, MHD_HTTP_URI_TOO_LONG, "URI too long",
                            "the query has more parameters than this server accepts");
    if (srv->p.max_header_bytes &&
        header_bytes(c, method, q->uri, version) > srv->p.max_header_bytes)
        return send_problem(srv, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "Request headers too large",
                            "the header lines are longer than max_header_bytes");
    if (hs.fields > HTTP_MAX_HEADER_FIELDS)
        return send_problem(srv, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "Request headers too large",
                            "the request has more header fields and cookies than this server "
                            "accepts");
    if (hs.control)
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad header",
                            "a header value holds a CR, LF or NUL byte");
    /* Headers are in; answer on the next call, once MHD has the whole request. */
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct request *q = *req_cls;
    if (q == NULL || q->refused)
        return MHD_NO; /* the request record could not be allocated, or it is answered */
    int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    int options = strcmp(method, "OPTIONS") == 0;
    if (!q->seen) {
        q->seen = 1;
        request_arrived(c);
        /* Other methods are refused now, before any body they carry is read: MHD takes a
         * response only here or once the whole request is in, not while a body arrives. */
        if (!get && !head && !options) {
            struct MHD_Response *r =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            if (r == NULL)
                return MHD_NO;
            MHD_add_response_header(r, "Allow", "GET, HEAD, OPTIONS");
            srv->rejected[REJECT_METHOD]++;
            q->status = MHD_HTTP_METHOD_NOT_ALLOWED;
            enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
            MHD_destroy_response(r);
            return rc;
        }
        srv->cur = q;
        enum MHD_Result rc = check_request(srv, c, method, version);
        srv->cur = NULL;
        return rc;
    }
    if (*upload_data_size != 0) {
        /* A body on GET, HEAD or OPTIONS means nothing here: read and ignored. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    srv->cur = q;
    enum MHD_Result rc = route(srv, c, url, head, options);
    srv->cur = NULL;
    return rc;
}

/* ---- requests and the access log --------------------------------------------------------- */

static void request_release(struct subscriber_tally *t)
{
    struct request *q = (struct request *)t;
    if (q->counted)
        addr_release(q->srv, q->client);
    free(q->uri);
    free(q->stream);
    free(q->token);
    free(q->grant_target);
    free(q->lookup_refused);
    free(q);
}

/* The number of query parameters libmicrohttpd will make of uri (it splits on '&'). */
static size_t query_params(const char *uri)
{
    const char *qs = strchr(uri, '?');
    if (qs == NULL || qs[1] == '\0')
        return 0;
    size_t n = 1;
    for (const char *p = qs + 1; *p; p++)
        n += *p == '&';
    return n;
}

/* Refuses a request from its request line, before libmicrohttpd parses its query: the records of
 * too many parameters would not fit in the connection's memory, and libmicrohttpd would then
 * wait for the request timeout instead of answering. The answer is written on the socket, which
 * is still quiet (libmicrohttpd reads a request only once the previous answer is out), and the
 * connection is shut, which libmicrohttpd sees as the client leaving. */
static void refuse_request_line(struct http_server *srv, struct MHD_Connection *c,
                                struct request *q)
{
    static const char body[] = "{\"status\":414,\"title\":\"URI too long\",\"detail\":\"the query "
                               "has more parameters than this server accepts\"}";
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 414 URI Too Long\r\nContent-Type: application/problem+json\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
                     sizeof(body) - 1);
    srv->rejected[REJECT_BAD_REQUEST]++;
    q->status = MHD_HTTP_URI_TOO_LONG;
    q->refused = 1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, sizeof(body) - 1}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    /* A short write leaves a cut answer; the shutdown below ends the connection either way. */
    (void)sendmsg(ci->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(ci->connect_fd, SHUT_RDWR);
}

/* MHD's URI callback: the first thing known of a request. Its return value becomes *req_cls. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http_server *srv = cls;
    struct request *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->srv = srv;
    q->tally.refs = 1;
    q->tally.release = request_release;
    q->start_ms = loop_now_ms(srv->loop);
    q->uri = strdup(uri ? uri : "");
    if (q->uri == NULL) {
        free(q);
        return NULL;
    }
    if (query_params(q->uri) > HTTP_MAX_QUERY_PARAMS)
        refuse_request_line(srv, c, q);
    return q;
}

static const char *termination_reason(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return "completed";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
    case MHD_REQUEST_TERMINATED_READ_ERROR:
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
    default:
        return "client_gone";
    }
}

/* The end of a request: one access log line for a stream request, then the request record is
 * released (the hub may still hold it until the subscriber is gone). */
static void on_request_done(void *cls, struct MHD_Connection *c, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request *q = *req_cls;
    *req_cls = NULL;
    if (q == NULL)
        return;
    auth_untrack(srv, q);
    if (q->lookup) {
        resolve_cancel(q->lookup);
        q->lookup = NULL;
        resolving_unlink(srv, q);
    }
    if (srv->p.access_log && q->stream) {
        const char *reason = q->tally.end_reason ? q->tally.end_reason
                             : q->opened         ? termination_reason(toe)
                                                 : "refused";
        log_event(LOG_INFO, "stream closed",
                  (struct log_field[]){LOG_STR("client", q->client), LOG_STR("stream", q->stream),
                                       LOG_NUM("status", q->status),
                                       LOG_NUM("duration_ms", loop_now_ms(srv->loop) - q->start_ms),
                                       LOG_NUM("events", q->tally.events),
                                       LOG_NUM("bytes", q->tally.bytes), LOG_STR("reason", reason)},
                  7);
    }
    if (--q->tally.refs == 0)
        request_release(&q->tally);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

struct http_server *http_server_new(struct loop *loop, struct hub *hub,
                                    const struct http_params *params, char *err, size_t errlen)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv)
        srv->per_addr = calloc(ADDR_BUCKETS, sizeof(*srv->per_addr));
    if (srv == NULL || srv->per_addr == NULL) {
        snprintf(err, errlen, "out of memory");
        free(srv);
        return NULL;
    }
    srv->loop = loop;
    srv->hub = hub;
    srv->p = *params;
    srv->epoll_fd = -1;
    srv->metrics = metrics_new();
    srv->resolver = resolver_new(loop, MAX_LOOKUPS);
    if (srv->metrics == NULL || srv->resolver == NULL || register_metrics(srv) != 0) {
        snprintf(err, errlen, "out of memory");
        metrics_free(srv->metrics);
        resolver_free(srv->resolver);
        free(srv->per_addr);
        free(srv);
        return NULL;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (params->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (params->connect_rate_per_ip) {
        srv->rate = ratelimit_new(params->connect_rate_per_ip, params->connect_burst_per_ip, 65536);
        if (srv->rate == NULL) {
            snprintf(err, errlen, "out of memory");
            metrics_free(srv->metrics);
            resolver_free(srv->resolver);
            free(srv->per_addr);
            free(srv);
            return NULL;
        }
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, accept_policy, srv, handle, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&srv->p.addr, MHD_OPTION_CONNECTION_LIMIT,
        params->max_connections ? params->max_connections : 60000u,
        /* Streams per address are counted in start_stream; connections get some headroom above
         * that for health checks, metrics and the odd reconnect. */
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        params->max_connections_per_ip ? params->max_connections_per_ip + 64u : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, params->request_timeout_s ? params->request_timeout_s : 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        params->connection_memory ? params->connection_memory : (size_t)32768,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, params->listen_backlog ? params->listen_backlog : 4096u,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, srv, MHD_OPTION_NOTIFY_COMPLETED,
        on_request_done, srv, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
        getnameinfo((struct sockaddr *)&params->addr, params->addrlen, host, sizeof(host), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(err, errlen, "cannot listen on %s port %s (address in use, or not permitted)",
                 host, serv);
        ratelimit_free(srv->rate);
        metrics_free(srv->metrics);
        resolver_free(srv->resolver);
        free(srv->per_addr);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->timer = loop_timer_new(loop, on_daemon_timer, srv);
    srv->resume_timer = loop_timer_new(loop, on_resume_timer, srv);
    if (info == NULL || srv->timer == NULL || srv->resume_timer == NULL ||
        loop_watch(loop, info->epoll_fd, EPOLLIN, on_daemon_ready, srv) != 0) {
        snprintf(err, errlen, "cannot attach the HTTP server to the event loop");
        loop_timer_free(srv->timer);
        loop_timer_free(srv->resume_timer);
        MHD_stop_daemon(srv->daemon);
        ratelimit_free(srv->rate);
        metrics_free(srv->metrics);
        resolver_free(srv->resolver);
        free(srv->per_addr);
        free(srv);
        return NULL;
    }
    srv->epoll_fd = info->epoll_fd;
    srv->port = port ? port->port : 0;
    run_daemon(srv);
    return srv;
}

void http_server_update(struct http_server *srv, const struct http_params *params)
{
    struct http_params p = *params;
    p.addr = srv->p.addr;
    p.addrlen = srv->p.addrlen;
    p.max_connections = srv->p.max_connections;
    p.max_connections_per_ip = srv->p.max_connections_per_ip;
    p.connect_rate_per_ip = srv->p.connect_rate_per_ip;
    p.connect_burst_per_ip = srv->p.connect_burst_per_ip;
    p.request_timeout_s = srv->p.request_timeout_s;
    p.connection_memory = srv->p.connection_memory;
    p.max_url_length = srv->p.max_url_length;
    p.max_header_bytes = srv->p.max_header_bytes;
    p.listen_backlog = srv->p.listen_backlog;
    srv->p = p;
}

unsigned http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_quiesce(struct http_server *srv)
{
    if (srv->quiesced)
        return;
    srv->quiesced = 1;
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

unsigned http_server_connections(const struct http_server *srv)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->epoll_fd >= 0)
        loop_unwatch(srv->loop, srv->epoll_fd);
    if (srv->run_pending)
        loop_defer_cancel(srv->loop, on_deferred_run, srv);
    loop_timer_free(srv->timer);
    loop_timer_free(srv->resume_timer);
    /* MHD refuses to stop with suspended connections. */
    resolving_abort(srv);
    MHD_stop_daemon(srv->daemon);
    resolver_free(srv->resolver);
    ratelimit_free(srv->rate);
    metrics_free(srv->metrics);
    for (size_t b = 0; b < ADDR_BUCKETS; b++)
        while (srv->per_addr[b]) {
            struct addr_count *e = srv->per_addr[b];
            srv->per_addr[b] = e->next;
            free(e);
        }
    free(srv->per_addr);
    free(srv);
}

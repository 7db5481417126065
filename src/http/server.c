/* libmicrohttpd on the event loop: the daemon, its epoll descriptor watched by the loop, the
 * connection limits (count, per address, rate), request sizes and deadlines, the glue that
 * resumes suspended streams, the common answers (problem+json, retry later), the request record
 * and the access log, and the dispatch of each request to its route. */
#include "http/internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "json/json.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "resolve.h"
#include "sse.h"
#include "viewer.h"

const char *const http_ended_names[ENDED_COUNT] = {"token_expired", "auth_changed"};

const char *const http_reject_names[REJECT_COUNT] = {
    "bad_request", "unauthorized", "forbidden",    "not_found", "method",
    "overload",    "unavailable",  "rate_limited", "conflict",  "too_large"};

void http_count_reject(struct http_server *srv, enum reject_reason why, unsigned status)
{
    srv->rejected[why]++;
    if (srv->cur)
        srv->cur->status = status;
}

/* ---- the daemon on the loop -------------------------------------------------------------- */

/* The shortest time between two MHD runs that serve resumed streams: 1 ms per RESUME_GAP_CONNS
 * open connections, at most RESUME_GAP_MAX_MS (see http_kick_daemon). */
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

/* The MHD_run that http_kick_daemon asked for; skipped when another run has served the resumes. */
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
 * longer gap added latency without saving CPU (bench/RESULTS.md). Since streams are written
 * outside MHD once parked (sse.c), events resume nothing: resumes come from stream ends, plain
 * reads and publishes only, and the gap rarely applies. */
void http_kick_daemon(void *arg)
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

/* Connections at once, MHD's and the released streams' together: max_connections, or 60000
 * when it is 0 (unset). */
static unsigned connection_limit(const struct http_params *p)
{
    return p->max_connections ? p->max_connections : 60000u;
}

/* A connection past the connection limit (released streams included), or from a client over its
 * connection rate, is refused at accept: the TCP connection is closed before any request is
 * read. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_server *srv = cls;
    /* A connection given back after its stream (give_back) was accepted once already. */
    if (srv->giving_back)
        return MHD_YES;
    /* MHD counts its own connections against max_connections; the streams it let go keep their
     * sockets and count too. */
    if (sse_io_released(srv->sse) > 0) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info &&
            info->num_connections + sse_io_released(srv->sse) >= connection_limit(&srv->p)) {
            srv->rejected[REJECT_OVERLOAD]++;
            return MHD_NO;
        }
    }
    if (srv->rate && !ratelimit_allow(srv->rate, addr, addrlen, loop_now_ms(srv->loop))) {
        srv->rejected[REJECT_RATE_LIMITED]++;
        return MHD_NO;
    }
    return MHD_YES;
}

/* ---- responses --------------------------------------------------------------------------- */

const char *http_cors_origin(const struct http_server *srv, struct MHD_Connection *c)
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

void http_add_cors(const struct http_server *srv, struct MHD_Connection *c, struct MHD_Response *r)
{
    const char *origin = http_cors_origin(srv, c);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", "ETag, Retry-After");
        MHD_add_response_header(r, "Vary", "Origin");
    }
}

enum MHD_Result http_queue_response(struct http_server *srv, struct MHD_Connection *c,
                                    unsigned status, struct MHD_Response *r)
{
    http_add_cors(srv, c, r);
    if (srv->cur)
        srv->cur->status = status;
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_send_text(struct http_server *srv, struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    http_add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_send_problem_json(struct http_server *srv, struct MHD_Connection *c,
                                       unsigned status, cJSON *o, const char *hname,
                                       const char *hvalue)
{
    enum reject_reason why = status == MHD_HTTP_BAD_REQUEST || status == MHD_HTTP_URI_TOO_LONG ||
                                     status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE ||
                                     status == MHD_HTTP_UNSUPPORTED_MEDIA_TYPE ||
                                     status == MHD_HTTP_UNPROCESSABLE_CONTENT
                                 ? REJECT_BAD_REQUEST
                             : status == MHD_HTTP_UNAUTHORIZED       ? REJECT_UNAUTHORIZED
                             : status == MHD_HTTP_FORBIDDEN          ? REJECT_FORBIDDEN
                             : status == MHD_HTTP_NOT_FOUND          ? REJECT_NOT_FOUND
                             : status == MHD_HTTP_METHOD_NOT_ALLOWED ? REJECT_METHOD
                             : status == MHD_HTTP_CONFLICT || status == MHD_HTTP_PRECONDITION_FAILED
                                 ? REJECT_CONFLICT
                             : status == MHD_HTTP_CONTENT_TOO_LARGE ? REJECT_TOO_LARGE
                                                                    : REJECT_UNAVAILABLE;
    http_count_reject(srv, why, status);
    char *body = o ? cJSON_PrintUnformatted(o) : NULL;
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
    if (status == MHD_HTTP_URI_TOO_LONG || status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE ||
        status == MHD_HTTP_CONTENT_TOO_LARGE)
        MHD_add_response_header(r, "Connection", "close");
    if (hname)
        MHD_add_response_header(r, hname, hvalue);
    http_add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

cJSON *http_problem_new(unsigned status, const char *title, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "status", status);
    cJSON_AddStringToObject(o, "title", title);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    return o;
}

enum MHD_Result http_send_problem_with(struct http_server *srv, struct MHD_Connection *c,
                                       unsigned status, const char *title, const char *detail,
                                       const char *hname, const char *hvalue)
{
    return http_send_problem_json(srv, c, status, http_problem_new(status, title, detail), hname,
                                  hvalue);
}

enum MHD_Result http_send_method_not_allowed(struct http_server *srv, struct MHD_Connection *c,
                                             const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Allow", allow);
    http_count_reject(srv, REJECT_METHOD, MHD_HTTP_METHOD_NOT_ALLOWED);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_send_problem(struct http_server *srv, struct MHD_Connection *c,
                                  unsigned status, const char *title, const char *detail)
{
    return http_send_problem_with(srv, c, status, title, detail, NULL, NULL);
}

enum MHD_Result http_send_insufficient_scope(struct http_server *srv, struct MHD_Connection *c,
                                             const char *detail)
{
    return http_send_problem_with(srv, c, MHD_HTTP_FORBIDDEN, "Not allowed", detail,
                                  "WWW-Authenticate", "Bearer error=\"insufficient_scope\"");
}

enum MHD_Result http_send_retry_later(struct http_server *srv, struct MHD_Connection *c)
{
    http_count_reject(srv, srv->quiesced ? REJECT_UNAVAILABLE : REJECT_OVERLOAD, MHD_HTTP_OK);
    struct MHD_Response *r = sse_response_retry_later(srv->p.overload_retry_ms);
    if (r == NULL)
        return MHD_NO;
    http_add_cors(srv, c, r);
    MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
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

unsigned http_addr_streams(struct http_server *srv, const char *addr)
{
    struct addr_count **pp = addr_slot(srv, addr);
    return *pp ? (*pp)->n : 0;
}

int http_addr_take(struct http_server *srv, const char *addr)
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

static enum MHD_Result route(struct http_server *srv, struct MHD_Connection *c, const char *url,
                             int head, int options)
{
    if (options)
        return http_preflight(srv, c, url);
    if (strcmp(url, "/healthz") == 0)
        return http_send_text(srv, c, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", 15);
    if (strcmp(url, "/readyz") == 0)
        return http_route_readyz(srv, c);
    if (strcmp(url, "/metrics") == 0 && srv->p.metrics)
        return http_route_metrics(srv, c);
    if (srv->p.demo && strcmp(url, "/_demo/upstream.json") == 0)
        return http_route_demo(srv, c);
    if (strcmp(url, "/") == 0 && srv->p.viewer) {
        size_t len;
        const char *page = viewer_page(&len);
        return http_send_text(srv, c, MHD_HTTP_OK, "text/html; charset=utf-8", page, len);
    }
    if (strcmp(url, "/streams") == 0 || strcmp(url, "/streams/") == 0)
        return http_route_stream_list(srv, c);
    if (head)
        return http_send_problem(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Use GET", NULL);
    if (strncmp(url, "/streams/", 9) == 0 && url[9] != '\0')
        return http_route_stream(srv, c, url + 9);
    if (strcmp(url, "/proxy") == 0)
        return http_route_proxy(srv, c);
    /* The Streamdata.io form is read from the target as received: MHD has split off and
     * decoded its query, which belongs to the upstream URL. */
    if (srv->p.compat && srv->cur && http_compat_target(srv->cur->uri))
        return http_route_compat(srv, c, srv->cur->uri + 1);
    return http_send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Not found", NULL);
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
        return http_send_problem(srv, c, MHD_HTTP_URI_TOO_LONG, "URI too long",
                                 "the request target is longer than max_url_length");
    if (params > HTTP_MAX_QUERY_PARAMS)
        return http_send_problem(srv, c, MHD_HTTP_URI_TOO_LONG, "URI too long",
                                 "the query has more parameters than this server accepts");
    if (srv->p.max_header_bytes &&
        header_bytes(c, method, q->uri, version) > srv->p.max_header_bytes)
        return http_send_problem(srv, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                                 "Request headers too large",
                                 "the header lines are longer than max_header_bytes");
    if (hs.fields > HTTP_MAX_HEADER_FIELDS)
        return http_send_problem(srv, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                                 "Request headers too large",
                                 "the request has more header fields and cookies than this server "
                                 "accepts");
    if (hs.control)
        return http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad header",
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
    int publish =
        strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0 || strcmp(method, "POST") == 0;
    if (!q->seen) {
        q->seen = 1;
        q->chunked = sse_chunked(version);
        request_arrived(c);
        /* Other methods are refused now, before any body they carry is read: MHD takes a
         * response only here or once the whole request is in, not while a body arrives. */
        if (!get && !head && !options && !publish) {
            srv->cur = q;
            enum MHD_Result rc = http_send_method_not_allowed(srv, c, "GET, HEAD, OPTIONS");
            srv->cur = NULL;
            return rc;
        }
        srv->cur = q;
        enum MHD_Result rc = check_request(srv, c, method, version);
        /* A publish request is authenticated and sized before its body is read. */
        if (rc == MHD_YES && q->status == 0 && publish)
            rc = http_publish_begin(srv, c, url, method);
        srv->cur = NULL;
        return rc;
    }
    if (*upload_data_size != 0) {
        /* A publish request keeps its body, up to its cap; a body on GET, HEAD or OPTIONS
         * means nothing here: read and ignored. */
        if (q->publish)
            http_publish_body(q, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    srv->cur = q;
    enum MHD_Result rc =
        q->publish ? http_publish_finish(srv, c) : route(srv, c, url, head, options);
    srv->cur = NULL;
    return rc;
}

/* ---- requests and the access log --------------------------------------------------------- */

static void log_stream_closed(struct http_server *srv, struct request *q, const char *reason)
{
    log_event(LOG_INFO, "stream closed",
              (struct log_field[]){LOG_STR("client", q->client), LOG_STR("stream", q->stream),
                                   LOG_NUM("status", q->status),
                                   LOG_NUM("duration_ms", loop_now_ms(srv->loop) - q->start_ms),
                                   LOG_NUM("events", q->tally.events),
                                   LOG_NUM("bytes", q->tally.bytes), LOG_STR("reason", reason)},
              7);
}

static void request_release(struct subscriber_tally *t)
{
    struct request *q = (struct request *)t;
    /* A stream whose MHD connection was let go ends here, with its subscriber: what MHD's
     * completion callback does for the others (on_request_done). */
    if (q->released) {
        http_auth_untrack(q->srv, q);
        if (q->srv->p.access_log && q->stream)
            log_stream_closed(q->srv, q, q->tally.end_reason ? q->tally.end_reason : "client_gone");
    }
    buf_dispose(&q->body);
    free(q->pub_name);
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

/* A request was answered and its connection may carry another (HTTP/1.1 keep-alive): the next
 * one must come within request_timeout like the first, both against a client that sends nothing
 * (MHD's inactivity timeout, which a stream turns off for its life: was_stream) and against one
 * that drips a byte now and then (the connection's deadline, otherwise armed for the first
 * request only). */
static void request_expect_next(struct http_server *srv, struct MHD_Connection *c, int was_stream)
{
    unsigned secs = srv->p.request_timeout_s ? srv->p.request_timeout_s : 30u;
    if (was_stream)
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, secs);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_guard *g = ci ? ci->socket_context : NULL;
    if (g)
        loop_timer_start(g->timer, (uint64_t)secs * 1000);
}

/* The end of a request: one access log line for a stream request, then the request record is
 * released (the hub may still hold it until the subscriber is gone). */
static void on_request_done(void *cls, struct MHD_Connection *c, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request *q = *req_cls;
    *req_cls = NULL;
    /* The stream goes on without its MHD connection: its end is request_release's. */
    if (q && q->released) {
        if (--q->tally.refs == 0)
            request_release(&q->tally);
        return;
    }
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        request_expect_next(srv, c, q && q->opened);
    if (q == NULL)
        return;
    http_auth_untrack(srv, q);
    if (q->plain_sub || q->plain_timer)
        http_plain_end(srv, q);
    if (q->pub_waiting)
        http_publish_end(srv, q, 0);
    if (q->lookup) {
        resolve_cancel(q->lookup);
        q->lookup = NULL;
        http_resolving_unlink(srv, q);
    }
    if (srv->p.access_log && q->stream) {
        const char *reason = q->tally.end_reason                    ? q->tally.end_reason
                             : q->opened                            ? termination_reason(toe)
                             : q->plain && q->status == MHD_HTTP_OK ? "plain_read"
                             : q->plain && q->status == MHD_HTTP_NOT_MODIFIED ? "not_modified"
                                                                              : "refused";
        log_stream_closed(srv, q, reason);
    }
    if (--q->tally.refs == 0)
        request_release(&q->tally);
}

/* The socket of a stream that ended cleanly on an HTTP/1.1 connection MHD had let go
 * (sse_giveback_fn): MHD takes it as a new connection, which waits for its next request under
 * the request deadline and MHD's inactivity timeout, as a kept-alive connection does. */
static int give_back(void *arg, int fd)
{
    struct http_server *srv = arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (srv->quiesced || srv->daemon == NULL || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    srv->giving_back = 1;
    /* MHD closes the socket when it cannot take it (its connection limits, out of memory). */
    MHD_add_connection(srv->daemon, fd, (struct sockaddr *)&ss, len);
    srv->giving_back = 0;
    http_kick_daemon(srv);
    return 1;
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
    srv->sse = sse_io_new(loop, params->io_threads, params->io_bind_cpus, err, errlen);
    if (srv->metrics == NULL || srv->resolver == NULL || srv->sse == NULL ||
        http_register_metrics(srv) != 0) {
        if (srv->sse)
            snprintf(err, errlen, "out of memory");
        goto fail;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (params->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (params->connect_rate_per_ip) {
        srv->rate = ratelimit_new(params->connect_rate_per_ip, params->connect_burst_per_ip, 65536);
        if (srv->rate == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, accept_policy, srv, handle, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&srv->p.addr, MHD_OPTION_CONNECTION_LIMIT, connection_limit(params),
        /* Streams per address are counted in http_start_stream; connections get some headroom above
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
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->timer = loop_timer_new(loop, on_daemon_timer, srv);
    srv->resume_timer = loop_timer_new(loop, on_resume_timer, srv);
    if (info == NULL || srv->timer == NULL || srv->resume_timer == NULL ||
        loop_watch(loop, info->epoll_fd, EPOLLIN, on_daemon_ready, srv) != 0) {
        snprintf(err, errlen, "cannot attach the HTTP server to the event loop");
        goto fail;
    }
    srv->epoll_fd = info->epoll_fd;
    srv->port = port ? port->port : 0;
    sse_io_set_giveback(srv->sse, give_back, srv);
    http_publish_load_state(srv);
    run_daemon(srv);
    return srv;
fail:
    loop_timer_free(srv->timer);
    loop_timer_free(srv->resume_timer);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    ratelimit_free(srv->rate);
    metrics_free(srv->metrics);
    resolver_free(srv->resolver);
    sse_io_free(srv->sse);
    free(srv->per_addr);
    free(srv);
    return NULL;
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
    p.io_threads = srv->p.io_threads;
    srv->p = p;
    /* Push streams the reload added (or changed) start from their state files. */
    http_publish_load_state(srv);
}

unsigned http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_describe_io(const struct http_server *srv, char *out, size_t len)
{
    sse_io_describe(srv->sse, out, len);
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
    return (info ? info->num_connections : 0) + sse_io_released(srv->sse);
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    /* The I/O threads stop first: from here on this thread alone touches the hub. */
    sse_io_end_all(srv->sse);
    if (srv->epoll_fd >= 0)
        loop_unwatch(srv->loop, srv->epoll_fd);
    if (srv->run_pending)
        loop_defer_cancel(srv->loop, on_deferred_run, srv);
    loop_timer_free(srv->timer);
    loop_timer_free(srv->resume_timer);
    /* MHD refuses to stop with suspended connections. */
    http_resolving_abort(srv);
    http_plain_abort(srv);
    http_publish_abort(srv);
    MHD_stop_daemon(srv->daemon);
    sse_io_free(srv->sse);
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

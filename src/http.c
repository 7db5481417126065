/* libmicrohttpd on the event loop, and the routing of the wire contract: streams, ad-hoc
 * proxying, CORS, health, readiness, metrics and the demo document. Every answer before a
 * stream starts is a problem+json body with the status PRODUCT.md lists. */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json/json.h"
#include "log.h"
#include "loop.h"
#include "ratelimit.h"
#include "sse.h"
#include "ssrf.h"
#include "viewer.h"

#define MAX_LAST_EVENT_ID 64

struct http_server {
    struct loop *loop;
    struct hub *hub;
    struct http_params p;
    struct MHD_Daemon *daemon;
    int epoll_fd;
    struct loop_timer *timer;
    int quiesced;
    int run_pending; /* a deferred MHD_run is queued */
    struct ratelimit *rate; /* NULL: no per-address connection rate limit */
    uint64_t refused_rate;
    unsigned port;
    uint64_t rejected;
};

/* ---- the daemon on the loop -------------------------------------------------------------- */

static void run_daemon(struct http_server *srv)
{
    MHD_run(srv->daemon);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(srv->daemon, &timeout) == MHD_YES)
        loop_timer_start(srv->timer, timeout);
    else
        loop_timer_stop(srv->timer);
}

static void on_deferred_run(struct loop *loop, void *arg)
{
    struct http_server *srv = arg;
    srv->run_pending = 0;
    run_daemon(srv);
}

/* Resumed streams are processed by one MHD_run after the current dispatch, however many were
 * resumed during it (one publish resumes every idle subscriber of a topic). */
static void kick_daemon(void *arg)
{
    struct http_server *srv = arg;
    if (!srv->run_pending && loop_defer(srv->loop, on_deferred_run, srv) == 0)
        srv->run_pending = 1;
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
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    int fd = ci->connect_fd, on = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* A client over its connection rate is refused at accept: the TCP connection is closed before
 * any request is read. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_server *srv = cls;
    if (srv->rate && !ratelimit_allow(srv->rate, addr, addrlen, loop_now_ms(srv->loop))) {
        srv->refused_rate++;
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

static enum MHD_Result send_text(struct http_server *srv, struct MHD_Connection *c,
                                 unsigned status, const char *type, const char *body, size_t len)
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

/* An RFC 9457 problem answer: {"status":..,"title":..,"detail":..}. */
static enum MHD_Result send_problem(struct http_server *srv, struct MHD_Connection *c,
                                    unsigned status, const char *title, const char *detail)
{
    srv->rejected++;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "status", status);
    cJSON_AddStringToObject(o, "title", title);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL)
        return MHD_NO;
    enum MHD_Result rc =
        send_text(srv, c, status, "application/problem+json", body, strlen(body));
    free(body);
    return rc;
}

static enum MHD_Result send_retry_later(struct http_server *srv, struct MHD_Connection *c)
{
    srv->rejected++;
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
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    if (id == NULL)
        id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lastEventId");
    if (id && strnlen(id, MAX_LAST_EVENT_ID + 1) > MAX_LAST_EVENT_ID)
        return NULL;
    return id;
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
    struct topic *t = hub_topic_get(srv->hub, key, spec);
    if (t == NULL)
        return send_retry_later(srv, c);
    struct MHD_Response *r = sse_response_new(srv->loop, c, t, mode, last_event_id(c), kick_daemon, srv);
    if (r == NULL)
        return MHD_NO;
    add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* With [auth] configured: reads the token from the Authorization header, the access_token
 * query parameter or the cookie and checks it. Returns 1 with *grant filled (the caller disposes
 * it), 0 when auth is off, or -1 after queueing the 401/503 answer in *rc. */
static int authenticate(struct http_server *srv, struct MHD_Connection *c,
                        struct auth_grant *grant, enum MHD_Result *rc)
{
    if (srv->p.auth == NULL)
        return 0;
    char token[AUTH_MAX_TOKEN + 1];
    int found = auth_token_from_request(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token"),
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie"), srv->p.auth_cookie, token,
        sizeof(token));
    char why[256] = "a bearer token is required";
    int status = MHD_HTTP_UNAUTHORIZED;
    if (found == 1) {
        int ok = auth_check(srv->p.auth, token, auth_now_ms(), grant, why, sizeof(why));
        if (ok == AUTH_OK)
            return 1;
        if (ok == AUTH_NOMEM)
            status = MHD_HTTP_SERVICE_UNAVAILABLE;
    } else if (found < 0) {
        snprintf(why, sizeof(why), "the token is malformed");
    }
    srv->rejected++;
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
    int authed = authenticate(srv, c, &grant, &rc);
    if (authed < 0)
        return rc;
    int granted = authed == 0 || auth_grant_allows_stream(&grant, name);
    auth_grant_dispose(&grant);
    const struct http_stream *st = NULL;
    for (size_t i = 0; i < srv->p.nstreams; i++)
        if (strcmp(srv->p.streams[i].name, name) == 0)
            st = &srv->p.streams[i];
    if (st == NULL)
        return send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Unknown stream",
                            "no upstream of that name is configured");
    if (!granted)
        return send_problem(srv, c, MHD_HTTP_FORBIDDEN, "Not allowed",
                            "the token does not grant this stream");
    struct topic_spec spec = st->spec;
    enum hub_mode mode = st->mode;
    if (query_interval(c, st->min_interval_ms, st->max_interval_ms, &spec.poll.interval_ms) != 0)
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad interval",
                            "interval takes a number of seconds, such as 5 or 0.5");
    if (query_mode(c, &mode) != 0)
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode",
                            "mode is patch or snapshot");
    char key[256];
    snprintf(key, sizeof(key), "s:%s|%llu", st->name, (unsigned long long)spec.poll.interval_ms);
    return start_stream(srv, c, key, &spec, mode);
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

static enum MHD_Result route_proxy(struct http_server *srv, struct MHD_Connection *c)
{
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    int authed = authenticate(srv, c, &grant, &rc);
    if (authed < 0)
        return rc;
    const char *url = NULL;
    size_t url_len = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "url", 3, &url, &url_len) !=
            MHD_YES ||
        url == NULL || *url == '\0') {
        auth_grant_dispose(&grant);
        return send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Missing url",
                            "use /proxy?url=<percent-encoded absolute http(s) URL>");
    }
    char why[256];
    struct buf canon;
    buf_init(&canon, 0);
    if (strlen(url) != url_len) {
        rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", "the URL holds a NUL byte");
    } else if (ssrf_normalize_url(url, &canon, why, sizeof(why)) != 0) {
        rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", why);
    } else if (!ssrf_url_allowed(canon.data, srv->p.allow_prefixes)) {
        rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed",
                          "the URL matches no allow rule of this server");
    } else if (ssrf_check_literal(canon.data, srv->p.allow_cidrs, why, sizeof(why)) != 0) {
        rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed", why);
    } else if (authed == 1 && !auth_grant_allows_url(&grant, canon.data)) {
        rc = send_problem(srv, c, MHD_HTTP_FORBIDDEN, "Not allowed",
                          "the token does not grant this URL");
    } else {
        struct topic_spec spec = {.poll = srv->p.adhoc,
                                  .name = canon.data,
                                  .id_keys = srv->p.adhoc_id_keys,
                                  .error_repeat_ms = srv->p.adhoc_error_repeat_ms};
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
            rc = send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode",
                              "mode is patch or snapshot");
        else if (buf_printf(&key, "p:%s|%llu", canon.data,
                            (unsigned long long)spec.poll.interval_ms) != 0)
            rc = MHD_NO;
        else
            rc = start_stream(srv, c, key.data, &spec, mode);
        buf_dispose(&key);
    }
    buf_dispose(&canon);
    auth_grant_dispose(&grant);
    return rc;
}

/* ---- health, metrics, demo --------------------------------------------------------------- */

static enum MHD_Result route_metrics(struct http_server *srv, struct MHD_Connection *c)
{
    const struct hub_stats *s = hub_stats(srv->hub);
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b,
               "# HELP pollcast_subscribers Connected subscribers.\n"
               "# TYPE pollcast_subscribers gauge\npollcast_subscribers %llu\n"
               "# HELP pollcast_pollers Active upstream pollers.\n"
               "# TYPE pollcast_pollers gauge\npollcast_pollers %llu\n"
               "# HELP pollcast_polls_total Upstream polls by outcome.\n"
               "# TYPE pollcast_polls_total counter\n"
               "pollcast_polls_total{outcome=\"changed\"} %llu\n"
               "pollcast_polls_total{outcome=\"unchanged\"} %llu\n"
               "pollcast_polls_total{outcome=\"not_modified\"} %llu\n"
               "pollcast_polls_total{outcome=\"failed\"} %llu\n"
               "pollcast_polls_total{outcome=\"rejected\"} %llu\n"
               "# HELP pollcast_events_published_total Events published to topics.\n"
               "# TYPE pollcast_events_published_total counter\n"
               "pollcast_events_published_total %llu\n"
               "# HELP pollcast_subscribers_reset_total Slow subscribers reset to a snapshot.\n"
               "# TYPE pollcast_subscribers_reset_total counter\n"
               "pollcast_subscribers_reset_total %llu\n"
               "# HELP pollcast_upstream_bytes_total Bytes received from upstreams.\n"
               "# TYPE pollcast_upstream_bytes_total counter\n"
               "pollcast_upstream_bytes_total %llu\n"
               "# HELP pollcast_sent_bytes_total Event bytes written to subscribers.\n"
               "# TYPE pollcast_sent_bytes_total counter\n"
               "pollcast_sent_bytes_total %llu\n"
               "# HELP pollcast_requests_rejected_total Requests answered with an error.\n"
               "# TYPE pollcast_requests_rejected_total counter\n"
               "pollcast_requests_rejected_total %llu\n",
               (unsigned long long)s->subscribers, (unsigned long long)s->topics,
               (unsigned long long)s->polls_changed, (unsigned long long)s->polls_unchanged,
               (unsigned long long)s->polls_not_modified, (unsigned long long)s->polls_failed,
               (unsigned long long)s->polls_rejected, (unsigned long long)s->events_published,
               (unsigned long long)s->subscribers_reset, (unsigned long long)s->bytes_in,
               (unsigned long long)s->bytes_out, (unsigned long long)srv->rejected);
    if (b.data == NULL)
        return MHD_NO;
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

int http_demo_document(struct buf *out, uint64_t t)
{
    static const char *symbols[] = {"ACME", "GLOBX", "INITECH", "UMBRL", "WAYNE"};
    static const char *items[] = {"anvil", "rocket skates", "giant magnet", "tornado seeds",
                                  "jet-propelled pogo stick", "earthquake pills", "bird seed"};
    time_t now = (time_t)t;
    struct tm tm;
    gmtime_r(&now, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int rc = buf_printf(out, "{\"source\":\"pollcast demo\",\"tick\":%llu,\"updated_at\":\"%s\","
                             "\"prices\":{",
                        (unsigned long long)t, when);
    /* Each price moves every second by a step derived from (symbol, second). */
    for (size_t i = 0; i < 5; i++) {
        long cents = 1000 + 1500 * (long)i;
        for (uint64_t k = 0; k < 8; k++)
            cents += (long)(demo_rand(i, t / (1u << k)) % 41) - 20;
        rc |= buf_printf(out, "%s\"%s\":%ld.%02ld", i ? "," : "", symbols[i], cents / 100,
                         cents % 100);
    }
    /* Orders: a window of ids that slides every 2 s (one leaves the front, one joins the end),
     * rotated every 5 s (moves), with quantities that change every 3 s. */
    rc |= buf_puts(out, "},\"orders\":[");
    uint64_t first = t / 2, n = 6, rot = (t / 5) % n;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t id = first + (k + rot) % n;
        rc |= buf_printf(out, "%s{\"id\":%llu,\"item\":\"%s\",\"qty\":%llu}", k ? "," : "",
                         (unsigned long long)id, items[id % 7],
                         (unsigned long long)(1 + demo_rand(id, t / 3) % 9));
    }
    rc |= buf_puts(out, "]}");
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
                                "Last-Event-ID, Authorization, Cache-Control");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    static int seen;
    struct http_server *srv = cls;
    int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    int options = strcmp(method, "OPTIONS") == 0;
    if (*req_cls == NULL) {
        *req_cls = &seen;
        /* Other methods are refused now, before any body they carry is read: MHD takes a
         * response only here or once the whole request is in, not while a body arrives. */
        if (!get && !head && !options) {
            struct MHD_Response *r =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            if (r == NULL)
                return MHD_NO;
            MHD_add_response_header(r, "Allow", "GET, HEAD, OPTIONS");
            srv->rejected++;
            enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
            MHD_destroy_response(r);
            return rc;
        }
        /* Headers are in; answer on the next call, once MHD has the whole request. */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* A body on GET, HEAD or OPTIONS means nothing here: read and ignored. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (options)
        return preflight(srv, c);
    if (strcmp(url, "/healthz") == 0)
        return send_text(srv, c, MHD_HTTP_OK, "application/json", "{\"status\":\"ok\"}", 15);
    if (strcmp(url, "/readyz") == 0)
        return srv->quiesced ? send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                            "Shutting down", NULL)
                             : send_text(srv, c, MHD_HTTP_OK, "application/json",
                                         "{\"status\":\"ready\"}", 18);
    if (strcmp(url, "/metrics") == 0)
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
    return send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Not found", NULL);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

struct http_server *http_server_new(struct loop *loop, struct hub *hub,
                                    const struct http_params *params, char *err, size_t errlen)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->hub = hub;
    srv->p = *params;
    srv->epoll_fd = -1;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (params->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (params->connect_rate_per_ip) {
        srv->rate = ratelimit_new(params->connect_rate_per_ip, params->connect_burst_per_ip,
                                  65536);
        if (srv->rate == NULL) {
            snprintf(err, errlen, "out of memory");
            free(srv);
            return NULL;
        }
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, accept_policy, srv, handle, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&srv->p.addr,
        MHD_OPTION_CONNECTION_LIMIT, params->max_connections ? params->max_connections : 60000u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, params->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, params->request_timeout_s ? params->request_timeout_s : 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        params->connection_memory ? params->connection_memory : (size_t)32768,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, params->listen_backlog ? params->listen_backlog : 4096u, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
        getnameinfo((struct sockaddr *)&params->addr, params->addrlen, host, sizeof(host), serv,
                    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(err, errlen, "cannot listen on %s port %s (address in use, or not permitted)",
                 host, serv);
        ratelimit_free(srv->rate);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->timer = loop_timer_new(loop, on_daemon_timer, srv);
    if (info == NULL || srv->timer == NULL ||
        loop_watch(loop, info->epoll_fd, EPOLLIN, on_daemon_ready, srv) != 0) {
        snprintf(err, errlen, "cannot attach the HTTP server to the event loop");
        loop_timer_free(srv->timer);
        MHD_stop_daemon(srv->daemon);
        ratelimit_free(srv->rate);
        free(srv);
        return NULL;
    }
    srv->epoll_fd = info->epoll_fd;
    srv->port = port ? port->port : 0;
    run_daemon(srv);
    return srv;
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
    MHD_stop_daemon(srv->daemon);
    ratelimit_free(srv->rate);
    free(srv);
}

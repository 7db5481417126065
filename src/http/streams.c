/* GET /streams/NAME: a configured upstream as a stream. Also what every stream route shares:
 * the bearer token check, the query options (interval, mode), Last-Event-ID, the start of a
 * stream, and the tracking of authenticated streams (expiry, recheck on reload). */
#include "http/internal.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <sys/socket.h>

#include "log.h"
#include "sse.h"

#define MAX_LAST_EVENT_ID 64

/* ---- streams ----------------------------------------------------------------------------- */

int http_query_interval(struct MHD_Connection *c, uint64_t lo, uint64_t hi, uint64_t *ms)
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

int http_query_mode(struct MHD_Connection *c, enum hub_mode *mode)
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

/* ---- authenticated streams --------------------------------------------------------------- */

int http_auth_keep_target(struct http_server *srv, const char *target, int url)
{
    struct request *q = srv->cur;
    if (q == NULL)
        return 0;
    free(q->grant_target);
    q->grant_target = strdup(target);
    q->grant_url = url;
    return q->grant_target ? 0 : -1;
}

void http_auth_untrack(struct http_server *srv, struct request *q)
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
 * and logged under http_ended_names[why]. An EventSource reconnects after it and, with the same
 * token, gets the 401 or 403 that explains. */
static void auth_end_stream(struct http_server *srv, struct request *q, enum ended_reason why,
                            const char *detail)
{
    http_auth_untrack(srv, q);
    if (q->tally.sub == NULL)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "reason", http_ended_names[why]);
    cJSON_AddStringToObject(o, "detail", detail);
    char *data = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    struct buf b;
    buf_init(&b, 0);
    if (data)
        buf_printf(&b, "event: stream-end\ndata: %s\n\n", data);
    free(data);
    srv->ended[why]++;
    hub_subscriber_end(q->tally.sub, http_ended_names[why], b.data, b.len);
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
            http_auth_untrack(srv, q);
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

enum MHD_Result http_start_stream(struct http_server *srv, struct MHD_Connection *c,
                                  const char *key, struct topic_spec *spec, enum hub_mode mode)
{
    /* A request must end before the next tick is due: at most 80% of the interval, but never
     * below a second (a tick that finds its request still running is skipped). */
    uint64_t cap = spec->poll.interval_ms * 4 / 5;
    if (cap < 1000)
        cap = 1000;
    if (spec->poll.timeout_ms == 0 || spec->poll.timeout_ms > cap)
        spec->poll.timeout_ms = cap;
    if (http_wants_json(c))
        return http_plain_read(srv, c, key, spec);
    if (srv->quiesced)
        return http_send_retry_later(srv, c);
    if (hub_stats(srv->hub)->subscribers >= srv->p.max_subscribers)
        return http_send_retry_later(srv, c);
    /* The per-address limit counts streams, not connections: an address at its limit can still
     * reach /healthz or /metrics. */
    struct request *cur = srv->cur;
    int per_addr = srv->p.max_connections_per_ip && cur && cur->client[0];
    if (per_addr && http_addr_streams(srv, cur->client) >= srv->p.max_connections_per_ip)
        return http_send_retry_later(srv, c);
    struct topic *t = hub_topic_get(srv->hub, key, spec);
    if (t == NULL)
        return http_send_retry_later(srv, c);
    /* The subscriber sse_response_new creates counts what it is sent into the request's tally,
     * for the access log. */
    hub_set_next_tally(srv->hub, srv->cur ? &srv->cur->tally : NULL);
    struct MHD_Response *r = sse_response_new(srv->sse, c, t, mode, last_event_id(c),
                                              cur ? cur->chunked : 1, http_kick_daemon, srv,
                                              cur ? &cur->released : NULL);
    hub_set_next_tally(srv->hub, NULL);
    if (r == NULL)
        return MHD_NO;
    http_add_cors(srv, c, r);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    if (rc == MHD_YES && srv->cur) {
        struct request *q = srv->cur;
        q->status = MHD_HTTP_OK;
        q->opened = 1;
        if (per_addr && http_addr_take(srv, q->client) == 0)
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

void http_name_request(struct http_server *srv, struct MHD_Connection *c, const char *what)
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

int http_authenticate(struct http_server *srv, struct MHD_Connection *c, struct auth_grant *grant,
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
    http_count_reject(srv,
                      status == MHD_HTTP_UNAUTHORIZED ? REJECT_UNAUTHORIZED : REJECT_UNAVAILABLE,
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
    http_add_cors(srv, c, r);
    *rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return -1;
}

enum MHD_Result http_route_stream(struct http_server *srv, struct MHD_Connection *c,
                                  const char *name)
{
    /* The token is checked before the name, so that nobody unauthenticated can probe which
     * streams exist. */
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    http_name_request(srv, c, name);
    int authed = http_authenticate(srv, c, &grant, &rc, 0, NULL);
    if (authed < 0)
        return rc;
    int granted = authed == 0 || auth_grant_allows_stream(&grant, name);
    auth_grant_dispose(&grant);
    if (authed == 1 && granted && http_auth_keep_target(srv, name, 0) != 0)
        return MHD_NO;
    const struct http_stream *st = NULL;
    for (size_t i = 0; i < srv->p.nstreams; i++)
        if (strcmp(srv->p.streams[i].name, name) == 0)
            st = &srv->p.streams[i];
    if (st == NULL)
        return http_send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Unknown stream",
                                 "no upstream of that name is configured");
    if (!granted)
        return http_send_insufficient_scope(srv, c, "the token does not grant this stream");
    struct topic_spec spec = st->spec;
    enum hub_mode mode = st->mode;
    if (st->push) {
        /* A push stream has one topic, whatever the query: there is no poll to vary. */
        if (http_query_mode(c, &mode) != 0)
            return http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode",
                                     "mode is patch or snapshot");
        if (http_push_topic(srv, st) == NULL)
            return http_send_retry_later(srv, c);
        char key[CONFIG_MAX_NAME + 16];
        snprintf(key, sizeof(key), "s:%s|push", st->name);
        spec.push = 1;
        return http_start_stream(srv, c, key, &spec, mode);
    }
    if (http_query_interval(c, st->min_interval_ms, st->max_interval_ms, &spec.poll.interval_ms) !=
        0)
        return http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad interval",
                                 "interval takes a number of seconds, such as 5 or 0.5");
    if (http_query_mode(c, &mode) != 0)
        return http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode",
                                 "mode is patch or snapshot");
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
    for (const char *const *f = st->forward_headers; f && *f && nfwd < CONFIG_MAX_LIST_ITEMS; f++) {
        const char *v = NULL;
        size_t vlen = 0;
        if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, *f, strlen(*f), &v, &vlen) !=
                MHD_YES ||
            v == NULL)
            continue;
        if (strlen(v) != vlen || strpbrk(v, "\r\n") != NULL || vlen > 4096) {
            rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad header",
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
    rc = http_start_stream(srv, c, key.data, &spec, mode);
out:
    for (size_t i = 0; i < nfwd; i++)
        buf_dispose(&fwd[i]);
    buf_dispose(&key);
    return rc;
}

/* ---- plain reads --------------------------------------------------------------------------- */

/* 1 when the comma-separated media ranges of accept hold type (case-insensitive, parameters
 * ignored). */
static int accept_has(const char *accept, const char *type)
{
    size_t tlen = strlen(type);
    for (const char *p = accept; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tlen && strncasecmp(p, type, tlen) == 0)
            return 1;
        p += n;
        p += strcspn(p, ",");
    }
    return 0;
}

int http_wants_json(struct MHD_Connection *c)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    return a && accept_has(a, "application/json") && !accept_has(a, "text/event-stream");
}

int http_etag_match(const char *value, const char *id)
{
    size_t idlen = strlen(id);
    if (idlen == 0)
        return 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == '"') {
            const char *end = strchr(p + 1, '"');
            if (end == NULL)
                return 0;
            if ((size_t)(end - p - 1) == idlen && memcmp(p + 1, id, idlen) == 0)
                return 1;
            p = end + 1;
        } else {
            p += strcspn(p, ",");
        }
    }
    return 0;
}

static void plain_unlink(struct http_server *srv, struct request *q)
{
    if (!q->plain_suspended)
        return;
    if (q->pprev)
        q->pprev->pnext = q->pnext;
    else
        srv->plain_waiting = q->pnext;
    if (q->pnext)
        q->pnext->pprev = q->pprev;
    q->pprev = q->pnext = NULL;
    q->plain_suspended = 0;
}

/* Resumes a waiting plain read: handle() runs again and answers. */
static void plain_resume(struct request *q)
{
    if (!q->plain_suspended)
        return;
    plain_unlink(q->srv, q);
    MHD_resume_connection(q->conn);
    http_kick_daemon(q->srv);
}

/* The topic has something new (its first document, an upstream error, its end). The hub may not
 * be called back from here: the request is only resumed. */
static void plain_wake(void *ctx)
{
    plain_resume(ctx);
}

static const struct subscriber_ops plain_ops = {.wake = plain_wake};

static void on_plain_timeout(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct request *q = arg;
    q->plain_timed_out = 1;
    plain_resume(q);
}

void http_plain_end(struct http_server *srv, struct request *q)
{
    plain_unlink(srv, q);
    loop_timer_free(q->plain_timer);
    q->plain_timer = NULL;
    /* The topic's idle grace starts from here when it has no other subscriber: readers that
     * come back within it find the poller warm. */
    hub_unsubscribe(q->plain_sub);
    q->plain_sub = NULL;
    q->plain_topic = NULL;
}

void http_plain_abort(struct http_server *srv)
{
    /* The daemon is about to stop: no MHD_run is asked for. */
    while (srv->plain_waiting) {
        struct request *q = srv->plain_waiting;
        plain_unlink(srv, q);
        MHD_resume_connection(q->conn);
    }
}

/* Drains what the subscriber has pending (it is never sent: the answer is the document), so
 * that the hub wakes it on the next event. Returns 0, or -1 when its stream has ended. */
static int plain_drain(struct subscriber *s)
{
    char scratch[4096];
    long n;
    while ((n = subscriber_read(s, scratch, sizeof(scratch))) > 0)
        ;
    return n < 0 ? -1 : 0;
}

/* 200 with the document (or 304), its ETag and Cache-Control. */
static enum MHD_Result plain_answer(struct http_server *srv, struct MHD_Connection *c,
                                    struct topic *t, const struct topic_spec *spec)
{
    char id[40], etag[48], cc[64];
    size_t len = 0;
    const char *doc = hub_topic_document(t, &len);
    hub_topic_id(t, id);
    snprintf(etag, sizeof(etag), "\"%s\"", id);
    /* A push stream changes whenever it is published to: caches revalidate with the ETag. */
    if (spec->push)
        snprintf(cc, sizeof(cc), "no-cache");
    else
        snprintf(cc, sizeof(cc), "max-age=%llu",
                 (unsigned long long)(spec->poll.interval_ms / 1000));
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    int not_modified = inm && http_etag_match(inm, id);
    struct MHD_Response *r =
        not_modified ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
                     : MHD_create_response_from_buffer(len, (void *)doc, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    if (!not_modified)
        MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "ETag", etag);
    MHD_add_response_header(r, "Cache-Control", cc);
    MHD_add_response_header(r, "Vary", "Accept");
    return http_queue_response(srv, c, not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r);
}

enum MHD_Result http_plain_read(struct http_server *srv, struct MHD_Connection *c, const char *key,
                                struct topic_spec *spec)
{
    struct request *q = srv->cur;
    if (q == NULL)
        return MHD_NO;
    q->plain = 1;
    if (q->plain_sub == NULL) {
        if (srv->quiesced)
            return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Shutting down", NULL);
        struct topic *t = hub_topic_get(srv->hub, key, spec);
        if (t == NULL)
            return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                     "no poller can be started now (max_pollers, or memory)");
        /* A topic with a document answers at once; the subscriber (taken and let go at once)
         * restarts its idle grace, so that readers keep the poller alive as streams do. */
        q->plain_sub = hub_subscribe(t, HUB_MODE_SNAPSHOT, NULL, &plain_ops, q);
        if (q->plain_sub == NULL)
            return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                     "out of memory");
        q->plain_topic = t;
    }
    struct topic *t = q->plain_topic;
    enum MHD_Result rc;
    if (topic_ready(t)) {
        rc = plain_answer(srv, c, t, spec);
    } else if (spec->push) {
        rc = http_send_problem(srv, c, MHD_HTTP_NOT_FOUND, "No document yet",
                               "nothing has been published to this stream yet");
    } else if (q->plain_timed_out || srv->quiesced || plain_drain(q->plain_sub) != 0) {
        rc = http_send_problem(srv, c, MHD_HTTP_GATEWAY_TIMEOUT, "No document yet",
                               "the upstream gave no document within the poll timeout");
    } else {
        /* The first poll is on its way: wait for it, at most its timeout (and a little more,
         * for its answer to be taken). */
        if (q->plain_timer == NULL) {
            q->plain_timer = loop_timer_new(srv->loop, on_plain_timeout, q);
            if (q->plain_timer == NULL) {
                http_plain_end(srv, q);
                return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                         "out of memory");
            }
            loop_timer_start(q->plain_timer, spec->poll.timeout_ms + 250);
        }
        q->conn = c;
        q->plain_suspended = 1;
        q->pnext = srv->plain_waiting;
        if (srv->plain_waiting)
            srv->plain_waiting->pprev = q;
        srv->plain_waiting = q;
        MHD_suspend_connection(c);
        return MHD_YES;
    }
    http_plain_end(srv, q);
    return rc;
}

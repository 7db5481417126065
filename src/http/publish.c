/* Publishing: PUT and PATCH /streams/NAME on push streams ([stream NAME]), whose documents a
 * backend sends instead of pollcast polling them, and POST /streams/NAME/refresh, which makes the
 * pollers of a polled stream fetch now. Publishers authenticate with the stream's secret
 * (publish_token_file, compared in constant time) or a JWT whose pollcast.publish claim names
 * the stream; If-Match makes a write conditional on the current version; a push stream's last
 * document may be kept in its state file. In cluster mode a publish is a compare-and-append in
 * Redis (store/redis.c): the request waits suspended for its answer, and is tried again against
 * the newer version when another node published first. */
#include "http/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json/apply.h"
#include "json/json.h"
#include "log.h"
#include "store/store.h"

/* The body cap of a stream whose max_body is not set: the upstream default. */
#define PUBLISH_DEFAULT_CAP ((size_t)8 << 20)
/* Bytes of a publisher's bearer token at most. */
#define PUBLISH_MAX_TOKEN 4096
/* Attempts of one publish in cluster mode while other nodes publish first; then 409. */
#define PUBLISH_CLUSTER_TRIES 3

static const struct http_stream *find_stream(const struct http_server *srv, const char *name,
                                             size_t len)
{
    for (size_t i = 0; i < srv->p.nstreams; i++)
        if (strlen(srv->p.streams[i].name) == len && memcmp(srv->p.streams[i].name, name, len) == 0)
            return &srv->p.streams[i];
    return NULL;
}

static size_t body_cap(const struct http_stream *st)
{
    return st->spec.poll.max_body ? st->spec.poll.max_body : PUBLISH_DEFAULT_CAP;
}

/* 1 when a and b are the same secret. The comparison takes the same time whatever the bytes and
 * lengths: both are hashed first, and the digests compared with CRYPTO_memcmp. */
static int secret_equal(const char *a, const char *b)
{
    unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, strlen(a), ha);
    SHA256((const unsigned char *)b, strlen(b), hb);
    return CRYPTO_memcmp(ha, hb, sizeof(ha)) == 0;
}

/* Copies the token of an "Authorization: Bearer TOKEN" header into out. Returns 1 when found, 0
 * when there is none, -1 when it is empty, too long or holds a control byte or space. */
static int bearer_token(const char *authorization, char *out, size_t outlen)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n > 0 && t[n - 1] == ' ')
        n--;
    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f)
            return -1;
    memcpy(out, t, n);
    out[n] = '\0';
    return 1;
}

static enum MHD_Result send_unauthorized(struct http_server *srv, struct MHD_Connection *c,
                                         const char *detail, int had_token)
{
    return http_send_problem_with(srv, c, MHD_HTTP_UNAUTHORIZED, "Unauthorized", detail,
                                  "WWW-Authenticate",
                                  had_token ? "Bearer error=\"invalid_token\"" : "Bearer");
}

/* Checks the publisher of a request for stream st. Returns 1 when it may publish; otherwise 0
 * with the answer queued in *rc.
 * Only the Authorization header is looked at: a publisher is a backend, and a cookie or query
 * token would let a browser be made to publish. */
static int publisher_allowed(struct http_server *srv, struct MHD_Connection *c,
                             const struct http_stream *st, enum MHD_Result *rc)
{
    char token[PUBLISH_MAX_TOKEN + 1];
    int found = bearer_token(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                             token, sizeof(token));
    if (found == 0) {
        *rc = send_unauthorized(srv, c, "publishing needs Authorization: Bearer", 0);
        return 0;
    }
    if (found < 0) {
        *rc = send_unauthorized(srv, c, "the token is malformed", 1);
        return 0;
    }
    int ok = st->publish_token && secret_equal(token, st->publish_token);
    if (!ok && srv->p.auth) {
        struct auth_grant g;
        char why[256] = "";
        int a = auth_check(srv->p.auth, token, auth_now_ms(), &g, why, sizeof(why));
        explicit_bzero(token, sizeof(token));
        if (a == AUTH_NOMEM) {
            *rc = http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                    "out of memory");
            return 0;
        }
        if (a != AUTH_OK) {
            *rc = send_unauthorized(srv, c, why, 1);
            return 0;
        }
        ok = auth_grant_allows_publish(&g, st->name);
        auth_grant_dispose(&g);
        if (!ok) {
            *rc = http_send_insufficient_scope(
                srv, c,
                "the token does not grant publishing to this stream (claim " AUTH_PUBLISH_CLAIM
                ")");
            return 0;
        }
        return 1;
    }
    explicit_bzero(token, sizeof(token));
    if (!ok)
        *rc = send_unauthorized(srv, c, "the token is not a publisher's token of this stream", 1);
    return ok;
}

enum MHD_Result http_publish_begin(struct http_server *srv, struct MHD_Connection *c,
                                   const char *url, const char *method)
{
    struct request *q = srv->cur;
    if (strncmp(url, "/streams/", 9) != 0 || url[9] == '\0')
        return http_send_method_not_allowed(srv, c, "GET, HEAD, OPTIONS");
    const char *name = url + 9;
    size_t nlen = strcspn(name, "/");
    int refresh = strcmp(name + nlen, "/refresh") == 0;
    int post = strcmp(method, "POST") == 0;
    if (nlen == 0 || (name[nlen] != '\0' && !refresh) || post != refresh)
        return http_send_method_not_allowed(srv, c,
                                            refresh ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
    /* Stream names are public (GET /streams lists them): whether the request applies to the
     * stream is answered before the token is looked at, as for any other method. */
    const struct http_stream *st = find_stream(srv, name, nlen);
    if (st == NULL)
        return http_send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Unknown stream",
                                 "no stream of that name is configured");
    if (refresh && st->push)
        return http_send_problem_with(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Not a polled stream",
                                      "a push stream has no poller to refresh: PUT or PATCH its "
                                      "document instead",
                                      "Allow", "OPTIONS");
    if (!refresh && !st->push)
        return http_send_problem_with(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Not a push stream",
                                      "PUT and PATCH are for push streams ([stream NAME]); this "
                                      "one polls its upstream",
                                      "Allow", "GET, HEAD, OPTIONS");
    enum MHD_Result rc;
    if (!publisher_allowed(srv, c, st, &rc))
        return rc;
    size_t cap = refresh ? 0 : body_cap(st);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && !refresh) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || *end != '\0' || n > cap) {
            char detail[128];
            snprintf(detail, sizeof(detail), "the body is larger than this stream's max_body (%zu)",
                     cap);
            return http_send_problem(srv, c, MHD_HTTP_CONTENT_TOO_LARGE, "Body too large", detail);
        }
    }
    q->pub_name = strndup(name, nlen);
    if (q->pub_name == NULL)
        return MHD_NO;
    q->publish = refresh                      ? HTTP_PUBLISH_REFRESH
                 : strcmp(method, "PUT") == 0 ? HTTP_PUBLISH_PUT
                                              : HTTP_PUBLISH_PATCH;
    q->body_cap = cap;
    buf_init(&q->body, 0);
    return MHD_YES;
}

void http_publish_body(struct request *q, const char *data, size_t n)
{
    if (q->body_too_big || q->publish == HTTP_PUBLISH_REFRESH)
        return;
    if (n > q->body_cap - q->body.len || buf_append(&q->body, data, n) != 0) {
        q->body_too_big = 1;
        buf_dispose(&q->body);
    }
}

/* ---- the state file ---------------------------------------------------------------------- */

/* Writes text (len bytes) to path atomically: a temporary file beside it, fsync, rename, and
 * the directory synced, so that a crash leaves the old document or the new one, whole. Returns
 * 0, or -1 with errno's text in why. */
static int state_save(const char *path, const char *text, size_t len, char *why, size_t whylen)
{
    struct buf tmp;
    buf_init(&tmp, 0);
    int fd = -1, rc = -1;
    if (buf_printf(&tmp, "%s.tmp", path) != 0) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp.data, path) != 0)
        goto fail;
    /* The rename is durable once the directory is. */
    const char *slash = strrchr(path, '/');
    buf_truncate(&tmp, 0);
    if (buf_append(&tmp, path, slash ? (size_t)(slash - path) + 1 : 0) == 0 &&
        buf_putc(&tmp, '.') == 0) {
        int dfd = open(tmp.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    rc = 0;
    goto out;
fail:
    snprintf(why, whylen, "%s", strerror(errno));
    if (fd >= 0)
        close(fd);
    if (tmp.data)
        unlink(tmp.data);
out:
    buf_dispose(&tmp);
    return rc;
}

/* Publishes the document in st's state file on t, when there is one. Logs what goes wrong. */
static void state_load(struct topic *t, const struct http_stream *st)
{
    char why[256] = "";
    struct buf b;
    buf_init(&b, body_cap(st));
    int fd = open(st->state_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return; /* nothing published yet */
    if (fd < 0) {
        snprintf(why, sizeof(why), "%s", strerror(errno));
    } else {
        char chunk[65536];
        for (;;) {
            ssize_t r = read(fd, chunk, sizeof(chunk));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                snprintf(why, sizeof(why), "%s", strerror(errno));
                break;
            }
            if (r == 0)
                break;
            if (buf_append(&b, chunk, (size_t)r) != 0) {
                snprintf(why, sizeof(why), "larger than max_body, or out of memory");
                break;
            }
        }
        close(fd);
    }
    if (why[0] == '\0') {
        int rc = hub_topic_put(t, b.data ? b.data : "", b.len, why, sizeof(why));
        if (rc >= 0) {
            log_event(LOG_INFO, "state file loaded",
                      (struct log_field[]){LOG_STR("stream", st->name), LOG_NUM("bytes", b.len)},
                      2);
            why[0] = '\0';
        }
    }
    if (why[0])
        log_event(LOG_ERROR, "cannot load the state file; the stream starts empty",
                  (struct log_field[]){LOG_STR("stream", st->name), LOG_STR("error", why)}, 2);
    buf_dispose(&b);
}

struct topic *http_push_topic(struct http_server *srv, const struct http_stream *st)
{
    struct buf key;
    buf_init(&key, 0);
    struct topic *t = NULL;
    if (buf_printf(&key, "s:%s|push", st->name) != 0)
        goto out;
    t = hub_topic_find(srv->hub, key.data);
    if (t)
        goto out;
    struct topic_spec spec = st->spec;
    spec.push = 1;
    t = hub_topic_get(srv->hub, key.data, &spec);
    if (t && st->state_file && !srv->p.cluster)
        state_load(t, st);
out:
    buf_dispose(&key);
    return t;
}

void http_publish_load_state(struct http_server *srv)
{
    /* In cluster mode every push stream is opened at once, so that its stored version is loaded
     * from Redis before the first publish or subscriber comes (state_file is refused there). */
    for (size_t i = 0; i < srv->p.nstreams; i++)
        if (srv->p.streams[i].push && (srv->p.streams[i].state_file || srv->p.cluster))
            http_push_topic(srv, &srv->p.streams[i]);
}

/* ---- waiting for the cluster store --------------------------------------------------------- */

static void pub_unlink(struct http_server *srv, struct request *q)
{
    if (q->pprev)
        q->pprev->pnext = q->pnext;
    else
        srv->pub_waiting = q->pnext;
    if (q->pnext)
        q->pnext->pprev = q->pprev;
    q->pprev = q->pnext = NULL;
}

void http_publish_end(struct http_server *srv, struct request *q, int resume)
{
    if (!q->pub_waiting)
        return;
    pub_unlink(srv, q);
    if (q->pub_topic && !q->pub_told && !q->pub_queued)
        hub_topic_put_watch(q->pub_topic, NULL, NULL);
    q->pub_topic = NULL;
    q->pub_waiting = 0;
    q->pub_queued = 0;
    if (resume) {
        MHD_resume_connection(q->conn);
        http_kick_daemon(srv);
    }
}

void http_publish_abort(struct http_server *srv)
{
    /* The daemon is about to stop: no MHD_run is asked for. */
    while (srv->pub_waiting) {
        struct request *q = srv->pub_waiting;
        http_publish_end(srv, q, 0);
        MHD_resume_connection(q->conn);
    }
}

/* The hub's answer to a pending publish: noted, and the request resumed (handle() runs again
 * and answers through http_publish_finish). */
static void on_published(void *arg, int result)
{
    struct request *q = arg;
    struct http_server *srv = q->srv;
    struct topic *t = q->pub_topic;
    q->pub_told = 1;
    q->pub_result = result;
    if (result == HUB_PUT_CHANGED && t)
        hub_topic_id(t, q->pub_id);
    http_publish_end(srv, q, 1);
    /* The topic takes a publish again: the requests queued behind this one are taken again
     * (one of them publishes next, the others queue again). */
    for (struct request *w = srv->pub_waiting, *next; w; w = next) {
        next = w->pnext;
        if (w->pub_queued && w->pub_topic == t)
            http_publish_end(srv, w, 1);
    }
}

/* Suspends the request until the store answers its publish to t (queued 0), or until the
 * publish of another request to t ends (queued 1: the topic takes one publish at a time). */
static enum MHD_Result publish_wait(struct http_server *srv, struct MHD_Connection *c,
                                    struct topic *t, int queued)
{
    struct request *q = srv->cur;
    q->conn = c;
    q->pub_topic = t;
    q->pub_told = 0;
    q->pub_queued = queued;
    q->pub_waiting = 1;
    q->pprev = NULL;
    q->pnext = srv->pub_waiting;
    if (srv->pub_waiting)
        srv->pub_waiting->pprev = q;
    srv->pub_waiting = q;
    if (!queued)
        hub_topic_put_watch(t, on_published, q);
    MHD_suspend_connection(c);
    return MHD_YES;
}

/* ---- PUT, PATCH ---------------------------------------------------------------------------- */

/* Answers a publication's outcome: 200 {"id":ID} for a new version, 204 when nothing changed,
 * both with ETag "ID". */
static enum MHD_Result send_published(struct http_server *srv, struct MHD_Connection *c,
                                      const char *id, int changed)
{
    char etag[48], body[64];
    snprintf(etag, sizeof(etag), "\"%s\"", id);
    int n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    struct MHD_Response *r =
        changed ? MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY)
                : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    if (changed)
        MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "ETag", etag);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    return http_queue_response(srv, c, changed ? MHD_HTTP_OK : MHD_HTTP_NO_CONTENT, r);
}

/* A 400 for a body that is not JSON, with the byte offset where parsing stopped. */
static enum MHD_Result send_bad_json(struct http_server *srv, struct MHD_Connection *c,
                                     const struct json_error *err)
{
    char detail[192];
    snprintf(detail, sizeof(detail), "invalid JSON at byte %zu: %s", err->offset, err->msg);
    cJSON *o = http_problem_new(MHD_HTTP_BAD_REQUEST, "Bad JSON", detail);
    if (o)
        cJSON_AddNumberToObject(o, "offset", (double)err->offset);
    return http_send_problem_json(srv, c, MHD_HTTP_BAD_REQUEST, o, NULL, NULL);
}

/* Applies the JSON Patch in body to t's current document into out (the patched document's
 * text). Returns 1 on success; otherwise 0 with the answer queued in *rc: 400 bad JSON, 409 no
 * document yet or a failed "test", 415 wrong Content-Type, 422 an op that cannot apply. The
 * current document is never changed here. */
static int apply_patch(struct http_server *srv, struct MHD_Connection *c, struct topic *t,
                       const struct buf *body, struct buf *out, enum MHD_Result *rc)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    size_t ctlen = ct ? strcspn(ct, "; \t") : 0;
    if (ct == NULL || ctlen != 27 || strncasecmp(ct, "application/json-patch+json", 27) != 0) {
        *rc = http_send_problem(srv, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
                                "PATCH takes Content-Type: application/json-patch+json");
        return 0;
    }
    struct json_error jerr;
    struct json_doc *patch = json_parse(body->data ? body->data : "", body->len, NULL, &jerr);
    if (patch == NULL) {
        *rc = send_bad_json(srv, c, &jerr);
        return 0;
    }
    size_t len = 0;
    const char *text = hub_topic_document(t, &len);
    struct json_doc *cur = text ? json_parse(text, len, NULL, NULL) : NULL;
    char why[256] = "out of memory";
    cJSON *doc = cur ? json_to_cjson(cur->root, why, sizeof(why)) : NULL;
    json_doc_free(cur);
    int ok = 0;
    struct json_patch_error perr;
    if (text == NULL) {
        *rc = http_send_problem(srv, c, MHD_HTTP_CONFLICT, "No document",
                                "the stream has no document yet: PUT one first");
    } else if (doc == NULL) {
        *rc = http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable", why);
    } else if (json_patch_apply(&doc, patch->root, NULL, &perr) != 0) {
        /* A "test" that does not hold is a conflict with the current version; any other op
         * that cannot apply makes the patch unprocessable. Nothing was changed either way. */
        unsigned status =
            strstr(perr.msg, "test failed") ? MHD_HTTP_CONFLICT : MHD_HTTP_UNPROCESSABLE_CONTENT;
        cJSON *o = http_problem_new(
            status, status == MHD_HTTP_CONFLICT ? "Test failed" : "Patch cannot apply", perr.msg);
        if (o && perr.op >= 0)
            cJSON_AddNumberToObject(o, "op", (double)perr.op);
        *rc = http_send_problem_json(srv, c, status, o, NULL, NULL);
    } else if (json_cjson_write(out, doc) != 0) {
        *rc = http_send_problem(srv, c, MHD_HTTP_UNPROCESSABLE_CONTENT, "Patch cannot apply",
                                "the patched document cannot be written (too deep?)");
    } else {
        ok = 1;
    }
    cJSON_Delete(doc);
    json_doc_free(patch);
    return ok;
}

static enum MHD_Result publish_document(struct http_server *srv, struct MHD_Connection *c,
                                        const struct http_stream *st, int kind)
{
    struct request *q = srv->cur;
    struct topic *t = http_push_topic(srv, st);
    if (t == NULL)
        return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                 "the stream cannot be opened (out of memory or max_pollers)");
    char id[40];
    const char *im = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Match");
    hub_topic_id(t, id);
    if (im && !http_etag_match(im, id)) {
        cJSON *o = http_problem_new(MHD_HTTP_PRECONDITION_FAILED, "Precondition failed",
                                    id[0] ? "If-Match does not name the current version"
                                          : "If-Match: the stream has no document yet");
        if (o && id[0])
            cJSON_AddStringToObject(o, "id", id);
        return http_send_problem_json(srv, c, MHD_HTTP_PRECONDITION_FAILED, o, NULL, NULL);
    }
    struct buf patched;
    buf_init(&patched, 0);
    const struct buf *doc = &q->body;
    enum MHD_Result rc;
    if (kind == HTTP_PUBLISH_PATCH) {
        if (!apply_patch(srv, c, t, &q->body, &patched, &rc))
            goto out;
        doc = &patched;
    }
    char why[256] = "";
    int put = hub_topic_put(t, doc->data ? doc->data : "", doc->len, why, sizeof(why));
    if (put == HUB_PUT_INVALID && kind == HTTP_PUBLISH_PUT) {
        struct json_error jerr;
        struct json_doc *d = json_parse(doc->data ? doc->data : "", doc->len, NULL, &jerr);
        if (d == NULL) {
            rc = send_bad_json(srv, c, &jerr);
            goto out;
        }
        json_doc_free(d);
    }
    if (put == HUB_PUT_INVALID) {
        rc = http_send_problem(srv, c, MHD_HTTP_UNPROCESSABLE_CONTENT, "Document refused", why);
    } else if (put == HUB_PUT_PENDING) {
        rc = publish_wait(srv, c, t, 0);
    } else if (put == HUB_PUT_BUSY && srv->p.cluster) {
        /* Another request's publish to this stream waits for Redis: this one follows it. */
        rc = publish_wait(srv, c, t, 1);
    } else if (put == HUB_PUT_FAILED && srv->p.cluster) {
        /* Redis is unreachable (degraded), or the stream still loads from it: a node alone
         * must not hand out ids that the other nodes never see. */
        rc = http_send_problem_with(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                    "the cluster store (Redis) cannot take the publish now "
                                    "(unreachable, or the stream is loading); nothing was "
                                    "published",
                                    "Retry-After", "1");
    } else if (put < 0) {
        rc = http_send_problem_with(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                    why[0] ? why : "another publication is in flight",
                                    "Retry-After", "1");
    } else {
        hub_topic_id(t, id);
        if (put == HUB_PUT_CHANGED && st->state_file) {
            size_t len = 0;
            const char *text = hub_topic_document(t, &len);
            if (text && state_save(st->state_file, text, len, why, sizeof(why)) != 0)
                log_event(LOG_ERROR, "cannot write the state file",
                          (struct log_field[]){LOG_STR("stream", st->name), LOG_STR("error", why)},
                          2);
        }
        rc = send_published(srv, c, id, put == HUB_PUT_CHANGED);
    }
out:
    buf_dispose(&patched);
    return rc;
}

/* ---- refresh ------------------------------------------------------------------------------- */

/* Answers 202 {"refreshed":N}: N pollers of the stream on this node were asked to fetch now. In
 * cluster mode the request is also passed on to the node that polls (through Redis): the answer
 * says "forwarded":true, or "forwarded":false with "cluster":"degraded" when Redis is unavailable
 * (this node then polls alone and N says what it did); 503 when too many are on their way. */
static enum MHD_Result refresh_stream(struct http_server *srv, struct MHD_Connection *c,
                                      const struct http_stream *st)
{
    struct buf prefix;
    buf_init(&prefix, 0);
    if (buf_printf(&prefix, "s:%s|", st->name) != 0)
        return MHD_NO;
    int forwarded = STORE_REFRESH_ALONE;
    size_t n = hub_refresh_topics(srv->hub, prefix.data, &forwarded);
    buf_dispose(&prefix);
    if (forwarded == STORE_REFRESH_BUSY && n == 0)
        return http_send_problem_with(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                      "too many refresh requests are on their way to the other "
                                      "nodes; nothing was refreshed",
                                      "Retry-After", "1");
    char body[96];
    int len = snprintf(body, sizeof(body), "{\"refreshed\":%zu%s}", n,
                       forwarded == STORE_REFRESH_FORWARDED ? ",\"forwarded\":true"
                       : forwarded == STORE_REFRESH_DEGRADED
                           ? ",\"forwarded\":false,\"cluster\":\"degraded\""
                       : forwarded == STORE_REFRESH_BUSY ? ",\"forwarded\":false"
                                                         : "");
    if (srv->cur)
        srv->cur->status = MHD_HTTP_ACCEPTED;
    return http_send_text(srv, c, MHD_HTTP_ACCEPTED, "application/json", body, (size_t)len);
}

enum MHD_Result http_publish_finish(struct http_server *srv, struct MHD_Connection *c)
{
    struct request *q = srv->cur;
    /* The config may have been reloaded while the body came: the stream is looked up again. */
    const struct http_stream *st = find_stream(srv, q->pub_name, strlen(q->pub_name));
    if (st == NULL || st->push != (q->publish != HTTP_PUBLISH_REFRESH))
        return http_send_problem(srv, c, MHD_HTTP_NOT_FOUND, "Unknown stream",
                                 "the stream was removed or changed by a reload");
    if (q->body_too_big) {
        char detail[128];
        snprintf(detail, sizeof(detail), "the body is larger than this stream's max_body (%zu)",
                 q->body_cap);
        return http_send_problem(srv, c, MHD_HTTP_CONTENT_TOO_LARGE, "Body too large", detail);
    }
    if (q->publish == HTTP_PUBLISH_REFRESH)
        return refresh_stream(srv, c, st);
    if (q->pub_told) {
        /* The cluster store answered the publish this request waited for. */
        q->pub_told = 0;
        if (q->pub_result == HUB_PUT_CHANGED)
            return send_published(srv, c, q->pub_id, 1);
        if (q->pub_result == HUB_PUT_FAILED)
            return http_send_problem_with(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Unavailable",
                                          "the cluster store (Redis) did not take the publish; "
                                          "nothing was published",
                                          "Retry-After", "1");
        /* Another node published first: the topic serves that version now, and the request is
         * taken again against it (If-Match then answers 412; a PATCH applies to it). */
        if (++q->pub_tries >= PUBLISH_CLUSTER_TRIES)
            return http_send_problem(srv, c, MHD_HTTP_CONFLICT, "Conflict",
                                     "other nodes kept publishing to this stream at the same "
                                     "time; nothing was published: try again");
    }
    return publish_document(srv, c, st, q->publish);
}

/* Unit tests of the upstream pollers against the scripted upstream
 * (tests/integration/upstream_server.js) on loopback: bodies, fixed-rate ticks, conditional
 * requests, failures and backoff, Retry-After, body caps, compression, timeouts, rejected bodies
 * and freeing pollers from callbacks. Every wait is on an event, bounded by a guard timer. */
#include "harness.h"
#include "buf.h"
#include "loop.h"
#include "upstream.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the scripted upstream ---- */

static pid_t server_pid = -1;
static int server_stdin = -1;
static int server_port;
static char base[64]; /* "http://127.0.0.1:PORT" */

static int server_start(void)
{
    const char *src = getenv("POLLCAST_SRC");
    char script[1024];
    snprintf(script, sizeof(script), "%s/tests/integration/upstream_server.js", src ? src : ".");
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp("node", "node", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    server_pid = pid;
    server_stdin = in[1];
    /* The first line is {"port":N}; wait for it at most 10 s. */
    char line[128];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(out[0]);
    const char *p = strstr(line, "\"port\":");
    if (p == NULL)
        return -1;
    server_port = (int)strtol(p + 7, NULL, 10);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", server_port);
    return server_port > 0 ? 0 : -1;
}

static void server_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    if (server_stdin >= 0)
        close(server_stdin);
}

static size_t ctl_write(char *data, size_t size, size_t n, void *arg)
{
    return buf_append(arg, data, size * n) == 0 ? size * n : 0;
}

/* A blocking control request to the scripted upstream. Returns the HTTP status (0 on failure)
 * and the answer in out when out is not NULL. */
static long ctl(const char *method, const char *path, const char *body, struct buf *out)
{
    char url[512];
    struct buf sink;
    buf_init(&sink, 0);
    snprintf(url, sizeof(url), "%s%s", base, path);
    CURL *e = curl_easy_init();
    long status = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out ? out : &sink);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    buf_dispose(&sink);
    return status;
}

static void put_doc(const char *path, const char *doc)
{
    char p[256];
    snprintf(p, sizeof(p), "/_control/doc?path=%s", path);
    CHECK_INT(ctl("PUT", p, doc, NULL), 200);
}

static void set_mode(const char *json)
{
    CHECK_INT(ctl("POST", "/_control/mode", json, NULL), 200);
}

/* Reads an integer field "name":N from the stats of path; -1 when absent. */
static long stat_int(const char *path, const char *name)
{
    char p[256], key[64];
    struct buf out;
    buf_init(&out, 0);
    snprintf(p, sizeof(p), "/_control/stats?path=%s", path);
    long v = -1;
    if (ctl("GET", p, NULL, &out) == 200 && out.data) {
        snprintf(key, sizeof(key), "\"%s\":", name);
        const char *at = strstr(out.data, key);
        if (at)
            v = strtol(at + strlen(key), NULL, 10);
    }
    buf_dispose(&out);
    return v;
}

/* Returns the value of request header name (lowercase) last seen at path, malloc'd, or NULL. */
static char *stat_header(const char *path, const char *name)
{
    char p[256], key[96];
    struct buf out;
    buf_init(&out, 0);
    snprintf(p, sizeof(p), "/_control/stats?path=%s", path);
    char *v = NULL;
    if (ctl("GET", p, NULL, &out) == 200 && out.data) {
        snprintf(key, sizeof(key), "\"%s\":\"", name);
        const char *at = strstr(out.data, key);
        if (at) {
            at += strlen(key);
            const char *end = strchr(at, '"');
            if (end) {
                v = calloc(1, (size_t)(end - at) + 1);
                memcpy(v, at, (size_t)(end - at));
            }
        }
    }
    buf_dispose(&out);
    return v;
}

/* ---- a recording poller callback ---- */

struct rec {
    enum poll_outcome outcome;
    long status;
    char error[200];
    uint64_t retry_in_ms;
    size_t len;
    char body[512];
    char ctype[64];
    size_t bytes_in;
    double latency_ms;
    uint64_t at_ms;
};

struct ctx {
    struct loop *loop;
    struct poller *p;
    struct rec recs[64];
    int n;
    int want;               /* stop the loop after this many results */
    int reject_first;       /* reject the first N bodies */
    int free_at;            /* free the poller from inside result number free_at (1-based) */
    struct poller *victim;  /* freed from inside the first result */
    const char *mode_after; /* set this mode after the result number mode_at */
    int mode_at;
    int took_body;
};

static int on_poll(void *arg, struct poll_result *r)
{
    struct ctx *c = arg;
    int rc = 0;
    if (c->n < 64) {
        struct rec *x = &c->recs[c->n];
        x->outcome = r->outcome;
        x->status = r->status;
        snprintf(x->error, sizeof(x->error), "%s", r->error ? r->error : "");
        x->retry_in_ms = r->retry_in_ms;
        x->len = r->len;
        x->bytes_in = r->bytes_in;
        x->latency_ms = r->latency_ms;
        x->at_ms = loop_now_ms(c->loop);
        snprintf(x->body, sizeof(x->body), "%.*s", (int)(r->len < 511 ? r->len : 511),
                 r->body ? r->body : "");
        snprintf(x->ctype, sizeof(x->ctype), "%s", r->content_type ? r->content_type : "");
    }
    c->n++;
    if (r->outcome == POLL_BODY && c->reject_first > 0) {
        c->reject_first--;
        snprintf(r->reject, sizeof(r->reject), "upstream sent invalid JSON at byte 3");
        rc = 1;
    } else if (r->outcome == POLL_BODY && c->took_body == 0 && r->len > 0) {
        /* Take ownership once, to prove it is allowed. */
        free(r->body);
        r->body = NULL;
        c->took_body = 1;
    }
    if (c->mode_after && c->n == c->mode_at)
        set_mode(c->mode_after);
    if (c->victim && c->n == 1) {
        poller_free(c->victim);
        c->victim = NULL;
    }
    if (c->free_at && c->n == c->free_at) {
        poller_free(c->p);
        c->p = NULL;
    }
    if (c->n >= c->want)
        loop_stop(c->loop);
    return rc;
}

static void on_guard(struct loop *loop, struct loop_timer *t, void *arg)
{
    *(int *)arg = 1;
    loop_stop(loop);
}

/* Runs the loop until the callback stops it or timeout_ms pass. Returns 1 on timeout. */
static int run_for(struct loop *loop, uint64_t timeout_ms)
{
    int timed_out = 0;
    struct loop_timer *guard = loop_timer_new(loop, on_guard, &timed_out);
    loop_timer_start(guard, timeout_ms);
    loop_run(loop);
    loop_timer_free(guard);
    return timed_out;
}

struct env {
    struct loop *loop;
    struct upstream_pool *pool;
};

static int env_init(struct env *e)
{
    e->loop = loop_new();
    e->pool = e->loop ? upstream_pool_new(e->loop) : NULL;
    return e->pool ? 0 : -1;
}

static void env_dispose(struct env *e)
{
    upstream_pool_free(e->pool);
    loop_free(e->loop);
}

static void spec_for(struct poller_spec *s, char *url, size_t urllen, const char *path,
                     uint64_t interval_ms)
{
    memset(s, 0, sizeof(*s));
    snprintf(url, urllen, "%s%s", base, path);
    s->url = url;
    s->interval_ms = interval_ms;
}

/* ---- tests ---- */

static void test_body_delivered(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    const char *doc = "{\"symbol\":\"ACME\",\"price\":12.5,\"id\":9007199254740993}";
    put_doc("/body", doc);
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/body", 10000);
    const char *headers[] = {"X-Api-Key: sekrit-123", "X-Tenant:  acme "};
    s.headers = headers;
    s.nheaders = 2;
    struct ctx c = {.loop = e.loop, .want = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(c.n, 0); /* never called back from inside poller_new */
    CHECK_INT(run_for(e.loop, 5000), 0);
    CHECK_INT(c.n, 1);
    CHECK_INT(c.recs[0].outcome, POLL_BODY);
    CHECK_INT(c.recs[0].status, 200);
    CHECK_STR(c.recs[0].body, doc);
    CHECK_INT(c.recs[0].len, strlen(doc));
    CHECK_STR(c.recs[0].ctype, "application/json");
    CHECK_INT(c.recs[0].bytes_in, strlen(doc));
    CHECK(c.recs[0].latency_ms >= 0 && c.recs[0].latency_ms < 5000);

    char *h = stat_header("/body", "accept");
    CHECK_STR(h, "application/json");
    free(h);
    h = stat_header("/body", "user-agent");
    CHECK_STR(h, "pollcast/" POLLCAST_VERSION);
    free(h);
    h = stat_header("/body", "accept-encoding");
    CHECK(h && strstr(h, "gzip") && strstr(h, "deflate"));
    free(h);
    h = stat_header("/body", "x-api-key");
    CHECK_STR(h, "sekrit-123");
    free(h);
    h = stat_header("/body", "if-none-match");
    CHECK(h == NULL);
    free(h);
    poller_free(c.p);
    env_dispose(&e);
}

static void test_bad_specs(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    struct ctx c = {.loop = e.loop};
    struct poller_spec s = {.url = "ftp://127.0.0.1/x", .interval_ms = 1000};
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    s.url = "http://";
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    s.url = "not a url";
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    s.url = "http://127.0.0.1:1/x\r\nX-Injected: 1";
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    s.url = "http://127.0.0.1:1/x";
    s.interval_ms = 0;
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    s.interval_ms = 1000;
    const char *crlf[] = {"X-A: b\r\nX-Injected: 1"};
    s.headers = crlf;
    s.nheaders = 1;
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    const char *noname[] = {": value"};
    s.headers = noname;
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    const char *nocolon[] = {"X-A value"};
    s.headers = nocolon;
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    const char *space[] = {"X A: value"};
    s.headers = space;
    CHECK(poller_new(e.pool, &s, on_poll, &c) == NULL);
    /* A valid one, freed before it ever ran: no callback. */
    s.headers = NULL;
    s.nheaders = 0;
    struct poller *p = poller_new(e.pool, &s, on_poll, &c);
    CHECK(p != NULL);
    poller_free(p);
    poller_free(NULL);
    CHECK_INT(run_for(e.loop, 50), 1);
    CHECK_INT(c.n, 0);
    env_dispose(&e);
}

/* Interval 200 ms for about 1.2 s: ticks at 0, 200, ..., 1000 (and maybe 1200). */
static void test_fixed_rate(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/rate", "{\"n\":1}");
    /* Each answer takes 60 ms: with "end of request + interval" there would be only 5. */
    set_mode("{\"path\":\"/rate\",\"mode\":\"normal\",\"delay_ms\":60}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/rate", 200);
    struct ctx c = {.loop = e.loop, .want = 1000};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 1230), 1);
    long count = stat_int("/rate", "count");
    CHECK(count >= 6 && count <= 7);
    CHECK_INT(stat_int("/rate", "max_inflight"), 1);
    CHECK(c.n >= 6 && c.n <= 7);
    /* Results come ~200 ms apart (fixed rate), not 260. */
    if (c.n >= 6) {
        uint64_t span = c.recs[5].at_ms - c.recs[0].at_ms;
        CHECK(span >= 950 && span <= 1100);
    }
    poller_free(c.p);
    env_dispose(&e);
}

/* Requests that take longer than the interval: ticks are skipped, never overlapped. */
static void test_slow_answers_skip_ticks(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/skip", "{\"n\":1}");
    set_mode("{\"path\":\"/skip\",\"mode\":\"normal\",\"delay_ms\":450}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/skip", 200);
    s.timeout_ms = 2000;
    struct ctx c = {.loop = e.loop, .want = 1000};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 1300), 1);
    /* Requests start at 0, 600 (the tick after the 450 ms answer), 1200. */
    long count = stat_int("/skip", "count");
    CHECK(count >= 2 && count <= 3);
    CHECK_INT(stat_int("/skip", "max_inflight"), 1);
    CHECK(c.n >= 2 && c.n <= 3);
    CHECK_INT(c.recs[0].outcome, POLL_BODY);
    for (int i = 1; i < c.n && i < 3; i++)
        CHECK_INT(c.recs[i].outcome, POLL_NOT_MODIFIED);
    poller_free(c.p);
    env_dispose(&e);
}

static void test_etag_not_modified(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/etag", "{\"v\":1}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/etag", 150);
    struct ctx c = {.loop = e.loop, .want = 2};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c.n == 2);
    CHECK_INT(c.recs[0].outcome, POLL_BODY);
    CHECK_INT(c.recs[1].outcome, POLL_NOT_MODIFIED);
    CHECK_INT(c.recs[1].status, 304);
    char *inm = stat_header("/etag", "if-none-match");
    CHECK(inm != NULL && inm[0] == '\\'); /* the JSON-escaped opening quote of the ETag */
    free(inm);
    char *ims = stat_header("/etag", "if-modified-since");
    CHECK(ims != NULL && strstr(ims, "GMT") != NULL);
    free(ims);
    /* A change: the next poll carries the new body. */
    put_doc("/etag", "{\"v\":2}");
    c.want = 3;
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c.n == 3);
    CHECK_INT(c.recs[2].outcome, POLL_BODY);
    CHECK_STR(c.recs[2].body, "{\"v\":2}");
    poller_free(c.p);

    /* Last-Modified alone: If-Modified-Since, then 304. */
    put_doc("/lm", "{\"v\":1}");
    set_mode("{\"path\":\"/lm\",\"mode\":\"normal\",\"etag\":false}");
    spec_for(&s, url, sizeof(url), "/lm", 150);
    struct ctx c2 = {.loop = e.loop, .want = 2};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c2.n == 2);
    CHECK_INT(c2.recs[0].outcome, POLL_BODY);
    CHECK_INT(c2.recs[1].outcome, POLL_NOT_MODIFIED);
    inm = stat_header("/lm", "if-none-match");
    CHECK(inm == NULL);
    free(inm);
    poller_free(c2.p);
    env_dispose(&e);
}

static void test_500_backoff(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/e500", "{\"ok\":true}");
    /* Three 500s, then the document: failures back off, then a success resets the backoff. */
    set_mode("{\"path\":\"/e500\",\"mode\":\"status\",\"status\":500,\"times\":3}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/e500", 200);
    const char *headers[] = {"Authorization: Bearer sekrit-xyz"};
    s.headers = headers;
    s.nheaders = 1;
    struct ctx c = {.loop = e.loop, .want = 5};
    c.mode_after = "{\"path\":\"/e500\",\"mode\":\"status\",\"status\":503}";
    c.mode_at = 4;
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 6000), 0);
    REQUIRE(c.n == 5);
    /* Equal jitter over 200 * 2^n: [200,400], [400,800], [800,1600]. */
    uint64_t lo[] = {200, 400, 800}, hi[] = {400, 800, 1600};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(c.recs[i].outcome, POLL_FAILED);
        CHECK_INT(c.recs[i].status, 500);
        CHECK_STR(c.recs[i].error, "upstream answered 500");
        CHECK(c.recs[i].retry_in_ms >= lo[i] && c.recs[i].retry_in_ms <= hi[i]);
        CHECK(strstr(c.recs[i].error, "sekrit") == NULL);
    }
    /* The retries really waited that long. */
    CHECK(c.recs[1].at_ms - c.recs[0].at_ms + 5 >= c.recs[0].retry_in_ms);
    CHECK(c.recs[2].at_ms - c.recs[1].at_ms + 5 >= c.recs[1].retry_in_ms);
    CHECK_INT(c.recs[3].outcome, POLL_BODY);
    CHECK_INT(c.recs[4].outcome, POLL_FAILED);
    CHECK_INT(c.recs[4].status, 503);
    CHECK_STR(c.recs[4].error, "upstream answered 503");
    CHECK(c.recs[4].retry_in_ms >= 200 && c.recs[4].retry_in_ms <= 400);
    poller_free(c.p);
    env_dispose(&e);
}

static void test_retry_after(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    set_mode("{\"path\":\"/r429\",\"mode\":\"status\",\"status\":429,\"retry_after\":2}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/r429", 200);
    struct ctx c = {.loop = e.loop, .want = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c.n == 1);
    CHECK_INT(c.recs[0].outcome, POLL_FAILED);
    CHECK_INT(c.recs[0].status, 429);
    CHECK_STR(c.recs[0].error, "upstream answered 429");
    CHECK_INT(c.recs[0].retry_in_ms, 2000);
    /* No second request before the 2 s are up. */
    CHECK_INT(run_for(e.loop, 500), 1);
    CHECK_INT(c.n, 1);
    CHECK_INT(stat_int("/r429", "count"), 1);
    poller_free(c.p);

    /* An HTTP-date three seconds ahead (second granularity: 2 to 3 s from now). */
    char mode[256], date[64];
    time_t when = time(NULL) + 3;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(mode, sizeof(mode),
             "{\"path\":\"/r503\",\"mode\":\"status\",\"status\":503,\"retry_after\":\"%s\"}",
             date);
    set_mode(mode);
    spec_for(&s, url, sizeof(url), "/r503", 200);
    struct ctx c2 = {.loop = e.loop, .want = 1};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c2.n == 1);
    CHECK_INT(c2.recs[0].status, 503);
    CHECK(c2.recs[0].retry_in_ms >= 1500 && c2.recs[0].retry_in_ms <= 3100);
    poller_free(c2.p);

    /* A huge Retry-After is bounded by an hour. */
    set_mode("{\"path\":\"/rbig\",\"mode\":\"status\",\"status\":503,\"retry_after\":999999}");
    spec_for(&s, url, sizeof(url), "/rbig", 200);
    struct ctx c3 = {.loop = e.loop, .want = 1};
    c3.p = poller_new(e.pool, &s, on_poll, &c3);
    REQUIRE(c3.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c3.recs[0].retry_in_ms, 3600 * 1000);
    poller_free(c3.p);
    env_dispose(&e);
}

static void test_body_over_cap(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    set_mode("{\"path\":\"/huge\",\"mode\":\"huge\",\"bytes\":200000}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/huge", 10000);
    s.max_body = 1000;
    struct ctx c = {.loop = e.loop, .want = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 5000), 0);
    REQUIRE(c.n == 1);
    CHECK_INT(c.recs[0].outcome, POLL_FAILED);
    CHECK_STR(c.recs[0].error, "upstream body over 1000 bytes");
    CHECK_INT(c.recs[0].status, 200);
    CHECK(c.recs[0].bytes_in < 200000);
    poller_free(c.p);

    /* Exactly at the cap is fine. */
    set_mode("{\"path\":\"/exact\",\"mode\":\"huge\",\"bytes\":1000}");
    spec_for(&s, url, sizeof(url), "/exact", 10000);
    s.max_body = 1000;
    struct ctx c2 = {.loop = e.loop, .want = 1};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 5000), 0);
    CHECK_INT(c2.recs[0].outcome, POLL_BODY);
    CHECK_INT(c2.recs[0].len, 1000);
    poller_free(c2.p);

    /* A gzip bomb: 64 MiB of spaces in ~65 KiB on the wire, capped after decompression. */
    set_mode("{\"path\":\"/bomb\",\"mode\":\"gzip_bomb\"}");
    spec_for(&s, url, sizeof(url), "/bomb", 10000);
    struct ctx c3 = {.loop = e.loop, .want = 1};
    c3.p = poller_new(e.pool, &s, on_poll, &c3);
    REQUIRE(c3.p != NULL);
    CHECK_INT(run_for(e.loop, 10000), 0);
    REQUIRE(c3.n == 1);
    CHECK_INT(c3.recs[0].outcome, POLL_FAILED);
    CHECK_STR(c3.recs[0].error, "upstream body over 8388608 bytes");
    poller_free(c3.p);
    env_dispose(&e);
}

static void test_compressed(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    struct buf doc;
    buf_init(&doc, 0);
    buf_puts(&doc, "{\"items\":[");
    for (int i = 0; i < 200; i++)
        buf_printf(&doc, "%s{\"id\":%d,\"name\":\"item number %d\"}", i ? "," : "", i, i);
    buf_puts(&doc, "]}");
    put_doc("/gz", doc.data);
    put_doc("/br", doc.data);
    set_mode("{\"path\":\"/gz\",\"mode\":\"normal\",\"encoding\":\"gzip\"}");
    set_mode("{\"path\":\"/br\",\"mode\":\"normal\",\"encoding\":\"br\"}");
    const char *paths[] = {"/gz", "/br"};
    for (int k = 0; k < 2; k++) {
        char url[256];
        struct poller_spec s;
        spec_for(&s, url, sizeof(url), paths[k], 10000);
        struct ctx c = {.loop = e.loop, .want = 1, .took_body = 1};
        c.p = poller_new(e.pool, &s, on_poll, &c);
        REQUIRE(c.p != NULL);
        CHECK_INT(run_for(e.loop, 5000), 0);
        REQUIRE(c.n == 1);
        CHECK_INT(c.recs[0].outcome, POLL_BODY);
        CHECK_INT(c.recs[0].len, doc.len);
        CHECK(strncmp(c.recs[0].body, doc.data, 500) == 0);
        /* bytes_in counts the compressed bytes on the wire. */
        CHECK(c.recs[0].bytes_in > 0 && c.recs[0].bytes_in < doc.len / 3);
        poller_free(c.p);
    }
    buf_dispose(&doc);
    env_dispose(&e);
}

static void test_timeouts(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    set_mode("{\"path\":\"/hang\",\"mode\":\"hang\"}");
    set_mode("{\"path\":\"/drip\",\"mode\":\"drip\",\"drip_ms\":50}");
    const char *paths[] = {"/hang", "/drip"};
    for (int k = 0; k < 2; k++) {
        char url[256];
        struct poller_spec s;
        spec_for(&s, url, sizeof(url), paths[k], 10000);
        s.timeout_ms = 400;
        struct ctx c = {.loop = e.loop, .want = 1};
        c.p = poller_new(e.pool, &s, on_poll, &c);
        REQUIRE(c.p != NULL);
        CHECK_INT(run_for(e.loop, 3000), 0);
        REQUIRE(c.n == 1);
        CHECK_INT(c.recs[0].outcome, POLL_FAILED);
        CHECK_STR(c.recs[0].error, "timeout after 400 ms");
        CHECK(c.recs[0].latency_ms >= 390 && c.recs[0].latency_ms < 1500);
        CHECK(c.recs[0].retry_in_ms >= 10000);
        poller_free(c.p);
    }
    env_dispose(&e);
}

static void test_connection_refused(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    /* A port bound but not listening refuses connections, and stays ours while bound. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    struct poller_spec s = {.url = url, .interval_ms = 300};
    struct ctx c = {.loop = e.loop, .want = 2};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c.n == 2);
    CHECK_INT(c.recs[0].outcome, POLL_FAILED);
    CHECK_INT(c.recs[0].status, 0);
    CHECK_STR(c.recs[0].error, "connection refused");
    CHECK(c.recs[0].retry_in_ms >= 300 && c.recs[0].retry_in_ms <= 600);
    CHECK(c.recs[1].retry_in_ms >= 600 && c.recs[1].retry_in_ms <= 1200);
    poller_free(c.p);
    close(fd);

    /* A name that cannot resolve (.invalid is reserved, RFC 2606). */
    struct poller_spec s2 = {.url = "http://no-such-host.invalid/x", .interval_ms = 10000};
    struct ctx c2 = {.loop = e.loop, .want = 1};
    c2.p = poller_new(e.pool, &s2, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 8000), 0);
    REQUIRE(c2.n == 1);
    CHECK_STR(c2.recs[0].error, "could not resolve host");
    poller_free(c2.p);
    env_dispose(&e);
}

static void test_rejected_body(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/rej", "{\"v\":1}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/rej", 150);
    struct ctx c = {.loop = e.loop, .want = 3, .reject_first = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    REQUIRE(c.n == 3);
    CHECK_INT(c.recs[0].outcome, POLL_BODY);
    CHECK_INT(c.recs[1].outcome, POLL_FAILED);
    CHECK_STR(c.recs[1].error, "upstream sent invalid JSON at byte 3");
    CHECK_INT(c.recs[1].status, 200);
    CHECK(c.recs[1].retry_in_ms >= 150 && c.recs[1].retry_in_ms <= 300);
    /* The rejected body's ETag is not used: the retry is unconditional and gets the body. */
    CHECK_INT(c.recs[2].outcome, POLL_BODY);
    CHECK_STR(c.recs[2].body, "{\"v\":1}");
    char *inm = stat_header("/rej", "if-none-match");
    CHECK(inm == NULL);
    free(inm);
    poller_free(c.p);
    env_dispose(&e);
}

static void test_free_in_callback(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/free", "{\"v\":1}");
    set_mode("{\"path\":\"/victim\",\"mode\":\"hang\"}");
    char url[256], vurl[256];
    struct poller_spec s, vs;
    spec_for(&s, url, sizeof(url), "/free", 100);
    spec_for(&vs, vurl, sizeof(vurl), "/victim", 100);

    /* The victim's request hangs; the other poller's first result frees it, cancelling it. */
    struct ctx vc = {.loop = e.loop, .want = 1};
    vc.p = poller_new(e.pool, &vs, on_poll, &vc);
    REQUIRE(vc.p != NULL);
    /* Wait until the victim's request is in flight at the upstream. */
    CHECK_INT(run_for(e.loop, 100), 1);
    CHECK_INT(stat_int("/victim", "inflight"), 1);

    /* Freed from inside its own (first) callback, after freeing the victim. */
    struct ctx c = {.loop = e.loop, .want = 1, .free_at = 1};
    c.victim = vc.p;
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c.n, 1);
    CHECK(c.p == NULL);
    /* Nothing more happens: no more ticks, no callback for the cancelled request. */
    CHECK_INT(run_for(e.loop, 400), 1);
    CHECK_INT(c.n, 1);
    CHECK_INT(vc.n, 0);
    CHECK_INT(stat_int("/free", "count"), 1);
    CHECK_INT(stat_int("/victim", "count"), 1);
    CHECK_INT(stat_int("/victim", "inflight"), 0);

    /* Freed from inside the POLL_FAILED callback that follows a rejection. */
    struct ctx c2 = {.loop = e.loop, .want = 2, .reject_first = 1, .free_at = 2};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c2.n, 2);
    CHECK_INT(c2.recs[1].outcome, POLL_FAILED);
    CHECK_INT(run_for(e.loop, 400), 1);
    CHECK_INT(c2.n, 2);

    /* Freed from inside a rejected POLL_BODY: no POLL_FAILED follows. */
    struct ctx c3 = {.loop = e.loop, .want = 1, .reject_first = 1, .free_at = 1};
    c3.p = poller_new(e.pool, &s, on_poll, &c3);
    REQUIRE(c3.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(run_for(e.loop, 300), 1);
    CHECK_INT(c3.n, 1);
    env_dispose(&e);
}

static void test_redirects(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/target", "{\"moved\":true}");
    set_mode("{\"path\":\"/moved\",\"mode\":\"redirect\",\"location\":\"/target\"}");
    char other[256];
    snprintf(
        other, sizeof(other),
        "{\"path\":\"/away\",\"mode\":\"redirect\",\"location\":\"http://localhost:%d/target\"}",
        server_port);
    set_mode(other);
    char url[256];
    struct poller_spec s;

    /* A named upstream follows a same-origin redirect. */
    spec_for(&s, url, sizeof(url), "/moved", 10000);
    const char *headers[] = {"X-Api-Key: sekrit"};
    s.headers = headers;
    s.nheaders = 1;
    struct ctx c = {.loop = e.loop, .want = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c.recs[0].outcome, POLL_BODY);
    CHECK_STR(c.recs[0].body, "{\"moved\":true}");
    poller_free(c.p);

    /* Not to another origin while it carries configured headers. */
    spec_for(&s, url, sizeof(url), "/away", 10000);
    s.headers = headers;
    s.nheaders = 1;
    struct ctx c2 = {.loop = e.loop, .want = 1};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c2.recs[0].outcome, POLL_FAILED);
    CHECK_STR(c2.recs[0].error, "redirect to another origin refused (configured headers)");
    poller_free(c2.p);

    /* Without configured headers, it may. */
    s.headers = NULL;
    s.nheaders = 0;
    struct ctx c3 = {.loop = e.loop, .want = 1};
    c3.p = poller_new(e.pool, &s, on_poll, &c3);
    REQUIRE(c3.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c3.recs[0].outcome, POLL_BODY);
    poller_free(c3.p);

    /* An ad-hoc upstream follows none. */
    spec_for(&s, url, sizeof(url), "/moved", 10000);
    s.adhoc = 1;
    struct ctx c4 = {.loop = e.loop, .want = 1};
    c4.p = poller_new(e.pool, &s, on_poll, &c4);
    REQUIRE(c4.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c4.recs[0].outcome, POLL_FAILED);
    CHECK_INT(c4.recs[0].status, 302);
    CHECK_STR(c4.recs[0].error, "upstream answered 302");
    poller_free(c4.p);
    env_dispose(&e);
}

static int policy_calls;

static int refuse_loopback(void *arg, const struct sockaddr *addr, socklen_t len, char *why,
                           size_t whylen)
{
    policy_calls++;
    if (addr->sa_family == AF_INET &&
        ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
        snprintf(why, whylen, "%s", "loopback address");
        return 1;
    }
    return 0;
}

static void test_address_policy(void)
{
    struct env e;
    REQUIRE(env_init(&e) == 0);
    upstream_pool_set_policy(e.pool, refuse_loopback, NULL);
    put_doc("/pol", "{}");
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/pol", 10000);
    s.adhoc = 1;
    struct ctx c = {.loop = e.loop, .want = 1};
    c.p = poller_new(e.pool, &s, on_poll, &c);
    REQUIRE(c.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c.recs[0].outcome, POLL_FAILED);
    CHECK_STR(c.recs[0].error, "upstream address refused: loopback address");
    CHECK_INT(policy_calls, 1);
    CHECK_INT(stat_int("/pol", "count"), 0);
    poller_free(c.p);

    /* Named upstreams are not subject to it. */
    s.adhoc = 0;
    struct ctx c2 = {.loop = e.loop, .want = 1};
    c2.p = poller_new(e.pool, &s, on_poll, &c2);
    REQUIRE(c2.p != NULL);
    CHECK_INT(run_for(e.loop, 3000), 0);
    CHECK_INT(c2.recs[0].outcome, POLL_BODY);
    CHECK_INT(policy_calls, 1);
    poller_free(c2.p);
    env_dispose(&e);
}

/* Fifty pollers on one pool at once: each gets its own bodies, one request per tick each. */
static void test_many_pollers(void)
{
    enum { N = 50 };
    struct env e;
    REQUIRE(env_init(&e) == 0);
    put_doc("/many", "{\"shared\":1}");
    struct ctx *cs = calloc(N, sizeof(*cs));
    REQUIRE(cs != NULL);
    char url[256];
    struct poller_spec s;
    spec_for(&s, url, sizeof(url), "/many", 250);
    int done = 0;
    for (int i = 0; i < N; i++) {
        cs[i].loop = e.loop;
        cs[i].want = 1000;
        cs[i].p = poller_new(e.pool, &s, on_poll, &cs[i]);
        REQUIRE(cs[i].p != NULL);
    }
    CHECK_INT(run_for(e.loop, 600), 1);
    for (int i = 0; i < N; i++) {
        if (cs[i].n >= 2 && cs[i].n <= 3 && cs[i].recs[0].outcome == POLL_BODY)
            done++;
        poller_free(cs[i].p);
    }
    CHECK_INT(done, N);
    long count = stat_int("/many", "count");
    CHECK(count >= 2 * N && count <= 3 * N);
    free(cs);
    env_dispose(&e);
}

/* The query parameters of a spec: percent-encoded, merged with the URL's own. */
static void test_url_add_query(void)
{
    static const struct {
        const char *url;
        const char *pairs[3];
        const char *want;
    } cases[] = {
        {"http://h/p", {"a=1", NULL}, "http://h/p?a=1"},
        {"http://h/p?x=1", {"a=1", "b=2", NULL}, "http://h/p?x=1&a=1&b=2"},
        {"http://h/p?", {"a=1", NULL}, "http://h/p?a=1"},
        {"http://h/p?x=1&", {"a=1", NULL}, "http://h/p?x=1&a=1"},
        {"http://h/p", {"k=a b&c=/?#%+", NULL}, "http://h/p?k=a%20b%26c%3D%2F%3F%23%25%2B"},
        {"http://h/p", {"\xc3\xbc=\xc3\xb6", "e=", NULL}, "http://h/p?%C3%BC=%C3%B6&e="},
        {"http://h/p", {"n~._-=v~._-", NULL}, "http://h/p?n~._-=v~._-"},
        {"http://h/p", {"flag", NULL}, "http://h/p?flag"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 0;
        while (n < 3 && cases[i].pairs[n])
            n++;
        char *got = upstream_url_add_query(cases[i].url, cases[i].pairs, n);
        REQUIRE(got != NULL);
        CHECK_STR(got, cases[i].want);
        free(got);
    }
}

/* Cache-Control max-age less Age, and what sets no floor. */
static void test_fresh_seconds(void)
{
    CHECK_INT(upstream_fresh_seconds("max-age=60", NULL), 60);
    CHECK_INT(upstream_fresh_seconds("public, max-age=60, must-revalidate", "15"), 45);
    CHECK_INT(upstream_fresh_seconds("Max-Age=\"30\"", NULL), 30);
    CHECK_INT(upstream_fresh_seconds("private=\"a, max-age=5\", max-age=7", NULL), 7);
    CHECK_INT(upstream_fresh_seconds("max-age=60", "90"), 0);
    CHECK_INT(upstream_fresh_seconds("max-age=60, no-cache", NULL), 0);
    CHECK_INT(upstream_fresh_seconds("no-store, max-age=60", NULL), 0);
    CHECK_INT(upstream_fresh_seconds("max-age=0", NULL), 0);
    CHECK_INT(upstream_fresh_seconds("max-age=x", NULL), 0);
    CHECK_INT(upstream_fresh_seconds("s-maxage=60", NULL), 0);
    CHECK_INT(upstream_fresh_seconds("", NULL), 0);
    CHECK_INT(upstream_fresh_seconds(NULL, NULL), 0);
    CHECK_INT(upstream_fresh_seconds("max-age=60", "bogus"), 60);
}

int main(void)
{
    /* The tests talk to loopback directly, whatever proxy the environment names. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    harness_current = "server_start";
    if (server_start() != 0) {
        fprintf(stderr, "test_upstream: cannot start node tests/integration/upstream_server.js\n");
        server_stop();
        return 1;
    }
    RUN(test_url_add_query);
    RUN(test_fresh_seconds);
    RUN(test_body_delivered);
    RUN(test_bad_specs);
    RUN(test_fixed_rate);
    RUN(test_slow_answers_skip_ticks);
    RUN(test_etag_not_modified);
    RUN(test_500_backoff);
    RUN(test_retry_after);
    RUN(test_body_over_cap);
    RUN(test_compressed);
    RUN(test_timeouts);
    RUN(test_connection_refused);
    RUN(test_rejected_body);
    RUN(test_free_in_callback);
    RUN(test_redirects);
    RUN(test_address_policy);
    RUN(test_many_pollers);
    server_stop();
    curl_global_cleanup();
    return harness_report("test_upstream");
}

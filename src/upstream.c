/* Upstream pollers: one libcurl multi handle per pool, driven by the event loop through
 * CURLMOPT_SOCKETFUNCTION (fd watches) and CURLMOPT_TIMERFUNCTION (one loop timer), in the shape
 * of curl's docs/examples/ephiperfifo.c. Each poller owns one easy handle, reused for every
 * request, and one tick timer that drives both the fixed-rate schedule and the backoff. */
#include "upstream.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "loop.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 3000
#define DEFAULT_MAX_BODY           (8u * 1024 * 1024)
#define DEFAULT_BACKOFF_MAX_MS     60000
#define MIN_TIMEOUT_MS             1000
#define RETRY_AFTER_MAX_MS         (3600u * 1000)
#define MAX_REDIRECTS              5
#define MAX_HEADER_BYTES           (128u * 1024)
/* A transfer slower than this many bytes/s for this long ends, whatever its total timeout. */
#define LOW_SPEED_BYTES 1024
#define LOW_SPEED_SECS  20

struct upstream_pool {
    struct loop *loop;
    CURLM *multi;
    struct loop_timer *timer; /* curl's single timeout */
    struct poller *pollers;   /* doubly linked, for upstream_pool_free */
    size_t npollers;
    long cache_size; /* CURLMOPT_MAXCONNECTS as last set; 0: libcurl's default */
    uint64_t rng;
    upstream_addr_policy policy;
    void *policy_arg;
    upstream_url_policy url_policy;
    void *url_policy_arg;
    struct oauth_client *oauths; /* OAuth2 clients of the pollers, one per definition */
};

/* One OAuth2 client credentials client, shared by every poller of an upstream definition: the
 * token is fetched on the pool's multi handle (never blocking), cached until shortly before it
 * expires, fetched again in the background while polls use it, and dropped when a poll gets a
 * 401 with it. Pollers that need a token while none is valid wait on it. */
struct oauth_client {
    struct upstream_pool *pool;
    struct oauth_client *next;
    unsigned refs; /* pollers holding it (and oauth_done while it dispatches) */
    char *definition, *token_url, *client_id, *client_secret, *scope, *audience, *ca_file;
    int secret_post; /* credentials in the form instead of HTTP Basic */
    int tls_no_verify;
    uint64_t timeout_ms, connect_timeout_ms;
    size_t max_body;

    CURL *easy;
    struct curl_slist *req_headers;
    int in_flight;
    struct buf resp;
    long resp_status;
    size_t header_bytes;
    int over_cap;
    char errbuf[CURL_ERROR_SIZE];

    char *auth_line;       /* "Authorization: Bearer <token>"; NULL: none */
    uint64_t gen;          /* counts the tokens fetched */
    uint64_t usable_until; /* loop time after which the token is not sent any more */
    int used;              /* a poll sent the current token */
    struct loop_timer *refresh;
    struct poller *waiters; /* pollers waiting for a token, linked by oauth_next */
    char error[256];        /* why the last fetch failed: no secret */
};

struct poller {
    struct upstream_pool *pool;
    struct poller *prev, *next;
    int linked; /* in pool->pollers, counted in pool->npollers */
    poller_cb cb;
    void *arg;

    char *url;
    char *origin; /* "scheme://host:port" of url, to judge redirects */
    char *ca_file;
    long max_redirects; /* 0: redirects are not followed */
    long hops;          /* ad-hoc: redirects followed in this poll */
    char *hop_url;      /* ad-hoc: the URL of the current hop when it is not url */
    int tls_no_verify;
    char **headers;
    size_t nheaders;
    int has_accept;       /* a configured header replaces our Accept */
    int has_content_type; /* a configured header replaces our Content-Type */
    char *method;         /* NULL: GET */
    char *req_body;       /* NULL: none */
    size_t req_body_len;
    char *req_content_type;
    int conditional;             /* the method allows If-None-Match / If-Modified-Since */
    uint64_t cache_floor_max_ms; /* 0: Cache-Control is not looked at */
    uint64_t interval_ms, timeout_ms, connect_timeout_ms, backoff_max_ms;
    size_t max_body;
    int adhoc;

    CURL *easy;
    struct curl_slist *req_headers; /* of the request in flight */
    struct loop_timer *tick;
    uint64_t next_tick; /* when the current tick was scheduled, loop time */
    int anchored;       /* next_tick holds a real time (set by the first tick) */
    unsigned failures;  /* consecutive */

    int in_flight;
    int in_callback;
    struct oauth_client *oauth; /* NULL: no OAuth2 */
    struct poller *oauth_next;  /* in oauth->waiters */
    int oauth_waiting;          /* waits for a token: no request in flight, ticks skipped */
    uint64_t token_gen;         /* the token the request in flight carries */
    int auth_retried;           /* this poll already fetched a token again after a 401 */
    int closing;                /* poller_free was called from the callback: free once it returns */

    /* Validators of the last accepted 200, sent as conditions. */
    char etag[256];
    char last_modified[64];

    /* The response being received (the last one when redirects are followed). */
    struct buf body;
    long resp_status;
    size_t header_bytes;
    size_t discarded; /* bytes of a non-2xx body, counted but not kept */
    int cond_sent;
    int over_cap, headers_over, out_of_memory, policy_refused, redirect_refused;
    char resp_etag[256];
    char resp_last_modified[64];
    char retry_after[64];
    char cache_control[256];
    char age[32];
    char content_type[128];
    char policy_why[128];
    char errbuf[CURL_ERROR_SIZE];

    char error[256]; /* the failure message being reported */
};

static void check_done(struct upstream_pool *pool);
static void oauth_done(struct oauth_client *o, CURLcode rc);
static void oauth_release(struct oauth_client *o);
static int oauth_token_for(struct poller *p);
static int start_transfer(struct poller *p);

/* ---- small helpers ---- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static uint64_t rng_next(struct upstream_pool *pool)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    uint64_t x = pool->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pool->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Copies value into dst when it fits and holds only visible characters and spaces, which is all
 * a validator or a Retry-After may hold; otherwise leaves dst empty. */
static void copy_field(char *dst, size_t dstlen, const char *value, size_t n)
{
    dst[0] = '\0';
    if (n == 0 || n >= dstlen)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f)
            return;
    }
    memcpy(dst, value, n);
    dst[n] = '\0';
}

static int name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Writes "scheme://host:port" of url (resolved against base when base is not NULL) into out.
 * Returns 0, or -1 when the URL does not parse. */
static int url_origin(const char *base, const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (u == NULL)
        return -1;
    if (base && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        goto out;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    int n = snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
    if (n > 0 && (size_t)n < outlen)
        rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static void put_encoded(struct buf *b, const char *s, size_t n, int *rc)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n && *rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        if (plain) {
            *rc |= buf_append(b, (const char *)&s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            *rc |= buf_append(b, e, 3);
        }
    }
}

char *upstream_url_add_query(const char *url, const char *const *pairs, size_t n)
{
    struct buf b;
    int rc = 0;
    buf_init(&b, 0);
    rc |= buf_puts(&b, url);
    const char *q = strchr(url, '?');
    char last = url[0] ? url[strlen(url) - 1] : '\0';
    int need_sep = q == NULL ? 0 : (last != '?' && last != '&');
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *eq = strchr(pairs[i], '=');
        size_t nlen = eq ? (size_t)(eq - pairs[i]) : strlen(pairs[i]);
        if (q == NULL && i == 0)
            rc |= buf_puts(&b, "?");
        else if (need_sep || i > 0)
            rc |= buf_puts(&b, "&");
        put_encoded(&b, pairs[i], nlen, &rc);
        if (eq) {
            rc |= buf_puts(&b, "=");
            put_encoded(&b, eq + 1, strlen(eq + 1), &rc);
        }
    }
    if (rc != 0) {
        buf_dispose(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* Reads a number of seconds at *s (digits, or digits in double quotes). Returns 0 and advances
 * *s, or -1. Large values saturate. */
static int read_seconds(const char **s, uint64_t *out)
{
    const char *p = *s;
    int quoted = *p == '"';
    p += quoted;
    if (*p < '0' || *p > '9')
        return -1;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v < 1000000000000ull ? v * 10 + (uint64_t)(*p - '0') : v;
    if (quoted && *p++ != '"')
        return -1;
    *s = p;
    *out = v;
    return 0;
}

uint64_t upstream_fresh_seconds(const char *cache_control, const char *age)
{
    uint64_t max_age = 0, age_s = 0;
    int have = 0;
    const char *p = cache_control ? cache_control : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - name);
        if (name_is(name, n, "no-store") || name_is(name, n, "no-cache"))
            return 0;
        if (*p == '=') {
            p++;
            uint64_t v;
            const char *vp = p;
            if (name_is(name, n, "max-age") && read_seconds(&vp, &v) == 0) {
                max_age = v;
                have = 1;
            }
            /* Skip the value, quoted strings included. */
            if (*p == '"') {
                p++;
                while (*p && *p != '"')
                    p += (*p == '\\' && p[1]) ? 2 : 1;
                if (*p == '"')
                    p++;
            }
            while (*p && *p != ',')
                p++;
        } else {
            while (*p && *p != ',')
                p++;
        }
    }
    if (!have)
        return 0;
    if (age != NULL && read_seconds(&age, &age_s) != 0)
        age_s = 0;
    return max_age > age_s ? max_age - age_s : 0;
}

/* ---- curl <-> loop glue ---- */

static void on_socket_ready(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct upstream_pool *pool = arg;
    int flags = 0, running = 0;
    if (events & (EPOLLIN | EPOLLHUP))
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(pool->multi, fd, flags, &running);
    check_done(pool);
}

static void on_curl_timeout(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct upstream_pool *pool = arg;
    int running = 0;
    curl_multi_socket_action(pool->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(pool);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream_pool *pool = userp;
    if (what == CURL_POLL_REMOVE) {
        loop_unwatch(pool->loop, s);
        return 0;
    }
    uint32_t events = 0;
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;
    return loop_watch(pool->loop, s, events, on_socket_ready, pool) == 0 ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream_pool *pool = userp;
    /* Never call curl back from here: a zero timeout becomes a timer due at once. */
    if (timeout_ms < 0)
        loop_timer_stop(pool->timer);
    else
        loop_timer_start(pool->timer, (uint64_t)timeout_ms);
    return 0;
}

/* ---- pool ---- */

struct upstream_pool *upstream_pool_new(struct loop *loop)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    struct upstream_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        goto fail;
    pool->loop = loop;
    pool->rng = (loop_wall_ms() * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)(uintptr_t)pool ^
                ((uint64_t)getpid() << 32);
    if (pool->rng == 0)
        pool->rng = 1;
    pool->timer = loop_timer_new(loop, on_curl_timeout, pool);
    pool->multi = curl_multi_init();
    if (pool->timer == NULL || pool->multi == NULL)
        goto fail;
    curl_multi_setopt(pool->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(pool->multi, CURLMOPT_SOCKETDATA, pool);
    curl_multi_setopt(pool->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(pool->multi, CURLMOPT_TIMERDATA, pool);
    return pool;
fail:
    if (pool) {
        if (pool->multi)
            curl_multi_cleanup(pool->multi);
        loop_timer_free(pool->timer);
        free(pool);
    }
    curl_global_cleanup();
    return NULL;
}

static void poller_destroy(struct poller *p);

/* Keeps libcurl's cache of idle connections at least twice the number of pollers. Its default
 * is four times the transfers in progress, which with pollers spread over their interval is far
 * fewer than the pollers: each poll then found its connection closed to make room for another
 * and opened a new one (a quarter of the polls of 400 pollers at 1 s; with https, a TLS
 * handshake each). Grows only: connections idle past libcurl's maximum age are closed anyway. */
static void pool_fit_cache(struct upstream_pool *pool)
{
    if ((long)pool->npollers * 2 <= pool->cache_size)
        return;
    long want = (long)pool->npollers * 4;
    if (want < 64)
        want = 64;
    if (want > 65536)
        want = 65536;
    if (want > pool->cache_size &&
        curl_multi_setopt(pool->multi, CURLMOPT_MAXCONNECTS, want) == CURLM_OK)
        pool->cache_size = want;
}

void upstream_pool_free(struct upstream_pool *pool)
{
    if (pool == NULL)
        return;
    while (pool->pollers)
        poller_destroy(pool->pollers);
    /* Cleanup closes cached connections and tells the socket callback: the timer must live. */
    curl_multi_cleanup(pool->multi);
    loop_timer_free(pool->timer);
    free(pool);
    curl_global_cleanup();
}

void upstream_pool_set_policy(struct upstream_pool *pool, upstream_addr_policy policy, void *arg)
{
    pool->policy = policy;
    pool->policy_arg = arg;
}

void upstream_pool_set_url_policy(struct upstream_pool *pool, upstream_url_policy policy, void *arg)
{
    pool->url_policy = policy;
    pool->url_policy_arg = arg;
}

/* ---- curl callbacks of one transfer (no poller_free, no multi calls in here) ---- */

static size_t on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    struct poller *p = userdata;
    size_t n = size * nitems;
    p->header_bytes += n;
    if (p->header_bytes > MAX_HEADER_BYTES) {
        p->headers_over = 1;
        return 0;
    }
    /* Each response (1xx, redirects, the final one) starts with its status line. */
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        p->resp_status = 0;
        p->resp_etag[0] = p->resp_last_modified[0] = p->retry_after[0] = '\0';
        p->content_type[0] = p->cache_control[0] = p->age[0] = '\0';
        const char *sp = memchr(line, ' ', n);
        if (sp && (size_t)(sp - line) + 4 <= n) {
            long code = 0;
            for (int i = 1; i <= 3; i++) {
                char c = sp[i];
                if (c < '0' || c > '9') {
                    code = 0;
                    break;
                }
                code = code * 10 + (c - '0');
            }
            p->resp_status = code;
        }
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (colon == NULL)
        return n;
    size_t namelen = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (name_is(line, namelen, "etag"))
        copy_field(p->resp_etag, sizeof(p->resp_etag), v, vlen);
    else if (name_is(line, namelen, "last-modified"))
        copy_field(p->resp_last_modified, sizeof(p->resp_last_modified), v, vlen);
    else if (name_is(line, namelen, "retry-after"))
        copy_field(p->retry_after, sizeof(p->retry_after), v, vlen);
    else if (name_is(line, namelen, "content-type"))
        copy_field(p->content_type, sizeof(p->content_type), v, vlen);
    else if (name_is(line, namelen, "cache-control") && p->cache_floor_max_ms)
        copy_field(p->cache_control, sizeof(p->cache_control), v, vlen);
    else if (name_is(line, namelen, "age") && p->cache_floor_max_ms)
        copy_field(p->age, sizeof(p->age), v, vlen);
    else if (name_is(line, namelen, "location") && !p->adhoc && (p->nheaders || p->oauth) &&
             p->resp_status >= 300 && p->resp_status < 400 && vlen < 8192) {
        /* curl keeps Authorization and Cookie to the original host, but every other configured
         * header (an API key) would follow a redirect anywhere: refuse other origins. With
         * OAuth2 too: a bearer token is for the origin that asked for it. */
        char target[8192], there[1024];
        char *here = NULL;
        memcpy(target, v, vlen);
        target[vlen] = '\0';
        curl_easy_getinfo(p->easy, CURLINFO_EFFECTIVE_URL, &here);
        if (url_origin(here ? here : p->url, target, there, sizeof(there)) != 0 ||
            strcasecmp(there, p->origin) != 0) {
            p->redirect_refused = 1;
            return 0;
        }
    }
    return n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct poller *p = userdata;
    size_t n = size * nmemb;
    if (p->resp_status < 200 || p->resp_status >= 300) {
        /* The body of an error answer is not reported: count it against the cap and drop it. */
        p->discarded += n;
        if (p->discarded > p->max_body) {
            p->over_cap = 1;
            return 0;
        }
        return n;
    }
    /* curl hands over decoded bytes, so the cap holds after decompression and a gzip bomb ends
     * at the first chunk past it. */
    if (buf_append(&p->body, data, n) != 0) {
        if (p->body.len + n > p->max_body)
            p->over_cap = 1;
        else
            p->out_of_memory = 1;
        return 0;
    }
    return n;
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct poller *p = clientp;
    struct upstream_pool *pool = p->pool;
    if (p->adhoc && pool->policy) {
        p->policy_why[0] = '\0';
        if (pool->policy(pool->policy_arg, &addr->addr, (socklen_t)addr->addrlen, p->policy_why,
                         sizeof(p->policy_why)) != 0) {
            p->policy_why[sizeof(p->policy_why) - 1] = '\0';
            p->policy_refused = 1;
            return CURL_SOCKET_BAD;
        }
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* ---- outcomes ---- */

/* Calls the poller's callback; poller_free from inside it only marks the poller closing. */
static int deliver(struct poller *p, struct poll_result *r)
{
    p->in_callback = 1;
    int rc = p->cb(p->arg, r);
    p->in_callback = 0;
    return rc;
}

/* Milliseconds until the next attempt after the failures so far: equal jitter over an
 * exponential base, so the delay lies in [base/2, base] with base = interval * 2^failures capped
 * at backoff_max, and never under the interval. */
static uint64_t backoff_ms(struct poller *p)
{
    uint64_t cap = p->backoff_max_ms > p->interval_ms ? p->backoff_max_ms : p->interval_ms;
    unsigned shift = p->failures < 40 ? p->failures : 40;
    uint64_t base = p->interval_ms;
    while (shift-- && base < cap)
        base *= 2;
    if (base > cap)
        base = cap;
    uint64_t half = base / 2;
    uint64_t delay = half + rng_next(p->pool) % (base - half + 1);
    return delay < p->interval_ms ? p->interval_ms : delay;
}

/* Parses Retry-After, delta-seconds or an HTTP-date. Returns milliseconds from now, or -1. */
static int64_t retry_after_ms(const char *v)
{
    if (v[0] == '\0')
        return -1;
    if (v[0] >= '0' && v[0] <= '9') {
        uint64_t secs = 0;
        for (const char *c = v; *c; c++) {
            if (*c < '0' || *c > '9')
                return -1;
            if (secs < RETRY_AFTER_MAX_MS)
                secs = secs * 10 + (uint64_t)(*c - '0');
        }
        return secs >= RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : (int64_t)(secs * 1000);
    }
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1)
        return -1;
    int64_t delta = (int64_t)when * 1000 - (int64_t)loop_wall_ms();
    if (delta < 0)
        return 0;
    return delta > (int64_t)RETRY_AFTER_MAX_MS ? (int64_t)RETRY_AFTER_MAX_MS : delta;
}

/* Reports a failure and schedules the next attempt after the backoff, or after Retry-After when
 * the upstream sent one. The caller must not touch p after this returns 1 (freed). */
static int fail(struct poller *p, struct poll_result *r, const char *retry_after)
{
    struct loop *loop = p->pool->loop;
    p->failures++;
    uint64_t delay = backoff_ms(p);
    int64_t ra = retry_after ? retry_after_ms(retry_after) : -1;
    if (ra >= 0)
        delay = (uint64_t)ra > p->interval_ms ? (uint64_t)ra : p->interval_ms;
    /* Ticks go on from the retry: the schedule is re-anchored there. */
    p->next_tick = loop_now_ms(loop) + delay;
    p->anchored = 1;
    loop_timer_start(p->tick, delay);

    r->outcome = POLL_FAILED;
    r->body = NULL;
    r->len = 0;
    r->content_type = NULL;
    r->error = p->error;
    r->retry_in_ms = delay;
    deliver(p, r);
    if (p->closing) {
        poller_destroy(p);
        return 1;
    }
    return 0;
}

/* Writes the human reason of a failed transfer into p->error. Never includes header values. */
static void describe_failure(struct poller *p, CURLcode rc, long status, long oserr,
                             curl_off_t connect_us, curl_off_t total_us)
{
    char *e = p->error;
    size_t n = sizeof(p->error);
    unsigned long long timeout = (unsigned long long)p->timeout_ms;
    unsigned long long ctimeout =
        (unsigned long long)(p->connect_timeout_ms < p->timeout_ms ? p->connect_timeout_ms
                                                                   : p->timeout_ms);
    if (rc == CURLE_OK) {
        if (status == 304)
            snprintf(e, n, "upstream answered 304 to an unconditional request");
        else
            snprintf(e, n, "upstream answered %ld", status);
        return;
    }
    if (p->policy_refused) {
        snprintf(e, n, "upstream address refused: %s",
                 p->policy_why[0] ? p->policy_why : "not allowed");
        return;
    }
    switch (rc) {
    case CURLE_WRITE_ERROR:
        if (p->over_cap)
            snprintf(e, n, "upstream body over %zu bytes", p->max_body);
        else if (p->headers_over)
            snprintf(e, n, "upstream headers over %u bytes", MAX_HEADER_BYTES);
        else if (p->redirect_refused)
            snprintf(e, n, "redirect to another origin refused (configured headers)");
        else
            snprintf(e, n, "out of memory receiving the upstream body");
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(e, n, "could not resolve host");
        return;
    case CURLE_COULDNT_RESOLVE_PROXY:
        snprintf(e, n, "could not resolve proxy");
        return;
    case CURLE_COULDNT_CONNECT:
        if (oserr == ECONNREFUSED)
            snprintf(e, n, "connection refused");
        else if (oserr == ENETUNREACH)
            snprintf(e, n, "network unreachable");
        else if (oserr == EHOSTUNREACH)
            snprintf(e, n, "host unreachable");
        else
            snprintf(e, n, "could not connect");
        return;
    case CURLE_OPERATION_TIMEDOUT:
        if (strncmp(p->errbuf, "Operation too slow", 18) == 0)
            snprintf(e, n, "upstream too slow: under %d bytes/s for %d s", LOW_SPEED_BYTES,
                     LOW_SPEED_SECS);
        else if (connect_us == 0 && total_us / 1000 + 50 < (curl_off_t)p->timeout_ms)
            snprintf(e, n, "connect timeout after %llu ms", ctimeout);
        else
            snprintf(e, n, "timeout after %llu ms", timeout);
        return;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(e, n, "TLS certificate did not verify");
        return;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(e, n, "TLS handshake failed");
        return;
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(e, n, "TLS CA certificates could not be read");
        return;
    case CURLE_GOT_NOTHING:
        snprintf(e, n, "upstream closed the connection without answering");
        return;
    case CURLE_PARTIAL_FILE:
        snprintf(e, n, "upstream closed the connection before the end of the body");
        return;
    case CURLE_RECV_ERROR:
        snprintf(e, n, "connection lost while receiving");
        return;
    case CURLE_SEND_ERROR:
        snprintf(e, n, "connection lost while sending the request");
        return;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(e, n, "more than %d redirects", MAX_REDIRECTS);
        return;
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(e, n, "redirect to a scheme other than http or https");
        return;
    case CURLE_BAD_CONTENT_ENCODING:
        snprintf(e, n, "upstream body could not be decoded (Content-Encoding)");
        return;
    case CURLE_WEIRD_SERVER_REPLY:
        snprintf(e, n, "upstream did not answer HTTP");
        return;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        snprintf(e, n, "HTTP/2 error");
        return;
    case CURLE_OUT_OF_MEMORY:
        snprintf(e, n, "out of memory");
        return;
    default:
        /* curl's generic text for the code: it names no header and no value. */
        snprintf(e, n, "upstream request failed: %s", curl_easy_strerror(rc));
        return;
    }
}

static int follow_redirect(struct poller *p, const char *target);

static int is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* After an answer that confirms the document (a body taken, or a 304): when the upstream said
 * how long it stays fresh (Cache-Control: max-age, less Age) and that is longer than the
 * interval, the next poll waits for it, at most cache_floor_max_ms. */
static void apply_cache_floor(struct poller *p)
{
    if (p->cache_floor_max_ms == 0)
        return;
    uint64_t fresh = upstream_fresh_seconds(p->cache_control, p->age[0] ? p->age : NULL);
    if (fresh == 0)
        return;
    uint64_t ms = fresh > p->cache_floor_max_ms / 1000 + 1 ? p->cache_floor_max_ms : fresh * 1000;
    if (ms > p->cache_floor_max_ms)
        ms = p->cache_floor_max_ms;
    if (ms <= p->interval_ms)
        return;
    uint64_t now = loop_now_ms(p->pool->loop);
    p->next_tick = now + ms;
    p->anchored = 1;
    loop_timer_start(p->tick, ms);
}

/* Handles a finished transfer: reports it, then schedules what comes next. */
static void request_done(struct poller *p, CURLcode rc)
{
    struct upstream_pool *pool = p->pool;
    long status = 0, oserr = 0;
    curl_off_t total_us = 0, connect_us = 0, down = 0;
    char *location = NULL;
    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && p->adhoc && p->max_redirects > 0 && is_redirect(status)) {
        char *target = NULL;
        curl_easy_getinfo(p->easy, CURLINFO_REDIRECT_URL, &target);
        /* Copied: the handle's next URL replaces the text it points to. */
        if (target)
            location = dup_str(target);
    }
    curl_easy_getinfo(p->easy, CURLINFO_OS_ERRNO, &oserr);
    curl_easy_getinfo(p->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(p->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    curl_easy_getinfo(p->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    curl_multi_remove_handle(pool->multi, p->easy);
    p->in_flight = 0;
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(p->req_headers);
    p->req_headers = NULL;

    struct poll_result r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.latency_ms = (double)total_us / 1000.0;
    r.bytes_in = down > 0 ? (size_t)down : 0;

    if (location) {
        int followed = follow_redirect(p, location);
        free(location);
        if (followed == 0)
            return;
        buf_dispose(&p->body);
        fail(p, &r, NULL);
        return;
    }
    if (rc == CURLE_OK && status == 401 && p->oauth && !p->auth_retried) {
        /* The token may have been revoked: drop it, unless another poll already got a newer
         * one, and try once more with a fresh one. */
        struct oauth_client *o = p->oauth;
        p->auth_retried = 1;
        buf_dispose(&p->body);
        if (o->gen == p->token_gen) {
            o->usable_until = 0;
            o->used = 0;
        }
        int w = oauth_token_for(p);
        if (w == 1 || (w == 0 && start_transfer(p) == 0))
            return;
        fail(p, &r, NULL);
        return;
    }
    if (rc == CURLE_OK && status == 304 && p->cond_sent) {
        buf_dispose(&p->body);
        p->failures = 0;
        r.outcome = POLL_NOT_MODIFIED;
        deliver(p, &r);
        if (p->closing)
            poller_destroy(p);
        else
            apply_cache_floor(p);
        return;
    }
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        r.body = buf_steal(&p->body, &r.len);
        if (r.body == NULL) {
            snprintf(p->error, sizeof(p->error), "out of memory");
            fail(p, &r, NULL);
            return;
        }
        r.outcome = POLL_BODY;
        r.content_type = p->content_type[0] ? p->content_type : NULL;
        int rejected = deliver(p, &r);
        free(r.body);
        r.body = NULL;
        if (p->closing) {
            poller_destroy(p);
            return;
        }
        if (rejected) {
            /* A rejected body must not be confirmed later by a 304: drop the validators. */
            p->etag[0] = p->last_modified[0] = '\0';
            r.reject[sizeof(r.reject) - 1] = '\0';
            snprintf(p->error, sizeof(p->error), "%s",
                     r.reject[0] ? r.reject : "upstream body rejected");
            fail(p, &r, NULL);
            return;
        }
        p->failures = 0;
        /* Only a 200 carries validators for this representation. */
        if (status == 200 && p->conditional) {
            memcpy(p->etag, p->resp_etag, sizeof(p->etag));
            memcpy(p->last_modified, p->resp_last_modified, sizeof(p->last_modified));
        }
        apply_cache_floor(p);
        return;
    }
    buf_dispose(&p->body);
    describe_failure(p, rc, status, oserr, connect_us, total_us);
    fail(p, &r, rc == CURLE_OK && p->retry_after[0] ? p->retry_after : NULL);
}

static void check_done(struct upstream_pool *pool)
{
    int left;
    /* A callback may free another poller whose transfer is done too: removing its handle also
     * removes its message from curl's queue, so no stale message is read afterwards. */
    for (;;) {
        CURLMsg *msg = curl_multi_info_read(pool->multi, &left);
        if (msg == NULL)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        void *priv = NULL;
        CURLcode rc = msg->data.result;
        struct oauth_client *o = pool->oauths;
        while (o && o->easy != msg->easy_handle)
            o = o->next;
        if (o) {
            oauth_done(o, rc);
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv)
            request_done(priv, rc);
    }
}

/* ---- requests and ticks ---- */

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL)
        return -1;
    *list = l;
    return 0;
}

static int build_headers(struct poller *p)
{
    struct curl_slist *list = NULL;
    char line[320];
    p->cond_sent = 0;
    if (!p->has_accept && add_header(&list, "Accept: application/json") != 0)
        goto fail;
    for (size_t i = 0; i < p->nheaders; i++) {
        if (p->oauth && strncasecmp(p->headers[i], "authorization:", 14) == 0)
            continue; /* the token takes its place */
        if (add_header(&list, p->headers[i]) != 0)
            goto fail;
    }
    if (p->oauth && p->oauth->auth_line) {
        if (add_header(&list, p->oauth->auth_line) != 0)
            goto fail;
        p->token_gen = p->oauth->gen;
        p->oauth->used = 1;
    }
    if (p->method != NULL) {
        /* curl would label a body application/x-www-form-urlencoded, and ask large ones to
         * wait for 100-continue, which some servers never send. */
        if (!p->has_content_type) {
            snprintf(line, sizeof(line), "Content-Type:%s%s", p->req_body ? " " : "",
                     p->req_body ? p->req_content_type : "");
            if (add_header(&list, line) != 0)
                goto fail;
        }
        if (add_header(&list, "Expect:") != 0)
            goto fail;
    }
    if (p->conditional && p->etag[0]) {
        snprintf(line, sizeof(line), "If-None-Match: %s", p->etag);
        if (add_header(&list, line) != 0)
            goto fail;
        p->cond_sent = 1;
    }
    if (p->conditional && p->last_modified[0]) {
        snprintf(line, sizeof(line), "If-Modified-Since: %s", p->last_modified);
        if (add_header(&list, line) != 0)
            goto fail;
        p->cond_sent = 1;
    }
    p->req_headers = list;
    return 0;
fail:
    curl_slist_free_all(list);
    return -1;
}

/* Starts the transfer of the handle's current URL with fresh response state. Returns 0, or -1
 * with the reason in p->error. */
static int start_transfer(struct poller *p)
{
    p->resp_status = 0;
    p->header_bytes = 0;
    p->discarded = 0;
    p->over_cap = p->headers_over = p->out_of_memory = 0;
    p->policy_refused = p->redirect_refused = 0;
    p->resp_etag[0] = p->resp_last_modified[0] = p->retry_after[0] = '\0';
    p->content_type[0] = p->errbuf[0] = '\0';
    buf_dispose(&p->body);
    buf_init(&p->body, p->max_body);
    if (build_headers(p) == 0) {
        curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->req_headers);
        if (curl_multi_add_handle(p->pool->multi, p->easy) == CURLM_OK) {
            p->in_flight = 1;
            return 0;
        }
        curl_slist_free_all(p->req_headers);
        p->req_headers = NULL;
    }
    snprintf(p->error, sizeof(p->error), "could not start the upstream request");
    return -1;
}

/* Starts a poll at the poller's own URL. Returns 1 when p was freed (by its callback, after a
 * failure to start). */
static int start_request(struct poller *p)
{
    if (p->hop_url) {
        curl_easy_setopt(p->easy, CURLOPT_URL, p->url);
        free(p->hop_url);
        p->hop_url = NULL;
    }
    p->hops = 0;
    p->auth_retried = 0;
    int rc = p->oauth ? oauth_token_for(p) : 0;
    if (rc == 1)
        return 0; /* the transfer starts when the token comes */
    if (rc == 0 && start_transfer(p) == 0)
        return 0;
    struct poll_result r;
    memset(&r, 0, sizeof(r));
    return fail(p, &r, NULL);
}

/* Follows one redirect of an ad-hoc poller to target (absolute, resolved by curl): the hop is
 * admitted like the first URL (the URL policy: allow rules and address literals; then the
 * origin rule when headers are forwarded) before anything is sent to it, and its connection
 * passes the address policy. Returns 0 when the hop's transfer started, or -1 with the reason
 * in p->error (nothing was requested from the hop). */
static int follow_redirect(struct poller *p, const char *target)
{
    struct upstream_pool *pool = p->pool;
    char why[160], there[1024];
    char *next = NULL;
    if (p->hops >= p->max_redirects) {
        snprintf(p->error, sizeof(p->error), "more than %ld redirects", p->max_redirects);
        return -1;
    }
    why[0] = '\0';
    if (pool->url_policy) {
        if (pool->url_policy(pool->url_policy_arg, target, &next, why, sizeof(why)) != 0) {
            why[sizeof(why) - 1] = '\0';
            snprintf(p->error, sizeof(p->error), "redirect refused: %s",
                     why[0] ? why : "target not allowed");
            free(next);
            return -1;
        }
    } else {
        next = dup_str(target);
    }
    if (next == NULL) {
        snprintf(p->error, sizeof(p->error), "out of memory");
        return -1;
    }
    /* Forwarded headers were meant for the origin the client named, as with named upstreams. */
    if (p->nheaders &&
        (url_origin(NULL, next, there, sizeof(there)) != 0 || strcasecmp(there, p->origin) != 0)) {
        snprintf(p->error, sizeof(p->error),
                 "redirect refused: to another origin (forwarded headers)");
        free(next);
        return -1;
    }
    if (curl_easy_setopt(p->easy, CURLOPT_URL, next) != CURLE_OK) {
        snprintf(p->error, sizeof(p->error), "out of memory");
        free(next);
        return -1;
    }
    free(p->hop_url);
    p->hop_url = next;
    p->hops++;
    return start_transfer(p);
}

/* ---- OAuth2 client credentials ---- */

static size_t oauth_on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    struct oauth_client *o = userdata;
    size_t n = size * nitems;
    o->header_bytes += n;
    if (o->header_bytes > MAX_HEADER_BYTES)
        return 0;
    return n;
}

static size_t oauth_on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct oauth_client *o = userdata;
    size_t n = size * nmemb;
    if (buf_append(&o->resp, data, n) != 0) {
        o->over_cap = 1;
        return 0;
    }
    return n;
}

/* Copies an OAuth2 error code into out when it holds only the characters RFC 6749 allows
 * (%x20-21 / %x23-5B / %x5D-7E), at most 64 of them; otherwise leaves out empty. */
static void copy_error_code(char *out, size_t outlen, const char *code)
{
    size_t n = strlen(code);
    out[0] = '\0';
    if (n == 0 || n > 64 || n >= outlen)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)code[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return;
    }
    memcpy(out, code, n + 1);
}

/* A token is sent as is in a header: RFC 6750's b64token characters only, and bounded. */
static int token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 8192)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 strchr("-._~+/=", c) != NULL;
        if (!ok)
            return 0;
    }
    return 1;
}

/* Writes why a token request failed (no secret) into o->error, or takes the token. Returns 0
 * when a token was taken. */
static int oauth_take(struct oauth_client *o, CURLcode rc, long status, long oserr)
{
    char *e = o->error;
    size_t n = sizeof(o->error);
    if (rc != CURLE_OK) {
        if (o->over_cap)
            snprintf(e, n, "token endpoint answer over %zu bytes", o->max_body);
        else if (rc == CURLE_COULDNT_CONNECT && oserr == ECONNREFUSED)
            snprintf(e, n, "token endpoint: connection refused");
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(e, n, "token endpoint: timeout after %llu ms",
                     (unsigned long long)o->timeout_ms);
        else if (rc == CURLE_PEER_FAILED_VERIFICATION)
            snprintf(e, n, "token endpoint: TLS certificate did not verify");
        else
            snprintf(e, n, "token endpoint: %s", curl_easy_strerror(rc));
        return -1;
    }
    cJSON *doc = cJSON_ParseWithLengthOpts(o->resp.data ? o->resp.data : "", o->resp.len, NULL, 0);
    int taken = -1;
    if (status != 200) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
        char code[80] = "";
        if (cJSON_IsString(err))
            copy_error_code(code, sizeof(code), err->valuestring);
        snprintf(e, n, "token endpoint answered %ld%s%s", status, code[0] ? " " : "", code);
        goto out;
    }
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "token_type");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
    if (!cJSON_IsString(tok) || !token_valid(tok->valuestring)) {
        snprintf(e, n, "token endpoint answered 200 without a usable access_token");
        goto out;
    }
    if (type != NULL && (!cJSON_IsString(type) || strcasecmp(type->valuestring, "bearer") != 0)) {
        snprintf(e, n, "token endpoint answered a token_type other than Bearer");
        goto out;
    }
    /* expires_in is recommended, not required; some servers send it as a string. Without it
     * the token is kept for an hour, or until a 401. */
    double secs = 3600;
    if (cJSON_IsNumber(exp))
        secs = exp->valuedouble;
    else if (cJSON_IsString(exp))
        secs = strtod(exp->valuestring, NULL);
    if (!(secs >= 1))
        secs = 1;
    if (secs > 366.0 * 86400)
        secs = 366.0 * 86400;
    uint64_t life = (uint64_t)(secs * 1000);
    struct buf line;
    buf_init(&line, 0);
    if (buf_printf(&line, "Authorization: Bearer %s", tok->valuestring) != 0) {
        buf_dispose(&line);
        snprintf(e, n, "out of memory");
        goto out;
    }
    if (o->auth_line) {
        explicit_bzero(o->auth_line, strlen(o->auth_line));
        free(o->auth_line);
    }
    o->auth_line = buf_steal(&line, NULL);
    o->gen++;
    o->used = 0;
    /* Sent until shortly before it expires (a tenth of its life, at most 30 s), and fetched
     * again in the background a little earlier (a quarter, at most 60 s), so that no poll
     * waits for it while polls keep using it. */
    uint64_t now = loop_now_ms(o->pool->loop);
    uint64_t skew = life / 10 < 30000 ? life / 10 : 30000;
    uint64_t early = life / 4 < 60000 ? life / 4 : 60000;
    o->usable_until = now + life - skew;
    loop_timer_start(o->refresh, life - early);
    taken = 0;
out:
    cJSON_Delete(doc);
    return taken;
}

/* Starts a token request. Returns 0, or -1 with the reason in o->error. */
static int oauth_fetch(struct oauth_client *o)
{
    struct buf form, cred, line;
    int rc = 0;
    unsigned char *b64 = NULL;
    size_t b64len = 0;
    struct curl_slist *h = NULL;
    buf_init(&form, 0);
    buf_init(&cred, 0);
    buf_init(&line, 0);
    rc |= buf_puts(&form, "grant_type=client_credentials");
    if (o->scope) {
        rc |= buf_puts(&form, "&scope=");
        put_encoded(&form, o->scope, strlen(o->scope), &rc);
    }
    if (o->audience) {
        rc |= buf_puts(&form, "&audience=");
        put_encoded(&form, o->audience, strlen(o->audience), &rc);
    }
    /* RFC 6749 2.3.1: the id and the secret are form-encoded, then sent in the form
     * (client_secret_post) or in HTTP Basic. */
    if (o->secret_post) {
        rc |= buf_puts(&form, "&client_id=");
        put_encoded(&form, o->client_id, strlen(o->client_id), &rc);
        rc |= buf_puts(&form, "&client_secret=");
        put_encoded(&form, o->client_secret, strlen(o->client_secret), &rc);
    } else {
        put_encoded(&cred, o->client_id, strlen(o->client_id), &rc);
        rc |= buf_puts(&cred, ":");
        put_encoded(&cred, o->client_secret, strlen(o->client_secret), &rc);
        b64len = 4 * ((cred.len + 2) / 3) + 1;
        b64 = rc == 0 && cred.len < (1u << 20) ? malloc(b64len) : NULL;
        if (b64 == NULL)
            rc = -1;
        if (rc == 0) {
            EVP_EncodeBlock(b64, (const unsigned char *)cred.data, (int)cred.len);
            rc |= buf_printf(&line, "Authorization: Basic %s", (const char *)b64);
        }
        if (rc == 0 && add_header(&h, line.data) != 0)
            rc = -1;
    }
    if (rc == 0 &&
        (add_header(&h, "Content-Type: application/x-www-form-urlencoded") != 0 ||
         add_header(&h, "Accept: application/json") != 0 || add_header(&h, "Expect:") != 0))
        rc = -1;
    if (rc == 0) {
        curl_slist_free_all(o->req_headers);
        o->req_headers = h;
        h = NULL;
        buf_dispose(&o->resp);
        buf_init(&o->resp, o->max_body);
        o->resp_status = 0;
        o->header_bytes = 0;
        o->over_cap = 0;
        o->errbuf[0] = '\0';
        curl_easy_setopt(o->easy, CURLOPT_HTTPHEADER, o->req_headers);
        if (curl_easy_setopt(o->easy, CURLOPT_COPYPOSTFIELDS, form.data) != CURLE_OK ||
            curl_multi_add_handle(o->pool->multi, o->easy) != CURLM_OK)
            rc = -1;
        else
            o->in_flight = 1;
    }
    /* Secrets do not outlive the request in freed memory. curl keeps its own copy of the form
     * and of the header list, freed with the handle. */
    curl_slist_free_all(h);
    if (b64) {
        explicit_bzero(b64, b64len);
        free(b64);
    }
    if (form.data)
        explicit_bzero(form.data, form.len);
    if (cred.data)
        explicit_bzero(cred.data, cred.len);
    if (line.data)
        explicit_bzero(line.data, line.len);
    buf_dispose(&form);
    buf_dispose(&cred);
    buf_dispose(&line);
    if (rc != 0)
        snprintf(o->error, sizeof(o->error), "token endpoint: could not start the request");
    return rc == 0 ? 0 : -1;
}

/* Makes sure p has a valid token to send. Returns 0 when it has one, 1 when p now waits for
 * one (its transfer starts when it comes), or -1 with the reason in p->error. */
static int oauth_token_for(struct poller *p)
{
    struct oauth_client *o = p->oauth;
    if (o->auth_line && loop_now_ms(p->pool->loop) < o->usable_until)
        return 0;
    if (!o->in_flight && oauth_fetch(o) != 0) {
        snprintf(p->error, sizeof(p->error), "%s", o->error);
        return -1;
    }
    p->oauth_next = o->waiters;
    o->waiters = p;
    p->oauth_waiting = 1;
    return 1;
}

static void oauth_done(struct oauth_client *o, CURLcode rc)
{
    long status = 0, oserr = 0;
    curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(o->easy, CURLINFO_OS_ERRNO, &oserr);
    curl_multi_remove_handle(o->pool->multi, o->easy);
    o->in_flight = 0;
    int ok = oauth_take(o, rc, status, oserr) == 0;
    buf_dispose(&o->resp);
    /* Callbacks may free pollers, this client's last one included: hold it meanwhile. */
    o->refs++;
    while (o->waiters) {
        struct poller *p = o->waiters;
        o->waiters = p->oauth_next;
        p->oauth_next = NULL;
        p->oauth_waiting = 0;
        if (ok && start_transfer(p) == 0)
            continue;
        if (!ok)
            snprintf(p->error, sizeof(p->error), "%s", o->error);
        struct poll_result r;
        memset(&r, 0, sizeof(r));
        r.status = 0;
        fail(p, &r, NULL);
    }
    oauth_release(o);
}

static void oauth_on_refresh(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct oauth_client *o = arg;
    /* Only a token that polls use is worth renewing before it lapses; an unused one is fetched
     * again when a poll needs it. */
    if (o->used && !o->in_flight)
        oauth_fetch(o);
}

static void oauth_release(struct oauth_client *o)
{
    if (o == NULL || --o->refs > 0)
        return;
    struct oauth_client **l = &o->pool->oauths;
    while (*l && *l != o)
        l = &(*l)->next;
    if (*l)
        *l = o->next;
    if (o->easy) {
        if (o->in_flight)
            curl_multi_remove_handle(o->pool->multi, o->easy);
        curl_easy_cleanup(o->easy);
    }
    curl_slist_free_all(o->req_headers);
    loop_timer_free(o->refresh);
    buf_dispose(&o->resp);
    if (o->auth_line) {
        explicit_bzero(o->auth_line, strlen(o->auth_line));
        free(o->auth_line);
    }
    if (o->client_secret) {
        explicit_bzero(o->client_secret, strlen(o->client_secret));
        free(o->client_secret);
    }
    free(o->definition);
    free(o->token_url);
    free(o->client_id);
    free(o->scope);
    free(o->audience);
    free(o->ca_file);
    free(o);
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static char *dup_opt(const char *s, int *failed)
{
    if (s == NULL)
        return NULL;
    char *d = dup_str(s);
    if (d == NULL)
        *failed = 1;
    return d;
}

/* Sets what every request of ours shares: user agent, decoders, TLS checks, time limits. Returns
 * the first error curl_easy_setopt gave, or CURLE_OK. */
static CURLcode set_transport(CURL *e, int tls_no_verify, const char *ca_file, uint64_t timeout_ms,
                              uint64_t connect_timeout_ms)
{
    CURLcode rc = curl_easy_setopt(e, CURLOPT_USERAGENT, "pollcast/" POLLCAST_VERSION);
    /* "" asks for every decoder this libcurl has: gzip, deflate, br. */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls_no_verify ? 0L : 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls_no_verify ? 0L : 2L);
    if (rc == CURLE_OK && ca_file)
        rc = curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_SECS);
    return rc;
}

/* Returns the pool's client for the credentials of spec (one per definition), holding one
 * more reference, or NULL on failure. */
static struct oauth_client *oauth_acquire(struct upstream_pool *pool,
                                          const struct poller_spec *spec, uint64_t timeout_ms,
                                          uint64_t connect_timeout_ms, size_t max_body)
{
    const struct upstream_oauth2 *c = spec->oauth2;
    if (c->token_url == NULL || c->client_id == NULL || c->client_secret == NULL)
        return NULL;
    if (strncasecmp(c->token_url, "http://", 7) != 0 &&
        strncasecmp(c->token_url, "https://", 8) != 0)
        return NULL;
    for (struct oauth_client *o = pool->oauths; o; o = o->next) {
        if (same_str(o->definition, c->definition) && same_str(o->token_url, c->token_url) &&
            same_str(o->client_id, c->client_id) && same_str(o->client_secret, c->client_secret) &&
            same_str(o->scope, c->scope) && same_str(o->audience, c->audience) &&
            same_str(o->ca_file, spec->ca_file) && o->tls_no_verify == !!spec->tls_no_verify &&
            o->secret_post == !!c->secret_post) {
            o->refs++;
            return o;
        }
    }
    struct oauth_client *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    int failed = 0;
    o->pool = pool;
    o->refs = 1;
    o->definition = dup_opt(c->definition, &failed);
    o->token_url = dup_opt(c->token_url, &failed);
    o->client_id = dup_opt(c->client_id, &failed);
    o->client_secret = dup_opt(c->client_secret, &failed);
    o->scope = dup_opt(c->scope, &failed);
    o->audience = dup_opt(c->audience, &failed);
    o->ca_file = dup_opt(spec->ca_file, &failed);
    o->tls_no_verify = spec->tls_no_verify ? 1 : 0;
    o->secret_post = c->secret_post ? 1 : 0;
    o->timeout_ms = timeout_ms;
    o->connect_timeout_ms = connect_timeout_ms;
    o->max_body = max_body;
    buf_init(&o->resp, max_body);
    o->refresh = loop_timer_new(pool->loop, oauth_on_refresh, o);
    o->easy = curl_easy_init();
    o->next = pool->oauths;
    pool->oauths = o;
    if (failed || o->refresh == NULL || o->easy == NULL)
        goto fail;
    CURL *e = o->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, o->token_url);
    SET(CURLOPT_PRIVATE, NULL);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    /* The request carries the client's credentials: it goes nowhere else. */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    if (rc == CURLE_OK)
        rc = set_transport(e, o->tls_no_verify, o->ca_file, o->timeout_ms, o->connect_timeout_ms);
    SET(CURLOPT_WRITEFUNCTION, oauth_on_write);
    SET(CURLOPT_WRITEDATA, o);
    SET(CURLOPT_HEADERFUNCTION, oauth_on_header);
    SET(CURLOPT_HEADERDATA, o);
    SET(CURLOPT_ERRORBUFFER, o->errbuf);
#undef SET
    if (rc != CURLE_OK)
        goto fail;
    return o;
fail:
    oauth_release(o);
    return NULL;
}

static void on_tick(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct poller *p = arg;
    uint64_t now = loop_now_ms(loop);
    if (!p->anchored) {
        p->next_tick = now;
        p->anchored = 1;
    }
    /* Fixed rate: the next tick is due one interval after this one was due, not after the
     * request ends. Ticks already missed (a stalled loop) are skipped, not bunched. */
    uint64_t next = p->next_tick + p->interval_ms;
    if (next <= now)
        next += ((now - next) / p->interval_ms + 1) * p->interval_ms;
    p->next_tick = next;
    loop_timer_start(t, next - now);
    if (p->in_flight || p->oauth_waiting)
        return; /* one request at a time: this tick is skipped */
    start_request(p);
}

int poller_poll_now(struct poller *p)
{
    /* Coalesced: a request in flight (or waiting for its token) answers this refresh too. */
    if (p->in_flight || p->oauth_waiting || p->closing)
        return 0;
    start_request(p);
    return 1;
}

/* ---- poller lifecycle ---- */

static int header_valid(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h)
        return 0;
    for (const char *c = h; c < colon; c++) {
        unsigned char ch = (unsigned char)*c;
        /* RFC 9110 token characters only. */
        if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return 0;
    }
    for (const char *c = colon; *c; c++)
        if (*c == '\r' || *c == '\n')
            return 0;
    return 1;
}

static void poller_destroy(struct poller *p)
{
    struct upstream_pool *pool = p->pool;
    if (p->oauth) {
        if (p->oauth_waiting) {
            struct poller **w = &p->oauth->waiters;
            while (*w && *w != p)
                w = &(*w)->oauth_next;
            if (*w)
                *w = p->oauth_next;
        }
        oauth_release(p->oauth);
        p->oauth = NULL;
    }
    loop_timer_free(p->tick);
    if (p->easy) {
        if (p->in_flight)
            curl_multi_remove_handle(pool->multi, p->easy);
        curl_easy_cleanup(p->easy);
    }
    curl_slist_free_all(p->req_headers);
    buf_dispose(&p->body);
    for (size_t i = 0; i < p->nheaders; i++)
        free(p->headers[i]);
    free(p->headers);
    free(p->method);
    free(p->req_body);
    free(p->req_content_type);
    free(p->url);
    free(p->hop_url);
    free(p->ca_file);
    free(p->origin);
    if (p->linked) {
        pool->npollers--;
        if (p->prev)
            p->prev->next = p->next;
        else
            pool->pollers = p->next;
        if (p->next)
            p->next->prev = p->prev;
    }
    free(p);
}

void poller_free(struct poller *p)
{
    if (p == NULL)
        return;
    if (p->in_callback) {
        p->closing = 1;
        return;
    }
    poller_destroy(p);
}

/* Sets the options that stay the same for every request of the poller. Returns 0 or -1. */
static int setup_easy(struct poller *p)
{
    CURL *e = p->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, p->url);
    SET(CURLOPT_PRIVATE, p);
    SET(CURLOPT_NOSIGNAL, 1L);
    if (p->method == NULL) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->req_body_len);
        SET(CURLOPT_POSTFIELDS, p->req_body ? p->req_body : "");
        if (strcmp(p->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, p->method);
    }
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    /* An ad-hoc poller follows its redirects itself (follow_redirect), so that each hop is
     * admitted before anything is sent to it. */
    SET(CURLOPT_FOLLOWLOCATION, p->max_redirects > 0 && !p->adhoc ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, p->max_redirects);
    if (rc == CURLE_OK)
        rc = set_transport(e, p->tls_no_verify, p->ca_file, p->timeout_ms, p->connect_timeout_ms);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, p);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, p);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, p);
    SET(CURLOPT_ERRORBUFFER, p->errbuf);
    /* A proxy would hide the address actually connected to from the policy. */
    if (p->adhoc)
        SET(CURLOPT_PROXY, "");
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

struct poller *poller_new(struct upstream_pool *pool, const struct poller_spec *spec, poller_cb cb,
                          void *arg)
{
    char origin[1024];
    if (spec == NULL || spec->url == NULL || cb == NULL || spec->interval_ms == 0)
        return NULL;
    if (spec->nheaders && spec->headers == NULL)
        return NULL;
    if (strncasecmp(spec->url, "http://", 7) != 0 && strncasecmp(spec->url, "https://", 8) != 0)
        return NULL;
    for (const char *c = spec->url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return NULL; /* spaces and controls (CR/LF) have no place in a URL */
    if (url_origin(NULL, spec->url, origin, sizeof(origin)) != 0)
        return NULL;
    for (size_t i = 0; i < spec->nheaders; i++)
        if (spec->headers[i] == NULL || !header_valid(spec->headers[i]))
            return NULL;

    struct poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->pool = pool;
    p->cb = cb;
    p->arg = arg;
    p->interval_ms = spec->interval_ms;
    p->timeout_ms = spec->timeout_ms;
    if (p->timeout_ms == 0) {
        p->timeout_ms = spec->interval_ms / 10 * 8;
        if (p->timeout_ms < MIN_TIMEOUT_MS)
            p->timeout_ms = MIN_TIMEOUT_MS;
    }
    p->connect_timeout_ms =
        spec->connect_timeout_ms ? spec->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    p->max_body = spec->max_body ? spec->max_body : DEFAULT_MAX_BODY;
    p->backoff_max_ms = spec->backoff_max_ms ? spec->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    p->adhoc = spec->adhoc ? 1 : 0;
    p->tls_no_verify = spec->tls_no_verify ? 1 : 0;
    if (spec->redirects > 0)
        p->max_redirects = spec->max_redirects;
    else if (spec->redirects == 0 && !p->adhoc)
        p->max_redirects = MAX_REDIRECTS;
    buf_init(&p->body, p->max_body);

    p->url = spec->nquery ? upstream_url_add_query(spec->url, spec->query, spec->nquery)
                          : dup_str(spec->url);
    p->origin = dup_str(origin);
    p->ca_file = spec->ca_file ? dup_str(spec->ca_file) : NULL;
    if (p->url == NULL || p->origin == NULL || (spec->ca_file && p->ca_file == NULL))
        goto fail;
    p->cache_floor_max_ms = spec->cache_floor_max_ms;
    p->conditional = 1;
    if (spec->method && strcmp(spec->method, "GET") != 0) {
        /* Conditions make sense for safe methods only: QUERY is safe, the others change or
         * may change state, and If-None-Match means something else to PUT. */
        p->conditional = strcmp(spec->method, "QUERY") == 0;
        p->method = dup_str(spec->method);
        p->req_content_type = dup_str(spec->content_type ? spec->content_type : "application/json");
        if (p->method == NULL || p->req_content_type == NULL)
            goto fail;
        if (spec->body) {
            p->req_body = malloc(spec->body_len + 1);
            if (p->req_body == NULL)
                goto fail;
            memcpy(p->req_body, spec->body, spec->body_len);
            p->req_body[spec->body_len] = '\0';
            p->req_body_len = spec->body_len;
        }
    }
    if (spec->nheaders) {
        p->headers = calloc(spec->nheaders, sizeof(*p->headers));
        if (p->headers == NULL)
            goto fail;
        for (size_t i = 0; i < spec->nheaders; i++) {
            p->headers[i] = dup_str(spec->headers[i]);
            if (p->headers[i] == NULL)
                goto fail;
            p->nheaders++;
            if (strncasecmp(spec->headers[i], "accept:", 7) == 0)
                p->has_accept = 1;
            if (strncasecmp(spec->headers[i], "content-type:", 13) == 0)
                p->has_content_type = 1;
        }
    }
    if (spec->oauth2) {
        p->oauth = oauth_acquire(pool, spec, p->timeout_ms, p->connect_timeout_ms, p->max_body);
        if (p->oauth == NULL)
            goto fail;
    }
    p->easy = curl_easy_init();
    if (p->easy == NULL || setup_easy(p) != 0)
        goto fail;
    p->tick = loop_timer_new(pool->loop, on_tick, p);
    if (p->tick == NULL)
        goto fail;

    p->next = pool->pollers;
    if (pool->pollers)
        pool->pollers->prev = p;
    pool->pollers = p;
    p->linked = 1;
    pool->npollers++;
    pool_fit_cache(pool);
    /* The first poll is due at once, but runs from the loop so that the callback never fires
     * before the caller holds the poller. */
    loop_timer_start(p->tick, 0);
    return p;
fail:
    poller_destroy(p);
    return NULL;
}

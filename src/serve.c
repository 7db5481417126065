/* pollcast serve: loads the config, wires loop, pollers, hub and HTTP front together, and runs
 * until SIGTERM or SIGINT, then ends every stream cleanly and exits within the shutdown grace.
 * SIGHUP reloads the config: unchanged upstreams keep their topics (subscribers, history, ids),
 * removed and changed ones end their streams, new ones are served; what the listening socket was
 * started with needs a restart. */
#include <errno.h>
#include <openssl/evp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "ssrf.h"
#include "store/store.h"
#include "upstream.h"

/* What the HTTP front and the hub are given, built from the config and kept alive for as long
 * as the config is in use (the server points into these arrays). */
struct wiring {
    struct http_stream *streams;
    const char ***id_keys; /* per stream: {id_key, NULL}, or {NULL} when identity is off */
    char **demo_urls;
    const char **cors;
    char **allow; /* canonical url_prefix rules */
    const char **adhoc_ids;
    const char **forward; /* [allow] forward_header names */
    const char ***fwd;    /* per stream: its forward_header names, NULL-terminated */
    char **req_ids;       /* per stream: method and body digest (topic key part), or NULL */
    struct upstream_oauth2 *oauth2; /* per stream: its OAuth2 client (strings: the config's) */
    struct auth *auth;
};

struct daemon {
    struct loop *loop;
    struct upstream_pool *pool;
    struct store *store;
    struct hub *hub;
    struct http_server *http;
    struct loop_timer *shutdown_timer;
    int sigfd;
    int stopping;
    uint64_t stop_deadline_ms;
    const char *config_file; /* NULL: the built-in demo config */
    unsigned port;
    /* The config in use and what was built from it; replaced together on reload. Topics copy
     * what they need of a spec, so only the HTTP front points into these. */
    struct config cfg;
    struct wiring w;
    struct http_params hp;
    struct ssrf_rules rules; /* what every redirect hop of an ad-hoc poller is admitted by */
    uint64_t reloads_ok, reloads_failed;
};

/* Reads POLLCAST_TEST_EPOCH_CLOCK_MS, a hook for tests only (not documented for operators):
 * Unix milliseconds at which every topic epoch is made. Returns them, or 0 when unset or not
 * a number. */
static uint64_t test_epoch_clock(void)
{
    const char *v = getenv("POLLCAST_TEST_EPOCH_CLOCK_MS");
    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long ms = strtoull(v, &end, 10);
    return errno == 0 && *end == '\0' ? (uint64_t)ms : 0;
}

/* Points the HTTP front and the pool's policies at d's config, which lives as long as they do:
 * [allow] cidr for addresses, url_prefix and cidr for ad-hoc redirect hops. */
static void wire_policies(struct daemon *d)
{
    d->hp.allow_cidrs = &d->cfg.allow.cidr;
    d->rules.prefixes = d->hp.allow_prefixes;
    d->rules.allow = &d->cfg.allow.cidr;
    upstream_pool_set_policy(d->pool, ssrf_upstream_policy, (void *)&d->cfg.allow.cidr);
    upstream_pool_set_url_policy(d->pool, ssrf_upstream_url_policy, &d->rules);
}

/* Raises the soft limit of open files to the hard limit: every subscriber is a descriptor. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_msg(LOG_WARN, "cannot raise the open files limit: %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_msg(LOG_DEBUG, "open files limit %llu", (unsigned long long)rl.rlim_cur);
}

/* Shutdown, step by step on the loop: stop accepting, end every stream, wait for the
 * connections to finish (bounded by the grace), then stop the loop. */
static void on_shutdown_tick(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct daemon *d = arg;
    /* Streams end as soon as their last event is written; idle keep-alive connections are
     * simply closed with the daemon. */
    uint64_t open = hub_stats(d->hub)->subscribers;
    if (open == 0 || loop_now_ms(loop) >= d->stop_deadline_ms) {
        if (open)
            log_msg(LOG_WARN, "shutdown: closing %llu streams that did not finish",
                    (unsigned long long)open);
        loop_stop(loop);
        return;
    }
    loop_timer_start(timer, 20);
}

static void begin_shutdown(struct daemon *d, const char *why, uint64_t grace_ms)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    log_msg(LOG_INFO, "%s: stopping (%llu subscribers)", why,
            (unsigned long long)hub_stats(d->hub)->subscribers);
    http_server_quiesce(d->http);
    hub_close_all(d->hub);
    d->stop_deadline_ms = loop_now_ms(d->loop) + grace_ms;
    loop_timer_start(d->shutdown_timer, 0);
}

static void reload(struct daemon *d);

static void on_signal(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct daemon *d = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            begin_shutdown(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                           d->cfg.server.shutdown_grace_ms);
        else if (si.ssi_signo == SIGHUP && !d->stopping)
            reload(d);
    }
}

static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void wiring_dispose(struct wiring *w, size_t nstreams)
{
    for (size_t i = 0; i < nstreams; i++) {
        if (w->id_keys)
            free(w->id_keys[i]);
        if (w->demo_urls)
            free(w->demo_urls[i]);
        if (w->fwd)
            free(w->fwd[i]);
        if (w->req_ids)
            free(w->req_ids[i]);
    }
    free(w->fwd);
    free(w->req_ids);
    free(w->oauth2);
    free(w->streams);
    free(w->id_keys);
    free(w->demo_urls);
    free(w->cors);
    free(w->forward);
    ssrf_prefixes_free(w->allow);
    auth_free(w->auth);
    free(w->adhoc_ids);
}

/* A NULL-terminated view of a config list (the strings stay the config's). */
static const char **list_view(const struct config_list *l)
{
    const char **v = calloc(l->n + 1, sizeof(*v));
    if (v)
        for (size_t i = 0; i < l->n; i++)
            v[i] = l->items[i];
    return v;
}

static const char **id_keys_view(const char *id_key)
{
    const char **v = calloc(2, sizeof(*v));
    if (v && id_key && *id_key)
        v[0] = id_key;
    return v;
}

/* The address a poller uses to reach this server's own demo document. */
static char *demo_url(const struct config_addr *listen, unsigned port)
{
    const char *host = listen->host;
    struct buf b;
    buf_init(&b, 0);
    if (listen->family == AF_INET6)
        buf_printf(&b, "http://[%s]:%u/_demo/upstream.json",
                   strcmp(host, "::") == 0 || *host == '\0' ? "::1" : host, port);
    else
        buf_printf(&b, "http://%s:%u/_demo/upstream.json",
                   strcmp(host, "0.0.0.0") == 0 || *host == '\0' ? "127.0.0.1" : host, port);
    return buf_steal(&b, NULL);
}

/* The request of upstream u as part of its topic key: "POST.<digest>", the digest being the
 * first 64 bits of SHA-256 over the content type and the body (the body itself may be long).
 * Returns a malloc'd string, or NULL on failure. */
static char *request_identity(const struct config_upstream *u)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *ct = u->content_type ? u->content_type : "";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, ct, strlen(ct) + 1) == 1 &&
             (u->request_body_len == 0 ||
              EVP_DigestUpdate(ctx, u->request_body, u->request_body_len) == 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 8;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return NULL;
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "%s.", config_method_name(u->method));
    for (int i = 0; i < 8; i++)
        buf_printf(&b, "%02x", md[i]);
    return buf_steal(&b, NULL);
}

/* The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), which
 * may be fewer than the machine has online; the online count when the mask is unknown. */
static long usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return sysconf(_SC_NPROCESSORS_ONLN);
}

/* Returns 0, or -1 with a message in err (a rule or key the security modules refuse, OOM). */
static int build_wiring(const struct config *cfg, struct wiring *w, struct http_params *hp,
                        struct hub_params *hubp, char *err, size_t errlen)
{
    const struct config_server *s = &cfg->server;
    size_t n = cfg->n_upstreams;
    memset(w, 0, sizeof(*w));
    w->streams = calloc(n ? n : 1, sizeof(*w->streams));
    w->id_keys = calloc(n ? n : 1, sizeof(*w->id_keys));
    w->demo_urls = calloc(n ? n : 1, sizeof(*w->demo_urls));
    w->fwd = calloc(n ? n : 1, sizeof(*w->fwd));
    w->req_ids = calloc(n ? n : 1, sizeof(*w->req_ids));
    w->oauth2 = calloc(n ? n : 1, sizeof(*w->oauth2));
    w->cors = list_view(&s->cors_origin);
    w->adhoc_ids = id_keys_view(cfg->allow.id_key);
    w->forward = list_view(&cfg->allow.forward_header);
    snprintf(err, errlen, "out of memory");
    if (!w->streams || !w->id_keys || !w->demo_urls || !w->fwd || !w->req_ids || !w->oauth2 ||
        !w->cors || !w->adhoc_ids || !w->forward)
        return -1;
    char why[256];
    w->allow = ssrf_prefixes_new(&cfg->allow.url_prefix, why, sizeof(why));
    if (w->allow == NULL) {
        snprintf(err, errlen, "[allow] url_prefix: %s", why);
        return -1;
    }
    if (cfg->auth.algorithm != CONFIG_AUTH_OFF) {
        w->auth = auth_new(&cfg->auth, why, sizeof(why));
        if (w->auth == NULL) {
            snprintf(err, errlen, "[auth]: %s", why);
            return -1;
        }
    }
    memset(hp, 0, sizeof(*hp));
    for (size_t i = 0; i < n; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        struct http_stream *st = &w->streams[i];
        w->id_keys[i] = id_keys_view(u->id_key);
        w->fwd[i] = list_view(&u->forward_header);
        if (w->fwd[i] == NULL)
            return -1;
        if (w->id_keys[i] == NULL)
            return -1;
        st->name = u->name;
        st->min_interval_ms = u->min_interval_ms;
        st->max_interval_ms = u->max_interval_ms;
        st->mode = u->mode == CONFIG_MODE_SNAPSHOT ? HUB_MODE_SNAPSHOT : HUB_MODE_PATCH;
        st->spec.name = u->name;
        st->spec.id_keys = w->id_keys[i];
        st->spec.error_repeat_ms = u->error_repeat_ms;
        st->spec.poll.url = u->url;
        st->spec.poll.headers = (const char *const *)u->header.items;
        st->spec.poll.nheaders = u->header.n;
        st->spec.poll.interval_ms = u->interval_ms;
        st->spec.poll.timeout_ms = u->timeout_ms;
        st->spec.poll.connect_timeout_ms = u->connect_timeout_ms;
        st->spec.poll.max_body = u->max_body;
        st->spec.poll.backoff_max_ms = u->backoff_max_ms;
        st->spec.poll.redirects = u->follow_redirects ? 1 : -1;
        st->forward_headers = (const char *const *)w->fwd[i];
        st->spec.poll.max_redirects = (long)u->max_redirects;
        st->spec.poll.tls_no_verify = !u->tls_verify;
        st->spec.poll.ca_file = u->ca_file;
        st->spec.any_content_type = u->accept_any_content_type;
        if (u->method != CONFIG_METHOD_GET) {
            st->spec.poll.method = config_method_name(u->method);
            st->spec.poll.body = u->request_body;
            st->spec.poll.body_len = u->request_body_len;
            st->spec.poll.content_type = u->content_type;
            w->req_ids[i] = request_identity(u);
            if (w->req_ids[i] == NULL)
                return -1;
            st->request_id = w->req_ids[i];
        }
        if (u->oauth2_token_url != NULL) {
            struct upstream_oauth2 *o = &w->oauth2[i];
            o->definition = u->name;
            o->token_url = u->oauth2_token_url;
            o->client_id = u->oauth2_client_id;
            o->client_secret = u->oauth2_secret;
            o->scope = u->oauth2_scope;
            o->audience = u->oauth2_audience;
            o->secret_post = u->oauth2_client_auth == CONFIG_OAUTH2_POST;
            st->spec.poll.oauth2 = o;
        }
        st->spec.poll.query = (const char *const *)u->query.items;
        st->spec.poll.nquery = u->query.n;
        st->spec.poll.cache_floor_max_ms = u->respect_cache_control ? u->max_interval_ms : 0;
        st->push = u->push;
        st->publish_token = u->publish_token;
        st->state_file = u->state_file;
        if (u->url && strcmp(u->url, CONFIG_DEMO_URL) == 0)
            hp->demo = 1;
    }
    const struct config_allow *a = &cfg->allow;
    hp->addr = s->listen.sa;
    hp->addrlen = s->listen.salen;
    hp->streams = w->streams;
    hp->nstreams = n;
    hp->cors_origins = w->cors;
    hp->allow_prefixes = a->max_pollers ? (const char *const *)w->allow : NULL;
    hp->allow_cidrs = &a->cidr;
    hp->auth = w->auth;
    hp->auth_cookie = cfg->auth.cookie;
    hp->adhoc.interval_ms = a->interval_ms;
    hp->adhoc.timeout_ms = a->timeout_ms;
    hp->adhoc.connect_timeout_ms = a->connect_timeout_ms;
    hp->adhoc.max_body = a->max_body;
    hp->adhoc.backoff_max_ms = a->backoff_max_ms;
    hp->adhoc.redirects = a->follow_redirects ? 1 : -1;
    hp->adhoc.max_redirects = (long)a->max_redirects;
    hp->adhoc.tls_no_verify = !a->tls_verify;
    hp->adhoc.ca_file = a->ca_file;
    hp->adhoc_min_interval_ms = a->min_interval_ms;
    hp->adhoc_max_interval_ms = a->max_interval_ms;
    hp->adhoc_error_repeat_ms = a->error_repeat_ms;
    hp->adhoc_any_content_type = a->accept_any_content_type;
    hp->adhoc_id_keys = w->adhoc_ids;
    hp->adhoc_forward_headers = w->forward;
    hp->max_connections = (unsigned)s->max_connections;
    hp->max_connections_per_ip = (unsigned)s->max_subscribers_per_ip;
    hp->connect_rate_per_ip = s->connect_rate_per_ip;
    hp->max_url_length = s->max_url_length;
    hp->connect_burst_per_ip = s->connect_burst_per_ip;
    hp->max_subscribers = s->max_subscribers;
    hp->request_timeout_s = (unsigned)((s->request_timeout_ms + 999) / 1000);
    /* MHD's per-connection pool holds the request and then the stream's write buffer; it is
     * the main cost of an idle subscriber (measured in bench/RESULTS.md). */
    hp->connection_memory = http_connection_memory(s->max_url_length, s->max_header_bytes);
    hp->max_header_bytes = s->max_header_bytes;
    hp->listen_backlog = (unsigned)s->listen_backlog;
    hp->io_threads = (unsigned)s->io_threads;
    if (hp->io_threads == 0) {
        long cpus = usable_cpus();
        hp->io_threads = cpus < 1 ? 1u : cpus > 64 ? 64u : (unsigned)cpus;
    }
    hp->io_bind_cpus = s->io_cpu_affinity == CONFIG_IO_AFFINITY_AUTO;
    hp->overload_retry_ms = s->overload_retry_ms;
    hp->viewer = s->viewer;
    hp->metrics = s->metrics;
    hp->access_log = s->access_log;
    hp->compat = s->streamdata_compat;
    hp->cluster = cfg->cluster.redis != NULL;

    memset(hubp, 0, sizeof(*hubp));
    hubp->queue_events = s->queue_events;
    hubp->queue_bytes = s->queue_bytes;
    hubp->idle_grace_ms = s->adhoc_grace_ms;
    hubp->keepalive_ms = s->keepalive_ms;
    hubp->retry_ms = s->retry_ms;
    hubp->retry_jitter_ms = s->retry_jitter_ms;
    hubp->max_topics = s->max_pollers;
    return 0;
}

/* Points the demo upstreams of w at this server's own demo document, once the port is known.
 * Returns 0, or -1 on OOM. */
static int wire_demo(const struct config *cfg, struct wiring *w, unsigned port)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (cfg->upstreams[i].url && strcmp(cfg->upstreams[i].url, CONFIG_DEMO_URL) == 0) {
            w->demo_urls[i] = demo_url(&cfg->server.listen, port);
            if (w->demo_urls[i] == NULL)
                return -1;
            w->streams[i].spec.poll.url = w->demo_urls[i];
            w->streams[i].spec.identity_url = CONFIG_DEMO_URL;
        }
    return 0;
}

/* Reads the config file (or the built-in demo config), then the environment overrides, then
 * checks the files it names. Returns 0, or -1 with a message in err (cfg is then empty). */
static int read_config(const char *file, struct config *cfg, char *err, size_t errlen)
{
    int rc = file ? config_load_file(file, cfg, err, errlen) : config_default_demo(cfg);
    if (rc != 0 && !file)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        rc = config_apply_env(cfg, environ, err, errlen);
    if (rc == 0)
        rc = config_read_files(cfg, err, errlen);
    if (rc != 0)
        config_dispose(cfg);
    return rc;
}

/* ---- reload ------------------------------------------------------------------------------ */

struct retire_ctx {
    const struct config *old, *cur;
    const struct http_params *hp;
    size_t named, adhoc;
};

static int forwards(const struct http_params *hp, const char *line)
{
    size_t n = strcspn(line, ":");
    for (const char *const *f = hp->adhoc_forward_headers; f && *f; f++)
        if (strlen(*f) == n && strncasecmp(*f, line, n) == 0)
            return 1;
    return 0;
}

/* Decides which topics a new config ends. Named ("s:NAME|interval"): the upstream is gone or
 * any of its keys changed. Ad-hoc ("p:URL|interval"): no allow rule admits the URL any more.
 * Streamdata.io ("c:URL\ninterval\nheader..."): the form is off, the URL is no longer admitted or
 * a header is no longer forwarded. */
static int retire_pred(void *arg, const char *key)
{
    struct retire_ctx *rc = arg;
    char buf[4096];
    if (key[0] == 's') {
        /* Names hold no '|': the first one ends the name (forwarded headers and the request
         * identity follow it). */
        const char *bar = strchr(key, '|');
        size_t n = bar ? (size_t)(bar - key - 2) : strlen(key + 2);
        if (n >= sizeof(buf))
            return 1;
        memcpy(buf, key + 2, n);
        buf[n] = '\0';
        const struct config_upstream *a = config_find_upstream(rc->old, buf);
        const struct config_upstream *b = config_find_upstream(rc->cur, buf);
        int retire = a == NULL || b == NULL || !config_upstream_equal(a, b);
        rc->named += (size_t)retire;
        return retire;
    }
    const char *end = key[0] == 'p' ? strrchr(key, '|') : strchr(key, '\n');
    size_t n = end ? (size_t)(end - key - 2) : strlen(key + 2);
    if (n >= sizeof(buf))
        return 1;
    memcpy(buf, key + 2, n);
    buf[n] = '\0';
    int retire = rc->hp->allow_prefixes == NULL || !ssrf_url_allowed(buf, rc->hp->allow_prefixes);
    if (key[0] == 'c') {
        retire |= !rc->hp->compat;
        const char *line = end ? strchr(end + 1, '\n') : NULL;
        while (line && !retire) {
            line++;
            retire |= !forwards(rc->hp, line);
            line = strchr(line, '\n');
        }
    }
    rc->adhoc += (size_t)retire;
    return retire;
}

/* Logs the server keys that differ and cannot change without a restart (they stay as they
 * were). */
static void log_restart_keys(const struct config_server *a, const struct config_server *b)
{
    struct {
        const char *key;
        int differs;
    } keys[] = {
        {"listen", strcmp(a->listen.host, b->listen.host) != 0 || a->listen.port != b->listen.port},
        {"max_connections", a->max_connections != b->max_connections},
        {"listen_backlog", a->listen_backlog != b->listen_backlog},
        {"max_subscribers_per_ip", a->max_subscribers_per_ip != b->max_subscribers_per_ip},
        {"connect_rate_per_ip", a->connect_rate_per_ip != b->connect_rate_per_ip},
        {"connect_burst_per_ip", a->connect_burst_per_ip != b->connect_burst_per_ip},
        {"max_header_bytes", a->max_header_bytes != b->max_header_bytes},
        {"max_url_length", a->max_url_length != b->max_url_length},
        {"request_timeout", a->request_timeout_ms != b->request_timeout_ms},
        {"tcp_keepalive", a->tcp_keepalive_ms != b->tcp_keepalive_ms},
        {"keepalive", a->keepalive_ms != b->keepalive_ms},
        {"retry", a->retry_ms != b->retry_ms},
        {"retry_jitter", a->retry_jitter_ms != b->retry_jitter_ms},
        {"history_events", a->history_events != b->history_events},
        {"history_bytes", a->history_bytes != b->history_bytes},
        {"history_age", a->history_age_ms != b->history_age_ms},
        {"queue_events", a->queue_events != b->queue_events},
        {"queue_bytes", a->queue_bytes != b->queue_bytes},
        {"adhoc_grace", a->adhoc_grace_ms != b->adhoc_grace_ms},
        {"max_pollers", a->max_pollers != b->max_pollers},
        {"io_threads", a->io_threads != b->io_threads},
        {"io_cpu_affinity", a->io_cpu_affinity != b->io_cpu_affinity},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].differs)
            log_event(LOG_WARN, "reload: this key needs a restart; the running value stays",
                      (struct log_field[]){LOG_STR("key", keys[i].key)}, 1);
}

static int str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* [cluster] is read at start only: the store is made once. */
static void log_restart_cluster(const struct config_cluster *a, const struct config_cluster *b)
{
    const char *key = str_differs(a->redis, b->redis)       ? "redis"
                      : str_differs(a->node_id, b->node_id) ? "node_id"
                      : a->lease_ms != b->lease_ms          ? "lease"
                                                            : NULL;
    if (key)
        log_event(LOG_WARN, "reload: this key needs a restart; the running value stays",
                  (struct log_field[]){LOG_STR("key", key)}, 1);
}

/* SIGHUP: reads the config again, as at start. A config that fails to load or to wire is
 * refused and the running one kept. Otherwise the streams of removed and changed upstreams end
 * (their clients reconnect and get the new definition), the others go on untouched. */
static void reload(struct daemon *d)
{
    struct config ncfg;
    struct wiring nw;
    struct http_params nhp;
    struct hub_params nhubp;
    char err[512];
    memset(&ncfg, 0, sizeof(ncfg));
    memset(&nw, 0, sizeof(nw));
    if (read_config(d->config_file, &ncfg, err, sizeof(err)) != 0) {
        d->reloads_failed++;
        log_event(LOG_ERROR, "reload refused; the running config stays",
                  (struct log_field[]){LOG_STR("error", err)}, 1);
        return;
    }
    if (build_wiring(&ncfg, &nw, &nhp, &nhubp, err, sizeof(err)) != 0 ||
        wire_demo(&ncfg, &nw, d->port) != 0) {
        d->reloads_failed++;
        log_event(LOG_ERROR, "reload refused; the running config stays",
                  (struct log_field[]){LOG_STR("error", err)}, 1);
        wiring_dispose(&nw, ncfg.n_upstreams);
        config_dispose(&ncfg);
        return;
    }
    log_setup((enum log_level)ncfg.server.log_level, ncfg.server.log_format == CONFIG_LOG_JSON);
    log_restart_keys(&d->cfg.server, &ncfg.server);
    log_restart_cluster(&d->cfg.cluster, &ncfg.cluster);
    struct retire_ctx rc = {.old = &d->cfg, .cur = &ncfg, .hp = &nhp};
    hub_retire_topics(d->hub, retire_pred, &rc, "reload");
    size_t added = 0;
    for (size_t i = 0; i < ncfg.n_upstreams; i++)
        added += config_find_upstream(&d->cfg, ncfg.upstreams[i].name) == NULL;
    /* From here on nothing points into the old config: the HTTP front takes the new arrays,
     * the policies the new rules and ranges (in d->cfg, not in this frame's ncfg), and topics
     * hold their own copies. */
    wiring_dispose(&d->w, d->cfg.n_upstreams);
    config_dispose(&d->cfg);
    d->cfg = ncfg;
    d->w = nw;
    d->hp = nhp;
    wire_policies(d);
    http_server_update(d->http, &d->hp);
    http_server_recheck_auth(d->http);
    d->reloads_ok++;
    log_event(LOG_INFO, "config reloaded",
              (struct log_field[]){LOG_NUM("upstreams", d->cfg.n_upstreams),
                                   LOG_NUM("added", added),
                                   LOG_NUM("named_streams_ended", rc.named),
                                   LOG_NUM("adhoc_streams_ended", rc.adhoc)},
              4);
}

/* Reads the command line: -c FILE. Returns 0, or 2 after printing the usage. */
static int parse_args(int argc, char **argv, const char **file)
{
    *file = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            *file = argv[++i];
        } else {
            fprintf(stderr, "usage: pollcast [serve] [-c FILE]\n");
            return 2;
        }
    }
    return 0;
}

static const uint64_t one = 1;

/* /readyz in cluster mode: the node's cluster state and id; not ready while it first connects
 * (it serves alone, ready, when Redis is unreachable). */
static int cluster_ready(void *arg, struct buf *out)
{
    const struct store *s = arg;
    const char *st = store_redis_state(s);
    buf_printf(out, "\"cluster\":\"%s\",\"node\":\"%s\"", st, store_redis_node_id(s));
    return strcmp(st, "connecting") != 0;
}

int cli_serve(int argc, char **argv)
{
    struct daemon d;
    memset(&d, 0, sizeof(d));
    d.sigfd = -1;
    char err[512];
    if (parse_args(argc, argv, &d.config_file) != 0)
        return 2;
    if (read_config(d.config_file, &d.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    const struct config *cfg = &d.cfg;
    log_setup((enum log_level)cfg->server.log_level, cfg->server.log_format == CONFIG_LOG_JSON);
    raise_nofile();

    struct hub_params hubp;
    int rc = 1;
    if (build_wiring(cfg, &d.w, &d.hp, &hubp, err, sizeof(err)) != 0) {
        fprintf(stderr, "pollcast: %s\n", err);
        rc = 2;
        goto out;
    }
    store_epoch_fix_clock(test_epoch_clock());
    d.sigfd = setup_signals();
    d.loop = loop_new();
    d.pool = d.loop ? upstream_pool_new(d.loop) : NULL;
    /* Ad-hoc upstreams come from clients: every address curl connects to, redirects included,
     * must be public unless an [allow] cidr opens it, and every redirect hop must match an
     * allow rule. */
    if (d.pool)
        wire_policies(&d);
    const struct store_params sp = {.history_events = cfg->server.history_events,
                                    .history_bytes = cfg->server.history_bytes,
                                    .history_age_ms = cfg->server.history_age_ms};
    if (cfg->cluster.redis && d.loop) {
        struct config_redis_addr addr;
        if (config_redis_url_parse(cfg->cluster.redis, &addr, err, sizeof(err)) != 0) {
            fprintf(stderr, "pollcast: [cluster] redis: %s\n", err);
            rc = 2;
            goto out;
        }
        const struct store_redis_params rp = {
            .addr = &addr,
            .node_id = cfg->cluster.node_id,
            .lease_ms = cfg->cluster.lease_ms,
            .history = sp,
        };
        d.store = store_redis_new(d.loop, &rp, err, sizeof(err));
        explicit_bzero(&addr, sizeof(addr));
        if (d.store)
            log_set_node(store_redis_node_id(d.store));
    } else if (d.loop) {
        d.store = store_memory_new(d.loop, &sp);
    }
    d.hub = d.pool && d.store ? hub_new(d.loop, d.pool, d.store, &hubp) : NULL;
    d.shutdown_timer = d.loop ? loop_timer_new(d.loop, on_shutdown_tick, &d) : NULL;
    if (d.sigfd < 0 || d.hub == NULL || d.shutdown_timer == NULL ||
        loop_watch(d.loop, d.sigfd, EPOLLIN, on_signal, &d) != 0) {
        fprintf(stderr, "pollcast: cannot set up the event loop: %s\n", strerror(errno));
        goto out;
    }
    d.http = http_server_new(d.loop, d.hub, &d.hp, err, sizeof(err));
    if (d.http == NULL) {
        fprintf(stderr, "pollcast: %s\n", err);
        goto out;
    }
    struct metrics *m = http_server_metrics(d.http);
    if (metrics_add(m, "pollcast_config_reloads_total", METRICS_COUNTER,
                    "Configuration reloads (SIGHUP) by result.", "result", "ok",
                    &d.reloads_ok) != 0 ||
        metrics_add(m, "pollcast_config_reloads_total", METRICS_COUNTER,
                    "Configuration reloads (SIGHUP) by result.", "result", "refused",
                    &d.reloads_failed) != 0) {
        fprintf(stderr, "pollcast: out of memory\n");
        goto out;
    }
    if (cfg->cluster.redis && (store_redis_add_metrics(d.store, m) != 0 ||
                               metrics_add(m, "pollcast_cluster_info", METRICS_GAUGE,
                                           "Always 1; the node id of this node in cluster mode.",
                                           "node", store_redis_node_id(d.store), &one) != 0)) {
        fprintf(stderr, "pollcast: out of memory\n");
        goto out;
    }
    if (cfg->cluster.redis)
        http_server_set_ready(d.http, cluster_ready, d.store);
    d.port = http_server_port(d.http);
    /* The demo upstream is this server's own /_demo/upstream.json: known once bound. */
    if (wire_demo(cfg, &d.w, d.port) != 0)
        goto out;
    char io[160];
    http_server_describe_io(d.http, io, sizeof(io));
    log_msg(LOG_INFO, "pollcast %s listening on %s port %u (%zu upstream%s; %s)", POLLCAST_VERSION,
            cfg->server.listen.host, d.port, cfg->n_upstreams, cfg->n_upstreams == 1 ? "" : "s",
            io);
    /* Scripts that start pollcast on port 0 read the port from this line on stdout; at a
     * terminal the log line above already says it, once. */
    if (!isatty(STDOUT_FILENO)) {
        printf("listening on port %u\n", d.port);
        fflush(stdout);
    }
    rc = loop_run(d.loop) == 0 ? 0 : 1;
    log_msg(LOG_INFO, "stopped");
out:
    http_server_free(d.http);
    hub_free(d.hub);
    if (d.store)
        d.store->ops->free(d.store);
    upstream_pool_free(d.pool);
    loop_timer_free(d.shutdown_timer);
    if (d.sigfd >= 0) {
        if (d.loop)
            loop_unwatch(d.loop, d.sigfd);
        close(d.sigfd);
    }
    loop_free(d.loop);
    wiring_dispose(&d.w, d.cfg.n_upstreams);
    config_dispose(&d.cfg);
    return rc;
}

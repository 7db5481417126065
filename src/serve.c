/* pollcast serve: loads the config, wires loop, pollers, hub and HTTP front together, and runs
 * until SIGTERM or SIGINT, then ends every stream cleanly and exits within the shutdown grace. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "ssrf.h"
#include "loop.h"
#include "upstream.h"

struct daemon {
    struct loop *loop;
    struct upstream_pool *pool;
    struct hub *hub;
    struct http_server *http;
    struct loop_timer *shutdown_timer;
    int sigfd;
    int stopping;
    uint64_t stop_deadline_ms;
};

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

struct signal_ctx {
    struct daemon *d;
    uint64_t grace_ms;
};

static void on_signal(struct loop *loop, int fd, uint32_t events, void *arg)
{
    struct signal_ctx *sc = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            begin_shutdown(sc->d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", sc->grace_ms);
        else if (si.ssi_signo == SIGHUP)
            log_msg(LOG_INFO, "SIGHUP: configuration reload is not available yet; ignored");
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

/* What the HTTP front and the hub are given, built from the config and kept alive for as long
 * as the server runs (the server points into these arrays). */
struct wiring {
    struct http_stream *streams;
    const char ***id_keys; /* per stream: {id_key, NULL}, or {NULL} when identity is off */
    char **demo_urls;
    const char **cors;
    char **allow; /* canonical url_prefix rules */
    const char **adhoc_ids;
    struct auth *auth;
};

static void wiring_dispose(struct wiring *w, size_t nstreams)
{
    for (size_t i = 0; i < nstreams; i++) {
        if (w->id_keys)
            free(w->id_keys[i]);
        if (w->demo_urls)
            free(w->demo_urls[i]);
    }
    free(w->streams);
    free(w->id_keys);
    free(w->demo_urls);
    free(w->cors);
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
    w->cors = list_view(&s->cors_origin);
    w->adhoc_ids = id_keys_view(cfg->allow.id_key);
    snprintf(err, errlen, "out of memory");
    if (!w->streams || !w->id_keys || !w->demo_urls || !w->cors || !w->adhoc_ids)
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
        if (strcmp(u->url, CONFIG_DEMO_URL) == 0)
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
    hp->adhoc_min_interval_ms = a->min_interval_ms;
    hp->adhoc_max_interval_ms = a->max_interval_ms;
    hp->adhoc_error_repeat_ms = a->error_repeat_ms;
    hp->adhoc_id_keys = w->adhoc_ids;
    hp->max_connections = (unsigned)s->max_connections;
    hp->max_connections_per_ip = (unsigned)s->max_subscribers_per_ip;
    hp->connect_rate_per_ip = s->connect_rate_per_ip;
    hp->connect_burst_per_ip = s->connect_burst_per_ip;
    hp->max_subscribers = s->max_subscribers;
    hp->request_timeout_s = (unsigned)((s->request_timeout_ms + 999) / 1000);
    hp->connection_memory = s->max_header_bytes + 16384;
    hp->listen_backlog = (unsigned)s->listen_backlog;
    hp->overload_retry_ms = s->overload_retry_ms;
    hp->viewer = s->viewer;

    memset(hubp, 0, sizeof(*hubp));
    hubp->history_events = s->history_events;
    hubp->history_bytes = s->history_bytes;
    hubp->history_age_ms = s->history_age_ms;
    hubp->queue_events = s->queue_events;
    hubp->queue_bytes = s->queue_bytes;
    hubp->idle_grace_ms = s->adhoc_grace_ms;
    hubp->keepalive_ms = s->keepalive_ms;
    hubp->retry_ms = s->retry_ms;
    hubp->retry_jitter_ms = s->retry_jitter_ms;
    hubp->max_topics = s->max_pollers;
    return 0;
}

/* Reads -c FILE (or the built-in demo config), then the environment overrides. Returns 0, or 2
 * after printing why. */
static int load_config(int argc, char **argv, struct config *cfg)
{
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else {
            fprintf(stderr, "usage: pollcast [serve] [-c FILE]\n");
            return 2;
        }
    }
    char err[512];
    int rc = file ? config_load_file(file, cfg, err, sizeof(err)) : config_default_demo(cfg);
    if (rc == 0)
        rc = config_apply_env(cfg, environ, err, sizeof(err));
    else if (!file)
        snprintf(err, sizeof(err), "out of memory");
    if (rc == 0)
        rc = config_check_files(cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    return 0;
}

int cli_serve(int argc, char **argv)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    int rc = load_config(argc, argv, &cfg);
    if (rc != 0) {
        config_dispose(&cfg);
        return rc;
    }
    log_setup((enum log_level)cfg.server.log_level, cfg.server.log_format == CONFIG_LOG_JSON);
    raise_nofile();

    struct daemon d;
    memset(&d, 0, sizeof(d));
    d.sigfd = -1;
    struct wiring w;
    struct http_params hp;
    struct hub_params hubp;
    struct signal_ctx sc = {.d = &d, .grace_ms = cfg.server.shutdown_grace_ms};
    char err[512];
    rc = 1;
    if (build_wiring(&cfg, &w, &hp, &hubp, err, sizeof(err)) != 0) {
        fprintf(stderr, "pollcast: %s\n", err);
        rc = 2;
        goto out;
    }
    d.sigfd = setup_signals();
    d.loop = loop_new();
    d.pool = d.loop ? upstream_pool_new(d.loop) : NULL;
    /* Ad-hoc upstreams come from clients: every address curl connects to, redirects included,
     * must be public unless an [allow] cidr opens it. */
    if (d.pool)
        upstream_pool_set_policy(d.pool, ssrf_upstream_policy, (void *)&cfg.allow.cidr);
    d.hub = d.pool ? hub_new(d.loop, d.pool, &hubp) : NULL;
    d.shutdown_timer = d.loop ? loop_timer_new(d.loop, on_shutdown_tick, &d) : NULL;
    if (d.sigfd < 0 || d.hub == NULL || d.shutdown_timer == NULL ||
        loop_watch(d.loop, d.sigfd, EPOLLIN, on_signal, &sc) != 0) {
        fprintf(stderr, "pollcast: cannot set up the event loop: %s\n", strerror(errno));
        goto out;
    }
    d.http = http_server_new(d.loop, d.hub, &hp, err, sizeof(err));
    if (d.http == NULL) {
        fprintf(stderr, "pollcast: %s\n", err);
        goto out;
    }
    unsigned port = http_server_port(d.http);
    /* The demo upstream is this server's own /_demo/upstream.json: known once bound. */
    for (size_t i = 0; i < cfg.n_upstreams; i++)
        if (strcmp(cfg.upstreams[i].url, CONFIG_DEMO_URL) == 0) {
            w.demo_urls[i] = demo_url(&cfg.server.listen, port);
            if (w.demo_urls[i] == NULL)
                goto out;
            w.streams[i].spec.poll.url = w.demo_urls[i];
        }
    log_msg(LOG_INFO, "pollcast %s listening on %s port %u (%zu upstreams)", POLLCAST_VERSION,
            cfg.server.listen.host, port, cfg.n_upstreams);
    /* Tests and scripts wait for this line on stdout. */
    printf("listening on port %u\n", port);
    fflush(stdout);
    rc = loop_run(d.loop) == 0 ? 0 : 1;
    log_msg(LOG_INFO, "stopped");
out:
    http_server_free(d.http);
    hub_free(d.hub);
    upstream_pool_free(d.pool);
    loop_timer_free(d.shutdown_timer);
    if (d.sigfd >= 0) {
        if (d.loop)
            loop_unwatch(d.loop, d.sigfd);
        close(d.sigfd);
    }
    loop_free(d.loop);
    wiring_dispose(&w, cfg.n_upstreams);
    config_dispose(&cfg);
    return rc;
}

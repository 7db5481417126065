/* sseload: an SSE load client in one process. Opens N connections to one or more URLs at a given
 * connect rate on an epoll loop, parses the (chunked) event streams, and reports per event the
 * delivery latency from the time the payload says it was made ("t_us", wall-clock microseconds,
 * on this machine's clock), events/s, bytes/s, connect times, errors and convergence (the last
 * "seq" every connection saw). Loopback only: it refuses any other address. Bounded by
 * --duration. Prints one JSON object on stdout at the end. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum state { ST_CONNECTING, ST_HEADERS, ST_BODY, ST_DONE };

struct conn {
    int fd;
    enum state st;
    unsigned path; /* index into the path list */
    uint64_t t_start_us, t_connected_us;
    /* Raw bytes not yet consumed (headers, chunk framing). */
    char *raw;
    size_t rlen, rcap;
    /* Dechunked stream bytes not yet parsed into lines. */
    char *sbuf;
    size_t slen, scap;
    int chunked;
    size_t chunk_left; /* bytes left in the current chunk; 0: a size line comes next */
    int chunk_crlf;    /* CRLF after chunk data still to skip (bytes) */
    /* The event being parsed. */
    int ev_has_data;
    int ev_is_data; /* event: data (a snapshot) */
    int64_t ev_seq, ev_tus;
    int64_t ev_id; /* sequence part of the id when it has the pollcast form, else -1 */
    /* Per connection results. */
    uint64_t events;
    int64_t last_seq;
    int64_t last_id;
    char last_id_str[72]; /* the last id: line as received, sent back as Last-Event-ID */
    /* The reconnect storm: dropped on SIGUSR1, reconnected on SIGUSR2. */
    uint8_t dropped, reconnecting, rc_headers, rc_first;
    int64_t seq_before; /* last_seq when dropped */
};

struct opts {
    const char *host;
    unsigned port;
    char **paths;
    unsigned npaths;
    unsigned n;
    double rate;
    double duration;
    double settle;
    unsigned src_ips;
    int pids[8];
    unsigned npids;
    int http10;
    double quiet_end; /* stop this long before the end is not needed: kept simple */
    double reconnect_rate;
};

static struct opts o = {.host = "127.0.0.1",
                        .rate = 2000,
                        .duration = 30,
                        .settle = 1,
                        .src_ips = 1,
                        .reconnect_rate = 10000};

static volatile sig_atomic_t stop_requested, drop_requested, reconnect_requested;

/* --idle-priority: SCHED_IDLE, and a yield of the CPU every YIELD_EVERY events (see main). */
static int idle_priority;
#define YIELD_EVERY 32

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_storm(int sig)
{
    if (sig == SIGUSR1)
        drop_requested = 1;
    else
        reconnect_requested = 1;
}

static uint64_t now_us(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sseload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- results ---- */

struct u32vec {
    uint32_t *v;
    size_t n, cap;
};

static void vec_push(struct u32vec *a, uint32_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4096;
        a->v = realloc(a->v, a->cap * sizeof(*a->v));
        if (a->v == NULL)
            die("out of memory");
    }
    a->v[a->n++] = x;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(const struct u32vec *a, double p)
{
    if (a->n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(a->n - 1) + 0.5);
    return a->v[i];
}

static struct {
    struct u32vec lat_us;  /* events in the window: from t_us to the kernel's receive
                            * timestamp of the bytes */
    struct u32vec ulat_us; /* the same to the time this process read them */
    uint64_t no_kernel_ts;
    struct u32vec connect_us; /* connect() to response headers */
    uint64_t events, events_window, bytes_window, data_events, keepalives, id_gaps;
    uint64_t err_connect, err_http, err_closed, err_parse, err_timeout;
    uint64_t connected, neg_latency;
    int window_open, window_closed;
    uint64_t win_start_us, win_end_us;
    double self_cpu_win0;
} R;

/* The reconnect storm (SIGUSR1: every streaming connection drops; SIGUSR2: they reconnect with
 * Last-Event-ID at --reconnect-rate). A reconnected stream's first event tells how it resumed:
 * a snapshot (event: data, fresh data), the event after the last one it had (resumed, nothing
 * lost), a later one (events lost), or one it had already (duplicates). */
static struct {
    uint64_t drop_us, reconnect_us, all_headers_us, all_first_us;
    unsigned dropped, reconnected, failed, first_events;
    uint64_t fresh, resumed, lost_conns, lost_events, dup;
    struct u32vec connect_us;
} S;

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- /proc sampling of the server under test ---- */

struct proc_sample {
    uint64_t ticks; /* utime + stime */
    uint64_t uticks;
    uint64_t rss_kb, pss_kb;
};

static int read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

static void sample_pid(int pid, struct proc_sample *s)
{
    char path[64], buf[8192];
    memset(s, 0, sizeof(*s));
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (read_file(path, buf, sizeof(buf)) > 0) {
        char *p = strrchr(buf, ')');
        /* Fields after the command: state is field 3; utime 14, stime 15. */
        int field = 2;
        unsigned long long ut = 0, st = 0;
        for (char *q = p ? p + 1 : buf; *q; q++)
            if (*q == ' ') {
                field++;
                if (field == 14)
                    ut = strtoull(q + 1, NULL, 10);
                else if (field == 15)
                    st = strtoull(q + 1, NULL, 10);
            }
        s->ticks = ut + st;
        s->uticks = ut;
    }
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    if (read_file(path, buf, sizeof(buf)) > 0) {
        char *p = strstr(buf, "\nRss:");
        if (p)
            s->rss_kb = strtoull(p + 5, NULL, 10);
        p = strstr(buf, "\nPss:");
        if (p)
            s->pss_kb = strtoull(p + 5, NULL, 10);
    }
}

static void sample_all(struct proc_sample *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < o.npids; i++) {
        struct proc_sample s;
        sample_pid(o.pids[i], &s);
        sum->ticks += s.ticks;
        sum->uticks += s.uticks;
        sum->rss_kb += s.rss_kb;
        sum->pss_kb += s.pss_kb;
    }
}

/* ---- SSE parsing ---- */

/* Finds the first number after key in [p, end): "seq" matches "seq":5 and "/seq","value":5. */
static int64_t find_num(const char *p, const char *end, const char *key)
{
    size_t kl = strlen(key);
    const char *k = memmem(p, (size_t)(end - p), key, kl);
    if (k == NULL)
        return -1;
    const char *q = k + kl;
    /* Skip to the first digit within a short distance (the patch form has ,"value": between). */
    const char *lim = q + 16 < end ? q + 16 : end;
    while (q < lim && !isdigit((unsigned char)*q))
        q++;
    if (q >= lim)
        return -1;
    int64_t v = 0;
    while (q < end && isdigit((unsigned char)*q))
        v = v * 10 + (*q++ - '0');
    return v;
}

static int64_t parse_b36(const char *p, const char *end)
{
    int64_t v = 0;
    if (p >= end)
        return -1;
    for (; p < end; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'z')
            d = *p - 'a' + 10;
        else
            return -1;
        v = v * 36 + d;
    }
    return v;
}

/* Receive times of the bytes being parsed: the kernel's software timestamp (when they reached
 * the socket; 0 when the kernel gave none) and when this process read them. */
static uint64_t cur_kernel_us, cur_user_us;

static void dispatch_event(struct conn *c, uint64_t recv_us)
{
    if (!c->ev_has_data)
        goto reset;
    R.events++;
    c->events++;
    if (c->ev_is_data)
        R.data_events++;
    if (c->ev_id >= 0) {
        if (!c->ev_is_data && c->last_id >= 0 && c->ev_id != c->last_id + 1)
            R.id_gaps++;
        c->last_id = c->ev_id;
    }
    if (c->reconnecting && !c->rc_first && (c->ev_is_data || c->ev_seq >= 0)) {
        c->rc_first = 1;
        if (c->ev_is_data)
            S.fresh++;
        else if (c->ev_seq == c->seq_before + 1)
            S.resumed++;
        else if (c->ev_seq > c->seq_before + 1) {
            S.lost_conns++;
            S.lost_events += (uint64_t)(c->ev_seq - c->seq_before - 1);
        } else
            S.dup++;
        if (++S.first_events == S.dropped)
            S.all_first_us = now_us(CLOCK_MONOTONIC);
    }
    if (c->ev_seq >= 0)
        c->last_seq = c->ev_seq;
    /* Events that arrive in the window count; a connection's first event is only counted when
     * it arrives there (before, it is the snapshot a new subscriber gets). */
    if (R.window_open && !R.window_closed) {
        R.events_window++;
        if (c->ev_tus > 0) {
            uint64_t k = cur_kernel_us ? cur_kernel_us : recv_us;
            if (!cur_kernel_us)
                R.no_kernel_ts++;
            int64_t lat = (int64_t)k - c->ev_tus;
            if (lat < 0) {
                R.neg_latency++;
                lat = 0;
            }
            vec_push(&R.lat_us, lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat);
            lat = (int64_t)cur_user_us - c->ev_tus;
            vec_push(&R.ulat_us, lat < 0 ? 0 : lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat);
        }
    }
reset:
    c->ev_has_data = 0;
    c->ev_is_data = 0;
    c->ev_seq = -1;
    c->ev_tus = -1;
    c->ev_id = -1;
}

static void parse_line(struct conn *c, const char *l, size_t n, uint64_t recv_us)
{
    if (n == 0) {
        dispatch_event(c, recv_us);
        return;
    }
    if (l[0] == ':') {
        R.keepalives++;
        return;
    }
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    if (v < l + n && *v == ' ')
        v++;
    const char *end = l + n;
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        c->ev_has_data = 1;
        int64_t s = find_num(v, end, "seq\"");
        if (s >= 0 && c->ev_seq < 0)
            c->ev_seq = s;
        int64_t t = find_num(v, end, "t_us\"");
        if (t >= 0 && c->ev_tus < 0)
            c->ev_tus = t;
    } else if (fl == 5 && memcmp(l, "event", 5) == 0) {
        c->ev_is_data = (end - v == 4 && memcmp(v, "data", 4) == 0);
    } else if (fl == 2 && memcmp(l, "id", 2) == 0) {
        size_t il = (size_t)(end - v);
        if (il < sizeof(c->last_id_str)) {
            memcpy(c->last_id_str, v, il);
            c->last_id_str[il] = '\0';
        }
        const char *dot = memchr(v, '.', (size_t)(end - v));
        c->ev_id = dot ? parse_b36(dot + 1, end) : -1;
    }
}

/* Parses complete lines of the stream buffer. */
static void parse_stream(struct conn *c, uint64_t recv_us)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->sbuf + start, '\n', c->slen - start);
        if (nl == NULL)
            break;
        size_t n = (size_t)(nl - (c->sbuf + start));
        if (n > 0 && c->sbuf[start + n - 1] == '\r')
            n--;
        parse_line(c, c->sbuf + start, n, recv_us);
        start = (size_t)(nl - c->sbuf) + 1;
    }
    if (start) {
        memmove(c->sbuf, c->sbuf + start, c->slen - start);
        c->slen -= start;
    }
}

static void append(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + n)
            nc *= 2;
        *b = realloc(*b, nc);
        if (*b == NULL)
            die("out of memory");
        *cap = nc;
    }
    memcpy(*b + *len, p, n);
    *len += n;
}

static void conn_close(struct conn *c, int epfd)
{
    if (c->reconnecting && !c->rc_headers && c->st != ST_DONE) {
        S.failed++;
        c->reconnecting = 0;
        if (S.reconnected + S.failed == S.dropped)
            S.all_headers_us = now_us(CLOCK_MONOTONIC);
    }
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->st = ST_DONE;
    free(c->raw);
    free(c->sbuf);
    c->raw = c->sbuf = NULL;
    c->rlen = c->rcap = c->slen = c->scap = 0;
}

/* Takes body bytes: dechunks them into the stream buffer. Returns -1 on a framing error. */
static int take_body(struct conn *c, const char *p, size_t n)
{
    if (!c->chunked) {
        append(&c->sbuf, &c->slen, &c->scap, p, n);
        return 0;
    }
    /* Keep raw bytes only while a chunk-size line is incomplete. */
    append(&c->raw, &c->rlen, &c->rcap, p, n);
    size_t i = 0;
    while (i < c->rlen) {
        if (c->chunk_crlf) {
            size_t k = c->rlen - i < (size_t)c->chunk_crlf ? c->rlen - i : (size_t)c->chunk_crlf;
            i += k;
            c->chunk_crlf -= (int)k;
            continue;
        }
        if (c->chunk_left == 0) {
            char *nl = memchr(c->raw + i, '\n', c->rlen - i);
            if (nl == NULL)
                break;
            char *e;
            unsigned long sz = strtoul(c->raw + i, &e, 16);
            if (e == c->raw + i)
                return -1;
            i = (size_t)(nl - c->raw) + 1;
            if (sz == 0)
                return -1; /* the stream ended */
            c->chunk_left = sz;
            continue;
        }
        size_t k = c->rlen - i < c->chunk_left ? c->rlen - i : c->chunk_left;
        append(&c->sbuf, &c->slen, &c->scap, c->raw + i, k);
        i += k;
        c->chunk_left -= k;
        if (c->chunk_left == 0)
            c->chunk_crlf = 2;
    }
    memmove(c->raw, c->raw + i, c->rlen - i);
    c->rlen -= i;
    return 0;
}

/* Response headers complete in raw: checks the status, notes chunking, passes the rest on. */
static int take_headers(struct conn *c, uint64_t t_us)
{
    char *end = memmem(c->raw, c->rlen, "\r\n\r\n", 4);
    if (end == NULL)
        return c->rlen > 65536 ? -1 : 0;
    size_t hl = (size_t)(end - c->raw) + 4;
    int status = 0;
    if (c->rlen > 12 && memcmp(c->raw, "HTTP/1.", 7) == 0)
        status = atoi(c->raw + 9);
    if (status != 200) {
        R.err_http++;
        return -1;
    }
    c->chunked = 0;
    for (char *l = memchr(c->raw, '\n', hl); l && l < end; l = memchr(l + 1, '\n', hl)) {
        if (strncasecmp(l + 1, "transfer-encoding:", 18) == 0) {
            char *v = l + 19;
            while (*v == ' ')
                v++;
            if (strncasecmp(v, "chunked", 7) == 0)
                c->chunked = 1;
        }
    }
    c->st = ST_BODY;
    c->t_connected_us = t_us;
    if (c->reconnecting) {
        c->rc_headers = 1;
        vec_push(&S.connect_us, (uint32_t)(t_us - c->t_start_us));
        if (++S.reconnected + S.failed == S.dropped)
            S.all_headers_us = t_us;
    } else {
        R.connected++;
        vec_push(&R.connect_us, (uint32_t)(t_us - c->t_start_us));
    }
    size_t rest = c->rlen - hl;
    char *tmp = NULL;
    if (rest) {
        tmp = malloc(rest);
        if (tmp == NULL)
            die("out of memory");
        memcpy(tmp, c->raw + hl, rest);
    }
    c->rlen = 0;
    int rc = rest ? take_body(c, tmp, rest) : 0;
    free(tmp);
    return rc;
}

/* Opens connection c (index idx, for its source address) and registers it. On failure c is
 * closed and counted as a connect error. */
static void conn_start(struct conn *c, int epfd, const struct sockaddr_in *dst, unsigned idx)
{
    c->ev_seq = c->ev_tus = c->ev_id = -1;
    c->ev_has_data = c->ev_is_data = 0;
    c->chunk_left = 0;
    c->chunk_crlf = 0;
    c->rc_headers = c->rc_first = 0;
    c->t_start_us = now_us(CLOCK_MONOTONIC);
    c->st = ST_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        R.err_connect++;
        conn_close(c, epfd);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int tsf = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPING, &tsf, sizeof(tsf));
    if (o.src_ips > 1) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + idx % o.src_ips);
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            R.err_connect++;
            conn_close(c, epfd);
            return;
        }
    }
    if (connect(c->fd, (const struct sockaddr *)dst, sizeof(*dst)) != 0 && errno != EINPROGRESS) {
        R.err_connect++;
        conn_close(c, epfd);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: sseload --url http://127.0.0.1:PORT/PATH [--url ...] [-n CONNS] [--rate "
        "CONN_PER_S]\n"
        "               [--duration S] [--settle S] [--src-ips K] [--pid PID ...]\n"
        "               [--reconnect-rate CONN_PER_S] [--idle-priority]\n"
        "--idle-priority runs sseload as SCHED_IDLE and yields the CPU every 32 events: it takes\n"
        "little CPU time the server wants.\n"
        "SIGUSR1 drops every streaming connection; SIGUSR2 reconnects them with Last-Event-ID.\n"
        "URLs are used round-robin; %%d in a URL becomes the connection index modulo --paths M.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char *urls[64];
    unsigned nurls = 0, mod = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--idle-priority") == 0) {
            /* The server under test and this client share the machine's CPUs; real
             * subscribers are elsewhere. SCHED_IDLE runs the client only on CPU time the
             * server does not want, so that it does not delay the deliveries it measures. The
             * kernel's receive timestamps keep its own late reads out of the latency. */
            struct sched_param sp = {.sched_priority = 0};
            if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
                die("--idle-priority: sched_setscheduler(SCHED_IDLE): %s", strerror(errno));
            idle_priority = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        if (strcmp(a, "--url") == 0 && nurls < 64)
            urls[nurls++] = argv[++i];
        else if (strcmp(a, "-n") == 0)
            o.n = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--rate") == 0)
            o.rate = strtod(argv[++i], NULL);
        else if (strcmp(a, "--duration") == 0)
            o.duration = strtod(argv[++i], NULL);
        else if (strcmp(a, "--settle") == 0)
            o.settle = strtod(argv[++i], NULL);
        else if (strcmp(a, "--reconnect-rate") == 0)
            o.reconnect_rate = strtod(argv[++i], NULL);
        else if (strcmp(a, "--src-ips") == 0)
            o.src_ips = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--paths") == 0)
            mod = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--pid") == 0 && o.npids < 8)
            o.pids[o.npids++] = atoi(argv[++i]);
        else
            usage();
    }
    if (nurls == 0 || o.n == 0 || o.duration <= 0 || o.duration > 600 || o.src_ips == 0 ||
        o.src_ips > 250)
        usage();
    /* Host and port from the first URL; every URL must name the same loopback server. */
    unsigned port = 0;
    for (unsigned u = 0; u < nurls; u++) {
        char host[64];
        unsigned p;
        int off = 0;
        if (sscanf(urls[u], "http://%63[^:/]:%u%n", host, &p, &off) != 2 || urls[u][off] != '/')
            die("bad url %s", urls[u]);
        struct in_addr ia;
        if (inet_pton(AF_INET, host, &ia) != 1 || (ntohl(ia.s_addr) >> 24) != 127)
            die("%s: only 127.0.0.0/8 addresses are allowed", urls[u]);
        if (u == 0) {
            o.host = strdup(host);
            port = p;
        } else if (p != port || strcmp(host, o.host) != 0) {
            die("all URLs must name one server");
        }
        urls[u] += off;
    }
    /* Expand the paths: URL u, with %d replaced by k for k < mod. */
    unsigned per = mod ? mod : 1;
    o.npaths = nurls * per;
    o.paths = calloc(o.npaths, sizeof(*o.paths));
    for (unsigned u = 0; u < nurls; u++)
        for (unsigned k = 0; k < per; k++) {
            char path[1024];
            if (mod)
                snprintf(path, sizeof(path), urls[u], k);
            else
                snprintf(path, sizeof(path), "%s", urls[u]);
            char *req;
            if (asprintf(&req,
                         "GET %s HTTP/1.1\r\nHost: %s:%u\r\nAccept: text/event-stream\r\n"
                         "Cache-Control: no-cache\r\n\r\n",
                         path, o.host, port) < 0)
                die("out of memory");
            o.paths[u * per + k] = req;
        }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < o.n + 16)
            die("open files limit %llu is below %u connections", (unsigned long long)rl.rlim_cur,
                o.n);
    }

    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, o.host, &dst.sin_addr);

    struct conn *conns = calloc(o.n, sizeof(*conns));
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || epfd < 0)
        die("setup failed");
    static char rbuf[1 << 17];
    struct epoll_event evs[1024];
    long hz = sysconf(_SC_CLK_TCK);

    struct proc_sample p_before, p_connected, p_win0, p_win1, p_peak = {0};
    sample_all(&p_before);
    uint64_t t0 = now_us(CLOCK_MONOTONIC);
    uint64_t t_end = t0 + (uint64_t)(o.duration * 1e6);
    uint64_t t_all_connected = 0;
    unsigned started = 0, failed_final = 0;
    uint64_t last_sample = 0, last_progress = 0;
    unsigned reconnect_next = 0, reconnect_done = 0;

    /* SIGTERM or SIGINT end the run early, with a report. */
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction ss = {.sa_handler = on_storm};
    sigaction(SIGUSR1, &ss, NULL);
    sigaction(SIGUSR2, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop_requested && now_us(CLOCK_MONOTONIC) < t_end) {
        uint64_t tm = now_us(CLOCK_MONOTONIC);
        /* Start the connections that are due. */
        uint64_t due = (uint64_t)((double)(tm - t0) / 1e6 * o.rate) + 1;
        while (started < o.n && started < due) {
            struct conn *c = &conns[started];
            c->path = started % o.npaths;
            c->last_seq = -1;
            c->last_id = -1;
            conn_start(c, epfd, &dst, started);
            started++;
        }
        if (drop_requested) {
            /* The storm: every streaming connection goes away at once. */
            drop_requested = 0;
            S.drop_us = tm;
            for (unsigned i = 0; i < started; i++)
                if (conns[i].st == ST_BODY) {
                    conn_close(&conns[i], epfd);
                    conns[i].dropped = 1;
                    conns[i].seq_before = conns[i].last_seq;
                    S.dropped++;
                }
            fprintf(stderr, "dropped %u\n", S.dropped);
        }
        if (reconnect_requested && S.reconnect_us == 0) {
            S.reconnect_us = tm;
            if (S.dropped == 0)
                S.all_headers_us = S.all_first_us = tm;
        }
        if (S.reconnect_us) {
            uint64_t rdue = (uint64_t)((double)(tm - S.reconnect_us) / 1e6 * o.reconnect_rate) + 1;
            while (reconnect_next < started && reconnect_done < rdue) {
                struct conn *c = &conns[reconnect_next++];
                if (!c->dropped)
                    continue;
                c->dropped = 0;
                c->reconnecting = 1;
                reconnect_done++;
                conn_start(c, epfd, &dst, reconnect_next - 1);
            }
        }
        /* The measurement window opens once every connection is up (or given up on). */
        if (!R.window_open && started == o.n &&
            R.connected + R.err_connect + R.err_http + R.err_closed + R.err_parse >= o.n) {
            if (t_all_connected == 0) {
                t_all_connected = tm;
                sample_all(&p_connected);
            }
            if (tm >= t_all_connected + (uint64_t)(o.settle * 1e6)) {
                R.window_open = 1;
                R.win_start_us = tm;
                sample_all(&p_win0);
                R.self_cpu_win0 = self_cpu_s();
                /* The driver starts changing the document when it reads this. */
                fprintf(stderr, "ready\n");
                fflush(stderr);
            }
        }
        if (R.window_open && tm - last_progress > 250000) {
            /* Where the connections are, for a driver that waits for convergence. */
            int64_t mx = -1;
            unsigned alive = 0, at = 0;
            for (unsigned i = 0; i < started; i++)
                if (conns[i].st == ST_BODY) {
                    alive++;
                    if (conns[i].last_seq > mx) {
                        mx = conns[i].last_seq;
                        at = 0;
                    }
                    if (conns[i].last_seq == mx)
                        at++;
                }
            fprintf(stderr, "progress %lld %u %u\n", (long long)mx, at, alive);
            last_progress = tm;
        }
        if (R.window_open && tm - last_sample > 1000000) {
            struct proc_sample s;
            sample_all(&s);
            if (s.rss_kb > p_peak.rss_kb)
                p_peak = s;
            last_sample = tm;
        }
        int timeout = started < o.n || (S.reconnect_us && reconnect_next < started) ? 1 : 50;
        int n = epoll_wait(epfd, evs, 1024, timeout);
        uint64_t recv_wall = now_us(CLOCK_REALTIME);
        uint64_t recv_mono = now_us(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++) {
            /* SCHED_IDLE alone does not keep this client off a CPU the server wants: under the
             * kernel's EEVDF scheduler a runnable SCHED_IDLE task is picked whenever the thread
             * beside it has run past its fair share and the CPU is re-picked, and then keeps it
             * until the next tick (4 ms at HZ=250) or wake-up there. In sched_switch traces of
             * 10,000 subscribers and 2 I/O threads this client ran 1.0-6.0 ms of a sending
             * thread's CPU per change; yielding every 32 events, 0.4-1.2 ms. With nothing else
             * runnable the yield returns at once. */
            if (idle_priority && i % YIELD_EVERY == 0)
                sched_yield();
            struct conn *c = evs[i].data.ptr;
            if (c->st == ST_DONE)
                continue;
            if (c->st == ST_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    R.err_connect++;
                    conn_close(c, epfd);
                    continue;
                }
                const char *req = o.paths[c->path];
                char rbuf2[1200];
                if (c->reconnecting && c->last_id_str[0]) {
                    /* The same request with Last-Event-ID before the blank line. */
                    int k = snprintf(rbuf2, sizeof(rbuf2), "%.*sLast-Event-ID: %s\r\n\r\n",
                                     (int)(strlen(req) - 2), req, c->last_id_str);
                    if (k > 0 && (size_t)k < sizeof(rbuf2))
                        req = rbuf2;
                }
                size_t rl2 = strlen(req);
                if (write(c->fd, req, rl2) != (ssize_t)rl2) {
                    R.err_connect++;
                    conn_close(c, epfd);
                    continue;
                }
                c->st = ST_HEADERS;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            for (;;) {
                char cbuf[256];
                struct iovec iov = {.iov_base = rbuf, .iov_len = sizeof(rbuf)};
                struct msghdr mh = {.msg_iov = &iov,
                                    .msg_iovlen = 1,
                                    .msg_control = cbuf,
                                    .msg_controllen = sizeof(cbuf)};
                ssize_t r = recvmsg(c->fd, &mh, 0);
                cur_kernel_us = 0;
                cur_user_us = recv_wall;
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); r > 0 && cm;
                     cm = CMSG_NXTHDR(&mh, cm))
                    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING) {
                        struct scm_timestamping ts;
                        memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
                        cur_kernel_us = (uint64_t)ts.ts[0].tv_sec * 1000000u +
                                        (uint64_t)ts.ts[0].tv_nsec / 1000u;
                    }
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                if (r <= 0) {
                    if (c->st == ST_HEADERS)
                        R.err_http++;
                    else
                        R.err_closed++;
                    conn_close(c, epfd);
                    break;
                }
                if (R.window_open && !R.window_closed)
                    R.bytes_window += (uint64_t)r;
                int rc;
                if (c->st == ST_HEADERS) {
                    append(&c->raw, &c->rlen, &c->rcap, rbuf, (size_t)r);
                    rc = take_headers(c, recv_mono);
                } else {
                    rc = take_body(c, rbuf, (size_t)r);
                }
                if (rc != 0) {
                    if (c->st == ST_BODY)
                        R.err_parse++;
                    conn_close(c, epfd);
                    break;
                }
                if (c->st == ST_BODY)
                    parse_stream(c, recv_wall);
                if ((size_t)r < sizeof(rbuf))
                    break;
            }
        }
    }
    R.window_closed = 1;
    R.win_end_us = now_us(CLOCK_MONOTONIC);
    sample_all(&p_win1);
    if (p_win1.rss_kb > p_peak.rss_kb)
        p_peak = p_win1;

    /* Convergence: the last seq each live connection saw. */
    int64_t max_seq = -1, min_seq = -1;
    unsigned alive = 0, at_max = 0, no_events = 0;
    for (unsigned i = 0; i < started; i++) {
        struct conn *c = &conns[i];
        if (c->st == ST_DONE) {
            failed_final++;
            continue;
        }
        if (c->st != ST_BODY)
            continue;
        alive++;
        if (c->events == 0)
            no_events++;
        if (c->last_seq > max_seq)
            max_seq = c->last_seq;
    }
    for (unsigned i = 0; i < started; i++) {
        struct conn *c = &conns[i];
        if (c->st != ST_BODY)
            continue;
        if (c->last_seq == max_seq)
            at_max++;
        if (min_seq < 0 || c->last_seq < min_seq)
            min_seq = c->last_seq;
    }

    qsort(R.lat_us.v, R.lat_us.n, sizeof(uint32_t), cmp_u32);
    qsort(R.ulat_us.v, R.ulat_us.n, sizeof(uint32_t), cmp_u32);
    qsort(R.connect_us.v, R.connect_us.n, sizeof(uint32_t), cmp_u32);
    double win = R.window_open ? (double)(R.win_end_us - R.win_start_us) / 1e6 : 0;
    double ramp = t_all_connected ? (double)(t_all_connected - t0) / 1e6 : -1;
    printf("{\"conns\":%u,\"connected\":%llu,\"alive_at_end\":%u,\"ramp_s\":%.2f,"
           "\"connect_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"errors\":{\"connect\":%llu,\"http\":%llu,\"closed\":%llu,\"parse\":%llu},"
           "\"window_s\":%.2f,\"events\":%llu,\"events_window\":%llu,\"events_per_s\":%.1f,"
           "\"bytes_per_s\":%.0f,\"data_events\":%llu,\"keepalives\":%llu,\"id_gaps\":%llu,"
           "\"latency_ms\":{\"n\":%zu,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"latency_read_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"negative_latency\":%llu,\"no_kernel_ts\":%llu,"
           "\"seq\":{\"max\":%lld,\"min\":%lld,\"at_max\":%u,\"no_events\":%u}",
           o.n, (unsigned long long)R.connected, alive, ramp, pct(&R.connect_us, 50) / 1e3,
           pct(&R.connect_us, 99) / 1e3,
           R.connect_us.n ? R.connect_us.v[R.connect_us.n - 1] / 1e3 : 0.0,
           (unsigned long long)R.err_connect, (unsigned long long)R.err_http,
           (unsigned long long)R.err_closed, (unsigned long long)R.err_parse, win,
           (unsigned long long)R.events, (unsigned long long)R.events_window,
           win > 0 ? (double)R.events_window / win : 0.0,
           win > 0 ? (double)R.bytes_window / win : 0.0, (unsigned long long)R.data_events,
           (unsigned long long)R.keepalives, (unsigned long long)R.id_gaps, R.lat_us.n,
           pct(&R.lat_us, 50) / 1e3, pct(&R.lat_us, 90) / 1e3, pct(&R.lat_us, 99) / 1e3,
           R.lat_us.n ? R.lat_us.v[R.lat_us.n - 1] / 1e3 : 0.0, pct(&R.ulat_us, 50) / 1e3,
           pct(&R.ulat_us, 99) / 1e3, R.ulat_us.n ? R.ulat_us.v[R.ulat_us.n - 1] / 1e3 : 0.0,
           (unsigned long long)R.neg_latency, (unsigned long long)R.no_kernel_ts,
           (long long)max_seq, (long long)min_seq, at_max, no_events);
    if (o.npids) {
        double cpu = win > 0 ? (double)(p_win1.ticks - p_win0.ticks) / (double)hz / win * 100 : 0;
        double ucpu =
            win > 0 ? (double)(p_win1.uticks - p_win0.uticks) / (double)hz / win * 100 : 0;
        printf(",\"proc\":{\"cpu_pct\":%.1f,\"cpu_user_pct\":%.1f,\"rss_before_kb\":%llu,\"rss_"
               "connected_kb\":%llu,"
               "\"rss_end_kb\":%llu,\"rss_peak_kb\":%llu,\"pss_before_kb\":%llu,"
               "\"pss_connected_kb\":%llu,\"pss_end_kb\":%llu}",
               cpu, ucpu, (unsigned long long)p_before.rss_kb,
               (unsigned long long)p_connected.rss_kb, (unsigned long long)p_win1.rss_kb,
               (unsigned long long)p_peak.rss_kb, (unsigned long long)p_before.pss_kb,
               (unsigned long long)p_connected.pss_kb, (unsigned long long)p_win1.pss_kb);
    }
    /* The client's own CPU over the whole run: when it nears 100% of a core, the client and not
     * the server bounds what is measured. */
    printf(",\"client_cpu_pct\":%.1f",
           win > 0 ? (self_cpu_s() - R.self_cpu_win0) / win * 100 : 0.0);
    if (S.drop_us) {
        qsort(S.connect_us.v, S.connect_us.n, sizeof(uint32_t), cmp_u32);
        double back = S.reconnect_us && S.all_headers_us
                          ? (double)(S.all_headers_us - S.reconnect_us) / 1e6
                          : -1;
        double first =
            S.reconnect_us && S.all_first_us ? (double)(S.all_first_us - S.reconnect_us) / 1e6 : -1;
        printf(",\"storm\":{\"dropped\":%u,\"reconnected\":%u,\"failed\":%u,"
               "\"away_s\":%.2f,\"streaming_again_s\":%.3f,\"all_first_event_s\":%.3f,"
               "\"first_events\":%u,\"fresh\":%llu,\"resumed\":%llu,\"lost_conns\":%llu,"
               "\"lost_events\":%llu,\"duplicates\":%llu,"
               "\"connect_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f}}",
               S.dropped, S.reconnected, S.failed,
               S.reconnect_us ? (double)(S.reconnect_us - S.drop_us) / 1e6 : -1.0, back, first,
               S.first_events, (unsigned long long)S.fresh, (unsigned long long)S.resumed,
               (unsigned long long)S.lost_conns, (unsigned long long)S.lost_events,
               (unsigned long long)S.dup, pct(&S.connect_us, 50) / 1e3,
               pct(&S.connect_us, 99) / 1e3,
               S.connect_us.n ? S.connect_us.v[S.connect_us.n - 1] / 1e3 : 0.0);
    }
    printf("}\n");
    (void)failed_final;
    for (unsigned i = 0; i < started; i++)
        if (conns[i].st != ST_DONE)
            conn_close(&conns[i], epfd);
    return 0;
}

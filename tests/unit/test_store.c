/* Unit tests of the stores: epochs, the ring, the memory store's ops, the Redis store's topic
 * key derivation and [cluster] redis URL parsing, and the Redis store's lease and fenced append
 * against a real redis-server that the test starts (unix socket, no persistence) and stops. */
#include "harness.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hub.h"
#include "loop.h"
#include "store/store.h"

extern char **environ;

static struct frame *mkframe(uint64_t epoch, uint64_t seq, const char *event, const char *json)
{
    char id[40];
    char text[512];
    hub_format_id(id, epoch, seq);
    int n = seq ? snprintf(text, sizeof(text), "id: %s\nevent: %s\ndata: %s\n\n", id, event, json)
                : snprintf(text, sizeof(text), "event: %s\ndata: %s\n\n", event, json);
    struct frame *f = malloc(sizeof(*f));
    f->refs = 1;
    f->len = (size_t)n;
    f->seq = seq;
    f->time_ms = 0;
    f->data = malloc((size_t)n);
    memcpy(f->data, text, (size_t)n);
    return f;
}

/* ---- epochs and the ring ---- */

static void test_epoch(void)
{
    uint64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t e = store_epoch_new();
        CHECK(e > prev);
        prev = e;
    }
    /* Twelve base36 digits at most, as hub_parse_id reads them. */
    char id[40];
    hub_format_id(id, prev, 1);
    uint64_t e2, s2;
    CHECK_INT(hub_parse_id(id, &e2, &s2), 0);
    CHECK(e2 == prev);
    /* The low 20 bits are random: two epochs made in the same millisecond by two processes
     * differ there; within this process they only increase. */
    CHECK((prev >> 20) >= loop_wall_ms() - 10000);
}

struct pushed {
    uint64_t seqs[64];
    size_t n;
};

static void push_rec(void *arg, struct frame *f)
{
    struct pushed *p = arg;
    p->seqs[p->n++] = f->seq;
}

static void test_ring(void)
{
    struct loop *loop = loop_new();
    REQUIRE(loop != NULL);
    struct store_params sp = {.history_events = 4, .history_bytes = 1000};
    struct store_ring r;
    REQUIRE(store_ring_init(&r, loop, &sp) == 0);
    store_ring_reset(&r, 1);
    struct pushed p = {0};
    CHECK_INT(store_ring_history(&r, 1, push_rec, &p), 0); /* current: nothing to replay */
    CHECK_INT(p.n, 0);
    CHECK_INT(store_ring_history(&r, 0, push_rec, &p), -1);
    CHECK_INT(store_ring_history(&r, 2, push_rec, &p), -1); /* from the future */
    for (uint64_t s = 2; s <= 7; s++) {
        struct frame *f = mkframe(9, s, "patch", "[]");
        store_ring_push(&r, f);
        frame_unref(f);
    }
    CHECK_INT(r.count, 4);
    CHECK_INT(r.last, 7);
    p.n = 0;
    CHECK_INT(store_ring_history(&r, 4, push_rec, &p), 0);
    CHECK_INT(p.n, 3);
    CHECK_INT(p.seqs[0], 5);
    CHECK_INT(p.seqs[2], 7);
    p.n = 0;
    CHECK_INT(store_ring_history(&r, 3, push_rec, &p), 0); /* 4..7 are kept */
    CHECK_INT(p.n, 4);
    CHECK_INT(store_ring_history(&r, 2, push_rec, &p), -1); /* 3 fell out */
    /* A frame that does not follow empties the ring: no gap is ever replayed. */
    struct frame *g = mkframe(9, 10, "patch", "[]");
    store_ring_push(&r, g);
    frame_unref(g);
    CHECK_INT(r.count, 0);
    CHECK_INT(r.last, 10);
    p.n = 0;
    CHECK_INT(store_ring_history(&r, 7, push_rec, &p), -1);
    CHECK_INT(store_ring_history(&r, 10, push_rec, &p), 0);
    /* Bytes bound. */
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (uint64_t s = 11; s <= 13; s++) {
        struct frame *f = mkframe(9, s, "patch", big);
        store_ring_push(&r, f);
        frame_unref(f);
    }
    CHECK(r.bytes <= 1000);
    CHECK_INT(r.count, 2);
    store_ring_dispose(&r);
    loop_free(loop);
}

/* ---- a fake hub ---- */

struct fake {
    const char *name;
    uint64_t epoch, seq;
    int synced, writer, roles, appended, appended_ok, events;
    uint64_t last_event_seq;
    int last_event_kind;
};

static void fk_sync(void *arg, uint64_t epoch, uint64_t seq, const char *doc, size_t len)
{
    struct fake *f = arg;
    f->epoch = epoch;
    f->seq = seq;
    f->synced++;
}

static void fk_role(void *arg, int writer)
{
    struct fake *f = arg;
    f->writer = writer;
    f->roles++;
}

static void fk_appended(void *arg, int ok)
{
    struct fake *f = arg;
    f->appended++;
    f->appended_ok += ok;
}

static int fk_event(void *arg, struct frame *fr, enum store_kind kind, const char *payload,
                    size_t len)
{
    struct fake *f = arg;
    f->events++;
    f->last_event_kind = (int)kind;
    if (fr && fr->seq) {
        if (kind == STORE_PATCH && fr->seq != f->seq + 1)
            return -1;
        f->last_event_seq = fr->seq;
        f->seq = fr->seq;
    }
    return 0;
}

static const struct store_topic_cbs fk_cbs = {fk_sync, fk_role, fk_appended, fk_event};

static void test_memory_store(void)
{
    struct loop *loop = loop_new();
    struct store_params sp = {.history_events = 8, .history_bytes = 1 << 20};
    struct store *s = store_memory_new(loop, &sp);
    REQUIRE(s != NULL);
    struct fake f = {0};
    struct topic_spec spec = {.poll = {.url = "http://x/", .interval_ms = 1000}, .name = "t"};
    struct store_topic *st = s->ops->open(s, "s:t|1000", &spec, &fk_cbs, &f);
    REQUIRE(st != NULL);
    CHECK_INT(f.synced, 1);
    CHECK(f.epoch != 0);
    CHECK_INT(f.seq, 0);
    s->ops->interest(st, 1);
    CHECK_INT(f.writer, 1);
    struct frame *d = mkframe(f.epoch, 1, "data", "{}");
    struct store_event ev = {STORE_DATA, d};
    CHECK_INT(s->ops->append(st, &ev, 1, "{}", 2), 0);
    CHECK_INT(f.appended_ok, 1);
    struct frame *p = mkframe(f.epoch, 2, "patch", "[]");
    struct store_event ev2[2] = {{STORE_PATCH, p}, {STORE_RECOVERED, d}};
    CHECK_INT(s->ops->append(st, ev2, 2, "{}", 2), 0);
    CHECK_INT(f.appended_ok, 2);
    struct pushed got = {0};
    CHECK_INT(s->ops->history(st, 1, push_rec, &got), 0);
    CHECK_INT(got.n, 1);
    CHECK_INT(got.seqs[0], 2);
    frame_unref(d);
    frame_unref(p);
    s->ops->close(st);
    s->ops->free(s);
    loop_free(loop);
}

/* ---- key derivation and URL parsing ---- */

static void test_topic_id(void)
{
    const char *h1[] = {"Authorization: Bearer SECRET-ONE"};
    const char *h2[] = {"Authorization: Bearer SECRET-TWO"};
    const char *ids[] = {"id", NULL};
    struct topic_spec a = {.poll = {.url = "https://api.example.com/v1/prices",
                                    .headers = h1,
                                    .nheaders = 1,
                                    .interval_ms = 5000},
                           .id_keys = ids,
                           .name = "prices"};
    char x[33], y[33];
    REQUIRE(store_redis_topic_id("s:prices|5000", &a, x) == 0);
    CHECK_INT(strlen(x), 32);
    CHECK(strspn(x, "0123456789abcdef") == 32);
    /* Pinned: every node, every version, derives the same name from the same topic. */
    CHECK_STR(x, "38619ed9435f9d83cbe530ddbb32c096");
    REQUIRE(store_redis_topic_id("s:prices|5000", &a, y) == 0);
    CHECK_STR(y, x);
    /* The name depends on everything that defines the topic, secrets included, and never holds
     * them. */
    struct topic_spec b = a;
    b.poll.headers = h2;
    store_redis_topic_id("s:prices|5000", &b, y);
    CHECK(strcmp(x, y) != 0);
    b = a;
    b.poll.url = "https://api.example.com/v1/prices2";
    store_redis_topic_id("s:prices|5000", &b, y);
    CHECK(strcmp(x, y) != 0);
    b = a;
    b.poll.interval_ms = 4000;
    store_redis_topic_id("s:prices|5000", &b, y);
    CHECK(strcmp(x, y) != 0);
    b = a;
    b.id_keys = NULL;
    store_redis_topic_id("s:prices|5000", &b, y);
    CHECK(strcmp(x, y) != 0);
    b = a;
    b.compat = 1;
    store_redis_topic_id("s:prices|5000", &b, y);
    CHECK(strcmp(x, y) != 0);
    /* Forwarded header values are in the hub key. */
    store_redis_topic_id("s:prices|5000|7:abc", &a, y);
    CHECK(strcmp(x, y) != 0);
    /* Field boundaries count: moving text between fields changes the name. */
    struct topic_spec c = a, d = a;
    const char *hc[] = {"A: b", "c"}, *hd[] = {"A: bc"};
    c.poll.headers = hc;
    c.poll.nheaders = 2;
    d.poll.headers = hd;
    store_redis_topic_id("k", &c, x);
    store_redis_topic_id("k", &d, y);
    CHECK(strcmp(x, y) != 0);
}

static void test_redis_url(void)
{
    struct config_redis_addr a;
    char err[256];
    CHECK_INT(config_redis_url_parse("redis://127.0.0.1:6379/0", &a, err, sizeof(err)), 0);
    CHECK_STR(a.host, "127.0.0.1");
    CHECK_INT(a.port, 6379);
    CHECK_INT(a.db, 0);
    CHECK_STR(a.password, "");
    CHECK_INT(config_redis_url_parse("redis://:p%40ss@redis.internal:6380/3", &a, err, sizeof(err)),
              0);
    CHECK_STR(a.host, "redis.internal");
    CHECK_STR(a.password, "p%40ss");
    CHECK_STR(a.user, "");
    CHECK_INT(a.port, 6380);
    CHECK_INT(a.db, 3);
    CHECK_INT(config_redis_url_parse("redis://app:s3cr@t@h", &a, err, sizeof(err)), 0);
    CHECK_STR(a.user, "app");
    CHECK_STR(a.password, "s3cr@t");
    CHECK_STR(a.host, "h");
    CHECK_INT(a.port, 6379);
    CHECK_INT(config_redis_url_parse("redis://[::1]:7000/", &a, err, sizeof(err)), 0);
    CHECK_STR(a.host, "::1");
    CHECK_INT(a.port, 7000);
    CHECK_INT(config_redis_url_parse("unix:/run/redis/redis.sock", &a, err, sizeof(err)), 0);
    CHECK_STR(a.path, "/run/redis/redis.sock");
    CHECK_STR(a.host, "");
    CHECK_INT(config_redis_url_parse("unix:///tmp/r.sock?db=2", &a, err, sizeof(err)), 0);
    CHECK_STR(a.path, "/tmp/r.sock");
    CHECK_INT(a.db, 2);
    const char *bad[] = {
        "http://h:6379", "redis://",      "redis://h:0",    "redis://h:65536", "redis://h:x",
        "redis://h/x",   "redis://h/1/2", "redis://user@h", "redis://[::1",    "unix:relative.sock",
        "unix:/a?db=x",  "unix:",         "redis://h\x01/0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = config_redis_url_parse(bad[i], &a, err, sizeof(err));
        if (rc == 0)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_INT(rc, -1);
    }
    /* Messages never repeat the password. */
    CHECK_INT(config_redis_url_parse("redis://:hunter2@h:99999", &a, err, sizeof(err)), -1);
    CHECK(strstr(err, "hunter2") == NULL);
}

/* ---- against a real redis-server ---- */

static char redis_sock[128];
static pid_t redis_pid = -1;

static int redis_start(void)
{
    snprintf(redis_sock, sizeof(redis_sock), "/tmp/pollcast-test-store-%d.sock", (int)getpid());
    char *argv[] = {"redis-server", "--port",     "0",       "--unixsocket",
                    redis_sock,     "--save",     "",        "--appendonly",
                    "no",           "--loglevel", "warning", NULL};
    if (posix_spawnp(&redis_pid, "redis-server", NULL, NULL, argv, environ) != 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnectUnix(redis_sock);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        usleep(20000);
    }
    return -1;
}

static void redis_stop(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    unlink(redis_sock);
}

struct until {
    int (*cond)(void *arg);
    void *arg;
    uint64_t deadline;
    int timed_out;
};

static void on_check(struct loop *loop, struct loop_timer *t, void *arg)
{
    struct until *u = arg;
    if (u->cond(u->arg)) {
        loop_stop(loop);
        return;
    }
    if (loop_now_ms(loop) >= u->deadline) {
        u->timed_out = 1;
        loop_stop(loop);
        return;
    }
    loop_timer_start(t, 5);
}

/* Runs the loop until cond holds or max_ms pass. Returns 1 when cond held. */
static int run_until(struct loop *loop, int (*cond)(void *), void *arg, uint64_t max_ms)
{
    struct until u = {cond, arg, loop_now_ms(loop) + max_ms, 0};
    struct loop_timer *t = loop_timer_new(loop, on_check, &u);
    loop_timer_start(t, 0);
    loop_run(loop);
    loop_timer_free(t);
    return !u.timed_out;
}

struct pair {
    struct fake *a, *b;
};

static int one_writer(void *arg)
{
    struct pair *p = arg;
    return p->a->writer + p->b->writer == 1;
}

static int writer_appended(void *arg)
{
    struct fake *f = arg;
    return f->appended > 0;
}

static int got_event(void *arg)
{
    struct fake *f = arg;
    return f->events > 0;
}

static int got_synced(void *arg)
{
    struct fake *f = arg;
    return f->synced > 0 && f->seq > 0;
}

static int seq4(void *arg)
{
    struct fake *f = arg;
    return f->seq == 4;
}

static int is_writer(void *arg)
{
    struct fake *f = arg;
    return f->writer;
}

static int not_writer(void *arg)
{
    struct fake *f = arg;
    return !f->writer;
}

/* Sequence numbers of the topic's stream entries, in order; -1 when one repeats or goes back
 * within an epoch. */
static long stream_check(redisContext *rc, const char *key, size_t *entries)
{
    redisReply *r = redisCommand(rc, "XRANGE %s - +", key);
    long rc_ = 0;
    uint64_t last_e = 0, last_s = 0;
    *entries = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *fv = r->element[i]->element[1];
        uint64_t e = 0, s = 0;
        for (size_t j = 0; j + 1 < fv->elements; j += 2) {
            if (strcmp(fv->element[j]->str, "e") == 0)
                e = strtoull(fv->element[j + 1]->str, NULL, 10);
            if (strcmp(fv->element[j]->str, "s") == 0)
                s = strtoull(fv->element[j + 1]->str, NULL, 10);
        }
        if (s && e == last_e && s <= last_s)
            rc_ = -1;
        if (s) {
            last_e = e;
            last_s = s;
        }
        (*entries)++;
    }
    freeReplyObject(r);
    return rc_;
}

static void test_redis_lease_and_fencing(void)
{
    REQUIRE(redis_start() == 0);
    struct loop *loop = loop_new();
    struct config_redis_addr addr;
    char err[256];
    char url[160];
    snprintf(url, sizeof(url), "unix:%s", redis_sock);
    REQUIRE(config_redis_url_parse(url, &addr, err, sizeof(err)) == 0);
    struct store_redis_params pa = {.addr = &addr,
                                    .node_id = "node-a",
                                    .lease_ms = 600,
                                    .history = {.history_events = 16, .history_bytes = 1 << 20}};
    struct store_redis_params pb = pa;
    pb.node_id = "node-b";
    struct store *sa = store_redis_new(loop, &pa, err, sizeof(err));
    struct store *sb = store_redis_new(loop, &pb, err, sizeof(err));
    REQUIRE(sa && sb);
    struct fake fa = {.name = "a"}, fb = {.name = "b"};
    struct topic_spec spec = {.poll = {.url = "http://x/", .interval_ms = 1000}, .name = "t"};
    char tid[33];
    REQUIRE(store_redis_topic_id("s:t|1000", &spec, tid) == 0);
    char k_lease[80], k_log[80], k_snap[80];
    snprintf(k_lease, sizeof(k_lease), "pollcast:{%s}:lease", tid);
    snprintf(k_log, sizeof(k_log), "pollcast:{%s}:log", tid);
    snprintf(k_snap, sizeof(k_snap), "pollcast:{%s}:snap", tid);
    struct store_topic *ta = sa->ops->open(sa, "s:t|1000", &spec, &fk_cbs, &fa);
    struct store_topic *tb = sb->ops->open(sb, "s:t|1000", &spec, &fk_cbs, &fb);
    REQUIRE(ta && tb);
    sa->ops->interest(ta, 1);
    sb->ops->interest(tb, 1);
    struct pair pr = {&fa, &fb};
    /* One of the two, and only one, becomes the writer. */
    REQUIRE(run_until(loop, one_writer, &pr, 5000));
    CHECK_STR(store_redis_state(sa), "up");
    struct fake *w = fa.writer ? &fa : &fb, *o = fa.writer ? &fb : &fa;
    struct store *sw = fa.writer ? sa : sb, *so = fa.writer ? sb : sa;
    struct store_topic *tw = fa.writer ? ta : tb, *to = fa.writer ? tb : ta;
    CHECK(w->epoch != 0);
    CHECK_INT(w->seq, 0);
    /* The writer appends a data event; the other node reads it (same frame, same id). */
    struct frame *d = mkframe(w->epoch, 1, "data", "{\"v\":1}");
    struct store_event ev = {STORE_DATA, d};
    CHECK_INT(sw->ops->append(tw, &ev, 1, "{\"v\":1}", 7), 0);
    REQUIRE(run_until(loop, writer_appended, w, 3000));
    CHECK_INT(w->appended_ok, 1);
    REQUIRE(run_until(loop, got_event, o, 3000));
    CHECK_INT(o->last_event_kind, STORE_DATA);
    CHECK_INT(o->last_event_seq, 1);
    CHECK(o->epoch == w->epoch);
    w->seq = 1;
    frame_unref(d);

    /* Patches 2..4; then a node that never served the topic opens it and can resume a client
     * from any of them: its history comes from the stream. */
    for (uint64_t sq = 2; sq <= 4; sq++) {
        struct frame *pf = mkframe(w->epoch, sq, "patch", "[]");
        struct store_event pev = {STORE_PATCH, pf};
        w->appended = 0;
        CHECK_INT(sw->ops->append(tw, &pev, 1, "{\"v\":1}", 7), 0);
        REQUIRE(run_until(loop, writer_appended, w, 3000));
        CHECK_INT(w->appended_ok, (int)sq);
        frame_unref(pf);
    }
    w->seq = 4;
    struct store_redis_params pc = pa;
    pc.node_id = "node-c";
    struct store *sc = store_redis_new(loop, &pc, err, sizeof(err));
    struct fake fc = {.name = "c"};
    struct store_topic *tc = sc->ops->open(sc, "s:t|1000", &spec, &fk_cbs, &fc);
    REQUIRE(run_until(loop, got_synced, &fc, 3000));
    CHECK(fc.epoch == w->epoch);
    CHECK_INT(fc.seq, 4);
    struct pushed hist = {0};
    CHECK_INT(sc->ops->history(tc, 1, push_rec, &hist), 0);
    CHECK_INT(hist.n, 3);
    CHECK_INT(hist.seqs[0], 2);
    CHECK_INT(hist.seqs[2], 4);
    hist.n = 0;
    CHECK_INT(sc->ops->history(tc, 0, push_rec, &hist), -1); /* before the data event */
    sc->ops->close(tc);
    sc->ops->free(sc);
    /* The reader of the other node followed too. */
    REQUIRE(run_until(loop, seq4, o, 3000));

    /* Fencing: the lease now holds another token (as when the writer was paused past its
     * lease and another node took over). The former writer's append is refused and nothing
     * reaches the stream. */
    redisContext *rc = redisConnectUnix(redis_sock);
    REQUIRE(rc && !rc->err);
    freeReplyObject(redisCommand(rc, "SET %s intruder:1 PX 1500", k_lease));
    size_t before, after;
    CHECK_INT(stream_check(rc, k_log, &before), 0);
    struct frame *p = mkframe(w->epoch, 5, "patch", "[{\"op\":\"replace\",\"path\":\"/v\"}]");
    struct store_event pe = {STORE_PATCH, p};
    w->appended = w->appended_ok = 0;
    CHECK_INT(sw->ops->append(tw, &pe, 1, "{\"v\":2}", 7), 0);
    REQUIRE(run_until(loop, writer_appended, w, 3000));
    CHECK_INT(w->appended_ok, 0);
    CHECK_INT(w->writer, 0); /* it knows it lost the lease */
    CHECK_INT(stream_check(rc, k_log, &after), 0);
    CHECK_INT(after, before);
    frame_unref(p);

    /* When the intruder's lease lapses, a node with subscribers takes over and goes on with
     * the same epoch and the next seq. */
    struct pair pr2 = {&fa, &fb};
    REQUIRE(run_until(loop, one_writer, &pr2, 5000));
    struct fake *w2 = fa.writer ? &fa : &fb;
    CHECK_INT(w2->seq, 4);
    CHECK(w2->epoch == o->epoch);

    /* Redis loses its data (FLUSHALL, as a restart without persistence): the writer's lease
     * is gone, and whoever takes it next starts a new epoch. */
    uint64_t old_epoch = w2->epoch;
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    REQUIRE(run_until(loop, not_writer, w2, 3000));
    struct pair pr3 = {&fa, &fb};
    REQUIRE(run_until(loop, one_writer, &pr3, 5000));
    struct fake *w3 = fa.writer ? &fa : &fb;
    CHECK(w3->epoch != old_epoch);
    CHECK_INT(w3->seq, 0);

    /* Clean shutdown releases the lease (compare-and-delete). The other node has no
     * subscribers any more, so nobody takes it again. */
    struct store_topic *tw3 = fa.writer ? ta : tb;
    struct store *sw3 = fa.writer ? sa : sb;
    if (fa.writer)
        sb->ops->interest(tb, 0);
    else
        sa->ops->interest(ta, 0);
    sw3->ops->close(tw3);
    if (tw3 == ta)
        ta = NULL;
    else
        tb = NULL;
    struct fake dummy = {.writer = 1};
    run_until(loop, not_writer, &dummy, 200); /* let the release go out */
    redisReply *r = redisCommand(rc, "EXISTS %s", k_lease);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    freeReplyObject(r);
    /* Every key has a TTL. */
    r = redisCommand(rc, "PTTL %s", k_snap);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && (r->integer > 0 || r->integer == -2));
    freeReplyObject(r);
    redisFree(rc);

    (void)so;
    (void)to;
    (void)is_writer;
    if (ta)
        sa->ops->close(ta);
    if (tb)
        sb->ops->close(tb);
    sa->ops->free(sa);
    sb->ops->free(sb);
    loop_free(loop);
    redis_stop();
}

/* Redis unreachable: the store serves alone (degraded) and makes the topic's node its writer
 * under a local epoch. */
static void test_redis_unreachable(void)
{
    struct loop *loop = loop_new();
    struct config_redis_addr addr;
    char err[256];
    REQUIRE(config_redis_url_parse("unix:/tmp/pollcast-test-no-such-redis.sock", &addr, err,
                                   sizeof(err)) == 0);
    struct store_redis_params p = {.addr = &addr,
                                   .node_id = "alone",
                                   .lease_ms = 600,
                                   .history = {.history_events = 4, .history_bytes = 4096}};
    struct store *s = store_redis_new(loop, &p, err, sizeof(err));
    REQUIRE(s != NULL);
    struct fake f = {0};
    struct topic_spec spec = {.poll = {.url = "http://x/", .interval_ms = 1000}, .name = "t"};
    struct store_topic *t = s->ops->open(s, "s:t|1000", &spec, &fk_cbs, &f);
    s->ops->interest(t, 1);
    CHECK(run_until(loop, is_writer, &f, 3000));
    CHECK_STR(store_redis_state(s), "degraded");
    CHECK(f.epoch != 0);
    struct frame *d = mkframe(f.epoch, 1, "data", "{}");
    struct store_event ev = {STORE_DATA, d};
    s->ops->append(t, &ev, 1, "{}", 2);
    CHECK_INT(f.appended_ok, 1); /* alone: taken at once */
    frame_unref(d);
    s->ops->close(t);
    s->ops->free(s);
    loop_free(loop);
}

static int redis_writer(void *arg)
{
    struct fake *f = arg;
    return f->writer && f->roles >= 3; /* local writer, stepped down, Redis writer */
}

/* Redis comes up after the node started alone: the topic leaves local mode, takes the lease
 * under a new epoch and its next append is taken (it once lost its lease token on the way). */
static void test_redis_rejoin(void)
{
    struct loop *loop = loop_new();
    snprintf(redis_sock, sizeof(redis_sock), "/tmp/pollcast-test-store-%d.sock", (int)getpid());
    unlink(redis_sock);
    char url[160], err[256];
    snprintf(url, sizeof(url), "unix:%s", redis_sock);
    struct config_redis_addr addr;
    REQUIRE(config_redis_url_parse(url, &addr, err, sizeof(err)) == 0);
    struct store_redis_params p = {.addr = &addr,
                                   .node_id = "late",
                                   .lease_ms = 600,
                                   .history = {.history_events = 8, .history_bytes = 1 << 20}};
    struct store *s = store_redis_new(loop, &p, err, sizeof(err));
    REQUIRE(s != NULL);
    struct fake f = {0};
    struct topic_spec spec = {.poll = {.url = "http://late/", .interval_ms = 1000}, .name = "l"};
    struct store_topic *t = s->ops->open(s, "s:l|1000", &spec, &fk_cbs, &f);
    s->ops->interest(t, 1);
    REQUIRE(run_until(loop, is_writer, &f, 3000));
    CHECK_STR(store_redis_state(s), "degraded");
    uint64_t local_epoch = f.epoch;
    REQUIRE(redis_start() == 0);
    REQUIRE(run_until(loop, redis_writer, &f, 10000));
    CHECK_STR(store_redis_state(s), "up");
    CHECK(f.epoch != local_epoch);
    CHECK_INT(f.seq, 0);
    struct frame *d = mkframe(f.epoch, 1, "data", "{}");
    struct store_event ev = {STORE_DATA, d};
    f.appended = f.appended_ok = 0;
    CHECK_INT(s->ops->append(t, &ev, 1, "{}", 2), 0);
    REQUIRE(run_until(loop, writer_appended, &f, 3000));
    CHECK_INT(f.appended_ok, 1);
    CHECK_INT(f.writer, 1);
    frame_unref(d);
    s->ops->close(t);
    s->ops->free(s);
    loop_free(loop);
    redis_stop();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_epoch);
    RUN(test_ring);
    RUN(test_memory_store);
    RUN(test_topic_id);
    RUN(test_redis_url);
    RUN(test_redis_unreachable);
    RUN(test_redis_lease_and_fencing);
    RUN(test_redis_rejoin);
    redis_stop();
    return harness_report("test_store");
}

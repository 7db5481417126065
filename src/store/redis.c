/* The Redis store: cluster mode. Nodes that share one Redis (or Valkey, KeyDB: plain commands
 * and EVAL scripts only) poll each topic once between them and share its history and ids.
 *
 * Roles. A topic's writer is the node holding its lease; only nodes with local subscribers of
 * the topic compete for it (SET NX PX, tried again when the holder's lease would lapse: PTTL). The
 * writer polls, and appends each publication with one script that checks the lease token first
 * (fencing: a paused or partitioned former writer can never append), adds the events to the topic's
 * stream and replaces the snapshot. It renews every lease/3 (compare-and-renew) and releases on
 * close (compare-and-delete). Every node reads the streams of the topics it serves with one XREAD
 * BLOCK for all of them on a connection of its own (Redis work per change: O(nodes)), and
 * feeds the events to its hub, which serializes nothing again (the stream holds the frames).
 * A node keeps a local ring of each topic's recent patch frames, loaded from the stream when it
 * opens the topic, so that a client resumes on any node.
 *
 * Push topics ([stream NAME]) have no poller, hence no lease and no writer: any node publishes.
 * A publish is one script (script_publish), a compare-and-append: the node diffs the new
 * document against its copy of version (epoch, seq), and Redis adds the event as seq+1 (XADD,
 * the snapshot replaced) only while the stored snapshot is still (epoch, seq), or absent with
 * seq 0 (the first publish, which stores the epoch the node made when it found no snapshot).
 * Otherwise Redis refuses and sends back the entries the node has not read and the snapshot,
 * which the node hands to its hub before answering (appended -1), so that the publish is taken
 * again against the newer version (http/publish.c: three attempts, then 409). The node
 * publishes its own event when the script answers; while it waits, the topic is left out of the
 * XREAD, so that its own entry never comes twice and a later one never looks like a gap. Every
 * node's reader delivers the event to its subscribers as for polled topics. Degraded (or
 * before the topic loaded), publishes are refused (503) and nodes go on serving the version
 * they have: no node forks ids. Every node serving a push topic touches its keys every
 * STORE_REDIS_TTL_MS / 4 (nobody renews a lease), so they expire only when no node serves it.
 *
 * Refresh (POST /streams/NAME/refresh on any node). The node polls what it polls itself and
 * PUBLISHes "<node id>\n<hub key prefix>" on the channel pollcast:refresh:<db>, which every node
 * SUBSCRIBEs to on a third connection of its own; a node that receives another node's request
 * makes the pollers it runs for matching topics fetch now (the lease holder of the topic, or
 * any node while degraded: poller_poll_now, coalesced with a request in flight). Nothing is
 * stored in Redis and a message reaches the owner in one round trip. Coalesced on the sender:
 * while a PUBLISH for the same prefix waits for its answer, a new request joins it, and at most
 * STORE_REDIS_MAX_REFRESH are on their way (then the request is refused: busy). A message sent
 * while the owner's subscription is down (Redis restarting) is lost, like a poll in degraded
 * mode; the owner polls at its next tick.
 *
 * Keys (H: the first 32 hex digits of SHA-256 over "pollcast-topic-v1", the hub key (stream
 * name or URL, interval, forwarded header values) and the definition (URL, configured headers,
 * timeouts, body cap, id keys, error repeat, event style), so that no header value or token is
 * stored in clear, every node derives the same H, and a changed definition is another topic):
 *   pollcast:{H}:lease  string  lease token "<node_id>:<16 hex>", PX lease (not for push topics)
 *   pollcast:{H}:snap   hash    e: epoch, s: seq, d: document text of version s (decimal numbers)
 *   pollcast:{H}:log    stream  one entry per event, MAXLEN ~ history_events:
 *                               k: kind (1 data, 2 patch, 3 upstream-error, 4 upstream-recovered),
 *                               s: seq (0 for 3 and 4), e: epoch, f: the SSE frame as sent,
 *                               t: the writer's lease token (push topics: the node id)
 * snap and log expire STORE_REDIS_TTL_MS (1 hour) after the last append or renewal, so that
 * abandoned topics vanish; the lease lapses on its own. The {H} hash tag keeps a topic's keys in
 * one slot.
 *
 * Redis trouble (degraded mode). When a connection fails or a command goes unanswered for
 * STORE_REDIS_STALL_MS (5 s), the node serves alone: each topic with subscribers gets a new local
 * epoch (one fresh data event for its subscribers, same document) and is polled by this node,
 * with history in its local ring. Reconnection is tried with exponential backoff (100 ms
 * doubling to 5 s, with jitter). When Redis is back, each topic reloads the stored snapshot and
 * competes again: subscribers get one more fresh data event when the stored version differs
 * from what they have. A missing snapshot (Redis lost its data) always means a new epoch, so
 * ids are never reused with other contents. Commands toward Redis are bounded
 * (STORE_REDIS_MAX_PENDING commands, STORE_REDIS_MAX_OUTPUT bytes not yet written): beyond
 * them, appends are refused (the hub drops that poll's events and diffs again at the next one)
 * and lease and load attempts wait.
 *
 * Sizing. Per topic, Redis holds the document once (snap) and up to history_events frames
 * (MAXLEN ~ trims by count, in whole macro nodes of about 100 entries, so a few more may stay;
 * history_bytes bounds only the local rings), each frame the SSE event as sent (a patch: its
 * JSON plus about 40 bytes). Work per change: one EVAL by the writer and one XREAD reply per
 * node; in the background, per topic, one renewal per lease/3 by the writer and about one
 * acquire attempt per lease by each other node with subscribers.
 *
 * Operations (what other modules show): /readyz {"status":"ready","cluster":"up"|"degraded",
 * "node":ID} and 503 {"status":"starting","cluster":"connecting",...} before Redis first
 * answers or is given up on (STORE_REDIS_CONNECT_MS); metrics registered by
 * store_redis_add_metrics (pollcast_cluster_*); log lines "cluster: connected to redis",
 * "cluster: redis unreachable; serving alone (degraded)", "cluster: redis is back; rejoining",
 * "cluster: lease acquired", "cluster: lease lost" (reason=), "cluster: new epoch"; every
 * structured line ends with node=ID (log_set_node). */
#include <errno.h>
#include <poll.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "buf.h"
#include "json/json.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "store/redis_loop.h"
#include "store/store.h"

#define STORE_REDIS_TTL_MS      (3600 * 1000ull) /* snap and log live this long untouched */
#define STORE_REDIS_STALL_MS    5000             /* an unanswered command this old: degraded */
#define STORE_REDIS_CONNECT_MS  2000             /* connection attempt timeout */
#define STORE_REDIS_BACKOFF_MIN 100
#define STORE_REDIS_BACKOFF_MAX 5000
#define STORE_REDIS_MAX_PENDING 10000       /* commands awaiting replies, per connection */
#define STORE_REDIS_MAX_OUTPUT  (64u << 20) /* bytes buffered toward Redis */
#define STORE_REDIS_BLOCK_MS    "2000"      /* XREAD BLOCK */
#define STORE_REDIS_READ_COUNT  "512"       /* entries per stream per XREAD */
#define STORE_REDIS_MAX_REFRESH 64          /* refresh PUBLISHes awaiting their answer */
#define STORE_REDIS_MAX_MESSAGE 4096        /* refresh messages longer are ignored */
#define TOPIC_BUCKETS           1024

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };
enum cluster_state { CLUSTER_CONNECTING, CLUSTER_UP, CLUSTER_DEGRADED };

static const char *const state_names[] = {"connecting", "up", "degraded"};

/* ---- scripts ------------------------------------------------------------------------------ */

/* KEYS: lease snap log. ARGV: token lease_ms after_id count. Takes the lease when it is free and
 * returns {1, epoch, seq, doc, entries after after_id} (false for missing fields), or {0, ms}
 * with the time the current holder's lease has left (the next attempt is due then). */
static const char script_acquire[] =
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {0, redis.call('PTTL', KEYS[1])}\n"
    "end\n"
    "local s = redis.call('HMGET', KEYS[2], 'e', 's', 'd')\n"
    "local tail = {}\n"
    "if ARGV[3] ~= '' then\n"
    "  tail = redis.call('XRANGE', KEYS[3], '(' .. ARGV[3], '+', 'COUNT', ARGV[4])\n"
    "end\n"
    "return {1, s[1], s[2], s[3], tail}\n";

/* KEYS: lease snap log. ARGV: token lease_ms ttl_ms. Renews the lease only while it holds
 * token; returns 1 or 0. */
static const char script_renew[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                   "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                   "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
                                   "redis.call('PEXPIRE', KEYS[3], ARGV[3])\n"
                                   "return 1\n";

/* KEYS: lease. ARGV: token. Deletes the lease only while it holds token. */
static const char script_release[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: lease snap log. ARGV: token ttl_ms maxlen epoch seq has_doc doc n, then n triples
 * (kind, seq, frame). Appends only while the lease holds token and the snapshot, if any, is of
 * the same epoch; returns 1, or 0 when fenced out. */
static const char script_append[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local e = redis.call('HGET', KEYS[2], 'e')\n"
    "if e and e ~= ARGV[4] then return 0 end\n"
    "for i = 0, tonumber(ARGV[8]) - 1 do\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'k', ARGV[9 + 3 * i],\n"
    "             's', ARGV[10 + 3 * i], 'e', ARGV[4], 'f', ARGV[11 + 3 * i], 't', ARGV[1])\n"
    "end\n"
    "if ARGV[6] == '1' then\n"
    "  redis.call('HSET', KEYS[2], 'e', ARGV[4], 's', ARGV[5], 'd', ARGV[7])\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[2])\n"
    "return 1\n";

/* KEYS: snap log. ARGV: ttl_ms maxlen epoch prev_seq after_id count node kind seq frame doc.
 * The publish of a push topic (no lease: any node may publish): a compare-and-append that adds
 * the event (kind, version seq of epoch) and replaces the snapshot only while the stored
 * snapshot is still version prev_seq of epoch, or absent with prev_seq 0 (the first publish,
 * which creates the epoch). Returns {1}, or {0, epoch, seq, doc, entries after after_id} (false
 * for missing fields) when another publish came first. */
static const char script_publish[] =
    "local s = redis.call('HMGET', KEYS[1], 'e', 's', 'd')\n"
    "local ok\n"
    "if s[1] then ok = s[1] == ARGV[3] and s[2] == ARGV[4] else ok = ARGV[4] == '0' end\n"
    "if not ok then\n"
    "  local tail = {}\n"
    "  if ARGV[5] ~= '' then\n"
    "    tail = redis.call('XRANGE', KEYS[2], '(' .. ARGV[5], '+', 'COUNT', ARGV[6])\n"
    "  end\n"
    "  return {0, s[1], s[2], s[3], tail}\n"
    "end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'k', ARGV[8], 's', ARGV[9],\n"
    "           'e', ARGV[3], 'f', ARGV[10], 't', ARGV[7])\n"
    "redis.call('HSET', KEYS[1], 'e', ARGV[3], 's', ARGV[9], 'd', ARGV[11])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[1])\n"
    "return {1}\n";

/* KEYS: snap log. ARGV: ttl_ms. Keeps a push topic's keys from expiring while a node serves it
 * (nobody renews a lease for it). */
static const char script_touch[] = "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
                                   "redis.call('PEXPIRE', KEYS[2], ARGV[1])\n"
                                   "return 1\n";

/* KEYS: snap log. ARGV: count. The snapshot and the newest entries, newest first, read
 * together: {epoch, seq, doc, entries}. */
static const char script_load[] = "local s = redis.call('HMGET', KEYS[1], 'e', 's', 'd')\n"
                                  "local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', "
                                  "'COUNT', ARGV[1])\n"
                                  "return {s[1], s[2], s[3], tail}\n";

/* ---- types -------------------------------------------------------------------------------- */

struct redis_store;

/* A refresh request on its way to the other nodes: the prefix it is for. */
struct refresh_out {
    struct refresh_out *next;
    char prefix[];
};

/* One connection (commands, or the stream reader). */
struct conn {
    struct redis_store *rs;
    redisAsyncContext *ac;
    enum conn_state state;
    int reader;          /* the XREAD connection */
    int sub;             /* the SUBSCRIBE connection (refresh requests from other nodes) */
    size_t pending;      /* commands awaiting a reply */
    uint64_t oldest_ms;  /* when the oldest of them was sent (approximately: reset on reply) */
    uint64_t started_ms; /* connection attempt start */
    long long client_id; /* reader: CLIENT ID, for CLIENT UNBLOCK */
    int ready;           /* AUTH, SELECT (and CLIENT ID) answered */
};

struct store_topic {
    struct redis_store *rs;
    const struct store_topic_cbs *cbs;
    void *arg;
    struct store_topic *next, *prev; /* all topics */
    struct store_topic *bnext;       /* in the bucket of k_log */
    char name[80];                   /* the stream name for logs (no secret) */
    char hash[33];
    char k_lease[64], k_snap[64], k_log[64];
    char last_id[48]; /* the newest stream entry handled; "" before the first load */
    struct store_ring ring;
    uint64_t epoch, seq; /* what the hub serves */
    unsigned refs;       /* 1 while open, plus one per command in flight */
    unsigned closed : 1, interest : 1, writer : 1, local : 1, loaded : 1, loading : 1,
        acquiring : 1, appending : 1, reading : 1;
    /* A push topic: never leased nor polled; any node publishes with script_publish while the
     * store is up, none while it is degraded. next_lease_ms is then when its keys are touched. */
    unsigned push : 1;
    char token[112]; /* the lease token while writer (Redis mode) */
    uint64_t next_lease_ms;
    /* The append in flight: its frames, pushed to the ring when Redis took them. */
    struct store_event pend[2];
    size_t npend;
};

struct redis_store {
    struct store base;
    struct loop *loop;
    struct config_redis_addr addr;
    char display[300]; /* the address without credentials, for logs */
    char node_id[80];
    uint64_t lease_ms;
    struct store_params hp;
    struct conn cmd, rd, sb;
    enum cluster_state state;
    struct loop_timer *tick;
    uint64_t backoff_ms, next_connect_ms;
    struct store_topic *topics;
    struct store_topic *buckets[TOPIC_BUCKETS]; /* by k_log, for XREAD replies */
    int read_pending;                           /* an XREAD is in flight */
    int read_stale;                             /* the topic set changed since it was sent */
    int freeing;
    uint64_t rng;
    /* Refresh requests PUBLISHed and not answered yet, oldest first (answers come in order). */
    char channel[48];
    struct refresh_out *refresh_head, *refresh_tail;
    size_t nrefresh;
    uint64_t m_refresh_sent, m_refresh_received;
    /* Metrics. */
    uint64_t m_owned, m_acquired, m_lost, m_errors, m_connected, m_to_up, m_to_degraded;
    uint64_t m_publish_conflicts;
    uint64_t m_state[3];
    struct metrics_histogram m_latency;
};

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1,    2.5};

/* A command's context: the topic it is for (holding a reference), when it was sent. */
struct cmd_ctx {
    struct redis_store *rs;
    struct store_topic *rt;
    struct conn *c;
    uint64_t sent_ms;
    int timed; /* counts into the latency histogram */
};

static void conn_fail(struct conn *c, const char *why);
static void reader_kick(struct redis_store *rs);
static int reader_wants(const struct store_topic *rt);
static void topic_load(struct store_topic *rt);

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t rng_next(struct redis_store *rs)
{
    rs->rng ^= rs->rng << 13;
    rs->rng ^= rs->rng >> 7;
    rs->rng ^= rs->rng << 17;
    return rs->rng;
}

static void topic_unref(struct store_topic *rt)
{
    if (--rt->refs > 0)
        return;
    for (size_t i = 0; i < rt->npend; i++)
        frame_unref(rt->pend[i].frame);
    store_ring_dispose(&rt->ring);
    free(rt);
}

/* Parses a stream id "ms-seq". Returns 0 or -1. */
static int stream_id_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    errno = 0;
    unsigned long long a = strtoull(s, &end, 10);
    if (errno || *end != '-')
        return -1;
    unsigned long long b = strtoull(end + 1, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *ms = a;
    *seq = b;
    return 0;
}

/* Returns 1 when stream id a comes after b ("" is before everything). */
static int stream_id_after(const char *a, const char *b)
{
    uint64_t am, as, bm, bs;
    if (*b == '\0')
        return 1;
    if (stream_id_parse(a, &am, &as) != 0 || stream_id_parse(b, &bm, &bs) != 0)
        return 0;
    return am > bm || (am == bm && as > bs);
}

static int reply_u64(const redisReply *r, uint64_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    }
    *out = v;
    return 0;
}

/* The JSON after "data: " in a frame, without the closing blank line. */
static void frame_payload(const char *f, size_t len, const char **p, size_t *n)
{
    const char *d = NULL;
    if (len >= 6 && memcmp(f, "data: ", 6) == 0)
        d = f + 6;
    else
        for (size_t i = 0; i + 7 <= len; i++)
            if (memcmp(f + i, "\ndata: ", 7) == 0) {
                d = f + i + 7;
                break;
            }
    if (d == NULL) {
        *p = f + len;
        *n = 0;
        return;
    }
    size_t k = (size_t)(f + len - d);
    while (k > 0 && d[k - 1] == '\n')
        k--;
    *p = d;
    *n = k;
}

static struct frame *frame_new_copy(const char *data, size_t len, uint64_t seq)
{
    struct frame *f = malloc(sizeof(*f));
    char *d = malloc(len ? len : 1);
    if (f == NULL || d == NULL) {
        free(f);
        free(d);
        return NULL;
    }
    memcpy(d, data, len);
    f->refs = 1;
    f->len = len;
    f->seq = seq;
    f->time_ms = 0;
    f->data = d;
    return f;
}

/* ---- key derivation ----------------------------------------------------------------------- */

/* Hashes one field as "tag:length:" and its bytes, so that no two definitions hash the same
 * text (NULL differs from ""). */
static void sha_field(EVP_MD_CTX *c, const char *tag, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    char len[48];
    int k = snprintf(len, sizeof(len), "%s:%zu:", tag, v ? n : (size_t)-1);
    EVP_DigestUpdate(c, len, (size_t)k);
    if (n)
        EVP_DigestUpdate(c, v, n);
}

static void sha_num(EVP_MD_CTX *c, const char *tag, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
    sha_field(c, tag, s);
}

int store_redis_topic_id(const char *key, const struct topic_spec *spec, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return -1;
    }
    sha_field(c, "v", "pollcast-topic-v1");
    sha_field(c, "key", key);
    sha_field(c, "url", spec->identity_url ? spec->identity_url : spec->poll.url);
    sha_num(c, "nheaders", spec->poll.nheaders);
    for (size_t i = 0; i < spec->poll.nheaders; i++)
        sha_field(c, "header", spec->poll.headers[i]);
    sha_num(c, "interval", spec->poll.interval_ms);
    sha_num(c, "timeout", spec->poll.timeout_ms);
    sha_num(c, "max_body", spec->poll.max_body);
    sha_num(c, "adhoc", (uint64_t)spec->poll.adhoc);
    for (const char *const *k = spec->id_keys; k && *k; k++)
        sha_field(c, "id_key", *k);
    sha_num(c, "error_repeat", spec->error_repeat_ms);
    sha_num(c, "compat", (uint64_t)spec->compat);
    int ok = EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen >= 16;
    EVP_MD_CTX_free(c);
    if (!ok)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
    return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */

/* Sends a command on c for topic rt (may be NULL). Returns 0, or -1 when it cannot be sent (not
 * connected, over the bounds, OOM): cb is then not called. */
static int conn_send(struct conn *c, struct store_topic *rt, redisCallbackFn *cb, int timed,
                     int argc, const char **argv, const size_t *argvlen)
{
    if (c->state != CONN_UP || c->ac == NULL)
        return -1;
    if (c->pending >= STORE_REDIS_MAX_PENDING ||
        (c->ac->c.obuf && sdslen(c->ac->c.obuf) > STORE_REDIS_MAX_OUTPUT))
        return -1;
    struct cmd_ctx *x = malloc(sizeof(*x));
    if (x == NULL)
        return -1;
    x->rs = c->rs;
    x->rt = rt;
    x->c = c;
    x->sent_ms = loop_now_ms(c->rs->loop);
    x->timed = timed;
    if (redisAsyncCommandArgv(c->ac, cb, x, argc, argv, argvlen) != REDIS_OK) {
        free(x);
        return -1;
    }
    if (c->pending++ == 0)
        c->oldest_ms = x->sent_ms;
    if (rt)
        rt->refs++;
    return 0;
}

/* Accounts for a reply (r NULL: the connection went away). Returns 1 when the reply can be
 * used: the topic, if any, is still open and r is not an error. */
static int cmd_done(struct cmd_ctx *x, const redisReply *r)
{
    struct redis_store *rs = x->rs;
    struct conn *c = x->c;
    if (c->pending > 0)
        c->pending--;
    c->oldest_ms = loop_now_ms(rs->loop);
    if (r && x->timed)
        metrics_histogram_observe(&rs->m_latency,
                                  (double)(loop_now_ms(rs->loop) - x->sent_ms) / 1000.0);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        rs->m_errors++;
        if (r && !rs->freeing)
            log_event(LOG_WARN, "cluster: redis command failed",
                      (struct log_field[]){LOG_STR("error", r->str)}, 1);
    }
    return r != NULL && r->type != REDIS_REPLY_ERROR && (x->rt == NULL || !x->rt->closed) &&
           !rs->freeing;
}

static void cmd_release(struct cmd_ctx *x)
{
    if (x->rt)
        topic_unref(x->rt);
    free(x);
}

/* Runs a script on the command connection. */
static int eval(struct store_topic *rt, redisCallbackFn *cb, const char *script, int nkeys,
                const char **keys, int nargs, const char **args, const size_t *arglens)
{
    const char *argv[24];
    size_t lens[24];
    char nk[8];
    int argc = 0;
    if (3 + nkeys + nargs > 24)
        return -1;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[argc] = "EVAL";
    lens[argc++] = 4;
    argv[argc] = script;
    lens[argc++] = strlen(script);
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens ? arglens[i] : strlen(args[i]);
    }
    return conn_send(&rt->rs->cmd, rt, cb, 1, argc, argv, lens);
}

/* ---- what the hub is told ------------------------------------------------------------------ */

static void topic_sync(struct store_topic *rt, uint64_t epoch, uint64_t seq, const char *doc,
                       size_t len)
{
    rt->epoch = epoch;
    rt->seq = seq;
    rt->cbs->sync(rt->arg, epoch, seq, doc, len);
}

static void topic_set_writer(struct store_topic *rt, int writer, int local)
{
    struct redis_store *rs = rt->rs;
    if (rt->writer && !rt->local)
        rs->m_owned--;
    rt->writer = writer != 0;
    rt->local = writer && local;
    if (rt->writer && !rt->local)
        rs->m_owned++;
    if (!writer)
        rt->token[0] = '\0';
    rt->cbs->role(rt->arg, writer);
}

/* The topic goes on alone: a new local epoch, the document the hub has kept as its version 1
 * (or nothing yet), polled here. */
static void topic_go_local(struct store_topic *rt)
{
    /* A push topic keeps its version: nothing is published to it until Redis is back. */
    if (rt->push)
        return;
    uint64_t seq = rt->seq > 0 ? 1 : 0;
    store_ring_reset(&rt->ring, seq);
    topic_sync(rt, store_epoch_new(), seq, NULL, 0);
    if (rt->interest && !(rt->writer && rt->local))
        topic_set_writer(rt, 1, 1);
}

/* ---- stream entries ----------------------------------------------------------------------- */

struct entry {
    const char *id;
    int kind;
    uint64_t seq, epoch;
    const char *f;
    size_t flen;
    const char *t;
    size_t tlen;
};

static int entry_parse(const redisReply *e, struct entry *out)
{
    memset(out, 0, sizeof(*out));
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    out->id = e->element[0]->str;
    const redisReply *fv = e->element[1];
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *k = fv->element[i], *v = fv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
            continue;
        uint64_t n = 0;
        switch (k->str[0]) {
        case 'k':
            if (reply_u64(v, &n) == 0 && n >= 1 && n <= 4)
                out->kind = (int)n;
            break;
        case 's':
            reply_u64(v, &out->seq);
            break;
        case 'e':
            reply_u64(v, &out->epoch);
            break;
        case 'f':
            out->f = v->str;
            out->flen = v->len;
            break;
        case 't':
            out->t = v->str;
            out->tlen = v->len;
            break;
        }
    }
    return out->kind && out->f ? 0 : -1;
}

/* Hands one entry of the shared history to the hub. Returns 0, or -1 when the topic must
 * reload the stored snapshot (the entry does not follow what the hub serves). */
static int topic_take_entry(struct store_topic *rt, const struct entry *e)
{
    /* Own entries were published when their append was answered. */
    if (rt->writer && !rt->local && e->tlen == strlen(rt->token) &&
        memcmp(e->t, rt->token, e->tlen) == 0)
        return 0;
    const char *payload;
    size_t plen;
    frame_payload(e->f, e->flen, &payload, &plen);
    if (e->kind == STORE_ERROR || e->kind == STORE_RECOVERED) {
        if (e->epoch != rt->epoch)
            return 0;
        struct frame *f = e->flen ? frame_new_copy(e->f, e->flen, 0) : NULL;
        if (e->flen && f == NULL)
            return 0;
        rt->cbs->event(rt->arg, f, (enum store_kind)e->kind, payload, plen);
        frame_unref(f);
        return 0;
    }
    if (e->epoch == rt->epoch && e->seq <= rt->seq)
        return 0; /* had it */
    if (e->kind == STORE_PATCH && (e->epoch != rt->epoch || e->seq != rt->seq + 1))
        return -1;
    if (e->kind == STORE_DATA && e->epoch != rt->epoch)
        topic_sync(rt, e->epoch, 0, NULL, 0);
    struct frame *f = frame_new_copy(e->f, e->flen, e->seq);
    if (f == NULL)
        return -1;
    int rc = rt->cbs->event(rt->arg, f, (enum store_kind)e->kind, payload, plen);
    if (rc == 0) {
        rt->seq = e->seq;
        if (e->kind == STORE_PATCH)
            store_ring_push(&rt->ring, f);
        else
            store_ring_reset(&rt->ring, e->seq);
    }
    frame_unref(f);
    return rc;
}

/* Takes entries (oldest first) that come after the newest one handled. Returns 0, or -1 when
 * the topic must reload. */
static int topic_take_entries(struct store_topic *rt, const redisReply *arr, int reverse)
{
    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t j = 0; j < arr->elements; j++) {
        const redisReply *er = arr->element[reverse ? arr->elements - 1 - j : j];
        struct entry e;
        if (entry_parse(er, &e) != 0)
            continue;
        if (!stream_id_after(e.id, rt->last_id))
            continue;
        snprintf(rt->last_id, sizeof(rt->last_id), "%s", e.id);
        if (topic_take_entry(rt, &e) != 0)
            return -1;
    }
    return 0;
}

/* ---- load, lease, append ------------------------------------------------------------------ */

/* Serves the stored snapshot (epoch, seq, doc of reply elements i..i+2) and rebuilds the
 * local ring from the entries of tail (newest first) that lead up to it. Returns 1 when there
 * was a snapshot. */
static int topic_take_snapshot(struct store_topic *rt, const redisReply *const *snap,
                               const redisReply *tail)
{
    uint64_t epoch, seq;
    if (reply_u64(snap[0], &epoch) != 0 || reply_u64(snap[1], &seq) != 0 ||
        snap[2]->type != REDIS_REPLY_STRING)
        return 0;
    /* The patches of this epoch just before the snapshot, oldest first, consecutive. */
    size_t n = 0;
    uint64_t want = seq;
    if (tail && tail->type == REDIS_REPLY_ARRAY) {
        for (size_t j = 0; j < tail->elements; j++) {
            struct entry e;
            if (entry_parse(tail->element[j], &e) != 0)
                continue;
            if (e.kind != STORE_PATCH)
                continue;
            if (e.epoch != epoch || e.seq != want)
                break;
            n++;
            want--;
        }
    }
    if (epoch != rt->epoch || seq != rt->seq) {
        store_ring_reset(&rt->ring, seq - n);
        size_t pushed = 0;
        for (size_t j = tail ? tail->elements : 0; j-- > 0 && pushed < n;) {
            struct entry e;
            if (entry_parse(tail->element[j], &e) != 0 || e.kind != STORE_PATCH ||
                e.epoch != epoch || e.seq <= seq - n || e.seq > seq)
                continue;
            struct frame *f = frame_new_copy(e.f, e.flen, e.seq);
            if (f == NULL) {
                store_ring_reset(&rt->ring, seq);
                break;
            }
            store_ring_push(&rt->ring, f);
            frame_unref(f);
            pushed++;
        }
        if (rt->ring.last != seq)
            store_ring_reset(&rt->ring, seq);
    }
    topic_sync(rt, epoch, seq, snap[2]->str, snap[2]->len);
    return 1;
}

static void on_load(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct store_topic *rt = x->rt;
    const redisReply *r = reply;
    rt->loading = 0;
    if (!cmd_done(x, r) || r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        cmd_release(x);
        return;
    }
    const redisReply *tail = r->element[3];
    int had = topic_take_snapshot(rt, (const redisReply *const *)r->element, tail);
    /* The reader starts after the newest entry. */
    char newest[48] = "0-0";
    if (tail->type == REDIS_REPLY_ARRAY && tail->elements > 0 &&
        tail->element[0]->type == REDIS_REPLY_ARRAY && tail->element[0]->elements == 2 &&
        tail->element[0]->element[0]->type == REDIS_REPLY_STRING)
        snprintf(newest, sizeof(newest), "%s", tail->element[0]->element[0]->str);
    if (stream_id_after(newest, rt->last_id))
        snprintf(rt->last_id, sizeof(rt->last_id), "%s", newest);
    if (!had && rt->push && (rt->epoch == 0 || rt->seq != 0)) {
        /* Nothing published yet (or Redis lost it): an epoch of this node's, which the first
         * publish from any node stores (a concurrent first publish of another epoch wins or
         * loses as a whole). */
        store_ring_reset(&rt->ring, 0);
        topic_sync(rt, store_epoch_new(), 0, NULL, 0);
    }
    rt->loaded = 1;
    /* A stored snapshot ends local mode: this node no longer polls alone; it competes. */
    if (had && rt->local)
        topic_set_writer(rt, 0, 0);
    rt->next_lease_ms = 0;
    reader_kick(rt->rs);
    cmd_release(x);
}

static void topic_load(struct store_topic *rt)
{
    if (rt->loading || rt->closed)
        return;
    const char *keys[] = {rt->k_snap, rt->k_log};
    char count[24];
    snprintf(count, sizeof(count), "%zu", rt->rs->hp.history_events + 1);
    const char *args[] = {count};
    if (eval(rt, on_load, script_load, 2, keys, 1, args, NULL) == 0)
        rt->loading = 1;
}

static void on_acquire(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct store_topic *rt = x->rt;
    struct redis_store *rs = x->rs;
    const redisReply *r = reply;
    rt->acquiring = 0;
    if (!cmd_done(x, r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        cmd_release(x);
        return;
    }
    if (r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer != 1 ||
        r->elements != 5) {
        /* Someone else holds it. A node that was polling alone stops. The next attempt is due
         * when that lease would lapse without renewal: a dead holder is replaced at once, and
         * a live one costs one attempt per renewal period or so, not one per tick. */
        if (rt->local)
            topic_set_writer(rt, 0, 0);
        rt->token[0] = '\0';
        long long left = (long long)rs->lease_ms / 3;
        if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER &&
            r->element[1]->integer > 0)
            left = r->element[1]->integer;
        if (left > (long long)rs->lease_ms)
            left = (long long)rs->lease_ms;
        rt->next_lease_ms = loop_now_ms(rs->loop) + (uint64_t)left + 5;
        cmd_release(x);
        return;
    }
    rs->m_acquired++;
    /* The token was set when the script was sent; leaving local mode below must not lose it. */
    char token[112];
    snprintf(token, sizeof(token), "%s", rt->token);
    /* The events the former writer appended that this node has not read yet come first, so
     * that the snapshot below is what the hub already serves: no fresh data at a failover. */
    if (!rt->local && rt->loaded)
        topic_take_entries(rt, r->element[4], 0); /* on a gap the snapshot below wins */
    const redisReply *snap[3] = {r->element[1], r->element[2], r->element[3]};
    int had = topic_take_snapshot(rt, snap, NULL);
    if (!had) {
        /* No stored version (a new topic, or Redis lost its data): a new epoch, never the ids
         * of an old one, starting with a data event (the poller polls at once). */
        store_ring_reset(&rt->ring, 0);
        topic_sync(rt, store_epoch_new(), 0, NULL, 0);
        log_event(LOG_INFO, "cluster: new epoch",
                  (struct log_field[]){LOG_STR("stream", rt->name), LOG_STR("topic", rt->hash)}, 2);
    }
    log_event(LOG_INFO, "cluster: lease acquired",
              (struct log_field[]){LOG_STR("stream", rt->name), LOG_STR("topic", rt->hash),
                                   LOG_NUM("seq", rt->seq)},
              3);
    rt->loaded = 1;
    if (rt->writer && rt->local)
        topic_set_writer(rt, 0, 0);
    topic_set_writer(rt, 1, 0);
    snprintf(rt->token, sizeof(rt->token), "%s", token);
    rt->next_lease_ms = loop_now_ms(rs->loop) + rs->lease_ms / 3;
    reader_kick(rs);
    cmd_release(x);
}

static void topic_acquire(struct store_topic *rt)
{
    struct redis_store *rs = rt->rs;
    if (rt->acquiring || rt->closed)
        return;
    /* A new token per acquisition: a former holder's writes never match it. */
    char token[112];
    snprintf(token, sizeof(token), "%s:%016llx", rs->node_id, (unsigned long long)rng_next(rs));
    char lease[24], count[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)rs->lease_ms);
    snprintf(count, sizeof(count), "%zu", rs->hp.history_events + 1);
    const char *keys[] = {rt->k_lease, rt->k_snap, rt->k_log};
    const char *args[] = {token, lease, rt->loaded && !rt->local ? rt->last_id : "", count};
    if (eval(rt, on_acquire, script_acquire, 3, keys, 4, args, NULL) == 0) {
        rt->acquiring = 1;
        snprintf(rt->token, sizeof(rt->token), "%s", token);
    }
}

static void lease_lost(struct store_topic *rt, const char *why)
{
    rt->rs->m_lost++;
    log_event(LOG_WARN, "cluster: lease lost",
              (struct log_field[]){LOG_STR("stream", rt->name), LOG_STR("topic", rt->hash),
                                   LOG_STR("reason", why)},
              3);
    topic_set_writer(rt, 0, 0);
}

static void on_renew(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct store_topic *rt = x->rt;
    const redisReply *r = reply;
    if (cmd_done(x, r) && rt->writer && !rt->local && r->type == REDIS_REPLY_INTEGER &&
        r->integer != 1)
        lease_lost(rt, "taken over or expired");
    cmd_release(x);
}

static void topic_renew(struct store_topic *rt)
{
    char lease[24], ttl[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)rt->rs->lease_ms);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)STORE_REDIS_TTL_MS);
    const char *keys[] = {rt->k_lease, rt->k_snap, rt->k_log};
    const char *args[] = {rt->token, lease, ttl};
    eval(rt, on_renew, script_renew, 3, keys, 3, args, NULL);
}

static void on_release(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    cmd_done(x, reply);
    cmd_release(x);
}

/* KEYS snap log kept alive: see script_touch. */
static void topic_touch(struct store_topic *rt)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)STORE_REDIS_TTL_MS);
    const char *keys[] = {rt->k_snap, rt->k_log};
    const char *args[] = {ttl};
    eval(rt, on_release, script_touch, 2, keys, 1, args, NULL);
}

/* The answer to a push topic's publish: taken (ok 1), or refused because another publish came
 * first (ok -1: the entries this node had not read yet and the stored snapshot come with the
 * refusal and are handed to the hub first, so that a publisher trying again diffs against the
 * current version), or not answered (ok 0). */
static void on_publish(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct store_topic *rt = x->rt;
    const redisReply *r = reply;
    int usable = cmd_done(x, r);
    int ok = 0;
    rt->appending = 0;
    if (usable && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer == 1)
            ok = 1;
        else if (r->elements == 5)
            ok = -1;
    }
    if (ok == 1 && rt->npend == 1) {
        struct frame *f = rt->pend[0].frame;
        if (rt->pend[0].kind == STORE_PATCH)
            store_ring_push(&rt->ring, f);
        else
            store_ring_reset(&rt->ring, f->seq);
        rt->seq = f->seq;
    } else if (ok == -1) {
        rt->rs->m_publish_conflicts++;
        topic_take_entries(rt, r->element[4], 0); /* on a gap the snapshot below wins */
        const redisReply *snap[3] = {r->element[1], r->element[2], r->element[3]};
        if (!topic_take_snapshot(rt, snap, NULL)) {
            /* No stored snapshot although this node had a version: Redis lost it. A new epoch,
             * empty: the next publish stores its document whole. */
            store_ring_reset(&rt->ring, 0);
            topic_sync(rt, store_epoch_new(), 0, NULL, 0);
        }
    }
    for (size_t i = 0; i < rt->npend; i++)
        frame_unref(rt->pend[i].frame);
    rt->npend = 0;
    if (!rt->closed) {
        rt->cbs->appended(rt->arg, ok);
        reader_kick(rt->rs); /* the topic's stream is read again */
    }
    cmd_release(x);
}

/* A push topic's publish: one version (a DATA or PATCH event and the document after it), sent
 * with script_publish. Refused at once (ok 0) while the store is not up or the topic not
 * loaded: a node alone must not hand out ids the others never see. */
static void topic_publish(struct store_topic *rt, const struct store_event *events, size_t n,
                          const char *doc, size_t doc_len)
{
    struct redis_store *rs = rt->rs;
    if (n != 1 || doc == NULL || (events[0].kind != STORE_DATA && events[0].kind != STORE_PATCH) ||
        events[0].frame->seq == 0 || rs->state != CLUSTER_UP || !rt->loaded) {
        rt->cbs->appended(rt->arg, 0);
        return;
    }
    struct frame *f = events[0].frame;
    char ttl[24], maxlen[24], epoch[24], prev[24], count[24], kind[4], seq[24];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)STORE_REDIS_TTL_MS);
    snprintf(maxlen, sizeof(maxlen), "%zu", rs->hp.history_events ? rs->hp.history_events : 1);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)rt->epoch);
    snprintf(prev, sizeof(prev), "%llu", (unsigned long long)(f->seq - 1));
    snprintf(count, sizeof(count), "%zu", rs->hp.history_events + 1);
    snprintf(kind, sizeof(kind), "%d", (int)events[0].kind);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)f->seq);
    const char *keys[] = {rt->k_snap, rt->k_log};
    const char *args[] = {ttl,         maxlen, epoch, prev,    rt->last_id, count,
                          rs->node_id, kind,   seq,   f->data, doc};
    size_t lens[11];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(args[i]);
    lens[9] = f->len; /* the frame and the document are not NUL-terminated */
    lens[10] = doc_len;
    if (eval(rt, on_publish, script_publish, 2, keys, 11, args, lens) != 0) {
        rs->m_errors++;
        rt->cbs->appended(rt->arg, 0);
        return;
    }
    rt->appending = 1;
    rt->pend[0].kind = events[0].kind;
    rt->pend[0].frame = frame_ref(f);
    rt->npend = 1;
}

static void on_append(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct store_topic *rt = x->rt;
    const redisReply *r = reply;
    int usable = cmd_done(x, r);
    int ok = usable && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    rt->appending = 0;
    if (ok) {
        for (size_t i = 0; i < rt->npend; i++) {
            struct frame *f = rt->pend[i].frame;
            if (rt->pend[i].kind == STORE_PATCH)
                store_ring_push(&rt->ring, f);
            else if (rt->pend[i].kind == STORE_DATA)
                store_ring_reset(&rt->ring, f->seq);
            if (f->seq)
                rt->seq = f->seq;
        }
    }
    for (size_t i = 0; i < rt->npend; i++)
        frame_unref(rt->pend[i].frame);
    rt->npend = 0;
    if (!rt->closed) {
        if (usable && !ok && rt->writer && !rt->local)
            lease_lost(rt, "fenced out");
        rt->cbs->appended(rt->arg, ok);
    }
    cmd_release(x);
}

/* ---- the reader --------------------------------------------------------------------------- */

static size_t bucket_of(const char *k_log)
{
    return (size_t)(json_hash_bytes(k_log, strlen(k_log), 0x726473) % TOPIC_BUCKETS);
}

static struct store_topic *topic_by_log_key(struct redis_store *rs, const char *key)
{
    for (struct store_topic *rt = rs->buckets[bucket_of(key)]; rt; rt = rt->bnext)
        if (strcmp(rt->k_log, key) == 0)
            return rt;
    return NULL;
}

static void reader_send(struct redis_store *rs);

static void on_xread(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct redis_store *rs = x->rs;
    const redisReply *r = reply;
    rs->read_pending = 0;
    int usable = cmd_done(x, r);
    if (usable && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
                s->element[0]->type != REDIS_REPLY_STRING)
                continue;
            struct store_topic *rt = topic_by_log_key(rs, s->element[0]->str);
            /* A push topic publishing reads these entries again after the answer. */
            if (rt == NULL || !reader_wants(rt))
                continue;
            if (topic_take_entries(rt, s->element[1], 0) != 0) {
                rt->loaded = 0;
                topic_load(rt);
            }
        }
    }
    cmd_release(x);
    if (usable)
        reader_send(rs);
}

/* 1 when the reader reads the topic's stream. A push topic with a publish in flight is left out
 * until its answer came (on_publish kicks the reader): its own entry may reach the reader first,
 * and must neither be published twice nor make a later entry look like a gap. */
static int reader_wants(const struct store_topic *rt)
{
    return rt->loaded && !rt->closed && !(rt->push && rt->appending);
}

/* Sends one XREAD BLOCK for every loaded topic. */
static void reader_send(struct redis_store *rs)
{
    if (rs->read_pending || rs->rd.state != CONN_UP || rs->freeing)
        return;
    size_t n = 0;
    for (struct store_topic *rt = rs->topics; rt; rt = rt->next)
        n += reader_wants(rt);
    if (n == 0)
        return;
    size_t argc = 6 + 2 * n;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    if (argv == NULL || lens == NULL)
        goto out;
    size_t a = 0;
    argv[a++] = "XREAD";
    argv[a++] = "COUNT";
    argv[a++] = STORE_REDIS_READ_COUNT;
    argv[a++] = "BLOCK";
    argv[a++] = STORE_REDIS_BLOCK_MS;
    argv[a++] = "STREAMS";
    for (struct store_topic *rt = rs->topics; rt; rt = rt->next)
        if (reader_wants(rt))
            argv[a++] = rt->k_log;
    for (struct store_topic *rt = rs->topics; rt; rt = rt->next)
        if (reader_wants(rt))
            argv[a++] = rt->last_id[0] ? rt->last_id : "0-0";
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (conn_send(&rs->rd, NULL, on_xread, 0, (int)argc, argv, lens) == 0) {
        rs->read_pending = 1;
        rs->read_stale = 0;
    }
out:
    free(argv);
    free(lens);
}

static void on_unblock(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    cmd_done(x, reply);
    cmd_release(x);
}

/* The set of topics read changed: the XREAD in flight is cut short (CLIENT UNBLOCK from the
 * command connection) and sent again with the new set. */
static void reader_kick(struct redis_store *rs)
{
    if (!rs->read_pending) {
        reader_send(rs);
        return;
    }
    if (rs->read_stale || rs->rd.client_id <= 0)
        return;
    rs->read_stale = 1;
    char id[32];
    snprintf(id, sizeof(id), "%lld", rs->rd.client_id);
    const char *argv[] = {"CLIENT", "UNBLOCK", id};
    size_t lens[] = {6, 7, strlen(id)};
    conn_send(&rs->cmd, NULL, on_unblock, 0, 3, argv, lens);
}

/* ---- connections -------------------------------------------------------------------------- */

static void set_state(struct redis_store *rs, enum cluster_state st, const char *why)
{
    if (rs->state == st)
        return;
    enum cluster_state was = rs->state;
    rs->m_state[rs->state] = 0;
    rs->state = st;
    rs->m_state[st] = 1;
    rs->m_connected = st == CLUSTER_UP;
    if (st == CLUSTER_UP) {
        rs->m_to_up++;
        log_event(LOG_INFO,
                  was == CLUSTER_DEGRADED ? "cluster: redis is back; rejoining"
                                          : "cluster: connected to redis",
                  (struct log_field[]){LOG_STR("redis", rs->display)}, 1);
        for (struct store_topic *rt = rs->topics; rt; rt = rt->next) {
            rt->loaded = 0;
            rt->next_lease_ms = 0;
            topic_load(rt);
        }
        return;
    }
    if (st == CLUSTER_DEGRADED) {
        rs->m_to_degraded++;
        log_event(LOG_WARN, "cluster: redis unreachable; serving alone (degraded)",
                  (struct log_field[]){LOG_STR("redis", rs->display), LOG_STR("error", why),
                                       LOG_NUM("retry_in_ms", rs->backoff_ms)},
                  3);
        for (struct store_topic *rt = rs->topics; rt; rt = rt->next) {
            rt->loaded = 0;
            rt->loading = rt->acquiring = 0;
            if (rt->writer && !rt->local)
                lease_lost(rt, "redis unreachable");
            topic_go_local(rt);
        }
    }
}

/* The node joins once all three connections answered their first commands. */
static void store_check_up(struct redis_store *rs)
{
    if (rs->cmd.ready && rs->rd.ready && rs->rd.client_id > 0 && rs->sb.ready) {
        rs->backoff_ms = 0;
        set_state(rs, CLUSTER_UP, NULL);
        reader_send(rs);
    }
}

/* The SUBSCRIBE connection's one callback: the subscription's confirmation, then each refresh
 * request another node PUBLISHed. r NULL: the connection is going away (conn_fail, free). */
static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv)
{
    struct conn *c = priv;
    struct redis_store *rs = c->rs;
    const redisReply *r = reply;
    if (r == NULL || rs->freeing || c->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        rs->m_errors++;
        conn_fail(c, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        c->ready = 1;
        store_check_up(rs);
        return;
    }
    const redisReply *m = r->element[2];
    if (strcmp(r->element[0]->str, "message") != 0 || m->type != REDIS_REPLY_STRING ||
        m->len > STORE_REDIS_MAX_MESSAGE)
        return;
    const char *nl = memchr(m->str, '\n', m->len);
    size_t idlen = nl ? (size_t)(nl - m->str) : 0;
    /* This node's own requests: it refreshed its own topics when it sent them. */
    if (nl == NULL || (idlen == strlen(rs->node_id) && memcmp(m->str, rs->node_id, idlen) == 0))
        return;
    rs->m_refresh_received++;
    /* hiredis NUL-terminates the payload; the prefix is what follows the node id. */
    if (rs->base.refresh_fn && memchr(nl + 1, '\0', m->len - idlen - 1) == NULL)
        rs->base.refresh_fn(rs->base.refresh_arg, nl + 1);
}

static void on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct conn *c = x->c;
    struct redis_store *rs = x->rs;
    const redisReply *r = reply;
    int ok = cmd_done(x, r);
    cmd_release(x);
    if (!ok) {
        if (r)
            conn_fail(c, "AUTH or SELECT refused");
        return;
    }
    if (c->reader && r->type == REDIS_REPLY_INTEGER)
        c->client_id = r->integer;
    c->ready = 1;
    store_check_up(rs);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct conn *c = cac->data;
    if (c == NULL)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL; /* hiredis frees it */
        conn_fail(c, cac->errstr[0] ? cac->errstr : "connect failed");
        return;
    }
    c->state = CONN_UP;
    struct redis_store *rs = c->rs;
    /* AUTH and SELECT go first; the connection counts as up once the last answer came. */
    const struct config_redis_addr *a = &rs->addr;
    if (a->password[0]) {
        const char *argv[] = {"AUTH", a->user, a->password};
        size_t lens[] = {4, strlen(a->user), strlen(a->password)};
        if (a->user[0])
            conn_send(c, NULL, on_release, 0, 3, argv, lens);
        else {
            const char *argv2[] = {"AUTH", a->password};
            size_t lens2[] = {4, strlen(a->password)};
            conn_send(c, NULL, on_release, 0, 2, argv2, lens2);
        }
    }
    if (c->sub) {
        /* Channels are not per database: the channel's name carries it (rs->channel). The
         * subscription lasts as long as the connection; its callback is not a command's. */
        const char *argv[] = {"SUBSCRIBE", rs->channel};
        size_t lens[] = {9, strlen(rs->channel)};
        if (redisAsyncCommandArgv(c->ac, on_sub_message, c, 2, argv, lens) != REDIS_OK)
            conn_fail(c, "cannot subscribe");
        return;
    }
    char db[16];
    snprintf(db, sizeof(db), "%u", a->db);
    const char *sel[] = {"SELECT", db};
    size_t sell[] = {6, strlen(db)};
    conn_send(c, NULL, c->reader ? on_release : on_hello, 0, 2, sel, sell);
    if (c->reader) {
        const char *id[] = {"CLIENT", "ID"};
        size_t idl[] = {6, 2};
        conn_send(c, NULL, on_hello, 0, 2, id, idl);
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct conn *c = cac->data;
    if (c == NULL)
        return;
    c->ac = NULL; /* hiredis frees it */
    conn_fail(c, cac->errstr[0] ? cac->errstr : "connection closed");
}

/* Drops the three connections (the others too: the node is either joined or alone) and
 * schedules a reconnection with backoff. */
static void conn_fail(struct conn *c, const char *why)
{
    struct redis_store *rs = c->rs;
    if (rs->freeing)
        return;
    struct conn *all[] = {&rs->cmd, &rs->rd, &rs->sb};
    for (int i = 0; i < 3; i++) {
        struct conn *k = all[i];
        k->state = CONN_DOWN;
        k->ready = 0;
        k->pending = 0;
        k->client_id = 0;
        if (k->ac) {
            redisAsyncContext *ac = k->ac;
            k->ac = NULL;
            ac->data = NULL;
            redisAsyncFree(ac); /* pending callbacks run with NULL replies */
        }
    }
    rs->read_pending = 0;
    rs->backoff_ms = rs->backoff_ms ? rs->backoff_ms * 2 : STORE_REDIS_BACKOFF_MIN;
    if (rs->backoff_ms > STORE_REDIS_BACKOFF_MAX)
        rs->backoff_ms = STORE_REDIS_BACKOFF_MAX;
    uint64_t delay = rs->backoff_ms / 2 + rng_next(rs) % (rs->backoff_ms / 2 + 1);
    rs->next_connect_ms = loop_now_ms(rs->loop) + delay;
    set_state(rs, CLUSTER_DEGRADED, why);
}

static int conn_open(struct conn *c)
{
    struct redis_store *rs = c->rs;
    redisAsyncContext *ac = rs->addr.path[0] ? redisAsyncConnectUnix(rs->addr.path)
                                             : redisAsyncConnect(rs->addr.host, (int)rs->addr.port);
    if (ac == NULL)
        return -1;
    if (ac->err) {
        redisAsyncFree(ac);
        return -1;
    }
    ac->data = c;
    if (redis_loop_attach(ac, rs->loop) != 0) {
        ac->data = NULL;
        redisAsyncFree(ac);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = CONN_CONNECTING;
    c->started_ms = loop_now_ms(rs->loop);
    c->pending = 0;
    return 0;
}

static void store_connect(struct redis_store *rs)
{
    if (conn_open(&rs->cmd) != 0 || conn_open(&rs->rd) != 0 || conn_open(&rs->sb) != 0)
        conn_fail(&rs->cmd, "cannot connect");
}

/* Every 100 ms: reconnection, stalled connections, lease renewals and attempts. */
static void on_tick(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct redis_store *rs = arg;
    uint64_t now = loop_now_ms(loop);
    if (rs->cmd.state == CONN_DOWN && rs->rd.state == CONN_DOWN && rs->sb.state == CONN_DOWN &&
        now >= rs->next_connect_ms)
        store_connect(rs);
    struct conn *all[] = {&rs->cmd, &rs->rd, &rs->sb};
    for (int i = 0; i < 3; i++) {
        struct conn *c = all[i];
        /* Connecting counts until the first answers (AUTH, SELECT) came. */
        if ((c->state == CONN_CONNECTING || (c->state == CONN_UP && !c->ready)) &&
            now - c->started_ms > STORE_REDIS_CONNECT_MS) {
            conn_fail(c, c->state == CONN_UP ? "redis does not answer" : "connect timeout");
            break;
        }
        /* The reader's XREAD legitimately blocks for STORE_REDIS_BLOCK_MS. */
        if (c->state == CONN_UP && c->pending > 0 &&
            now - c->oldest_ms > STORE_REDIS_STALL_MS + (c->reader ? 2000 : 0)) {
            conn_fail(c, "redis does not answer");
            break;
        }
    }
    if (rs->state == CLUSTER_UP) {
        for (struct store_topic *rt = rs->topics; rt; rt = rt->next) {
            if (rt->closed || now < rt->next_lease_ms)
                continue;
            if (rt->push) {
                if (rt->loaded)
                    topic_touch(rt);
                else if (!rt->loading)
                    topic_load(rt);
                rt->next_lease_ms = now + (rt->loaded ? STORE_REDIS_TTL_MS / 4 : 0);
                continue;
            }
            if (rt->writer && !rt->local) {
                topic_renew(rt);
                rt->next_lease_ms = now + rs->lease_ms / 3;
            } else if (rt->interest && rt->loaded) {
                topic_acquire(rt);
                rt->next_lease_ms = now + rs->lease_ms / 3;
            } else if (!rt->loaded && !rt->loading) {
                topic_load(rt);
            }
        }
        if (!rs->read_pending)
            reader_send(rs);
    }
    loop_timer_start(timer, 100);
}

/* ---- store ops ---------------------------------------------------------------------------- */

static struct store_topic *redis_open(struct store *s, const char *key,
                                      const struct topic_spec *spec,
                                      const struct store_topic_cbs *cbs, void *arg)
{
    struct redis_store *rs = (struct redis_store *)s;
    struct store_topic *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    if (store_ring_init(&rt->ring, rs->loop, &rs->hp) != 0 ||
        store_redis_topic_id(key, spec, rt->hash) != 0) {
        store_ring_dispose(&rt->ring);
        free(rt);
        return NULL;
    }
    rt->rs = rs;
    rt->cbs = cbs;
    rt->arg = arg;
    rt->refs = 1;
    rt->push = spec->push != 0;
    snprintf(rt->name, sizeof(rt->name), "%s", spec->name ? spec->name : "-");
    snprintf(rt->k_lease, sizeof(rt->k_lease), "pollcast:{%s}:lease", rt->hash);
    snprintf(rt->k_snap, sizeof(rt->k_snap), "pollcast:{%s}:snap", rt->hash);
    snprintf(rt->k_log, sizeof(rt->k_log), "pollcast:{%s}:log", rt->hash);
    rt->next = rs->topics;
    if (rs->topics)
        rs->topics->prev = rt;
    rs->topics = rt;
    size_t b = bucket_of(rt->k_log);
    rt->bnext = rs->buckets[b];
    rs->buckets[b] = rt;
    if (rs->state == CLUSTER_UP)
        topic_load(rt);
    else if (rs->state == CLUSTER_DEGRADED)
        topic_go_local(rt);
    /* Connecting: the topic waits (no document) until Redis answers or is given up on. */
    return rt;
}

static void redis_close(struct store_topic *rt)
{
    if (rt == NULL)
        return;
    struct redis_store *rs = rt->rs;
    if (rt->writer && !rt->local) {
        const char *keys[] = {rt->k_lease};
        const char *args[] = {rt->token};
        eval(rt, on_release, script_release, 1, keys, 1, args, NULL);
        rs->m_owned--;
    }
    rt->closed = 1;
    rt->writer = 0;
    if (rt->prev)
        rt->prev->next = rt->next;
    else
        rs->topics = rt->next;
    if (rt->next)
        rt->next->prev = rt->prev;
    struct store_topic **pp = &rs->buckets[bucket_of(rt->k_log)];
    while (*pp && *pp != rt)
        pp = &(*pp)->bnext;
    if (*pp)
        *pp = rt->bnext;
    topic_unref(rt);
}

static void redis_interest(struct store_topic *rt, int subscribers)
{
    rt->interest = subscribers != 0;
    if (!rt->interest || rt->push)
        return;
    if (rt->rs->state == CLUSTER_DEGRADED && !rt->writer)
        topic_set_writer(rt, 1, 1);
    else if (rt->rs->state == CLUSTER_UP && rt->loaded && !rt->writer)
        rt->next_lease_ms = 0; /* compete at the next tick */
}

static int redis_append(struct store_topic *rt, const struct store_event *events, size_t n,
                        const char *doc, size_t doc_len)
{
    struct redis_store *rs = rt->rs;
    if (rt->appending || n == 0 || n > 2)
        return -1;
    if (rt->push) {
        topic_publish(rt, events, n, doc, doc_len);
        return 0;
    }
    if (rt->local || !rt->writer) {
        /* Alone (degraded), as the memory store; not the writer: refused. */
        int ok = rt->local && rt->writer;
        for (size_t i = 0; ok && i < n; i++) {
            struct frame *f = events[i].frame;
            if (events[i].kind == STORE_PATCH)
                store_ring_push(&rt->ring, f);
            else if (events[i].kind == STORE_DATA)
                store_ring_reset(&rt->ring, f->seq);
            if (f->seq)
                rt->seq = f->seq;
        }
        rt->cbs->appended(rt->arg, ok);
        return 0;
    }
    char ttl[24], maxlen[24], epoch[24], seq[24], cnt[8];
    char kinds[2][4], seqs[2][24];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)STORE_REDIS_TTL_MS);
    snprintf(maxlen, sizeof(maxlen), "%zu", rs->hp.history_events ? rs->hp.history_events : 1);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)rt->epoch);
    uint64_t after = rt->seq;
    for (size_t i = 0; i < n; i++)
        if (events[i].frame->seq)
            after = events[i].frame->seq;
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)after);
    snprintf(cnt, sizeof(cnt), "%zu", n);
    const char *keys[] = {rt->k_lease, rt->k_snap, rt->k_log};
    const char *args[8 + 6];
    size_t lens[8 + 6];
    args[0] = rt->token;
    args[1] = ttl;
    args[2] = maxlen;
    args[3] = epoch;
    args[4] = seq;
    args[5] = doc ? "1" : "0";
    args[6] = doc ? doc : "";
    args[7] = cnt;
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(args[i]);
    lens[6] = doc ? doc_len : 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(kinds[i], sizeof(kinds[i]), "%d", (int)events[i].kind);
        snprintf(seqs[i], sizeof(seqs[i]), "%llu", (unsigned long long)events[i].frame->seq);
        args[8 + 3 * i] = kinds[i];
        lens[8 + 3 * i] = strlen(kinds[i]);
        args[9 + 3 * i] = seqs[i];
        lens[9 + 3 * i] = strlen(seqs[i]);
        args[10 + 3 * i] = events[i].frame->data;
        lens[10 + 3 * i] = events[i].frame->len;
    }
    if (eval(rt, on_append, script_append, 3, keys, (int)(8 + 3 * n), args, lens) != 0) {
        /* Not connected or over the bounds toward Redis: the hub drops these events. */
        rs->m_errors++;
        rt->cbs->appended(rt->arg, 0);
        return 0;
    }
    rt->appending = 1;
    for (size_t i = 0; i < n; i++) {
        rt->pend[i].kind = events[i].kind;
        rt->pend[i].frame = frame_ref(events[i].frame);
    }
    rt->npend = n;
    return 0;
}

static int redis_history(struct store_topic *rt, uint64_t after_seq,
                         void (*push)(void *arg, struct frame *f), void *arg)
{
    return store_ring_history(&rt->ring, after_seq, push, arg);
}

static void redis_free(struct store *s)
{
    struct redis_store *rs = (struct redis_store *)s;
    if (rs == NULL)
        return;
    while (rs->topics)
        redis_close(rs->topics);
    /* The releases (and anything else queued) go out before the process ends: the loop may
     * not run again. Bounded by 200 ms; Redis need not answer. */
    if (rs->cmd.state == CONN_UP && rs->cmd.ac) {
        redisContext *c = &rs->cmd.ac->c;
        int done = 0;
        for (int i = 0; i < 20 && !done; i++) {
            if (redisBufferWrite(c, &done) != REDIS_OK)
                break;
            if (!done) {
                struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
                poll(&pfd, 1, 10);
            }
        }
    }
    rs->freeing = 1;
    struct conn *all[] = {&rs->cmd, &rs->rd, &rs->sb};
    for (int i = 0; i < 3; i++)
        if (all[i]->ac) {
            redisAsyncContext *ac = all[i]->ac;
            all[i]->ac = NULL;
            ac->data = NULL;
            redisAsyncFree(ac); /* refresh answers run with NULL replies: the queue empties */
        }
    while (rs->refresh_head) {
        struct refresh_out *o = rs->refresh_head;
        rs->refresh_head = o->next;
        free(o);
    }
    loop_timer_free(rs->tick);
    free(rs);
}

/* The answer to a refresh PUBLISH (NULL: the connection went away): its request leaves the
 * queue, the oldest, as answers come in order. */
static void on_refresh_published(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cmd_ctx *x = priv;
    struct redis_store *rs = x->rs;
    cmd_done(x, reply);
    cmd_release(x);
    struct refresh_out *o = rs->refresh_head;
    if (o == NULL)
        return;
    rs->refresh_head = o->next;
    if (rs->refresh_head == NULL)
        rs->refresh_tail = NULL;
    rs->nrefresh--;
    free(o);
}

static int redis_refresh(struct store *s, const char *prefix)
{
    struct redis_store *rs = (struct redis_store *)s;
    if (rs->state != CLUSTER_UP)
        return STORE_REFRESH_DEGRADED;
    for (const struct refresh_out *o = rs->refresh_head; o; o = o->next)
        if (strcmp(o->prefix, prefix) == 0)
            return STORE_REFRESH_FORWARDED; /* the one on its way asks for this one too */
    if (rs->nrefresh >= STORE_REDIS_MAX_REFRESH)
        return STORE_REFRESH_BUSY;
    size_t plen = strlen(prefix), idlen = strlen(rs->node_id);
    if (idlen + 1 + plen > STORE_REDIS_MAX_MESSAGE)
        return STORE_REFRESH_BUSY;
    struct refresh_out *o = malloc(sizeof(*o) + plen + 1);
    char *msg = malloc(idlen + 1 + plen);
    if (o == NULL || msg == NULL) {
        free(o);
        free(msg);
        return STORE_REFRESH_BUSY;
    }
    memcpy(o->prefix, prefix, plen + 1);
    o->next = NULL;
    memcpy(msg, rs->node_id, idlen);
    msg[idlen] = '\n';
    memcpy(msg + idlen + 1, prefix, plen);
    const char *argv[] = {"PUBLISH", rs->channel, msg};
    size_t lens[] = {7, strlen(rs->channel), idlen + 1 + plen};
    int rc = conn_send(&rs->cmd, NULL, on_refresh_published, 0, 3, argv, lens);
    free(msg);
    if (rc != 0) {
        free(o);
        return STORE_REFRESH_BUSY;
    }
    if (rs->refresh_tail)
        rs->refresh_tail->next = o;
    else
        rs->refresh_head = o;
    rs->refresh_tail = o;
    rs->nrefresh++;
    rs->m_refresh_sent++;
    return STORE_REFRESH_FORWARDED;
}

static const struct store_ops redis_ops = {
    .name = "redis",
    .open = redis_open,
    .close = redis_close,
    .interest = redis_interest,
    .append = redis_append,
    .history = redis_history,
    .refresh = redis_refresh,
    .free = redis_free,
};

struct store *store_redis_new(struct loop *loop, const struct store_redis_params *p, char *err,
                              size_t errlen)
{
    struct redis_store *rs = calloc(1, sizeof(*rs));
    if (rs == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rs->base.ops = &redis_ops;
    rs->loop = loop;
    rs->addr = *p->addr;
    rs->lease_ms = p->lease_ms;
    rs->hp = p->history;
    if (p->node_id && *p->node_id) {
        snprintf(rs->node_id, sizeof(rs->node_id), "%s", p->node_id);
    } else {
        char host[64] = "node";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(rs->node_id, sizeof(rs->node_id), "%s-%ld", host, (long)getpid());
    }
    if (rs->addr.path[0])
        snprintf(rs->display, sizeof(rs->display), "unix:%s?db=%u", rs->addr.path, rs->addr.db);
    else
        snprintf(rs->display, sizeof(rs->display), "%s:%u/%u", rs->addr.host, rs->addr.port,
                 rs->addr.db);
    if (getrandom(&rs->rng, sizeof(rs->rng), GRND_NONBLOCK) != (ssize_t)sizeof(rs->rng) ||
        rs->rng == 0)
        rs->rng = loop_wall_ms() ^ 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    rs->cmd.rs = rs->rd.rs = rs->sb.rs = rs;
    rs->rd.reader = 1;
    rs->sb.sub = 1;
    snprintf(rs->channel, sizeof(rs->channel), "pollcast:refresh:%u", rs->addr.db);
    rs->state = CLUSTER_CONNECTING;
    rs->m_state[CLUSTER_CONNECTING] = 1;
    metrics_histogram_init(&rs->m_latency, latency_bounds,
                           sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    rs->tick = loop_timer_new(loop, on_tick, rs);
    if (rs->tick == NULL) {
        free(rs);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    loop_timer_start(rs->tick, 0);
    return &rs->base;
}

const char *store_redis_node_id(const struct store *s)
{
    return ((const struct redis_store *)s)->node_id;
}

const char *store_redis_state(const struct store *s)
{
    return state_names[((const struct redis_store *)s)->state];
}

int store_redis_add_metrics(struct store *s, struct metrics *m)
{
    struct redis_store *rs = (struct redis_store *)s;
    int rc = 0;
    rc |= metrics_add(m, "pollcast_cluster_topics_owned", METRICS_GAUGE,
                      "Topics this node holds the lease of (and polls).", NULL, NULL, &rs->m_owned);
    rc |= metrics_add(m, "pollcast_cluster_lease_acquisitions_total", METRICS_COUNTER,
                      "Topic leases this node acquired.", NULL, NULL, &rs->m_acquired);
    rc |= metrics_add(m, "pollcast_cluster_lease_losses_total", METRICS_COUNTER,
                      "Topic leases this node lost (taken over, expired, fenced out, Redis "
                      "unreachable).",
                      NULL, NULL, &rs->m_lost);
    rc |= metrics_add(m, "pollcast_cluster_redis_errors_total", METRICS_COUNTER,
                      "Redis commands that failed (error reply, lost connection, refused "
                      "over the bounds).",
                      NULL, NULL, &rs->m_errors);
    rc |= metrics_add(m, "pollcast_cluster_publish_conflicts_total", METRICS_COUNTER,
                      "Publishes to push streams that Redis refused because another node "
                      "published first (the node then takes the newer version).",
                      NULL, NULL, &rs->m_publish_conflicts);
    rc |= metrics_add(m, "pollcast_cluster_refresh_forwarded_total", METRICS_COUNTER,
                      "Refresh requests this node passed on to the other nodes (PUBLISH).", NULL,
                      NULL, &rs->m_refresh_sent);
    rc |= metrics_add(m, "pollcast_cluster_refresh_received_total", METRICS_COUNTER,
                      "Refresh requests this node received from other nodes.", NULL, NULL,
                      &rs->m_refresh_received);
    rc |= metrics_add_histogram(m, "pollcast_cluster_redis_latency_seconds",
                                "Redis command round trips (scripts), in seconds.", &rs->m_latency);
    rc |=
        metrics_add(m, "pollcast_cluster_redis_connected", METRICS_GAUGE,
                    "1 while the Redis connections are up, else 0.", NULL, NULL, &rs->m_connected);
    for (int i = 0; i < 3; i++)
        rc |= metrics_add(m, "pollcast_cluster_state", METRICS_GAUGE,
                          "1 for the node's cluster state: connecting, up or degraded.", "state",
                          state_names[i], &rs->m_state[i]);
    rc |= metrics_add(m, "pollcast_cluster_transitions_total", METRICS_COUNTER,
                      "Cluster state changes, by the state entered.", "to", "up", &rs->m_to_up);
    rc |= metrics_add(m, "pollcast_cluster_transitions_total", METRICS_COUNTER,
                      "Cluster state changes, by the state entered.", "to", "degraded",
                      &rs->m_to_degraded);
    return rc ? -1 : 0;
}

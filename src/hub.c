/* Topics, event frames and subscriber queues. A poll result is turned into at most one frame;
 * every subscriber's queue holds references to it. A subscriber that falls behind its queue
 * bound drops its backlog and reads one fresh snapshot instead. The history and the id sequence
 * live in the store (store/store.h): the hub appends what a poll produced, publishes it once the
 * store took it, polls only while the store says this node is the topic's writer, and serves
 * what other nodes published when the store hands it over. */
#include "hub.h"

#include <cjson/cJSON.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json/apply.h"
#include "json/diff.h"
#include "json/json.h"
#include "log.h"
#include "loop.h"
#include "store/store.h"

#define TOPIC_BUCKETS 1024

/* Upstream latency in seconds and patch sizes in bytes: the histograms' bucket bounds. */
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double patch_bounds[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};

struct subscriber {
    struct topic *topic;
    size_t index; /* in topic->subs */
    const struct subscriber_ops *ops;
    void *ctx;
    enum hub_mode mode;
    unsigned idle : 1;          /* last read found nothing; wake on the next event */
    unsigned need_snapshot : 1; /* the backlog was dropped: the current data event comes next */
    unsigned closing : 1;       /* the stream ends at the next read */
    unsigned awaiting : 1;      /* came before the topic had a document: starts when it has */
    unsigned has_resume : 1;    /* resume_epoch, resume_seq hold the client's Last-Event-ID */
    uint64_t resume_epoch, resume_seq;
    /* The frame being written and how far. */
    struct frame *cur;
    struct frame *last; /* written once the stream ends, before its end (hub_subscriber_end) */
    size_t off;
    /* Pending frames: a ring, grown on demand up to the hub's queue bound. */
    struct frame **q;
    size_t qhead, qlen, qcap, qbytes;
    uint64_t last_write_ms;
    /* Its place in the hub's keepalive wheel (the list of the second it is next looked at). */
    struct subscriber *ka_prev, *ka_next;
    uint32_t ka_slot;
    uint8_t ka_filed;
    struct subscriber_tally *tally; /* NULL: nobody counts this stream */
    /* The per-connection retry: line, written before anything else. */
    char prefix[32];
    uint8_t prefix_len, prefix_off;
};

struct topic {
    struct hub *hub;
    struct topic *bucket_next;
    char *key;
    char *name;
    uint64_t epoch; /* part of every id: ids of an earlier topic never match this one */
    uint64_t seq;   /* version of doc; 0 before the first snapshot */
    struct json_doc *doc;
    struct frame *data_frame; /* the current doc as a data event, built on first need */
    struct store_topic *st;   /* history and id sequence; NULL once closed */
    /* The subscribers, in no particular order: an array rather than a list, so that a walk
     * over them (each publish) can fetch the ones ahead from memory while it handles one. */
    struct subscriber **subs;
    size_t nsubs, subs_cap;
    struct poller *poller;    /* only while this node is the topic's writer */
    struct poller_spec pspec; /* owned copy, for the poller made when the node becomes writer */
    int writer;
    /* The publication the store is appending: its events and the document after them. */
    struct store_event pub[2];
    size_t npub;
    struct json_doc *pub_doc;
    int pub_pending;
    int put_async;     /* the pending publication came from hub_topic_put */
    hub_put_fn put_fn; /* told its outcome (hub_topic_put_watch) */
    void *put_arg;
    struct loop_timer *idle_timer;
    /* Upstream failure state. */
    int failing;
    uint64_t failing_since_ms, last_error_ms;
    struct frame *error_frame; /* the last upstream-error event, for new subscribers */
    uint64_t error_repeat_ms;
    int compat;           /* Streamdata.io event names and shapes */
    int any_content_type; /* bodies of any Content-Type are parsed */
    int retired;          /* no longer found by key; freed with its last subscriber */
    int push;             /* documents are published to it (hub_topic_put); never polled, kept
                             without subscribers */
    int rejected_pending; /* the poller's next POLL_FAILED reports a body the hub rejected */
    size_t max_values;    /* parse bound: a quarter of the body cap, at least 65536 */
    /* Owned copies of the spec. */
    char **id_keys;
    struct buf diff_out;
};

/* The keepalive wheel: one list of subscribers per second, for the next KA_SLOTS seconds, each
 * filed under the second its keepalive falls due (keepalive is at most an hour). The tick looks
 * at the lists of the seconds that passed only: a subscriber is looked at once per keepalive
 * interval, not every second (a walk of every subscriber held the lock for milliseconds each
 * second at 10,000 of them, while the I/O threads waited to write; issue 13). */
#define KA_SLOTS 4096

struct hub {
    struct loop *loop;
    struct upstream_pool *pool;
    struct hub_params params;
    struct topic *buckets[TOPIC_BUCKETS];
    struct store *store;
    struct frame *keepalive;
    struct loop_timer *tick;
    uint64_t rng;
    int closing;
    struct subscriber_tally *next_tally;
    struct hub_stats stats;
    uint64_t ka_done_s; /* the wheel's seconds up to this one were looked at */
    struct subscriber *ka[KA_SLOTS];
};

/* ---- frames ------------------------------------------------------------------------------ */

struct frame *frame_ref(struct frame *f)
{
    f->refs++;
    return f;
}

void frame_unref(struct frame *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    free(f->data);
    free(f);
}

/* Makes a frame of the buffer's content, taking its storage. Returns NULL on OOM (the buffer
 * is then emptied). */
static struct frame *frame_from_buf(struct buf *b, uint64_t seq)
{
    struct frame *f = malloc(sizeof(*f));
    size_t len;
    char *data = buf_steal(b, &len);
    if (f == NULL || data == NULL) {
        free(f);
        free(data);
        return NULL;
    }
    f->refs = 1;
    f->len = len;
    f->seq = seq;
    f->time_ms = 0;
    f->data = data;
    return f;
}

static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static size_t put_b36(char *dst, uint64_t v)
{
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = b36[v % 36];
        v /= 36;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

size_t hub_format_id(char *dst, uint64_t epoch, uint64_t seq)
{
    size_t n = put_b36(dst, epoch);
    dst[n++] = '.';
    n += put_b36(dst + n, seq);
    dst[n] = '\0';
    return n;
}

static int parse_b36(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 13)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = memchr(b36, s[i], 36);
        if (p == NULL || s[i] == '\0')
            return -1;
        uint64_t d = (uint64_t)(p - b36);
        if (v > (UINT64_MAX - d) / 36)
            return -1; /* 13 digits can exceed 64 bits */
        v = v * 36 + d;
    }
    *out = v;
    return 0;
}

/* Fills dst with n random bytes: getrandom, else OpenSSL's generator, else (neither working, a
 * broken system) bytes of the pid and the clocks, which still differ between processes. */
static void random_bytes(void *dst, size_t n)
{
    if (getrandom(dst, n, GRND_NONBLOCK) == (ssize_t)n)
        return;
    if (n <= INT32_MAX && RAND_bytes(dst, (int)n) == 1)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((unsigned char *)dst)[i] = (unsigned char)x;
    }
}

uint64_t hub_epoch_next(uint64_t now_ms, uint64_t last)
{
    uint32_t r;
    random_bytes(&r, sizeof(r));
    uint64_t ms = now_ms > HUB_EPOCH_BASE_MS ? now_ms - HUB_EPOCH_BASE_MS : 0;
    /* 41 bits of milliseconds last until 2094; keep the time from spilling over the top. */
    ms &= (UINT64_C(1) << (64 - HUB_EPOCH_RANDOM_BITS)) - 1;
    uint64_t epoch =
        ms << HUB_EPOCH_RANDOM_BITS | (r & ((UINT32_C(1) << HUB_EPOCH_RANDOM_BITS) - 1));
    if (epoch <= last)
        epoch = last + 1 + (r >> 16);
    return epoch;
}

int hub_parse_id(const char *id, uint64_t *epoch, uint64_t *seq)
{
    if (id == NULL)
        return -1;
    size_t len = strnlen(id, 64);
    const char *dot = memchr(id, '.', len);
    if (len >= 64 || dot == NULL)
        return -1;
    if (parse_b36(id, (size_t)(dot - id), epoch) != 0)
        return -1;
    return parse_b36(dot + 1, len - (size_t)(dot - id) - 1, seq);
}

/* Appends "id: <id>\nevent: <event>\ndata: " to b. */
static int put_event_head(struct buf *b, const struct topic *t, uint64_t seq, const char *event)
{
    int rc = 0;
    if (seq) {
        char id[40];
        size_t n = hub_format_id(id, t->epoch, seq);
        rc |= buf_append(b, "id: ", 4);
        rc |= buf_append(b, id, n);
        rc |= buf_putc(b, '\n');
    }
    rc |= buf_puts(b, "event: ");
    rc |= buf_puts(b, event);
    rc |= buf_puts(b, "\ndata: ");
    return rc ? -1 : 0;
}

/* doc as the data event of version seq. Returns a new frame (one reference, the caller's), or
 * NULL on OOM. */
static struct frame *data_frame_new(const struct topic *t, const struct json_doc *doc, uint64_t seq)
{
    struct buf b;
    buf_init(&b, 0);
    if (put_event_head(&b, t, seq, "data") != 0 || buf_reserve(&b, doc->root->size + 2) != 0) {
        buf_dispose(&b);
        return NULL;
    }
    char *end = json_write_raw(b.data + b.len, doc->root);
    b.len = (size_t)(end - b.data);
    buf_append(&b, "\n\n", 2);
    return frame_from_buf(&b, seq);
}

/* The current document as a data event, built once per version. NULL before the first
 * snapshot or on OOM. The topic keeps its reference; callers take their own. */
static struct frame *topic_data_frame(struct topic *t)
{
    if (t->data_frame || t->doc == NULL)
        return t->data_frame;
    t->data_frame = data_frame_new(t, t->doc, t->seq);
    return t->data_frame;
}

/* ---- subscriber queues ------------------------------------------------------------------- */

static void queue_clear(struct subscriber *s)
{
    for (size_t i = 0; i < s->qlen; i++)
        frame_unref(s->q[(s->qhead + i) % s->qcap]);
    s->qhead = s->qlen = s->qbytes = 0;
}

/* Drops the document's frames (data, patch) from the queue and keeps the others (upstream-error,
 * upstream-recovered, keepalive) in order: a snapshot is about to supersede the former, but not
 * what the latter say about the upstream. */
static void queue_drop_doc_frames(struct subscriber *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->qlen; i++) {
        struct frame *f = s->q[(s->qhead + i) % s->qcap];
        if (f->seq != 0) {
            s->qbytes -= f->len;
            frame_unref(f);
        } else {
            s->q[(s->qhead + kept) % s->qcap] = f;
            kept++;
        }
    }
    s->qlen = kept;
}

/* Files s in the keepalive wheel under the second at_ms falls in, or the first one the tick has
 * not looked at yet. The tick of that second finds it due or files it under the next one, so a
 * keepalive comes at most one tick late, as when every subscriber was looked at each second. A
 * second beyond the wheel's reach (after a stall of the loop) wraps to an earlier list, where s is
 * found not due and filed again. */
static void ka_file(struct subscriber *s, uint64_t at_ms)
{
    struct hub *hub = s->topic->hub;
    uint64_t sec = at_ms / 1000;
    if (sec <= hub->ka_done_s)
        sec = hub->ka_done_s + 1;
    s->ka_slot = (uint32_t)(sec % KA_SLOTS);
    s->ka_prev = NULL;
    s->ka_next = hub->ka[s->ka_slot];
    if (s->ka_next)
        s->ka_next->ka_prev = s;
    hub->ka[s->ka_slot] = s;
    s->ka_filed = 1;
}

static void ka_unfile(struct subscriber *s)
{
    if (!s->ka_filed)
        return;
    if (s->ka_prev)
        s->ka_prev->ka_next = s->ka_next;
    else
        s->topic->hub->ka[s->ka_slot] = s->ka_next;
    if (s->ka_next)
        s->ka_next->ka_prev = s->ka_prev;
    s->ka_prev = s->ka_next = NULL;
    s->ka_filed = 0;
}

static void sub_wake(struct subscriber *s)
{
    if (s->idle) {
        s->idle = 0;
        s->ops->wake(s->ctx);
    }
}

/* Queues f for s. When the queue is full, drops the backlog: the subscriber will read the
 * current snapshot instead. Returns 0, or -1 when s was reset. */
static int sub_push(struct subscriber *s, struct frame *f)
{
    const struct hub_params *p = &s->topic->hub->params;
    /* While a snapshot is due it supersedes every document frame; events without an id
     * (upstream-error, upstream-recovered) are queued still, and follow the snapshot. */
    if (s->need_snapshot && f->seq != 0)
        return -1;
    /* An empty queue takes any frame: a snapshot in place of one patch larger than the byte
     * bound would only be larger, and would reach even subscribers that keep up. */
    if (s->qlen > 0 && (s->qlen + 1 > p->queue_events || s->qbytes + f->len > p->queue_bytes)) {
        queue_clear(s);
        if (!s->need_snapshot)
            s->topic->hub->stats.subscribers_reset++;
        s->need_snapshot = 1;
        return -1;
    }
    if (s->qlen == s->qcap) {
        size_t cap = s->qcap ? s->qcap * 2 : 4;
        struct frame **q = malloc(cap * sizeof(*q));
        if (q == NULL) {
            queue_clear(s);
            s->need_snapshot = 1;
            return -1;
        }
        for (size_t i = 0; i < s->qlen; i++)
            q[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = q;
        s->qcap = cap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = frame_ref(f);
    s->qlen++;
    s->qbytes += f->len;
    s->topic->hub->stats.frames_queued++;
    return 0;
}

static struct frame *queue_pop(struct subscriber *s)
{
    if (s->qlen == 0)
        return NULL;
    struct frame *f = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    s->qbytes -= f->len;
    return f;
}

long subscriber_read(struct subscriber *s, char *dst, size_t max)
{
    struct topic *t = s->topic;
    size_t n = 0;
    /* When the stream ends, the frame in progress is finished first so that the client never
     * sees half an event. */
    int ending = s->closing || t->hub->closing;
    if (ending && s->cur == NULL && s->last == NULL)
        return -1;
    if (s->prefix_off < s->prefix_len) {
        size_t k = s->prefix_len - s->prefix_off;
        if (k > max)
            k = max;
        memcpy(dst, s->prefix + s->prefix_off, k);
        s->prefix_off = (uint8_t)(s->prefix_off + k);
        n += k;
    }
    while (n < max) {
        if (s->cur == NULL) {
            if (ending) {
                /* The stream's last words, after the event in progress. */
                if (s->last == NULL)
                    break;
                s->cur = s->last;
                s->last = NULL;
                s->off = 0;
                continue;
            }
            if (s->need_snapshot && t->doc) {
                /* Catching up: the backlog was dropped; the current snapshot replaces it, and
                 * the upstream's status events queued since follow it. */
                queue_drop_doc_frames(s);
                struct frame *f = topic_data_frame(t);
                if (f == NULL)
                    break;
                s->cur = frame_ref(f);
                s->need_snapshot = 0;
            } else {
                s->cur = queue_pop(s);
                if (s->cur == NULL)
                    break;
            }
            s->off = 0;
        }
        size_t k = s->cur->len - s->off;
        if (k > max - n)
            k = max - n;
        memcpy(dst + n, s->cur->data + s->off, k);
        s->off += k;
        n += k;
        if (s->off == s->cur->len) {
            if (s->cur != t->hub->keepalive) {
                t->hub->stats.events_delivered++;
                if (s->tally)
                    s->tally->events++;
            }
            frame_unref(s->cur);
            s->cur = NULL;
        }
    }
    if (n == 0) {
        if (ending)
            return -1;
        s->idle = 1;
        return 0;
    }
    s->last_write_ms = loop_now_ms(t->hub->loop);
    t->hub->stats.bytes_out += n;
    if (s->tally)
        s->tally->bytes += n;
    return (long)n;
}

/* ---- publishing -------------------------------------------------------------------------- */

/* How many subscribers ahead a walk over a topic's subscribers asks for from memory. At 10,000
 * subscribers of one topic, their structures (and their queues, and their transports') are not
 * in the CPU's caches between two publishes, and a walk that waits for each in turn spent most
 * of its time waiting: ~200 ns per subscriber under the hub lock, while the I/O threads waited
 * for it (issue 13). */
#define PREFETCH_AHEAD 8

/* Asks for what handling subscriber i + PREFETCH_AHEAD of t will touch: the subscriber itself
 * (two cache lines); and for the one half as far ahead, fetched by now, the queue slot its next
 * frame goes to and its transport's context (sse.c keeps what its wake touches in the first
 * cache line). Only hints: they change no result. */
static inline void sub_prefetch(const struct topic *t, size_t i)
{
    if (i + PREFETCH_AHEAD < t->nsubs) {
        const char *p = (const char *)t->subs[i + PREFETCH_AHEAD];
        __builtin_prefetch(p, 1);
        __builtin_prefetch(p + 64, 1);
    }
    if (i + PREFETCH_AHEAD / 2 < t->nsubs) {
        const struct subscriber *s = t->subs[i + PREFETCH_AHEAD / 2];
        if (s->qcap)
            __builtin_prefetch(&s->q[(s->qhead + s->qlen) % s->qcap], 1);
        __builtin_prefetch(s->ctx, 1);
    }
}

/* Sends f to every subscriber of the given mode (all when mode is -1). */
static void fan_out(struct topic *t, struct frame *f, int mode)
{
    for (size_t i = 0; i < t->nsubs; i++) {
        sub_prefetch(t, i);
        struct subscriber *s = t->subs[i];
        if (mode >= 0 && (int)s->mode != mode)
            continue;
        sub_push(s, f);
        sub_wake(s);
    }
}

static void sub_resume(struct subscriber *s);

/* A new document version that is not a patch of the previous one (first version, new epoch):
 * every subscriber reads the snapshot next, except those that came before the topic had a
 * document, which start now as they asked (resume or snapshot). */
static void fan_out_snapshot(struct topic *t)
{
    for (size_t i = 0; i < t->nsubs; i++) {
        sub_prefetch(t, i);
        struct subscriber *s = t->subs[i];
        if (s->awaiting) {
            s->awaiting = 0;
            sub_resume(s);
        } else {
            queue_drop_doc_frames(s);
            s->need_snapshot = 1;
        }
        sub_wake(s);
    }
}

/* A patch: queued for the subscribers in patch mode; those in snapshot mode only ever need the
 * newest data event, and read it next. One walk for both. */
static void fan_out_patch(struct topic *t, struct frame *f)
{
    for (size_t i = 0; i < t->nsubs; i++) {
        sub_prefetch(t, i);
        struct subscriber *s = t->subs[i];
        if (s->mode == HUB_MODE_PATCH) {
            sub_push(s, f);
        } else {
            queue_drop_doc_frames(s);
            s->need_snapshot = 1;
        }
        sub_wake(s);
    }
}

/* Adds an event to the publication being built; takes f's reference. */
static void pub_add(struct topic *t, enum store_kind kind, struct frame *f)
{
    t->pub[t->npub].kind = kind;
    t->pub[t->npub].frame = f;
    t->npub++;
}

/* The upstream-error event; on a Streamdata.io topic, an "error" event shaped as Streamdata.io
 * sent them ({"cause","status","message"}), which its client libraries read. */
static void publish_error(struct topic *t, const struct poll_result *r, uint64_t now)
{
    cJSON *o = cJSON_CreateObject();
    int timeout = r->error && strstr(r->error, "timeout") != NULL;
    const char *detail = r->error ? r->error : "upstream request failed";
    if (t->compat) {
        cJSON_AddStringToObject(o, "cause", "upstream");
        cJSON_AddNumberToObject(o, "status", timeout ? 504 : 502);
        cJSON_AddStringToObject(o, "message", detail);
        if (r->status > 0)
            cJSON_AddNumberToObject(o, "upstream_status", (double)r->status);
    } else {
        cJSON_AddNumberToObject(o, "status", timeout ? 504 : 502);
        cJSON_AddStringToObject(o, "title", "Upstream request failed");
        cJSON_AddStringToObject(o, "detail", detail);
        if (r->status > 0)
            cJSON_AddNumberToObject(o, "upstream_status", (double)r->status);
        cJSON_AddNumberToObject(o, "retry_in_ms", (double)r->retry_in_ms);
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (json == NULL)
        return;
    struct buf b;
    buf_init(&b, 0);
    int rc = put_event_head(&b, t, 0, t->compat ? "error" : "upstream-error");
    rc |= buf_puts(&b, json);
    rc |= buf_append(&b, "\n\n", 2);
    free(json);
    struct frame *f = rc ? NULL : frame_from_buf(&b, 0);
    buf_dispose(&b);
    if (f)
        pub_add(t, STORE_ERROR, f);
}

static void publish_recovered(struct topic *t, uint64_t now)
{
    log_event(LOG_INFO, "upstream recovered",
              (struct log_field[]){LOG_STR("stream", t->name),
                                   LOG_NUM("failed_for_ms", now - t->failing_since_ms)},
              2);
    struct buf b;
    buf_init(&b, 0);
    /* Streamdata.io had no such event: its clients only stop seeing errors. The store still
     * records the recovery (an empty frame) so that other nodes stop showing the error. */
    int rc = 0;
    if (!t->compat) {
        rc |= put_event_head(&b, t, 0, "upstream-recovered");
        rc |= buf_printf(
            &b, "{\"status\":200,\"title\":\"Upstream recovered\",\"failed_for_ms\":%llu}\n\n",
            (unsigned long long)(now - t->failing_since_ms));
    }
    struct frame *f = rc ? NULL : frame_from_buf(&b, 0);
    buf_dispose(&b);
    if (f)
        pub_add(t, STORE_RECOVERED, f);
}

/* Publishes a document version the store has taken: doc (owned) becomes the topic's document
 * and f (of version f->seq) goes to the subscribers. */
static void commit_doc(struct topic *t, enum store_kind kind, struct frame *f, struct json_doc *doc)
{
    json_doc_free(t->doc);
    t->doc = doc;
    t->seq = f->seq;
    frame_unref(t->data_frame);
    t->data_frame = NULL;
    t->hub->stats.events_published++;
    if (kind == STORE_DATA) {
        t->data_frame = frame_ref(f);
        fan_out_snapshot(t);
    } else {
        fan_out_patch(t, f);
    }
}

static void commit_error(struct topic *t, struct frame *f)
{
    uint64_t now = loop_now_ms(t->hub->loop);
    if (!t->failing) {
        t->failing = 1;
        t->failing_since_ms = now;
    }
    frame_unref(t->error_frame);
    t->error_frame = frame_ref(f);
    t->last_error_ms = now;
    fan_out(t, f, -1);
}

static void commit_recovered(struct topic *t, struct frame *f)
{
    frame_unref(t->error_frame);
    t->error_frame = NULL;
    t->failing = 0;
    if (f && f->len > 0)
        fan_out(t, f, -1);
}

/* Tells the watcher of a pending hub_topic_put, if any, its outcome. */
static void put_notify(struct topic *t, int result)
{
    hub_put_fn fn = t->put_fn;
    t->put_fn = NULL;
    if (fn)
        fn(t->put_arg, result);
}

/* The store's answer to topic_publish: ok 1 taken, 0 refused, -1 refused because another node
 * published first. */
static void on_store_appended(void *arg, int ok)
{
    struct topic *t = arg;
    t->pub_pending = 0;
    for (size_t i = 0; i < t->npub; i++) {
        struct frame *f = t->pub[i].frame;
        if (ok > 0) {
            switch (t->pub[i].kind) {
            case STORE_DATA:
            case STORE_PATCH:
                commit_doc(t, t->pub[i].kind, f, t->pub_doc);
                t->pub_doc = NULL;
                break;
            case STORE_ERROR:
                commit_error(t, f);
                break;
            case STORE_RECOVERED:
                commit_recovered(t, f);
                break;
            }
        }
        frame_unref(f);
    }
    t->npub = 0;
    json_doc_free(t->pub_doc);
    t->pub_doc = NULL;
    if (t->put_async) {
        t->put_async = 0;
        if (ok > 0)
            t->hub->stats.publishes_changed++;
        put_notify(t, ok > 0 ? HUB_PUT_CHANGED : ok < 0 ? HUB_PUT_CONFLICT : HUB_PUT_FAILED);
    }
}

/* Hands the publication built from one poll to the store. */
static void topic_publish(struct topic *t)
{
    struct hub *hub = t->hub;
    const char *doc = t->pub_doc ? t->pub_doc->text : NULL;
    size_t len = t->pub_doc ? t->pub_doc->len : 0;
    t->pub_pending = 1;
    if (t->st == NULL || hub->store->ops->append(t->st, t->pub, t->npub, doc, len) != 0)
        on_store_appended(t, 0);
}

/* Returns 1 when a Content-Type is acceptable for JSON (missing counts as acceptable: the
 * body must still parse). */
static int json_content_type(const char *ct)
{
    if (ct == NULL || *ct == '\0')
        return 1;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    if (n == 9 && strncasecmp(ct, "text/json", 9) == 0)
        return 1;
    if (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0)
        return 1;
    return 0;
}

/* A new document (owned) for the topic, parsed: it becomes the topic's first version (a data
 * event), or is diffed against the current one into a patch event, which are added to the
 * publication for the store; a document equal in value replaces the current text without a new
 * version. Returns 0, or -1 with why filled when out of memory (doc is then freed). */
static int topic_take_doc(struct topic *t, struct json_doc *doc, char *why, size_t whylen)
{
    struct hub *hub = t->hub;
    if (t->doc == NULL) {
        struct frame *f = data_frame_new(t, doc, t->seq + 1);
        if (f == NULL) {
            json_doc_free(doc);
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        t->pub_doc = doc;
        pub_add(t, STORE_DATA, f);
        return 0;
    }
    struct buf *b = &t->diff_out;
    b->len = 0;
    uint64_t seq = t->seq + 1;
    size_t nops = 0;
    int rc = put_event_head(b, t, seq, "patch");
    size_t head_len = b->len;
    const struct json_diff_opts opts = {.id_keys = (const char *const *)t->id_keys};
    rc |= json_diff(t->doc->root, doc->root, &opts, b, &nops);
    if (rc != 0) {
        /* Out of memory: keep serving the old version, as for a failed poll. */
        json_doc_free(doc);
        snprintf(why, whylen, "out of memory while diffing");
        return -1;
    }
    if (nops == 0) {
        /* Equal in value (whitespace or key order changed): same version, new text. */
        json_doc_free(t->doc);
        t->doc = doc;
        frame_unref(t->data_frame);
        t->data_frame = NULL;
        return 0;
    }
    metrics_histogram_observe(&hub->stats.patch_bytes, (double)(b->len - head_len));
    rc = buf_append(b, "\n\n", 2);
    struct frame *f = malloc(sizeof(*f));
    char *data = malloc(b->len);
    if (rc != 0 || f == NULL || data == NULL) {
        /* Keep serving the old version, as for a failed poll. */
        free(f);
        free(data);
        json_doc_free(doc);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    memcpy(data, b->data, b->len);
    f->refs = 1;
    f->len = b->len;
    f->seq = seq;
    f->time_ms = 0;
    f->data = data;
    /* Keep the scratch buffer from growing without bound after one huge patch. */
    if (b->cap > (1u << 20))
        buf_dispose(b);
    t->pub_doc = doc;
    pub_add(t, STORE_PATCH, f);
    return 0;
}

/* A new body: parse, diff against the current version, publish. Returns 0, or -1 when the
 * body is rejected (r->reject says why). */
static int topic_take_body(struct topic *t, struct poll_result *r)
{
    struct hub *hub = t->hub;
    if (t->doc && r->len == t->doc->len && memcmp(r->body, t->doc->text, r->len) == 0) {
        hub->stats.polls_unchanged++;
        return 0;
    }
    if (!t->any_content_type && !json_content_type(r->content_type)) {
        snprintf(r->reject, sizeof(r->reject),
                 "upstream content type %.80s is not JSON (see accept_any_content_type)",
                 r->content_type);
        hub->stats.polls_rejected++;
        t->rejected_pending = 1;
        return -1;
    }
    struct json_error err;
    /* Dense inputs ([0,0,...]) make about 28 bytes of tree per byte of text: bound the values
     * so that a hostile upstream cannot make one topic hold gigabytes. */
    const struct json_parse_opts popts = {.max_values = t->max_values};
    struct json_doc *doc = json_parse_owned(r->body, r->len, &popts, &err);
    if (doc == NULL) {
        snprintf(r->reject, sizeof(r->reject), "upstream sent invalid JSON at byte %zu: %.90s",
                 err.offset, err.msg);
        hub->stats.polls_rejected++;
        t->rejected_pending = 1;
        return -1;
    }
    r->body = NULL; /* the document owns it now */
    hub->stats.polls_changed++;
    return topic_take_doc(t, doc, r->reject, sizeof(r->reject));
}

static int on_poll(void *arg, struct poll_result *r)
{
    struct topic *t = arg;
    struct hub *hub = t->hub;
    uint64_t now = loop_now_ms(hub->loop);
    hub->stats.bytes_in += r->bytes_in;
    int rc = 0;
    /* A rejected body comes back as a failure: its poll was counted and timed already. */
    int after_reject = r->outcome == POLL_FAILED && t->rejected_pending;
    t->rejected_pending = 0;
    if (!after_reject)
        metrics_histogram_observe(&hub->stats.upstream_latency, r->latency_ms / 1000.0);
    /* The store has not taken the previous poll's events yet (a slow Redis): this poll is left
     * out, and the next one diffs from what was committed. */
    if (t->pub_pending)
        return 0;
    switch (r->outcome) {
    case POLL_BODY:
        rc = topic_take_body(t, r);
        if (rc == 0 && t->failing)
            publish_recovered(t, now);
        break;
    case POLL_NOT_MODIFIED:
        hub->stats.polls_not_modified++;
        if (t->failing)
            publish_recovered(t, now);
        break;
    case POLL_FAILED:
        if (!after_reject)
            hub->stats.polls_failed++;
        if (!t->failing) {
            t->failing_since_ms = now;
            log_event(LOG_WARN, "upstream failing",
                      (struct log_field[]){LOG_STR("stream", t->name),
                                           LOG_NUM("upstream_status", r->status),
                                           LOG_STR("error", r->error)},
                      3);
            publish_error(t, r, now);
        } else if (now - t->last_error_ms >= t->error_repeat_ms) {
            publish_error(t, r, now);
        }
        break;
    }
    if (t->npub > 0)
        topic_publish(t);
    return rc;
}

/* ---- what the store tells the hub -------------------------------------------------------- */

static struct json_doc *doc_parse(const struct topic *t, const char *text, size_t len)
{
    const struct json_parse_opts popts = {.max_values = t->max_values};
    return json_parse(text, len, &popts, NULL);
}

static void on_store_sync(void *arg, uint64_t epoch, uint64_t seq, const char *doc, size_t len)
{
    struct topic *t = arg;
    if (epoch == t->epoch && seq == t->seq && (doc == NULL || t->doc != NULL))
        return; /* the version the subscribers have already */
    if (doc == NULL && seq > 0 && t->doc) {
        /* The document stays, as version seq of another epoch (the Redis store going alone). */
        t->epoch = epoch;
        t->seq = seq;
        frame_unref(t->data_frame);
        t->data_frame = NULL;
        fan_out_snapshot(t);
        return;
    }
    struct json_doc *d = doc ? doc_parse(t, doc, len) : NULL;
    if (doc && d == NULL)
        log_event(LOG_ERROR, "stored document does not parse; waiting for the next poll",
                  (struct log_field[]){LOG_STR("stream", t->name)}, 1);
    t->epoch = epoch;
    t->seq = seq;
    json_doc_free(t->doc);
    t->doc = d;
    frame_unref(t->data_frame);
    t->data_frame = NULL;
    if (d) {
        fan_out_snapshot(t);
        return;
    }
    /* No document at the new version yet: streams wait for the next one, then read it whole. */
    for (size_t i = 0; i < t->nsubs; i++) {
        struct subscriber *s = t->subs[i];
        if (!s->awaiting) {
            queue_drop_doc_frames(s);
            s->need_snapshot = 1;
        }
    }
}

/* Stops the topic's poller, if it has one. */
static void topic_stop_poller(struct topic *t)
{
    if (t->poller == NULL)
        return;
    poller_free(t->poller);
    t->poller = NULL;
    t->hub->stats.pollers--;
}

static void on_store_role(void *arg, int writer)
{
    struct topic *t = arg;
    t->writer = writer;
    if (!writer) {
        topic_stop_poller(t);
        return;
    }
    if (t->poller || t->retired || t->hub->closing || t->push)
        return;
    t->poller = poller_new(t->hub->pool, &t->pspec, on_poll, t);
    if (t->poller)
        t->hub->stats.pollers++;
    if (t->poller == NULL)
        log_event(LOG_ERROR, "cannot start the poller",
                  (struct log_field[]){LOG_STR("stream", t->name)}, 1);
}

/* Another node's event. Returns -1 when it does not follow what this node serves (the store
 * then hands over the stored snapshot). */
static int on_store_event(void *arg, struct frame *f, enum store_kind kind, const char *payload,
                          size_t len)
{
    struct topic *t = arg;
    struct json_doc *doc = NULL;
    switch (kind) {
    case STORE_DATA:
        doc = doc_parse(t, payload, len);
        if (doc == NULL || f == NULL)
            break;
        commit_doc(t, kind, f, doc);
        return 0;
    case STORE_PATCH: {
        if (t->doc == NULL || f == NULL || f->seq != t->seq + 1)
            return -1;
        struct json_doc *patch = json_parse(payload, len, NULL, NULL);
        struct buf out;
        buf_init(&out, 0);
        struct json_patch_error perr;
        if (patch && json_patch_apply_node(t->doc->root, patch->root, &out, &perr) == 0)
            doc = doc_parse(t, out.data, out.len);
        json_doc_free(patch);
        buf_dispose(&out);
        if (doc == NULL)
            break;
        commit_doc(t, kind, f, doc);
        return 0;
    }
    case STORE_ERROR:
        if (f)
            commit_error(t, f);
        return 0;
    case STORE_RECOVERED:
        commit_recovered(t, f);
        return 0;
    }
    json_doc_free(doc);
    return -1;
}

static const struct store_topic_cbs store_cbs = {
    .sync = on_store_sync,
    .role = on_store_role,
    .appended = on_store_appended,
    .event = on_store_event,
};

/* ---- topics ------------------------------------------------------------------------------ */

static size_t bucket_of(const char *key)
{
    return (size_t)(json_hash_bytes(key, strlen(key), 0x746f70) % TOPIC_BUCKETS);
}

static void free_strv(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static void topic_free(struct topic *t)
{
    struct hub *hub = t->hub;
    struct topic **pp = &hub->buckets[bucket_of(t->key)];
    while (*pp && *pp != t)
        pp = &(*pp)->bucket_next;
    if (*pp)
        *pp = t->bucket_next;
    put_notify(t, HUB_PUT_FAILED);
    while (t->nsubs)
        hub_unsubscribe(t->subs[t->nsubs - 1]);
    free(t->subs);
    topic_stop_poller(t);
    hub->store->ops->close(t->st);
    loop_timer_free(t->idle_timer);
    for (size_t i = 0; i < t->npub; i++)
        frame_unref(t->pub[i].frame);
    json_doc_free(t->pub_doc);
    frame_unref(t->data_frame);
    frame_unref(t->error_frame);
    json_doc_free(t->doc);
    free_strv(t->id_keys);
    free((char *)t->pspec.url);
    free((char *)t->pspec.ca_file);
    free_strv((char **)t->pspec.headers);
    buf_dispose(&t->diff_out);
    free(t->key);
    free(t->name);
    free(t);
    hub->stats.topics--;
}

static void on_idle_timeout(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct topic *t = arg;
    /* A push topic holds the last published document: it stays until it is retired. */
    if (t->nsubs == 0 && (!t->push || t->retired))
        topic_free(t);
}

/* Copies the first n strings of v (all of them up to the NULL when n is SIZE_MAX) into a
 * NULL-terminated array. Returns NULL on OOM. */
static char **copy_strv(const char *const *v, size_t n)
{
    if (n == SIZE_MAX)
        for (n = 0; v && v[n]; n++)
            ;
    char **out = calloc(n + 1, sizeof(*out));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(v[i]);
        if (out[i] == NULL) {
            free_strv(out);
            return NULL;
        }
    }
    return out;
}

struct topic *hub_topic_find(struct hub *hub, const char *key)
{
    for (struct topic *t = hub->buckets[bucket_of(key)]; t; t = t->bucket_next)
        if (!t->retired && strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

/* Copies what a poller needs of spec into t->pspec. Returns 0, or -1 on OOM. */
static int topic_copy_spec(struct topic *t, const struct poller_spec *spec)
{
    t->pspec = *spec;
    t->pspec.url = spec->url ? strdup(spec->url) : NULL;
    t->pspec.ca_file = spec->ca_file ? strdup(spec->ca_file) : NULL;
    t->pspec.headers = (const char *const *)copy_strv(spec->headers, spec->nheaders);
    if ((spec->url && !t->pspec.url) || (spec->ca_file && !t->pspec.ca_file) ||
        t->pspec.headers == NULL)
        return -1;
    return 0;
}

struct topic *hub_topic_get(struct hub *hub, const char *key, const struct topic_spec *spec)
{
    size_t b = bucket_of(key);
    for (struct topic *t = hub->buckets[b]; t; t = t->bucket_next)
        if (!t->retired && strcmp(t->key, key) == 0)
            return t;
    if (hub->closing || (hub->params.max_topics && hub->stats.topics >= hub->params.max_topics))
        return NULL;
    struct topic *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->hub = hub;
    buf_init(&t->diff_out, 0);
    t->error_repeat_ms = spec->error_repeat_ms ? spec->error_repeat_ms : 30000;
    t->compat = spec->compat;
    t->any_content_type = spec->any_content_type;
    t->push = spec->push;
    size_t cap = spec->poll.max_body ? spec->poll.max_body : (size_t)8 << 20;
    t->max_values = cap / 4 > 65536 ? cap / 4 : 65536;
    t->key = strdup(key);
    t->name = strdup(spec->name ? spec->name : key);
    t->idle_timer = loop_timer_new(hub->loop, on_idle_timeout, t);
    if (spec->id_keys)
        t->id_keys = copy_strv(spec->id_keys, SIZE_MAX);
    t->bucket_next = hub->buckets[b];
    hub->buckets[b] = t;
    hub->stats.topics++;
    if (topic_copy_spec(t, &spec->poll) != 0 || t->key == NULL || t->name == NULL ||
        t->idle_timer == NULL || (spec->id_keys && t->id_keys == NULL))
        goto fail;
    t->st = hub->store->ops->open(hub->store, key, spec, &store_cbs, t);
    if (t->st == NULL)
        goto fail;
    /* The topic is made for a subscriber about to come: it competes to poll at once. A store
     * that makes this node the writer at once has it poll now, and a spec the poller refuses
     * fails here, as it always did. */
    hub->store->ops->interest(t->st, 1);
    if (t->writer && t->poller == NULL && !t->push)
        goto fail;
    return t;
fail:
    topic_free(t);
    return NULL;
}

int hub_topic_put(struct topic *t, const char *text, size_t len, char *err, size_t errlen)
{
    struct hub *hub = t->hub;
    if (t->pub_pending)
        return HUB_PUT_BUSY;
    if (t->doc && len == t->doc->len && memcmp(text, t->doc->text, len) == 0) {
        hub->stats.publishes_unchanged++;
        return HUB_PUT_UNCHANGED;
    }
    struct json_error jerr;
    const struct json_parse_opts popts = {.max_values = t->max_values};
    struct json_doc *doc = json_parse(text, len, &popts, &jerr);
    if (doc == NULL) {
        snprintf(err, errlen, "invalid JSON at byte %zu: %s", jerr.offset, jerr.msg);
        return HUB_PUT_INVALID;
    }
    uint64_t epoch = t->epoch, seq = t->seq;
    if (topic_take_doc(t, doc, err, errlen) != 0)
        return HUB_PUT_FAILED;
    if (t->npub == 0) {
        hub->stats.publishes_unchanged++;
        return HUB_PUT_UNCHANGED;
    }
    topic_publish(t);
    if (t->pub_pending) {
        t->put_async = 1;
        return HUB_PUT_PENDING;
    }
    if (t->epoch == epoch && t->seq == seq) {
        snprintf(err, errlen, "the store refused the new version");
        return HUB_PUT_FAILED;
    }
    hub->stats.publishes_changed++;
    return HUB_PUT_CHANGED;
}

void hub_topic_put_watch(struct topic *t, hub_put_fn fn, void *arg)
{
    t->put_fn = fn;
    t->put_arg = arg;
}

/* The pollers this node runs for topics whose key starts with prefix fetch now. Returns how many
 * were asked. */
static size_t refresh_local(struct hub *hub, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (size_t b = 0; b < TOPIC_BUCKETS; b++)
        for (struct topic *t = hub->buckets[b]; t; t = t->bucket_next)
            if (!t->retired && t->poller && strncmp(t->key, prefix, plen) == 0) {
                poller_poll_now(t->poller);
                n++;
            }
    return n;
}

/* Another node was asked to refresh (store->refresh_fn). */
static void on_store_refresh(void *arg, const char *prefix)
{
    struct hub *hub = arg;
    if (!hub->closing)
        refresh_local(hub, prefix);
}

size_t hub_refresh_topics(struct hub *hub, const char *prefix, int *forwarded)
{
    size_t n = refresh_local(hub, prefix);
    /* Passed on even when this node polls a matching topic: another node may poll another of
     * the stream's topics (forwarded headers make one topic per value). */
    *forwarded = hub->store->ops->refresh ? hub->store->ops->refresh(hub->store, prefix)
                                          : STORE_REFRESH_ALONE;
    return n;
}

const char *hub_topic_document(const struct topic *t, size_t *len)
{
    if (t->doc == NULL)
        return NULL;
    *len = t->doc->len;
    return t->doc->text;
}

size_t hub_topic_id(const struct topic *t, char *dst)
{
    if (t->doc == NULL) {
        dst[0] = '\0';
        return 0;
    }
    return hub_format_id(dst, t->epoch, t->seq);
}

int topic_ready(const struct topic *topic)
{
    return topic->doc != NULL;
}

static void sub_push_cb(void *arg, struct frame *f)
{
    sub_push(arg, f);
}

/* Queues what a subscriber must read first: the missed patches when its last id is in the
 * history, otherwise the current snapshot. Before the topic has a document, it waits. */
static void sub_resume(struct subscriber *s)
{
    struct topic *t = s->topic;
    if (t->doc == NULL) {
        s->awaiting = 1;
        return;
    }
    int same_epoch = s->has_resume && s->resume_epoch == t->epoch;
    if (s->mode == HUB_MODE_PATCH && same_epoch && t->st &&
        t->hub->store->ops->history(t->st, s->resume_seq, sub_push_cb, s) == 0)
        return;
    if (!(s->mode == HUB_MODE_SNAPSHOT && same_epoch && s->resume_seq == t->seq))
        s->need_snapshot = 1;
}

struct subscriber *hub_subscribe(struct topic *t, enum hub_mode mode, const char *last_event_id,
                                 const struct subscriber_ops *ops, void *ctx)
{
    struct hub *hub = t->hub;
    if (t->nsubs == t->subs_cap) {
        size_t cap = t->subs_cap ? t->subs_cap * 2 : 4;
        struct subscriber **subs = realloc(t->subs, cap * sizeof(*subs));
        if (subs == NULL)
            return NULL;
        t->subs = subs;
        t->subs_cap = cap;
    }
    struct subscriber *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->topic = t;
    s->ops = ops;
    s->ctx = ctx;
    s->mode = mode;
    s->last_write_ms = loop_now_ms(hub->loop);
    s->tally = hub->next_tally;
    hub->next_tally = NULL;
    if (s->tally) {
        s->tally->refs++;
        s->tally->sub = s;
    }
    /* retry: jittered between 50% and 150% of the base, so that a restart does not bring every
     * client back in the same millisecond. */
    hub->rng ^= hub->rng << 13;
    hub->rng ^= hub->rng >> 7;
    hub->rng ^= hub->rng << 17;
    uint64_t retry = hub->params.retry_ms + hub->rng % (hub->params.retry_jitter_ms + 1);
    int n = snprintf(s->prefix, sizeof(s->prefix), "retry: %llu\n\n", (unsigned long long)retry);
    s->prefix_len = (uint8_t)(n > 0 && (size_t)n < sizeof(s->prefix) ? n : 0);
    ka_file(s, s->last_write_ms + hub->params.keepalive_ms);
    s->index = t->nsubs;
    t->subs[t->nsubs++] = s;
    hub->stats.subscribers++;
    loop_timer_stop(t->idle_timer);
    if (t->nsubs == 1 && t->st)
        hub->store->ops->interest(t->st, 1);
    s->has_resume =
        last_event_id && hub_parse_id(last_event_id, &s->resume_epoch, &s->resume_seq) == 0;
    sub_resume(s);
    if (t->failing && t->error_frame)
        sub_push(s, t->error_frame);
    return s;
}

void hub_set_next_tally(struct hub *hub, struct subscriber_tally *tally)
{
    hub->next_tally = tally;
}

/* Ends s's stream after its current event, saying why to its tally. */
static void sub_end(struct subscriber *s, const char *reason)
{
    if (s->tally && s->tally->end_reason == NULL)
        s->tally->end_reason = reason;
    s->closing = 1;
    sub_wake(s);
}

void hub_subscriber_close(struct subscriber *s)
{
    sub_end(s, "client_gone");
}

void hub_subscriber_end(struct subscriber *s, const char *reason, const char *last, size_t len)
{
    if (s->closing)
        return;
    struct buf b;
    buf_init(&b, 0);
    /* Out of memory, the stream ends without its last event. */
    if (last && buf_append(&b, last, len) == 0)
        s->last = frame_from_buf(&b, 0);
    buf_dispose(&b);
    sub_end(s, reason);
}

void hub_unsubscribe(struct subscriber *s)
{
    if (s == NULL)
        return;
    struct topic *t = s->topic;
    /* The last one takes its place. */
    struct subscriber *moved = t->subs[t->nsubs - 1];
    t->subs[s->index] = moved;
    moved->index = s->index;
    ka_unfile(s);
    queue_clear(s);
    frame_unref(s->cur);
    frame_unref(s->last);
    free(s->q);
    if (s->tally)
        s->tally->sub = NULL;
    if (s->tally && --s->tally->refs == 0)
        s->tally->release(s->tally);
    free(s);
    t->nsubs--;
    /* A topic that had many subscribers and has few gives the room back. */
    if (t->subs_cap > 64 && t->nsubs < t->subs_cap / 4) {
        struct subscriber **subs = realloc(t->subs, t->subs_cap / 2 * sizeof(*subs));
        if (subs) {
            t->subs = subs;
            t->subs_cap /= 2;
        }
    }
    t->hub->stats.subscribers--;
    if (t->nsubs == 0 && t->st)
        t->hub->store->ops->interest(t->st, 0);
    /* The topic is not freed here, inside its subscriber's teardown, but from its timer. */
    if (t->nsubs == 0 && !t->hub->closing)
        loop_timer_start(t->idle_timer, t->retired ? 0 : t->hub->params.idle_grace_ms);
}

/* Once a second: a keepalive comment for subscribers that had nothing to read for a while.
 * Those of the seconds that passed are looked at: one due and idle gets the comment and is filed
 * for the next interval; one written since is filed for when its interval from that write ends;
 * one due but not idle (its bytes wait to be read) is looked at again in a second. */
static void on_tick(struct loop *loop, struct loop_timer *timer, void *arg)
{
    struct hub *hub = arg;
    uint64_t now = loop_now_ms(loop), now_s = now / 1000, ka = hub->params.keepalive_ms;
    uint64_t from = hub->ka_done_s + 1;
    if (now_s >= from + KA_SLOTS)
        from = now_s - KA_SLOTS + 1;
    for (uint64_t sec = from; sec <= now_s; sec++) {
        /* Before the refiling: a subscriber is never filed under a second already passed. */
        hub->ka_done_s = sec;
        struct subscriber *s;
        while ((s = hub->ka[sec % KA_SLOTS]) != NULL) {
            ka_unfile(s);
            if (now - s->last_write_ms < ka) {
                ka_file(s, s->last_write_ms + ka);
            } else if (s->idle) {
                s->last_write_ms = now;
                sub_push(s, hub->keepalive);
                sub_wake(s);
                ka_file(s, now + ka);
            } else {
                ka_file(s, now + 1000);
            }
        }
    }
    loop_timer_start(timer, 1000);
}

struct hub *hub_new(struct loop *loop, struct upstream_pool *pool, struct store *store,
                    const struct hub_params *params)
{
    struct hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return NULL;
    hub->loop = loop;
    hub->pool = pool;
    hub->store = store;
    store->refresh_fn = on_store_refresh;
    store->refresh_arg = hub;
    hub->params = *params;
    if (hub->params.queue_events == 0)
        hub->params.queue_events = 64;
    if (hub->params.queue_bytes == 0)
        hub->params.queue_bytes = 1u << 20;
    if (hub->params.keepalive_ms == 0)
        hub->params.keepalive_ms = 15000;
    hub->rng = loop_wall_ms() ^ 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)hub;
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, ": keepalive\n\n");
    hub->keepalive = frame_from_buf(&b, 0);
    hub->tick = loop_timer_new(loop, on_tick, hub);
    if (hub->keepalive == NULL || hub->tick == NULL) {
        hub_free(hub);
        return NULL;
    }
    hub->ka_done_s = loop_now_ms(loop) / 1000;
    loop_timer_start(hub->tick, 1000);
    metrics_histogram_init(&hub->stats.upstream_latency, latency_bounds,
                           sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    metrics_histogram_init(&hub->stats.patch_bytes, patch_bounds,
                           sizeof(patch_bounds) / sizeof(patch_bounds[0]));
    return hub;
}

void hub_close_all(struct hub *hub)
{
    hub->closing = 1;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++)
        for (struct topic *t = hub->buckets[b]; t; t = t->bucket_next) {
            topic_stop_poller(t);
            /* A lease held is released now, while the loop still runs to send it. */
            hub->store->ops->close(t->st);
            t->st = NULL;
            for (size_t i = 0; i < t->nsubs; i++)
                sub_end(t->subs[i], "shutdown");
        }
}

size_t hub_retire_topics(struct hub *hub, int (*pred)(void *arg, const char *key), void *arg,
                         const char *reason)
{
    size_t n = 0;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++)
        for (struct topic *t = hub->buckets[b]; t; t = t->bucket_next) {
            if (t->retired || !pred(arg, t->key))
                continue;
            t->retired = 1;
            n++;
            hub->stats.topics_retired++;
            topic_stop_poller(t);
            hub->store->ops->close(t->st);
            t->st = NULL;
            for (size_t i = 0; i < t->nsubs; i++)
                sub_end(t->subs[i], reason);
            if (t->nsubs == 0 && !hub->closing)
                loop_timer_start(t->idle_timer, 0);
        }
    return n;
}

void hub_free(struct hub *hub)
{
    if (hub == NULL)
        return;
    hub->closing = 1;
    if (hub->store->refresh_fn == on_store_refresh && hub->store->refresh_arg == hub)
        hub->store->refresh_fn = NULL;
    for (size_t b = 0; b < TOPIC_BUCKETS; b++)
        while (hub->buckets[b])
            topic_free(hub->buckets[b]);
    loop_timer_free(hub->tick);
    frame_unref(hub->keepalive);
    free(hub);
}

const struct hub_stats *hub_stats(const struct hub *hub)
{
    return &hub->stats;
}

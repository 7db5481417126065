/* Where a topic's history and id sequence live. The hub reaches them through this one interface,
 * with two implementations side by side: the in-process store (store/memory.c: a ring of frames
 * per topic, one node) and the Redis store (store/redis.c: cluster mode, a leased writer per
 * topic, a shared Redis Stream and snapshot, a local ring as cache). The hub publishes through
 * store_ops.append and is told through store_topic_cbs what to serve and whether to poll; the
 * fan-out and the SSE writer never know which store they have. */
#ifndef POLLCAST_STORE_H
#define POLLCAST_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hub.h"

struct loop;
struct metrics;
struct store;
struct store_topic;

enum store_kind {
    STORE_DATA = 1,      /* a whole document (the first version of an epoch) */
    STORE_PATCH = 2,     /* an RFC 6902 patch from the previous version */
    STORE_ERROR = 3,     /* upstream-error (or the Streamdata.io "error" event); no id */
    STORE_RECOVERED = 4, /* upstream-recovered; no id */
};

/* One event of a publication: the frame the hub built (f->seq is the version it leads to for
 * DATA and PATCH, 0 otherwise) and its kind. */
struct store_event {
    enum store_kind kind;
    struct frame *frame;
};

/* What a store tells the hub about one topic. Each callback may be called from within the store
 * call that caused it (store_ops.open, interest, append) as well as later from the loop; none
 * may call store_ops.close on the topic. */
struct store_topic_cbs {
    /* The hub serves version seq of epoch from now on; doc (len bytes, not NUL-terminated, the
     * store keeps it) is that version's document, or NULL: with seq 0, there is none yet; with
     * seq > 0, the document the hub has (if any) stays, as that version. The hub keeps its
     * subscribers' streams as they are when (epoch, seq) is what it already served, and sends them
     * the new snapshot otherwise. */
    void (*sync)(void *arg, uint64_t epoch, uint64_t seq, const char *doc, size_t len);
    /* This node polls the topic from now on (writer 1) or no longer does (writer 0). */
    void (*role)(void *arg, int writer);
    /* The outcome of the append in flight: ok 1, its events are in the history in order and the
     * hub publishes them; ok 0, they were refused (this node lost the lease, the store is out of
     * room or down) and the hub drops them (a later poll diffs again from what was committed);
     * ok -1 (push topics of the Redis store), another node published first: the hub drops them
     * and has been handed that node's version (event or sync) before this call. */
    void (*appended)(void *arg, int ok);
    /* An event that another node published, in order. For DATA, payload is the document; for
     * PATCH the patch; for ERROR and RECOVERED the event's JSON. f is the frame as the writer
     * built it (same bytes, same id; NULL for an empty RECOVERED); the hub takes its own
     * reference. Returns 0, or -1 when the event does not follow the version the hub serves (or
     * cannot be applied): the store then hands over the stored snapshot through sync. */
    int (*event)(void *arg, struct frame *f, enum store_kind kind, const char *payload, size_t len);
};

/* What became of a refresh passed on to the other nodes (store_ops.refresh). */
enum store_refresh {
    STORE_REFRESH_ALONE = 0,     /* there are no other nodes (the memory store) */
    STORE_REFRESH_FORWARDED = 1, /* sent to every node, or joined a request still on its way */
    STORE_REFRESH_DEGRADED = 2,  /* cluster mode, but Redis is unavailable: this node is alone */
    STORE_REFRESH_BUSY = 3,      /* too many refresh requests on their way: not sent */
};

struct store_ops {
    const char *name; /* "memory", "redis" */
    /* Opens the store's side of a topic. key identifies the topic on this node (hub key);
     * spec is its definition (what is polled and how); both are read, not kept. Calls
     * cbs->sync with the topic's first position (possibly later, for stores that load it).
     * Returns NULL on OOM. */
    struct store_topic *(*open)(struct store *s, const char *key, const struct topic_spec *spec,
                                const struct store_topic_cbs *cbs, void *arg);
    /* Closes the topic: its history is dropped locally, a lease held is released. No callback
     * is called after this. Accepts NULL. */
    void (*close)(struct store_topic *st);
    /* The topic has local subscribers (1) or none (0); only topics with subscribers compete to
     * poll. The memory store makes the topic's writer at once. Cannot fail. */
    void (*interest)(struct store_topic *st, int subscribers);
    /* Appends events[0..n) (at most 2) as the topic's writer, in order; doc (doc_len bytes) is
     * the document after them, NULL when they do not change it. The store takes its own frame
     * references. cbs->appended is called exactly once with the outcome, possibly from inside
     * this call. Only one append may be in flight per topic: returns -1 without a callback when
     * one is. */
    int (*append)(struct store_topic *st, const struct store_event *events, size_t n,
                  const char *doc, size_t doc_len);
    /* The patch frames after version after_seq up to the current version, for a resuming
     * subscriber: calls push(arg, f) for each in order and returns 0 when every one of them is
     * in the history (none when after_seq is the current version), or -1 (push not called) when
     * some are missing. */
    int (*history)(struct store_topic *st, uint64_t after_seq,
                   void (*push)(void *arg, struct frame *f), void *arg);
    /* Asks the other nodes to make the pollers of their topics whose hub key starts with
     * prefix (read, not kept) fetch now: each node calls its store's refresh_fn with the prefix
     * (the node that polls such a topic then polls). Coalesced: a request for the same prefix
     * still on its way answers this one too. Returns an enum store_refresh; NULL for stores of
     * one node. Cannot fail otherwise. */
    int (*refresh)(struct store *s, const char *prefix);
    /* Frees the store; every topic must have been closed. Accepts NULL. */
    void (*free)(struct store *s);
};

/* A store: implementations embed this first. */
struct store {
    const struct store_ops *ops;
    /* Set by the hub (NULL: nobody listens): called from the loop when another node asks for a
     * refresh of the topics whose hub key starts with prefix (NUL-terminated, valid during the
     * call). May not call the store back. */
    void (*refresh_fn)(void *arg, const char *prefix);
    void *refresh_arg;
};

/* Limits of a topic's local history. */
struct store_params {
    size_t history_events;   /* patch frames kept, per topic */
    size_t history_bytes;    /* and their bytes at most */
    uint64_t history_age_ms; /* frames older than this leave the history; 0: no limit */
};

/* Returns a new epoch: unique across processes (hub_epoch_next: the wall clock in ms above 22
 * random bits) and increasing within this process. The one place where epochs are made. Cannot
 * fail. */
uint64_t store_epoch_new(void);

/* Makes store_epoch_new read the clock as fixed_ms from now on (0: the wall clock again), as
 * instances started in the same millisecond would. For tests only. Cannot fail. */
void store_epoch_fix_clock(uint64_t fixed_ms);

/* The in-process store: history in memory, one node. Returns NULL on OOM. */
struct store *store_memory_new(struct loop *loop, const struct store_params *params);

/* A ring of patch frames with consecutive versions, bounded by count, bytes and age: the memory
 * store's history, and the Redis store's local cache of the shared one. */
struct store_ring {
    struct loop *loop;
    struct store_params p;
    struct frame **f; /* p.history_events slots (at least one) */
    size_t head, count, bytes;
    uint64_t last; /* the version the ring leads up to (the topic's current version) */
};

/* Returns 0, or -1 on OOM. */
int store_ring_init(struct store_ring *r, struct loop *loop, const struct store_params *p);

/* Drops every frame. Accepts a ring that failed to init. */
void store_ring_dispose(struct store_ring *r);

/* Empties the ring and makes seq its current version. */
void store_ring_reset(struct store_ring *r, uint64_t seq);

/* Adds a frame of version f->seq (taking a reference) and makes it the current version; a frame
 * that does not follow the current version, or too large to keep, empties the ring instead
 * (resume needs every patch after the client's id). Sets f->time_ms when 0. */
void store_ring_push(struct store_ring *r, struct frame *f);

/* As store_ops.history. */
int store_ring_history(struct store_ring *r, uint64_t after_seq,
                       void (*push)(void *arg, struct frame *f), void *arg);

/* ---- the Redis store (store/redis.c; its header comment documents the key layout) ---- */

struct store_redis_params {
    const struct config_redis_addr *addr; /* copied */
    const char *node_id;                  /* NULL or "": hostname-pid */
    uint64_t lease_ms;
    struct store_params history; /* local ring, and the stream's MAXLEN ~ history_events */
};

/* Returns the Redis store; it connects on the loop (never blocking, except for resolving the
 * host name) and serves alone (degraded) until Redis answers. Returns NULL with a message in
 * err on OOM. */
struct store *store_redis_new(struct loop *loop, const struct store_redis_params *p, char *err,
                              size_t errlen);

/* Writes into out the 32 hex digits that name a topic in Redis: SHA-256 over the hub key and
 * the definition (spec), so that every node derives the same name, a changed definition gives
 * another, and no header value is stored in clear. Returns 0, or -1 when hashing fails. */
int store_redis_topic_id(const char *key, const struct topic_spec *spec, char out[33]);

/* The node's cluster state: "connecting", "up" or "degraded". */
const char *store_redis_state(const struct store *s);

/* The node id in use (configured, or hostname-pid). */
const char *store_redis_node_id(const struct store *s);

/* Registers the pollcast_cluster_* metrics in m. Returns 0, or -1 on OOM. */
int store_redis_add_metrics(struct store *s, struct metrics *m);

#endif

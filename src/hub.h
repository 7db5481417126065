/* The hub: one topic per distinct upstream (URL, forwarded headers, interval), holding the
 * current document, the history of patch events and the subscribers. A poll result becomes at
 * most one serialized event frame, shared by reference with the history and every subscriber's
 * queue; nothing is serialized per subscriber. Subscribers are drained by their transport
 * through subscriber_read and woken through the ops table they registered with. */
#ifndef POLLCAST_HUB_H
#define POLLCAST_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "upstream.h"

struct loop;
struct store;
struct hub;
struct topic;
struct subscriber;

/* An immutable, refcounted, fully framed SSE event ("id: ..\nevent: ..\ndata: ..\n\n"). */
struct frame {
    unsigned refs;
    size_t len;
    uint64_t seq;     /* version this event leads to (patch, data); 0 for events without id */
    uint64_t time_ms; /* when it was published (loop clock) */
    char *data;       /* owned; len bytes */
};

/* Takes a reference; returns f. */
struct frame *frame_ref(struct frame *f);

/* Drops a reference and frees the frame with the last one. Accepts NULL. */
void frame_unref(struct frame *f);

enum hub_mode {
    HUB_MODE_PATCH,    /* a data event, then patch events */
    HUB_MODE_SNAPSHOT, /* a data event on every change */
};

struct hub_params {
    size_t queue_events;    /* events a subscriber may have pending before it is reset */
    size_t queue_bytes;     /* and their bytes */
    uint64_t idle_grace_ms; /* a topic without subscribers stops polling after this */
    uint64_t keepalive_ms;  /* comment line when a subscriber had nothing for this long */
    uint64_t retry_ms;      /* retry: field, plus a random 0..retry_jitter_ms */
    uint64_t retry_jitter_ms;
    size_t max_topics; /* topics (pollers) at most; 0: no limit */
};

/* What a topic polls and how its patches are computed. Copied by hub_topic_get. */
struct topic_spec {
    struct poller_spec poll;
    const char *const *id_keys; /* array identity members for the diff; NULL: {"id"} */
    const char *name;           /* stream name for logs ("prices", or the URL without its
                                   query: it must hold no secret) */
    uint64_t error_repeat_ms;   /* upstream-error at most once per this while failing */
    int compat;                 /* Streamdata.io events: upstream trouble as "error" events
                                   {"cause","status","message"}, no upstream-recovered */
    int any_content_type;       /* 1: a body of any Content-Type is taken when it parses as
                                   JSON; 0: only JSON types (or none) */
    int push;                   /* a push stream ([stream NAME]): no poller, documents come
                                   from hub_topic_put; the topic stays without subscribers */
    const char *identity_url;   /* the URL as configured when poll.url is this node's own
                                   rewriting of it (builtin:demo); NULL: poll.url. Nodes of a
                                   cluster name the topic by it */
};

/* The transport side of a subscriber. */
struct subscriber_ops {
    /* The subscriber has bytes to read again after subscriber_read returned 0, or it must be
     * closed (subscriber_read will then return -1). Must not call back into the hub. */
    void (*wake)(void *ctx);
};

/* Counters the hub keeps; read by the metrics endpoint. The five polls_ counters partition the
 * polls: a body refused as not JSON counts as rejected, not also as failed. */
struct hub_stats {
    uint64_t topics, subscribers;
    uint64_t pollers; /* topics this node polls (all of them with one node; in cluster mode,
                         those it holds the lease of, or polls alone while Redis is away) */
    uint64_t polls_changed, polls_unchanged, polls_not_modified, polls_failed, polls_rejected;
    uint64_t events_published, frames_queued, subscribers_reset;
    uint64_t events_delivered; /* frames written out whole to subscribers, keepalives excluded */
    uint64_t bytes_in, bytes_out;
    uint64_t topics_retired;
    uint64_t publishes_changed, publishes_unchanged; /* hub_topic_put: new version, or none */
    struct metrics_histogram upstream_latency; /* seconds, per poll that got an answer or failed */
    struct metrics_histogram patch_bytes;      /* size of each patch published (JSON array) */
};

/* What one subscriber was sent, for the access log. Shared between its creator and the hub:
 * refs counts both; release is called when the last one is dropped and frees the tally. */
struct subscriber_tally {
    unsigned refs;
    uint64_t events, bytes; /* frames (keepalives excluded) and bytes read by the transport */
    const char *end_reason; /* static: why the hub ended the stream ("shutdown", "reload",
                               "client_gone", "token_expired", ...), NULL while it has not */
    struct subscriber *sub; /* the subscriber counting into it, NULL once it is gone */
    void (*release)(struct subscriber_tally *t);
};

/* Returns a hub polling through pool and keeping its topics' history and ids in store, or NULL
 * on OOM. params is copied; store is not owned and must outlive the hub. */
struct hub *hub_new(struct loop *loop, struct upstream_pool *pool, struct store *store,
                    const struct hub_params *params);

/* Frees every topic and subscriber (their transports are woken to close first by
 * hub_close_all) and the hub. Accepts NULL. */
void hub_free(struct hub *hub);

/* Returns the topic for key, creating it (and its poller, which polls at once) when there is
 * none. Returns NULL on failure (OOM, bad spec, max_topics reached, shutting down). The hub owns
 * the topic. */
struct topic *hub_topic_get(struct hub *hub, const char *key, const struct topic_spec *spec);

/* Returns the live topic for key, or NULL when there is none (nothing is created). */
struct topic *hub_topic_find(struct hub *hub, const char *key);

/* Adds a subscriber to topic. last_event_id (may be NULL) is the id the client saw last: when it
 * is in the topic's history only later patches are queued, otherwise the current snapshot.
 * The hub owns the subscriber until hub_unsubscribe. Returns NULL on OOM. */
struct subscriber *hub_subscribe(struct topic *topic, enum hub_mode mode, const char *last_event_id,
                                 const struct subscriber_ops *ops, void *ctx);

/* The next hub_subscribe on hub, and only that one, counts into tally and holds a reference
 * to it until hub_unsubscribe (tally may be NULL to cancel). For transports that create the
 * subscriber out of their caller's sight. Cannot fail. */
void hub_set_next_tally(struct hub *hub, struct subscriber_tally *tally);

/* Copies up to max pending bytes of the subscriber's stream into dst. Returns the count, 0 when
 * nothing is pending (the subscriber is then marked idle and its ops->wake will be called when
 * there is), or -1 when the stream must end (shutdown, topic removed). */
long subscriber_read(struct subscriber *s, char *dst, size_t max);

/* Ends one subscriber's stream: it reads -1 after its current event and is woken. Used when its
 * client is known to be gone. */
void hub_subscriber_close(struct subscriber *s);

/* Ends one subscriber's stream for reason (static text, for its tally): after its current event
 * it is sent last (len bytes, a whole SSE event or comment, copied; NULL: nothing), then it
 * reads -1. Does nothing when the stream is already ending. Out of memory, the stream ends
 * without last. */
void hub_subscriber_end(struct subscriber *s, const char *reason, const char *last, size_t len);

/* Removes and frees the subscriber. Accepts NULL. */
void hub_unsubscribe(struct subscriber *s);

/* Ends every stream: each subscriber reads -1 next and is woken. Used on shutdown. */
void hub_close_all(struct hub *hub);

/* Retires every topic whose key pred accepts: its poller stops, its subscribers' streams end
 * after their current event (tallies get end_reason), and hub_topic_get no longer finds it, so
 * that the next subscriber of the same key gets a new topic (new epoch: old ids mean a fresh
 * snapshot). A retired topic is freed once its last subscriber is gone. Returns how many topics
 * were retired. Cannot fail. */
size_t hub_retire_topics(struct hub *hub, int (*pred)(void *arg, const char *key), void *arg,
                         const char *reason);

/* What hub_topic_put did. */
enum hub_put {
    HUB_PUT_CHANGED = 0,   /* a new version was published */
    HUB_PUT_UNCHANGED = 1, /* the document equals the current one: no new version */
    HUB_PUT_PENDING = 2,   /* handed to a store that answers later (not the memory store) */
    HUB_PUT_BUSY = -1,     /* another publication is in flight: try again */
    HUB_PUT_INVALID = -2,  /* not JSON (err says at which byte), or over the topic's bounds */
    HUB_PUT_FAILED = -3,   /* out of memory, or the store refused it (err says which) */
    HUB_PUT_CONFLICT = -4, /* (only to a hub_put_fn) another node published first: the topic
                              serves that version now, and a new attempt diffs against it */
};

/* Told the outcome of a publication that hub_topic_put left pending: HUB_PUT_CHANGED (the
 * topic serves the new version now), HUB_PUT_CONFLICT or HUB_PUT_FAILED. May not call the hub. */
typedef void (*hub_put_fn)(void *arg, int result);

/* Publishes text (len bytes, a JSON document) on a push topic exactly as a poll that fetched
 * it would: parsed with the same bounds, diffed against the current document into a patch (the
 * first document is a data event), appended to the store with the next id and fanned out, with
 * the same history, resume and slow-subscriber handling. text is copied. Returns an enum
 * hub_put; on a negative one, nothing changed and err (errlen bytes) says why. */
int hub_topic_put(struct topic *t, const char *text, size_t len, char *err, size_t errlen);

/* After HUB_PUT_PENDING: fn(arg, result) is called once with the outcome, from the loop, or with
 * HUB_PUT_FAILED when the topic is freed first. fn NULL: nobody is told any more. Cannot fail. */
void hub_topic_put_watch(struct topic *t, hub_put_fn fn, void *arg);

/* Makes the pollers of every live topic whose key starts with prefix, that this node polls,
 * fetch now (coalesced with a request in flight: poller_poll_now), and asks the other nodes of
 * a cluster to do the same with theirs (store_ops.refresh). Returns how many topics this node
 * asked; *forwarded is set to the store's enum store_refresh. Cannot fail. */
size_t hub_refresh_topics(struct hub *hub, const char *prefix, int *forwarded);

/* The topic's current document text (NUL-terminated, *len bytes), or NULL when it has none.
 * Owned by the topic; valid until the next publication. */
const char *hub_topic_document(const struct topic *t, size_t *len);

/* Writes the id of the topic's current version (as the events carry it) into dst (at least 32
 * bytes) and returns its length; 0 (dst "") when the topic has no document yet. */
size_t hub_topic_id(const struct topic *t, char *dst);

/* Returns 1 when topic has a snapshot to serve. */
int topic_ready(const struct topic *topic);

/* The hub's counters, live. */
const struct hub_stats *hub_stats(const struct hub *hub);

/* Random bits under the time in an epoch made by hub_epoch_next. */
#define HUB_EPOCH_RANDOM_BITS 22
/* Where the time in an epoch counts from: 2025-01-01T00:00:00Z, in Unix milliseconds. */
#define HUB_EPOCH_BASE_MS 1735689600000ull

/* Makes a topic epoch: the milliseconds of now_ms since HUB_EPOCH_BASE_MS (0 before it) above
 * HUB_EPOCH_RANDOM_BITS random bits (getrandom, else OpenSSL's RAND_bytes), so that instances
 * that create the same topic in the same millisecond (several nodes behind a load balancer)
 * hand out different ids: two such instances collide with a chance of 1 in 4 million. When that
 * is not above last, returns last plus a random step of 1 to 65536 instead, so epochs increase
 * within a process. The result fits 12 base36 digits until 2060 and 13 after. Cannot fail. */
uint64_t hub_epoch_next(uint64_t now_ms, uint64_t last);

/* Writes an SSE event id for (epoch, seq) into dst (at least 32 bytes); returns its length.
 * Ids are "<epoch base36>.<seq base36>": short, [0-9a-z.] only, increasing per topic. */
size_t hub_format_id(char *dst, uint64_t epoch, uint64_t seq);

/* Parses an id written by hub_format_id. Returns 0, or -1 when id is malformed. */
int hub_parse_id(const char *id, uint64_t *epoch, uint64_t *seq);

#endif

/* The in-process store: each topic's history is a ring of patch frames in this process and its
 * id sequence a counter; the node is always the topic's writer. Also the ring that the Redis
 * store keeps as its local cache, and the one function that makes epochs. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "loop.h"
#include "store/store.h"

uint64_t store_epoch_new(void)
{
    static uint64_t last;
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = loop_wall_ms() ^ (uint64_t)(uintptr_t)&rnd;
    uint64_t e = (loop_wall_ms() << 20) | (rnd & 0xfffff);
    if (e <= last)
        e = last + 1;
    last = e;
    return e;
}

/* ---- the ring ---------------------------------------------------------------------------- */

int store_ring_init(struct store_ring *r, struct loop *loop, const struct store_params *p)
{
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->p = *p;
    r->f = calloc(p->history_events ? p->history_events : 1, sizeof(*r->f));
    return r->f ? 0 : -1;
}

static void ring_drop_oldest(struct store_ring *r)
{
    struct frame *old = r->f[r->head];
    r->bytes -= old->len;
    frame_unref(old);
    r->head = (r->head + 1) % r->p.history_events;
    r->count--;
}

void store_ring_reset(struct store_ring *r, uint64_t seq)
{
    while (r->count > 0)
        ring_drop_oldest(r);
    r->head = 0;
    r->last = seq;
}

void store_ring_dispose(struct store_ring *r)
{
    if (r->f)
        store_ring_reset(r, 0);
    free(r->f);
    r->f = NULL;
}

/* Drops patch frames older than the age limit. */
static void ring_expire(struct store_ring *r, uint64_t now)
{
    while (r->p.history_age_ms && r->count > 0 &&
           now - r->f[r->head]->time_ms > r->p.history_age_ms)
        ring_drop_oldest(r);
}

void store_ring_push(struct store_ring *r, struct frame *f)
{
    uint64_t now = loop_now_ms(r->loop);
    if (f->time_ms == 0)
        f->time_ms = now;
    ring_expire(r, now);
    size_t cap = r->p.history_events;
    if (f->seq != r->last + 1 || cap == 0 || f->len > r->p.history_bytes) {
        store_ring_reset(r, f->seq);
        return;
    }
    while (r->count > 0 && (r->count >= cap || r->bytes + f->len > r->p.history_bytes))
        ring_drop_oldest(r);
    r->f[(r->head + r->count) % cap] = frame_ref(f);
    r->count++;
    r->bytes += f->len;
    r->last = f->seq;
}

int store_ring_history(struct store_ring *r, uint64_t after_seq,
                       void (*push)(void *arg, struct frame *f), void *arg)
{
    ring_expire(r, loop_now_ms(r->loop));
    if (after_seq > r->last || r->last - after_seq > r->count)
        return -1;
    for (size_t i = r->count - (size_t)(r->last - after_seq); i < r->count; i++)
        push(arg, r->f[(r->head + i) % r->p.history_events]);
    return 0;
}

/* ---- the memory store -------------------------------------------------------------------- */

struct memory_store {
    struct store base;
    struct loop *loop;
    struct store_params p;
};

struct store_topic {
    struct memory_store *ms;
    const struct store_topic_cbs *cbs;
    void *arg;
    struct store_ring ring;
    int writer;
};

static struct store_topic *memory_open(struct store *s, const char *key,
                                       const struct topic_spec *spec,
                                       const struct store_topic_cbs *cbs, void *arg)
{
    struct memory_store *ms = (struct memory_store *)s;
    struct store_topic *st = calloc(1, sizeof(*st));
    if (st == NULL || store_ring_init(&st->ring, ms->loop, &ms->p) != 0) {
        free(st);
        return NULL;
    }
    st->ms = ms;
    st->cbs = cbs;
    st->arg = arg;
    cbs->sync(arg, store_epoch_new(), 0, NULL, 0);
    return st;
}

static void memory_close(struct store_topic *st)
{
    if (st == NULL)
        return;
    store_ring_dispose(&st->ring);
    free(st);
}

static void memory_interest(struct store_topic *st, int subscribers)
{
    /* One node: the topic polls from its first subscriber until the hub closes it. */
    if (subscribers && !st->writer) {
        st->writer = 1;
        st->cbs->role(st->arg, 1);
    }
}

static int memory_append(struct store_topic *st, const struct store_event *events, size_t n,
                         const char *doc, size_t doc_len)
{
    for (size_t i = 0; i < n; i++) {
        struct frame *f = events[i].frame;
        if (events[i].kind == STORE_PATCH)
            store_ring_push(&st->ring, f);
        else if (events[i].kind == STORE_DATA)
            store_ring_reset(&st->ring, f->seq);
    }
    st->cbs->appended(st->arg, 1);
    return 0;
}

static int memory_history(struct store_topic *st, uint64_t after_seq,
                          void (*push)(void *arg, struct frame *f), void *arg)
{
    return store_ring_history(&st->ring, after_seq, push, arg);
}

static void memory_free(struct store *s)
{
    free(s);
}

static const struct store_ops memory_ops = {
    .name = "memory",
    .open = memory_open,
    .close = memory_close,
    .interest = memory_interest,
    .append = memory_append,
    .history = memory_history,
    .free = memory_free,
};

struct store *store_memory_new(struct loop *loop, const struct store_params *params)
{
    struct memory_store *ms = calloc(1, sizeof(*ms));
    if (ms == NULL)
        return NULL;
    ms->base.ops = &memory_ops;
    ms->loop = loop;
    ms->p = *params;
    return &ms->base;
}

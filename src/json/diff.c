/* RFC 6902 patch generation between two fidelity trees (json_diff in diff.h). Objects are matched
 * by key; arrays by trimming their common ends, then matching the middle by value and by identity,
 * keeping a longest increasing subsequence of the matches in place and moving the rest. A container
 * whose patch would be longer than replacing it is replaced, and patch text stops being written as
 * soon as an enclosing replace is known to be shorter, so that work and output stay near-linear
 * (O(n log n) at worst) whatever the shape of the documents. */
#include "json/diff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/pointer.h"

#define NONE UINT32_MAX
/* Containers nested deeper than this are replaced whole rather than diffed (the recursion's
 * bound; documents parsed with the default limits never get there). */
#define DIFF_MAX_DEPTH 2048
/* Values at least this long are copied into the patch only once it is final, so that a patch
 * part dropped for a shorter replace never cost a copy of the big values it held. */
#define DEFER_MIN 64
/* Candidates tried when looking for an equal value or identity in a group of equal hashes:
 * only 64-bit hash collisions put unequal values in one group. */
#define MAX_PROBES 8

/* ---- scratch memory: a stack of chunks, released to a mark when a container is done ------- */

struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

struct scratch {
    struct chunk *head; /* every chunk, in order */
    struct chunk *cur;  /* the chunk being filled; chunks after it are spares */
};

struct scratch_mark {
    struct chunk *cur;
    size_t used;
};

/* Returns n bytes aligned to 16, valid until the scratch is released to a mark taken before;
 * NULL when out of memory. */
static void *scratch_alloc(struct scratch *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = s->cur;
    if (c != NULL && c->cap - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        return p;
    }
    struct chunk *next = c ? c->next : s->head;
    if (next != NULL && next->cap >= n) {
        next->used = n;
        s->cur = next;
        return next->data;
    }
    size_t cap = c ? c->cap * 2 : 65536;
    if (cap < n)
        cap = n;
    struct chunk *nc = malloc(sizeof(*nc) + cap);
    if (nc == NULL)
        return NULL;
    nc->cap = cap;
    nc->used = n;
    nc->next = next;
    if (c)
        c->next = nc;
    else
        s->head = nc;
    s->cur = nc;
    return nc->data;
}

static struct scratch_mark scratch_mark(const struct scratch *s)
{
    struct scratch_mark m = {s->cur, s->cur ? s->cur->used : 0};
    return m;
}

static void scratch_release(struct scratch *s, struct scratch_mark m)
{
    s->cur = m.cur;
    if (m.cur)
        m.cur->used = m.used;
}

static void scratch_free(struct scratch *s)
{
    struct chunk *c = s->head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    s->head = s->cur = NULL;
}

/* ---- the differ's state and the patch text ------------------------------------------------ */

enum { ST_OK = 0, ST_ABORT = 1, ST_OOM = -1 };

/* A value whose text goes at byte pos of the skeleton when the patch is assembled. */
struct deferred {
    size_t pos;
    const struct json_node *value;
};

struct differ {
    struct buf skel;       /* the patch text, less the deferred values */
    struct deferred *defs; /* in skeleton order */
    size_t ndefs, defs_cap;
    size_t extra; /* bytes of the deferred values */
    size_t nops;
    struct buf path; /* decoded RFC 6901 pointer of the values being compared */
    size_t pesc;     /* bytes of path once written as a JSON string, quotes excluded */
    size_t limit;    /* patch length past which an enclosing container is replaced */
    size_t over;     /* ST_ABORT: the patch length that the refused op would have made */
    int state;       /* ST_OK, ST_ABORT (unwinding to the container to replace), ST_OOM */
    unsigned depth;
    uint64_t salt; /* odd multiplier placing hashes in tables */
    const char *const *id_keys;
    struct scratch scratch;
};

/* Where the differ stands in the patch, to go back to when a container is replaced. */
struct mark {
    size_t skel, ndefs, extra, nops;
};

enum op_kind { OP_ADD, OP_REMOVE, OP_REPLACE, OP_MOVE };

static const char op_add[] = "{\"op\":\"add\",", op_remove[] = "{\"op\":\"remove\",",
                  op_replace[] = "{\"op\":\"replace\",", op_move[] = "{\"op\":\"move\",";

/* The opening of each op's text, by enum op_kind. */
static const struct {
    const char *text;
    size_t len;
} op_head[] = {
    {op_add, sizeof(op_add) - 1},
    {op_remove, sizeof(op_remove) - 1},
    {op_replace, sizeof(op_replace) - 1},
    {op_move, sizeof(op_move) - 1},
};

#define FROM_KEY  "\"from\":"
#define PATH_KEY  "\"path\":"
#define VALUE_KEY ",\"value\":"
#define LITLEN(s) (sizeof(s) - 1)

enum seg_kind { SEG_NONE, SEG_KEY, SEG_INDEX };

/* A path segment below the current path, or none (the current path itself). */
struct seg {
    int kind;
    const char *key;
    size_t klen;
    size_t index;
};

static const struct seg seg_none = {SEG_NONE, NULL, 0, 0};

static size_t digits(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Bytes that key adds to a path written as a JSON string: RFC 6901 turns '~' and '/' into two
 * bytes, then json_write_string escapes quotes, backslashes, control characters and lone
 * surrogates. Mirrors those two functions exactly. */
static size_t key_esc_len(const char *key, size_t n)
{
    const unsigned char *p = (const unsigned char *)key, *end = p + n;
    size_t len = 0;
    while (p < end) {
        unsigned char c = *p;
        if (c == '~' || c == '/' || c == '"' || c == '\\') {
            len += 2;
            p++;
        } else if (c < 0x20) {
            int short_form = c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f';
            len += short_form ? 2 : 6;
            p++;
        } else if (c == 0xED && end - p >= 3 && p[1] >= 0xA0 && p[1] <= 0xBF) {
            len += 6;
            p += 3;
        } else {
            len++;
            p++;
        }
    }
    return len;
}

static size_t seg_len(const struct seg *s)
{
    if (s->kind == SEG_KEY)
        return 1 + key_esc_len(s->key, s->klen);
    if (s->kind == SEG_INDEX)
        return 1 + digits(s->index);
    return 0;
}

/* Appends s to the current path; path_pop goes back to an earlier length. Returns 0 or -1. */
static int path_push(struct differ *d, const struct seg *s)
{
    if (s->kind == SEG_KEY)
        return json_pointer_append(&d->path, s->key, s->klen);
    if (s->kind == SEG_INDEX)
        return json_pointer_append_index(&d->path, s->index);
    return 0;
}

static void path_pop(struct differ *d, size_t len)
{
    if (d->path.data)
        buf_truncate(&d->path, len);
}

/* Writes the current path plus s as a JSON string into the skeleton. */
static int write_path(struct differ *d, const struct seg *s)
{
    size_t base = d->path.len;
    int rc = path_push(d, s);
    if (rc == 0)
        rc = json_write_string(&d->skel, d->path.data ? d->path.data : "", d->path.len);
    path_pop(d, base);
    return rc;
}

/* Writes v into the skeleton, or records it for assemble() when it is long. Returns 0 or -1. */
static int write_value(struct differ *d, const struct json_node *v)
{
    if (v->size < DEFER_MIN)
        return json_write(&d->skel, v);
    if (d->ndefs == d->defs_cap) {
        size_t cap = d->defs_cap ? d->defs_cap * 2 : 64;
        struct deferred *p = realloc(d->defs, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        d->defs = p;
        d->defs_cap = cap;
    }
    d->defs[d->ndefs].pos = d->skel.len;
    d->defs[d->ndefs].value = v;
    d->ndefs++;
    d->extra += v->size;
    return 0;
}

/* Bytes of a replace of the current path by v, with its separating comma. */
static size_t replace_len(const struct differ *d, const struct json_node *v)
{
    return (d->nops ? 1 : 0) + op_head[OP_REPLACE].len + LITLEN(PATH_KEY) + 2 + d->pesc +
           LITLEN(VALUE_KEY) + v->size + 1;
}

/* Appends one op: from (move only) and path are segments below the current path; value is
 * NULL for remove and move. When the op would take the patch past d->limit, writes nothing
 * and starts unwinding (ST_ABORT) to the container that a replace will stand for.
 * Returns 0, or -1 when the differ stops (abort or out of memory). */
static int emit(struct differ *d, int op, const struct seg *from, const struct seg *path,
                const struct json_node *value)
{
    if (d->state != ST_OK)
        return -1;
    size_t len =
        (d->nops ? 1 : 0) + op_head[op].len + LITLEN(PATH_KEY) + 2 + d->pesc + seg_len(path) + 1;
    if (from)
        len += LITLEN(FROM_KEY) + 2 + d->pesc + seg_len(from) + 1;
    if (value)
        len += LITLEN(VALUE_KEY) + value->size;
    size_t now = d->skel.len + d->extra;
    if (now + len > d->limit) {
        d->state = ST_ABORT;
        d->over = now + len;
        return -1;
    }
    int rc = 0;
    if (d->nops)
        rc |= buf_putc(&d->skel, ',');
    rc |= buf_append(&d->skel, op_head[op].text, op_head[op].len);
    if (from) {
        rc |= buf_append(&d->skel, FROM_KEY, LITLEN(FROM_KEY));
        rc |= write_path(d, from);
        rc |= buf_putc(&d->skel, ',');
    }
    rc |= buf_append(&d->skel, PATH_KEY, LITLEN(PATH_KEY));
    rc |= write_path(d, path);
    if (value) {
        rc |= buf_append(&d->skel, VALUE_KEY, LITLEN(VALUE_KEY));
        rc |= write_value(d, value);
    }
    rc |= buf_putc(&d->skel, '}');
    if (rc != 0) {
        d->state = ST_OOM;
        return -1;
    }
    d->nops++;
    return 0;
}

/* scratch_alloc for the differ: on failure the differ stops, out of memory. */
static void *alloc(struct differ *d, size_t n)
{
    void *p = scratch_alloc(&d->scratch, n);
    if (p == NULL)
        d->state = ST_OOM;
    return p;
}

/* ---- groups: items 0..n-1 grouped by a 64-bit key, each group in item order --------------- */

struct gslot {
    uint64_t key;
    uint32_t n;  /* items in the group; 0 for an empty slot */
    uint32_t at; /* n == 1: the item, NONE once taken; n > 1: the group's first position */
};

/* Items are taken (matched) one at a time. Most groups hold one item, which lives in its slot;
 * larger groups (duplicates) are runs of positions in item[], and finding the first item not
 * yet taken from any position on is a union-find walk over free[], so that groups of many
 * equal values never cost a scan. */
struct groups {
    struct gslot *slots;
    unsigned bits;
    uint64_t salt;
    uint32_t *item; /* per position: the item, increasing within a group */
    uint32_t *free; /* per position (and one past): a position at or before the next free one */
};

static inline uint32_t groups_slot(const struct groups *gr, uint64_t key)
{
    return (uint32_t)((key * gr->salt) >> (64 - gr->bits));
}

static inline void groups_prefetch(const struct groups *gr, uint64_t key)
{
    __builtin_prefetch(&gr->slots[groups_slot(gr, key)]);
}

/* Groups items 0..n-1 (n >= 1) by keys[i]. Returns 0, or -1 when out of memory. */
static int groups_build(struct differ *d, struct groups *gr, const uint64_t *keys, uint32_t n)
{
    unsigned bits = 1;
    while (((uint64_t)1 << bits) < (uint64_t)n * 2)
        bits++;
    size_t nslots = (size_t)1 << bits;
    gr->slots = alloc(d, nslots * sizeof(*gr->slots));
    uint32_t *sid = alloc(d, (size_t)n * sizeof(*sid));
    if (gr->slots == NULL || sid == NULL)
        return -1;
    memset(gr->slots, 0, nslots * sizeof(*gr->slots));
    gr->bits = bits;
    gr->salt = d->salt;
    uint32_t mask = (uint32_t)(nslots - 1), npos = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i + 16 < n)
            groups_prefetch(gr, keys[i + 16]);
        uint32_t s = groups_slot(gr, keys[i]);
        while (gr->slots[s].n != 0 && gr->slots[s].key != keys[i])
            s = (s + 1) & mask;
        struct gslot *slot = &gr->slots[s];
        if (slot->n == 0) {
            slot->key = keys[i];
            slot->at = i;
        } else if (slot->n == 1) {
            npos += 2;
        } else {
            npos++;
        }
        slot->n++;
        sid[i] = s;
    }
    gr->item = alloc(d, ((size_t)npos + 1) * sizeof(*gr->item));
    gr->free = alloc(d, ((size_t)npos + 1) * sizeof(*gr->free));
    if (gr->item == NULL || gr->free == NULL)
        return -1;
    if (npos == 0)
        return 0;
    /* Runs of positions for the larger groups: each slot's at first points past its run, and
     * comes down to its start as the items go in, last first. */
    uint32_t pos = 0;
    for (size_t s = 0; s < nslots; s++)
        if (gr->slots[s].n > 1) {
            pos += gr->slots[s].n;
            gr->slots[s].at = pos;
        }
    for (uint32_t i = n; i-- > 0;) {
        struct gslot *slot = &gr->slots[sid[i]];
        if (slot->n > 1)
            gr->item[--slot->at] = i;
    }
    for (uint32_t j = 0; j <= npos; j++)
        gr->free[j] = j;
    return 0;
}

/* Returns the slot of key's group, or NULL. */
static struct gslot *groups_find(const struct groups *gr, uint64_t key)
{
    uint32_t mask = (1u << gr->bits) - 1, s = groups_slot(gr, key);
    for (;;) {
        struct gslot *slot = &gr->slots[s];
        if (slot->n == 0)
            return NULL;
        if (slot->key == key)
            return slot;
        s = (s + 1) & mask;
    }
}

/* Returns the first position at or after j whose item is not taken (possibly past the group:
 * callers compare with its end). */
static uint32_t groups_next_free(struct groups *gr, uint32_t j)
{
    while (gr->free[j] != j) {
        gr->free[j] = gr->free[gr->free[j]]; /* path halving */
        j = gr->free[j];
    }
    return j;
}

/* Whether an item of a group (equal keys) really matches what is looked for. */
typedef int (*groups_match_fn)(const void *ctx, uint32_t item);

/* Takes and returns the first item of slot's group not yet taken for which match holds: the
 * first at or after item min when there is one, else the first. Gives up, returning NONE, after
 * MAX_PROBES candidates that do not match. */
static uint32_t groups_take(struct groups *gr, struct gslot *slot, uint32_t min,
                            groups_match_fn match, const void *ctx)
{
    if (slot->n == 1) {
        uint32_t i = slot->at;
        if (i == NONE || !match(ctx, i))
            return NONE;
        slot->at = NONE;
        return i;
    }
    uint32_t lo = slot->at, end = slot->at + slot->n, hi = end;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (gr->item[mid] < min)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t j = groups_next_free(gr, lo);
    if (j >= end)
        j = groups_next_free(gr, slot->at);
    for (int probes = 0; j < end && probes < MAX_PROBES; probes++) {
        if (match(ctx, gr->item[j])) {
            gr->free[j] = j + 1;
            return gr->item[j];
        }
        j = groups_next_free(gr, j + 1);
    }
    return NONE;
}

/* ---- values, containers, objects ---------------------------------------------------------- */

static void diff_value(struct differ *d, const struct json_node *a, const struct json_node *b);

static inline int same(const struct json_node *x, const struct json_node *y)
{
    return x->hash == y->hash && json_equal(x, y);
}

/* Diffs a and b found at the current path plus segment s. */
static void diff_child(struct differ *d, const struct seg *s, const struct json_node *a,
                       const struct json_node *b)
{
    size_t plen = d->path.len, pesc = d->pesc;
    if (path_push(d, s) != 0) {
        d->state = ST_OOM;
        return;
    }
    d->pesc += seg_len(s);
    diff_value(d, a, b);
    path_pop(d, plen);
    d->pesc = pesc;
}

/* Position of m's key in obj: the same position i first, as objects usually keep their order. */
static long member_pos(const struct json_node *obj, const struct json_member *m, uint32_t i)
{
    if (i < obj->count) {
        const struct json_member *o = &obj->u.members[i];
        if (o->khash == m->khash && o->klen == m->klen && memcmp(o->key, m->key, m->klen) == 0)
            return (long)i;
    }
    return json_object_find(obj, m->key, m->klen);
}

static struct seg key_seg(const struct json_member *m)
{
    struct seg s = {SEG_KEY, m->key, m->klen, 0};
    return s;
}

struct rename_ctx {
    const struct json_member *am;
    const uint32_t *rem;
    const struct json_node *value;
};

static int rename_match(const void *ctx, uint32_t x)
{
    const struct rename_ctx *c = ctx;
    return json_equal(c->am[c->rem[x]].value, c->value);
}

/* Objects: changed members are diffed in a's order, then removed members are removed (a's
 * order), then new members are added (b's order); a removed member whose value equals a new
 * member's value is moved instead (a key rename). */
static void diff_object(struct differ *d, const struct json_node *a, const struct json_node *b)
{
    const struct json_member *am = a->u.members, *bm = b->u.members;
    uint32_t *rem = NULL, nrem = 0, *add = NULL, nadd = 0, common = 0;
    /* On wide objects, remembering which members of b were found saves looking up every
     * member of b in a. */
    uint8_t *found = NULL;
    if (b->count > 16) {
        if ((found = alloc(d, b->count)) == NULL)
            return;
        memset(found, 0, b->count);
    }
    for (uint32_t i = 0; i < a->count; i++) {
        long j = member_pos(b, &am[i], i);
        if (found && j >= 0)
            found[j] = 1;
        if (j < 0) {
            if (rem == NULL && (rem = alloc(d, a->count * sizeof(*rem))) == NULL)
                return;
            rem[nrem++] = i;
            continue;
        }
        common++;
        const struct json_node *bv = bm[j].value;
        if (same(am[i].value, bv))
            continue;
        struct seg s = key_seg(&am[i]);
        diff_child(d, &s, am[i].value, bv);
        if (d->state != ST_OK)
            return;
    }
    if (common < b->count) {
        if ((add = alloc(d, b->count * sizeof(*add))) == NULL)
            return;
        for (uint32_t j = 0; j < b->count; j++)
            if (found ? !found[j] : member_pos(a, &bm[j], j) < 0)
                add[nadd++] = j;
    }
    /* moved_to[x]: the new member that removed member x is renamed to, or NONE. */
    uint32_t *moved_to = NULL, *moved_from = NULL;
    if (nrem && nadd) {
        uint64_t *keys = alloc(d, nrem * sizeof(*keys));
        moved_to = alloc(d, nrem * sizeof(*moved_to));
        moved_from = alloc(d, nadd * sizeof(*moved_from));
        struct groups gr;
        if (keys == NULL || moved_to == NULL || moved_from == NULL)
            return;
        for (uint32_t x = 0; x < nrem; x++) {
            keys[x] = am[rem[x]].value->hash;
            moved_to[x] = NONE;
        }
        if (groups_build(d, &gr, keys, nrem) != 0)
            return;
        struct rename_ctx ctx = {am, rem, NULL};
        for (uint32_t y = 0; y < nadd; y++) {
            ctx.value = bm[add[y]].value;
            struct gslot *slot = groups_find(&gr, ctx.value->hash);
            uint32_t x = slot ? groups_take(&gr, slot, 0, rename_match, &ctx) : NONE;
            moved_from[y] = x;
            if (x != NONE)
                moved_to[x] = y;
        }
    }
    for (uint32_t x = 0; x < nrem; x++) {
        if (moved_to && moved_to[x] != NONE)
            continue;
        struct seg s = key_seg(&am[rem[x]]);
        if (emit(d, OP_REMOVE, NULL, &s, NULL) != 0)
            return;
    }
    for (uint32_t y = 0; y < nadd; y++) {
        struct seg to = key_seg(&bm[add[y]]);
        int rc;
        if (moved_from && moved_from[y] != NONE) {
            struct seg from = key_seg(&am[rem[moved_from[y]]]);
            rc = emit(d, OP_MOVE, &from, &to, NULL);
        } else {
            rc = emit(d, OP_ADD, NULL, &to, bm[add[y]].value);
        }
        if (rc != 0)
            return;
    }
}

/* ---- arrays ------------------------------------------------------------------------------- */

/* Per element of the middle of b. */
enum {
    B_NEW = 0,   /* no element of a: added */
    B_KEPT = 1,  /* matched, stays in place (patched in place when it differs) */
    B_MOVED = 2, /* matched, moved here (then patched when it differs) */
    B_EXACT = 4, /* matched to an equal element */
};

static inline uint32_t low_bit(uint32_t i)
{
    return i & (0u - i);
}

/* Fenwick tree over positions 0..n-1 (fw[1..n]): the count of positions before i. */
static uint32_t fw_prefix(const uint32_t *fw, uint32_t i)
{
    uint32_t s = 0;
    for (; i > 0; i -= low_bit(i))
        s += fw[i];
    return s;
}

static void fw_dec(uint32_t *fw, uint32_t n, uint32_t i)
{
    for (i++; i <= n; i += low_bit(i))
        fw[i]--;
}

/* The identity of an object element: its first id member with a non-null value. Returns the
 * value and stores the member name's index in id_keys, or NULL. */
static const struct json_node *identity(const struct differ *d, const struct json_node *n,
                                        uint32_t *which)
{
    if (n->type != JSON_OBJECT || n->count == 0)
        return NULL;
    for (uint32_t k = 0; d->id_keys[k] != NULL; k++) {
        const struct json_node *v = json_object_get(n, d->id_keys[k], strlen(d->id_keys[k]));
        if (v != NULL && v->type != JSON_NULL) {
            *which = k;
            return v;
        }
    }
    return NULL;
}

static inline uint64_t identity_key(const struct json_node *v, uint32_t which)
{
    return v->hash ^ ((uint64_t)(which + 1) * 0x9E3779B97F4A7C15ull);
}

struct equal_ctx {
    const struct json_node *const *items;
    const struct json_node *value;
};

static int equal_match(const void *ctx, uint32_t i)
{
    const struct equal_ctx *c = ctx;
    return json_equal(c->items[i], c->value);
}

struct identity_ctx {
    const struct json_node **idv;
    const uint32_t *which;
    const struct json_node *value;
    uint32_t w;
};

static int identity_match(const void *ctx, uint32_t x)
{
    const struct identity_ctx *c = ctx;
    return c->which[x] == c->w && json_equal(c->idv[x], c->value);
}

/* Matches each element of B to an unused equal element of A: among equal ones, the first after
 * the element of A matched last (so that runs of duplicates pair in order rather than cross),
 * else the first. Then each element of B still unmatched to the first unused element of A with
 * the same identity. Exact matches go first over the whole array, as they cost nothing in the
 * patch. Returns 0, or -1 when out of memory. */
static int match_middle(struct differ *d, const struct json_node *const *A, uint32_t na,
                        const struct json_node *const *B, uint32_t nb, uint32_t *amatch,
                        uint32_t *bmatch, uint8_t *state)
{
    struct scratch_mark sm = scratch_mark(&d->scratch);
    int rc = -1;
    uint64_t *keys = alloc(d, (size_t)na * sizeof(*keys));
    struct groups gr;
    if (keys == NULL)
        goto out;
    for (uint32_t i = 0; i < na; i++)
        keys[i] = A[i]->hash;
    if (groups_build(d, &gr, keys, na) != 0)
        goto out;
    uint32_t unmatched_b = 0, next = 0;
    struct equal_ctx ectx = {A, NULL};
    for (uint32_t k = 0; k < nb; k++) {
        /* The table is far larger than the cache on long arrays: ask for slots ahead. */
        if (k + 16 < nb)
            groups_prefetch(&gr, B[k + 16]->hash);
        struct gslot *slot = groups_find(&gr, B[k]->hash);
        ectx.value = B[k];
        uint32_t i = slot ? groups_take(&gr, slot, next, equal_match, &ectx) : NONE;
        if (i == NONE) {
            unmatched_b++;
            continue;
        }
        amatch[i] = k;
        bmatch[k] = i;
        state[k] = B_EXACT;
        next = i + 1;
    }
    if (unmatched_b == 0 || d->id_keys[0] == NULL) {
        rc = 0;
        goto out;
    }
    /* Identity: group the unmatched object elements of A that carry one. */
    scratch_release(&d->scratch, sm);
    uint32_t *cand = alloc(d, (size_t)na * sizeof(*cand));
    const struct json_node **idv = alloc(d, (size_t)na * sizeof(*idv));
    uint32_t *which = alloc(d, (size_t)na * sizeof(*which));
    keys = alloc(d, (size_t)na * sizeof(*keys));
    if (cand == NULL || idv == NULL || which == NULL || keys == NULL)
        goto out;
    uint32_t nc = 0;
    for (uint32_t i = 0; i < na; i++) {
        if (amatch[i] != NONE)
            continue;
        const struct json_node *v = identity(d, A[i], &which[nc]);
        if (v == NULL)
            continue;
        cand[nc] = i;
        idv[nc] = v;
        keys[nc] = identity_key(v, which[nc]);
        nc++;
    }
    if (nc == 0) {
        rc = 0;
        goto out;
    }
    if (groups_build(d, &gr, keys, nc) != 0)
        goto out;
    for (uint32_t k = 0; k < nb; k++) {
        if (bmatch[k] != NONE)
            continue;
        uint32_t w;
        const struct json_node *v = identity(d, B[k], &w);
        if (v == NULL)
            continue;
        struct gslot *slot = groups_find(&gr, identity_key(v, w));
        struct identity_ctx ictx = {idv, which, v, w};
        uint32_t x = slot ? groups_take(&gr, slot, 0, identity_match, &ictx) : NONE;
        if (x != NONE) {
            amatch[cand[x]] = k;
            bmatch[k] = cand[x];
        }
    }
    rc = 0;
out:
    scratch_release(&d->scratch, sm);
    return rc;
}

/* Marks as kept a longest increasing subsequence of the matched A positions in B's order
 * (patience sorting); every other matched element is moved. */
static int keep_increasing(struct differ *d, const uint32_t *bmatch, uint32_t nb, uint8_t *state)
{
    struct scratch_mark sm = scratch_mark(&d->scratch);
    /* tails[l]: the B position ending the best increasing run of length l + 1 found so far,
     * tailv[l] its A position (kept apart so that the search reads one small array). */
    uint32_t *tails = alloc(d, (size_t)nb * sizeof(*tails));
    uint32_t *tailv = alloc(d, (size_t)nb * sizeof(*tailv));
    uint32_t *pred = alloc(d, (size_t)nb * sizeof(*pred));
    if (tails == NULL || tailv == NULL || pred == NULL)
        return -1;
    uint32_t len = 0;
    for (uint32_t k = 0; k < nb; k++) {
        uint32_t v = bmatch[k];
        if (v == NONE)
            continue;
        /* lo: the first run whose tail is not below v. Appending is the common case on
         * mostly ordered arrays; otherwise a binary search without branches to mispredict. */
        uint32_t lo = len;
        if (len && tailv[len - 1] > v) {
            uint32_t base = 0, n = len;
            while (n > 1) {
                uint32_t half = n / 2;
                base = tailv[base + half - 1] < v ? base + half : base;
                n -= half;
            }
            lo = base;
        }
        pred[k] = lo ? tails[lo - 1] : NONE;
        tails[lo] = k;
        tailv[lo] = v;
        if (lo == len)
            len++;
    }
    for (uint32_t k = 0; k < nb; k++)
        if (bmatch[k] != NONE)
            state[k] |= B_MOVED;
    for (uint32_t k = len ? tails[len - 1] : NONE; k != NONE; k = pred[k])
        state[k] = (uint8_t)((state[k] & ~B_MOVED) | B_KEPT);
    scratch_release(&d->scratch, sm);
    return 0;
}

/* Between two consecutive kept elements (and before the first, after the last), pairs the
 * unmatched elements of A with the unmatched elements of B in order: they stay in place and are
 * patched (or replaced) rather than removed and added. */
static void pair_gaps(uint32_t na, uint32_t nb, uint32_t *amatch, uint32_t *bmatch, uint8_t *state)
{
    uint32_t ia = 0, ib = 0;
    for (uint32_t k = 0; k <= nb; k++) {
        uint32_t ak = na, bk = nb;
        if (k < nb) {
            if (!(state[k] & B_KEPT))
                continue;
            ak = bmatch[k];
            bk = k;
        }
        uint32_t x = ia, y = ib;
        for (;;) {
            while (x < ak && amatch[x] != NONE)
                x++;
            while (y < bk && bmatch[y] != NONE)
                y++;
            if (x >= ak || y >= bk)
                break;
            amatch[x] = y;
            bmatch[y] = x;
            state[y] = B_KEPT;
            x++;
            y++;
        }
        ia = ak + 1;
        ib = bk + 1;
    }
}

/* Emits the ops that turn the middle of a (at h, na elements) into the middle of b (nb
 * elements), given the matching: removes, then adds and moves in B's order, each index right
 * for the array as the ops before it left it; then the in-place diffs of matched pairs. */
static void emit_middle(struct differ *d, size_t h, const struct json_node *const *A, uint32_t na,
                        const struct json_node *const *B, uint32_t nb, const uint32_t *amatch,
                        const uint32_t *bmatch, const uint8_t *state)
{
    /* Kept elements by rank (their order, the same in A and B): positions in A and in B. */
    /* Every removed, added and moved element costs one op (a moved element that needed none
     * would extend the longest increasing subsequence), so the patch is at least this long:
     * when that is already past an enclosing replace, stop here. */
    uint32_t nkept = 0;
    size_t least = d->skel.len + d->extra - (d->nops == 0); /* the first op has no comma */
    size_t op_fixed = 1 + LITLEN(PATH_KEY) + 2 + d->pesc + 2 + 1;
    for (uint32_t k = 0; k < nb; k++) {
        if (state[k] & B_KEPT)
            nkept++;
        else if (state[k] & B_MOVED)
            least += op_fixed + op_head[OP_MOVE].len + LITLEN(FROM_KEY) + 2 + d->pesc + 3;
        else
            least += op_fixed + op_head[OP_ADD].len + LITLEN(VALUE_KEY) + B[k]->size;
    }
    for (uint32_t i = 0; i < na; i++)
        if (amatch[i] == NONE)
            least += op_fixed + op_head[OP_REMOVE].len;
    if (least > d->limit) {
        d->state = ST_ABORT;
        d->over = least;
        return;
    }
    uint32_t *ka = alloc(d, ((size_t)nkept + 1) * sizeof(*ka));
    uint32_t *kb = alloc(d, ((size_t)nkept + 1) * sizeof(*kb));
    /* Moved elements of A: the rank of the last kept element before them, plus one. */
    uint32_t *anchor = alloc(d, (size_t)na * sizeof(*anchor));
    uint32_t *fw = alloc(d, ((size_t)na + 1) * sizeof(*fw));
    if (ka == NULL || kb == NULL || anchor == NULL || fw == NULL)
        return;
    uint32_t r = 0;
    for (uint32_t k = 0; k < nb; k++)
        if (state[k] & B_KEPT) {
            ka[r] = bmatch[k];
            kb[r] = k;
            r++;
        }
    memset(fw, 0, ((size_t)na + 1) * sizeof(*fw));
    r = 0;
    for (uint32_t i = 0; i < na; i++) {
        if (amatch[i] == NONE)
            continue;
        if (state[amatch[i]] & B_KEPT) {
            r++;
        } else {
            anchor[i] = r;
            fw[i + 1] = 1;
        }
    }
    for (uint32_t i = 1; i <= na; i++) {
        uint32_t j = i + low_bit(i);
        if (j <= na)
            fw[j] += fw[i];
    }
    for (uint32_t i = na; i-- > 0;)
        if (amatch[i] == NONE) {
            struct seg s = {SEG_INDEX, NULL, 0, h + i};
            if (emit(d, OP_REMOVE, NULL, &s, NULL) != 0)
                return;
        }
    /* The array is now: head, then the kept and moved elements of A in A's order, then tail.
     * Walking B, each added or moved element goes right after B[k-1]. Kept elements never
     * move; an added or moved element lands right after the element placed before it, so
     * the elements still to be moved sit, in A's order, after the run placed behind the kept
     * element that precedes them in A. With c the rank of the last kept element before k:
     * the insertion point is h + k + (moved elements not yet placed that precede kept element
     * c in A); the current position of a moved element whose last kept predecessor in A has
     * rank r is h + (elements placed before its slot) + (moved elements not yet placed that
     * precede it in A), where the placed elements are kb[r+1] (all of B before kept r+1) when
     * r < c, and k + (r - c) (B[0..k) and the kept elements c+1..r) otherwise. */
    int64_t c = -1;
    for (uint32_t k = 0; k < nb && nkept < nb; k++) {
        if (state[k] & B_KEPT) {
            c++;
            continue;
        }
        size_t ins = h + k + (c >= 0 ? fw_prefix(fw, ka[c]) : 0);
        int rc = 0;
        if (state[k] & B_MOVED) {
            uint32_t am = bmatch[k];
            int64_t ar = (int64_t)anchor[am] - 1;
            size_t before = ar < c ? kb[ar + 1] : (size_t)((int64_t)k + (ar - c));
            size_t p = h + before + fw_prefix(fw, am);
            size_t to = p < ins ? ins - 1 : ins;
            fw_dec(fw, na, am);
            if (p != to) {
                struct seg from = {SEG_INDEX, NULL, 0, p}, path = {SEG_INDEX, NULL, 0, to};
                rc = emit(d, OP_MOVE, &from, &path, NULL);
            }
        } else {
            struct seg path = {SEG_INDEX, NULL, 0, ins};
            rc = emit(d, OP_ADD, NULL, &path, B[k]);
        }
        if (rc != 0)
            return;
    }
    for (uint32_t k = 0; k < nb; k++) {
        if (bmatch[k] == NONE || (state[k] & B_EXACT))
            continue;
        struct seg s = {SEG_INDEX, NULL, 0, h + k};
        diff_child(d, &s, A[bmatch[k]], B[k]);
        if (d->state != ST_OK)
            return;
    }
}

/* Arrays: the common head and tail are left alone; the middle is matched, kept or moved, and
 * patched (see emit_middle). */
static void diff_array(struct differ *d, const struct json_node *a, const struct json_node *b)
{
    uint32_t n = a->count, m = b->count, h = 0, t = 0;
    const struct json_node *const *ai = (const struct json_node *const *)a->u.items;
    const struct json_node *const *bi = (const struct json_node *const *)b->u.items;
    while (h < n && h < m && same(ai[h], bi[h]))
        h++;
    while (t < n - h && t < m - h && same(ai[n - 1 - t], bi[m - 1 - t]))
        t++;
    uint32_t na = n - h - t, nb = m - h - t;
    /* An empty array has no items pointer at all: NULL + 0 is undefined in C. */
    const struct json_node *const *A = n ? ai + h : ai, *const *B = m ? bi + h : bi;
    if (na == 1 && nb == 1) {
        struct seg s = {SEG_INDEX, NULL, 0, h};
        diff_child(d, &s, A[0], B[0]);
        return;
    }
    if (na == 0 || nb == 0) {
        for (uint32_t i = na; i-- > 0;) {
            struct seg s = {SEG_INDEX, NULL, 0, (size_t)h + i};
            if (emit(d, OP_REMOVE, NULL, &s, NULL) != 0)
                return;
        }
        for (uint32_t k = 0; k < nb; k++) {
            struct seg s = {SEG_INDEX, NULL, 0, (size_t)h + k};
            if (emit(d, OP_ADD, NULL, &s, B[k]) != 0)
                return;
        }
        return;
    }
    uint32_t *amatch = alloc(d, (size_t)na * sizeof(*amatch));
    uint32_t *bmatch = alloc(d, (size_t)nb * sizeof(*bmatch));
    uint8_t *state = alloc(d, nb);
    if (amatch == NULL || bmatch == NULL || state == NULL)
        return;
    memset(amatch, 0xFF, (size_t)na * sizeof(*amatch));
    memset(bmatch, 0xFF, (size_t)nb * sizeof(*bmatch));
    memset(state, 0, nb);
    if (match_middle(d, A, na, B, nb, amatch, bmatch, state) != 0)
        return;
    if (keep_increasing(d, bmatch, nb, state) != 0)
        return;
    pair_gaps(na, nb, amatch, bmatch, state);
    emit_middle(d, h, A, na, B, nb, amatch, bmatch, state);
}

/* Diffs two containers of the same type at the current path; replaces b whole when that is
 * shorter than the patch, which is known as soon as the patch text grows past the replace. */
static void diff_container(struct differ *d, const struct json_node *a, const struct json_node *b)
{
    struct mark mk = {d->skel.len, d->ndefs, d->extra, d->nops};
    size_t limit = d->skel.len + d->extra + replace_len(d, b);
    size_t outer = d->limit;
    struct scratch_mark sm = scratch_mark(&d->scratch);
    if (limit < d->limit)
        d->limit = limit;
    d->depth++;
    if (a->type == JSON_OBJECT)
        diff_object(d, a, b);
    else
        diff_array(d, a, b);
    d->depth--;
    d->limit = outer;
    scratch_release(&d->scratch, sm);
    if (d->state == ST_ABORT && d->over > limit) {
        /* This container is the innermost one whose replace is shorter than its patch. */
        buf_truncate(&d->skel, mk.skel);
        d->ndefs = mk.ndefs;
        d->extra = mk.extra;
        d->nops = mk.nops;
        d->state = ST_OK;
        emit(d, OP_REPLACE, NULL, &seg_none, b);
    }
}

/* Appends the ops that turn a into b at the current path: none when they are equal, a replace
 * when their types differ or they are scalars, else the container's patch. */
static void diff_value(struct differ *d, const struct json_node *a, const struct json_node *b)
{
    if (same(a, b))
        return;
    if (a->type == b->type && (a->type == JSON_ARRAY || a->type == JSON_OBJECT) &&
        d->depth < DIFF_MAX_DEPTH)
        diff_container(d, a, b);
    else
        emit(d, OP_REPLACE, NULL, &seg_none, b);
}

/* Copies the skeleton into out with every deferred value written at its place. */
static int assemble(struct differ *d, struct buf *out)
{
    if (buf_reserve(out, d->skel.len + d->extra) != 0)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < d->ndefs; i++) {
        if (buf_append(out, d->skel.data + at, d->defs[i].pos - at) != 0 ||
            json_write(out, d->defs[i].value) != 0)
            return -1;
        at = d->defs[i].pos;
    }
    return buf_append(out, d->skel.data + at, d->skel.len - at);
}

int json_diff(const struct json_node *a, const struct json_node *b,
              const struct json_diff_opts *opts, struct buf *out, size_t *nops)
{
    static const char *const default_ids[] = {"id", NULL};
    struct differ d;
    memset(&d, 0, sizeof(d));
    buf_init(&d.skel, 0);
    buf_init(&d.path, 0);
    d.limit = SIZE_MAX;
    d.id_keys = opts && opts->id_keys ? opts->id_keys : default_ids;
    /* Table placement only (never the output) depends on this: an odd multiplier that varies
     * with the stack address, so that crafted hashes cannot pile up in one run of slots. */
    uint64_t x = (uint64_t)(uintptr_t)&d ^ 0x2545F4914F6CDD1Dull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    d.salt = (x ^ (x >> 31)) | 1;
    size_t entry = out->len;
    int rc = -1;
    if (buf_putc(&d.skel, '[') != 0)
        goto out;
    diff_value(&d, a, b);
    if (d.state != ST_OK || buf_putc(&d.skel, ']') != 0)
        goto out;
    if (assemble(&d, out) != 0) {
        if (out->data)
            buf_truncate(out, entry);
        goto out;
    }
    if (nops)
        *nops = d.nops;
    rc = 0;
out:
    buf_dispose(&d.skel);
    buf_dispose(&d.path);
    free(d.defs);
    scratch_free(&d.scratch);
    return rc;
}

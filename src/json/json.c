/* The fidelity parser, the arena it allocates from, hashing, equality, lookup and the compact
 * serializer. One pass over the input builds the tree with every node's hash and compact size,
 * so that diffing and serializing later need no second look at unchanged subtrees. */
#include "json/json.h"

#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct json_arena {
    struct arena_chunk *head;
    size_t next_cap;
};

static struct json_arena *arena_new(size_t hint)
{
    struct json_arena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->next_cap = hint < 4096 ? 4096 : hint > (64u << 20) ? (64u << 20) : hint;
    return a;
}

static void arena_free(struct json_arena *a)
{
    if (a == NULL)
        return;
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

static void *arena_alloc(struct json_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = a->next_cap;
        if (cap < n)
            cap = n;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        if (a->next_cap < (64u << 20))
            a->next_cap *= 2;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

/* ---- hashing ----------------------------------------------------------------------------- */

__extension__ typedef unsigned __int128 u128;

#define K0 0xa0761d6478bd642full
#define K1 0xe7037ed1a0b428dbull
#define K2 0x8ebc6af09c88c6e3ull

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    u128 r = (u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t load_tail(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, p, n);
    return v;
}

uint64_t json_hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ mix(len ^ K0, K1);
    while (len >= 16) {
        h = mix(load64(p) ^ K1, load64(p + 8) ^ h);
        p += 16;
        len -= 16;
    }
    if (len >= 8) {
        h = mix(load64(p) ^ K1, h ^ K2);
        p += 8;
        len -= 8;
    }
    if (len)
        h = mix(load_tail(p, len) ^ K2, h ^ K0);
    return mix(h ^ K1, h ^ K2);
}

uint32_t json_hash_key(const char *key, size_t klen)
{
    uint64_t h = json_hash_bytes(key, klen, 0x6b6579);
    return (uint32_t)(h ^ (h >> 32));
}

#define HASH_NULL   0x6e756c6c6e756c6cull
#define HASH_FALSE  0x66616c7365000001ull
#define HASH_TRUE   0x7472756500000002ull
#define SEED_NUMBER 0x6e756dull
#define SEED_STRING 0x737472ull
#define SEED_ARRAY  0x617272ull
#define SEED_OBJECT 0x6f626aull

const char *json_type_name(int type)
{
    switch (type) {
    case JSON_NULL:
        return "null";
    case JSON_FALSE:
    case JSON_TRUE:
        return "boolean";
    case JSON_NUMBER:
        return "number";
    case JSON_STRING:
        return "string";
    case JSON_ARRAY:
        return "array";
    case JSON_OBJECT:
        return "object";
    }
    return "unknown";
}

/* ---- parser ------------------------------------------------------------------------------ */

struct parser {
    const unsigned char *start, *p, *end;
    struct json_arena *arena;
    struct json_node **items; /* pending array elements of all open arrays */
    size_t nitems, items_cap;
    struct json_member *members; /* pending members of all open objects */
    size_t nmembers, members_cap;
    unsigned depth, max_depth;
    size_t values, max_values;
    struct buf scratch; /* decoding escaped keys and strings (for their hashes) */
    struct json_error *err;
    int failed;
};

static void fail(struct parser *ps, const unsigned char *at, const char *msg)
{
    if (ps->failed)
        return;
    ps->failed = 1;
    if (ps->err) {
        ps->err->offset = (size_t)(at - ps->start);
        size_t n = strlen(msg);
        if (n >= sizeof(ps->err->msg))
            n = sizeof(ps->err->msg) - 1;
        memcpy(ps->err->msg, msg, n);
        ps->err->msg[n] = '\0';
    }
}

static inline void skip_ws(struct parser *ps)
{
    const unsigned char *p = ps->p;
    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

static struct json_node *new_node(struct parser *ps, int type, const unsigned char *text)
{
    if (ps->max_values && ++ps->values > ps->max_values) {
        fail(ps, text, "too many values in the document");
        return NULL;
    }
    struct json_node *n = arena_alloc(ps->arena, sizeof(*n));
    if (n == NULL) {
        fail(ps, text, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->type = (uint8_t)type;
    n->text = (const char *)text;
    return n;
}

/* Byte classes inside a string: 0 plain ASCII, 1 quote, 2 backslash, 3 control, 4 non-ASCII. */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Length of a valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
 * or 0 when the bytes are not one. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail >= 2 && (p[1] & 0xC0) == 0x80)
            return 2;
        return 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0;
        if (c == 0xED && p[1] >= 0xA0)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0;
        if (c == 0xF4 && p[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

/* Scans a string literal starting at the opening quote. On success ps->p is past the closing
 * quote and *escaped tells whether it holds backslash escapes. */
static int scan_string(struct parser *ps, int *escaped)
{
    const unsigned char *p = ps->p + 1, *end = ps->end;
    *escaped = 0;
    for (;;) {
        while (p < end && str_class[*p] == 0)
            p++;
        if (p >= end) {
            fail(ps, p, "unterminated string");
            return -1;
        }
        switch (str_class[*p]) {
        case 1:
            ps->p = p + 1;
            return 0;
        case 2:
            *escaped = 1;
            if (p + 1 >= end) {
                fail(ps, p, "unterminated string");
                return -1;
            }
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || hexval(p[2]) < 0 || hexval(p[3]) < 0 || hexval(p[4]) < 0 ||
                    hexval(p[5]) < 0) {
                    fail(ps, p, "invalid \\u escape in string");
                    return -1;
                }
                p += 6;
                break;
            default:
                fail(ps, p, "invalid escape in string");
                return -1;
            }
            break;
        case 3:
            fail(ps, p, "control character in string");
            return -1;
        default: {
            size_t n = utf8_seq(p, end);
            if (n == 0) {
                fail(ps, p, "invalid UTF-8 in string");
                return -1;
            }
            p += n;
        }
        }
    }
}

/* Writes the UTF-8 (for a lone surrogate, WTF-8) bytes of cp into b; returns how many. */
static size_t utf8_encode(unsigned cp, char b[4])
{
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return n;
}

static unsigned hex4(const char *p)
{
    return (unsigned)(hexval((unsigned char)p[0]) << 12 | hexval((unsigned char)p[1]) << 8 |
                      hexval((unsigned char)p[2]) << 4 | hexval((unsigned char)p[3]));
}

int json_unescape(const char *raw, size_t len, struct buf *out)
{
    /* Decoding never makes a string longer, so one reservation covers every byte written
     * below, straight into the buffer (this runs for every escaped string a document holds). */
    if (buf_reserve(out, len) != 0)
        return -1;
    char *o = out->data + out->len;
    const char *p = raw, *end = raw + len;
    int rc = 0;
    while (p < end) {
        const char *q = memchr(p, '\\', (size_t)(end - p));
        if (q == NULL) {
            memcpy(o, p, (size_t)(end - p));
            o += end - p;
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        if (q + 1 >= end) {
            rc = -1;
            break;
        }
        char c = q[1];
        p = q + 2;
        switch (c) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            if (end - q < 6) {
                rc = -1;
                break;
            }
            unsigned cp = hex4(q + 2);
            p = q + 6;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            /* A lone surrogate is kept as its three-byte (WTF-8) form so that it survives a
             * round trip through json_write_string. */
            o += utf8_encode(cp, o);
            break;
        }
        default:
            *o++ = c;
        }
        if (rc)
            break;
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return rc;
}

int json_string_decode(const struct json_node *n, struct buf *out)
{
    if (n == NULL || n->type != JSON_STRING)
        return -1;
    if (!(n->flags & JSON_ESCAPED))
        return buf_append(out, n->text + 1, n->len - 2);
    return json_unescape(n->text + 1, n->len - 2, out);
}

/* Reads the decoded bytes of a validated string body one at a time, as json_unescape writes
 * them, without allocating: for comparing strings whose escapes differ. */
struct str_decoder {
    const char *p, *end;
    char pend[4]; /* the rest of a multi-byte character from a \u escape */
    unsigned npend, ipend;
};

/* Returns the next decoded byte (0..255), or -1 at the end. */
static int decoder_next(struct str_decoder *d)
{
    if (d->ipend < d->npend)
        return (unsigned char)d->pend[d->ipend++];
    if (d->p >= d->end)
        return -1;
    unsigned char c = (unsigned char)*d->p++;
    if (c != '\\' || d->p >= d->end)
        return c;
    char e = *d->p++;
    switch (e) {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'u': {
        if (d->end - d->p < 4)
            return -1;
        unsigned cp = hex4(d->p);
        d->p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && d->end - d->p >= 6 && d->p[0] == '\\' &&
            d->p[1] == 'u') {
            unsigned lo = hex4(d->p + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                d->p += 6;
            }
        }
        d->npend = (unsigned)utf8_encode(cp, d->pend);
        d->ipend = 1;
        return (unsigned char)d->pend[0];
    }
    default:
        return (unsigned char)e; /* '"', '\\', '/' */
    }
}

/* True when two string nodes decode to the same bytes. */
static int strings_equal(const struct json_node *a, const struct json_node *b)
{
    if (!(a->flags & JSON_ESCAPED) && !(b->flags & JSON_ESCAPED))
        return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
    struct str_decoder da = {a->text + 1, a->text + a->len - 1, {0}, 0, 0};
    struct str_decoder db = {b->text + 1, b->text + b->len - 1, {0}, 0, 0};
    for (;;) {
        int x = decoder_next(&da), y = decoder_next(&db);
        if (x != y)
            return 0;
        if (x < 0)
            return 1;
    }
}

static struct json_node *parse_value(struct parser *ps);

static int push_item(struct parser *ps, struct json_node *n)
{
    if (ps->nitems == ps->items_cap) {
        size_t cap = ps->items_cap ? ps->items_cap * 2 : 256;
        struct json_node **p = realloc(ps->items, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        ps->items = p;
        ps->items_cap = cap;
    }
    ps->items[ps->nitems++] = n;
    return 0;
}

static struct json_member *push_member(struct parser *ps)
{
    if (ps->nmembers == ps->members_cap) {
        size_t cap = ps->members_cap ? ps->members_cap * 2 : 256;
        struct json_member *p = realloc(ps->members, cap * sizeof(*p));
        if (p == NULL)
            return NULL;
        ps->members = p;
        ps->members_cap = cap;
    }
    return &ps->members[ps->nmembers++];
}

static struct json_node *parse_array(struct parser *ps)
{
    const unsigned char *open = ps->p;
    struct json_node *n = new_node(ps, JSON_ARRAY, open);
    if (n == NULL)
        return NULL;
    if (++ps->depth > ps->max_depth) {
        fail(ps, open, "nesting too deep");
        return NULL;
    }
    size_t base = ps->nitems;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            struct json_node *item = parse_value(ps);
            if (item == NULL)
                return NULL;
            if (push_item(ps, item) != 0) {
                fail(ps, ps->p, "out of memory");
                return NULL;
            }
            skip_ws(ps);
            if (ps->p >= ps->end) {
                fail(ps, ps->p, "unterminated array");
                return NULL;
            }
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == ']') {
                ps->p++;
                break;
            }
            fail(ps, ps->p, "expected ',' or ']' in array");
            return NULL;
        }
    }
    ps->depth--;
    size_t count = ps->nitems - base;
    uint64_t h = SEED_ARRAY ^ mix(count ^ K2, K0);
    uint64_t size = 2 + (count ? count - 1 : 0);
    if (count) {
        n->u.items = arena_alloc(ps->arena, count * sizeof(*n->u.items));
        if (n->u.items == NULL) {
            fail(ps, open, "out of memory");
            return NULL;
        }
        memcpy(n->u.items, ps->items + base, count * sizeof(*n->u.items));
        for (size_t i = 0; i < count; i++) {
            h = mix(h ^ n->u.items[i]->hash, K1 + i);
            size += n->u.items[i]->size;
        }
    }
    ps->nitems = base;
    n->count = (uint32_t)count;
    n->len = (uint32_t)(ps->p - open);
    n->size = (uint32_t)size;
    n->hash = h;
    if (n->size == n->len)
        n->flags |= JSON_COMPACT;
    return n;
}

/* Builds the key index of an object with many members, and resolves duplicate keys: the last
 * value wins, at the position of the first occurrence. Returns the member count after that. */
static uint32_t index_members(struct parser *ps, struct json_node *n, struct json_member *m,
                              uint32_t count)
{
    int dups = 0;
    if (count <= 8) {
        for (uint32_t j = 1; j < count; j++)
            for (uint32_t i = 0; i < j; i++)
                if (m[i].value && m[i].khash == m[j].khash && m[i].klen == m[j].klen &&
                    memcmp(m[i].key, m[j].key, m[j].klen) == 0) {
                    m[i].value = m[j].value;
                    m[j].value = NULL;
                    dups = 1;
                    break;
                }
    } else {
        unsigned bits = 4;
        while ((1u << bits) < count * 2u)
            bits++;
        uint32_t slots = 1u << bits, mask = slots - 1;
        uint32_t *index = arena_alloc(ps->arena, slots * sizeof(uint32_t));
        if (index == NULL) {
            fail(ps, (const unsigned char *)n->text, "out of memory");
            return 0;
        }
        memset(index, 0, slots * sizeof(uint32_t));
        for (uint32_t j = 0; j < count; j++) {
            uint32_t s = m[j].khash & mask;
            for (;;) {
                uint32_t at = index[s];
                if (at == 0) {
                    index[s] = j + 1;
                    break;
                }
                struct json_member *o = &m[at - 1];
                if (o->khash == m[j].khash && o->klen == m[j].klen &&
                    memcmp(o->key, m[j].key, m[j].klen) == 0) {
                    o->value = m[j].value;
                    m[j].value = NULL;
                    dups = 1;
                    break;
                }
                s = (s + 1) & mask;
            }
        }
        n->index = index;
        n->index_bits = (uint8_t)bits;
    }
    if (!dups)
        return count;
    /* Close the gaps left by dropped duplicates; positions in the index move with them. */
    uint32_t out = 0;
    for (uint32_t j = 0; j < count; j++)
        if (m[j].value)
            m[out++] = m[j];
    if (n->index) {
        uint32_t slots = 1u << n->index_bits, mask = slots - 1;
        memset(n->index, 0, slots * sizeof(uint32_t));
        for (uint32_t j = 0; j < out; j++) {
            uint32_t s = m[j].khash & mask;
            while (n->index[s])
                s = (s + 1) & mask;
            n->index[s] = j + 1;
        }
    }
    return out;
}

static struct json_node *parse_object(struct parser *ps)
{
    const unsigned char *open = ps->p;
    struct json_node *n = new_node(ps, JSON_OBJECT, open);
    if (n == NULL)
        return NULL;
    if (++ps->depth > ps->max_depth) {
        fail(ps, open, "nesting too deep");
        return NULL;
    }
    size_t base = ps->nmembers;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            if (ps->p >= ps->end || *ps->p != '"') {
                fail(ps, ps->p, "expected a string key in object");
                return NULL;
            }
            const unsigned char *kstart = ps->p;
            int escaped;
            if (scan_string(ps, &escaped) != 0)
                return NULL;
            struct json_member *m = push_member(ps);
            if (m == NULL) {
                fail(ps, kstart, "out of memory");
                return NULL;
            }
            m->kraw = (const char *)kstart;
            m->kraw_len = (uint32_t)(ps->p - kstart);
            if (!escaped) {
                m->key = m->kraw + 1;
                m->klen = m->kraw_len - 2;
            } else {
                ps->scratch.len = 0;
                if (json_unescape(m->kraw + 1, m->kraw_len - 2, &ps->scratch) != 0) {
                    fail(ps, kstart, "out of memory");
                    return NULL;
                }
                char *k = arena_alloc(ps->arena, ps->scratch.len + 1);
                if (k == NULL) {
                    fail(ps, kstart, "out of memory");
                    return NULL;
                }
                memcpy(k, ps->scratch.data, ps->scratch.len);
                m->key = k;
                m->klen = (uint32_t)ps->scratch.len;
            }
            m->khash = json_hash_key(m->key, m->klen);
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                fail(ps, ps->p, "expected ':' after object key");
                return NULL;
            }
            ps->p++;
            struct json_node *v = parse_value(ps);
            if (v == NULL)
                return NULL;
            /* push_member may have moved the array; address the member by position. */
            ps->members[ps->nmembers - 1].value = v;
            skip_ws(ps);
            if (ps->p >= ps->end) {
                fail(ps, ps->p, "unterminated object");
                return NULL;
            }
            if (*ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (*ps->p == '}') {
                ps->p++;
                break;
            }
            fail(ps, ps->p, "expected ',' or '}' in object");
            return NULL;
        }
    }
    ps->depth--;
    uint32_t count = (uint32_t)(ps->nmembers - base);
    n->len = (uint32_t)(ps->p - open);
    if (count) {
        struct json_member *m = arena_alloc(ps->arena, count * sizeof(*m));
        if (m == NULL) {
            fail(ps, open, "out of memory");
            return NULL;
        }
        memcpy(m, ps->members + base, count * sizeof(*m));
        count = index_members(ps, n, m, count);
        if (ps->failed)
            return NULL;
        n->u.members = m;
    }
    ps->nmembers = base;
    uint64_t h = SEED_OBJECT ^ mix(count ^ K1, K2);
    uint64_t size = 2 + (count ? count - 1 : 0);
    for (uint32_t i = 0; i < count; i++) {
        const struct json_member *m = &n->u.members[i];
        /* Order-independent: a sum of per-member hashes, so that equal objects hash alike
         * whatever order their keys come in. */
        h += mix((uint64_t)m->khash ^ K0 ^ ((uint64_t)m->klen << 32), m->value->hash ^ K2);
        size += m->kraw_len + 1 + m->value->size;
    }
    n->count = count;
    n->size = (uint32_t)size;
    n->hash = h;
    if (n->size == n->len)
        n->flags |= JSON_COMPACT;
    return n;
}

static struct json_node *parse_number(struct parser *ps)
{
    const unsigned char *s = ps->p, *p = s, *end = ps->end;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !(*p >= '0' && *p <= '9')) {
        fail(ps, p, "invalid number");
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') {
            fail(ps, p, "leading zero in number");
            return NULL;
        }
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) {
            fail(ps, p, "expected a digit after '.' in number");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !(*p >= '0' && *p <= '9')) {
            fail(ps, p, "expected a digit in number exponent");
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    struct json_node *n = new_node(ps, JSON_NUMBER, s);
    if (n == NULL)
        return NULL;
    n->len = n->size = (uint32_t)(p - s);
    n->flags = JSON_COMPACT;
    n->hash = json_hash_bytes(s, n->len, SEED_NUMBER);
    ps->p = p;
    return n;
}

static struct json_node *parse_literal(struct parser *ps, const char *word, size_t wlen, int type,
                                       uint64_t hash)
{
    if ((size_t)(ps->end - ps->p) < wlen || memcmp(ps->p, word, wlen) != 0) {
        fail(ps, ps->p, "invalid literal");
        return NULL;
    }
    struct json_node *n = new_node(ps, type, ps->p);
    if (n == NULL)
        return NULL;
    n->len = n->size = (uint32_t)wlen;
    n->flags = JSON_COMPACT;
    n->hash = hash;
    ps->p += wlen;
    return n;
}

static struct json_node *parse_value(struct parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail(ps, ps->p, "expected a value");
        return NULL;
    }
    switch (*ps->p) {
    case '{':
        return parse_object(ps);
    case '[':
        return parse_array(ps);
    case '"': {
        const unsigned char *s = ps->p;
        int escaped;
        if (scan_string(ps, &escaped) != 0)
            return NULL;
        struct json_node *n = new_node(ps, JSON_STRING, s);
        if (n == NULL)
            return NULL;
        n->len = n->size = (uint32_t)(ps->p - s);
        n->flags = JSON_COMPACT | (escaped ? JSON_ESCAPED : 0);
        /* The hash is of the decoded bytes, so that "\u00e9" and "é" (equal values, see
         * json_equal) hash alike; the text stays as written. */
        if (!escaped) {
            n->hash = json_hash_bytes(s + 1, n->len - 2, SEED_STRING);
        } else {
            ps->scratch.len = 0;
            if (json_unescape((const char *)s + 1, n->len - 2, &ps->scratch) != 0) {
                fail(ps, s, "out of memory");
                return NULL;
            }
            n->hash = json_hash_bytes(ps->scratch.data, ps->scratch.len, SEED_STRING);
        }
        return n;
    }
    case 't':
        return parse_literal(ps, "true", 4, JSON_TRUE, HASH_TRUE);
    case 'f':
        return parse_literal(ps, "false", 5, JSON_FALSE, HASH_FALSE);
    case 'n':
        return parse_literal(ps, "null", 4, JSON_NULL, HASH_NULL);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
        fail(ps, ps->p, "unexpected character");
        return NULL;
    }
}

struct json_doc *json_parse_owned(char *text, size_t len, const struct json_parse_opts *opts,
                                  struct json_error *err)
{
    if (len > JSON_MAX_INPUT) {
        if (err) {
            err->offset = 0;
            strcpy(err->msg, "document too large");
        }
        return NULL;
    }
    struct parser ps;
    memset(&ps, 0, sizeof(ps));
    ps.start = (const unsigned char *)text;
    ps.p = ps.start;
    ps.end = ps.start + len;
    ps.max_depth = opts && opts->max_depth ? opts->max_depth : JSON_DEFAULT_MAX_DEPTH;
    ps.max_values = opts ? opts->max_values : 0;
    ps.err = err;
    buf_init(&ps.scratch, 0);
    /* About one node per 8 bytes of typical JSON; the arena grows past this when needed. */
    ps.arena = arena_new(len * 6 + 4096);
    struct json_doc *doc = calloc(1, sizeof(*doc));
    if (ps.arena == NULL || doc == NULL) {
        fail(&ps, ps.p, "out of memory");
        goto out;
    }
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        ps.p += 3;
    doc->root = parse_value(&ps);
    if (doc->root != NULL) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            fail(&ps, ps.p, "unexpected data after the JSON value");
    }
out:
    free(ps.items);
    free(ps.members);
    buf_dispose(&ps.scratch);
    if (ps.failed || doc == NULL) {
        arena_free(ps.arena);
        free(doc);
        return NULL;
    }
    text[len] = '\0';
    doc->text = text;
    doc->len = len;
    doc->arena = ps.arena;
    return doc;
}

struct json_doc *json_parse(const char *text, size_t len, const struct json_parse_opts *opts,
                            struct json_error *err)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        if (err) {
            err->offset = 0;
            strcpy(err->msg, "out of memory");
        }
        return NULL;
    }
    memcpy(copy, text, len);
    struct json_doc *doc = json_parse_owned(copy, len, opts, err);
    if (doc == NULL)
        free(copy);
    return doc;
}

void json_doc_free(struct json_doc *doc)
{
    if (doc == NULL)
        return;
    arena_free(doc->arena);
    free(doc->text);
    free(doc);
}

/* ---- lookup and equality ----------------------------------------------------------------- */

long json_object_find(const struct json_node *obj, const char *key, size_t klen)
{
    if (obj == NULL || obj->type != JSON_OBJECT)
        return -1;
    uint32_t kh = json_hash_key(key, klen);
    const struct json_member *m = obj->u.members;
    if (obj->index) {
        uint32_t mask = (1u << obj->index_bits) - 1, s = kh & mask;
        for (;;) {
            uint32_t at = obj->index[s];
            if (at == 0)
                return -1;
            const struct json_member *o = &m[at - 1];
            if (o->khash == kh && o->klen == klen && memcmp(o->key, key, klen) == 0)
                return (long)(at - 1);
            s = (s + 1) & mask;
        }
    }
    for (uint32_t i = 0; i < obj->count; i++)
        if (m[i].khash == kh && m[i].klen == klen && memcmp(m[i].key, key, klen) == 0)
            return (long)i;
    return -1;
}

const struct json_node *json_object_get(const struct json_node *obj, const char *key, size_t klen)
{
    long i = json_object_find(obj, key, klen);
    return i < 0 ? NULL : obj->u.members[i].value;
}

int json_equal(const struct json_node *a, const struct json_node *b)
{
    if (a == b)
        return 1;
    if (a->hash != b->hash || a->type != b->type || a->count != b->count)
        return 0;
    if (a->len == b->len && memcmp(a->text, b->text, a->len) == 0)
        return 1;
    switch (a->type) {
    case JSON_ARRAY:
        for (uint32_t i = 0; i < a->count; i++)
            if (!json_equal(a->u.items[i], b->u.items[i]))
                return 0;
        return 1;
    case JSON_OBJECT:
        for (uint32_t i = 0; i < a->count; i++) {
            const struct json_member *m = &a->u.members[i];
            const struct json_node *o;
            /* Same position first: objects usually keep their key order. */
            const struct json_member *bm = &b->u.members[i];
            if (bm->khash == m->khash && bm->klen == m->klen &&
                memcmp(bm->key, m->key, m->klen) == 0)
                o = bm->value;
            else
                o = json_object_get(b, m->key, m->klen);
            if (o == NULL || !json_equal(m->value, o))
                return 0;
        }
        return 1;
    case JSON_NULL:
    case JSON_TRUE:
    case JSON_FALSE:
        return 1;
    case JSON_STRING:
        /* Strings are equal when their decoded bytes are: escapes may differ. */
        return strings_equal(a, b);
    default:
        /* Numbers are equal only when their text is, compared above. */
        return 0;
    }
}

/* ---- serialization ----------------------------------------------------------------------- */

/* Writes n into dst, which has room for n->size bytes; returns the end. */
static char *write_compact(char *dst, const struct json_node *n)
{
    if (n->flags & JSON_COMPACT) {
        memcpy(dst, n->text, n->len);
        return dst + n->len;
    }
    if (n->type == JSON_ARRAY) {
        *dst++ = '[';
        for (uint32_t i = 0; i < n->count; i++) {
            if (i)
                *dst++ = ',';
            dst = write_compact(dst, n->u.items[i]);
        }
        *dst++ = ']';
        return dst;
    }
    /* Only containers can lack JSON_COMPACT. */
    *dst++ = '{';
    for (uint32_t i = 0; i < n->count; i++) {
        const struct json_member *m = &n->u.members[i];
        if (i)
            *dst++ = ',';
        memcpy(dst, m->kraw, m->kraw_len);
        dst += m->kraw_len;
        *dst++ = ':';
        dst = write_compact(dst, m->value);
    }
    *dst++ = '}';
    return dst;
}

char *json_write_raw(char *dst, const struct json_node *n)
{
    return write_compact(dst, n);
}

int json_write(struct buf *out, const struct json_node *n)
{
    if (buf_reserve(out, n->size) != 0)
        return -1;
    char *end = write_compact(out->data + out->len, n);
    out->len = (size_t)(end - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int write_indent(struct buf *out, int indent, int level)
{
    if (buf_putc(out, '\n') != 0)
        return -1;
    for (int i = 0; i < indent * level; i++)
        if (buf_putc(out, ' ') != 0)
            return -1;
    return 0;
}

static int write_pretty(struct buf *out, const struct json_node *n, int indent, int level)
{
    if ((n->type != JSON_ARRAY && n->type != JSON_OBJECT) || n->count == 0)
        return json_write(out, n);
    int rc = buf_putc(out, n->type == JSON_ARRAY ? '[' : '{');
    for (uint32_t i = 0; i < n->count && rc == 0; i++) {
        if (i)
            rc |= buf_putc(out, ',');
        rc |= write_indent(out, indent, level + 1);
        if (n->type == JSON_ARRAY) {
            rc |= write_pretty(out, n->u.items[i], indent, level + 1);
        } else {
            const struct json_member *m = &n->u.members[i];
            rc |= buf_append(out, m->kraw, m->kraw_len);
            rc |= buf_append(out, ": ", 2);
            rc |= write_pretty(out, m->value, indent, level + 1);
        }
    }
    rc |= write_indent(out, indent, level);
    rc |= buf_putc(out, n->type == JSON_ARRAY ? ']' : '}');
    return rc ? -1 : 0;
}

int json_write_pretty(struct buf *out, const struct json_node *n, int indent)
{
    if (indent <= 0)
        return json_write(out, n);
    return write_pretty(out, n, indent, 0);
}

int json_write_string(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case: every byte becomes \u00XX. */
    if (n > (SIZE_MAX - 2) / 6 || buf_reserve(out, n * 6 + 2) != 0)
        return -1;
    char *d = out->data + out->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    *d++ = '"';
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = (char)c;
            p++;
        } else if (c < 0x20) {
            *d++ = '\\';
            switch (c) {
            case '\n':
                *d++ = 'n';
                break;
            case '\r':
                *d++ = 'r';
                break;
            case '\t':
                *d++ = 't';
                break;
            case '\b':
                *d++ = 'b';
                break;
            case '\f':
                *d++ = 'f';
                break;
            default:
                *d++ = 'u';
                *d++ = '0';
                *d++ = '0';
                *d++ = hex[c >> 4];
                *d++ = hex[c & 15];
            }
            p++;
        } else if (c == 0xED && end - p >= 3 && p[1] >= 0xA0 && p[1] <= 0xBF) {
            /* A lone surrogate in WTF-8: write it as the escape it came from. */
            unsigned cp = 0xD000u | ((unsigned)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
            *d++ = '\\';
            *d++ = 'u';
            *d++ = hex[(cp >> 12) & 15];
            *d++ = hex[(cp >> 8) & 15];
            *d++ = hex[(cp >> 4) & 15];
            *d++ = hex[cp & 15];
            p += 3;
        } else {
            *d++ = (char)c;
            p++;
        }
    }
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* RFC 6902 JSON Patch application on cJSON trees holding exact value text (cJSON_Raw), with an
 * undo log that makes a patch atomic, and the equality and serialization that go with it. */
#include "json/apply.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/pointer.h"

/* ---- conversion from the fidelity tree ---- */

/* A Raw item holding a copy of text[0..len). Returns NULL when out of memory. */
static cJSON *raw_item(const char *text, size_t len)
{
    cJSON *it = cJSON_CreateNull();
    char *s = cJSON_malloc(len + 1);
    if (it == NULL || s == NULL) {
        cJSON_Delete(it);
        cJSON_free(s);
        return NULL;
    }
    memcpy(s, text, len);
    s[len] = '\0';
    it->type = cJSON_Raw;
    it->valuestring = s;
    return it;
}

/* A NUL-terminated copy of s[0..n) from cJSON's allocator, or NULL when out of memory. */
static char *key_dup(const char *s, size_t n)
{
    char *k = cJSON_malloc(n + 1);
    if (k != NULL) {
        memcpy(k, s, n);
        k[n] = '\0';
    }
    return k;
}

/* Converts n allowing depth_left more levels of nesting. Returns NULL with err set. */
static cJSON *convert(const struct json_node *n, unsigned depth_left, char *err, size_t errlen)
{
    cJSON *it = NULL;
    switch (n->type) {
    case JSON_NULL:
        it = cJSON_CreateNull();
        break;
    case JSON_FALSE:
        it = cJSON_CreateFalse();
        break;
    case JSON_TRUE:
        it = cJSON_CreateTrue();
        break;
    case JSON_NUMBER:
    case JSON_STRING:
        it = raw_item(n->text, n->len);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        if (depth_left == 0) {
            snprintf(err, errlen, "nesting deeper than %d levels", JSON_CJSON_MAX_DEPTH);
            return NULL;
        }
        it = n->type == JSON_ARRAY ? cJSON_CreateArray() : cJSON_CreateObject();
        if (it == NULL)
            break;
        for (uint32_t i = 0; i < n->count; i++) {
            const struct json_node *v;
            char *key = NULL;
            if (n->type == JSON_ARRAY) {
                v = n->u.items[i];
            } else {
                const struct json_member *m = &n->u.members[i];
                if (memchr(m->key, '\0', m->klen) != NULL) {
                    snprintf(err, errlen, "member name holds a NUL character (\\u0000)");
                    cJSON_Delete(it);
                    return NULL;
                }
                v = m->value;
                key = key_dup(m->key, m->klen);
                if (key == NULL) {
                    snprintf(err, errlen, "out of memory");
                    cJSON_Delete(it);
                    return NULL;
                }
            }
            cJSON *c = convert(v, depth_left - 1, err, errlen);
            if (c == NULL) {
                cJSON_free(key);
                cJSON_Delete(it);
                return NULL;
            }
            c->string = key;
            /* Appending is constant time: cJSON keeps the last child in child->prev. Objects
             * take the same path because the key is already set. */
            cJSON_AddItemToArray(it, c);
        }
        return it;
    default:
        break;
    }
    if (it == NULL)
        snprintf(err, errlen, "out of memory");
    return it;
}

cJSON *json_to_cjson(const struct json_node *n, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    return convert(n, JSON_CJSON_MAX_DEPTH, err, errlen);
}

/* ---- classification, equality ---- */

enum kind { K_INVALID, K_NULL, K_FALSE, K_TRUE, K_NUMBER, K_STRING, K_ARRAY, K_OBJECT, K_RAW };

/* The JSON type of an item; Raw items are classified by their text. */
static enum kind kind_of(const cJSON *it)
{
    switch (it->type & 0xFF) {
    case cJSON_NULL:
        return K_NULL;
    case cJSON_False:
        return K_FALSE;
    case cJSON_True:
        return K_TRUE;
    case cJSON_Number:
        return K_NUMBER;
    case cJSON_String:
        return it->valuestring ? K_STRING : K_INVALID;
    case cJSON_Array:
        return K_ARRAY;
    case cJSON_Object:
        return K_OBJECT;
    case cJSON_Raw: {
        const char *s = it->valuestring;
        if (s == NULL)
            return K_INVALID;
        if (s[0] == '"')
            return K_STRING;
        if (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
            return K_NUMBER;
        if (strcmp(s, "null") == 0)
            return K_NULL;
        if (strcmp(s, "true") == 0)
            return K_TRUE;
        if (strcmp(s, "false") == 0)
            return K_FALSE;
        return K_RAW;
    }
    default:
        return K_INVALID;
    }
}

/* The decoded bytes of a string item, in scratch when they need unescaping. Returns 0 or -1. */
static int string_bytes(const cJSON *it, struct buf *scratch, const char **s, size_t *n)
{
    const char *v = it->valuestring;
    if ((it->type & 0xFF) != cJSON_Raw) {
        *s = v;
        *n = strlen(v);
        return 0;
    }
    size_t len = strlen(v);
    if (len < 2)
        return -1;
    if (memchr(v + 1, '\\', len - 2) == NULL) {
        *s = v + 1;
        *n = len - 2;
        return 0;
    }
    scratch->len = 0;
    if (json_unescape(v + 1, len - 2, scratch) != 0)
        return -1;
    *s = scratch->data;
    *n = scratch->len;
    return 0;
}

/* A JSON number in normal form: value = sign * 0.d1d2...dn * 10^exp, with digits running from
 * the first to the last significant digit of the text (they may straddle the '.'). */
struct decimal {
    int neg;
    int zero;
    int huge; /* the exponent does not fit: only the same text compares equal */
    const char *first, *last;
    long long exp;
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads the number text s. Returns 0, or -1 when s is not a JSON number. */
static int decimal_read(const char *s, struct decimal *d)
{
    memset(d, 0, sizeof(*d));
    const char *p = s;
    if (*p == '-') {
        d->neg = 1;
        p++;
    }
    const char *int_start = p;
    while (is_digit(*p))
        p++;
    const char *int_end = p;
    if (int_end == int_start)
        return -1;
    const char *frac_start = int_end, *frac_end = int_end;
    if (*p == '.') {
        frac_start = ++p;
        while (is_digit(*p))
            p++;
        frac_end = p;
        if (frac_end == frac_start)
            return -1;
    }
    long long e = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        if (!is_digit(*p))
            return -1;
        while (*p == '0')
            p++;
        int ndig = 0;
        for (; is_digit(*p); p++, ndig++)
            if (ndig < 18)
                e = e * 10 + (*p - '0');
        if (ndig > 17)
            d->huge = 1;
        if (eneg)
            e = -e;
    }
    if (*p != '\0')
        return -1;
    /* The first significant digit and the exponent of the normal form. */
    const char *f = NULL;
    long long adjust = 0;
    for (const char *q = int_start; q < int_end; q++)
        if (*q != '0') {
            f = q;
            adjust = int_end - q;
            break;
        }
    if (f == NULL)
        for (const char *q = frac_start; q < frac_end; q++)
            if (*q != '0') {
                f = q;
                adjust = -(q - frac_start);
                break;
            }
    if (f == NULL) {
        d->zero = 1;
        d->huge = 0;
        return 0;
    }
    const char *l = frac_end > frac_start ? frac_end - 1 : int_end - 1;
    while (*l == '0' || *l == '.')
        l--;
    d->first = f;
    d->last = l;
    d->exp = e + adjust;
    return 0;
}

/* Exact equality of two JSON number texts. */
static int decimal_equal(const char *a, const char *b)
{
    struct decimal x, y;
    if (decimal_read(a, &x) != 0 || decimal_read(b, &y) != 0 || x.huge || y.huge)
        return strcmp(a, b) == 0;
    if (x.zero || y.zero)
        return x.zero && y.zero;
    if (x.neg != y.neg || x.exp != y.exp)
        return 0;
    const char *p = x.first, *q = y.first;
    for (;;) {
        if (*p == '.')
            p++;
        if (*q == '.')
            q++;
        if (*p != *q)
            return 0;
        if (p == x.last || q == y.last)
            return p == x.last && q == y.last;
        p++;
        q++;
    }
}

static int number_equal(const cJSON *a, const cJSON *b)
{
    int ra = (a->type & 0xFF) == cJSON_Raw, rb = (b->type & 0xFF) == cJSON_Raw;
    if (ra && rb)
        return decimal_equal(a->valuestring, b->valuestring);
    /* A plain cJSON number holds a double already: compare as doubles. */
    double x = ra ? strtod(a->valuestring, NULL) : a->valuedouble;
    double y = rb ? strtod(b->valuestring, NULL) : b->valuedouble;
    return x == y;
}

static size_t child_count(const cJSON *c)
{
    size_t n = 0;
    for (const cJSON *it = c->child; it != NULL; it = it->next)
        n++;
    return n;
}

static int key_cmp(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

struct eq_ctx {
    struct buf sa, sb;
};

static int equal_at(struct eq_ctx *ctx, const cJSON *a, const cJSON *b, unsigned depth_left);

/* Objects with many members are compared after sorting both member lists by name, so that a
 * test on a wide object is O(n log n) rather than quadratic. */
static int objects_equal(struct eq_ctx *ctx, const cJSON *a, const cJSON *b, unsigned depth_left)
{
    size_t n = child_count(a);
    if (n != child_count(b))
        return 0;
    if (n <= 16) {
        for (const cJSON *x = a->child; x != NULL; x = x->next) {
            if (x->string == NULL)
                return 0;
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (y == NULL)
                return 0;
            int rc = equal_at(ctx, x, y, depth_left);
            if (rc != 1)
                return rc;
        }
        return 1;
    }
    int rc = -1;
    const cJSON **va = malloc(n * sizeof(*va)), **vb = malloc(n * sizeof(*vb));
    if (va == NULL || vb == NULL)
        goto out;
    size_t i = 0;
    for (const cJSON *x = a->child; x != NULL; x = x->next)
        va[i++] = x;
    i = 0;
    for (const cJSON *y = b->child; y != NULL; y = y->next)
        vb[i++] = y;
    qsort(va, n, sizeof(*va), key_cmp);
    qsort(vb, n, sizeof(*vb), key_cmp);
    rc = 1;
    for (i = 0; i < n && rc == 1; i++) {
        if (va[i]->string == NULL || vb[i]->string == NULL ||
            strcmp(va[i]->string, vb[i]->string) != 0)
            rc = 0;
        else
            rc = equal_at(ctx, va[i], vb[i], depth_left);
    }
out:
    free(va);
    free(vb);
    return rc;
}

static int equal_at(struct eq_ctx *ctx, const cJSON *a, const cJSON *b, unsigned depth_left)
{
    enum kind ka = kind_of(a), kb = kind_of(b);
    if (ka == K_INVALID || kb == K_INVALID)
        return 0;
    if (ka != kb)
        return 0;
    switch (ka) {
    case K_NULL:
    case K_FALSE:
    case K_TRUE:
        return 1;
    case K_NUMBER:
        return number_equal(a, b);
    case K_RAW:
        return strcmp(a->valuestring, b->valuestring) == 0;
    case K_STRING: {
        const char *s, *t;
        size_t n, m;
        if (string_bytes(a, &ctx->sa, &s, &n) != 0 || string_bytes(b, &ctx->sb, &t, &m) != 0)
            return -1;
        return n == m && memcmp(s, t, n) == 0;
    }
    case K_ARRAY: {
        if (depth_left == 0)
            return -1;
        const cJSON *x = a->child, *y = b->child;
        for (; x != NULL && y != NULL; x = x->next, y = y->next) {
            int rc = equal_at(ctx, x, y, depth_left - 1);
            if (rc != 1)
                return rc;
        }
        return x == NULL && y == NULL;
    }
    case K_OBJECT:
        if (depth_left == 0)
            return -1;
        return objects_equal(ctx, a, b, depth_left - 1);
    default:
        return 0;
    }
}

int json_cjson_equal(const cJSON *a, const cJSON *b)
{
    struct eq_ctx ctx;
    buf_init(&ctx.sa, 0);
    buf_init(&ctx.sb, 0);
    int rc = equal_at(&ctx, a, b, JSON_CJSON_MAX_DEPTH);
    buf_dispose(&ctx.sa);
    buf_dispose(&ctx.sb);
    return rc;
}

/* ---- serialization ---- */

static int write_number(struct buf *out, double v)
{
    if (!isfinite(v))
        return buf_puts(out, "null");
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return buf_printf(out, "%lld", (long long)v);
    return buf_printf(out, "%.17g", v);
}

static int write_at(struct buf *out, const cJSON *it, unsigned depth_left)
{
    switch (it->type & 0xFF) {
    case cJSON_NULL:
        return buf_puts(out, "null");
    case cJSON_False:
        return buf_puts(out, "false");
    case cJSON_True:
        return buf_puts(out, "true");
    case cJSON_Number:
        return write_number(out, it->valuedouble);
    case cJSON_String:
        if (it->valuestring == NULL)
            return -1;
        return json_write_string(out, it->valuestring, strlen(it->valuestring));
    case cJSON_Raw:
        if (it->valuestring == NULL)
            return -1;
        return buf_puts(out, it->valuestring);
    case cJSON_Array:
    case cJSON_Object: {
        int obj = (it->type & 0xFF) == cJSON_Object;
        if (depth_left == 0 || buf_putc(out, obj ? '{' : '[') != 0)
            return -1;
        for (const cJSON *c = it->child; c != NULL; c = c->next) {
            if (c != it->child && buf_putc(out, ',') != 0)
                return -1;
            if (obj) {
                if (c->string == NULL)
                    return -1;
                if (json_write_string(out, c->string, strlen(c->string)) != 0 ||
                    buf_putc(out, ':') != 0)
                    return -1;
            }
            if (write_at(out, c, depth_left - 1) != 0)
                return -1;
        }
        return buf_putc(out, obj ? '}' : ']');
    }
    default:
        return -1;
    }
}

int json_cjson_write(struct buf *out, const cJSON *item)
{
    size_t start = out->len;
    if (write_at(out, item, JSON_CJSON_MAX_DEPTH) != 0) {
        buf_truncate(out, start);
        return -1;
    }
    return 0;
}

/* ---- the applier ---- */

/* One step of the undo log. Rolling the log back in reverse order puts the very same items back
 * where they were (so pointers into the document stay valid); committing it frees what the
 * patch took out of the document. */
enum undo_kind {
    U_INSERTED, /* item was inserted into parent; undo: detach it (and free it when owned) */
    U_DETACHED, /* item was detached from parent at pos, its key saved in key; undo: reinsert */
    U_ROOT,     /* the root was old and became item; undo: put old back */
};

struct undo {
    enum undo_kind kind;
    int owns;      /* the log frees item (INSERTED: on rollback; DETACHED: on commit) */
    cJSON *parent; /* U_ROOT: the old root */
    cJSON *item;
    char *key; /* U_DETACHED: the item's key while it is out of the tree */
    size_t pos;
};

struct applier {
    cJSON **doc;
    struct undo *log;
    size_t nlog, caplog;
    unsigned max_depth;
    size_t copy_budget; /* values copies may still create */
    size_t copy_limit;  /* the budget at the start */
    size_t op;
    struct json_patch_error *err;
    struct buf path, from, seg, scratch;
};

/* Records the failure of the current op: "op N: " and the formatted reason. Returns -1. */
static int fail(struct applier *ap, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct applier *ap, const char *fmt, ...)
{
    struct json_patch_error *e = ap->err;
    int n = snprintf(e->msg, sizeof(e->msg), "op %zu: ", ap->op);
    if (n < 0 || (size_t)n >= sizeof(e->msg))
        n = 0;
    va_list va;
    va_start(va, fmt);
    vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, va);
    va_end(va);
    e->op = (long)ap->op;
    return -1;
}

/* A printable, bounded rendering of a pointer for messages: control bytes become '?'. */
static const char *shown(const char *p, size_t n, char *tmp, size_t cap)
{
    size_t max = cap - 4, i;
    for (i = 0; i < n && i < max; i++)
        tmp[i] = ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) ? '?' : p[i];
    if (i < n) {
        memcpy(tmp + i, "...", 3);
        i += 3;
    }
    tmp[i] = '\0';
    return tmp;
}

/* Makes room for n more log entries so that recording after a mutation cannot fail. */
static int log_reserve(struct applier *ap, size_t n)
{
    if (ap->caplog - ap->nlog >= n)
        return 0;
    size_t cap = ap->caplog ? ap->caplog * 2 : 16;
    while (cap - ap->nlog < n)
        cap *= 2;
    struct undo *p = realloc(ap->log, cap * sizeof(*p));
    if (p == NULL)
        return -1;
    ap->log = p;
    ap->caplog = cap;
    return 0;
}

static void log_push(struct applier *ap, enum undo_kind kind, int owns, cJSON *parent, cJSON *item,
                     char *key, size_t pos)
{
    struct undo *u = &ap->log[ap->nlog++];
    u->kind = kind;
    u->owns = owns;
    u->parent = parent;
    u->item = item;
    u->key = key;
    u->pos = pos;
}

/* Inserts item into the child list of parent before the child at pos (appends when pos is the
 * size). Debian bookworm's libcjson 1.7.15-1+deb12u4 refuses cJSON_InsertItemInArray at any
 * position but the first and the end (a faulty security backport), so the list is spliced here,
 * keeping cJSON's invariant that the first child's prev is the last child. Cannot fail. */
static void list_insert(cJSON *parent, size_t pos, cJSON *item)
{
    cJSON *at = parent->child;
    for (size_t i = 0; at != NULL && i < pos; i++)
        at = at->next;
    if (at == NULL) {
        cJSON_AddItemToArray(parent, item);
        return;
    }
    item->next = at;
    item->prev = at->prev;
    if (at == parent->child)
        parent->child = item;
    else
        item->prev->next = item;
    at->prev = item;
}

static void rollback(struct applier *ap)
{
    while (ap->nlog > 0) {
        struct undo *u = &ap->log[--ap->nlog];
        switch (u->kind) {
        case U_INSERTED:
            cJSON_DetachItemViaPointer(u->parent, u->item);
            cJSON_free(u->item->string);
            u->item->string = NULL;
            if (u->owns)
                cJSON_Delete(u->item);
            break;
        case U_DETACHED:
            u->item->string = u->key;
            list_insert(u->parent, u->pos, u->item);
            break;
        case U_ROOT:
            if (u->owns)
                cJSON_Delete(u->item);
            *ap->doc = u->parent;
            break;
        }
    }
}

static void commit(struct applier *ap)
{
    for (size_t i = 0; i < ap->nlog; i++) {
        struct undo *u = &ap->log[i];
        if (u->kind == U_DETACHED) {
            cJSON_free(u->key);
            if (u->owns)
                cJSON_Delete(u->item);
        } else if (u->kind == U_ROOT) {
            cJSON_Delete(u->parent);
        }
    }
    ap->nlog = 0;
}

/* Detaches item (at pos in parent) and logs it. The log must have room. */
static void detach(struct applier *ap, cJSON *parent, cJSON *item, size_t pos, int owns)
{
    cJSON_DetachItemViaPointer(parent, item);
    log_push(ap, U_DETACHED, owns, parent, item, item->string, pos);
    item->string = NULL;
}

/* Where a pointer leads: the container holding the last segment (NULL for ""), the item the
 * last segment names (NULL when absent), its position, and whether the segment was "-". */
struct target {
    cJSON *parent;
    cJSON *item;
    size_t pos;
    int end; /* array parent and "-" or an index equal to the size */
    int bad_index;
};

/* Finds the child of c named by seg. Sets t->item (NULL when absent), t->pos, t->end,
 * t->bad_index. Returns 0, or -1 when c is not a container. */
static int find_child(const struct buf *seg, cJSON *c, struct target *t)
{
    t->parent = c;
    t->item = NULL;
    t->pos = 0;
    t->end = 0;
    t->bad_index = 0;
    const char *s = seg->data ? seg->data : "";
    if (cJSON_IsObject(c)) {
        /* A key with a NUL byte cannot be in the tree (conversion refuses them). */
        if (memchr(s, '\0', seg->len) != NULL)
            return 0;
        size_t i = 0;
        for (cJSON *it = c->child; it != NULL; it = it->next, i++)
            if (it->string != NULL && strcmp(it->string, s) == 0) {
                t->item = it;
                break;
            }
        t->pos = i;
        return 0;
    }
    if (cJSON_IsArray(c)) {
        size_t idx = 0;
        int rc = json_pointer_index(s, seg->len, &idx);
        if (rc < 0) {
            t->bad_index = 1;
            return 0;
        }
        size_t i = 0;
        cJSON *it = c->child;
        for (; it != NULL && (rc == 1 || i < idx); it = it->next)
            i++;
        t->pos = i;
        if (rc == 1 || it == NULL) {
            t->end = rc == 1 || i == idx;
            return 0;
        }
        t->item = it;
        return 0;
    }
    return -1;
}

/* Checks that p[0..n) is a well-formed pointer: "" or '/'-separated segments where '~' is
 * followed by '0' or '1'. */
static int pointer_valid(const char *p, size_t n)
{
    if (n == 0)
        return 1;
    if (p[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '~' && (i + 1 >= n || (p[i + 1] != '0' && p[i + 1] != '1')))
            return 0;
    return 1;
}

static size_t pointer_depth(const char *p, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += p[i] == '/';
    return d;
}

/* Resolves the pointer p[0..n) (named what in messages) down to its last segment.
 * Returns 0 with t set (t->parent NULL for the whole document), or -1 after fail(). */
static int resolve(struct applier *ap, const char *what, const char *p, size_t n, struct target *t)
{
    char tmp[120];
    memset(t, 0, sizeof(*t));
    if (!pointer_valid(p, n))
        return fail(ap, "%s %s: invalid JSON pointer", what, shown(p, n, tmp, sizeof(tmp)));
    if (n == 0) {
        t->item = *ap->doc;
        return 0;
    }
    const char *last = memrchr(p, '/', n);
    const char *s = p, *end = p + n;
    cJSON *cur = *ap->doc;
    int rc;
    for (;;) {
        const char *at = s;
        rc = json_pointer_next(&s, last, &ap->seg);
        if (rc != 1)
            break;
        struct target step;
        if (find_child(&ap->seg, cur, &step) != 0)
            return fail(ap, "%s %s: %s%.*s is not an object or array", what,
                        shown(p, n, tmp, sizeof(tmp)), at == p ? "the document" : "", (int)(at - p),
                        p);
        if (step.item == NULL) {
            const char *why = step.bad_index       ? "invalid array index"
                              : cJSON_IsArray(cur) ? "array index out of range"
                                                   : "no such member";
            return fail(ap, "%s %s: %s at %.*s", what, shown(p, n, tmp, sizeof(tmp)), why,
                        (int)(s - p), p);
        }
        cur = step.item;
    }
    if (rc < 0 || json_pointer_next(&s, end, &ap->seg) != 1)
        return fail(ap, "%s %s: invalid JSON pointer", what, shown(p, n, tmp, sizeof(tmp)));
    if (find_child(&ap->seg, cur, t) != 0)
        return fail(ap, "%s %s: parent is not an object or array", what,
                    shown(p, n, tmp, sizeof(tmp)));
    if (t->bad_index)
        return fail(ap, "%s %s: invalid array index", what, shown(p, n, tmp, sizeof(tmp)));
    return 0;
}

/* Fails the op unless t names an existing item. */
static int need_item(struct applier *ap, const char *what, const char *p, size_t n,
                     const struct target *t)
{
    char tmp[120];
    if (t->item != NULL)
        return 0;
    if (cJSON_IsArray(t->parent))
        return fail(ap, "%s %s: array index out of range", what, shown(p, n, tmp, sizeof(tmp)));
    return fail(ap, "%s %s: no such member", what, shown(p, n, tmp, sizeof(tmp)));
}

/* Puts value at the pointer ap->path: adds (or, with replace_only, replaces) it. On success the
 * value is in the tree and logged (freed on rollback when owns); on failure it is untouched and
 * still the caller's. */
static int place(struct applier *ap, cJSON *value, int owns, int replace_only)
{
    const char *p = ap->path.data ? ap->path.data : "";
    size_t n = ap->path.len;
    char tmp[120];
    struct target t;
    if (resolve(ap, "path", p, n, &t) != 0)
        return -1;
    if (log_reserve(ap, 2) != 0)
        return fail(ap, "out of memory");
    if (t.parent == NULL) {
        log_push(ap, U_ROOT, owns, *ap->doc, value, NULL, 0);
        *ap->doc = value;
        return 0;
    }
    if (replace_only && need_item(ap, "path", p, n, &t) != 0)
        return -1;
    if (cJSON_IsObject(t.parent)) {
        if (memchr(ap->seg.data, '\0', ap->seg.len) != NULL)
            return fail(ap, "path %s: a member name cannot hold a NUL character",
                        shown(p, n, tmp, sizeof(tmp)));
        char *key = key_dup(ap->seg.data, ap->seg.len);
        if (key == NULL)
            return fail(ap, "out of memory");
        if (t.item != NULL) {
            /* An existing member is replaced where it stands, keeping the key order. */
            detach(ap, t.parent, t.item, t.pos, 1);
            value->string = key;
            list_insert(t.parent, t.pos, value);
        } else {
            value->string = key;
            cJSON_AddItemToArray(t.parent, value);
        }
        log_push(ap, U_INSERTED, owns, t.parent, value, NULL, 0);
        return 0;
    }
    if (t.item == NULL && !t.end)
        return fail(ap, "path %s: array index out of range", shown(p, n, tmp, sizeof(tmp)));
    if (replace_only)
        detach(ap, t.parent, t.item, t.pos, 1);
    list_insert(t.parent, t.pos, value);
    log_push(ap, U_INSERTED, owns, t.parent, value, NULL, 0);
    return 0;
}

/* A copy of it allowing depth_left levels of nesting and at most *budget items (decremented).
 * The copy has no key. Returns NULL when out of memory (*why 0), too deep (1) or over the
 * budget (2). */
static cJSON *copy_at(const cJSON *it, unsigned depth_left, size_t *budget, int *why)
{
    if (*budget == 0) {
        *why = 2;
        return NULL;
    }
    (*budget)--;
    cJSON *c = cJSON_CreateNull();
    if (c == NULL) {
        *why = 0;
        return NULL;
    }
    c->type = it->type & 0xFF;
    c->valueint = it->valueint;
    c->valuedouble = it->valuedouble;
    if (it->valuestring != NULL) {
        c->valuestring = key_dup(it->valuestring, strlen(it->valuestring));
        if (c->valuestring == NULL) {
            cJSON_Delete(c);
            *why = 0;
            return NULL;
        }
    }
    if ((cJSON_IsArray(it) || cJSON_IsObject(it)) && depth_left == 0) {
        cJSON_Delete(c);
        *why = 1;
        return NULL;
    }
    for (const cJSON *k = it->child; k != NULL; k = k->next) {
        cJSON *d = copy_at(k, depth_left - 1, budget, why);
        if (d != NULL && k->string != NULL) {
            d->string = key_dup(k->string, strlen(k->string));
            if (d->string == NULL) {
                cJSON_Delete(d);
                d = NULL;
                *why = 0;
            }
        }
        if (d == NULL) {
            cJSON_Delete(c);
            return NULL;
        }
        cJSON_AddItemToArray(c, d);
    }
    return c;
}

/* 1 when it nests at most depth_left levels of arrays and objects. */
static int fits_depth(const cJSON *it, unsigned depth_left)
{
    if (!cJSON_IsArray(it) && !cJSON_IsObject(it))
        return 1;
    if (depth_left == 0)
        return 0;
    for (const cJSON *c = it->child; c != NULL; c = c->next)
        if (!fits_depth(c, depth_left - 1))
            return 0;
    return 1;
}

/* Reads the string member name of op into out (decoded). Returns 0, or -1 after fail(). */
static int get_string(struct applier *ap, const struct json_node *op, const char *name,
                      struct buf *out)
{
    const struct json_node *v = json_object_get(op, name, strlen(name));
    if (v == NULL)
        return fail(ap, "missing \"%s\"", name);
    if (v->type != JSON_STRING)
        return fail(ap, "\"%s\" must be a string, not %s", name, json_type_name(v->type));
    out->len = 0;
    if (json_string_decode(v, out) != 0 || buf_putc(out, '\0') != 0)
        return fail(ap, "out of memory");
    out->len--; /* keep the terminator out of the length */
    return 0;
}

/* Converts the "value" member of op, allowing allowance levels of nesting. Returns the new
 * item (the caller's), or NULL after fail(). */
static cJSON *get_value(struct applier *ap, const struct json_node *op, unsigned allowance)
{
    const struct json_node *v = json_object_get(op, "value", 5);
    if (v == NULL) {
        fail(ap, "missing \"value\"");
        return NULL;
    }
    char msg[128];
    cJSON *c = convert(v, allowance, msg, sizeof(msg));
    if (c == NULL)
        fail(ap, "value: %s", msg);
    return c;
}

/* Levels of nesting a value placed at pointer p[0..n) may have. */
static unsigned allowance_at(const struct applier *ap, const char *p, size_t n)
{
    size_t d = pointer_depth(p, n);
    return d >= ap->max_depth ? 0 : ap->max_depth - (unsigned)d;
}

static int op_add_replace(struct applier *ap, const struct json_node *op, int replace_only)
{
    if (get_string(ap, op, "path", &ap->path) != 0)
        return -1;
    cJSON *v = get_value(ap, op, allowance_at(ap, ap->path.data, ap->path.len));
    if (v == NULL)
        return -1;
    if (place(ap, v, 1, replace_only) != 0) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

/* Reads the op's "path" into ap->path and resolves it to an item that must exist (remove,
 * test). Returns 0, or -1 with the op failed. */
static int existing_path(struct applier *ap, const struct json_node *op, struct target *t)
{
    if (get_string(ap, op, "path", &ap->path) != 0 ||
        resolve(ap, "path", ap->path.data, ap->path.len, t) != 0)
        return -1;
    return need_item(ap, "path", ap->path.data, ap->path.len, t);
}

static int op_remove(struct applier *ap, const struct json_node *op)
{
    char tmp[120];
    struct target t;
    if (existing_path(ap, op, &t) != 0)
        return -1;
    if (t.parent == NULL)
        return fail(ap, "path %s: the whole document cannot be removed",
                    shown(ap->path.data, ap->path.len, tmp, sizeof(tmp)));
    if (log_reserve(ap, 1) != 0)
        return fail(ap, "out of memory");
    detach(ap, t.parent, t.item, t.pos, 1);
    return 0;
}

static int op_test(struct applier *ap, const struct json_node *op)
{
    char tmp[120];
    struct target t;
    if (existing_path(ap, op, &t) != 0)
        return -1;
    cJSON *v = get_value(ap, op, ap->max_depth);
    if (v == NULL)
        return -1;
    int rc = json_cjson_equal(t.item, v);
    cJSON_Delete(v);
    if (rc < 0)
        return fail(ap, "path %s: cannot compare (out of memory or too deep)",
                    shown(ap->path.data, ap->path.len, tmp, sizeof(tmp)));
    if (rc == 0)
        return fail(ap, "path %s: test failed: the value differs",
                    shown(ap->path.data, ap->path.len, tmp, sizeof(tmp)));
    return 0;
}

static int op_move_copy(struct applier *ap, const struct json_node *op, int is_move)
{
    char tmp[120];
    struct target t;
    if (get_string(ap, op, "from", &ap->from) != 0 || get_string(ap, op, "path", &ap->path) != 0)
        return -1;
    const char *f = ap->from.data, *p = ap->path.data;
    size_t fn = ap->from.len, pn = ap->path.len;
    if (resolve(ap, "from", f, fn, &t) != 0 || need_item(ap, "from", f, fn, &t) != 0)
        return -1;
    if (!is_move) {
        size_t budget = ap->copy_budget;
        int why = 0;
        cJSON *c = copy_at(t.item, allowance_at(ap, p, pn), &budget, &why);
        if (c == NULL)
            return why == 0   ? fail(ap, "out of memory")
                   : why == 1 ? fail(ap, "path %s: the copy would nest deeper than %u levels",
                                     shown(p, pn, tmp, sizeof(tmp)), ap->max_depth)
                              : fail(ap, "copies exceed %zu values", ap->copy_limit);
        if (place(ap, c, 1, 0) != 0) {
            cJSON_Delete(c);
            return -1;
        }
        ap->copy_budget = budget;
        return 0;
    }
    if (fn == pn && memcmp(f, p, fn) == 0)
        return 0; /* moving a value onto itself changes nothing */
    if (pn > fn && memcmp(f, p, fn) == 0 && p[fn] == '/')
        return fail(ap, "path %s: cannot move a value into itself", shown(p, pn, tmp, sizeof(tmp)));
    /* Moving up or sideways cannot deepen a document that is within bounds. */
    if (pointer_depth(p, pn) > pointer_depth(f, fn) && !fits_depth(t.item, allowance_at(ap, p, pn)))
        return fail(ap, "path %s: the move would nest deeper than %u levels",
                    shown(p, pn, tmp, sizeof(tmp)), ap->max_depth);
    if (log_reserve(ap, 1) != 0)
        return fail(ap, "out of memory");
    cJSON *item = t.item;
    detach(ap, t.parent, item, t.pos, 0);
    /* On failure the item is back in place at rollback: the detach entry restores it. */
    return place(ap, item, 0, 0);
}

static int apply_op(struct applier *ap, const struct json_node *op)
{
    if (op->type != JSON_OBJECT)
        return fail(ap, "an operation must be an object, not %s", json_type_name(op->type));
    if (get_string(ap, op, "op", &ap->scratch) != 0)
        return -1;
    const char *name = ap->scratch.data;
    size_t n = ap->scratch.len;
    if (n == 3 && memcmp(name, "add", 3) == 0)
        return op_add_replace(ap, op, 0);
    if (n == 6 && memcmp(name, "remove", 6) == 0)
        return op_remove(ap, op);
    if (n == 7 && memcmp(name, "replace", 7) == 0)
        return op_add_replace(ap, op, 1);
    if (n == 4 && memcmp(name, "move", 4) == 0)
        return op_move_copy(ap, op, 1);
    if (n == 4 && memcmp(name, "copy", 4) == 0)
        return op_move_copy(ap, op, 0);
    if (n == 4 && memcmp(name, "test", 4) == 0)
        return op_test(ap, op);
    char tmp[40];
    return fail(ap, "unknown op \"%s\"", shown(name, n, tmp, sizeof(tmp)));
}

int json_patch_apply(cJSON **doc, const struct json_node *patch, const struct json_patch_opts *opts,
                     struct json_patch_error *err)
{
    struct json_patch_error dummy;
    struct applier ap;
    memset(&ap, 0, sizeof(ap));
    ap.doc = doc;
    ap.err = err ? err : &dummy;
    ap.err->op = -1;
    ap.err->msg[0] = '\0';
    ap.max_depth = JSON_CJSON_MAX_DEPTH;
    ap.copy_budget = JSON_PATCH_MAX_COPY_NODES;
    if (opts != NULL && opts->max_depth != 0 && opts->max_depth < ap.max_depth)
        ap.max_depth = opts->max_depth;
    if (opts != NULL && opts->max_copy_nodes != 0)
        ap.copy_budget = opts->max_copy_nodes;
    ap.copy_limit = ap.copy_budget;
    buf_init(&ap.path, 0);
    buf_init(&ap.from, 0);
    buf_init(&ap.seg, 0);
    buf_init(&ap.scratch, 0);
    int rc = -1;
    if (doc == NULL || *doc == NULL || patch == NULL) {
        snprintf(ap.err->msg, sizeof(ap.err->msg), "no document or patch");
        goto out;
    }
    if (patch->type != JSON_ARRAY) {
        snprintf(ap.err->msg, sizeof(ap.err->msg), "patch is not a JSON array (found %s)",
                 json_type_name(patch->type));
        goto out;
    }
    for (ap.op = 0; ap.op < patch->count; ap.op++)
        if (apply_op(&ap, patch->u.items[ap.op]) != 0) {
            rollback(&ap);
            goto out;
        }
    commit(&ap);
    rc = 0;
out:
    free(ap.log);
    buf_dispose(&ap.path);
    buf_dispose(&ap.from);
    buf_dispose(&ap.seg);
    buf_dispose(&ap.scratch);
    return rc;
}

int json_patch_apply_node(const struct json_node *doc, const struct json_node *patch,
                          struct buf *out, struct json_patch_error *err)
{
    struct json_patch_error dummy;
    if (err == NULL)
        err = &dummy;
    err->op = -1;
    char msg[128];
    cJSON *c = json_to_cjson(doc, msg, sizeof(msg));
    if (c == NULL) {
        snprintf(err->msg, sizeof(err->msg), "document: %s", msg);
        return -1;
    }
    int rc = json_patch_apply(&c, patch, NULL, err);
    if (rc == 0 && json_cjson_write(out, c) != 0) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        rc = -1;
    }
    cJSON_Delete(c);
    return rc;
}

/* The I/O-free half of `pollcast watch`: the event-stream parser, the live document with its
 * pointer selection and change list, and the indented rendering. cli_watch.c adds libcurl, the
 * terminal and signals. */
#include "watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/apply.h"
#include "json/diff.h"
#include "json/pointer.h"

/* ---- event-stream parser ------------------------------------------------------------------ */

void watch_sse_init(struct watch_sse *p, size_t max_event, watch_sse_fn on_event, void *arg)
{
    memset(p, 0, sizeof(*p));
    /* A line holds a field name before its value: leave room for it beyond the event cap. The
     * data buffer holds a newline after each line, the last of which is dropped at dispatch. */
    buf_init(&p->line, max_event + 64);
    buf_init(&p->data, max_event + 1);
    buf_init(&p->type, max_event);
    buf_init(&p->id, WATCH_SSE_MAX_ID);
    buf_init(&p->last_id, WATCH_SSE_MAX_ID);
    p->retry_ms = -1;
    p->max_event = max_event;
    p->on_event = on_event;
    p->arg = arg;
}

void watch_sse_dispose(struct watch_sse *p)
{
    buf_dispose(&p->line);
    buf_dispose(&p->data);
    buf_dispose(&p->type);
    buf_dispose(&p->id);
    buf_dispose(&p->last_id);
}

void watch_sse_reset(struct watch_sse *p)
{
    buf_truncate(&p->line, 0);
    buf_truncate(&p->data, 0);
    buf_truncate(&p->type, 0);
    /* The ID buffer carries over, as it would between two events of one connection. */
    buf_truncate(&p->id, 0);
    if (p->last_id.len)
        buf_append(&p->id, p->last_id.data, p->last_id.len);
    p->after_cr = 0;
    p->started = 0;
}

void watch_sse_forget_id(struct watch_sse *p)
{
    buf_truncate(&p->id, 0);
    buf_truncate(&p->last_id, 0);
}

/* Replaces the content of b with s[0..n). Returns 0 or -1 (b is then empty). */
static int buf_set(struct buf *b, const char *s, size_t n)
{
    buf_truncate(b, 0);
    if (n == 0)
        return 0;
    return buf_append(b, s, n);
}

static int sse_dispatch(struct watch_sse *p)
{
    /* Ids are bounded by the buffer's limit, which last_id shares: this cannot fail. */
    buf_set(&p->last_id, p->id.data, p->id.len);
    if (p->data.len == 0) {
        buf_truncate(&p->type, 0);
        return 0;
    }
    buf_truncate(&p->data, p->data.len - 1);
    struct watch_sse_event ev = {
        .type = p->type.len ? p->type.data : "message",
        .data = p->data.data,
        .len = p->data.len,
        .id = p->last_id.len ? p->last_id.data : "",
    };
    int rc = p->on_event(p->arg, &ev);
    buf_truncate(&p->data, 0);
    buf_truncate(&p->type, 0);
    return rc;
}

static int field_is(const char *f, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(f, name, n) == 0;
}

static int sse_line(struct watch_sse *p, const char *line, size_t n)
{
    if (!p->started) {
        /* A byte order mark may open the stream, and is not part of the first field. */
        p->started = 1;
        if (n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            n -= 3;
        }
    }
    if (n == 0)
        return sse_dispatch(p);
    if (line[0] == ':')
        return 0;
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = (size_t)(line + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (field_is(line, flen, "data")) {
        if (buf_append(&p->data, v, vlen) != 0 || buf_putc(&p->data, '\n') != 0)
            return WATCH_SSE_TOO_BIG;
    } else if (field_is(line, flen, "event")) {
        if (buf_set(&p->type, v, vlen) != 0)
            return WATCH_SSE_TOO_BIG;
    } else if (field_is(line, flen, "id")) {
        /* An id with a NUL is ignored; one too long to send back is forgotten, so that the
         * next connection starts from a fresh snapshot instead of a wrong place. */
        if (memchr(v, '\0', vlen) == NULL && buf_set(&p->id, v, vlen) != 0)
            buf_truncate(&p->id, 0);
    } else if (field_is(line, flen, "retry")) {
        long ms = 0;
        size_t i;
        for (i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            if (ms < 86400000L)
                ms = ms * 10 + (v[i] - '0');
        if (vlen > 0 && i == vlen)
            p->retry_ms = ms < 86400000L ? ms : 86400000L;
    }
    return 0;
}

int watch_sse_feed(struct watch_sse *p, const char *bytes, size_t n)
{
    const char *s = bytes, *end = bytes + n;
    while (s < end) {
        if (p->after_cr) {
            p->after_cr = 0;
            if (*s == '\n') {
                s++;
                continue;
            }
        }
        const char *e = s;
        while (e < end && *e != '\n' && *e != '\r')
            e++;
        if (e == end) {
            /* An unfinished line: keep it for the next call. */
            if (buf_append(&p->line, s, (size_t)(e - s)) != 0)
                return WATCH_SSE_TOO_BIG;
            break;
        }
        int rc;
        if (p->line.len == 0) {
            /* The whole line is in this chunk: no copy. */
            if ((size_t)(e - s) > p->line.limit)
                return WATCH_SSE_TOO_BIG;
            rc = sse_line(p, s, (size_t)(e - s));
        } else {
            if (buf_append(&p->line, s, (size_t)(e - s)) != 0)
                return WATCH_SSE_TOO_BIG;
            rc = sse_line(p, p->line.data, p->line.len);
            buf_truncate(&p->line, 0);
        }
        p->after_cr = *e == '\r';
        s = e + 1;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- pointers ----------------------------------------------------------------------------- */

/* Returns the item at pointer p[0..n) under root, or NULL when there is none. */
static cJSON *cj_lookup(cJSON *root, const char *p, size_t n)
{
    struct buf seg;
    buf_init(&seg, 0);
    const char *s = p, *end = p + n;
    cJSON *cur = root;
    int r = 0;
    while (cur != NULL && (r = json_pointer_next(&s, end, &seg)) == 1) {
        if (cJSON_IsObject(cur)) {
            cJSON *found = NULL;
            /* cJSON keys end at their first NUL: a segment holding one names nothing. */
            if (memchr(seg.data ? seg.data : "", '\0', seg.len) == NULL)
                for (cJSON *c = cur->child; c != NULL && found == NULL; c = c->next)
                    if (c->string && strlen(c->string) == seg.len &&
                        memcmp(c->string, seg.data ? seg.data : "", seg.len) == 0)
                        found = c;
            cur = found;
        } else if (cJSON_IsArray(cur)) {
            size_t i;
            cur = json_pointer_index(seg.data ? seg.data : "", seg.len, &i) == 0
                      ? cJSON_GetArrayItem(cur, (int)(i > (size_t)0x7fffffff ? 0x7fffffff : i))
                      : NULL;
        } else {
            cur = NULL;
        }
    }
    if (cur != NULL && r < 0)
        cur = NULL;
    buf_dispose(&seg);
    return cur;
}

int watch_pointer_check(const char *p)
{
    struct buf seg;
    buf_init(&seg, 0);
    const char *s = p, *end = p + strlen(p);
    int r;
    while ((r = json_pointer_next(&s, end, &seg)) == 1)
        ;
    buf_dispose(&seg);
    return r == 0 ? 0 : -1;
}

/* P is at or below S. */
static int path_under(const char *p, size_t pn, const char *s, size_t sn)
{
    return pn >= sn && memcmp(p, s, sn) == 0 && (pn == sn || p[sn] == '/');
}

/* P is strictly above S. */
static int path_above(const char *p, size_t pn, const char *s, size_t sn)
{
    return pn < sn && memcmp(p, s, pn) == 0 && s[pn] == '/';
}

static int jq_string(const char **s, struct buf *out)
{
    const char *q = *s + 1;
    while (*q != '\0' && *q != '"') {
        if (*q == '\\' && q[1] != '\0')
            q++;
        q++;
    }
    if (*q != '"')
        return -1;
    size_t n = (size_t)(q + 1 - *s);
    struct json_doc *d = json_parse(*s, n, NULL, NULL);
    int rc = -1;
    if (d != NULL && d->root->type == JSON_STRING) {
        buf_truncate(out, 0);
        rc = json_string_decode(d->root, out);
    }
    json_doc_free(d);
    *s = q + 1;
    return rc;
}

int watch_jq_to_pointer(const char *jq, struct buf *out)
{
    const char *s = jq;
    if (*s != '.')
        return -1;
    struct buf seg;
    buf_init(&seg, 0);
    int rc = 0;
    if (strcmp(s, ".") == 0)
        s++;
    while (rc == 0 && *s != '\0') {
        buf_truncate(&seg, 0);
        if (*s == '.' && s[1] == '[') {
            s++;
            continue;
        }
        if (*s == '.' && s[1] == '"') {
            s++;
            rc = jq_string(&s, &seg);
        } else if (*s == '.') {
            s++;
            const char *b = s;
            while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
                   (s > b && *s >= '0' && *s <= '9'))
                s++;
            if (s == b)
                rc = -1;
            else
                rc = buf_append(&seg, b, (size_t)(s - b));
        } else if (*s == '[' && s[1] == '"') {
            s++;
            rc = jq_string(&s, &seg);
            if (rc == 0 && *s++ != ']')
                rc = -1;
        } else if (*s == '[' && s[1] >= '0' && s[1] <= '9') {
            s++;
            const char *b = s;
            while (*s >= '0' && *s <= '9')
                s++;
            if (*s++ != ']' || (s - b > 2 && *b == '0'))
                rc = -1;
            else
                rc = buf_append(&seg, b, (size_t)(s - 1 - b));
        } else {
            rc = -1;
        }
        if (rc == 0)
            rc = json_pointer_append(out, seg.data ? seg.data : "", seg.len);
    }
    buf_dispose(&seg);
    return rc;
}

/* ---- the live document -------------------------------------------------------------------- */

int watch_doc_init(struct watch_doc *w, const char *pointer)
{
    memset(w, 0, sizeof(*w));
    w->pointer = strdup(pointer ? pointer : "");
    if (w->pointer == NULL)
        return -1;
    w->pointer_len = strlen(w->pointer);
    return 0;
}

void watch_doc_dispose(struct watch_doc *w)
{
    cJSON_Delete(w->root);
    free(w->pointer);
    memset(w, 0, sizeof(*w));
}

const cJSON *watch_doc_selected(const struct watch_doc *w)
{
    return w->root ? cj_lookup(w->root, w->pointer, w->pointer_len) : NULL;
}

int watch_doc_write_selected(const struct watch_doc *w, struct buf *out)
{
    const cJSON *v = watch_doc_selected(w);
    if (v == NULL)
        return 0;
    return json_cjson_write(out, v) == 0 ? 1 : -1;
}

/* A fidelity copy of a cJSON value (through its compact text), for json_diff. Returns NULL when
 * v is NULL or on failure; *failed tells the two apart. */
static struct json_doc *cj_to_doc(const cJSON *v, int *failed)
{
    if (v == NULL)
        return NULL;
    struct buf b;
    buf_init(&b, 0);
    struct json_doc *d = NULL;
    if (json_cjson_write(&b, v) == 0) {
        size_t n;
        char *text = buf_steal(&b, &n);
        d = text ? json_parse_owned(text, n, NULL, NULL) : NULL;
        if (d == NULL)
            free(text);
    }
    buf_dispose(&b);
    if (d == NULL)
        *failed = 1;
    return d;
}

/* Copies the string member key of obj, decoded, into out. Returns 0, or -1 when it is missing
 * or not a string. */
static int member_string(const struct json_node *obj, const char *key, struct buf *out)
{
    buf_truncate(out, 0);
    const struct json_node *v = json_object_get(obj, key, strlen(key));
    if (v == NULL || v->type != JSON_STRING || json_string_decode(v, out) != 0)
        return -1;
    if (out->data == NULL)
        return buf_reserve(out, 1);
    return 0;
}

/* Appends ops to a JSON array under construction, with commas. */
struct change_list {
    struct buf *out;
    size_t n;
};

static int cl_sep(struct change_list *cl)
{
    return cl->n++ ? buf_putc(cl->out, ',') : 0;
}

static int cl_raw_op(struct change_list *cl, const struct json_node *op)
{
    int rc = cl_sep(cl);
    return rc | json_write(cl->out, op);
}

/* Appends {"op":OP,"path":PREFIX+REL} with optional from (PREFIX+FROM) and value. */
static int cl_op(struct change_list *cl, const char *op, const char *prefix, size_t plen,
                 const struct json_node *rel, const struct json_node *from,
                 const struct json_node *value)
{
    struct buf path;
    buf_init(&path, 0);
    int rc = cl_sep(cl);
    rc |= buf_printf(cl->out, "{\"op\":\"%s\",\"path\":", op);
    rc |= buf_append(&path, prefix, plen);
    if (rel)
        rc |= json_string_decode(rel, &path);
    rc |= json_write_string(cl->out, path.data ? path.data : "", path.len);
    if (from) {
        buf_truncate(&path, 0);
        rc |= buf_append(&path, prefix, plen);
        rc |= json_string_decode(from, &path);
        rc |= buf_puts(cl->out, ",\"from\":");
        rc |= json_write_string(cl->out, path.data ? path.data : "", path.len);
    }
    if (value) {
        rc |= buf_puts(cl->out, ",\"value\":");
        rc |= json_write(cl->out, value);
    }
    rc |= buf_putc(cl->out, '}');
    buf_dispose(&path);
    return rc ? -1 : 0;
}

/* Appends json_diff's ops from a to b with their paths under prefix. */
static int cl_array_diff(struct change_list *cl, const char *prefix, size_t plen,
                         const struct json_node *a, const struct json_node *b)
{
    struct buf patch;
    buf_init(&patch, 0);
    int rc = json_diff(a, b, NULL, &patch, NULL);
    struct json_doc *ops = rc == 0 ? json_parse(patch.data, patch.len, NULL, NULL) : NULL;
    if (ops == NULL)
        rc = -1;
    struct buf nm;
    buf_init(&nm, 0);
    for (uint32_t i = 0; rc == 0 && i < ops->root->count; i++) {
        const struct json_node *op = ops->root->u.items[i];
        rc = member_string(op, "op", &nm);
        if (rc == 0)
            rc = cl_op(cl, nm.data, prefix, plen, json_object_get(op, "path", 4),
                       json_object_get(op, "from", 4), json_object_get(op, "value", 5));
    }
    buf_dispose(&nm);
    json_doc_free(ops);
    buf_dispose(&patch);
    return rc;
}

/* Appends the changes from a to b at the leaves: objects member by member (removed members,
 * then changed ones, then added ones), arrays as json_diff patches them (moves and identity
 * matching), anything else as a replace, and so are objects whose "id" members differ.
 * json_diff alone would often replace a whole object
 * because that is shorter; a person watching wants to see which fields changed. */
static int cl_leaf_diff(struct change_list *cl, struct buf *path, const struct json_node *a,
                        const struct json_node *b, int depth)
{
    if (json_equal(a, b))
        return 0;
    if (depth > JSON_CJSON_MAX_DEPTH)
        return -1;
    const char *p = path->data ? path->data : "";
    if (a->type == JSON_ARRAY && b->type == JSON_ARRAY)
        return cl_array_diff(cl, p, path->len, a, b);
    /* Objects whose "id" differs are different things (json_diff's default identity), even
     * when most of their members match. */
    const struct json_node *ida = a->type == JSON_OBJECT ? json_object_get(a, "id", 2) : NULL;
    const struct json_node *idb = b->type == JSON_OBJECT ? json_object_get(b, "id", 2) : NULL;
    if (a->type != JSON_OBJECT || b->type != JSON_OBJECT ||
        (ida != NULL && idb != NULL && !json_equal(ida, idb)))
        return cl_op(cl, "replace", p, path->len, NULL, NULL, b);
    size_t mark = path->len;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < a->count; i++) {
        const struct json_member *m = &a->u.members[i];
        if (json_object_find(b, m->key, m->klen) >= 0)
            continue;
        rc = json_pointer_append(path, m->key, m->klen);
        if (rc == 0)
            rc = cl_op(cl, "remove", path->data, path->len, NULL, NULL, NULL);
        buf_truncate(path, mark);
    }
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; rc == 0 && i < b->count; i++) {
            const struct json_member *m = &b->u.members[i];
            const struct json_node *old = json_object_get(a, m->key, m->klen);
            if ((old != NULL) != (pass == 0))
                continue;
            rc = json_pointer_append(path, m->key, m->klen);
            if (rc == 0 && old != NULL)
                rc = cl_leaf_diff(cl, path, old, m->value, depth + 1);
            else if (rc == 0)
                rc = cl_op(cl, "add", path->data, path->len, NULL, NULL, m->value);
            buf_truncate(path, mark);
        }
    return rc;
}

/* Appends the changes from a to b (either may be NULL: absent), both at path prefix. */
static int cl_diff(struct change_list *cl, const char *prefix, size_t plen,
                   const struct json_doc *a, const struct json_doc *b)
{
    if (a == NULL && b == NULL)
        return 0;
    if (a == NULL)
        return cl_op(cl, "add", prefix, plen, NULL, NULL, b->root);
    if (b == NULL)
        return cl_op(cl, "remove", prefix, plen, NULL, NULL, NULL);
    struct buf path;
    buf_init(&path, 0);
    int rc = buf_append(&path, prefix, plen);
    if (rc == 0)
        rc = cl_leaf_diff(cl, &path, a->root, b->root, 0);
    buf_dispose(&path);
    return rc;
}

/* How an op shows in the change list of a selection. */
enum op_view {
    VIEW_NONE,      /* outside the selection, or a test */
    VIEW_AS_IS,     /* the op itself */
    VIEW_DIFF_SEL,  /* the difference it makes to the whole selection */
    VIEW_DIFF_PATH, /* the difference it makes at its own path (a replace) */
};

static enum op_view op_view(const struct json_node *op, const char *sel, size_t sn,
                            struct buf *name, struct buf *path, struct buf *from)
{
    if (op == NULL || op->type != JSON_OBJECT || member_string(op, "op", name) != 0 ||
        member_string(op, "path", path) != 0)
        return VIEW_NONE;
    const char *n = name->data;
    int has_from = strcmp(n, "move") == 0 || strcmp(n, "copy") == 0;
    if (has_from && member_string(op, "from", from) != 0)
        return VIEW_NONE;
    if (strcmp(n, "test") == 0)
        return VIEW_NONE;
    const char *p = path->data;
    size_t pn = path->len;
    if (path_above(p, pn, sel, sn))
        return VIEW_DIFF_SEL;
    if (strcmp(n, "move") == 0 && path_above(from->data, from->len, sel, sn))
        return VIEW_DIFF_SEL;
    if (path_under(p, pn, sel, sn))
        return strcmp(n, "replace") == 0 ? VIEW_DIFF_PATH : VIEW_AS_IS;
    if (strcmp(n, "move") == 0 && path_under(from->data, from->len, sel, sn))
        return VIEW_AS_IS;
    return VIEW_NONE;
}

int watch_doc_snapshot(struct watch_doc *w, const char *text, size_t len, struct buf *changes,
                       char *err, size_t errlen)
{
    struct json_error jerr;
    struct json_doc *d = json_parse(text, len, NULL, &jerr);
    if (d == NULL) {
        snprintf(err, errlen, "data is not JSON (byte %zu: %s)", jerr.offset, jerr.msg);
        return -1;
    }
    cJSON *root = json_to_cjson(d->root, err, errlen);
    json_doc_free(d);
    if (root == NULL)
        return -1;
    int rc = 0;
    if (changes != NULL && w->root == NULL) {
        rc = buf_puts(changes, "null");
    } else if (changes != NULL) {
        size_t mark = changes->len;
        struct change_list cl = {changes, 0};
        int failed = 0;
        struct json_doc *a = cj_to_doc(cj_lookup(w->root, w->pointer, w->pointer_len), &failed);
        struct json_doc *b = cj_to_doc(cj_lookup(root, w->pointer, w->pointer_len), &failed);
        rc = failed ? -1 : buf_putc(changes, '[');
        if (rc == 0)
            rc = cl_diff(&cl, w->pointer, w->pointer_len, a, b);
        if (rc == 0)
            rc = buf_putc(changes, ']');
        json_doc_free(a);
        json_doc_free(b);
        if (rc != 0)
            buf_truncate(changes, mark);
    }
    if (rc != 0) {
        cJSON_Delete(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cJSON_Delete(w->root);
    w->root = root;
    return 0;
}

/* Applies the ops one by one to a copy of the document, listing the changes of each. */
static int patch_listing(struct watch_doc *w, const struct json_node *patch, struct buf *changes,
                         char *err, size_t errlen)
{
    cJSON *work = cJSON_Duplicate(w->root, 1);
    size_t mark = changes->len;
    struct change_list cl = {changes, 0};
    struct buf name, path, from;
    buf_init(&name, 0);
    buf_init(&path, 0);
    buf_init(&from, 0);
    int rc = work ? buf_putc(changes, '[') : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    for (uint32_t i = 0; rc == 0 && i < patch->count; i++) {
        const struct json_node *op = patch->u.items[i];
        enum op_view view = op_view(op, w->pointer, w->pointer_len, &name, &path, &from);
        const char *at = view == VIEW_DIFF_PATH ? path.data : w->pointer;
        size_t at_len = view == VIEW_DIFF_PATH ? path.len : w->pointer_len;
        int failed = 0;
        struct json_doc *before = NULL, *after = NULL;
        if (view == VIEW_DIFF_SEL || view == VIEW_DIFF_PATH)
            before = cj_to_doc(cj_lookup(work, at, at_len), &failed);
        /* A one-op patch: json_patch_apply reads only the type, count and items of an array. */
        struct json_node *items[1] = {(struct json_node *)op};
        struct json_node one;
        memset(&one, 0, sizeof(one));
        one.type = JSON_ARRAY;
        one.count = 1;
        one.u.items = items;
        struct json_patch_error perr;
        if (failed) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else if (json_patch_apply(&work, &one, NULL, &perr) != 0) {
            /* The message names op 0 of the one-op patch: name the op of the whole patch. */
            const char *m = perr.msg;
            if (strncmp(m, "op 0: ", 6) == 0)
                m += 6;
            snprintf(err, errlen, "op %u: %s", i, m);
            rc = -1;
        } else if (view == VIEW_AS_IS) {
            rc = cl_raw_op(&cl, op);
        } else if (view != VIEW_NONE) {
            after = cj_to_doc(cj_lookup(work, at, at_len), &failed);
            rc = failed ? -1 : cl_diff(&cl, at, at_len, before, after);
        }
        if (rc != 0 && err[0] == '\0')
            snprintf(err, errlen, "out of memory");
        json_doc_free(before);
        json_doc_free(after);
    }
    if (rc == 0)
        rc = buf_putc(changes, ']');
    buf_dispose(&name);
    buf_dispose(&path);
    buf_dispose(&from);
    if (rc != 0) {
        buf_truncate(changes, mark);
        cJSON_Delete(work);
        return -1;
    }
    cJSON_Delete(w->root);
    w->root = work;
    return 0;
}

int watch_doc_patch(struct watch_doc *w, const char *text, size_t len, struct buf *changes,
                    char *err, size_t errlen)
{
    err[0] = '\0';
    if (w->root == NULL) {
        snprintf(err, errlen, "a patch came before any snapshot");
        return -1;
    }
    struct json_error jerr;
    struct json_doc *d = json_parse(text, len, NULL, &jerr);
    if (d == NULL) {
        snprintf(err, errlen, "patch is not JSON (byte %zu: %s)", jerr.offset, jerr.msg);
        return -1;
    }
    int rc;
    if (d->root->type != JSON_ARRAY) {
        snprintf(err, errlen, "patch is not a JSON array");
        rc = -1;
    } else if (changes != NULL) {
        rc = patch_listing(w, d->root, changes, err, errlen);
    } else {
        struct json_patch_error perr;
        rc = json_patch_apply(&w->root, d->root, NULL, &perr);
        if (rc != 0)
            snprintf(err, errlen, "%s", perr.msg);
    }
    json_doc_free(d);
    return rc;
}

/* ---- rendering ---------------------------------------------------------------------------- */

#define RENDER_MAX_MARKS 1024

struct render {
    struct buf *out;
    struct buf path;
    const char *marks[RENDER_MAX_MARKS]; /* decoded target paths of the changes */
    size_t mark_len[RENDER_MAX_MARKS];
    size_t nmarks;
    struct buf mark_text; /* storage of the marks, NUL-separated */
};

static int marked(const struct render *r)
{
    for (size_t i = 0; i < r->nmarks; i++)
        if (path_under(r->path.data ? r->path.data : "", r->path.len, r->marks[i], r->mark_len[i]))
            return 1;
    return 0;
}

static int render_value(struct render *r, const cJSON *v, const char *key, int depth, int comma,
                        int hl)
{
    if (depth > JSON_CJSON_MAX_DEPTH)
        return -1;
    struct buf *o = r->out;
    hl = hl || marked(r);
    int rc = 0;
    if (hl)
        rc |= buf_putc(o, '\x01');
    for (int i = 0; i < depth * 2; i++)
        rc |= buf_putc(o, ' ');
    if (key) {
        rc |= json_write_string(o, key, strlen(key));
        rc |= buf_puts(o, ": ");
    }
    int obj = cJSON_IsObject(v), arr = cJSON_IsArray(v);
    if ((obj || arr) && v->child != NULL) {
        rc |= buf_puts(o, obj ? "{\n" : "[\n");
        size_t i = 0, mark = r->path.len;
        for (const cJSON *c = v->child; c != NULL && rc == 0; c = c->next, i++) {
            if (obj)
                rc |= json_pointer_append(&r->path, c->string, strlen(c->string));
            else
                rc |= json_pointer_append_index(&r->path, i);
            rc |= render_value(r, c, obj ? c->string : NULL, depth + 1, c->next != NULL, hl);
            buf_truncate(&r->path, mark);
        }
        if (hl)
            rc |= buf_putc(o, '\x01');
        for (int i2 = 0; i2 < depth * 2; i2++)
            rc |= buf_putc(o, ' ');
        rc |= buf_puts(o, obj ? "}" : "]");
    } else if (obj || arr) {
        rc |= buf_puts(o, obj ? "{}" : "[]");
    } else {
        rc |= json_cjson_write(o, v);
    }
    if (comma)
        rc |= buf_putc(o, ',');
    rc |= buf_putc(o, '\n');
    return rc ? -1 : 0;
}

int watch_render(struct buf *out, const cJSON *v, const char *base, size_t base_len,
                 const struct json_node *changes)
{
    struct render *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->out = out;
    buf_init(&r->path, 0);
    buf_init(&r->mark_text, 0);
    size_t start = out->len;
    int rc = buf_append(&r->path, base, base_len);
    /* Collect the target paths first (the storage may move while it grows), then point in. */
    size_t offs[RENDER_MAX_MARKS];
    struct buf name, path;
    buf_init(&name, 0);
    buf_init(&path, 0);
    if (changes != NULL && changes->type == JSON_ARRAY)
        for (uint32_t i = 0; rc == 0 && i < changes->count && r->nmarks < RENDER_MAX_MARKS; i++) {
            const struct json_node *op = changes->u.items[i];
            if (member_string(op, "op", &name) != 0 || member_string(op, "path", &path) != 0)
                continue;
            if (strcmp(name.data, "add") != 0 && strcmp(name.data, "replace") != 0 &&
                strcmp(name.data, "copy") != 0 && strcmp(name.data, "move") != 0)
                continue;
            offs[r->nmarks] = r->mark_text.len;
            r->mark_len[r->nmarks++] = path.len;
            rc = buf_append(&r->mark_text, path.data, path.len);
            rc |= buf_putc(&r->mark_text, '\0');
        }
    for (size_t i = 0; i < r->nmarks; i++)
        r->marks[i] = r->mark_text.data + offs[i];
    if (rc == 0)
        rc = render_value(r, v, NULL, 0, 0, 0);
    if (rc != 0)
        buf_truncate(out, start);
    buf_dispose(&name);
    buf_dispose(&path);
    buf_dispose(&r->path);
    buf_dispose(&r->mark_text);
    free(r);
    return rc;
}

int watch_format_path(struct buf *out, const char *p, size_t n)
{
    int bare = n > 0;
    for (size_t i = 0; i < n && bare; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == '"' || c == '\\' || c == 0x7f)
            bare = 0;
    }
    return bare ? buf_append(out, p, n) : json_write_string(out, p, n);
}

int watch_format_change(struct buf *out, const struct json_node *op)
{
    size_t start = out->len;
    struct buf name, path;
    buf_init(&name, 0);
    buf_init(&path, 0);
    int rc = 0;
    if (op == NULL || op->type != JSON_OBJECT || member_string(op, "op", &name) != 0 ||
        member_string(op, "path", &path) != 0)
        rc = -1;
    if (rc == 0) {
        rc |= buf_append(out, name.data, name.len);
        rc |= buf_putc(out, ' ');
        rc |= watch_format_path(out, path.data, path.len);
        if (member_string(op, "from", &path) == 0) {
            rc |= buf_puts(out, " from ");
            rc |= watch_format_path(out, path.data, path.len);
        }
        const struct json_node *v = json_object_get(op, "value", 5);
        if (v != NULL) {
            rc |= buf_putc(out, ' ');
            rc |= json_write(out, v);
        }
    }
    buf_dispose(&name);
    buf_dispose(&path);
    if (rc != 0)
        buf_truncate(out, start);
    return rc ? -1 : 0;
}

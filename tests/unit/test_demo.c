/* Tests of the built-in demo document (http_demo_document): second by second, the diff of the
 * demo is a small patch of a few values, never a replace of the document, of prices or of
 * orders, and over two minutes it shows every kind of change (price and field replaces, order
 * adds, removes and moves), so that the demo stream shows what pollcast does. Every patch is
 * applied and must give the next document. */
#include <inttypes.h>

#include "harness.h"
#include "http.h"
#include "json/apply.h"
#include "json/diff.h"
#include "json/json.h"

/* A time like the ones the demo really serves at, and the start of time (no order filled). */
#define T_NOW 1795265543u
#define SPAN  120u

static struct json_doc *demo_at(uint64_t t, struct buf *text)
{
    buf_truncate(text, 0);
    if (http_demo_document(text, t) != 0)
        return NULL;
    return json_parse(text->data, text->len, NULL, NULL);
}

static int str_is(const struct json_node *n, const char *s)
{
    size_t len = strlen(s);
    return n && n->type == JSON_STRING && n->len == len + 2 && memcmp(n->text + 1, s, len) == 0;
}

static int starts(const struct json_node *n, const char *prefix)
{
    size_t len = strlen(prefix);
    return n && n->type == JSON_STRING && n->len >= len + 2 &&
           memcmp(n->text + 1, prefix, len) == 0;
}

struct seen {
    unsigned price, order_add, order_remove, order_move, order_field, filled, ticks;
    size_t patch_bytes, doc_bytes;
};

/* Diffs the demo from t to t + 1, checks the patch and counts what it does into s. */
static void check_second(uint64_t t, struct seen *s)
{
    struct buf ta, tb, patch, applied;
    buf_init(&ta, 0);
    buf_init(&tb, 0);
    buf_init(&patch, 0);
    buf_init(&applied, 0);
    struct json_doc *a = demo_at(t, &ta), *b = demo_at(t + 1, &tb), *p = NULL, *got = NULL;
    size_t nops = 0;
    REQUIRE(a && b);
    /* A document worth streaming patches of, once its first orders were filled (t >= 30). */
    int full = t >= 32;
    CHECK(!full || ta.len >= 700);
    REQUIRE(json_diff(a->root, b->root, NULL, &patch, &nops) == 0);
    p = json_parse(patch.data, patch.len, NULL, NULL);
    REQUIRE(p && p->root->type == JSON_ARRAY);
    /* A few values a second: tick, two prices and at most one order event (two ops). */
    if (nops < 1 || nops > 5 || (full && patch.len * 2 > ta.len))
        fprintf(stderr, "t=%" PRIu64 ": %zu ops, %zu of %zu bytes: %.*s\n", t, nops, patch.len,
                ta.len, (int)patch.len, patch.data);
    CHECK(nops >= 1 && nops <= 5);
    CHECK(!full || patch.len * 2 <= ta.len); /* half the document at most */
    unsigned prices = 0;
    for (uint32_t i = 0; i < p->root->count; i++) {
        const struct json_node *op = p->root->u.items[i];
        const struct json_node *name = json_object_get(op, "op", 2);
        const struct json_node *path = json_object_get(op, "path", 4);
        CHECK(!str_is(path, "") && !str_is(path, "/prices") && !str_is(path, "/orders"));
        if (str_is(path, "/tick"))
            s->ticks++;
        else if (str_is(path, "/filled_today"))
            s->filled++;
        else if (starts(path, "/prices/") && str_is(name, "replace"))
            prices++;
        else if (starts(path, "/orders/") && str_is(name, "add"))
            s->order_add++;
        else if (starts(path, "/orders/") && str_is(name, "remove"))
            s->order_remove++;
        else if (starts(path, "/orders/") && str_is(name, "move"))
            s->order_move++;
        else if (starts(path, "/orders/") && str_is(name, "replace"))
            s->order_field++;
        else {
            fprintf(stderr, "t=%" PRIu64 ": unexpected op %.*s\n", t, (int)op->len, op->text);
            CHECK(0);
        }
    }
    CHECK(prices <= 2);
    s->patch_bytes += patch.len;
    s->doc_bytes += ta.len;
    s->price += prices;
    struct json_patch_error err;
    REQUIRE(json_patch_apply_node(a->root, p->root, &applied, &err) == 0);
    got = json_parse(applied.data, applied.len, NULL, NULL);
    REQUIRE(got);
    CHECK(json_equal(got->root, b->root));
    json_doc_free(got);
    json_doc_free(p);
    json_doc_free(a);
    json_doc_free(b);
    buf_dispose(&ta);
    buf_dispose(&tb);
    buf_dispose(&patch);
    buf_dispose(&applied);
}

static void check_span(uint64_t from)
{
    struct seen s = {0};
    for (uint64_t t = from; t < from + SPAN; t++)
        check_second(t, &s);
    fprintf(stderr,
            "from %" PRIu64 ": %u price replaces, orders: %u adds, %u removes, %u moves, "
            "%u field replaces; filled %u times; patches %zu bytes on average, documents "
            "%zu\n",
            from, s.price, s.order_add, s.order_remove, s.order_move, s.order_field, s.filled,
            s.patch_bytes / SPAN, s.doc_bytes / SPAN);
    CHECK_INT(s.ticks, SPAN);
    CHECK(s.price >= SPAN); /* two a second, less the rare step that lands on the same price */
    CHECK(s.order_add >= SPAN / 4 - 1);
    CHECK(s.order_remove >= SPAN / 4 - 8);
    CHECK(s.order_move >= 5);
    CHECK(s.order_field >= SPAN / 4);
    CHECK(s.filled >= SPAN / 4 - 8);
}

static void test_demo_now(void)
{
    check_span(T_NOW);
}

static void test_demo_from_zero(void)
{
    check_span(0);
}

/* Across midnight UTC (filled_today starts again) and the wrap of the shown order ids (every
 * 36000 s): 432000 s is a multiple of both. */
static void test_demo_midnight_and_id_wrap(void)
{
    check_span(432000ull * 4155 - SPAN / 2);
}

/* The same second always gives the same document (every poller and every answer agree). */
static void test_demo_deterministic(void)
{
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    CHECK_INT(http_demo_document(&a, T_NOW), 0);
    CHECK_INT(http_demo_document(&b, T_NOW), 0);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    buf_dispose(&a);
    buf_dispose(&b);
}

int main(void)
{
    RUN(test_demo_now);
    RUN(test_demo_from_zero);
    RUN(test_demo_midnight_and_id_wrap);
    RUN(test_demo_deterministic);
    return harness_report("test_demo");
}

/* Tests of json_diff: every diff case on small documents, the table of tests/data/diff, the
 * reference pairs (patch sizes no larger than the ideal ones), seeded random documents and edit
 * sequences, and pathological shapes. Every patch is applied with json_patch_apply and the
 * result compared with the document it should give. */
#include <dirent.h>
#include <stdint.h>

#include "harness.h"
#include "json/apply.h"
#include "json/diff.h"
#include "json/json.h"

/* Long strings, so that patches beat replacing their containers. */
#define L1 "\"lorem ipsum dolor sit amet, consectetur adipiscing elit, one\""
#define L2 "\"lorem ipsum dolor sit amet, consectetur adipiscing elit, two\""
#define L3 "\"lorem ipsum dolor sit amet, consectetur adipiscing elit, three\""
#define L4 "\"lorem ipsum dolor sit amet, consectetur adipiscing elit, four\""
#define L5 "\"lorem ipsum dolor sit amet, consectetur adipiscing elit, five\""

static struct json_doc *parse_n(const char *s, size_t n)
{
    return json_parse(s, n, NULL, NULL);
}

static struct json_doc *parse(const char *s)
{
    return parse_n(s, strlen(s));
}

/* Applies patch to a and compares the result with b (objects in any member order, everything
 * else exactly, numbers and strings by their text). Returns 1 when they are equal; otherwise 0,
 * and prints why. */
static int applies_to(const struct json_node *a, const struct json_node *patch,
                      const struct json_node *b)
{
    struct buf out;
    buf_init(&out, 0);
    struct json_patch_error err;
    int ok = 0;
    if (json_patch_apply_node(a, patch, &out, &err) != 0) {
        fprintf(stderr, "%s: patch does not apply: op %ld: %s\n", harness_current, err.op, err.msg);
        goto out;
    }
    struct json_doc *res = parse_n(out.data, out.len);
    ok = res != NULL && json_equal(res->root, b);
    if (!ok)
        fprintf(stderr, "%s: patch gives %.300s\n", harness_current, out.data);
    json_doc_free(res);
out:
    buf_dispose(&out);
    return ok;
}

/* Diffs two documents given as text with opts; checks that the patch parses, holds *nops ops
 * and gives `after` when applied. Returns the patch text, valid until the next call, or "ERR". */
static const char *diff_opts(const char *before, const char *after,
                             const struct json_diff_opts *opts)
{
    static struct buf out;
    out.len = 0;
    struct json_doc *a = parse(before), *b = parse(after), *p = NULL;
    const char *res = "ERR";
    size_t nops = 12345;
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL)
        goto out;
    CHECK_INT(json_diff(a->root, b->root, opts, &out, &nops), 0);
    if (out.data == NULL)
        goto out;
    p = parse_n(out.data, out.len);
    CHECK(p != NULL && p->root->type == JSON_ARRAY);
    if (p == NULL)
        goto out;
    CHECK_INT(nops, p->root->count);
    CHECK(applies_to(a->root, p->root, b->root));
    res = out.data;
out:
    json_doc_free(a);
    json_doc_free(b);
    json_doc_free(p);
    return res;
}

static const char *diff(const char *before, const char *after)
{
    return diff_opts(before, after, NULL);
}

/* ---- one test per diff case ------------------------------------------------------------- */

static void test_equal_documents(void)
{
    CHECK_STR(diff("{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}",
                   " { \"c\" : \"x\", \"a\" : [ 1, 2, { \"b\" : null } ] } "),
              "[]");
    CHECK_STR(diff("1e400", "1e400"), "[]");
    CHECK_STR(diff("[]", "[]"), "[]");
    CHECK_STR(diff("{}", "{}"), "[]");
    CHECK_STR(diff("null", "null"), "[]");
}

static void test_root_changes(void)
{
    CHECK_STR(diff("[1]", "{\"a\":1}"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"a\":1}}]");
    CHECK_STR(diff("1", "\"1\""), "[{\"op\":\"replace\",\"path\":\"\",\"value\":\"1\"}]");
    CHECK_STR(diff("true", "false"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":false}]");
    CHECK_STR(diff("1", "1.0"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":1.0}]");
    CHECK_STR(diff("{\"a\":1}", "null"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":null}]");
    /* A small root container whose patch would be longer is replaced whole. */
    CHECK_STR(diff("[1,2,3]", "[3,2,1]"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":[3,2,1]}]");
}

static void test_object_members(void)
{
    CHECK_STR(diff("{\"keep\":" L1 ",\"chg\":" L2 ",\"gone\":" L3 ",\"obj\":{\"x\":" L4 "}}",
                   "{\"keep\":" L1 ",\"chg\":\"new\",\"obj\":{\"x\":" L4 ",\"y\":2},\"added\":3}"),
              "[{\"op\":\"replace\",\"path\":\"/chg\",\"value\":\"new\"},"
              "{\"op\":\"add\",\"path\":\"/obj/y\",\"value\":2},"
              "{\"op\":\"remove\",\"path\":\"/gone\"},"
              "{\"op\":\"add\",\"path\":\"/added\",\"value\":3}]");
    /* Type changes of members are replaces. */
    CHECK_STR(diff("{\"a\":{\"b\":" L1 "},\"c\":[" L2 "]}", "{\"a\":{\"b\":[1]},\"c\":[" L2 "]}"),
              "[{\"op\":\"replace\",\"path\":\"/a/b\",\"value\":[1]}]");
    /* Member order alone is no change. */
    CHECK_STR(diff("{\"a\":1,\"b\":2,\"c\":3}", "{\"c\":3,\"a\":1,\"b\":2}"), "[]");
}

static void test_object_rename_is_a_move(void)
{
    CHECK_STR(diff("{\"old\":" L1 ",\"k\":1}", "{\"k\":1,\"new\":" L1 "}"),
              "[{\"op\":\"move\",\"from\":\"/old\",\"path\":\"/new\"}]");
    /* Two removed members with equal values: each added one takes one of them, in order. */
    CHECK_STR(diff("{\"a\":" L1 ",\"b\":" L1 ",\"k\":" L2 "}",
                   "{\"k\":" L2 ",\"c\":" L1 ",\"d\":" L1 "}"),
              "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/c\"},"
              "{\"op\":\"move\",\"from\":\"/b\",\"path\":\"/d\"}]");
    /* A removed value that equals nothing new is removed. */
    CHECK_STR(diff("{\"a\":" L1 ",\"k\":" L2 "}", "{\"k\":" L2 ",\"b\":" L3 "}"),
              "[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"add\",\"path\":\"/b\",\"value\":" L3
              "}]");
}

static void test_array_head_and_tail(void)
{
    CHECK_STR(diff("[" L1 "," L2 "," L3 "," L4 "]", "[" L1 "," L2 ",\"x\"," L3 "," L4 "]"),
              "[{\"op\":\"add\",\"path\":\"/2\",\"value\":\"x\"}]");
    CHECK_STR(diff("[" L1 "," L2 "," L3 "," L4 "]", "[" L1 "," L3 "," L4 "]"),
              "[{\"op\":\"remove\",\"path\":\"/1\"}]");
    CHECK_STR(diff("[" L1 "," L2 "]", "[" L1 "," L2 ",3]"),
              "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]");
    CHECK_STR(diff("[" L1 "," L2 "]", "[0," L1 "," L2 "]"),
              "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]");
    CHECK_STR(diff("[" L1 ",1,2," L2 "]", "[" L1 "," L2 "]"),
              "[{\"op\":\"remove\",\"path\":\"/2\"},{\"op\":\"remove\",\"path\":\"/1\"}]");
}

static void test_array_insert_remove(void)
{
    /* Removes come first, from the highest index down; adds then go in order. */
    CHECK_STR(diff("[" L1 ",\"a\"," L2 ",\"b\"," L3 "]", "[" L1 "," L2 "," L3 "]"),
              "[{\"op\":\"remove\",\"path\":\"/3\"},{\"op\":\"remove\",\"path\":\"/1\"}]");
    CHECK_STR(diff("[" L1 "," L2 "," L3 "]", "[\"x\"," L1 "," L2 ",\"y\",\"z\"," L3 ",\"w\"]"),
              "[{\"op\":\"add\",\"path\":\"/0\",\"value\":\"x\"},"
              "{\"op\":\"add\",\"path\":\"/3\",\"value\":\"y\"},"
              "{\"op\":\"add\",\"path\":\"/4\",\"value\":\"z\"},"
              "{\"op\":\"add\",\"path\":\"/6\",\"value\":\"w\"}]");
    CHECK_STR(
        diff("[" L1 ",true," L2 "," L3 "]", "[" L1 "," L2 ",false," L3 "]"),
        "[{\"op\":\"remove\",\"path\":\"/1\"},{\"op\":\"add\",\"path\":\"/2\",\"value\":false}]");
}

static void test_array_moves(void)
{
    CHECK_STR(diff("[" L1 "," L2 "," L3 "," L4 "," L5 "]", "[" L4 "," L1 "," L2 "," L3 "," L5 "]"),
              "[{\"op\":\"move\",\"from\":\"/3\",\"path\":\"/0\"}]");
    CHECK_STR(diff("[" L1 "," L2 "," L3 "," L4 "," L5 "]", "[" L2 "," L3 "," L1 "," L4 "," L5 "]"),
              "[{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/2\"}]");
    /* Two elements swapped around the kept ones, with an insert between. */
    CHECK_STR(
        diff("[" L1 "," L2 "," L3 "," L4 "," L5 "]", "[" L5 "," L2 "," L3 ",0," L4 "," L1 "]"),
        "[{\"op\":\"move\",\"from\":\"/4\",\"path\":\"/0\"},"
        "{\"op\":\"add\",\"path\":\"/4\",\"value\":0},"
        "{\"op\":\"move\",\"from\":\"/1\",\"path\":\"/5\"}]");
    /* Duplicates: the first unused equal element is taken. */
    CHECK_STR(diff("[" L1 "," L2 "," L1 "," L3 "]", "[" L2 "," L1 "," L1 "," L3 "]"),
              "[{\"op\":\"move\",\"from\":\"/1\",\"path\":\"/0\"}]");
}

static void test_identity_match(void)
{
    const char *a = "[{\"id\":1,\"v\":" L1 "},{\"id\":2,\"v\":" L2 "}]";
    const char *b = "[{\"id\":2,\"v\":" L2 "},{\"id\":1,\"v\":\"changed\"}]";
    CHECK_STR(diff(a, b), "[{\"op\":\"move\",\"from\":\"/1\",\"path\":\"/0\"},"
                          "{\"op\":\"replace\",\"path\":\"/1/v\",\"value\":\"changed\"}]");
    /* Without identity the changed element is removed and added again. */
    static const char *const none[] = {NULL};
    struct json_diff_opts no_ids = {none};
    CHECK_STR(diff_opts(a, b, &no_ids),
              "[{\"op\":\"remove\",\"path\":\"/0\"},"
              "{\"op\":\"add\",\"path\":\"/1\",\"value\":{\"id\":1,\"v\":\"changed\"}}]");
    /* Other identity members. */
    static const char *const sku[] = {"sku", "id", NULL};
    struct json_diff_opts by_sku = {sku};
    CHECK_STR(diff_opts("[{\"sku\":\"a\",\"id\":1,\"v\":" L1 "},{\"sku\":\"b\",\"v\":" L2 "}]",
                        "[{\"sku\":\"b\",\"v\":" L2 "},{\"sku\":\"a\",\"id\":7,\"v\":" L1 "}]",
                        &by_sku),
              "[{\"op\":\"move\",\"from\":\"/1\",\"path\":\"/0\"},"
              "{\"op\":\"replace\",\"path\":\"/1/id\",\"value\":7}]");
    /* Ids are compared exactly: 2^53 + 1 and 2^53 are two identities; null is none. */
    CHECK_STR(diff("[" L1 ",{\"id\":9007199254740993,\"v\":" L2 "}," L3 "]",
                   "[" L1 ",{\"id\":9007199254740992,\"v\":" L2 "}," L3 "]"),
              "[{\"op\":\"replace\",\"path\":\"/1/id\",\"value\":9007199254740992}]");
}

static void test_positional_pairing(void)
{
    CHECK_STR(diff("[" L1 ",{\"a\":1,\"b\":" L2 "}," L3 ",{\"x\":1,\"y\":" L4 "}," L5 "]",
                   "[" L1 ",{\"a\":2,\"b\":" L2 "}," L3 ",{\"x\":2,\"y\":" L4 "}," L5 "]"),
              "[{\"op\":\"replace\",\"path\":\"/1/a\",\"value\":2},"
              "{\"op\":\"replace\",\"path\":\"/3/x\",\"value\":2}]");
    /* Unequal counts in a gap: pairs in order, the rest is added. */
    CHECK_STR(diff("[" L1 ",1," L2 "]", "[" L1 ",2,3," L2 "]"),
              "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3},"
              "{\"op\":\"replace\",\"path\":\"/1\",\"value\":2}]");
    /* Different types paired: replace. */
    CHECK_STR(diff("[" L1 ",1," L2 "]", "[" L1 ",{\"k\":1}," L2 "]"),
              "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":{\"k\":1}}]");
}

static void test_replace_if_smaller(void)
{
    CHECK_STR(diff("{\"a\":[1,2,3],\"b\":" L1 "}", "{\"a\":[3,2,1],\"b\":" L1 "}"),
              "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":[3,2,1]}]");
    CHECK_STR(
        diff("{\"o\":{\"x\":1,\"y\":2},\"b\":" L1 "}", "{\"o\":{\"p\":3,\"q\":4},\"b\":" L1 "}"),
        "[{\"op\":\"replace\",\"path\":\"/o\",\"value\":{\"p\":3,\"q\":4}}]");
    /* Nested: the inner patch is replaced, then the outer one too. */
    CHECK_STR(diff("[[1,2],[3,4]]", "[[2,1],[4,3]]"),
              "[{\"op\":\"replace\",\"path\":\"\",\"value\":[[2,1],[4,3]]}]");
}

static void test_empty_containers(void)
{
    CHECK_STR(
        diff("{\"a\":[],\"b\":{},\"c\":" L1 "}", "{\"a\":[1],\"b\":{\"k\":true},\"c\":" L1 "}"),
        "[{\"op\":\"add\",\"path\":\"/a/0\",\"value\":1},"
        "{\"op\":\"add\",\"path\":\"/b/k\",\"value\":true}]");
    CHECK_STR(
        diff("{\"a\":[1],\"b\":{\"k\":true},\"c\":" L1 "}", "{\"a\":[],\"b\":{},\"c\":" L1 "}"),
        "[{\"op\":\"remove\",\"path\":\"/a/0\"},{\"op\":\"remove\",\"path\":\"/b/k\"}]");
    CHECK_STR(diff("[]", "{}"), "[{\"op\":\"replace\",\"path\":\"\",\"value\":{}}]");
    CHECK_STR(diff("{\"a\":[" L1 "]}", "{\"a\":{}}"),
              "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":{}}]");
}

static void test_escaping(void)
{
#define V(n) "{\"pad\":" L1 ",\"v\":" #n "}"
    CHECK_STR(diff("{\"a/b\":" V(0) ",\"m~n\":" V(0) ",\"~1\":" V(0) ",\"\":" V(0) ",\"k\\\"l\":" V(
                       0) ",\"i\\\\j\":" V(0) ",\"t\\u0001\\n\":" V(0) ",\"/\":{\"~\":" V(0) "}}",
                   "{\"a/b\":" V(1) ",\"m~n\":" V(2) ",\"~1\":" V(3) ",\"\":" V(4) ",\"k\\\"l\":" V(
                       5) ",\"i\\\\j\":" V(6) ",\"t\\u0001\\n\":" V(7) ",\"/\":{\"~\":" V(8) "}}"),
              "[{\"op\":\"replace\",\"path\":\"/a~1b/v\",\"value\":1},"
              "{\"op\":\"replace\",\"path\":\"/m~0n/v\",\"value\":2},"
              "{\"op\":\"replace\",\"path\":\"/~01/v\",\"value\":3},"
              "{\"op\":\"replace\",\"path\":\"//v\",\"value\":4},"
              "{\"op\":\"replace\",\"path\":\"/k\\\"l/v\",\"value\":5},"
              "{\"op\":\"replace\",\"path\":\"/i\\\\j/v\",\"value\":6},"
              "{\"op\":\"replace\",\"path\":\"/t\\u0001\\n/v\",\"value\":7},"
              "{\"op\":\"replace\",\"path\":\"/~1/~0/v\",\"value\":8}]");
#undef V
    /* A key holding NUL (which cJSON, hence the applier, cannot hold): the path escapes it. */
    struct json_doc *a = parse("{\"a\\u0000b\":" L1 ",\"k\":" L2 "}");
    struct json_doc *b = parse("{\"a\\u0000b\":" L3 ",\"k\":" L2 "}");
    REQUIRE(a != NULL && b != NULL);
    struct buf out;
    buf_init(&out, 0);
    CHECK_INT(json_diff(a->root, b->root, NULL, &out, NULL), 0);
    CHECK_STR(out.data, "[{\"op\":\"replace\",\"path\":\"/a\\u0000b\",\"value\":" L3 "}]");
    buf_dispose(&out);
    json_doc_free(a);
    json_doc_free(b);
    /* Keys are compared decoded: "\u0041" is "A", and written decoded in paths. */
    CHECK_STR(diff("{\"\\u0041\":" L1 ",\"a\":" L2 "}", "{\"A\":" L1 ",\"a\":" L3 "}"),
              "[{\"op\":\"replace\",\"path\":\"/a\",\"value\":" L3 "}]");
    CHECK_STR(diff("{\"A\":" L1 ",\"\\u00e9\":" L2 "}", "{\"a\":" L1 ",\"\\u00e9\":" L2 "}"),
              "[{\"op\":\"move\",\"from\":\"/A\",\"path\":\"/a\"}]");
    CHECK_STR(diff("{\"\\u00e9\":" L1 ",\"k\":" L2 "}", "{\"\\u00e9\":0,\"k\":" L2 "}"),
              "[{\"op\":\"replace\",\"path\":\"/\xC3\xA9\",\"value\":0}]");
}

/* Issue 10, bug 3: strings are equal when their decoded values are, whatever the escapes; a
 * value that did change goes out as the upstream wrote it. */
static void test_string_escapes(void)
{
    CHECK_STR(diff("{\"s\":\"\\u00e9t\\u00e9\",\"k\":" L1 "}",
                   "{\"s\":\"\xC3\xA9t\xC3\xA9\",\"k\":" L1 "}"),
              "[]");
    CHECK_STR(
        diff("{\"u\":\"http:\\/\\/x\\/y\",\"k\":" L1 "}", "{\"u\":\"http://x/y\",\"k\":" L1 "}"),
        "[]");
    CHECK_STR(diff("[\"\\ud83d\\ude00\"]", "[\"\xF0\x9F\x98\x80\"]"), "[]");
    /* A real change: the new value's text as written, escapes kept. */
    CHECK_STR(diff("{\"s\":\"\xC3\xA9\",\"k\":" L1 "}", "{\"s\":\"\\u00e8\\/\",\"k\":" L1 "}"),
              "[{\"op\":\"replace\",\"path\":\"/s\",\"value\":\"\\u00e8\\/\"}]");
    /* Move detection and array matching see through escapes (subtree hashes are decoded). */
    CHECK_STR(diff("[" L1 ",\"lorem ipsum dolor sit amet, consectetur \\u00e9lit, two\"," L3 "]",
                   "[\"lorem ipsum dolor sit amet, consectetur \xC3\xA9lit, two\"," L3 "," L1 "]"),
              "[{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/2\"}]");
    CHECK_STR(diff("{\"a\":{\"x\":\"\\/\\/"
                   "long enough to be moved, not copied\"},\"b\":1}",
                   "{\"c\":{\"x\":\"//"
                   "long enough to be moved, not copied\"},\"b\":1}"),
              "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/c\"}]");
    /* Identity matching: an id written with escapes is the same id. */
    CHECK_STR(diff("[{\"id\":\"\\u0041\",\"v\":" L1 "},{\"id\":\"B\",\"v\":" L2 "}]",
                   "[{\"id\":\"B\",\"v\":" L2 "},{\"id\":\"A\",\"v\":" L3 "}]"),
              "[{\"op\":\"move\",\"from\":\"/1\",\"path\":\"/0\"},"
              "{\"op\":\"replace\",\"path\":\"/1/v\",\"value\":" L3 "}]");
}

static void test_fidelity(void)
{
    CHECK_STR(
        diff("{\"n\":9007199254740993,\"k\":" L1 "}", "{\"n\":9007199254740992,\"k\":" L1 "}"),
        "[{\"op\":\"replace\",\"path\":\"/n\",\"value\":9007199254740992}]");
    CHECK_STR(diff("{\"n\":1e400,\"k\":" L1 "}", "{\"n\":1E400,\"k\":" L1 "}"),
              "[{\"op\":\"replace\",\"path\":\"/n\",\"value\":1E400}]");
    CHECK_STR(diff("{\"n\":1.10,\"k\":" L1 "}", "{\"n\":1.1,\"k\":" L1 "}"),
              "[{\"op\":\"replace\",\"path\":\"/n\",\"value\":1.1}]");
    CHECK_STR(diff("{\"s\":\"a\\u0000b\",\"k\":" L1 "}", "{\"s\":\"a\\u0000c\",\"k\":" L1 "}"),
              "[{\"op\":\"replace\",\"path\":\"/s\",\"value\":\"a\\u0000c\"}]");
    CHECK_STR(
        diff("[" L1 ",\"\\ud83d\\ude00\"]", "[" L1 ",\"\\ud83d\\ude00\",\"\xF0\x9F\x98\x80\"]"),
        "[{\"op\":\"add\",\"path\":\"/2\",\"value\":\"\xF0\x9F\x98\x80\"}]");
    /* Values go out as written, whitespace aside. */
    CHECK_STR(diff("{\"k\":" L1 "}", "{\"k\":" L1 ",\"v\":[ 1.50 , -0 , 1e-7 ] }"),
              "[{\"op\":\"add\",\"path\":\"/v\",\"value\":[1.50,-0,1e-7]}]");
    /* Keys that differ only in case are different keys. */
    CHECK_STR(diff("{\"Key\":" L1 ",\"key\":" L2 "}", "{\"Key\":" L1 ",\"key\":" L2 ",\"KEY\":1}"),
              "[{\"op\":\"add\",\"path\":\"/KEY\",\"value\":1}]");
}

static void test_output_buffer(void)
{
    struct json_doc *a = parse("{\"a\":" L1 "}"), *b = parse("{\"a\":" L2 "}");
    REQUIRE(a != NULL && b != NULL);
    struct buf out;
    buf_init(&out, 0);
    buf_puts(&out, "event: patch\ndata: ");
    size_t nops = 0;
    CHECK_INT(json_diff(a->root, b->root, NULL, &out, &nops), 0);
    CHECK_STR(out.data,
              "event: patch\ndata: [{\"op\":\"replace\",\"path\":\"/a\",\"value\":" L2 "}]");
    CHECK_INT(nops, 1);
    /* A buffer that cannot grow enough: -1, and the buffer as it was. */
    struct buf small;
    buf_init(&small, 40);
    buf_puts(&small, "keep");
    CHECK_INT(json_diff(a->root, b->root, NULL, &small, NULL), -1);
    CHECK_STR(small.data, "keep");
    CHECK_INT(small.len, 4);
    buf_dispose(&small);
    buf_dispose(&out);
    json_doc_free(a);
    json_doc_free(b);
}

static void test_deep_nesting(void)
{
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    for (int i = 0; i < 900; i++) {
        buf_puts(&a, "[" L1 ",");
        buf_puts(&b, "[" L1 ",");
    }
    buf_puts(&a, "1");
    buf_puts(&b, "2");
    for (int i = 0; i < 900; i++) {
        buf_putc(&a, ']');
        buf_putc(&b, ']');
    }
    const char *p = diff(a.data, b.data);
    CHECK(strncmp(p, "[{\"op\":\"replace\",\"path\":\"/1/1/1/", 32) == 0);
    CHECK_INT(strlen(p), strlen("[{\"op\":\"replace\",\"path\":\"\",\"value\":2}]") + 900 * 2);
    buf_dispose(&a);
    buf_dispose(&b);
}

/* ---- table tests: tests/data/diff/NAME.json ---------------------------------------------- */

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Runs one table file; returns 1 when it passes. */
static int run_table_file(const char *path)
{
    size_t len;
    char *text = harness_slurp(path, &len);
    struct json_doc *t = text ? parse_n(text, len) : NULL;
    struct buf got, want;
    buf_init(&got, 0);
    buf_init(&want, 0);
    int ok = 0;
    if (t == NULL) {
        fprintf(stderr, "%s: cannot read or parse\n", path);
        goto out;
    }
    const struct json_node *before = json_object_get(t->root, "before", 6);
    const struct json_node *after = json_object_get(t->root, "after", 5);
    const struct json_node *patch = json_object_get(t->root, "patch", 5);
    const struct json_node *comment = json_object_get(t->root, "comment", 7);
    if (before == NULL || after == NULL || patch == NULL || comment == NULL ||
        patch->type != JSON_ARRAY) {
        fprintf(stderr, "%s: needs comment, before, after and patch (an array)\n", path);
        goto out;
    }
    size_t nops = 0;
    if (json_diff(before, after, NULL, &got, &nops) != 0 || json_write(&want, patch) != 0) {
        fprintf(stderr, "%s: json_diff failed\n", path);
        goto out;
    }
    if (strcmp(got.data, want.data) != 0) {
        fprintf(stderr, "%s:\n  got  %s\n  want %s\n", path, got.data, want.data);
        goto out;
    }
    ok = nops == patch->count && applies_to(before, patch, after);
    if (!ok)
        fprintf(stderr, "%s: op count or application wrong\n", path);
out:
    buf_dispose(&got);
    buf_dispose(&want);
    json_doc_free(t);
    free(text);
    return ok;
}

static void test_table(void)
{
    const char *src = getenv("POLLCAST_SRC");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tests/data/diff", src ? src : ".");
    DIR *dh = opendir(dir);
    REQUIRE(dh != NULL);
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && n < 512) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(dh);
    qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
    CHECK(n >= 25);
    for (int i = 0; i < n; i++) {
        char path[4600];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        harness_current = names[i];
        CHECK(run_table_file(path));
        free(names[i]);
    }
}

/* ---- reference pairs -------------------------------------------------------------------- */

static struct json_doc *load(const char *dir, const char *name, const char *ext)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, ext);
    size_t len;
    char *text = harness_slurp(path, &len);
    if (text == NULL)
        return NULL;
    struct json_doc *d = parse_n(text, len);
    free(text);
    return d;
}

static void test_reference_pairs(void)
{
    static const struct {
        const char *name;
        size_t ideal; /* compact bytes of the smallest patch; 0: unknown */
    } pairs[] = {
        {"p1_object_field_change", 137},     {"p2_array_insert_front_1000", 271},
        {"p3_array_remove_middle_1000", 37}, {"p4_array_move_one_1000", 55},
        {"p5_deep_change_1MB", 81},          {"p6_escaping_sanity", 0},
    };
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/diff-pairs", harness_testdata());
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        harness_current = pairs[i].name;
        struct json_doc *a = load(dir, pairs[i].name, ".src.json");
        struct json_doc *b = load(dir, pairs[i].name, ".dst.json");
        struct json_doc *ideal = pairs[i].ideal ? load(dir, pairs[i].name, ".ideal.json") : NULL;
        struct buf out;
        buf_init(&out, 0);
        CHECK(a != NULL && b != NULL);
        if (a && b && json_diff(a->root, b->root, NULL, &out, NULL) == 0) {
            struct json_doc *p = parse_n(out.data, out.len);
            CHECK(p != NULL);
            if (p)
                CHECK(applies_to(a->root, p->root, b->root));
            if (pairs[i].ideal) {
                CHECK(ideal != NULL);
                CHECK(out.len <= pairs[i].ideal);
                if (out.len > pairs[i].ideal)
                    fprintf(stderr, "  %zu bytes: %.400s\n", out.len, out.data);
            }
            json_doc_free(p);
        } else {
            CHECK(!"diff failed");
        }
        buf_dispose(&out);
        json_doc_free(a);
        json_doc_free(b);
        json_doc_free(ideal);
    }
}

/* ---- seeded random documents and edits -------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 11) % n);
}

static const char *const scalars[] = {
    "0",
    "1",
    "2",
    "-1",
    "1.5",
    "1.50",
    "1e400",
    "9007199254740993",
    "9007199254740992",
    "true",
    "false",
    "null",
    "\"\"",
    "\"a\"",
    "\"b\"",
    "\"a\\u0000b\"",
    "\"\\ud83d\\ude00\"",
    "\"x\\ny\"",
    L1,
    L2,
    L3,
    L4,
    L5,
};

static const char *const keys[] = {
    "\"a\"", "\"b\"",      "\"c\"",      "\"id\"",      "\"A\"",    "\"a/b\"",  "\"m~n\"", "\"~1\"",
    "\"\"",  "\"k\\\"l\"", "\"i\\\\j\"", "\"\\u00e9\"", "\"t\\t\"", "\"name\"", "\"v\"",
};

#define NSCALARS (sizeof(scalars) / sizeof(scalars[0]))
#define NKEYS    (sizeof(keys) / sizeof(keys[0]))

static int uid;

/* A unique long string: elements worth moving rather than replacing. */
static void gen_unique(struct buf *o)
{
    buf_printf(o, "\"unique element %d with some padding to make it long enough\"", uid++);
}

static void gen_value(struct buf *o, int depth);

static void gen_object(struct buf *o, int depth, int with_id)
{
    buf_putc(o, '{');
    int n = (int)rnd(5);
    if (with_id)
        buf_printf(o, "\"id\":%u%s", rnd(12), n ? "," : "");
    for (int i = 0; i < n; i++) {
        if (i)
            buf_putc(o, ',');
        buf_puts(o, keys[rnd(NKEYS)]);
        buf_putc(o, ':');
        gen_value(o, depth + 1);
    }
    buf_putc(o, '}');
}

static void gen_value(struct buf *o, int depth)
{
    uint32_t r = rnd(100);
    if (depth >= 4 || r < 45) {
        if (r < 10)
            gen_unique(o);
        else
            buf_puts(o, scalars[rnd(NSCALARS)]);
    } else if (r < 75) {
        buf_putc(o, '[');
        int n = (int)rnd(r < 60 ? 6 : 30);
        for (int i = 0; i < n; i++) {
            if (i)
                buf_putc(o, ',');
            uint32_t kind = rnd(4);
            if (kind == 0)
                gen_object(o, depth + 1, 1);
            else if (kind == 1)
                gen_unique(o);
            else
                gen_value(o, depth + 1);
        }
        buf_putc(o, ']');
    } else {
        gen_object(o, depth, 0);
    }
}

/* Writes n with random edits, each node edited with probability rate/1000. */
static void mutate(struct buf *o, const struct json_node *n, int depth, uint32_t rate);

static void mutate_array(struct buf *o, const struct json_node *n, int depth, uint32_t rate)
{
    /* src[i]: the element of n written at position i, or -1 for a new value. */
    size_t cap = (size_t)n->count + 16, len = n->count;
    long *src = malloc(cap * sizeof(*src));
    if (src == NULL)
        return;
    for (size_t i = 0; i < len; i++)
        src[i] = (long)i;
    int edits = rnd(1000) < rate * 4 ? (int)rnd(6) + 1 : 0;
    for (int e = 0; e < edits && len + 2 < cap; e++) {
        uint32_t op = rnd(6);
        if (op == 0) {
            size_t at = rnd((uint32_t)len + 1);
            memmove(src + at + 1, src + at, (len - at) * sizeof(*src));
            src[at] = -1;
            len++;
        } else if (op == 1 && len) {
            size_t at = rnd((uint32_t)len);
            memmove(src + at, src + at + 1, (len - at - 1) * sizeof(*src));
            len--;
        } else if ((op == 2 || op == 3) && len) {
            size_t from = rnd((uint32_t)len);
            long v = src[from];
            memmove(src + from, src + from + 1, (len - from - 1) * sizeof(*src));
            size_t to = rnd((uint32_t)len);
            memmove(src + to + 1, src + to, (len - 1 - to) * sizeof(*src));
            src[to] = v;
        } else if (op == 4 && len) {
            src[len] = src[rnd((uint32_t)len)];
            len++;
        } else if (op == 5 && len > 1 && rnd(4) == 0) {
            for (size_t i = len - 1; i > 0; i--) {
                size_t j = rnd((uint32_t)i + 1);
                long t = src[i];
                src[i] = src[j];
                src[j] = t;
            }
        }
    }
    buf_putc(o, '[');
    for (size_t i = 0; i < len; i++) {
        if (i)
            buf_putc(o, ',');
        if (src[i] < 0)
            gen_value(o, depth + 1);
        else
            mutate(o, n->u.items[src[i]], depth + 1, rate);
    }
    buf_putc(o, ']');
    free(src);
}

static void mutate_object(struct buf *o, const struct json_node *n, int depth, uint32_t rate)
{
    buf_putc(o, '{');
    int first = 1;
    for (uint32_t i = 0; i < n->count; i++) {
        const struct json_member *m = &n->u.members[i];
        uint32_t r = rnd(1000);
        if (r < rate / 2)
            continue; /* removed */
        if (!first)
            buf_putc(o, ',');
        first = 0;
        if (r < rate)
            buf_printf(o, "\"renamed%d\"", uid++);
        else
            buf_append(o, m->kraw, m->kraw_len);
        buf_putc(o, ':');
        mutate(o, m->value, depth + 1, rate);
    }
    if (rnd(1000) < rate * 2) {
        if (!first)
            buf_putc(o, ',');
        buf_printf(o, "\"added%d\":", uid++);
        gen_value(o, depth + 1);
    }
    buf_putc(o, '}');
}

static void mutate(struct buf *o, const struct json_node *n, int depth, uint32_t rate)
{
    uint32_t r = rnd(1000);
    if (r < rate / 4) {
        gen_value(o, depth); /* a new value, often of another type */
        return;
    }
    if (n->type == JSON_ARRAY)
        mutate_array(o, n, depth, rate);
    else if (n->type == JSON_OBJECT)
        mutate_object(o, n, depth, rate);
    else if (r < rate)
        buf_puts(o, scalars[rnd(NSCALARS)]);
    else
        json_write(o, n);
}

/* Diffs a against a mutation of it; checks the patch applies, counts right and is never longer
 * than replacing the whole document. Returns 1 when all holds. */
static int random_round(const struct json_node *a, uint32_t rate)
{
    struct buf bt, out;
    buf_init(&bt, 0);
    buf_init(&out, 0);
    mutate(&bt, a, 0, rate);
    struct json_doc *b = parse_n(bt.data, bt.len), *p = NULL;
    int ok = 0;
    size_t nops = 0;
    if (b == NULL || json_diff(a, b->root, NULL, &out, &nops) != 0)
        goto out;
    p = parse_n(out.data, out.len);
    size_t whole = strlen("[{\"op\":\"replace\",\"path\":\"\",\"value\":}]") + b->root->size;
    ok = p != NULL && p->root->count == nops && out.len <= whole && applies_to(a, p->root, b->root);
out:
    if (!ok) {
        struct buf at;
        buf_init(&at, 0);
        json_write(&at, a);
        fprintf(stderr, "%s: failed round:\n  a %.2000s\n  b %.2000s\n  patch %.2000s\n",
                harness_current, at.data, bt.data ? bt.data : "", out.data ? out.data : "");
        buf_dispose(&at);
    }
    json_doc_free(b);
    json_doc_free(p);
    buf_dispose(&bt);
    buf_dispose(&out);
    return ok;
}

static void test_random_documents(void)
{
    rng = 0x5EED5EED5EEDull;
    int failures = 0, rounds = 0;
    for (int i = 0; i < 3000 && failures < 3; i++) {
        struct buf at;
        buf_init(&at, 0);
        gen_value(&at, 0);
        struct json_doc *a = parse_n(at.data, at.len);
        REQUIRE(a != NULL);
        for (int j = 0; j < 2; j++) {
            rounds++;
            failures += !random_round(a->root, j ? 300 : 100);
        }
        json_doc_free(a);
        buf_dispose(&at);
    }
    CHECK_INT(failures, 0);
    CHECK_INT(rounds, 6000);
}

/* Arrays of long unique elements and identified objects, permuted, with inserts, removes and
 * changes: patches made of moves, so every index formula is exercised. */
static void test_random_permutations(void)
{
    rng = 0xA11A7ull;
    int failures = 0, moves = 0;
    for (int i = 0; i < 3000 && failures < 3; i++) {
        struct buf at;
        buf_init(&at, 0);
        buf_puts(&at, "{\"items\":[");
        int n = (int)rnd(40);
        for (int k = 0; k < n; k++) {
            if (k)
                buf_putc(&at, ',');
            if (rnd(3) == 0)
                buf_printf(&at, "{\"id\":%d,\"pad\":" L1 ",\"v\":%u}", uid++, rnd(3));
            else if (rnd(8) == 0)
                buf_puts(&at, scalars[rnd(NSCALARS)]); /* duplicates */
            else
                gen_unique(&at);
        }
        buf_puts(&at, "]}");
        struct json_doc *a = parse_n(at.data, at.len);
        REQUIRE(a != NULL);
        struct buf bt, out;
        buf_init(&bt, 0);
        buf_init(&out, 0);
        buf_puts(&bt, "{\"items\":");
        mutate_array(&bt, a->root->u.members[0].value, 1, 250);
        buf_putc(&bt, '}');
        struct json_doc *b = parse_n(bt.data, bt.len);
        REQUIRE(b != NULL);
        if (json_diff(a->root, b->root, NULL, &out, NULL) == 0) {
            struct json_doc *p = parse_n(out.data, out.len);
            int ok = p != NULL && applies_to(a->root, p->root, b->root);
            if (!ok) {
                failures++;
                fprintf(stderr, "  a %s\n  b %s\n  patch %s\n", at.data, bt.data, out.data);
            }
            for (const char *s = out.data; (s = strstr(s, "\"op\":\"move\"")) != NULL; s++)
                moves++;
            json_doc_free(p);
        } else {
            failures++;
        }
        json_doc_free(a);
        json_doc_free(b);
        buf_dispose(&at);
        buf_dispose(&bt);
        buf_dispose(&out);
    }
    CHECK_INT(failures, 0);
    CHECK(moves > 1000);
}

/* Edits of real documents from the shared corpora. */
static void test_random_corpora(void)
{
    static const char *const files[] = {
        "github_events.json", "twitter_timeline.json", "google_maps_api_response.json",
        "apache_builds.json", "instruments.json",      "update-center.json",
    };
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/corpora", harness_testdata());
    rng = 0xC0A9A;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        harness_current = files[f];
        struct json_doc *a = load(dir, files[f], "");
        CHECK(a != NULL);
        if (a == NULL)
            continue;
        int failures = 0;
        for (int i = 0; i < 8; i++)
            failures += !random_round(a->root, i < 4 ? 2 : 20);
        CHECK_INT(failures, 0);
        json_doc_free(a);
    }
}

/* ---- pathological shapes: correct output (their time is measured by benchmarks) ---------- */

/* Diffs text a against text b and checks the patch applies; returns the op count or -1. */
static long diff_big(const struct buf *a, const struct buf *b)
{
    struct json_doc *x = parse_n(a->data, a->len), *y = parse_n(b->data, b->len), *p = NULL;
    struct buf out;
    buf_init(&out, 0);
    long ops = -1;
    size_t nops;
    if (x == NULL || y == NULL || json_diff(x->root, y->root, NULL, &out, &nops) != 0)
        goto out;
    p = parse_n(out.data, out.len);
    if (p != NULL && applies_to(x->root, p->root, y->root) && p->root->count == nops)
        ops = (long)nops;
out:
    json_doc_free(x);
    json_doc_free(y);
    json_doc_free(p);
    buf_dispose(&out);
    return ops;
}

static void test_pathological(void)
{
    enum { N = 100000 };
    static uint32_t perm[N];
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);

    /* A long array reversed, then shuffled: replaced whole, at once. */
    buf_putc(&a, '[');
    buf_putc(&b, '[');
    for (uint32_t i = 0; i < N; i++) {
        buf_printf(&a, "%s%u", i ? "," : "", i);
        buf_printf(&b, "%s%u", i ? "," : "", N - 1 - i);
        perm[i] = i;
    }
    buf_putc(&a, ']');
    buf_putc(&b, ']');
    CHECK_INT(diff_big(&a, &b), 1);
    rng = 0xBAD;
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = rnd(i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    b.len = 0;
    buf_putc(&b, '[');
    for (uint32_t i = 0; i < N; i++)
        buf_printf(&b, "%s%u", i ? "," : "", perm[i]);
    buf_putc(&b, ']');
    CHECK_INT(diff_big(&a, &b), 1);

    /* Few distinct values, many duplicates: alternating pairs swapped. */
    a.len = b.len = 0;
    buf_putc(&a, '[');
    buf_putc(&b, '[');
    for (uint32_t i = 0; i < N; i++) {
        buf_puts(&a, i ? (i % 2 ? ",1" : ",0") : "0");
        buf_puts(&b, i ? (i % 2 ? ",0" : ",1") : "1");
    }
    buf_putc(&a, ']');
    buf_putc(&b, ']');
    CHECK(diff_big(&a, &b) >= 1);

    /* Long duplicate elements moved a few at a time: moves are kept. */
    a.len = b.len = 0;
    buf_putc(&a, '[');
    buf_putc(&b, '[');
    for (uint32_t i = 0; i < 20000; i++) {
        const char *v = i % 3 ? L1 : L2;
        const char *w = i % 1000 == 7 ? L3 : v;
        buf_printf(&a, "%s%s", i ? "," : "", v);
        buf_printf(&b, "%s%s", i ? "," : "", w);
    }
    buf_putc(&a, ']');
    buf_putc(&b, ']');
    long ops = diff_big(&a, &b);
    CHECK(ops >= 20 && ops <= 40);

    /* Many identified objects, all changed and shuffled, ids repeated. */
    a.len = b.len = 0;
    buf_putc(&a, '[');
    buf_putc(&b, '[');
    for (uint32_t i = 0; i < 30000; i++) {
        buf_printf(&a, "%s{\"id\":%u,\"v\":%u}", i ? "," : "", i % 100, i);
        buf_printf(&b, "%s{\"id\":%u,\"v\":%u}", i ? "," : "", (i * 7919) % 100, i + 1);
    }
    buf_putc(&a, ']');
    buf_putc(&b, ']');
    CHECK(diff_big(&a, &b) >= 1);

    /* A wide object: members reordered, a tenth renamed, a tenth changed, a tenth removed. */
    a.len = b.len = 0;
    buf_putc(&a, '{');
    buf_putc(&b, '{');
    int first = 1;
    for (uint32_t i = 0; i < 50000; i++) {
        uint32_t j = (i * 7919) % 50000;
        buf_printf(&a, "%s\"k%u\":\"value %u\"", i ? "," : "", i, i);
        if (j % 10 == 3)
            continue;
        buf_puts(&b, first ? "" : ",");
        first = 0;
        if (j % 10 == 1)
            buf_printf(&b, "\"r%u\":\"value %u\"", j, j);
        else if (j % 10 == 2)
            buf_printf(&b, "\"k%u\":\"changed %u\"", j, j);
        else
            buf_printf(&b, "\"k%u\":\"value %u\"", j, j);
    }
    buf_putc(&a, '}');
    buf_putc(&b, '}');
    CHECK_INT(diff_big(&a, &b), 15000);

    /* Nested 900 deep, each level an array holding the next level and a changed long leaf:
     * every level's patch is longer than its replace. */
    a.len = b.len = 0;
    for (int i = 0; i < 900; i++) {
        buf_puts(&a, "[");
        buf_puts(&b, "[");
    }
    buf_puts(&a, "0");
    buf_puts(&b, "1");
    for (int i = 0; i < 900; i++) {
        buf_printf(&a, ",\"leaf a %d padding padding\"]", i);
        buf_printf(&b, ",\"leaf b %d padding padding\"]", i);
    }
    CHECK_INT(diff_big(&a, &b), 1);

    /* Nested 900 deep with many changed numbers at every level. */
    a.len = b.len = 0;
    for (int i = 0; i < 900; i++) {
        buf_puts(&a, "[");
        buf_puts(&b, "[");
    }
    buf_puts(&a, "0");
    buf_puts(&b, "0");
    for (int i = 0; i < 900; i++) {
        for (int k = 0; k < 50; k++) {
            buf_printf(&a, ",%d", k);
            buf_printf(&b, ",%d", k + (k % 10 == 0));
        }
        buf_putc(&a, ']');
        buf_putc(&b, ']');
    }
    CHECK(diff_big(&a, &b) >= 1);
    buf_dispose(&a);
    buf_dispose(&b);
}

int main(void)
{
    RUN(test_equal_documents);
    RUN(test_root_changes);
    RUN(test_object_members);
    RUN(test_object_rename_is_a_move);
    RUN(test_array_head_and_tail);
    RUN(test_array_insert_remove);
    RUN(test_array_moves);
    RUN(test_identity_match);
    RUN(test_positional_pairing);
    RUN(test_replace_if_smaller);
    RUN(test_empty_containers);
    RUN(test_escaping);
    RUN(test_string_escapes);
    RUN(test_fidelity);
    RUN(test_output_buffer);
    RUN(test_deep_nesting);
    RUN(test_table);
    RUN(test_reference_pairs);
    RUN(test_random_documents);
    RUN(test_random_permutations);
    RUN(test_random_corpora);
    RUN(test_pathological);
    return harness_report("test_diff");
}

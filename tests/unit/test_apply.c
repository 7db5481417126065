/* Unit tests of the RFC 6902 applier: the whole json-patch-tests suite (results and atomicity
 * of failures), value fidelity through every op, pointer rules, "test" equality, limits, and the
 * exit codes and output of pollcast apply. */
#include <fcntl.h>
#include <unistd.h>

#include "cli.h"
#include "harness.h"
#include "json/apply.h"
#include "json/json.h"
#include "json/pointer.h"

static struct json_doc *parse(const char *s)
{
    return json_parse(s, strlen(s), NULL, NULL);
}

/* Converts and serializes a fidelity node; returns a malloc'd string or NULL. */
static char *to_text(const cJSON *c)
{
    struct buf b;
    buf_init(&b, 0);
    if (json_cjson_write(&b, c) != 0) {
        buf_dispose(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* Applies patch text to document text. Returns the apply result (0/-1), the compact document
 * afterwards in *out (malloc'd; the unchanged one after a failure) and the error in *err.
 * Returns -2 when the inputs do not parse or convert. */
static int apply_text(const char *doc, const char *patch, char **out, struct json_patch_error *err)
{
    *out = NULL;
    struct json_doc *d = parse(doc), *p = parse(patch);
    cJSON *c = d ? json_to_cjson(d->root, NULL, 0) : NULL;
    int rc = -2;
    if (c != NULL && p != NULL) {
        rc = json_patch_apply(&c, p->root, NULL, err);
        *out = to_text(c);
    }
    cJSON_Delete(c);
    json_doc_free(d);
    json_doc_free(p);
    return rc;
}

/* The result of a patch that must apply, or "FAILED: reason" (static storage). */
static const char *applied(const char *doc, const char *patch)
{
    static char result[4096];
    struct json_patch_error err;
    char *out;
    int rc = apply_text(doc, patch, &out, &err);
    if (rc == 0)
        snprintf(result, sizeof(result), "%s", out ? out : "(null)");
    else if (rc == -1)
        snprintf(result, sizeof(result), "FAILED: %s", err.msg);
    else
        snprintf(result, sizeof(result), "BAD INPUT");
    free(out);
    return result;
}

/* The error message of a patch that must fail without changing the document, or "APPLIED". */
static const char *refused(const char *doc, const char *patch)
{
    static char result[512];
    struct json_patch_error err;
    char *out;
    struct json_doc *d = parse(doc);
    char *before = NULL;
    if (d != NULL) {
        cJSON *c = json_to_cjson(d->root, NULL, 0);
        before = c ? to_text(c) : NULL;
        cJSON_Delete(c);
        json_doc_free(d);
    }
    int rc = apply_text(doc, patch, &out, &err);
    if (rc == -1 && before != NULL && out != NULL && strcmp(before, out) == 0)
        snprintf(result, sizeof(result), "%s", err.msg);
    else if (rc == -1)
        snprintf(result, sizeof(result), "CHANGED THE DOCUMENT: %s", out ? out : "(null)");
    else
        snprintf(result, sizeof(result), rc == 0 ? "APPLIED" : "BAD INPUT");
    free(before);
    free(out);
    return result;
}

/* ---- the json-patch-tests suite ---- */

static void run_suite_file(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/json-patch-tests/%s", harness_testdata(), name);
    size_t len;
    char *text = harness_slurp(path, &len);
    REQUIRE(text != NULL);
    struct json_error perr;
    struct json_doc *suite = json_parse(text, len, NULL, &perr);
    free(text);
    REQUIRE(suite != NULL);
    REQUIRE(suite->root->type == JSON_ARRAY);
    int run = 0, passed = 0, skipped = 0;
    for (uint32_t i = 0; i < suite->root->count; i++) {
        const struct json_node *rec = suite->root->u.items[i];
        const struct json_node *disabled = json_object_get(rec, "disabled", 8);
        if (disabled != NULL && disabled->type == JSON_TRUE) {
            skipped++;
            continue;
        }
        const struct json_node *doc = json_object_get(rec, "doc", 3);
        const struct json_node *patch = json_object_get(rec, "patch", 5);
        const struct json_node *expected = json_object_get(rec, "expected", 8);
        const struct json_node *error = json_object_get(rec, "error", 5);
        const struct json_node *comment = json_object_get(rec, "comment", 7);
        run++;
        if (doc == NULL || patch == NULL || (expected == NULL) == (error == NULL)) {
            fprintf(stderr, "%s record %u: malformed record\n", name, i);
            CHECK(0);
            continue;
        }
        cJSON *c = json_to_cjson(doc, NULL, 0);
        CHECK(c != NULL);
        if (c == NULL)
            continue;
        cJSON *root_before = c;
        char *before = to_text(c);
        struct json_patch_error err;
        int rc = json_patch_apply(&c, patch, NULL, &err);
        char *after = to_text(c);
        int ok = 0;
        if (expected != NULL && rc == 0 && after != NULL) {
            struct json_doc *got = parse(after);
            ok = got != NULL && json_equal(got->root, expected);
            json_doc_free(got);
        } else if (error != NULL && rc == -1) {
            /* Atomic: the same root item and the same bytes. */
            ok = c == root_before && before != NULL && after != NULL && strcmp(before, after) == 0;
        }
        if (ok) {
            passed++;
        } else {
            fprintf(stderr, "%s record %u (%.*s): rc %d, got %s (%s)\n", name, i,
                    comment ? (int)comment->len : 6, comment ? comment->text : "(none)", rc,
                    after ? after : "(null)", rc ? err.msg : "applied");
            CHECK(0);
        }
        free(before);
        free(after);
        cJSON_Delete(c);
    }
    fprintf(stderr, "json-patch-tests %s: %d/%d passed (%d disabled skipped)\n", name, passed, run,
            skipped);
    CHECK(run > 0);
    CHECK_INT(passed, run);
    json_doc_free(suite);
}

static void test_suite_tests_json(void)
{
    run_suite_file("tests.json");
}

static void test_suite_spec_tests_json(void)
{
    run_suite_file("spec_tests.json");
}

/* ---- fidelity ---- */

static void test_fidelity_through_every_op(void)
{
    const char *doc = "{\"big\":9007199254740993,\"inf\":1e400,\"dec\":1.10,"
                      "\"nul\":\"a\\u0000b\",\"emoji\":\"\\ud83d\\ude00 \xF0\x9F\x98\x80\","
                      "\"Key\":1,\"key\":2,\"arr\":[-0,1E+2]}";
    CHECK_STR(applied(doc, "[]"),
              "{\"big\":9007199254740993,\"inf\":1e400,\"dec\":1.10,"
              "\"nul\":\"a\\u0000b\",\"emoji\":\"\\ud83d\\ude00 \xF0\x9F\x98\x80\","
              "\"Key\":1,\"key\":2,\"arr\":[-0,1E+2]}");
    CHECK_STR(applied(doc, "[{\"op\":\"copy\",\"from\":\"/big\",\"path\":\"/arr/0\"},"
                           "{\"op\":\"move\",\"from\":\"/inf\",\"path\":\"/arr/-\"},"
                           "{\"op\":\"replace\",\"path\":\"/dec\",\"value\":18446744073709551617},"
                           "{\"op\":\"add\",\"path\":\"/KEY\",\"value\":\"x\\u0000y\"},"
                           "{\"op\":\"move\",\"from\":\"/nul\",\"path\":\"/kEy\"},"
                           "{\"op\":\"copy\",\"from\":\"/emoji\",\"path\":\"/Key\"},"
                           "{\"op\":\"test\",\"path\":\"/key\",\"value\":2.0}]"),
              "{\"big\":9007199254740993,\"dec\":18446744073709551617,"
              "\"emoji\":\"\\ud83d\\ude00 \xF0\x9F\x98\x80\","
              "\"Key\":\"\\ud83d\\ude00 \xF0\x9F\x98\x80\",\"key\":2,"
              "\"arr\":[9007199254740993,-0,1E+2,1e400],\"KEY\":\"x\\u0000y\","
              "\"kEy\":\"a\\u0000b\"}");
    /* A replaced member keeps its place; an added one goes last. */
    CHECK_STR(applied("{\"a\":1,\"b\":2,\"c\":3}",
                      "[{\"op\":\"add\",\"path\":\"/a\",\"value\":0.10},"
                      "{\"op\":\"replace\",\"path\":\"/b\",\"value\":[1.0]},"
                      "{\"op\":\"add\",\"path\":\"/B\",\"value\":{\"\\u00e9\":1e-7}}]"),
              "{\"a\":0.10,\"b\":[1.0],\"c\":3,\"B\":{\"\xC3\xA9\":1e-7}}");
    /* Escaped keys come out escaped once: as cJSON holds them decoded. */
    CHECK_STR(applied("{\"a\\\"b\\\\c\\u0001\":1}", "[{\"op\":\"add\",\"path\":\"/\\\"\","
                                                    "\"value\":2}]"),
              "{\"a\\\"b\\\\c\\u0001\":1,\"\\\"\":2}");
}

static void test_nul_keys_refused(void)
{
    struct json_doc *d = parse("{\"ok\":{\"a\\u0000b\":1}}");
    REQUIRE(d != NULL);
    char msg[128] = "";
    CHECK(json_to_cjson(d->root, msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "NUL") != NULL);
    json_doc_free(d);
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":\"/x\",\"value\":{\"\\u0000\":1}}]"),
              "op 0: value: member name holds a NUL character (\\u0000)");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":\"/a\\u0000b\",\"value\":1}]"),
              "op 0: path /a?b: a member name cannot hold a NUL character");
    CHECK_STR(refused("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/a\\u0000b\"}]"),
              "op 0: path /a?b: no such member");
}

/* ---- atomicity ---- */

static void test_atomic_on_third_op(void)
{
    const char *doc = "{\"a\":[1,2,3],\"b\":{\"x\":1,\"y\":2},\"n\":12345678901234567890}";
    /* Two ops that change the document, then one that fails. */
    CHECK_STR(refused(doc, "[{\"op\":\"remove\",\"path\":\"/a/1\"},"
                           "{\"op\":\"add\",\"path\":\"/b/z\",\"value\":3},"
                           "{\"op\":\"remove\",\"path\":\"/nope\"}]"),
              "op 2: path /nope: no such member");
    /* Every kind of change, including replacing the root, then a failing test. */
    CHECK_STR(refused(doc, "[{\"op\":\"move\",\"from\":\"/a/0\",\"path\":\"/a/2\"},"
                           "{\"op\":\"replace\",\"path\":\"/b/x\",\"value\":9},"
                           "{\"op\":\"copy\",\"from\":\"/b\",\"path\":\"/a/0\"},"
                           "{\"op\":\"move\",\"from\":\"/b\",\"path\":\"/c\"},"
                           "{\"op\":\"add\",\"path\":\"/b\",\"value\":[]},"
                           "{\"op\":\"remove\",\"path\":\"/n\"},"
                           "{\"op\":\"move\",\"from\":\"/a\",\"path\":\"\"},"
                           "{\"op\":\"add\",\"path\":\"/-\",\"value\":1},"
                           "{\"op\":\"replace\",\"path\":\"\",\"value\":{\"new\":true}},"
                           "{\"op\":\"add\",\"path\":\"\",\"value\":[0]},"
                           "{\"op\":\"test\",\"path\":\"/0\",\"value\":1}]"),
              "op 10: path /0: test failed: the value differs");
    /* Same items afterwards: pointers into the tree stay valid. */
    struct json_doc *d = parse(doc), *p = parse("[{\"op\":\"remove\",\"path\":\"/b/x\"},"
                                                "{\"op\":\"replace\",\"path\":\"\",\"value\":1},"
                                                "{\"op\":\"test\",\"path\":\"\",\"value\":2}]");
    REQUIRE(d != NULL && p != NULL);
    cJSON *c = json_to_cjson(d->root, NULL, 0);
    REQUIRE(c != NULL);
    cJSON *root = c, *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(c, "b"), "x");
    struct json_patch_error err;
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), -1);
    CHECK_INT(err.op, 2);
    CHECK(c == root);
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(c, "b"), "x") == x);
    char *s = to_text(c);
    CHECK_STR(s, "{\"a\":[1,2,3],\"b\":{\"x\":1,\"y\":2},\"n\":12345678901234567890}");
    free(s);
    cJSON_Delete(c);
    json_doc_free(d);
    json_doc_free(p);
}

/* ---- ops and pointers ---- */

static void test_ops(void)
{
    CHECK_STR(applied("[1,2]", "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]"), "[1,2,3]");
    CHECK_STR(applied("[1,2]", "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0}]"), "[0,1,2]");
    CHECK_STR(applied("[1,2]", "[{\"op\":\"add\",\"path\":\"/-\",\"value\":[]}]"), "[1,2,[]]");
    CHECK_STR(applied("[]", "[{\"op\":\"add\",\"path\":\"/-\",\"value\":1}]"), "[1]");
    CHECK_STR(applied("[1,2,3]", "[{\"op\":\"remove\",\"path\":\"/1\"}]"), "[1,3]");
    CHECK_STR(applied("[1,2,3]", "[{\"op\":\"replace\",\"path\":\"/2\",\"value\":4}]"), "[1,2,4]");
    CHECK_STR(applied("[1,2,3]", "[{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/2\"}]"), "[2,3,1]");
    CHECK_STR(applied("[1,2,3]", "[{\"op\":\"move\",\"from\":\"/2\",\"path\":\"/0\"}]"), "[3,1,2]");
    CHECK_STR(applied("[1,2,3]", "[{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/-\"}]"), "[2,3,1]");
    CHECK_STR(applied("[1,[2]]", "[{\"op\":\"copy\",\"from\":\"/1\",\"path\":\"/0\"}]"),
              "[[2],1,[2]]");
    CHECK_STR(applied("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"/c\"}]"),
              "{\"a\":{},\"c\":1}");
    CHECK_STR(applied("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]"),
              "{\"a\":{\"b\":1}}");
    CHECK_STR(applied("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"\"}]"),
              "{\"b\":1}");
    CHECK_STR(applied("{\"a\":{\"b\":1}}", "[{\"op\":\"copy\",\"from\":\"\",\"path\":\"/a/c\"}]"),
              "{\"a\":{\"b\":1,\"c\":{\"a\":{\"b\":1}}}}");
    CHECK_STR(applied("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/ab\"}]"),
              "{\"ab\":1}");
    CHECK_STR(applied("5", "[{\"op\":\"replace\",\"path\":\"\",\"value\":\"s\"}]"), "\"s\"");
    CHECK_STR(applied("{\"a/b\":{\"m~n\":1},\"\":2}",
                      "[{\"op\":\"copy\",\"from\":\"/a~1b/m~0n\",\"path\":\"/~01\"},"
                      "{\"op\":\"test\",\"path\":\"/\",\"value\":2}]"),
              "{\"a/b\":{\"m~n\":1},\"\":2,\"~1\":1}");
    /* Extra members are ignored; "value" may be null. */
    CHECK_STR(
        applied("{}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":null,\"from\":7,\"x\":[]}]"),
        "{\"a\":null}");
    CHECK_STR(applied("{}", "[]"), "{}");
}

static void test_errors(void)
{
    CHECK_STR(refused("[1]", "[{\"op\":\"add\",\"path\":\"/2\",\"value\":3}]"),
              "op 0: path /2: array index out of range");
    CHECK_STR(refused("[1]", "[{\"op\":\"add\",\"path\":\"/01\",\"value\":3}]"),
              "op 0: path /01: invalid array index");
    CHECK_STR(refused("[1]", "[{\"op\":\"add\",\"path\":\"/-1\",\"value\":3}]"),
              "op 0: path /-1: invalid array index");
    CHECK_STR(refused("[1]", "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":3}]"),
              "op 0: path /1: array index out of range");
    CHECK_STR(refused("[1]", "[{\"op\":\"remove\",\"path\":\"/-\"}]"),
              "op 0: path /-: array index out of range");
    CHECK_STR(refused("{\"a\":[1]}", "[{\"op\":\"remove\",\"path\":\"/a/5/b\"}]"),
              "op 0: path /a/5/b: array index out of range at /a/5");
    CHECK_STR(refused("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]"),
              "op 0: path /a/b: parent is not an object or array");
    CHECK_STR(refused("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":1}]"),
              "op 0: path /a/b/c: /a is not an object or array");
    CHECK_STR(refused("1", "[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]"),
              "op 0: path /a/b: the document is not an object or array");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]"),
              "op 0: path a: invalid JSON pointer");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":\"/~2\",\"value\":1}]"),
              "op 0: path /~2: invalid JSON pointer");
    CHECK_STR(refused("{}", "[{\"op\":\"remove\",\"path\":\"\"}]"),
              "op 0: path : the whole document cannot be removed");
    CHECK_STR(refused("{\"a\":{}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b\"}]"),
              "op 0: path /a/b: cannot move a value into itself");
    CHECK_STR(refused("{\"a\":{}}", "[{\"op\":\"move\",\"from\":\"\",\"path\":\"/a/b\"}]"),
              "op 0: path /a/b: cannot move a value into itself");
    CHECK_STR(refused("{}", "[{\"op\":\"move\",\"from\":\"/x\",\"path\":\"/y\"}]"),
              "op 0: from /x: no such member");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"value\":1}]"), "op 0: missing \"path\"");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":\"/a\"}]"), "op 0: missing \"value\"");
    CHECK_STR(refused("{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\"}]"),
              "op 0: missing \"from\"");
    CHECK_STR(refused("{}", "[{\"path\":\"/a\",\"value\":1}]"), "op 0: missing \"op\"");
    CHECK_STR(refused("{}", "[{\"op\":\"add\",\"path\":null,\"value\":1}]"),
              "op 0: \"path\" must be a string, not null");
    CHECK_STR(refused("{}", "[{\"op\":\"spam\",\"path\":\"/a\"}]"), "op 0: unknown op \"spam\"");
    CHECK_STR(refused("{}", "[{\"op\":\"ADD\",\"path\":\"/a\",\"value\":1}]"),
              "op 0: unknown op \"ADD\"");
    CHECK_STR(refused("{}", "[[\"add\"]]"), "op 0: an operation must be an object, not array");
    CHECK_STR(refused("{}", "{\"op\":\"add\",\"path\":\"/a\",\"value\":1}"),
              "patch is not a JSON array (found object)");
    CHECK_STR(refused("{\"a\":\"10\"}", "[{\"op\":\"test\",\"path\":\"/a\",\"value\":10}]"),
              "op 0: path /a: test failed: the value differs");
    struct json_patch_error err;
    char *out;
    CHECK_INT(apply_text("{}", "{}", &out, &err), -1);
    CHECK_INT(err.op, -1);
    free(out);
}

/* ---- test equality ---- */

static int equal_text(const char *a, const char *b)
{
    struct json_doc *x = parse(a), *y = parse(b);
    cJSON *cx = x ? json_to_cjson(x->root, NULL, 0) : NULL;
    cJSON *cy = y ? json_to_cjson(y->root, NULL, 0) : NULL;
    int rc = cx && cy ? json_cjson_equal(cx, cy) : -2;
    cJSON_Delete(cx);
    cJSON_Delete(cy);
    json_doc_free(x);
    json_doc_free(y);
    return rc;
}

static void test_equality(void)
{
    CHECK_INT(equal_text("1", "1.0"), 1);
    CHECK_INT(equal_text("1", "1e0"), 1);
    CHECK_INT(equal_text("1", "10e-1"), 1);
    CHECK_INT(equal_text("100", "1E+2"), 1);
    CHECK_INT(equal_text("0.0012", "12e-4"), 1);
    CHECK_INT(equal_text("-0", "0"), 1);
    CHECK_INT(equal_text("0.000", "-0e5"), 1);
    CHECK_INT(equal_text("1e400", "10e399"), 1);
    CHECK_INT(equal_text("1e400", "1e401"), 0);
    CHECK_INT(equal_text("9007199254740993", "9007199254740992"), 0);
    CHECK_INT(equal_text("9007199254740993", "9007199254740993.000"), 1);
    CHECK_INT(equal_text("1.10", "1.1"), 1);
    CHECK_INT(equal_text("1.10", "1.01"), 0);
    CHECK_INT(equal_text("-1", "1"), 0);
    CHECK_INT(equal_text("12", "1.2"), 0);
    CHECK_INT(equal_text("1e99999999999999999999", "1e99999999999999999999"), 1);
    CHECK_INT(equal_text("1e99999999999999999999", "10e99999999999999999998"), 0);
    CHECK_INT(equal_text("\"A\"", "\"\\u0041\""), 1);
    CHECK_INT(equal_text("\"a\\u0000b\"", "\"a\\u0000c\""), 0);
    CHECK_INT(equal_text("\"a\\u0000b\"", "\"a\""), 0);
    CHECK_INT(equal_text("\"\\ud83d\\ude00\"", "\"\xF0\x9F\x98\x80\""), 1);
    CHECK_INT(equal_text("\"1\"", "1"), 0);
    CHECK_INT(equal_text("null", "false"), 0);
    CHECK_INT(equal_text("[1,2]", "[2,1]"), 0);
    CHECK_INT(equal_text("[1,2]", "[1,2,3]"), 0);
    CHECK_INT(equal_text("{\"a\":1,\"b\":[{}]}", "{\"b\":[{}],\"a\":1.0}"), 1);
    CHECK_INT(equal_text("{\"a\":1}", "{\"A\":1}"), 0);
    CHECK_INT(equal_text("{\"a\":1}", "{\"a\":1,\"b\":2}"), 0);
    /* A wide object takes the sorted path. */
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    buf_putc(&a, '{');
    buf_putc(&b, '{');
    for (int i = 0; i < 100; i++) {
        buf_printf(&a, "%s\"k%d\":%d", i ? "," : "", i, i);
        buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", 99 - i, 99 - i);
    }
    buf_putc(&a, '}');
    buf_putc(&b, '}');
    CHECK_INT(equal_text(a.data, b.data), 1);
    b.data[b.len - 2] = '1'; /* "k0":0 becomes "k0":1 */
    CHECK_INT(equal_text(a.data, b.data), 0);
    buf_dispose(&a);
    buf_dispose(&b);
    /* Plain cJSON items compare too. */
    cJSON *p = cJSON_Parse("{\"s\":\"A\",\"n\":[1.5,2]}");
    struct json_doc *d = parse("{\"n\":[15e-1,2.0],\"s\":\"\\u0041\"}");
    REQUIRE(p != NULL && d != NULL);
    cJSON *q = json_to_cjson(d->root, NULL, 0);
    CHECK_INT(json_cjson_equal(p, q), 1);
    cJSON_Delete(p);
    cJSON_Delete(q);
    json_doc_free(d);
}

/* ---- limits and serialization ---- */

/* "[[[...]]]" nested n deep, as a malloc'd string. */
static char *nested(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    for (int i = 0; i < n; i++) {
        s[i] = '[';
        s[n + i] = ']';
    }
    s[2 * n] = '\0';
    return s;
}

static void test_depth_limits(void)
{
    char *deep = nested(JSON_CJSON_MAX_DEPTH);
    struct json_doc *d = parse(deep);
    REQUIRE(d != NULL);
    cJSON *c = json_to_cjson(d->root, NULL, 0);
    CHECK(c != NULL);
    char *s = c ? to_text(c) : NULL;
    CHECK(s != NULL && strcmp(s, deep) == 0);
    free(s);
    /* One more level at the bottom is refused, by every op that can deepen. */
    struct buf inner, patch;
    buf_init(&inner, 0);
    buf_init(&patch, 0);
    for (int i = 0; i < JSON_CJSON_MAX_DEPTH - 1; i++)
        buf_puts(&inner, "/0");
    struct json_patch_error err;
    buf_printf(&patch, "[{\"op\":\"add\",\"path\":\"%s/-\",\"value\":[]}]", inner.data);
    struct json_doc *p = parse(patch.data);
    REQUIRE(p != NULL);
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), -1);
    CHECK(strstr(err.msg, "value: nesting deeper than 1000") != NULL);
    json_doc_free(p);
    patch.len = 0;
    buf_printf(&patch, "[{\"op\":\"add\",\"path\":\"%s/-\",\"value\":{}}]", inner.data + 2);
    p = parse(patch.data);
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), 0);
    json_doc_free(p);
    patch.len = 0;
    buf_printf(&patch, "[{\"op\":\"copy\",\"from\":\"%s\",\"path\":\"%s/-\"}]", inner.data + 2,
               inner.data);
    p = parse(patch.data);
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), -1);
    CHECK(strstr(err.msg, "the copy would nest deeper than 1000") != NULL);
    json_doc_free(p);
    patch.len = 0;
    buf_printf(&patch, "[{\"op\":\"move\",\"from\":\"%s/1\",\"path\":\"%s/-\"}]", inner.data + 2,
               inner.data);
    p = parse(patch.data);
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), -1);
    CHECK(strstr(err.msg, "the move would nest deeper than 1000") != NULL);
    json_doc_free(p);
    /* Within bounds with max_depth lowered: the same document is refused at once. */
    struct json_patch_opts lo = {10, 0};
    p = parse("[{\"op\":\"add\",\"path\":\"/0/0/0/0/0/0/0/0/0/0/-\",\"value\":1}]");
    CHECK_INT(json_patch_apply(&c, p->root, &lo, &err), 0);
    json_doc_free(p);
    p = parse("[{\"op\":\"add\",\"path\":\"/0/0/0/0/0/0/0/0/0/-\",\"value\":[]}]");
    CHECK_INT(json_patch_apply(&c, p->root, &lo, &err), -1);
    json_doc_free(p);
    buf_dispose(&inner);
    buf_dispose(&patch);
    /* Moving up is fine. */
    p = parse("[{\"op\":\"move\",\"from\":\"/0/0\",\"path\":\"\"}]");
    CHECK_INT(json_patch_apply(&c, p->root, NULL, &err), 0);
    json_doc_free(p);
    cJSON_Delete(c);
    json_doc_free(d);
    free(deep);
    /* A tree deeper than the bound is refused by conversion, writing and comparison. */
    deep = nested(JSON_CJSON_MAX_DEPTH + 1);
    struct json_parse_opts po = {.max_depth = JSON_CJSON_MAX_DEPTH + 10};
    d = json_parse(deep, strlen(deep), &po, NULL);
    REQUIRE(d != NULL);
    char msg[128];
    CHECK(json_to_cjson(d->root, msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "deeper") != NULL);
    cJSON *big = cJSON_CreateArray();
    for (int i = 0; i < JSON_CJSON_MAX_DEPTH; i++) {
        cJSON *in = cJSON_CreateArray();
        cJSON_AddItemToArray(in, big);
        big = in;
    }
    struct buf out;
    buf_init(&out, 0);
    CHECK_INT(json_cjson_write(&out, big), -1);
    CHECK_INT(out.len, 0);
    CHECK_INT(json_cjson_equal(big, big), -1);
    buf_dispose(&out);
    cJSON_Delete(big);
    json_doc_free(d);
    free(deep);
}

static void test_copy_budget(void)
{
    /* Each copy doubles the document: 40 of them would need 2^40 values. */
    struct buf patch;
    buf_init(&patch, 0);
    buf_putc(&patch, '[');
    for (int i = 0; i < 40; i++)
        buf_printf(&patch, "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"/%d\"}", i ? "," : "", i);
    buf_putc(&patch, ']');
    CHECK(strstr(refused("{}", patch.data), "copies exceed") != NULL);
    buf_dispose(&patch);
    /* A custom budget. */
    struct json_doc *d = parse("[[1,2,3]]");
    struct json_doc *p = parse("[{\"op\":\"copy\",\"from\":\"/0\",\"path\":\"/-\"},"
                               "{\"op\":\"copy\",\"from\":\"/0\",\"path\":\"/-\"}]");
    REQUIRE(d != NULL && p != NULL);
    cJSON *c = json_to_cjson(d->root, NULL, 0);
    struct json_patch_opts opts = {0, 7};
    struct json_patch_error err;
    CHECK_INT(json_patch_apply(&c, p->root, &opts, &err), -1);
    CHECK_STR(err.msg, "op 1: copies exceed 7 values");
    opts.max_copy_nodes = 8;
    CHECK_INT(json_patch_apply(&c, p->root, &opts, &err), 0);
    char *s = to_text(c);
    CHECK_STR(s, "[[1,2,3],[1,2,3],[1,2,3]]");
    free(s);
    cJSON_Delete(c);
    json_doc_free(d);
    json_doc_free(p);
}

static void test_write_plain_items(void)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "i", 42);
    cJSON_AddNumberToObject(c, "f", 0.5);
    cJSON_AddNumberToObject(c, "nan", 0.0 / 0.0);
    cJSON_AddStringToObject(c, "s", "q\"\n\x01");
    cJSON_AddItemToObject(c, "\xED\xA0\x80", cJSON_CreateTrue()); /* a lone surrogate, WTF-8 */
    char *s = to_text(c);
    CHECK_STR(s, "{\"i\":42,\"f\":0.5,\"nan\":null,\"s\":\"q\\\"\\n\\u0001\",\"\\ud800\":true}");
    free(s);
    cJSON_Delete(c);
}

static void test_apply_node(void)
{
    struct json_doc *d = parse("{\"a\":1e400}"), *p = parse("[{\"op\":\"add\",\"path\":\"/b\","
                                                            "\"value\":0.10}]");
    REQUIRE(d != NULL && p != NULL);
    struct buf out;
    buf_init(&out, 0);
    buf_puts(&out, "x");
    struct json_patch_error err;
    CHECK_INT(json_patch_apply_node(d->root, p->root, &out, &err), 0);
    CHECK_STR(out.data, "x{\"a\":1e400,\"b\":0.10}");
    json_doc_free(p);
    p = parse("[{\"op\":\"remove\",\"path\":\"/c\"}]");
    out.len = 1;
    CHECK_INT(json_patch_apply_node(d->root, p->root, &out, &err), -1);
    CHECK_INT(out.len, 1);
    CHECK_INT(err.op, 0);
    buf_dispose(&out);
    json_doc_free(d);
    json_doc_free(p);
}

/* ---- random op sequences: one at a time, all at once, and rolled back ---- */

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)(rng % n) : 0;
}

/* Checks cJSON's list invariants on every container: prev links, the first child's prev being
 * the last child, keys on object members only. */
static int tree_ok(const cJSON *c)
{
    if (!cJSON_IsArray(c) && !cJSON_IsObject(c))
        return c->child == NULL;
    const cJSON *last = NULL;
    for (const cJSON *k = c->child; k != NULL; k = k->next) {
        if (k != c->child && k->prev != last)
            return 0;
        if (cJSON_IsObject(c) != (k->string != NULL) || !tree_ok(k))
            return 0;
        last = k;
    }
    return c->child == NULL || c->child->prev == last;
}

#define MAX_PATHS 512

/* Collects the pointer of every value under c (c's own is path). */
static void collect(const cJSON *c, struct buf *path, char **out, int *n)
{
    if (*n >= MAX_PATHS)
        return;
    out[(*n)++] = strdup(path->data ? path->data : "");
    size_t save = path->len, i = 0;
    for (const cJSON *k = c->child; k != NULL; k = k->next, i++) {
        if (cJSON_IsObject(c))
            json_pointer_append(path, k->string, strlen(k->string));
        else
            json_pointer_append_index(path, i);
        collect(k, path, out, n);
        buf_truncate(path, save);
    }
}

/* The decimal value of an index segment (already known to be digits). */
static int atoi_safe(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

static const cJSON *at_pointer(const cJSON *doc, const char *p)
{
    const char *end = p + strlen(p);
    struct buf seg;
    buf_init(&seg, 0);
    while (doc != NULL && json_pointer_next(&p, end, &seg) == 1) {
        if (cJSON_IsObject(doc))
            doc = cJSON_GetObjectItemCaseSensitive(doc, seg.data);
        else
            doc = cJSON_GetArrayItem(doc, atoi_safe(seg.data));
    }
    buf_dispose(&seg);
    return doc;
}

/* Appends a random target for add, move or copy: a new or existing member, an index up to one
 * past the size, "-", or the whole document. */
static void random_target(const cJSON *doc, char **paths, int n, struct buf *op)
{
    static const char *keys[] = {"a", "A", "~", "/", "", "m~n/", "\xC3\xA9"};
    const char *base = paths[rnd((uint32_t)n)];
    const cJSON *t = at_pointer(doc, base);
    struct buf p;
    buf_init(&p, 0);
    buf_puts(&p, base);
    if (rnd(8) == 0) {
        p.len = 0;
    } else if (cJSON_IsObject(t)) {
        const char *k = keys[rnd(sizeof(keys) / sizeof(keys[0]))];
        json_pointer_append(&p, k, strlen(k));
    } else if (cJSON_IsArray(t)) {
        uint32_t size = (uint32_t)cJSON_GetArraySize(t);
        if (rnd(4) == 0)
            buf_puts(&p, "/-");
        else
            json_pointer_append_index(&p, rnd(size + 2));
    }
    json_write_string(op, p.data ? p.data : "", p.len);
    buf_dispose(&p);
}

/* Appends one random op, mostly valid against doc. */
static void random_op(const cJSON *doc, struct buf *op)
{
    static const char *values[] = {"1",    "1e400", "9007199254740993", "\"a\\u0000b\"",
                                   "null", "1.10",  "[1,{\"x\":2}]",    "{\"k\":[],\"K\":{}}"};
    char *paths[MAX_PATHS];
    int n = 0;
    struct buf path;
    buf_init(&path, 0);
    collect(doc, &path, paths, &n);
    buf_dispose(&path);
    const char *some = paths[rnd((uint32_t)n)];
    const char *value = values[rnd(sizeof(values) / sizeof(values[0]))];
    switch (rnd(6)) {
    case 0:
        buf_puts(op, "{\"op\":\"add\",\"path\":");
        random_target(doc, paths, n, op);
        buf_printf(op, ",\"value\":%s}", value);
        break;
    case 1:
        buf_puts(op, "{\"op\":\"remove\",\"path\":");
        json_write_string(op, some, strlen(some));
        buf_putc(op, '}');
        break;
    case 2:
        buf_puts(op, "{\"op\":\"replace\",\"path\":");
        json_write_string(op, some, strlen(some));
        buf_printf(op, ",\"value\":%s}", value);
        break;
    case 3:
    case 4:
        buf_printf(op, "{\"op\":\"%s\",\"from\":", rnd(2) ? "move" : "copy");
        json_write_string(op, some, strlen(some));
        buf_puts(op, ",\"path\":");
        random_target(doc, paths, n, op);
        buf_putc(op, '}');
        break;
    default:
        buf_puts(op, "{\"op\":\"test\",\"path\":");
        json_write_string(op, some, strlen(some));
        buf_puts(op, ",\"value\":");
        if (rnd(2))
            json_cjson_write(op, at_pointer(doc, some));
        else
            buf_puts(op, value);
        buf_putc(op, '}');
        break;
    }
    for (int i = 0; i < n; i++)
        free(paths[i]);
}

/* Applies patch text to *c; returns the apply result, or -2 when the text does not parse. */
static int apply_patch_text(cJSON **c, const char *patch)
{
    struct json_doc *p = parse(patch);
    if (p == NULL)
        return -2;
    struct json_patch_error err;
    int rc = json_patch_apply(c, p->root, NULL, &err);
    json_doc_free(p);
    return rc;
}

static cJSON *from_text(const char *s)
{
    struct json_doc *d = parse(s);
    cJSON *c = d ? json_to_cjson(d->root, NULL, 0) : NULL;
    json_doc_free(d);
    return c;
}

static void test_random_sequences(void)
{
    static const char *bases[] = {"{\"a\":[1,2,{\"b\":\"x\"}],\"A\":{\"~\":[],\"/\":null},\"\":0}",
                                  "[[],[1,[2,[3]]],{\"id\":12345678901234567890}]", "{}", "[]",
                                  "\"scalar\""};
    int applied_ops = 0, failed_ops = 0;
    for (int round = 0; round < 400; round++) {
        const char *base = bases[round % (int)(sizeof(bases) / sizeof(bases[0]))];
        cJSON *cur = from_text(base);
        REQUIRE(cur != NULL);
        char *base_text = to_text(cur);
        struct buf all, op;
        buf_init(&all, 0);
        buf_init(&op, 0);
        buf_putc(&all, '[');
        for (int i = 0; i < 10; i++) {
            op.len = 0;
            buf_putc(&op, '[');
            random_op(cur, &op);
            buf_putc(&op, ']');
            char *before = to_text(cur);
            cJSON *root = cur;
            int rc = apply_patch_text(&cur, op.data);
            CHECK(rc == 0 || rc == -1);
            CHECK(tree_ok(cur));
            if (rc == 0) {
                applied_ops++;
                buf_printf(&all, "%s%.*s", all.len > 1 ? "," : "", (int)op.len - 2, op.data + 1);
            } else {
                failed_ops++;
                char *after = to_text(cur);
                CHECK(cur == root);
                CHECK(after != NULL && before != NULL && strcmp(after, before) == 0);
                free(after);
            }
            free(before);
        }
        buf_putc(&all, ']');
        char *want = to_text(cur);
        /* The successful ops at once give the same document... */
        cJSON *again = from_text(base);
        CHECK_INT(apply_patch_text(&again, all.data), 0);
        char *got = to_text(again);
        CHECK(tree_ok(again));
        CHECK(got != NULL && want != NULL && strcmp(got, want) == 0);
        free(got);
        cJSON_Delete(again);
        /* ...and followed by a failing op they leave it as it was. */
        again = from_text(base);
        cJSON *root = again;
        buf_truncate(&all, all.len - 1);
        buf_printf(&all, "%s{\"op\":\"remove\",\"path\":\"\"}]", all.len > 1 ? "," : "");
        CHECK_INT(apply_patch_text(&again, all.data), -1);
        got = to_text(again);
        CHECK(again == root && tree_ok(again));
        CHECK(got != NULL && base_text != NULL && strcmp(got, base_text) == 0);
        free(got);
        cJSON_Delete(again);
        free(want);
        free(base_text);
        buf_dispose(&all);
        buf_dispose(&op);
        cJSON_Delete(cur);
    }
    fprintf(stderr, "random sequences: %d ops applied, %d refused\n", applied_ops, failed_ops);
    CHECK(applied_ops > 1000 && failed_ops > 100);
}

/* ---- the CLI ---- */

static char tmpdir[] = "/tmp/pollcast-apply-XXXXXX";

static const char *tmpfile_with(const char *name, const char *content)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f != NULL) {
        fputs(content, f);
        fclose(f);
    }
    return p;
}

/* Runs cli_apply with stdout and stderr captured into out and err (static storage). */
static int run_cli(const char *doc, const char *patch, const char **out, const char **err)
{
    static char obuf[4096], ebuf[4096];
    char opath[256], epath[256];
    snprintf(opath, sizeof(opath), "%s/stdout", tmpdir);
    snprintf(epath, sizeof(epath), "%s/stderr", tmpdir);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    char *argv[] = {(char *)doc, (char *)patch, NULL};
    int rc = cli_apply(patch ? 2 : 1, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    char *o = harness_slurp(opath, NULL), *e = harness_slurp(epath, NULL);
    snprintf(obuf, sizeof(obuf), "%s", o ? o : "");
    snprintf(ebuf, sizeof(ebuf), "%s", e ? e : "");
    free(o);
    free(e);
    *out = obuf;
    *err = ebuf;
    return rc;
}

static void test_cli(void)
{
    REQUIRE(mkdtemp(tmpdir) != NULL);
    const char *out, *err;
    const char *doc = tmpfile_with("doc.json", "{ \"id\": 9007199254740993, \"l\": [1, 2] }\n");
    const char *ok =
        tmpfile_with("ok.json", "[{\"op\":\"move\",\"from\":\"/l/0\",\"path\":\"/l/-\"},"
                                "{\"op\":\"add\",\"path\":\"/x\",\"value\":1e400}]");
    CHECK_INT(run_cli(doc, ok, &out, &err), 0);
    CHECK_STR(out, "{\"id\":9007199254740993,\"l\":[2,1],\"x\":1e400}\n");
    CHECK_STR(err, "");
    const char *bad = tmpfile_with("bad.json", "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1},"
                                               "{\"op\":\"test\",\"path\":\"/id\",\"value\":1}]");
    CHECK_INT(run_cli(doc, bad, &out, &err), 1);
    CHECK_STR(out, "");
    CHECK_STR(err, "pollcast apply: op 1: path /id: test failed: the value differs\n");
    const char *obj = tmpfile_with("obj.json", "{\"op\":\"remove\",\"path\":\"/id\"}");
    CHECK_INT(run_cli(doc, obj, &out, &err), 1);
    CHECK_STR(err, "pollcast apply: patch is not a JSON array (found object)\n");
    const char *broken = tmpfile_with("broken.json", "[{\"op\":}]");
    CHECK_INT(run_cli(doc, broken, &out, &err), 2);
    CHECK(strstr(err, "broken.json: invalid JSON at byte 7: ") != NULL);
    CHECK_STR(out, "");
    const char *nul = tmpfile_with("nul.json", "{\"a\\u0000\":1}");
    CHECK_INT(run_cli(nul, ok, &out, &err), 2);
    CHECK(strstr(err, "nul.json: cannot hold this document") != NULL);
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing.json", tmpdir);
    CHECK_INT(run_cli(missing, ok, &out, &err), 2);
    CHECK_INT(run_cli(doc, NULL, &out, &err), 2);
    CHECK(strstr(err, "usage: pollcast apply") != NULL);
    CHECK_INT(run_cli("--x", ok, &out, &err), 2);
    const char *files[] = {"doc.json",    "ok.json",  "bad.json", "obj.json",
                           "broken.json", "nul.json", "stdout",   "stderr"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[300];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

int main(void)
{
    RUN(test_suite_tests_json);
    RUN(test_suite_spec_tests_json);
    RUN(test_fidelity_through_every_op);
    RUN(test_nul_keys_refused);
    RUN(test_atomic_on_third_op);
    RUN(test_ops);
    RUN(test_errors);
    RUN(test_equality);
    RUN(test_depth_limits);
    RUN(test_copy_budget);
    RUN(test_write_plain_items);
    RUN(test_apply_node);
    RUN(test_random_sequences);
    RUN(test_cli);
    return harness_report("test_apply");
}

/* Unit tests of the fidelity parser: grammar, number and string fidelity, hashing, equality,
 * duplicate keys, serialization, limits. */
#include "harness.h"
#include "json/json.h"

static struct json_doc *parse(const char *s)
{
    return json_parse(s, strlen(s), NULL, NULL);
}

/* Parses s and returns its compact serialization (static buffer), or "ERR". */
static const char *roundtrip(const char *s)
{
    static struct buf out;
    out.len = 0;
    struct json_doc *d = parse(s);
    if (d == NULL)
        return "ERR";
    json_write(&out, d->root);
    json_doc_free(d);
    return out.data;
}

static void test_numbers_keep_their_text(void)
{
    CHECK_STR(roundtrip("9007199254740993"), "9007199254740993");
    CHECK_STR(roundtrip("[1e400, -0, 0.1, 1.10, 1E+2, -12.5e-3]"),
              "[1e400,-0,0.1,1.10,1E+2,-12.5e-3]");
    const char *big = "123456789012345678901234567890123456789012345678901234567890";
    CHECK_STR(roundtrip(big), big);
}

static void test_strings_keep_their_text(void)
{
    CHECK_STR(roundtrip("\"a\\u0000b\""), "\"a\\u0000b\"");
    CHECK_STR(roundtrip("\"\\ud83d\\ude00 \xF0\x9F\x98\x80 \\/\""),
              "\"\\ud83d\\ude00 \xF0\x9F\x98\x80 \\/\"");
    struct json_doc *d = parse("\"a\\u0000b\\n\"");
    REQUIRE(d != NULL);
    struct buf b;
    buf_init(&b, 0);
    CHECK(json_string_decode(d->root, &b) == 0);
    CHECK_INT(b.len, 4);
    CHECK(memcmp(b.data, "a\0b\n", 4) == 0);
    buf_dispose(&b);
    json_doc_free(d);
}

/* Equal when both parse and json_equal says so; the hashes must agree with json_equal. */
static int str_equal(const char *x, const char *y)
{
    struct json_doc *a = parse(x), *b = parse(y);
    int eq = -1;
    if (a && b) {
        eq = json_equal(a->root, b->root);
        if (eq != json_equal(b->root, a->root))
            eq = -2;
        if (eq == 1 && a->root->hash != b->root->hash)
            eq = -3;
    }
    json_doc_free(a);
    json_doc_free(b);
    return eq;
}

static void test_strings_equal_decoded(void)
{
    /* Escapes that decode to the same bytes: the same string. */
    CHECK_INT(str_equal("\"\\u00e9\"", "\"\xC3\xA9\""), 1);
    CHECK_INT(str_equal("\"\\u00E9t\\u00e9\"", "\"\xC3\xA9t\xC3\xA9\""), 1);
    CHECK_INT(str_equal("\"a\\/b\"", "\"a/b\""), 1);
    CHECK_INT(str_equal("\"\\u0041\"", "\"A\""), 1);
    CHECK_INT(str_equal("\"\\n\\t\\\"\\\\\"", "\"\\u000a\\u0009\\u0022\\u005c\""), 1);
    CHECK_INT(str_equal("\"\\ud83d\\ude00\"", "\"\xF0\x9F\x98\x80\""), 1);
    CHECK_INT(str_equal("\"\\u20ac1\"", "\"\xE2\x82\xAC\\u0031\""), 1);
    CHECK_INT(str_equal("\"\\ud800\"", "\"\\uD800\""), 1); /* a lone surrogate */
    /* Different decoded bytes: different strings, whatever the escapes. */
    CHECK_INT(str_equal("\"\\u00e9\"", "\"e\""), 0);
    CHECK_INT(str_equal("\"\\u00e9\"", "\"\xC3\xA9 \""), 0);
    CHECK_INT(str_equal("\"ab\"", "\"a\\u0062c\""), 0);
    CHECK_INT(str_equal("\"a\\u0062c\"", "\"ab\""), 0);
    CHECK_INT(str_equal("\"\\ud800\"", "\"\\udc00\""), 0);
    CHECK_INT(str_equal("\"\\u0000\"", "\"\""), 0);
    CHECK_INT(str_equal("\"A\"", "\"a\""), 0);
    /* Inside containers, for values and keys alike; numbers still compare by text. */
    CHECK_INT(str_equal("{\"k\":[\"\\/\",{\"\\u0069d\":\"x\\u00e9\"}]}",
                        "{\"k\":[\"/\",{\"id\":\"x\xC3\xA9\"}]}"),
              1);
    CHECK_INT(str_equal("[1.0]", "[1]"), 0);
    /* The text stays as written. */
    CHECK_STR(roundtrip("[\"\\u00e9\\/\"]"), "[\"\\u00e9\\/\"]");
}

static void test_whitespace_is_dropped(void)
{
    CHECK_STR(roundtrip(" { \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } } "), "{\"a\":[1,2],\"b\":{}}");
    CHECK_STR(roundtrip("\xEF\xBB\xBF[true,false,null]"), "[true,false,null]");
    struct json_doc *d = parse("{\"a\":[1,2]}");
    REQUIRE(d != NULL);
    CHECK(d->root->flags & JSON_COMPACT);
    CHECK_INT(d->root->size, 11);
    json_doc_free(d);
    d = parse("{\"a\": [1,2]}");
    REQUIRE(d != NULL);
    CHECK(!(d->root->flags & JSON_COMPACT));
    CHECK_INT(d->root->size, 11);
    json_doc_free(d);
}

static void test_invalid_input_is_refused_with_offset(void)
{
    static const struct {
        const char *text;
        size_t offset;
    } bad[] = {
        {"", 0},
        {"[1,]", 3},
        {"{\"a\" 1}", 5},
        {"01", 1},
        {"1.", 2},
        {"-", 1},
        {"[1 2]", 3},
        {"\"a\nb\"", 2},
        {"\"\\x\"", 1},
        {"tru", 0},
        {"{}{}", 2},
        {"\"\xC0\xAF\"", 1},
        {"\"\xED\xA0\x80\"", 1},
        {"[", 1},
        {"{\"a\":}", 5},
        {"\"\\u12\"", 1},
        {"1e", 2},
        {"NaN", 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct json_error err = {0};
        struct json_doc *d = json_parse(bad[i].text, strlen(bad[i].text), NULL, &err);
        CHECK(d == NULL);
        if (err.offset != bad[i].offset)
            fprintf(stderr, "  input %zu (%s): offset %zu, want %zu (%s)\n", i, bad[i].text,
                    err.offset, bad[i].offset, err.msg);
        CHECK_INT(err.offset, bad[i].offset);
        CHECK(err.msg[0] != '\0');
        json_doc_free(d);
    }
}

static void test_depth_limit(void)
{
    char deep[3001];
    memset(deep, '[', 1500);
    memset(deep + 1500, ']', 1500);
    deep[3000] = '\0';
    struct json_error err;
    CHECK(json_parse(deep, 3000, NULL, &err) == NULL);
    CHECK(strstr(err.msg, "deep") != NULL);
    struct json_parse_opts opts = {.max_depth = 2000};
    struct json_doc *d = json_parse(deep, 3000, &opts, &err);
    CHECK(d != NULL);
    json_doc_free(d);
}

static void test_value_limit(void)
{
    const char *text = "[1,[2,3],{\"a\":4}]"; /* 7 values */
    struct json_parse_opts opts = {.max_values = 6};
    struct json_error err;
    CHECK(json_parse(text, strlen(text), &opts, &err) == NULL);
    CHECK(strstr(err.msg, "too many values") != NULL);
    opts.max_values = 7;
    struct json_doc *d = json_parse(text, strlen(text), &opts, &err);
    CHECK(d != NULL);
    json_doc_free(d);
}

static void test_hash_and_equality(void)
{
    struct json_doc *a = parse("{\"x\":1,\"y\":[1,2,{\"z\":null}]}");
    struct json_doc *b = parse("{ \"y\" : [1,2,{\"z\":null}], \"x\" : 1 }");
    struct json_doc *c = parse("{\"x\":1,\"y\":[2,1,{\"z\":null}]}");
    struct json_doc *d = parse("{\"x\":1.0,\"y\":[1,2,{\"z\":null}]}");
    struct json_doc *e = parse("{\"X\":1,\"y\":[1,2,{\"z\":null}]}");
    REQUIRE(a && b && c && d && e);
    CHECK(a->root->hash == b->root->hash);
    CHECK(json_equal(a->root, b->root));
    CHECK(a->root->hash != c->root->hash);
    CHECK(!json_equal(a->root, c->root));
    CHECK(!json_equal(a->root, d->root)); /* numbers compare by text */
    CHECK(!json_equal(a->root, e->root)); /* keys are case-sensitive */
    json_doc_free(a);
    json_doc_free(b);
    json_doc_free(c);
    json_doc_free(d);
    json_doc_free(e);
}

static void test_duplicate_keys_last_wins_first_position(void)
{
    CHECK_STR(roundtrip("{\"a\":1,\"b\":2,\"a\":3}"), "{\"a\":3,\"b\":2}");
    /* The same with an index (more than 8 members). */
    CHECK_STR(roundtrip("{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,"
                        "\"k8\":8,\"k1\":\"x\",\"k9\":9}"),
              "{\"k0\":0,\"k1\":\"x\",\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,"
              "\"k8\":8,\"k9\":9}");
    /* An escaped key equal to a plain one is the same key. */
    CHECK_STR(roundtrip("{\"a\":1,\"\\u0061\":2}"), "{\"a\":2}");
}

static void test_lookup(void)
{
    struct buf s;
    buf_init(&s, 0);
    buf_putc(&s, '{');
    for (int i = 0; i < 100; i++)
        buf_printf(&s, "%s\"key%d\":%d", i ? "," : "", i, i);
    buf_puts(&s, ",\"a\\u0000b\":true,\"a/b\":false}");
    struct json_doc *d = parse(s.data);
    REQUIRE(d != NULL);
    CHECK(d->root->index != NULL);
    const struct json_node *v = json_object_get(d->root, "key57", 5);
    REQUIRE(v != NULL);
    CHECK(v->len == 2 && memcmp(v->text, "57", 2) == 0);
    CHECK(json_object_get(d->root, "key100", 6) == NULL);
    v = json_object_get(d->root, "a\0b", 3);
    CHECK(v != NULL && v->type == JSON_TRUE);
    CHECK(json_object_get(d->root, "a", 1) == NULL);
    CHECK_INT(json_object_find(d->root, "a/b", 3), 101);
    json_doc_free(d);
    buf_dispose(&s);
}

static void test_write_string_escapes(void)
{
    struct buf b;
    buf_init(&b, 0);
    json_write_string(&b, "a\"b\\c\n\x01\0z", 9);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\\u0000z\"");
    b.len = 0;
    json_write_string(&b, "\xED\xA0\x80x", 4);
    CHECK_STR(b.data, "\"\\ud800x\"");
    buf_dispose(&b);
}

static void test_pretty(void)
{
    struct json_doc *d = parse("{\"a\":[1,{}],\"b\":\"x\"}");
    REQUIRE(d != NULL);
    struct buf b;
    buf_init(&b, 0);
    json_write_pretty(&b, d->root, 2);
    CHECK_STR(b.data, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"x\"\n}");
    buf_dispose(&b);
    json_doc_free(d);
}

static void test_corpora_roundtrip(void)
{
    static const char *files[] = {"twitter.json",        "canada.json",  "citm_catalog.json",
                                  "twitterescaped.json", "numbers.json", "random.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/corpora/%s", harness_testdata(), files[i]);
        size_t len;
        char *text = harness_slurp(path, &len);
        REQUIRE(text != NULL);
        struct json_doc *d = json_parse(text, len, NULL, NULL);
        REQUIRE(d != NULL);
        struct buf out;
        buf_init(&out, 0);
        CHECK(json_write(&out, d->root) == 0);
        CHECK_INT(out.len, d->root->size);
        /* The compact form parses back to an equal tree. */
        struct json_doc *d2 = json_parse(out.data, out.len, NULL, NULL);
        REQUIRE(d2 != NULL);
        CHECK(json_equal(d->root, d2->root));
        CHECK(d2->root->flags & JSON_COMPACT);
        json_doc_free(d2);
        json_doc_free(d);
        buf_dispose(&out);
        free(text);
    }
}

int main(void)
{
    RUN(test_numbers_keep_their_text);
    RUN(test_strings_keep_their_text);
    RUN(test_strings_equal_decoded);
    RUN(test_whitespace_is_dropped);
    RUN(test_invalid_input_is_refused_with_offset);
    RUN(test_depth_limit);
    RUN(test_value_limit);
    RUN(test_hash_and_equality);
    RUN(test_duplicate_keys_last_wins_first_position);
    RUN(test_lookup);
    RUN(test_write_string_escapes);
    RUN(test_pretty);
    RUN(test_corpora_roundtrip);
    return harness_report("test_json");
}

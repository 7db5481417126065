/* Unit tests of watch.c: the event-stream parser (fed whole, byte by byte and split at every
 * position), the live document with its change lists and pointer selection, the rendering, the
 * change lines and jq paths. */
#include "../unit/harness.h"

#include "buf.h"
#include "watch.h"

/* Every dispatched event, appended as "TYPE|ID|DATA\n" (data with '\n' shown as '/'). */
static struct buf events;

static int record(void *arg, const struct watch_sse_event *ev)
{
    buf_printf(&events, "%s|%s|", ev->type, ev->id);
    for (size_t i = 0; i < ev->len; i++)
        buf_putc(&events, ev->data[i] == '\n' ? '/' : ev->data[i] == '\0' ? '0' : ev->data[i]);
    buf_putc(&events, '\n');
    return arg ? *(int *)arg : 0;
}

/* Feeds s in pieces of at most step bytes (0: whole), returns what was recorded. */
static const char *parse(const char *s, size_t n, size_t step, long *retry)
{
    struct watch_sse p;
    watch_sse_init(&p, 1024, record, NULL);
    buf_truncate(&events, 0);
    buf_puts(&events, "");
    size_t off = 0;
    int rc = 0;
    while (off < n && rc == 0) {
        size_t k = step && n - off > step ? step : n - off;
        rc = watch_sse_feed(&p, s + off, k);
        off += k;
    }
    if (rc != 0)
        buf_printf(&events, "rc=%d\n", rc);
    if (retry)
        *retry = p.retry_ms;
    watch_sse_dispose(&p);
    return events.data ? events.data : "";
}

/* Parses s whole, byte by byte and split in two at every position: all must agree. */
static void check_stream(const char *s, const char *want, long want_retry)
{
    size_t n = strlen(s);
    long retry;
    CHECK_STR(parse(s, n, 0, &retry), want);
    CHECK_INT(retry, want_retry);
    CHECK_STR(parse(s, n, 1, &retry), want);
    for (size_t cut = 1; cut < n; cut++) {
        struct watch_sse p;
        watch_sse_init(&p, 1024, record, NULL);
        buf_truncate(&events, 0);
        buf_puts(&events, "");
        watch_sse_feed(&p, s, cut);
        watch_sse_feed(&p, s + cut, n - cut);
        if (strcmp(events.data, want) != 0) {
            CHECK_STR(events.data, want);
            fprintf(stderr, "  (split at %zu)\n", cut);
            watch_sse_dispose(&p);
            return;
        }
        watch_sse_dispose(&p);
    }
}

static void test_sse_basic(void)
{
    check_stream("retry: 2874\n\nid: 41\nevent: data\ndata: {\"a\":1}\n\n"
                 "id: 42\nevent: patch\ndata: []\n\n: keepalive\n\n",
                 "data|41|{\"a\":1}\npatch|42|[]\n", 2874);
}

static void test_sse_line_endings(void)
{
    /* CRLF, CR alone and LF alone, mixed; a CR at the very end of a chunk must not make the
     * LF that follows an empty line. */
    check_stream("event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n",
                 "a||1\nb||2\nmessage||3\n", -1);
}

static void test_sse_multiline_and_fields(void)
{
    check_stream("data: one\ndata: two\ndata\ndata:three\n\n", "message||one/two//three\n", -1);
    /* Only one leading space is removed; a field without a colon has an empty value. */
    check_stream("data:  x\n\n", "message|| x\n", -1);
    /* Unknown fields and comments are ignored; an event with no data is not dispatched. */
    check_stream("foo: bar\n:comment\nevent: x\n\ndata: y\n\n", "message||y\n", -1);
    /* The id persists to later events and is updated even by an event without data. */
    check_stream("id: 7\n\ndata: a\n\nid\ndata: b\n\n", "message|7|a\nmessage||b\n", -1);
    /* A retry that is not all digits is ignored. */
    check_stream("retry: 12a\nretry: 500\nretry: x\ndata: z\n\n", "message||z\n", 500);
    /* A leading byte order mark is dropped, once. */
    check_stream("\xEF\xBB\xBF"
                 "data: b\n\n",
                 "message||b\n", -1);
    /* An incomplete event at the end of the stream is not dispatched. */
    check_stream("data: a\n\ndata: unfinished\n", "message||a\n", -1);
    /* An id holding NUL is ignored (here: the earlier one stays). */
    const char with_nul[] = "id: 1\n\nid: a\0b\ndata: x\n\n";
    long retry;
    CHECK_STR(parse(with_nul, sizeof(with_nul) - 1, 0, &retry), "message|1|x\n");
}

static void test_sse_limits(void)
{
    struct watch_sse p;
    watch_sse_init(&p, 16, record, NULL);
    CHECK_INT(watch_sse_feed(&p, "data: 0123456789\n", 17), 0);
    /* Two lines of 11 bytes each exceed 16 bytes of data. */
    CHECK_INT(watch_sse_feed(&p, "data: 0123456789\n\n", 18), WATCH_SSE_TOO_BIG);
    watch_sse_reset(&p);
    /* A single line longer than the cap, arriving in pieces or whole. */
    char big[200];
    memset(big, 'x', sizeof(big));
    CHECK_INT(watch_sse_feed(&p, big, sizeof(big)), WATCH_SSE_TOO_BIG);
    watch_sse_reset(&p);
    big[199] = '\n';
    CHECK_INT(watch_sse_feed(&p, big, sizeof(big)), WATCH_SSE_TOO_BIG);
    watch_sse_dispose(&p);

    /* A callback's non-zero answer stops the parse and is returned. */
    int stop = 7;
    watch_sse_init(&p, 64, record, &stop);
    buf_truncate(&events, 0);
    CHECK_INT(watch_sse_feed(&p, "data: a\n\ndata: b\n\n", 18), 7);
    CHECK_STR(events.data, "message||a\n");
    watch_sse_dispose(&p);
}

static void test_sse_reset_keeps_id(void)
{
    struct watch_sse p;
    watch_sse_init(&p, 64, record, NULL);
    buf_truncate(&events, 0);
    watch_sse_feed(&p, "retry: 100\nid: 5\ndata: a\n\nid: 6\ndata: partial", 44);
    watch_sse_reset(&p);
    CHECK_STR(p.last_id.data, "5");
    CHECK_INT(p.retry_ms, 100);
    watch_sse_feed(&p, "data: b\n\n", 9);
    CHECK_STR(events.data, "message|5|a\nmessage|5|b\n");
    watch_sse_forget_id(&p);
    CHECK_INT(p.last_id.len, 0);
    watch_sse_dispose(&p);
}

/* Applies events to a follower of pointer and returns the last change list. */
static struct buf changes;

static int snap(struct watch_doc *w, const char *json)
{
    char err[256];
    buf_truncate(&changes, 0);
    int rc = watch_doc_snapshot(w, json, strlen(json), &changes, err, sizeof(err));
    buf_puts(&changes, "");
    return rc;
}

static int patch(struct watch_doc *w, const char *json)
{
    char err[256];
    buf_truncate(&changes, 0);
    int rc = watch_doc_patch(w, json, strlen(json), &changes, err, sizeof(err));
    buf_puts(&changes, "");
    return rc;
}

static struct buf sel;

static const char *selected(struct watch_doc *w)
{
    buf_truncate(&sel, 0);
    buf_puts(&sel, "");
    watch_doc_write_selected(w, &sel);
    return sel.data;
}

static void test_doc_whole(void)
{
    struct watch_doc w;
    watch_doc_init(&w, NULL);
    CHECK_INT(patch(&w, "[]"), -1); /* no snapshot yet */
    REQUIRE(snap(&w, "{\"n\":9007199254740993,\"p\":{\"a\":1,\"b\":2},\"l\":[1,2,3]}") == 0);
    CHECK_STR(changes.data, "null");
    CHECK_STR(selected(&w), "{\"n\":9007199254740993,\"p\":{\"a\":1,\"b\":2},\"l\":[1,2,3]}");
    /* A replace of an object is listed member by member; a test is left out. */
    REQUIRE(patch(&w,
                  "[{\"op\":\"test\",\"path\":\"/l/0\",\"value\":1},"
                  "{\"op\":\"replace\",\"path\":\"/p\",\"value\":{\"a\":1,\"b\":3,\"c\":1e400}},"
                  "{\"op\":\"remove\",\"path\":\"/l/1\"}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"replace\",\"path\":\"/p/b\",\"value\":3},"
                            "{\"op\":\"add\",\"path\":\"/p/c\",\"value\":1e400},"
                            "{\"op\":\"remove\",\"path\":\"/l/1\"}]");
    CHECK_STR(selected(&w), "{\"n\":9007199254740993,\"p\":{\"a\":1,\"b\":3,\"c\":1e400},"
                            "\"l\":[1,3]}");
    /* A patch that does not apply leaves the document as it was. */
    CHECK_INT(
        patch(&w, "[{\"op\":\"remove\",\"path\":\"/n\"},{\"op\":\"remove\",\"path\":\"/x\"}]"), -1);
    CHECK_STR(selected(&w), "{\"n\":9007199254740993,\"p\":{\"a\":1,\"b\":3,\"c\":1e400},"
                            "\"l\":[1,3]}");
    CHECK_INT(patch(&w, "not json"), -1);
    CHECK_INT(patch(&w, "{}"), -1);
    /* Replacing the root is listed as the leaves that changed. */
    REQUIRE(patch(&w, "[{\"op\":\"replace\",\"path\":\"\",\"value\":"
                      "{\"n\":1,\"p\":{\"a\":1,\"b\":3,\"c\":1e400},\"l\":[1,3]}}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"replace\",\"path\":\"/n\",\"value\":1}]");
    /* A later snapshot is listed as its difference from the document before. */
    REQUIRE(snap(&w, "{\"n\":1,\"p\":{\"a\":2,\"b\":3,\"c\":1e400},\"l\":[1,3],\"z\":null}") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"replace\",\"path\":\"/p/a\",\"value\":2},"
                            "{\"op\":\"add\",\"path\":\"/z\",\"value\":null}]");
    CHECK_INT(snap(&w, "{bad"), -1);
    CHECK_STR(selected(&w), "{\"n\":1,\"p\":{\"a\":2,\"b\":3,\"c\":1e400},\"l\":[1,3],\"z\":null}");
    watch_doc_dispose(&w);
}

static void test_doc_identity(void)
{
    struct watch_doc w;
    watch_doc_init(&w, NULL);
    REQUIRE(snap(&w, "{\"o\":[{\"id\":1,\"q\":1},{\"id\":2,\"q\":2}]}") == 0);
    /* Another id in the same place is another thing: the whole element is shown. */
    REQUIRE(patch(&w, "[{\"op\":\"replace\",\"path\":\"/o/0\",\"value\":{\"id\":3,\"q\":1}},"
                      "{\"op\":\"replace\",\"path\":\"/o/1\",\"value\":{\"id\":2,\"q\":5}},"
                      "{\"op\":\"move\",\"from\":\"/o/0\",\"path\":\"/o/1\"}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"replace\",\"path\":\"/o/0\",\"value\":{\"id\":3,\"q\":1}},"
                            "{\"op\":\"replace\",\"path\":\"/o/1/q\",\"value\":5},"
                            "{\"op\":\"move\",\"from\":\"/o/0\",\"path\":\"/o/1\"}]");
    watch_doc_dispose(&w);
}

static void test_doc_pointer(void)
{
    struct watch_doc w;
    watch_doc_init(&w, "/p/a~1b");
    REQUIRE(snap(&w, "{\"p\":{\"a/b\":{\"x\":1},\"c\":2},\"q\":0}") == 0);
    CHECK_STR(changes.data, "null");
    CHECK_STR(selected(&w), "{\"x\":1}");
    /* Outside the selection: nothing listed. */
    REQUIRE(patch(&w, "[{\"op\":\"replace\",\"path\":\"/q\",\"value\":1},"
                      "{\"op\":\"add\",\"path\":\"/p/d\",\"value\":1}]") == 0);
    CHECK_STR(changes.data, "[]");
    /* Inside: as is. */
    REQUIRE(patch(&w, "[{\"op\":\"add\",\"path\":\"/p/a~1b/y\",\"value\":[1]}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"add\",\"path\":\"/p/a~1b/y\",\"value\":[1]}]");
    /* Above it: the difference made to the selection. */
    REQUIRE(patch(&w, "[{\"op\":\"replace\",\"path\":\"/p\",\"value\":"
                      "{\"a/b\":{\"x\":2,\"y\":[1]},\"c\":3}}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"replace\",\"path\":\"/p/a~1b/x\",\"value\":2}]");
    REQUIRE(patch(&w, "[{\"op\":\"remove\",\"path\":\"/p\"}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"remove\",\"path\":\"/p/a~1b\"}]");
    CHECK_STR(selected(&w), "");
    CHECK(watch_doc_selected(&w) == NULL);
    REQUIRE(patch(&w, "[{\"op\":\"add\",\"path\":\"/p\",\"value\":{\"a/b\":7}}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"add\",\"path\":\"/p/a~1b\",\"value\":7}]");
    /* A move out of the selection's parent. */
    REQUIRE(patch(&w, "[{\"op\":\"move\",\"from\":\"/p\",\"path\":\"/r\"}]") == 0);
    CHECK_STR(changes.data, "[{\"op\":\"remove\",\"path\":\"/p/a~1b\"}]");
    watch_doc_dispose(&w);
}

static void test_render(void)
{
    struct watch_doc w;
    watch_doc_init(&w, NULL);
    REQUIRE(snap(&w, "{\"a\":{\"b\":1.50,\"c\":[]},\"d\":[true,{}],\"k\\u0000\":\"x\"}") != 0);
    REQUIRE(snap(&w, "{\"a\":{\"b\":1.50,\"c\":[]},\"d\":[true,{}],\"e\\n\":\"\\u00e9\"}") == 0);
    struct buf out;
    buf_init(&out, 0);
    REQUIRE(watch_render(&out, w.root, "", 0, NULL) == 0);
    CHECK_STR(out.data, "{\n"
                        "  \"a\": {\n"
                        "    \"b\": 1.50,\n"
                        "    \"c\": []\n"
                        "  },\n"
                        "  \"d\": [\n"
                        "    true,\n"
                        "    {}\n"
                        "  ],\n"
                        "  \"e\\n\": \"\\u00e9\"\n"
                        "}\n");
    REQUIRE(patch(&w, "[{\"op\":\"replace\",\"path\":\"/a/b\",\"value\":2},"
                      "{\"op\":\"add\",\"path\":\"/d/1\",\"value\":[0]}]") == 0);
    struct json_doc *c = json_parse(changes.data, changes.len, NULL, NULL);
    REQUIRE(c != NULL);
    buf_truncate(&out, 0);
    REQUIRE(watch_render(&out, w.root, "", 0, c->root) == 0);
    CHECK_STR(out.data, "{\n"
                        "  \"a\": {\n"
                        "\x01    \"b\": 2,\n"
                        "    \"c\": []\n"
                        "  },\n"
                        "  \"d\": [\n"
                        "    true,\n"
                        "\x01    [\n"
                        "\x01      0\n"
                        "\x01    ],\n"
                        "    {}\n"
                        "  ],\n"
                        "  \"e\\n\": \"\\u00e9\"\n"
                        "}\n");
    /* A selection is rendered with paths relative to where it sits. */
    buf_truncate(&out, 0);
    REQUIRE(watch_render(&out, w.root->child, "/a", 2, c->root) == 0);
    CHECK_STR(out.data, "{\n\x01  \"b\": 2,\n  \"c\": []\n}\n");
    json_doc_free(c);
    buf_dispose(&out);
    watch_doc_dispose(&w);
}

static void test_format_change(void)
{
    const char *ops[][2] = {
        {"{\"op\":\"replace\",\"path\":\"/prices/ACME\",\"value\":10.19}",
         "replace /prices/ACME 10.19"},
        {"{\"op\":\"remove\",\"path\":\"/orders/0\"}", "remove /orders/0"},
        {"{\"op\":\"move\",\"from\":\"/a/0\",\"path\":\"/a/3\"}", "move /a/3 from /a/0"},
        {"{\"op\":\"add\",\"path\":\"/a b\",\"value\":{\"x\":[1, 2]}}",
         "add \"/a b\" {\"x\":[1,2]}"},
        {"{\"op\":\"replace\",\"path\":\"\",\"value\":\"s\"}", "replace \"\" \"s\""},
        {"{\"op\":\"add\",\"path\":\"/\\n\",\"value\":0}", "add \"/\\n\" 0"},
    };
    struct buf out;
    buf_init(&out, 0);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct json_doc *d = json_parse(ops[i][0], strlen(ops[i][0]), NULL, NULL);
        REQUIRE(d != NULL);
        buf_truncate(&out, 0);
        CHECK_INT(watch_format_change(&out, d->root), 0);
        CHECK_STR(out.data, ops[i][1]);
        json_doc_free(d);
    }
    struct json_doc *d = json_parse("[1]", 3, NULL, NULL);
    CHECK_INT(watch_format_change(&out, d->root), -1);
    json_doc_free(d);
    buf_dispose(&out);
}

static void test_paths(void)
{
    CHECK_INT(watch_pointer_check(""), 0);
    CHECK_INT(watch_pointer_check("/a/~0~1/0"), 0);
    CHECK_INT(watch_pointer_check("a"), -1);
    CHECK_INT(watch_pointer_check("/~2"), -1);
    const char *jq[][2] = {
        {".", ""},
        {".a.b", "/a/b"},
        {".prices.ACME", "/prices/ACME"},
        {".orders[0].id", "/orders/0/id"},
        {".[\"a/b\"][12]", "/a~1b/12"},
        {".\"x y\".z", "/x y/z"},
        {".[3]", "/3"},
        {".a_1", "/a_1"},
    };
    struct buf out;
    buf_init(&out, 0);
    for (size_t i = 0; i < sizeof(jq) / sizeof(jq[0]); i++) {
        buf_truncate(&out, 0);
        buf_puts(&out, "");
        CHECK_INT(watch_jq_to_pointer(jq[i][0], &out), 0);
        CHECK_STR(out.data, jq[i][1]);
    }
    const char *bad[] = {"",    "a",      ".a | .b", ".[]", ".a[",   ".[01]",
                         ".1a", ".[\"x]", ".a.",     "..",  ".a[-1]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_truncate(&out, 0);
        if (watch_jq_to_pointer(bad[i], &out) != -1) {
            CHECK(!"jq path accepted");
            fprintf(stderr, "  %s\n", bad[i]);
        }
    }
    buf_dispose(&out);
}

int main(void)
{
    RUN(test_sse_basic);
    RUN(test_sse_line_endings);
    RUN(test_sse_multiline_and_fields);
    RUN(test_sse_limits);
    RUN(test_sse_reset_keeps_id);
    RUN(test_doc_whole);
    RUN(test_doc_identity);
    RUN(test_doc_pointer);
    RUN(test_render);
    RUN(test_format_change);
    RUN(test_paths);
    buf_dispose(&events);
    buf_dispose(&changes);
    buf_dispose(&sel);
    return harness_report("test_watch");
}

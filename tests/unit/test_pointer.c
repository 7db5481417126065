/* Unit tests of RFC 6901 pointer escaping and parsing. */
#include "harness.h"
#include "json/pointer.h"

static void test_append_escapes(void)
{
    struct buf p;
    buf_init(&p, 0);
    json_pointer_append(&p, "a/b", 3);
    json_pointer_append(&p, "m~n", 3);
    json_pointer_append(&p, "", 0);
    json_pointer_append(&p, "~1", 2);
    json_pointer_append_index(&p, 42);
    CHECK_STR(p.data, "/a~1b/m~0n//~01/42");
    buf_dispose(&p);
}

static void test_next_unescapes(void)
{
    const char *text = "/a~1b/m~0n//~01/42";
    const char *p = text, *end = text + strlen(text);
    struct buf seg;
    buf_init(&seg, 0);
    const char *want[] = {"a/b", "m~n", "", "~1", "42"};
    for (int i = 0; i < 5; i++) {
        CHECK_INT(json_pointer_next(&p, end, &seg), 1);
        CHECK_STR(seg.data ? seg.data : "", want[i]);
    }
    CHECK_INT(json_pointer_next(&p, end, &seg), 0);
    const char *bad[] = {"a", "/~", "/~2", "/a~"};
    for (int i = 0; i < 4; i++) {
        p = bad[i];
        end = p + strlen(p);
        int rc;
        while ((rc = json_pointer_next(&p, end, &seg)) == 1)
            ;
        CHECK_INT(rc, -1);
    }
    buf_dispose(&seg);
}

static void test_index(void)
{
    size_t i = 99;
    CHECK_INT(json_pointer_index("0", 1, &i), 0);
    CHECK_INT(i, 0);
    CHECK_INT(json_pointer_index("123", 3, &i), 0);
    CHECK_INT(i, 123);
    CHECK_INT(json_pointer_index("-", 1, &i), 1);
    CHECK_INT(json_pointer_index("01", 2, &i), -1);
    CHECK_INT(json_pointer_index("1e0", 3, &i), -1);
    CHECK_INT(json_pointer_index("", 0, &i), -1);
    CHECK_INT(json_pointer_index("-1", 2, &i), -1);
    CHECK_INT(json_pointer_index("99999999999", 11, &i), -1);
}

int main(void)
{
    RUN(test_append_escapes);
    RUN(test_next_unescapes);
    RUN(test_index);
    return harness_report("test_pointer");
}

/* A minimal unit-test harness: CHECK records a failure and goes on, REQUIRE stops the test.
 * Each test is a function; main() runs them with RUN() and returns non-zero if any failed. */
#ifndef POLLCAST_TEST_HARNESS_H
#define POLLCAST_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_failures;
static int harness_checks;
static const char *harness_current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        harness_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            harness_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, harness_current,  \
                    #cond);                                                                        \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        harness_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            harness_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s: REQUIRE failed: %s\n", __FILE__, __LINE__,                 \
                    harness_current, #cond);                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Compares two NUL-terminated strings and prints both when they differ. */
#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        harness_checks++;                                                                          \
        if (g_ == NULL || strcmp(g_, w_) != 0) {                                                   \
            harness_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s: got  %s\n%*swant %s\n", __FILE__, __LINE__,                \
                    harness_current, g_ ? g_ : "(null)", (int)strlen(__FILE__) + 8, "", w_);       \
        }                                                                                          \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        harness_checks++;                                                                          \
        if (g_ != w_) {                                                                            \
            harness_failures++;                                                                    \
            fprintf(stderr, "%s:%d: %s: %s is %lld, want %lld\n", __FILE__, __LINE__,              \
                    harness_current, #got, g_, w_);                                                \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        harness_current = #fn;                                                                     \
        fn();                                                                                      \
    } while (0)

static inline int harness_report(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failures\n", name, harness_checks, harness_failures);
    return harness_failures ? 1 : 0;
}

/* Reads a whole file into a NUL-terminated heap buffer; returns NULL if it cannot. */
static inline char *harness_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            char *p = realloc(data, cap);
            if (p == NULL) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = p;
        }
        size_t r = fread(data + n, 1, 65536, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

/* The shared test data folder (../shared/testdata), as ctest passes it. */
static inline const char *harness_testdata(void)
{
    const char *d = getenv("POLLCAST_TESTDATA");
    return d ? d : "../shared/testdata";
}

#endif

/* pollcast diff: file reading shared by the subcommands, and the diff command with its timing
 * mode (--repeat N) that benchmarks use. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json/diff.h"
#include "json/json.h"

char *cli_read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "pollcast: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, JSON_MAX_INPUT);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n) != 0) {
            rc = -1;
            break;
        }
    int rerr = ferror(f);
    if (f != stdin)
        fclose(f);
    if (rc != 0 || rerr) {
        fprintf(stderr, "pollcast: %s: %s\n", path, rc ? "file too large" : "read error");
        buf_dispose(&b);
        return NULL;
    }
    return buf_steal(&b, len);
}

struct json_doc *cli_load_json(const char *path)
{
    size_t len;
    char *text = cli_read_file(path, &len);
    if (text == NULL)
        return NULL;
    struct json_error err;
    struct json_doc *doc = json_parse_owned(text, len, NULL, &err);
    if (doc == NULL) {
        fprintf(stderr, "pollcast: %s: invalid JSON at byte %zu: %s\n", path, err.offset, err.msg);
        free(text);
    }
    return doc;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Measures, repeat times each: the diff step alone on the parsed trees (producing the patch
 * text), and parse of NEW + diff + patch serialization, as one poll does. Prints the medians. */
static int time_diff(const struct json_doc *old, const char *new_path, int repeat)
{
    size_t len;
    char *text = cli_read_file(new_path, &len);
    if (text == NULL)
        return 2;
    double *t_diff = calloc((size_t)repeat, sizeof(double));
    double *t_poll = calloc((size_t)repeat, sizeof(double));
    struct buf patch;
    buf_init(&patch, 0);
    int rc = 0;
    if (t_diff == NULL || t_poll == NULL) {
        rc = 2;
        goto out;
    }
    for (int i = 0; i < repeat && rc == 0; i++) {
        double t0 = now_ms();
        struct json_doc *doc = json_parse(text, len, NULL, NULL);
        double t1 = now_ms();
        patch.len = 0;
        if (doc == NULL || json_diff(old->root, doc->root, NULL, &patch, NULL) != 0)
            rc = 2;
        double t2 = now_ms();
        t_diff[i] = t2 - t1;
        t_poll[i] = t2 - t0;
        json_doc_free(doc);
    }
    if (rc == 0)
        fprintf(stderr, "diff: median %.3f ms; parse+diff+serialize: median %.3f ms\n",
                median(t_diff, repeat), median(t_poll, repeat));
out:
    buf_dispose(&patch);
    free(t_diff);
    free(t_poll);
    free(text);
    return rc;
}

int cli_diff(int argc, char **argv)
{
    const char *files[2];
    int nfiles = 0;
    long repeat = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            repeat = strtol(argv[++i], &end, 10);
            if (*end != '\0' || repeat < 1 || repeat > 1000000) {
                fprintf(stderr, "pollcast diff: --repeat takes a count from 1 to 1000000\n");
                return 2;
            }
        } else if (nfiles < 2 && (argv[i][0] != '-' || argv[i][1] == '\0')) {
            files[nfiles++] = argv[i];
        } else {
            fprintf(stderr, "usage: pollcast diff OLD.json NEW.json [--repeat N]\n");
            return 2;
        }
    }
    if (nfiles != 2) {
        fprintf(stderr, "usage: pollcast diff OLD.json NEW.json [--repeat N]\n");
        return 2;
    }
    int rc = 2;
    struct buf patch;
    buf_init(&patch, 0);
    struct json_doc *a = cli_load_json(files[0]);
    struct json_doc *b = a ? cli_load_json(files[1]) : NULL;
    if (b == NULL)
        goto out;
    if (json_diff(a->root, b->root, NULL, &patch, NULL) != 0) {
        fprintf(stderr, "pollcast diff: out of memory\n");
        goto out;
    }
    buf_putc(&patch, '\n');
    fwrite(patch.data, 1, patch.len, stdout);
    rc = 0;
    if (repeat > 0)
        rc = time_diff(a, files[1], (int)repeat);
out:
    buf_dispose(&patch);
    json_doc_free(a);
    json_doc_free(b);
    return rc;
}

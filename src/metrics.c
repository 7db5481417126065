/* The metrics registry and the text exposition format: "# HELP", "# TYPE", then one line per
 * sample, the samples of a family together; label values escaped (\\, \", \n), histograms as
 * cumulative _bucket{le=...} lines ending with +Inf, then _sum and _count. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

struct sample {
    char *label_name, *label_value; /* NULL: no label */
    const uint64_t *value;
};

struct family {
    char *name, *help;
    int histogram;
    enum metrics_type type;
    const struct metrics_histogram *h;
    struct sample *samples;
    size_t nsamples;
};

struct metrics {
    struct family *families;
    size_t n, cap;
};

void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds < METRICS_MAX_BUCKETS ? nbounds : METRICS_MAX_BUCKETS;
}

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        struct family *f = &m->families[i];
        for (size_t j = 0; j < f->nsamples; j++) {
            free(f->samples[j].label_name);
            free(f->samples[j].label_value);
        }
        free(f->samples);
        free(f->name);
        free(f->help);
    }
    free(m->families);
    free(m);
}

static struct family *family_find(struct metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->families[i].name, name) == 0)
            return &m->families[i];
    return NULL;
}

static struct family *family_new(struct metrics *m, const char *name, const char *help)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct family *f = realloc(m->families, cap * sizeof(*f));
        if (f == NULL)
            return NULL;
        m->families = f;
        m->cap = cap;
    }
    struct family *f = &m->families[m->n];
    memset(f, 0, sizeof(*f));
    f->name = strdup(name);
    f->help = strdup(help);
    if (f->name == NULL || f->help == NULL) {
        free(f->name);
        free(f->help);
        return NULL;
    }
    m->n++;
    return f;
}

int metrics_add(struct metrics *m, const char *name, enum metrics_type type, const char *help,
                const char *label_name, const char *label_value, const uint64_t *value)
{
    struct family *f = family_find(m, name);
    if (f && (f->histogram || f->type != type))
        return -1;
    if (f == NULL) {
        f = family_new(m, name, help);
        if (f == NULL)
            return -1;
        f->type = type;
    }
    struct sample *s = realloc(f->samples, (f->nsamples + 1) * sizeof(*s));
    if (s == NULL)
        return -1;
    f->samples = s;
    s = &f->samples[f->nsamples];
    s->label_name = label_name ? strdup(label_name) : NULL;
    s->label_value = label_value ? strdup(label_value) : NULL;
    s->value = value;
    if ((label_name && s->label_name == NULL) || (label_value && s->label_value == NULL)) {
        free(s->label_name);
        free(s->label_value);
        return -1;
    }
    f->nsamples++;
    return 0;
}

int metrics_add_histogram(struct metrics *m, const char *name, const char *help,
                          const struct metrics_histogram *h)
{
    if (family_find(m, name))
        return -1;
    struct family *f = family_new(m, name, help);
    if (f == NULL)
        return -1;
    f->histogram = 1;
    f->h = h;
    return 0;
}

/* HELP text: backslash and line feed escaped. */
static int put_help(struct buf *out, const char *s)
{
    int rc = 0;
    for (; *s; s++) {
        if (*s == '\\')
            rc |= buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc |= buf_puts(out, "\\n");
        else
            rc |= buf_putc(out, *s);
    }
    return rc;
}

/* A label value: backslash, double quote and line feed escaped. */
static int put_label_value(struct buf *out, const char *s)
{
    int rc = 0;
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            rc |= buf_putc(out, '\\') | buf_putc(out, *s);
        else if (*s == '\n')
            rc |= buf_puts(out, "\\n");
        else
            rc |= buf_putc(out, *s);
    }
    return rc;
}

/* A float as Go's strconv would accept it: integers without a fraction, "+Inf". */
static int put_float(struct buf *out, double v)
{
    if (isinf(v))
        return buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    if (isnan(v))
        return buf_puts(out, "NaN");
    if (v == floor(v) && fabs(v) < 1e15)
        return buf_printf(out, "%.0f", v);
    /* The shortest text that reads back as v: 0.005, not 0.0050000000000000001. */
    char text[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, v);
        if (strtod(text, NULL) == v)
            break;
    }
    return buf_puts(out, text);
}

static int write_histogram(const struct family *f, struct buf *out)
{
    const struct metrics_histogram *h = f->h;
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        rc |= buf_printf(out, "%s_bucket{le=\"", f->name);
        rc |= put_float(out, i < h->nbounds ? h->bounds[i] : INFINITY);
        rc |= buf_printf(out, "\"} %llu\n", (unsigned long long)cum);
    }
    rc |= buf_printf(out, "%s_sum ", f->name);
    rc |= put_float(out, h->sum);
    rc |= buf_printf(out, "\n%s_count %llu\n", f->name, (unsigned long long)h->count);
    return rc;
}

int metrics_write(const struct metrics *m, struct buf *out)
{
    int rc = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct family *f = &m->families[i];
        rc |= buf_printf(out, "# HELP %s ", f->name);
        rc |= put_help(out, f->help);
        rc |= buf_printf(out, "\n# TYPE %s %s\n", f->name,
                         f->histogram                 ? "histogram"
                         : f->type == METRICS_COUNTER ? "counter"
                                                      : "gauge");
        if (f->histogram) {
            rc |= write_histogram(f, out);
            continue;
        }
        for (size_t j = 0; j < f->nsamples; j++) {
            const struct sample *s = &f->samples[j];
            rc |= buf_puts(out, f->name);
            if (s->label_name) {
                rc |= buf_printf(out, "{%s=\"", s->label_name);
                rc |= put_label_value(out, s->label_value);
                rc |= buf_puts(out, "\"}");
            }
            rc |= buf_printf(out, " %llu\n", (unsigned long long)*s->value);
        }
    }
    return rc ? -1 : 0;
}

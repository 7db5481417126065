/* Prometheus metrics: a small registry of counter, gauge and histogram families whose samples
 * point at values their owners keep and update themselves (an increment on the hot path, nothing
 * more), written on demand in the text exposition format, version 0.0.4. */
#ifndef POLLCAST_METRICS_H
#define POLLCAST_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct metrics;

#define METRICS_MAX_BUCKETS 16

/* A histogram its owner embeds and feeds with metrics_histogram_observe. */
struct metrics_histogram {
    const double *bounds; /* upper bounds, strictly increasing; +Inf is implicit */
    size_t nbounds;       /* at most METRICS_MAX_BUCKETS */
    uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket (not cumulative); last: over all */
    uint64_t count;
    double sum;
};

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE };

/* Sets the buckets (bounds must outlive h; at most METRICS_MAX_BUCKETS are used) and zeroes the
 * counts. Cannot fail. */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds);

/* Counts one observation of v. Cannot fail. */
void metrics_histogram_observe(struct metrics_histogram *h, double v);

/* Returns an empty registry, or NULL on OOM. */
struct metrics *metrics_new(void);

/* Frees the registry (not the values it points at). Accepts NULL. */
void metrics_free(struct metrics *m);

/* Adds a sample to the family name, created with type and help on its first sample (later
 * samples of the family must have the same type). label_name and label_value give the sample's
 * one label, or are both NULL. The value is read from *value at each exposition: value must
 * outlive the registry. The strings are copied. Returns 0, or -1 on OOM or a type mismatch. */
int metrics_add(struct metrics *m, const char *name, enum metrics_type type, const char *help,
                const char *label_name, const char *label_value, const uint64_t *value);

/* Adds the histogram family name, read from *h at each exposition (h must outlive the
 * registry). Returns 0, or -1 on OOM or when the name is taken. */
int metrics_add_histogram(struct metrics *m, const char *name, const char *help,
                          const struct metrics_histogram *h);

/* Appends the exposition of every family, in the order they were added, to out. Returns 0, or
 * -1 when out cannot grow. */
int metrics_write(const struct metrics *m, struct buf *out);

#endif

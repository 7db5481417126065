/* One line per event on stderr, as text ("2026-11-21T12:00:00.123Z info message key=value") or
 * as JSON ({"ts":...,"level":"info","msg":...,"key":value}). */
#ifndef POLLCAST_LOG_H
#define POLLCAST_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* One key=value of a structured line: a string (is_str; NULL is written "-") or an integer. */
struct log_field {
    const char *key; /* [a-z_]+ */
    int is_str;
    const char *str;
    int64_t num;
};

#define LOG_STR(k, v) ((struct log_field){.key = (k), .is_str = 1, .str = (v)})
#define LOG_NUM(k, v) ((struct log_field){.key = (k), .num = (int64_t)(v)})

/* Sets the threshold and the format (json != 0 for JSON lines). Cannot fail. */
void log_setup(enum log_level level, int json);

/* Names the node in every structured line from now on (a node=... field last, cluster mode);
 * NULL or "": none. node_id must be [A-Za-z0-9._-]; it is copied (at most 79 bytes). */
void log_set_node(const char *node_id);

/* Returns 1 when messages of level are written. */
int log_enabled(enum log_level level);

/* Writes one line when level passes the threshold. The message must not hold secrets. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one structured line: msg, then each field (text: key=value, quoted as a JSON string
 * when the value holds a space, a quote, '=' or a control character; JSON: a member). Fields must
 * not hold secrets. Cannot fail (a line that cannot be built is dropped). */
void log_event(enum log_level level, const char *msg, const struct log_field *fields, size_t n);

#endif

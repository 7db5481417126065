/* One line per event on stderr, as text ("2026-11-21T12:00:00.123Z info message key=value") or
 * as JSON ({"ts":...,"level":"info","msg":...}). */
#ifndef POLLCAST_LOG_H
#define POLLCAST_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the threshold and the format (json != 0 for JSON lines). Cannot fail. */
void log_setup(enum log_level level, int json);

/* Returns 1 when messages of level are written. */
int log_enabled(enum log_level level);

/* Writes one line when level passes the threshold. The message must not hold secrets. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

/* The log writer: one line per event, text or JSON, on stderr. Each line is built in memory and
 * written with one call, so that lines never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json/json.h"

static enum log_level threshold = LOG_INFO;
static int as_json;
static char node[80]; /* "" : lines name no node */

void log_set_node(const char *node_id)
{
    snprintf(node, sizeof(node), "%s", node_id ? node_id : "");
}

void log_setup(enum log_level level, int json)
{
    threshold = level;
    as_json = json;
}

int log_enabled(enum log_level level)
{
    return level >= threshold;
}

static const char *level_name(enum log_level level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return level <= LOG_ERROR ? names[level] : "info";
}

/* Starts a line: the timestamp, the level and the message. */
static void line_begin(struct buf *line, enum log_level level, const char *msg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    if (as_json) {
        buf_printf(line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_name(level));
        json_write_string(line, msg, strlen(msg));
    } else {
        buf_printf(line, "%s %s %s", when, level_name(level), msg);
    }
}

static void line_end(struct buf *line)
{
    buf_puts(line, as_json ? "}\n" : "\n");
    if (line->data)
        fwrite(line->data, 1, line->len, stderr);
    buf_dispose(line);
}

/* A text value is written bare when it cannot be misread: no space, quote, '=' or control. */
static int text_bare(const char *s)
{
    if (*s == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == 0x7f)
            return 0;
    return 1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < threshold)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct buf line;
    buf_init(&line, 0);
    line_begin(&line, level, msg);
    line_end(&line);
}

void log_event(enum log_level level, const char *msg, const struct log_field *fields, size_t n)
{
    if (level < threshold)
        return;
    struct buf line;
    buf_init(&line, 0);
    line_begin(&line, level, msg);
    for (size_t i = 0; i < n; i++) {
        const struct log_field *f = &fields[i];
        const char *str = f->is_str ? (f->str ? f->str : "-") : NULL;
        if (as_json) {
            buf_printf(&line, ",\"%s\":", f->key);
            if (str)
                json_write_string(&line, str, strlen(str));
            else
                buf_printf(&line, "%lld", (long long)f->num);
        } else if (str == NULL) {
            buf_printf(&line, " %s=%lld", f->key, (long long)f->num);
        } else if (text_bare(str)) {
            buf_printf(&line, " %s=%s", f->key, str);
        } else {
            buf_printf(&line, " %s=", f->key);
            json_write_string(&line, str, strlen(str));
        }
    }
    if (node[0] && as_json) {
        buf_puts(&line, ",\"node\":");
        json_write_string(&line, node, strlen(node));
    } else if (node[0]) {
        buf_printf(&line, " node=%s", node);
    }
    line_end(&line);
}

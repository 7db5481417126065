/* The log writer: one line per event, text or JSON, on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json/json.h"

static enum log_level threshold = LOG_INFO;
static int as_json;

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < threshold)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    struct buf line;
    buf_init(&line, 0);
    if (as_json) {
        buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_name(level));
        json_write_string(&line, msg, strlen(msg));
        buf_puts(&line, "}\n");
    } else {
        buf_printf(&line, "%s %s %s\n", when, level_name(level), msg);
    }
    if (line.data)
        fwrite(line.data, 1, line.len, stderr);
    buf_dispose(&line);
}

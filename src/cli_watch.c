/* pollcast watch: a terminal client that follows a pollcast stream with libcurl, keeps the live
 * document with our applier (watch.c) and shows it, redrawn in place on a terminal, one version
 * after another otherwise, or one line per change with --changes. It reconnects with
 * Last-Event-ID after a disconnect, waiting as the stream's retry: field says. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "buf.h"
#include "cli.h"
#include "json/json.h"
#include "watch.h"

#define DEFAULT_MAX_EVENT ((size_t)32 << 20)
#define DEFAULT_RETRY_MS  3000
#define MAX_BACKOFF_MS    30000
#define MAX_HEADERS       64
#define ERROR_BODY_MAX    4096
#define HIGHLIGHT_MS      2000

/* Why an event callback stopped the transfer. */
enum stop_reason {
    STOP_NONE,
    STOP_RESYNC = 1, /* the document diverged: reconnect without Last-Event-ID */
    STOP_DONE,       /* --count reached, or stdout closed */
    STOP_FATAL,      /* report and exit 1 */
};

struct watch_opts {
    const char *url;
    const char *pointer;
    int changes;
    long count;
    int plain;
    int quiet;
    const char *headers[MAX_HEADERS];
    int nheaders;
    size_t max_event;
    long idle_ms;
};

struct watcher {
    struct watch_opts o;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *req_headers;
    char curl_err[CURL_ERROR_SIZE];
    struct watch_sse sse;
    struct watch_doc doc;
    struct buf changes; /* the change list of the last update */
    struct buf out;     /* what goes to stdout next */
    struct buf shown;   /* the last version printed (plain mode), to skip repeats */
    int shown_once;     /* shown holds a version (possibly "nothing") */
    struct buf err_body;

    int tty;   /* redraw the screen */
    int color; /* highlight changed lines */
    int status_to_stderr;

    /* The current connection. */
    long http_status; /* 0 until the first body byte or the end */
    int streaming;    /* a 200 event stream is being read */
    int rejected;     /* a non-200 answer: its body goes to err_body */
    uint64_t last_rx_ms;
    enum stop_reason stop;
    int exit_code;

    int failures; /* attempts in a row that did not reach a stream */
    uint64_t next_attempt_ms;
    uint64_t last_resync_ms;
    long updates;
    int quit;

    /* What the terminal header shows. */
    char state[256];
    char last_update[16];
    uint64_t highlight_until_ms;
    struct json_doc *hl_changes; /* the change list being highlighted */
};

/* The signal handlers' only action: a byte down this pipe, which the loop polls. */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    char c = sig == SIGWINCH ? 'W' : 'Q';
    ssize_t n = write(signal_pipe[1], &c, 1);
    (void)n;
    errno = saved;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The wall clock as HH:MM:SS in local time. */
static void clock_text(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, n, "%H:%M:%S", &tm);
}

/* Ids and problem details come from the server: no control byte of theirs reaches a terminal. */
static void strip_controls(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void status(struct watcher *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A status line: on stderr with the time (unless quiet, or the screen shows it), and as the
 * state in the terminal header. */
static void status(struct watcher *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->state, sizeof(w->state), fmt, ap);
    va_end(ap);
    strip_controls(w->state);
    if (w->status_to_stderr) {
        char t[16];
        clock_text(t, sizeof(t));
        fprintf(stderr, "%s %s\n", t, w->state);
    }
}

/* ---- output ------------------------------------------------------------------------------- */

/* Writes w->out to stdout and empties it. Returns 0, or -1 when stdout is gone (the watcher
 * then stops: exit 0 when the reader went away, 1 for other errors). */
static int flush_out(struct watcher *w)
{
    size_t n = fwrite(w->out.data ? w->out.data : "", 1, w->out.len, stdout);
    int ok = n == w->out.len && fflush(stdout) == 0;
    buf_truncate(&w->out, 0);
    if (ok)
        return 0;
    if (errno != EPIPE) {
        fprintf(stderr, "pollcast watch: stdout: %s\n", strerror(errno));
        w->exit_code = 1;
    }
    w->quit = 1;
    return -1;
}

static void terminal_size(int *rows, int *cols)
{
    struct winsize ws;
    *rows = 24;
    *cols = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *rows = ws.ws_row;
        *cols = ws.ws_col;
    }
}

/* Appends one line of at most cols columns (counting UTF-8 characters), with C1 controls and
 * DEL written as JSON escapes so that no string can drive the terminal. */
static void put_screen_line(struct buf *o, const char *s, size_t n, int cols)
{
    int col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80) {
            if (col == cols - 1 && i < n) {
                /* Only cut when something would be hidden. */
                size_t rest = 0;
                for (size_t j = i; j < n; j++)
                    rest += ((unsigned char)s[j] & 0xC0) != 0x80;
                if (rest > 1) {
                    buf_puts(o, "\xE2\x80\xA6"); /* … */
                    return;
                }
            }
            col++;
        }
        if (c == 0x7f) {
            buf_puts(o, "\\u007f");
        } else if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9F) {
            buf_printf(o, "\\u%04x", (unsigned char)s[i + 1]);
            i++;
        } else if (c < 0x20) {
            buf_putc(o, '?');
        } else {
            buf_putc(o, (char)c);
        }
    }
}

/* Redraws the whole screen: a header line, then the selected value, clipped to the window. */
static void redraw(struct watcher *w, int clear)
{
    int rows, cols;
    terminal_size(&rows, &cols);
    struct buf *o = &w->out;
    buf_puts(o, clear ? "\x1b[H\x1b[2J" : "\x1b[H");
    struct buf line;
    buf_init(&line, 0);
    const char *id = w->sse.last_id.len ? w->sse.last_id.data : "-";
    buf_printf(&line, "pollcast watch %s%s%s | %s | id %s | %s", w->o.url,
               w->doc.pointer_len ? " " : "", w->doc.pointer, w->state, id,
               w->last_update[0] ? w->last_update : "--:--:--");
    buf_puts(o, w->color ? "\x1b[7m" : "");
    put_screen_line(o, line.data, line.len, cols);
    buf_puts(o, w->color ? "\x1b[0m\x1b[K\n" : "\x1b[K\n");
    buf_truncate(&line, 0);

    int hl = w->color && now_ms() < w->highlight_until_ms;
    const cJSON *v = watch_doc_selected(&w->doc);
    if (w->doc.root == NULL) {
        buf_puts(&line, "(waiting for the first snapshot)\n");
    } else if (v == NULL) {
        buf_printf(&line, "(nothing at %s)\n", w->doc.pointer);
    } else if (watch_render(&line, v, w->doc.pointer, w->doc.pointer_len,
                            hl && w->hl_changes ? w->hl_changes->root : NULL) != 0) {
        buf_truncate(&line, 0);
        buf_puts(&line, "(out of memory)\n");
    }
    size_t nlines = 0;
    for (size_t i = 0; i < line.len; i++)
        nlines += line.data[i] == '\n';
    size_t room = rows > 2 ? (size_t)rows - 2 : 1;
    size_t shown = 0;
    const char *s = line.data ? line.data : "", *end = s + line.len;
    while (s < end && shown < room) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (e == NULL)
            e = end;
        int mark = *s == '\x01';
        if (mark) {
            s++;
            buf_puts(o, "\x1b[1;33m");
        }
        if (nlines > room && shown == room - 1) {
            buf_printf(o, "\x1b[2m... %zu more lines\x1b[0m", nlines - shown);
        } else {
            put_screen_line(o, s, (size_t)(e - s), cols);
            if (mark)
                buf_puts(o, "\x1b[0m");
        }
        buf_puts(o, "\x1b[K\n");
        shown++;
        s = e + 1;
    }
    buf_puts(o, "\x1b[J");
    buf_dispose(&line);
    flush_out(w);
}

/* Prints the changes of the last update, one line each. */
static void print_changes(struct watcher *w)
{
    char t[16];
    clock_text(t, sizeof(t));
    if (w->changes.len == 0 || strcmp(w->changes.data, "null") == 0) {
        /* The first document: "snapshot PATH VALUE" (no value when nothing is there). */
        buf_printf(&w->out, "%s snapshot ", t);
        watch_format_path(&w->out, w->doc.pointer, w->doc.pointer_len);
        if (watch_doc_selected(&w->doc)) {
            buf_putc(&w->out, ' ');
            watch_doc_write_selected(&w->doc, &w->out);
        }
        buf_putc(&w->out, '\n');
        w->updates++;
    } else {
        struct json_doc *d = json_parse(w->changes.data, w->changes.len, NULL, NULL);
        for (uint32_t i = 0; d && i < d->root->count; i++) {
            if (w->o.count > 0 && w->updates >= w->o.count)
                break;
            buf_printf(&w->out, "%s ", t);
            watch_format_change(&w->out, d->root->u.items[i]);
            buf_putc(&w->out, '\n');
            w->updates++;
        }
        json_doc_free(d);
    }
    flush_out(w);
}

/* Shows the document after an update (a snapshot or a patch whose changes are in w->changes). */
static void show_update(struct watcher *w)
{
    clock_text(w->last_update, sizeof(w->last_update));
    if (w->o.changes) {
        print_changes(w);
    } else if (w->tty) {
        json_doc_free(w->hl_changes);
        w->hl_changes = NULL;
        if (w->changes.len && strcmp(w->changes.data, "null") != 0)
            w->hl_changes = json_parse(w->changes.data, w->changes.len, NULL, NULL);
        w->highlight_until_ms = now_ms() + HIGHLIGHT_MS;
        redraw(w, 0);
        w->updates++;
    } else {
        /* One indented version after another, each only when the selection changed; nothing
         * while there is nothing at the pointer (a status line says so). */
        struct buf text;
        buf_init(&text, 0);
        const cJSON *v = watch_doc_selected(&w->doc);
        if (v != NULL)
            watch_render(&text, v, "", 0, NULL);
        if (!w->shown_once || text.len != w->shown.len ||
            (text.len && memcmp(text.data, w->shown.data, text.len) != 0)) {
            if (v == NULL) {
                status(w, "nothing at %s", w->doc.pointer);
            } else {
                buf_append(&w->out, text.data, text.len);
                w->updates++;
                flush_out(w);
            }
            buf_truncate(&w->shown, 0);
            buf_append(&w->shown, text.data, text.len);
            w->shown_once = 1;
        }
        buf_dispose(&text);
    }
    if (w->o.count > 0 && w->updates >= w->o.count)
        w->quit = 1;
}

/* ---- events ------------------------------------------------------------------------------- */

/* Reads "title", "detail" and "retry_in_ms" of a problem object for a status line. */
static void problem_text(const char *json, size_t len, char *out, size_t n)
{
    struct json_doc *d = json_parse(json, len, NULL, NULL);
    struct buf s;
    buf_init(&s, 512);
    const struct json_node *detail = d ? json_object_get(d->root, "detail", 6) : NULL;
    const struct json_node *title = d ? json_object_get(d->root, "title", 5) : NULL;
    const struct json_node *retry = d ? json_object_get(d->root, "retry_in_ms", 11) : NULL;
    if (detail && detail->type == JSON_STRING)
        json_string_decode(detail, &s);
    else if (title && title->type == JSON_STRING)
        json_string_decode(title, &s);
    else
        buf_append(&s, json, len < 200 ? len : 200);
    if (retry && retry->type == JSON_NUMBER)
        buf_printf(&s, " (next try in %.1f s)", strtod(retry->text, NULL) / 1000);
    snprintf(out, n, "%s", s.data ? s.data : "");
    buf_dispose(&s);
    json_doc_free(d);
}

static int on_event(void *arg, const struct watch_sse_event *ev)
{
    struct watcher *w = arg;
    char err[384];
    struct buf *changes = w->o.changes || w->tty ? &w->changes : NULL;
    buf_truncate(&w->changes, 0);
    if (strcmp(ev->type, "data") == 0) {
        if (watch_doc_snapshot(&w->doc, ev->data, ev->len, changes, err, sizeof(err)) != 0) {
            status(w, "event %s: %s; resynchronising", ev->id, err);
            return STOP_RESYNC;
        }
        if (strncmp(w->state, "upstream error", 14) != 0)
            snprintf(w->state, sizeof(w->state), "live");
        show_update(w);
    } else if (strcmp(ev->type, "patch") == 0) {
        if (watch_doc_patch(&w->doc, ev->data, ev->len, changes, err, sizeof(err)) != 0) {
            status(w, "patch %s did not apply (%s); resynchronising", ev->id, err);
            return STOP_RESYNC;
        }
        if (strncmp(w->state, "upstream error", 14) != 0)
            snprintf(w->state, sizeof(w->state), "live");
        show_update(w);
    } else if (strcmp(ev->type, "upstream-error") == 0) {
        char text[256];
        problem_text(ev->data, ev->len, text, sizeof(text));
        status(w, "upstream error: %s", text);
        if (w->tty && !w->o.changes)
            redraw(w, 0);
    } else if (strcmp(ev->type, "upstream-recovered") == 0) {
        status(w, "live (upstream recovered)");
        if (w->tty && !w->o.changes)
            redraw(w, 0);
    }
    return w->quit ? STOP_DONE : 0;
}

/* ---- the connection ----------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct watcher *w = arg;
    size_t n = size * nmemb;
    if (w->http_status == 0) {
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &w->http_status);
        char *ct = NULL;
        curl_easy_getinfo(w->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (w->http_status != 200) {
            w->rejected = 1;
        } else if (ct == NULL || strncasecmp(ct, "text/event-stream", 17) != 0) {
            fprintf(stderr, "pollcast watch: %s is not an event stream (Content-Type: %s)\n",
                    w->o.url, ct ? ct : "none");
            w->stop = STOP_FATAL;
            return 0;
        } else {
            w->streaming = 1;
            w->failures = 0;
            if (w->sse.last_id.len)
                status(w, "connected, resuming after id %s", w->sse.last_id.data);
            else
                status(w, "connected");
        }
    }
    if (w->rejected) {
        size_t room = ERROR_BODY_MAX - w->err_body.len;
        buf_append(&w->err_body, ptr, n < room ? n : room);
        return n;
    }
    w->last_rx_ms = now_ms();
    int rc = watch_sse_feed(&w->sse, ptr, n);
    if (rc == WATCH_SSE_TOO_BIG) {
        fprintf(stderr,
                "pollcast watch: an event is larger than %zu bytes (or memory ran out); "
                "raise --max-event\n",
                w->o.max_event);
        w->stop = STOP_FATAL;
        return 0;
    }
    if (rc != 0) {
        w->stop = (enum stop_reason)rc;
        return 0;
    }
    return n;
}

/* Appends a request header to *h. Returns 0, or -1 when out of memory (*h is unchanged). */
static int add_header(struct curl_slist **h, const char *header)
{
    struct curl_slist *t = curl_slist_append(*h, header);
    if (t == NULL)
        return -1;
    *h = t;
    return 0;
}

static int start_transfer(struct watcher *w)
{
    w->easy = curl_easy_init();
    if (w->easy == NULL)
        return -1;
    w->http_status = 0;
    w->streaming = 0;
    w->rejected = 0;
    w->stop = STOP_NONE;
    w->curl_err[0] = '\0';
    buf_truncate(&w->err_body, 0);
    watch_sse_reset(&w->sse);
    curl_slist_free_all(w->req_headers);
    w->req_headers = NULL;
    struct curl_slist *h = NULL;
    struct buf line;
    buf_init(&line, 0);
    int rc = add_header(&h, "Accept: text/event-stream");
    rc |= add_header(&h, "Cache-Control: no-cache");
    if (w->sse.last_id.len) {
        rc |= buf_printf(&line, "Last-Event-ID: %s", w->sse.last_id.data);
        rc |= add_header(&h, line.data);
    }
    for (int i = 0; i < w->o.nheaders; i++)
        rc |= add_header(&h, w->o.headers[i]);
    buf_dispose(&line);
    w->req_headers = h;
    CURL *e = w->easy;
    rc |= curl_easy_setopt(e, CURLOPT_URL, w->o.url) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, w) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->curl_err) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "pollcast-watch/" POLLCAST_VERSION) != CURLE_OK;
    if (rc != 0 || curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        w->easy = NULL;
        return -1;
    }
    w->last_rx_ms = now_ms();
    return 0;
}

/* Ends the current transfer (finished, failed or aborted) and decides what comes next. */
static void end_transfer(struct watcher *w, CURLcode result, const char *why)
{
    if (w->http_status == 0)
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &w->http_status);
    curl_multi_remove_handle(w->multi, w->easy);
    curl_easy_cleanup(w->easy);
    w->easy = NULL;
    if (w->quit || w->stop == STOP_DONE)
        return;
    if (w->stop == STOP_FATAL) {
        w->exit_code = 1;
        w->quit = 1;
        return;
    }
    uint64_t now = now_ms();
    long retry = w->sse.retry_ms >= 0 ? w->sse.retry_ms : DEFAULT_RETRY_MS;
    if (w->stop == STOP_RESYNC) {
        /* Start over from a fresh snapshot: at once, unless that keeps happening. */
        watch_sse_forget_id(&w->sse);
        w->next_attempt_ms = now - w->last_resync_ms < 10000 ? now + (uint64_t)retry : now;
        w->last_resync_ms = now;
        return;
    }
    int temporary = 1;
    char reason[CURL_ERROR_SIZE + 128];
    if (w->http_status != 0 && w->http_status != 200) {
        char text[256];
        problem_text(w->err_body.data ? w->err_body.data : "", w->err_body.len, text, sizeof(text));
        snprintf(reason, sizeof(reason), "HTTP %ld: %s", w->http_status, text);
        /* As EventSource does, a refusal ends the watch; but a proxy's 502/503/504 during a
         * restart is worth waiting out. */
        temporary = w->http_status == 502 || w->http_status == 503 || w->http_status == 504;
    } else if (why != NULL) {
        snprintf(reason, sizeof(reason), "%s", why);
    } else if (result == CURLE_OK) {
        snprintf(reason, sizeof(reason), "the stream ended");
    } else {
        snprintf(reason, sizeof(reason), "%s",
                 w->curl_err[0] ? w->curl_err : curl_easy_strerror(result));
    }
    if (!temporary) {
        strip_controls(reason);
        fprintf(stderr, "pollcast watch: %s: %s\n", w->o.url, reason);
        w->exit_code = 1;
        w->quit = 1;
        return;
    }
    uint64_t delay = (uint64_t)retry;
    if (!w->streaming) {
        /* Connection failures in a row back off, up to 30 s. */
        w->failures++;
        for (int i = 1; i < w->failures && delay < MAX_BACKOFF_MS; i++)
            delay *= 2;
        if (delay > MAX_BACKOFF_MS && (uint64_t)retry < MAX_BACKOFF_MS)
            delay = MAX_BACKOFF_MS;
    }
    w->next_attempt_ms = now + delay;
    status(w, "disconnected: %s; reconnecting in %.1f s", reason, (double)delay / 1000);
    if (w->tty && !w->o.changes)
        redraw(w, 0);
}

/* ---- main loop ---------------------------------------------------------------------------- */

static int run(struct watcher *w)
{
    status(w, "connecting to %s", w->o.url);
    if (w->tty && !w->o.changes)
        redraw(w, 1);
    w->next_attempt_ms = now_ms();
    while (!w->quit) {
        uint64_t now = now_ms();
        if (w->easy == NULL && now >= w->next_attempt_ms) {
            if (start_transfer(w) != 0) {
                fprintf(stderr, "pollcast watch: cannot start a transfer\n");
                return 1;
            }
            if (w->updates > 0 || w->failures > 0)
                snprintf(w->state, sizeof(w->state), "reconnecting%s",
                         w->sse.last_id.len ? " (resuming)" : "");
        }
        int running = 0;
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE && m->easy_handle == w->easy)
                end_transfer(w, m->data.result, NULL);
        if (w->quit)
            break;
        now = now_ms();
        if (w->easy && w->streaming && now - w->last_rx_ms > (uint64_t)w->o.idle_ms) {
            char why[64];
            snprintf(why, sizeof(why), "nothing received for %ld s", w->o.idle_ms / 1000);
            end_transfer(w, CURLE_OK, why);
        }
        if (w->tty && !w->o.changes && w->highlight_until_ms && now >= w->highlight_until_ms) {
            w->highlight_until_ms = 0;
            redraw(w, 0);
        }
        int timeout = 1000;
        if (w->easy == NULL && w->next_attempt_ms > now && w->next_attempt_ms - now < 1000)
            timeout = (int)(w->next_attempt_ms - now);
        else if (w->easy == NULL && w->next_attempt_ms <= now)
            timeout = 0;
        if (w->highlight_until_ms > now && w->highlight_until_ms - now < (uint64_t)timeout)
            timeout = (int)(w->highlight_until_ms - now);
        struct curl_waitfd wfd = {.fd = signal_pipe[0], .events = CURL_WAIT_POLLIN};
        curl_multi_poll(w->multi, &wfd, 1, timeout, NULL);
        char c[16];
        ssize_t n;
        while ((n = read(signal_pipe[0], c, sizeof(c))) > 0)
            for (ssize_t i = 0; i < n; i++) {
                if (c[i] == 'Q')
                    w->quit = 1;
                else if (c[i] == 'W' && w->tty && !w->o.changes)
                    redraw(w, 1);
            }
    }
    if (w->easy) {
        curl_multi_remove_handle(w->multi, w->easy);
        curl_easy_cleanup(w->easy);
        w->easy = NULL;
    }
    return w->exit_code;
}

/* ---- arguments ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: pollcast watch STREAM-URL [options]\n"
          "  follows a pollcast stream (http://HOST:PORT/streams/NAME) and shows the live\n"
          "  document: redrawn in place on a terminal, each new version otherwise\n"
          "  -p, --pointer /a/b     show only the value at this JSON Pointer (RFC 6901)\n"
          "      --jq .a.b[0]       the same, written as a jq path\n"
          "  -c, --changes          print each change as one line: TIME OP PATH [VALUE]\n"
          "  -n, --count N          exit after N versions (with --changes: N lines)\n"
          "      --plain            never redraw the screen, even on a terminal\n"
          "  -H, --header 'K: V'    send this request header too (repeatable)\n"
          "      --max-event BYTES  largest event accepted (default 32M; K, M, G suffixes)\n"
          "      --idle-timeout S   reconnect when nothing arrives for S seconds (default 90)\n"
          "  -q, --quiet            no connection status lines on stderr\n",
          f);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (end == s || *end != '\0' || errno || v == 0 || v > (1ULL << 40) >> shift)
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Returns 0, or 2 after printing what is wrong. jq paths are converted into pointer_buf. */
static int parse_args(int argc, char **argv, struct watch_opts *o, struct buf *pointer_buf)
{
    memset(o, 0, sizeof(*o));
    o->max_event = DEFAULT_MAX_EVENT;
    o->idle_ms = 90000;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((strcmp(a, "-p") == 0 || strcmp(a, "--pointer") == 0) && v) {
            if (watch_pointer_check(v) != 0) {
                fprintf(stderr, "pollcast watch: %s is not a JSON Pointer (\"\" or /a/b)\n", v);
                return 2;
            }
            o->pointer = v;
            i++;
        } else if (strcmp(a, "--jq") == 0 && v) {
            buf_truncate(pointer_buf, 0);
            if (watch_jq_to_pointer(v, pointer_buf) != 0) {
                fprintf(stderr,
                        "pollcast watch: --jq takes a path such as .a.b[0] or .[\"x y\"] "
                        "(no pipes, iterators or functions): %s\n",
                        v);
                return 2;
            }
            o->pointer = pointer_buf->data ? pointer_buf->data : "";
            i++;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--changes") == 0) {
            o->changes = 1;
        } else if ((strcmp(a, "-n") == 0 || strcmp(a, "--count") == 0) && v) {
            if (parse_long(v, 1, 1000000000L, &o->count) != 0) {
                fprintf(stderr, "pollcast watch: --count takes a number from 1\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--plain") == 0) {
            o->plain = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if ((strcmp(a, "-H") == 0 || strcmp(a, "--header") == 0) && v) {
            if (o->nheaders == MAX_HEADERS || strchr(v, ':') == NULL || strpbrk(v, "\r\n")) {
                fprintf(stderr, "pollcast watch: --header takes 'Name: value' (at most %d)\n",
                        MAX_HEADERS);
                return 2;
            }
            o->headers[o->nheaders++] = v;
            i++;
        } else if (strcmp(a, "--max-event") == 0 && v) {
            if (parse_size(v, &o->max_event) != 0) {
                fprintf(stderr, "pollcast watch: --max-event takes a size such as 64M\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--idle-timeout") == 0 && v) {
            if (parse_long(v, 1, 86400, &n) != 0) {
                fprintf(stderr, "pollcast watch: --idle-timeout takes seconds, 1 to 86400\n");
                return 2;
            }
            o->idle_ms = n * 1000;
            i++;
        } else if (a[0] != '-' && o->url == NULL) {
            o->url = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (o->url == NULL) {
        usage(stderr);
        return 2;
    }
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0) {
        fprintf(stderr, "pollcast watch: STREAM-URL must be an http:// or https:// URL, such as "
                        "http://127.0.0.1:8080/streams/demo\n");
        return 2;
    }
    return 0;
}

static int setup_signals(int tty)
{
    if (pipe(signal_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* A second Ctrl-C, should the first not be enough, ends the process at once. */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (tty) {
        sa.sa_flags = SA_RESTART;
        sigaction(SIGWINCH, &sa, NULL);
    }
    /* Writes to a closed pipe (stdout or a socket) fail with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int cli_watch(int argc, char **argv)
{
    struct buf pointer_buf;
    buf_init(&pointer_buf, 0);
    struct watcher *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        fprintf(stderr, "pollcast watch: out of memory\n");
        return 1;
    }
    int rc = parse_args(argc, argv, &w->o, &pointer_buf);
    if (rc != 0) {
        free(w);
        buf_dispose(&pointer_buf);
        return rc == 1 ? 0 : rc;
    }
    w->tty = !w->o.plain && !w->o.changes && isatty(STDOUT_FILENO);
    const char *no_color = getenv("NO_COLOR");
    w->color = w->tty && (no_color == NULL || no_color[0] == '\0');
    w->status_to_stderr = !w->o.quiet && !(w->tty && isatty(STDERR_FILENO));
    buf_init(&w->changes, 0);
    buf_init(&w->out, 0);
    buf_init(&w->shown, 0);
    buf_init(&w->err_body, ERROR_BODY_MAX);
    watch_sse_init(&w->sse, w->o.max_event, on_event, w);
    rc = 1;
    if (watch_doc_init(&w->doc, w->o.pointer) != 0 || setup_signals(w->tty) != 0 ||
        curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pollcast watch: cannot start: %s\n", strerror(errno));
        goto out;
    }
    w->multi = curl_multi_init();
    if (w->multi == NULL) {
        fprintf(stderr, "pollcast watch: cannot start libcurl\n");
        goto out;
    }
    rc = run(w);
    if (w->tty && !w->o.changes)
        flush_out(w);
out:
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_slist_free_all(w->req_headers);
    curl_global_cleanup();
    watch_sse_dispose(&w->sse);
    watch_doc_dispose(&w->doc);
    json_doc_free(w->hl_changes);
    buf_dispose(&w->changes);
    buf_dispose(&w->out);
    buf_dispose(&w->shown);
    buf_dispose(&w->err_body);
    buf_dispose(&pointer_buf);
    for (int i = 0; i < 2; i++)
        if (signal_pipe[i] >= 0) {
            close(signal_pipe[i]);
            signal_pipe[i] = -1;
        }
    free(w);
    return rc;
}

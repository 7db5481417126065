/* The operations routes: GET /healthz, /readyz, /metrics, the /streams listing, the CORS
 * http_preflight, and the built-in demo upstream document. */
#include "http/internal.h"

#include "loop.h"
#include "metrics.h"
#include "sse.h"

enum MHD_Result http_route_stream_list(struct http_server *srv, struct MHD_Connection *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "streams");
    for (size_t i = 0; i < srv->p.nstreams; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", srv->p.streams[i].name);
        char path[128];
        snprintf(path, sizeof(path), "/streams/%s", srv->p.streams[i].name);
        cJSON_AddStringToObject(e, "path", path);
        if (srv->p.streams[i].push)
            cJSON_AddBoolToObject(e, "push", 1);
        else
            cJSON_AddNumberToObject(e, "interval_ms",
                                    (double)srv->p.streams[i].spec.poll.interval_ms);
        cJSON_AddItemToArray(a, e);
    }
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (body == NULL)
        return MHD_NO;
    enum MHD_Result rc =
        http_send_text(srv, c, MHD_HTTP_OK, "application/json", body, strlen(body));
    free(body);
    return rc;
}

/* ---- health, metrics, demo --------------------------------------------------------------- */

int http_register_metrics(struct http_server *srv)
{
    static const uint64_t one = 1;
    const struct hub_stats *s = hub_stats(srv->hub);
    struct metrics *m = srv->metrics;
    int rc = 0;
    rc |= metrics_add(m, "pollcast_build_info", METRICS_GAUGE,
                      "Always 1; the version label says which pollcast this is.", "version",
                      POLLCAST_VERSION, &one);
    rc |= metrics_add(m, "pollcast_subscribers", METRICS_GAUGE, "Connected subscribers.", NULL,
                      NULL, &s->subscribers);
    rc |= metrics_add(m, "pollcast_pollers", METRICS_GAUGE,
                      "Upstream pollers running on this node, named and ad-hoc.", NULL, NULL,
                      &s->pollers);
    static const char *const outcomes[] = {"changed", "unchanged", "not_modified", "failed",
                                           "rejected"};
    const uint64_t *polls[] = {&s->polls_changed, &s->polls_unchanged, &s->polls_not_modified,
                               &s->polls_failed, &s->polls_rejected};
    for (size_t i = 0; i < 5; i++)
        rc |= metrics_add(m, "pollcast_polls_total", METRICS_COUNTER,
                          "Upstream polls by outcome: changed, unchanged (same body), "
                          "not_modified (304), failed (transport or status), rejected (not JSON).",
                          "outcome", outcomes[i], polls[i]);
    rc |= metrics_add_histogram(m, "pollcast_upstream_latency_seconds",
                                "Upstream request time, from start to end.", &s->upstream_latency);
    rc |= metrics_add(m, "pollcast_upstream_bytes_total", METRICS_COUNTER,
                      "Bytes received from upstreams (on the wire).", NULL, NULL, &s->bytes_in);
    rc |= metrics_add(m, "pollcast_sent_bytes_total", METRICS_COUNTER,
                      "Bytes written to subscribers.", NULL, NULL, &s->bytes_out);
    rc |= metrics_add_histogram(m, "pollcast_patch_bytes",
                                "Size of each JSON Patch published, in bytes.", &s->patch_bytes);
    rc |= metrics_add(m, "pollcast_events_published_total", METRICS_COUNTER,
                      "Document events (data, patch) published to topics.", NULL, NULL,
                      &s->events_published);
    rc |= metrics_add(m, "pollcast_events_delivered_total", METRICS_COUNTER,
                      "Events written out whole to subscribers (keepalives excluded).", NULL, NULL,
                      &s->events_delivered);
    rc |= metrics_add(m, "pollcast_stream_writes_shared_total", METRICS_COUNTER,
                      "Stream writes an I/O thread made for a stream of another I/O thread that "
                      "had not got to it yet.",
                      NULL, NULL, sse_io_shared_writes(srv->sse));
    rc |= metrics_add(m, "pollcast_subscribers_reset_total", METRICS_COUNTER,
                      "Slow subscribers whose backlog was replaced by a snapshot.", NULL, NULL,
                      &s->subscribers_reset);
    rc |= metrics_add(m, "pollcast_publishes_total", METRICS_COUNTER,
                      "Documents published to push streams (PUT, PATCH), by outcome: changed (a "
                      "new version) or unchanged.",
                      "outcome", "changed", &s->publishes_changed);
    rc |= metrics_add(m, "pollcast_publishes_total", METRICS_COUNTER,
                      "Documents published to push streams (PUT, PATCH), by outcome: changed (a "
                      "new version) or unchanged.",
                      "outcome", "unchanged", &s->publishes_unchanged);
    for (size_t i = 0; i < REJECT_COUNT; i++)
        rc |= metrics_add(m, "pollcast_requests_rejected_total", METRICS_COUNTER,
                          "Requests refused, by reason.", "reason", http_reject_names[i],
                          &srv->rejected[i]);
    for (size_t i = 0; i < ENDED_COUNT; i++)
        rc |= metrics_add(m, "pollcast_streams_ended_total", METRICS_COUNTER,
                          "Streams the server ended while they went on, by reason: the token "
                          "expired, or a reload's [auth] no longer accepts it.",
                          "reason", http_ended_names[i], &srv->ended[i]);
    return rc ? -1 : 0;
}

struct metrics *http_server_metrics(struct http_server *srv)
{
    return srv->metrics;
}

enum MHD_Result http_route_metrics(struct http_server *srv, struct MHD_Connection *c)
{
    struct buf b;
    buf_init(&b, 0);
    if (metrics_write(srv->metrics, &b) != 0) {
        buf_dispose(&b);
        return MHD_NO;
    }
    enum MHD_Result rc = http_send_text(srv, c, MHD_HTTP_OK,
                                        "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_dispose(&b);
    return rc;
}

static uint64_t demo_rand(uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x;
}

/* The demo document is a function of the time alone (every answer for second t is the same), and
 * each second changes only a few of its values, in the ways real APIs change, so that the stream
 * shows small and varied patches:
 *   tick           every second
 *   prices         two of the ten symbols every second (symbol i moves when t % 5 == i % 5)
 *   orders         order n is placed at 4n (an add at the end), its quantity changes at 4n + 7,
 *                  every other order is rushed at 4n + 13 (set rush: true and moved to the front,
 *                  newest rush first), and it is filled at 4n + 30 (removed)
 *   filled_today   orders filled since midnight UTC
 * Order ids shown are 1000 + n % 9000: the id of an order is unique among the open ones. */
#define DEMO_SYMBOLS     10
#define DEMO_PLACE_EVERY 4u
#define DEMO_QTY_AT      7u
#define DEMO_RUSH_AT     13u
#define DEMO_FILL_AT     30u
#define DEMO_MAX_ORDERS  (DEMO_FILL_AT / DEMO_PLACE_EVERY + 1)

struct demo_order {
    uint64_t id;
    int rushed;
};

/* Rushed orders first, the most recently rushed (highest id) leading; then the others by id. */
static int demo_order_before(const struct demo_order *a, const struct demo_order *b)
{
    if (a->rushed != b->rushed)
        return a->rushed;
    return a->rushed ? a->id > b->id : a->id < b->id;
}

int http_demo_document(struct buf *out, uint64_t t)
{
    static const char *symbols[DEMO_SYMBOLS] = {"ACME",  "GLOBX",  "INITECH", "UMBRL",  "WAYNE",
                                                "STARK", "TYRELL", "CYBRDN",  "SOYLNT", "WONKA"};
    static const char *items[] = {"anvil",
                                  "rocket skates",
                                  "giant magnet",
                                  "tornado seeds",
                                  "jet-propelled pogo stick",
                                  "earthquake pills",
                                  "bird seed"};
    static const char *customers[] = {"Wile E. Coyote", "Elmer Fudd", "Yosemite Sam", "Marvin",
                                      "Daffy Duck"};
    int rc = buf_printf(out,
                        "{\"source\":\"pollcast demo\",\"tick\":%llu,\"currency\":\"USD\","
                        "\"prices\":{",
                        (unsigned long long)t);
    for (size_t i = 0; i < DEMO_SYMBOLS; i++) {
        /* step: how often symbol i has moved; a bounded walk of 7 scales around its base. */
        uint64_t step = (t + 5 - i % 5) / 5;
        long cents = 1000 + 1150 * (long)i;
        for (uint64_t k = 0; k < 7; k++)
            cents += (long)(demo_rand(i, step >> k) % 41) - 20;
        rc |= buf_printf(out, "%s\"%s\":%ld.%02ld", i ? "," : "", symbols[i], cents / 100,
                         cents % 100);
    }
    /* The open orders: placed (4n <= t) and not yet filled (t < 4n + 30). */
    struct demo_order o[DEMO_MAX_ORDERS];
    size_t n = 0;
    uint64_t last = t / DEMO_PLACE_EVERY;
    uint64_t first = t >= DEMO_FILL_AT ? (t - DEMO_FILL_AT) / DEMO_PLACE_EVERY + 1 : 0; /* filled */
    for (uint64_t id = first; id <= last && n < DEMO_MAX_ORDERS; id++) {
        struct demo_order x = {id,
                               (demo_rand(id, 7) & 1) && t >= id * DEMO_PLACE_EVERY + DEMO_RUSH_AT};
        size_t j = n++;
        for (; j > 0 && demo_order_before(&x, &o[j - 1]); j--)
            o[j] = o[j - 1];
        o[j] = x;
    }
    rc |= buf_puts(out, "},\"orders\":[");
    for (size_t k = 0; k < n; k++) {
        uint64_t id = o[k].id;
        int later = t >= id * DEMO_PLACE_EVERY + DEMO_QTY_AT;
        rc |=
            buf_printf(out,
                       "%s{\"id\":%llu,\"customer\":\"%s\",\"item\":\"%s\",\"qty\":%llu,"
                       "\"rush\":%s}",
                       k ? "," : "", (unsigned long long)(1000 + id % 9000), customers[id % 5],
                       items[id % 7], (unsigned long long)(1 + demo_rand(id, (uint64_t)later) % 9),
                       o[k].rushed ? "true" : "false");
    }
    uint64_t midnight = t - t % 86400;
    uint64_t before = midnight >= DEMO_FILL_AT ? (midnight - DEMO_FILL_AT) / DEMO_PLACE_EVERY + 1
                                               : 0; /* filled before midnight */
    rc |= buf_printf(out, "],\"filled_today\":%llu}", (unsigned long long)(first - before));
    return rc ? -1 : 0;
}

enum MHD_Result http_route_demo(struct http_server *srv, struct MHD_Connection *c)
{
    struct buf b;
    buf_init(&b, 0);
    if (http_demo_document(&b, loop_wall_ms() / 1000) != 0) {
        buf_dispose(&b);
        return MHD_NO;
    }
    enum MHD_Result rc = http_send_text(srv, c, MHD_HTTP_OK, "application/json", b.data, b.len);
    buf_dispose(&b);
    return rc;
}

/* ---- routing ----------------------------------------------------------------------------- */

/* The methods and request headers a cross-origin request to url may use: the publish routes
 * (PUT and PATCH on /streams/NAME, POST on /streams/NAME/refresh) also take a publisher's
 * Authorization, Content-Type and If-Match; plain reads revalidate with If-None-Match. */
static void preflight_allow(const struct http_server *srv, const char *url, const char **methods,
                            const char **headers)
{
    const char *name = strncmp(url, "/streams/", 9) == 0 ? url + 9 : NULL;
    size_t nlen = name ? strcspn(name, "/") : 0;
    if (nlen > 0 && name[nlen] == '\0') {
        *methods = "GET, PUT, PATCH, OPTIONS";
        *headers = "Last-Event-ID, Authorization, Cache-Control, Content-Type, If-Match, "
                   "If-None-Match";
    } else if (nlen > 0 && strcmp(name + nlen, "/refresh") == 0) {
        *methods = "POST, OPTIONS";
        *headers = "Authorization, Content-Type";
    } else {
        *methods = "GET, OPTIONS";
        *headers = srv->p.compat ? "Last-Event-ID, Authorization, Cache-Control, If-None-Match, "
                                   "X-Sd-Token, X-Sd-Header"
                                 : "Last-Event-ID, Authorization, Cache-Control, If-None-Match";
    }
}

enum MHD_Result http_preflight(struct http_server *srv, struct MHD_Connection *c, const char *url)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    const char *origin = http_cors_origin(srv, c);
    if (origin) {
        const char *methods, *headers;
        preflight_allow(srv, url, &methods, &headers);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", headers);
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result http_route_readyz(struct http_server *srv, struct MHD_Connection *c)
{
    if (srv->quiesced)
        return http_send_problem(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE, "Shutting down", NULL);
    if (srv->ready_fn == NULL)
        return http_send_text(srv, c, MHD_HTTP_OK, "application/json", "{\"status\":\"ready\"}",
                              18);
    struct buf b;
    buf_init(&b, 0);
    int ready = srv->ready_fn(srv->ready_arg, &b);
    struct buf out;
    buf_init(&out, 0);
    int rc = buf_printf(&out, "{\"status\":\"%s\"%s%.*s}", ready ? "ready" : "starting",
                        b.len ? "," : "", (int)b.len, b.data ? b.data : "");
    buf_dispose(&b);
    enum MHD_Result r =
        rc ? MHD_NO
           : http_send_text(srv, c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                            "application/json", out.data, out.len);
    buf_dispose(&out);
    return r;
}

void http_server_set_ready(struct http_server *srv, http_ready_fn fn, void *arg)
{
    srv->ready_fn = fn;
    srv->ready_arg = arg;
}

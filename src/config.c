/* The config module: one table of keys drives the INI parser (inih), the value checks, the
 * defaults, the POLLCAST_* environment overrides and the generated config.example.ini. */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

/* ---- the table --------------------------------------------------------------------------- */

enum sec { SEC_SERVER, SEC_UPSTREAM, SEC_ALLOW, SEC_AUTH, SEC_CLUSTER, SEC_COUNT };

static const char *const sec_names[SEC_COUNT] = {"server", "upstream", "allow", "auth", "cluster"};
static const char *const sec_env[SEC_COUNT] = {"SERVER", "UPSTREAM", "ALLOW", "AUTH", "CLUSTER"};

enum type {
    T_STRING, /* text without control characters */
    T_PATH,   /* a file name */
    T_TOKEN,  /* an HTTP token (a cookie name) */
    T_BOOL,
    T_UINT,     /* whole number within [min, max] */
    T_DURATION, /* milliseconds within [min, max] */
    T_SIZE,     /* bytes within [min, max] */
    T_ADDR,     /* listen address */
    T_ENUM,
    T_URL,      /* upstream URL */
    T_HEADERS,  /* repeatable "Name: value" */
    T_NAMES,    /* repeatable header names */
    T_PREFIXES, /* repeatable URL prefixes */
    T_ORIGINS,  /* repeatable CORS origins */
    T_CIDRS,    /* repeatable address ranges */
    T_PARAMS,   /* repeatable "name=value" query parameters */
};

#define F_REQUIRED 1u /* no default; the section is incomplete without it */
#define F_SECRET   2u /* never echoed in a message */
#define F_EMPTY    4u /* an empty value is allowed */
#define F_COMMA    8u /* in the environment, commas separate values too */

struct choice {
    const char *name;
    int value;
};

struct key {
    enum sec sec;
    const char *name;
    enum type type;
    size_t offset;     /* of the field in the section's struct */
    const char *def;   /* default, written as in the file; NULL: none */
    uint64_t min, max; /* bounds of T_UINT, T_DURATION (ms) and T_SIZE (bytes) */
    unsigned flags;
    const struct choice *choices; /* T_ENUM; ends with a NULL name */
    const char *example;          /* shown in config.example.ini when there is no default */
    const char *help;
};

static const struct choice modes[] = {
    {"patch", CONFIG_MODE_PATCH}, {"snapshot", CONFIG_MODE_SNAPSHOT}, {NULL, 0}};
static const struct choice log_levels[] = {{"error", CONFIG_LOG_ERROR},
                                           {"warn", CONFIG_LOG_WARN},
                                           {"info", CONFIG_LOG_INFO},
                                           {"debug", CONFIG_LOG_DEBUG},
                                           {NULL, 0}};
static const struct choice log_formats[] = {
    {"text", CONFIG_LOG_TEXT}, {"json", CONFIG_LOG_JSON}, {NULL, 0}};
static const struct choice methods[] = {{"GET", CONFIG_METHOD_GET},
                                        {"POST", CONFIG_METHOD_POST},
                                        {"PUT", CONFIG_METHOD_PUT},
                                        {"PATCH", CONFIG_METHOD_PATCH},
                                        {"REPORT", CONFIG_METHOD_REPORT},
                                        {"QUERY", CONFIG_METHOD_QUERY},
                                        {NULL, 0}};
static const struct choice oauth2_auths[] = {
    {"basic", CONFIG_OAUTH2_BASIC}, {"post", CONFIG_OAUTH2_POST}, {NULL, 0}};
static const struct choice io_affinities[] = {
    {"auto", CONFIG_IO_AFFINITY_AUTO}, {"none", CONFIG_IO_AFFINITY_NONE}, {NULL, 0}};
static const struct choice algorithms[] = {{"HS256", CONFIG_AUTH_HS256},
                                           {"RS256", CONFIG_AUTH_RS256},
                                           {"ES256", CONFIG_AUTH_ES256},
                                           {NULL, 0}};

/* Enumerations are stored through an int. */
_Static_assert(sizeof(enum config_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_auth_alg) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_method) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_oauth2_auth) == sizeof(int), "enum size");

#define MS_S 1000ull
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * MS_H)
#define KIB  1024ull
#define MIB  (1024 * KIB)
#define GIB  (1024 * MIB)

#define SRV(n, t, f)                                                                               \
    .sec = SEC_SERVER, .name = n, .type = t, .offset = offsetof(struct config_server, f)
#define UPS(n, t, f)                                                                               \
    .sec = SEC_UPSTREAM, .name = n, .type = t, .offset = offsetof(struct config_upstream, f)
#define ALW(n, t, f)                                                                               \
    .sec = SEC_ALLOW, .name = n, .type = t, .offset = offsetof(struct config_allow, f)
#define AUT(n, t, f)                                                                               \
    .sec = SEC_AUTH, .name = n, .type = t, .offset = offsetof(struct config_auth, f)
#define CLU(n, t, f)                                                                               \
    .sec = SEC_CLUSTER, .name = n, .type = t, .offset = offsetof(struct config_cluster, f)

/* Every key pollcast knows. The order is the order of config.example.ini; a key's place among
 * those of its section indexes struct config_origin. */
static const struct key keys[] = {
    /* [server] */
    {SRV("listen", T_ADDR, listen), .def = "127.0.0.1:8080",
     .help = "Address and port to accept subscribers on: an IPv4 address and port, or an IPv6 "
             "address in brackets. 0.0.0.0:8080 or [::]:8080 listen on every interface; port 0 "
             "takes any free port, which pollcast logs when it starts."},
    {SRV("max_connections", T_UINT, max_connections), .def = "65536", .min = 16, .max = 1048576,
     .help = "Most client connections open at once, streams and other requests together. "
             "pollcast raises its open-file limit (RLIMIT_NOFILE) to fit when it starts."},
    {SRV("listen_backlog", T_UINT, listen_backlog), .def = "4096", .min = 1, .max = 65535,
     .help = "Connections the kernel may hold for pollcast before it accepts them (the listen(2) "
             "backlog; the kernel caps it at net.core.somaxconn)."},
    {SRV("max_subscribers", T_UINT, max_subscribers), .def = "50000", .min = 1, .max = 10000000,
     .help = "Most subscribers at once, over all streams. Past it a new subscriber is turned "
             "away with overload_retry."},
    {SRV("max_subscribers_per_ip", T_UINT, max_subscribers_per_ip), .def = "1000", .min = 0,
     .max = 10000000,
     .help = "Most subscribers at once from one client address; 0 means no limit. Behind a load "
             "balancer or reverse proxy every client has the proxy's address: raise it or set "
             "it to 0 there."},
    {SRV("connect_rate_per_ip", T_UINT, connect_rate_per_ip), .def = "50", .min = 0,
     .max = 10000000,
     .help = "New connections per second accepted from one client address (a token bucket "
             "refilled at this rate); 0 means no limit. Connections past it are refused. Behind "
             "a proxy, see max_subscribers_per_ip."},
    {SRV("connect_burst_per_ip", T_UINT, connect_burst_per_ip), .def = "200", .min = 1,
     .max = 10000000,
     .help = "Size of that token bucket: how many connections one address may open in a burst "
             "before connect_rate_per_ip applies."},
    {SRV("max_pollers", T_UINT, max_pollers), .def = "2048", .min = 1, .max = 1000000,
     .help = "Most upstream pollers running at once, named and ad-hoc together. A subscription "
             "that needs one more poller is turned away with overload_retry."},
    {SRV("max_url_length", T_UINT, max_url_length), .def = "2048", .min = 256, .max = 1048576,
     .help = "Longest request target (path and query, as received) accepted from a client, in "
             "bytes; longer ones, and queries of more than 32 parameters, are refused (414, "
             "problem+json). Each KiB here adds a KiB to every connection's memory while its "
             "request is read (see max_header_bytes)."},
    {SRV("max_header_bytes", T_SIZE, max_header_bytes), .def = "2KiB", .min = KIB, .max = MIB,
     .help = "Most bytes of header lines accepted from a client: every line as received, with "
             "its CRLF, not counting the request line (see max_url_length) or the empty line "
             "that ends them. Larger requests, and requests of more than 48 header fields "
             "(each cookie counting as one), are refused (431, problem+json). With "
             "max_url_length it sizes the buffer each connection reads its request into, which "
             "a stream gives back once under way (README, Limits). Raise it for clients that "
             "send large cookies."},
    {SRV("request_timeout", T_DURATION, request_timeout_ms), .def = "10s", .min = MS_S, .max = MS_H,
     .help = "Time a client has to send its whole request; slower connections are closed "
             "(slowloris). Streams, once started, have no time limit."},
    {SRV("tcp_keepalive", T_DURATION, tcp_keepalive_ms), .def = "60s", .min = 0, .max = 2 * MS_H,
     .help = "Idle time after which the kernel probes a quiet connection, so that clients that "
             "vanished are noticed while their stream waits; 0 turns TCP keepalive off."},
    {SRV("keepalive", T_DURATION, keepalive_ms), .def = "15s", .min = MS_S, .max = MS_H,
     .help = "Interval of the \": keepalive\" comment written to every stream, so that proxies "
             "and load balancers do not close quiet streams."},
    {SRV("retry", T_DURATION, retry_ms), .def = "2s", .min = 100, .max = MS_H,
     .help = "Base of the reconnection delay sent in each stream's retry: field."},
    {SRV("retry_jitter", T_DURATION, retry_jitter_ms), .def = "2s", .min = 0, .max = MS_H,
     .help = "Random extra added to retry, chosen per connection, so that clients do not all come "
             "back in the same millisecond after a restart."},
    {SRV("overload_retry", T_DURATION, overload_retry_ms), .def = "30s", .min = MS_S, .max = MS_D,
     .help = "retry: sent to a subscriber turned away by a temporary limit (max_subscribers, "
             "max_pollers, ...): it gets 200, this retry: and the end of the stream, because any "
             "other status would stop its EventSource for good."},
    {SRV("history_events", T_UINT, history_events), .def = "1024", .min = 0, .max = 10000000,
     .help = "Patch events kept per stream for clients that resume with Last-Event-ID; 0 keeps "
             "none (a client that reconnects always gets a fresh snapshot)."},
    {SRV("history_bytes", T_SIZE, history_bytes), .def = "4MiB", .min = 0, .max = GIB,
     .help = "Most bytes of patch events kept per stream for resuming; the oldest go first."},
    {SRV("history_age", T_DURATION, history_age_ms), .def = "1h", .min = 0, .max = 7 * MS_D,
     .help = "Age after which a patch event leaves the history; 0 means no age limit."},
    {SRV("queue_events", T_UINT, queue_events), .def = "256", .min = 1, .max = 10000000,
     .help = "Most events waiting to be sent to one subscriber. A subscriber that falls this far "
             "behind has its backlog replaced by one fresh data snapshot; it is not dropped."},
    {SRV("queue_bytes", T_SIZE, queue_bytes), .def = "1MiB", .min = 4 * KIB, .max = GIB,
     .help = "Most bytes waiting to be sent to one subscriber; past it the backlog is replaced by "
             "a fresh snapshot in the same way."},
    {SRV("cors_origin", T_ORIGINS, cors_origin), .flags = F_COMMA,
     .example = "https://app.example.com",
     .help = "Web origin allowed to open streams from a browser page of another site (CORS), as "
             "scheme://host[:port], or * for any. Repeatable; by default none (no CORS headers)."},
    {SRV("log_level", T_ENUM, log_level), .def = "info", .choices = log_levels,
     .help = "Least severe messages written to the log (stderr)."},
    {SRV("log_format", T_ENUM, log_format), .def = "text", .choices = log_formats,
     .help = "text: one readable line per event; json: one JSON object per line."},
    {SRV("access_log", T_BOOL, access_log), .def = "true",
     .help = "Log one line for every stream opened and closed, with its duration and the number "
             "of events sent."},
    {SRV("metrics", T_BOOL, metrics), .def = "true",
     .help = "Serve Prometheus metrics at GET /metrics."},
    {SRV("viewer", T_BOOL, viewer), .def = "true", .help = "Serve the live viewer page at GET /."},
    {SRV("streamdata_compat", T_BOOL, streamdata_compat), .def = "false",
     .help = "Also accept the Streamdata.io form GET /{absolute-url} with X-Sd-Token and "
             "X-Sd-Header; its URLs must pass the [allow] rules like those of /proxy."},
    {SRV("adhoc_grace", T_DURATION, adhoc_grace_ms), .def = "30s", .min = 0, .max = MS_D,
     .help = "How long an ad-hoc poller goes on after its last subscriber left, so that a client "
             "that comes back finds it warm."},
    {SRV("shutdown_grace", T_DURATION, shutdown_grace_ms), .def = "4s", .min = 0, .max = 60 * MS_S,
     .help = "On SIGTERM or SIGINT, time given to streams to end cleanly before pollcast exits."},
    {SRV("io_threads", T_UINT, io_threads), .def = "0", .min = 0, .max = 64,
     .help = "Threads that write the event streams: 0 takes the number of CPUs pollcast may run "
             "on (its CPU affinity, as set by taskset or a container's cpuset; at most 64); 1 "
             "writes every stream on the main thread. With 2 or more, the main thread "
             "accepts, routes and polls and hands each stream to one of these threads once it "
             "is under way. Needs a restart."},
    {SRV("io_cpu_affinity", T_ENUM, io_cpu_affinity), .def = "auto", .choices = io_affinities,
     .help = "auto: when there is one I/O thread per CPU pollcast may run on (io_threads = 0, "
             "or that number), each is bound to a CPU of its own, so that the kernel never "
             "runs two of them on one CPU while another waits (bench/RESULTS.md); the main "
             "thread stays free. none: the kernel places them. Needs a restart."},

    /* [upstream NAME] */
    {UPS("url", T_URL, url), .flags = F_REQUIRED, .example = "https://api.example.com/v1/prices",
     .help = "The JSON resource to poll: an http:// or https:// URL without credentials (send "
             "them in a header), or builtin:demo for the demo document pollcast serves itself."},
    {UPS("interval", T_DURATION, interval_ms), .def = "5s", .min = 100, .max = MS_D,
     .help = "Time between two polls. A client may ask for another with ?interval=SECONDS, "
             "which is clamped to [min_interval, max_interval]."},
    {UPS("min_interval", T_DURATION, min_interval_ms), .def = "1s", .min = 100, .max = MS_D,
     .help = "Shortest interval a client may ask for. The default is 1s, or interval when that "
             "is shorter."},
    {UPS("max_interval", T_DURATION, max_interval_ms), .def = "1h", .min = 100, .max = MS_D,
     .help = "Longest interval a client may ask for. The default is 1h, or interval when that is "
             "longer."},
    {UPS("mode", T_ENUM, mode), .def = "patch", .choices = modes,
     .help = "What subscribers get on each change unless they ask with ?mode=: patch (an RFC "
             "6902 patch event) or snapshot (the whole document as a data event)."},
    {UPS("header", T_HEADERS, header), .flags = F_SECRET, .example = "Authorization: Bearer SECRET",
     .help = "Header added to every request to this upstream, as \"Name: value\" (an API key, "
             "say). Repeatable. Never shown to subscribers nor logged. Hop-by-hop headers "
             "(Connection, Transfer-Encoding, ...), Content-Length and Accept-Encoding cannot be "
             "set."},
    {UPS("forward_header", T_NAMES, forward_header), .flags = F_COMMA, .example = "Accept-Language",
     .help = "Name of a client request header passed on to the upstream. Repeatable; by default "
             "none. Subscribers that send different values share no poller."},
    {UPS("timeout", T_DURATION, timeout_ms), .def = "30s", .min = 100, .max = 10 * MS_M,
     .help = "Longest time one request may take, connecting included; the poller also keeps it "
             "shorter than the poll interval."},
    {UPS("connect_timeout", T_DURATION, connect_timeout_ms), .def = "3s", .min = 100,
     .max = 5 * MS_M, .help = "Longest time to connect (name lookup, TCP and TLS)."},
    {UPS("max_body", T_SIZE, max_body), .def = "8MiB", .min = KIB, .max = GIB,
     .help = "Largest response body accepted, counted after decompression; a larger one is an "
             "upstream error."},
    {UPS("id_key", T_STRING, id_key), .def = "id", .flags = F_EMPTY,
     .help = "Member that identifies the objects of an array from one poll to the next, so that "
             "a changed element is patched in place instead of removed and added again. Empty: "
             "elements are matched by content only."},
    {UPS("error_repeat", T_DURATION, error_repeat_ms), .def = "30s", .min = MS_S, .max = MS_D,
     .help = "While the upstream keeps failing, upstream-error is sent at the first failure and "
             "then at most once per this time."},
    {UPS("backoff_max", T_DURATION, backoff_max_ms), .def = "1m", .min = MS_S, .max = MS_D,
     .help = "Longest wait between two polls while the upstream fails (the wait grows "
             "exponentially, with jitter, from interval; Retry-After is honoured up to it)."},
    {UPS("follow_redirects", T_BOOL, follow_redirects), .def = "true",
     .help = "Follow HTTP redirects. Configured headers are never sent to another origin."},
    {UPS("max_redirects", T_UINT, max_redirects), .def = "5", .min = 0, .max = 20,
     .help = "Most redirects followed for one request."},
    {UPS("tls_verify", T_BOOL, tls_verify), .def = "true",
     .help = "Verify the upstream's TLS certificate and host name. Turn it off only for a test "
             "server you trust."},
    {UPS("ca_file", T_PATH, ca_file), .example = "/etc/pollcast/upstream-ca.pem",
     .help = "PEM file of the certificate authorities to trust for this upstream, instead of "
             "the system's."},
    {UPS("accept_any_content_type", T_BOOL, accept_any_content_type), .def = "false",
     .help = "Accept a body of any Content-Type (text/plain, application/octet-stream, ...) "
             "when it parses as JSON. Off: only application/json, text/json, *+json or no "
             "Content-Type are accepted, and other types are an upstream-error."},
    {UPS("method", T_ENUM, method), .def = "GET", .choices = methods,
     .help = "HTTP method of each poll. POST, PUT, PATCH, REPORT and QUERY send body or "
             "body_file (search and GraphQL endpoints). Conditional requests (If-None-Match, "
             "If-Modified-Since) are sent only with GET and QUERY. The method and the body are "
             "part of the upstream's identity: a change ends its streams on reload."},
    {UPS("body", T_STRING, body), .example = "{\"query\":\"{ prices { symbol last } }\"}",
     .help = "Request body sent with each poll, as written (one line). Needs a method other "
             "than GET; not with body_file."},
    {UPS("body_file", T_PATH, body_file), .example = "/etc/pollcast/prices-query.json",
     .help = "File whose bytes are the request body, read when pollcast starts and on each "
             "reload (SIGHUP), at most 1 MiB. Needs a method other than GET; not with body."},
    {UPS("content_type", T_STRING, content_type), .example = "application/graphql",
     .help = "Content-Type of the request body. Default: application/json when a body is set; "
             "only with body or body_file."},
    {UPS("query", T_PARAMS, query), .flags = F_SECRET, .example = "api_key=SECRET",
     .help = "Query parameter added to the URL of every request, as name=value (written plain: "
             "pollcast percent-encodes it), after those the url already has. Repeatable. Kept "
             "server-side like header: never shown to subscribers, in logs or in metrics."},
    {UPS("respect_cache_control", T_BOOL, respect_cache_control), .def = "false",
     .help = "Take the upstream's Cache-Control: max-age=N (less its Age) as a floor on the "
             "poll interval: after such an answer the next poll waits at least N seconds, at "
             "most max_interval. no-store, no-cache and max-age=0 set no floor."},
    {UPS("oauth2_token_url", T_URL, oauth2_token_url), .example = "https://auth.example.com/token",
     .help = "Turns on OAuth2 client credentials (RFC 6749 section 4.4): pollcast POSTs "
             "grant_type=client_credentials here with HTTP Basic client authentication and sends "
             "the access token it gets as Authorization: Bearer. One token per upstream, shared "
             "by all its pollers, renewed before it expires and once when the upstream answers "
             "401. The same tls_verify, ca_file, timeout and max_body apply."},
    {UPS("oauth2_client_id", T_STRING, oauth2_client_id), .example = "pollcast",
     .help = "The OAuth2 client id; required with oauth2_token_url."},
    {UPS("oauth2_client_secret", T_STRING, oauth2_client_secret), .flags = F_SECRET,
     .example = "SECRET",
     .help = "The OAuth2 client secret. Never logged nor shown. Prefer "
             "oauth2_client_secret_file or the environment."},
    {UPS("oauth2_client_secret_file", T_PATH, oauth2_client_secret_file),
     .example = "/run/secrets/prices-client-secret",
     .help = "File whose first line is the client secret (read at start and on reload, at most "
             "4 KiB); instead of oauth2_client_secret."},
    {UPS("oauth2_scope", T_STRING, oauth2_scope), .example = "prices:read",
     .help = "scope sent to the token endpoint; not sent when unset."},
    {UPS("oauth2_audience", T_STRING, oauth2_audience), .example = "https://api.example.com/",
     .help = "audience sent to the token endpoint (Auth0, Okta and others ask for it); not "
             "sent when unset."},
    {UPS("oauth2_client_auth", T_ENUM, oauth2_client_auth), .def = "basic", .choices = oauth2_auths,
     .help = "How the client authenticates to the token endpoint: basic (HTTP Basic, "
             "client_secret_basic) or post (client_id and client_secret in the form, "
             "client_secret_post)."},
    {UPS("publish_token_file", T_PATH, publish_token_file), .example = "/run/secrets/publisher",
     .help =
         "A file whose first line is the publishers' secret: Authorization: Bearer SECRET lets a "
         "backend PUT and PATCH documents to a [stream NAME] and POST /streams/NAME/refresh "
         "on an upstream. Publishers may also use a JWT with a pollcast.publish claim."},
    {UPS("state_file", T_PATH, state_file), .example = "/var/lib/pollcast/orders.json",
     .help = "[stream NAME] only: the last published document is written here atomically "
             "(temporary file, fsync, rename) and served again after a restart. Without it, a "
             "stream starts empty: subscribers get no data event until the first publish. Not "
             "in cluster mode, where the document is kept in Redis."},

    /* [allow] */
    {ALW("url_prefix", T_PREFIXES, url_prefix), .example = "https://api.example.com/",
     .help = "An ad-hoc URL (GET /proxy?url=) is allowed when it starts with one of these, "
             "compared after normalization. Each is an http:// or https:// URL with at least "
             "a / after the host, so that https://api.example.com.evil.example/ cannot pass. "
             "Repeatable; by default none, and /proxy refuses everything."},
    {ALW("cidr", T_CIDRS, cidr), .flags = F_COMMA, .example = "10.0.0.0/8",
     .help = "Address range that ad-hoc upstreams may reach although it is loopback, private, "
             "link-local or otherwise not public, written address/prefix. Repeatable; by default "
             "none. Named upstreams are not restricted."},
    {ALW("follow_redirects", T_BOOL, follow_redirects), .def = "false",
     .help = "Follow redirects of ad-hoc upstreams; each hop must pass url_prefix and the "
             "address rules again, and a hop that does not is never requested."},
    {ALW("max_redirects", T_UINT, max_redirects), .def = "3", .min = 0, .max = 20,
     .help = "Most redirects followed for one request when follow_redirects is on."},
    {ALW("max_pollers", T_UINT, max_pollers), .def = "256", .min = 0, .max = 1000000,
     .help = "Most ad-hoc pollers at once (they also count in [server] max_pollers); 0 turns "
             "ad-hoc upstreams off."},
    {ALW("interval", T_DURATION, interval_ms), .def = "5s", .min = 100, .max = MS_D,
     .help = "Poll interval of an ad-hoc upstream whose client names none."},
    {ALW("min_interval", T_DURATION, min_interval_ms), .def = "1s", .min = 100, .max = MS_D,
     .help = "Shortest interval a client may ask for. The default is 1s, or interval when that "
             "is shorter."},
    {ALW("max_interval", T_DURATION, max_interval_ms), .def = "1h", .min = 100, .max = MS_D,
     .help = "Longest interval a client may ask for. The default is 1h, or interval when that is "
             "longer."},
    {ALW("mode", T_ENUM, mode), .def = "patch", .choices = modes,
     .help = "What subscribers of ad-hoc upstreams get on each change unless they ask with "
             "?mode=."},
    {ALW("forward_header", T_NAMES, forward_header), .flags = F_COMMA, .example = "Accept-Language",
     .help = "Name of a client request header passed on to ad-hoc upstreams. Repeatable; by "
             "default none."},
    {ALW("timeout", T_DURATION, timeout_ms), .def = "30s", .min = 100, .max = 10 * MS_M,
     .help = "Longest time one request may take, connecting included; the poller also keeps it "
             "shorter than the poll interval."},
    {ALW("connect_timeout", T_DURATION, connect_timeout_ms), .def = "3s", .min = 100,
     .max = 5 * MS_M,
     .help = "Longest time to connect (name lookup, TCP and TLS); also the longest wait for the "
             "name lookup that checks a new ad-hoc URL's addresses before its stream starts."},
    {ALW("max_body", T_SIZE, max_body), .def = "8MiB", .min = KIB, .max = GIB,
     .help = "Largest response body accepted, counted after decompression."},
    {ALW("id_key", T_STRING, id_key), .def = "id", .flags = F_EMPTY,
     .help = "Member that identifies the objects of an array from one poll to the next; empty: "
             "by content only."},
    {ALW("error_repeat", T_DURATION, error_repeat_ms), .def = "30s", .min = MS_S, .max = MS_D,
     .help = "While an upstream keeps failing, upstream-error is sent at most once per this "
             "time."},
    {ALW("backoff_max", T_DURATION, backoff_max_ms), .def = "1m", .min = MS_S, .max = MS_D,
     .help = "Longest wait between two polls while an upstream fails."},
    {ALW("tls_verify", T_BOOL, tls_verify), .def = "true",
     .help = "Verify the TLS certificate and host name of ad-hoc upstreams."},
    {ALW("ca_file", T_PATH, ca_file), .example = "/etc/pollcast/upstream-ca.pem",
     .help = "PEM file of the certificate authorities to trust for ad-hoc upstreams, instead of "
             "the system's."},
    {ALW("accept_any_content_type", T_BOOL, accept_any_content_type), .def = "false",
     .help = "Accept a body of any Content-Type from ad-hoc upstreams when it parses as JSON. "
             "Off: only application/json, text/json, *+json or no Content-Type."},

    /* [auth] */
    {AUT("algorithm", T_ENUM, algorithm), .choices = algorithms, .example = "HS256",
     .help = "Turns authentication on: every stream then needs a JWT signed with this algorithm, "
             "sent as Authorization: Bearer, as the access_token query parameter or in the "
             "cookie. Tokens that name another algorithm, none included, are refused."},
    {AUT("secret", T_STRING, secret), .flags = F_SECRET,
     .example = "replace-with-32-or-more-random-bytes",
     .help = "The HS256 key, at least 32 bytes. Prefer the environment (POLLCAST_AUTH_SECRET) to "
             "the file."},
    {AUT("public_key_file", T_PATH, public_key_file), .example = "/etc/pollcast/jwt-public.pem",
     .help = "PEM file of the public key for RS256 or ES256."},
    {AUT("audience", T_STRING, audience), .example = "pollcast",
     .help = "When set, the token's aud claim must hold it."},
    {AUT("issuer", T_STRING, issuer), .example = "https://auth.example.com/",
     .help = "When set, the token's iss claim must equal it."},
    {AUT("claim", T_STRING, claim), .def = "pollcast.subscribe",
     .help = "Claim listing what a token may subscribe to: stream names, and URL prefixes for "
             "ad-hoc upstreams."},
    {AUT("leeway", T_DURATION, leeway_ms), .def = "30s", .min = 0, .max = 10 * MS_M,
     .help = "Clock difference tolerated when checking exp and nbf."},
    {AUT("cookie", T_TOKEN, cookie), .def = "pollcast_token",
     .help = "Name of the cookie that may carry the token."},

    /* [cluster] */
    {CLU("redis", T_STRING, redis), .flags = F_SECRET, .example = "redis://127.0.0.1:6379/0",
     .help = "Turns cluster mode on: the Redis (or Valkey, KeyDB) that the nodes share, as "
             "redis://host:port/db, redis://:PASSWORD@host:port/db (or USER:PASSWORD@) or "
             "unix:/path/to/redis.sock (?db=N). Port 6379 and db 0 by default. Prefer the "
             "environment (POLLCAST_CLUSTER_REDIS) when it holds a password."},
    {CLU("node_id", T_STRING, node_id), .example = "web-1",
     .help = "This node's name in the logs, the metrics and Redis: 1 to 64 of A-Z a-z 0-9 . _ -. "
             "By default the host name and the process id (web-1-4242)."},
    {CLU("lease", T_DURATION, lease_ms), .def = "3s", .min = 500, .max = MS_M,
     .help = "How long a node's ownership of a topic (the right to poll it and append to its "
             "history) lasts without renewal; it is renewed every third of this. When the "
             "polling node dies, another one takes over within lease plus one interval."},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const size_t origin_offset[SEC_COUNT] = {
    offsetof(struct config_server, origin), offsetof(struct config_upstream, origin),
    offsetof(struct config_allow, origin), offsetof(struct config_auth, origin),
    offsetof(struct config_cluster, origin)};

static const char *const sec_help[SEC_COUNT] = {
    "The HTTP side: where pollcast listens, its limits, streams and logs.",
    "A named upstream, served as GET /streams/NAME. One section per upstream; NAME is 1 to 64 of "
    "A-Z a-z 0-9 . _ -. Named upstreams are the operator's: they may point anywhere, internal "
    "addresses included. A [stream NAME] section is a push stream: the same keys without url, "
    "a backend publishes its documents (PUT, PATCH /streams/NAME) instead of pollcast polling.",
    "Ad-hoc upstreams (GET /proxy?url=, and the Streamdata.io form): the URLs clients may have "
    "pollcast poll, and the settings those pollers use.",
    "JWT authentication of subscribers; off unless algorithm is set. /healthz, /readyz and "
    "/metrics need no token.",
    "Cluster mode; off unless redis is set. Nodes sharing one Redis poll each upstream once "
    "between them (a lease per topic), share one history and one id sequence (a Redis Stream "
    "per topic), so that a client resumes on any node, and hand polling over when a node dies. "
    "One Redis server, not Redis Cluster: a node reads all its topics with one command.",
};

/* The name of the upstream shown in config.example.ini. */
#define EXAMPLE_UPSTREAM "prices"

/* ---- small helpers ----------------------------------------------------------------------- */

/* Writes a formatted message into msg and returns -1, so that checks can `return msgf(...)`. */
static int msgf(char *msg, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int msgf(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (len > 0)
        vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies a value for a message: at most 64 bytes, control characters shown as '?'. */
static void quote(const char *v, char *out, size_t n)
{
    size_t i = 0, j = 0;
    while (v[i] && j + 4 < n && i < 64) {
        unsigned char c = (unsigned char)v[i++];
        out[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (v[i] && j + 4 < n) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
}

static bool has_ctl(const char *s, bool tab_ok)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
            return true;
    }
    return false;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static char upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 9110 tchar. */
static bool is_tchar(char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool eq_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (lower(*a) != lower(*b))
            return false;
    return *a == *b;
}

static bool prefix_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (lower(*s) != lower(*prefix))
            return false;
    return true;
}

/* The index of k among the keys of its section: its slot in struct config_origin. */
static int key_slot(const struct key *k)
{
    int slot = 0;
    for (const struct key *q = keys; q < k; q++)
        if (q->sec == k->sec)
            slot++;
    return slot;
}

static const struct key *find_key(enum sec s, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].sec == s && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static bool is_list(const struct key *k)
{
    return k->type == T_HEADERS || k->type == T_NAMES || k->type == T_PREFIXES ||
           k->type == T_ORIGINS || k->type == T_CIDRS || k->type == T_PARAMS;
}

static void *field(void *base, const struct key *k)
{
    return (char *)base + k->offset;
}

static const void *cfield(const void *base, const struct key *k)
{
    return (const char *)base + k->offset;
}

static struct config_origin *origin_of(void *base, enum sec s)
{
    return (struct config_origin *)((char *)base + origin_offset[s]);
}

static const struct config_origin *corigin_of(const void *base, enum sec s)
{
    return (const struct config_origin *)((const char *)base + origin_offset[s]);
}

/* Levenshtein distance of two short strings, capped at 9. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 9;
    int row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (up + 1 < best)
                best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] > 9 ? 9 : row[lb];
}

/* Writes why name is no key of section s: a close spelling, or the section it belongs to. */
static void unknown_key_hint(enum sec s, const char *name, char *out, size_t n)
{
    const struct key *best = NULL;
    int bestd = 3;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].sec != s)
            continue;
        int d = distance(name, keys[i].name);
        if (d < bestd && (size_t)d < strlen(name)) {
            bestd = d;
            best = &keys[i];
        }
    }
    out[0] = '\0';
    if (strpbrk(name, " \t") != NULL) {
        snprintf(out, n, " (is \"=\" missing?)");
        return;
    }
    if (best != NULL) {
        snprintf(out, n, " (did you mean \"%s\"?)", best->name);
        return;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].sec != s && strcmp(keys[i].name, name) == 0) {
            snprintf(out, n, " (it belongs in [%s%s])", sec_names[keys[i].sec],
                     keys[i].sec == SEC_UPSTREAM ? " NAME" : "");
            return;
        }
    }
}

/* ---- formatting of durations and sizes ----------------------------------------------------- */

static void fmt_duration(uint64_t ms, char *out, size_t n)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{MS_D, "d"}, {MS_H, "h"}, {MS_M, "m"}, {MS_S, "s"}};
    if (ms == 0) {
        snprintf(out, n, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0) {
            snprintf(out, n, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    if (ms > MS_S && ms % 10 == 0) {
        unsigned frac = (unsigned)(ms % MS_S);
        int digits = frac % 100 == 0 ? 1 : 2;
        snprintf(out, n, "%llu.%0*us", (unsigned long long)(ms / MS_S), digits,
                 digits == 1 ? frac / 100 : frac / 10);
        return;
    }
    snprintf(out, n, "%llums", (unsigned long long)ms);
}

static void fmt_size(uint64_t b, char *out, size_t n)
{
    static const struct {
        uint64_t mult;
        const char *unit;
    } units[] = {{GIB, "GiB"}, {MIB, "MiB"}, {KIB, "KiB"}};
    for (size_t i = 0; b != 0 && i < sizeof units / sizeof units[0]; i++) {
        if (b % units[i].mult == 0) {
            snprintf(out, n, "%llu%s", (unsigned long long)(b / units[i].mult), units[i].unit);
            return;
        }
    }
    snprintf(out, n, "%llu", (unsigned long long)b);
}

/* The bound v of key k, written the way a user would write it. */
static void fmt_bound(const struct key *k, uint64_t v, char *out, size_t n)
{
    if (k->type == T_DURATION)
        fmt_duration(v, out, n);
    else if (k->type == T_SIZE)
        fmt_size(v, out, n);
    else
        snprintf(out, n, "%llu", (unsigned long long)v);
}

/* ---- value parsers ----------------------------------------------------------------------- */

/* Parses "DIGITS[.DIGITS]" at *s times mult, exactly. Returns 0 and advances *s, -1 when it is
 * not a number or not a whole multiple of 1/mult, -2 on overflow. */
static int parse_scaled(const char **s, uint64_t mult, uint64_t *out)
{
    const char *p = *s;
    uint64_t whole = 0;
    int ndig = 0;
    bool overflow = false;
    for (; is_digit(*p); p++, ndig++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            whole = whole * 10 + d;
    }
    uint64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        int fdig = 0;
        for (; is_digit(*p); p++, fdig++) {
            if (scale >= 1000000000000ull)
                return -1; /* more precision than any unit needs */
            frac = frac * 10 + (unsigned)(*p - '0');
            scale *= 10;
        }
        if (fdig == 0)
            return -1;
    }
    if (ndig == 0)
        return -1;
    if (overflow || (mult != 0 && whole > UINT64_MAX / mult))
        return -2;
    uint64_t v = whole * mult;
    /* frac * mult may overflow: divide first when that is exact. */
    if (frac != 0) {
        uint64_t f;
        if (mult % scale == 0)
            f = frac * (mult / scale);
        else if (frac <= UINT64_MAX / mult && (frac * mult) % scale == 0)
            f = frac * mult / scale;
        else
            return -1;
        if (v > UINT64_MAX - f)
            return -2;
        v += f;
    }
    *s = p;
    *out = v;
    return 0;
}

/* A unit a number may carry, and what it multiplies by. */
struct unit {
    const char *name;
    uint64_t mult;
};

/* Reads "<number><spaces><unit>" where unit is one of units[0..n) (compared without case when
 * nocase). Returns 0 with *out, -1 when malformed, -2 on overflow (as parse_scaled). */
static int parse_with_unit(const char *v, const struct unit *units, size_t n, int nocase,
                           uint64_t *out)
{
    const char *q = v;
    while (is_digit(*q) || *q == '.')
        q++;
    const char *u = q;
    while (is_space(*u))
        u++;
    for (size_t i = 0; i < n; i++) {
        if (nocase ? !eq_nocase(u, units[i].name) : strcmp(u, units[i].name) != 0)
            continue;
        const char *p = v;
        uint64_t value;
        int rc = parse_scaled(&p, units[i].mult, &value);
        if (rc != 0)
            return rc;
        if (p != q)
            return -1;
        *out = value;
        return 0;
    }
    return -1;
}

/* Durations: a number and a unit (ms, s, m, h, d); a bare number is seconds. */
static int parse_duration(const char *v, uint64_t *ms)
{
    static const struct unit units[] = {{"", MS_S},  {"ms", 1},   {"s", MS_S},
                                        {"m", MS_M}, {"h", MS_H}, {"d", MS_D}};
    return parse_with_unit(v, units, sizeof(units) / sizeof(units[0]), 0, ms);
}

/* Sizes: a number and a unit (B, kB, MB, GB, KiB, MiB, GiB, any case); a bare number is bytes. */
static int parse_size(const char *v, uint64_t *bytes)
{
    static const struct unit units[] = {{"", 1},         {"b", 1},           {"kb", 1000},
                                        {"mb", 1000000}, {"gb", 1000000000}, {"kib", KIB},
                                        {"mib", MIB},    {"gib", GIB}};
    return parse_with_unit(v, units, sizeof(units) / sizeof(units[0]), 1, bytes);
}

static int parse_uint(const char *v, uint64_t *out)
{
    const char *p = v;
    while (is_digit(*p))
        p++;
    if (*p != '\0' || p == v)
        return -1;
    p = v;
    return parse_scaled(&p, 1, out);
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (eq_nocase(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (eq_nocase(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_port(const char *p, uint16_t *port)
{
    uint64_t v;
    if (strlen(p) > 5 || parse_uint(p, &v) != 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* host:port with a numeric IPv4 host, or [IPv6]:port. */
static int parse_addr(const char *v, struct config_addr *a)
{
    char host[sizeof a->host];
    const char *port;
    memset(a, 0, sizeof *a);
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - v - 1) >= sizeof host)
            return -1;
        memcpy(host, v + 1, (size_t)(close - v - 1));
        host[close - v - 1] = '\0';
        port = close + 2;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1 || parse_port(port, &a->port) != 0)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        a->family = AF_INET6;
        a->salen = sizeof *sin6;
    } else {
        const char *colon = strrchr(v, ':');
        if (colon == NULL || (size_t)(colon - v) >= sizeof host)
            return -1;
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
        port = colon + 1;
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1 || parse_port(port, &a->port) != 0)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        a->family = AF_INET;
        a->salen = sizeof *sin;
    }
    snprintf(a->host, sizeof a->host, "%s", host);
    return 0;
}

/* address[/prefix]; the bits beyond the prefix must be zero. Returns 0, -1 when it is not a
 * range, -2 when host bits are set (masked is then the range meant). */
static int parse_cidr(const char *v, struct config_cidr *c, struct config_cidr *masked)
{
    char addr[64];
    const char *slash = strchr(v, '/');
    size_t alen = slash ? (size_t)(slash - v) : strlen(v);
    if (alen >= sizeof addr)
        return -1;
    memcpy(addr, v, alen);
    addr[alen] = '\0';
    memset(c, 0, sizeof *c);
    if (strchr(addr, ':') != NULL) {
        if (inet_pton(AF_INET6, addr, c->addr) != 1)
            return -1;
        c->family = AF_INET6;
        c->prefix = 128;
    } else {
        if (inet_pton(AF_INET, addr, c->addr) != 1)
            return -1;
        c->family = AF_INET;
        c->prefix = 32;
    }
    if (slash != NULL) {
        uint64_t pfx;
        if (strlen(slash + 1) > 3 || parse_uint(slash + 1, &pfx) != 0 || pfx > c->prefix)
            return -1;
        c->prefix = (unsigned)pfx;
    }
    *masked = *c;
    unsigned nbytes = c->family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < nbytes; i++) {
        unsigned keep = c->prefix >= (i + 1) * 8 ? 8 : (c->prefix > i * 8 ? c->prefix - i * 8 : 0);
        uint8_t mask = (uint8_t)(keep == 0 ? 0 : 0xffu << (8 - keep));
        masked->addr[i] = (uint8_t)(c->addr[i] & mask);
    }
    return memcmp(masked->addr, c->addr, nbytes) == 0 ? 0 : -2;
}

struct url_parts {
    size_t scheme_end; /* index of ':' */
    size_t host, host_end;
    size_t auth_end; /* end of host[:port] */
};

/* Checks an absolute http(s) URL. Returns 0, or -1 with the reason in msg (after "key: "). */
static int check_http_url(const char *v, struct url_parts *u, char *msg, size_t ml)
{
    char q[96];
    quote(v, q, sizeof q);
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f)
            return msgf(msg, ml, "\"%s\" contains a space or a control character", q);
        if (c >= 0x80)
            return msgf(msg, ml,
                        "\"%s\" contains a non-ASCII character (write the host in punycode and "
                        "percent-encode the rest)",
                        q);
        if (c == '\\')
            return msgf(msg, ml, "\"%s\" contains a backslash", q);
    }
    if (prefix_nocase(v, "http://"))
        u->scheme_end = 4;
    else if (prefix_nocase(v, "https://"))
        u->scheme_end = 5;
    else
        return msgf(msg, ml, "\"%s\" is not an http:// or https:// URL", q);
    u->host = u->scheme_end + 3;
    size_t end = u->host;
    while (v[end] && v[end] != '/' && v[end] != '?' && v[end] != '#')
        end++;
    u->auth_end = end;
    if (memchr(v + u->host, '@', end - u->host) != NULL)
        return msgf(msg, ml,
                    "URL must not hold credentials (user@host): send them in a header instead");
    if (strchr(v, '#') != NULL)
        return msgf(msg, ml, "\"%s\" has a fragment (#...), which is never sent to a server", q);
    size_t h = u->host;
    const char *port = NULL;
    if (v[h] == '[') {
        const char *close = memchr(v + h, ']', end - h);
        char a6[64];
        size_t len = close ? (size_t)(close - (v + h) - 1) : 0;
        if (close == NULL || len == 0 || len >= sizeof a6)
            return msgf(msg, ml, "\"%s\" has an invalid host", q);
        memcpy(a6, v + h + 1, len);
        a6[len] = '\0';
        struct in6_addr tmp;
        if (inet_pton(AF_INET6, a6, &tmp) != 1)
            return msgf(msg, ml, "\"%s\" has an invalid IPv6 host", q);
        u->host_end = (size_t)(close - v) + 1;
        if (u->host_end < end && v[u->host_end] != ':')
            return msgf(msg, ml, "\"%s\" has an invalid host", q);
    } else {
        size_t i = h;
        while (i < end && v[i] != ':') {
            if (!is_alnum(v[i]) && v[i] != '-' && v[i] != '.' && v[i] != '_')
                return msgf(msg, ml, "\"%s\" has an invalid host", q);
            i++;
        }
        u->host_end = i;
    }
    if (u->host_end == h)
        return msgf(msg, ml, "\"%s\" has no host", q);
    if (u->host_end < end) {
        char pbuf[8];
        size_t plen = end - u->host_end - 1;
        port = v + u->host_end + 1;
        uint16_t pv = 0;
        if (plen == 0 || plen >= sizeof pbuf)
            return msgf(msg, ml, "\"%s\" has an invalid port", q);
        memcpy(pbuf, port, plen);
        pbuf[plen] = '\0';
        if (parse_port(pbuf, &pv) != 0 || pv == 0)
            return msgf(msg, ml, "\"%s\" has an invalid port", q);
    }
    return 0;
}

/* Copies v with its scheme and host in lower case. Returns NULL when out of memory. */
static char *lower_scheme_host(const char *v, const struct url_parts *u)
{
    char *s = strdup(v);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < u->host_end; i++)
        s[i] = lower(s[i]);
    return s;
}

/* Headers that libcurl or pollcast manage, which config may neither set nor forward. */
static bool managed_header(const char *name, size_t len)
{
    static const char *const names[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
        "trailer",    "upgrade",    "content-length",   "accept-encoding",   "expect"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        if (n != len)
            continue;
        size_t j = 0;
        while (j < n && lower(name[j]) == names[i][j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

/* Turns one value of a repeatable key into the item stored. Returns a malloc'd string, or NULL
 * with the reason in msg. */
static char *list_item(const struct key *k, const char *v, char *msg, size_t ml)
{
    char q[96];
    quote(v, q, sizeof q);
    switch (k->type) {
    case T_HEADERS: {
        /* Never quote the value: it is a secret. */
        size_t n = 0;
        while (is_tchar(v[n]))
            n++;
        if (n == 0 || v[n] != ':') {
            msgf(msg, ml, "expected \"Name: value\" (a header name, a colon, a value)");
            return NULL;
        }
        if (managed_header(v, n)) {
            msgf(msg, ml, "%.*s is managed by pollcast and cannot be set", (int)n, v);
            return NULL;
        }
        const char *val = v + n + 1;
        while (is_space(*val))
            val++;
        size_t vlen = strlen(val);
        while (vlen > 0 && is_space(val[vlen - 1]))
            vlen--;
        if (vlen == 0) {
            msgf(msg, ml, "%.*s has an empty value", (int)n, v);
            return NULL;
        }
        for (size_t i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)val[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                msgf(msg, ml,
                     "the value of %.*s contains a control character (CR, LF and NUL "
                     "are never allowed)",
                     (int)n, v);
                return NULL;
            }
        }
        struct buf b;
        buf_init(&b, 0);
        if (buf_printf(&b, "%.*s: %.*s", (int)n, v, (int)vlen, val) != 0) {
            buf_dispose(&b);
            msgf(msg, ml, "out of memory");
            return NULL;
        }
        return buf_steal(&b, NULL);
    }
    case T_NAMES: {
        size_t n = 0;
        while (is_tchar(v[n]))
            n++;
        if (n == 0 || v[n] != '\0') {
            msgf(msg, ml, "\"%s\" is not a header name", q);
            return NULL;
        }
        if (managed_header(v, n) || eq_nocase(v, "host")) {
            msgf(msg, ml, "%s cannot be forwarded", q);
            return NULL;
        }
        break;
    }
    case T_PREFIXES: {
        struct url_parts u;
        if (check_http_url(v, &u, msg, ml) != 0)
            return NULL;
        if (v[u.auth_end] != '/') {
            msgf(msg, ml,
                 "\"%s\" needs a path, at least \"/\" after the host (otherwise "
                 "it would also match other hosts that start with this one)",
                 q);
            return NULL;
        }
        char *s = lower_scheme_host(v, &u);
        if (s == NULL)
            msgf(msg, ml, "out of memory");
        return s;
    }
    case T_PARAMS: {
        /* Never quote it: a query parameter may be an API key. */
        const char *eq = strchr(v, '=');
        if (eq == NULL || eq == v) {
            msgf(msg, ml, "expected name=value (a parameter name, \"=\", a value)");
            return NULL;
        }
        break;
    }
    case T_ORIGINS: {
        if (strcmp(v, "*") == 0)
            break;
        struct url_parts u;
        if (check_http_url(v, &u, msg, ml) != 0 || v[u.auth_end] != '\0') {
            msgf(msg, ml,
                 "\"%s\" is not an origin (use https://app.example.com, with a port "
                 "when not the default one, no path; or *)",
                 q);
            return NULL;
        }
        char *s = lower_scheme_host(v, &u);
        if (s == NULL)
            msgf(msg, ml, "out of memory");
        return s;
    }
    default:
        break;
    }
    char *s = strdup(v);
    if (s == NULL)
        msgf(msg, ml, "out of memory");
    return s;
}

/* ---- storing values ---------------------------------------------------------------------- */

static void list_clear(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* Appends item to l, which takes it. Returns 0, or -1 (item freed) with a message. */
static int list_push(struct config_list *l, char *item, char *msg, size_t ml)
{
    if (l->n >= CONFIG_MAX_LIST_ITEMS) {
        free(item);
        return msgf(msg, ml, "more than %d values", CONFIG_MAX_LIST_ITEMS);
    }
    char **items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (items == NULL) {
        free(item);
        return msgf(msg, ml, "out of memory");
    }
    l->items = items;
    l->items[l->n++] = item;
    return 0;
}

static int cidr_push(struct config_cidr_list *l, const struct config_cidr *c, char *msg, size_t ml)
{
    if (l->n >= CONFIG_MAX_LIST_ITEMS)
        return msgf(msg, ml, "more than %d values", CONFIG_MAX_LIST_ITEMS);
    struct config_cidr *items = realloc(l->items, (l->n + 1) * sizeof *items);
    if (items == NULL)
        return msgf(msg, ml, "out of memory");
    l->items = items;
    l->items[l->n++] = *c;
    return 0;
}

static int set_string(char **slot, const char *v, char *msg, size_t ml)
{
    char *s = strdup(v);
    if (s == NULL)
        return msgf(msg, ml, "out of memory");
    free(*slot);
    *slot = s;
    return 0;
}

/* Sets key k of the section at base from the text v (one more item for a repeatable key).
 * Returns 0, or -1 with the reason in msg; the message never holds a secret. */
static int store(const struct key *k, void *base, const char *v, char *msg, size_t ml)
{
    char q[96], lo[32], hi[32];
    quote(v, q, sizeof q);
    if (k->type != T_HEADERS && has_ctl(v, false))
        return msgf(msg, ml, "the value contains a control character");
    if (v[0] == '\0' && !(k->flags & F_EMPTY))
        return msgf(msg, ml, "the value is empty");
    switch (k->type) {
    case T_STRING:
        return set_string(field(base, k), v, msg, ml);
    case T_PATH:
        return set_string(field(base, k), v, msg, ml);
    case T_TOKEN:
        for (const char *p = v; *p; p++)
            if (!is_tchar(*p))
                return msgf(msg, ml,
                            "\"%s\" is not a valid name (letters, digits and "
                            "!#$%%&'*+-.^_`|~)",
                            q);
        return set_string(field(base, k), v, msg, ml);
    case T_BOOL:
        if (parse_bool(v, field(base, k)) != 0)
            return msgf(msg, ml, "\"%s\" is not a boolean (use true or false)", q);
        return 0;
    case T_UINT:
    case T_DURATION:
    case T_SIZE: {
        uint64_t x = 0;
        int rc = k->type == T_UINT       ? parse_uint(v, &x)
                 : k->type == T_DURATION ? parse_duration(v, &x)
                                         : parse_size(v, &x);
        if (rc == -1 && k->type == T_UINT)
            return msgf(msg, ml, "\"%s\" is not a whole number", q);
        if (rc == -1 && k->type == T_DURATION)
            return msgf(msg, ml, "\"%s\" is not a duration (use 250ms, 1.5s, 2m)", q);
        if (rc == -1)
            return msgf(msg, ml, "\"%s\" is not a size (use 512KiB, 8MiB or a number of bytes)", q);
        fmt_bound(k, k->min, lo, sizeof lo);
        fmt_bound(k, k->max, hi, sizeof hi);
        if (rc != 0 || x < k->min || x > k->max)
            return msgf(msg, ml, "\"%s\" is out of range (%s to %s)", q, lo, hi);
        *(uint64_t *)field(base, k) = x;
        return 0;
    }
    case T_ADDR: {
        struct config_addr a;
        if (parse_addr(v, &a) != 0)
            return msgf(msg, ml,
                        "\"%s\" is not a listen address (use 127.0.0.1:8080, "
                        "[::1]:8080 or 0.0.0.0:8080)",
                        q);
        *(struct config_addr *)field(base, k) = a;
        return 0;
    }
    case T_ENUM: {
        for (const struct choice *c = k->choices; c->name; c++) {
            if (eq_nocase(v, c->name)) {
                memcpy(field(base, k), &c->value, sizeof c->value);
                return 0;
            }
        }
        struct buf b;
        buf_init(&b, 256);
        for (const struct choice *c = k->choices; c->name; c++)
            buf_printf(&b, "%s%s", c == k->choices ? "" : ", ", c->name);
        msgf(msg, ml, "\"%s\" is not one of %s", q, b.data ? b.data : "");
        buf_dispose(&b);
        return -1;
    }
    case T_URL: {
        if (strncmp(v, "builtin:", 8) == 0) {
            if (strcmp(v, CONFIG_DEMO_URL) != 0)
                return msgf(msg, ml, "\"%s\" is no built-in upstream (the only one is %s)", q,
                            CONFIG_DEMO_URL);
            return set_string(field(base, k), v, msg, ml);
        }
        struct url_parts u;
        if (check_http_url(v, &u, msg, ml) != 0)
            return -1;
        return set_string(field(base, k), v, msg, ml);
    }
    case T_HEADERS:
    case T_NAMES:
    case T_PREFIXES:
    case T_ORIGINS:
    case T_PARAMS: {
        char *item = list_item(k, v, msg, ml);
        if (item == NULL)
            return -1;
        return list_push(field(base, k), item, msg, ml);
    }
    case T_CIDRS: {
        struct config_cidr c, masked;
        int rc = parse_cidr(v, &c, &masked);
        if (rc == -1)
            return msgf(msg, ml, "\"%s\" is not an address range (use 10.0.0.0/8 or fd00::/8)", q);
        if (rc == -2) {
            char a[64];
            inet_ntop(masked.family, masked.addr, a, sizeof a);
            return msgf(msg, ml, "\"%s\" has bits set beyond its prefix (did you mean %s/%u?)", q,
                        a, masked.prefix);
        }
        return cidr_push(field(base, k), &c, msg, ml);
    }
    }
    return msgf(msg, ml, "unknown type");
}

/* Empties the value of key k (a repeatable key before the environment replaces it). */
static void clear_value(const struct key *k, void *base)
{
    if (k->type == T_CIDRS) {
        struct config_cidr_list *l = field(base, k);
        free(l->items);
        l->items = NULL;
        l->n = 0;
    } else if (is_list(k)) {
        list_clear(field(base, k));
    }
}

/* ---- sections ---------------------------------------------------------------------------- */

static void section_dispose(enum sec s, void *base)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->sec != s)
            continue;
        switch (k->type) {
        case T_STRING:
        case T_PATH:
        case T_TOKEN:
        case T_URL: {
            char **p = field(base, k);
            free(*p);
            *p = NULL;
            break;
        }
        default:
            clear_value(k, base);
            break;
        }
    }
}

/* Sets every default of section s. Returns 0, or -1 when out of memory. */
static int section_defaults(enum sec s, void *base)
{
    char msg[256];
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        assert(key_slot(k) < CONFIG_KEY_SLOTS);
        if (k->sec == s && k->def != NULL && store(k, base, k->def, msg, sizeof msg) != 0)
            return -1;
    }
    memset(origin_of(base, s), 0, sizeof(struct config_origin));
    return 0;
}

/* The name as environment variables write it: upper case, '-' and '.' as '_'. */
static void env_name(const char *name, char *out, size_t n)
{
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        out[i] = (name[i] == '-' || name[i] == '.') ? '_' : upper(name[i]);
    out[i] = '\0';
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

/* Adds an upstream with its defaults. Returns its index, or -1 with a message. */
static long add_upstream(struct config *cfg, const char *name, int line, char *msg, size_t ml)
{
    if (cfg->n_upstreams >= CONFIG_MAX_UPSTREAMS)
        return msgf(msg, ml, "more than %d upstreams", CONFIG_MAX_UPSTREAMS);
    struct config_upstream *ups =
        realloc(cfg->upstreams, (cfg->n_upstreams + 1) * sizeof *cfg->upstreams);
    if (ups == NULL)
        return msgf(msg, ml, "out of memory");
    cfg->upstreams = ups;
    struct config_upstream *u = &ups[cfg->n_upstreams];
    memset(u, 0, sizeof *u);
    u->name = strdup(name);
    u->line = line;
    if (u->name == NULL || section_defaults(SEC_UPSTREAM, u) != 0) {
        section_dispose(SEC_UPSTREAM, u);
        free(u->name);
        return msgf(msg, ml, "out of memory");
    }
    return (long)cfg->n_upstreams++;
}

/* Checks that name may be added as an upstream: unique, also as an environment name. */
static int check_new_upstream(const struct config *cfg, const char *name, char *msg, size_t ml)
{
    char q[96], env[CONFIG_MAX_NAME + 1], other[CONFIG_MAX_NAME + 1];
    quote(name, q, sizeof q);
    if (!valid_name(name))
        return msgf(msg, ml, "upstream name \"%s\" must be 1 to 64 of A-Z a-z 0-9 . _ -", q);
    env_name(name, env, sizeof env);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (strcmp(u->name, name) == 0)
            return u->line > 0
                       ? msgf(msg, ml, "duplicate upstream \"%s\" (first at line %d)", q, u->line)
                       : msgf(msg, ml, "duplicate upstream \"%s\"", q);
        env_name(u->name, other, sizeof other);
        if (strcmp(env, other) == 0)
            return msgf(msg, ml,
                        "upstream \"%s\" would have the environment name %s of upstream \"%s\"; "
                        "names must differ in more than case, '-', '.' and '_'",
                        q, env, u->name);
    }
    return 0;
}

/* ---- where a key was set ----------------------------------------------------------------- */

/* Writes the variable that sets key k of a section: POLLCAST_SERVER_LISTEN,
 * POLLCAST_UPSTREAM_PRICES_INTERVAL. */
static void env_var(const struct key *k, const char *upstream, char *out, size_t n)
{
    char name[CONFIG_MAX_NAME + 1] = "", kname[64];
    if (upstream != NULL)
        env_name(upstream, name, sizeof name);
    env_name(k->name, kname, sizeof kname);
    snprintf(out, n, "POLLCAST_%s_%s%s%s", sec_env[k->sec], name, upstream ? "_" : "", kname);
}

/* Writes the place a message is about: "file:line", or the environment variable, or the file
 * alone when key k keeps its default (then, for an upstream, the line of its header). */
static void where(const struct config *cfg, const struct key *k, const void *base, char *out,
                  size_t n)
{
    const char *src = cfg->source ? cfg->source : "config";
    const struct config_upstream *u = k->sec == SEC_UPSTREAM ? base : NULL;
    int line = corigin_of(base, k->sec)->line[key_slot(k)];
    if (line > 0)
        snprintf(out, n, "%s:%d", src, line);
    else if (line < 0)
        env_var(k, u ? u->name : NULL, out, n);
    else if (u != NULL && u->line > 0)
        snprintf(out, n, "%s:%d", src, u->line);
    else if (u != NULL) {
        /* An upstream the environment made: name the first variable that set one of its keys. */
        for (size_t i = 0; i < NKEYS; i++) {
            if (keys[i].sec == SEC_UPSTREAM && u->origin.line[key_slot(&keys[i])] < 0) {
                env_var(&keys[i], u->name, out, n);
                return;
            }
        }
        snprintf(out, n, "%s", src);
    } else
        snprintf(out, n, "%s", src);
}

static int key_line(const void *base, const struct key *k)
{
    return corigin_of(base, k->sec)->line[key_slot(k)];
}

/* ---- whole-config checks ----------------------------------------------------------------- */

static int report(char *err, size_t errlen, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int report(char *err, size_t errlen, const char *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errlen > 0)
        snprintf(err, errlen, "%s: %s", at, msg);
    return -1;
}

/* Of two keys in conflict, the one to blame: set by the environment, else set last. */
static const struct key *blame(const void *base, const struct key *a, const struct key *b)
{
    int la = key_line(base, a), lb = key_line(base, b);
    if (la < 0 || lb == 0)
        return a;
    if (lb < 0 || la == 0)
        return b;
    return la > lb ? a : b;
}

/* Resolves the defaults of min_interval and max_interval that follow interval, then checks
 * min_interval <= interval <= max_interval. */
static int check_intervals(const struct config *cfg, enum sec s, void *base, char *err,
                           size_t errlen)
{
    const struct key *ki = find_key(s, "interval");
    const struct key *kmin = find_key(s, "min_interval");
    const struct key *kmax = find_key(s, "max_interval");
    uint64_t *iv = field(base, ki), *mn = field(base, kmin), *mx = field(base, kmax);
    char at[320], a[32], b[32];
    if (key_line(base, kmin) == 0) {
        uint64_t d = 0;
        parse_duration(kmin->def, &d);
        *mn = *iv < d ? *iv : d;
    }
    if (key_line(base, kmax) == 0) {
        uint64_t d = 0;
        parse_duration(kmax->def, &d);
        *mx = *iv > d ? *iv : d;
    }
    if (*mn > *mx) {
        where(cfg, blame(base, kmin, kmax), base, at, sizeof at);
        fmt_duration(*mn, a, sizeof a);
        fmt_duration(*mx, b, sizeof b);
        return report(err, errlen, at, "min_interval %s is above max_interval %s", a, b);
    }
    if (*iv < *mn) {
        where(cfg, blame(base, ki, kmin), base, at, sizeof at);
        fmt_duration(*iv, a, sizeof a);
        fmt_duration(*mn, b, sizeof b);
        return report(err, errlen, at, "interval %s is below min_interval %s", a, b);
    }
    if (*iv > *mx) {
        where(cfg, blame(base, ki, kmax), base, at, sizeof at);
        fmt_duration(*iv, a, sizeof a);
        fmt_duration(*mx, b, sizeof b);
        return report(err, errlen, at, "interval %s is above max_interval %s", a, b);
    }
    return 0;
}

static int check_auth(const struct config *cfg, char *err, size_t errlen)
{
    const struct config_auth *a = &cfg->auth;
    const struct key *kalg = find_key(SEC_AUTH, "algorithm");
    const struct key *ksec = find_key(SEC_AUTH, "secret");
    const struct key *kpub = find_key(SEC_AUTH, "public_key_file");
    char at[320];
    if (a->algorithm == CONFIG_AUTH_OFF) {
        for (size_t i = 0; i < NKEYS; i++) {
            if (keys[i].sec == SEC_AUTH && key_line(a, &keys[i]) != 0) {
                where(cfg, &keys[i], a, at, sizeof at);
                return report(err, errlen, at,
                              "%s: [auth] is off until algorithm is set (HS256, RS256 or ES256)",
                              keys[i].name);
            }
        }
        return 0;
    }
    const char *alg = a->algorithm == CONFIG_AUTH_HS256   ? "HS256"
                      : a->algorithm == CONFIG_AUTH_RS256 ? "RS256"
                                                          : "ES256";
    if (a->algorithm == CONFIG_AUTH_HS256) {
        if (a->public_key_file != NULL) {
            where(cfg, kpub, a, at, sizeof at);
            return report(err, errlen, at, "public_key_file: not used with HS256 (set secret)");
        }
        if (a->secret == NULL) {
            where(cfg, kalg, a, at, sizeof at);
            return report(err, errlen, at, "algorithm: HS256 needs secret");
        }
        if (strlen(a->secret) < 32) {
            where(cfg, ksec, a, at, sizeof at);
            return report(err, errlen, at, "secret: must be at least 32 bytes for HS256");
        }
        return 0;
    }
    if (a->secret != NULL) {
        where(cfg, ksec, a, at, sizeof at);
        return report(err, errlen, at, "secret: not used with %s (set public_key_file)", alg);
    }
    if (a->public_key_file == NULL) {
        where(cfg, kalg, a, at, sizeof at);
        return report(err, errlen, at, "algorithm: %s needs public_key_file", alg);
    }
    return 0;
}

static int check_cluster(const struct config *cfg, char *err, size_t errlen)
{
    const struct config_cluster *c = &cfg->cluster;
    char at[320], msg[256];
    if (c->redis == NULL) {
        for (size_t i = 0; i < NKEYS; i++) {
            if (keys[i].sec == SEC_CLUSTER && key_line(c, &keys[i]) != 0) {
                where(cfg, &keys[i], c, at, sizeof at);
                return report(err, errlen, at, "%s: [cluster] is off until redis is set",
                              keys[i].name);
            }
        }
        return 0;
    }
    struct config_redis_addr addr;
    if (config_redis_url_parse(c->redis, &addr, msg, sizeof msg) != 0) {
        where(cfg, find_key(SEC_CLUSTER, "redis"), c, at, sizeof at);
        return report(err, errlen, at, "redis: %s", msg);
    }
    if (c->node_id != NULL) {
        size_t n = strlen(c->node_id);
        bool ok = n >= 1 && n <= 64;
        for (size_t i = 0; i < n && ok; i++)
            ok = is_alnum(c->node_id[i]) || strchr("._-", c->node_id[i]) != NULL;
        if (!ok) {
            where(cfg, find_key(SEC_CLUSTER, "node_id"), c, at, sizeof at);
            return report(err, errlen, at, "node_id: 1 to 64 of A-Z a-z 0-9 . _ -");
        }
    }
    return 0;
}

/* Copies n bytes of s into dst (cap bytes) as a string. Returns 0, or -1 when it does not fit
 * or holds a NUL or a control character. */
static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* Reads a decimal number of at most 9 digits into *out. Returns 0 or -1. */
static int parse_small_uint(const char *s, size_t n, unsigned *out)
{
    if (n == 0 || n > 9)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int config_redis_url_parse(const char *url, struct config_redis_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2;
        size_t n = strcspn(path, "?");
        if (n == 0 || path[0] != '/')
            return msgf(err, errlen, "unix: needs an absolute path (unix:/run/redis.sock)");
        if (copy_part(out->path, sizeof(out->path), path, n) != 0)
            return msgf(err, errlen, "socket path too long or not printable");
        if (path[n] == '?') {
            const char *q = path + n + 1;
            if (strncmp(q, "db=", 3) != 0 || parse_small_uint(q + 3, strlen(q + 3), &out->db) != 0)
                return msgf(err, errlen, "unix: takes only ?db=N");
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return msgf(err, errlen, "expected redis://host:port/db or unix:/path");
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q; /* the last one: a password may hold '@' */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return msgf(err, errlen, "credentials must be :PASSWORD@ or USER:PASSWORD@");
        if (copy_part(out->user, sizeof(out->user), p, (size_t)(colon - p)) != 0 ||
            copy_part(out->password, sizeof(out->password), colon + 1, (size_t)(at - colon - 1)) !=
                0)
            return msgf(err, errlen, "user or password too long or not printable");
        p = at + 1;
    }
    const char *hend, *port = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', (size_t)(end - p));
        if (hend == NULL)
            return msgf(err, errlen, "unclosed [ in the host");
        if (copy_part(out->host, sizeof(out->host), p + 1, (size_t)(hend - p - 1)) != 0)
            return msgf(err, errlen, "host too long");
        hend++;
        if (hend < end && *hend != ':')
            return msgf(err, errlen, "unexpected text after the host");
        port = hend < end ? hend + 1 : NULL;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (hend == NULL)
            hend = end;
        if (copy_part(out->host, sizeof(out->host), p, (size_t)(hend - p)) != 0)
            return msgf(err, errlen, "host too long or not printable");
        port = hend < end ? hend + 1 : NULL;
    }
    if (out->host[0] == '\0')
        return msgf(err, errlen, "missing host");
    if (port && (parse_small_uint(port, (size_t)(end - port), &out->port) != 0 || out->port == 0 ||
                 out->port > 65535))
        return msgf(err, errlen, "port must be 1 to 65535");
    if (*end == '/' && end[1] != '\0') {
        if (parse_small_uint(end + 1, strlen(end + 1), &out->db) != 0)
            return msgf(err, errlen, "db must be a number (redis://host:port/0)");
    } else if (*end != '\0' && !(*end == '/' && end[1] == '\0')) {
        return msgf(err, errlen, "unexpected text after the address");
    }
    return 0;
}

/* True when v is a media type: type "/" subtype, both tokens, then optional "; parameters". */
static bool is_media_type(const char *v)
{
    const char *p = v;
    while (is_tchar(*p))
        p++;
    if (p == v || *p != '/')
        return false;
    const char *sub = ++p;
    while (is_tchar(*p))
        p++;
    if (p == sub)
        return false;
    while (is_space(*p))
        p++;
    return *p == '\0' || *p == ';';
}

/* Checks the request keys of upstream u: method, body, body_file, content_type and the OAuth2
 * group. */
static int check_request(const struct config *cfg, const struct config_upstream *u, char *err,
                         size_t errlen)
{
    const struct key *kmethod = find_key(SEC_UPSTREAM, "method");
    const struct key *kbody = find_key(SEC_UPSTREAM, "body");
    const struct key *kfile = find_key(SEC_UPSTREAM, "body_file");
    const struct key *kct = find_key(SEC_UPSTREAM, "content_type");
    const struct key *ktok = find_key(SEC_UPSTREAM, "oauth2_token_url");
    const struct key *kid = find_key(SEC_UPSTREAM, "oauth2_client_id");
    const struct key *ksec = find_key(SEC_UPSTREAM, "oauth2_client_secret");
    const struct key *ksfile = find_key(SEC_UPSTREAM, "oauth2_client_secret_file");
    char at[320];
    if (u->body != NULL && u->body_file != NULL) {
        where(cfg, blame(u, kbody, kfile), u, at, sizeof at);
        return report(err, errlen, at, "body and body_file: set one of them, not both");
    }
    bool has_body = u->body != NULL || u->body_file != NULL;
    if (has_body && u->method == CONFIG_METHOD_GET) {
        const struct key *k = u->body ? kbody : kfile;
        where(cfg, blame(u, k, kmethod), u, at, sizeof at);
        return report(err, errlen, at,
                      "%s: a body needs method = POST, PUT, PATCH, REPORT or QUERY (the method "
                      "is GET)",
                      k->name);
    }
    if (u->content_type != NULL && !has_body) {
        where(cfg, kct, u, at, sizeof at);
        return report(err, errlen, at, "content_type: only with body or body_file");
    }
    if (u->content_type != NULL &&
        (strlen(u->content_type) > 200 || !is_media_type(u->content_type))) {
        char q[96];
        quote(u->content_type, q, sizeof q);
        where(cfg, kct, u, at, sizeof at);
        return report(err, errlen, at,
                      "content_type: \"%s\" is not a media type of at most 200 bytes (use "
                      "type/subtype, such as application/json)",
                      q);
    }
    if (u->oauth2_token_url == NULL) {
        for (size_t i = 0; i < NKEYS; i++) {
            const struct key *k = &keys[i];
            if (k->sec == SEC_UPSTREAM && strncmp(k->name, "oauth2_", 7) == 0 &&
                key_line(u, k) != 0) {
                where(cfg, k, u, at, sizeof at);
                return report(err, errlen, at, "%s: needs oauth2_token_url", k->name);
            }
        }
        return 0;
    }
    if (strncmp(u->oauth2_token_url, "builtin:", 8) == 0) {
        where(cfg, ktok, u, at, sizeof at);
        return report(err, errlen, at, "oauth2_token_url: must be an http:// or https:// URL");
    }
    if (u->oauth2_client_id == NULL) {
        where(cfg, ktok, u, at, sizeof at);
        return report(err, errlen, at, "oauth2_token_url: needs oauth2_client_id");
    }
    if (u->oauth2_client_secret != NULL && u->oauth2_client_secret_file != NULL) {
        where(cfg, blame(u, ksec, ksfile), u, at, sizeof at);
        return report(err, errlen, at,
                      "oauth2_client_secret and oauth2_client_secret_file: set one of them, "
                      "not both");
    }
    if (u->oauth2_client_secret == NULL && u->oauth2_client_secret_file == NULL) {
        where(cfg, kid, u, at, sizeof at);
        return report(err, errlen, at,
                      "oauth2_client_id: needs oauth2_client_secret or "
                      "oauth2_client_secret_file");
    }
    return 0;
}

/* Checks what no single value shows. Idempotent: the environment may change a config that
 * passed, and it is then checked again. */
static int finalize(struct config *cfg, char *err, size_t errlen)
{
    const struct key *kurl = find_key(SEC_UPSTREAM, "url");
    char at[320];
    const struct key *kstate = find_key(SEC_UPSTREAM, "state_file");
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct config_upstream *u = &cfg->upstreams[i];
        if (u->push && u->url != NULL) {
            where(cfg, kurl, u, at, sizeof at);
            return report(err, errlen, at,
                          "[stream %s] has no url: documents are published to it (use [upstream "
                          "NAME] to poll a URL)",
                          u->name);
        }
        if (!u->push && u->state_file != NULL) {
            where(cfg, kstate, u, at, sizeof at);
            return report(err, errlen, at,
                          "[upstream %s]: state_file is for push streams ([stream NAME])", u->name);
        }
        /* In cluster mode the document lives in Redis (the snapshot every node loads): a file
         * on one node would be a second copy that could disagree with it after a restart. */
        if (u->push && u->state_file != NULL && cfg->cluster.redis != NULL) {
            where(cfg, kstate, u, at, sizeof at);
            return report(err, errlen, at,
                          "[stream %s]: state_file is not used in cluster mode: the document is "
                          "kept in Redis (remove state_file, or [cluster] redis)",
                          u->name);
        }
        if (u->push && u->publish_token_file == NULL && cfg->auth.algorithm == CONFIG_AUTH_OFF) {
            where(cfg, kurl, u, at, sizeof at);
            return report(err, errlen, at,
                          "[stream %s]: nobody could publish to it: set publish_token_file, or "
                          "configure [auth] for publishers' tokens (claim pollcast.publish)",
                          u->name);
        }
        if (u->push)
            continue;
        if (u->url == NULL) {
            where(cfg, kurl, u, at, sizeof at);
            return report(err, errlen, at, "[upstream %s]: missing required key \"url\"", u->name);
        }
        if (check_intervals(cfg, SEC_UPSTREAM, u, err, errlen) != 0 ||
            check_request(cfg, u, err, errlen) != 0)
            return -1;
    }
    if (check_intervals(cfg, SEC_ALLOW, &cfg->allow, err, errlen) != 0)
        return -1;
    if (check_auth(cfg, err, errlen) != 0)
        return -1;
    return check_cluster(cfg, err, errlen);
}

/* ---- the INI reader ---------------------------------------------------------------------- */

enum line_kind { LINE_OTHER, LINE_KEY, LINE_CONT };

struct parser {
    struct config *cfg;
    const char *filename;
    const char *pos, *end;
    int lineno;              /* of the line last handed to inih */
    enum line_kind kind;     /* of that line */
    bool have_key;           /* inih's prev_name is set: indented lines continue a value */
    enum sec sec;            /* current section; SEC_COUNT before the first */
    size_t up;               /* the current upstream when sec is SEC_UPSTREAM */
    const struct key *last;  /* the key the last key line set */
    int sec_line[SEC_COUNT]; /* where [server], [allow] and [auth] started */
    bool failed;
    char *err;
    size_t errlen;
};

static void fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct parser *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    if (p->failed)
        return;
    p->failed = true;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->errlen > 0)
        snprintf(p->err, p->errlen, "%s:%d: %s", p->filename, p->lineno, msg);
}

static void *current_base(struct parser *p)
{
    switch (p->sec) {
    case SEC_SERVER:
        return &p->cfg->server;
    case SEC_UPSTREAM:
        return &p->cfg->upstreams[p->up];
    case SEC_ALLOW:
        return &p->cfg->allow;
    case SEC_AUTH:
        return &p->cfg->auth;
    case SEC_CLUSTER:
        return &p->cfg->cluster;
    default:
        return NULL;
    }
}

static void section_label(struct parser *p, char *out, size_t n)
{
    if (p->sec == SEC_UPSTREAM)
        snprintf(out, n, "[upstream %s]", p->cfg->upstreams[p->up].name);
    else
        snprintf(out, n, "[%s]", sec_names[p->sec]);
}

/* inih's rule for the end of a name or a section: the first of chars, or a ';' that follows
 * whitespace (an inline comment). */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
    bool was_space = false;
    while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
        was_space = is_space(*s);
        s++;
    }
    return s;
}

/* Opens the section of a "[...]" line (s: the line without leading whitespace). */
static void open_section(struct parser *p, const char *s)
{
    const char *close = find_chars_or_comment(s + 1, "]");
    char inner[CONFIG_MAX_LINE + 1], q[96], msg[512];
    if (*close != ']') {
        fail(p, "section header without \"]\"");
        return;
    }
    const char *rest = close + 1;
    while (is_space(*rest))
        rest++;
    if (*rest != '\0' && *rest != ';' && *rest != '#') {
        fail(p, "unexpected text after \"]\"");
        return;
    }
    /* Trim, then split into the section kind and its name. */
    const char *a = s + 1, *b = close;
    while (a < b && is_space(*a))
        a++;
    while (b > a && is_space(b[-1]))
        b--;
    memcpy(inner, a, (size_t)(b - a));
    inner[b - a] = '\0';
    char *name = inner;
    while (*name && !is_space(*name))
        name++;
    if (*name) {
        *name++ = '\0';
        while (is_space(*name))
            name++;
    }
    quote(inner, q, sizeof q);
    enum sec s_kind = SEC_COUNT;
    for (int i = 0; i < SEC_COUNT; i++)
        if (strcmp(inner, sec_names[i]) == 0)
            s_kind = (enum sec)i;
    /* [stream NAME] is a push stream: an upstream section without a url, whose documents are
     * published to it. */
    bool push = strcmp(inner, "stream") == 0;
    if (push)
        s_kind = SEC_UPSTREAM;
    if (s_kind == SEC_COUNT) {
        fail(p,
             "unknown section [%s] (use [server], [upstream NAME], [stream NAME], [allow], [auth] "
             "or [cluster])",
             q);
        return;
    }
    p->have_key = false;
    p->last = NULL;
    if (s_kind == SEC_UPSTREAM) {
        if (*name == '\0') {
            fail(p, "[%s] needs a name: [%s NAME]", q, q);
            return;
        }
        if (check_new_upstream(p->cfg, name, msg, sizeof msg) != 0) {
            fail(p, "%s", msg);
            return;
        }
        long idx = add_upstream(p->cfg, name, p->lineno, msg, sizeof msg);
        if (idx < 0) {
            fail(p, "%s", msg);
            return;
        }
        p->up = (size_t)idx;
        p->cfg->upstreams[idx].push = push;
        p->sec = SEC_UPSTREAM;
        return;
    }
    if (*name != '\0') {
        fail(p, "[%s] takes no name", q);
        return;
    }
    if (p->sec_line[s_kind] != 0) {
        fail(p, "duplicate section [%s] (first at line %d)", q, p->sec_line[s_kind]);
        return;
    }
    p->sec_line[s_kind] = p->lineno;
    p->sec = s_kind;
}

/* inih's reader: hands it one line at a time, so that the parser knows the line number and what
 * kind of line inih is about to report. It checks what inih would let through: line length,
 * control characters, section headers (inih truncates long section names), lines that are
 * neither a key, a section nor a comment. On an error it ends the input. */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    if (p->failed || p->pos >= p->end)
        return NULL;
    const char *nl = memchr(p->pos, '\n', (size_t)(p->end - p->pos));
    const char *line = p->pos;
    size_t len = nl ? (size_t)(nl - line) : (size_t)(p->end - line);
    p->pos = nl ? nl + 1 : p->end;
    p->lineno++;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (p->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    if (len > CONFIG_MAX_LINE || len + 2 > (size_t)num) {
        fail(p, "line longer than %d bytes", CONFIG_MAX_LINE);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            fail(p, "control character 0x%02x (only tab is allowed)", c);
            return NULL;
        }
    }
    memcpy(str, line, len);
    str[len] = '\0';

    /* Classify the line as inih will: comment or blank, continuation, section, key. */
    const char *s = str;
    while (is_space(*s))
        s++;
    p->kind = LINE_OTHER;
    if (*s == '\0' || *s == ';' || *s == '#') {
        /* nothing for inih to report */
    } else if (s > str && p->have_key) {
        p->kind = LINE_CONT;
    } else if (*s == '[') {
        open_section(p, s);
    } else {
        const char *sep = find_chars_or_comment(s, "=:");
        if (*sep != '=' && *sep != ':')
            fail(p, "expected \"key = value\", a [section] or a comment");
        p->kind = LINE_KEY;
        p->have_key = true;
    }
    if (p->failed)
        return NULL;
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

/* inih's handler: one key line or one continuation line. */
static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    char msg[512], label[128], q[96], hint[96];
    (void)section; /* ours is in p: inih truncates long section names */
    if (p->failed)
        return 1;
    if (p->kind == LINE_CONT) {
        /* inih keeps inline comments on continuation lines: strip them as on key lines. */
        char v[CONFIG_MAX_LINE + 1];
        snprintf(v, sizeof v, "%s", value);
        char *c = (char *)find_chars_or_comment(v, "");
        *c = '\0';
        while (c > v && is_space(c[-1]))
            *--c = '\0';
        if (p->last == NULL || !is_list(p->last)) {
            fail(p,
                 "%s: an indented line continues the previous value, which only repeatable "
                 "keys allow; remove the indentation",
                 p->last ? p->last->name : name);
            return 1;
        }
        if (store(p->last, current_base(p), v, msg, sizeof msg) != 0)
            fail(p, "%s: %s", p->last->name, msg);
        return 1;
    }
    quote(name, q, sizeof q);
    if (name[0] == '\0') {
        fail(p, "missing key name before \"=\"");
        return 1;
    }
    if (p->sec == SEC_COUNT) {
        fail(p,
             "key \"%s\" is outside any section (start with [server], [upstream NAME], "
             "[allow] or [auth])",
             q);
        return 1;
    }
    section_label(p, label, sizeof label);
    const struct key *k = find_key(p->sec, name);
    if (k == NULL) {
        unknown_key_hint(p->sec, name, hint, sizeof hint);
        fail(p, "unknown key \"%s\" in %s%s", q, label, hint);
        return 1;
    }
    void *base = current_base(p);
    int *line = &origin_of(base, p->sec)->line[key_slot(k)];
    if (*line > 0 && !is_list(k)) {
        fail(p, "duplicate key \"%s\" in %s (first set at line %d)", k->name, label, *line);
        return 1;
    }
    if (store(k, base, value, msg, sizeof msg) != 0) {
        fail(p, "%s: %s", k->name, msg);
        return 1;
    }
    if (*line == 0)
        *line = p->lineno;
    p->last = k;
    return 1;
}

/* inih's knobs are process globals in the Debian build: set the ones this reader relies on for
 * the time of one parse and put them back. Not thread-safe (config is read by one thread). */
struct ini_knobs {
    int max_line;
    bool use_stack, multiline, inline_comments, no_value, stop_on_first;
    char *inline_prefixes, *start_prefixes;
};

static char knob_inline[] = ";";
static char knob_start[] = ";#";

static void knobs_set(struct ini_knobs *saved)
{
    saved->max_line = ini_max_line;
    saved->use_stack = ini_use_stack;
    saved->multiline = ini_allow_multiline;
    saved->inline_comments = ini_allow_inline_comments;
    saved->no_value = ini_allow_no_value;
    saved->stop_on_first = ini_stop_on_first_error;
    saved->inline_prefixes = ini_inline_comment_prefixes;
    saved->start_prefixes = ini_start_comment_prefixes;
    ini_max_line = CONFIG_MAX_LINE + 16;
    ini_use_stack = true;
    ini_allow_multiline = true;
    ini_allow_inline_comments = true;
    ini_allow_no_value = false;
    ini_stop_on_first_error = false;
    ini_inline_comment_prefixes = knob_inline;
    ini_start_comment_prefixes = knob_start;
}

static void knobs_restore(const struct ini_knobs *saved)
{
    ini_max_line = saved->max_line;
    ini_use_stack = saved->use_stack;
    ini_allow_multiline = saved->multiline;
    ini_allow_inline_comments = saved->inline_comments;
    ini_allow_no_value = saved->no_value;
    ini_stop_on_first_error = saved->stop_on_first;
    ini_inline_comment_prefixes = saved->inline_prefixes;
    ini_start_comment_prefixes = saved->start_prefixes;
}

static int parse_text(const char *text, size_t len, const char *filename, struct config *out,
                      char *err, size_t errlen)
{
    if (filename == NULL)
        filename = "config";
    if (config_defaults(out) != 0)
        return report(err, errlen, filename, "out of memory");
    out->source = strdup(filename);
    if (out->source == NULL) {
        config_dispose(out);
        return report(err, errlen, filename, "out of memory");
    }
    if (len > CONFIG_MAX_FILE_BYTES) {
        config_dispose(out);
        return report(err, errlen, filename, "larger than 1 MiB, the limit for a config file");
    }
    struct parser p = {.cfg = out,
                       .filename = filename,
                       .pos = text,
                       .end = text + len,
                       .sec = SEC_COUNT,
                       .err = err,
                       .errlen = errlen};
    struct ini_knobs saved;
    knobs_set(&saved);
    int rc = ini_parse_stream(read_line, &p, on_pair, &p);
    knobs_restore(&saved);
    if (!p.failed && rc == -2)
        report(err, errlen, filename, "out of memory");
    else if (!p.failed && rc > 0)
        report(err, errlen, filename, "syntax error at line %d", rc); /* the reader saw none */
    if (p.failed || rc != 0 || finalize(out, err, errlen) != 0) {
        config_dispose(out);
        return -1;
    }
    return 0;
}

/* ---- public API -------------------------------------------------------------------------- */

int config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (section_defaults(SEC_SERVER, &cfg->server) != 0 ||
        section_defaults(SEC_ALLOW, &cfg->allow) != 0 ||
        section_defaults(SEC_AUTH, &cfg->auth) != 0 ||
        section_defaults(SEC_CLUSTER, &cfg->cluster) != 0) {
        config_dispose(cfg);
        return -1;
    }
    return 0;
}

int config_default_demo(struct config *cfg)
{
    char msg[256];
    if (config_defaults(cfg) != 0)
        return -1;
    long idx = add_upstream(cfg, CONFIG_DEMO_NAME, 0, msg, sizeof msg);
    if (idx < 0) {
        config_dispose(cfg);
        return -1;
    }
    struct config_upstream *u = &cfg->upstreams[idx];
    u->url = strdup(CONFIG_DEMO_URL);
    u->interval_ms = MS_S;
    if (u->url == NULL || finalize(cfg, msg, sizeof msg) != 0) {
        config_dispose(cfg);
        return -1;
    }
    return 0;
}

void config_dispose(struct config *cfg)
{
    if (cfg == NULL)
        return;
    section_dispose(SEC_SERVER, &cfg->server);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct config_upstream *u = &cfg->upstreams[i];
        section_dispose(SEC_UPSTREAM, u);
        free(u->name);
        free(u->request_body);
        if (u->publish_token != NULL) {
            explicit_bzero(u->publish_token, strlen(u->publish_token));
            free(u->publish_token);
        }
        if (u->oauth2_secret != NULL) {
            explicit_bzero(u->oauth2_secret, strlen(u->oauth2_secret));
            free(u->oauth2_secret);
        }
    }
    free(cfg->upstreams);
    section_dispose(SEC_ALLOW, &cfg->allow);
    section_dispose(SEC_AUTH, &cfg->auth);
    section_dispose(SEC_CLUSTER, &cfg->cluster);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}

int config_parse_string(const char *text, const char *filename, struct config *out, char *err,
                        size_t errlen)
{
    return parse_text(text, strlen(text), filename, out, err, errlen);
}

int config_load_file(const char *path, struct config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return report(err, errlen, path, "cannot open: %s", strerror(errno));
    char *data = malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (data == NULL) {
        fclose(f);
        return report(err, errlen, path, "out of memory");
    }
    size_t n = fread(data, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    int rc;
    if (ferror(f))
        rc = report(err, errlen, path, "cannot read: %s", strerror(errno));
    else if (n > CONFIG_MAX_FILE_BYTES)
        rc = report(err, errlen, path, "larger than 1 MiB, the limit for a config file");
    else
        rc = parse_text(data, n, path, out, err, errlen);
    free(data);
    fclose(f);
    return rc;
}

/* Applies one variable's value to key k of the section at base: replaces a repeatable key's
 * values with those of the variable (one per line; also split at commas for F_COMMA keys). */
static int env_store(const struct key *k, void *base, const char *value, char *msg, size_t ml)
{
    if (!is_list(k))
        return store(k, base, value, msg, ml);
    clear_value(k, base);
    char item[CONFIG_MAX_LINE + 1];
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, (k->flags & F_COMMA) ? "\n," : "\n");
        const char *a = p, *b = p + n;
        while (a < b && (is_space(*a) || *a == '\r'))
            a++;
        while (b > a && (is_space(b[-1]) || b[-1] == '\r'))
            b--;
        if (b > a) {
            memcpy(item, a, (size_t)(b - a));
            item[b - a] = '\0';
            if (store(k, base, item, msg, ml) != 0)
                return -1;
        }
        p += n;
        if (*p)
            p++;
    }
    return 0;
}

/* Finds the upstream and key a POLLCAST_UPSTREAM_ variable names (rest: what follows that
 * prefix, e.g. "PRICES_MIN_INTERVAL"). Existing upstreams are matched first; otherwise the
 * longest key name at the end wins and the rest, in lower case, names a new upstream. Returns
 * the index of the upstream (-2: a new one named *newname), or -1 with a message. */
static long env_upstream(const struct config *cfg, const char *rest, const struct key **kout,
                         char *newname, size_t nn, char *msg, size_t ml)
{
    long found = -1;
    char env[CONFIG_MAX_NAME + 1], kname[64];
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        env_name(cfg->upstreams[i].name, env, sizeof env);
        size_t n = strlen(env);
        if (strncmp(rest, env, n) != 0 || rest[n] != '_')
            continue;
        size_t j = 0;
        for (const char *s = rest + n + 1; *s && j + 1 < sizeof kname; s++)
            kname[j++] = lower(*s);
        kname[j] = '\0';
        const struct key *k = find_key(SEC_UPSTREAM, kname);
        if (k == NULL)
            continue;
        if (found >= 0)
            return msgf(msg, ml, "names both [upstream %s] and [upstream %s]",
                        cfg->upstreams[found].name, cfg->upstreams[i].name);
        found = (long)i;
        *kout = k;
    }
    if (found >= 0)
        return found;
    const struct key *best = NULL;
    size_t rlen = strlen(rest), blen = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].sec != SEC_UPSTREAM)
            continue;
        env_name(keys[i].name, kname, sizeof kname);
        size_t kl = strlen(kname);
        if (rlen > kl + 1 && rest[rlen - kl - 1] == '_' && strcmp(rest + rlen - kl, kname) == 0 &&
            kl > blen) {
            best = &keys[i];
            blen = kl;
        }
    }
    if (best == NULL)
        return msgf(msg, ml,
                    "names no upstream key (POLLCAST_UPSTREAM_<NAME>_<KEY>, e.g. "
                    "POLLCAST_UPSTREAM_PRICES_URL)");
    size_t n = rlen - blen - 1;
    if (n >= nn || n > CONFIG_MAX_NAME)
        return msgf(msg, ml, "upstream name longer than %d characters", CONFIG_MAX_NAME);
    for (size_t i = 0; i < n; i++)
        newname[i] = lower(rest[i]);
    newname[n] = '\0';
    *kout = best;
    return -2;
}

int config_apply_env(struct config *cfg, char *const *env, char *err, size_t errlen)
{
    char var[256], msg[512], hint[96], q[96];
    for (; env != NULL && *env != NULL; env++) {
        const char *e = *env;
        if (strncmp(e, "POLLCAST_", 9) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (eq == NULL)
            continue;
        enum sec s = SEC_COUNT;
        size_t plen = 0;
        for (int i = 0; i < SEC_COUNT; i++) {
            size_t n = strlen(sec_env[i]);
            if (strncmp(e + 9, sec_env[i], n) == 0 && e[9 + n] == '_') {
                s = (enum sec)i;
                plen = 9 + n + 1;
            }
        }
        if (s == SEC_COUNT)
            continue; /* POLLCAST_ variables of other uses */
        size_t vlen = (size_t)(eq - e);
        if (vlen >= sizeof var)
            return report(err, errlen, "environment", "variable name longer than %zu bytes",
                          sizeof var - 1);
        memcpy(var, e, vlen);
        var[vlen] = '\0';
        const char *value = eq + 1;
        if (strlen(value) > CONFIG_MAX_LINE)
            return report(err, errlen, var, "value longer than %d bytes", CONFIG_MAX_LINE);
        char rest[256];
        size_t j = 0;
        for (; var[plen + j]; j++)
            rest[j] = upper(var[plen + j]);
        rest[j] = '\0';
        const struct key *k = NULL;
        void *base;
        if (s == SEC_UPSTREAM) {
            char newname[CONFIG_MAX_NAME + 2];
            long idx = env_upstream(cfg, rest, &k, newname, sizeof newname, msg, sizeof msg);
            if (idx == -1)
                return report(err, errlen, var, "%s", msg);
            if (idx == -2) {
                if (check_new_upstream(cfg, newname, msg, sizeof msg) != 0)
                    return report(err, errlen, var, "%s", msg);
                idx = add_upstream(cfg, newname, -1, msg, sizeof msg);
                if (idx < 0)
                    return report(err, errlen, var, "%s", msg);
            }
            base = &cfg->upstreams[idx];
        } else {
            char kname[64];
            for (j = 0; rest[j] && j + 1 < sizeof kname; j++)
                kname[j] = lower(rest[j]);
            kname[j] = '\0';
            k = find_key(s, kname);
            if (k == NULL) {
                quote(kname, q, sizeof q);
                unknown_key_hint(s, kname, hint, sizeof hint);
                return report(err, errlen, var, "unknown key \"%s\" in [%s]%s", q, sec_names[s],
                              hint);
            }
            base = s == SEC_SERVER  ? (void *)&cfg->server
                   : s == SEC_ALLOW ? (void *)&cfg->allow
                   : s == SEC_AUTH  ? (void *)&cfg->auth
                                    : (void *)&cfg->cluster;
        }
        if (env_store(k, base, value, msg, sizeof msg) != 0)
            return report(err, errlen, var, "%s: %s", k->name, msg);
        origin_of(base, s)->line[key_slot(k)] = -1;
    }
    return finalize(cfg, err, errlen);
}

static int check_file(const struct config *cfg, const struct key *k, const void *base,
                      const char *path, char *err, size_t errlen)
{
    char at[320], q[96];
    struct stat st;
    if (path == NULL)
        return 0;
    quote(path, q, sizeof q);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
        e = EISDIR;
    else if (fd >= 0)
        e = 0;
    if (fd >= 0)
        close(fd);
    if (e == 0)
        return 0;
    where(cfg, k, base, at, sizeof at);
    return report(err, errlen, at, "%s: cannot read \"%s\": %s", k->name, q,
                  e == EISDIR ? "not a regular file" : strerror(e));
}

int config_check_files(const struct config *cfg, char *err, size_t errlen)
{
    const struct config_auth *a = &cfg->auth;
    if (a->algorithm != CONFIG_AUTH_OFF && check_file(cfg, find_key(SEC_AUTH, "public_key_file"), a,
                                                      a->public_key_file, err, errlen) != 0)
        return -1;
    const struct key *kca = find_key(SEC_UPSTREAM, "ca_file");
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        if (check_file(cfg, kca, u, u->ca_file, err, errlen) != 0)
            return -1;
    }
    return check_file(cfg, find_key(SEC_ALLOW, "ca_file"), &cfg->allow, cfg->allow.ca_file, err,
                      errlen);
}

/* Reads at most max bytes of the file at path into *out (malloc'd, NUL-terminated, *len bytes).
 * Returns 0, or -1 with the reason in msg (never the content). */
static int read_small_file(const char *path, size_t max, char **out, size_t *len, char *msg,
                           size_t ml)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return msgf(msg, ml, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return msgf(msg, ml, "not a regular file");
    }
    char *data = malloc(max + 1);
    size_t n = 0;
    int rc = 0;
    if (data == NULL) {
        rc = msgf(msg, ml, "out of memory");
        goto out;
    }
    /* One byte past the bound tells a file that is too large. */
    while (n <= max) {
        ssize_t r = read(fd, data + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = msgf(msg, ml, "%s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        char lim[32];
        fmt_size(max, lim, sizeof lim);
        rc = msgf(msg, ml, "larger than %s", lim);
        goto out;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
out:
    free(data);
    close(fd);
    return rc;
}

/* Reads the secret on the first line of path (key k of upstream u) into *out (owned by the
 * caller, who zeroes it before freeing). Returns 0, or -1 with a file:line message. */
static int read_secret_line(const struct config *cfg, const struct config_upstream *u,
                            const struct key *k, const char *path, char **out, char *err,
                            size_t errlen)
{
    char at[320], q[96], msg[256];
    size_t len = 0;
    char *data = NULL;
    quote(path, q, sizeof q);
    if (read_small_file(path, CONFIG_MAX_SECRET_FILE, &data, &len, msg, sizeof msg) != 0) {
        where(cfg, k, u, at, sizeof at);
        return report(err, errlen, at, "%s: cannot read \"%s\": %s", k->name, q, msg);
    }
    /* The first line, without its end and trailing spaces, as secret files are usually written. */
    size_t n = 0;
    while (n < len && data[n] != '\r' && data[n] != '\n')
        n++;
    bool nul = memchr(data, '\0', n) != NULL;
    while (n > 0 && is_space(data[n - 1]))
        n--;
    data[n] = '\0';
    bool bad = nul || n == 0 || has_ctl(data, false);
    if (bad) {
        explicit_bzero(data, len);
        free(data);
        where(cfg, k, u, at, sizeof at);
        return report(err, errlen, at,
                      "%s: \"%s\" must hold the secret on its first line (no NUL, no other "
                      "control character)",
                      k->name, q);
    }
    *out = data;
    return 0;
}

static int read_upstream_files(const struct config *cfg, struct config_upstream *u, char *err,
                               size_t errlen)
{
    char at[320], q[96], msg[256];
    free(u->request_body);
    u->request_body = NULL;
    u->request_body_len = 0;
    if (u->oauth2_secret != NULL) {
        explicit_bzero(u->oauth2_secret, strlen(u->oauth2_secret));
        free(u->oauth2_secret);
        u->oauth2_secret = NULL;
    }
    if (u->publish_token != NULL) {
        explicit_bzero(u->publish_token, strlen(u->publish_token));
        free(u->publish_token);
        u->publish_token = NULL;
    }
    if (u->publish_token_file != NULL &&
        read_secret_line(cfg, u, find_key(SEC_UPSTREAM, "publish_token_file"),
                         u->publish_token_file, &u->publish_token, err, errlen) != 0)
        return -1;
    if (u->body != NULL) {
        u->request_body = strdup(u->body);
        if (u->request_body == NULL)
            return report(err, errlen, cfg->source ? cfg->source : "config", "out of memory");
        u->request_body_len = strlen(u->body);
    } else if (u->body_file != NULL &&
               read_small_file(u->body_file, CONFIG_MAX_BODY_FILE, &u->request_body,
                               &u->request_body_len, msg, sizeof msg) != 0) {
        quote(u->body_file, q, sizeof q);
        where(cfg, find_key(SEC_UPSTREAM, "body_file"), u, at, sizeof at);
        return report(err, errlen, at, "body_file: cannot read \"%s\": %s", q, msg);
    }
    if (u->oauth2_token_url == NULL)
        return 0;
    if (u->oauth2_client_secret != NULL) {
        u->oauth2_secret = strdup(u->oauth2_client_secret);
        if (u->oauth2_secret == NULL)
            return report(err, errlen, cfg->source ? cfg->source : "config", "out of memory");
        return 0;
    }
    return read_secret_line(cfg, u, find_key(SEC_UPSTREAM, "oauth2_client_secret_file"),
                            u->oauth2_client_secret_file, &u->oauth2_secret, err, errlen);
}

int config_read_files(struct config *cfg, char *err, size_t errlen)
{
    if (config_check_files(cfg, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (read_upstream_files(cfg, &cfg->upstreams[i], err, errlen) != 0)
            return -1;
    return 0;
}

const char *config_method_name(enum config_method m)
{
    for (const struct choice *c = methods; c->name; c++)
        if (c->value == (int)m)
            return c->name;
    return "GET";
}

const struct config_upstream *config_find_upstream(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool config_upstream_equal(const struct config_upstream *a, const struct config_upstream *b)
{
    if (!str_eq(a->name, b->name))
        return false;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->sec != SEC_UPSTREAM)
            continue;
        const void *fa = cfield(a, k), *fb = cfield(b, k);
        switch (k->type) {
        case T_STRING:
        case T_PATH:
        case T_TOKEN:
        case T_URL:
            if (!str_eq(*(char *const *)fa, *(char *const *)fb))
                return false;
            break;
        case T_BOOL:
            if (*(const bool *)fa != *(const bool *)fb)
                return false;
            break;
        case T_UINT:
        case T_DURATION:
        case T_SIZE:
            if (*(const uint64_t *)fa != *(const uint64_t *)fb)
                return false;
            break;
        case T_ENUM:
            if (memcmp(fa, fb, sizeof(int)) != 0)
                return false;
            break;
        case T_HEADERS:
        case T_NAMES:
        case T_PREFIXES:
        case T_ORIGINS:
        case T_PARAMS: {
            const struct config_list *la = fa, *lb = fb;
            if (la->n != lb->n)
                return false;
            for (size_t j = 0; j < la->n; j++)
                if (strcmp(la->items[j], lb->items[j]) != 0)
                    return false;
            break;
        }
        case T_ADDR:
        case T_CIDRS:
            break; /* no upstream key has these types */
        }
    }
    /* What files held when they were read: a new body or secret in the same file is a change. */
    if (a->request_body_len != b->request_body_len ||
        (a->request_body_len && memcmp(a->request_body, b->request_body, a->request_body_len)))
        return false;
    return str_eq(a->oauth2_secret, b->oauth2_secret);
}

int config_env_name(struct buf *out, const char *name)
{
    char env[CONFIG_MAX_NAME + 1];
    if (strlen(name) > CONFIG_MAX_NAME)
        return -1;
    env_name(name, env, sizeof env);
    return buf_puts(out, env);
}

/* ---- documentation ----------------------------------------------------------------------- */

/* Appends text as "# " comment lines of at most 100 columns. */
static int put_wrapped(struct buf *out, const char *text)
{
    const size_t width = 100 - 2;
    const char *p = text;
    int rc = 0;
    while (*p && rc == 0) {
        size_t n = strlen(p);
        if (n > width) {
            n = width;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = strcspn(p, " ");
        }
        rc |= buf_printf(out, "# %.*s\n", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
    return rc;
}

static const char *type_name(const struct key *k)
{
    switch (k->type) {
    case T_STRING:
        return "Text";
    case T_PATH:
        return "File name";
    case T_TOKEN:
        return "Name";
    case T_BOOL:
        return "Boolean";
    case T_UINT:
        return "Number";
    case T_DURATION:
        return "Duration";
    case T_SIZE:
        return "Size";
    case T_ADDR:
        return "Address";
    case T_ENUM:
        return "One of";
    case T_URL:
        return "URL";
    case T_HEADERS:
        return "Repeatable, \"Name: value\"";
    case T_NAMES:
        return "Repeatable, header name";
    case T_PREFIXES:
        return "Repeatable, URL prefix";
    case T_ORIGINS:
        return "Repeatable, origin";
    case T_CIDRS:
        return "Repeatable, address range";
    case T_PARAMS:
        return "Repeatable, name=value";
    }
    return "?";
}

/* Appends the type, bounds and default of k: "Duration, 100ms to 1d. Default: 5s." */
static int put_spec(struct buf *out, const struct key *k, bool markdown)
{
    char lo[32], hi[32];
    int rc = buf_puts(out, type_name(k));
    if (k->type == T_ENUM) {
        for (const struct choice *c = k->choices; c->name; c++)
            rc |= buf_printf(out, "%s%s", c == k->choices ? " " : ", ", c->name);
    }
    if (k->type == T_UINT || k->type == T_DURATION || k->type == T_SIZE) {
        fmt_bound(k, k->min, lo, sizeof lo);
        fmt_bound(k, k->max, hi, sizeof hi);
        rc |= buf_printf(out, ", %s to %s", lo, hi);
    }
    if (k->flags & F_REQUIRED)
        rc |= buf_puts(out, ". Required.");
    else if (k->def != NULL && markdown)
        rc |= buf_printf(out, ". Default: `%s`.", k->def);
    else if (k->def != NULL)
        rc |= buf_printf(out, ". Default: %s.", k->def);
    else
        rc |= buf_puts(out, ". Not set by default.");
    return rc;
}

static const char example_header[] =
    "pollcast configuration: every key, with its default.\n"
    "\n"
    "Generated from the table of keys in src/config.c by `pollcast check-config "
    "--print-example`; do not edit by hand (a unit test compares the two). Lines that start "
    "with ';' are comments: uncomment a key to change it.\n"
    "\n"
    "Syntax. [server], [allow] and [auth] at most once each; one [upstream NAME] per upstream. "
    "\"key = value\" per line; values are not quoted and have no escapes. A line that starts "
    "with ';' or '#' is a comment, and so is the end of a line from a ';' that follows a space or "
    "a tab. A repeatable key may be given several times, or continued on indented lines, one "
    "value per line. Unknown sections and keys are errors, and so is a key given twice unless it "
    "is repeatable.\n"
    "\n"
    "Values. Durations: 250ms, 1.5s, 5s, 2m, 1h, 1d; a bare number is seconds. Sizes: 512KiB, "
    "8MiB, 1GiB (powers of 1024), 1kB, 1MB, 1GB (powers of 1000); a bare number is bytes. "
    "Booleans: true or false, yes or no, on or off, 1 or 0.\n"
    "\n"
    "Limits. The file: at most 1 MiB; a line: 4096 bytes; upstreams: 4096; values of one "
    "repeatable key: 256.\n"
    "\n"
    "Environment. POLLCAST_<SECTION>_<KEY>=value overrides a key, e.g. "
    "POLLCAST_SERVER_LISTEN=0.0.0.0:8080. For [upstream NAME] the variable is "
    "POLLCAST_UPSTREAM_<NAME>_<KEY>, NAME in upper case with '-' and '.' written '_' (two "
    "upstream names may therefore not differ only in case, '-', '.' and '_'); when it names no "
    "upstream of the file, it adds one, named in lower case, whose url must then be set too. "
    "A variable for a repeatable key replaces the file's values with its own, one per line "
    "(forward_header, cidr and cors_origin also take commas). Other POLLCAST_ variables "
    "(not SERVER_, UPSTREAM_, ALLOW_, AUTH_ or CLUSTER_) are ignored.\n"
    "\n"
    "Without a config file pollcast listens on 127.0.0.1:8080 with one upstream, demo, whose "
    "url is builtin:demo: a document served by pollcast itself that changes every second "
    "(curl -N localhost:8080/streams/demo). Any upstream may use url = builtin:demo.\n";

static int put_paragraphs(struct buf *out, const char *text)
{
    int rc = 0;
    while (*text && rc == 0) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);
        char para[2048];
        if (n >= sizeof para)
            return -1;
        memcpy(para, text, n);
        para[n] = '\0';
        rc |= n == 0 ? buf_puts(out, "#\n") : put_wrapped(out, para);
        text += n + (nl != NULL);
    }
    return rc;
}

int config_write_example(struct buf *out)
{
    int rc = put_paragraphs(out, example_header);
    for (int s = 0; s < SEC_COUNT && rc == 0; s++) {
        rc |= buf_puts(out, "\n\n");
        rc |= put_wrapped(out, sec_help[s]);
        if (s == SEC_UPSTREAM)
            rc |= buf_printf(out, "[upstream %s]\n", EXAMPLE_UPSTREAM);
        else
            rc |= buf_printf(out, "[%s]\n", sec_names[s]);
        for (size_t i = 0; i < NKEYS && rc == 0; i++) {
            const struct key *k = &keys[i];
            char env[128], spec[512];
            struct buf b;
            if (k->sec != (enum sec)s)
                continue;
            buf_init(&b, sizeof spec);
            rc |= put_spec(&b, k, false);
            snprintf(spec, sizeof spec, "%s", b.data ? b.data : "");
            buf_dispose(&b);
            env_var(k, s == SEC_UPSTREAM ? "<NAME>" : NULL, env, sizeof env);
            rc |= buf_puts(out, "\n");
            rc |= put_wrapped(out, k->help);
            rc |= put_wrapped(out, spec);
            rc |= buf_printf(out, "# Environment: %s\n", env);
            const char *v = k->def ? k->def : k->example;
            rc |= buf_printf(out, "%s%s = %s\n", (k->flags & F_REQUIRED) ? "" : ";", k->name,
                             v ? v : "");
        }
    }
    return rc ? -1 : 0;
}

int config_write_reference(struct buf *out)
{
    int rc = 0;
    for (int s = 0; s < SEC_COUNT && rc == 0; s++) {
        rc |= buf_printf(out,
                         "%s### [%s%s]\n\n%s\n\n| key | type and default | description |\n"
                         "|---|---|---|\n",
                         s == 0 ? "" : "\n", sec_names[s], s == SEC_UPSTREAM ? " NAME" : "",
                         sec_help[s]);
        for (size_t i = 0; i < NKEYS && rc == 0; i++) {
            const struct key *k = &keys[i];
            if (k->sec != (enum sec)s)
                continue;
            rc |= buf_printf(out, "| `%s` | ", k->name);
            rc |= put_spec(out, k, true);
            rc |= buf_printf(out, " | %s |\n", k->help);
        }
    }
    return rc ? -1 : 0;
}

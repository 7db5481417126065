/* The HTTP front's public interface: libmicrohttpd driven by the event loop (its epoll descriptor
 * is watched by the loop; no thread of its own), routing of the wire contract's endpoints, CORS,
 * request limits, health, readiness and metrics, and the built-in demo upstream document. The
 * implementation is in src/http/: server.c, and one file per group of routes. */
#ifndef POLLCAST_HTTP_H
#define POLLCAST_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "hub.h"

struct loop;
struct http_server;

/* A named stream as the HTTP side serves it (GET /streams/NAME). */
struct http_stream {
    const char *name;
    struct topic_spec spec;   /* spec.poll.interval_ms is the default interval */
    uint64_t min_interval_ms; /* ?interval= is clamped to [min, max] */
    uint64_t max_interval_ms;
    enum hub_mode mode;                 /* default mode */
    const char *const *forward_headers; /* client header names passed upstream; NULL: none */
    const char *request_id;    /* method and body digest ("POST.1a2b..."), part of the topic key so
                                  that another body is another topic; NULL: a GET */
    int push;                  /* [stream NAME]: no upstream, documents are published to it */
    const char *publish_token; /* the publishers' secret; NULL: JWT publishers only */
    const char *state_file;    /* push: where the last document is kept; NULL: nowhere */
};

struct http_params {
    struct sockaddr_storage addr; /* where to listen */
    socklen_t addrlen;
    const struct http_stream *streams;
    size_t nstreams;
    const char *const *cors_origins;   /* NULL-terminated; "*" allows any origin */
    const char *const *allow_prefixes; /* canonical prefixes (ssrf_prefixes_new) that ad-hoc
                                          URLs of GET /proxy?url= must match; NULL: none */
    const struct config_cidr_list *allow_cidrs; /* non-public ranges ad-hoc URLs may reach */
    const struct auth *auth;                    /* NULL: no authentication */
    const char *auth_cookie;                    /* cookie that may carry the token */
    struct poller_spec adhoc; /* interval, limits for ad-hoc upstreams (url unused) */
    uint64_t adhoc_min_interval_ms, adhoc_max_interval_ms;
    uint64_t adhoc_error_repeat_ms;
    int adhoc_any_content_type; /* [allow] accept_any_content_type */
    const char *const *adhoc_id_keys;
    const char *const *adhoc_forward_headers; /* NULL-terminated header names a Streamdata.io
                                                 client may send upstream (X-Sd-Header) */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0: no limit */
    uint64_t connect_rate_per_ip;    /* new connections per second per address; 0: no limit */
    uint64_t connect_burst_per_ip;
    size_t max_subscribers;
    size_t max_url_length; /* request targets longer than this get 414; 0: no limit */
    size_t max_topics;
    unsigned request_timeout_s; /* for reading a request; streams have none */
    size_t connection_memory;   /* MHD's per-connection pool: http_connection_memory() */
    size_t max_header_bytes;    /* header lines (as received) beyond this get 431; 0: no limit */
    unsigned listen_backlog;
    unsigned io_threads; /* threads that write the streams (sse_io_new); 0 or 1: the main one */
    int io_bind_cpus;    /* bind each I/O thread to a CPU of its own (sse_io_new) */
    uint64_t overload_retry_ms;
    int demo;       /* serve the built-in demo document at /_demo/upstream.json */
    int viewer;     /* serve the live viewer page at / */
    int metrics;    /* serve GET /metrics (404 otherwise) */
    int access_log; /* log every stream request at open and close */
    int compat;     /* serve the Streamdata.io form GET /{absolute-url} */
    int cluster;    /* cluster mode: publishing to push streams is refused (501) */
};

struct metrics;

/* Header fields (each cookie counting as one) and query parameters a request may have; more get
 * 431 or 414. */
#define HTTP_MAX_HEADER_FIELDS 48
#define HTTP_MAX_QUERY_PARAMS  32

/* The per-connection memory (libmicrohttpd's pool) that lets every request within the two limits
 * be served, and one up to twice over them be refused with pollcast's own answer. */
size_t http_connection_memory(size_t max_url_length, size_t max_header_bytes);

/* Starts listening. Returns NULL with a message in err on failure (address in use, ...). The
 * server keeps pointers into params' arrays; they must outlive it. */
struct http_server *http_server_new(struct loop *loop, struct hub *hub,
                                    const struct http_params *params, char *err, size_t errlen);

/* Takes the new values of a reloaded config: everything in params except what the listening
 * socket and MHD were started with (addr, max_connections, max_connections_per_ip,
 * connect_rate_per_ip, connect_burst_per_ip, request_timeout_s, connection_memory,
 * max_url_length, max_header_bytes, listen_backlog, io_threads), which need a restart. The server
 * points into params' arrays from then on and no longer into the previous ones. Cannot fail. */
void http_server_update(struct http_server *srv, const struct http_params *params);

/* Checks every authenticated stream going on against the current [auth] (after
 * http_server_update on reload): a stream whose token the new keys or settings refuse, or whose
 * claim no longer grants it, ends with a last "stream-end" event (reason auth_changed); the
 * others' expiry follows the new leeway. With auth now off, streams go on untracked. One
 * signature check per authenticated stream. Cannot fail. */
void http_server_recheck_auth(struct http_server *srv);

/* The registry /metrics writes: the hub's and the HTTP front's own series are in it; the caller
 * may add more (their values must outlive the server). */
struct metrics *http_server_metrics(struct http_server *srv);

/* Appends JSON members (without braces or a leading comma, e.g. "\"cluster\":\"up\"") to out
 * for /readyz, and returns 1 when the node is ready, 0 when it is not yet (503). */
typedef int (*http_ready_fn)(void *arg, struct buf *out);

/* Installs the /readyz hook (NULL: plain {"status":"ready"}). Cannot fail. */
void http_server_set_ready(struct http_server *srv, http_ready_fn fn, void *arg);

/* The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *srv);

/* Writes into out (len bytes) who writes the streams, for the start-up log line. */
void http_server_describe_io(const struct http_server *srv, char *out, size_t len);

/* Stops accepting new connections; established ones go on. */
void http_server_quiesce(struct http_server *srv);

/* Open connections, streams included. */
unsigned http_server_connections(const struct http_server *srv);

/* Closes every connection and frees the server. No connection may be suspended: end the
 * streams first (hub_close_all) and let the loop run. Accepts NULL. */
void http_server_free(struct http_server *srv);

/* Writes the demo document for time t_s (seconds) into out: ten prices, two of which move each
 * second, and a list of orders that gains, loses, changes and reorders items, a few values per
 * second (the schedule is in http/ops.c). Returns 0 or -1. */
int http_demo_document(struct buf *out, uint64_t t_s);

#endif

/* pollcast's configuration: an INI file (read with inih) and POLLCAST_* environment overrides
 * turned into one plain struct. A single table of keys in config.c drives parsing, validation,
 * defaults, `pollcast check-config` and the text of config.example.ini. */
#ifndef POLLCAST_CONFIG_H
#define POLLCAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct buf;

/* Bounds on what a config may hold (documented in config.example.ini). */
#define CONFIG_MAX_FILE_BYTES (1024 * 1024) /* a config file */
#define CONFIG_MAX_LINE       4096          /* one line, or one environment value */
#define CONFIG_MAX_UPSTREAMS  4096          /* [upstream NAME] sections */
#define CONFIG_MAX_LIST_ITEMS 256           /* values of one repeatable key */
#define CONFIG_MAX_NAME       64            /* an upstream NAME: [A-Za-z0-9._-]{1,64} */
#define CONFIG_KEY_SLOTS      40            /* keys per section, at most */

/* The url of the upstream that pollcast serves itself (a document that changes every second). */
#define CONFIG_DEMO_URL  "builtin:demo"
#define CONFIG_DEMO_NAME "demo"

enum config_mode { CONFIG_MODE_PATCH, CONFIG_MODE_SNAPSHOT };
enum config_log_level { CONFIG_LOG_DEBUG, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR };
enum config_log_format { CONFIG_LOG_TEXT, CONFIG_LOG_JSON };
enum config_auth_alg { CONFIG_AUTH_OFF, CONFIG_AUTH_HS256, CONFIG_AUTH_RS256, CONFIG_AUTH_ES256 };
enum config_oauth2_auth { CONFIG_OAUTH2_BASIC, CONFIG_OAUTH2_POST };
enum config_io_affinity { CONFIG_IO_AFFINITY_AUTO, CONFIG_IO_AFFINITY_NONE };
enum config_method {
    CONFIG_METHOD_GET,
    CONFIG_METHOD_POST,
    CONFIG_METHOD_PUT,
    CONFIG_METHOD_PATCH,
    CONFIG_METHOD_REPORT,
    CONFIG_METHOD_QUERY
};

/* Bounds of what an upstream's request may carry (documented in config.example.ini). */
#define CONFIG_MAX_BODY_FILE   (1024 * 1024) /* body_file */
#define CONFIG_MAX_SECRET_FILE 4096          /* oauth2_client_secret_file */

/* A listen address: a numeric IPv4 or IPv6 host and a port (0: any free port). */
struct config_addr {
    char host[48]; /* numeric, without brackets: "127.0.0.1", "::1" */
    uint16_t port;
    int family;                 /* AF_INET or AF_INET6 */
    struct sockaddr_storage sa; /* ready for bind() */
    socklen_t salen;
};

/* The values of a repeatable key, in the order given. Each item is owned by the list. */
struct config_list {
    char **items;
    size_t n;
};

/* An address range: the bits of addr beyond prefix are zero. */
struct config_cidr {
    int family; /* AF_INET (addr[0..3]) or AF_INET6 (addr[0..15]) */
    uint8_t addr[16];
    unsigned prefix; /* 0..32 or 0..128 */
};

struct config_cidr_list {
    struct config_cidr *items;
    size_t n;
};

/* Where each key of a section was set, indexed by the key's place in the table: > 0 a line of
 * the file, < 0 the environment, 0 the default. For config.c's messages; other modules need not
 * look at it. */
struct config_origin {
    int line[CONFIG_KEY_SLOTS];
};

/* [server]. Durations are milliseconds, sizes bytes; 0 means "no limit" or "off" where the key's
 * help says so. */
struct config_server {
    struct config_addr listen;
    uint64_t max_connections;
    uint64_t listen_backlog;
    uint64_t max_subscribers;
    uint64_t max_subscribers_per_ip; /* 0: no per-address limit */
    uint64_t connect_rate_per_ip;    /* new connections per second; 0: no limit */
    uint64_t connect_burst_per_ip;
    uint64_t max_pollers;
    uint64_t max_url_length;
    uint64_t max_header_bytes;
    uint64_t request_timeout_ms;
    uint64_t tcp_keepalive_ms; /* 0: off */
    uint64_t keepalive_ms;
    uint64_t retry_ms;
    uint64_t retry_jitter_ms;
    uint64_t overload_retry_ms;
    uint64_t history_events;
    uint64_t history_bytes;
    uint64_t history_age_ms; /* 0: no age limit */
    uint64_t queue_events;
    uint64_t queue_bytes;
    uint64_t adhoc_grace_ms;
    uint64_t shutdown_grace_ms;
    uint64_t io_threads; /* 0: the CPUs of the affinity mask (serve.c caps it at 64) */
    enum config_io_affinity io_cpu_affinity;
    struct config_list cors_origin; /* "*" or "scheme://host[:port]", lower case */
    enum config_log_level log_level;
    enum config_log_format log_format;
    bool access_log;
    bool metrics;
    bool viewer;
    bool streamdata_compat;
    struct config_origin origin;
};

/* [upstream NAME]: a named upstream, served as GET /streams/NAME. */
struct config_upstream {
    char *name; /* [A-Za-z0-9._-]{1,64} */
    char *url;  /* http(s) URL, or CONFIG_DEMO_URL */
    uint64_t interval_ms;
    uint64_t min_interval_ms; /* min_interval_ms <= interval_ms <= max_interval_ms */
    uint64_t max_interval_ms;
    enum config_mode mode;
    struct config_list header;         /* "Name: value", secrets: never log them */
    struct config_list forward_header; /* client header names allowed upstream */
    uint64_t timeout_ms;               /* capped at the poll interval by the poller */
    uint64_t connect_timeout_ms;
    uint64_t max_body;
    char *id_key; /* "" turns identity matching off */
    uint64_t error_repeat_ms;
    uint64_t backoff_max_ms;
    bool follow_redirects;
    uint64_t max_redirects;
    bool tls_verify;
    char *ca_file;                /* NULL: the system's CA store */
    bool accept_any_content_type; /* any Content-Type whose body parses as JSON */
    enum config_method method;
    char *body;                 /* inline request body; NULL: none */
    char *body_file;            /* file holding the request body; NULL: none */
    char *content_type;         /* of the body; NULL: application/json */
    struct config_list query;   /* "name=value" appended to the URL; secrets: never log them */
    bool respect_cache_control; /* Cache-Control: max-age is a floor on the interval */
    char *oauth2_token_url;     /* NULL: no OAuth2 */
    char *oauth2_client_id;
    char *oauth2_client_secret;      /* a secret */
    char *oauth2_client_secret_file; /* file holding the secret instead */
    char *oauth2_scope;
    char *oauth2_audience;
    enum config_oauth2_auth oauth2_client_auth;
    char *publish_token_file; /* publishers' secret (first line); NULL: JWT publishers only */
    char *state_file;         /* [stream NAME]: the last document, kept across restarts */
    bool push;                /* [stream NAME]: no url, documents are published to it */
    /* Derived by config_read_files (not keys): the body to send (body, or the content of
     * body_file; NULL: none) and the client secret (oauth2_client_secret, or the first line of
     * its file; NULL: no OAuth2). Both owned by the config. */
    char *request_body;
    size_t request_body_len;
    char *oauth2_secret;
    char *publish_token; /* the first line of publish_token_file, owned; NULL: none */
    int line;            /* of the section header; -1 made by the environment */
    struct config_origin origin;
};

/* [allow]: the rules and defaults for ad-hoc upstreams (GET /proxy?url=). */
struct config_allow {
    struct config_list url_prefix; /* "http(s)://host[:port]/...", scheme and host lower */
    struct config_cidr_list cidr;  /* non-public ranges that may nevertheless be reached */
    bool follow_redirects;
    uint64_t max_redirects;
    uint64_t max_pollers;
    uint64_t interval_ms;
    uint64_t min_interval_ms;
    uint64_t max_interval_ms;
    enum config_mode mode;
    struct config_list forward_header;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t max_body;
    char *id_key;
    uint64_t error_repeat_ms;
    uint64_t backoff_max_ms;
    bool tls_verify;
    char *ca_file;
    bool accept_any_content_type;
    struct config_origin origin;
};

/* [auth]: JWT checks; off unless algorithm is set. */
struct config_auth {
    enum config_auth_alg algorithm; /* CONFIG_AUTH_OFF: no auth */
    char *secret;                   /* HS256 key, >= 32 bytes; a secret */
    char *public_key_file;          /* PEM, RS256 and ES256 */
    char *audience;                 /* NULL: aud not checked */
    char *issuer;                   /* NULL: iss not checked */
    char *claim;
    uint64_t leeway_ms;
    char *cookie;
    struct config_origin origin;
};

/* [cluster]: cluster mode on Redis; off unless redis is set. */
struct config_cluster {
    char *redis;   /* redis://[[USER]:PASSWORD@]host[:port][/db] or unix:/path[?db=N]; NULL: off.
                      A secret: it may hold a password */
    char *node_id; /* NULL: hostname-pid */
    uint64_t lease_ms;
    struct config_origin origin;
};

/* A parsed [cluster] redis value. */
struct config_redis_addr {
    char host[256];     /* TCP: host name or address (IPv6 without brackets); "" for unix */
    unsigned port;      /* 6379 by default */
    char path[108];     /* unix: the socket path; "" for TCP */
    char user[128];     /* ACL user, "" for none */
    char password[512]; /* "" for none */
    unsigned db;
};

/* Parses a [cluster] redis value into out. Returns 0, or -1 with a message (that never repeats
 * the password) in err. Pure: touches no network. */
int config_redis_url_parse(const char *url, struct config_redis_addr *out, char *err,
                           size_t errlen);

struct config {
    char *source; /* file name used in messages; NULL for defaults */
    struct config_server server;
    struct config_upstream *upstreams; /* in file order, then those the environment adds */
    size_t n_upstreams;
    struct config_allow allow;
    struct config_auth auth;
    struct config_cluster cluster;
};

/* Fills cfg with every default and no upstream. cfg need not be initialised; it then owns heap
 * memory to release with config_dispose. Returns 0, or -1 when out of memory (cfg is then empty
 * and safe to dispose). */
int config_defaults(struct config *cfg);

/* What pollcast runs without a config file: the defaults plus one upstream named "demo" whose url
 * is CONFIG_DEMO_URL, polled every second. Returns 0, or -1 when out of memory. */
int config_default_demo(struct config *cfg);

/* Releases everything cfg owns and leaves it zeroed. Accepts a zeroed or disposed config. */
void config_dispose(struct config *cfg);

/* Parses INI text (NUL-terminated; filename is only used in messages) into out, which need not
 * be initialised, and validates it. Touches no file and no environment. Returns 0 and fills out
 * (the caller disposes it), or -1 with "filename:line: message" in err (out is then empty).
 * Not thread-safe: it sets inih's process-wide knobs (line length, ...) while it runs. */
int config_parse_string(const char *text, const char *filename, struct config *out, char *err,
                        size_t errlen);

/* Same as config_parse_string on the content of the file at path (at most
 * CONFIG_MAX_FILE_BYTES). Returns 0, or -1 with "path: reason" or "path:line: message" in err. */
int config_load_file(const char *path, struct config *out, char *err, size_t errlen);

/* Applies the POLLCAST_<SECTION>_<KEY>=value entries of env (a NULL-terminated array like
 * environ; other entries are ignored) to cfg, then validates the whole config again. Returns 0,
 * or -1 with "VARIABLE: message" (or "file:line: message") in err; cfg is then only fit for
 * config_dispose. */
int config_apply_env(struct config *cfg, char *const *env, char *err, size_t errlen);

/* Checks that the files the config names (public_key_file, ca_file) can be opened for reading.
 * Returns 0, or -1 with "file:line: message" in err. */
int config_check_files(const struct config *cfg, char *err, size_t errlen);

/* Runs config_check_files, then reads what the config holds by reference: each upstream's
 * body_file (at most CONFIG_MAX_BODY_FILE bytes) into request_body, and its
 * oauth2_client_secret_file (at most CONFIG_MAX_SECRET_FILE bytes, its first line) into
 * oauth2_secret; inline body and oauth2_client_secret are copied there too. Returns 0, or -1 with
 * "file:line: message" in err (never the secret); cfg is then only fit for config_dispose. */
int config_read_files(struct config *cfg, char *err, size_t errlen);

/* Returns the method name of m ("GET", "POST", ...). Cannot fail. */
const char *config_method_name(enum config_method m);

/* Returns the upstream called name, or NULL. The pointer lives as long as cfg is not changed. */
const struct config_upstream *config_find_upstream(const struct config *cfg, const char *name);

/* True when a and b have the same name and the same value for every key (used on reload to keep
 * the subscribers of unchanged upstreams). Cannot fail. */
bool config_upstream_equal(const struct config_upstream *a, const struct config_upstream *b);

/* Appends the text of config.example.ini (every key, its help and its default) to out.
 * Returns 0, or -1 when out cannot grow. */
int config_write_example(struct buf *out);

/* Appends a Markdown reference of every key (tables per section) to out. Returns 0 or -1. */
int config_write_reference(struct buf *out);

/* Appends the upstream name as it appears in environment variables: upper case, '-' and '.'
 * as '_' ("my-api.v2" gives "MY_API_V2"). Returns 0 or -1. */
int config_env_name(struct buf *out, const char *name);

#endif

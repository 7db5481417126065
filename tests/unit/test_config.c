/* Unit tests of the config module: every value type, every error message with its file:line,
 * environment overrides, defaults, repeatable keys, check-config, and config.example.ini
 * (valid, and identical to the text the table generates). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "harness.h"

static char err[1024];

static int parse(const char *text, struct config *c)
{
    err[0] = '\0';
    return config_parse_string(text, "t.ini", c, err, sizeof err);
}

/* Parses text, which must fail with exactly want. */
#define EXPECT_ERR(text, want)                                                                     \
    do {                                                                                           \
        struct config c_;                                                                          \
        int rc_ = parse(text, &c_);                                                                \
        CHECK_INT(rc_, -1);                                                                        \
        CHECK_STR(err, want);                                                                      \
        if (rc_ == 0)                                                                              \
            config_dispose(&c_);                                                                   \
    } while (0)

/* Builds "[section]\n<pre>key = value\n" (an upstream "t" with a url when section is
 * "upstream") in a static buffer. */
static const char *one(const char *section, const char *key, const char *value)
{
    static char text[8192];
    if (strcmp(section, "upstream") == 0)
        snprintf(text, sizeof text, "[upstream t]\nurl = http://x/\n%s = %s\n", key, value);
    else
        snprintf(text, sizeof text, "[%s]\n%s = %s\n", section, key, value);
    return text;
}

/* Parses one server key; returns 0 with c filled or -1. */
static int server_key(const char *key, const char *value, struct config *c)
{
    return parse(one("server", key, value), c);
}

/* Parses one upstream key of upstream "t" (line 3). */
static int upstream_key(const char *key, const char *value, struct config *c)
{
    return parse(one("upstream", key, value), c);
}

/* ---- defaults ---------------------------------------------------------------------------- */

static void test_defaults(void)
{
    struct config c;
    REQUIRE(config_defaults(&c) == 0);
    CHECK_STR(c.server.listen.host, "127.0.0.1");
    CHECK_INT(c.server.listen.port, 8080);
    CHECK_INT(c.server.listen.family, AF_INET);
    CHECK_INT(c.server.listen.salen, sizeof(struct sockaddr_in));
    CHECK_INT(c.server.keepalive_ms, 15000);
    CHECK_INT(c.server.max_subscribers, 50000);
    CHECK_INT(c.server.max_subscribers_per_ip, 1000);
    CHECK_INT(c.server.max_header_bytes, 2048);
    CHECK_INT(c.server.history_events, 1024);
    CHECK_INT(c.server.history_bytes, 4 * 1024 * 1024);
    CHECK_INT(c.server.queue_bytes, 1024 * 1024);
    CHECK_INT(c.server.adhoc_grace_ms, 30000);
    CHECK_INT(c.server.shutdown_grace_ms, 4000);
    CHECK_INT(c.server.io_threads, 0); /* the number of online CPUs */
    CHECK_INT(c.server.io_cpu_affinity, CONFIG_IO_AFFINITY_AUTO);
    CHECK_INT(c.server.log_level, CONFIG_LOG_INFO);
    CHECK_INT(c.server.log_format, CONFIG_LOG_TEXT);
    CHECK(c.server.access_log && c.server.metrics && c.server.viewer);
    CHECK(!c.server.streamdata_compat);
    CHECK_INT(c.server.cors_origin.n, 0);
    CHECK_INT(c.n_upstreams, 0);
    CHECK_INT(c.allow.url_prefix.n, 0);
    CHECK_INT(c.allow.interval_ms, 5000);
    CHECK_INT(c.allow.max_body, 8 * 1024 * 1024);
    CHECK(!c.allow.follow_redirects);
    CHECK_STR(c.allow.id_key, "id");
    CHECK_INT(c.auth.algorithm, CONFIG_AUTH_OFF);
    CHECK_STR(c.auth.claim, "pollcast.subscribe");
    CHECK_STR(c.auth.cookie, "pollcast_token");
    CHECK_INT(c.auth.leeway_ms, 30000);
    CHECK(c.auth.secret == NULL && c.auth.audience == NULL);
    CHECK(c.source == NULL);
    config_dispose(&c);
    config_dispose(&c); /* twice is harmless */
}

static void test_demo(void)
{
    struct config c;
    REQUIRE(config_default_demo(&c) == 0);
    REQUIRE(c.n_upstreams == 1);
    CHECK_STR(c.upstreams[0].name, CONFIG_DEMO_NAME);
    CHECK_STR(c.upstreams[0].url, "builtin:demo");
    CHECK_INT(c.upstreams[0].interval_ms, 1000);
    CHECK_INT(c.upstreams[0].min_interval_ms, 1000);
    CHECK_INT(c.upstreams[0].max_interval_ms, 3600000);
    CHECK_STR(c.server.listen.host, "127.0.0.1");
    CHECK_INT(c.server.listen.port, 8080);
    CHECK(config_find_upstream(&c, "demo") == &c.upstreams[0]);
    config_dispose(&c);
}

/* The example of PRODUCT.md, inline comments included. */
static void test_product_example(void)
{
    const char *text = "[server]\n"
                       "listen = 127.0.0.1:8080          ; host:port, [::1]:8080 for IPv6\n"
                       "\n"
                       "[upstream prices]                ; subscribers use GET /streams/prices\n"
                       "url = https://api.example.com/v1/prices\n"
                       "interval = 5s                    ; 250ms, 1.5s, 2m ...; 5s by default\n"
                       "header = Authorization: Bearer SECRET   ; repeatable; added server-side\n"
                       "\n"
                       "[allow]                          ; ad-hoc URLs that GET /proxy?url= may "
                       "reach\n"
                       "url_prefix = https://api.example.com/\n";
    struct config c;
    REQUIRE(parse(text, &c) == 0);
    CHECK_STR(c.source, "t.ini");
    CHECK_STR(c.server.listen.host, "127.0.0.1");
    REQUIRE(c.n_upstreams == 1);
    const struct config_upstream *u = &c.upstreams[0];
    CHECK_STR(u->name, "prices");
    CHECK_STR(u->url, "https://api.example.com/v1/prices");
    CHECK_INT(u->interval_ms, 5000);
    CHECK_INT(u->min_interval_ms, 1000);
    CHECK_INT(u->max_interval_ms, 3600000);
    CHECK_INT(u->mode, CONFIG_MODE_PATCH);
    REQUIRE(u->header.n == 1);
    CHECK_STR(u->header.items[0], "Authorization: Bearer SECRET");
    CHECK_INT(u->max_body, 8 * 1024 * 1024);
    CHECK_INT(u->timeout_ms, 30000);
    CHECK_INT(u->connect_timeout_ms, 3000);
    CHECK_STR(u->id_key, "id");
    CHECK(u->follow_redirects && u->tls_verify);
    CHECK(u->ca_file == NULL);
    CHECK_INT(u->line, 4);
    REQUIRE(c.allow.url_prefix.n == 1);
    CHECK_STR(c.allow.url_prefix.items[0], "https://api.example.com/");
    config_dispose(&c);
}

/* ---- value types ------------------------------------------------------------------------- */

static void check_duration(const char *v, long long want)
{
    struct config c;
    int rc = server_key("history_age", v, &c);
    if (want < 0) {
        CHECK_INT(rc, -1);
        return;
    }
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(c.server.history_age_ms, want);
        config_dispose(&c);
    } else {
        fprintf(stderr, "  duration %s: %s\n", v, err);
    }
}

static void test_durations(void)
{
    check_duration("250ms", 250);
    check_duration("1.5s", 1500);
    check_duration("5s", 5000);
    check_duration("2m", 120000);
    check_duration("1h", 3600000);
    check_duration("1d", 86400000);
    check_duration("5", 5000);
    check_duration("0.25", 250);
    check_duration("0", 0);
    check_duration("1.25m", 75000);
    check_duration("1 h", 3600000);
    check_duration("7d", 7 * 86400000LL);
    check_duration("5x", -1);
    check_duration("-1s", -1);
    check_duration("1.5.2s", -1);
    check_duration("s", -1);
    check_duration(".5s", -1);
    check_duration("1.s", -1);
    check_duration("1e3s", -1);
    check_duration("0.5ms", -1);
    check_duration("5S", -1);
    check_duration("8d", -1);
    check_duration("99999999999999999999s", -1);

    struct config c;
    CHECK_INT(server_key("history_age", "5x", &c), -1);
    CHECK_STR(err, "t.ini:2: history_age: \"5x\" is not a duration (use 250ms, 1.5s, 2m)");
    CHECK_INT(server_key("history_age", "8d", &c), -1);
    CHECK_STR(err, "t.ini:2: history_age: \"8d\" is out of range (0s to 7d)");
    CHECK_INT(server_key("keepalive", "500ms", &c), -1);
    CHECK_STR(err, "t.ini:2: keepalive: \"500ms\" is out of range (1s to 1h)");
    CHECK_INT(server_key("keepalive", "99999999999999999999s", &c), -1);
    CHECK_STR(err, "t.ini:2: keepalive: \"99999999999999999999s\" is out of range (1s to 1h)");
    CHECK_INT(upstream_key("interval", "50ms", &c), -1);
    CHECK_STR(err, "t.ini:3: interval: \"50ms\" is out of range (100ms to 1d)");
}

static void check_size(const char *v, long long want)
{
    struct config c;
    int rc = server_key("history_bytes", v, &c);
    if (want < 0) {
        CHECK_INT(rc, -1);
        return;
    }
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(c.server.history_bytes, want);
        config_dispose(&c);
    } else {
        fprintf(stderr, "  size %s: %s\n", v, err);
    }
}

static void test_sizes(void)
{
    check_size("8MiB", 8 * 1024 * 1024);
    check_size("512KiB", 512 * 1024);
    check_size("1MB", 1000000);
    check_size("1kB", 1000);
    check_size("1GiB", 1024LL * 1024 * 1024);
    check_size("1024", 1024);
    check_size("1536B", 1536);
    check_size("1.5KiB", 1536);
    check_size("2 mib", 2 * 1024 * 1024);
    check_size("0", 0);
    check_size("8MB?", -1);
    check_size("1.0001KiB", -1);
    check_size("KiB", -1);
    check_size("2GiB", -1);
    check_size("-1", -1);
    check_size("8M", -1);

    struct config c;
    CHECK_INT(server_key("history_bytes", "8MB?", &c), -1);
    CHECK_STR(err,
              "t.ini:2: history_bytes: \"8MB?\" is not a size (use 512KiB, 8MiB or a number of "
              "bytes)");
    CHECK_INT(upstream_key("max_body", "512", &c), -1);
    CHECK_STR(err, "t.ini:3: max_body: \"512\" is out of range (1KiB to 1GiB)");
}

static void test_bools(void)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "On"};
    static const char *const no[] = {"false", "no", "off", "0", "False"};
    struct config c;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        REQUIRE(server_key("streamdata_compat", yes[i], &c) == 0);
        CHECK(c.server.streamdata_compat);
        config_dispose(&c);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        REQUIRE(server_key("metrics", no[i], &c) == 0);
        CHECK(!c.server.metrics);
        config_dispose(&c);
    }
    CHECK_INT(server_key("metrics", "maybe", &c), -1);
    CHECK_STR(err, "t.ini:2: metrics: \"maybe\" is not a boolean (use true or false)");
    CHECK_INT(server_key("metrics", "2", &c), -1);
}

static void test_integers(void)
{
    struct config c;
    REQUIRE(upstream_key("max_redirects", "0", &c) == 0);
    CHECK_INT(c.upstreams[0].max_redirects, 0);
    config_dispose(&c);
    REQUIRE(upstream_key("max_redirects", "20", &c) == 0);
    CHECK_INT(c.upstreams[0].max_redirects, 20);
    config_dispose(&c);
    REQUIRE(server_key("max_subscribers", "10000000", &c) == 0);
    CHECK_INT(c.server.max_subscribers, 10000000);
    config_dispose(&c);
    CHECK_INT(upstream_key("max_redirects", "21", &c), -1);
    CHECK_STR(err, "t.ini:3: max_redirects: \"21\" is out of range (0 to 20)");
    CHECK_INT(server_key("max_subscribers", "0", &c), -1);
    CHECK_STR(err, "t.ini:2: max_subscribers: \"0\" is out of range (1 to 10000000)");
    CHECK_INT(server_key("max_subscribers", "abc", &c), -1);
    CHECK_STR(err, "t.ini:2: max_subscribers: \"abc\" is not a whole number");
    CHECK_INT(server_key("max_subscribers", "1.5", &c), -1);
    CHECK_STR(err, "t.ini:2: max_subscribers: \"1.5\" is not a whole number");
    CHECK_INT(server_key("max_subscribers", "+1", &c), -1);
    CHECK_INT(server_key("max_subscribers", "-1", &c), -1);
    CHECK_INT(server_key("max_subscribers", "0x10", &c), -1);
    CHECK_INT(server_key("max_subscribers", "99999999999999999999999", &c), -1);
    CHECK_STR(err, "t.ini:2: max_subscribers: \"99999999999999999999999\" is out of range (1 to "
                   "10000000)");
    CHECK_INT(server_key("max_subscribers", "", &c), -1);
    CHECK_STR(err, "t.ini:2: max_subscribers: the value is empty");
    /* io_threads: 0 (the number of CPUs) to 64. */
    REQUIRE(server_key("io_threads", "0", &c) == 0);
    CHECK_INT(c.server.io_threads, 0);
    config_dispose(&c);
    REQUIRE(server_key("io_threads", "64", &c) == 0);
    CHECK_INT(c.server.io_threads, 64);
    config_dispose(&c);
    REQUIRE(server_key("io_threads", "2", &c) == 0);
    CHECK_INT(c.server.io_threads, 2);
    config_dispose(&c);
    CHECK_INT(server_key("io_threads", "65", &c), -1);
    CHECK_STR(err, "t.ini:2: io_threads: \"65\" is out of range (0 to 64)");
    CHECK_INT(server_key("io_threads", "-1", &c), -1);
    CHECK_INT(server_key("io_threads", "auto", &c), -1);
    CHECK_STR(err, "t.ini:2: io_threads: \"auto\" is not a whole number");
    /* io_cpu_affinity: auto (the default) or none. */
    REQUIRE(server_key("io_cpu_affinity", "none", &c) == 0);
    CHECK_INT(c.server.io_cpu_affinity, CONFIG_IO_AFFINITY_NONE);
    config_dispose(&c);
    REQUIRE(server_key("io_cpu_affinity", "auto", &c) == 0);
    CHECK_INT(c.server.io_cpu_affinity, CONFIG_IO_AFFINITY_AUTO);
    config_dispose(&c);
    CHECK_INT(server_key("io_cpu_affinity", "yes", &c), -1);
    CHECK_STR(err, "t.ini:2: io_cpu_affinity: \"yes\" is not one of auto, none");
}

static void check_listen(const char *v, const char *host, int port, int family)
{
    struct config c;
    int rc = server_key("listen", v, &c);
    if (host == NULL) {
        CHECK_INT(rc, -1);
        return;
    }
    CHECK_INT(rc, 0);
    if (rc != 0)
        return;
    CHECK_STR(c.server.listen.host, host);
    CHECK_INT(c.server.listen.port, port);
    CHECK_INT(c.server.listen.family, family);
    if (family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&c.server.listen.sa;
        CHECK_INT(s6->sin6_family, AF_INET6);
        CHECK_INT(ntohs(s6->sin6_port), port);
        CHECK_INT(c.server.listen.salen, sizeof *s6);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c.server.listen.sa;
        CHECK_INT(s4->sin_family, AF_INET);
        CHECK_INT(ntohs(s4->sin_port), port);
        CHECK_INT(c.server.listen.salen, sizeof *s4);
    }
    config_dispose(&c);
}

static void test_listen(void)
{
    check_listen("127.0.0.1:8080", "127.0.0.1", 8080, AF_INET);
    check_listen("0.0.0.0:8080", "0.0.0.0", 8080, AF_INET);
    check_listen("[::1]:8080", "::1", 8080, AF_INET6);
    check_listen("[::]:0", "::", 0, AF_INET6);
    check_listen("10.1.2.3:65535", "10.1.2.3", 65535, AF_INET);
    check_listen("localhost:8080", NULL, 0, 0);
    check_listen("127.0.0.1", NULL, 0, 0);
    check_listen("[::1]", NULL, 0, 0);
    check_listen("::1:8080", NULL, 0, 0);
    check_listen("1.2.3.4:65536", NULL, 0, 0);
    check_listen("1.2.3:80", NULL, 0, 0);
    check_listen("1.2.3.4:", NULL, 0, 0);
    check_listen("01.2.3.4:80", NULL, 0, 0);
    check_listen("[fe80::1%eth0]:80", NULL, 0, 0);
    check_listen("*:8080", NULL, 0, 0);
    struct config c;
    CHECK_INT(server_key("listen", "localhost:8080", &c), -1);
    CHECK_STR(err, "t.ini:2: listen: \"localhost:8080\" is not a listen address (use "
                   "127.0.0.1:8080, [::1]:8080 or 0.0.0.0:8080)");
}

static void test_enums(void)
{
    struct config c;
    REQUIRE(upstream_key("mode", "snapshot", &c) == 0);
    CHECK_INT(c.upstreams[0].mode, CONFIG_MODE_SNAPSHOT);
    config_dispose(&c);
    REQUIRE(upstream_key("mode", "PATCH", &c) == 0);
    CHECK_INT(c.upstreams[0].mode, CONFIG_MODE_PATCH);
    config_dispose(&c);
    REQUIRE(server_key("log_level", "debug", &c) == 0);
    CHECK_INT(c.server.log_level, CONFIG_LOG_DEBUG);
    config_dispose(&c);
    REQUIRE(server_key("log_level", "warn", &c) == 0);
    CHECK_INT(c.server.log_level, CONFIG_LOG_WARN);
    config_dispose(&c);
    REQUIRE(server_key("log_format", "json", &c) == 0);
    CHECK_INT(c.server.log_format, CONFIG_LOG_JSON);
    config_dispose(&c);
    CHECK_INT(upstream_key("mode", "diff", &c), -1);
    CHECK_STR(err, "t.ini:3: mode: \"diff\" is not one of patch, snapshot");
    CHECK_INT(server_key("log_level", "verbose", &c), -1);
    CHECK_STR(err, "t.ini:2: log_level: \"verbose\" is not one of error, warn, info, debug");
    CHECK_INT(parse("[auth]\nalgorithm = none\n", &c), -1);
    CHECK_STR(err, "t.ini:2: algorithm: \"none\" is not one of HS256, RS256, ES256");
}

static void check_url(const char *v, const char *want_err)
{
    struct config c;
    char text[512];
    snprintf(text, sizeof text, "[upstream u]\nurl = %s\n", v);
    int rc = parse(text, &c);
    if (want_err == NULL) {
        CHECK_INT(rc, 0);
        if (rc == 0) {
            CHECK_STR(c.upstreams[0].url, v);
            config_dispose(&c);
        } else {
            fprintf(stderr, "  url %s: %s\n", v, err);
        }
        return;
    }
    CHECK_INT(rc, -1);
    CHECK_STR(err, want_err);
    if (rc == 0)
        config_dispose(&c);
}

static void test_urls(void)
{
    check_url("http://x", NULL);
    check_url("https://api.example.com:8443/v1/prices?symbol=ACME&x=%20", NULL);
    check_url("HTTP://[::1]:8080/a", NULL);
    check_url("http://10.0.0.1/internal", NULL);
    check_url("http://my_host.internal/", NULL);
    check_url("builtin:demo", NULL);
    check_url("ftp://x/", "t.ini:2: url: \"ftp://x/\" is not an http:// or https:// URL");
    check_url("x/y", "t.ini:2: url: \"x/y\" is not an http:// or https:// URL");
    check_url("https://", "t.ini:2: url: \"https://\" has no host");
    check_url("https:///path", "t.ini:2: url: \"https:///path\" has no host");
    check_url("https://user:pw@x/",
              "t.ini:2: url: URL must not hold credentials (user@host): send them in a header "
              "instead");
    check_url("https://x/#frag",
              "t.ini:2: url: \"https://x/#frag\" has a fragment (#...), which is never sent to a "
              "server");
    check_url("https://x/a b", "t.ini:2: url: \"https://x/a b\" contains a space or a control "
                               "character");
    check_url("https://x\\y/", "t.ini:2: url: \"https://x\\y/\" contains a backslash");
    check_url("https://\xc3\xa9.com/", "t.ini:2: url: \"https://\xc3\xa9.com/\" contains a "
                                       "non-ASCII character (write the host in punycode and "
                                       "percent-encode the rest)");
    check_url("https://x:0/", "t.ini:2: url: \"https://x:0/\" has an invalid port");
    check_url("https://x:99999/", "t.ini:2: url: \"https://x:99999/\" has an invalid port");
    check_url("https://x:/", "t.ini:2: url: \"https://x:/\" has an invalid port");
    check_url("https://[zz]/", "t.ini:2: url: \"https://[zz]/\" has an invalid IPv6 host");
    check_url("https://a!b/", "t.ini:2: url: \"https://a!b/\" has an invalid host");
    check_url("builtin:other",
              "t.ini:2: url: \"builtin:other\" is no built-in upstream (the only one is "
              "builtin:demo)");
}

static void test_headers(void)
{
    struct config c;
    const char *text = "[upstream t]\n"
                       "url = http://x/\n"
                       "header = X-Api-Key: abc\n"
                       "header = Authorization:   Bearer t0k3n  \n"
                       "header = X-Tab: a\tb\n"
                       "header = Host: virtual.example\n";
    REQUIRE(parse(text, &c) == 0);
    REQUIRE(c.upstreams[0].header.n == 4);
    CHECK_STR(c.upstreams[0].header.items[0], "X-Api-Key: abc");
    CHECK_STR(c.upstreams[0].header.items[1], "Authorization: Bearer t0k3n");
    CHECK_STR(c.upstreams[0].header.items[2], "X-Tab: a\tb");
    CHECK_STR(c.upstreams[0].header.items[3], "Host: virtual.example");
    config_dispose(&c);

    CHECK_INT(upstream_key("header", "Authorization Bearer SECRETVALUE", &c), -1);
    CHECK_STR(err, "t.ini:3: header: expected \"Name: value\" (a header name, a colon, a value)");
    CHECK(strstr(err, "SECRETVALUE") == NULL);
    CHECK_INT(upstream_key("header", "Bad Name: SECRETVALUE", &c), -1);
    CHECK_STR(err, "t.ini:3: header: expected \"Name: value\" (a header name, a colon, a value)");
    CHECK_INT(upstream_key("header", "X-Empty:", &c), -1);
    CHECK_STR(err, "t.ini:3: header: X-Empty has an empty value");
    CHECK_INT(upstream_key("header", "Connection: close", &c), -1);
    CHECK_STR(err, "t.ini:3: header: Connection is managed by pollcast and cannot be set");
    CHECK_INT(upstream_key("header", "accept-encoding: gzip", &c), -1);
    CHECK_STR(err, "t.ini:3: header: accept-encoding is managed by pollcast and cannot be set");
    CHECK_INT(upstream_key("header", ": SECRETVALUE", &c), -1);
    CHECK(strstr(err, "SECRETVALUE") == NULL);

    REQUIRE(upstream_key("forward_header", "Accept-Language", &c) == 0);
    REQUIRE(c.upstreams[0].forward_header.n == 1);
    CHECK_STR(c.upstreams[0].forward_header.items[0], "Accept-Language");
    config_dispose(&c);
    CHECK_INT(upstream_key("forward_header", "Host", &c), -1);
    CHECK_STR(err, "t.ini:3: forward_header: Host cannot be forwarded");
    CHECK_INT(upstream_key("forward_header", "Transfer-Encoding", &c), -1);
    CHECK_STR(err, "t.ini:3: forward_header: Transfer-Encoding cannot be forwarded");
    CHECK_INT(upstream_key("forward_header", "Accept Language", &c), -1);
    CHECK_STR(err, "t.ini:3: forward_header: \"Accept Language\" is not a header name");
    CHECK_INT(upstream_key("forward_header", "X-A: b", &c), -1);
}

static void test_prefixes_origins_cidrs(void)
{
    struct config c;
    REQUIRE(parse("[allow]\nurl_prefix = HTTPS://API.Example.com/V1/\n"
                  "url_prefix = http://[::1]:8080/\n",
                  &c) == 0);
    REQUIRE(c.allow.url_prefix.n == 2);
    CHECK_STR(c.allow.url_prefix.items[0], "https://api.example.com/V1/");
    CHECK_STR(c.allow.url_prefix.items[1], "http://[::1]:8080/");
    config_dispose(&c);
    EXPECT_ERR("[allow]\nurl_prefix = https://api.example.com\n",
               "t.ini:2: url_prefix: \"https://api.example.com\" needs a path, at least \"/\" "
               "after the host (otherwise it would also match other hosts that start with this "
               "one)");
    EXPECT_ERR("[allow]\nurl_prefix = https://api.example.com?x=1\n",
               "t.ini:2: url_prefix: \"https://api.example.com?x=1\" needs a path, at least \"/\" "
               "after the host (otherwise it would also match other hosts that start with this "
               "one)");
    EXPECT_ERR("[allow]\nurl_prefix = file:///etc/\n",
               "t.ini:2: url_prefix: \"file:///etc/\" is not an http:// or https:// URL");
    EXPECT_ERR("[allow]\nurl_prefix = https://evil@api.example.com/\n",
               "t.ini:2: url_prefix: URL must not hold credentials (user@host): send them in a "
               "header instead");

    REQUIRE(parse("[server]\ncors_origin = *\ncors_origin = https://App.Example.com:8443\n", &c) ==
            0);
    REQUIRE(c.server.cors_origin.n == 2);
    CHECK_STR(c.server.cors_origin.items[0], "*");
    CHECK_STR(c.server.cors_origin.items[1], "https://app.example.com:8443");
    config_dispose(&c);
    EXPECT_ERR("[server]\ncors_origin = https://a.com/\n",
               "t.ini:2: cors_origin: \"https://a.com/\" is not an origin (use "
               "https://app.example.com, with a port when not the default one, no path; or *)");

    REQUIRE(parse("[allow]\ncidr = 10.0.0.0/8\ncidr = fd00::/8\ncidr = 192.168.1.7\n"
                  "cidr = 0.0.0.0/0\n",
                  &c) == 0);
    REQUIRE(c.allow.cidr.n == 4);
    CHECK_INT(c.allow.cidr.items[0].family, AF_INET);
    CHECK_INT(c.allow.cidr.items[0].prefix, 8);
    CHECK_INT(c.allow.cidr.items[0].addr[0], 10);
    CHECK_INT(c.allow.cidr.items[1].family, AF_INET6);
    CHECK_INT(c.allow.cidr.items[1].prefix, 8);
    CHECK_INT(c.allow.cidr.items[1].addr[0], 0xfd);
    CHECK_INT(c.allow.cidr.items[2].prefix, 32);
    CHECK_INT(c.allow.cidr.items[2].addr[3], 7);
    CHECK_INT(c.allow.cidr.items[3].prefix, 0);
    config_dispose(&c);
    EXPECT_ERR("[allow]\ncidr = 10.0.0.1/8\n",
               "t.ini:2: cidr: \"10.0.0.1/8\" has bits set beyond its prefix (did you mean "
               "10.0.0.0/8?)");
    EXPECT_ERR("[allow]\ncidr = fd12::1/16\n",
               "t.ini:2: cidr: \"fd12::1/16\" has bits set beyond its prefix (did you mean "
               "fd12::/16?)");
    EXPECT_ERR("[allow]\ncidr = 10.0.0.0/33\n",
               "t.ini:2: cidr: \"10.0.0.0/33\" is not an address range (use 10.0.0.0/8 or "
               "fd00::/8)");
    EXPECT_ERR("[allow]\ncidr = example.com/8\n",
               "t.ini:2: cidr: \"example.com/8\" is not an address range (use 10.0.0.0/8 or "
               "fd00::/8)");
}

static void test_strings(void)
{
    struct config c;
    REQUIRE(upstream_key("id_key", "", &c) == 0);
    CHECK_STR(c.upstreams[0].id_key, "");
    config_dispose(&c);
    REQUIRE(upstream_key("id_key", "uuid", &c) == 0);
    CHECK_STR(c.upstreams[0].id_key, "uuid");
    config_dispose(&c);
    CHECK_INT(upstream_key("ca_file", "", &c), -1);
    CHECK_STR(err, "t.ini:3: ca_file: the value is empty");
    CHECK_INT(parse("[auth]\nalgorithm = RS256\npublic_key_file = /k.pem\ncookie = a b\n", &c), -1);
    CHECK_STR(err, "t.ini:4: cookie: \"a b\" is not a valid name (letters, digits and "
                   "!#$%&'*+-.^_`|~)");
}

/* ---- syntax and structure ---------------------------------------------------------------- */

static void test_syntax(void)
{
    struct config c;
    /* CRLF, a BOM, the name:value form, '#' comments, indented comments, tab before ';'. */
    const char *text = "\xEF\xBB\xBF[server]\r\n"
                       "# comment\r\n"
                       "  ; indented comment\r\n"
                       "listen: 0.0.0.0:9000\r\n"
                       "log_level = debug\t; tab then comment\r\n"
                       "[ upstream   spaced ]  ; comment after the header\r\n"
                       "url = http://x/a;b\r\n";
    REQUIRE(parse(text, &c) == 0);
    CHECK_INT(c.server.listen.port, 9000);
    CHECK_INT(c.server.log_level, CONFIG_LOG_DEBUG);
    REQUIRE(c.n_upstreams == 1);
    CHECK_STR(c.upstreams[0].name, "spaced");
    CHECK_STR(c.upstreams[0].url, "http://x/a;b");
    config_dispose(&c);

    /* inih's knobs are put back after a parse. */
    CHECK_INT(ini_max_line, 200);
    CHECK(ini_allow_multiline);

    /* An upstream name of 64 characters (inih alone would cut section names at 49). */
    char name[65], t2[256];
    memset(name, 'n', 64);
    name[64] = '\0';
    name[60] = '.';
    name[61] = '-';
    name[62] = '_';
    snprintf(t2, sizeof t2, "[upstream %s]\nurl = http://x/\n[upstream %.49s]\nurl = http://y/\n",
             name, name);
    REQUIRE(parse(t2, &c) == 0);
    REQUIRE(c.n_upstreams == 2);
    CHECK_STR(c.upstreams[0].name, name);
    CHECK_INT(strlen(c.upstreams[1].name), 49);
    config_dispose(&c);

    /* An empty file is valid: the defaults, no upstream. */
    REQUIRE(parse("", &c) == 0);
    CHECK_INT(c.n_upstreams, 0);
    config_dispose(&c);
    REQUIRE(parse("; nothing\n\n[server]\n", &c) == 0);
    config_dispose(&c);
}

static void test_errors(void)
{
    EXPECT_ERR("[server]\n[foo]\n", "t.ini:2: unknown section [foo] (use [server], [upstream "
                                    "NAME], [stream NAME], [allow], [auth] or [cluster])");
    EXPECT_ERR("[stream s]\npublish_token_file = /t\nurl = http://x/\n",
               "t.ini:3: [stream s] has no url: documents are published to it (use [upstream "
               "NAME] to poll a URL)");
    EXPECT_ERR("[upstream u]\nurl = http://x/\nstate_file = /s\n",
               "t.ini:3: [upstream u]: state_file is for push streams ([stream NAME])");
    EXPECT_ERR("[stream]\n", "t.ini:1: [stream] needs a name: [stream NAME]");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\nintervl = 5s\n",
               "t.ini:3: unknown key \"intervl\" in [upstream prices] (did you mean "
               "\"interval\"?)");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\ncors_origin = *\n",
               "t.ini:3: unknown key \"cors_origin\" in [upstream prices] (it belongs in "
               "[server])");
    EXPECT_ERR("[server]\nurl = http://x/\n",
               "t.ini:2: unknown key \"url\" in [server] (it belongs in [upstream NAME])");
    EXPECT_ERR("[server]\nfrobnicate = 1\n", "t.ini:2: unknown key \"frobnicate\" in [server]");
    EXPECT_ERR("\n\ninterval = 5s\n",
               "t.ini:3: key \"interval\" is outside any section (start with [server], "
               "[upstream NAME], [allow] or [auth])");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\ninterval = 1s\n\ninterval = 2s\n",
               "t.ini:5: duplicate key \"interval\" in [upstream prices] (first set at line 3)");
    EXPECT_ERR("[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n",
               "t.ini:3: duplicate key \"listen\" in [server] (first set at line 2)");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\n[upstream b]\nurl = http://y/\n"
               "[upstream prices]\nurl = http://z/\n",
               "t.ini:5: duplicate upstream \"prices\" (first at line 1)");
    EXPECT_ERR("[upstream a-b]\nurl = http://x/\n[upstream A.B]\nurl = http://y/\n",
               "t.ini:3: upstream \"A.B\" would have the environment name A_B of upstream "
               "\"a-b\"; names must differ in more than case, '-', '.' and '_'");
    EXPECT_ERR("[upstream a b]\nurl = http://x/\n",
               "t.ini:1: upstream name \"a b\" must be 1 to 64 of A-Z a-z 0-9 . _ -");
    EXPECT_ERR("[upstream a/b]\n", "t.ini:1: upstream name \"a/b\" must be 1 to 64 of A-Z a-z "
                                   "0-9 . _ -");
    EXPECT_ERR(
        "[upstream "
        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn]\n",
        "t.ini:1: upstream name "
        "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\" must be 1 to "
        "64 of A-Z a-z 0-9 . _ -");
    EXPECT_ERR("[upstream]\n", "t.ini:1: [upstream] needs a name: [upstream NAME]");
    EXPECT_ERR("[server main]\n", "t.ini:1: [server] takes no name");
    EXPECT_ERR("[server]\n[allow]\n[server]\n",
               "t.ini:3: duplicate section [server] (first at line 1)");
    EXPECT_ERR("[server\n", "t.ini:1: section header without \"]\"");
    EXPECT_ERR("[server ; comment]\n", "t.ini:1: section header without \"]\"");
    EXPECT_ERR("[server] junk\n", "t.ini:1: unexpected text after \"]\"");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\n[server]\nlisten 127.0.0.1:8080\n",
               "t.ini:4: unknown key \"listen 127.0.0.1\" in [server] (is \"=\" missing?)");
    EXPECT_ERR("[upstream prices]\nurl = http://x/\n[server]\nlisten 8080\n",
               "t.ini:4: expected \"key = value\", a [section] or a comment");
    EXPECT_ERR("[server]\nlisten ; = 1\n",
               "t.ini:2: expected \"key = value\", a [section] or a comment");
    EXPECT_ERR("[server]\n= 127.0.0.1:8080\n", "t.ini:2: missing key name before \"=\"");
}

static void test_errors_2(void)
{
    struct config c;
    EXPECT_ERR("[server]\nkeepalive = 5s\n[upstream prices]\ninterval = 5s\n[allow]\n",
               "t.ini:3: [upstream prices]: missing required key \"url\"");
    EXPECT_ERR("[upstream p]\nurl = http://x/\ninterval = 500ms\nmin_interval = 1s\n",
               "t.ini:4: interval 500ms is below min_interval 1s");
    EXPECT_ERR("[upstream p]\nurl = http://x/\nmax_interval = 10s\ninterval = 20s\n",
               "t.ini:4: interval 20s is above max_interval 10s");
    EXPECT_ERR("[upstream p]\nurl = http://x/\nmin_interval = 10s\nmax_interval = 5s\n",
               "t.ini:4: min_interval 10s is above max_interval 5s");
    EXPECT_ERR("[allow]\nmin_interval = 10s\n", "t.ini:2: interval 5s is below min_interval 10s");
    EXPECT_ERR("[server]\nlisten = 127.0.0.1:8080\ncors_origin = https://a.com\n"
               "  https://b.com/x\n",
               "t.ini:4: cors_origin: \"https://b.com/x\" is not an origin (use "
               "https://app.example.com, with a port when not the default one, no path; or *)");
    EXPECT_ERR("[upstream p]\nurl = http://x/\ninterval = 5s\n  6s\n",
               "t.ini:4: interval: an indented line continues the previous value, which only "
               "repeatable keys allow; remove the indentation");
    EXPECT_ERR("[upstream p]\nurl = http://x/\n  interval = 6s\n",
               "t.ini:3: url: an indented line continues the previous value, which only "
               "repeatable keys allow; remove the indentation");

    /* Derived defaults follow interval. */
    REQUIRE(parse("[upstream fast]\nurl = http://x/\ninterval = 250ms\n[upstream slow]\n"
                  "url = http://y/\ninterval = 2h\n",
                  &c) == 0);
    CHECK_INT(c.upstreams[0].min_interval_ms, 250);
    CHECK_INT(c.upstreams[0].max_interval_ms, 3600000);
    CHECK_INT(c.upstreams[1].min_interval_ms, 1000);
    CHECK_INT(c.upstreams[1].max_interval_ms, 7200000);
    config_dispose(&c);

    /* Line length and control characters. */
    char *big = malloc(5000);
    REQUIRE(big != NULL);
    memcpy(big, "[server]\nx = ", 13);
    memset(big + 13, 'a', 4200);
    big[4213] = '\0';
    EXPECT_ERR(big, "t.ini:2: line longer than 4096 bytes");
    /* A header of 4000 bytes is fine. */
    int n = snprintf(big, 5000, "[upstream p]\nurl = http://x/\nheader = Authorization: Bearer ");
    memset(big + n, 't', 4000 - 30);
    big[n + 4000 - 30] = '\0';
    REQUIRE(parse(big, &c) == 0);
    CHECK_INT(strlen(c.upstreams[0].header.items[0]), 4000 - 30 + 22);
    config_dispose(&c);
    free(big);
    EXPECT_ERR("[server]\nlisten = 1\x01\n", "t.ini:2: control character 0x01 (only tab is "
                                             "allowed)");
    EXPECT_ERR("[server]\nlisten = 1\r2\n", "t.ini:2: control character 0x0d (only tab is "
                                            "allowed)");

    /* Too many values of a repeatable key. */
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "[upstream p]\nurl = http://x/\n");
    for (int i = 0; i < CONFIG_MAX_LIST_ITEMS + 1; i++)
        buf_printf(&b, "header = X-H%d: v\n", i);
    EXPECT_ERR(b.data, "t.ini:259: header: more than 256 values");
    buf_dispose(&b);

    /* Too many upstreams. */
    buf_init(&b, 0);
    for (int i = 0; i < CONFIG_MAX_UPSTREAMS + 1; i++)
        buf_printf(&b, "[upstream u%d]\nurl = http://x/\n", i);
    EXPECT_ERR(b.data, "t.ini:8193: more than 4096 upstreams");
    buf_dispose(&b);

    /* More than 1 MiB. */
    char *huge = malloc(CONFIG_MAX_FILE_BYTES + 2);
    REQUIRE(huge != NULL);
    memset(huge, '\n', CONFIG_MAX_FILE_BYTES + 1);
    huge[CONFIG_MAX_FILE_BYTES + 1] = '\0';
    EXPECT_ERR(huge, "t.ini: larger than 1 MiB, the limit for a config file");
    free(huge);
}

static void test_auth(void)
{
    struct config c;
    const char *secret = "0123456789abcdef0123456789abcdef";
    char text[512];
    snprintf(text, sizeof text,
             "[auth]\nalgorithm = HS256\nsecret = %s\naudience = aud\nissuer = iss\n"
             "claim = scope\nleeway = 1m\ncookie = tok\n",
             secret);
    REQUIRE(parse(text, &c) == 0);
    CHECK_INT(c.auth.algorithm, CONFIG_AUTH_HS256);
    CHECK_STR(c.auth.secret, secret);
    CHECK_STR(c.auth.audience, "aud");
    CHECK_STR(c.auth.issuer, "iss");
    CHECK_STR(c.auth.claim, "scope");
    CHECK_INT(c.auth.leeway_ms, 60000);
    CHECK_STR(c.auth.cookie, "tok");
    config_dispose(&c);
    REQUIRE(parse("[auth]\nalgorithm = es256\npublic_key_file = /k.pem\n", &c) == 0);
    CHECK_INT(c.auth.algorithm, CONFIG_AUTH_ES256);
    CHECK_STR(c.auth.public_key_file, "/k.pem");
    config_dispose(&c);

    EXPECT_ERR("[auth]\nclaim = x\n",
               "t.ini:2: claim: [auth] is off until algorithm is set (HS256, RS256 or ES256)");
    EXPECT_ERR("[auth]\nalgorithm = HS256\n", "t.ini:2: algorithm: HS256 needs secret");
    EXPECT_ERR("[auth]\nalgorithm = HS256\nsecret = shortSECRET\n",
               "t.ini:3: secret: must be at least 32 bytes for HS256");
    snprintf(text, sizeof text, "[auth]\nalgorithm = HS256\nsecret = %s\npublic_key_file = /k\n",
             secret);
    EXPECT_ERR(text, "t.ini:4: public_key_file: not used with HS256 (set secret)");
    EXPECT_ERR("[auth]\nalgorithm = RS256\n", "t.ini:2: algorithm: RS256 needs public_key_file");
    snprintf(text, sizeof text, "[auth]\nalgorithm = RS256\npublic_key_file = /k\nsecret = %s\n",
             secret);
    EXPECT_ERR(text, "t.ini:4: secret: not used with RS256 (set public_key_file)");
}

/* ---- environment ------------------------------------------------------------------------- */

static void test_env(void)
{
    struct config c;
    REQUIRE(parse("[upstream prices]\nurl = http://x/\ninterval = 5s\n"
                  "[upstream my-api.v2]\nurl = http://y/\nheader = A: 1\n",
                  &c) == 0);
    char *env[] = {"PATH=/usr/bin",
                   "POLLCAST_TESTDATA=/somewhere",
                   "POLLCAST_SRC=/src",
                   "POLLCAST_SERVER_LISTEN=0.0.0.0:9090",
                   "POLLCAST_SERVER_LOG_FORMAT=json",
                   "POLLCAST_SERVER_CORS_ORIGIN=https://a.com, https://b.com\n*",
                   "POLLCAST_UPSTREAM_PRICES_INTERVAL=2s",
                   "POLLCAST_UPSTREAM_MY_API_V2_HEADER=X-One: 1\nX-Two: a, b",
                   "POLLCAST_UPSTREAM_PRICES_MIN_INTERVAL=500ms",
                   "pollcast_allow_url_prefix=https://ok.example/",
                   "POLLCAST_AUTH_ALGORITHM=HS256",
                   "POLLCAST_AUTH_SECRET=0123456789abcdef0123456789abcdef",
                   NULL};
    REQUIRE(config_apply_env(&c, env, err, sizeof err) == 0);
    CHECK_STR(c.server.listen.host, "0.0.0.0");
    CHECK_INT(c.server.listen.port, 9090);
    CHECK_INT(c.server.log_format, CONFIG_LOG_JSON);
    REQUIRE(c.server.cors_origin.n == 3);
    CHECK_STR(c.server.cors_origin.items[1], "https://b.com");
    CHECK_STR(c.server.cors_origin.items[2], "*");
    CHECK_INT(c.upstreams[0].interval_ms, 2000);
    CHECK_INT(c.upstreams[0].min_interval_ms, 500);
    REQUIRE(c.upstreams[1].header.n == 2); /* replaced, not appended */
    CHECK_STR(c.upstreams[1].header.items[0], "X-One: 1");
    CHECK_STR(c.upstreams[1].header.items[1], "X-Two: a, b");
    CHECK_INT(c.allow.url_prefix.n, 0); /* lower-case variable names are not ours */
    CHECK_INT(c.auth.algorithm, CONFIG_AUTH_HS256);
    CHECK_INT(c.n_upstreams, 2);
    config_dispose(&c);

    /* A variable that names no upstream adds one; its url must be set too. */
    REQUIRE(config_defaults(&c) == 0);
    char *env2[] = {"POLLCAST_UPSTREAM_NEW_ONE_MIN_INTERVAL=2s",
                    "POLLCAST_UPSTREAM_NEW_ONE_URL=https://z.example/", NULL};
    REQUIRE(config_apply_env(&c, env2, err, sizeof err) == 0);
    REQUIRE(c.n_upstreams == 1);
    CHECK_STR(c.upstreams[0].name, "new_one");
    CHECK_STR(c.upstreams[0].url, "https://z.example/");
    CHECK_INT(c.upstreams[0].min_interval_ms, 2000);
    CHECK_INT(c.upstreams[0].interval_ms, 5000);
    CHECK_INT(c.upstreams[0].line, -1);
    config_dispose(&c);

    REQUIRE(config_defaults(&c) == 0);
    char *env3[] = {"POLLCAST_UPSTREAM_LONELY_INTERVAL=2s", NULL};
    CHECK_INT(config_apply_env(&c, env3, err, sizeof err), -1);
    CHECK_STR(err, "POLLCAST_UPSTREAM_LONELY_INTERVAL: [upstream lonely]: missing required key "
                   "\"url\"");
    config_dispose(&c);

    /* The demo config takes overrides too (a container: no file, listen on every interface). */
    REQUIRE(config_default_demo(&c) == 0);
    char *env4[] = {"POLLCAST_SERVER_LISTEN=[::]:8080", "POLLCAST_UPSTREAM_DEMO_INTERVAL=3s", NULL};
    REQUIRE(config_apply_env(&c, env4, err, sizeof err) == 0);
    CHECK_INT(c.server.listen.family, AF_INET6);
    CHECK_INT(c.upstreams[0].interval_ms, 3000);
    config_dispose(&c);
}

/* Applies env to the config text; the result must fail with exactly want. */
#define EXPECT_ENV_ERR(text, want, ...)                                                            \
    do {                                                                                           \
        struct config c_;                                                                          \
        char *env_[] = {__VA_ARGS__, NULL};                                                        \
        REQUIRE(parse(text, &c_) == 0);                                                            \
        CHECK_INT(config_apply_env(&c_, env_, err, sizeof err), -1);                               \
        CHECK_STR(err, want);                                                                      \
        config_dispose(&c_);                                                                       \
    } while (0)

static void test_env_errors(void)
{
    const char *base = "[upstream prices]\nurl = http://x/\ninterval = 5s\n";
    EXPECT_ENV_ERR(base,
                   "POLLCAST_UPSTREAM_PRICES_INTERVAL: interval: \"5x\" is not a duration (use "
                   "250ms, 1.5s, 2m)",
                   "POLLCAST_UPSTREAM_PRICES_INTERVAL=5x");
    EXPECT_ENV_ERR(base,
                   "POLLCAST_SERVER_LISTEN: listen: \"8080\" is not a listen address (use "
                   "127.0.0.1:8080, [::1]:8080 or 0.0.0.0:8080)",
                   "POLLCAST_SERVER_LISTEN=8080");
    EXPECT_ENV_ERR(base,
                   "POLLCAST_SERVER_LISTN: unknown key \"listn\" in [server] (did you mean "
                   "\"listen\"?)",
                   "POLLCAST_SERVER_LISTN=1.2.3.4:5");
    EXPECT_ENV_ERR(base,
                   "POLLCAST_UPSTREAM_PRICES: names no upstream key "
                   "(POLLCAST_UPSTREAM_<NAME>_<KEY>, e.g. POLLCAST_UPSTREAM_PRICES_URL)",
                   "POLLCAST_UPSTREAM_PRICES=1");
    /* The interval from the environment conflicts with the file's max_interval: the variable is
     * to blame. */
    EXPECT_ENV_ERR("[upstream prices]\nurl = http://x/\nmax_interval = 10s\n",
                   "POLLCAST_UPSTREAM_PRICES_INTERVAL: interval 20s is above max_interval 10s",
                   "POLLCAST_UPSTREAM_PRICES_INTERVAL=20s");
    EXPECT_ENV_ERR("[upstream a]\nurl = http://x/\n[upstream a_min]\nurl = http://y/\n",
                   "POLLCAST_UPSTREAM_A_MIN_INTERVAL: names both [upstream a] and [upstream "
                   "a_min]",
                   "POLLCAST_UPSTREAM_A_MIN_INTERVAL=2s");
    EXPECT_ENV_ERR(base,
                   "POLLCAST_UPSTREAM_PRICES_HEADER: header: the value of X-A contains a control "
                   "character (CR, LF and NUL are never allowed)",
                   "POLLCAST_UPSTREAM_PRICES_HEADER=X-A: SECRET\rInjected: 1");
    EXPECT_ENV_ERR(base,
                   "POLLCAST_AUTH_SECRET: secret: [auth] is off until algorithm is set "
                   "(HS256, RS256 or ES256)",
                   "POLLCAST_AUTH_SECRET=0123456789abcdef0123456789abcdef");
    EXPECT_ENV_ERR(base, "POLLCAST_SERVER_RETRY: retry: the value contains a control character",
                   "POLLCAST_SERVER_RETRY=1s\x01");
}

static void test_env_collision_and_long(void)
{
    struct config c;
    REQUIRE(parse("[upstream p.q]\nurl = http://x/\n", &c) == 0);
    /* "P_Q" matches upstream p.q, so this sets its url rather than adding one. */
    char *env[] = {"POLLCAST_UPSTREAM_P_Q_URL=http://z/", NULL};
    REQUIRE(config_apply_env(&c, env, err, sizeof err) == 0);
    CHECK_INT(c.n_upstreams, 1);
    CHECK_STR(c.upstreams[0].url, "http://z/");
    config_dispose(&c);

    char *val = malloc(CONFIG_MAX_LINE + 40);
    REQUIRE(val != NULL);
    int n = snprintf(val, CONFIG_MAX_LINE + 40, "POLLCAST_AUTH_CLAIM=");
    memset(val + n, 'c', CONFIG_MAX_LINE + 1);
    val[n + CONFIG_MAX_LINE + 1] = '\0';
    REQUIRE(config_defaults(&c) == 0);
    char *env2[] = {val, NULL};
    CHECK_INT(config_apply_env(&c, env2, err, sizeof err), -1);
    CHECK_STR(err, "POLLCAST_AUTH_CLAIM: value longer than 4096 bytes");
    config_dispose(&c);
    free(val);

    struct buf b;
    buf_init(&b, 0);
    CHECK_INT(config_env_name(&b, "my-api.v2_x"), 0);
    CHECK_STR(b.data, "MY_API_V2_X");
    buf_dispose(&b);
}

/* ---- the rest of the API ----------------------------------------------------------------- */

static void test_equal_and_find(void)
{
    struct config a, b;
    const char *text = "[upstream x]\nurl = http://x/\nheader = A: 1\n[upstream y]\n"
                       "url = http://y/\n";
    REQUIRE(parse(text, &a) == 0);
    REQUIRE(parse(text, &b) == 0);
    CHECK(config_upstream_equal(&a.upstreams[0], &b.upstreams[0]));
    CHECK(!config_upstream_equal(&a.upstreams[0], &b.upstreams[1]));
    CHECK(config_find_upstream(&a, "y") == &a.upstreams[1]);
    CHECK(config_find_upstream(&a, "z") == NULL);
    config_dispose(&b);
    REQUIRE(parse("[upstream x]\nurl = http://x/\nheader = A: 2\n", &b) == 0);
    CHECK(!config_upstream_equal(&a.upstreams[0], &b.upstreams[0]));
    config_dispose(&b);
    REQUIRE(parse("[upstream x]\nheader = A: 1\nurl = http://x/\ninterval = 5s\n", &b) == 0);
    CHECK(config_upstream_equal(&a.upstreams[0], &b.upstreams[0]));
    config_dispose(&b);
    config_dispose(&a);
}

static char *tmp_file(const char *content, size_t len)
{
    char *path = strdup("/tmp/pollcast-test-config-XXXXXX");
    if (path == NULL)
        return NULL;
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, content, len) != (ssize_t)len) {
        if (fd >= 0)
            close(fd);
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}

static void test_load_file(void)
{
    struct config c;
    const char *text = "[upstream f]\nurl = http://x/\n\ninterval = 5y\n";
    char *path = tmp_file(text, strlen(text));
    REQUIRE(path != NULL);
    char want[512];
    CHECK_INT(config_load_file(path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:4: interval: \"5y\" is not a duration (use 250ms, 1.5s, 2m)",
             path);
    CHECK_STR(err, want);
    unlink(path);
    free(path);

    CHECK_INT(config_load_file("/nonexistent/pollcast.ini", &c, err, sizeof err), -1);
    CHECK_STR(err, "/nonexistent/pollcast.ini: cannot open: No such file or directory");

    /* A NUL byte in a file. */
    path = tmp_file("[server]\nlisten = 1\0\n", 21);
    REQUIRE(path != NULL);
    CHECK_INT(config_load_file(path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: control character 0x00 (only tab is allowed)", path);
    CHECK_STR(err, want);
    unlink(path);
    free(path);

    char *huge = malloc(CONFIG_MAX_FILE_BYTES + 1);
    REQUIRE(huge != NULL);
    memset(huge, '\n', CONFIG_MAX_FILE_BYTES + 1);
    path = tmp_file(huge, CONFIG_MAX_FILE_BYTES + 1);
    free(huge);
    REQUIRE(path != NULL);
    CHECK_INT(config_load_file(path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: larger than 1 MiB, the limit for a config file", path);
    CHECK_STR(err, want);
    unlink(path);
    free(path);

    /* config_check_files: files that cannot be read. */
    REQUIRE(parse("[auth]\nalgorithm = RS256\npublic_key_file = /nonexistent/k.pem\n", &c) == 0);
    CHECK_INT(config_check_files(&c, err, sizeof err), -1);
    CHECK_STR(err, "t.ini:3: public_key_file: cannot read \"/nonexistent/k.pem\": No such file or "
                   "directory");
    config_dispose(&c);
    REQUIRE(parse("[upstream u]\nurl = http://x/\nca_file = /tmp\n", &c) == 0);
    CHECK_INT(config_check_files(&c, err, sizeof err), -1);
    CHECK_STR(err, "t.ini:3: ca_file: cannot read \"/tmp\": not a regular file");
    config_dispose(&c);
}

/* ---- config.example.ini ------------------------------------------------------------------ */

static char *example_path(void)
{
    const char *src = getenv("POLLCAST_SRC");
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "%s/config.example.ini", src ? src : ".");
    return buf_steal(&b, NULL);
}

/* ---- upstream requests (issue 12) -------------------------------------------------------- */

static void test_requests(void)
{
    struct config c;
    /* Defaults: GET, no body, no query, no OAuth2, Cache-Control ignored. */
    REQUIRE(upstream_key("interval", "5s", &c) == 0);
    CHECK_INT(c.upstreams[0].method, CONFIG_METHOD_GET);
    CHECK(c.upstreams[0].body == NULL && c.upstreams[0].body_file == NULL);
    CHECK(c.upstreams[0].content_type == NULL);
    CHECK_INT(c.upstreams[0].query.n, 0);
    CHECK(!c.upstreams[0].respect_cache_control);
    CHECK(c.upstreams[0].oauth2_token_url == NULL);
    config_dispose(&c);

    const char *ok = "[upstream t]\nurl = http://x/a?b=1\nmethod = post\n"
                     "body = {\"query\": \"{ a }\"}\ncontent_type = application/graphql+json; "
                     "charset=utf-8\nquery = key=v a&l\nquery = empty=\n"
                     "respect_cache_control = true\n";
    REQUIRE(parse(ok, &c) == 0);
    const struct config_upstream *u = &c.upstreams[0];
    CHECK_INT(u->method, CONFIG_METHOD_POST);
    CHECK_STR(config_method_name(u->method), "POST");
    CHECK_STR(u->body, "{\"query\": \"{ a }\"}");
    CHECK_STR(u->content_type, "application/graphql+json; charset=utf-8");
    REQUIRE(u->query.n == 2);
    CHECK_STR(u->query.items[0], "key=v a&l");
    CHECK_STR(u->query.items[1], "empty=");
    CHECK(u->respect_cache_control);
    /* config_read_files copies the inline body. */
    REQUIRE(config_read_files(&c, err, sizeof err) == 0);
    CHECK_INT(u->request_body_len, strlen(u->body));
    CHECK(memcmp(u->request_body, u->body, u->request_body_len) == 0);
    config_dispose(&c);

    static const char *const methods[] = {"PUT", "PATCH", "REPORT", "QUERY", "GET"};
    static const int values[] = {CONFIG_METHOD_PUT, CONFIG_METHOD_PATCH, CONFIG_METHOD_REPORT,
                                 CONFIG_METHOD_QUERY, CONFIG_METHOD_GET};
    for (size_t i = 0; i < 5; i++) {
        REQUIRE(upstream_key("method", methods[i], &c) == 0);
        CHECK_INT(c.upstreams[0].method, values[i]);
        CHECK_STR(config_method_name(c.upstreams[0].method), methods[i]);
        config_dispose(&c);
    }

    /* Errors, each at its line, never echoing a secret. */
    EXPECT_ERR(one("upstream", "method", "DELETE"),
               "t.ini:3: method: \"DELETE\" is not one of GET, POST, PUT, PATCH, REPORT, QUERY");
    EXPECT_ERR(one("upstream", "body", "{}"),
               "t.ini:3: body: a body needs method = POST, PUT, PATCH, REPORT or QUERY (the "
               "method is GET)");
    EXPECT_ERR("[upstream t]\nurl = http://x/\nbody_file = /b.json\nmethod = GET\n",
               "t.ini:4: body_file: a body needs method = POST, PUT, PATCH, REPORT or QUERY (the "
               "method is GET)");
    EXPECT_ERR("[upstream t]\nurl = http://x/\nmethod = POST\nbody = {}\nbody_file = /b\n",
               "t.ini:5: body and body_file: set one of them, not both");
    EXPECT_ERR(one("upstream", "content_type", "text/plain"),
               "t.ini:3: content_type: only with body or body_file");
    EXPECT_ERR("[upstream t]\nurl = http://x/\nmethod = POST\nbody = x\ncontent_type = json\n",
               "t.ini:5: content_type: \"json\" is not a media type of at most 200 bytes (use "
               "type/subtype, such as application/json)");
    EXPECT_ERR(one("upstream", "query", "SECRETVALUE"),
               "t.ini:3: query: expected name=value (a parameter name, \"=\", a value)");
    EXPECT_ERR(one("upstream", "query", "=SECRETVALUE"),
               "t.ini:3: query: expected name=value (a parameter name, \"=\", a value)");
    EXPECT_ERR(one("upstream", "respect_cache_control", "sometimes"),
               "t.ini:3: respect_cache_control: \"sometimes\" is not a boolean (use true or "
               "false)");

    /* OAuth2: the group needs its URL, an id and exactly one secret. */
    const char *oauth = "[upstream t]\nurl = http://x/\noauth2_token_url = https://auth/t\n"
                        "oauth2_client_id = me\noauth2_client_secret = SECRETVALUE\n"
                        "oauth2_scope = a b\noauth2_audience = https://api/\n";
    REQUIRE(parse(oauth, &c) == 0);
    CHECK_STR(c.upstreams[0].oauth2_token_url, "https://auth/t");
    CHECK_STR(c.upstreams[0].oauth2_client_id, "me");
    CHECK_STR(c.upstreams[0].oauth2_scope, "a b");
    CHECK_STR(c.upstreams[0].oauth2_audience, "https://api/");
    CHECK_INT(c.upstreams[0].oauth2_client_auth, CONFIG_OAUTH2_BASIC);
    REQUIRE(config_read_files(&c, err, sizeof err) == 0);
    CHECK_STR(c.upstreams[0].oauth2_secret, "SECRETVALUE");
    config_dispose(&c);
    EXPECT_ERR(one("upstream", "oauth2_client_auth", "post"),
               "t.ini:3: oauth2_client_auth: needs oauth2_token_url");
    EXPECT_ERR("[upstream t]\nurl = http://x/\noauth2_token_url = https://a/t\n"
               "oauth2_client_id = me\noauth2_client_secret = s\noauth2_client_auth = jwt\n",
               "t.ini:6: oauth2_client_auth: \"jwt\" is not one of basic, post");
    REQUIRE(parse("[upstream t]\nurl = http://x/\noauth2_token_url = https://a/t\n"
                  "oauth2_client_id = me\noauth2_client_secret = s\noauth2_client_auth = POST\n",
                  &c) == 0);
    CHECK_INT(c.upstreams[0].oauth2_client_auth, CONFIG_OAUTH2_POST);
    config_dispose(&c);
    EXPECT_ERR(one("upstream", "oauth2_client_id", "me"),
               "t.ini:3: oauth2_client_id: needs oauth2_token_url");
    EXPECT_ERR(one("upstream", "oauth2_client_secret", "SECRETVALUE"),
               "t.ini:3: oauth2_client_secret: needs oauth2_token_url");
    EXPECT_ERR(one("upstream", "oauth2_token_url", "https://auth/t"),
               "t.ini:3: oauth2_token_url: needs oauth2_client_id");
    EXPECT_ERR(one("upstream", "oauth2_token_url", "builtin:demo"),
               "t.ini:3: oauth2_token_url: must be an http:// or https:// URL");
    EXPECT_ERR(one("upstream", "oauth2_token_url", "ftp://auth/t"),
               "t.ini:3: oauth2_token_url: \"ftp://auth/t\" is not an http:// or https:// URL");
    EXPECT_ERR("[upstream t]\nurl = http://x/\noauth2_token_url = https://a/t\n"
               "oauth2_client_id = me\n",
               "t.ini:4: oauth2_client_id: needs oauth2_client_secret or "
               "oauth2_client_secret_file");
    EXPECT_ERR("[upstream t]\nurl = http://x/\noauth2_token_url = https://a/t\n"
               "oauth2_client_id = me\noauth2_client_secret_file = /s\n"
               "oauth2_client_secret = SECRETVALUE\n",
               "t.ini:6: oauth2_client_secret and oauth2_client_secret_file: set one of them, "
               "not both");
    EXPECT_ERR("[upstream t]\nurl = http://x/\noauth2_token_url = https://a/t\n"
               "oauth2_client_id = me\noauth2_client_secret = \n",
               "t.ini:5: oauth2_client_secret: the value is empty");
    CHECK(strstr(err, "SECRETVALUE") == NULL);
}

/* body_file and oauth2_client_secret_file are read by config_read_files, bounded, with
 * file:line errors that never hold the content. */
static void test_request_files(void)
{
    struct config c;
    char text[1024], want[1024];
    const char body[] = "{\"a\":\n\t\"\xc3\xa9\"}\n";
    char *bpath = tmp_file(body, sizeof body - 1);
    char *spath = tmp_file("s3cret-line  \nsecond line\n", 26);
    REQUIRE(bpath != NULL && spath != NULL);
    snprintf(text, sizeof text,
             "[upstream t]\nurl = http://x/\nmethod = PUT\nbody_file = %s\n"
             "oauth2_token_url = http://a/t\noauth2_client_id = me\n"
             "oauth2_client_secret_file = %s\n",
             bpath, spath);
    REQUIRE(parse(text, &c) == 0);
    CHECK(c.upstreams[0].request_body == NULL); /* parsing touches no file */
    REQUIRE(config_read_files(&c, err, sizeof err) == 0);
    CHECK_INT(c.upstreams[0].request_body_len, sizeof body - 1);
    CHECK(memcmp(c.upstreams[0].request_body, body, sizeof body - 1) == 0);
    CHECK_STR(c.upstreams[0].oauth2_secret, "s3cret-line");

    /* The content is part of the upstream's identity. */
    struct config d;
    REQUIRE(parse(text, &d) == 0);
    REQUIRE(config_read_files(&d, err, sizeof err) == 0);
    CHECK(config_upstream_equal(&c.upstreams[0], &d.upstreams[0]));
    config_dispose(&d);
    FILE *f = fopen(bpath, "w");
    REQUIRE(f != NULL);
    fputs("{\"a\":2}", f);
    fclose(f);
    REQUIRE(parse(text, &d) == 0);
    REQUIRE(config_read_files(&d, err, sizeof err) == 0);
    CHECK(!config_upstream_equal(&c.upstreams[0], &d.upstreams[0]));
    config_dispose(&d);
    config_dispose(&c);

    /* Missing files, a body over 1 MiB, a secret file without a first line. */
    snprintf(text, sizeof text,
             "[upstream t]\nurl = http://x/\nmethod = POST\n"
             "body_file = /nonexistent/body.json\n");
    REQUIRE(parse(text, &c) == 0);
    CHECK_INT(config_read_files(&c, err, sizeof err), -1);
    CHECK_STR(err, "t.ini:4: body_file: cannot read \"/nonexistent/body.json\": No such file or "
                   "directory");
    config_dispose(&c);

    char *big = malloc(CONFIG_MAX_BODY_FILE + 1);
    REQUIRE(big != NULL);
    memset(big, ' ', CONFIG_MAX_BODY_FILE + 1);
    char *bigpath = tmp_file(big, CONFIG_MAX_BODY_FILE + 1);
    free(big);
    REQUIRE(bigpath != NULL);
    snprintf(text, sizeof text, "[upstream t]\nurl = http://x/\nmethod = POST\nbody_file = %s\n",
             bigpath);
    REQUIRE(parse(text, &c) == 0);
    CHECK_INT(config_read_files(&c, err, sizeof err), -1);
    snprintf(want, sizeof want, "t.ini:4: body_file: cannot read \"%s\": larger than 1MiB",
             bigpath);
    CHECK_STR(err, want);
    config_dispose(&c);
    unlink(bigpath);
    free(bigpath);

    char *empty = tmp_file("\nSECRETVALUE\n", 13);
    REQUIRE(empty != NULL);
    snprintf(text, sizeof text,
             "[upstream t]\nurl = http://x/\noauth2_token_url = http://a/t\n"
             "oauth2_client_id = me\noauth2_client_secret_file = %s\n",
             empty);
    REQUIRE(parse(text, &c) == 0);
    CHECK_INT(config_read_files(&c, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "t.ini:5: oauth2_client_secret_file: \"%s\" must hold the secret on its first "
             "line (no NUL, no other control character)",
             empty);
    CHECK_STR(err, want);
    CHECK(strstr(err, "SECRETVALUE") == NULL);
    config_dispose(&c);
    unlink(empty);
    free(empty);
    unlink(bpath);
    unlink(spath);
    free(bpath);
    free(spath);
}

static void test_example_is_generated(void)
{
    struct buf gen;
    buf_init(&gen, 0);
    REQUIRE(config_write_example(&gen) == 0);
    char *path = example_path();
    size_t len = 0;
    char *committed = harness_slurp(path, &len);
    if (committed == NULL)
        fprintf(stderr, "cannot read %s\n", path);
    CHECK(committed != NULL);
    if (committed != NULL && strcmp(committed, gen.data) != 0) {
        /* Show the first line that differs. */
        size_t i = 0, line = 1;
        while (committed[i] && committed[i] == gen.data[i]) {
            if (committed[i] == '\n')
                line++;
            i++;
        }
        fprintf(stderr,
                "%s differs from the generated text at line %zu; regenerate it with\n"
                "  pollcast check-config --print-example > config.example.ini\n",
                path, line);
        CHECK(0);
    }
    free(committed);
    free(path);
    buf_dispose(&gen);
}

static void test_example_is_valid(void)
{
    char *path = example_path();
    struct config c;
    int rc = config_load_file(path, &c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    free(path);
    REQUIRE(rc == 0);
    REQUIRE(c.n_upstreams == 1);
    CHECK_STR(c.upstreams[0].name, "prices");
    CHECK_STR(c.upstreams[0].url, "https://api.example.com/v1/prices");
    CHECK_INT(c.upstreams[0].interval_ms, 5000);
    CHECK_INT(c.upstreams[0].header.n, 0);
    CHECK_STR(c.server.listen.host, "127.0.0.1");
    CHECK_INT(c.server.listen.port, 8080);
    CHECK_INT(c.server.keepalive_ms, 15000);
    CHECK_INT(c.allow.url_prefix.n, 0);
    CHECK_INT(c.auth.algorithm, CONFIG_AUTH_OFF);
    config_dispose(&c);
}

/* Every commented-out "key = value" line of the example, uncommented alone in its section,
 * parses: the documented defaults and examples are valid values. */
static void test_example_values(void)
{
    struct buf gen, t;
    buf_init(&gen, 0);
    REQUIRE(config_write_example(&gen) == 0);
    char section[128] = "";
    int checked = 0;
    for (char *line = gen.data; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (line[0] == '[' && n < sizeof section) {
            memcpy(section, line, n);
            section[n] = '\0';
        } else if (line[0] == ';' && memchr(line, '=', n) != NULL) {
            char key[64];
            size_t kn = strcspn(line + 1, " ");
            snprintf(key, sizeof key, "%.*s", (int)kn, line + 1);
            buf_init(&t, 0);
            buf_printf(&t, "%s\n", section);
            if (strncmp(section, "[upstream", 9) == 0 && strcmp(key, "state_file") == 0) {
                /* A push stream's key: in a [stream NAME] section, which has no url. */
                buf_truncate(&t, 0);
                buf_puts(&t, "[stream prices]\npublish_token_file = /t\n");
            } else if (strncmp(section, "[upstream", 9) == 0) {
                buf_puts(&t, "url = http://x/\n");
                /* Keys that only go with others get them. */
                if (strcmp(key, "body") == 0 || strcmp(key, "body_file") == 0)
                    buf_puts(&t, "method = POST\n");
                if (strcmp(key, "content_type") == 0)
                    buf_puts(&t, "method = POST\nbody = {}\n");
                if (strncmp(key, "oauth2_", 7) == 0 && strcmp(key, "oauth2_token_url") != 0)
                    buf_puts(&t, "oauth2_token_url = https://a/t\n");
                if (strncmp(key, "oauth2_", 7) == 0 && strcmp(key, "oauth2_client_id") != 0)
                    buf_puts(&t, "oauth2_client_id = c\n");
                if (strncmp(key, "oauth2_", 7) == 0 && strncmp(key, "oauth2_client_s", 15) != 0)
                    buf_puts(&t, "oauth2_client_secret = s\n");
            }
            if (strcmp(section, "[auth]") == 0) {
                if (strcmp(key, "secret") == 0)
                    buf_puts(&t, "algorithm = HS256\n");
                else if (strcmp(key, "public_key_file") == 0)
                    buf_puts(&t, "algorithm = RS256\n");
                else if (strcmp(key, "algorithm") == 0)
                    buf_puts(&t, "secret = 0123456789abcdef0123456789abcdef\n");
                else
                    buf_puts(&t, "algorithm = RS256\npublic_key_file = /k.pem\n");
            }
            if (strcmp(section, "[cluster]") == 0 && strcmp(key, "redis") != 0)
                buf_puts(&t, "redis = redis://127.0.0.1:6379/0\n");
            buf_printf(&t, "%.*s\n", (int)n - 1, line + 1);
            struct config c;
            int rc = parse(t.data, &c);
            if (rc != 0)
                fprintf(stderr, "example line \"%.*s\": %s\n", (int)n, line, err);
            CHECK_INT(rc, 0);
            if (rc == 0)
                config_dispose(&c);
            buf_dispose(&t);
            checked++;
        }
        line = nl ? nl + 1 : NULL;
    }
    CHECK(checked > 60);
    buf_dispose(&gen);

    /* The reference lists every key too. */
    buf_init(&gen, 0);
    REQUIRE(config_write_reference(&gen) == 0);
    CHECK(strstr(gen.data, "| `listen` | Address. Default: `127.0.0.1:8080`. |") != NULL);
    CHECK(strstr(gen.data, "| `url` | URL. Required. |") != NULL);
    CHECK(strstr(gen.data, "### [upstream NAME]") != NULL);
    buf_dispose(&gen);
}

/* ---- pollcast check-config --------------------------------------------------------------- */

/* Runs cli_check_config with stdout and stderr captured into out and errout. */
static int run_check(char **argv, int argc, char *out, size_t outlen, char *errout, size_t errlen)
{
    char opath[] = "/tmp/pollcast-test-out-XXXXXX", epath[] = "/tmp/pollcast-test-err-XXXXXX";
    int ofd = mkstemp(opath), efd = mkstemp(epath);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(ofd, 1);
    dup2(efd, 2);
    int rc = cli_check_config(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    ssize_t n = pread(ofd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(efd, errout, errlen - 1, 0);
    errout[n > 0 ? n : 0] = '\0';
    close(ofd);
    close(efd);
    unlink(opath);
    unlink(epath);
    return rc;
}

static void test_check_config(void)
{
    static char out[65536], errout[4096];
    char want[1024];
    const char *good = "[server]\nlisten = [::1]:9000\n[upstream a]\nurl = http://x/\n"
                       "[upstream b]\nurl = builtin:demo\n[allow]\nurl_prefix = https://x/\n";
    char *path = tmp_file(good, strlen(good));
    REQUIRE(path != NULL);
    char *argv[] = {path};
    CHECK_INT(run_check(argv, 1, out, sizeof out, errout, sizeof errout), 0);
    snprintf(want, sizeof want,
             "%s: OK: 2 upstreams, listening on [::1]:9000, ad-hoc URLs 1 url_prefix, auth off\n",
             path);
    CHECK_STR(out, want);
    CHECK_STR(errout, "");
    unlink(path);
    free(path);

    const char *bad = "[upstream prices]\nurl = http://x/\ninterval = 5x\n";
    path = tmp_file(bad, strlen(bad));
    REQUIRE(path != NULL);
    argv[0] = path;
    CHECK_INT(run_check(argv, 1, out, sizeof out, errout, sizeof errout), 2);
    snprintf(want, sizeof want, "%s:3: interval: \"5x\" is not a duration (use 250ms, 1.5s, 2m)\n",
             path);
    CHECK_STR(errout, want);
    CHECK_STR(out, "");
    unlink(path);
    free(path);

    char *ex[] = {"--print-example"};
    CHECK_INT(run_check(ex, 1, out, sizeof out, errout, sizeof errout), 0);
    struct buf gen;
    buf_init(&gen, 0);
    REQUIRE(config_write_example(&gen) == 0);
    CHECK(strcmp(out, gen.data) == 0);
    buf_dispose(&gen);

    CHECK_INT(run_check(argv, 0, out, sizeof out, errout, sizeof errout), 2);
    CHECK(strncmp(errout, "usage: pollcast check-config FILE", 33) == 0);
    char *opt[] = {"--bogus"};
    CHECK_INT(run_check(opt, 1, out, sizeof out, errout, sizeof errout), 2);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_demo);
    RUN(test_product_example);
    RUN(test_durations);
    RUN(test_sizes);
    RUN(test_bools);
    RUN(test_integers);
    RUN(test_listen);
    RUN(test_enums);
    RUN(test_urls);
    RUN(test_headers);
    RUN(test_prefixes_origins_cidrs);
    RUN(test_strings);
    RUN(test_syntax);
    RUN(test_errors);
    RUN(test_errors_2);
    RUN(test_auth);
    RUN(test_env);
    RUN(test_env_errors);
    RUN(test_env_collision_and_long);
    RUN(test_equal_and_find);
    RUN(test_load_file);
    RUN(test_requests);
    RUN(test_request_files);
    RUN(test_example_is_generated);
    RUN(test_example_is_valid);
    RUN(test_example_values);
    RUN(test_check_config);
    return harness_report("test_config");
}

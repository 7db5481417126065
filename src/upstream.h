/* Upstream pollers on libcurl's multi interface: one curl multi handle for all of them, driven by
 * the event loop. A poller fetches one URL on a fixed-rate tick with conditional requests, caps
 * the body, backs off with jitter on failure and honours Retry-After. It reports each poll's
 * outcome through one callback; it knows nothing of JSON, hubs or subscribers. */
#ifndef POLLCAST_UPSTREAM_H
#define POLLCAST_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct upstream_pool;
struct poller;

/* What a poller fetches and how. Strings are copied by poller_new. */
struct poller_spec {
    const char *url;
    const char *const *headers; /* "Name: value" lines added to the request; may be NULL */
    size_t nheaders;
    uint64_t interval_ms;        /* fixed-rate tick */
    uint64_t timeout_ms;         /* whole request; default: 80% of the interval, at least 1000 */
    uint64_t connect_timeout_ms; /* default 3000 */
    size_t max_body;             /* bytes after decompression; default 8 MiB */
    uint64_t backoff_max_ms;     /* cap of the exponential backoff; default 60000 */
    int adhoc;                   /* 1: a client-chosen URL (address and URL policies apply) */
    int redirects;               /* 0: the default (named: follow up to 5; ad-hoc: none), 1: follow
                                    up to max_redirects, -1: never */
    long max_redirects;
    int tls_no_verify;   /* 1: do not verify the upstream's TLS certificate */
    const char *ca_file; /* CA bundle to verify with; NULL: the system's */
    const char *method;  /* "POST", "PUT", "PATCH", "REPORT", "QUERY"; NULL or "GET": GET */
    const char *body;    /* request body of body_len bytes, sent with a method other than GET;
                            NULL: none */
    size_t body_len;
    const char *content_type; /* of the body; NULL: application/json */
    const char *const *query; /* "name=value" pairs added to url, percent-encoded by the poller;
                                 secrets: the poller never reports them. May be NULL */
    size_t nquery;
    uint64_t cache_floor_max_ms; /* > 0: a Cache-Control max-age (less Age) on a 2xx or 304 makes
                                    the next poll wait that long, at most this; 0: ignored */
    const struct upstream_oauth2 *oauth2; /* OAuth2 client credentials; NULL: none */
};

/* OAuth2 client credentials (RFC 6749 section 4.4) of an upstream definition. Pollers whose
 * specs carry equal values (definition included) share one token. Strings are copied. */
struct upstream_oauth2 {
    const char *definition; /* the upstream's name: tokens are per definition */
    const char *token_url;
    const char *client_id;
    const char *client_secret;
    const char *scope;    /* NULL: not sent */
    const char *audience; /* NULL: not sent */
    int secret_post;      /* 1: credentials in the form (client_secret_post); 0: HTTP Basic */
};

enum poll_outcome {
    POLL_BODY,         /* a 2xx answer with a body: r->body */
    POLL_NOT_MODIFIED, /* 304 to a conditional request */
    POLL_FAILED,       /* transport error, non-2xx, over the cap, rejected body */
};

struct poll_result {
    enum poll_outcome outcome;
    char *body; /* POLL_BODY: malloc'd, len bytes plus one spare byte; the callback may
                   take it by setting body to NULL, otherwise the poller frees it */
    size_t len;
    const char *content_type; /* POLL_BODY: the Content-Type answered, or NULL */
    long status;              /* HTTP status, 0 when there was no answer */
    const char *error;        /* POLL_FAILED: why, for subscribers ("upstream answered 503") */
    uint64_t retry_in_ms;     /* POLL_FAILED: when the next attempt is due */
    double latency_ms;        /* request start to end */
    size_t bytes_in;          /* bytes received on the wire (before decompression) */
    char reject[160];         /* POLL_BODY: the callback writes the reason here when it rejects */
};

/* Called once per poll. For POLL_BODY, returning non-zero rejects the body (not JSON, invalid
 * JSON): the callback must have written r->reject; the poller then backs off and calls back
 * again with POLL_FAILED carrying that reason. Return value ignored otherwise. */
typedef int (*poller_cb)(void *arg, struct poll_result *r);

/* The address policy hook (SSRF): decides whether an ad-hoc poller may connect to addr, the
 * address actually being connected to, so it is checked after DNS resolution (rebinding). It is
 * called from inside libcurl (CURLOPT_OPENSOCKETFUNCTION) for every connection an ad-hoc poller
 * opens, and must therefore not call poller_free or upstream_pool_free. Returns 0 to allow, or
 * non-zero to refuse after writing a short reason (no secrets) into why; the poll then fails
 * with "upstream address refused: <why>". Named (non-adhoc) pollers are never checked. */
typedef int (*upstream_addr_policy)(void *arg, const struct sockaddr *addr, socklen_t addrlen,
                                    char *why, size_t whylen);

/* The URL policy hook (SSRF): decides whether an ad-hoc poller may follow a redirect to url, the
 * Location target already resolved against the URL that answered. Ad-hoc pollers follow
 * redirects themselves, one hop at a time, so this runs before any request is made to the hop.
 * Returns 0 to allow after storing in *canonical the URL to request (malloc'd; the poller owns
 * it), or non-zero to refuse after writing a short reason (no URL, no secret) into why; the poll
 * then fails with "redirect refused: <why>" and the hop is never requested. */
typedef int (*upstream_url_policy)(void *arg, const char *url, char **canonical, char *why,
                                   size_t whylen);

/* Returns url with the "name=value" pairs added to its query (after the parameters it has),
 * each name and value percent-encoded (everything but A-Z a-z 0-9 - . _ ~). A pair without '='
 * is a name alone. Returns a malloc'd string the caller frees, or NULL when out of memory. */
char *upstream_url_add_query(const char *url, const char *const *pairs, size_t n);

/* Parses a Cache-Control header value and an Age header value (NULL: none) into the seconds
 * the answer stays fresh: max-age less Age. Returns them, or 0 when there is no max-age, when
 * no-store or no-cache is present, or when the answer is already stale. Cannot fail. */
uint64_t upstream_fresh_seconds(const char *cache_control, const char *age);

/* Returns the pool sharing one curl multi handle on loop, or NULL on failure. */
struct upstream_pool *upstream_pool_new(struct loop *loop);

/* Frees the pool. All its pollers must have been freed (any left are freed without callbacks).
 * Must not be called from a poller callback. Accepts NULL. */
void upstream_pool_free(struct upstream_pool *pool);

/* Installs the address policy for the ad-hoc pollers of the pool (NULL: none, everything is
 * allowed). Applies to connections opened from then on. Cannot fail. */
void upstream_pool_set_policy(struct upstream_pool *pool, upstream_addr_policy policy, void *arg);

/* Installs the URL policy for the redirects of the pool's ad-hoc pollers (NULL: none, every
 * redirect target is requested as resolved; the address policy still applies to it). Applies to
 * redirects from then on. Cannot fail. */
void upstream_pool_set_url_policy(struct upstream_pool *pool, upstream_url_policy policy,
                                  void *arg);

/* Starts polling spec->url at once (on the next loop iteration, never from inside poller_new),
 * then every interval_ms, counted from the scheduled time of the previous tick; a tick that finds
 * the previous request still in flight is skipped, so one poller never has two requests at a
 * time. After a failure the next attempt comes after the backoff instead, and ticks continue
 * from there: equal jitter in [base/2, base] with base = interval_ms * 2^failures capped at
 * backoff_max_ms, never under interval_ms; a Retry-After (seconds or HTTP-date) replaces it,
 * at least interval_ms and at most one hour; a body or a 304 resets it. Returns NULL on failure:
 * OOM, or a bad spec (URL not http(s) or unparsable, interval_ms 0, a header line without "Name:"
 * or with CR/LF). Takes no ownership of spec. Named pollers follow up to 5 redirects (libcurl
 * follows them), but refuse one to another origin when configured headers would be sent there.
 * Ad-hoc pollers use no proxy and follow none unless spec->redirects is 1; then they follow up to
 * max_redirects themselves, each hop admitted by the URL policy first (and refused when it leaves
 * the origin while headers are forwarded), and its connection checked by the address policy. */
struct poller *poller_new(struct upstream_pool *pool, const struct poller_spec *spec, poller_cb cb,
                          void *arg);

/* Polls now instead of at the next tick (the tick schedule stays as it is), unless a request
 * is in flight or waits for its OAuth2 token: that one answers for this call too, so a poller
 * never has two requests at a time. Returns 1 when a request started, 0 when it was coalesced.
 * Must not be called from the poller's own callback. */
int poller_poll_now(struct poller *p);

/* Stops polling, cancels a request in flight (its callback is not called) and frees. Accepts
 * NULL. Safe from within the poller's own callback. */
void poller_free(struct poller *p);

#endif

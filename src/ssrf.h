/* The wall around ad-hoc upstreams (GET /proxy?url=): strict normalization of client URLs into
 * one canonical text, prefix matching of that text against the [allow] rules, and the address
 * policy that refuses loopback, private, link-local and other non-public destinations on the
 * address libcurl actually connects to. Pure functions: no I/O, no DNS, no global state. */
#ifndef POLLCAST_SSRF_H
#define POLLCAST_SSRF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct buf;
struct config_list;
struct config_cidr_list;

/* Longest URL ssrf_normalize_url accepts, in bytes. */
#define SSRF_MAX_URL 8192

/* Normalizes an absolute http or https URL (RFC 3986, strictly) and appends the canonical text
 * to out:
 *   - refused: other schemes, a missing "//", userinfo ("user@host"), backslashes, spaces,
 *     control bytes and non-ASCII bytes anywhere, an empty host, a host that is not letters,
 *     digits, '-', '_' and '.' in non-empty labels (IDN must come as punycode "xn--"), a
 *     trailing dot, IPvFuture and IPv6 zone ids, a port that is not 1..65535, malformed
 *     percent-escapes, and dot segments hidden by escapes or separators ("%2e%2e", ".%2E",
 *     "..%2f", "..;") that a server might resolve after the allow rules have been checked;
 *   - rewritten: scheme and host in lower case; a host whose last label is numeric is an IPv4
 *     address in any inet_aton form ("2130706433", "0x7f.1", "0177.0.0.1", "127.1") and
 *     becomes a dotted quad (or is refused when it does not parse); a bracketed IPv6 address
 *     becomes its RFC 5952 text ("[::ffff:127.0.0.1]" for an IPv4-mapped one); the default
 *     port (80, 443) and an empty port are dropped; literal "." and ".." segments are resolved;
 *     an empty path becomes "/"; percent-escapes of unreserved characters are decoded and the
 *     others upper-cased; the characters " < > [ ] ^ ` { | } in path and query are
 *     percent-encoded; the fragment is dropped (it is never sent).
 * The result is a fixed point: normalizing it again gives the same text.
 * Returns 0, or -1 with the reason in err (no more than the offending part of the URL is
 * quoted) and out back at its length on entry; also -1 ("out of memory") when out cannot grow. */
int ssrf_normalize_url(const char *in, struct buf *out, char *err, size_t errlen);

/* True when the canonical URL matches one of prefixes (a NULL-terminated array of canonical
 * prefixes, see ssrf_prefixes_new; NULL matches nothing). A prefix matches when the URL starts
 * with it and the match ends at a boundary: the prefix ends in '/' or holds a '?' (then it is
 * a plain text prefix), or the URL goes on with '/', '?' or ends there. So
 * "https://api.example.com/" never matches "https://api.example.com.evil.net/", and
 * "https://api.example.com/v1" matches ".../v1", ".../v1/x" and ".../v1?q" but not
 * ".../v10" or ".../v1.json". Cannot fail. */
bool ssrf_url_allowed(const char *canonical, const char *const *prefixes);

/* Normalizes every [allow] url_prefix with ssrf_normalize_url, so that rules and URLs are
 * compared in the same form. Returns a NULL-terminated array owned by the caller (free it with
 * ssrf_prefixes_free), or NULL with "url_prefix \"...\": reason" or "out of memory" in err.
 * list may be NULL or empty (an array holding only NULL is returned). */
char **ssrf_prefixes_new(const struct config_list *list, char *err, size_t errlen);

/* Frees an array from ssrf_prefixes_new. Accepts NULL. */
void ssrf_prefixes_free(char **prefixes);

/* Classifies a raw address (family AF_INET with 4 bytes, or AF_INET6 with 16, network order).
 * Returns NULL when the address is public unicast, or a static description of why it is not
 * ("loopback", "private", "link-local", "link-local (cloud metadata)", "carrier-grade NAT",
 * "unique-local", "multicast", "unspecified", "broadcast", "reserved", "for documentation",
 * "for benchmarking", "site-local", ...). IPv6 forms that carry an IPv4 address (mapped,
 * compatible, SIIT, NAT64 64:ff9b::/96, 6to4, Teredo) are judged by the IPv4 address they
 * embed, and *embedded (when not NULL) is set to 1 and v4 (when not NULL, 4 bytes) to it;
 * addresses outside 2000::/3 and every special range not listed are "reserved". Cannot fail. */
const char *ssrf_addr_class(int family, const uint8_t *addr, int *embedded, uint8_t *v4);

/* The address policy: true when sa (AF_INET or AF_INET6, salen bytes) is public, or lies in
 * one of the ranges of allow (the [allow] cidr exceptions; NULL or empty: none). An IPv4-mapped
 * or IPv4-compatible IPv6 address also matches the IPv4 ranges of allow. When false, why (when
 * not NULL) holds "address 10.0.0.5 is private". Cannot fail; other families are refused. */
bool ssrf_addr_allowed(const struct sockaddr *sa, socklen_t salen,
                       const struct config_cidr_list *allow, char *why, size_t whylen);

/* An upstream_addr_policy (upstream.h) for upstream_pool_set_policy: arg is the
 * const struct config_cidr_list * of [allow] cidr (it must outlive the pool; NULL: no
 * exceptions). Returns 0 to allow, -1 to refuse with the reason in why. */
int ssrf_upstream_policy(void *arg, const struct sockaddr *addr, socklen_t addrlen, char *why,
                         size_t whylen);

/* The rules an ad-hoc URL is admitted by: the canonical [allow] url_prefix rules and the
 * [allow] cidr exceptions. Both are borrowed and must outlive the users of the struct. */
struct ssrf_rules {
    const char *const *prefixes;          /* see ssrf_prefixes_new; NULL admits nothing */
    const struct config_cidr_list *allow; /* NULL: no exceptions */
};

/* An upstream_url_policy (upstream.h) for upstream_pool_set_url_policy: arg is a
 * const struct ssrf_rules * (it must outlive the pool, or be replaced first). A redirect target
 * passes the admission of the first URL: it is normalized, must match an allow prefix and must
 * not name a refused address literally (names are checked on connect). Returns 0 with the
 * canonical URL in *canonical (malloc'd, the caller frees), or -1 with *canonical NULL and a
 * reason in why that quotes no part of the URL. */
int ssrf_upstream_url_policy(void *arg, const char *url, char **canonical, char *why,
                             size_t whylen);

/* Checks the host of a canonical URL before anything is fetched: when it is an IP literal, the
 * address policy is applied to it at once (so /proxy can answer 403 instead of starting a
 * poller that would only fail); a host name passes (its addresses are checked on connect).
 * Returns 0 when it may be fetched, -1 with the reason in why. */
int ssrf_check_literal(const char *canonical, const struct config_cidr_list *allow, char *why,
                       size_t whylen);

#endif

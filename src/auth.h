/* JWT authentication of subscribers (RFC 7519, JWS compact form of RFC 7515) with OpenSSL's
 * EVP: one algorithm (HS256, RS256 or ES256) and one key fixed by [auth], checked signatures
 * and time claims, and the grant a token carries: the stream names and URL prefixes it may
 * subscribe to. Also finds the token in a request (Bearer header, access_token, cookie). */
#ifndef POLLCAST_AUTH_H
#define POLLCAST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_auth;
struct auth;

#define AUTH_MAX_TOKEN       8192 /* bytes of a token; longer ones are refused unparsed */
#define AUTH_MAX_GRANTS      256  /* entries of the grant claim */
#define AUTH_MAX_GRANT_BYTES 2048 /* bytes of one entry */

/* auth_check's failures. Every token problem is AUTH_INVALID (answer 401); AUTH_NOMEM is the
 * server's (answer 500 or 503). */
enum auth_error { AUTH_OK = 0, AUTH_INVALID = -1, AUTH_NOMEM = -2 };

/* What a verified token may subscribe to. Filled by auth_check, released by
 * auth_grant_dispose. */
struct auth_grant {
    char **streams;  /* NULL-terminated: entries of the claim without "://" (stream names) */
    char **urls;     /* NULL-terminated: the other entries, normalized by ssrf_normalize_url
                        (entries that do not normalize are dropped: they grant nothing) */
    char **publish;  /* NULL-terminated: the stream names of the AUTH_PUBLISH_CLAIM claim, which
                        the token may publish to (PUT, PATCH, refresh); the subscribe claim
                        never grants that */
    char *subject;   /* the sub claim when it is a string of at most 256 bytes, else NULL; for
                        logs (not a secret, but not proof of anything beyond this token) */
    uint64_t exp_ms; /* the exp claim, milliseconds since the epoch */
};

/* Builds a verifier from [auth]: the HS256 secret (at least 32 bytes, used as is), or for
 * RS256/ES256 the public key read from public_key_file (a PEM "PUBLIC KEY" or a certificate;
 * an RSA key of at least 2048 bits for RS256, a P-256 key for ES256; private keys are refused).
 * Copies what it needs from cfg. Returns NULL with the reason in err when auth is off
 * (CONFIG_AUTH_OFF), the key is missing, unreadable, of the wrong type or too weak, or memory
 * runs out; err never holds the secret. */
struct auth *auth_new(const struct config_auth *cfg, char *err, size_t errlen);

/* Frees the verifier. Accepts NULL. */
void auth_free(struct auth *a);

/* Verifies token (NUL-terminated) at wall-clock time now_ms (milliseconds since the epoch,
 * see auth_now_ms) and fills out (which need not be initialised) with its grant. A token is
 * accepted only when all of this holds:
 *   - at most AUTH_MAX_TOKEN bytes, exactly three base64url parts without padding and without
 *     stray bits in the last character of a part (one token, one spelling);
 *   - the header is a JSON object whose "alg" equals the configured algorithm exactly (so
 *     "none", another algorithm, and HS256 tokens made with an RSA or EC public key as the
 *     secret are refused), "typ", when present, is JWT or at+jwt (with or without
 *     "application/", any case), and there is no "crit";
 *   - the signature verifies: HMAC-SHA256 compared in constant time; RSASSA-PKCS1-v1_5 with
 *     SHA-256 of the key's size; ECDSA P-256 with SHA-256 given as the 64 bytes R || S of
 *     RFC 7518 (a DER signature is refused). The payload is parsed only after this;
 *   - the payload is a JSON object; "exp" is required (a token without one is refused: bearer
 *     tokens travel in URLs and cookies and must not live for ever) and now_ms must be before
 *     it plus the leeway; "nbf", when present, not after now_ms plus the leeway; "iat", when
 *     present, not after now_ms plus the leeway. Times are NumericDates: non-negative JSON
 *     numbers, fractions allowed, exponents not, at most year 9999;
 *   - "iss", when an issuer is configured, is a string equal to it; "aud", when an audience is
 *     configured, is that string or an array holding it. A token with an "aud" when no
 *     audience is configured is refused (RFC 7519 section 4.1.3: it is meant for someone
 *     else);
 *   - the configured claim (a top-level member whose name is the whole configured string,
 *     dots included, "pollcast.subscribe" by default) is an array of at most AUTH_MAX_GRANTS
 *     non-empty strings of at most AUTH_MAX_GRANT_BYTES without NUL bytes. A token without it
 *     is valid and grants nothing (the server answers 403). Duplicate member names: the last
 *     one counts (RFC 7519 section 4).
 * Returns AUTH_OK with out filled (dispose it), or AUTH_INVALID / AUTH_NOMEM with a short
 * reason in err ("token expired", "token signature does not verify"; never the token's text
 * or a key) and out zeroed. Thread-safe for concurrent calls on one verifier. */
int auth_check(const struct auth *a, const char *token, uint64_t now_ms, struct auth_grant *out,
               char *err, size_t errlen);

/* Releases what a grant holds and zeroes it. Accepts a zeroed grant. */
void auth_grant_dispose(struct auth_grant *g);

/* The leeway the verifier grants time claims: a token is valid until exp plus this. */
uint64_t auth_leeway_ms(const struct auth *a);

/* The claim that lists the streams a token may publish to. */
#define AUTH_PUBLISH_CLAIM "pollcast.publish"

/* True when the grant's publish claim names the stream exactly (case-sensitive). Cannot fail. */
bool auth_grant_allows_publish(const struct auth_grant *g, const char *name);

/* True when the grant names the stream exactly (case-sensitive). Cannot fail. */
bool auth_grant_allows_stream(const struct auth_grant *g, const char *name);

/* True when canonical_url (the output of ssrf_normalize_url) matches one of the grant's URL
 * prefixes, with the boundary rule of ssrf_url_allowed. Cannot fail. */
bool auth_grant_allows_url(const struct auth_grant *g, const char *canonical_url);

/* Finds the token of a request, in this order: an Authorization header with the Bearer scheme
 * (any case; one or more spaces; the token68 of RFC 7235; other schemes are ignored), the
 * access_token query parameter, then the cookie called cookie_name in a Cookie header (at most
 * 64 KiB and 512 pairs are looked at; a value may be in double quotes). Any argument may be
 * NULL. Copies the token, NUL-terminated, into out (outlen bytes; AUTH_MAX_TOKEN + 1 is
 * enough). Returns 1 when a token was found, 0 when there is none, -1 when the first one found
 * is malformed (characters outside base64url and '.', empty) or longer than outlen - 1 or
 * AUTH_MAX_TOKEN. Cannot fail otherwise. */
int auth_token_from_request(const char *authorization, const char *access_token,
                            const char *cookie_header, const char *cookie_name, char *out,
                            size_t outlen);

/* The wall-clock time in milliseconds since the epoch (CLOCK_REALTIME), for auth_check. */
uint64_t auth_now_ms(void);

#endif

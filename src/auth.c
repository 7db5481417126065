/* JWT verification: strict parsing of the compact form, the signature checked with OpenSSL
 * before the payload is even parsed, then the time, audience, issuer and grant claims. */
#include "auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "buf.h"
#include "config.h"
#include "json/json.h"
#include "ssrf.h"

#define HS256_MIN_SECRET 32
#define RSA_MIN_BITS     2048
#define MAX_SUBJECT      256
#define MAX_COOKIE_BYTES (64 * 1024)
#define MAX_COOKIE_PAIRS 512
#define JSON_MAX_DEPTH   32 /* headers and claims are flat; a grant is one array */
/* 9999-12-31T23:59:59Z: later NumericDates are refused. */
#define MAX_NUMERIC_DATE 253402300799ull

struct auth {
    enum config_auth_alg alg;
    const char *alg_name;
    unsigned char *secret; /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS256, ES256 */
    char *audience;
    char *issuer;
    char *claim;
    uint64_t leeway_ms;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

/* ---- keys ---------------------------------------------------------------------------------- */

/* Reads the public key of a PEM file: a SubjectPublicKeyInfo, or the key of a certificate.
 * Returns the key (the caller frees it) or NULL with the reason in err. */
static EVP_PKEY *load_public_key(const char *path, char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        fail(err, errlen, "public_key_file %s: cannot be read", path);
        goto out;
    }
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (pkey == NULL && BIO_reset(bio) == 0) {
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert != NULL)
            pkey = X509_get_pubkey(cert);
        X509_free(cert);
    }
    if (pkey == NULL)
        fail(err, errlen,
             "public_key_file %s: no public key found (expected a PEM \"PUBLIC KEY\" or a "
             "certificate; private keys are not accepted)",
             path);
out:
    BIO_free(bio);
    ERR_clear_error();
    return pkey;
}

/* Checks that pkey suits alg. Returns 0 or -1 with the reason in err. */
static int check_key(EVP_PKEY *pkey, enum config_auth_alg alg, const char *path, char *err,
                     size_t errlen)
{
    if (alg == CONFIG_AUTH_RS256) {
        if (!EVP_PKEY_is_a(pkey, "RSA"))
            return fail(err, errlen, "public_key_file %s: RS256 needs an RSA key", path);
        if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS)
            return fail(err, errlen, "public_key_file %s: RSA key of %d bits, at least %d needed",
                        path, EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
        return 0;
    }
    char group[64] = "";
    if (!EVP_PKEY_is_a(pkey, "EC") ||
        EVP_PKEY_get_group_name(pkey, group, sizeof group, NULL) != 1 ||
        (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
        ERR_clear_error();
        return fail(err, errlen, "public_key_file %s: ES256 needs an EC key on curve P-256", path);
    }
    return 0;
}

struct auth *auth_new(const struct config_auth *cfg, char *err, size_t errlen)
{
    struct auth *a = NULL;
    if (cfg == NULL || cfg->algorithm == CONFIG_AUTH_OFF) {
        fail(err, errlen, "auth is off (no algorithm configured)");
        return NULL;
    }
    a = calloc(1, sizeof *a);
    if (a == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    a->alg = cfg->algorithm;
    a->leeway_ms = cfg->leeway_ms;
    bool oom = false;
    a->audience = dup_or_null(cfg->audience, &oom);
    a->issuer = dup_or_null(cfg->issuer, &oom);
    a->claim = dup_or_null(cfg->claim ? cfg->claim : "pollcast.subscribe", &oom);
    if (oom) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    switch (cfg->algorithm) {
    case CONFIG_AUTH_HS256:
        a->alg_name = "HS256";
        if (cfg->secret == NULL || strlen(cfg->secret) < HS256_MIN_SECRET) {
            fail(err, errlen, "HS256 needs a secret of at least %d bytes", HS256_MIN_SECRET);
            goto fail;
        }
        a->secret_len = strlen(cfg->secret);
        a->secret = malloc(a->secret_len);
        if (a->secret == NULL) {
            fail(err, errlen, "out of memory");
            goto fail;
        }
        memcpy(a->secret, cfg->secret, a->secret_len);
        break;
    case CONFIG_AUTH_RS256:
    case CONFIG_AUTH_ES256:
        a->alg_name = cfg->algorithm == CONFIG_AUTH_RS256 ? "RS256" : "ES256";
        if (cfg->public_key_file == NULL) {
            fail(err, errlen, "%s needs public_key_file", a->alg_name);
            goto fail;
        }
        a->pkey = load_public_key(cfg->public_key_file, err, errlen);
        if (a->pkey == NULL ||
            check_key(a->pkey, cfg->algorithm, cfg->public_key_file, err, errlen) != 0)
            goto fail;
        break;
    default:
        fail(err, errlen, "unknown algorithm");
        goto fail;
    }
    return a;
fail:
    auth_free(a);
    return NULL;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    if (a->secret != NULL)
        OPENSSL_cleanse(a->secret, a->secret_len);
    free(a->secret);
    EVP_PKEY_free(a->pkey);
    free(a->audience);
    free(a->issuer);
    free(a->claim);
    free(a);
}

/* ---- compact form -------------------------------------------------------------------------- */

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes base64url without padding (RFC 7515 section 2), refusing any other character, a
 * length that leaves a lone character, and set bits beyond the last byte. Returns 0 or -1. */
static int b64url_decode(const char *s, size_t n, struct buf *out)
{
    if (n % 4 == 1)
        return -1;
    if (buf_reserve(out, n / 4 * 3 + 3) != 0)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_putc(out, (char)((acc >> bits) & 0xff));
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? 0 : -1;
}

/* ---- JSON helpers -------------------------------------------------------------------------- */

/* Decodes a string node into out (cleared first). Returns 0, -1 when n is not a string or
 * holds a NUL byte, -2 when out of memory. */
static int get_string(const struct json_node *n, struct buf *out)
{
    buf_truncate(out, 0);
    if (n == NULL || n->type != JSON_STRING)
        return -1;
    if (json_string_decode(n, out) != 0)
        return -2;
    if (out->len == 0) {
        /* json_string_decode of "" may leave data NULL. */
        if (buf_reserve(out, 1) != 0)
            return -2;
        out->data[0] = '\0';
    }
    return memchr(out->data, '\0', out->len) != NULL ? -1 : 0;
}

/* True when n is a string whose decoded bytes are want. Sets *oom when out of memory. */
static bool string_is(const struct json_node *n, const char *want, struct buf *tmp, bool *oom)
{
    int rc = get_string(n, tmp);
    if (rc == -2)
        *oom = true;
    return rc == 0 && strcmp(tmp->data, want) == 0;
}

static const struct json_node *member(const struct json_node *obj, const char *name)
{
    return json_object_get(obj, name, strlen(name));
}

/* Reads a NumericDate (seconds since the epoch, a non-negative JSON number without exponent,
 * fractions allowed) as milliseconds. Returns 0 or -1. */
static int numeric_date_ms(const struct json_node *n, uint64_t *ms)
{
    if (n == NULL || n->type != JSON_NUMBER)
        return -1;
    const char *t = n->text;
    size_t len = n->len, i = 0;
    uint64_t sec = 0, frac = 0;
    unsigned fdigits = 0;
    while (i < len && t[i] >= '0' && t[i] <= '9') {
        sec = sec * 10 + (uint64_t)(t[i] - '0');
        if (sec > MAX_NUMERIC_DATE)
            return -1;
        i++;
    }
    if (i == 0)
        return -1; /* a minus sign */
    if (i < len && t[i] == '.') {
        for (i++; i < len && t[i] >= '0' && t[i] <= '9'; i++)
            if (fdigits < 3) {
                frac = frac * 10 + (uint64_t)(t[i] - '0');
                fdigits++;
            }
    }
    if (i != len)
        return -1; /* an exponent */
    while (fdigits < 3) {
        frac *= 10;
        fdigits++;
    }
    *ms = sec * 1000 + frac;
    return 0;
}

/* ---- signatures ---------------------------------------------------------------------------- */

/* Verifies sig over data with the configured key. Returns 1 when it verifies, 0 when it does
 * not, -1 when out of memory. */
static int verify(const struct auth *a, const char *data, size_t dlen, const unsigned char *sig,
                  size_t slen)
{
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    ECDSA_SIG *es = NULL;
    unsigned char *der = NULL;
    if (a->alg == CONFIG_AUTH_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mlen = 0;
        if (HMAC(EVP_sha256(), a->secret, (int)a->secret_len, (const unsigned char *)data, dlen,
                 mac, &mlen) == NULL) {
            ok = -1;
            goto out;
        }
        ok = slen == 32 && mlen == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
        OPENSSL_cleanse(mac, sizeof mac);
        goto out;
    }
    const unsigned char *vsig = sig;
    size_t vlen = slen;
    if (a->alg == CONFIG_AUTH_ES256) {
        /* JOSE carries R || S, 32 bytes each; EVP wants the DER ECDSA-Sig-Value. */
        if (slen != 64)
            goto out;
        es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ok = -1;
            goto out;
        }
        int n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0) {
            ok = -1;
            goto out;
        }
        vsig = der;
        vlen = (size_t)n;
    } else if (EVP_PKEY_get_size(a->pkey) <= 0 || slen != (size_t)EVP_PKEY_get_size(a->pkey)) {
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, a->pkey) != 1) {
        ok = -1;
        goto out;
    }
    if (a->alg == CONFIG_AUTH_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
        ok = -1;
        goto out;
    }
    ok = EVP_DigestVerify(ctx, vsig, vlen, (const unsigned char *)data, dlen) == 1;
out:
    EVP_MD_CTX_free(ctx);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    /* Failed verifications leave errors on the thread's OpenSSL queue, where libcurl's TLS
     * code would find them later. */
    ERR_clear_error();
    return ok;
}

/* ---- claims -------------------------------------------------------------------------------- */

static bool typ_ok(const char *t)
{
    if (strncasecmp(t, "application/", 12) == 0)
        t += 12;
    return strcasecmp(t, "JWT") == 0 || strcasecmp(t, "at+jwt") == 0;
}

/* Appends a copy of s to the NULL-terminated array *v holding *n entries. Returns 0 or -1. */
static int push_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 2) * sizeof *nv);
    if (nv == NULL)
        return -1;
    *v = nv;
    nv[*n] = strdup(s);
    if (nv[*n] == NULL)
        return -1;
    nv[++*n] = NULL;
    return 0;
}

/* Fills g from the grant claim. Returns AUTH_OK, AUTH_INVALID or AUTH_NOMEM. */
static int read_grant(const struct auth *a, const struct json_node *claims, struct auth_grant *g,
                      struct buf *tmp, char *err, size_t errlen)
{
    const struct json_node *list = member(claims, a->claim);
    if (list == NULL) {
        /* A valid token that grants nothing: the answer is 403 (insufficient_scope), not 401,
         * since another token would not help the same client authenticate. */
        g->streams = calloc(1, sizeof *g->streams);
        g->urls = calloc(1, sizeof *g->urls);
        return g->streams && g->urls ? AUTH_OK : AUTH_NOMEM;
    }
    if (list->type != JSON_ARRAY) {
        fail(err, errlen, "token has no %s claim (an array of stream names and URL prefixes)",
             a->claim);
        return AUTH_INVALID;
    }
    if (list->count > AUTH_MAX_GRANTS) {
        fail(err, errlen, "token's %s claim has more than %d entries", a->claim, AUTH_MAX_GRANTS);
        return AUTH_INVALID;
    }
    size_t ns = 0, nu = 0;
    g->streams = calloc(1, sizeof *g->streams);
    g->urls = calloc(1, sizeof *g->urls);
    if (g->streams == NULL || g->urls == NULL)
        return AUTH_NOMEM;
    struct buf canon;
    buf_init(&canon, 0);
    int rc = AUTH_OK;
    for (uint32_t i = 0; i < list->count && rc == AUTH_OK; i++) {
        int s = get_string(list->u.items[i], tmp);
        if (s == -2) {
            rc = AUTH_NOMEM;
        } else if (s != 0 || tmp->len == 0 || tmp->len > AUTH_MAX_GRANT_BYTES) {
            fail(err, errlen, "token's %s claim must hold non-empty strings of at most %d bytes",
                 a->claim, AUTH_MAX_GRANT_BYTES);
            rc = AUTH_INVALID;
        } else if (strstr(tmp->data, "://") == NULL) {
            if (push_str(&g->streams, &ns, tmp->data) != 0)
                rc = AUTH_NOMEM;
        } else {
            char why[160];
            buf_truncate(&canon, 0);
            /* An entry that does not normalize grants nothing: it is left out. */
            if (ssrf_normalize_url(tmp->data, &canon, why, sizeof why) == 0 &&
                push_str(&g->urls, &nu, canon.data) != 0)
                rc = AUTH_NOMEM;
        }
    }
    buf_dispose(&canon);
    return rc;
}

/* Fills g->publish from the AUTH_PUBLISH_CLAIM claim: the stream names the token may publish
 * to (none when there is no such claim). Returns AUTH_OK, AUTH_INVALID or AUTH_NOMEM. */
static int read_publish(const struct json_node *claims, struct auth_grant *g, struct buf *tmp,
                        char *err, size_t errlen)
{
    size_t n = 0;
    g->publish = calloc(1, sizeof *g->publish);
    if (g->publish == NULL)
        return AUTH_NOMEM;
    const struct json_node *list = member(claims, AUTH_PUBLISH_CLAIM);
    if (list == NULL)
        return AUTH_OK;
    if (list->type != JSON_ARRAY || list->count > AUTH_MAX_GRANTS) {
        fail(err, errlen, "token's %s claim must be an array of at most %d stream names",
             AUTH_PUBLISH_CLAIM, AUTH_MAX_GRANTS);
        return AUTH_INVALID;
    }
    for (uint32_t i = 0; i < list->count; i++) {
        int s = get_string(list->u.items[i], tmp);
        if (s == -2)
            return AUTH_NOMEM;
        if (s != 0 || tmp->len == 0 || tmp->len > AUTH_MAX_GRANT_BYTES) {
            fail(err, errlen, "token's %s claim must hold non-empty strings of at most %d bytes",
                 AUTH_PUBLISH_CLAIM, AUTH_MAX_GRANT_BYTES);
            return AUTH_INVALID;
        }
        if (push_str(&g->publish, &n, tmp->data) != 0)
            return AUTH_NOMEM;
    }
    return AUTH_OK;
}

/* Checks the registered claims of the payload. Returns AUTH_OK, AUTH_INVALID or AUTH_NOMEM. */
static int check_claims(const struct auth *a, const struct json_node *c, uint64_t now_ms,
                        struct auth_grant *g, struct buf *tmp, char *err, size_t errlen)
{
    uint64_t t, lee = a->leeway_ms;
    const struct json_node *n = member(c, "exp");
    if (n == NULL) {
        fail(err, errlen, "token has no exp claim");
        return AUTH_INVALID;
    }
    if (numeric_date_ms(n, &t) != 0) {
        fail(err, errlen, "token's exp is not a valid NumericDate");
        return AUTH_INVALID;
    }
    g->exp_ms = t;
    if (now_ms >= t + lee) {
        fail(err, errlen, "token expired");
        return AUTH_INVALID;
    }
    n = member(c, "nbf");
    if (n != NULL && numeric_date_ms(n, &t) != 0) {
        fail(err, errlen, "token's nbf is not a valid NumericDate");
        return AUTH_INVALID;
    }
    if (n != NULL && now_ms + lee < t) {
        fail(err, errlen, "token not valid yet (nbf)");
        return AUTH_INVALID;
    }
    n = member(c, "iat");
    if (n != NULL && numeric_date_ms(n, &t) != 0) {
        fail(err, errlen, "token's iat is not a valid NumericDate");
        return AUTH_INVALID;
    }
    if (n != NULL && t > now_ms + lee) {
        fail(err, errlen, "token issued in the future (iat)");
        return AUTH_INVALID;
    }
    bool oom = false;
    n = member(c, "iss");
    if (a->issuer != NULL && !string_is(n, a->issuer, tmp, &oom)) {
        fail(err, errlen, "token's issuer is not the one configured");
        return oom ? AUTH_NOMEM : AUTH_INVALID;
    }
    n = member(c, "aud");
    if (n != NULL && a->audience == NULL) {
        fail(err, errlen, "token has an audience and none is configured");
        return AUTH_INVALID;
    }
    if (a->audience != NULL) {
        bool found = false;
        if (n != NULL && n->type == JSON_ARRAY) {
            for (uint32_t i = 0; i < n->count && !found; i++)
                found = string_is(n->u.items[i], a->audience, tmp, &oom);
        } else {
            found = string_is(n, a->audience, tmp, &oom);
        }
        if (!found) {
            fail(err, errlen, "token's audience is not this server");
            return oom ? AUTH_NOMEM : AUTH_INVALID;
        }
    }
    n = member(c, "sub");
    if (n != NULL) {
        int s = get_string(n, tmp);
        if (s == -2)
            return AUTH_NOMEM;
        if (s == 0 && tmp->len <= MAX_SUBJECT) {
            g->subject = strdup(tmp->data);
            if (g->subject == NULL)
                return AUTH_NOMEM;
        }
    }
    int rc = read_grant(a, c, g, tmp, err, errlen);
    return rc == AUTH_OK ? read_publish(c, g, tmp, err, errlen) : rc;
}

/* Checks the JOSE header. Returns AUTH_OK, AUTH_INVALID or AUTH_NOMEM. */
static int check_header(const struct auth *a, const struct json_node *h, struct buf *tmp, char *err,
                        size_t errlen)
{
    bool oom = false;
    if (h->type != JSON_OBJECT) {
        fail(err, errlen, "token header is not a JSON object");
        return AUTH_INVALID;
    }
    if (!string_is(member(h, "alg"), a->alg_name, tmp, &oom)) {
        fail(err, errlen, "token algorithm is not %s", a->alg_name);
        return oom ? AUTH_NOMEM : AUTH_INVALID;
    }
    const struct json_node *typ = member(h, "typ");
    if (typ != NULL) {
        int s = get_string(typ, tmp);
        if (s == -2)
            return AUTH_NOMEM;
        if (s != 0 || !typ_ok(tmp->data)) {
            fail(err, errlen, "token typ is not JWT");
            return AUTH_INVALID;
        }
    }
    if (member(h, "crit") != NULL) {
        fail(err, errlen, "token header has crit extensions, which are not supported");
        return AUTH_INVALID;
    }
    return AUTH_OK;
}

int auth_check(const struct auth *a, const char *token, uint64_t now_ms, struct auth_grant *out,
               char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (a == NULL || token == NULL) {
        fail(err, errlen, "no token");
        return AUTH_INVALID;
    }
    size_t len = strnlen(token, AUTH_MAX_TOKEN + 1);
    if (len > AUTH_MAX_TOKEN) {
        fail(err, errlen, "token longer than %d bytes", AUTH_MAX_TOKEN);
        return AUTH_INVALID;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
        fail(err, errlen, "token is not three base64url parts joined by dots");
        return AUTH_INVALID;
    }
    struct buf hdr, body, sig, tmp;
    buf_init(&hdr, 0);
    buf_init(&body, 0);
    buf_init(&sig, 0);
    buf_init(&tmp, 0);
    struct json_doc *hdoc = NULL, *cdoc = NULL;
    struct json_parse_opts opts = {.max_depth = JSON_MAX_DEPTH};
    int rc = AUTH_INVALID;
    size_t sig_at = (size_t)(d2 + 1 - token);
    if (b64url_decode(token, (size_t)(d1 - token), &hdr) != 0 ||
        b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &body) != 0 ||
        b64url_decode(d2 + 1, len - sig_at, &sig) != 0) {
        fail(err, errlen, "token is not valid base64url");
        goto out;
    }
    hdoc = json_parse(hdr.data ? hdr.data : "", hdr.len, &opts, NULL);
    if (hdoc == NULL) {
        fail(err, errlen, "token header is not valid JSON");
        goto out;
    }
    rc = check_header(a, hdoc->root, &tmp, err, errlen);
    if (rc != AUTH_OK)
        goto out;
    int v = verify(a, token, (size_t)(d2 - token), (const unsigned char *)sig.data, sig.len);
    if (v != 1) {
        rc = v < 0 ? AUTH_NOMEM : AUTH_INVALID;
        fail(err, errlen, "token signature does not verify");
        goto out;
    }
    rc = AUTH_INVALID;
    cdoc = json_parse(body.data ? body.data : "", body.len, &opts, NULL);
    if (cdoc == NULL || cdoc->root->type != JSON_OBJECT) {
        fail(err, errlen, "token payload is not a JSON object");
        goto out;
    }
    rc = check_claims(a, cdoc->root, now_ms, out, &tmp, err, errlen);
out:
    if (rc == AUTH_NOMEM)
        fail(err, errlen, "out of memory");
    if (rc != AUTH_OK)
        auth_grant_dispose(out);
    json_doc_free(hdoc);
    json_doc_free(cdoc);
    buf_dispose(&hdr);
    buf_dispose(&body);
    buf_dispose(&sig);
    buf_dispose(&tmp);
    return rc;
}

void auth_grant_dispose(struct auth_grant *g)
{
    if (g == NULL)
        return;
    for (char **p = g->streams; p && *p; p++)
        free(*p);
    for (char **p = g->urls; p && *p; p++)
        free(*p);
    for (char **p = g->publish; p && *p; p++)
        free(*p);
    free(g->publish);
    free(g->streams);
    free(g->urls);
    free(g->subject);
    memset(g, 0, sizeof *g);
}

uint64_t auth_leeway_ms(const struct auth *a)
{
    return a->leeway_ms;
}

bool auth_grant_allows_publish(const struct auth_grant *g, const char *name)
{
    for (char **p = g->publish; p && *p; p++)
        if (strcmp(*p, name) == 0)
            return true;
    return false;
}

bool auth_grant_allows_stream(const struct auth_grant *g, const char *name)
{
    if (g == NULL || name == NULL)
        return false;
    for (char **p = g->streams; p && *p; p++)
        if (strcmp(*p, name) == 0)
            return true;
    return false;
}

bool auth_grant_allows_url(const struct auth_grant *g, const char *canonical_url)
{
    if (g == NULL || g->urls == NULL)
        return false;
    return ssrf_url_allowed(canonical_url, (const char *const *)g->urls);
}

/* ---- finding the token --------------------------------------------------------------------- */

static bool token_char(char c)
{
    return b64url_value(c) >= 0 || c == '.';
}

/* Copies s[0..n) into out when it looks like a compact JWT. Returns 1, or -1. */
static int take_token(const char *s, size_t n, char *out, size_t outlen)
{
    if (n == 0 || n > AUTH_MAX_TOKEN || outlen == 0 || n > outlen - 1)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!token_char(s[i]))
            return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 1;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Looks for the cookie called name. Returns 1 with the token in out, 0 when it is not there,
 * -1 when its value is not a token. */
static int cookie_token(const char *h, const char *name, char *out, size_t outlen)
{
    size_t hlen = strnlen(h, MAX_COOKIE_BYTES), nlen = strlen(name), i = 0;
    for (unsigned pairs = 0; i < hlen && pairs < MAX_COOKIE_PAIRS; pairs++) {
        while (i < hlen && (ows(h[i]) || h[i] == ';'))
            i++;
        size_t ns = i;
        while (i < hlen && h[i] != '=' && h[i] != ';')
            i++;
        size_t ne = i;
        while (ne > ns && ows(h[ne - 1]))
            ne--;
        if (i >= hlen || h[i] != '=')
            continue; /* a pair without '=' names nothing */
        i++;
        while (i < hlen && ows(h[i]))
            i++;
        size_t vs = i;
        while (i < hlen && h[i] != ';')
            i++;
        size_t ve = i;
        while (ve > vs && ows(h[ve - 1]))
            ve--;
        if (ne - ns != nlen || memcmp(h + ns, name, nlen) != 0)
            continue;
        if (ve - vs >= 2 && h[vs] == '"' && h[ve - 1] == '"') {
            vs++;
            ve--;
        }
        return take_token(h + vs, ve - vs, out, outlen);
    }
    return 0;
}

int auth_token_from_request(const char *authorization, const char *access_token,
                            const char *cookie_header, const char *cookie_name, char *out,
                            size_t outlen)
{
    if (authorization != NULL) {
        const char *p = authorization;
        while (ows(*p))
            p++;
        if (strncasecmp(p, "Bearer", 6) == 0 && p[6] == ' ') {
            p += 6;
            while (*p == ' ')
                p++;
            size_t n = strnlen(p, AUTH_MAX_TOKEN + 2);
            while (n > 0 && ows(p[n - 1]))
                n--;
            /* token68 may end in '=' padding; JWTs never do, so take_token refuses it. */
            return take_token(p, n, out, outlen);
        }
    }
    if (access_token != NULL && *access_token != '\0')
        return take_token(access_token, strnlen(access_token, AUTH_MAX_TOKEN + 1), out, outlen);
    if (cookie_header != NULL && cookie_name != NULL && *cookie_name != '\0')
        return cookie_token(cookie_header, cookie_name, out, outlen);
    return 0;
}

uint64_t auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

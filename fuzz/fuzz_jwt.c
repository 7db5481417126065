/* Fuzzes JWT verification. The first byte picks a mode: 0, the rest is a token checked by an
 * HS256, an RS256 and an ES256 verifier (nothing may crash, leak or be accepted: the fuzzer has
 * no key); 1, the rest is a header and a payload separated by a NUL byte, signed here with the
 * HS256 secret so that the claim checks behind the signature are reached, and a grant that
 * comes out must allow what it lists; 2, the rest is an Authorization header, an access_token
 * and a Cookie header separated by NUL bytes, given to auth_token_from_request. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "fuzz.h"

#ifndef POLLCAST_SRC_DIR
#define POLLCAST_SRC_DIR "."
#endif

#define SECRET "pollcast-fuzz-secret-0123456789-abcdefghijklmnop"
#define NOW_MS 1700000000000ull

static struct auth *hs, *rs, *es;

static struct auth *make(enum config_auth_alg alg, const char *key_file)
{
    struct config_auth cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.algorithm = alg;
    cfg.secret = alg == CONFIG_AUTH_HS256 ? SECRET : NULL;
    cfg.public_key_file = (char *)key_file;
    cfg.audience = "pollcast-test";
    cfg.claim = "pollcast.subscribe";
    cfg.leeway_ms = 30000;
    char err[256];
    struct auth *a = auth_new(&cfg, err, sizeof err);
    if (a == NULL)
        fprintf(stderr, "fuzz_jwt: %s\n", err);
    return a;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    hs = make(CONFIG_AUTH_HS256, NULL);
    rs = make(CONFIG_AUTH_RS256, POLLCAST_SRC_DIR "/tests/data/auth/keys/rsa_public.pem");
    es = make(CONFIG_AUTH_ES256, POLLCAST_SRC_DIR "/tests/data/auth/keys/ec_public.pem");
    return hs && rs && es ? 0 : 1;
}

static void b64url(struct buf *out, const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        char c[4] = {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
        buf_append(out, c, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        char c[2] = {a[v >> 18], a[(v >> 12) & 63]};
        buf_append(out, c, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        char c[3] = {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63]};
        buf_append(out, c, 3);
    }
}

/* A verified grant must allow every entry it lists. */
static void check_grant(const struct auth_grant *g)
{
    FUZZ_ASSERT(g->streams != NULL && g->urls != NULL);
    for (char **p = g->streams; *p; p++)
        FUZZ_ASSERT(auth_grant_allows_stream(g, *p));
    for (char **p = g->urls; *p; p++)
        FUZZ_ASSERT(auth_grant_allows_url(g, *p));
}

static void check_token(struct auth *a, const char *token, int may_pass)
{
    struct auth_grant g;
    char err[256];
    int rc = auth_check(a, token, NOW_MS, &g, err, sizeof err);
    FUZZ_ASSERT(rc == AUTH_OK || rc == AUTH_INVALID || rc == AUTH_NOMEM);
    if (rc == AUTH_OK) {
        FUZZ_ASSERT(may_pass);
        check_grant(&g);
    } else {
        FUZZ_ASSERT(err[0] != '\0' && g.streams == NULL && g.urls == NULL);
    }
    auth_grant_dispose(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    char *text = malloc(size + 1);
    FUZZ_ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    if (mode == 0) {
        /* Without a key nothing passes, except by an HMAC or signature collision. */
        check_token(hs, text, 0);
        check_token(rs, text, 0);
        check_token(es, text, 0);
    } else if (mode == 1) {
        const uint8_t *sep = memchr(data, '\0', size);
        if (sep != NULL) {
            struct buf t;
            buf_init(&t, 0);
            b64url(&t, data, (size_t)(sep - data));
            buf_putc(&t, '.');
            b64url(&t, sep + 1, size - (size_t)(sep - data) - 1);
            unsigned char mac[EVP_MAX_MD_SIZE];
            unsigned int mlen = 0;
            FUZZ_ASSERT(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET),
                             (const unsigned char *)t.data, t.len, mac, &mlen) != NULL);
            buf_putc(&t, '.');
            b64url(&t, mac, mlen);
            check_token(hs, t.data, 1);
            /* Signed with the secret, still not an RS256 or ES256 token. */
            check_token(rs, t.data, 0);
            check_token(es, t.data, 0);
            buf_dispose(&t);
        }
    } else {
        const char *parts[3] = {NULL, NULL, NULL};
        size_t off = 0;
        for (int i = 0; i < 3 && off <= size; i++) {
            parts[i] = text + off;
            off += strlen(text + off) + 1;
        }
        char out[AUTH_MAX_TOKEN + 1];
        int r = auth_token_from_request(parts[0], parts[1], parts[2], "pollcast_token", out,
                                        sizeof out);
        FUZZ_ASSERT(r >= -1 && r <= 1);
        if (r == 1) {
            size_t n = strlen(out);
            FUZZ_ASSERT(n > 0 && n <= AUTH_MAX_TOKEN);
            FUZZ_ASSERT(strspn(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_.") == n);
            check_token(hs, out, 0);
        }
    }
    free(text);
    return 0;
}

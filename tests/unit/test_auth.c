/* Tests of auth.c against tokens minted by the openssl CLI (tests/data/auth/mint.sh): the table
 * of cases.txt, grants, malformed compact forms, key loading and finding the token in a
 * request. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "harness.h"

/* The clock of every fixture (mint.sh's NOW), in milliseconds. */
#define NOW_MS 1700000000000ull

static char data_dir[4096];

static void path_of(char *dst, size_t n, const char *rel)
{
    snprintf(dst, n, "%s/%s", data_dir, rel);
}

/* Reads a token file without its final newline. Returns a heap string or NULL. */
static char *read_token(const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tokens/%s.jwt", data_dir, name);
    size_t n = 0;
    char *t = harness_slurp(path, &n);
    while (t != NULL && n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r'))
        t[--n] = '\0';
    return t;
}

static char secret[128];
static char rsa_pub[4200], rsa_cert[4200], ec_pub[4200];

/* Fills cfg for one of the configurations named in cases.txt. Returns 0, or -1 when unknown. */
static int config_named(const char *name, struct config_auth *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->audience = "pollcast-test";
    cfg->issuer = "https://issuer.test/";
    cfg->claim = "pollcast.subscribe";
    cfg->leeway_ms = 30000;
    cfg->cookie = "pollcast_token";
    if (strcmp(name, "hs") == 0 || strcmp(name, "hs-noaud") == 0) {
        cfg->algorithm = CONFIG_AUTH_HS256;
        cfg->secret = secret;
        if (strcmp(name, "hs-noaud") == 0)
            cfg->audience = cfg->issuer = NULL;
    } else if (strcmp(name, "rs") == 0) {
        cfg->algorithm = CONFIG_AUTH_RS256;
        cfg->public_key_file = rsa_pub;
    } else if (strcmp(name, "rs-cert") == 0) {
        cfg->algorithm = CONFIG_AUTH_RS256;
        cfg->public_key_file = rsa_cert;
    } else if (strcmp(name, "es") == 0) {
        cfg->algorithm = CONFIG_AUTH_ES256;
        cfg->public_key_file = ec_pub;
    } else {
        return -1;
    }
    return 0;
}

static struct auth *auth_named(const char *name)
{
    struct config_auth cfg;
    char err[256] = "";
    if (config_named(name, &cfg) != 0)
        return NULL;
    struct auth *a = auth_new(&cfg, err, sizeof err);
    if (a == NULL)
        fprintf(stderr, "auth_new(%s): %s\n", name, err);
    return a;
}

/* Checks token with the auth of config name at NOW_MS. Returns the auth_check result and
 * leaves the message in err and the grant in g (disposed by the caller). */
static int check_with(const char *config, const char *token, struct auth_grant *g, char *err,
                      size_t errlen)
{
    struct auth *a = auth_named(config);
    if (a == NULL)
        return -99;
    int rc = auth_check(a, token, NOW_MS, g, err, errlen);
    auth_free(a);
    return rc;
}

static void test_cases_table(void)
{
    char path[4200];
    path_of(path, sizeof path, "cases.txt");
    char *text = harness_slurp(path, NULL);
    REQUIRE(text != NULL);
    int cases = 0;
    char *save = text;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *c1 = strchr(line, '|');
        char *c2 = c1 ? strchr(c1 + 1, '|') : NULL;
        REQUIRE(c1 != NULL && c2 != NULL);
        *c1 = *c2 = '\0';
        const char *name = line, *config = c1 + 1, *want = c2 + 1;
        char *token = read_token(name);
        CHECK(token != NULL);
        if (token != NULL) {
            char err[256] = "";
            struct auth_grant g;
            int rc = check_with(config, token, &g, err, sizeof err);
            bool want_ok = strcmp(want, "ok") == 0;
            bool pass = want_ok ? rc == AUTH_OK : (rc == AUTH_INVALID && strstr(err, want) != NULL);
            if (!pass)
                fprintf(stderr, "case %s with %s: rc %d, err \"%s\", want %s\n", name, config, rc,
                        err, want);
            CHECK(pass);
            /* A refused token leaves nothing behind. */
            if (rc != AUTH_OK)
                CHECK(g.streams == NULL && g.urls == NULL && g.subject == NULL);
            auth_grant_dispose(&g);
            free(token);
        }
        cases++;
        line = nl ? nl + 1 : NULL;
    }
    free(save);
    CHECK(cases >= 60);
}

static void test_grants(void)
{
    char err[256];
    struct auth_grant g;
    char *t = read_token("hs_ok");
    REQUIRE(t != NULL);
    CHECK_INT(check_with("hs", t, &g, err, sizeof err), AUTH_OK);
    CHECK(auth_grant_allows_stream(&g, "prices"));
    CHECK(!auth_grant_allows_stream(&g, "orders"));
    CHECK(!auth_grant_allows_stream(&g, "Prices"));
    CHECK(!auth_grant_allows_stream(&g, "price"));
    /* The token says "https://API.example.com:443/v1/": it is normalized. */
    CHECK(auth_grant_allows_url(&g, "https://api.example.com/v1/prices"));
    CHECK(auth_grant_allows_url(&g, "https://api.example.com/v1/"));
    CHECK(!auth_grant_allows_url(&g, "https://api.example.com/v2/"));
    CHECK(!auth_grant_allows_url(&g, "https://api.example.com.evil.net/v1/"));
    CHECK(!auth_grant_allows_url(&g, "http://api.example.com/v1/"));
    CHECK_STR(g.subject, "alice");
    CHECK(g.exp_ms == (1700000000ull + 3600) * 1000);
    /* Stream names are not URL prefixes and the other way round. */
    CHECK(!auth_grant_allows_stream(&g, "https://api.example.com/v1/"));
    CHECK(!auth_grant_allows_url(&g, "prices"));
    auth_grant_dispose(&g);
    auth_grant_dispose(&g); /* twice is harmless */
    free(t);

    t = read_token("hs_small");
    REQUIRE(t != NULL);
    CHECK_INT(check_with("hs", t, &g, err, sizeof err), AUTH_OK);
    CHECK(auth_grant_allows_stream(&g, "orders"));
    CHECK(!auth_grant_allows_stream(&g, "prices"));
    CHECK(!auth_grant_allows_url(&g, "https://api.example.com/v1/prices"));
    auth_grant_dispose(&g);
    free(t);

    t = read_token("hs_claim_urls");
    REQUIRE(t != NULL);
    CHECK_INT(check_with("hs", t, &g, err, sizeof err), AUTH_OK);
    REQUIRE(g.urls != NULL && g.streams != NULL);
    CHECK(g.streams[0] == NULL);
    /* user@host and ftp:// entries grant nothing; the rest are canonical. */
    CHECK_STR(g.urls[0], "https://api.example.com/v1");
    CHECK_STR(g.urls[1], "https://data.example.com/");
    CHECK(g.urls[2] == NULL);
    CHECK(auth_grant_allows_url(&g, "https://api.example.com/v1"));
    CHECK(auth_grant_allows_url(&g, "https://api.example.com/v1?x=1"));
    CHECK(!auth_grant_allows_url(&g, "https://api.example.com/v10"));
    CHECK(!auth_grant_allows_url(&g, "http://evil/"));
    CHECK(auth_grant_allows_url(&g, "https://data.example.com/anything"));
    auth_grant_dispose(&g);
    free(t);

    t = read_token("hs_claim_empty");
    REQUIRE(t != NULL);
    CHECK_INT(check_with("hs", t, &g, err, sizeof err), AUTH_OK);
    CHECK(!auth_grant_allows_stream(&g, "prices"));
    CHECK(!auth_grant_allows_url(&g, "https://api.example.com/v1/"));
    auth_grant_dispose(&g);
    free(t);

    /* A zeroed grant allows nothing. */
    struct auth_grant z;
    memset(&z, 0, sizeof z);
    CHECK(!auth_grant_allows_stream(&z, "prices"));
    CHECK(!auth_grant_allows_url(&z, "https://api.example.com/v1/"));
    CHECK(!auth_grant_allows_stream(NULL, "prices"));
}

/* Expects token to be refused by the HS256 config with a message holding want. */
static void refused(const char *token, const char *want, int line)
{
    char err[256] = "";
    struct auth_grant g;
    int rc = check_with("hs", token, &g, err, sizeof err);
    if (rc != AUTH_INVALID || strstr(err, want) == NULL)
        fprintf(stderr, "line %d: rc %d, err \"%s\", want \"%s\"\n", line, rc, err, want);
    CHECK(rc == AUTH_INVALID && strstr(err, want) != NULL);
    auth_grant_dispose(&g);
}

static void test_malformed(void)
{
    char *ok = read_token("hs_ok");
    REQUIRE(ok != NULL);
    size_t n = strlen(ok);
    char *d1 = strchr(ok, '.'), *d2 = strrchr(ok, '.');
    REQUIRE(d1 != NULL && d2 != NULL && d1 != d2);
    size_t p1 = (size_t)(d1 - ok), p2 = (size_t)(d2 - ok);
    char *t = malloc(AUTH_MAX_TOKEN * 2 + 16);
    REQUIRE(t != NULL);

    refused("", "three base64url parts", __LINE__);
    refused("..", "header is not valid JSON", __LINE__);
    refused("abc", "three base64url parts", __LINE__);
    /* Two parts: header.payload */
    snprintf(t, n + 1, "%.*s", (int)p2, ok);
    refused(t, "three base64url parts", __LINE__);
    /* Four parts. */
    snprintf(t, n + 16, "%s.", ok);
    refused(t, "three base64url parts", __LINE__);
    snprintf(t, n + 16, "%s.AAAA", ok);
    refused(t, "three base64url parts", __LINE__);
    /* Padding, which JWS forbids, on each part. */
    snprintf(t, n + 16, "%.*s=%s", (int)p1, ok, ok + p1);
    refused(t, "base64url", __LINE__);
    snprintf(t, n + 16, "%s=", ok);
    refused(t, "base64url", __LINE__);
    /* base64 (not url) characters and whitespace. */
    snprintf(t, n + 16, "%s", ok);
    t[p1 + 3] = '+';
    refused(t, "base64url", __LINE__);
    snprintf(t, n + 16, "%s", ok);
    t[p2 + 3] = '/';
    refused(t, "base64url", __LINE__);
    snprintf(t, n + 16, " %s", ok);
    refused(t, "base64url", __LINE__);
    snprintf(t, n + 16, "%s\n", ok);
    refused(t, "base64url", __LINE__);
    /* A part whose length leaves a lone character. */
    snprintf(t, n + 16, "%.*sA%s", (int)p1, ok, ok + p1);
    refused(t, "base64url", __LINE__);
    /* The 32-byte HMAC takes 43 characters, the last one carrying 4 bits and 2 unused bits
     * that must be zero: setting them gives the same bytes to a lenient decoder, a different
     * token here. */
    REQUIRE(n - p2 - 1 == 43);
    snprintf(t, n + 16, "%s", ok);
    {
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *at = strchr(alphabet, t[n - 1]);
        REQUIRE(at != NULL);
        int v = (int)(at - alphabet);
        CHECK((v & 3) == 0);
        t[n - 1] = alphabet[v | 1];
        refused(t, "base64url", __LINE__);
    }
    /* Signature cut or emptied. */
    snprintf(t, n + 16, "%.*s", (int)(n - 4), ok);
    refused(t, "signature does not verify", __LINE__);
    snprintf(t, n + 16, "%.*s", (int)(p2 + 1), ok);
    refused(t, "signature does not verify", __LINE__);
    /* Oversized: a valid token followed by junk, and one just over the limit. */
    memset(t, 'A', AUTH_MAX_TOKEN + 1);
    t[AUTH_MAX_TOKEN + 1] = '\0';
    memcpy(t, ok, n);
    refused(t, "longer than", __LINE__);
    memset(t, 'A', AUTH_MAX_TOKEN * 2);
    t[AUTH_MAX_TOKEN * 2] = '\0';
    refused(t, "longer than", __LINE__);
    /* NULL token. */
    {
        char err[128];
        struct auth_grant g;
        struct auth *a = auth_named("hs");
        REQUIRE(a != NULL);
        CHECK_INT(auth_check(a, NULL, NOW_MS, &g, err, sizeof err), AUTH_INVALID);
        /* The same token accepted at NOW is refused an hour and a minute later. */
        CHECK_INT(auth_check(a, ok, NOW_MS, &g, err, sizeof err), AUTH_OK);
        auth_grant_dispose(&g);
        CHECK_INT(auth_check(a, ok, NOW_MS + 3600000 + 29999, &g, err, sizeof err), AUTH_OK);
        auth_grant_dispose(&g);
        CHECK_INT(auth_check(a, ok, NOW_MS + 3600000 + 30000, &g, err, sizeof err), AUTH_INVALID);
        CHECK(strstr(err, "expired") != NULL);
        auth_free(a);
    }
    free(t);
    free(ok);
}

static void test_keys(void)
{
    struct config_auth cfg;
    char err[512];
    char path[4200];
    struct auth *a;

    memset(&cfg, 0, sizeof cfg);
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "off") != NULL);
    CHECK(auth_new(NULL, err, sizeof err) == NULL);

    config_named("hs", &cfg);
    cfg.secret = "0123456789abcdef0123456789abcde"; /* 31 bytes */
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "32 bytes") != NULL);
    CHECK(strstr(err, "0123456789abcdef") == NULL); /* never the secret */
    cfg.secret = NULL;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);

    config_named("rs", &cfg);
    cfg.public_key_file = "/nonexistent/key.pem";
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "cannot be read") != NULL);
    cfg.public_key_file = NULL;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    cfg.public_key_file = ec_pub;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "RSA key") != NULL);
    path_of(path, sizeof path, "keys/rsa1024_public.pem");
    cfg.public_key_file = path;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "1024 bits") != NULL);
    path_of(path, sizeof path, "keys/rsa_private.pem");
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "no public key") != NULL);
    path_of(path, sizeof path, "cases.txt");
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    cfg.public_key_file = rsa_cert;
    a = auth_new(&cfg, err, sizeof err);
    CHECK(a != NULL);
    auth_free(a);

    config_named("es", &cfg);
    cfg.public_key_file = rsa_pub;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "P-256") != NULL);
    path_of(path, sizeof path, "keys/ec384_public.pem");
    cfg.public_key_file = path;
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "P-256") != NULL);
    path_of(path, sizeof path, "keys/ec_private.pem");
    CHECK(auth_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "no public key") != NULL);

    auth_free(NULL);
}

/* A custom claim name, leeway 0 and a config without claim (the default name). */
static void test_options(void)
{
    struct config_auth cfg;
    char err[256];
    struct auth_grant g;
    char *t = read_token("hs_expired_in_leeway");
    REQUIRE(t != NULL);
    config_named("hs", &cfg);
    cfg.leeway_ms = 0;
    struct auth *a = auth_new(&cfg, err, sizeof err);
    REQUIRE(a != NULL);
    CHECK_INT(auth_check(a, t, NOW_MS, &g, err, sizeof err), AUTH_INVALID);
    CHECK(strstr(err, "expired") != NULL);
    auth_free(a);
    free(t);

    t = read_token("hs_ok");
    REQUIRE(t != NULL);
    config_named("hs", &cfg);
    cfg.claim = "scope";
    a = auth_new(&cfg, err, sizeof err);
    REQUIRE(a != NULL);
    /* Without the claim the token is valid and grants nothing (403 at the HTTP front). */
    CHECK_INT(auth_check(a, t, NOW_MS, &g, err, sizeof err), AUTH_OK);
    CHECK(!auth_grant_allows_stream(&g, "prices"));
    CHECK(!auth_grant_allows_url(&g, "http://localhost/"));
    auth_grant_dispose(&g);
    auth_free(a);
    cfg.claim = NULL;
    a = auth_new(&cfg, err, sizeof err);
    REQUIRE(a != NULL);
    CHECK_INT(auth_check(a, t, NOW_MS, &g, err, sizeof err), AUTH_OK);
    auth_grant_dispose(&g);
    auth_free(a);
    free(t);
}

static void test_token_sources(void)
{
    char out[AUTH_MAX_TOKEN + 1];
    const char *tok = "aaa.bbb.ccc";
    CHECK_INT(auth_token_from_request(NULL, NULL, NULL, NULL, out, sizeof out), 0);
    CHECK_INT(auth_token_from_request("Bearer aaa.bbb.ccc", NULL, NULL, NULL, out, sizeof out), 1);
    CHECK_STR(out, tok);
    CHECK_INT(auth_token_from_request("bEaReR   aaa.bbb.ccc  ", NULL, NULL, NULL, out, sizeof out),
              1);
    CHECK_STR(out, tok);
    CHECK_INT(auth_token_from_request("Bearer", NULL, NULL, NULL, out, sizeof out), 0);
    CHECK_INT(auth_token_from_request("Bearer ", NULL, NULL, NULL, out, sizeof out), -1);
    CHECK_INT(auth_token_from_request("Bearer a b", NULL, NULL, NULL, out, sizeof out), -1);
    CHECK_INT(auth_token_from_request("Bearer aaa.bbb.ccc=", NULL, NULL, NULL, out, sizeof out),
              -1);
    CHECK_INT(auth_token_from_request("Bearer aaa\r\n.bbb", NULL, NULL, NULL, out, sizeof out), -1);
    CHECK_INT(auth_token_from_request("Bearerx aaa", NULL, NULL, NULL, out, sizeof out), 0);
    /* Another scheme is not ours: the other sources are looked at. */
    CHECK_INT(auth_token_from_request("Basic dXNlcjpwYXNz", "q.q.q", NULL, NULL, out, sizeof out),
              1);
    CHECK_STR(out, "q.q.q");
    /* The header comes first. */
    CHECK_INT(auth_token_from_request("Bearer h.h.h", "q.q.q", "pollcast_token=c.c.c",
                                      "pollcast_token", out, sizeof out),
              1);
    CHECK_STR(out, "h.h.h");
    CHECK_INT(auth_token_from_request(NULL, "", "pollcast_token=c.c.c", "pollcast_token", out,
                                      sizeof out),
              1);
    CHECK_STR(out, "c.c.c");
    CHECK_INT(auth_token_from_request(NULL, "q q", NULL, NULL, out, sizeof out), -1);
    /* Cookies. */
    CHECK_INT(auth_token_from_request(NULL, NULL, "a=1; pollcast_token=\"c.c.c\"; b=2",
                                      "pollcast_token", out, sizeof out),
              1);
    CHECK_STR(out, "c.c.c");
    CHECK_INT(auth_token_from_request(NULL, NULL, "xpollcast_token=x.x.x; pollcast_tokenx=y.y.y",
                                      "pollcast_token", out, sizeof out),
              0);
    CHECK_INT(auth_token_from_request(NULL, NULL, "junk;;; ;pollcast_token = d.d.d ;",
                                      "pollcast_token", out, sizeof out),
              1);
    CHECK_STR(out, "d.d.d");
    CHECK_INT(
        auth_token_from_request(NULL, NULL, "pollcast_token=", "pollcast_token", out, sizeof out),
        -1);
    CHECK_INT(auth_token_from_request(NULL, NULL, "pollcast_token=a%20b", "pollcast_token", out,
                                      sizeof out),
              -1);
    CHECK_INT(auth_token_from_request(NULL, NULL, "pollcast_token=e.e.e", "", out, sizeof out), 0);
    /* The first cookie of that name counts. */
    CHECK_INT(auth_token_from_request(NULL, NULL, "pollcast_token=f.f.f; pollcast_token=g.g.g",
                                      "pollcast_token", out, sizeof out),
              1);
    CHECK_STR(out, "f.f.f");
    /* Only the first 512 pairs are looked at. */
    {
        size_t cap = 600 * 8 + 64;
        char *h = malloc(cap);
        REQUIRE(h != NULL);
        size_t len = 0;
        for (int i = 0; i < 600; i++)
            len += (size_t)snprintf(h + len, cap - len, "k%03d=v; ", i);
        snprintf(h + len, cap - len, "pollcast_token=z.z.z");
        CHECK_INT(auth_token_from_request(NULL, NULL, h, "pollcast_token", out, sizeof out), 0);
        free(h);
    }
    /* Lengths. */
    {
        char small[6];
        CHECK_INT(auth_token_from_request("Bearer abcde", NULL, NULL, NULL, small, sizeof small),
                  1);
        CHECK_INT(auth_token_from_request("Bearer abcdef", NULL, NULL, NULL, small, sizeof small),
                  -1);
        char *big = malloc(AUTH_MAX_TOKEN + 64);
        REQUIRE(big != NULL);
        memcpy(big, "Bearer ", 7);
        memset(big + 7, 'a', AUTH_MAX_TOKEN + 1);
        big[7 + AUTH_MAX_TOKEN + 1] = '\0';
        CHECK_INT(auth_token_from_request(big, NULL, NULL, NULL, out, sizeof out), -1);
        big[7 + AUTH_MAX_TOKEN] = '\0';
        CHECK_INT(auth_token_from_request(big, NULL, NULL, NULL, out, sizeof out), 1);
        CHECK_INT(strlen(out), AUTH_MAX_TOKEN);
        free(big);
    }
}

static void test_now(void)
{
    uint64_t t = auth_now_ms();
    CHECK(t > 1700000000000ull);
    CHECK(t < 4102444800000ull);
}

int main(void)
{
    const char *src = getenv("POLLCAST_SRC");
    snprintf(data_dir, sizeof data_dir, "%s/tests/data/auth", src ? src : ".");
    char path[4200];
    path_of(path, sizeof path, "hs256.secret");
    char *s = harness_slurp(path, NULL);
    if (s == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    snprintf(secret, sizeof secret, "%s", s);
    free(s);
    path_of(rsa_pub, sizeof rsa_pub, "keys/rsa_public.pem");
    path_of(rsa_cert, sizeof rsa_cert, "keys/rsa_cert.pem");
    path_of(ec_pub, sizeof ec_pub, "keys/ec_public.pem");

    RUN(test_cases_table);
    RUN(test_grants);
    RUN(test_malformed);
    RUN(test_keys);
    RUN(test_options);
    RUN(test_token_sources);
    RUN(test_now);
    return harness_report("test_auth");
}

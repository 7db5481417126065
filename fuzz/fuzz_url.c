/* Fuzzes the SSRF guard: URL normalization must be idempotent and its output canonical (http or
 * https, no userinfo, no fragment, no dot segment, only allowed bytes, IP literals in their
 * canonical text); allow-rule matching and the literal check must not crash; and the address
 * policy must judge IPv4-mapped, NAT64 and 6to4 forms as it judges their IPv4 address. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "fuzz.h"
#include "ssrf.h"

static const char *const prefixes[] = {"https://api.example.com/", "http://10.0.0.5:8080/v1",
                                       "http://[::1]/x/", "https://q.example.com/s?k=", NULL};
static struct config_cidr cidrs[2];
static struct config_cidr_list allow = {.items = cidrs, .n = 2};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cidrs[0].family = AF_INET;
    cidrs[0].prefix = 8;
    cidrs[0].addr[0] = 10;
    cidrs[1].family = AF_INET6;
    cidrs[1].prefix = 8;
    cidrs[1].addr[0] = 0xfd;
    return 0;
}

/* Checks the shape of a canonical URL. */
static void check_canonical(const char *u)
{
    size_t skip;
    if (strncmp(u, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(u, "https://", 8) == 0)
        skip = 8;
    else
        FUZZ_ASSERT(!"canonical URLs are http or https");
    const char *h = u + skip;
    size_t auth = strcspn(h, "/?");
    FUZZ_ASSERT(h[auth] == '/'); /* a path always follows the authority */
    FUZZ_ASSERT(memchr(h, '@', auth) == NULL);
    FUZZ_ASSERT(strchr(u, '#') == NULL && strchr(u, '\\') == NULL);
    for (const char *p = u; *p; p++)
        FUZZ_ASSERT(*p > 0x20 && *p < 0x7f);
    for (size_t i = 0; i < auth; i++)
        FUZZ_ASSERT(!(h[i] >= 'A' && h[i] <= 'Z'));
    /* No dot segment is left in the path. */
    const char *path = h + auth, *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    for (size_t i = 0; i < plen; i++) {
        if (path[i] != '/')
            continue;
        size_t n = strcspn(path + i + 1, "/?");
        if (i + 1 + n > plen)
            n = plen - i - 1;
        FUZZ_ASSERT(!(n == 1 && path[i + 1] == '.'));
        FUZZ_ASSERT(!(n == 2 && path[i + 1] == '.' && path[i + 2] == '.'));
    }
    /* An IP literal is in its canonical text. */
    char host[64];
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        FUZZ_ASSERT(close != NULL && (size_t)(close - h - 1) < sizeof host);
        memcpy(host, h + 1, (size_t)(close - h - 1));
        host[close - h - 1] = '\0';
        struct in6_addr a6;
        char again[INET6_ADDRSTRLEN];
        FUZZ_ASSERT(inet_pton(AF_INET6, host, &a6) == 1);
        FUZZ_ASSERT(inet_ntop(AF_INET6, &a6, again, sizeof again) != NULL);
        FUZZ_ASSERT(strcmp(again, host) == 0);
    }
}

/* The policy on v4, and on the IPv6 forms that carry it, must agree. */
static void check_addresses(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    memset(&s4, 0, sizeof s4);
    memset(&s6, 0, sizeof s6);
    s4.sin_family = AF_INET;
    memcpy(&s4.sin_addr, data, 4);
    s6.sin6_family = AF_INET6;
    char why[160];
    for (int with = 0; with < 2; with++) {
        const struct config_cidr_list *al = with ? &allow : NULL;
        bool v4 = ssrf_addr_allowed((struct sockaddr *)&s4, sizeof s4, al, why, sizeof why);
        /* ::ffff:a.b.c.d */
        memset(&s6.sin6_addr, 0, 16);
        s6.sin6_addr.s6_addr[10] = s6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(s6.sin6_addr.s6_addr + 12, data, 4);
        FUZZ_ASSERT(ssrf_addr_allowed((struct sockaddr *)&s6, sizeof s6, al, why, sizeof why) ==
                    v4);
        bool plain = ssrf_addr_allowed((struct sockaddr *)&s4, sizeof s4, NULL, why, sizeof why);
        /* 64:ff9b::a.b.c.d and 2002:AABB:CCDD:: are refused when the IPv4 address is not
         * public, whatever the exceptions (they only open mapped forms). */
        static const uint8_t nat64[4] = {0x00, 0x64, 0xff, 0x9b};
        memset(&s6.sin6_addr, 0, 16);
        memcpy(s6.sin6_addr.s6_addr, nat64, 4);
        memcpy(s6.sin6_addr.s6_addr + 12, data, 4);
        bool n64 = ssrf_addr_allowed((struct sockaddr *)&s6, sizeof s6, al, why, sizeof why);
        FUZZ_ASSERT(plain ? n64 : !n64);
        memset(&s6.sin6_addr, 0, 16);
        s6.sin6_addr.s6_addr[0] = 0x20;
        s6.sin6_addr.s6_addr[1] = 0x02;
        memcpy(s6.sin6_addr.s6_addr + 2, data, 4);
        if (size >= 16)
            memcpy(s6.sin6_addr.s6_addr + 6, data + 6, 10);
        bool six = ssrf_addr_allowed((struct sockaddr *)&s6, sizeof s6, al, why, sizeof why);
        FUZZ_ASSERT(plain ? six : !six);
    }
    if (size >= 16) {
        memcpy(&s6.sin6_addr, data, 16);
        ssrf_addr_allowed((struct sockaddr *)&s6, sizeof s6, &allow, why, sizeof why);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_addresses(data, size);
    if (size > SSRF_MAX_URL + 16)
        return 0;
    char *text = malloc(size + 1);
    FUZZ_ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    char err[256], err2[256];
    if (ssrf_normalize_url(text, &a, err, sizeof err) == 0) {
        check_canonical(a.data);
        if (ssrf_normalize_url(a.data, &b, err2, sizeof err2) != 0)
            fprintf(stderr, "%s -> %s: %s\n", text, a.data, err2);
        FUZZ_ASSERT(b.len == a.len && memcmp(a.data, b.data, a.len) == 0);
        bool allowed = ssrf_url_allowed(a.data, prefixes);
        for (const char *const *p = prefixes; *p; p++)
            if (strncmp(a.data, *p, strlen(*p)) == 0 && a.data[strlen(*p)] == '\0')
                FUZZ_ASSERT(allowed);
        char why[160];
        ssrf_check_literal(a.data, &allow, why, sizeof why);
    } else {
        FUZZ_ASSERT(a.len == 0 && err[0] != '\0');
    }
    buf_dispose(&a);
    buf_dispose(&b);
    free(text);
    return 0;
}

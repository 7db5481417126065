/* Tests of ssrf.c: URL normalization (tricks with IPv4 forms, IPv6, userinfo, escapes, dot
 * segments), its idempotence, prefix matching at path boundaries, the address classes, the
 * [allow] cidr exceptions, and the policy installed on a real upstream pool. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "buf.h"
#include "config.h"
#include "harness.h"
#include "loop.h"
#include "ssrf.h"
#include "upstream.h"

/* Each case: an input and the canonical URL, or "!" and a fragment of the error message. */
struct norm_case {
    const char *in;
    const char *want;
};

static const struct norm_case norm_cases[] = {
    /* case, default ports, empty path */
    {"http://example.com", "http://example.com/"},
    {"HTTP://EXAMPLE.COM:80/A/B", "http://example.com/A/B"},
    {"https://Example.com:443", "https://example.com/"},
    {"hTTpS://example.com:80/", "https://example.com:80/"},
    {"http://example.com:443/", "http://example.com:443/"},
    {"https://example.com:8443/x", "https://example.com:8443/x"},
    {"http://example.com:/x", "http://example.com/x"},
    {"http://example.com:0080/", "http://example.com/"},
    {"http://example.com?x", "http://example.com/?x"},
    {"http://example.com/?", "http://example.com/?"},
    {"http://example.com/#frag", "http://example.com/"},
    {"http://example.com/a?b#c?d", "http://example.com/a?b"},
    {"http://evil.com#@example.com/", "http://evil.com/"},
    {"https://ex_ample.com/", "https://ex_ample.com/"},
    {"http://xn--exmple-cua.COM/", "http://xn--exmple-cua.com/"},
    {"http://1e3.com/", "http://1e3.com/"},
    {"http://127.0.0.1.nip.io/", "http://127.0.0.1.nip.io/"},
    /* IPv4 in every inet_aton form */
    {"http://2130706433/", "http://127.0.0.1/"},
    {"http://0x7f.1/", "http://127.0.0.1/"},
    {"http://0177.0.0.1/", "http://127.0.0.1/"},
    {"http://127.1/", "http://127.0.0.1/"},
    {"http://127.0.1/", "http://127.0.0.1/"},
    {"http://0x7F000001/", "http://127.0.0.1/"},
    {"http://017700000001/", "http://127.0.0.1/"},
    {"http://0X7f.0.0.0x1:8080/", "http://127.0.0.1:8080/"},
    {"http://0/", "http://0.0.0.0/"},
    {"http://169.254.43518/", "http://169.254.169.254/"},
    {"http://0xA9FEA9FE/", "http://169.254.169.254/"},
    {"http://1.2.65535/", "http://1.2.255.255/"},
    {"http://0000000000000000000012.1/", "http://10.0.0.1/"},
    {"http://1.2.3.4.5/", "!valid IPv4"},
    {"http://256.0.0.1/", "!valid IPv4"},
    {"http://127.0.0.08/", "!valid IPv4"},
    {"http://4294967296/", "!valid IPv4"},
    {"http://0x100000000/", "!valid IPv4"},
    {"http://1.2.65536/", "!valid IPv4"},
    {"http://99999999999999999999999/", "!valid IPv4"},
    {"http://0x/", "!valid IPv4"},
    {"http://a.0x/", "!valid IPv4"},
    {"http://example.123/", "!valid IPv4"},
    {"http://0x7g.1/", "!valid IPv4"},
    /* IPv6 */
    {"http://[::1]/", "http://[::1]/"},
    {"http://[0:0:0:0:0:0:0:1]:8080/", "http://[::1]:8080/"},
    {"http://[::FFFF:127.0.0.1]/", "http://[::ffff:127.0.0.1]/"},
    {"http://[::ffff:7f00:1]/", "http://[::ffff:127.0.0.1]/"},
    {"http://[2001:DB8:0::1]/", "http://[2001:db8::1]/"},
    {"https://[2001:db8::1]:443/", "https://[2001:db8::1]/"},
    {"http://[fe80::1%25eth0]/", "!zone id"},
    {"http://[v1.x]/", "!IPvFuture"},
    {"http://[::1/", "!closing bracket"},
    {"http://[::1]x/", "!after its IPv6 host"},
    {"http://[1.2.3.4]/", "!invalid IPv6"},
    {"http://[]/", "!empty IPv6"},
    {"http://[::1::2]/", "!invalid IPv6"},
    /* userinfo, backslashes, schemes, bytes */
    {"http://user@example.com/", "!user information"},
    {"http://user:pass@example.com/", "!user information"},
    {"http://example.com@evil.com/", "!user information"},
    {"http://@example.com/", "!user information"},
    {"http://evil.com\\@example.com/", "!backslash"},
    {"http://example.com/a\\b", "!backslash"},
    {"http:\\\\example.com/", "!backslash"},
    {"http:/example.com/", "!\"//\""},
    {"http:example.com", "!\"//\""},
    {"http:", "!\"//\""},
    {"//example.com/", "!not an absolute URL"},
    {"example.com/", "!not an absolute URL"},
    {"", "!not an absolute URL"},
    {"ftp://example.com/", "!only http and https"},
    {"javascript:alert(1)", "!only http and https"},
    {"file:///etc/passwd", "!only http and https"},
    {"gopher://127.0.0.1:6379/_x", "!only http and https"},
    {"httpx://example.com/", "!only http and https"},
    {"http://exa mple.com/", "!space or a control"},
    {"http://example.com/\r\nX: y", "!space or a control"},
    {" http://example.com/", "!space or a control"},
    {"http://example.com/\t", "!space or a control"},
    {"http://example.com/\x7f", "!space or a control"},
    {"http://ex\xc3\xa4mple.com/", "!non-ASCII"},
    {"http://example.com/\xff", "!non-ASCII"},
    /* hosts */
    {"http://example.com./", "!ends with a dot"},
    {"http://.example.com/", "!empty label"},
    {"http://a..b/", "!empty label"},
    {"http:///x", "!no host"},
    {"http://:80/", "!no host"},
    {"http://?x", "!no host"},
    {"http://ex%61mple.com/", "!may only hold"},
    {"http://exa!mple.com/", "!may only hold"},
    {"http://a.b~c/", "!may only hold"},
    {"http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/", "!63"},
    /* ports */
    {"http://example.com:65535/", "http://example.com:65535/"},
    {"http://example.com:65536/", "!beyond 65535"},
    {"http://example.com:99999999999999999999/", "!beyond 65535"},
    {"http://example.com:0/", "!port 0"},
    {"http://example.com:000/", "!port 0"},
    {"http://example.com:-1/", "!invalid port"},
    {"http://example.com:8o/", "!invalid port"},
    {"http://example.com:80:80/", "!invalid port"},
    {"http://[::1]:/", "http://[::1]/"},
    /* dot segments */
    {"http://example.com/a/./b/../c", "http://example.com/a/c"},
    {"http://example.com/a/b/..", "http://example.com/a/"},
    {"http://example.com/a/b/.", "http://example.com/a/b/"},
    {"http://example.com/..", "http://example.com/"},
    {"http://example.com/.", "http://example.com/"},
    {"http://example.com/../../etc/passwd", "http://example.com/etc/passwd"},
    {"http://example.com/v1/../admin", "http://example.com/admin"},
    {"http://example.com/v1//../admin", "http://example.com/v1/admin"},
    {"http://example.com/v1/..?x=/../", "http://example.com/?x=/../"},
    {"http://example.com/v1/%2e%2e/admin", "!dot segment"},
    {"http://example.com/v1/%2E./admin", "!dot segment"},
    {"http://example.com/v1/.%2e", "!dot segment"},
    {"http://example.com/v1/%2e/x", "!dot segment"},
    {"http://example.com/v1/..%2fadmin", "!dot segment"},
    {"http://example.com/v1/..%2Fadmin", "!dot segment"},
    {"http://example.com/v1/x%2f..%2fadmin", "!dot segment"},
    {"http://example.com/v1/..%5Cadmin", "!dot segment"},
    {"http://example.com/v1/..;/admin", "!dot segment"},
    {"http://example.com/v1/.;x/admin", "!dot segment"},
    {"http://example.com/v1/%2e%2e%3bx/admin", "!dot segment"},
    {"http://example.com/a/%2e%2e%2f", "!dot segment"},
    {"http://example.com/v1/a%2e", "http://example.com/v1/a."},
    {"http://example.com/v1/...", "http://example.com/v1/..."},
    {"http://example.com/v1/.%2e%2e", "http://example.com/v1/..."},
    {"http://example.com/v1/..a", "http://example.com/v1/..a"},
    {"http://example.com/v1/a;..", "http://example.com/v1/a;.."},
    /* escapes */
    {"http://example.com/%7euser/%41%2fb", "http://example.com/~user/A%2Fb"},
    {"http://example.com/a%2fb", "http://example.com/a%2Fb"},
    {"http://EXAMPLE.com/A%3a", "http://example.com/A%3A"},
    {"http://example.com/%00", "http://example.com/%00"},
    {"http://example.com/%zz", "!percent-escape"},
    {"http://example.com/%4", "!percent-escape"},
    {"http://example.com/a%", "!percent-escape"},
    {"http://example.com/?q=%g0", "!percent-escape"},
    {"http://example.com/{x}|y^`\"<>", "http://example.com/%7Bx%7D%7Cy%5E%60%22%3C%3E"},
    {"http://example.com/q?a=1&b=[2]&c=%2e%2E/../", "http://example.com/q?a=1&b=%5B2%5D&c=../../"},
    {"http://example.com/p:@!$&'()*+,;=-._~", "http://example.com/p:@!$&'()*+,;=-._~"},
    {"http://example.com//a", "http://example.com//a"},
};

static void test_normalize(void)
{
    char err[256];
    struct buf out, again;
    buf_init(&out, 0);
    buf_init(&again, 0);
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const struct norm_case *c = &norm_cases[i];
        buf_truncate(&out, 0);
        err[0] = '\0';
        int rc = ssrf_normalize_url(c->in, &out, err, sizeof err);
        if (c->want[0] == '!') {
            bool pass = rc == -1 && strstr(err, c->want + 1) != NULL && out.len == 0;
            if (!pass)
                fprintf(stderr, "case %zu \"%s\": rc %d, out \"%s\", err \"%s\", want %s\n", i,
                        c->in, rc, out.data ? out.data : "", err, c->want);
            CHECK(pass);
            continue;
        }
        if (rc != 0)
            fprintf(stderr, "case %zu \"%s\": %s\n", i, c->in, err);
        CHECK_INT(rc, 0);
        CHECK_STR(out.data ? out.data : "", c->want);
        /* A fixed point. */
        buf_truncate(&again, 0);
        CHECK_INT(ssrf_normalize_url(c->want, &again, err, sizeof err), 0);
        CHECK_STR(again.data ? again.data : "", c->want);
    }
    buf_dispose(&out);
    buf_dispose(&again);
}

static void test_normalize_bounds(void)
{
    char err[256];
    struct buf out;
    buf_init(&out, 0);
    /* The entry length of out is kept on failure, the canonical text appended on success. */
    buf_puts(&out, "key:");
    CHECK_INT(ssrf_normalize_url("http://user@x/", &out, err, sizeof err), -1);
    CHECK_STR(out.data, "key:");
    CHECK_INT(ssrf_normalize_url("http://X/", &out, err, sizeof err), 0);
    CHECK_STR(out.data, "key:http://x/");

    /* Longest accepted URL and one byte more. */
    char *u = malloc(SSRF_MAX_URL + 2);
    REQUIRE(u != NULL);
    memcpy(u, "http://h/", 9);
    memset(u + 9, 'a', SSRF_MAX_URL - 9);
    u[SSRF_MAX_URL] = '\0';
    buf_truncate(&out, 0);
    CHECK_INT(ssrf_normalize_url(u, &out, err, sizeof err), 0);
    CHECK_INT(out.len, SSRF_MAX_URL);
    u[SSRF_MAX_URL] = 'a';
    u[SSRF_MAX_URL + 1] = '\0';
    CHECK_INT(ssrf_normalize_url(u, &out, err, sizeof err), -1);
    CHECK(strstr(err, "longer than") != NULL);
    /* A URL under the limit whose canonical form is over it (each '"' becomes "%22") is refused,
     * so that the canonical form of anything accepted normalises to itself (found by fuzz_url). */
    memset(u + 9, 'a', SSRF_MAX_URL - 9);
    u[SSRF_MAX_URL - 1] = '\0';
    memset(u + SSRF_MAX_URL - 11, '"', 10);
    buf_truncate(&out, 0);
    CHECK_INT(ssrf_normalize_url(u, &out, err, sizeof err), -1);
    CHECK(strstr(err, "once normalised") != NULL);
    CHECK_INT(out.len, 0);
    /* With room for the escapes it is accepted, and its canonical form is a fixed point. */
    memset(u + 9, 'a', SSRF_MAX_URL - 9);
    memset(u + SSRF_MAX_URL - 30, '"', 10);
    u[SSRF_MAX_URL - 20] = '\0';
    CHECK_INT(ssrf_normalize_url(u, &out, err, sizeof err), 0);
    CHECK_INT(out.len, SSRF_MAX_URL);
    struct buf again;
    buf_init(&again, 0);
    CHECK_INT(ssrf_normalize_url(out.data, &again, err, sizeof err), 0);
    CHECK_STR(again.data, out.data);
    buf_dispose(&again);
    /* Deep dot segments: every ".." resolves, none escapes the root. */
    size_t n = 9;
    for (int i = 0; i < 2000 && n + 3 < SSRF_MAX_URL; i++, n += 3)
        memcpy(u + n, "../", 3);
    u[n] = '\0';
    buf_truncate(&out, 0);
    CHECK_INT(ssrf_normalize_url(u, &out, err, sizeof err), 0);
    CHECK_STR(out.data, "http://h/");
    /* Escapes triple the length of what is encoded; a bounded buffer refuses cleanly. */
    struct buf small;
    buf_init(&small, 16);
    CHECK_INT(ssrf_normalize_url("http://example.com/{}{}{}", &small, err, sizeof err), -1);
    CHECK_INT(small.len, 0);
    buf_dispose(&small);
    free(u);
    buf_dispose(&out);
}

static void test_url_allowed(void)
{
    char *items[] = {"HTTPS://API.EXAMPLE.COM:443/", "https://data.example.com/v1",
                     "http://10.0.0.5:8080/feeds/",
                     "https://q.example.com/search?key=", "http://[::ffff:10.0.0.9]/x/"};
    struct config_list list = {.items = items, .n = sizeof items / sizeof items[0]};
    char err[256];
    char **pre = ssrf_prefixes_new(&list, err, sizeof err);
    REQUIRE(pre != NULL);
    CHECK_STR(pre[0], "https://api.example.com/");
    CHECK_STR(pre[4], "http://[::ffff:10.0.0.9]/x/");
    CHECK(pre[5] == NULL);
    const char *const *p = (const char *const *)pre;
    static const struct {
        const char *url;
        bool want;
    } cases[] = {
        {"https://api.example.com/x", true},
        {"https://api.example.com", true},
        {"HTTPS://api.EXAMPLE.com:443/x?y", true},
        {"https://api.example.com.evil.net/x", false},
        {"https://api.example.com:8443/x", false},
        {"http://api.example.com/x", false},
        {"https://api.example.co/", false},
        {"https://evil.net/https://api.example.com/", false},
        {"https://data.example.com/v1", true},
        {"https://data.example.com/v1/x", true},
        {"https://data.example.com/v1?x", true},
        {"https://data.example.com/v1/../v2", false},
        {"https://data.example.com/v10", false},
        {"https://data.example.com/v1.json", false},
        {"https://data.example.com/v", false},
        {"https://data.example.com/V1", false},
        {"https://data.example.com/", false},
        {"http://10.0.0.5:8080/feeds/a", true},
        {"http://167772165:8080/feeds/a", true},
        {"http://012.0.0.5:8080/feeds/a", true},
        {"http://10.0.0.5:8080/feeds/../admin", false},
        {"http://10.0.0.5:8080/feeds", false},
        {"http://10.0.0.5/feeds/a", false},
        {"https://q.example.com/search?key=abc", true},
        {"https://q.example.com/search?ke", false},
        {"https://q.example.com/search", false},
        {"http://[::ffff:a00:9]/x/y", true},
        {"http://10.0.0.9/x/y", false},
    };
    struct buf canon;
    buf_init(&canon, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_truncate(&canon, 0);
        bool got = ssrf_normalize_url(cases[i].url, &canon, err, sizeof err) == 0 &&
                   ssrf_url_allowed(canon.data, p);
        if (got != cases[i].want)
            fprintf(stderr, "allow case %s: got %d\n", cases[i].url, got);
        CHECK(got == cases[i].want);
    }
    buf_dispose(&canon);
    /* A prefix given without a path still ends at the host. */
    const char *raw[] = {"https://api.example.com", NULL};
    CHECK(!ssrf_url_allowed("https://api.example.com.evil.net/", raw));
    CHECK(!ssrf_url_allowed("https://api.example.com:8443/", raw));
    CHECK(ssrf_url_allowed("https://api.example.com/", raw));
    CHECK(!ssrf_url_allowed("https://api.example.com/", NULL));
    CHECK(!ssrf_url_allowed(NULL, p));
    const char *empty[] = {"", NULL};
    CHECK(!ssrf_url_allowed("https://api.example.com/", empty));
    ssrf_prefixes_free(pre);

    char *bad[] = {"https://api.example.com/", "https://user@api.example.com/"};
    struct config_list badlist = {.items = bad, .n = 2};
    CHECK(ssrf_prefixes_new(&badlist, err, sizeof err) == NULL);
    CHECK(strstr(err, "url_prefix") != NULL && strstr(err, "user information") != NULL);
    pre = ssrf_prefixes_new(NULL, err, sizeof err);
    REQUIRE(pre != NULL);
    CHECK(pre[0] == NULL);
    ssrf_prefixes_free(pre);
    ssrf_prefixes_free(NULL);
}

/* Fills ss with the numeric address text. */
static socklen_t sockaddr_of(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(80);
        return sizeof *s4;
    }
    if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(80);
        return sizeof *s6;
    }
    return 0;
}

/* Address, then NULL when it must be allowed or a fragment of the refusal. */
static const struct {
    const char *addr;
    const char *why;
} addr_cases[] = {
    {"127.0.0.1", "address 127.0.0.1 is loopback"},
    {"127.255.255.254", "loopback"},
    {"10.0.0.5", "address 10.0.0.5 is private"},
    {"172.16.0.1", "private"},
    {"172.31.255.255", "private"},
    {"192.168.1.1", "private"},
    {"169.254.169.254", "address 169.254.169.254 is link-local (cloud metadata)"},
    {"169.254.1.1", "link-local"},
    {"100.64.0.1", "carrier-grade NAT"},
    {"100.127.255.255", "carrier-grade NAT"},
    {"0.0.0.0", "unspecified"},
    {"0.1.2.3", "unspecified"},
    {"255.255.255.255", "broadcast"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"240.0.0.1", "reserved"},
    {"192.0.0.1", "reserved"},
    {"192.0.2.1", "documentation"},
    {"198.18.0.1", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"198.51.100.1", "documentation"},
    {"203.0.113.1", "documentation"},
    {"192.88.99.1", "reserved"},
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"93.184.216.34", NULL},
    {"11.0.0.1", NULL},
    {"172.15.255.255", NULL},
    {"172.32.0.1", NULL},
    {"192.169.0.1", NULL},
    {"169.253.0.1", NULL},
    {"100.128.0.1", NULL},
    {"198.20.0.1", NULL},
    {"223.255.255.255", NULL},
    {"::1", "address ::1 is loopback"},
    {"::", "unspecified"},
    {"::ffff:127.0.0.1", "address ::ffff:127.0.0.1 embeds 127.0.0.1, which is loopback"},
    {"::ffff:10.0.0.1", "private"},
    {"::ffff:169.254.169.254", "cloud metadata"},
    {"::ffff:8.8.8.8", NULL},
    {"::127.0.0.1", "loopback"},
    {"::0.0.0.2", "unspecified"},
    {"::8.8.8.8", NULL},
    {"::ffff:0:127.0.0.1", "loopback"},
    {"64:ff9b::10.0.0.1", "private"},
    {"64:ff9b::8.8.8.8", NULL},
    {"64:ff9b:1::1", "local-use NAT64"},
    {"2002:7f00:1::1", "embeds 127.0.0.1, which is loopback"},
    {"2002:a9fe:a9fe::1", "cloud metadata"},
    {"2002:808:808::1", NULL},
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "embeds 192.0.2.45, which is for documentation"},
    {"2001:0:808:808::80ff:fffe", "embeds 127.0.0.1, which is loopback"},
    {"2001:0:a00:1::fefe:fefe", "embeds 10.0.0.1, which is private"},
    {"2001:0:808:808::fefe:fefe", NULL},
    {"fe80::1", "link-local"},
    {"febf::1", "link-local"},
    {"fec0::1", "site-local"},
    {"fc00::1", "unique-local"},
    {"fd00:ec2::254", "unique-local"},
    {"ff02::1", "multicast"},
    {"2001:db8::1", "documentation"},
    {"100::1", "discard-only"},
    {"2001:2::1", "benchmarking"},
    {"2001:10::1", "reserved"},
    {"3fff::1", "documentation"},
    {"5f00::1", "reserved"},
    {"4000::1", "reserved"},
    {"1::1", "reserved"},
    {"::2:0:0:1", "reserved"},
    {"2606:4700:4700::1111", NULL},
    {"2001:4860:4860::8888", NULL},
    {"2a00:1450::1", NULL},
    {"3ffe::1", NULL},
};

static void test_addr_classes(void)
{
    char why[160];
    struct sockaddr_storage ss;
    for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
        socklen_t sl = sockaddr_of(addr_cases[i].addr, &ss);
        REQUIRE(sl != 0);
        why[0] = '\0';
        bool ok = ssrf_addr_allowed((struct sockaddr *)&ss, sl, NULL, why, sizeof why);
        const char *want = addr_cases[i].why;
        bool pass = want == NULL ? ok : (!ok && strstr(why, want) != NULL);
        if (!pass)
            fprintf(stderr, "address %s: allowed %d, why \"%s\", want %s\n", addr_cases[i].addr, ok,
                    why, want ? want : "allowed");
        CHECK(pass);
        /* The upstream hook agrees. */
        CHECK_INT(ssrf_upstream_policy(NULL, (struct sockaddr *)&ss, sl, why, sizeof why),
                  ok ? 0 : -1);
    }
    /* Other families and short lengths are refused. */
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    CHECK(!ssrf_addr_allowed((struct sockaddr *)&un, sizeof un, NULL, why, sizeof why));
    CHECK(strstr(why, "family") != NULL);
    socklen_t sl = sockaddr_of("8.8.8.8", &ss);
    CHECK(ssrf_addr_allowed((struct sockaddr *)&ss, sl, NULL, why, sizeof why));
    CHECK(!ssrf_addr_allowed((struct sockaddr *)&ss, sl - 1, NULL, why, sizeof why));
    CHECK(!ssrf_addr_allowed(NULL, 0, NULL, why, sizeof why));
    CHECK(!ssrf_addr_allowed((struct sockaddr *)&un, sizeof un, NULL, NULL, 0));

    uint8_t v4[4];
    int emb = -1;
    uint8_t meta[4] = {169, 254, 169, 254};
    CHECK_STR(ssrf_addr_class(AF_INET, meta, &emb, v4), "link-local (cloud metadata)");
    CHECK_INT(emb, 0);
    struct in6_addr a6;
    inet_pton(AF_INET6, "2002:a00:1::", &a6);
    CHECK_STR(ssrf_addr_class(AF_INET6, a6.s6_addr, &emb, v4), "private");
    CHECK_INT(emb, 1);
    CHECK(v4[0] == 10 && v4[1] == 0 && v4[2] == 0 && v4[3] == 1);
    CHECK(ssrf_addr_class(AF_INET6, a6.s6_addr, NULL, NULL) != NULL);
    CHECK(ssrf_addr_class(AF_UNIX, a6.s6_addr, NULL, NULL) != NULL);
}

static int cidr_of(const char *text, unsigned prefix, struct config_cidr *c)
{
    memset(c, 0, sizeof *c);
    c->prefix = prefix;
    if (inet_pton(AF_INET, text, c->addr) == 1) {
        c->family = AF_INET;
        return 0;
    }
    c->family = AF_INET6;
    return inet_pton(AF_INET6, text, c->addr) == 1 ? 0 : -1;
}

static void test_cidr_exceptions(void)
{
    struct config_cidr items[4];
    REQUIRE(cidr_of("10.0.0.0", 8, &items[0]) == 0);
    REQUIRE(cidr_of("127.0.0.1", 32, &items[1]) == 0);
    REQUIRE(cidr_of("fd00::", 8, &items[2]) == 0);
    REQUIRE(cidr_of("169.254.0.0", 17, &items[3]) == 0);
    struct config_cidr_list allow = {.items = items, .n = 4};
    static const struct {
        const char *addr;
        bool want;
    } cases[] = {
        {"10.1.2.3", true},
        {"10.255.255.255", true},
        {"::ffff:10.1.2.3", true},
        {"::10.1.2.3", true},
        {"127.0.0.1", true},
        {"127.0.0.2", false},
        {"::1", false},
        {"fd00::1", true},
        {"fdff::1", true},
        {"fc00::1", false},
        {"192.168.1.1", false},
        {"169.254.1.1", true},
        {"169.254.169.254", false},
        {"2002:a00:1::1", false},
        {"64:ff9b::a00:1", false},
        {"8.8.8.8", true},
    };
    char why[160];
    struct sockaddr_storage ss;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        socklen_t sl = sockaddr_of(cases[i].addr, &ss);
        REQUIRE(sl != 0);
        bool got = ssrf_addr_allowed((struct sockaddr *)&ss, sl, &allow, why, sizeof why);
        if (got != cases[i].want)
            fprintf(stderr, "cidr case %s: got %d (%s)\n", cases[i].addr, got, why);
        CHECK(got == cases[i].want);
        CHECK_INT(ssrf_upstream_policy(&allow, (struct sockaddr *)&ss, sl, why, sizeof why),
                  got ? 0 : -1);
    }
    /* 0.0.0.0/0 opens IPv4, not IPv6. */
    struct config_cidr all4;
    cidr_of("0.0.0.0", 0, &all4);
    struct config_cidr_list open4 = {.items = &all4, .n = 1};
    socklen_t sl = sockaddr_of("127.0.0.1", &ss);
    CHECK(ssrf_addr_allowed((struct sockaddr *)&ss, sl, &open4, why, sizeof why));
    sl = sockaddr_of("::1", &ss);
    CHECK(!ssrf_addr_allowed((struct sockaddr *)&ss, sl, &open4, why, sizeof why));
    struct config_cidr_list none = {0};
    sl = sockaddr_of("10.0.0.1", &ss);
    CHECK(!ssrf_addr_allowed((struct sockaddr *)&ss, sl, &none, why, sizeof why));
}

static void test_check_literal(void)
{
    char why[160];
    struct config_cidr c;
    cidr_of("10.0.0.0", 8, &c);
    struct config_cidr_list allow = {.items = &c, .n = 1};
    CHECK_INT(ssrf_check_literal("http://127.0.0.1/", NULL, why, sizeof why), -1);
    CHECK_STR(why, "address 127.0.0.1 is loopback");
    CHECK_INT(ssrf_check_literal("http://[::ffff:10.0.0.1]:8080/x", NULL, why, sizeof why), -1);
    CHECK_INT(ssrf_check_literal("http://[::ffff:10.0.0.1]:8080/x", &allow, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("http://10.0.0.5/", &allow, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("http://8.8.8.8:8080/x?y", NULL, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("http://[2606:4700:4700::1111]/", NULL, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("https://example.com/", NULL, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("https://localhost/", NULL, why, sizeof why), 0);
    CHECK_INT(ssrf_check_literal("nonsense", NULL, why, sizeof why), -1);
    CHECK_INT(ssrf_check_literal("http://[zz]/", NULL, why, sizeof why), -1);
    /* Every address trick normalizes to a literal the check sees. */
    static const char *const tricks[] = {
        "http://2130706433/",      "http://0x7f.1/",     "http://0177.0.0.1/", "http://127.1/",
        "http://[::ffff:7f00:1]/", "http://0xA9FEA9FE/", "http://0/",          "http://[::]/"};
    struct buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < sizeof tricks / sizeof tricks[0]; i++) {
        buf_truncate(&b, 0);
        CHECK_INT(ssrf_normalize_url(tricks[i], &b, why, sizeof why), 0);
        CHECK_INT(ssrf_check_literal(b.data, NULL, why, sizeof why), -1);
    }
    buf_dispose(&b);
}

/* ---- the policy on a real pool: refused after resolution, before connecting ---- */

struct pctx {
    struct loop *loop;
    int calls;
    enum poll_outcome outcome;
    char error[256];
};

static int on_poll(void *arg, struct poll_result *r)
{
    struct pctx *c = arg;
    if (c->calls++ == 0) {
        c->outcome = r->outcome;
        snprintf(c->error, sizeof c->error, "%s", r->error ? r->error : "");
    }
    loop_stop(c->loop);
    return 0;
}

static void on_guard(struct loop *loop, struct loop_timer *t, void *arg)
{
    loop_stop(loop);
}

/* Polls url once as an ad-hoc upstream with the policy and allow; fills c. */
static void poll_once(const char *url, const struct config_cidr_list *allow, struct pctx *c)
{
    memset(c, 0, sizeof *c);
    c->loop = loop_new();
    struct upstream_pool *pool = c->loop ? upstream_pool_new(c->loop) : NULL;
    struct loop_timer *guard = c->loop ? loop_timer_new(c->loop, on_guard, NULL) : NULL;
    if (pool == NULL || guard == NULL)
        goto out;
    upstream_pool_set_policy(pool, ssrf_upstream_policy, (void *)allow);
    struct poller_spec s = {.url = url,
                            .interval_ms = 60000,
                            .connect_timeout_ms = 2000,
                            .timeout_ms = 3000,
                            .adhoc = 1};
    struct poller *p = poller_new(pool, &s, on_poll, c);
    if (p == NULL)
        goto out;
    loop_timer_start(guard, 8000);
    loop_run(c->loop);
    poller_free(p);
out:
    loop_timer_free(guard);
    upstream_pool_free(pool);
    loop_free(c->loop);
}

static void test_pool_policy(void)
{
    struct pctx c;
    poll_once("http://127.0.0.1:1/", NULL, &c);
    CHECK_INT(c.calls, 1);
    CHECK_INT(c.outcome, POLL_FAILED);
    CHECK_STR(c.error, "upstream address refused: address 127.0.0.1 is loopback");
    /* A name is checked on the addresses it resolves to. */
    poll_once("http://localhost:1/", NULL, &c);
    CHECK_INT(c.calls, 1);
    CHECK(strstr(c.error, "upstream address refused: address ") != NULL &&
          strstr(c.error, "is loopback") != NULL);
    /* With the range allowed, the connection is attempted (and fails: nothing listens). */
    struct config_cidr items[2];
    cidr_of("127.0.0.0", 8, &items[0]);
    cidr_of("::1", 128, &items[1]);
    struct config_cidr_list allow = {.items = items, .n = 2};
    poll_once("http://127.0.0.1:1/", &allow, &c);
    CHECK_INT(c.calls, 1);
    CHECK_INT(c.outcome, POLL_FAILED);
    CHECK(strstr(c.error, "refused: address") == NULL);
}

static void test_url_policy(void)
{
    char *items[] = {"http://127.0.0.1:9911/api/", "http://10.1.2.3/"};
    struct config_list list = {.items = items, .n = 2};
    char err[256], why[160];
    char **pre = ssrf_prefixes_new(&list, err, sizeof err);
    REQUIRE(pre != NULL);
    struct config_cidr lo;
    cidr_of("127.0.0.0", 8, &lo);
    struct config_cidr_list allow = {.items = &lo, .n = 1};
    struct ssrf_rules rules = {.prefixes = (const char *const *)pre, .allow = &allow};
    char *canon = NULL;
    /* Inside the prefix: admitted in its canonical form. */
    CHECK_INT(ssrf_upstream_url_policy(&rules, "HTTP://127.0.0.1:9911/api/./x/../y?q", &canon, why,
                                       sizeof why),
              0);
    CHECK_STR(canon, "http://127.0.0.1:9911/api/y?q");
    free(canon);
    /* Outside: another path, host, port; the reason quotes nothing of the URL. */
    const char *outside[] = {"http://127.0.0.1:9911/secret?key=s3cr3t",
                             "http://localhost:9911/api/x", "http://127.0.0.1:9912/api/x",
                             "http://127.0.0.1:9911/api/../secret"};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        canon = (char *)"unset";
        CHECK_INT(ssrf_upstream_url_policy(&rules, outside[i], &canon, why, sizeof why), -1);
        CHECK(canon == NULL);
        CHECK_STR(why, "the target matches no allow rule of this server");
    }
    CHECK_INT(
        ssrf_upstream_url_policy(&rules, "ftp://127.0.0.1:9911/api/", &canon, why, sizeof why), -1);
    CHECK_STR(why, "the target is not an acceptable http(s) URL");
    /* An allowed prefix at a refused address literal: the address policy. */
    CHECK_INT(ssrf_upstream_url_policy(&rules, "http://10.1.2.3/x", &canon, why, sizeof why), -1);
    CHECK_STR(why, "address 10.1.2.3 is private");
    /* No rules admit nothing. */
    CHECK_INT(ssrf_upstream_url_policy(NULL, "http://10.1.2.3/x", &canon, why, sizeof why), -1);
    ssrf_prefixes_free(pre);
}

int main(void)
{
    RUN(test_normalize);
    RUN(test_normalize_bounds);
    RUN(test_url_allowed);
    RUN(test_addr_classes);
    RUN(test_cidr_exceptions);
    RUN(test_check_literal);
    RUN(test_pool_policy);
    RUN(test_url_policy);
    return harness_report("test_ssrf");
}

/* URL normalization, allow-rule matching and the address policy of ad-hoc upstreams. The
 * canonical URL is both what the rules are matched against and what libcurl is given, so the
 * text that was checked is the text that is fetched. */
#include "ssrf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "config.h"

/* ---- small helpers ------------------------------------------------------------------------ */

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

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_unreserved(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Characters that may stand as they are in a path segment or a query: RFC 3986 pchar minus the
 * percent-escapes (handled apart). */
static bool is_pchar(char c)
{
    return is_unreserved(c) || strchr("!$&'()*+,;=:@", c) != NULL;
}

/* Printable characters RFC 3986 does not allow in a path or query but that clients send
 * anyway; they are percent-encoded rather than refused. */
static bool is_encoded_printable(char c)
{
    return strchr("\"<>[]^`{|}", c) != NULL;
}

/* ---- host ---------------------------------------------------------------------------------- */

/* Parses an IPv4 address the way inet_aton does (one to four parts, each decimal, octal with a
 * leading 0, or hexadecimal with 0x; the last part fills the remaining bytes). s[0..len) holds
 * only host characters. Returns 0 and the address in host order, or -1. */
static int parse_ipv4(const char *s, size_t len, uint32_t *out)
{
    uint64_t parts[4];
    size_t np = 0, i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && s[j] != '.')
            j++;
        if (j == i || np == 4)
            return -1;
        uint64_t v = 0;
        int base = 10;
        size_t k = i;
        if (j - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
            base = 16;
            k = i + 2;
            if (k == j)
                return -1; /* "0x" alone */
        } else if (j - i >= 2 && s[i] == '0') {
            base = 8;
            k = i + 1;
        }
        for (; k < j; k++) {
            int d = hex_value(s[k]);
            if (d < 0 || d >= base)
                return -1;
            v = v * (uint64_t)base + (uint64_t)d;
            if (v > 0xffffffffu)
                return -1;
        }
        parts[np++] = v;
        if (j == len)
            break;
        i = j + 1;
    }
    uint32_t addr = 0;
    for (size_t k = 0; k + 1 < np; k++) {
        if (parts[k] > 255)
            return -1;
        addr |= (uint32_t)parts[k] << (24 - 8 * k);
    }
    uint64_t room = np == 1 ? 0xffffffffu : (1ull << (8 * (5 - np))) - 1;
    if (parts[np - 1] > room)
        return -1;
    *out = addr | (uint32_t)parts[np - 1];
    return 0;
}

/* True when the label s[0..n) reads as a number (decimal digits, or 0x and hex digits): a
 * host whose last label does is an IPv4 address or nothing, as browsers and inet_aton agree. */
static bool numeric_label(const char *s, size_t n)
{
    size_t k = 0;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (k = 2; k < n; k++)
            if (hex_value(s[k]) < 0)
                return false;
        return true;
    }
    for (k = 0; k < n; k++)
        if (!is_digit(s[k]))
            return false;
    return n > 0;
}

/* Appends the canonical form of the host h[0..len) (bracketed IPv6, IPv4 or a name) to out.
 * Returns 0, or -1 with the reason in err. */
static int put_host(const char *h, size_t len, struct buf *out, char *err, size_t errlen)
{
    if (len == 0)
        return fail(err, errlen, "URL has no host");
    if (h[0] == '[') {
        char a6[INET6_ADDRSTRLEN + 1];
        struct in6_addr addr;
        /* The caller found the closing bracket at h[len - 1]. */
        if (len < 3)
            return fail(err, errlen, "URL has an empty IPv6 host");
        size_t n = len - 2;
        if (h[1] == 'v' || h[1] == 'V')
            return fail(err, errlen, "URL has an IPvFuture host, which is not supported");
        if (memchr(h + 1, '%', n) != NULL)
            return fail(err, errlen, "URL has an IPv6 zone id, which is not allowed");
        if (n >= sizeof a6)
            return fail(err, errlen, "URL has an invalid IPv6 host");
        memcpy(a6, h + 1, n);
        a6[n] = '\0';
        if (inet_pton(AF_INET6, a6, &addr) != 1 ||
            inet_ntop(AF_INET6, &addr, a6, sizeof a6) == NULL)
            return fail(err, errlen, "URL has an invalid IPv6 host");
        return buf_printf(out, "[%s]", a6) == 0 ? 0 : fail(err, errlen, "out of memory");
    }
    if (len > 253)
        return fail(err, errlen, "URL host is longer than 253 bytes");
    size_t label = 0, last = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || h[i] == '.') {
            if (i == label)
                return fail(err, errlen,
                            i == len ? "URL host ends with a dot" : "URL host has an empty label");
            if (i - label > 63)
                return fail(err, errlen, "URL host has a label longer than 63 bytes");
            last = label;
            label = i + 1;
            continue;
        }
        char c = h[i];
        if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
            return fail(err, errlen,
                        "URL host may only hold letters, digits, '-', '_' and '.' (write "
                        "international names in punycode)");
    }
    if (numeric_label(h + last, len - last)) {
        uint32_t v4;
        if (parse_ipv4(h, len, &v4) != 0)
            return fail(err, errlen, "URL host is neither a name nor a valid IPv4 address");
        return buf_printf(out, "%u.%u.%u.%u", v4 >> 24, (v4 >> 16) & 255, (v4 >> 8) & 255,
                          v4 & 255) == 0
                   ? 0
                   : fail(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < len; i++)
        if (buf_putc(out, lower(h[i])) != 0)
            return fail(err, errlen, "out of memory");
    return 0;
}

/* ---- path and query ------------------------------------------------------------------------ */

/* True when a path segment (not literally "." or "..") would read as a dot segment to a
 * server that decodes percent-escapes, splits at an escaped slash or backslash, or drops
 * ";parameters": "%2e", ".%2E", "%2e%2e", "..%2f", "..;x". */
static bool hidden_dot_segment(const char *s, size_t n)
{
    size_t dots = 0, i = 0;
    bool other = false, params = false;
    for (;;) {
        int v = -1;
        if (i < n && s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 &&
            hex_value(s[i + 2]) >= 0)
            v = hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]);
        if (i >= n || v == '/' || v == '\\') {
            if (!other && (dots == 1 || dots == 2))
                return true;
            if (i >= n)
                return false;
            dots = 0;
            other = params = false;
            i += 3;
            continue;
        }
        char c = v >= 0 ? (char)v : s[i];
        i += v >= 0 ? 3 : 1;
        if (params)
            continue;
        if (c == ';')
            params = true;
        else if (c == '.')
            dots++;
        else
            other = true;
    }
}

/* Appends s[0..n) (a segment or a query) with percent-escapes normalized: escapes of
 * unreserved characters decoded, the others in upper case; characters of is_encoded_printable
 * encoded. extra lists the separators that stand as they are ("/?" in a query). Returns 0, or
 * -1 with the reason in err. */
static int put_escaped(const char *s, size_t n, const char *extra, struct buf *out, char *err,
                       size_t errlen)
{
    static const char hexdig[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int rc;
        if (c == '%') {
            int hi = i + 1 < n ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return fail(err, errlen, "URL has a malformed percent-escape");
            char v = (char)(hi * 16 + lo);
            if (is_unreserved(v)) {
                rc = buf_putc(out, v);
            } else {
                char e[3] = {'%', hexdig[hi], hexdig[lo]};
                rc = buf_append(out, e, 3);
            }
            i += 2;
        } else if (is_pchar(c) || (c != '\0' && strchr(extra, c) != NULL)) {
            rc = buf_putc(out, c);
        } else if (is_encoded_printable(c)) {
            char e[3] = {'%', hexdig[(unsigned char)c >> 4], hexdig[c & 15]};
            rc = buf_append(out, e, 3);
        } else {
            return fail(err, errlen, "URL has a character that is not allowed in a path or query");
        }
        if (rc != 0)
            return fail(err, errlen, "out of memory");
    }
    return 0;
}

/* Appends the path p[0..len) (empty, or starting with '/') with its dot segments resolved as
 * RFC 3986 section 5.2.4 says. Returns 0, or -1 with the reason in err. */
static int put_path(const char *p, size_t len, struct buf *out, char *err, size_t errlen)
{
    if (len == 0)
        return buf_putc(out, '/') == 0 ? 0 : fail(err, errlen, "out of memory");
    size_t base = out->len;
    /* Where each segment kept so far starts (its '/'), so that ".." can drop the last one. At
     * most one segment per byte of the path. */
    size_t *starts = malloc(len * sizeof *starts);
    size_t nseg = 0;
    int rc = -1;
    if (starts == NULL) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < len && p[j] != '/')
            j++;
        const char *seg = p + i;
        size_t n = j - i;
        bool last = j == len;
        bool dot = n == 1 && seg[0] == '.';
        bool dotdot = n == 2 && seg[0] == '.' && seg[1] == '.';
        if (dotdot && nseg > 0)
            buf_truncate(out, starts[--nseg]);
        if (dot || dotdot) {
            /* "/a/b/.." is "/a/": a final dot segment leaves an empty segment behind. */
            if (last) {
                starts[nseg++] = out->len;
                if (buf_putc(out, '/') != 0) {
                    fail(err, errlen, "out of memory");
                    goto out;
                }
            }
        } else {
            if (hidden_dot_segment(seg, n)) {
                fail(err, errlen,
                     "URL has a dot segment hidden by percent-escapes or separators "
                     "(%%2e, %%2f, ;)");
                goto out;
            }
            starts[nseg++] = out->len;
            if (buf_putc(out, '/') != 0) {
                fail(err, errlen, "out of memory");
                goto out;
            }
            if (put_escaped(seg, n, "", out, err, errlen) != 0)
                goto out;
        }
        if (last)
            break;
        i = j + 1;
    }
    if (out->len == base && buf_putc(out, '/') != 0) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(starts);
    return rc;
}

/* ---- normalization ------------------------------------------------------------------------- */

int ssrf_normalize_url(const char *in, struct buf *out, char *err, size_t errlen)
{
    size_t entry = out->len;
    size_t n = strnlen(in, SSRF_MAX_URL + 1);
    if (n > SSRF_MAX_URL)
        return fail(err, errlen, "URL is longer than %d bytes", SSRF_MAX_URL);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c == 0x7f)
            return fail(err, errlen, "URL contains a space or a control character");
        if (c >= 0x80)
            return fail(err, errlen,
                        "URL contains a non-ASCII byte (write the host in punycode and "
                        "percent-encode the rest)");
        if (c == '\\')
            return fail(err, errlen, "URL contains a backslash");
    }
    /* scheme ":" "//" authority */
    size_t i = 0;
    while (i < n && (is_alpha(in[i]) ||
                     (i > 0 && (is_digit(in[i]) || in[i] == '+' || in[i] == '-' || in[i] == '.'))))
        i++;
    if (i == 0 || i >= n || in[i] != ':')
        return fail(err, errlen, "not an absolute URL (http://host/...)");
    bool https;
    if (i == 4 && strncasecmp(in, "http", 4) == 0)
        https = false;
    else if (i == 5 && strncasecmp(in, "https", 5) == 0)
        https = true;
    else
        return fail(err, errlen, "only http and https URLs are allowed");
    /* in[i + 1] is at worst the terminator, and in[i + 2] is only read after a '/'. */
    if (in[i + 1] != '/' || in[i + 2] != '/')
        return fail(err, errlen, "URL needs \"//\" and a host after the scheme");
    size_t a = i + 3, e = a;
    while (e < n && in[e] != '/' && in[e] != '?' && in[e] != '#')
        e++;
    if (memchr(in + a, '@', e - a) != NULL)
        return fail(err, errlen, "URL must not hold user information (user@host)");
    size_t host_end;
    if (a < e && in[a] == '[') {
        const char *close = memchr(in + a, ']', e - a);
        if (close == NULL)
            return fail(err, errlen, "URL has an IPv6 host without its closing bracket");
        host_end = (size_t)(close - in) + 1;
        if (host_end < e && in[host_end] != ':')
            return fail(err, errlen, "URL has characters after its IPv6 host");
    } else {
        host_end = a;
        while (host_end < e && in[host_end] != ':')
            host_end++;
    }
    unsigned long port = 0;
    bool has_port = false;
    if (host_end < e) {
        for (size_t k = host_end + 1; k < e; k++) {
            if (!is_digit(in[k]))
                return fail(err, errlen, "URL has an invalid port");
            port = port * 10 + (unsigned long)(in[k] - '0');
            if (port > 65535)
                return fail(err, errlen, "URL has a port beyond 65535");
            has_port = true;
        }
        if (has_port && port == 0)
            return fail(err, errlen, "URL has port 0");
    }
    if (has_port && port == (https ? 443ul : 80ul))
        has_port = false;
    /* path, query, fragment (dropped) */
    size_t q = e;
    while (q < n && in[q] != '?' && in[q] != '#')
        q++;
    size_t f = q;
    while (f < n && in[f] != '#')
        f++;

    if (buf_puts(out, https ? "https://" : "http://") != 0) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    if (put_host(in + a, host_end - a, out, err, errlen) != 0)
        goto fail;
    if (has_port && buf_printf(out, ":%lu", port) != 0) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    if (put_path(in + e, q - e, out, err, errlen) != 0)
        goto fail;
    if (q < f) {
        if (buf_putc(out, '?') != 0) {
            fail(err, errlen, "out of memory");
            goto fail;
        }
        if (put_escaped(in + q + 1, f - q - 1, "/?", out, err, errlen) != 0)
            goto fail;
    }
    /* Percent-encoding can lengthen the URL; the limit holds for the canonical form too, so that
     * normalising a canonical URL again always gives it back unchanged. */
    if (out->len - entry > SSRF_MAX_URL) {
        fail(err, errlen, "URL is longer than %d bytes once normalised", SSRF_MAX_URL);
        goto fail;
    }
    return 0;
fail:
    buf_truncate(out, entry);
    return -1;
}

/* ---- allow rules --------------------------------------------------------------------------- */

bool ssrf_url_allowed(const char *canonical, const char *const *prefixes)
{
    if (canonical == NULL || prefixes == NULL)
        return false;
    for (const char *const *p = prefixes; *p != NULL; p++) {
        size_t n = strlen(*p);
        if (n == 0 || strncmp(canonical, *p, n) != 0)
            continue;
        if ((*p)[n - 1] == '/' || strchr(*p, '?') != NULL)
            return true;
        char next = canonical[n];
        if (next == '\0' || next == '/' || next == '?')
            return true;
    }
    return false;
}

char **ssrf_prefixes_new(const struct config_list *list, char *err, size_t errlen)
{
    size_t n = list ? list->n : 0;
    char **v = calloc(n + 1, sizeof *v);
    if (v == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct buf b;
        char why[160];
        buf_init(&b, 0);
        if (ssrf_normalize_url(list->items[i], &b, why, sizeof why) != 0) {
            fail(err, errlen, "url_prefix \"%.120s\": %s", list->items[i], why);
            buf_dispose(&b);
            ssrf_prefixes_free(v);
            return NULL;
        }
        v[i] = buf_steal(&b, NULL);
        if (v[i] == NULL) {
            fail(err, errlen, "out of memory");
            ssrf_prefixes_free(v);
            return NULL;
        }
    }
    return v;
}

void ssrf_prefixes_free(char **prefixes)
{
    if (prefixes == NULL)
        return;
    for (char **p = prefixes; *p != NULL; p++)
        free(*p);
    free(prefixes);
}

/* ---- address policy ------------------------------------------------------------------------ */

/* True when the first plen bits of a and net are equal. */
static bool in_prefix(const uint8_t *a, const uint8_t *net, unsigned plen)
{
    unsigned full = plen / 8, rest = plen % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

struct range {
    uint8_t net[16];
    uint8_t plen;
    const char *what;
};

/* IANA's IPv4 special-purpose registry, more specific entries first. Blocks the registry marks
 * globally reachable (AS112, AMT) are left out. */
static const struct range ranges4[] = {
    {{255, 255, 255, 255}, 32, "broadcast"},
    {{169, 254, 169, 254}, 32, "link-local (cloud metadata)"},
    {{0, 0, 0, 0}, 8, "unspecified"},
    {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "carrier-grade NAT"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 0, 0}, 16, "link-local"},
    {{172, 16, 0, 0}, 12, "private"},
    {{192, 0, 0, 0}, 24, "reserved"},
    {{192, 0, 2, 0}, 24, "for documentation"},
    {{192, 88, 99, 0}, 24, "reserved (6to4 relay)"},
    {{192, 168, 0, 0}, 16, "private"},
    {{198, 18, 0, 0}, 15, "for benchmarking"},
    {{198, 51, 100, 0}, 24, "for documentation"},
    {{203, 0, 113, 0}, 24, "for documentation"},
    {{224, 0, 0, 0}, 4, "multicast"},
    {{240, 0, 0, 0}, 4, "reserved"},
};

/* IPv6 ranges refused outright, more specific entries first; the forms embedding IPv4 are
 * handled in code before these, and whatever lies outside 2000::/3 is reserved. */
static const struct range ranges6[] = {
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "reserved (local-use NAT64)"},
    {{0x01, 0x00}, 64, "reserved (discard-only)"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "for documentation"},
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, "for benchmarking"},
    {{0x20, 0x01, 0x00, 0x00}, 23, "reserved"},
    {{0x3f, 0xff}, 20, "for documentation"},
    {{0x5f, 0x00}, 16, "reserved"},
    {{0xfc}, 7, "unique-local"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "site-local"},
    {{0xff}, 8, "multicast"},
};

static const char *class4(const uint8_t *a)
{
    for (size_t i = 0; i < sizeof ranges4 / sizeof ranges4[0]; i++)
        if (in_prefix(a, ranges4[i].net, ranges4[i].plen))
            return ranges4[i].what;
    return NULL;
}

/* True for ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, except :: and ::1): addresses
 * that reach the IPv4 host itself. */
static bool v4_in_v6(const uint8_t *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t zero[12] = {0};
    if (memcmp(a, mapped, 12) == 0)
        return true;
    return memcmp(a, zero, 12) == 0 && !(a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] <= 1);
}

const char *ssrf_addr_class(int family, const uint8_t *a, int *embedded, uint8_t *v4)
{
    static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t loop6[16] = {[15] = 1};
    static const uint8_t any6[16] = {0};
    if (embedded != NULL)
        *embedded = 0;
    if (family == AF_INET)
        return class4(a);
    if (family != AF_INET6)
        return "not an IP address";
    if (memcmp(a, any6, 16) == 0)
        return "unspecified";
    if (memcmp(a, loop6, 16) == 0)
        return "loopback";
    const uint8_t *inner = NULL;
    uint8_t teredo_client[4];
    if (v4_in_v6(a) || memcmp(a, siit, 12) == 0 || memcmp(a, nat64, 12) == 0) {
        inner = a + 12;
    } else if (a[0] == 0x20 && a[1] == 0x02) {
        inner = a + 2; /* 6to4: 2002:AABB:CCDD::/48 */
    } else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        /* Teredo: the server's IPv4 address in bits 32-63, the client's inverted in the last
         * 32 bits. Either one being non-public refuses the address. */
        for (int k = 0; k < 4; k++)
            teredo_client[k] = (uint8_t)~a[12 + k];
        inner = class4(a + 4) != NULL ? a + 4 : teredo_client;
    }
    if (inner != NULL) {
        if (embedded != NULL)
            *embedded = 1;
        if (v4 != NULL)
            memcpy(v4, inner, 4);
        return class4(inner);
    }
    for (size_t i = 0; i < sizeof ranges6 / sizeof ranges6[0]; i++)
        if (in_prefix(a, ranges6[i].net, ranges6[i].plen))
            return ranges6[i].what;
    if ((a[0] & 0xe0) != 0x20)
        return "reserved";
    return NULL;
}

/* True when the address is inside one of the configured ranges. */
static bool in_cidrs(int family, const uint8_t *a, const struct config_cidr_list *allow)
{
    if (allow == NULL)
        return false;
    for (size_t i = 0; i < allow->n; i++) {
        const struct config_cidr *c = &allow->items[i];
        unsigned max = c->family == AF_INET ? 32 : 128;
        if (c->family == family && c->prefix <= max && in_prefix(a, c->addr, c->prefix))
            return true;
    }
    return false;
}

bool ssrf_addr_allowed(const struct sockaddr *sa, socklen_t salen,
                       const struct config_cidr_list *allow, char *why, size_t whylen)
{
    uint8_t a[16];
    int family;
    if (sa != NULL && sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        memcpy(a, &s4->sin_addr, 4);
        family = AF_INET;
    } else if (sa != NULL && sa->sa_family == AF_INET6 &&
               salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(a, &s6->sin6_addr, 16);
        family = AF_INET6;
    } else {
        fail(why, whylen, "address family %d is not allowed", sa ? (int)sa->sa_family : -1);
        return false;
    }
    int embedded = 0;
    uint8_t v4[4];
    const char *what = ssrf_addr_class(family, a, &embedded, v4);
    if (what == NULL || in_cidrs(family, a, allow))
        return true;
    if (family == AF_INET6 && v4_in_v6(a) && in_cidrs(AF_INET, a + 12, allow))
        return true;
    char text[INET6_ADDRSTRLEN], inner[INET_ADDRSTRLEN];
    if (inet_ntop(family, a, text, sizeof text) == NULL)
        snprintf(text, sizeof text, "?");
    if (embedded && inet_ntop(AF_INET, v4, inner, sizeof inner) != NULL)
        fail(why, whylen, "address %s embeds %s, which is %s", text, inner, what);
    else
        fail(why, whylen, "address %s is %s", text, what);
    return false;
}

int ssrf_upstream_policy(void *arg, const struct sockaddr *addr, socklen_t addrlen, char *why,
                         size_t whylen)
{
    const struct config_cidr_list *allow = arg;
    return ssrf_addr_allowed(addr, addrlen, allow, why, whylen) ? 0 : -1;
}

int ssrf_check_literal(const char *canonical, const struct config_cidr_list *allow, char *why,
                       size_t whylen)
{
    const char *h = strstr(canonical, "://");
    if (h == NULL)
        return fail(why, whylen, "not a canonical URL");
    h += 3;
    char text[INET6_ADDRSTRLEN + 1];
    size_t n;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        n = close ? (size_t)(close - h - 1) : 0;
        if (close == NULL || n == 0 || n >= sizeof text)
            return fail(why, whylen, "not a canonical URL");
        memcpy(text, h + 1, n);
        text[n] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            return fail(why, whylen, "not a canonical URL");
        sl = sizeof *s6;
    } else {
        n = strcspn(h, ":/?");
        if (n >= sizeof text)
            return 0; /* a long name, not an address */
        memcpy(text, h, n);
        text[n] = '\0';
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
            return 0; /* a name: its addresses are checked on connect */
        sl = sizeof *s4;
    }
    return ssrf_addr_allowed((const struct sockaddr *)&ss, sl, allow, why, whylen) ? 0 : -1;
}

int ssrf_upstream_url_policy(void *arg, const char *url, char **canonical, char *why, size_t whylen)
{
    const struct ssrf_rules *rules = arg;
    char err[256];
    struct buf canon;
    *canonical = NULL;
    buf_init(&canon, 0);
    /* The reasons quote nothing of the URL: its query may hold a token. */
    if (ssrf_normalize_url(url, &canon, err, sizeof err) != 0) {
        buf_dispose(&canon);
        return fail(why, whylen, "the target is not an acceptable http(s) URL");
    }
    if (!ssrf_url_allowed(canon.data, rules ? rules->prefixes : NULL)) {
        buf_dispose(&canon);
        return fail(why, whylen, "the target matches no allow rule of this server");
    }
    if (ssrf_check_literal(canon.data, rules ? rules->allow : NULL, why, whylen) != 0) {
        buf_dispose(&canon);
        return -1;
    }
    *canonical = buf_steal(&canon, NULL);
    return *canonical ? 0 : fail(why, whylen, "out of memory");
}

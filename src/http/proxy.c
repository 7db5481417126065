/* Client-chosen upstream URLs: GET /proxy?url= and the Streamdata.io form GET /{absolute-url}
 * (X-Sd-Token, X-Sd-Header), their admission (allow rules, address policy, token grant) and the
 * lookup of a new host name while the request waits. */
#include "http/internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "resolve.h"
#include "ssrf.h"

#define COMPAT_MAX_HEADERS 16
#define COMPAT_MAX_HEADER  4096

/* ---- resolving an ad-hoc host at admission ------------------------------------------------ */

/* Writes the host of a canonical URL into host when it is a name (not an address literal).
 * Returns 0, or -1 for a literal (ssrf_check_literal judged it already) or a name too long. */
static int url_host_name(const char *canonical, char *host, size_t hostlen)
{
    const char *h = strstr(canonical, "://");
    if (h == NULL || h[3] == '[')
        return -1;
    h += 3;
    size_t n = strcspn(h, ":/?#");
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 ? -1 : 0;
}

void http_resolving_unlink(struct http_server *srv, struct request *q)
{
    if (q->rprev)
        q->rprev->rnext = q->rnext;
    else if (srv->resolving == q)
        srv->resolving = q->rnext;
    if (q->rnext)
        q->rnext->rprev = q->rprev;
    q->rprev = q->rnext = NULL;
}

/* The lookup of a suspended request ended: every address it gave must pass the address policy
 * (a name with a refused address is refused, as rebinding setups mix them); a name that does
 * not resolve in time is let through, and its poller reports what happens at connect. Then the
 * request is routed again. */
static void on_resolved(void *arg, enum resolve_status status, const struct addrinfo *ai)
{
    struct request *q = arg;
    struct http_server *srv = q->srv;
    char why[160];
    q->lookup = NULL;
    q->looked_up = 1;
    for (; status == RESOLVE_OK && ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!ssrf_addr_allowed(ai->ai_addr, ai->ai_addrlen, srv->p.allow_cidrs, why, sizeof(why))) {
            char detail[256];
            snprintf(detail, sizeof(detail), "the host resolves to a refused address: %s", why);
            free(q->lookup_refused);
            /* Out of memory leaves it NULL: the connect-time check still refuses the address. */
            q->lookup_refused = strdup(detail);
            break;
        }
    }
    http_resolving_unlink(srv, q);
    MHD_resume_connection(q->conn);
    http_kick_daemon(srv);
}

void http_resolving_abort(struct http_server *srv)
{
    while (srv->resolving) {
        struct request *q = srv->resolving;
        resolve_cancel(q->lookup);
        q->lookup = NULL;
        q->looked_up = 1;
        http_resolving_unlink(srv, q);
        MHD_resume_connection(q->conn);
    }
}

/* Starts the stream of an admitted ad-hoc URL (canonical). When the topic is new and the host
 * is a name, the connection is first suspended while the name resolves (at most [allow]
 * connect_timeout), so that a name resolving to a refused address gets its 403 at once instead
 * of a stream of upstream-error events; handle() runs again when the lookup ends. */
static enum MHD_Result start_adhoc(struct http_server *srv, struct MHD_Connection *c,
                                   const char *key, const char *canonical, struct topic_spec *spec,
                                   enum hub_mode mode)
{
    struct request *q = srv->cur;
    char host[256];
    if (q && q->lookup_refused)
        return http_send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed", q->lookup_refused);
    if (q && !q->looked_up && srv->resolver && !srv->quiesced &&
        hub_topic_find(srv->hub, key) == NULL &&
        url_host_name(canonical, host, sizeof(host)) == 0) {
        q->looked_up = 1;
        uint64_t timeout = srv->p.adhoc.connect_timeout_ms ? srv->p.adhoc.connect_timeout_ms : 3000;
        q->lookup = resolver_start(srv->resolver, host, timeout, on_resolved, q);
        if (q->lookup) {
            q->conn = c;
            q->rnext = srv->resolving;
            if (srv->resolving)
                srv->resolving->rprev = q;
            srv->resolving = q;
            MHD_suspend_connection(c);
            return MHD_YES;
        }
    }
    return http_start_stream(srv, c, key, spec, mode);
}

/* The checks every client-chosen URL passes (/proxy and the Streamdata.io form): it is
 * normalised into canon, must match an allow rule, must not name a refused address literally,
 * and must be granted by the token when there is one (grant not NULL). Returns 1 when admitted;
 * otherwise 0, with the problem answer queued and its result in *rc. */
static int admit_adhoc(struct http_server *srv, struct MHD_Connection *c, const char *url,
                       const struct auth_grant *grant, struct buf *canon, enum MHD_Result *rc)
{
    char why[256];
    if (ssrf_normalize_url(url, canon, why, sizeof(why)) != 0)
        *rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", why);
    else if (!ssrf_url_allowed(canon->data, srv->p.allow_prefixes))
        *rc = http_send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed",
                                "the URL matches no allow rule of this server");
    else if (ssrf_check_literal(canon->data, srv->p.allow_cidrs, why, sizeof(why)) != 0)
        *rc = http_send_problem(srv, c, MHD_HTTP_FORBIDDEN, "URL not allowed", why);
    else if (grant && !auth_grant_allows_url(grant, canon->data))
        *rc = http_send_insufficient_scope(srv, c, "the token does not grant this URL");
    else if (grant && http_auth_keep_target(srv, canon->data, 1) != 0)
        *rc = MHD_NO;
    else
        return 1;
    return 0;
}

enum MHD_Result http_route_proxy(struct http_server *srv, struct MHD_Connection *c)
{
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    const char *url = NULL;
    MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "url", 3, &url, NULL);
    http_name_request(srv, c, url && *url ? url : "/proxy");
    url = NULL;
    int authed = http_authenticate(srv, c, &grant, &rc, 0, NULL);
    if (authed < 0)
        return rc;
    size_t url_len = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "url", 3, &url, &url_len) !=
            MHD_YES ||
        url == NULL || *url == '\0') {
        auth_grant_dispose(&grant);
        return http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Missing url",
                                 "use /proxy?url=<percent-encoded absolute http(s) URL>");
    }
    struct buf canon;
    buf_init(&canon, 0);
    if (strlen(url) != url_len) {
        rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad url", "the URL holds a NUL byte");
    } else if (admit_adhoc(srv, c, url, authed == 1 ? &grant : NULL, &canon, &rc)) {
        /* The name (for logs) leaves the query out: it may carry the upstream's tokens. */
        char *name = strndup(canon.data, strcspn(canon.data, "?#"));
        struct topic_spec spec = {.poll = srv->p.adhoc,
                                  .name = name ? name : "adhoc",
                                  .id_keys = srv->p.adhoc_id_keys,
                                  .error_repeat_ms = srv->p.adhoc_error_repeat_ms,
                                  .any_content_type = srv->p.adhoc_any_content_type};
        spec.poll.url = canon.data;
        spec.poll.adhoc = 1;
        enum hub_mode mode = HUB_MODE_PATCH;
        struct buf key;
        buf_init(&key, 0);
        if (http_query_interval(c, srv->p.adhoc_min_interval_ms, srv->p.adhoc_max_interval_ms,
                                &spec.poll.interval_ms) != 0)
            rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad interval",
                                   "interval takes a number of seconds, such as 5 or 0.5");
        else if (http_query_mode(c, &mode) != 0)
            rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad mode",
                                   "mode is patch or snapshot");
        else if (buf_printf(&key, "p:%s|%llu", canon.data,
                            (unsigned long long)spec.poll.interval_ms) != 0)
            rc = MHD_NO;
        else
            rc = start_adhoc(srv, c, key.data, canon.data, &spec, mode);
        buf_dispose(&key);
        free(name);
    }
    buf_dispose(&canon);
    auth_grant_dispose(&grant);
    return rc;
}

/* ---- the Streamdata.io form ------------------------------------------------------------- */

/* What GET /{absolute-url} asks for, once the X-Sd-* parameters are taken out of the URL. */
struct compat_req {
    struct buf url; /* the upstream URL, the X-Sd-* query parameters removed */
    char *token;    /* X-Sd-Token, or NULL */
    char *headers[COMPAT_MAX_HEADERS];
    size_t nheaders;
    const char *error; /* why the request is malformed, NULL when it is not */
};

static void compat_dispose(struct compat_req *cr)
{
    buf_dispose(&cr->url);
    free(cr->token);
    for (size_t i = 0; i < cr->nheaders; i++)
        free(cr->headers[i]);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes n bytes of a query component (%XX, '+' as a space). Returns a string, or NULL when it
 * is malformed or decodes to a NUL, CR or LF. */
static char *query_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (ch == '\0' || ch == '\r' || ch == '\n') {
            free(out);
            return NULL;
        }
        out[k++] = ch;
    }
    out[k] = '\0';
    return out;
}

static void compat_add_header(struct compat_req *cr, char *line)
{
    if (line == NULL || strlen(line) > COMPAT_MAX_HEADER || strchr(line, '\r') ||
        strchr(line, '\n')) {
        free(line);
        cr->error = "an X-Sd-Header is malformed or too long";
    } else if (cr->nheaders == COMPAT_MAX_HEADERS) {
        free(line);
        cr->error = "too many X-Sd-Header";
    } else {
        cr->headers[cr->nheaders++] = line;
    }
}

static enum MHD_Result compat_header_it(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct compat_req *cr = cls;
    if (strcasecmp(key, "X-Sd-Header") == 0 && value)
        compat_add_header(cr, strdup(value));
    return MHD_YES;
}

/* Splits target ("https://host/path?a=1&X-Sd-Token=..") into cr. */
static void compat_parse(struct MHD_Connection *c, const char *target, struct compat_req *cr)
{
    memset(cr, 0, sizeof(*cr));
    buf_init(&cr->url, 0);
    size_t base = strcspn(target, "?#");
    buf_append(&cr->url, target, base);
    const char *q = target[base] == '?' ? target + base + 1 : NULL;
    size_t qlen = q ? strcspn(q, "#") : 0;
    int first = 1;
    while (q && qlen > 0) {
        size_t plen = strcspn(q, "&");
        if (plen > qlen)
            plen = qlen;
        size_t nlen = strcspn(q, "=");
        if (nlen > plen)
            nlen = plen;
        char *name = query_decode(q, nlen);
        int token = name && strcasecmp(name, "X-Sd-Token") == 0;
        int header = name && strcasecmp(name, "X-Sd-Header") == 0;
        free(name);
        const char *val = nlen < plen ? q + nlen + 1 : q + plen;
        size_t vlen = nlen < plen ? plen - nlen - 1 : 0;
        if (token) {
            free(cr->token);
            cr->token = query_decode(val, vlen);
            if (cr->token == NULL)
                cr->error = "X-Sd-Token is malformed";
        } else if (header) {
            compat_add_header(cr, query_decode(val, vlen));
        } else if (plen > 0) {
            buf_putc(&cr->url, first ? '?' : '&');
            buf_append(&cr->url, q, plen);
            first = 0;
        }
        q += plen;
        qlen -= plen;
        if (qlen > 0) {
            q++;
            qlen--;
        }
    }
    if (cr->token == NULL) {
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Sd-Token");
        if (h)
            cr->token = strdup(h);
    }
    MHD_get_connection_values(c, MHD_HEADER_KIND, compat_header_it, cr);
    if (cr->url.data == NULL)
        cr->error = "out of memory";
}

/* Checks a "Name: value" line of X-Sd-Header against the names [allow] forward_header lists.
 * Returns NULL when it may be sent, or why not. */
static const char *compat_header_check(const struct http_server *srv, const char *line)
{
    size_t n = strcspn(line, ":");
    if (line[n] != ':' || n == 0)
        return "an X-Sd-Header is not \"Name: value\"";
    for (size_t i = 0; i < n; i++)
        if (!(line[i] > ' ' && line[i] < 0x7f && strchr("()<>@,;:\\\"/[]?={}", line[i]) == NULL))
            return "an X-Sd-Header has an invalid name";
    for (const char *const *f = srv->p.adhoc_forward_headers; f && *f; f++)
        if (strlen(*f) == n && strncasecmp(*f, line, n) == 0)
            return NULL;
    return "this server forwards no such header (see [allow] forward_header)";
}

enum MHD_Result http_route_compat(struct http_server *srv, struct MHD_Connection *c,
                                  const char *target)
{
    struct compat_req cr;
    compat_parse(c, target, &cr);
    http_name_request(srv, c, cr.url.data ? cr.url.data : "compat");
    struct auth_grant grant;
    memset(&grant, 0, sizeof(grant));
    enum MHD_Result rc;
    int authed = http_authenticate(srv, c, &grant, &rc, 1, cr.token);
    if (authed < 0) {
        compat_dispose(&cr);
        return rc;
    }
    const char *bad = cr.error;
    for (size_t i = 0; bad == NULL && i < cr.nheaders; i++)
        bad = compat_header_check(srv, cr.headers[i]);
    struct buf canon;
    buf_init(&canon, 0);
    if (cr.error) {
        rc = http_send_problem(srv, c, MHD_HTTP_BAD_REQUEST, "Bad request", cr.error);
    } else if (bad) {
        rc = http_send_problem(srv, c, MHD_HTTP_FORBIDDEN, "Header not allowed", bad);
    } else if (admit_adhoc(srv, c, cr.url.data, authed == 1 ? &grant : NULL, &canon, &rc)) {
        char *name = strndup(canon.data, strcspn(canon.data, "?#"));
        struct topic_spec spec = {.poll = srv->p.adhoc,
                                  .name = name ? name : "compat",
                                  .id_keys = srv->p.adhoc_id_keys,
                                  .error_repeat_ms = srv->p.adhoc_error_repeat_ms,
                                  .any_content_type = srv->p.adhoc_any_content_type,
                                  .compat = 1};
        spec.poll.url = canon.data;
        spec.poll.adhoc = 1;
        spec.poll.headers = (const char *const *)cr.headers;
        spec.poll.nheaders = cr.nheaders;
        /* Subscribers share a poller when URL, headers and interval are the same; the key holds
         * the header lines (never logged), one per line since none can hold a line feed. */
        struct buf key;
        buf_init(&key, 0);
        int kr =
            buf_printf(&key, "c:%s\n%llu", canon.data, (unsigned long long)spec.poll.interval_ms);
        for (size_t i = 0; i < cr.nheaders; i++)
            kr |= buf_printf(&key, "\n%s", cr.headers[i]);
        rc = kr ? MHD_NO : start_adhoc(srv, c, key.data, canon.data, &spec, HUB_MODE_PATCH);
        buf_dispose(&key);
        free(name);
    }
    buf_dispose(&canon);
    auth_grant_dispose(&grant);
    compat_dispose(&cr);
    return rc;
}

int http_compat_target(const char *uri)
{
    return strncasecmp(uri, "/http://", 8) == 0 || strncasecmp(uri, "/https://", 9) == 0;
}

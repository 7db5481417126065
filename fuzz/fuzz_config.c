/* Fuzzes the config parser: INI text (before the first NUL byte) through config_parse_string,
 * then the lines after it as POLLCAST_* environment entries through config_apply_env. A config
 * that parses must find each of its upstreams by name and equal itself; nothing may leak. */
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "ssrf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

static void check_config(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        FUZZ_ASSERT(u->name != NULL && u->url != NULL);
        FUZZ_ASSERT(config_find_upstream(cfg, u->name) == u);
        FUZZ_ASSERT(config_upstream_equal(u, u));
        FUZZ_ASSERT(u->min_interval_ms <= u->interval_ms && u->interval_ms <= u->max_interval_ms);
    }
    /* The prefixes reach ssrf_prefixes_new as serve would hand them over; a prefix the config
     * accepts may still be refused there (serve then stops with that message). */
    char err[256];
    ssrf_prefixes_free(ssrf_prefixes_new(&cfg->allow.url_prefix, err, sizeof err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    FUZZ_ASSERT(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    size_t tlen = strlen(text);
    struct config cfg;
    char err[512];
    if (config_parse_string(text, "fuzz.ini", &cfg, err, sizeof err) != 0) {
        FUZZ_ASSERT(err[0] != '\0');
        free(text);
        return 0;
    }
    check_config(&cfg);
    if (tlen < size) {
        /* The rest: environment entries, one per line (at most 64). */
        char *env[65];
        size_t n = 0;
        char *p = text + tlen + 1, *end = text + size;
        while (p < end && n < 64) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl != NULL)
                *nl = '\0';
            env[n++] = p;
            p = nl ? nl + 1 : end;
        }
        env[n] = NULL;
        if (config_apply_env(&cfg, env, err, sizeof err) == 0)
            check_config(&cfg);
    }
    config_dispose(&cfg);
    free(text);
    return 0;
}

/* pollcast check-config: validates a config file (with the POLLCAST_* environment applied) and
 * prints a one-line summary, or prints the generated config.example.ini or key reference. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"

static void usage(void)
{
    fputs("usage: pollcast check-config FILE\n"
          "       pollcast check-config --print-example     print config.example.ini\n"
          "       pollcast check-config --print-reference   print the key reference (Markdown)\n",
          stderr);
}

/* Writes the generated text of config.example.ini or of the reference. */
static int print_doc(int (*write)(struct buf *))
{
    struct buf b;
    buf_init(&b, 0);
    int rc = 2;
    if (write(&b) != 0) {
        fputs("pollcast check-config: out of memory\n", stderr);
        goto out;
    }
    if (fwrite(b.data, 1, b.len, stdout) != b.len || fflush(stdout) != 0) {
        perror("pollcast check-config: stdout");
        goto out;
    }
    rc = 0;
out:
    buf_dispose(&b);
    return rc;
}

int cli_check_config(int argc, char **argv)
{
    struct config cfg;
    char err[1024];
    if (argc == 1 && strcmp(argv[0], "--print-example") == 0)
        return print_doc(config_write_example);
    if (argc == 1 && strcmp(argv[0], "--print-reference") == 0)
        return print_doc(config_write_reference);
    if (argc != 1 || (argv[0][0] == '-' && argv[0][1] != '\0')) {
        usage();
        return 2;
    }
    const char *path = argv[0];
    if (config_load_file(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (config_apply_env(&cfg, environ, err, sizeof err) != 0 ||
        config_read_files(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        config_dispose(&cfg);
        return 2;
    }
    const struct config_addr *l = &cfg.server.listen;
    const char *alg = cfg.auth.algorithm == CONFIG_AUTH_HS256   ? "HS256"
                      : cfg.auth.algorithm == CONFIG_AUTH_RS256 ? "RS256"
                      : cfg.auth.algorithm == CONFIG_AUTH_ES256 ? "ES256"
                                                                : "off";
    char adhoc[64];
    if (cfg.allow.url_prefix.n == 0 || cfg.allow.max_pollers == 0)
        snprintf(adhoc, sizeof adhoc, "off");
    else
        snprintf(adhoc, sizeof adhoc, "%zu url_prefix", cfg.allow.url_prefix.n);
    printf("%s: OK: %zu upstream%s, listening on %s%s%s:%u, ad-hoc URLs %s, auth %s%s\n", path,
           cfg.n_upstreams, cfg.n_upstreams == 1 ? "" : "s", l->family == AF_INET6 ? "[" : "",
           l->host, l->family == AF_INET6 ? "]" : "", (unsigned)l->port, adhoc, alg,
           cfg.cluster.redis ? ", cluster on" : "");
    config_dispose(&cfg);
    return 0;
}

/* pollcast: argv dispatch to the subcommands; the daemon itself is wired in serve. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fputs("usage: pollcast [serve] [-c FILE]       run the streaming proxy\n"
          "       pollcast diff OLD.json NEW.json [--repeat N]\n"
          "                                        print the RFC 6902 patch from OLD to NEW\n"
          "       pollcast apply DOC.json PATCH.json\n"
          "                                        print DOC with PATCH applied\n"
          "       pollcast watch STREAM-URL       follow a stream, showing the live document\n"
          "       pollcast check-config FILE | --print-example | --print-reference\n"
          "                                        validate a config file, or print the docs\n"
          "       pollcast --version | --help\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("pollcast %s\n", POLLCAST_VERSION);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "diff") == 0)
        return cli_diff(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "apply") == 0)
        return cli_apply(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "watch") == 0)
        return cli_watch(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "check-config") == 0)
        return cli_check_config(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return cli_serve(argc - 2, argv + 2);
    if (argc == 1 || argv[1][0] == '-')
        return cli_serve(argc - 1, argv + 1);
    usage(stderr);
    return 2;
}

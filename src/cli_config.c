/* PLACEHOLDER until the config module lands. */
#include <stdio.h>

#include "cli.h"

int cli_check_config(int argc, char **argv)
{
    fprintf(stderr, "pollcast check-config: not built yet\n");
    return 2;
}

/* PLACEHOLDER until the applier lands. */
#include <stdio.h>

#include "cli.h"

int cli_apply(int argc, char **argv)
{
    fprintf(stderr, "pollcast apply: not built yet\n");
    return 2;
}

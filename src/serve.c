/* PLACEHOLDER until the daemon lands. */
#include <stdio.h>

#include "cli.h"

int cli_serve(int argc, char **argv)
{
    fprintf(stderr, "pollcast serve: not built yet\n");
    return 2;
}

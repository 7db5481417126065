/* PLACEHOLDER until the watch client lands. */
#include <stdio.h>

#include "cli.h"

int cli_watch(int argc, char **argv)
{
    fprintf(stderr, "pollcast watch: not built yet\n");
    return 2;
}

/* PLACEHOLDER until the viewer lands. */
#include "viewer.h"

const char *viewer_page(size_t *len)
{
    static const char page[] = "<!doctype html><title>pollcast</title><p>viewer not built yet";
    *len = sizeof(page) - 1;
    return page;
}

/* The live viewer page served at GET /: one self-contained HTML document (no build step, no
 * CDN) that lists the configured streams, follows one with EventSource and applies the patches. */
#ifndef POLLCAST_VIEWER_H
#define POLLCAST_VIEWER_H

#include <stddef.h>

/* Returns the page (static storage) and its length. */
const char *viewer_page(size_t *len);

#endif

/* Drives a hiredis async context from pollcast's event loop: hiredis's addRead/delRead/addWrite/
 * delWrite/cleanup hooks become loop_watch calls on the context's socket (no libevent). */
#ifndef POLLCAST_STORE_REDIS_LOOP_H
#define POLLCAST_STORE_REDIS_LOOP_H

#include <hiredis/async.h>

struct loop;

/* Attaches ac to loop. From then on hiredis reads and writes when its socket is ready; the
 * attachment is undone by hiredis's cleanup hook when the context is freed. Returns 0, or -1
 * (OOM, or ac already attached) without attaching. */
int redis_loop_attach(redisAsyncContext *ac, struct loop *loop);

#endif

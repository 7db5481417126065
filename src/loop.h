/* The single-threaded event loop everything runs on: epoll for file descriptors, a timer heap,
 * and deferred callbacks that run after the current dispatch (where objects are reaped, never
 * inside their own callbacks). libmicrohttpd and libcurl's multi interface both plug into it. */
#ifndef POLLCAST_LOOP_H
#define POLLCAST_LOOP_H

#include <pthread.h>
#include <stdint.h>

struct loop;
struct loop_timer;

typedef void (*loop_fd_cb)(struct loop *loop, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(struct loop *loop, struct loop_timer *timer, void *arg);
typedef void (*loop_defer_cb)(struct loop *loop, void *arg);

/* Returns a new loop, or NULL when epoll or memory is not available. */
struct loop *loop_new(void);

/* Frees the loop. Timers and watches must have been freed or unwatched first. Deferred callbacks
 * still queued are run first (they usually reap objects). Accepts NULL. */
void loop_free(struct loop *loop);

/* Watches fd for events (EPOLLIN, EPOLLOUT, ...; level-triggered, edge-triggered with EPOLLET),
 * replacing any earlier watch of the same fd. cb is called with the events that fired. Events of
 * the earlier watch already fetched in this iteration are dropped (level triggering reports them
 * again; an edge-triggered watch should not be replaced). Unwatch an fd before closing it.
 * Returns 0 or -1 (errno set). */
int loop_watch(struct loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *arg);

/* Stops watching fd. Safe to call from any callback, including fd's own. Returns 0 or -1. */
int loop_unwatch(struct loop *loop, int fd);

/* Returns a stopped one-shot timer, or NULL on OOM. */
struct loop_timer *loop_timer_new(struct loop *loop, loop_timer_cb cb, void *arg);

/* (Re)arms the timer to fire once, delay_ms after loop_now_ms (the cached time). Cannot fail.
 * Timers due at the same ms fire in the order they were started. */
void loop_timer_start(struct loop_timer *t, uint64_t delay_ms);

/* Disarms the timer; it will not fire. Safe on a stopped timer. */
void loop_timer_stop(struct loop_timer *t);

/* Returns 1 when the timer is armed. */
int loop_timer_active(const struct loop_timer *t);

/* Stops and frees the timer. Safe from within its own callback. Accepts NULL. */
void loop_timer_free(struct loop_timer *t);

/* Runs cb(arg) once, after the callbacks of the current iteration (or at the start of the next
 * one). Deferred callbacks run in the order they were added. Returns 0 or -1 on OOM. */
int loop_defer(struct loop *loop, loop_defer_cb cb, void *arg);

/* Cancels every queued deferred call of cb with arg (e.g. before freeing arg). */
void loop_defer_cancel(struct loop *loop, loop_defer_cb cb, void *arg);

/* Milliseconds on the monotonic clock, refreshed once per loop iteration. */
uint64_t loop_now_ms(struct loop *loop);

/* Wall clock in milliseconds since the epoch (not cached). */
uint64_t loop_wall_ms(void);

/* Makes loop_run hold mutex while it runs callbacks and release it only while it waits in
 * epoll_wait, so that other threads taking mutex see the loop's objects between two dispatches
 * (the I/O threads of sse.c). NULL (the default): no lock. Set before loop_run. */
void loop_set_lock(struct loop *loop, pthread_mutex_t *mutex);

/* Runs until loop_stop. Returns 0, or -1 if epoll_wait fails other than by EINTR. */
int loop_run(struct loop *loop);

/* Makes loop_run return after the current iteration. */
void loop_stop(struct loop *loop);

#endif

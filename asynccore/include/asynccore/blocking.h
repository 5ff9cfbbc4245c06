/* asynccore: the blocking pool.
 *
 * Runs work that has no readiness API (getaddrinfo, file reads) on a bounded
 * set of threads owned by the runtime, and wakes the waiting future when it
 * is done. If the future is dropped before the work ran, the work is skipped;
 * if it is dropped while the work runs, the work finishes and `cleanup` (if
 * given) releases its result. Jobs queue FIFO when all threads are busy.
 */
#ifndef ASYNCCORE_BLOCKING_H
#define ASYNCCORE_BLOCKING_H

#include <stdbool.h>

#include "asynccore/future.h"

struct ac_runtime;
struct ac_blocking_job;

/* Runs on a pool thread; returns the result pointer handed to the future. */
typedef void *(*ac_blocking_fn)(void *arg);
/* Frees a result that nobody will read (future dropped before completion). */
typedef void (*ac_blocking_cleanup_fn)(void *result);

struct ac_blocking {
    struct ac_future base;
    struct ac_runtime *rt;
    ac_blocking_fn fn;
    void *arg;
    ac_blocking_cleanup_fn cleanup;
    struct ac_blocking_job *job; /* shared with the pool thread */
    void *result;                /* output */
    int err;                     /* output: 0, or -errno if it could not run */
};

void ac_blocking_init(struct ac_blocking *b, struct ac_runtime *rt, ac_blocking_fn fn,
                      void *arg, ac_blocking_cleanup_fn cleanup);

/* Threads started so far / the bound (for tests). */
unsigned ac_blocking_pool_threads(struct ac_runtime *rt);

#endif

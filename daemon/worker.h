/* ferryd: the daemon's state on one event-loop thread.
 *
 * struct ferry_worker is what a worker's data path touches: its loop, its
 * connection list and its drain signal.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "asynccore/runtime.h"
#include "asynccore/local_notify.h"
#include "asynccore/sync.h"
#include "pressure.h"

struct ferry_daemon;
struct ferry_conn;

struct ferry_worker {
    struct ferry_daemon *d;
    struct ac_worker *w;
    unsigned index;
    struct ac_local_notify drain; /* set on stop (ferry_worker_cut): connections end */
    pthread_mutex_t conns_lock;   /* guards the list below (taken by show conns) */
    struct ferry_conn *conns;     /* active connections on this worker */
    _Atomic uint64_t alive_ms;    /* last heartbeat of this loop (watchdog) */
    struct ferry_pressure pressure; /* local resources ran out: accepting pauses */
};

/* Sets fw's drain signal from any thread: a message through its inbox (the
 * signal itself is the worker's own, lock-free). Returns 0 or -errno. */
int ferry_worker_cut(struct ferry_worker *fw);

#endif

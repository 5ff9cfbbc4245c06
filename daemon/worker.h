/* ferryd: the daemon's state on one event-loop thread.
 *
 * struct ferry_worker is what a worker's data path touches: its loop, its
 * connection list and its drain signal. The list and the signal are the
 * worker's alone (no lock): other threads reach them through its inbox, by
 * spawning a small task on it (ferry_worker_cut, conns_view.c, the maint cut
 * of servers/admin.c).
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/list.h"
#include "asynccore/runtime.h"
#include "asynccore/local_notify.h"
#include "asynccore/sync.h"
#include "log/log.h"
#include "objcache.h"
#include "pressure.h"

struct ferry_daemon;
struct ferry_conn;
struct ferry_conn_snapshot;
struct ferry_server_stats;

struct ferry_worker {
    struct ferry_log_seat seat;   /* first: where this thread logs (log/log.h) */
    struct ferry_daemon *d;
    struct ac_worker *w;
    unsigned index;
    struct ac_local_notify drain; /* set on stop (ferry_worker_cut): connections end */
    struct ac_list conns;         /* active connections, newest first (this worker's thread only) */
    _Atomic uint64_t alive_ms;    /* last heartbeat of this loop (watchdog) */
    struct ferry_pressure pressure; /* local resources ran out: accepting pauses */
    /* Freed connections and phases for reuse (proxy/conn.c; this thread only). */
    struct ferry_objcache conn_cache, handshake_cache, upstream_cache;
};

/* Work asked of a worker by another thread: fn runs once on fw's own thread
 * (a small task through its inbox). done, when not NULL, runs exactly once
 * afterwards with ran = true, or with ran = false when fn never ran (no
 * memory, the runtime stopping with the message still queued), so whatever
 * arg holds is released either way. */
typedef void (*ferry_worker_fn)(struct ferry_worker *fw, void *arg);
typedef void (*ferry_worker_done_fn)(struct ferry_worker *fw, void *arg, bool ran);
int ferry_worker_run(struct ferry_worker *fw, ferry_worker_fn fn, void *arg,
                     ferry_worker_done_fn done);

/* Frees what the worker's caches hold: at teardown, once its tasks are gone. */
void ferry_worker_caches_clear(struct ferry_worker *fw);

/* Sets fw's drain signal from any thread: a message through its inbox (the
 * signal itself is the worker's own, lock-free). Returns 0 or -errno. */
int ferry_worker_cut(struct ferry_worker *fw);

/* On fw's own thread: a copy of each of its connections' facts, newest
 * first (malloc'd array in *out, NULL when there is none; the caller frees
 * it). Returns 0 or -ENOMEM. */
int ferry_worker_conns(struct ferry_worker *fw, struct ferry_conn_snapshot **out, size_t *n);

/* ---- a worker's connections, as the core sees them (implemented by the
 * connection itself, proxy/conn.c); each runs on fw's own thread ---- */

/* On fw's own thread (a task the runtime API spawns there): wakes each of
 * fw's connections that is forwarding to a server of stats s, so that it
 * sees s in maint and ends with end=maint. */
void ferry_conn_wake_server(struct ferry_worker *fw, const struct ferry_server_stats *s);

/* On fw's own thread, once fw's drain signal is set: wakes each of fw's
 * connections that is forwarding, so that it ends with end=drained. The run
 * phase reads the signal when polled rather than waiting on it (a waiter
 * would be 56 more bytes in every idle connection); the shorter phases wait
 * on it themselves. */
void ferry_conn_wake_running(struct ferry_worker *fw);

/* On fw's own thread: `shutdown conn ID`. Marks fw's connection `id` to end
 * at once (end=killed, closed_by=proxy, both sockets closed) and wakes it;
 * false when fw has no such connection (or it is ending already). */
bool ferry_conn_kill(struct ferry_worker *fw, uint64_t id);

/* The connection after c in fw's list (c NULL: the first), or NULL at the
 * end; worker.c walks it for views, on the worker's own thread. */
struct ferry_conn *ferry_conn_next(const struct ferry_worker *fw, const struct ferry_conn *c);
/* Copies one connection's facts, on its worker's thread (the fields are
 * that thread's alone). now: ac_clock_now_ms(). */
void ferry_conn_snapshot(const struct ferry_conn *c, uint64_t now, struct ferry_conn_snapshot *s);

#endif

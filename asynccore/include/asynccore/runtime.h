/* asynccore: tasks, workers and the runtime.
 *
 * A runtime owns N workers (one per core by default). Each worker is a
 * share-nothing event loop: its own run queue, reactor and timer wheel. A task
 * stays on the worker it was spawned on. Tasks are polled only when woken.
 *
 * Task state lives in one atomic word (flags + reference count): a wake while
 * idle queues the task once; a wake while running marks it NOTIFIED and the
 * worker polls it again after the current poll; a wake after completion is a
 * no-op. Cross-thread wakes go through the worker's inbox plus an eventfd (a
 * pipe elsewhere), coalesced so many senders cost one write per loop turn.
 */
#ifndef ASYNCCORE_RUNTIME_H
#define ASYNCCORE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/backend.h"
#include "asynccore/future.h"
#include "asynccore/waker.h"

struct ac_runtime;
struct ac_worker;
struct ac_task;

struct ac_runtime_opts {
    unsigned workers;          /* 0: ac_available_parallelism() */
    unsigned blocking_threads; /* 0: default (4) */
    enum ac_backend backend;   /* AC_BACKEND_AUTO (0): see asynccore/backend.h */
};

/* Creates the runtime and its workers (reactors, timers) but starts no thread.
 * Returns NULL and sets errno on failure. */
struct ac_runtime *ac_runtime_new(const struct ac_runtime_opts *opts);

unsigned ac_runtime_workers(const struct ac_runtime *rt);

/* The backend the runtime's reactors use (never AC_BACKEND_AUTO). */
enum ac_backend ac_runtime_backend(const struct ac_runtime *rt);
/* Where auto's choice was io_uring and the kernel refused it (epoll is used
 * instead): the refusal, -errno (e.g. -EPERM). Otherwise 0. */
int ac_runtime_backend_fallback(const struct ac_runtime *rt);
/* CPUs this process may use: the online CPUs, bounded by its affinity mask
 * and its cgroup v2 CPU quota (rounded up); at least 1. */
unsigned ac_available_parallelism(void);
struct ac_worker *ac_runtime_worker(struct ac_runtime *rt, unsigned index);

/* Runs workers 1..N-1 on new threads and worker 0 on the calling thread, and
 * returns when ac_runtime_stop() was called (from any thread or task) and every
 * worker thread has returned. Returns 0 or -errno. */
int ac_runtime_run(struct ac_runtime *rt);

/* Asks every worker loop to return. Thread-safe, async-signal-unsafe. */
void ac_runtime_stop(struct ac_runtime *rt);

/* Drops every task still alive (their futures' drop runs on the owning
 * worker's data, on the calling thread, after all loops stopped), stops the
 * blocking pool and frees everything. The runtime must not be running. */
void ac_runtime_free(struct ac_runtime *rt);

/* Spawns a top-level future on `w`. Callable from any thread. The task owns
 * the future: when it completes (or the runtime is freed) the task calls
 * ac_future_drop(f) then dealloc(f) (dealloc may be NULL for static storage).
 * Returns 0, or -errno (the future is then dropped and deallocated). */
int ac_spawn(struct ac_worker *w, struct ac_future *f, ac_dealloc_fn dealloc);

/* Runs worker `w`'s loop on the calling thread until `f` completes, then
 * returns 0 (f is not dropped: the caller reads its output and drops it).
 * Other tasks on `w` keep running meanwhile. Returns -errno on a fatal loop
 * error. `w` must not be running on another thread. */
int ac_block_on(struct ac_worker *w, struct ac_future *f);

/* Worker facts. */
unsigned ac_worker_index(const struct ac_worker *w);
struct ac_runtime *ac_worker_runtime(struct ac_worker *w);
size_t ac_worker_task_count(const struct ac_worker *w); /* live tasks */
/* The worker running on the calling thread, or NULL. */
struct ac_worker *ac_worker_current(void);

/* Per-worker user data slot (the daemon keeps its per-worker state here). */
void ac_worker_set_data(struct ac_worker *w, void *data);
void *ac_worker_data(const struct ac_worker *w);

/* Monotonic clock in milliseconds, cached once per loop turn. */
uint64_t ac_worker_now_ms(struct ac_worker *w);
/* Uncached monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t ac_clock_now_ms(void);
/* The same clock in microseconds (uncached): for timings shorter than a
 * millisecond, such as a connect over loopback. */
uint64_t ac_clock_now_us(void);

/* A future that returns Pending once (waking itself) then Ready: lets other
 * tasks run. */
struct ac_yield_now {
    struct ac_future base;
    bool yielded;
};
void ac_yield_now_init(struct ac_yield_now *y);

#endif

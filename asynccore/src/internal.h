/* asynccore internal: layouts of tasks, workers, the reactor slab and the
 * runtime, and the functions the runtime core's files share.
 */
#ifndef AC_INTERNAL_H
#define AC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/splice.h"
#include "asynccore/waker.h"
#include "poller.h"
#include "timer_wheel.h"

/* Magic numbers checked with assert() in debug builds: a freed or foreign
 * pointer fails fast instead of corrupting memory (hitch CHECK_OBJ). */
#define AC__TASK_MAGIC 0x7a5c0de1u
#define AC__WORKER_MAGIC 0x3017c0deu
#define AC__RUNTIME_MAGIC 0x52c7a11eu
#define AC__DEAD_MAGIC 0xdeadbeefu

/* ---- tasks (task.c) ----
 *
 * state: flag bits below, reference count in bits AC__TASK_REF_SHIFT and up.
 * References: one owned by the worker until completion, one per queue
 * membership (run queue or inbox), one per waker clone. */
enum {
    AC__TASK_SCHEDULED = 1u << 0, /* on a run queue or inbox */
    AC__TASK_RUNNING = 1u << 1,
    AC__TASK_NOTIFIED = 1u << 2,  /* woken while running: poll again */
    AC__TASK_COMPLETE = 1u << 3,  /* future dropped; wakes are no-ops */
};
#define AC__TASK_REF_SHIFT 8
#define AC__TASK_REF_ONE ((uint64_t)1 << AC__TASK_REF_SHIFT)

struct ac_task {
    uint32_t magic;
    _Atomic uint64_t state;
    struct ac_worker *worker;
    struct ac_future *fut;
    ac_dealloc_fn dealloc;
    struct ac_task *qnext;                /* run queue / inbox link */
    struct ac_task *live_prev, *live_next; /* worker's live list (worker thread) */
    bool linked;                          /* on the live list (worker thread) */
};

/* Allocates a task holding the owner's and the queue's references, state
 * SCHEDULED, from w's task cache when called on w's thread. Returns NULL on
 * allocation failure. */
struct ac_task *ac__task_new(struct ac_worker *w, struct ac_future *f, ac_dealloc_fn dealloc);
/* Polls a task popped from a run queue (consumes the queue reference). */
void ac__task_run(struct ac_task *t);
/* Marks the task complete, drops and deallocates its future, unlinks it and
 * releases the owner's reference (runtime teardown and completion). */
void ac__task_complete(struct ac_task *t);
void ac__task_release(struct ac_task *t);
/* A new waker reference for t (tests and internal callers). */
struct ac_waker ac__task_waker(struct ac_task *t);

/* ---- the worker's task cache (task_cache.c) ----
 *
 * Freed tasks of a worker are kept on a free list of that worker (at most
 * AC__TASK_CACHE_MAX) and reused by the next spawn on it, so a short
 * connection's task costs no malloc/free pair. Only the worker's own thread
 * touches the list: a task whose last reference goes on another thread (a
 * waker dropped by a pool thread or another worker) is freed with free(),
 * and a spawn from another thread mallocs. No lock, no atomic. */
#define AC__TASK_CACHE_MAX 256u

struct ac__task_cache {
    struct ac__task_slot *head;
    unsigned n;
};

/* A task's memory from w's cache if on w's thread and the cache has one,
 * else from malloc. NULL on allocation failure. */
struct ac_task *ac__task_cache_get(struct ac_worker *w);
/* Gives a dead task's memory back: to its worker's cache on that worker's
 * thread while there is room, else free(). */
void ac__task_cache_put(struct ac_worker *w, struct ac_task *t);
/* Frees every cached task (worker teardown). */
void ac__task_cache_clear(struct ac__task_cache *c);

/* ---- the reactor's waker map (reactor.c) ---- */
/* One registered descriptor: 48 bytes, two per proxied connection (hence
 * the union and the narrow ready). */
struct ac__reg {
    uint32_t generation;
    union {
        int fd;             /* live */
        uint32_t next_free; /* free: the free-list link */
    };
    uint32_t tick;  /* bumped by every event for this slot */
    uint16_t ready; /* readiness bits (AC_READABLE ... AC_ERROR: five) */
    bool live;
    bool unpolled; /* io_uring: its poll ended (ac__io_unpoll); re-armed on demand */
    struct ac_waker waker[2];
};
_Static_assert(sizeof(struct ac__reg) <= 48, "a reactor registration outgrew its 48 bytes");

struct ac__reactor {
    struct ac__reg *slots;
    uint32_t len, cap;
    uint32_t free_head; /* UINT32_MAX: empty */
    uint32_t *to_free;  /* deregistered during this turn, freed after dispatch */
    uint32_t nto_free, to_free_cap;
    unsigned live;
};

int ac__reactor_init(struct ac__reactor *r);
/* Drops every waker still held and frees the slab. */
void ac__reactor_destroy(struct ac__reactor *r);
/* Applies a batch of events to the waker map, then frees deregistered slots. */
void ac__reactor_dispatch(struct ac_worker *w, const struct ac__poll_event *ev, int n);
/* The worker's completion operations (uring_op.h): on io_uring with a
 * buffer ring, else NULL. */
struct ac__uring *ac__worker_uring(struct ac_worker *w);
/* io's reader now uses completion operations: its readiness poll ends
 * (io_uring), unless someone waits for readiness on it; its registration
 * stays. Whoever asks for readiness later (ac_io_poll_ready) and has to
 * wait re-arms the poll, so sharing a descriptor between a ring-mode copy
 * and a readiness user is safe. Idempotent. */
void ac__io_unpoll(struct ac_io *io);
/* Whether io's backend is edge-triggered (a short read or write may clear
 * readiness: src/stream.c). */
bool ac__io_edge(const struct ac_io *io);

/* ---- workers (worker.c) ---- */
#define AC__EVENTS_MAX 256
/* Task polls per loop turn before I/O and timers get their turn. */
#define AC__TURN_TASKS 256

struct ac_worker {
    uint32_t magic;
    unsigned index;
    struct ac_runtime *rt;
    const struct ac__backend *be; /* the runtime's poller backend */
    struct ac__poller *poller;
    struct ac__reactor reactor;
    struct ac__wheel wheel;
    uint64_t now_ms;
    /* local run queue (worker thread only) */
    struct ac_task *runq_head, *runq_tail;
    /* cross-thread inbox: a lock-free stack taken whole by the worker */
    _Atomic(struct ac_task *) inbox;
    /* set by the first cross-thread sender of a loop turn: one wake-up write */
    atomic_bool wake_pending;
    /* the ac_block_on pseudo-task was woken */
    atomic_bool block_woken;
    bool in_block_on;
    struct ac_task *live; /* live tasks (worker thread) */
    atomic_size_t task_count;
    void *data;
    unsigned char *scratch;
    struct ac_pipe_pool pipes; /* idle pipes for splice (asynccore/splice.h) */
    struct ac__task_cache tasks; /* freed tasks for reuse (worker thread) */
    pthread_t thread;
    int loop_rc;
    struct ac__poll_event events[AC__EVENTS_MAX];
};

struct ac_worker *ac__worker_new(struct ac_runtime *rt, unsigned index,
                                 const struct ac__backend *be, int *err);
/* Drops every live task, then (second phase) releases queued references and
 * frees the worker. Split so that the blocking pool stops in between. */
void ac__worker_drop_tasks(struct ac_worker *w);
void ac__worker_free(struct ac_worker *w);
/* Runs the loop on the calling thread until the runtime stops (block_on NULL)
 * or block_on completes. Returns 0 or -errno. */
int ac__worker_loop(struct ac_worker *w, struct ac_future *block_on);
/* Makes a task runnable on its worker (the caller transferred a queue
 * reference): local queue on the worker's thread, inbox otherwise. */
void ac__worker_schedule(struct ac_worker *w, struct ac_task *t);
/* Wakes the worker's poller, coalesced with wake_pending. Any thread. */
void ac__worker_notify(struct ac_worker *w);
void ac__worker_link(struct ac_worker *w, struct ac_task *t);
void ac__worker_unlink(struct ac_worker *w, struct ac_task *t);

/* ---- the runtime (runtime.c) ---- */
struct ac_runtime {
    uint32_t magic;
    unsigned nworkers;
    struct ac_worker **workers;
    struct ac_blocking_pool *pool;
    const struct ac__backend *be;
    int backend_fallback; /* -errno io_uring was refused with under auto */
    atomic_bool stop;
};

#endif

/* asynccore: the runtime: workers, their threads, spawning, the blocking
 * pool's lifetime, the clock and yield_now.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "blocking_pool.h"
#include "internal.h"

static struct ac_runtime *checked(const struct ac_runtime *rt)
{
    assert(rt != NULL && rt->magic == AC__RUNTIME_MAGIC);
    return (struct ac_runtime *)rt;
}

/* Resolves the backend and creates worker 0 with it: where auto's io_uring is
 * refused by the kernel, epoll instead (the refusal is kept for the caller's
 * one warning); a named backend that fails fails the runtime. */
static int choose_backend(struct ac_runtime *rt, enum ac_backend requested)
{
    bool automatic;
    int err = ac__backend_choose(requested, &rt->be, &automatic);
    if (err < 0)
        return err;
    rt->workers[0] = ac__worker_new(rt, 0, rt->be, &err);
    if (rt->workers[0] != NULL)
        return 0;
    const struct ac__backend *epoll = ac__backend_get(AC_BACKEND_EPOLL);
    if (!automatic || rt->be->id != AC_BACKEND_IO_URING || epoll == NULL || err == -ENOMEM)
        return err;
    rt->backend_fallback = err;
    rt->be = epoll;
    rt->workers[0] = ac__worker_new(rt, 0, rt->be, &err);
    return rt->workers[0] != NULL ? 0 : err;
}

struct ac_runtime *ac_runtime_new(const struct ac_runtime_opts *opts)
{
    struct ac_runtime_opts o = opts ? *opts : (struct ac_runtime_opts){0};
    struct ac_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    rt->magic = AC__RUNTIME_MAGIC;
    atomic_init(&rt->stop, false);
    rt->nworkers = o.workers ? o.workers : ac_available_parallelism();
    rt->workers = calloc(rt->nworkers, sizeof(*rt->workers));
    int err = -ENOMEM;
    if (rt->workers == NULL)
        goto fail;
    if ((err = choose_backend(rt, o.backend)) < 0)
        goto fail;
    for (unsigned i = 1; i < rt->nworkers; i++)
        if ((rt->workers[i] = ac__worker_new(rt, i, rt->be, &err)) == NULL)
            goto fail;
    rt->pool = ac__blocking_pool_new(o.blocking_threads ? o.blocking_threads : 4);
    if (rt->pool == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    return rt;
fail:
    ac_runtime_free(rt);
    errno = -err;
    return NULL;
}

unsigned ac_runtime_workers(const struct ac_runtime *rt) { return checked(rt)->nworkers; }

enum ac_backend ac_runtime_backend(const struct ac_runtime *rt) { return checked(rt)->be->id; }

int ac_runtime_backend_fallback(const struct ac_runtime *rt)
{
    return checked(rt)->backend_fallback;
}

struct ac_worker *ac_runtime_worker(struct ac_runtime *rt, unsigned index)
{
    checked(rt);
    return index < rt->nworkers ? rt->workers[index] : NULL;
}

struct ac_blocking_pool *ac__runtime_blocking_pool(struct ac_runtime *rt)
{
    return checked(rt)->pool;
}

static void *worker_thread(void *arg)
{
    struct ac_worker *w = arg;
    w->loop_rc = ac__worker_loop(w, NULL);
    if (w->loop_rc < 0)
        ac_runtime_stop(w->rt); /* a dead loop stops them all */
    return NULL;
}

int ac_runtime_run(struct ac_runtime *rt)
{
    checked(rt);
    unsigned started = 1;
    int rc = 0;
    for (; started < rt->nworkers; started++) {
        struct ac_worker *w = rt->workers[started];
        int e = pthread_create(&w->thread, NULL, worker_thread, w);
        if (e != 0) {
            rc = -e;
            ac_runtime_stop(rt);
            break;
        }
    }
    if (rc == 0) {
        rc = ac__worker_loop(rt->workers[0], NULL);
        if (rc < 0)
            ac_runtime_stop(rt);
    }
    for (unsigned i = 1; i < started; i++) {
        pthread_join(rt->workers[i]->thread, NULL);
        if (rc == 0 && rt->workers[i]->loop_rc < 0)
            rc = rt->workers[i]->loop_rc;
    }
    /* Consumed: a later run starts afresh. */
    atomic_store(&rt->stop, false);
    return rc;
}

void ac_runtime_stop(struct ac_runtime *rt)
{
    checked(rt);
    atomic_store(&rt->stop, true);
    for (unsigned i = 0; i < rt->nworkers; i++)
        ac__worker_notify(rt->workers[i]);
}

void ac_runtime_free(struct ac_runtime *rt)
{
    if (rt == NULL)
        return;
    checked(rt);
    if (rt->workers != NULL) {
        /* Futures first (their drops may still use reactors, timers and the
         * blocking pool), then the pool (its threads may still wake tasks,
         * now complete), then the workers. */
        for (unsigned i = 0; i < rt->nworkers; i++)
            if (rt->workers[i] != NULL)
                ac__worker_drop_tasks(rt->workers[i]);
    }
    if (rt->pool != NULL)
        ac__blocking_pool_free(rt->pool);
    if (rt->workers != NULL) {
        for (unsigned i = 0; i < rt->nworkers; i++)
            ac__worker_free(rt->workers[i]);
        free(rt->workers);
    }
    rt->magic = AC__DEAD_MAGIC;
    free(rt);
}

int ac_spawn(struct ac_worker *w, struct ac_future *f, ac_dealloc_fn dealloc)
{
    if (w == NULL || w->magic != AC__WORKER_MAGIC) {
        ac_future_drop(f);
        if (dealloc != NULL)
            dealloc(f);
        return -EINVAL;
    }
    struct ac_task *t = ac__task_new(w, f, dealloc);
    if (t == NULL) {
        ac_future_drop(f);
        if (dealloc != NULL)
            dealloc(f);
        return -ENOMEM;
    }
    atomic_fetch_add(&w->task_count, 1);
    if (ac_worker_current() == w)
        ac__worker_link(w, t); /* else linked when the worker takes its inbox */
    ac__worker_schedule(w, t);
    return 0;
}

uint64_t ac_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ac_clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static ac_poll_t yield_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ac_yield_now *y = (struct ac_yield_now *)f;
    if (y->yielded)
        return AC_READY;
    y->yielded = true;
    ac_waker_wake_by_ref(cx->waker);
    return AC_PENDING;
}

static const struct ac_future_vtable yield_vt = {yield_poll, NULL};

void ac_yield_now_init(struct ac_yield_now *y)
{
    y->base.vt = &yield_vt;
    y->yielded = false;
}

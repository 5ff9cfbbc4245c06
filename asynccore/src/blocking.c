/* asynccore: the blocking pool.
 *
 * A job is heap-allocated and shared by the future and the pool (two
 * references). The pool keeps a FIFO queue and at most max_threads threads,
 * started when a job is queued and no idle thread can take it.
 *
 * The job's mutex orders the pool thread against the future: the pool wakes
 * the stored waker while holding it, so once the future's drop has taken the
 * lock and cleared the waker, no wake for that task can still be in flight
 * (the runtime may free the worker right after dropping its tasks).
 */
#include "asynccore/blocking.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "asynccore/runtime.h"
#include "blocking_pool.h"

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_CANCELLED };

struct ac_blocking_job {
    pthread_mutex_t lock;
    atomic_uint refs;
    struct ac_blocking_job *next; /* pool queue link (pool lock) */
    ac_blocking_fn fn;
    void *arg;
    ac_blocking_cleanup_fn cleanup;
    void *result;
    struct ac_waker waker;
    enum job_state state;
    bool abandoned; /* the future was dropped */
};

struct ac_blocking_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ac_blocking_job *head, *tail;
    size_t queued;
    pthread_t *threads;
    unsigned max, started, idle;
    bool shutdown;
};

/* ---- jobs ---- */

static struct ac_blocking_job *job_new(struct ac_blocking *b)
{
    struct ac_blocking_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return NULL;
    if (pthread_mutex_init(&job->lock, NULL) != 0) {
        free(job);
        return NULL;
    }
    atomic_init(&job->refs, 2);
    job->fn = b->fn;
    job->arg = b->arg;
    job->cleanup = b->cleanup;
    job->waker = AC_WAKER_NONE;
    job->state = JOB_QUEUED;
    return job;
}

static void job_release(struct ac_blocking_job *job)
{
    if (atomic_fetch_sub_explicit(&job->refs, 1, memory_order_acq_rel) != 1)
        return;
    ac_waker_drop(&job->waker);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

/* Runs one job on a pool thread, then releases the pool's reference. */
static void job_run(struct ac_blocking_job *job)
{
    void *result;
    bool abandoned;

    pthread_mutex_lock(&job->lock);
    abandoned = job->abandoned;
    job->state = abandoned ? JOB_CANCELLED : JOB_RUNNING;
    pthread_mutex_unlock(&job->lock);
    if (abandoned) { /* dropped before it started: skip the work */
        job_release(job);
        return;
    }

    result = job->fn(job->arg);

    pthread_mutex_lock(&job->lock);
    abandoned = job->abandoned;
    job->state = JOB_DONE;
    if (!abandoned) {
        job->result = result;
        ac_waker_wake(&job->waker);
    }
    pthread_mutex_unlock(&job->lock);
    if (abandoned && job->cleanup != NULL && result != NULL)
        job->cleanup(result);
    job_release(job);
}

/* A queued job the pool will never run (shutdown). */
static void job_cancel(struct ac_blocking_job *job)
{
    pthread_mutex_lock(&job->lock);
    job->state = JOB_CANCELLED;
    ac_waker_wake(&job->waker);
    pthread_mutex_unlock(&job->lock);
    job_release(job);
}

/* ---- pool ---- */

static void *pool_thread(void *arg)
{
    struct ac_blocking_pool *pool = arg;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct ac_blocking_job *job;

        while (pool->head == NULL && !pool->shutdown) {
            pool->idle++;
            pthread_cond_wait(&pool->cond, &pool->lock);
            pool->idle--;
        }
        if (pool->shutdown)
            break; /* queued jobs are cancelled by ac__blocking_pool_free */
        job = pool->head;
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        pthread_mutex_unlock(&pool->lock);
        job_run(job);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

struct ac_blocking_pool *ac__blocking_pool_new(unsigned max_threads)
{
    struct ac_blocking_pool *pool = calloc(1, sizeof(*pool));

    if (pool == NULL)
        return NULL;
    pool->max = max_threads > 0 ? max_threads : 1;
    pool->threads = calloc(pool->max, sizeof(*pool->threads));
    if (pool->threads == NULL)
        goto fail_threads;
    if (pthread_mutex_init(&pool->lock, NULL) != 0)
        goto fail_lock;
    if (pthread_cond_init(&pool->cond, NULL) != 0)
        goto fail_cond;
    return pool;

fail_cond:
    pthread_mutex_destroy(&pool->lock);
fail_lock:
    free(pool->threads);
fail_threads:
    free(pool);
    return NULL;
}

void ac__blocking_pool_free(struct ac_blocking_pool *pool)
{
    struct ac_blocking_job *job;

    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->shutdown = true;
    job = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);

    while (job != NULL) {
        struct ac_blocking_job *next = job->next;

        job_cancel(job);
        job = next;
    }
    /* Running jobs finish; no thread takes a new one after shutdown. */
    for (unsigned i = 0; i < pool->started; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

/* Starts one more pool thread with every signal blocked, so signals keep
 * going to the threads that handle them. Pool lock held. */
static int pool_spawn_locked(struct ac_blocking_pool *pool)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&pool->threads[pool->started], NULL, pool_thread, pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    pool->started++;
    return 0;
}

/* Queues a job (taking the pool's reference). Returns 0, -ECANCELED after
 * shutdown, or -errno when no thread exists and none could be started. */
static int pool_submit(struct ac_blocking_pool *pool, struct ac_blocking_job *job)
{
    int rc = 0;

    pthread_mutex_lock(&pool->lock);
    if (pool->shutdown) {
        pthread_mutex_unlock(&pool->lock);
        return -ECANCELED;
    }
    job->next = NULL;
    if (pool->tail != NULL)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    if (pool->queued > pool->idle && pool->started < pool->max) {
        rc = pool_spawn_locked(pool);
        if (rc != 0 && pool->started > 0)
            rc = 0; /* an existing thread will get to it */
    }
    if (rc != 0) {
        /* No thread exists and none could start: nobody will ever run it.
         * With no thread, every earlier submission failed the same way, so
         * this job is alone in the queue. */
        pool->head = pool->tail = NULL;
        pool->queued = 0;
    } else {
        pthread_cond_signal(&pool->cond);
    }
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

unsigned ac_blocking_pool_threads(struct ac_runtime *rt)
{
    struct ac_blocking_pool *pool = ac__runtime_blocking_pool(rt);
    unsigned n;

    if (pool == NULL)
        return 0;
    pthread_mutex_lock(&pool->lock);
    n = pool->started;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

/* ---- the future ---- */

/* First poll: create the job, store the waker, queue it. */
static ac_poll_t blocking_start(struct ac_blocking *b, struct ac_context *cx)
{
    struct ac_runtime *rt = b->rt;
    struct ac_blocking_pool *pool;
    struct ac_blocking_job *job;
    int rc;

    if (rt == NULL && cx->worker != NULL)
        rt = ac_worker_runtime(cx->worker);
    pool = rt != NULL ? ac__runtime_blocking_pool(rt) : NULL;
    if (pool == NULL) {
        b->err = -ECANCELED;
        return AC_READY;
    }
    job = job_new(b);
    if (job == NULL) {
        b->err = -ENOMEM;
        return AC_READY;
    }
    job->waker = ac_waker_clone(cx->waker);
    rc = pool_submit(pool, job);
    if (rc != 0) {
        ac_waker_drop(&job->waker);
        job_release(job); /* the pool's reference, never taken */
        job_release(job);
        b->err = rc;
        return AC_READY;
    }
    b->job = job;
    return AC_PENDING;
}

static ac_poll_t blocking_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_blocking *b = (struct ac_blocking *)self;
    struct ac_blocking_job *job = b->job;
    ac_poll_t ret = AC_READY;

    if (job == NULL)
        return blocking_start(b, cx);
    pthread_mutex_lock(&job->lock);
    if (job->state == JOB_DONE) {
        b->result = job->result;
        job->result = NULL;
    } else if (job->state == JOB_CANCELLED) {
        b->err = -ECANCELED;
    } else {
        ac_waker_register(&job->waker, cx->waker);
        ret = AC_PENDING;
    }
    if (ret == AC_READY)
        ac_waker_drop(&job->waker);
    pthread_mutex_unlock(&job->lock);
    if (ret == AC_READY) {
        b->job = NULL;
        job_release(job);
    }
    return ret;
}

static void blocking_drop(struct ac_future *self)
{
    struct ac_blocking *b = (struct ac_blocking *)self;
    struct ac_blocking_job *job = b->job;
    void *orphan = NULL;

    if (job == NULL)
        return;
    b->job = NULL;
    pthread_mutex_lock(&job->lock);
    job->abandoned = true;
    ac_waker_drop(&job->waker);
    if (job->state == JOB_DONE) { /* finished but never observed */
        orphan = job->result;
        job->result = NULL;
    }
    pthread_mutex_unlock(&job->lock);
    if (orphan != NULL && job->cleanup != NULL)
        job->cleanup(orphan);
    job_release(job);
}

static const struct ac_future_vtable blocking_vt = {blocking_poll, blocking_drop};

void ac_blocking_init(struct ac_blocking *b, struct ac_runtime *rt, ac_blocking_fn fn,
                      void *arg, ac_blocking_cleanup_fn cleanup)
{
    b->base.vt = &blocking_vt;
    b->rt = rt;
    b->fn = fn;
    b->arg = arg;
    b->cleanup = cleanup;
    b->job = NULL;
    b->result = NULL;
    b->err = 0;
}

/* ferryd: `show conns` gathered from every worker (see conns_view.h).
 *
 * The view and the workers' tasks share one gather: a slot per worker, the
 * count of slots still waiting, and the view's waker. It lives on the
 * control path only, so a mutex guards it (the data path never sees it). It
 * is reference counted: the view holds one reference and each worker's task
 * one, so a task that answers after the view gave up (or was dropped with
 * its client) still has somewhere to put its copy, and the last one out
 * frees what nobody took.
 *
 * A worker that does not answer within the wait: its loop has stopped (the
 * daemon is exiting; its task then sits in its inbox until the runtime is
 * freed and its drop answers "none") or it is stuck in one poll (the
 * watchdog and /live report that). `show conns` must not hang on it, nor
 * block worker 0's loop, which serves the control socket: the answer lists
 * the connections of the workers that did answer, and one warning names how
 * many were left out. A stopping worker's connections are being drained or
 * cut anyway; an error instead would hide the ones that are still listed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "control/conns_view.h"
#include "log/log.h"
#include "worker.h"

enum answer_state { ANSWER_WAITING, ANSWER_GIVEN, ANSWER_FAILED, ANSWER_NONE };

struct answer {
    enum answer_state state;
    struct ferry_conn_snapshot *conns; /* ANSWER_GIVEN: owned by the gather */
    size_t n;
};

struct ferry_conns_gather {
    pthread_mutex_t lock;
    unsigned refs;         /* the view's and each task's not yet answered */
    unsigned waiting;      /* slots still ANSWER_WAITING */
    struct ac_waker waker; /* the view's, while it waits */
    uint64_t kill_id;      /* shutdown conn: answers carry n = connections ended */
    unsigned nworkers;
    struct answer a[];
};

static struct ferry_conns_gather *gather_new(unsigned nworkers)
{
    struct ferry_conns_gather *g = calloc(1, sizeof(*g) + nworkers * sizeof(g->a[0]));
    if (!g)
        return NULL;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        return NULL;
    }
    g->refs = 1 + nworkers;
    g->waiting = g->nworkers = nworkers;
    g->waker = AC_WAKER_NONE;
    return g;
}

/* Lets go of one reference; the last frees the copies nobody took. Called
 * without the lock held. */
static void gather_release(struct ferry_conns_gather *g)
{
    pthread_mutex_lock(&g->lock);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last)
        return;
    for (unsigned i = 0; i < g->nworkers; i++)
        free(g->a[i].conns);
    ac_waker_drop(&g->waker);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* Fills worker i's slot (once) and, when it was the last one waiting, wakes
 * the view. The wake happens under the lock: once the view's drop took the
 * lock and dropped its waker, no wake for it is still in flight (the rule
 * of asynccore/src/sync.c). Then lets go of the task's reference. */
static void gather_answer(struct ferry_conns_gather *g, unsigned i, enum answer_state state,
                          struct ferry_conn_snapshot *conns, size_t n)
{
    pthread_mutex_lock(&g->lock);
    struct answer *a = &g->a[i];
    if (a->state == ANSWER_WAITING) {
        a->state = state;
        a->conns = conns;
        a->n = n;
        conns = NULL;
        if (--g->waiting == 0)
            ac_waker_wake(&g->waker);
    }
    pthread_mutex_unlock(&g->lock);
    free(conns);
    gather_release(g);
}

/* ---- the question on each worker ---- */

static void ask_on_worker(struct ferry_worker *fw, void *arg)
{
    struct ferry_conns_gather *g = arg;
    struct ferry_conn_snapshot *conns = NULL;
    size_t n = 0;
    if (g->kill_id) { /* on fw's own thread, like the copy below */
        gather_answer(g, fw->index, ANSWER_GIVEN, NULL, ferry_conn_kill(fw, g->kill_id));
        return;
    }
    int rc = ferry_worker_conns(fw, &conns, &n); /* on fw's own thread */
    gather_answer(g, fw->index, rc == 0 ? ANSWER_GIVEN : ANSWER_FAILED, conns, n);
}

/* Never ran (no memory, or the runtime is freed with the question still in
 * a stopped worker's inbox): "no answer". */
static void ask_done(struct ferry_worker *fw, void *g, bool ran)
{
    if (!ran)
        gather_answer(g, fw->index, ANSWER_NONE, NULL, 0);
}

static void ask_worker(struct ferry_conns_gather *g, struct ferry_worker *fw)
{
    (void)ferry_worker_run(fw, ask_on_worker, g, ask_done);
}

/* ---- the view ---- */

/* Copies the answers into one array, in worker order. Under g->lock. */
static void merge(struct ferry_conns_view *v)
{
    struct ferry_conns_gather *g = v->g;
    size_t total = 0;
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (g->a[i].state == ANSWER_GIVEN)
            total += g->a[i].n;
        else if (g->a[i].state == ANSWER_FAILED)
            v->err = -ENOMEM;
        else
            v->missing++;
    }
    if (g->kill_id) {
        v->killed = total;
        return;
    }
    if (v->err != 0 || total == 0)
        return;
    v->conns = malloc(total * sizeof(*v->conns));
    if (!v->conns) {
        v->err = -ENOMEM;
        return;
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (g->a[i].state != ANSWER_GIVEN || g->a[i].n == 0)
            continue;
        memcpy(v->conns + v->n, g->a[i].conns, g->a[i].n * sizeof(*v->conns));
        v->n += g->a[i].n;
    }
}

static int start(struct ferry_conns_view *v)
{
    struct ferry_daemon *d = v->d;
    v->g = gather_new(d->nworkers);
    if (!v->g)
        return -ENOMEM;
    v->g->kill_id = v->kill_id;
    ac_sleep_init(&v->deadline, v->wait_ms);
    for (unsigned i = 0; i < d->nworkers; i++)
        ask_worker(v->g, &d->workers[i]);
    return 0;
}

static ac_poll_t view_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_conns_view *v = (struct ferry_conns_view *)f;
    if (!v->g && start(v) != 0) {
        v->err = -ENOMEM;
        return AC_READY;
    }
    struct ferry_conns_gather *g = v->g;
    pthread_mutex_lock(&g->lock);
    bool all = g->waiting == 0;
    if (!all)
        ac_waker_register(&g->waker, cx->waker);
    pthread_mutex_unlock(&g->lock);
    if (!all && ac_future_poll(&v->deadline.base, cx) == AC_PENDING)
        return AC_PENDING;
    pthread_mutex_lock(&g->lock);
    ac_waker_drop(&g->waker);
    merge(v);
    pthread_mutex_unlock(&g->lock);
    if (v->missing)
        ferry_log(FERRY_LOG_WARN, "conns_view_partial", "workers_missing=%u workers=%u wait_ms=%llu",
                  v->missing, g->nworkers, (unsigned long long)v->wait_ms);
    ac_future_drop(&v->deadline.base);
    v->g = NULL;
    gather_release(g);
    return AC_READY;
}

static void view_drop(struct ac_future *f)
{
    struct ferry_conns_view *v = (struct ferry_conns_view *)f;
    if (v->g) { /* dropped while waiting (its client went away) */
        pthread_mutex_lock(&v->g->lock);
        ac_waker_drop(&v->g->waker);
        pthread_mutex_unlock(&v->g->lock);
        ac_future_drop(&v->deadline.base);
        gather_release(v->g);
        v->g = NULL;
    }
    free(v->conns);
    v->conns = NULL;
    v->n = 0;
}

static const struct ac_future_vtable view_vt = {view_poll, view_drop};

void ferry_conns_view_init(struct ferry_conns_view *v, struct ferry_daemon *d, uint64_t wait_ms)
{
    memset(v, 0, sizeof(*v));
    v->base.vt = &view_vt;
    v->d = d;
    v->wait_ms = wait_ms;
}

void ferry_conns_view_init_kill(struct ferry_conns_view *v, struct ferry_daemon *d,
                                uint64_t wait_ms, uint64_t id)
{
    ferry_conns_view_init(v, d, wait_ms);
    v->kill_id = id;
}

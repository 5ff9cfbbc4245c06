/* asynccore: tasks and their wakers.
 *
 * The task state is one atomic word (tokio runtime/task/state.rs): flags plus
 * a reference count. The waker's data pointer is the task itself, so clone is
 * a reference increment. Waking:
 *   idle      -> SCHEDULED, +1 reference for the queue, pushed once;
 *   scheduled -> nothing (already queued);
 *   running   -> NOTIFIED: the worker re-queues it when the poll returns;
 *   complete  -> nothing.
 * So a wake is never lost and a task is never queued twice.
 */
#include <assert.h>
#include <stdlib.h>

#include "internal.h"

static void task_wake_by_ref(const void *data);
static void task_wake(const void *data);
static void task_drop_waker(const void *data);
static struct ac_waker task_clone(const void *data);

static const struct ac_waker_vtable task_waker_vt = {task_clone, task_wake, task_wake_by_ref,
                                                     task_drop_waker};

static struct ac_task *task_of(const void *data)
{
    struct ac_task *t = (struct ac_task *)data;
    assert(t->magic == AC__TASK_MAGIC);
    return t;
}

struct ac_task *ac__task_new(struct ac_worker *w, struct ac_future *f, ac_dealloc_fn dealloc)
{
    /* The worker's cache, else malloc (not calloc: glibc's calloc bypasses
     * the thread cache and costs a trip through the arena). */
    struct ac_task *t = ac__task_cache_get(w);
    if (t == NULL)
        return NULL;
    *t = (struct ac_task){.magic = AC__TASK_MAGIC, .worker = w, .fut = f, .dealloc = dealloc};
    atomic_init(&t->state, AC__TASK_SCHEDULED | 2 * AC__TASK_REF_ONE);
    return t;
}

void ac__task_release(struct ac_task *t)
{
    assert(t->magic == AC__TASK_MAGIC);
    uint64_t prev = atomic_fetch_sub_explicit(&t->state, AC__TASK_REF_ONE, memory_order_acq_rel);
    assert((prev >> AC__TASK_REF_SHIFT) >= 1);
    if ((prev >> AC__TASK_REF_SHIFT) == 1) {
        /* The owner's reference goes only at completion: the future is gone. */
        assert(prev & AC__TASK_COMPLETE);
        t->magic = AC__DEAD_MAGIC;
        ac__task_cache_put(t->worker, t);
    }
}

static struct ac_waker task_clone(const void *data)
{
    struct ac_task *t = task_of(data);
    atomic_fetch_add_explicit(&t->state, AC__TASK_REF_ONE, memory_order_relaxed);
    return (struct ac_waker){&task_waker_vt, t};
}

struct ac_waker ac__task_waker(struct ac_task *t) { return task_clone(t); }

static void task_wake_by_ref(const void *data)
{
    struct ac_task *t = task_of(data);
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        uint64_t ns;
        if (s & (AC__TASK_COMPLETE | AC__TASK_NOTIFIED | AC__TASK_SCHEDULED))
            return;
        if (s & AC__TASK_RUNNING)
            ns = s | AC__TASK_NOTIFIED;
        else
            ns = (s | AC__TASK_SCHEDULED) + AC__TASK_REF_ONE; /* the queue's reference */
        if (atomic_compare_exchange_weak_explicit(&t->state, &s, ns, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (!(s & AC__TASK_RUNNING))
                ac__worker_schedule(t->worker, t);
            return;
        }
    }
}

static void task_wake(const void *data)
{
    task_wake_by_ref(data);
    ac__task_release(task_of(data));
}

static void task_drop_waker(const void *data) { ac__task_release(task_of(data)); }

void ac__task_complete(struct ac_task *t)
{
    assert(t->magic == AC__TASK_MAGIC);
    uint64_t s = atomic_fetch_or_explicit(&t->state, AC__TASK_COMPLETE, memory_order_acq_rel);
    if (s & AC__TASK_COMPLETE)
        return;
    /* Wakes from here on (even from the drop below) are no-ops. */
    atomic_fetch_and_explicit(&t->state, ~(uint64_t)(AC__TASK_RUNNING | AC__TASK_NOTIFIED),
                              memory_order_acq_rel);
    ac_future_drop(t->fut);
    if (t->dealloc != NULL)
        t->dealloc(t->fut);
    t->fut = NULL;
    ac__worker_unlink(t->worker, t);
    atomic_fetch_sub(&t->worker->task_count, 1);
    ac__task_release(t);
}

void ac__task_run(struct ac_task *t)
{
    assert(t->magic == AC__TASK_MAGIC);
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    uint64_t ns;
    do {
        if (s & AC__TASK_COMPLETE) {
            ac__task_release(t);
            return;
        }
        ns = (s & ~(uint64_t)AC__TASK_SCHEDULED) | AC__TASK_RUNNING;
    } while (!atomic_compare_exchange_weak_explicit(&t->state, &s, ns, memory_order_acq_rel,
                                                    memory_order_acquire));

    struct ac_waker waker = {&task_waker_vt, t};
    struct ac_context cx = {&waker, t->worker, AC_COOP_BUDGET};
    if (ac_future_poll(t->fut, &cx) == AC_READY) {
        ac__task_complete(t);
        ac__task_release(t); /* the queue's reference */
        return;
    }

    s = atomic_load_explicit(&t->state, memory_order_acquire);
    do {
        ns = s & ~(uint64_t)(AC__TASK_RUNNING | AC__TASK_NOTIFIED);
        if (s & AC__TASK_NOTIFIED)
            ns |= AC__TASK_SCHEDULED;
    } while (!atomic_compare_exchange_weak_explicit(&t->state, &s, ns, memory_order_acq_rel,
                                                    memory_order_acquire));
    if (s & AC__TASK_NOTIFIED)
        ac__worker_schedule(t->worker, t); /* the queue reference moves on */
    else
        ac__task_release(t);
}

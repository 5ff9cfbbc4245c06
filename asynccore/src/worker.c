/* asynccore: a worker, one share-nothing event loop.
 *
 * One loop turn:
 *   cache the clock; take the inbox (cross-thread spawns and wakes);
 *   fire expired timers (moved out of the wheel first, then woken);
 *   poll the block_on future if it was woken; run queued tasks (at most
 *   AC__TURN_TASKS, so I/O is not starved); wait for I/O, with timeout 0 if
 *   anything is runnable, else until the next timer; dispatch the events to
 *   the waker map.
 * Cross-thread senders push onto the inbox and write the poller's wake-up
 * only if wake_pending was clear, so a loop turn costs at most one write.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "asynccore/copy.h"
#include "asynccore/splice.h"
#include "internal.h"

/* The worker whose loop runs on this thread. */
static _Thread_local struct ac_worker *tl_current;

struct ac_worker *ac_worker_current(void) { return tl_current; }

static struct ac_worker *checked(const struct ac_worker *w)
{
    assert(w != NULL && w->magic == AC__WORKER_MAGIC);
    return (struct ac_worker *)w;
}

struct ac_worker *ac__worker_new(struct ac_runtime *rt, unsigned index,
                                 const struct ac__backend *be, int *err)
{
    struct ac_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    w->scratch = malloc(AC_SCRATCH_SIZE);
    if (w->scratch == NULL) {
        *err = -ENOMEM;
        goto fail_worker;
    }
    w->be = be;
    if ((*err = be->new(&w->poller)) < 0)
        goto fail_scratch;
    if ((*err = ac__reactor_init(&w->reactor)) < 0)
        goto fail_poller;
    w->magic = AC__WORKER_MAGIC;
    w->index = index;
    w->rt = rt;
    w->now_ms = ac_clock_now_ms();
    ac__wheel_init(&w->wheel, w->now_ms);
    atomic_init(&w->inbox, NULL);
    atomic_init(&w->wake_pending, false);
    atomic_init(&w->block_woken, false);
    atomic_init(&w->task_count, 0);
    return w;

fail_poller:
    w->be->free(w->poller);
fail_scratch:
    free(w->scratch);
fail_worker:
    free(w);
    return NULL;
}

/* ---- queues ---- */

static void runq_push(struct ac_worker *w, struct ac_task *t)
{
    t->qnext = NULL;
    if (w->runq_tail != NULL)
        w->runq_tail->qnext = t;
    else
        w->runq_head = t;
    w->runq_tail = t;
}

static struct ac_task *runq_pop(struct ac_worker *w)
{
    struct ac_task *t = w->runq_head;
    if (t != NULL) {
        w->runq_head = t->qnext;
        if (w->runq_head == NULL)
            w->runq_tail = NULL;
        t->qnext = NULL;
    }
    return t;
}

void ac__worker_notify(struct ac_worker *w)
{
    if (!atomic_exchange(&w->wake_pending, true))
        (void)w->be->wake(w->poller); /* fails only if the fd is gone */
}

void ac__worker_schedule(struct ac_worker *w, struct ac_task *t)
{
    checked(w);
    if (tl_current == w) {
        runq_push(w, t);
        return;
    }
    struct ac_task *head = atomic_load(&w->inbox);
    do {
        t->qnext = head;
    } while (!atomic_compare_exchange_weak(&w->inbox, &head, t));
    ac__worker_notify(w);
}

void ac__worker_link(struct ac_worker *w, struct ac_task *t)
{
    t->live_prev = NULL;
    t->live_next = w->live;
    if (w->live != NULL)
        w->live->live_prev = t;
    w->live = t;
    t->linked = true;
}

void ac__worker_unlink(struct ac_worker *w, struct ac_task *t)
{
    if (!t->linked)
        return;
    if (t->live_prev != NULL)
        t->live_prev->live_next = t->live_next;
    else
        w->live = t->live_next;
    if (t->live_next != NULL)
        t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    t->linked = false;
}

/* Moves the inbox (a LIFO stack) onto the run queue in arrival order. New
 * tasks spawned from other threads join the live list here. */
static void drain_inbox(struct ac_worker *w)
{
    struct ac_task *t = atomic_exchange(&w->inbox, NULL);
    struct ac_task *fifo = NULL;
    while (t != NULL) {
        struct ac_task *next = t->qnext;
        t->qnext = fifo;
        fifo = t;
        t = next;
    }
    while (fifo != NULL) {
        struct ac_task *next = fifo->qnext;
        if (!fifo->linked && !(atomic_load(&fifo->state) & AC__TASK_COMPLETE))
            ac__worker_link(w, fifo);
        runq_push(w, fifo);
        fifo = next;
    }
}

static void fire_timers(struct ac_worker *w)
{
    ac__wheel_advance(&w->wheel, w->now_ms);
    struct ac_timer_entry *e;
    while ((e = ac__wheel_pop_expired(&w->wheel)) != NULL)
        ac_waker_wake(&e->waker);
}

static void run_tasks(struct ac_worker *w)
{
    for (unsigned i = 0; i < AC__TURN_TASKS; i++) {
        struct ac_task *t = runq_pop(w);
        if (t == NULL)
            return;
        ac__task_run(t);
    }
}

static int next_timeout(struct ac_worker *w, bool block_on)
{
    if (w->runq_head != NULL || atomic_load(&w->inbox) != NULL)
        return 0;
    if (block_on ? atomic_load(&w->block_woken) : atomic_load(&w->rt->stop))
        return 0;
    uint64_t next = ac__wheel_next_deadline(&w->wheel);
    if (next == UINT64_MAX)
        return -1;
    if (next <= w->now_ms)
        return 0;
    return next - w->now_ms > INT_MAX ? INT_MAX : (int)(next - w->now_ms);
}

static int wait_and_dispatch(struct ac_worker *w, int timeout)
{
    int n = w->be->wait(w->poller, w->events, AC__EVENTS_MAX, timeout);
    if (n < 0)
        return n;
    /* Cleared after the wait: a sender that saw it set is covered either by
     * the write this wait consumed or by the inbox drain of the next turn. */
    atomic_store(&w->wake_pending, false);
    ac__reactor_dispatch(w, w->events, n);
    return 0;
}

/* ---- the block_on pseudo-task's waker: data is the worker ---- */

static struct ac_waker block_clone(const void *data);

static void block_wake(const void *data)
{
    struct ac_worker *w = checked(data);
    atomic_store(&w->block_woken, true);
    if (tl_current != w)
        ac__worker_notify(w);
}

static void block_drop(const void *data) { (void)data; }

static const struct ac_waker_vtable block_waker_vt = {block_clone, block_wake, block_wake,
                                                      block_drop};

static struct ac_waker block_clone(const void *data)
{
    return (struct ac_waker){&block_waker_vt, data};
}

static bool poll_block_on(struct ac_worker *w, struct ac_future *f)
{
    if (!atomic_exchange(&w->block_woken, false))
        return false;
    struct ac_waker waker = {&block_waker_vt, w};
    struct ac_context cx = {&waker, w, AC_COOP_BUDGET};
    return ac_future_poll(f, &cx) == AC_READY;
}

int ac__worker_loop(struct ac_worker *w, struct ac_future *block_on)
{
    checked(w);
    struct ac_worker *prev = tl_current;
    int rc = 0;
    tl_current = w;
    if (block_on != NULL)
        atomic_store(&w->block_woken, true);
    for (;;) {
        if (block_on == NULL && atomic_load(&w->rt->stop))
            break;
        w->now_ms = ac_clock_now_ms();
        drain_inbox(w);
        fire_timers(w);
        if (block_on != NULL && poll_block_on(w, block_on))
            break;
        run_tasks(w);
        if ((rc = wait_and_dispatch(w, next_timeout(w, block_on != NULL))) < 0)
            break;
    }
    /* What the last turn queued (io_uring: closes) is done when the loop
     * returns: the caller of ac_block_on may look at the descriptors. */
    if (w->be->flush != NULL)
        (void)w->be->flush(w->poller);
    tl_current = prev;
    return rc;
}

int ac_block_on(struct ac_worker *w, struct ac_future *f)
{
    checked(w);
    assert(!w->in_block_on && tl_current != w);
    w->in_block_on = true;
    int rc = ac__worker_loop(w, f);
    w->in_block_on = false;
    return rc;
}

/* ---- teardown ---- */

void ac__worker_drop_tasks(struct ac_worker *w)
{
    checked(w);
    struct ac_worker *prev = tl_current;
    tl_current = w; /* drops that wake or spawn see their own worker */
    drain_inbox(w);
    while (w->live != NULL)
        ac__task_complete(w->live);
    tl_current = prev;
}

void ac__worker_free(struct ac_worker *w)
{
    if (w == NULL)
        return;
    checked(w);
    drain_inbox(w);
    struct ac_task *t;
    while ((t = runq_pop(w)) != NULL) {
        if (!(atomic_load(&t->state) & AC__TASK_COMPLETE))
            ac__task_complete(t); /* spawned during teardown */
        ac__task_release(t);
    }
    ac__wheel_clear(&w->wheel);
    ac__reactor_destroy(&w->reactor);
    w->be->free(w->poller);
    ac_pipe_pool_clear(&w->pipes);
    ac__task_cache_clear(&w->tasks);
    free(w->scratch);
    w->magic = AC__DEAD_MAGIC;
    free(w);
}

/* ---- facts ---- */

unsigned ac_worker_index(const struct ac_worker *w) { return checked(w)->index; }

struct ac_runtime *ac_worker_runtime(struct ac_worker *w) { return checked(w)->rt; }

size_t ac_worker_task_count(const struct ac_worker *w)
{
    return atomic_load(&checked(w)->task_count);
}

void ac_worker_set_data(struct ac_worker *w, void *data) { checked(w)->data = data; }

void *ac_worker_data(const struct ac_worker *w) { return checked(w)->data; }

uint64_t ac_worker_now_ms(struct ac_worker *w) { return checked(w)->now_ms; }

unsigned char *ac_worker_scratch(struct ac_worker *w) { return checked(w)->scratch; }

/* Tasks and their wakers: state transitions, no lost and no duplicate
 * wake-ups, reference counting, cooperative budget. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "internal.h"

static struct ac_runtime *rt_new(unsigned workers)
{
    struct ac_runtime_opts o = {.workers = workers, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&o);
    assert_non_null(rt);
    return rt;
}

/* Runs w's loop for about ms milliseconds. */
static void run_for(struct ac_worker *w, uint64_t ms)
{
    struct ac_sleep s;
    ac_sleep_init(&s, ms);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    ac_future_drop(&s.base);
}

/* ---- a scriptable future ---- */

struct probe {
    struct ac_future base;
    atomic_int polls;
    int ready_at;          /* Ready on this poll (0: never) */
    int self_wakes;        /* wake_by_ref(cx->waker) this many times on poll 1 */
    struct ac_waker saved; /* clone kept on first poll */
    int *drops;
    int *deallocs;
};

static ac_poll_t probe_poll(struct ac_future *f, struct ac_context *cx)
{
    struct probe *p = (struct probe *)f;
    int n = atomic_fetch_add(&p->polls, 1) + 1;
    assert_true(cx->budget == AC_COOP_BUDGET);
    assert_ptr_equal(cx->worker, ac_worker_current());
    if (n == 1) {
        ac_waker_register(&p->saved, cx->waker);
        for (int i = 0; i < p->self_wakes; i++)
            ac_waker_wake_by_ref(cx->waker);
    }
    return p->ready_at && n >= p->ready_at ? AC_READY : AC_PENDING;
}

static void probe_drop(struct ac_future *f)
{
    struct probe *p = (struct probe *)f;
    ac_waker_drop(&p->saved);
    if (p->drops)
        (*p->drops)++;
}

static const struct ac_future_vtable probe_vt = {probe_poll, probe_drop};

static void probe_dealloc(struct ac_future *f)
{
    struct probe *p = (struct probe *)f;
    if (p->deallocs)
        (*p->deallocs)++;
    free(p);
}

static struct probe *probe_new(int ready_at, int *drops, int *deallocs)
{
    struct probe *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->base.vt = &probe_vt;
    p->ready_at = ready_at;
    p->drops = drops;
    p->deallocs = deallocs;
    return p;
}

/* ---- tests ---- */

/* A task woken (twice, from another thread) while still queued for its first
 * poll is queued once and polled once. */
static void test_wake_before_first_poll(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    int drops = 0, deallocs = 0;
    struct probe *p = probe_new(0, &drops, &deallocs);
    assert_int_equal(ac_spawn(w, &p->base, probe_dealloc), 0);
    struct ac_task *t = atomic_load(&w->inbox); /* spawned from outside: inbox */
    assert_non_null(t);
    assert_ptr_equal(t->fut, &p->base);
    struct ac_waker wk = ac__task_waker(t);
    ac_waker_wake_by_ref(&wk);
    ac_waker_wake(&wk); /* consumes the clone */
    assert_false(ac_waker_is_set(&wk));
    run_for(w, 20);
    assert_int_equal(atomic_load(&p->polls), 1);
    assert_int_equal(ac_worker_task_count(w), 1);
    ac_runtime_free(rt);
    assert_int_equal(drops, 1);
    assert_int_equal(deallocs, 1);
}

/* A wake while running marks NOTIFIED: exactly one more poll, however many
 * wakes came in during the poll. */
static void test_wake_while_running(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    int drops = 0;
    struct probe *p = probe_new(0, &drops, NULL);
    p->self_wakes = 3;
    assert_int_equal(ac_spawn(w, &p->base, probe_dealloc), 0);
    run_for(w, 30);
    assert_int_equal(atomic_load(&p->polls), 2);
    /* A wake through the saved clone: one more poll. */
    ac_waker_wake_by_ref(&p->saved);
    run_for(w, 5);
    assert_int_equal(atomic_load(&p->polls), 3);
    ac_runtime_free(rt);
    assert_int_equal(drops, 1);
}

/* A task that completes while a waker clone is still held elsewhere: later
 * wakes are no-ops, the last drop frees the task (ASan checks both). */
static void test_clone_outlives_task(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    int drops = 0, deallocs = 0;
    struct probe *p = probe_new(2, &drops, &deallocs);
    p->self_wakes = 1;
    assert_int_equal(ac_spawn(w, &p->base, probe_dealloc), 0);
    /* Take the task's waker before it runs, keep it past completion. */
    struct ac_waker keep = ac__task_waker(atomic_load(&w->inbox));
    run_for(w, 10);
    assert_int_equal(drops, 1);
    assert_int_equal(deallocs, 1);
    assert_int_equal(ac_worker_task_count(w), 0);
    struct ac_waker again = ac_waker_clone(&keep);
    ac_waker_wake_by_ref(&keep); /* complete: no-op */
    ac_waker_wake(&again);
    run_for(w, 5);
    ac_waker_drop(&keep); /* frees the task */
    ac_runtime_free(rt);
}

/* ---- the worker's task cache ---- */

struct spawner {
    struct ac_future base;
    int n;
};

static ac_poll_t spawner_poll(struct ac_future *f, struct ac_context *cx)
{
    struct spawner *s = (struct spawner *)f;
    for (int i = 0; i < s->n; i++)
        assert_int_equal(ac_spawn(cx->worker, &probe_new(1, NULL, NULL)->base, probe_dealloc), 0);
    return AC_READY;
}

static const struct ac_future_vtable spawner_vt = {spawner_poll, NULL};

static void *drop_waker_main(void *arg)
{
    ac_waker_drop(arg);
    return NULL;
}

/* Tasks that die on their worker's thread go to its cache and the next
 * spawns on that thread take them from there; a task whose last reference
 * goes on another thread is freed there, never cached; the cache is bounded
 * and freed with the worker (ASan: no leak, no double free). */
static void test_task_cache(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    for (int i = 0; i < 8; i++) /* from outside: malloc'd */
        assert_int_equal(ac_spawn(w, &probe_new(1, NULL, NULL)->base, probe_dealloc), 0);
    assert_int_equal(w->tasks.n, 0);
    run_for(w, 10);
    assert_int_equal(ac_worker_task_count(w), 0);
    assert_int_equal(w->tasks.n, 8);

    /* Eight spawns on the worker's thread reuse the eight; the spawner's
     * own task (malloc'd) joins them when it completes. */
    struct spawner sp = {{&spawner_vt}, 8};
    assert_int_equal(ac_spawn(w, &sp.base, NULL), 0);
    run_for(w, 10);
    assert_int_equal(ac_worker_task_count(w), 0);
    assert_int_equal(w->tasks.n, 9);

    /* The last reference dropped on another thread: freed, not cached. */
    struct probe *p = probe_new(2, NULL, NULL);
    p->self_wakes = 1;
    assert_int_equal(ac_spawn(w, &p->base, probe_dealloc), 0);
    struct ac_waker keep = ac__task_waker(atomic_load(&w->inbox));
    run_for(w, 10);
    assert_int_equal(ac_worker_task_count(w), 0);
    assert_int_equal(w->tasks.n, 9);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drop_waker_main, &keep), 0);
    pthread_join(th, NULL);
    assert_int_equal(w->tasks.n, 9);

    /* Bounded. */
    for (int i = 0; i < (int)AC__TASK_CACHE_MAX + 50; i++)
        assert_int_equal(ac_spawn(w, &probe_new(1, NULL, NULL)->base, probe_dealloc), 0);
    run_for(w, 20);
    assert_int_equal(ac_worker_task_count(w), 0);
    assert_int_equal(w->tasks.n, AC__TASK_CACHE_MAX);
    ac_runtime_free(rt);
}

/* Many clones: dropped, woken by value and by reference, all balanced. */
struct cloner {
    struct ac_future base;
    int polls;
    struct ac_waker clones[100];
};

static ac_poll_t cloner_poll(struct ac_future *f, struct ac_context *cx)
{
    struct cloner *c = (struct cloner *)f;
    if (++c->polls == 1) {
        for (int i = 0; i < 100; i++)
            c->clones[i] = ac_waker_clone(cx->waker);
        for (int i = 0; i < 50; i++)
            ac_waker_drop(&c->clones[i]);
        return AC_PENDING; /* no wake yet */
    }
    if (c->polls == 2) {
        for (int i = 50; i < 99; i++)
            ac_waker_wake(&c->clones[i]);
        return AC_PENDING; /* woken by the above while running */
    }
    return AC_READY; /* clones[99] is released by drop */
}

static void cloner_drop(struct ac_future *f)
{
    struct cloner *c = (struct cloner *)f;
    for (int i = 0; i < 100; i++)
        ac_waker_drop(&c->clones[i]);
}

static const struct ac_future_vtable cloner_vt = {cloner_poll, cloner_drop};

static void test_clone_drop_balance(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct cloner *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->base.vt = &cloner_vt;
    assert_int_equal(ac_spawn(w, &c->base, NULL), 0);
    run_for(w, 10);
    assert_int_equal(c->polls, 1);
    assert_int_equal(ac_worker_task_count(w), 1);
    struct ac_task *t = w->live;
    assert_non_null(t);
    /* owner + 50 clones */
    assert_int_equal(atomic_load(&t->state) >> AC__TASK_REF_SHIFT, 51);
    ac_waker_wake_by_ref(&c->clones[99]);
    run_for(w, 10);
    assert_int_equal(c->polls, 3);
    assert_int_equal(ac_worker_task_count(w), 0);
    free(c);
    ac_runtime_free(rt);
}

/* ---- wakes from other threads ---- */

#define WAKERS 4
#define WAKES 2000

struct storm {
    struct ac_future base;
    struct ac_runtime *rt;
    atomic_int polls;
    atomic_int requested; /* incremented before each wake */
    atomic_bool armed;
    struct ac_waker clones[WAKERS];
};

static ac_poll_t storm_poll(struct ac_future *f, struct ac_context *cx)
{
    struct storm *s = (struct storm *)f;
    atomic_fetch_add(&s->polls, 1);
    if (!atomic_load(&s->armed)) {
        for (int i = 0; i < WAKERS; i++)
            s->clones[i] = ac_waker_clone(cx->waker);
        atomic_store(&s->armed, true);
    }
    /* A wake whose increment we have not seen yet must cause another poll. */
    if (atomic_load(&s->requested) == WAKERS * WAKES) {
        ac_runtime_stop(s->rt);
        return AC_READY;
    }
    return AC_PENDING;
}

static const struct ac_future_vtable storm_vt = {storm_poll, NULL};

struct storm_thread {
    struct storm *s;
    int i;
};

static void *storm_main(void *arg)
{
    struct storm_thread *st = arg;
    struct storm *s = st->s;
    while (!atomic_load(&s->armed))
        sched_yield();
    for (int k = 0; k < WAKES; k++) {
        atomic_fetch_add(&s->requested, 1);
        if (k % 2)
            ac_waker_wake_by_ref(&s->clones[st->i]);
        else {
            struct ac_waker c = ac_waker_clone(&s->clones[st->i]);
            ac_waker_wake(&c);
        }
        if (k % 64 == 0)
            sched_yield();
    }
    ac_waker_drop(&s->clones[st->i]);
    return NULL;
}

/* Watchdog: a hung test (lost wake) fails instead of blocking forever. */
struct guard {
    struct ac_future base;
    struct ac_sleep sleep;
    struct ac_runtime *rt;
    bool fired;
};

static ac_poll_t guard_poll(struct ac_future *f, struct ac_context *cx)
{
    struct guard *g = (struct guard *)f;
    if (ac_future_poll(&g->sleep.base, cx) == AC_PENDING)
        return AC_PENDING;
    g->fired = true;
    ac_runtime_stop(g->rt);
    return AC_READY;
}

static void guard_drop(struct ac_future *f) { ac_future_drop(&((struct guard *)f)->sleep.base); }

static const struct ac_future_vtable guard_vt = {guard_poll, guard_drop};

static void test_wake_from_other_threads(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(2);
    struct storm s = {.base.vt = &storm_vt, .rt = rt};
    struct guard g = {.base.vt = &guard_vt, .rt = rt};
    ac_sleep_init(&g.sleep, 15000);
    /* The task lives on worker 1 (its own thread); main runs worker 0. */
    assert_int_equal(ac_spawn(ac_runtime_worker(rt, 1), &s.base, NULL), 0);
    assert_int_equal(ac_spawn(ac_runtime_worker(rt, 0), &g.base, NULL), 0);
    pthread_t th[WAKERS];
    struct storm_thread st[WAKERS];
    for (int i = 0; i < WAKERS; i++) {
        st[i] = (struct storm_thread){&s, i};
        assert_int_equal(pthread_create(&th[i], NULL, storm_main, &st[i]), 0);
    }
    assert_int_equal(ac_runtime_run(rt), 0);
    for (int i = 0; i < WAKERS; i++)
        pthread_join(th[i], NULL);
    assert_false(g.fired);
    int polls = atomic_load(&s.polls);
    /* Every poll but the first was caused by a wake: none duplicated. */
    assert_true(polls >= 2);
    assert_true(polls <= 1 + WAKERS * WAKES);
    assert_int_equal(ac_worker_task_count(ac_runtime_worker(rt, 1)), 0);
    ac_runtime_free(rt);
}

/* Ping-pong with one other thread: every wake yields exactly one poll. */
struct pong {
    struct ac_future base;
    atomic_int polls;
    atomic_bool done;
    struct ac_waker clone;
};

static ac_poll_t pong_poll(struct ac_future *f, struct ac_context *cx)
{
    struct pong *p = (struct pong *)f;
    /* Read done before publishing this poll: the pinger sets it only after
     * seeing the poll count, so the last wake always gets its own poll. */
    bool done = atomic_load(&p->done);
    if (atomic_load(&p->polls) == 0)
        p->clone = ac_waker_clone(cx->waker);
    atomic_fetch_add(&p->polls, 1);
    return done ? AC_READY : AC_PENDING;
}

static const struct ac_future_vtable pong_vt = {pong_poll, NULL};

static void *ping_main(void *arg)
{
    struct pong *p = arg;
    while (atomic_load(&p->polls) == 0)
        sched_yield();
    for (int k = 1; k <= 500; k++) {
        if (k == 500)
            atomic_store(&p->done, true);
        ac_waker_wake_by_ref(&p->clone);
        while (atomic_load(&p->polls) < k + 1)
            sched_yield();
    }
    ac_waker_drop(&p->clone);
    return NULL;
}

static void test_wake_ping_pong_exact(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct pong p = {.base.vt = &pong_vt};
    assert_int_equal(ac_spawn(w, &p.base, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ping_main, &p), 0);
    uint64_t t0 = ac_clock_now_ms();
    while (ac_worker_task_count(w) > 0 && ac_clock_now_ms() - t0 < 15000)
        run_for(w, 1);
    pthread_join(th, NULL);
    assert_int_equal(ac_worker_task_count(w), 0);
    assert_int_equal(atomic_load(&p.polls), 501);
    ac_runtime_free(rt);
}

/* ---- cooperative budget ---- */

struct greedy {
    struct ac_future base;
    int ops, polls;
};

static ac_poll_t greedy_poll(struct ac_future *f, struct ac_context *cx)
{
    struct greedy *g = (struct greedy *)f;
    g->polls++;
    for (;;) {
        if (!ac_coop_proceed(cx))
            return AC_PENDING; /* budget spent: rescheduled */
        if (++g->ops == 10000)
            return AC_READY;
    }
}

static const struct ac_future_vtable greedy_vt = {greedy_poll, NULL};

struct observer {
    struct ac_future base;
    struct greedy *g;
    int seen;
};

static ac_poll_t observer_poll(struct ac_future *f, struct ac_context *cx)
{
    struct observer *o = (struct observer *)f;
    (void)cx;
    o->seen = o->g->ops;
    return AC_READY;
}

static const struct ac_future_vtable observer_vt = {observer_poll, NULL};

static void test_coop_budget_yields(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct greedy g = {.base.vt = &greedy_vt};
    struct observer o = {.base.vt = &observer_vt, .g = &g, .seen = -1};
    assert_int_equal(ac_spawn(w, &g.base, NULL), 0);
    assert_int_equal(ac_spawn(w, &o.base, NULL), 0);
    run_for(w, 20);
    assert_int_equal(g.ops, 10000);
    /* The observer ran between two slices of the greedy task. */
    assert_int_equal(o.seen, AC_COOP_BUDGET);
    assert_int_equal(g.polls, (10000 + AC_COOP_BUDGET - 1) / AC_COOP_BUDGET);
    ac_runtime_free(rt);
}

/* ---- misc ---- */

static void test_noop_waker(void **state)
{
    (void)state;
    struct ac_waker n = ac_waker_noop();
    assert_true(ac_waker_is_set(&n));
    struct ac_waker c = ac_waker_clone(&n);
    assert_true(ac_waker_will_wake(&n, &c));
    ac_waker_wake_by_ref(&c);
    ac_waker_wake(&c);
    assert_false(ac_waker_is_set(&c));
    struct ac_waker slot = AC_WAKER_NONE;
    ac_waker_register(&slot, &n);
    assert_true(ac_waker_is_set(&slot));
    ac_waker_drop(&slot);
    ac_waker_drop(&slot); /* empty: no-op */
}

static void test_spawn_invalid(void **state)
{
    (void)state;
    int drops = 0, deallocs = 0;
    struct probe *p = probe_new(0, &drops, &deallocs);
    assert_int_equal(ac_spawn(NULL, &p->base, probe_dealloc), -EINVAL);
    assert_int_equal(drops, 1);
    assert_int_equal(deallocs, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wake_before_first_poll),
        cmocka_unit_test(test_wake_while_running),
        cmocka_unit_test(test_clone_outlives_task),
        cmocka_unit_test(test_clone_drop_balance),
        cmocka_unit_test(test_wake_from_other_threads),
        cmocka_unit_test(test_wake_ping_pong_exact),
        cmocka_unit_test(test_coop_budget_yields),
        cmocka_unit_test(test_noop_waker),
        cmocka_unit_test(test_spawn_invalid),
        cmocka_unit_test(test_task_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The runtime: block_on, spawning across workers, run/stop, teardown with
 * live tasks, worker facts, yield_now. */
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
#include <unistd.h>

#include "asynccore/copy.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "blocking_pool.h"

static struct ac_runtime *rt_new(unsigned workers)
{
    struct ac_runtime_opts o = {.workers = workers};
    struct ac_runtime *rt = ac_runtime_new(&o);
    assert_non_null(rt);
    return rt;
}

/* ---- block_on ---- */

/* Ready once `flag` is set; the waker is handed to whoever sets it. */
struct gate {
    struct ac_future base;
    atomic_bool open;
    struct ac_waker waker;
    pthread_mutex_t mu;
    int polls;
};

static ac_poll_t gate_poll(struct ac_future *f, struct ac_context *cx)
{
    struct gate *g = (struct gate *)f;
    g->polls++;
    pthread_mutex_lock(&g->mu);
    bool open = atomic_load(&g->open);
    if (!open)
        ac_waker_register(&g->waker, cx->waker);
    pthread_mutex_unlock(&g->mu);
    return open ? AC_READY : AC_PENDING;
}

static void gate_drop(struct ac_future *f)
{
    struct gate *g = (struct gate *)f;
    ac_waker_drop(&g->waker);
}

static const struct ac_future_vtable gate_vt = {gate_poll, gate_drop};

static void gate_init(struct gate *g)
{
    memset(g, 0, sizeof(*g));
    g->base.vt = &gate_vt;
    pthread_mutex_init(&g->mu, NULL);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    atomic_store(&g->open, true);
    struct ac_waker wk = g->waker;
    g->waker = AC_WAKER_NONE;
    pthread_mutex_unlock(&g->mu);
    ac_waker_wake(&wk);
}

/* A task that opens a gate. */
struct opener {
    struct ac_future base;
    struct gate *g;
    struct ac_worker *ran_on;
};

static ac_poll_t opener_poll(struct ac_future *f, struct ac_context *cx)
{
    struct opener *o = (struct opener *)f;
    o->ran_on = cx->worker;
    gate_open(o->g);
    return AC_READY;
}

static const struct ac_future_vtable opener_vt = {opener_poll, NULL};

static void test_block_on_with_task(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct gate g;
    gate_init(&g);
    struct opener o = {.base.vt = &opener_vt, .g = &g};
    assert_int_equal(ac_spawn(w, &o.base, NULL), 0);
    assert_null(ac_worker_current());
    assert_int_equal(ac_block_on(w, &g.base), 0);
    assert_null(ac_worker_current());
    assert_ptr_equal(o.ran_on, w);
    assert_true(g.polls >= 1);
    ac_future_drop(&g.base);
    ac_runtime_free(rt);
}

static void *open_later(void *arg)
{
    usleep(20000);
    gate_open(arg);
    return NULL;
}

static void test_block_on_woken_from_thread(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct gate g;
    gate_init(&g);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_later, &g), 0);
    assert_int_equal(ac_block_on(w, &g.base), 0);
    pthread_join(th, NULL);
    assert_true(atomic_load(&g.open));
    assert_int_equal(g.polls, 2); /* first poll, then exactly the wake */
    ac_future_drop(&g.base);
    ac_runtime_free(rt);
}

/* ---- spawn across workers, run and stop ---- */

struct child {
    struct ac_future base;
    struct ac_runtime *rt;
    struct ac_worker *seen;
    pthread_t thread;
};

static ac_poll_t child_poll(struct ac_future *f, struct ac_context *cx)
{
    struct child *c = (struct child *)f;
    c->seen = ac_worker_current();
    assert_ptr_equal(cx->worker, c->seen);
    c->thread = pthread_self();
    ac_runtime_stop(c->rt);
    return AC_READY;
}

static const struct ac_future_vtable child_vt = {child_poll, NULL};

struct parent {
    struct ac_future base;
    struct ac_runtime *rt;
    struct child *child;
    pthread_t thread;
    int rc;
};

static ac_poll_t parent_poll(struct ac_future *f, struct ac_context *cx)
{
    struct parent *p = (struct parent *)f;
    p->thread = pthread_self();
    assert_int_equal(ac_worker_index(cx->worker), 0);
    p->child = calloc(1, sizeof(*p->child));
    assert_non_null(p->child);
    p->child->base.vt = &child_vt;
    p->child->rt = p->rt;
    p->rc = ac_spawn(ac_runtime_worker(p->rt, 1), &p->child->base, NULL);
    return AC_READY;
}

static const struct ac_future_vtable parent_vt = {parent_poll, NULL};

static void test_spawn_onto_other_worker_and_stop(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(2);
    assert_int_equal(ac_runtime_workers(rt), 2);
    assert_null(ac_runtime_worker(rt, 2));
    struct parent p = {.base.vt = &parent_vt, .rt = rt};
    assert_int_equal(ac_spawn(ac_runtime_worker(rt, 0), &p.base, NULL), 0);
    assert_int_equal(ac_runtime_run(rt), 0);
    assert_int_equal(p.rc, 0);
    assert_non_null(p.child);
    assert_ptr_equal(p.child->seen, ac_runtime_worker(rt, 1));
    assert_true(pthread_equal(p.thread, pthread_self()));
    assert_false(pthread_equal(p.child->thread, pthread_self()));
    free(p.child);
    ac_runtime_free(rt);
}

/* Every worker runs a task; the last one to finish stops the runtime. A
 * second run works too (stop is consumed). */
struct counter_task {
    struct ac_future base;
    struct ac_runtime *rt;
    atomic_int *left;
};

static ac_poll_t counter_poll(struct ac_future *f, struct ac_context *cx)
{
    struct counter_task *c = (struct counter_task *)f;
    assert_non_null(ac_worker_scratch(cx->worker));
    memset(ac_worker_scratch(cx->worker), 0xab, AC_SCRATCH_SIZE);
    if (atomic_fetch_sub(c->left, 1) == 1)
        ac_runtime_stop(c->rt);
    return AC_READY;
}

static const struct ac_future_vtable counter_vt = {counter_poll, NULL};

static void test_run_all_workers_twice(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(3);
    for (int round = 0; round < 2; round++) {
        atomic_int left = 3;
        struct counter_task t[3];
        for (unsigned i = 0; i < 3; i++) {
            t[i] = (struct counter_task){.base.vt = &counter_vt, .rt = rt, .left = &left};
            assert_int_equal(ac_spawn(ac_runtime_worker(rt, i), &t[i].base, NULL), 0);
        }
        assert_int_equal(ac_runtime_run(rt), 0);
        assert_int_equal(atomic_load(&left), 0);
        for (unsigned i = 0; i < 3; i++)
            assert_int_equal(ac_worker_task_count(ac_runtime_worker(rt, i)), 0);
    }
    ac_runtime_free(rt);
}

/* ---- teardown with live tasks ---- */

struct forever {
    struct ac_future base;
    int *drops, *deallocs, polls;
    struct ac_sleep sleep;
};

static ac_poll_t forever_poll(struct ac_future *f, struct ac_context *cx)
{
    struct forever *p = (struct forever *)f;
    p->polls++;
    return ac_future_poll(&p->sleep.base, cx); /* an hour */
}

static void forever_drop(struct ac_future *f)
{
    struct forever *p = (struct forever *)f;
    ac_future_drop(&p->sleep.base);
    (*p->drops)++;
}

static void forever_dealloc(struct ac_future *f)
{
    struct forever *p = (struct forever *)f;
    (*p->deallocs)++;
    free(p);
}

static const struct ac_future_vtable forever_vt = {forever_poll, forever_drop};

static void test_free_with_pending_tasks(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(2);
    int drops = 0, deallocs = 0;
    for (int i = 0; i < 20; i++) {
        struct forever *p = calloc(1, sizeof(*p));
        assert_non_null(p);
        p->base.vt = &forever_vt;
        p->drops = &drops;
        p->deallocs = &deallocs;
        ac_sleep_init(&p->sleep, 3600 * 1000);
        /* half on worker 0 (polled below), half on worker 1 (never run) */
        assert_int_equal(ac_spawn(ac_runtime_worker(rt, (unsigned)i % 2), &p->base,
                                  forever_dealloc),
                         0);
    }
    struct ac_sleep s;
    ac_sleep_init(&s, 10);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &s.base), 0);
    ac_future_drop(&s.base);
    assert_int_equal(ac_worker_task_count(ac_runtime_worker(rt, 0)), 10);
    assert_int_equal(ac_worker_task_count(ac_runtime_worker(rt, 1)), 10);
    assert_int_equal(ac_timer_count(ac_runtime_worker(rt, 0)), 10);
    assert_int_equal(drops, 0);
    ac_runtime_free(rt);
    assert_int_equal(drops, 20);
    assert_int_equal(deallocs, 20);
}

/* ---- facts ---- */

static void test_worker_facts(void **state)
{
    (void)state;
    struct ac_runtime *rt = ac_runtime_new(NULL); /* defaults: one per CPU */
    assert_non_null(rt);
    assert_true(ac_runtime_workers(rt) >= 1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    assert_int_equal(ac_worker_index(w), 0);
    assert_ptr_equal(ac_worker_runtime(w), rt);
    assert_null(ac_worker_data(w));
    int x;
    ac_worker_set_data(w, &x);
    assert_ptr_equal(ac_worker_data(w), &x);
    assert_non_null(ac__runtime_blocking_pool(rt));
    uint64_t a = ac_clock_now_ms();
    usleep(3000);
    assert_true(ac_clock_now_ms() >= a + 2);
    assert_true(ac_worker_now_ms(w) <= ac_clock_now_ms());
    ac_runtime_free(rt);
    ac_runtime_free(NULL);
}

/* ---- yield_now ---- */

struct yielder {
    struct ac_future base;
    struct ac_yield_now y;
    int *log, *len;
    int id, step;
};

static ac_poll_t yielder_poll(struct ac_future *f, struct ac_context *cx)
{
    struct yielder *t = (struct yielder *)f;
    while (t->step < 3) {
        if (ac_future_poll(&t->y.base, cx) == AC_PENDING)
            return AC_PENDING;
        ac_future_drop(&t->y.base);
        t->log[(*t->len)++] = t->id;
        t->step++;
        ac_yield_now_init(&t->y);
    }
    return AC_READY;
}

static void yielder_drop(struct ac_future *f) { ac_future_drop(&((struct yielder *)f)->y.base); }

static const struct ac_future_vtable yielder_vt = {yielder_poll, yielder_drop};

static void test_yield_now_interleaves(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    int log[6], len = 0;
    struct yielder a = {.base.vt = &yielder_vt, .log = log, .len = &len, .id = 1};
    struct yielder b = {.base.vt = &yielder_vt, .log = log, .len = &len, .id = 2};
    ac_yield_now_init(&a.y);
    ac_yield_now_init(&b.y);
    assert_int_equal(ac_spawn(w, &a.base, NULL), 0);
    assert_int_equal(ac_spawn(w, &b.base, NULL), 0);
    struct ac_sleep s;
    ac_sleep_init(&s, 10);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    ac_future_drop(&s.base);
    assert_int_equal(len, 6);
    int want[6] = {1, 2, 1, 2, 1, 2};
    assert_memory_equal(log, want, sizeof(want));
    ac_runtime_free(rt);
}

/* Spawn from a foreign thread while the worker loop is running. */
struct flag_task {
    struct ac_future base;
    atomic_bool *flag;
};

static ac_poll_t flag_poll(struct ac_future *f, struct ac_context *cx)
{
    (void)cx;
    atomic_store(((struct flag_task *)f)->flag, true);
    return AC_READY;
}

static const struct ac_future_vtable flag_vt = {flag_poll, NULL};

struct spawner_arg {
    struct ac_worker *w;
    struct flag_task t;
    struct gate *g;
};

static void *spawner_main(void *arg)
{
    struct spawner_arg *a = arg;
    usleep(10000);
    assert_int_equal(ac_spawn(a->w, &a->t.base, NULL), 0);
    usleep(10000);
    gate_open(a->g);
    return NULL;
}

/* workers = 0 (auto) follows the affinity mask: taskset -c 0 gives one. */
static void test_auto_workers_follow_affinity(void **state)
{
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
    unsigned n = ac_available_parallelism();
    assert_true(n >= 1 && n <= (unsigned)CPU_COUNT(&all));
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    assert_int_equal(ac_available_parallelism(), 1);
    struct ac_runtime *rt = rt_new(0);
    assert_int_equal(ac_runtime_workers(rt), 1);
    ac_runtime_free(rt);
    assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
}

static void test_spawn_from_foreign_thread(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new(1);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    atomic_bool flag = false;
    struct gate g;
    gate_init(&g);
    struct spawner_arg a = {.w = w, .t = {.base.vt = &flag_vt, .flag = &flag}, .g = &g};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spawner_main, &a), 0);
    assert_int_equal(ac_block_on(w, &g.base), 0);
    pthread_join(th, NULL);
    ac_future_drop(&g.base);
    /* The task may have been taken by the turn that saw the gate open. */
    struct ac_sleep s;
    ac_sleep_init(&s, 1);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    ac_future_drop(&s.base);
    assert_true(atomic_load(&flag));
    assert_int_equal(ac_worker_task_count(w), 0);
    ac_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_on_with_task),
        cmocka_unit_test(test_block_on_woken_from_thread),
        cmocka_unit_test(test_spawn_onto_other_worker_and_stop),
        cmocka_unit_test(test_run_all_workers_twice),
        cmocka_unit_test(test_free_with_pending_tasks),
        cmocka_unit_test(test_worker_facts),
        cmocka_unit_test(test_yield_now_interleaves),
        cmocka_unit_test(test_spawn_from_foreign_thread),
        cmocka_unit_test(test_auto_workers_follow_affinity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

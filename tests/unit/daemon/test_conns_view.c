/* `show conns` gathered through the workers' inboxes (conns_view.c), on a
 * real runtime with a fake daemon whose workers list fake connections on
 * their own threads: every worker's answer merged in worker order; a worker
 * whose loop never runs (stopped, or stuck) costs the bounded wait and is
 * left out, never a hang; a view dropped before the answers come leaks
 * nothing, the late answers included (ASan's leak check). */
#include "fake_daemon.h"

#include "asynccore/timer.h"
#include "control/conns_view.h"

static struct fake *fake_new(unsigned nworkers, struct ac_runtime **rt)
{
    struct ac_runtime_opts opts = {.workers = nworkers};
    *rt = ac_runtime_new(&opts);
    assert_non_null(*rt);
    struct fake *f = malloc(sizeof(*f));
    assert_non_null(f);
    fake_init(f, nworkers, *rt);
    fake_fill_counters(f); /* two connections: ids 17 and 18 */
    return f;
}

static void fake_free(struct fake *f, struct ac_runtime *rt)
{
    ac_runtime_free(rt); /* drops the tasks of workers that never ran */
    fake_destroy(f);
    free(f);
}

static void test_one_worker_lists_all(void **state)
{
    (void)state;
    struct ac_runtime *rt;
    struct fake *f = fake_new(1, &rt);
    struct ferry_conns_view v;
    ferry_conns_view_init(&v, &f->d, 60000);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &v.base), 0);
    assert_int_equal(v.err, 0);
    assert_int_equal(v.missing, 0);
    assert_int_equal(v.n, 2);
    assert_int_equal(v.conns[0].id, 17);
    assert_string_equal(v.conns[0].server, "app/app1");
    assert_int_equal(v.conns[0].bytes_out, 20480);
    assert_int_equal(v.conns[1].id, 18);
    ac_future_drop(&v.base);
    assert_null(v.conns);
    fake_free(f, rt);
}

static void test_no_connection(void **state)
{
    (void)state;
    struct ac_runtime *rt;
    struct fake *f = fake_new(1, &rt);
    f->nconns = 0;
    struct ferry_conns_view v;
    ferry_conns_view_init(&v, &f->d, 60000);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &v.base), 0);
    assert_int_equal(v.err, 0);
    assert_int_equal(v.missing, 0);
    assert_int_equal(v.n, 0);
    ac_future_drop(&v.base);
    fake_free(f, rt);
}

/* Worker 1's loop never runs: the view is Ready after its wait with worker
 * 0's connection (17) only, and says one worker is missing. */
static void test_silent_worker_bounded(void **state)
{
    (void)state;
    struct ac_runtime *rt;
    struct fake *f = fake_new(2, &rt);
    struct ferry_conns_view v;
    ferry_conns_view_init(&v, &f->d, 200);
    uint64_t t0 = ac_clock_now_ms();
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &v.base), 0);
    assert_true(ac_clock_now_ms() - t0 >= 200); /* it did wait for worker 1 */
    assert_int_equal(v.err, 0);
    assert_int_equal(v.missing, 1);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.conns[0].id, 17);
    ac_future_drop(&v.base);
    assert_int_equal(ac_timer_count(ac_runtime_worker(rt, 0)), 0); /* the wait's timer is gone */
    fake_free(f, rt); /* worker 1's task is dropped here: "no answer", nothing leaks */
}

/* Polls a view once, drops it (its client went away), then lets worker 0
 * run so that its answer arrives after the view is gone. */
struct drop_early {
    struct ac_future base;
    struct ferry_conns_view v;
    struct ac_yield_now y[2];
    int step;
};

static ac_poll_t drop_early_poll(struct ac_future *f, struct ac_context *cx)
{
    struct drop_early *t = (struct drop_early *)f;
    if (t->step == 0) {
        assert_int_equal(ac_future_poll(&t->v.base, cx), AC_PENDING);
        ac_future_drop(&t->v.base);
        t->step = 1;
    }
    for (; t->step <= 2; t->step++)
        if (ac_future_poll(&t->y[t->step - 1].base, cx) == AC_PENDING)
            return AC_PENDING;
    return AC_READY;
}

static void drop_early_drop(struct ac_future *f) { (void)f; }

static const struct ac_future_vtable drop_early_vt = {drop_early_poll, drop_early_drop};

static void test_dropped_view_frees_late_answers(void **state)
{
    (void)state;
    struct ac_runtime *rt;
    struct fake *f = fake_new(2, &rt);
    struct drop_early t = {.base.vt = &drop_early_vt};
    ferry_conns_view_init(&t.v, &f->d, 60000);
    ac_yield_now_init(&t.y[0]);
    ac_yield_now_init(&t.y[1]);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &t.base), 0);
    assert_int_equal(ac_worker_task_count(ac_runtime_worker(rt, 0)), 0); /* worker 0 answered */
    assert_int_equal(ac_timer_count(ac_runtime_worker(rt, 0)), 0);
    fake_free(f, rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_worker_lists_all),
        cmocka_unit_test(test_no_connection),
        cmocka_unit_test(test_silent_worker_bounded),
        cmocka_unit_test(test_dropped_view_frees_late_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* asynccore: a borrowed deadline shared by steps run one after another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "asynccore/combinators.h"
#include "asynccore/deadline.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"

/* A step that counts its polls and drops (never ready by itself). */
struct step {
    struct ac_future base;
    int polls, drops;
};

static ac_poll_t step_poll(struct ac_future *self, struct ac_context *cx)
{
    (void)cx;
    ((struct step *)self)->polls++;
    return AC_PENDING;
}

static void step_drop(struct ac_future *self) { ((struct step *)self)->drops++; }

static const struct ac_future_vtable step_vt = {step_poll, step_drop};

static struct ac_runtime *runtime(struct ac_worker **wk)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    assert_non_null(rt);
    *wk = ac_runtime_worker(rt, 0);
    return rt;
}

/* The second step gets what is left of the budget, not a fresh one. */
static void test_steps_share_one_budget(void **state)
{
    (void)state;
    struct ac_worker *wk;
    struct ac_runtime *rt = runtime(&wk);
    struct ac_deadline d;
    struct ac_sleep first, second;
    struct ac_under_deadline u;
    uint64_t start = ac_clock_now_ms();

    ac_deadline_init(&d);
    ac_deadline_arm(&d, start + 150);
    ac_sleep_init(&first, 60);
    ac_under_deadline_init(&u, &first.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_false(u.timed_out);
    ac_future_drop(&u.base);
    assert_null(first.base.vt);
    assert_true(ac_deadline_armed(&d)); /* borrowed: still there */
    assert_int_equal(ac_timer_count(wk), 1); /* the deadline's own entry */

    ac_sleep_init(&second, 10000);
    ac_under_deadline_init(&u, &second.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_true(u.timed_out);
    assert_null(second.base.vt); /* the step is dropped at once */
    assert_true(ac_clock_now_ms() >= start + 150); /* never early */
    assert_int_equal(d.sleep.deadline, start + 150); /* the same deadline */
    ac_future_drop(&u.base);

    ac_deadline_disarm(&d);
    ac_deadline_disarm(&d); /* idempotent */
    assert_false(ac_deadline_armed(&d));
    assert_int_equal(ac_timer_count(wk), 0);
    ac_runtime_free(rt);
}

/* Dropping a pending step drops the step once and leaves the deadline. */
static void test_drop_keeps_deadline(void **state)
{
    (void)state;
    struct ac_worker *wk;
    struct ac_runtime *rt = runtime(&wk);
    struct ac_deadline d;
    struct step s = {.base.vt = &step_vt};
    struct ac_under_deadline u;
    struct ac_sleep quick;
    struct ac_select2 sel;

    ac_deadline_init(&d);
    ac_deadline_arm_in(&d, 10000);
    ac_under_deadline_init(&u, &s.base, &d);
    ac_sleep_init(&quick, 5);
    ac_select2_init(&sel, &u.base, &quick.base);
    assert_int_equal(ac_block_on(wk, &sel.base), 0);
    assert_int_equal(sel.winner, 1);
    assert_int_equal(s.drops, 1);
    assert_true(s.polls >= 1);
    assert_true(ac_deadline_armed(&d));
    assert_int_equal(ac_timer_count(wk), 1); /* the deadline's entry only */
    ac_future_drop(&sel.base);
    assert_int_equal(s.drops, 1);
    ac_deadline_disarm(&d);
    assert_int_equal(ac_timer_count(wk), 0);
    ac_runtime_free(rt);
}

/* Unarmed never passes; arming later starts it; moving it reschedules. */
static void test_unarmed_then_moved(void **state)
{
    (void)state;
    struct ac_worker *wk;
    struct ac_runtime *rt = runtime(&wk);
    struct ac_deadline d;
    struct ac_sleep step;
    struct ac_under_deadline u;

    ac_deadline_init(&d);
    assert_false(ac_deadline_armed(&d));
    ac_sleep_init(&step, 30);
    ac_under_deadline_init(&u, &step.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_false(u.timed_out); /* nothing to time out against */
    ac_future_drop(&u.base);
    assert_int_equal(ac_timer_count(wk), 0);

    uint64_t now = ac_clock_now_ms();
    ac_deadline_arm(&d, now + 10000);
    ac_deadline_arm(&d, now + 40); /* moved closer: fires at the new time */
    ac_sleep_init(&step, 10000);
    ac_under_deadline_init(&u, &step.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_true(u.timed_out);
    assert_true(ac_clock_now_ms() >= now + 40);
    ac_future_drop(&u.base);
    ac_deadline_disarm(&d);
    assert_int_equal(ac_timer_count(wk), 0);
    ac_runtime_free(rt);
}

/* A step that is ready at once (ready after `after` polls). */
struct quick {
    struct ac_future base;
    int polls, after, drops;
};

static ac_poll_t quick_poll(struct ac_future *self, struct ac_context *cx)
{
    struct quick *q = (struct quick *)self;
    if (++q->polls > q->after)
        return AC_READY;
    ac_waker_wake_by_ref(cx->waker);
    return AC_PENDING;
}

static void quick_drop(struct ac_future *self) { ((struct quick *)self)->drops++; }

static const struct ac_future_vtable quick_vt = {quick_poll, quick_drop};

/* The step is polled before the deadline: a step done by the time the
 * deadline is looked at counts as done, even past the deadline; a pending
 * step that starts after the deadline passed is polled once, then dropped. */
static void test_step_polled_first(void **state)
{
    (void)state;
    struct ac_worker *wk;
    struct ac_runtime *rt = runtime(&wk);
    struct ac_deadline d;
    struct ac_under_deadline u;
    uint64_t now = ac_clock_now_ms();

    ac_deadline_init(&d);
    ac_deadline_arm(&d, now > 0 ? now - 1 : 0); /* already passed */
    struct quick done = {.base.vt = &quick_vt, .after = 0};
    ac_under_deadline_init(&u, &done.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_false(u.timed_out);
    assert_int_equal(done.polls, 1);
    ac_future_drop(&u.base);
    assert_int_equal(done.drops, 1);

    struct quick late = {.base.vt = &quick_vt, .after = 1000};
    ac_under_deadline_init(&u, &late.base, &d);
    assert_int_equal(ac_block_on(wk, &u.base), 0);
    assert_true(u.timed_out);
    assert_int_equal(late.polls, 1);
    assert_int_equal(late.drops, 1); /* at once, */
    ac_future_drop(&u.base);
    assert_int_equal(late.drops, 1); /* and only once */
    ac_deadline_disarm(&d);
    assert_int_equal(ac_timer_count(wk), 0);
    ac_runtime_free(rt);
}

/* A deadline disarmed after it passed can be armed again (the next
 * attempt's fresh budget): it is pending until the new time. */
static void test_rearm_after_disarm(void **state)
{
    (void)state;
    struct ac_worker *wk;
    struct ac_runtime *rt = runtime(&wk);
    struct ac_deadline d;
    struct ac_under_deadline u;
    struct ac_sleep step;

    ac_deadline_init(&d);
    for (int attempt = 0; attempt < 3; attempt++) {
        uint64_t start = ac_clock_now_ms();
        ac_deadline_arm_in(&d, 20);
        assert_true(ac_deadline_armed(&d));
        ac_sleep_init(&step, 10000);
        ac_under_deadline_init(&u, &step.base, &d);
        assert_int_equal(ac_block_on(wk, &u.base), 0);
        assert_true(u.timed_out);
        assert_true(ac_clock_now_ms() >= start + 20);
        ac_future_drop(&u.base);
        ac_deadline_disarm(&d);
        assert_false(ac_deadline_armed(&d));
        assert_int_equal(ac_timer_count(wk), 0);
    }
    ac_deadline_arm_in(&d, UINT64_MAX); /* saturates: never passes */
    assert_true(d.sleep.deadline == UINT64_MAX);
    ac_deadline_disarm(&d);
    ac_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_share_one_budget),
        cmocka_unit_test(test_drop_keeps_deadline),
        cmocka_unit_test(test_unarmed_then_moved),
        cmocka_unit_test(test_step_polled_first),
        cmocka_unit_test(test_rearm_after_disarm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Timers: the wheel on a fake clock (order, cancellation, cascading of far
 * deadlines) and sleep futures on a real worker (order, drop, reset). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "internal.h"
#include "timer_wheel.h"

/* A stand-in owner for wheel entries on the fake clock (never dereferenced). */
static char owner_storage;
#define OWNER ((struct ac_worker *)(void *)&owner_storage)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void wheel_empty(const struct ac__wheel *wh)
{
    assert_int_equal(wh->count, 0);
    for (unsigned l = 0; l < AC__WHEEL_LEVELS; l++)
        assert_int_equal(wh->occupied[l], 0);
    assert_null(wh->expired_head);
    assert_int_equal(ac__wheel_next_deadline(wh), UINT64_MAX);
}

/* ---- the wheel on a fake clock ---- */

#define N 10000

static void test_wheel_order_random(void **state)
{
    (void)state;
    struct ac__wheel wh;
    const uint64_t base = 123456789;
    ac__wheel_init(&wh, base);
    struct ac_timer_entry *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < N; i++) {
        /* most within 5 minutes, some up to ~140 years (past the wheel's span) */
        uint64_t span = i % 10 ? 300000 : (uint64_t)1 << (rnd() % 42 + 1);
        ac__wheel_insert(&wh, &e[i], base + 1 + rnd() % span, OWNER);
    }
    assert_int_equal(wh.count, N);
    int fired = 0;
    uint64_t last = 0, now = base;
    /* Jump from one next deadline to the next, as the worker's poll would. */
    while (fired < N) {
        uint64_t next = ac__wheel_next_deadline(&wh);
        assert_true(next > now || next == wh.elapsed);
        now = next;
        ac__wheel_advance(&wh, now);
        struct ac_timer_entry *x;
        while ((x = ac__wheel_pop_expired(&wh)) != NULL) {
            assert_true(x->fired);
            assert_null(x->worker);
            assert_true(x->deadline == now); /* never early, never late */
            assert_true(x->deadline >= last); /* deadline order */
            last = x->deadline;
            fired++;
        }
    }
    wheel_empty(&wh);
    free(e);
}

/* Step 1 ms at a time: every entry fires exactly at its deadline. */
static void test_wheel_exact_ticks(void **state)
{
    (void)state;
    struct ac__wheel wh;
    const uint64_t base = 1000;
    ac__wheel_init(&wh, base);
    enum { M = 2000 };
    struct ac_timer_entry *e = calloc(M, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < M; i++)
        ac__wheel_insert(&wh, &e[i], base + 1 + rnd() % 20000, OWNER);
    int fired = 0;
    for (uint64_t now = base + 1; fired < M; now++) {
        ac__wheel_advance(&wh, now);
        struct ac_timer_entry *x;
        while ((x = ac__wheel_pop_expired(&wh)) != NULL) {
            assert_int_equal(x->deadline, now);
            fired++;
        }
    }
    wheel_empty(&wh);
    free(e);
}

static void test_wheel_cancel_all(void **state)
{
    (void)state;
    struct ac__wheel wh;
    ac__wheel_init(&wh, 5);
    struct ac_timer_entry *e = calloc(N, sizeof(*e));
    int *order = calloc(N, sizeof(*order));
    assert_non_null(e);
    assert_non_null(order);
    for (int i = 0; i < N; i++) {
        /* spread over every level, plus some already due */
        uint64_t span = (uint64_t)1 << (rnd() % 40);
        ac__wheel_insert(&wh, &e[i], i % 100 == 0 ? 3 : 5 + rnd() % span, OWNER);
        order[i] = i;
    }
    assert_int_equal(wh.count, N);
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < N; i++) {
        ac__wheel_remove(&wh, &e[order[i]]);
        assert_null(e[order[i]].worker);
    }
    wheel_empty(&wh);
    ac__wheel_advance(&wh, 1u << 30);
    assert_null(ac__wheel_pop_expired(&wh));
    free(order);
    free(e);
}

/* Deadlines beyond 64^3 ms cascade down level by level; beyond the wheel's
 * span (64^6 ms) they wait in the top level for as many laps as needed. */
static void test_wheel_far_future(void **state)
{
    (void)state;
    struct ac__wheel wh;
    const uint64_t base = 77777;
    ac__wheel_init(&wh, base);
    const uint64_t d[] = {
        262144 + 17,                      /* 64^3 + 17 */
        16777216ull * 3 + 5,              /* 3 * 64^4 + 5 */
        1073741824ull * 7 + 123,          /* 7 * 64^5 + 123 */
        68719476736ull - 1,               /* the last ms in range */
        68719476736ull + 999,             /* beyond one lap */
        68719476736ull * 3 + 64 * 64 + 1, /* three laps */
    };
    enum { K = sizeof(d) / sizeof(d[0]) };
    struct ac_timer_entry e[K];
    memset(e, 0, sizeof(e));
    for (int i = 0; i < K; i++)
        ac__wheel_insert(&wh, &e[i], base + d[i], OWNER);
    assert_true(e[0].level >= 3);
    assert_int_equal(e[5].level, AC__WHEEL_LEVELS - 1);
    for (int i = 0; i < K; i++) {
        uint64_t due = base + d[i];
        ac__wheel_advance(&wh, due - 1);
        assert_null(ac__wheel_pop_expired(&wh));
        assert_int_equal(wh.count, (unsigned)(K - i));
        uint64_t next = ac__wheel_next_deadline(&wh);
        assert_true(next <= due); /* never late: a lower bound at worst */
        ac__wheel_advance(&wh, due);
        struct ac_timer_entry *x = ac__wheel_pop_expired(&wh);
        assert_ptr_equal(x, &e[i]);
        assert_null(ac__wheel_pop_expired(&wh));
    }
    wheel_empty(&wh);
}

/* Entries inserted at or before `elapsed` fire at the next advance; removal
 * from the expired list works; time never runs backwards. */
static void test_wheel_due_and_expired_removal(void **state)
{
    (void)state;
    struct ac__wheel wh;
    ac__wheel_init(&wh, 1000);
    struct ac_timer_entry a = {0}, b = {0}, c = {0};
    ac__wheel_insert(&wh, &a, 900, OWNER);
    ac__wheel_insert(&wh, &b, 1000, OWNER);
    ac__wheel_insert(&wh, &c, 1001, OWNER);
    assert_int_equal(ac__wheel_next_deadline(&wh), 1000);
    ac__wheel_advance(&wh, 500); /* backwards: ignored */
    assert_int_equal(wh.elapsed, 1000);
    ac__wheel_advance(&wh, 1001);
    ac__wheel_remove(&wh, &b); /* removed while expired, before firing */
    assert_ptr_equal(ac__wheel_pop_expired(&wh), &a);
    assert_ptr_equal(ac__wheel_pop_expired(&wh), &c);
    assert_null(ac__wheel_pop_expired(&wh));
    ac__wheel_insert(&wh, &b, 5000, OWNER);
    ac__wheel_clear(&wh);
    assert_null(b.worker);
    wheel_empty(&wh);
}

/* ---- sleeps on a real worker ---- */

static struct ac_runtime *rt_new(void)
{
    struct ac_runtime_opts o = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&o);
    assert_non_null(rt);
    return rt;
}

static void run_for(struct ac_worker *w, uint64_t ms)
{
    struct ac_sleep s;
    ac_sleep_init(&s, ms);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    assert_true(ac_sleep_elapsed(&s));
    ac_future_drop(&s.base);
}

struct sleeper {
    struct ac_future base;
    struct ac_sleep sleep;
    uint64_t *log;
    int *len;
    int polls;
};

static ac_poll_t sleeper_poll(struct ac_future *f, struct ac_context *cx)
{
    struct sleeper *s = (struct sleeper *)f;
    s->polls++;
    if (ac_future_poll(&s->sleep.base, cx) == AC_PENDING)
        return AC_PENDING;
    assert_true(ac_worker_now_ms(cx->worker) >= s->sleep.deadline);
    s->log[(*s->len)++] = s->sleep.deadline;
    return AC_READY;
}

static void sleeper_drop(struct ac_future *f)
{
    ac_future_drop(&((struct sleeper *)f)->sleep.base);
}

static const struct ac_future_vtable sleeper_vt = {sleeper_poll, sleeper_drop};

static void test_sleep_order_random(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new();
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct sleeper *s = calloc(N, sizeof(*s));
    uint64_t *log = calloc(N, sizeof(*log));
    assert_non_null(s);
    assert_non_null(log);
    int len = 0;
    uint64_t base = ac_clock_now_ms() + 300;
    for (int i = 0; i < N; i++) {
        s[i].base.vt = &sleeper_vt;
        s[i].log = log;
        s[i].len = &len;
        ac_sleep_init_deadline(&s[i].sleep, base + rnd() % 500);
        assert_int_equal(ac_spawn(w, &s[i].base, NULL), 0);
    }
    uint64_t t0 = ac_clock_now_ms();
    while (len < N && ac_clock_now_ms() - t0 < 15000)
        run_for(w, 50);
    assert_int_equal(len, N);
    for (int i = 1; i < N; i++)
        assert_true(log[i - 1] <= log[i]);
    assert_int_equal(ac_timer_count(w), 0);
    assert_int_equal(ac_worker_task_count(w), 0);
    free(log);
    free(s);
    ac_runtime_free(rt);
}

/* 10,000 sleeps registered by one task, then cancelled by dropping them. */
struct many {
    struct ac_future base;
    struct ac_sleep *sleeps;
    int polls;
    bool drop_on_second_poll;
};

static ac_poll_t many_poll(struct ac_future *f, struct ac_context *cx)
{
    struct many *m = (struct many *)f;
    if (++m->polls == 2 && m->drop_on_second_poll) {
        unsigned before = ac_timer_count(cx->worker);
        for (int i = 0; i < N; i++)
            ac_future_drop(&m->sleeps[i].base);
        assert_int_equal(ac_timer_count(cx->worker), before - N);
        return AC_READY;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(ac_future_poll(&m->sleeps[i].base, cx), AC_PENDING);
    return AC_PENDING;
}

static void many_drop(struct ac_future *f)
{
    struct many *m = (struct many *)f;
    for (int i = 0; i < N; i++)
        ac_future_drop(&m->sleeps[i].base);
}

static const struct ac_future_vtable many_vt = {many_poll, many_drop};

static void many_init(struct many *m, bool drop_on_second_poll)
{
    memset(m, 0, sizeof(*m));
    m->base.vt = &many_vt;
    m->drop_on_second_poll = drop_on_second_poll;
    m->sleeps = calloc(N, sizeof(*m->sleeps));
    assert_non_null(m->sleeps);
    for (int i = 0; i < N; i++)
        ac_sleep_init(&m->sleeps[i], 60000 + rnd() % (1ull << 32));
}

static void test_sleep_cancel_by_drop(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new();
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct many a, b;
    many_init(&a, true);
    many_init(&b, false);
    assert_int_equal(ac_spawn(w, &a.base, NULL), 0);
    run_for(w, 5);
    assert_int_equal(ac_timer_count(w), N);
    assert_int_equal(a.polls, 1);
    assert_int_equal(ac_spawn(w, &b.base, NULL), 0);
    run_for(w, 5);
    assert_int_equal(ac_timer_count(w), 2 * N);
    /* A spurious wake-up re-polls all of b's sleeps: no duplicate entries,
     * no extra waker clones. */
    struct ac_task *tb = w->live;
    assert_ptr_equal(tb->fut, &b.base);
    uint64_t refs = atomic_load(&tb->state) >> AC__TASK_REF_SHIFT;
    ac_waker_wake_by_ref(&b.sleeps[N - 1].entry.waker);
    run_for(w, 5);
    assert_int_equal(b.polls, 2);
    assert_int_equal(ac_timer_count(w), 2 * N);
    assert_int_equal(atomic_load(&tb->state) >> AC__TASK_REF_SHIFT, refs);
    /* Wake `a` through one of its sleeps' wakers: it drops all its sleeps. */
    ac_waker_wake_by_ref(&a.sleeps[0].entry.waker);
    run_for(w, 5);
    assert_int_equal(a.polls, 2);
    assert_int_equal(ac_timer_count(w), N);
    assert_int_equal(ac_worker_task_count(w), 1);
    /* `b` (10,000 waker clones in the wheel) is dropped by the teardown. */
    ac_runtime_free(rt);
    free(a.sleeps);
    free(b.sleeps);
}

/* reset: earlier, later, after firing, into the past; while registered. */
struct resetter {
    struct ac_future base;
    struct ac_sleep sleep;
    int step, polls;
    uint64_t fired_at[3];
};

static ac_poll_t resetter_poll(struct ac_future *f, struct ac_context *cx)
{
    struct resetter *r = (struct resetter *)f;
    uint64_t now = ac_worker_now_ms(cx->worker);
    r->polls++;
    for (;;) {
        if (r->step == 0) {
            /* an hour, registered, then moved to 20 ms without a re-poll */
            ac_sleep_init(&r->sleep, 3600 * 1000);
            assert_int_equal(ac_future_poll(&r->sleep.base, cx), AC_PENDING);
            assert_int_equal(ac_timer_count(cx->worker), 1);
            ac_sleep_reset(&r->sleep, now + 20);
            assert_int_equal(ac_timer_count(cx->worker), 1);
            assert_false(ac_sleep_elapsed(&r->sleep));
            r->step = 1;
            return AC_PENDING;
        }
        if (r->step == 1) {
            if (!ac_sleep_elapsed(&r->sleep))
                return AC_PENDING; /* woken by the wheel, not polled */
            assert_int_equal(ac_future_poll(&r->sleep.base, cx), AC_READY);
            r->fired_at[0] = now;
            /* after firing: pending again, re-registered by the next poll */
            ac_sleep_reset(&r->sleep, now + 10);
            assert_int_equal(ac_timer_count(cx->worker), 0);
            r->step = 2;
        }
        if (r->step == 2) {
            if (ac_future_poll(&r->sleep.base, cx) == AC_PENDING)
                return AC_PENDING;
            r->fired_at[1] = now;
            ac_sleep_reset(&r->sleep, now - 1); /* the past: ready at once */
            assert_true(ac_sleep_elapsed(&r->sleep));
            assert_int_equal(ac_future_poll(&r->sleep.base, cx), AC_READY);
            r->step = 3;
        }
        if (r->step == 3) {
            /* registered, then reset into the past: fires on the next turn */
            ac_sleep_reset(&r->sleep, now + 1000);
            assert_int_equal(ac_future_poll(&r->sleep.base, cx), AC_PENDING);
            ac_sleep_reset(&r->sleep, now);
            assert_int_equal(ac_timer_count(cx->worker), 1);
            r->step = 4;
            return AC_PENDING;
        }
        assert_int_equal(ac_future_poll(&r->sleep.base, cx), AC_READY);
        r->fired_at[2] = now;
        return AC_READY;
    }
}

static void resetter_drop(struct ac_future *f)
{
    ac_future_drop(&((struct resetter *)f)->sleep.base);
}

static const struct ac_future_vtable resetter_vt = {resetter_poll, resetter_drop};

static void test_sleep_reset(void **state)
{
    (void)state;
    struct ac_runtime *rt = rt_new();
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct resetter r = {.base.vt = &resetter_vt};
    uint64_t t0 = ac_clock_now_ms();
    assert_int_equal(ac_block_on(w, &r.base), 0);
    uint64_t took = ac_clock_now_ms() - t0;
    assert_int_equal(r.step, 4);
    assert_true(r.fired_at[0] >= t0 + 20);
    assert_true(r.fired_at[1] >= r.fired_at[0] + 10);
    assert_true(took < 60 * 1000); /* the hour-long deadline was really moved */
    assert_int_equal(ac_timer_count(w), 0);
    ac_future_drop(&r.base);
    ac_runtime_free(rt);
}

/* A sleep polled outside any worker: ready if due, pending (unregistered)
 * otherwise; reset and drop work without a worker. */
static void test_sleep_without_worker(void **state)
{
    (void)state;
    struct ac_waker nw = ac_waker_noop();
    struct ac_context cx = {&nw, NULL, AC_COOP_BUDGET};
    struct ac_sleep s;
    ac_sleep_init(&s, 100000);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_PENDING);
    assert_null(s.entry.worker);
    assert_false(ac_sleep_elapsed(&s));
    ac_sleep_reset(&s, 0);
    assert_true(ac_sleep_elapsed(&s));
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_READY);
    ac_future_drop(&s.base);
    ac_sleep_init(&s, UINT64_MAX); /* saturates */
    assert_int_equal(s.deadline, UINT64_MAX);
    ac_future_drop(&s.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wheel_order_random),
        cmocka_unit_test(test_wheel_exact_ticks),
        cmocka_unit_test(test_wheel_cancel_all),
        cmocka_unit_test(test_wheel_far_future),
        cmocka_unit_test(test_wheel_due_and_expired_removal),
        cmocka_unit_test(test_sleep_order_random),
        cmocka_unit_test(test_sleep_cancel_by_drop),
        cmocka_unit_test(test_sleep_reset),
        cmocka_unit_test(test_sleep_without_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

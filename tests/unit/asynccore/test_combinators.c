/* asynccore combinators: join2, join_n, select2, select_n, timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/combinators.h"
#include "asynccore/net.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"

/* ---- a counting waker (polling by hand, no runtime) ---- */

struct cwaker {
    int clones, wakes, by_ref, drops;
};

static struct ac_waker cw_clone(const void *d);
static void cw_wake(const void *d) { ((struct cwaker *)d)->wakes++; }
static void cw_by_ref(const void *d) { ((struct cwaker *)d)->by_ref++; }
static void cw_drop(const void *d) { ((struct cwaker *)d)->drops++; }
static const struct ac_waker_vtable cw_vt = {cw_clone, cw_wake, cw_by_ref, cw_drop};

static struct ac_waker cw_clone(const void *d)
{
    ((struct cwaker *)d)->clones++;
    return (struct ac_waker){&cw_vt, d};
}

static struct ac_context cw_context(struct cwaker *c, struct ac_waker *w)
{
    *w = (struct ac_waker){&cw_vt, c};
    return (struct ac_context){.waker = w, .worker = NULL, .budget = AC_COOP_BUDGET};
}

/* ---- a scripted test future ---- */

struct tfut {
    struct ac_future base;
    int id;
    int ready_after; /* ready on this poll number; 0: never */
    bool wake_self;  /* on pending, ask to be polled again */
    int polls, drops;
    bool done;
    int *log; /* shared poll log of ids */
    size_t *log_len;
};

static ac_poll_t tfut_poll(struct ac_future *self, struct ac_context *cx)
{
    struct tfut *t = (struct tfut *)self;

    assert_false(t->done); /* never polled after Ready */
    assert_int_equal(t->drops, 0);
    t->polls++;
    if (t->log != NULL)
        t->log[(*t->log_len)++] = t->id;
    if (t->ready_after > 0 && t->polls >= t->ready_after) {
        t->done = true;
        return AC_READY;
    }
    if (t->wake_self)
        ac_waker_wake_by_ref(cx->waker);
    return AC_PENDING;
}

static void tfut_drop(struct ac_future *self)
{
    ((struct tfut *)self)->drops++;
}

static const struct ac_future_vtable tfut_vt = {tfut_poll, tfut_drop};

static void tfut_init(struct tfut *t, int id, int ready_after)
{
    *t = (struct tfut){.base.vt = &tfut_vt, .id = id, .ready_after = ready_after};
}

/* ---- join ---- */

static void test_join2_order(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    int log[16];
    size_t n = 0;
    struct tfut a, b;
    struct ac_join2 j;

    tfut_init(&a, 1, 1);
    tfut_init(&b, 2, 3);
    a.log = b.log = log;
    a.log_len = b.log_len = &n;
    ac_join2_init(&j, &a.base, &b.base);

    assert_int_equal(ac_future_poll(&j.base, &cx), AC_PENDING);
    assert_true(j.a_done);
    assert_false(j.b_done);
    assert_int_equal(ac_future_poll(&j.base, &cx), AC_PENDING);
    assert_int_equal(ac_future_poll(&j.base, &cx), AC_READY);
    /* a first then b; a is not polled again once ready */
    assert_int_equal(n, 4);
    assert_int_equal(log[0], 1);
    assert_int_equal(log[1], 2);
    assert_int_equal(log[2], 2);
    assert_int_equal(log[3], 2);
    assert_int_equal(a.polls, 1);
    assert_int_equal(b.polls, 3);
    assert_int_equal(a.drops + b.drops, 0); /* children live until the join drops */
    ac_future_drop(&j.base);
    assert_int_equal(a.drops, 1);
    assert_int_equal(b.drops, 1);
}

static void test_join_n_drop_pending(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut t[5];
    struct ac_future *f[5];
    bool done[5];
    struct ac_join_n j;

    for (int i = 0; i < 5; i++) {
        tfut_init(&t[i], i, i % 2 == 0 ? 1 : 0); /* odd ones never finish */
        f[i] = &t[i].base;
    }
    ac_join_n_init(&j, f, done, 5);
    assert_int_equal(ac_future_poll(&j.base, &cx), AC_PENDING);
    assert_int_equal(ac_future_poll(&j.base, &cx), AC_PENDING);
    assert_int_equal(j.remaining, 2);
    assert_int_equal(t[0].polls, 1);
    assert_int_equal(t[1].polls, 2);
    ac_future_drop(&j.base);
    for (int i = 0; i < 5; i++)
        assert_int_equal(t[i].drops, 1);
}

static void test_join_n_empty(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct ac_join_n j;
    bool done[1];

    ac_join_n_init(&j, NULL, done, 0);
    assert_int_equal(ac_future_poll(&j.base, &cx), AC_READY);
    ac_future_drop(&j.base);
}

/* 1,000 sleeps with varied deadlines joined on a worker. */
static void test_join_1000_sleeps(void **state)
{
    enum { N = 1000 };
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct ac_sleep *sleeps = calloc(N, sizeof(*sleeps));
    struct ac_future **futs = calloc(N, sizeof(*futs));
    bool *done = calloc(N, sizeof(*done));
    struct ac_join_n j;
    uint64_t last = 0;

    assert_non_null(rt);
    assert_non_null(sleeps);
    assert_non_null(futs);
    assert_non_null(done);
    wk = ac_runtime_worker(rt, 0);
    for (size_t i = 0; i < N; i++) {
        ac_sleep_init(&sleeps[i], (i * 7) % 60);
        futs[i] = &sleeps[i].base;
        if (sleeps[i].deadline > last)
            last = sleeps[i].deadline;
    }
    ac_join_n_init(&j, futs, done, N);
    assert_int_equal(ac_block_on(wk, &j.base), 0);
    assert_int_equal(j.remaining, 0);
    for (size_t i = 0; i < N; i++) {
        assert_true(done[i]);
        assert_true(ac_sleep_elapsed(&sleeps[i]));
    }
    assert_true(ac_clock_now_ms() >= last); /* not before the last deadline */
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&j.base);
    assert_int_equal(ac_timer_count(wk), 0);
    free(done);
    free(futs);
    free(sleeps);
    ac_runtime_free(rt);
}

/* ---- select ---- */

static void test_select2_drops_loser_at_once(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut a, b;
    struct ac_select2 s;

    tfut_init(&a, 0, 0);
    tfut_init(&b, 1, 2);
    ac_select2_init(&s, &a.base, &b.base);
    assert_int_equal(s.winner, -1);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_PENDING);
    assert_int_equal(s.winner, -1);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_READY);
    assert_int_equal(s.winner, 1);
    assert_int_equal(a.drops, 1); /* loser dropped at completion */
    assert_int_equal(b.drops, 0); /* winner lives on with the select */
    ac_future_drop(&s.base);
    assert_int_equal(a.drops, 1); /* not dropped twice */
    assert_int_equal(b.drops, 1);
}

static void test_select2_tie_goes_to_a(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut a, b;
    struct ac_select2 s;

    tfut_init(&a, 0, 1);
    tfut_init(&b, 1, 1);
    ac_select2_init(&s, &a.base, &b.base);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_READY);
    assert_int_equal(s.winner, 0);
    assert_int_equal(b.polls, 0);
    assert_int_equal(b.drops, 1);
    ac_future_drop(&s.base);
    assert_int_equal(a.drops, 1);
    assert_int_equal(b.drops, 1);
}

static void test_select_n_tie_lowest_index(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut t[4];
    struct ac_future *f[4];
    struct ac_select_n s;

    /* 1 and 3 both become ready on the second poll: 1 wins. */
    tfut_init(&t[0], 0, 0);
    tfut_init(&t[1], 1, 2);
    tfut_init(&t[2], 2, 0);
    tfut_init(&t[3], 3, 2);
    for (int i = 0; i < 4; i++)
        f[i] = &t[i].base;
    ac_select_n_init(&s, f, 4);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_PENDING);
    assert_int_equal(s.winner, -1);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_READY);
    assert_int_equal(s.winner, 1);
    assert_int_equal(t[0].drops, 1);
    assert_int_equal(t[1].drops, 0);
    assert_int_equal(t[2].drops, 1);
    assert_int_equal(t[3].drops, 1);
    assert_int_equal(t[2].polls, 1); /* not polled past the winner */
    ac_future_drop(&s.base);
    for (int i = 0; i < 4; i++)
        assert_int_equal(t[i].drops, 1);
}

static void test_select_drop_pending(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut a, b;
    struct ac_select2 s;
    struct ac_select_n sn;
    struct tfut t[3];
    struct ac_future *f[3];

    tfut_init(&a, 0, 0);
    tfut_init(&b, 1, 0);
    ac_select2_init(&s, &a.base, &b.base);
    assert_int_equal(ac_future_poll(&s.base, &cx), AC_PENDING);
    ac_future_drop(&s.base);
    assert_int_equal(a.drops, 1);
    assert_int_equal(b.drops, 1);

    for (int i = 0; i < 3; i++) {
        tfut_init(&t[i], i, 0);
        f[i] = &t[i].base;
    }
    ac_select_n_init(&sn, f, 3);
    ac_future_drop(&sn.base); /* never polled */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t[i].drops, 1);
        assert_int_equal(t[i].polls, 0);
    }
}

/* On a worker: the losing sleep's wheel entry is gone as soon as the select
 * completes, before the select itself is dropped. */
static void test_select_sleep_loser_timer_released(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct tfut a;
    struct ac_sleep long_sleep, short_sleep, other_long;
    struct ac_select2 s;
    struct ac_future *f[3];
    struct ac_select_n sn;

    assert_non_null(rt);
    wk = ac_runtime_worker(rt, 0);

    /* A self-waking future beats a 10 s sleep. */
    tfut_init(&a, 0, 3);
    a.wake_self = true;
    ac_sleep_init(&long_sleep, 10000);
    ac_select2_init(&s, &long_sleep.base, &a.base);
    assert_int_equal(ac_block_on(wk, &s.base), 0);
    assert_int_equal(s.winner, 1);
    assert_null(long_sleep.base.vt); /* dropped */
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&s.base);
    assert_int_equal(a.drops, 1);

    /* A 10 ms sleep beats two 10 s sleeps. */
    ac_sleep_init(&long_sleep, 10000);
    ac_sleep_init(&short_sleep, 10);
    ac_sleep_init(&other_long, 20000);
    f[0] = &long_sleep.base;
    f[1] = &short_sleep.base;
    f[2] = &other_long.base;
    ac_select_n_init(&sn, f, 3);
    assert_int_equal(ac_block_on(wk, &sn.base), 0);
    assert_int_equal(sn.winner, 1);
    assert_int_equal(ac_timer_count(wk), 0);
    assert_true(ac_sleep_elapsed(&short_sleep));
    assert_false(ac_sleep_elapsed(&long_sleep));
    ac_future_drop(&sn.base);
    ac_runtime_free(rt);
}

/* On a worker: a losing connect's reactor registration (and its half-open
 * socket) is gone as soon as the select completes. The connect stays pending
 * because the listener's backlog is full and never accepted from. */
static void test_select_connect_loser_registration_released(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    assert_non_null(rt);
    struct ac_worker *wk = ac_runtime_worker(rt, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int lfd = ac_listen_socket((struct sockaddr *)&sa, sizeof(sa), 0, 0);
    assert_true(lfd >= 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    /* Fill the accept queue with blocking-free connects nobody accepts. */
    int fillers[8];
    for (int i = 0; i < 8; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fillers[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    unsigned before = ac_reactor_registrations(wk);
    struct ac_stream out = {0};
    struct ac_connect c;
    struct ac_sleep quick;
    struct ac_select2 s;
    ac_connect_init(&c, (struct sockaddr *)&sa, sizeof(sa), &out);
    ac_sleep_init(&quick, 50);
    ac_select2_init(&s, &c.base, &quick.base);
    assert_int_equal(ac_block_on(wk, &s.base), 0);
    /* The connect was still pending: it is dropped and deregistered. */
    assert_int_equal(s.winner, 1);
    assert_null(c.base.vt);
    assert_int_equal(ac_reactor_registrations(wk), before);
    assert_int_equal(ac_stream_fd(&out), -1);
    ac_future_drop(&s.base);
    ac_stream_close(&out);
    assert_int_equal(ac_reactor_registrations(wk), before);
    for (int i = 0; i < 8; i++)
        close(fillers[i]);
    close(lfd);
    ac_runtime_free(rt);
}

/* ---- timeout ---- */

static void test_timeout_fires(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct ac_sleep inner;
    struct ac_timeout t;

    assert_non_null(rt);
    wk = ac_runtime_worker(rt, 0);
    ac_sleep_init(&inner, 10000);
    ac_timeout_init(&t, &inner.base, 20);
    assert_int_equal(ac_block_on(wk, &t.base), 0);
    assert_true(t.timed_out);
    assert_true(ac_clock_now_ms() >= t.sleep.deadline); /* not early */
    assert_null(inner.base.vt); /* inner dropped at once */
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&t.base);
    ac_runtime_free(rt);
}

static void test_timeout_not_fired(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct tfut inner;
    struct ac_sleep sl;
    struct ac_timeout t;

    assert_non_null(rt);
    wk = ac_runtime_worker(rt, 0);

    tfut_init(&inner, 0, 4);
    inner.wake_self = true;
    ac_timeout_init(&t, &inner.base, 5000);
    assert_int_equal(ac_block_on(wk, &t.base), 0);
    assert_false(t.timed_out);
    assert_int_equal(inner.polls, 4);
    assert_int_equal(inner.drops, 0);
    assert_int_equal(ac_timer_count(wk), 0); /* its sleep is released at once */
    ac_future_drop(&t.base);
    assert_int_equal(inner.drops, 1);

    /* A 10 ms sleep under a deadline 5 s away. */
    ac_sleep_init(&sl, 10);
    ac_timeout_init_deadline(&t, &sl.base, ac_clock_now_ms() + 5000);
    assert_int_equal(ac_block_on(wk, &t.base), 0);
    assert_false(t.timed_out);
    assert_true(ac_sleep_elapsed(&sl));
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&t.base);
    ac_runtime_free(rt);
}

static void test_timeout_drop_pending(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct tfut inner;
    struct ac_timeout t;
    struct ac_sleep quick;
    struct ac_select2 outer;

    assert_non_null(rt);
    wk = ac_runtime_worker(rt, 0);
    /* The timeout is the loser of an outer select: its sleep and inner go. */
    tfut_init(&inner, 0, 0);
    ac_timeout_init(&t, &inner.base, 10000);
    ac_sleep_init(&quick, 5);
    ac_select2_init(&outer, &t.base, &quick.base);
    assert_int_equal(ac_block_on(wk, &outer.base), 0);
    assert_int_equal(outer.winner, 1);
    assert_int_equal(inner.drops, 1);
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&outer.base);
    assert_int_equal(inner.drops, 1);
    ac_runtime_free(rt);
}

/* ---- nesting ---- */

static void test_nested_by_hand(void **state)
{
    struct cwaker c = {0};
    struct ac_waker w;
    struct ac_context cx = cw_context(&c, &w);
    struct tfut t[5];
    struct ac_select2 sel;
    struct ac_join2 inner_join;
    struct ac_future *jf[2];
    bool jdone[2];
    struct ac_join_n jn;
    struct ac_join2 top;

    /* top = join2(select2(t0, join2(t1, t2)), join_n(t3, t4)) */
    tfut_init(&t[0], 0, 0);
    tfut_init(&t[1], 1, 1);
    tfut_init(&t[2], 2, 2);
    tfut_init(&t[3], 3, 1);
    tfut_init(&t[4], 4, 3);
    ac_join2_init(&inner_join, &t[1].base, &t[2].base);
    ac_select2_init(&sel, &t[0].base, &inner_join.base);
    jf[0] = &t[3].base;
    jf[1] = &t[4].base;
    ac_join_n_init(&jn, jf, jdone, 2);
    ac_join2_init(&top, &sel.base, &jn.base);

    assert_int_equal(ac_future_poll(&top.base, &cx), AC_PENDING);
    assert_int_equal(ac_future_poll(&top.base, &cx), AC_PENDING);
    /* the inner join finished on poll 2: t0 lost */
    assert_int_equal(sel.winner, 1);
    assert_int_equal(t[0].drops, 1);
    assert_int_equal(ac_future_poll(&top.base, &cx), AC_READY);
    assert_int_equal(t[0].polls, 2);
    assert_int_equal(t[4].polls, 3);
    for (int i = 1; i < 5; i++)
        assert_int_equal(t[i].drops, 0);
    ac_future_drop(&top.base);
    for (int i = 0; i < 5; i++)
        assert_int_equal(t[i].drops, 1);
}

/* On a worker: select(join(sleep 5, sleep 15), timeout(sleep 10 s, 40 ms)). */
static void test_nested_on_worker(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_worker *wk;
    struct ac_sleep s1, s2, s3;
    struct ac_join2 j;
    struct ac_timeout t;
    struct ac_select2 sel;

    assert_non_null(rt);
    wk = ac_runtime_worker(rt, 0);
    ac_sleep_init(&s1, 5);
    ac_sleep_init(&s2, 15);
    ac_sleep_init(&s3, 10000);
    ac_join2_init(&j, &s1.base, &s2.base);
    ac_timeout_init(&t, &s3.base, 5000);
    ac_select2_init(&sel, &j.base, &t.base);
    assert_int_equal(ac_block_on(wk, &sel.base), 0);
    assert_int_equal(sel.winner, 0);
    assert_true(ac_sleep_elapsed(&s1));
    assert_true(ac_sleep_elapsed(&s2));
    assert_null(t.base.vt);
    assert_null(s3.base.vt);
    assert_int_equal(ac_timer_count(wk), 0);
    ac_future_drop(&sel.base);
    ac_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join2_order),
        cmocka_unit_test(test_join_n_drop_pending),
        cmocka_unit_test(test_join_n_empty),
        cmocka_unit_test(test_join_1000_sleeps),
        cmocka_unit_test(test_select2_drops_loser_at_once),
        cmocka_unit_test(test_select2_tie_goes_to_a),
        cmocka_unit_test(test_select_n_tie_lowest_index),
        cmocka_unit_test(test_select_drop_pending),
        cmocka_unit_test(test_select_sleep_loser_timer_released),
        cmocka_unit_test(test_select_connect_loser_registration_released),
        cmocka_unit_test(test_timeout_fires),
        cmocka_unit_test(test_timeout_not_fired),
        cmocka_unit_test(test_timeout_drop_pending),
        cmocka_unit_test(test_nested_by_hand),
        cmocka_unit_test(test_nested_on_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

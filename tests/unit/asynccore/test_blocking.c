/* asynccore blocking pool: results, bound, cancellation, shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "asynccore/blocking.h"
#include "asynccore/combinators.h"
#include "asynccore/runtime.h"

/* ---- a one-shot latch with a bounded wait ---- */

struct latch {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool set;
};

static void latch_init(struct latch *l)
{
    pthread_mutex_init(&l->m, NULL);
    pthread_cond_init(&l->c, NULL);
    l->set = false;
}

static void latch_destroy(struct latch *l)
{
    pthread_cond_destroy(&l->c);
    pthread_mutex_destroy(&l->m);
}

static void latch_set(struct latch *l)
{
    pthread_mutex_lock(&l->m);
    l->set = true;
    pthread_cond_broadcast(&l->c);
    pthread_mutex_unlock(&l->m);
}

/* Returns whether the latch was set within 10 s (a test never hangs). */
static bool latch_wait(struct latch *l)
{
    struct timespec until;
    bool set;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&l->m);
    while (!l->set) {
        if (pthread_cond_timedwait(&l->c, &l->m, &until) == ETIMEDOUT)
            break;
    }
    set = l->set;
    pthread_mutex_unlock(&l->m);
    return set;
}

/* ---- a counting waker that sets a latch when woken ---- */

struct cwaker {
    atomic_int clones, wakes, drops;
    struct latch woken;
};

static struct ac_waker cw_clone(const void *d);
static void cw_wake(const void *d)
{
    struct cwaker *c = (struct cwaker *)d;

    atomic_fetch_add(&c->wakes, 1);
    latch_set(&c->woken);
}
static void cw_by_ref(const void *d) { latch_set(&((struct cwaker *)d)->woken); }
static void cw_drop(const void *d) { atomic_fetch_add(&((struct cwaker *)d)->drops, 1); }
static const struct ac_waker_vtable cw_vt = {cw_clone, cw_wake, cw_by_ref, cw_drop};

static struct ac_waker cw_clone(const void *d)
{
    atomic_fetch_add(&((struct cwaker *)d)->clones, 1);
    return (struct ac_waker){&cw_vt, d};
}

static void cw_init(struct cwaker *c)
{
    atomic_init(&c->clones, 0);
    atomic_init(&c->wakes, 0);
    atomic_init(&c->drops, 0);
    latch_init(&c->woken);
}

static void cw_destroy(struct cwaker *c)
{
    assert_int_equal(atomic_load(&c->clones), atomic_load(&c->wakes) + atomic_load(&c->drops));
    latch_destroy(&c->woken);
}

static struct ac_context cw_context(struct cwaker *c, struct ac_waker *w)
{
    *w = (struct ac_waker){&cw_vt, c};
    return (struct ac_context){.waker = w, .worker = NULL, .budget = AC_COOP_BUDGET};
}

static struct ac_runtime *new_rt(unsigned threads)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = threads};
    struct ac_runtime *rt = ac_runtime_new(&opts);

    assert_non_null(rt);
    return rt;
}

/* ---- results ---- */

struct sum_job {
    uint64_t n;
    uint64_t result;
};

static void *sum_fn(void *arg)
{
    struct sum_job *j = arg;

    j->result = 0;
    for (uint64_t i = 1; i <= j->n; i++)
        j->result += i;
    return j;
}

static void test_hundred_jobs(void **state)
{
    enum { N = 100 };
    struct ac_runtime *rt = new_rt(4);
    struct sum_job *jobs = calloc(N, sizeof(*jobs));
    struct ac_blocking *bs = calloc(N, sizeof(*bs));
    struct ac_future *fs[N];
    bool done[N];
    struct ac_join_n j;
    unsigned threads;

    assert_non_null(jobs);
    assert_non_null(bs);
    assert_int_equal(ac_blocking_pool_threads(rt), 0); /* started lazily */
    for (int i = 0; i < N; i++) {
        jobs[i].n = 1000 + (uint64_t)i * 37;
        ac_blocking_init(&bs[i], rt, sum_fn, &jobs[i], NULL);
        fs[i] = &bs[i].base;
    }
    ac_join_n_init(&j, fs, done, N);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &j.base), 0);
    for (int i = 0; i < N; i++) {
        uint64_t n = jobs[i].n;

        assert_int_equal(bs[i].err, 0);
        assert_ptr_equal(bs[i].result, &jobs[i]);
        assert_int_equal(jobs[i].result, n * (n + 1) / 2);
    }
    threads = ac_blocking_pool_threads(rt);
    assert_true(threads >= 1 && threads <= 4);
    ac_future_drop(&j.base);
    free(bs);
    free(jobs);
    ac_runtime_free(rt);
}

static void *resolve_fn(void *arg)
{
    struct addrinfo hints, *res = NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(arg, "80", &hints, &res) != 0)
        return NULL;
    return res;
}

static void free_ai(void *p) { freeaddrinfo(p); }

static void test_getaddrinfo(void **state)
{
    struct ac_runtime *rt = new_rt(2);
    struct ac_blocking b;
    struct addrinfo *ai;

    ac_blocking_init(&b, rt, resolve_fn, "localhost", free_ai);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &b.base), 0);
    assert_int_equal(b.err, 0);
    ai = b.result;
    assert_non_null(ai);
    assert_true(ai->ai_family == AF_INET || ai->ai_family == AF_INET6);
    ac_future_drop(&b.base); /* output was read: the caller owns it */
    freeaddrinfo(ai);
    ac_runtime_free(rt);
}

/* ---- the bound ---- */

struct gate {
    atomic_int running, max_running, calls;
    struct latch open;
};

static void *gated_fn(void *arg)
{
    struct gate *g = arg;
    int now = atomic_fetch_add(&g->running, 1) + 1;
    int max = atomic_load(&g->max_running);

    atomic_fetch_add(&g->calls, 1);
    while (now > max && !atomic_compare_exchange_weak(&g->max_running, &max, now))
        ;
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&g->running, 1);
    return arg;
}

static void test_thread_bound(void **state)
{
    enum { N = 12 };
    struct ac_runtime *rt = new_rt(2);
    struct gate g;
    struct ac_blocking bs[N];
    struct ac_future *fs[N];
    bool done[N];
    struct ac_join_n j;

    atomic_init(&g.running, 0);
    atomic_init(&g.max_running, 0);
    atomic_init(&g.calls, 0);
    for (int i = 0; i < N; i++) {
        ac_blocking_init(&bs[i], rt, gated_fn, &g, NULL);
        fs[i] = &bs[i].base;
    }
    ac_join_n_init(&j, fs, done, N);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &j.base), 0);
    assert_int_equal(atomic_load(&g.calls), N);
    assert_true(atomic_load(&g.max_running) <= 2);
    assert_int_equal(ac_blocking_pool_threads(rt), 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(bs[i].err, 0);
    ac_future_drop(&j.base);
    ac_runtime_free(rt);
}

/* ---- cancellation ---- */

/* Blocks until `release` is set, after announcing it started. Its result is
 * a heap payload that points back at it, so cleanup can count itself. */
struct held {
    struct latch started, release;
    atomic_int calls, cleanups;
    struct payload *payload;
};

struct payload {
    struct held *h;
};

static void *held_fn(void *arg)
{
    struct held *h = arg;

    atomic_fetch_add(&h->calls, 1);
    latch_set(&h->started);
    (void)latch_wait(&h->release); /* no cmocka asserts off the main thread */
    h->payload = malloc(sizeof(*h->payload)); /* freed by cleanup or the test */
    if (h->payload != NULL)
        h->payload->h = h;
    return h->payload;
}

static struct held *held_new(void)
{
    struct held *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    latch_init(&h->started);
    latch_init(&h->release);
    atomic_init(&h->calls, 0);
    atomic_init(&h->cleanups, 0);
    return h;
}

static void held_free(struct held *h)
{
    latch_destroy(&h->started);
    latch_destroy(&h->release);
    free(h);
}

static void held_cleanup(void *result)
{
    struct payload *p = result;

    atomic_fetch_add(&p->h->cleanups, 1);
    free(p);
}

/* A held job on a one-thread runtime, polled by hand with a counting waker. */
struct held_job {
    struct ac_runtime *rt;
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct held *h;
    struct ac_blocking b;
};

static void held_job_init(struct held_job *j)
{
    j->rt = new_rt(1);
    j->h = held_new();
    cw_init(&j->c);
    j->cx = cw_context(&j->c, &j->w);
    ac_blocking_init(&j->b, j->rt, held_fn, j->h, held_cleanup);
}

/* After the runtime was freed (and so every job has ended). */
static void held_job_destroy(struct held_job *j)
{
    cw_destroy(&j->c);
    held_free(j->h);
}

static void test_drop_while_running(void **state)
{
    struct held_job j;

    held_job_init(&j);
    assert_int_equal(ac_future_poll(&j.b.base, &j.cx), AC_PENDING);
    assert_true(latch_wait(&j.h->started));
    assert_int_equal(ac_future_poll(&j.b.base, &j.cx), AC_PENDING); /* still running */
    ac_future_drop(&j.b.base);
    assert_int_equal(atomic_load(&j.c.drops), 1); /* waker released by the drop */
    latch_set(&j.h->release);
    ac_runtime_free(j.rt); /* joins the pool: the job has finished */
    assert_int_equal(atomic_load(&j.h->calls), 1);
    assert_int_equal(atomic_load(&j.h->cleanups), 1);
    assert_int_equal(atomic_load(&j.c.wakes), 0);
    held_job_destroy(&j);
}

static void test_drop_after_done_unobserved(void **state)
{
    struct held_job j;

    held_job_init(&j);
    latch_set(&j.h->release);
    assert_int_equal(ac_future_poll(&j.b.base, &j.cx), AC_PENDING);
    assert_true(latch_wait(&j.c.woken)); /* done, result stored */
    ac_future_drop(&j.b.base);          /* never polled to Ready */
    assert_int_equal(atomic_load(&j.h->cleanups), 1);
    ac_runtime_free(j.rt);
    held_job_destroy(&j);
}

static void *count_fn(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return arg;
}

static void test_drop_before_start(void **state)
{
    struct ac_runtime *rt = new_rt(1);
    struct cwaker ca, cb, cd;
    struct ac_waker wa, wb, wd;
    struct ac_context xa, xb, xd;
    struct held *h = held_new();
    struct ac_blocking a, b, d;
    atomic_int b_calls, d_calls;

    cw_init(&ca);
    cw_init(&cb);
    cw_init(&cd);
    xa = cw_context(&ca, &wa);
    xb = cw_context(&cb, &wb);
    xd = cw_context(&cd, &wd);
    atomic_init(&b_calls, 0);
    atomic_init(&d_calls, 0);

    /* one thread, busy with a; b and d queue behind it */
    ac_blocking_init(&a, rt, held_fn, h, held_cleanup);
    ac_blocking_init(&b, rt, count_fn, &b_calls, NULL);
    ac_blocking_init(&d, rt, count_fn, &d_calls, NULL);
    assert_int_equal(ac_future_poll(&a.base, &xa), AC_PENDING);
    assert_true(latch_wait(&h->started));
    assert_int_equal(ac_future_poll(&b.base, &xb), AC_PENDING);
    assert_int_equal(ac_future_poll(&d.base, &xd), AC_PENDING);
    ac_future_drop(&b.base);
    latch_set(&h->release);
    assert_true(latch_wait(&cd.woken)); /* d ran, so b's turn (FIFO) passed */
    assert_int_equal(ac_future_poll(&d.base, &xd), AC_READY);
    assert_int_equal(d.err, 0);
    assert_int_equal(atomic_load(&d_calls), 1);
    assert_int_equal(atomic_load(&b_calls), 0); /* skipped */
    assert_int_equal(ac_future_poll(&a.base, &xa), AC_READY);
    assert_ptr_equal(a.result, h->payload);
    free(a.result);
    ac_future_drop(&a.base);
    ac_future_drop(&d.base);
    assert_int_equal(atomic_load(&h->cleanups), 0);
    assert_int_equal(ac_blocking_pool_threads(rt), 1);
    ac_runtime_free(rt);
    cw_destroy(&ca);
    cw_destroy(&cb);
    cw_destroy(&cd);
    held_free(h);
}

/* Shutdown with jobs queued: they are cancelled, never run. The running job
 * waits until the queued one was cancelled, which happens inside the pool's
 * shutdown, so the order is deterministic. */
struct until_woken {
    struct cwaker *c;
    struct latch started;
    int value;
};

static void *until_woken_fn(void *arg)
{
    struct until_woken *u = arg;

    latch_set(&u->started);
    (void)latch_wait(&u->c->woken);
    return &u->value;
}

static void test_shutdown_with_queued_jobs(void **state)
{
    struct ac_runtime *rt = new_rt(1);
    struct cwaker ca, cb, cc;
    struct ac_waker wa, wb, wc;
    struct ac_context xa, xb, xc;
    struct ac_blocking a, b, c2;
    atomic_int calls;
    struct until_woken u;

    cw_init(&ca);
    cw_init(&cb);
    cw_init(&cc);
    xa = cw_context(&ca, &wa);
    xb = cw_context(&cb, &wb);
    xc = cw_context(&cc, &wc);
    atomic_init(&calls, 0);
    u.c = &cb;
    u.value = 5;
    latch_init(&u.started);

    ac_blocking_init(&a, rt, until_woken_fn, &u, NULL);
    ac_blocking_init(&b, rt, count_fn, &calls, NULL);
    ac_blocking_init(&c2, rt, count_fn, &calls, NULL);
    assert_int_equal(ac_future_poll(&a.base, &xa), AC_PENDING);
    assert_true(latch_wait(&u.started)); /* a is running, not queued */
    assert_int_equal(ac_future_poll(&b.base, &xb), AC_PENDING);
    assert_int_equal(ac_future_poll(&c2.base, &xc), AC_PENDING);
    ac_runtime_free(rt); /* cancels b and c2, lets a finish, joins */

    assert_int_equal(atomic_load(&calls), 0);
    assert_int_equal(atomic_load(&cb.wakes), 1);
    assert_int_equal(atomic_load(&cc.wakes), 1);
    assert_int_equal(ac_future_poll(&b.base, &xb), AC_READY);
    assert_int_equal(b.err, -ECANCELED);
    assert_int_equal(ac_future_poll(&c2.base, &xc), AC_READY);
    assert_int_equal(c2.err, -ECANCELED);
    /* the running job finished normally */
    assert_int_equal(atomic_load(&ca.wakes), 1);
    assert_int_equal(ac_future_poll(&a.base, &xa), AC_READY);
    assert_int_equal(a.err, 0);
    assert_ptr_equal(a.result, &u.value);
    ac_future_drop(&a.base);
    ac_future_drop(&b.base);
    ac_future_drop(&c2.base);
    cw_destroy(&ca);
    cw_destroy(&cb);
    cw_destroy(&cc);
    latch_destroy(&u.started);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hundred_jobs),
        cmocka_unit_test(test_getaddrinfo),
        cmocka_unit_test(test_thread_bound),
        cmocka_unit_test(test_drop_while_running),
        cmocka_unit_test(test_drop_after_done_unobserved),
        cmocka_unit_test(test_drop_before_start),
        cmocka_unit_test(test_shutdown_with_queued_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

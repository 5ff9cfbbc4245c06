/* asynccore sync primitives: oneshot, notify, semaphore, limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "asynccore/combinators.h"
#include "asynccore/limit.h"
#include "asynccore/local_notify.h"
#include "asynccore/runtime.h"
#include "asynccore/sync.h"
#include "asynccore/timer.h"

/* ---- a counting waker, safe to wake from any thread ---- */

struct cwaker {
    atomic_int clones, wakes, by_ref, drops;
};

static struct ac_waker cw_clone(const void *d);
static void cw_wake(const void *d) { atomic_fetch_add(&((struct cwaker *)d)->wakes, 1); }
static void cw_by_ref(const void *d) { atomic_fetch_add(&((struct cwaker *)d)->by_ref, 1); }
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
    atomic_init(&c->by_ref, 0);
    atomic_init(&c->drops, 0);
}

static struct ac_context cw_context(struct cwaker *c, struct ac_waker *w)
{
    *w = (struct ac_waker){&cw_vt, c};
    return (struct ac_context){.waker = w, .worker = NULL, .budget = AC_COOP_BUDGET};
}

/* Every clone was balanced by exactly one wake or drop. */
static void assert_balanced(struct cwaker *c)
{
    assert_int_equal(atomic_load(&c->clones), atomic_load(&c->wakes) + atomic_load(&c->drops));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- oneshot ---- */

static void test_oneshot_send_before_recv(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_oneshot *ch = ac_oneshot_new(NULL);
    struct ac_oneshot_recv r;
    int x = 42;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_non_null(ch);
    assert_true(ac_oneshot_send(ch, &x));
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_READY);
    assert_ptr_equal(r.value, &x);
    assert_false(r.closed);
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&c.clones), 0);
}

static void test_oneshot_wakes_receiver(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_oneshot *ch = ac_oneshot_new(NULL);
    struct ac_oneshot_recv r;
    int x = 7;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_PENDING);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_PENDING);
    assert_int_equal(atomic_load(&c.clones), 1); /* same waker: stored once */
    assert_int_equal(atomic_load(&c.wakes), 0);
    assert_true(ac_oneshot_send(ch, &x));
    assert_int_equal(atomic_load(&c.wakes), 1);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_READY);
    assert_ptr_equal(r.value, &x);
    ac_future_drop(&r.base);
    assert_balanced(&c);
}

struct sender_arg {
    struct ac_oneshot *ch;
    void *value;
    bool close;
    bool ok;
};

static void *sender_thread(void *p)
{
    struct sender_arg *a = p;

    sleep_ms(20);
    if (a->close)
        ac_oneshot_close(a->ch);
    else
        a->ok = ac_oneshot_send(a->ch, a->value);
    return NULL;
}

static void test_oneshot_across_threads(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_oneshot *ch = ac_oneshot_new(NULL);
    struct ac_oneshot_recv r;
    int x = 99;
    struct sender_arg a = {.ch = ch, .value = &x};
    pthread_t th;

    assert_non_null(rt);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(pthread_create(&th, NULL, sender_thread, &a), 0);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &r.base), 0);
    pthread_join(th, NULL);
    assert_true(a.ok);
    assert_ptr_equal(r.value, &x);
    assert_false(r.closed);
    ac_future_drop(&r.base);
    ac_runtime_free(rt);
}

static void test_oneshot_closed_sender(void **state)
{
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_oneshot *ch = ac_oneshot_new(NULL);
    struct ac_oneshot_recv r;
    struct sender_arg a = {.close = true};
    pthread_t th;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_non_null(rt);
    /* closed before the receiver looks */
    assert_non_null(ch);
    ac_oneshot_close(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_READY);
    assert_true(r.closed);
    assert_null(r.value);
    ac_future_drop(&r.base);

    /* closed from another thread while the receiver waits on a worker */
    a.ch = ac_oneshot_new(NULL);
    assert_non_null(a.ch);
    ac_oneshot_recv_init(&r, a.ch);
    assert_int_equal(pthread_create(&th, NULL, sender_thread, &a), 0);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &r.base), 0);
    pthread_join(th, NULL);
    assert_true(r.closed);
    ac_future_drop(&r.base);
    ac_runtime_free(rt);
}

static void test_oneshot_dropped_receiver(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_oneshot *ch = ac_oneshot_new(NULL);
    struct ac_oneshot_recv r;
    int x = 1;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_PENDING);
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&c.drops), 1); /* stored waker released */
    assert_false(ac_oneshot_send(ch, &x));
    assert_int_equal(atomic_load(&c.wakes), 0);
    assert_balanced(&c);

    /* never polled */
    ch = ac_oneshot_new(NULL);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    ac_future_drop(&r.base);
    assert_false(ac_oneshot_send(ch, &x));

    /* close after the receiver left: nothing to do, no leak */
    ch = ac_oneshot_new(NULL);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    ac_future_drop(&r.base);
    ac_oneshot_close(ch);
}

/* A value sent and never read is released through drop_value when the
 * receiver goes (the heap values below would show as leaks under ASan),
 * exactly once, on the dropping thread; a value read is the receiver's. */
static atomic_int dropped_values;

static void free_value(void *v)
{
    atomic_fetch_add(&dropped_values, 1);
    free(v);
}

static void test_oneshot_unread_value_released(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_oneshot_recv r;

    cw_init(&c);
    cx = cw_context(&c, &w);
    atomic_store(&dropped_values, 0);

    /* sent, receiver dropped without a poll */
    struct ac_oneshot *ch = ac_oneshot_new(free_value);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_true(ac_oneshot_send(ch, malloc(64)));
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&dropped_values), 1);

    /* polled while pending, then sent, then dropped before the next poll */
    ch = ac_oneshot_new(free_value);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_PENDING);
    assert_true(ac_oneshot_send(ch, malloc(64)));
    assert_int_equal(atomic_load(&c.wakes), 1);
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&dropped_values), 2);

    /* read: the value is the receiver's, drop_value is not called */
    ch = ac_oneshot_new(free_value);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    void *v = malloc(64);
    assert_true(ac_oneshot_send(ch, v));
    assert_int_equal(ac_future_poll(&r.base, &cx), AC_READY);
    assert_ptr_equal(r.value, v);
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&dropped_values), 2);
    free(v);

    /* refused (receiver already gone): still the sender's, not dropped */
    ch = ac_oneshot_new(free_value);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    ac_future_drop(&r.base);
    v = malloc(64);
    assert_false(ac_oneshot_send(ch, v));
    assert_int_equal(atomic_load(&dropped_values), 2);
    free(v);

    /* closed without a value: nothing to drop */
    ch = ac_oneshot_new(free_value);
    assert_non_null(ch);
    ac_oneshot_recv_init(&r, ch);
    ac_oneshot_close(ch);
    ac_future_drop(&r.base);
    assert_int_equal(atomic_load(&dropped_values), 2);
    assert_balanced(&c);
}

/* ---- notify ---- */

static void test_notify_before_wait(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_notify n;
    struct ac_notified a;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_int_equal(ac_notify_init(&n), 0);
    assert_false(ac_notify_is_set(&n));
    ac_notify_all(&n);
    assert_true(ac_notify_is_set(&n));
    ac_notified_init(&a, &n);
    assert_int_equal(ac_future_poll(&a.base, &cx), AC_READY);
    assert_int_equal(atomic_load(&c.clones), 0);
    ac_future_drop(&a.base);
    ac_notify_all(&n); /* idempotent */
    assert_true(ac_notify_is_set(&n));
    ac_notify_destroy(&n);
}

static void test_notify_many_waiters(void **state)
{
    enum { N = 1000, GONE = 500 };
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_notify n;
    struct ac_notified *ws = calloc(N, sizeof(*ws));
    struct ac_notified late;

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_non_null(ws);
    assert_int_equal(ac_notify_init(&n), 0);
    for (int i = 0; i < N; i++) {
        ac_notified_init(&ws[i], &n);
        assert_int_equal(ac_future_poll(&ws[i].base, &cx), AC_PENDING);
        assert_true(ws[i].queued);
    }
    assert_int_equal(ac_future_poll(&ws[3].base, &cx), AC_PENDING); /* re-poll */
    assert_int_equal(atomic_load(&c.clones), N);
    /* dropping queued waiters unlinks them (head, middle, tail of list) */
    ac_future_drop(&ws[GONE].base);
    ac_future_drop(&ws[0].base);
    ac_future_drop(&ws[N - 1].base);
    assert_int_equal(atomic_load(&c.drops), 3);
    {
        int count = 0;

        for (struct ac_link *k = n.waiters.first; k != NULL; k = k->next) {
            struct ac_notified *it = AC_LIST_ENTRY(k, struct ac_notified, link);
            assert_true(it != &ws[GONE] && it != &ws[0] && it != &ws[N - 1]);
            count++;
        }
        assert_int_equal(count, N - 3);
    }
    ac_notify_all(&n);
    assert_int_equal(atomic_load(&c.wakes), N - 3);
    assert_true(ac_list_empty(&n.waiters));
    for (int i = 1; i < N - 1; i++) {
        if (i == GONE)
            continue;
        assert_false(ws[i].queued);
        assert_int_equal(ac_future_poll(&ws[i].base, &cx), AC_READY);
        ac_future_drop(&ws[i].base);
    }
    ac_notified_init(&late, &n); /* created after: immediately ready */
    assert_int_equal(ac_future_poll(&late.base, &cx), AC_READY);
    ac_future_drop(&late.base);
    assert_balanced(&c);
    ac_notify_destroy(&n);
    free(ws);
}

static void *notifier_thread(void *p)
{
    sleep_ms(20);
    ac_notify_all(p);
    return NULL;
}

static void test_notify_across_threads(void **state)
{
    enum { N = 10 };
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct ac_notify n;
    struct ac_notified ws[N];
    struct ac_future *fs[N];
    bool done[N];
    struct ac_join_n j;
    pthread_t th;

    assert_non_null(rt);
    assert_int_equal(ac_notify_init(&n), 0);
    for (int i = 0; i < N; i++) {
        ac_notified_init(&ws[i], &n);
        fs[i] = &ws[i].base;
    }
    ac_join_n_init(&j, fs, done, N);
    assert_int_equal(pthread_create(&th, NULL, notifier_thread, &n), 0);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &j.base), 0);
    pthread_join(th, NULL);
    assert_true(ac_notify_is_set(&n));
    ac_future_drop(&j.base);
    ac_notify_destroy(&n);
    ac_runtime_free(rt);
}

/* ---- semaphore ---- */

static void test_semaphore_fifo(void **state)
{
    struct cwaker c[4];
    struct ac_waker w[4];
    struct ac_context cx[4];
    struct ac_semaphore s;
    struct ac_acquire a[4];

    assert_int_equal(ac_semaphore_init(&s, 1), 0);
    assert_true(ac_semaphore_try_acquire(&s));
    assert_false(ac_semaphore_try_acquire(&s));
    for (int i = 0; i < 4; i++) {
        cw_init(&c[i]);
        cx[i] = cw_context(&c[i], &w[i]);
        ac_acquire_init(&a[i], &s);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(ac_future_poll(&a[i].base, &cx[i]), AC_PENDING);

    ac_semaphore_release(&s, 1); /* goes to a[0], the first in line */
    assert_int_equal(atomic_load(&c[0].wakes), 1);
    assert_int_equal(atomic_load(&c[1].wakes), 0);
    assert_int_equal(ac_semaphore_available(&s), 0);
    /* a newcomer cannot barge ahead of a[1] and a[2] */
    assert_int_equal(ac_future_poll(&a[3].base, &cx[3]), AC_PENDING);
    assert_int_equal(ac_future_poll(&a[0].base, &cx[0]), AC_READY);

    ac_semaphore_release(&s, 2); /* a[1] and a[2] */
    assert_int_equal(atomic_load(&c[1].wakes), 1);
    assert_int_equal(atomic_load(&c[2].wakes), 1);
    assert_int_equal(atomic_load(&c[3].wakes), 0);
    assert_false(ac_semaphore_try_acquire(&s));
    assert_int_equal(ac_future_poll(&a[2].base, &cx[2]), AC_READY);
    assert_int_equal(ac_future_poll(&a[1].base, &cx[1]), AC_READY);

    ac_semaphore_release(&s, 1); /* a[0]'s permit: a[3] */
    assert_int_equal(atomic_load(&c[3].wakes), 1);
    assert_int_equal(ac_future_poll(&a[3].base, &cx[3]), AC_READY);
    ac_semaphore_release(&s, 3);
    assert_int_equal(ac_semaphore_available(&s), 3);
    /* dropping observed acquires does not return permits twice */
    for (int i = 0; i < 4; i++) {
        ac_future_drop(&a[i].base);
        assert_balanced(&c[i]);
    }
    assert_int_equal(ac_semaphore_available(&s), 3);
    assert_true(ac_semaphore_try_acquire(&s));
    assert_int_equal(ac_semaphore_available(&s), 2);
    ac_semaphore_destroy(&s);
}

static void test_semaphore_permit_return_on_drop(void **state)
{
    struct cwaker c[3];
    struct ac_waker w[3];
    struct ac_context cx[3];
    struct ac_semaphore s;
    struct ac_acquire a[3];

    assert_int_equal(ac_semaphore_init(&s, 0), 0);
    for (int i = 0; i < 3; i++) {
        cw_init(&c[i]);
        cx[i] = cw_context(&c[i], &w[i]);
        ac_acquire_init(&a[i], &s);
        assert_int_equal(ac_future_poll(&a[i].base, &cx[i]), AC_PENDING);
    }
    /* a queued, never granted waiter leaves the line */
    ac_future_drop(&a[1].base);
    assert_balanced(&c[1]);
    ac_semaphore_release(&s, 1);
    assert_true(a[0].granted);
    assert_int_equal(atomic_load(&c[0].wakes), 1);
    /* a[0] was handed the permit but is dropped before seeing it: a[2] gets it */
    ac_future_drop(&a[0].base);
    assert_true(a[2].granted);
    assert_int_equal(atomic_load(&c[2].wakes), 1);
    assert_int_equal(ac_semaphore_available(&s), 0);
    /* and again with nobody waiting: the permit goes back to the pool */
    ac_future_drop(&a[2].base);
    assert_int_equal(ac_semaphore_available(&s), 1);
    for (int i = 0; i < 3; i++)
        assert_balanced(&c[i]);
    ac_semaphore_destroy(&s);
}

static void test_semaphore_adjust(void **state)
{
    struct cwaker c;
    struct ac_waker w;
    struct ac_context cx;
    struct ac_semaphore s;
    struct ac_acquire a[3];

    cw_init(&c);
    cx = cw_context(&c, &w);
    assert_int_equal(ac_semaphore_init(&s, 2), 0);
    assert_true(ac_semaphore_try_acquire(&s));
    assert_true(ac_semaphore_try_acquire(&s));
    for (int i = 0; i < 3; i++) {
        ac_acquire_init(&a[i], &s);
        assert_int_equal(ac_future_poll(&a[i].base, &cx), AC_PENDING);
    }
    ac_semaphore_adjust(&s, 2); /* limit 2 -> 4: two waiters served */
    assert_true(a[0].granted);
    assert_true(a[1].granted);
    assert_false(a[2].granted);
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_future_drop(&a[2].base);
    ac_semaphore_release(&s, 3);
    assert_int_equal(ac_semaphore_available(&s), 3);
    ac_semaphore_adjust(&s, -2);
    assert_int_equal(ac_semaphore_available(&s), 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ac_future_poll(&a[i].base, &cx), AC_READY);
        ac_future_drop(&a[i].base);
    }
    assert_balanced(&c);
    /* limit 2, one free and one held (H): shrink to 0. The free permit goes
     * now, the held one is owed and absorbed when H is released. */
    ac_semaphore_adjust(&s, -2);
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_semaphore_adjust(&s, 0);
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_semaphore_release(&s, 1); /* H */
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_semaphore_adjust(&s, 1); /* limit 0 -> 1 */
    assert_int_equal(ac_semaphore_available(&s), 1);
    /* an increase pays the debt before adding */
    assert_true(ac_semaphore_try_acquire(&s)); /* H again */
    ac_semaphore_adjust(&s, -3);               /* 1 -> -2: 3 owed */
    ac_semaphore_adjust(&s, 2);                /* -2 -> 0: 1 owed */
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_semaphore_release(&s, 1); /* H: pays the last of the debt */
    assert_int_equal(ac_semaphore_available(&s), 0);
    ac_semaphore_adjust(&s, 2); /* 0 -> 2 */
    assert_int_equal(ac_semaphore_available(&s), 2);
    ac_semaphore_destroy(&s);
}

/* 20 jobs, 3 permits, on a worker: acquire, sleep, release. */
struct sem_shared {
    struct ac_semaphore sem;
    int active, max_active;
    int order[32];
    int n;
};

struct sem_job {
    struct ac_future base;
    struct sem_shared *sh;
    struct ac_acquire acq;
    struct ac_sleep sl;
    int id, step;
};

static ac_poll_t sem_job_poll(struct ac_future *self, struct ac_context *cx)
{
    struct sem_job *j = (struct sem_job *)self;
    struct sem_shared *sh = j->sh;

    if (j->step == 0) {
        if (ac_future_poll(&j->acq.base, cx) == AC_PENDING)
            return AC_PENDING;
        ac_future_drop(&j->acq.base);
        sh->order[sh->n++] = j->id;
        if (++sh->active > sh->max_active)
            sh->max_active = sh->active;
        ac_sleep_init(&j->sl, 2);
        j->step = 1;
    }
    if (ac_future_poll(&j->sl.base, cx) == AC_PENDING)
        return AC_PENDING;
    sh->active--;
    ac_semaphore_release(&sh->sem, 1);
    return AC_READY;
}

static void sem_job_drop(struct ac_future *self)
{
    struct sem_job *j = (struct sem_job *)self;

    ac_future_drop(&j->acq.base);
    ac_future_drop(&j->sl.base);
}

static const struct ac_future_vtable sem_job_vt = {sem_job_poll, sem_job_drop};

static void test_semaphore_on_worker(void **state)
{
    enum { N = 20 };
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    struct sem_shared sh = {0};
    struct sem_job *jobs = calloc(N, sizeof(*jobs));
    struct ac_future *fs[N];
    bool done[N];
    struct ac_join_n j;

    assert_non_null(rt);
    assert_non_null(jobs);
    assert_int_equal(ac_semaphore_init(&sh.sem, 3), 0);
    for (int i = 0; i < N; i++) {
        jobs[i].base.vt = &sem_job_vt;
        jobs[i].sh = &sh;
        jobs[i].id = i;
        ac_acquire_init(&jobs[i].acq, &sh.sem);
        fs[i] = &jobs[i].base;
    }
    ac_join_n_init(&j, fs, done, N);
    assert_int_equal(ac_block_on(ac_runtime_worker(rt, 0), &j.base), 0);
    ac_future_drop(&j.base);
    assert_int_equal(sh.n, N);
    assert_int_equal(sh.max_active, 3);
    for (int i = 0; i < N; i++)
        assert_int_equal(sh.order[i], i); /* FIFO */
    assert_int_equal(ac_semaphore_available(&sh.sem), 3);
    ac_semaphore_destroy(&sh.sem);
    free(jobs);
    ac_runtime_free(rt);
}

/* ---- limit ---- */

/* Permits are taken only by try_take; waiters are told, never handed one. */
static void test_limit_take_put_wait(void **state)
{
    (void)state;
    struct ac_limit l;
    struct cwaker c1, c2;
    struct ac_waker w1, w2;
    cw_init(&c1);
    cw_init(&c2);
    struct ac_context cx1 = cw_context(&c1, &w1), cx2 = cw_context(&c2, &w2);
    struct ac_limit_wait a = {0}, b = {0};

    assert_int_equal(ac_limit_init(&l, 2), 0);
    assert_true(ac_limit_try_take(&l));
    assert_true(ac_limit_try_take(&l));
    assert_false(ac_limit_try_take(&l));
    assert_int_equal(ac_limit_poll_wait(&l, &a, &cx1), AC_PENDING);
    assert_int_equal(ac_limit_poll_wait(&l, &a, &cx1), AC_PENDING); /* listed once */
    assert_int_equal(ac_limit_poll_wait(&l, &b, &cx2), AC_PENDING);
    assert_int_equal(atomic_load(&l.nwaiting), 2);
    ac_limit_put(&l); /* both told; the permit stays free for whoever comes */
    assert_int_equal(atomic_load(&c1.wakes), 1);
    assert_int_equal(atomic_load(&c2.wakes), 1);
    assert_int_equal(atomic_load(&l.nwaiting), 0);
    assert_int_equal(ac_limit_available(&l), 1);
    assert_int_equal(ac_limit_poll_wait(&l, &b, &cx2), AC_READY);
    assert_true(ac_limit_try_take(&l));
    /* a woken waiter that no longer needs a permit holds none */
    assert_int_equal(ac_limit_poll_wait(&l, &a, &cx1), AC_PENDING);
    ac_limit_wait_cancel(&a);
    assert_int_equal(atomic_load(&l.nwaiting), 0);
    ac_limit_wait_cancel(&a); /* twice: no-op */
    ac_limit_wait_cancel(&b);
    /* shrink below use: paid back as permits return */
    ac_limit_adjust(&l, -1);
    assert_int_equal(ac_limit_available(&l), -1);
    ac_limit_put(&l);
    assert_false(ac_limit_try_take(&l));
    ac_limit_put(&l);
    assert_int_equal(ac_limit_available(&l), 1);
    /* growth wakes the waiters */
    assert_true(ac_limit_try_take(&l));
    assert_int_equal(ac_limit_poll_wait(&l, &a, &cx1), AC_PENDING);
    ac_limit_adjust(&l, 1);
    assert_int_equal(atomic_load(&c1.wakes), 2);
    ac_limit_wait_cancel(&a);
    assert_balanced(&c1);
    assert_balanced(&c2);
    ac_limit_destroy(&l);
}

/* Threads taking and returning permits never exceed the limit. */
struct limit_share {
    struct ac_limit l;
    atomic_int held, max_held;
};

static void *limit_hammer(void *arg)
{
    struct limit_share *sh = arg;
    for (int i = 0; i < 20000; i++) {
        if (!ac_limit_try_take(&sh->l))
            continue;
        int h = atomic_fetch_add(&sh->held, 1) + 1;
        int m = atomic_load(&sh->max_held);
        while (h > m && !atomic_compare_exchange_weak(&sh->max_held, &m, h))
            ;
        atomic_fetch_sub(&sh->held, 1);
        ac_limit_put(&sh->l);
    }
    return NULL;
}

static void test_limit_threads(void **state)
{
    (void)state;
    struct limit_share sh;
    assert_int_equal(ac_limit_init(&sh.l, 3), 0);
    atomic_init(&sh.held, 0);
    atomic_init(&sh.max_held, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, limit_hammer, &sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&sh.max_held) <= 3);
    assert_int_equal(ac_limit_available(&sh.l), 3);
    ac_limit_destroy(&sh.l);
}

/* ---- local notify ---- */

static void test_local_notify(void **state)
{
    (void)state;
    struct ac_local_notify n;
    struct cwaker c1, c2;
    struct ac_waker w1, w2;
    cw_init(&c1);
    cw_init(&c2);
    struct ac_context cx1 = cw_context(&c1, &w1), cx2 = cw_context(&c2, &w2);
    struct ac_local_notified a, b, late;

    ac_local_notify_init(&n);
    ac_local_notified_init(&a, &n);
    ac_local_notified_init(&b, &n);
    assert_int_equal(ac_future_poll(&a.base, &cx1), AC_PENDING);
    assert_int_equal(ac_future_poll(&a.base, &cx1), AC_PENDING); /* listed once */
    assert_int_equal(ac_future_poll(&b.base, &cx2), AC_PENDING);
    ac_future_drop(&b.base); /* a dropped waiter leaves the list */
    ac_local_notify_all(&n);
    assert_int_equal(atomic_load(&c1.wakes), 1);
    assert_int_equal(atomic_load(&c2.wakes), 0);
    assert_int_equal(ac_future_poll(&a.base, &cx1), AC_READY);
    ac_future_drop(&a.base);
    ac_local_notified_init(&late, &n); /* sticky: ready at once */
    assert_int_equal(ac_future_poll(&late.base, &cx2), AC_READY);
    ac_future_drop(&late.base);
    assert_true(ac_list_empty(&n.waiters));
    assert_balanced(&c1);
    assert_balanced(&c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oneshot_send_before_recv),
        cmocka_unit_test(test_oneshot_wakes_receiver),
        cmocka_unit_test(test_oneshot_across_threads),
        cmocka_unit_test(test_oneshot_closed_sender),
        cmocka_unit_test(test_oneshot_dropped_receiver),
        cmocka_unit_test(test_oneshot_unread_value_released),
        cmocka_unit_test(test_notify_before_wait),
        cmocka_unit_test(test_notify_many_waiters),
        cmocka_unit_test(test_notify_across_threads),
        cmocka_unit_test(test_semaphore_fifo),
        cmocka_unit_test(test_semaphore_permit_return_on_drop),
        cmocka_unit_test(test_semaphore_adjust),
        cmocka_unit_test(test_semaphore_on_worker),
        cmocka_unit_test(test_limit_take_put_wait),
        cmocka_unit_test(test_limit_threads),
        cmocka_unit_test(test_local_notify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

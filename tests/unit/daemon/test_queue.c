/* Server slots and the backend queue: caps under compare-and-swap, FIFO
 * order, max_queue, who gets woken when a slot frees or a waiter leaves, and
 * that no waker reference is leaked. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "queue.h"

/* A waker over a counter: wakes and live references are counted. */
struct probe {
    int wakes;
    int refs;
};

static struct ac_waker probe_clone(const void *data);
static void probe_wake(const void *data)
{
    struct probe *p = (struct probe *)data;
    p->wakes++;
    p->refs--;
}
static void probe_wake_by_ref(const void *data) { ((struct probe *)data)->wakes++; }
static void probe_drop(const void *data) { ((struct probe *)data)->refs--; }
static const struct ac_waker_vtable probe_vt = {probe_clone, probe_wake, probe_wake_by_ref,
                                                probe_drop};
static struct ac_waker probe_clone(const void *data)
{
    ((struct probe *)data)->refs++;
    return (struct ac_waker){&probe_vt, data};
}

/* The caller's own waker (borrowed: not counted). */
static struct ac_waker probe_waker(struct probe *p) { return (struct ac_waker){&probe_vt, p}; }

static void test_slots(void **state)
{
    (void)state;
    _Atomic unsigned slots = 0;
    assert_true(ferry_slot_take(&slots, 2));
    assert_true(ferry_slot_take(&slots, 2));
    assert_false(ferry_slot_take(&slots, 2));
    assert_int_equal(atomic_load(&slots), 2);
    /* No cap: always, and counted. */
    assert_true(ferry_slot_take(&slots, 0));
    assert_int_equal(atomic_load(&slots), 3);
    struct ferry_queue q;
    assert_int_equal(ferry_queue_init(&q), 0);
    ferry_slot_put(&slots, &q);
    ferry_slot_put(&slots, &q);
    assert_true(ferry_slot_take(&slots, 2));
    assert_false(ferry_slot_take(&slots, 2));
    ferry_queue_destroy(&q);
}

static void test_fifo_and_wakes(void **state)
{
    (void)state;
    struct ferry_queue q;
    assert_int_equal(ferry_queue_init(&q), 0);
    struct ferry_queue_waiter w[3];
    struct probe p[3];
    memset(w, 0, sizeof(w));
    memset(p, 0, sizeof(p));
    for (int i = 0; i < 3; i++)
        assert_int_equal(ferry_queue_join(&q, &w[i], 3), 0);
    struct ferry_queue_waiter extra = {0};
    assert_int_equal(ferry_queue_join(&q, &extra, 3), -EAGAIN); /* max_queue */
    assert_int_equal(ferry_queue_len(&q), 3);
    struct ac_waker k[3];
    for (int i = 0; i < 3; i++) {
        k[i] = probe_waker(&p[i]);
        /* Only the first is the head. */
        assert_int_equal(ferry_queue_watch(&q, &w[i], &k[i]), i == 0);
        assert_int_equal(p[i].refs, 1);
    }
    /* A freed slot wakes the head only. */
    _Atomic unsigned slots = 1;
    ferry_slot_put(&slots, &q);
    assert_int_equal(p[0].wakes, 1);
    assert_int_equal(p[1].wakes + p[2].wakes, 0);
    /* A waiter from the middle leaves quietly. */
    ferry_queue_leave(&q, &w[1]);
    assert_int_equal(p[1].refs, 0);
    assert_int_equal(p[2].wakes, 0);
    /* The head leaves (it took the slot): the next is woken to look. */
    ferry_queue_leave(&q, &w[0]);
    assert_int_equal(p[0].refs, 0);
    assert_int_equal(p[2].wakes, 1);
    assert_true(ferry_queue_watch(&q, &w[2], &k[2]));
    assert_int_equal(ferry_queue_len(&q), 1);
    ferry_queue_leave(&q, &w[2]);
    ferry_queue_leave(&q, &w[2]); /* twice: harmless */
    assert_int_equal(ferry_queue_len(&q), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p[i].refs, 0);
    /* Nobody waits: a kick touches nothing. */
    ferry_queue_kick(&q);
    assert_int_equal(p[2].wakes, 1);
    ferry_queue_destroy(&q);
}

/* Many threads take and put slots of one capped server: never above the cap. */
struct hammer {
    _Atomic unsigned *slots;
    _Atomic unsigned *max_seen;
    struct ferry_queue *q;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 20000; i++) {
        if (!ferry_slot_take(h->slots, 3))
            continue;
        unsigned now = atomic_load(h->slots), seen = atomic_load(h->max_seen);
        while (now > seen && !atomic_compare_exchange_weak(h->max_seen, &seen, now))
            ;
        ferry_slot_put(h->slots, h->q);
    }
    return NULL;
}

static void test_cap_under_contention(void **state)
{
    (void)state;
    _Atomic unsigned slots = 0, max_seen = 0;
    struct ferry_queue q;
    assert_int_equal(ferry_queue_init(&q), 0);
    struct hammer h = {&slots, &max_seen, &q};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&slots), 0);
    assert_true(atomic_load(&max_seen) <= 3);
    assert_true(atomic_load(&max_seen) >= 1);
    ferry_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_fifo_and_wakes),
        cmocka_unit_test(test_cap_under_contention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

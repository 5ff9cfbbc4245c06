/* A worker's free list of same-size objects (daemon/objcache.c): reuse on
 * the owning worker's thread, malloc/free anywhere else, bounded, emptied at
 * teardown (ASan: nothing leaks, nothing is freed twice). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "asynccore/runtime.h"
#include "objcache.h"

#define SIZE 96

struct on_worker {
    struct ac_future base;
    struct ferry_objcache *cache;
    void *(*step)(struct ferry_objcache *c, struct ac_worker *w);
    void *out;
};

static ac_poll_t on_worker_poll(struct ac_future *f, struct ac_context *cx)
{
    struct on_worker *o = (struct on_worker *)f;
    o->out = o->step(o->cache, cx->worker);
    return AC_READY;
}

static const struct ac_future_vtable on_worker_vt = {on_worker_poll, NULL};

/* Runs step on w's thread (its loop, through ac_block_on). */
static void *run_on(struct ac_worker *w, struct ferry_objcache *c,
                    void *(*step)(struct ferry_objcache *, struct ac_worker *))
{
    struct on_worker o = {{&on_worker_vt}, c, step, NULL};
    assert_int_equal(ac_block_on(w, &o.base), 0);
    return o.out;
}

static void *last_put;

/* Three objects out and back: three cached, the last one put comes first. */
static void *three_round_trip(struct ferry_objcache *c, struct ac_worker *w)
{
    void *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ferry_objcache_get(c, w, SIZE);
        assert_non_null(p[i]);
        memset(p[i], 0xab, SIZE);
    }
    assert_int_equal(c->n, 0);
    for (int i = 0; i < 3; i++)
        ferry_objcache_put(c, w, p[i], SIZE);
    assert_int_equal(c->n, 3);
    last_put = p[2];
    void *again = ferry_objcache_get(c, w, SIZE);
    assert_ptr_equal(again, last_put);
    assert_int_equal(c->n, 2);
    memset(again, 0, SIZE); /* all of it usable again */
    ferry_objcache_put(c, w, again, SIZE);
    ferry_objcache_put(c, w, NULL, SIZE); /* no-op */
    assert_int_equal(c->n, 3);
    return NULL;
}

/* The cache's own bound (at most FERRY_OBJCACHE_MAX) holds. */
static void *fill_past_bound(struct ferry_objcache *c, struct ac_worker *w)
{
    void *p[FERRY_OBJCACHE_MAX + 20];
    size_t n = c->max + 20;
    assert_true(n <= FERRY_OBJCACHE_MAX + 20);
    for (size_t i = 0; i < n; i++)
        assert_non_null(p[i] = ferry_objcache_get(c, w, SIZE));
    for (size_t i = 0; i < n; i++)
        ferry_objcache_put(c, w, p[i], SIZE); /* the last 20 are freed */
    assert_int_equal(c->n, c->max);
    return NULL;
}

static void test_objcache(void **state)
{
    (void)state;
    struct ac_runtime_opts o = {.workers = 1, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&o);
    assert_non_null(rt);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct ferry_objcache c = {.max = FERRY_OBJCACHE_MAX};

    run_on(w, &c, three_round_trip);
    assert_int_equal(c.n, 3);

    /* Off the worker's thread (here: no worker at all) the list is not
     * touched: get mallocs, put frees. */
    void *p = ferry_objcache_get(&c, w, SIZE);
    assert_non_null(p);
    assert_ptr_not_equal(p, last_put);
    assert_int_equal(c.n, 3);
    ferry_objcache_put(&c, w, p, SIZE);
    assert_int_equal(c.n, 3);

    run_on(w, &c, fill_past_bound);
    ferry_objcache_clear(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.head);

    /* A phase cache keeps fewer; a cache with no bound set keeps nothing. */
    struct ferry_objcache phases = {.max = FERRY_OBJCACHE_PHASE_MAX}, none = {0};
    run_on(w, &phases, fill_past_bound);
    assert_int_equal(phases.n, FERRY_OBJCACHE_PHASE_MAX);
    ferry_objcache_clear(&phases);
    run_on(w, &none, fill_past_bound);
    assert_int_equal(none.n, 0);
    assert_null(none.head);
    ac_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objcache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

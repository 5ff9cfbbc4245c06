/* The stats registry: find-or-create by name, per-worker slots that never
 * share a cache line, sums across workers, server state names. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "registry.h"

static void test_init_rejects_zero_workers(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 0), -EINVAL);
    ferry_registry_destroy(&r); /* harmless after a failed init */
}

static void test_find_or_create(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 3), 0);
    struct ferry_listener_stats *web = ferry_registry_listener(&r, "web");
    struct ferry_listener_stats *api = ferry_registry_listener(&r, "api");
    assert_non_null(web);
    assert_non_null(api);
    assert_ptr_not_equal(web, api);
    assert_ptr_equal(ferry_registry_listener(&r, "web"), web);
    assert_string_equal(web->name, "web");

    struct ferry_backend_stats *b = ferry_registry_backend(&r, "web"); /* own namespace */
    assert_non_null(b);
    assert_ptr_equal(ferry_registry_backend(&r, "web"), b);
    assert_ptr_not_equal(ferry_registry_backend(&r, "db"), b);

    /* Servers are keyed by backend and name together. */
    struct ferry_server_stats *s1 = ferry_registry_server(&r, "app", "s1");
    struct ferry_server_stats *s1b = ferry_registry_server(&r, "db", "s1");
    assert_non_null(s1);
    assert_non_null(s1b);
    assert_ptr_not_equal(s1, s1b);
    assert_ptr_equal(ferry_registry_server(&r, "app", "s1"), s1);
    assert_string_equal(s1b->backend, "db");
    assert_string_equal(s1b->name, "s1");

    /* A counter survives a second lookup (a reload keeps totals). */
    ferry_ctr_add(&web->w[1].total, 7);
    struct ferry_listener_totals t;
    ferry_listener_stats_sum(&r, ferry_registry_listener(&r, "web"), &t);
    assert_int_equal(t.total, 7);
    ferry_registry_destroy(&r);
}

static void test_slots_are_cache_line_aligned(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 4), 0);
    struct ferry_listener_stats *l = ferry_registry_listener(&r, "l");
    struct ferry_backend_stats *b = ferry_registry_backend(&r, "b");
    struct ferry_server_stats *s = ferry_registry_server(&r, "b", "s");
    assert_int_equal((uintptr_t)l->w % 64, 0);
    assert_int_equal((uintptr_t)b->w % 64, 0);
    assert_int_equal((uintptr_t)s->w % 64, 0);
    assert_true((char *)&l->w[1] - (char *)&l->w[0] >= 64);
    assert_true((char *)&s->w[1] - (char *)&s->w[0] >= 64);
    /* Fresh slots are zero. */
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(ferry_ctr_get(&l->w[i].total), 0);
        assert_int_equal(ferry_ctr_get(&s->w[i].bytes_out), 0);
    }
    ferry_registry_destroy(&r);
}

static void test_sums_across_workers(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 4), 0);
    struct ferry_listener_stats *l = ferry_registry_listener(&r, "web");
    struct ferry_backend_stats *b = ferry_registry_backend(&r, "app");
    struct ferry_server_stats *s = ferry_registry_server(&r, "app", "a1");
    for (unsigned i = 0; i < 4; i++) {
        ferry_ctr_add(&l->w[i].active, i + 1);
        ferry_ctr_add(&l->w[i].total, 10 * (i + 1));
        ferry_ctr_add(&l->w[i].rejected, 1);
        ferry_ctr_add(&l->w[i].bytes_in, 1000);
        ferry_ctr_add(&l->w[i].bytes_out, 2000);
        ferry_ctr_add(&l->w[i].handshake_errors, i);
        ferry_ctr_add(&b->w[i].active, 2);
        ferry_ctr_add(&b->w[i].total, 3);
        atomic_fetch_add(&s->active, 1); /* one counter for every worker */
        ferry_ctr_add(&s->w[i].total, 5);
        ferry_ctr_add(&s->w[i].connect_errors, i);
        ferry_ctr_add(&s->w[i].bytes_in, 7);
        ferry_ctr_add(&s->w[i].bytes_out, 9);
    }
    /* A connection counted active on worker 0 and ended on worker 3 still
     * sums right (per-slot values wrap, the total does not). */
    ferry_ctr_sub(&l->w[3].active, 5);

    struct ferry_listener_totals lt;
    ferry_listener_stats_sum(&r, l, &lt);
    assert_int_equal(lt.active, 1 + 2 + 3 + 4 - 5);
    assert_int_equal(lt.total, 100);
    assert_int_equal(lt.rejected, 4);
    assert_int_equal(lt.bytes_in, 4000);
    assert_int_equal(lt.bytes_out, 8000);
    assert_int_equal(lt.handshake_errors, 6);

    struct ferry_backend_totals bt;
    ferry_backend_stats_sum(&r, b, &bt);
    assert_int_equal(bt.active, 8);
    assert_int_equal(bt.total, 12);

    struct ferry_server_totals st;
    ferry_server_stats_sum(&r, s, &st);
    assert_int_equal(st.active, 4);
    assert_int_equal(st.total, 20);
    assert_int_equal(st.connect_errors, 6);
    assert_int_equal(st.bytes_in, 28);
    assert_int_equal(st.bytes_out, 36);
    ferry_registry_destroy(&r);
}

struct writer {
    struct ferry_server_stats *s;
    unsigned slot;
};

static void *write_slot(void *arg)
{
    struct writer *w = arg;
    for (unsigned i = 0; i < 200000; i++) {
        ferry_ctr_add(&w->s->w[w->slot].bytes_in, 3);
        ferry_ctr_add(&w->s->w[w->slot].total, 1);
    }
    return NULL;
}

/* Each worker writes only its own slot: concurrent writers lose nothing. */
static void test_concurrent_writers(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 4), 0);
    struct ferry_server_stats *s = ferry_registry_server(&r, "b", "s");
    pthread_t th[4];
    struct writer w[4];
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (struct writer){s, i};
        assert_int_equal(pthread_create(&th[i], NULL, write_slot, &w[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct ferry_server_totals t;
    ferry_server_stats_sum(&r, s, &t);
    assert_int_equal(t.total, 800000);
    assert_int_equal(t.bytes_in, 2400000);
    ferry_registry_destroy(&r);
}

static size_t count_servers(const struct ferry_registry *r)
{
    size_t n = 0;
    for (const struct ferry_server_stats *s = r->servers; s; s = s->next)
        n++;
    return n;
}

/* Server stats live while a generation's slot names them: the last
 * reference frees them (departed and deleted names do not pile up); a
 * forgotten (deleted) name finds fresh stats. */
static void test_server_stats_freed_with_last_reference(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 2), 0);
    for (int round = 0; round < 100; round++) {
        char name[32];
        snprintf(name, sizeof(name), "10.0.%d.%d:80", round / 250, round % 250);
        struct ferry_server_stats *a = ferry_registry_server(&r, "app", name);
        struct ferry_server_stats *b = ferry_registry_server(&r, "app", name); /* a reload */
        assert_ptr_equal(a, b);
        ferry_ctr_add(&a->w[1].total, 5);
        ferry_registry_server_release(&r, a); /* the old generation goes */
        struct ferry_server_totals t;
        ferry_server_stats_sum(&r, b, &t);
        assert_int_equal(t.total, 5); /* counters kept while a slot names it */
        assert_int_equal(count_servers(&r), 1);
        ferry_registry_server_release(&r, b); /* departed, its slot reused */
        assert_int_equal(count_servers(&r), 0);
    }
    struct ferry_server_stats *x = ferry_registry_server(&r, "app", "x");
    ferry_ctr_add(&x->w[0].total, 3);
    ferry_registry_server_forget(&r, x); /* del server */
    struct ferry_server_stats *x2 = ferry_registry_server(&r, "app", "x"); /* added again */
    assert_ptr_not_equal(x, x2);
    struct ferry_server_totals t;
    ferry_server_stats_sum(&r, x2, &t);
    assert_int_equal(t.total, 0);
    assert_int_equal(count_servers(&r), 2);
    ferry_registry_server_release(&r, x);
    assert_int_equal(count_servers(&r), 1);
    ferry_registry_destroy(&r);
}

static void test_server_state_name(void **state)
{
    (void)state;
    struct ferry_registry r;
    assert_int_equal(ferry_registry_init(&r, 1), 0);
    struct ferry_server_stats *s = ferry_registry_server(&r, "b", "s");
    assert_string_equal(ferry_server_state_name(s), "up"); /* servers start up */
    atomic_store(&s->state, FERRY_SERVER_DOWN);
    assert_string_equal(ferry_server_state_name(s), "down");
    atomic_store(&s->disabled, true);
    assert_string_equal(ferry_server_state_name(s), "disabled"); /* wins over down */
    atomic_store(&s->state, FERRY_SERVER_UP);
    assert_string_equal(ferry_server_state_name(s), "disabled");
    atomic_store(&s->disabled, false);
    assert_string_equal(ferry_server_state_name(s), "up");
    ferry_registry_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_zero_workers),
        cmocka_unit_test(test_find_or_create),
        cmocka_unit_test(test_slots_are_cache_line_aligned),
        cmocka_unit_test(test_sums_across_workers),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_server_state_name),
        cmocka_unit_test(test_server_stats_freed_with_last_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

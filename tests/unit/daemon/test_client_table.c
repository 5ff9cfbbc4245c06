/* Unit tests: daemon/client_table.c (per-client caps). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include "client_table.h"

static struct sockaddr_in addr(uint32_t ip, uint16_t port)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    s.sin_addr.s_addr = htonl(ip);
    s.sin_port = htons(port);
    return s;
}

static enum ferry_client_verdict admit(struct ferry_client_table *t, uint32_t ip, unsigned max,
                                       unsigned rate, uint64_t now, struct ferry_client_slot **h)
{
    struct sockaddr_in a = addr(ip, (uint16_t)(now & 0xffff));
    return ferry_client_admit(t, (struct sockaddr *)&a, max, rate, now, h);
}

static void test_limit_per_address(void **state)
{
    (void)state;
    struct ferry_client_table *t = ferry_client_table_new(64);
    assert_non_null(t);
    struct ferry_client_slot *a1, *a2, *a3, *b1;
    assert_int_equal(admit(t, 0x7f000002, 2, 0, 1000, &a1), FERRY_CLIENT_OK);
    assert_int_equal(admit(t, 0x7f000002, 2, 0, 1001, &a2), FERRY_CLIENT_OK);
    assert_ptr_equal(a1, a2); /* the port does not matter */
    assert_int_equal(admit(t, 0x7f000002, 2, 0, 1002, &a3), FERRY_CLIENT_LIMIT);
    assert_null(a3);
    assert_int_equal(admit(t, 0x7f000003, 2, 0, 1003, &b1), FERRY_CLIENT_OK);
    ferry_client_release(a1);
    assert_int_equal(admit(t, 0x7f000002, 2, 0, 1004, &a3), FERRY_CLIENT_OK);
    /* IPv4-mapped IPv6 is the same client. */
    struct sockaddr_in6 m;
    memset(&m, 0, sizeof(m));
    m.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.2", &m.sin6_addr);
    struct ferry_client_slot *mm;
    assert_int_equal(ferry_client_admit(t, (struct sockaddr *)&m, 2, 0, 1005, &mm),
                     FERRY_CLIENT_LIMIT);
    assert_int_equal(ferry_client_table_used(t), 2);
    ferry_client_table_free(t);
}

static void test_rate_sliding_second(void **state)
{
    (void)state;
    struct ferry_client_table *t = ferry_client_table_new(64);
    struct ferry_client_slot *h;
    /* 3 per second, all in the first half of second 10. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(admit(t, 1, 0, 3, 10000 + (uint64_t)i, &h), FERRY_CLIENT_OK);
        ferry_client_release(h);
    }
    assert_int_equal(admit(t, 1, 0, 3, 10400, &h), FERRY_CLIENT_RATE);
    /* 11.1 s: 90% of second 10 still in the window: 3 * 0.9 = 2.7, one more fits? no:
     * 2.7 + 0 < 3 admits one, then 2.7 + 1 >= 3. */
    assert_int_equal(admit(t, 1, 0, 3, 11100, &h), FERRY_CLIENT_OK);
    ferry_client_release(h);
    assert_int_equal(admit(t, 1, 0, 3, 11150, &h), FERRY_CLIENT_RATE);
    /* 11.9 s: 3 * 0.1 + 1 = 1.3: one more, then 2.3, then 3.3 refused. */
    assert_int_equal(admit(t, 1, 0, 3, 11900, &h), FERRY_CLIENT_OK);
    ferry_client_release(h);
    assert_int_equal(admit(t, 1, 0, 3, 11900, &h), FERRY_CLIENT_OK);
    ferry_client_release(h);
    assert_int_equal(admit(t, 1, 0, 3, 11900, &h), FERRY_CLIENT_RATE);
    /* Two seconds on, nothing of it remains. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(admit(t, 1, 0, 3, 14000, &h), FERRY_CLIENT_OK);
        ferry_client_release(h);
    }
    /* Other clients have their own rate. */
    assert_int_equal(admit(t, 2, 0, 3, 14000, &h), FERRY_CLIENT_OK);
    ferry_client_release(h);
    ferry_client_table_free(t);
}

static void test_bounded_least_recently_seen_first(void **state)
{
    (void)state;
    /* The smallest table: one window of 16 slots. */
    struct ferry_client_table *t = ferry_client_table_new(1);
    assert_int_equal(ferry_client_table_capacity(t), FERRY_CLIENTS_WINDOW);
    struct ferry_client_slot *held, *h;
    /* Client 1 holds a connection from the start; 2..16 come and go. */
    assert_int_equal(admit(t, 1, 1, 0, 1, &held), FERRY_CLIENT_OK);
    for (uint32_t ip = 2; ip <= 16; ip++) {
        assert_int_equal(admit(t, ip, 1, 0, ip, &h), FERRY_CLIENT_OK);
        ferry_client_release(h);
    }
    assert_int_equal(ferry_client_table_used(t), 16);
    /* Client 2 is seen again: now client 3 is the least recently seen. */
    assert_int_equal(admit(t, 2, 1, 0, 100, &h), FERRY_CLIENT_OK);
    struct ferry_client_slot *slot2 = h;
    /* 100 new clients, each forgetting the least recently seen idle one;
     * client 2 holds a connection meanwhile, as client 1 does. */
    for (uint32_t ip = 1000; ip < 1100; ip++) {
        struct ferry_client_slot *x;
        assert_int_equal(admit(t, ip, 1, 0, 200 + ip, &x), FERRY_CLIENT_OK);
        assert_non_null(x);
        assert_ptr_not_equal(x, held);
        assert_ptr_not_equal(x, slot2);
        ferry_client_release(x);
        assert_int_equal(ferry_client_table_used(t), 16);
    }
    /* Clients 1 and 2 are remembered (still at their cap of 1). */
    assert_int_equal(admit(t, 1, 1, 0, 5000, &h), FERRY_CLIENT_LIMIT);
    assert_int_equal(admit(t, 2, 1, 0, 5000, &h), FERRY_CLIENT_LIMIT);
    /* The most recent of the newcomers is remembered, the oldest is not:
     * with a rate of 1, 1099 is refused, 1000 starts afresh. */
    assert_int_equal(admit(t, 1099, 0, 1, 1299, &h), FERRY_CLIENT_RATE);
    assert_int_equal(admit(t, 1000, 0, 1, 1299, &h), FERRY_CLIENT_OK);
    ferry_client_release(h);
    /* Every slot held: a newcomer is admitted untracked. */
    struct ferry_client_slot *hs[16];
    ferry_client_release(held);
    ferry_client_release(slot2);
    for (uint32_t ip = 0; ip < 16; ip++)
        assert_int_equal(admit(t, 50000 + ip, 1, 0, 9000, &hs[ip]), FERRY_CLIENT_OK);
    assert_int_equal(admit(t, 60000, 1, 0, 9001, &h), FERRY_CLIENT_OK);
    assert_null(h);
    assert_int_equal(atomic_load(&t->untracked), 1);
    for (int i = 0; i < 16; i++)
        ferry_client_release(hs[i]);
    ferry_client_table_free(t);
}

/* Two threads admit and release 200 clients in a small table: a client never
 * holds more than its cap, whatever the interleaving. */
struct worker_arg {
    struct ferry_client_table *t;
    _Atomic int *held; /* per client */
    int over;
};

static void *hammer(void *p)
{
    struct worker_arg *w = p;
    uint64_t now = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t ip = (uint32_t)(i * 7919) % 200;
        struct ferry_client_slot *h;
        if (admit(w->t, ip, 2, 0, now++, &h) != FERRY_CLIENT_OK)
            continue;
        if (h && atomic_fetch_add(&w->held[ip], 1) >= 2)
            w->over++;
        if (h)
            atomic_fetch_sub(&w->held[ip], 1);
        ferry_client_release(h);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct ferry_client_table *t = ferry_client_table_new(64);
    static _Atomic int held[200];
    struct worker_arg a = {t, held, 0}, b = {t, held, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, hammer, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, hammer, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.over + b.over, 0);
    for (size_t i = 0; i < ferry_client_table_capacity(t); i++) {
        uint32_t act = atomic_load(&t->slots[i].active);
        assert_int_equal(act, 0);
    }
    ferry_client_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_address),
        cmocka_unit_test(test_rate_sliding_second),
        cmocka_unit_test(test_bounded_least_recently_seen_first),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests: daemon/balance.c (server picking). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "balance.h"

#define PICKS 10000

struct fixture {
    struct ferry_lb_state st;
    struct ferry_lb_candidate c[8];
    size_t n;
};

static void setup_servers(struct fixture *f, size_t n, const unsigned *weights)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(ferry_lb_state_init(&f->st, n, 42), 0);
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        f->c[i].weight = weights[i];
        f->c[i].usable = true;
    }
}

/* Counts picks; with track, each pick adds a connection (never released). */
static void run(struct fixture *f, enum ferry_balance algo, int picks, unsigned *count,
                uint32_t hash)
{
    memset(count, 0, sizeof(unsigned) * f->n);
    for (int k = 0; k < picks; k++) {
        int i = ferry_lb_pick(algo, &f->st, f->c, f->n, NULL, hash);
        assert_true(i >= 0 && (size_t)i < f->n);
        count[i]++;
    }
}

static void assert_share(unsigned got, unsigned total, double want, double tol)
{
    double share = (double)got / total;
    if (share < want - tol || share > want + tol)
        fail_msg("share %.4f, wanted %.4f +- %.4f", share, want, tol);
}

static void test_roundrobin_weights(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {5, 1, 1, 3};
    setup_servers(&f, 4, w);
    unsigned count[4];
    run(&f, FERRY_BALANCE_ROUNDROBIN, PICKS, count, 0);
    /* Smooth WRR is exact over whole cycles (10 picks per cycle). */
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[1], 1000);
    assert_int_equal(count[2], 1000);
    assert_int_equal(count[3], 3000);
    /* Smooth: with 5,1,1 the heavy server never gets more than 2 in a row
     * (nginx's a a b a c a a). */
    struct fixture g;
    const unsigned w2[] = {5, 1, 1};
    setup_servers(&g, 3, w2);
    int seq[7];
    for (int k = 0; k < 7; k++)
        seq[k] = ferry_lb_pick(FERRY_BALANCE_ROUNDROBIN, &g.st, g.c, 3, NULL, 0);
    const int want[7] = {0, 0, 1, 0, 2, 0, 0};
    assert_memory_equal(seq, want, sizeof(want));
    ferry_lb_state_free(&f.st);
    ferry_lb_state_free(&g.st);
}

static void test_zero_weight_and_unusable(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 0, 1};
    setup_servers(&f, 3, w);
    f.c[2].usable = false;
    for (enum ferry_balance a = FERRY_BALANCE_ROUNDROBIN; a <= FERRY_BALANCE_SOURCE; a++) {
        for (int k = 0; k < 100; k++)
            assert_int_equal(ferry_lb_pick(a, &f.st, f.c, 3, NULL, (uint32_t)k * 7919u), 0);
    }
    f.c[0].usable = false;
    for (enum ferry_balance a = FERRY_BALANCE_ROUNDROBIN; a <= FERRY_BALANCE_SOURCE; a++)
        assert_int_equal(ferry_lb_pick(a, &f.st, f.c, 3, NULL, 1), -1);
    assert_int_equal(ferry_lb_pick(FERRY_BALANCE_ROUNDROBIN, &f.st, f.c, 0, NULL, 1), -1);
    ferry_lb_state_free(&f.st);
}

static void test_tried_skipped(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 1, 1};
    setup_servers(&f, 3, w);
    for (enum ferry_balance a = FERRY_BALANCE_ROUNDROBIN; a <= FERRY_BALANCE_SOURCE; a++) {
        for (int k = 0; k < 200; k++) {
            bool tried[3] = {false, false, false};
            uint32_t h = (uint32_t)k * 2654435761u;
            int first = ferry_lb_pick(a, &f.st, f.c, 3, tried, h);
            assert_true(first >= 0);
            tried[first] = true;
            int second = ferry_lb_pick(a, &f.st, f.c, 3, tried, h);
            assert_true(second >= 0 && second != first);
            tried[second] = true;
            int third = ferry_lb_pick(a, &f.st, f.c, 3, tried, h);
            assert_true(third >= 0 && third != first && third != second);
            tried[third] = true;
            assert_int_equal(ferry_lb_pick(a, &f.st, f.c, 3, tried, h), -1);
        }
    }
    ferry_lb_state_free(&f.st);
}

static void test_backups(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 1, 1, 1};
    setup_servers(&f, 4, w);
    f.c[2].backup = true;
    f.c[3].backup = true;
    unsigned count[4];
    for (enum ferry_balance a = FERRY_BALANCE_ROUNDROBIN; a <= FERRY_BALANCE_SOURCE; a++) {
        run(&f, a, 1000, count, 99);
        assert_int_equal(count[2] + count[3], 0);
    }
    /* One primary down: still no backup. */
    f.c[0].usable = false;
    run(&f, FERRY_BALANCE_ROUNDROBIN, 1000, count, 0);
    assert_int_equal(count[1], 1000);
    /* All primaries down: backups share the load. */
    f.c[1].usable = false;
    run(&f, FERRY_BALANCE_ROUNDROBIN, 1000, count, 0);
    assert_int_equal(count[0] + count[1], 0);
    assert_int_equal(count[2], 500);
    assert_int_equal(count[3], 500);
    /* A primary up but tried by this connection: the retry goes to a backup. */
    f.c[1].usable = true;
    bool tried[4] = {false, true, false, false};
    int i = ferry_lb_pick(FERRY_BALANCE_LEASTCONN, &f.st, f.c, 4, tried, 0);
    assert_true(i == 2 || i == 3);
    /* A primary with weight 0 does not count as available. */
    f.c[1].weight = 0;
    i = ferry_lb_pick(FERRY_BALANCE_ROUNDROBIN, &f.st, f.c, 4, NULL, 0);
    assert_true(i == 2 || i == 3);
    ferry_lb_state_free(&f.st);
}

static void test_leastconn(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 1, 1};
    setup_servers(&f, 3, w);
    f.c[0].active = 10;
    f.c[1].active = 0;
    f.c[2].active = 5;
    for (int k = 0; k < 50; k++)
        assert_int_equal(ferry_lb_pick(FERRY_BALANCE_LEASTCONN, &f.st, f.c, 3, NULL, 0), 1);
    /* Connections accumulate: the picks level the servers out. */
    for (int k = 0; k < 15; k++) {
        int i = ferry_lb_pick(FERRY_BALANCE_LEASTCONN, &f.st, f.c, 3, NULL, 0);
        f.c[i].active++;
    }
    assert_int_equal(f.c[0].active, 10);
    assert_int_equal(f.c[1].active, 10);
    assert_int_equal(f.c[2].active, 10);
    /* Ties rotate. */
    unsigned count[3];
    run(&f, FERRY_BALANCE_LEASTCONN, 3000, count, 0);
    assert_int_equal(count[0], 1000);
    assert_int_equal(count[1], 1000);
    assert_int_equal(count[2], 1000);
    /* Weights: a server of weight 3 takes 3 times the connections. */
    struct fixture g;
    const unsigned w2[] = {3, 1};
    setup_servers(&g, 2, w2);
    for (int k = 0; k < PICKS; k++) {
        int i = ferry_lb_pick(FERRY_BALANCE_LEASTCONN, &g.st, g.c, 2, NULL, 0);
        g.c[i].active++;
    }
    assert_in_range(g.c[0].active, 7499, 7501);
    ferry_lb_state_free(&f.st);
    ferry_lb_state_free(&g.st);
}

static void test_random(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 1, 1, 1};
    setup_servers(&f, 4, w);
    unsigned count[4];
    /* Equal load: two weighted choices spread evenly. */
    run(&f, FERRY_BALANCE_RANDOM, PICKS, count, 0);
    for (int i = 0; i < 4; i++)
        assert_share(count[i], PICKS, 0.25, 0.03);
    /* Weights respected when loads are equal (ties: first draw wins). */
    struct fixture g;
    const unsigned w2[] = {3, 1};
    setup_servers(&g, 2, w2);
    run(&g, FERRY_BALANCE_RANDOM, PICKS, count, 0);
    assert_share(count[0], PICKS, 0.75, 0.03);
    /* A loaded server loses unless drawn twice: 1/16 of picks here. */
    f.c[0].active = 100;
    run(&f, FERRY_BALANCE_RANDOM, PICKS, count, 0);
    assert_share(count[0], PICKS, 1.0 / 16, 0.02);
    /* With load tracking the servers stay balanced. */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 4; i++)
        f.c[i].active = 0;
    for (int k = 0; k < PICKS; k++) {
        int i = ferry_lb_pick(FERRY_BALANCE_RANDOM, &f.st, f.c, 4, NULL, 0);
        f.c[i].active++;
    }
    for (int i = 0; i < 4; i++)
        assert_in_range(f.c[i].active, 2500 - 20, 2500 + 20);
    ferry_lb_state_free(&f.st);
    ferry_lb_state_free(&g.st);
}

static void test_source(void **state)
{
    (void)state;
    struct fixture f;
    const unsigned w[] = {1, 1, 1, 1, 1};
    setup_servers(&f, 5, w);
    int first[PICKS];
    unsigned count[5] = {0};
    for (int k = 0; k < PICKS; k++) {
        uint32_t h = (uint32_t)k * 2654435761u + 17;
        first[k] = ferry_lb_pick(FERRY_BALANCE_SOURCE, &f.st, f.c, 5, NULL, h);
        count[first[k]]++;
        /* Same client, same server, whatever the per-worker state. */
        assert_int_equal(ferry_lb_pick(FERRY_BALANCE_SOURCE, &f.st, f.c, 5, NULL, h), first[k]);
    }
    for (int i = 0; i < 5; i++)
        assert_share(count[i], PICKS, 0.2, 0.03);
    /* Server 2 goes down: only its clients move. */
    f.c[2].usable = false;
    int moved = 0;
    for (int k = 0; k < PICKS; k++) {
        uint32_t h = (uint32_t)k * 2654435761u + 17;
        int i = ferry_lb_pick(FERRY_BALANCE_SOURCE, &f.st, f.c, 5, NULL, h);
        assert_int_not_equal(i, 2);
        if (first[k] != 2)
            assert_int_equal(i, first[k]);
        else
            moved++;
    }
    assert_int_equal((unsigned)moved, count[2]);
    /* Back up: everyone returns. */
    f.c[2].usable = true;
    for (int k = 0; k < PICKS; k++) {
        uint32_t h = (uint32_t)k * 2654435761u + 17;
        assert_int_equal(ferry_lb_pick(FERRY_BALANCE_SOURCE, &f.st, f.c, 5, NULL, h), first[k]);
    }
    /* Weights. */
    struct fixture g;
    const unsigned w2[] = {1, 3};
    setup_servers(&g, 2, w2);
    unsigned c2[2];
    memset(c2, 0, sizeof(c2));
    for (int k = 0; k < PICKS; k++)
        c2[ferry_lb_pick(FERRY_BALANCE_SOURCE, &g.st, g.c, 2, NULL, (uint32_t)k * 2654435761u)]++;
    assert_share(c2[1], PICKS, 0.75, 0.03);
    ferry_lb_state_free(&f.st);
    ferry_lb_state_free(&g.st);
}

/* ferry.ini(5): adding one of N servers moves only about 1/N of the clients, and
 * a reordered list (a DNS answer) moves nobody: the hash follows names. */
static void test_source_consistent(void **state)
{
    (void)state;
    static const char *names[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80",
                                  "10.0.0.5:80"};
    struct ferry_lb_state st;
    assert_int_equal(ferry_lb_state_init(&st, 5, 1), 0);
    struct ferry_lb_candidate c[5], r[5];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 5; i++) {
        c[i].weight = 1;
        c[i].usable = true;
        c[i].key = ferry_lb_server_key(names[i]);
        r[4 - i] = c[i]; /* the same servers in reverse order */
    }
    int before[1000];
    int moved = 0, reordered = 0;
    unsigned to_new = 0;
    for (int k = 0; k < 1000; k++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(0xC0000200u + (uint32_t)k * 7919u); /* spread addresses */
        uint32_t h = ferry_lb_hash_addr((struct sockaddr *)&a);
        before[k] = ferry_lb_pick(FERRY_BALANCE_SOURCE, &st, c, 4, NULL, h);
        int after = ferry_lb_pick(FERRY_BALANCE_SOURCE, &st, c, 5, NULL, h);
        if (after != before[k]) {
            moved++;
            to_new += after == 4;
        }
        int rev = ferry_lb_pick(FERRY_BALANCE_SOURCE, &st, r, 5, NULL, h);
        if (4 - rev != after)
            reordered++;
    }
    print_message("source: %d of 1000 addresses moved when a 5th server joined\n", moved);
    assert_true(moved <= 300);        /* about 1/5; the bound is 30% */
    assert_true(moved >= 100);        /* the new server does take its share */
    assert_int_equal(to_new, (unsigned)moved); /* every mover goes to the new one */
    assert_int_equal(reordered, 0);
    ferry_lb_state_free(&st);
}

static void test_hash_addr(void **state)
{
    (void)state;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1000)};
    struct sockaddr_in b = a;
    inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
    inet_pton(AF_INET, "192.0.2.7", &b.sin_addr);
    b.sin_port = htons(2000);
    uint32_t ha = ferry_lb_hash_addr((struct sockaddr *)&a);
    assert_int_equal(ha, ferry_lb_hash_addr((struct sockaddr *)&b)); /* port ignored */
    struct sockaddr_in6 m = {.sin6_family = AF_INET6, .sin6_port = htons(3)};
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    assert_int_equal(ha, ferry_lb_hash_addr((struct sockaddr *)&m));
    inet_pton(AF_INET, "192.0.2.8", &b.sin_addr);
    assert_int_not_equal(ha, ferry_lb_hash_addr((struct sockaddr *)&b));
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
    uint32_t h6 = ferry_lb_hash_addr((struct sockaddr *)&s6);
    assert_int_not_equal(h6, ha);
    s6.sin6_port = htons(9);
    assert_int_equal(h6, ferry_lb_hash_addr((struct sockaddr *)&s6));
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(ferry_lb_hash_addr(&un), 0);
    assert_int_equal(ferry_lb_hash_addr(NULL), 0);
}

static void test_many_servers(void **state)
{
    (void)state;
    /* More servers than the stack fast path. */
    struct ferry_lb_state st;
    enum { N = 100 };
    struct ferry_lb_candidate c[N];
    assert_int_equal(ferry_lb_state_init(&st, N, 1), 0);
    for (int i = 0; i < N; i++)
        c[i] = (struct ferry_lb_candidate){.weight = 1, .usable = i != 73};
    unsigned count[N] = {0};
    for (int k = 0; k < 99 * 10; k++)
        count[ferry_lb_pick(FERRY_BALANCE_ROUNDROBIN, &st, c, N, NULL, 0)]++;
    for (int i = 0; i < N; i++)
        assert_int_equal(count[i], i == 73 ? 0 : 10);
    ferry_lb_state_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundrobin_weights), cmocka_unit_test(test_zero_weight_and_unusable),
        cmocka_unit_test(test_tried_skipped),      cmocka_unit_test(test_backups),
        cmocka_unit_test(test_leastconn),          cmocka_unit_test(test_random),
        cmocka_unit_test(test_source),             cmocka_unit_test(test_source_consistent),             cmocka_unit_test(test_hash_addr),
        cmocka_unit_test(test_many_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

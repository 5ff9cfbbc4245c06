/* Unit tests: daemon/dns.c answer TTLs and daemon/serverset.c (what an
 * answer asks for). The resolver itself is tested against a real dnsmasq
 * (tests/integration/test_dns.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "dns/resolver.h"
#include "serverset.h"

/* A reply to "a.test A" with two answers (TTL 30 and 10), the second name
 * compressed. */
static const unsigned char reply[] = {
    0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
    1, 'a', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 2,
    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 127, 0, 0, 3,
};

static void test_reply_min_ttl(void **state)
{
    (void)state;
    assert_int_equal(ferry_dns_reply_min_ttl(reply, sizeof(reply)), 10);
    /* cut inside the second answer: the first one's TTL */
    assert_int_equal(ferry_dns_reply_min_ttl(reply, sizeof(reply) - 12), 30);
    assert_int_equal(ferry_dns_reply_min_ttl(reply, 11), UINT32_MAX);
    assert_int_equal(ferry_dns_reply_min_ttl(NULL, 0), UINT32_MAX);
    /* a compression pointer loop in the question never hangs */
    unsigned char loop[] = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    assert_int_equal(ferry_dns_reply_min_ttl(loop, sizeof(loop)), UINT32_MAX);
}

static struct ferry_dns_record v4(const char *ip, unsigned port, unsigned prio, unsigned weight)
{
    struct ferry_dns_record r;
    memset(&r, 0, sizeof(r));
    struct sockaddr_in *a = (struct sockaddr_in *)&r.sa;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a->sin_addr);
    r.sa_len = sizeof(*a);
    r.port = (uint16_t)port;
    r.priority = (uint16_t)prio;
    r.weight = (uint16_t)weight;
    return r;
}

static void test_wanted(void **state)
{
    (void)state;
    struct ferry_dns_record rec[5] = {
        v4("10.0.0.1", 80, 10, 1), v4("10.0.0.1", 81, 10, 3), v4("10.0.0.2", 80, 20, 0),
        v4("10.0.0.1", 80, 10, 9), /* the same server again: the first wins */
    };
    memset(&rec[4], 0, sizeof(rec[4])); /* an SRV target without an address */
    struct ferry_sset_want w[8];
    size_t n = ferry_sset_wanted(rec, 5, true, w, 8);
    assert_int_equal(n, 3);
    assert_string_equal(w[0].name, "10.0.0.1:80");
    assert_int_equal(w[0].weight, 1);
    assert_false(w[0].backup);
    assert_string_equal(w[1].name, "10.0.0.1:81"); /* same address, other port */
    assert_int_equal(w[1].weight, 3);
    assert_string_equal(w[2].name, "10.0.0.2:80");
    assert_int_equal(w[2].weight, 1); /* SRV weight 0 */
    assert_true(w[2].backup);         /* priority above the lowest */
    /* A/AAAA: weight 1, no backups; bounded by max */
    assert_int_equal(ferry_sset_wanted(rec, 5, false, w, 2), 2);
    assert_int_equal(w[1].weight, 1);
    assert_false(w[1].backup);
}

static void test_plan_keeps_identity(void **state)
{
    (void)state;
    struct ferry_sset_slot slots[4];
    memset(slots, 0, sizeof(slots));
    const char *names[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
    for (int i = 0; i < 3; i++) {
        strcpy(slots[i].name, names[i]);
        slots[i].used = slots[i].listed = true;
    }
    /* reordered, one gone, one new */
    struct ferry_sset_want w[3];
    memset(w, 0, sizeof(w));
    strcpy(w[0].name, "10.0.0.3:80");
    strcpy(w[1].name, "10.0.0.9:80");
    strcpy(w[2].name, "10.0.0.1:80");
    struct ferry_sset_action a[8];
    size_t ignored;
    size_t na = ferry_sset_plan(slots, 3, 4, w, 3, a, &ignored);
    assert_int_equal(ignored, 0);
    assert_int_equal(na, 4);
    assert_int_equal(a[0].op, FERRY_SSET_UNLIST);
    assert_int_equal(a[0].slot, 1);
    assert_int_equal(a[1].op, FERRY_SSET_KEEP);
    assert_int_equal(a[1].slot, 2);
    assert_int_equal(a[2].op, FERRY_SSET_NEW);
    assert_int_equal(a[2].slot, 3);
    assert_int_equal(a[3].op, FERRY_SSET_KEEP);
    assert_int_equal(a[3].slot, 0);
    /* full: a further new name waits for a reusable slot */
    slots[1].listed = false;
    strcpy(slots[3].name, "10.0.0.9:80");
    slots[3].used = slots[3].listed = true;
    strcpy(w[1].name, "10.0.0.7:80");
    na = ferry_sset_plan(slots, 4, 4, w, 3, a, &ignored);
    assert_int_equal(ignored, 1);
    slots[1].reusable = true;
    na = ferry_sset_plan(slots, 4, 4, w, 3, a, &ignored);
    assert_int_equal(ignored, 0);
    bool reused = false;
    for (size_t i = 0; i < na; i++)
        reused |= a[i].op == FERRY_SSET_NEW && a[i].slot == 1;
    assert_true(reused);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_min_ttl),
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_plan_keeps_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

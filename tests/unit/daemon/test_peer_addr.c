/* ferryd: a connection's compact socket address (peer_addr.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "asynccore/net.h"
#include "proxy/peer_addr.h"

static const char *text(const struct ferry_peer_addr *a, char *buf, size_t len)
{
    return ac_addr_format(ferry_peer_addr_get(a), a->len, buf, len);
}

/* Whether the address is kept inline (else in its own allocation). */
static bool inline_form(const struct ferry_peer_addr *a)
{
    return ferry_peer_addr_get(a) == &a->u.sa;
}

/* IPv4 and IPv6 are kept inline, whole. */
static void test_inet_inline(void **state)
{
    (void)state;
    struct ferry_peer_addr a = {0};
    char buf[AC_ADDR_STRLEN];
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr), 1);
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&s6, sizeof(s6)), 0);
    assert_true(inline_form(&a));
    assert_int_equal(a.len, sizeof(s6));
    assert_string_equal(text(&a, buf, sizeof(buf)), "[2001:db8::7]:443");

    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr), 1);
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&s4, sizeof(s4)), 0);
    assert_string_equal(text(&a, buf, sizeof(buf)), "192.0.2.7:40000");
    ferry_peer_addr_clear(&a);
    assert_int_equal(a.len, 0);
}

/* A Unix address with a path (a PROXY v2 AF_UNIX header, a bound client)
 * keeps its path in the long form; replacing it frees that (ASan checks). */
static void test_unix_path_spills(void **state)
{
    (void)state;
    struct ferry_peer_addr a = {0};
    char buf[AC_ADDR_STRLEN];
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const char path[] = "/run/some/rather/long/client/socket/path.sock";
    memcpy(un.sun_path, path, sizeof(path));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(path));
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&un, len), 0);
    assert_false(inline_form(&a));
    assert_string_equal(text(&a, buf, sizeof(buf)), "unix:/run/some/rather/long/client/socket/path.sock");

    struct sockaddr_un unnamed = {.sun_family = AF_UNIX}; /* an unbound client */
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&unnamed, sizeof(sa_family_t)), 0);
    assert_true(inline_form(&a));
    assert_string_equal(text(&a, buf, sizeof(buf)), "unix:");

    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&un, len), 0);
    ferry_peer_addr_clear(&a);
    assert_true(inline_form(&a));
}

/* Every connection holds one: 32 bytes, the long form's pointer kept in the
 * inline bytes. Set from its own address (inline or long) it stays whole. */
static void test_compact_and_self_set(void **state)
{
    (void)state;
    assert_int_equal(sizeof(struct ferry_peer_addr), 32);
    struct ferry_peer_addr a = {0};
    char buf[AC_ADDR_STRLEN];
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const char path[] = "/run/some/rather/long/client/socket/path.sock";
    memcpy(un.sun_path, path, sizeof(path));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(path));
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&un, len), 0);
    assert_int_equal(ferry_peer_addr_set(&a, ferry_peer_addr_get(&a), a.len), 0);
    assert_string_equal(text(&a, buf, sizeof(buf)), "unix:/run/some/rather/long/client/socket/path.sock");

    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
    assert_int_equal(inet_pton(AF_INET, "192.0.2.9", &s4.sin_addr), 1);
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&s4, sizeof(s4)), 0);
    assert_int_equal(ferry_peer_addr_set(&a, ferry_peer_addr_get(&a), a.len), 0);
    assert_true(inline_form(&a));
    assert_string_equal(text(&a, buf, sizeof(buf)), "192.0.2.9:8080");
    ferry_peer_addr_clear(&a);
}

/* Longer than any socket address: refused, the old address kept. */
static void test_too_long(void **state)
{
    (void)state;
    struct ferry_peer_addr a = {0};
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(1)};
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)&s4, sizeof(s4)), 0);
    uint8_t big[sizeof(struct sockaddr_storage) + 1] = {0};
    assert_int_equal(ferry_peer_addr_set(&a, (struct sockaddr *)big, sizeof(big)), -EINVAL);
    assert_int_equal(a.len, sizeof(s4));
    assert_int_equal(ferry_peer_addr_get(&a)->sa_family, AF_INET);
    ferry_peer_addr_clear(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inet_inline),
        cmocka_unit_test(test_unix_path_spills),
        cmocka_unit_test(test_compact_and_self_set),
        cmocka_unit_test(test_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

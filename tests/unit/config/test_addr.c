/* config addresses (IPv4, [IPv6], *:port, unix:/path, host names for
 * servers), bind conflicts, CIDR parsing and matching. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "cfg_test.h"

static void test_ipv4(void **state)
{
    (void)state;
    struct ferry_addr a;
    assert_int_equal(ferry_parse_addr("127.0.0.1:8080", false, &a), 0);
    assert_int_equal(a.kind, FERRY_ADDR_INET);
    assert_true(a.resolved);
    assert_string_equal(a.text, "127.0.0.1:8080");
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 8080);
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a.sa;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 8080);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(a.sa_len, sizeof(struct sockaddr_in));
}

static void test_ipv6(void **state)
{
    (void)state;
    struct ferry_addr a;
    assert_int_equal(ferry_parse_addr("[::1]:443", false, &a), 0);
    assert_int_equal(a.kind, FERRY_ADDR_INET);
    assert_string_equal(a.text, "[::1]:443");
    assert_string_equal(a.host, "::1");
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.sa;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    /* normalised text */
    assert_int_equal(ferry_parse_addr("[0:0:0:0:0:0:0:1]:443", false, &a), 0);
    assert_string_equal(a.text, "[::1]:443");
    assert_int_equal(ferry_parse_addr("[2001:DB8::0001]:80", false, &a), 0);
    assert_string_equal(a.text, "[2001:db8::1]:80");
}

static void test_any_and_unix(void **state)
{
    (void)state;
    struct ferry_addr a;
    assert_int_equal(ferry_parse_addr("*:80", false, &a), 0);
    assert_int_equal(a.kind, FERRY_ADDR_ANY);
    assert_int_equal(a.port, 80);
    assert_string_equal(a.text, "*:80");
    assert_string_equal(a.host, "");

    assert_int_equal(ferry_parse_addr("unix:/run/ferry/x.sock", false, &a), 0);
    assert_int_equal(a.kind, FERRY_ADDR_UNIX);
    assert_true(a.resolved);
    assert_string_equal(a.text, "unix:/run/ferry/x.sock");
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a.sa;
    assert_int_equal(un->sun_family, AF_UNIX);
    assert_string_equal(un->sun_path, "/run/ferry/x.sock");

    char longpath[200] = "unix:/";
    memset(longpath + 6, 'p', 150);
    longpath[156] = '\0';
    assert_int_equal(ferry_parse_addr(longpath, false, &a), -ERANGE);
    assert_int_equal(ferry_parse_addr("unix:", false, &a), -EINVAL);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    struct ferry_addr a;
    const char *bad[] = {
        "127.0.0.1",          /* no port */
        "127.0.0.1:",         /* empty port */
        "127.0.0.1:0",        /* port 0 */
        "127.0.0.1:65536",    /* port too big */
        "127.0.0.1:80abc",    /* port not whole */
        "127.0.0.1:-1",
        "256.0.0.1:80",       /* bad IPv4 */
        "127.1:80",           /* short forms are not accepted */
        "::1:80",             /* IPv6 without brackets */
        "[::1]80",            /* missing ':' after ']' */
        "[::1:80",            /* missing ']' */
        "[zz::1]:80",
        "[]:80",
        ":80",                /* no host */
        "",
        "*:0",
        "host_with space:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ferry_parse_addr(bad[i], true, &a) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_host_names(void **state)
{
    (void)state;
    struct ferry_addr a;
    /* Servers may name a host, resolved later by the daemon. */
    assert_int_equal(ferry_parse_addr("app1.internal:9000", true, &a), 0);
    assert_int_equal(a.kind, FERRY_ADDR_INET);
    assert_false(a.resolved);
    assert_string_equal(a.host, "app1.internal");
    assert_int_equal(a.port, 9000);
    assert_string_equal(a.text, "app1.internal:9000");
    assert_int_equal(ferry_parse_addr("localhost:80", true, &a), 0);
    assert_false(a.resolved);
    /* A bind must be numeric. */
    assert_int_equal(ferry_parse_addr("localhost:80", false, &a), -EINVAL);
    assert_int_equal(ferry_parse_addr("app..x:80", true, &a), -EINVAL);
    assert_int_equal(ferry_parse_addr("1.2.3.4.5:80", true, &a), -EINVAL);
}

static void test_conflicts(void **state)
{
    (void)state;
    struct ferry_addr a, b;
    struct { const char *x, *y; bool clash; } cases[] = {
        {"127.0.0.1:80", "127.0.0.1:80", true},
        {"127.0.0.1:80", "127.0.0.1:81", false},
        {"127.0.0.1:80", "127.0.0.2:80", false},
        {"*:80", "127.0.0.1:80", true},
        {"*:80", "[::1]:80", true},
        {"*:80", "*:80", true},
        {"*:80", "127.0.0.1:81", false},
        {"0.0.0.0:80", "127.0.0.1:80", true},
        {"0.0.0.0:80", "[::1]:80", false},
        {"[::]:80", "127.0.0.1:80", true},
        {"[::ffff:127.0.0.1]:80", "127.0.0.1:80", true},
        {"[::1]:80", "[0::1]:80", true},
        {"unix:/a", "unix:/a", true},
        {"unix:/a", "unix:/b", false},
        {"unix:/a", "*:80", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ferry_parse_addr(cases[i].x, false, &a), 0);
        assert_int_equal(ferry_parse_addr(cases[i].y, false, &b), 0);
        if (ferry_addr_conflict(&a, &b) != cases[i].clash ||
            ferry_addr_conflict(&b, &a) != cases[i].clash)
            fail_msg("%s vs %s: expected %s", cases[i].x, cases[i].y,
                     cases[i].clash ? "a conflict" : "none");
    }
}

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_cidr_v4(void **state)
{
    (void)state;
    struct ferry_cidr c;
    assert_int_equal(ferry_parse_cidr("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    struct sockaddr_storage in = v4("10.200.3.4"), out = v4("11.0.0.1");
    assert_true(ferry_cidr_match(&c, SA(in)));
    assert_false(ferry_cidr_match(&c, SA(out)));
    /* a bare address is /32 */
    assert_int_equal(ferry_parse_cidr("192.168.1.7", &c), 0);
    assert_int_equal(c.prefix, 32);
    struct sockaddr_storage a = v4("192.168.1.7"), b = v4("192.168.1.8");
    assert_true(ferry_cidr_match(&c, SA(a)));
    assert_false(ferry_cidr_match(&c, SA(b)));
    /* odd prefix, host bits dropped */
    assert_int_equal(ferry_parse_cidr("192.168.1.77/25", &c), 0);
    assert_true(ferry_cidr_match(&c, SA(a)));
    struct sockaddr_storage hi = v4("192.168.1.200");
    assert_false(ferry_cidr_match(&c, SA(hi)));
    /* /0 matches every IPv4 client */
    assert_int_equal(ferry_parse_cidr("0.0.0.0/0", &c), 0);
    assert_true(ferry_cidr_match(&c, SA(out)));
    struct sockaddr_storage six = v6("2001:db8::1");
    assert_false(ferry_cidr_match(&c, SA(six)));
}

static void test_cidr_v6_and_mapped(void **state)
{
    (void)state;
    struct ferry_cidr c;
    assert_int_equal(ferry_parse_cidr("2001:db8::/32", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    struct sockaddr_storage in = v6("2001:db8:ffff::1"), out = v6("2001:db9::1");
    assert_true(ferry_cidr_match(&c, SA(in)));
    assert_false(ferry_cidr_match(&c, SA(out)));
    struct sockaddr_storage four = v4("10.0.0.1");
    assert_false(ferry_cidr_match(&c, SA(four)));

    /* A client on a dual-stack socket arrives as ::ffff:a.b.c.d and must
     * match IPv4 CIDRs. */
    assert_int_equal(ferry_parse_cidr("10.0.0.0/8", &c), 0);
    struct sockaddr_storage mapped = v6("::ffff:10.1.2.3"), mapped_out = v6("::ffff:11.1.2.3");
    assert_true(ferry_cidr_match(&c, SA(mapped)));
    assert_false(ferry_cidr_match(&c, SA(mapped_out)));
    /* and a v4-mapped CIDR is the IPv4 network */
    assert_int_equal(ferry_parse_cidr("::ffff:10.0.0.0/104", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_true(ferry_cidr_match(&c, SA(four)));
    assert_true(ferry_cidr_match(&c, SA(mapped)));
}

static void test_cidr_bad(void **state)
{
    (void)state;
    struct ferry_cidr c;
    const char *bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8x", "10.0.0/8",
                         "/8", "", "example.com/8", "10.0.0.0/-1", "10.0.0.0/8/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ferry_parse_cidr(bad[i], &c) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_any_and_unix),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_host_names),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v6_and_mapped),
        cmocka_unit_test(test_cidr_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

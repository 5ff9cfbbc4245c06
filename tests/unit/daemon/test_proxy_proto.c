/* Unit tests: daemon/proxy_proto.c (PROXY protocol v1 and v2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "proto/proxy_proto.h"

static int parse_str(const char *s, struct ferry_proxy_hdr *h)
{
    return ferry_proxy_parse((const uint8_t *)s, strlen(s), h);
}

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s.sin_addr), 1);
    return s;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 s;
    memset(&s, 0, sizeof(s));
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s.sin6_addr), 1);
    return s;
}

static void check_v4(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char b[INET_ADDRSTRLEN];
    assert_int_equal(s->sin_family, AF_INET);
    assert_string_equal(inet_ntop(AF_INET, &s->sin_addr, b, sizeof(b)), ip);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void check_v6(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    char b[INET6_ADDRSTRLEN];
    assert_int_equal(s->sin6_family, AF_INET6);
    assert_string_equal(inet_ntop(AF_INET6, &s->sin6_addr, b, sizeof(b)), ip);
    assert_int_equal(ntohs(s->sin6_port), port);
}

static void test_v1_valid(void **state)
{
    (void)state;
    struct ferry_proxy_hdr h;
    const char *l = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\nGET / HTTP/1.0\r\n";
    assert_int_equal(parse_str(l, &h), (int)strlen("PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n"));
    assert_int_equal(h.version, 1);
    assert_true(h.has_addrs);
    check_v4(&h.src, "192.0.2.1", 51234);
    check_v4(&h.dst, "198.51.100.2", 443);
    assert_int_equal(h.src_len, sizeof(struct sockaddr_in));

    /* An IPv4-mapped address comes out as the IPv4 address. */
    l = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n";
    assert_int_equal(parse_str(l, &h), (int)strlen(l));
    check_v6(&h.src, "2001:db8::1", 0);
    assert_int_equal(h.src_len, sizeof(struct sockaddr_in6));
    check_v4(&h.dst, "10.0.0.1", 65535);
    assert_int_equal(h.dst_len, sizeof(struct sockaddr_in));

    assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &h), 15);
    assert_false(h.has_addrs);
    l = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_int_equal(parse_str(l, &h), (int)strlen(l));
    assert_false(h.has_addrs);
}

static void test_v1_longest(void **state)
{
    (void)state;
    struct ferry_proxy_hdr h;
    const char *l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(l), 104);
    assert_int_equal(parse_str(l, &h), 104);
    /* UNKNOWN with filler up to exactly 107 bytes is fine, 108 is not. */
    char buf[128];
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 105, "\r\n", 2);
    assert_int_equal(ferry_proxy_parse((uint8_t *)buf, 107, &h), 107);
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 106, "\r\n", 2);
    assert_int_equal(ferry_proxy_parse((uint8_t *)buf, 108, &h), -EINVAL);
    assert_int_equal(ferry_proxy_parse((uint8_t *)buf, 107, &h), -EINVAL);
    assert_int_equal(ferry_proxy_parse((uint8_t *)buf, 106, &h), 0);
    /* No CRLF within 107 bytes. */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    assert_int_equal(ferry_proxy_parse((uint8_t *)buf, 128, &h), -EINVAL);
}

static void test_v1_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\n",      /* LF without CR */
        "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\rX",     /* CR without LF */
        "PROXY TCP4  192.0.2.1 198.51.100.2 51234 443\r\n",   /* double space */
        "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443 \r\n",   /* trailing space */
        "PROXY TCP4 192.0.2.1 198.51.100.2 51234\r\n",        /* missing port */
        "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443 1\r\n",  /* extra field */
        "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",        /* v6 in TCP4 */
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",           /* v4 in TCP6 */
        "PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 1x 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n",
        "PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY \r\n",
        "PROXY TCP4 192.0.2.1\t198.51.100.2 1 2\r\n",
        "PROXYTCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x00\x10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ferry_proxy_hdr h;
        int rc = parse_str(bad[i], &h);
        if (rc != -EINVAL)
            fail_msg("accepted (%d): %s", rc, bad[i]);
    }
    struct ferry_proxy_hdr h;
    const uint8_t nul[] = "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n";
    assert_int_equal(ferry_proxy_parse(nul, sizeof(nul) - 1, &h), -EINVAL);
}

/* Every strict prefix of a valid header asks for more bytes. */
static void check_prefixes(const uint8_t *buf, size_t len)
{
    struct ferry_proxy_hdr h;
    for (size_t i = 0; i < len; i++) {
        int rc = ferry_proxy_parse(buf, i, &h);
        if (rc != 0)
            fail_msg("prefix %zu of %zu: %d", i, len, rc);
    }
    assert_int_equal(ferry_proxy_parse(buf, len, &h), (int)len);
}

static void test_v1_prefixes(void **state)
{
    (void)state;
    const char *l = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
    check_prefixes((const uint8_t *)l, strlen(l));
    check_prefixes((const uint8_t *)"PROXY UNKNOWN\r\n", 15);
}

/* A v2 header by hand. */
static size_t v2_hdr(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(b, sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    b[14] = (uint8_t)(blen >> 8);
    b[15] = (uint8_t)blen;
    if (blen)
        memcpy(b + 16, body, blen);
    return 16 + blen;
}

static void test_v2_valid(void **state)
{
    (void)state;
    uint8_t b[600];
    struct ferry_proxy_hdr h;
    const uint8_t in4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xc8, 0x22, 0x01, 0xbb};
    size_t n = v2_hdr(b, 0x21, 0x11, in4, sizeof(in4));
    memcpy(b + n, "payload", 7);
    assert_int_equal(ferry_proxy_parse(b, n + 7, &h), 28);
    assert_int_equal(h.version, 2);
    assert_true(h.has_addrs);
    check_v4(&h.src, "192.0.2.1", 51234);
    check_v4(&h.dst, "198.51.100.2", 443);
    check_prefixes(b, n);

    /* IPv6 with TLVs (ALPN, authority) after the addresses. */
    uint8_t in6[36 + 3 + 2 + 3 + 11] = {0};
    in6[0] = 0x20; in6[1] = 0x01; in6[2] = 0x0d; in6[3] = 0xb8; in6[15] = 1;
    in6[16] = 0x20; in6[17] = 0x01; in6[18] = 0x0d; in6[19] = 0xb8; in6[31] = 2;
    in6[32] = 0x04; in6[33] = 0xd2; in6[34] = 0x00; in6[35] = 0x50;
    memcpy(in6 + 36, "\x01\x00\x02h2", 5);
    memcpy(in6 + 41, "\x02\x00\x0b" "example.com", 14);
    n = v2_hdr(b, 0x21, 0x21, in6, sizeof(in6));
    assert_int_equal(ferry_proxy_parse(b, n, &h), (int)n);
    check_v6(&h.src, "2001:db8::1", 1234);
    check_v6(&h.dst, "2001:db8::2", 80);
    check_prefixes(b, n);

    /* LOCAL: addresses ignored, whatever the family byte says. */
    n = v2_hdr(b, 0x20, 0x00, NULL, 0);
    assert_int_equal(ferry_proxy_parse(b, n, &h), 16);
    assert_false(h.has_addrs);
    n = v2_hdr(b, 0x20, 0x11, in4, sizeof(in4));
    assert_int_equal(ferry_proxy_parse(b, n, &h), 28);
    assert_false(h.has_addrs);
    /* PROXY with UNSPEC: no addresses, block skipped. */
    n = v2_hdr(b, 0x21, 0x00, in4, 5);
    assert_int_equal(ferry_proxy_parse(b, n, &h), 21);
    assert_false(h.has_addrs);

    /* UNIX. */
    uint8_t un[216] = {0};
    memcpy(un, "/run/client.sock", 16);
    memcpy(un + 108, "/run/ferry.sock", 15);
    n = v2_hdr(b, 0x21, 0x31, un, sizeof(un));
    assert_int_equal(ferry_proxy_parse(b, n, &h), 232);
    assert_true(h.has_addrs);
    const struct sockaddr_un *su = (const struct sockaddr_un *)&h.src;
    assert_int_equal(su->sun_family, AF_UNIX);
    assert_string_equal(su->sun_path, "/run/client.sock");
    assert_string_equal(((const struct sockaddr_un *)&h.dst)->sun_path, "/run/ferry.sock");
    assert_int_equal(h.src_len, offsetof(struct sockaddr_un, sun_path) + 16);
}

static void test_v2_invalid(void **state)
{
    (void)state;
    static uint8_t b[4200];
    struct ferry_proxy_hdr h;
    const uint8_t in4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xc8, 0x22, 0x01, 0xbb};
    /* Version 1 and 3, command 2. */
    size_t n = v2_hdr(b, 0x11, 0x11, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, 13, &h), -EINVAL);
    n = v2_hdr(b, 0x31, 0x11, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_hdr(b, 0x22, 0x11, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* DGRAM, unknown family, unspecified transport. */
    n = v2_hdr(b, 0x21, 0x12, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_hdr(b, 0x21, 0x41, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_hdr(b, 0x21, 0x10, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* Length smaller than the address block: rejected before the body arrives. */
    n = v2_hdr(b, 0x21, 0x11, in4, 11);
    assert_int_equal(ferry_proxy_parse(b, 16, &h), -EINVAL);
    n = v2_hdr(b, 0x21, 0x21, in4, 12);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* Oversized: rejected as soon as the length is known. */
    static uint8_t big[4081];
    memcpy(big, in4, 12);
    big[12] = 0xee;
    big[13] = (uint8_t)((4081 - 15) >> 8);
    big[14] = (uint8_t)(4081 - 15);
    n = v2_hdr(b, 0x21, 0x11, big, 4081);
    assert_int_equal(n, FERRY_PROXY_MAX + 1);
    assert_int_equal(ferry_proxy_parse(b, 16, &h), -EINVAL);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* Largest accepted: 4 KiB with one TLV filling the rest. */
    static uint8_t fill[4080];
    memcpy(fill, in4, 12);
    fill[12] = 0xee;
    fill[13] = (uint8_t)((4080 - 15) >> 8);
    fill[14] = (uint8_t)(4080 - 15);
    n = v2_hdr(b, 0x21, 0x11, fill, 4080);
    assert_int_equal(n, FERRY_PROXY_MAX);
    assert_int_equal(ferry_proxy_parse(b, n, &h), FERRY_PROXY_MAX);
    /* A TLV running past the header, and a stray byte. */
    uint8_t tlv[12 + 4];
    memcpy(tlv, in4, 12);
    memcpy(tlv + 12, "\x01\x00\x05x", 4);
    n = v2_hdr(b, 0x21, 0x11, tlv, 16);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_hdr(b, 0x21, 0x11, tlv, 13);
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* Broken signature at every position. */
    n = v2_hdr(b, 0x21, 0x11, in4, 12);
    for (size_t i = 0; i < 12; i++) {
        b[i] ^= 0x40;
        assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
        assert_int_equal(ferry_proxy_parse(b, i + 1, &h), -EINVAL);
        b[i] ^= 0x40;
    }
}

static void test_garbage(void **state)
{
    (void)state;
    struct ferry_proxy_hdr h;
    assert_int_equal(ferry_proxy_parse((const uint8_t *)"", 0, &h), 0);
    assert_int_equal(parse_str("P", &h), 0);
    assert_int_equal(parse_str("PROX", &h), 0);
    assert_int_equal(parse_str("PRX", &h), -EINVAL);
    assert_int_equal(parse_str("\r\n", &h), 0);
    assert_int_equal(parse_str("\r\r", &h), -EINVAL);
    assert_int_equal(parse_str("\r\n\r\n\x00", &h), 0); /* could still be v2 */
    /* A deterministic byte soup never crashes nor claims more than it has. */
    uint8_t buf[700];
    uint32_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(round % 700);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        if (round % 3 == 0 && len >= 6)
            memcpy(buf, "PROXY ", 6);
        int rc = ferry_proxy_parse(buf, len, &h);
        assert_true(rc == -EINVAL || (rc >= 0 && (size_t)rc <= len));
    }
}

static void roundtrip(const struct sockaddr *src, const struct sockaddr *dst, int version,
                      const char *want_v1)
{
    uint8_t buf[FERRY_PROXY_HDR_OUT_MAX];
    int n = version == 1 ? ferry_proxy_build_v1(src, dst, (char *)buf, sizeof(buf))
                         : ferry_proxy_build_v2(src, dst, buf, sizeof(buf));
    assert_true(n > 0);
    if (want_v1) {
        assert_int_equal(n, (int)strlen(want_v1));
        assert_memory_equal(buf, want_v1, (size_t)n);
    }
    struct ferry_proxy_hdr h;
    assert_int_equal(ferry_proxy_parse(buf, (size_t)n, &h), n);
    assert_int_equal(h.version, version);
    if (version == 1 ? strstr(want_v1, "UNKNOWN") != NULL : src->sa_family == AF_UNIX) {
        assert_false(h.has_addrs);
        return;
    }
    assert_true(h.has_addrs);
    /* Too small a buffer. */
    assert_int_equal(version == 1 ? ferry_proxy_build_v1(src, dst, (char *)buf, (size_t)n - 1)
                                   : ferry_proxy_build_v2(src, dst, buf, (size_t)n - 1),
                     -ENOSPC);
}

static void test_build_roundtrip(void **state)
{
    (void)state;
    struct sockaddr_in a4 = v4("192.0.2.1", 51234), b4 = v4("10.0.0.2", 80);
    struct sockaddr_in6 a6 = v6("2001:db8::1", 1), b6 = v6("2001:db8::2", 443);
    struct sockaddr_in6 m6 = v6("::ffff:192.0.2.9", 5555);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
    const struct sockaddr *A4 = (void *)&a4, *B4 = (void *)&b4, *A6 = (void *)&a6,
                          *B6 = (void *)&b6, *M6 = (void *)&m6, *UN = (void *)&un;

    roundtrip(A4, B4, 1, "PROXY TCP4 192.0.2.1 10.0.0.2 51234 80\r\n");
    roundtrip(A6, B6, 1, "PROXY TCP6 2001:db8::1 2001:db8::2 1 443\r\n");
    roundtrip(M6, B4, 1, "PROXY TCP4 192.0.2.9 10.0.0.2 5555 80\r\n");
    roundtrip(A4, B6, 1, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 51234 443\r\n");
    roundtrip(M6, B6, 1, "PROXY TCP6 ::ffff:192.0.2.9 2001:db8::2 5555 443\r\n");
    roundtrip(UN, UN, 1, "PROXY UNKNOWN\r\n");
    roundtrip(A4, UN, 1, "PROXY UNKNOWN\r\n");
    roundtrip(NULL, NULL, 1, "PROXY UNKNOWN\r\n");

    roundtrip(A4, B4, 2, NULL);
    roundtrip(A6, B6, 2, NULL);
    roundtrip(UN, UN, 2, NULL);

    struct ferry_proxy_hdr h;
    uint8_t buf[FERRY_PROXY_HDR_OUT_MAX];
    int n = ferry_proxy_build_v2(A4, B4, buf, sizeof(buf));
    assert_int_equal(n, 28);
    assert_int_equal(buf[12], 0x21);
    assert_int_equal(buf[13], 0x11);
    ferry_proxy_parse(buf, (size_t)n, &h);
    check_v4(&h.src, "192.0.2.1", 51234);
    check_v4(&h.dst, "10.0.0.2", 80);
    n = ferry_proxy_build_v2(M6, B4, buf, sizeof(buf));
    assert_int_equal(n, 28);
    ferry_proxy_parse(buf, (size_t)n, &h);
    check_v4(&h.src, "192.0.2.9", 5555);
    n = ferry_proxy_build_v2(A4, B6, buf, sizeof(buf));
    assert_int_equal(n, 52);
    ferry_proxy_parse(buf, (size_t)n, &h);
    check_v4(&h.src, "192.0.2.1", 51234); /* carried mapped, read back as IPv4 */
    check_v6(&h.dst, "2001:db8::2", 443);
    n = ferry_proxy_build_v2(UN, UN, buf, sizeof(buf));
    assert_int_equal(n, 16);
    assert_int_equal(buf[12], 0x20);
    assert_int_equal(buf[13], 0x00);
    assert_int_equal(ferry_proxy_build_v2(A4, B4, buf, 27), -ENOSPC);
    char line[20];
    assert_int_equal(ferry_proxy_build_v1(UN, UN, line, 14), -ENOSPC);
    assert_int_equal(ferry_proxy_build_v1(UN, UN, line, 15), 15);
}

/* v2 INET header with the given TLV bytes after the address block. */
static size_t v2_tlv(uint8_t *b, const void *tlv, size_t tlen)
{
    static uint8_t body[4096];
    const uint8_t in4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xc8, 0x22, 0x01, 0xbb};
    memcpy(body, in4, 12);
    memcpy(body + 12, tlv, tlen);
    return v2_hdr(b, 0x21, 0x11, body, 12 + tlen);
}

static uint32_t crc32c_ref(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_v2_tlvs(void **state)
{
    (void)state;
    static uint8_t b[4200];
    struct ferry_proxy_hdr h;
    struct ferry_proxy_tlvs t;
#define TLV(s) s, sizeof(s) - 1
    /* Known types read back; an unknown cloud type (AWS 0xEA) and NOOP skipped. */
    size_t n = v2_tlv(b, TLV("\x04\x00\x01\x00" "\xea\x00\x04\x01vpc" "\x01\x00\x02h2"
                             "\x02\x00\x0b" "example.com" "\x05\x00\x02" "42"
                             "\x20\x00\x10\x07\x00\x00\x00\x00" "\x21\x00\x03TLS" "\x22\x00\x02" "cn"));
    assert_int_equal(ferry_proxy_parse(b, n, &h), (int)n);
    assert_int_equal(h.tlv_off, 28);
    assert_int_equal(ferry_proxy_read_tlvs(b, &h, &t), 0);
    assert_int_equal(t.alpn.len, 2);
    assert_memory_equal(t.alpn.p, "h2", 2);
    assert_memory_equal(t.authority.p, "example.com", 11);
    assert_memory_equal(t.unique_id.p, "42", 2);
    assert_true(t.ssl);
    assert_int_equal(t.ssl_client, 7);
    assert_int_equal(t.ssl_version.len, 3);
    assert_memory_equal(t.ssl_cn.p, "cn", 2);
    assert_int_equal(t.ssl_cipher.len, 0);
    /* A 3 KiB header of cloud-like TLVs is accepted. */
    static uint8_t cloud[3000];
    for (size_t i = 0; i + 100 <= sizeof(cloud); i += 100) {
        cloud[i] = (uint8_t)(0xe0 + i / 100 % 16);
        cloud[i + 1] = 0;
        cloud[i + 2] = 97;
    }
    n = v2_tlv(b, cloud, sizeof(cloud));
    assert_int_equal(n, 3028);
    assert_int_equal(ferry_proxy_parse(b, n, &h), 3028);
    /* Bad: UNIQUE_ID over 128 bytes, SSL shorter than 5, an SSL sub-TLV
     * running past its parent, CRC32C of the wrong size. */
    static uint8_t uid[3 + 129] = {0x05, 0x00, 129};
    n = v2_tlv(b, uid, sizeof(uid));
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    uid[2] = 128;
    n = v2_tlv(b, uid, sizeof(uid) - 1);
    assert_int_equal(ferry_proxy_parse(b, n, &h), (int)n);
    n = v2_tlv(b, TLV("\x20\x00\x04\x01\x00\x00\x00"));
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_tlv(b, TLV("\x20\x00\x08\x01\x00\x00\x00\x00\x21\x00\x05"));
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    n = v2_tlv(b, TLV("\x03\x00\x03\x00\x00\x00"));
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* CRC32C: right checksum accepted, one bit off refused. */
    n = v2_tlv(b, TLV("\x03\x00\x04\x00\x00\x00\x00" "\xea\x00\x01x"));
    uint32_t c = crc32c_ref(b, n);
    b[31] = (uint8_t)(c >> 24); b[32] = (uint8_t)(c >> 16); b[33] = (uint8_t)(c >> 8); b[34] = (uint8_t)c;
    assert_int_equal(ferry_proxy_parse(b, n, &h), (int)n);
    b[n - 1] ^= 1;
    assert_int_equal(ferry_proxy_parse(b, n, &h), -EINVAL);
    /* LOCAL with a block of anything: accepted, nothing read. */
    n = v2_hdr(b, 0x20, 0x11, (const uint8_t *)"\xff\xff\xff", 3);
    assert_int_equal(ferry_proxy_parse(b, n, &h), 19);
    assert_false(h.has_addrs);
    assert_int_equal(ferry_proxy_read_tlvs(b, &h, &t), 0);
    assert_false(t.ssl);
#undef TLV
}

static struct ferry_proxy_str S(const char *s)
{
    struct ferry_proxy_str v = {(const uint8_t *)s, strlen(s)};
    return v;
}

static void test_build_tlvs(void **state)
{
    (void)state;
    struct sockaddr_in a4 = v4("192.0.2.1", 51234), b4 = v4("10.0.0.2", 443);
    struct ferry_proxy_tlvs t = {.alpn = S("h2"), .authority = S("www.example.com"),
                                 .unique_id = S("18446744073709551615"), .ssl = true,
                                 .ssl_client = 3, .ssl_verify = 0,
                                 .ssl_version = S("TLSv1.3"),
                                 .ssl_cipher = S("TLS_AES_256_GCM_SHA384"), .ssl_cn = S("alice")};
    uint8_t buf[FERRY_PROXY_HDR_OUT_MAX];
    int n = ferry_proxy_build_v2_tlvs((void *)&a4, (void *)&b4, &t, buf, sizeof(buf));
    /* 28 + ALPN 5 + AUTHORITY 18 + UNIQUE_ID 23 + SSL 3+5+10+25+8 */
    assert_int_equal(n, 28 + 5 + 18 + 23 + 51);
    assert_int_equal(buf[28], 0x01);
    struct ferry_proxy_hdr h;
    assert_int_equal(ferry_proxy_parse(buf, (size_t)n, &h), n);
    struct ferry_proxy_tlvs back;
    assert_int_equal(ferry_proxy_read_tlvs(buf, &h, &back), 0);
    assert_memory_equal(back.authority.p, "www.example.com", 15);
    assert_memory_equal(back.unique_id.p, "18446744073709551615", 20);
    assert_memory_equal(back.ssl_cipher.p, "TLS_AES_256_GCM_SHA384", 22);
    assert_memory_equal(back.ssl_cn.p, "alice", 5);
    assert_int_equal(back.ssl_client, 3);
    assert_int_equal(ferry_proxy_build_v2_tlvs((void *)&a4, (void *)&b4, &t, buf, (size_t)n - 1),
                     -ENOSPC);
    /* An over-long value is left out, the rest still sent. */
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[299] = '\0';
    t.authority = S(longname);
    n = ferry_proxy_build_v2_tlvs((void *)&a4, (void *)&b4, &t, buf, sizeof(buf));
    assert_int_equal(n, 28 + 5 + 23 + 51);
    /* No addresses: LOCAL, without TLVs. */
    n = ferry_proxy_build_v2_tlvs(NULL, NULL, &t, buf, sizeof(buf));
    assert_int_equal(n, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_valid),       cmocka_unit_test(test_v1_longest),
        cmocka_unit_test(test_v1_invalid),     cmocka_unit_test(test_v1_prefixes),
        cmocka_unit_test(test_v2_valid),       cmocka_unit_test(test_v2_invalid),
        cmocka_unit_test(test_garbage),        cmocka_unit_test(test_build_roundtrip),
        cmocka_unit_test(test_v2_tlvs),        cmocka_unit_test(test_build_tlvs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Fuzz target: the PROXY protocol v1/v2 parser that reads what a client sends
 * first on an accept_proxy listener. Whatever parses is normalised (no
 * IPv4-mapped address comes out: see proxy_proto.h) and round-trips: a header
 * built from the parsed addresses, in the same version, parses back to the
 * same addresses, both of them, byte for byte. */
#include <assert.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz.h"
#include "proto/proxy_proto.h"

static void assert_normal(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        assert(!IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr));
}

static void assert_same(const struct sockaddr_storage *a, socklen_t alen,
                        const struct sockaddr_storage *b, socklen_t blen)
{
    assert(alen == blen && memcmp(a, b, alen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_proxy_hdr h;
    int n = ferry_proxy_parse(data, size, &h);
    assert(n <= (int)size);
    assert(n <= FERRY_PROXY_MAX);
    if (n <= 0 || !h.has_addrs)
        return 0;
    assert_normal(&h.src);
    assert_normal(&h.dst);
    if (h.version == 2) {
        struct ferry_proxy_tlvs t;
        assert((size_t)h.tlv_off + h.tlv_len == (size_t)n);
        assert(ferry_proxy_read_tlvs(data, &h, &t) == 0);
    }
    if (h.src.ss_family == AF_UNIX || h.dst.ss_family == AF_UNIX)
        return 0; /* ferryd never sends unix addresses */
    uint8_t out[FERRY_PROXY_HDR_OUT_MAX];
    int m = h.version == 1
                ? ferry_proxy_build_v1((struct sockaddr *)&h.src, (struct sockaddr *)&h.dst,
                                       (char *)out, sizeof(out))
                : ferry_proxy_build_v2((struct sockaddr *)&h.src, (struct sockaddr *)&h.dst, out,
                                       sizeof(out));
    assert(m > 0);
    struct ferry_proxy_hdr back;
    assert(ferry_proxy_parse(out, (size_t)m, &back) == m);
    assert(back.has_addrs && back.version == h.version);
    assert_same(&back.src, back.src_len, &h.src, h.src_len);
    assert_same(&back.dst, back.dst_len, &h.dst, h.dst_len);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nhello"),
    FUZZ_SEED("PROXY TCP6 2001:db8::1 ::1 40000 443\r\n"),
    FUZZ_SEED("PROXY UNKNOWN\r\n"),
    FUZZ_SEED("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x09\x7f\x00\x00\x01\xa0\x28\x00\x50"),
    FUZZ_SEED("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"),
    FUZZ_SEED("\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24"
              "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
              "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x9c\x40\x01\xbb"),
    FUZZ_SEED("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:127.0.0.1 40000 80\r\n"),
    FUZZ_SEED("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 40000 80\r\n"),
    /* INET with a NOOP, an AWS-like 0xEA, a UNIQUE_ID and an SSL TLV. */
    FUZZ_SEED("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x37\xcb\x00\x71\x09\x7f\x00\x00\x01\xa0\x28\x00\x50"
              "\x04\x00\x02\x00\x00\xea\x00\x0d\x01vpce-0abc123"
              "\x05\x00\x02\x34\x32\x20\x00\x0e\x01\x00\x00\x00\x00\x21\x00\x06TLSv13"),
    /* INET with a CRC32C TLV (checksum 0: parses only if the fuzzer fixes it). */
    FUZZ_SEED("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x13\xcb\x00\x71\x09\x7f\x00\x00\x01\xa0\x28\x00\x50"
              "\x03\x00\x04\x00\x00\x00\x00"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

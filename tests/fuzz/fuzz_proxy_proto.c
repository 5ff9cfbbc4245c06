/* Fuzz target: the PROXY protocol v1/v2 parser that reads what a client sends
 * first on an accept_proxy listener. A header that parses must round-trip
 * through the builder of its version. */
#include <assert.h>
#include <string.h>

#include "fuzz.h"
#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_proxy_hdr h;
    int n = ferry_proxy_parse(data, size, &h);
    assert(n <= (int)size);
    assert(n <= FERRY_PROXY_MAX);
    if (n > 0 && h.has_addrs && h.src.ss_family == h.dst.ss_family &&
        h.src.ss_family != AF_UNIX) {
        uint8_t out[FERRY_PROXY_HDR_OUT_MAX];
        int m = h.version == 1
                    ? ferry_proxy_build_v1((struct sockaddr *)&h.src, (struct sockaddr *)&h.dst,
                                           (char *)out, sizeof(out))
                    : ferry_proxy_build_v2((struct sockaddr *)&h.src, (struct sockaddr *)&h.dst,
                                           out, sizeof(out));
        assert(m > 0);
        struct ferry_proxy_hdr back;
        assert(ferry_proxy_parse(out, (size_t)m, &back) == m);
        assert(back.src_len == h.src_len && memcmp(&back.src, &h.src, h.src_len) == 0);
    }
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
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

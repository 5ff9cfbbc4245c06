/* Fuzz target: the PROXY v2 TLV writer and reader. The input is cut into the
 * TLV values send_proxy = v2 carries (ALPN, AUTHORITY, UNIQUE_ID, SSL with
 * version, cipher and CN); the header built from them must parse, and its
 * TLVs must read back as exactly what was written, a value that is empty or
 * longer than the writer's bound being absent. */
#include <assert.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz.h"
#include "proto/proxy_proto.h"

/* Takes the next value: a length byte (scaled so values past the bounds
 * occur), then that many bytes, as far as the input goes. */
static struct ferry_proxy_str take(const uint8_t **p, size_t *n)
{
    struct ferry_proxy_str v = {NULL, 0};
    if (*n == 0)
        return v;
    size_t want = (size_t)(*p)[0] * 2;
    (*p)++;
    (*n)--;
    v.len = want < *n ? want : *n;
    v.p = *p;
    *p += v.len;
    *n -= v.len;
    return v;
}

static struct ferry_proxy_str expect(struct ferry_proxy_str v, size_t max)
{
    if (v.len > max)
        v.len = 0;
    return v;
}

static void assert_eq(struct ferry_proxy_str got, struct ferry_proxy_str want)
{
    assert(got.len == want.len);
    assert(want.len == 0 || memcmp(got.p, want.p, want.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    struct ferry_proxy_tlvs t;
    memset(&t, 0, sizeof(t));
    bool v6 = data[0] & 1;
    t.ssl = data[0] & 2;
    t.ssl_client = data[1];
    memcpy(&t.ssl_verify, data + 2, 4);
    const uint8_t *p = data + 6;
    size_t n = size - 6;
    t.alpn = take(&p, &n);
    t.authority = take(&p, &n);
    t.unique_id = take(&p, &n);
    t.ssl_version = take(&p, &n);
    t.ssl_cipher = take(&p, &n);
    t.ssl_cn = take(&p, &n);

    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(443)};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    s4.sin_addr.s_addr = htonl(0xc0000201);
    d4.sin_addr.s_addr = htonl(0x7f000001);
    s6.sin6_addr.s6_addr[0] = 0x20;
    d6.sin6_addr.s6_addr[15] = 1;
    const struct sockaddr *src = v6 ? (struct sockaddr *)&s6 : (struct sockaddr *)&s4;
    const struct sockaddr *dst = v6 ? (struct sockaddr *)&d6 : (struct sockaddr *)&d4;

    uint8_t out[FERRY_PROXY_HDR_OUT_MAX];
    int m = ferry_proxy_build_v2_tlvs(src, dst, &t, out, sizeof(out));
    assert(m > 0 && m <= FERRY_PROXY_HDR_OUT_MAX);
    struct ferry_proxy_hdr h;
    assert(ferry_proxy_parse(out, (size_t)m, &h) == m);
    assert(h.version == 2 && h.has_addrs);
    struct ferry_proxy_tlvs back;
    assert(ferry_proxy_read_tlvs(out, &h, &back) == 0);
    const size_t vmax = FERRY_PROXY_TLV_VALUE_MAX;
    assert_eq(back.alpn, expect(t.alpn, vmax));
    assert_eq(back.authority, expect(t.authority, vmax));
    assert_eq(back.unique_id, expect(t.unique_id, FERRY_PROXY_UNIQUE_ID_MAX));
    assert(back.ssl == t.ssl);
    if (t.ssl) {
        assert(back.ssl_client == t.ssl_client && back.ssl_verify == t.ssl_verify);
        assert_eq(back.ssl_version, expect(t.ssl_version, vmax));
        assert_eq(back.ssl_cipher, expect(t.ssl_cipher, vmax));
        assert_eq(back.ssl_cn, expect(t.ssl_cn, vmax));
    }
    /* Every shorter prefix is an incomplete header, never a different one. */
    assert(ferry_proxy_parse(out, (size_t)m - 1, &h) == 0);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("\x02\x05\x00\x00\x00\x00\x01" "h2" "\x07" "ab.example.com" "\x01" "17"
              "\x03" "TLSv13" "\x0b" "TLS_AES_128_GCM_SHA256" "\x03" "client"),
    FUZZ_SEED("\x01\x00\x00\x00\x00\x00\x04http/1.1"),
    FUZZ_SEED("\x03\x07\x00\x00\x00\x01\x00\x00\x00\x80\xff\xff"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

/* ferryd: the PROXY protocol, versions 1 and 2 (see proxy_proto.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "proto/proxy_proto.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

enum { V2_CMD_LOCAL = 0, V2_CMD_PROXY = 1 };
enum { V2_FAM_UNSPEC = 0, V2_FAM_INET = 1, V2_FAM_INET6 = 2, V2_FAM_UNIX = 3 };
enum { V2_PROTO_STREAM = 1 };
#define V2_HDR 16
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN 216
#define V2_UNIX_PATH 108

/* An IPv4-mapped IPv6 address becomes the IPv4 address (see proxy_proto.h). */
static void unmap(struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
        return;
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    s4.sin_port = s6->sin6_port;
    memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &s4, sizeof(s4));
    *len = sizeof(s4);
}

/* ---- version 1 ---- */

/* Parses one decimal port, "0".."65535" without sign or leading zero. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

static int parse_ip(int family, const char *s, size_t n, struct sockaddr_storage *ss,
                    socklen_t *len)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        *len = sizeof(*s4);
        return inet_pton(AF_INET, tmp, &s4->sin_addr) == 1 ? 0 : -EINVAL;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    *len = sizeof(*s6);
    return inet_pton(AF_INET6, tmp, &s6->sin6_addr) == 1 ? 0 : -EINVAL;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* Splits "A B C D" (exact single spaces) into four fields. */
static int split4(const char *s, size_t n, const char *f[4], size_t fl[4])
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ')
            continue;
        if (k == 4 || i == start)
            return -EINVAL; /* too many fields, or an empty one (double space) */
        f[k] = s + start;
        fl[k++] = i - start;
        start = i + 1;
    }
    return k == 4 ? 0 : -EINVAL;
}

/* Parses the line between "PROXY " and "\r\n". */
static int parse_v1_line(const char *s, size_t n, struct ferry_proxy_hdr *out)
{
    memset(out, 0, sizeof(*out));
    out->version = 1;
    /* "UNKNOWN", optionally followed by anything the receiver ignores. */
    if (n >= 7 && memcmp(s, "UNKNOWN", 7) == 0 && (n == 7 || s[7] == ' '))
        return 0;
    if (n < 5 || (memcmp(s, "TCP4 ", 5) != 0 && memcmp(s, "TCP6 ", 5) != 0))
        return -EINVAL;
    int family = s[3] == '4' ? AF_INET : AF_INET6;
    const char *f[4];
    size_t fl[4];
    uint16_t sport, dport;
    if (split4(s + 5, n - 5, f, fl) != 0 || parse_ip(family, f[0], fl[0], &out->src, &out->src_len) != 0 ||
        parse_ip(family, f[1], fl[1], &out->dst, &out->dst_len) != 0 ||
        parse_port(f[2], fl[2], &sport) != 0 || parse_port(f[3], fl[3], &dport) != 0)
        return -EINVAL;
    set_port(&out->src, sport);
    set_port(&out->dst, dport);
    unmap(&out->src, &out->src_len);
    unmap(&out->dst, &out->dst_len);
    out->has_addrs = true;
    return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct ferry_proxy_hdr *out)
{
    size_t sig = sizeof(v1_sig) - 1;
    size_t lim = len < FERRY_PROXY_V1_MAX ? len : FERRY_PROXY_V1_MAX;
    for (size_t i = sig; i < lim; i++) {
        uint8_t ch = buf[i];
        if (ch == '\r') {
            if (i + 2 > FERRY_PROXY_V1_MAX)
                return -EINVAL;
            if (i + 1 == len)
                return 0;
            if (buf[i + 1] != '\n')
                return -EINVAL;
            if (parse_v1_line((const char *)buf + sig, i - sig, out) != 0)
                return -EINVAL;
            return (int)(i + 2);
        }
        if (ch < ' ' || ch > '~')
            return -EINVAL;
    }
    /* No CR yet: more may come, unless the line would be too long. */
    return len < FERRY_PROXY_V1_MAX ? 0 : -EINVAL;
}

/* ---- version 2 ---- */

static int v2_inet(const uint8_t *a, struct ferry_proxy_hdr *out)
{
    struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
    out->src_len = out->dst_len = sizeof(struct sockaddr_in);
    return V2_INET_LEN;
}

static int v2_inet6(const uint8_t *a, struct ferry_proxy_hdr *out)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
    out->src_len = out->dst_len = sizeof(struct sockaddr_in6);
    return V2_INET6_LEN;
}

static socklen_t v2_unix_one(const uint8_t *path, struct sockaddr_storage *ss)
{
    struct sockaddr_un *u = (struct sockaddr_un *)ss;
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path, path, V2_UNIX_PATH);
    size_t n = path[0] ? strnlen((const char *)path, V2_UNIX_PATH) : V2_UNIX_PATH;
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

static int v2_unix(const uint8_t *a, struct ferry_proxy_hdr *out)
{
    out->src_len = v2_unix_one(a, &out->src);
    out->dst_len = v2_unix_one(a + V2_UNIX_PATH, &out->dst);
    return V2_UNIX_LEN;
}

/* CRC-32C (Castagnoli), reflected, bit by bit: headers are at most 4 KiB and
 * a checksum is rare, so a table is not worth its cache lines. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return ~crc;
}

/* The header's checksum, computed with the CRC32C value (at crc_at) zeroed. */
static bool crc_ok(const uint8_t *hdr, size_t len, size_t crc_at)
{
    static const uint8_t zero[4];
    uint32_t want = (uint32_t)hdr[crc_at] << 24 | (uint32_t)hdr[crc_at + 1] << 16 |
                    (uint32_t)hdr[crc_at + 2] << 8 | hdr[crc_at + 3];
    uint32_t c = crc32c(0, hdr, crc_at);
    c = crc32c(c, zero, 4);
    c = crc32c(c, hdr + crc_at + 4, len - crc_at - 4);
    return c == want;
}

/* One TLV at p (n bytes left): its type, value and total size, or -EINVAL
 * when its length runs past the end. */
static int tlv_at(const uint8_t *p, size_t n, uint8_t *type, struct ferry_proxy_str *v)
{
    if (n < 3)
        return -EINVAL;
    size_t l = ((size_t)p[1] << 8) | p[2];
    if (l > n - 3)
        return -EINVAL;
    *type = p[0];
    v->p = p + 3;
    v->len = l;
    return (int)(3 + l);
}

static void keep_first(struct ferry_proxy_str *slot, struct ferry_proxy_str v)
{
    if (slot->len == 0)
        *slot = v;
}

/* PP2_TYPE_SSL's value: client bits, verify, then sub-TLVs that add up. */
static int read_ssl(struct ferry_proxy_str v, struct ferry_proxy_tlvs *out)
{
    if (v.len < 5)
        return -EINVAL;
    bool first = !out->ssl;
    if (first) {
        out->ssl = true;
        out->ssl_client = v.p[0];
        out->ssl_verify = (uint32_t)v.p[1] << 24 | (uint32_t)v.p[2] << 16 |
                          (uint32_t)v.p[3] << 8 | v.p[4];
    }
    const uint8_t *p = v.p + 5;
    size_t n = v.len - 5;
    while (n > 0) {
        uint8_t t;
        struct ferry_proxy_str sv;
        int used = tlv_at(p, n, &t, &sv);
        if (used < 0)
            return used;
        if (first && t == FERRY_PP2_SUBTYPE_SSL_VERSION)
            keep_first(&out->ssl_version, sv);
        else if (first && t == FERRY_PP2_SUBTYPE_SSL_CIPHER)
            keep_first(&out->ssl_cipher, sv);
        else if (first && t == FERRY_PP2_SUBTYPE_SSL_CN)
            keep_first(&out->ssl_cn, sv);
        p += used;
        n -= (size_t)used;
    }
    return 0;
}

/* Walks the TLVs of the header hdr[0..len), which start at off: every
 * length must add up, known types must be well-formed (unknown ones are
 * skipped), and a CRC32C must match. out may be NULL (validation only). */
static int walk_tlvs(const uint8_t *hdr, size_t len, size_t off, struct ferry_proxy_tlvs *out)
{
    struct ferry_proxy_tlvs scratch;
    if (!out)
        out = &scratch;
    memset(out, 0, sizeof(*out));
    size_t at = off;
    while (at < len) {
        uint8_t t;
        struct ferry_proxy_str v;
        int used = tlv_at(hdr + at, len - at, &t, &v);
        if (used < 0)
            return used;
        switch (t) {
        case FERRY_PP2_TYPE_ALPN: keep_first(&out->alpn, v); break;
        case FERRY_PP2_TYPE_AUTHORITY: keep_first(&out->authority, v); break;
        case FERRY_PP2_TYPE_UNIQUE_ID:
            if (v.len > FERRY_PROXY_UNIQUE_ID_MAX)
                return -EINVAL;
            keep_first(&out->unique_id, v);
            break;
        case FERRY_PP2_TYPE_CRC32C:
            if (v.len != 4 || !crc_ok(hdr, len, at + 3))
                return -EINVAL;
            break;
        case FERRY_PP2_TYPE_SSL:
            if (read_ssl(v, out) != 0)
                return -EINVAL;
            break;
        default: break; /* NOOP, NETNS, cloud types (0xE0..0xEF) and the rest */
        }
        at += (size_t)used;
    }
    return 0;
}

int ferry_proxy_read_tlvs(const uint8_t *buf, const struct ferry_proxy_hdr *h,
                          struct ferry_proxy_tlvs *out)
{
    memset(out, 0, sizeof(*out));
    if (h->version != 2 || h->tlv_len == 0)
        return 0;
    return walk_tlvs(buf, (size_t)h->tlv_off + h->tlv_len, h->tlv_off, out);
}

static int parse_v2(const uint8_t *buf, size_t len, struct ferry_proxy_hdr *out)
{
    if (len > 12 && (buf[12] >> 4) != 2)
        return -EINVAL;
    if (len > 12 && (buf[12] & 15) > V2_CMD_PROXY)
        return -EINVAL;
    if (len < V2_HDR)
        return 0;
    size_t body = ((size_t)buf[14] << 8) | buf[15];
    if (V2_HDR + body > FERRY_PROXY_MAX)
        return -EINVAL;
    int cmd = buf[12] & 15, fam = buf[13] >> 4, proto = buf[13] & 15;
    /* LOCAL: the block, family included, is to be ignored. */
    bool addrs = cmd == V2_CMD_PROXY && fam != V2_FAM_UNSPEC;
    if (addrs && (fam > V2_FAM_UNIX || proto != V2_PROTO_STREAM))
        return -EINVAL;
    size_t need = !addrs ? 0 : fam == V2_FAM_INET ? V2_INET_LEN
                             : fam == V2_FAM_INET6 ? V2_INET6_LEN : V2_UNIX_LEN;
    if (body < need)
        return -EINVAL;
    if (len < V2_HDR + body)
        return 0;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    if (!addrs)
        return (int)(V2_HDR + body);
    const uint8_t *a = buf + V2_HDR;
    int used = fam == V2_FAM_INET ? v2_inet(a, out) : fam == V2_FAM_INET6 ? v2_inet6(a, out)
                                                                          : v2_unix(a, out);
    if (walk_tlvs(buf, V2_HDR + body, V2_HDR + (size_t)used, NULL) != 0)
        return -EINVAL;
    out->tlv_off = (uint16_t)(V2_HDR + (size_t)used);
    out->tlv_len = (uint16_t)(body - (size_t)used);
    unmap(&out->src, &out->src_len);
    unmap(&out->dst, &out->dst_len);
    out->has_addrs = true;
    return (int)(V2_HDR + body);
}

int ferry_proxy_parse(const uint8_t *buf, size_t len, struct ferry_proxy_hdr *out)
{
    if (len == 0)
        return 0;
    size_t n1 = sizeof(v1_sig) - 1;
    if (buf[0] == 'P') {
        if (memcmp(buf, v1_sig, len < n1 ? len : n1) != 0)
            return -EINVAL;
        return len < n1 ? 0 : parse_v1(buf, len, out);
    }
    if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
        return -EINVAL;
    return len < sizeof(v2_sig) ? 0 : parse_v2(buf, len, out);
}

/* ---- building ---- */

/* An address reduced to what the header carries. */
struct pp_addr {
    int family; /* AF_INET, AF_INET6, or 0 when not carried */
    uint8_t ip[16];
    uint16_t port; /* host order */
};

static void pp_addr_of(const struct sockaddr *sa, struct pp_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        a->family = AF_INET;
        memcpy(a->ip, &s->sin_addr, 4);
        a->port = ntohs(s->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        a->port = ntohs(s->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
            a->family = AF_INET;
            memcpy(a->ip, s->sin6_addr.s6_addr + 12, 4);
        } else {
            a->family = AF_INET6;
            memcpy(a->ip, &s->sin6_addr, 16);
        }
    }
}

/* Makes a mixed pair both IPv6 (the IPv4 one v4-mapped). Returns the common
 * family, or 0 when one side is not carried. */
static int pp_pair(struct pp_addr *s, struct pp_addr *d)
{
    if (!s->family || !d->family)
        return 0;
    if (s->family == d->family)
        return s->family;
    struct pp_addr *v4 = s->family == AF_INET ? s : d;
    uint8_t ip4[4];
    memcpy(ip4, v4->ip, 4);
    memset(v4->ip, 0, 10);
    v4->ip[10] = v4->ip[11] = 0xff;
    memcpy(v4->ip + 12, ip4, 4);
    v4->family = AF_INET6;
    return AF_INET6;
}

int ferry_proxy_build_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf,
                         size_t cap)
{
    struct pp_addr s, d;
    pp_addr_of(src, &s);
    pp_addr_of(dst, &d);
    int fam = pp_pair(&s, &d);
    char line[FERRY_PROXY_V1_MAX + 1];
    int n;
    if (!fam) {
        n = (int)strlen(strcpy(line, "PROXY UNKNOWN\r\n"));
    } else {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        if (!inet_ntop(fam, s.ip, sa, sizeof(sa)) || !inet_ntop(fam, d.ip, da, sizeof(da)))
            return -EINVAL;
        n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                     fam == AF_INET ? "TCP4" : "TCP6", sa, da, s.port, d.port);
        if (n < 0 || (size_t)n >= sizeof(line))
            return -EINVAL;
    }
    if ((size_t)n > cap)
        return -ENOSPC;
    memcpy(buf, line, (size_t)n);
    return n;
}

/* Appends one TLV when its value is present and fits `max`. */
static size_t put_tlv(uint8_t *p, uint8_t type, struct ferry_proxy_str v, size_t max)
{
    if (v.len == 0 || v.len > max)
        return 0;
    p[0] = type;
    p[1] = (uint8_t)(v.len >> 8);
    p[2] = (uint8_t)v.len;
    memcpy(p + 3, v.p, v.len);
    return 3 + v.len;
}

/* Writes the TLVs into p (room for FERRY_PROXY_HDR_OUT_MAX - 16 - 36 is
 * enough: see the bound in proxy_proto.h). */
static size_t put_tlvs(uint8_t *p, const struct ferry_proxy_tlvs *t)
{
    const size_t vmax = FERRY_PROXY_TLV_VALUE_MAX;
    size_t n = 0;
    n += put_tlv(p + n, FERRY_PP2_TYPE_ALPN, t->alpn, vmax);
    n += put_tlv(p + n, FERRY_PP2_TYPE_AUTHORITY, t->authority, vmax);
    n += put_tlv(p + n, FERRY_PP2_TYPE_UNIQUE_ID, t->unique_id, FERRY_PROXY_UNIQUE_ID_MAX);
    if (t->ssl) {
        uint8_t *ssl = p + n;
        size_t m = 5;
        ssl[3] = t->ssl_client;
        ssl[4] = (uint8_t)(t->ssl_verify >> 24);
        ssl[5] = (uint8_t)(t->ssl_verify >> 16);
        ssl[6] = (uint8_t)(t->ssl_verify >> 8);
        ssl[7] = (uint8_t)t->ssl_verify;
        m += put_tlv(ssl + 3 + m, FERRY_PP2_SUBTYPE_SSL_VERSION, t->ssl_version, vmax);
        m += put_tlv(ssl + 3 + m, FERRY_PP2_SUBTYPE_SSL_CIPHER, t->ssl_cipher, vmax);
        m += put_tlv(ssl + 3 + m, FERRY_PP2_SUBTYPE_SSL_CN, t->ssl_cn, vmax);
        ssl[0] = FERRY_PP2_TYPE_SSL;
        ssl[1] = (uint8_t)(m >> 8);
        ssl[2] = (uint8_t)m;
        n += 3 + m;
    }
    return n;
}

int ferry_proxy_build_v2_tlvs(const struct sockaddr *src, const struct sockaddr *dst,
                              const struct ferry_proxy_tlvs *tlvs, uint8_t *buf, size_t cap)
{
    struct pp_addr s, d;
    pp_addr_of(src, &s);
    pp_addr_of(dst, &d);
    int fam = pp_pair(&s, &d);
    size_t alen = fam == AF_INET ? 4 : 16;
    size_t body = !fam ? 0 : fam == AF_INET ? V2_INET_LEN : V2_INET6_LEN;
    uint8_t out[FERRY_PROXY_HDR_OUT_MAX];
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = (uint8_t)(0x20 | (fam ? V2_CMD_PROXY : V2_CMD_LOCAL));
    out[13] = !fam ? 0 : (uint8_t)(((fam == AF_INET ? V2_FAM_INET : V2_FAM_INET6) << 4) |
                                   V2_PROTO_STREAM);
    if (fam) {
        uint8_t *a = out + V2_HDR;
        memcpy(a, s.ip, alen);
        memcpy(a + alen, d.ip, alen);
        a[2 * alen] = (uint8_t)(s.port >> 8);
        a[2 * alen + 1] = (uint8_t)s.port;
        a[2 * alen + 2] = (uint8_t)(d.port >> 8);
        a[2 * alen + 3] = (uint8_t)d.port;
        if (tlvs)
            body += put_tlvs(a + body, tlvs);
    }
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    if (cap < V2_HDR + body)
        return -ENOSPC;
    memcpy(buf, out, V2_HDR + body);
    return (int)(V2_HDR + body);
}

int ferry_proxy_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf,
                         size_t cap)
{
    return ferry_proxy_build_v2_tlvs(src, dst, NULL, buf, cap);
}

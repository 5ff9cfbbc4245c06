/* ferryd: the PROXY protocol, versions 1 and 2 (see proxy_proto.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_proto.h"

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

/* TLVs after the address block: skipped, but their framing must add up. */
static int check_tlvs(const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (n < 3)
            return -EINVAL;
        size_t l = ((size_t)p[1] << 8) | p[2];
        if (l > n - 3)
            return -EINVAL;
        p += 3 + l;
        n -= 3 + l;
    }
    return 0;
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
    if (check_tlvs(a + used, body - (size_t)used) != 0)
        return -EINVAL;
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

int ferry_proxy_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf,
                         size_t cap)
{
    struct pp_addr s, d;
    pp_addr_of(src, &s);
    pp_addr_of(dst, &d);
    int fam = pp_pair(&s, &d);
    size_t alen = fam == AF_INET ? 4 : 16;
    size_t body = !fam ? 0 : fam == AF_INET ? V2_INET_LEN : V2_INET6_LEN;
    if (cap < V2_HDR + body)
        return -ENOSPC;
    memcpy(buf, v2_sig, sizeof(v2_sig));
    buf[12] = (uint8_t)(0x20 | (fam ? V2_CMD_PROXY : V2_CMD_LOCAL));
    buf[13] = !fam ? 0 : (uint8_t)(((fam == AF_INET ? V2_FAM_INET : V2_FAM_INET6) << 4) |
                                   V2_PROTO_STREAM);
    buf[14] = 0;
    buf[15] = (uint8_t)body;
    if (fam) {
        uint8_t *a = buf + V2_HDR;
        memcpy(a, s.ip, alen);
        memcpy(a + alen, d.ip, alen);
        a[2 * alen] = (uint8_t)(s.port >> 8);
        a[2 * alen + 1] = (uint8_t)s.port;
        a[2 * alen + 2] = (uint8_t)(d.port >> 8);
        a[2 * alen + 3] = (uint8_t)d.port;
    }
    return (int)(V2_HDR + body);
}

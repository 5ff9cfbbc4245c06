/* Addresses and CIDRs of ferry.ini: "IPV4:PORT", "[IPV6]:PORT", "*:PORT",
 * "unix:/path", and for servers "HOST:PORT"; client CIDRs for allow/deny. */
#include "ferry_config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

/* Letters, digits, '-' and '_' in dot-separated labels of 1..63 chars. A
 * string of digits and dots only is a broken IPv4 address, not a name. */
bool ferry__hostname_valid(const char *s, size_t max)
{
    size_t n = strlen(s), label = 0;
    bool alpha = false;
    if (n == 0 || n > max)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
        if (!letter && !(c >= '0' && c <= '9'))
            return false;
        alpha |= letter;
        if (++label > 63)
            return false;
    }
    return label > 0 && alpha;
}

static int parse_port(const char *s, uint16_t *port, const char **why)
{
    unsigned long v;
    if (ferry_parse_uint(s, 65535, &v) < 0 || v == 0) {
        *why = "the port must be a number from 1 to 65535";
        return -EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

static int parse_unix(const char *path, struct ferry_addr *out, const char **why)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
    size_t n = strlen(path);
    if (n == 0) {
        *why = "the unix socket path is empty";
        return -EINVAL;
    }
    if (n >= sizeof(un->sun_path)) {
        *why = "the unix socket path is too long (at most 107 bytes)";
        return -ERANGE;
    }
    out->kind = FERRY_ADDR_UNIX;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n + 1);
    out->sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    out->resolved = true;
    snprintf(out->text, sizeof(out->text), "unix:%s", path);
    return 0;
}

/* "[v6]:port": the part inside the brackets and the port. */
static int parse_bracketed(const char *s, struct ferry_addr *out, const char **why)
{
    const char *close = strchr(s, ']');
    char host[INET6_ADDRSTRLEN + 1];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->sa;
    size_t n;
    if (!close || close[1] != ':') {
        *why = "expected [IPV6]:PORT";
        return -EINVAL;
    }
    n = (size_t)(close - (s + 1));
    if (n == 0 || n >= sizeof(host)) {
        *why = "invalid IPv6 address";
        return -EINVAL;
    }
    memcpy(host, s + 1, n);
    host[n] = '\0';
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
        *why = "invalid IPv6 address";
        return -EINVAL;
    }
    if (parse_port(close + 2, &out->port, why) < 0)
        return -EINVAL;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(out->port);
    out->sa_len = sizeof(*s6);
    out->resolved = true;
    inet_ntop(AF_INET6, &s6->sin6_addr, out->host, sizeof(out->host));
    /* An IPv6 address is at most 45 chars: the text always fits. */
    if (snprintf(out->text, sizeof(out->text), "[%s]:%u", out->host, (unsigned)out->port) < 0)
        return -EINVAL;
    return 0;
}

/* "host:port" where host is "*", an IPv4 address or (allow_host) a name. */
static int parse_host_port(const char *s, bool allow_host, struct ferry_addr *out,
                           const char **why)
{
    const char *colon = strrchr(s, ':');
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->sa;
    size_t n;
    if (!colon) {
        *why = "missing :PORT";
        return -EINVAL;
    }
    n = (size_t)(colon - s);
    if (memchr(s, ':', n)) {
        *why = "an IPv6 address needs brackets: [IPV6]:PORT";
        return -EINVAL;
    }
    if (n == 0 || n >= sizeof(out->host) - 6) {
        *why = n ? "host name too long" : "missing host before :PORT (use *:PORT for all addresses)";
        return -EINVAL;
    }
    memcpy(out->host, s, n);
    out->host[n] = '\0';
    if (parse_port(colon + 1, &out->port, why) < 0)
        return -EINVAL;
    if (strcmp(out->host, "*") == 0) {
        /* All IPv4 and IPv6: sa is [::]:port (the daemon falls back to IPv4). */
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->sa;
        out->kind = FERRY_ADDR_ANY;
        out->host[0] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons(out->port);
        out->sa_len = sizeof(*s6);
        out->resolved = true;
        snprintf(out->text, sizeof(out->text), "*:%u", (unsigned)out->port);
        return 0;
    }
    /* The host is at most 249 chars (checked above): the text fits. */
    if (snprintf(out->text, sizeof(out->text), "%s:%u", out->host, (unsigned)out->port) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, out->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(out->port);
        out->sa_len = sizeof(*s4);
        out->resolved = true;
        return 0;
    }
    if (!ferry__hostname_valid(out->host, 253)) {
        *why = allow_host ? "invalid address or host name" : "invalid IPv4 address";
        return -EINVAL;
    }
    if (!allow_host) {
        *why = "must be a numeric address (IPV4:PORT, [IPV6]:PORT, *:PORT or unix:/path)";
        return -EINVAL;
    }
    return 0;   /* a host name, resolved later by the daemon */
}

int ferry__parse_addr(const char *s, bool allow_host, struct ferry_addr *out, const char **why)
{
    int rc;
    memset(out, 0, sizeof(*out));
    out->kind = FERRY_ADDR_INET;
    if (strncmp(s, "unix:", 5) == 0)
        rc = parse_unix(s + 5, out, why);
    else if (s[0] == '[')
        rc = parse_bracketed(s, out, why);
    else
        rc = parse_host_port(s, allow_host, out, why);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int ferry_parse_addr(const char *s, bool allow_host, struct ferry_addr *out)
{
    const char *why;
    return ferry__parse_addr(s, allow_host, out, &why);
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Zeroes the bits of addr past `prefix`. */
static void mask_bits(uint8_t *addr, size_t len, unsigned prefix)
{
    for (size_t i = 0; i < len; i++) {
        unsigned keep = prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;
        if (keep < 8)
            addr[i] &= (uint8_t)(0xff00u >> keep);
    }
}

int ferry_parse_cidr(const char *s, struct ferry_cidr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    unsigned long prefix;
    struct ferry_cidr c = {0};
    if (n == 0 || n >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, host, c.addr) == 1)
        c.family = AF_INET;
    else if (inet_pton(AF_INET6, host, c.addr) == 1)
        c.family = AF_INET6;
    else
        return -EINVAL;
    unsigned bits = c.family == AF_INET ? 32 : 128;
    if (!slash)
        prefix = bits;
    else if (ferry_parse_uint(slash + 1, bits, &prefix) < 0)
        return -EINVAL;
    c.prefix = (unsigned)prefix;
    /* "::ffff:10.0.0.0/104" is the IPv4 network 10.0.0.0/8. */
    if (c.family == AF_INET6 && c.prefix >= 96 && memcmp(c.addr, v4mapped_prefix, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix -= 96;
    }
    /* Host bits written past the prefix are dropped, as most tools do. */
    mask_bits(c.addr, c.family == AF_INET ? 4 : 16, c.prefix);
    *out = c;
    return 0;
}

/* The client's family and address bytes, IPv4-mapped IPv6 seen as IPv4. */
static int client_bytes(const struct sockaddr *sa, uint8_t addr[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped_prefix, 12) == 0) {
            memcpy(addr, a + 12, 4);
            return AF_INET;
        }
        memcpy(addr, a, 16);
        return AF_INET6;
    }
    return AF_UNSPEC;
}

bool ferry_cidr_match(const struct ferry_cidr *c, const struct sockaddr *sa)
{
    uint8_t addr[16] = {0};
    if (!sa || client_bytes(sa, addr) != c->family)
        return false;
    mask_bits(addr, c->family == AF_INET ? 4 : 16, c->prefix);
    return memcmp(addr, c->addr, c->family == AF_INET ? 4 : 16) == 0;
}

/* What an inet address binds: family (IPv4-mapped seen as IPv4), whether it
 * is the wildcard of its family, and its bytes. ANY covers both families. */
struct bind_view {
    int family;
    bool wildcard;
    uint8_t addr[16];
};

static void view_of(const struct ferry_addr *a, struct bind_view *v)
{
    static const uint8_t zero[16] = {0};
    memset(v, 0, sizeof(*v));
    if (a->kind == FERRY_ADDR_ANY) {
        v->family = AF_UNSPEC;
        v->wildcard = true;
        return;
    }
    v->family = client_bytes((const struct sockaddr *)&a->sa, v->addr);
    v->wildcard = memcmp(v->addr, zero, v->family == AF_INET ? 4 : 16) == 0;
}

bool ferry_addr_conflict(const struct ferry_addr *a, const struct ferry_addr *b)
{
    struct bind_view va, vb;
    if (a->kind == FERRY_ADDR_UNIX || b->kind == FERRY_ADDR_UNIX)
        return a->kind == b->kind && strcmp(a->text, b->text) == 0;
    if (a->port != b->port)
        return false;
    if (!a->resolved || !b->resolved)   /* host names: only the same text */
        return strcmp(a->text, b->text) == 0;
    view_of(a, &va);
    view_of(b, &vb);
    if (va.family == AF_UNSPEC || vb.family == AF_UNSPEC)
        return true;
    /* [::] is dual-stack: it takes the port for IPv4 too. */
    if ((va.wildcard && va.family == AF_INET6) || (vb.wildcard && vb.family == AF_INET6))
        return true;
    if (va.family != vb.family)
        return false;
    if (va.wildcard || vb.wildcard)
        return true;
    return memcmp(va.addr, vb.addr, va.family == AF_INET ? 4 : 16) == 0;
}

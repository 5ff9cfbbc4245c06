/* ferryd: the PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt).
 *
 * Parsing is strict and incremental: it is run on what has arrived so far
 * (peeked, not consumed) and says how long the header is, that more bytes
 * are needed, or that the bytes cannot start a valid header. A header can
 * never be longer than FERRY_PROXY_MAX bytes (v2 TLVs included), so the
 * caller never needs to look further.
 */
#ifndef FERRY_PROXY_PROTO_H
#define FERRY_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest header accepted: like HAProxy, a v2 header with its address block
 * and a few TLVs; a v1 line is at most FERRY_PROXY_V1_MAX. */
#define FERRY_PROXY_MAX 536
#define FERRY_PROXY_V1_MAX 107
/* Longest header ferry_proxy_build_v1/_v2 produce (v2 with two unix paths). */
#define FERRY_PROXY_HDR_OUT_MAX 232

struct ferry_proxy_hdr {
    int version;                  /* 1 or 2 */
    /* false for v1 UNKNOWN, v2 LOCAL and v2 UNSPEC: use the real peer. */
    bool has_addrs;
    struct sockaddr_storage src;  /* the client */
    struct sockaddr_storage dst;  /* the address it connected to */
    socklen_t src_len, dst_len;
};

/* Returns the header length (> 0) with *out filled, 0 when buf is a valid
 * but incomplete beginning of a header, or -EINVAL. */
int ferry_proxy_parse(const uint8_t *buf, size_t len, struct ferry_proxy_hdr *out);

/* Build the header announcing a connection from src to dst. IPv4, IPv6 and
 * v4-mapped IPv6 addresses are carried (a mixed pair is sent as IPv6);
 * anything else (unix sockets, NULL) gives "PROXY UNKNOWN\r\n" (v1) or a
 * LOCAL command with the UNSPEC family (v2). Return the length written or
 * -ENOSPC. The v1 line is not NUL-terminated. */
int ferry_proxy_build_v1(const struct sockaddr *src, const struct sockaddr *dst, char *buf,
                         size_t cap);
int ferry_proxy_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf,
                         size_t cap);

#endif

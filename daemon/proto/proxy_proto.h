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

/* Longest header accepted: a v2 header of up to 4 KiB, address block and
 * TLVs included (cloud load balancers send several TLVs: AWS 0xEA, Azure
 * 0xEE, GCP 0xE0); a v1 line is at most FERRY_PROXY_V1_MAX. */
#define FERRY_PROXY_MAX 4096
#define FERRY_PROXY_V1_MAX 107
/* Longest header ferry_proxy_build_v1/_v2 produce: a v2 IPv6 block and
 * every TLV of struct ferry_proxy_tlvs at its longest. */
#define FERRY_PROXY_HDR_OUT_MAX 1536
/* Longest value of one TLV the builder sends (longer ones are left out),
 * and of PP2_TYPE_UNIQUE_ID (the protocol's own bound). */
#define FERRY_PROXY_TLV_VALUE_MAX 255
#define FERRY_PROXY_UNIQUE_ID_MAX 128

/* v2 TLV types and PP2_TYPE_SSL's client bits (proxy-protocol.txt 2.2). */
enum {
    FERRY_PP2_TYPE_ALPN = 0x01,
    FERRY_PP2_TYPE_AUTHORITY = 0x02,
    FERRY_PP2_TYPE_CRC32C = 0x03,
    FERRY_PP2_TYPE_NOOP = 0x04,
    FERRY_PP2_TYPE_UNIQUE_ID = 0x05,
    FERRY_PP2_TYPE_SSL = 0x20,
    FERRY_PP2_SUBTYPE_SSL_VERSION = 0x21,
    FERRY_PP2_SUBTYPE_SSL_CN = 0x22,
    FERRY_PP2_SUBTYPE_SSL_CIPHER = 0x23,
    FERRY_PP2_CLIENT_SSL = 0x01,
    FERRY_PP2_CLIENT_CERT_CONN = 0x02,
};

/* A TLV value: len 0 means absent. Not NUL-terminated. */
struct ferry_proxy_str {
    const uint8_t *p;
    size_t len;
};

/* The TLVs ferryd sends and understands. Unknown types are skipped. */
struct ferry_proxy_tlvs {
    struct ferry_proxy_str alpn, authority, unique_id;
    bool ssl;               /* PP2_TYPE_SSL present: the client spoke TLS */
    uint8_t ssl_client;     /* its client bits (FERRY_PP2_CLIENT_*) */
    uint32_t ssl_verify;    /* 0: the client certificate, if any, was verified */
    struct ferry_proxy_str ssl_version, ssl_cipher, ssl_cn;
};

struct ferry_proxy_hdr {
    int version;                  /* 1 or 2 */
    /* false for v1 UNKNOWN, v2 LOCAL and v2 UNSPEC: use the real peer. */
    bool has_addrs;
    struct sockaddr_storage src;  /* the client */
    struct sockaddr_storage dst;  /* the address it connected to */
    socklen_t src_len, dst_len;
    /* v2 PROXY: where the TLVs are in the header (len 0: none). */
    uint16_t tlv_off, tlv_len;
};

/* Normalisation: an IPv4-mapped IPv6 address (::ffff:a.b.c.d, in a v1 TCP6
 * line or a v2 INET6 block) is returned as the IPv4 address a.b.c.d
 * (AF_INET), the form allow/deny, logs, source hashing and per-client caps
 * compare, and the one the builders send (a pair of them as TCP4/INET, a
 * mapped address next to a real IPv6 one as TCP6/INET6 again). So for every
 * header h that parses with addresses, parse(build(h)) gives h's addresses
 * back exactly; the fuzz target asserts it. */

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
/* The same with TLVs (tlvs may be NULL), in this order: ALPN, AUTHORITY,
 * UNIQUE_ID, SSL (with the VERSION, CIPHER, CN sub-TLVs present). A value
 * longer than FERRY_PROXY_TLV_VALUE_MAX (UNIQUE_ID: _UNIQUE_ID_MAX) is left
 * out. A LOCAL header (no addresses carried) carries no TLVs either: its
 * receiver ignores everything after the fixed 16 bytes. */
int ferry_proxy_build_v2_tlvs(const struct sockaddr *src, const struct sockaddr *dst,
                              const struct ferry_proxy_tlvs *tlvs, uint8_t *buf, size_t cap);

/* Reads the TLVs of a parsed v2 header (buf as given to ferry_proxy_parse,
 * h its result); values point into buf. Known types are checked (UNIQUE_ID
 * at most 128 bytes, SSL at least 5 bytes with sub-TLVs that add up, CRC32C
 * 4 bytes); the first of a repeated type counts. Returns 0 or -EINVAL;
 * ferry_proxy_parse already refused a header for which this fails. */
int ferry_proxy_read_tlvs(const uint8_t *buf, const struct ferry_proxy_hdr *h,
                          struct ferry_proxy_tlvs *out);

#endif

/* ferryd: the PROXY header a backend with send_proxy gets (see proxy_out.c). */
#ifndef FERRY_PROXY_OUT_H
#define FERRY_PROXY_OUT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* What is known of a connection when its PROXY header is built. */
struct ferry_proxy_conn {
    const struct sockaddr *client, *local;
    uint64_t id;       /* the access log's id= */
    SSL *ssl;          /* the listener's terminated session, or NULL */
    const char *sni;   /* the server name (terminated, or read from a passed-through hello), or NULL */
};

/* True when the server name may be sent as PP2_TYPE_AUTHORITY: a host name
 * of letters, digits, '-', '.', '_', 1 to 255 bytes (else it is left out). */
bool ferry_proxy_authority_ok(const char *sni);

/* Builds the header of version 1 or 2 into a new allocation of exactly its
 * length (*out, *len; the caller frees). v2 carries the TLVs ferry.ini(5) lists:
 * ALPN, AUTHORITY (a valid host name only), UNIQUE_ID, and SSL (version, cipher, client CN) when the
 * listener terminated TLS. Returns 0 or -errno. */
int ferry_proxy_out_build(int version, const struct ferry_proxy_conn *pc, uint8_t **out,
                          size_t *len);

#endif

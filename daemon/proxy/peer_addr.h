/* ferryd: a connection's socket address, compact (see peer_addr.c).
 *
 * A sockaddr_storage is 128 bytes; an IPv4 or IPv6 address needs at most 28.
 * A connection keeps two (its client, and the address the client connected
 * to), so it stores those inline and keeps the rare long form (a Unix
 * address with a path: a bound Unix client, a PROXY v2 AF_UNIX header) in a
 * separate allocation, its pointer in place of the inline form (len tells
 * which). 32 bytes with 4-byte alignment: a pointer member would make it 40.
 */
#ifndef FERRY_PEER_ADDR_H
#define FERRY_PEER_ADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

struct ferry_peer_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u; /* len > sizeof(u): u's first bytes hold a pointer to the address (owned) */
    socklen_t len; /* 0: not known */
};

/* Stores sa (len bytes, at most a sockaddr_storage), replacing what was
 * there. Returns 0, -EINVAL (too long) or -ENOMEM (nothing changed then). */
int ferry_peer_addr_set(struct ferry_peer_addr *a, const struct sockaddr *sa, socklen_t len);
/* The address (len bytes in a->len); never NULL. */
const struct sockaddr *ferry_peer_addr_get(const struct ferry_peer_addr *a);
/* Releases the long form; the address is unknown again. */
void ferry_peer_addr_clear(struct ferry_peer_addr *a);

#endif

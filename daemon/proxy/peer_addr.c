/* ferryd: a connection's socket address, compact (see peer_addr.h). */
#include "proxy/peer_addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The long form's pointer lives in u's bytes (memcpy: u is only 4-byte
 * aligned, see peer_addr.h). */
static struct sockaddr *spill_of(const struct ferry_peer_addr *a)
{
    struct sockaddr *p = NULL;
    if (a->len > sizeof(a->u))
        memcpy(&p, &a->u, sizeof(p));
    return p;
}

int ferry_peer_addr_set(struct ferry_peer_addr *a, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    /* Built aside, so sa may be a's own address (the old one is freed last). */
    struct ferry_peer_addr next = {.len = len};
    if (len > sizeof(next.u)) {
        struct sockaddr *spill = malloc(len);
        if (!spill)
            return -ENOMEM;
        memcpy(spill, sa, len);
        memcpy(&next.u, &spill, sizeof(spill));
    } else {
        memcpy(&next.u, sa, len);
    }
    ferry_peer_addr_clear(a);
    *a = next;
    return 0;
}

const struct sockaddr *ferry_peer_addr_get(const struct ferry_peer_addr *a)
{
    struct sockaddr *spill = spill_of(a);
    return spill ? spill : &a->u.sa;
}

void ferry_peer_addr_clear(struct ferry_peer_addr *a)
{
    free(spill_of(a));
    a->len = 0;
}

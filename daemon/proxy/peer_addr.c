/* ferryd: a connection's socket address, compact (see peer_addr.h). */
#include "proxy/peer_addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ferry_peer_addr_set(struct ferry_peer_addr *a, const struct sockaddr *sa, socklen_t len)
{
    if (len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    struct sockaddr *spill = NULL;
    if (len > sizeof(a->u)) {
        spill = malloc(len);
        if (!spill)
            return -ENOMEM;
        memcpy(spill, sa, len);
    } else {
        memcpy(&a->u, sa, len);
    }
    free(a->spill);
    a->spill = spill;
    a->len = len;
    return 0;
}

const struct sockaddr *ferry_peer_addr_get(const struct ferry_peer_addr *a)
{
    return a->spill ? a->spill : &a->u.sa;
}

void ferry_peer_addr_clear(struct ferry_peer_addr *a)
{
    free(a->spill);
    a->spill = NULL;
    a->len = 0;
}

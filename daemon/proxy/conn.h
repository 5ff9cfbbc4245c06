/* ferryd: one proxied connection (see conn.c). */
#ifndef FERRY_CONN_H
#define FERRY_CONN_H

#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/limit.h"
#include "daemon.h"
#include "gen.h"
#include "worker.h"

/* Connection permits handed from the accept task to the connection, which
 * releases them when it ends. NULL: not held. */
struct ferry_permits {
    struct ac_limit *global;
    struct ac_limit *listener;
};

/* Spawns the connection task for an accepted socket on worker fw. Takes over
 * fd, the reference on g and the permits, whatever happens. */
void ferry_conn_spawn(struct ferry_worker *fw, struct ferry_gen *g, size_t lidx, int fd,
                      const struct sockaddr_storage *peer, socklen_t peer_len,
                      struct ferry_permits permits);


#endif

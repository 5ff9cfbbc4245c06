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

/* On fw's own thread (a task the runtime API spawns there): wakes each of
 * fw's connections that is forwarding to a server of stats s, so that it
 * sees s in maint and ends with end=maint. */
void ferry_conn_wake_server(struct ferry_worker *fw, const struct ferry_server_stats *s);

/* The next connection of a worker's list (worker.c walks it for views, on
 * the worker's own thread). */
struct ferry_conn *ferry_conn_next(const struct ferry_conn *c);
/* Copies one connection's facts, on its worker's thread (the fields are
 * that thread's alone). now: ac_clock_now_ms(). */
void ferry_conn_snapshot(const struct ferry_conn *c, uint64_t now, struct ferry_conn_snapshot *s);

#endif

/* ferryd: listening sockets of a generation, and making it current. */
#ifndef FERRY_BINDING_H
#define FERRY_BINDING_H

#include "daemon.h"
#include "gen.h"

/* Sockets created for a generation that is not live yet. */
struct ferry_fresh {
    struct ferry_bound **v;
    size_t n;
};

/* Gives every listener of g its sockets: kept, inherited or newly bound
 * (collected in f). On failure closes what it bound, adds "FILE:LINE: cannot
 * bind ADDR: reason" to errs and returns -1. Worker 0 / start-up only. */
int ferry_binding_prepare(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_fresh *f,
                          struct ferry_config_errors *errs);
/* Closes the sockets of a prepared generation that will not go live. */
void ferry_binding_abort(struct ferry_daemon *d, struct ferry_fresh *f);
/* Makes g (whose reference passes to the daemon) the current generation:
 * swaps it in on every socket, starts accept tasks on new sockets, closes
 * unused ones after their queue, applies limits and log level, starts g's
 * health checks and stops the old generation's. */
void ferry_binding_commit(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_fresh *f);

#endif

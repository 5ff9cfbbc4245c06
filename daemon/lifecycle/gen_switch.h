/* ferryd: listening sockets of a generation, and making it current. */
#ifndef FERRY_GEN_SWITCH_H
#define FERRY_GEN_SWITCH_H

#include "daemon.h"
#include "gen.h"

/* Sockets created for a generation that is not live yet. */
struct ferry_new_sockets {
    struct ferry_listen_addr **v;
    size_t n;
};

/* Gives every listener of g its sockets: kept, inherited or newly bound
 * (collected in f). On failure closes what it bound, adds "FILE:LINE: cannot
 * bind ADDR: reason" to errs and returns -1. Worker 0 / start-up only. */
int ferry_gen_switch_prepare(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_new_sockets *f,
                          struct ferry_config_errors *errs);
/* Closes the sockets of a prepared generation that will not go live. */
void ferry_gen_switch_abort(struct ferry_daemon *d, struct ferry_new_sockets *f);
/* Makes g (whose reference passes to the daemon) the current generation:
 * swaps it in on every socket, starts accept tasks on new sockets, closes
 * unused ones after their queue, applies limits and log level, starts g's
 * health checks and stops the old generation's. */
void ferry_gen_switch_to(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_new_sockets *f);

#endif

/* ferryd: listening sockets shared by the workers (see bound.c). */
#ifndef FERRY_BOUND_H
#define FERRY_BOUND_H

#include <stdbool.h>

#include "ferryd.h"

/* Binds a configured address. Returns 0 or -errno. */
int ferry_bound_bind(const struct ferry_addr *a, struct ferry_bound **out);
/* Wraps an inherited (socket activation) descriptor. */
struct ferry_bound *ferry_bound_adopt(const char *addr, int fd, const char *sd_name);
/* Spawns one accept task per worker. */
int ferry_bound_start(struct ferry_daemon *d, struct ferry_bound *b);
/* Stops accepting (after accepting what is queued when serve_queue) and
 * releases the daemon's reference; the last accept task closes the socket. */
void ferry_bound_close(struct ferry_bound *b, bool serve_queue);

#endif

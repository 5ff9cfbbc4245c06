/* ferryd: `add server` and `del server` (SPEC 3): servers changed at
 * runtime, until the next reload or restart.
 *
 * An added server takes one of the backend's FERRY_ADDED_MAX spare slots,
 * serves at once (ramped by slow_start) and gets its health check; its
 * address reaches every worker through its inbox, like a discovered one. A
 * deleted server (disabled or maint, no connection left) is unlisted: hidden
 * from stats, never picked. Both run on worker 0 (the control socket's and
 * the resolver's worker).
 */
#ifndef FERRY_ADDSERVER_H
#define FERRY_ADDSERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"
#include "ferry_config.h"

/* 0, or -errno with the reason in err: -ENOENT no such backend, -EEXIST a
 * server of that name, -ENOSPC no spare slot left. */
int ferry_daemon_add_server(struct ferry_daemon *d, const char *backend, const char *name,
                            const struct ferry_addr *addr, unsigned weight, bool backup,
                            unsigned max_connections, char *err, size_t errlen);

/* 0, or -errno with the reason in err: -ENOENT no such server, -EBUSY not
 * disabled or maint, or connections left, -EPERM a discovered server. */
int ferry_daemon_del_server(struct ferry_daemon *d, const char *backend, const char *name,
                            char *err, size_t errlen);

#endif

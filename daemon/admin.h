/* ferryd: the runtime admin API: what the control socket asks of servers and
 * listeners (see ferryctl(8) and the control commands in ferryd(8)).
 *
 * Declared in the core so that the control wing reaches the servers wing
 * only through it; implemented in servers/admin.c (states, weights,
 * listeners) and servers/addserver.c (`add server`, `del server`: servers
 * changed at runtime, until the next reload or restart, or with state_file
 * until `del server`). An added server takes one of the backend's
 * FERRY_ADDED_MAX spare slots, serves at once (ramped by slow_start) and gets
 * its health check; its address reaches every worker through its inbox, like
 * a discovered one. A deleted server (disabled or maint, no connection left)
 * is unlisted: hidden from stats, never picked. Add and del run on worker 0
 * (the control socket's and the resolver's worker). Each change is kept in
 * state_file.
 */
#ifndef FERRY_ADMIN_H
#define FERRY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"
#include "ferry_config.h"

/* The state, weight and listener calls return 0, or -ENOENT when the name is
 * not in the current generation. */
/* `set server B/S state ready|drain|maint` (`disable server` is drain,
 * `enable server` ready). maint cuts the server's connections (end=maint):
 * every worker is asked through its inbox. */
int ferry_admin_set_server_state(struct ferry_daemon *d, const char *backend,
                                  const char *server, enum ferry_admin_state state);
/* `set server B/S weight N`: until the next reload, or kept by state_file. */
int ferry_admin_set_server_weight(struct ferry_daemon *d, const char *backend,
                                   const char *server, unsigned weight);
/* `disable listener` / `enable listener`: stop / resume accepting. */
int ferry_admin_set_listener_enabled(struct ferry_daemon *d, const char *listener, bool enabled);

/* 0, or -errno with the reason in err: -ENOENT no such backend, -EEXIST a
 * server of that name, -ENOSPC no spare slot left. */
int ferry_admin_add_server(struct ferry_daemon *d, const char *backend, const char *name,
                            const struct ferry_addr *addr, unsigned weight, bool backup,
                            unsigned max_connections, char *err, size_t errlen);

/* 0, or -errno with the reason in err: -ENOENT no such server, -EBUSY not
 * disabled or maint, or connections left, -EPERM a discovered server. */
int ferry_admin_del_server(struct ferry_daemon *d, const char *backend, const char *name,
                            char *err, size_t errlen);

/* `set server B/S addr ADDRESS` (servers/setaddr.c): new connections and
 * health checks go to ADDRESS (IP:PORT, [IPV6]:PORT, or HOST:PORT looked up
 * without blocking and kept current by TTL; the old address serves until
 * the first answer); established ones run on. 0, or -errno with the reason
 * in err: -EINVAL a bad address, -ENOENT no such server, -EPERM a
 * discovered server, -EAGAIN a host name without a resolver. */
int ferry_admin_set_server_addr(struct ferry_daemon *d, const char *backend, const char *server,
                                const char *addr, char *err, size_t errlen);

#endif

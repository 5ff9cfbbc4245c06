/* ferryd: systemd integration without libsystemd (ferryd(8)).
 *
 * sd_notify(3): a datagram to $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace). The watchdog interval from $WATCHDOG_USEC. Socket
 * activation (sd_listen_fds(3)): the descriptors from 3 named in
 * $LISTEN_FDS / $LISTEN_FDNAMES when $LISTEN_PID is this process.
 * Everything here is done once at start-up or rarely (notifications), so a
 * socket per notification is fine.
 */
#ifndef FERRY_SDNOTIFY_H
#define FERRY_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry_config.h"

/* An inherited socket. The array returned by ferry_sd_listen_fds is one
 * allocation (free() it); close the fds nobody claimed. */
struct ferry_sd_fd {
    int fd;
    int type;                    /* SOCK_STREAM, ... (SO_TYPE) */
    char name[256];              /* from $LISTEN_FDNAMES, "" if none */
    char addr[128];              /* local address like config text: "127.0.0.1:80",
                                    "[::1]:80", "unix:/path" ("unix:@name" abstract) */
    struct sockaddr_storage sa;  /* local address (getsockname) */
    socklen_t sa_len;
    bool claimed;                /* for the caller: a listener uses it */
};

/* Sends `state` (e.g. "READY=1", several assignments separated by '\n').
 * Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset, or -errno. */
int ferry_sd_notify(const char *state);
int ferry_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* $WATCHDOG_USEC when set, valid and meant for us ($WATCHDOG_PID unset or
 * our pid); else 0. */
uint64_t ferry_sd_watchdog_usec(void);

/* Takes the inherited sockets: *fds (NULL when none) and *n. Each gets
 * FD_CLOEXEC and O_NONBLOCK. $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES
 * are unset in every case (children must not see them). Returns the count,
 * 0 when none are meant for us, or -errno (also left in errno): -EINVAL for
 * malformed variables, -EBADF for a descriptor that is not an open socket. */
int ferry_sd_listen_fds(struct ferry_sd_fd **fds, size_t *n);

/* Formats a socket address like the configuration does. Returns buf. */
char *ferry_sd_format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap);

/* Whether an inherited socket is bound where the configured address says.
 * "*:P" matches a socket on [::]:P (or 0.0.0.0:P, what binding "*:P" falls
 * back to without IPv6); other addresses match exactly (family, address,
 * port; unix: path). A host name that is not resolved matches nothing. */
bool ferry_sd_addr_equal(const struct ferry_sd_fd *s, const struct ferry_addr *a);

#endif

/* ferryd: upgrading in place, the old process's side (ferryd(8), UPGRADE).
 *
 * `upgrade` (control socket) and SIGUSR2 start the executable ferryd was
 * started from (its path as given at start, so a package upgrade that
 * replaced the file runs the new one) with the same arguments, and hand it
 * every listening socket, the runtime state and the ticket key over the
 * channel of handover.h. The new process checks its configuration, takes
 * the sockets instead of binding and says it is ready; then this process
 * tells it to go, stops accepting (the sockets stay open in the new one, so
 * the kernel's queues never close), drains its connections for up to
 * drain_timeout and exits 0. A new process that fails first (errors, an
 * exit, no word within FERRY_UPGRADE_READY_MS) is killed and this one goes
 * on as before. One upgrade at a time (d->upgrading).
 */
#ifndef FERRY_UPGRADE_H
#define FERRY_UPGRADE_H

#include <stdbool.h>
#include <sys/types.h>

#include "asynccore/deadline.h"
#include "asynccore/reactor.h"
#include "daemon.h"

#define FERRY_UPGRADE_READY_MS 30000

/* A future polled on worker 0. Output: err (0: the new process took over;
 * -1: it did not, every reason in errors) and, on success, new_pid and
 * new_version. */
struct ferry_upgrade {
    struct ac_future base;
    struct ferry_daemon *d;
    int state;
    int chan;
    pid_t pid;
    struct ac_io io;
    bool io_live;
    struct ac_deadline deadline;
    char *errors;          /* "error: ...\n" lines (malloc'd), NULL if none */
    size_t errors_len;
    int err;
    long new_pid;
    char new_version[64];
};

void ferry_upgrade_init(struct ferry_upgrade *u, struct ferry_daemon *d);
/* The error lines of a finished upgrade are freed with it (drop). */

/* At start: the path an upgrade runs (malloc'd). argv[0] made absolute
 * without resolving symbolic links (a package that re-points a link, or
 * renames a new file over the old one, has the new one run), found along
 * $PATH when it has no '/'; /proc/self/exe as the last resort. */
char *ferry_upgrade_exe_path(const char *argv0);

#endif

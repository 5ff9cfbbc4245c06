/* ferryd: the control socket server (ferryctl(8) COMMANDS).
 *
 * A Unix stream socket: a client sends one command line ending in "\n" (at
 * most 4096 bytes, within 10 s), ferryd writes the answer, ending with a
 * newline, and closes. Served on worker 0, at most 128 clients at once (the
 * kernel queues the rest); a client that never reads its answer is dropped
 * after 10 s. Nothing a client sends disturbs the daemon.
 */
#ifndef FERRY_CONTROL_H
#define FERRY_CONTROL_H

#include "buf.h"
#include "daemon.h"

struct ferry_control;

/* Creates the socket at path (mode: its permissions) and starts serving on
 * worker 0 of d->rt. Refuses a path that is a symbolic link (-ELOOP), a
 * parent directory writable by everyone without the sticky bit (-EPERM), an
 * existing file that is not a socket (-EEXIST) and a socket another process
 * still serves (-EADDRINUSE); a stale socket is replaced; a missing parent
 * directory is created (0755). NULL with *err = -errno on failure. */
struct ferry_control *ferry_control_start(struct ferry_daemon *d, const char *path, unsigned mode,
                                          int *err);

/* Serves fd, the control socket at path an old process handed over
 * (upgrade): nothing is created or removed. */
struct ferry_control *ferry_control_adopt(struct ferry_daemon *d, const char *path, int fd,
                                          int *err);

/* After the runtime was freed (its tasks dropped): removes the socket file
 * (if it is still ours) and frees. */
void ferry_control_free(struct ferry_control *c);

#endif

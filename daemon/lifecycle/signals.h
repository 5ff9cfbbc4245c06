/* ferryd: signals, graceful stop, watchdog and status (see signals.c). */
#ifndef FERRY_SIGNALS_H
#define FERRY_SIGNALS_H

#include <signal.h>
#include <stddef.h>

#include "daemon.h"

/* Blocks SIGHUP/SIGTERM/SIGINT in the calling thread (call before any thread
 * exists, so every worker inherits it) and ignores SIGPIPE. */
void ferry_lifecycle_block_signals(sigset_t *set);
/* Spawns the signal task, per-worker heartbeats and the watchdog/status task. */
int ferry_lifecycle_start(struct ferry_daemon *d, const sigset_t *set);
/* One-line summary for STATUS= and logs. */
void ferry_lifecycle_status(struct ferry_daemon *d, char *buf, size_t len);

#endif

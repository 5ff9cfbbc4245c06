/* ferryd: the daemon's shared state, every module's types at once.
 *
 * Each concept has its own header: daemon.h (the top-level object), gen.h
 * (configuration generations), worker.h (one event-loop thread's state),
 * bound.h (listening sockets), reload.h (the reload future). Include those
 * you need; this umbrella is for modules that touch all of them.
 */
#ifndef FERRYD_H
#define FERRYD_H

#include "bound.h"
#include "daemon.h"
#include "gen.h"
#include "reload.h"
#include "worker.h"

#endif

/* ferryd: reloading the configuration in-process (see reload.c). */
#ifndef FERRY_RELOAD_H
#define FERRY_RELOAD_H

#include "asynccore/blocking.h"
#include "asynccore/runtime.h"
#include "ferry_config.h"

struct ferry_daemon;

/* A future that reloads the configuration: reads and checks the file on the
 * blocking pool, builds the new generation, binds new listeners, closes
 * removed ones, swaps the generation on every worker. Output: err (0, or -1
 * with every message in errs, each "FILE:LINE: message"). Poll it on worker 0. */
struct ferry_reload {
    struct ac_future base;
    struct ferry_daemon *d;
    int state;
    struct ac_blocking job;
    struct ferry_config_errors errs;
    struct ferry_config_errors warns; /* what the reload warns about (also logged) */
    int err;
};
void ferry_reload_init(struct ferry_reload *r, struct ferry_daemon *d);

/* Frees a finished (or dropped) reload's errors and warnings. */
static inline void ferry_reload_free_msgs(struct ferry_reload *r)
{
    ferry_config_errors_free(&r->errs);
    ferry_config_errors_free(&r->warns);
}

#endif

/* ferryd: active health checks (see health.c). */
#ifndef FERRY_HEALTH_H
#define FERRY_HEALTH_H

#include "gen.h"

/* Starts one check task per server of every backend with health_check on.
 * They end when g->stop is notified. Returns 0 or -errno. */
int ferry_health_start(struct ferry_gen *g);

/* The same for one server (a discovered one that joined while g is live).
 * 0 when the backend has no checks; else 0 or -errno. */
int ferry_health_start_server(struct ferry_gen *g, size_t bidx, size_t sidx);

#endif

/* ferryd: running out of local resources (see pressure.c). */
#ifndef FERRY_PRESSURE_H
#define FERRY_PRESSURE_H

#include <stdbool.h>
#include <stdint.h>

/* One worker's state (embedded in struct ferry_worker, touched only by its
 * own thread). */
struct ferry_pressure {
    uint64_t until_ms;    /* accepting pauses until then (0: not paused) */
    unsigned backoff_ms;  /* next pause: 10 ms doubling to 1 s; 0 after a success */
    uint64_t warn_next_ms; /* no warning line before then */
    uint64_t warn_count;   /* occurrences not reported yet */
};

/* Errors that say this host ran out of something (descriptors, buffers,
 * memory, local ports), not that the peer failed. */
bool ferry_pressure_is_local(int err);

/* A local resource ran out (err < 0) while doing `what`: pause this worker's
 * accepting, and warn at most every 5 s, one line with a count. */
void ferry_pressure_hit(struct ferry_pressure *p, uint64_t now_ms, int err, const char *what);

/* A connect went through: the next pause starts short again. */
static inline void ferry_pressure_ok(struct ferry_pressure *p) { p->backoff_ms = 0; }

#endif

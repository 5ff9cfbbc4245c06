/* ferryd: a worker's free list of same-size objects (connections, their phases).
 *
 * A short connection allocates its struct and a phase or two and frees them
 * a few milliseconds later, on the same worker: a free list of that worker
 * makes each pair a pointer swap instead of a trip through malloc (glibc's
 * calloc skips its per-thread cache altogether). Only the owning worker's
 * thread touches the list, so there is no lock and no atomic: get and put
 * from any other thread (runtime teardown off the worker, a stray drop) fall
 * back to malloc and free. At most `max` objects are kept: what a burst
 * left beyond that goes back to malloc, for the connections that stay to
 * reuse (a cached phase is memory no idle connection uses).
 * One cache holds objects of one size (the caller's, passed to each call).
 */
#ifndef FERRY_OBJCACHE_H
#define FERRY_OBJCACHE_H

#include <stddef.h>

#include "asynccore/runtime.h"

/* The bounds of a worker's caches: connections, and the phases (a
 * connection holds one only while it handshakes or connects). */
#define FERRY_OBJCACHE_MAX 256u
#define FERRY_OBJCACHE_PHASE_MAX 32u

struct ferry_objcache {
    void *head; /* free list, linked through each object's first word */
    unsigned n;
    unsigned max; /* 0: keeps nothing */
};

/* size bytes, uninitialised: from the cache on owner's thread, else malloc.
 * NULL on allocation failure. */
void *ferry_objcache_get(struct ferry_objcache *c, struct ac_worker *owner, size_t size);
/* Gives p (size bytes, from ferry_objcache_get or malloc) back: cached on
 * owner's thread while there is room, else freed. NULL is a no-op. */
void ferry_objcache_put(struct ferry_objcache *c, struct ac_worker *owner, void *p, size_t size);
/* Frees every cached object (worker teardown, after its tasks are gone). */
void ferry_objcache_clear(struct ferry_objcache *c);

#endif

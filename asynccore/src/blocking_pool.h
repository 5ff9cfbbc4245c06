/* Internal contract between runtime.c (owner) and blocking.c (the pool). */
#ifndef AC_BLOCKING_POOL_H
#define AC_BLOCKING_POOL_H

struct ac_runtime;
struct ac_blocking_pool;

/* Creates a pool of at most max_threads threads, started lazily on demand.
 * Returns NULL on allocation failure. */
struct ac_blocking_pool *ac__blocking_pool_new(unsigned max_threads);
/* Stops the pool: queued jobs are cancelled (their futures see -ECANCELED if
 * still alive), running jobs finish, threads are joined, memory freed. */
void ac__blocking_pool_free(struct ac_blocking_pool *pool);
/* The runtime's pool (implemented in runtime.c). */
struct ac_blocking_pool *ac__runtime_blocking_pool(struct ac_runtime *rt);

#endif

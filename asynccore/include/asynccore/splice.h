/* asynccore: zero-copy socket-to-socket transfer through a pipe (Linux splice(2)).
 *
 * Contract:
 * - Each worker keeps a bounded pool of pipes (at most AC_PIPE_POOL_MAX idle
 *   ones). A copy takes a pipe only while bytes are in flight (read from the
 *   source, not yet written to the destination) and gives it back as soon as
 *   the pipe is empty again, so an idle connection holds no pipe.
 * - A pipe given back with bytes still in it is closed, never pooled: the
 *   next user must find it empty.
 * - Splice applies only between two plain socket streams; ac_splice_possible()
 *   says so. Where it does not apply, or splice(2) refuses a descriptor
 *   (EINVAL), or no pipe can be made (EMFILE: each pooled pipe holds two
 *   descriptors), ac_copy falls back to its buffer copy.
 * - splice(2) into a socket whose peer is gone may raise SIGPIPE (it has no
 *   MSG_NOSIGNAL): a process that splices must ignore SIGPIPE (ferryd does).
 * - Outside Linux the pool is always empty and ac_splice_possible() is false.
 */
#ifndef ASYNCCORE_SPLICE_H
#define ASYNCCORE_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "asynccore/runtime.h"
#include "asynccore/stream.h"

/* Idle pipes a worker keeps for reuse. */
#define AC_PIPE_POOL_MAX 32u

struct ac_pipe {
    int rfd, wfd; /* -1, -1 when none */
};

struct ac_pipe_pool {
    struct ac_pipe idle[AC_PIPE_POOL_MAX];
    unsigned n_idle;
    unsigned n_out;     /* pipes handed out and not yet given back */
    unsigned long made; /* pipes created over the pool's life (tests, stats) */
};

/* The calling worker's pool. */
struct ac_pipe_pool *ac_worker_pipe_pool(struct ac_worker *w);

/* Takes an empty pipe (pooled or new, non-blocking, close-on-exec).
 * Returns 0 or -errno. */
int ac_pipe_get(struct ac_pipe_pool *pool, struct ac_pipe *p);
/* Gives p back: pooled if in_pipe is 0 and the pool has room, closed
 * otherwise (also when pool is NULL). p is reset to -1, -1. No-op on a pipe
 * that is none. */
void ac_pipe_put(struct ac_pipe_pool *pool, struct ac_pipe *p, size_t in_pipe);
/* Closes every idle pipe (worker teardown). */
void ac_pipe_pool_clear(struct ac_pipe_pool *pool);

/* Largest transfer one splice(2) asks for (the default pipe capacity). */
#define AC_SPLICE_CHUNK (64u * 1024u)

/* One splice(2) from descriptor `from` to descriptor `to`, non-blocking.
 * Returns bytes moved (0: EOF on a socket source) or -errno. */
ssize_t ac_splice_move(int from, int to, size_t len);

/* True if bytes can be spliced from `from` to `to` (both plain sockets). */
bool ac_splice_possible(const struct ac_stream *from, const struct ac_stream *to);

#endif

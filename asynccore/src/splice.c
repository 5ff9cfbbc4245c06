/* asynccore: the per-worker pipe pool and the splice(2) primitive.
 *
 * Pipes are the kernel's carrier for zero-copy transfer between two sockets:
 * splice(socket -> pipe) then splice(pipe -> socket) moves page references,
 * never the bytes, through user space. A pipe costs two descriptors and its
 * buffer pages, so it is lent only while bytes are in flight and comes back
 * to the worker's pool when empty (HAProxy's pipe pool, src/pipe.c, works the
 * same way). The pool is bounded: above AC_PIPE_POOL_MAX idle pipes, a
 * returned pipe is closed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* splice(2), pipe2(2) */
#endif
#include "asynccore/splice.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

struct ac_pipe_pool *ac_worker_pipe_pool(struct ac_worker *w) { return &w->pipes; }

static void pipe_close(struct ac_pipe *p)
{
    if (p->rfd >= 0)
        close(p->rfd);
    if (p->wfd >= 0)
        close(p->wfd);
    p->rfd = p->wfd = -1;
}

#ifdef __linux__

int ac_pipe_get(struct ac_pipe_pool *pool, struct ac_pipe *p)
{
    if (pool->n_idle > 0) {
        *p = pool->idle[--pool->n_idle];
        pool->n_out++;
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    p->rfd = fds[0];
    p->wfd = fds[1];
    pool->n_out++;
    pool->made++;
    return 0;
}

ssize_t ac_splice_move(int from, int to, size_t len)
{
    for (;;) {
        ssize_t n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

bool ac_splice_possible(const struct ac_stream *from, const struct ac_stream *to)
{
    return ac_stream_is_socket(from) && ac_stream_is_socket(to);
}

#else

int ac_pipe_get(struct ac_pipe_pool *pool, struct ac_pipe *p)
{
    (void)pool;
    p->rfd = p->wfd = -1;
    return -ENOSYS;
}

ssize_t ac_splice_move(int from, int to, size_t len)
{
    (void)from, (void)to, (void)len;
    return -ENOSYS;
}

bool ac_splice_possible(const struct ac_stream *from, const struct ac_stream *to)
{
    (void)from, (void)to;
    return false;
}

#endif

void ac_pipe_put(struct ac_pipe_pool *pool, struct ac_pipe *p, size_t in_pipe)
{
    if (p->rfd < 0)
        return;
    if (pool == NULL) {
        pipe_close(p);
        return;
    }
    pool->n_out--;
    /* A pipe with bytes left in it would hand them to the next connection. */
    if (in_pipe == 0 && pool->n_idle < AC_PIPE_POOL_MAX) {
        pool->idle[pool->n_idle++] = *p;
        p->rfd = p->wfd = -1;
        return;
    }
    pipe_close(p);
}

void ac_pipe_pool_clear(struct ac_pipe_pool *pool)
{
    while (pool->n_idle > 0)
        pipe_close(&pool->idle[--pool->n_idle]);
}

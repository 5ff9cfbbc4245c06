/* asynccore internal: the OS poller interface (one small file per backend,
 * like Redis ae_epoll.c / ae_kqueue.c).
 *
 * A poller watches fds for both directions, edge-triggered, and reports
 * readiness as AC_READABLE / AC_WRITABLE / AC_READ_CLOSED / AC_WRITE_CLOSED /
 * AC_ERROR bits against the 64-bit key given at add(). It also owns the
 * cross-thread wake-up mechanism: wake() may be called from any thread and
 * makes a concurrent or later wait() return; wake-up events are consumed
 * inside wait() and never reported.
 *
 * Each backend defines its functions under its own prefix (ac__epoll_*,
 * ac__poll_*, ac__io_uring_*, ac__kqueue_*); every backend the platform has
 * is compiled in and described by a struct ac__backend (backend.c), and each
 * worker calls its runtime's through that table. Everything but wake() runs
 * on the owning worker's thread.
 */
#ifndef AC_POLLER_H
#define AC_POLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/backend.h"

struct ac__poller;

struct ac__poll_event {
    uint64_t key;
    uint32_t ready;
};

/* Directions for rearm(). */
enum { AC__WANT_READ = 1u << 0, AC__WANT_WRITE = 1u << 1 };

#define AC__POLLER_DECLARE(p)                                                          \
    /* Creates the poller and its wake-up mechanism. Returns 0 or -errno. */           \
    int ac__##p##_new(struct ac__poller **out);                                        \
    void ac__##p##_free(struct ac__poller *pl);                                        \
    /* flags: AC_REG_* from reactor.h. */                                               \
    int ac__##p##_add(struct ac__poller *pl, int fd, uint64_t key, unsigned flags);    \
    int ac__##p##_del(struct ac__poller *pl, int fd);                                  \
    /* Directions whose readiness the reactor cleared and wants reported again.     \
     * A no-op where the kernel is edge-triggered (epoll, kqueue); the poll(2)      \
     * backend emulates edge-triggering with it. */                                    \
    int ac__##p##_rearm(struct ac__poller *pl, int fd, uint64_t key, unsigned want);   \
    /* Waits up to timeout_ms (-1: forever). Returns the number of events written   \
     * (EINTR counts as 0) or -errno. */                                               \
    int ac__##p##_wait(struct ac__poller *pl, struct ac__poll_event *ev, int max,     \
                       int timeout_ms);                                                \
    /* Thread-safe. Returns 0 or -errno. */                                            \
    int ac__##p##_wake(struct ac__poller *pl);

AC__POLLER_DECLARE(epoll)
AC__POLLER_DECLARE(poll)
AC__POLLER_DECLARE(kqueue)

AC__POLLER_DECLARE(io_uring)
/* io_uring only: removes fd's registration and closes fd, both queued with
 * the turn's batch (0, or -errno: then nothing was queued). */
int ac__io_uring_close(struct ac__poller *pl, int fd);
/* io_uring only: submits what is queued now (a caller outside the loop). */
int ac__io_uring_flush(struct ac__poller *pl);
/* io_uring only: the ring's completion operations (uring_op.h), or NULL
 * where the kernel gave no buffer ring. */
struct ac__uring *ac__io_uring_ops(struct ac__poller *pl);
/* io_uring only: ends fd's readiness poll, keeping its registration (its
 * owner moved to completion operations). 0 or -errno. */
int ac__io_uring_unpoll(struct ac__poller *pl, int fd);
/* io_uring only: watches fd's readiness again after unpoll (a no-op if it
 * was not ended). 0 or -errno. */
int ac__io_uring_repoll(struct ac__poller *pl, int fd);

/* A poller backend: its functions and the facts the reactor and the streams
 * rely on. */
struct ac__backend {
    enum ac_backend id;
    const char *name;
    /* Every new arrival of data or buffer room is a new event, so a short
     * read or write may clear readiness without the EAGAIN call. */
    bool edge;
    /* Closing the descriptor ends its registration (epoll, kqueue): no del()
     * needed before close(2). */
    bool close_drops;
    int (*new)(struct ac__poller **out);
    void (*free)(struct ac__poller *pl);
    int (*add)(struct ac__poller *pl, int fd, uint64_t key, unsigned flags);
    int (*del)(struct ac__poller *pl, int fd);
    /* NULL where the kernel is edge-triggered: nothing to call. */
    int (*rearm)(struct ac__poller *pl, int fd, uint64_t key, unsigned want);
    int (*wait)(struct ac__poller *pl, struct ac__poll_event *ev, int max, int timeout_ms);
    int (*wake)(struct ac__poller *pl);
    /* Where registrations and closes are queued until the loop turn submits
     * them (io_uring): del + close in one queued step, and submitting now,
     * for callers outside the worker's loop (whose close must be done when
     * it returns). NULL elsewhere. */
    int (*close)(struct ac__poller *pl, int fd);
    int (*flush)(struct ac__poller *pl);
};

/* The compiled-in backend for id, or NULL. */
const struct ac__backend *ac__backend_get(enum ac_backend id);

/* The backend a runtime asked for `requested` uses (asynccore/backend.h:
 * AUTO consults AC_BACKEND, then the build default). *automatic: the choice
 * was auto's, so a refused io_uring may fall back to epoll. Returns 0,
 * -EINVAL (AC_BACKEND names no backend) or -ENOSYS (not compiled in). */
int ac__backend_choose(enum ac_backend requested, const struct ac__backend **be, bool *automatic);

#endif

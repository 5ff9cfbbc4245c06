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
 * ac__poll_*, ac__kqueue_*) so that the kqueue file can be compiled next to
 * another backend without clashing; AC__POLLER(fn) names the selected one.
 * Everything but wake() runs on the owning worker's thread.
 */
#ifndef AC_POLLER_H
#define AC_POLLER_H

#include <stdint.h>

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

#if defined(AC_REACTOR_EPOLL)
#define AC__POLLER(fn) ac__epoll_##fn
#define AC__POLLER_NAME "epoll"
#elif defined(AC_REACTOR_KQUEUE)
#define AC__POLLER(fn) ac__kqueue_##fn
#define AC__POLLER_NAME "kqueue"
#elif defined(AC_REACTOR_POLL)
#define AC__POLLER(fn) ac__poll_##fn
#define AC__POLLER_NAME "poll"
#endif

#endif

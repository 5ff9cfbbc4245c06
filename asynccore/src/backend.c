/* asynccore: the table of compiled-in poller backends and the choice of one
 * per runtime (asynccore/backend.h).
 */
#include "asynccore/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "poller.h"

/* The build's default for AC_BACKEND_AUTO (meson -Dreactor); AUTO: the
 * platform's preferred backend. */
#ifndef AC__DEFAULT_BACKEND
#define AC__DEFAULT_BACKEND AC_BACKEND_AUTO
#endif

/* What auto prefers where both are available: io_uring. Measured beside
 * epoll in one run (tests/bench/RESULTS.md, "io_uring"): with copies in ring
 * mode (asynccore/copy.h) a kept-alive request costs 0.1 system call instead
 * of 4.2 and 1.55 times epoll's requests per CPU-second, a short
 * connection 5.4 calls instead of 14.5 and about the same CPU, bulk
 * transfers as fast or faster (both splice).
 * Where the kernel refuses io_uring, auto runs on epoll (runtime.c). */
#define AC__LINUX_PREFERRED AC_BACKEND_IO_URING

#ifdef AC__HAVE_EPOLL
static const struct ac__backend epoll_backend = {
    AC_BACKEND_EPOLL, "epoll", true, true, ac__epoll_new, ac__epoll_free, ac__epoll_add,
    ac__epoll_del, NULL, ac__epoll_wait, ac__epoll_wake, NULL, NULL,
};
#endif

#ifdef AC__HAVE_IO_URING
static const struct ac__backend io_uring_backend = {
    AC_BACKEND_IO_URING, "io_uring", true, false, ac__io_uring_new, ac__io_uring_free,
    ac__io_uring_add, ac__io_uring_del, NULL, ac__io_uring_wait, ac__io_uring_wake,
    ac__io_uring_close, ac__io_uring_flush,
};
#endif

#ifdef AC__HAVE_KQUEUE
static const struct ac__backend kqueue_backend = {
    AC_BACKEND_KQUEUE, "kqueue", true, true, ac__kqueue_new, ac__kqueue_free, ac__kqueue_add,
    ac__kqueue_del, NULL, ac__kqueue_wait, ac__kqueue_wake, NULL, NULL,
};
#endif

static const struct ac__backend poll_backend = {
    AC_BACKEND_POLL, "poll", false, false, ac__poll_new, ac__poll_free, ac__poll_add,
    ac__poll_del, ac__poll_rearm, ac__poll_wait, ac__poll_wake, NULL, NULL,
};

static const char *const names[] = {
    [AC_BACKEND_AUTO] = "auto",         [AC_BACKEND_EPOLL] = "epoll",
    [AC_BACKEND_IO_URING] = "io_uring", [AC_BACKEND_POLL] = "poll",
    [AC_BACKEND_KQUEUE] = "kqueue",
};

const char *ac_backend_name(enum ac_backend b)
{
    return (unsigned)b < sizeof(names) / sizeof(names[0]) ? names[b] : "?";
}

int ac_backend_parse(const char *name, enum ac_backend *out)
{
    for (unsigned i = 0; name != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum ac_backend)i;
            return 0;
        }
    }
    return -EINVAL;
}

const struct ac__backend *ac__backend_get(enum ac_backend id)
{
    switch (id) {
#ifdef AC__HAVE_EPOLL
    case AC_BACKEND_EPOLL:
        return &epoll_backend;
#endif
#ifdef AC__HAVE_IO_URING
    case AC_BACKEND_IO_URING:
        return &io_uring_backend;
#endif
#ifdef AC__HAVE_KQUEUE
    case AC_BACKEND_KQUEUE:
        return &kqueue_backend;
#endif
    case AC_BACKEND_POLL:
        return &poll_backend;
    default:
        return NULL;
    }
}

bool ac_backend_available(enum ac_backend b)
{
    return b == AC_BACKEND_AUTO || ac__backend_get(b) != NULL;
}

enum ac_backend ac_backend_preferred(void)
{
    if (AC__DEFAULT_BACKEND != AC_BACKEND_AUTO)
        return AC__DEFAULT_BACKEND;
    if (ac_backend_available(AC__LINUX_PREFERRED))
        return AC__LINUX_PREFERRED;
    if (ac_backend_available(AC_BACKEND_EPOLL))
        return AC_BACKEND_EPOLL;
    if (ac_backend_available(AC_BACKEND_KQUEUE))
        return AC_BACKEND_KQUEUE;
    return AC_BACKEND_POLL;
}

int ac__backend_choose(enum ac_backend requested, const struct ac__backend **be, bool *automatic)
{
    *automatic = false;
    if (requested == AC_BACKEND_AUTO) {
        const char *env = getenv("AC_BACKEND");
        if (env != NULL && env[0] != '\0') {
            if (ac_backend_parse(env, &requested) < 0)
                return -EINVAL;
        }
    }
    if (requested == AC_BACKEND_AUTO) {
        requested = ac_backend_preferred();
        *automatic = true;
    }
    *be = ac__backend_get(requested);
    return *be != NULL ? 0 : -ENOSYS;
}

/* asynccore: the kernel event interface a runtime's reactors use, chosen per
 * runtime when it is created.
 *
 * Every backend the platform has is compiled in (Linux: epoll, poll(2) and,
 * where liburing was found at build time, io_uring; BSD: kqueue and poll(2)).
 * The choice is struct ac_runtime_opts.backend:
 *   - a named backend is used or the runtime is not created (ac_runtime_new
 *     fails with its errno: ENOSYS if not compiled in, EPERM/ENOSYS/... if the
 *     kernel refuses io_uring: kernel.io_uring_disabled, seccomp);
 *   - AC_BACKEND_AUTO takes the AC_BACKEND environment variable if it is set
 *     (a backend name, then treated as named; like libevent's EVENT_NO*), else
 *     the build's default (meson -Dreactor), else the platform's preferred
 *     one (ac_backend_preferred). Where auto would use io_uring and the
 *     kernel refuses it, the runtime uses epoll instead and
 *     ac_runtime_backend_fallback() reports why, so the caller can warn once.
 * ac_runtime_backend() says which one is in use.
 *
 * Ownership under io_uring. What the kernel holds is described by requests
 * in the worker's ring, and the rule is: nothing a request may still write
 * to (or read from) is freed before its completion arrives.
 *   - Readiness: multishot polls lend the kernel no memory (a token), so a
 *     future dropped while it waits only drops its waker, as on epoll; a
 *     registration's poll is cancelled when the registration goes, and a
 *     completion for a cancelled or reused token is recognised by its
 *     generation and ignored.
 *   - Completion operations (a copy between plain sockets in ring mode,
 *     asynccore/copy.h): a receive takes a buffer from the worker's
 *     provided buffer ring only when data arrives, and a send reads the
 *     buffer it was given. Each operation lives in a slot the worker owns,
 *     not in the future: dropping the future cancels the operation, and
 *     the slot with its buffer is freed when the completion arrives. At
 *     teardown the worker cancels what is left and waits for every
 *     completion before it frees a slot or a buffer.
 *     ac_reactor_operations() counts the slots not yet given back.
 * Closes and cancels queued by a loop turn are submitted with its one
 * io_uring_enter (at once from outside the worker's loop, when a loop
 * returns and when the runtime is freed), so a descriptor closed through
 * ac_io_close is closed by then. Accepts, connects and shutdowns are
 * readiness plus one system call on every backend.
 */
#ifndef ASYNCCORE_BACKEND_H
#define ASYNCCORE_BACKEND_H

#include <stdbool.h>

enum ac_backend {
    AC_BACKEND_AUTO = 0,
    AC_BACKEND_EPOLL,
    AC_BACKEND_IO_URING,
    AC_BACKEND_POLL,
    AC_BACKEND_KQUEUE,
};

/* "auto", "epoll", "io_uring", "poll", "kqueue" ("?" for anything else). */
const char *ac_backend_name(enum ac_backend b);

/* Parses one of the names above. Returns 0 or -EINVAL. */
int ac_backend_parse(const char *name, enum ac_backend *out);

/* Whether b is compiled into this build (AUTO: always). */
bool ac_backend_available(enum ac_backend b);

/* What AC_BACKEND_AUTO resolves to on this build, the environment aside
 * (before any fallback). */
enum ac_backend ac_backend_preferred(void);

#endif

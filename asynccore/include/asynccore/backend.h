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
 * to is freed before its completion arrives. Today's backend lends the
 * kernel no memory at all: its requests are multishot polls (a token, no
 * buffer), cancels and closes, so a future dropped while it waits only
 * drops its waker, as on epoll; its registration's poll is cancelled when
 * the registration goes, and a completion for a cancelled or reused token
 * is recognised by its generation and ignored. Closes and cancels queued
 * by a loop turn are submitted with its one io_uring_enter, at once from
 * outside the worker's loop, when a loop returns and when the runtime is
 * freed, so a descriptor closed through ac_io_close is closed by then.
 * Completion operations that lend memory (a recv or send buffer, an address)
 * must keep it in an operation slot owned by the worker, not by the future:
 * dropping the future cancels the operation, and the slot and its buffer
 * are freed when the completion arrives (teardown waits for every one).
 * Those are not built: reads, writes, accepts and connects are readiness
 * plus one system call on every backend.
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

/* asynccore: the reactor and its waker map.
 *
 * Each worker owns a reactor: an OS poller (epoll, io_uring, kqueue or
 * poll(2); chosen per runtime, asynccore/backend.h) plus the waker map, a
 * slab of registrations indexed by token. The token given to the OS is
 * (index | generation << 32), so an event for a slot that was freed and reused
 * is recognised as stale and dropped. Slots are freed only after the current
 * batch of events has been dispatched.
 *
 * Registrations are edge-triggered, for read and write at once (plus
 * read-closed / hang-up / error). Readiness is kept per direction with one
 * waker per direction. A direction's readiness is cleared only by
 * ac_io_clear_ready() after an operation returned EAGAIN, and only if no newer
 * event arrived since the readiness was observed (tick comparison).
 *
 * Everything here runs on the owning worker's thread only.
 */
#ifndef ASYNCCORE_REACTOR_H
#define ASYNCCORE_REACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/waker.h"

struct ac_worker;

/* Readiness bits. */
enum {
    AC_READABLE = 1u << 0,
    AC_WRITABLE = 1u << 1,
    AC_READ_CLOSED = 1u << 2,  /* peer shut its write half (EPOLLRDHUP) */
    AC_WRITE_CLOSED = 1u << 3, /* hang-up: we can no longer write */
    AC_ERROR = 1u << 4,
};

enum ac_direction { AC_DIR_READ = 0, AC_DIR_WRITE = 1 };

/* Registration flags. */
enum {
    /* Several workers register the same listening socket: wake only one of
     * them per event (EPOLLEXCLUSIVE where available). */
    AC_REG_EXCLUSIVE = 1u << 0,
};

/* A handle to a registration (embedded by streams and listeners). */
struct ac_io {
    struct ac_worker *worker; /* NULL: not registered */
    uint32_t index;
    uint32_t generation;
    int fd;
};

/* What ac_io_poll_ready observed: the readiness bits relevant to the direction
 * and the event tick they were set at (pass it back to ac_io_clear_ready). */
struct ac_ready_event {
    uint32_t ready;
    uint32_t tick;
};

/* Registers fd (already non-blocking) with w's reactor. Returns 0 or -errno.
 * io_uring checks the descriptor only when the loop turn submits the batch:
 * a bad one registers and then reports AC_ERROR in both directions. */
int ac_io_register(struct ac_worker *w, int fd, unsigned flags, struct ac_io *io);

/* Removes the registration (wakers dropped, slot freed after the current
 * batch). Does not close fd. Safe on an unregistered io. */
void ac_io_deregister(struct ac_io *io);

/* Deregisters and closes fd, the registered descriptor, which nothing else
 * may hold (no dup, no other process): with epoll and kqueue closing it is
 * the deregistration, so this costs one system call. Safe on an
 * unregistered io (then only closes fd, if >= 0). */
void ac_io_close(struct ac_io *io, int fd);

/* Ready if the direction has readiness (for AC_DIR_READ: READABLE,
 * READ_CLOSED or ERROR; for AC_DIR_WRITE: WRITABLE, WRITE_CLOSED or ERROR),
 * filling *ev. Otherwise stores a clone of cx->waker for that direction,
 * re-checks readiness, and returns Pending. */
ac_poll_t ac_io_poll_ready(struct ac_io *io, struct ac_context *cx,
                           enum ac_direction dir, struct ac_ready_event *ev);

/* Clears the direction's readiness observed in ev (after EAGAIN), unless a
 * newer event arrived since ev.tick. Read-closed and error are never cleared. */
void ac_io_clear_ready(struct ac_io *io, enum ac_direction dir, struct ac_ready_event ev);

/* Number of live registrations on w (for tests: nothing leaks). */
unsigned ac_reactor_registrations(struct ac_worker *w);
/* Completion operations of w (io_uring: the slots a copy in ring mode
 * uses, asynccore/copy.h) not yet given back: in the kernel, cancelled and
 * waiting for their completion, or waiting for their owner. 0 on other
 * backends. For tests: nothing leaks. */
unsigned ac_reactor_operations(struct ac_worker *w);

#endif

/* asynccore internal: completion operations on the io_uring backend (a
 * worker's ring): recv into the worker's provided buffer ring, and send.
 *
 * An operation lives in a slot (struct ac__uop) owned by the worker, not by
 * the future that started it, because the kernel may write to what it holds
 * until the operation's completion arrives:
 *   - BUSY: submitted (or queued for the turn's submission); the kernel owns
 *     the slot, and for a send the buffer it reads from;
 *   - DONE: the completion arrived and waits for its owner (res, and for a
 *     recv the buffer the kernel filled, now the slot's);
 *   - ORPHAN: its owner dropped it while BUSY. A cancel is queued; the slot
 *     and whatever buffer it holds are freed when the completion arrives,
 *     never before (ASan would see the kernel write into freed memory).
 * So an owner releases a slot with ac__uop_release() in any state, and
 * nothing else: a DONE slot is freed at once, a BUSY one becomes an orphan.
 * The worker's teardown (ac__uring_free) cancels every operation still in
 * the kernel and waits for all of their completions before it frees a
 * slot or a buffer.
 *
 * Receives are multishot: armed once, a receive takes a buffer from the
 * worker's provided buffer ring for each arrival of data (so a connection
 * waiting for data holds none) until EOF, an error or a cancel. The filled
 * buffers queue in the slot, in order, until the owner takes them. Once
 * AC__UOP_PAUSE_AT of them wait, the receive is paused (cancelled) and
 * armed again by the take that empties the queue: a peer that does not
 * read holds a few buffers of its sender, never an unbounded queue. A
 * buffer leaves the ring with its completion and the ring entry is
 * refilled at once from the worker's cache of free buffers, so the ring
 * stays full however long one is held. A receive the ring could not serve
 * (more arrivals in one kernel pass than it has entries: -ENOBUFS ends a
 * multishot receive) is armed again after the reap, at most a ring's worth
 * per turn (a burst of thousands of arrivals does not become thousands of
 * failing receives per turn), and wakes nobody meanwhile.
 *
 * Everything runs on the owning worker's thread.
 */
#ifndef AC_URING_OP_H
#define AC_URING_OP_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/waker.h"

struct io_uring;
struct io_uring_cqe;
struct ac__uring;

/* Bytes per provided buffer: the most one arrival of data fills. */
#define AC__URING_BUF_SIZE (16u * 1024u)
/* Received buffers waiting in a slot at which its receive pauses. */
#define AC__UOP_PAUSE_AT 2u

enum ac__uop_state { AC__UOP_BUSY = 1, AC__UOP_DONE, AC__UOP_ORPHAN };
enum ac__uop_kind { AC__UOP_RECV = 1, AC__UOP_SEND };

struct ac__uop_queue; /* a receive's filled buffers (uring_op.c) */

struct ac__uop {
    struct ac_waker waker; /* the owner's task, woken at each completion */
    struct ac__uring *u;   /* the worker's ring it belongs to */
    union {
        unsigned char *buf;   /* send: its bytes; receive: the first filled buffer (or NULL) */
        struct ac__uop *next; /* free: the worker's free list */
    };
    union {
        struct {
            uint32_t off, len; /* send: bytes [off, len) of buf still to go */
        };
        struct ac__uop_queue *q; /* receive: filled buffers after the first (or NULL) */
    };
    int32_t res;   /* send DONE: bytes (all) or -errno; receive: the error that ended it */
    int fd;
    uint32_t blen; /* receive: bytes in buf */
    uint8_t kind, state;
    uint8_t flags; /* receive: F_* (uring_op.c) */
};

/* Creates a worker's operation state on ring (registers the buffer ring).
 * Returns 0 or -errno (then io_uring is usable for readiness only). */
int ac__uring_new(struct io_uring *ring, struct ac__uring **out);
/* Cancels what is in the kernel, waits for every completion, frees all.
 * The ring must still be open. Safe on NULL. */
void ac__uring_free(struct ac__uring *u);

/* A completion whose user data is an operation's (ac__uop_tag): records it,
 * frees an orphan, or wakes the owner. */
void ac__uring_complete(struct ac__uring *u, uint64_t data, const struct io_uring_cqe *cqe);
/* The poller's own user data: the wake-up eventfd's poll, and requests
 * whose completions mean nothing (cancels, closes). */
#define AC__URING_WAKE UINT64_MAX
#define AC__URING_IGNORE (UINT64_MAX - 1)
/* After a reap: arms again receives the ring could not serve. */
void ac__uring_after_reap(struct ac__uring *u);
/* Tags user data as an operation's (bit 63: user-space pointers never have
 * it, and the reactor's registration tokens keep it clear). */
#define AC__UOP_TAG (UINT64_C(1) << 63)
static inline bool ac__uop_tagged(uint64_t data) { return (data & AC__UOP_TAG) != 0; }

/* Arms a multishot receive on fd. *op: the slot, BUSY. Returns 0 or
 * -errno (-ENOMEM, or -EBUSY when no submission entry). */
int ac__uop_recv(struct ac__uring *u, int fd, struct ac__uop **op);
/* The next received bytes, in order: 1 with *buf (the caller's now: give
 * it back with ac__uring_buf_put) and *len; 0 at EOF; -errno for the
 * error that ended the receive; -EAGAIN when nothing is there yet (the
 * caller registers its waker in op->waker); -ECANCELED once a stopped
 * receive is over and drained. */
int ac__uop_recv_take(struct ac__uop *op, unsigned char **buf, uint32_t *len);
/* Filled buffers waiting in a receive (tests: the pause bounds them). */
unsigned ac__uop_queued(const struct ac__uop *op);
/* Ends the receive for good, keeping what it received: takes go on
 * returning it, then -ECANCELED once the kernel is done with the slot. */
void ac__uop_recv_stop(struct ac__uop *op);
/* Starts sending buf[0..len) on fd, all of it (short sends are continued);
 * the slot takes ownership of buf (a buffer from ac__uring_buf_*), also on
 * failure. Returns 0 or -errno. */
int ac__uop_send(struct ac__uring *u, int fd, unsigned char *buf, uint32_t len, struct ac__uop **op);
/* Gives the slot back (see the ownership rule above), from any thread
 * while its worker is not running (teardown) or on that worker. NULL is a
 * no-op. */
void ac__uop_release(struct ac__uop *op);

/* A buffer of AC__URING_BUF_SIZE bytes back to the worker (refills the ring
 * first, then the cache, else free). NULL is a no-op. */
void ac__uring_buf_put(struct ac__uring *u, unsigned char *buf);

/* Operations in the kernel (BUSY or ORPHAN), and slots in use (tests). */
unsigned ac__uring_inflight(const struct ac__uring *u);
unsigned ac__uring_slots(const struct ac__uring *u);

#endif

/* asynccore: copying between streams.
 *
 * ac_copy moves bytes from one stream to another until EOF, then shuts the
 * destination's write half (the half-close is passed on). It holds no buffer
 * while idle: it reads into the worker's scratch buffer and writes straight
 * through; only when the destination accepts part of the data does it
 * allocate a buffer (bufsize) for the remainder, and it frees that buffer as
 * soon as it is drained. So an idle proxied connection costs no buffer memory.
 *
 * With splice enabled (ac_copy_use_splice, or ac_copy_splice_auto for bulk
 * transfers only) and both streams plain sockets,
 * bytes go socket -> pipe -> socket through splice(2) and never enter user
 * space; the pipe comes from the worker's pool only while bytes are in
 * flight (asynccore/splice.h). Counting, activity, EOF, errors and the
 * cooperative budget behave as in the buffer copy, which remains the
 * fallback (TLS or other stream kinds, splice refused with EINVAL).
 *
 * On the io_uring backend (where the kernel gave the worker a provided
 * buffer ring) a copy between two plain sockets registered on the polling
 * worker uses completion operations instead ("ring mode", chosen at the
 * first poll, in the buffer copy's place): a multishot receive waits in
 * the kernel without a buffer and is handed one (16 KiB) from the worker's
 * buffer ring each time data arrives; that very buffer is then sent (no
 * copy), one send at a time, and goes back to the worker when the send
 * completes. Reads, writes and the waits for them cost no system call of
 * their own: the worker's loop submits them and reaps their completions
 * in one io_uring_enter per turn. A destination that does not read
 * pauses the receive after a few buffers (the backlog stays in the
 * kernel's socket buffers, as on epoll).
 * With splice-auto, bulk data (a receive that fills bufsize) still goes
 * through the splice mode, on readiness, and small messages come back to
 * ring mode. The source's readiness poll is ended while ring mode reads
 * it (no wake-ups for nothing) and re-armed by the first task that waits
 * for readiness on it. Dropping the copy cancels what it has in the kernel; the buffers
 * the kernel may still touch stay alive until the completions arrive
 * (asynccore/backend.h, "Ownership under io_uring").
 *
 * ac_copy_bidi runs two copies (a->b and b->a) and is ready when both
 * directions have ended (EOF passed on, or an error). An error in one
 * direction (reset) ends both.
 */
#ifndef ASYNCCORE_COPY_H
#define ASYNCCORE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/splice.h"
#include "asynccore/stream.h"

struct ac__uop; /* an io_uring operation slot (ring mode, owned by the worker) */

struct ac_copy {
    struct ac_future base;
    struct ac_stream *from, *to;
    unsigned char *buf; /* pending bytes not yet written; NULL when none */
    uint64_t bytes;      /* output: bytes written to `to` (running count) */
    uint64_t *activity;  /* optional: set to the worker clock at each transfer */
    /* 32-bit sizes (at most AC_SCRATCH_SIZE or a pipe's worth) keep the
     * struct, part of every idle connection, as small as before splice. */
    uint32_t bufsize;
    uint32_t pos, end;
    /* A copy splices or runs in ring mode, never both (ring mode is chosen
     * at the first poll, before any splice): they share the room. */
    union {
        struct {
            uint32_t in_pipe;    /* bytes read into the pipe, not yet written */
            struct ac_pipe pipe; /* lent by the worker's pool while in_pipe > 0 */
        };
        struct {
            struct ac__uop *rop, *sop; /* ring mode: the receive and the send in the kernel */
        };
    };
    int err;             /* output: 0 or -errno (read or write side) */
    /* Bit-fields: the flags share one word of every idle connection. */
    bool read_eof : 1, shut_done : 1;
    bool no_shutdown : 1; /* EOF ends the copy without shutdown(2) (close follows) */
    bool splice : 1;      /* zero-copy mode now (ac_copy_use_splice) */
    bool splice_auto : 1; /* switch between the modes by read size (ac_copy_splice_auto) */
    bool splice_small : 1; /* auto: the last splice was small; buffer copy once drained */
    bool mode_chosen : 1;  /* the first poll decided on ring mode */
    bool ring : 1;         /* ring mode now (io_uring completion operations) */
    bool ring_ok : 1;      /* ring mode applies (chosen at the first poll) */
};
/* bufsize: 0 means 16 KiB. */
void ac_copy_init(struct ac_copy *c, struct ac_stream *from, struct ac_stream *to, size_t bufsize);

/* Keeps c on readiness (the buffer copy, or splice) on io_uring too: no
 * ring mode. Call after init, before the first poll. */
void ac_copy_no_ring(struct ac_copy *c);

/* Switches c to splice(2) if both its streams are plain sockets (else it
 * stays a buffer copy), also on io_uring (no ring mode then). Call after
 * init, before the first poll. Returns whether splice is used. */
bool ac_copy_use_splice(struct ac_copy *c);

/* Splices only while the traffic is bulk (HAProxy's splice-auto; where
 * ring mode applies it takes the buffer copy's place below): the copy
 * starts as a buffer copy, switches to splice(2) after a read that fills the
 * whole buffer, and back to the buffer copy once a splice moved less than a
 * buffer's worth. Small messages (requests and responses) then cost one
 * read(2) and one write(2) each, as cheap as the kernel makes them, where
 * splice costs two splices into and out of a pipe plus the one that finds
 * the socket empty (a short splice does not prove the socket drained: the
 * pipe may have been full). Call after init, before the first poll. Returns
 * whether splice may be used (both streams plain sockets). */
bool ac_copy_splice_auto(struct ac_copy *c);

struct ac_copy_bidi {
    struct ac_future base;
    struct ac_copy ab, ba;
    bool ab_done, ba_done;
    /* The owner closes both streams as soon as this is ready: the second
     * EOF is not passed on as a shutdown(2) that the close makes moot. */
    bool close_after;
    int err; /* output: first error of either direction, 0 if both ended cleanly */
};
void ac_copy_bidi_init(struct ac_copy_bidi *c, struct ac_stream *a, struct ac_stream *b,
                       size_t bufsize);

/* ac_copy_use_splice on both directions. */
bool ac_copy_bidi_use_splice(struct ac_copy_bidi *b);
/* ac_copy_splice_auto on both directions. */
bool ac_copy_bidi_splice_auto(struct ac_copy_bidi *b);

/* Size of each worker's scratch buffer (the largest bufsize a copy may use). */
#define AC_SCRATCH_SIZE (256u * 1024u)
/* The calling worker's scratch buffer (AC_SCRATCH_SIZE bytes), valid only
 * within one poll on that worker. */
unsigned char *ac_worker_scratch(struct ac_worker *w);

#endif

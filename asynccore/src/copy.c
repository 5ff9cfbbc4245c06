/* asynccore: copy and bidirectional copy between streams.
 *
 * The fast path holds no memory of its own: data is read into the worker's
 * scratch buffer and written straight to the destination within the same
 * poll. Only what the destination does not take at once is kept, in a buffer
 * allocated for the occasion and freed as soon as it has been written out.
 *
 * The splice mode (plain sockets on both sides) moves bytes socket -> pipe ->
 * socket without copying them; the pipe is borrowed from the worker's pool
 * for as long as it holds bytes, so an idle copy holds no pipe either.
 */
#include "asynccore/copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/runtime.h"
#include "internal.h"
#ifdef AC__HAVE_IO_URING
#include "uring_op.h"
#endif

#define COPY_DEFAULT_BUFSIZE (16u * 1024u)

static void note_activity(struct ac_copy *c, struct ac_context *cx)
{
    if (c->activity != NULL)
        *c->activity = ac_worker_now_ms(cx->worker);
}

/* Returns the lent pipe to the running worker's pool (closed if it still
 * holds bytes). Futures are dropped on their worker's thread; off it (no
 * current worker) the pipe is closed. */
static void pipe_give_back(struct ac_copy *c)
{
    if (c->pipe.rfd >= 0) {
        struct ac_worker *w = ac_worker_current();
        ac_pipe_put(w != NULL ? ac_worker_pipe_pool(w) : NULL, &c->pipe, c->in_pipe);
    }
    c->in_pipe = 0;
}

static ac_poll_t copy_fail(struct ac_copy *c, int err)
{
    c->err = err;
    pipe_give_back(c);
    free(c->buf);
    c->buf = NULL;
    c->pos = c->end = 0;
    return AC_READY;
}

/* Writes data[0..len) until done or Pending. Returns bytes written, or -errno
 * (a stream that accepts zero bytes counts as a broken pipe). */
static ssize_t write_some(struct ac_copy *c, struct ac_context *cx, const unsigned char *data,
                          size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n;
        if (ac_stream_poll_write(c->to, cx, data + off, len - off, &n) == AC_PENDING)
            break;
        if (n <= 0)
            return n < 0 ? n : -EPIPE;
        off += (size_t)n;
        c->bytes += (uint64_t)n;
    }
    if (off > 0)
        note_activity(c, cx);
    return (ssize_t)off;
}

/* Drains the pending buffer. Ready (err possibly set) when it is empty and
 * freed, Pending otherwise. */
static ac_poll_t flush_pending(struct ac_copy *c, struct ac_context *cx)
{
    if (c->buf == NULL)
        return AC_READY;
    ssize_t n = write_some(c, cx, c->buf + c->pos, c->end - c->pos);
    if (n < 0) {
        copy_fail(c, (int)n);
        return AC_READY;
    }
    c->pos += (uint32_t)n;
    if (c->pos < c->end)
        return AC_PENDING;
    free(c->buf);
    c->buf = NULL;
    c->pos = c->end = 0;
    return AC_READY;
}

/* Keeps the unwritten tail of the scratch data (scratch is only valid during
 * this poll). Returns 0 or -ENOMEM. */
static int keep_rest(struct ac_copy *c, const unsigned char *rest, size_t len)
{
    c->buf = malloc(c->bufsize);
    if (c->buf == NULL)
        return -ENOMEM;
    memcpy(c->buf, rest, len);
    c->pos = 0;
    c->end = (uint32_t)len; /* len < bufsize */
    return 0;
}

/* Passes the EOF on as a half-close. A peer that is already fully gone
 * (ENOTCONN) has nothing left to tell. */
static ac_poll_t pass_eof(struct ac_copy *c, struct ac_context *cx)
{
    int r;

    if (ac_stream_poll_shutdown(c->to, cx, &r) == AC_PENDING)
        return AC_PENDING;
    c->shut_done = true;
    if (r < 0 && r != -ENOTCONN)
        c->err = r;
    return AC_READY;
}

/* The source ended and everything read is written: pass the EOF on, or
 * just end where the owner closes both streams next (no_shutdown). */
static ac_poll_t end_input(struct ac_copy *c, struct ac_context *cx)
{
    if (c->no_shutdown) {
        c->shut_done = true;
        return AC_READY;
    }
    return pass_eof(c, cx);
}

static ac_poll_t buffer_poll(struct ac_copy *c, struct ac_context *cx)
{
    for (;;) {
        if (flush_pending(c, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->err != 0)
            return AC_READY;
        if (c->read_eof)
            return end_input(c, cx);

        /* A read needs budget for its write too: stopping between them would
         * cost a pending buffer for no reason. */
        if (cx->budget < 2) {
            cx->budget = 0;
            (void)ac_coop_proceed(cx); /* schedules the task again */
            return AC_PENDING;
        }
        unsigned char *scratch = ac_worker_scratch(cx->worker);
        ssize_t n;
        if (ac_stream_poll_read(c->from, cx, scratch, c->bufsize, &n) == AC_PENDING)
            return AC_PENDING;
        if (n < 0)
            return copy_fail(c, (int)n);
        if (n == 0) {
            c->read_eof = true;
            continue;
        }
        note_activity(c, cx);
        ssize_t w = write_some(c, cx, scratch, (size_t)n);
        if (w < 0)
            return copy_fail(c, (int)w);
        if (w < n) {
            int r = keep_rest(c, scratch + w, (size_t)(n - w));
            if (r < 0)
                return copy_fail(c, r);
            /* write_some stopped on Pending: the waker is already arranged. */
            return AC_PENDING;
        }
        if (c->splice_auto && (uint32_t)n == c->bufsize) {
            /* A full buffer: bulk data, more is waiting. Nothing is pending,
             * so the order of bytes is kept; copy_poll goes on splicing. */
            c->splice = true;
            return AC_READY;
        }
    }
}

/* ---- splice mode ---- */

/* splice(2) refused the descriptors after bytes entered the pipe: they move
 * into the pending buffer and the copy goes on as a buffer copy. Returns 0
 * or -errno. */
static int splice_fall_back(struct ac_copy *c)
{
    c->splice = false;
    c->splice_auto = false;
    if (c->in_pipe == 0) {
        pipe_give_back(c);
        return 0;
    }
    c->buf = malloc(c->in_pipe);
    if (c->buf == NULL)
        return -ENOMEM;
    c->pos = c->end = 0;
    while (c->end < c->in_pipe) {
        ssize_t n = read(c->pipe.rfd, c->buf + c->end, c->in_pipe - c->end);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return n < 0 ? -errno : -EIO;
        }
        c->end += (uint32_t)n;
    }
    c->in_pipe = 0;
    pipe_give_back(c);
    return 0;
}

/* Writes the pipe's bytes to `to`. Ready when the pipe is empty (and given
 * back) or on an error (c->err set), Pending otherwise. */
static ac_poll_t splice_out(struct ac_copy *c, struct ac_context *cx)
{
    while (c->in_pipe > 0) {
        struct ac_ready_event ev;

        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        if (ac_io_poll_ready(&c->to->io, cx, AC_DIR_WRITE, &ev) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = ac_splice_move(c->pipe.rfd, c->to->io.fd, c->in_pipe);
        if (n == -EAGAIN) {
            ac_io_clear_ready(&c->to->io, AC_DIR_WRITE, ev);
            continue;
        }
        if (n == -EINVAL) {
            int r = splice_fall_back(c);
            if (r < 0)
                copy_fail(c, r);
            return AC_READY;
        }
        if (n <= 0) {
            copy_fail(c, n < 0 ? (int)n : -EPIPE);
            return AC_READY;
        }
        c->in_pipe -= (uint32_t)n;
        c->bytes += (uint64_t)n;
        note_activity(c, cx);
    }
    pipe_give_back(c);
    return AC_READY;
}

/* Reads from `from` into a pooled pipe. Ready with *n (bytes, 0 on EOF, or
 * -errno), Pending when nothing is there (the pipe is back in the pool). */
static ac_poll_t splice_in(struct ac_copy *c, struct ac_context *cx, ssize_t *n)
{
    for (;;) {
        struct ac_ready_event ev;

        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        if (c->from->eof) {
            *n = 0;
            return AC_READY;
        }
        if (ac_io_poll_ready(&c->from->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        if (c->pipe.rfd < 0) {
            /* No pipe to be had (descriptors or memory short, EMFILE):
             * the buffer copy needs none, so it takes over. */
            if (ac_pipe_get(ac_worker_pipe_pool(cx->worker), &c->pipe) < 0) {
                *n = -EINVAL;
                return AC_READY;
            }
        }
        *n = ac_splice_move(c->from->io.fd, c->pipe.wfd, AC_SPLICE_CHUNK);
        if (*n > 0) {
            c->in_pipe = (uint32_t)*n; /* at most AC_SPLICE_CHUNK */
            return AC_READY;
        }
        pipe_give_back(c); /* empty: an idle copy holds no pipe */
        if (*n == -EAGAIN) {
            ac_io_clear_ready(&c->from->io, AC_DIR_READ, ev);
            continue;
        }
        return AC_READY;
    }
}

/* The splice copy loop. Returns as copy_poll does; with c->splice cleared
 * (fallback) the caller goes on with the buffer copy. */
static ac_poll_t splice_poll(struct ac_copy *c, struct ac_context *cx)
{
    for (;;) {
        if (splice_out(c, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->err != 0 || !c->splice)
            return AC_READY;
        if (c->splice_small) {
            /* Auto mode, the pipe drained after a small splice: small
             * messages are cheaper through the buffer copy. */
            c->splice_small = false;
            c->splice = false;
            return AC_READY;
        }
        if (c->read_eof)
            return end_input(c, cx);
        if (cx->budget < 2) { /* as in copy_poll: a read needs its write */
            cx->budget = 0;
            (void)ac_coop_proceed(cx);
            return AC_PENDING;
        }
        ssize_t n;
        if (splice_in(c, cx, &n) == AC_PENDING)
            return AC_PENDING;
        if (n == -EINVAL || n == -ENOSYS) {
            c->splice = false; /* not a spliceable descriptor: buffer copy */
            c->splice_auto = false;
            return AC_READY;
        }
        if (n < 0)
            return copy_fail(c, (int)n);
        if (n == 0) {
            c->read_eof = true;
        } else {
            note_activity(c, cx);
            c->splice_small = c->splice_auto && (uint32_t)n < c->bufsize;
        }
    }
}

/* ---- ring mode (io_uring completion operations) ---- */

#ifdef AC__HAVE_IO_URING
/* Gives back what the copy has in the kernel (cancelled; buffers freed by
 * the completions, uring_op.h). */
static void ring_release(struct ac_copy *c)
{
    ac__uop_release(c->rop);
    ac__uop_release(c->sop);
    c->rop = c->sop = NULL;
}

static ac_poll_t ring_fail(struct ac_copy *c, int err)
{
    ring_release(c);
    c->err = err;
    return AC_READY;
}

/* Pending until op completes (its completion wakes the task). */
static ac_poll_t ring_wait(struct ac__uop *op, struct ac_context *cx)
{
    ac_waker_register(&op->waker, cx->waker);
    return AC_PENDING;
}

/* Collects a finished send: false (c->err set) if it failed. */
static bool ring_sent(struct ac_copy *c, struct ac_context *cx)
{
    int32_t res = c->sop->res;
    ac__uop_release(c->sop);
    c->sop = NULL;
    if (res < 0) {
        ring_fail(c, res);
        return false;
    }
    note_activity(c, cx); /* its bytes were counted when it was submitted */
    return true;
}

/* Splice-auto in ring mode: bulk data goes zero copy through the splice
 * mode (on readiness) once the last send is out, as the buffer copy hands
 * over on epoll; small messages come back to ring mode (copy_poll). */
static void ring_to_splice(struct ac_copy *c)
{
    c->ring = false;
    c->pipe.rfd = c->pipe.wfd = -1; /* the room the slots used */
    c->in_pipe = 0;
    c->splice = true;
}

/* A multishot receive and one send at a time: what arrives while a send is
 * out waits in the receive's queue (which pauses it after a few buffers,
 * uring_op.h). The task waits for a send's completion only when it has to
 * (bytes to send next, the EOF to pass on, the hand-over to splice);
 * otherwise the send is collected at the next wake. Bytes keep their
 * order: a send starts only once the one before it completed. With
 * splice-auto a full buffer (bulk) stops the receive; once it has given
 * all it took and the last send is out, ring_poll returns Ready with
 * c->ring cleared: continue in splice mode. */
static ac_poll_t ring_poll(struct ac_copy *c, struct ac_context *cx)
{
    struct ac__uring *u = ac__worker_uring(cx->worker);
    for (;;) {
        if (c->sop != NULL && c->sop->state != AC__UOP_BUSY && !ring_sent(c, cx))
            return AC_READY;
        bool sending = c->sop != NULL;
        if (c->read_eof) {
            if (sending)
                return ring_wait(c->sop, cx); /* the EOF goes after the last bytes */
            return end_input(c, cx);
        }
        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        int r;
        if (c->rop == NULL && (r = ac__uop_recv(u, c->from->io.fd, &c->rop)) < 0)
            return ring_fail(c, r);
        if (sending && ac__uop_queued(c->rop) > 0)
            return ring_wait(c->sop, cx); /* bytes to send next */
        unsigned char *b;
        uint32_t n;
        r = ac__uop_recv_take(c->rop, &b, &n);
        if (r == -EAGAIN)
            return ring_wait(c->rop, cx);
        if (r == -ECANCELED && sending)
            return ring_wait(c->sop, cx); /* to splice once the last send is out */
        if (r <= 0) {
            ac__uop_release(c->rop);
            c->rop = NULL;
            if (r == -ECANCELED) { /* stopped for splice, all of it sent */
                ring_to_splice(c);
                return AC_READY;
            }
            if (r < 0)
                return ring_fail(c, r);
            c->read_eof = true;
            continue;
        }
        note_activity(c, cx);
        if ((r = ac__uop_send(u, c->to->io.fd, b, n, &c->sop)) < 0)
            return ring_fail(c, r);
        /* Counted now, as a send(2) the kernel took is: owners read the
         * count after each poll, and the send's completion wakes nobody
         * unless the copy waits for it. */
        c->bytes += n;
        if (c->splice_auto && (n >= c->bufsize || n == AC__URING_BUF_SIZE))
            ac__uop_recv_stop(c->rop); /* bulk: to splice once drained */
    }
}

/* Back from splice to ring mode (small messages again): the pipe is empty
 * and back in the pool, nothing is pending. */
static void splice_to_ring(struct ac_copy *c)
{
    c->splice = false;
    c->rop = c->sop = NULL; /* over the pipe's room */
    c->ring = true;
    ac__io_unpoll(&c->from->io);
}

/* Ring mode where both streams are plain sockets on this worker's ring. */
static void ring_choose(struct ac_copy *c, struct ac_context *cx)
{
    if (ac__worker_uring(cx->worker) == NULL || !ac_stream_is_socket(c->from) ||
        !ac_stream_is_socket(c->to) || c->from->io.worker != cx->worker ||
        c->to->io.worker != cx->worker || c->from->eof)
        return;
    c->ring = true;
    c->ring_ok = true;
    c->splice = false; /* splice-auto hands bulk data over to splice mode */
    c->rop = c->sop = NULL; /* over the pipe's room, no pipe taken yet */
    /* Its bytes now arrive as completions: its poll would only wake for
     * nothing. */
    ac__io_unpoll(&c->from->io);
}
#else
static void ring_release(struct ac_copy *c) { (void)c; }
static ac_poll_t ring_poll(struct ac_copy *c, struct ac_context *cx)
{
    (void)cx;
    c->err = -ENOSYS; /* never chosen without io_uring */
    return AC_READY;
}
static void ring_choose(struct ac_copy *c, struct ac_context *cx) { (void)c, (void)cx; }
static void splice_to_ring(struct ac_copy *c) { (void)c; }
#endif

/* The modes hand over to each other: splice_poll returns Ready with
 * c->splice cleared (fallback, or auto mode after a small splice), and
 * buffer_poll returns Ready with c->splice set (auto mode after a full read).
 * Where ring mode applies it takes the buffer copy's place: ring_poll
 * returns Ready with c->ring cleared for splice, and a small splice leads
 * back to it. None hands over with bytes pending or in the kernel, so the
 * order of bytes is kept. */
static ac_poll_t copy_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_copy *c = (struct ac_copy *)self;

    if (!c->mode_chosen) {
        c->mode_chosen = true;
        ring_choose(c, cx);
    }
    for (;;) {
        if (c->ring) {
            ac_poll_t r = ring_poll(c, cx);
            if (c->ring || r == AC_PENDING || c->err != 0)
                return r;
        }
        if (c->splice) {
            ac_poll_t r = splice_poll(c, cx);
            if (c->splice || r == AC_PENDING || c->err != 0)
                return r;
            /* Splice-auto after a small splice: the ring again. Not after a
             * fallback (bytes pending in c->buf, splice-auto cleared). */
            if (c->ring_ok && c->splice_auto && c->buf == NULL) {
                splice_to_ring(c);
                continue;
            }
        }
        ac_poll_t r = buffer_poll(c, cx);
        if (!c->splice || r == AC_PENDING || c->err != 0)
            return r;
    }
}

static void copy_drop(struct ac_future *self)
{
    struct ac_copy *c = (struct ac_copy *)self;

    if (c->ring)
        ring_release(c);
    else
        pipe_give_back(c); /* bytes still in it close it rather than pool it */

    free(c->buf);
    c->buf = NULL;
    c->pos = c->end = 0;
}

static const struct ac_future_vtable copy_vt = {copy_poll, copy_drop};

void ac_copy_init(struct ac_copy *c, struct ac_stream *from, struct ac_stream *to, size_t bufsize)
{
    if (bufsize == 0)
        bufsize = COPY_DEFAULT_BUFSIZE;
    if (bufsize > AC_SCRATCH_SIZE)
        bufsize = AC_SCRATCH_SIZE;
    c->base.vt = &copy_vt;
    c->from = from;
    c->to = to;
    c->bufsize = (uint32_t)bufsize; /* <= AC_SCRATCH_SIZE */
    c->buf = NULL;
    c->pos = c->end = 0;
    c->bytes = 0;
    c->activity = NULL;
    c->err = 0;
    c->read_eof = false;
    c->shut_done = false;
    c->no_shutdown = false;
    c->splice = false;
    c->splice_auto = false;
    c->splice_small = false;
    c->pipe.rfd = c->pipe.wfd = -1;
    c->in_pipe = 0;
    c->mode_chosen = false;
    c->ring = false;
    c->ring_ok = false;
}

void ac_copy_no_ring(struct ac_copy *c) { c->mode_chosen = true; }

bool ac_copy_use_splice(struct ac_copy *c)
{
    c->splice = ac_splice_possible(c->from, c->to);
    if (c->splice)
        ac_copy_no_ring(c); /* asked for by name */
    return c->splice;
}

bool ac_copy_splice_auto(struct ac_copy *c)
{
    c->splice = false;
    c->splice_auto = ac_splice_possible(c->from, c->to);
    return c->splice_auto;
}

/* ---- bidirectional ---- */

/* Polls one direction; on an error, records it and ends the other one. */
static void bidi_step(struct ac_copy_bidi *b, struct ac_copy *c, bool *done, struct ac_copy *other,
                      bool *other_done, struct ac_context *cx)
{
    if (*done)
        return;
    c->no_shutdown = b->close_after && *other_done;
    if (ac_future_poll(&c->base, cx) == AC_PENDING)
        return;
    *done = true;
    if (c->err == 0)
        return;
    if (b->err == 0)
        b->err = c->err;
    if (!*other_done) {
        *other_done = true;
        ac_future_drop(&other->base); /* frees its pending buffer */
    }
}

static ac_poll_t bidi_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_copy_bidi *b = (struct ac_copy_bidi *)self;

    bidi_step(b, &b->ab, &b->ab_done, &b->ba, &b->ba_done, cx);
    bidi_step(b, &b->ba, &b->ba_done, &b->ab, &b->ab_done, cx);
    return b->ab_done && b->ba_done ? AC_READY : AC_PENDING;
}

static void bidi_drop(struct ac_future *self)
{
    struct ac_copy_bidi *b = (struct ac_copy_bidi *)self;

    ac_future_drop(&b->ab.base);
    ac_future_drop(&b->ba.base);
}

static const struct ac_future_vtable bidi_vt = {bidi_poll, bidi_drop};

void ac_copy_bidi_init(struct ac_copy_bidi *c, struct ac_stream *a, struct ac_stream *b,
                       size_t bufsize)
{
    c->base.vt = &bidi_vt;
    ac_copy_init(&c->ab, a, b, bufsize);
    ac_copy_init(&c->ba, b, a, bufsize);
    c->ab_done = false;
    c->ba_done = false;
    c->close_after = false;
    c->err = 0;
}

bool ac_copy_bidi_use_splice(struct ac_copy_bidi *b)
{
    bool ab = ac_copy_use_splice(&b->ab);
    bool ba = ac_copy_use_splice(&b->ba);
    return ab && ba;
}

bool ac_copy_bidi_splice_auto(struct ac_copy_bidi *b)
{
    bool ab = ac_copy_splice_auto(&b->ab);
    bool ba = ac_copy_splice_auto(&b->ba);
    return ab && ba;
}

/* asynccore: socket streams (TCP and Unix) and the futures over any stream.
 *
 * A socket stream is a registered non-blocking descriptor. Each poll_* spends
 * one unit of cooperative budget, asks the reactor whether the direction is
 * ready, and only then makes the system call; EAGAIN clears the readiness
 * (unless a newer event arrived meanwhile) and the loop asks again, which
 * either finds fresh readiness or stores the waker and returns Pending.
 */
#include "asynccore/stream.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/waker.h"
#include "internal.h"

/* With an edge-triggered backend every arrival of data (or of send-buffer
 * room) produces a new event, so a short read or write means the socket was
 * drained (or filled) at that moment: readiness can be cleared without paying
 * for the EAGAIN system call (tokio does the same). The tick comparison in
 * ac_io_clear_ready keeps an event that arrived after the call. The poll(2)
 * backend keeps the plain EAGAIN rule. */
#define SHORT_IO_CLEARS(s) ac__io_edge(&(s)->io)

static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

static ac_poll_t sock_poll_read(struct ac_stream *s, struct ac_context *cx, void *buf, size_t len,
                                ssize_t *out)
{
    /* Each pass spends budget: a socket that keeps claiming readiness while
     * returning EAGAIN costs a yield, never a hang. */
    for (;;) {
        struct ac_ready_event ev;

        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        if (s->eof) {
            *out = 0;
            return AC_READY;
        }
        if (ac_io_poll_ready(&s->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        /* recv, not read: the socket call skips the VFS layer read(2) goes
         * through (fdget_pos, rw_verify_area, fsnotify), measurably cheaper
         * per small message (tests/bench/RESULTS.md). */
        ssize_t n = recv(s->io.fd, buf, len, 0);
        if (n >= 0) {
            if (SHORT_IO_CLEARS(s) && n > 0 && (size_t)n < len)
                ac_io_clear_ready(&s->io, AC_DIR_READ, ev);
            /* The peer's FIN was seen before this read and the read did not
             * fill the buffer: everything before the FIN is consumed, so the
             * next read would return 0. Spare that system call. */
            if (n > 0 && (size_t)n < len && (ev.ready & (AC_READ_CLOSED | AC_ERROR)) == AC_READ_CLOSED)
                s->eof = true;
            *out = n;
            return AC_READY;
        }
        if (would_block(errno)) {
            ac_io_clear_ready(&s->io, AC_DIR_READ, ev);
            continue;
        }
        if (errno == EINTR)
            continue;
        *out = -errno;
        return AC_READY;
    }
}

static ac_poll_t sock_poll_write(struct ac_stream *s, struct ac_context *cx, const void *buf,
                                 size_t len, ssize_t *out)
{
    for (;;) {
        struct ac_ready_event ev;

        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        if (ac_io_poll_ready(&s->io, cx, AC_DIR_WRITE, &ev) == AC_PENDING)
            return AC_PENDING;
        /* send, not write: a peer that went away must give EPIPE, not SIGPIPE. */
        ssize_t n = send(s->io.fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            if (SHORT_IO_CLEARS(s) && (size_t)n < len)
                ac_io_clear_ready(&s->io, AC_DIR_WRITE, ev);
            *out = n;
            return AC_READY;
        }
        if (would_block(errno)) {
            ac_io_clear_ready(&s->io, AC_DIR_WRITE, ev);
            continue;
        }
        if (errno == EINTR)
            continue;
        *out = -errno;
        return AC_READY;
    }
}

static ac_poll_t sock_poll_shutdown(struct ac_stream *s, struct ac_context *cx, int *out)
{
    if (!ac_coop_proceed(cx))
        return AC_PENDING;
    *out = shutdown(s->io.fd, SHUT_WR) == 0 ? 0 : -errno;
    return AC_READY;
}

static void sock_close(struct ac_stream *s)
{
    ac_io_close(&s->io, s->io.fd);
    s->io.fd = -1;
}

static const struct ac_stream_vtable sock_vt = {
    sock_poll_read,
    sock_poll_write,
    sock_poll_shutdown,
    sock_close,
};

int ac_socket_stream_open(struct ac_stream *s, struct ac_worker *w, int fd)
{
    s->vt = NULL;
    s->io.worker = NULL;
    s->io.fd = -1;
    s->eof = false;
    int r = ac_io_register(w, fd, 0, &s->io);
    if (r < 0) {
        s->io.worker = NULL;
        s->io.fd = -1;
        return r;
    }
    s->io.fd = fd;
    s->vt = &sock_vt;
    return 0;
}

bool ac_stream_is_socket(const struct ac_stream *s) { return s != NULL && s->vt == &sock_vt; }

void ac_stream_close(struct ac_stream *s)
{
    if (s == NULL || s->vt == NULL)
        return;
    const struct ac_stream_vtable *vt = s->vt;
    /* Cleared first: a second close (or one on a never-opened stream) is a
     * no-op, and ac_stream_fd() reports -1 from now on. */
    s->vt = NULL;
    vt->close(s);
    s->io.fd = -1;
}

void ac_stream_abort(struct ac_stream *s)
{
    if (s == NULL || s->vt == NULL)
        return;
    if (s->io.fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        /* Best effort: a socket the peer already reset has nothing to send. */
        (void)setsockopt(s->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    ac_stream_close(s);
}

/* ---- ac_read ---- */

static ac_poll_t read_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_read *r = (struct ac_read *)self;

    return ac_stream_poll_read(r->s, cx, r->buf, r->len, &r->n);
}

static const struct ac_future_vtable read_vt = {read_poll, NULL};

void ac_read_init(struct ac_read *r, struct ac_stream *s, void *buf, size_t len)
{
    r->base.vt = &read_vt;
    r->s = s;
    r->buf = buf;
    r->len = len;
    r->n = 0;
}

/* ---- ac_read_exact ---- */

static ac_poll_t read_exact_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_read_exact *r = (struct ac_read_exact *)self;

    while (r->done < r->len) {
        ssize_t n;
        if (ac_stream_poll_read(r->s, cx, (char *)r->buf + r->done, r->len - r->done, &n) ==
            AC_PENDING)
            return AC_PENDING;
        if (n < 0) {
            r->err = (int)n;
            return AC_READY;
        }
        if (n == 0) {
            r->err = -EPIPE;
            return AC_READY;
        }
        r->done += (size_t)n;
    }
    r->err = 0;
    return AC_READY;
}

static const struct ac_future_vtable read_exact_vt = {read_exact_poll, NULL};

void ac_read_exact_init(struct ac_read_exact *r, struct ac_stream *s, void *buf, size_t len)
{
    r->base.vt = &read_exact_vt;
    r->s = s;
    r->buf = buf;
    r->len = len;
    r->done = 0;
    r->err = 0;
}

/* ---- ac_write_all ---- */

static ac_poll_t write_all_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_write_all *w = (struct ac_write_all *)self;

    while (w->done < w->len) {
        ssize_t n;
        if (ac_stream_poll_write(w->s, cx, (const char *)w->buf + w->done, w->len - w->done,
                                 &n) == AC_PENDING)
            return AC_PENDING;
        if (n < 0) {
            w->err = (int)n;
            return AC_READY;
        }
        if (n == 0) { /* a stream that takes nothing would loop forever */
            w->err = -EPIPE;
            return AC_READY;
        }
        w->done += (size_t)n;
    }
    w->err = 0;
    return AC_READY;
}

static const struct ac_future_vtable write_all_vt = {write_all_poll, NULL};

void ac_write_all_init(struct ac_write_all *w, struct ac_stream *s, const void *buf, size_t len)
{
    w->base.vt = &write_all_vt;
    w->s = s;
    w->buf = buf;
    w->len = len;
    w->done = 0;
    w->err = 0;
}

/* ---- ac_shutdown ---- */

static ac_poll_t shutdown_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_shutdown *f = (struct ac_shutdown *)self;

    return ac_stream_poll_shutdown(f->s, cx, &f->err);
}

static const struct ac_future_vtable shutdown_vt = {shutdown_poll, NULL};

void ac_shutdown_init(struct ac_shutdown *f, struct ac_stream *s)
{
    f->base.vt = &shutdown_vt;
    f->s = s;
    f->err = 0;
}

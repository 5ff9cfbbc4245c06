/* asynccore: copy and bidirectional copy between streams.
 *
 * The fast path holds no memory of its own: data is read into the worker's
 * scratch buffer and written straight to the destination within the same
 * poll. Only what the destination does not take at once is kept, in a buffer
 * allocated for the occasion and freed as soon as it has been written out.
 */
#include "asynccore/copy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"

#define COPY_DEFAULT_BUFSIZE (16u * 1024u)

static void note_activity(struct ac_copy *c, struct ac_context *cx)
{
    if (c->activity != NULL)
        *c->activity = ac_worker_now_ms(cx->worker);
}

static ac_poll_t copy_fail(struct ac_copy *c, int err)
{
    c->err = err;
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
    c->pos += (size_t)n;
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
    c->end = len;
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

static ac_poll_t copy_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_copy *c = (struct ac_copy *)self;

    for (;;) {
        if (flush_pending(c, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->err != 0)
            return AC_READY;
        if (c->read_eof) {
            if (c->no_shutdown) {
                c->shut_done = true;
                return AC_READY;
            }
            return pass_eof(c, cx);
        }

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
    }
}

static void copy_drop(struct ac_future *self)
{
    struct ac_copy *c = (struct ac_copy *)self;

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
    c->bufsize = bufsize;
    c->buf = NULL;
    c->pos = c->end = 0;
    c->bytes = 0;
    c->activity = NULL;
    c->err = 0;
    c->read_eof = false;
    c->shut_done = false;
    c->no_shutdown = false;
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

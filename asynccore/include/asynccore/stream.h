/* asynccore: byte streams (TCP, Unix, TLS) behind one vtable.
 *
 * The poll_* functions follow the Rust AsyncRead/AsyncWrite contract: they
 * either complete now (AC_READY, result in *out: bytes >= 0, 0 meaning EOF on
 * read, or -errno) or arrange a wake-up and return AC_PENDING. They consume
 * cooperative budget (ac_coop_proceed), so an always-ready socket cannot
 * starve its worker.
 *
 * A stream is embedded by its owner; ac_stream_close() deregisters and closes
 * the descriptor (and frees TLS state). A closed stream has fd < 0.
 */
#ifndef ASYNCCORE_STREAM_H
#define ASYNCCORE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "asynccore/future.h"
#include "asynccore/reactor.h"

struct ac_stream;

struct ac_stream_vtable {
    ac_poll_t (*poll_read)(struct ac_stream *s, struct ac_context *cx, void *buf, size_t len,
                           ssize_t *out);
    ac_poll_t (*poll_write)(struct ac_stream *s, struct ac_context *cx, const void *buf,
                            size_t len, ssize_t *out);
    /* Shuts the write half (TLS: close_notify then shutdown(SHUT_WR)). *out: 0 or -errno. */
    ac_poll_t (*poll_shutdown)(struct ac_stream *s, struct ac_context *cx, int *out);
    void (*close)(struct ac_stream *s);
};

struct ac_stream {
    const struct ac_stream_vtable *vt;
    struct ac_io io; /* io.fd is the descriptor; -1 when closed */
    bool eof;        /* socket streams: the next read is known to return 0 */
};

static inline ac_poll_t ac_stream_poll_read(struct ac_stream *s, struct ac_context *cx, void *buf,
                                            size_t len, ssize_t *out)
{
    return s->vt->poll_read(s, cx, buf, len, out);
}
static inline ac_poll_t ac_stream_poll_write(struct ac_stream *s, struct ac_context *cx,
                                             const void *buf, size_t len, ssize_t *out)
{
    return s->vt->poll_write(s, cx, buf, len, out);
}
static inline ac_poll_t ac_stream_poll_shutdown(struct ac_stream *s, struct ac_context *cx,
                                                int *out)
{
    return s->vt->poll_shutdown(s, cx, out);
}
/* Safe on a stream never opened (vt NULL) or already closed. */
void ac_stream_close(struct ac_stream *s);
/* Closes with a reset (SO_LINGER 0: RST, unsent data discarded) instead of
 * an orderly end, so that a peer's reset can be passed on as one. No
 * close_notify on TLS streams. No-op on a closed stream. */
void ac_stream_abort(struct ac_stream *s);
/* True for a plain socket stream (ac_socket_stream_open), false for TLS or
 * any other stream kind. */
bool ac_stream_is_socket(const struct ac_stream *s);
static inline int ac_stream_fd(const struct ac_stream *s) { return s->vt ? s->io.fd : -1; }

/* Wraps a connected non-blocking socket (TCP or Unix) and registers it with w.
 * On success the stream owns fd. Returns 0 or -errno (fd is then not closed). */
int ac_socket_stream_open(struct ac_stream *s, struct ac_worker *w, int fd);

/* ---- futures over streams ---- */

/* Reads at most len bytes once. Output: n (bytes, 0 EOF, or -errno). */
struct ac_read {
    struct ac_future base;
    struct ac_stream *s;
    void *buf;
    size_t len;
    ssize_t n;
};
void ac_read_init(struct ac_read *r, struct ac_stream *s, void *buf, size_t len);

/* Reads exactly len bytes. Output: err (0, -EPIPE on early EOF, or -errno),
 * done (bytes read). */
struct ac_read_exact {
    struct ac_future base;
    struct ac_stream *s;
    void *buf;
    size_t len, done;
    int err;
};
void ac_read_exact_init(struct ac_read_exact *r, struct ac_stream *s, void *buf, size_t len);

/* Writes all len bytes. Output: err (0 or -errno), done (bytes written). */
struct ac_write_all {
    struct ac_future base;
    struct ac_stream *s;
    const void *buf;
    size_t len, done;
    int err;
};
void ac_write_all_init(struct ac_write_all *w, struct ac_stream *s, const void *buf, size_t len);

/* Shuts the write half. Output: err. */
struct ac_shutdown {
    struct ac_future base;
    struct ac_stream *s;
    int err;
};
void ac_shutdown_init(struct ac_shutdown *f, struct ac_stream *s);

#endif

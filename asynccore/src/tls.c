/* asynccore: TLS streams over OpenSSL 3 (see asynccore/tls.h).
 *
 * Every OpenSSL call follows the same loop: try the operation; on
 * SSL_ERROR_WANT_READ / WANT_WRITE wait for that direction's readiness. The
 * readiness observed *before* a failed attempt is what gets cleared (never
 * one observed after it: an edge that arrived in between would be lost), so
 * the first WANT on a poll only fetches readiness and retries once.
 *
 * Reads never wait on the reactor while OpenSSL holds buffered bytes
 * (SSL_has_pending): epoll will not report data that already left the socket.
 *
 * OpenSSL's error queue is per thread and shared by every connection on the
 * worker, so it is cleared before each call and read right after it.
 */
#include "asynccore/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "asynccore/stream.h"

static struct ac_tls_stream *tls_of(struct ac_stream *s)
{
    return AC_CONTAINER_OF(s, struct ac_tls_stream, base);
}

/* Readiness observed during one poll, per direction. */
struct tls_wait {
    struct ac_ready_event ev[2];
    bool have[2];
};

/* After an operation failed with WANT_READ/WANT_WRITE (dir): clears the
 * readiness observed before that attempt, then asks for readiness again.
 * Returns AC_READY when the operation should be retried now. */
static ac_poll_t tls_wait_dir(struct ac_tls_stream *t, struct ac_context *cx,
                              enum ac_direction dir, struct tls_wait *w)
{
    if (w->have[dir]) {
        ac_io_clear_ready(&t->base.io, dir, w->ev[dir]);
        w->have[dir] = false;
    }
    if (ac_io_poll_ready(&t->base.io, cx, dir, &w->ev[dir]) == AC_PENDING)
        return AC_PENDING;
    w->have[dir] = true;
    return AC_READY;
}

/* Classifies SSL_get_error for the wait loop: 1 retry now, 0 pending,
 * -1 not a WANT error (the caller maps it). */
static int tls_want(struct ac_tls_stream *t, struct ac_context *cx, int sslerr,
                    struct tls_wait *w)
{
    enum ac_direction dir;
    if (sslerr == SSL_ERROR_WANT_READ)
        dir = AC_DIR_READ;
    else if (sslerr == SSL_ERROR_WANT_WRITE)
        dir = AC_DIR_WRITE;
    else
        return -1;
    return tls_wait_dir(t, cx, dir, w) == AC_READY ? 1 : 0;
}

static bool is_unexpected_eof(unsigned long e)
{
    return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* ---- the data call loop (reads and writes) ---- */

/* One SSL_read_ex into rbuf or SSL_write_ex from wbuf. */
struct tls_io {
    bool writing;
    void *rbuf;
    const void *wbuf;
    size_t len;
};

/* Maps a failure that is not a WANT. Returns the value for *out. */
typedef ssize_t (*tls_error_fn)(struct ac_tls_stream *t, int sslerr, int saved_errno);

/* Repeats the call while a WANT_READ/WANT_WRITE finds its direction ready
 * (tls_want). *out gets the bytes moved, or the failure as map_error reads
 * it from the error queue, which is cleared afterwards. */
static ac_poll_t tls_io_run(struct ac_tls_stream *t, struct ac_context *cx, struct tls_wait *w,
                            const struct tls_io *io, tls_error_fn map_error, ssize_t *out)
{
    for (;;) {
        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int ok = io->writing ? SSL_write_ex(t->ssl, io->wbuf, io->len, &n)
                             : SSL_read_ex(t->ssl, io->rbuf, io->len, &n);
        int saved_errno = errno;
        if (ok) {
            *out = (ssize_t)n;
            return AC_READY;
        }
        int sslerr = SSL_get_error(t->ssl, 0);
        int r = tls_want(t, cx, sslerr, w);
        if (r == 0)
            return AC_PENDING;
        if (r < 0) {
            *out = map_error(t, sslerr, saved_errno);
            ERR_clear_error();
            return AC_READY;
        }
    }
}

/* ---- read ---- */

/* Maps a read failure that is not a WANT. Returns the value for *out. */
static ssize_t read_error(struct ac_tls_stream *t, int sslerr, int saved_errno)
{
    unsigned long e = ERR_peek_error();
    if (sslerr == SSL_ERROR_ZERO_RETURN ||
        (sslerr == SSL_ERROR_SYSCALL && saved_errno == 0) ||
        (sslerr == SSL_ERROR_SSL && is_unexpected_eof(e))) {
        t->read_eof = true; /* close_notify, or EOF without it: both end the stream */
        if (sslerr != SSL_ERROR_ZERO_RETURN)
            t->failed = true;
        return 0;
    }
    t->failed = true;
    if (sslerr == SSL_ERROR_SYSCALL)
        return -saved_errno;
    return -EPROTO;
}

static ac_poll_t tls_poll_read(struct ac_stream *s, struct ac_context *cx, void *buf, size_t len,
                               ssize_t *out)
{
    struct ac_tls_stream *t = tls_of(s);
    if (t->read_eof || len == 0) {
        *out = 0;
        return AC_READY;
    }
    if (t->failed || t->ssl == NULL) {
        *out = -EPIPE;
        return AC_READY;
    }
    struct tls_wait w = {0};
    /* Nothing buffered inside OpenSSL: only the socket can make progress, so
     * ask the reactor first (and sleep without a syscall when idle). */
    if (!SSL_has_pending(t->ssl)) {
        if (tls_wait_dir(t, cx, AC_DIR_READ, &w) == AC_PENDING)
            return AC_PENDING;
    }
    struct tls_io io = {.writing = false, .rbuf = buf, .len = len};
    return tls_io_run(t, cx, &w, &io, read_error, out);
}

/* ---- write ---- */

/* Maps a write failure that is not a WANT. Returns the value for *out. */
static ssize_t write_error(struct ac_tls_stream *t, int sslerr, int saved_errno)
{
    if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_SSL)
        t->failed = true;
    if (sslerr == SSL_ERROR_SYSCALL && saved_errno != 0)
        return -saved_errno;
    if (sslerr == SSL_ERROR_SSL)
        return -EPROTO;
    return -EPIPE;
}

static ac_poll_t tls_poll_write(struct ac_stream *s, struct ac_context *cx, const void *buf,
                                size_t len, ssize_t *out)
{
    struct ac_tls_stream *t = tls_of(s);
    if (t->failed || t->shutdown_sent || t->ssl == NULL) {
        *out = -EPIPE;
        return AC_READY;
    }
    if (len == 0) {
        *out = 0;
        return AC_READY;
    }
    struct tls_wait w = {0};
    /* Once the handshake is over a write only ever needs the socket's send
     * room: skip the doomed system call while there is none. (During the
     * handshake it may need to read first.) */
    if (SSL_is_init_finished(t->ssl)) {
        if (tls_wait_dir(t, cx, AC_DIR_WRITE, &w) == AC_PENDING)
            return AC_PENDING;
    }
    struct tls_io io = {.writing = true, .wbuf = buf, .len = len};
    return tls_io_run(t, cx, &w, &io, write_error, out);
}

/* ---- shutdown ---- */

/* Sends close_notify (without waiting for the peer's). Returns AC_READY when
 * done or impossible (the socket is then shut anyway), *err set on a socket
 * error. */
static ac_poll_t send_close_notify(struct ac_tls_stream *t, struct ac_context *cx, int *err)
{
    *err = 0;
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return AC_READY; /* no TLS session to close: just shut the socket */
    struct tls_wait w = {0};
    for (;;) {
        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        ERR_clear_error();
        errno = 0;
        int r = SSL_shutdown(t->ssl);
        int saved_errno = errno;
        if (r >= 0)
            return AC_READY; /* 0: sent; 1: both sides closed */
        int sslerr = SSL_get_error(t->ssl, r);
        if (sslerr == SSL_ERROR_WANT_WRITE) {
            if (tls_want(t, cx, sslerr, &w) == 0)
                return AC_PENDING;
            continue;
        }
        /* WANT_READ cannot concern our close_notify (it is about the
         * peer's); anything else is an error. */
        if (sslerr != SSL_ERROR_WANT_READ) {
            t->failed = true;
            if (sslerr == SSL_ERROR_SYSCALL && saved_errno != 0)
                *err = -saved_errno;
        }
        ERR_clear_error();
        return AC_READY;
    }
}

static ac_poll_t tls_poll_shutdown(struct ac_stream *s, struct ac_context *cx, int *out)
{
    struct ac_tls_stream *t = tls_of(s);
    if (t->shutdown_sent) {
        *out = 0;
        return AC_READY;
    }
    if (t->ssl == NULL || t->base.io.fd < 0) {
        *out = -ENOTCONN;
        return AC_READY;
    }
    int err = 0;
    if (send_close_notify(t, cx, &err) == AC_PENDING)
        return AC_PENDING;
    t->shutdown_sent = true;
    if (shutdown(t->base.io.fd, SHUT_WR) < 0 && errno != ENOTCONN && err == 0)
        err = -errno;
    *out = err;
    return AC_READY;
}

/* ---- close ---- */

static void tls_close(struct ac_stream *s)
{
    struct ac_tls_stream *t = tls_of(s);
    if (t->ssl != NULL) {
        SSL_free(t->ssl); /* no close_notify here: poll_shutdown sends it */
        t->ssl = NULL;
    }
    ac_io_close(&t->base.io, t->base.io.fd);
    t->base.io.fd = -1;
}

static const struct ac_stream_vtable tls_vtable = {
    .poll_read = tls_poll_read,
    .poll_write = tls_poll_write,
    .poll_shutdown = tls_poll_shutdown,
    .close = tls_close,
};

int ac_tls_stream_wrap(struct ac_tls_stream *tls, struct ac_stream *sock, SSL_CTX *ctx,
                       bool server)
{
    if (sock == NULL || sock->vt == NULL || sock->io.fd < 0 || ctx == NULL)
        return -EINVAL;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return -ENOMEM;
    }
    if (!SSL_set_fd(ssl, sock->io.fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* The context builder sets these too; a caller's own ctx may not. */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* An EOF without close_notify ends the read side like an EOF (a proxy
     * passes it on as a half-close) and must not poison the write side. */
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);

    memset(tls, 0, sizeof(*tls));
    tls->base.vt = &tls_vtable;
    tls->base.io = sock->io; /* the registration moves: same slot, same wakers */
    tls->ssl = ssl;
    /* sock is now closed (as after ac_stream_close) without closing the fd
     * or deregistering: closing it again is a no-op. */
    sock->vt = NULL;
    sock->io.fd = -1;
    sock->io.worker = NULL;
    return 0;
}

/* ---- handshake ---- */

/* Describes the first queued OpenSSL error (or the certificate verification
 * result) into h->reason. */
static void handshake_reason(struct ac_tls_handshake *h, int sslerr, int saved_errno)
{
    unsigned long e = ERR_peek_error();
    SSL *ssl = h->tls->ssl;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
        SSL_get_verify_result(ssl) != X509_V_OK) {
        snprintf(h->reason, sizeof(h->reason), "certificate verify failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    } else if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r != NULL)
            snprintf(h->reason, sizeof(h->reason), "%s", r);
        else
            ERR_error_string_n(e, h->reason, sizeof(h->reason));
    } else if (sslerr == SSL_ERROR_SYSCALL && saved_errno != 0) {
        snprintf(h->reason, sizeof(h->reason), "%s", strerror(saved_errno));
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        snprintf(h->reason, sizeof(h->reason), "connection closed during handshake");
    } else {
        snprintf(h->reason, sizeof(h->reason), "handshake failed (SSL error %d)", sslerr);
    }
}

static ac_poll_t handshake_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ac_tls_handshake *h = (struct ac_tls_handshake *)f;
    struct ac_tls_stream *t = h->tls;
    if (t->ssl == NULL || t->failed) {
        h->err = -EPIPE;
        snprintf(h->reason, sizeof(h->reason), "stream closed");
        return AC_READY;
    }
    struct tls_wait w = {0};
    for (;;) {
        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(t->ssl);
        int saved_errno = errno;
        if (r == 1) {
            t->handshake_done = true;
            h->err = 0;
            return AC_READY;
        }
        int sslerr = SSL_get_error(t->ssl, r);
        int want = tls_want(t, cx, sslerr, &w);
        if (want == 0)
            return AC_PENDING;
        if (want > 0)
            continue;
        handshake_reason(h, sslerr, saved_errno);
        t->failed = true;
        if (sslerr == SSL_ERROR_SYSCALL && saved_errno != 0 && ERR_peek_error() == 0)
            h->err = -saved_errno;
        else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
            h->err = -ECONNRESET;
        else
            h->err = -EPROTO;
        ERR_clear_error();
        return AC_READY;
    }
}

static void handshake_drop(struct ac_future *f)
{
    (void)f; /* the stream owns every resource; wakers live in its registration */
}

static const struct ac_future_vtable handshake_vtable = {
    .poll = handshake_poll,
    .drop = handshake_drop,
};

void ac_tls_handshake_init(struct ac_tls_handshake *h, struct ac_tls_stream *tls)
{
    h->base.vt = &handshake_vtable;
    h->tls = tls;
    h->err = 0;
    h->reason[0] = '\0';
}

const char *ac_tls_servername(const struct ac_tls_stream *tls)
{
    if (tls == NULL || tls->ssl == NULL)
        return NULL;
    return SSL_get_servername(tls->ssl, TLSEXT_NAMETYPE_host_name);
}

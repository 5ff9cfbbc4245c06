/* ferryd: reading what a client sends first without taking it.
 *
 * The PROXY header and the TLS ClientHello are read with MSG_PEEK into the
 * worker's scratch buffer and parsed again each time more bytes arrived, so a
 * connection holds no buffer while it waits. A PROXY header is then consumed
 * exactly (recv of its length), so what follows, a TLS handshake included,
 * is untouched. A ClientHello is left in the socket: the copy forwards it.
 *
 * Edge-triggered readiness: after a parse that needs more bytes, readiness is
 * cleared (unless a newer event came in meanwhile) so the next wake-up means
 * new data. A peer that half-closed before a whole header is rejected.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "asynccore/copy.h"
#include "asynccore/runtime.h"
#include "proto/clienthello.h"
#include "proxy/peek.h"
#include "proto/proxy_proto.h"

static int parse(struct ferry_peek *p, const uint8_t *buf, size_t n)
{
    if (p->kind == FERRY_PEEK_PROXY) {
        int rc = ferry_proxy_parse(buf, n, &p->proxy);
        if (rc > 0)
            p->consume = (size_t)rc;
        return rc > 0 ? 1 : rc;
    }
    enum ferry_ch_result r = ferry_clienthello_parse(buf, n, &p->hello);
    return r == FERRY_CH_OK ? 1 : r == FERRY_CH_NEED_MORE ? 0 : -EINVAL;
}

static ac_poll_t finish(struct ferry_peek *p, int err)
{
    p->err = err;
    if (err == 0 && p->consume > 0) {
        /* The header is in the socket buffer already: this recv cannot block. */
        uint8_t *scratch = ac_worker_scratch(p->worker);
        ssize_t n = recv(p->s->io.fd, scratch, p->consume, 0);
        if (n != (ssize_t)p->consume)
            p->err = n < 0 ? -errno : -EIO;
    }
    return AC_READY;
}

static ac_poll_t peek_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_peek *p = (struct ferry_peek *)f;
    p->worker = cx->worker;
    size_t cap = p->kind == FERRY_PEEK_PROXY ? FERRY_PROXY_MAX : FERRY_CLIENTHELLO_MAX;
    uint8_t *scratch = ac_worker_scratch(cx->worker);
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(&p->s->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = recv(p->s->io.fd, scratch, cap, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ac_io_clear_ready(&p->s->io, AC_DIR_READ, ev);
            continue;
        }
        if (n < 0)
            return finish(p, errno == EINTR ? -EINTR : -errno);
        if (n == 0)
            return finish(p, -EPIPE);
        p->seen = (size_t)n;
        int rc = parse(p, scratch, (size_t)n);
        if (rc != 0)
            return finish(p, rc > 0 ? 0 : rc);
        if ((size_t)n >= cap || (ev.ready & (AC_READ_CLOSED | AC_ERROR)))
            return finish(p, -EINVAL); /* too long, or the peer stopped sending */
        ac_io_clear_ready(&p->s->io, AC_DIR_READ, ev);
    }
}

static void peek_drop(struct ac_future *f) { (void)f; }

static const struct ac_future_vtable peek_vt = {peek_poll, peek_drop};

void ferry_peek_init(struct ferry_peek *p, struct ac_stream *s, enum ferry_peek_kind kind)
{
    memset(p, 0, sizeof(*p));
    p->base.vt = &peek_vt;
    p->s = s;
    p->kind = kind;
}

/* ferryd: a tiny one-request-per-connection server (see reqserver.h).
 *
 * A client's one deadline (an ac_deadline it owns) bounds each stage in
 * turn: armed with read_timeout_ms for the request, moved to
 * write_timeout_ms for the answer and to LINGER_MS for the drain, disarmed
 * when the client is dropped. The accept task's pause after a failure is a
 * deadline too, armed only while pausing.
 *
 * The pool (reqserver.h) lists the clients held, oldest first. A client is
 * idle unless it is building its answer (C_RESPOND): idle ones may be
 * closed to make room, by shutdown(2) of their socket, which wakes their
 * task at once (it then ends without another byte). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/deadline.h"
#include "asynccore/net.h"
#include "control/reqserver.h"

enum { LINGER_MAX = 64 * 1024, LINGER_MS = 2000, ACCEPT_BATCH = 64, RETRY_MS = 200 };

/* ---- the pool ---- */

void ferry_rs_pool_init(struct ferry_rs_pool *p, unsigned max_clients, unsigned per_peer)
{
    memset(p, 0, sizeof(*p));
    p->max_clients = max_clients ? max_clients : 1;
    p->per_peer = per_peer;
}

void ferry_rs_pool_destroy(struct ferry_rs_pool *p) { ac_waker_drop(&p->accept_waker); }

static void pool_link(struct ferry_rs_pool *p, struct ferry_rs_client *c)
{
    c->older = p->newest;
    c->newer = NULL;
    if (p->newest)
        p->newest->newer = c;
    else
        p->oldest = c;
    p->newest = c;
    c->held = true;
    p->n++;
}

/* Out of the pool (closed, or dropped): room for another; the accept task,
 * if it waits for room, tries again. */
static void pool_unlink(struct ferry_rs_pool *p, struct ferry_rs_client *c)
{
    if (!c->held)
        return;
    if (c->older)
        c->older->newer = c->newer;
    else
        p->oldest = c->newer;
    if (c->newer)
        c->newer->older = c->older;
    else
        p->newest = c->older;
    c->older = c->newer = NULL;
    c->held = false;
    p->n--;
    ac_waker_wake(&p->accept_waker);
}

enum { C_INIT, C_READ, C_RESPOND, C_WRITE, C_LINGER, C_DONE };

static bool idle(const struct ferry_rs_client *c) { return c->state != C_RESPOND; }

static bool same_peer(const struct ferry_rs_client *c, const struct sockaddr_storage *sa)
{
    if (c->peer.ss_family != sa->ss_family)
        return false;
    if (sa->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&c->peer)->sin_addr,
                      &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0;
    if (sa->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&c->peer)->sin6_addr,
                      &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
    return true; /* Unix peers have no address worth telling apart */
}

/* The oldest idle client (of peer sa when not NULL); *count: the clients
 * of that peer. */
static struct ferry_rs_client *oldest_idle(const struct ferry_rs_pool *p,
                                           const struct sockaddr_storage *sa, unsigned *count)
{
    struct ferry_rs_client *found = NULL;
    unsigned k = 0;
    for (struct ferry_rs_client *c = p->oldest; c; c = c->newer) {
        if (sa && !same_peer(c, sa))
            continue;
        k++;
        if (!found && idle(c))
            found = c;
    }
    if (count)
        *count = k;
    return found;
}

/* Closes an idle client to make room: its task sees the end of the
 * connection at once and ends. */
static void evict(struct ferry_rs_pool *p, struct ferry_rs_client *c)
{
    pool_unlink(p, c);
    c->evicted = true;
    shutdown(c->fd, SHUT_RDWR);
}

/* ---- raw socket I/O on a registration ---- */

/* recv() once: Ready with *out = bytes, 0 at EOF, or -errno. */
static ac_poll_t poll_recv(struct ac_io *io, struct ac_context *cx, void *buf, size_t len,
                           ssize_t *out)
{
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = recv(io->fd, buf, len, 0);
        if (n >= 0) {
            *out = n;
            return AC_READY;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ac_io_clear_ready(io, AC_DIR_READ, ev);
            continue;
        }
        if (errno != EINTR) {
            *out = -errno;
            return AC_READY;
        }
    }
}

/* send() once, never raising SIGPIPE. */
static ac_poll_t poll_send(struct ac_io *io, struct ac_context *cx, const void *buf, size_t len,
                           ssize_t *out)
{
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(io, cx, AC_DIR_WRITE, &ev) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = send(io->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *out = n;
            return AC_READY;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ac_io_clear_ready(io, AC_DIR_WRITE, ev);
            continue;
        }
        if (errno != EINTR) {
            *out = -errno;
            return AC_READY;
        }
    }
}

/* ---- one client ---- */

/* Pending I/O: true if the stage's deadline passed meanwhile (else the
 * task is woken when it passes). */
static bool timed_out(struct ferry_rs_client *c, struct ac_context *cx)
{
    return ac_deadline_poll(&c->deadline, cx) == AC_READY;
}

static int client_init(struct ferry_rs_client *c, struct ac_context *cx)
{
    c->req = malloc(c->ops->max_request + 1);
    if (!c->req || ac_io_register(cx->worker, c->fd, 0, &c->io) != 0)
        return -1;
    c->registered = true;
    c->req[0] = '\0';
    ac_deadline_arm_in(&c->deadline, c->ops->read_timeout_ms);
    return 0;
}

/* Reads until a complete request, EOF or the size bound. */
static ac_poll_t client_read(struct ferry_rs_client *c, struct ac_context *cx)
{
    const struct ferry_rs_ops *ops = c->ops;
    for (;;) {
        size_t whole = ops->complete(c->req, c->req_len);
        if (whole) {
            c->req_len = whole;
            c->req[whole] = '\0';
            c->state = C_RESPOND;
            return AC_READY;
        }
        if (c->req_len == ops->max_request) {
            c->overflow = true;
            c->state = C_RESPOND;
            return AC_READY;
        }
        ssize_t n;
        if (poll_recv(&c->io, cx, c->req + c->req_len, ops->max_request - c->req_len, &n) ==
            AC_PENDING) {
            if (!timed_out(c, cx))
                return AC_PENDING;
            c->state = C_DONE; /* silent client: close without an answer */
            return AC_READY;
        }
        if (n < 0) {
            c->state = C_DONE;
            return AC_READY;
        }
        if (n == 0) {
            c->eof = true;
            c->state = c->req_len ? C_RESPOND : C_DONE;
            return AC_READY;
        }
        c->req_len += (size_t)n;
        c->req[c->req_len] = '\0';
    }
}

static ac_poll_t client_write(struct ferry_rs_client *c, struct ac_context *cx)
{
    while (c->written < c->out.len) {
        ssize_t n;
        if (poll_send(&c->io, cx, c->out.data + c->written, c->out.len - c->written, &n) ==
            AC_PENDING) {
            if (!timed_out(c, cx))
                return AC_PENDING;
            c->state = C_DONE;
            return AC_READY;
        }
        if (n <= 0) {
            c->state = C_DONE;
            return AC_READY;
        }
        c->written += (size_t)n;
    }
    /* Answer sent: end our side, then let the client's leftovers drain so
     * that closing does not reset the connection under the answer. */
    shutdown(c->fd, SHUT_WR);
    ac_deadline_arm_in(&c->deadline, LINGER_MS);
    c->state = C_LINGER;
    return AC_READY;
}

static ac_poll_t client_linger(struct ferry_rs_client *c, struct ac_context *cx)
{
    char sink[4096];
    while (c->lingered < LINGER_MAX) {
        ssize_t n;
        if (poll_recv(&c->io, cx, sink, sizeof(sink), &n) == AC_PENDING) {
            if (!timed_out(c, cx))
                return AC_PENDING;
            break;
        }
        if (n <= 0)
            break;
        c->lingered += (size_t)n;
    }
    c->state = C_DONE;
    return AC_READY;
}

static ac_poll_t client_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_rs_client *c = (struct ferry_rs_client *)f;
    for (;;) {
        ac_poll_t r = AC_READY;
        if (c->evicted) /* closed to make room: not another byte */
            c->state = C_DONE;
        switch (c->state) {
        case C_INIT:
            c->state = client_init(c, cx) == 0 ? C_READ : C_DONE;
            break;
        case C_READ:
            r = client_read(c, cx);
            break;
        case C_RESPOND:
            r = c->ops->respond(c, cx);
            if (r == AC_READY) {
                ac_deadline_arm_in(&c->deadline, c->ops->write_timeout_ms);
                c->state = C_WRITE;
                ac_waker_wake(&c->pool->accept_waker); /* idle again: room */
            }
            break;
        case C_WRITE:
            r = client_write(c, cx);
            break;
        case C_LINGER:
            r = client_linger(c, cx);
            break;
        default:
            return AC_READY;
        }
        if (r == AC_PENDING)
            return AC_PENDING;
    }
}

static void client_drop(struct ac_future *f)
{
    struct ferry_rs_client *c = (struct ferry_rs_client *)f;
    if (c->ops->client_drop)
        c->ops->client_drop(c);
    ac_deadline_disarm(&c->deadline);
    if (c->registered)
        ac_io_deregister(&c->io);
    close(c->fd);
    free(c->req);
    ferry_buf_free(&c->out);
    pool_unlink(c->pool, c);
}

static const struct ac_future_vtable client_vt = {client_poll, client_drop};

static void client_dealloc(struct ac_future *f) { free(f); }

/* ---- the accept task ---- */

struct rs_accept {
    struct ac_future base;
    const struct ferry_rs_ops *ops;
    void *arg;
    struct ferry_rs_pool *pool;
    int fd;
    struct ac_listener l;
    bool open;
    struct ac_deadline retry; /* armed while pausing after a failure */
    struct ac_notified stop;  /* the caller's stop (upgrade): accepting ends */
    bool has_stop;
};

static void spawn_client(struct rs_accept *a, struct ac_context *cx, int fd,
                         const struct sockaddr_storage *peer, socklen_t peer_len)
{
    struct ferry_rs_client *c = a->ops->client_new(a->arg);
    if (!c) {
        close(fd);
        return;
    }
    c->base.vt = &client_vt;
    c->ops = a->ops;
    c->arg = a->arg;
    c->pool = a->pool;
    memcpy(&c->peer, peer, sizeof(c->peer));
    c->peer_len = peer_len;
    c->fd = fd;
    c->state = C_INIT;
    ac_deadline_init(&c->deadline);
    ferry_buf_init(&c->out);
    pool_link(a->pool, c);
    ac_spawn(cx->worker, &c->base, client_dealloc); /* on failure it is dropped: unlinked */
}

/* Room for the client just accepted from peer: closes the peer's oldest
 * idle client past per_peer, and the oldest idle one past max_clients.
 * False when the peer holds per_peer clients all building answers (the new
 * one is refused). */
static bool make_room(struct ferry_rs_pool *p, const struct sockaddr_storage *peer)
{
    if (p->per_peer) {
        unsigned count;
        struct ferry_rs_client *c = oldest_idle(p, peer, &count);
        if (count >= p->per_peer) {
            if (!c)
                return false;
            evict(p, c);
        }
    }
    if (p->n >= p->max_clients) {
        struct ferry_rs_client *c = oldest_idle(p, NULL, NULL);
        if (c)
            evict(p, c);
    }
    return true;
}

/* Waits a moment before trying again (registration or accept failures). */
static void start_retry(struct rs_accept *a) { ac_deadline_arm_in(&a->retry, RETRY_MS); }

/* Accepting goes on while there is room or an idle client to close; past
 * twice max_clients all building answers, it waits for one to end. */
static bool full(struct rs_accept *a, struct ac_context *cx)
{
    struct ferry_rs_pool *p = a->pool;
    if (p->n < 2 * p->max_clients || oldest_idle(p, NULL, NULL))
        return false;
    ac_waker_register(&p->accept_waker, cx->waker);
    return true;
}

static ac_poll_t accept_poll(struct ac_future *f, struct ac_context *cx)
{
    struct rs_accept *a = (struct rs_accept *)f;
    /* Clients already accepted go on (the one that asked for the upgrade
     * gets its answer); only accepting ends, and the socket is closed here
     * only: the process it was handed to keeps it open. */
    if (a->has_stop && ac_future_poll(&a->stop.base, cx) == AC_READY)
        return AC_READY;
    for (unsigned batch = 0;; batch++) {
        if (ac_deadline_armed(&a->retry)) {
            if (ac_deadline_poll(&a->retry, cx) == AC_PENDING)
                return AC_PENDING;
            ac_deadline_disarm(&a->retry);
        }
        if (!a->open) {
            if (ac_listener_open(&a->l, cx->worker, a->fd, true, 0) != 0) {
                start_retry(a);
                continue;
            }
            a->open = true;
        }
        if (batch == ACCEPT_BATCH) { /* let the clients run */
            ac_waker_wake_by_ref(cx->waker);
            return AC_PENDING;
        }
        if (full(a, cx))
            return AC_PENDING;
        int fd;
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        memset(&peer, 0, sizeof(peer));
        if (ac_listener_poll_accept(&a->l, cx, &fd, &peer, &peer_len) == AC_PENDING)
            return AC_PENDING;
        if (fd < 0) {
            start_retry(a);
            continue;
        }
        if (!make_room(a->pool, &peer)) {
            close(fd);
            continue;
        }
        spawn_client(a, cx, fd, &peer, peer_len);
    }
}

static void accept_drop(struct ac_future *f)
{
    struct rs_accept *a = (struct rs_accept *)f;
    ac_deadline_disarm(&a->retry);
    if (a->has_stop)
        ac_future_drop(&a->stop.base);
    ac_waker_drop(&a->pool->accept_waker);
    if (a->open)
        ac_listener_close(&a->l); /* owns fd */
    else
        close(a->fd);
}

static const struct ac_future_vtable accept_vt = {accept_poll, accept_drop};

static void accept_dealloc(struct ac_future *f) { free(f); }

int ferry_rs_spawn(struct ac_worker *w, int fd, const struct ferry_rs_ops *ops, void *arg,
                   struct ferry_rs_pool *pool, struct ac_notify *stop)
{
    struct rs_accept *a = calloc(1, sizeof(*a));
    if (!a) {
        close(fd);
        return -ENOMEM;
    }
    a->base.vt = &accept_vt;
    a->ops = ops;
    a->arg = arg;
    a->pool = pool;
    a->fd = fd;
    ac_deadline_init(&a->retry);
    if (stop) {
        ac_notified_init(&a->stop, stop);
        a->has_stop = true;
    }
    return ac_spawn(w, &a->base, accept_dealloc);
}

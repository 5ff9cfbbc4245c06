/* asynccore: addresses, listening sockets, accept and connect.
 *
 * Accept follows the edge-triggered rule (accept until EAGAIN, then clear the
 * readiness) with the cooperative budget as the per-wake-up cap. Running out
 * of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) leaves the
 * connection in the kernel queue and produces no new edge, so retrying at
 * once would spin and waiting for readiness would hang: the listener pauses on
 * its embedded sleep instead (10 ms doubling to 1 s), like HAProxy's
 * listener_accept and nginx's ngx_event_accept.
 */
#include "asynccore/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "asynccore/runtime.h"

#define BACKOFF_MIN_MS 10u
#define BACKOFF_MAX_MS 1000u

/* ---- addresses ---- */

static void format_unix(const struct sockaddr_un *sun, socklen_t len, char *buf, size_t bufsize)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t plen = len > off ? (size_t)len - off : 0;

    if (plen > sizeof(sun->sun_path))
        plen = sizeof(sun->sun_path);
    if (plen == 0) { /* unnamed (an accepted or unbound socket) */
        snprintf(buf, bufsize, "unix:");
    } else if (sun->sun_path[0] == '\0') { /* abstract namespace, shown as @name */
        snprintf(buf, bufsize, "unix:@%.*s", (int)(plen - 1), sun->sun_path + 1);
    } else {
        size_t n = strnlen(sun->sun_path, plen);
        snprintf(buf, bufsize, "unix:%.*s", (int)n, sun->sun_path);
    }
}

char *ac_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t bufsize)
{
    char host[INET6_ADDRSTRLEN];

    if (bufsize == 0)
        return buf;
    if (sa == NULL || len < (socklen_t)sizeof(sa_family_t)) {
        snprintf(buf, bufsize, "?");
        return buf;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (len < (socklen_t)sizeof(*in) || !inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)))
            snprintf(buf, bufsize, "?");
        else
            snprintf(buf, bufsize, "%s:%u", host, (unsigned)ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (len < (socklen_t)sizeof(*in6) ||
            !inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)))
            snprintf(buf, bufsize, "?");
        else
            snprintf(buf, bufsize, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX:
        format_unix((const struct sockaddr_un *)sa, len, buf, bufsize);
        break;
    default:
        snprintf(buf, bufsize, "?");
        break;
    }
    return buf;
}

/* ---- listening sockets ---- */

static int set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

/* A Unix socket file left by a dead process is removed; one a live server
 * still accepts on is not (binding then fails with EADDRINUSE), and a path
 * that is not a socket is never touched. */
static void unlink_stale_unix(const struct sockaddr_un *sun, socklen_t len)
{
    struct stat st;

    if (len <= (socklen_t)offsetof(struct sockaddr_un, sun_path) || sun->sun_path[0] == '\0')
        return; /* unnamed or abstract: no file */
    if (lstat(sun->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return;
    int r = connect(probe, (const struct sockaddr *)sun, len);
    int e = errno;
    close(probe);
    if (r != 0 && e == ECONNREFUSED)
        unlink(sun->sun_path);
}

static int listen_options(int fd, int family, unsigned flags)
{
    int r = 0;

    if (family == AF_INET || family == AF_INET6)
        r = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (r == 0 && (flags & AC_LISTEN_REUSEPORT))
        r = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    /* Set either way so the result does not depend on net.ipv6.bindv6only. */
    if (r == 0 && family == AF_INET6)
        r = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (flags & AC_LISTEN_V6ONLY) ? 1 : 0);
    return r;
}

/* A stream socket of family, Multipath TCP when asked (inet families only). */
static int stream_socket(int family, bool mptcp)
{
    int proto = mptcp && (family == AF_INET || family == AF_INET6) ? AC_IPPROTO_MPTCP : 0;
    if (mptcp && proto == 0 && (family == AF_INET || family == AF_INET6))
        return -EPROTONOSUPPORT;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    return fd < 0 ? -errno : fd;
}

/* The kernel has no Multipath TCP (built without it, or net.mptcp.enabled = 0). */
static bool no_mptcp(int err)
{
    return err == -EPROTONOSUPPORT || err == -ENOPROTOOPT || err == -EINVAL ||
           err == -EAFNOSUPPORT;
}

int ac_listen_socket(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags)
{
    int fd = stream_socket(sa->sa_family, (flags & AC_LISTEN_MPTCP) != 0);
    if (fd < 0)
        return no_mptcp(fd) && (flags & AC_LISTEN_MPTCP) ? -EPROTONOSUPPORT : fd;
    int r = listen_options(fd, sa->sa_family, flags);
    if (r == 0 && sa->sa_family == AF_UNIX)
        unlink_stale_unix((const struct sockaddr_un *)sa, len);
    if (r == 0 && bind(fd, sa, len) != 0)
        r = -errno;
    if (r == 0 && listen(fd, backlog) != 0)
        r = -errno;
    if (r != 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* ---- listener ---- */

int ac_listener_open(struct ac_listener *l, struct ac_worker *w, int fd, bool owns_fd,
                     unsigned flags)
{
    memset(l, 0, sizeof(*l));
    l->io.fd = -1;
    l->backoff_ms = BACKOFF_MIN_MS;
    l->reg_flags = flags;
    int r = ac_io_register(w, fd, flags, &l->io);
    if (r < 0) {
        l->io.worker = NULL;
        l->io.fd = -1;
        return r;
    }
    l->io.fd = fd;
    l->owns_fd = owns_fd;
    /* Accepted TCP sockets inherit TCP_NODELAY from the listening one (Linux,
     * the BSDs): set it once here instead of once per connection. Fails on
     * a Unix socket, which needs nothing. */
    int one = 1;
    l->nodelay_inherited = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0;
    return 0;
}

void ac_listener_close(struct ac_listener *l)
{
    ac_future_drop(&l->retry.base);
    l->retry_armed = false;
    ac_io_deregister(&l->io);
    if (l->owns_fd && l->io.fd >= 0)
        close(l->io.fd);
    l->io.fd = -1;
    l->owns_fd = false;
}

/* Errors the kernel reports on accept for a connection that is already gone
 * or for a network error pending on it: skip that connection, keep going. */
static bool accept_transient(int e)
{
    switch (e) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM: /* a firewall rule refused it */
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
#ifdef ENONET
    case ENONET:
#endif
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

static bool accept_resource(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Starts the back-off sleep. Each further pause doubles it, up to 1 s. */
static void pause_listener(struct ac_listener *l)
{
    l->paused = true;
    l->accept_errors++;
    ac_sleep_init(&l->retry, l->backoff_ms);
    l->retry_armed = true;
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

/* Pending while the back-off sleep runs (the sleep holds the waker). */
static ac_poll_t wait_backoff(struct ac_listener *l, struct ac_context *cx)
{
    if (!l->retry_armed)
        return AC_READY;
    if (ac_future_poll(&l->retry.base, cx) == AC_PENDING)
        return AC_PENDING;
    ac_future_drop(&l->retry.base);
    l->retry_armed = false;
    l->paused = false;
    return AC_READY;
}

/* A hang-up or error the reactor saw while the socket did not listen yet
 * (an inherited socket bound before its listen(2)) is final for a stream but
 * not for a listener, whose accept now says EAGAIN: register afresh, so
 * that stale state cannot make the listener look ready forever. */
static int reregister(struct ac_listener *l)
{
    struct ac_worker *w = l->io.worker;
    int fd = l->io.fd;
    ac_io_deregister(&l->io);
    int r = ac_io_register(w, fd, l->reg_flags, &l->io);
    l->io.fd = fd;
    return r;
}

static void set_nodelay(int fd, const struct sockaddr_storage *peer)
{
    if (peer->ss_family == AF_INET || peer->ss_family == AF_INET6) {
        int one = 1;
        /* Best effort: a failure here does not make the connection unusable. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

ac_poll_t ac_listener_poll_accept(struct ac_listener *l, struct ac_context *cx, int *fd_out,
                                  struct sockaddr_storage *peer, socklen_t *peer_len)
{
    for (;;) {
        struct ac_ready_event ev;

        if (wait_backoff(l, cx) == AC_PENDING)
            return AC_PENDING;
        if (!ac_coop_proceed(cx))
            return AC_PENDING;
        if (ac_io_poll_ready(&l->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        *peer_len = sizeof(*peer);
        int fd = accept4(l->io.fd, (struct sockaddr *)peer, peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (!l->nodelay_inherited)
                set_nodelay(fd, peer);
            l->accepted++;
            l->backoff_ms = BACKOFF_MIN_MS;
            *fd_out = fd;
            return AC_READY;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            if (ev.ready & (AC_READ_CLOSED | AC_ERROR)) {
                int r = reregister(l);
                if (r < 0) {
                    *fd_out = r;
                    return AC_READY;
                }
            } else {
                ac_io_clear_ready(&l->io, AC_DIR_READ, ev);
            }
        } else if (accept_transient(e)) {
            l->accept_errors++;
        } else if (accept_resource(e)) {
            pause_listener(l);
        } else {
            /* Reported to the caller, and retried after the same back-off:
             * an unexpected error must not end accepting for good. */
            pause_listener(l);
            *fd_out = -e;
            return AC_READY;
        }
    }
}

ac_poll_t ac_listener_poll_acceptable(struct ac_listener *l, struct ac_context *cx)
{
    struct ac_ready_event ev;

    if (wait_backoff(l, cx) == AC_PENDING)
        return AC_PENDING;
    return ac_io_poll_ready(&l->io, cx, AC_DIR_READ, &ev);
}

/* ---- ac_accept ---- */

static ac_poll_t accept_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_accept *a = (struct ac_accept *)self;
    int fd;

    if (ac_listener_poll_accept(a->l, cx, &fd, &a->peer, &a->peer_len) == AC_PENDING)
        return AC_PENDING;
    if (fd >= 0) {
        a->fd = fd;
        a->err = 0;
    } else {
        a->fd = -1;
        a->err = fd;
    }
    return AC_READY;
}

static const struct ac_future_vtable accept_vt = {accept_poll, NULL};

void ac_accept_init(struct ac_accept *a, struct ac_listener *l)
{
    a->base.vt = &accept_vt;
    a->l = l;
    a->fd = -1;
    a->err = 0;
    memset(&a->peer, 0, sizeof(a->peer));
    a->peer_len = 0;
}

/* ---- ac_connect ---- */

/* Creates the socket and starts the connection. Returns 1 when connected at
 * once, 0 when in progress (stream registered), or -errno. */
static int connect_start(struct ac_connect *c, struct ac_worker *w)
{
    int family = c->addr.ss_family;
    int fd = stream_socket(family, c->mptcp);
    if (fd < 0 && c->mptcp && no_mptcp(fd))
        fd = stream_socket(family, false); /* no Multipath TCP here: plain TCP */
    if (fd < 0)
        return fd;
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int done = 1;
    if (connect(fd, (const struct sockaddr *)&c->addr, c->addr_len) != 0) {
        /* EINTR on a non-blocking connect: it goes on in the background. */
        if (errno != EINPROGRESS && errno != EINTR) {
            int e = -errno;
            close(fd);
            return e;
        }
        done = 0;
    }
    int r = ac_socket_stream_open(c->stream, w, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    return done;
}

/* After writability: 1 connected, 0 not yet (spurious), or -errno. */
static int connect_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        return -errno;
    if (soerr != 0)
        return -soerr;
    struct sockaddr_storage ss;
    len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        return 1;
    return errno == ENOTCONN ? 0 : -errno;
}

static ac_poll_t connect_fail(struct ac_connect *c, int err)
{
    ac_stream_close(c->stream);
    c->err = err;
    return AC_READY;
}

static ac_poll_t connect_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_connect *c = (struct ac_connect *)self;

    if (!c->started) {
        c->started = true;
        int r = connect_start(c, cx->worker);
        if (r < 0) {
            c->err = r;
            return AC_READY;
        }
        if (r == 1) {
            c->err = 0;
            return AC_READY;
        }
        c->err = -EINPROGRESS; /* marks the stream as still ours (see drop) */
    }
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(&c->stream->io, cx, AC_DIR_WRITE, &ev) == AC_PENDING)
            return AC_PENDING;
        /* Plain writability (no error, no hang-up) is only reported once the
         * connection is established: no system call to ask. */
        if ((ev.ready & (AC_ERROR | AC_WRITE_CLOSED)) == 0) {
            c->err = 0; /* the stream now belongs to the caller */
            return AC_READY;
        }
        int r = connect_result(c->stream->io.fd);
        if (r < 0)
            return connect_fail(c, r);
        if (r == 1) {
            c->err = 0; /* the stream now belongs to the caller */
            return AC_READY;
        }
        ac_io_clear_ready(&c->stream->io, AC_DIR_WRITE, ev);
    }
}

/* Dropped while connecting: the half-open socket is ours to close. */
static void connect_drop(struct ac_future *self)
{
    struct ac_connect *c = (struct ac_connect *)self;

    if (c->started && c->err == -EINPROGRESS)
        ac_stream_close(c->stream);
}

static const struct ac_future_vtable connect_vt = {connect_poll, connect_drop};

void ac_connect_init(struct ac_connect *c, const struct sockaddr *sa, socklen_t len,
                     struct ac_stream *stream)
{
    c->base.vt = &connect_vt;
    memset(&c->addr, 0, sizeof(c->addr));
    if (len > (socklen_t)sizeof(c->addr))
        len = sizeof(c->addr);
    memcpy(&c->addr, sa, len);
    c->addr_len = len;
    c->stream = stream;
    stream->vt = NULL;
    stream->io.worker = NULL;
    stream->io.fd = -1;
    c->err = 0;
    c->mptcp = false;
    c->started = false;
}

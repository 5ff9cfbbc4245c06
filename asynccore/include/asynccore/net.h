/* asynccore: TCP and Unix listeners and connects.
 *
 * A listener wraps a listening socket registered with one worker. Several
 * workers may each wrap the same descriptor (owns_fd false for all but the
 * owner, flag AC_REG_EXCLUSIVE) so that one shared accept queue feeds every
 * worker.
 *
 * accept survives EMFILE/ENFILE/ENOBUFS/ENOMEM without spinning: the listener
 * stops accepting and retries from a timer (edge-triggered epoll would give no
 * new edge), doubling the back-off from 10 ms up to 1 s, and keeps serving the
 * connections it has.
 */
#ifndef ASYNCCORE_NET_H
#define ASYNCCORE_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/future.h"
#include "asynccore/reactor.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

struct ac_worker;

/* ---- addresses ---- */

/* Formats "1.2.3.4:80", "[::1]:80" or "unix:/path" into buf. Returns buf. */
char *ac_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t bufsize);
#define AC_ADDR_STRLEN 128

/* ---- listening sockets ---- */

enum {
    AC_LISTEN_REUSEPORT = 1u << 0, /* SO_REUSEPORT */
    AC_LISTEN_V6ONLY = 1u << 1,    /* IPV6_V6ONLY on an AF_INET6 socket */
    AC_LISTEN_MPTCP = 1u << 2,     /* an IPPROTO_MPTCP socket (Linux): Multipath TCP
                                    * clients and plain TCP ones alike;
                                    * -EPROTONOSUPPORT where the kernel has none */
};

/* Creates a non-blocking, close-on-exec listening socket bound to sa
 * (SO_REUSEADDR for TCP; a stale Unix socket file is replaced). Returns the
 * descriptor or -errno. */
int ac_listen_socket(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags);

struct ac_listener {
    struct ac_io io;
    bool owns_fd;
    bool paused;          /* accepting stopped by EMFILE-type errors */
    unsigned reg_flags;   /* how the socket is registered (AC_REG_*) */
    unsigned backoff_ms;  /* current EMFILE back-off */
    struct ac_sleep retry; /* the back-off timer */
    bool retry_armed;
    bool nodelay_inherited; /* TCP_NODELAY set on the listening socket: accepted
                               sockets inherit it (no setsockopt per accept) */
    uint64_t accepted;    /* counter */
    uint64_t accept_errors;
};

/* Registers fd with w. owns_fd: close it in ac_listener_close. flags as for
 * ac_io_register. Returns 0 or -errno. */
int ac_listener_open(struct ac_listener *l, struct ac_worker *w, int fd, bool owns_fd,
                     unsigned flags);
void ac_listener_close(struct ac_listener *l);

/* Accepts one connection: Ready with *fd_out >= 0 (non-blocking, close-on-
 * exec, TCP_NODELAY on TCP) and the peer address, or Ready with a negative
 * errno for an unexpected error (reported once per occurrence; the listener
 * then pauses with the same back-off as for EMFILE, so calling again goes on
 * accepting after it). Transient errors (ECONNABORTED, EPROTO, EINTR) are
 * skipped; EMFILE-type errors pause the listener as described above. */
ac_poll_t ac_listener_poll_accept(struct ac_listener *l, struct ac_context *cx, int *fd_out,
                                  struct sockaddr_storage *peer, socklen_t *peer_len);

/* Ready when an accept should be tried now (readiness seen, no back-off
 * running); Pending with the waker registered otherwise. Accepts nothing:
 * lets a caller take a resource (a connection permit) only once a
 * connection is ready to be accepted. */
ac_poll_t ac_listener_poll_acceptable(struct ac_listener *l, struct ac_context *cx);

/* Future form of ac_listener_poll_accept. Output: fd (>= 0, owned by the
 * caller) or err, peer, peer_len. */
struct ac_accept {
    struct ac_future base;
    struct ac_listener *l;
    int fd;
    int err;
    struct sockaddr_storage peer;
    socklen_t peer_len;
};
void ac_accept_init(struct ac_accept *a, struct ac_listener *l);

/* ---- connecting ---- */

/* Connects a non-blocking socket to sa. Ready with err 0 and `stream` opened
 * (registered with the polling task's worker, owned by the caller from then
 * on), or err -errno (ECONNREFUSED, ETIMEDOUT, ...). Dropping it before
 * completion closes the half-open socket. */
struct ac_connect {
    struct ac_future base;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct ac_stream *stream; /* caller's storage for the result */
    int err;
    bool started;
    bool mptcp;               /* set after init: try IPPROTO_MPTCP first (Linux) */
};
void ac_connect_init(struct ac_connect *c, const struct sockaddr *sa, socklen_t len,
                     struct ac_stream *stream);

/* Multipath TCP (Linux 5.6+): IPPROTO_MPTCP, 0 where the system has none. */
#ifdef __linux__
#define AC_IPPROTO_MPTCP 262
#else
#define AC_IPPROTO_MPTCP 0
#endif

#endif

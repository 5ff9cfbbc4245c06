/* What the asynccore examples share: numeric addresses, a listening socket
 * that reports its port, one accept task per worker, stopping on SIGINT or
 * SIGTERM, and a lazy idle timer.
 *
 * Header-only (static inline) so that each example still builds as
 *   cc prog.c $(pkg-config --cflags --libs asynccore)
 * with this file beside it.
 */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/net.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"

/* ---- parsing ---- */

static inline int ex_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Numeric address and port ("127.0.0.1", "::1") into ss. Returns 0 or -1. */
static inline int ex_make_addr(const char *host, unsigned port, struct sockaddr_storage *ss,
                               socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof(*in);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
    } else {
        return -1;
    }
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT", numeric. Returns 0 or -1. */
static inline int ex_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    unsigned long port;

    if (colon == NULL || (size_t)(colon - s) >= sizeof(host) ||
        ex_parse_uint(colon + 1, 65535, &port) != 0)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    return ex_make_addr(h, (unsigned)port, ss, len);
}

/* Listens on sa (port 0: any free port) and prints "NAME: listening on
 * ADDRESS" with the port the kernel gave, so a script can start the
 * example on port 0 and read where it is. Returns the descriptor or -errno. */
static inline int ex_listen(const char *name, const struct sockaddr_storage *sa, socklen_t len)
{
    int fd = ac_listen_socket((const struct sockaddr *)sa, len, 4096, 0);
    if (fd < 0)
        return fd;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    char text[AC_ADDR_STRLEN];
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    fprintf(stderr, "%s: listening on %s\n", name,
            ac_addr_format((struct sockaddr *)&bound, blen, text, sizeof(text)));
    return fd;
}

/* ---- one accept task per worker ---- */

/* Called on the accepting worker with a connected socket it now owns. */
typedef void (*ex_on_accept)(struct ac_worker *w, int fd, const struct sockaddr_storage *peer,
                             socklen_t peer_len, void *arg);

struct ex_acceptor {
    struct ac_future base;
    struct ac_listener listener;
    ex_on_accept on_accept;
    void *arg;
};

static inline ac_poll_t ex_acceptor_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ex_acceptor *a = (struct ex_acceptor *)self;

    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len;
        int fd;

        /* Accepts until the queue is empty (Pending) or the cooperative
         * budget is spent (the task is then queued again). */
        if (ac_listener_poll_accept(&a->listener, cx, &fd, &peer, &peer_len) == AC_PENDING)
            return AC_PENDING;
        if (fd < 0) {
            /* Reported once; the listener pauses and goes on afterwards. */
            fprintf(stderr, "accept: %s\n", strerror(-fd));
            continue;
        }
        a->on_accept(cx->worker, fd, &peer, peer_len, a->arg);
    }
}

static inline void ex_acceptor_drop(struct ac_future *self)
{
    ac_listener_close(&((struct ex_acceptor *)self)->listener);
}

static inline void ex_free_future(struct ac_future *f) { free(f); }

/* Starts an accept task on every worker of rt, all on one shared listening
 * socket (AC_REG_EXCLUSIVE: one accept queue, one worker woken per
 * connection). lfd stays the caller's to close after the runtime is freed.
 * Returns 0 or -errno. */
static inline int ex_accept_everywhere(struct ac_runtime *rt, int lfd, ex_on_accept cb, void *arg)
{
    static const struct ac_future_vtable vt = {ex_acceptor_poll, ex_acceptor_drop};

    for (unsigned i = 0; i < ac_runtime_workers(rt); i++) {
        struct ex_acceptor *a = malloc(sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        int r = ac_listener_open(&a->listener, ac_runtime_worker(rt, i), lfd, false,
                                 AC_REG_EXCLUSIVE);
        if (r < 0) {
            free(a);
            return r;
        }
        a->base.vt = &vt;
        a->on_accept = cb;
        a->arg = arg;
        if ((r = ac_spawn(ac_runtime_worker(rt, i), &a->base, ex_free_future)) < 0)
            return r; /* ac_spawn dropped and freed it */
    }
    return 0;
}

/* ---- stopping on SIGINT / SIGTERM ---- */

/* The signals are blocked in every thread (call ex_block_signals before the
 * runtime starts its threads) and read from a signalfd by a task on worker
 * 0: ac_runtime_stop is not async-signal-safe, and this way a one-worker
 * program is a single thread. */
struct ex_stop {
    struct ac_future base;
    struct ac_io io;
    int sfd;
    struct ac_runtime *rt;
};

static inline void ex_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigprocmask(SIG_BLOCK, set, NULL);
}

static inline ac_poll_t ex_stop_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ex_stop *st = (struct ex_stop *)self;
    struct signalfd_siginfo si;
    struct ac_ready_event ev;

    for (;;) {
        if (ac_io_poll_ready(&st->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        if (read(st->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            break;
        if (errno != EAGAIN && errno != EINTR)
            break; /* cannot wait for signals any more: stop rather than hang */
        /* Edge-triggered: say the descriptor is drained, then wait again. */
        ac_io_clear_ready(&st->io, AC_DIR_READ, ev);
    }
    ac_runtime_stop(st->rt);
    return AC_READY;
}

static inline void ex_stop_drop(struct ac_future *self)
{
    struct ex_stop *st = (struct ex_stop *)self;

    ac_io_close(&st->io, st->sfd);
}

/* Returns 0 or -errno. */
static inline int ex_stop_on_signals(struct ac_runtime *rt, const sigset_t *set)
{
    static const struct ac_future_vtable vt = {ex_stop_poll, ex_stop_drop};
    struct ex_stop *st = malloc(sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (st->sfd < 0) {
        int e = -errno;
        free(st);
        return e;
    }
    int r = ac_io_register(ac_runtime_worker(rt, 0), st->sfd, 0, &st->io);
    if (r < 0) {
        close(st->sfd);
        free(st);
        return r;
    }
    st->rt = rt;
    st->base.vt = &vt;
    return ac_spawn(ac_runtime_worker(rt, 0), &st->base, ex_free_future);
}

/* ---- a lazy idle timer ---- */

/* Ready once *activity (a worker-clock time in ms, updated by whoever moves
 * bytes: ac_copy's `activity` pointer) is idle_ms in the past. The sleep is
 * not moved on every transfer: when it fires early it is re-armed at the
 * latest activity + idle_ms (nginx's lazy timer), so a busy connection
 * costs one wheel operation per idle period, not one per read. */
struct ex_idle {
    struct ac_future base;
    struct ac_sleep sleep;
    const uint64_t *activity;
    uint64_t idle_ms;
};

static inline ac_poll_t ex_idle_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ex_idle *t = (struct ex_idle *)self;

    while (ac_future_poll(&t->sleep.base, cx) == AC_READY) {
        uint64_t due = *t->activity + t->idle_ms;
        if (due <= ac_worker_now_ms(cx->worker))
            return AC_READY;
        ac_sleep_reset(&t->sleep, due); /* bytes moved since: wait the rest */
    }
    return AC_PENDING;
}

static inline void ex_idle_drop(struct ac_future *self)
{
    ac_future_drop(&((struct ex_idle *)self)->sleep.base);
}

static inline void ex_idle_init(struct ex_idle *t, const uint64_t *activity, uint64_t idle_ms)
{
    static const struct ac_future_vtable vt = {ex_idle_poll, ex_idle_drop};
    t->base.vt = &vt;
    t->activity = activity;
    t->idle_ms = idle_ms;
    ac_sleep_init_deadline(&t->sleep, *activity + idle_ms);
}

#endif

/* ac-echo: a TCP echo server on asynccore.
 *
 *   ac-echo PORT [WORKERS [ADDRESS]]     (WORKERS default 1, ADDRESS 127.0.0.1)
 *
 * The pattern the daemon uses: one listening socket shared by every worker
 * (each registers it with AC_REG_EXCLUSIVE, so one accept queue feeds them
 * all), one accept task per worker, and one task per connection that stays on
 * the worker which accepted it. A connection is an ac_copy from its stream to
 * itself: it reads into the worker's scratch buffer and writes straight back,
 * so an idle connection holds no buffer. SIGINT or SIGTERM stops the server
 * (on Linux read from a signalfd by a task on worker 0, so a one-worker
 * server is a single thread; elsewhere a thread waits for them).
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/signalfd.h>
#else
#include <pthread.h>
#endif

#include <arpa/inet.h>

#include "asynccore/copy.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"

#define ECHO_BUFSIZE (16u * 1024u)

/* ---- one connection ---- */

/* The task's future is the copy itself (no wrapper to poll through); the
 * stream it uses is closed by the dealloc hook, which the task calls after
 * the copy's drop. */
struct echo_conn {
    struct ac_copy copy; /* stream -> stream */
    struct ac_stream stream;
};

static void conn_free(struct ac_future *f)
{
    struct echo_conn *c = AC_CONTAINER_OF(f, struct echo_conn, copy.base);

    ac_stream_close(&c->stream);
    free(c);
}

/* Takes ownership of fd (closed on failure). */
static void conn_start(struct ac_worker *w, int fd)
{
    struct echo_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    if (ac_socket_stream_open(&c->stream, w, fd) < 0) {
        close(fd);
        free(c);
        return;
    }
    ac_copy_init(&c->copy, &c->stream, &c->stream, ECHO_BUFSIZE);
    ac_spawn(w, &c->copy.base, conn_free); /* on failure it drops and frees c */
}

/* ---- the accept task of one worker ---- */

struct echo_acceptor {
    struct ac_future base;
    struct ac_listener listener;
};

static ac_poll_t acceptor_poll(struct ac_future *self, struct ac_context *cx)
{
    struct echo_acceptor *a = (struct echo_acceptor *)self;

    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len;
        int fd;

        if (ac_listener_poll_accept(&a->listener, cx, &fd, &peer, &peer_len) == AC_PENDING)
            return AC_PENDING;
        if (fd < 0) {
            fprintf(stderr, "ac-echo: accept: %s\n", strerror(-fd));
            return AC_READY;
        }
        conn_start(cx->worker, fd);
    }
}

static void acceptor_drop(struct ac_future *self)
{
    struct echo_acceptor *a = (struct echo_acceptor *)self;

    ac_listener_close(&a->listener);
}

static void acceptor_free(struct ac_future *f) { free(f); }

static const struct ac_future_vtable acceptor_vt = {acceptor_poll, acceptor_drop};

static int acceptor_start(struct ac_worker *w, int lfd)
{
    struct echo_acceptor *a = malloc(sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    /* The descriptor is shared, so no acceptor owns it: main closes it. */
    int r = ac_listener_open(&a->listener, w, lfd, false, AC_REG_EXCLUSIVE);
    if (r < 0) {
        free(a);
        return r;
    }
    a->base.vt = &acceptor_vt;
    return ac_spawn(w, &a->base, acceptor_free);
}

/* ---- stopping on SIGINT / SIGTERM ---- */

#ifdef __linux__

/* The signals are blocked in every thread and read from a signalfd on
 * worker 0, so stopping is an ordinary task (ac_runtime_stop is not
 * async-signal-safe) and the process needs no extra thread. */
struct echo_stop {
    struct ac_future base;
    struct ac_io io;
    int sfd;
    struct ac_runtime *rt;
};

static ac_poll_t stop_poll(struct ac_future *self, struct ac_context *cx)
{
    struct echo_stop *st = (struct echo_stop *)self;
    struct signalfd_siginfo si;
    struct ac_ready_event ev;

    for (;;) {
        if (ac_io_poll_ready(&st->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return AC_PENDING;
        if (read(st->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            break;
        if (errno != EAGAIN && errno != EINTR)
            break; /* cannot wait for signals any more: stop rather than hang */
        ac_io_clear_ready(&st->io, AC_DIR_READ, ev);
    }
    ac_runtime_stop(st->rt);
    return AC_READY;
}

static void stop_drop(struct ac_future *self)
{
    struct echo_stop *st = (struct echo_stop *)self;

    ac_io_deregister(&st->io);
    close(st->sfd);
}

static void stop_free(struct ac_future *f) { free(f); }

static const struct ac_future_vtable stop_vt = {stop_poll, stop_drop};

static int stop_start(struct ac_runtime *rt, const sigset_t *set)
{
    struct echo_stop *st = malloc(sizeof(*st));
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
    st->base.vt = &stop_vt;
    return ac_spawn(ac_runtime_worker(rt, 0), &st->base, stop_free);
}

#else /* no signalfd: a thread waits for the (blocked) signals */

static void *signal_thread(void *arg)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigwait(&set, &sig) == 0)
        ac_runtime_stop(arg);
    return NULL;
}

static int stop_start(struct ac_runtime *rt, const sigset_t *set)
{
    pthread_t tid;
    (void)set;
    int r = pthread_create(&tid, NULL, signal_thread, rt);
    if (r != 0)
        return -r;
    pthread_detach(tid); /* still waiting at exit: the process ends it */
    return 0;
}

#endif

/* ---- main ---- */

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int listen_on(const char *addr, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    return ac_listen_socket((struct sockaddr *)&ss, len, 4096, 0);
}

int main(int argc, char **argv)
{
    unsigned long port, workers = 1;
    const char *addr = argc > 3 ? argv[3] : "127.0.0.1";

    if (argc < 2 || argc > 4 || parse_uint(argv[1], 65535, &port) != 0 ||
        (argc > 2 && (parse_uint(argv[2], 1024, &workers) != 0 || workers == 0))) {
        fprintf(stderr, "usage: %s PORT [WORKERS [ADDRESS]]\n", argv[0]);
        return 2;
    }
    int lfd = listen_on(addr, (unsigned)port);
    if (lfd < 0) {
        fprintf(stderr, "ac-echo: listen on %s:%lu: %s\n", addr, port, strerror(-lfd));
        return 1;
    }

    /* Blocked before any thread starts, so every worker inherits the mask
     * and the signals reach only the signalfd. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);

    struct ac_runtime_opts opts = {.workers = (unsigned)workers, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    if (rt == NULL) {
        fprintf(stderr, "ac-echo: runtime: %s\n", strerror(errno));
        close(lfd);
        return 1;
    }
    int status = 0;
    for (unsigned i = 0; i < ac_runtime_workers(rt) && status == 0; i++) {
        int r = acceptor_start(ac_runtime_worker(rt, i), lfd);
        if (r < 0) {
            fprintf(stderr, "ac-echo: accept task: %s\n", strerror(-r));
            status = 1;
        }
    }
    if (status == 0) {
        int r = stop_start(rt, &set);
        if (r < 0) {
            fprintf(stderr, "ac-echo: signalfd: %s\n", strerror(-r));
            status = 1;
        }
    }
    if (status == 0) {
        fprintf(stderr, "ac-echo: listening on %s:%lu with %u worker(s)\n", addr, port,
                ac_runtime_workers(rt));
        int r = ac_runtime_run(rt);
        if (r < 0) {
            fprintf(stderr, "ac-echo: run: %s\n", strerror(-r));
            status = 1;
        }
    }
    ac_runtime_free(rt);
    close(lfd);
    return status;
}

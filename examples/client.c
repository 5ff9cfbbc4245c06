/* ac-client: a TCP client with timeouts on asynccore (a small netcat).
 *
 *   ac-client [-c CONNECT_MS] [-i IDLE_MS] HOST:PORT
 *
 * Connects to HOST:PORT (numeric) within CONNECT_MS (default 5000), then
 * copies standard input to the server and the server's bytes to standard
 * output until both directions have ended: at the end of standard input it
 * shuts the socket's write half (the server sees EOF) and it exits once the
 * server closed its side. If no byte moves in either direction for IDLE_MS
 * (default 30000) it gives up.
 *
 * Exit status: 0 done, 1 error, 2 usage, 3 timed out (connect or idle).
 *
 * What it shows: ac_connect under ac_timeout; two directions joined
 * (ac_join2) and raced against an idle timer (ac_select2); futures written
 * by hand over the reactor for standard input and output (pipes, terminals
 * and sockets can be watched by epoll), and the blocking pool for the ones
 * that cannot (regular files: epoll refuses them with EPERM). The whole
 * program is one future driven by ac_block_on on a one-worker runtime.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/blocking.h"
#include "asynccore/combinators.h"
#include "asynccore/net.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "common.h"

#define CHUNK (16u * 1024u)

enum { EXIT_DONE = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3 };

/* ---- standard input and output: the reactor where it can, the pool elsewhere ---- */

struct fd_end {
    int fd;
    bool pollable;   /* registered with the reactor (non-blocking) */
    int old_flags;   /* restored at exit: the descriptor is shared with our parent */
    struct ac_io io;
};

static void fd_end_open(struct fd_end *e, struct ac_worker *w, int fd)
{
    e->fd = fd;
    e->old_flags = fcntl(fd, F_GETFL);
    e->pollable = e->old_flags >= 0 && fcntl(fd, F_SETFL, e->old_flags | O_NONBLOCK) == 0 &&
                  ac_io_register(w, fd, 0, &e->io) == 0;
    if (!e->pollable && e->old_flags >= 0)
        (void)fcntl(fd, F_SETFL, e->old_flags); /* blocking again, for the pool */
}

static void fd_end_close(struct fd_end *e)
{
    if (e->pollable) {
        ac_io_deregister(&e->io); /* not ac_io_close: fds 0 and 1 stay open */
        (void)fcntl(e->fd, F_SETFL, e->old_flags);
    }
}

/* One read(2) or write(2) on an fd_end, as a future. Output: n (bytes, 0 EOF
 * on read, or -errno). */
struct fd_op {
    struct ac_future base;
    struct fd_end *end;
    enum ac_direction dir;
    void *buf;
    size_t len;
    ssize_t n;
    struct ac_blocking job; /* the pool's way (job.base.vt NULL when unused) */
};

/* Runs on a pool thread: the call that has no readiness API. The result is
 * the byte count or -errno, carried in the pointer. */
static void *fd_op_blocking(void *arg)
{
    struct fd_op *op = arg;
    ssize_t n = op->dir == AC_DIR_READ ? read(op->end->fd, op->buf, op->len)
                                       : write(op->end->fd, op->buf, op->len);
    return (void *)(intptr_t)(n < 0 ? -errno : n);
}

static ac_poll_t fd_op_poll(struct ac_future *self, struct ac_context *cx)
{
    struct fd_op *op = (struct fd_op *)self;

    if (!op->end->pollable) {
        if (op->job.base.vt == NULL)
            ac_blocking_init(&op->job, ac_worker_runtime(cx->worker), fd_op_blocking, op, NULL);
        if (ac_future_poll(&op->job.base, cx) == AC_PENDING)
            return AC_PENDING;
        op->n = op->job.err < 0 ? op->job.err : (ssize_t)(intptr_t)op->job.result;
        return AC_READY;
    }
    /* The readiness contract: wait for the direction, try the call, and on
     * EAGAIN tell the reactor the readiness is used up, then wait again. */
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(&op->end->io, cx, op->dir, &ev) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = op->dir == AC_DIR_READ ? read(op->end->fd, op->buf, op->len)
                                           : write(op->end->fd, op->buf, op->len);
        if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
            op->n = n >= 0 ? n : -errno;
            return AC_READY;
        }
        if (errno == EAGAIN)
            ac_io_clear_ready(&op->end->io, op->dir, ev);
    }
}

/* Nothing is registered per operation (the reactor's wakers belong to the
 * registration); a pool job still running finishes on its own. */
static void fd_op_drop(struct ac_future *self) { ac_future_drop(&((struct fd_op *)self)->job.base); }

static void fd_op_init(struct fd_op *op, struct fd_end *end, enum ac_direction dir, void *buf,
                       size_t len)
{
    static const struct ac_future_vtable vt = {fd_op_poll, fd_op_drop};
    op->base.vt = &vt;
    op->end = end;
    op->dir = dir;
    op->buf = buf;
    op->len = len;
    op->n = 0;
    op->job.base.vt = NULL;
}

/* ---- the two directions ---- */

/* stdin -> socket, then shutdown(SHUT_WR). Output: err. */
struct upload {
    struct ac_future base;
    struct fd_end *in;
    struct ac_stream *sock;
    uint64_t *activity;
    enum { UP_READ, UP_WRITE, UP_SHUTDOWN } state;
    struct fd_op read;
    struct ac_write_all write;
    struct ac_shutdown shut;
    int err;
    unsigned char buf[CHUNK];
};

static ac_poll_t upload_poll(struct ac_future *self, struct ac_context *cx)
{
    struct upload *u = (struct upload *)self;

    for (;;) {
        switch (u->state) {
        case UP_READ:
            if (u->read.base.vt == NULL)
                fd_op_init(&u->read, u->in, AC_DIR_READ, u->buf, sizeof(u->buf));
            if (ac_future_poll(&u->read.base, cx) == AC_PENDING)
                return AC_PENDING;
            ssize_t n = u->read.n;
            ac_future_drop(&u->read.base);
            if (n < 0) {
                u->err = (int)n;
                return AC_READY;
            }
            if (n == 0) {
                ac_shutdown_init(&u->shut, u->sock);
                u->state = UP_SHUTDOWN;
                break;
            }
            *u->activity = ac_worker_now_ms(cx->worker);
            ac_write_all_init(&u->write, u->sock, u->buf, (size_t)n);
            u->state = UP_WRITE;
            break;
        case UP_WRITE:
            if (ac_future_poll(&u->write.base, cx) == AC_PENDING)
                return AC_PENDING;
            u->err = u->write.err;
            ac_future_drop(&u->write.base);
            if (u->err < 0)
                return AC_READY;
            *u->activity = ac_worker_now_ms(cx->worker);
            u->state = UP_READ;
            break;
        case UP_SHUTDOWN:
            if (ac_future_poll(&u->shut.base, cx) == AC_PENDING)
                return AC_PENDING;
            u->err = u->shut.err;
            ac_future_drop(&u->shut.base);
            return AC_READY;
        }
    }
}

static void upload_drop(struct ac_future *self)
{
    struct upload *u = (struct upload *)self;
    ac_future_drop(&u->read.base); /* each is a no-op unless live */
    ac_future_drop(&u->write.base);
    ac_future_drop(&u->shut.base);
}

static void upload_init(struct upload *u, struct fd_end *in, struct ac_stream *sock,
                        uint64_t *activity)
{
    static const struct ac_future_vtable vt = {upload_poll, upload_drop};
    u->base.vt = &vt;
    u->in = in;
    u->sock = sock;
    u->activity = activity;
    u->state = UP_READ;
    u->read.base.vt = u->write.base.vt = u->shut.base.vt = NULL;
    u->err = 0;
}

/* socket -> stdout until EOF. Output: err. */
struct download {
    struct ac_future base;
    struct ac_stream *sock;
    struct fd_end *out;
    uint64_t *activity;
    size_t pos, end; /* buf[pos..end) not yet written out */
    struct fd_op write;
    int err;
    unsigned char buf[CHUNK];
};

static ac_poll_t download_poll(struct ac_future *self, struct ac_context *cx)
{
    struct download *d = (struct download *)self;

    for (;;) {
        if (d->pos == d->end) {
            ssize_t n;
            if (ac_stream_poll_read(d->sock, cx, d->buf, sizeof(d->buf), &n) == AC_PENDING)
                return AC_PENDING;
            if (n <= 0) {
                d->err = (int)n; /* 0: the server closed its side */
                return AC_READY;
            }
            *d->activity = ac_worker_now_ms(cx->worker);
            d->pos = 0;
            d->end = (size_t)n;
        }
        if (d->write.base.vt == NULL)
            fd_op_init(&d->write, d->out, AC_DIR_WRITE, d->buf + d->pos, d->end - d->pos);
        if (ac_future_poll(&d->write.base, cx) == AC_PENDING)
            return AC_PENDING;
        ssize_t n = d->write.n;
        ac_future_drop(&d->write.base);
        if (n <= 0) {
            d->err = n < 0 ? (int)n : -EPIPE;
            return AC_READY;
        }
        d->pos += (size_t)n;
    }
}

static void download_drop(struct ac_future *self)
{
    ac_future_drop(&((struct download *)self)->write.base);
}

static void download_init(struct download *d, struct ac_stream *sock, struct fd_end *out,
                          uint64_t *activity)
{
    static const struct ac_future_vtable vt = {download_poll, download_drop};
    d->base.vt = &vt;
    d->sock = sock;
    d->out = out;
    d->activity = activity;
    d->pos = d->end = 0;
    d->write.base.vt = NULL;
    d->err = 0;
}

/* ---- the whole client: connect, then both directions against the idle timer ---- */

struct client {
    struct ac_future base;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint64_t connect_ms, idle_ms;
    enum { CL_START, CL_CONNECT, CL_RUN } state;
    struct ac_stream sock;
    struct ac_connect connect;
    struct ac_timeout connect_timeout;
    struct fd_end in, out;
    uint64_t activity;
    struct upload up;
    struct download down;
    struct ac_join2 both;
    struct ex_idle idle;
    struct ac_select2 run;
    int status; /* output: exit status */
};

static ac_poll_t client_finish(struct client *c, int status, const char *what, int err)
{
    char addr[AC_ADDR_STRLEN];
    if (what != NULL)
        fprintf(stderr, "ac-client: %s %s: %s\n", what,
                ac_addr_format((struct sockaddr *)&c->addr, c->addr_len, addr, sizeof(addr)),
                err < 0 ? strerror(-err) : "timed out");
    c->status = status;
    return AC_READY;
}

static ac_poll_t client_poll(struct ac_future *self, struct ac_context *cx)
{
    struct client *c = (struct client *)self;

    switch (c->state) {
    case CL_START:
        ac_connect_init(&c->connect, (struct sockaddr *)&c->addr, c->addr_len, &c->sock);
        ac_timeout_init(&c->connect_timeout, &c->connect.base, c->connect_ms);
        c->state = CL_CONNECT;
        /* fall through */
    case CL_CONNECT:
        if (ac_future_poll(&c->connect_timeout.base, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->connect_timeout.timed_out)
            return client_finish(c, EXIT_TIMEOUT, "connect to", 0);
        if (c->connect.err < 0)
            return client_finish(c, EXIT_ERROR, "connect to", c->connect.err);
        /* Connected: the stream is ours now; the connect and its timer go. */
        ac_future_drop(&c->connect_timeout.base);
        fd_end_open(&c->in, cx->worker, STDIN_FILENO);
        fd_end_open(&c->out, cx->worker, STDOUT_FILENO);
        c->activity = ac_worker_now_ms(cx->worker);
        upload_init(&c->up, &c->in, &c->sock, &c->activity);
        download_init(&c->down, &c->sock, &c->out, &c->activity);
        ac_join2_init(&c->both, &c->up.base, &c->down.base);
        ex_idle_init(&c->idle, &c->activity, c->idle_ms);
        ac_select2_init(&c->run, &c->both.base, &c->idle.base);
        c->state = CL_RUN;
        /* fall through */
    case CL_RUN:
        if (ac_future_poll(&c->run.base, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->run.winner == 1)
            return client_finish(c, EXIT_TIMEOUT, "idle on", 0);
        int err = c->up.err < 0 ? c->up.err : c->down.err;
        if (err < 0)
            return client_finish(c, EXIT_ERROR, "transfer with", err);
        return client_finish(c, EXIT_DONE, NULL, 0);
    }
    return AC_PENDING;
}

static void client_drop(struct ac_future *self)
{
    struct client *c = (struct client *)self;

    if (c->state == CL_CONNECT) {
        ac_future_drop(&c->connect_timeout.base); /* closes a half-open socket */
    } else if (c->state == CL_RUN) {
        ac_future_drop(&c->run.base); /* the children, then the fds' registrations */
        fd_end_close(&c->in);
        fd_end_close(&c->out);
    }
    ac_stream_close(&c->sock); /* no-op unless connected */
}

static void client_init(struct client *c, const struct sockaddr_storage *addr, socklen_t len,
                        uint64_t connect_ms, uint64_t idle_ms)
{
    static const struct ac_future_vtable vt = {client_poll, client_drop};
    c->base.vt = &vt;
    c->addr = *addr;
    c->addr_len = len;
    c->connect_ms = connect_ms;
    c->idle_ms = idle_ms;
    c->state = CL_START;
    c->sock.vt = NULL;
    c->status = EXIT_ERROR;
}

int main(int argc, char **argv)
{
    unsigned long connect_ms = 5000, idle_ms = 30000;
    int opt;

    while ((opt = getopt(argc, argv, "c:i:")) != -1) {
        unsigned long *v = opt == 'c' ? &connect_ms : opt == 'i' ? &idle_ms : NULL;
        if (v == NULL || ex_parse_uint(optarg, 86400000, v) != 0)
            goto usage;
    }
    struct client *c = malloc(sizeof(*c)); /* two 16 KiB buffers: not on the stack */
    struct sockaddr_storage addr;
    socklen_t len;
    if (c == NULL) {
        fprintf(stderr, "ac-client: out of memory\n");
        return EXIT_ERROR;
    }
    if (optind != argc - 1 || ex_parse_hostport(argv[optind], &addr, &len) != 0) {
        free(c);
        goto usage;
    }
    /* A closed pipe on stdout must read as EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 2};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    if (rt == NULL) {
        fprintf(stderr, "ac-client: runtime: %s\n", strerror(errno));
        free(c);
        return EXIT_ERROR;
    }
    client_init(c, &addr, len, connect_ms, idle_ms);
    int r = ac_block_on(ac_runtime_worker(rt, 0), &c->base);
    int status = r < 0 ? EXIT_ERROR : c->status;
    ac_future_drop(&c->base);
    /* Joins the pool's threads: a read of a regular file is short. Only
     * then may the buffers a pool job used go. */
    ac_runtime_free(rt);
    free(c);
    return status;

usage:
    fprintf(stderr, "usage: %s [-c CONNECT_MS] [-i IDLE_MS] HOST:PORT\n", argv[0]);
    return EXIT_USAGE;
}

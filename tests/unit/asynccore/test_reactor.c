/* The reactor and its waker map: readiness on socketpairs, edge-triggered
 * clearing, stale events after deregister + reuse, registration counts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "internal.h"

static struct ac_runtime *rt;
static struct ac_worker *w;

static int setup(void **state)
{
    (void)state;
    struct ac_runtime_opts o = {.workers = 1, .blocking_threads = 1};
    rt = ac_runtime_new(&o);
    w = rt ? ac_runtime_worker(rt, 0) : NULL;
    return rt ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(ac_reactor_registrations(w), 0);
    ac_runtime_free(rt);
    return 0;
}

/* The backend this run uses (AC_BACKEND picks it: see test.sh's lanes). */
static const char *backend(void) { return ac_backend_name(ac_runtime_backend(rt)); }

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Reads until EAGAIN; returns bytes read (0 on EOF with nothing read). */
static ssize_t drain(int fd, bool *eof)
{
    char buf[4096];
    ssize_t total = 0;
    *eof = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == 0)
            *eof = true;
        else
            assert_int_equal(errno, EAGAIN);
        return total;
    }
}

/* Fills the socket until EAGAIN. */
static size_t fill(int fd)
{
    static char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof(buf));
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            return total;
        }
        total += (size_t)n;
    }
}

/* A future ready when the io is ready in one direction. */
struct ready_fut {
    struct ac_future base;
    struct ac_io *io;
    enum ac_direction dir;
    struct ac_ready_event ev;
    int polls;
};

static ac_poll_t ready_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ready_fut *r = (struct ready_fut *)f;
    r->polls++;
    return ac_io_poll_ready(r->io, cx, r->dir, &r->ev);
}

static const struct ac_future_vtable ready_vt = {ready_poll, NULL};

static struct ac_ready_event wait_ready(struct ac_io *io, enum ac_direction dir)
{
    struct ready_fut r = {.base.vt = &ready_vt, .io = io, .dir = dir};
    assert_int_equal(ac_block_on(w, &r.base), 0);
    return r.ev;
}

static void spin(uint64_t ms)
{
    struct ac_sleep s;
    ac_sleep_init(&s, ms);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    ac_future_drop(&s.base);
}

/* A waker that counts (data: the counters). */
struct counts {
    int clones, wakes, drops;
};

static struct ac_waker cw_clone(const void *d);
static void cw_wake(const void *d) { ((struct counts *)d)->wakes++; }
static void cw_wake_by_ref(const void *d) { ((struct counts *)d)->wakes++; }
static void cw_drop(const void *d) { ((struct counts *)d)->drops++; }
static const struct ac_waker_vtable cw_vt = {cw_clone, cw_wake, cw_wake_by_ref, cw_drop};
static struct ac_waker cw_clone(const void *d)
{
    ((struct counts *)d)->clones++;
    return (struct ac_waker){&cw_vt, d};
}

static ac_poll_t poll_with(struct ac_io *io, enum ac_direction dir, struct counts *c,
                           struct ac_ready_event *ev)
{
    struct ac_waker wk = {&cw_vt, c};
    struct ac_context cx = {&wk, w, AC_COOP_BUDGET};
    return ac_io_poll_ready(io, &cx, dir, ev);
}

/* ---- tests ---- */

static void test_backend_name(void **state)
{
    (void)state;
    const char *b = backend();
    assert_true(strcmp(b, "epoll") == 0 || strcmp(b, "poll") == 0 || strcmp(b, "kqueue") == 0 ||
                strcmp(b, "io_uring") == 0);
}

static void test_readiness_socketpair(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, sv[0], 0, &io), 0);
    assert_int_equal(ac_reactor_registrations(w), 1);
    assert_int_equal(io.fd, sv[0]);

    struct ac_ready_event ev = wait_ready(&io, AC_DIR_WRITE);
    assert_true(ev.ready & AC_WRITABLE);

    /* Nothing to read: pending, the waker is stored once. */
    struct counts c = {0};
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING); /* spurious */
    assert_int_equal(c.clones, 1);

    assert_int_equal(write(sv[1], "hello", 5), 5);
    spin(5);
    assert_int_equal(c.wakes, 1); /* the stored waker fired, once */
    assert_int_equal(c.drops, 0);

    ev = wait_ready(&io, AC_DIR_READ);
    assert_true(ev.ready & AC_READABLE);
    assert_false(ev.ready & AC_READ_CLOSED);
    bool eof;
    assert_int_equal(drain(sv[0], &eof), 5);
    assert_false(eof);
    ac_io_clear_ready(&io, AC_DIR_READ, ev);
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
    /* Write readiness was not touched by clearing read. */
    assert_int_equal(poll_with(&io, AC_DIR_WRITE, &c, &ev), AC_READY);

    ac_io_deregister(&io);
    assert_int_equal(c.drops, 1); /* the read waker held since the last poll */
    ac_io_deregister(&io);        /* safe twice */
    /* A handle that is no longer registered reports an error. */
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_READY);
    assert_int_equal(ev.ready, AC_ERROR);
    ac_io_clear_ready(&io, AC_DIR_READ, ev);
    close(sv[0]);
    close(sv[1]);
}

/* Readiness cleared only if no newer event arrived since it was observed. */
static void test_clear_ready_tick(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, sv[0], 0, &io), 0);
    assert_int_equal(write(sv[1], "a", 1), 1);
    struct ac_ready_event old = wait_ready(&io, AC_DIR_READ);
    bool eof;
    assert_int_equal(drain(sv[0], &eof), 1);
    /* Before we could clear, more data arrives and its edge is dispatched. */
    assert_int_equal(write(sv[1], "b", 1), 1);
    spin(5);
    ac_io_clear_ready(&io, AC_DIR_READ, old);
    struct counts c = {0};
    struct ac_ready_event ev;
    if (strcmp(backend(), "poll") != 0) {
        /* The edge for "b" bumped the tick: the stale clear was ignored. */
        assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_READY);
        assert_true(ev.tick != old.tick);
    } else {
        /* poll(2) stops watching a reported direction until it is cleared,
         * so "b" made no event; the clear re-armed it and it is reported now. */
        assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
        spin(5);
        assert_int_equal(c.wakes, 1);
        c.wakes = 0;
        assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_READY);
    }
    assert_int_equal(drain(sv[0], &eof), 1);
    ac_io_clear_ready(&io, AC_DIR_READ, ev);
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
    /* Edge-triggered: no new data, no new event, still pending later. */
    spin(10);
    assert_int_equal(c.wakes, 0);
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
    ac_io_deregister(&io);
    close(sv[0]);
    close(sv[1]);
}

/* Half-close: read-closed and readable, never cleared; data first. */
static void test_read_closed(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, sv[0], 0, &io), 0);
    assert_int_equal(write(sv[1], "bye", 3), 3);
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    struct ac_ready_event ev = wait_ready(&io, AC_DIR_READ);
    spin(2); /* let every edge in */
    struct counts c = {0};
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_READY);
    assert_true(ev.ready & AC_READ_CLOSED);
    bool eof;
    assert_int_equal(drain(sv[0], &eof), 3);
    assert_true(eof);
    ac_io_clear_ready(&io, AC_DIR_READ, ev);
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_READY);
    assert_true(ev.ready & AC_READ_CLOSED);
    assert_false(ev.ready & AC_READABLE);
    /* Our write half is still open. */
    assert_int_equal(poll_with(&io, AC_DIR_WRITE, &c, &ev), AC_READY);
    assert_false(ev.ready & AC_WRITE_CLOSED);
    ac_io_deregister(&io);
    close(sv[0]);
    close(sv[1]);
}

/* Write side: writable until EAGAIN, cleared, then writable again when the
 * peer reads; a hang-up is write-closed. */
static void test_write_edge_and_hangup(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, sv[0], 0, &io), 0);
    struct ac_ready_event ev = wait_ready(&io, AC_DIR_WRITE);
    size_t n = fill(sv[0]);
    assert_true(n > 0);
    ac_io_clear_ready(&io, AC_DIR_WRITE, ev);
    struct counts c = {0};
    assert_int_equal(poll_with(&io, AC_DIR_WRITE, &c, &ev), AC_PENDING);
    bool eof;
    assert_true(drain(sv[1], &eof) > 0);
    spin(5);
    assert_int_equal(c.wakes, 1); /* the peer made room: our waker fired */
    assert_int_equal(poll_with(&io, AC_DIR_WRITE, &c, &ev), AC_READY);
    assert_true(ev.ready & AC_WRITABLE);

    fill(sv[0]);
    ac_io_clear_ready(&io, AC_DIR_WRITE, ev);
    close(sv[1]);
    ev = wait_ready(&io, AC_DIR_WRITE);
    assert_true(ev.ready & (AC_WRITE_CLOSED | AC_ERROR));
    assert_int_equal(send(sv[0], "x", 1, MSG_NOSIGNAL), -1);
    assert_int_equal(errno, EPIPE);
    ac_io_deregister(&io);
    close(sv[0]);
}

static uint64_t token_of(const struct ac_io *io)
{
    return (uint64_t)io->index | (uint64_t)io->generation << 32;
}

/* An event for a deregistered slot, now reused, is recognised and dropped;
 * slots are not reused before the batch in flight is dispatched. */
static void test_stale_event_after_reuse(void **state)
{
    (void)state;
    int a[2], b[2];
    pair(a);
    pair(b);
    struct ac_io ioa, iob;
    assert_int_equal(ac_io_register(w, a[0], 0, &ioa), 0);
    struct ac_io old = ioa;
    ac_io_deregister(&ioa);
    assert_null(ioa.worker);
    /* Same batch: the slot is not reused yet. */
    assert_int_equal(ac_io_register(w, b[0], 0, &iob), 0);
    assert_int_not_equal(iob.index, old.index);
    ac_io_deregister(&iob);
    struct ac_io retired[2] = {old, iob};
    ac__reactor_dispatch(w, NULL, 0); /* end of a batch: retired slots reusable */
    assert_int_equal(ac_io_register(w, b[0], 0, &iob), 0);
    struct ac_io reused = retired[0].index == iob.index ? retired[0] : retired[1];
    assert_int_equal(reused.index, iob.index);
    assert_int_not_equal(iob.generation, reused.generation);
    /* The stale handle does not reach the new registration. */
    struct counts cs = {0};
    struct ac_ready_event sev;
    reused.worker = w;
    assert_int_equal(poll_with(&reused, AC_DIR_READ, &cs, &sev), AC_READY);
    assert_int_equal(sev.ready, AC_ERROR);
    ac_io_deregister(&reused);
    assert_int_equal(ac_reactor_registrations(w), 1);

    struct counts c = {0};
    struct ac_ready_event ev;
    assert_int_equal(poll_with(&iob, AC_DIR_READ, &c, &ev), AC_PENDING);
    struct ac__poll_event stale[2] = {
        {token_of(&reused), AC_READABLE | AC_READ_CLOSED},
        {(uint64_t)1000000, AC_READABLE}, /* index out of range */
    };
    ac__reactor_dispatch(w, stale, 2);
    assert_int_equal(c.wakes, 0);
    assert_int_equal(poll_with(&iob, AC_DIR_READ, &c, &ev), AC_PENDING);
    struct ac__poll_event fresh = {token_of(&iob), AC_READABLE};
    ac__reactor_dispatch(w, &fresh, 1);
    assert_int_equal(c.wakes, 1);
    assert_int_equal(poll_with(&iob, AC_DIR_READ, &c, &ev), AC_READY);
    ac_io_deregister(&iob);
    assert_int_equal(c.drops, 0); /* the waker was consumed by the wake */
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}

/* Deregistering from inside the wake of the same batch: later events of the
 * batch for that slot are dropped. */
struct dereg_waker {
    struct ac_io *io;
    int fd2;
    struct ac_io io2;
    struct counts c2;
    int wakes;
};

static struct ac_waker dw_clone(const void *d);
static void dw_wake(const void *d)
{
    struct dereg_waker *x = (struct dereg_waker *)d;
    x->wakes++;
    ac_io_deregister(x->io);
    /* A new registration in the same batch must not take the freed slot. */
    assert_int_equal(ac_io_register(w, x->fd2, 0, &x->io2), 0);
    struct ac_ready_event ev;
    assert_int_equal(poll_with(&x->io2, AC_DIR_READ, &x->c2, &ev), AC_PENDING);
}
static void dw_drop(const void *d) { (void)d; }
static const struct ac_waker_vtable dw_vt = {dw_clone, dw_wake, dw_wake, dw_drop};
static struct ac_waker dw_clone(const void *d) { return (struct ac_waker){&dw_vt, d}; }

static void test_deregister_during_dispatch(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, sv[0], 0, &io), 0);
    struct dereg_waker x = {.io = &io, .fd2 = sv[1]};
    struct ac_waker wk = {&dw_vt, &x};
    struct ac_context cx = {&wk, w, AC_COOP_BUDGET};
    struct ac_ready_event ev;
    assert_int_equal(ac_io_poll_ready(&io, &cx, AC_DIR_READ, &ev), AC_PENDING);
    uint64_t tok = token_of(&io);
    struct ac__poll_event batch[2] = {{tok, AC_READABLE | AC_WRITABLE}, {tok, AC_READABLE}};
    ac__reactor_dispatch(w, batch, 2);
    assert_int_equal(x.wakes, 1);
    assert_null(io.worker);
    assert_int_not_equal(x.io2.index, (uint32_t)tok);
    assert_int_equal(x.c2.wakes, 0);
    assert_int_equal(ac_reactor_registrations(w), 1);
    ac_io_deregister(&x.io2);
    assert_int_equal(x.c2.drops, 1);
    assert_int_equal(ac_reactor_registrations(w), 0);
    close(sv[0]);
    close(sv[1]);
}

static void test_register_errors_and_growth(void **state)
{
    (void)state;
    struct ac_io io;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    if (strcmp(backend(), "io_uring") != 0) {
        assert_true(ac_io_register(w, fds[0], 0, &io) < 0); /* closed fd */
    } else {
        /* io_uring checks the descriptor when the batch is submitted: the
         * registration reports an error instead. */
        assert_int_equal(ac_io_register(w, fds[0], 0, &io), 0);
        struct ac_ready_event bad = wait_ready(&io, AC_DIR_READ);
        assert_int_equal(bad.ready, AC_ERROR);
        ac_io_deregister(&io);
    }
    assert_true(ac_io_register(w, -1, 0, &io) < 0);
    assert_int_equal(ac_reactor_registrations(w), 0);

    enum { N = 150 };
    int p[N][2];
    struct ac_io ios[N];
    for (int i = 0; i < N; i++) {
        pair(p[i]);
        assert_int_equal(ac_io_register(w, p[i][0], 0, &ios[i]), 0);
    }
    assert_int_equal(ac_reactor_registrations(w), N);
    /* The same fd twice is refused by the poller. */
    assert_true(ac_io_register(w, p[0][0], 0, &io) < 0);
    assert_int_equal(write(p[N - 1][1], "z", 1), 1);
    struct ac_ready_event ev = wait_ready(&ios[N - 1], AC_DIR_READ);
    assert_true(ev.ready & AC_READABLE);
    for (int i = 0; i < N; i++) {
        ac_io_deregister(&ios[i]);
        close(p[i][0]);
        close(p[i][1]);
    }
    assert_int_equal(ac_reactor_registrations(w), 0);
    spin(1);
}

/* AC_REG_EXCLUSIVE on a listening socket: accept readiness is reported. */
static void test_exclusive_listener(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 8), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    struct ac_io io;
    assert_int_equal(ac_io_register(w, l, AC_REG_EXCLUSIVE, &io), 0);
    struct counts c = {0};
    struct ac_ready_event ev;
    assert_int_equal(poll_with(&io, AC_DIR_READ, &c, &ev), AC_PENDING);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ev = wait_ready(&io, AC_DIR_READ);
    assert_true(ev.ready & AC_READABLE);
    int a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    close(a);
    close(s);
    ac_io_deregister(&io);
    /* Our clone was replaced by block_on's waker: dropped, not leaked. */
    assert_int_equal(c.clones, 1);
    assert_int_equal(c.drops, 1);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_name),
        cmocka_unit_test(test_readiness_socketpair),
        cmocka_unit_test(test_clear_ready_tick),
        cmocka_unit_test(test_read_closed),
        cmocka_unit_test(test_write_edge_and_hangup),
        cmocka_unit_test(test_stale_event_after_reuse),
        cmocka_unit_test(test_deregister_during_dispatch),
        cmocka_unit_test(test_register_errors_and_growth),
        cmocka_unit_test(test_exclusive_listener),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

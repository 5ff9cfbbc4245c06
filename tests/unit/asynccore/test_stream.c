/* asynccore socket streams and the futures over them: read, read_exact,
 * write_all, shutdown, EOF, reset, back-pressure and the cooperative budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

#include "io_fixture.h"

static void write_full(int fd, const void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, (const char *)buf + off, len - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/* ---- a delayed writer thread (the peer side) ---- */

struct writer {
    pthread_t tid;
    int fd;
    long delay_ms;
    const char *data;
    size_t len;
    bool shut; /* shutdown(SHUT_WR) after writing */
};

static void *writer_main(void *arg)
{
    struct writer *wr = arg;

    sleep_ms(wr->delay_ms);
    write_full(wr->fd, wr->data, wr->len);
    if (wr->shut)
        shutdown(wr->fd, SHUT_WR);
    return NULL;
}

static void writer_start(struct writer *wr, int fd, long delay_ms, const char *data, bool shut)
{
    wr->fd = fd;
    wr->delay_ms = delay_ms;
    wr->data = data;
    wr->len = strlen(data);
    wr->shut = shut;
    assert_int_equal(pthread_create(&wr->tid, NULL, writer_main, wr), 0);
}

/* ---- a future that counts its polls around an inner one ---- */

struct counted {
    struct ac_future base;
    struct ac_future *inner;
    int polls, pendings;
    atomic_bool *flag;       /* optional: sampled at the first Pending */
    bool flag_at_first_pending;
};

static ac_poll_t counted_poll(struct ac_future *self, struct ac_context *cx)
{
    struct counted *c = (struct counted *)self;

    c->polls++;
    if (ac_future_poll(c->inner, cx) == AC_READY)
        return AC_READY;
    if (c->pendings++ == 0 && c->flag != NULL)
        c->flag_at_first_pending = atomic_load(c->flag);
    return AC_PENDING;
}

static const struct ac_future_vtable counted_vt = {counted_poll, NULL};

static void counted_init(struct counted *c, struct ac_future *inner)
{
    memset(c, 0, sizeof(*c));
    c->base.vt = &counted_vt;
    c->inner = inner;
}

/* ---- tests ---- */

static void test_close_never_opened(void **state)
{
    struct ac_stream s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.io.fd = -1;
    ac_stream_close(&s); /* vt NULL: no-op */
    assert_int_equal(ac_stream_fd(&s), -1);
}

static void test_open_close(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    int a, b;

    tcp_pair(&a, &b, 0);
    assert_int_equal(ac_socket_stream_open(&s, f->w, a), 0);
    assert_int_equal(ac_stream_fd(&s), a);
    assert_int_equal(ac_reactor_registrations(f->w), 1);
    ac_stream_close(&s);
    assert_int_equal(ac_stream_fd(&s), -1);
    assert_int_equal(ac_reactor_registrations(f->w), 0);
    ac_stream_close(&s); /* second close is a no-op */
    /* The descriptor was closed: the peer sees EOF. */
    char c;
    assert_int_equal(read(b, &c, 1), 0);
    close(b);
}

/* Opening a descriptor that cannot be registered fails without closing it. */
static void test_open_bad_fd(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    if (ac_runtime_backend(f->rt) == AC_BACKEND_IO_URING) {
        /* io_uring checks the descriptor when the loop turn submits its
         * batch (asynccore/reactor.h): the open succeeds, the read fails. */
        assert_int_equal(ac_socket_stream_open(&s, f->w, fds[0]), 0);
        char buf[8];
        struct ac_read r;
        ac_read_init(&r, &s, buf, sizeof(buf));
        assert_int_equal(ac_block_on(f->w, &r.base), 0);
        assert_true(r.n < 0);
        ac_future_drop(&r.base);
    } else {
        assert_true(ac_socket_stream_open(&s, f->w, fds[0]) < 0);
        assert_int_equal(ac_stream_fd(&s), -1);
    }
    ac_stream_close(&s);
    close(fds[1]);
}

/* A read waits for data (the waker is woken by the reactor), then gets EOF. */
static void test_read_then_eof(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_read r;
    struct counted cnt;
    struct writer wr;
    char buf[64];
    int b;

    stream_pair(f->w, &s, &b, 0);
    writer_start(&wr, b, 50, "hello", true);

    ac_read_init(&r, &s, buf, sizeof(buf));
    counted_init(&cnt, &r.base);
    assert_int_equal(ac_block_on(f->w, &cnt.base), 0);
    assert_true(cnt.pendings >= 1); /* nothing was there at first */
    assert_int_equal(r.n, 5);
    assert_memory_equal(buf, "hello", 5);
    ac_future_drop(&r.base);

    /* Read-closed readiness: EOF is 0, and stays 0. */
    for (int i = 0; i < 2; i++) {
        ac_read_init(&r, &s, buf, sizeof(buf));
        assert_int_equal(ac_block_on(f->w, &r.base), 0);
        assert_int_equal(r.n, 0);
        ac_future_drop(&r.base);
    }
    pthread_join(wr.tid, NULL);
    ac_stream_close(&s);
    close(b);
    assert_int_equal(ac_reactor_registrations(f->w), 0);
}

/* Data that arrives together with the FIN is read before the EOF. */
static void test_data_before_eof(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_read_exact r;
    struct ac_read r2;
    char buf[6], c;
    int a, b;

    tcp_pair(&a, &b, 0);
    write_full(b, "abcdef", 6);
    shutdown(b, SHUT_WR);
    sleep_ms(20);
    assert_int_equal(ac_socket_stream_open(&s, f->w, a), 0);
    ac_read_exact_init(&r, &s, buf, 6);
    assert_int_equal(ac_block_on(f->w, &r.base), 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.done, 6);
    assert_memory_equal(buf, "abcdef", 6);
    ac_future_drop(&r.base);
    ac_read_init(&r2, &s, &c, 1);
    assert_int_equal(ac_block_on(f->w, &r2.base), 0);
    assert_int_equal(r2.n, 0);
    ac_future_drop(&r2.base);
    ac_stream_close(&s);
    close(b);
}

static void test_read_exact_pieces(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_read_exact r;
    struct writer w1;
    char buf[11];
    int b;

    stream_pair(f->w, &s, &b, 0);
    write_full(b, "hello ", 6);
    writer_start(&w1, b, 60, "world", false);
    ac_read_exact_init(&r, &s, buf, sizeof(buf) - 1);
    assert_int_equal(ac_block_on(f->w, &r.base), 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.done, 10);
    buf[10] = '\0';
    /* "hello worl": exactly 10 of the 11 bytes */
    assert_string_equal(buf, "hello worl");
    ac_future_drop(&r.base);
    pthread_join(w1.tid, NULL);
    ac_stream_close(&s);
    close(b);
}

static void test_read_exact_early_eof(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_read_exact r;
    struct writer wr;
    char buf[10];
    int b;

    stream_pair(f->w, &s, &b, 0);
    writer_start(&wr, b, 30, "abc", true);
    ac_read_exact_init(&r, &s, buf, sizeof(buf));
    assert_int_equal(ac_block_on(f->w, &r.base), 0);
    assert_int_equal(r.err, -EPIPE);
    assert_int_equal(r.done, 3);
    assert_memory_equal(buf, "abc", 3);
    ac_future_drop(&r.base);
    pthread_join(wr.tid, NULL);
    ac_stream_close(&s);
    close(b);
}

/* A reset (RST) is reported as -ECONNRESET. */
static void test_read_reset(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_read r;
    struct linger lg = {1, 0};
    char buf[8];
    int b;

    stream_pair(f->w, &s, &b, 0);
    assert_int_equal(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(b);
    ac_read_init(&r, &s, buf, sizeof(buf));
    assert_int_equal(ac_block_on(f->w, &r.base), 0);
    assert_int_equal(r.n, -ECONNRESET);
    ac_future_drop(&r.base);
    ac_stream_close(&s);
}

/* ---- back-pressure: a full send buffer ---- */

#define BIG (2u * 1024u * 1024u)

struct drainer {
    pthread_t tid;
    int fd;
    atomic_bool draining;
    size_t got;
    uint64_t sum;
};

static void *drainer_main(void *arg)
{
    struct drainer *d = arg;
    unsigned char buf[4096];

    sleep_ms(150); /* the writer meets a full buffer first */
    atomic_store(&d->draining, true);
    for (;;) {
        ssize_t n = read(d->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            d->sum = d->sum * 31u + buf[i];
        d->got += (size_t)n;
    }
    return NULL;
}

static void test_write_backpressure(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_write_all wa;
    struct ac_shutdown sh;
    struct counted cnt;
    struct drainer d;
    int a, b, small = 4096;
    uint64_t sum = 0;

    unsigned char *data = malloc(BIG);
    assert_non_null(data);
    for (size_t i = 0; i < BIG; i++) {
        data[i] = (unsigned char)(i * 7u + (i >> 10));
        sum = sum * 31u + data[i];
    }
    tcp_pair(&a, &b, small);
    assert_int_equal(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(ac_socket_stream_open(&s, f->w, a), 0);

    memset(&d, 0, sizeof(d));
    d.fd = b;
    atomic_init(&d.draining, false);
    assert_int_equal(pthread_create(&d.tid, NULL, drainer_main, &d), 0);

    ac_write_all_init(&wa, &s, data, BIG);
    counted_init(&cnt, &wa.base);
    cnt.flag = &d.draining;
    assert_int_equal(ac_block_on(f->w, &cnt.base), 0);
    assert_int_equal(wa.err, 0);
    assert_int_equal(wa.done, BIG);
    assert_true(cnt.pendings >= 1);
    assert_false(cnt.flag_at_first_pending); /* Pending while the peer did not read */
    ac_future_drop(&wa.base);

    ac_shutdown_init(&sh, &s);
    assert_int_equal(ac_block_on(f->w, &sh.base), 0);
    assert_int_equal(sh.err, 0);
    ac_future_drop(&sh.base);
    pthread_join(d.tid, NULL); /* ends at the EOF of the shutdown */
    assert_int_equal(d.got, BIG);
    assert_true(d.sum == sum);
    ac_stream_close(&s);
    close(b);
    free(data);
}

/* Writing to a peer that is gone gives an error, not SIGPIPE (which would
 * kill this test process). */
static void test_write_after_peer_closed(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct ac_write_all wa;
    struct linger lg = {1, 0};
    static char data[4096];
    int b;

    stream_pair(f->w, &s, &b, 0);
    assert_int_equal(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(b); /* reset */
    sleep_ms(20);
    ac_write_all_init(&wa, &s, data, sizeof(data));
    assert_int_equal(ac_block_on(f->w, &wa.base), 0);
    assert_int_equal(wa.err, -ECONNRESET);
    ac_future_drop(&wa.base);
    /* The reset was reported once; from now on the pipe is broken. */
    ac_write_all_init(&wa, &s, data, sizeof(data));
    assert_int_equal(ac_block_on(f->w, &wa.base), 0);
    assert_int_equal(wa.err, -EPIPE);
    ac_future_drop(&wa.base);
    ac_stream_close(&s);
}

/* ---- the cooperative budget ---- */

/* Reads 1-byte chunks for as long as the stream gives them in one poll. */
struct greedy {
    struct ac_future base;
    struct ac_stream *s;
    int first_poll_reads;
    int polls;
    size_t total, want;
};

static ac_poll_t greedy_poll(struct ac_future *self, struct ac_context *cx)
{
    struct greedy *g = (struct greedy *)self;
    int reads = 0;
    char c;

    g->polls++;
    while (g->total < g->want) {
        ssize_t n;
        if (ac_stream_poll_read(g->s, cx, &c, 1, &n) == AC_PENDING)
            break;
        assert_int_equal(n, 1);
        reads++;
        g->total++;
    }
    if (g->polls == 1)
        g->first_poll_reads = reads;
    return g->total == g->want ? AC_READY : AC_PENDING;
}

static const struct ac_future_vtable greedy_vt = {greedy_poll, NULL};

static void test_budget_yields(void **state)
{
    struct fixture *f = *state;
    struct ac_stream s;
    struct greedy g = {.base.vt = &greedy_vt, .want = 1000};
    static char data[1000];
    int a, b;

    tcp_pair(&a, &b, 0);
    write_full(b, data, sizeof(data));
    sleep_ms(20);
    assert_int_equal(ac_socket_stream_open(&s, f->w, a), 0);
    g.s = &s;
    assert_int_equal(ac_block_on(f->w, &g.base), 0);
    assert_int_equal(g.total, 1000);
    /* All the data was there, yet one poll may not take more than the budget:
     * the stream returned Pending (with a self-wake) and the task came back. */
    assert_true(g.first_poll_reads <= AC_COOP_BUDGET);
    assert_true(g.polls >= (int)(1000 / AC_COOP_BUDGET));
    ac_stream_close(&s);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_never_opened),
        cmocka_unit_test_setup_teardown(test_open_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_bad_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_then_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_before_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_exact_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_exact_early_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_after_peer_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_yields, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

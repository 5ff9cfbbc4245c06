/* Tests for ac_copy's ring mode: io_uring completion operations (receives
 * into the worker's provided buffer ring, sends of those buffers), and the
 * ownership rule of asynccore/backend.h: a copy dropped while the kernel
 * holds its receive or its send leaves the slot and the buffer alive until
 * the completion arrives, and a runtime freed with operations in flight
 * waits for them. Every test makes its own io_uring runtime, whatever
 * AC_BACKEND says, and is skipped only where the kernel refuses io_uring.
 * Run under ASan: a slot or buffer freed before its completion is a
 * use-after-free when the completion is reaped.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "asynccore/copy.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"

#define MIB (1024u * 1024u)

#include "io_fixture.h"
#include "copy_fixture.h"
#include "uring_op.h" /* the receive's queue, to check its bound */

static int ring_setup(void **state)
{
    static struct fixture f;
    struct ac_runtime_opts opts = {
        .workers = 1, .blocking_threads = 1, .backend = AC_BACKEND_IO_URING};

    f.rt = ac_runtime_new(&opts); /* NULL: the kernel refused io_uring, tests skip */
    f.w = f.rt != NULL ? ac_runtime_worker(f.rt, 0) : NULL;
    *state = &f;
    return 0;
}

static int ring_teardown(void **state)
{
    struct fixture *f = *state;
    if (f->rt == NULL)
        return 0;
    assert_int_equal(ac_reactor_operations(f->w), 0);
    return teardown(state);
}

/* The fixture's worker, or skip where the kernel refused io_uring. */
static struct fixture *ring_fixture(void **state)
{
    struct fixture *f = *state;
    if (f == NULL || f->rt == NULL)
        skip();
    return f;
}

/* Polls `fut` until it is ready or `ms` have passed. */
struct poll_for {
    struct ac_future base;
    struct ac_future *fut;
    struct ac_sleep sleep;
    bool ready;
};

static ac_poll_t poll_for_poll(struct ac_future *self, struct ac_context *cx)
{
    struct poll_for *p = (struct poll_for *)self;
    if (ac_future_poll(p->fut, cx) == AC_READY) {
        p->ready = true;
        return AC_READY;
    }
    return ac_future_poll(&p->sleep.base, cx);
}

static void poll_for_drop(struct ac_future *self)
{
    struct poll_for *p = (struct poll_for *)self;
    ac_future_drop(&p->sleep.base);
}

static const struct ac_future_vtable poll_for_vt = {poll_for_poll, poll_for_drop};

/* Returns whether fut completed within ms. */
static bool run_for(struct ac_worker *w, struct ac_future *fut, uint64_t ms)
{
    struct poll_for p = {.base.vt = &poll_for_vt, .fut = fut};
    ac_sleep_init(&p.sleep, ms);
    assert_int_equal(ac_block_on(w, &p.base), 0);
    ac_future_drop(&p.base);
    return p.ready;
}

/* One loop turn or a few: cancelled operations' completions are reaped. */
static void turn(struct ac_worker *w, uint64_t ms)
{
    struct ac_sleep s;
    ac_sleep_init(&s, ms);
    assert_int_equal(ac_block_on(w, &s.base), 0);
    ac_future_drop(&s.base);
}

/* 8 MiB through a slow reader, then the half-close: every byte in order,
 * in ring mode, with no buffer of the copy's own and nothing left over. */
static void test_ring_copy_8mib_half_close(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;
    uint64_t act = 0;

    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 8192);
    struct peer src = {.fd = pa, .seed = 11, .send_len = 8 * MIB, .shut_after_send = true};
    struct peer dst = {.fd = pb, .delay_before_read_ms = 50, .read_first = true};
    peer_start(&src);
    peer_start(&dst);

    ac_copy_init(&c, &sa, &sb, 0);
    c.activity = &act;
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_true(c.ring);
    assert_int_equal(c.err, 0);
    assert_true(c.read_eof && c.shut_done);
    assert_int_equal(c.bytes, 8 * MIB);
    assert_null(c.buf);
    assert_true(act > 0);
    assert_int_equal(ac_reactor_operations(f->w), 0); /* ready: nothing in the kernel */
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(dst.tid, NULL);
    assert_int_equal(dst.recv_len, 8 * MIB);
    assert_true(dst.recv_sum == src.sent_sum);
    assert_true(dst.recv_sum == expected_sum(8 * MIB, 11));
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* A stream copied to itself (the echo server): receive and send on one
 * socket at once. */
static void test_ring_echo(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_stream s;
    struct ac_copy c;
    int p;

    stream_pair(f->w, &s, &p, 0);
    struct peer peer = {.fd = p, .seed = 12, .send_len = 2 * MIB, .shut_after_send = true,
                        .read_after = true};
    peer_start(&peer);
    ac_copy_init(&c, &s, &s, 4096);
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_true(c.ring);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.bytes, 2 * MIB);
    ac_future_drop(&c.base);
    pthread_join(peer.tid, NULL);
    assert_int_equal(peer.recv_len, 2 * MIB);
    assert_true(peer.recv_sum == expected_sum(2 * MIB, 12));
    ac_stream_close(&s);
    close(p);
}

/* Dropped while its receive waits in the kernel: the slot outlives the
 * drop until the cancel's completion, and the bytes that arrive later are
 * still in the socket (the cancelled receive took none). */
static void test_ring_drop_mid_recv(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;

    stream_pair(f->w, &sa, &pa, 0);
    stream_pair(f->w, &sb, &pb, 0);
    ac_copy_init(&c, &sa, &sb, 0);
    assert_false(run_for(f->w, &c.base, 20)); /* idle source: the receive waits */
    assert_true(c.ring);
    assert_non_null(c.rop);
    assert_int_equal(ac_reactor_operations(f->w), 1);
    ac_future_drop(&c.base);
    assert_int_equal(ac_reactor_operations(f->w), 1); /* an orphan until its completion */
    turn(f->w, 20);
    assert_int_equal(ac_reactor_operations(f->w), 0);

    assert_int_equal(send(pa, "after", 5, 0), 5);
    char got[8] = {0};
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++) {
        n = recv(ac_stream_fd(&sa), got, sizeof(got), 0);
        if (n < 0)
            sleep_ms(5);
    }
    assert_int_equal(n, 5);
    assert_memory_equal(got, "after", 5);
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* Dropped while its send waits for room at a peer that does not read: the
 * receive has paused with a bounded queue, the send is cancelled, and its
 * buffer is freed by the completion, not by the drop. */
static void test_ring_drop_mid_send(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;

    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 4096);
    struct peer src = {.fd = pa, .seed = 13, .send_len = 4 * MIB};
    peer_start(&src);
    ac_copy_init(&c, &sa, &sb, 0);
    assert_false(run_for(f->w, &c.base, 100)); /* the destination is full */
    assert_true(c.ring);
    assert_non_null(c.sop);
    /* 4 MiB wait at the source: the receive paused after a few buffers. */
    assert_non_null(c.rop);
    assert_true(ac__uop_queued(c.rop) <= 2 * AC__UOP_PAUSE_AT);
    assert_true(ac_reactor_operations(f->w) >= 1);
    ac_future_drop(&c.base);
    assert_true(ac_reactor_operations(f->w) >= 1);
    turn(f->w, 20);
    assert_int_equal(ac_reactor_operations(f->w), 0);
    ac_stream_close(&sa); /* the sender gets an error and stops */
    ac_stream_close(&sb);
    turn(f->w, 5); /* the closes go with the next submission */
    pthread_join(src.tid, NULL);
    close(pa);
    close(pb);
}

/* Both directions at once, each half-closed in turn (copy_fixture.h): on
 * this runtime both copies of the pair run in ring mode. */
static void test_ring_bidi_half_close_each_way(void **state)
{
    struct fixture *f = ring_fixture(state);
    bidi_half_close_each_way(f->w, COPY_BUFFER);
}

/* Splice-auto in ring mode: the bulk goes through a pipe (splice mode, on
 * readiness), the small messages after it back through the ring; every
 * byte in order, and the copy ends in ring mode with no pipe held. */
static void test_ring_splice_auto_bulk_then_small(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;

    ac_pipe_pool_clear(pool);
    unsigned long made = pool->made;
    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 65536);
    struct bulk_then_small src = {.fd = pa, .bulk = 8 * MIB, .small = 100, .nsmall = 20, .seed = 16};
    struct peer dst = {.fd = pb, .read_first = true};
    assert_int_equal(pthread_create(&src.tid, NULL, bulk_then_small_main, &src), 0);
    peer_start(&dst);

    ac_copy_init(&c, &sa, &sb, 0);
    assert_true(ac_copy_splice_auto(&c));
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_int_equal(c.err, 0);
    assert_true(c.read_eof && c.shut_done);
    assert_int_equal(c.bytes, 8 * MIB + 20 * 100);
    assert_true(pool->made > made); /* the bulk went through a pipe */
    assert_true(c.ring);            /* the small messages through the ring */
    assert_int_equal(pool->n_out, 0);
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(dst.tid, NULL);
    assert_int_equal(dst.recv_len, 8 * MIB + 20 * 100);
    assert_true(dst.recv_sum == expected_sum(8 * MIB + 20 * 100, 16));
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* ---- many connections at once: more receives than the ring has buffers ---- */

#define MANY 200u
#define MANY_LEN (16u * 1024u)

struct many {
    struct ac_future base;
    struct ac_copy *c;
    bool *done;
    unsigned left;
};

static ac_poll_t many_poll(struct ac_future *self, struct ac_context *cx)
{
    struct many *m = (struct many *)self;
    for (unsigned i = 0; i < MANY; i++) {
        if (!m->done[i] && ac_future_poll(&m->c[i].base, cx) == AC_READY) {
            m->done[i] = true;
            m->left--;
        }
    }
    return m->left == 0 ? AC_READY : AC_PENDING;
}

static void many_drop(struct ac_future *self) { (void)self; }

static const struct ac_future_vtable many_vt = {many_poll, many_drop};

static void test_ring_more_receives_than_buffers(void **state)
{
    struct fixture *f = ring_fixture(state);
    struct ac_stream *sa = calloc(MANY, sizeof(*sa)), *sb = calloc(MANY, sizeof(*sb));
    struct ac_copy *c = calloc(MANY, sizeof(*c));
    bool *done = calloc(MANY, sizeof(*done));
    int *pa = calloc(MANY, sizeof(*pa)), *pb = calloc(MANY, sizeof(*pb));
    unsigned char *data = malloc(MANY_LEN);
    assert_true(sa && sb && c && done && pa && pb && data);
    for (unsigned i = 0; i < MANY_LEN; i++)
        data[i] = pattern(i, 14);

    for (unsigned i = 0; i < MANY; i++) {
        stream_pair(f->w, &sa[i], &pa[i], 0);
        stream_pair(f->w, &sb[i], &pb[i], 0);
        /* All of it waits in the sockets before the first poll: the first
         * kernel pass has MANY receives for the ring's buffers. */
        assert_int_equal(send(pa[i], data, MANY_LEN, 0), (ssize_t)MANY_LEN);
        assert_int_equal(shutdown(pa[i], SHUT_WR), 0);
        ac_copy_init(&c[i], &sa[i], &sb[i], 0);
    }
    struct many m = {.base.vt = &many_vt, .c = c, .done = done, .left = MANY};
    assert_true(run_for(f->w, &m.base, 10000));
    unsigned char *got = malloc(MANY_LEN + 1);
    assert_non_null(got);
    for (unsigned i = 0; i < MANY; i++) {
        assert_true(c[i].ring);
        assert_int_equal(c[i].err, 0);
        assert_int_equal(c[i].bytes, MANY_LEN);
        ac_future_drop(&c[i].base);
        size_t off = 0;
        for (;;) {
            ssize_t n = recv(pb[i], got + off, MANY_LEN + 1 - off, 0);
            assert_true(n >= 0);
            if (n == 0)
                break;
            off += (size_t)n;
        }
        assert_int_equal(off, MANY_LEN);
        assert_memory_equal(got, data, MANY_LEN);
        ac_stream_close(&sa[i]);
        ac_stream_close(&sb[i]);
        close(pa[i]);
        close(pb[i]);
    }
    assert_int_equal(ac_reactor_operations(f->w), 0);
    free(got);
    free(data);
    free(pa);
    free(pb);
    free(done);
    free(c);
    free(sa);
    free(sb);
}

/* ---- teardown with operations in flight ---- */

struct owned_copy {
    struct ac_copy c;
    struct ac_stream sa, sb;
};

static void owned_free(struct ac_future *f)
{
    struct owned_copy *o = AC_CONTAINER_OF(f, struct owned_copy, c.base);
    ac_stream_close(&o->sa);
    ac_stream_close(&o->sb);
    free(o);
}

/* A runtime freed while tasks' copies have a receive (idle source) and a
 * send (full destination) in the kernel: the teardown drops the tasks,
 * cancels, and waits for the completions before it frees the slots and
 * buffers (LeakSanitizer and ASan check both ways). */
static void test_ring_runtime_freed_with_operations_in_flight(void **state)
{
    (void)state;
    struct ac_runtime_opts opts = {
        .workers = 1, .blocking_threads = 1, .backend = AC_BACKEND_IO_URING};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    if (rt == NULL)
        skip();
    struct ac_worker *w = ac_runtime_worker(rt, 0);

    struct owned_copy *idle = calloc(1, sizeof(*idle)), *full = calloc(1, sizeof(*full));
    assert_true(idle != NULL && full != NULL);
    int p1, p2, p3, p4;
    stream_pair(w, &idle->sa, &p1, 0);
    stream_pair(w, &idle->sb, &p2, 0);
    stream_pair(w, &full->sa, &p3, 0);
    lagging_pair(w, &full->sb, &p4, 4096);
    struct peer src = {.fd = p3, .seed = 15, .send_len = 2 * MIB};
    peer_start(&src);
    ac_copy_init(&idle->c, &idle->sa, &idle->sb, 0);
    ac_copy_init(&full->c, &full->sa, &full->sb, 0);
    assert_int_equal(ac_spawn(w, &idle->c.base, owned_free), 0);
    assert_int_equal(ac_spawn(w, &full->c.base, owned_free), 0);
    turn(w, 100);
    assert_true(ac_reactor_operations(w) >= 2);
    ac_runtime_free(rt); /* closes our ends: the sender gets an error and stops */
    pthread_join(src.tid, NULL);
    close(p3);
    close(p1);
    close(p2);
    close(p4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ring_copy_8mib_half_close, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_echo, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_bidi_half_close_each_way, ring_setup,
                                        ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_splice_auto_bulk_then_small, ring_setup,
                                        ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_drop_mid_recv, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_drop_mid_send, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_ring_more_receives_than_buffers, ring_setup,
                                        ring_teardown),
        cmocka_unit_test(test_ring_runtime_freed_with_operations_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* asynccore copy and bidirectional copy: bulk data with checksums, half-close
 * passed on, reset ending both directions, and the pending buffer that exists
 * only while the destination lags. */
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

#include "asynccore/copy.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

#define MIB (1024u * 1024u)

#include "io_fixture.h"
#include "copy_fixture.h"

/* ---- a copy watched from outside ---- */

struct watch {
    struct ac_future base;
    struct ac_copy *c;
    bool saw_buffer; /* a pending buffer existed at some point */
};

static ac_poll_t watch_poll(struct ac_future *self, struct ac_context *cx)
{
    struct watch *w = (struct watch *)self;
    ac_poll_t r = ac_future_poll(&w->c->base, cx);

    if (w->c->buf != NULL)
        w->saw_buffer = true;
    return r;
}

static const struct ac_future_vtable watch_vt = {watch_poll, NULL};

/* ---- tests ---- */

/* 8 MiB a -> b through a small receive buffer; the EOF arrives as a
 * half-close: b's peer can still answer on the same connection. */
static void test_copy_8mib_half_close(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy c;
    struct watch wt = {.base.vt = &watch_vt, .c = &c};
    int pa, pb;
    uint64_t act = 0;

    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 8192);

    struct peer src = {.fd = pa, .seed = 1, .send_len = 8 * MIB, .shut_after_send = true};
    struct peer dst = {.fd = pb, .delay_before_read_ms = 50, .read_first = true};
    peer_start(&src);
    peer_start(&dst);

    ac_copy_init(&c, &sa, &sb, 0);
    ac_copy_no_ring(&c); /* the buffer copy's remainder, on every backend */
    c.activity = &act;
    assert_int_equal(ac_block_on(f->w, &wt.base), 0);
    assert_int_equal(c.err, 0);
    assert_true(c.read_eof);
    assert_true(c.shut_done);
    assert_int_equal(c.bytes, 8 * MIB);
    assert_null(c.buf);
    assert_true(wt.saw_buffer); /* the slow reader made it keep a remainder */
    assert_true(act > 0);
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(dst.tid, NULL); /* saw EOF */
    assert_int_equal(dst.recv_len, 8 * MIB);
    assert_true(dst.recv_sum == src.sent_sum);
    assert_true(dst.recv_sum == expected_sum(8 * MIB, 1));

    /* Half-close only: b's peer still writes, and it arrives. */
    assert_still_reads_back(f->w, &sb, pb);

    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* Both directions at once, each half-closed in turn (copy_fixture.h). */
static void test_bidi_half_close_each_way(void **state)
{
    bidi_half_close_each_way(((struct fixture *)*state)->w, COPY_BUFFER);
}

/* A reset on one side ends both directions, though the other side is idle. */
static void test_bidi_reset_ends_both(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy_bidi bc;
    struct resetter rs;
    int pa, pb;

    stream_pair(f->w, &sa, &pa, 0);
    stream_pair(f->w, &sb, &pb, 0);
    rs.fd = pa;
    rs.chunks = 0;
    assert_int_equal(pthread_create(&rs.tid, NULL, resetter_main, &rs), 0);

    ac_copy_bidi_init(&bc, &sa, &sb, 0);
    assert_int_equal(ac_block_on(f->w, &bc.base), 0);
    assert_int_equal(bc.err, -ECONNRESET);
    assert_true(bc.ab_done && bc.ba_done);
    assert_int_equal(bc.ab.err, -ECONNRESET);
    ac_future_drop(&bc.base);
    pthread_join(rs.tid, NULL);

    ac_stream_close(&sa);
    ac_stream_close(&sb);
    /* b's peer sees the end (the owner closed) and nothing else. */
    char buf[4];
    assert_int_equal(read(pb, buf, sizeof(buf)), 0);
    close(pb);
}

/* The destination's peer is gone: the write side error ends the copy. */
static void test_copy_write_error(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;
    struct linger lg = {1, 0};

    stream_pair(f->w, &sa, &pa, 0);
    stream_pair(f->w, &sb, &pb, 0);
    setsockopt(pb, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(pb);
    sleep_ms(20);
    struct peer src = {.fd = pa, .seed = 4, .send_len = 1 * MIB};
    peer_start(&src);

    ac_copy_init(&c, &sa, &sb, 0);
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_true(c.err == -EPIPE || c.err == -ECONNRESET);
    assert_null(c.buf);
    ac_future_drop(&c.base);
    ac_stream_close(&sa); /* unblocks the sender */
    ac_stream_close(&sb);
    pthread_join(src.tid, NULL);
    close(pa);
}

/* The pending buffer exists while the destination lags and is freed once
 * drained, while the copy goes on idle. Then EOF ends it. */
struct idle_check {
    struct ac_future base;
    struct ac_copy *c;
    struct peer *dst;
    size_t total;
    struct ac_sleep tick;
    bool saw_buffer, checked_idle, idle_buf_null, copy_done;
    uint64_t deadline;
};

static ac_poll_t idle_check_poll(struct ac_future *self, struct ac_context *cx)
{
    struct idle_check *k = (struct idle_check *)self;

    if (!k->copy_done && ac_future_poll(&k->c->base, cx) == AC_READY)
        k->copy_done = true;
    if (k->c->buf != NULL)
        k->saw_buffer = true;
    if (k->copy_done || ac_clock_now_ms() > k->deadline)
        return AC_READY;
    /* Idle = everything delivered and the source quiet: check, then let the
     * source end. Polled by a 5 ms tick besides the copy's own wake-ups. */
    if (!k->checked_idle && k->c->bytes == k->total) {
        k->checked_idle = true;
        k->idle_buf_null = k->c->buf == NULL;
        atomic_store(&k->dst->shut_now, true);
    }
    while (ac_future_poll(&k->tick.base, cx) == AC_READY) {
        ac_future_drop(&k->tick.base);
        ac_sleep_init(&k->tick, 5);
    }
    return AC_PENDING;
}

static void idle_check_drop(struct ac_future *self)
{
    ac_future_drop(&((struct idle_check *)self)->tick.base);
}

static const struct ac_future_vtable idle_check_vt = {idle_check_poll, idle_check_drop};

struct late_shut {
    pthread_t tid;
    struct peer *flagged;
    int fd;
};

static void *late_shut_main(void *arg)
{
    struct late_shut *ls = arg;

    while (!atomic_load(&ls->flagged->shut_now))
        sleep_ms(2);
    shutdown(ls->fd, SHUT_WR);
    return NULL;
}

static void test_copy_buffer_freed_when_drained(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;
    const size_t total = 2 * MIB;

    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 4096);

    /* The source sends everything but does not end; the destination's peer
     * starts reading late. */
    struct peer src = {.fd = pa, .seed = 5, .send_len = total};
    struct peer dst = {.fd = pb, .delay_before_read_ms = 150, .read_first = true};
    peer_start(&src);
    peer_start(&dst);
    struct late_shut ls = {.flagged = &dst, .fd = pa};
    assert_int_equal(pthread_create(&ls.tid, NULL, late_shut_main, &ls), 0);

    ac_copy_init(&c, &sa, &sb, 0);
    ac_copy_no_ring(&c); /* the buffer copy's remainder, on every backend */
    struct idle_check k = {.base.vt = &idle_check_vt, .c = &c, .dst = &dst, .total = total,
                           .deadline = ac_clock_now_ms() + 10000};
    ac_sleep_init(&k.tick, 5);
    assert_int_equal(ac_block_on(f->w, &k.base), 0);
    ac_future_drop(&k.base);
    assert_true(k.copy_done);
    assert_true(k.saw_buffer);
    assert_true(k.checked_idle);
    assert_true(k.idle_buf_null); /* idle with everything delivered: no buffer */
    assert_int_equal(c.err, 0);
    assert_null(c.buf);
    assert_int_equal(c.bytes, total);
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(ls.tid, NULL);
    pthread_join(dst.tid, NULL);
    assert_int_equal(dst.recv_len, total);
    assert_true(dst.recv_sum == expected_sum(total, 5));
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* Dropping a copy that holds a pending buffer frees it (ASan checks leaks). */
struct poll_until_buffer {
    struct ac_future base;
    struct ac_copy *c;
};

static ac_poll_t pub_poll(struct ac_future *self, struct ac_context *cx)
{
    struct poll_until_buffer *p = (struct poll_until_buffer *)self;

    if (ac_future_poll(&p->c->base, cx) == AC_READY)
        return AC_READY;
    return p->c->buf != NULL ? AC_READY : AC_PENDING;
}

static const struct ac_future_vtable pub_vt = {pub_poll, NULL};

static void test_copy_drop_with_buffer(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;

    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 4096);
    struct peer src = {.fd = pa, .seed = 6, .send_len = 1 * MIB};
    peer_start(&src);

    ac_copy_init(&c, &sa, &sb, 0);
    ac_copy_no_ring(&c); /* the buffer copy's remainder, on every backend */
    struct poll_until_buffer p = {.base.vt = &pub_vt, .c = &c};
    assert_int_equal(ac_block_on(f->w, &p.base), 0);
    assert_non_null(c.buf);
    ac_future_drop(&c.base);
    assert_null(c.buf);
    ac_stream_close(&sa); /* the sender gets an error and stops */
    ac_stream_close(&sb);
    pthread_join(src.tid, NULL);
    close(pa);
    close(pb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_8mib_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi_half_close_each_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi_reset_ends_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_buffer_freed_when_drained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_drop_with_buffer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

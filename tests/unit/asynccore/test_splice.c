/* asynccore splice copy: data larger than a pipe with checksums, half-close
 * passed on both ways, a peer's reset, auto mode (splice for bulk data only,
 * small messages through the buffer copy), and the pipe pool (lent only while
 * bytes are in flight, reused, never handed back with bytes in it, bounded). */
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
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "asynccore/combinators.h"
#include "asynccore/copy.h"
#include "asynccore/splice.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

#define MIB (1024u * 1024u)

#include "io_fixture.h"
#include "copy_fixture.h"

/* ---- a splice copy watched from outside ---- */

struct watch {
    struct ac_future base;
    struct ac_copy *c;
    bool saw_pipe_bytes;   /* bytes sat in the pipe at some point */
    bool held_idle_pipe;   /* Pending with an empty pipe still lent: a leak */
    bool saw_buffer;       /* the buffer copy was used */
    int last_rfd;          /* the lent pipe at the last poll */
    size_t last_in_pipe;
};

static ac_poll_t watch_poll(struct ac_future *self, struct ac_context *cx)
{
    struct watch *w = (struct watch *)self;
    ac_poll_t r = ac_future_poll(&w->c->base, cx);

    if (w->c->in_pipe > 0)
        w->saw_pipe_bytes = true;
    if (w->c->in_pipe == 0 && w->c->pipe.rfd >= 0)
        w->held_idle_pipe = true;
    if (w->c->buf != NULL)
        w->saw_buffer = true;
    w->last_rfd = w->c->pipe.rfd;
    w->last_in_pipe = w->c->in_pipe;
    return r;
}

static const struct ac_future_vtable watch_vt = {watch_poll, NULL};

/* A watch that owns its copy (dropping it drops the copy). */
static void watch_drop(struct ac_future *self) { ac_future_drop(&((struct watch *)self)->c->base); }
static const struct ac_future_vtable watch_owning_vt = {watch_poll, watch_drop};

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* ---- tests ---- */

/* 8 MiB (far more than a pipe holds) through a lagging destination, by
 * splice only; the EOF arrives as a half-close; the pipe is back, empty. */
static void test_splice_8mib_half_close(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
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
    assert_true(ac_copy_use_splice(&c));
    c.activity = &act;
    assert_int_equal(ac_block_on(f->w, &wt.base), 0);
    assert_int_equal(c.err, 0);
    assert_true(c.splice);
    assert_true(c.read_eof && c.shut_done);
    assert_int_equal(c.bytes, 8 * MIB);
    assert_true(wt.saw_pipe_bytes);
    assert_false(wt.held_idle_pipe);
    assert_false(wt.saw_buffer); /* not one byte through user space */
    assert_true(act > 0);
    assert_int_equal(c.pipe.rfd, -1);
    assert_int_equal(pool->n_out, 0);
    assert_true(pool->n_idle >= 1);
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(dst.tid, NULL);
    assert_int_equal(dst.recv_len, 8 * MIB);
    assert_true(dst.recv_sum == expected_sum(8 * MIB, 1));

    /* Half-close only: b's peer still writes, and it arrives. */
    assert_still_reads_back(f->w, &sb, pb);

    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* Both directions spliced at once, each half-closed in turn, always or in
 * auto mode, where bulk data switches to splice (copy_fixture.h). */
static void test_splice_bidi_half_close_each_way(void **state)
{
    bidi_half_close_each_way(((struct fixture *)*state)->w, COPY_SPLICE);
}

static void test_splice_auto_bidi_half_close_each_way(void **state)
{
    bidi_half_close_each_way(((struct fixture *)*state)->w, COPY_SPLICE_AUTO);
}

/* ---- auto mode: splice for bulk data only ---- */

/* Ping-pong of small messages across two stream pairs: a's peer sends,
 * b's peer answers, `rounds` times, then both shut down. */
struct pingpong {
    pthread_t tid;
    int pa, pb;
    unsigned rounds;
    size_t len;
    bool ok;
};

static bool read_n(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void *pingpong_main(void *arg)
{
    struct pingpong *p = arg;
    unsigned char msg[512], got[512];

    p->ok = p->len <= sizeof(msg);
    for (unsigned i = 0; p->ok && i < p->rounds; i++) {
        for (size_t k = 0; k < p->len; k++)
            msg[k] = pattern(i * p->len + k, 9);
        p->ok = send(p->pa, msg, p->len, MSG_NOSIGNAL) == (ssize_t)p->len &&
                read_n(p->pb, got, p->len) && memcmp(msg, got, p->len) == 0;
        msg[0] ^= 0xff; /* the answer differs from the question */
        p->ok = p->ok && send(p->pb, msg, p->len, MSG_NOSIGNAL) == (ssize_t)p->len &&
                read_n(p->pa, got, p->len) && memcmp(msg, got, p->len) == 0;
    }
    shutdown(p->pa, SHUT_WR);
    shutdown(p->pb, SHUT_WR);
    return NULL;
}

/* Requests and answers smaller than the buffer never take a pipe: each costs
 * one read(2) and one write(2), not three splices. */
static void test_splice_auto_small_messages_take_no_pipe(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
    struct ac_stream sa, sb;
    struct ac_copy_bidi bc;
    struct pingpong pp = {.rounds = 200, .len = 300};

    ac_pipe_pool_clear(pool);
    unsigned long made = pool->made;
    stream_pair(f->w, &sa, &pp.pa, 0);
    stream_pair(f->w, &sb, &pp.pb, 0);
    assert_int_equal(pthread_create(&pp.tid, NULL, pingpong_main, &pp), 0);
    ac_copy_bidi_init(&bc, &sa, &sb, 0);
    assert_true(ac_copy_bidi_splice_auto(&bc));
    assert_int_equal(ac_block_on(f->w, &bc.base), 0);
    pthread_join(pp.tid, NULL);
    assert_true(pp.ok);
    assert_int_equal(bc.err, 0);
    assert_int_equal(bc.ab.bytes, 200 * 300);
    assert_int_equal(bc.ba.bytes, 200 * 300);
    assert_false(bc.ab.splice);
    assert_false(bc.ba.splice);
    assert_int_equal(pool->made, made); /* not one pipe */
    assert_int_equal(pool->n_out, 0);
    ac_future_drop(&bc.base);
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pp.pa);
    close(pp.pb);
}

/* Bulk data switches to splice (a pipe is taken), the small messages after
 * it switch back to the buffer copy; every byte arrives in order. The first
 * 64 KiB are queued before the copy starts, so its first read fills the
 * buffer whatever the machine's load. */
static void test_splice_auto_bulk_then_small(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
    struct ac_stream sa, sb;
    struct ac_copy c;
    struct watch wt = {.base.vt = &watch_vt, .c = &c};
    unsigned char first[65536];
    int pa, pb;

    ac_pipe_pool_clear(pool);
    unsigned long made = pool->made;
    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 65536);
    struct bulk_then_small src = {.fd = pa, .bulk = 8 * MIB, .small = 100, .nsmall = 20,
                                  .off = sizeof(first), .seed = 11};
    for (size_t i = 0; i < sizeof(first); i++)
        first[i] = pattern(i, 11);
    assert_int_equal(send(pa, first, sizeof(first), MSG_NOSIGNAL), (ssize_t)sizeof(first));
    struct peer dst = {.fd = pb, .read_first = true};
    assert_int_equal(pthread_create(&src.tid, NULL, bulk_then_small_main, &src), 0);
    peer_start(&dst);

    ac_copy_init(&c, &sa, &sb, 0);
    ac_copy_no_ring(&c); /* splice-auto itself, on every backend */
    assert_true(ac_copy_splice_auto(&c));
    assert_false(c.splice); /* starts as a buffer copy */
    assert_int_equal(ac_block_on(f->w, &wt.base), 0);
    assert_int_equal(c.err, 0);
    assert_true(c.read_eof && c.shut_done);
    assert_int_equal(c.bytes, 8 * MIB + 20 * 100);
    assert_true(pool->made > made);  /* the bulk went through a pipe */
    assert_false(wt.held_idle_pipe);
    assert_false(c.splice);          /* the small messages did not */
    assert_int_equal(c.pipe.rfd, -1);
    assert_int_equal(pool->n_out, 0);
    ac_future_drop(&c.base);

    pthread_join(src.tid, NULL);
    pthread_join(dst.tid, NULL);
    assert_int_equal(dst.recv_len, 8 * MIB + 20 * 100);
    assert_true(dst.recv_sum == expected_sum(8 * MIB + 20 * 100, 11));
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

/* A peer's reset mid-stream ends both directions with ECONNRESET, and no
 * pipe stays lent. */
static void test_splice_reset_ends_both(void **state)
{
    struct fixture *f = *state;
    struct ac_stream sa, sb;
    struct ac_copy_bidi bc;
    struct resetter rs;
    int pa, pb;

    stream_pair(f->w, &sa, &pa, 0);
    stream_pair(f->w, &sb, &pb, 0);
    rs.fd = pa;
    rs.chunks = 64;
    assert_int_equal(pthread_create(&rs.tid, NULL, resetter_main, &rs), 0);

    ac_copy_bidi_init(&bc, &sa, &sb, 0);
    assert_true(ac_copy_bidi_use_splice(&bc));
    assert_int_equal(ac_block_on(f->w, &bc.base), 0);
    assert_int_equal(bc.err, -ECONNRESET);
    assert_int_equal(bc.ab.err, -ECONNRESET);
    assert_int_equal(bc.ab.bytes, 64 * 4096);
    assert_int_equal(ac_worker_pipe_pool(f->w)->n_out, 0);
    ac_future_drop(&bc.base);
    pthread_join(rs.tid, NULL);

    ac_stream_close(&sa);
    ac_stream_close(&sb);
    unsigned char buf[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = read(pb, buf, sizeof(buf))) > 0)
        got += (size_t)n;
    assert_int_equal(got, 64 * 4096); /* what came before the reset */
    close(pb);
}

/* The pool: a pipe comes back and is lent again (no new pipe), a pipe given
 * back with bytes in it is closed, and at most AC_PIPE_POOL_MAX stay idle. */
static void test_pipe_pool_reuse_and_emptiness(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
    struct ac_pipe p, q;
    char b[8];

    ac_pipe_pool_clear(pool);
    unsigned long made = pool->made;
    assert_int_equal(ac_pipe_get(pool, &p), 0);
    assert_int_equal(pool->made, made + 1);
    int rfd = p.rfd, wfd = p.wfd;
    ac_pipe_put(pool, &p, 0);
    assert_int_equal(p.rfd, -1);
    assert_int_equal(pool->n_idle, 1);
    assert_int_equal(ac_pipe_get(pool, &q), 0);
    assert_int_equal(pool->made, made + 1); /* reused */
    assert_int_equal(q.rfd, rfd);
    assert_int_equal(q.wfd, wfd);
    assert_int_equal(read(q.rfd, b, sizeof(b)), -1); /* empty */
    assert_int_equal(errno, EAGAIN);

    /* Bytes left in it: closed, not pooled. */
    assert_int_equal(write(q.wfd, "left", 4), 4);
    ac_pipe_put(pool, &q, 4);
    assert_int_equal(pool->n_idle, 0);
    assert_int_equal(pool->n_out, 0);
    assert_false(fd_open(rfd));
    assert_false(fd_open(wfd));

    /* Bounded. */
    struct ac_pipe many[AC_PIPE_POOL_MAX + 4];
    for (size_t i = 0; i < AC_PIPE_POOL_MAX + 4; i++)
        assert_int_equal(ac_pipe_get(pool, &many[i]), 0);
    int last = many[AC_PIPE_POOL_MAX + 3].rfd;
    for (size_t i = 0; i < AC_PIPE_POOL_MAX + 4; i++)
        ac_pipe_put(pool, &many[i], 0);
    assert_int_equal(pool->n_idle, AC_PIPE_POOL_MAX);
    assert_int_equal(pool->n_out, 0);
    assert_false(fd_open(last));
    ac_pipe_pool_clear(pool);
    assert_int_equal(pool->n_idle, 0);
}

/* Two copies in turn use the one pooled pipe; neither holds it once done. */
static void test_splice_copies_share_pool(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);

    ac_pipe_pool_clear(pool);
    unsigned long made = pool->made;
    for (unsigned round = 0; round < 2; round++) {
        struct ac_stream sa, sb;
        struct ac_copy c;
        int pa, pb;

        stream_pair(f->w, &sa, &pa, 0);
        stream_pair(f->w, &sb, &pb, 0);
        struct peer src = {.fd = pa, .seed = 7 + round, .send_len = MIB, .shut_after_send = true};
        struct peer dst = {.fd = pb, .read_first = true};
        peer_start(&src);
        peer_start(&dst);
        ac_copy_init(&c, &sa, &sb, 0);
        assert_true(ac_copy_use_splice(&c));
        assert_int_equal(ac_block_on(f->w, &c.base), 0);
        assert_int_equal(c.err, 0);
        assert_int_equal(c.bytes, MIB);
        ac_future_drop(&c.base);
        pthread_join(src.tid, NULL);
        pthread_join(dst.tid, NULL);
        assert_true(dst.recv_sum == expected_sum(MIB, 7 + round));
        ac_stream_close(&sa);
        ac_stream_close(&sb);
        close(pa);
        close(pb);
    }
    assert_int_equal(pool->made, made + 1);
    assert_int_equal(pool->n_idle, 1);
    assert_int_equal(pool->n_out, 0);
}

/* Dropped with bytes in the pipe (the destination never read): the pipe is
 * closed, not pooled. */
static void test_splice_drop_in_flight(void **state)
{
    struct fixture *f = *state;
    struct ac_pipe_pool *pool = ac_worker_pipe_pool(f->w);
    struct ac_stream sa, sb;
    struct ac_copy c;
    int pa, pb;
    unsigned char buf[4096];

    ac_pipe_pool_clear(pool);
    stream_pair(f->w, &sa, &pa, 0);
    lagging_pair(f->w, &sb, &pb, 4096);
    memset(buf, 'x', sizeof(buf));
    set_nonblock(pa);
    size_t sent = 0;
    for (int i = 0; i < 256; i++) { /* up to 1 MiB, as much as fits */
        ssize_t n = send(pa, buf, sizeof(buf), MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    assert_true(sent > 256 * 1024);
    ac_copy_init(&c, &sa, &sb, 0);
    assert_true(ac_copy_use_splice(&c));
    /* Polled until it stalls with bytes in the pipe, then dropped. */
    struct watch wt = {.base.vt = &watch_owning_vt, .c = &c};
    struct ac_timeout to;
    ac_timeout_init(&to, &wt.base, 300);
    assert_int_equal(ac_block_on(f->w, &to.base), 0);
    assert_true(to.timed_out);
    assert_true(wt.last_in_pipe > 0);
    assert_false(fd_open(wt.last_rfd)); /* closed when the timeout dropped it */
    assert_int_equal(c.pipe.rfd, -1);
    ac_future_drop(&to.base);
    assert_int_equal(pool->n_idle, 0);
    assert_int_equal(pool->n_out, 0);
    ac_stream_close(&sa);
    ac_stream_close(&sb);
    close(pa);
    close(pb);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* splice(2) has no MSG_NOSIGNAL (see splice.h) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_splice_8mib_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_bidi_half_close_each_way, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_auto_bidi_half_close_each_way, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_splice_auto_small_messages_take_no_pipe, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_splice_auto_bulk_then_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_reset_ends_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipe_pool_reuse_and_emptiness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_copies_share_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_drop_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

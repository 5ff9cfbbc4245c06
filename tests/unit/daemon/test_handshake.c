/* ferryd: the handshake phase (handshake.h) on a real loopback connection:
 * its steps share one deadline, the drain signal ends it, drop releases
 * the timer and the drain wait. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../asynccore/io_fixture.h"
#include "asynccore/local_notify.h"
#include "proxy/handshake.h"

struct pair {
    int ours, peer;
    struct ac_stream s;
};

static void pair_open(struct fixture *f, struct pair *p)
{
    tcp_pair(&p->ours, &p->peer, 0);
    assert_int_equal(ac_socket_stream_open(&p->s, f->w, p->ours), 0);
}

static void pair_close(struct pair *p)
{
    ac_stream_close(&p->s);
    close(p->peer);
}

/* The PROXY step finishes with its output; the ClientHello step after it
 * gets what is left of the same budget: it times out at the deadline set
 * at the start, not a fresh handshake_timeout later. */
static void test_steps_share_the_deadline(void **state)
{
    struct fixture *f = *state;
    struct pair p;
    struct ac_local_notify drain;
    struct ferry_handshake h;
    uint64_t deadline = ac_clock_now_ms() + 300;
    const char hdr[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n";

    pair_open(f, &p);
    ac_local_notify_init(&drain);
    ferry_handshake_init(&h, deadline, &drain);
    assert_int_equal(ac_timer_count(f->w), 0); /* entered in the wheel when first polled */

    assert_int_equal(send(p.peer, hdr, strlen(hdr), 0), (ssize_t)strlen(hdr));
    ferry_handshake_peek(&h, FERRY_HS_PROXY, &p.s);
    assert_int_equal(ac_block_on(f->w, &h.base), 0);
    assert_int_equal(h.end, FERRY_HS_DONE);
    assert_int_equal(h.s.peek.err, 0);
    assert_true(h.s.peek.proxy.has_addrs);
    assert_int_equal(ntohs(((struct sockaddr_in *)&h.s.peek.proxy.src)->sin_port), 1111);

    sleep_ms(150); /* a client slow to send its ClientHello */
    ferry_handshake_peek(&h, FERRY_HS_HELLO, &p.s);
    assert_int_equal(ac_block_on(f->w, &h.base), 0);
    assert_int_equal(h.end, FERRY_HS_TIMEOUT);
    assert_true(ac_clock_now_ms() >= deadline); /* never early */
    assert_int_equal(h.deadline.sleep.deadline, deadline); /* the one set at the start */
    assert_int_equal(h.step, FERRY_HS_HELLO);

    ac_future_drop(&h.base);
    assert_false(ac_deadline_armed(&h.deadline));
    assert_int_equal(ac_timer_count(f->w), 0);
    assert_true(ac_list_empty(&drain.waiters));
    pair_close(&p);
}

/* Drives a handshake whose drain signal is set after its first poll (a
 * stop's drain_timeout ending while the client has sent nothing). */
struct drainer {
    struct ac_future base;
    struct ferry_handshake *h;
    struct ac_local_notify *drain;
    int polls;
};

static ac_poll_t drainer_poll(struct ac_future *f, struct ac_context *cx)
{
    struct drainer *d = (struct drainer *)f;
    if (ac_future_poll(&d->h->base, cx) == AC_READY)
        return AC_READY;
    if (d->polls++ == 0)
        ac_local_notify_all(d->drain); /* wakes the handshake's drain arm */
    return AC_PENDING;
}

static const struct ac_future_vtable drainer_vt = {drainer_poll, NULL};

static void test_drain_ends_a_step(void **state)
{
    struct fixture *f = *state;
    struct pair p;
    struct ac_local_notify drain;
    struct ferry_handshake h;

    pair_open(f, &p);
    ac_local_notify_init(&drain);
    ferry_handshake_init(&h, ac_clock_now_ms() + 10000, &drain);
    ferry_handshake_peek(&h, FERRY_HS_PROXY, &p.s);
    struct drainer d = {.base.vt = &drainer_vt, .h = &h, .drain = &drain};
    assert_int_equal(ac_block_on(f->w, &d.base), 0);
    assert_int_equal(h.end, FERRY_HS_DRAINED);
    assert_int_equal(d.polls, 1); /* woken by the signal, not by a timer */

    ac_future_drop(&h.base);
    assert_int_equal(ac_timer_count(f->w), 0);
    pair_close(&p);
}

/* A peer that closes before a whole header: the step ends with -EPIPE, and
 * a handshake dropped mid-step releases its deadline at once. */
static void test_eof_and_drop_mid_step(void **state)
{
    struct fixture *f = *state;
    struct pair p;
    struct ac_local_notify drain;
    struct ferry_handshake h;

    pair_open(f, &p);
    ac_local_notify_init(&drain);
    ferry_handshake_init(&h, ac_clock_now_ms() + 10000, &drain);
    assert_int_equal(send(p.peer, "PROXY TCP4", 10, 0), 10);
    shutdown(p.peer, SHUT_WR);
    ferry_handshake_peek(&h, FERRY_HS_PROXY, &p.s);
    assert_int_equal(ac_block_on(f->w, &h.base), 0);
    assert_int_equal(h.end, FERRY_HS_DONE);
    assert_int_equal(h.s.peek.err, -EINVAL); /* stopped sending mid-header */

    ferry_handshake_peek(&h, FERRY_HS_HELLO, &p.s); /* a next step, then dropped */
    assert_int_equal(ac_timer_count(f->w), 1);
    ac_future_drop(&h.base);
    ac_future_drop(&h.base); /* idempotent */
    assert_int_equal(ac_timer_count(f->w), 0);
    assert_true(ac_list_empty(&drain.waiters));
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steps_share_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_ends_a_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_and_drop_mid_step, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

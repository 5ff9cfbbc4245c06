/* Shared fixture for the asynccore I/O unit tests (net, stream, copy): a
 * one-worker runtime per test, connected loopback TCP pairs on 127.0.0.1 and
 * a millisecond sleep. Include after <cmocka.h>. */
#ifndef AC_TEST_IO_FIXTURE_H
#define AC_TEST_IO_FIXTURE_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

struct fixture {
    struct ac_runtime *rt;
    struct ac_worker *w;
};

/* cmocka setup: a runtime with one worker and one blocking thread. */
static inline int setup(void **state)
{
    static struct fixture f;
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};

    f.rt = ac_runtime_new(&opts);
    if (f.rt == NULL)
        return -1;
    f.w = ac_runtime_worker(f.rt, 0);
    *state = &f;
    return 0;
}

/* cmocka teardown: every test leaves no reactor registration and no armed
 * timer behind, then the runtime is freed. */
static inline int teardown(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ac_reactor_registrations(f->w), 0);
    assert_int_equal(ac_timer_count(f->w), 0);
    ac_runtime_free(f->rt);
    return 0;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static inline void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A connected loopback TCP pair: *ours non-blocking (for a stream), *peer
 * blocking (for a helper thread or the test itself). peer_rcvbuf > 0 shrinks
 * the peer's receive buffer before the connection is made. */
static inline void tcp_pair(int *ours, int *peer, int peer_rcvbuf)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0 && c >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    if (peer_rcvbuf > 0)
        assert_int_equal(
            setsockopt(c, SOL_SOCKET, SO_RCVBUF, &peer_rcvbuf, sizeof(peer_rcvbuf)), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    int s = accept(l, NULL, NULL);
    assert_true(s >= 0);
    close(l);
    set_nonblock(s);
    *ours = s;
    *peer = c;
}

/* tcp_pair, with a socket stream on w opened over our end. */
static inline void stream_pair(struct ac_worker *w, struct ac_stream *s, int *peer,
                               int peer_rcvbuf)
{
    int ours;

    tcp_pair(&ours, peer, peer_rcvbuf);
    assert_int_equal(ac_socket_stream_open(s, w, ours), 0);
}

#endif

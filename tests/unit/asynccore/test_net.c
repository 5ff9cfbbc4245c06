/* asynccore listeners and connects: TCP (IPv4, IPv6) and Unix, address
 * formatting, refused connects, cancelled connects and accept under EMFILE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "asynccore/combinators.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

#include "io_fixture.h"

/* ---- addresses ---- */

static socklen_t loopback4(struct sockaddr_storage *ss, unsigned port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*in);
}

static socklen_t loopback6(struct sockaddr_storage *ss, unsigned port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    in6->sin6_addr = in6addr_loopback;
    return sizeof(*in6);
}

static socklen_t unix_addr(struct sockaddr_storage *ss, const char *path)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;

    memset(ss, 0, sizeof(*ss));
    un->sun_family = AF_UNIX;
    snprintf(un->sun_path, sizeof(un->sun_path), "%s", path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

/* The address a listening socket was bound to (with its real port). */
static socklen_t bound_addr(int fd, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof(*ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)ss, &len), 0);
    return len;
}

/* A listening socket (ac_listen_socket) on 127.0.0.1 at a free port; *ss
 * and *len get the address it was bound to. */
static int listen_loopback4(struct sockaddr_storage *ss, socklen_t *len, int backlog,
                            unsigned flags)
{
    int fd = ac_listen_socket((struct sockaddr *)ss, loopback4(ss, 0), backlog, flags);

    assert_true(fd >= 0);
    *len = bound_addr(fd, ss);
    return fd;
}

static void make_unix_path(char *buf, size_t size, const char *tag)
{
    snprintf(buf, size, "/tmp/ac-test-net-%ld-%s.sock", (long)getpid(), tag);
    unlink(buf);
}

/* ---- addresses ---- */

static void test_addr_format(void **state)
{
    struct sockaddr_storage ss;
    char buf[AC_ADDR_STRLEN];
    socklen_t len;
    (void)state;

    len = loopback4(&ss, 8080);
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                        "127.0.0.1:8080");
    len = loopback6(&ss, 443);
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                        "[::1]:443");
    len = unix_addr(&ss, "/run/x.sock");
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                        "unix:/run/x.sock");
    /* abstract namespace */
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    memset(&ss, 0, sizeof(ss));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, "\0abs", 4);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4);
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                        "unix:@abs");
    /* unnamed (an accepted Unix connection) */
    len = sizeof(sa_family_t);
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)), "unix:");
    /* truncated, never overflowing */
    char small[6];
    len = loopback4(&ss, 8080);
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, small, sizeof(small)),
                        "127.0");
    ss.ss_family = AF_APPLETALK;
    assert_string_equal(ac_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)), "?");
}

/* ---- accept + connect + a round trip ---- */

struct roundtrip {
    struct ac_listener l;
    struct ac_accept acc;
    struct ac_connect con;
    struct ac_join2 join;
    struct ac_stream client, server;
};

/* Accepts and connects at once, then sends "ping" client->server and "pong"
 * back. Returns the accepted peer address in *peer. */
static void roundtrip(struct fixture *f, int lfd, const struct sockaddr *sa, socklen_t sa_len,
                      char *peer, size_t peer_size)
{
    struct roundtrip rt;
    char buf[4];

    assert_int_equal(ac_listener_open(&rt.l, f->w, lfd, true, 0), 0);
    ac_accept_init(&rt.acc, &rt.l);
    ac_connect_init(&rt.con, sa, sa_len, &rt.client);
    ac_join2_init(&rt.join, &rt.acc.base, &rt.con.base);
    assert_int_equal(ac_block_on(f->w, &rt.join.base), 0);
    assert_int_equal(rt.con.err, 0);
    assert_int_equal(rt.acc.err, 0);
    assert_true(rt.acc.fd >= 0);
    assert_true(ac_stream_fd(&rt.client) >= 0);
    assert_int_equal(rt.l.accepted, 1);
    ac_addr_format((struct sockaddr *)&rt.acc.peer, rt.acc.peer_len, peer, peer_size);
    int fd = rt.acc.fd;
    ac_future_drop(&rt.join.base);

    /* The accepted socket is non-blocking and close-on-exec. */
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    if (sa->sa_family != AF_UNIX) {
        int nd = 0;
        socklen_t ol = sizeof(nd);
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &ol), 0);
        assert_true(nd != 0);
    }
    assert_int_equal(ac_socket_stream_open(&rt.server, f->w, fd), 0);

    struct ac_write_all wa;
    struct ac_read_exact re;
    struct ac_join2 j;
    ac_write_all_init(&wa, &rt.client, "ping", 4);
    ac_read_exact_init(&re, &rt.server, buf, 4);
    ac_join2_init(&j, &wa.base, &re.base);
    assert_int_equal(ac_block_on(f->w, &j.base), 0);
    assert_int_equal(wa.err, 0);
    assert_int_equal(re.err, 0);
    assert_memory_equal(buf, "ping", 4);
    ac_future_drop(&j.base);

    ac_write_all_init(&wa, &rt.server, "pong", 4);
    ac_read_exact_init(&re, &rt.client, buf, 4);
    ac_join2_init(&j, &wa.base, &re.base);
    assert_int_equal(ac_block_on(f->w, &j.base), 0);
    assert_int_equal(re.err, 0);
    assert_memory_equal(buf, "pong", 4);
    ac_future_drop(&j.base);

    ac_stream_close(&rt.client);
    ac_stream_close(&rt.server);
    ac_listener_close(&rt.l);
}

static void test_tcp4(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    char peer[AC_ADDR_STRLEN];

    socklen_t len;
    int lfd = listen_loopback4(&ss, &len, 16, 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    int one = 0;
    socklen_t ol = sizeof(one);
    assert_int_equal(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, &ol), 0);
    assert_true(one != 0);
    roundtrip(f, lfd, (struct sockaddr *)&ss, len, peer, sizeof(peer));
    assert_int_equal(strncmp(peer, "127.0.0.1:", 10), 0);
}

static void test_tcp6(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    char peer[AC_ADDR_STRLEN];

    socklen_t len = loopback6(&ss, 0);
    int lfd = ac_listen_socket((struct sockaddr *)&ss, len, 16, AC_LISTEN_V6ONLY);
    if (lfd == -EAFNOSUPPORT || lfd == -EADDRNOTAVAIL) {
        skip(); /* no IPv6 here */
    }
    assert_true(lfd >= 0);
    int v6only = 0;
    socklen_t ol = sizeof(v6only);
    assert_int_equal(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol), 0);
    assert_int_equal(v6only, 1);
    len = bound_addr(lfd, &ss);
    roundtrip(f, lfd, (struct sockaddr *)&ss, len, peer, sizeof(peer));
    assert_int_equal(strncmp(peer, "[::1]:", 6), 0);
}

static void test_reuseport(void **state)
{
    struct sockaddr_storage ss;
    (void)state;

    socklen_t len;
    int a = listen_loopback4(&ss, &len, 16, AC_LISTEN_REUSEPORT);
    /* A second socket on the same port: allowed only with SO_REUSEPORT. */
    int b = ac_listen_socket((struct sockaddr *)&ss, len, 16, AC_LISTEN_REUSEPORT);
    assert_true(b >= 0);
    int c = ac_listen_socket((struct sockaddr *)&ss, len, 16, 0);
    assert_int_equal(c, -EADDRINUSE);
    close(a);
    close(b);
}

static void test_unix(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    char path[108], peer[AC_ADDR_STRLEN];

    make_unix_path(path, sizeof(path), "rt");
    socklen_t len = unix_addr(&ss, path);
    int lfd = ac_listen_socket((struct sockaddr *)&ss, len, 16, 0);
    assert_true(lfd >= 0);
    roundtrip(f, lfd, (struct sockaddr *)&ss, len, peer, sizeof(peer));
    assert_string_equal(peer, "unix:"); /* the client is unnamed */
    unlink(path);
}

/* A stale socket file is replaced; a live one and a non-socket are not. */
static void test_unix_stale(void **state)
{
    struct sockaddr_storage ss;
    char path[108];
    struct stat st;
    (void)state;

    make_unix_path(path, sizeof(path), "stale");
    socklen_t len = unix_addr(&ss, path);
    int a = ac_listen_socket((struct sockaddr *)&ss, len, 16, 0);
    assert_true(a >= 0);
    /* live: refused, the file is kept */
    assert_int_equal(ac_listen_socket((struct sockaddr *)&ss, len, 16, 0), -EADDRINUSE);
    assert_int_equal(stat(path, &st), 0);
    close(a); /* the file stays behind: stale */
    int b = ac_listen_socket((struct sockaddr *)&ss, len, 16, 0);
    assert_true(b >= 0);
    close(b);
    unlink(path);

    /* a regular file is never removed */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ac_listen_socket((struct sockaddr *)&ss, len, 16, 0), -EADDRINUSE);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(path);
}

/* ---- connect failures ---- */

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_stream s;
    struct ac_connect c;

    /* A port that was just free: bind, learn it, close. */
    socklen_t len;
    int tmp = listen_loopback4(&ss, &len, 1, 0);
    close(tmp);

    ac_connect_init(&c, (struct sockaddr *)&ss, len, &s);
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_int_equal(c.err, -ECONNREFUSED);
    assert_int_equal(ac_stream_fd(&s), -1); /* nothing to close */
    ac_future_drop(&c.base);
    ac_stream_close(&s); /* harmless */
    assert_int_equal(ac_reactor_registrations(f->w), 0);
}

static void test_connect_unix_missing(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_stream s;
    struct ac_connect c;
    char path[108];

    make_unix_path(path, sizeof(path), "missing");
    socklen_t len = unix_addr(&ss, path);
    ac_connect_init(&c, (struct sockaddr *)&ss, len, &s);
    assert_int_equal(ac_block_on(f->w, &c.base), 0);
    assert_int_equal(c.err, -ENOENT);
    assert_int_equal(ac_stream_fd(&s), -1);
    ac_future_drop(&c.base);
}

/* Polls a connect once, then drops it: the half-open socket is closed. */
struct poll_once {
    struct ac_future base;
    struct ac_future *inner;
    ac_poll_t result;
};

static ac_poll_t poll_once_poll(struct ac_future *self, struct ac_context *cx)
{
    struct poll_once *p = (struct poll_once *)self;

    p->result = ac_future_poll(p->inner, cx);
    return AC_READY;
}

static const struct ac_future_vtable poll_once_vt = {poll_once_poll, NULL};

static void test_connect_dropped(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_stream s;
    struct ac_connect c;

    /* A listener whose accept queue is full: SYNs get no answer, so the
     * connect stays in progress. Fill the queue with blocking connects. */
    socklen_t len;
    int lfd = listen_loopback4(&ss, &len, 0, 0);
    int fill[4];
    int nfill = 0;
    for (; nfill < 4; nfill++) {
        fill[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fill[nfill] >= 0);
        (void)connect(fill[nfill], (struct sockaddr *)&ss, len);
    }
    usleep(50 * 1000);

    ac_connect_init(&c, (struct sockaddr *)&ss, len, &s);
    struct poll_once po = {.base.vt = &poll_once_vt, .inner = &c.base};
    assert_int_equal(ac_block_on(f->w, &po.base), 0);
    assert_int_equal(po.result, AC_PENDING);
    assert_true(ac_stream_fd(&s) >= 0);
    assert_int_equal(ac_reactor_registrations(f->w), 1);
    ac_future_drop(&c.base);
    assert_int_equal(ac_stream_fd(&s), -1);
    assert_int_equal(ac_reactor_registrations(f->w), 0);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
}

/* A listening socket shut down under the listener: accept says so (Ready
 * with -errno), does not wait forever, and pauses on the back-off instead of
 * ending: called again it retries (and reports again) after the pause. */
static void test_accept_fatal(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_listener l;
    struct ac_accept a;

    socklen_t len;
    int lfd = listen_loopback4(&ss, &len, 16, 0);
    assert_int_equal(ac_listener_open(&l, f->w, lfd, true, 0), 0);
    assert_int_equal(shutdown(lfd, SHUT_RDWR), 0);
    ac_accept_init(&a, &l);
    assert_int_equal(ac_block_on(f->w, &a.base), 0);
    assert_int_equal(a.err, -EINVAL);
    assert_int_equal(a.fd, -1);
    assert_int_equal(l.accepted, 0);
    assert_true(l.paused);
    ac_future_drop(&a.base);
    ac_accept_init(&a, &l);
    assert_int_equal(ac_block_on(f->w, &a.base), 0);
    assert_int_equal(a.err, -EINVAL);
    assert_int_equal(l.accept_errors, 2);
    ac_future_drop(&a.base);
    ac_listener_close(&l);
}

/* ---- descriptor exhaustion ---- */

/* Every descriptor below a lowered RLIMIT_NOFILE, taken and given back. */
struct fd_hog {
    struct rlimit old;
    int fd[64];
    int n;
    int err; /* errno of the dup that failed, 0 if all 64 succeeded */
};

/* Lowers the soft descriptor limit to `limit`, then takes every descriptor
 * left below it (at most 64). Asserts nothing once the limit is lowered. */
static void fd_hog_take(struct fd_hog *h, rlim_t limit)
{
    struct rlimit low;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &h->old), 0);
    low = h->old;
    low.rlim_cur = limit;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    h->err = 0;
    for (h->n = 0; h->n < 64; h->n++) {
        h->fd[h->n] = dup(0);
        if (h->fd[h->n] < 0) {
            h->err = errno;
            break;
        }
    }
}

static void fd_hog_release(struct fd_hog *h)
{
    for (int i = 0; i < h->n; i++)
        close(h->fd[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &h->old), 0);
}

/* ---- accept under EMFILE ---- */

struct acceptor {
    struct ac_future base;
    struct ac_listener *l;
    int polls;
    int fd;
    bool done;
};

static ac_poll_t acceptor_poll(struct ac_future *self, struct ac_context *cx)
{
    struct acceptor *a = (struct acceptor *)self;
    struct sockaddr_storage peer;
    socklen_t plen;

    a->polls++;
    if (ac_listener_poll_accept(a->l, cx, &a->fd, &peer, &plen) == AC_PENDING)
        return AC_PENDING;
    a->done = true;
    return AC_READY;
}

static const struct ac_future_vtable acceptor_vt = {acceptor_poll, NULL};

/* Sleeps in steps until *flag is set (bounded by max_ms). */
struct wait_flag {
    struct ac_future base;
    bool *flag;
    struct ac_sleep tick;
    uint64_t deadline;
};

static ac_poll_t wait_flag_poll(struct ac_future *self, struct ac_context *cx)
{
    struct wait_flag *w = (struct wait_flag *)self;

    while (!*w->flag && ac_clock_now_ms() < w->deadline) {
        if (ac_future_poll(&w->tick.base, cx) == AC_PENDING)
            return AC_PENDING;
        ac_future_drop(&w->tick.base);
        ac_sleep_init(&w->tick, 5);
    }
    return AC_READY;
}

static void wait_flag_drop(struct ac_future *self)
{
    ac_future_drop(&((struct wait_flag *)self)->tick.base);
}

static const struct ac_future_vtable wait_flag_vt = {wait_flag_poll, wait_flag_drop};

static void wait_flag_init(struct wait_flag *w, bool *flag, uint64_t max_ms)
{
    w->base.vt = &wait_flag_vt;
    w->flag = flag;
    w->deadline = ac_clock_now_ms() + max_ms;
    ac_sleep_init(&w->tick, 5);
}

static void test_accept_emfile(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_listener l;
    struct fd_hog hog;

    socklen_t len;
    int lfd = listen_loopback4(&ss, &len, 16, 0);
    assert_int_equal(ac_listener_open(&l, f->w, lfd, true, 0), 0);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(client >= 0);

    /* Lower the limit to a little above the highest descriptor in use, then
     * take every remaining one. */
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    int highest = client > probe ? client : probe;
    fd_hog_take(&hog, (rlim_t)highest + 16);
    assert_true(hog.n < 64);
    assert_int_equal(hog.err, EMFILE);

    /* The connection waits in the kernel's queue. */
    assert_int_equal(connect(client, (struct sockaddr *)&ss, len), 0);

    struct acceptor a = {.base.vt = &acceptor_vt, .l = &l, .fd = -1};
    assert_int_equal(ac_spawn(f->w, &a.base, NULL), 0);
    struct ac_sleep nap;
    ac_sleep_init(&nap, 200);
    assert_int_equal(ac_block_on(f->w, &nap.base), 0);
    ac_future_drop(&nap.base);

    /* Observed before anything is asserted, so a failure cannot leave the
     * descriptor limit lowered for the tests that follow. */
    bool done = a.done, paused = l.paused;
    uint64_t errors = l.accept_errors;
    int polls = a.polls;
    unsigned timers = ac_timer_count(f->w);
    fd_hog_release(&hog);

    /* Paused on the back-off timer: a handful of polls (10+20+40+80 ms
     * steps), not a spin. */
    assert_false(done);
    assert_true(paused);
    assert_true(errors >= 1);
    assert_true(polls >= 2);
    assert_true(polls <= 10);
    /* Its back-off timer at most: none when it fired in the same loop turn
     * as the nap (a loaded machine) and the retry has not been polled yet. */
    assert_true(timers <= 1);

    /* The descriptors are free again: the pending connection is accepted at
     * the next retry. */
    struct wait_flag wf;
    wait_flag_init(&wf, &a.done, 5000);
    assert_int_equal(ac_block_on(f->w, &wf.base), 0);
    ac_future_drop(&wf.base);
    assert_true(a.done);
    assert_true(a.fd >= 0);
    assert_false(l.paused);
    assert_int_equal(l.backoff_ms, 10);
    assert_int_equal(l.accepted, 1);

    assert_int_equal(write(client, "x", 1), 1);
    char c;
    assert_int_equal(read(a.fd, &c, 1), 1);
    close(a.fd);
    close(client);
    ac_listener_close(&l);
}

/* A listener closed while paused drops its timer. */
static void test_listener_close_while_paused(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_storage ss;
    struct ac_listener l;
    struct fd_hog hog;

    socklen_t len;
    int lfd = listen_loopback4(&ss, &len, 16, 0);
    assert_int_equal(ac_listener_open(&l, f->w, lfd, true, 0), 0);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(client >= 0);
    fd_hog_take(&hog, (rlim_t)client + 1); /* no descriptor left above client */
    assert_int_equal(connect(client, (struct sockaddr *)&ss, len), 0);

    /* Let the loop see the listener's readiness, then accept once. */
    struct ac_sleep nap;
    ac_sleep_init(&nap, 30);
    assert_int_equal(ac_block_on(f->w, &nap.base), 0);
    ac_future_drop(&nap.base);
    struct poll_once po;
    struct acceptor a = {.base.vt = &acceptor_vt, .l = &l, .fd = -1};
    po.base.vt = &poll_once_vt;
    po.inner = &a.base;
    assert_int_equal(ac_block_on(f->w, &po.base), 0);
    bool paused = l.paused, armed = l.retry_armed;
    unsigned timers = ac_timer_count(f->w);
    fd_hog_release(&hog);
    assert_int_equal(po.result, AC_PENDING);
    assert_true(paused);
    assert_true(armed);
    assert_int_equal(timers, 1);
    ac_listener_close(&l);
    assert_int_equal(ac_timer_count(f->w), 0);
    assert_int_equal(ac_reactor_registrations(f->w), 0);
    close(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_format),
        cmocka_unit_test_setup_teardown(test_tcp4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp6, setup, teardown),
        cmocka_unit_test(test_reuseport),
        cmocka_unit_test_setup_teardown(test_unix, setup, teardown),
        cmocka_unit_test(test_unix_stale),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_unix_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_close_while_paused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

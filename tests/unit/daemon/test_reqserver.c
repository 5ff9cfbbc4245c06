/* The request server's deadline, one per client and moved from stage to
 * stage, on a real runtime with short timeouts: a silent client is closed
 * at the read timeout without an answer; an answer that is slow to build is
 * not cut by the read timeout; a client that never reads a large answer is
 * dropped at the write timeout; a client that keeps its side open after the
 * answer is let go after the linger. Every client is dropped exactly once,
 * its permit returned. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "control/reqserver.h"

enum { READ_MS = 300, WRITE_MS = 300, SLOW_MS = 600, BIG = 16 << 20, MAX_CLIENTS = 8 };

struct server {
    struct ac_runtime *rt;
    pthread_t thread;
    struct ferry_rs_pool pool;
    uint16_t port;
    atomic_uint dropped; /* clients dropped so far */
};

/* A client: "small\n" is answered at once, "slow\n" after SLOW_MS (longer
 * than the read timeout), "big\n" with BIG bytes. */
struct client {
    struct ferry_rs_client rs; /* first */
    struct ac_sleep slow;
};

static size_t complete(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    return nl ? (size_t)(nl - buf) + 1 : 0;
}

static struct ferry_rs_client *client_new(void *arg)
{
    (void)arg;
    struct client *c = calloc(1, sizeof(*c));
    return c ? &c->rs : NULL;
}

static ac_poll_t respond(struct ferry_rs_client *rc, struct ac_context *cx)
{
    struct client *c = (struct client *)rc;
    if (strcmp(rc->req, "slow\n") == 0) {
        if (!c->slow.base.vt)
            ac_sleep_init(&c->slow, SLOW_MS);
        if (ac_future_poll(&c->slow.base, cx) == AC_PENDING)
            return AC_PENDING;
    }
    if (strcmp(rc->req, "big\n") == 0) {
        char chunk[4096];
        memset(chunk, 'b', sizeof(chunk));
        for (size_t i = 0; i < BIG / sizeof(chunk); i++)
            ferry_buf_append(&rc->out, chunk, sizeof(chunk));
    } else {
        ferry_buf_puts(&rc->out, "hello\n");
    }
    assert_false(rc->out.oom);
    return AC_READY;
}

static void client_drop(struct ferry_rs_client *rc)
{
    struct client *c = (struct client *)rc;
    struct server *s = rc->arg;
    ac_future_drop(&c->slow.base);
    atomic_fetch_add(&s->dropped, 1);
}

static const struct ferry_rs_ops ops = {
    .max_request = 64,
    .read_timeout_ms = READ_MS,
    .write_timeout_ms = WRITE_MS,
    .complete = complete,
    .client_new = client_new,
    .respond = respond,
    .client_drop = client_drop,
};

static void *run_rt(void *arg)
{
    struct server *s = arg;
    assert_int_equal(ac_runtime_run(s->rt), 0);
    return NULL;
}

/* Idle clients give way (reqserver.h): a server whose read timeout (60 s)
 * is far beyond the tests' 10 s receive bound, so an answer or an EOF seen
 * there came from making room, not from a timeout. */
static const struct ferry_rs_ops patient_ops = {
    .max_request = 64,
    .read_timeout_ms = 60000,
    .write_timeout_ms = WRITE_MS,
    .complete = complete,
    .client_new = client_new,
    .respond = respond,
    .client_drop = client_drop,
};

static int start(void **state, const struct ferry_rs_ops *o, unsigned per_peer)
{
    signal(SIGPIPE, SIG_IGN);
    struct server *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    struct ac_runtime_opts opts = {.workers = 1};
    s->rt = ac_runtime_new(&opts);
    assert_non_null(s->rt);
    ferry_rs_pool_init(&s->pool, MAX_CLIENTS, per_peer);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = ac_listen_socket((struct sockaddr *)&sa, sizeof(sa), 16, 0);
    assert_true(fd >= 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(ferry_rs_spawn(ac_runtime_worker(s->rt, 0), fd, o, s, &s->pool, NULL), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, run_rt, s), 0);
    *state = s;
    return 0;
}

static int setup(void **state) { return start(state, &ops, 0); }
static int setup_patient(void **state) { return start(state, &patient_ops, 0); }
static int setup_per_peer(void **state) { return start(state, &patient_ops, 3); }

static int teardown(void **state)
{
    struct server *s = *state;
    ac_runtime_stop(s->rt);
    pthread_join(s->thread, NULL);
    ac_runtime_free(s->rt); /* drops the accept task and what clients remain */
    assert_int_equal(s->pool.n, 0);
    ferry_rs_pool_destroy(&s->pool);
    free(s);
    return 0;
}

static int connect_to(struct server *s, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf) /* before connect: the window stays small */
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until EOF or a reset; fails on the 10 s receive timeout. Returns
 * the bytes read. */
static size_t drain(int fd, char *keep, size_t keep_len)
{
    size_t total = 0;
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            if (total < keep_len)
                memcpy(keep + total, buf, (size_t)n < keep_len - total ? (size_t)n : keep_len - total);
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != ECONNRESET)
            fail_msg("recv: %s", strerror(errno));
        return total;
    }
}

/* Waits (10 s at most) until `want` clients were dropped. */
static void wait_dropped(struct server *s, unsigned want)
{
    for (int i = 0; i < 1000 && atomic_load(&s->dropped) < want; i++)
        poll(NULL, 0, 10);
    assert_int_equal(atomic_load(&s->dropped), want);
}

static void test_silent_client_closed_at_read_timeout(void **state)
{
    struct server *s = *state;
    unsigned before = atomic_load(&s->dropped);
    uint64_t t0 = ac_clock_now_ms();
    int fd = connect_to(s, 0);
    assert_int_equal(drain(fd, NULL, 0), 0); /* closed without an answer */
    assert_true(ac_clock_now_ms() - t0 >= READ_MS); /* never early */
    wait_dropped(s, before + 1);
    close(fd);
}

static void test_slow_answer_not_cut_by_read_timeout(void **state)
{
    struct server *s = *state;
    unsigned before = atomic_load(&s->dropped);
    int fd = connect_to(s, 0);
    assert_int_equal(send(fd, "slow\n", 5, MSG_NOSIGNAL), 5);
    char got[16] = {0};
    assert_int_equal(drain(fd, got, sizeof(got) - 1), 6); /* answer, then the server's EOF */
    assert_string_equal(got, "hello\n");
    close(fd);
    wait_dropped(s, before + 1);
}

static void test_non_reader_dropped_at_write_timeout(void **state)
{
    struct server *s = *state;
    unsigned before = atomic_load(&s->dropped);
    int fd = connect_to(s, 4096);
    assert_int_equal(send(fd, "big\n", 4, MSG_NOSIGNAL), 4);
    /* Never reading: the answer cannot be taken, so the client goes at the
     * write timeout (the 10 s bound is far above it). */
    wait_dropped(s, before + 1);
    size_t n = drain(fd, NULL, 0);
    assert_true(n < BIG);
    close(fd);
}

static void test_linger_ends(void **state)
{
    struct server *s = *state;
    unsigned before = atomic_load(&s->dropped);
    int fd = connect_to(s, 0);
    assert_int_equal(send(fd, "small\n", 6, MSG_NOSIGNAL), 6);
    char got[16] = {0};
    assert_int_equal(drain(fd, got, sizeof(got) - 1), 6);
    assert_string_equal(got, "hello\n");
    /* Our side stays open and keeps sending: the server discards it for
     * the linger, then lets the client go. */
    assert_int_equal(send(fd, "more\n", 5, MSG_NOSIGNAL), 5);
    wait_dropped(s, before + 1);
    close(fd);
}

/* True when fd was closed by the server (EOF or reset) without an answer,
 * within the 10 s receive bound. */
static bool closed_silently(int fd)
{
    return drain(fd, NULL, 0) == 0;
}

/* Twice MAX_CLIENTS silent clients, and then one that asks: it is answered
 * (the read timeout is 60 s), because each client past MAX_CLIENTS closed
 * the oldest idle one: the first MAX_CLIENTS silent ones are closed without
 * an answer, the newer ones are still held. */
static void test_idle_clients_give_way(void **state)
{
    struct server *s = *state;
    int idle[2 * MAX_CLIENTS];
    for (int i = 0; i < 2 * MAX_CLIENTS; i++)
        idle[i] = connect_to(s, 0);
    int fd = connect_to(s, 0);
    assert_int_equal(send(fd, "small\n", 6, MSG_NOSIGNAL), 6);
    char got[16] = {0};
    assert_int_equal(drain(fd, got, sizeof(got) - 1), 6);
    assert_string_equal(got, "hello\n");
    close(fd);
    for (int i = 0; i < MAX_CLIENTS + 1; i++)
        assert_true(closed_silently(idle[i]));
    /* The newest are held: they still get their answer. */
    for (int i = 2 * MAX_CLIENTS - 2; i < 2 * MAX_CLIENTS; i++) {
        assert_int_equal(send(idle[i], "small\n", 6, MSG_NOSIGNAL), 6);
        memset(got, 0, sizeof(got));
        assert_int_equal(drain(idle[i], got, sizeof(got) - 1), 6);
    }
    for (int i = 0; i < 2 * MAX_CLIENTS; i++)
        close(idle[i]);
}

/* With per_peer = 3, a fourth client from 127.0.0.1 closes that address's
 * oldest idle client. */
static void test_per_peer_cap(void **state)
{
    struct server *s = *state;
    int fds[5];
    for (int i = 0; i < 5; i++)
        fds[i] = connect_to(s, 0);
    int fd = connect_to(s, 0);
    assert_int_equal(send(fd, "small\n", 6, MSG_NOSIGNAL), 6);
    char got[16] = {0};
    assert_int_equal(drain(fd, got, sizeof(got) - 1), 6);
    close(fd);
    for (int i = 0; i < 3; i++) /* 5 + 1 clients, 3 kept: the oldest 3 went */
        assert_true(closed_silently(fds[i]));
    for (int i = 0; i < 5; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silent_client_closed_at_read_timeout),
        cmocka_unit_test(test_slow_answer_not_cut_by_read_timeout),
        cmocka_unit_test(test_non_reader_dropped_at_write_timeout),
        cmocka_unit_test(test_linger_ends),
    };
    const struct CMUnitTest room[] = {
        cmocka_unit_test_setup_teardown(test_idle_clients_give_way, setup_patient, teardown),
        cmocka_unit_test_setup_teardown(test_per_peer_cap, setup_per_peer, teardown),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed + cmocka_run_group_tests(room, NULL, NULL);
}

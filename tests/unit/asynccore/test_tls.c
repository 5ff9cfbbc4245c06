/* asynccore TLS streams over real TCP connections on 127.0.0.1: handshakes,
 * bulk transfer both ways, half-close, EOF without close_notify, handshake
 * failure reasons, and bytes held decrypted inside OpenSSL. Both ends run on
 * one worker; test material comes from tests/fixtures/gen-certs.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "asynccore/combinators.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/tls.h"
#include "cert_fixture.h"

/* ---- test material ---- */

struct fx {
    char dir[1024];
    SSL_CTX *server;    /* a.test, signed by the test CA */
    SSL_CTX *untrusted; /* a.test, signed by another CA */
    SSL_CTX *client;    /* verifies against the test CA */
};

static SSL_CTX *server_ctx(const char *dir, const char *pem)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, pem);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2) */
    struct fx *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || cert_dir_create(fx->dir, sizeof(fx->dir), "ferry-tls") != 0) {
        free(fx);
        return -1;
    }
    fx->server = server_ctx(fx->dir, "a-ec.pem");
    fx->untrusted = server_ctx(fx->dir, "server-untrusted.pem");
    fx->client = SSL_CTX_new(TLS_client_method());
    char ca[1200];
    snprintf(ca, sizeof(ca), "%s/ca.pem", fx->dir);
    if (fx->server == NULL || fx->untrusted == NULL || fx->client == NULL ||
        SSL_CTX_load_verify_locations(fx->client, ca, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(fx->client, SSL_VERIFY_PEER, NULL);
    *state = fx;
    return 0;
fail:
    fprintf(stderr, "cannot prepare TLS material in %s\n", fx->dir);
    cert_dir_remove(fx->dir);
    SSL_CTX_free(fx->server);
    SSL_CTX_free(fx->untrusted);
    SSL_CTX_free(fx->client);
    free(fx);
    return -1;
}

static int group_teardown(void **state)
{
    struct fx *fx = *state;
    cert_dir_remove(fx->dir);
    SSL_CTX_free(fx->server);
    SSL_CTX_free(fx->untrusted);
    SSL_CTX_free(fx->client);
    free(fx);
    return 0;
}

/* ---- a runtime and a connected pair ---- */

struct env {
    struct ac_runtime *rt;
    struct ac_worker *w;
    struct ac_listener l;
    struct ac_tls_stream s, c; /* server and client ends */
};

/* Runs f on the worker, failing the test after 15 s instead of hanging. */
static void run(struct env *e, struct ac_future *f)
{
    struct ac_timeout t;
    ac_timeout_init(&t, f, 15000);
    assert_int_equal(ac_block_on(e->w, &t.base), 0);
    bool timed_out = t.timed_out;
    ac_future_drop(&t.base);
    assert_false(timed_out);
}

/* Runs a and b together (ac_join2) and drops both. */
static void run_join(struct env *e, struct ac_future *a, struct ac_future *b)
{
    struct ac_join2 j;
    ac_join2_init(&j, a, b);
    run(e, &j.base);
    ac_future_drop(&j.base);
}

/* Connects a client to a listener on 127.0.0.1 and wraps both ends. */
static void env_open(struct env *e, SSL_CTX *sctx, SSL_CTX *cctx)
{
    memset(e, 0, sizeof(*e));
    struct ac_runtime_opts opts = {.workers = 1, .blocking_threads = 1};
    e->rt = ac_runtime_new(&opts);
    assert_non_null(e->rt);
    e->w = ac_runtime_worker(e->rt, 0);

    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = ac_listen_socket((struct sockaddr *)&sin, sizeof(sin), 16, 0);
    assert_true(lfd >= 0);
    socklen_t slen = sizeof(sin);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
    assert_int_equal(ac_listener_open(&e->l, e->w, lfd, true, 0), 0);

    struct ac_stream cplain, splain;
    memset(&cplain, 0, sizeof(cplain));
    memset(&splain, 0, sizeof(splain));
    struct ac_accept acc;
    struct ac_connect con;
    struct ac_join2 j;
    ac_accept_init(&acc, &e->l);
    ac_connect_init(&con, (struct sockaddr *)&sin, sizeof(sin), &cplain);
    ac_join2_init(&j, &acc.base, &con.base);
    run(e, &j.base);
    int fd = acc.fd, aerr = acc.err, cerr = con.err;
    ac_future_drop(&j.base);
    assert_int_equal(aerr, 0);
    assert_int_equal(cerr, 0);
    assert_true(fd >= 0);
    assert_int_equal(ac_socket_stream_open(&splain, e->w, fd), 0);

    unsigned regs = ac_reactor_registrations(e->w);
    assert_int_equal(ac_tls_stream_wrap(&e->s, &splain, sctx, true), 0);
    assert_int_equal(ac_tls_stream_wrap(&e->c, &cplain, cctx, false), 0);
    /* The sockets are now the TLS streams': closing the plain ones is a
     * no-op and keeps both the descriptors and the registrations. */
    assert_int_equal(ac_stream_fd(&splain), -1);
    assert_int_equal(ac_stream_fd(&cplain), -1);
    ac_stream_close(&splain);
    ac_stream_close(&cplain);
    assert_int_equal(ac_reactor_registrations(e->w), regs);
    assert_true(ac_stream_fd(&e->s.base) >= 0);
    assert_true(ac_stream_fd(&e->c.base) >= 0);
    assert_int_equal(SSL_set1_host(e->c.ssl, "a.test"), 1);
    assert_int_equal(SSL_set_tlsext_host_name(e->c.ssl, "a.test"), 1);
}

static void env_close(struct env *e)
{
    ac_stream_close(&e->s.base);
    ac_stream_close(&e->c.base);
    ac_stream_close(&e->s.base); /* twice: no-op */
    ac_listener_close(&e->l);
    assert_int_equal(ac_reactor_registrations(e->w), 0);
    ac_runtime_free(e->rt);
}

/* Both handshakes at once; returns through the futures. */
static void handshake(struct env *e, struct ac_tls_handshake *hs, struct ac_tls_handshake *hc)
{
    ac_tls_handshake_init(hs, &e->s);
    ac_tls_handshake_init(hc, &e->c);
    run_join(e, &hs->base, &hc->base);
}

static void handshake_ok(struct env *e)
{
    struct ac_tls_handshake hs, hc;
    handshake(e, &hs, &hc);
    assert_int_equal(hs.err, 0);
    assert_int_equal(hc.err, 0);
    assert_true(e->s.handshake_done);
    assert_true(e->c.handshake_done);
    assert_string_equal(ac_tls_servername(&e->s), "a.test");
}

/* ---- futures used by the tests ---- */

/* Writes data in calls of at most `chunk` bytes, then (if shut) shuts the
 * write half. */
struct writer {
    struct ac_future base;
    struct ac_stream *s;
    const unsigned char *data;
    size_t len, done, chunk;
    bool shut;
    int err;
};

static ac_poll_t writer_poll(struct ac_future *f, struct ac_context *cx)
{
    struct writer *w = (struct writer *)f;
    while (w->done < w->len) {
        size_t n = w->len - w->done < w->chunk ? w->len - w->done : w->chunk;
        ssize_t r;
        if (ac_stream_poll_write(w->s, cx, w->data + w->done, n, &r) == AC_PENDING)
            return AC_PENDING;
        if (r <= 0) {
            w->err = r < 0 ? (int)r : -EPIPE;
            return AC_READY;
        }
        assert_true((size_t)r <= n);
        w->done += (size_t)r;
    }
    if (w->shut && ac_stream_poll_shutdown(w->s, cx, &w->err) == AC_PENDING)
        return AC_PENDING;
    return AC_READY;
}

static const struct ac_future_vtable writer_vt = {writer_poll, NULL};

static void writer_init(struct writer *w, struct ac_stream *s, const void *data, size_t len,
                        size_t chunk, bool shut)
{
    memset(w, 0, sizeof(*w));
    w->base.vt = &writer_vt;
    w->s = s;
    w->data = data;
    w->len = len;
    w->chunk = chunk;
    w->shut = shut;
}

/* Reads until EOF (at most cap bytes) in reads of at most `chunk` bytes. */
struct reader {
    struct ac_future base;
    struct ac_stream *s;
    unsigned char *buf;
    size_t cap, len, chunk;
    bool stop_when_full; /* Ready once cap bytes arrived, without waiting for EOF */
    bool eof;
    int err;
};

static ac_poll_t reader_poll(struct ac_future *f, struct ac_context *cx)
{
    struct reader *r = (struct reader *)f;
    for (;;) {
        if (r->stop_when_full && r->len == r->cap)
            return AC_READY;
        unsigned char spare;
        size_t room = r->cap - r->len;
        size_t n = room < r->chunk ? room : r->chunk;
        unsigned char *dst = n > 0 ? r->buf + r->len : &spare;
        ssize_t got;
        if (ac_stream_poll_read(r->s, cx, dst, n > 0 ? n : 1, &got) == AC_PENDING)
            return AC_PENDING;
        if (got < 0) {
            r->err = (int)got;
            return AC_READY;
        }
        if (got == 0) {
            r->eof = true;
            return AC_READY;
        }
        if (n == 0) {
            r->err = -EOVERFLOW; /* more than expected */
            return AC_READY;
        }
        r->len += (size_t)got;
    }
}

static const struct ac_future_vtable reader_vt = {reader_poll, NULL};

static void reader_init(struct reader *r, struct ac_stream *s, void *buf, size_t cap, size_t chunk)
{
    memset(r, 0, sizeof(*r));
    r->base.vt = &reader_vt;
    r->s = s;
    r->buf = buf;
    r->cap = cap;
    r->chunk = chunk;
}

static unsigned char *pattern(size_t len, uint32_t seed)
{
    unsigned char *p = malloc(len);
    assert_non_null(p);
    uint32_t x = seed | 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* ---- tests ---- */

static void test_bulk_both_ways(void **state)
{
    struct fx *fx = *state;
    struct env e;
    env_open(&e, fx->server, fx->client);
    handshake_ok(&e);

    const size_t len = 4u << 20;
    unsigned char *up = pattern(len, 1), *down = pattern(len, 2);
    unsigned char *got_up = malloc(len), *got_down = malloc(len);
    assert_non_null(got_up);
    assert_non_null(got_down);
    struct writer wc, ws;
    struct reader rs, rc;
    writer_init(&wc, &e.c.base, up, len, len, true);
    writer_init(&ws, &e.s.base, down, len, 100000, true);
    reader_init(&rs, &e.s.base, got_up, len, 65536);
    reader_init(&rc, &e.c.base, got_down, len, 1000);
    struct ac_future *futs[4] = {&wc.base, &ws.base, &rs.base, &rc.base};
    bool done[4];
    struct ac_join_n j;
    ac_join_n_init(&j, futs, done, 4);
    run(&e, &j.base);
    ac_future_drop(&j.base);

    assert_int_equal(wc.err, 0);
    assert_int_equal(ws.err, 0);
    assert_int_equal(rs.err, 0);
    assert_int_equal(rc.err, 0);
    assert_true(rs.eof);
    assert_true(rc.eof);
    assert_int_equal(rs.len, len);
    assert_int_equal(rc.len, len);
    assert_memory_equal(got_up, up, len);
    assert_memory_equal(got_down, down, len);
    free(up);
    free(down);
    free(got_up);
    free(got_down);
    env_close(&e);
}

static void test_half_close(void **state)
{
    struct fx *fx = *state;
    struct env e;
    env_open(&e, fx->server, fx->client);
    handshake_ok(&e);

    /* The client says hello and shuts its write half: close_notify, then
     * an EOF on the server, whose own direction stays open. */
    unsigned char buf[64];
    struct writer w;
    struct reader r;
    writer_init(&w, &e.c.base, "hello", 5, 5, true);
    reader_init(&r, &e.s.base, buf, sizeof(buf), sizeof(buf));
    run_join(&e, &w.base, &r.base);
    assert_int_equal(w.err, 0);
    assert_int_equal(r.err, 0);
    assert_true(r.eof);
    assert_int_equal(r.len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_true(SSL_get_shutdown(e.s.ssl) & SSL_RECEIVED_SHUTDOWN); /* a real close_notify */
    assert_true(e.c.shutdown_sent);
    /* Reading again after EOF gives EOF again; writing after shutdown fails. */
    struct ac_read rd;
    ac_read_init(&rd, &e.s.base, buf, sizeof(buf));
    run(&e, &rd.base);
    ac_future_drop(&rd.base);
    assert_int_equal(rd.n, 0);
    struct ac_write_all wa;
    ac_write_all_init(&wa, &e.c.base, "x", 1);
    run(&e, &wa.base);
    ac_future_drop(&wa.base);
    assert_int_equal(wa.err, -EPIPE);

    /* The other direction still flows, and ends the same way. */
    writer_init(&w, &e.s.base, "bye", 3, 3, true);
    reader_init(&r, &e.c.base, buf, sizeof(buf), 2);
    run_join(&e, &w.base, &r.base);
    assert_int_equal(w.err, 0);
    assert_int_equal(r.err, 0);
    assert_true(r.eof);
    assert_int_equal(r.len, 3);
    assert_memory_equal(buf, "bye", 3);
    env_close(&e);
}

static void test_eof_without_close_notify(void **state)
{
    struct fx *fx = *state;
    struct env e;
    env_open(&e, fx->server, fx->client);
    handshake_ok(&e);

    /* A TCP half-close with no close_notify reads as EOF... */
    assert_int_equal(shutdown(ac_stream_fd(&e.c.base), SHUT_WR), 0);
    unsigned char buf[16];
    struct reader r;
    reader_init(&r, &e.s.base, buf, sizeof(buf), sizeof(buf));
    run(&e, &r.base);
    ac_future_drop(&r.base);
    assert_int_equal(r.err, 0);
    assert_true(r.eof);
    assert_int_equal(r.len, 0);
    /* ...and does not break the way back. */
    struct writer w;
    writer_init(&w, &e.s.base, "still here", 10, 10, true);
    reader_init(&r, &e.c.base, buf, sizeof(buf), sizeof(buf));
    run_join(&e, &w.base, &r.base);
    assert_int_equal(w.err, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, 10);
    assert_memory_equal(buf, "still here", 10);
    env_close(&e);
}

static void test_handshake_failure_reason(void **state)
{
    struct fx *fx = *state;
    struct env e;
    env_open(&e, fx->untrusted, fx->client);
    struct ac_tls_handshake hs, hc;
    handshake(&e, &hs, &hc);
    assert_int_equal(hc.err, -EPROTO);
    assert_string_equal(hc.reason, "certificate verify failed: unable to get local issuer certificate");
    assert_true(e.c.failed);
    /* The server learns it from the client's alert. */
    assert_int_equal(hs.err, -EPROTO);
    assert_non_null(strstr(hs.reason, "unknown ca"));
    assert_int_equal(ERR_peek_error(), 0); /* the shared queue is left clean */
    /* The failed streams refuse further work without touching OpenSSL. */
    unsigned char b[4];
    struct ac_read rd;
    ac_read_init(&rd, &e.c.base, b, sizeof(b));
    run(&e, &rd.base);
    ac_future_drop(&rd.base);
    assert_true(rd.n < 0);
    struct ac_shutdown sh;
    ac_shutdown_init(&sh, &e.s.base); /* no close_notify after a fatal error */
    run(&e, &sh.base);
    ac_future_drop(&sh.base);
    env_close(&e);
}

static void test_peer_closes_during_handshake(void **state)
{
    struct fx *fx = *state;
    struct env e;
    env_open(&e, fx->server, fx->client);
    /* The client goes away before saying anything. */
    ac_stream_close(&e.c.base);
    struct ac_tls_handshake hs;
    ac_tls_handshake_init(&hs, &e.s);
    run(&e, &hs.base);
    ac_future_drop(&hs.base);
    assert_true(hs.err < 0);
    assert_true(hs.reason[0] != '\0');
    env_close(&e);
}

/* Many small records read through a small buffer: OpenSSL (with read-ahead,
 * it drains the socket into its own buffer) holds bytes epoll never reports
 * again; every byte must still arrive. The writer keeps its write half open
 * until then: a FIN would leave the socket readable for good and hide a
 * stream that waits on the reactor with bytes inside OpenSSL. */
static void small_records(struct fx *fx, bool concurrent, bool read_ahead)
{
    struct env e;
    env_open(&e, fx->server, fx->client);
    SSL_set_read_ahead(e.c.ssl, read_ahead ? 1 : 0);
    handshake_ok(&e);

    const size_t len = 7 * 3000;
    unsigned char *data = pattern(len, 3), *got = malloc(len);
    assert_non_null(got);
    struct writer w;
    struct reader r;
    writer_init(&w, &e.s.base, data, len, 7, false); /* one 7-byte record per call */
    reader_init(&r, &e.c.base, got, len, 3);
    r.stop_when_full = true;
    if (concurrent) {
        run_join(&e, &r.base, &w.base);
    } else {
        run(&e, &w.base); /* everything is on the wire before the first read */
        ac_future_drop(&w.base);
        run(&e, &r.base);
        ac_future_drop(&r.base);
    }
    assert_int_equal(w.err, 0);
    assert_int_equal(r.err, 0);
    assert_false(r.eof);
    assert_int_equal(r.len, len);
    assert_memory_equal(got, data, len);
    /* Then close_notify ends the stream. */
    struct ac_shutdown sh;
    ac_shutdown_init(&sh, &e.s.base);
    run(&e, &sh.base);
    ac_future_drop(&sh.base);
    assert_int_equal(sh.err, 0);
    unsigned char b[4];
    reader_init(&r, &e.c.base, b, sizeof(b), sizeof(b));
    run(&e, &r.base);
    ac_future_drop(&r.base);
    assert_true(r.eof);
    assert_int_equal(r.len, 0);
    free(data);
    free(got);
    env_close(&e);
}

static void test_pending_decrypted_data(void **state)
{
    small_records(*state, false, true);
    small_records(*state, true, true);
    small_records(*state, false, false);
    small_records(*state, true, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_both_ways),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_eof_without_close_notify),
        cmocka_unit_test(test_handshake_failure_reason),
        cmocka_unit_test(test_peer_closes_during_handshake),
        cmocka_unit_test(test_pending_decrypted_data),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

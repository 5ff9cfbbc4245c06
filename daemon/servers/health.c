/* ferryd: active health checks.
 *
 * One task per checked server, spread over the workers, and their first
 * checks spread over the interval (a start or a reload never fires every
 * check at once). Every health_interval a check runs, all of it within
 * health_timeout:
 *
 *   connect (to health_port when set)
 *   -> PROXY header (health_send_proxy: v1 UNKNOWN / v2 LOCAL, no client)
 *   -> TLS handshake (health_check = tls, or any check of a tls = on backend)
 *   -> send (send-expect: health_send; http: GET health_uri HTTP/1.1)
 *   -> read, bounded (send-expect: until health_expect appears; http: the
 *      status line only)
 *
 * Each step runs in an ac_under_deadline borrowing the check's ac_deadline
 * (armed at the check's start, disarmed at its end): a finished step is
 * dropped alone, and when health_timeout passes the step under way is
 * dropped and the check fails with "timeout".
 *
 * health_rise successes in a row mark a down server up, health_fall failures
 * in a row mark an up server down. The last result and a failure count go
 * to the server's stats. The task ends when its generation is replaced
 * (gen->stop).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/deadline.h"
#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "asynccore/tls.h"
#include "daemon.h"
#include "servers/health.h"
#include "proto/health_parse.h"
#include "log/log.h"
#include "proto/proxy_proto.h"
#include "tls/tls_ctx.h"

enum { H_WAIT, H_CONNECT, H_PROXY, H_TLS, H_SEND, H_RECV, H_DONE };

/* Where a check stands, as every step function below reports it. */
enum check_outcome {
    CHECK_GOING_ON, /* pending, or (an answer being read) read on */
    CHECK_STEP_DONE, /* this step succeeded: on to the next */
    CHECK_PASSED,
    CHECK_FAILED, /* t->result and t->reason say why */
};

/* What a send-expect check reads at most before giving up on the answer. */
#define HEALTH_READ_MAX (64 * 1024)
#define HEALTH_RBUF 2048

struct health_task {
    struct ac_future base;
    struct ferry_gen *g;
    struct ferry_backend_rt *b;
    struct ferry_server_rt *s;
    SSL_CTX *own_ctx; /* for `tls` checks of a backend without tls = on */
    int state;
    struct ac_notified stop;
    struct ac_sleep wait;        /* H_WAIT: until the next check (vt NULL otherwise) */
    struct ac_deadline timeout;  /* during a check: its health_timeout */
    union {
        struct ac_connect connect;
        struct ac_write_all write;
        struct ac_tls_handshake hs;
        struct ac_read read;
    } step;
    struct ac_under_deadline under; /* the current step under `timeout` (vt NULL: none) */
    struct ac_stream plain;
    struct ac_tls_stream tls;
    struct ac_stream *stream; /* plain or &tls.base once connected */

    unsigned worker;              /* the worker it runs on: its view gives the address */
    struct sockaddr_storage addr; /* the server's address, port health_port */
    socklen_t addr_len;
    uint8_t proxy[FERRY_PROXY_HDR_OUT_MAX];
    size_t proxy_len;              /* 0: no PROXY header */
    char *request;                 /* http: built once (owned); send-expect: the config's */
    size_t request_len;
    bool request_owned;

    char rbuf[HEALTH_RBUF];
    size_t rlen, rtotal;

    unsigned ok_streak, fail_streak;
    enum ferry_check_result result;
    int status;
    char reason[200];
};

static bool uses_tls(const struct health_task *t)
{
    return t->b->tls_ctx || t->b->cfg->health_check == FERRY_HEALTH_TLS;
}

static bool reads_answer(const struct health_task *t)
{
    return t->b->cfg->health_check == FERRY_HEALTH_SEND_EXPECT ||
           t->b->cfg->health_check == FERRY_HEALTH_HTTP;
}

/* Releases what a check holds: its step, its deadline, its connection. */
static void check_drop(struct health_task *t)
{
    ac_future_drop(&t->under.base);
    ac_deadline_disarm(&t->timeout);
    ac_stream_close(&t->tls.base);
    ac_stream_close(&t->plain);
    t->stream = NULL;
}

static void end_check(struct health_task *t)
{
    check_drop(t);
    ac_sleep_init(&t->wait, t->b->cfg->health_interval_ms);
    t->state = H_WAIT;
}

static void record(struct health_task *t, bool ok)
{
    const struct ferry_backend *bc = t->b->cfg;
    struct ferry_server_stats *st = t->s->stats;
    int v = ok ? FERRY_CHECK_OK : (int)t->result | t->status << 8;
    atomic_store_explicit(&st->check, v, memory_order_relaxed);
    if (ok) {
        t->fail_streak = 0;
        if (++t->ok_streak >= bc->health_rise &&
            atomic_exchange(&st->state, FERRY_SERVER_UP) != FERRY_SERVER_UP) {
            ferry_server_serving_from(st, ac_clock_now_ms());
            ferry_server_changed(st);
            ferry_queue_kick(&t->b->stats->queue); /* room for those waiting */
            ferry_log(FERRY_LOG_INFO, "server_up", "server=%s/%s reason=health_check", bc->name,
                      t->s->cfg->name);
        }
    } else {
        atomic_fetch_add_explicit(&st->check_failures, 1, memory_order_relaxed);
        t->ok_streak = 0;
        if (++t->fail_streak >= bc->health_fall &&
            atomic_exchange(&st->state, FERRY_SERVER_DOWN) != FERRY_SERVER_DOWN) {
            ferry_server_changed(st);
            ferry_log(FERRY_LOG_WARN, "server_down", "server=%s/%s reason=%s", bc->name,
                      t->s->cfg->name, t->reason);
        }
    }
    end_check(t);
}

/* Sets the failure; returns CHECK_FAILED. */
static enum check_outcome fail(struct health_task *t, enum ferry_check_result r, const char *fmt, const char *arg)
{
    t->result = r;
    snprintf(t->reason, sizeof(t->reason), fmt, arg);
    return CHECK_FAILED;
}

/* Starts the step of t->state under the check's deadline: CHECK_GOING_ON,
 * or CHECK_FAILED when it cannot start. */
static enum check_outcome start_step(struct health_task *t)
{
    struct ac_future *step;
    switch (t->state) {
    case H_CONNECT:
        ac_connect_init(&t->step.connect, (struct sockaddr *)&t->addr, t->addr_len, &t->plain);
        t->step.connect.mptcp = t->b->cfg->mptcp;
        step = &t->step.connect.base;
        break;
    case H_PROXY:
        ac_write_all_init(&t->step.write, &t->plain, t->proxy, t->proxy_len);
        step = &t->step.write.base;
        break;
    case H_TLS: {
        /* A tls = on backend's context carries its CA, verification and
         * client certificate; a `tls` check of a plain backend only needs
         * the handshake to complete (presenting tls_cert when set). */
        SSL_CTX *ctx = t->b->tls_ctx          ? t->b->tls_ctx
                       : t->b->health_tls_ctx ? t->b->health_tls_ctx
                                              : t->own_ctx;
        if (!ctx || ac_tls_stream_wrap(&t->tls, &t->plain, ctx, false) != 0)
            return fail(t, FERRY_CHECK_TLS, "%s", "tls setup failed");
        const char *sni = t->b->cfg->tls_sni ? t->b->cfg->tls_sni : t->s->cfg->addr.host;
        if (ferry_tls_client_prepare(t->tls.ssl, sni, t->b->tls_ctx ? t->b->cfg->tls_verify
                                                                    : false) != 0)
            return fail(t, FERRY_CHECK_TLS, "%s", "tls setup failed");
        ac_tls_handshake_init(&t->step.hs, &t->tls);
        step = &t->step.hs.base;
        break;
    }
    case H_SEND:
        ac_write_all_init(&t->step.write, t->stream, t->request, t->request_len);
        step = &t->step.write.base;
        break;
    default: /* H_RECV: one read at a time, judged after each */
        ac_read_init(&t->step.read, t->stream, t->rbuf + t->rlen, sizeof(t->rbuf) - t->rlen);
        step = &t->step.read.base;
        break;
    }
    ac_under_deadline_init(&t->under, step, &t->timeout);
    return CHECK_GOING_ON;
}

static int next_state(const struct health_task *t)
{
    switch (t->state) {
    case H_CONNECT:
        if (t->proxy_len)
            return H_PROXY;
        /* fall through */
    case H_PROXY:
        if (uses_tls(t))
            return H_TLS;
        /* fall through */
    case H_TLS:
        if (t->request_len)
            return H_SEND;
        /* fall through */
    case H_SEND:
        if (reads_answer(t))
            return H_RECV;
        /* fall through */
    default:
        return H_DONE; /* every step done: passed */
    }
}

/* Judges what was read so far: passed, failed or read on (CHECK_GOING_ON). */
static enum check_outcome judge(struct health_task *t, bool eof)
{
    const struct ferry_backend *bc = t->b->cfg;
    if (bc->health_check == FERRY_HEALTH_HTTP) {
        int code = ferry_http_status_line(t->rbuf, t->rlen);
        if (code > 0) {
            if (ferry_status_set_has(&bc->health_status, (unsigned)code))
                return CHECK_PASSED;
            t->status = code;
            t->result = FERRY_CHECK_STATUS;
            snprintf(t->reason, sizeof(t->reason), "status %d", code);
            return CHECK_FAILED;
        }
        if (code < 0 || eof || t->rlen == sizeof(t->rbuf))
            return fail(t, FERRY_CHECK_EXPECT, "%s", "not an HTTP status line");
        return CHECK_GOING_ON;
    }
    if (ferry_bytes_contain(t->rbuf, t->rlen, bc->health_expect, bc->health_expect_len))
        return CHECK_PASSED;
    if (eof || t->rtotal >= HEALTH_READ_MAX)
        return fail(t, FERRY_CHECK_EXPECT, "%s", "expected answer not received");
    if (t->rlen == sizeof(t->rbuf)) {
        /* Keep the tail that could still start the expected string. */
        size_t keep = bc->health_expect_len - 1;
        memmove(t->rbuf, t->rbuf + t->rlen - keep, keep);
        t->rlen = keep;
    }
    return CHECK_GOING_ON;
}

/* What the finished step (not timed out) came to: step done, or (H_RECV)
 * the judgement of the answer so far. */
static enum check_outcome step_result(struct health_task *t)
{
    switch (t->state) {
    case H_CONNECT:
        if (t->step.connect.err)
            return fail(t, FERRY_CHECK_REFUSED, "connect: %s", strerror(-t->step.connect.err));
        t->stream = &t->plain;
        return CHECK_STEP_DONE;
    case H_PROXY:
    case H_SEND:
        if (t->step.write.err)
            return fail(t, FERRY_CHECK_REFUSED, "send: %s", strerror(-t->step.write.err));
        return CHECK_STEP_DONE;
    case H_TLS:
        if (t->step.hs.err)
            return fail(t, FERRY_CHECK_TLS, "tls: %s", t->step.hs.reason);
        t->stream = &t->tls.base;
        return CHECK_STEP_DONE;
    default: {
        ssize_t n = t->step.read.n;
        /* A reset after an answer that was not the expected one: that answer
         * is the verdict (expect), as when the server closes after it. */
        if (n < 0 && t->rtotal > 0)
            return fail(t, FERRY_CHECK_EXPECT, "expected answer not received (read: %s)",
                        strerror((int)-n));
        if (n < 0)
            return fail(t, FERRY_CHECK_REFUSED, "read: %s", strerror((int)-n));
        t->rlen += (size_t)n;
        t->rtotal += (size_t)n;
        return judge(t, n == 0);
    }
    }
}

/* Drives the running check: CHECK_GOING_ON (pending), passed or failed
 * (a timeout included). */
static enum check_outcome poll_check(struct health_task *t, struct ac_context *cx)
{
    for (;;) {
        if (ac_future_poll(&t->under.base, cx) == AC_PENDING)
            return CHECK_GOING_ON;
        if (t->under.timed_out) { /* the step is dropped already */
            /* An answer came but not the expected one: that is the server's
             * answer (expect), whether it then closes or stays silent. */
            if (t->state == H_RECV && t->rtotal > 0)
                return fail(t, FERRY_CHECK_EXPECT, "%s", "expected answer not received");
            return fail(t, FERRY_CHECK_TIMEOUT, "%s", "timeout");
        }
        enum check_outcome o = step_result(t);
        ac_future_drop(&t->under.base); /* the deadline stays for the next step */
        if (o == CHECK_PASSED || o == CHECK_FAILED)
            return o;
        if (o == CHECK_STEP_DONE) {
            t->state = next_state(t);
            if (t->state == H_DONE)
                return CHECK_PASSED;
        }
        if (start_step(t) == CHECK_FAILED)
            return CHECK_FAILED;
    }
}

/* Starts a check at the server's current address (port health_port when
 * set); false (and another interval's wait) while its name is not resolved. */
static bool start_check(struct health_task *t)
{
    const struct ferry_view_server *v = ferry_gen_view(
        t->g, t->worker, (size_t)(t->b - t->g->backends), (size_t)(t->s - t->b->servers));
    ac_future_drop(&t->wait.base);
    if (v->addr_len == 0) {
        ac_sleep_init(&t->wait, t->b->cfg->health_interval_ms);
        return false;
    }
    memcpy(&t->addr, &v->addr, v->addr_len);
    t->addr_len = v->addr_len;
    uint16_t port = t->b->cfg->health_port;
    if (port && t->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&t->addr)->sin_port = htons(port);
    else if (port && t->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&t->addr)->sin6_port = htons(port);
    ac_deadline_arm_in(&t->timeout, t->b->cfg->health_timeout_ms);
    t->state = H_CONNECT;
    t->status = 0;
    t->rlen = t->rtotal = 0;
    (void)start_step(t); /* a connect always starts */
    return true;
}

static ac_poll_t health_poll(struct ac_future *f, struct ac_context *cx)
{
    struct health_task *t = (struct health_task *)f;
    for (;;) {
        if (ac_future_poll(&t->stop.base, cx) == AC_READY)
            return AC_READY;
        if (t->state == H_WAIT) {
            if (ac_future_poll(&t->wait.base, cx) == AC_PENDING)
                return AC_PENDING;
            if (!start_check(t))
                continue;
        }
        enum check_outcome o = poll_check(t, cx);
        if (o == CHECK_GOING_ON)
            return AC_PENDING;
        record(t, o == CHECK_PASSED);
    }
}

static void health_drop(struct ac_future *f)
{
    struct health_task *t = (struct health_task *)f;
    check_drop(t);
    ac_future_drop(&t->wait.base);
    ac_future_drop(&t->stop.base);
    if (t->own_ctx)
        SSL_CTX_free(t->own_ctx);
    if (t->request_owned)
        free(t->request);
    ferry_gen_unref(t->g);
}

static const struct ac_future_vtable health_vt = {health_poll, health_drop};

static void health_free(struct ac_future *f) { free(f); }

/* "GET /primary HTTP/1.1" with Host: the server's host as written (an IPv6
 * literal in brackets), without the port. */
static int build_http_request(struct health_task *t)
{
    const char *host = t->s->cfg->addr.host;
    bool v6 = strchr(host, ':') != NULL;
    const char *uri = t->b->cfg->health_uri ? t->b->cfg->health_uri : "/";
    size_t cap = strlen(uri) + strlen(host) + 128;
    t->request = malloc(cap);
    if (!t->request)
        return -ENOMEM;
    int n = snprintf(t->request, cap,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: ferryd-health\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     uri, v6 ? "[" : "", host, v6 ? "]" : "");
    t->request_len = (size_t)n;
    t->request_owned = true;
    return 0;
}

/* Everything a check of this server needs that never changes (its address
 * may: it is read from the worker's view at each check). */
static int task_setup(struct health_task *t)
{
    const struct ferry_backend *bc = t->b->cfg;
    if (bc->health_send_proxy && bc->send_proxy) {
        /* A check has no client: v1 "PROXY UNKNOWN", v2 LOCAL. */
        int n = bc->send_proxy == 1
                    ? ferry_proxy_build_v1(NULL, NULL, (char *)t->proxy, sizeof(t->proxy))
                    : ferry_proxy_build_v2(NULL, NULL, t->proxy, sizeof(t->proxy));
        if (n < 0)
            return n;
        t->proxy_len = (size_t)n;
    }
    if (bc->health_check == FERRY_HEALTH_HTTP)
        return build_http_request(t);
    if (bc->health_check == FERRY_HEALTH_SEND_EXPECT && bc->health_send) {
        t->request = bc->health_send;
        t->request_len = bc->health_send_len;
    }
    if (bc->health_check == FERRY_HEALTH_TLS && !t->b->tls_ctx && !t->b->health_tls_ctx) {
        t->own_ctx = SSL_CTX_new(TLS_client_method());
        if (!t->own_ctx)
            return -ENOMEM;
        SSL_CTX_set_verify(t->own_ctx, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

static size_t checked_servers(const struct ferry_gen *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->cfg->nbackends; i++)
        if (g->backends[i].cfg->health_check != FERRY_HEALTH_OFF)
            n += g->backends[i].nservers;
    return n;
}

/* One check task for server sidx of backend bidx on `worker`, its first
 * check first_ms from now. */
static int start_task(struct ferry_gen *g, size_t bidx, size_t sidx, unsigned worker,
                      uint64_t first_ms)
{
    struct ferry_backend_rt *b = &g->backends[bidx];
    struct health_task *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->base.vt = &health_vt;
    t->b = b;
    t->s = &b->servers[sidx];
    int rc = task_setup(t);
    if (rc < 0) {
        if (t->request_owned)
            free(t->request);
        if (t->own_ctx)
            SSL_CTX_free(t->own_ctx);
        free(t);
        return rc;
    }
    t->g = ferry_gen_ref(g);
    t->worker = worker;
    ac_notified_init(&t->stop, &g->stop);
    ac_sleep_init(&t->wait, first_ms);
    ac_deadline_init(&t->timeout);
    t->state = H_WAIT;
    return ac_spawn(ac_runtime_worker(g->d->rt, t->worker), &t->base, health_free);
}

int ferry_health_start_server(struct ferry_gen *g, size_t bidx, size_t sidx)
{
    if (g->backends[bidx].cfg->health_check == FERRY_HEALTH_OFF)
        return 0;
    return start_task(g, bidx, sidx, (unsigned)((bidx + sidx) % g->d->nworkers), 0);
}

int ferry_health_start(struct ferry_gen *g)
{
    struct ferry_daemon *d = g->d;
    size_t total = checked_servers(g), k = 0;
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        if (b->cfg->health_check == FERRY_HEALTH_OFF)
            continue;
        size_t n = b->nservers;
        for (size_t j = 0; j < n; j++, k++) {
            /* The k-th check of `total` first runs k/total into its interval. */
            int rc = start_task(g, i, j, (unsigned)(k % d->nworkers),
                                b->cfg->health_interval_ms * k / total);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* ferryd: picking a server and connecting to it, with retries.
 *
 * One attempt = connect, then the PROXY header (it precedes TLS on the wire),
 * then the TLS handshake, all under one connect_timeout deadline. A failed
 * attempt counts a connect error on that server, feeds passive health
 * (without health checks, health_fall failures in a row mark it down, one
 * success marks it up) and moves on to a server not tried yet.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "balance.h"
#include "gen.h"
#include "log.h"
#include "pressure.h"
#include "tls_ctx.h"
#include "upstream.h"
#include "worker.h"

enum { UP_PICK, UP_CONNECT, UP_PROXY, UP_TLS, UP_DONE };

static void step_drop(struct ferry_upstream *u)
{
    if (u->step_live) {
        switch (u->state) {
        case UP_CONNECT: ac_future_drop(&u->step.connect.base); break;
        case UP_PROXY: ac_future_drop(&u->step.proxy.base); break;
        case UP_TLS: ac_future_drop(&u->step.hs.base); break;
        }
        u->step_live = false;
    }
    if (u->deadline_live) {
        ac_future_drop(&u->deadline.base);
        u->deadline_live = false;
    }
}

static void close_streams(struct ferry_upstream *u)
{
    ac_stream_close(&u->tls->base);
    ac_stream_close(u->plain);
}

/* Builds the balancer's view of the servers and picks one not tried yet.
 * Without health checks, servers marked down by failures are a last resort,
 * so that a backend whose servers all failed once can recover. */
static int pick(struct ferry_upstream *u)
{
    struct ferry_backend_rt *b = u->b;
    size_t n = b->nservers;
    struct ferry_lb_candidate *c = calloc(n ? n : 1, sizeof(*c));
    if (!c)
        return -1;
    int idx = -1;
    for (int pass = 0; pass < 2 && idx < 0; pass++) {
        if (pass == 1 && b->cfg->health_check != FERRY_HEALTH_OFF)
            break;
        for (size_t i = 0; i < n; i++) {
            struct ferry_server_rt *s = &b->servers[i];
            struct ferry_server_totals t;
            ferry_server_stats_sum(&u->g->d->stats, s->stats, &t);
            bool up = atomic_load(&s->stats->state) == FERRY_SERVER_UP;
            c[i].weight = s->cfg->weight;
            c[i].backup = s->cfg->backup;
            c[i].key = s->key;
            c[i].active = (unsigned)t.active;
            const struct ferry_view_server *v = ferry_gen_view(u->g, u->worker, u->bidx, i);
            c[i].usable = v->addr_len > 0 && !atomic_load(&s->stats->disabled) && (up || pass == 1);
        }
        idx = ferry_lb_pick(b->cfg->balance, ferry_gen_lb(u->g, u->worker, u->bidx), c, n,
                            u->tried, u->client_hash);
    }
    free(c);
    return idx;
}

static void server_failed(struct ferry_upstream *u, int err)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    ferry_ctr_add(&s->stats->w[u->worker].connect_errors, 1);
    unsigned streak = atomic_fetch_add(&s->stats->fail_streak, 1) + 1;
    const struct ferry_view_server *v = ferry_gen_view(u->g, u->worker, u->bidx, (size_t)u->sidx);
    char addr[AC_ADDR_STRLEN];
    ac_addr_format((const struct sockaddr *)&v->addr, v->addr_len, addr, sizeof(addr));
    ferry_log(FERRY_LOG_WARN, "connect failed", "server=%s/%s address=%s error=\"%s\"",
              u->b->cfg->name, s->cfg->name, addr, u->reason ? u->reason : strerror(-err));
    if (u->b->cfg->health_check == FERRY_HEALTH_OFF && streak >= u->b->cfg->health_fall) {
        int was = atomic_exchange(&s->stats->state, FERRY_SERVER_DOWN);
        if (was != FERRY_SERVER_DOWN)
            ferry_log(FERRY_LOG_WARN, "server down", "server=%s/%s reason=connect_failures",
                      u->b->cfg->name, s->cfg->name);
    }
}

static void server_ok(struct ferry_upstream *u)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    atomic_store(&s->stats->fail_streak, 0);
    if (u->b->cfg->health_check == FERRY_HEALTH_OFF &&
        atomic_exchange(&s->stats->state, FERRY_SERVER_UP) != FERRY_SERVER_UP)
        ferry_log(FERRY_LOG_INFO, "server up", "server=%s/%s reason=connect_succeeded",
                  u->b->cfg->name, s->cfg->name);
}

/* Starts the step for the current state. */
static int start_step(struct ferry_upstream *u, struct ac_context *cx)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    const struct ferry_view_server *v = ferry_gen_view(u->g, u->worker, u->bidx, (size_t)u->sidx);
    switch (u->state) {
    case UP_CONNECT:
        ac_connect_init(&u->step.connect, (const struct sockaddr *)&v->addr, v->addr_len, u->plain);
        break;
    case UP_PROXY:
        ac_write_all_init(&u->step.proxy, u->plain, u->proxy_hdr, u->proxy_len);
        break;
    case UP_TLS: {
        int rc = ac_tls_stream_wrap(u->tls, u->plain, u->b->tls_ctx, false);
        if (rc < 0)
            return rc;
        const char *sni = u->b->cfg->tls_sni ? u->b->cfg->tls_sni : s->cfg->addr.host;
        if (ferry_tls_client_prepare(u->tls->ssl, sni, u->b->cfg->tls_verify) != 0)
            return -ENOMEM;
        ac_tls_handshake_init(&u->step.hs, u->tls);
        break;
    }
    }
    (void)cx;
    u->step_live = true;
    return 0;
}

/* Polls the current step. Returns 1 when done, 0 pending, <0 failure. */
static int poll_step(struct ferry_upstream *u, struct ac_context *cx)
{
    switch (u->state) {
    case UP_CONNECT:
        if (ac_future_poll(&u->step.connect.base, cx) == AC_PENDING)
            return 0;
        return u->step.connect.err ? u->step.connect.err : 1;
    case UP_PROXY:
        if (ac_future_poll(&u->step.proxy.base, cx) == AC_PENDING)
            return 0;
        return u->step.proxy.err ? u->step.proxy.err : 1;
    default:
        if (ac_future_poll(&u->step.hs.base, cx) == AC_PENDING)
            return 0;
        if (u->step.hs.err) {
            snprintf(u->reason_buf, sizeof(u->reason_buf), "tls: %s", u->step.hs.reason);
            u->reason = u->reason_buf;
        }
        return u->step.hs.err ? u->step.hs.err : 1;
    }
}

static int next_state(struct ferry_upstream *u)
{
    if (u->state == UP_CONNECT && u->proxy_hdr)
        return UP_PROXY;
    if ((u->state == UP_CONNECT || u->state == UP_PROXY) && u->b->tls_ctx)
        return UP_TLS;
    return UP_DONE;
}

/* One attempt failed: account and go back to picking, or give up. A local
 * resource error (EMFILE on socket(), no local port) is not the server's
 * fault: it is not counted against it, the worker pauses accepting, and the
 * other servers are not tried (they would fail the same way). */
static void attempt_failed(struct ferry_upstream *u, int err, struct ac_context *cx)
{
    step_drop(u);
    close_streams(u);
    u->err = err;
    if (ferry_pressure_is_local(err)) {
        struct ferry_worker *fw = &u->g->d->workers[u->worker];
        ferry_pressure_hit(&fw->pressure, ac_worker_now_ms(cx->worker), err, "connect");
        u->local = true;
        u->reason = "local resources exhausted";
        u->state = UP_DONE;
        return;
    }
    server_failed(u, err);
    u->reason = NULL;
    u->state = UP_PICK;
}

static ac_poll_t upstream_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_upstream *u = (struct ferry_upstream *)f;
    if (u->state == UP_DONE)
        return AC_READY;
    for (;;) {
        if (u->state == UP_PICK) {
            if (u->attempts > u->b->cfg->retries || (u->sidx = pick(u)) < 0) {
                if (u->attempts == 0)
                    u->err = -EHOSTUNREACH, u->reason = "no server available";
                u->sidx = -1;
                u->state = UP_DONE;
                return AC_READY;
            }
            u->tried[u->sidx] = true;
            u->attempts++;
            u->state = UP_CONNECT;
            ac_sleep_init(&u->deadline, u->b->cfg->connect_timeout_ms);
            u->deadline_live = true;
            int rc = start_step(u, cx);
            if (rc < 0) {
                attempt_failed(u, rc, cx);
                if (u->state == UP_DONE)
                    return AC_READY;
                continue;
            }
        }
        int rc = poll_step(u, cx);
        if (rc == 0) {
            if (ac_future_poll(&u->deadline.base, cx) == AC_PENDING)
                return AC_PENDING;
            u->reason = "connect timeout";
            attempt_failed(u, -ETIMEDOUT, cx);
            continue;
        }
        if (rc < 0) {
            attempt_failed(u, rc, cx);
            if (u->state == UP_DONE)
                return AC_READY;
            continue;
        }
        if (u->step_live) {
            /* Keep the deadline; drop only the finished step. */
            bool dl = u->deadline_live;
            u->deadline_live = false;
            step_drop(u);
            u->deadline_live = dl;
        }
        u->state = next_state(u);
        if (u->state == UP_DONE) {
            if (u->deadline_live) {
                ac_future_drop(&u->deadline.base);
                u->deadline_live = false;
            }
            u->stream = u->b->tls_ctx ? &u->tls->base : u->plain;
            u->err = 0;
            u->reason = NULL;
            server_ok(u);
            ferry_pressure_ok(&u->g->d->workers[u->worker].pressure);
            return AC_READY;
        }
        rc = start_step(u, cx);
        if (rc < 0) {
            attempt_failed(u, rc, cx);
            if (u->state == UP_DONE)
                return AC_READY;
        }
    }
}

static void upstream_drop(struct ac_future *f)
{
    struct ferry_upstream *u = (struct ferry_upstream *)f;
    if (u->state != UP_DONE || u->stream == NULL) {
        step_drop(u);
        close_streams(u);
    }
    free(u->tried);
    u->tried = NULL;
}

static const struct ac_future_vtable upstream_vt = {upstream_poll, upstream_drop};

void ferry_upstream_init(struct ferry_upstream *u, struct ferry_gen *g, size_t bidx,
                         unsigned worker, uint32_t client_hash, const uint8_t *proxy_hdr,
                         size_t proxy_len, struct ac_stream *plain, struct ac_tls_stream *tls)
{
    memset(u, 0, sizeof(*u));
    u->base.vt = &upstream_vt;
    u->g = g;
    u->bidx = bidx;
    u->b = &g->backends[bidx];
    u->worker = worker;
    u->client_hash = client_hash;
    u->proxy_hdr = proxy_hdr;
    u->proxy_len = proxy_len;
    u->sidx = -1;
    u->plain = plain;
    u->tls = tls;
    u->tried = calloc(u->b->nservers ? u->b->nservers : 1, sizeof(bool));
    if (!u->tried) { /* out of memory: ready at first poll with the error */
        u->err = -ENOMEM;
        u->reason = "out of memory";
        u->state = UP_DONE;
    }
}

/* ferryd: active health checks.
 *
 * One task per checked server, spread over the workers. Every
 * health_interval it connects (health_check = tcp) and, for `tls`, completes a
 * handshake, all within health_timeout. health_rise successes in a row mark a
 * down server up, health_fall failures in a row mark an up server down. The
 * task ends when its generation is replaced (gen->stop).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "asynccore/tls.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "tls_ctx.h"

enum { H_WAIT, H_CONNECT, H_TLS };

struct health_task {
    struct ac_future base;
    struct ferry_gen *g;
    struct ferry_backend_rt *b;
    struct ferry_server_rt *s;
    unsigned worker;  /* the worker it runs on: its view gives the address */
    SSL_CTX *own_ctx; /* for `tls` checks of a backend without tls = on */
    int state;
    struct ac_notified stop;
    struct ac_sleep timer; /* interval, then the check's timeout */
    struct ac_connect connect;
    struct ac_tls_handshake hs;
    bool step_live;
    struct ac_stream plain;
    struct ac_tls_stream tls;
    unsigned ok_streak, fail_streak;
    char reason[200];
};

static void end_check(struct health_task *t)
{
    if (t->step_live) {
        if (t->state == H_CONNECT)
            ac_future_drop(&t->connect.base);
        else if (t->state == H_TLS)
            ac_future_drop(&t->hs.base);
        t->step_live = false;
    }
    ac_stream_close(&t->tls.base);
    ac_stream_close(&t->plain);
    ac_future_drop(&t->timer.base);
    ac_sleep_init(&t->timer, t->b->cfg->health_interval_ms);
    t->state = H_WAIT;
}

static void record(struct health_task *t, bool ok)
{
    const struct ferry_backend *bc = t->b->cfg;
    struct ferry_server_stats *st = t->s->stats;
    if (ok) {
        t->fail_streak = 0;
        if (++t->ok_streak >= bc->health_rise &&
            atomic_exchange(&st->state, FERRY_SERVER_UP) != FERRY_SERVER_UP)
            ferry_log(FERRY_LOG_INFO, "server up", "server=%s/%s reason=health_check", bc->name,
                      t->s->cfg->name);
    } else {
        t->ok_streak = 0;
        if (++t->fail_streak >= bc->health_fall &&
            atomic_exchange(&st->state, FERRY_SERVER_DOWN) != FERRY_SERVER_DOWN)
            ferry_log(FERRY_LOG_WARN, "server down", "server=%s/%s reason=\"%s\"", bc->name,
                      t->s->cfg->name, t->reason);
    }
    end_check(t);
}

/* Starts a check at the server's current address; false (and another
 * interval's wait) while its name is not resolved. */
static bool start_check(struct health_task *t)
{
    const struct ferry_view_server *v = ferry_gen_view(
        t->g, t->worker, (size_t)(t->b - t->g->backends), (size_t)(t->s - t->b->servers));
    ac_future_drop(&t->timer.base);
    if (v->addr_len == 0) {
        ac_sleep_init(&t->timer, t->b->cfg->health_interval_ms);
        return false;
    }
    ac_sleep_init(&t->timer, t->b->cfg->health_timeout_ms);
    ac_connect_init(&t->connect, (const struct sockaddr *)&v->addr, v->addr_len, &t->plain);
    t->step_live = true;
    t->state = H_CONNECT;
    return true;
}

static bool start_tls(struct health_task *t)
{
    SSL_CTX *ctx = t->b->tls_ctx ? t->b->tls_ctx : t->own_ctx;
    if (!ctx || ac_tls_stream_wrap(&t->tls, &t->plain, ctx, false) != 0) {
        snprintf(t->reason, sizeof(t->reason), "tls setup failed");
        return false;
    }
    const char *sni = t->b->cfg->tls_sni ? t->b->cfg->tls_sni : t->s->cfg->addr.host;
    ferry_tls_client_prepare(t->tls.ssl, sni, t->b->tls_ctx ? t->b->cfg->tls_verify : false);
    ac_tls_handshake_init(&t->hs, &t->tls);
    t->step_live = true;
    t->state = H_TLS;
    return true;
}

/* Polls the running check. Returns 1 ok, -1 failed, 0 pending. */
static int poll_check(struct health_task *t, struct ac_context *cx)
{
    if (t->state == H_CONNECT) {
        if (ac_future_poll(&t->connect.base, cx) == AC_PENDING)
            return 0;
        ac_future_drop(&t->connect.base);
        t->step_live = false;
        if (t->connect.err) {
            snprintf(t->reason, sizeof(t->reason), "connect: %s", strerror(-t->connect.err));
            return -1;
        }
        if (t->b->cfg->health_check != FERRY_HEALTH_TLS)
            return 1;
        if (!start_tls(t))
            return -1;
    }
    if (ac_future_poll(&t->hs.base, cx) == AC_PENDING)
        return 0;
    ac_future_drop(&t->hs.base);
    t->step_live = false;
    if (t->hs.err) {
        snprintf(t->reason, sizeof(t->reason), "tls: %s", t->hs.reason);
        return -1;
    }
    return 1;
}

static ac_poll_t health_poll(struct ac_future *f, struct ac_context *cx)
{
    struct health_task *t = (struct health_task *)f;
    for (;;) {
        if (ac_future_poll(&t->stop.base, cx) == AC_READY)
            return AC_READY;
        if (t->state == H_WAIT) {
            if (ac_future_poll(&t->timer.base, cx) == AC_PENDING)
                return AC_PENDING;
            if (!start_check(t))
                continue;
        }
        int rc = poll_check(t, cx);
        if (rc != 0) {
            record(t, rc > 0);
            continue;
        }
        if (ac_future_poll(&t->timer.base, cx) == AC_PENDING)
            return AC_PENDING;
        snprintf(t->reason, sizeof(t->reason), "timeout");
        record(t, false);
    }
}

static void health_drop(struct ac_future *f)
{
    struct health_task *t = (struct health_task *)f;
    if (t->step_live) {
        if (t->state == H_CONNECT)
            ac_future_drop(&t->connect.base);
        else
            ac_future_drop(&t->hs.base);
    }
    ac_stream_close(&t->tls.base);
    ac_stream_close(&t->plain);
    ac_future_drop(&t->timer.base);
    ac_future_drop(&t->stop.base);
    if (t->own_ctx)
        SSL_CTX_free(t->own_ctx);
    ferry_gen_unref(t->g);
}

static const struct ac_future_vtable health_vt = {health_poll, health_drop};

static void health_free(struct ac_future *f) { free(f); }

int ferry_health_start(struct ferry_gen *g)
{
    struct ferry_daemon *d = g->d;
    unsigned next_worker = 0;
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        if (b->cfg->health_check == FERRY_HEALTH_OFF)
            continue;
        for (size_t j = 0; j < b->nservers; j++) {
            struct health_task *t = calloc(1, sizeof(*t));
            if (!t)
                return -ENOMEM;
            t->base.vt = &health_vt;
            t->g = ferry_gen_ref(g);
            t->b = b;
            t->s = &b->servers[j];
            t->worker = next_worker++ % d->nworkers;
            if (b->cfg->health_check == FERRY_HEALTH_TLS && !b->tls_ctx) {
                t->own_ctx = SSL_CTX_new(TLS_client_method());
                if (t->own_ctx)
                    SSL_CTX_set_verify(t->own_ctx, SSL_VERIFY_NONE, NULL);
            }
            ac_notified_init(&t->stop, &g->stop);
            ac_sleep_init(&t->timer, 0); /* first check at once */
            t->state = H_WAIT;
            int rc = ac_spawn(ac_runtime_worker(d->rt, t->worker), &t->base,
                              health_free);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

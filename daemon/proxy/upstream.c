/* ferryd: picking a server and connecting to it, with retries.
 *
 * One attempt = connect, then the PROXY header (it precedes TLS on the wire),
 * then the TLS handshake, all under one connect_timeout deadline: each step
 * runs in an ac_under_deadline borrowing the attempt's ac_deadline, so a
 * finished step is dropped alone and the next one gets what is left of the
 * budget; the deadline is disarmed when the attempt ends. A failed
 * attempt counts a connect error on that server, feeds passive health
 * (without health checks, health_fall failures in a row mark it down, one
 * success marks it up) and moves on to a server not tried yet.
 *
 * A pick takes a slot of the server (queue.h): servers at their
 * max_connections are not offered to the balancer, and when every eligible
 * one is full the connection waits in the backend queue (UP_QUEUE) until a
 * slot frees, queue_timeout passes or a stop's drain_timeout ends. Weights
 * are ramped by slow_start after a server starts serving.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "balance.h"
#include "gen.h"
#include "log/log.h"
#include "pressure.h"
#include "tls/tls_ctx.h"
#include "proxy/upstream.h"
#include "worker.h"

enum { UP_PICK, UP_CONNECT, UP_PROXY, UP_TLS, UP_DONE, UP_QUEUE };

/* pick() found servers to use, but every one is at its max_connections. */
#define PICK_FULL (-2)
/* Candidates of a backend this small live on the stack during a pick. */
#define PICK_ON_STACK 16
/* Weights are scaled so that slow_start can ramp a weight of 1 smoothly. */
#define WEIGHT_SCALE 256u

/* Drops the current step (with its I/O interest), if any; the deadline
 * it ran under stays armed for the next step. */
static void step_drop(struct ferry_upstream *u) { ac_future_drop(&u->under.base); }

/* The attempt is over: its step and its connect_timeout go. */
static void attempt_end(struct ferry_upstream *u)
{
    step_drop(u);
    ac_deadline_disarm(&u->deadline);
}

static void close_streams(struct ferry_upstream *u)
{
    if (u->tls)
        ac_stream_close(&u->tls->base);
    ac_stream_close(u->plain);
}

/* A server's weight for the balancer: scaled, and during slow_start after
 * it started serving, ramped from (almost) 0 to full. */
static unsigned ramped_weight(const struct ferry_backend *bc, struct ferry_server_stats *st,
                              unsigned weight, uint64_t now)
{
    uint64_t w = (uint64_t)weight * WEIGHT_SCALE;
    uint64_t since = atomic_load_explicit(&st->serving_since_ms, memory_order_relaxed);
    if (w && bc->slow_start_ms && since && now >= since && now - since < bc->slow_start_ms) {
        w = w * (now - since) / bc->slow_start_ms;
        if (w == 0)
            w = 1;
    }
    return (unsigned)w;
}

/* Servers at their max_connections are not offered to the balancer, but
 * still keep the backups out: full primaries mean waiting, not overflowing
 * onto the backups. Returns how many usable servers were full. */
static size_t drop_full(struct ferry_upstream *u, struct ferry_lb_candidate *c, size_t n)
{
    bool primary = false;
    size_t full = 0;
    for (size_t i = 0; i < n; i++)
        primary |= c[i].usable && c[i].weight > 0 && !c[i].backup && !(u->tried && u->tried[i]);
    for (size_t i = 0; i < n; i++) {
        const struct ferry_server_rt *s = &u->b->servers[i];
        if (primary && c[i].backup)
            c[i].usable = false;
        if (!c[i].usable || c[i].weight == 0 || (u->tried && u->tried[i]))
            continue;
        unsigned max = s->cfg->max_connections;
        if (max && atomic_load(&s->stats->slots) >= max) {
            c[i].usable = false;
            full++;
        }
    }
    return full;
}

/* Takes a slot of the picked server; false when it filled up meanwhile. */
static bool take_slot(struct ferry_upstream *u, int idx)
{
    const struct ferry_server_rt *s = &u->b->servers[idx];
    if (!ferry_slot_take(&s->stats->slots, s->cfg->max_connections))
        return false;
    u->slot_held = true;
    return true;
}

static void put_slot(struct ferry_upstream *u)
{
    if (u->slot_held)
        ferry_slot_put(&u->b->servers[u->sidx].stats->slots, &u->b->stats->queue);
    u->slot_held = false;
}

/* Builds the balancer's view of the servers and picks one not tried yet
 * with a free slot (taken). Without health checks, servers marked down by
 * failures are a last resort, so that a backend whose servers all failed
 * once can recover. Returns the index, -1 (none usable) or PICK_FULL. */
static int pick(struct ferry_upstream *u)
{
    struct ferry_backend_rt *b = u->b;
    if (u->first_tried >= 0 && !u->tried) { /* a retry: now the list pays */
        if (!(u->tried = calloc(b->cap ? b->cap : 1, sizeof(bool))))
            return -1;
        u->tried[u->first_tried] = true;
    }
    const struct ferry_backend_view *view = ferry_gen_views(u->g, u->worker, u->bidx);
    size_t n = view->n; /* this worker's servers: discovered ones arrive by inbox */
    /* Small backends (nearly all) pick from the stack: no malloc per pick. */
    struct ferry_lb_candidate few[PICK_ON_STACK];
    struct ferry_lb_candidate *c = n <= PICK_ON_STACK ? few : calloc(n, sizeof(*c));
    if (!c)
        return -1;
    int idx = -1;
    size_t full = 0;
    uint64_t now = ac_clock_now_ms();
    for (int pass = 0; pass < 2 && idx < 0 && full == 0; pass++) {
        if (pass == 1 && b->cfg->health_check != FERRY_HEALTH_OFF)
            break;
        for (size_t i = 0; i < n; i++) {
            const struct ferry_view_server *v = &view->s[i];
            memset(&c[i], 0, sizeof(c[i]));
            if (v->addr_len == 0)
                continue; /* unresolved or departed: not a candidate */
            struct ferry_server_rt *s = &b->servers[i];
            bool up = atomic_load(&s->stats->state) == FERRY_SERVER_UP;
            unsigned weight = v->dynamic ? v->weight : s->cfg->weight;
            c[i].weight = ramped_weight(b->cfg, s->stats, ferry_server_weight(s->stats, weight), now);
            c[i].backup = v->dynamic ? v->backup : s->cfg->backup;
            c[i].key = s->key;
            c[i].active = (unsigned)ferry_server_active(s->stats);
            c[i].usable = ferry_server_admitted(s->stats) && (up || pass == 1);
        }
        if (u->capped)
            full = drop_full(u, c, n);
        /* A server that filled up between the look and the take is out. */
        for (size_t k = 0; k <= n; k++) {
            idx = ferry_lb_pick(b->cfg->balance, ferry_gen_lb(u->g, u->worker, u->bidx), c, n,
                                u->tried, u->client_hash);
            if (idx < 0 || take_slot(u, idx))
                break;
            c[idx].usable = false;
            full++;
            idx = -1;
        }
    }
    if (c != few)
        free(c);
    return idx < 0 && full > 0 ? PICK_FULL : idx;
}

static void server_failed(struct ferry_upstream *u, int err)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    ferry_ctr_add(&s->stats->w[u->worker].connect_errors, 1);
    unsigned streak = atomic_fetch_add(&s->stats->fail_streak, 1) + 1;
    const struct ferry_view_server *v = ferry_gen_view(u->g, u->worker, u->bidx, (size_t)u->sidx);
    char addr[AC_ADDR_STRLEN];
    ac_addr_format((const struct sockaddr *)&v->addr, v->addr_len, addr, sizeof(addr));
    ferry_log(FERRY_LOG_WARN, "connect_failed", "server=%s/%s address=%s error=%s",
              u->b->cfg->name, s->cfg->name, addr, u->reason ? u->reason : strerror(-err));
    if (u->b->cfg->health_check == FERRY_HEALTH_OFF && streak >= u->b->cfg->health_fall) {
        int was = atomic_exchange(&s->stats->state, FERRY_SERVER_DOWN);
        if (was != FERRY_SERVER_DOWN) {
            ferry_server_changed(s->stats);
            ferry_log(FERRY_LOG_WARN, "server_down", "server=%s/%s reason=connect_failures",
                      u->b->cfg->name, s->cfg->name);
        }
    }
}

static void server_ok(struct ferry_upstream *u)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    atomic_store(&s->stats->fail_streak, 0);
    if (u->b->cfg->health_check == FERRY_HEALTH_OFF &&
        atomic_exchange(&s->stats->state, FERRY_SERVER_UP) != FERRY_SERVER_UP) {
        ferry_server_serving_from(s->stats, ac_clock_now_ms());
        ferry_server_changed(s->stats);
        ferry_log(FERRY_LOG_INFO, "server_up", "server=%s/%s reason=connect_succeeded",
                  u->b->cfg->name, s->cfg->name);
    }
}

/* Starts the step for the current state, under the attempt's deadline. */
static int start_step(struct ferry_upstream *u)
{
    struct ferry_server_rt *s = &u->b->servers[u->sidx];
    const struct ferry_view_server *v = ferry_gen_view(u->g, u->worker, u->bidx, (size_t)u->sidx);
    struct ac_future *step;
    switch (u->state) {
    case UP_CONNECT:
        ac_connect_init(&u->step.connect, (const struct sockaddr *)&v->addr, v->addr_len, u->plain);
        u->step.connect.mptcp = u->b->cfg->mptcp;
        step = &u->step.connect.base;
        break;
    case UP_PROXY:
        ac_write_all_init(&u->step.proxy, u->plain, u->proxy_hdr, u->proxy_len);
        step = &u->step.proxy.base;
        break;
    case UP_TLS: {
        int rc = ac_tls_stream_wrap(u->tls, u->plain, u->b->tls_ctx, false);
        if (rc < 0)
            return rc;
        const char *sni = u->b->cfg->tls_sni ? u->b->cfg->tls_sni : s->cfg->addr.host;
        if (ferry_tls_client_prepare(u->tls->ssl, sni, u->b->cfg->tls_verify) != 0)
            return -ENOMEM;
        ac_tls_handshake_init(&u->step.hs, u->tls);
        step = &u->step.hs.base;
        break;
    }
    default:
        return -EINVAL; /* not a step */
    }
    ac_under_deadline_init(&u->under, step, &u->deadline);
    return 0;
}

/* Polls the current step. Returns 1 when done, 0 pending, <0 failure
 * (-ETIMEDOUT when connect_timeout passed: the step is dropped then). */
static int poll_step(struct ferry_upstream *u, struct ac_context *cx)
{
    if (ac_future_poll(&u->under.base, cx) == AC_PENDING)
        return 0;
    if (u->under.timed_out) {
        u->reason = "connect timeout";
        return -ETIMEDOUT;
    }
    switch (u->state) {
    case UP_CONNECT:
        return u->step.connect.err ? u->step.connect.err : 1;
    case UP_PROXY:
        return u->step.proxy.err ? u->step.proxy.err : 1;
    default:
        if (u->step.hs.err) {
            /* Allocated only on failure: the phase stays small. */
            free(u->reason_text);
            size_t n = strlen(u->step.hs.reason) + sizeof("tls: ");
            u->reason_text = malloc(n);
            if (u->reason_text)
                snprintf(u->reason_text, n, "tls: %s", u->step.hs.reason);
            u->reason = u->reason_text ? u->reason_text : "tls handshake failed";
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
    attempt_end(u);
    close_streams(u);
    put_slot(u);
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
    u->state = UP_PICK; /* reason stays: the last attempt's, until the next one starts */
}

static void leave_queue(struct ferry_upstream *u)
{
    if (!u->queued)
        return;
    ferry_queue_leave(&u->b->stats->queue, &u->qw);
    ac_deadline_disarm(&u->deadline); /* its queue_timeout */
    ac_future_drop(&u->qdrain.base);
    u->queued = false;
}

static ac_poll_t queue_ended(struct ferry_upstream *u, enum ferry_queue_end why)
{
    u->qend = why;
    u->err = why == FERRY_QUEUE_FULL ? -EAGAIN : -ETIMEDOUT;
    u->reason = why == FERRY_QUEUE_FULL      ? "queue full"
                : why == FERRY_QUEUE_DRAINED ? "stopped while queued"
                                             : "queue timeout";
    u->sidx = -1;
    u->state = UP_DONE;
    return AC_READY;
}

/* Waiting for a slot: the head of the queue looks when woken. Ready with
 * *idx (a slot taken, or -1: no server usable any more) in state UP_PICK,
 * or in state UP_DONE (queue_timeout). */
static ac_poll_t poll_queue(struct ferry_upstream *u, struct ac_context *cx, int *idx)
{
    if (ferry_queue_watch(&u->b->stats->queue, &u->qw, cx->waker)) {
        int i = pick(u);
        if (i != PICK_FULL) {
            leave_queue(u); /* wakes the next one: there may be more room */
            *idx = i;
            u->state = UP_PICK;
            return AC_READY;
        }
    }
    if (ac_future_poll(&u->qdrain.base, cx) == AC_READY) {
        leave_queue(u);
        return queue_ended(u, FERRY_QUEUE_DRAINED);
    }
    if (ac_deadline_poll(&u->deadline, cx) == AC_PENDING)
        return AC_PENDING;
    leave_queue(u);
    return queue_ended(u, FERRY_QUEUE_TIMEOUT);
}

/* Picks a server with a free slot into *idx (-1: none), or queues when
 * every eligible one is full (and, to stay first come first served,
 * whenever others already wait). */
static ac_poll_t pick_or_queue(struct ferry_upstream *u, struct ac_context *cx, int *idx)
{
    *idx = -1;
    if (u->attempts > u->b->cfg->retries)
        return AC_READY;
    *idx = u->capped && ferry_queue_len(&u->b->stats->queue) > 0 ? PICK_FULL : pick(u);
    if (*idx != PICK_FULL)
        return AC_READY;
    if (ferry_queue_join(&u->b->stats->queue, &u->qw, u->b->cfg->max_queue) < 0)
        return queue_ended(u, FERRY_QUEUE_FULL);
    u->queued = true;
    ac_deadline_arm_in(&u->deadline, u->b->cfg->queue_timeout_ms);
    ac_local_notified_init(&u->qdrain, &u->g->d->workers[u->worker].drain);
    u->state = UP_QUEUE;
    return poll_queue(u, cx, idx);
}

static ac_poll_t upstream_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_upstream *u = (struct ferry_upstream *)f;
    if (u->state == UP_DONE)
        return AC_READY;
    for (;;) {
        if (u->state == UP_PICK || u->state == UP_QUEUE) {
            int idx;
            ac_poll_t r = u->state == UP_QUEUE ? poll_queue(u, cx, &idx)
                                               : pick_or_queue(u, cx, &idx);
            if (r == AC_PENDING)
                return AC_PENDING;
            if (u->state == UP_DONE)
                return AC_READY;
            if (idx < 0) {
                if (u->attempts == 0)
                    u->err = -EHOSTUNREACH, u->reason = "no server available";
                u->sidx = -1;
                u->state = UP_DONE;
                return AC_READY;
            }
            u->sidx = idx;
            if (u->tried)
                u->tried[idx] = true;
            else
                u->first_tried = idx;
            u->attempts++;
            u->reason = NULL;
            u->state = UP_CONNECT;
            ac_deadline_arm_in(&u->deadline, u->b->cfg->connect_timeout_ms);
            int rc = start_step(u);
            if (rc < 0) {
                attempt_failed(u, rc, cx);
                if (u->state == UP_DONE)
                    return AC_READY;
                continue;
            }
        }
        int rc = poll_step(u, cx);
        if (rc == 0)
            return AC_PENDING;
        if (rc < 0) {
            attempt_failed(u, rc, cx);
            if (u->state == UP_DONE)
                return AC_READY;
            continue;
        }
        step_drop(u); /* the next step runs under the same deadline */
        u->state = next_state(u);
        if (u->state == UP_DONE) {
            ac_deadline_disarm(&u->deadline);
            u->stream = u->b->tls_ctx ? &u->tls->base : u->plain;
            u->err = 0;
            u->reason = NULL;
            server_ok(u);
            ferry_pressure_ok(&u->g->d->workers[u->worker].pressure);
            return AC_READY;
        }
        rc = start_step(u);
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
    attempt_end(u);
    if (u->state != UP_DONE || u->stream == NULL) {
        close_streams(u);
        put_slot(u);
    }
    leave_queue(u);
    free(u->tried);
    u->tried = NULL;
    free(u->reason_text); /* the owner has read reason by now */
    u->reason_text = NULL;
}

static const struct ac_future_vtable upstream_vt = {upstream_poll, upstream_drop};

void ferry_upstream_init(struct ferry_upstream *u, struct ferry_gen *g, size_t bidx,
                         unsigned worker, uint32_t client_hash, const uint8_t *proxy_hdr,
                         size_t proxy_len, struct ac_stream *plain, struct ac_tls_stream *tls)
{
    memset(u, 0, sizeof(*u)); /* also: no step under way (under.base.vt NULL) */
    u->base.vt = &upstream_vt;
    ac_deadline_init(&u->deadline);
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
    for (size_t i = 0; i < u->b->nservers; i++)
        u->capped |= u->b->servers[i].cfg->max_connections > 0;
    u->first_tried = -1;
}

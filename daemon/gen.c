/* ferryd: configuration generations.
 *
 * ferry_gen_build() turns a parsed, valid configuration into everything the
 * data path needs: stats objects (found by name, so counters survive
 * reloads), per-listener connection caps, TLS contexts, resolved server
 * numeric addresses and per-worker balancer state. It may block (TLS files), so
 * it runs before the loops start or on the blocking pool during a reload.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "balance.h"
#include "serverset.h"
#include "daemon.h"
#include "gen.h"
#include "log/log.h"
#include "tls/ticket_keys.h"
#include "tls/tls_ctx.h"

struct ferry_gen *ferry_gen_ref(struct ferry_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

/* A TLS context replaced by tls_watch. Every reader takes the pointer and
 * makes its SSL (which holds a reference of its own) within one poll, so a
 * replaced context is released once RETIRE_MS passed, at the next swap, or
 * when the generation goes. */
struct ferry_retired_ctx {
    struct ferry_retired_ctx *next;
    SSL_CTX *ctx;
    uint64_t at_ms;
};

#define RETIRE_MS 60000

static void gen_free(struct ferry_gen *g)
{
    struct ferry_config *cfg = g->cfg;
    while (g->retired) {
        struct ferry_retired_ctx *r = g->retired;
        g->retired = r->next;
        SSL_CTX_free(r->ctx);
        free(r);
    }
    for (size_t i = 0; g->listeners && i < cfg->nlisteners; i++) {
        if (g->listeners[i].tls_ctx)
            SSL_CTX_free(g->listeners[i].tls_ctx);
        free(g->listeners[i].bounds);
        free(g->listeners[i].bound_addrs);
    }
    for (size_t i = 0; g->backends && i < cfg->nbackends; i++) {
        if (g->backends[i].tls_ctx)
            SSL_CTX_free(g->backends[i].tls_ctx);
        if (g->backends[i].health_tls_ctx)
            SSL_CTX_free(g->backends[i].health_tls_ctx);
        /* Each slot's reference: the stats of names no newer generation
         * uses (departed, deleted, gone from the file) are freed here. */
        size_t n = g->backends[i].servers ? atomic_load(&g->backends[i].nservers) : 0;
        for (size_t j = 0; j < n; j++)
            ferry_registry_server_release(&g->d->stats, g->backends[i].servers[j].stats);
        free(g->backends[i].servers);
    }
    if (g->lb) {
        for (size_t i = 0; i < (size_t)g->d->nworkers * cfg->nbackends; i++)
            ferry_lb_state_free(&g->lb[i]);
    }
    free(g->lb);
    for (size_t i = 0; g->views && i < (size_t)g->d->nworkers * cfg->nbackends; i++)
        free(g->views[i].s);
    free(g->views);
    free(g->listeners);
    free(g->backends);
    ac_notify_destroy(&g->stop);
    ferry_config_free(cfg);
    free(g);
}

void ferry_gen_unref(struct ferry_gen *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        gen_free(g);
}

/* Finds or creates the persistent cap of a listener (reloads are serialised,
 * so the list needs no lock; it is resized when the generation goes live). */
static struct ferry_listener_limit *limit_for(struct ferry_daemon *d, const struct ferry_listener *l)
{
    if (l->max_connections == 0)
        return NULL;
    struct ferry_listener_limit *lim;
    for (lim = d->limits; lim; lim = lim->next)
        if (strcmp(lim->name, l->name) == 0)
            break;
    if (!lim) {
        lim = calloc(1, sizeof(*lim));
        if (!lim || ac_limit_init(&lim->lim, 0) != 0) {
            free(lim);
            return NULL;
        }
        snprintf(lim->name, sizeof(lim->name), "%s", l->name);
        lim->next = d->limits;
        d->limits = lim;
    }
    return lim;
}

/* Applies the new sizes of listener caps (called when a generation goes live). */
void ferry_gen_apply_limits(struct ferry_gen *g)
{
    for (size_t i = 0; i < g->cfg->nlisteners; i++) {
        struct ferry_listener_limit *lim = g->listeners[i].limit;
        if (!lim)
            continue;
        long delta = (long)g->cfg->listeners[i].max_connections - (long)lim->size;
        ac_limit_adjust(&lim->lim, delta);
        lim->size = g->cfg->listeners[i].max_connections;
    }
}

/* Numeric addresses are known at once; host names start unresolved and are
 * looked up by the resolver (dnswatch.c) once the generation is adopted. */
static void initial_address(struct ferry_server_rt *s)
{
    const struct ferry_addr *a = &s->cfg->addr;
    snprintf(s->addr_text, sizeof(s->addr_text), "%s", a->text);
    if (a->resolved) {
        memcpy(&s->addr, &a->sa, a->sa_len);
        s->addr_len = a->sa_len;
    }
}

static int build_backend(struct ferry_gen *g, size_t i, struct ferry_config_errors *errs)
{
    const struct ferry_backend *b = &g->cfg->backends[i];
    struct ferry_backend_rt *rt = &g->backends[i];
    rt->cfg = b;
    rt->stats = ferry_registry_backend(&g->d->stats, b->name);
    rt->cap = b->nservers + (b->discover != FERRY_DISCOVER_NONE ? FERRY_DISCOVER_MAX : 0) +
              FERRY_ADDED_MAX;
    rt->servers = calloc(rt->cap ? rt->cap : 1, sizeof(*rt->servers));
    if (!rt->stats || !rt->servers)
        return -ENOMEM;
    atomic_init(&rt->nservers, b->nservers);
    int failed = 0;
    for (size_t j = 0; j < b->nservers; j++) {
        struct ferry_server_rt *s = &rt->servers[j];
        s->cfg = &b->servers[j];
        s->stats = ferry_registry_server(&g->d->stats, b->name, s->cfg->name);
        s->key = ferry_lb_server_key(s->cfg->name);
        if (!s->stats)
            return -ENOMEM;
        initial_address(s);
    }
    for (unsigned w = 0; w < g->d->nworkers; w++) {
        struct ferry_backend_view *v = &g->views[(size_t)w * g->cfg->nbackends + i];
        v->s = calloc(rt->cap ? rt->cap : 1, sizeof(*v->s));
        if (!v->s)
            return -ENOMEM;
        v->n = b->nservers;
        for (size_t j = 0; j < b->nservers; j++) {
            memcpy(&v->s[j].addr, &rt->servers[j].addr, sizeof(v->s[j].addr));
            v->s[j].addr_len = rt->servers[j].addr_len;
        }
    }
    if (b->tls) {
        rt->tls_ctx = ferry_tls_client_ctx_new(b, g->cfg->path, errs);
        if (!rt->tls_ctx)
            failed = -1;
    } else if (b->health_check == FERRY_HEALTH_TLS && b->tls_cert) {
        /* A `tls` check presents tls_cert also without tls = on. */
        rt->health_tls_ctx = ferry_tls_client_ctx_new(b, g->cfg->path, errs);
        if (!rt->health_tls_ctx)
            failed = -1;
    }
    return failed;
}

/* A terminating listener's context, with its ticket keys. */
static SSL_CTX *listener_ctx(struct ferry_gen *g, const struct ferry_listener *l,
                             struct ferry_config_errors *errs)
{
    SSL_CTX *ctx = ferry_tls_server_ctx_new(l, g->cfg->path, errs);
    /* tls_acme's certificates; tickets stay valid across reloads (and
     * upgrades, which hand the key over): one random key per process. */
    if (ctx && (ferry_acme_attach(g->d, ctx, g->cfg, l) < 0 ||
                (!l->tls_ticket_keys &&
                 ferry_ticket_keys_install(ctx, ferry_ticket_keys_from_raw(g->d->ticket_key)) != 0))) {
        SSL_CTX_free(ctx);
        ferry_config_error_add(errs, g->cfg->path, l->line, "out of memory");
        return NULL;
    }
    return ctx;
}

static int build_listener(struct ferry_gen *g, size_t i, struct ferry_config_errors *errs)
{
    const struct ferry_listener *l = &g->cfg->listeners[i];
    struct ferry_listener_rt *rt = &g->listeners[i];
    rt->cfg = l;
    rt->stats = ferry_registry_listener(&g->d->stats, l->name);
    rt->bounds = calloc(l->nbinds ? l->nbinds : 1, sizeof(*rt->bounds));
    if (!rt->stats || !rt->bounds)
        return -ENOMEM;
    if (l->max_connections) {
        rt->limit = limit_for(g->d, l);
        if (!rt->limit)
            return -ENOMEM;
    }
    if (l->max_connections_per_client || l->client_rate) {
        /* Room for every client that can hold a connection, twice over. */
        size_t cap = 2 * (size_t)g->cfg->global.max_connections;
        rt->clients = ferry_registry_listener_clients(&g->d->stats, rt->stats,
                                                   cap < 1024 ? 1024 : cap);
        if (!rt->clients)
            return -ENOMEM;
    }
    if (l->tls) {
        rt->tls_ctx = listener_ctx(g, l, errs);
        if (!rt->tls_ctx)
            return -1;
    }
    return 0;
}

struct ferry_gen *ferry_gen_build(struct ferry_daemon *d, struct ferry_config *cfg,
                                  struct ferry_config_errors *errs)
{
    struct ferry_gen *g = calloc(1, sizeof(*g));
    if (!g) {
        ferry_config_free(cfg);
        return NULL;
    }
    atomic_init(&g->refs, 1);
    g->d = d;
    g->cfg = cfg;
    ac_notify_init(&g->stop);
    g->listeners = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*g->listeners));
    g->backends = calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof(*g->backends));
    g->lb = calloc((size_t)d->nworkers * (cfg->nbackends ? cfg->nbackends : 1), sizeof(*g->lb));
    g->views = calloc((size_t)d->nworkers * (cfg->nbackends ? cfg->nbackends : 1),
                      sizeof(*g->views));
    int failed = (!g->listeners || !g->backends || !g->lb || !g->views) ? -ENOMEM : 0;
    for (size_t i = 0; failed != -ENOMEM && i < cfg->nbackends; i++) {
        /* Go on after an error: every backend's errors are reported. */
        int rc = build_backend(g, i, errs);
        if (rc == -ENOMEM)
            failed = -ENOMEM;
        else if (rc != 0 && failed == 0)
            failed = -1;
        for (unsigned w = 0; w < d->nworkers; w++)
            if (ferry_lb_state_init(&g->lb[w * cfg->nbackends + i], g->backends[i].cap,
                                    ((uint64_t)w << 32) ^ (uint64_t)(uintptr_t)g ^ i) != 0)
                failed = -ENOMEM;
    }
    for (size_t i = 0; failed != -ENOMEM && i < cfg->nlisteners; i++)
        if (build_listener(g, i, errs) != 0 && failed == 0)
            failed = -1;
    if (failed == -ENOMEM)
        ferry_config_error_add(errs, cfg->path, 0, "out of memory building the configuration");
    ferry_config_errors_map(errs, cfg); /* a TLS file of an included file names it */
    if (failed) {
        gen_free(g);
        return NULL;
    }
    return g;
}

struct ferry_backend_view *ferry_gen_views(struct ferry_gen *g, unsigned worker, size_t bidx)
{
    return &g->views[(size_t)worker * g->cfg->nbackends + bidx];
}

struct ferry_view_server *ferry_gen_view(struct ferry_gen *g, unsigned worker, size_t bidx,
                                         size_t sidx)
{
    return &g->views[(size_t)worker * g->cfg->nbackends + bidx].s[sidx];
}

struct ferry_lb_state *ferry_gen_lb(struct ferry_gen *g, unsigned worker, size_t backend)
{
    return &g->lb[(size_t)worker * g->cfg->nbackends + backend];
}

/* ---- tls_watch: new contexts for a live generation ---- */

struct ferry_gen_tls {
    SSL_CTX **listener;      /* [nlisteners], NULL: keep the old one */
    SSL_CTX **backend;       /* [nbackends] */
    SSL_CTX **health;        /* [nbackends] */
    size_t nl, nb;
};

void ferry_gen_tls_free(struct ferry_gen_tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nl; i++)
        SSL_CTX_free(t->listener[i]);
    for (size_t i = 0; i < t->nb; i++) {
        SSL_CTX_free(t->backend[i]);
        SSL_CTX_free(t->health[i]);
    }
    free(t->listener);
    free(t->backend);
    free(t->health);
    free(t);
}

struct ferry_gen_tls *ferry_gen_tls_build(struct ferry_gen *g, struct ferry_config_errors *errs)
{
    const struct ferry_config *cfg = g->cfg;
    struct ferry_gen_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nl = cfg->nlisteners;
    t->nb = cfg->nbackends;
    t->listener = calloc(t->nl ? t->nl : 1, sizeof(*t->listener));
    t->backend = calloc(t->nb ? t->nb : 1, sizeof(*t->backend));
    t->health = calloc(t->nb ? t->nb : 1, sizeof(*t->health));
    if (!t->listener || !t->backend || !t->health) {
        ferry_gen_tls_free(t);
        return NULL;
    }
    /* Each context on its own: a file that fails keeps its old one, the
     * others are renewed all the same. */
    for (size_t i = 0; i < t->nl; i++)
        if (cfg->listeners[i].tls)
            t->listener[i] = listener_ctx(g, &cfg->listeners[i], errs);
    for (size_t i = 0; i < t->nb; i++) {
        const struct ferry_backend *b = &cfg->backends[i];
        if (b->tls)
            t->backend[i] = ferry_tls_client_ctx_new(b, cfg->path, errs);
        else if (b->health_check == FERRY_HEALTH_TLS && b->tls_cert)
            t->health[i] = ferry_tls_client_ctx_new(b, cfg->path, errs);
    }
    return t;
}

static size_t swap_one(struct ferry_gen *g, SSL_CTX *_Atomic *slot, SSL_CTX **fresh,
                       uint64_t now)
{
    if (!*fresh)
        return 0;
    struct ferry_retired_ctx *r = malloc(sizeof(*r));
    if (!r)
        return 0; /* keep the old one: the new is freed with t */
    r->at_ms = now;
    r->ctx = atomic_exchange(slot, *fresh);
    r->next = g->retired;
    g->retired = r;
    *fresh = NULL;
    return 1;
}

size_t ferry_gen_tls_swap(struct ferry_gen *g, struct ferry_gen_tls *t)
{
    uint64_t now = ac_clock_now_ms();
    for (struct ferry_retired_ctx **pp = &g->retired; *pp;) {
        struct ferry_retired_ctx *r = *pp;
        if (now - r->at_ms < RETIRE_MS) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        SSL_CTX_free(r->ctx);
        free(r);
    }
    size_t n = 0;
    for (size_t i = 0; i < t->nl && i < g->cfg->nlisteners; i++)
        n += swap_one(g, &g->listeners[i].tls_ctx, &t->listener[i], now);
    for (size_t i = 0; i < t->nb && i < g->cfg->nbackends; i++) {
        n += swap_one(g, &g->backends[i].tls_ctx, &t->backend[i], now);
        n += swap_one(g, &g->backends[i].health_tls_ctx, &t->health[i], now);
    }
    ferry_gen_tls_free(t);
    return n;
}

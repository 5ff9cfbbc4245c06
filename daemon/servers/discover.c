/* ferryd: a backend's discovered servers (see discover.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "daemon.h"
#include "servers/discover.h"
#include "servers/health.h"
#include "log/log.h"
#include "servers/view.h"

void ferry_discover_init(struct ferry_discovered *ds, struct ferry_gen *g, size_t bidx)
{
    memset(ds, 0, sizeof(*ds));
    ds->g = g;
    ds->bidx = bidx;
}

/* A departed server's slot may take another name once nothing can still
 * use it: no connection on it, and longer gone than any attempt that picked
 * it before it left could take. */
static void mark_reusable(struct ferry_discovered *ds, uint64_t now)
{
    const struct ferry_backend *bc = &ds->g->cfg->backends[ds->bidx];
    uint64_t grace = bc->connect_timeout_ms * ((uint64_t)bc->retries + 1) + 10000;
    for (size_t k = 0; k < ds->nbook; k++) {
        struct ferry_sset_slot *bk = &ds->book[k];
        bk->reusable = false;
        if (!bk->used || bk->listed || now - ds->gone_ms[k] < grace)
            continue;
        struct ferry_server_totals t;
        ferry_server_stats_sum(&ds->g->d->stats,
                               ds->g->backends[ds->bidx].servers[ds->sidx[k]].stats, &t);
        bk->reusable = t.active == 0;
    }
}

static void publish(struct ferry_discovered *ds, size_t k, const struct ferry_sset_want *w,
                    bool live)
{
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    v.dynamic = true;
    if (w) {
        memcpy(&v.addr, &w->sa, w->sa_len);
        v.addr_len = w->sa_len;
        v.weight = w->weight;
        v.backup = w->backup;
    }
    ferry_view_publish(ds->g, ds->bidx, ds->sidx[k], &v, live);
}

bool ferry_server_fill(struct ferry_gen *g, size_t bidx, size_t sidx, const char *name,
                       const struct sockaddr_storage *sa, socklen_t sa_len, unsigned weight,
                       bool backup, unsigned max_connections, int line)
{
    struct ferry_backend_rt *b = &g->backends[bidx];
    struct ferry_server_rt *s = &b->servers[sidx];
    struct ferry_server_stats *st = ferry_registry_server(&g->d->stats, b->cfg->name, name);
    if (!st) {
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=server");
        return false;
    }
    struct ferry_server *c = &s->own;
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->addr.kind = FERRY_ADDR_INET;
    const void *ip = sa->ss_family == AF_INET
                         ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                         : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    inet_ntop(sa->ss_family, ip, c->addr.host, sizeof(c->addr.host));
    c->addr.port = ntohs(sa->ss_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                                  : ((const struct sockaddr_in6 *)sa)->sin6_port);
    snprintf(c->addr.text, sizeof(c->addr.text), sa->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             c->addr.host, (unsigned)c->addr.port);
    c->addr.resolved = true;
    memcpy(&c->addr.sa, sa, sa_len);
    c->addr.sa_len = sa_len;
    c->weight = weight;
    c->backup = backup;
    c->max_connections = max_connections;
    c->line = line;
    s->cfg = c;
    /* A reused slot (its departed server has no connection left) gives
     * back the old name's stats: freed unless another generation holds it. */
    struct ferry_server_stats *old = s->stats;
    s->stats = st;
    ferry_registry_server_release(&g->d->stats, old);
    s->key = ferry_lb_server_key(name);
    snprintf(s->addr_text, sizeof(s->addr_text), "%s", c->addr.text);
    memcpy(&s->addr, sa, sa_len);
    s->addr_len = sa_len;
    atomic_store_explicit(&s->unlisted, false, memory_order_release);
    if (sidx == atomic_load(&b->nservers))
        atomic_store_explicit(&b->nservers, sidx + 1, memory_order_release);
    return true;
}

/* Gives slot k to a new server (a new backend slot when k is new). */
static bool take_slot(struct ferry_discovered *ds, size_t k, const struct ferry_sset_want *w,
                      bool live)
{
    struct ferry_backend_rt *b = &ds->g->backends[ds->bidx];
    bool fresh = k >= ds->nbook;
    if (fresh) {
        size_t idx = atomic_load(&b->nservers);
        if (idx >= b->cap)
            return false;
        ds->sidx[k] = idx;
    }
    if (!ferry_server_fill(ds->g, ds->bidx, ds->sidx[k], w->name, &w->sa, w->sa_len, w->weight,
                           w->backup, 0, b->cfg->discover_line))
        return false;
    struct ferry_sset_slot *bk = &ds->book[k];
    memset(bk, 0, sizeof(*bk));
    snprintf(bk->name, sizeof(bk->name), "%s", w->name);
    bk->used = bk->listed = true;
    bk->weight = w->weight;
    bk->backup = w->backup;
    if (fresh)
        ds->nbook = k + 1;
    if (live) /* a server added while serving: slow_start ramps it in */
        ferry_server_serving_from(ds->g->backends[ds->bidx].servers[ds->sidx[k]].stats,
                                  ac_clock_now_ms());
    publish(ds, k, w, live);
    if (fresh && live && ferry_health_start_server(ds->g, ds->bidx, ds->sidx[k]) < 0)
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=health_check");
    return true;
}

static void act(struct ferry_discovered *ds, const struct ferry_sset_action *a,
                const struct ferry_sset_want *want, uint64_t now, bool live)
{
    struct ferry_backend_rt *b = &ds->g->backends[ds->bidx];
    struct ferry_sset_slot *bk = &ds->book[a->slot];
    struct ferry_server_rt *s = &b->servers[ds->sidx[a->slot]];
    const struct ferry_sset_want *w = a->op == FERRY_SSET_UNLIST ? NULL : &want[a->want];
    switch (a->op) {
    case FERRY_SSET_NEW:
        if (take_slot(ds, a->slot, w, live))
            ferry_log(FERRY_LOG_INFO, "server_discovered", "server=%s/%s weight=%u backup=%s",
                      b->cfg->name, w->name, w->weight, w->backup ? "yes" : "no");
        break;
    case FERRY_SSET_KEEP:
        if (bk->weight == w->weight && bk->backup == w->backup)
            break;
        bk->weight = w->weight;
        bk->backup = w->backup;
        publish(ds, a->slot, w, live);
        break;
    case FERRY_SSET_RELIST:
        bk->listed = true;
        bk->weight = w->weight;
        bk->backup = w->backup;
        atomic_store_explicit(&s->unlisted, false, memory_order_release);
        publish(ds, a->slot, w, live);
        ferry_log(FERRY_LOG_INFO, "server_discovered", "server=%s/%s weight=%u backup=%s",
                  b->cfg->name, w->name, w->weight, w->backup ? "yes" : "no");
        break;
    case FERRY_SSET_UNLIST:
        bk->listed = false;
        ds->gone_ms[a->slot] = now;
        atomic_store_explicit(&s->unlisted, true, memory_order_release);
        publish(ds, a->slot, NULL, live);
        ferry_log(FERRY_LOG_INFO, "server_departed", "server=%s/%s", b->cfg->name, bk->name);
        break;
    }
}

void ferry_discover_apply(struct ferry_discovered *ds, const struct ferry_sset_want *want,
                          size_t n, uint64_t now_ms, bool live)
{
    struct ferry_sset_action *acts = calloc(ds->nbook + n + 1, sizeof(*acts));
    if (!acts) {
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=discover");
        return;
    }
    mark_reusable(ds, now_ms);
    size_t ignored = 0;
    size_t na = ferry_sset_plan(ds->book, ds->nbook, FERRY_DISCOVER_MAX, want, n, acts, &ignored);
    /* Departures first (the plan lists them first), then the rest in order. */
    for (size_t i = 0; i < na; i++)
        act(ds, &acts[i], want, now_ms, live);
    free(acts);
    if (ignored && !ds->full_warned)
        ferry_log(FERRY_LOG_WARN, "discover_full", "backend=%s ignored=%zu max=%d",
                  ds->g->cfg->backends[ds->bidx].name, ignored, FERRY_DISCOVER_MAX);
    ds->full_warned = ignored > 0;
}

size_t ferry_discover_listed(const struct ferry_discovered *ds, struct ferry_sset_want *out,
                             size_t max)
{
    size_t n = 0;
    for (size_t k = 0; k < ds->nbook && n < max; k++) {
        const struct ferry_sset_slot *bk = &ds->book[k];
        if (!bk->used || !bk->listed)
            continue;
        const struct ferry_server_rt *s = &ds->g->backends[ds->bidx].servers[ds->sidx[k]];
        struct ferry_sset_want *w = &out[n++];
        memset(w, 0, sizeof(*w));
        snprintf(w->name, sizeof(w->name), "%s", bk->name);
        memcpy(&w->sa, &s->addr, s->addr_len);
        w->sa_len = s->addr_len;
        w->weight = bk->weight;
        w->backup = bk->backup;
    }
    return n;
}

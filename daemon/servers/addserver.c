/* ferryd: `add server` and `del server` (see admin.h). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "asynccore/runtime.h"
#include "servers/discover.h"
#include "servers/dnswatch.h"
#include "gen.h"
#include "servers/health.h"
#include "log/log.h"
#include "servers/view.h"

static long find_backend(const struct ferry_gen *g, const char *name)
{
    for (size_t i = 0; i < g->cfg->nbackends; i++)
        if (strcmp(g->cfg->backends[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_listed(const struct ferry_backend_rt *b, const char *name)
{
    size_t n = b->nservers;
    for (size_t j = 0; j < n; j++)
        if (ferry_server_listed(&b->servers[j]) && strcmp(b->servers[j].cfg->name, name) == 0)
            return (long)j;
    return -1;
}

/* A host name (HOST:PORT): looked up by the resolver and kept current by
 * TTL; `unresolved` (no traffic, no checks) until the first answer. */
static int add_to(struct ferry_daemon *d, struct ferry_gen *g, size_t bidx, const char *name,
                  const struct ferry_addr *addr, unsigned weight, bool backup,
                  unsigned max_connections, char *err, size_t errlen)
{
    struct ferry_backend_rt *b = &g->backends[bidx];
    bool named = !addr->resolved;
    if (named && !d->dnsw) {
        snprintf(err, errlen, "no resolver is running (give an IP:PORT)");
        return -EAGAIN;
    }
    if (find_listed(b, name) >= 0) {
        snprintf(err, errlen, "server %s/%s exists", b->cfg->name, name);
        return -EEXIST;
    }
    size_t sidx = b->nservers;
    if (b->nadded >= FERRY_ADDED_MAX || sidx >= b->cap) {
        snprintf(err, errlen, "backend %s has no room for another added server (at most %d "
                 "until the next reload)", b->cfg->name, FERRY_ADDED_MAX);
        return -ENOSPC;
    }
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    socklen_t sa_len = addr->sa_len;
    if (named) {
        sa.ss_family = AF_INET; /* a placeholder: no view carries it */
        sa_len = sizeof(struct sockaddr_in);
    } else {
        memcpy(&sa, &addr->sa, addr->sa_len);
    }
    if (!ferry_server_fill(g, bidx, sidx, name, &sa, sa_len, weight, backup,
                           max_connections, 0)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct ferry_server_rt *s = &b->servers[sidx];
    if (named) {
        s->own.addr = *addr; /* the name, for the checks' Host and SNI */
        snprintf(s->addr_text, sizeof(s->addr_text), "%s", addr->text);
        s->addr_len = 0;
    }
    s->added = true;
    b->nadded++;
    /* A returning name starts afresh: ready, up, ramped by slow_start, with
     * counters at zero (the deleted server's are not its own). */
    ferry_server_stats_reset(&g->d->stats, s->stats);
    atomic_store(&s->stats->disabled, false);
    atomic_store(&s->stats->maint, false);
    atomic_store(&s->stats->unresolved, named);
    atomic_store(&s->stats->state, FERRY_SERVER_UP);
    ferry_server_serving_from(s->stats, ac_clock_now_ms());
    ferry_server_changed(s->stats);
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    if (!named) {
        memcpy(&v.addr, &sa, sa_len);
        v.addr_len = sa_len;
    }
    v.dynamic = true;
    v.weight = weight;
    v.backup = backup;
    ferry_view_publish(g, bidx, sidx, &v, true);
    if (named && ferry_dnswatch_watch(d->dnsw, g, bidx, sidx, addr->host, addr->port) != 0)
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=dns_watch");
    if (ferry_health_start_server(g, bidx, sidx) < 0)
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=health_check");
    ferry_log(FERRY_LOG_INFO, "server_added", "server=%s/%s address=%s weight=%u backup=%s",
              b->cfg->name, name, s->addr_text, weight, backup ? "yes" : "no");
    return 0;
}

int ferry_admin_add_server(struct ferry_daemon *d, const char *backend, const char *name,
                            const struct ferry_addr *addr, unsigned weight, bool backup,
                            unsigned max_connections, char *err, size_t errlen)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    long bidx = g ? find_backend(g, backend) : -1;
    int rc;
    if (bidx < 0) {
        snprintf(err, errlen, "no such backend %s", backend);
        rc = -ENOENT;
    } else {
        rc = add_to(d, g, (size_t)bidx, name, addr, weight, backup, max_connections, err, errlen);
    }
    if (g)
        ferry_gen_unref(g);
    return rc;
}

static int del_from(struct ferry_gen *g, size_t bidx, const char *name, char *err,
                    size_t errlen)
{
    struct ferry_backend_rt *b = &g->backends[bidx];
    long j = find_listed(b, name);
    if (j < 0) {
        snprintf(err, errlen, "no such server %s/%s", b->cfg->name, name);
        return -ENOENT;
    }
    struct ferry_server_rt *s = &b->servers[j];
    if (s->cfg == &s->own && !s->added) {
        snprintf(err, errlen, "server %s/%s was discovered: it follows DNS", b->cfg->name, name);
        return -EPERM;
    }
    if (ferry_server_admitted(s->stats)) {
        snprintf(err, errlen, "server %s/%s is not disabled or maint (disable it first)",
                 b->cfg->name, name);
        return -EBUSY;
    }
    struct ferry_server_totals t;
    ferry_server_stats_sum(&g->d->stats, s->stats, &t);
    if (t.active > 0) {
        snprintf(err, errlen, "server %s/%s still has %llu active connections", b->cfg->name,
                 name, (unsigned long long)t.active);
        return -EBUSY;
    }
    atomic_store_explicit(&s->unlisted, true, memory_order_release);
    /* A server added again under this name starts afresh; these stats go
     * with the generation (nothing runs on them any more). */
    ferry_registry_server_forget(&g->d->stats, s->stats);
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v)); /* no address: never picked */
    ferry_view_publish(g, bidx, (size_t)j, &v, true);
    ferry_log(FERRY_LOG_INFO, "server_deleted", "server=%s/%s", b->cfg->name, name);
    return 0;
}

int ferry_admin_del_server(struct ferry_daemon *d, const char *backend, const char *name,
                            char *err, size_t errlen)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    long bidx = g ? find_backend(g, backend) : -1;
    int rc;
    if (bidx < 0) {
        snprintf(err, errlen, "no such server %s/%s", backend, name);
        rc = -ENOENT;
    } else {
        rc = del_from(g, (size_t)bidx, name, err, errlen);
    }
    if (g)
        ferry_gen_unref(g);
    return rc;
}

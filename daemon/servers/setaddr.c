/* ferryd: `set server BACKEND/SERVER addr ADDRESS` (ferryctl(8)): a
 * server's address changed at runtime (declared in admin.h).
 *
 * New connections and health checks go to the new address: each worker's
 * view is written through its inbox, as for a DNS answer; established
 * connections run on where they are. A host name is looked up by the
 * resolver (dnswatch) and kept current by its TTL; until its first answer
 * the server keeps its previous address. Runs on worker 0 (the control
 * socket's and the resolver's worker), on the generation that is live.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "gen.h"
#include "log/log.h"
#include "servers/dnswatch.h"
#include "servers/view.h"

static struct ferry_server_rt *find_server(struct ferry_gen *g, const char *backend,
                                           const char *server, size_t *bidx, size_t *sidx)
{
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        if (strcmp(b->cfg->name, backend) != 0)
            continue;
        size_t n = b->nservers;
        for (size_t j = 0; j < n; j++) {
            if (ferry_server_listed(&b->servers[j]) &&
                strcmp(b->servers[j].cfg->name, server) == 0) {
                *bidx = i;
                *sidx = j;
                return &b->servers[j];
            }
        }
    }
    return NULL;
}

/* A numeric address into every worker's view, keeping what an added
 * server's view carries (its weight and backup flag). */
static void publish(struct ferry_gen *g, size_t bidx, size_t sidx, const struct ferry_addr *a)
{
    struct ferry_server_rt *s = &g->backends[bidx].servers[sidx];
    memcpy(&s->addr, &a->sa, a->sa_len);
    s->addr_len = a->sa_len;
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    memcpy(&v.addr, &a->sa, a->sa_len);
    v.addr_len = a->sa_len;
    v.dynamic = s->added;
    v.weight = s->cfg->weight;
    v.backup = s->cfg->backup;
    ferry_view_publish(g, bidx, sidx, &v, true);
    atomic_store(&s->stats->unresolved, false);
}

static int set_addr(struct ferry_daemon *d, struct ferry_gen *g, const char *backend,
                    const char *server, const struct ferry_addr *a, char *err, size_t errlen)
{
    size_t bidx, sidx;
    struct ferry_server_rt *s = find_server(g, backend, server, &bidx, &sidx);
    if (!s) {
        snprintf(err, errlen, "no such server %s/%s", backend, server);
        return -ENOENT;
    }
    if (s->cfg == &s->own && !s->added) {
        snprintf(err, errlen, "server %s/%s was discovered: it follows DNS", backend, server);
        return -EPERM;
    }
    if (a->resolved) {
        ferry_dnswatch_unwatch(d->dnsw, g, bidx, sidx);
        publish(g, bidx, sidx, a);
    } else if (ferry_dnswatch_watch(d->dnsw, g, bidx, sidx, a->host, a->port) != 0) {
        snprintf(err, errlen, "no resolver is running (give an IP:PORT)");
        return -EAGAIN;
    }
    snprintf(s->addr_text, sizeof(s->addr_text), "%s", a->text);
    ferry_log(FERRY_LOG_INFO, "server_address_set", "server=%s/%s address=%s", backend, server,
              a->text);
    return 0;
}

int ferry_admin_set_server_addr(struct ferry_daemon *d, const char *backend, const char *server,
                                const char *addr, char *err, size_t errlen)
{
    struct ferry_addr a;
    if (ferry_parse_addr(addr, true, &a) != 0 || a.kind != FERRY_ADDR_INET || a.port == 0) {
        snprintf(err, errlen, "invalid address '%.64s' (HOST:PORT, IPV4:PORT or [IPV6]:PORT)",
                 addr);
        return -EINVAL;
    }
    struct ferry_gen *g = ferry_daemon_gen(d);
    if (!g) {
        snprintf(err, errlen, "no such server %s/%s", backend, server);
        return -ENOENT;
    }
    int rc = set_addr(d, g, backend, server, &a, err, errlen);
    ferry_gen_unref(g);
    return rc;
}

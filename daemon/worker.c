/* ferryd: a worker's connections, totalled and listed (for conns_view.c). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "asynccore/runtime.h"
#include "daemon.h"
#include "worker.h"

void ferry_worker_caches_clear(struct ferry_worker *fw)
{
    ferry_objcache_clear(&fw->conn_cache);
    ferry_objcache_clear(&fw->handshake_cache);
    ferry_objcache_clear(&fw->upstream_cache);
}

void ferry_daemon_conn_totals(struct ferry_daemon *d, uint64_t *active, uint64_t *total)
{
    *active = *total = 0;
    for (struct ferry_listener_stats *s = d->stats.listeners; s; s = s->next) {
        struct ferry_listener_totals t;
        ferry_listener_stats_sum(&d->stats, s, &t);
        *active += t.active;
        *total += t.total;
    }
}

int ferry_worker_conns(struct ferry_worker *fw, struct ferry_conn_snapshot **out, size_t *n)
{
    assert(ac_worker_current() == fw->w); /* the list is this thread's alone */
    *out = NULL;
    *n = 0;
    size_t len = 0;
    for (struct ferry_conn *c = ferry_conn_next(fw, NULL); c; c = ferry_conn_next(fw, c))
        len++;
    if (len == 0)
        return 0;
    struct ferry_conn_snapshot *v = malloc(len * sizeof(*v));
    if (!v)
        return -ENOMEM;
    uint64_t now = ac_clock_now_ms();
    size_t i = 0;
    for (struct ferry_conn *c = ferry_conn_next(fw, NULL); c; c = ferry_conn_next(fw, c))
        ferry_conn_snapshot(c, now, &v[i++]);
    *out = v;
    *n = len;
    return 0;
}

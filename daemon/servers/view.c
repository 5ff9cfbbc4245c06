/* ferryd: publishing a server's address to every worker's view (see view.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "asynccore/runtime.h"
#include "daemon.h"
#include "log/log.h"
#include "servers/view.h"
#include "worker.h"

struct view_set {
    _Atomic unsigned refs;
    struct ferry_gen *g;
    size_t bidx, sidx;
    struct ferry_view_server v;
};

static void write_view(struct ferry_gen *g, unsigned worker, size_t bidx, size_t sidx,
                       const struct ferry_view_server *v)
{
    struct ferry_backend_view *bv = ferry_gen_views(g, worker, bidx);
    bv->s[sidx] = *v;
    if (sidx >= bv->n)
        bv->n = sidx + 1;
}

static void view_set_unref(struct view_set *vs)
{
    if (atomic_fetch_sub(&vs->refs, 1) == 1) {
        ferry_gen_unref(vs->g);
        free(vs);
    }
}

/* On each worker: its own view of the server. */
static void view_on_worker(struct ferry_worker *fw, void *arg)
{
    struct view_set *vs = arg;
    write_view(vs->g, fw->index, vs->bidx, vs->sidx, &vs->v);
}

static void view_done(struct ferry_worker *fw, void *arg, bool ran)
{
    (void)fw;
    (void)ran;
    view_set_unref(arg);
}

void ferry_view_publish(struct ferry_gen *g, size_t bidx, size_t sidx,
                        const struct ferry_view_server *v, bool live)
{
    struct ferry_daemon *d = g->d;
    if (!live) {
        for (unsigned i = 0; i < d->nworkers; i++)
            write_view(g, i, bidx, sidx, v);
        return;
    }
    struct view_set *vs = calloc(1, sizeof(*vs));
    if (!vs) {
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=server_update");
        return;
    }
    atomic_init(&vs->refs, 1);
    vs->g = ferry_gen_ref(g);
    vs->bidx = bidx;
    vs->sidx = sidx;
    vs->v = *v;
    for (unsigned i = 0; i < d->nworkers; i++) {
        atomic_fetch_add(&vs->refs, 1);
        if (ferry_worker_run(&d->workers[i], view_on_worker, vs, view_done) == -ENOMEM)
            ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=server_update");
    }
    view_set_unref(vs);
}

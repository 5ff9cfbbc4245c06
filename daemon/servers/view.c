/* ferryd: publishing a server's address to every worker's view (see view.h). */
#include <stdatomic.h>
#include <stdlib.h>

#include "asynccore/runtime.h"
#include "daemon.h"
#include "log/log.h"
#include "servers/view.h"

struct view_set {
    _Atomic unsigned refs;
    struct ferry_gen *g;
    size_t bidx, sidx;
    struct ferry_view_server v;
};

struct view_task {
    struct ac_future base;
    struct view_set *vs;
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

static ac_poll_t view_task_poll(struct ac_future *f, struct ac_context *cx)
{
    struct view_task *t = (struct view_task *)f;
    write_view(t->vs->g, ac_worker_index(cx->worker), t->vs->bidx, t->vs->sidx, &t->vs->v);
    return AC_READY;
}

static void view_task_drop(struct ac_future *f)
{
    struct view_task *t = (struct view_task *)f;
    if (t->vs)
        view_set_unref(t->vs);
    t->vs = NULL;
}

static void view_task_free(struct ac_future *f) { free(f); }

static const struct ac_future_vtable view_task_vt = {view_task_poll, view_task_drop};

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
        struct view_task *t = calloc(1, sizeof(*t));
        if (!t) {
            ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=server_update");
            continue;
        }
        t->base.vt = &view_task_vt;
        atomic_fetch_add(&vs->refs, 1);
        t->vs = vs;
        ac_spawn(ac_runtime_worker(d->rt, i), &t->base, view_task_free); /* drops on failure */
    }
    view_set_unref(vs);
}

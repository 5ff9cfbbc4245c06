/* ferryd: the daemon-level operations on the current generation (asked by
 * the control socket, never by the data path): the runtime API of ferryctl(8) COMMANDS.
 *
 * Server and listener runtime state lives in their stats objects, found by
 * name and kept across reloads; the balancers and accept tasks read it with
 * relaxed atomic loads. Cutting a server's connections (maint) is work for
 * the workers that own them: each is asked through its inbox (a small task
 * spawned on it), never touched from here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "gen.h"
#include "log/log.h"
#include "worker.h"

struct ferry_gen *ferry_daemon_gen(struct ferry_daemon *d)
{
    pthread_mutex_lock(&d->gen_ptr_lock);
    struct ferry_gen *g = d->gen ? ferry_gen_ref(d->gen) : NULL;
    pthread_mutex_unlock(&d->gen_ptr_lock);
    return g;
}

/* The stats of BACKEND/SERVER in the current generation (and its
 * backend's in *bs), or NULL. */
static struct ferry_server_stats *find_server(struct ferry_daemon *d, const char *backend,
                                             const char *server, struct ferry_backend_stats **bs)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    struct ferry_server_stats *st = NULL;
    for (size_t i = 0; g && !st && i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        if (strcmp(b->cfg->name, backend) != 0)
            continue;
        /* A deleted or departed server is unlisted: not there for commands. */
        for (size_t j = 0; j < b->nservers && !st; j++)
            if (ferry_server_listed(&b->servers[j]) && strcmp(b->servers[j].cfg->name, server) == 0)
                st = b->servers[j].stats; /* stats outlive generations */
        *bs = b->stats;
    }
    if (g)
        ferry_gen_unref(g);
    return st;
}

/* ---- maint: ending a server's connections, on each worker ---- */

static void maint_on_worker(struct ferry_worker *fw, void *s)
{
    ferry_conn_wake_server(fw, s);
}

static void end_server_conns(struct ferry_daemon *d, const struct ferry_server_stats *s)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        if (ferry_worker_run(&d->workers[i], maint_on_worker, (void *)s, NULL) == -ENOMEM)
            ferry_log(FERRY_LOG_ERROR, "cut_failed", "server=%s/%s error=%s",
                      s->backend, s->name, strerror(ENOMEM));
}

/* ---- the commands ---- */

static const char *const admin_names[] = {"ready", "drain", "maint"};

int ferry_admin_set_server_state(struct ferry_daemon *d, const char *backend,
                                  const char *server, enum ferry_admin_state state)
{
    struct ferry_backend_stats *bs = NULL;
    struct ferry_server_stats *st = find_server(d, backend, server, &bs);
    if (!st)
        return -ENOENT;
    bool maint = state == FERRY_ADMIN_MAINT, drain = state == FERRY_ADMIN_DRAIN;
    bool was_maint = atomic_exchange(&st->maint, maint);
    bool was_drain = atomic_exchange(&st->disabled, drain);
    if (was_maint != maint || was_drain != drain)
        ferry_server_changed(st);
    if (maint)
        end_server_conns(d, st);
    if (state == FERRY_ADMIN_READY && (was_maint || was_drain)) {
        ferry_server_serving_from(st, ac_clock_now_ms()); /* slow_start ramps from here */
        ferry_queue_kick(&bs->queue);                    /* room for those waiting */
    }
    ferry_log(FERRY_LOG_INFO, "server_state_set", "server=%s/%s state=%s", backend, server,
              admin_names[state]);
    ferry_state_file_changed(d);
    return 0;
}

int ferry_admin_set_server_weight(struct ferry_daemon *d, const char *backend,
                                   const char *server, unsigned weight)
{
    struct ferry_backend_stats *bs = NULL;
    struct ferry_server_stats *st = find_server(d, backend, server, &bs);
    if (!st)
        return -ENOENT;
    atomic_store(&st->weight, (int)weight);
    if (weight > 0)
        ferry_queue_kick(&bs->queue); /* a server that had weight 0 may take the waiting */
    ferry_log(FERRY_LOG_INFO, "server_weight_set", "server=%s/%s weight=%u", backend, server,
              weight);
    ferry_state_file_changed(d);
    return 0;
}

int ferry_admin_set_listener_enabled(struct ferry_daemon *d, const char *listener, bool enabled)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    struct ferry_listener_stats *ls = NULL;
    for (size_t i = 0; g && !ls && i < g->cfg->nlisteners; i++)
        if (strcmp(g->cfg->listeners[i].name, listener) == 0)
            ls = g->listeners[i].stats;
    if (g)
        ferry_gen_unref(g);
    if (!ls)
        return -ENOENT;
    /* The gate holds one permit while enabled. Closing: take it away first,
     * then raise the flag, so that an accept task that sees the flag finds
     * the gate shut. Opening: the other way round. */
    if (!enabled && !atomic_load(&ls->disabled)) {
        ac_semaphore_adjust(&ls->gate, -1);
        atomic_store(&ls->disabled, true);
    } else if (enabled && atomic_load(&ls->disabled)) {
        atomic_store(&ls->disabled, false);
        ac_semaphore_adjust(&ls->gate, 1);
    }
    ferry_log(FERRY_LOG_INFO, enabled ? "listener_enabled" : "listener_disabled", "listener=%s",
              listener);
    return 0;
}

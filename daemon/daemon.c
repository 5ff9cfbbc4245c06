/* ferryd: the daemon-level operations on the current generation (asked by
 * the control socket, never by the data path).
 */
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "gen.h"
#include "log.h"

struct ferry_gen *ferry_daemon_gen(struct ferry_daemon *d)
{
    pthread_mutex_lock(&d->gen_ptr_lock);
    struct ferry_gen *g = d->gen ? ferry_gen_ref(d->gen) : NULL;
    pthread_mutex_unlock(&d->gen_ptr_lock);
    return g;
}

int ferry_daemon_set_server_disabled(struct ferry_daemon *d, const char *backend,
                                     const char *server, bool disabled)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    int rc = -ENOENT;
    for (size_t i = 0; g && i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        if (strcmp(b->cfg->name, backend) != 0)
            continue;
        for (size_t j = 0; j < b->nservers; j++) {
            if (strcmp(b->servers[j].cfg->name, server) == 0) {
                if (atomic_exchange(&b->servers[j].stats->disabled, disabled) && !disabled)
                    ferry_server_serving_from(b->servers[j].stats, ac_clock_now_ms());
                ferry_log(FERRY_LOG_INFO, disabled ? "server_disabled" : "server_enabled",
                          "server=%s/%s", backend, server);
                rc = 0;
            }
        }
    }
    if (g)
        ferry_gen_unref(g);
    return rc;
}

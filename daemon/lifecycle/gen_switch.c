/* ferryd: giving every listener of a generation its listening sockets, and
 * making a generation the current one.
 *
 * A listener keeps the sockets of addresses that did not change (no
 * connection attempt is refused during a reload); new addresses are bound;
 * sockets no listener claims any more are closed after serving their accept
 * queue. With socket activation, a listener named like an inherited socket's
 * FileDescriptorName= takes every socket of that name; otherwise a bind takes
 * an inherited socket with the same local address.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle/gen_switch.h"
#include "acme/acme.h"
#include "proxy/listen.h"
#include "gen.h"
#include "lifecycle/handover.h"
#include "servers/health.h"
#include "log/log.h"
#include "lifecycle/sdnotify.h"

static struct ferry_listen_addr *find_bound(struct ferry_daemon *d, const char *addr)
{
    for (struct ferry_listen_addr *b = d->bound; b; b = b->next)
        if (!b->sd_name[0] && strcmp(b->addr, addr) == 0)
            return b;
    return NULL;
}

static int add_bound(struct ferry_listener_rt *lr, struct ferry_listen_addr *b)
{
    struct ferry_listen_addr **v = realloc(lr->bounds, (lr->nbounds + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    lr->bounds = v;
    char (*a)[256] = realloc(lr->bound_addrs, (lr->nbounds + 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    lr->bound_addrs = a;
    snprintf(lr->bound_addrs[lr->nbounds], sizeof(*a), "%s", b->addr);
    lr->bounds[lr->nbounds++] = b;
    return 0;
}

static int add_fresh(struct ferry_new_sockets *f, struct ferry_listen_addr *b)
{
    struct ferry_listen_addr **v = realloc(f->v, (f->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    f->v = v;
    f->v[f->n++] = b;
    return 0;
}

/* A socket an old process handed over (upgrade), found by its key. */
static struct ferry_listen_addr *take_handed(struct ferry_daemon *d, const char *addr,
                                       const char *sd_name)
{
    struct ferry_handed_sock *s =
        ferry_handover_find(d->handover, FERRY_HANDED_LISTENER, addr, sd_name);
    if (!s)
        return NULL;
    struct ferry_listen_addr *b =
        ferry_listen_adopt_group(s->addr, s->fds, s->nfds, s->inherited, s->sd_name);
    if (b)
        s->claimed = true;
    return b;
}

/* Sockets inherited under the listener's name, existing or new. */
static int bind_named(struct ferry_daemon *d, struct ferry_listener_rt *lr, struct ferry_new_sockets *f)
{
    int found = 0;
    for (struct ferry_listen_addr *b; (b = take_handed(d, NULL, lr->cfg->name)) != NULL;) {
        if (add_fresh(f, b) != 0 || add_bound(lr, b) != 0)
            return -ENOMEM;
        found = 1;
    }
    for (struct ferry_listen_addr *b = d->bound; b; b = b->next)
        if (b->sd_name[0] && strcmp(b->sd_name, lr->cfg->name) == 0) {
            if (add_bound(lr, b) != 0)
                return -ENOMEM;
            found = 1;
        }
    for (size_t i = 0; i < d->nsd_fds; i++) {
        struct ferry_sd_fd *s = &d->sd_fds[i];
        if (s->claimed || strcmp(s->name, lr->cfg->name) != 0)
            continue;
        struct ferry_listen_addr *b = ferry_listen_adopt(s->addr, s->fd, s->name);
        if (!b || add_fresh(f, b) != 0 || add_bound(lr, b) != 0)
            return -ENOMEM;
        s->claimed = true;
        found = 1;
    }
    return found;
}

static int bind_one(struct ferry_daemon *d, struct ferry_listener_rt *lr, size_t i,
                    struct ferry_new_sockets *f, struct ferry_config_errors *errs)
{
    const struct ferry_addr *a = &lr->cfg->binds[i];
    struct ferry_listen_addr *b = find_bound(d, a->text);
    for (size_t k = 0; !b && k < f->n; k++)
        if (!f->v[k]->sd_name[0] && strcmp(f->v[k]->addr, a->text) == 0)
            b = f->v[k];
    if (b)
        return add_bound(lr, b);
    b = take_handed(d, a->text, NULL);
    for (size_t k = 0; !b && k < d->nsd_fds; k++) {
        struct ferry_sd_fd *s = &d->sd_fds[k];
        if (!s->claimed && ferry_sd_addr_equal(s, a)) {
            b = ferry_listen_adopt(a->text, s->fd, NULL);
            if (!b)
                return -ENOMEM;
            s->claimed = true;
            break;
        }
    }
    if (!b) {
        int rc = ferry_listen_bind(a, d->reuseport, d->nworkers, lr->cfg->mptcp,
                                   lr->cfg->tcp_fastopen, &b);
        if (rc < 0) {
            ferry_config_error_add(errs, d->config_path, lr->cfg->bind_lines[i],
                                   "cannot bind %s: %s", a->text, strerror(-rc));
            return rc;
        }
    }
    if (add_fresh(f, b) != 0 || add_bound(lr, b) != 0)
        return -ENOMEM;
    return 0;
}

int ferry_gen_switch_prepare(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_new_sockets *f,
                          struct ferry_config_errors *errs)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < g->cfg->nlisteners; i++) {
        struct ferry_listener_rt *lr = &g->listeners[i];
        int rc = bind_named(d, lr, f);
        if (rc < 0)
            goto fail;
        if (rc > 0)
            continue;
        for (size_t j = 0; j < lr->cfg->nbinds; j++)
            if (bind_one(d, lr, j, f, errs) != 0)
                goto fail;
    }
    return 0;
fail:
    ferry_config_errors_map(errs, g->cfg); /* a bind of an included file names it */
    ferry_gen_switch_abort(d, f);
    if (errs->n == 0)
        ferry_config_error_add(errs, d->config_path, 0, "out of memory binding listeners");
    return -1;
}

void ferry_gen_switch_abort(struct ferry_daemon *d, struct ferry_new_sockets *f)
{
    for (size_t i = 0; i < f->n; i++) {
        struct ferry_listen_addr *b = f->v[i];
        if (b->inherited && !b->keep_file) {
            for (size_t k = 0; k < d->nsd_fds; k++)
                if (d->sd_fds[k].fd == b->fds[0])
                    d->sd_fds[k].claimed = false;
            b->fds[0] = -1; /* still owned by the inherited set */
        }
        ferry_listen_close(b, false);
    }
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

static bool gen_uses(const struct ferry_gen *g, const struct ferry_listen_addr *b, size_t *lidx)
{
    for (size_t i = 0; i < g->cfg->nlisteners; i++)
        for (size_t j = 0; j < g->listeners[i].nbounds; j++)
            if (g->listeners[i].bounds[j] == b) {
                *lidx = i;
                return true;
            }
    return false;
}

void ferry_gen_switch_to(struct ferry_daemon *d, struct ferry_gen *g, struct ferry_new_sockets *f)
{
    for (size_t i = 0; i < f->n; i++) {
        f->v[i]->next = d->bound;
        d->bound = f->v[i];
    }
    /* Swap every socket's generation and the current one at once. */
    struct ferry_gen *old = NULL;
    struct ferry_listen_addr *removed = NULL, **pp = &d->bound;
    pthread_mutex_lock(&d->gen_ptr_lock);
    while (*pp) {
        struct ferry_listen_addr *b = *pp;
        size_t lidx;
        if (gen_uses(g, b, &lidx)) {
            struct ferry_gen *prev = b->gen;
            b->gen = ferry_gen_ref(g);
            b->lidx = lidx;
            atomic_fetch_add_explicit(&b->gen_version, 1, memory_order_release);
            b->prev_gen = prev; /* released below, outside the lock */
            pp = &b->next;
        } else {
            *pp = b->next;
            b->next = removed;
            removed = b;
        }
    }
    old = d->gen;
    d->gen = g;
    pthread_mutex_unlock(&d->gen_ptr_lock);

    for (struct ferry_listen_addr *b = d->bound; b; b = b->next) {
        if (b->prev_gen)
            ferry_gen_unref(b->prev_gen);
        b->prev_gen = NULL;
    }
    while (removed) {
        struct ferry_listen_addr *b = removed;
        removed = b->next;
        ferry_log(FERRY_LOG_INFO, "listener_closed", "bind=%s", b->addr);
        ferry_listen_close(b, true); /* its accept tasks keep b->gen for the queue */
    }
    for (size_t i = 0; i < f->n; i++)
        ferry_listen_start(d, f->v[i]);
    free(f->v);
    f->v = NULL;
    f->n = 0;

    ferry_gen_apply_limits(g);
    long delta = (long)g->cfg->global.max_connections - (long)d->conn_limit_size;
    ac_limit_adjust(&d->conn_limit, delta);
    d->conn_limit_size = g->cfg->global.max_connections;
    ferry_logger_set_level(&d->log, g->cfg->global.log_level);
    ferry_health_start(g);
    if (d->acme) /* new tls_acme certificates start ordering, removed ones stop */
        ferry_acme_sync(d->acme, g->cfg);
    if (old) {
        ac_notify_all(&old->stop);
        ferry_gen_unref(old);
    }
}

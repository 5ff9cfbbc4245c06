/* ferryd: the stats registry (see registry.h).
 *
 * Objects are created at start and on reload (under the registry lock) and
 * live until the daemon ends. A new object is fully initialised before it is
 * linked at the head of its list, and lists only grow, so readers that walk
 * them without the lock see either the old head or a complete new node.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "client_table.h"
#include "registry.h"

static const char *const reject_names[FERRY_REJECT_NREASONS] = {
    "deny", "client_limit", "client_rate", "bad_proxy", "bad_hello", "no_route", "queue_full",
    "proxy_untrusted",
};

const char *ferry_reject_reason_name(enum ferry_reject_reason r)
{
    return (unsigned)r < FERRY_REJECT_NREASONS ? reject_names[r] : "?";
}

int ferry_reject_reason_of(const char *name)
{
    for (int i = 0; name && i < FERRY_REJECT_NREASONS; i++)
        if (strcmp(reject_names[i], name) == 0)
            return i;
    return -1;
}

/* In microseconds, from 0.0001 s: a connect over loopback takes tens of
 * microseconds, a TLS handshake a few milliseconds. */
const uint64_t ferry_hist_bounds_us[2][FERRY_HIST_BOUNDS] = {
    [FERRY_HIST_SHORT] = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 500000,
                          1000000, 5000000},
    [FERRY_HIST_SESSION] = {100, 1000, 10000, 100000, 1000000, 5000000, 10000000, 60000000,
                            300000000, 900000000, 1800000000, 3600000000},
};

static void hist_add(struct ferry_hist_totals *out, struct ferry_hist *h)
{
    for (size_t i = 0; i <= FERRY_HIST_BOUNDS; i++)
        out->bucket[i] += ferry_ctr_get(&h->bucket[i]);
    out->sum_us += ferry_ctr_get(&h->sum_us);
}

int ferry_registry_init(struct ferry_registry *r, unsigned nworkers)
{
    memset(r, 0, sizeof(*r));
    if (nworkers == 0)
        return -EINVAL;
    r->nworkers = nworkers;
    int rc = pthread_mutex_init(&r->lock, NULL);
    return rc ? -rc : 0;
}

/* Per-worker slots: one cache-line-aligned element per worker. */
static void *slots_new(size_t elem, unsigned nworkers)
{
    void *p = aligned_alloc(64, elem * nworkers); /* elem is a multiple of 64 */
    if (p)
        memset(p, 0, elem * nworkers);
    return p;
}

/* A zeroed stats object of `size` bytes and its per-worker slots (*slots),
 * both or neither. The caller fills it in and links it. */
static void *node_new(size_t size, size_t elem, unsigned nworkers, void **slots)
{
    void *node = calloc(1, size);
    *slots = node ? slots_new(elem, nworkers) : NULL;
    if (*slots == NULL) {
        free(node);
        return NULL;
    }
    return node;
}

void ferry_registry_destroy(struct ferry_registry *r)
{
    while (r->listeners) {
        struct ferry_listener_stats *s = r->listeners;
        r->listeners = s->next;
        ac_semaphore_destroy(&s->gate);
        ferry_client_table_free(atomic_load(&s->clients));
        free(s->w);
        free(s);
    }
    while (r->backends) {
        struct ferry_backend_stats *s = r->backends;
        r->backends = s->next;
        ferry_queue_destroy(&s->queue);
        free(s->w);
        free(s);
    }
    while (r->servers) {
        struct ferry_server_stats *s = r->servers;
        r->servers = s->next;
        free(s->w);
        free(s);
    }
    if (r->nworkers)
        pthread_mutex_destroy(&r->lock);
    r->nworkers = 0;
}

struct ferry_listener_stats *ferry_registry_listener(struct ferry_registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    struct ferry_listener_stats *s = r->listeners;
    while (s && strcmp(s->name, name) != 0)
        s = s->next;
    void *w;
    if (!s && (s = node_new(sizeof(*s), sizeof(*s->w), r->nworkers, &w)) != NULL) {
        s->w = w;
        snprintf(s->name, sizeof(s->name), "%s", name);
        atomic_init(&s->disabled, false);
        if (ac_semaphore_init(&s->gate, 1) != 0) {
            free(s->w);
            free(s);
            s = NULL;
        } else {
            s->next = r->listeners;
            r->listeners = s;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return s;
}

struct ferry_backend_stats *ferry_registry_backend(struct ferry_registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    struct ferry_backend_stats *s = r->backends;
    while (s && strcmp(s->name, name) != 0)
        s = s->next;
    void *w;
    if (!s && (s = node_new(sizeof(*s), sizeof(*s->w), r->nworkers, &w)) != NULL) {
        if (ferry_queue_init(&s->queue) != 0) {
            free(w);
            free(s);
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
        s->w = w;
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->next = r->backends;
        r->backends = s;
    }
    pthread_mutex_unlock(&r->lock);
    return s;
}

struct ferry_server_stats *ferry_registry_server(struct ferry_registry *r, const char *backend,
                                              const char *name)
{
    pthread_mutex_lock(&r->lock);
    struct ferry_server_stats *s = r->servers;
    while (s && (s->forgotten || strcmp(s->backend, backend) != 0 || strcmp(s->name, name) != 0))
        s = s->next;
    void *w;
    if (s)
        s->refs++;
    if (!s && (s = node_new(sizeof(*s), sizeof(*s->w), r->nworkers, &w)) != NULL) {
        s->refs = 1;
        s->w = w;
        snprintf(s->backend, sizeof(s->backend), "%s", backend);
        snprintf(s->name, sizeof(s->name), "%s", name);
        atomic_init(&s->state, FERRY_SERVER_UP); /* servers start up (ferry.ini(5)) */
        atomic_init(&s->disabled, false);
        atomic_init(&s->maint, false);
        atomic_init(&s->weight, -1);
        atomic_init(&s->last_change_ms, ac_clock_now_ms());
        atomic_init(&s->fail_streak, 0);
        atomic_init(&s->check, FERRY_CHECK_NONE);
        atomic_init(&s->check_failures, 0);
        s->next = r->servers;
        r->servers = s;
    }
    pthread_mutex_unlock(&r->lock);
    return s;
}

void ferry_registry_server_release(struct ferry_registry *r, struct ferry_server_stats *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&r->lock);
    bool last = --s->refs == 0;
    if (last) {
        struct ferry_server_stats **pp = &r->servers;
        while (*pp && *pp != s)
            pp = &(*pp)->next;
        if (*pp)
            *pp = s->next;
    }
    pthread_mutex_unlock(&r->lock);
    if (last) {
        free(s->w);
        free(s);
    }
}

void ferry_registry_server_forget(struct ferry_registry *r, struct ferry_server_stats *s)
{
    pthread_mutex_lock(&r->lock);
    s->forgotten = true;
    pthread_mutex_unlock(&r->lock);
}

void ferry_listener_stats_sum(const struct ferry_registry *r,
                              const struct ferry_listener_stats *s,
                              struct ferry_listener_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct ferry_listener_wstats *w = &s->w[i];
        out->active += ferry_ctr_get(&w->active);
        out->total += ferry_ctr_get(&w->total);
        out->rejected += ferry_ctr_get(&w->rejected);
        out->bytes_in += ferry_ctr_get(&w->bytes_in);
        out->bytes_out += ferry_ctr_get(&w->bytes_out);
        out->handshake_errors += ferry_ctr_get(&w->handshake_errors);
        for (int k = 0; k < FERRY_REJECT_NREASONS; k++)
            out->rejected_by[k] += ferry_ctr_get(&w->rejected_by[k]);
        hist_add(&out->handshake, &w->handshake);
        hist_add(&out->session, &w->session);
    }
    struct ferry_client_table *t = atomic_load(&s->clients);
    out->clients = t ? ferry_client_table_used(t) : 0;
}

struct ferry_client_table *ferry_registry_listener_clients(struct ferry_registry *r,
                                                        struct ferry_listener_stats *s,
                                                        size_t capacity)
{
    pthread_mutex_lock(&r->lock);
    struct ferry_client_table *t = atomic_load(&s->clients);
    if (!t && (t = ferry_client_table_new(capacity)) != NULL)
        atomic_store(&s->clients, t);
    pthread_mutex_unlock(&r->lock);
    return t;
}

void ferry_backend_stats_sum(const struct ferry_registry *r,
                             const struct ferry_backend_stats *s,
                             struct ferry_backend_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->nworkers; i++) {
        out->active += ferry_ctr_get(&s->w[i].active);
        out->total += ferry_ctr_get(&s->w[i].total);
    }
    out->queue = ferry_queue_len((struct ferry_queue *)&s->queue);
}

void ferry_server_stats_sum(const struct ferry_registry *r,
                            const struct ferry_server_stats *s, struct ferry_server_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct ferry_server_wstats *w = &s->w[i];
        out->total += ferry_ctr_get(&w->total);
        out->connect_errors += ferry_ctr_get(&w->connect_errors);
        out->bytes_in += ferry_ctr_get(&w->bytes_in);
        out->bytes_out += ferry_ctr_get(&w->bytes_out);
        hist_add(&out->connect, &w->connect);
    }
    out->active = ferry_server_active(s);
    out->check_failures = atomic_load_explicit(&s->check_failures, memory_order_relaxed);
}

void ferry_server_stats_reset(const struct ferry_registry *r, struct ferry_server_stats *s)
{
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct ferry_server_wstats *w = &s->w[i];
        atomic_store_explicit(&w->total, 0, memory_order_relaxed);
        atomic_store_explicit(&w->connect_errors, 0, memory_order_relaxed);
        atomic_store_explicit(&w->bytes_in, 0, memory_order_relaxed);
        atomic_store_explicit(&w->bytes_out, 0, memory_order_relaxed);
        for (size_t k = 0; k < sizeof(w->connect.bucket) / sizeof(w->connect.bucket[0]); k++)
            atomic_store_explicit(&w->connect.bucket[k], 0, memory_order_relaxed);
        atomic_store_explicit(&w->connect.sum_us, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&s->check_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->check, 0, memory_order_relaxed);
}

void ferry_server_changed(struct ferry_server_stats *s)
{
    atomic_store_explicit(&s->last_change_ms, ac_clock_now_ms(), memory_order_relaxed);
}

const char *ferry_server_state_name(const struct ferry_server_stats *s)
{
    if (atomic_load(&s->maint))
        return "maint";
    if (atomic_load(&s->disabled))
        return "disabled";
    if (atomic_load(&s->unresolved))
        return "unresolved";
    return atomic_load(&s->state) == FERRY_SERVER_DOWN ? "down" : "up";
}

const char *ferry_server_check_text(const struct ferry_server_stats *s, char *buf, size_t len)
{
    static const char *const names[] = {"-", "ok", "refused", "timeout", "tls", "expect"};
    int v = atomic_load_explicit(&s->check, memory_order_relaxed);
    int r = v & 0xff;
    if (r == FERRY_CHECK_STATUS)
        snprintf(buf, len, "status %03d", (v >> 8) % 1000);
    else
        snprintf(buf, len, "%s", r < (int)(sizeof(names) / sizeof(names[0])) ? names[r] : "-");
    return buf;
}

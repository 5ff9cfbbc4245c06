/* ferryd: configuration generations.
 *
 * A generation (struct ferry_gen) is everything built from one valid
 * configuration file: the parsed config, server addresses, TLS
 * contexts, balancer state. It is reference counted: every connection holds a
 * reference to the generation it started with, so a reload never changes the
 * settings of a running connection, and an old generation is freed when its
 * last connection ends.
 */
#ifndef FERRY_GEN_H
#define FERRY_GEN_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/limit.h"
#include "asynccore/sync.h"
#include "ferry_config.h"
#include "registry.h"

struct ferry_daemon;
struct ferry_listen_addr;
struct ferry_lb_state;

/* A server: what every worker may read (set when the generation is built,
 * never changed while it is live), plus addr, the current address, which
 * only the resolver's worker reads and writes once the generation is live.
 * The data path reads addresses from its own worker's view (below). */
struct ferry_server_rt {
    const struct ferry_server *cfg;
    struct ferry_server_stats *stats;
    struct sockaddr_storage addr; /* current address (resolver's bookkeeping) */
    socklen_t addr_len;           /* 0: not resolved yet */
    char addr_text[256];          /* as written (a host name stays a name) */
    uint64_t key;                 /* ferry_lb_server_key(name): source hashing */
    struct ferry_server own;      /* cfg of a discovered server (cfg points here) */
    _Atomic bool unlisted;        /* discovered, then left the answer (or deleted
                                   * by `del server`): not shown, no new
                                   * connections, its own ones run on */
    bool added;                   /* by `add server` (worker 0 only) */
};

/* False for a discovered server that left its answer (stats and metrics skip it). */
static inline bool ferry_server_listed(const struct ferry_server_rt *s)
{
    return !atomic_load_explicit(&s->unlisted, memory_order_acquire);
}

/* One worker's view of a server: the address its new connections go to.
 * Written only on that worker (updates arrive through its inbox), so
 * picking and connecting take no lock. */
struct ferry_view_server {
    struct sockaddr_storage addr;
    socklen_t addr_len;           /* 0: unresolved or departed: never picked */
    bool dynamic;                 /* discovered: weight and backup below */
    bool backup;
    unsigned weight;
};

struct ferry_backend_view {
    struct ferry_view_server *s;  /* [backend's cap] */
    size_t n;                     /* servers this worker knows of */
};

struct ferry_backend_rt {
    const struct ferry_backend *cfg;
    struct ferry_backend_stats *stats;
    struct ferry_server_rt *servers;  /* [cap] */
    _Atomic size_t nservers;          /* in use: configured, then discovered ones
                                       * (grows on the resolver's worker only) */
    size_t cap;                       /* configured + FERRY_DISCOVER_MAX with discover
                                       * + FERRY_ADDED_MAX */
    size_t nadded;                    /* slots taken by `add server` (worker 0 only) */
    /* Atomic: tls_watch replaces them in a live generation (every read is
     * an atomic load; a replaced one is kept a minute, see gen.c). */
    SSL_CTX *_Atomic tls_ctx;        /* backend tls = on */
    SSL_CTX *_Atomic health_tls_ctx; /* health_check = tls with tls_cert, without tls = on */
};

/* A listener's own max_connections, kept by name across reloads so that
 * connections of an old generation still count against the new cap. */
struct ferry_listener_limit {
    struct ferry_listener_limit *next;
    char name[FERRY_NAME_MAX];
    struct ac_limit lim;
    unsigned size;
};

struct ferry_listener_rt {
    const struct ferry_listener *cfg;
    struct ferry_listener_stats *stats;
    SSL_CTX *_Atomic tls_ctx;           /* tls = on (replaced by tls_watch, see above) */
    struct ferry_listener_limit *limit; /* NULL: no per-listener cap */
    struct ferry_client_table *clients; /* per-client caps (stats' table); NULL: none */
    struct ferry_listen_addr **bounds;        /* its listening sockets */
    char (*bound_addrs)[256];           /* their addresses, [nbounds]: what `show
                                         * stats` lists (an inherited socket's own) */
    size_t nbounds;
};

struct ferry_gen {
    _Atomic unsigned refs;
    uint64_t id;
    struct ferry_daemon *d;
    struct ferry_config *cfg;
    struct ferry_listener_rt *listeners; /* [cfg->nlisteners] */
    struct ferry_backend_rt *backends;   /* [cfg->nbackends] */
    struct ferry_lb_state *lb;           /* [nworkers * nbackends], per worker */
    struct ferry_backend_view *views;    /* [nworkers * nbackends], per worker */
    struct ac_notify stop;               /* set when the generation is replaced */
    struct ferry_retired_ctx *retired;   /* TLS contexts tls_watch replaced (worker 0) */
};

struct ferry_gen *ferry_gen_ref(struct ferry_gen *g);
/* Worker `worker`'s view of backend bidx, and of its server sidx. */
struct ferry_backend_view *ferry_gen_views(struct ferry_gen *g, unsigned worker, size_t bidx);
struct ferry_view_server *ferry_gen_view(struct ferry_gen *g, unsigned worker, size_t bidx,
                                         size_t sidx);
void ferry_gen_unref(struct ferry_gen *g);

/* Builds a generation from cfg (ownership of cfg passes to it, also on
 * failure). Reads TLS files (blocking); looks up no name: servers given by
 * host name start unresolved until the resolver answers (dnswatch.h).
 * Returns NULL with the reasons in errs. */
struct ferry_gen *ferry_gen_build(struct ferry_daemon *d, struct ferry_config *cfg,
                                  struct ferry_config_errors *errs);

/* Resizes the persistent per-listener caps to this generation's values. */
void ferry_gen_apply_limits(struct ferry_gen *g);

/* tls_watch: reads g's TLS files again into new contexts and puts each one
 * that built in place of the old (new handshakes use it; the old one is
 * released a minute later: SSLs made from it hold their own reference). Nothing else of g
 * changes. Blocking (files): the blocking pool. The contexts are built
 * first, then swapped by ferry_gen_tls_swap on worker 0. */
struct ferry_gen_tls;
struct ferry_gen_tls *ferry_gen_tls_build(struct ferry_gen *g, struct ferry_config_errors *errs);
/* Swaps the built contexts in; returns how many. Frees t. */
size_t ferry_gen_tls_swap(struct ferry_gen *g, struct ferry_gen_tls *t);
void ferry_gen_tls_free(struct ferry_gen_tls *t);

/* Balancer state of a backend on one worker. */
struct ferry_lb_state *ferry_gen_lb(struct ferry_gen *g, unsigned worker, size_t backend);

#endif

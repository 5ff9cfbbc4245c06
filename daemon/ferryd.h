/* ferryd: the daemon's shared state.
 *
 * struct ferry_daemon is the one top-level object (no globals): the runtime,
 * the stats registry, the current configuration generation, the bound
 * listening sockets and one struct ferry_worker per event-loop thread.
 *
 * A generation (struct ferry_gen) is everything built from one valid
 * configuration file: the parsed config, resolved server addresses, TLS
 * contexts, balancer state. It is reference counted: every connection holds a
 * reference to the generation it started with, so a reload never changes the
 * settings of a running connection, and an old generation is freed when its
 * last connection ends.
 */
#ifndef FERRYD_H
#define FERRYD_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/runtime.h"
#include "asynccore/blocking.h"
#include "asynccore/net.h"
#include "asynccore/sync.h"
#include "ferry_config.h"
#include "stats.h"

struct ferry_daemon;
struct ferry_conn;
struct ferry_lb_state;
struct ferry_bound;

/* ---- a configuration generation ---- */

struct ferry_server_rt {
    const struct ferry_server *cfg;
    struct ferry_server_stats *stats;
    struct sockaddr_storage addr; /* resolved address */
    socklen_t addr_len;           /* 0: could not be resolved (never picked) */
    char addr_text[256];
};

struct ferry_backend_rt {
    const struct ferry_backend *cfg;
    struct ferry_backend_stats *stats;
    struct ferry_server_rt *servers;
    size_t nservers;
    SSL_CTX *tls_ctx; /* backend tls = on */
};

/* A listener's own max_connections, kept by name across reloads so that
 * connections of an old generation still count against the new cap. */
struct ferry_listener_limit {
    struct ferry_listener_limit *next;
    char name[FERRY_NAME_MAX];
    struct ac_semaphore sem;
    unsigned size;
};

struct ferry_listener_rt {
    const struct ferry_listener *cfg;
    struct ferry_listener_stats *stats;
    SSL_CTX *tls_ctx;                   /* tls = on */
    struct ferry_listener_limit *limit; /* NULL: no per-listener cap */
    struct ferry_bound **bounds;        /* its listening sockets */
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
    struct ac_notify stop;               /* set when the generation is replaced */
};

struct ferry_gen *ferry_gen_ref(struct ferry_gen *g);
void ferry_gen_unref(struct ferry_gen *g);

/* ---- per worker ---- */

struct ferry_worker {
    struct ferry_daemon *d;
    struct ac_worker *w;
    unsigned index;
    struct ac_notify drain;       /* set on stop: connections end at drain_timeout */
    pthread_mutex_t conns_lock;   /* guards the list below (taken by show conns) */
    struct ferry_conn *conns;     /* active connections on this worker */
    _Atomic uint64_t alive_ms;    /* last heartbeat of this loop (watchdog) */
};

/* ---- the daemon ---- */

struct ferry_daemon {
    char *config_path;
    struct ac_runtime *rt;
    unsigned nworkers;
    struct ferry_worker *workers;
    struct ferry_stats_registry stats;
    struct ferry_gen *gen;            /* current generation (daemon holds one ref) */
    pthread_mutex_t gen_ptr_lock;     /* guards gen and every bound->gen/lidx swap */
    struct ferry_bound *bound;        /* listening sockets (worker 0 / reload only) */
    struct ferry_listener_limit *limits;
    struct ferry_sd_fd *sd_fds;       /* inherited sockets (socket activation) */
    size_t nsd_fds;
    _Atomic bool reloading;
    uint64_t drain_deadline_ms;
    struct ac_semaphore conn_limit;   /* global max_connections */
    unsigned conn_limit_size;
    _Atomic uint64_t next_conn_id;
    _Atomic uint64_t reloads;
    _Atomic bool stopping;
    uint64_t start_ms;                /* ac_clock_now_ms() at start */
    pid_t pid;
};

/* A listening socket, kept across reloads while some listener binds its
 * address. One accept task per worker serves it. */
struct ferry_bound {
    struct ferry_bound *next;
    char addr[256];          /* normalised address text, the key */
    int fd;
    bool inherited;          /* from socket activation */
    char sd_name[64];        /* its FileDescriptorName= when claimed by name */
    bool unix_path;          /* unlink addr+5 when closed (not inherited) */
    struct ferry_gen *gen;   /* generation serving it (guarded by gen_ptr_lock) */
    struct ferry_gen *prev_gen; /* replaced one, released after the swap */
    size_t lidx;             /* its listener's index in gen */
    struct ac_notify closing;
    bool serve_queue;        /* closing by reload: accept what is queued first */
    _Atomic unsigned tasks;  /* accept tasks alive; the last one closes fd */
};

/* Current generation with a reference taken (release with ferry_gen_unref). */
struct ferry_gen *ferry_daemon_gen(struct ferry_daemon *d);

/* Totals over every worker: active and total connections. */
void ferry_daemon_conn_totals(struct ferry_daemon *d, uint64_t *active, uint64_t *total);

/* `disable server` / `enable server`: 0, or -ENOENT if BACKEND/SERVER is not
 * in the current generation. */
int ferry_daemon_set_server_disabled(struct ferry_daemon *d, const char *backend,
                                     const char *server, bool disabled);

/* A copy of one active connection's facts, for `show conns`. */
struct ferry_conn_snapshot {
    uint64_t id;
    char listener[FERRY_NAME_MAX];
    char client[AC_ADDR_STRLEN];
    char server[2 * FERRY_NAME_MAX + 2]; /* "backend/server" or "-" */
    uint64_t age_s;
    uint64_t bytes_in, bytes_out;        /* as seen from the client side */
};
/* Snapshot of all active connections (malloc'd array; caller frees). */
int ferry_daemon_snapshot_conns(struct ferry_daemon *d, struct ferry_conn_snapshot **out,
                                size_t *n);

/* ---- reload ---- */

/* A future that reloads the configuration: reads and checks the file on the
 * blocking pool, builds the new generation, binds new listeners, closes
 * removed ones, swaps the generation on every worker. Output: err (0, or -1
 * with every message in errs, each "FILE:LINE: message"). Poll it on worker 0. */
struct ferry_reload {
    struct ac_future base;
    struct ferry_daemon *d;
    int state;
    struct ac_blocking job;
    struct ferry_config_errors errs;
    int err;
};
void ferry_reload_init(struct ferry_reload *r, struct ferry_daemon *d);

#endif

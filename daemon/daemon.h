/* ferryd: the daemon's top-level state.
 *
 * struct ferry_daemon is the one top-level object (no globals): the runtime,
 * the stats registry, the current configuration generation (gen.h), the
 * bound listening sockets (listen.h) and one struct ferry_worker (worker.h)
 * per event-loop thread.
 */
#ifndef FERRY_DAEMON_H
#define FERRY_DAEMON_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "asynccore/limit.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "asynccore/sync.h"
#include "ferry_config.h"
#include "log/log_writer.h"
#include "registry.h"

struct ferry_gen;
struct ferry_worker;
struct ferry_listen_addr;
struct ferry_listener_limit;
struct ferry_sd_fd;
struct ferry_dnswatch;
struct ferry_acme_reg;
struct ferry_buf;
struct ferry_handover;
struct ferry_addr_note;

struct ferry_daemon {
    char *config_path;
    struct ac_runtime *rt;
    unsigned nworkers;
    struct ferry_worker *workers;
    struct ferry_registry stats;
    struct ferry_gen *gen;            /* current generation (daemon holds one ref) */
    pthread_mutex_t gen_ptr_lock;     /* guards gen and every bound->gen/lidx swap */
    struct ferry_listen_addr *bound;        /* listening sockets (worker 0 / reload only) */
    bool reuseport;                   /* [global] reuseport as read at start */
    /* [global] as read at start (state_file left NULL): the values the keys
     * only a restart applies run with, which a reload's warnings compare
     * against (never the last file read). */
    struct ferry_global running_global;
    struct ferry_listener_limit *limits;
    struct ferry_sd_fd *sd_fds;       /* inherited sockets (socket activation) */
    size_t nsd_fds;
    _Atomic bool reloading;
    struct ac_limit conn_limit;       /* global max_connections */
    unsigned conn_limit_size;
    _Atomic uint64_t next_conn_id;
    _Atomic uint64_t reloads;         /* successful reloads */
    _Atomic uint64_t reloads_failed;  /* reloads that ran and failed */
    _Atomic int64_t last_reload;      /* unix time of the last attempt, 0: none */
    _Atomic int64_t last_reload_success; /* unix time of the last success (or start) */
    _Atomic bool last_reload_ok;      /* its outcome (true before any) */
    _Atomic uint64_t tls_reloads;     /* tls_watch re-reads that renewed contexts */
    _Atomic uint64_t tls_reload_runs; /* tls_watch re-reads, whatever their outcome */
    _Atomic bool stopping;            /* a stop signal came: /ready answers 503 */
    _Atomic unsigned accept_tasks;    /* accept tasks alive (proxy/listen.c): a stop
                                       * ends once they ended and no connection is left */
    _Atomic uint64_t accept_until_ms; /* while stopping: accepting ends then (shutdown_delay) */
    uint64_t start_ms;                /* ac_clock_now_ms() at start */
    struct ferry_dnswatch *dnsw;      /* name lookups (worker 0 only; NULL: none) */
    struct ferry_acme_reg *acme;      /* ACME certificates (acme/); NULL: -t */
    double start_unix;                /* wall clock at start (process_start_time_seconds) */
    char *config_abs;                 /* absolute path of the configuration file */
    pthread_mutex_t state_file_lock;  /* serialises state_file writes; guards addr_notes */
    struct ferry_addr_note *addr_notes; /* addresses set at runtime (state_file.h) */
    _Atomic uint64_t state_changes;   /* runtime changes since start (state_file) */
    pid_t pid;
    struct ferry_logger log;          /* where log lines go (log_writer.h) */
    unsigned char ticket_key[80];     /* random, for listeners without tls_ticket_keys */
    /* Upgrading in place (upgrade.h): what is started, and its progress. */
    const char *version;              /* this executable's version */
    char *exe_path;                   /* the executable's path as started (absolute) */
    char **argv;                      /* our arguments, NULL-terminated */
    struct ferry_handover *handover;  /* new process: what the old one handed (start only) */
    _Atomic bool upgrading;           /* an upgrade runs: no reload, no second upgrade */
    _Atomic bool handed_over;         /* a new process took over: drain and exit */
    bool serving;                     /* start-up went through (the loops run) */
    struct ac_notify services_stop;   /* control socket and metrics stop accepting */
    int ctl_fd, metrics_fd;           /* their listening sockets (-1: none), for a handover */
    char ctl_path[108];               /* control_socket as bound */
    char metrics_addr[256];           /* metrics as bound */
};

/* Current generation with a reference taken (release with ferry_gen_unref). */
struct ferry_gen *ferry_daemon_gen(struct ferry_daemon *d);

/* After a runtime change: counts it (lifecycle/state_file.c; the control
 * socket writes the state file before it answers, main at stop). */
void ferry_state_file_changed(struct ferry_daemon *d);

/* ---- ACME (tls_acme), implemented in acme/ ---- */

/* Gives listener l's TLS context (of a generation being built from cfg) its
 * tls_acme certificates from d->acme; nothing when d->acme is NULL (-t).
 * Any thread. 0 or -ENOMEM. */
int ferry_acme_attach(struct ferry_daemon *d, SSL_CTX *ctx, const struct ferry_config *cfg,
                      const struct ferry_listener *l);
/* `show acme` (text or JSON) and ferry_acme_orders_total into out. */
int ferry_acme_render(struct ferry_daemon *d, bool json, struct ferry_buf *out);
void ferry_acme_render_metrics(struct ferry_daemon *d, struct ferry_buf *out);

/* ---- views over every worker's connections (worker.c, conns_view.c) ---- */

/* Totals over every worker: active and total connections. */
void ferry_daemon_conn_totals(struct ferry_daemon *d, uint64_t *active, uint64_t *total);

/* A copy of one active connection's facts, for `show conns`: made by the
 * connection's worker on its own thread (ferry_worker_conns) and gathered
 * through the workers' inboxes (conns_view.h). */
struct ferry_conn_snapshot {
    uint64_t id;
    char listener[FERRY_NAME_MAX];
    char client[AC_ADDR_STRLEN];
    char server[2 * FERRY_NAME_MAX + 2]; /* "backend/server" or "-" */
    uint64_t age_s;
    uint64_t bytes_in, bytes_out;        /* as seen from the client side */
};

#endif

/* ferryd: counters.
 *
 * Counters are kept per worker and summed when asked, so the hot path takes
 * no lock and shares no cache line: each worker writes only its own slot
 * (single writer: a relaxed load + store, no atomic read-modify-write).
 * Readers on other threads load them relaxed.
 *
 * Stats objects are looked up by name in a registry that lives as long as the
 * daemon, so totals survive reloads: a listener or server that keeps its name
 * keeps its counters. Server state (up/down, disabled) lives here too, shared
 * by the balancers of every worker and the health checks.
 */
#ifndef FERRY_REGISTRY_H
#define FERRY_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/sync.h"
#include "ferry_config.h"
#include "queue.h"
#include "proto/admin_state.h"

typedef _Atomic uint64_t ferry_ctr;

static inline void ferry_ctr_add(ferry_ctr *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}
static inline void ferry_ctr_sub(ferry_ctr *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - d,
                          memory_order_relaxed);
}
static inline uint64_t ferry_ctr_get(ferry_ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Why a connection ended `rejected` (the access log's reason=, the stats'
 * rejected_by). */
enum ferry_reject_reason {
    FERRY_REJECT_DENY,
    FERRY_REJECT_CLIENT_LIMIT,
    FERRY_REJECT_CLIENT_RATE,
    FERRY_REJECT_BAD_PROXY,
    FERRY_REJECT_BAD_HELLO,
    FERRY_REJECT_NO_ROUTE,
    FERRY_REJECT_QUEUE_FULL,
    FERRY_REJECT_PROXY_UNTRUSTED,
    FERRY_REJECT_NREASONS
};

/* "deny", "client_limit", ... */
const char *ferry_reject_reason_name(enum ferry_reject_reason r);
/* The reason named `name`, or -1. */
int ferry_reject_reason_of(const char *name);

/* ---- histograms: fixed buckets, per-worker counters, summed on render ---- */

/* Upper bounds of the buckets in milliseconds, then +Inf. Two sets: short
 * waits (connect, handshake) and whole sessions. */
#define FERRY_HIST_BOUNDS 12
enum ferry_hist_kind { FERRY_HIST_SHORT, FERRY_HIST_SESSION };
extern const uint64_t ferry_hist_bounds_us[2][FERRY_HIST_BOUNDS];

/* One worker's histogram: non-cumulative bucket counts (the last is +Inf)
 * and the sum of the observations in milliseconds. */
struct ferry_hist {
    ferry_ctr bucket[FERRY_HIST_BOUNDS + 1];
    ferry_ctr sum_us;
};

/* Records one observation (single writer: the owning worker; no allocation). */
static inline void ferry_hist_observe(struct ferry_hist *h, enum ferry_hist_kind k, uint64_t us)
{
    size_t i = 0;
    while (i < FERRY_HIST_BOUNDS && us > ferry_hist_bounds_us[k][i])
        i++;
    ferry_ctr_add(&h->bucket[i], 1);
    ferry_ctr_add(&h->sum_us, us);
}

struct ferry_hist_totals {
    uint64_t bucket[FERRY_HIST_BOUNDS + 1];
    uint64_t sum_us;
};


/* One worker's slot; aligned so two workers never share a cache line. */
struct ferry_listener_wstats {
    ferry_ctr active, total, rejected, bytes_in, bytes_out, handshake_errors;
    ferry_ctr rejected_by[FERRY_REJECT_NREASONS];
    struct ferry_hist handshake, session;
} __attribute__((aligned(64)));

struct ferry_listener_totals {
    uint64_t active, total, rejected, bytes_in, bytes_out, handshake_errors;
    uint64_t rejected_by[FERRY_REJECT_NREASONS];
    struct ferry_hist_totals handshake, session;
    uint64_t clients;      /* client addresses tracked (per-client caps), 0 without */
};

struct ferry_client_table;

struct ferry_listener_stats {
    struct ferry_listener_stats *next;
    char name[FERRY_NAME_MAX];
    struct ferry_listener_wstats *w; /* [nworkers] */
    /* `disable listener`: its accept tasks stop accepting (the kernel queue
     * holds new clients) and wait at the gate, a semaphore with one permit
     * while enabled and none while disabled. Kept by name across reloads. */
    _Atomic bool disabled;
    struct ac_semaphore gate;
    /* max_connections_per_client / client_rate: created by the first
     * generation that needs it (under the registry lock), kept by name
     * across reloads like the counters; NULL until then. */
    struct ferry_client_table *_Atomic clients;
};


struct ferry_backend_wstats {
    ferry_ctr active, total;
} __attribute__((aligned(64)));

struct ferry_backend_totals {
    uint64_t active, total;
    uint64_t queue; /* waiting now for a server slot */
};

struct ferry_backend_stats {
    struct ferry_backend_stats *next;
    char name[FERRY_NAME_MAX];
    struct ferry_backend_wstats *w;
    struct ferry_queue queue; /* connections waiting for a server slot */
};

enum ferry_server_state { FERRY_SERVER_UP = 0, FERRY_SERVER_DOWN = 1 };


struct ferry_server_wstats {
    ferry_ctr total, connect_errors, bytes_in, bytes_out;
    struct ferry_hist connect;
} __attribute__((aligned(64)));

struct ferry_server_totals {
    uint64_t active, total, connect_errors, bytes_in, bytes_out;
    struct ferry_hist_totals connect;
    uint64_t check_failures;
};

/* The last health check's result ("check" in show stats). */
enum ferry_check_result {
    FERRY_CHECK_NONE,    /* "-": no check ran yet, or checks are off */
    FERRY_CHECK_OK,
    FERRY_CHECK_REFUSED, /* could not connect, or the connection failed */
    FERRY_CHECK_TIMEOUT,
    FERRY_CHECK_TLS,     /* the TLS handshake failed */
    FERRY_CHECK_EXPECT,  /* the answer lacked health_expect, or was no HTTP status line */
    FERRY_CHECK_STATUS,  /* an HTTP status not in health_status */
};

struct ferry_server_stats {
    struct ferry_server_stats *next;
    char backend[FERRY_NAME_MAX];
    char name[FERRY_NAME_MAX];
    struct ferry_server_wstats *w;
    _Atomic int state;         /* enum ferry_server_state */
    _Atomic bool disabled;     /* `disable server`, `set server ... state drain` */
    _Atomic bool maint;        /* `set server ... state maint` (connections cut) */
    _Atomic bool unresolved;   /* its host name has no address yet (no traffic) */
    _Atomic int weight;        /* set at runtime; -1: the configured weight */
    _Atomic uint64_t last_change_ms; /* ac_clock_now_ms() of the last state change */
    _Atomic unsigned fail_streak; /* consecutive connect failures (passive health) */
    _Atomic int check;         /* enum ferry_check_result | HTTP status << 8 */
    _Atomic uint64_t check_failures; /* failed health checks since start */
    _Atomic unsigned slots;    /* connections held, against max_connections (queue.h) */
    /* Connections forwarding to it, on every worker: kept current (one
     * atomic add at connect, one sub at close) because the balancer reads
     * it on every pick, where summing the per-worker counters cost ~125
     * instructions per server. */
    _Atomic uint64_t active;
    _Atomic uint64_t serving_since_ms; /* start of slow_start's ramp; 0: none */
    unsigned refs;             /* server slots of generations using it (under the lock) */
    bool forgotten;            /* deleted: its name no longer finds it (under the lock) */
};

struct ferry_registry {
    pthread_mutex_t lock; /* guards the lists (lookups at start and reload only) */
    unsigned nworkers;
    struct ferry_listener_stats *listeners;
    struct ferry_backend_stats *backends;
    struct ferry_server_stats *servers;
};

int ferry_registry_init(struct ferry_registry *r, unsigned nworkers);
void ferry_registry_destroy(struct ferry_registry *r);

/* Find or create (NULL on allocation failure). */
struct ferry_listener_stats *ferry_registry_listener(struct ferry_registry *r, const char *name);
struct ferry_backend_stats *ferry_registry_backend(struct ferry_registry *r, const char *name);
/* A server's stats are counted: each server slot of a generation that
 * names them holds a reference (taken here, found or created), and gives
 * it back with ferry_registry_server_release when the generation is freed
 * or the slot goes to another name. The last one frees them, so the names
 * of departed and deleted servers do not pile up; a name still in use
 * keeps its counters across reloads (the new generation takes its
 * reference before the old one lets go). */
struct ferry_server_stats *ferry_registry_server(struct ferry_registry *r, const char *backend,
                                              const char *name);
void ferry_registry_server_release(struct ferry_registry *r, struct ferry_server_stats *s);
/* `del server`: the name no longer finds these stats (a server added again
 * under it starts afresh); they are freed with their last reference. */
void ferry_registry_server_forget(struct ferry_registry *r, struct ferry_server_stats *s);

/* The listener's client table, created with `capacity` slots if it has none
 * yet; NULL on allocation failure. */
struct ferry_client_table *ferry_registry_listener_clients(struct ferry_registry *r,
                                                        struct ferry_listener_stats *s,
                                                        size_t capacity);

void ferry_listener_stats_sum(const struct ferry_registry *r,
                              const struct ferry_listener_stats *s,
                              struct ferry_listener_totals *out);
void ferry_backend_stats_sum(const struct ferry_registry *r,
                             const struct ferry_backend_stats *s,
                             struct ferry_backend_totals *out);
void ferry_server_stats_sum(const struct ferry_registry *r,
                            const struct ferry_server_stats *s, struct ferry_server_totals *out);

/* A name added again after `del server` (or back from discovery) starts
 * with its counters at zero: totals, errors, bytes, the connect histogram,
 * check failures. `active` stays: an older generation's connection may
 * still hold it. */
void ferry_server_stats_reset(const struct ferry_registry *r, struct ferry_server_stats *s);

/* The server starts serving now (up after down, enabled, added): the
 * start of its slow_start ramp. now_ms on ac_clock_now_ms()'s clock. */
static inline void ferry_server_serving_from(struct ferry_server_stats *s, uint64_t now_ms)
{
    atomic_store_explicit(&s->serving_since_ms, now_ms ? now_ms : 1, memory_order_relaxed);
}

/* Connections forwarding to s right now, all workers. */
static inline uint64_t ferry_server_active(const struct ferry_server_stats *s)
{
    return atomic_load_explicit(&s->active, memory_order_relaxed);
}

/* The last check's result as shown in stats: "ok", "status 503", "-"...
 * into buf (at least 16 bytes). Returns buf. */
const char *ferry_server_check_text(const struct ferry_server_stats *s, char *buf, size_t len);

/* "maint", "disabled", "down" or "up", in that precedence. */
const char *ferry_server_state_name(const struct ferry_server_stats *s);

/* The weight balancing uses: the runtime one, else the configured one. */
static inline unsigned ferry_server_weight(const struct ferry_server_stats *s, unsigned configured)
{
    int w = atomic_load_explicit(&s->weight, memory_order_relaxed);
    return w >= 0 ? (unsigned)w : configured;
}

/* False while an operator keeps the server out (disabled or maint). */
static inline bool ferry_server_admitted(const struct ferry_server_stats *s)
{
    return !atomic_load_explicit(&s->disabled, memory_order_relaxed) &&
           !atomic_load_explicit(&s->maint, memory_order_relaxed);
}

/* Stamps a state change now (for last_change_s). */
void ferry_server_changed(struct ferry_server_stats *s);

#endif

/* ferryd ACME: the registry's and slots' insides, shared by acme.c (the
 * registry, TLS-facing lookups) and order.c (the task of a slot). */
#ifndef FERRY_ACME_INT_H
#define FERRY_ACME_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "acme/acme.h"
#include "acme/material.h"
#include "asynccore/waker.h"

struct ferry_acme_slot {
    _Atomic unsigned refs;
    struct ferry_acme_reg *owner;        /* NULL once the registry let go of it */
    char *id;                        /* identity: account, settings and names */
    char acme[FERRY_NAME_MAX];
    char **names;
    size_t nnames;
    char base[256];                  /* file name base in storage: names[0] */
    /* The account's settings, copied (the task outlives configurations). */
    char *directory, *email, *ca, *storage, *eab_kid, *eab_hmac_key;
    enum ferry_acme_key_type key_type;
    uint64_t renew_before_s;

    _Atomic(struct ferry_acme_material *) cur; /* served now; NULL: none yet */

    pthread_mutex_t lock;            /* guards everything below */
    struct ferry_acme_material *retired;
    bool running;                    /* a task was started */
    bool stop;                       /* the task must end */
    struct ac_waker waker;           /* the task's, to wake it for stop */
    bool ordering, failed;
    int64_t renew_at;
    char last_error[600];
};

struct ferry_acme_job;

struct ferry_acme_chal {
    char name[256];
    struct ferry_acme_material *m;
    const struct ferry_acme_slot *by;  /* whose order (compared, never followed) */
};

/* Resolves host (A/AAAA) for HTTPS: calls done(arg, sa, len, NULL) or
 * done(arg, NULL, 0, why) once, later, on the task's worker. */
typedef void (*ferry_acme_resolved_fn)(void *arg, const struct sockaddr *sa, socklen_t len,
                                       const char *err);
typedef int (*ferry_acme_resolve_fn)(void *ctx, const char *host, uint16_t port,
                                     ferry_acme_resolved_fn done, void *arg);

struct ferry_acme_reg {
    struct ac_runtime *rt;
    struct ac_worker *w;
    ferry_acme_resolve_fn resolve;
    void *resolve_ctx;
    uint64_t retry_ms;               /* first retry after a failure */

    pthread_mutex_t lock;            /* guards everything below */
    struct ferry_acme_slot **slots;
    size_t nslots;
    struct ferry_acme_chal *chal;
    size_t nchal;
    struct ferry_acme_count *counts;
    size_t ncounts;
    struct ferry_acme_job *jobs;     /* every job not freed yet (jobs.c) */
};

/* jobs.c: frees every job still listed in reg (ones the pool skipped or
 * cancelled): only once the runtime and its blocking pool are gone. */
void ferry_acme_jobs_free(struct ferry_acme_reg *reg);

/* order.c: starts the task of s on a->w (takes its own reference). 0 or -errno. */
int ferry_acme_order_start(struct ferry_acme_reg *a, struct ferry_acme_slot *s);

/* When to renew m (Unix time): see ferry.ini.5 renew_before. */
int64_t ferry_acme_renew_at(const struct ferry_acme_slot *s, const struct ferry_acme_material *m);
/* Publishes new material for s (the old one is retired). */
void ferry_acme_slot_publish(struct ferry_acme_slot *s, struct ferry_acme_material *m);
/* Adds (m non-NULL, taken) or removes every (m NULL) challenge of `by`. */
int ferry_acme_chal_put(struct ferry_acme_reg *a, const struct ferry_acme_slot *by,
                        const char *name, struct ferry_acme_material *m);
void ferry_acme_chal_clear(struct ferry_acme_reg *a, const struct ferry_acme_slot *by);
void ferry_acme_count(struct ferry_acme_reg *a, const char *acme, bool ok);
struct ferry_acme_slot *ferry_acme_slot_ref(struct ferry_acme_slot *s);

#endif

/* ferryd ACME: the work of a certificate's task that must not run on an
 * event loop (files, key generation, loading CA bundles), run on the
 * runtime's blocking pool. A job owns copies of what it needs and a
 * reference to its slot, so the task may be dropped while it runs (the
 * pool's cleanup then frees it). */
#ifndef FERRY_ACME_JOBS_H
#define FERRY_ACME_JOBS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "acme/material.h"
#include "asynccore/blocking.h"

struct ferry_acme_slot;

enum ferry_acme_job_kind {
    FERRY_ACME_J_LOAD,    /* storage made, account key, client context, stored certificate */
    FERRY_ACME_J_LOCK,    /* NAME.lock taken without waiting, and the stored certificate */
    FERRY_ACME_J_PEER,    /* another instance's challenges and the stored certificate */
    FERRY_ACME_J_CHAL,    /* this order's challenges written for the others */
    FERRY_ACME_J_CSR,     /* a new certificate key (kept in storage) and its CSR */
    FERRY_ACME_J_ORDER,   /* the order in flight's URL written to storage */
    FERRY_ACME_J_SAVE,    /* key and chain stored */
    FERRY_ACME_J_RELEASE, /* the challenges (and order) files removed, the lock released */
};

struct ferry_acme_job {
    enum ferry_acme_job_kind kind;
    struct ferry_acme_slot *s;     /* a reference */
    int fd;                        /* LOCK out / RELEASE in: the lock file */
    char *text;                    /* CHAL, SAVE (the chain), ORDER (URL) in / PEER out,
                                    * LOCK out (an order in flight's URL); RELEASE: non-NULL
                                    * when the challenges file was written */
    EVP_PKEY *key;                 /* SAVE in / CSR out / LOAD out (the account's) / LOCK out
                                    * (the order in flight's CSR key) */
    struct ferry_acme_material *m; /* LOAD, LOCK, PEER out: a usable stored certificate */
    SSL_CTX *ctx;                  /* LOAD out: verifies the ACME server */
    unsigned char *csr;            /* CSR out (DER) */
    size_t csr_len;
    int err;                       /* 0 or -errno (LOCK: -EWOULDBLOCK when held) */
    char why[600];
    /* The registry's list of jobs: one the pool skipped or cancelled (its
     * task dropped first) is freed with the registry, after the runtime. */
    struct ferry_acme_reg *reg;
    struct ferry_acme_job *prev, *next;
};

/* A job for slot s (NULL when out of memory). */
struct ferry_acme_job *ferry_acme_job_new(struct ferry_acme_slot *s,
                                          enum ferry_acme_job_kind kind);
/* Frees a job and what it holds (a lock taken but never handed over is
 * released). Safe on NULL; the pool's cleanup. */
void ferry_acme_job_free(void *job);
/* Starts j on rt's pool through b. */
void ferry_acme_job_start(struct ac_blocking *b, struct ac_runtime *rt, struct ferry_acme_job *j);
/* Ready with the finished job in *out (NULL when it could not run); b is
 * dropped. The caller frees *out. */
ac_poll_t ferry_acme_job_poll(struct ac_blocking *b, struct ac_context *cx,
                              struct ferry_acme_job **out);

#endif

/* ferryd ACME: blocking work of the certificate tasks (see jobs.h). */
#include "acme/jobs.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme_int.h"
#include "acme/csr.h"
#include "acme/store.h"

void ferry_acme_job_free(void *p)
{
    struct ferry_acme_job *j = p;
    if (!j)
        return;
    if (j->reg) {
        pthread_mutex_lock(&j->reg->lock);
        if (j->prev)
            j->prev->next = j->next;
        else
            j->reg->jobs = j->next;
        if (j->next)
            j->next->prev = j->prev;
        pthread_mutex_unlock(&j->reg->lock);
    }
    if (j->kind == FERRY_ACME_J_LOCK && j->fd >= 0)
        close(j->fd); /* the task is gone: nobody will release it */
    ferry_acme_slot_unref(j->s);
    free(j->text);
    EVP_PKEY_free(j->key);
    ferry_acme_material_free(j->m);
    SSL_CTX_free(j->ctx);
    free(j->csr);
    free(j);
}

/* The stored certificate when it covers the names and has not expired. */
static void load_cert(struct ferry_acme_job *j)
{
    char why[600];
    j->m = ferry_acme_store_load_cert(j->s->storage, j->s->base, why, sizeof(why));
    if (j->m && (!ferry_acme_material_covers(j->m, j->s->names, j->s->nnames) ||
                 j->m->not_after <= (int64_t)time(NULL))) {
        ferry_acme_material_free(j->m);
        j->m = NULL;
    }
}

/* The context verifying the ACME server: the `ca` bundle, or the system's
 * read whole now, so that verifying never reads a file on the event loop
 * (as a hashed certificate directory would). */
static SSL_CTX *client_ctx(const struct ferry_acme_slot *s, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const char *sys = getenv(X509_get_default_cert_file_env());
    if (!sys || !*sys)
        sys = X509_get_default_cert_file();
    int ok = s->ca ? SSL_CTX_load_verify_locations(ctx, s->ca, NULL)
                   : X509_STORE_load_file(SSL_CTX_get_cert_store(ctx), sys);
    if (ok != 1) {
        snprintf(err, cap, "ca %s: cannot read the CA bundle", s->ca ? s->ca : sys);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void run_load(struct ferry_acme_job *j, const struct ferry_acme_slot *s)
{
    if ((j->err = ferry_acme_store_mkdir(s->storage)) < 0) {
        snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
        return;
    }
    if (!(j->key = ferry_acme_store_account_key(s->storage, j->why, sizeof(j->why))) ||
        !(j->ctx = client_ctx(s, j->why, sizeof(j->why)))) {
        j->err = -EIO;
        return;
    }
    load_cert(j);
}

static void run_lock(struct ferry_acme_job *j, const struct ferry_acme_slot *s)
{
    j->fd = ferry_acme_store_try_lock(s->storage, s->base);
    if (j->fd >= 0) {
        load_cert(j); /* another instance may have just finished */
        j->text = ferry_acme_store_get_order(s->storage, s->base, &j->key);
    }
    j->err = j->fd < 0 ? j->fd : 0;
    if (j->err && j->err != -EWOULDBLOCK)
        snprintf(j->why, sizeof(j->why), "lock %s/%s.lock: %s", s->storage, s->base,
                 strerror(-j->err));
}

static void run_csr(struct ferry_acme_job *j, const struct ferry_acme_slot *s)
{
    j->key = ferry_acme_cert_key_new(s->key_type);
    j->csr_len = j->key ? ferry_acme_csr_der(j->key, s->names, s->nnames, &j->csr) : 0;
    j->err = j->csr_len ? 0 : -ENOMEM;
    if (j->err)
        snprintf(j->why, sizeof(j->why), "cannot make the key and CSR");
    else if ((j->err = ferry_acme_store_put_order(s->storage, s->base, NULL, j->key)))
        snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
    ERR_clear_error();
}

static void *job_run(void *p)
{
    struct ferry_acme_job *j = p;
    const struct ferry_acme_slot *s = j->s;
    switch (j->kind) {
    case FERRY_ACME_J_LOAD: run_load(j, s); break;
    case FERRY_ACME_J_LOCK: run_lock(j, s); break;
    case FERRY_ACME_J_PEER:
        j->text = ferry_acme_store_get_challenges(s->storage, s->base);
        load_cert(j);
        break;
    case FERRY_ACME_J_CHAL:
        if ((j->err = ferry_acme_store_put_challenges(s->storage, s->base, j->text)))
            snprintf(j->why, sizeof(j->why), "%s/%s.challenges: %s", s->storage, s->base,
                     strerror(-j->err));
        break;
    case FERRY_ACME_J_CSR: run_csr(j, s); break;
    case FERRY_ACME_J_SAVE:
        if ((j->err = ferry_acme_store_save_cert(s->storage, s->base, j->text, j->key)))
            snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
        break;
    case FERRY_ACME_J_ORDER:
        if ((j->err = ferry_acme_store_put_order(s->storage, s->base, j->text, NULL)))
            snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
        break;
    case FERRY_ACME_J_RELEASE:
        if (j->text)
            (void)ferry_acme_store_put_challenges(s->storage, s->base, NULL);
        if (j->fd >= 0) /* the lock holder: no order of ours is in flight any more */
            (void)ferry_acme_store_put_order(s->storage, s->base, NULL, NULL);
        if (j->fd >= 0)
            close(j->fd);
        j->fd = -1;
        break;
    }
    return j;
}

struct ferry_acme_job *ferry_acme_job_new(struct ferry_acme_slot *s,
                                          enum ferry_acme_job_kind kind)
{
    struct ferry_acme_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->fd = -1;
    j->s = ferry_acme_slot_ref(s);
    pthread_mutex_lock(&s->lock);
    j->reg = s->owner;
    pthread_mutex_unlock(&s->lock);
    if (j->reg) {
        pthread_mutex_lock(&j->reg->lock);
        j->next = j->reg->jobs;
        if (j->next)
            j->next->prev = j;
        j->reg->jobs = j;
        pthread_mutex_unlock(&j->reg->lock);
    }
    return j;
}

void ferry_acme_jobs_free(struct ferry_acme_reg *reg)
{
    while (reg->jobs)
        ferry_acme_job_free(reg->jobs);
}

void ferry_acme_job_start(struct ac_blocking *b, struct ac_runtime *rt, struct ferry_acme_job *j)
{
    ac_blocking_init(b, rt, job_run, j, ferry_acme_job_free);
}

ac_poll_t ferry_acme_job_poll(struct ac_blocking *b, struct ac_context *cx,
                              struct ferry_acme_job **out)
{
    if (ac_future_poll(&b->base, cx) == AC_PENDING)
        return AC_PENDING;
    *out = b->err ? NULL : b->result;
    if (b->err) /* never ran: the job is still ours */
        ferry_acme_job_free(b->arg);
    b->result = NULL;
    b->arg = NULL;
    ac_future_drop(&b->base);
    return AC_READY;
}

/* ferryd ACME: the task of one certificate slot (RFC 8555 7, RFC 8737).
 *
 *   LOAD      storage: account key (made once), the stored certificate;
 *             a good one is served at once and the task sleeps until its
 *             renew_at
 *   LOCK      take NAME.lock in storage; held by another instance: wait,
 *             answering its challenges (NAME.challenges), until its
 *             certificate appears in storage
 *   DIRECTORY GET the directory; newAccount (the account key's JWK; EAB)
 *   ORDER     newOrder for the names; per authorization: the tls-alpn-01
 *             challenge certificate published (here and in storage), the
 *             challenge answered, the authorization polled until valid
 *   FINALIZE  a new key and its CSR (blocking pool), finalize, poll the
 *             order until valid, download the chain
 *   SAVE      store key and chain (0600), release the lock, serve at once
 *
 * A failure at any step is logged (msg=acme_failed with the server's problem
 * detail), counted, and retried after FERRY_ACME_RETRY_MS (1 minute),
 * doubling up to an hour; the certificate in use stays. A badNonce answer is
 * retried at once with the fresh nonce it carries. Every HTTPS request is an
 * ferry_acme_http future on this task's loop; file work and key generation
 * run on the blocking pool. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme_int.h"
#include "acme/challenge.h"
#include "acme/csr.h"
#include "acme/http.h"
#include "acme/jws.h"
#include "acme/store.h"
#include "asynccore/blocking.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "log/log.h"

#define RETRY_MAX_MS (3600u * 1000u)
#define PEER_POLL_MS 500           /* waiting for another instance's order */
/* After the challenges went to storage and before the CA is told to
 * validate: time for instances sharing the storage to pick them up. */
#define CHAL_SHARE_MS (2 * PEER_POLL_MS)
#define SLEEP_MAX_MS (3600u * 1000u) /* long sleeps are cut: the wall clock may jump */
#define POLLS_MAX 300              /* authorization / order polls before giving up */
#define NONCE_RETRIES 20

enum state {
    S_LOAD, S_WAIT, S_LOCK, S_PEER, S_DIRECTORY, S_ACCOUNT, S_NEW_ORDER, S_AUTHZ,
    S_CHAL_STORE, S_CHAL_POST, S_AUTHZ_POLL, S_ORDER_READY, S_CSR, S_FINALIZE, S_ORDER_VALID,
    S_CERT, S_SAVE, S_RELEASE, S_FAILED,
};

/* Work for the blocking pool: owns copies of what it needs (the task may be
 * dropped while it runs; then the cleanup frees it). */
enum job_kind { J_LOAD, J_LOCK, J_PEER, J_CHAL, J_CSR, J_SAVE, J_RELEASE };
struct job {
    enum job_kind kind;
    struct ferry_acme_slot *s;     /* a reference */
    int fd;                        /* J_LOCK out / J_RELEASE in */
    char *text;                    /* J_CHAL, J_SAVE in (chain) / J_PEER out */
    EVP_PKEY *key;                 /* J_SAVE in / J_CSR out / J_LOAD out (account) */
    struct ferry_acme_material *m; /* J_LOAD, J_LOCK, J_PEER out */
    SSL_CTX *ctx;                  /* J_LOAD out: verifies the ACME server */
    unsigned char *csr;            /* J_CSR out */
    size_t csr_len;
    int err;
    char why[600];
};

/* Where a request goes and what came back. */
struct request {
    const char *method;
    char url[1024];
    json_t *payload;               /* POST: JSON body (owned); NULL: POST-as-GET */
    bool post, use_jwk;
    int phase;                     /* 0 resolve, 1 nonce, 2 send */
    unsigned nonce_retries;
    /* result */
    int status;
    json_t *json;
    char *body;
    char location[1024];
    unsigned retry_after_s;
};

struct order_task {
    struct ac_future base;
    struct ferry_acme_reg *a;
    struct ferry_acme_slot *s;
    enum state state;
    int after_release;             /* state after S_RELEASE */
    SSL_CTX *ctx;
    EVP_PKEY *account;
    char *kid, *nonce;
    char new_nonce[1024], new_account[1024], new_order[1024];
    char order_url[1024], finalize_url[1024], cert_url[1024];
    json_t *authzs;
    size_t authz_i;
    unsigned polls;
    char chal_url[1024];
    char *chal_text;               /* NAME KEYAUTH lines of this order */
    EVP_PKEY *cert_key;
    unsigned char *csr;
    size_t csr_len;
    struct ferry_acme_material *issued;
    char *chain;
    int lock_fd;
    bool chal_stored;

    struct ac_blocking job;        /* vt NULL: none */
    struct ferry_acme_http http;
    bool http_live;
    struct ac_sleep sleep;         /* vt NULL: none */
    struct request req;
    bool req_live;

    /* resolution of the directory's host */
    char host[256];
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool resolving;
    _Atomic int resolved;          /* 0 waiting, 1 done, -1 failed (set by the callback) */
    struct sockaddr_storage res_addr;
    socklen_t res_len;
    struct ac_waker res_waker;
    pthread_mutex_t res_lock;
    struct order_task **res_self;  /* shared with the callback (see resolve_done) */

    uint64_t retry_ms;
    char err[600];
};

/* ---- helpers ---- */

static int64_t now_unix(void)
{
    return (int64_t)time(NULL);
}

static void set_status(struct order_task *t, bool ordering)
{
    pthread_mutex_lock(&t->s->lock);
    t->s->ordering = ordering;
    pthread_mutex_unlock(&t->s->lock);
}

static void names_text(const struct ferry_acme_slot *s, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nnames && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? "," : "", s->names[i]);
}

static void rfc3339(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fail_msg(struct order_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_msg(struct order_task *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
    t->state = S_FAILED;
}

/* The problem document of an error answer: "TYPE: DETAIL". */
static void problem(struct order_task *t, const char *what)
{
    const char *type = NULL, *detail = NULL;
    if (t->req.json)
        json_unpack(t->req.json, "{s?s, s?s}", "type", &type, "detail", &detail);
    if (type && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0)
        type += 27;
    fail_msg(t, "%s: HTTP %d%s%s%s%s", what, t->req.status, type ? " " : "", type ? type : "",
             detail ? ": " : "", detail ? detail : "");
}

/* ---- the blocking pool ---- */

static void job_free(void *p)
{
    struct job *j = p;
    if (!j)
        return;
    if (j->kind == J_LOCK && j->fd >= 0)
        close(j->fd); /* the task is gone: nobody will release it */
    ferry_acme_slot_unref(j->s);
    free(j->text);
    EVP_PKEY_free(j->key);
    ferry_acme_material_free(j->m);
    SSL_CTX_free(j->ctx);
    free(j->csr);
    free(j);
}

static bool usable(const struct ferry_acme_slot *s, const struct ferry_acme_material *m)
{
    return m && ferry_acme_material_covers(m, s->names, s->nnames) && m->not_after > now_unix();
}

static void job_load_cert(struct job *j)
{
    char why[600];
    j->m = ferry_acme_store_load_cert(j->s->storage, j->s->base, why, sizeof(why));
    if (j->m && !ferry_acme_material_covers(j->m, j->s->names, j->s->nnames)) {
        ferry_acme_material_free(j->m);
        j->m = NULL;
    }
}

static SSL_CTX *client_ctx(const struct ferry_acme_slot *s, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whole now (this runs on the blocking pool): verifying never
     * reads a file on the event loop, as a hashed directory would. */
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

static void *job_run(void *p)
{
    struct job *j = p;
    struct ferry_acme_slot *s = j->s;
    switch (j->kind) {
    case J_LOAD:
        if ((j->err = ferry_acme_store_mkdir(s->storage)) < 0) {
            snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
            break;
        }
        if (!(j->key = ferry_acme_store_account_key(s->storage, j->why, sizeof(j->why))) ||
            !(j->ctx = client_ctx(s, j->why, sizeof(j->why)))) {
            j->err = -EIO;
            break;
        }
        job_load_cert(j);
        break;
    case J_LOCK:
        j->fd = ferry_acme_store_try_lock(s->storage, s->base);
        if (j->fd >= 0)
            job_load_cert(j); /* another instance may have just finished */
        j->err = j->fd < 0 ? j->fd : 0;
        if (j->err && j->err != -EWOULDBLOCK)
            snprintf(j->why, sizeof(j->why), "lock %s/%s.lock: %s", s->storage, s->base,
                     strerror(-j->err));
        break;
    case J_PEER:
        j->text = ferry_acme_store_get_challenges(s->storage, s->base);
        job_load_cert(j);
        break;
    case J_CHAL:
        j->err = ferry_acme_store_put_challenges(s->storage, s->base, j->text);
        if (j->err)
            snprintf(j->why, sizeof(j->why), "%s/%s.challenges: %s", s->storage, s->base,
                     strerror(-j->err));
        break;
    case J_CSR:
        j->key = ferry_acme_cert_key_new(s->key_type);
        j->csr_len = j->key ? ferry_acme_csr_der(j->key, s->names, s->nnames, &j->csr) : 0;
        j->err = j->csr_len ? 0 : -ENOMEM;
        if (j->err)
            snprintf(j->why, sizeof(j->why), "cannot make the key and CSR");
        ERR_clear_error();
        break;
    case J_SAVE:
        j->err = ferry_acme_store_save_cert(s->storage, s->base, j->text, j->key);
        if (j->err)
            snprintf(j->why, sizeof(j->why), "storage %s: %s", s->storage, strerror(-j->err));
        break;
    case J_RELEASE:
        if (j->text) /* non-NULL: the challenges file was written */
            (void)ferry_acme_store_put_challenges(s->storage, s->base, NULL);
        if (j->fd >= 0)
            close(j->fd);
        break;
    }
    return j;
}

static struct job *job_new(struct order_task *t, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->fd = -1;
    j->s = ferry_acme_slot_ref(t->s);
    return j;
}

static void job_start(struct order_task *t, struct job *j)
{
    ac_blocking_init(&t->job, t->a->rt, job_run, j, job_free);
}

/* Ready with the finished job (the caller frees it with job_free), or NULL
 * when it could not run. */
static ac_poll_t job_poll(struct order_task *t, struct ac_context *cx, struct job **out)
{
    if (ac_future_poll(&t->job.base, cx) == AC_PENDING)
        return AC_PENDING;
    *out = t->job.err ? NULL : t->job.result;
    if (t->job.err)
        job_free(t->job.arg);
    t->job.result = NULL;
    t->job.arg = NULL;
    ac_future_drop(&t->job.base);
    return AC_READY;
}

/* ---- resolving the directory's host ---- */

/* The callback may run after the task is gone: it reaches the task through
 * a shared cell the task clears (under res_lock) when it is dropped. */
struct res_cell {
    pthread_mutex_t lock;
    struct order_task *t;
    _Atomic unsigned refs;
};

static void res_cell_unref(struct res_cell *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

static void resolve_done(void *arg, const struct sockaddr *sa, socklen_t len, const char *err)
{
    struct res_cell *c = arg;
    pthread_mutex_lock(&c->lock);
    struct order_task *t = c->t;
    if (t) {
        pthread_mutex_lock(&t->res_lock);
        if (len > 0 && len <= sizeof(t->res_addr)) {
            memcpy(&t->res_addr, sa, len);
            t->res_len = len;
            atomic_store(&t->resolved, 1);
        } else {
            snprintf(t->err, sizeof(t->err), "cannot resolve %s: %s", t->host,
                     err ? err : "no address");
            atomic_store(&t->resolved, -1);
        }
        struct ac_waker w = t->res_waker;
        t->res_waker = AC_WAKER_NONE;
        pthread_mutex_unlock(&t->res_lock);
        if (w.vt)
            ac_waker_wake(&w);
    }
    pthread_mutex_unlock(&c->lock);
    res_cell_unref(c);
}

static struct res_cell *cell_of(struct order_task *t)
{
    return (struct res_cell *)t->res_self;
}

/* Ready when t->addr holds the server's address (or t->state is S_FAILED). */
static ac_poll_t resolve_poll(struct order_task *t, struct ac_context *cx)
{
    if (t->addr_len)
        return AC_READY;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->addr;
    char host[256];
    snprintf(host, sizeof(host), "%s", t->host);
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    memset(&t->addr, 0, sizeof(t->addr));
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(t->port);
        t->addr_len = sizeof(*v4);
        return AC_READY;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(t->port);
        t->addr_len = sizeof(*v6);
        return AC_READY;
    }
    if (!t->a->resolve) {
        fail_msg(t, "cannot resolve %s: no resolver", host);
        return AC_READY;
    }
    pthread_mutex_lock(&t->res_lock);
    ac_waker_register(&t->res_waker, cx->waker);
    pthread_mutex_unlock(&t->res_lock);
    if (!t->resolving) {
        struct res_cell *c = cell_of(t);
        if (!c) {
            c = calloc(1, sizeof(*c));
            if (!c) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            pthread_mutex_init(&c->lock, NULL);
            atomic_init(&c->refs, 1);
            c->t = t;
            t->res_self = (struct order_task **)c;
        }
        t->resolving = true;
        atomic_store(&t->resolved, 0);
        atomic_fetch_add(&c->refs, 1);
        if (t->a->resolve(t->a->resolve_ctx, host, t->port, resolve_done, c) < 0) {
            res_cell_unref(c);
            t->resolving = false;
            fail_msg(t, "cannot resolve %s: out of memory", host);
            return AC_READY;
        }
    }
    int r = atomic_load(&t->resolved);
    if (r == 0)
        return AC_PENDING;
    t->resolving = false;
    if (r < 0) {
        t->state = S_FAILED;
        return AC_READY;
    }
    pthread_mutex_lock(&t->res_lock);
    memcpy(&t->addr, &t->res_addr, t->res_len);
    t->addr_len = t->res_len;
    pthread_mutex_unlock(&t->res_lock);
    return AC_READY;
}

/* ---- requests ---- */

static void req_reset(struct order_task *t)
{
    if (t->http_live)
        ac_future_drop(&t->http.base);
    t->http_live = false;
    json_decref(t->req.payload);
    json_decref(t->req.json);
    free(t->req.body);
    memset(&t->req, 0, sizeof(t->req));
    t->req_live = false;
}

/* A GET (post false) or a signed POST (payload NULL: POST-as-GET; use_jwk:
 * newAccount, signed with the key itself instead of the account URL). */
static void req_start(struct order_task *t, const char *url, bool post, json_t *payload,
                      bool use_jwk)
{
    req_reset(t);
    snprintf(t->req.url, sizeof(t->req.url), "%s", url);
    t->req.method = post ? "POST" : "GET";
    t->req.post = post;
    t->req.payload = payload;
    t->req.use_jwk = use_jwk;
    t->req_live = true;
}

/* Takes the answer's parts into t->req; keeps the nonce. */
static void take_answer(struct order_task *t)
{
    struct ferry_acme_http *h = &t->http;
    if (h->nonce[0]) {
        free(t->nonce);
        t->nonce = strdup(h->nonce);
    }
    t->req.status = h->status;
    snprintf(t->req.location, sizeof(t->req.location), "%s", h->location);
    t->req.retry_after_s = h->retry_after_s;
    json_decref(t->req.json);
    t->req.json = NULL;
    if (strstr(h->content_type, "json"))
        t->req.json = json_loadb(h->body, h->body_len, 0, NULL);
    free(t->req.body);
    t->req.body = h->body;
    h->body = NULL;
}

static bool is_bad_nonce(const struct order_task *t)
{
    const char *type = NULL;
    return t->req.status == 400 && t->req.json &&
           json_unpack(t->req.json, "{s:s}", "type", &type) == 0 &&
           strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
}

static int http_start(struct order_task *t, const char *method, const char *url,
                      const char *body)
{
    char host[256];
    uint16_t port;
    const char *path;
    if (ferry_acme_url_parse(url, host, sizeof(host), &port, &path) < 0)
        return -EINVAL;
    /* Every URL of one ACME server is on the directory's host. */
    if (strcmp(host, t->host) != 0 || port != t->port) {
        snprintf(t->host, sizeof(t->host), "%s", host);
        t->port = port;
        t->addr_len = 0;
        return 1; /* resolve first */
    }
    int rc = ferry_acme_http_init(&t->http, t->ctx, method, url, (struct sockaddr *)&t->addr,
                                  t->addr_len, body);
    t->http_live = rc == 0;
    return rc;
}

/* Ready when the request finished (t->req.status > 0) or failed (state
 * S_FAILED with t->err). */
static ac_poll_t req_poll(struct order_task *t, struct ac_context *cx)
{
    for (;;) {
        if (t->http_live) {
            if (ac_future_poll(&t->http.base, cx) == AC_PENDING)
                return AC_PENDING;
            int err = t->http.err;
            if (err) {
                fail_msg(t, "%s %s: %s", t->req.method, t->req.url, t->http.errmsg);
                ac_future_drop(&t->http.base);
                t->http_live = false;
                t->addr_len = 0; /* resolve again next time */
                return AC_READY;
            }
            bool nonce_only = t->req.phase == 1;
            take_answer(t);
            ac_future_drop(&t->http.base);
            t->http_live = false;
            if (nonce_only) {
                if (!t->nonce) {
                    fail_msg(t, "newNonce: no Replay-Nonce (HTTP %d)", t->req.status);
                    return AC_READY;
                }
                t->req.phase = 2;
                continue;
            }
            if (is_bad_nonce(t) && ++t->req.nonce_retries < NONCE_RETRIES) {
                ferry_log(FERRY_LOG_DEBUG, "acme_bad_nonce", "acme=%s url=%s", t->s->acme,
                          t->req.url);
                t->req.phase = 2; /* the answer carried a fresh nonce */
                if (!t->nonce)
                    t->req.phase = 1;
                continue;
            }
            return AC_READY;
        }
        char host[256];
        uint16_t port;
        const char *path;
        if (ferry_acme_url_parse(t->req.url, host, sizeof(host), &port, &path) < 0) {
            fail_msg(t, "bad URL from the server: %s", t->req.url);
            return AC_READY;
        }
        if (strcmp(host, t->host) != 0 || port != t->port) {
            snprintf(t->host, sizeof(t->host), "%s", host);
            t->port = port;
            t->addr_len = 0;
        }
        if (resolve_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        int rc;
        if (t->req.post && !t->nonce) {
            t->req.phase = 1;
            rc = http_start(t, "HEAD", t->new_nonce, NULL);
        } else if (t->req.post) {
            t->req.phase = 2;
            char *body = ferry_acme_jws(t->account, t->req.use_jwk ? NULL : t->kid, t->nonce,
                                        t->req.url, t->req.payload);
            free(t->nonce); /* a nonce is good for one request */
            t->nonce = NULL;
            if (!body) {
                fail_msg(t, "cannot sign the request to %s", t->req.url);
                return AC_READY;
            }
            rc = http_start(t, "POST", t->req.url, body);
            free(body);
        } else {
            t->req.phase = 2;
            rc = http_start(t, "GET", t->req.url, NULL);
        }
        if (rc == 1)
            continue;
        if (rc < 0) {
            fail_msg(t, "%s %s: %s", t->req.method, t->req.url, strerror(-rc));
            return AC_READY;
        }
    }
}

/* ---- the steps ---- */

static void sleep_start(struct order_task *t, uint64_t ms)
{
    ac_future_drop(&t->sleep.base);
    ac_sleep_init(&t->sleep, ms > SLEEP_MAX_MS ? SLEEP_MAX_MS : ms);
}

static ac_poll_t sleep_poll(struct order_task *t, struct ac_context *cx)
{
    if (ac_future_poll(&t->sleep.base, cx) == AC_PENDING)
        return AC_PENDING;
    ac_future_drop(&t->sleep.base);
    return AC_READY;
}

/* A usable certificate: serve it (when new) and sleep until its renew_at. */
static void serve_stored(struct order_task *t, struct ferry_acme_material *m)
{
    struct ferry_acme_material *cur = atomic_load(&t->s->cur);
    bool same = cur && X509_cmp(cur->leaf, m->leaf) == 0;
    int64_t at = same ? 0 : ferry_acme_renew_at(t->s, m);
    if (same) {
        ferry_acme_material_free(m);
    } else {
        pthread_mutex_lock(&t->s->lock);
        t->s->renew_at = at;
        pthread_mutex_unlock(&t->s->lock);
        ferry_acme_slot_publish(t->s, m);
    }
}

/* Due for renewal (or none): order. */
static bool due(struct order_task *t)
{
    struct ferry_acme_material *cur = atomic_load(&t->s->cur);
    pthread_mutex_lock(&t->s->lock);
    int64_t at = t->s->renew_at;
    pthread_mutex_unlock(&t->s->lock);
    return !cur || now_unix() >= at || !usable(t->s, cur);
}

static void wait_for_renewal(struct order_task *t)
{
    pthread_mutex_lock(&t->s->lock);
    int64_t at = t->s->renew_at;
    pthread_mutex_unlock(&t->s->lock);
    int64_t s = at - now_unix();
    sleep_start(t, s > 0 ? (uint64_t)s * 1000 : 0);
    t->state = S_WAIT;
}

static json_t *identifiers(const struct ferry_acme_slot *s)
{
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < s->nnames; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", s->names[i]));
    return ids;
}

static bool copy_url(char *dst, size_t cap, json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s || strlen(s) >= cap)
        return false;
    snprintf(dst, cap, "%s", s);
    return true;
}

static const char *status_of(json_t *obj)
{
    json_t *v = obj ? json_object_get(obj, "status") : NULL;
    return json_is_string(v) ? json_string_value(v) : "";
}

/* The first tls-alpn-01 challenge of an authorization. */
static json_t *alpn_challenge(json_t *authz)
{
    json_t *chs = json_object_get(authz, "challenges"), *c;
    size_t i;
    json_array_foreach(chs, i, c)
    {
        json_t *type = json_object_get(c, "type");
        if (json_is_string(type) && strcmp(json_string_value(type), "tls-alpn-01") == 0)
            return c;
    }
    return NULL;
}

/* Publishes the challenge certificate of authz and remembers the line for
 * the storage file. False after fail_msg. */
static bool publish_challenge(struct order_task *t, json_t *authz, json_t *ch)
{
    const char *name = NULL, *token = NULL;
    if (json_unpack(authz, "{s:{s:s}}", "identifier", "value", &name) < 0 ||
        json_unpack(ch, "{s:s}", "token", &token) < 0 || !copy_url(t->chal_url,
                                                                    sizeof(t->chal_url), ch, "url")) {
        fail_msg(t, "malformed authorization from %s", t->req.url);
        return false;
    }
    char *keyauth = ferry_acme_key_authorization(t->account, token);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    struct ferry_acme_material *m = calloc(1, sizeof(*m));
    if (!keyauth || !m || ferry_acme_challenge_cert(name, keyauth, &x, &k) < 0 ||
        !(m->chain = sk_X509_new_null())) {
        free(keyauth);
        X509_free(x);
        EVP_PKEY_free(k);
        ferry_acme_material_free(m);
        fail_msg(t, "cannot make the challenge certificate for %s", name);
        return false;
    }
    m->leaf = x;
    m->key = k;
    ferry_acme_chal_put(t->a, t->s, name, m);
    size_t old = t->chal_text ? strlen(t->chal_text) : 0;
    size_t n = old + strlen(name) + strlen(keyauth) + 3;
    char *text = realloc(t->chal_text, n);
    if (text) {
        snprintf(text + old, n - old, "%s %s\n", name, keyauth);
        t->chal_text = text;
    }
    free(keyauth);
    return true;
}

/* Another instance's challenges (from storage): answered here too. */
static void adopt_challenges(struct order_task *t, const char *text)
{
    ferry_acme_chal_clear(t->a, t->s);
    while (text && *text) {
        char name[256], keyauth[512];
        if (sscanf(text, "%255s %511s", name, keyauth) == 2) {
            X509 *x = NULL;
            EVP_PKEY *k = NULL;
            struct ferry_acme_material *m = calloc(1, sizeof(*m));
            if (m && ferry_acme_challenge_cert(name, keyauth, &x, &k) == 0 &&
                (m->chain = sk_X509_new_null())) {
                m->leaf = x, m->key = k;
                ferry_acme_chal_put(t->a, t->s, name, m);
            } else {
                X509_free(x);
                EVP_PKEY_free(k);
                ferry_acme_material_free(m);
            }
        }
        const char *nl = strchr(text, '\n');
        text = nl ? nl + 1 : NULL;
    }
}

/* ---- the state machine ---- */

static void start_release(struct order_task *t, int next)
{
    struct job *j = job_new(t, J_RELEASE);
    if (j) {
        j->fd = t->lock_fd;
        j->text = t->chal_stored ? strdup("") : NULL;
        job_start(t, j);
    } else if (t->lock_fd >= 0) {
        close(t->lock_fd);
    }
    t->lock_fd = -1;
    t->chal_stored = false;
    t->after_release = next;
    t->state = S_RELEASE;
}

static void order_reset(struct order_task *t)
{
    req_reset(t);
    json_decref(t->authzs);
    t->authzs = NULL;
    free(t->chal_text);
    t->chal_text = NULL;
    EVP_PKEY_free(t->cert_key);
    t->cert_key = NULL;
    free(t->csr);
    t->csr = NULL;
    free(t->chain);
    t->chain = NULL;
    ferry_acme_material_free(t->issued);
    t->issued = NULL;
    ferry_acme_chal_clear(t->a, t->s);
}

static void on_failed(struct order_task *t)
{
    char names[1024];
    names_text(t->s, names, sizeof(names));
    ferry_log(FERRY_LOG_ERROR, "acme_failed", "acme=%s names=%s error=%s retry_s=%llu",
              t->s->acme, names, t->err, (unsigned long long)(t->retry_ms / 1000));
    ferry_acme_count(t->a, t->s->acme, false);
    pthread_mutex_lock(&t->s->lock);
    t->s->failed = true;
    t->s->ordering = false;
    snprintf(t->s->last_error, sizeof(t->s->last_error), "%s", t->err);
    pthread_mutex_unlock(&t->s->lock);
    order_reset(t);
    sleep_start(t, t->retry_ms);
    t->retry_ms = t->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : t->retry_ms * 2;
    start_release(t, S_WAIT);
}

static void on_issued(struct order_task *t)
{
    struct ferry_acme_material *m = t->issued;
    t->issued = NULL;
    char names[1024], na[32];
    names_text(t->s, names, sizeof(names));
    rfc3339(m->not_after, na, sizeof(na));
    int64_t at = ferry_acme_renew_at(t->s, m);
    pthread_mutex_lock(&t->s->lock);
    t->s->renew_at = at;
    t->s->failed = false;
    t->s->ordering = false;
    t->s->last_error[0] = '\0';
    pthread_mutex_unlock(&t->s->lock);
    ferry_acme_slot_publish(t->s, m);
    ferry_acme_count(t->a, t->s->acme, true);
    char ra[32];
    rfc3339(at, ra, sizeof(ra));
    ferry_log(FERRY_LOG_INFO, "acme_issued", "acme=%s names=%s not_after=%s renew_at=%s",
              t->s->acme, names, na, ra);
    t->retry_ms = t->a->retry_ms;
    order_reset(t);
}

/* One step; returns AC_PENDING to wait, AC_READY to go on with t->state. */
static ac_poll_t step(struct order_task *t, struct ac_context *cx)
{
    struct job *j = NULL;
    switch (t->state) {
    case S_LOAD:
        if (!t->job.base.vt) {
            struct job *nj = job_new(t, J_LOAD);
            if (!nj) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            job_start(t, nj);
        }
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        if (!j || j->err) {
            fail_msg(t, "%s", j ? j->why : "blocking pool unavailable");
            job_free(j);
            return AC_READY;
        }
        EVP_PKEY_free(t->account);
        t->account = j->key;
        j->key = NULL;
        SSL_CTX_free(t->ctx); /* fresh: a changed CA bundle counts at the next order */
        t->ctx = j->ctx;
        j->ctx = NULL;
        if (usable(t->s, j->m)) {
            serve_stored(t, j->m);
            j->m = NULL;
        }
        job_free(j);
        if (due(t)) {
            t->state = S_LOCK;
        } else {
            wait_for_renewal(t);
        }
        return AC_READY;
    case S_WAIT:
        if (sleep_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        t->state = S_LOAD; /* storage again: another instance may have renewed */
        return AC_READY;
    case S_LOCK:
        if (!t->job.base.vt) {
            struct job *nj = job_new(t, J_LOCK);
            if (!nj) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            job_start(t, nj);
        }
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        if (!j || (j->err && j->err != -EWOULDBLOCK)) {
            fail_msg(t, "%s", j ? j->why : "blocking pool unavailable");
            job_free(j);
            return AC_READY;
        }
        if (j->err == -EWOULDBLOCK) { /* another instance orders: wait for it */
            job_free(j);
            set_status(t, true);
            sleep_start(t, PEER_POLL_MS);
            t->state = S_PEER;
            return AC_READY;
        }
        t->lock_fd = j->fd;
        j->fd = -1;
        if (usable(t->s, j->m)) { /* it finished while we looked */
            serve_stored(t, j->m);
            j->m = NULL;
        }
        job_free(j);
        if (!due(t)) {
            ferry_acme_chal_clear(t->a, t->s);
            set_status(t, false);
            start_release(t, S_LOAD);
            return AC_READY;
        }
        set_status(t, true);
        {
            char names[1024];
            names_text(t->s, names, sizeof(names));
            ferry_log(FERRY_LOG_INFO, "acme_ordering", "acme=%s names=%s directory=%s",
                      t->s->acme, names, t->s->directory);
        }
        req_start(t, t->s->directory, false, NULL, false);
        t->state = S_DIRECTORY;
        return AC_READY;
    case S_PEER:
        if (!t->job.base.vt) {
            if (sleep_poll(t, cx) == AC_PENDING)
                return AC_PENDING;
            struct job *nj = job_new(t, J_PEER);
            if (!nj) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            job_start(t, nj);
        }
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        if (j && usable(t->s, j->m)) {
            serve_stored(t, j->m);
            j->m = NULL;
        }
        adopt_challenges(t, j ? j->text : NULL);
        job_free(j);
        if (!due(t)) { /* the other instance's certificate: ours too */
            ferry_acme_chal_clear(t->a, t->s);
            set_status(t, false);
            pthread_mutex_lock(&t->s->lock);
            t->s->failed = false;
            t->s->last_error[0] = '\0';
            pthread_mutex_unlock(&t->s->lock);
            wait_for_renewal(t);
        } else {
            t->state = S_LOCK; /* try to take over (the holder may be gone) */
        }
        return AC_READY;
    case S_DIRECTORY:
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200 || !copy_url(t->new_nonce, sizeof(t->new_nonce), t->req.json,
                                              "newNonce") ||
            !copy_url(t->new_account, sizeof(t->new_account), t->req.json, "newAccount") ||
            !copy_url(t->new_order, sizeof(t->new_order), t->req.json, "newOrder")) {
            problem(t, "directory");
            return AC_READY;
        }
        {
            json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
            if (p && t->s->email) {
                char mail[300];
                snprintf(mail, sizeof(mail), "mailto:%s", t->s->email);
                json_object_set_new(p, "contact", json_pack("[s]", mail));
            }
            if (p && t->s->eab_kid) {
                json_t *eab = ferry_acme_eab(t->account, t->s->eab_kid, t->s->eab_hmac_key,
                                             t->new_account);
                if (!eab) {
                    json_decref(p);
                    fail_msg(t, "cannot sign the external account binding (eab_hmac_key)");
                    return AC_READY;
                }
                json_object_set_new(p, "externalAccountBinding", eab);
            }
            req_start(t, t->new_account, true, p, true);
        }
        t->state = S_ACCOUNT;
        return AC_READY;
    case S_ACCOUNT:
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if ((t->req.status != 200 && t->req.status != 201) || !t->req.location[0]) {
            problem(t, "newAccount");
            return AC_READY;
        }
        free(t->kid);
        t->kid = strdup(t->req.location);
        req_start(t, t->new_order, true, json_pack("{s:o}", "identifiers", identifiers(t->s)),
                  false);
        t->state = S_NEW_ORDER;
        return AC_READY;
    case S_NEW_ORDER:
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 201 || !t->req.location[0] ||
            !copy_url(t->finalize_url, sizeof(t->finalize_url), t->req.json, "finalize") ||
            !json_is_array(json_object_get(t->req.json, "authorizations"))) {
            problem(t, "newOrder");
            return AC_READY;
        }
        snprintf(t->order_url, sizeof(t->order_url), "%s", t->req.location);
        json_decref(t->authzs);
        t->authzs = json_incref(json_object_get(t->req.json, "authorizations"));
        t->authz_i = 0;
        t->state = S_AUTHZ;
        req_reset(t);
        return AC_READY;
    case S_AUTHZ:
        if (!t->req_live) {
            if (t->authz_i == json_array_size(t->authzs)) {
                t->polls = 0;
                req_start(t, t->order_url, true, NULL, false);
                t->state = S_ORDER_READY;
                return AC_READY;
            }
            json_t *u = json_array_get(t->authzs, t->authz_i);
            if (!json_is_string(u)) {
                fail_msg(t, "malformed order from %s", t->order_url);
                return AC_READY;
            }
            req_start(t, json_string_value(u), true, NULL, false);
        }
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200) {
            problem(t, "authorization");
            return AC_READY;
        }
        if (strcmp(status_of(t->req.json), "valid") == 0) {
            t->authz_i++;
            req_reset(t);
            return AC_READY;
        }
        if (strcmp(status_of(t->req.json), "pending") != 0) {
            fail_msg(t, "authorization %s is %s", t->req.url, status_of(t->req.json));
            return AC_READY;
        }
        {
            json_t *ch = alpn_challenge(t->req.json);
            if (!ch) {
                fail_msg(t, "the server offers no tls-alpn-01 challenge for %s", t->req.url);
                return AC_READY;
            }
            if (!publish_challenge(t, t->req.json, ch))
                return AC_READY;
        }
        req_reset(t);
        t->state = S_CHAL_STORE;
        return AC_READY;
    case S_CHAL_STORE:
        /* Into storage, so every instance sharing it answers the challenge. */
        if (!t->job.base.vt) {
            struct job *nj = job_new(t, J_CHAL);
            if (!nj || !(nj->text = strdup(t->chal_text ? t->chal_text : ""))) {
                job_free(nj);
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            job_start(t, nj);
        }
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        t->chal_stored = true;
        if (!j || j->err)
            ferry_log(FERRY_LOG_WARN, "acme_storage_failed", "acme=%s error=%s", t->s->acme,
                      j ? j->why : "blocking pool unavailable");
        job_free(j);
        sleep_start(t, CHAL_SHARE_MS);
        t->state = S_CHAL_POST;
        return AC_READY;
    case S_CHAL_POST:
        if (!t->req_live) {
            if (sleep_poll(t, cx) == AC_PENDING)
                return AC_PENDING;
            req_start(t, t->chal_url, true, json_object(), false);
        }
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200) {
            problem(t, "challenge");
            return AC_READY;
        }
        t->polls = 0;
        sleep_start(t, 1000);
        req_reset(t);
        t->state = S_AUTHZ_POLL;
        return AC_READY;
    case S_AUTHZ_POLL:
        if (!t->req_live) {
            if (sleep_poll(t, cx) == AC_PENDING)
                return AC_PENDING;
            req_start(t, json_string_value(json_array_get(t->authzs, t->authz_i)), true, NULL,
                      false);
        }
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200) {
            problem(t, "authorization");
            return AC_READY;
        }
        {
            const char *st = status_of(t->req.json);
            if (strcmp(st, "valid") == 0) {
                t->authz_i++;
                req_reset(t);
                t->state = S_AUTHZ;
            } else if (strcmp(st, "invalid") == 0) {
                const char *detail = NULL, *type = NULL;
                json_t *ch = alpn_challenge(t->req.json);
                json_unpack(ch ? ch : t->req.json, "{s:{s?s, s?s}}", "error", "type", &type,
                            "detail", &detail);
                if (type && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0)
                    type += 27;
                fail_msg(t, "authorization failed: %s%s%s", type ? type : "invalid",
                         detail ? ": " : "", detail ? detail : "");
            } else if (++t->polls > POLLS_MAX) {
                fail_msg(t, "authorization still %s after %u polls", st, POLLS_MAX);
            } else {
                unsigned ra = t->req.retry_after_s;
                sleep_start(t, ra ? (ra > 60 ? 60000 : ra * 1000) : 1000);
                req_reset(t);
            }
        }
        return AC_READY;
    case S_ORDER_READY:
    case S_ORDER_VALID:
        if (!t->req_live) {
            if (sleep_poll(t, cx) == AC_PENDING)
                return AC_PENDING;
            req_start(t, t->order_url, true, NULL, false);
        }
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200) {
            problem(t, "order");
            return AC_READY;
        }
        {
            const char *st = status_of(t->req.json);
            bool ready = strcmp(st, "ready") == 0, valid = strcmp(st, "valid") == 0;
            if (valid) {
                if (!copy_url(t->cert_url, sizeof(t->cert_url), t->req.json, "certificate")) {
                    fail_msg(t, "order %s is valid without a certificate", t->order_url);
                    return AC_READY;
                }
                req_start(t, t->cert_url, true, NULL, false);
                t->state = S_CERT;
            } else if (ready && t->state == S_ORDER_READY) {
                req_reset(t);
                t->state = S_CSR;
            } else if (strcmp(st, "invalid") == 0) {
                problem(t, "order invalid");
            } else if (++t->polls > POLLS_MAX) {
                fail_msg(t, "order still %s after %u polls", st, POLLS_MAX);
            } else {
                unsigned ra = t->req.retry_after_s;
                sleep_start(t, ra ? (ra > 60 ? 60000 : ra * 1000) : 1000);
                req_reset(t);
            }
        }
        return AC_READY;
    case S_CSR:
        if (!t->job.base.vt) {
            struct job *nj = job_new(t, J_CSR);
            if (!nj) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            job_start(t, nj);
        }
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        if (!j || j->err) {
            fail_msg(t, "%s", j ? j->why : "blocking pool unavailable");
            job_free(j);
            return AC_READY;
        }
        EVP_PKEY_free(t->cert_key);
        t->cert_key = j->key;
        j->key = NULL;
        {
            char *csr = ferry_acme_b64url(j->csr, j->csr_len);
            job_free(j);
            json_t *p = csr ? json_pack("{s:s}", "csr", csr) : NULL;
            free(csr);
            if (!p) {
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            req_start(t, t->finalize_url, true, p, false);
        }
        t->state = S_FINALIZE;
        return AC_READY;
    case S_FINALIZE:
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200) {
            problem(t, "finalize");
            return AC_READY;
        }
        t->polls = 0;
        req_reset(t);
        sleep_start(t, 0);
        t->state = S_ORDER_VALID;
        return AC_READY;
    case S_CERT:
        if (req_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (t->state == S_FAILED)
            return AC_READY;
        if (t->req.status != 200 || !t->req.body) {
            problem(t, "certificate");
            return AC_READY;
        }
        {
            const char *why = "";
            t->issued = ferry_acme_material_from_pem(t->req.body, strlen(t->req.body),
                                                     t->cert_key, &why);
            if (!t->issued) {
                fail_msg(t, "certificate from %s: %s", t->cert_url, why);
                return AC_READY;
            }
            if (!ferry_acme_material_covers(t->issued, t->s->names, t->s->nnames)) {
                fail_msg(t, "certificate from %s lacks a name of the order", t->cert_url);
                return AC_READY;
            }
            struct job *nj = job_new(t, J_SAVE);
            if (!nj || !(nj->text = strdup(t->req.body))) {
                job_free(nj);
                fail_msg(t, "out of memory");
                return AC_READY;
            }
            EVP_PKEY_up_ref(t->cert_key);
            nj->key = t->cert_key;
            job_start(t, nj);
        }
        req_reset(t);
        t->state = S_SAVE;
        return AC_READY;
    case S_SAVE:
        if (job_poll(t, cx, &j) == AC_PENDING)
            return AC_PENDING;
        if (!j || j->err) {
            /* Served anyway: a storage failure must not keep a good certificate away. */
            ferry_log(FERRY_LOG_WARN, "acme_storage_failed", "acme=%s error=%s", t->s->acme,
                      j ? j->why : "blocking pool unavailable");
        }
        job_free(j);
        on_issued(t);
        start_release(t, S_LOAD);
        return AC_READY;
    case S_RELEASE:
        if (t->job.base.vt) {
            if (job_poll(t, cx, &j) == AC_PENDING)
                return AC_PENDING;
            job_free(j);
        }
        if (t->after_release == S_WAIT && !t->sleep.base.vt)
            sleep_start(t, 0);
        t->state = (enum state)t->after_release;
        return AC_READY;
    case S_FAILED:
        on_failed(t);
        return AC_READY;
    }
    return AC_READY;
}

static bool should_stop(struct order_task *t, struct ac_context *cx)
{
    pthread_mutex_lock(&t->s->lock);
    bool stop = t->s->stop;
    if (!stop)
        ac_waker_register(&t->s->waker, cx->waker);
    pthread_mutex_unlock(&t->s->lock);
    return stop;
}

static ac_poll_t order_poll(struct ac_future *f, struct ac_context *cx)
{
    struct order_task *t = (struct order_task *)f;
    for (unsigned i = 0; i < 64; i++) {
        if (should_stop(t, cx))
            return AC_READY;
        if (step(t, cx) == AC_PENDING)
            return AC_PENDING;
    }
    ac_waker_wake_by_ref(cx->waker); /* many steps at once: let others run */
    return AC_PENDING;
}

static void order_drop(struct ac_future *f)
{
    struct order_task *t = (struct order_task *)f;
    ac_future_drop(&t->job.base); /* a running job finishes and frees itself */
    ac_future_drop(&t->sleep.base);
    req_reset(t);
    struct res_cell *c = cell_of(t);
    if (c) {
        pthread_mutex_lock(&c->lock);
        c->t = NULL;
        pthread_mutex_unlock(&c->lock);
        res_cell_unref(c);
    }
    pthread_mutex_lock(&t->s->lock);
    bool registered = t->s->owner != NULL;
    t->s->running = false;
    pthread_mutex_unlock(&t->s->lock);
    if (registered)
        ferry_acme_chal_clear(t->a, t->s);
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    json_decref(t->authzs);
    free(t->chal_text);
    EVP_PKEY_free(t->cert_key);
    free(t->csr);
    free(t->chain);
    ferry_acme_material_free(t->issued);
    EVP_PKEY_free(t->account);
    free(t->kid);
    free(t->nonce);
    SSL_CTX_free(t->ctx);
    ac_waker_drop(&t->res_waker);
    pthread_mutex_destroy(&t->res_lock);
    ferry_acme_slot_unref(t->s);
}

static void order_dealloc(struct ac_future *f)
{
    free(f);
}

static const struct ac_future_vtable order_vt = {order_poll, order_drop};

int ferry_acme_order_start(struct ferry_acme_reg *a, struct ferry_acme_slot *s)
{
    struct order_task *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->base.vt = &order_vt;
    t->a = a;
    t->s = ferry_acme_slot_ref(s);
    t->state = S_LOAD;
    t->lock_fd = -1;
    t->retry_ms = a->retry_ms;
    pthread_mutex_init(&t->res_lock, NULL);
    return ac_spawn(a->w, &t->base, order_dealloc);
}

/* ferryd ACME: the task of one certificate slot (RFC 8555 7, RFC 8737).
 *
 *   LOAD      storage: account key (made once), the stored certificate;
 *             a good one is served and the task sleeps until its renew_at
 *   LOCK      take NAME.lock in storage; held by another instance: PEER,
 *             answering its challenges (NAME.challenges) until its
 *             certificate appears in storage (or the lock is free)
 *   DIRECTORY GET the directory; ACCOUNT newAccount (the key's JWK, EAB)
 *   RESUME    an order left in flight in storage by a process that held the
 *             lock before (restart, upgrade) is taken up where it is
 *   NEW_ORDER newOrder for the names (its URL kept in storage: ORDER_STORE);
 *             AUTHZ reads each authorization and
 *             publishes the tls-alpn-01 challenge certificate of each pending
 *             one; CHAL_STORE writes them to storage and gives the instances
 *             sharing it time to pick them up; CHAL_POST answers each
 *             challenge; AUTHZ_POLL polls each authorization until valid
 *   ORDER_READY, CSR, FINALIZE, ORDER_VALID, CERT: a new key and its CSR
 *             (blocking pool), finalize, the order polled until valid, the
 *             chain downloaded
 *   SAVE      key and chain stored (0600), then served at once; RELEASE the
 *             lock and the challenges file
 *
 * A failure at any step (FAILED) is logged (msg=acme_failed with the
 * server's problem detail), counted, and retried after FERRY_ACME_RETRY_MS
 * (1 minute), doubling up to an hour; the certificate in use stays. HTTPS
 * goes through session.c on this task's loop; files and key generation
 * through jobs.c on the blocking pool. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme_int.h"
#include "acme/challenge.h"
#include "acme/jobs.h"
#include "acme/jws.h"
#include "acme/session.h"
#include "asynccore/runtime.h"
#include "asynccore/timer.h"
#include "log/log.h"

#define RETRY_MAX_MS (3600u * 1000u)
#define PEER_POLL_MS 500             /* waiting for another instance's order */
/* After the challenges went to storage and before the CA is told to
 * validate: time for instances sharing the storage to pick them up. */
#define CHAL_SHARE_MS (4 * PEER_POLL_MS)
#define SLEEP_MAX_MS (3600u * 1000u) /* long sleeps are cut: the wall clock may jump */
#define POLLS_MAX 300                /* authorization / order polls before giving up */
#define STEPS_PER_POLL 64

enum state {
    S_LOAD, S_WAIT, S_LOCK, S_PEER, S_DIRECTORY, S_ACCOUNT, S_RESUME, S_NEW_ORDER,
    S_ORDER_STORE, S_AUTHZ,
    S_CHAL_STORE, S_CHAL_POST, S_AUTHZ_POLL, S_ORDER_READY, S_CSR, S_FINALIZE, S_ORDER_VALID,
    S_CERT, S_SAVE, S_RELEASE, S_FAILED, S_COUNT
};

struct order_task {
    struct ac_future base;
    struct ferry_acme_reg *a;
    struct ferry_acme_slot *s;
    enum state state;
    enum state after_release;
    struct ferry_acme_session ss;
    char new_account[1024], new_order[1024];
    char order_url[1024], finalize_url[1024], cert_url[1024];
    char resume_url[1024];         /* an order left in flight in storage ("": none) */
    json_t *authzs;
    json_t *chal_urls;             /* per authorization: its challenge's URL, or null */
    size_t authz_i;
    unsigned polls;
    char *chal_text;               /* "NAME KEYAUTH" lines of this order */
    bool chal_stored;
    EVP_PKEY *cert_key;
    struct ferry_acme_material *issued;
    int lock_fd;
    struct ac_blocking job;        /* vt NULL: none */
    struct ac_sleep sleep;         /* vt NULL: none */
    uint64_t retry_ms;
    char err[600];
};

/* ---- helpers ---- */

static int64_t now_unix(void)
{
    return (int64_t)time(NULL);
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

static ac_poll_t fail(struct order_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static ac_poll_t fail(struct order_task *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
    t->state = S_FAILED;
    return AC_READY;
}

/* An error answer of the server: its problem document. */
static ac_poll_t problem(struct order_task *t, const char *what)
{
    ferry_acme_problem(&t->ss, what, t->err, sizeof(t->err));
    t->state = S_FAILED;
    return AC_READY;
}

static void set_ordering(struct order_task *t, bool ordering)
{
    pthread_mutex_lock(&t->s->lock);
    t->s->ordering = ordering;
    pthread_mutex_unlock(&t->s->lock);
}

static void sleep_start(struct order_task *t, uint64_t ms)
{
    ac_future_drop(&t->sleep.base);
    ac_sleep_init(&t->sleep, ms > SLEEP_MAX_MS ? SLEEP_MAX_MS : ms);
}

static ac_poll_t sleep_poll(struct order_task *t, struct ac_context *cx)
{
    if (t->sleep.base.vt && ac_future_poll(&t->sleep.base, cx) == AC_PENDING)
        return AC_PENDING;
    ac_future_drop(&t->sleep.base);
    return AC_READY;
}

/* Starts a job of this kind unless one runs; false when out of memory. */
static bool job_begin(struct order_task *t, enum ferry_acme_job_kind kind)
{
    if (t->job.base.vt)
        return true;
    struct ferry_acme_job *j = ferry_acme_job_new(t->s, kind);
    if (j)
        ferry_acme_job_start(&t->job, t->a->rt, j);
    return j != NULL;
}

/* The request's outcome: AC_PENDING, or AC_READY with *ok (when false,
 * t->state is S_FAILED with the reason). */
static ac_poll_t request(struct order_task *t, struct ac_context *cx, bool *ok)
{
    if (ferry_acme_req_poll(&t->ss, cx, ok) == AC_PENDING)
        return AC_PENDING;
    if (!*ok)
        fail(t, "%s", t->ss.err);
    return AC_READY;
}

static bool usable(const struct ferry_acme_slot *s, const struct ferry_acme_material *m)
{
    return m && ferry_acme_material_covers(m, s->names, s->nnames) && m->not_after > now_unix();
}

/* A usable certificate from storage: served when it is not the one in use. */
static void serve_stored(struct order_task *t, struct ferry_acme_material *m)
{
    struct ferry_acme_material *cur = atomic_load(&t->s->cur);
    if (cur && X509_cmp(cur->leaf, m->leaf) == 0) {
        ferry_acme_material_free(m);
        return;
    }
    int64_t at = ferry_acme_renew_at(t->s, m);
    pthread_mutex_lock(&t->s->lock);
    t->s->renew_at = at;
    pthread_mutex_unlock(&t->s->lock);
    ferry_acme_slot_publish(t->s, m);
}

/* No certificate, or it is time to renew it. */
static bool due(struct order_task *t)
{
    struct ferry_acme_material *cur = atomic_load(&t->s->cur);
    pthread_mutex_lock(&t->s->lock);
    int64_t at = t->s->renew_at;
    pthread_mutex_unlock(&t->s->lock);
    return !usable(t->s, cur) || now_unix() >= at;
}

static ac_poll_t wait_for_renewal(struct order_task *t)
{
    pthread_mutex_lock(&t->s->lock);
    int64_t at = t->s->renew_at;
    pthread_mutex_unlock(&t->s->lock);
    int64_t s = at - now_unix();
    sleep_start(t, s > 0 ? (uint64_t)s * 1000 : 0);
    t->state = S_WAIT;
    return AC_READY;
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

/* The next poll of an authorization or order, after Retry-After (at most a
 * minute) or a second. */
static void poll_later(struct order_task *t)
{
    unsigned ra = t->ss.req.retry_after_s;
    sleep_start(t, ra ? (ra > 60 ? 60000 : ra * 1000) : 1000);
    ferry_acme_req_reset(&t->ss);
}

/* ---- challenges ---- */

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

/* Publishes the challenge certificate of the authorization just read and
 * keeps its line for the storage file and its URL. */
static ac_poll_t publish_challenge(struct order_task *t)
{
    json_t *authz = t->ss.req.json, *ch = alpn_challenge(authz);
    const char *name = NULL, *token = NULL, *url = NULL;
    if (!ch)
        return fail(t, "the server offers no tls-alpn-01 challenge for %s", t->ss.req.url);
    if (json_unpack(authz, "{s:{s:s}}", "identifier", "value", &name) < 0 ||
        json_unpack(ch, "{s:s, s:s}", "token", &token, "url", &url) < 0)
        return fail(t, "malformed authorization from %s", t->ss.req.url);
    /* Already answered (an order taken up after a restart): served, polled,
     * not answered again. */
    if (strcmp(status_of(ch), "processing") == 0)
        url = "";
    if (json_array_set_new(t->chal_urls, t->authz_i, json_string(url)) < 0)
        return fail(t, "malformed authorization from %s", t->ss.req.url);
    char *keyauth = ferry_acme_key_authorization(t->ss.account, token);
    struct ferry_acme_material *m = keyauth ? ferry_acme_challenge_material(name, keyauth) : NULL;
    size_t old = t->chal_text ? strlen(t->chal_text) : 0;
    size_t n = old + strlen(name) + (keyauth ? strlen(keyauth) : 0) + 3;
    char *text = m ? realloc(t->chal_text, n) : NULL;
    if (!text || ferry_acme_chal_put(t->a, t->s, name, m) < 0) {
        if (!text)
            ferry_acme_material_free(m);
        free(keyauth);
        return fail(t, "cannot make the challenge certificate for %s", name);
    }
    snprintf(text + old, n - old, "%s %s\n", name, keyauth);
    t->chal_text = text;
    free(keyauth);
    ferry_acme_req_reset(&t->ss);
    t->authz_i++;
    return AC_READY;
}

/* Another instance's challenges (from storage): answered here too. */
static void adopt_challenges(struct order_task *t, const char *text)
{
    ferry_acme_chal_clear(t->a, t->s);
    while (text && *text) {
        char name[256], keyauth[512];
        struct ferry_acme_material *m = NULL;
        if (sscanf(text, "%255s %511s", name, keyauth) == 2 &&
            (m = ferry_acme_challenge_material(name, keyauth)))
            ferry_acme_chal_put(t->a, t->s, name, m);
        const char *nl = strchr(text, '\n');
        text = nl ? nl + 1 : NULL;
    }
}

/* ---- ends of an order ---- */

static void start_release(struct order_task *t, enum state next)
{
    struct ferry_acme_job *j = ferry_acme_job_new(t->s, FERRY_ACME_J_RELEASE);
    if (j) {
        j->fd = t->lock_fd;
        j->text = t->chal_stored ? strdup("") : NULL;
        ferry_acme_job_start(&t->job, t->a->rt, j);
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
    ferry_acme_req_reset(&t->ss);
    json_decref(t->authzs);
    json_decref(t->chal_urls);
    t->authzs = t->chal_urls = NULL;
    free(t->chal_text);
    t->chal_text = NULL;
    EVP_PKEY_free(t->cert_key);
    t->cert_key = NULL;
    ferry_acme_material_free(t->issued);
    t->issued = NULL;
    t->resume_url[0] = '\0';
    ferry_acme_chal_clear(t->a, t->s);
}

static ac_poll_t st_failed(struct order_task *t, struct ac_context *cx)
{
    (void)cx;
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
    return AC_READY;
}

static void issued(struct order_task *t)
{
    struct ferry_acme_material *m = t->issued;
    t->issued = NULL;
    char names[1024], na[32], ra[32];
    names_text(t->s, names, sizeof(names));
    int64_t at = ferry_acme_renew_at(t->s, m);
    rfc3339(m->not_after, na, sizeof(na));
    rfc3339(at, ra, sizeof(ra));
    pthread_mutex_lock(&t->s->lock);
    t->s->renew_at = at;
    t->s->failed = false;
    t->s->ordering = false;
    t->s->last_error[0] = '\0';
    pthread_mutex_unlock(&t->s->lock);
    ferry_acme_slot_publish(t->s, m);
    ferry_acme_count(t->a, t->s->acme, true);
    ferry_log(FERRY_LOG_INFO, "acme_issued", "acme=%s names=%s not_after=%s renew_at=%s",
              t->s->acme, names, na, ra);
    t->retry_ms = t->a->retry_ms;
    order_reset(t);
}

/* ---- storage and the lock ---- */

static ac_poll_t st_load(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (!job_begin(t, FERRY_ACME_J_LOAD))
        return fail(t, "out of memory");
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (!j || j->err) {
        fail(t, "%s", j ? j->why : "blocking pool unavailable");
        ferry_acme_job_free(j);
        return AC_READY;
    }
    EVP_PKEY_free(t->ss.account);
    t->ss.account = j->key, j->key = NULL;
    SSL_CTX_free(t->ss.ctx); /* fresh: a changed CA bundle counts at the next order */
    t->ss.ctx = j->ctx, j->ctx = NULL;
    if (j->m)
        serve_stored(t, j->m), j->m = NULL;
    ferry_acme_job_free(j);
    if (!due(t))
        return wait_for_renewal(t);
    t->state = S_LOCK;
    return AC_READY;
}

static ac_poll_t st_wait(struct order_task *t, struct ac_context *cx)
{
    if (sleep_poll(t, cx) == AC_PENDING)
        return AC_PENDING;
    t->state = S_LOAD; /* storage again: another instance may have renewed */
    return AC_READY;
}

static ac_poll_t begin_order(struct order_task *t)
{
    char names[1024];
    names_text(t->s, names, sizeof(names));
    set_ordering(t, true);
    ferry_log(FERRY_LOG_INFO, "acme_ordering", "acme=%s names=%s directory=%s", t->s->acme,
              names, t->s->directory);
    ferry_acme_req_start(&t->ss, t->s->directory, false, NULL, false);
    t->state = S_DIRECTORY;
    return AC_READY;
}

static ac_poll_t st_lock(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (!job_begin(t, FERRY_ACME_J_LOCK))
        return fail(t, "out of memory");
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (!j || (j->err && j->err != -EWOULDBLOCK)) {
        fail(t, "%s", j ? j->why : "blocking pool unavailable");
        ferry_acme_job_free(j);
        return AC_READY;
    }
    if (j->err == -EWOULDBLOCK) { /* another instance orders: wait for it */
        ferry_acme_job_free(j);
        set_ordering(t, true);
        sleep_start(t, PEER_POLL_MS);
        t->state = S_PEER;
        return AC_READY;
    }
    t->lock_fd = j->fd, j->fd = -1;
    if (j->m) /* it finished while we looked */
        serve_stored(t, j->m), j->m = NULL;
    if (j->text && strlen(j->text) < sizeof(t->resume_url)) { /* an order left in flight */
        snprintf(t->resume_url, sizeof(t->resume_url), "%s", j->text);
        EVP_PKEY_free(t->cert_key);
        t->cert_key = j->key, j->key = NULL;
    }
    ferry_acme_job_free(j);
    if (due(t))
        return begin_order(t);
    ferry_acme_chal_clear(t->a, t->s);
    set_ordering(t, false);
    start_release(t, S_LOAD);
    return AC_READY;
}

static ac_poll_t st_peer(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (!t->job.base.vt && sleep_poll(t, cx) == AC_PENDING)
        return AC_PENDING;
    if (!job_begin(t, FERRY_ACME_J_PEER))
        return fail(t, "out of memory");
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (j && j->m)
        serve_stored(t, j->m), j->m = NULL;
    adopt_challenges(t, j ? j->text : NULL);
    ferry_acme_job_free(j);
    if (due(t)) {
        t->state = S_LOCK; /* try to take over (the holder may be gone) */
        return AC_READY;
    }
    /* The other instance's certificate is ours too. */
    ferry_acme_chal_clear(t->a, t->s);
    pthread_mutex_lock(&t->s->lock);
    t->s->ordering = t->s->failed = false;
    t->s->last_error[0] = '\0';
    pthread_mutex_unlock(&t->s->lock);
    return wait_for_renewal(t);
}

/* ---- account and order ---- */

static ac_poll_t st_directory(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    json_t *dir = t->ss.req.json;
    if (t->ss.req.status != 200 || !copy_url(t->ss.new_nonce, sizeof(t->ss.new_nonce), dir,
                                             "newNonce") ||
        !copy_url(t->new_account, sizeof(t->new_account), dir, "newAccount") ||
        !copy_url(t->new_order, sizeof(t->new_order), dir, "newOrder"))
        return problem(t, "directory");
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (p && t->s->email) {
        char mail[300];
        snprintf(mail, sizeof(mail), "mailto:%s", t->s->email);
        json_object_set_new(p, "contact", json_pack("[s]", mail));
    }
    if (p && t->s->eab_kid) {
        json_t *eab = ferry_acme_eab(t->ss.account, t->s->eab_kid, t->s->eab_hmac_key,
                                     t->new_account);
        if (!eab) {
            json_decref(p);
            return fail(t, "cannot sign the external account binding (eab_hmac_key)");
        }
        json_object_set_new(p, "externalAccountBinding", eab);
    }
    ferry_acme_req_start(&t->ss, t->new_account, true, p, true);
    t->state = S_ACCOUNT;
    return AC_READY;
}

static json_t *identifiers(const struct ferry_acme_slot *s)
{
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < s->nnames; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", s->names[i]));
    return ids;
}

static ac_poll_t new_order(struct order_task *t)
{
    ferry_acme_req_start(&t->ss, t->new_order, true,
                         json_pack("{s:o}", "identifiers", identifiers(t->s)), false);
    t->state = S_NEW_ORDER;
    return AC_READY;
}

static ac_poll_t st_account(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if ((t->ss.req.status != 200 && t->ss.req.status != 201) || !t->ss.req.location[0])
        return problem(t, "newAccount");
    free(t->ss.kid);
    t->ss.kid = strdup(t->ss.req.location);
    if (t->resume_url[0]) {
        ferry_acme_req_start(&t->ss, t->resume_url, true, NULL, false);
        t->state = S_RESUME;
        return AC_READY;
    }
    return new_order(t);
}

/* The order's URLs and authorizations from its JSON (t->ss.req.json). */
static bool take_order(struct order_task *t, const char *url)
{
    json_t *o = t->ss.req.json;
    if (!copy_url(t->finalize_url, sizeof(t->finalize_url), o, "finalize") ||
        !json_is_array(json_object_get(o, "authorizations")))
        return false;
    snprintf(t->order_url, sizeof(t->order_url), "%s", url);
    json_decref(t->authzs);
    json_decref(t->chal_urls);
    t->authzs = json_incref(json_object_get(o, "authorizations"));
    t->chal_urls = json_array();
    for (size_t i = 0; t->chal_urls && i < json_array_size(t->authzs); i++)
        json_array_append_new(t->chal_urls, json_null());
    t->authz_i = 0;
    return t->chal_urls != NULL;
}

/* An order another process left in flight: on from where it is, or a new
 * one when it cannot go on (invalid, expired, gone, finalized without the
 * key at hand). */
static ac_poll_t st_resume(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    const char *st = status_of(t->ss.req.json);
    bool later = strcmp(st, "processing") == 0 || strcmp(st, "valid") == 0;
    if (t->ss.req.status != 200 || !take_order(t, t->resume_url) ||
        (strcmp(st, "pending") != 0 && strcmp(st, "ready") != 0 && !later) ||
        (later && !t->cert_key)) {
        t->resume_url[0] = '\0';
        return new_order(t);
    }
    char names[1024];
    names_text(t->s, names, sizeof(names));
    ferry_log(FERRY_LOG_INFO, "acme_resumed", "acme=%s names=%s order=%s status=%s", t->s->acme,
              names, t->order_url, st);
    t->polls = 0;
    t->state = later ? S_ORDER_VALID : strcmp(st, "ready") == 0 ? S_CSR : S_AUTHZ;
    ferry_acme_req_reset(&t->ss); /* st points into the answer: last */
    return AC_READY;
}

static ac_poll_t st_new_order(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 201 || !t->ss.req.location[0] ||
        !take_order(t, t->ss.req.location))
        return problem(t, "newOrder");
    ferry_acme_req_reset(&t->ss);
    struct ferry_acme_job *j = ferry_acme_job_new(t->s, FERRY_ACME_J_ORDER);
    if (!j || !(j->text = strdup(t->order_url))) {
        ferry_acme_job_free(j);
        return fail(t, "out of memory");
    }
    ferry_acme_job_start(&t->job, t->a->rt, j);
    t->state = S_ORDER_STORE;
    return AC_READY;
}

/* The order's URL in storage, for whoever holds the lock next. */
static ac_poll_t st_order_store(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (!j || j->err)
        ferry_log(FERRY_LOG_WARN, "acme_storage_failed", "acme=%s error=%s", t->s->acme,
                  j ? j->why : "blocking pool unavailable");
    ferry_acme_job_free(j);
    t->state = S_AUTHZ;
    return AC_READY;
}

/* ---- authorizations ---- */

static const char *authz_url(struct order_task *t)
{
    json_t *u = json_array_get(t->authzs, t->authz_i);
    return json_is_string(u) ? json_string_value(u) : NULL;
}

static ac_poll_t st_authz(struct order_task *t, struct ac_context *cx)
{
    if (!t->ss.req_live) {
        if (t->authz_i == json_array_size(t->authzs)) {
            t->authz_i = 0;
            if (t->chal_text) { /* challenges to answer */
                t->state = S_CHAL_STORE;
                return AC_READY;
            }
            t->polls = 0; /* every authorization was valid already */
            ferry_acme_req_start(&t->ss, t->order_url, true, NULL, false);
            t->state = S_ORDER_READY;
            return AC_READY;
        }
        if (!authz_url(t))
            return fail(t, "malformed order from %s", t->order_url);
        ferry_acme_req_start(&t->ss, authz_url(t), true, NULL, false);
    }
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 200)
        return problem(t, "authorization");
    const char *st = status_of(t->ss.req.json);
    if (strcmp(st, "valid") == 0) { /* reused: nothing to answer */
        t->authz_i++;
        ferry_acme_req_reset(&t->ss);
        return AC_READY;
    }
    if (strcmp(st, "pending") != 0)
        return fail(t, "authorization %s is %s", t->ss.req.url, st);
    return publish_challenge(t);
}

/* Into storage, so every instance sharing it answers the challenge. */
static ac_poll_t st_chal_store(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (!t->job.base.vt) {
        j = ferry_acme_job_new(t->s, FERRY_ACME_J_CHAL);
        if (!j || !(j->text = strdup(t->chal_text ? t->chal_text : ""))) {
            ferry_acme_job_free(j);
            return fail(t, "out of memory");
        }
        ferry_acme_job_start(&t->job, t->a->rt, j);
    }
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    t->chal_stored = true;
    if (!j || j->err)
        ferry_log(FERRY_LOG_WARN, "acme_storage_failed", "acme=%s error=%s", t->s->acme,
                  j ? j->why : "blocking pool unavailable");
    ferry_acme_job_free(j);
    sleep_start(t, CHAL_SHARE_MS);
    t->state = S_CHAL_POST;
    return AC_READY;
}

/* The challenge URL of authorization i, NULL when it needs none ("" when
 * it was answered already). */
static const char *chal_url(struct order_task *t, size_t i)
{
    json_t *u = json_array_get(t->chal_urls, i);
    return json_is_string(u) ? json_string_value(u) : NULL;
}

/* Each pending authorization's challenge answered ("{}"), in turn. */
static ac_poll_t st_chal_post(struct order_task *t, struct ac_context *cx)
{
    if (!t->ss.req_live) {
        if (sleep_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        while (t->authz_i < json_array_size(t->chal_urls) &&
               (!chal_url(t, t->authz_i) || !*chal_url(t, t->authz_i)))
            t->authz_i++;
        if (t->authz_i == json_array_size(t->chal_urls)) {
            t->authz_i = t->polls = 0;
            t->state = S_AUTHZ_POLL;
            return AC_READY;
        }
        ferry_acme_req_start(&t->ss, chal_url(t, t->authz_i), true, json_object(), false);
    }
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 200)
        return problem(t, "challenge");
    t->authz_i++;
    ferry_acme_req_reset(&t->ss);
    return AC_READY;
}

static ac_poll_t authz_invalid(struct order_task *t)
{
    const char *detail = NULL, *type = NULL;
    json_t *ch = alpn_challenge(t->ss.req.json);
    json_unpack(ch ? ch : t->ss.req.json, "{s:{s?s, s?s}}", "error", "type", &type, "detail",
                &detail);
    if (type && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0)
        type += 27;
    return fail(t, "authorization failed: %s%s%s", type ? type : "invalid", detail ? ": " : "",
                detail ? detail : "");
}

/* Each answered authorization polled until it is valid, in turn. */
static ac_poll_t st_authz_poll(struct order_task *t, struct ac_context *cx)
{
    if (!t->ss.req_live) {
        while (t->authz_i < json_array_size(t->chal_urls) && !chal_url(t, t->authz_i))
            t->authz_i++;
        if (t->authz_i == json_array_size(t->chal_urls)) {
            t->polls = 0;
            ferry_acme_req_start(&t->ss, t->order_url, true, NULL, false);
            t->state = S_ORDER_READY;
            return AC_READY;
        }
        if (sleep_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        ferry_acme_req_start(&t->ss, authz_url(t), true, NULL, false);
    }
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 200)
        return problem(t, "authorization");
    const char *st = status_of(t->ss.req.json);
    if (strcmp(st, "invalid") == 0)
        return authz_invalid(t);
    if (strcmp(st, "valid") == 0) {
        t->authz_i++;
        ferry_acme_req_reset(&t->ss);
    } else if (++t->polls > POLLS_MAX) {
        return fail(t, "authorization still %s after %u polls", st, POLLS_MAX);
    } else {
        poll_later(t);
    }
    return AC_READY;
}

/* ---- finalize and download ---- */

/* ORDER_READY waits for "ready" (then CSR), ORDER_VALID for "valid". */
static ac_poll_t st_order_poll(struct order_task *t, struct ac_context *cx)
{
    if (!t->ss.req_live) {
        if (sleep_poll(t, cx) == AC_PENDING)
            return AC_PENDING;
        ferry_acme_req_start(&t->ss, t->order_url, true, NULL, false);
    }
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 200)
        return problem(t, "order");
    const char *st = status_of(t->ss.req.json);
    if (strcmp(st, "valid") == 0) {
        if (!copy_url(t->cert_url, sizeof(t->cert_url), t->ss.req.json, "certificate"))
            return fail(t, "order %s is valid without a certificate", t->order_url);
        ferry_acme_req_start(&t->ss, t->cert_url, true, NULL, false);
        t->state = S_CERT;
    } else if (strcmp(st, "ready") == 0 && t->state == S_ORDER_READY) {
        ferry_acme_req_reset(&t->ss);
        t->state = S_CSR;
    } else if (strcmp(st, "invalid") == 0) {
        return problem(t, "order invalid");
    } else if (++t->polls > POLLS_MAX) {
        return fail(t, "order still %s after %u polls", st, POLLS_MAX);
    } else {
        poll_later(t);
    }
    return AC_READY;
}

static ac_poll_t st_csr(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (!job_begin(t, FERRY_ACME_J_CSR))
        return fail(t, "out of memory");
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (!j || j->err) {
        fail(t, "%s", j ? j->why : "blocking pool unavailable");
        ferry_acme_job_free(j);
        return AC_READY;
    }
    EVP_PKEY_free(t->cert_key);
    t->cert_key = j->key, j->key = NULL;
    char *csr = ferry_acme_b64url(j->csr, j->csr_len);
    ferry_acme_job_free(j);
    json_t *p = csr ? json_pack("{s:s}", "csr", csr) : NULL;
    free(csr);
    if (!p)
        return fail(t, "out of memory");
    ferry_acme_req_start(&t->ss, t->finalize_url, true, p, false);
    t->state = S_FINALIZE;
    return AC_READY;
}

static ac_poll_t st_finalize(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    if (t->ss.req.status != 200)
        return problem(t, "finalize");
    t->polls = 0;
    ferry_acme_req_reset(&t->ss);
    t->state = S_ORDER_VALID; /* polled at once: the answer may be "valid" already */
    return AC_READY;
}

static ac_poll_t st_cert(struct order_task *t, struct ac_context *cx)
{
    bool ok;
    ac_poll_t r = request(t, cx, &ok);
    if (r == AC_PENDING || !ok)
        return r;
    const char *pem = t->ss.req.body, *why = "";
    if (t->ss.req.status != 200 || !pem)
        return problem(t, "certificate");
    t->issued = ferry_acme_material_from_pem(pem, strlen(pem), t->cert_key, &why);
    if (!t->issued)
        return fail(t, "certificate from %s: %s", t->cert_url, why);
    if (!ferry_acme_material_covers(t->issued, t->s->names, t->s->nnames))
        return fail(t, "certificate from %s lacks a name of the order", t->cert_url);
    struct ferry_acme_job *j = ferry_acme_job_new(t->s, FERRY_ACME_J_SAVE);
    if (!j || !(j->text = strdup(pem))) {
        ferry_acme_job_free(j);
        return fail(t, "out of memory");
    }
    EVP_PKEY_up_ref(t->cert_key);
    j->key = t->cert_key;
    ferry_acme_job_start(&t->job, t->a->rt, j);
    ferry_acme_req_reset(&t->ss);
    t->state = S_SAVE;
    return AC_READY;
}

static ac_poll_t st_save(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
        return AC_PENDING;
    if (!j || j->err) /* served anyway: storage must not keep a good certificate away */
        ferry_log(FERRY_LOG_WARN, "acme_storage_failed", "acme=%s error=%s", t->s->acme,
                  j ? j->why : "blocking pool unavailable");
    ferry_acme_job_free(j);
    issued(t);
    start_release(t, S_LOAD);
    return AC_READY;
}

static ac_poll_t st_release(struct order_task *t, struct ac_context *cx)
{
    struct ferry_acme_job *j;
    if (t->job.base.vt) {
        if (ferry_acme_job_poll(&t->job, cx, &j) == AC_PENDING)
            return AC_PENDING;
        ferry_acme_job_free(j);
    }
    t->state = t->after_release;
    return AC_READY;
}

/* ---- the task ---- */

static ac_poll_t (*const states[S_COUNT])(struct order_task *t, struct ac_context *cx) = {
    [S_LOAD] = st_load,           [S_WAIT] = st_wait,
    [S_LOCK] = st_lock,           [S_PEER] = st_peer,
    [S_DIRECTORY] = st_directory, [S_ACCOUNT] = st_account,
    [S_RESUME] = st_resume,       [S_NEW_ORDER] = st_new_order,
    [S_ORDER_STORE] = st_order_store, [S_AUTHZ] = st_authz,
    [S_CHAL_STORE] = st_chal_store, [S_CHAL_POST] = st_chal_post,
    [S_AUTHZ_POLL] = st_authz_poll, [S_ORDER_READY] = st_order_poll,
    [S_CSR] = st_csr,             [S_FINALIZE] = st_finalize,
    [S_ORDER_VALID] = st_order_poll, [S_CERT] = st_cert,
    [S_SAVE] = st_save,           [S_RELEASE] = st_release,
    [S_FAILED] = st_failed,
};

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
    for (unsigned i = 0; i < STEPS_PER_POLL; i++) {
        if (should_stop(t, cx))
            return AC_READY;
        if (states[t->state](t, cx) == AC_PENDING)
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
    pthread_mutex_lock(&t->s->lock);
    bool registered = t->s->owner != NULL;
    t->s->running = false;
    ac_waker_drop(&t->s->waker); /* our clone: nothing may wake this task any more */
    pthread_mutex_unlock(&t->s->lock);
    if (registered)
        ferry_acme_chal_clear(t->a, t->s);
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    json_decref(t->authzs);
    json_decref(t->chal_urls);
    free(t->chal_text);
    EVP_PKEY_free(t->cert_key);
    ferry_acme_material_free(t->issued);
    ferry_acme_session_drop(&t->ss);
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
    ferry_acme_session_init(&t->ss, a, t->s->acme);
    return ac_spawn(a->w, &t->base, order_dealloc);
}

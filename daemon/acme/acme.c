/* ferryd ACME: the registry of certificate slots and challenges (see acme.h). */
#include "acme/acme_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <strings.h>
#include <time.h>

#include "acme/challenge.h"
#include "acme/store.h"
#include "dns/resolver.h"

/* The first retry after a failed order (doubling up to an hour). The
 * environment may shorten it (FERRY_ACME_RETRY_MS, for tests; ferryd.8). */
#define RETRY_MS_DEFAULT 60000

struct ferry_acme_reg *ferry_acme_new(struct ac_runtime *rt, struct ac_worker *w)
{
    struct ferry_acme_reg *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->rt = rt;
    a->w = w;
    a->retry_ms = RETRY_MS_DEFAULT;
    const char *env = getenv("FERRY_ACME_RETRY_MS");
    if (env && *env) {
        char *end;
        unsigned long v = strtoul(env, &end, 10);
        if (*end == '\0' && v >= 100 && v <= RETRY_MS_DEFAULT)
            a->retry_ms = v;
    }
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

/* ---- resolving the ACME server's name (c-ares, on the resolver's worker) ---- */

struct dns_req {
    ferry_acme_resolved_fn done;
    void *arg;
};

static void dns_answer(void *p, const struct ferry_dns_answer *ans)
{
    struct dns_req *r = p;
    if (ans->status == 0 && ans->n > 0 && ans->rec[0].sa_len > 0)
        r->done(r->arg, (const struct sockaddr *)&ans->rec[0].sa, ans->rec[0].sa_len, NULL);
    else
        r->done(r->arg, NULL, 0, ans->status ? ans->err : "no address");
    free(r);
}

static int dns_resolve(void *ctx, const char *host, uint16_t port, ferry_acme_resolved_fn done,
                       void *arg)
{
    struct dns_req *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (struct dns_req){done, arg};
    int rc = ferry_dns_lookup_host(ctx, host, port, dns_answer, r);
    if (rc < 0) {
        free(r);
        return rc;
    }
    ferry_dns_kick(ctx);
    return 0;
}

void ferry_acme_use_dns(struct ferry_acme_reg *a, struct ferry_dns *dns)
{
    a->resolve = dns ? dns_resolve : NULL;
    a->resolve_ctx = dns;
}

/* Tells the slot's task to end (at its next poll). */
static void slot_stop(struct ferry_acme_slot *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    s->owner = NULL;
    struct ac_waker w = s->waker;
    s->waker = AC_WAKER_NONE;
    pthread_mutex_unlock(&s->lock);
    if (w.vt)
        ac_waker_wake(&w);
}

void ferry_acme_free(struct ferry_acme_reg *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nslots; i++) {
        slot_stop(a->slots[i]);
        ferry_acme_slot_unref(a->slots[i]);
    }
    free(a->slots);
    ferry_acme_jobs_free(a);
    for (size_t i = 0; i < a->nchal; i++)
        ferry_acme_material_free(a->chal[i].m);
    free(a->chal);
    free(a->counts);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- slots ---- */

struct ferry_acme_slot *ferry_acme_slot_ref(struct ferry_acme_slot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void ferry_acme_slot_unref(struct ferry_acme_slot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    ferry_acme_material_free(atomic_load(&s->cur));
    for (struct ferry_acme_material *m = s->retired, *next; m; m = next) {
        next = m->retired_next;
        ferry_acme_material_free(m);
    }
    for (size_t i = 0; i < s->nnames; i++)
        free(s->names[i]);
    free(s->names);
    free(s->id);
    free(s->directory);
    free(s->email);
    free(s->ca);
    free(s->storage);
    free(s->eab_kid);
    free(s->eab_hmac_key);
    ac_waker_drop(&s->waker);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* "acme|directory|storage|key_type|renew_before|email|ca|eab|names...": two
 * tls_acme lines asking for the same thing share one certificate. */
static char *slot_id(const struct ferry_acme *c, const struct ferry_tls_acme *t)
{
    size_t n = strlen(c->name) + strlen(c->directory) + strlen(c->storage) + 128 +
               (c->email ? strlen(c->email) : 0) + (c->ca ? strlen(c->ca) : 0) +
               (c->eab_kid ? strlen(c->eab_kid) + strlen(c->eab_hmac_key) : 0);
    for (size_t i = 0; i < t->nnames; i++)
        n += strlen(t->names[i]) + 1;
    char *id = malloc(n);
    if (!id)
        return NULL;
    int k = snprintf(id, n, "%s|%s|%s|%d|%llu|%s|%s|%s|%s", c->name, c->directory, c->storage,
                     (int)c->key_type, (unsigned long long)c->renew_before_s,
                     c->email ? c->email : "", c->ca ? c->ca : "",
                     c->eab_kid ? c->eab_kid : "", c->eab_hmac_key ? c->eab_hmac_key : "");
    for (size_t i = 0; i < t->nnames; i++)
        k += snprintf(id + k, n - (size_t)k, "|%s", t->names[i]);
    return id;
}

/* The files of a certificate in storage: its first name, and for several
 * names a hash of all of them, so that two certificates sharing a first
 * name never share files (every instance computes the same). */
static void file_base(const struct ferry_tls_acme *t, char *out, size_t cap)
{
    if (t->nnames == 1) {
        snprintf(out, cap, "%s", t->names[0]);
        return;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hn = 0;
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        for (size_t i = 0; i < t->nnames; i++)
            EVP_DigestUpdate(md, t->names[i], strlen(t->names[i]) + 1); /* NUL: a separator */
        EVP_DigestFinal_ex(md, h, &hn);
    }
    EVP_MD_CTX_free(md);
    snprintf(out, cap, "%s+%02x%02x%02x%02x", t->names[0], hn ? h[0] : 0, hn ? h[1] : 0,
             hn ? h[2] : 0, hn ? h[3] : 0);
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = true;
    return d;
}

static struct ferry_acme_slot *slot_new(struct ferry_acme_reg *a, const struct ferry_acme *c,
                                        const struct ferry_tls_acme *t, char *id)
{
    struct ferry_acme_slot *s = calloc(1, sizeof(*s));
    bool oom = !s;
    if (oom) {
        free(id);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->cur, NULL);
    pthread_mutex_init(&s->lock, NULL);
    s->owner = a;
    s->id = id;
    snprintf(s->acme, sizeof(s->acme), "%s", c->name);
    file_base(t, s->base, sizeof(s->base));
    s->names = calloc(t->nnames, sizeof(*s->names));
    oom |= !s->names;
    for (size_t i = 0; s->names && i < t->nnames; i++, s->nnames++)
        oom |= !(s->names[i] = strdup(t->names[i]));
    s->directory = dup_or_null(c->directory, &oom);
    s->email = dup_or_null(c->email, &oom);
    s->ca = dup_or_null(c->ca, &oom);
    s->storage = dup_or_null(c->storage, &oom);
    s->eab_kid = dup_or_null(c->eab_kid, &oom);
    s->eab_hmac_key = dup_or_null(c->eab_hmac_key, &oom);
    s->key_type = c->key_type;
    s->renew_before_s = c->renew_before_s;
    if (oom) {
        ferry_acme_slot_unref(s);
        return NULL;
    }
    return s;
}

/* When to renew m: renew_before before notAfter (at the latest with a third
 * of the lifetime left; a renew_before at or past the lifetime means a
 * third), moved earlier by a random part of up to a tenth of that span. */
int64_t ferry_acme_renew_at(const struct ferry_acme_slot *s, const struct ferry_acme_material *m)
{
    int64_t life = m->not_after - m->not_before;
    if (life < 3)
        life = 3;
    int64_t before = (int64_t)s->renew_before_s;
    if (before < life / 3 || before >= life)
        before = life / 3;
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = 0;
    int64_t jitter = before / 10 > 0 ? (int64_t)(r % (uint64_t)(before / 10 + 1)) : 0;
    return m->not_after - before - jitter;
}

/* A new slot serves its stored certificate at once (this runs while a
 * generation is built, on the blocking pool): start and reload never wait
 * for the task. */
static void load_stored(struct ferry_acme_slot *s)
{
    char why[600];
    struct ferry_acme_material *m = ferry_acme_store_load_cert(s->storage, s->base, why,
                                                               sizeof(why));
    if (!m || !ferry_acme_material_covers(m, s->names, s->nnames) ||
        m->not_after <= (int64_t)time(NULL)) {
        ferry_acme_material_free(m);
        return;
    }
    int64_t at = ferry_acme_renew_at(s, m);
    pthread_mutex_lock(&s->lock);
    s->renew_at = at;
    pthread_mutex_unlock(&s->lock);
    ferry_acme_slot_publish(s, m);
}

struct ferry_acme_slot *ferry_acme_slot_get(struct ferry_acme_reg *a, const struct ferry_config *cfg,
                                            const struct ferry_tls_acme *t)
{
    if (t->acme_index < 0 || (size_t)t->acme_index >= cfg->nacmes || t->nnames == 0)
        return NULL;
    char *id = slot_id(&cfg->acmes[t->acme_index], t);
    if (!id)
        return NULL;
    struct ferry_acme_slot *s = NULL;
    bool made = false;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->nslots && !s; i++)
        if (strcmp(a->slots[i]->id, id) == 0)
            s = ferry_acme_slot_ref(a->slots[i]);
    if (s) {
        free(id);
    } else {
        struct ferry_acme_slot **grown = realloc(a->slots, (a->nslots + 1) * sizeof(*grown));
        if (grown)
            a->slots = grown;
        s = grown ? slot_new(a, &cfg->acmes[t->acme_index], t, id) : (free(id), NULL);
        if (s)
            a->slots[a->nslots++] = ferry_acme_slot_ref(s);
        made = s != NULL;
    }
    pthread_mutex_unlock(&a->lock);
    if (made)
        load_stored(s);
    return s;
}

static bool cfg_names(const struct ferry_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct ferry_listener *l = &cfg->listeners[i];
        for (size_t j = 0; l->tls && j < l->ntls_acme; j++) {
            const struct ferry_tls_acme *t = &l->tls_acme[j];
            if (t->acme_index < 0)
                continue;
            char *other = slot_id(&cfg->acmes[t->acme_index], t);
            bool same = other && strcmp(other, id) == 0;
            free(other);
            if (same)
                return true;
        }
    }
    return false;
}

void ferry_acme_sync(struct ferry_acme_reg *a, const struct ferry_config *cfg)
{
    /* Slots are made by the TLS contexts of the configuration going live;
     * here the ones it names get their task and the rest let go. */
    pthread_mutex_lock(&a->lock);
    size_t keep = 0;
    struct ferry_acme_slot **gone = calloc(a->nslots ? a->nslots : 1, sizeof(*gone));
    size_t ngone = 0;
    for (size_t i = 0; i < a->nslots; i++) {
        struct ferry_acme_slot *s = a->slots[i];
        if (cfg_names(cfg, s->id) || !gone)
            a->slots[keep++] = s;
        else
            gone[ngone++] = s;
    }
    a->nslots = keep;
    struct ferry_acme_slot **start = calloc(keep ? keep : 1, sizeof(*start));
    size_t nstart = 0;
    for (size_t i = 0; start && i < keep; i++) {
        struct ferry_acme_slot *s = a->slots[i];
        pthread_mutex_lock(&s->lock);
        if (!s->running) {
            s->running = true;
            start[nstart++] = ferry_acme_slot_ref(s);
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&a->lock);
    for (size_t i = 0; i < ngone; i++) {
        ferry_acme_chal_clear(a, gone[i]);
        slot_stop(gone[i]);
        ferry_acme_slot_unref(gone[i]);
    }
    for (size_t i = 0; i < nstart; i++) {
        if (ferry_acme_order_start(a, start[i]) < 0) {
            pthread_mutex_lock(&start[i]->lock);
            start[i]->running = false; /* the next sync tries again */
            pthread_mutex_unlock(&start[i]->lock);
        }
        ferry_acme_slot_unref(start[i]);
    }
    free(gone);
    free(start);
}

void ferry_acme_slot_publish(struct ferry_acme_slot *s, struct ferry_acme_material *m)
{
    struct ferry_acme_material *old = atomic_exchange(&s->cur, m);
    if (!old)
        return;
    pthread_mutex_lock(&s->lock);
    old->retired_next = s->retired;
    s->retired = old;
    pthread_mutex_unlock(&s->lock);
}

/* ---- the TLS layer's lookups ---- */

bool ferry_acme_slot_matches(const struct ferry_acme_slot *s, const char *sni)
{
    size_t n = strlen(sni);
    if (n > 0 && sni[n - 1] == '.')
        n--;
    for (size_t i = 0; i < s->nnames; i++)
        if (strlen(s->names[i]) == n && strncasecmp(s->names[i], sni, n) == 0)
            return true;
    return false;
}

bool ferry_acme_slot_install(struct ferry_acme_slot *s, SSL *ssl)
{
    struct ferry_acme_material *m = atomic_load_explicit(&s->cur, memory_order_acquire);
    return m && SSL_use_cert_and_key(ssl, m->leaf, m->key, m->chain, 1) == 1;
}

bool ferry_acme_slot_not_after(struct ferry_acme_slot *s, char *path, size_t cap,
                               int64_t *not_after)
{
    struct ferry_acme_material *m = atomic_load_explicit(&s->cur, memory_order_acquire);
    if (!m)
        return false;
    ferry_acme_store_path(path, cap, s->storage, s->base, ".crt");
    *not_after = m->not_after;
    return true;
}

bool ferry_acme_challenge_install(struct ferry_acme_reg *a, const char *sni, SSL *ssl)
{
    bool done = false;
    size_t n = strlen(sni);
    if (n > 0 && sni[n - 1] == '.')
        n--;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->nchal && !done; i++) {
        const struct ferry_acme_material *m = a->chal[i].m;
        if (strlen(a->chal[i].name) == n && strncasecmp(a->chal[i].name, sni, n) == 0)
            done = SSL_use_cert_and_key(ssl, m->leaf, m->key, m->chain, 1) == 1;
    }
    pthread_mutex_unlock(&a->lock);
    return done;
}

int ferry_acme_chal_put(struct ferry_acme_reg *a, const struct ferry_acme_slot *by,
                        const char *name, struct ferry_acme_material *m)
{
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->nchal; i++) {
        if (a->chal[i].by == by && strcmp(a->chal[i].name, name) == 0) {
            ferry_acme_material_free(a->chal[i].m);
            a->chal[i].m = m;
            pthread_mutex_unlock(&a->lock);
            return 0;
        }
    }
    struct ferry_acme_chal *grown = realloc(a->chal, (a->nchal + 1) * sizeof(*grown));
    if (!grown) {
        pthread_mutex_unlock(&a->lock);
        ferry_acme_material_free(m);
        return -ENOMEM;
    }
    a->chal = grown;
    struct ferry_acme_chal *c = &a->chal[a->nchal++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->m = m;
    c->by = by;
    pthread_mutex_unlock(&a->lock);
    return 0;
}

void ferry_acme_chal_clear(struct ferry_acme_reg *a, const struct ferry_acme_slot *by)
{
    pthread_mutex_lock(&a->lock);
    size_t keep = 0;
    for (size_t i = 0; i < a->nchal; i++) {
        if (a->chal[i].by == by)
            ferry_acme_material_free(a->chal[i].m);
        else
            a->chal[keep++] = a->chal[i];
    }
    a->nchal = keep;
    pthread_mutex_unlock(&a->lock);
}

/* ---- status ---- */

const char *ferry_acme_state_name(enum ferry_acme_state st)
{
    static const char *const names[] = {"none", "ordering", "valid", "failed"};
    return names[st];
}

void ferry_acme_count(struct ferry_acme_reg *a, const char *acme, bool ok)
{
    pthread_mutex_lock(&a->lock);
    struct ferry_acme_count *c = NULL;
    for (size_t i = 0; i < a->ncounts && !c; i++)
        if (strcmp(a->counts[i].acme, acme) == 0)
            c = &a->counts[i];
    if (!c) {
        struct ferry_acme_count *grown = realloc(a->counts, (a->ncounts + 1) * sizeof(*grown));
        if (grown) {
            a->counts = grown;
            c = &a->counts[a->ncounts++];
            memset(c, 0, sizeof(*c));
            snprintf(c->acme, sizeof(c->acme), "%s", acme);
        }
    }
    if (c)
        (*(ok ? &c->ok : &c->failed))++;
    pthread_mutex_unlock(&a->lock);
}

struct ferry_acme_count *ferry_acme_counts(struct ferry_acme_reg *a, size_t *n)
{
    pthread_mutex_lock(&a->lock);
    struct ferry_acme_count *out = NULL;
    *n = 0;
    if (a->ncounts && (out = malloc(a->ncounts * sizeof(*out)))) {
        memcpy(out, a->counts, a->ncounts * sizeof(*out));
        *n = a->ncounts;
    }
    pthread_mutex_unlock(&a->lock);
    return out;
}

static void slot_status(struct ferry_acme_slot *s, struct ferry_acme_status *st)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->acme, sizeof(st->acme), "%s", s->acme);
    size_t k = 0;
    for (size_t i = 0; i < s->nnames && k < sizeof(st->names); i++)
        k += (size_t)snprintf(st->names + k, sizeof(st->names) - k, "%s%s", i ? "," : "",
                              s->names[i]);
    ferry_acme_store_path(st->cert_path, sizeof(st->cert_path), s->storage, s->base, ".crt");
    struct ferry_acme_material *m = atomic_load_explicit(&s->cur, memory_order_acquire);
    int64_t now = (int64_t)time(NULL);
    pthread_mutex_lock(&s->lock);
    bool valid = m && m->not_after > now;
    st->state = valid ? FERRY_ACME_VALID : s->ordering ? FERRY_ACME_ORDERING
                : s->failed ? FERRY_ACME_FAILED : FERRY_ACME_NONE;
    st->not_after = m ? m->not_after : 0;
    st->renew_at = m ? s->renew_at : 0;
    snprintf(st->last_error, sizeof(st->last_error), "%s", s->last_error);
    pthread_mutex_unlock(&s->lock);
}

struct ferry_acme_status *ferry_acme_statuses(struct ferry_acme_reg *a, size_t *n)
{
    pthread_mutex_lock(&a->lock);
    struct ferry_acme_status *out = NULL;
    *n = 0;
    /* Only slots with a task: a reload that failed may have left others. */
    if (a->nslots && (out = calloc(a->nslots, sizeof(*out)))) {
        for (size_t i = 0; i < a->nslots; i++) {
            pthread_mutex_lock(&a->slots[i]->lock);
            bool running = a->slots[i]->running;
            pthread_mutex_unlock(&a->slots[i]->lock);
            if (running)
                slot_status(a->slots[i], &out[(*n)++]);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return out;
}

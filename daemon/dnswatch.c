/* ferryd: keeping server addresses current from DNS (see dnswatch.h).
 *
 * One watch per server given by host name, per adopted generation. The
 * resolver's task calls tick() when the earliest watch is due; tick starts
 * due lookups (at most DW_INFLIGHT at once, the rest wait their turn) and
 * forgets watches of generations that were replaced. An answer moves the
 * watch's due time to its TTL (or to its back-off after a failure) and, when
 * the address changed, sends the new one to every worker's view.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "asynccore/runtime.h"
#include "dnswatch.h"
#include "log.h"

#define DW_INFLIGHT 16          /* lookups running at once */
#define DW_RETRY_MIN_MS 1000    /* after a failure: 1 s, doubling ... */
#define DW_RETRY_MAX_MS 30000   /* ... up to 30 s */
#define DW_SPREAD_MS 20         /* adoption: one name every 20 ms at most */

struct watch {
    struct watch *next;
    struct ferry_dnswatch *dw;
    struct ferry_gen *g;        /* reference */
    size_t bidx, sidx;
    uint64_t due_ms;
    unsigned backoff_ms;
    bool inflight, dead, answered, failing;
};

struct ferry_dnswatch {
    struct ferry_daemon *d;
    struct ferry_dns *dns;
    struct watch *watches;
    unsigned inflight;
    unsigned first_pending;     /* watches of the adopted generation not answered yet */
    struct ac_waker first_waker;
    uint64_t min_ttl_ms, max_ttl_ms;
    uint64_t rng;
};

static uint64_t rng_next(struct ferry_dnswatch *dw)
{
    uint64_t x = dw->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return dw->rng = x;
}

static void watch_free(struct watch *w)
{
    ferry_gen_unref(w->g);
    free(w);
}

static const char *server_name(const struct watch *w)
{
    return w->g->backends[w->bidx].servers[w->sidx].cfg->name;
}

/* ---- sending an address to every worker's view ---- */

struct view_set {
    _Atomic unsigned refs;
    struct ferry_gen *g;
    size_t bidx, sidx;
    struct ferry_view_server v;
};

struct view_task {
    struct ac_future base;
    struct view_set *vs;
};

static void view_set_unref(struct view_set *vs)
{
    if (atomic_fetch_sub(&vs->refs, 1) == 1) {
        ferry_gen_unref(vs->g);
        free(vs);
    }
}

static ac_poll_t view_task_poll(struct ac_future *f, struct ac_context *cx)
{
    struct view_task *t = (struct view_task *)f;
    struct view_set *vs = t->vs;
    *ferry_gen_view(vs->g, ac_worker_index(cx->worker), vs->bidx, vs->sidx) = vs->v;
    return AC_READY;
}

static void view_task_drop(struct ac_future *f)
{
    struct view_task *t = (struct view_task *)f;
    if (t->vs)
        view_set_unref(t->vs);
    t->vs = NULL;
}

static void view_task_free(struct ac_future *f) { free(f); }

static const struct ac_future_vtable view_task_vt = {view_task_poll, view_task_drop};

/* Every worker applies the address on its own loop. */
static void broadcast(struct ferry_daemon *d, struct ferry_gen *g, size_t bidx, size_t sidx,
                      const struct ferry_view_server *v)
{
    struct view_set *vs = calloc(1, sizeof(*vs));
    if (!vs) {
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=dns_update");
        return;
    }
    atomic_init(&vs->refs, 1);
    vs->g = ferry_gen_ref(g);
    vs->bidx = bidx;
    vs->sidx = sidx;
    vs->v = *v;
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct view_task *t = calloc(1, sizeof(*t));
        if (!t) {
            ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=dns_update");
            continue;
        }
        t->base.vt = &view_task_vt;
        atomic_fetch_add(&vs->refs, 1);
        t->vs = vs;
        ac_spawn(ac_runtime_worker(d->rt, i), &t->base, view_task_free); /* drops on failure */
    }
    view_set_unref(vs);
}

/* ---- answers ---- */

static void first_answered(struct watch *w)
{
    if (w->answered)
        return;
    w->answered = true;
    struct ferry_dnswatch *dw = w->dw;
    if (!w->dead && dw->first_pending > 0 && --dw->first_pending == 0)
        ac_waker_wake(&dw->first_waker);
}

/* The record to use: the current address when it is still in the answer
 * (so an answer that lists several addresses in turn moves nobody), else
 * the first. */
static const struct ferry_dns_record *choose(const struct ferry_server_rt *s,
                                             const struct ferry_dns_answer *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (s->addr_len == a->rec[i].sa_len && memcmp(&s->addr, &a->rec[i].sa, s->addr_len) == 0)
            return &a->rec[i];
    return a->n ? &a->rec[0] : NULL;
}

static void failed(struct watch *w, const char *why, uint64_t now)
{
    struct ferry_dnswatch *dw = w->dw;
    struct ferry_server_rt *s = &w->g->backends[w->bidx].servers[w->sidx];
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : DW_RETRY_MIN_MS;
    if (w->backoff_ms > DW_RETRY_MAX_MS)
        w->backoff_ms = DW_RETRY_MAX_MS;
    w->due_ms = now + w->backoff_ms;
    if (!w->failing) /* one line when it starts failing, one when it recovers */
        ferry_log(FERRY_LOG_WARN, "dns_lookup_failed",
                  "server=%s/%s host=%s error=%s kept=%s retry_ms=%u",
                  w->g->cfg->backends[w->bidx].name, server_name(w), s->cfg->addr.host, why,
                  s->addr_len ? "last_address" : "unresolved", w->backoff_ms);
    w->failing = true;
    (void)dw;
}

static void apply(struct watch *w, const struct ferry_dns_answer *a, uint64_t now)
{
    struct ferry_dnswatch *dw = w->dw;
    struct ferry_server_rt *s = &w->g->backends[w->bidx].servers[w->sidx];
    const struct ferry_dns_record *r = choose(s, a);
    if (!r) {
        failed(w, "no address", now);
        return;
    }
    uint64_t ttl = (uint64_t)a->ttl_s * 1000;
    if (ttl < dw->min_ttl_ms)
        ttl = dw->min_ttl_ms;
    if (ttl > dw->max_ttl_ms)
        ttl = dw->max_ttl_ms;
    w->due_ms = now + ttl + rng_next(dw) % (ttl / 10 + 1);
    w->backoff_ms = 0;
    if (w->failing)
        ferry_log(FERRY_LOG_INFO, "dns_lookup_recovered", "server=%s/%s host=%s",
                  w->g->cfg->backends[w->bidx].name, server_name(w), s->cfg->addr.host);
    w->failing = false;
    if (s->addr_len == r->sa_len && memcmp(&s->addr, &r->sa, r->sa_len) == 0)
        return;
    memcpy(&s->addr, &r->sa, r->sa_len);
    s->addr_len = r->sa_len;
    char text[AC_ADDR_STRLEN];
    ac_addr_format((const struct sockaddr *)&r->sa, r->sa_len, text, sizeof(text));
    ferry_log(FERRY_LOG_INFO, "server_address", "server=%s/%s host=%s address=%s",
              w->g->cfg->backends[w->bidx].name, server_name(w), s->cfg->addr.host, text);
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    memcpy(&v.addr, &r->sa, r->sa_len);
    v.addr_len = r->sa_len;
    broadcast(dw->d, w->g, w->bidx, w->sidx, &v);
    atomic_store(&s->stats->unresolved, false);
}

static void answered(void *arg, const struct ferry_dns_answer *a)
{
    struct watch *w = arg;
    struct ferry_dnswatch *dw = w->dw;
    w->inflight = false;
    dw->inflight--;
    if (a->status == ARES_EDESTRUCTION)
        return; /* stopping: tick(UINT64_MAX) frees the watches */
    uint64_t now = ferry_dns_now_ms(dw->dns);
    if (!w->dead) {
        if (a->status)
            failed(w, a->err, now);
        else
            apply(w, a, now);
    }
    first_answered(w);
    ferry_dns_tick_at(dw->dns, w->dead ? now : w->due_ms);
}

/* ---- scheduling ---- */

static void start_lookup(struct ferry_dnswatch *dw, struct watch *w)
{
    const struct ferry_server_rt *s = &w->g->backends[w->bidx].servers[w->sidx];
    w->inflight = true;
    dw->inflight++;
    if (ferry_dns_lookup_host(dw->dns, s->cfg->addr.host, s->cfg->addr.port, answered, w) != 0) {
        w->inflight = false;
        dw->inflight--;
        w->due_ms = ferry_dns_now_ms(dw->dns) + DW_RETRY_MIN_MS;
    }
}

static uint64_t tick(void *arg, uint64_t now)
{
    struct ferry_dnswatch *dw = arg;
    if (now == UINT64_MAX) { /* the resolver stops: let go of everything */
        while (dw->watches) {
            struct watch *w = dw->watches;
            dw->watches = w->next;
            watch_free(w);
        }
        ac_waker_drop(&dw->first_waker);
        free(dw);
        return UINT64_MAX;
    }
    uint64_t next = UINT64_MAX;
    for (struct watch **pp = &dw->watches; *pp;) {
        struct watch *w = *pp;
        if (w->dead && !w->inflight) {
            *pp = w->next;
            watch_free(w);
            continue;
        }
        if (!w->dead && !w->inflight && w->due_ms <= now && dw->inflight < DW_INFLIGHT)
            start_lookup(dw, w); /* may answer at once (/etc/hosts) */
        if (!w->dead && !w->inflight && w->due_ms < next)
            next = w->due_ms;
        if (!w->dead && !w->inflight && w->due_ms <= now)
            next = now + 1; /* waiting for a free lookup slot */
        pp = &w->next;
    }
    return next;
}

struct ferry_dnswatch *ferry_dnswatch_start(struct ferry_daemon *d, const struct ferry_global *gl)
{
    struct ferry_dnswatch *dw = calloc(1, sizeof(*dw));
    if (!dw) {
        ferry_log(FERRY_LOG_ERROR, "dns_unavailable", "error=\"out of memory\"");
        return NULL;
    }
    int err = 0;
    dw->d = d;
    dw->rng = (uint64_t)ac_clock_now_ms() * 0x9e3779b97f4a7c15ull | 1;
    dw->dns = ferry_dns_start(d->workers[0].w, gl, &err);
    if (!dw->dns) {
        ferry_log(FERRY_LOG_ERROR, "dns_unavailable", "error=%s",
                  err < 0 ? strerror(-err) : ares_strerror(err));
        free(dw);
        return NULL;
    }
    ferry_dns_set_tick(dw->dns, tick, dw, UINT64_MAX);
    return dw;
}

/* The address the old generation knows for the same backend, server name
 * and host, if any. */
static const struct ferry_server_rt *previous(const struct ferry_gen *old, const char *backend,
                                              const struct ferry_server *cfg)
{
    for (size_t i = 0; old && i < old->cfg->nbackends; i++) {
        const struct ferry_backend_rt *b = &old->backends[i];
        if (strcmp(b->cfg->name, backend) != 0)
            continue;
        for (size_t j = 0; j < b->nservers; j++)
            if (strcmp(b->servers[j].cfg->name, cfg->name) == 0 &&
                strcmp(b->servers[j].cfg->addr.text, cfg->addr.text) == 0)
                return b->servers[j].addr_len ? &b->servers[j] : NULL;
    }
    return NULL;
}

/* Before g is live: its views are written directly. */
static void carry_over(struct ferry_gen *old, struct ferry_gen *g, size_t i, size_t j)
{
    struct ferry_server_rt *s = &g->backends[i].servers[j];
    const struct ferry_server_rt *p = previous(old, g->cfg->backends[i].name, s->cfg);
    if (!p) {
        atomic_store(&s->stats->unresolved, true);
        return;
    }
    memcpy(&s->addr, &p->addr, p->addr_len);
    s->addr_len = p->addr_len;
    for (unsigned w = 0; w < g->d->nworkers; w++) {
        struct ferry_view_server *v = ferry_gen_view(g, w, i, j);
        memcpy(&v->addr, &p->addr, p->addr_len);
        v->addr_len = p->addr_len;
    }
}

void ferry_dnswatch_adopt(struct ferry_dnswatch *dw, struct ferry_gen *old, struct ferry_gen *g)
{
    if (!dw)
        return;
    for (struct watch *w = dw->watches; w; w = w->next)
        w->dead = true;
    dw->first_pending = 0;
    const struct ferry_global *gl = &g->cfg->global;
    dw->min_ttl_ms = gl->dns_min_ttl_ms;
    dw->max_ttl_ms = gl->dns_max_ttl_ms;
    if (ferry_dns_configure(dw->dns, gl) != 0)
        ferry_log(FERRY_LOG_WARN, "dns_resolvers_rejected", "config=%s", g->cfg->path);
    uint64_t now = ferry_dns_now_ms(dw->dns), k = 0;
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        struct ferry_backend_rt *b = &g->backends[i];
        for (size_t j = 0; j < b->nservers; j++) {
            if (b->servers[j].cfg->addr.kind != FERRY_ADDR_INET || b->servers[j].cfg->addr.resolved)
                continue;
            carry_over(old, g, i, j);
            struct watch *w = calloc(1, sizeof(*w));
            if (!w) {
                ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=dns_watch");
                continue;
            }
            w->dw = dw;
            w->g = ferry_gen_ref(g);
            w->bidx = i;
            w->sidx = j;
            /* Spread: the first names at once, then one every DW_SPREAD_MS. */
            w->due_ms = now + (k < DW_INFLIGHT ? 0 : (k - DW_INFLIGHT + 1) * DW_SPREAD_MS);
            k++;
            w->next = dw->watches;
            dw->watches = w;
            dw->first_pending++;
        }
    }
    ferry_dns_set_tick(dw->dns, tick, dw, now);
}

static ac_poll_t first_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_dnswatch_first *fr = (struct ferry_dnswatch_first *)f;
    if (!fr->dw || fr->dw->first_pending == 0)
        return AC_READY;
    ac_waker_drop(&fr->dw->first_waker);
    fr->dw->first_waker = ac_waker_clone(cx->waker);
    return ac_future_poll(&fr->limit.base, cx);
}

static void first_drop(struct ac_future *f)
{
    struct ferry_dnswatch_first *fr = (struct ferry_dnswatch_first *)f;
    if (fr->dw)
        ac_waker_drop(&fr->dw->first_waker);
    ac_future_drop(&fr->limit.base);
}

static const struct ac_future_vtable first_vt = {first_poll, first_drop};

void ferry_dnswatch_first_init(struct ferry_dnswatch_first *f, struct ferry_dnswatch *dw,
                               uint64_t ms)
{
    memset(f, 0, sizeof(*f));
    f->base.vt = &first_vt;
    f->dw = dw;
    ac_sleep_init(&f->limit, ms);
}

/* ferryd: keeping server addresses current from DNS (see dnswatch.h).
 *
 * One watch per server given by host name and one per backend with
 * `discover`, per adopted generation. The
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
#include "servers/discover.h"
#include "servers/dnswatch.h"
#include "worker.h"
#include "log/log.h"
#include "servers/view.h"

#define DW_INFLIGHT 16          /* lookups running at once */
#define DW_RETRY_MIN_MS 1000    /* after a failure: 1 s, doubling ... */
#define DW_RETRY_MAX_MS 30000   /* ... up to 30 s */
#define DW_SPREAD_MS 20         /* adoption: one name every 20 ms at most */

enum watch_kind { W_HOST, W_DISCOVER };

struct watch {
    struct watch *next;
    struct ferry_dnswatch *dw;
    struct ferry_gen *g;        /* reference */
    enum watch_kind kind;
    size_t bidx, sidx;          /* W_HOST: the server */
    char host[256];             /* W_HOST: the name looked up (configured, or set at runtime) */
    uint16_t port;
    struct ferry_discovered *ds;  /* W_DISCOVER: the backend's discovered servers */
    uint64_t due_ms;
    unsigned backoff_ms;
    size_t dropped;             /* records the last answer had past the bound */
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
    free(w->ds);
    ferry_gen_unref(w->g);
    free(w);
}

/* What a log line names: server=BACKEND/SERVER and the host of a server
 * watch, or backend=BACKEND and the discover name of a backend's (the other
 * key stays empty, and an empty `?key=` is left out). */
struct who {
    char server[2 * FERRY_NAME_MAX + 2];
    const char *backend;
    const char *host;
};

static void describe(const struct watch *w, struct who *who)
{
    const struct ferry_backend *bc = &w->g->cfg->backends[w->bidx];
    if (w->kind == W_HOST) {
        const struct ferry_server *c = w->g->backends[w->bidx].servers[w->sidx].cfg;
        snprintf(who->server, sizeof(who->server), "%s/%s", bc->name, c->name);
        who->backend = "";
        who->host = w->host;
    } else {
        who->server[0] = '\0';
        who->backend = bc->name;
        who->host = bc->discover_name;
    }
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

/* A failure keeps what was known (the last address, the last set). */
static void failed(struct watch *w, const char *why, uint64_t now)
{
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : DW_RETRY_MIN_MS;
    if (w->backoff_ms > DW_RETRY_MAX_MS)
        w->backoff_ms = DW_RETRY_MAX_MS;
    w->due_ms = now + w->backoff_ms;
    if (!w->failing) { /* one line when it starts failing, one when it recovers */
        struct who who;
        describe(w, &who);
        const char *kept = w->kind == W_DISCOVER ? "last_set"
                           : w->g->backends[w->bidx].servers[w->sidx].addr_len ? "last_address"
                                                                               : "unresolved";
        ferry_log(FERRY_LOG_WARN, "dns_lookup_failed",
                  "?server=%s ?backend=%s host=%s error=%s kept=%s retry_ms=%u", who.server,
                  who.backend, who.host, why, kept, w->backoff_ms);
    }
    w->failing = true;
}

/* A good answer: next lookup when its TTL ends (clamped, spread). */
/* An answer over FERRY_DNS_MAX_ANSWERS records keeps the lowest addresses
 * (dns.h); how many were left out is said once, and again when it changes. */
static void note_dropped(struct watch *w, const struct ferry_dns_answer *a)
{
    if (a->dropped == w->dropped)
        return;
    w->dropped = a->dropped;
    if (a->dropped == 0)
        return;
    struct who who;
    describe(w, &who);
    ferry_log(FERRY_LOG_WARN, "dns_answer_cut", "?server=%s ?backend=%s host=%s kept=%zu dropped=%zu",
              who.server, who.backend, who.host, a->n, a->dropped);
}

static void succeeded(struct watch *w, const struct ferry_dns_answer *a, uint64_t now)
{
    struct ferry_dnswatch *dw = w->dw;
    note_dropped(w, a);
    uint64_t ttl = a->ttl_s == UINT32_MAX ? dw->max_ttl_ms : (uint64_t)a->ttl_s * 1000;
    if (ttl < dw->min_ttl_ms)
        ttl = dw->min_ttl_ms;
    if (ttl > dw->max_ttl_ms)
        ttl = dw->max_ttl_ms;
    w->due_ms = now + ttl + rng_next(dw) % (ttl / 10 + 1);
    w->backoff_ms = 0;
    if (w->failing) {
        struct who who;
        describe(w, &who);
        ferry_log(FERRY_LOG_INFO, "dns_lookup_recovered", "?server=%s ?backend=%s host=%s",
                  who.server, who.backend, who.host);
    }
    w->failing = false;
}

static void apply_discover(struct watch *w, const struct ferry_dns_answer *a, uint64_t now,
                           bool live)
{
    struct ferry_sset_want *want = calloc(FERRY_DISCOVER_MAX, sizeof(*want));
    if (!want) {
        failed(w, "out of memory", now);
        return;
    }
    bool srv = w->g->cfg->backends[w->bidx].discover == FERRY_DISCOVER_SRV;
    size_t n = ferry_sset_wanted(a->rec, a->n, srv, want, FERRY_DISCOVER_MAX);
    if (n == 0) {
        /* An empty answer empties nothing: a backend never loses its last
         * servers to a transient NXDOMAIN. */
        failed(w, "no address", now);
    } else {
        succeeded(w, a, now);
        ferry_discover_apply(w->ds, want, n, now, live);
    }
    free(want);
}

static void apply(struct watch *w, const struct ferry_dns_answer *a, uint64_t now)
{
    struct ferry_server_rt *s = &w->g->backends[w->bidx].servers[w->sidx];
    const struct ferry_dns_record *r = choose(s, a);
    if (!r) {
        failed(w, "no address", now);
        return;
    }
    succeeded(w, a, now);
    if (s->addr_len == r->sa_len && memcmp(&s->addr, &r->sa, r->sa_len) == 0)
        return;
    memcpy(&s->addr, &r->sa, r->sa_len);
    s->addr_len = r->sa_len;
    char text[AC_ADDR_STRLEN];
    ac_addr_format((const struct sockaddr *)&r->sa, r->sa_len, text, sizeof(text));
    ferry_log(FERRY_LOG_INFO, "server_address", "server=%s/%s host=%s address=%s",
              w->g->cfg->backends[w->bidx].name, s->cfg->name, w->host, text);
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    memcpy(&v.addr, &r->sa, r->sa_len);
    v.addr_len = r->sa_len;
    v.dynamic = s->added; /* an added server's view carries its weight and backup */
    v.weight = s->cfg->weight;
    v.backup = s->cfg->backup;
    ferry_view_publish(w->g, w->bidx, w->sidx, &v, true);
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
        else if (w->kind == W_DISCOVER)
            apply_discover(w, a, now, true);
        else
            apply(w, a, now);
    }
    first_answered(w);
    ferry_dns_tick_at(dw->dns, w->dead ? now : w->due_ms);
}

/* ---- scheduling ---- */

static void start_lookup(struct ferry_dnswatch *dw, struct watch *w)
{
    const struct ferry_backend *bc = &w->g->cfg->backends[w->bidx];
    w->inflight = true;
    dw->inflight++;
    int rc;
    if (w->kind == W_HOST) {
        rc = ferry_dns_lookup_host(dw->dns, w->host, w->port, answered, w);
    } else if (bc->discover == FERRY_DISCOVER_DNS) {
        rc = ferry_dns_lookup_host(dw->dns, bc->discover_name, bc->discover_port, answered, w);
    } else {
        rc = ferry_dns_lookup_srv(dw->dns, bc->discover_name, answered, w);
    }
    if (rc != 0) {
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

struct ferry_dns *ferry_dnswatch_resolver(struct ferry_dnswatch *dw)
{
    return dw ? dw->dns : NULL;
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
    struct ferry_view_server v;
    memset(&v, 0, sizeof(v));
    memcpy(&v.addr, &p->addr, p->addr_len);
    v.addr_len = p->addr_len;
    ferry_view_publish(g, i, j, &v, false);
}

/* The discovered servers the old generation lists for the same backend and
 * discover line, given to g before it serves. */
static void carry_over_discovered(struct ferry_dnswatch *dw, struct ferry_gen *old,
                                  struct watch *nw, uint64_t now)
{
    const struct ferry_backend *bc = &nw->g->cfg->backends[nw->bidx];
    for (struct watch *w = dw->watches; w; w = w->next) {
        if (w->g != old || w->kind != W_DISCOVER)
            continue;
        const struct ferry_backend *ob = &old->cfg->backends[w->bidx];
        if (strcmp(ob->name, bc->name) != 0 || ob->discover != bc->discover ||
            strcmp(ob->discover_name, bc->discover_name) != 0 ||
            ob->discover_port != bc->discover_port)
            continue;
        struct ferry_sset_want *want = calloc(FERRY_DISCOVER_MAX, sizeof(*want));
        if (!want)
            return;
        size_t n = ferry_discover_listed(w->ds, want, FERRY_DISCOVER_MAX);
        if (n)
            ferry_discover_apply(nw->ds, want, n, now, false);
        free(want);
        return;
    }
}

static struct watch *add_watch(struct ferry_dnswatch *dw, struct ferry_gen *g,
                               enum watch_kind kind, size_t bidx, size_t sidx, uint64_t due)
{
    struct watch *w = calloc(1, sizeof(*w));
    if (w && kind == W_DISCOVER) {
        w->ds = malloc(sizeof(*w->ds));
        if (w->ds)
            ferry_discover_init(w->ds, g, bidx);
    }
    if (!w || (kind == W_DISCOVER && !w->ds)) {
        free(w);
        ferry_log(FERRY_LOG_ERROR, "out_of_memory", "what=dns_watch");
        return NULL;
    }
    w->dw = dw;
    w->g = ferry_gen_ref(g);
    w->kind = kind;
    w->bidx = bidx;
    w->sidx = sidx;
    w->due_ms = due;
    w->next = dw->watches;
    dw->watches = w;
    dw->first_pending++;
    return w;
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
        const struct ferry_backend *bc = &g->cfg->backends[i];
        for (size_t j = 0; j < bc->nservers; j++) {
            if (bc->servers[j].addr.kind != FERRY_ADDR_INET || bc->servers[j].addr.resolved)
                continue;
            carry_over(old, g, i, j);
            /* Spread: the first names at once, then one every DW_SPREAD_MS. */
            struct watch *w = add_watch(dw, g, W_HOST, i, j,
                      now + (k < DW_INFLIGHT ? 0 : (k - DW_INFLIGHT + 1) * DW_SPREAD_MS));
            if (w) {
                snprintf(w->host, sizeof(w->host), "%s", bc->servers[j].addr.host);
                w->port = bc->servers[j].addr.port;
            }
            k++;
        }
        if (bc->discover == FERRY_DISCOVER_NONE)
            continue;
        struct watch *w = add_watch(dw, g, W_DISCOVER, i, 0,
                                    now + (k < DW_INFLIGHT ? 0 : (k - DW_INFLIGHT + 1) * DW_SPREAD_MS));
        k++;
        if (w)
            carry_over_discovered(dw, old, w, now);
    }
    ferry_dns_set_tick(dw->dns, tick, dw, now);
}

void ferry_dnswatch_unwatch(struct ferry_dnswatch *dw, struct ferry_gen *g, size_t bidx,
                            size_t sidx)
{
    for (struct watch *w = dw ? dw->watches : NULL; w; w = w->next)
        if (w->g == g && w->kind == W_HOST && w->bidx == bidx && w->sidx == sidx)
            w->dead = true; /* freed by the next tick (once its lookup, if any, answered) */
}

int ferry_dnswatch_watch(struct ferry_dnswatch *dw, struct ferry_gen *g, size_t bidx, size_t sidx,
                         const char *host, uint16_t port)
{
    if (!dw)
        return -EAGAIN;
    ferry_dnswatch_unwatch(dw, g, bidx, sidx);
    uint64_t now = ferry_dns_now_ms(dw->dns);
    struct watch *w = add_watch(dw, g, W_HOST, bidx, sidx, now);
    if (!w)
        return -ENOMEM;
    w->answered = true; /* not one start-up waits for */
    dw->first_pending--;
    snprintf(w->host, sizeof(w->host), "%s", host);
    w->port = port;
    ferry_dns_tick_at(dw->dns, now);
    return 0;
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

/* ferryd: one proxied connection, as one task whose future is composed:
 *
 *   handshake phase, under one handshake_timeout deadline (handshake.h) and
 *      the drain signal: the PROXY header when accept_proxy, then allow/deny
 *      and the client caps on the address it carries (or the socket's peer),
 *      then the TLS handshake or the ClientHello peek
 *   -> route, then the upstream phase (pick, connect under connect_timeout,
 *      retries, PROXY header out, TLS to the server: upstream.h)
 *   -> the run phase: copy_bidi(client, server), the idle timer, the drain signal
 *
 * Each phase is a typed sub-future with its own enter and leave, and
 * conn_enter is the one place that moves between them: it drops the current
 * phase before the next is built, so no two phases are ever live at once.
 * The run phase, where an idle connection spends its life, is embedded; the
 * handshake and upstream phases are larger (a 512-byte ClientHello buffer, a
 * connect with its retries and queue wait) and short-lived, so they are
 * allocated on entry and freed on leaving: an idle connection pays only for
 * what it still uses, and holds no data buffer (ac_copy borrows the worker's
 * scratch buffer, splice a pooled pipe). Teardown (nginx's finalize) is in
 * drop: close both sides, release permits, account, log one line, release
 * the generation.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "asynccore/copy.h"
#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "asynccore/tls.h"
#include "balance.h"
#include "client_table.h"
#include "proxy/conn.h"
#include "proxy/handshake.h"
#include "log/log.h"
#include "log/log_writer.h"
#include "proxy/peek.h"
#include "proxy/peer_addr.h"
#include "proxy/proxy_out.h"
#include "proto/proxy_proto.h"
#include "tls/tls_ctx.h"
#include "proxy/upstream.h"

#define CONN_MAGIC 0xc0ffee01u

enum conn_phase {
    PH_START,     /* accepted; nothing live yet */
    PH_HANDSHAKE, /* ph.hs */
    PH_UPSTREAM,  /* ph.up */
    PH_RUN,       /* ph.run */
    PH_DONE,      /* nothing live: between two phases, or ended */
};

/* How a connection ended (ferryd(8) LOGS's end=). END_NONE: not decided (the task
 * was dropped by the runtime's teardown, logged as drained). */
enum conn_end {
    END_NONE, END_CLOSED, END_RESET, END_IDLE_TIMEOUT, END_DRAINED, END_MAINT, END_REJECTED,
    END_HANDSHAKE_FAILED, END_CONNECT_FAILED, END_QUEUE_TIMEOUT, END_KILLED, END_NO_SERVER,
};

static const char *const end_names[] = {
    [END_NONE] = "drained", [END_CLOSED] = "closed", [END_RESET] = "reset",
    [END_IDLE_TIMEOUT] = "idle_timeout", [END_DRAINED] = "drained", [END_MAINT] = "maint",
    [END_REJECTED] = "rejected", [END_HANDSHAKE_FAILED] = "handshake_failed",
    [END_CONNECT_FAILED] = "connect_failed", [END_QUEUE_TIMEOUT] = "queue_timeout",
    [END_KILLED] = "killed", [END_NO_SERVER] = "no_server",
};

/* closed_by=: the side whose end was seen first. */
enum conn_side { SIDE_NONE, SIDE_CLIENT, SIDE_SERVER, SIDE_PROXY };

/* They live in bit-fields of struct ferry_conn. */
_Static_assert(PH_DONE < 8 && SIDE_PROXY < 4, "a phase or a side outgrew its bit-field");

static const char *const side_names[] = {
    [SIDE_NONE] = "proxy", [SIDE_CLIENT] = "client", [SIDE_SERVER] = "server",
    [SIDE_PROXY] = "proxy",
};

/* The upstream phase: reaching a server, and the PROXY header it is sent
 * (ferry_upstream borrows it until it is done). */
struct conn_upstream {
    struct ferry_upstream up;
    uint64_t start_us; /* ac_clock_now_us() when the phase began */
    uint8_t *proxy_out; /* NULL: the backend takes none */
    size_t proxy_out_len;
};

/* The run phase: the copy, where an idle connection waits, and its idle
 * timer. phase_run polls the two itself, and reads the worker's drain flag
 * (woken through the worker's list, ferry_conn_wake_running): no select,
 * no waiter on the drain signal, none of their bytes in every idle
 * connection. */
struct conn_run {
    struct ac_copy_bidi copy;
    struct ac_sleep idle; /* nothing moved for idle_timeout; re-armed lazily (idle_expired) */
};

/* The TLS streams over the sockets, when either side speaks TLS. The
 * client's lives on through the run phase (the copy reads it), so it is the
 * connection's, not a phase's. */
struct conn_tls {
    struct ac_tls_stream client, server;
};

/* What few connections need, allocated on first use; and the TLS streams,
 * which a plain connection never needs (so it pays not even their pointer). */
struct conn_extra {
    struct conn_tls *tls; /* NULL: plain on both sides */
    char *reason_text; /* why a handshake or the last connect failed (access log) */
    char *sni;         /* a passed-through ClientHello's server name */
    struct ferry_client_slot *client_slot; /* held against max_connections_per_client */
    struct ferry_peer_addr local; /* the address a PROXY header says the client reached */
};

struct ferry_conn {
    struct ac_future base;
    uint32_t magic;
    /* The small fields share the word after magic (every idle connection
     * pays each byte): */
    uint8_t end;     /* enum conn_end */
    uint8_t retries; /* attempts after the first (a backend's retries is at most 100) */
    unsigned phase : 3;     /* enum conn_phase */
    unsigned closed_by : 2; /* enum conn_side */
    bool backend_counted : 1, server_counted : 1;
    bool slot_held : 1; /* a slot of the server (its max_connections, queue.h) */
    bool killed : 1;    /* `shutdown conn`: end at the next poll (ferry_conn_kill) */
    /* Which stream each side is read through (cs(), ss()): TLS over the
     * socket, or the socket itself. Two bits instead of two pointers. */
    bool client_tls : 1, server_tls : 1;
    bool global_permit : 1; /* holds a permit of max_connections (the daemon's conn_limit) */
    struct ac_waker self; /* lets the runtime API wake us (maint, shutdown conn) */
    struct ac_link link; /* in the worker's list */
    struct ferry_worker *fw;
    struct ferry_gen *gen;
    uint32_t lidx;
    int32_t bidx, sidx;
    uint32_t connect_ms; /* saturates (connect_timeout is far shorter) */
    uint64_t id, start_us, last_activity; /* start_us: ac_clock_now_us() at accept */
    struct ac_limit *listener_permit; /* of its listener's max_connections; NULL: none */
    struct ferry_peer_addr client;
    const char *reason; /* end=rejected / handshake_failed: why (access log) */
    struct conn_extra *extra;

    struct ac_stream cplain, splain;

    /* Bytes accounted into the stats so far (also what `show conns` shows). */
    uint64_t acct_in, acct_out;

    union {
        struct ferry_handshake *hs;
        struct conn_upstream *up;
        struct conn_run run;
    } ph;
};

/* Idle memory is the price of every held connection: at most 1.0 KiB per
 * idle plain connection on every backend (RSS over 5,000 held, everything
 * included: this struct, the task, the reactor's registrations, and on
 * io_uring the in-flight receives). Before the phases were split it was
 * 1520 bytes (1.7 KiB idle); 752 with them (about 1.0 KiB idle; 16 of
 * them the two copies' io_uring operation slots); 520 since the run phase
 * lost its select and drain waiter and the TLS streams moved to conn_extra
 * (a 528-byte malloc chunk; tests/bench/RESULTS.md has the idle figures).
 * A field added here is paid by every idle connection: put what
 * few need in conn_extra, what one phase needs in that phase. */
#define CONN_BUDGET 520
_Static_assert(sizeof(struct ferry_conn) <= CONN_BUDGET, "struct ferry_conn outgrew its budget");

/* ---- helpers ---- */

static struct ac_stream *cs(struct ferry_conn *c)
{
    return c->client_tls ? &c->extra->tls->client.base : &c->cplain;
}

static struct ac_stream *ss(struct ferry_conn *c)
{
    return c->server_tls ? &c->extra->tls->server.base : &c->splain;
}

static const struct ferry_listener *listener_cfg(struct ferry_conn *c)
{
    return &c->gen->cfg->listeners[c->lidx];
}

static struct ferry_listener_wstats *lstats(struct ferry_conn *c)
{
    return &c->gen->listeners[c->lidx].stats->w[c->fw->index];
}

static const struct sockaddr *client_sa(const struct ferry_conn *c)
{
    return ferry_peer_addr_get(&c->client);
}

static struct conn_extra *extra(struct ferry_conn *c)
{
    if (!c->extra)
        c->extra = calloc(1, sizeof(*c->extra));
    return c->extra;
}

/* The TLS streams, NULL while neither side speaks TLS. */
static struct conn_tls *tls_get(const struct ferry_conn *c)
{
    return c->extra ? c->extra->tls : NULL;
}

/* The TLS streams, allocated on first use (NULL: out of memory). */
static struct conn_tls *tls_of(struct ferry_conn *c)
{
    struct conn_extra *x = extra(c);
    if (x && !x->tls)
        x->tls = calloc(1, sizeof(*x->tls));
    return x ? x->tls : NULL;
}

static bool allowed(const struct ferry_listener *l, const struct sockaddr *sa)
{
    for (size_t i = 0; i < l->ndeny; i++)
        if (ferry_cidr_match(&l->deny[i], sa))
            return false;
    if (l->nallow == 0)
        return true;
    for (size_t i = 0; i < l->nallow; i++)
        if (ferry_cidr_match(&l->allow[i], sa))
            return true;
    return false;
}

/* "*.example.com" matches exactly one extra label. */
static bool name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && strcasecmp(dot, pattern + 1) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

/* Backend for a server name: the first matching route, else the default. */
static int route(const struct ferry_listener *l, const char *name)
{
    for (size_t i = 0; name && name[0] && i < l->nroutes; i++)
        if (name_matches(l->routes[i].servername, name))
            return l->routes[i].backend_index;
    return l->backend_index;
}

static void account(struct ferry_conn *c)
{
    if (c->phase != PH_RUN)
        return;
    uint64_t in = c->ph.run.copy.ab.bytes, out = c->ph.run.copy.ba.bytes;
    uint64_t din = in - c->acct_in, dout = out - c->acct_out;
    if (din == 0 && dout == 0)
        return;
    struct ferry_listener_wstats *ls = lstats(c);
    ferry_ctr_add(&ls->bytes_in, din);
    ferry_ctr_add(&ls->bytes_out, dout);
    struct ferry_server_wstats *ss =
        &c->gen->backends[c->bidx].servers[c->sidx].stats->w[c->fw->index];
    ferry_ctr_add(&ss->bytes_out, din);
    ferry_ctr_add(&ss->bytes_in, dout);
    c->acct_in = in;
    c->acct_out = out;
}

/* ---- the phases: enter (build) and leave (drop) ---- */

/* Each enter returns END_NONE, or how the connection ends when the phase
 * cannot be built (it then left nothing live). */

static enum conn_end handshake_enter(struct ferry_conn *c)
{
    struct ferry_handshake *h = ferry_objcache_get(&c->fw->handshake_cache, c->fw->w, sizeof(*h));
    if (!h) {
        c->reason = "out of memory";
        return END_HANDSHAKE_FAILED;
    }
    ferry_handshake_init(h, c->start_us / 1000 + listener_cfg(c)->handshake_timeout_ms, &c->fw->drain);
    c->ph.hs = h;
    return END_NONE;
}

static void handshake_leave(struct ferry_conn *c)
{
    ac_future_drop(&c->ph.hs->base); /* the step, the deadline, the drain wait */
    ferry_objcache_put(&c->fw->handshake_cache, c->fw->w, c->ph.hs, sizeof(*c->ph.hs));
}

static int build_proxy_out(struct ferry_conn *c, struct conn_upstream *cu, int version)
{
    /* The address the client connected to: from its own PROXY header, else
     * asked of the socket now (only connections that send a header pay). */
    struct sockaddr_storage local;
    const struct sockaddr *local_sa = (const struct sockaddr *)&local;
    if (c->extra && c->extra->local.len != 0) {
        local_sa = ferry_peer_addr_get(&c->extra->local);
    } else {
        socklen_t len = sizeof(local);
        if (getsockname(ac_stream_fd(cs(c)), (struct sockaddr *)&local, &len) != 0)
            return -errno;
    }
    struct conn_tls *t = tls_get(c);
    SSL *ssl = listener_cfg(c)->tls && t ? t->client.ssl : NULL;
    struct ferry_proxy_conn pc = {
        .client = client_sa(c), .local = local_sa,
        .id = c->id, .ssl = ssl,
        .sni = ssl ? ac_tls_servername(&t->client) : c->extra ? c->extra->sni : NULL,
    };
    return ferry_proxy_out_build(version, &pc, &cu->proxy_out, &cu->proxy_out_len);
}

static enum conn_end upstream_enter(struct ferry_conn *c)
{
    if (c->bidx < 0) {
        c->reason = "no_route";
        return END_REJECTED;
    }
    const struct ferry_backend_rt *brt = &c->gen->backends[c->bidx];
    /* From the worker's cache, uninitialised: ferry_upstream_init clears
     * cu->up (calloc would also skip glibc's per-thread cache). */
    struct conn_upstream *cu = ferry_objcache_get(&c->fw->upstream_cache, c->fw->w, sizeof(*cu));
    if (cu) {
        cu->proxy_out = NULL;
        cu->proxy_out_len = 0;
    }
    if (!cu || (brt->tls_ctx && !tls_of(c)) ||
        (brt->cfg->send_proxy && build_proxy_out(c, cu, brt->cfg->send_proxy) != 0)) {
        if (cu)
            free(cu->proxy_out);
        ferry_objcache_put(&c->fw->upstream_cache, c->fw->w, cu, sizeof(*cu));
        return END_CONNECT_FAILED;
    }
    ferry_upstream_init(&cu->up, c->gen, (size_t)c->bidx, c->fw->index,
                        ferry_lb_hash_addr(client_sa(c)), cu->proxy_out, cu->proxy_out_len,
                        &c->splain, brt->tls_ctx ? &c->extra->tls->server : NULL);
    cu->start_us = ac_clock_now_us();
    c->ph.up = cu;
    struct ferry_backend_wstats *bs = &c->gen->backends[c->bidx].stats->w[c->fw->index];
    ferry_ctr_add(&bs->total, 1);
    ferry_ctr_add(&bs->active, 1);
    c->backend_counted = true;
    return END_NONE;
}

static void upstream_leave(struct ferry_conn *c)
{
    ac_future_drop(&c->ph.up->up.base); /* an unfinished attempt closes its socket */
    free(c->ph.up->proxy_out);
    ferry_objcache_put(&c->fw->upstream_cache, c->fw->w, c->ph.up, sizeof(*c->ph.up));
}

static void run_enter(struct ferry_conn *c, struct ac_context *cx)
{
    struct conn_run *r = &c->ph.run;
    size_t bufsize = c->gen->cfg->global.buffer_size;
    c->last_activity = ac_worker_now_ms(cx->worker);
    ac_copy_bidi_init(&r->copy, cs(c), ss(c), bufsize);
    r->copy.close_after = true; /* conn_drop closes both at once */
    /* Plain on both sides: bulk data goes zero copy through a pooled pipe,
     * small messages through the buffer copy, cheaper for them (TLS: buffers). */
    (void)ac_copy_bidi_splice_auto(&r->copy);
    r->copy.ab.activity = &c->last_activity;
    r->copy.ba.activity = &c->last_activity;
    ac_sleep_init(&r->idle, listener_cfg(c)->idle_timeout_ms);
}

static void run_leave(struct ferry_conn *c)
{
    account(c);
    ac_future_drop(&c->ph.run.copy.base);
    ac_future_drop(&c->ph.run.idle.base); /* its wheel entry */
}

/* Drops whatever phase is live; nothing is afterwards (PH_DONE). */
static void conn_leave(struct ferry_conn *c)
{
    switch (c->phase) {
    case PH_HANDSHAKE: handshake_leave(c); break;
    case PH_UPSTREAM: upstream_leave(c); break;
    case PH_RUN: run_leave(c); break;
    default: break;
    }
    c->phase = PH_DONE;
}

/* The one place a connection changes phase: the current one is dropped
 * before the next is built. Returns END_NONE, or how the connection ends
 * when the next phase could not be built (nothing is live then). */
static enum conn_end conn_enter(struct ferry_conn *c, enum conn_phase next, struct ac_context *cx)
{
    conn_leave(c);
    enum conn_end e = END_NONE;
    switch (next) {
    case PH_HANDSHAKE: e = handshake_enter(c); break;
    case PH_UPSTREAM: e = upstream_enter(c); break;
    case PH_RUN: run_enter(c, cx); break;
    default: break;
    }
    if (e == END_NONE)
        c->phase = (uint8_t)next;
    return e;
}

static ac_poll_t end_with(struct ferry_conn *c, enum conn_end end)
{
    conn_leave(c);
    c->end = (uint8_t)end;
    if (!c->closed_by && end != END_CLOSED && end != END_RESET)
        c->closed_by = SIDE_PROXY;
    if (end == END_REJECTED || end == END_HANDSHAKE_FAILED)
        ferry_ctr_add(&lstats(c)->rejected, 1);
    int why = end == END_REJECTED ? ferry_reject_reason_of(c->reason) : -1;
    if (why >= 0)
        ferry_ctr_add(&lstats(c)->rejected_by[why], 1);
    if (end == END_HANDSHAKE_FAILED)
        ferry_ctr_add(&lstats(c)->handshake_errors, 1);
    return AC_READY;
}

/* conn_enter, ending the connection when the phase cannot be built. */
static ac_poll_t go(struct ferry_conn *c, enum conn_phase next, struct ac_context *cx)
{
    enum conn_end e = conn_enter(c, next, cx);
    return e == END_NONE ? AC_READY : end_with(c, e);
}

/* allow/deny, then the per-client caps (client_table.h), once the client's
 * address is final: false with c->reason set when it is refused. */
static bool admitted(struct ferry_conn *c)
{
    const struct ferry_listener_rt *rt = &c->gen->listeners[c->lidx];
    if (!allowed(rt->cfg, client_sa(c))) {
        c->reason = "deny";
        return false;
    }
    if (!rt->clients)
        return true;
    struct ferry_client_slot *slot = NULL;
    enum ferry_client_verdict v = ferry_client_admit(
        rt->clients, client_sa(c), rt->cfg->max_connections_per_client, rt->cfg->client_rate,
        ac_worker_now_ms(c->fw->w), &slot);
    if (v == FERRY_CLIENT_OK && slot && !extra(c)) {
        ferry_client_release(slot);
        c->reason = "client_limit"; /* out of memory: as if at the cap */
        return false;
    }
    if (v == FERRY_CLIENT_OK) {
        if (slot)
            c->extra->client_slot = slot;
        return true;
    }
    c->reason = v == FERRY_CLIENT_LIMIT ? "client_limit" : "client_rate";
    return false;
}

static const char *client_text(struct ferry_conn *c, char *buf, size_t len)
{
    return ac_addr_format(client_sa(c), c->client.len, buf, len);
}

/* ---- the handshake phase's steps ---- */

/* Starts a step under the shared deadline, entering the handshake phase
 * first when this is its first step. */
static ac_poll_t begin_step(struct ferry_conn *c, enum ferry_hs_step step, struct ac_context *cx)
{
    if (c->phase != PH_HANDSHAKE) {
        enum conn_end e = conn_enter(c, PH_HANDSHAKE, cx);
        if (e != END_NONE)
            return end_with(c, e);
    }
    if (step == FERRY_HS_TLS)
        ferry_handshake_tls(c->ph.hs, &c->extra->tls->client);
    else
        ferry_handshake_peek(c->ph.hs, step, cs(c));
    return AC_READY;
}

/* What comes after the PROXY header (or the accept): TLS, a ClientHello
 * peek, or the backend. */
static ac_poll_t after_proxy(struct ferry_conn *c, struct ac_context *cx)
{
    const struct ferry_listener *l = listener_cfg(c);
    if (l->tls) {
        struct conn_tls *t = tls_of(c);
        if (!t || ac_tls_stream_wrap(&t->client, &c->cplain, c->gen->listeners[c->lidx].tls_ctx,
                                     true) < 0) {
            c->reason = "setup failed";
            return end_with(c, END_HANDSHAKE_FAILED);
        }
        c->client_tls = true;
        return begin_step(c, FERRY_HS_TLS, cx);
    }
    if (l->nroutes > 0)
        return begin_step(c, FERRY_HS_HELLO, cx);
    c->bidx = l->backend_index;
    return go(c, PH_UPSTREAM, cx);
}

/* A peek's failure (timeout, EOF, garbage): rejected, said at debug level. */
static ac_poll_t peek_failed(struct ferry_conn *c, bool timeout, int err)
{
    bool proxy = c->ph.hs->step == FERRY_HS_PROXY;
    ferry_log(FERRY_LOG_DEBUG, proxy ? "bad_proxy" : "bad_hello", "id=%llu error=%s",
              (unsigned long long)c->id, timeout ? "timeout" : err == -EPIPE ? "eof" : "invalid");
    c->reason = proxy ? "bad_proxy" : "bad_hello";
    return end_with(c, END_REJECTED);
}

static ac_poll_t proxy_done(struct ferry_conn *c, struct ac_context *cx)
{
    struct ferry_peek *p = &c->ph.hs->s.peek;
    /* Only an IPv4 or IPv6 source names a client; a UNIX (or any other)
     * family leaves the socket's peer as the client, allow/deny included. */
    sa_family_t fam = p->proxy.src.ss_family;
    if (p->proxy.has_addrs && (fam == AF_INET || fam == AF_INET6)) {
        struct conn_extra *x = extra(c);
        if (!x ||
            ferry_peer_addr_set(&c->client, (struct sockaddr *)&p->proxy.src, p->proxy.src_len) < 0 ||
            ferry_peer_addr_set(&x->local, (struct sockaddr *)&p->proxy.dst, p->proxy.dst_len) < 0)
            return peek_failed(c, false, -ENOMEM);
    }
    if (!admitted(c))
        return end_with(c, END_REJECTED);
    return after_proxy(c, cx);
}

static ac_poll_t hello_done(struct ferry_conn *c, struct ac_context *cx)
{
    struct ferry_clienthello *hello = &c->ph.hs->s.peek.hello;
    if (hello->has_sni) {
        struct conn_extra *x = extra(c);
        if (!x || !(x->sni = strdup(hello->server_name)))
            return end_with(c, END_REJECTED);
    }
    c->bidx = route(listener_cfg(c), hello->has_sni ? c->extra->sni : NULL);
    return go(c, PH_UPSTREAM, cx);
}

static ac_poll_t tls_done(struct ferry_conn *c, struct ac_context *cx, bool timeout)
{
    struct ac_tls_handshake *hs = &c->ph.hs->s.tls;
    if (timeout || hs->err) {
        c->reason = "timeout";
        struct conn_extra *x = timeout ? NULL : extra(c);
        if (!timeout && ferry_tls_no_certificate(c->extra->tls->client.ssl))
            c->reason = "no_certificate"; /* a tls_acme name before its first certificate */
        else if (x) /* OpenSSL's words, kept for the conn line */
            c->reason = x->reason_text = strdup(hs->reason);
        return end_with(c, END_HANDSHAKE_FAILED);
    }
    ferry_hist_observe(&lstats(c)->handshake, FERRY_HIST_SHORT,
                       ac_clock_now_us() - c->start_us);
    if (ferry_tls_acme_challenge(c->extra->tls->client.ssl)) {
        /* tls-alpn-01 (RFC 8737): the handshake was the answer; nothing follows. */
        c->closed_by = SIDE_PROXY;
        return end_with(c, END_CLOSED);
    }
    c->bidx = route(listener_cfg(c), ac_tls_servername(&c->extra->tls->client));
    return go(c, PH_UPSTREAM, cx);
}

static ac_poll_t phase_handshake(struct ferry_conn *c, struct ac_context *cx)
{
    struct ferry_handshake *h = c->ph.hs;
    if (ac_future_poll(&h->base, cx) == AC_PENDING)
        return AC_PENDING;
    if (h->end == FERRY_HS_DRAINED)
        return end_with(c, END_DRAINED);
    bool timeout = h->end == FERRY_HS_TIMEOUT;
    if (h->step == FERRY_HS_TLS)
        return tls_done(c, cx, timeout);
    if (timeout || h->s.peek.err)
        return peek_failed(c, timeout, h->s.peek.err);
    return h->step == FERRY_HS_PROXY ? proxy_done(c, cx) : hello_done(c, cx);
}

/* ---- the upstream and run phases ---- */

/* retries= of the access log: the attempts after the first. */
static uint8_t retries_of(const struct ferry_upstream *u)
{
    unsigned r = u->attempts > 0 ? u->attempts - 1 : 0;
    return r > UINT8_MAX ? UINT8_MAX : (uint8_t)r;
}

static ac_poll_t phase_upstream(struct ferry_conn *c, struct ac_context *cx)
{
    struct ferry_upstream *u = &c->ph.up->up;
    if (ac_future_poll(&u->base, cx) == AC_PENDING)
        return AC_PENDING;
    if (u->qend == FERRY_QUEUE_DRAINED)
        return end_with(c, END_DRAINED);
    if (u->qend != FERRY_QUEUE_NONE) {
        char a[AC_ADDR_STRLEN];
        bool full = u->qend == FERRY_QUEUE_FULL;
        ferry_log(FERRY_LOG_INFO, full ? "queue_full" : "queue_timeout",
                  "listener=%s client=%s backend=%s", listener_cfg(c)->name,
                  client_text(c, a, sizeof(a)), c->gen->cfg->backends[c->bidx].name);
        c->reason = full ? "queue_full" : NULL;
        return end_with(c, full ? END_REJECTED : END_QUEUE_TIMEOUT);
    }
    if (u->err || !u->stream) {
        if (u->local) /* said once a second by the worker's pressure warning */
            return end_with(c, END_CONNECT_FAILED);
        char a[AC_ADDR_STRLEN];
        c->retries = retries_of(u);
        const char *why = u->reason ? u->reason : strerror(u->err ? -u->err : EIO);
        ferry_log(FERRY_LOG_WARN, "no_server_reached",
                  "id=%llu listener=%s client=%s backend=%s error=%s", (unsigned long long)c->id,
                  listener_cfg(c)->name,
                  client_text(c, a, sizeof(a)),
                  c->gen->cfg->backends[c->bidx].name, why);
        if (u->attempts == 0) /* none up, or every one at its cap with no queue */
            return end_with(c, END_NO_SERVER);
        /* The last attempt's error, on the access-log line itself. */
        struct conn_extra *x = extra(c);
        c->reason = x && (x->reason_text = strdup(why)) ? x->reason_text : NULL;
        return end_with(c, END_CONNECT_FAILED);
    }
    c->sidx = u->sidx;
    c->server_tls = u->stream != &c->splain; /* else &c->extra->tls->server.base */
    c->slot_held = u->slot_held; /* passes to the connection with the stream */
    u->slot_held = false;
    c->retries = retries_of(u);
    uint64_t connect_us = ac_clock_now_us() - c->ph.up->start_us;
    c->connect_ms = connect_us / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(connect_us / 1000);
    struct ferry_server_rt *s = &c->gen->backends[c->bidx].servers[c->sidx];
    ferry_hist_observe(&s->stats->w[c->fw->index].connect, FERRY_HIST_SHORT, connect_us);
    ferry_ctr_add(&s->stats->w[c->fw->index].total, 1);
    atomic_fetch_add_explicit(&s->stats->active, 1, memory_order_relaxed);
    c->server_counted = true;
    return go(c, PH_RUN, cx);
}

/* The idle timer: true once nothing moved for idle_timeout. Re-armed
 * lazily: the copies only stamp last_activity, and the sleep is moved on
 * when it fires early. */
static bool idle_expired(struct ferry_conn *c, struct ac_context *cx)
{
    struct ac_sleep *s = &c->ph.run.idle;
    for (;;) {
        if (ac_future_poll(&s->base, cx) == AC_PENDING)
            return false;
        uint64_t due = c->last_activity + listener_cfg(c)->idle_timeout_ms;
        if (due <= ac_worker_now_ms(cx->worker))
            return true;
        ac_sleep_reset(s, due);
    }
}

/* closed_by: the side whose end (FIN or reset) is seen first. A reset
 * found writing (EPIPE) is the receiving side's. */
static void note_closed_by(struct ferry_conn *c)
{
    if (c->closed_by)
        return;
    const struct ac_copy *ab = &c->ph.run.copy.ab, *ba = &c->ph.run.copy.ba;
    if (ab->read_eof || (ab->err && ab->err != -EPIPE) || (ba->err == -EPIPE))
        c->closed_by = SIDE_CLIENT;
    else if (ba->read_eof || ba->err || ab->err)
        c->closed_by = SIDE_SERVER;
}

static ac_poll_t phase_run(struct ferry_conn *c, struct ac_context *cx)
{
    /* An operator put the server in maint: cut (ferry_conn_wake_server). */
    if (atomic_load_explicit(&c->gen->backends[c->bidx].servers[c->sidx].stats->maint,
                             memory_order_relaxed))
        return end_with(c, END_MAINT);
    /* The first of the copy, the idle timer and the drain signal decides,
     * in that order (the losers are dropped by end_with's run_leave). */
    struct conn_run *r = &c->ph.run;
    enum conn_end e = END_NONE;
    if (ac_future_poll(&r->copy.base, cx) == AC_READY)
        e = r->copy.err == 0 ? END_CLOSED : END_RESET;
    else if (idle_expired(c, cx))
        e = END_IDLE_TIMEOUT;
    else if (ac_local_notify_is_set(&c->fw->drain)) /* a stop's drain_timeout ended */
        e = END_DRAINED;
    account(c);
    note_closed_by(c);
    return e == END_NONE ? AC_PENDING : end_with(c, e);
}

/* accept_proxy_from: the peers whose PROXY header is believed (none
 * listed: every peer, as the man page warns). */
static bool proxy_trusted(const struct ferry_listener *l, const struct sockaddr *sa)
{
    if (l->nproxy_from == 0)
        return true;
    for (size_t i = 0; i < l->nproxy_from; i++)
        if (ferry_cidr_match(&l->proxy_from[i], sa))
            return true;
    return false;
}

static ac_poll_t conn_start(struct ferry_conn *c, struct ac_context *cx)
{
    const struct ferry_listener *l = listener_cfg(c);
    if (l->accept_proxy) {
        if (!proxy_trusted(l, client_sa(c))) { /* closed before a byte is read */
            c->reason = "proxy_untrusted";
            return end_with(c, END_REJECTED);
        }
        return begin_step(c, FERRY_HS_PROXY, cx);
    }
    if (!admitted(c))
        return end_with(c, END_REJECTED);
    return after_proxy(c, cx);
}

static ac_poll_t conn_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_conn *c = (struct ferry_conn *)f;
    assert(c->magic == CONN_MAGIC); /* a stale wake-up of a freed connection */
    if (c->phase == PH_START)
        c->self = ac_waker_clone(cx->waker); /* the task's: the same on every poll */
    for (;;) {
        if (c->killed && c->phase != PH_DONE) {
            c->closed_by = SIDE_PROXY; /* whatever either peer did before */
            return end_with(c, END_KILLED);
        }
        ac_poll_t r;
        switch (c->phase) {
        case PH_START: r = conn_start(c, cx); break;
        case PH_HANDSHAKE: r = phase_handshake(c, cx); break;
        case PH_UPSTREAM: r = phase_upstream(c, cx); break;
        case PH_RUN: r = phase_run(c, cx); break;
        default: return AC_READY;
        }
        if (r == AC_PENDING)
            return AC_PENDING;
    }
}

/* ---- teardown ---- */

/* The TLS facts of the client side, when it was terminated here. */
static void tls_facts(struct ferry_conn *c, const char **sni, const char **ver,
                      const char **cipher, char *alpn, size_t alpn_len, char *subject,
                      size_t subject_len)
{
    struct conn_tls *t = tls_get(c);
    SSL *ssl = t ? t->client.ssl : NULL;
    *sni = c->extra ? c->extra->sni : NULL;
    if (!ssl)
        return;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name)
        *sni = name;
    if (!SSL_is_init_finished(ssl))
        return;
    *ver = SSL_get_version(ssl);
    *cipher = SSL_get_cipher_name(ssl);
    const unsigned char *a;
    unsigned an;
    SSL_get0_alpn_selected(ssl, &a, &an);
    if (an)
        snprintf(alpn, alpn_len, "%.*s", (int)an, (const char *)a);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    BIO *bio = peer ? BIO_new(BIO_s_mem()) : NULL;
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(bio, subject, (int)subject_len - 1); /* "CN=client,O=Example" */
        subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
}

/* The access-log line (ferryd(8) LOGS), independent of log_level. Optional fields
 * are left out when unknown. */
static void log_end(struct ferry_conn *c)
{
    struct ferry_logger *lg = &c->fw->d->log;
    if (!c->gen->cfg->global.access_log || !ferry_logger_running(lg))
        return;
    char a[AC_ADDR_STRLEN];
    char server[2 * FERRY_NAME_MAX + 2] = "-";
    if (c->server_counted)
        snprintf(server, sizeof(server), "%s/%s", c->gen->cfg->backends[c->bidx].name,
                 c->gen->backends[c->bidx].servers[c->sidx].cfg->name);
    bool why = c->end == END_REJECTED || c->end == END_HANDSHAKE_FAILED ||
               (c->end == END_CONNECT_FAILED && c->reason);
    const char *sni = NULL, *ver = NULL, *cipher = NULL;
    char alpn[64] = "", subject[256] = "";
    tls_facts(c, &sni, &ver, &cipher, alpn, sizeof(alpn), subject, sizeof(subject));
    uint64_t now_us = ac_clock_now_us();
    ferry_logger_log(lg, c->fw->index, FERRY_LOG_SINK_ACCESS, FERRY_LOG_INFO, "conn",
                     "id=%llu listener=%s client=%s server=%s duration_ms=%llu connect_ms=%llu "
                     "retries=%u bytes_in=%llu bytes_out=%llu end=%s closed_by=%s ?reason=%s "
                     "?sni=%s ?tls=%s ?cipher=%s ?alpn=%s ?client_cert=%s",
                     (unsigned long long)c->id, listener_cfg(c)->name,
                     client_text(c, a, sizeof(a)), server,
                     (unsigned long long)((now_us - c->start_us) / 1000), (unsigned long long)c->connect_ms,
                     (unsigned)c->retries, (unsigned long long)c->acct_in,
                     (unsigned long long)c->acct_out, end_names[c->end], side_names[c->closed_by],
                     why ? (c->reason ? c->reason : "-") : "", sni ? sni : "", ver ? ver : "",
                     cipher ? cipher : "", alpn, subject);
}

/* The worker's list is its own: linked and unlinked on its thread only (or
 * by ac_runtime_free once every loop stopped), read by conns_view.c's task
 * on the same thread. */
static void unlist(struct ferry_conn *c)
{
    ac_list_remove(&c->fw->conns, &c->link);
}

static void conn_drop(struct ac_future *f)
{
    struct ferry_conn *c = (struct ferry_conn *)f;
    assert(c->magic == CONN_MAGIC);
    conn_leave(c);
    ac_waker_drop(&c->self);
    log_end(c);
    /* A reset from either peer reaches the other as a reset, so a cut-off
     * stream never looks complete (ferryd(8) LOGS: end=reset). */
    void (*close_fn)(struct ac_stream *) = c->end == END_RESET ? ac_stream_abort : ac_stream_close;
    struct conn_tls *t = tls_get(c);
    if (t)
        close_fn(&t->client.base);
    close_fn(&c->cplain);
    if (t)
        close_fn(&t->server.base);
    close_fn(&c->splain);
    unsigned w = c->fw->index;
    ferry_ctr_sub(&lstats(c)->active, 1);
    ferry_hist_observe(&lstats(c)->session, FERRY_HIST_SESSION, ac_clock_now_us() - c->start_us);
    if (c->backend_counted)
        ferry_ctr_sub(&c->gen->backends[c->bidx].stats->w[w].active, 1);
    if (c->server_counted)
        atomic_fetch_sub_explicit(&c->gen->backends[c->bidx].servers[c->sidx].stats->active, 1,
                                  memory_order_relaxed);
    if (c->slot_held)
        ferry_slot_put(&c->gen->backends[c->bidx].servers[c->sidx].stats->slots,
                       &c->gen->backends[c->bidx].stats->queue);
    if (c->global_permit)
        ac_limit_put(&c->fw->d->conn_limit);
    if (c->listener_permit)
        ac_limit_put(c->listener_permit);
    unlist(c);
    if (c->extra) {
        free(c->extra->reason_text);
        ferry_client_release(c->extra->client_slot);
        free(c->extra->sni);
        ferry_peer_addr_clear(&c->extra->local);
        free(c->extra->tls);
        free(c->extra);
    }
    ferry_peer_addr_clear(&c->client);
    ferry_gen_unref(c->gen);
    c->magic = 0;
}

static const struct ac_future_vtable conn_vt = {conn_poll, conn_drop};

/* The task's dealloc, after conn_drop: the worker's cache takes it back. */
static void conn_free(struct ac_future *f)
{
    struct ferry_conn *c = (struct ferry_conn *)f;
    struct ferry_worker *fw = c->fw;
    ferry_objcache_put(&fw->conn_cache, fw->w, c, sizeof(*c));
}

void ferry_conn_spawn(struct ferry_worker *fw, struct ferry_gen *g, size_t lidx, int fd,
                      const struct sockaddr_storage *peer, socklen_t peer_len,
                      struct ferry_permits permits)
{
    struct ferry_conn *c = ferry_objcache_get(&fw->conn_cache, fw->w, sizeof(*c));
    if (c)
        memset(c, 0, sizeof(*c));
    const char *why = !c ? "out of memory"
                      : ferry_peer_addr_set(&c->client, (const struct sockaddr *)peer, peer_len) < 0
                          ? "out of memory"
                      : ac_socket_stream_open(&c->cplain, fw->w, fd) != 0 ? "registration failed"
                                                                          : NULL;
    if (why) {
        ferry_log(FERRY_LOG_ERROR, "conn_setup_failed", "listener=%s error=%s",
                  g->cfg->listeners[lidx].name, why);
        close(fd);
        if (c)
            ferry_peer_addr_clear(&c->client);
        ferry_objcache_put(&fw->conn_cache, fw->w, c, sizeof(*c));
        if (permits.global)
            ac_limit_put(permits.global);
        if (permits.listener)
            ac_limit_put(permits.listener);
        ferry_gen_unref(g);
        return;
    }
    c->base.vt = &conn_vt;
    c->magic = CONN_MAGIC;
    c->phase = PH_START;
    c->fw = fw;
    c->gen = g;
    c->lidx = (uint32_t)lidx;
    c->bidx = -1;
    c->sidx = -1;
    /* The global permit is always the daemon's conn_limit (listen.c): a bit. */
    assert(!permits.global || permits.global == &fw->d->conn_limit);
    c->global_permit = permits.global != NULL;
    c->listener_permit = permits.listener;
    c->id = atomic_fetch_add(&fw->d->next_conn_id, 1) + 1;
    c->start_us = ac_clock_now_us();
    struct ferry_listener_wstats *ls = lstats(c);
    ferry_ctr_add(&ls->total, 1);
    ferry_ctr_add(&ls->active, 1);
    assert(ac_worker_current() == fw->w); /* the list is this thread's alone */
    ac_list_push_front(&fw->conns, &c->link); /* newest first */
    ac_spawn(fw->w, &c->base, conn_free); /* on failure the task drops and frees it */
}

/* ---- views for the control socket ---- */

struct ferry_conn *ferry_conn_next(const struct ferry_worker *fw, const struct ferry_conn *c)
{
    const struct ac_link *k = c ? c->link.next : fw->conns.first;
    return k ? AC_LIST_ENTRY(k, struct ferry_conn, link) : NULL;
}

bool ferry_conn_kill(struct ferry_worker *fw, uint64_t id)
{
    for (struct ferry_conn *c = ferry_conn_next(fw, NULL); c; c = ferry_conn_next(fw, c)) {
        if (c->id != id || c->killed)
            continue;
        c->killed = true;
        ac_waker_wake_by_ref(&c->self); /* none yet: its first poll sees the flag */
        return true;
    }
    return false;
}

void ferry_conn_wake_server(struct ferry_worker *fw, const struct ferry_server_stats *s)
{
    for (struct ferry_conn *c = ferry_conn_next(fw, NULL); c; c = ferry_conn_next(fw, c))
        if (c->phase == PH_RUN && c->gen->backends[c->bidx].servers[c->sidx].stats == s)
            ac_waker_wake_by_ref(&c->self);
}

void ferry_conn_wake_running(struct ferry_worker *fw)
{
    for (struct ferry_conn *c = ferry_conn_next(fw, NULL); c; c = ferry_conn_next(fw, c))
        if (c->phase == PH_RUN)
            ac_waker_wake_by_ref(&c->self);
}

void ferry_conn_snapshot(const struct ferry_conn *c, uint64_t now, struct ferry_conn_snapshot *s)
{
    s->id = c->id;
    snprintf(s->listener, sizeof(s->listener), "%s", c->gen->cfg->listeners[c->lidx].name);
    ac_addr_format(client_sa(c), c->client.len, s->client, sizeof(s->client));
    if (c->server_counted)
        snprintf(s->server, sizeof(s->server), "%s/%s", c->gen->cfg->backends[c->bidx].name,
                 c->gen->backends[c->bidx].servers[c->sidx].cfg->name);
    else
        snprintf(s->server, sizeof(s->server), "-");
    s->age_s = now * 1000 > c->start_us ? (now * 1000 - c->start_us) / 1000000 : 0;
    s->bytes_in = c->acct_in;
    s->bytes_out = c->acct_out;
}

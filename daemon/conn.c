/* ferryd: one proxied connection, as one task whose future is composed:
 *
 *   allow/deny
 *   -> PROXY header, TLS handshake or ClientHello peek, under one
 *      handshake_timeout deadline (and the drain signal)
 *   -> route, then upstream (pick, connect under connect_timeout, retries,
 *      PROXY header out, TLS to the server)
 *   -> select(copy_bidi(client, server), idle timer, drain signal)
 *
 * The phases share one union, so a connection is one allocation sized by its
 * largest phase, and holds no data buffer while idle (ac_copy borrows the
 * worker's scratch buffer). Teardown (nginx's finalize) is in drop: close both
 * sides, release permits, account, log one line, release the generation.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "asynccore/combinators.h"
#include "asynccore/copy.h"
#include "asynccore/net.h"
#include "asynccore/tls.h"
#include "balance.h"
#include "client_table.h"
#include "conn.h"
#include "log.h"
#include "log_writer.h"
#include "peek.h"
#include "proxy_out.h"
#include "proxy_proto.h"
#include "upstream.h"

#define CONN_MAGIC 0xc0ffee01u

enum phase { P_START, P_PROXY, P_ROUTE, P_TLS, P_HELLO, P_UPSTREAM, P_COPY, P_DONE };

/* Ready when nothing moved for idle_ms. Re-armed lazily: the copies only
 * stamp *activity; the sleep is moved when it fires early. */
struct idle_fut {
    struct ac_future base;
    struct ac_sleep sleep;
    const uint64_t *activity;
    uint64_t idle_ms;
};

struct ferry_conn {
    struct ac_future base;
    uint32_t magic;
    enum phase phase;
    struct ferry_conn *next, *prev; /* worker's list */
    struct ferry_worker *fw;
    struct ferry_gen *gen;
    size_t lidx;
    int bidx, sidx;
    uint64_t id, start_ms, last_activity;
    struct ferry_permits permits;
    struct sockaddr_storage client, local;
    socklen_t client_len, local_len;
    const char *end;
    const char *reason;  /* end=rejected / handshake_failed: why (access log) */
    char *reason_text;   /* owned copy when the reason is OpenSSL's words */
    const char *closed_by;
    uint64_t up_start_ms, connect_ms;
    unsigned retries;
    uint8_t *proxy_out; /* PROXY header for the server, when sent */
    char *sni;          /* a passed-through ClientHello's server name, or NULL */
    struct ferry_client_slot *client_slot; /* held against max_connections_per_client */
    size_t proxy_out_len;
    bool backend_counted, server_counted;
    bool slot_held;     /* a slot of the server (its max_connections, queue.h) */

    struct ac_stream cplain, splain;
    struct ac_tls_stream ctls, stls;
    struct ac_stream *cs, *ss;

    /* Bytes accounted into the stats so far (also what `show conns` shows). */
    uint64_t acct_in, acct_out;

    union {
        struct {
            struct ac_sleep deadline;
            struct ac_local_notified drain; /* a stop's drain_timeout ended: give up */
            bool deadline_live, step_live;
            union {
                struct ferry_peek peek;
                struct ac_tls_handshake hs;
            };
        } pre;
        struct ferry_upstream up;
        struct {
            struct ac_copy_bidi copy;
            struct idle_fut idle;
            struct ac_local_notified drain;
            struct ac_future *futs[3];
            struct ac_select_n sel;
        } run;
    } u;
    bool u_live;
    struct ac_waker self; /* while copying: lets the runtime API wake us (maint) */
};

/* ---- the idle timer ---- */

static ac_poll_t idle_poll(struct ac_future *f, struct ac_context *cx)
{
    struct idle_fut *t = (struct idle_fut *)f;
    for (;;) {
        if (ac_future_poll(&t->sleep.base, cx) == AC_PENDING)
            return AC_PENDING;
        uint64_t due = *t->activity + t->idle_ms;
        if (due <= ac_worker_now_ms(cx->worker))
            return AC_READY;
        ac_sleep_reset(&t->sleep, due);
    }
}

static void idle_drop(struct ac_future *f) { ac_future_drop(&((struct idle_fut *)f)->sleep.base); }

static const struct ac_future_vtable idle_vt = {idle_poll, idle_drop};

/* ---- helpers ---- */

static const struct ferry_listener *listener_cfg(struct ferry_conn *c)
{
    return &c->gen->cfg->listeners[c->lidx];
}

static struct ferry_listener_wstats *lstats(struct ferry_conn *c)
{
    return &c->gen->listeners[c->lidx].stats->w[c->fw->index];
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
    if (c->phase != P_COPY)
        return;
    uint64_t in = c->u.run.copy.ab.bytes, out = c->u.run.copy.ba.bytes;
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

static void drop_phase(struct ferry_conn *c)
{
    if (!c->u_live)
        return;
    c->u_live = false;
    switch (c->phase) {
    case P_PROXY:
    case P_HELLO:
    case P_TLS:
        if (c->u.pre.step_live) {
            if (c->phase == P_TLS)
                ac_future_drop(&c->u.pre.hs.base);
            else
                ac_future_drop(&c->u.pre.peek.base);
        }
        c->u.pre.step_live = false;
        break;
    case P_UPSTREAM:
        ac_future_drop(&c->u.up.base);
        break;
    case P_COPY:
        account(c);
        ac_future_drop(&c->u.run.sel.base);
        ac_waker_drop(&c->self);
        break;
    default:
        break;
    }
}

/* The handshake deadline is shared by PROXY, ClientHello and TLS phases. */
static void pre_begin(struct ferry_conn *c)
{
    if (!c->u.pre.deadline_live) {
        ac_sleep_init_deadline(&c->u.pre.deadline,
                               c->start_ms + listener_cfg(c)->handshake_timeout_ms);
        ac_local_notified_init(&c->u.pre.drain, &c->fw->drain);
        c->u.pre.deadline_live = true;
    }
    c->u_live = true;
    c->u.pre.step_live = true;
}

static void pre_end(struct ferry_conn *c)
{
    drop_phase(c);
    c->u_live = false;
}

static void pre_finish(struct ferry_conn *c)
{
    if (c->u.pre.deadline_live) {
        ac_future_drop(&c->u.pre.deadline.base);
        ac_future_drop(&c->u.pre.drain.base);
    }
    c->u.pre.deadline_live = false;
}

static ac_poll_t end_with(struct ferry_conn *c, const char *end)
{
    drop_phase(c);
    if (c->phase == P_PROXY || c->phase == P_HELLO || c->phase == P_TLS || c->phase == P_START ||
        c->phase == P_ROUTE)
        pre_finish(c);
    c->end = end;
    c->phase = P_DONE;
    if (!c->closed_by && strcmp(end, "closed") != 0 && strcmp(end, "reset") != 0)
        c->closed_by = "proxy";
    if (strcmp(end, "rejected") == 0 || strcmp(end, "handshake_failed") == 0)
        ferry_ctr_add(&lstats(c)->rejected, 1);
    int why = strcmp(end, "rejected") == 0 ? ferry_reject_reason_of(c->reason) : -1;
    if (why >= 0)
        ferry_ctr_add(&lstats(c)->rejected_by[why], 1);
    if (strcmp(end, "handshake_failed") == 0)
        ferry_ctr_add(&lstats(c)->handshake_errors, 1);
    return AC_READY;
}

enum pre_stop { PRE_DONE, PRE_TIMEOUT, PRE_DRAINED };

/* Polls a handshake-phase step against the shared deadline and the end of a
 * stop's drain_timeout (which cuts every connection, handshaking or not).
 * Returns AC_READY when the step finished or was cut; *why tells which. */
static ac_poll_t poll_pre(struct ferry_conn *c, struct ac_future *step, struct ac_context *cx,
                          enum pre_stop *why)
{
    *why = PRE_DONE;
    if (ac_future_poll(step, cx) == AC_READY)
        return AC_READY;
    if (ac_future_poll(&c->u.pre.deadline.base, cx) == AC_READY) {
        *why = PRE_TIMEOUT;
        return AC_READY;
    }
    if (ac_future_poll(&c->u.pre.drain.base, cx) == AC_READY) {
        *why = PRE_DRAINED;
        return AC_READY;
    }
    return AC_PENDING;
}

/* allow/deny, then the per-client caps (client_table.h), once the client's
 * address is final: false with c->reason set when it is refused. */
static bool admitted(struct ferry_conn *c)
{
    const struct ferry_listener_rt *rt = &c->gen->listeners[c->lidx];
    if (!allowed(rt->cfg, (struct sockaddr *)&c->client)) {
        c->reason = "deny";
        return false;
    }
    if (!rt->clients)
        return true;
    enum ferry_client_verdict v = ferry_client_admit(
        rt->clients, (struct sockaddr *)&c->client, rt->cfg->max_connections_per_client,
        rt->cfg->client_rate, ac_worker_now_ms(c->fw->w), &c->client_slot);
    if (v == FERRY_CLIENT_OK)
        return true;
    c->reason = v == FERRY_CLIENT_LIMIT ? "client_limit" : "client_rate";
    return false;
}

/* ---- phases ---- */

static const char *client_text(struct ferry_conn *c, char *buf, size_t len)
{
    return ac_addr_format((struct sockaddr *)&c->client, c->client_len, buf, len);
}

/* Polls a peek (PROXY header or ClientHello) under the handshake deadline.
 * Ready with *ok when the bytes parsed; otherwise the connection has ended
 * (drained, or rejected with a log line naming `what`). */
static ac_poll_t poll_peek(struct ferry_conn *c, struct ac_context *cx, const char *what,
                           bool *ok)
{
    enum pre_stop why;
    *ok = false;
    if (poll_pre(c, &c->u.pre.peek.base, cx, &why) == AC_PENDING)
        return AC_PENDING;
    if (why == PRE_DRAINED)
        return end_with(c, "drained");
    struct ferry_peek *p = &c->u.pre.peek;
    if (why == PRE_TIMEOUT || p->err) {
        ferry_log(FERRY_LOG_DEBUG, what, "id=%llu error=%s", (unsigned long long)c->id,
                  why == PRE_TIMEOUT ? "timeout" : p->err == -EPIPE ? "eof" : "invalid");
        c->reason = c->phase == P_PROXY ? "bad_proxy" : "bad_hello";
        return end_with(c, "rejected");
    }
    *ok = true;
    return AC_READY;
}

static ac_poll_t phase_proxy(struct ferry_conn *c, struct ac_context *cx)
{
    bool ok;
    if (poll_peek(c, cx, "bad_proxy", &ok) == AC_PENDING || !ok)
        return c->phase == P_DONE ? AC_READY : AC_PENDING;
    struct ferry_peek *p = &c->u.pre.peek;
    if (p->proxy.has_addrs) {
        memcpy(&c->client, &p->proxy.src, p->proxy.src_len);
        c->client_len = p->proxy.src_len;
        memcpy(&c->local, &p->proxy.dst, p->proxy.dst_len);
        c->local_len = p->proxy.dst_len;
    }
    pre_end(c);
    if (!admitted(c))
        return end_with(c, "rejected");
    c->phase = P_ROUTE;
    return AC_READY;
}

static ac_poll_t phase_tls(struct ferry_conn *c, struct ac_context *cx)
{
    enum pre_stop why;
    if (poll_pre(c, &c->u.pre.hs.base, cx, &why) == AC_PENDING)
        return AC_PENDING;
    if (why == PRE_DRAINED)
        return end_with(c, "drained");
    bool to = why == PRE_TIMEOUT;
    if (to || c->u.pre.hs.err) {
        c->reason = "timeout";
        if (!to) /* OpenSSL's words, kept for the conn line */
            c->reason = c->reason_text = strdup(c->u.pre.hs.reason);
        return end_with(c, "handshake_failed");
    }
    pre_end(c);
    pre_finish(c);
    ferry_hist_observe(&lstats(c)->handshake, FERRY_HIST_SHORT,
                       ac_worker_now_ms(cx->worker) - c->start_ms);
    c->bidx = route(listener_cfg(c), ac_tls_servername(&c->ctls));
    c->phase = P_UPSTREAM;
    return AC_READY;
}

static ac_poll_t phase_hello(struct ferry_conn *c, struct ac_context *cx)
{
    bool ok;
    if (poll_peek(c, cx, "bad_hello", &ok) == AC_PENDING || !ok)
        return c->phase == P_DONE ? AC_READY : AC_PENDING;
    struct ferry_peek *p = &c->u.pre.peek;
    char name[sizeof(p->hello.server_name)];
    memcpy(name, p->hello.server_name, sizeof(name));
    if (p->hello.has_sni && !(c->sni = strdup(name)))
        return end_with(c, "rejected");
    pre_end(c);
    pre_finish(c);
    c->bidx = route(listener_cfg(c), p->hello.has_sni ? name : NULL);
    c->phase = P_UPSTREAM;
    return AC_READY;
}

/* Decides what comes after PROXY: TLS, a ClientHello peek, or the backend. */
static ac_poll_t phase_route(struct ferry_conn *c, struct ac_context *cx)
{
    const struct ferry_listener *l = listener_cfg(c);
    (void)cx;
    if (l->tls) {
        int rc = ac_tls_stream_wrap(&c->ctls, &c->cplain, c->gen->listeners[c->lidx].tls_ctx, true);
        if (rc < 0) {
            c->reason = "setup failed";
            return end_with(c, "handshake_failed");
        }
        c->cs = &c->ctls.base;
        c->phase = P_TLS;
        pre_begin(c);
        ac_tls_handshake_init(&c->u.pre.hs, &c->ctls);
        return AC_READY;
    }
    if (l->nroutes > 0) {
        c->phase = P_HELLO;
        pre_begin(c);
        ferry_peek_init(&c->u.pre.peek, c->cs, FERRY_PEEK_HELLO);
        return AC_READY;
    }
    pre_finish(c);
    c->bidx = l->backend_index;
    c->phase = P_UPSTREAM;
    return AC_READY;
}

static int build_proxy_out(struct ferry_conn *c, int version)
{
    /* The address the client connected to: from its own PROXY header, else
     * asked of the socket now (only connections that send a header pay). */
    if (c->local_len == 0) {
        c->local_len = sizeof(c->local);
        if (getsockname(ac_stream_fd(c->cs), (struct sockaddr *)&c->local, &c->local_len) != 0)
            return -errno;
    }
    bool tls = listener_cfg(c)->tls;
    struct ferry_proxy_conn pc = {
        .client = (struct sockaddr *)&c->client, .local = (struct sockaddr *)&c->local,
        .id = c->id, .ssl = tls ? c->ctls.ssl : NULL,
        .sni = tls ? ac_tls_servername(&c->ctls) : c->sni,
    };
    return ferry_proxy_out_build(version, &pc, &c->proxy_out, &c->proxy_out_len);
}

static ac_poll_t start_upstream(struct ferry_conn *c)
{
    if (c->bidx < 0) {
        c->reason = "no_route";
        return end_with(c, "rejected");
    }
    const struct ferry_backend *b = &c->gen->cfg->backends[c->bidx];
    if (b->send_proxy && build_proxy_out(c, b->send_proxy) != 0)
        return end_with(c, "connect_failed");
    ferry_upstream_init(&c->u.up, c->gen, (size_t)c->bidx, c->fw->index,
                        ferry_lb_hash_addr((struct sockaddr *)&c->client), c->proxy_out,
                        c->proxy_out_len, &c->splain, &c->stls);
    c->u_live = true;
    c->up_start_ms = ac_clock_now_ms();
    struct ferry_backend_wstats *bs = &c->gen->backends[c->bidx].stats->w[c->fw->index];
    ferry_ctr_add(&bs->total, 1);
    ferry_ctr_add(&bs->active, 1);
    c->backend_counted = true;
    return AC_READY;
}

static void start_copy(struct ferry_conn *c, struct ac_context *cx)
{
    size_t bufsize = c->gen->cfg->global.buffer_size;
    c->last_activity = ac_worker_now_ms(cx->worker);
    ac_copy_bidi_init(&c->u.run.copy, c->cs, c->ss, bufsize);
    c->u.run.copy.close_after = true; /* conn_drop closes both at once */
    /* Plain on both sides: bulk data goes zero copy through a pooled pipe,
     * small messages through the buffer copy, cheaper for them (TLS: buffers). */
    (void)ac_copy_bidi_splice_auto(&c->u.run.copy);
    c->u.run.copy.ab.activity = &c->last_activity;
    c->u.run.copy.ba.activity = &c->last_activity;
    struct idle_fut *idle = &c->u.run.idle;
    idle->base.vt = &idle_vt;
    idle->activity = &c->last_activity;
    idle->idle_ms = listener_cfg(c)->idle_timeout_ms;
    ac_sleep_init(&idle->sleep, idle->idle_ms);
    ac_local_notified_init(&c->u.run.drain, &c->fw->drain);
    c->u.run.futs[0] = &c->u.run.copy.base;
    c->u.run.futs[1] = &idle->base;
    c->u.run.futs[2] = &c->u.run.drain.base;
    ac_select_n_init(&c->u.run.sel, c->u.run.futs, 3);
    c->self = ac_waker_clone(cx->waker);
    c->u_live = true;
    c->phase = P_COPY;
}

static ac_poll_t phase_upstream(struct ferry_conn *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->u.up.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_upstream *u = &c->u.up;
    if (u->qend == FERRY_QUEUE_DRAINED)
        return end_with(c, "drained");
    if (u->qend != FERRY_QUEUE_NONE) {
        char a[AC_ADDR_STRLEN];
        bool full = u->qend == FERRY_QUEUE_FULL;
        ferry_log(FERRY_LOG_INFO, full ? "queue_full" : "queue_timeout",
                  "listener=%s client=%s backend=%s", listener_cfg(c)->name,
                  client_text(c, a, sizeof(a)), c->gen->cfg->backends[c->bidx].name);
        c->reason = full ? "queue_full" : NULL;
        return end_with(c, full ? "rejected" : "queue_timeout");
    }
    if (u->err || !u->stream) {
        if (u->local) /* said once a second by the worker's pressure warning */
            return end_with(c, "connect_failed");
        char a[AC_ADDR_STRLEN];
        c->retries = u->attempts > 0 ? u->attempts - 1 : 0;
        ferry_log(FERRY_LOG_WARN, "no_server_reached",
                  "id=%llu listener=%s client=%s backend=%s error=%s", (unsigned long long)c->id,
                  listener_cfg(c)->name,
                  client_text(c, a, sizeof(a)),
                  c->gen->cfg->backends[c->bidx].name,
                  u->reason ? u->reason : strerror(u->err ? -u->err : EIO));
        return end_with(c, "connect_failed");
    }
    c->sidx = u->sidx;
    c->ss = u->stream;
    c->slot_held = u->slot_held; /* passes to the connection with the stream */
    u->slot_held = false;
    c->retries = u->attempts > 0 ? u->attempts - 1 : 0;
    c->connect_ms = ac_clock_now_ms() - c->up_start_ms;
    drop_phase(c);
    struct ferry_server_rt *s = &c->gen->backends[c->bidx].servers[c->sidx];
    ferry_hist_observe(&s->stats->w[c->fw->index].connect, FERRY_HIST_SHORT, c->connect_ms);
    ferry_ctr_add(&s->stats->w[c->fw->index].total, 1);
    ferry_ctr_add(&s->stats->w[c->fw->index].active, 1);
    c->server_counted = true;
    start_copy(c, cx);
    return AC_READY;
}

/* closed_by: the side whose end (FIN or reset) is seen first. A reset
 * found writing (EPIPE) is the receiving side's. */
static void note_closed_by(struct ferry_conn *c)
{
    if (c->closed_by)
        return;
    const struct ac_copy *ab = &c->u.run.copy.ab, *ba = &c->u.run.copy.ba;
    if (ab->read_eof || (ab->err && ab->err != -EPIPE) || (ba->err == -EPIPE))
        c->closed_by = "client";
    else if (ba->read_eof || ba->err || ab->err)
        c->closed_by = "server";
}

static ac_poll_t phase_copy(struct ferry_conn *c, struct ac_context *cx)
{
    /* An operator put the server in maint: cut (ferry_conn_wake_server). */
    if (atomic_load_explicit(&c->gen->backends[c->bidx].servers[c->sidx].stats->maint,
                             memory_order_relaxed))
        return end_with(c, "maint");
    ac_poll_t r = ac_future_poll(&c->u.run.sel.base, cx);
    account(c);
    note_closed_by(c);
    if (r == AC_PENDING)
        return AC_PENDING;
    switch (c->u.run.sel.winner) {
    case 0: {
        int err = c->u.run.copy.err;
        return end_with(c, err == 0 ? "closed" : "reset");
    }
    case 1:
        return end_with(c, "idle_timeout");
    default:
        return end_with(c, "drained");
    }
}

static ac_poll_t conn_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_conn *c = (struct ferry_conn *)f;
    assert(c->magic == CONN_MAGIC); /* a stale wake-up of a freed connection */
    for (;;) {
        ac_poll_t r;
        switch (c->phase) {
        case P_START:
            if (!listener_cfg(c)->accept_proxy && !admitted(c))
                return end_with(c, "rejected");
            if (listener_cfg(c)->accept_proxy) {
                c->phase = P_PROXY;
                pre_begin(c);
                ferry_peek_init(&c->u.pre.peek, c->cs, FERRY_PEEK_PROXY);
            } else {
                c->phase = P_ROUTE;
            }
            continue;
        case P_PROXY: r = phase_proxy(c, cx); break;
        case P_ROUTE: r = phase_route(c, cx); break;
        case P_TLS: r = phase_tls(c, cx); break;
        case P_HELLO: r = phase_hello(c, cx); break;
        case P_UPSTREAM:
            if (!c->u_live) {
                r = start_upstream(c);
                break;
            }
            r = phase_upstream(c, cx);
            break;
        case P_COPY: r = phase_copy(c, cx); break;
        default: return AC_READY;
        }
        if (r == AC_PENDING)
            return AC_PENDING;
        if (c->phase == P_DONE)
            return AC_READY;
    }
}

/* ---- teardown ---- */

/* The TLS facts of the client side, when it was terminated here. */
static void tls_facts(struct ferry_conn *c, const char **sni, const char **ver,
                      const char **cipher, char *alpn, size_t alpn_len, char *subject,
                      size_t subject_len)
{
    SSL *ssl = c->ctls.ssl;
    *sni = c->sni;
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

/* The access-log line (SPEC 5), independent of log_level. Optional fields
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
    const char *end = c->end ? c->end : "drained";
    bool why = strcmp(end, "rejected") == 0 || strcmp(end, "handshake_failed") == 0;
    const char *sni = NULL, *ver = NULL, *cipher = NULL;
    char alpn[64] = "", subject[256] = "";
    tls_facts(c, &sni, &ver, &cipher, alpn, sizeof(alpn), subject, sizeof(subject));
    uint64_t now = ac_clock_now_ms();
    ferry_logger_log(lg, c->fw->index, FERRY_LOG_SINK_ACCESS, FERRY_LOG_INFO, "conn",
                     "id=%llu listener=%s client=%s server=%s duration_ms=%llu connect_ms=%llu "
                     "retries=%u bytes_in=%llu bytes_out=%llu end=%s closed_by=%s ?reason=%s "
                     "?sni=%s ?tls=%s ?cipher=%s ?alpn=%s ?client_cert=%s",
                     (unsigned long long)c->id, listener_cfg(c)->name,
                     client_text(c, a, sizeof(a)), server,
                     (unsigned long long)(now - c->start_ms), (unsigned long long)c->connect_ms,
                     c->retries, (unsigned long long)c->acct_in, (unsigned long long)c->acct_out,
                     end, c->closed_by ? c->closed_by : "proxy",
                     why ? (c->reason ? c->reason : "-") : "", sni ? sni : "", ver ? ver : "",
                     cipher ? cipher : "", alpn, subject);
}

/* The worker's list is its own: linked and unlinked on its thread only (or
 * by ac_runtime_free once every loop stopped), read by conns_view.c's task
 * on the same thread. */
static void unlist(struct ferry_conn *c)
{
    struct ferry_worker *fw = c->fw;
    if (c->prev)
        c->prev->next = c->next;
    else
        fw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void conn_drop(struct ac_future *f)
{
    struct ferry_conn *c = (struct ferry_conn *)f;
    assert(c->magic == CONN_MAGIC);
    if (c->phase != P_DONE) {
        drop_phase(c);
        if (c->phase == P_PROXY || c->phase == P_TLS || c->phase == P_HELLO)
            pre_finish(c);
    }
    log_end(c);
    /* A reset from either peer reaches the other as a reset, so a cut-off
     * stream never looks complete (SPEC 5: end=reset). */
    void (*close_fn)(struct ac_stream *) =
        c->end && strcmp(c->end, "reset") == 0 ? ac_stream_abort : ac_stream_close;
    close_fn(&c->ctls.base);
    close_fn(&c->cplain);
    close_fn(&c->stls.base);
    close_fn(&c->splain);
    unsigned w = c->fw->index;
    ferry_ctr_sub(&lstats(c)->active, 1);
    ferry_hist_observe(&lstats(c)->session, FERRY_HIST_SESSION, ac_clock_now_ms() - c->start_ms);
    if (c->backend_counted)
        ferry_ctr_sub(&c->gen->backends[c->bidx].stats->w[w].active, 1);
    if (c->server_counted)
        ferry_ctr_sub(&c->gen->backends[c->bidx].servers[c->sidx].stats->w[w].active, 1);
    if (c->slot_held)
        ferry_slot_put(&c->gen->backends[c->bidx].servers[c->sidx].stats->slots,
                       &c->gen->backends[c->bidx].stats->queue);
    if (c->permits.global)
        ac_limit_put(c->permits.global);
    if (c->permits.listener)
        ac_limit_put(c->permits.listener);
    unlist(c);
    free(c->reason_text);
    ferry_client_release(c->client_slot);
    free(c->proxy_out);
    free(c->sni);
    ferry_gen_unref(c->gen);
    c->magic = 0;
}

static const struct ac_future_vtable conn_vt = {conn_poll, conn_drop};

static void conn_free(struct ac_future *f) { free(f); }

void ferry_conn_spawn(struct ferry_worker *fw, struct ferry_gen *g, size_t lidx, int fd,
                      const struct sockaddr_storage *peer, socklen_t peer_len,
                      struct ferry_permits permits)
{
    struct ferry_conn *c = calloc(1, sizeof(*c));
    if (!c || ac_socket_stream_open(&c->cplain, fw->w, fd) != 0) {
        ferry_log(FERRY_LOG_ERROR, "conn_setup_failed", "listener=%s error=%s",
                  g->cfg->listeners[lidx].name, c ? "registration failed" : "out of memory");
        close(fd);
        free(c);
        if (permits.global)
            ac_limit_put(permits.global);
        if (permits.listener)
            ac_limit_put(permits.listener);
        ferry_gen_unref(g);
        return;
    }
    c->base.vt = &conn_vt;
    c->magic = CONN_MAGIC;
    c->fw = fw;
    c->gen = g;
    c->lidx = lidx;
    c->bidx = -1;
    c->sidx = -1;
    c->permits = permits;
    c->id = atomic_fetch_add(&fw->d->next_conn_id, 1) + 1;
    c->start_ms = ac_worker_now_ms(fw->w);
    memcpy(&c->client, peer, peer_len);
    c->client_len = peer_len;
    c->cs = &c->cplain;
    struct ferry_listener_wstats *ls = lstats(c);
    ferry_ctr_add(&ls->total, 1);
    ferry_ctr_add(&ls->active, 1);
    assert(ac_worker_current() == fw->w); /* the list is this thread's alone */
    c->next = fw->conns;
    if (fw->conns)
        fw->conns->prev = c;
    fw->conns = c;
    ac_spawn(fw->w, &c->base, conn_free); /* on failure the task drops and frees it */
}

/* ---- views for the control socket ---- */

struct ferry_conn *ferry_conn_next(const struct ferry_conn *c) { return c->next; }

void ferry_conn_wake_server(struct ferry_worker *fw, const struct ferry_server_stats *s)
{
    for (struct ferry_conn *c = fw->conns; c; c = c->next)
        if (c->phase == P_COPY && c->gen->backends[c->bidx].servers[c->sidx].stats == s)
            ac_waker_wake_by_ref(&c->self);
}

void ferry_conn_snapshot(const struct ferry_conn *c, uint64_t now, struct ferry_conn_snapshot *s)
{
    s->id = c->id;
    snprintf(s->listener, sizeof(s->listener), "%s", c->gen->cfg->listeners[c->lidx].name);
    ac_addr_format((struct sockaddr *)&c->client, c->client_len, s->client, sizeof(s->client));
    if (c->server_counted)
        snprintf(s->server, sizeof(s->server), "%s/%s", c->gen->cfg->backends[c->bidx].name,
                 c->gen->backends[c->bidx].servers[c->sidx].cfg->name);
    else
        snprintf(s->server, sizeof(s->server), "-");
    s->age_s = now > c->start_ms ? (now - c->start_ms) / 1000 : 0;
    s->bytes_in = c->acct_in;
    s->bytes_out = c->acct_out;
}

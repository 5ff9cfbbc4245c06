/* ferryd ACME: requests to one ACME server (see session.h). */
#include "acme/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme_int.h"
#include "acme/jws.h"
#include "log/log.h"

/* ---- resolving the server's host ---- */

/* A lookup under way. The resolver's callback may come after the session
 * is gone: both hold a reference, and the session detaches itself (under
 * the lock) when it is dropped. */
struct ferry_acme_resolving {
    pthread_mutex_t lock;
    _Atomic unsigned refs;
    bool attached, done;
    int result;                 /* 1 an address, -1 failed */
    struct sockaddr_storage addr;
    socklen_t len;
    char why[256];
    struct ac_waker waker;
};

static void resolving_unref(struct ferry_acme_resolving *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    ac_waker_drop(&r->waker);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void resolved(void *arg, const struct sockaddr *sa, socklen_t len, const char *err)
{
    struct ferry_acme_resolving *r = arg;
    pthread_mutex_lock(&r->lock);
    struct ac_waker w = AC_WAKER_NONE;
    if (r->attached) {
        r->done = true;
        r->result = len > 0 && len <= sizeof(r->addr) ? 1 : -1;
        if (r->result > 0)
            memcpy(&r->addr, sa, len), r->len = len;
        else
            snprintf(r->why, sizeof(r->why), "%s", err ? err : "no address");
        w = r->waker;
        r->waker = AC_WAKER_NONE;
    }
    pthread_mutex_unlock(&r->lock);
    if (w.vt)
        ac_waker_wake(&w);
    resolving_unref(r);
}

static void resolving_detach(struct ferry_acme_session *ss)
{
    struct ferry_acme_resolving *r = ss->resolving;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->attached = false;
    pthread_mutex_unlock(&r->lock);
    resolving_unref(r);
    ss->resolving = NULL;
}

static bool fail(struct ferry_acme_session *ss, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool fail(struct ferry_acme_session *ss, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ss->err, sizeof(ss->err), fmt, ap);
    va_end(ap);
    return false;
}

/* A numeric host straight into ss->addr. */
static bool numeric(struct ferry_acme_session *ss, const char *host)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss->addr;
    memset(&ss->addr, 0, sizeof(ss->addr));
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(ss->port);
        ss->addr_len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(ss->port);
        ss->addr_len = sizeof(*v6);
    }
    return ss->addr_len > 0;
}

/* Ready when ss->addr holds the server's address (*ok) or it cannot. */
static ac_poll_t resolve_poll(struct ferry_acme_session *ss, struct ac_context *cx, bool *ok)
{
    *ok = true;
    if (ss->addr_len)
        return AC_READY;
    char host[256];
    snprintf(host, sizeof(host), "%s", ss->host);
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (numeric(ss, host))
        return AC_READY;
    if (!ss->reg->resolve) {
        *ok = fail(ss, "cannot resolve %s: no resolver", host);
        return AC_READY;
    }
    struct ferry_acme_resolving *r = ss->resolving;
    if (!r) {
        if (!(r = calloc(1, sizeof(*r)))) {
            *ok = fail(ss, "cannot resolve %s: out of memory", host);
            return AC_READY;
        }
        pthread_mutex_init(&r->lock, NULL);
        atomic_init(&r->refs, 2); /* ours and the callback's */
        r->attached = true;
        ss->resolving = r;
        if (ss->reg->resolve(ss->reg->resolve_ctx, host, ss->port, resolved, r) < 0) {
            resolving_unref(r); /* the callback's: it will not come */
            resolving_detach(ss);
            *ok = fail(ss, "cannot resolve %s: out of memory", host);
            return AC_READY;
        }
    }
    pthread_mutex_lock(&r->lock);
    bool done = r->done;
    if (!done)
        ac_waker_register(&r->waker, cx->waker);
    else if (r->result > 0)
        memcpy(&ss->addr, &r->addr, r->len), ss->addr_len = r->len;
    else
        fail(ss, "cannot resolve %s: %s", host, r->why);
    pthread_mutex_unlock(&r->lock);
    if (!done)
        return AC_PENDING;
    resolving_detach(ss);
    *ok = ss->addr_len > 0;
    return AC_READY;
}

/* ---- requests ---- */

void ferry_acme_session_init(struct ferry_acme_session *ss, struct ferry_acme_reg *reg,
                             const char *acme)
{
    memset(ss, 0, sizeof(*ss));
    ss->reg = reg;
    ss->acme = acme;
}

void ferry_acme_req_reset(struct ferry_acme_session *ss)
{
    if (ss->http_live)
        ac_future_drop(&ss->http.base);
    ss->http_live = false;
    json_decref(ss->req.payload);
    json_decref(ss->req.json);
    free(ss->req.body);
    memset(&ss->req, 0, sizeof(ss->req));
    ss->req_live = false;
}

void ferry_acme_session_drop(struct ferry_acme_session *ss)
{
    ferry_acme_req_reset(ss);
    resolving_detach(ss);
    SSL_CTX_free(ss->ctx);
    EVP_PKEY_free(ss->account);
    free(ss->kid);
    free(ss->nonce);
    ss->ctx = NULL;
    ss->account = NULL;
    ss->kid = ss->nonce = NULL;
}

void ferry_acme_req_start(struct ferry_acme_session *ss, const char *url, bool post,
                          json_t *payload, bool use_jwk)
{
    ferry_acme_req_reset(ss);
    snprintf(ss->req.url, sizeof(ss->req.url), "%s", url);
    ss->req.method = post ? "POST" : "GET";
    ss->req.post = post;
    ss->req.payload = payload;
    ss->req.use_jwk = use_jwk;
    ss->req_live = true;
}

/* The answer's parts into ss->req; the nonce kept for the next request. */
static void take_answer(struct ferry_acme_session *ss)
{
    struct ferry_acme_http *h = &ss->http;
    if (h->nonce[0]) {
        free(ss->nonce);
        ss->nonce = strdup(h->nonce);
    }
    ss->req.status = h->status;
    snprintf(ss->req.location, sizeof(ss->req.location), "%s", h->location);
    ss->req.retry_after_s = h->retry_after_s;
    json_decref(ss->req.json);
    ss->req.json = strstr(h->content_type, "json") ? json_loadb(h->body, h->body_len, 0, NULL)
                                                   : NULL;
    free(ss->req.body);
    ss->req.body = h->body;
    h->body = NULL;
    ac_future_drop(&h->base);
    ss->http_live = false;
}

static bool is_bad_nonce(const struct ferry_acme_session *ss)
{
    const char *type = NULL;
    return ss->req.status == 400 && ss->req.json &&
           json_unpack(ss->req.json, "{s:s}", "type", &type) == 0 &&
           strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
}

/* Starts the HTTP exchange of the current phase. False after fail(). */
static bool send_phase(struct ferry_acme_session *ss)
{
    const char *method = ss->req.method, *url = ss->req.url;
    char *body = NULL;
    if (ss->req.post && !ss->nonce) {
        ss->req.phase = 1;
        method = "HEAD";
        url = ss->new_nonce;
    } else if (ss->req.post) {
        ss->req.phase = 2;
        body = ferry_acme_jws(ss->account, ss->req.use_jwk ? NULL : ss->kid, ss->nonce, url,
                              ss->req.payload);
        free(ss->nonce); /* a nonce is good for one request */
        ss->nonce = NULL;
        if (!body)
            return fail(ss, "cannot sign the request to %s", url);
    } else {
        ss->req.phase = 2;
    }
    int rc = ferry_acme_http_init(&ss->http, ss->ctx, method, url, (struct sockaddr *)&ss->addr,
                                  ss->addr_len, body);
    free(body);
    ss->http_live = rc == 0;
    return rc == 0 || fail(ss, "%s %s: %s", method, url, strerror(-rc));
}

/* The exchange finished: what next. Returns 1 to send again, 0 done. */
static int after_answer(struct ferry_acme_session *ss)
{
    bool nonce_only = ss->req.phase == 1;
    take_answer(ss);
    if (nonce_only)
        return 1; /* the nonce is there now (checked by the caller) */
    if (is_bad_nonce(ss) && ++ss->req.nonce_retries < FERRY_ACME_NONCE_RETRIES) {
        ferry_log(FERRY_LOG_DEBUG, "acme_bad_nonce", "acme=%s url=%s", ss->acme, ss->req.url);
        return 1; /* the answer carried a fresh nonce */
    }
    return 0;
}

ac_poll_t ferry_acme_req_poll(struct ferry_acme_session *ss, struct ac_context *cx, bool *ok)
{
    *ok = false;
    for (;;) {
        if (ss->http_live) {
            if (ac_future_poll(&ss->http.base, cx) == AC_PENDING)
                return AC_PENDING;
            if (ss->http.err) {
                fail(ss, "%s %s: %s", ss->req.phase == 1 ? "HEAD" : ss->req.method,
                     ss->req.phase == 1 ? ss->new_nonce : ss->req.url, ss->http.errmsg);
                ac_future_drop(&ss->http.base);
                ss->http_live = false;
                ss->addr_len = 0; /* look the name up again next time */
                return AC_READY;
            }
            bool was_nonce = ss->req.phase == 1;
            if (after_answer(ss) == 0) {
                *ok = true;
                return AC_READY;
            }
            if (was_nonce && !ss->nonce) {
                fail(ss, "newNonce: no Replay-Nonce (HTTP %d)", ss->req.status);
                return AC_READY;
            }
        }
        char host[256];
        uint16_t port;
        const char *path;
        if (ferry_acme_url_parse(ss->req.url, host, sizeof(host), &port, &path) < 0) {
            fail(ss, "bad URL from the server: %s", ss->req.url);
            return AC_READY;
        }
        if (strcmp(host, ss->host) != 0 || port != ss->port) {
            resolving_detach(ss);
            snprintf(ss->host, sizeof(ss->host), "%s", host);
            ss->port = port;
            ss->addr_len = 0;
        }
        bool resolved_ok;
        if (resolve_poll(ss, cx, &resolved_ok) == AC_PENDING)
            return AC_PENDING;
        if (!resolved_ok || !send_phase(ss))
            return AC_READY;
    }
}

void ferry_acme_problem(const struct ferry_acme_session *ss, const char *what, char *err,
                        size_t cap)
{
    const char *type = NULL, *detail = NULL;
    if (ss->req.json)
        json_unpack(ss->req.json, "{s?s, s?s}", "type", &type, "detail", &detail);
    if (type && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0)
        type += 27;
    snprintf(err, cap, "%s: HTTP %d%s%s%s%s", what, ss->req.status, type ? " " : "",
             type ? type : "", detail ? ": " : "", detail ? detail : "");
}

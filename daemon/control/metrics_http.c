/* ferryd: the Prometheus endpoint (see metrics_http.h). */
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/blocking.h"
#include "buf.h"
#include "control/metrics_http.h"
#include "gen.h"
#include "registry.h"
#include "worker.h"
#include "control/render.h"
#include "control/reqserver.h"
#include "proto/http_request.h"

/* A request head must arrive within READ_TIMEOUT_MS (probes and scrapers
 * send theirs at once); MAX_CLIENTS are held, PER_PEER of them from one
 * address, and a new client closes the oldest idle one past either
 * (reqserver.h), so idle connections never keep a probe out. SCRAPES
 * exposition renders run at once, on the blocking pool; a scrape past them
 * is answered 503 at once rather than queued. */
enum {
    HEAD_MAX = 8192,
    READ_TIMEOUT_MS = 3000,
    WRITE_TIMEOUT_MS = 10000,
    MAX_CLIENTS = 64,
    PER_PEER = 16,
    SCRAPES = 2,
};

struct ferry_metrics {
    struct ferry_daemon *d;
    struct ferry_rs_pool pool;
    unsigned scrapes; /* renders running (worker 0 only) */
};

static void reply(struct ferry_buf *out, const char *status, const char *extra_headers,
                  const char *ctype, const char *body, size_t body_len, bool with_body)
{
    ferry_buf_printf(out,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, ctype, body_len, extra_headers);
    if (with_body)
        ferry_buf_append(out, body, body_len);
}

static void reply_error(struct ferry_buf *out, const char *status, const char *extra_headers)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%s\n", status + 4); /* "404 Not Found" -> "Not Found" */
    reply(out, status, extra_headers, "text/plain; charset=utf-8", body, (size_t)n, true);
}

/* Every event loop stamped its heartbeat within the limit (see signals.c). */
static bool loops_turn(struct ferry_daemon *d)
{
    uint64_t now = ac_clock_now_ms();
    if (d->workers == NULL || d->nworkers == 0)
        return false;
    for (unsigned i = 0; i < d->nworkers; i++) {
        uint64_t alive = atomic_load(&d->workers[i].alive_ms);
        if (alive == 0 || (now > alive && now - alive > FERRY_LIVE_LIMIT_MS))
            return false;
    }
    return true;
}

/* True unless every listener is disabled (`disable listener`): a load
 * balancer should then send its clients elsewhere. */
static bool some_listener_accepts(struct ferry_daemon *d)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    bool any = !g || g->cfg->nlisteners == 0;
    for (size_t i = 0; g && !any && i < g->cfg->nlisteners; i++)
        any = !g->listeners[i].stats || !atomic_load(&g->listeners[i].stats->disabled);
    if (g)
        ferry_gen_unref(g);
    return any;
}

/* /ready: 200 while serving, no stop signal came and some listener accepts;
 * /live: 200 while every event loop turns. Probes want no caching and a
 * short body. */
static void probe(struct ferry_daemon *d, const char *path, struct ferry_buf *out, bool with_body)
{
    bool ok;
    const char *body;
    if (strcmp(path, "/ready") == 0) {
        bool stopping = atomic_load(&d->stopping);
        ok = !stopping && some_listener_accepts(d);
        body = ok ? "ready\n" : stopping ? "stopping\n" : "no listener accepting\n";
    } else {
        ok = loops_turn(d);
        body = ok ? "live\n" : "event loop stalled\n";
    }
    reply(out, ok ? "200 OK" : "503 Service Unavailable", "Cache-Control: no-store\r\n",
          "text/plain; charset=utf-8", body, strlen(body), with_body);
}

/* Answers everything but a scrape of /metrics: true when the request is
 * one (GET or HEAD /metrics, *head set), with nothing written yet. */
static bool answer_or_scrape(struct ferry_daemon *d, const char *req, size_t len, bool overflow,
                             bool incomplete, struct ferry_buf *out, bool *head)
{
    char method[16], path[64];
    if (overflow) {
        reply_error(out, "431 Request Header Fields Too Large", "");
        return false;
    }
    if (incomplete || memchr(req, '\0', len) ||
        !ferry_http_request_line(req, len, method, sizeof(method), path, sizeof(path))) {
        reply_error(out, "400 Bad Request", "");
        return false;
    }
    *head = strcmp(method, "HEAD") == 0;
    if (!*head && strcmp(method, "GET") != 0) {
        reply_error(out, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
        return false;
    }
    if (strcmp(path, "/ready") == 0 || strcmp(path, "/live") == 0) {
        probe(d, path, out, !*head);
        return false;
    }
    if (strcmp(path, "/metrics") != 0) {
        reply_error(out, "404 Not Found", "");
        return false;
    }
    return true;
}

/* The answer to a scrape, from the rendered exposition (NULL: it failed). */
static void scrape_reply(const struct ferry_buf *body, bool head, struct ferry_buf *out)
{
    if (!body)
        reply_error(out, "500 Internal Server Error", "");
    else
        reply(out, "200 OK", "", "text/plain; version=0.0.4; charset=utf-8", body->data,
              body->len, !head);
}

void ferry_metrics_answer(struct ferry_daemon *d, const char *req, size_t len, bool overflow,
                          bool incomplete, struct ferry_buf *out)
{
    bool head = false;
    if (!answer_or_scrape(d, req, len, overflow, incomplete, out, &head))
        return;
    struct ferry_buf body;
    ferry_buf_init(&body);
    bool ok = ferry_render_metrics(d, &body) == 0;
    scrape_reply(ok ? &body : NULL, head, out);
    ferry_buf_free(&body);
}

/* ---- rendering off the worker ---- */

void *ferry_metrics_render_job(void *arg)
{
    struct ferry_buf *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    ferry_buf_init(b);
    if (ferry_render_metrics(arg, b) != 0) {
        ferry_buf_free(b);
        free(b);
        return NULL;
    }
    return b;
}

void ferry_metrics_render_free(void *result)
{
    if (!result)
        return;
    ferry_buf_free(result);
    free(result);
}

/* ---- the server ---- */

struct metrics_client {
    struct ferry_rs_client rs; /* first: reqserver allocates and frees us */
    struct ac_blocking job;    /* the exposition, rendered on the blocking pool */
    bool job_live, scraping, head;
};

static struct ferry_rs_client *client_new(void *arg)
{
    (void)arg;
    return calloc(1, sizeof(struct metrics_client));
}

static void client_drop(struct ferry_rs_client *rs)
{
    struct metrics_client *c = (struct metrics_client *)rs;
    struct ferry_metrics *m = rs->arg;
    if (c->job_live) /* a render still running frees its result itself */
        ac_future_drop(&c->job.base);
    c->job_live = false;
    if (c->scraping)
        m->scrapes--;
    c->scraping = false;
}

/* A scrape: the exposition is rendered on the blocking pool, so a large one
 * (hundreds of servers) never holds up worker 0's loop and its traffic. */
static ac_poll_t poll_scrape(struct metrics_client *c, struct ac_context *cx)
{
    struct ferry_metrics *m = c->rs.arg;
    if (!c->job_live) {
        if (m->scrapes >= SCRAPES) {
            reply(&c->rs.out, "503 Service Unavailable", "Retry-After: 1\r\n",
                  "text/plain; charset=utf-8", "busy\n", 5, true);
            return AC_READY;
        }
        m->scrapes++;
        c->scraping = true;
        ac_blocking_init(&c->job, m->d->rt, ferry_metrics_render_job, m->d,
                         ferry_metrics_render_free);
        c->job_live = true;
    }
    if (ac_future_poll(&c->job.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_buf *body = c->job.err ? NULL : c->job.result;
    ac_future_drop(&c->job.base);
    c->job_live = false;
    m->scrapes--;
    c->scraping = false;
    scrape_reply(body, c->head, &c->rs.out);
    ferry_metrics_render_free(body);
    return AC_READY;
}

static ac_poll_t respond(struct ferry_rs_client *rs, struct ac_context *cx)
{
    struct metrics_client *c = (struct metrics_client *)rs;
    struct ferry_metrics *m = rs->arg;
    ac_poll_t r = AC_READY;
    if (c->job_live ||
        answer_or_scrape(m->d, rs->req, rs->req_len, rs->overflow, rs->eof, &rs->out, &c->head))
        r = poll_scrape(c, cx);
    if (r == AC_READY && rs->out.oom) { /* nothing sensible to send */
        ferry_buf_free(&rs->out);
        ferry_buf_init(&rs->out);
    }
    return r;
}

static const struct ferry_rs_ops metrics_ops = {
    .max_request = HEAD_MAX,
    .read_timeout_ms = READ_TIMEOUT_MS,
    .write_timeout_ms = WRITE_TIMEOUT_MS,
    .complete = ferry_http_head_complete,
    .client_new = client_new,
    .respond = respond,
    .client_drop = client_drop,
};

/* `*:PORT` listens on every IPv4 and IPv6 address (dual stack), or on every
 * IPv4 address where IPv6 is not available. */
static int listen_any(uint16_t port)
{
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port),
                              .sin6_addr = IN6ADDR_ANY_INIT};
    int fd = ac_listen_socket((struct sockaddr *)&s6, sizeof(s6), 128, 0);
    if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)
        return fd;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    return ac_listen_socket((struct sockaddr *)&s4, sizeof(s4), 128, 0);
}

struct ferry_metrics *ferry_metrics_start(struct ferry_daemon *d, const struct ferry_addr *addr,
                                          int *err)
{
    int fd;
    if (addr->kind == FERRY_ADDR_ANY)
        fd = listen_any(addr->port);
    else if (addr->resolved)
        fd = ac_listen_socket((const struct sockaddr *)&addr->sa, addr->sa_len, 128, 0);
    else
        fd = -EADDRNOTAVAIL; /* a host name: the metrics address must be numeric */
    return ferry_metrics_adopt(d, addr, fd, err);
}

struct ferry_metrics *ferry_metrics_adopt(struct ferry_daemon *d, const struct ferry_addr *addr,
                                          int fd, int *err)
{
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    struct ferry_metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    m->d = d;
    ferry_rs_pool_init(&m->pool, MAX_CLIENTS, PER_PEER);
    d->metrics_fd = fd; /* for an upgrade */
    snprintf(d->metrics_addr, sizeof(d->metrics_addr), "%s", addr->text);
    int rc = ferry_rs_spawn(ac_runtime_worker(d->rt, 0), fd, &metrics_ops, m, &m->pool,
                            &d->services_stop);
    if (rc != 0) {
        ferry_rs_pool_destroy(&m->pool);
        free(m);
        *err = rc;
        return NULL;
    }
    return m;
}

void ferry_metrics_free(struct ferry_metrics *m)
{
    if (!m)
        return;
    ferry_rs_pool_destroy(&m->pool);
    free(m);
}

/* ac-proxy: a small TCP proxy on asynccore.
 *
 *   ac-proxy [-w WORKERS] [-c CONNECT_MS] [-i IDLE_MS] LISTEN_HOST:PORT UPSTREAM_HOST:PORT
 *
 * Accepts on LISTEN (port 0 picks a free one; the address it got is printed
 * as "ac-proxy: listening on ADDRESS"), connects each client to UPSTREAM
 * within CONNECT_MS (default 5000) and copies bytes both ways, passing each
 * half-close on, until both directions have ended or nothing moved for
 * IDLE_MS (default 60000). One line per connection on stderr. SIGINT or
 * SIGTERM stops it.
 *
 * What it shows: one task per connection whose future is a small state
 * machine of embedded children (ac_connect under ac_timeout, then
 * ac_copy_bidi raced against an idle timer with ac_select2), all in one
 * allocation; bytes between two plain sockets go through splice(2) while
 * the traffic is bulk (ac_copy_bidi_splice_auto).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/combinators.h"
#include "asynccore/copy.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "common.h"

struct proxy_conf {
    struct sockaddr_storage upstream;
    socklen_t upstream_len;
    uint64_t connect_ms, idle_ms;
};

/* One proxied connection: the task's future. */
struct pconn {
    struct ac_future base;
    const struct proxy_conf *conf;
    enum { PC_CONNECT, PC_RUN } state;
    struct ac_stream client, server;
    struct ac_connect connect;
    struct ac_timeout connect_timeout;
    struct ac_copy_bidi copy;
    struct ex_idle idle;
    struct ac_select2 run;
    uint64_t activity;
    char peer[AC_ADDR_STRLEN];
};

static ac_poll_t pconn_end(struct pconn *c, const char *how, int err)
{
    if (err < 0)
        fprintf(stderr, "ac-proxy: %s: %s: %s\n", c->peer, how, strerror(-err));
    else
        fprintf(stderr, "ac-proxy: %s: %s\n", c->peer, how);
    return AC_READY;
}

static ac_poll_t pconn_poll(struct ac_future *self, struct ac_context *cx)
{
    struct pconn *c = (struct pconn *)self;

    switch (c->state) {
    case PC_CONNECT:
        if (ac_future_poll(&c->connect_timeout.base, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->connect_timeout.timed_out)
            return pconn_end(c, "upstream connect timed out", 0);
        if (c->connect.err < 0)
            return pconn_end(c, "upstream connect", c->connect.err);
        ac_future_drop(&c->connect_timeout.base);
        ac_copy_bidi_init(&c->copy, &c->client, &c->server, 0);
        (void)ac_copy_bidi_splice_auto(&c->copy);
        c->activity = ac_worker_now_ms(cx->worker);
        c->copy.ab.activity = c->copy.ba.activity = &c->activity;
        /* Both streams are closed right after the copy: no second
         * shutdown(2) that the close would make moot. */
        c->copy.close_after = true;
        ex_idle_init(&c->idle, &c->activity, c->conf->idle_ms);
        ac_select2_init(&c->run, &c->copy.base, &c->idle.base);
        c->state = PC_RUN;
        /* fall through */
    case PC_RUN:
        if (ac_future_poll(&c->run.base, cx) == AC_PENDING)
            return AC_PENDING;
        if (c->run.winner == 1)
            return pconn_end(c, "idle timeout", 0);
        char line[96];
        snprintf(line, sizeof(line), "closed, %llu bytes up, %llu down",
                 (unsigned long long)c->copy.ab.bytes, (unsigned long long)c->copy.ba.bytes);
        return pconn_end(c, line, c->copy.err);
    }
    return AC_PENDING;
}

static void pconn_drop(struct ac_future *self)
{
    struct pconn *c = (struct pconn *)self;

    if (c->state == PC_CONNECT)
        ac_future_drop(&c->connect_timeout.base);
    else
        ac_future_drop(&c->run.base);
    ac_stream_close(&c->server);
    ac_stream_close(&c->client);
}

static void pconn_start(struct ac_worker *w, int fd, const struct sockaddr_storage *peer,
                        socklen_t peer_len, void *arg)
{
    static const struct ac_future_vtable vt = {pconn_poll, pconn_drop};
    const struct proxy_conf *conf = arg;
    struct pconn *c = malloc(sizeof(*c));

    if (c == NULL) {
        close(fd);
        return;
    }
    if (ac_socket_stream_open(&c->client, w, fd) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->base.vt = &vt;
    c->conf = conf;
    c->state = PC_CONNECT;
    ac_addr_format((const struct sockaddr *)peer, peer_len, c->peer, sizeof(c->peer));
    ac_connect_init(&c->connect, (const struct sockaddr *)&conf->upstream, conf->upstream_len,
                    &c->server);
    ac_timeout_init(&c->connect_timeout, &c->connect.base, conf->connect_ms);
    ac_spawn(w, &c->base, ex_free_future); /* on failure it drops and frees c */
}

int main(int argc, char **argv)
{
    struct proxy_conf conf = {.connect_ms = 5000, .idle_ms = 60000};
    unsigned long workers = 1, connect_ms = conf.connect_ms, idle_ms = conf.idle_ms;
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    int opt;

    while ((opt = getopt(argc, argv, "w:c:i:")) != -1) {
        unsigned long *v = opt == 'w' ? &workers : opt == 'c' ? &connect_ms
                           : opt == 'i' ? &idle_ms : NULL;
        if (v == NULL || ex_parse_uint(optarg, 86400000, v) != 0)
            goto usage;
    }
    if (optind != argc - 2 || workers == 0 || workers > 1024 ||
        ex_parse_hostport(argv[optind], &listen_addr, &listen_len) != 0 ||
        ex_parse_hostport(argv[optind + 1], &conf.upstream, &conf.upstream_len) != 0)
        goto usage;
    conf.connect_ms = connect_ms;
    conf.idle_ms = idle_ms;
    /* splice(2) into a socket whose peer is gone raises SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    ex_block_signals(&set);

    struct ac_runtime_opts opts = {.workers = (unsigned)workers, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    if (rt == NULL) {
        fprintf(stderr, "ac-proxy: runtime: %s\n", strerror(errno));
        return 1;
    }
    int status = 1, r;
    int lfd = ex_listen("ac-proxy", &listen_addr, listen_len);
    if (lfd < 0)
        fprintf(stderr, "ac-proxy: listen on %s: %s\n", argv[optind], strerror(-lfd));
    else if ((r = ex_accept_everywhere(rt, lfd, pconn_start, &conf)) < 0)
        fprintf(stderr, "ac-proxy: accept task: %s\n", strerror(-r));
    else if ((r = ex_stop_on_signals(rt, &set)) < 0)
        fprintf(stderr, "ac-proxy: signalfd: %s\n", strerror(-r));
    else if ((r = ac_runtime_run(rt)) < 0)
        fprintf(stderr, "ac-proxy: run: %s\n", strerror(-r));
    else
        status = 0;
    ac_runtime_free(rt); /* drops the connections still open */
    if (lfd >= 0)
        close(lfd);
    return status;

usage:
    fprintf(stderr,
            "usage: %s [-w WORKERS] [-c CONNECT_MS] [-i IDLE_MS] LISTEN_HOST:PORT "
            "UPSTREAM_HOST:PORT\n",
            argv[0]);
    return 2;
}

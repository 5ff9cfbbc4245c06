/* ferryd: listening sockets and their accept tasks.
 *
 * Every worker runs one accept task per address. By default ([global]
 * reuseport = off) the address has one socket, shared: every task registers
 * it with EPOLLEXCLUSIVE, so a connection wakes one worker, and the one queue
 * is served by whichever worker is free. With reuseport = on the address has
 * one SO_REUSEPORT socket per worker, and task i serves fds[i] alone: the
 * kernel hashes connections evenly over the workers.
 *
 * Why the shared socket is the default (tests/bench/accept_bench.py,
 * tests/bench/RESULTS.md; workers = auto on 2 CPUs, wrk through ferryd to
 * nginx, rounds interleaved on a loaded machine): system calls per short
 * connection 14.3 shared vs 14.5 to 15.1 reuseport (strace; reuseport accepts
 * fewer connections per wake-up: accept4 1.10 vs 1.18 to 1.33, epoll_wait
 * 0.13 to 0.17 vs 0.28 to 0.68),
 * CPU per connection 2 to 6% lower, and over 23 rounds reuseport's
 * connection rate was 0.76x the shared socket's with each worker pinned to
 * its CPU (lower in 18 rounds) and 0.93x unpinned (lower in 14); p99 showed
 * no difference the machine's noise did not swamp (median ratio 1.00, 1.02).
 * One queue is also what queueing theory favours: no client waits behind a
 * busy worker while another is idle. Reuseport's gain is balance: 100
 * kept-alive connections opened at once went 80% (median, up to 100%) to
 * one worker with the shared socket, 50 to 53% with reuseport.
 *
 * Reuseport's hazard (HAProxy, nginx, pingora#427): closing one socket of a
 * group resets the connections queued on it unless net.ipv4.tcp_migrate_req
 * is set. So sockets of kept addresses are never closed by a reload (nothing
 * refused), a task closes its own socket only once it has served its queue
 * (removed address, stop), a fresh group is bound only where a plain bind
 * would succeed (else it would join any group of the same user there), and
 * inherited (systemd) sockets stay single and shared.
 *
 * Once a connection is ready to be accepted, a task takes a permit of
 * its listener's cap and of the global max_connections (atomic counters,
 * asynccore/limit.h): past either limit it waits on that limit's list holding
 * no permit (the kernel queue holds the clients) until a connection ends, and
 * a task that finds nothing to accept gives its permits back at once, so a
 * permit never sits with a listener that has nobody queued. No
 * accept-and-close. While the worker is out of local resources (pressure.c)
 * it does not accept.
 *
 * Closing: on stop the tasks end at once; when a reload removes the address
 * they first accept what is already queued (served by the old generation).
 * The last task to end closes the descriptor.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "asynccore/limit.h"
#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "proxy/listen.h"
#include "proxy/conn.h"
#include "gen.h"
#include "log/log.h"

struct accept_task {
    struct ac_future base;
    unsigned slot;                  /* the socket it serves in a reuseport group */
    struct ferry_daemon *d;
    struct ferry_worker *fw;
    struct ferry_listen_addr *b;
    struct ac_listener l;
    bool listener_open;
    struct ac_notified closing;
    struct ac_limit_wait wait;      /* listed on a limit that had no permit */
    struct ac_limit *held_global;   /* permits taken for the next accept */
    struct ac_limit *held_listener;
    struct ac_sleep pause;          /* the worker's local-resource pause */
    bool pause_armed;
    int last_err;                   /* accept error being retried (logged once) */
    struct ferry_listener_stats *ls;  /* the listener served, for its gate (as of the
                                       * last accept: stats outlive generations) */
    struct ac_acquire gate;
    bool gate_live;
    struct ferry_gen *gen;          /* cached b->gen (a reference) and its lidx */
    size_t lidx;
    unsigned gen_version;           /* b->gen_version the cache was taken at */
};

static void bound_release(struct ferry_listen_addr *b)
{
    if (atomic_fetch_sub(&b->tasks, 1) != 1)
        return;
    bool closed = false;
    for (unsigned i = 0; i < b->nfds; i++)
        if (b->fds[i] >= 0) {
            close(b->fds[i]);
            closed = true;
        }
    if (closed && b->unix_path && !b->inherited && !b->keep_file)
        unlink(b->addr + strlen("unix:"));
    ac_notify_destroy(&b->closing);
    if (b->gen)
        ferry_gen_unref(b->gen);
    free(b);
}

/* Which listener of which generation this socket serves right now
 * (borrowed: the task holds the reference). Refreshed only when a reload
 * changed it: one atomic load per accept, the lock only after a reload. */
static struct ferry_gen *bound_gen(struct accept_task *t, size_t *lidx)
{
    struct ferry_listen_addr *b = t->b;
    unsigned v = atomic_load_explicit(&b->gen_version, memory_order_acquire);
    if (!t->gen || v != t->gen_version) {
        pthread_mutex_lock(&t->d->gen_ptr_lock);
        struct ferry_gen *g = b->gen ? ferry_gen_ref(b->gen) : NULL;
        t->lidx = b->lidx;
        t->gen_version = atomic_load_explicit(&b->gen_version, memory_order_relaxed);
        pthread_mutex_unlock(&t->d->gen_ptr_lock);
        if (t->gen)
            ferry_gen_unref(t->gen);
        t->gen = g;
    }
    *lidx = t->lidx;
    return t->gen;
}

static void give_back(struct accept_task *t)
{
    if (t->held_listener)
        ac_limit_put(t->held_listener);
    if (t->held_global)
        ac_limit_put(t->held_global);
    t->held_global = t->held_listener = NULL;
}

static void hand_over(struct accept_task *t, int fd, struct sockaddr_storage *peer,
                      socklen_t peer_len)
{
    size_t lidx;
    struct ferry_gen *g = bound_gen(t, &lidx);
    if (!g) {
        close(fd);
        give_back(t);
        return;
    }
    ferry_gen_ref(g);
    struct ferry_permits permits = {.global = t->held_global, .listener = t->held_listener};
    t->held_global = t->held_listener = NULL;
    t->ls = g->listeners[lidx].stats;
    /* ferry_conn_spawn takes over fd, the reference on g and the permits. */
    ferry_conn_spawn(t->fw, g, lidx, fd, peer, peer_len, permits);
}

/* Accepts what is queued without waiting (removed by a reload). */
static ac_poll_t serve_queue(struct accept_task *t, struct ac_context *cx)
{
    for (;;) {
        int fd;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        if (ac_listener_poll_accept(&t->l, cx, &fd, &peer, &plen) == AC_PENDING)
            /* Out of budget or paused by EMFILE: we are woken to go on.
             * Otherwise the queue is empty and the task ends. */
            return cx->budget == 0 || t->l.paused ? AC_PENDING : AC_READY;
        if (fd < 0)
            return AC_READY;
        if (ac_limit_try_take(&t->d->conn_limit))
            t->held_global = &t->d->conn_limit;
        hand_over(t, fd, &peer, plen);
    }
}

/* The cap of the listener this socket serves now (caps outlive generations). */
static struct ac_limit *listener_limit(struct accept_task *t)
{
    size_t lidx;
    struct ferry_gen *g = bound_gen(t, &lidx);
    struct ferry_listener_limit *lim = g ? g->listeners[lidx].limit : NULL;
    return lim ? &lim->lim : NULL;
}

/* Takes the permits for a connection that is ready to be accepted. Without
 * one, waits on the limit's list holding nothing (so no listener with an
 * empty queue can sit on a permit another listener's client needs). */
static ac_poll_t take_permits(struct accept_task *t, struct ac_context *cx)
{
    for (;;) {
        struct ac_limit *global = &t->d->conn_limit, *lim = listener_limit(t), *short_of = NULL;
        if (lim && !ac_limit_try_take(lim))
            short_of = lim;
        else if (!ac_limit_try_take(global)) {
            if (lim)
                ac_limit_put(lim);
            short_of = global;
        }
        if (!short_of) {
            ac_limit_wait_cancel(&t->wait);
            t->held_global = global;
            t->held_listener = lim;
            return AC_READY;
        }
        if (ac_limit_poll_wait(short_of, &t->wait, cx) == AC_PENDING)
            return AC_PENDING;
    }
}

/* Pending while this worker pauses accepting for lack of local resources. */
static ac_poll_t wait_pressure(struct accept_task *t, struct ac_context *cx)
{
    uint64_t until = t->fw->pressure.until_ms;
    if (until > ac_worker_now_ms(cx->worker)) {
        if (!t->pause_armed)
            ac_sleep_init_deadline(&t->pause, until);
        else if (t->pause.deadline != until)
            ac_sleep_reset(&t->pause, until);
        t->pause_armed = true;
        if (ac_future_poll(&t->pause.base, cx) == AC_PENDING)
            return AC_PENDING;
    }
    if (t->pause_armed)
        ac_future_drop(&t->pause.base);
    t->pause_armed = false;
    return AC_READY;
}

/* An accept error other than the EMFILE family: the listener retries after
 * its back-off; said once per run of the same error. */
static void accept_failed(struct accept_task *t, int err)
{
    if (err != t->last_err)
        ferry_log(FERRY_LOG_ERROR, "accept_failed_retrying", "bind=%s error=%s", t->b->addr,
                  strerror(-err));
    t->last_err = err;
}

/* True while `disable listener` holds the listener this socket serves. */
static bool listener_disabled(struct accept_task *t)
{
    if (!t->ls) {
        size_t lidx;
        struct ferry_gen *g = bound_gen(t, &lidx);
        if (!g)
            return false;
        t->ls = g->listeners[lidx].stats;
    }
    return atomic_load_explicit(&t->ls->disabled, memory_order_relaxed);
}

/* Waits at the gate of a disabled listener without accepting: the kernel
 * queue holds its clients until `enable listener` opens the gate. */
static ac_poll_t pass_gate(struct accept_task *t, struct ac_context *cx)
{
    while (listener_disabled(t)) {
        if (!t->gate_live) {
            ac_acquire_init(&t->gate, &t->ls->gate);
            t->gate_live = true;
        }
        if (ac_future_poll(&t->gate.base, cx) == AC_PENDING)
            return AC_PENDING;
        ac_future_drop(&t->gate.base);
        t->gate_live = false;
        ac_semaphore_release(&t->ls->gate, 1); /* the gate is open: let the next one by */
    }
    return AC_READY;
}

static ac_poll_t accept_poll(struct ac_future *f, struct ac_context *cx)
{
    struct accept_task *t = (struct accept_task *)f;
    if (!t->listener_open) {
        /* A shared socket: EPOLLEXCLUSIVE, one connection wakes one worker,
         * not all of them (poll(2) has no such flag: there all wake). A
         * reuseport group: this worker's own socket. */
        bool shared = t->b->nfds == 1;
        int fd = t->b->fds[shared ? 0 : t->slot];
        int rc = ac_listener_open(&t->l, cx->worker, fd, false, shared ? AC_REG_EXCLUSIVE : 0);
        if (rc < 0) {
            ferry_log(FERRY_LOG_ERROR, "listener_register_failed", "bind=%s error=%s",
                      t->b->addr, strerror(-rc));
            return AC_READY;
        }
        t->listener_open = true;
    }
    for (;;) {
        if (ac_future_poll(&t->closing.base, cx) == AC_READY) {
            give_back(t);
            return t->b->serve_queue ? serve_queue(t, cx) : AC_READY;
        }
        if (wait_pressure(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (pass_gate(t, cx) == AC_PENDING)
            return AC_PENDING;
        if (!t->held_global) {
            if (ac_listener_poll_acceptable(&t->l, cx) == AC_PENDING)
                return AC_PENDING;
            if (take_permits(t, cx) == AC_PENDING)
                return AC_PENDING;
        }
        if (listener_disabled(t)) { /* disabled while we waited for permits */
            give_back(t);
            continue;
        }
        int fd;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        if (ac_listener_poll_accept(&t->l, cx, &fd, &peer, &plen) == AC_PENDING) {
            give_back(t); /* nothing to accept after all (or out of budget) */
            return AC_PENDING;
        }
        if (fd < 0) {
            give_back(t);
            accept_failed(t, fd);
            continue;
        }
        t->last_err = 0;
        hand_over(t, fd, &peer, plen);
    }
}

/* A reuseport socket is closed by its own task as soon as it ends (its
 * queue served): the kernel then hashes new clients over the sockets still
 * open, instead of queueing them where nobody accepts any more until the
 * last task ends. The slot is this task's alone; the last release reads it
 * after the atomic count. */
static void own_socket_close(struct accept_task *t)
{
    if (t->b->nfds == 1)
        return;
    int *fd = &t->b->fds[t->slot];
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void accept_drop(struct ac_future *f)
{
    struct accept_task *t = (struct accept_task *)f;
    ac_limit_wait_cancel(&t->wait);
    give_back(t);
    if (t->gate_live)
        ac_future_drop(&t->gate.base);
    if (t->pause_armed)
        ac_future_drop(&t->pause.base);
    ac_future_drop(&t->closing.base);
    if (t->listener_open)
        ac_listener_close(&t->l);
    own_socket_close(t);
    if (t->gen)
        ferry_gen_unref(t->gen);
    struct ferry_daemon *d = t->d;
    bound_release(t->b);
    /* Last: a connection this task accepted is counted active by now. */
    atomic_fetch_sub_explicit(&d->accept_tasks, 1, memory_order_release);
}

static const struct ac_future_vtable accept_vt = {accept_poll, accept_drop};

static void accept_free(struct ac_future *f) { free(f); }

int ferry_listen_start(struct ferry_daemon *d, struct ferry_listen_addr *b)
{
    /* One task per worker on a shared socket; one per socket of a group
     * (a group handed over by an upgrade may have been made for another
     * number of workers: every socket is served, round robin). */
    unsigned ntasks = b->nfds == 1 ? d->nworkers : b->nfds;
    for (unsigned i = 0; i < ntasks; i++) {
        struct accept_task *t = calloc(1, sizeof(*t));
        if (!t)
            return -ENOMEM;
        t->base.vt = &accept_vt;
        t->d = d;
        t->fw = &d->workers[i % d->nworkers];
        t->slot = i;
        t->b = b;
        ac_notified_init(&t->closing, &b->closing);
        atomic_fetch_add(&b->tasks, 1);
        atomic_fetch_add(&d->accept_tasks, 1);
        int rc = ac_spawn(t->fw->w, &t->base, accept_free);
        if (rc < 0)
            return rc; /* the task was dropped: its reference is released */
    }
    return 0;
}

void ferry_listen_close(struct ferry_listen_addr *b, bool serve_queue)
{
    b->serve_queue = serve_queue;
    ac_notify_all(&b->closing);
    bound_release(b); /* the daemon's own reference */
}

static struct ferry_listen_addr *bound_new(const char *addr, const int *fds, unsigned nfds)
{
    struct ferry_listen_addr *b = calloc(1, sizeof(*b) + nfds * sizeof(b->fds[0]));
    if (!b)
        return NULL;
    snprintf(b->addr, sizeof(b->addr), "%s", addr);
    b->nfds = nfds;
    memcpy(b->fds, fds, nfds * sizeof(fds[0]));
    b->unix_path = strncmp(addr, "unix:", 5) == 0;
    atomic_init(&b->tasks, 1); /* the daemon's reference */
    ac_notify_init(&b->closing);
    return b;
}

struct ferry_listen_addr *ferry_listen_adopt_group(const char *addr, const int *fds, unsigned nfds,
                                            bool inherited, const char *sd_name)
{
    struct ferry_listen_addr *b = bound_new(addr, fds, nfds);
    if (b) {
        b->inherited = inherited;
        b->keep_file = true; /* the old process's file (see listen.h) */
        snprintf(b->sd_name, sizeof(b->sd_name), "%s", sd_name ? sd_name : "");
    }
    return b;
}

struct ferry_listen_addr *ferry_listen_adopt(const char *addr, int fd, const char *sd_name)
{
    /* One socket, shared by the workers, whatever reuseport says: siblings
     * bound next to it would be ours to close, and closing one socket of a
     * reuseport group resets what is queued on it. */
    struct ferry_listen_addr *b = bound_new(addr, &fd, 1);
    if (b) {
        b->inherited = true;
        snprintf(b->sd_name, sizeof(b->sd_name), "%s", sd_name ? sd_name : "");
    }
    return b;
}

/* Fails as a plain bind would when something listens on the address
 * already. A socket of a reuseport group would join any group of the same
 * user there instead (another ferryd, or the draining socket of an address
 * a reload just removed): a bind without SO_REUSEPORT, never listening (so
 * no client can reach it), finds out first. */
static int probe_unused(const struct sockaddr_storage *ss, socklen_t len, unsigned flags)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, v6only = (flags & AC_LISTEN_V6ONLY) ? 1 : 0, rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* n listening sockets on one address (n > 1: a reuseport group). */
static int listen_n(const struct sockaddr_storage *ss, socklen_t len, unsigned flags, int *fds,
                    unsigned n)
{
    if (n > 1) {
        int rc = probe_unused(ss, len, flags);
        if (rc < 0)
            return rc;
        flags |= AC_LISTEN_REUSEPORT;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = ac_listen_socket((const struct sockaddr *)ss, len, 4096, flags);
        if (fds[i] < 0) {
            int rc = fds[i];
            while (i > 0)
                close(fds[--i]);
            return rc;
        }
    }
    return 0;
}

/* Binds an address from the configuration. "*:P" is one dual-stack IPv6
 * socket (per worker with reuseport), or IPv4 0.0.0.0 where IPv6 is not
 * available. */
/* The sockets of one address, "*:P" as dual-stack IPv6 (IPv4 where there
 * is none). */
static int listen_addr(const struct ferry_addr *a, unsigned flags, int *fds, unsigned n)
{
    struct sockaddr_storage ss;
    int rc;
    if (a->kind == FERRY_ADDR_ANY) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        memset(&ss, 0, sizeof(ss));
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons(a->port);
        rc = listen_n(&ss, sizeof(*s6), flags, fds, n);
        if (rc == -EAFNOSUPPORT || rc == -EADDRNOTAVAIL) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            memset(&ss, 0, sizeof(ss));
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
            s4->sin_port = htons(a->port);
            rc = listen_n(&ss, sizeof(*s4), flags, fds, n);
        }
        return rc;
    }
    memcpy(&ss, &a->sa, a->sa_len);
    return listen_n(&ss, a->sa_len, flags | (ss.ss_family == AF_INET6 ? AC_LISTEN_V6ONLY : 0),
                    fds, n);
}

/* TCP Fast Open on each socket: the kernel may refuse it (a warning). */
static void set_fastopen(const char *addr, const int *fds, unsigned n, unsigned qlen)
{
    for (unsigned i = 0; qlen && i < n; i++) {
        int v = (int)qlen;
        if (setsockopt(fds[i], IPPROTO_TCP, TCP_FASTOPEN, &v, sizeof(v)) != 0) {
            ferry_log(FERRY_LOG_WARN, "tcp_fastopen_unavailable", "bind=%s error=%s", addr,
                      strerror(errno));
            return;
        }
    }
}

int ferry_listen_bind(const struct ferry_addr *a, bool reuseport, unsigned nsockets, bool mptcp,
                      unsigned fastopen, struct ferry_listen_addr **out)
{
    unsigned n = reuseport && a->kind != FERRY_ADDR_UNIX && nsockets > 1 ? nsockets : 1;
    int *fds = calloc(n, sizeof(*fds));
    if (!fds)
        return -ENOMEM;
    bool mp = mptcp && a->kind != FERRY_ADDR_UNIX;
    int rc = listen_addr(a, mp ? AC_LISTEN_MPTCP : 0, fds, n);
    if (rc == -EPROTONOSUPPORT && mp) {
        ferry_log(FERRY_LOG_WARN, "mptcp_unavailable", "bind=%s error=\"the kernel has no "
                  "Multipath TCP (net.mptcp.enabled)\" using=tcp", a->text);
        rc = listen_addr(a, 0, fds, n);
    }
    if (rc == 0 && a->kind != FERRY_ADDR_UNIX)
        set_fastopen(a->text, fds, n, fastopen);
    if (rc == 0) {
        *out = bound_new(a->text, fds, n);
        if (!*out) {
            for (unsigned i = 0; i < n; i++)
                close(fds[i]);
            rc = -ENOMEM;
        }
    }
    free(fds);
    return rc;
}

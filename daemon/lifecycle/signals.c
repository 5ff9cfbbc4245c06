/* ferryd: signals, graceful stop, and the systemd watchdog and status.
 *
 * Signals arrive through a signalfd registered with worker 0's reactor (they
 * are blocked in every thread), so handling them is ordinary task code:
 *   SIGHUP          reload (one at a time; one more queued if it comes during)
 *   SIGUSR2         upgrade (upgrade.h), as `ferryctl upgrade` does
 *   SIGTERM/SIGINT  /ready turns 503 and, for shutdown_delay, ferryd goes on
 *                   accepting and serving (a load balancer takes it out of
 *                   rotation meanwhile); then it stops accepting, lets
 *                   connections finish for up to drain_timeout (counted from
 *                   the end of the delay, so a connection accepted during it
 *                   gets the whole drain time), cuts the rest and exits; a
 *                   second signal stops at once.
 * After an upgrade handed everything over, the old process stops as on
 * SIGTERM but says nothing to systemd (the new process is its main one),
 * skips shutdown_delay and leaves the accept queues to the new process.
 * A heartbeat task on each worker stamps its loop as alive; WATCHDOG=1 is sent
 * only while every loop is.
 */
#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "asynccore/timer.h"
#include "proxy/listen.h"
#include "lifecycle/cert_expiry.h"
#include "lifecycle/signals.h"
#include "lifecycle/reload.h"
#include "gen.h"
#include "log/log.h"
#include "lifecycle/sdnotify.h"
#include "lifecycle/upgrade.h"
#include "worker.h"

#define HEARTBEAT_MS 250
#define STOP_POLL_MS 50
#define CUT_GRACE_MS 2000

enum { RUNNING, DELAYING, DRAINING, CUTTING };

struct signal_task {
    struct ac_future base;
    struct ferry_daemon *d;
    int sfd;
    struct ac_io io;
    struct ferry_reload reload;
    bool reload_live, reload_again;
    struct ferry_upgrade upgrade;
    bool upgrade_live;
    int stop_state;
    uint64_t cut_at, give_up_at;
    struct ac_sleep tick;
    bool tick_live;
};

void ferry_lifecycle_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static uint64_t active_conns(struct ferry_daemon *d)
{
    uint64_t active, total;
    ferry_daemon_conn_totals(d, &active, &total);
    return active;
}

static void send_status(struct ferry_daemon *d)
{
    if (atomic_load(&d->handed_over))
        return; /* the new process speaks for the unit now */
    char line[160];
    ferry_lifecycle_status(d, line, sizeof(line));
    ferry_sd_notifyf("STATUS=%s", line);
}

/* The end of shutdown_delay (or the stop signal, without one): close every
 * listening socket, stop health checks and start the drain clock. A reload
 * still running is dropped: it must not bind anything now. */
static void stop_accepting(struct signal_task *t, struct ac_context *cx)
{
    struct ferry_daemon *d = t->d;
    if (t->reload_live) {
        ac_future_drop(&t->reload.base);
        ferry_config_errors_free(&t->reload.errs);
        t->reload_live = t->reload_again = false;
    }
    if (t->upgrade_live) { /* a new process not ready yet is stopped */
        ac_future_drop(&t->upgrade.base);
        t->upgrade_live = false;
    }
    bool handed = atomic_load(&d->handed_over);
    uint64_t now = ac_worker_now_ms(cx->worker);
    atomic_store(&d->accept_until_ms, now);
    ferry_log(FERRY_LOG_INFO, "stopping", "active=%llu drain_timeout_ms=%llu ?handed_over=%s",
              (unsigned long long)active_conns(d),
              (unsigned long long)d->gen->cfg->global.drain_timeout_ms, handed ? "yes" : "");
    /* Connections the kernel already completed are served, not reset; after
     * a handover the new process serves them (the queues stay open there). */
    while (d->bound) {
        struct ferry_listen_addr *b = d->bound;
        d->bound = b->next;
        ferry_listen_close(b, !handed);
    }
    ac_notify_all(&d->gen->stop); /* health checks */
    t->cut_at = now + d->gen->cfg->global.drain_timeout_ms;
    t->give_up_at = t->cut_at + CUT_GRACE_MS;
    t->stop_state = DRAINING;
    send_status(d);
}

static void begin_stop(struct signal_task *t, struct ac_context *cx)
{
    struct ferry_daemon *d = t->d;
    bool handed = atomic_load(&d->handed_over);
    uint64_t delay = handed ? 0 : d->gen->cfg->global.shutdown_delay_ms;
    uint64_t now = ac_worker_now_ms(cx->worker);
    atomic_store(&d->accept_until_ms, now + delay);
    atomic_store(&d->stopping, true);
    if (!handed)
        ferry_sd_notify("STOPPING=1");
    if (delay == 0) {
        stop_accepting(t, cx);
        return;
    }
    ferry_log(FERRY_LOG_INFO, "shutdown_delay",
              "active=%llu shutdown_delay_ms=%llu", (unsigned long long)active_conns(d),
              (unsigned long long)delay);
    t->stop_state = DELAYING;
    send_status(d);
}

static void cut(struct ferry_daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        if (ferry_worker_cut(&d->workers[i]) < 0)
            ferry_log(FERRY_LOG_ERROR, "cut_failed", "worker=%u", i);
}

static void on_signal(struct signal_task *t, struct ac_context *cx, int signo)
{
    if (signo == SIGUSR1) {
        ferry_logger_reopen(&t->d->log);
        return;
    }
    if (signo == SIGUSR2) {
        if (t->stop_state != RUNNING)
            return;
        if (t->upgrade_live) {
            ferry_log(FERRY_LOG_WARN, "upgrade_ignored", "error=%s", "upgrade in progress");
            return;
        }
        ferry_upgrade_init(&t->upgrade, t->d);
        t->upgrade_live = true;
        return;
    }
    if (signo == SIGHUP) {
        if (t->stop_state != RUNNING)
            return;
        if (atomic_load(&t->d->upgrading)) {
            ferry_log(FERRY_LOG_WARN, "reload_ignored", "error=%s", "upgrade in progress");
            return;
        }
        if (t->reload_live) {
            t->reload_again = true;
            return;
        }
        ferry_reload_init(&t->reload, t->d);
        t->reload_live = true;
        return;
    }
    if (t->stop_state != RUNNING) {
        ferry_log(FERRY_LOG_INFO, "stop_now", "signal=%d", signo);
        cut(t->d);
        ac_runtime_stop(t->d->rt);
        return;
    }
    begin_stop(t, cx);
}

static void read_signals(struct signal_task *t, struct ac_context *cx)
{
    for (;;) {
        struct ac_ready_event ev;
        if (ac_io_poll_ready(&t->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
            return;
        struct signalfd_siginfo si;
        ssize_t n = read(t->sfd, &si, sizeof(si));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ac_io_clear_ready(&t->io, AC_DIR_READ, ev);
            continue;
        }
        if (n != (ssize_t)sizeof(si))
            return;
        on_signal(t, cx, (int)si.ssi_signo);
    }
}

/* SIGUSR2's upgrade: its outcome is logged by the upgrade itself. */
static void poll_upgrade(struct signal_task *t, struct ac_context *cx)
{
    if (!t->upgrade_live || ac_future_poll(&t->upgrade.base, cx) == AC_PENDING)
        return;
    ac_future_drop(&t->upgrade.base);
    t->upgrade_live = false;
}

/* After a handover: a new process that ended while this one drains was
 * our child; reap it (the one that serves now is no child of ours once
 * we are gone). Nothing else here has children. */
static void reap_children(struct ferry_daemon *d)
{
    if (!atomic_load(&d->handed_over))
        return;
    int st;
    while (waitpid(-1, &st, WNOHANG) > 0)
        ;
}

static void poll_reload(struct signal_task *t, struct ac_context *cx)
{
    while (t->reload_live) {
        if (ac_future_poll(&t->reload.base, cx) == AC_PENDING)
            return;
        ferry_reload_free_msgs(&t->reload);
        ac_future_drop(&t->reload.base);
        t->reload_live = false;
        if (t->reload_again && t->stop_state == RUNNING) {
            t->reload_again = false;
            ferry_reload_init(&t->reload, t->d);
            t->reload_live = true;
        }
    }
}

/* While stopping: checks every STOP_POLL_MS whether the delay is over and
 * whether the work is done. */
static ac_poll_t poll_stop(struct signal_task *t, struct ac_context *cx)
{
    for (;;) {
        uint64_t now = ac_worker_now_ms(cx->worker);
        reap_children(t->d);
        if (t->stop_state == DELAYING && now >= atomic_load(&t->d->accept_until_ms))
            stop_accepting(t, cx);
        /* Done when the accept tasks ended (so that a connection one of
         * them accepted last is counted) and no connection is left. */
        if (t->stop_state != DELAYING &&
            ((atomic_load_explicit(&t->d->accept_tasks, memory_order_acquire) == 0 &&
              active_conns(t->d) == 0) ||
             now >= t->give_up_at)) {
            ac_runtime_stop(t->d->rt);
            return AC_READY;
        }
        if (t->stop_state == DRAINING && now >= t->cut_at) {
            ferry_log(FERRY_LOG_INFO, "drain_timeout", "active=%llu",
                      (unsigned long long)active_conns(t->d));
            cut(t->d);
            t->stop_state = CUTTING;
        }
        if (!t->tick_live) {
            ac_sleep_init(&t->tick, STOP_POLL_MS);
            t->tick_live = true;
        }
        if (ac_future_poll(&t->tick.base, cx) == AC_PENDING)
            return AC_PENDING;
        ac_future_drop(&t->tick.base);
        t->tick_live = false;
    }
}

static ac_poll_t signal_poll(struct ac_future *f, struct ac_context *cx)
{
    struct signal_task *t = (struct signal_task *)f;
    if (!t->io.worker) {
        int rc = ac_io_register(cx->worker, t->sfd, 0, &t->io);
        if (rc != 0) {
            ferry_log(FERRY_LOG_ERROR, "signals_failed", "error=%s", strerror(-rc));
            return AC_READY;
        }
    }
    read_signals(t, cx);
    poll_reload(t, cx);
    poll_upgrade(t, cx);
    if (t->stop_state != RUNNING)
        return poll_stop(t, cx);
    return AC_PENDING;
}

static void signal_drop(struct ac_future *f)
{
    struct signal_task *t = (struct signal_task *)f;
    if (t->reload_live) {
        ac_future_drop(&t->reload.base);
        ferry_reload_free_msgs(&t->reload);
    }
    if (t->upgrade_live)
        ac_future_drop(&t->upgrade.base);
    if (t->tick_live)
        ac_future_drop(&t->tick.base);
    ac_io_deregister(&t->io);
    close(t->sfd);
}

static const struct ac_future_vtable signal_vt = {signal_poll, signal_drop};

/* ---- heartbeat, watchdog, status ---- */

struct heartbeat_task {
    struct ac_future base;
    struct ferry_worker *fw;
    struct ac_sleep tick;
};

static ac_poll_t heartbeat_poll(struct ac_future *f, struct ac_context *cx)
{
    struct heartbeat_task *t = (struct heartbeat_task *)f;
    for (;;) {
        if (ac_future_poll(&t->tick.base, cx) == AC_PENDING)
            return AC_PENDING;
        atomic_store(&t->fw->alive_ms, ac_worker_now_ms(cx->worker));
        ac_sleep_reset(&t->tick, ac_worker_now_ms(cx->worker) + HEARTBEAT_MS);
    }
}

static void heartbeat_drop(struct ac_future *f)
{
    ac_future_drop(&((struct heartbeat_task *)f)->tick.base);
}

static const struct ac_future_vtable heartbeat_vt = {heartbeat_poll, heartbeat_drop};

struct watchdog_task {
    struct ac_future base;
    struct ferry_daemon *d;
    uint64_t interval_ms; /* 0: no watchdog, status only */
    uint64_t watchdog_limit_ms;
    uint64_t last_status_ms;
    char last_status[128];
    struct ferry_cert_expiry expiry;
    struct ac_sleep tick;
};

static bool loops_alive(struct ferry_daemon *d, uint64_t now, uint64_t limit)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        if (now - atomic_load(&d->workers[i].alive_ms) > limit)
            return false;
    return true;
}

void ferry_lifecycle_status(struct ferry_daemon *d, char *buf, size_t len)
{
    uint64_t active, total;
    ferry_daemon_conn_totals(d, &active, &total);
    uint64_t now = ac_clock_now_ms(), until = atomic_load(&d->accept_until_ms);
    if (atomic_load(&d->stopping) && now < until)
        snprintf(buf, len, "Stopping: not ready, still accepting for %llu s (shutdown_delay), "
                 "%llu active connections", (unsigned long long)(until - now + 999) / 1000,
                 (unsigned long long)active);
    else if (atomic_load(&d->stopping))
        snprintf(buf, len, "Stopping: not accepting, draining %llu active connections",
                 (unsigned long long)active);
    else
        snprintf(buf, len, "%llu active connections, %llu total, %llu reloads",
                 (unsigned long long)active, (unsigned long long)total,
                 (unsigned long long)atomic_load(&d->reloads));
}

static ac_poll_t watchdog_poll(struct ac_future *f, struct ac_context *cx)
{
    struct watchdog_task *t = (struct watchdog_task *)f;
    for (;;) {
        if (ac_future_poll(&t->tick.base, cx) == AC_PENDING)
            return AC_PENDING;
        uint64_t now = ac_worker_now_ms(cx->worker);
        /* After an upgrade handed over, the new process is the unit's main
         * one: this one pings and reports nothing more. */
        bool quiet = atomic_load(&t->d->handed_over);
        if (t->interval_ms && !quiet && loops_alive(t->d, now, t->watchdog_limit_ms))
            ferry_sd_notify("WATCHDOG=1");
        char status[128];
        ferry_lifecycle_status(t->d, status, sizeof(status));
        if (!quiet && now - t->last_status_ms >= 10000 && strcmp(status, t->last_status) != 0) {
            ferry_sd_notifyf("STATUS=%s", status);
            memcpy(t->last_status, status, sizeof(status));
            t->last_status_ms = now;
        }
        ferry_cert_expiry_tick(&t->expiry, t->d, now);
        uint64_t next = t->interval_ms ? t->interval_ms : 1000;
        ac_sleep_reset(&t->tick, now + (next < 1000 ? next : 1000));
    }
}

static void watchdog_drop(struct ac_future *f)
{
    ac_future_drop(&((struct watchdog_task *)f)->tick.base);
}

static const struct ac_future_vtable watchdog_vt = {watchdog_poll, watchdog_drop};

static void task_free(struct ac_future *f) { free(f); }

int ferry_lifecycle_start(struct ferry_daemon *d, const sigset_t *set)
{
    struct signal_task *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (st->sfd < 0) {
        int err = -errno;
        free(st);
        return err;
    }
    st->base.vt = &signal_vt;
    st->d = d;
    int rc = ac_spawn(d->workers[0].w, &st->base, task_free);
    if (rc < 0)
        return rc;

    uint64_t now = ac_clock_now_ms();
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct heartbeat_task *h = calloc(1, sizeof(*h));
        if (!h)
            return -ENOMEM;
        h->base.vt = &heartbeat_vt;
        h->fw = &d->workers[i];
        atomic_store(&d->workers[i].alive_ms, now);
        ac_sleep_init(&h->tick, 0);
        if ((rc = ac_spawn(d->workers[i].w, &h->base, task_free)) < 0)
            return rc;
    }

    struct watchdog_task *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->base.vt = &watchdog_vt;
    w->d = d;
    uint64_t usec = ferry_sd_watchdog_usec();
    w->interval_ms = usec / 2000;
    if (usec && w->interval_ms == 0)
        w->interval_ms = 1;
    w->watchdog_limit_ms = usec / 1000 > 2 * HEARTBEAT_MS ? usec / 1000 : 2 * HEARTBEAT_MS + 100;
    ferry_lifecycle_status(d, w->last_status, sizeof(w->last_status));
    w->last_status_ms = now;
    ac_sleep_init(&w->tick, w->interval_ms ? w->interval_ms : 1000);
    return ac_spawn(d->workers[0].w, &w->base, task_free);
}

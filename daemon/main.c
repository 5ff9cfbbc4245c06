/* ferryd: the daemon's entry point (ferryd(8)).
 *
 * Start-up: read and check the configuration (exit 1 on errors), build the
 * first generation, bind or inherit every listening socket, open the control
 * socket and metrics endpoint, drop privileges, then run the event loops
 * until a stop signal. Exit 2 for any start-up failure.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lifecycle/gen_switch.h"
#include "acme/acme.h"
#include "proxy/listen.h"
#include "lifecycle/confcheck.h"
#include "control/control.h"
#include "daemon.h"
#include "gen.h"
#include "worker.h"
#include "lifecycle/reload.h"
#include "proxy/listen.h"
#include "servers/dnswatch.h"
#include "gen.h"
#include "lifecycle/signals.h"
#include "log/log.h"
#include "control/metrics_http.h"
#include "lifecycle/privs.h"
#include "lifecycle/sdnotify.h"
#include "lifecycle/tls_watch.h"
#include "lifecycle/state_file.h"
#include "lifecycle/handover.h"
#include "lifecycle/upgrade.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif
#ifndef FERRY_SYSCONFDIR
#define FERRY_SYSCONFDIR "/etc"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferryd [-c FILE] [-t] [-V] [-h]\n"
            "  -c, --config FILE   configuration file (default: %s/ferry/ferry.ini)\n"
            "  -t, --test          check the configuration and exit\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this help\n",
            FERRY_SYSCONFDIR);
}

static void print_errors(FILE *out, struct ferry_config_errors *errs, const char *path)
{
    ferry_config_errors_sort(errs, path);
    for (size_t i = 0; i < errs->n; i++)
        fprintf(out, "%s\n", errs->msgs[i]);
}

/* getrandom(2): waits for the kernel's pool once at boot, then never. */
static int fill_random(unsigned char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        done += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

/* Start-up errors: on stderr, and to the old process when this is an
 * upgrade (it answers them to whoever asked for the upgrade). */
static void report_errors(const struct ferry_handover *ho, struct ferry_config_errors *errs,
                          const char *path)
{
    print_errors(stderr, errs, path);
    for (size_t i = 0; ho && ho->chan >= 0 && i < errs->n; i++)
        ferry_handover_send_msg(ho->chan, 'e', errs->msgs[i]);
}

/* [global] io_backend as asynccore's choice (asynccore/backend.h). */
static enum ac_backend io_backend_of(enum ferry_io_backend b)
{
    switch (b) {
    case FERRY_IO_EPOLL: return AC_BACKEND_EPOLL;
    case FERRY_IO_URING: return AC_BACKEND_IO_URING;
    case FERRY_IO_POLL: return AC_BACKEND_POLL;
    case FERRY_IO_KQUEUE: return AC_BACKEND_KQUEUE;
    case FERRY_IO_AUTO: break;
    }
    return AC_BACKEND_AUTO;
}

static int daemon_init(struct ferry_daemon *d, const char *path, unsigned workers,
                       enum ferry_io_backend io_backend)
{
    memset(d, 0, sizeof(*d));
    d->version = FERRY_VERSION;
    d->ctl_fd = d->metrics_fd = -1;
    ac_notify_init(&d->services_stop);
    d->config_path = strdup(path);
    d->config_abs = realpath(path, NULL);
    if (!d->config_abs)
        d->config_abs = strdup(path);
    d->pid = getpid();
    d->start_ms = ac_clock_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    d->start_unix = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    atomic_init(&d->last_reload_ok, true);
    /* From the kernel, not OpenSSL's generator: a ferryd without TLS never
     * initialises libcrypto, whose first use touches about 2.4 MB of its
     * pages (RSS at rest 6.3 -> 3.9 MB, tests/bench/RESULTS.md). */
    if (fill_random(d->ticket_key, sizeof(d->ticket_key)) != 0)
        return -EIO;
    atomic_init(&d->last_reload_success, (int64_t)ts.tv_sec);
    pthread_mutex_init(&d->gen_ptr_lock, NULL);
    pthread_mutex_init(&d->state_file_lock, NULL);
    struct ac_runtime_opts opts = {.workers = workers, .backend = io_backend_of(io_backend)};
    d->rt = ac_runtime_new(&opts);
    if (!d->rt)
        return -errno;
    if (!d->config_path || !d->config_abs)
        return -ENOMEM;
    d->nworkers = ac_runtime_workers(d->rt);
    d->workers = calloc(d->nworkers, sizeof(*d->workers));
    if (!d->workers || ferry_registry_init(&d->stats, d->nworkers) != 0 ||
        ac_limit_init(&d->conn_limit, 0) != 0)
        return -ENOMEM;
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct ferry_worker *fw = &d->workers[i];
        fw->d = d;
        fw->index = i;
        fw->seat = (struct ferry_log_seat){&d->log, i};
        fw->w = ac_runtime_worker(d->rt, i);
        ac_local_notify_init(&fw->drain);
        fw->conn_cache.max = FERRY_OBJCACHE_MAX;
        fw->handshake_cache.max = FERRY_OBJCACHE_PHASE_MAX;
        fw->upstream_cache.max = FERRY_OBJCACHE_PHASE_MAX;
        ac_worker_set_data(fw->w, fw);
    }
    return 0;
}

static void daemon_free(struct ferry_daemon *d)
{
    if (d->rt)
        ac_runtime_free(d->rt); /* drops every task: connections log, sockets close */
    ferry_acme_free(d->acme); /* after its tasks and the blocking pool are gone */
    d->acme = NULL;
    ferry_logger_stop(&d->log); /* writes what the connections logged */
    while (d->bound) {
        struct ferry_listen_addr *b = d->bound;
        d->bound = b->next;
        ferry_listen_close(b, false);
    }
    if (d->gen)
        ferry_gen_unref(d->gen);
    while (d->limits) {
        struct ferry_listener_limit *l = d->limits;
        d->limits = l->next;
        ac_limit_destroy(&l->lim);
        free(l);
    }
    for (size_t i = 0; i < d->nsd_fds; i++)
        if (!d->sd_fds[i].claimed)
            close(d->sd_fds[i].fd);
    free(d->sd_fds);
    for (unsigned i = 0; d->workers && i < d->nworkers; i++)
        ferry_worker_caches_clear(&d->workers[i]); /* the tasks are gone */
    free(d->workers);
    ferry_registry_destroy(&d->stats);
    ac_limit_destroy(&d->conn_limit);
    pthread_mutex_destroy(&d->gen_ptr_lock);
    pthread_mutex_destroy(&d->state_file_lock);
    ac_notify_destroy(&d->services_stop);
    ferry_state_notes_free(d);
    free(d->config_path);
    free(d->config_abs);
    free(d->exe_path);
}

/* -t: syntax, references, TLS files and the files written at start; no DNS,
 * no binding. Errors and warnings on stderr, the verdict on stdout. */
static int check_only(const char *path)
{
    struct ferry_config_errors errs = {0}, warns = {0};
    struct ferry_config *cfg = ferry_config_test(path, (int64_t)time(NULL), &errs, &warns);
    if (cfg) {
        struct ferry_daemon d;
        if (daemon_init(&d, path, 1, FERRY_IO_AUTO) != 0) {
            fprintf(stderr, "ferryd: out of memory\n");
            ferry_config_free(cfg);
            ferry_config_errors_free(&warns);
            return 2;
        }
        struct ferry_gen *g = ferry_gen_build(&d, cfg, &errs);
        if (g)
            ferry_gen_unref(g);
        daemon_free(&d);
    }
    int status = errs.n ? 1 : 0;
    if (errs.n)
        print_errors(stderr, &errs, path);
    for (size_t i = 0; i < warns.n; i++)
        fprintf(stderr, "%s\n", warns.msgs[i]);
    ferry_config_errors_free(&errs);
    ferry_config_errors_free(&warns);
    if (status == 0)
        printf("%s: configuration is valid\n", path);
    return status;
}

/* A bind that fails at start names the line that asked for it (ferryd(8)),
 * as `-t` prints errors. */
static void bind_error(const struct ferry_daemon *d, const char *path, int line,
                       const char *what, int err)
{
    struct ferry_config_errors errs = {0};
    ferry_config_error_add(&errs, path, line, "cannot bind %s: %s", what, strerror(err));
    report_errors(d->handover, &errs, path);
    ferry_config_errors_free(&errs);
}

static int start_services(struct ferry_daemon *d, const struct ferry_gen *g,
                          struct ferry_control **ctl, struct ferry_metrics **metrics)
{
    const struct ferry_global *gl = &g->cfg->global;
    int err = 0;
    struct ferry_handed_sock *hs;
    if (gl->control_socket[0] &&
        (hs = ferry_handover_find(d->handover, FERRY_HANDED_CONTROL, gl->control_socket, NULL))) {
        hs->claimed = true; /* the old process's socket, at the same path */
        *ctl = ferry_control_adopt(d, gl->control_socket, hs->fds[0], &err);
        if (!*ctl) {
            bind_error(d, g->cfg->path, gl->control_socket_line, gl->control_socket, -err);
            return -1;
        }
    } else if (gl->control_socket[0]) {
        *ctl = ferry_control_start(d, gl->control_socket, gl->control_mode, &err);
        if (!*ctl) {
            bind_error(d, g->cfg->path, gl->control_socket_line, gl->control_socket, -err);
            return -1;
        }
    }
    if (gl->has_metrics &&
        (hs = ferry_handover_find(d->handover, FERRY_HANDED_METRICS, gl->metrics.text, NULL))) {
        hs->claimed = true;
        *metrics = ferry_metrics_adopt(d, &gl->metrics, hs->fds[0], &err);
        if (!*metrics) {
            bind_error(d, g->cfg->path, gl->metrics_line, gl->metrics.text, -err);
            return -1;
        }
    } else if (gl->has_metrics) {
        *metrics = ferry_metrics_start(d, &gl->metrics, &err);
        if (!*metrics) {
            bind_error(d, g->cfg->path, gl->metrics_line, gl->metrics.text, -err);
            return -1;
        }
    }
    return 0;
}

/* The control socket was made before dropping privileges: hand it to the
 * user and group the daemon becomes, so that they can use it and remove it. */
static int chown_control_socket(const struct ferry_gen *g, char *err, size_t errlen)
{
    const struct ferry_global *gl = &g->cfg->global;
    if (!gl->control_socket[0] || (!gl->user[0] && !gl->group[0]))
        return 0;
    uid_t uid;
    gid_t gid;
    if (ferry_privs_lookup(gl->user, gl->group, &uid, &gid, err, errlen) != 0)
        return -1;
    if (lchown(gl->control_socket, uid, gid) != 0) {
        snprintf(err, errlen, "cannot hand %s to the new user: %s", gl->control_socket,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Builds the first generation (TLS files, DNS) on the blocking pool, as a
 * reload does, with worker 0 driving it on this thread. */
struct build_job {
    struct ferry_daemon *d;
    struct ferry_config *cfg;
    struct ferry_config_errors *errs;
};

static void *build_work(void *arg)
{
    struct build_job *j = arg;
    return ferry_gen_build(j->d, j->cfg, j->errs);
}

static struct ferry_gen *build_first_gen(struct ferry_daemon *d, struct ferry_config *cfg,
                                         struct ferry_config_errors *errs)
{
    struct build_job job = {d, cfg, errs};
    struct ac_blocking b;
    ac_blocking_init(&b, d->rt, build_work, &job, NULL);
    if (ac_block_on(d->workers[0].w, &b.base) != 0 || b.err) {
        ac_future_drop(&b.base);
        if (b.err) /* the job never ran: the configuration is still ours */
            ferry_config_free(cfg);
        ferry_config_error_add(errs, d->config_path, 0, "cannot run the start-up job");
        return NULL;
    }
    struct ferry_gen *g = b.result;
    ac_future_drop(&b.base);
    return g;
}

static int unclaimed_inherited(struct ferry_daemon *d)
{
    for (size_t i = 0; i < d->nsd_fds; i++) {
        if (!d->sd_fds[i].claimed) {
            fprintf(stderr, "ferryd: inherited socket %s (name '%s') is not used by any listener\n",
                    d->sd_fds[i].addr, d->sd_fds[i].name);
            return -1;
        }
    }
    return 0;
}

/* A new process started by an upgrade: takes what the old one hands over
 * (sockets, ticket key, runtime state). 0 when this is no upgrade or all
 * arrived; -1 with the reason printed. */
static int take_handover(struct ferry_handover *ho)
{
    memset(ho, 0, sizeof(*ho));
    ho->chan = -1;
    int chan = ferry_handover_channel_from_env();
    if (chan == -1)
        return 0;
    if (chan < 0) {
        fprintf(stderr, "ferryd: $%s does not name an upgrade channel\n", FERRY_HANDOVER_ENV);
        return -1;
    }
    /* The watchdog is ours to ping once we are the main process. */
    if (getenv("WATCHDOG_PID")) {
        char pid[24];
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        setenv("WATCHDOG_PID", pid, 1);
    }
    char err[256];
    if (ferry_handover_recv(chan, 10000, ho, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        ferry_handover_send_msg(chan, 'e', err);
        ho->chan = chan;
        ferry_handover_free(ho); /* closes chan and what arrived */
        return -1;
    }
    return 0;
}

/* An upgrade: says we are ready and waits for the old process's go. */
static int become_main(struct ferry_daemon *d, struct ferry_handover *ho)
{
    if (ho->chan < 0)
        return 0;
    int rc = ferry_handover_ready(ho->chan, d->version, FERRY_UPGRADE_READY_MS + 5000);
    if (rc != 0) {
        fprintf(stderr, "ferryd: the old process (pid %ld) did not hand over: %s\n",
                (long)ho->old_pid, strerror(-rc));
        return -1;
    }
    ferry_handover_free(ho); /* the sockets no listener took close now */
    return 0;
}

/* What a run of ferryd holds, from start to exit; run() unwinds it once. */
struct run {
    const char *path;
    char **argv;
    struct ferry_handover ho;
    struct ferry_config_errors errs;
    bool have_daemon; /* daemon_init ran: daemon_free undoes it */
    struct ferry_daemon d;
    struct ferry_control *ctl;
    struct ferry_metrics *metrics;
    struct ferry_gen *g;
    struct ferry_new_sockets fresh;
    sigset_t sigs;
};

/* The configuration, checked: NULL with *status 1 (errors) or 2 (an
 * account that does not exist would stop the start at the privilege drop,
 * after binding, and a file to write in a missing or unwritable directory
 * would fail later: both said first, at their line, as -t says them). */
static struct ferry_config *load_config(struct run *r, int *status)
{
    struct ferry_config *cfg = ferry_config_load_checked(r->path, &r->errs);
    *status = 1;
    if (cfg) {
        ferry_config_check_accounts(cfg, &r->errs);
        ferry_config_check_writable(cfg, &r->errs); /* log, access_log, state_file, as -t */
        *status = 2;
        if (r->errs.n == 0)
            return cfg;
        ferry_config_free(cfg);
    }
    report_errors(&r->ho, &r->errs, r->path);
    return NULL;
}

/* The runtime could not start: an io_backend the kernel refuses (or this
 * build lacks) is named with the kernel's reason; on stderr, and to the old
 * process when this is an upgrade. */
static void runtime_error(const struct ferry_handover *ho, const struct ferry_config *cfg, int rc)
{
    char msg[256];
    const char *env = getenv("AC_BACKEND");
    if (cfg->global.io_backend == FERRY_IO_AUTO && env && env[0])
        snprintf(msg, sizeof(msg), "cannot start the event loops: AC_BACKEND=%s: %s", env,
                 strerror(-rc));
    else if (cfg->global.io_backend != FERRY_IO_AUTO && rc != -ENOMEM)
        snprintf(msg, sizeof(msg), "cannot start the event loops: io_backend = %s: %s",
                 ac_backend_name(io_backend_of(cfg->global.io_backend)),
                 rc == -ENOSYS ? "not available in this build or on this kernel" : strerror(-rc));
    else
        snprintf(msg, sizeof(msg), "cannot start the event loops: %s", strerror(-rc));
    fprintf(stderr, "ferryd: %s\n", msg);
    if (ho->chan >= 0)
        ferry_handover_send_msg(ho->chan, 'e', msg);
}

/* io_backend = auto wanted io_uring and the kernel refused it: one warning
 * (epoll runs instead). */
static void log_io_backend_fallback(struct ferry_daemon *d)
{
    int why = ac_runtime_backend_fallback(d->rt);
    if (why < 0)
        ferry_logger_log(&d->log, d->nworkers, FERRY_LOG_SINK_MAIN, FERRY_LOG_WARN,
                         "io_backend_fallback", "wanted=io_uring using=%s error=\"%s\"",
                         ac_backend_name(ac_runtime_backend(d->rt)), strerror(-why));
}

/* The runtime, the logger and the first generation with its sockets bound
 * (or taken over from the old process), services started and privileges
 * dropped. Takes cfg. Returns 0, or the exit status with every step it took
 * undone except the daemon itself (run() frees that). */
static int bring_up(struct run *r, struct ferry_config *cfg)
{
    struct ferry_daemon *d = &r->d;
    ferry_lifecycle_block_signals(&r->sigs);
    r->have_daemon = true;
    int rc = daemon_init(d, r->path, cfg->global.workers, cfg->global.io_backend);
    if (rc != 0) {
        runtime_error(&r->ho, cfg, rc);
        goto free_cfg;
    }
    d->argv = r->argv;
    d->exe_path = ferry_upgrade_exe_path(r->argv[0]);
    if (r->ho.chan >= 0) {
        d->handover = &r->ho;
        if (r->ho.has_ticket_key) /* tickets issued by the old process resume here */
            memcpy(d->ticket_key, r->ho.ticket_key, sizeof(d->ticket_key));
    }
    char lerr[FERRY_PATH_MAX + 256];
    if (ferry_logger_start(&d->log, &cfg->global, r->path, d->nworkers, lerr, sizeof(lerr)) != 0) {
        fprintf(stderr, "%s\n", lerr);
        goto free_cfg;
    }
    log_io_backend_fallback(d);
    /* ACME certificates: the registry outlives generations (tls_acme). */
    if (!(d->acme = ferry_acme_new(d->rt, d->workers[0].w))) {
        fprintf(stderr, "ferryd: cannot start: out of memory\n");
        goto free_cfg;
    }
    if (ferry_sd_listen_fds(&d->sd_fds, &d->nsd_fds) < 0) {
        fprintf(stderr, "ferryd: cannot use the inherited sockets: %s\n", strerror(errno));
        goto free_cfg;
    }
    struct ferry_gen *g = build_first_gen(d, cfg, &r->errs);
    if (!g) {
        report_errors(&r->ho, &r->errs, r->path);
        return 1;
    }
    d->reuseport = g->cfg->global.reuseport; /* restart-only, like workers */
    d->running_global = g->cfg->global;
    d->running_global.state_file = NULL; /* owned by the configuration */
    if (ferry_gen_switch_prepare(d, g, &r->fresh, &r->errs) != 0) {
        report_errors(&r->ho, &r->errs, r->path);
        goto drop_gen;
    }
    if (unclaimed_inherited(d) != 0 || start_services(d, g, &r->ctl, &r->metrics) != 0)
        goto unbind;
    char err[256];
    if (chown_control_socket(g, err, sizeof(err)) != 0 ||
        ferry_drop_privileges(g->cfg->global.user, g->cfg->global.group, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferryd: cannot drop privileges: %s\n", err);
        goto unbind;
    }
    r->g = g;
    return 0;
    /* Each label undoes one step and falls into the ones before it. */
unbind:
    ferry_gen_switch_abort(d, &r->fresh); /* sockets made for g, never served */
drop_gen:
    ferry_gen_unref(g);
    return 2;
free_cfg:
    ferry_config_free(cfg);
    return 2;
}

/* Makes the first generation current: names looked up (start-up waits for
 * their first answers a little, and never fails on them: ferryd(8)), then
 * the runtime state, before the first connection: the old process's when
 * upgrading, else the state file's. */
static void go_live(struct run *r)
{
    struct ferry_daemon *d = &r->d;
    d->dnsw = ferry_dnswatch_start(d, &r->g->cfg->global);
    ferry_acme_use_dns(d->acme, ferry_dnswatch_resolver(d->dnsw));
    ferry_dnswatch_adopt(d->dnsw, NULL, r->g);
    struct ferry_dnswatch_first first;
    ferry_dnswatch_first_init(&first, d->dnsw, 2000);
    ac_block_on(d->workers[0].w, &first.base);
    ac_future_drop(&first.base);
    ferry_gen_switch_to(d, r->g, &r->fresh);
    if (r->ho.chan >= 0)
        ferry_state_apply(d, r->ho.state, "upgrade");
    else
        ferry_state_file_load(d);
    d->handover = NULL;
}

/* Says ready (to systemd: after an upgrade this process becomes the unit's
 * main one, one datagram with both, so systemd never sees READY=1 from a
 * process it does not follow) and logs the start. */
static void announce(struct run *r, pid_t upgraded_from)
{
    struct ferry_daemon *d = &r->d;
    char status_line[128];
    ferry_lifecycle_status(d, status_line, sizeof(status_line));
    if (upgraded_from)
        ferry_sd_notifyf("MAINPID=%ld\nREADY=1\nSTATUS=%s", (long)d->pid, status_line);
    else
        ferry_sd_notifyf("READY=1\nSTATUS=%s", status_line);
    char from[24] = "";
    if (upgraded_from)
        snprintf(from, sizeof(from), "%ld", (long)upgraded_from);
    if (ferry_logger_enabled(&d->log, FERRY_LOG_INFO))
        ferry_logger_log(&d->log, d->nworkers, FERRY_LOG_SINK_MAIN, FERRY_LOG_INFO, "started",
                         "version=%s pid=%d workers=%u io_backend=%s listeners=%zu config=%s "
                         "?upgraded_from=%s",
                         d->version, (int)d->pid, d->nworkers,
                         ac_backend_name(ac_runtime_backend(d->rt)), r->g->cfg->nlisteners,
                         r->path, from);
}

/* Serves until a stop; returns the exit status. */
static int serve(struct run *r)
{
    struct ferry_daemon *d = &r->d;
    pid_t upgraded_from = r->ho.old_pid;
    if (ferry_lifecycle_start(d, &r->sigs) != 0) {
        fprintf(stderr, "ferryd: cannot start: out of resources\n");
        return 2;
    }
    if (become_main(d, &r->ho) != 0)
        return 2;
    int werr = 0;
    struct ferry_tls_watch *watch = ferry_tls_watch_start(d, &werr);
    if (!watch)
        fprintf(stderr, "ferryd: cannot watch TLS files (tls_watch): %s\n", strerror(-werr));
    announce(r, upgraded_from);
    d->serving = true;
    int status = ac_runtime_run(d->rt) == 0 ? 0 : 2;
    ferry_tls_watch_stop(watch); /* before the runtime it hands work to goes */
    if (atomic_load(&d->state_changes))
        ferry_state_file_save(d); /* the loops stopped: the last word (none once handed over) */
    if (ferry_logger_enabled(&d->log, FERRY_LOG_INFO))
        ferry_logger_log(&d->log, d->nworkers, FERRY_LOG_SINK_MAIN, FERRY_LOG_INFO, "stopped",
                         "pid=%d", (int)d->pid);
    return status;
}

static int run(const char *path, char **argv)
{
    struct run r = {.path = path, .argv = argv};
    if (take_handover(&r.ho) != 0)
        return 2;
    int status;
    struct ferry_config *cfg = load_config(&r, &status);
    if (cfg && (status = bring_up(&r, cfg)) == 0) {
        go_live(&r);
        status = serve(&r);
    }
    /* The one unwind, whatever step ended the run. */
    if (r.have_daemon)
        daemon_free(&r.d);
    if (r.ctl)
        ferry_control_free(r.ctl);
    if (r.metrics)
        ferry_metrics_free(r.metrics);
    ferry_config_errors_free(&r.errs);
    ferry_handover_free(&r.ho);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = FERRY_SYSCONFDIR "/ferry/ferry.ini";
    bool test = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': test = true; break;
        case 'V': printf("ferryd %s\n", FERRY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ferryd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return test ? check_only(path) : run(path, argv);
}

/* ferryd: reloading the configuration in-process.
 *
 * The file is read, checked and turned into a generation (TLS files, DNS) on
 * the blocking pool, never on an event loop. If anything is wrong the running
 * configuration stays untouched and every error is reported. Otherwise new
 * addresses are bound (a bind failure also fails the reload as a whole) and
 * the generation is swapped in: connections keep the one they started with.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lifecycle/gen_switch.h"
#include "proxy/listen.h"
#include "lifecycle/confcheck.h"
#include "daemon.h"
#include "servers/dnswatch.h"
#include "gen.h"
#include "lifecycle/reload.h"
#include "log/log.h"
#include "lifecycle/sdnotify.h"
#include "lifecycle/state_file.h"

enum { R_START, R_LOAD, R_DONE };

struct reload_job {
    struct ferry_daemon *d;
    struct ferry_config_errors errs;
    struct ferry_gen *gen;
};

static void *reload_work(void *arg)
{
    struct reload_job *j = arg;
    struct ferry_config *cfg = ferry_config_load_checked(j->d->config_path, &j->errs);
    if (cfg)
        j->gen = ferry_gen_build(j->d, cfg, &j->errs);
    return j;
}

static void reload_job_free(void *result)
{
    struct reload_job *j = result;
    if (j->gen)
        ferry_gen_unref(j->gen);
    ferry_config_errors_free(&j->errs);
    free(j);
}

static void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ferry_sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

/* Counts the attempt for `show info` and the metrics (ferryctl(8) COMMANDS): a failed
 * reload changes nothing and counts only in reloads_failed. */
static void count(struct ferry_daemon *d, bool ok)
{
    int64_t now = (int64_t)time(NULL);
    atomic_store(&d->last_reload, now);
    atomic_store(&d->last_reload_ok, ok);
    if (ok) {
        atomic_store(&d->last_reload_success, now);
        atomic_fetch_add(&d->reloads, 1);
    } else {
        atomic_fetch_add(&d->reloads_failed, 1);
    }
}

static ac_poll_t finish(struct ferry_reload *r, int err)
{
    r->err = err;
    r->state = R_DONE;
    ferry_config_errors_sort(&r->errs, r->d->config_path);
    count(r->d, err == 0);
    if (err) {
        for (size_t i = 0; i < r->errs.n; i++)
            ferry_log(FERRY_LOG_ERROR, "reload_failed", "error=%s", r->errs.msgs[i]);
    } else {
        ferry_log(FERRY_LOG_INFO, "reloaded", "config=%s", r->d->config_path);
    }
    ferry_sd_notify("READY=1");
    atomic_store(&r->d->reloading, false);
    return AC_READY;
}

/* Logs a restart-only key a reload changed, and keeps the warning for the
 * one who asked for the reload (ferryctl reload prints it). */
static void warn_key(struct ferry_reload *r, const char *key)
{
    ferry_log(FERRY_LOG_WARN, "reload_kept_until_restart", "key=%s", key);
    ferry_config_error_add(&r->warns, r->d->config_path, 0,
                           "%s changed: the running value stays until restart", key);
}

/* Settings read once at start: say so when the new file asks for another
 * value than the running one (the one read at start, whatever files were
 * reloaded since). */
static void warn_restart_only(struct ferry_reload *r, const struct ferry_gen *g)
{
    const struct ferry_global *a = &r->d->running_global, *b = &g->cfg->global;
    if (a->workers != b->workers)
        warn_key(r, "workers");
    if (a->reuseport != b->reuseport)
        warn_key(r, "reuseport");
    if (a->io_backend != b->io_backend)
        warn_key(r, "io_backend");
    if (strcmp(a->control_socket, b->control_socket) != 0)
        warn_key(r, "control_socket");
    if (a->control_mode != b->control_mode)
        warn_key(r, "control_mode");
    if (a->has_metrics != b->has_metrics ||
        (a->has_metrics && strcmp(a->metrics.text, b->metrics.text) != 0))
        warn_key(r, "metrics");
    if (strcmp(a->user, b->user) != 0)
        warn_key(r, "user");
    if (strcmp(a->group, b->group) != 0)
        warn_key(r, "group");
    if (a->log_target != b->log_target || strcmp(a->log_path, b->log_path) != 0 ||
        strcmp(a->log_addr.text, b->log_addr.text) != 0)
        warn_key(r, "log");
    if (a->log_format != b->log_format)
        warn_key(r, "log_format");
    if (strcmp(a->access_log_path, b->access_log_path) != 0)
        warn_key(r, "access_log");
}

/* mptcp and tcp_fastopen are set on a listening socket when it is created:
 * an address a reload keeps keeps its socket as it was. */
static void warn_socket_options(struct ferry_reload *r, const struct ferry_gen *g)
{
    const struct ferry_gen *old = r->d->gen;
    for (size_t i = 0; old && i < g->cfg->nlisteners; i++) {
        const struct ferry_listener *b = &g->cfg->listeners[i];
        for (size_t j = 0; j < old->cfg->nlisteners; j++) {
            const struct ferry_listener *a = &old->cfg->listeners[j];
            if (strcmp(a->name, b->name) != 0)
                continue;
            if (a->mptcp != b->mptcp)
                warn_key(r, "mptcp");
            if (a->tcp_fastopen != b->tcp_fastopen)
                warn_key(r, "tcp_fastopen");
        }
    }
}

static void reset_weights(struct ferry_daemon *d)
{
    /* Under the registry's lock: a generation freed on a worker unlinks
     * the stats it held last. */
    pthread_mutex_lock(&d->stats.lock);
    for (struct ferry_server_stats *s = d->stats.servers; s; s = s->next)
        atomic_store(&s->weight, -1);
    pthread_mutex_unlock(&d->stats.lock);
}

static ac_poll_t reload_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_reload *r = (struct ferry_reload *)f;
    (void)cx;
    if (r->state == R_START) {
        if (atomic_exchange(&r->d->reloading, true)) {
            ferry_config_error_add(&r->errs, r->d->config_path, 0, "a reload is already running");
            r->err = -1;
            r->state = R_DONE;
            return AC_READY;
        }
        if (atomic_load(&r->d->upgrading)) { /* the new process reads the file itself */
            atomic_store(&r->d->reloading, false);
            ferry_config_error_add(&r->errs, r->d->config_path, 0, "upgrade in progress");
            r->err = -1;
            r->state = R_DONE;
            return AC_READY;
        }
        notify_reloading();
        struct reload_job *j = calloc(1, sizeof(*j));
        if (!j) {
            ferry_config_error_add(&r->errs, r->d->config_path, 0, "out of memory");
            return finish(r, -1);
        }
        j->d = r->d;
        ac_blocking_init(&r->job, r->d->rt, reload_work, j, reload_job_free);
        r->state = R_LOAD;
    }
    if (r->state != R_LOAD)
        return AC_READY;
    if (ac_future_poll(&r->job.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct reload_job *j = r->job.result;
    ac_future_drop(&r->job.base);
    if (r->job.err || !j) {
        ferry_config_error_add(&r->errs, r->d->config_path, 0, "reload could not run");
        if (j)
            reload_job_free(j);
        return finish(r, -1);
    }
    /* The job's errors become ours. */
    r->errs = j->errs;
    memset(&j->errs, 0, sizeof(j->errs));
    struct ferry_gen *g = j->gen;
    j->gen = NULL;
    reload_job_free(j);
    if (!g)
        return finish(r, -1);
    warn_restart_only(r, g);
    warn_socket_options(r, g);
    struct ferry_new_sockets fresh;
    if (ferry_gen_switch_prepare(r->d, g, &fresh, &r->errs) != 0) {
        ferry_gen_unref(g);
        return finish(r, -1);
    }
    /* With a state_file, runtime changes outlive the reload: what the old
     * generation holds (servers added, addresses set) is carried over to
     * the new one as the state text. Without, they last until now. */
    char *state = g->cfg->global.state_file ? ferry_state_file_render(r->d) : NULL;
    ferry_dnswatch_adopt(r->d->dnsw, r->d->gen, g);
    ferry_gen_switch_to(r->d, g, &fresh);
    if (state)
        ferry_state_apply(r->d, state, "reload");
    else
        reset_weights(r->d); /* set at runtime "until the next reload" (ferryctl(8)) */
    free(state);
    return finish(r, 0);
}

static void reload_drop(struct ac_future *f)
{
    struct ferry_reload *r = (struct ferry_reload *)f;
    if (r->state == R_LOAD) {
        ac_future_drop(&r->job.base);
        atomic_store(&r->d->reloading, false);
    }
    /* errs belong to the caller, who frees them after reading */
}

static const struct ac_future_vtable reload_vt = {reload_poll, reload_drop};

void ferry_reload_init(struct ferry_reload *r, struct ferry_daemon *d)
{
    memset(r, 0, sizeof(*r));
    r->base.vt = &reload_vt;
    r->d = d;
}

/* A fake daemon for the unit tests of the control socket and the renderers.
 *
 * Generations are the production ones (gen.c, servers/admin.c); only what needs
 * real connections or listeners is faked: a worker's list of its
 * connections (worker.c; the gathering through the inboxes, conns_view.c,
 * is the real one) and the reload future of reload.c, so that render.c and
 * control.c are tested alone.
 * Included by exactly one file of each test executable.
 */
#ifndef FAKE_DAEMON_H
#define FAKE_DAEMON_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "asynccore/runtime.h"
#include "daemon.h"
#include "gen.h"
#include "lifecycle/reload.h"
#include "worker.h"

struct fake {
    struct ferry_daemon d; /* first: the fake functions cast back */
    struct ferry_conn_snapshot conns[8];
    size_t nconns;
    bool reload_fails;
    unsigned reload_polls; /* polls of the last reload future */
};

static inline struct fake *fake_of(struct ferry_daemon *d) { return (struct fake *)d; }

void ferry_daemon_conn_totals(struct ferry_daemon *d, uint64_t *active, uint64_t *total)
{
    *active = *total = 0;
    for (struct ferry_listener_stats *s = d->stats.listeners; s; s = s->next) {
        struct ferry_listener_totals t;
        ferry_listener_stats_sum(&d->stats, s, &t);
        *active += t.active;
        *total += t.total;
    }
}

/* A worker's own connections: conns[k] lives on worker k % nworkers. Runs
 * on that worker's thread, as the real one does (conns_view.c asks). */
int ferry_worker_conns(struct ferry_worker *fw, struct ferry_conn_snapshot **out, size_t *n)
{
    struct fake *f = fake_of(fw->d);
    assert_ptr_equal(ac_worker_current(), fw->w);
    *out = malloc((f->nconns + 1) * sizeof(**out));
    if (!*out)
        return -ENOMEM;
    *n = 0;
    for (size_t k = fw->index; k < f->nconns; k += f->d.nworkers)
        (*out)[(*n)++] = f->conns[k];
    return 0;
}

/* The reload future: Pending once (waking itself), then done. */
static inline ac_poll_t fake_reload_poll(struct ac_future *fut, struct ac_context *cx)
{
    struct ferry_reload *r = (struct ferry_reload *)fut;
    struct fake *f = fake_of(r->d);
    f->reload_polls++;
    if (r->state++ == 0) {
        ac_waker_wake_by_ref(cx->waker);
        return AC_PENDING;
    }
    if (f->reload_fails) {
        ferry_config_error_add(&r->errs, "/etc/ferry/ferry.ini", 7, "unknown key 'bogus'");
        ferry_config_error_add(&r->errs, "/etc/ferry/ferry.ini", 9, "bad port");
        r->err = -1;
    } else {
        atomic_fetch_add(&r->d->reloads, 1);
        r->err = 0;
    }
    return AC_READY;
}

static inline void fake_reload_drop(struct ac_future *fut) { (void)fut; }

static const struct ac_future_vtable fake_reload_vt = {fake_reload_poll, fake_reload_drop};

void ferry_reload_init(struct ferry_reload *r, struct ferry_daemon *d)
{
    memset(r, 0, sizeof(*r));
    r->base.vt = &fake_reload_vt;
    r->d = d;
}

static const char fake_ini[] =
    "[global]\n"
    "max_connections = 500\n"
    "[listener web]\n"
    "bind = 127.0.0.1:8080\n"
    "bind = [::1]:8080\n"
    "backend = app\n"
    "[listener sec]\n"
    "bind = 127.0.0.1:8443\n"
    "backend = db\n"
    "[backend app]\n"
    "server = app1 127.0.0.1:9000\n"
    "server = app2 127.0.0.1:9001\n"
    "[backend db]\n"
    "balance = leastconn\n"
    "server = db1 127.0.0.1:5432\n";

/* Builds a generation from ini with the production builder (no DNS). */
static inline struct ferry_gen *fake_gen_build(struct ferry_daemon *d, const char *ini)
{
    struct ferry_config_errors errs = {0};
    struct ferry_config *cfg = ferry_config_load_string("test.ini", ini, &errs);
    assert_non_null(cfg);
    struct ferry_gen *g = ferry_gen_build(d, cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    ferry_config_errors_free(&errs);
    assert_non_null(g);
    return g;
}

/* A daemon with nworkers counter slots, the generation of fake_ini, and
 * (when rt is not NULL) a runtime and its workers' ferry_worker. */
static inline void fake_init(struct fake *f, unsigned nworkers, struct ac_runtime *rt)
{
    memset(f, 0, sizeof(*f));
    struct ferry_daemon *d = &f->d;
    d->config_path = strdup("/etc/ferry/ferry.ini");
    d->config_abs = strdup("/etc/ferry/ferry.ini");
    atomic_init(&d->last_reload_ok, true);
    d->rt = rt;
    d->nworkers = nworkers;
    d->pid = 4242;
    d->start_ms = ac_clock_now_ms() - 5000;
    d->conn_limit_size = 500;
    pthread_mutex_init(&d->gen_ptr_lock, NULL);
    assert_int_equal(ferry_registry_init(&d->stats, nworkers), 0);
    d->gen = fake_gen_build(d, fake_ini);
    if (!rt)
        return;
    d->workers = calloc(nworkers, sizeof(*d->workers));
    assert_non_null(d->workers);
    for (unsigned i = 0; i < nworkers; i++) {
        d->workers[i].d = d;
        d->workers[i].index = i;
        d->workers[i].w = ac_runtime_worker(rt, i);
    }
}

static inline void fake_destroy(struct fake *f)
{
    ferry_gen_unref(f->d.gen);
    ferry_registry_destroy(&f->d.stats);
    free(f->d.workers);
    pthread_mutex_destroy(&f->d.gen_ptr_lock);
    free(f->d.config_path);
    free(f->d.config_abs);
}

/* Counters of the fixture: listener web has 2 active / 120 total split over
 * workers 0 and 1, server app1 1 active / 60 total, and so on. */
static inline void fake_fill_counters(struct fake *f)
{
    struct ferry_gen *g = f->d.gen;
    struct ferry_listener_wstats *w0 = &g->listeners[0].stats->w[0];
    struct ferry_listener_wstats *w1 = &g->listeners[0].stats->w[f->d.nworkers - 1];
    ferry_ctr_add(&w0->active, 1);
    ferry_ctr_add(&w1->active, 1);
    ferry_ctr_add(&w0->total, 100);
    ferry_ctr_add(&w1->total, 20);
    ferry_ctr_add(&w0->bytes_in, 123);
    ferry_ctr_add(&w0->bytes_out, 456);
    ferry_ctr_add(&w1->rejected, 3);
    ferry_ctr_add(&w1->rejected_by[FERRY_REJECT_DENY], 1);
    ferry_ctr_add(&w1->rejected_by[FERRY_REJECT_CLIENT_LIMIT], 2);
    ferry_ctr_add(&w1->handshake_errors, 2);
    ferry_ctr_add(&g->backends[0].stats->w[0].active, 2);
    ferry_ctr_add(&g->backends[0].stats->w[0].total, 120);
    struct ferry_server_wstats *s = &g->backends[0].servers[0].stats->w[0];
    atomic_fetch_add(&g->backends[0].servers[0].stats->active, 1);
    ferry_ctr_add(&s->total, 60);
    ferry_ctr_add(&s->connect_errors, 4);
    ferry_ctr_add(&s->bytes_in, 456);
    ferry_ctr_add(&s->bytes_out, 123);
    atomic_store(&g->backends[1].servers[0].stats->state, FERRY_SERVER_DOWN);
    atomic_store(&g->backends[1].servers[0].stats->check, FERRY_CHECK_STATUS | 503 << 8);
    atomic_store(&g->backends[1].servers[0].stats->check_failures, 7);
    f->conns[0] = (struct ferry_conn_snapshot){.id = 17, .age_s = 3, .bytes_in = 512,
                                               .bytes_out = 20480};
    snprintf(f->conns[0].listener, sizeof(f->conns[0].listener), "web");
    snprintf(f->conns[0].client, sizeof(f->conns[0].client), "127.0.0.1:51234");
    snprintf(f->conns[0].server, sizeof(f->conns[0].server), "app/app1");
    f->conns[1] = (struct ferry_conn_snapshot){.id = 18, .age_s = 0};
    snprintf(f->conns[1].listener, sizeof(f->conns[1].listener), "sec");
    snprintf(f->conns[1].client, sizeof(f->conns[1].client), "[::1]:40000");
    snprintf(f->conns[1].server, sizeof(f->conns[1].server), "-");
    f->nconns = 2;
}

/* Runs python3 to check that `json` parses and that the expression `expr`
 * (over the parsed value d) holds. Returns the exit status (0: fine). */
static inline int json_check(const char *json, const char *expr)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys\nd=json.load(sys.stdin)\nassert %s, d\n'", expr);
    FILE *p = popen(cmd, "w");
    assert_non_null(p);
    fputs(json, p);
    int st = pclose(p);
    return st;
}

#endif

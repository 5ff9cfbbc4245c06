/* ferryd: re-read TLS files when they change (see tls_watch.h). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asynccore/blocking.h"
#include "asynccore/runtime.h"
#include "daemon.h"
#include "gen.h"
#include "log/log.h"
#include "lifecycle/tls_watch.h"

enum {
    DEBOUNCE_MS = 500,  /* quiet time after the last event */
    MAX_WAIT_MS = 2000, /* reload at the latest this long after the first event */
    TICK_MS = 1000,     /* how often the thread looks for a finished reload */
    MAX_HOPS = 40,      /* symbolic links followed per path, as the kernel does */
    MAX_WATCHES = 4096, /* (directory, name) pairs watched in all */
};

#define WATCH_MASK                                                                               \
    (IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM |           \
     IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* One name watched in one directory, for one configured file. */
struct entry {
    int wd;
    char *name;
    char *file; /* the configured path it leads to (for the log) */
};

struct table {
    struct entry *e;
    size_t n, cap;
};

struct ferry_tls_watch {
    struct ferry_daemon *d;
    pthread_t thread;
    int ifd;                 /* inotify */
    int stop_fd;             /* eventfd: the daemon asks the thread to end */
    struct table table;
    uint64_t built_for;      /* reloads + reloads_failed when the table was built */
    bool built;
    bool dirty;              /* a relevant event is waiting for its reload */
    uint64_t first_ms, last_ms;
    char changed[PATH_MAX];  /* the first file seen changing */
};

/* ---- the table of watches ---- */

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].name);
        free(t->e[i].file);
    }
    free(t->e);
    memset(t, 0, sizeof(*t));
}

/* The configured file of some entry of directory wd, or NULL. */
static const char *table_file_of(const struct table *t, int wd)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].wd == wd)
            return t->e[i].file;
    return NULL;
}

static bool table_has_wd(const struct table *t, int wd)
{
    return table_file_of(t, wd) != NULL;
}

/* The configured file an event (wd, name) concerns, or NULL. */
static const char *table_match(const struct table *t, int wd, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].wd == wd && strcmp(t->e[i].name, name) == 0)
            return t->e[i].file;
    return NULL;
}

static void table_add(struct table *t, int wd, const char *name, const char *file)
{
    if (table_match(t, wd, name) != NULL || t->n >= MAX_WATCHES)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        struct entry *e = realloc(t->e, cap * sizeof(*e));
        if (e == NULL)
            return;
        t->e = e;
        t->cap = cap;
    }
    struct entry *e = &t->e[t->n];
    e->wd = wd;
    e->name = strdup(name);
    e->file = strdup(file);
    if (e->name == NULL || e->file == NULL) {
        free(e->name);
        free(e->file);
        return;
    }
    t->n++;
}

/* ---- walking a path ---- */

static void watch_name(struct ferry_tls_watch *w, struct table *t, const char *dir,
                       const char *name, const char *file)
{
    int wd = inotify_add_watch(w->ifd, dir, WATCH_MASK);
    if (wd >= 0)
        table_add(t, wd, name, file);
}

/* Drops the last component of an absolute directory path ("/a/b" -> "/a"). */
static void parent(char *dir)
{
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
}

/* Watches every directory along path for the next component's name,
 * following symbolic links as the kernel would. A component that does not
 * exist ends the walk (its directory is watched, so it is seen appearing). */
static void watch_path(struct ferry_tls_watch *w, struct table *t, const char *path)
{
    char dir[PATH_MAX] = "/", rest[PATH_MAX], next[PATH_MAX], target[PATH_MAX];
    if (path[0] != '/' || strlen(path) >= sizeof(rest))
        return;
    snprintf(rest, sizeof(rest), "%s", path);
    int hops = 0;
    char *p = rest;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (len > NAME_MAX)
            return;
        memcpy(comp, p, len);
        comp[len] = '\0';
        p += len;
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            parent(dir);
            continue;
        }
        watch_name(w, t, dir, comp, path);
        int n = snprintf(next, sizeof(next), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", comp);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof(next) || lstat(next, &st) != 0)
            return;
        if (!S_ISLNK(st.st_mode)) {
            snprintf(dir, sizeof(dir), "%s", next);
            continue;
        }
        ssize_t tl = readlink(next, target, sizeof(target) - 1);
        if (tl <= 0 || ++hops > MAX_HOPS)
            return;
        target[tl] = '\0';
        /* The link's target, then what was left of the path. */
        n = snprintf(next, sizeof(next), "%s/%s", target, p);
        if (n < 0 || (size_t)n >= sizeof(next))
            return;
        snprintf(rest, sizeof(rest), "%s", next);
        p = rest;
        if (target[0] == '/')
            snprintf(dir, sizeof(dir), "/");
    }
}

/* Every TLS file of the running configuration (none with tls_watch = off). */
static void watch_config(struct ferry_tls_watch *w, struct table *t, const struct ferry_config *c)
{
    if (c == NULL || !c->global.tls_watch)
        return;
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct ferry_listener *l = &c->listeners[i];
        if (!l->tls)
            continue;
        for (size_t k = 0; k < l->ntls_certs; k++) {
            watch_path(w, t, l->tls_certs[k]);
            if (l->tls_cert_keys && l->tls_cert_keys[k])
                watch_path(w, t, l->tls_cert_keys[k]);
        }
        if (l->tls_client_ca)
            watch_path(w, t, l->tls_client_ca);
        if (l->tls_ticket_keys)
            watch_path(w, t, l->tls_ticket_keys);
    }
    for (size_t i = 0; i < c->nbackends; i++) {
        const struct ferry_backend *b = &c->backends[i];
        if (b->tls_ca)
            watch_path(w, t, b->tls_ca);
        if (b->tls_cert)
            watch_path(w, t, b->tls_cert);
        if (b->tls_cert_key)
            watch_path(w, t, b->tls_cert_key);
    }
}

/* Watches what the running configuration names; the new watches are added
 * before the old ones are removed, so no change falls in between. */
static void rebuild(struct ferry_tls_watch *w)
{
    struct table t = {0};
    struct ferry_gen *g = ferry_daemon_gen(w->d);
    watch_config(w, &t, g ? g->cfg : NULL);
    if (g)
        ferry_gen_unref(g);
    for (size_t i = 0; i < w->table.n; i++)
        if (!table_has_wd(&t, w->table.e[i].wd))
            inotify_rm_watch(w->ifd, w->table.e[i].wd); /* repeated wds: EINVAL, harmless */
    table_free(&w->table);
    w->table = t;
}

/* ---- handing a trigger to worker 0 ---- */

struct trigger_task {
    struct ac_future base;
    struct ferry_daemon *d;
    char file[PATH_MAX];
    struct ferry_gen *g;          /* the generation renewed (a reference) */
    struct ac_blocking job;       /* builds the new contexts (files: blocking pool) */
    bool job_live;
    struct ferry_config_errors errs;
};

static void *build_work(void *arg)
{
    struct trigger_task *t = arg;
    return ferry_gen_tls_build(t->g, &t->errs);
}

static void build_cleanup(void *result) { ferry_gen_tls_free(result); }

/* On worker 0: re-read the TLS files of the running generation into new
 * contexts and put them in place; nothing else changes (no reload). */
static ac_poll_t trigger_poll(struct ac_future *f, struct ac_context *cx)
{
    struct trigger_task *t = (struct trigger_task *)f;
    if (!t->job_live) {
        ferry_log(FERRY_LOG_INFO, "tls_file_changed", "file=%s", t->file);
        t->g = ferry_daemon_gen(t->d);
        if (!t->g)
            return AC_READY;
        ac_blocking_init(&t->job, t->d->rt, build_work, t, build_cleanup);
        t->job_live = true;
    }
    if (ac_future_poll(&t->job.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_gen_tls *built = t->job.err ? NULL : t->job.result;
    t->job.result = NULL;
    ac_future_drop(&t->job.base);
    t->job_live = false;
    ferry_config_errors_sort(&t->errs, t->g->cfg->path);
    for (size_t i = 0; i < t->errs.n; i++)
        ferry_log(FERRY_LOG_ERROR, "tls_reload_failed", "file=%s error=%s", t->file,
                  t->errs.msgs[i]);
    size_t n = built ? ferry_gen_tls_swap(t->g, built) : 0;
    if (!built)
        ferry_log(FERRY_LOG_ERROR, "tls_reload_failed", "file=%s error=%s", t->file,
                  "out of memory");
    if (n > 0) {
        atomic_fetch_add(&t->d->tls_reloads, 1);
        ferry_log(FERRY_LOG_INFO, "tls_reloaded", "file=%s contexts=%zu ?kept_old=%s", t->file,
                  n, t->errs.n ? "yes" : "");
    }
    atomic_fetch_add(&t->d->tls_reload_runs, 1); /* the watches follow new links */
    return AC_READY;
}

static void trigger_drop(struct ac_future *f)
{
    struct trigger_task *t = (struct trigger_task *)f;
    if (t->job_live)
        ac_future_drop(&t->job.base);
    ferry_config_errors_free(&t->errs);
    if (t->g)
        ferry_gen_unref(t->g);
}

static const struct ac_future_vtable trigger_vt = {trigger_poll, trigger_drop};

static void task_free(struct ac_future *f) { free(f); }

static void trigger(struct ferry_tls_watch *w)
{
    struct trigger_task *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return; /* the next event tries again */
    t->base.vt = &trigger_vt;
    t->d = w->d;
    snprintf(t->file, sizeof(t->file), "%s", w->changed);
    ac_spawn(ac_runtime_worker(w->d->rt, 0), &t->base, task_free); /* frees t on failure */
    w->dirty = false;
}

/* ---- the thread ---- */

/* Changes after which the watches are built again: reloads (another
 * configuration) and TLS re-reads (links may point elsewhere now). */
static uint64_t reload_count(struct ferry_daemon *d)
{
    return atomic_load(&d->reloads) + atomic_load(&d->reloads_failed) +
           atomic_load(&d->tls_reload_runs);
}

static void note(struct ferry_tls_watch *w, const char *file, uint64_t now)
{
    if (!w->dirty) {
        w->dirty = true;
        w->first_ms = now;
        snprintf(w->changed, sizeof(w->changed), "%s", file);
    }
    w->last_ms = now;
}

/* Reads the queued events; notes the ones that concern a watched file. */
static void read_events(struct ferry_tls_watch *w)
{
    _Alignas(struct inotify_event) char buf[8192];
    for (int rounds = 0; rounds < 64; rounds++) {
        ssize_t n = read(w->ifd, buf, sizeof(buf));
        if (n <= 0)
            return; /* EAGAIN: all read */
        uint64_t now = ac_clock_now_ms();
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            const char *file = NULL;
            if (ev->mask & IN_Q_OVERFLOW)
                file = "(inotify queue overflow)";
            else if (ev->mask & IN_IGNORED)
                continue; /* a watch went away: the rebuild after the reload re-adds */
            else if (ev->len == 0)
                file = table_file_of(&w->table, ev->wd); /* the directory itself went */
            else if (ev->len > 0)
                file = table_match(&w->table, ev->wd, ev->name);
            if (file != NULL)
                note(w, file, now);
        }
    }
}

static int wait_ms(const struct ferry_tls_watch *w, uint64_t now)
{
    if (!w->dirty)
        return TICK_MS;
    uint64_t due = w->last_ms + DEBOUNCE_MS;
    if (due > w->first_ms + MAX_WAIT_MS)
        due = w->first_ms + MAX_WAIT_MS;
    return due > now ? (int)(due - now) : 0;
}

static void *watch_thread(void *arg)
{
    struct ferry_tls_watch *w = arg;
    for (;;) {
        uint64_t count = reload_count(w->d);
        if (!w->built || count != w->built_for) {
            w->built_for = count;
            w->built = true;
            rebuild(w);
        }
        struct pollfd pfd[2] = {{.fd = w->ifd, .events = POLLIN}, {.fd = w->stop_fd, .events = POLLIN}};
        int rc = poll(pfd, 2, wait_ms(w, ac_clock_now_ms()));
        if (rc < 0 && errno != EINTR)
            break;
        if (pfd[1].revents)
            break;
        if (pfd[0].revents & POLLIN)
            read_events(w);
        if (w->dirty && wait_ms(w, ac_clock_now_ms()) == 0)
            trigger(w);
    }
    return NULL;
}

struct ferry_tls_watch *ferry_tls_watch_start(struct ferry_daemon *d, int *err)
{
    struct ferry_tls_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    w->d = d;
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->ifd < 0 || w->stop_fd < 0) {
        *err = -errno;
        goto fail;
    }
    /* The first watches are in place before ferryd serves. */
    w->built_for = reload_count(d);
    w->built = true;
    rebuild(w);
    /* The thread must not take the signals the event loops read. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch_thread, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        *err = -rc;
        goto fail;
    }
    return w;
fail:
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    free(w);
    return NULL;
}

void ferry_tls_watch_stop(struct ferry_tls_watch *w)
{
    if (w == NULL)
        return;
    uint64_t one = 1;
    while (write(w->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    pthread_join(w->thread, NULL);
    close(w->ifd);
    close(w->stop_fd);
    table_free(&w->table);
    free(w);
}

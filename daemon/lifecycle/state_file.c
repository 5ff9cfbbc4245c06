/* ferryd: the state file (see state_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/blocking.h"
#include "log/log.h"
#include "lifecycle/state_file.h"
#include "worker.h"

#define LINE_MAX_LEN 512

/* ---- reading ---- */

struct entry {
    char backend[FERRY_NAME_MAX], server[FERRY_NAME_MAX];
    enum ferry_admin_state state;
    int weight; /* -1: configured */
};

static const char *const state_names[] = {"ready", "drain", "maint"};

/* One "server B/S STATE WEIGHT" line into e; NULL, or why it is wrong. */
static const char *parse_line(char *line, struct entry *e)
{
    char *save = NULL, *w[5];
    int n = 0;
    for (char *tok = strtok_r(line, " \t", &save); tok && n < 5; tok = strtok_r(NULL, " \t", &save))
        w[n++] = tok;
    if (n != 4 || strcmp(w[0], "server") != 0)
        return "expected: server BACKEND/SERVER STATE WEIGHT";
    char *slash = strchr(w[1], '/');
    if (!slash)
        return "expected BACKEND/SERVER";
    *slash = '\0';
    if (!ferry_name_valid(w[1]) || !ferry_name_valid(slash + 1) ||
        strlen(w[1]) >= FERRY_NAME_MAX || strlen(slash + 1) >= FERRY_NAME_MAX)
        return "invalid BACKEND/SERVER";
    snprintf(e->backend, sizeof(e->backend), "%s", w[1]);
    snprintf(e->server, sizeof(e->server), "%s", slash + 1);
    size_t k = 0;
    while (k < 3 && strcmp(w[2], state_names[k]) != 0)
        k++;
    if (k == 3)
        return "state is not ready, drain or maint";
    e->state = (enum ferry_admin_state)k;
    unsigned long wt;
    if (strcmp(w[3], "-") == 0)
        e->weight = -1;
    else if (ferry_parse_uint(w[3], 256, &wt) == 0)
        e->weight = (int)wt;
    else
        return "weight is not - or a number from 0 to 256";
    return NULL;
}

/* Reads every entry; -1 with *why and *line set when the file is bad. */
static int read_entries(FILE *f, struct entry **out, size_t *n, const char **why, int *lineno)
{
    char buf[LINE_MAX_LEN];
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    *lineno = 0;
    while (fgets(buf, sizeof(buf), f)) {
        ++*lineno;
        size_t len = strlen(buf);
        if (len == sizeof(buf) - 1 && buf[len - 1] != '\n') {
            *why = "line too long";
            return -1;
        }
        buf[strcspn(buf, "\r\n")] = '\0';
        const char *p = buf + strspn(buf, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        if (memchr(buf, '\0', len) != buf + strlen(buf)) {
            *why = "NUL byte";
            return -1;
        }
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            struct entry *v = realloc(*out, nc * sizeof(*v));
            if (!v) {
                *why = "out of memory";
                return -1;
            }
            *out = v;
            cap = nc;
        }
        if ((*why = parse_line(buf, &(*out)[*n])) != NULL)
            return -1;
        ++*n;
    }
    if (ferror(f)) {
        *why = strerror(errno ? errno : EIO);
        return -1;
    }
    return 0;
}

static struct ferry_server_stats *server_in(const struct ferry_gen *g, const struct entry *e)
{
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        const struct ferry_backend_rt *b = &g->backends[i];
        if (strcmp(b->cfg->name, e->backend) != 0)
            continue;
        for (size_t j = 0; j < b->nservers; j++)
            if (strcmp(b->servers[j].cfg->name, e->server) == 0)
                return b->servers[j].stats;
    }
    return NULL;
}

int ferry_state_file_load(struct ferry_daemon *d, const struct ferry_gen *g)
{
    (void)d;
    const char *path = g->cfg->global.state_file;
    if (!path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        ferry_log(FERRY_LOG_WARN, "state_file_ignored", "file=%s error=%s", path,
                  strerror(errno));
        return -1;
    }
    struct entry *v;
    size_t n;
    const char *why = NULL;
    int line;
    int rc = read_entries(f, &v, &n, &why, &line);
    fclose(f);
    if (rc != 0) {
        ferry_log(FERRY_LOG_WARN, "state_file_ignored", "file=%s line=%d error=%s", path,
                  line, why);
        free(v);
        return -1;
    }
    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        struct ferry_server_stats *st = server_in(g, &v[i]);
        if (!st)
            continue; /* no longer configured */
        atomic_store(&st->disabled, v[i].state == FERRY_ADMIN_DRAIN);
        atomic_store(&st->maint, v[i].state == FERRY_ADMIN_MAINT);
        atomic_store(&st->weight, v[i].weight);
        applied++;
    }
    free(v);
    if (applied)
        ferry_log(FERRY_LOG_INFO, "state_file_applied", "file=%s servers=%d", path, applied);
    return applied;
}

/* ---- writing ---- */

/* The file's text for the current generation (malloc'd), or NULL. */
static char *render(const struct ferry_gen *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return NULL;
    fputs("# ferry runtime server state, written by ferryd (state_file); "
          "server BACKEND/SERVER ready|drain|maint WEIGHT|-\n", m);
    for (size_t i = 0; i < g->cfg->nbackends; i++) {
        const struct ferry_backend_rt *b = &g->backends[i];
        for (size_t j = 0; j < b->nservers; j++) {
            const struct ferry_server_stats *st = b->servers[j].stats;
            bool maint = atomic_load(&st->maint), drain = atomic_load(&st->disabled);
            int w = atomic_load(&st->weight);
            if (!maint && !drain && w < 0)
                continue;
            fprintf(m, "server %s/%s %s ", b->cfg->name, b->servers[j].cfg->name,
                    state_names[maint ? FERRY_ADMIN_MAINT : drain ? FERRY_ADMIN_DRAIN
                                                              : FERRY_ADMIN_READY]);
            if (w < 0)
                fputs("-\n", m);
            else
                fprintf(m, "%d\n", w);
        }
    }
    if (fclose(m) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Writes text to path through path.tmp + fsync + rename. 0 or -errno. */
static int write_atomically(const char *path, const char *text)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text), done = 0;
    int rc = 0;
    while (done < len && rc == 0) {
        ssize_t n = write(fd, text + done, len - done);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno != EINTR)
            rc = -errno;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int ferry_state_file_save(struct ferry_daemon *d)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    if (!g)
        return 0;
    int rc = 0;
    const char *path = g->cfg->global.state_file;
    if (path) {
        /* One writer at a time, each writing the state as it is when it runs,
         * so the last write holds the last change. */
        pthread_mutex_lock(&d->state_file_lock);
        char *text = render(g);
        rc = text ? write_atomically(path, text) : -ENOMEM;
        pthread_mutex_unlock(&d->state_file_lock);
        free(text);
        if (rc != 0)
            ferry_log(FERRY_LOG_ERROR, "state_file_write_failed", "file=%s error=%s", path,
                      strerror(-rc));
    }
    ferry_gen_unref(g);
    return rc;
}

/* A task on worker 0 that runs one save on the blocking pool. */
struct save_task {
    struct ac_future base;
    struct ac_blocking job;
};

static void *save_work(void *arg)
{
    ferry_state_file_save(arg);
    return NULL;
}

static ac_poll_t save_poll(struct ac_future *f, struct ac_context *cx)
{
    return ac_future_poll(&((struct save_task *)f)->job.base, cx);
}

static void save_drop(struct ac_future *f) { ac_future_drop(&((struct save_task *)f)->job.base); }

static const struct ac_future_vtable save_vt = {save_poll, save_drop};

static void save_free(struct ac_future *f) { free(f); }

void ferry_state_file_changed(struct ferry_daemon *d)
{
    atomic_fetch_add(&d->state_changes, 1);
    struct ferry_gen *g = ferry_daemon_gen(d);
    bool wanted = g && g->cfg->global.state_file;
    if (g)
        ferry_gen_unref(g);
    if (!wanted)
        return;
    struct save_task *t = calloc(1, sizeof(*t));
    if (!t) {
        ferry_log(FERRY_LOG_ERROR, "state_file_write_failed", "error=%s", strerror(ENOMEM));
        return;
    }
    t->base.vt = &save_vt;
    ac_blocking_init(&t->job, d->rt, save_work, d, NULL);
    ac_spawn(d->workers[0].w, &t->base, save_free);
}

/* ferryd: runtime state that lasts (see state_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "lifecycle/state_file.h"
#include "log/log.h"
#include "worker.h"

#define LINE_MAX_LEN 1024
#define ADDR_MAX 256

/* An address set at runtime (`set server ... addr`), kept by name. */
struct ferry_addr_note {
    struct ferry_addr_note *next;
    char backend[FERRY_NAME_MAX], server[FERRY_NAME_MAX];
    char addr[ADDR_MAX], cfg_addr[ADDR_MAX];
};

/* ---- reading ---- */

enum entry_kind { E_SERVER, E_ADDED, E_LISTENER };

struct entry {
    enum entry_kind kind;
    char backend[FERRY_NAME_MAX], name[FERRY_NAME_MAX]; /* E_LISTENER: name only */
    enum ferry_admin_state state;                       /* E_SERVER */
    int weight;                                         /* E_SERVER: -1 configured */
    char addr[ADDR_MAX], cfg_addr[ADDR_MAX];            /* E_SERVER addr= (or ""); E_ADDED */
    unsigned added_weight, max_connections;             /* E_ADDED */
    bool backup;
};

static const char *const state_names[] = {"ready", "drain", "maint"};

/* "BACKEND/SERVER" into e. A server name may be a discovered one's
 * ADDRESS:PORT, which is never kept, so names are names here. */
static const char *parse_target(char *w, struct entry *e)
{
    char *slash = strchr(w, '/');
    if (!slash)
        return "expected BACKEND/SERVER";
    *slash = '\0';
    if (!ferry_name_valid(w) || !ferry_name_valid(slash + 1) || strlen(w) >= FERRY_NAME_MAX ||
        strlen(slash + 1) >= FERRY_NAME_MAX)
        return "invalid BACKEND/SERVER";
    snprintf(e->backend, sizeof(e->backend), "%s", w);
    snprintf(e->name, sizeof(e->name), "%s", slash + 1);
    return NULL;
}

/* "key=VALUE" options of an added server and of a server's address. */
static const char *parse_option(const char *w, struct entry *e)
{
    unsigned long v;
    if (e->kind == E_ADDED && strcmp(w, "backup") == 0)
        e->backup = true;
    else if (e->kind == E_ADDED && strncmp(w, "weight=", 7) == 0)
        return ferry_parse_uint(w + 7, 256, &v) == 0 ? (e->added_weight = (unsigned)v, NULL)
                                                     : "weight= is not 0 to 256";
    else if (e->kind == E_ADDED && strncmp(w, "max_connections=", 16) == 0)
        return ferry_parse_uint(w + 16, 2147483647ul, &v) == 0
                   ? (e->max_connections = (unsigned)v, NULL)
                   : "max_connections= is not a number";
    else if (e->kind == E_SERVER && strncmp(w, "addr=", 5) == 0 && w[5] &&
             strlen(w + 5) < ADDR_MAX)
        snprintf(e->addr, sizeof(e->addr), "%s", w + 5);
    else if (e->kind == E_SERVER && strncmp(w, "cfg=", 4) == 0 && w[4] &&
             strlen(w + 4) < ADDR_MAX)
        snprintf(e->cfg_addr, sizeof(e->cfg_addr), "%s", w + 4);
    else
        return "unknown option";
    return NULL;
}

static const char *parse_server(char **w, int n, struct entry *e)
{
    if (n < 4)
        return "expected: server BACKEND/SERVER STATE WEIGHT [addr=ADDRESS cfg=ADDRESS]";
    const char *why = parse_target(w[1], e);
    if (why)
        return why;
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
    for (int i = 4; i < n; i++)
        if ((why = parse_option(w[i], e)) != NULL)
            return why;
    if (!e->addr[0] != !e->cfg_addr[0])
        return "addr= and cfg= go together";
    return NULL;
}

static const char *parse_added(char **w, int n, struct entry *e)
{
    if (n < 3)
        return "expected: added BACKEND/SERVER ADDRESS [weight=N] [backup] [max_connections=N]";
    const char *why = parse_target(w[1], e);
    if (why)
        return why;
    if (strlen(w[2]) >= ADDR_MAX)
        return "address too long";
    snprintf(e->addr, sizeof(e->addr), "%s", w[2]);
    e->added_weight = 1;
    for (int i = 3; i < n; i++)
        if ((why = parse_option(w[i], e)) != NULL)
            return why;
    return NULL;
}

/* One line into e; NULL, or why it is wrong. */
static const char *parse_line(char *line, struct entry *e)
{
    char *save = NULL, *w[8];
    int n = 0;
    for (char *tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (n == 8)
            return "too many words";
        w[n++] = tok;
    }
    if (n == 0) /* the caller skips blank lines; said for the compiler too */
        return "empty line";
    memset(e, 0, sizeof(*e));
    if (strcmp(w[0], "server") == 0) {
        e->kind = E_SERVER;
        return parse_server(w, n, e);
    }
    if (strcmp(w[0], "added") == 0) {
        e->kind = E_ADDED;
        return parse_added(w, n, e);
    }
    if (strcmp(w[0], "listener") == 0) {
        e->kind = E_LISTENER;
        if (n != 3 || strcmp(w[2], "disabled") != 0 || !ferry_name_valid(w[1]) ||
            strlen(w[1]) >= FERRY_NAME_MAX)
            return "expected: listener NAME disabled";
        snprintf(e->name, sizeof(e->name), "%s", w[1]);
        return NULL;
    }
    return "unknown entry (server, added or listener)";
}

static int push(struct entry **v, size_t *n, size_t *cap)
{
    if (*n < *cap)
        return 0;
    size_t nc = *cap ? 2 * *cap : 16;
    struct entry *nv = realloc(*v, nc * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

/* Parses the whole text; -1 with *why and *lineno set when it is bad. The
 * last line needs no final newline. */
static int parse_text(const char *text, struct entry **out, size_t *n, const char **why,
                      int *lineno)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    *lineno = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        ++*lineno;
        if (len >= LINE_MAX_LEN) {
            *why = "line too long";
            return -1;
        }
        char line[LINE_MAX_LEN];
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (nl ? 1 : 0);
        if (len && line[len - 1] == '\r')
            line[len - 1] = '\0';
        const char *q = line + strspn(line, " \t");
        if (*q == '\0' || *q == '#')
            continue;
        if (push(out, n, &cap) != 0) {
            *why = "out of memory";
            return -1;
        }
        if ((*why = parse_line(line, &(*out)[*n])) != NULL)
            return -1;
        ++*n;
    }
    return 0;
}

/* ---- applying ---- */

static const struct ferry_backend_rt *backend_in(const struct ferry_gen *g, const char *name)
{
    for (size_t i = 0; i < g->cfg->nbackends; i++)
        if (strcmp(g->cfg->backends[i].name, name) == 0)
            return &g->backends[i];
    return NULL;
}

static struct ferry_server_rt *server_in(const struct ferry_gen *g, const char *backend,
                                         const char *name)
{
    const struct ferry_backend_rt *b = backend_in(g, backend);
    size_t n = b ? atomic_load(&b->nservers) : 0;
    for (size_t j = 0; j < n; j++)
        if (ferry_server_listed(&b->servers[j]) && strcmp(b->servers[j].cfg->name, name) == 0)
            return &b->servers[j];
    return NULL;
}

/* A server added at runtime, unless the configuration has one of that name. */
static bool apply_added(struct ferry_daemon *d, struct ferry_gen *g, const struct entry *e)
{
    if (!backend_in(g, e->backend) || server_in(g, e->backend, e->name))
        return false; /* dropped, or the configuration's own now */
    struct ferry_addr a;
    char err[256];
    if (ferry_parse_addr(e->addr, true, &a) != 0 || a.kind != FERRY_ADDR_INET) {
        ferry_log(FERRY_LOG_WARN, "state_entry_skipped", "server=%s/%s error=%s", e->backend,
                  e->name, "bad address");
        return false;
    }
    if (ferry_admin_add_server(d, e->backend, e->name, &a, e->added_weight, e->backup,
                                e->max_connections, err, sizeof(err)) != 0) {
        ferry_log(FERRY_LOG_WARN, "state_entry_skipped", "server=%s/%s error=%s", e->backend,
                  e->name, err);
        return false;
    }
    ferry_state_forget_addr(d, e->backend, e->name);
    return true;
}

static bool apply_server(struct ferry_daemon *d, struct ferry_gen *g, const struct entry *e)
{
    struct ferry_server_rt *s = server_in(g, e->backend, e->name);
    if (!s)
        return false; /* no longer configured */
    struct ferry_server_stats *st = s->stats;
    atomic_store(&st->disabled, e->state == FERRY_ADMIN_DRAIN);
    atomic_store(&st->maint, e->state == FERRY_ADMIN_MAINT);
    atomic_store(&st->weight, e->weight);
    /* An address set at runtime is kept while the configuration still
     * gives the server the address it had then (else the configuration's
     * wins and the runtime one is forgotten). */
    char err[256];
    if (!e->addr[0] || s->added)
        return true;
    if (strcmp(s->cfg->addr.text, e->cfg_addr) != 0)
        ferry_state_forget_addr(d, e->backend, e->name);
    else if (strcmp(s->addr_text, e->addr) != 0 &&
             ferry_admin_set_server_addr(d, e->backend, e->name, e->addr, err, sizeof(err)) != 0)
        ferry_log(FERRY_LOG_WARN, "state_entry_skipped", "server=%s/%s error=%s", e->backend,
                  e->name, err);
    else
        ferry_state_note_addr(d, e->backend, e->name, e->addr);
    return true;
}

int ferry_state_parse(const char *text, const char **why, int *lineno)
{
    struct entry *v;
    size_t n;
    *why = NULL;
    int rc = parse_text(text, &v, &n, why, lineno);
    free(v);
    return rc != 0 ? -1 : n > INT_MAX ? INT_MAX : (int)n;
}

/* Applies text; file names the state file it came from (NULL: another
 * origin), for the warning when it does not parse. */
static int apply_text(struct ferry_daemon *d, const char *text, const char *origin,
                      const char *file)
{
    struct entry *v;
    size_t n;
    const char *why = NULL;
    int line;
    if (parse_text(text ? text : "", &v, &n, &why, &line) != 0) {
        if (file)
            ferry_log(FERRY_LOG_WARN, "state_file_ignored", "file=%s line=%d error=%s", file,
                      line, why);
        else
            ferry_log(FERRY_LOG_WARN, "state_ignored", "from=%s line=%d error=%s", origin, line,
                      why);
        free(v);
        return -1;
    }
    struct ferry_gen *g = ferry_daemon_gen(d);
    int applied = 0;
    /* Added servers first: their states and weights follow on server lines. */
    for (size_t i = 0; g && i < n; i++)
        if (v[i].kind == E_ADDED)
            applied += apply_added(d, g, &v[i]);
    for (size_t i = 0; g && i < n; i++) {
        if (v[i].kind == E_SERVER)
            applied += apply_server(d, g, &v[i]);
        else if (v[i].kind == E_LISTENER)
            applied += ferry_admin_set_listener_enabled(d, v[i].name, false) == 0;
    }
    if (g)
        ferry_gen_unref(g);
    free(v);
    if (applied)
        ferry_log(FERRY_LOG_INFO, "state_applied", "from=%s entries=%d", origin, applied);
    return applied;
}

int ferry_state_apply(struct ferry_daemon *d, const char *text, const char *origin)
{
    return apply_text(d, text, origin, NULL);
}

/* Reads the whole file (malloc'd, NUL-terminated); NULL with errno. A NUL
 * byte inside is refused (EILSEQ). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    char buf[4096];
    size_t k;
    int err = m ? 0 : ENOMEM;
    while (!err && (k = fread(buf, 1, sizeof(buf), f)) > 0)
        if (memchr(buf, '\0', k) || fwrite(buf, 1, k, m) != k)
            err = memchr(buf, '\0', k) ? EILSEQ : ENOMEM;
    if (!err && ferror(f))
        err = errno ? errno : EIO;
    fclose(f);
    if (m && fclose(m) != 0 && !err)
        err = ENOMEM;
    if (err) {
        free(text);
        errno = err;
        return NULL;
    }
    return text;
}

int ferry_state_file_load(struct ferry_daemon *d)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    const char *path = g ? g->cfg->global.state_file : NULL;
    int rc = 0;
    if (path) {
        char *text = read_file(path);
        if (!text && errno != ENOENT) {
            ferry_log(FERRY_LOG_WARN, "state_file_ignored", "file=%s error=%s", path,
                      errno == EILSEQ ? "NUL byte" : strerror(errno));
            rc = -1;
        } else if (text) {
            rc = apply_text(d, text, "state_file", path);
        }
        free(text);
    }
    if (g)
        ferry_gen_unref(g);
    return rc;
}

/* ---- writing ---- */

static void render_listeners(const struct ferry_gen *g, FILE *m)
{
    for (size_t i = 0; i < g->cfg->nlisteners; i++)
        if (atomic_load(&g->listeners[i].stats->disabled))
            fprintf(m, "listener %s disabled\n", g->cfg->listeners[i].name);
}

static const struct ferry_addr_note *note_of(const struct ferry_daemon *d, const char *backend,
                                             const char *server)
{
    for (const struct ferry_addr_note *a = d->addr_notes; a; a = a->next)
        if (strcmp(a->backend, backend) == 0 && strcmp(a->server, server) == 0)
            return a;
    return NULL;
}

static void render_added(const struct ferry_daemon *d, const struct ferry_backend_rt *b,
                         const struct ferry_server_rt *s, FILE *m)
{
    const struct ferry_addr_note *a = note_of(d, b->cfg->name, s->cfg->name);
    fprintf(m, "added %s/%s %s weight=%u%s", b->cfg->name, s->cfg->name,
            a ? a->addr : s->addr_text, s->cfg->weight, s->cfg->backup ? " backup" : "");
    if (s->cfg->max_connections)
        fprintf(m, " max_connections=%u", s->cfg->max_connections);
    fputc('\n', m);
}

static void render_server(const struct ferry_daemon *d, const struct ferry_backend_rt *b,
                          const struct ferry_server_rt *s, FILE *m)
{
    const struct ferry_server_stats *st = s->stats;
    bool maint = atomic_load(&st->maint), drain = atomic_load(&st->disabled);
    int w = atomic_load(&st->weight);
    const struct ferry_addr_note *a = s->added ? NULL : note_of(d, b->cfg->name, s->cfg->name);
    if (!maint && !drain && w < 0 && !a)
        return;
    fprintf(m, "server %s/%s %s ", b->cfg->name, s->cfg->name,
            state_names[maint ? FERRY_ADMIN_MAINT : drain ? FERRY_ADMIN_DRAIN : FERRY_ADMIN_READY]);
    if (w < 0)
        fputc('-', m);
    else
        fprintf(m, "%d", w);
    if (a)
        fprintf(m, " addr=%s cfg=%s", a->addr, a->cfg_addr);
    fputc('\n', m);
}

/* The text; the caller holds state_file_lock (the notes). */
static char *render_locked(struct ferry_daemon *d)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return NULL;
    fputs("# ferry runtime state, written by ferryd (state_file; see ferry.ini(5))\n", m);
    struct ferry_gen *g = ferry_daemon_gen(d);
    for (size_t i = 0; g && i < g->cfg->nbackends; i++) {
        const struct ferry_backend_rt *b = &g->backends[i];
        size_t n = atomic_load(&b->nservers);
        for (size_t j = 0; j < n; j++)
            if (b->servers[j].added && ferry_server_listed(&b->servers[j]))
                render_added(d, b, &b->servers[j], m);
        for (size_t j = 0; j < n; j++)
            if (ferry_server_listed(&b->servers[j]) && (b->servers[j].cfg != &b->servers[j].own ||
                                                        b->servers[j].added))
                render_server(d, b, &b->servers[j], m);
    }
    if (g)
        render_listeners(g, m);
    if (g)
        ferry_gen_unref(g);
    if (fclose(m) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

char *ferry_state_file_render(struct ferry_daemon *d)
{
    pthread_mutex_lock(&d->state_file_lock);
    char *text = render_locked(d);
    pthread_mutex_unlock(&d->state_file_lock);
    return text;
}

static int write_all(int fd, const char *text)
{
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Syncs the directory of path, so the rename itself survives a crash. */
static int sync_dir(const char *path)
{
    char copy[FERRY_PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc == -EINVAL ? 0 : rc; /* a file system that cannot sync directories */
}

/* Writes text to path through a new file of a unique name (O_EXCL) in the
 * same directory, fsync, rename, fsync of the directory. 0 or -errno. */
static int write_atomically(const char *path, const char *text)
{
    char tmp[FERRY_PATH_MAX + 16];
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fchmod(fd, 0640) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = write_all(fd, text);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    else
        rc = sync_dir(path);
    return rc;
}

int ferry_state_file_save(struct ferry_daemon *d)
{
    if (atomic_load(&d->handed_over))
        return 0; /* the new process writes it now */
    struct ferry_gen *g = ferry_daemon_gen(d);
    if (!g)
        return 0;
    int rc = 0;
    const char *path = g->cfg->global.state_file;
    if (path) {
        /* One writer at a time, each writing the state as it is when it runs,
         * so the last write holds the last change. */
        pthread_mutex_lock(&d->state_file_lock);
        char *text = render_locked(d);
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

void ferry_state_file_changed(struct ferry_daemon *d)
{
    atomic_fetch_add(&d->state_changes, 1);
}

int ferry_state_note_addr(struct ferry_daemon *d, const char *backend, const char *server,
                          const char *addr)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    struct ferry_server_rt *s = g ? server_in(g, backend, server) : NULL;
    char cfg_addr[ADDR_MAX] = "";
    if (s && !s->added)
        snprintf(cfg_addr, sizeof(cfg_addr), "%s", s->cfg->addr.text);
    if (g)
        ferry_gen_unref(g);
    pthread_mutex_lock(&d->state_file_lock);
    struct ferry_addr_note *a = (struct ferry_addr_note *)note_of(d, backend, server);
    if (!a && (a = calloc(1, sizeof(*a))) != NULL) {
        snprintf(a->backend, sizeof(a->backend), "%s", backend);
        snprintf(a->server, sizeof(a->server), "%s", server);
        a->next = d->addr_notes;
        d->addr_notes = a;
    }
    if (a) {
        snprintf(a->addr, sizeof(a->addr), "%s", addr);
        snprintf(a->cfg_addr, sizeof(a->cfg_addr), "%s", cfg_addr);
    }
    pthread_mutex_unlock(&d->state_file_lock);
    ferry_state_file_changed(d);
    return a ? 0 : -ENOMEM;
}

void ferry_state_forget_addr(struct ferry_daemon *d, const char *backend, const char *server)
{
    pthread_mutex_lock(&d->state_file_lock);
    for (struct ferry_addr_note **pp = &d->addr_notes; *pp; pp = &(*pp)->next) {
        struct ferry_addr_note *a = *pp;
        if (strcmp(a->backend, backend) == 0 && strcmp(a->server, server) == 0) {
            *pp = a->next;
            free(a);
            break;
        }
    }
    pthread_mutex_unlock(&d->state_file_lock);
}

void ferry_state_notes_free(struct ferry_daemon *d)
{
    while (d->addr_notes) {
        struct ferry_addr_note *a = d->addr_notes;
        d->addr_notes = a->next;
        free(a);
    }
}

/* ---- the save future ---- */

static void *save_work(void *arg)
{
    return (void *)(intptr_t)ferry_state_file_save(arg);
}

static ac_poll_t save_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_state_save *s = (struct ferry_state_save *)f;
    struct ferry_gen *g = NULL;
    if (!s->started) {
        g = ferry_daemon_gen(s->d);
        bool wanted = g && g->cfg->global.state_file && !atomic_load(&s->d->handed_over);
        if (wanted)
            snprintf(s->err, sizeof(s->err), "state_file %s", g->cfg->global.state_file);
        if (g)
            ferry_gen_unref(g);
        if (!wanted)
            return AC_READY;
        ac_blocking_init(&s->job, s->d->rt, save_work, s->d, NULL);
        s->started = true;
    }
    if (ac_future_poll(&s->job.base, cx) == AC_PENDING)
        return AC_PENDING;
    s->rc = s->job.err ? s->job.err : (int)(intptr_t)s->job.result;
    if (s->rc != 0) {
        size_t k = strlen(s->err);
        snprintf(s->err + k, sizeof(s->err) - k, ": %s", strerror(-s->rc));
    }
    return AC_READY;
}

static void save_drop(struct ac_future *f)
{
    struct ferry_state_save *s = (struct ferry_state_save *)f;
    if (s->started)
        ac_future_drop(&s->job.base);
    s->started = false;
}

static const struct ac_future_vtable save_vt = {save_poll, save_drop};

void ferry_state_save_init(struct ferry_state_save *s, struct ferry_daemon *d)
{
    memset(s, 0, sizeof(*s));
    s->base.vt = &save_vt;
    s->d = d;
}

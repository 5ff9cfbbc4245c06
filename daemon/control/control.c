/* ferryd: the control socket server (see control.h).
 *
 * The transport (bounded clients, timeouts, one request per connection) is
 * reqserver.c; this file creates the socket file safely and answers the
 * commands parsed by control_cmd.c.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "asynccore/blocking.h"
#include "control/control.h"
#include "lifecycle/reload.h"
#include "proto/control_cmd.h"
#include "control/conns_view.h"
#include "control/metrics_http.h"
#include "control/render.h"
#include "control/reqserver.h"
#include "lifecycle/state_file.h"
#include "lifecycle/upgrade.h"

/* A command line must arrive within IDLE_TIMEOUT_MS (ferryctl sends it at
 * once); MAX_CLIENTS are held, and past them a new client closes the
 * oldest idle one (reqserver.h): `ferryctl reload` never waits behind idle
 * clients. */
enum { IDLE_TIMEOUT_MS = 5000, WRITE_TIMEOUT_MS = 10000, MAX_CLIENTS = 128 };

struct ferry_control {
    struct ferry_daemon *d;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev; /* identity of the socket file we created */
    ino_t ino;
    bool adopted; /* handed over by an old process (upgrade) */
    struct ferry_rs_pool pool;
};

/* ---- the socket file ---- */

/* mkdir -p of path's parent directory (0755 for what is created). */
static int make_parent(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = c;
        if (c == '\0')
            return 0;
    }
}

/* Refuses a parent directory anyone may write to without the sticky bit:
 * another user could replace our socket. */
static int check_parent(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
        return -EPERM;
    return 0;
}

/* An existing file at path: a stale socket is removed; a live one (some
 * process accepts on it), a symbolic link or any other file is refused. */
static int clear_path(const struct sockaddr_un *sa, socklen_t len)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return -EADDRINUSE;
    if (e != ECONNREFUSED)
        return -e;
    return unlink(sa->sun_path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Creates, binds and listens; returns the descriptor or -errno. */
static int open_socket(const char *path, unsigned mode, struct stat *bound)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, n + 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    int rc = make_parent(path);
    if (rc == 0)
        rc = check_parent(path);
    if (rc == 0)
        rc = clear_path(&sa, len);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The mode given to the socket before bind is the file's mode (minus the
     * umask) on Linux: the file never exists with wider permissions. */
    (void)fchmod(fd, (mode_t)(mode & 07777));
    if (bind(fd, (struct sockaddr *)&sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (chmod(path, (mode_t)(mode & 07777)) != 0 || lstat(path, bound) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        unlink(path);
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- answering ---- */

struct ctl_client {
    struct ferry_rs_client rs; /* first: reqserver allocates and frees us */
    struct ferry_reload reload;
    bool reload_live;
    struct ferry_conns_view conns; /* `show conns`, `shutdown conn`: the workers' answers */
    bool conns_live, conns_json;
    struct ac_blocking metrics; /* `show metrics`, rendered on the blocking pool */
    bool metrics_live;
    struct ferry_upgrade upgrade;
    bool upgrade_live;
    struct ferry_state_save save; /* after a runtime change: state_file written */
    bool save_live;
};

static size_t line_complete(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    return nl ? (size_t)(nl - buf) + 1 : 0;
}

static struct ferry_rs_client *client_new(void *arg)
{
    (void)arg;
    return calloc(1, sizeof(struct ctl_client));
}

static void client_drop(struct ferry_rs_client *rs)
{
    struct ctl_client *c = (struct ctl_client *)rs;
    if (c->reload_live) {
        ac_future_drop(&c->reload.base);
        ferry_reload_free_msgs(&c->reload);
        c->reload_live = false;
    }
    if (c->conns_live) {
        ac_future_drop(&c->conns.base);
        c->conns_live = false;
    }
    if (c->metrics_live) {
        ac_future_drop(&c->metrics.base);
        c->metrics_live = false;
    }
    if (c->upgrade_live) {
        ac_future_drop(&c->upgrade.base);
        c->upgrade_live = false;
    }
    if (c->save_live) {
        ac_future_drop(&c->save.base);
        c->save_live = false;
    }
}

/* After a runtime change answered `ok`: the state_file is written before
 * the answer ends, and a write that failed adds `warning: state_file ...`
 * (the change itself stands). */
static ac_poll_t poll_save(struct ctl_client *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->save.base, cx) == AC_PENDING)
        return AC_PENDING;
    if (c->save.rc != 0)
        ferry_buf_printf(&c->rs.out, "warning: %s\n", c->save.err);
    ac_future_drop(&c->save.base);
    c->save_live = false;
    return AC_READY;
}

/* `upgrade`: answered once the new process is ready, or has failed. */
static ac_poll_t poll_upgrade(struct ctl_client *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->upgrade.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_buf *out = &c->rs.out;
    if (c->upgrade.err == 0)
        ferry_buf_printf(out, "ok\npid: %ld version: %s\n", c->upgrade.new_pid,
                         c->upgrade.new_version);
    else if (c->upgrade.errors)
        ferry_buf_puts(out, c->upgrade.errors);
    else
        ferry_buf_puts(out, "error: upgrade failed\n");
    ac_future_drop(&c->upgrade.base);
    c->upgrade_live = false;
    return AC_READY;
}

/* `show metrics`: the exposition is rendered on the blocking pool, off
 * worker 0's loop (metrics_http.h). */
static ac_poll_t poll_metrics(struct ctl_client *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->metrics.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_buf *body = c->metrics.err ? NULL : c->metrics.result;
    ac_future_drop(&c->metrics.base);
    c->metrics_live = false;
    if (body && body->data)
        ferry_buf_append(&c->rs.out, body->data, body->len);
    else
        ferry_buf_puts(&c->rs.out, "error: out of memory\n");
    ferry_metrics_render_free(body);
    return AC_READY;
}

static ac_poll_t poll_reload(struct ctl_client *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->reload.base, cx) == AC_PENDING)
        return AC_PENDING;
    struct ferry_buf *out = &c->rs.out;
    if (c->reload.err == 0) {
        ferry_buf_puts(out, "ok\n");
        for (size_t i = 0; i < c->reload.warns.n; i++)
            ferry_buf_printf(out, "warning: %s\n", c->reload.warns.msgs[i]);
    } else {
        for (size_t i = 0; i < c->reload.errs.n; i++)
            ferry_buf_printf(out, "error: %s\n", c->reload.errs.msgs[i]);
        if (c->reload.errs.n == 0)
            ferry_buf_puts(out, "error: reload failed\n");
    }
    ac_future_drop(&c->reload.base);
    ferry_reload_free_msgs(&c->reload);
    c->reload_live = false;
    return AC_READY;
}

/* `show conns`: every worker lists its own connections (conns_view.h). */
static ac_poll_t poll_conns(struct ctl_client *c, struct ac_context *cx)
{
    if (ac_future_poll(&c->conns.base, cx) == AC_PENDING)
        return AC_PENDING;
    if (c->conns.kill_id)
        ferry_buf_puts(&c->rs.out, c->conns.killed ? "ok\n" : "error: no such connection\n");
    else if (c->conns.err != 0)
        ferry_buf_puts(&c->rs.out, "error: out of memory\n");
    else
        ferry_render_conns(c->conns.conns, c->conns.n, c->conns_json, &c->rs.out);
    ac_future_drop(&c->conns.base);
    c->conns_live = false;
    return AC_READY;
}

/* The runtime API: "ok" (returns 0), or why not. */
static int runtime_cmd(struct ferry_daemon *d, const struct ferry_ctl_request *req,
                        struct ferry_buf *out)
{
    int rc;
    switch (req->cmd) {
    case FERRY_CTL_DISABLE_SERVER:
        rc = ferry_admin_set_server_state(d, req->backend, req->server, FERRY_ADMIN_DRAIN);
        break;
    case FERRY_CTL_ENABLE_SERVER:
        rc = ferry_admin_set_server_state(d, req->backend, req->server, FERRY_ADMIN_READY);
        break;
    case FERRY_CTL_SET_SERVER_STATE:
        rc = ferry_admin_set_server_state(d, req->backend, req->server, req->state);
        break;
    case FERRY_CTL_SET_SERVER_WEIGHT:
        rc = ferry_admin_set_server_weight(d, req->backend, req->server, req->weight);
        break;
    default: /* listeners */
        rc = ferry_admin_set_listener_enabled(d, req->listener,
                                               req->cmd == FERRY_CTL_ENABLE_LISTENER);
        if (rc != 0) {
            ferry_buf_printf(out, "error: no such listener %s\n", req->listener);
            return rc;
        }
    }
    if (rc == 0)
        ferry_buf_puts(out, "ok\n");
    else
        ferry_buf_printf(out, "error: no such server %s/%s\n", req->backend, req->server);
    return rc;
}

/* add server / del server: "ok" (returns 0), or why not. */
static int server_set_cmd(struct ferry_daemon *d, const struct ferry_ctl_request *req,
                           struct ferry_buf *out)
{
    char err[256];
    int rc = req->cmd == FERRY_CTL_ADD_SERVER
                 ? ferry_admin_add_server(d, req->backend, req->server, &req->addr, req->weight,
                                           req->backup, req->max_connections, err, sizeof(err))
                 : ferry_admin_del_server(d, req->backend, req->server, err, sizeof(err));
    if (rc == 0) {
        ferry_state_forget_addr(d, req->backend, req->server); /* a new server, or none */
        ferry_buf_puts(out, "ok\n");
    } else {
        ferry_buf_printf(out, "error: %s\n", err);
    }
    return rc;
}

/* set server B/S addr ADDRESS: "ok" (returns 0; the address is kept by
 * state_file and an upgrade, lifecycle/state_file.c), or why not. */
static int set_addr_cmd(struct ferry_daemon *d, const struct ferry_ctl_request *req,
                        struct ferry_buf *out)
{
    char err[256];
    int rc = ferry_admin_set_server_addr(d, req->backend, req->server, req->addr.text, err,
                                         sizeof(err));
    if (rc == 0) {
        ferry_state_note_addr(d, req->backend, req->server, req->addr.text);
        ferry_buf_puts(out, "ok\n");
    } else {
        ferry_buf_printf(out, "error: %s\n", err);
    }
    return rc;
}

/* A runtime change went through: counted, then kept in the state_file. */
static ac_poll_t changed(struct ctl_client *c, struct ferry_daemon *d, struct ac_context *cx)
{
    ferry_state_file_changed(d);
    ferry_state_save_init(&c->save, d);
    c->save_live = true;
    return poll_save(c, cx);
}

/* Everything but reload and show conns answers at once. */
static ac_poll_t execute(struct ctl_client *c, const struct ferry_ctl_request *req,
                         struct ac_context *cx)
{
    struct ferry_daemon *d = ((struct ferry_control *)c->rs.arg)->d;
    struct ferry_buf *out = &c->rs.out;
    switch (req->cmd) {
    case FERRY_CTL_HELP: ferry_buf_puts(out, ferry_ctl_help_text); break;
    case FERRY_CTL_SHOW_INFO: ferry_render_info(d, req->json, out); break;
    case FERRY_CTL_SHOW_STATS: ferry_render_stats(d, req->json, out); break;
    case FERRY_CTL_SHOW_CONNS:
        ferry_conns_view_init(&c->conns, d, FERRY_CONNS_VIEW_WAIT_MS);
        c->conns_live = true;
        c->conns_json = req->json;
        return poll_conns(c, cx);
    case FERRY_CTL_SHUTDOWN_CONN: /* the owning worker ends it (conns_view.h) */
        ferry_conns_view_init_kill(&c->conns, d, FERRY_CONNS_VIEW_WAIT_MS, req->conn_id);
        c->conns_live = true;
        return poll_conns(c, cx);
    case FERRY_CTL_SHOW_METRICS:
        ac_blocking_init(&c->metrics, d->rt, ferry_metrics_render_job, d,
                         ferry_metrics_render_free);
        c->metrics_live = true;
        return poll_metrics(c, cx);
    case FERRY_CTL_SHOW_ACME: ferry_acme_render(d, req->json, out); break;
    case FERRY_CTL_DISABLE_SERVER:
    case FERRY_CTL_ENABLE_SERVER:
    case FERRY_CTL_SET_SERVER_STATE:
    case FERRY_CTL_SET_SERVER_WEIGHT:
    case FERRY_CTL_DISABLE_LISTENER:
    case FERRY_CTL_ENABLE_LISTENER:
        if (runtime_cmd(d, req, out) == 0)
            return changed(c, d, cx);
        break;
    case FERRY_CTL_ADD_SERVER:
    case FERRY_CTL_DEL_SERVER:
        if (server_set_cmd(d, req, out) == 0)
            return changed(c, d, cx);
        break;
    case FERRY_CTL_SET_SERVER_ADDR:
        if (set_addr_cmd(d, req, out) == 0)
            return changed(c, d, cx);
        break;
    case FERRY_CTL_RELOAD:
        if (atomic_load(&d->upgrading)) {
            ferry_buf_puts(out, "error: upgrade in progress\n");
            break;
        }
        ferry_reload_init(&c->reload, d);
        c->reload_live = true;
        return poll_reload(c, cx);
    case FERRY_CTL_UPGRADE:
        ferry_upgrade_init(&c->upgrade, d);
        c->upgrade_live = true;
        return poll_upgrade(c, cx);
    default: ferry_buf_puts(out, "error: unknown command\n"); break;
    }
    return AC_READY;
}

static ac_poll_t respond(struct ferry_rs_client *rs, struct ac_context *cx)
{
    struct ctl_client *c = (struct ctl_client *)rs;
    ac_poll_t r = AC_READY;
    struct ferry_ctl_request req;
    if (c->reload_live)
        r = poll_reload(c, cx);
    else if (c->conns_live)
        r = poll_conns(c, cx);
    else if (c->metrics_live)
        r = poll_metrics(c, cx);
    else if (c->upgrade_live)
        r = poll_upgrade(c, cx);
    else if (c->save_live)
        r = poll_save(c, cx);
    else if (rs->overflow)
        ferry_buf_printf(&rs->out, "error: line too long (at most %d bytes)\n", FERRY_CTL_LINE_MAX);
    else if (memchr(rs->req, '\0', rs->req_len))
        ferry_buf_puts(&rs->out, "error: NUL byte in command\n");
    else if (ferry_ctl_parse(rs->req, rs->req_len, &req) != 0)
        ferry_buf_printf(&rs->out, "error: %s\n", req.error);
    else
        r = execute(c, &req, cx);
    if (r == AC_READY && rs->out.oom) {
        ferry_buf_free(&rs->out);
        ferry_buf_puts(&rs->out, "error: out of memory\n");
    }
    return r;
}

static const struct ferry_rs_ops control_ops = {
    .max_request = FERRY_CTL_LINE_MAX + 1, /* the line and its '\n' */
    .read_timeout_ms = IDLE_TIMEOUT_MS,
    .write_timeout_ms = WRITE_TIMEOUT_MS,
    .complete = line_complete,
    .client_new = client_new,
    .respond = respond,
    .client_drop = client_drop,
};

/* ---- start and free ---- */

/* Serves the listening socket fd (bound at path, identified by st). */
static struct ferry_control *serve(struct ferry_daemon *d, const char *path, int fd,
                                   const struct stat *st, bool adopted, int *err)
{
    struct ferry_control *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    ferry_rs_pool_init(&c->pool, MAX_CLIENTS, 0);
    c->d = d;
    c->adopted = adopted;
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->dev = st->st_dev;
    c->ino = st->st_ino;
    d->ctl_fd = fd; /* for an upgrade */
    snprintf(d->ctl_path, sizeof(d->ctl_path), "%s", path);
    int rc = ferry_rs_spawn(ac_runtime_worker(d->rt, 0), fd, &control_ops, c, &c->pool,
                            &d->services_stop);
    if (rc != 0) { /* the task closed fd */
        d->ctl_fd = -1;
        ferry_control_free(c);
        *err = rc;
        return NULL;
    }
    return c;
}

struct ferry_control *ferry_control_start(struct ferry_daemon *d, const char *path, unsigned mode,
                                          int *err)
{
    struct stat st;
    int fd = open_socket(path, mode, &st);
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    return serve(d, path, fd, &st, false, err);
}

struct ferry_control *ferry_control_adopt(struct ferry_daemon *d, const char *path, int fd,
                                          int *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) /* the file went (removed by hand): serve the socket anyway */
        memset(&st, 0, sizeof(st));
    return serve(d, path, fd, &st, true, err);
}

void ferry_control_free(struct ferry_control *c)
{
    if (!c)
        return;
    /* The file stays while another ferryd serves it: the new process after
     * an upgrade, or the old one when this was a new process that failed. */
    bool ours = !atomic_load(&c->d->handed_over) && (!c->adopted || c->d->serving);
    struct stat st;
    if (ours && lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
        st.st_ino == c->ino)
        unlink(c->path);
    ferry_rs_pool_destroy(&c->pool);
    free(c);
}

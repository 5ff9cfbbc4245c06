/* ferryd: upgrading in place, the old process's side (see upgrade.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/listen.h"
#include "lifecycle/handover.h"
#include "log/log.h"
#include "lifecycle/state_file.h"
#include "lifecycle/upgrade.h"

extern char **environ;

enum { U_START, U_WAIT, U_DONE };
enum { SEND_TIMEOUT_MS = 5000 };

static void add_error(struct ferry_upgrade *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_error(struct ferry_upgrade *u, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ferry_log(FERRY_LOG_ERROR, "upgrade_failed", "error=%s", line);
    size_t n = strlen(line);
    char *v = realloc(u->errors, u->errors_len + n + sizeof("error: \n"));
    if (!v)
        return;
    u->errors = v;
    u->errors_len += (size_t)sprintf(v + u->errors_len, "error: %s\n", line);
}

/* The environment of the new process: ours, with the channel's number in
 * *mine (malloc'd, freed by the caller with the array). */
static char **child_env(int chan, char **mine)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    *mine = malloc(sizeof(FERRY_HANDOVER_ENV) + 16);
    if (!env || !*mine) {
        free(env);
        free(*mine);
        return NULL;
    }
    size_t k = 0, plen = strlen(FERRY_HANDOVER_ENV);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], FERRY_HANDOVER_ENV, plen) != 0 || environ[i][plen] != '=')
            env[k++] = environ[i];
    sprintf(*mine, "%s=%d", FERRY_HANDOVER_ENV, chan);
    env[k] = *mine;
    return env;
}

/* Starts the executable with our arguments; only child_chan crosses exec
 * (every other descriptor of ours is close-on-exec). */
static int spawn_new(struct ferry_upgrade *u, int child_chan)
{
    struct ferry_daemon *d = u->d;
    char *mine;
    char **env = child_env(child_chan, &mine);
    if (!env)
        return -ENOMEM;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* dup2 onto itself clears FD_CLOEXEC in the child (glibc >= 2.29). */
    posix_spawn_file_actions_adddup2(&fa, child_chan, child_chan);
    /* The new process starts with no signal blocked (it blocks its own). */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&u->pid, d->exe_path, &fa, &at, d->argv, env);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    free(mine);
    free(env);
    if (rc != 0)
        u->pid = 0;
    return -rc;
}

/* ---- what is handed over ---- */

static int send_listeners(struct ferry_daemon *d, int chan)
{
    for (struct ferry_listen_addr *b = d->bound; b; b = b->next) {
        struct ferry_handed_sock s = {.kind = FERRY_HANDED_LISTENER, .inherited = b->inherited,
                                      .nfds = b->nfds, .fds = b->fds};
        snprintf(s.addr, sizeof(s.addr), "%s", b->addr);
        snprintf(s.sd_name, sizeof(s.sd_name), "%s", b->sd_name);
        int rc = ferry_handover_send_sock(chan, &s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int send_service(int chan, enum ferry_handed_kind kind, int fd, const char *key)
{
    if (fd < 0)
        return 0;
    struct ferry_handed_sock s = {.kind = kind, .nfds = 1, .fds = &fd};
    snprintf(s.addr, sizeof(s.addr), "%s", key);
    return ferry_handover_send_sock(chan, &s);
}

static int send_handover(struct ferry_upgrade *u)
{
    struct ferry_daemon *d = u->d;
    struct timeval tv = {.tv_sec = SEND_TIMEOUT_MS / 1000};
    if (setsockopt(u->chan, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    char *state = ferry_state_file_render(d);
    if (!state)
        return -ENOMEM;
    int rc = send_listeners(d, u->chan);
    if (rc == 0)
        rc = send_service(u->chan, FERRY_HANDED_CONTROL, d->ctl_fd, d->ctl_path);
    if (rc == 0)
        rc = send_service(u->chan, FERRY_HANDED_METRICS, d->metrics_fd, d->metrics_addr);
    if (rc == 0)
        rc = ferry_handover_send_ticket_key(u->chan, d->ticket_key);
    if (rc == 0)
        rc = ferry_handover_send_state(u->chan, state);
    if (rc == 0)
        rc = ferry_handover_send_end(u->chan, d->pid);
    free(state);
    return rc;
}

/* ---- outcomes ---- */

/* Stops and reaps a new process that failed, and says how it ended. */
static void bury(struct ferry_upgrade *u, bool kill_it)
{
    if (u->pid <= 0)
        return;
    int st = 0;
    pid_t r = waitpid(u->pid, &st, WNOHANG);
    if (r == 0 && kill_it) {
        kill(u->pid, SIGKILL);
        r = waitpid(u->pid, &st, 0);
    } else if (r == 0) {
        /* It closed the channel: it is on its way out; give it a moment
         * (at most 200 ms of worker 0, on this failure path only). */
        for (int i = 0; i < 20 && r == 0; i++) {
            usleep(10000);
            r = waitpid(u->pid, &st, WNOHANG);
        }
        if (r == 0) {
            kill(u->pid, SIGKILL);
            r = waitpid(u->pid, &st, 0);
            kill_it = true;
        }
    }
    if (r == u->pid && !kill_it) {
        if (WIFEXITED(st))
            add_error(u, "the new process (pid %ld) exited with status %d before it was ready",
                      (long)u->pid, WEXITSTATUS(st));
        else if (WIFSIGNALED(st))
            add_error(u, "the new process (pid %ld) was killed by signal %d before it was ready",
                      (long)u->pid, WTERMSIG(st));
    }
    u->pid = 0;
}

static void close_channel(struct ferry_upgrade *u)
{
    if (u->io_live)
        ac_io_deregister(&u->io);
    u->io_live = false;
    if (u->chan >= 0)
        close(u->chan);
    u->chan = -1;
    ac_deadline_disarm(&u->deadline);
}

static ac_poll_t fail(struct ferry_upgrade *u, bool kill_it)
{
    close_channel(u);
    bury(u, kill_it);
    if (!u->errors)
        add_error(u, "upgrade failed");
    u->err = -1;
    u->state = U_DONE;
    atomic_store(&u->d->upgrading, false);
    return AC_READY;
}

/* The new process is serving: this one stops accepting on the shared
 * sockets (closing only its own descriptors: the kernel's queues stay open
 * in the new process), keeps its connections until they end or
 * drain_timeout, and exits. The signal task does the stopping, as for
 * SIGTERM, told by handed_over to leave out STOPPING=1, shutdown_delay and
 * serving the accept queues. */
static void hand_off(struct ferry_daemon *d)
{
    /* The new process is the unit's main process now: no STATUS=,
     * WATCHDOG=1 or STOPPING=1 from this one (signals.c reads the flag). */
    atomic_store(&d->handed_over, true);
    for (struct ferry_listen_addr *b = d->bound; b; b = b->next)
        b->keep_file = true; /* a unix: listener's file is the new one's now */
    ac_notify_all(&d->services_stop); /* control socket and metrics endpoint */
    kill(getpid(), SIGTERM);
}

static ac_poll_t ready(struct ferry_upgrade *u, const char *text)
{
    if (atomic_load(&u->d->stopping)) { /* a stop signal came meanwhile: it wins */
        add_error(u, "ferryd is stopping");
        return fail(u, true);
    }
    if (sscanf(text, "%ld %63s", &u->new_pid, u->new_version) != 2 || u->new_pid != u->pid) {
        add_error(u, "the new process sent a bad ready message");
        return fail(u, true);
    }
    int rc = ferry_handover_send_msg(u->chan, 'g', "");
    if (rc != 0) {
        add_error(u, "cannot tell the new process to go: %s", strerror(-rc));
        return fail(u, true);
    }
    close_channel(u);
    ferry_log(FERRY_LOG_INFO, "upgraded", "new_pid=%ld new_version=%s", u->new_pid,
              u->new_version);
    hand_off(u->d);
    u->pid = 0; /* the new main process: never reaped by us */
    u->err = 0;
    u->state = U_DONE;
    return AC_READY;
}

/* Reads the new process's messages until it is ready, fails or times out. */
static ac_poll_t wait_new(struct ferry_upgrade *u, struct ac_context *cx)
{
    for (;;) {
        char type, text[FERRY_HANDOVER_RECORD_MAX];
        ssize_t n = ferry_handover_recv_msg(u->chan, &type, text, sizeof(text));
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            struct ac_ready_event ev;
            if (ac_io_poll_ready(&u->io, cx, AC_DIR_READ, &ev) == AC_PENDING)
                break;
            n = ferry_handover_recv_msg(u->chan, &type, text, sizeof(text));
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                ac_io_clear_ready(&u->io, AC_DIR_READ, ev);
                continue;
            }
        }
        if (n == 0 || n == -ECONNRESET) /* it went (with our records unread) */
            return fail(u, false);
        if (n < 0) {
            add_error(u, "cannot read from the new process: %s", strerror((int)-n));
            return fail(u, true);
        }
        if (type == 'e')
            add_error(u, "%s", text);
        else if (type == 'r')
            return ready(u, text);
    }
    if (ac_deadline_poll(&u->deadline, cx) == AC_READY) {
        add_error(u, "the new process (pid %ld) was not ready within %d s", (long)u->pid,
                  FERRY_UPGRADE_READY_MS / 1000);
        return fail(u, true);
    }
    return AC_PENDING;
}

static ac_poll_t start(struct ferry_upgrade *u, struct ac_context *cx)
{
    struct ferry_daemon *d = u->d;
    u->state = U_DONE;
    u->err = -1;
    if (atomic_load(&d->stopping)) {
        add_error(u, "ferryd is stopping");
        return AC_READY;
    }
    if (atomic_exchange(&d->upgrading, true)) {
        add_error(u, "upgrade in progress");
        return AC_READY;
    }
    if (atomic_load(&d->reloading)) {
        add_error(u, "reload in progress");
        atomic_store(&d->upgrading, false);
        return AC_READY;
    }
    if (!d->exe_path || !d->argv) {
        add_error(u, "the path ferryd was started from is not known");
        return fail(u, false);
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        add_error(u, "cannot make the upgrade channel: %s", strerror(errno));
        return fail(u, false);
    }
    u->chan = sv[0];
    ferry_log(FERRY_LOG_INFO, "upgrade_started", "exe=%s", d->exe_path);
    int rc = spawn_new(u, sv[1]);
    close(sv[1]);
    if (rc != 0) {
        add_error(u, "cannot start %s: %s", d->exe_path, strerror(-rc));
        return fail(u, false);
    }
    rc = send_handover(u);
    if (rc != 0) {
        /* Most likely it ended already: its exit status is the better reason. */
        long pid = (long)u->pid;
        size_t before = u->errors_len;
        close_channel(u);
        bury(u, false);
        if (u->errors_len == before)
            add_error(u, "cannot hand the sockets to the new process (pid %ld): %s", pid,
                      strerror(-rc));
        return fail(u, true);
    }
    int fl = fcntl(u->chan, F_GETFL);
    if (fl < 0 || fcntl(u->chan, F_SETFL, fl | O_NONBLOCK) != 0 ||
        (rc = ac_io_register(cx->worker, u->chan, 0, &u->io)) != 0) {
        add_error(u, "cannot watch the upgrade channel: %s", strerror(rc ? -rc : errno));
        return fail(u, true);
    }
    u->io_live = true;
    ac_deadline_arm_in(&u->deadline, FERRY_UPGRADE_READY_MS);
    u->state = U_WAIT;
    return wait_new(u, cx);
}

static ac_poll_t upgrade_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_upgrade *u = (struct ferry_upgrade *)f;
    switch (u->state) {
    case U_START: return start(u, cx);
    case U_WAIT: return wait_new(u, cx);
    default: return AC_READY;
    }
}

/* Dropped while waiting (the asking client went away, ferryd stops): the
 * new process is stopped, as on any failure before it was ready. */
static void upgrade_drop(struct ac_future *f)
{
    struct ferry_upgrade *u = (struct ferry_upgrade *)f;
    if (u->state == U_WAIT) {
        close_channel(u);
        bury(u, true);
        atomic_store(&u->d->upgrading, false);
    }
    ac_deadline_disarm(&u->deadline);
    free(u->errors);
    u->errors = NULL;
}

static const struct ac_future_vtable upgrade_vt = {upgrade_poll, upgrade_drop};

void ferry_upgrade_init(struct ferry_upgrade *u, struct ferry_daemon *d)
{
    memset(u, 0, sizeof(*u));
    u->base.vt = &upgrade_vt;
    u->d = d;
    u->chan = -1;
    ac_deadline_init(&u->deadline);
}

/* ---- where the executable is ---- */

static char *joined(const char *dir, const char *name)
{
    char *s = NULL;
    if (asprintf(&s, "%s/%s", dir, name) < 0)
        return NULL;
    return s;
}

/* argv[0] found along $PATH, as the shell found it. */
static char *search_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    char *copy = strdup(path), *save = NULL;
    char *found = NULL;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char *p = joined(dir, name);
        if (p && access(p, X_OK) == 0 && p[0] == '/')
            found = p;
        else
            free(p);
    }
    free(copy);
    return found;
}

char *ferry_upgrade_exe_path(const char *argv0)
{
    char *p = NULL;
    if (argv0 && argv0[0] == '/')
        p = strdup(argv0);
    else if (argv0 && strchr(argv0, '/')) {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)))
            p = joined(cwd, argv0);
    } else if (argv0 && argv0[0])
        p = search_path(argv0);
    if (p)
        return p;
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return strdup(buf);
}

/* ferryd: the logger and its writer thread (see log_writer.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "asynccore/runtime.h"
#include "log/log_writer.h"

#define RING_SIZE (128u * 1024u) /* per worker: ~500 access lines */
#define BATCH_SIZE (64u * 1024u)
#define BUSY_NAP_MS 2            /* while lines keep coming: gather them this long */
#define IDLE_WAIT_MS 1000
#define STOP_FLUSH_MS 2000       /* at exit, give a stuck sink this long */
#define SYSLOG_PATH "/dev/log"
#define SYSLOG_FACILITY 3        /* daemon */

/* ---- sinks ---- */

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0640);
}

static int open_syslog(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", SYSLOG_PATH);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* stderr without blocking: a socket (the journal) takes MSG_DONTWAIT; a pipe
 * is opened again as a file description of our own with O_NONBLOCK (the
 * inherited one is shared with whoever started us). */
static void open_stderr(struct ferry_log_sink *s)
{
    struct stat st;
    s->fd = STDERR_FILENO;
    if (fstat(STDERR_FILENO, &st) != 0)
        return;
    if (S_ISSOCK(st.st_mode)) {
        s->socket = true;
    } else if (S_ISFIFO(st.st_mode)) {
        int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            s->fd = fd;
            s->own_fd = true;
        }
    }
}

static int sink_open(struct ferry_log_sink *s, enum ferry_log_target target, const char *path,
                     enum ferry_log_format format)
{
    memset(s, 0, sizeof(*s));
    s->target = target;
    s->fd = -1;
    s->style.format = format;
    s->style.prefix = FERRY_LOG_PREFIX_TS;
    s->batch = malloc(BATCH_SIZE);
    if (!s->batch)
        return -1;
    switch (target) {
    case FERRY_LOG_TO_STDERR:
        s->style.prefix = ferry_log_stderr_prefix();
        open_stderr(s);
        return 0;
    case FERRY_LOG_TO_SYSLOG:
        s->fd = open_syslog();
        s->own_fd = true;
        s->socket = true;
        return s->fd < 0 ? -1 : 0;
    case FERRY_LOG_TO_FILE:
        snprintf(s->path, sizeof(s->path), "%s", path);
        s->fd = open_file(path);
        s->own_fd = true;
        return s->fd < 0 ? -1 : 0;
    case FERRY_LOG_TO_UDP:
    case FERRY_LOG_TO_TCP:
        s->style.prefix = FERRY_LOG_PREFIX_NONE; /* the RFC 5424 header has the time */
        return 0; /* the server: remote_open() */
    }
    return -1;
}

/* udp:// or tcp://: nothing is sent or connected yet, so this never fails
 * but for memory (the server may come up later). */
static int remote_open(struct ferry_logger *lg, struct ferry_log_sink *s,
                       const struct ferry_global *g)
{
    s->remote = malloc(sizeof(*s->remote));
    if (!s->remote || ferry_log_remote_init(s->remote, &g->log_addr, g->log_target ==
                                            FERRY_LOG_TO_TCP, (long)lg->pid,
                                            &lg->writer_dropped) != 0) {
        free(s->remote);
        s->remote = NULL;
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

static void sink_close(struct ferry_log_sink *s)
{
    if (s->remote)
        ferry_log_remote_close(s->remote);
    free(s->remote);
    s->remote = NULL;
    if (s->own_fd && s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->batch);
    s->batch = NULL;
}

static uint64_t count_lines(const char *b, size_t n)
{
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += b[i] == '\n';
    return k;
}

/* Writes what the batch holds without blocking. Returns false while the
 * sink cannot take more (EAGAIN). Any other error throws the batch away. */
static bool sink_flush(struct ferry_logger *lg, struct ferry_log_sink *s)
{
    size_t off = 0;
    bool ok = true;
    while (off < s->blen) {
        ssize_t w = s->socket ? send(s->fd, s->batch + off, s->blen - off, MSG_DONTWAIT | MSG_NOSIGNAL)
                              : write(s->fd, s->batch + off, s->blen - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ok = false;
            break;
        }
        atomic_fetch_add(&lg->writer_dropped, count_lines(s->batch + off, s->blen - off));
        off = s->blen;
    }
    memmove(s->batch, s->batch + off, s->blen - off);
    s->blen -= off;
    return ok;
}

/* One datagram to syslog: `<PRI>ferryd[PID]: ` then the line without its
 * newline. Returns false when the socket cannot take it now. */
static bool syslog_send(struct ferry_logger *lg, struct ferry_log_sink *s, unsigned level,
                        const char *line, size_t len)
{
    uint64_t now = ac_clock_now_ms();
    if (s->fd < 0 && now >= s->retry_ms) {
        s->fd = open_syslog();
        s->retry_ms = now + 1000;
    }
    if (s->fd < 0) {
        atomic_fetch_add(&lg->writer_dropped, 1);
        return true;
    }
    char hdr[64];
    int hn = snprintf(hdr, sizeof(hdr), "<%d>ferryd[%ld]: ",
                      SYSLOG_FACILITY * 8 + ferry_log_priority((enum ferry_log_level)level),
                      (long)lg->pid);
    struct iovec iov[2] = {{hdr, (size_t)hn}, {(void *)line, len && line[len - 1] == '\n' ? len - 1 : len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    for (;;) {
        if (sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return true;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return false;
        /* The syslog daemon went away: connect again later. */
        close(s->fd);
        s->fd = -1;
        s->retry_ms = now + 1000;
        atomic_fetch_add(&lg->writer_dropped, 1);
        return true;
    }
}

/* Adds a line to the sink. Returns false when it cannot take it now. */
static bool sink_put(struct ferry_logger *lg, struct ferry_log_sink *s, unsigned level,
                     const char *line, size_t len)
{
    if (s->target == FERRY_LOG_TO_SYSLOG)
        return syslog_send(lg, s, level, line, len);
    if (s->remote)
        return ferry_log_remote_put(s->remote, ferry_log_priority((enum ferry_log_level)level),
                                    ferry_log_realtime_ms(), line, len);
    if (s->blen + len > BATCH_SIZE && !sink_flush(lg, s) && s->blen + len > BATCH_SIZE)
        return false;
    if (s->blen + len > BATCH_SIZE)
        return false;
    memcpy(s->batch + s->blen, line, len);
    s->blen += len;
    return true;
}

/* ---- the writer ---- */

static struct ferry_log_sink *sink_of(struct ferry_logger *lg, unsigned id)
{
    return id == FERRY_LOG_SINK_ACCESS && lg->access_own ? &lg->sinks[FERRY_LOG_SINK_ACCESS]
                                                         : &lg->sinks[FERRY_LOG_SINK_MAIN];
}

/* Moves what the rings hold into the sinks. Returns whether anything moved. */
static bool drain(struct ferry_logger *lg)
{
    char line[FERRY_LOG_LINE_MAX];
    bool moved = false;
    for (unsigned i = 0; i <= lg->nworkers; i++) {
        struct ferry_log_ring *r = &lg->rings[i];
        struct ferry_log_rec rec;
        while (ferry_log_ring_peek(r, &rec)) {
            size_t n = rec.len < sizeof(line) ? rec.len : sizeof(line);
            ferry_log_ring_read(r, &rec, line);
            if (!sink_put(lg, sink_of(lg, rec.sink), rec.level, line, n))
                break; /* stuck: the rest waits in the ring */
            ferry_log_ring_consume(r, &rec);
            moved = true;
        }
    }
    return moved;
}

/* Flushes every stream sink; returns the fd of one that is stuck, or -1. */
static int flush_all(struct ferry_logger *lg)
{
    int stuck = -1;
    for (unsigned i = 0; i < FERRY_LOG_NSINKS; i++) {
        struct ferry_log_sink *s = &lg->sinks[i];
        if (s->remote) {
            int fd = ferry_log_remote_flush(s->remote);
            if (fd >= 0)
                stuck = fd;
        } else if (s->fd >= 0 && s->target != FERRY_LOG_TO_SYSLOG && s->blen &&
                   !sink_flush(lg, s)) {
            stuck = s->fd;
        }
    }
    return stuck;
}

static uint64_t ring_dropped(struct ferry_logger *lg)
{
    uint64_t n = atomic_load(&lg->writer_dropped);
    for (unsigned i = 0; i <= lg->nworkers; i++)
        n += atomic_load_explicit(&lg->rings[i].dropped, memory_order_relaxed);
    return n;
}

/* A line of the writer's own, straight into the main sink. */
static void writer_line(struct ferry_logger *lg, enum ferry_log_level lvl, const char *msg,
                        const char *kv_fmt, ...) __attribute__((format(printf, 4, 5)));
static void writer_line(struct ferry_logger *lg, enum ferry_log_level lvl, const char *msg,
                        const char *kv_fmt, ...)
{
    if (!ferry_logger_enabled(lg, lvl))
        return;
    struct ferry_log_sink *s = &lg->sinks[FERRY_LOG_SINK_MAIN];
    char line[FERRY_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, kv_fmt);
    size_t n = ferry_log_vformat(line, sizeof(line), &s->style, ferry_log_realtime_ms(), lvl, msg,
                                 kv_fmt, ap);
    va_end(ap);
    if (!sink_put(lg, s, (unsigned)lvl, line, n))
        atomic_fetch_add(&lg->writer_dropped, 1);
}

/* Once a second at most: how many lines a slow sink cost. */
static void report_dropped(struct ferry_logger *lg)
{
    uint64_t now = ac_clock_now_ms();
    uint64_t total = ring_dropped(lg);
    if (total == lg->dropped_reported || now < lg->dropped_report_ms + 1000)
        return;
    writer_line(lg, FERRY_LOG_WARN, "log_lines_dropped", "dropped=%llu total=%llu",
                (unsigned long long)(total - lg->dropped_reported), (unsigned long long)total);
    lg->dropped_reported = total;
    lg->dropped_report_ms = now;
}

static void reopen_files(struct ferry_logger *lg)
{
    for (unsigned i = 0; i < FERRY_LOG_NSINKS; i++) {
        struct ferry_log_sink *s = &lg->sinks[i];
        if (s->target != FERRY_LOG_TO_FILE || s->fd < 0)
            continue;
        int fd = open_file(s->path);
        if (fd < 0) {
            writer_line(lg, FERRY_LOG_ERROR, "log_reopen_failed", "path=%s error=%s", s->path,
                        strerror(errno));
            continue;
        }
        sink_flush(lg, s); /* what was written before the signal ends in the old file */
        close(s->fd);
        s->fd = fd;
    }
    writer_line(lg, FERRY_LOG_INFO, "log_reopened", NULL);
}

static bool rings_empty(struct ferry_logger *lg)
{
    for (unsigned i = 0; i <= lg->nworkers; i++)
        if (!ferry_log_ring_empty(&lg->rings[i]))
            return false;
    return true;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sleeps until a producer wakes us (see ferry_logger_vlog) or ms passed. */
static void idle_wait(struct ferry_logger *lg, unsigned ms)
{
    pthread_mutex_lock(&lg->lock);
    atomic_store(&lg->sleeping, true);
    if (rings_empty(lg) && !atomic_load(&lg->stop) && !atomic_load(&lg->reopen)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&lg->cv, &lg->lock, &ts);
    }
    atomic_store(&lg->sleeping, false);
    pthread_mutex_unlock(&lg->lock);
}

/* At exit, a sink that stays stuck costs what is left. */
static void discard_all(struct ferry_logger *lg)
{
    for (unsigned i = 0; i <= lg->nworkers; i++) {
        struct ferry_log_rec rec;
        while (ferry_log_ring_peek(&lg->rings[i], &rec)) {
            ferry_log_ring_consume(&lg->rings[i], &rec);
            atomic_fetch_add(&lg->writer_dropped, 1);
        }
    }
    for (unsigned i = 0; i < FERRY_LOG_NSINKS; i++) {
        struct ferry_log_sink *s = &lg->sinks[i];
        atomic_fetch_add(&lg->writer_dropped, count_lines(s->batch, s->blen));
        s->blen = 0;
        if (s->remote)
            ferry_log_remote_discard(s->remote);
    }
}

static void *writer_main(void *arg)
{
    struct ferry_logger *lg = arg;
    uint64_t give_up = 0;
    for (;;) {
        if (atomic_exchange(&lg->reopen, false))
            reopen_files(lg);
        bool moved = drain(lg);
        report_dropped(lg);
        int stuck = flush_all(lg);
        if (atomic_load(&lg->stop)) {
            uint64_t now = ac_clock_now_ms();
            if (stuck < 0 && rings_empty(lg))
                break;
            if (give_up == 0)
                give_up = now + STOP_FLUSH_MS;
            if (now >= give_up) {
                discard_all(lg);
                break;
            }
        }
        if (stuck >= 0) {
            struct pollfd p = {.fd = stuck, .events = POLLOUT};
            if (poll(&p, 1, 50) < 0 && errno != EINTR)
                nap_ms(50);
        } else if (moved) {
            if (!atomic_load(&lg->stop))
                nap_ms(BUSY_NAP_MS);
        } else {
            idle_wait(lg, IDLE_WAIT_MS);
        }
    }
    return NULL;
}

/* ---- the producers' side ---- */

static void wake_writer(struct ferry_logger *lg)
{
    /* Pairs with idle_wait: either the writer sees our ring's new head
     * before sleeping, or we see it sleeping (both seq_cst). */
    if (!atomic_load(&lg->sleeping))
        return;
    pthread_mutex_lock(&lg->lock);
    pthread_cond_signal(&lg->cv);
    pthread_mutex_unlock(&lg->lock);
}

void ferry_logger_vlog(struct ferry_logger *lg, unsigned ring, enum ferry_log_sink_id sink,
                       enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap)
{
    const struct ferry_log_style *st = &sink_of(lg, sink)->style;
    char line[FERRY_LOG_LINE_MAX];
    size_t n = ferry_log_vformat(line, sizeof(line), st, ferry_log_realtime_ms(), lvl, msg,
                                 kv_fmt, ap);
    if (ring >= lg->nworkers) {
        pthread_mutex_lock(&lg->other_lock);
        ferry_log_ring_push(&lg->rings[lg->nworkers], sink, (unsigned)lvl, line, n);
        pthread_mutex_unlock(&lg->other_lock);
    } else {
        ferry_log_ring_push(&lg->rings[ring], sink, (unsigned)lvl, line, n);
    }
    wake_writer(lg);
}

void ferry_logger_log(struct ferry_logger *lg, unsigned ring, enum ferry_log_sink_id sink,
                      enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
{
    va_list ap;
    va_start(ap, kv_fmt);
    ferry_logger_vlog(lg, ring, sink, lvl, msg, kv_fmt, ap);
    va_end(ap);
}

/* ---- life ---- */

static int start_error(char *err, size_t errlen, const char *config_path, int line,
                       const char *what, const char *path)
{
    snprintf(err, errlen, "%s:%d: cannot open %s %s: %s", config_path, line, what, path,
             strerror(errno));
    return -1;
}

int ferry_logger_start(struct ferry_logger *lg, const struct ferry_global *g,
                       const char *config_path, unsigned nworkers, char *err, size_t errlen)
{
    memset(lg, 0, sizeof(*lg));
    atomic_init(&lg->level, (int)g->log_level);
    lg->nworkers = nworkers;
    lg->pid = getpid();
    for (unsigned i = 0; i < FERRY_LOG_NSINKS; i++)
        lg->sinks[i].fd = -1;
    bool remote = g->log_target == FERRY_LOG_TO_UDP || g->log_target == FERRY_LOG_TO_TCP;
    if (sink_open(&lg->sinks[FERRY_LOG_SINK_MAIN], g->log_target, g->log_path, g->log_format) != 0 ||
        (remote && remote_open(lg, &lg->sinks[FERRY_LOG_SINK_MAIN], g) != 0)) {
        int e = errno;
        sink_close(&lg->sinks[FERRY_LOG_SINK_MAIN]);
        errno = e;
        return start_error(err, errlen, config_path, g->log_line,
                           g->log_target == FERRY_LOG_TO_SYSLOG ? "syslog socket"
                           : remote ? "remote syslog" : "log file",
                           g->log_target == FERRY_LOG_TO_SYSLOG ? SYSLOG_PATH
                           : remote ? g->log_addr.text : g->log_path);
    }
    if (g->access_log_path[0]) {
        if (sink_open(&lg->sinks[FERRY_LOG_SINK_ACCESS], FERRY_LOG_TO_FILE, g->access_log_path,
                      g->log_format) != 0) {
            int e = errno;
            sink_close(&lg->sinks[FERRY_LOG_SINK_ACCESS]);
            sink_close(&lg->sinks[FERRY_LOG_SINK_MAIN]);
            errno = e;
            return start_error(err, errlen, config_path, g->access_log_line, "access log file",
                               g->access_log_path);
        }
        lg->access_own = true;
    }
    lg->rings = calloc(nworkers + 1, sizeof(*lg->rings));
    bool ok = lg->rings != NULL;
    for (unsigned i = 0; ok && i <= nworkers; i++)
        ok = ferry_log_ring_init(&lg->rings[i], RING_SIZE) == 0;
    pthread_mutex_init(&lg->other_lock, NULL);
    pthread_mutex_init(&lg->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lg->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (ok && pthread_create(&lg->thread, NULL, writer_main, lg) == 0) {
        lg->running = true;
        return 0;
    }
    snprintf(err, errlen, "%s: cannot start the log writer: out of resources", config_path);
    lg->running = true; /* let stop free what was made */
    lg->thread = pthread_self();
    ferry_logger_stop(lg);
    return -1;
}

void ferry_logger_stop(struct ferry_logger *lg)
{
    if (!lg->running)
        return;
    if (!pthread_equal(lg->thread, pthread_self())) {
        pthread_mutex_lock(&lg->lock);
        atomic_store(&lg->stop, true);
        pthread_cond_signal(&lg->cv);
        pthread_mutex_unlock(&lg->lock);
        pthread_join(lg->thread, NULL);
    }
    lg->running = false;
    for (unsigned i = 0; lg->rings && i <= lg->nworkers; i++)
        ferry_log_ring_destroy(&lg->rings[i]);
    free(lg->rings);
    lg->rings = NULL;
    for (unsigned i = 0; i < FERRY_LOG_NSINKS; i++)
        sink_close(&lg->sinks[i]);
    pthread_mutex_destroy(&lg->other_lock);
    pthread_mutex_destroy(&lg->lock);
    pthread_cond_destroy(&lg->cv);
}

bool ferry_logger_running(const struct ferry_logger *lg) { return lg->running; }

void ferry_logger_set_level(struct ferry_logger *lg, enum ferry_log_level lvl)
{
    atomic_store_explicit(&lg->level, (int)lvl, memory_order_relaxed);
}

bool ferry_logger_enabled(struct ferry_logger *lg, enum ferry_log_level lvl)
{
    return (int)lvl <= atomic_load_explicit(&lg->level, memory_order_relaxed);
}

void ferry_logger_reopen(struct ferry_logger *lg)
{
    if (!lg->running)
        return;
    pthread_mutex_lock(&lg->lock);
    atomic_store(&lg->reopen, true);
    pthread_cond_signal(&lg->cv);
    pthread_mutex_unlock(&lg->lock);
}

uint64_t ferry_logger_dropped(struct ferry_logger *lg)
{
    return lg->running ? ring_dropped(lg) : 0;
}

/* ferryd: the logger, where log lines go (ferryd(8) LOGS: `log`,
 * `log_format`, `access_log`, SIGUSR1).
 *
 * One per daemon (struct ferry_daemon.log). Each worker formats its lines
 * into its own ring (log_ring.h); one writer thread drains every ring into
 * the sinks: stderr, syslog (/dev/log), a remote syslog server (log_remote.h)
 * or a file, and optionally a file of
 * the access log's own. The writer never lets a sink block a worker: it
 * writes without blocking, and while a sink cannot take more the rings fill
 * and further lines are dropped and counted (ferry_logger_dropped, shown in
 * `show info` and the metrics). Threads that are not workers share one more
 * ring under a mutex.
 *
 * The writer sleeps when every ring is empty; a producer wakes it only then
 * (one mutex + signal while idle, nothing while it is busy), and while busy
 * it drains every couple of milliseconds so many lines cost one write.
 */
#ifndef FERRY_LOG_WRITER_H
#define FERRY_LOG_WRITER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry_config.h"
#include "log/format.h"
#include "log/log_remote.h"
#include "log/log_ring.h"

enum ferry_log_sink_id { FERRY_LOG_SINK_MAIN, FERRY_LOG_SINK_ACCESS, FERRY_LOG_NSINKS };

struct ferry_log_sink {
    enum ferry_log_target target;
    int fd;            /* -1: none */
    bool own_fd;       /* close it (not the inherited stderr) */
    bool socket;       /* send(MSG_DONTWAIT) instead of write */
    struct ferry_log_style style;
    char path[FERRY_PATH_MAX];
    char *batch;       /* lines waiting for the stream */
    size_t blen;
    uint64_t retry_ms; /* syslog: when to try connecting again */
    struct ferry_log_remote *remote; /* udp:// or tcp://: the remote syslog server */
};

struct ferry_logger {
    bool running;
    _Atomic int level;
    unsigned nworkers;
    struct ferry_log_ring *rings; /* [nworkers + 1]; the last: other threads */
    pthread_mutex_t other_lock;   /* producers of the last ring */
    struct ferry_log_sink sinks[FERRY_LOG_NSINKS];
    bool access_own;              /* access lines go to sinks[ACCESS] */
    pid_t pid;

    pthread_t thread;
    pthread_mutex_t lock; /* with cv: the writer's sleep */
    pthread_cond_t cv;
    _Atomic bool sleeping, stop, reopen;
    _Atomic uint64_t writer_dropped; /* lines the writer had to throw away */
    uint64_t dropped_reported;
    uint64_t dropped_report_ms;
};

/* Opens the sinks `g` names and starts the writer. On failure returns -1
 * with "FILE:LINE: message" style text in err (the key's line). */
int ferry_logger_start(struct ferry_logger *lg, const struct ferry_global *g,
                       const char *config_path, unsigned nworkers, char *err, size_t errlen);
/* Writes what the rings hold (for at most about 2 s if a sink is stuck),
 * stops the writer and closes the sinks. Producers must have stopped. */
void ferry_logger_stop(struct ferry_logger *lg);

bool ferry_logger_running(const struct ferry_logger *lg);
void ferry_logger_set_level(struct ferry_logger *lg, enum ferry_log_level lvl);
bool ferry_logger_enabled(struct ferry_logger *lg, enum ferry_log_level lvl);

/* Formats a line for `sink` and pushes it into ring `ring` (a worker's index,
 * or nworkers from any other thread). Does not check the level. */
void ferry_logger_vlog(struct ferry_logger *lg, unsigned ring, enum ferry_log_sink_id sink,
                       enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap);
void ferry_logger_log(struct ferry_logger *lg, unsigned ring, enum ferry_log_sink_id sink,
                      enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* SIGUSR1: reopen the log files (the writer does it on its thread). */
void ferry_logger_reopen(struct ferry_logger *lg);

/* Lines dropped since start because a sink could not keep up. */
uint64_t ferry_logger_dropped(struct ferry_logger *lg);

#endif

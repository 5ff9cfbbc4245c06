/* ferryd: the log front end: a line from any thread to its logger (see log.h). */
#include <errno.h>
#include <stdarg.h>
#include <unistd.h>

#include "asynccore/runtime.h"
#include "log/log.h"
#include "log/log_writer.h"

/* The logger of the daemon whose worker runs on this thread, or NULL. */
static struct ferry_logger *current_logger(unsigned *ring)
{
    struct ac_worker *w = ac_worker_current();
    const struct ferry_log_seat *seat = w ? ac_worker_data(w) : NULL;
    if (!seat || !seat->logger || !ferry_logger_running(seat->logger))
        return NULL;
    *ring = seat->ring;
    return seat->logger;
}

bool ferry_log_enabled(enum ferry_log_level lvl)
{
    unsigned ring;
    struct ferry_logger *lg = current_logger(&ring);
    return lg ? ferry_logger_enabled(lg, lvl) : lvl <= FERRY_LOG_INFO;
}

/* No logger to hand the line to: write it to stderr now. */
static void vlog_stderr(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap)
{
    if (lvl > FERRY_LOG_INFO)
        return;
    struct ferry_log_style st = {FERRY_LOG_LOGFMT, ferry_log_stderr_prefix()};
    char line[FERRY_LOG_LINE_MAX];
    size_t len = ferry_log_vformat(line, sizeof(line), &st, ferry_log_realtime_ms(), lvl, msg,
                                   kv_fmt, ap);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void ferry_vlog(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap)
{
    unsigned ring;
    struct ferry_logger *lg = current_logger(&ring);
    if (lg) {
        if (ferry_logger_enabled(lg, lvl))
            ferry_logger_vlog(lg, ring, FERRY_LOG_SINK_MAIN, lvl, msg, kv_fmt, ap);
    } else {
        vlog_stderr(lvl, msg, kv_fmt, ap);
    }
}

void ferry_log(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
{
    va_list ap;
    va_start(ap, kv_fmt);
    ferry_vlog(lvl, msg, kv_fmt, ap);
    va_end(ap);
}

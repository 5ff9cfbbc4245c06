/* ferryd: log lines (ferryd(8) LOGS).
 *
 * Every event is one line, `level=LEVEL msg=WORDS key=value ...` (logfmt), or
 * the same keys as one JSON object. Callers write
 *
 *     ferry_log(FERRY_LOG_WARN, "server_down", "server=%s/%s reason=%s", b, s, why);
 *
 * The key=value part is a printf format whose pairs ferry_log takes apart:
 * each value (everything between `key=` and the next space of the format,
 * or between quotes when the format quotes it) is formatted, then escaped as
 * a whole, so no argument can break the line or forge a key, whatever it
 * holds. A value that is a single integer conversion is a JSON number; every
 * other value is a string. A key written `?key=` is optional: the pair is
 * left out when its value comes out empty. msg is short fixed words joined
 * by '_'.
 *
 * Lines are formatted on the calling thread and handed to the daemon's
 * logger (log_writer.h): on an event-loop thread into that worker's ring,
 * which one writer thread drains, so a slow sink never blocks a worker. A
 * thread that is not a worker, or a process without a running logger
 * (ferryd -t, unit tests), writes the line to stderr itself.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "log/format.h"

struct ferry_logger;

/* Where an event-loop thread's lines go. The data an asynccore worker carries
 * (ac_worker_data) starts with a seat, so this wing finds the thread's logger
 * without knowing the daemon's types (the daemon's struct ferry_worker has it
 * as its first member). */
struct ferry_log_seat {
    struct ferry_logger *logger; /* NULL: write to stderr */
    unsigned ring;               /* the worker's ring in the logger */
};

/* Logs on behalf of the calling thread (see above), if lvl is enabled. kv_fmt
 * may be NULL or "" for an event without pairs. */
void ferry_log(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ferry_vlog(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap);

/* True when events of this level are written (to skip costly formatting). */
bool ferry_log_enabled(enum ferry_log_level lvl);

#endif

/* ferryd: log lines (SPEC.md section 5).
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
#include <stddef.h>
#include <stdint.h>

#include "ferry_config.h"

/* Longest line, prefix and '\n' included (longer values are cut, still
 * escaped and quoted whole). */
#define FERRY_LOG_LINE_MAX 4096

enum ferry_log_prefix {
    FERRY_LOG_PREFIX_TS,       /* `ts=2026-12-01T02:06:51.123Z ` (RFC 3339, UTC) */
    FERRY_LOG_PREFIX_PRIORITY, /* `<6>`: stderr is the systemd journal */
    FERRY_LOG_PREFIX_NONE,
};

struct ferry_log_style {
    enum ferry_log_format format;
    enum ferry_log_prefix prefix;
};

/* "error", "warn", "info", "debug". */
const char *ferry_log_level_name(enum ferry_log_level lvl);
/* The syslog / journal priority of a level: 3, 4, 6, 7. */
int ferry_log_priority(enum ferry_log_level lvl);

/* Formats one line (with its final '\n') into buf. realtime_ms is the wall
 * clock for `ts=` (milliseconds since the epoch). Returns its length (< cap);
 * cap must be at least 64. */
size_t ferry_log_vformat(char *buf, size_t cap, const struct ferry_log_style *st,
                         int64_t realtime_ms, enum ferry_log_level lvl, const char *msg,
                         const char *kv_fmt, va_list ap);

/* Logs on behalf of the calling thread (see above), if lvl is enabled. kv_fmt
 * may be NULL or "" for an event without pairs. */
void ferry_log(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ferry_vlog(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, va_list ap);

/* True when events of this level are written (to skip costly formatting). */
bool ferry_log_enabled(enum ferry_log_level lvl);

/* The style of lines written to stderr: a priority prefix when stderr is the
 * journal ($JOURNAL_STREAM names its device and inode), else `ts=`. */
enum ferry_log_prefix ferry_log_stderr_prefix(void);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t ferry_log_realtime_ms(void);

#endif

/* ferryd: formatting one log line, logfmt or JSON (see log.h for the
 * key=value format callers write and how values are escaped).
 */
#ifndef FERRY_LOG_FORMAT_H
#define FERRY_LOG_FORMAT_H

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

/* The style of lines written to stderr: a priority prefix when stderr is the
 * journal ($JOURNAL_STREAM names its device and inode), else `ts=`. */
enum ferry_log_prefix ferry_log_stderr_prefix(void);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t ferry_log_realtime_ms(void);

#endif

/* ferryd: logfmt logging to stderr (SPEC.md section 5).
 *
 * Every event is one line, `LEVEL message key=value ...`, written with a
 * single write(2) so lines from several worker threads never interleave
 * (a line is at most FERRY_LOG_LINE_MAX bytes, under PIPE_BUF, so even a pipe
 * to journald receives it atomically; longer lines are cut and end in "...").
 * The key=value part is printf-formatted by the caller; values that may hold
 * spaces or quotes go through ferry_log_quote(). Control characters anywhere
 * in the line are escaped so an event can never span two lines.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "ferry_config.h"

#define FERRY_LOG_LINE_MAX 4096

void ferry_log_set_level(enum ferry_log_level lvl);
enum ferry_log_level ferry_log_get_level(void);
/* True when events of this level are written (use to skip costly formatting). */
bool ferry_log_enabled(enum ferry_log_level lvl);

/* "error", "warn", "info", "debug". */
const char *ferry_log_level_name(enum ferry_log_level lvl);

/* Writes `LEVEL msg kv...` to stderr if the level is enabled. kv_fmt may be
 * NULL or "" for an event without pairs. */
void ferry_log(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats the line (with its final '\n') into buf without writing it.
 * Returns its length (< cap). cap must be at least 8. Used by ferry_log and tests. */
size_t ferry_log_vformat(char *buf, size_t cap, enum ferry_log_level lvl, const char *msg,
                         const char *kv_fmt, va_list ap);

/* Renders a value logfmt-style into buf: as is when it is non-empty and
 * holds only printable characters other than space, '"' and '='; otherwise
 * in double quotes with '"' and '\' backslash-escaped, \n \r \t as such and
 * other control bytes as \xHH. Always NUL-terminates (a value too long for
 * buf is cut, keeping the closing quote and a valid escape). Returns buf. */
char *ferry_log_quote(const char *s, char *buf, size_t cap);

#endif

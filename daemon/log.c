/* ferryd: logfmt logging to stderr (see log.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* The one piece of process-wide mutable state the daemon allows: the log
 * level is a property of the process's stderr, read on every event by every
 * worker thread and changed only at start-up and reload. An atomic int keeps
 * those reads lock-free and race-free; passing a logger object through every
 * future would buy nothing. */
static _Atomic int log_level = FERRY_LOG_INFO;

void ferry_log_set_level(enum ferry_log_level lvl)
{
    atomic_store_explicit(&log_level, (int)lvl, memory_order_relaxed);
}

enum ferry_log_level ferry_log_get_level(void)
{
    return (enum ferry_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool ferry_log_enabled(enum ferry_log_level lvl)
{
    return (int)lvl <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *ferry_log_level_name(enum ferry_log_level lvl)
{
    switch (lvl) {
    case FERRY_LOG_ERROR: return "error";
    case FERRY_LOG_WARN: return "warn";
    case FERRY_LOG_INFO: return "info";
    case FERRY_LOG_DEBUG: return "debug";
    }
    return "info";
}

static bool plain_char(unsigned char ch)
{
    return ch > ' ' && ch < 0x7f && ch != '"' && ch != '=';
}

/* The escape for one byte inside quotes, in out (at most 5 bytes). */
static size_t escape_char(unsigned char ch, char out[5])
{
    static const char hex[] = "0123456789abcdef";
    switch (ch) {
    case '"': memcpy(out, "\\\"", 2); return 2;
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    default: break;
    }
    if (ch < ' ' || ch == 0x7f) {
        out[0] = '\\';
        out[1] = 'x';
        out[2] = hex[ch >> 4];
        out[3] = hex[ch & 15];
        return 4;
    }
    out[0] = (char)ch;
    return 1;
}

char *ferry_log_quote(const char *s, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    if (!s)
        s = "";
    bool plain = s[0] != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        plain = plain_char(*p);
    size_t len = strlen(s);
    if (plain && len < cap) {
        memcpy(buf, s, len + 1);
        return buf;
    }
    if (plain) { /* cut, still plain */
        memcpy(buf, s, cap - 1);
        buf[cap - 1] = '\0';
        return buf;
    }
    if (cap < 3) {
        buf[0] = '\0';
        return buf;
    }
    size_t o = 0;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[5];
        size_t n = escape_char(*p, e);
        if (o + n + 2 > cap) /* room for the closing quote and NUL */
            break;
        memcpy(buf + o, e, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* Replaces control characters in buf[from..len) by spaces: the caller's
 * values must not break the one-event-per-line rule. */
static void flatten(char *buf, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch < ' ' || ch == 0x7f)
            buf[i] = ' ';
    }
}

size_t ferry_log_vformat(char *buf, size_t cap, enum ferry_log_level lvl, const char *msg,
                         const char *kv_fmt, va_list ap)
{
    /* Leave room for "...\n" and the NUL. */
    size_t room = cap - 5;
    int n = snprintf(buf, room + 1, "%s %s", ferry_log_level_name(lvl), msg ? msg : "");
    size_t len = n < 0 ? 0 : (size_t)n;
    bool cut = len > room;
    if (cut)
        len = room;
    if (!cut && kv_fmt && kv_fmt[0]) {
        buf[len++] = ' ';
        n = len <= room ? vsnprintf(buf + len, room + 1 - len, kv_fmt, ap) : 0;
        size_t add = n < 0 ? 0 : (size_t)n;
        if (len + add > room) {
            cut = true;
            len = room;
        } else {
            len += add;
        }
    }
    flatten(buf, 0, len);
    if (cut) {
        memcpy(buf + len, "...", 3);
        len += 3;
    }
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

void ferry_log(enum ferry_log_level lvl, const char *msg, const char *kv_fmt, ...)
{
    if (!ferry_log_enabled(lvl))
        return;
    char line[FERRY_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, kv_fmt);
    size_t len = ferry_log_vformat(line, sizeof(line), lvl, msg, kv_fmt, ap);
    va_end(ap);
    /* One write per line; a short write (a full pipe) continues where it
     * stopped, and a failing stderr is ignored: there is nowhere to report it. */
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

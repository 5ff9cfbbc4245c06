/* ferryd: formatting log lines, logfmt or JSON (see format.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/format.h"

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

int ferry_log_priority(enum ferry_log_level lvl)
{
    switch (lvl) {
    case FERRY_LOG_ERROR: return 3;
    case FERRY_LOG_WARN: return 4;
    case FERRY_LOG_INFO: return 6;
    case FERRY_LOG_DEBUG: return 7;
    }
    return 6;
}

int64_t ferry_log_realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum ferry_log_prefix ferry_log_stderr_prefix(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        return FERRY_LOG_PREFIX_PRIORITY;
    return FERRY_LOG_PREFIX_TS;
}

/* ---- the output buffer: never past `limit`, which leaves room for the end ---- */

struct out {
    char *buf;
    size_t len, limit;
    bool cut;
};

static bool put(struct out *o, const char *s, size_t n)
{
    if (o->len + n > o->limit) {
        o->cut = true;
        return false;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return true;
}

static bool puts_(struct out *o, const char *s) { return put(o, s, strlen(s)); }

/* ---- escaping ---- */

static const char hexd[] = "0123456789abcdef";

/* Needs quotes in logfmt: empty, space, '"', '=', control or non-ASCII bytes. */
static bool logfmt_plain(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '=')
            return false;
    }
    return true;
}

/* The escape of one byte inside logfmt quotes (ferryd(8) LOGS: \" \\ \n \t \xHH). */
static size_t logfmt_escape(unsigned char ch, char e[4])
{
    if (ch == '"' || ch == '\\') {
        e[0] = '\\';
        e[1] = (char)ch;
        return 2;
    }
    if (ch == '\n' || ch == '\t') {
        e[0] = '\\';
        e[1] = ch == '\n' ? 'n' : 't';
        return 2;
    }
    if (ch < ' ' || ch >= 0x7f) {
        e[0] = '\\';
        e[1] = 'x';
        e[2] = hexd[ch >> 4];
        e[3] = hexd[ch & 15];
        return 4;
    }
    e[0] = (char)ch;
    return 1;
}

/* The escape of one byte inside a JSON string; output stays ASCII. */
static size_t json_escape(unsigned char ch, char e[6])
{
    if (ch == '"' || ch == '\\') {
        e[0] = '\\';
        e[1] = (char)ch;
        return 2;
    }
    if (ch == '\n' || ch == '\t' || ch == '\r') {
        e[0] = '\\';
        e[1] = ch == '\n' ? 'n' : ch == '\t' ? 't' : 'r';
        return 2;
    }
    if (ch < ' ' || ch >= 0x7f) {
        memcpy(e, "\\u00", 4);
        e[4] = hexd[ch >> 4];
        e[5] = hexd[ch & 15];
        return 6;
    }
    e[0] = (char)ch;
    return 1;
}

/* Writes s[0..n) quoted and escaped; when it does not fit whole it is cut at
 * an escape boundary, and the closing quote is always written. */
static void put_quoted(struct out *o, const char *s, size_t n, bool json)
{
    if (o->len + 2 > o->limit) {
        o->cut = true;
        return;
    }
    o->buf[o->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        char e[6];
        size_t k = json ? json_escape((unsigned char)s[i], e) : logfmt_escape((unsigned char)s[i], e);
        if (o->len + k + 1 > o->limit) {
            o->cut = true;
            break;
        }
        memcpy(o->buf + o->len, e, k);
        o->len += k;
    }
    o->buf[o->len++] = '"';
}

static void put_value(struct out *o, const struct ferry_log_style *st, const char *v, size_t n,
                      bool number)
{
    if (st->format == FERRY_LOG_JSON) {
        if (number && n > 0)
            put(o, v, n);
        else
            put_quoted(o, v, n, true);
        return;
    }
    if (logfmt_plain(v, n)) {
        size_t room = o->limit - o->len;
        if (n > room) {
            n = room;
            o->cut = true;
        }
        put(o, v, n);
        return;
    }
    put_quoted(o, v, n, false);
}

/* A key: letters, digits, '_', '.', '-' (anything else becomes '_'). */
static void put_key(struct out *o, const struct ferry_log_style *st, const char *k, size_t n)
{
    char key[64];
    if (n >= sizeof(key))
        n = sizeof(key) - 1;
    for (size_t i = 0; i < n; i++) {
        char ch = k[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '.' || ch == '-';
        key[i] = ok ? ch : '_';
    }
    if (st->format == FERRY_LOG_JSON) {
        put(o, ",\"", 2);
        put(o, key, n);
        put(o, "\":", 2);
    } else {
        put(o, " ", 1);
        put(o, key, n);
        put(o, "=", 1);
    }
}

/* ---- one printf conversion, taken apart so each value is escaped whole ---- */

struct conv {
    char spec[32]; /* "%" flags width precision length conversion, '*' resolved */
    char len[3];   /* "", "hh", "h", "l", "ll", "z", "j", "t", "L" */
    char c;        /* conversion character; 0: not a conversion */
};

/* Parses the conversion at f (just after '%'), resolving '*' from ap.
 * Returns the number of format characters used. */
static size_t parse_conv(const char *f, struct conv *cv, va_list *ap)
{
    size_t i = 0, o = 0;
    cv->spec[o++] = '%';
    cv->len[0] = '\0';
    cv->c = 0;
    while (f[i] && strchr("-+ #0", f[i]) && o < 8)
        cv->spec[o++] = f[i++];
    for (int part = 0; part < 2; part++) {
        if (part == 1) {
            if (f[i] != '.')
                break;
            cv->spec[o++] = f[i++];
        }
        if (f[i] == '*') {
            o += (size_t)snprintf(cv->spec + o, 12, "%d", va_arg(*ap, int));
            i++;
        } else {
            while (f[i] >= '0' && f[i] <= '9' && o < 24)
                cv->spec[o++] = f[i++];
        }
    }
    size_t l = 0;
    while (f[i] && strchr("hljztL", f[i]) && l < 2) {
        cv->len[l++] = f[i];
        cv->spec[o++] = f[i++];
    }
    cv->len[l] = '\0';
    if (!f[i])
        return i;
    cv->c = f[i];
    cv->spec[o++] = f[i++];
    cv->spec[o] = '\0';
    return i;
}

static bool is_len(const struct conv *cv, const char *l) { return strcmp(cv->len, l) == 0; }

/* Formats one conversion's argument into dst (cap > 0). Returns its length. */
static size_t format_conv(const struct conv *cv, va_list *ap, char *dst, size_t cap)
{
    int n = 0;
    switch (cv->c) {
    case 'd': case 'i':
        if (is_len(cv, "l")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, long));
        else if (is_len(cv, "ll")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, long long));
        else if (is_len(cv, "z")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, ssize_t));
        else if (is_len(cv, "j")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, intmax_t));
        else if (is_len(cv, "t")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, ptrdiff_t));
        else n = snprintf(dst, cap, cv->spec, va_arg(*ap, int));
        break;
    case 'u': case 'o': case 'x': case 'X':
        if (is_len(cv, "l")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, unsigned long));
        else if (is_len(cv, "ll")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, unsigned long long));
        else if (is_len(cv, "z")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, size_t));
        else if (is_len(cv, "j")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, uintmax_t));
        else if (is_len(cv, "t")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, ptrdiff_t));
        else n = snprintf(dst, cap, cv->spec, va_arg(*ap, unsigned));
        break;
    case 'c': n = snprintf(dst, cap, cv->spec, va_arg(*ap, int)); break;
    case 's': {
        const char *s = va_arg(*ap, const char *);
        n = snprintf(dst, cap, cv->spec, s ? s : "");
        break;
    }
    case 'p': n = snprintf(dst, cap, cv->spec, va_arg(*ap, void *)); break;
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (is_len(cv, "L")) n = snprintf(dst, cap, cv->spec, va_arg(*ap, long double));
        else n = snprintf(dst, cap, cv->spec, va_arg(*ap, double));
        break;
    case 'n': (void)va_arg(*ap, void *); break;
    case '%': n = snprintf(dst, cap, "%%"); break;
    default: n = snprintf(dst, cap, "%s", cv->spec); break;
    }
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Expands one value template (a slice of the format) into raw. *number is
 * set when it is exactly one integer or floating conversion. */
static size_t expand_value(const char *t, size_t tn, va_list *ap, char *raw, size_t cap,
                           bool *number)
{
    size_t len = 0, convs = 0, lits = 0;
    bool numeric = false;
    for (size_t i = 0; i < tn;) {
        if (t[i] != '%' || i + 1 >= tn) {
            if (t[i] == '\\' && i + 1 < tn && t[i + 1] == '"')
                i++; /* \" inside a quoted template is a quote */
            if (len + 1 < cap)
                raw[len++] = t[i];
            lits++;
            i++;
            continue;
        }
        struct conv cv;
        i += 1 + parse_conv(t + i + 1, &cv, ap);
        if (cv.c == '%') {
            if (len + 1 < cap)
                raw[len++] = '%';
            lits++;
            continue;
        }
        convs++;
        numeric = cv.c && strchr("diufFeEgG", cv.c) != NULL;
        if (len + 1 < cap)
            len += format_conv(&cv, ap, raw + len, cap - len);
    }
    raw[len] = '\0';
    *number = convs == 1 && lits == 0 && numeric && len > 0 &&
              strspn(raw, "-+0123456789.eE") == len && strcmp(raw, "-") != 0;
    return len;
}

static void put_prefix(struct out *o, const struct ferry_log_style *st, int64_t ms,
                       enum ferry_log_level lvl)
{
    char b[48];
    if (st->prefix == FERRY_LOG_PREFIX_PRIORITY) {
        snprintf(b, sizeof(b), "<%d>", ferry_log_priority(lvl));
        puts_(o, b);
    }
    if (st->format == FERRY_LOG_JSON)
        put(o, "{", 1);
    if (st->prefix != FERRY_LOG_PREFIX_TS)
        return;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    if (st->format == FERRY_LOG_JSON) {
        put(o, "\"ts\":\"", 6);
        puts_(o, b);
        put(o, "\",", 2);
    } else {
        put(o, "ts=", 3);
        puts_(o, b);
        put(o, " ", 1);
    }
}

/* level and msg; msg keeps letters, digits and '_' (others become '_'). */
static void put_head(struct out *o, const struct ferry_log_style *st, enum ferry_log_level lvl,
                     const char *msg)
{
    char m[64];
    size_t n = 0;
    for (const char *p = msg ? msg : ""; *p && n < sizeof(m) - 1; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        m[n++] = ok ? ch : '_';
    }
    if (n == 0)
        m[n++] = '-';
    m[n] = '\0';
    if (st->format == FERRY_LOG_JSON) {
        puts_(o, "\"level\":\"");
        puts_(o, ferry_log_level_name(lvl));
        puts_(o, "\",\"msg\":\"");
        puts_(o, m);
        put(o, "\"", 1);
    } else {
        puts_(o, "level=");
        puts_(o, ferry_log_level_name(lvl));
        puts_(o, " msg=");
        puts_(o, m);
    }
}

/* Walks `key=value key="value" ...`, expanding and writing each pair. */
static void put_pairs(struct out *o, const struct ferry_log_style *st, const char *f, va_list *ap)
{
    char raw[FERRY_LOG_LINE_MAX];
    while (f && *f) {
        while (*f == ' ')
            f++;
        if (!*f)
            break;
        const char *k = f;
        while (*f && *f != '=' && *f != ' ')
            f++;
        size_t kn = (size_t)(f - k);
        const char *t = k;
        size_t tn = kn;
        bool pair = *f == '=';
        if (pair) {
            f++;
            if (*f == '"') {
                t = ++f;
                while (*f && !(*f == '"' && f[-1] != '\\'))
                    f++;
                tn = (size_t)(f - t);
                if (*f == '"')
                    f++;
            } else {
                t = f;
                while (*f && *f != ' ')
                    f++;
                tn = (size_t)(f - t);
            }
        }
        bool number;
        size_t rn = expand_value(t, tn, ap, raw, sizeof(raw), &number);
        if (o->cut || !pair)
            continue; /* consume the arguments, write nothing */
        if (kn > 0 && k[0] == '?') { /* optional: left out when empty */
            k++;
            kn--;
            if (rn == 0)
                continue;
        }
        size_t before = o->len;
        put_key(o, st, k, kn);
        if (o->cut) {
            o->len = before;
            continue;
        }
        put_value(o, st, raw, rn, number);
    }
}

size_t ferry_log_vformat(char *buf, size_t cap, const struct ferry_log_style *st,
                         int64_t realtime_ms, enum ferry_log_level lvl, const char *msg,
                         const char *kv_fmt, va_list ap)
{
    /* Reserve the closing "}", the cut marker, "\n" and the NUL. */
    struct out o = {buf, 0, cap - 24, false};
    put_prefix(&o, st, realtime_ms, lvl);
    put_head(&o, st, lvl, msg);
    va_list cp;
    va_copy(cp, ap);
    put_pairs(&o, st, kv_fmt, &cp);
    va_end(cp);
    o.limit = cap - 1;
    if (o.cut)
        puts_(&o, st->format == FERRY_LOG_JSON ? ",\"truncated\":true" : " truncated=true");
    if (st->format == FERRY_LOG_JSON)
        put(&o, "}", 1);
    put(&o, "\n", 1);
    buf[o.len] = '\0';
    return o.len;
}

/* ferryd: a small growable output buffer (see buf.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void ferry_buf_init(struct ferry_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void ferry_buf_free(struct ferry_buf *b)
{
    free(b->data);
    ferry_buf_init(b);
}

void ferry_buf_reset(struct ferry_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for n more bytes plus the terminating NUL. */
static int reserve(struct ferry_buf *b, size_t n)
{
    if (b->oom)
        return -ENOMEM;
    if (n >= SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return -ENOMEM;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n)
{
    if (reserve(b, n) != 0)
        return -ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ferry_buf_puts(struct ferry_buf *b, const char *s)
{
    return ferry_buf_append(b, s, strlen(s));
}

int ferry_buf_printf(struct ferry_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) {
        b->oom = true;
        return -ENOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int ferry_buf_json_str(struct ferry_buf *b, const char *s)
{
    ferry_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': ferry_buf_append(b, "\\\"", 2); break;
        case '\\': ferry_buf_append(b, "\\\\", 2); break;
        case '\n': ferry_buf_append(b, "\\n", 2); break;
        case '\r': ferry_buf_append(b, "\\r", 2); break;
        case '\t': ferry_buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                ferry_buf_printf(b, "\\u%04x", *p);
            else
                ferry_buf_append(b, p, 1);
        }
    }
    return ferry_buf_append(b, "\"", 1);
}

int ferry_buf_text(struct ferry_buf *b, const char *s)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t run = 0;
        while (p[run] >= 0x20 && p[run] < 0x7f)
            run++;
        ferry_buf_append(b, p, run);
        p += run;
        if (!*p)
            break;
        char e[4] = {'\\', 'x', hexd[*p >> 4], hexd[*p & 15]};
        if (*p == '\n' || *p == '\t') {
            e[1] = *p == '\n' ? 'n' : 't';
            ferry_buf_append(b, e, 2);
        } else {
            ferry_buf_append(b, e, 4);
        }
        p++;
    }
    return b->oom ? -ENOMEM : 0;
}

int ferry_buf_prom_label(struct ferry_buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '"': ferry_buf_append(b, "\\\"", 2); break;
        case '\\': ferry_buf_append(b, "\\\\", 2); break;
        case '\n': ferry_buf_append(b, "\\n", 2); break;
        default: ferry_buf_append(b, p, 1);
        }
    }
    return b->oom ? -ENOMEM : 0;
}

/* Error lists: the public "FILE:LINE: message" list, and the loader's
 * pending list that is sorted by line before it is handed out. */
#include "ferry_config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ferry__grow(void *arr, size_t n, size_t size)
{
    void **p = arr;
    /* Capacity doubles at powers of two: n + 1 slots are needed now. */
    if (n != 0 && (n & (n - 1)) != 0)
        return 0;
    size_t cap = n == 0 ? 1 : 2 * n;
    if (cap > SIZE_MAX / size)
        return -ENOMEM;
    void *q = realloc(*p, cap * size);
    if (!q)
        return -ENOMEM;
    *p = q;
    return 0;
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static void add_msg(struct ferry_config_errors *errs, char *msg)
{
    if (!msg)
        return;
    if (ferry__grow(&errs->msgs, errs->n, sizeof(*errs->msgs)) < 0) {
        free(msg);
        return;
    }
    errs->msgs[errs->n++] = msg;
}

void ferry_config_error_add(struct ferry_config_errors *errs, const char *file, int line,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    if (!body)
        return;
    char *msg;
    int rc = line > 0 ? asprintf(&msg, "%s:%d: %s", file, line, body)
                      : asprintf(&msg, "%s: %s", file, body);
    free(body);
    if (rc >= 0)
        add_msg(errs, msg);
}

/* The LINE of "FILE:LINE: message" (0 for "FILE: message"). */
static long msg_line(const char *msg, size_t pathlen)
{
    if (strncmp(msg + pathlen, ":", 1) != 0)
        return 0;
    return strtol(msg + pathlen + 1, NULL, 10);
}

void ferry_config_errors_sort(struct ferry_config_errors *errs, const char *file)
{
    size_t pathlen = strlen(file);
    /* Insertion sort: stable, and the lists are short. */
    for (size_t i = 1; i < errs->n; i++) {
        char *m = errs->msgs[i];
        long line = strncmp(m, file, pathlen) == 0 ? msg_line(m, pathlen) : 0;
        size_t j = i;
        while (j > 0) {
            const char *prev = errs->msgs[j - 1];
            long pl = strncmp(prev, file, pathlen) == 0 ? msg_line(prev, pathlen) : 0;
            if (pl <= line)
                break;
            errs->msgs[j] = errs->msgs[j - 1];
            j--;
        }
        errs->msgs[j] = m;
    }
}

void ferry_config_errors_free(struct ferry_config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

void ferry__err(struct ferry__parse *p, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    if (!msg || ferry__grow(&p->errs, p->nerrs, sizeof(*p->errs)) < 0) {
        free(msg);
        p->oom = true;
        return;
    }
    p->errs[p->nerrs] = (struct ferry__err){.line = line, .seq = p->nerrs, .msg = msg};
    p->nerrs++;
}

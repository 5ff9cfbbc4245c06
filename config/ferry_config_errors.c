/* Error lists: the public "FILE:LINE: message" list, and the loader's
 * pending list that is sorted by line before it is handed out. */
#include "ferry_config_int.h"

#include <errno.h>
#include <limits.h>
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

/* key: the configuration line the message sorts at, -1: read from its text. */
static void add_msg(struct ferry_config_errors *errs, char *msg, long key)
{
    if (!msg)
        return;
    if (ferry__grow(&errs->msgs, errs->n, sizeof(*errs->msgs)) < 0 ||
        ferry__grow(&errs->keys, errs->n, sizeof(*errs->keys)) < 0) {
        free(msg);
        return;
    }
    errs->keys[errs->n] = key;
    errs->msgs[errs->n++] = msg;
}

static void add_formatted(struct ferry_config_errors *errs, const char *file, int line, long key,
                          const char *fmt, va_list ap)
{
    char *body = vformat(fmt, ap);
    if (!body)
        return;
    char *msg;
    int rc = line > 0 ? asprintf(&msg, "%s:%d: %s", file, line, body)
                      : asprintf(&msg, "%s: %s", file, body);
    free(body);
    if (rc >= 0)
        add_msg(errs, msg, key);
}

void ferry_config_error_add(struct ferry_config_errors *errs, const char *file, int line,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_formatted(errs, file, line, -1, fmt, ap);
    va_end(ap);
}

void ferry_config_errors_map(struct ferry_config_errors *errs, const struct ferry_config *cfg)
{
    size_t pathlen = strlen(cfg->path);
    for (size_t i = 0; cfg->nsources > 1 && i < errs->n; i++) {
        const char *m = errs->msgs[i];
        if (strncmp(m, cfg->path, pathlen) != 0 || m[pathlen] != ':')
            continue;
        char *end;
        long line = strtol(m + pathlen + 1, &end, 10);
        if (line <= 0 || line > INT_MAX || strncmp(end, ": ", 2) != 0)
            continue;
        int at;
        const char *file = ferry_config_source_of(cfg, (int)line, &at);
        char *msg;
        if (file == cfg->path || asprintf(&msg, "%s:%d%s", file, at, end) < 0)
            continue;
        free(errs->msgs[i]);
        errs->msgs[i] = msg;
        if (errs->keys)
            errs->keys[i] = line;
    }
}

void ferry_config_error_at(struct ferry_config_errors *errs, const struct ferry_config *cfg,
                           int line, const char *fmt, ...)
{
    int file_line;
    const char *file = ferry_config_source_of(cfg, line, &file_line);
    va_list ap;
    va_start(ap, fmt);
    add_formatted(errs, file, file_line, line > 0 ? line : 0, fmt, ap);
    va_end(ap);
}

/* The LINE of "FILE:LINE: message" (0 for "FILE: message"). */
static long msg_line(const char *msg, size_t pathlen)
{
    if (strncmp(msg + pathlen, ":", 1) != 0)
        return 0;
    return strtol(msg + pathlen + 1, NULL, 10);
}

/* Where message i sorts: its key (ferry_config_error_at), else its LINE
 * when it names `file`, else 0. */
static long sort_key(const struct ferry_config_errors *errs, size_t i, const char *file,
                     size_t pathlen)
{
    if (errs->keys && errs->keys[i] >= 0)
        return errs->keys[i];
    const char *m = errs->msgs[i];
    return strncmp(m, file, pathlen) == 0 ? msg_line(m, pathlen) : 0;
}

void ferry_config_errors_sort(struct ferry_config_errors *errs, const char *file)
{
    size_t pathlen = strlen(file);
    /* Insertion sort: stable, and the lists are short. */
    for (size_t i = 1; i < errs->n; i++) {
        char *m = errs->msgs[i];
        long line = sort_key(errs, i, file, pathlen);
        long key = errs->keys ? errs->keys[i] : -1;
        size_t j = i;
        while (j > 0 && sort_key(errs, j - 1, file, pathlen) > line) {
            errs->msgs[j] = errs->msgs[j - 1];
            if (errs->keys)
                errs->keys[j] = errs->keys[j - 1];
            j--;
        }
        errs->msgs[j] = m;
        if (errs->keys)
            errs->keys[j] = key;
    }
}

void ferry_config_errors_free(struct ferry_config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    free(errs->keys);
    errs->msgs = NULL;
    errs->keys = NULL;
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

void ferry__warn(struct ferry__parse *p, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    if (!msg) {
        p->oom = true;
        return;
    }
    ferry_config_error_at(&p->cfg->warnings, p->cfg, line, "warning: %s", msg);
    free(msg);
}

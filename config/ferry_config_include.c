/* include = GLOB (ferry.ini(5)): the files a configuration includes, and the
 * map from a configuration line back to its file.
 *
 * The main file is read first; then each include line's matches, sorted
 * (glob(3) sorts them), as if their text followed. Their lines are numbered
 * on after the main file's (struct ferry_config_source), so every `line`
 * field keeps working unchanged and errors sort in reading order; messages
 * map a line back to FILE:LINE of the file it is in. A file named by two
 * include lines is read once. A pattern without a wildcard names one file,
 * which must exist; a glob that matches nothing is not an error. */
#include "ferry_config_int.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ferry__include_add(struct ferry__parse *p, const char *v)
{
    char *pattern = ferry__path(p, v); /* relative to the configuration's directory */
    if (!pattern)
        return;
    if (ferry__grow(&p->includes, p->nincludes, sizeof(*p->includes)) < 0 ||
        ferry__grow(&p->include_lines, p->nincludes, sizeof(*p->include_lines)) < 0) {
        free(pattern);
        p->oom = true;
        return;
    }
    p->includes[p->nincludes] = pattern;
    p->include_lines[p->nincludes++] = p->lineno;
}

static bool is_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static bool listed(char **files, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(files[i], path) == 0)
            return true;
    return false;
}

static int append(struct ferry__include_list *l, const char *path, int line)
{
    if (listed(l->files, l->n, path))
        return 0;
    char *copy = strdup(path);
    if (!copy || ferry__grow(&l->files, l->n, sizeof(*l->files)) < 0 ||
        ferry__grow(&l->lines, l->n, sizeof(*l->lines)) < 0) {
        free(copy);
        return -ENOMEM;
    }
    l->lines[l->n] = line;
    l->files[l->n++] = copy;
    return 0;
}

/* glob's error callback: a directory on the way that exists but cannot be
 * read stops the expansion (reported as GLOB_ABORTED); one that does not
 * exist simply matches nothing (an absent conf.d). */
static int glob_error(const char *path, int err)
{
    (void)path;
    return err != ENOENT && err != ENOTDIR;
}

/* One include line into files. */
static int expand(struct ferry__parse *p, size_t k, struct ferry__include_list *l)
{
    const char *pattern = p->includes[k];
    int line = p->include_lines[k];
    if (!is_glob(pattern)) {
        if (access(pattern, R_OK) != 0) {
            ferry__err(p, line, "include %s: %s", pattern, strerror(errno));
            return 0;
        }
        return append(l, pattern, line);
    }
    glob_t g;
    int rc = glob(pattern, 0, glob_error, &g);
    if (rc == GLOB_NOSPACE)
        return -ENOMEM;
    if (rc == GLOB_ABORTED)
        ferry__err(p, line, "include %s: a directory on the way cannot be read", pattern);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
        if (append(l, g.gl_pathv[i], line) < 0) {
            globfree(&g);
            return -ENOMEM;
        }
    }
    if (rc != GLOB_NOMATCH)
        globfree(&g);
    return 0;
}

int ferry__include_files(struct ferry__parse *p, struct ferry__include_list *l)
{
    *l = (struct ferry__include_list){0};
    for (size_t k = 0; k < p->nincludes; k++)
        if (expand(p, k, l) < 0)
            return -ENOMEM;
    return 0;
}

int ferry__source_add(struct ferry_config *cfg, const char *path, int offset)
{
    char *copy = strdup(path);
    if (!copy || ferry__grow(&cfg->sources, cfg->nsources, sizeof(*cfg->sources)) < 0) {
        free(copy);
        return -ENOMEM;
    }
    cfg->sources[cfg->nsources++] = (struct ferry_config_source){.path = copy, .offset = offset};
    return 0;
}

/* The source holding configuration line `line` (> 0). */
static const struct ferry_config_source *source(const struct ferry_config *cfg, int line)
{
    size_t i = cfg->nsources;
    while (i > 1 && cfg->sources[i - 1].offset >= line)
        i--;
    return i > 0 ? &cfg->sources[i - 1] : NULL;
}

const char *ferry_config_source_of(const struct ferry_config *cfg, int line, int *file_line)
{
    *file_line = line;
    const struct ferry_config_source *s = line > 0 && cfg ? source(cfg, line) : NULL;
    if (!s || s == &cfg->sources[0])
        return cfg ? cfg->path : "";
    *file_line = line - s->offset;
    return s->path;
}

const char *ferry__line_ref(const struct ferry_config *cfg, int line, int from, char *buf,
                            size_t size)
{
    int at, unused;
    const char *file = ferry_config_source_of(cfg, line, &at);
    if (file == ferry_config_source_of(cfg, from, &unused))
        snprintf(buf, size, "line %d", at);
    else
        snprintf(buf, size, "%s:%d", file, at);
    return buf;
}

/* Paths named in ferry.ini (ferryd(8)): relative to the directory of the
 * configuration file, never to the working directory (under systemd that is
 * "/"), and always stored absolute so that every message naming the file
 * shows where ferryd really looked.
 *
 * Only "." components and repeated slashes are removed. ".." is kept as
 * written: resolving it by text would be wrong across a symbolic link, and
 * resolving links (realpath) would defeat watching a re-pointed symlink. */
#include "ferry_config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Appends the components of `path` to out (which holds an absolute
 * directory, without a trailing slash unless it is "/"), skipping empty and
 * "." components. `out` has room for strlen(out) + strlen(path) + 2. */
static void append_clean(char *out, const char *path)
{
    size_t n = strlen(out);
    const char *c = path;
    while (*c) {
        size_t len = strcspn(c, "/");
        if (len > 0 && !(len == 1 && c[0] == '.')) {
            if (n == 0 || out[n - 1] != '/')
                out[n++] = '/';
            memcpy(out + n, c, len);
            n += len;
        }
        c += len;
        while (*c == '/')
            c++;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
}

/* "/" plus the clean components of an absolute path. */
static char *clean_absolute(const char *dir, const char *rel)
{
    char *out = malloc(strlen(dir) + (rel ? strlen(rel) : 0) + 3);
    if (!out)
        return NULL;
    out[0] = '\0';
    append_clean(out, dir);
    if (rel)
        append_clean(out, rel);
    return out;
}

char *ferry_config_dir(const char *config_file)
{
    const char *slash = strrchr(config_file, '/');
    size_t dlen = slash ? (size_t)(slash - config_file) : 0;
    char *parent = strndup(config_file, dlen);
    if (!parent)
        return NULL;
    char *dir = NULL;
    if (config_file[0] == '/') {
        dir = clean_absolute(parent, NULL);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (cwd)
            dir = clean_absolute(cwd, parent);
        free(cwd);
    }
    free(parent);
    return dir;
}

char *ferry_config_resolve_path(const char *dir, const char *path)
{
    if (path[0] == '/')
        return clean_absolute("/", path);
    if (!dir)
        return strdup(path);
    return clean_absolute(dir, path);
}

char *ferry__path(struct ferry__parse *p, const char *v)
{
    if (v[0] != '/' && !p->cfg->dir) {
        ferry__err(p, p->lineno, "cannot resolve the relative path \"%s\": the directory of "
                   "%s is unknown (%s)", v, p->file, strerror(p->dir_errno));
        return NULL;
    }
    char *s = ferry_config_resolve_path(p->cfg->dir, v);
    if (!s)
        p->oom = true;
    return s;
}

void ferry__set_path(struct ferry__parse *p, const char *v, char **dst)
{
    char *s = ferry__path(p, v);
    if (!s)
        return;
    free(*dst);
    *dst = s;
}

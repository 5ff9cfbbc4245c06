/* ferry.ini: the files ferryd opens for writing at start, checked by -t
 * (see ferry_config_check_writable in ferry_config.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_config.h"

/* The directory part of an absolute path into dir ("/" for "/x"). */
static void dir_of(const char *path, char *dir, size_t size)
{
    snprintf(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
}

/* One path: its directory must exist and be writable, and the file, if it
 * exists, writable itself. Nothing is created. */
static void check_one(const struct ferry_config *cfg, struct ferry_config_errors *errs,
                      const char *key, const char *path, int line)
{
    char dir[FERRY_PATH_MAX];
    struct stat st;
    dir_of(path, dir, sizeof(dir));
    if (stat(dir, &st) != 0)
        ferry_config_error_at(errs, cfg, line, "%s %s: directory %s: %s", key, path, dir,
                               strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        ferry_config_error_at(errs, cfg, line, "%s %s: %s is not a directory", key, path,
                               dir);
    else if (access(path, F_OK) == 0 ? access(path, W_OK) != 0 : access(dir, W_OK | X_OK) != 0)
        ferry_config_error_at(errs, cfg, line, "%s %s: cannot write: %s", key, path,
                               strerror(errno));
}

void ferry_config_check_writable(const struct ferry_config *cfg, struct ferry_config_errors *errs)
{
    const struct ferry_global *g = &cfg->global;
    if (g->log_target == FERRY_LOG_TO_FILE && g->log_path[0])
        check_one(cfg, errs, "log", g->log_path, g->log_line);
    if (g->access_log_path[0])
        check_one(cfg, errs, "access_log", g->access_log_path, g->access_log_line);
    if (g->state_file)
        check_one(cfg, errs, "state_file", g->state_file, g->state_file_line);
}

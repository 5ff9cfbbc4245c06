/* Test material for the TLS unit tests: tests/tls/gen-certs.sh run into a
 * fresh temporary directory once per test group, removed afterwards.
 * Included by tests/unit/asynccore/test_tls.c and tests/unit/daemon/
 * test_tls_ctx.c (their meson.build adds tests/tls to the include path). */
#ifndef FERRY_TEST_CERT_FIXTURE_H
#define FERRY_TEST_CERT_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Finds tests/tls/gen-certs.sh: $FERRY_GEN_CERTS, else next to this header,
 * whose path Meson gives relative to the build root (a directory holding
 * build.ninja, searched upwards from the working directory and the binary). */
static inline bool cert_find_script(char *out, size_t n)
{
    const char *env = getenv("FERRY_GEN_CERTS");
    if (env != NULL) {
        snprintf(out, n, "%s", env);
        return access(out, R_OK) == 0;
    }
    char rel[PATH_MAX / 2];
    snprintf(rel, sizeof(rel), "%s", __FILE__);
    char *slash = strrchr(rel, '/');
    if (slash == NULL)
        return false;
    snprintf(slash, sizeof(rel) - (size_t)(slash - rel), "/gen-certs.sh");
    if (rel[0] == '/') {
        snprintf(out, n, "%s", rel);
        return access(out, R_OK) == 0;
    }
    char starts[2][PATH_MAX / 2];
    if (getcwd(starts[0], sizeof(starts[0])) == NULL)
        starts[0][0] = '\0';
    ssize_t len = readlink("/proc/self/exe", starts[1], sizeof(starts[1]) - 1);
    starts[1][len > 0 ? len : 0] = '\0';
    for (int s = 0; s < 2; s++) {
        char dir[PATH_MAX / 2];
        memcpy(dir, starts[s], sizeof(dir));
        while (dir[0] != '\0') {
            char probe[PATH_MAX + 16];
            snprintf(probe, sizeof(probe), "%s/build.ninja", dir);
            if (access(probe, R_OK) == 0) {
                snprintf(out, n, "%s/%s", dir, rel);
                if (access(out, R_OK) == 0)
                    return true;
            }
            char *p = strrchr(dir, '/');
            if (p == NULL)
                break;
            *p = '\0';
        }
    }
    return false;
}

static inline void cert_dir_remove(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Makes a directory $TMPDIR/<prefix>-XXXXXX (TMPDIR defaults to /tmp), its
 * name written into dir (size bytes), and fills it with gen-certs.sh's output. Returns 0, or -1
 * with the reason on stderr and nothing left behind. */
static inline int cert_dir_create(char *dir, size_t size, const char *prefix)
{
    char script[PATH_MAX];
    if (!cert_find_script(script, sizeof(script))) {
        fprintf(stderr, "cannot find tests/tls/gen-certs.sh\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, size, "%s/%s-XXXXXX", tmp, prefix);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "cannot make a directory %s\n", dir);
        return -1;
    }
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >/dev/null", script, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "gen-certs.sh failed in %s\n", dir);
        cert_dir_remove(dir);
        return -1;
    }
    return 0;
}

#endif

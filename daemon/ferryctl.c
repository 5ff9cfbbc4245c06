/* ferryctl: the control socket's command-line client (SPEC.md section 4).
 *
 * Sends one command line, prints the whole answer, and exits 0, or 1 when the
 * answer is an error, or 2 when the socket cannot be reached (or for a usage
 * error).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control_cmd.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

#define DEFAULT_SOCKET "/run/ferry/ferry.sock"

enum { TIMEOUT_MS = 10000, RELOAD_TIMEOUT_MS = 30000 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferryctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
            "commands:\n"
            "  info                     daemon facts (version, pid, uptime, connections)\n"
            "  stats                    listener, backend and server counters\n"
            "  conns                    active connections\n"
            "  metrics                  Prometheus text exposition\n"
            "  disable BACKEND/SERVER   send no new connections to the server\n"
            "  enable BACKEND/SERVER    let the server take new connections again\n"
            "  reload                   reload the configuration file\n"
            "  help                     the daemon's list of control commands\n"
            "options:\n"
            "  -s, --socket SOCKET      control socket (default: %s)\n"
            "  -j, --json               JSON output (info, stats, conns)\n"
            "  -V, --version            print the version and exit\n"
            "  -h, --help               this help\n",
            DEFAULT_SOCKET);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until fd is ready for events or the deadline passes (-ETIMEDOUT). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int send_line(int fd, const char *line, size_t len, uint64_t deadline)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, line + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc != 0)
                return rc;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/* Reads the whole answer (until EOF) into a malloc'd string. */
static int read_answer(int fd, uint64_t deadline, char **out, size_t *outlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET && len > 0))
            break; /* a reset after the answer still leaves the answer */
        int rc = 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_fd(fd, POLLIN, deadline);
        else if (errno != EINTR)
            rc = -errno;
        if (rc != 0) {
            free(buf);
            return rc;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* Sends line, prints the answer; returns the exit status. */
static int exchange(const char *path, const char *line, size_t len, bool reload)
{
    int fd = connect_to(path);
    if (fd < 0) {
        fprintf(stderr, "ferryctl: cannot connect to %s: %s\n", path, strerror(errno));
        return 2;
    }
    uint64_t deadline = now_ms() + (reload ? RELOAD_TIMEOUT_MS : TIMEOUT_MS);
    char *answer = NULL;
    size_t alen = 0;
    int rc = send_line(fd, line, len, deadline);
    if (rc == 0)
        rc = read_answer(fd, deadline, &answer, &alen);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "ferryctl: no answer from %s: %s\n", path, strerror(-rc));
        return 2;
    }
    if (alen == 0) {
        fprintf(stderr, "ferryctl: %s closed the connection without an answer\n", path);
        free(answer);
        return 2;
    }
    fwrite(answer, 1, alen, stdout);
    int status = strncmp(answer, "error:", 6) == 0 ? 1 : 0;
    free(answer);
    if (fflush(stdout) != 0)
        return 2;
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_SOCKET;
    bool json = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "s:jVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 'j': json = true; break;
        case 'V': printf("ferryctl %s\n", FERRY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char line[FERRY_CTL_LINE_MAX + 2];
    char err[256];
    int len = ferry_ctl_from_argv(argc - optind, argv + optind, json, line, sizeof(line), err,
                                  sizeof(err));
    if (len < 0) {
        fprintf(stderr, "ferryctl: %s\n", len == -ENOSPC ? "command too long" : err);
        usage(stderr);
        return 2;
    }
    return exchange(path, line, (size_t)len, strcmp(line, "reload\n") == 0);
}

/* ferryctl: the control socket's command-line client (ferryctl(8)).
 *
 * Sends one command line, prints the whole answer, and exits 0, or 1 when the
 * answer is an error, or 2 when the socket cannot be reached (or for a usage
 * error).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ferry_config.h"
#include "proto/control_cmd.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

#define DEFAULT_SOCKET "/run/ferry/ferry.sock"

/* An upgrade waits up to 30 s for the new process to be ready. */
enum { TIMEOUT_MS = 10000, RELOAD_TIMEOUT_MS = 30000, UPGRADE_TIMEOUT_MS = 45000 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferryctl [-s SOCKET | -c FERRY.INI] [--json] COMMAND [ARGS]\n"
            "commands:\n"
            "  info                     daemon facts (version, pid, uptime, connections)\n"
            "  stats                    listener, backend and server counters\n"
            "  conns                    active connections\n"
            "  metrics                  Prometheus text exposition\n"
            "  reload                   reload the configuration file (prints its errors)\n"
            "  upgrade                  start the executable anew and hand it the sockets\n"
            "  acme                     certificates obtained through [acme] accounts\n"
            "  disable BACKEND/SERVER   send no new connections to the server\n"
            "  enable BACKEND/SERVER    let the server take new connections again\n"
            "  set BACKEND/SERVER state ready|drain|maint\n"
            "                           drain: no new connections; maint: also cut its own\n"
            "  set BACKEND/SERVER weight N\n"
            "                           weight 0..256 until the next reload\n"
            "  set BACKEND/SERVER addr ADDRESS\n"
            "                           new connections go to ADDRESS (HOST:PORT)\n"
            "  add BACKEND NAME ADDRESS [weight=N] [backup] [max_connections=N]\n"
            "                           a server (ADDRESS: IP:PORT or HOST:PORT) until the\n"
            "                           next reload, or del\n"
            "  del BACKEND/SERVER       remove a disabled or maint server without connections\n"
            "  disable-listener NAME    stop accepting (clients wait in the kernel queue)\n"
            "  enable-listener NAME     accept again\n"
            "  shutdown CONN_ID         close that connection at once, both sides\n"
            "  help                     the daemon's list of control commands\n"
            "options:\n"
            "  -s, --socket SOCKET      control socket\n"
            "  -c, --config FERRY.INI   use the control_socket of this configuration file\n"
            "  -j, --json               JSON output, for every command ({\"ok\": true} or\n"
            "                           {\"ok\": false, \"error\": ...} for those answering ok)\n"
            "  -V, --version            print the version and exit\n"
            "  -h, --help               this help\n"
            "The socket is -s SOCKET, else the control_socket of -c FERRY.INI, else\n"
            "$FERRY_CONTROL_SOCKET, else %s.\n",
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

/* ---- --json: answers the daemon gives in text, as JSON ---- */

static void json_str(FILE *out, const char *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* Prints the lines of `text` that start with `prefix` as a JSON array of
 * strings (the prefix removed). */
static void json_lines(FILE *out, const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    bool first = true;
    fputc('[', out);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n >= pl && strncmp(p, prefix, pl) == 0) {
            fputs(first ? "" : ", ", out);
            json_str(out, p + pl, n - pl);
            first = false;
        }
        p += n + (nl ? 1 : 0);
    }
    fputc(']', out);
}

static size_t count_lines(const char *text, const char *prefix)
{
    size_t k = 0, pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0)
            k++;
    return k;
}

/* {"ok": false, "error": FIRST[, "errors": [ALL]]} for an error answer. */
static void json_error(FILE *out, const char *answer)
{
    const char *first = answer + strlen("error: ");
    const char *nl = strchr(first, '\n');
    fputs("{\"ok\": false, \"error\": ", out);
    json_str(out, first, nl ? (size_t)(nl - first) : strlen(first));
    if (count_lines(answer, "error: ") > 1) {
        fputs(", \"errors\": ", out);
        json_lines(out, answer, "error: ");
    }
    fputs("}\n", out);
}

/* Writes an answer as it came, except that no control character but the
 * line ends reaches the terminal: escaped as in the logs (\t, \xHH, and
 * bytes from 0x7f up) in text, as \u00HH in --json output (where a raw one
 * can only sit inside a string). */
static void write_escaped(FILE *out, const char *s, size_t n, bool json)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || (c >= 0x20 && c < 0x7f) || (json && c > 0x7f))
            fputc(c, out);
        else if (json)
            fprintf(out, "\\u%04x", c);
        else if (c == '\t')
            fputs("\\t", out);
        else
            fprintf(out, "\\x%02x", c);
    }
}

static void print_answer(const char *answer, size_t len, enum ferry_ctl_cmd cmd, bool json)
{
    bool error = strncmp(answer, "error:", 6) == 0;
    if (!json || (!error && (cmd == FERRY_CTL_SHOW_INFO || cmd == FERRY_CTL_SHOW_STATS ||
                             cmd == FERRY_CTL_SHOW_CONNS || cmd == FERRY_CTL_SHOW_ACME))) {
        write_escaped(stdout, answer, len, json);
    } else if (error) {
        json_error(stdout, answer);
    } else if (ferry_ctl_answers_ok(cmd)) {
        fputs("{\"ok\": true", stdout);
        long pid;
        char version[64];
        const char *nl = strchr(answer, '\n');
        if (cmd == FERRY_CTL_UPGRADE && nl &&
            sscanf(nl + 1, "pid: %ld version: %63s", &pid, version) == 2) {
            fprintf(stdout, ", \"pid\": %ld, \"version\": ", pid);
            json_str(stdout, version, strlen(version));
        }
        if (count_lines(answer, "warning: ") > 0) {
            fputs(", \"warnings\": ", stdout);
            json_lines(stdout, answer, "warning: ");
        }
        fputs("}\n", stdout);
    } else {
        fputs(cmd == FERRY_CTL_SHOW_METRICS ? "{\"metrics\": " : "{\"help\": ", stdout);
        json_str(stdout, answer, len);
        fputs("}\n", stdout);
    }
}

/* A failure of ferryctl itself: one line on stderr, and with --json the
 * same as {"ok": false, "error": ...} on stdout. Returns 2. */
static int fail(bool json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(bool json, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ferryctl: %s\n", msg);
    if (json) {
        fputs("{\"ok\": false, \"error\": ", stdout);
        json_str(stdout, msg, strlen(msg));
        fputs("}\n", stdout);
    }
    return 2;
}

/* What to check when the socket cannot be reached. */
static const char *hint(int err)
{
    switch (err) {
    case ENOENT:
    case ECONNREFUSED: return " (is ferryd running?)";
    case EACCES:
    case EPERM: return " (are you in the socket's group?)";
    default: return "";
    }
}

/* The control_socket of a configuration file (relative paths resolved
 * against its directory by the loader), into out. Returns 0, or -1 after
 * printing why. */
static int socket_of_config(const char *ini, bool json, char *out, size_t size)
{
    struct ferry_config_errors errs = {0};
    struct ferry_config *cfg = ferry_config_load_all(ini, &errs);
    int rc = 0;
    if (!cfg) {
        if (errs.n) /* "FERRY.INI: cannot open: ..." */
            fail(json, "%s", errs.msgs[0]);
        else
            fail(json, "cannot read %s: out of memory", ini);
        rc = -1;
    } else if (!cfg->global.control_socket[0]) {
        fail(json, "%s: control_socket is empty: that ferryd has no control socket", ini);
        rc = -1;
    } else {
        snprintf(out, size, "%s", cfg->global.control_socket);
    }
    ferry_config_free(cfg);
    ferry_config_errors_free(&errs);
    return rc;
}

/* Sends line, prints the answer; returns the exit status. */
static int exchange(const char *path, const char *line, size_t len, bool json)
{
    struct ferry_ctl_request req;
    if (ferry_ctl_parse(line, len, &req) != 0)
        return fail(json, "%s", req.error);
    int fd = connect_to(path);
    if (fd < 0)
        return fail(json, "cannot connect to %s: %s%s", path, strerror(errno), hint(errno));
    uint64_t deadline = now_ms() + (req.cmd == FERRY_CTL_RELOAD    ? RELOAD_TIMEOUT_MS
                                    : req.cmd == FERRY_CTL_UPGRADE ? UPGRADE_TIMEOUT_MS
                                                                   : TIMEOUT_MS);
    char *answer = NULL;
    size_t alen = 0;
    int rc = send_line(fd, line, len, deadline);
    if (rc == 0)
        rc = read_answer(fd, deadline, &answer, &alen);
    close(fd);
    if (rc != 0)
        return fail(json, "no answer from %s: %s", path, strerror(-rc));
    if (alen == 0) {
        free(answer);
        return fail(json, "%s closed the connection without an answer", path);
    }
    print_answer(answer, alen, req.cmd, json);
    int status = strncmp(answer, "error:", 6) == 0 ? 1 : 0;
    free(answer);
    if (fflush(stdout) != 0)
        return 2;
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},         {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *ini = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) /* known before getopt may complain */
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
            json = true;
    opterr = 0; /* our own one-line messages */
    int opt;
    while ((opt = getopt_long(argc, argv, ":s:c:jVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 'c': ini = optarg; break;
        case 'j': json = true; break;
        case 'V': printf("ferryctl %s\n", FERRY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case ':':
            return fail(json, "option '%s' needs a%s argument (see 'ferryctl --help')",
                        argv[optind - 1], optopt == 'c' ? " FERRY.INI" : " SOCKET");
        default:
            if (optopt)
                return fail(json, "unknown option '-%c' (see 'ferryctl --help')", optopt);
            return fail(json, "unknown option '%s' (see 'ferryctl --help')", argv[optind - 1]);
        }
    }
    char line[FERRY_CTL_LINE_MAX + 2];
    char err[256];
    int len = ferry_ctl_from_argv(argc - optind, argv + optind, json, line, sizeof(line), err,
                                  sizeof(err));
    if (len < 0)
        return fail(json, "%s (see 'ferryctl --help')",
                    len == -ENOSPC ? "command too long" : err);
    /* -s, else -c's control_socket, else the environment, else the default. */
    char from_ini[sizeof(((struct ferry_global *)0)->control_socket)];
    if (!path && ini) {
        if (socket_of_config(ini, json, from_ini, sizeof(from_ini)) != 0)
            return 2;
        path = from_ini;
    }
    if (!path)
        path = getenv("FERRY_CONTROL_SOCKET");
    if (!path || !path[0])
        path = DEFAULT_SOCKET;
    return exchange(path, line, (size_t)len, json);
}

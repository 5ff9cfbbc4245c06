/* ferryd: systemd integration without libsystemd (see sdnotify.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "lifecycle/sdnotify.h"

#define SD_LISTEN_FDS_START 3

/* Parses a whole decimal string into a uint64 (no sign, no junk). */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* $VAR names this process: set, a number, and our pid. */
static bool pid_is_us(const char *var)
{
    uint64_t pid;
    return parse_u64(getenv(var), &pid) == 0 && pid == (uint64_t)getpid();
}

/* ---- notify ---- */

static int notify_addr(const char *path, struct sockaddr_un *un, socklen_t *len)
{
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n < 2 || n >= sizeof(un->sun_path))
        return -EINVAL;
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@')
        un->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/' ? 1 : 0));
    return 0;
}

int ferry_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un un;
    socklen_t len;
    int rc = notify_addr(path, &un, &len);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t sent;
    do {
        /* Never block an event loop on a notify socket nobody reads. */
        sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
                      (struct sockaddr *)&un, len);
    } while (sent < 0 && errno == EINTR);
    rc = sent < 0 ? -errno : (size_t)sent == strlen(state) ? 1 : -EMSGSIZE;
    close(fd);
    return rc;
}

int ferry_sd_notifyf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EMSGSIZE;
    return ferry_sd_notify(buf);
}

uint64_t ferry_sd_watchdog_usec(void)
{
    uint64_t usec;
    if (parse_u64(getenv("WATCHDOG_USEC"), &usec) != 0 || usec == 0)
        return 0;
    if (getenv("WATCHDOG_PID") && !pid_is_us("WATCHDOG_PID"))
        return 0;
    return usec;
}

/* ---- socket activation ---- */

char *ferry_sd_format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(s->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(s->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? (size_t)len - off : 0;
        if (n > sizeof(u->sun_path))
            n = sizeof(u->sun_path);
        if (n > 0 && u->sun_path[0] == '\0') /* abstract */
            snprintf(buf, cap, "unix:@%.*s", (int)(n - 1), u->sun_path + 1);
        else
            snprintf(buf, cap, "unix:%.*s", (int)strnlen(u->sun_path, n), u->sun_path);
    } else {
        snprintf(buf, cap, "family-%d", (int)sa->sa_family);
    }
    return buf;
}

/* Checks one inherited descriptor and fills *s. */
static int take_fd(int fd, struct ferry_sd_fd *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -errno;
    int st = fcntl(fd, F_GETFL);
    if (st < 0 || fcntl(fd, F_SETFL, st | O_NONBLOCK) < 0)
        return -errno;
    socklen_t tl = sizeof(s->type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &s->type, &tl) < 0)
        return errno == ENOTSOCK ? -EBADF : -errno;
    s->sa_len = sizeof(s->sa);
    if (getsockname(fd, (struct sockaddr *)&s->sa, &s->sa_len) < 0)
        return -errno;
    ferry_sd_format_addr((struct sockaddr *)&s->sa, s->sa_len, s->addr, sizeof(s->addr));
    return 0;
}

/* Splits $LISTEN_FDNAMES over the n entries; the count must match. */
static int take_names(const char *names, struct ferry_sd_fd *fds, size_t n)
{
    if (!names)
        return 0;
    const char *p = names;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ':');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l >= sizeof(fds[i].name) || (!end && i + 1 < n))
            return -EINVAL;
        memcpy(fds[i].name, p, l);
        fds[i].name[l] = '\0';
        p = end ? end + 1 : p + l;
        if (i + 1 == n && end)
            return -EINVAL; /* more names than descriptors */
    }
    return 0;
}

static int listen_fds(struct ferry_sd_fd **fds, size_t *n)
{
    if (!getenv("LISTEN_PID") || !pid_is_us("LISTEN_PID"))
        return 0;
    uint64_t count;
    if (parse_u64(getenv("LISTEN_FDS"), &count) != 0 || count > 4096)
        return -EINVAL;
    if (count == 0)
        return 0;
    struct ferry_sd_fd *v = calloc((size_t)count, sizeof(*v));
    if (!v)
        return -ENOMEM;
    int rc = take_names(getenv("LISTEN_FDNAMES"), v, (size_t)count);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char name[sizeof(v[i].name)];
        memcpy(name, v[i].name, sizeof(name));
        rc = take_fd(SD_LISTEN_FDS_START + (int)i, &v[i]);
        memcpy(v[i].name, name, sizeof(name));
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    *fds = v;
    *n = (size_t)count;
    return (int)count;
}

int ferry_sd_listen_fds(struct ferry_sd_fd **fds, size_t *n)
{
    *fds = NULL;
    *n = 0;
    int rc = listen_fds(fds, n);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (rc < 0)
        errno = -rc;
    return rc;
}

static bool is_any(const struct ferry_sd_fd *s)
{
    if (s->sa.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&s->sa)->sin6_addr);
    if (s->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&s->sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    return false;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

bool ferry_sd_addr_equal(const struct ferry_sd_fd *s, const struct ferry_addr *a)
{
    switch (a->kind) {
    case FERRY_ADDR_ANY:
        return is_any(s) && port_of(&s->sa) == a->port;
    case FERRY_ADDR_UNIX: {
        char text[sizeof(s->addr)];
        if (s->sa.ss_family != AF_UNIX || !a->resolved)
            return false;
        ferry_sd_format_addr((const struct sockaddr *)&a->sa, a->sa_len, text, sizeof(text));
        return strcmp(text, s->addr) == 0;
    }
    case FERRY_ADDR_INET:
        break;
    }
    if (!a->resolved || a->sa.ss_family != s->sa.ss_family || port_of(&s->sa) != a->port)
        return false;
    if (a->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&s->sa)->sin_addr.s_addr;
    if (a->sa.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr,
                      &((const struct sockaddr_in6 *)&s->sa)->sin6_addr, 16) == 0;
    return false;
}

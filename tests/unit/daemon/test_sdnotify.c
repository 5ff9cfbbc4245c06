/* Unit tests: daemon/sdnotify.c (sd_notify, watchdog, socket activation). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lifecycle/sdnotify.h"

/* A datagram socket standing in for systemd's. */
static int notify_receiver(const char *path, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    memcpy(un.sun_path, path, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (abstract)
        un.sun_path[0] = '\0';
    else
        len++;
    assert_int_equal(bind(fd, (struct sockaddr *)&un, len), 0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_notify_path(void **state)
{
    (void)state;
    char path[108];
    snprintf(path, sizeof(path), "/tmp/ferry-sdn-%d.sock", (int)getpid());
    unlink(path);
    int fd = notify_receiver(path, false);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(ferry_sd_notify("READY=1"), 1);
    expect_datagram(fd, "READY=1");
    assert_int_equal(ferry_sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu", 123456789ULL), 1);
    expect_datagram(fd, "RELOADING=1\nMONOTONIC_USEC=123456789");
    assert_int_equal(ferry_sd_notifyf("STATUS=%s", "active=3"), 1);
    expect_datagram(fd, "STATUS=active=3");
    close(fd);
    unlink(path);
    /* The receiver is gone. */
    int rc = ferry_sd_notify("WATCHDOG=1");
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
    unsetenv("NOTIFY_SOCKET");
}

static void test_notify_abstract(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@ferry-sdn-test-%d", (int)getpid());
    int fd = notify_receiver(name, true);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(ferry_sd_notify("STOPPING=1"), 1);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_notify_unset_and_bad(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(ferry_sd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(ferry_sd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(ferry_sd_notify("READY=1"), -EINVAL);
    setenv("NOTIFY_SOCKET", "@", 1);
    assert_int_equal(ferry_sd_notify("READY=1"), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(ferry_sd_notify("READY=1"), -EINVAL);
    unsetenv("NOTIFY_SOCKET");
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ferry_sd_notifyf("STATUS=%s", big), -EMSGSIZE);
}

static void test_watchdog(void **state)
{
    (void)state;
    char pid[32];
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_PID", "junk", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "12x", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "0", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "99999999999999999999999", 1);
    assert_int_equal(ferry_sd_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

/* ---- socket activation, in a child so fds 3 and 4 are ours to set ---- */

#define CHECK(c) do { if (!(c)) return __LINE__; } while (0)

static void set_listen_env(pid_t pid, const char *fds, const char *names)
{
    char p[32];
    snprintf(p, sizeof(p), "%d", (int)pid);
    setenv("LISTEN_PID", p, 1);
    setenv("LISTEN_FDS", fds, 1);
    if (names)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}

static bool env_clear(void)
{
    return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
}

/* Puts a fresh socket of each kind at fds 3 and 4. Returns the TCP port. */
static int place_sockets(const char *upath)
{
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (t < 0 || bind(t, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(t, 8) < 0)
        return -1;
    socklen_t l = sizeof(sin);
    getsockname(t, (struct sockaddr *)&sin, &l);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, upath);
    unlink(upath);
    if (u < 0 || bind(u, (struct sockaddr *)&un, sizeof(un)) < 0 || listen(u, 8) < 0)
        return -1;
    int ht = fcntl(t, F_DUPFD, 100), hu = fcntl(u, F_DUPFD, 100);
    close(t);
    close(u);
    if (ht < 0 || hu < 0 || dup2(ht, 3) != 3 || dup2(hu, 4) != 4)
        return -1;
    close(ht);
    close(hu);
    return ntohs(sin.sin_port);
}

static int child_listen_fds(void)
{
    char upath[108];
    snprintf(upath, sizeof(upath), "/tmp/ferry-sdl-%d.sock", (int)getpid());
    int port = place_sockets(upath);
    CHECK(port > 0);

    struct ferry_sd_fd *fds;
    size_t n;
    /* Not for us: ignored, variables still removed. */
    set_listen_env(getpid() + 1, "2", "web:admin");
    CHECK(ferry_sd_listen_fds(&fds, &n) == 0 && n == 0 && fds == NULL && env_clear());

    set_listen_env(getpid(), "2", "web:admin");
    CHECK(ferry_sd_listen_fds(&fds, &n) == 2 && n == 2);
    CHECK(env_clear());
    CHECK(fds[0].fd == 3 && fds[1].fd == 4);
    CHECK(strcmp(fds[0].name, "web") == 0 && strcmp(fds[1].name, "admin") == 0);
    char want[160];
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    CHECK(strcmp(fds[0].addr, want) == 0);
    snprintf(want, sizeof(want), "unix:%s", upath);
    CHECK(strcmp(fds[1].addr, want) == 0);
    CHECK(fds[0].type == SOCK_STREAM && fds[1].type == SOCK_STREAM);
    CHECK(!fds[0].claimed && !fds[1].claimed);
    for (int fd = 3; fd <= 4; fd++) {
        CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
        CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    }
    /* Matching against configured addresses. */
    struct ferry_addr a;
    CHECK(ferry_parse_addr(want, false, &a) == 0 && ferry_sd_addr_equal(&fds[1], &a));
    CHECK(!ferry_sd_addr_equal(&fds[0], &a));
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    CHECK(ferry_parse_addr(want, false, &a) == 0 && ferry_sd_addr_equal(&fds[0], &a));
    snprintf(want, sizeof(want), "127.0.0.1:%d", port == 65535 ? 1 : port + 1);
    CHECK(ferry_parse_addr(want, false, &a) == 0 && !ferry_sd_addr_equal(&fds[0], &a));
    free(fds);

    /* Without names: "" each. */
    set_listen_env(getpid(), "2", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == 2 && fds[0].name[0] == '\0' && fds[1].name[0] == '\0');
    free(fds);
    /* Names that do not match the count. */
    set_listen_env(getpid(), "2", "web");
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EINVAL && errno == EINVAL && env_clear());
    set_listen_env(getpid(), "2", "a:b:c");
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EINVAL);
    set_listen_env(getpid(), "1", "a:");
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EINVAL);
    /* Malformed counts. */
    set_listen_env(getpid(), "two", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EINVAL && fds == NULL && n == 0);
    set_listen_env(getpid(), "", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EINVAL);
    set_listen_env(getpid(), "0", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == 0);
    /* A descriptor that is not open, or not a socket. */
    close(4);
    set_listen_env(getpid(), "2", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EBADF);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(dup2(p[0], 4) == 4);
    set_listen_env(getpid(), "2", NULL);
    CHECK(ferry_sd_listen_fds(&fds, &n) == -EBADF);
    unlink(upath);
    return 0;
}

static void test_listen_fds(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int line = child_listen_fds();
        if (line)
            fprintf(stderr, "child check failed at line %d\n", line);
        _exit(line ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child failed (line code %d)", WEXITSTATUS(status));
}

static struct ferry_sd_fd fake(const struct sockaddr *sa, socklen_t len)
{
    struct ferry_sd_fd s;
    memset(&s, 0, sizeof(s));
    s.fd = -1;
    memcpy(&s.sa, sa, len);
    s.sa_len = len;
    ferry_sd_format_addr(sa, len, s.addr, sizeof(s.addr));
    return s;
}

static void test_addr_equal(void **state)
{
    (void)state;
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons(8080),
                                .sin6_addr = IN6ADDR_ANY_INIT};
    struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_port = htons(8080),
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in lo4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
    lo4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct ferry_sd_fd s_any6 = fake((void *)&any6, sizeof(any6));
    struct ferry_sd_fd s_any4 = fake((void *)&any4, sizeof(any4));
    struct ferry_sd_fd s_lo6 = fake((void *)&lo6, sizeof(lo6));
    struct ferry_sd_fd s_lo4 = fake((void *)&lo4, sizeof(lo4));
    assert_string_equal(s_any6.addr, "[::]:8080");
    assert_string_equal(s_lo6.addr, "[::1]:8080");
    assert_string_equal(s_lo4.addr, "127.0.0.1:8080");

    struct ferry_addr a;
    assert_int_equal(ferry_parse_addr("*:8080", false, &a), 0);
    assert_true(ferry_sd_addr_equal(&s_any6, &a));
    assert_true(ferry_sd_addr_equal(&s_any4, &a));
    assert_false(ferry_sd_addr_equal(&s_lo6, &a));
    assert_int_equal(ferry_parse_addr("*:8081", false, &a), 0);
    assert_false(ferry_sd_addr_equal(&s_any6, &a));
    assert_int_equal(ferry_parse_addr("[::1]:8080", false, &a), 0);
    assert_true(ferry_sd_addr_equal(&s_lo6, &a));
    assert_false(ferry_sd_addr_equal(&s_lo4, &a));
    assert_int_equal(ferry_parse_addr("127.0.0.1:8080", false, &a), 0);
    assert_true(ferry_sd_addr_equal(&s_lo4, &a));
    assert_false(ferry_sd_addr_equal(&s_lo6, &a));
    assert_false(ferry_sd_addr_equal(&s_any4, &a));
    assert_int_equal(ferry_parse_addr("[::]:8080", false, &a), 0);
    assert_true(ferry_sd_addr_equal(&s_any6, &a));
    assert_int_equal(ferry_parse_addr("unix:/tmp/x.sock", false, &a), 0);
    assert_false(ferry_sd_addr_equal(&s_lo4, &a));
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x.sock"};
    struct ferry_sd_fd s_un = fake((void *)&un, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 12));
    assert_string_equal(s_un.addr, "unix:/tmp/x.sock");
    assert_true(ferry_sd_addr_equal(&s_un, &a));
    assert_int_equal(ferry_parse_addr("unix:/tmp/y.sock", false, &a), 0);
    assert_false(ferry_sd_addr_equal(&s_un, &a));
    /* Abstract names are shown with '@'. */
    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    memcpy(ab.sun_path, "\0abs", 4);
    struct ferry_sd_fd s_ab = fake((void *)&ab, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4));
    assert_string_equal(s_ab.addr, "unix:@abs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_path),     cmocka_unit_test(test_notify_abstract),
        cmocka_unit_test(test_notify_unset_and_bad), cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_listen_fds),      cmocka_unit_test(test_addr_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

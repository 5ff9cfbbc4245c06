/* The control socket and the metrics endpoint end to end, on a real
 * runtime with a fake daemon: every command answered, garbage and NUL bytes
 * refused, a 1 MiB line refused while the server keeps answering, silent and
 * non-reading clients costing only themselves, unsafe socket paths refused. */
#include "fake_daemon.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control.h"
#include "control/metrics_http.h"

struct fixture {
    struct fake f;
    struct ac_runtime *rt;
    pthread_t thread;
    char dir[64];
    char path[128];
    struct ferry_control *ctl, *ctl2;
    struct ferry_metrics *metrics;
    uint16_t metrics_port;
};

static void *run_rt(void *arg)
{
    struct fixture *fx = arg;
    assert_int_equal(ac_runtime_run(fx->rt), 0);
    return NULL;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN); /* as ferryd does */
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    struct ac_runtime_opts opts = {.workers = 2};
    fx->rt = ac_runtime_new(&opts);
    assert_non_null(fx->rt);
    fake_init(&fx->f, 2, fx->rt);
    fake_fill_counters(&fx->f);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/ferry-ctl-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    /* The parent "run/ferry" does not exist yet: it is created. */
    snprintf(fx->path, sizeof(fx->path), "%s/run/ferry/ferry.sock", fx->dir);
    int err = 0;
    fx->ctl = ferry_control_start(&fx->f.d, fx->path, 0660, &err);
    assert_non_null(fx->ctl);
    struct ferry_addr a;
    char text[64];
    fx->metrics_port = free_port();
    snprintf(text, sizeof(text), "127.0.0.1:%u", fx->metrics_port);
    assert_int_equal(ferry_parse_addr(text, false, &a), 0);
    fx->metrics = ferry_metrics_start(&fx->f.d, &a, &err);
    assert_non_null(fx->metrics);
    assert_int_equal(pthread_create(&fx->thread, NULL, run_rt, fx), 0);
    *state = fx;
    return 0;
}

static void rm_tree(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    ac_runtime_stop(fx->rt);
    pthread_join(fx->thread, NULL);
    ac_runtime_free(fx->rt); /* drops the accept and client tasks */
    ferry_control_free(fx->ctl);
    ferry_control_free(fx->ctl2);
    ferry_metrics_free(fx->metrics);
    struct stat st;
    assert_int_equal(lstat(fx->path, &st), -1); /* the socket file is gone */
    fake_destroy(&fx->f);
    rm_tree(fx->dir);
    free(fx);
    return 0;
}

/* ---- clients ---- */

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 8};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until EOF (or a reset after some data). Returns a malloc'd string. */
static char *read_all(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != ECONNRESET)
            fail_msg("recv: %s", strerror(errno));
        break;
    }
    buf[len] = '\0';
    return buf;
}

static char *exchange_n(const char *path, const void *req, size_t len)
{
    int fd = connect_unix(path);
    assert_true(fd >= 0);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    char *out = read_all(fd);
    close(fd);
    return out;
}

static char *exchange(struct fixture *fx, const char *line)
{
    return exchange_n(fx->path, line, strlen(line));
}

static void assert_answer(struct fixture *fx, const char *line, const char *want)
{
    char *out = exchange(fx, line);
    assert_string_equal(out, want);
    free(out);
}

static void assert_error(struct fixture *fx, const void *req, size_t len)
{
    char *out = exchange_n(fx->path, req, len);
    if (strncmp(out, "error: ", 7) != 0 || out[strlen(out) - 1] != '\n' ||
        strchr(out, '\n') != out + strlen(out) - 1)
        fail_msg("not a one-line error: '%s'", out);
    free(out);
}

/* ---- commands ---- */

static void test_socket_file(void **state)
{
    struct fixture *fx = *state;
    struct stat st;
    assert_int_equal(lstat(fx->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0660);
}

static void test_show_commands(void **state)
{
    struct fixture *fx = *state;
    char *out = exchange(fx, "help\n");
    assert_non_null(strstr(out, "show stats"));
    assert_non_null(strstr(out, "reload"));
    free(out);

    out = exchange(fx, "show info\n");
    assert_true(strncmp(out, "version: ", 9) == 0);
    assert_non_null(strstr(out, "\npid: 4242\n"));
    assert_non_null(strstr(out, "\nactive: 2\n"));
    char want[64]; /* the runtime's backend, as AC_BACKEND chose it in this lane */
    snprintf(want, sizeof(want), "\nio_backend: %s\n", ac_backend_name(ac_runtime_backend(fx->rt)));
    assert_non_null(strstr(out, want));
    free(out);

    out = exchange(fx, "show info json\n");
    assert_int_equal(json_check(out, "d[\"pid\"] == 4242 and d[\"total\"] == 120 and "
                                     "d[\"workers\"] == 2 and d[\"max_connections\"] == 500"),
                     0);
    free(out);

    out = exchange(fx, "show stats json\r\n"); /* CRLF is fine */
    assert_int_equal(json_check(out, "d[\"listeners\"][0][\"total\"] == 120 and "
                                     "d[\"backends\"][0][\"servers\"][0][\"connect_errors\"] == 4"),
                     0);
    free(out);

    out = exchange(fx, "show stats\n");
    assert_true(strncmp(out, "listener ", 9) == 0);
    assert_non_null(strstr(out, "\n  app1 "));
    free(out);

    out = exchange(fx, "show conns json\n");
    assert_int_equal(json_check(out, "[c[\"id\"] for c in d[\"conns\"]] == [17, 18]"), 0);
    free(out);

    out = exchange(fx, "show conns\n");
    assert_non_null(strstr(out, "127.0.0.1:51234"));
    free(out);

    out = exchange(fx, "show metrics\n");
    assert_non_null(strstr(out, "# TYPE ferry_listener_connections_active gauge\n"));
    assert_non_null(strstr(out, "ferry_listener_connections_total{listener=\"web\"} 120\n"));
    free(out);
}

static void test_enable_disable(void **state)
{
    struct fixture *fx = *state;
    struct ferry_server_stats *app2 = fx->f.d.gen->backends[0].servers[1].stats;
    assert_answer(fx, "disable server app/app2\n", "ok\n");
    assert_true(atomic_load(&app2->disabled));
    char *out = exchange(fx, "show stats json\n");
    assert_int_equal(json_check(out, "d[\"backends\"][0][\"servers\"][1][\"state\"] == \"disabled\""),
                     0);
    free(out);
    assert_answer(fx, "enable server app/app2\n", "ok\n");
    assert_false(atomic_load(&app2->disabled));
    assert_answer(fx, "disable server app/nope\n", "error: no such server app/nope\n");
    assert_answer(fx, "enable server nope/app1\n", "error: no such server nope/app1\n");
}

static void test_reload(void **state)
{
    struct fixture *fx = *state;
    uint64_t before = atomic_load(&fx->f.d.reloads);
    fx->f.reload_polls = 0;
    assert_answer(fx, "reload\n", "ok\n");
    assert_int_equal(atomic_load(&fx->f.d.reloads), before + 1);
    assert_int_equal(fx->f.reload_polls, 2); /* the future was polled to completion */
    fx->f.reload_fails = true;
    assert_answer(fx, "reload\n",
                  "error: /etc/ferry/ferry.ini:7: unknown key 'bogus'\n"
                  "error: /etc/ferry/ferry.ini:9: bad port\n");
    fx->f.reload_fails = false;
    assert_int_equal(atomic_load(&fx->f.d.reloads), before + 1);
}

static void test_garbage(void **state)
{
    struct fixture *fx = *state;
    static const char *bad[] = {"bogus\n", "show\n", "show nothing\n", "disable server nope\n",
                                "\n", "show info json extra\n", "reload now\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_error(fx, bad[i], strlen(bad[i]));
    assert_error(fx, "\x00\x01\x02\n", 4);
    assert_error(fx, "help\x00\n", 6);
    assert_error(fx, "show\x00info\n", 10);
    /* A line without its newline, ended by a half-close, is still answered. */
    int fd = connect_unix(fx->path);
    assert_int_equal(send(fd, "help", 4, 0), 4);
    shutdown(fd, SHUT_WR);
    char *out = read_all(fd);
    close(fd);
    assert_non_null(strstr(out, "show stats"));
    free(out);
    /* A client that connects and leaves at once costs nothing. */
    fd = connect_unix(fx->path);
    close(fd);
    assert_answer(fx, "enable server app/app1\n", "ok\n");
}

struct sender {
    int fd;
    size_t len;
};

static void *send_big(void *arg)
{
    struct sender *s = arg;
    char *big = malloc(s->len);
    assert_non_null(big);
    memset(big, 'x', s->len);
    big[s->len - 1] = '\n';
    size_t done = 0;
    while (done < s->len) {
        ssize_t n = send(s->fd, big + done, s->len - done, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server closed: expected */
        done += (size_t)n;
    }
    free(big);
    return NULL;
}

static void test_long_lines(void **state)
{
    struct fixture *fx = *state;
    /* 4096 bytes plus the newline is the longest accepted line (an unknown
     * command, but parsed); one more byte is too long. */
    char line[4098];
    memset(line, 'a', sizeof(line));
    line[4096] = '\n';
    char *out = exchange_n(fx->path, line, 4097);
    assert_true(strncmp(out, "error: unknown command", 22) == 0);
    free(out);
    line[4096] = 'a';
    line[4097] = '\n';
    out = exchange_n(fx->path, line, 4098);
    assert_true(strncmp(out, "error: line too long", 20) == 0);
    free(out);

    /* 1 MiB: refused, and the server answers the next client. */
    struct sender s = {.fd = connect_unix(fx->path), .len = 1 << 20};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_big, &s), 0);
    out = read_all(s.fd);
    assert_true(strncmp(out, "error: line too long", 20) == 0);
    free(out);
    shutdown(s.fd, SHUT_RDWR); /* unblocks the sender if still sending */
    pthread_join(th, NULL);
    close(s.fd);
    out = exchange(fx, "show info\n");
    assert_true(strncmp(out, "version: ", 9) == 0);
    free(out);
}

/* A client that never sends does not block the others, and is closed after
 * the idle timeout. */
static void test_silent_clients(void **state)
{
    struct fixture *fx = *state;
    int silent[3];
    for (int i = 0; i < 3; i++) {
        silent[i] = connect_unix(fx->path);
        assert_true(silent[i] >= 0);
    }
    uint64_t t0 = ac_clock_now_ms();
    for (int i = 0; i < 20; i++)
        assert_answer(fx, "enable server app/app1\n", "ok\n");
    /* ... the idle timeout (5 s) closes the silent ones without an answer. */
    struct timeval tv = {.tv_sec = 15};
    setsockopt(silent[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    assert_int_equal(recv(silent[0], &c, 1, 0), 0);
    uint64_t waited = ac_clock_now_ms() - t0;
    assert_true(waited >= 4500);
    for (int i = 0; i < 3; i++)
        close(silent[i]);
}

/* Many clients at once (beyond the 128 served at a time), half silent, half
 * sending garbage without reading: the runtime keeps serving (the metrics
 * endpoint shares worker 0), and once they leave the control socket answers. */
static char *http_get(uint16_t port, const char *req);

static void test_flood(void **state)
{
    struct fixture *fx = *state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2200 && rl.rlim_max >= 2200) {
        rl.rlim_cur = 2200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    size_t n = rl.rlim_cur >= 2200 ? 1000 : (size_t)(rl.rlim_cur / 2 - 64);
    int *fds = calloc(n, sizeof(*fds));
    assert_non_null(fds);
    size_t connected = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", fx->path);
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fds[i] >= 0);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == 0)
            connected++;
        if (i % 2)
            (void)send(fds[i], "garbage\x00garbage\x00", 16, MSG_NOSIGNAL);
    }
    assert_true(connected > 128);
    /* Worker 0 still serves other tasks. */
    char *out = http_get(fx->metrics_port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(out);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    out = exchange(fx, "show info\n");
    assert_true(strncmp(out, "version: ", 9) == 0);
    free(out);
}

/* ---- metrics endpoint ---- */

static char *http_get(uint16_t port, const char *req)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 8};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    char *out = read_all(fd);
    close(fd);
    return out;
}

static void assert_status(struct fixture *fx, const char *req, const char *status)
{
    char *out = http_get(fx->metrics_port, req);
    if (strncmp(out, status, strlen(status)) != 0)
        fail_msg("'%s' answered '%s'", req, out);
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    free(out);
}

static void test_metrics_http(void **state)
{
    struct fixture *fx = *state;
    char *out = http_get(fx->metrics_port, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(out, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    char *body = strstr(out, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    const char *cl = strstr(out, "\r\nContent-Length: ");
    assert_non_null(cl);
    assert_int_equal(strtoul(cl + 18, NULL, 10), strlen(body));
    assert_non_null(strstr(body, "# HELP ferry_server_up "));
    assert_non_null(strstr(body, "ferry_server_up{backend=\"db\",server=\"db1\"} 0\n"));
    /* The same text as `show metrics`, but for the process_* values
     * (CPU time and open descriptors move between the two requests). */
    char *ctl = exchange(fx, "show metrics\n");
    char *cut_body = strstr(body, "# HELP process_"), *cut_ctl = strstr(ctl, "# HELP process_");
    assert_non_null(cut_body);
    assert_non_null(cut_ctl);
    *cut_body = *cut_ctl = '\0';
    assert_string_equal(body, ctl);
    free(ctl);
    free(out);

    out = http_get(fx->metrics_port, "HEAD /metrics HTTP/1.0\n\n");
    assert_true(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_int_equal(strlen(strstr(out, "\r\n\r\n")), 4); /* no body */
    free(out);

    assert_status(fx, "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
    assert_status(fx, "GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 ");
    assert_status(fx, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 ");
    assert_status(fx, "hello\r\n\r\n", "HTTP/1.1 400 ");
    assert_status(fx, "GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 ");
    assert_status(fx, "GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
    /* The client ends before the head does. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(fx->metrics_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(send(fd, "GET /metrics HTTP/1.1\r\n", 23, 0), 23);
    shutdown(fd, SHUT_WR);
    out = read_all(fd);
    close(fd);
    assert_true(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
    free(out);
    /* An endless head. */
    char big[9000];
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    big[sizeof(big) - 1] = '\0';
    assert_status(fx, big, "HTTP/1.1 431 ");
}

/* ---- unsafe paths ---- */

static void test_refused_paths(void **state)
{
    struct fixture *fx = *state;
    char path[192], target[192];
    int err = 0;

    /* A symbolic link, even to nothing. */
    snprintf(path, sizeof(path), "%s/link.sock", fx->dir);
    snprintf(target, sizeof(target), "%s/elsewhere", fx->dir);
    assert_int_equal(symlink(target, path), 0);
    assert_null(ferry_control_start(&fx->f.d, path, 0600, &err));
    assert_int_equal(err, -ELOOP);
    assert_int_equal(access(target, F_OK), -1);

    /* A regular file is not replaced. */
    snprintf(path, sizeof(path), "%s/file.sock", fx->dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_null(ferry_control_start(&fx->f.d, path, 0600, &err));
    assert_int_equal(err, -EEXIST);

    /* A socket still served (ours) is not taken over. */
    assert_null(ferry_control_start(&fx->f.d, fx->path, 0600, &err));
    assert_int_equal(err, -EADDRINUSE);

    /* A directory anyone may write to, without the sticky bit. */
    snprintf(target, sizeof(target), "%s/open", fx->dir);
    assert_int_equal(mkdir(target, 0777), 0);
    assert_int_equal(chmod(target, 0777), 0);
    snprintf(path, sizeof(path), "%s/open/ferry.sock", fx->dir);
    assert_null(ferry_control_start(&fx->f.d, path, 0600, &err));
    assert_int_equal(err, -EPERM);
    /* With the sticky bit (like /tmp) it is fine; a stale socket left there
     * is replaced. */
    assert_int_equal(chmod(target, 01777), 0);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd); /* stale: nobody listens */
    fx->ctl2 = ferry_control_start(&fx->f.d, path, 0600, &err);
    assert_non_null(fx->ctl2);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* It serves too (the runtime is running). */
    char *out = exchange_n(path, "enable server app/app1\n", 23);
    assert_string_equal(out, "ok\n");
    free(out);
    /* (freed with the runtime in teardown) */

    /* A path too long for a Unix socket. */
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_null(ferry_control_start(&fx->f.d, longp, 0600, &err));
    assert_int_equal(err, -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_file),
        cmocka_unit_test(test_show_commands),
        cmocka_unit_test(test_enable_disable),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_metrics_http),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_refused_paths),
        cmocka_unit_test(test_silent_clients),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

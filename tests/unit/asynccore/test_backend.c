/* Backends chosen per runtime: names, every compiled-in backend carrying a
 * read, AC_BACKEND in the environment, a named backend that is missing, and
 * io_uring refused by the kernel (a seccomp filter in a child process). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>

#include "asynccore/backend.h"
#include "asynccore/net.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"
#include "asynccore/timer.h"

/* The AC_BACKEND a test lane set (restored after each test that changes it). */
static char saved_env[32];
static bool had_env;

static void env_save(void)
{
    const char *e = getenv("AC_BACKEND");
    had_env = e != NULL;
    snprintf(saved_env, sizeof(saved_env), "%s", e ? e : "");
    unsetenv("AC_BACKEND");
}

static void env_restore(void)
{
    if (had_env)
        setenv("AC_BACKEND", saved_env, 1);
    else
        unsetenv("AC_BACKEND");
}

static struct ac_runtime *rt_with(enum ac_backend b)
{
    struct ac_runtime_opts o = {.workers = 1, .blocking_threads = 1, .backend = b};
    return ac_runtime_new(&o);
}

static void test_names(void **state)
{
    (void)state;
    const enum ac_backend all[] = {AC_BACKEND_AUTO, AC_BACKEND_EPOLL, AC_BACKEND_IO_URING,
                                   AC_BACKEND_POLL, AC_BACKEND_KQUEUE};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        enum ac_backend b;
        assert_int_equal(ac_backend_parse(ac_backend_name(all[i]), &b), 0);
        assert_int_equal(b, all[i]);
    }
    enum ac_backend b = AC_BACKEND_EPOLL;
    assert_int_equal(ac_backend_parse("iouring", &b), -EINVAL);
    assert_int_equal(ac_backend_parse("", &b), -EINVAL);
    assert_int_equal(ac_backend_parse(NULL, &b), -EINVAL);
    assert_int_equal(b, AC_BACKEND_EPOLL); /* untouched */
    assert_string_equal(ac_backend_name((enum ac_backend)42), "?");
    assert_true(ac_backend_available(AC_BACKEND_POLL));
    assert_true(ac_backend_available(AC_BACKEND_AUTO));
#ifdef __linux__
    assert_true(ac_backend_available(AC_BACKEND_EPOLL)); /* kqueue: only emulated here */
#endif
    assert_int_not_equal(ac_backend_preferred(), AC_BACKEND_AUTO);
    assert_true(ac_backend_available(ac_backend_preferred()));
}

struct late_writer {
    pthread_t tid;
    int fd;
};

static void *late_write(void *arg)
{
    struct late_writer *lw = arg;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(write(lw->fd, "ping", 4), 4);
    return NULL;
}

/* A read that waits for another thread's write, on runtime rt. */
static void read_round(struct ac_runtime *rt)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    struct ac_stream s;
    assert_int_equal(ac_socket_stream_open(&s, w, sv[0]), 0);
    struct late_writer lw = {.fd = sv[1]};
    assert_int_equal(pthread_create(&lw.tid, NULL, late_write, &lw), 0);
    char buf[16];
    struct ac_read r;
    ac_read_init(&r, &s, buf, sizeof(buf));
    assert_int_equal(ac_block_on(w, &r.base), 0);
    assert_int_equal(r.n, 4);
    assert_memory_equal(buf, "ping", 4);
    ac_future_drop(&r.base);
    pthread_join(lw.tid, NULL);
    ac_stream_close(&s);
    /* The close is done when it returns, whatever the backend. */
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);
    close(sv[1]);
}

static void test_each_backend(void **state)
{
    (void)state;
    const enum ac_backend named[] = {AC_BACKEND_EPOLL, AC_BACKEND_IO_URING, AC_BACKEND_POLL,
                                     AC_BACKEND_KQUEUE};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (!ac_backend_available(named[i]))
            continue;
        struct ac_runtime *rt = rt_with(named[i]);
        if (rt == NULL && named[i] == AC_BACKEND_IO_URING) {
            print_message("io_uring refused here (%s): not tested\n", strerror(errno));
            continue;
        }
        assert_non_null(rt);
        assert_int_equal(ac_runtime_backend(rt), named[i]);
        assert_int_equal(ac_runtime_backend_fallback(rt), 0);
        read_round(rt);
        ac_runtime_free(rt);
    }
}

static void test_missing_backend(void **state)
{
    (void)state;
    for (enum ac_backend b = AC_BACKEND_EPOLL; b <= AC_BACKEND_KQUEUE; b++) {
        if (ac_backend_available(b))
            continue;
        errno = 0;
        assert_null(rt_with(b));
        assert_int_equal(errno, ENOSYS);
    }
}

static void test_environment(void **state)
{
    (void)state;
    env_save();
    setenv("AC_BACKEND", "poll", 1);
    struct ac_runtime *rt = rt_with(AC_BACKEND_AUTO);
    assert_non_null(rt);
    assert_int_equal(ac_runtime_backend(rt), AC_BACKEND_POLL);
    read_round(rt);
    ac_runtime_free(rt);
    /* A named backend is not overridden. */
    rt = rt_with(AC_BACKEND_EPOLL);
    assert_non_null(rt);
    assert_int_equal(ac_runtime_backend(rt), AC_BACKEND_EPOLL);
    ac_runtime_free(rt);
    /* "auto" in the environment is auto. */
    setenv("AC_BACKEND", "auto", 1);
    rt = rt_with(AC_BACKEND_AUTO);
    assert_non_null(rt);
    assert_true(ac_runtime_backend(rt) == ac_backend_preferred() ||
                ac_runtime_backend_fallback(rt) < 0);
    ac_runtime_free(rt);
    setenv("AC_BACKEND", "epol", 1);
    errno = 0;
    assert_null(rt_with(AC_BACKEND_AUTO));
    assert_int_equal(errno, EINVAL);
    env_restore();
}

/* In a child: io_uring_setup(2) fails with EPERM from now on, as under
 * Docker's default seccomp profile. */
static void refuse_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        _exit(90);
}

/* Child exit codes: 0 as expected, else the check that failed. */
static int refused_child(void)
{
    refuse_io_uring();
    errno = 0;
    if (rt_with(AC_BACKEND_IO_URING) != NULL || errno != EPERM)
        return 1; /* named: a start failure with the kernel's reason */
    struct ac_runtime *rt = rt_with(AC_BACKEND_AUTO);
    if (rt == NULL)
        return 2; /* auto always starts */
    int rc = 0;
    if (ac_backend_preferred() == AC_BACKEND_IO_URING) {
        if (ac_runtime_backend(rt) != AC_BACKEND_EPOLL)
            rc = 3;
        else if (ac_runtime_backend_fallback(rt) != -EPERM)
            rc = 4;
    } else if (ac_runtime_backend_fallback(rt) != 0) {
        rc = 5; /* auto did not want io_uring: nothing to warn about */
    }
    ac_runtime_free(rt);
    return rc;
}

static void test_io_uring_refused(void **state)
{
    (void)state;
    if (!ac_backend_available(AC_BACKEND_IO_URING)) {
        print_message("io_uring not compiled in: not tested\n");
        return;
    }
    env_save();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(refused_child());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    env_restore();
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}


/* ---- drops on every backend: a future dropped while its operation waits
 * leaves nothing registered and nothing the kernel may still report into;
 * run under ASan, a stale completion would be a use after free. ---- */

/* Polls `inner` once (so that it registers and waits), then is Ready. */
struct poll_once {
    struct ac_future base;
    struct ac_future *inner;
    ac_poll_t got;
};

static ac_poll_t poll_once_poll(struct ac_future *f, struct ac_context *cx)
{
    struct poll_once *p = (struct poll_once *)f;
    p->got = ac_future_poll(p->inner, cx);
    return AC_READY;
}

static const struct ac_future_vtable poll_once_vt = {poll_once_poll, NULL};

static ac_poll_t once(struct ac_worker *w, struct ac_future *inner)
{
    struct poll_once p = {{&poll_once_vt}, inner, AC_READY};
    assert_int_equal(ac_block_on(w, &p.base), 0);
    return p.got;
}

/* A few loop turns: completions for what was dropped arrive and are ignored. */
static void turns(struct ac_worker *w)
{
    for (int i = 0; i < 3; i++) {
        struct ac_sleep sl;
        ac_sleep_init(&sl, 2);
        assert_int_equal(ac_block_on(w, &sl.base), 0);
        ac_future_drop(&sl.base);
    }
}

static unsigned open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    unsigned n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void drop_mid_read(struct ac_worker *w)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct ac_stream s;
    assert_int_equal(ac_socket_stream_open(&s, w, sv[0]), 0);
    char buf[64];
    struct ac_read r;
    ac_read_init(&r, &s, buf, sizeof(buf));
    assert_int_equal(once(w, &r.base), AC_PENDING);
    ac_future_drop(&r.base);
    assert_int_equal(write(sv[1], "late", 4), 4); /* readiness for a dropped read */
    turns(w);
    /* The stream still works: a new read gets the bytes. */
    ac_read_init(&r, &s, buf, sizeof(buf));
    assert_int_equal(ac_block_on(w, &r.base), 0);
    assert_int_equal(r.n, 4);
    ac_future_drop(&r.base);
    ac_stream_close(&s);
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);
    close(sv[1]);
}

static void drop_mid_write(struct ac_worker *w)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    struct ac_stream s;
    assert_int_equal(ac_socket_stream_open(&s, w, sv[0]), 0);
    enum { LEN = 1 << 20 };
    char *big = calloc(1, LEN);
    assert_non_null(big);
    struct ac_write_all wa;
    ac_write_all_init(&wa, &s, big, LEN);
    assert_int_equal(once(w, &wa.base), AC_PENDING); /* the peer reads nothing */
    ac_future_drop(&wa.base);
    free(big); /* a readiness backend's kernel holds no pointer into it */
    char sink[65536];
    while (read(sv[1], sink, sizeof(sink)) > 0)
        ; /* room again: writable for a dropped write */
    turns(w);
    ac_stream_close(&s);
    ssize_t n;
    while ((n = read(sv[1], sink, sizeof(sink))) > 0)
        ;
    assert_int_equal(n, 0);
    close(sv[1]);
}

static void drop_mid_accept(struct ac_worker *w)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int lfd = ac_listen_socket((struct sockaddr *)&sa, sizeof(sa), 16, 0);
    assert_true(lfd >= 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    struct ac_listener l;
    assert_int_equal(ac_listener_open(&l, w, lfd, true, 0), 0);
    struct ac_accept a;
    ac_accept_init(&a, &l);
    assert_int_equal(once(w, &a.base), AC_PENDING);
    ac_future_drop(&a.base);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    turns(w); /* the connection's readiness meets no accept */
    ac_accept_init(&a, &l);
    assert_int_equal(ac_block_on(w, &a.base), 0);
    assert_true(a.fd >= 0);
    close(a.fd);
    ac_future_drop(&a.base);
    ac_listener_close(&l);
    close(c);
}

/* A task that reads forever, owning its stream: dropped at runtime teardown. */
struct reader_task {
    struct ac_future base;
    struct ac_stream s;
    struct ac_read r;
    char buf[16];
};

static ac_poll_t reader_poll(struct ac_future *f, struct ac_context *cx)
{
    struct reader_task *t = (struct reader_task *)f;
    return ac_future_poll(&t->r.base, cx) == AC_READY ? AC_READY : AC_PENDING;
}

static void reader_drop(struct ac_future *f)
{
    struct reader_task *t = (struct reader_task *)f;
    ac_future_drop(&t->r.base);
    ac_stream_close(&t->s);
}

static const struct ac_future_vtable reader_vt = {reader_poll, reader_drop};

static void dealloc_free(struct ac_future *f) { free(f); }

/* Teardown with tasks waiting on I/O: their streams are closed (the peer
 * sees EOF) and no descriptor is left open. */
static void drop_at_shutdown(enum ac_backend b)
{
    unsigned before = open_fds();
    struct ac_runtime *rt = rt_with(b);
    assert_non_null(rt);
    struct ac_worker *w = ac_runtime_worker(rt, 0);
    enum { N = 8 };
    int peers[N];
    for (int i = 0; i < N; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                         0);
        struct reader_task *t = calloc(1, sizeof(*t));
        assert_non_null(t);
        t->base.vt = &reader_vt;
        assert_int_equal(ac_socket_stream_open(&t->s, w, sv[0]), 0);
        ac_read_init(&t->r, &t->s, t->buf, sizeof(t->buf));
        assert_int_equal(ac_spawn(w, &t->base, dealloc_free), 0);
        peers[i] = sv[1];
    }
    turns(w); /* every reader polled once: registered and waiting */
    assert_int_equal(ac_reactor_registrations(w), N);
    ac_runtime_free(rt);
    char c;
    for (int i = 0; i < N; i++) {
        assert_int_equal(read(peers[i], &c, 1), 0);
        close(peers[i]);
    }
    assert_int_equal(open_fds(), before);
}

static void test_drops(void **state)
{
    (void)state;
    for (enum ac_backend b = AC_BACKEND_EPOLL; b <= AC_BACKEND_KQUEUE; b++) {
        if (!ac_backend_available(b))
            continue;
        struct ac_runtime *rt = rt_with(b);
        if (rt == NULL && b == AC_BACKEND_IO_URING)
            continue; /* refused here: test_each_backend said so */
        assert_non_null(rt);
        struct ac_worker *w = ac_runtime_worker(rt, 0);
        drop_mid_read(w);
        drop_mid_write(w);
        drop_mid_accept(w);
        turns(w);
        assert_int_equal(ac_reactor_registrations(w), 0);
        ac_runtime_free(rt);
        drop_at_shutdown(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_each_backend),
        cmocka_unit_test(test_missing_backend),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_io_uring_refused),
        cmocka_unit_test(test_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

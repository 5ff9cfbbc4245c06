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

#include "asynccore/backend.h"
#include "asynccore/runtime.h"
#include "asynccore/stream.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_each_backend),
        cmocka_unit_test(test_missing_backend),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_io_uring_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The kevent(2) emulation (tests only) against what FreeBSD's manual says,
 * so that the asynccore suite run over it tests the kqueue backend and not
 * the emulation's mistakes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static const struct timespec zero = {0, 0};

static int change(int kq, uintptr_t ident, short filter, unsigned short flags, unsigned fflags,
                  void *udata)
{
    struct kevent ev;
    EV_SET(&ev, ident, filter, flags, fflags, 0, udata);
    return kevent(kq, &ev, 1, NULL, 0, NULL) < 0 ? -errno : 0;
}

static int wait_events(int kq, struct kevent *out, int max)
{
    return kevent(kq, NULL, 0, out, max, &zero);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* EV_ADD reports current readiness; EV_CLEAR reports it again only after
 * new data; EV_ADD again modifies (udata), never fails with EEXIST. */
static void test_read_clear_and_modify(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2];
    struct kevent ev[4];
    char b[8];
    pair(sv);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, (void *)1), 0);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(write(sv[1], "abc", 3), 3);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(ev[0].ident, (uintptr_t)sv[0]);
    assert_int_equal(ev[0].filter, EVFILT_READ);
    assert_int_equal(ev[0].data, 3);
    assert_ptr_equal(ev[0].udata, (void *)1);
    assert_int_equal(wait_events(kq, ev, 4), 0); /* cleared: not again */
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, (void *)2), 0);
    assert_int_equal(write(sv[1], "d", 1), 1);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_ptr_equal(ev[0].udata, (void *)2);
    assert_int_equal(ev[0].data, 4);
    assert_int_equal(read(sv[0], b, sizeof(b)), 4);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

/* Without EV_CLEAR the filter is level-triggered; EV_DISABLE hides it,
 * EV_ENABLE brings it back; EV_DELETE twice is ENOENT. */
static void test_level_enable_disable_delete(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2];
    struct kevent ev[4];
    pair(sv);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD, 0, NULL), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(wait_events(kq, ev, 4), 1); /* level: still readable */
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DISABLE, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ENABLE, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), -ENOENT);
    assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ENABLE, 0, NULL), -ENOENT);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

/* EV_ONESHOT: reported once, then gone. */
static void test_oneshot(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2];
    struct kevent ev[4];
    pair(sv);
    assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(ev[0].filter, EVFILT_WRITE);
    assert_true(ev[0].data > 0); /* send space */
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, 0, NULL), -ENOENT);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

/* EV_EOF on the read filter when the peer shuts its write half, on the
 * write filter too once the peer is gone. */
static void test_eof(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2];
    struct kevent ev[4];
    pair(sv);
    struct kevent ch[2];
    EV_SET(&ch[0], sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
    EV_SET(&ch[1], sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
    assert_int_equal(kevent(kq, ch, 2, NULL, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 1); /* writable */
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    int n = wait_events(kq, ev, 4);
    assert_true(n >= 1);
    assert_int_equal(ev[0].filter, EVFILT_READ);
    assert_true(ev[0].flags & EV_EOF);
    close(sv[1]);
    n = wait_events(kq, ev, 4);
    int wr_eof = 0;
    for (int i = 0; i < n; i++)
        if (ev[i].filter == EVFILT_WRITE && (ev[i].flags & EV_EOF))
            wr_eof = 1;
    assert_true(wr_eof);
    close(sv[0]);
    close(kq);
}

/* Changelist errors: EV_ERROR entries while there is room, processing goes
 * on; without room kevent() fails with errno. EV_RECEIPT reports success as
 * EV_ERROR with data 0. Closed descriptors are EBADF; unknown filters EINVAL. */
static void test_errors_and_receipt(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2];
    struct kevent ch[3], ev[3];
    pair(sv);
    EV_SET(&ch[0], sv[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);          /* ENOENT */
    EV_SET(&ch[1], sv[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, NULL); /* ok, receipt */
    EV_SET(&ch[2], sv[0], -99, EV_ADD, 0, 0, NULL);                    /* EINVAL */
    assert_int_equal(kevent(kq, ch, 3, ev, 3, NULL), 3);
    assert_true(ev[0].flags & EV_ERROR);
    assert_int_equal(ev[0].data, ENOENT);
    assert_true(ev[1].flags & EV_ERROR);
    assert_int_equal(ev[1].data, 0);
    assert_int_equal(ev[2].data, EINVAL);
    assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, 0, NULL), -ENOENT);
    int dead[2];
    pair(dead);
    close(dead[0]);
    close(dead[1]);
    assert_int_equal(change(kq, dead[0], EVFILT_READ, EV_ADD, 0, NULL), -EBADF);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

/* close(2) removes the descriptor's knotes: a new descriptor with the same
 * number starts without any. */
static void test_close_drops_knotes(void **state)
{
    (void)state;
    int kq = kqueue(), sv[2], sv2[2];
    struct kevent ev[4];
    pair(sv);
    int fd = sv[0];
    assert_int_equal(change(kq, fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, (void *)7), 0);
    close(sv[0]);
    close(sv[1]);
    pair(sv2);
    assert_int_equal(sv2[0], fd); /* the lowest number is reused */
    assert_int_equal(change(kq, fd, EVFILT_READ, EV_DELETE, 0, NULL), -ENOENT);
    assert_int_equal(write(sv2[1], "y", 1), 1);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    close(sv2[0]);
    close(sv2[1]);
    close(kq);
}

/* EVFILT_USER: NOTE_TRIGGER fires it, EV_CLEAR resets it, the fflags
 * controls combine, and without EV_CLEAR it stays triggered. */
static void test_user(void **state)
{
    (void)state;
    int kq = kqueue();
    struct kevent ev[4];
    assert_int_equal(change(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, (void *)9), 0);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(change(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x5, NULL), 0);
    assert_int_equal(change(kq, 1, EVFILT_USER, 0, NOTE_FFOR | 0x2, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(ev[0].filter, EVFILT_USER);
    assert_int_equal(ev[0].ident, 1);
    assert_int_equal(ev[0].fflags, 0x7);
    assert_ptr_equal(ev[0].udata, (void *)9);
    assert_int_equal(wait_events(kq, ev, 4), 0); /* cleared */
    assert_int_equal(change(kq, 2, EVFILT_USER, EV_ADD, 0, NULL), 0);
    assert_int_equal(change(kq, 2, EVFILT_USER, 0, NOTE_TRIGGER, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 1);
    assert_int_equal(wait_events(kq, ev, 4), 1); /* no EV_CLEAR: stays */
    assert_int_equal(change(kq, 2, EVFILT_USER, EV_DELETE, 0, NULL), 0);
    assert_int_equal(wait_events(kq, ev, 4), 0);
    assert_int_equal(change(kq, 3, EVFILT_USER, 0, NOTE_TRIGGER, NULL), -ENOENT);
    close(kq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_clear_and_modify),
        cmocka_unit_test(test_level_enable_disable_delete),
        cmocka_unit_test(test_oneshot),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_errors_and_receipt),
        cmocka_unit_test(test_close_drops_knotes),
        cmocka_unit_test(test_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

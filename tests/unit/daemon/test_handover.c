/* Unit tests: daemon/lifecycle/handover.c (the upgrade channel's records). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lifecycle/handover.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

/* Same open file description: fstat says the same inode. */
static void assert_same_file(int a, int b)
{
    struct stat sa, sb;
    assert_int_equal(fstat(a, &sa), 0);
    assert_int_equal(fstat(b, &sb), 0);
    assert_true(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev);
}

/* Everything an old process sends arrives: sockets with their keys and
 * descriptors (a group of three), a state larger than one record, the
 * ticket key, the end with the pid. */
static void test_round_trip(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    int group[3];
    for (int i = 0; i < 3; i++)
        group[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct ferry_handed_sock l = {.kind = FERRY_HANDED_LISTENER, .nfds = 3, .fds = group};
    snprintf(l.addr, sizeof(l.addr), "127.0.0.1:8080");
    struct ferry_handed_sock named = {.kind = FERRY_HANDED_LISTENER, .inherited = true,
                                      .nfds = 1, .fds = &ctl};
    snprintf(named.addr, sizeof(named.addr), "[::]:80");
    snprintf(named.sd_name, sizeof(named.sd_name), "web");
    struct ferry_handed_sock c = {.kind = FERRY_HANDED_CONTROL, .nfds = 1, .fds = &ctl};
    snprintf(c.addr, sizeof(c.addr), "/run/ferry/ferry.sock");
    size_t big = 3 * FERRY_HANDOVER_RECORD_MAX + 17;
    char *text = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)('a' + i % 26);
    text[big] = '\0';
    unsigned char key[80];
    for (int i = 0; i < 80; i++)
        key[i] = (unsigned char)i;
    /* The socket buffer holds it all: the receiver reads afterwards. */
    int sz = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    assert_int_equal(ferry_handover_send_sock(sv[0], &l), 0);
    assert_int_equal(ferry_handover_send_sock(sv[0], &named), 0);
    assert_int_equal(ferry_handover_send_sock(sv[0], &c), 0);
    assert_int_equal(ferry_handover_send_ticket_key(sv[0], key), 0);
    assert_int_equal(ferry_handover_send_state(sv[0], text), 0);
    assert_int_equal(ferry_handover_send_end(sv[0], 4242), 0);

    struct ferry_handover h;
    char err[256] = "";
    assert_int_equal(ferry_handover_recv(sv[1], 5000, &h, err, sizeof(err)), 0);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.old_pid, 4242);
    assert_true(h.has_ticket_key);
    assert_memory_equal(h.ticket_key, key, 80);
    assert_int_equal(h.state_len, big);
    assert_string_equal(h.state, text);

    struct ferry_handed_sock *s = ferry_handover_find(&h, FERRY_HANDED_LISTENER,
                                                      "127.0.0.1:8080", NULL);
    assert_non_null(s);
    assert_int_equal(s->nfds, 3);
    for (int i = 0; i < 3; i++)
        assert_same_file(s->fds[i], group[i]);
    assert_false(s->inherited);
    /* By name only when asked by name; by address only when it has none. */
    assert_null(ferry_handover_find(&h, FERRY_HANDED_LISTENER, "[::]:80", NULL));
    s = ferry_handover_find(&h, FERRY_HANDED_LISTENER, NULL, "web");
    assert_non_null(s);
    assert_true(s->inherited);
    s->claimed = true;
    assert_null(ferry_handover_find(&h, FERRY_HANDED_LISTENER, NULL, "web"));
    close(s->fds[0]); /* claimed: ours to close now */
    s = ferry_handover_find(&h, FERRY_HANDED_CONTROL, "/run/ferry/ferry.sock", NULL);
    assert_non_null(s);
    assert_same_file(s->fds[0], ctl);
    assert_null(ferry_handover_find(&h, FERRY_HANDED_METRICS, "/run/ferry/ferry.sock", NULL));
    ferry_handover_free(&h); /* closes the unclaimed descriptors and the channel */
    assert_int_equal(h.chan, -1);
    for (int i = 0; i < 3; i++)
        close(group[i]);
    close(ctl);
    close(sv[0]);
    free(text);
}

/* The answers: errors and ready, then the old process's go. */
static void test_messages(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    assert_int_equal(ferry_handover_send_msg(sv[1], 'e', "ferry.ini:3: unknown key 'x'"), 0);
    char type, buf[128];
    ssize_t n = ferry_handover_recv_msg(sv[0], &type, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(type, 'e');
    assert_string_equal(buf, "ferry.ini:3: unknown key 'x'");
    /* An empty payload is a record, not the end. */
    assert_int_equal(ferry_handover_send_msg(sv[0], 'g', ""), 0);
    assert_int_equal(ferry_handover_ready(sv[1], "1.2.3", 5000), 0);
    n = ferry_handover_recv_msg(sv[0], &type, buf, sizeof(buf));
    assert_int_equal(type, 'r');
    long pid;
    char version[16];
    assert_int_equal(sscanf(buf, "%ld %15s", &pid, version), 2);
    assert_int_equal(pid, (long)getpid());
    assert_string_equal(version, "1.2.3");
    /* The old process gone: the end of the channel, and no go. */
    close(sv[0]);
    assert_int_equal(ferry_handover_ready(sv[1], "1.2.3", 5000), -EPIPE);
    close(sv[1]);
    pair(sv);
    assert_int_equal(ferry_handover_send_msg(sv[1], 'r', "x"), 0);
    close(sv[1]);
    n = ferry_handover_recv_msg(sv[0], &type, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(ferry_handover_recv_msg(sv[0], &type, buf, sizeof(buf)), 0);
    close(sv[0]);
}

/* A handover cut short (the old process died) is an error, not a hang. */
static void test_truncated(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct ferry_handed_sock l = {.kind = FERRY_HANDED_LISTENER, .nfds = 1, .fds = &fd};
    snprintf(l.addr, sizeof(l.addr), "127.0.0.1:1");
    assert_int_equal(ferry_handover_send_sock(sv[0], &l), 0);
    close(sv[0]);
    struct ferry_handover h;
    char err[256] = "";
    assert_int_equal(ferry_handover_recv(sv[1], 5000, &h, err, sizeof(err)), -ECONNRESET);
    assert_non_null(strstr(err, "handover"));
    ferry_handover_free(&h);
    pair(sv);
    assert_int_equal(ferry_handover_recv(sv[1], 50, &h, err, sizeof(err)), -ETIMEDOUT);
    ferry_handover_free(&h);
    close(sv[0]);
    close(fd);
}

/* $FERRY_UPGRADE_FD: read once, unset, and only a seqpacket socket counts. */
static void test_env(void **state)
{
    (void)state;
    unsetenv(FERRY_HANDOVER_ENV);
    assert_int_equal(ferry_handover_channel_from_env(), -1);
    setenv(FERRY_HANDOVER_ENV, "12x", 1);
    assert_int_equal(ferry_handover_channel_from_env(), -EINVAL);
    assert_null(getenv(FERRY_HANDOVER_ENV));
    int p[2];
    assert_int_equal(pipe(p), 0);
    char v[16];
    snprintf(v, sizeof(v), "%d", p[0]);
    setenv(FERRY_HANDOVER_ENV, v, 1);
    assert_int_equal(ferry_handover_channel_from_env(), -EINVAL);
    close(p[0]);
    close(p[1]);
    int sv[2];
    pair(sv);
    snprintf(v, sizeof(v), "%d", sv[1]);
    setenv(FERRY_HANDOVER_ENV, v, 1);
    assert_int_equal(ferry_handover_channel_from_env(), sv[1]);
    assert_null(getenv(FERRY_HANDOVER_ENV));
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_messages),
        cmocka_unit_test(test_truncated),  cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

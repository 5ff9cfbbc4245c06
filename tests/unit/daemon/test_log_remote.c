/* Unit tests: daemon/log/log_remote.c (RFC 5424 to a remote syslog server)
 * against real loopback sockets: datagrams over UDP, octet-counted frames
 * over TCP through a stream that fills up, and lines lost with the
 * connection counted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log_remote.h"

/* A loopback socket of type bound to a free port; *addr names it. */
static int server(int type, struct ferry_addr *addr)
{
    int fd = socket(AF_INET, type, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (type == SOCK_STREAM) {
        int small = 4096;
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        assert_int_equal(listen(fd, 4), 0);
    }
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    char text[64];
    snprintf(text, sizeof(text), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    assert_int_equal(ferry_parse_addr(text, true, addr), 0);
    return fd;
}

static void test_udp_one_datagram_a_line(void **state)
{
    (void)state;
    struct ferry_addr a;
    int s = server(SOCK_DGRAM, &a);
    _Atomic uint64_t dropped = 0;
    struct ferry_log_remote r;
    assert_int_equal(ferry_log_remote_init(&r, &a, false, 4242, &dropped), 0);
    /* 2026-12-07T16:53:10.123Z */
    assert_true(ferry_log_remote_put(&r, 6, 1796662390123LL, "level=info msg=one\n", 19));
    assert_true(ferry_log_remote_put(&r, 3, 1796662390124LL, "level=error msg=two", 19));
    char buf[512];
    ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    char want[512];
    snprintf(want, sizeof(want), "<30>1 2026-12-07T16:53:10.123Z %s ferryd 4242 - - level=info msg=one",
             r.hostname);
    assert_string_equal(buf, want);
    n = recv(s, buf, sizeof(buf) - 1, 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "<27>1 2026-12-07T16:53:10.124Z "));
    assert_non_null(strstr(buf, " - - level=error msg=two"));
    assert_int_equal(dropped, 0);
    /* No server any more: refused datagrams are counted, never waited for. */
    close(s);
    for (int i = 0; i < 20; i++)
        assert_true(ferry_log_remote_put(&r, 6, 0, "x", 1));
    assert_true(dropped > 0);
    ferry_log_remote_close(&r);
}

/* Reads frames "LEN MSG" from fd until `want` arrived or the peer is quiet. */
static int read_frames(int fd, char *buf, size_t cap, size_t *len, int want)
{
    int frames = 0;
    for (;;) {
        size_t pos = 0;
        frames = 0;
        while (pos < *len) {
            char *end;
            unsigned long n = strtoul(buf + pos, &end, 10);
            if (end == buf + pos || end >= buf + *len || *end != ' ' ||
                (size_t)(end - buf) + 1 + n > *len)
                break;
            pos = (size_t)(end - buf) + 1 + n;
            frames++;
        }
        if (frames >= want)
            return frames;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0 || *len == cap)
            return frames;
        ssize_t n = recv(fd, buf + *len, cap - *len, 0);
        if (n <= 0)
            return frames;
        *len += (size_t)n;
    }
}

static void test_tcp_frames_through_a_full_stream(void **state)
{
    (void)state;
    struct ferry_addr a;
    int ls = server(SOCK_STREAM, &a);
    _Atomic uint64_t dropped = 0;
    struct ferry_log_remote r;
    assert_int_equal(ferry_log_remote_init(&r, &a, true, 7, &dropped), 0);
    char line[200];
    memset(line, 'x', sizeof(line));
    /* While the server does not read, lines queue (connect in progress,
     * then a full stream) until the buffer is full: put says "later". */
    int taken = 0;
    for (int i = 0; i < 100000; i++) {
        if (!ferry_log_remote_put(&r, 6, 0, line, sizeof(line)))
            break;
        (void)ferry_log_remote_flush(&r);
        taken++;
    }
    assert_true(taken > 100 && taken < 100000);
    assert_int_equal(dropped, 0);
    int c = accept(ls, NULL, NULL);
    assert_true(c >= 0);
    size_t cap = (size_t)taken * 260 + 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    /* The server reads: every queued frame arrives whole, in order. */
    for (int k = 0; k < 2000 && ferry_log_remote_flush(&r) >= 0; k++) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = recv(c, buf + len, cap - len, 0);
            if (n > 0)
                len += (size_t)n;
        }
    }
    int frames = read_frames(c, buf, cap, &len, taken);
    assert_int_equal(frames, taken);
    assert_int_equal(dropped, 0);
    /* Each is "LEN <30>1 ... ferryd 7 - - xxx". */
    char *sp = strchr(buf, ' ');
    assert_non_null(sp);
    assert_memory_equal(sp + 1, "<30>1 ", 6);
    assert_non_null(strstr(buf, " ferryd 7 - - xxxx"));
    /* The server goes away with lines queued: they are counted. */
    close(c);
    close(ls);
    for (int i = 0; i < 50; i++) {
        (void)ferry_log_remote_put(&r, 6, 0, line, sizeof(line));
        (void)ferry_log_remote_flush(&r);
    }
    assert_true(dropped > 0);
    assert_true(r.fd < 0 || r.connecting); /* given up, trying again later */
    free(buf);
    ferry_log_remote_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_one_datagram_a_line),
        cmocka_unit_test(test_tcp_frames_through_a_full_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Reading health-check answers: the strict HTTP status-line parser, fed
 * whole and byte by byte, and the byte search of send-expect. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/health_parse.h"

/* Every prefix of a good line needs more bytes; the whole gives the code. */
static void expect_status(const char *line, int code)
{
    size_t len = strlen(line);
    for (size_t i = 0; i < len; i++)
        if (ferry_http_status_line(line, i) != 0)
            fail_msg("prefix %zu of \"%s\" not incomplete", i, line);
    assert_int_equal(ferry_http_status_line(line, len), code);
}

static void test_good_lines(void **state)
{
    (void)state;
    expect_status("HTTP/1.1 200 OK\r\n", 200);
    expect_status("HTTP/1.0 503 Service Unavailable\r\n", 503);
    expect_status("HTTP/1.1 204 \r\n", 204);
    expect_status("HTTP/1.1 302\r\n", 302);
    expect_status("HTTP/1.1 100 Continue\r\n", 100);
    expect_status("HTTP/1.1 599 x\ty \xc3\xa9\r\n", 599);
    /* What follows the line is not looked at. */
    const char *full = "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(ferry_http_status_line(full, strlen(full)), 404);
}

static void test_bad_lines(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n", "HTTP/1.1 200 OK\n", "http/1.1 200 OK\r\n", "HTTP/1.1  200 OK\r\n",
        "HTTP/1.1 2000 OK\r\n", "HTTP/1.1 20 OK\r\n", "HTTP/1.1 600 OK\r\n", "HTTP/1.1 099 OK\r\n",
        "HTTP/1.x 200 OK\r\n", "HTTP/1.1 200 O\x01K\r\n", "HTTP/1.1 200 OK\rX", " HTTP/1.1 200\r\n",
        "SSH-2.0-OpenSSH\r\n", "HTTP/1.1\t200 OK\r\n", "HTTP/1.1 2a0 OK\r\n", "HTTP/1.12 200\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ferry_http_status_line(bad[i], strlen(bad[i])) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
    /* Early rejection: the first wrong byte is enough. */
    assert_int_equal(ferry_http_status_line("SSH", 3), -EINVAL);
    assert_int_equal(ferry_http_status_line("HTTP/1.1 7", 10), -EINVAL);
    /* A line that never ends is bounded. */
    char longline[FERRY_HTTP_STATUS_LINE_MAX + 16];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "HTTP/1.1 200 ", 13);
    assert_int_equal(ferry_http_status_line(longline, FERRY_HTTP_STATUS_LINE_MAX - 1), 0);
    assert_int_equal(ferry_http_status_line(longline, FERRY_HTTP_STATUS_LINE_MAX), -EINVAL);
}

static void test_contains(void **state)
{
    (void)state;
    assert_true(ferry_bytes_contain("+PONG\r\n", 7, "PONG", 4));
    assert_true(ferry_bytes_contain("a\0b", 3, "\0b", 2));
    assert_false(ferry_bytes_contain("+PON", 4, "PONG", 4));
    assert_false(ferry_bytes_contain("abc", 3, "", 0));
    assert_false(ferry_bytes_contain("", 0, "a", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_contains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

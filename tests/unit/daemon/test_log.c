/* Unit tests: daemon/log.c (logfmt lines, quoting, levels, one write per line). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static size_t fmt(char *buf, size_t cap, enum ferry_log_level lvl, const char *msg,
                  const char *kv, ...) __attribute__((format(printf, 5, 6)));
static size_t fmt(char *buf, size_t cap, enum ferry_log_level lvl, const char *msg,
                  const char *kv, ...)
{
    va_list ap;
    va_start(ap, kv);
    size_t n = ferry_log_vformat(buf, cap, lvl, msg, kv, ap);
    va_end(ap);
    return n;
}

static void test_format_line(void **state)
{
    (void)state;
    char buf[256];
    size_t n = fmt(buf, sizeof(buf), FERRY_LOG_INFO, "conn", "id=%d listener=%s", 17, "web");
    assert_string_equal(buf, "info conn id=17 listener=web\n");
    assert_int_equal(n, strlen(buf));
    fmt(buf, sizeof(buf), FERRY_LOG_ERROR, "listener socket closed", NULL);
    assert_string_equal(buf, "error listener socket closed\n");
    const char *empty = "";
    fmt(buf, sizeof(buf), FERRY_LOG_WARN, "x", empty, 0);
    assert_string_equal(buf, "warn x\n");
    fmt(buf, sizeof(buf), FERRY_LOG_DEBUG, "y", "a=%s", "1");
    assert_string_equal(buf, "debug y a=1\n");
}

static void test_format_flattens_and_cuts(void **state)
{
    (void)state;
    char buf[64];
    fmt(buf, sizeof(buf), FERRY_LOG_INFO, "two\nlines", "k=%s", "a\rb");
    assert_string_equal(buf, "info two lines k=a b\n");
    char big[200];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    size_t n = fmt(buf, sizeof(buf), FERRY_LOG_INFO, "m", "v=%s", big);
    assert_true(n < sizeof(buf));
    assert_int_equal(n, strlen(buf));
    assert_memory_equal(buf + n - 4, "...\n", 4);
    assert_memory_equal(buf, "info m v=vvv", 12);
    /* A message alone too long. */
    n = fmt(buf, sizeof(buf), FERRY_LOG_INFO, big, "k=%d", 1);
    assert_int_equal(n, strlen(buf));
    assert_memory_equal(buf + n - 4, "...\n", 4);
    assert_null(strstr(buf, "k=1"));
}

static void test_quote(void **state)
{
    (void)state;
    char b[64];
    assert_string_equal(ferry_log_quote("plain", b, sizeof(b)), "plain");
    assert_string_equal(ferry_log_quote("", b, sizeof(b)), "\"\"");
    assert_string_equal(ferry_log_quote(NULL, b, sizeof(b)), "\"\"");
    assert_string_equal(ferry_log_quote("has space", b, sizeof(b)), "\"has space\"");
    assert_string_equal(ferry_log_quote("say \"hi\"", b, sizeof(b)), "\"say \\\"hi\\\"\"");
    assert_string_equal(ferry_log_quote("a=b", b, sizeof(b)), "\"a=b\"");
    assert_string_equal(ferry_log_quote("back\\slash x", b, sizeof(b)), "\"back\\\\slash x\"");
    assert_string_equal(ferry_log_quote("l1\nl2\t\x01", b, sizeof(b)), "\"l1\\nl2\\t\\x01\"");
    /* A backslash alone is plain (no space, no quote). */
    assert_string_equal(ferry_log_quote("a\\b", b, sizeof(b)), "a\\b");
}

static void test_quote_truncates_safely(void **state)
{
    (void)state;
    char b[8];
    /* Quoted and cut: still ends with a quote, no half escape. */
    ferry_log_quote("a b c d e f g", b, sizeof(b));
    assert_int_equal(strlen(b), 7);
    assert_int_equal(b[0], '"');
    assert_int_equal(b[6], '"');
    ferry_log_quote("\"\"\"\"\"\"", b, sizeof(b));
    assert_string_equal(b, "\"\\\"\\\"\""); /* two escapes fit: "\"\"" */
    ferry_log_quote("abcdefghijkl", b, sizeof(b));
    assert_string_equal(b, "abcdefg");
    char tiny[2];
    ferry_log_quote("a b", tiny, sizeof(tiny));
    assert_string_equal(tiny, "");
}

static void test_levels(void **state)
{
    (void)state;
    ferry_log_set_level(FERRY_LOG_WARN);
    assert_int_equal(ferry_log_get_level(), FERRY_LOG_WARN);
    assert_true(ferry_log_enabled(FERRY_LOG_ERROR));
    assert_true(ferry_log_enabled(FERRY_LOG_WARN));
    assert_false(ferry_log_enabled(FERRY_LOG_INFO));
    assert_false(ferry_log_enabled(FERRY_LOG_DEBUG));
    ferry_log_set_level(FERRY_LOG_DEBUG);
    assert_true(ferry_log_enabled(FERRY_LOG_DEBUG));
    ferry_log_set_level(FERRY_LOG_INFO);
    assert_string_equal(ferry_log_level_name(FERRY_LOG_WARN), "warn");
}

/* ferry_log writes whole lines to stderr, filtered by level. */
static void test_writes_to_stderr(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    ferry_log_set_level(FERRY_LOG_INFO);
    ferry_log(FERRY_LOG_INFO, "started", "pid=%d", 42);
    ferry_log(FERRY_LOG_DEBUG, "hidden", "x=%d", 1);
    char q[32];
    ferry_log(FERRY_LOG_WARN, "connect failed", "error=%s", ferry_log_quote("No route", q, sizeof(q)));
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(p[1]);
    char buf[256] = {0};
    size_t got = 0;
    ssize_t r;
    while ((r = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    close(p[0]);
    assert_string_equal(buf, "info started pid=42\nwarn connect failed error=\"No route\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_line),
        cmocka_unit_test(test_format_flattens_and_cuts),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_quote_truncates_safely),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_writes_to_stderr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests: daemon/log.c (logfmt and JSON lines, escaping, prefixes),
 * daemon/log_ring.c and daemon/log_writer.c (sinks, reopen, dropping). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "log/log_ring.h"
#include "log/log_writer.h"

#define T0 1764554811123LL /* 2025-12-01T02:06:51.123Z */

static const struct ferry_log_style LOGFMT = {FERRY_LOG_LOGFMT, FERRY_LOG_PREFIX_NONE};
static const struct ferry_log_style JSON = {FERRY_LOG_JSON, FERRY_LOG_PREFIX_NONE};

static size_t fmt(char *buf, size_t cap, const struct ferry_log_style *st, enum ferry_log_level lvl,
                  const char *msg, const char *kv, ...) __attribute__((format(printf, 6, 7)));
static size_t fmt(char *buf, size_t cap, const struct ferry_log_style *st, enum ferry_log_level lvl,
                  const char *msg, const char *kv, ...)
{
    va_list ap;
    va_start(ap, kv);
    size_t n = ferry_log_vformat(buf, cap, st, T0, lvl, msg, kv, ap);
    va_end(ap);
    assert_int_equal(n, strlen(buf));
    assert_true(n < cap);
    /* One line, always. */
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    return n;
}

static void test_logfmt_line(void **state)
{
    (void)state;
    char b[512];
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "conn", "id=%d listener=%s", 17, "web");
    assert_string_equal(b, "level=info msg=conn id=17 listener=web\n");
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_ERROR, "listener_closed", NULL);
    assert_string_equal(b, "level=error msg=listener_closed\n");
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_WARN, "x", "%s", "");
    assert_string_equal(b, "level=warn msg=x\n");
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_DEBUG, "server_down", "server=%s/%s n=%zu big=%llu f=%.1f h=%x p=100%%",
        "app", "s1", (size_t)3, 18446744073709551615ull, 2.25, 255u);
    assert_string_equal(b, "level=debug msg=server_down server=app/s1 n=3 big=18446744073709551615 "
                           "f=2.2 h=ff p=100%\n");
    /* Words of a message are joined by '_', nothing else survives. */
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "two words\nx=y", NULL);
    assert_string_equal(b, "level=info msg=two_words_x_y\n");
}

static void test_prefixes(void **state)
{
    (void)state;
    char b[256];
    struct ferry_log_style ts = {FERRY_LOG_LOGFMT, FERRY_LOG_PREFIX_TS};
    fmt(b, sizeof(b), &ts, FERRY_LOG_INFO, "started", "pid=%d", 7);
    assert_string_equal(b, "ts=2025-12-01T02:06:51.123Z level=info msg=started pid=7\n");
    struct ferry_log_style pri = {FERRY_LOG_LOGFMT, FERRY_LOG_PREFIX_PRIORITY};
    const char *want[] = {"<3>level=error msg=m\n", "<4>level=warn msg=m\n", "<6>level=info msg=m\n",
                          "<7>level=debug msg=m\n"};
    for (int l = FERRY_LOG_ERROR; l <= FERRY_LOG_DEBUG; l++) {
        fmt(b, sizeof(b), &pri, (enum ferry_log_level)l, "m", NULL);
        assert_string_equal(b, want[l]);
    }
    struct ferry_log_style jts = {FERRY_LOG_JSON, FERRY_LOG_PREFIX_TS};
    fmt(b, sizeof(b), &jts, FERRY_LOG_WARN, "m", "a=%d", 1);
    assert_string_equal(b, "{\"ts\":\"2025-12-01T02:06:51.123Z\",\"level\":\"warn\",\"msg\":\"m\",\"a\":1}\n");
}

/* ferryd(8) LOGS: quoted when empty or holding a space, '"', '=' or a control
 * character; inside quotes \" \\ \n \t \xHH. */
static void test_logfmt_escaping(void **state)
{
    (void)state;
    char b[512];
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "m", "a=%s b=%s c=%s d=%s", "", "has space",
        "say \"hi\"", "k=v");
    assert_string_equal(b, "level=info msg=m a=\"\" b=\"has space\" c=\"say \\\"hi\\\"\" d=\"k=v\"\n");
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "m", "e=%s", "l1\nl2\tx\r\x01\x7f\\ end");
    assert_string_equal(b, "level=info msg=m e=\"l1\\nl2\\tx\\x0d\\x01\\x7f\\\\ end\"\n");
    /* A plain backslash needs no quotes; non-ASCII bytes are escaped. */
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "m", "p=%s u=%s", "a\\b", "caf\xc3\xa9");
    assert_string_equal(b, "level=info msg=m p=a\\b u=\"caf\\xc3\\xa9\"\n");
    /* A value cannot forge a key or a line. */
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "conn", "sni=%s end=%s",
        "x end=closed\nlevel=error msg=forged", "reset");
    assert_string_equal(b, "level=info msg=conn sni=\"x end=closed\\nlevel=error msg=forged\" end=reset\n");
    /* A format that quotes its value (older call sites) is one value too. */
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_ERROR, "reload_failed", "error=\"%s\" n=%d",
        "ferry.ini:7: unknown backend \"pgx\"", 2);
    assert_string_equal(b, "level=error msg=reload_failed error=\"ferry.ini:7: unknown backend "
                           "\\\"pgx\\\"\" n=2\n");
    /* Optional pairs vanish when empty. */
    fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "conn", "end=%s ?reason=%s ?sni=%s", "closed", "",
        "a.example");
    assert_string_equal(b, "level=info msg=conn end=closed sni=a.example\n");
}

static void test_json(void **state)
{
    (void)state;
    char b[512];
    fmt(b, sizeof(b), &JSON, FERRY_LOG_INFO, "conn", "id=%llu server=%s/%s bytes_in=%u end=%s x=%s neg=%d",
        17ull, "web", "app1", 512u, "closed", "-", -3);
    assert_string_equal(b, "{\"level\":\"info\",\"msg\":\"conn\",\"id\":17,\"server\":\"web/app1\","
                           "\"bytes_in\":512,\"end\":\"closed\",\"x\":\"-\",\"neg\":-3}\n");
    fmt(b, sizeof(b), &JSON, FERRY_LOG_WARN, "m", "e=%s t=id%d", "q\"\\\n\x01\xff", 4);
    assert_string_equal(b, "{\"level\":\"warn\",\"msg\":\"m\",\"e\":\"q\\\"\\\\\\n\\u0001\\u00ff\","
                           "\"t\":\"id4\"}\n");
}

static void test_cut_lines_stay_valid(void **state)
{
    (void)state;
    char big[3000];
    memset(big, '"', sizeof(big) - 1); /* every byte escapes to two */
    big[sizeof(big) - 1] = '\0';
    char b[FERRY_LOG_LINE_MAX];
    size_t n = fmt(b, sizeof(b), &LOGFMT, FERRY_LOG_INFO, "m", "v=%s after=%d", big, 1);
    assert_true(n <= FERRY_LOG_LINE_MAX - 1);
    assert_memory_equal(b + n - 17, "\" truncated=true\n", 17);
    assert_null(strstr(b, "after="));
    /* The cut never splits an escape: the quoted value has pairs of \". */
    const char *v = strstr(b, "v=\"") + 3;
    const char *e = b + n - 17;
    assert_int_equal((e - v) % 2, 0);
    n = fmt(b, sizeof(b), &JSON, FERRY_LOG_INFO, "m", "v=%s", big);
    assert_memory_equal(b + n - 20, "\",\"truncated\":true}\n", 20);
    char small[64];
    fmt(small, sizeof(small), &LOGFMT, FERRY_LOG_INFO, "m", "v=%s", "a long value with spaces in it, cut");
    assert_int_equal(small[0], 'l');
}

/* ---- the ring ---- */

static void test_ring(void **state)
{
    (void)state;
    struct ferry_log_ring r;
    assert_int_equal(ferry_log_ring_init(&r, 100), 0); /* rounded up to 4096 */
    assert_int_equal(r.cap, 4096);
    char line[1000], out[1000];
    unsigned pushed = 0, popped = 0;
    /* Push and pop across the wrap-around many times. */
    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < 3; k++) {
            memset(line, 'a' + (int)(pushed % 26), sizeof(line));
            assert_true(ferry_log_ring_push(&r, 1, 4, line, 700 + (size_t)k));
            pushed++;
        }
        struct ferry_log_rec rec;
        while (ferry_log_ring_peek(&r, &rec)) {
            assert_int_equal(rec.sink, 1);
            assert_int_equal(rec.level, 4);
            ferry_log_ring_read(&r, &rec, out);
            for (size_t i = 0; i < rec.len; i++)
                assert_int_equal(out[i], 'a' + (int)(popped % 26));
            ferry_log_ring_consume(&r, &rec);
            popped++;
        }
    }
    assert_int_equal(pushed, popped);
    assert_true(ferry_log_ring_empty(&r));
    /* Full: refused and counted, never overwritten. */
    unsigned ok = 0;
    for (int i = 0; i < 10; i++)
        ok += ferry_log_ring_push(&r, 0, 6, line, 1000);
    assert_int_equal(ok, 4);
    assert_int_equal(atomic_load(&r.dropped), 6);
    ferry_log_ring_destroy(&r);
}

/* ---- the logger ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_logger_files_and_reopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-logtest-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char main_log[128], access_log[128], moved[128];
    snprintf(main_log, sizeof(main_log), "%s/ferry.log", dir);
    snprintf(access_log, sizeof(access_log), "%s/access.log", dir);
    snprintf(moved, sizeof(moved), "%s/ferry.log.1", dir);
    struct ferry_global g = {0};
    g.log_level = FERRY_LOG_WARN;
    g.log_target = FERRY_LOG_TO_FILE;
    snprintf(g.log_path, sizeof(g.log_path), "%s", main_log);
    g.log_format = FERRY_LOG_JSON;
    g.access_log = true;
    snprintf(g.access_log_path, sizeof(g.access_log_path), "%s", access_log);
    struct ferry_logger lg;
    char err[256];
    assert_int_equal(ferry_logger_start(&lg, &g, "t.ini", 2, err, sizeof(err)), 0);
    assert_false(ferry_logger_enabled(&lg, FERRY_LOG_INFO));
    assert_true(ferry_logger_enabled(&lg, FERRY_LOG_WARN));
    ferry_logger_log(&lg, 0, FERRY_LOG_SINK_MAIN, FERRY_LOG_WARN, "before", "n=%d", 1);
    ferry_logger_log(&lg, 2, FERRY_LOG_SINK_ACCESS, FERRY_LOG_INFO, "conn", "id=%d", 9);
    /* Give the writer time, then move the file away as logrotate does. */
    for (int i = 0; i < 200; i++) {
        char *t = slurp(main_log);
        bool got = strstr(t, "before") != NULL;
        free(t);
        if (got)
            break;
        usleep(10000);
    }
    assert_int_equal(rename(main_log, moved), 0);
    ferry_logger_reopen(&lg);
    for (int i = 0; i < 200 && access(main_log, F_OK) != 0; i++)
        usleep(10000);
    ferry_logger_log(&lg, 1, FERRY_LOG_SINK_MAIN, FERRY_LOG_ERROR, "after", "n=%d", 2);
    ferry_logger_stop(&lg);
    char *old = slurp(moved), *cur = slurp(main_log), *acc = slurp(access_log);
    assert_non_null(strstr(old, "\"msg\":\"before\",\"n\":1}\n"));
    assert_non_null(strstr(old, "{\"ts\":\""));
    assert_null(strstr(old, "after"));
    assert_non_null(strstr(cur, "\"level\":\"error\",\"msg\":\"after\",\"n\":2}\n"));
    assert_non_null(strstr(acc, "\"msg\":\"conn\",\"id\":9}\n"));
    assert_null(strstr(cur, "conn"));
    free(old);
    free(cur);
    free(acc);
    unlink(main_log);
    unlink(moved);
    unlink(access_log);
    rmdir(dir);
}

static void test_logger_start_errors(void **state)
{
    (void)state;
    struct ferry_global g = {0};
    g.log_target = FERRY_LOG_TO_FILE;
    g.log_line = 7;
    snprintf(g.log_path, sizeof(g.log_path), "/nonexistent-dir/ferry.log");
    struct ferry_logger lg;
    char err[256];
    assert_int_equal(ferry_logger_start(&lg, &g, "t.ini", 1, err, sizeof(err)), -1);
    assert_string_equal(err, "t.ini:7: cannot open log file /nonexistent-dir/ferry.log: "
                             "No such file or directory");
    assert_false(ferry_logger_running(&lg));
}

/* stderr is a pipe nobody reads: producers never block, lines are dropped
 * and counted, and stopping gives up on the stuck sink in bounded time. */
static void test_logger_stuck_sink_drops(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(STDERR_FILENO);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    struct ferry_global g = {0};
    g.log_level = FERRY_LOG_INFO;
    struct ferry_logger lg;
    char err[256];
    assert_int_equal(ferry_logger_start(&lg, &g, "t.ini", 1, err, sizeof(err)), 0);
    char pad[400];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    /* 4 MB of lines: far more than the pipe and the ring hold. */
    for (int i = 0; i < 10000; i++)
        ferry_logger_log(&lg, 0, FERRY_LOG_SINK_MAIN, FERRY_LOG_INFO, "conn", "i=%d pad=%s", i, pad);
    assert_true(ferry_logger_dropped(&lg) > 0);
    ferry_logger_stop(&lg);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(p[1]);
    /* What did get through is whole lines. */
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_memory_equal(buf, "ts=", 3);
    assert_non_null(strstr(buf, " level=info msg=conn i=0 pad=ppp"));
    close(p[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_line),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_logfmt_escaping),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cut_lines_stay_valid),
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_logger_files_and_reopen),
        cmocka_unit_test(test_logger_start_errors),
        cmocka_unit_test(test_logger_stuck_sink_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests: daemon/control_cmd.c (control lines and ferryctl mapping). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/control_cmd.h"

static int parse(const char *s, struct ferry_ctl_request *r)
{
    return ferry_ctl_parse(s, strlen(s), r);
}

static void ok(const char *s, enum ferry_ctl_cmd cmd, bool json)
{
    struct ferry_ctl_request r;
    if (parse(s, &r) != 0)
        fail_msg("'%s' rejected: %s", s, r.error);
    assert_int_equal(r.cmd, cmd);
    assert_int_equal(r.json, json);
}

static void bad(const char *s, const char *msg)
{
    struct ferry_ctl_request r;
    assert_int_equal(parse(s, &r), -EINVAL);
    if (strcmp(r.error, msg) != 0)
        fail_msg("'%s': got \"%s\", wanted \"%s\"", s, r.error, msg);
}

static void test_commands(void **state)
{
    (void)state;
    ok("help", FERRY_CTL_HELP, false);
    ok("show info", FERRY_CTL_SHOW_INFO, false);
    ok("show info json", FERRY_CTL_SHOW_INFO, true);
    ok("show stats", FERRY_CTL_SHOW_STATS, false);
    ok("show stats json", FERRY_CTL_SHOW_STATS, true);
    ok("show conns", FERRY_CTL_SHOW_CONNS, false);
    ok("show conns json", FERRY_CTL_SHOW_CONNS, true);
    ok("show metrics", FERRY_CTL_SHOW_METRICS, false);
    ok("reload", FERRY_CTL_RELOAD, false);
    /* Line ends and blanks. */
    ok("show stats json\n", FERRY_CTL_SHOW_STATS, true);
    ok("show stats json\r\n", FERRY_CTL_SHOW_STATS, true);
    ok("reload\r", FERRY_CTL_RELOAD, false);
    ok("  \tshow\t\tinfo   json \t", FERRY_CTL_SHOW_INFO, true);

    struct ferry_ctl_request r;
    assert_int_equal(parse("disable server web/app-1.a_b", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_DISABLE_SERVER);
    assert_string_equal(r.backend, "web");
    assert_string_equal(r.server, "app-1.a_b");
    assert_int_equal(parse("enable  server\tB/S\r\n", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_ENABLE_SERVER);
    assert_string_equal(r.backend, "B");
    assert_string_equal(r.server, "S");
    assert_non_null(strstr(ferry_ctl_help_text, "disable server BACKEND/SERVER"));
    static const char *const states[] = {"ready", "drain", "maint"};
    for (int k = 0; k < 3; k++) {
        char line[64];
        snprintf(line, sizeof(line), "set server web/a1 state %s\n", states[k]);
        assert_int_equal(parse(line, &r), 0);
        assert_int_equal(r.cmd, FERRY_CTL_SET_SERVER_STATE);
        assert_int_equal(r.state, k);
        assert_string_equal(r.backend, "web");
        assert_string_equal(r.server, "a1");
    }
    assert_int_equal(parse("set server web/a1 weight 0", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_SET_SERVER_WEIGHT);
    assert_int_equal(r.weight, 0);
    assert_int_equal(parse("set server web/a1 weight 256", &r), 0);
    assert_int_equal(r.weight, 256);
    assert_int_equal(parse("disable listener web-1", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_DISABLE_LISTENER);
    assert_string_equal(r.listener, "web-1");
    assert_int_equal(parse("enable listener web", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_ENABLE_LISTENER);
    assert_non_null(strstr(ferry_ctl_help_text, "set server BACKEND/SERVER weight N"));
    assert_non_null(strstr(ferry_ctl_help_text, "disable listener NAME"));
    assert_non_null(strstr(ferry_ctl_help_text, "show metrics"));
}

static void test_errors(void **state)
{
    (void)state;
    bad("", "empty command (try 'help')");
    bad("\r\n", "empty command (try 'help')");
    bad("   ", "empty command (try 'help')");
    bad("xyz", "unknown command 'xyz' (try 'help')");
    bad("HELP", "unknown command 'HELP' (try 'help')");
    bad("help me", "unexpected argument 'me'");
    bad("reload now", "unexpected argument 'now'");
    bad("show", "usage: show info|stats|conns|acme [json], show metrics");
    bad("show foo", "unknown 'show foo' (try 'help')");
    bad("show metrics json", "unexpected argument 'json'");
    bad("show info xml", "unexpected argument 'xml'");
    bad("show info json json", "unexpected argument 'json'");
    bad("disable", "usage: disable server BACKEND/SERVER, disable listener NAME");
    bad("disable server", "usage: disable server BACKEND/SERVER, disable listener NAME");
    bad("enable backend web/a", "usage: enable server BACKEND/SERVER, enable listener NAME");
    bad("disable listener", "usage: disable listener NAME");
    bad("enable listener a b", "unexpected argument 'b'");
    bad("enable listener w$b", "invalid listener name 'w$b' (names: letters, digits, '_', '.', "
                               "'-', at most 63 characters)");
    const char *set_usage = "usage: set server BACKEND/SERVER state ready|drain|maint, "
                            "set server BACKEND/SERVER weight N, set server BACKEND/SERVER addr ADDRESS";
    bad("set", set_usage);
    bad("set server a/b", set_usage);
    bad("set server a/b state", set_usage);
    bad("set server a/b colour red", "unknown setting 'colour' (state, weight or addr)");
    bad("set backend a/b state ready", set_usage);
    bad("set server a/b state up", "invalid state 'up' (ready, drain or maint)");
    bad("set server a/b weight 257", "invalid weight '257' (a whole number from 0 to 256)");
    bad("set server a/b weight -1", "invalid weight '-1' (a whole number from 0 to 256)");
    bad("set server a/b weight 1x", "invalid weight '1x' (a whole number from 0 to 256)");
    bad("set server a/b weight 99999999999", "invalid weight '99999999999' (a whole number from 0 to 256)");
    bad("set server a/b weight 3 now", "unexpected argument 'now'");
    bad("set server ab state ready", "expected BACKEND/SERVER, got 'ab'");
    bad("disable server web", "expected BACKEND/SERVER, got 'web'");
    bad("disable server web/a extra", "unexpected argument 'extra'");
    const char *inv = "invalid BACKEND/SERVER '%s' (names: letters, digits, '_', '.', '-', at most 63 characters; discovered servers: ADDRESS:PORT)";
    const char *targets[] = {"web/", "/a", "web/a/b", "w$b/a", "web/a;rm", "web/é"};
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char line[128], want[256];
        snprintf(line, sizeof(line), "disable server %s", targets[i]);
        struct ferry_ctl_request r;
        assert_int_equal(parse(line, &r), -EINVAL);
        assert_non_null(strstr(r.error, "invalid BACKEND/SERVER"));
        if (i < 5) {
            snprintf(want, sizeof(want), inv, targets[i]);
            assert_string_equal(r.error, want);
        }
    }
    /* A discovered server is named ADDRESS:PORT. */
    struct ferry_ctl_request dr;
    assert_int_equal(parse("disable server web/[2001:db8::7]:80", &dr), 0);
    assert_string_equal(dr.server, "[2001:db8::7]:80");
    assert_int_equal(parse("disable server web/10.0.0.7:80", &dr), 0);
    assert_string_equal(dr.server, "10.0.0.7:80");
    bad("a b c d e f g h i", "too many arguments");
    bad("show info\rjson", "invalid character 0x0d in command");
    bad("show info\n\n", "invalid character 0x0a in command");
}

static void test_names_length(void **state)
{
    (void)state;
    char line[256], name[80];
    memset(name, 'n', 63);
    name[63] = '\0';
    snprintf(line, sizeof(line), "enable server %s/%s", name, name);
    struct ferry_ctl_request r;
    assert_int_equal(parse(line, &r), 0);
    assert_string_equal(r.backend, name);
    assert_string_equal(r.server, name);
    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(line, sizeof(line), "enable server %s/x", name);
    assert_int_equal(parse(line, &r), -EINVAL);
    snprintf(line, sizeof(line), "enable server x/%s", name);
    assert_int_equal(parse(line, &r), -EINVAL);
}

static void test_nul_and_binary(void **state)
{
    (void)state;
    struct ferry_ctl_request r;
    const char nul[] = "show info\0json";
    assert_int_equal(ferry_ctl_parse(nul, sizeof(nul) - 1, &r), -EINVAL);
    assert_string_equal(r.error, "invalid character 0x00 in command");
    const char nul2[] = "help\0";
    assert_int_equal(ferry_ctl_parse(nul2, sizeof(nul2) - 1, &r), -EINVAL);
    /* Non-printables are never echoed back. */
    assert_int_equal(parse("x\x1b[31mred", &r), -EINVAL);
    assert_null(strchr(r.error, '\x1b'));
    assert_int_equal(parse("\xff\xfe", &r), -EINVAL);
    assert_string_equal(r.error, "unknown command '?" "?' (try 'help')");
    assert_int_equal(parse("it's", &r), -EINVAL);
    assert_string_equal(r.error, "unknown command 'it?s' (try 'help')");
    /* Long words are cut in the message. */
    char line[200];
    memset(line, 'z', 100);
    line[100] = '\0';
    assert_int_equal(parse(line, &r), -EINVAL);
    assert_non_null(strstr(r.error, "zzz...' (try 'help')"));
    assert_true(strlen(r.error) < 80);
}

static void test_line_length(void **state)
{
    (void)state;
    static char line[FERRY_CTL_LINE_MAX + 3];
    memset(line, ' ', sizeof(line));
    memcpy(line, "help", 4);
    struct ferry_ctl_request r;
    assert_int_equal(ferry_ctl_parse(line, FERRY_CTL_LINE_MAX, &r), 0);
    line[FERRY_CTL_LINE_MAX] = '\n';
    assert_int_equal(ferry_ctl_parse(line, FERRY_CTL_LINE_MAX + 1, &r), 0);
    assert_int_equal(ferry_ctl_parse(line, FERRY_CTL_LINE_MAX + 2, &r), -EINVAL);
    assert_string_equal(r.error, "line too long (at most 4096 bytes)");
}

static int argv_line(bool json, char *buf, size_t cap, char *err, int argc, ...)
{
    char *argv[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    return ferry_ctl_from_argv(argc, argv, json, buf, cap, err, 200);
}

static void test_ferryctl_mapping(void **state)
{
    (void)state;
    char buf[256], err[200];
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 1, "info"), 10);
    assert_string_equal(buf, "show info\n");
    argv_line(true, buf, sizeof(buf), err, 1, "info");
    assert_string_equal(buf, "show info json\n");
    argv_line(false, buf, sizeof(buf), err, 2, "stats", "--json");
    assert_string_equal(buf, "show stats json\n");
    argv_line(false, buf, sizeof(buf), err, 2, "--json", "conns");
    assert_string_equal(buf, "show conns json\n");
    argv_line(false, buf, sizeof(buf), err, 1, "metrics");
    assert_string_equal(buf, "show metrics\n");
    argv_line(false, buf, sizeof(buf), err, 2, "disable", "web/app1");
    assert_string_equal(buf, "disable server web/app1\n");
    argv_line(false, buf, sizeof(buf), err, 2, "enable", "web/app1");
    assert_string_equal(buf, "enable server web/app1\n");
    argv_line(false, buf, sizeof(buf), err, 1, "reload");
    assert_string_equal(buf, "reload\n");
    argv_line(false, buf, sizeof(buf), err, 1, "help");
    assert_string_equal(buf, "help\n");
    argv_line(false, buf, sizeof(buf), err, 4, "set", "web/app1", "state", "maint");
    assert_string_equal(buf, "set server web/app1 state maint\n");
    argv_line(true, buf, sizeof(buf), err, 4, "set", "web/app1", "weight", "3");
    assert_string_equal(buf, "set server web/app1 weight 3\n");
    argv_line(false, buf, sizeof(buf), err, 2, "disable-listener", "web");
    assert_string_equal(buf, "disable listener web\n");
    argv_line(false, buf, sizeof(buf), err, 2, "enable-listener", "web");
    assert_string_equal(buf, "enable listener web\n");
    /* Every mapped line parses back. */
    struct ferry_ctl_request r;
    argv_line(true, buf, sizeof(buf), err, 1, "stats");
    assert_int_equal(ferry_ctl_parse(buf, strlen(buf), &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_SHOW_STATS);
    assert_true(r.json);
}

/* add server / del server (dns engineer's rows). */
static void test_add_del_server(void **state)
{
    (void)state;
    struct ferry_ctl_request r;
    assert_int_equal(parse("add server web app9 127.0.0.1:8080", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_ADD_SERVER);
    assert_string_equal(r.backend, "web");
    assert_string_equal(r.server, "app9");
    assert_string_equal(r.addr.text, "127.0.0.1:8080");
    assert_int_equal(r.weight, 1);
    assert_false(r.backup);
    assert_int_equal(r.max_connections, 0);
    assert_int_equal(parse("add server web a [::1]:80 max_connections=5 backup weight=0", &r), 0);
    assert_int_equal(r.weight, 0);
    assert_true(r.backup);
    assert_int_equal(r.max_connections, 5);
    ok("del server web/app9", FERRY_CTL_DEL_SERVER, false);
    bad("add server web a", "usage: add server BACKEND NAME ADDRESS [weight=N] [backup] "
                            "[max_connections=N]");
    assert_int_equal(parse("add server web a db.example.com:5432", &r), 0);
    assert_false(r.addr.resolved);
    assert_string_equal(r.addr.host, "db.example.com");
    assert_int_equal(r.addr.port, 5432);
    bad("add server web a localhost",
        "invalid server address 'localhost' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)");
    bad("add server web a unix:/x",
        "invalid server address 'unix:/x' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)");
    bad("add server web a *:80", "invalid server address '*:80' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)");
    assert_int_equal(parse("set server web/a addr 10.0.0.7:8080", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_SET_SERVER_ADDR);
    assert_string_equal(r.backend, "web");
    assert_string_equal(r.server, "a");
    assert_string_equal(r.addr.text, "10.0.0.7:8080");
    assert_true(r.addr.resolved);
    assert_int_equal(parse("set server web/a addr app.internal:80", &r), 0);
    assert_string_equal(r.addr.host, "app.internal");
    bad("set server web/a addr 10.0.0.7",
        "invalid server address '10.0.0.7' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)");
    bad("set server web/a addr 10.0.0.7:0",
        "invalid server address '10.0.0.7:0' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)");
    bad("set server web/a addr 1.2.3.4:5 x", "unexpected argument 'x'");
    bad("add server web a 127.0.0.1:80 weight=257",
        "invalid server option 'weight=257' (weight=0..256, backup, max_connections=N; each at "
        "most once)");
    bad("add server web a 127.0.0.1:80 backup backup",
        "invalid server option 'backup' (weight=0..256, backup, max_connections=N; each at most "
        "once)");
    bad("add server web a 127.0.0.1:80 max_connections=0",
        "invalid server option 'max_connections=0' (weight=0..256, backup, max_connections=N; "
        "each at most once)");
    bad("del server web", "expected BACKEND/SERVER, got 'web'");
    bad("del web/a", "usage: del server BACKEND/SERVER");
    char buf[256], err[200];
    argv_line(false, buf, sizeof(buf), err, 4, "add", "web", "a", "127.0.0.1:80");
    assert_string_equal(buf, "add server web a 127.0.0.1:80\n");
    argv_line(false, buf, sizeof(buf), err, 7, "add", "web", "a", "127.0.0.1:80", "weight=2",
              "backup", "max_connections=3");
    assert_string_equal(buf, "add server web a 127.0.0.1:80 weight=2 backup max_connections=3\n");
    argv_line(false, buf, sizeof(buf), err, 2, "del", "web/a");
    assert_string_equal(buf, "del server web/a\n");
    argv_line(false, buf, sizeof(buf), err, 4, "set", "web/a", "addr", "10.0.0.7:80");
    assert_string_equal(buf, "set server web/a addr 10.0.0.7:80\n");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 3, "add", "web", "a"), -EINVAL);
    assert_non_null(strstr(err, "usage: add BACKEND NAME ADDRESS"));
}

static void test_shutdown_conn(void **state)
{
    (void)state;
    struct ferry_ctl_request r;
    assert_int_equal(parse("shutdown conn 17", &r), 0);
    assert_int_equal(r.cmd, FERRY_CTL_SHUTDOWN_CONN);
    assert_true(r.conn_id == 17);
    assert_int_equal(parse("shutdown conn 18446744073709551615\n", &r), 0);
    assert_true(r.conn_id == UINT64_MAX);
    assert_true(ferry_ctl_answers_ok(FERRY_CTL_SHUTDOWN_CONN));
    const char *why = "invalid connection id '%s' (a whole number from 1, as in show conns)";
    const char *bad_ids[] = {"0", "18446744073709551616", "-1", "1x", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        char line[64], msg[160];
        snprintf(line, sizeof(line), "shutdown conn %s", bad_ids[i]);
        snprintf(msg, sizeof(msg), why, bad_ids[i]);
        bad(line, msg);
    }
    bad("shutdown conn", "usage: shutdown conn ID");
    bad("shutdown 17", "usage: shutdown conn ID");
    bad("shutdown conn 1 2", "unexpected argument '2'");
    char buf[256], err[200];
    argv_line(false, buf, sizeof(buf), err, 2, "shutdown", "42");
    assert_string_equal(buf, "shutdown conn 42\n");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "shutdown", "abc"), -EINVAL);
    assert_non_null(strstr(err, "invalid connection id 'abc'"));
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 1, "shutdown"), -EINVAL);
    assert_non_null(strstr(err, "usage: shutdown CONN_ID"));
}

static void test_ferryctl_errors(void **state)
{
    (void)state;
    char buf[256], err[200];
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 0), -EINVAL);
    assert_non_null(strstr(err, "missing command"));
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 1, "frob"), -EINVAL);
    assert_non_null(strstr(err, "unknown command 'frob'"));
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 1, "disable"), -EINVAL);
    assert_string_equal(err, "usage: disable BACKEND/SERVER");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "info", "x"), -EINVAL);
    assert_string_equal(err, "unexpected argument 'x'");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 3, "disable", "a/b", "c"), -EINVAL);
    assert_string_equal(err, "usage: disable BACKEND/SERVER");
    /* --json goes with every command; the daemon is asked for JSON only
     * where it has it, ferryctl renders the rest. */
    assert_int_equal(argv_line(true, buf, sizeof(buf), err, 1, "metrics"), 13);
    assert_string_equal(buf, "show metrics\n");
    assert_int_equal(argv_line(true, buf, sizeof(buf), err, 1, "reload"), 7);
    assert_string_equal(buf, "reload\n");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 3, "disable", "--json", "a/b"), 19);
    assert_string_equal(buf, "disable server a/b\n");
    assert_true(ferry_ctl_answers_ok(FERRY_CTL_RELOAD));
    assert_true(ferry_ctl_answers_ok(FERRY_CTL_DISABLE_SERVER));
    assert_false(ferry_ctl_answers_ok(FERRY_CTL_SHOW_STATS));
    assert_false(ferry_ctl_answers_ok(FERRY_CTL_HELP));
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "disable", "web"), -EINVAL);
    assert_string_equal(err, "expected BACKEND/SERVER, got 'web'");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "disable", "web/a b"), -EINVAL);
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "disable", "web/a\nreload"), -EINVAL);
    assert_int_equal(argv_line(false, buf, 5, err, 1, "reload"), -ENOSPC);
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 2, "set", "web/a"), -EINVAL);
    assert_string_equal(err, "usage: set BACKEND/SERVER state ready|drain|maint, "
                             "set BACKEND/SERVER weight N, set BACKEND/SERVER addr ADDRESS");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 4, "set", "web/a", "state", "off"),
                     -EINVAL);
    assert_string_equal(err, "invalid state 'off' (ready, drain or maint)");
    assert_int_equal(argv_line(false, buf, sizeof(buf), err, 1, "disable-listener"), -EINVAL);
    assert_string_equal(err, "usage: disable-listener NAME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_names_length),     cmocka_unit_test(test_nul_and_binary),
        cmocka_unit_test(test_line_length),      cmocka_unit_test(test_ferryctl_mapping),
        cmocka_unit_test(test_ferryctl_errors),  cmocka_unit_test(test_add_del_server),
        cmocka_unit_test(test_shutdown_conn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

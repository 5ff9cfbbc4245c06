/* The health-check, queue and slow-start keys of [backend]: C escapes,
 * status lists, and the checks that tie keys to a check type. */
#include <errno.h>

#include "cfg_test.h"

static void test_escapes(void **state)
{
    (void)state;
    char out[16];
    size_t n = 99;
    assert_int_equal(ferry_parse_escaped("PING\\r\\n", out, sizeof(out), &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "PING\r\n", 6);
    assert_int_equal(ferry_parse_escaped("a\\tb\\\\c", out, sizeof(out), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "a\tb\\c", 5);
    assert_int_equal(ferry_parse_escaped("\\x00\\xfF\\x41", out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\0\xff" "A", 3);
    assert_int_equal(ferry_parse_escaped("", out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    n = 99;
    assert_int_equal(ferry_parse_escaped("\\q", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("end\\", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("\\x4", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("\\xg1", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("\\x", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("\\0", out, sizeof(out), &n), -EINVAL);
    assert_int_equal(ferry_parse_escaped("0123456789abcdefX", out, sizeof(out), &n), -ERANGE);
    assert_int_equal(ferry_parse_escaped("0123456789abcdef", out, sizeof(out), &n), 0);
    assert_int_equal(n, 16);
}

static void test_status_lists(void **state)
{
    (void)state;
    struct ferry_status_set s;
    assert_int_equal(ferry_parse_status_list("200,204", &s), 0);
    assert_true(ferry_status_set_has(&s, 200));
    assert_true(ferry_status_set_has(&s, 204));
    assert_false(ferry_status_set_has(&s, 201));
    assert_false(ferry_status_set_has(&s, 503));
    assert_int_equal(ferry_parse_status_list("2xx, 3XX", &s), 0);
    for (unsigned c = 100; c < 600; c++)
        assert_int_equal(ferry_status_set_has(&s, c), c >= 200 && c < 400);
    assert_int_equal(ferry_parse_status_list("599,100,5xx", &s), 0);
    assert_true(ferry_status_set_has(&s, 100));
    assert_true(ferry_status_set_has(&s, 500));
    assert_false(ferry_status_set_has(&s, 101));
    assert_false(ferry_status_set_has(&s, 600));
    assert_false(ferry_status_set_has(&s, 99));
    assert_int_equal(ferry_parse_status_list("404", &s), 0);
    static const char *const bad[] = {"", ",", "200,", ",200", "200,,204", "600", "099", "6xx",
                                      "2x0", "20x", "2000", "20", "abc", "200 204", "x2x", "0xx"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ferry_status_set keep = s;
        if (ferry_parse_status_list(bad[i], &s) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_memory_equal(&keep, &s, sizeof(s)); /* untouched on error */
    }
}

static void test_keys_loaded(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok(
        "[backend b]\n"
        "server s1 127.0.0.1:9001 max_connections=2\n"
        "server s2 db.example.com:5432 weight=3 backup max_connections=10\n"
        "health_check = send-expect\n"
        "health_send = PING\\r\\n\n"
        "health_expect = +PONG\n"
        "health_port = 8008\n"
        "send_proxy = v2\n"
        "health_send_proxy = on\n"
        "queue_timeout = 250ms\n"
        "max_queue = 3\n"
        "slow_start = 30s\n");
    const struct ferry_backend *b = &cfg->backends[0];
    assert_int_equal(b->health_check, FERRY_HEALTH_SEND_EXPECT);
    assert_int_equal(b->health_send_len, 6);
    assert_memory_equal(b->health_send, "PING\r\n", 6);
    assert_int_equal(b->health_expect_len, 5);
    assert_string_equal(b->health_expect, "+PONG");
    assert_int_equal(b->health_port, 8008);
    assert_true(b->health_send_proxy);
    assert_int_equal(b->queue_timeout_ms, 250);
    assert_int_equal(b->max_queue, 3);
    assert_int_equal(b->slow_start_ms, 30000);
    assert_int_equal(b->servers[0].max_connections, 2);
    assert_int_equal(b->servers[1].max_connections, 10);
    assert_int_equal(b->servers[1].weight, 3);
    assert_true(b->servers[1].backup);
    ferry_config_free(cfg);

    cfg = cfg_ok("[backend b]\nserver s1 127.0.0.1:9001\nhealth_check = http\n"
                 "health_uri = /primary?x=1\nhealth_status = 200,3xx\n");
    b = &cfg->backends[0];
    assert_int_equal(b->health_check, FERRY_HEALTH_HTTP);
    assert_string_equal(b->health_uri, "/primary?x=1");
    assert_true(ferry_status_set_has(&b->health_status, 200));
    assert_true(ferry_status_set_has(&b->health_status, 302));
    assert_false(ferry_status_set_has(&b->health_status, 204));
    assert_int_equal(b->servers[0].max_connections, 0);
    ferry_config_free(cfg);

    /* Defaults. */
    cfg = cfg_ok(CFG_BACKEND_B);
    b = &cfg->backends[0];
    assert_null(b->health_uri);
    assert_true(ferry_status_set_has(&b->health_status, 204));
    assert_false(ferry_status_set_has(&b->health_status, 301));
    assert_int_equal(b->queue_timeout_ms, 5000);
    assert_int_equal(b->max_queue, 1000);
    assert_int_equal(b->slow_start_ms, 0);
    assert_int_equal(b->health_port, 0);
    ferry_config_free(cfg);
}

static void test_key_errors(void **state)
{
    (void)state;
    cfg_expect_one(CFG_BACKEND_B "health_check = send-expect\nhealth_send = x\n", 3,
                   "health_check = send-expect needs health_expect");
    cfg_expect_one(CFG_BACKEND_B "health_check = http\nhealth_expect = x\n", 4,
                   "health_expect has no effect without health_check = send-expect");
    cfg_expect_one(CFG_BACKEND_B "health_uri = /x\n", 3,
                   "health_uri has no effect without health_check = http");
    cfg_expect_one(CFG_BACKEND_B "health_check = tcp\nhealth_status = 200\n", 4,
                   "health_status has no effect without health_check = http");
    cfg_expect_one(CFG_BACKEND_B "health_check = tcp\nhealth_send_proxy = on\n", 4,
                   "health_send_proxy has no effect without send_proxy");
    cfg_expect_one(CFG_BACKEND_B "health_check = send-expect\nhealth_expect = \\x4g\n", 4,
                   "invalid value \"\\x4g\" for health_expect");
    cfg_expect_one(CFG_BACKEND_B "health_check = http\nhealth_status = 2xx,600\n", 4,
                   "invalid value \"2xx,600\" for health_status");
    cfg_expect_one(CFG_BACKEND_B "health_check = http\nhealth_uri = primary\n", 4,
                   "invalid value \"primary\" for health_uri");
    cfg_expect_one(CFG_BACKEND_B "health_check = http\nhealth_uri = /a b\n", 4,
                   "for health_uri");
    cfg_expect_one(CFG_BACKEND_B "health_port = 0\n", 3, "invalid value \"0\" for health_port");
    cfg_expect_one(CFG_BACKEND_B "health_check = banner\n", 3,
                   "expected off, tcp, tls, send-expect or http");
    cfg_expect_one(CFG_BACKEND_B "queue_timeout = 0\n", 3, "for queue_timeout");
    cfg_expect_one(CFG_BACKEND_B "max_queue = -1\n", 3, "for max_queue");
    cfg_expect_one(CFG_BACKEND_B "slow_start = fast\n", 3, "for slow_start");
    cfg_expect_one("[backend b]\nserver s1 127.0.0.1:9001 max_connections=0\n", 2,
                   "invalid server max_connections \"0\"");
    cfg_expect_one("[backend b]\nserver s1 127.0.0.1:9001 max_connections=2 max_connections=3\n",
                   2, "server option \"max_connections=3\" given twice");
    cfg_expect_one("[backend b]\nserver s1 127.0.0.1:9001 maxconn=2\n", 2,
                   "unknown server option \"maxconn=2\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_status_lists),
        cmocka_unit_test(test_keys_loaded),
        cmocka_unit_test(test_key_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* config value parsers: numbers, durations, sizes, booleans, names, all
 * checked whole. */
#include <errno.h>
#include <limits.h>

#include "cfg_test.h"

static void test_uint_whole(void **state)
{
    (void)state;
    unsigned long v = 99;
    assert_int_equal(ferry_parse_uint("0", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ferry_parse_uint("65535", 65535, &v), 0);
    assert_int_equal(v, 65535);
    assert_int_equal(ferry_parse_uint("007", 10, &v), 0);
    assert_int_equal(v, 7);
    v = 42;
    assert_int_equal(ferry_parse_uint("65536", 65535, &v), -ERANGE);
    assert_int_equal(ferry_parse_uint("80abc", 65535, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("-1", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("+1", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint(" 1", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("1 ", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("0x10", ULONG_MAX, &v), -EINVAL);
    assert_int_equal(ferry_parse_uint("99999999999999999999999", ULONG_MAX, &v), -ERANGE);
    assert_int_equal(v, 42);   /* untouched on error */
}

static void test_durations(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(ferry_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(ferry_parse_duration_ms("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(ferry_parse_duration_ms("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(ferry_parse_duration_ms("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(ferry_parse_duration_ms("7", &ms), 0);
    assert_int_equal(ms, 7000);
    assert_int_equal(ferry_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(ferry_parse_duration_ms("", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("s", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("10x", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("10 s", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("-5s", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("1.5s", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("10sec", &ms), -EINVAL);
    assert_int_equal(ferry_parse_duration_ms("99999999999999999999h", &ms), -ERANGE);
    assert_int_equal(ferry_parse_duration_ms("18446744073709551615h", &ms), -ERANGE);
}

static void test_sizes(void **state)
{
    (void)state;
    size_t n = 0;
    assert_int_equal(ferry_parse_size("4096", &n), 0);
    assert_int_equal(n, 4096);
    assert_int_equal(ferry_parse_size("16k", &n), 0);
    assert_int_equal(n, 16384);
    assert_int_equal(ferry_parse_size("16K", &n), 0);
    assert_int_equal(n, 16384);
    assert_int_equal(ferry_parse_size("1m", &n), 0);
    assert_int_equal(n, 1048576);
    assert_int_equal(ferry_parse_size("16kb", &n), -EINVAL);
    assert_int_equal(ferry_parse_size("k", &n), -EINVAL);
    assert_int_equal(ferry_parse_size("", &n), -EINVAL);
    assert_int_equal(ferry_parse_size("-1", &n), -EINVAL);
    assert_int_equal(ferry_parse_size("1x", &n), -EINVAL);
    assert_int_equal(ferry_parse_size("99999999999999999999", &n), -ERANGE);
    assert_int_equal(ferry_parse_size("18014398509481984k", &n), -ERANGE);
}

static void test_bools(void **state)
{
    (void)state;
    const char *yes[] = {"on", "yes", "true", "ON", "True"};
    const char *no[] = {"off", "no", "false", "OFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        bool b = false;
        assert_int_equal(ferry_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        bool b = true;
        assert_int_equal(ferry_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    bool b = true;
    assert_int_equal(ferry_parse_bool("1", &b), -EINVAL);
    assert_int_equal(ferry_parse_bool("", &b), -EINVAL);
    assert_int_equal(ferry_parse_bool("onn", &b), -EINVAL);
    assert_int_equal(ferry_parse_bool("y", &b), -EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(ferry_name_valid("web"));
    assert_true(ferry_name_valid("app-1.eu_west"));
    assert_true(ferry_name_valid("A9"));
    assert_false(ferry_name_valid(""));
    assert_false(ferry_name_valid("a b"));
    assert_false(ferry_name_valid("a/b"));
    assert_false(ferry_name_valid("a:b"));
    assert_false(ferry_name_valid("caf\xc3\xa9"));
    char longname[FERRY_NAME_MAX + 1];
    memset(longname, 'a', sizeof(longname));
    longname[FERRY_NAME_MAX - 1] = '\0';
    assert_true(ferry_name_valid(longname));   /* 63 chars */
    longname[FERRY_NAME_MAX - 1] = 'a';
    longname[FERRY_NAME_MAX] = '\0';
    assert_false(ferry_name_valid(longname));  /* 64 chars */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint_whole),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Helpers shared by the config tests: load a string, look for an error. */
#ifndef CFG_TEST_H
#define CFG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry_config.h"

/* Prints the errors (for a failing test's log). */
static inline void cfg_dump(const struct ferry_config_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "  error %zu: %s\n", i, e->msgs[i]);
}

/* Index of the error that starts with "t.ini:LINE: " and contains `text`,
 * or -1. */
static inline int cfg_find(const struct ferry_config_errors *e, int line, const char *text)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.ini:%d: ", line);
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->msgs[i], prefix, strlen(prefix)) == 0 && strstr(e->msgs[i], text))
            return (int)i;
    return -1;
}

/* Asserts `text` fails to load with an error at `line` containing `msg`,
 * and that it is the only error. */
static inline void cfg_expect_one(const char *text, int line, const char *msg)
{
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load_string("t.ini", text, &e);
    if (cfg || e.n != 1 || cfg_find(&e, line, msg) < 0) {
        fprintf(stderr, "expected one error at line %d containing \"%s\" for:\n%s\n", line, msg,
                text);
        cfg_dump(&e);
    }
    assert_null(cfg);
    assert_int_equal(e.n, 1);
    assert_true(cfg_find(&e, line, msg) >= 0);
    ferry_config_errors_free(&e);
}

/* Loads text that must be valid. */
static inline struct ferry_config *cfg_ok(const char *text)
{
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load_string("t.ini", text, &e);
    if (!cfg) {
        fprintf(stderr, "unexpected errors for:\n%s\n", text);
        cfg_dump(&e);
    }
    assert_non_null(cfg);
    assert_int_equal(e.n, 0);
    ferry_config_errors_free(&e);
    return cfg;
}

/* A minimal valid tail: backend "b" with one server. */
#define CFG_BACKEND_B "[backend b]\nserver s1 127.0.0.1:9001\n"

#endif

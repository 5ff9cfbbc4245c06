/* Relative paths in ferry.ini (ferryd(8)): resolved against the directory of
 * the configuration file, never the working directory, and stored absolute. */
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_test.h"

struct tmp {
    char dir[64];      /* /tmp/ferry-paths-XXXXXX */
    char file[96];     /* DIR/etc/ferry.ini */
    char cwd[PATH_MAX];
};

static const char text[] = "[global]\n"
                           "control_socket = run/ferry.sock\n"
                           "[listener l]\n"
                           "bind = 127.0.0.1:8443\n"
                           "tls = on\n"
                           "tls_cert = certs/a.pem\n"
                           "tls_cert = ./certs//b.pem\n"
                           "tls_cert = /abs/c.pem\n"
                           "tls_client_ca = ../ca/clients.pem\n"
                           "backend = b\n"
                           "[backend b]\n"
                           "server s1 127.0.0.1:9001\n"
                           "tls = on\n"
                           "tls_ca = ca.pem\n";

static int setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    snprintf(t->dir, sizeof(t->dir), "/tmp/ferry-paths-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    char sub[80];
    snprintf(sub, sizeof(sub), "%s/etc", t->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(t->file, sizeof(t->file), "%s/ferry.ini", sub);
    FILE *f = fopen(t->file, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_non_null(getcwd(t->cwd, sizeof(t->cwd)));
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tmp *t = *state;
    char sub[80];
    snprintf(sub, sizeof(sub), "%s/etc", t->dir);
    unlink(t->file);
    rmdir(sub);
    rmdir(t->dir);
    assert_int_equal(chdir(t->cwd), 0);
    free(t);
    return 0;
}

static void expect_resolved(const struct ferry_config *cfg, const char *dir)
{
    char want[256];
    snprintf(want, sizeof(want), "%s/etc", dir);
    assert_string_equal(cfg->dir, want);
    snprintf(want, sizeof(want), "%s/etc/run/ferry.sock", dir);
    assert_string_equal(cfg->global.control_socket, want);
    const struct ferry_listener *l = &cfg->listeners[0];
    assert_int_equal(l->ntls_certs, 3);
    snprintf(want, sizeof(want), "%s/etc/certs/a.pem", dir);
    assert_string_equal(l->tls_certs[0], want);
    snprintf(want, sizeof(want), "%s/etc/certs/b.pem", dir);
    assert_string_equal(l->tls_certs[1], want);
    assert_string_equal(l->tls_certs[2], "/abs/c.pem");
    snprintf(want, sizeof(want), "%s/etc/../ca/clients.pem", dir);
    assert_string_equal(l->tls_client_ca, want);
    snprintf(want, sizeof(want), "%s/etc/ca.pem", dir);
    assert_string_equal(cfg->backends[0].tls_ca, want);
}

/* Loaded by absolute path from "/": the paths follow the file, not the cwd. */
static void test_absolute_config_path(void **state)
{
    struct tmp *t = *state;
    assert_int_equal(chdir("/"), 0);
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load(t->file, &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    expect_resolved(cfg, t->dir);
    ferry_config_free(cfg);
}

/* "-c etc/ferry.ini" from the directory above: relative to the cwd at load
 * time, then made absolute. */
static void test_relative_config_path(void **state)
{
    struct tmp *t = *state;
    assert_int_equal(chdir(t->dir), 0);
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load("./etc//ferry.ini", &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, "./etc//ferry.ini");   /* messages keep -c as given */
    expect_resolved(cfg, t->dir);
    ferry_config_free(cfg);

    assert_int_equal(chdir("etc"), 0);
    cfg = ferry_config_load("ferry.ini", &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    expect_resolved(cfg, t->dir);
    ferry_config_free(cfg);
}

/* A control socket path that only gets too long once resolved is an error
 * naming the resolved path; empty still disables. */
static void test_control_socket(void **state)
{
    (void)state;
    assert_int_equal(chdir("/"), 0);
    char name[120], *txt;
    memset(name, 'n', 100);
    name[100] = '\0';
    assert_true(asprintf(&txt, "[global]\ncontrol_socket = %s\n", name) > 0);
    struct ferry_config *cfg = cfg_ok(txt);   /* "/" + 100 bytes fits in 107 */
    assert_int_equal(cfg->global.control_socket[0], '/');
    assert_string_equal(cfg->global.control_socket + 1, name);
    ferry_config_free(cfg);
    free(txt);

    assert_true(asprintf(&txt, "[global]\ncontrol_socket = x/%s/yyyy\n", name) > 0);
    cfg_expect_one(txt, 2, "the path /x/nnnn");
    free(txt);

    cfg = cfg_ok("[global]\ncontrol_socket =\n");
    assert_string_equal(cfg->global.control_socket, "");
    ferry_config_free(cfg);
}

static void test_resolve_function(void **state)
{
    (void)state;
    static const struct {
        const char *dir, *path, *want;
    } cases[] = {
        {"/etc/ferry", "a.pem", "/etc/ferry/a.pem"},
        {"/etc/ferry", "./x/./a.pem", "/etc/ferry/x/a.pem"},
        {"/etc/ferry", "../a.pem", "/etc/ferry/../a.pem"},
        {"/etc/ferry", "/srv//a.pem", "/srv/a.pem"},
        {"/", "a.pem", "/a.pem"},
        {NULL, "a.pem", "a.pem"},
        {NULL, "/a.pem", "/a.pem"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = ferry_config_resolve_path(cases[i].dir, cases[i].path);
        assert_non_null(s);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
    char *d = ferry_config_dir("/etc/ferry/ferry.ini");
    assert_string_equal(d, "/etc/ferry");
    free(d);
    d = ferry_config_dir("/ferry.ini");
    assert_string_equal(d, "/");
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absolute_config_path),
        cmocka_unit_test(test_relative_config_path),
        cmocka_unit_test(test_control_socket),
        cmocka_unit_test(test_resolve_function),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

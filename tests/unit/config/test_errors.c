/* config errors: every class reported as FILE:LINE: message with the right
 * line, all errors of a file in one run, in line order. */
#include <unistd.h>

#include "cfg_test.h"

static void test_unknown_section_and_key(void **state)
{
    (void)state;
    cfg_expect_one("[global]\n"
                   "[frontend web]\n"
                   "bind = 127.0.0.1:80\n", 2, "unknown section [frontend web]");
    cfg_expect_one("[global]\n"
                   "max_conn = 5\n", 2, "unknown key \"max_conn\" in [global]");
    cfg_expect_one("[listener l]\n"
                   "bind = 127.0.0.1:8080\n"
                   "backend = b\n"
                   "balance = leastconn\n" CFG_BACKEND_B, 4,
                   "unknown key \"balance\" in [listener l]");
    cfg_expect_one("workers = 2\n[global]\n", 1, "outside any section");
    /* no '=' after bind: inih splits at the port's ':' */
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:1\nbind 127.0.0.1:2\nbackend = b\n"
                   CFG_BACKEND_B, 3,
                   "unknown key \"bind 127.0.0.1\" in [listener l]: missing '=' after bind?");
}

static void test_repeated_key(void **state)
{
    (void)state;
    cfg_expect_one("[global]\n"
                   "log_level = info\n"
                   "\n"
                   "log_level = debug\n", 4, "log_level given twice in [global] (first at line 2)");
    cfg_expect_one("[listener l]\n"
                   "bind = 127.0.0.1:8080\n"
                   "backend = b\n"
                   "backend = b\n" CFG_BACKEND_B, 4, "backend given twice");
    /* repeated in another section of the same kind is fine */
    struct ferry_config *cfg = cfg_ok("[backend a]\nserver = s 127.0.0.1:1\nretries = 1\n"
                                      "[backend b]\nserver = s 127.0.0.1:2\nretries = 3\n");
    assert_int_equal(cfg->backends[0].retries, 1);
    assert_int_equal(cfg->backends[1].retries, 3);
    ferry_config_free(cfg);
}

static void test_bad_values(void **state)
{
    (void)state;
    cfg_expect_one("[global]\nmax_connections = 80abc\n", 2, "max_connections");
    cfg_expect_one("[global]\nmax_connections = 0\n", 2, "max_connections");
    cfg_expect_one("[global]\nmax_connections = -1\n", 2, "max_connections");
    cfg_expect_one("[global]\nmax_connections =\n", 2, "empty value for max_connections");
    cfg_expect_one("[global]\nworkers = 0\n", 2, "workers");
    cfg_expect_one("[global]\nworkers = 257\n", 2, "workers");
    cfg_expect_one("[global]\nlog_level = verbose\n", 2, "log_level");
    cfg_expect_one("[global]\naccess_log = maybe\n", 2, "access_log");
    cfg_expect_one("[global]\ndrain_timeout = 10 s\n", 2, "drain_timeout");
    cfg_expect_one("[global]\nshutdown_delay = -1s\n", 2, "shutdown_delay");
    cfg_expect_one("[global]\nbuffer_size = 512\n", 2, "buffer_size");
    cfg_expect_one("[global]\nio_backend = uring\n", 2,
                   "invalid value \"uring\" for io_backend: expected auto, epoll, io_uring, poll "
                   "or kqueue");
    cfg_expect_one("[global]\nworkers = 2\nio_backend = \n", 3, "io_backend");
    cfg_expect_one("[global]\nreuseport = maybe\n", 2,
                   "invalid value \"maybe\" for reuseport: expected on, off");
    cfg_expect_one("[global]\nbuffer_size = 257k\n", 2, "buffer_size");
    cfg_expect_one("[global]\ncontrol_mode = 0690\n", 2, "control_mode");
    cfg_expect_one("[global]\nmetrics = localhost:9100\n", 2, "metrics");
    cfg_expect_one("[global]\nmetrics = unix:/x\n", 2, "metrics");
    cfg_expect_one("[global]\nresolvers = dns.example:53\n", 2, "invalid resolver");
    cfg_expect_one("[global]\nresolvers = 127.0.0.1\n", 2, "invalid resolver");
    cfg_expect_one("[global]\nresolvers = 1.1.1.1:53\nresolvers = 1.1.1.2:53\n"
                   "resolvers = 1.1.1.3:53\nresolvers = 1.1.1.4:53\nresolvers = 1.1.1.5:53\n"
                   "resolvers = 1.1.1.6:53\nresolvers = 1.1.1.7:53\nresolvers = 1.1.1.8:53\n"
                   "resolvers = 1.1.1.9:53\n", 10, "too many resolvers");
    cfg_expect_one("[global]\ndns_min_ttl = 0\n", 2, "dns_min_ttl");
    cfg_expect_one("[global]\ndns_min_ttl = 10m\n", 2, "dns_min_ttl is above dns_max_ttl");
    cfg_expect_one("[global]\ndns_max_ttl = 10m\ndns_min_ttl = 20m\n", 2,
                   "dns_min_ttl is above dns_max_ttl");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:65536\nbackend = b\n" CFG_BACKEND_B, 2,
                   "invalid bind address \"127.0.0.1:65536\"");
    cfg_expect_one("[listener l]\nbind = localhost:80\nbackend = b\n" CFG_BACKEND_B, 2,
                   "must be a numeric address");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\ntls_min_version = 1.1\n"
                   CFG_BACKEND_B, 4, "tls_min_version");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\ntls_alpn = h2,,x\n"
                   CFG_BACKEND_B, 4, "tls_alpn");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\nidle_timeout = 0\n"
                   CFG_BACKEND_B, 4, "idle_timeout");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\nallow = 10.0.0.0/33\n"
                   CFG_BACKEND_B, 4, "invalid allow \"10.0.0.0/33\"");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\naccept_proxy = on\n"
                   "accept_proxy_from = 10.0.0.0/99\n" CFG_BACKEND_B, 5,
                   "invalid accept_proxy_from \"10.0.0.0/99\"");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\n"
                   "accept_proxy_from = 10.0.0.0/8\n" CFG_BACKEND_B, 4,
                   "accept_proxy_from has no effect without accept_proxy = on");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\nroute = onlyone\n"
                   CFG_BACKEND_B, 4, "expected SERVERNAME BACKEND");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\nbackend_x = b\n"
                   CFG_BACKEND_B, 4, "unknown key");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nbalance = fastest\n", 3, "balance");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nhealth_check = smtp\n", 3, "health_check");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nsend_proxy = v3\n", 3, "send_proxy");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nhealth_rise = 0\n", 3, "health_rise");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nretries = 2x\n", 3, "retries");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\ntls_verify = 2\n", 3, "tls_verify");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1 weight=x\n", 2, "server weight");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1 weight=257\n", 2, "server weight");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1 fast\n", 2, "unknown server option");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1 backup backup\n", 2, "twice");
    cfg_expect_one("[backend b]\nserver = s\n", 2, "expected NAME ADDRESS");
    cfg_expect_one("[backend b]\nserver = s *:80\n", 2, "not *");
    cfg_expect_one("[backend b]\nserver = s/1 127.0.0.1:1\n", 2, "invalid server name");
}

/* ferry.ini(5): a TLS key where tls is not on is an error at its line. */
static void test_tls_keys_without_tls(void **state)
{
    (void)state;
    static const char *const listener[] = {"tls_cert = /c.pem", "tls_client_ca = /ca.pem",
                                           "tls_min_version = 1.3", "tls_ciphers = HIGH",
                                           "tls_ciphersuites = TLS_AES_128_GCM_SHA256",
                                           "tls_alpn = h2"};
    static const char *const backend[] = {"tls_ca = /ca.pem", "tls_verify = off"};
    char text[512], msg[64];
    for (size_t i = 0; i < sizeof(listener) / sizeof(listener[0]); i++) {
        for (int on = 0; on < 3; on++) {   /* absent, "tls = off", "tls = no" */
            snprintf(text, sizeof(text), "[listener l]\nbind = 127.0.0.1:1\n%s\n%s\n"
                     "backend = b\n" CFG_BACKEND_B, on == 0 ? "" : on == 1 ? "tls = off" :
                     "tls = no", listener[i]);
            snprintf(msg, sizeof(msg), "%.*s has no effect without tls = on",
                     (int)strcspn(listener[i], " "), listener[i]);
            cfg_expect_one(text, 4, msg);
        }
    }
    for (size_t i = 0; i < sizeof(backend) / sizeof(backend[0]); i++) {
        snprintf(text, sizeof(text), "[backend b]\n%s\nserver = s 127.0.0.1:1\n", backend[i]);
        snprintf(msg, sizeof(msg), "%.*s has no effect without tls = on",
                 (int)strcspn(backend[i], " "), backend[i]);
        cfg_expect_one(text, 2, msg);
    }
    /* tls_sni also serves health_check = tls, with or without tls = on */
    cfg_expect_one("[backend b]\ntls_sni = a.test\nserver = s 127.0.0.1:1\n", 2,
                   "tls_sni has no effect without tls = on or health_check = tls");
    ferry_config_free(cfg_ok("[backend b]\ntls_sni = a.test\nserver = s 127.0.0.1:1\n"
                             "health_check = tls\n"));
    cfg_expect_one("[backend b]\ntls_verify = off\nserver = s 127.0.0.1:1\n"
                   "health_check = tls\n", 2, "tls_verify has no effect without tls = on");
    /* every line of a repeatable key, each at its own line, in order */
    struct ferry_config_errors e = {0};
    assert_null(ferry_config_load_string("t.ini", "[listener l]\nbind = 127.0.0.1:1\n"
                                         "tls_cert = /a.pem\nbackend = b\ntls_cert = /b.pem\n"
                                         "tls_client_ca = /ca.pem\n" CFG_BACKEND_B
                                         "tls_ca = /ca.pem\n", &e));
    cfg_dump(&e);
    assert_int_equal(e.n, 4);
    assert_string_equal(e.msgs[0], "t.ini:3: tls_cert has no effect without tls = on");
    assert_string_equal(e.msgs[1], "t.ini:5: tls_cert has no effect without tls = on");
    assert_string_equal(e.msgs[2], "t.ini:6: tls_client_ca has no effect without tls = on");
    assert_string_equal(e.msgs[3], "t.ini:9: tls_ca has no effect without tls = on");
    ferry_config_errors_free(&e);
    /* with tls = on (before or after the keys) all is well */
    ferry_config_free(cfg_ok("[listener l]\nbind = 127.0.0.1:1\ntls_cert = /a.pem\n"
                             "tls_alpn = h2\ntls = on\nbackend = b\n[backend b]\n"
                             "tls_sni = a.test\ntls_verify = off\ntls = yes\n"
                             "server = s 127.0.0.1:1\n"));
    /* a bad tls value is the only error: the keys' meaning is unknown */
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:1\ntls = maybe\ntls_cert = /a.pem\n"
                   "backend = b\n" CFG_BACKEND_B, 3, "invalid value \"maybe\" for tls");
}

/* health_rise / health_fall: any positive 32-bit count (issue 8). */
static void test_health_counts(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok("[backend b]\nserver = s 127.0.0.1:1\n"
                                      "health_rise = 1000\nhealth_fall = 4294967295\n");
    assert_int_equal(cfg->backends[0].health_rise, 1000);
    assert_int_equal(cfg->backends[0].health_fall, 4294967295u);
    ferry_config_free(cfg);
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nhealth_fall = 4294967296\n", 3,
                   "a whole number from 1 to 4294967295");
    cfg_expect_one("[backend b]\nserver = s 127.0.0.1:1\nhealth_rise = 0\n", 3,
                   "a whole number from 1 to 4294967295");
}

static void test_missing_references(void **state)
{
    (void)state;
    cfg_expect_one("[listener l]\n"
                   "bind = 127.0.0.1:80\n"
                   "backend = nope\n" CFG_BACKEND_B, 3, "unknown backend \"nope\"");
    cfg_expect_one("[listener l]\n"
                   "bind = 127.0.0.1:80\n"
                   "route = a.example.com b\n"
                   "route = *.example.org missing\n" CFG_BACKEND_B, 4,
                   "unknown backend \"missing\"");
}

static void test_section_line_errors(void **state)
{
    (void)state;
    /* no bind: the line of the section header */
    cfg_expect_one("[global]\n\n[listener l]\nbackend = b\n" CFG_BACKEND_B, 3,
                   "listener \"l\" has no bind");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\nbackend = b\n\n[backend b]\nretries = 1\n",
                   5, "backend \"b\" has no server");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:80\n" CFG_BACKEND_B, 1,
                   "neither a backend nor a route");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:443\nbackend = b\ntls = on\n" CFG_BACKEND_B, 1,
                   "tls = on needs at least one tls_cert");
}

static void test_duplicates(void **state)
{
    (void)state;
    cfg_expect_one(CFG_BACKEND_B "\n[backend b]\nserver = s 127.0.0.1:1\n", 4,
                   "duplicate section [backend b] (first at line 1)");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:1\nbackend = b\n"
                   "[listener l]\nbind = 127.0.0.1:2\nbackend = b\n" CFG_BACKEND_B, 4,
                   "duplicate section [listener l]");
    cfg_expect_one("[global]\n[global]\n", 2, "duplicate section [global]");
    cfg_expect_one("[backend b]\nserver = a 127.0.0.1:1\nserver = a 127.0.0.1:2\n", 3,
                   "duplicate server \"a\" in backend \"b\" (first at line 2)");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:1\nroute = x.com b\nroute = X.com b\n"
                   CFG_BACKEND_B, 4, "duplicate route for x.com");
}

static void test_bad_names(void **state)
{
    (void)state;
    cfg_expect_one("[backend a/b]\nserver = s 127.0.0.1:1\n", 1, "invalid backend name \"a/b\"");
    cfg_expect_one("[listener]\nbind = 127.0.0.1:1\n", 1, "needs a name");
    cfg_expect_one("[listener a b]\nbind = 127.0.0.1:1\n", 1, "invalid listener name");
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:1\nbackend = b c\n" CFG_BACKEND_B, 3,
                   "invalid backend name");
    cfg_expect_one("[global\n", 1, "without ']'");
    cfg_expect_one("[global]\njust some words\n", 2, "expected \"key = value\"");
    cfg_expect_one("[global]\n= 5\n", 2, "missing key");
    cfg_expect_one("[global] trailing\n", 1, "unexpected text after section header");
}

static void test_bind_conflicts(void **state)
{
    (void)state;
    /* within a listener: the second line */
    cfg_expect_one("[listener l]\nbind = 127.0.0.1:8080\nbind = 127.0.0.1:8080\nbackend = b\n"
                   CFG_BACKEND_B, 3, "conflicts with bind 127.0.0.1:8080 at line 2");
    /* across listeners, normalised IPv6 text */
    cfg_expect_one("[listener a]\nbind = [::1]:8080\nbackend = b\n"
                   "[listener c]\nbind = [0:0::1]:8080\nbackend = b\n" CFG_BACKEND_B, 5,
                   "conflicts with bind [::1]:8080 at line 2");
    /* *:P clashes with any bind on port P, whichever comes first */
    cfg_expect_one("[listener a]\nbind = 127.0.0.1:80\nbackend = b\n"
                   "[listener c]\nbind = *:80\nbackend = b\n" CFG_BACKEND_B, 5, "conflicts");
    cfg_expect_one("[listener a]\nbind = *:80\nbackend = b\n"
                   "[listener c]\nbind = [::1]:80\nbackend = b\n" CFG_BACKEND_B, 5, "conflicts");
    /* metrics counts as a bind; a later [global] still reports the later line */
    cfg_expect_one("[listener a]\nbind = 127.0.0.1:9100\nbackend = b\n" CFG_BACKEND_B
                   "[global]\nmetrics = 127.0.0.1:9100\n", 7, "metrics 127.0.0.1:9100 conflicts");
    cfg_expect_one("[global]\ncontrol_socket = /tmp/f.sock\n"
                   "[listener a]\nbind = unix:/tmp/f.sock\nbackend = b\n" CFG_BACKEND_B, 4,
                   "conflicts with control_socket");
    /* different ports or addresses are fine */
    struct ferry_config *cfg = cfg_ok("[listener a]\nbind = 127.0.0.1:80\nbind = 127.0.0.2:80\n"
                                      "bind = [::1]:80\nbind = 127.0.0.1:81\nbackend = b\n"
                                      CFG_BACKEND_B);
    assert_int_equal(cfg->listeners[0].nbinds, 4);
    ferry_config_free(cfg);
}

static void test_line_too_long(void **state)
{
    (void)state;
    size_t n = 5000;
    char *text = malloc(n + 200);
    assert_non_null(text);
    int off = sprintf(text, "[global]\nlog_level = info\n[listener l]\ntls_ciphers = ");
    memset(text + off, 'A', n);
    sprintf(text + off + n, "\nbind = 127.0.0.1:1\nbackend = b\n" CFG_BACKEND_B);
    cfg_expect_one(text, 4, "line too long");
    free(text);
}

static void test_many_errors_in_order(void **state)
{
    (void)state;
    const char *text =
        "[global]\n"                          /* 1 */
        "workers = many\n"                    /* 2 bad value */
        "bogus = 1\n"                         /* 3 unknown key */
        "[listener web]\n"                    /* 4 */
        "bind = 127.0.0.1:80\n"               /* 5 */
        "bind = 127.0.0.1:80\n"               /* 6 conflict */
        "backend = nowhere\n"                 /* 7 unknown backend */
        "tls = perhaps\n"                     /* 8 bad bool */
        "[listener empty]\n"                  /* 9 no bind */
        "backend = app\n"                     /* 10 */
        "[backend app]\n"                     /* 11 */
        "server = a 127.0.0.1:1\n"              /* 12 */
        "server = a 127.0.0.1:2\n"              /* 13 duplicate server */
        "connect_timeout = 5x\n"              /* 14 bad duration */
        "connect_timeout = 5s\n"              /* 15 repeated */
        "[weird]\n"                           /* 16 unknown section */
        "anything = goes\n"                   /* 17 ignored: in a bad section */
        "[backend idle]\n";                   /* 18 no server */
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load_string("t.ini", text, &e);
    assert_null(cfg);
    cfg_dump(&e);
    const int lines[] = {2, 3, 6, 7, 8, 9, 13, 14, 15, 16, 18};
    const size_t n = sizeof(lines) / sizeof(lines[0]);
    assert_int_equal(e.n, n);
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "t.ini:%d: ", lines[i]);
        if (strncmp(e.msgs[i], prefix, strlen(prefix)) != 0)
            fail_msg("error %zu is \"%s\", expected line %d", i, e.msgs[i], lines[i]);
    }
    assert_true(cfg_find(&e, 7, "unknown backend \"nowhere\"") >= 0);
    assert_true(cfg_find(&e, 9, "no bind") >= 0);
    ferry_config_errors_free(&e);
}

static void test_unreadable_file(void **state)
{
    (void)state;
    struct ferry_config_errors e = {0};
    assert_null(ferry_config_load("/nonexistent/ferry.ini", &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.msgs[0], "/nonexistent/ferry.ini: cannot open: No such file or directory");
    ferry_config_errors_free(&e);
    /* errors added by later stages use the same form */
    ferry_config_error_add(&e, "f.ini", 12, "cannot read %s", "cert.pem");
    ferry_config_error_add(&e, "f.ini", 0, "whole file");
    assert_int_equal(e.n, 2);
    assert_string_equal(e.msgs[0], "f.ini:12: cannot read cert.pem");
    assert_string_equal(e.msgs[1], "f.ini: whole file");
    ferry_config_errors_free(&e);
    assert_int_equal(e.n, 0);
}

static void test_nul_byte(void **state)
{
    (void)state;
    char text[] = "[global]\nlog_level = in#fo\n";
    text[23] = '\0';   /* the '#' */
    struct ferry_config_errors e = {0};
    /* load_string stops at the NUL: the file loader must see the byte */
    char path[] = "/tmp/ferry-cfg-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
    fclose(f);
    assert_null(ferry_config_load(path, &e));
    unlink(path);
    assert_int_equal(e.n, 1);
    assert_true(strstr(e.msgs[0], ":2: line contains a NUL byte") != NULL);
    ferry_config_errors_free(&e);
}

/* Errors from later passes (TLS files, DNS, binds) merge into line order. */
static void test_sort_merges_passes(void **state)
{
    (void)state;
    struct ferry_config_errors errs = {0};
    ferry_config_error_add(&errs, "f.ini", 12, "c");
    ferry_config_error_add(&errs, "f.ini", 3, "a");
    ferry_config_error_add(&errs, "f.ini", 0, "whole file");
    ferry_config_error_add(&errs, "f.ini", 12, "d");
    ferry_config_error_add(&errs, "f.ini", 7, "b");
    ferry_config_errors_sort(&errs, "f.ini");
    assert_int_equal(errs.n, 5);
    assert_string_equal(errs.msgs[0], "f.ini: whole file");
    assert_string_equal(errs.msgs[1], "f.ini:3: a");
    assert_string_equal(errs.msgs[2], "f.ini:7: b");
    assert_string_equal(errs.msgs[3], "f.ini:12: c");
    assert_string_equal(errs.msgs[4], "f.ini:12: d");
    ferry_config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_section_and_key),
        cmocka_unit_test(test_repeated_key),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_missing_references),
        cmocka_unit_test(test_tls_keys_without_tls),
        cmocka_unit_test(test_health_counts),
        cmocka_unit_test(test_section_line_errors),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bind_conflicts),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_many_errors_in_order),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_sort_merges_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* config loading: defaults, every key stored, repeatable keys, inih's
 * syntax (comments, ':' separator, indentation, CRLF, BOM), values longer
 * than inih's 200-char line kept whole, and the shipped configs. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cfg_test.h"

#ifndef FERRY_SOURCE_DIR
#error "FERRY_SOURCE_DIR must be defined by the build"
#endif

static void test_defaults(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok("[listener l]\nbind = 127.0.0.1:8080\nbackend = b\n"
                                      CFG_BACKEND_B);
    const struct ferry_global *g = &cfg->global;
    assert_string_equal(cfg->path, "t.ini");
    assert_int_equal(g->workers, 0);
    assert_int_equal(g->max_connections, 10000);
    assert_string_equal(g->control_socket, "/run/ferry/ferry.sock");
    assert_int_equal(g->control_mode, 0660);
    assert_string_equal(g->user, "");
    assert_string_equal(g->group, "");
    assert_int_equal(g->log_level, FERRY_LOG_INFO);
    assert_true(g->access_log);
    assert_int_equal(g->drain_timeout_ms, 30000);
    assert_int_equal(g->shutdown_delay_ms, 0);
    assert_int_equal(g->buffer_size, 16384);
    assert_false(g->has_metrics);
    assert_int_equal(g->nresolvers, 0);
    assert_int_equal(g->dns_min_ttl_ms, 1000);
    assert_int_equal(g->dns_max_ttl_ms, 300000);
    assert_int_equal(g->reuseport, FERRY_REUSEPORT_DEFAULT);
    assert_int_equal(g->io_backend, FERRY_IO_AUTO);

    assert_int_equal(cfg->nlisteners, 1);
    const struct ferry_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "l");
    assert_int_equal(l->line, 1);
    assert_int_equal(l->nbinds, 1);
    assert_int_equal(l->bind_lines[0], 2);
    assert_string_equal(l->backend, "b");
    assert_int_equal(l->backend_index, 0);
    assert_int_equal(l->backend_line, 3);
    assert_false(l->tls);
    assert_int_equal(l->ntls_certs, 0);
    assert_int_equal(l->tls_min_version, 0x0303);
    assert_null(l->tls_ciphers);
    assert_null(l->tls_ciphersuites);
    assert_null(l->tls_alpn);
    assert_null(l->tls_client_ca);
    assert_int_equal(l->nroutes, 0);
    assert_false(l->accept_proxy);
    assert_int_equal(l->nallow + l->ndeny, 0);
    assert_int_equal(l->max_connections, 0);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->handshake_timeout_ms, 10000);

    assert_int_equal(cfg->nbackends, 1);
    const struct ferry_backend *b = &cfg->backends[0];
    assert_string_equal(b->name, "b");
    assert_int_equal(b->line, 4);
    assert_int_equal(b->nservers, 1);
    assert_string_equal(b->servers[0].name, "s1");
    assert_string_equal(b->servers[0].addr.text, "127.0.0.1:9001");
    assert_int_equal(b->servers[0].weight, 1);
    assert_false(b->servers[0].backup);
    assert_int_equal(b->servers[0].line, 5);
    assert_int_equal(b->balance, FERRY_BALANCE_ROUNDROBIN);
    assert_int_equal(b->connect_timeout_ms, 5000);
    assert_int_equal(b->retries, 2);
    assert_int_equal(b->health_check, FERRY_HEALTH_OFF);
    assert_int_equal(b->health_interval_ms, 5000);
    assert_int_equal(b->health_timeout_ms, 2000);
    assert_int_equal(b->health_rise, 2);
    assert_int_equal(b->health_fall, 3);
    assert_false(b->tls);
    assert_true(b->tls_verify);
    assert_null(b->tls_ca);
    assert_null(b->tls_sni);
    assert_int_equal(b->send_proxy, 0);
    assert_int_equal(ferry_config_backend_index(cfg, "b"), 0);
    assert_int_equal(ferry_config_backend_index(cfg, "x"), -1);
    ferry_config_free(cfg);
}

static void test_reuseport(void **state)
{
    (void)state;
    static const char *const v[] = {"on", "off"};
    for (size_t i = 0; i < 2; i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "[global]\nreuseport = %s\n[listener l]\nbind = 127.0.0.1:8080\nbackend = b\n"
                 CFG_BACKEND_B, v[i]);
        struct ferry_config *cfg = cfg_ok(text);
        assert_int_equal(cfg->global.reuseport, i == 0);
        ferry_config_free(cfg);
    }
}

static void test_io_backend(void **state)
{
    (void)state;
    static const char *const v[] = {"auto", "epoll", "io_uring", "poll", "kqueue", "IO_URING"};
    static const enum ferry_io_backend want[] = {FERRY_IO_AUTO, FERRY_IO_EPOLL, FERRY_IO_URING,
                                                 FERRY_IO_POLL, FERRY_IO_KQUEUE, FERRY_IO_URING};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "[global]\nio_backend = %s\n[listener l]\nbind = 127.0.0.1:8080\nbackend = b\n"
                 CFG_BACKEND_B, v[i]);
        struct ferry_config *cfg = cfg_ok(text);
        assert_int_equal(cfg->global.io_backend, want[i]);
        ferry_config_free(cfg);
    }
}

static void test_every_key(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok(
        "[global]\n"
        "workers = 4\n"
        "max_connections = 500\n"
        "control_socket = /run/x.sock\n"
        "control_mode = 0600\n"
        "user = ferry\n"
        "group = ferry\n"
        "log_level = debug\n"
        "access_log = off\n"
        "drain_timeout = 250ms\n"
        "buffer_size = 64k\n"
        "metrics = [::1]:9100\n"
        "[listener web]\n"                              /* 13 */
        "bind = *:8443\n"
        "bind = unix:/tmp/web.sock\n"
        "backend = app\n"
        "tls = on\n"
        "tls_cert = /etc/a.pem\n"                       /* 18 */
        "tls_cert = /etc/b.pem\n"
        "tls_min_version = 1.3\n"
        "tls_ciphers = ECDHE+AESGCM:!aNULL\n"
        "tls_ciphersuites = TLS_AES_128_GCM_SHA256\n"
        "tls_alpn = h2,http/1.1\n"
        "tls_client_ca = /etc/ca.pem\n"                 /* 24 */
        "route = API.example.com api\n"
        "route = *.example.com app\n"
        "accept_proxy = yes\n"
        "accept_proxy_from = 10.1.0.0/16 ::1\n"
        "accept_proxy_from = 127.0.0.1\n"
        "allow = 10.0.0.0/8, 192.168.0.0/16\n"
        "allow = 2001:db8::/32\n"
        "deny = 10.9.0.0/16\n"
        "max_connections = 100\n"
        "idle_timeout = 1h\n"
        "handshake_timeout = 3\n"
        "[backend app]\n"                               /* 36 */
        "server = a1 10.0.0.1:80 weight=3\n"
        "server a2 app2.internal:80 backup ; a comment\n"
        "  server\ta3   [::1]:80 backup weight=0\n"
        "server a4 unix:/run/app.sock\n"
        "balance = source\n"
        "connect_timeout = 2s\n"
        "retries = 0\n"
        "health_check = tls\n"
        "health_interval = 1m\n"
        "health_timeout = 500ms\n"
        "health_rise = 1\n"
        "health_fall = 10\n"
        "tls = true\n"
        "tls_verify = no\n"
        "tls_ca = /etc/ca2.pem\n"                       /* 51 */
        "tls_sni = app.example.com\n"
        "send_proxy = v2\n"
        "[backend api]\n"
        "server = x 127.0.0.1:7000\n"
        "send_proxy = v1\n"
        "balance = leastconn\n");
    const struct ferry_global *g = &cfg->global;
    assert_int_equal(g->workers, 4);
    assert_int_equal(g->max_connections, 500);
    assert_string_equal(g->control_socket, "/run/x.sock");
    assert_int_equal(g->control_mode, 0600);
    assert_string_equal(g->user, "ferry");
    assert_string_equal(g->group, "ferry");
    assert_int_equal(g->log_level, FERRY_LOG_DEBUG);
    assert_false(g->access_log);
    assert_int_equal(g->drain_timeout_ms, 250);
    assert_int_equal(g->buffer_size, 65536);
    assert_true(g->has_metrics);
    assert_string_equal(g->metrics.text, "[::1]:9100");
    assert_int_equal(g->metrics_line, 12);

    const struct ferry_listener *l = &cfg->listeners[0];
    assert_int_equal(l->line, 13);
    assert_int_equal(l->nbinds, 2);
    assert_int_equal(l->binds[0].kind, FERRY_ADDR_ANY);
    assert_int_equal(l->binds[1].kind, FERRY_ADDR_UNIX);
    assert_int_equal(l->bind_lines[1], 15);
    assert_int_equal(l->backend_index, 0);
    assert_true(l->tls);
    assert_int_equal(l->ntls_certs, 2);
    assert_string_equal(l->tls_certs[0], "/etc/a.pem");
    assert_string_equal(l->tls_certs[1], "/etc/b.pem");
    assert_int_equal(l->tls_cert_lines[0], 18);
    assert_int_equal(l->tls_cert_lines[1], 19);
    assert_int_equal(l->tls_min_version, 0x0304);
    assert_string_equal(l->tls_ciphers, "ECDHE+AESGCM:!aNULL");
    assert_string_equal(l->tls_ciphersuites, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(l->tls_alpn, "h2,http/1.1");
    assert_string_equal(l->tls_client_ca, "/etc/ca.pem");
    assert_int_equal(l->tls_client_ca_line, 24);
    assert_int_equal(l->nroutes, 2);
    assert_string_equal(l->routes[0].servername, "api.example.com");   /* lower-cased */
    assert_string_equal(l->routes[0].backend, "api");
    assert_int_equal(l->routes[0].backend_index, 1);
    assert_int_equal(l->routes[0].line, 25);
    assert_string_equal(l->routes[1].servername, "*.example.com");
    assert_int_equal(l->routes[1].backend_index, 0);
    assert_true(l->accept_proxy);
    assert_int_equal(l->nproxy_from, 3);
    assert_int_equal(l->proxy_from[0].prefix, 16);
    assert_int_equal(l->proxy_from[1].family, AF_INET6);
    assert_int_equal(l->proxy_from[1].prefix, 128);
    assert_int_equal(l->proxy_from[2].prefix, 32);
    assert_int_equal(l->nallow, 3);
    assert_int_equal(l->allow[0].family, AF_INET);
    assert_int_equal(l->allow[0].prefix, 8);
    assert_int_equal(l->allow[1].prefix, 16);
    assert_int_equal(l->allow[2].family, AF_INET6);
    assert_int_equal(l->ndeny, 1);
    assert_int_equal(l->deny[0].prefix, 16);
    assert_int_equal(l->max_connections, 100);
    assert_int_equal(l->idle_timeout_ms, 3600000);
    assert_int_equal(l->handshake_timeout_ms, 3000);

    const struct ferry_backend *b = &cfg->backends[0];
    assert_int_equal(b->line, 36);
    assert_int_equal(b->nservers, 4);
    assert_int_equal(b->servers[0].weight, 3);
    assert_false(b->servers[0].backup);
    assert_true(b->servers[0].addr.resolved);
    assert_string_equal(b->servers[1].addr.host, "app2.internal");
    assert_false(b->servers[1].addr.resolved);
    assert_true(b->servers[1].backup);
    assert_int_equal(b->servers[1].weight, 1);
    assert_true(b->servers[2].backup);
    assert_int_equal(b->servers[2].weight, 0);
    assert_int_equal(b->servers[3].addr.kind, FERRY_ADDR_UNIX);
    assert_int_equal(b->balance, FERRY_BALANCE_SOURCE);
    assert_int_equal(b->connect_timeout_ms, 2000);
    assert_int_equal(b->retries, 0);
    assert_int_equal(b->health_check, FERRY_HEALTH_TLS);
    assert_int_equal(b->health_interval_ms, 60000);
    assert_int_equal(b->health_timeout_ms, 500);
    assert_int_equal(b->health_rise, 1);
    assert_int_equal(b->health_fall, 10);
    assert_true(b->tls);
    assert_false(b->tls_verify);
    assert_string_equal(b->tls_ca, "/etc/ca2.pem");
    assert_int_equal(b->tls_ca_line, 51);
    assert_string_equal(b->tls_sni, "app.example.com");
    assert_int_equal(b->send_proxy, 2);
    assert_int_equal(cfg->backends[1].send_proxy, 1);
    assert_int_equal(cfg->backends[1].balance, FERRY_BALANCE_LEASTCONN);
    ferry_config_free(cfg);
}

/* A listener with routes only: unrouted connections are refused. */
static void test_routes_without_backend(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok("[listener sni]\nbind = 127.0.0.1:443\n"
                                      "route = a.example.com b\n" CFG_BACKEND_B);
    assert_string_equal(cfg->listeners[0].backend, "");
    assert_int_equal(cfg->listeners[0].backend_index, -1);
    assert_int_equal(cfg->listeners[0].routes[0].backend_index, 0);
    ferry_config_free(cfg);
}

static void test_syntax_like_inih(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok(
        "\xEF\xBB\xBF; a BOM, then a comment\r\n"
        "# hash comment\r\n"
        "[global]   ; inline comment after a header\r\n"
        "   log_level = warn ; inline comment\r\n"
        "\tworkers: 3\r\n"                /* ':' separator, indented */
        "  [listener l]\r\n"              /* an indented header is a header */
        "bind=127.0.0.1:8080\r\n"
        "    backend = b\r\n"             /* indented, not a continuation */
        "tls_ciphers = A;B\r\n"           /* ';' without a space before it is data */
        "tls_alpn = h2 ;comment\r\n"
        "tls = on\r\ntls_cert = /c.pem\r\n"
        CFG_BACKEND_B);
    assert_int_equal(cfg->global.log_level, FERRY_LOG_WARN);
    assert_int_equal(cfg->global.workers, 3);
    assert_int_equal(cfg->listeners[0].line, 6);
    assert_string_equal(cfg->listeners[0].backend, "b");
    assert_string_equal(cfg->listeners[0].tls_ciphers, "A;B");
    assert_string_equal(cfg->listeners[0].tls_alpn, "h2");
    ferry_config_free(cfg);
}

/* ferry.ini(5): ';' and '#' start a comment after whitespace, in any value. */
static void test_inline_comments(void **state)
{
    (void)state;
    struct ferry_config *cfg = cfg_ok(
        "[global]\n"
        "drain_timeout = 2s  # two seconds\n"
        "max_connections = 7\t; seven\n"
        "[listener l]  # a listener\n"
        "bind = 127.0.0.1:8080 # the port\n"
        "tls_ciphers = A#B;C  #comment\n"     /* no whitespace before: data */
        "backend = b\n"
        "tls = on # terminate\ntls_cert = /c.pem ; the certificate\n"
        "[backend b]\n"
        "server s1 127.0.0.1:9001 weight=3 # the first\n");
    assert_int_equal(cfg->global.drain_timeout_ms, 2000);
    assert_int_equal(cfg->global.max_connections, 7);
    assert_string_equal(cfg->listeners[0].binds[0].text, "127.0.0.1:8080");
    assert_string_equal(cfg->listeners[0].tls_ciphers, "A#B;C");
    assert_true(cfg->listeners[0].tls);
    assert_string_equal(cfg->listeners[0].tls_certs[0], "/c.pem");
    assert_int_equal(cfg->backends[0].servers[0].weight, 3);
    ferry_config_free(cfg);
}

/* inih cuts lines at 200 chars; ours keeps values whole up to 4096 per line. */
static void test_long_values_whole(void **state)
{
    (void)state;
    char value[301], *text;
    for (size_t i = 0; i < 300; i++)
        value[i] = (char)('A' + i % 26);
    value[300] = '\0';
    assert_true(asprintf(&text, "[listener l]\nbind = 127.0.0.1:1\ntls_ciphers = %s\n"
                         "backend = b\ntls = on\ntls_cert = /c.pem\n" CFG_BACKEND_B, value) > 0);
    struct ferry_config *cfg = cfg_ok(text);
    assert_string_equal(cfg->listeners[0].tls_ciphers, value);
    assert_int_equal(cfg->listeners[0].backend_line, 4);   /* line count intact */
    ferry_config_free(cfg);
    free(text);

    /* the longest line that is accepted */
    size_t max = FERRY_CONFIG_LINE_MAX, pre = strlen("tls_ciphersuites = ");
    char *big = malloc(max + 1);
    assert_non_null(big);
    memset(big, 'x', max - pre);
    big[max - pre] = '\0';
    assert_true(asprintf(&text, "[listener l]\nbind = 127.0.0.1:1\ntls_ciphersuites = %s\n"
                         "backend = b\ntls = on\ntls_cert = /c.pem\n" CFG_BACKEND_B, big) > 0);
    cfg = cfg_ok(text);
    assert_int_equal(strlen(cfg->listeners[0].tls_ciphersuites), max - pre);
    ferry_config_free(cfg);
    free(text);
    /* one char more is an error naming line 3 */
    memset(big, 'x', max - pre + 1);
    big[max - pre + 1] = '\0';
    assert_true(asprintf(&text, "[listener l]\nbind = 127.0.0.1:1\ntls_ciphersuites = %s\n"
                         "backend = b\ntls = on\ntls_cert = /c.pem\n" CFG_BACKEND_B, big) > 0);
    cfg_expect_one(text, 3, "line too long: 4097 characters, at most 4096");
    free(text);
    free(big);
}

/* A long line with a long key is still an unknown key at its line. */
static void test_long_unknown_key(void **state)
{
    (void)state;
    char key[251], *text;
    memset(key, 'k', 250);
    key[250] = '\0';
    assert_true(asprintf(&text, "[global]\n%s = 1\n", key) > 0);
    cfg_expect_one(text, 2, "unknown key \"kkkk");
    free(text);
}

static void test_demo_config(void **state)
{
    (void)state;
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg = ferry_config_load(FERRY_SOURCE_DIR "/config/ferry.ini", &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    assert_int_equal(e.n, 0);
    /* relative to config/, not to the working directory */
    assert_string_equal(cfg->global.control_socket, FERRY_SOURCE_DIR "/config/../.run/ferry.sock");
    assert_true(cfg->global.access_log);
    assert_true(cfg->global.has_metrics);
    assert_string_equal(cfg->global.metrics.text, "127.0.0.1:9100");
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].name, "demo");
    assert_string_equal(cfg->listeners[0].binds[0].text, "127.0.0.1:8080");
    int b = cfg->listeners[0].backend_index;
    assert_true(b >= 0);
    assert_string_equal(cfg->backends[b].name, "demo");
    assert_int_equal(cfg->backends[b].nservers, 2);
    assert_string_equal(cfg->backends[b].servers[0].addr.text, "127.0.0.1:9001");
    assert_string_equal(cfg->backends[b].servers[1].addr.text, "127.0.0.1:9002");
    ferry_config_free(cfg);
}

/* The shipped example (issue 8): valid as installed, binding only one
 * loopback address, naming no file; and everything it shows commented out
 * (every global key, the four setups) is valid once uncommented. */
static void test_example_config(void **state)
{
    (void)state;
    struct ferry_config_errors e = {0};
    struct ferry_config *cfg =
        ferry_config_load(FERRY_SOURCE_DIR "/config/ferry.ini.example", &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    assert_int_equal(e.n, 0);
    assert_false(cfg->global.has_metrics);
    assert_int_equal(cfg->nlisteners, 1);
    const struct ferry_listener *l = &cfg->listeners[0];
    assert_int_equal(l->nbinds, 1);
    assert_string_equal(l->binds[0].text, "127.0.0.1:8080");
    assert_false(l->tls);
    for (size_t i = 0; i < cfg->nbackends; i++) {
        assert_false(cfg->backends[i].tls);
        for (size_t j = 0; j < cfg->backends[i].nservers; j++)
            assert_true(cfg->backends[i].servers[j].addr.resolved);   /* no DNS */
    }
    ferry_config_free(cfg);

    /* Uncomment every ";key = value" and ";[section]" line. */
    FILE *f = fopen(FERRY_SOURCE_DIR "/config/ferry.ini.example", "r");
    assert_non_null(f);
    char line[512], *all = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&all, &len);
    assert_non_null(out);
    while (fgets(line, sizeof(line), f)) {
        bool commented_key = line[0] == ';' && (line[1] == '[' || (line[1] >= 'a' && line[1] <= 'z'));
        fputs(commented_key ? line + 1 : line, out);
    }
    fclose(f);
    fclose(out);
    cfg = ferry_config_load_string("example", all, &e);
    cfg_dump(&e);
    assert_non_null(cfg);
    assert_true(cfg->nlisteners >= 5);
    bool tls = false, sni = false, mtls = false;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct ferry_listener *x = &cfg->listeners[i];
        tls |= x->tls && x->ntls_certs > 0;
        sni |= !x->tls && x->nroutes > 0;
        mtls |= x->tls && x->tls_client_ca != NULL;
    }
    assert_true(tls);
    assert_true(sni);
    assert_true(mtls);
    ferry_config_free(cfg);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_reuseport),
        cmocka_unit_test(test_io_backend),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_routes_without_backend),
        cmocka_unit_test(test_syntax_like_inih),
        cmocka_unit_test(test_inline_comments),
        cmocka_unit_test(test_long_values_whole),
        cmocka_unit_test(test_long_unknown_key),
        cmocka_unit_test(test_demo_config),
        cmocka_unit_test(test_example_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

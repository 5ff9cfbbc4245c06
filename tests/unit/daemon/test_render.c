/* The renderers of `show info|stats|conns|metrics`, over a fake daemon with
 * a hand-built generation: valid JSON with the right values, aligned text
 * tables, Prometheus text with HELP/TYPE for every metric and escaped labels. */
#include "fake_daemon.h"

#include "control/render.h"

static int setup(void **state)
{
    struct fake *f = malloc(sizeof(*f));
    assert_non_null(f);
    fake_init(f, 2, NULL);
    fake_fill_counters(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fake *f = *state;
    fake_destroy(f);
    free(f);
    return 0;
}

/* Renders with fn into a fresh buffer (caller frees). */
static char *render(struct fake *f, int (*fn)(struct ferry_daemon *, bool, struct ferry_buf *),
                    bool json)
{
    struct ferry_buf b;
    ferry_buf_init(&b);
    assert_int_equal(fn(&f->d, json, &b), 0);
    assert_non_null(b.data);
    assert_int_equal(b.data[b.len - 1], '\n');
    return b.data;
}

static char *render_metrics(struct fake *f)
{
    struct ferry_buf b;
    ferry_buf_init(&b);
    assert_int_equal(ferry_render_metrics(&f->d, &b), 0);
    assert_non_null(b.data);
    assert_int_equal(b.data[b.len - 1], '\n');
    return b.data;
}

static void test_buf_json_escaping(void **state)
{
    (void)state;
    struct ferry_buf b;
    ferry_buf_init(&b);
    ferry_buf_json_str(&b, "a\"b\\c\n\t\x01z");
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001z\"");
    ferry_buf_reset(&b);
    ferry_buf_prom_label(&b, "x\"y\\z\nw");
    assert_string_equal(b.data, "x\\\"y\\\\z\\nw");
    ferry_buf_reset(&b);
    for (int i = 0; i < 1000; i++) /* growth */
        ferry_buf_printf(&b, "%04d", i);
    assert_int_equal(b.len, 4000);
    assert_memory_equal(b.data + 3996, "0999", 4);
    assert_false(b.oom);
    ferry_buf_free(&b);
}

static void test_info_text(void **state)
{
    struct fake *f = *state;
    char *s = render(f, ferry_render_info, false);
    char want[64];
    snprintf(want, sizeof(want), "version: %s\n", ferry_version());
    assert_true(strncmp(s, want, strlen(want)) == 0);
    assert_non_null(strstr(s, "\npid: 4242\n"));
    assert_non_null(strstr(s, "\nworkers: 2\n"));
    assert_non_null(strstr(s, "\nactive: 2\n"));
    assert_non_null(strstr(s, "\ntotal: 120\n"));
    assert_non_null(strstr(s, "\nmax_connections: 500\n"));
    assert_non_null(strstr(s, "\nreloads: 0\n"));
    assert_non_null(strstr(s, "\nconfig: /etc/ferry/ferry.ini\n"));
    assert_non_null(strstr(s, "\nlog_dropped: 0\n"));
    assert_non_null(strstr(s, "\nio_backend: -\n")); /* the fake has no runtime */
    assert_non_null(strstr(s, "\nuptime_s: "));
    assert_non_null(strstr(s, "\nreloads_failed: 0\nlast_reload: 0\nlast_reload_ok: true\n"));
    assert_non_null(strstr(s, "\nstate: ready\n"));
    free(s);
}

static void test_info_json(void **state)
{
    struct fake *f = *state;
    atomic_store(&f->d.reloads, 3);
    atomic_store(&f->d.reloads_failed, 2);
    atomic_store(&f->d.last_reload, 1700000000);
    atomic_store(&f->d.last_reload_ok, false);
    atomic_store(&f->d.stopping, true);
    char *s = render(f, ferry_render_info, true);
    assert_int_equal(
        json_check(s, "set(d) == {\"version\", \"pid\", \"uptime_s\", \"workers\", \"active\", "
                      "\"total\", \"max_connections\", \"reloads\", \"reloads_failed\", "
                      "\"last_reload\", \"last_reload_ok\", \"config\", \"state\", "
                      "\"log_dropped\", \"io_backend\"} and d[\"io_backend\"] == \"-\" and "
                      "d[\"pid\"] == 4242 and d[\"workers\"] == 2 and d[\"active\"] == 2 and "
                      "d[\"total\"] == 120 and d[\"max_connections\"] == 500 and "
                      "d[\"reloads\"] == 3 and d[\"config\"] == \"/etc/ferry/ferry.ini\" and "
                      "d[\"reloads_failed\"] == 2 and d[\"last_reload\"] == 1700000000 and "
                      "d[\"last_reload_ok\"] is False and d[\"state\"] == \"stopping\" and "
                      "5 <= d[\"uptime_s\"] < 60 and len(d[\"version\"]) > 0"),
        0);
    atomic_store(&f->d.reloads, 0);
    atomic_store(&f->d.reloads_failed, 0);
    atomic_store(&f->d.last_reload, 0);
    atomic_store(&f->d.last_reload_ok, true);
    atomic_store(&f->d.stopping, false);
    free(s);
}

static void test_stats_json(void **state)
{
    struct fake *f = *state;
    char *s = render(f, ferry_render_stats, true);
    assert_int_equal(
        json_check(s,
                   "set(d) == {\"listeners\", \"backends\"} and "
                   "d[\"listeners\"][0] == {\"name\": \"web\", \"binds\": [\"127.0.0.1:8080\", "
                   "\"[::1]:8080\"], \"tls\": False, \"active\": 2, \"total\": 120, "
                   "\"rejected\": 3, \"bytes_in\": 123, \"bytes_out\": 456, "
                   "\"handshake_errors\": 2, \"accepting\": True, \"rejected_by\": {\"deny\": 1, "
                   "\"client_limit\": 2, \"client_rate\": 0, \"bad_proxy\": 0, "
                   "\"bad_hello\": 0, \"no_route\": 0, \"queue_full\": 0, \"proxy_untrusted\": 0}, "
                   "\"clients\": 0} and "
                   "d[\"listeners\"][1][\"name\"] == \"sec\" and d[\"listeners\"][1][\"total\"] == 0 and "
                   "len(d[\"backends\"]) == 2 and "
                   "{k: v for k, v in d[\"backends\"][0].items() if k != \"servers\"} == "
                   "{\"name\": \"app\", \"balance\": \"roundrobin\", \"active\": 2, \"total\": 120, "
                   "\"queue\": 0} and "
                   "{k: v for k, v in d[\"backends\"][0][\"servers\"][0].items() "
                   "if k != \"last_change_s\"} == {\"name\": \"app1\", \"address\": "
                   "\"127.0.0.1:9000\", \"state\": \"up\", \"check\": \"-\", \"max_connections\": 0, "
                   "\"active\": 1, \"total\": 60, "
                   "\"connect_errors\": 4, \"bytes_in\": 456, \"bytes_out\": 123, "
                   "\"weight\": 1, \"backup\": False} and "
                   "d[\"backends\"][0][\"servers\"][0][\"last_change_s\"] >= 0 and "
                   "d[\"backends\"][0][\"servers\"][1][\"name\"] == \"app2\" and "
                   "d[\"backends\"][1][\"balance\"] == \"leastconn\" and "
                   "d[\"backends\"][1][\"servers\"][0][\"state\"] == \"down\" and "
                   "d[\"backends\"][1][\"servers\"][0][\"check\"] == \"status 503\""),
        0);
    free(s);
}

/* Runtime state: a weight set, a server in maint, a listener disabled. */
static void test_stats_json_runtime_state(void **state)
{
    struct fake *f = *state;
    struct ferry_gen *g = f->d.gen;
    struct ferry_server_stats *app1 = g->backends[0].servers[0].stats;
    struct ferry_server_stats *app2 = g->backends[0].servers[1].stats;
    atomic_store(&app1->weight, 7);
    atomic_store(&app2->maint, true);
    atomic_store(&app2->disabled, true); /* maint wins */
    atomic_store(&app2->last_change_ms, ac_clock_now_ms() - 3500);
    atomic_store(&g->listeners[1].stats->disabled, true);
    char *s = render(f, ferry_render_stats, true);
    int rc = json_check(s, "d[\"backends\"][0][\"servers\"][0][\"weight\"] == 7 and "
                           "d[\"backends\"][0][\"servers\"][1][\"weight\"] == 1 and "
                           "d[\"backends\"][0][\"servers\"][1][\"state\"] == \"maint\" and "
                           "3 <= d[\"backends\"][0][\"servers\"][1][\"last_change_s\"] < 60 and "
                           "d[\"listeners\"][0][\"accepting\"] is True and "
                           "d[\"listeners\"][1][\"accepting\"] is False");
    free(s);
    atomic_store(&app1->weight, -1);
    atomic_store(&app2->maint, false);
    atomic_store(&app2->disabled, false);
    atomic_store(&app2->last_change_ms, ac_clock_now_ms());
    atomic_store(&g->listeners[1].stats->disabled, false);
    assert_int_equal(rc, 0);
}

/* Every line of one table has the same length: the last column is
 * right-aligned and every cell is padded to its column's width. */
static void assert_table_aligned(const char *table, size_t nlines)
{
    size_t len0 = strcspn(table, "\n");
    const char *p = table;
    for (size_t i = 0; i < nlines; i++) {
        size_t n = strcspn(p, "\n");
        assert_int_equal(n, len0);
        assert_int_equal(p[n], '\n');
        assert_true(n == 0 || p[n - 1] != ' ');
        p += n + 1;
    }
}

static void test_stats_text(void **state)
{
    struct fake *f = *state;
    char *s = render(f, ferry_render_stats, false);
    assert_true(strncmp(s, "listener ", 9) == 0);
    assert_table_aligned(s, 3); /* header, web, sec */
    assert_non_null(strstr(s, "\nweb "));
    assert_non_null(strstr(s, "127.0.0.1:8080,[::1]:8080"));
    const char *backends = strstr(s, "\n\nbackend/server");
    assert_non_null(backends);
    assert_table_aligned(backends + 2, 6); /* header, app, app1, app2, db, db1 */
    assert_non_null(strstr(backends, "\napp "));
    assert_non_null(strstr(backends, "\n  app1 "));
    assert_non_null(strstr(backends, "roundrobin"));
    assert_non_null(strstr(backends, "leastconn"));
    const char *db1 = strstr(backends, "\n  db1 ");
    assert_non_null(db1);
    assert_non_null(strstr(db1, " down "));
    free(s);
}

/* Renders `show conns` of f's connections into a fresh buffer (caller frees). */
static char *render_conns(struct fake *f, bool json)
{
    struct ferry_buf b;
    ferry_buf_init(&b);
    assert_int_equal(ferry_render_conns(f->conns, f->nconns, json, &b), 0);
    assert_non_null(b.data);
    assert_int_equal(b.data[b.len - 1], '\n');
    return b.data;
}

static void test_conns(void **state)
{
    struct fake *f = *state;
    char *s = render_conns(f, true);
    assert_int_equal(
        json_check(s, "d == {\"conns\": [{\"id\": 17, \"listener\": \"web\", \"client\": "
                      "\"127.0.0.1:51234\", \"server\": \"app/app1\", \"age_s\": 3, "
                      "\"bytes_in\": 512, \"bytes_out\": 20480}, {\"id\": 18, \"listener\": "
                      "\"sec\", \"client\": \"[::1]:40000\", \"server\": \"-\", \"age_s\": 0, "
                      "\"bytes_in\": 0, \"bytes_out\": 0}]}"),
        0);
    free(s);
    s = render_conns(f, false);
    assert_table_aligned(s, 3);
    assert_non_null(strstr(s, "17  web "));
    assert_non_null(strstr(s, "127.0.0.1:51234  app/app1"));
    assert_non_null(strstr(s, "20480\n"));
    free(s);
    /* No connection: still valid. */
    size_t n = f->nconns;
    f->nconns = 0;
    s = render_conns(f, true);
    assert_int_equal(json_check(s, "d == {\"conns\": []}"), 0);
    free(s);
    f->nconns = n;
}

/* Every sample's metric has a HELP and a TYPE line before it, gauges for
 * *_active and ferry_server_up, counters for *_total. */
static void assert_exposition(const char *text)
{
    char helped[128][64], typed[128][64];
    size_t nh = 0, nt = 0, samples = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, "\n");
        char line[512];
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (p[n] == '\n');
        char name[64], type[16];
        if (sscanf(line, "# HELP %63s", name) == 1) {
            strcpy(helped[nh++], name);
        } else if (sscanf(line, "# TYPE %63s %15s", name, type) == 2) {
            size_t ln = strlen(name);
            if (ln > 7 && strcmp(name + ln - 7, "_active") == 0)
                assert_string_equal(type, "gauge");
            if (ln > 6 && strcmp(name + ln - 6, "_total") == 0)
                assert_string_equal(type, "counter");
            if (strcmp(name, "ferry_server_up") == 0)
                assert_string_equal(type, "gauge");
            if (ln > 8 && strcmp(name + ln - 8, "_seconds") == 0 && strstr(name, "timestamp") == NULL &&
                strncmp(name, "process_", 8) != 0 && strstr(name, "not_after") == NULL)
                assert_string_equal(type, "histogram");
            strcpy(typed[nt++], name);
        } else {
            assert_true(line[0] != '#' && line[0] != '\0');
            size_t k = strcspn(line, "{ ");
            assert_true(k < sizeof(name));
            memcpy(name, line, k);
            name[k] = '\0';
            /* A histogram's samples are NAME_bucket, NAME_sum, NAME_count. */
            static const char *const sfx[] = {"_bucket", "_sum", "_count"};
            for (size_t x = 0; x < 3; x++) {
                size_t ln = strlen(name), ls = strlen(sfx[x]);
                bool hist = false;
                for (size_t i = 0; i < nt; i++)
                    hist |= strncmp(typed[i], name, ln - ls) == 0 && typed[i][ln - ls] == '\0';
                if (ln > ls && strcmp(name + ln - ls, sfx[x]) == 0 && hist)
                    name[ln - ls] = '\0';
            }
            bool h = false, t = false;
            for (size_t i = 0; i < nh; i++)
                h |= strcmp(helped[i], name) == 0;
            for (size_t i = 0; i < nt; i++)
                t |= strcmp(typed[i], name) == 0;
            if (!h || !t)
                fail_msg("no HELP/TYPE before %s", line);
            samples++;
        }
        assert_true(nh < 128 && nt < 128);
    }
    assert_int_equal(nh, nt);
    assert_true(samples > 0);
}

/* Histograms, rejections by reason, states, weights and limits. */
static void test_metrics_more(void **state)
{
    struct fake *f = *state;
    struct ferry_gen *g = f->d.gen;
    struct ferry_listener_wstats *w = &g->listeners[0].stats->w[1];
    ferry_hist_observe(&w->handshake, FERRY_HIST_SHORT, 3000); /* microseconds */
    ferry_hist_observe(&w->handshake, FERRY_HIST_SHORT, 700000);
    ferry_hist_observe(&w->handshake, FERRY_HIST_SHORT, 99999000);
    ferry_hist_observe(&g->backends[0].servers[0].stats->w[0].connect, FERRY_HIST_SHORT, 40);
    ferry_ctr_add(&w->rejected_by[FERRY_REJECT_DENY], 2);
    ferry_ctr_add(&w->rejected_by[FERRY_REJECT_QUEUE_FULL], 1);
    atomic_store(&g->backends[0].servers[1].stats->weight, 9);
    char *s = render_metrics(f);
    assert_exposition(s);
    static const char *want[] = {
        "\nferry_listener_handshake_seconds_bucket{listener=\"web\",le=\"0.001\"} 0\n",
        "\nferry_listener_handshake_seconds_bucket{listener=\"web\",le=\"0.005\"} 1\n",
        "\nferry_listener_handshake_seconds_bucket{listener=\"web\",le=\"1\"} 2\n",
        "\nferry_listener_handshake_seconds_bucket{listener=\"web\",le=\"5\"} 2\n",
        "\nferry_listener_handshake_seconds_bucket{listener=\"web\",le=\"+Inf\"} 3\n",
        "\nferry_listener_handshake_seconds_sum{listener=\"web\"} 100.702000\n",
        "\nferry_listener_handshake_seconds_count{listener=\"web\"} 3\n",
        "\nferry_listener_session_seconds_count{listener=\"sec\"} 0\n",
        "\nferry_server_connect_seconds_bucket{backend=\"app\",server=\"app1\",le=\"0.0001\"} 1\n",
        "\nferry_server_connect_seconds_bucket{backend=\"app\",server=\"app1\",le=\"0.001\"} 1\n",
        "\nferry_server_connect_seconds_sum{backend=\"app\",server=\"app1\"} 0.000040\n",
        "\nferry_listener_accepting{listener=\"web\"} 1\n",
        "\nferry_listener_rejected_by_reason_total{listener=\"web\",reason=\"deny\"} 3\n",
        "\nferry_listener_rejected_by_reason_total{listener=\"web\",reason=\"queue_full\"} 1\n",
        "\nferry_listener_rejected_by_reason_total{listener=\"sec\",reason=\"deny\"} 0\n",
        "\nferry_server_state{backend=\"db\",server=\"db1\",state=\"down\"} 1\n",
        "\nferry_server_state{backend=\"db\",server=\"db1\",state=\"up\"} 0\n",
        "\nferry_server_state{backend=\"app\",server=\"app1\",state=\"maint\"} 0\n",
        "\nferry_server_weight{backend=\"app\",server=\"app2\"} 9\n",
        "\nferry_server_weight{backend=\"app\",server=\"app1\"} 1\n",
        "\nferry_listener_max_connections{listener=\"web\"} 0\n",
        "\nferry_max_connections 500\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(s, want[i]))
            fail_msg("missing:%s", want[i]);
    free(s);
    char *j = render(f, ferry_render_stats, true);
    int rc = json_check(j, "d[\"listeners\"][0][\"rejected_by\"][\"deny\"] == 3 and "
                           "d[\"listeners\"][0][\"rejected_by\"][\"queue_full\"] == 1 and "
                           "d[\"listeners\"][0][\"rejected_by\"][\"no_route\"] == 0");
    free(j);
    atomic_store(&g->backends[0].servers[1].stats->weight, -1);
    assert_int_equal(rc, 0);
}

static void test_metrics(void **state)
{
    struct fake *f = *state;
    char *s = render_metrics(f);
    assert_exposition(s);
    static const char *names[] = {
        "ferry_listener_connections_active", "ferry_listener_connections_total",
        "ferry_listener_rejected_total", "ferry_listener_bytes_in_total",
        "ferry_listener_bytes_out_total", "ferry_server_up", "ferry_server_connections_active",
        "ferry_server_connections_total", "ferry_server_connect_errors_total",
        "ferry_server_bytes_in_total", "ferry_server_bytes_out_total",
        "ferry_server_check_failures_total", "ferry_server_weight", "ferry_server_state",
        "ferry_listener_max_connections", "ferry_listener_rejected_by_reason_total",
        "ferry_max_connections", "ferry_connections_active", "ferry_server_connect_seconds",
        "ferry_listener_handshake_seconds", "ferry_listener_session_seconds", "ferry_build_info",
        "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
        "process_max_fds", "process_start_time_seconds", "ferry_reloads_total",
        "ferry_reloads_failed_total", "ferry_config_last_reload_successful",
        "ferry_config_last_reload_success_timestamp_seconds"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "# HELP %s ", names[i]);
        assert_non_null(strstr(s, want));
    }
    assert_non_null(strstr(s, "\nferry_listener_connections_total{listener=\"web\"} 120\n"));
    assert_non_null(strstr(s, "\nferry_listener_connections_active{listener=\"web\"} 2\n"));
    assert_non_null(strstr(s, "\nferry_listener_rejected_total{listener=\"web\"} 3\n"));
    assert_non_null(strstr(s, "\nferry_listener_bytes_in_total{listener=\"sec\"} 0\n"));
    assert_non_null(strstr(s, "\nferry_server_up{backend=\"app\",server=\"app1\"} 1\n"));
    assert_non_null(strstr(s, "\nferry_server_up{backend=\"db\",server=\"db1\"} 0\n"));
    assert_non_null(
        strstr(s, "\nferry_server_connect_errors_total{backend=\"app\",server=\"app1\"} 4\n"));
    assert_non_null(strstr(s, "\nferry_server_bytes_out_total{backend=\"app\",server=\"app1\"} 123\n"));
    assert_non_null(
        strstr(s, "\nferry_server_check_failures_total{backend=\"db\",server=\"db1\"} 7\n"));
    free(s);
    /* A disabled server is not up. */
    atomic_store(&f->d.gen->backends[0].servers[1].stats->disabled, true);
    s = render_metrics(f);
    assert_non_null(strstr(s, "\nferry_server_up{backend=\"app\",server=\"app2\"} 0\n"));
    free(s);
    atomic_store(&f->d.gen->backends[0].servers[1].stats->disabled, false);
}

/* Names are validated by the config loader, but nothing in the renderers
 * relies on it: quotes, backslashes and newlines stay escaped. */
static void test_escaping_of_odd_names(void **state)
{
    struct fake *f = *state;
    struct ferry_config *cfg = f->d.gen->cfg;
    char saved[FERRY_NAME_MAX], saved_srv[FERRY_NAME_MAX];
    strcpy(saved, cfg->listeners[0].name);
    strcpy(saved_srv, cfg->backends[0].servers[0].name);
    strcpy(cfg->listeners[0].name, "we\"b\\\n");
    strcpy(cfg->backends[0].servers[0].name, "a\"1");
    char *s = render(f, ferry_render_stats, true);
    assert_int_equal(json_check(s, "d[\"listeners\"][0][\"name\"] == \"we\" + chr(34) + \"b\" + "
                                   "chr(92) + chr(10) and d[\"backends\"][0][\"servers\"][0]"
                                   "[\"name\"] == \"a\" + chr(34) + \"1\""),
                     0);
    free(s);
    s = render_metrics(f);
    assert_exposition(s);
    assert_non_null(strstr(s, "\nferry_listener_connections_total{listener=\"we\\\"b\\\\\\n\"} 120\n"));
    assert_non_null(strstr(s, "\nferry_server_up{backend=\"app\",server=\"a\\\"1\"} 1\n"));
    free(s);
    strcpy(cfg->listeners[0].name, saved);
    strcpy(cfg->backends[0].servers[0].name, saved_srv);
}

static void test_no_generation(void **state)
{
    struct fake *f = *state;
    struct ferry_gen *g = f->d.gen;
    f->d.gen = NULL;
    char *s = render(f, ferry_render_stats, true);
    assert_int_equal(json_check(s, "d == {\"listeners\": [], \"backends\": []}"), 0);
    free(s);
    s = render_metrics(f);
    assert_exposition(s);
    free(s);
    f->d.gen = g;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_json_escaping),
        cmocka_unit_test(test_info_text),
        cmocka_unit_test(test_info_json),
        cmocka_unit_test(test_stats_json_runtime_state),
        cmocka_unit_test(test_stats_json),
        cmocka_unit_test(test_stats_text),
        cmocka_unit_test(test_conns),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_escaping_of_odd_names),
        cmocka_unit_test(test_no_generation),
        cmocka_unit_test(test_metrics_more), /* last: its counters stay */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

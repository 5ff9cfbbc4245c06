/* /ready and /live on the metrics address, answered over a fake daemon:
 * ready until a stop signal, live while every event loop's heartbeat is
 * recent, 503 otherwise; HEAD without a body. */
#include "fake_daemon.h"

#include "buf.h"
#include "control/metrics_http.h"

static char *answer(struct fake *f, const char *req)
{
    struct ferry_buf out;
    ferry_buf_init(&out);
    ferry_metrics_answer(&f->d, req, strlen(req), false, false, &out);
    assert_false(out.oom);
    assert_non_null(out.data);
    return out.data;
}

static void expect(struct fake *f, const char *req, const char *status, const char *body)
{
    char *s = answer(f, req);
    assert_true(strncmp(s, status, strlen(status)) == 0);
    const char *b = strstr(s, "\r\n\r\n");
    assert_non_null(b);
    assert_string_equal(b + 4, body);
    assert_non_null(strstr(s, "Cache-Control: no-store\r\n"));
    free(s);
}

static void test_probes(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 3, NULL);
    struct ferry_worker workers[3];
    memset(workers, 0, sizeof(workers));
    f.d.workers = workers;
    /* No heartbeat yet: not live. Ready, since no stop signal came. */
    expect(&f, "GET /live HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", "event loop stalled\n");
    expect(&f, "GET /ready HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", "ready\n");
    uint64_t now = ac_clock_now_ms();
    for (int i = 0; i < 3; i++)
        atomic_store(&workers[i].alive_ms, now);
    expect(&f, "GET /live HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", "live\n");
    expect(&f, "HEAD /live HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK", "");
    /* One loop stuck for longer than the limit: not live. */
    atomic_store(&workers[1].alive_ms, now - FERRY_LIVE_LIMIT_MS - 1000);
    expect(&f, "GET /live HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", "event loop stalled\n");
    atomic_store(&workers[1].alive_ms, now);
    /* Stopping (during shutdown_delay too): not ready, still live. */
    atomic_store(&f.d.stopping, true);
    expect(&f, "GET /ready?x HTTP/1.1\r\n\r\n", "HTTP/1.1 503 ", "stopping\n");
    expect(&f, "GET /live HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", "live\n");
    char *s = answer(&f, "POST /ready HTTP/1.1\r\n\r\n");
    assert_true(strncmp(s, "HTTP/1.1 405", 12) == 0);
    free(s);
    f.d.workers = NULL;
    fake_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Fuzz target: the ferry.ini loader (inih with our line reader). Any text
 * must give a configuration or errors, never a crash or a leak, and every
 * error must carry the file name. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct ferry_config_errors errs = {0};
    struct ferry_config *cfg = ferry_config_load_string("fuzz.ini", text, &errs);
    assert((cfg == NULL) == (errs.n > 0));
    for (size_t i = 0; i < errs.n; i++)
        assert(strncmp(errs.msgs[i], "fuzz.ini", 8) == 0);
    ferry_config_free(cfg);
    ferry_config_errors_free(&errs);
    free(text);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("[global]\nworkers = 2\nmax_connections = 100\ndrain_timeout = 250ms\n"
              "buffer_size = 16k\naccess_log = off\n"
              "[listener web]\nbind = 127.0.0.1:8080\nbind = [::1]:8080\nbackend = app\n"
              "allow = 10.0.0.0/8\ndeny = 10.1.0.0/16\nidle_timeout = 5m\n"
              "route = *.example.com app\n"
              "[backend app]\nserver a 127.0.0.1:9000 weight=3\nserver b host.test:9001 backup\n"
              "balance = leastconn\nhealth_check = tcp\nsend_proxy = v2\n"),
    FUZZ_SEED("[listener x]\nbind = unix:/tmp/x.sock\ntls = on\ntls_cert = /nonexistent.pem\n"
              "tls_min_version = 1.3\nbackend = y\n[backend y]\nserver s *:80\n"),
    FUZZ_SEED("; comment\n# comment\n[global]\nmetrics = 127.0.0.1:9100\n"),
    FUZZ_SEED("[listener l]\nbind = 127.0.0.1:1\nbackend = b\naccept_proxy = on\n"
              "max_connections_per_client = 10\nclient_rate = 100\n"
              "[backend b]\nserver s 127.0.0.1:2 weight=2 max_connections=5\nsend_proxy = v2\n"
              "health_check = http\nhealth_uri = /primary\nhealth_status = 200,3xx\n"
              "queue_timeout = 1s\nmax_queue = 10\nslow_start = 30s\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

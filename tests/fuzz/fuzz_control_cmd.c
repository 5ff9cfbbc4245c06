/* Fuzz target: the control socket's command parser, fed whatever a local
 * client writes. It must accept or refuse with a printable message. */
#include <assert.h>
#include <string.h>

#include "proto/control_cmd.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_ctl_request req;
    int rc = ferry_ctl_parse((const char *)data, size, &req);
    if (rc != 0) {
        assert(memchr(req.error, '\0', sizeof(req.error)) != NULL);
        for (const char *p = req.error; *p; p++)
            assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    }
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("show stats json\n"), FUZZ_SEED("disable server web/app1\n"),
    FUZZ_SEED("help\r\n"), FUZZ_SEED("reload\n"), FUZZ_SEED("show conns\n"),
    FUZZ_SEED("set server web/app1 state maint\n"), FUZZ_SEED("set server web/app1 weight 256\n"),
    FUZZ_SEED("add server web app3 127.0.0.1:9003 weight=2 backup max_connections=10\n"),
    FUZZ_SEED("del server web/app3\n"), FUZZ_SEED("disable listener web\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

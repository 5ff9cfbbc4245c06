/* Fuzz target: the ClientHello parser used for SNI routing without
 * terminating TLS. Any input must yield NEED_MORE, OK or INVALID without
 * reading outside it; an OK result must be consistent. */
#include <assert.h>
#include <string.h>

#include "proto/clienthello.h"
#include "fuzz.h"

#include "real_hello.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_clienthello ch;
    enum ferry_ch_result r = ferry_clienthello_parse(data, size, &ch);
    if (r == FERRY_CH_OK) {
        assert(ch.length <= size);
        assert(memchr(ch.server_name, '\0', sizeof(ch.server_name)) != NULL);
        assert(ch.has_sni == (ch.server_name[0] != '\0'));
        /* The same bytes split at any point parse the same way. */
        struct ferry_clienthello again;
        assert(ferry_clienthello_parse(data, ch.length, &again) == FERRY_CH_OK);
        assert(strcmp(again.server_name, ch.server_name) == 0);
    }
    return 0;
}

static const struct fuzz_seed seeds[] = {
    {real_hello, sizeof(real_hello)},
    FUZZ_SEED("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03"),
    FUZZ_SEED("GET / HTTP/1.1\r\n\r\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

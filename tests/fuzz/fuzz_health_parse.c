/* Fuzz target: what a backend answers an http health check (health_parse):
 * the status line, read as it arrives, and the expected-body search. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "proto/health_parse.h"
#include "fuzz.h"

static void check_status(const char *buf, size_t size)
{
    int rc = ferry_http_status_line(buf, size);
    assert(rc == 0 || rc == -EINVAL || (rc >= 100 && rc <= 599));
    if (rc > 0) {
        assert(size >= 14 && memcmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ');
        assert((buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0') == rc);
        assert(memmem(buf, size, "\r\n", 2) != NULL);
    }
    if (size == 0)
        return;
    /* Read as it arrives: one byte fewer is never a different verdict, only
     * "more needed" (0) in place of the full input's. */
    int before = ferry_http_status_line(buf, size - 1);
    if (before == -EINVAL && size - 1 < FERRY_HTTP_STATUS_LINE_MAX)
        assert(rc == -EINVAL);
    if (before > 0)
        assert(rc == before);
}

static void check_contains(const char *buf, size_t size)
{
    /* The needle is the input's first byte-counted part (0..16 bytes). */
    size_t nlen = size ? (unsigned char)buf[0] % 17 : 0;
    if (nlen + 1 > size)
        return;
    const char *needle = buf + 1, *hay = buf + 1 + nlen;
    size_t hlen = size - 1 - nlen;
    bool naive = false;
    for (size_t i = 0; nlen && !naive && i + nlen <= hlen; i++)
        naive = memcmp(hay + i, needle, nlen) == 0;
    assert(ferry_bytes_contain(hay, hlen, needle, nlen) == naive);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_status((const char *)data, size);
    check_contains((const char *)data, size);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    FUZZ_SEED("HTTP/1.0 503 Service Unavailable\r\n\r\n"),
    FUZZ_SEED("HTTP/1.1 204\r\n\r\n"),
    FUZZ_SEED("HTTP/1.1 301 Moved\tPermanently\r\nLocation: /\r\n\r\n"),
    FUZZ_SEED("HTTP/2 200\r\n\r\n"),
    FUZZ_SEED("\x02okHTTP/1.1 200 OK\r\n\r\nall ok"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

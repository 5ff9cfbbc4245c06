/* Fuzz target: the request head of the metrics and probe endpoint (metrics
 * = HOST:PORT), fed whatever a client on the network sends: where the head
 * ends, and the request line's method and path. */
#include <assert.h>
#include <string.h>

#include "proto/http_request.h"
#include "fuzz.h"

static void check_head(const char *buf, size_t size)
{
    size_t head = ferry_http_head_complete(buf, size);
    assert(head <= size);
    if (head == 0) {
        assert(memmem(buf, size, "\n\n", 2) == NULL && memmem(buf, size, "\n\r\n", 3) == NULL);
        return;
    }
    /* It ends at an empty line, the first one: a shorter prefix has none. */
    assert(head >= 2 && buf[head - 1] == '\n');
    assert(buf[head - 2] == '\n' || (head >= 3 && buf[head - 2] == '\r' && buf[head - 3] == '\n'));
    assert(ferry_http_head_complete(buf, head - 1) == 0);
}

static void check_line(const char *buf, size_t size)
{
    char method[16], path[64];
    memset(method, 'x', sizeof(method));
    memset(path, 'x', sizeof(path));
    if (!ferry_http_request_line(buf, size, method, sizeof(method), path, sizeof(path))) {
        assert(method[0] == 'x' && path[0] == 'x'); /* untouched */
        return;
    }
    size_t ml = strnlen(method, sizeof(method)), pl = strnlen(path, sizeof(path));
    assert(ml > 0 && ml < sizeof(method) && pl > 0 && pl < sizeof(path));
    for (size_t i = 0; i < ml; i++)
        assert(method[i] >= 'A' && method[i] <= 'Z');
    assert(path[0] == '/');
    for (size_t i = 0; i < pl; i++)
        assert((unsigned char)path[i] > ' ' && path[i] != 0x7f && path[i] != '?');
    /* Both are what the line says, in place. */
    assert(memcmp(buf, method, ml) == 0 && buf[ml] == ' ');
    assert(memcmp(buf + ml + 1, path, pl) == 0);
    const char *eol = memchr(buf, '\n', size);
    assert(eol != NULL);
    size_t n = (size_t)(eol - buf);
    if (n && buf[n - 1] == '\r')
        n--;
    assert(n >= 8 && memcmp(buf + n - 8, "HTTP/1.", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_head((const char *)data, size);
    check_line((const char *)data, size);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nAccept: */*\r\n\r\n"),
    FUZZ_SEED("GET /ready HTTP/1.0\n\n"),
    FUZZ_SEED("HEAD /live HTTP/1.1\r\n\r\n"),
    FUZZ_SEED("GET /metrics?name[]=ferry_server_up HTTP/1.1\r\nUser-Agent: Prometheus/2.42\r\n\r\n"),
    FUZZ_SEED("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    FUZZ_SEED("garbage\r\n\r\n"),
    FUZZ_SEED("GET  /x HTTP/1.1\r\n\r\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

/* Fuzz target: the HTTP/1.1 answer parser of the ACME client (the CA's
 * answers: status line, headers, a body by Content-Length, chunked or up to
 * the end). Any input, complete or cut anywhere, parses without reading
 * outside it: an incomplete answer asks for more, a complete one gives a
 * status (or -1) and a NUL-terminated body no longer than the input; the
 * input is left unchanged, and parsing a prefix then the whole gives the
 * same as the whole alone. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "acme/http.h"
#include "fuzz.h"

static bool check(const char *buf, size_t len, bool eof, struct ferry_acme_http *h)
{
    bool done = ferry_acme_http_parse(h, buf, len, eof);
    if (!done) { /* at the end, only an answer without its blank line is incomplete */
        assert(!eof || len < 4 || !memmem(buf, len, "\r\n\r\n", 4));
        return false;
    }
    assert(h->status == -1 || (h->status >= 100 && h->status <= 999));
    if (h->status > 0 && h->body) {
        assert(h->body_len <= len);
        assert(h->body[h->body_len] == '\0');
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    struct ferry_acme_http h, whole;
    memset(&whole, 0, sizeof(whole));
    check(buf, size, true, &whole);
    /* As a read loop does: a prefix (incomplete), then the whole. */
    for (size_t cut = 0; cut <= size; cut += 1 + size / 8) {
        memset(&h, 0, sizeof(h));
        if (!check(buf, cut, false, &h)) {
            check(buf, size, true, &h);
            assert(h.status == whole.status && h.body_len == whole.body_len);
            assert(!h.body == !whole.body);
            assert(!h.body || memcmp(h.body, whole.body, h.body_len) == 0);
        }
        free(h.body);
    }
    assert(memcmp(buf, data, size) == 0);
    free(whole.body);
    free(buf);
    return 0;
}

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nReplay-Nonce: abc\r\n"
              "Content-Length: 2\r\n\r\n{}"),
    FUZZ_SEED("HTTP/1.1 201 Created\r\nLocation: https://ca/acct/1\r\nTransfer-Encoding: chunked"
              "\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n"),
    FUZZ_SEED("HTTP/1.1 200 OK\r\nLink: <https://ca/issuer>;rel=\"up\"\r\nRetry-After: 3\r\n\r\n"
              "-----BEGIN CERTIFICATE-----\n"),
    FUZZ_SEED("HTTP/1.0 400 Bad Request\r\nContent-Type: application/problem+json\r\n\r\n"
              "{\"type\":\"urn:ietf:params:acme:error:badNonce\"}"),
    FUZZ_SEED("HTTP/1.1 204 No Content\r\n\r\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

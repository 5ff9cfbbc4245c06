/* ferryd: reading an HTTP/1.x request head (see http_request.h). */
#include <string.h>

#include "proto/http_request.h"

/* The head ends at the first empty line (CRLF CRLF, or bare LF LF). */
size_t ferry_http_head_complete(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

/* The request line: METHOD SP TARGET SP HTTP/1.x. Fills the method and path
 * (target without its query). Returns false when malformed. */
bool ferry_http_request_line(const char *req, size_t len, char *method, size_t msize, char *path,
                             size_t psize)
{
    const char *eol = memchr(req, '\n', len);
    if (!eol)
        return false;
    size_t n = (size_t)(eol - req);
    if (n && req[n - 1] == '\r')
        n--;
    const char *sp1 = memchr(req, ' ', n);
    if (!sp1)
        return false;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', n - (size_t)(target - req));
    if (!sp2)
        return false;
    const char *version = sp2 + 1;
    size_t vlen = n - (size_t)(version - req);
    size_t mlen = (size_t)(sp1 - req), tlen = (size_t)(sp2 - target);
    if (!is_token(req, mlen) || mlen >= msize || tlen == 0 || target[0] != '/' ||
        vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' || version[7] > '9')
        return false;
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
            return false;
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    if (plen >= psize)
        plen = psize - 1; /* a long path is simply not /metrics */
    memcpy(method, req, mlen);
    method[mlen] = '\0';
    memcpy(path, target, plen);
    path[plen] = '\0';
    return true;
}

/* ferryd: reading a health check's answer.
 *
 * The status line is parsed strictly (RFC 9112 section 4): a server that
 * answers something else is not healthy, whatever digits it may contain. The
 * rest of the answer (headers, body) is never read.
 */
#include <errno.h>
#include <string.h>

#include "proto/health_parse.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

int ferry_http_status_line(const char *buf, size_t len)
{
    static const char version[] = "HTTP/1.";
    const size_t vlen = sizeof(version) - 1;
    /* What has arrived must agree with the fixed prefix "HTTP/1.D SP DDD". */
    size_t pre = len < vlen ? len : vlen;
    if (memcmp(buf, version, pre) != 0)
        return -EINVAL;
    if (len <= vlen)
        return 0;
    if (!is_digit(buf[vlen]))
        return -EINVAL;
    if (len > vlen + 1 && buf[vlen + 1] != ' ')
        return -EINVAL;
    size_t code_at = vlen + 2;
    for (size_t i = code_at; i < code_at + 3 && i < len; i++)
        if (!is_digit(buf[i]) || (i == code_at && (buf[i] < '1' || buf[i] > '5')))
            return -EINVAL;
    if (len < code_at + 3)
        return 0;
    int code = (buf[code_at] - '0') * 100 + (buf[code_at + 1] - '0') * 10 + (buf[code_at + 2] - '0');
    /* Then " reason" (visible characters, spaces, tabs, obs-text), CRLF. */
    size_t i = code_at + 3;
    if (i < len && buf[i] == ' ')
        i++;
    else if (i < len && buf[i] != '\r')
        return -EINVAL;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\r')
            break;
        if (c != '\t' && (c < 0x20 || c == 0x7f))
            return -EINVAL;
    }
    if (i >= len)
        return len >= FERRY_HTTP_STATUS_LINE_MAX ? -EINVAL : 0;
    if (i + 1 >= len)
        return 0;
    return buf[i + 1] == '\n' ? code : -EINVAL;
}

bool ferry_bytes_contain(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    return nlen > 0 && memmem(hay, hlen, needle, nlen) != NULL;
}

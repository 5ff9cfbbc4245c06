/* ferryd: reading a health check's answer (see health_parse.c). */
#ifndef FERRY_HEALTH_PARSE_H
#define FERRY_HEALTH_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest status line an http check reads before calling the answer bad. */
#define FERRY_HTTP_STATUS_LINE_MAX 1024

/* Parses an HTTP/1.x status line at the start of buf (len bytes so far):
 * "HTTP/1.D SP 3DIGIT SP reason CRLF" (the reason may be empty; a line
 * ending right after the code is accepted). Returns the status (100-599),
 * 0 when more bytes are needed, or -EINVAL when the bytes cannot be one
 * (also a line longer than FERRY_HTTP_STATUS_LINE_MAX). */
int ferry_http_status_line(const char *buf, size_t len);

/* True when needle (nlen > 0 bytes, may hold NUL) occurs in hay. */
bool ferry_bytes_contain(const char *hay, size_t hlen, const char *needle, size_t nlen);

#endif

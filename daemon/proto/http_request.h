/* ferryd: reading an HTTP/1.x request head (the metrics and probe endpoint). */
#ifndef FERRY_HTTP_REQUEST_H
#define FERRY_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the head at the start of buf[0..len): up to and including the
 * first empty line (CRLF CRLF, or bare LF LF); 0 while it is incomplete. */
size_t ferry_http_head_complete(const char *buf, size_t len);

/* The request line "METHOD SP TARGET SP HTTP/1.D" (CRLF or LF) at the start
 * of req[0..len): the method (upper-case letters, NUL-terminated, shorter
 * than msize) and the target's path without its query (starts with '/', no
 * control character or space, cut to psize - 1 bytes). False when the line
 * is incomplete or malformed; method and path are then untouched. */
bool ferry_http_request_line(const char *req, size_t len, char *method, size_t msize, char *path,
                             size_t psize);

#endif

/* ferryd: a small growable output buffer.
 *
 * Used to build control-socket and metrics answers. Appending never fails
 * loudly: an allocation failure sets a sticky flag (oom) and later appends do
 * nothing, so a renderer can append freely and check once at the end.
 */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct ferry_buf {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap;
    bool oom;
};

void ferry_buf_init(struct ferry_buf *b);
void ferry_buf_free(struct ferry_buf *b);
/* Empties the buffer (keeps its memory, clears oom). */
void ferry_buf_reset(struct ferry_buf *b);

/* Each returns 0, or -ENOMEM (also recorded in b->oom). */
int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n);
int ferry_buf_puts(struct ferry_buf *b, const char *s);
int ferry_buf_printf(struct ferry_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. Control characters
 * are escaped; bytes >= 0x80 are copied as they are (names are ASCII). */
int ferry_buf_json_str(struct ferry_buf *b, const char *s);
/* Appends s for a text view (a table cell, a `key: value` line): a byte
 * below 0x20 or from 0x7f up is escaped as the logs escape it (\n, \t,
 * \xHH), so a name or address from the network can neither break a line
 * nor reach a terminal raw. */
int ferry_buf_text(struct ferry_buf *b, const char *s);
/* Appends s escaped for a Prometheus label value (\\, \" and \n), no quotes. */
int ferry_buf_prom_label(struct ferry_buf *b, const char *s);

#endif

/* ferryd ACME: one HTTPS request (see http.h). */
#include "acme/http.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls/tls_ctx.h"

enum { H_CONNECT, H_HANDSHAKE, H_WRITE, H_READ, H_DONE };

int ferry_acme_url_parse(const char *url, char *host, size_t host_cap, uint16_t *port,
                         const char **path)
{
    if (strncasecmp(url, "https://", 8) != 0)
        return -EINVAL;
    const char *h = url + 8, *end = h + strcspn(h, "/?#");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -EINVAL;
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
    }
    const char *hend = colon ? colon : end;
    if (hend == h || (size_t)(hend - h) >= host_cap)
        return -EINVAL;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    *port = 443;
    if (colon) {
        char *e;
        unsigned long p = strtoul(colon + 1, &e, 10);
        if (e != end || p == 0 || p > 65535)
            return -EINVAL;
        *port = (uint16_t)p;
    }
    *path = *end == '/' ? end : "/";
    return 0;
}

static void http_drop(struct ac_future *f)
{
    struct ferry_acme_http *h = (struct ferry_acme_http *)f;
    if (h->state == H_CONNECT)
        ac_future_drop(&h->connect.base);
    ac_future_drop(&h->hs.base);
    ac_future_drop(&h->timer.base);
    ac_stream_close(&h->tls.base);
    ac_stream_close(&h->plain);
    free(h->req);
    free(h->buf);
    free(h->body);
    h->req = h->buf = h->body = NULL;
}

static ac_poll_t fail(struct ferry_acme_http *h, int err, const char *fmt, const char *arg)
{
    h->err = err < 0 ? err : -EPROTO;
    snprintf(h->errmsg, sizeof(h->errmsg), fmt, arg);
    h->state = H_DONE;
    ac_future_drop(&h->hs.base);
    ac_stream_close(&h->tls.base);
    ac_stream_close(&h->plain);
    return AC_READY;
}

/* A header's value (trimmed) into dst when its name matches. */
static void header(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && isspace((unsigned char)e[-1]))
        e--;
    size_t len = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* Link: <URL>;rel="up" (the issuer chain of RFC 8555 7.4.2). */
static void link_up(struct ferry_acme_http *h, const char *line, size_t n)
{
    char v[1024];
    v[0] = '\0';
    header(line, n, "Link", v, sizeof(v));
    if (v[0] == '<' && strstr(v, "rel=\"up\"")) {
        char *gt = strchr(v, '>');
        if (gt) {
            *gt = '\0';
            snprintf(h->link_up, sizeof(h->link_up), "%s", v + 1);
        }
    }
}

/* Decodes the chunked body src[0..len) into dst (room for len bytes; the
 * source is left as it is, so an incomplete body can be decoded again once
 * more arrived). False when malformed or incomplete. */
static bool dechunk(const char *src, size_t len, char *dst, size_t *out)
{
    size_t r = 0, w = 0;
    for (;;) {
        size_t n = 0, digits = 0;
        while (r < len && isxdigit((unsigned char)src[r]) && digits < 8) {
            int c = src[r++], v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
            n = n * 16 + (size_t)v;
            digits++;
        }
        const char *crlf = r < len ? memchr(src + r, '\n', len - r) : NULL;
        if (digits == 0 || !crlf)
            return false;
        r = (size_t)(crlf - src) + 1; /* chunk extensions skipped */
        if (n == 0)
            break;
        if (n > len - r || len - r - n < 2 || src[r + n] != '\r' || src[r + n + 1] != '\n')
            return false;
        memcpy(dst + w, src + r, n);
        w += n;
        r += n + 2;
    }
    *out = w;
    return true;
}

/* "HTTP/1.x NNN ...": the status, or -1. */
static int status_line(const char *line, size_t n)
{
    if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
        line[8] != ' ')
        return -1;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (!isdigit((unsigned char)line[i]))
            return -1;
        st = st * 10 + (line[i] - '0');
    }
    return st >= 100 && (n == 12 || line[12] == ' ' || line[12] == '\r') ? st : -1;
}

bool ferry_acme_http_parse(struct ferry_acme_http *h, const char *buf, size_t len, bool eof)
{
    const char *end = len >= 4 ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
    if (!end)
        return false;
    size_t hlen = (size_t)(end - buf) + 4;
    const char *line = buf, *lend = memchr(line, '\n', hlen);
    if ((h->status = status_line(line, (size_t)(lend - line))) < 0)
        return true;
    long clen = -1;
    bool chunked = false;
    char tmp[64];
    for (line = lend + 1; line < end; line = lend + 1) {
        lend = memchr(line, '\n', (size_t)(end + 2 - line));
        size_t n = (size_t)(lend - line);
        header(line, n, "Location", h->location, sizeof(h->location));
        header(line, n, "Replay-Nonce", h->nonce, sizeof(h->nonce));
        header(line, n, "Content-Type", h->content_type, sizeof(h->content_type));
        link_up(h, line, n);
        tmp[0] = '\0';
        header(line, n, "Retry-After", tmp, sizeof(tmp));
        if (tmp[0])
            h->retry_after_s = (unsigned)strtoul(tmp, NULL, 10);
        tmp[0] = '\0';
        header(line, n, "Content-Length", tmp, sizeof(tmp));
        if (tmp[0])
            clen = strtol(tmp, NULL, 10);
        tmp[0] = '\0';
        header(line, n, "Transfer-Encoding", tmp, sizeof(tmp));
        chunked |= strcasecmp(tmp, "chunked") == 0;
    }
    size_t blen = len - hlen;
    if (!chunked && clen >= 0 && blen < (size_t)clen && !eof)
        return false;
    if (!chunked && clen >= 0 && blen > (size_t)clen)
        blen = (size_t)clen;
    if (!chunked && clen < 0 && !eof)
        return false;
    char *body = malloc(blen + 1);
    if (!body)
        return h->status = -1, true;
    if (chunked && !dechunk(end + 4, blen, body, &blen)) {
        free(body);
        if (!eof)
            return false;
        h->status = -1;
        return true;
    }
    if (!chunked)
        memcpy(body, end + 4, blen);
    body[blen] = '\0';
    free(h->body);
    h->body = body;
    h->body_len = blen;
    return true;
}

static ac_poll_t step_read(struct ferry_acme_http *h, struct ac_context *cx)
{
    for (;;) {
        if (h->cap - h->len < 4096) {
            size_t cap = h->cap ? h->cap * 2 : 16384;
            char *b = cap <= FERRY_ACME_HTTP_MAX + 1 ? realloc(h->buf, cap + 1) : NULL;
            if (!b)
                return fail(h, -EMSGSIZE, "answer over %s bytes", "1 MiB");
            h->buf = b;
            h->cap = cap;
        }
        ssize_t n;
        if (ac_stream_poll_read(&h->tls.base, cx, h->buf + h->len, h->cap - h->len, &n) ==
            AC_PENDING)
            return AC_PENDING;
        if (n < 0)
            return fail(h, (int)n, "read: %s", strerror((int)-n));
        h->len += (size_t)n;
        h->buf[h->len] = '\0';
        if (ferry_acme_http_parse(h, h->buf, h->len, n == 0) || n == 0) {
            if (!h->body || h->status < 100)
                return fail(h, -EPROTO, "%s", n == 0 && !memmem(h->buf, h->len, "\r\n\r\n", 4)
                                              ? "connection closed before the answer"
                                              : "malformed HTTP answer");
            h->state = H_DONE;
            ac_stream_close(&h->tls.base);
            return AC_READY;
        }
        free(h->body);
        h->body = NULL;
    }
}

static ac_poll_t http_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_acme_http *h = (struct ferry_acme_http *)f;
    if (ac_future_poll(&h->timer.base, cx) == AC_READY)
        return fail(h, -ETIMEDOUT, "no answer within %s", "30 s");
    switch (h->state) {
    case H_CONNECT: {
        if (ac_future_poll(&h->connect.base, cx) == AC_PENDING)
            return AC_PENDING;
        int err = h->connect.err;
        ac_future_drop(&h->connect.base);
        h->state = H_HANDSHAKE; /* the connect is dropped: never again */
        if (err)
            return fail(h, err, "connect: %s", strerror(-err));
        if ((err = ac_tls_stream_wrap(&h->tls, &h->plain, h->ctx, false)) < 0)
            return fail(h, err, "tls: %s", strerror(-err));
        if (ferry_tls_client_prepare(h->tls.ssl, h->host, true) < 0)
            return fail(h, -EINVAL, "tls: bad host name %s", h->host);
        ac_tls_handshake_init(&h->hs, &h->tls);
    }
    /* fall through */
    case H_HANDSHAKE:
        if (ac_future_poll(&h->hs.base, cx) == AC_PENDING)
            return AC_PENDING;
        if (h->hs.err) {
            char why[200];
            snprintf(why, sizeof(why), "%s", h->hs.reason[0] ? h->hs.reason : strerror(-h->hs.err));
            return fail(h, h->hs.err, "tls: %s", why);
        }
        ac_future_drop(&h->hs.base);
        h->state = H_WRITE;
    /* fall through */
    case H_WRITE:
        while (h->sent < h->req_len) {
            ssize_t n;
            if (ac_stream_poll_write(&h->tls.base, cx, h->req + h->sent, h->req_len - h->sent,
                                     &n) == AC_PENDING)
                return AC_PENDING;
            if (n < 0)
                return fail(h, (int)n, "write: %s", strerror((int)-n));
            h->sent += (size_t)n;
        }
        h->state = H_READ;
    /* fall through */
    case H_READ:
        return step_read(h, cx);
    default:
        return AC_READY;
    }
}

static const struct ac_future_vtable http_vt = {http_poll, http_drop};

int ferry_acme_http_init(struct ferry_acme_http *h, SSL_CTX *ctx, const char *method,
                         const char *url, const struct sockaddr *sa, socklen_t sa_len,
                         const char *body)
{
    uint16_t port;
    const char *path;
    memset(h, 0, sizeof(*h));
    if (ferry_acme_url_parse(url, h->host, sizeof(h->host), &port, &path) < 0)
        return -EINVAL;
    size_t blen = body ? strlen(body) : 0;
    size_t cap = strlen(path) + strlen(h->host) + blen + 256;
    h->req = malloc(cap);
    if (!h->req)
        return -ENOMEM;
    char hostport[300];
    snprintf(hostport, sizeof(hostport), port == 443 ? "%s" : "%s:%u", h->host, port);
    int n = snprintf(h->req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry/" FERRY_VERSION
                     "\r\nAccept: */*\r\nConnection: close\r\n",
                     method, path, hostport);
    if (body)
        n += snprintf(h->req + n, cap - (size_t)n,
                      "Content-Type: application/jose+json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(h->req + n, cap - (size_t)n, "\r\n");
    if (body)
        memcpy(h->req + n, body, blen);
    h->req_len = (size_t)n + blen;
    h->ctx = ctx;
    h->base.vt = &http_vt;
    h->state = H_CONNECT;
    ac_connect_init(&h->connect, sa, sa_len, &h->plain);
    ac_sleep_init(&h->timer, FERRY_ACME_HTTP_TIMEOUT_MS);
    return 0;
}

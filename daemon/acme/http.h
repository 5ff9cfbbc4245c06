/* ferryd ACME: one HTTPS request over asynccore's TLS streams.
 *
 * A future that connects to an address already resolved, completes a TLS
 * handshake verifying the server against the caller's SSL_CTX and the URL's
 * host, sends one HTTP/1.1 request with "Connection: close", and reads the
 * whole answer (at most FERRY_ACME_HTTP_MAX bytes; chunked bodies decoded).
 * All of it within FERRY_ACME_HTTP_TIMEOUT_MS. Never blocks. */
#ifndef FERRY_ACME_HTTP_H
#define FERRY_ACME_HTTP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/future.h"
#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "asynccore/tls.h"

#define FERRY_ACME_HTTP_MAX (1u << 20)
#define FERRY_ACME_HTTP_TIMEOUT_MS 30000

/* "https://HOST[:PORT]/PATH" into its parts (path "/" when none). 0 or -EINVAL. */
int ferry_acme_url_parse(const char *url, char *host, size_t host_cap, uint16_t *port,
                         const char **path);

struct ferry_acme_http;
/* Parses an HTTP/1.x answer in buf[0..len) (left unchanged); eof: nothing
 * more will come. False: incomplete. True: h->status (-1: malformed), the headers
 * below and h->body (malloc'd, NUL-terminated, h->body_len bytes; NULL
 * when malformed) are set. Exposed for the fuzz target. */
bool ferry_acme_http_parse(struct ferry_acme_http *h, const char *buf, size_t len, bool eof);

struct ferry_acme_http {
    struct ac_future base;
    SSL_CTX *ctx;
    char host[256];
    char *req;          /* the request bytes (owned) */
    size_t req_len, sent;
    int state;
    struct ac_connect connect;
    struct ac_stream plain;
    struct ac_tls_stream tls;
    struct ac_tls_handshake hs;
    struct ac_sleep timer;
    char *buf;          /* what was read */
    size_t len, cap;
    /* output */
    int err;            /* 0, or -errno (then errmsg says what failed) */
    char errmsg[320];
    int status;
    char *body;         /* NUL-terminated (owned; freed by drop) */
    size_t body_len;
    char location[1024], nonce[256], content_type[128], link_up[1024];
    unsigned retry_after_s; /* 0: none */
};

/* method "GET", "HEAD" or "POST" (with a JSON body, content type
 * application/jose+json). sa: the server's address. 0 or -ENOMEM / -EINVAL. */
int ferry_acme_http_init(struct ferry_acme_http *h, SSL_CTX *ctx, const char *method,
                         const char *url, const struct sockaddr *sa, socklen_t sa_len,
                         const char *body);

#endif

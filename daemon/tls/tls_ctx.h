/* ferryd: building OpenSSL contexts from the configuration.
 *
 * A listener with tls = on gets one server SSL_CTX: its certificates (one
 * per tls_cert, chosen per connection by SNI), versions, ciphers, ALPN,
 * client verification and session resumption, all owned by that SSL_CTX
 * (SSL_CTX_free releases everything). A backend with tls = on gets one client
 * SSL_CTX; each connection then calls ferry_tls_client_prepare().
 *
 * Builders never stop at the first problem: every error is appended to errs
 * as "FILE:LINE: message" (FILE the configuration file, LINE the line of the
 * offending key) and NULL is returned. ferryd -t, start-up and reload all
 * build every context this way, so a bad certificate is found before anything
 * changes.
 */
#ifndef FERRY_TLS_CTX_H
#define FERRY_TLS_CTX_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_config.h"

/* A terminating listener's TLS 1.2 ciphers without tls_ciphers: Mozilla's
 * "intermediate" list, forward-secret AEAD suites only (no CBC, no static
 * RSA key exchange). TLS 1.3 suites are all AEAD: OpenSSL's defaults. */
#define FERRY_TLS12_DEFAULT_CIPHERS                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                              \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* Server context for a listener with tls = on. */
SSL_CTX *ferry_tls_server_ctx_new(const struct ferry_listener *l, const char *cfg_path,
                                  struct ferry_config_errors *errs);

/* ACME certificates (tls_acme) come from the ACME wing as opaque slots with
 * these operations; each may run on any worker during a handshake. */
#define FERRY_TLS_ACME_ALPN "acme-tls/1"
struct ferry_tls_acme_ops {
    bool (*matches)(void *slot, const char *sni);  /* sni is one of its names */
    bool (*install)(void *slot, SSL *ssl);         /* its certificate; false: none yet */
    bool (*not_after)(void *slot, char *path, size_t cap, int64_t *out);
    void (*unref)(void *slot);
    /* The pending tls-alpn-01 challenge certificate for sni; false: none. */
    bool (*challenge)(void *owner, const char *sni, SSL *ssl);
};
/* Gives a listener's context its tls_acme slots (the references pass to the
 * context, also on failure) and the tls-alpn-01 answer: a ClientHello
 * offering ALPN acme-tls/1 gets the challenge certificate for its name and
 * acme-tls/1, nothing else (RFC 8737). A name with no certificate issued yet
 * gets the first tls_cert, else the first ACME certificate issued, else the
 * handshake fails (ferry_tls_no_certificate). 0 or -ENOMEM / -EINVAL. */
int ferry_tls_server_ctx_acme(SSL_CTX *ctx, const struct ferry_tls_acme_ops *ops, void *owner,
                              void *const *slots, size_t n);
/* The handshake failed for want of any certificate (a tls_acme name before
 * its first issuance on a listener without tls_cert): reason=no_certificate. */
bool ferry_tls_no_certificate(const SSL *ssl);
/* The handshake was a tls-alpn-01 validation (ALPN acme-tls/1): it carries
 * nothing and the connection ends after it. */
bool ferry_tls_acme_challenge(const SSL *ssl);
/* The listener's ACME certificates: how many, and the i-th's stored file
 * and notAfter (false: none issued yet). */
size_t ferry_tls_server_acme_count(SSL_CTX *ctx);
bool ferry_tls_server_acme_not_after(SSL_CTX *ctx, size_t i, char *path, size_t cap,
                                     int64_t *out);

/* Client context for a backend with tls = on (with its tls_cert, when set,
 * presented to servers asking for a client certificate). */
SSL_CTX *ferry_tls_client_ctx_new(const struct ferry_backend *b, const char *cfg_path,
                                  struct ferry_config_errors *errs);

/* Per-connection set-up of a client SSL: SNI (not for IP literals) and, when
 * verify, the name (or IP address) the certificate must carry; without verify
 * the peer certificate is not checked at all. name may be NULL or "".
 * Returns 0 or -EINVAL / -ENOMEM. */
int ferry_tls_client_prepare(SSL *ssl, const char *name, bool verify);

/* notAfter of a certificate as Unix time; false when it cannot be read. */
bool ferry_tls_not_after(const X509 *x, int64_t *out);
/* Of the i-th tls_cert (in configuration order) of a listener's context. */
bool ferry_tls_server_cert_not_after(SSL_CTX *ctx, size_t i, int64_t *out);
/* Of a backend context's client certificate (tls_cert), if it has one. */
bool ferry_tls_client_cert_not_after(SSL_CTX *ctx, int64_t *out);

/* For logs and stats: negotiated protocol version ("TLSv1.3"), cipher
 * ("TLS_AES_128_GCM_SHA256"), or "-" when unknown. */
const char *ferry_tls_version(const SSL *ssl);
const char *ferry_tls_cipher(const SSL *ssl);
/* Negotiated ALPN protocol as a string into buf ("" when none). Returns buf. */
char *ferry_tls_alpn(const SSL *ssl, char *buf, size_t bufsize);

#endif

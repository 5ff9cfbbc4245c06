/* asynccore: TLS streams over OpenSSL 3.
 *
 * A TLS stream is an ac_stream (same vtable interface as TCP) wrapping a
 * socket and an SSL object. SSL_ERROR_WANT_READ / WANT_WRITE map onto reactor
 * interest; no call ever blocks. After a successful SSL_read OpenSSL may hold
 * more decrypted bytes that epoll will never report, so the stream is treated
 * as readable until SSL_read wants to read (SSL_pending / SSL_has_pending).
 *
 * The SSL_CTX is the caller's (the daemon configures certificates, versions,
 * ciphers, ALPN, verification); this layer only drives the state machine.
 */
#ifndef ASYNCCORE_TLS_H
#define ASYNCCORE_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "asynccore/future.h"
#include "asynccore/stream.h"

struct ac_tls_stream {
    struct ac_stream base; /* base.io.fd is the socket */
    SSL *ssl;
    bool handshake_done;
    bool shutdown_sent;
    bool read_eof;
    bool failed; /* a fatal TLS or socket error: no further SSL calls (no close_notify) */
};

/* Wraps a connected, registered socket stream `sock` (whose fd and
 * registration move into tls; sock becomes closed) with a new SSL from ctx.
 * server: accept side (true) or connect side (false). Returns 0 or -errno
 * (sock is then left untouched and still owned by the caller).
 *
 * Reads and writes drive the handshake implicitly if it has not run yet.
 * Writes are partial (SSL_MODE_ENABLE_PARTIAL_WRITE); after a Pending write
 * the caller must offer at least the same bytes again (OpenSSL's retry rule,
 * relaxed to a moving buffer). An EOF without close_notify reads as EOF.
 * ac_stream_close() frees the SSL, deregisters and closes the socket.
 * OpenSSL's socket BIO writes with write(2): the process must ignore SIGPIPE
 * (ferryd does) or a peer's reset would kill it. */
int ac_tls_stream_wrap(struct ac_tls_stream *tls, struct ac_stream *sock, SSL_CTX *ctx,
                       bool server);

/* Handshake future. Output: err (0, or -EPROTO for a TLS failure with the
 * reason in `reason`, or -errno for a socket error). */
struct ac_tls_handshake {
    struct ac_future base;
    struct ac_tls_stream *tls;
    int err;
    char reason[160];
};
void ac_tls_handshake_init(struct ac_tls_handshake *h, struct ac_tls_stream *tls);

/* Convenience: the negotiated server name (server side), or NULL. */
const char *ac_tls_servername(const struct ac_tls_stream *tls);

#endif

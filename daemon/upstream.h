/* ferryd: reaching a server of a backend (see upstream.c). */
#ifndef FERRY_UPSTREAM_H
#define FERRY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/net.h"
#include "asynccore/timer.h"
#include "asynccore/tls.h"
#include "daemon.h"
#include "gen.h"
#include "proxy_proto.h"


/* Picks a server, connects under connect_timeout, sends the PROXY header and
 * completes the TLS handshake when the backend asks for them; on failure
 * tries the next server, up to `retries` more times. Output: err (0 or
 * -errno of the last attempt), sidx (server index), stream (ready to use;
 * the caller owns it and closes it), reason (for the log). */
struct ferry_upstream {
    struct ac_future base;
    struct ferry_gen *g;
    size_t bidx;
    struct ferry_backend_rt *b;
    unsigned worker;
    uint32_t client_hash;
    const uint8_t *proxy_hdr; /* NULL: none */
    size_t proxy_len;

    int state;
    unsigned attempts;
    bool *tried;
    struct ac_sleep deadline;
    bool deadline_live;
    union {
        struct ac_connect connect;
        struct ac_write_all proxy;
        struct ac_tls_handshake hs;
    } step;
    bool step_live;

    struct ac_stream *plain;  /* caller's storage for the socket */
    struct ac_tls_stream *tls; /* caller's storage for TLS over it */
    struct ac_stream *stream; /* output: plain or &tls->base, NULL on failure */
    int sidx;                 /* output */
    int err;                  /* output */
    bool local;               /* output: failed for lack of local resources */
    const char *reason;       /* output: short text for the log */
    char reason_buf[200];
};

/* The resulting stream lives in the caller's plain/tls storage (so it
 * outlives this future); on success the caller owns it. */
void ferry_upstream_init(struct ferry_upstream *u, struct ferry_gen *g, size_t bidx,
                         unsigned worker, uint32_t client_hash, const uint8_t *proxy_hdr,
                         size_t proxy_len, struct ac_stream *plain, struct ac_tls_stream *tls);

#endif

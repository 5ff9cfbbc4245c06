/* ferryd: reaching a server of a backend (see upstream.c). */
#ifndef FERRY_UPSTREAM_H
#define FERRY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/deadline.h"
#include "asynccore/local_notify.h"
#include "asynccore/net.h"
#include "asynccore/tls.h"
#include "daemon.h"
#include "gen.h"
#include "proto/proxy_proto.h"


/* How a wait in the backend queue ended the connection (queue.h). */
enum ferry_queue_end { FERRY_QUEUE_NONE, FERRY_QUEUE_TIMEOUT, FERRY_QUEUE_FULL,
                       FERRY_QUEUE_DRAINED /* a stop's drain_timeout ended the wait */ };

/* Picks a server, connects under connect_timeout, sends the PROXY header and
 * completes the TLS handshake when the backend asks for them; on failure
 * tries the next server, up to `retries` more times. When every eligible
 * server is at its max_connections it first waits in the backend's queue
 * (up to queue_timeout; qend tells a timeout or a full queue). A picked
 * server's slot is held from the pick; on success it passes to the caller
 * with the stream (release it with ferry_slot_put). Output: err (0 or
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
    /* Servers tried by this connection: one index until a retry needs the
     * [b->cap] array (allocated then, so a first-try success costs none). */
    int first_tried;          /* -1: none */
    bool *tried;              /* NULL until the first retry */
    /* The current wait's budget, owned here and disarmed when the wait
     * ends: queue_timeout while queued, connect_timeout during an attempt
     * (the two never overlap). Steps borrow it through `under`. */
    struct ac_deadline deadline;
    bool capped;              /* some server has max_connections */
    bool slot_held;           /* a slot of servers[sidx] (queue.h) */
    bool queued;              /* waiting in the backend queue */
    enum ferry_queue_end qend; /* output */
    /* The wait in the queue, or a step of an attempt: never both at once (a
     * step starts after leave_queue, and the queue is joined only between
     * attempts, their step dropped), so they share the memory: a burst of
     * connects leaves this phase's size behind in the worker's heap. */
    union {
        struct {
            struct ferry_queue_waiter qw;
            struct ac_local_notified qdrain; /* the worker's drain signal, while queued */
        };
        union {
            struct ac_connect connect;
            struct ac_write_all proxy;
            struct ac_tls_handshake hs;
        } step;
    };
    struct ac_under_deadline under; /* the current step under `deadline` (vt NULL: none) */

    struct ac_stream *plain;  /* caller's storage for the socket */
    struct ac_tls_stream *tls; /* caller's storage for TLS over it (NULL: backend without TLS) */
    struct ac_stream *stream; /* output: plain or &tls->base, NULL on failure */
    int sidx;                 /* output */
    int err;                  /* output */
    bool local;               /* output: failed for lack of local resources */
    const char *reason;       /* output: short text for the log */
    char *reason_text;        /* owned: a TLS failure's words, which reason may point at */
};

/* The resulting stream lives in the caller's plain/tls storage (so it
 * outlives this future); on success the caller owns it. */
void ferry_upstream_init(struct ferry_upstream *u, struct ferry_gen *g, size_t bidx,
                         unsigned worker, uint32_t client_hash, const uint8_t *proxy_hdr,
                         size_t proxy_len, struct ac_stream *plain, struct ac_tls_stream *tls);

#endif

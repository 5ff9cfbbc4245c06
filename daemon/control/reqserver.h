/* ferryd: a tiny one-request-per-connection server on asynccore.
 *
 * Serves the control socket and the metrics endpoint: one accept task on one
 * worker; each client is its own task that reads one request (bounded in
 * size, within a read timeout), builds the answer (possibly asynchronously,
 * e.g. a reload), writes it (within a write timeout, so a client that never
 * reads costs only its own task), shuts its write half, discards what the
 * client may still send for a moment (so the answer is not cut by a reset),
 * and closes.
 *
 * Idle clients never keep a new one out (a liveness probe must be answered
 * whoever holds connections open): the clients of a server are kept in a
 * pool, in accept order. Past max_clients, each new client closes the
 * oldest one that is not building an answer (still sending its request,
 * or done with it: being written to or lingering); past per_peer clients
 * from one address, that address's oldest such client goes. Only when
 * twice max_clients are all building answers does accepting wait (the
 * kernel queues the new clients meanwhile).
 */
#ifndef FERRY_REQSERVER_H
#define FERRY_REQSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "asynccore/deadline.h"
#include "asynccore/reactor.h"
#include "asynccore/runtime.h"
#include "asynccore/sync.h"
#include "asynccore/waker.h"
#include "buf.h"

struct ferry_rs_client;

struct ferry_rs_ops {
    size_t max_request;        /* bytes kept at most; a longer request is an overflow */
    uint64_t read_timeout_ms;  /* the whole request must arrive within it */
    uint64_t write_timeout_ms; /* the whole answer must be taken within it */
    /* Length of the complete request at the start of buf[0..len), 0 if more
     * bytes are needed. */
    size_t (*complete)(const char *buf, size_t len);
    /* A zeroed client object (a struct whose first member is struct
     * ferry_rs_client, allocated with malloc/calloc), or NULL. */
    struct ferry_rs_client *(*client_new)(void *arg);
    /* Fills c->out from the request (c->req, c->req_len, c->overflow,
     * c->eof). Returns AC_READY when c->out holds the whole answer, or
     * AC_PENDING after arranging a wake-up (it is then polled again). */
    ac_poll_t (*respond)(struct ferry_rs_client *c, struct ac_context *cx);
    /* Releases what respond holds (may be NULL). Called once, on drop. */
    void (*client_drop)(struct ferry_rs_client *c);
};

/* The clients of one server (all on its worker: no lock). Owned by the
 * caller; must outlive the runtime's tasks. */
struct ferry_rs_pool {
    unsigned max_clients; /* past it, a new client closes the oldest idle one */
    unsigned per_peer;    /* clients one peer address may hold (0: no cap) */
    unsigned n;           /* clients held now (not closed) */
    struct ferry_rs_client *oldest, *newest;
    struct ac_waker accept_waker; /* the accept task, waiting for room */
};

void ferry_rs_pool_init(struct ferry_rs_pool *p, unsigned max_clients, unsigned per_peer);
/* After the runtime was freed. */
void ferry_rs_pool_destroy(struct ferry_rs_pool *p);

struct ferry_rs_client {
    struct ac_future base;
    const struct ferry_rs_ops *ops;
    void *arg;                 /* the server's arg */
    struct ferry_rs_pool *pool;
    struct ferry_rs_client *older, *newer; /* in the pool, while held */
    bool held;                 /* in the pool (not closed to make room) */
    bool evicted;              /* closed to make room for a newer client */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int fd;
    struct ac_io io;
    bool registered;
    int state;
    char *req;      /* max_request + 1 bytes, NUL-terminated */
    size_t req_len; /* bytes read; when complete, the request's length */
    bool overflow;  /* max_request bytes and still no complete request */
    bool eof;       /* the client ended its side before a complete request */
    struct ac_deadline deadline; /* the current stage's: read, write, linger */
    struct ferry_buf out;
    size_t written;
    size_t lingered;
};

/* Spawns the accept task on w for the listening socket fd (non-blocking).
 * The task takes fd in every case (closed when the task is dropped). arg is
 * passed to ops->client_new; ops, arg, pool and stop must outlive the
 * runtime's tasks. Once stop (may be NULL) is notified the task stops
 * accepting and closes fd; its clients go on. Returns 0 or -errno. */
int ferry_rs_spawn(struct ac_worker *w, int fd, const struct ferry_rs_ops *ops, void *arg,
                   struct ferry_rs_pool *pool, struct ac_notify *stop);

#endif

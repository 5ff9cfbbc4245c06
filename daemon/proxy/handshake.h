/* ferryd: a connection's handshake phase (see handshake.c). */
#ifndef FERRY_HANDSHAKE_H
#define FERRY_HANDSHAKE_H

#include <stdint.h>

#include "asynccore/deadline.h"
#include "asynccore/local_notify.h"
#include "asynccore/tls.h"
#include "proxy/peek.h"

/* The step running (or last run) under the handshake deadline. */
enum ferry_hs_step { FERRY_HS_NONE, FERRY_HS_PROXY, FERRY_HS_HELLO, FERRY_HS_TLS };

/* How a step ended. */
enum ferry_hs_end {
    FERRY_HS_DONE,    /* the step finished: its output is in s (peek.err, tls.err) */
    FERRY_HS_TIMEOUT, /* handshake_timeout passed first; the step was dropped */
    FERRY_HS_DRAINED, /* a stop's drain_timeout ended (the worker's drain signal) */
};

/* The PROXY header, ClientHello peek and TLS handshake of one connection
 * run one after another under one deadline (handshake_timeout from the
 * accept, ac_under_deadline borrowing it), and against the worker's drain
 * signal, a separate arm. A future: Ready when the current step ended (end
 * says how). The owner reads the step's output, then starts the next step
 * (which drops the finished one first) or drops the whole phase, which
 * disarms the deadline. */
struct ferry_handshake {
    struct ac_future base;
    struct ac_deadline deadline;
    struct ac_local_notified drain;
    struct ac_under_deadline under; /* the current step (vt NULL: none) */
    enum ferry_hs_step step;
    enum ferry_hs_end end; /* output */
    union {
        struct ferry_peek peek;     /* FERRY_HS_PROXY, FERRY_HS_HELLO */
        struct ac_tls_handshake tls; /* FERRY_HS_TLS */
    } s;
};

/* Arms the deadline at deadline_ms (ac_clock_now_ms()'s clock) and waits on
 * drain; no step yet. */
void ferry_handshake_init(struct ferry_handshake *h, uint64_t deadline_ms,
                          struct ac_local_notify *drain);
/* Starts a PROXY header (FERRY_HS_PROXY) or ClientHello (FERRY_HS_HELLO)
 * peek on s, after dropping the previous step. */
void ferry_handshake_peek(struct ferry_handshake *h, enum ferry_hs_step step, struct ac_stream *s);
/* Starts the server-side TLS handshake of tls, after dropping the previous step. */
void ferry_handshake_tls(struct ferry_handshake *h, struct ac_tls_stream *tls);

#endif

/* ferryd: a connection's handshake phase (see handshake.h).
 *
 * One deadline for every step: a client that dribbles a PROXY header for
 * most of handshake_timeout gets only what is left for its ClientHello or
 * TLS handshake, never a fresh budget per step.
 */
#include "proxy/handshake.h"

#include <assert.h>

static ac_poll_t handshake_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ferry_handshake *h = (struct ferry_handshake *)f;
    assert(h->step != FERRY_HS_NONE);
    if (ac_future_poll(&h->under.base, cx) == AC_READY) {
        h->end = h->under.timed_out ? FERRY_HS_TIMEOUT : FERRY_HS_DONE;
        return AC_READY;
    }
    if (ac_future_poll(&h->drain.base, cx) == AC_READY) {
        h->end = FERRY_HS_DRAINED;
        return AC_READY;
    }
    return AC_PENDING;
}

static void handshake_drop(struct ac_future *f)
{
    struct ferry_handshake *h = (struct ferry_handshake *)f;
    ac_future_drop(&h->under.base); /* drops the step, never the deadline */
    ac_deadline_disarm(&h->deadline);
    ac_future_drop(&h->drain.base);
}

static const struct ac_future_vtable handshake_vt = {handshake_poll, handshake_drop};

void ferry_handshake_init(struct ferry_handshake *h, uint64_t deadline_ms,
                          struct ac_local_notify *drain)
{
    h->base.vt = &handshake_vt;
    ac_deadline_init(&h->deadline);
    ac_deadline_arm(&h->deadline, deadline_ms);
    ac_local_notified_init(&h->drain, drain);
    h->under.base.vt = NULL;
    h->step = FERRY_HS_NONE;
    h->end = FERRY_HS_DONE;
}

void ferry_handshake_peek(struct ferry_handshake *h, enum ferry_hs_step step, struct ac_stream *s)
{
    assert(step == FERRY_HS_PROXY || step == FERRY_HS_HELLO);
    ac_future_drop(&h->under.base);
    ferry_peek_init(&h->s.peek, s, step == FERRY_HS_PROXY ? FERRY_PEEK_PROXY : FERRY_PEEK_HELLO);
    ac_under_deadline_init(&h->under, &h->s.peek.base, &h->deadline);
    h->step = step;
}

void ferry_handshake_tls(struct ferry_handshake *h, struct ac_tls_stream *tls)
{
    ac_future_drop(&h->under.base);
    ac_tls_handshake_init(&h->s.tls, tls);
    ac_under_deadline_init(&h->under, &h->s.tls.base, &h->deadline);
    h->step = FERRY_HS_TLS;
}

/* asynccore: a borrowed deadline.
 *
 * Steps that run one after another often share one deadline: a PROXY
 * header, a ClientHello peek and a TLS handshake must all be done within
 * handshake_timeout of the accept; a connect and the PROXY header and TLS
 * handshake that follow must be done within connect_timeout. ac_timeout
 * cannot say that: it owns its timer, so each step would get a fresh budget.
 *
 * struct ac_deadline is the shared deadline. Its owner (the parent future)
 * initialises it unarmed, arms it (or moves it) when the budget starts, and
 * disarms it when the last step is done; disarming is idempotent, so the
 * owner's drop can always call it. A step runs under the deadline in an
 * ac_under_deadline, which borrows it: it polls the deadline, drops the step
 * the moment the deadline has passed, and never drops the deadline itself,
 * so the next step runs under the same one (tokio's `timeout_at` with one
 * Instant passed to each step).
 *
 * An unarmed deadline never passes. All of this is worker-local: a deadline
 * and the steps under it are polled by one task on one worker.
 */
#ifndef ASYNCCORE_DEADLINE_H
#define ASYNCCORE_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/timer.h"

struct ac_deadline {
    struct ac_sleep sleep; /* sleep.base.vt is NULL while unarmed */
};

/* Unarmed: never passes, holds no timer entry. */
void ac_deadline_init(struct ac_deadline *d);
/* Arms at the absolute time at_ms (ac_clock_now_ms()'s clock), or moves an
 * armed deadline there. */
void ac_deadline_arm(struct ac_deadline *d, uint64_t at_ms);
/* Arms (or moves) to ms from now. */
void ac_deadline_arm_in(struct ac_deadline *d, uint64_t ms);
bool ac_deadline_armed(const struct ac_deadline *d);
/* Releases the timer entry and waker; the deadline is unarmed again. */
void ac_deadline_disarm(struct ac_deadline *d);
/* AC_READY once an armed deadline has passed (and stays so until it is
 * moved); AC_PENDING otherwise, with cx's waker registered when armed. */
ac_poll_t ac_deadline_poll(struct ac_deadline *d, struct ac_context *cx);

/* One step under a borrowed deadline: Ready when inner is (timed_out false),
 * or once the deadline has passed (timed_out true, inner dropped at once).
 * Dropping it drops inner if still live, never the deadline. */
struct ac_under_deadline {
    struct ac_future base;
    struct ac_future *inner;
    struct ac_deadline *deadline;
    bool timed_out;
};
void ac_under_deadline_init(struct ac_under_deadline *u, struct ac_future *inner,
                            struct ac_deadline *d);

#endif

/* asynccore: a borrowed deadline (see deadline.h).
 *
 * The deadline is an ac_sleep kept unarmed (vtable NULL) until armed, so an
 * owner that never starts the budget holds no wheel entry, and disarming is
 * ac_future_drop, which is idempotent.
 */
#include "asynccore/deadline.h"

#include "asynccore/runtime.h"

void ac_deadline_init(struct ac_deadline *d) { d->sleep.base.vt = NULL; }

bool ac_deadline_armed(const struct ac_deadline *d) { return d->sleep.base.vt != NULL; }

void ac_deadline_arm(struct ac_deadline *d, uint64_t at_ms)
{
    if (ac_deadline_armed(d))
        ac_sleep_reset(&d->sleep, at_ms);
    else
        ac_sleep_init_deadline(&d->sleep, at_ms);
}

void ac_deadline_arm_in(struct ac_deadline *d, uint64_t ms)
{
    uint64_t now = ac_clock_now_ms();
    ac_deadline_arm(d, ms > UINT64_MAX - now ? UINT64_MAX : now + ms);
}

void ac_deadline_disarm(struct ac_deadline *d) { ac_future_drop(&d->sleep.base); }

ac_poll_t ac_deadline_poll(struct ac_deadline *d, struct ac_context *cx)
{
    if (!ac_deadline_armed(d))
        return AC_PENDING;
    return ac_future_poll(&d->sleep.base, cx);
}

/* ---- a step under it ---- */

static ac_poll_t under_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_under_deadline *u = (struct ac_under_deadline *)self;

    if (ac_future_poll(u->inner, cx) == AC_READY) {
        u->timed_out = false;
        return AC_READY;
    }
    if (ac_deadline_poll(u->deadline, cx) == AC_READY) {
        u->timed_out = true;
        ac_future_drop(u->inner); /* release its I/O interest and timers now */
        return AC_READY;
    }
    return AC_PENDING;
}

static void under_drop(struct ac_future *self)
{
    ac_future_drop(((struct ac_under_deadline *)self)->inner);
}

static const struct ac_future_vtable under_vt = {under_poll, under_drop};

void ac_under_deadline_init(struct ac_under_deadline *u, struct ac_future *inner,
                            struct ac_deadline *d)
{
    u->base.vt = &under_vt;
    u->inner = inner;
    u->deadline = d;
    u->timed_out = false;
}

/* asynccore: join, select and timeout.
 *
 * A combinator owns the drop of its children. ac_future_drop() clears a
 * child's vtable, so a child dropped early (a select loser) is skipped when
 * the combinator itself is dropped later.
 */
#include "asynccore/combinators.h"

/* ---- join2 ---- */

static ac_poll_t join2_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_join2 *j = (struct ac_join2 *)self;

    /* A child is polled until it is ready and never after. */
    if (!j->a_done && ac_future_poll(j->a, cx) == AC_READY)
        j->a_done = true;
    if (!j->b_done && ac_future_poll(j->b, cx) == AC_READY)
        j->b_done = true;
    return j->a_done && j->b_done ? AC_READY : AC_PENDING;
}

static void join2_drop(struct ac_future *self)
{
    struct ac_join2 *j = (struct ac_join2 *)self;

    ac_future_drop(j->a);
    ac_future_drop(j->b);
}

static const struct ac_future_vtable join2_vt = {join2_poll, join2_drop};

void ac_join2_init(struct ac_join2 *j, struct ac_future *a, struct ac_future *b)
{
    j->base.vt = &join2_vt;
    j->a = a;
    j->b = b;
    j->a_done = false;
    j->b_done = false;
}

/* ---- join_n ---- */

static ac_poll_t join_n_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_join_n *j = (struct ac_join_n *)self;

    for (size_t i = 0; i < j->n && j->remaining > 0; i++) {
        if (j->done[i])
            continue;
        if (ac_future_poll(j->futs[i], cx) == AC_READY) {
            j->done[i] = true;
            j->remaining--;
        }
    }
    return j->remaining == 0 ? AC_READY : AC_PENDING;
}

static void join_n_drop(struct ac_future *self)
{
    struct ac_join_n *j = (struct ac_join_n *)self;

    for (size_t i = 0; i < j->n; i++)
        ac_future_drop(j->futs[i]);
}

static const struct ac_future_vtable join_n_vt = {join_n_poll, join_n_drop};

void ac_join_n_init(struct ac_join_n *j, struct ac_future **futs, bool *done, size_t n)
{
    j->base.vt = &join_n_vt;
    j->futs = futs;
    j->done = done;
    j->n = n;
    j->remaining = n;
    for (size_t i = 0; i < n; i++)
        done[i] = false;
}

/* ---- select2 ---- */

static ac_poll_t select2_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_select2 *s = (struct ac_select2 *)self;

    if (ac_future_poll(s->a, cx) == AC_READY) {
        s->winner = 0;
        ac_future_drop(s->b); /* release the loser's timer/registration now */
        return AC_READY;
    }
    if (ac_future_poll(s->b, cx) == AC_READY) {
        s->winner = 1;
        ac_future_drop(s->a);
        return AC_READY;
    }
    return AC_PENDING;
}

static void select2_drop(struct ac_future *self)
{
    struct ac_select2 *s = (struct ac_select2 *)self;

    ac_future_drop(s->a);
    ac_future_drop(s->b);
}

static const struct ac_future_vtable select2_vt = {select2_poll, select2_drop};

void ac_select2_init(struct ac_select2 *s, struct ac_future *a, struct ac_future *b)
{
    s->base.vt = &select2_vt;
    s->a = a;
    s->b = b;
    s->winner = -1;
}

/* ---- select_n ---- */

static ac_poll_t select_n_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_select_n *s = (struct ac_select_n *)self;

    for (size_t i = 0; i < s->n; i++) {
        if (ac_future_poll(s->futs[i], cx) != AC_READY)
            continue;
        s->winner = (int)i;
        for (size_t k = 0; k < s->n; k++)
            if (k != i)
                ac_future_drop(s->futs[k]);
        return AC_READY;
    }
    return AC_PENDING;
}

static void select_n_drop(struct ac_future *self)
{
    struct ac_select_n *s = (struct ac_select_n *)self;

    for (size_t i = 0; i < s->n; i++)
        ac_future_drop(s->futs[i]);
}

static const struct ac_future_vtable select_n_vt = {select_n_poll, select_n_drop};

void ac_select_n_init(struct ac_select_n *s, struct ac_future **futs, size_t n)
{
    s->base.vt = &select_n_vt;
    s->futs = futs;
    s->n = n;
    s->winner = -1;
}

/* ---- timeout ---- */

static ac_poll_t timeout_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_timeout *t = (struct ac_timeout *)self;

    if (ac_future_poll(t->inner, cx) == AC_READY) {
        t->timed_out = false;
        ac_future_drop(&t->sleep.base); /* free the wheel entry at once */
        return AC_READY;
    }
    if (ac_future_poll(&t->sleep.base, cx) == AC_READY) {
        t->timed_out = true;
        ac_future_drop(t->inner);
        return AC_READY;
    }
    return AC_PENDING;
}

static void timeout_drop(struct ac_future *self)
{
    struct ac_timeout *t = (struct ac_timeout *)self;

    ac_future_drop(t->inner);
    ac_future_drop(&t->sleep.base);
}

static const struct ac_future_vtable timeout_vt = {timeout_poll, timeout_drop};

void ac_timeout_init(struct ac_timeout *t, struct ac_future *inner, uint64_t ms)
{
    t->base.vt = &timeout_vt;
    t->inner = inner;
    t->timed_out = false;
    ac_sleep_init(&t->sleep, ms);
}

void ac_timeout_init_deadline(struct ac_timeout *t, struct ac_future *inner, uint64_t deadline_ms)
{
    t->base.vt = &timeout_vt;
    t->inner = inner;
    t->timed_out = false;
    ac_sleep_init_deadline(&t->sleep, deadline_ms);
}

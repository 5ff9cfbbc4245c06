/* asynccore: join, select and timeout.
 *
 * Combinators hold their children by pointer, so a whole state machine can
 * live in one allocation with its children embedded. A combinator owns the
 * drop of its children: dropping the combinator drops every child not yet
 * dropped. select drops the losers at once when one child completes; the
 * winner (and join's children) stay alive, outputs readable, until the
 * combinator is dropped.
 */
#ifndef ASYNCCORE_COMBINATORS_H
#define ASYNCCORE_COMBINATORS_H

#include <stdbool.h>
#include <stddef.h>

#include "asynccore/future.h"
#include "asynccore/timer.h"

/* Ready when both a and b are ready. */
struct ac_join2 {
    struct ac_future base;
    struct ac_future *a, *b;
    bool a_done, b_done;
};
void ac_join2_init(struct ac_join2 *j, struct ac_future *a, struct ac_future *b);

/* Ready when all n children are ready. `done` is caller storage of n bools. */
struct ac_join_n {
    struct ac_future base;
    struct ac_future **futs;
    bool *done;
    size_t n, remaining;
};
void ac_join_n_init(struct ac_join_n *j, struct ac_future **futs, bool *done, size_t n);

/* Ready when the first of a, b is ready; the other is dropped at once.
 * winner: 0 for a, 1 for b, -1 while pending. When both are ready in the same
 * poll, a wins (children are polled in order). */
struct ac_select2 {
    struct ac_future base;
    struct ac_future *a, *b;
    int winner;
};
void ac_select2_init(struct ac_select2 *s, struct ac_future *a, struct ac_future *b);

/* Ready when the first of n children is ready; the others are dropped at once.
 * winner: index, -1 while pending. Lower indices win ties. */
struct ac_select_n {
    struct ac_future base;
    struct ac_future **futs;
    size_t n;
    int winner;
};
void ac_select_n_init(struct ac_select_n *s, struct ac_future **futs, size_t n);

/* Ready when inner is ready (timed_out false) or after ms (timed_out true,
 * inner dropped at once). */
struct ac_timeout {
    struct ac_future base;
    struct ac_future *inner;
    struct ac_sleep sleep;
    bool timed_out;
};
void ac_timeout_init(struct ac_timeout *t, struct ac_future *inner, uint64_t ms);
void ac_timeout_init_deadline(struct ac_timeout *t, struct ac_future *inner, uint64_t deadline_ms);

#endif

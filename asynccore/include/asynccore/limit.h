/* asynccore: a counting limit shared by workers, lock-free on the fast path.
 *
 * Unlike ac_semaphore (FIFO: a waiter is handed a permit and holds it), an
 * ac_limit never hands a permit to anyone. Taking one is a compare-and-swap
 * on an atomic counter; a task that found none waits on a list (the slow
 * path, under a mutex) to be told that a permit came back, and then tries
 * again. So a permit is only ever held by whoever is about to use it: a task
 * that was woken but no longer needs one (its accept queue emptied meanwhile)
 * holds nothing, and nobody is stranded behind it. Returning a permit wakes
 * every waiter (they race; the losers wait again); the list is populated
 * only at the limit, so the common path takes no lock at all.
 */
#ifndef ASYNCCORE_LIMIT_H
#define ASYNCCORE_LIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "asynccore/future.h"
#include "asynccore/list.h"
#include "asynccore/waker.h"

struct ac_limit;

/* One task's place on a limit's wait list (embedded in the task). */
struct ac_limit_wait {
    struct ac_link link;
    struct ac_limit *owner; /* limit it was last listed on (owner task only) */
    bool listed;            /* guarded by owner->lock */
    struct ac_waker waker;  /* guarded by owner->lock */
};

struct ac_limit {
    _Atomic long avail;        /* free permits; negative after a shrink below use */
    _Atomic unsigned nwaiting; /* entries on the list */
    pthread_mutex_t lock;      /* guards the list (slow path only) */
    struct ac_list waiters;
};

int ac_limit_init(struct ac_limit *l, long size);
void ac_limit_destroy(struct ac_limit *l); /* no waiter may remain */

/* Takes a permit if one is free. Never blocks, takes no lock. */
bool ac_limit_try_take(struct ac_limit *l);
/* Returns a permit; wakes the waiters if there are any. */
void ac_limit_put(struct ac_limit *l);
/* Grows (wakes the waiters) or shrinks the limit. Held permits are never
 * revoked: a shrink below what is in use is paid back as they return. */
void ac_limit_adjust(struct ac_limit *l, long delta);
/* Free permits right now (may be negative). */
long ac_limit_available(struct ac_limit *l);

/* Ready when a permit may be free (then try ac_limit_try_take). Pending:
 * w is listed with a clone of cx->waker, woken when a permit comes back. */
ac_poll_t ac_limit_poll_wait(struct ac_limit *l, struct ac_limit_wait *w, struct ac_context *cx);
/* Leaves the list if listed (drop path). */
void ac_limit_wait_cancel(struct ac_limit_wait *w);

#endif

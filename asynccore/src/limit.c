/* asynccore: ac_limit, an atomic permit counter with a slow-path wait list.
 *
 * Lost wake-ups are excluded by ordering (both sides sequentially
 * consistent): a waiter publishes itself (nwaiting) before it checks avail
 * again, and a put publishes avail before it checks nwaiting, so at least one
 * of them sees the other.
 */
#include "asynccore/limit.h"

#include <string.h>

int ac_limit_init(struct ac_limit *l, long size)
{
    memset(l, 0, sizeof(*l));
    atomic_init(&l->avail, size);
    atomic_init(&l->nwaiting, 0);
    return pthread_mutex_init(&l->lock, NULL) == 0 ? 0 : -1;
}

void ac_limit_destroy(struct ac_limit *l) { pthread_mutex_destroy(&l->lock); }

bool ac_limit_try_take(struct ac_limit *l)
{
    long a = atomic_load_explicit(&l->avail, memory_order_relaxed);
    while (a > 0)
        if (atomic_compare_exchange_weak(&l->avail, &a, a - 1))
            return true;
    return false;
}

long ac_limit_available(struct ac_limit *l) { return atomic_load(&l->avail); }

static void unlink_locked(struct ac_limit *l, struct ac_limit_wait *w)
{
    ac_list_remove(&l->waiters, &w->link);
    w->listed = false;
    atomic_fetch_sub(&l->nwaiting, 1);
}

/* Wakes every waiter; each tries again and the losers list themselves anew. */
static void wake_all(struct ac_limit *l)
{
    if (atomic_load(&l->nwaiting) == 0)
        return;
    pthread_mutex_lock(&l->lock);
    while (!ac_list_empty(&l->waiters)) {
        struct ac_limit_wait *w = AC_LIST_ENTRY(l->waiters.first, struct ac_limit_wait, link);
        unlink_locked(l, w);
        ac_waker_wake(&w->waker);
    }
    pthread_mutex_unlock(&l->lock);
}

void ac_limit_put(struct ac_limit *l)
{
    atomic_fetch_add(&l->avail, 1);
    wake_all(l);
}

void ac_limit_adjust(struct ac_limit *l, long delta)
{
    atomic_fetch_add(&l->avail, delta);
    if (delta > 0)
        wake_all(l);
}

ac_poll_t ac_limit_poll_wait(struct ac_limit *l, struct ac_limit_wait *w, struct ac_context *cx)
{
    if (atomic_load(&l->avail) > 0) {
        ac_limit_wait_cancel(w);
        return AC_READY;
    }
    if (w->owner != l)
        ac_limit_wait_cancel(w);
    w->owner = l;
    pthread_mutex_lock(&l->lock);
    if (!w->listed) {
        w->listed = true;
        ac_list_push_front(&l->waiters, &w->link);
        atomic_fetch_add(&l->nwaiting, 1);
    }
    ac_waker_register(&w->waker, cx->waker);
    pthread_mutex_unlock(&l->lock);
    if (atomic_load(&l->avail) > 0) { /* a put raced with listing */
        ac_limit_wait_cancel(w);
        return AC_READY;
    }
    return AC_PENDING;
}

/* Takes the lock only if the task was ever listed since its last cancel:
 * the fast path (a permit free at once) never gets here with an owner. */
void ac_limit_wait_cancel(struct ac_limit_wait *w)
{
    struct ac_limit *l = w->owner;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    if (w->listed)
        unlink_locked(l, w);
    ac_waker_drop(&w->waker);
    pthread_mutex_unlock(&l->lock);
    w->owner = NULL;
}

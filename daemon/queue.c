/* ferryd: server slots and the backend queue (see queue.h).
 *
 * The lost-wake-up argument: a waiter stores its waker (under the lock)
 * before it reads the slot counts; a releaser decrements a count before it
 * reads the queue length. Both are sequentially consistent, so either the
 * waiter sees the free slot or the releaser sees the waiter and wakes it.
 */
#include <errno.h>

#include "queue.h"

/* The first waiter, or NULL. Lock held. */
static struct ferry_queue_waiter *head_of(struct ferry_queue *q)
{
    return q->waiters.first ? AC_LIST_ENTRY(q->waiters.first, struct ferry_queue_waiter, link)
                            : NULL;
}

int ferry_queue_init(struct ferry_queue *q)
{
    q->waiters = (struct ac_list){0};
    atomic_init(&q->len, 0);
    return -pthread_mutex_init(&q->lock, NULL);
}

void ferry_queue_destroy(struct ferry_queue *q)
{
    pthread_mutex_destroy(&q->lock);
}

int ferry_queue_join(struct ferry_queue *q, struct ferry_queue_waiter *w, unsigned max)
{
    pthread_mutex_lock(&q->lock);
    if (atomic_load(&q->len) >= max) {
        pthread_mutex_unlock(&q->lock);
        return -EAGAIN;
    }
    ac_list_push_back(&q->waiters, &w->link);
    w->queued = true;
    atomic_fetch_add(&q->len, 1);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

bool ferry_queue_watch(struct ferry_queue *q, struct ferry_queue_waiter *w,
                       const struct ac_waker *waker)
{
    pthread_mutex_lock(&q->lock);
    ac_waker_register(&w->waker, waker);
    bool head = q->waiters.first == &w->link;
    pthread_mutex_unlock(&q->lock);
    return head;
}

void ferry_queue_leave(struct ferry_queue *q, struct ferry_queue_waiter *w)
{
    struct ac_waker next = AC_WAKER_NONE;
    pthread_mutex_lock(&q->lock);
    if (w->queued) {
        bool was_head = q->waiters.first == &w->link;
        ac_list_remove(&q->waiters, &w->link);
        w->queued = false;
        atomic_fetch_sub(&q->len, 1);
        struct ferry_queue_waiter *h = head_of(q);
        if (was_head && h && ac_waker_is_set(&h->waker))
            next = ac_waker_clone(&h->waker);
    }
    struct ac_waker mine = w->waker;
    w->waker = AC_WAKER_NONE;
    pthread_mutex_unlock(&q->lock);
    ac_waker_drop(&mine);
    ac_waker_wake(&next); /* outside the lock: waking may take a worker's inbox lock */
}

void ferry_queue_kick(struct ferry_queue *q)
{
    if (atomic_load(&q->len) == 0)
        return;
    struct ac_waker head = AC_WAKER_NONE;
    pthread_mutex_lock(&q->lock);
    struct ferry_queue_waiter *h = head_of(q);
    if (h && ac_waker_is_set(&h->waker))
        head = ac_waker_clone(&h->waker);
    pthread_mutex_unlock(&q->lock);
    ac_waker_wake(&head);
}

bool ferry_slot_take(_Atomic unsigned *slots, unsigned max)
{
    if (max == 0) {
        atomic_fetch_add(slots, 1);
        return true;
    }
    unsigned cur = atomic_load(slots);
    while (cur < max)
        if (atomic_compare_exchange_weak(slots, &cur, cur + 1))
            return true;
    return false;
}

void ferry_slot_put(_Atomic unsigned *slots, struct ferry_queue *q)
{
    atomic_fetch_sub(slots, 1);
    ferry_queue_kick(q);
}

/* ferryd: a backend's queue of connections waiting for a server slot
 * (ferry.ini(5): max_connections on a server, queue_timeout, max_queue).
 *
 * Slots: every server counts the connections it holds in one atomic
 * (ferry_slot_take / ferry_slot_put), shared by all workers and kept across
 * reloads with the server's stats, so a connection of an old generation
 * still counts against the new cap. Taking a slot under a cap is a
 * compare-and-swap; no lock.
 *
 * The queue: when every eligible server is at its cap, a connection joins
 * its backend's FIFO (a mutex-guarded list: the slow path only) and waits.
 * While the queue is not empty, newcomers queue behind it too (first come,
 * first served). Only the head tries to take a slot; a freed slot wakes the
 * head (on whichever worker it runs), and a head that got its slot wakes
 * the next one. ferry_queue_kick costs one atomic load while nobody waits.
 */
#ifndef FERRY_QUEUE_H
#define FERRY_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "asynccore/list.h"
#include "asynccore/waker.h"

struct ferry_queue_waiter {
    struct ac_link link;
    struct ac_waker waker;
    bool queued;
};

struct ferry_queue {
    pthread_mutex_t lock;
    struct ac_list waiters; /* first come, first served */
    _Atomic unsigned len; /* waiters now ("queue" in stats) */
};

int ferry_queue_init(struct ferry_queue *q);
void ferry_queue_destroy(struct ferry_queue *q);

static inline unsigned ferry_queue_len(struct ferry_queue *q)
{
    return atomic_load(&q->len);
}

/* Appends w, unless max waiters are already there (-EAGAIN: queue full). */
int ferry_queue_join(struct ferry_queue *q, struct ferry_queue_waiter *w, unsigned max);

/* Stores the waker to call when w should look again, and tells whether w is
 * at the head (only the head may take a slot). Call before looking at the
 * slots, so that a slot freed after the look wakes it. */
bool ferry_queue_watch(struct ferry_queue *q, struct ferry_queue_waiter *w,
                       const struct ac_waker *waker);

/* Removes w (safe when not queued) and drops its waker. When w was the head
 * and others wait, the new head is woken (w got a slot, which may not have
 * been the last, or gave up, and the slot it was told of is still free). */
void ferry_queue_leave(struct ferry_queue *q, struct ferry_queue_waiter *w);

/* A slot was freed: wakes the head, if anyone waits. */
void ferry_queue_kick(struct ferry_queue *q);

/* Slots of one server. max 0: no cap (counted all the same). */
bool ferry_slot_take(_Atomic unsigned *slots, unsigned max);
/* Gives a slot back and wakes the queue's head. */
void ferry_slot_put(_Atomic unsigned *slots, struct ferry_queue *q);

#endif

/* asynccore: synchronisation primitives, waker-based and thread-safe.
 *
 * - oneshot: one value (a pointer) sent once from any thread to one receiver.
 * - notify: a sticky broadcast flag (the daemon's drain signal): once
 *   ac_notify_all() was called, every current and future waiter is ready.
 * - semaphore: counting permits (connection limits); acquire is a future,
 *   waiters are served in FIFO order.
 */
#ifndef ASYNCCORE_SYNC_H
#define ASYNCCORE_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "asynccore/future.h"
#include "asynccore/list.h"
#include "asynccore/waker.h"

/* ---- oneshot ---- */
struct ac_oneshot; /* reference counted; created with two references */

/* Releases a sent value that no receiver will read. */
typedef void (*ac_oneshot_drop_fn)(void *value);

/* Returns NULL on allocation failure. The creator holds two references: one
 * for the sender, one for the receiver; each side releases its own.
 * drop_value (NULL: the values need no release) is called, on the thread
 * that drops the receiver, for a value that was sent but never read: the
 * receiver was dropped after the send and before polling it out. */
struct ac_oneshot *ac_oneshot_new(ac_oneshot_drop_fn drop_value);
/* Sends the value and releases the sender's reference. Returns false if the
 * receiver was already dropped: the value was not taken (the channel does
 * not call drop_value on it; it is still the caller's). */
bool ac_oneshot_send(struct ac_oneshot *ch, void *value);
/* Releases the sender's reference without sending: the receiver sees closed. */
void ac_oneshot_close(struct ac_oneshot *ch);

struct ac_oneshot_recv {
    struct ac_future base;
    struct ac_oneshot *ch; /* receiver's reference, released by drop */
    void *value;           /* output: the receiver's from AC_READY on */
    bool closed;           /* output: sender closed without a value */
};
void ac_oneshot_recv_init(struct ac_oneshot_recv *r, struct ac_oneshot *ch);

/* ---- notify ---- */
struct ac_notified;
struct ac_notify {
    pthread_mutex_t lock;
    struct ac_list waiters;
    bool notified;
};
int ac_notify_init(struct ac_notify *n);
void ac_notify_destroy(struct ac_notify *n); /* no waiter may remain */
void ac_notify_all(struct ac_notify *n);
bool ac_notify_is_set(struct ac_notify *n);

struct ac_notified {
    struct ac_future base;
    struct ac_notify *n;
    struct ac_link link;
    struct ac_waker waker;
    bool queued;
};
void ac_notified_init(struct ac_notified *w, struct ac_notify *n);

/* ---- semaphore ---- */
struct ac_acquire;
struct ac_semaphore {
    pthread_mutex_t lock;
    size_t permits;
    struct ac_list waiters; /* FIFO */
    size_t debt; /* permits removed by adjust while in use: later releases absorb them */
};
int ac_semaphore_init(struct ac_semaphore *s, size_t permits);
void ac_semaphore_destroy(struct ac_semaphore *s); /* no waiter may remain */
bool ac_semaphore_try_acquire(struct ac_semaphore *s);
void ac_semaphore_release(struct ac_semaphore *s, size_t n);
/* Adds (delta > 0) or removes (delta < 0) permits, so the total follows a
 * limit change. Free permits are removed at once; the rest of a removal is
 * owed and taken from later releases (a shrink never revokes a held permit,
 * and the total drops to the new limit as holders release). An increase pays
 * the debt first. */
void ac_semaphore_adjust(struct ac_semaphore *s, long delta);
size_t ac_semaphore_available(struct ac_semaphore *s);

/* Ready when a permit was taken (the caller then owns it and must release it
 * with ac_semaphore_release). A dropped waiter that was handed a permit but
 * never observed it gives the permit back. */
struct ac_acquire {
    struct ac_future base;
    struct ac_semaphore *s;
    struct ac_link link;
    struct ac_waker waker;
    bool queued, granted, taken;
};
void ac_acquire_init(struct ac_acquire *a, struct ac_semaphore *s);

#endif

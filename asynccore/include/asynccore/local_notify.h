/* asynccore: a sticky broadcast flag owned by one worker, without a lock.
 *
 * Like ac_notify (sync.h), but every use (waiting, dropping, notifying) is
 * on the owning worker's thread, so it is a plain intrusive list. Another
 * thread that wants to set it spawns a task on that worker (its inbox):
 * what the data path registers with on every connection costs no mutex.
 */
#ifndef ASYNCCORE_LOCAL_NOTIFY_H
#define ASYNCCORE_LOCAL_NOTIFY_H

#include <stdbool.h>

#include "asynccore/future.h"
#include "asynccore/list.h"
#include "asynccore/waker.h"

struct ac_local_notified;

struct ac_local_notify {
    struct ac_list waiters;
    bool notified;
};

void ac_local_notify_init(struct ac_local_notify *n);
/* Sets the flag and wakes every waiter. Owning worker's thread only. */
void ac_local_notify_all(struct ac_local_notify *n);
static inline bool ac_local_notify_is_set(const struct ac_local_notify *n) { return n->notified; }

/* Ready once the flag is set (at once if it already is). */
struct ac_local_notified {
    struct ac_future base;
    struct ac_local_notify *n;
    struct ac_link link;
    struct ac_waker waker;
    bool queued;
};
void ac_local_notified_init(struct ac_local_notified *w, struct ac_local_notify *n);

#endif

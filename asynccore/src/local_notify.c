/* asynccore: ac_local_notify, a one-thread sticky broadcast flag. */
#include "asynccore/local_notify.h"

#include <stddef.h>

void ac_local_notify_init(struct ac_local_notify *n)
{
    n->waiters = (struct ac_list){0};
    n->notified = false;
}

static void unlink_waiter(struct ac_local_notified *w)
{
    ac_list_remove(&w->n->waiters, &w->link);
    w->queued = false;
}

void ac_local_notify_all(struct ac_local_notify *n)
{
    n->notified = true;
    while (!ac_list_empty(&n->waiters)) {
        struct ac_local_notified *w = AC_LIST_ENTRY(n->waiters.first, struct ac_local_notified, link);
        unlink_waiter(w);
        ac_waker_wake(&w->waker);
    }
}

static ac_poll_t notified_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ac_local_notified *w = (struct ac_local_notified *)f;
    if (w->n->notified) {
        if (w->queued)
            unlink_waiter(w);
        return AC_READY;
    }
    if (!w->queued) {
        ac_list_push_front(&w->n->waiters, &w->link);
        w->queued = true;
    }
    ac_waker_register(&w->waker, cx->waker);
    return AC_PENDING;
}

static void notified_drop(struct ac_future *f)
{
    struct ac_local_notified *w = (struct ac_local_notified *)f;
    if (w->queued)
        unlink_waiter(w);
    ac_waker_drop(&w->waker);
}

static const struct ac_future_vtable notified_vt = {notified_poll, notified_drop};

void ac_local_notified_init(struct ac_local_notified *w, struct ac_local_notify *n)
{
    w->base.vt = &notified_vt;
    w->n = n;
    w->link = (struct ac_link){0};
    w->waker = AC_WAKER_NONE;
    w->queued = false;
}

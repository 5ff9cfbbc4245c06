/* asynccore: oneshot channel, sticky notify, FIFO semaphore.
 *
 * Locking rule shared by all three: wakers are woken (and dropped) while the
 * primitive's mutex is held. A waiter's drop takes the same mutex, so once a
 * waiter's drop returned no wake for it can still be in flight on another
 * thread (the runtime may then free the worker the waker points at). This
 * cannot deadlock: a registered waker belongs to a live future, so its wake
 * never releases the last task reference and never re-enters the primitive.
 */
#include "asynccore/sync.h"

#include <stdatomic.h>
#include <stdlib.h>

/* ---- oneshot ---- */

struct ac_oneshot {
    pthread_mutex_t lock;
    atomic_uint refs;
    void *value;
    ac_oneshot_drop_fn drop_value;
    struct ac_waker waker; /* the receiver's, while it waits */
    bool has_value;        /* sent, not yet taken */
    bool sender_done;      /* sent or closed */
    bool receiver_gone;
};

struct ac_oneshot *ac_oneshot_new(ac_oneshot_drop_fn drop_value)
{
    struct ac_oneshot *ch = calloc(1, sizeof(*ch));

    if (ch == NULL)
        return NULL;
    if (pthread_mutex_init(&ch->lock, NULL) != 0) {
        free(ch);
        return NULL;
    }
    atomic_init(&ch->refs, 2);
    ch->drop_value = drop_value;
    ch->waker = AC_WAKER_NONE;
    return ch;
}

static void oneshot_release(struct ac_oneshot *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    ac_waker_drop(&ch->waker);
    pthread_mutex_destroy(&ch->lock);
    free(ch);
}

/* Marks the sender side finished, optionally with a value, and wakes the
 * receiver. Returns false when the receiver is gone. */
static bool oneshot_finish(struct ac_oneshot *ch, bool with_value, void *value)
{
    bool delivered;

    pthread_mutex_lock(&ch->lock);
    delivered = !ch->receiver_gone;
    if (!ch->sender_done) {
        ch->sender_done = true;
        if (with_value && delivered) {
            ch->value = value;
            ch->has_value = true;
        }
        ac_waker_wake(&ch->waker);
    }
    pthread_mutex_unlock(&ch->lock);
    oneshot_release(ch);
    return delivered;
}

bool ac_oneshot_send(struct ac_oneshot *ch, void *value)
{
    return oneshot_finish(ch, true, value);
}

void ac_oneshot_close(struct ac_oneshot *ch)
{
    (void)oneshot_finish(ch, false, NULL);
}

static ac_poll_t oneshot_recv_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_oneshot_recv *r = (struct ac_oneshot_recv *)self;
    struct ac_oneshot *ch = r->ch;
    ac_poll_t ret = AC_PENDING;

    if (ch == NULL) {
        r->closed = true;
        return AC_READY;
    }
    pthread_mutex_lock(&ch->lock);
    if (ch->has_value) {
        r->value = ch->value;
        ch->has_value = false;
        ch->value = NULL;
        ret = AC_READY;
    } else if (ch->sender_done) {
        r->closed = true;
        ret = AC_READY;
    } else {
        ac_waker_register(&ch->waker, cx->waker);
    }
    if (ret == AC_READY)
        ac_waker_drop(&ch->waker);
    pthread_mutex_unlock(&ch->lock);
    return ret;
}

static void oneshot_recv_drop(struct ac_future *self)
{
    struct ac_oneshot_recv *r = (struct ac_oneshot_recv *)self;
    struct ac_oneshot *ch = r->ch;

    if (ch == NULL)
        return;
    r->ch = NULL;
    pthread_mutex_lock(&ch->lock);
    ch->receiver_gone = true;
    ac_waker_drop(&ch->waker);
    /* Sent but never read: nobody else will see it (a later send is refused). */
    bool orphan = ch->has_value;
    void *value = ch->value;
    ch->has_value = false;
    ch->value = NULL;
    pthread_mutex_unlock(&ch->lock);
    if (orphan && ch->drop_value != NULL)
        ch->drop_value(value); /* outside the lock: it may do anything */
    oneshot_release(ch);
}

static const struct ac_future_vtable oneshot_recv_vt = {oneshot_recv_poll, oneshot_recv_drop};

void ac_oneshot_recv_init(struct ac_oneshot_recv *r, struct ac_oneshot *ch)
{
    r->base.vt = &oneshot_recv_vt;
    r->ch = ch;
    r->value = NULL;
    r->closed = false;
}

/* ---- notify ---- */

int ac_notify_init(struct ac_notify *n)
{
    n->waiters = (struct ac_list){0};
    n->notified = false;
    return -pthread_mutex_init(&n->lock, NULL);
}

void ac_notify_destroy(struct ac_notify *n)
{
    pthread_mutex_destroy(&n->lock);
}

static void notify_unlink(struct ac_notify *n, struct ac_notified *w)
{
    ac_list_remove(&n->waiters, &w->link);
    w->queued = false;
}

void ac_notify_all(struct ac_notify *n)
{
    pthread_mutex_lock(&n->lock);
    n->notified = true;
    while (!ac_list_empty(&n->waiters)) {
        struct ac_notified *w = AC_LIST_ENTRY(n->waiters.first, struct ac_notified, link);

        notify_unlink(n, w);
        ac_waker_wake(&w->waker);
    }
    pthread_mutex_unlock(&n->lock);
}

bool ac_notify_is_set(struct ac_notify *n)
{
    bool set;

    pthread_mutex_lock(&n->lock);
    set = n->notified;
    pthread_mutex_unlock(&n->lock);
    return set;
}

static ac_poll_t notified_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_notified *w = (struct ac_notified *)self;
    struct ac_notify *n = w->n;
    ac_poll_t ret = AC_PENDING;

    pthread_mutex_lock(&n->lock);
    if (n->notified) {
        if (w->queued)
            notify_unlink(n, w);
        ac_waker_drop(&w->waker);
        ret = AC_READY;
    } else {
        ac_waker_register(&w->waker, cx->waker);
        if (!w->queued) {
            ac_list_push_front(&n->waiters, &w->link);
            w->queued = true;
        }
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}

static void notified_drop(struct ac_future *self)
{
    struct ac_notified *w = (struct ac_notified *)self;
    struct ac_notify *n = w->n;

    pthread_mutex_lock(&n->lock);
    if (w->queued)
        notify_unlink(n, w);
    ac_waker_drop(&w->waker);
    pthread_mutex_unlock(&n->lock);
}

static const struct ac_future_vtable notified_vt = {notified_poll, notified_drop};

void ac_notified_init(struct ac_notified *w, struct ac_notify *n)
{
    w->base.vt = &notified_vt;
    w->n = n;
    w->link = (struct ac_link){0};
    w->waker = AC_WAKER_NONE;
    w->queued = false;
}

/* ---- semaphore ---- */

int ac_semaphore_init(struct ac_semaphore *s, size_t permits)
{
    s->permits = permits;
    s->debt = 0;
    s->waiters = (struct ac_list){0};
    return -pthread_mutex_init(&s->lock, NULL);
}

void ac_semaphore_destroy(struct ac_semaphore *s)
{
    pthread_mutex_destroy(&s->lock);
}

static void sem_unlink(struct ac_semaphore *s, struct ac_acquire *a)
{
    ac_list_remove(&s->waiters, &a->link);
    a->queued = false;
}

static void sem_enqueue(struct ac_semaphore *s, struct ac_acquire *a)
{
    ac_list_push_back(&s->waiters, &a->link);
    a->queued = true;
}

/* Hands free permits to queued waiters in FIFO order. Lock held. */
static void sem_grant_locked(struct ac_semaphore *s)
{
    while (!ac_list_empty(&s->waiters) && s->permits > 0) {
        struct ac_acquire *a = AC_LIST_ENTRY(s->waiters.first, struct ac_acquire, link);

        sem_unlink(s, a);
        s->permits--;
        a->granted = true;
        ac_waker_wake(&a->waker);
    }
}

bool ac_semaphore_try_acquire(struct ac_semaphore *s)
{
    bool ok = false;

    pthread_mutex_lock(&s->lock);
    /* No barging: queued waiters are served first. */
    if (ac_list_empty(&s->waiters) && s->permits > 0) {
        s->permits--;
        ok = true;
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* Adds n permits, paying the debt of an earlier shrink first. Lock held. */
static void sem_add_locked(struct ac_semaphore *s, size_t n)
{
    size_t paid = n < s->debt ? n : s->debt;

    s->debt -= paid;
    s->permits += n - paid;
    sem_grant_locked(s);
}

void ac_semaphore_release(struct ac_semaphore *s, size_t n)
{
    pthread_mutex_lock(&s->lock);
    sem_add_locked(s, n);
    pthread_mutex_unlock(&s->lock);
}

void ac_semaphore_adjust(struct ac_semaphore *s, long delta)
{
    pthread_mutex_lock(&s->lock);
    if (delta > 0) {
        sem_add_locked(s, (size_t)delta);
    } else if (delta < 0) {
        /* Held permits cannot be revoked: remove what is free, owe the rest. */
        size_t take = (size_t)(-(delta + 1)) + 1;
        size_t now = take < s->permits ? take : s->permits;

        s->permits -= now;
        s->debt += take - now;
    }
    pthread_mutex_unlock(&s->lock);
}

size_t ac_semaphore_available(struct ac_semaphore *s)
{
    size_t n;

    pthread_mutex_lock(&s->lock);
    n = s->permits;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static ac_poll_t acquire_poll(struct ac_future *self, struct ac_context *cx)
{
    struct ac_acquire *a = (struct ac_acquire *)self;
    struct ac_semaphore *s = a->s;
    ac_poll_t ret = AC_PENDING;

    pthread_mutex_lock(&s->lock);
    if (a->granted) {
        ret = AC_READY;
    } else if (!a->queued && ac_list_empty(&s->waiters) && s->permits > 0) {
        s->permits--;
        a->granted = true;
        ret = AC_READY;
    } else {
        ac_waker_register(&a->waker, cx->waker);
        if (!a->queued)
            sem_enqueue(s, a);
    }
    if (ret == AC_READY) {
        a->taken = true;
        ac_waker_drop(&a->waker);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static void acquire_drop(struct ac_future *self)
{
    struct ac_acquire *a = (struct ac_acquire *)self;
    struct ac_semaphore *s = a->s;

    pthread_mutex_lock(&s->lock);
    if (a->queued)
        sem_unlink(s, a);
    if (a->granted && !a->taken) {
        /* Handed a permit nobody observed: pass it on. */
        a->granted = false;
        sem_add_locked(s, 1);
    }
    ac_waker_drop(&a->waker);
    pthread_mutex_unlock(&s->lock);
}

static const struct ac_future_vtable acquire_vt = {acquire_poll, acquire_drop};

void ac_acquire_init(struct ac_acquire *a, struct ac_semaphore *s)
{
    a->base.vt = &acquire_vt;
    a->s = s;
    a->link = (struct ac_link){0};
    a->waker = AC_WAKER_NONE;
    a->queued = a->granted = a->taken = false;
}

/* asynccore: wakers and the poll context.
 *
 * A waker is a (vtable, data) pair, copied by value. clone() returns a new
 * reference; wake() consumes the reference; wake_by_ref() does not; drop()
 * releases it. For a task waker, data is the task itself and clone is a
 * reference-count increment (no allocation). Every clone must be balanced by
 * exactly one wake() or drop(). Wakers may be woken from any thread.
 */
#ifndef ASYNCCORE_WAKER_H
#define ASYNCCORE_WAKER_H

#include <stdbool.h>
#include <stddef.h>

struct ac_waker;
struct ac_worker;

struct ac_waker_vtable {
    struct ac_waker (*clone)(const void *data);
    void (*wake)(const void *data);
    void (*wake_by_ref)(const void *data);
    void (*drop)(const void *data);
};

struct ac_waker {
    const struct ac_waker_vtable *vt; /* NULL: no waker held */
    const void *data;
};

#define AC_WAKER_NONE ((struct ac_waker){NULL, NULL})

static inline bool ac_waker_is_set(const struct ac_waker *w) { return w->vt != NULL; }

static inline struct ac_waker ac_waker_clone(const struct ac_waker *w)
{
    return w->vt ? w->vt->clone(w->data) : AC_WAKER_NONE;
}

/* Wakes and releases the reference; *w becomes empty. No-op when empty. */
static inline void ac_waker_wake(struct ac_waker *w)
{
    if (w->vt) {
        struct ac_waker t = *w;
        *w = AC_WAKER_NONE;
        t.vt->wake(t.data);
    }
}

static inline void ac_waker_wake_by_ref(const struct ac_waker *w)
{
    if (w->vt)
        w->vt->wake_by_ref(w->data);
}

/* Releases the reference; *w becomes empty. No-op when empty. */
static inline void ac_waker_drop(struct ac_waker *w)
{
    if (w->vt) {
        struct ac_waker t = *w;
        *w = AC_WAKER_NONE;
        t.vt->drop(t.data);
    }
}

static inline bool ac_waker_will_wake(const struct ac_waker *a, const struct ac_waker *b)
{
    return a->vt == b->vt && a->data == b->data;
}

/* Stores a clone of `w` in `slot`, unless slot already wakes the same task
 * (then nothing changes and nothing is allocated). */
static inline void ac_waker_register(struct ac_waker *slot, const struct ac_waker *w)
{
    if (ac_waker_will_wake(slot, w))
        return;
    ac_waker_drop(slot);
    *slot = ac_waker_clone(w);
}

/* Operations a task may do per poll before it must yield (tokio uses 128). */
#define AC_COOP_BUDGET 128

/* What a poll receives: the waker of the task being polled and the worker
 * it runs on (for the reactor, timers and clock). */
struct ac_context {
    const struct ac_waker *waker;
    struct ac_worker *worker;
    unsigned budget; /* remaining cooperative operations this poll */
};

/* Consumes one unit of budget. When the budget is spent it schedules the task
 * again (wake_by_ref) and returns false: the caller must return AC_PENDING. */
static inline bool ac_coop_proceed(struct ac_context *cx)
{
    if (cx->budget == 0) {
        ac_waker_wake_by_ref(cx->waker);
        return false;
    }
    cx->budget--;
    return true;
}

/* A waker that does nothing (for tests and for polling outside a task). */
struct ac_waker ac_waker_noop(void);

#endif

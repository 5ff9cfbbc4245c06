/* asynccore: futures.
 *
 * A future is a struct whose first member is `struct ac_future`. It does
 * nothing until polled. poll() returns AC_READY once, with its output in the
 * future's own typed fields, or AC_PENDING after arranging for cx->waker to be
 * woken when progress is possible.
 *
 * Ownership rule: whoever initialised a future calls ac_future_drop() on it
 * exactly once, whether it completed or not. drop() releases everything the
 * future holds (registrations, timer entries, waker clones, child futures,
 * buffers, and any file descriptor it has not handed over as output) but never
 * frees the future's own memory: futures are usually embedded in a parent.
 * Polling a future after it returned AC_READY, or after drop, is a bug.
 */
#ifndef ASYNCCORE_FUTURE_H
#define ASYNCCORE_FUTURE_H

#include <stddef.h>

typedef enum { AC_PENDING = 0, AC_READY = 1 } ac_poll_t;

struct ac_context;
struct ac_future;

struct ac_future_vtable {
    ac_poll_t (*poll)(struct ac_future *self, struct ac_context *cx);
    void (*drop)(struct ac_future *self);
};

struct ac_future {
    const struct ac_future_vtable *vt;
};

/* Frees the memory of a heap-allocated top-level future after its drop. */
typedef void (*ac_dealloc_fn)(struct ac_future *f);

static inline ac_poll_t ac_future_poll(struct ac_future *f, struct ac_context *cx)
{
    return f->vt->poll(f, cx);
}

/* Safe on a future whose vt is NULL (never initialised or already dropped). */
static inline void ac_future_drop(struct ac_future *f)
{
    if (f != NULL && f->vt != NULL) {
        const struct ac_future_vtable *vt = f->vt;
        f->vt = NULL;
        if (vt->drop != NULL)
            vt->drop(f);
    }
}

/* Container-of for futures embedded in a larger struct. */
#define AC_CONTAINER_OF(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#endif

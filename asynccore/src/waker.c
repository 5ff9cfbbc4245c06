/* asynccore: the no-op waker (task wakers live in task.c). */
#include "asynccore/waker.h"

static struct ac_waker noop_clone(const void *data);
static void noop_unit(const void *data) { (void)data; }

static const struct ac_waker_vtable noop_vt = {noop_clone, noop_unit, noop_unit, noop_unit};

static struct ac_waker noop_clone(const void *data)
{
    return (struct ac_waker){&noop_vt, data};
}

struct ac_waker ac_waker_noop(void)
{
    return (struct ac_waker){&noop_vt, NULL};
}

/* asynccore: each worker's cache of freed tasks (see internal.h).
 *
 * A cached task's memory holds only the free-list link; under
 * AddressSanitizer the rest is poisoned, so a use after the task died is
 * still reported although the memory was not given back to malloc.
 */
#include <stdlib.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct ac__task_slot {
    struct ac__task_slot *next;
};

_Static_assert(sizeof(struct ac_task) >= sizeof(struct ac__task_slot), "a task holds a link");

struct ac_task *ac__task_cache_get(struct ac_worker *w)
{
    /* Another thread (a spawn onto w from elsewhere) must not even read w's
     * list: its thread changes it meanwhile (a data race, seen by TSan). */
    if (ac_worker_current() != w)
        return malloc(sizeof(struct ac_task));
    struct ac__task_cache *c = &w->tasks;
    struct ac__task_slot *s = c->head;
    if (s == NULL)
        return malloc(sizeof(struct ac_task));
    c->head = s->next;
    c->n--;
    UNPOISON(s, sizeof(struct ac_task));
    return (struct ac_task *)(void *)s;
}

void ac__task_cache_put(struct ac_worker *w, struct ac_task *t)
{
    if (ac_worker_current() != w || w->tasks.n >= AC__TASK_CACHE_MAX) {
        free(t);
        return;
    }
    struct ac__task_slot *s = (struct ac__task_slot *)(void *)t;
    s->next = w->tasks.head;
    w->tasks.head = s;
    w->tasks.n++;
    POISON((char *)t + sizeof(*s), sizeof(*t) - sizeof(*s));
}

void ac__task_cache_clear(struct ac__task_cache *c)
{
    while (c->head != NULL) {
        struct ac__task_slot *s = c->head;
        c->head = s->next;
        UNPOISON(s, sizeof(struct ac_task));
        free(s);
    }
    c->n = 0;
}

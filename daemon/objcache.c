/* ferryd: a worker's free list of same-size objects (see objcache.h).
 *
 * Under AddressSanitizer a cached object is poisoned but for its link, so a
 * use after free is still reported although malloc never saw the free.
 */
#include "objcache.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct slot {
    struct slot *next;
};

void *ferry_objcache_get(struct ferry_objcache *c, struct ac_worker *owner, size_t size)
{
    /* Another thread must not even read the list: the owner's thread
     * changes it meanwhile (a data race). So the owner is checked first. */
    if (ac_worker_current() != owner || size < sizeof(struct slot))
        return malloc(size);
    struct slot *s = c->head;
    if (s == NULL)
        return malloc(size);
    c->head = s->next;
    c->n--;
    UNPOISON(s, size);
    return s;
}

void ferry_objcache_put(struct ferry_objcache *c, struct ac_worker *owner, void *p, size_t size)
{
    if (p == NULL)
        return;
    if (ac_worker_current() != owner || size < sizeof(struct slot) || c->n >= c->max) {
        free(p);
        return;
    }
    struct slot *s = p;
    s->next = c->head;
    c->head = s;
    c->n++;
    POISON((char *)p + sizeof(*s), size - sizeof(*s));
}

void ferry_objcache_clear(struct ferry_objcache *c)
{
    while (c->head != NULL) {
        struct slot *s = c->head;
        c->head = s->next;
        UNPOISON(s, sizeof(*s)); /* free() needs no more: ASan tracks the chunk */
        free(s);
    }
    c->n = 0;
}

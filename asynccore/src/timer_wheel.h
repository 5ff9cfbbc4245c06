/* asynccore internal: the hierarchical timing wheel (tokio runtime/time/wheel).
 *
 * 6 levels x 64 slots, 1 ms ticks: level L slot covers 64^L ms, so the wheel
 * spans 64^6 ms (~2.2 years); farther deadlines are parked in the top level
 * and re-inserted each time their slot comes round. Entries are intrusive and
 * doubly linked: insert and remove are O(1). advance() moves every expired
 * entry onto the `expired` list (cascading higher-level slots down as time
 * passes their start) before anything is woken, so wakers run with the wheel
 * in a consistent state.
 *
 * `elapsed` is the absolute time (ms) the wheel has been advanced to; every
 * entry in a slot has deadline > elapsed, entries at or before it sit on the
 * expired list.
 */
#ifndef AC_TIMER_WHEEL_H
#define AC_TIMER_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/timer.h"

#define AC__WHEEL_LEVELS 6u
#define AC__WHEEL_SLOTS 64u
/* entry->level of an entry on the expired list. */
#define AC__WHEEL_EXPIRED AC__WHEEL_LEVELS
/* ac_timer_entry keeps level and slot in a byte each. */
_Static_assert(AC__WHEEL_EXPIRED <= UINT8_MAX && AC__WHEEL_SLOTS <= UINT8_MAX + 1u,
               "a wheel entry's level and slot are bytes");

struct ac__wheel {
    uint64_t elapsed;
    unsigned count; /* entries in slots and on the expired list */
    uint64_t occupied[AC__WHEEL_LEVELS];
    struct ac_timer_entry *slots[AC__WHEEL_LEVELS][AC__WHEEL_SLOTS];
    struct ac_timer_entry *expired_head, *expired_tail;
};

void ac__wheel_init(struct ac__wheel *wh, uint64_t now);
/* Inserts e (not in any wheel) with the given deadline; owner becomes
 * e->worker. A deadline <= elapsed goes straight to the expired list. */
void ac__wheel_insert(struct ac__wheel *wh, struct ac_timer_entry *e, uint64_t deadline,
                      struct ac_worker *owner);
/* Removes e (which must be in this wheel). */
void ac__wheel_remove(struct ac__wheel *wh, struct ac_timer_entry *e);
/* Moves every entry with deadline <= now onto the expired list, in deadline
 * order, and sets elapsed = now. */
void ac__wheel_advance(struct ac__wheel *wh, uint64_t now);
/* Pops the first expired entry (marked fired, e->worker NULL), or NULL. */
struct ac_timer_entry *ac__wheel_pop_expired(struct ac__wheel *wh);
/* When advance() must next run: elapsed if entries are expired, the start of
 * the next occupied slot (a lower bound for higher levels), or UINT64_MAX. */
uint64_t ac__wheel_next_deadline(const struct ac__wheel *wh);
/* Detaches every entry (runtime teardown). Wakers are left to their owners. */
void ac__wheel_clear(struct ac__wheel *wh);

#endif

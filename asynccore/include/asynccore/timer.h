/* asynccore: timers.
 *
 * Each worker has a hierarchical timing wheel (6 levels x 64 slots, 1 ms
 * ticks, like tokio's runtime/time/wheel). A sleep future owns its wheel
 * entry: the entry is inserted at first poll, and dropping the sleep removes
 * it in O(1). Expired entries are moved out of the wheel before their wakers
 * run. Deadlines are absolute milliseconds on ac_clock_now_ms()'s clock.
 */
#ifndef ASYNCCORE_TIMER_H
#define ASYNCCORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/waker.h"

struct ac_worker;

/* An intrusive wheel entry (internal fields; do not touch). Small: every
 * idle connection holds one (its idle timer), so level (< 8) and slot
 * (< 64) are bytes and share a word with fired. */
struct ac_timer_entry {
    struct ac_timer_entry *next, *prev;
    uint64_t deadline;
    struct ac_waker waker;
    struct ac_worker *worker; /* NULL: not in a wheel */
    uint8_t level, slot;
    bool fired;
};

struct ac_sleep {
    struct ac_future base;
    struct ac_timer_entry entry;
    uint64_t deadline;
};

/* Ready at now + ms (the clock is read at init). */
void ac_sleep_init(struct ac_sleep *s, uint64_t ms);
/* Ready at the absolute deadline (ms on ac_clock_now_ms()'s clock). */
void ac_sleep_init_deadline(struct ac_sleep *s, uint64_t deadline_ms);
/* Moves the deadline of a sleep (pending or already fired); it becomes
 * pending again if the new deadline is in the future. The next poll
 * re-registers it. */
void ac_sleep_reset(struct ac_sleep *s, uint64_t deadline_ms);
bool ac_sleep_elapsed(const struct ac_sleep *s);

/* Number of entries in w's wheel (for tests: cancelled sleeps leave none). */
unsigned ac_timer_count(struct ac_worker *w);

#endif

/* asynccore: the timing wheel and the sleep future.
 *
 * Wheel layout and cascading follow tokio runtime/time/wheel: an entry sits at
 * the level given by the highest bit in which its deadline differs from
 * `elapsed`, so lower levels always expire first; when time reaches the start
 * of a higher-level slot its entries are re-inserted relative to that instant
 * (cascading down) or expire.
 */
#include <assert.h>
#include <string.h>

#include "asynccore/timer.h"
#include "internal.h"
#include "timer_wheel.h"

#define SLOT_BITS 6u
#define SLOT_MASK ((uint64_t)AC__WHEEL_SLOTS - 1)
/* The farthest distance representable: one rotation of the top level. */
#define MAX_DURATION (((uint64_t)1 << (SLOT_BITS * AC__WHEEL_LEVELS)) - 1)

void ac__wheel_init(struct ac__wheel *wh, uint64_t now)
{
    memset(wh, 0, sizeof(*wh));
    wh->elapsed = now;
}

static unsigned level_for(uint64_t elapsed, uint64_t when)
{
    uint64_t masked = (elapsed ^ when) | SLOT_MASK;
    if (masked >= MAX_DURATION)
        masked = MAX_DURATION - 1; /* park far deadlines in the top level */
    unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
    return significant / SLOT_BITS;
}

static void expired_append(struct ac__wheel *wh, struct ac_timer_entry *e)
{
    e->level = AC__WHEEL_EXPIRED;
    e->next = NULL;
    e->prev = wh->expired_tail;
    if (wh->expired_tail != NULL)
        wh->expired_tail->next = e;
    else
        wh->expired_head = e;
    wh->expired_tail = e;
}

/* Places e (deadline > elapsed) in its slot. */
static void place(struct ac__wheel *wh, struct ac_timer_entry *e)
{
    unsigned level = level_for(wh->elapsed, e->deadline);
    unsigned slot = (unsigned)((e->deadline >> (level * SLOT_BITS)) & SLOT_MASK);
    unsigned now_slot = (unsigned)((wh->elapsed >> (level * SLOT_BITS)) & SLOT_MASK);
    /* Only a deadline a whole lap (or more) away can map onto the current
     * top-level slot; that slot would be taken as the one after the lap and
     * shadow every slot in between. Park it in the lap's last slot instead:
     * it is re-placed when that slot starts, still before its deadline. */
    if (slot == now_slot && level == AC__WHEEL_LEVELS - 1)
        slot = (now_slot + AC__WHEEL_SLOTS - 1) & (unsigned)SLOT_MASK;
    struct ac_timer_entry **head = &wh->slots[level][slot];
    e->level = (uint8_t)level;
    e->slot = (uint8_t)slot;
    e->prev = NULL;
    e->next = *head;
    if (*head != NULL)
        (*head)->prev = e;
    *head = e;
    wh->occupied[level] |= (uint64_t)1 << slot;
}

void ac__wheel_insert(struct ac__wheel *wh, struct ac_timer_entry *e, uint64_t deadline,
                      struct ac_worker *owner)
{
    assert(e->worker == NULL);
    e->deadline = deadline;
    e->worker = owner;
    e->fired = false;
    wh->count++;
    if (deadline <= wh->elapsed)
        expired_append(wh, e);
    else
        place(wh, e);
}

void ac__wheel_remove(struct ac__wheel *wh, struct ac_timer_entry *e)
{
    assert(e->worker != NULL && wh->count > 0);
    if (e->level == AC__WHEEL_EXPIRED) {
        if (e->prev != NULL)
            e->prev->next = e->next;
        else
            wh->expired_head = e->next;
        if (e->next != NULL)
            e->next->prev = e->prev;
        else
            wh->expired_tail = e->prev;
    } else {
        if (e->prev != NULL)
            e->prev->next = e->next;
        else
            wh->slots[e->level][e->slot] = e->next;
        if (e->next != NULL)
            e->next->prev = e->prev;
        if (wh->slots[e->level][e->slot] == NULL)
            wh->occupied[e->level] &= ~((uint64_t)1 << e->slot);
    }
    e->next = e->prev = NULL;
    e->worker = NULL;
    wh->count--;
}

/* The next occupied slot of `level` at or after elapsed, and the instant its
 * range starts. */
static bool level_next(const struct ac__wheel *wh, unsigned level, unsigned *slot,
                       uint64_t *deadline)
{
    uint64_t occ = wh->occupied[level];
    if (occ == 0)
        return false;
    unsigned shift = level * SLOT_BITS;
    uint64_t slot_range = (uint64_t)1 << shift;
    uint64_t level_range = slot_range << SLOT_BITS;
    unsigned now_slot = (unsigned)((wh->elapsed >> shift) & SLOT_MASK);
    uint64_t rot = now_slot ? (occ >> now_slot) | (occ << (64u - now_slot)) : occ;
    *slot = ((unsigned)__builtin_ctzll(rot) + now_slot) & (unsigned)SLOT_MASK;
    uint64_t d = (wh->elapsed & ~(level_range - 1)) + *slot * slot_range;
    if (d <= wh->elapsed)
        d += level_range; /* only the top level wraps: a slot "behind" is a lap ahead */
    *deadline = d;
    return true;
}

static bool next_expiration(const struct ac__wheel *wh, unsigned *level, unsigned *slot,
                            uint64_t *deadline)
{
    for (unsigned l = 0; l < AC__WHEEL_LEVELS; l++) {
        if (level_next(wh, l, slot, deadline)) {
            *level = l;
            return true;
        }
    }
    return false;
}

uint64_t ac__wheel_next_deadline(const struct ac__wheel *wh)
{
    if (wh->expired_head != NULL)
        return wh->elapsed;
    unsigned level, slot;
    uint64_t deadline;
    return next_expiration(wh, &level, &slot, &deadline) ? deadline : UINT64_MAX;
}

/* Empties one slot at instant `deadline`: its entries expire or cascade. */
static void process_slot(struct ac__wheel *wh, unsigned level, unsigned slot, uint64_t deadline)
{
    struct ac_timer_entry *e = wh->slots[level][slot];
    wh->slots[level][slot] = NULL;
    wh->occupied[level] &= ~((uint64_t)1 << slot);
    wh->elapsed = deadline;
    while (e != NULL) {
        struct ac_timer_entry *next = e->next;
        if (e->deadline <= deadline)
            expired_append(wh, e);
        else
            place(wh, e);
        e = next;
    }
}

void ac__wheel_advance(struct ac__wheel *wh, uint64_t now)
{
    if (now < wh->elapsed)
        return;
    unsigned level, slot;
    uint64_t deadline;
    while (next_expiration(wh, &level, &slot, &deadline) && deadline <= now)
        process_slot(wh, level, slot, deadline);
    wh->elapsed = now;
}

struct ac_timer_entry *ac__wheel_pop_expired(struct ac__wheel *wh)
{
    struct ac_timer_entry *e = wh->expired_head;
    if (e == NULL)
        return NULL;
    ac__wheel_remove(wh, e);
    e->fired = true;
    return e;
}

void ac__wheel_clear(struct ac__wheel *wh)
{
    struct ac_timer_entry *e;
    while ((e = wh->expired_head) != NULL)
        ac__wheel_remove(wh, e);
    for (unsigned l = 0; l < AC__WHEEL_LEVELS; l++)
        for (unsigned s = 0; s < AC__WHEEL_SLOTS; s++)
            while ((e = wh->slots[l][s]) != NULL)
                ac__wheel_remove(wh, e);
}

/* ---- the sleep future ---- */

static uint64_t worker_clock(struct ac_worker *w)
{
    return w != NULL ? ac_worker_now_ms(w) : ac_clock_now_ms();
}

static void sleep_cancel(struct ac_sleep *s)
{
    if (s->entry.worker != NULL)
        ac__wheel_remove(&s->entry.worker->wheel, &s->entry);
}

static ac_poll_t sleep_poll(struct ac_future *f, struct ac_context *cx)
{
    struct ac_sleep *s = (struct ac_sleep *)f;
    struct ac_worker *w = cx->worker != NULL ? cx->worker : ac_worker_current();
    /* The worker's cached clock, so that "deadline <= ac_worker_now_ms()"
     * agrees with this poll within a loop turn. */
    if (s->entry.fired || s->deadline <= worker_clock(w)) {
        sleep_cancel(s);
        ac_waker_drop(&s->entry.waker);
        s->entry.fired = true;
        return AC_READY;
    }
    if (w == NULL)
        return AC_PENDING; /* no wheel to wait in: nothing can wake it */
    ac_waker_register(&s->entry.waker, cx->waker);
    if (s->entry.worker != NULL && s->entry.deadline != s->deadline)
        sleep_cancel(s);
    if (s->entry.worker == NULL)
        ac__wheel_insert(&w->wheel, &s->entry, s->deadline, w);
    return AC_PENDING;
}

static void sleep_drop(struct ac_future *f)
{
    struct ac_sleep *s = (struct ac_sleep *)f;
    sleep_cancel(s);
    ac_waker_drop(&s->entry.waker);
}

static const struct ac_future_vtable sleep_vt = {sleep_poll, sleep_drop};

void ac_sleep_init_deadline(struct ac_sleep *s, uint64_t deadline_ms)
{
    memset(s, 0, sizeof(*s));
    s->base.vt = &sleep_vt;
    s->deadline = deadline_ms;
    s->entry.waker = AC_WAKER_NONE;
}

void ac_sleep_init(struct ac_sleep *s, uint64_t ms)
{
    uint64_t now = ac_clock_now_ms();
    ac_sleep_init_deadline(s, ms > UINT64_MAX - now ? UINT64_MAX : now + ms);
}

void ac_sleep_reset(struct ac_sleep *s, uint64_t deadline_ms)
{
    struct ac_worker *w = s->entry.worker != NULL ? s->entry.worker : ac_worker_current();
    sleep_cancel(s);
    s->deadline = deadline_ms;
    s->entry.fired = false;
    /* Still waited on (a waker is held): move it in the wheel now, so it fires
     * even if the owner does not poll it before the new deadline. */
    if (w != NULL && ac_waker_is_set(&s->entry.waker))
        ac__wheel_insert(&w->wheel, &s->entry, deadline_ms, w);
}

bool ac_sleep_elapsed(const struct ac_sleep *s)
{
    return s->entry.fired || s->deadline <= worker_clock(ac_worker_current());
}

unsigned ac_timer_count(struct ac_worker *w) { return w->wheel.count; }

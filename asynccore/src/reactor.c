/* asynccore: the reactor's waker map.
 *
 * A slab of registrations (growable array + free list). The OS token is
 * index | generation << 32; the generation is bumped at deregistration, so an
 * event still queued for a freed (or freed and reused) slot no longer matches
 * and is dropped. Freed slots rejoin the free list only after the batch of
 * events being dispatched (HAProxy ev_epoll.c, libuv invalidate_fd).
 *
 * Readiness is kept per direction with a tick bumped by every event, so that
 * clear_ready() after EAGAIN cannot erase an edge that arrived after the
 * readiness was observed (tokio scheduled_io.rs).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#ifdef AC__HAVE_IO_URING
#include "uring_op.h"
#endif

#define NO_SLOT UINT32_MAX

static const uint32_t dir_mask[2] = {
    AC_READABLE | AC_READ_CLOSED | AC_ERROR,
    AC_WRITABLE | AC_WRITE_CLOSED | AC_ERROR,
};

/* The bits clear_ready() may clear: closed and error states are final. */
static const uint32_t dir_clearable[2] = {AC_READABLE, AC_WRITABLE};

/* Generations are compared in 31 bits: a token never has bit 63 set, the
 * io_uring backend's tag for its completion operations (uring_op.h). */
#define GEN_MASK 0x7fffffffu

static uint64_t token(uint32_t index, uint32_t generation)
{
    return (uint64_t)index | (uint64_t)(generation & GEN_MASK) << 32;
}

int ac__reactor_init(struct ac__reactor *r)
{
    *r = (struct ac__reactor){.free_head = NO_SLOT};
    return 0;
}

void ac__reactor_destroy(struct ac__reactor *r)
{
    for (uint32_t i = 0; i < r->len; i++) {
        ac_waker_drop(&r->slots[i].waker[0]);
        ac_waker_drop(&r->slots[i].waker[1]);
    }
    free(r->slots);
    free(r->to_free);
    *r = (struct ac__reactor){.free_head = NO_SLOT};
}

static int slot_alloc(struct ac__reactor *r, uint32_t *index)
{
    if (r->free_head != NO_SLOT) {
        *index = r->free_head;
        r->free_head = r->slots[*index].next_free;
        return 0;
    }
    if (r->len == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 64;
        if (cap >= NO_SLOT)
            return -ENOMEM;
        struct ac__reg *slots = realloc(r->slots, cap * sizeof(*slots));
        if (slots == NULL)
            return -ENOMEM;
        r->slots = slots;
        r->cap = cap;
    }
    *index = r->len++;
    r->slots[*index] = (struct ac__reg){.generation = 1};
    return 0;
}

static void slot_free_now(struct ac__reactor *r, uint32_t index)
{
    r->slots[index].next_free = r->free_head;
    r->free_head = index;
}

/* Retires a slot: stale events no longer match; reuse waits for the batch end. */
static int slot_retire(struct ac__reactor *r, uint32_t index)
{
    struct ac__reg *reg = &r->slots[index];
    if (r->nto_free == r->to_free_cap) {
        uint32_t cap = r->to_free_cap ? r->to_free_cap * 2 : 16;
        uint32_t *tf = realloc(r->to_free, cap * sizeof(*tf));
        if (tf == NULL) {
            /* Cannot defer: the bumped generation alone guards this slot. */
            reg->generation++;
            reg->live = false;
            slot_free_now(r, index);
            return -ENOMEM;
        }
        r->to_free = tf;
        r->to_free_cap = cap;
    }
    reg->generation++;
    reg->live = false;
    r->to_free[r->nto_free++] = index;
    return 0;
}

/* The registration behind io, or NULL if io is not (or no longer) registered:
 * callers then report an error instead of touching another fd's slot. */
static struct ac__reg *reg_of(const struct ac_io *io)
{
    struct ac_worker *w = io->worker;
    if (w == NULL)
        return NULL;
    assert(w->magic == AC__WORKER_MAGIC);
    if (io->index >= w->reactor.len)
        return NULL;
    struct ac__reg *reg = &w->reactor.slots[io->index];
    return reg->live && reg->generation == io->generation ? reg : NULL;
}

int ac_io_register(struct ac_worker *w, int fd, unsigned flags, struct ac_io *io)
{
    assert(w != NULL && w->magic == AC__WORKER_MAGIC);
    struct ac__reactor *r = &w->reactor;
    uint32_t index;
    int rc = slot_alloc(r, &index);
    if (rc < 0)
        return rc;
    struct ac__reg *reg = &r->slots[index];
    reg->fd = fd;
    reg->unpolled = false;
    reg->ready = 0;
    reg->tick = 0;
    reg->waker[0] = reg->waker[1] = AC_WAKER_NONE;
    rc = w->be->add(w->poller, fd, token(index, reg->generation), flags);
    if (rc < 0) {
        reg->generation++;
        slot_free_now(r, index);
        return rc;
    }
    reg->live = true;
    r->live++;
    *io = (struct ac_io){.worker = w, .index = index, .generation = reg->generation, .fd = fd};
    return 0;
}

static void deregister(struct ac_io *io, bool tell_poller)
{
    if (io == NULL || io->worker == NULL)
        return;
    struct ac_worker *w = io->worker;
    struct ac__reg *reg = reg_of(io);
    io->worker = NULL;
    if (reg == NULL)
        return;
    /* The fd may already be closed (then the kernel dropped it): ignore. */
    if (tell_poller)
        (void)w->be->del(w->poller, reg->fd);
    ac_waker_drop(&reg->waker[AC_DIR_READ]);
    ac_waker_drop(&reg->waker[AC_DIR_WRITE]);
    (void)slot_retire(&w->reactor, io->index);
    w->reactor.live--;
}

/* A queuing backend (io_uring) holds the file until its removal is
 * submitted: outside the worker's loop, submit now so that the caller's
 * close(2) closes. In the loop, the turn's one enter carries it. */
static void flush_outside_loop(struct ac_worker *w)
{
    if (w->be->flush != NULL && ac_worker_current() != w)
        (void)w->be->flush(w->poller);
}

void ac_io_deregister(struct ac_io *io)
{
    struct ac_worker *w = io != NULL ? io->worker : NULL;
    deregister(io, true);
    if (w != NULL)
        flush_outside_loop(w);
}

/* epoll and kqueue drop a descriptor's registration when it is closed (we
 * hold the only reference to a connection's socket): no EPOLL_CTL_DEL system
 * call first. poll(2) keeps its own table and io_uring's poll request holds
 * the file: they must be told. */
void ac_io_close(struct ac_io *io, int fd)
{
    struct ac_worker *w = io->worker;
    struct ac__reg *reg = reg_of(io);
    if (reg != NULL && reg->fd == fd && w->be->close != NULL) {
        /* io_uring: removal and close queued together, no system call. */
        deregister(io, false);
        if (w->be->close(w->poller, fd) == 0) {
            flush_outside_loop(w);
            return;
        }
        if (fd >= 0)
            close(fd);
        return;
    }
    deregister(io, w == NULL || !w->be->close_drops);
    if (fd >= 0)
        close(fd);
}

/* A registration whose poll a ring-mode copy ended gets it back for a
 * task that waits for readiness. */
static void repoll(struct ac_worker *w, struct ac__reg *reg)
{
#ifdef AC__HAVE_IO_URING
    if (ac__io_uring_repoll(w->poller, reg->fd) == 0)
        reg->unpolled = false;
#else
    (void)w;
    reg->unpolled = false;
#endif
}

ac_poll_t ac_io_poll_ready(struct ac_io *io, struct ac_context *cx, enum ac_direction dir,
                           struct ac_ready_event *ev)
{
    struct ac__reg *reg = reg_of(io);
    if (reg == NULL) {
        *ev = (struct ac_ready_event){AC_ERROR, 0}; /* not registered */
        return AC_READY;
    }
    uint32_t mask = dir_mask[dir];
    if ((reg->ready & mask) == 0) {
        ac_waker_register(&reg->waker[dir], cx->waker);
        if (reg->unpolled)
            repoll(io->worker, reg);
        /* Re-check after storing the waker: readiness that raced in must not
         * be missed (only dispatch sets it, but keep the contract local). */
        if ((reg->ready & mask) == 0)
            return AC_PENDING;
    }
    ev->ready = reg->ready & mask;
    ev->tick = reg->tick;
    return AC_READY;
}

void ac_io_clear_ready(struct ac_io *io, enum ac_direction dir, struct ac_ready_event ev)
{
    struct ac__reg *reg = reg_of(io);
    if (reg == NULL || reg->tick != ev.tick)
        return; /* a newer event arrived: the readiness it brought stays */
    reg->ready = (uint16_t)(reg->ready & ~(ev.ready & dir_clearable[dir]));
    unsigned want = 0;
    if ((reg->ready & dir_mask[AC_DIR_READ]) == 0)
        want |= AC__WANT_READ;
    if ((reg->ready & dir_mask[AC_DIR_WRITE]) == 0)
        want |= AC__WANT_WRITE;
    struct ac_worker *w = io->worker;
    if (w->be->rearm != NULL)
        (void)w->be->rearm(w->poller, reg->fd, token(io->index, reg->generation), want);
}

void ac__reactor_dispatch(struct ac_worker *w, const struct ac__poll_event *ev, int n)
{
    struct ac__reactor *r = &w->reactor;
    for (int i = 0; i < n; i++) {
        uint32_t index = (uint32_t)ev[i].key;
        uint32_t generation = (uint32_t)(ev[i].key >> 32);
        if (index >= r->len)
            continue;
        struct ac__reg *reg = &r->slots[index];
        if (!reg->live || (reg->generation & GEN_MASK) != generation)
            continue; /* stale: the slot was deregistered (and maybe reused) */
        reg->ready = (uint16_t)(reg->ready | ev[i].ready);
        reg->tick++;
        if (ev[i].ready & dir_mask[AC_DIR_READ])
            ac_waker_wake(&reg->waker[AC_DIR_READ]);
        /* Re-index: a waker may deregister or register (slab realloc). */
        reg = &r->slots[index];
        if (reg->live && (reg->generation & GEN_MASK) == generation &&
            (ev[i].ready & dir_mask[AC_DIR_WRITE]))
            ac_waker_wake(&reg->waker[AC_DIR_WRITE]);
    }
    for (uint32_t i = 0; i < r->nto_free; i++)
        slot_free_now(r, r->to_free[i]);
    r->nto_free = 0;
}

unsigned ac_reactor_registrations(struct ac_worker *w)
{
    assert(w != NULL && w->magic == AC__WORKER_MAGIC);
    return w->reactor.live;
}

struct ac__uring *ac__worker_uring(struct ac_worker *w)
{
#ifdef AC__HAVE_IO_URING
    if (w != NULL && w->be->id == AC_BACKEND_IO_URING)
        return ac__io_uring_ops(w->poller);
#else
    (void)w;
#endif
    return NULL;
}

void ac__io_unpoll(struct ac_io *io)
{
#ifdef AC__HAVE_IO_URING
    struct ac__reg *reg = reg_of(io);
    if (reg == NULL || reg->unpolled || io->worker->be->id != AC_BACKEND_IO_URING ||
        ac_waker_is_set(&reg->waker[AC_DIR_READ]) || ac_waker_is_set(&reg->waker[AC_DIR_WRITE]))
        return; /* someone waits for readiness: the poll stays */
    if (ac__io_uring_unpoll(io->worker->poller, reg->fd) == 0)
        reg->unpolled = true;
#else
    (void)io;
#endif
}

unsigned ac_reactor_operations(struct ac_worker *w)
{
    assert(w != NULL && w->magic == AC__WORKER_MAGIC);
#ifdef AC__HAVE_IO_URING
    struct ac__uring *u = ac__worker_uring(w);
    if (u != NULL)
        return ac__uring_slots(u);
#endif
    return 0;
}

bool ac__io_edge(const struct ac_io *io) { return io->worker != NULL && io->worker->be->edge; }

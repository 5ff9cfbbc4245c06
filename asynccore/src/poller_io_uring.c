/* asynccore: the io_uring poller (Linux, liburing): readiness through
 * multishot IORING_OP_POLL_ADD, submitted in batches and reaped once per loop
 * turn.
 *
 * add() and del() only queue submission entries (no system call); wait()
 * submits everything queued and waits for completions in one io_uring_enter,
 * and makes none at all when nothing is queued, the timeout is 0 and no
 * completion is pending (the run queue was busy). A multishot poll posts a
 * completion for every wake-up of the socket's wait queue, carrying the
 * current mask: the same edge semantics as EPOLLET, so the reactor's
 * short-I/O rule holds. A multishot poll the kernel ends (no IORING_CQE_F_MORE,
 * e.g. after a completion-queue overflow) is submitted again.
 *
 * Unlike epoll, a poll request holds its own reference to the file: closing
 * the descriptor does not end it, so the reactor must del() before closing
 * (close_drops is false) and the socket is released when the removal is
 * submitted, at the end of the loop turn.
 *
 * Cross-thread wake-up: an eventfd under a multishot poll, read when reported.
 * Needs Linux 5.19 (COOP_TASKRUN, multishot polls, waits with a timeout
 * argument); an older kernel is refused like a disabled io_uring (ENOSYS).
 */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "poller.h"
#include "uring_op.h"

#define WAKE_KEY AC__URING_WAKE
#define IGNORE_KEY AC__URING_IGNORE /* cancels and closes: their completions mean nothing */
#define SQ_ENTRIES 512u
#define CQ_ENTRIES 4096u
#define POLL_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP)
/* In key_of_fd: the descriptor's poll was ended by unpoll() (the reactor's
 * tokens never have this bit: reactor.c). */
#define UNPOLLED AC__UOP_TAG

/* The key watched on each descriptor (0: none) and the descriptor under each
 * reactor slot (key's low 32 bits): del() is by descriptor, removal and
 * re-arming by key. */
struct ac__poller {
    struct io_uring ring;
    int wakefd;
    unsigned sqe_flags_ignore; /* IOSQE_CQE_SKIP_SUCCESS where supported */
    uint64_t *key_of_fd;
    size_t nfd;
    int *fd_of_slot;
    size_t nslot;
    struct ac__uring *ops; /* completion operations (uring_op.h); NULL: readiness only */
};

static struct io_uring_sqe *sqe_get(struct ac__poller *p)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
    if (sqe == NULL) {
        /* The queue is full: submit it now (rare: SQ_ENTRIES per turn). */
        (void)io_uring_submit(&p->ring);
        sqe = io_uring_get_sqe(&p->ring);
    }
    return sqe;
}

static int arm(struct ac__poller *p, int fd, unsigned events, uint64_t key)
{
    struct io_uring_sqe *sqe = sqe_get(p);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, key);
    return 0;
}

static int setup(struct io_uring *ring)
{
    struct io_uring_params par = {
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                 IORING_SETUP_TASKRUN_FLAG,
        .cq_entries = CQ_ENTRIES,
    };
    int rc = io_uring_queue_init_params(SQ_ENTRIES, ring, &par);
    if (rc == -EINVAL)
        return -ENOSYS; /* a kernel before 5.19 (COOP_TASKRUN): treated as refused */
    if (rc < 0)
        return rc;
    if (!(par.features & IORING_FEAT_NODROP) || !(par.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(ring);
        return -ENOSYS;
    }
    return (par.features & IORING_FEAT_CQE_SKIP) ? 1 : 0;
}

int ac__io_uring_new(struct ac__poller **out)
{
    struct ac__poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    int rc = setup(&p->ring);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->sqe_flags_ignore = rc ? IOSQE_CQE_SKIP_SUCCESS : 0;
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0) {
        rc = -errno;
        io_uring_queue_exit(&p->ring);
        free(p);
        return rc;
    }
    (void)arm(p, p->wakefd, EPOLLIN, WAKE_KEY); /* the queue is empty: cannot fail */
    /* Without a buffer ring (a kernel before 5.19, memory) the backend
     * still serves readiness; copies then use their readiness modes. */
    if (ac__uring_new(&p->ring, &p->ops) < 0)
        p->ops = NULL;
    *out = p;
    return 0;
}

void ac__io_uring_free(struct ac__poller *p)
{
    if (p == NULL)
        return;
    /* Closes still queued (tasks dropped at runtime teardown) are submitted,
     * or their descriptors would stay open. Then closing the ring cancels
     * every request still in the kernel; polls own no user memory, so
     * nothing outlives this. */
    (void)ac__io_uring_flush(p);
    /* Operations still in the kernel own memory: wait for them all. */
    ac__uring_free(p->ops);
    io_uring_queue_exit(&p->ring);
    close(p->wakefd);
    free(p->key_of_fd);
    free(p->fd_of_slot);
    free(p);
}

/* Grows a zero-filled array of `size`-byte entries to hold index i. */
static int reserve(void **arr, size_t *n, size_t size, size_t i)
{
    if (i < *n)
        return 0;
    size_t cap = *n ? *n : 64;
    while (cap <= i)
        cap *= 2;
    unsigned char *a = realloc(*arr, cap * size);
    if (a == NULL)
        return -ENOMEM;
    memset(a + *n * size, 0, (cap - *n) * size);
    *arr = a;
    *n = cap;
    return 0;
}

int ac__io_uring_add(struct ac__poller *p, int fd, uint64_t key, unsigned flags)
{
    /* Several workers polling one listener (AC_REG_EXCLUSIVE) are all woken
     * per connection: a multishot poll takes no EPOLLEXCLUSIVE; the losers'
     * accept sees EAGAIN. */
    (void)flags;
    if (fd < 0)
        return -EBADF;
    uint32_t slot = (uint32_t)key;
    int rc = reserve((void **)&p->key_of_fd, &p->nfd, sizeof(*p->key_of_fd), (size_t)fd);
    if (rc == 0)
        rc = reserve((void **)&p->fd_of_slot, &p->nslot, sizeof(*p->fd_of_slot), slot);
    if (rc < 0)
        return rc;
    if (p->key_of_fd[fd] != 0)
        return -EEXIST;
    if ((rc = arm(p, fd, POLL_EVENTS, key)) < 0)
        return rc;
    p->key_of_fd[fd] = key;
    p->fd_of_slot[slot] = fd;
    return 0;
}

int ac__io_uring_del(struct ac__poller *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->nfd || p->key_of_fd[fd] == 0)
        return -ENOENT;
    struct io_uring_sqe *sqe = sqe_get(p);
    if (sqe == NULL)
        return -EBUSY;
    /* ASYNC_CANCEL, not POLL_REMOVE: a poll whose completion is under way
     * (armed in this same batch and already ready) makes POLL_REMOVE fail
     * with EALREADY and stay armed; a cancel marks it and it ends. */
    io_uring_prep_cancel64(sqe, p->key_of_fd[fd] & ~UNPOLLED, 0);
    io_uring_sqe_set_data64(sqe, IGNORE_KEY);
    io_uring_sqe_set_flags(sqe, p->sqe_flags_ignore);
    p->key_of_fd[fd] = 0;
    return 0;
}

int ac__io_uring_close(struct ac__poller *p, int fd)
{
    int rc = ac__io_uring_del(p, fd);
    if (rc < 0)
        return rc;
    /* Not linked to the removal: a poll the kernel already ended makes the
     * removal fail, and the close must happen anyway. */
    struct io_uring_sqe *sqe = sqe_get(p);
    if (sqe == NULL) {
        (void)io_uring_submit(&p->ring); /* the removal goes now: close(2) below */
        return -EBUSY;
    }
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, IGNORE_KEY);
    io_uring_sqe_set_flags(sqe, p->sqe_flags_ignore);
    return 0;
}

int ac__io_uring_flush(struct ac__poller *p)
{
    if (io_uring_sq_ready(&p->ring) == 0)
        return 0; /* nothing queued: no system call */
    /* With the completions' task work run too: a cancelled poll drops its
     * file reference there, so the socket is closed when this returns. */
    int rc = io_uring_submit_and_get_events(&p->ring);
    return rc < 0 ? rc : 0;
}

struct ac__uring *ac__io_uring_ops(struct ac__poller *p) { return p->ops; }

int ac__io_uring_unpoll(struct ac__poller *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->nfd || p->key_of_fd[fd] == 0)
        return -ENOENT;
    if (p->key_of_fd[fd] & UNPOLLED)
        return 0;
    struct io_uring_sqe *sqe = sqe_get(p);
    if (sqe == NULL)
        return -EBUSY;
    /* The registration stays (del and close still find it, by the key
     * with its tag bit cleared); its poll ends, a completion still under
     * way no longer matches a live key, and the later cancel by del()
     * finds nothing, which is harmless. */
    io_uring_prep_cancel64(sqe, p->key_of_fd[fd], 0);
    io_uring_sqe_set_data64(sqe, IGNORE_KEY);
    io_uring_sqe_set_flags(sqe, p->sqe_flags_ignore);
    p->key_of_fd[fd] |= UNPOLLED;
    return 0;
}

int ac__io_uring_repoll(struct ac__poller *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->nfd || !(p->key_of_fd[fd] & UNPOLLED))
        return 0;
    uint64_t key = p->key_of_fd[fd] & ~UNPOLLED;
    /* Queued after unpoll()'s cancel, which the kernel takes first (in
     * order, both inline): the cancel ends the old poll, not this one. A
     * ready socket reports at once. */
    int rc = arm(p, fd, POLL_EVENTS, key);
    if (rc == 0)
        p->key_of_fd[fd] = key;
    return rc;
}

int ac__io_uring_rearm(struct ac__poller *p, int fd, uint64_t key, unsigned want)
{
    (void)p, (void)fd, (void)key, (void)want; /* multishot polls are edge-like */
    return 0;
}

static uint32_t ready_of(int res)
{
    if (res < 0)
        return AC_ERROR;
    uint32_t ev = (uint32_t)res, r = 0;
    if (ev & EPOLLIN)
        r |= AC_READABLE;
    if (ev & EPOLLOUT)
        r |= AC_WRITABLE;
    if (ev & EPOLLRDHUP)
        r |= AC_READ_CLOSED | AC_READABLE;
    if (ev & EPOLLHUP)
        r |= AC_READ_CLOSED | AC_WRITE_CLOSED;
    if (ev & EPOLLERR)
        r |= AC_ERROR;
    return r;
}

/* Whether key still watches a descriptor (not removed, not reused). */
static bool live_key(const struct ac__poller *p, uint64_t key, int *fd)
{
    uint32_t slot = (uint32_t)key;
    if (slot >= p->nslot)
        return false;
    *fd = p->fd_of_slot[slot];
    return *fd >= 0 && (size_t)*fd < p->nfd && p->key_of_fd[*fd] == key;
}

/* One completion: 1 if it became an event in *out, else 0. */
static int reap_one(struct ac__poller *p, const struct io_uring_cqe *cqe, struct ac__poll_event *out)
{
    uint64_t key = io_uring_cqe_get_data64(cqe);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (key == IGNORE_KEY)
        return 0;
    if (key != WAKE_KEY && ac__uop_tagged(key)) {
        ac__uring_complete(p->ops, key, cqe);
        return 0;
    }
    if (key == WAKE_KEY) {
        uint64_t v;
        (void)!read(p->wakefd, &v, sizeof(v)); /* EAGAIN: already taken */
        if (!more)
            (void)arm(p, p->wakefd, EPOLLIN, WAKE_KEY);
        return 0;
    }
    if (cqe->res == -ECANCELED)
        return 0; /* removed by del() */
    int fd;
    if (!live_key(p, key, &fd))
        return 0;
    /* The kernel ended a healthy poll (overflow): watch again. A failed one
     * (bad descriptor) is reported once and left ended. */
    if (!more && cqe->res >= 0)
        (void)arm(p, fd, POLL_EVENTS, key);
    out->key = key;
    out->ready = ready_of(cqe->res);
    return out->ready != 0;
}

/* Submits what is queued and waits for a first completion, up to timeout_ms. */
static int enter(struct ac__poller *p, int timeout_ms)
{
    struct io_uring_cqe *cqe;
    int rc;
    if (timeout_ms == 0) {
        /* A busy turn: no system call unless there is something to submit
         * or the kernel flagged completions to flush (liburing checks). */
        if (io_uring_sq_ready(&p->ring) > 0)
            rc = io_uring_submit(&p->ring);
        else
            rc = io_uring_peek_cqe(&p->ring, &cqe);
    } else if (timeout_ms < 0) {
        rc = io_uring_submit_and_wait_timeout(&p->ring, &cqe, 1, NULL, NULL);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&p->ring, &cqe, 1, &ts, NULL);
    }
    if (rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
        return 0;
    return rc < 0 ? rc : 0;
}

int ac__io_uring_wait(struct ac__poller *p, struct ac__poll_event *out, int max, int timeout_ms)
{
    int rc = enter(p, timeout_ms);
    if (rc < 0)
        return rc;
    int k = 0;
    unsigned head, seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&p->ring, head, cqe)
    {
        if (k == max)
            break; /* the rest stays in the ring for the next turn */
        seen++;
        k += reap_one(p, cqe, &out[k]);
    }
    io_uring_cq_advance(&p->ring, seen);
    if (p->ops != NULL)
        ac__uring_after_reap(p->ops);
    return k;
}

int ac__io_uring_wake(struct ac__poller *p)
{
    uint64_t one = 1;
    if (write(p->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

/* asynccore: completion operations on a worker's io_uring (uring_op.h has
 * the ownership rule): operation slots, the provided buffer ring, and the
 * completions that end them.
 */
#include "uring_op.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "poller.h"

#define BGID 0
/* Ring entries: buffers waiting for data. Each one a receive fills is
 * replaced at once, so this bounds only how many receives one kernel pass
 * can complete; a small ring keeps the pages it touches few. */
#define RING_ENTRIES 64u
#define BUF_CACHE_MAX 32u
#define SLOT_CACHE_MAX 1024u
/* Teardown waits at most this long for the kernel's last completions. */
#define DRAIN_ROUNDS 200
#define DRAIN_WAIT_NS 10000000LL

struct ac__uring {
    struct io_uring *ring;
    struct io_uring_buf_ring *br;
    unsigned char *inring[RING_ENTRIES]; /* the buffer under each buffer id; NULL: missing */
    uint16_t missing[RING_ENTRIES];      /* ids whose refill failed */
    unsigned nmissing;
    unsigned char *cache; /* free buffers, linked through their first bytes */
    unsigned ncache;
    struct ac__uop *free_slots;
    unsigned nfree_slots;
    /* Receives the ring could not serve (-ENOBUFS), armed again after the
     * reap, at most a ring's worth per turn: a kernel pass serves no more
     * than that, the rest would only fail again. NULL: released meanwhile. */
    struct ac__uop **starved;
    unsigned nstarved, starved_cap;
    unsigned inflight, slots;
    unsigned skip_flags; /* IOSQE_CQE_SKIP_SUCCESS where the kernel has it */
    /* Bytes one arming of a multishot receive may take (the kernel's
     * mshot_total_len, Linux 6.17): it retries up to 32 times per pass
     * while data keeps coming, which would fill 32 buffers before a pause
     * could act. 0 where the kernel refused it (EINVAL). */
    uint32_t arm_limit;
};

/* A receive's flags. */
enum {
    F_PAUSED = 1u << 0,  /* cancelled for flow control: armed again once drained */
    F_STOPPED = 1u << 1, /* ac__uop_recv_stop: never armed again */
    F_EOF = 1u << 2,
    F_ERR = 1u << 3, /* ended by op->res */
    F_STARVED = 1u << 4, /* ended by -ENOBUFS: on the worker's starved list */
};

/* Filled buffers in arrival order: e[head .. head+n). */
struct ac__uop_queue {
    uint32_t head, n, cap;
    struct {
        unsigned char *buf;
        uint32_t len;
    } e[];
};

static uint64_t tag(const struct ac__uop *op) { return (uint64_t)(uintptr_t)op | AC__UOP_TAG; }
static struct ac__uop *untag(uint64_t data) { return (struct ac__uop *)(uintptr_t)(data & ~AC__UOP_TAG); }

static struct io_uring_sqe *sqe_get(struct ac__uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(u->ring);
    if (sqe == NULL) {
        (void)io_uring_submit(u->ring); /* the queue is full: submit it now */
        sqe = io_uring_get_sqe(u->ring);
    }
    return sqe;
}

/* ---- buffers ---- */

static unsigned char *buf_get(struct ac__uring *u)
{
    unsigned char *b = u->cache;
    if (b != NULL) {
        memcpy(&u->cache, b, sizeof(u->cache));
        u->ncache--;
        return b;
    }
    return malloc(AC__URING_BUF_SIZE);
}

static void ring_add(struct ac__uring *u, unsigned char *b, uint16_t bid)
{
    u->inring[bid] = b;
    io_uring_buf_ring_add(u->br, b, AC__URING_BUF_SIZE, bid, io_uring_buf_ring_mask(RING_ENTRIES), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

void ac__uring_buf_put(struct ac__uring *u, unsigned char *b)
{
    if (b == NULL)
        return;
    if (u->nmissing > 0) {
        ring_add(u, b, u->missing[--u->nmissing]);
        return;
    }
    if (u->ncache < BUF_CACHE_MAX) {
        memcpy(b, &u->cache, sizeof(u->cache));
        u->cache = b;
        u->ncache++;
        return;
    }
    free(b);
}

/* The buffer a receive completion names leaves the ring; its entry is
 * refilled at once. */
static unsigned char *ring_take(struct ac__uring *u, unsigned bid)
{
    if (bid >= RING_ENTRIES || u->inring[bid] == NULL)
        return NULL; /* not one of ours: cannot happen */
    unsigned char *b = u->inring[bid];
    u->inring[bid] = NULL;
    unsigned char *fresh = buf_get(u);
    if (fresh != NULL)
        ring_add(u, fresh, (uint16_t)bid);
    else
        u->missing[u->nmissing++] = (uint16_t)bid;
    return b;
}

/* ---- slots ---- */

static struct ac__uop *slot_get(struct ac__uring *u)
{
    struct ac__uop *op = u->free_slots;
    if (op != NULL) {
        u->free_slots = op->next;
        u->nfree_slots--;
    } else if ((op = malloc(sizeof(*op))) == NULL) {
        return NULL;
    }
    *op = (struct ac__uop){.waker = AC_WAKER_NONE, .u = u};
    u->slots++;
    return op;
}

static void queue_free(struct ac__uring *u, struct ac__uop *op);

static void slot_put(struct ac__uring *u, struct ac__uop *op)
{
    ac_waker_drop(&op->waker);
    if (op->kind == AC__UOP_RECV)
        queue_free(u, op);
    else
        ac__uring_buf_put(u, op->buf);
    op->buf = NULL;
    op->state = 0;
    u->slots--;
    if (u->nfree_slots < SLOT_CACHE_MAX) {
        op->next = u->free_slots;
        u->free_slots = op;
        u->nfree_slots++;
        return;
    }
    free(op);
}

/* ---- submission ---- */

/* Arms op's multishot receive (it counts as in the kernel until its final
 * completion). */
static int arm_recv(struct ac__uring *u, struct ac__uop *op)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_recv(sqe, op->fd, NULL, 0, 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->file_index = u->arm_limit; /* the kernel's sqe->optlen for a receive */
    io_uring_sqe_set_flags(sqe, IOSQE_BUFFER_SELECT);
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, tag(op));
    op->state = AC__UOP_BUSY;
    op->flags &= (uint8_t)~F_PAUSED;
    u->inflight++;
    return 0;
}

static void cancel(struct ac__uring *u, struct ac__uop *op)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return; /* no entry even after a submit: it ends by itself, or at teardown */
    io_uring_prep_cancel64(sqe, tag(op), 0);
    io_uring_sqe_set_data64(sqe, AC__URING_IGNORE);
    io_uring_sqe_set_flags(sqe, u->skip_flags);
}

/* ---- a receive's queue: the first buffer in the slot, the rest (rare:
 * they arrive while a send is out) in an array freed once empty ---- */

static int queue_push(struct ac__uop *op, unsigned char *b, uint32_t len)
{
    if (op->buf == NULL) {
        op->buf = b;
        op->blen = len;
        return 0;
    }
    struct ac__uop_queue *q = op->q;
    if (q == NULL || q->head + q->n == q->cap) {
        if (q != NULL && q->head > 0) {
            memmove(q->e, q->e + q->head, q->n * sizeof(q->e[0]));
            q->head = 0;
        } else {
            uint32_t cap = q != NULL ? q->cap * 2 : 4;
            struct ac__uop_queue *nq = realloc(q, sizeof(*q) + cap * sizeof(q->e[0]));
            if (nq == NULL)
                return -ENOMEM;
            if (q == NULL)
                nq->head = nq->n = 0;
            nq->cap = cap;
            op->q = q = nq;
        }
    }
    q->e[q->head + q->n].buf = b;
    q->e[q->head + q->n].len = len;
    q->n++;
    return 0;
}

/* Takes the first buffer (there is one) and moves the next one up. */
static void queue_pop(struct ac__uop *op, unsigned char **b, uint32_t *len)
{
    *b = op->buf;
    *len = op->blen;
    op->buf = NULL;
    struct ac__uop_queue *q = op->q;
    if (q == NULL)
        return;
    op->buf = q->e[q->head].buf;
    op->blen = q->e[q->head].len;
    q->head++;
    if (--q->n == 0) {
        free(q);
        op->q = NULL;
    }
}

static uint32_t queued(const struct ac__uop *op)
{
    return (op->buf != NULL) + (op->q != NULL ? op->q->n : 0);
}

unsigned ac__uop_queued(const struct ac__uop *op) { return queued(op); }

static void queue_free(struct ac__uring *u, struct ac__uop *op)
{
    ac__uring_buf_put(u, op->buf);
    op->buf = NULL;
    struct ac__uop_queue *q = op->q;
    if (q == NULL)
        return;
    for (uint32_t i = 0; i < q->n; i++)
        ac__uring_buf_put(u, q->e[q->head + i].buf);
    free(q);
    op->q = NULL;
}

int ac__uop_recv(struct ac__uring *u, int fd, struct ac__uop **out)
{
    struct ac__uop *op = slot_get(u);
    if (op == NULL)
        return -ENOMEM;
    op->kind = AC__UOP_RECV;
    op->fd = fd;
    int rc = arm_recv(u, op);
    if (rc < 0) {
        slot_put(u, op);
        return rc;
    }
    *out = op;
    return 0;
}

int ac__uop_recv_take(struct ac__uop *op, unsigned char **buf, uint32_t *len)
{
    if (op->buf != NULL) {
        queue_pop(op, buf, len);
        return 1;
    }
    if (op->flags & F_EOF)
        return 0;
    if (op->flags & F_ERR)
        return op->res;
    if (op->flags & F_STOPPED)
        return op->state == AC__UOP_BUSY ? -EAGAIN : -ECANCELED;
    if (op->state == AC__UOP_BUSY || (op->flags & F_STARVED))
        return -EAGAIN; /* in the kernel, or armed again after the reap */
    /* Paused and drained: the peer may send again. */
    int rc = arm_recv(op->u, op);
    return rc < 0 ? rc : -EAGAIN;
}

void ac__uop_recv_stop(struct ac__uop *op)
{
    if (op->flags & F_STOPPED)
        return;
    op->flags |= F_STOPPED;
    if (op->state == AC__UOP_BUSY && !(op->flags & F_PAUSED))
        cancel(op->u, op);
}

static int submit_send(struct ac__uring *u, struct ac__uop *op)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return -EBUSY;
    /* MSG_WAITALL: the kernel itself goes on after a partial send on a
     * stream socket, so the completion normally reports all of it. */
    io_uring_prep_send(sqe, op->fd, op->buf + op->off, op->len - op->off,
                       MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, tag(op));
    return 0;
}

int ac__uop_send(struct ac__uring *u, int fd, unsigned char *buf, uint32_t len, struct ac__uop **out)
{
    struct ac__uop *op = slot_get(u);
    if (op == NULL) {
        ac__uring_buf_put(u, buf);
        return -ENOMEM;
    }
    op->kind = AC__UOP_SEND;
    op->fd = fd;
    op->buf = buf;
    op->len = len;
    int rc = submit_send(u, op);
    if (rc < 0) {
        slot_put(u, op); /* gives buf back */
        return rc;
    }
    op->state = AC__UOP_BUSY;
    u->inflight++;
    *out = op;
    return 0;
}

void ac__uop_release(struct ac__uop *op)
{
    if (op == NULL)
        return;
    struct ac__uring *u = op->u;
    if (op->flags & F_STARVED) {
        for (unsigned i = 0; i < u->nstarved; i++)
            if (u->starved[i] == op)
                u->starved[i] = NULL;
    }
    if (op->state != AC__UOP_BUSY) {
        slot_put(u, op);
        return;
    }
    /* In the kernel: it may still fill a ring buffer or read op->buf. The
     * slot becomes an orphan, freed by its final completion, which the
     * cancel hastens; what a receive already queued goes back now. */
    ac_waker_drop(&op->waker);
    if (op->kind == AC__UOP_RECV)
        queue_free(u, op);
    op->state = AC__UOP_ORPHAN;
    cancel(u, op);
}

/* ---- completions ---- */

/* Arms op again now, or after the reap where the ring ran dry. */
static int starve(struct ac__uring *u, struct ac__uop *op, bool dry)
{
    if (!dry)
        return arm_recv(u, op);
    if (u->nstarved == u->starved_cap) {
        unsigned cap = u->starved_cap ? u->starved_cap * 2 : 64;
        struct ac__uop **a = realloc(u->starved, cap * sizeof(*a));
        if (a == NULL)
            return arm_recv(u, op);
        u->starved = a;
        u->starved_cap = cap;
    }
    u->starved[u->nstarved++] = op;
    op->flags |= F_STARVED;
    return 0;
}

void ac__uring_after_reap(struct ac__uring *u)
{
    if (u->nstarved == 0)
        return;
    unsigned armed = 0, i = 0;
    for (; i < u->nstarved && armed < RING_ENTRIES; i++) {
        struct ac__uop *op = u->starved[i];
        if (op == NULL)
            continue;
        op->flags &= (uint8_t)~F_STARVED;
        if (op->flags & F_STOPPED) {
            ac_waker_wake(&op->waker); /* over: its take says so */
            continue;
        }
        if (arm_recv(u, op) < 0) {
            op->flags |= F_ERR;
            op->res = -EBUSY;
            ac_waker_wake(&op->waker);
        }
        armed++;
    }
    memmove(u->starved, u->starved + i, (u->nstarved - i) * sizeof(*u->starved));
    u->nstarved -= i;
}

/* A multishot receive's completion: each one with data queues its buffer;
 * the last one (no IORING_CQE_F_MORE) ends the request, which is armed
 * again unless it ended for good (EOF, error, stopped) or is paused with
 * buffers still queued. */
static void recv_done(struct ac__uring *u, struct ac__uop *op, const struct io_uring_cqe *cqe)
{
    unsigned char *b = NULL;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER)
        b = ring_take(u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (op->state == AC__UOP_ORPHAN) {
        ac__uring_buf_put(u, b);
        if (!more) {
            u->inflight--;
            slot_put(u, op);
        }
        return;
    }
    if (res > 0 && queue_push(op, b, (uint32_t)res) < 0) {
        ac__uring_buf_put(u, b);
        res = -ENOMEM; /* bytes lost: the stream cannot go on */
        op->flags |= F_STOPPED;
        if (more)
            cancel(u, op);
    } else if (res <= 0) {
        ac__uring_buf_put(u, b);
    }
    if (res == -EINVAL && !more && u->arm_limit != 0 && queued(op) == 0) {
        u->arm_limit = 0; /* a kernel without the byte limit: arm without it */
        res = -ENOBUFS;   /* armed again after the reap */
    }
    if (res > 0 && !more && !(op->flags & F_STOPPED))
        op->flags |= F_PAUSED; /* its byte limit: armed again once drained */
    if (res == 0 || (res < 0 && res != -ECANCELED && res != -ENOBUFS)) {
        op->flags |= res == 0 ? F_EOF : F_ERR;
        op->res = res;
    }
    /* The owner is told of bytes, of the end, and of a stopped receive
     * being over; a receive that only goes on (re-armed) wakes nobody. */
    bool tell = res != -ENOBUFS && res != -ECANCELED;
    if (!more) {
        u->inflight--;
        op->state = AC__UOP_DONE;
        bool over = op->flags & (F_EOF | F_ERR | F_STOPPED);
        bool hold = (op->flags & F_PAUSED) && queued(op) > 0;
        tell = tell || (op->flags & F_STOPPED);
        if (!over && !hold && starve(u, op, res == -ENOBUFS) < 0) {
            op->flags |= F_ERR;
            op->res = -EBUSY;
            tell = true;
        }
    } else if (queued(op) >= AC__UOP_PAUSE_AT && !(op->flags & (F_PAUSED | F_STOPPED))) {
        op->flags |= F_PAUSED; /* the owner is behind: no more buffers for now */
        cancel(u, op);
    }
    if (tell)
        ac_waker_wake(&op->waker);
}

static int send_done(struct ac__uring *u, struct ac__uop *op, const struct io_uring_cqe *cqe)
{
    if (op->state == AC__UOP_BUSY && cqe->res > 0 && op->off + (uint32_t)cqe->res < op->len) {
        op->off += (uint32_t)cqe->res;
        if (submit_send(u, op) == 0)
            return 0;
        op->res = -EBUSY;
        return 1;
    }
    op->res = cqe->res > 0 ? (int32_t)op->len : cqe->res;
    /* Sent (or failed): the buffer goes back now, not when the owner
     * collects the slot, which an idle connection may not do for long. */
    ac__uring_buf_put(u, op->buf);
    op->buf = NULL;
    return 1;
}

void ac__uring_complete(struct ac__uring *u, uint64_t data, const struct io_uring_cqe *cqe)
{
    struct ac__uop *op = untag(data);
    if (op->kind == AC__UOP_RECV) {
        recv_done(u, op, cqe);
        return;
    }
    if (!send_done(u, op, cqe))
        return;
    u->inflight--;
    if (op->state == AC__UOP_ORPHAN) {
        slot_put(u, op);
        return;
    }
    op->state = AC__UOP_DONE;
    ac_waker_wake(&op->waker);
}

/* ---- lifetime ---- */

int ac__uring_new(struct io_uring *ring, struct ac__uring **out)
{
    struct ac__uring *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    u->ring = ring;
    u->arm_limit = AC__UOP_PAUSE_AT * AC__URING_BUF_SIZE;
    u->skip_flags = (ring->features & IORING_FEAT_CQE_SKIP) ? IOSQE_CQE_SKIP_SUCCESS : 0;
    size_t size = RING_ENTRIES * sizeof(struct io_uring_buf);
    void *mem;
    int rc = posix_memalign(&mem, (size_t)sysconf(_SC_PAGESIZE), size);
    if (rc != 0) {
        free(u);
        return -rc;
    }
    memset(mem, 0, size);
    u->br = mem;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = RING_ENTRIES, .bgid = BGID};
    if ((rc = io_uring_register_buf_ring(ring, &reg, 0)) < 0) {
        free(mem);
        free(u);
        return rc;
    }
    for (unsigned i = 0; i < RING_ENTRIES; i++) {
        unsigned char *b = malloc(AC__URING_BUF_SIZE);
        if (b == NULL)
            u->missing[u->nmissing++] = (uint16_t)i;
        else
            ring_add(u, b, (uint16_t)i);
    }
    *out = u;
    return 0;
}

/* Reaps completions until no operation is left in the kernel (bounded):
 * the others (polls, closes) mean nothing any more at teardown. */
static void drain(struct ac__uring *u)
{
    for (int round = 0; round < DRAIN_ROUNDS && u->inflight > 0; round++) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = DRAIN_WAIT_NS};
        int rc = io_uring_submit_and_wait_timeout(u->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR)
            break;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(u->ring, head, cqe)
        {
            seen++;
            uint64_t data = io_uring_cqe_get_data64(cqe);
            if (data != AC__URING_IGNORE && data != AC__URING_WAKE && ac__uop_tagged(data))
                ac__uring_complete(u, data, cqe);
        }
        io_uring_cq_advance(u->ring, seen);
    }
}

void ac__uring_free(struct ac__uring *u)
{
    if (u == NULL)
        return;
    if (u->inflight > 0) {
        struct io_uring_sqe *sqe = sqe_get(u);
        if (sqe != NULL) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, AC__URING_IGNORE);
        }
        drain(u);
    }
    (void)io_uring_unregister_buf_ring(u->ring, BGID);
    for (unsigned i = 0; i < RING_ENTRIES; i++)
        free(u->inring[i]);
    while (u->cache != NULL) {
        unsigned char *b = u->cache;
        memcpy(&u->cache, b, sizeof(u->cache));
        free(b);
    }
    while (u->free_slots != NULL) {
        struct ac__uop *op = u->free_slots;
        u->free_slots = op->next;
        free(op);
    }
    free(u->starved);
    free(u->br);
    free(u);
}

unsigned ac__uring_inflight(const struct ac__uring *u) { return u->inflight; }
unsigned ac__uring_slots(const struct ac__uring *u) { return u->slots; }

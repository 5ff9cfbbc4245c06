/* uring-echo: the hand-written io_uring reference for the asynccore echo benchmark.
 *
 *   uring-echo PORT [ADDRESS]        (ADDRESS default 127.0.0.1)
 *
 * A single-threaded TCP echo server on one io_uring (liburing), written as a
 * careful C programmer would with nothing in between, so that asynccore's
 * io_uring backend has a floor to be measured against (as epoll-echo is for
 * epoll):
 *   - one multishot accept on the listener (re-armed only if the kernel ends it);
 *   - per connection one recv into a buffer the kernel picks from a provided
 *     buffer ring (IOSQE_BUFFER_SELECT, so an idle connection holds no
 *     buffer), multishot by default: it stays armed, and each completion
 *     carries one buffer; each buffer is sent straight back (MSG_WAITALL |
 *     MSG_NOSIGNAL), one send in flight per socket so the echo stays in order
 *     without links (what arrives meanwhile waits in the connection's queue),
 *     and the send's completion returns the buffer to the ring.
 *     URING_ECHO_RECV=single arms one single-shot recv at a time instead, the
 *     next only once the echo is sent (one operation in flight per connection);
 *   - buffers go back to the ring in a batch, made visible with one release
 *     store per loop turn, and everything queued in a turn is submitted with
 *     the wait for the next completions in one io_uring_submit_and_wait;
 *   - the ring is set up with COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN
 *     (completion work runs only inside that one enter), falling back to
 *     fewer flags on kernels that refuse them, and its descriptor registered;
 *   - a recv that finds the buffer ring empty (ENOBUFS, which also ends a
 *     multishot) parks its connection until buffers come back; EOF or an
 *     error closes it once its send is done and its recv cancelled (the
 *     cancel and the close go through the ring too, with no completion on
 *     success).
 * The descriptors are ordinary ones, like epoll-echo's and ac-echo's.
 * URING_ECHO_BUFS (a power of two, default 4096) sets the number of 16 KiB
 * buffers in the ring (small values exercise ENOBUFS). SIGINT or SIGTERM stops
 * it. It prints "uring-echo: listening on port PORT (how it is set up)" on
 * stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSIZE (16 * 1024)
#define NBUFS_DEFAULT 4096u
#define NBUFS_MAX 32768u /* the kernel's limit for a buffer ring */
#define SQ_ENTRIES 4096u
#define BGID 0

/* user_data: a connection pointer with the operation in its low bits, or one
 * of the small constants for the server's own operations. */
#define OP_RECV 1u
#define OP_SEND 2u
#define OP_MASK 3u
#define UD_ACCEPT 1u
#define UD_SIGNAL 2u
#define UD_IGNORE 3u /* a close or a cancel: a completion only if it failed */

struct conn {
    struct conn *prev, *next; /* all connections, freed at stop */
    struct conn *parked_next; /* waiting for a buffer (ENOBUFS) */
    int fd;
    bool recv_armed, sending, parked, closing, cancelled;
    unsigned bid;                /* the buffer being sent back */
    unsigned off, len;           /* of that buffer's echo */
    unsigned queue_head, queue_tail, queue_n; /* received, waiting for the send (multishot) */
};

struct server {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    unsigned char *bufs;
    unsigned *buf_len, *buf_next; /* per buffer: bytes received, the next in its queue */
    unsigned nbufs;
    unsigned returned; /* buffers added to the ring since the last advance */
    bool multishot;    /* one recv per connection that stays armed */
    int lfd, sfd;
    struct conn *conns;
    struct conn *parked, **parked_tail;
    const char *flags_used; /* NULL until the ring is set up */
    bool ring_fd_registered;
};

static struct io_uring_sqe *get_sqe(struct server *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    while (sqe == NULL) { /* the queue is full: hand it to the kernel first */
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

static void arm_accept(struct server *s)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD_ACCEPT);
}

static void arm_recv(struct server *s, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (s->multishot)
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0); /* the buffer's size */
    else
        io_uring_prep_recv(sqe, c->fd, NULL, BUFSIZE, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uintptr_t)c | OP_RECV);
    c->recv_armed = true;
}

static void arm_send(struct server *s, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_send(sqe, c->fd, s->bufs + (size_t)c->bid * BUFSIZE + c->off, c->len - c->off,
                       MSG_WAITALL | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uintptr_t)c | OP_SEND);
    c->sending = true;
}

/* Queues buffer bid for the ring; it is visible to the kernel after flush. */
static void buf_return(struct server *s, unsigned bid)
{
    io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * BUFSIZE, BUFSIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(s->nbufs), (int)s->returned);
    s->returned++;
}

/* Arms the connection's recv if it needs one: in single mode only once
 * everything received has been sent back. */
static void want_recv(struct server *s, struct conn *c)
{
    if (c->recv_armed || c->parked || c->closing)
        return;
    if (!s->multishot && (c->sending || c->queue_n > 0))
        return;
    arm_recv(s, c);
}

/* Publishes the buffers returned this turn, then re-arms every parked
 * connection (each has data waiting: that is how it got ENOBUFS). */
static void buf_flush(struct server *s)
{
    if (s->returned == 0)
        return;
    io_uring_buf_ring_advance(s->br, (int)s->returned);
    s->returned = 0;
    struct conn *c = s->parked;
    s->parked = NULL;
    s->parked_tail = &s->parked;
    while (c != NULL) {
        struct conn *next = c->parked_next;
        c->parked_next = NULL;
        c->parked = false;
        want_recv(s, c);
        c = next;
    }
}

static void park(struct server *s, struct conn *c)
{
    c->parked = true;
    *s->parked_tail = c;
    s->parked_tail = &c->parked_next;
}

static void unpark(struct server *s, struct conn *c)
{
    struct conn **pp = &s->parked;
    while (*pp != c)
        pp = &(*pp)->parked_next;
    *pp = c->parked_next;
    if (s->parked_tail == &c->parked_next)
        s->parked_tail = pp;
    c->parked = false;
}

static void queue_push(struct server *s, struct conn *c, unsigned bid, unsigned len)
{
    s->buf_len[bid] = len;
    if (c->queue_n == 0)
        c->queue_head = bid;
    else
        s->buf_next[c->queue_tail] = bid;
    c->queue_tail = bid;
    c->queue_n++;
}

/* Starts the send of the oldest received buffer, if none is in flight. */
static void send_next(struct server *s, struct conn *c)
{
    if (c->sending || c->queue_n == 0 || c->closing)
        return;
    c->bid = c->queue_head;
    c->off = 0;
    c->len = s->buf_len[c->bid];
    c->queue_head = s->buf_next[c->bid];
    c->queue_n--;
    arm_send(s, c);
}

/* After EOF or an error: gives back what is queued, cancels the recv, and
 * frees the connection once nothing of the kernel's refers to it. */
static void conn_finish(struct server *s, struct conn *c)
{
    c->closing = true;
    for (; c->queue_n > 0; c->queue_n--) {
        buf_return(s, c->queue_head);
        c->queue_head = s->buf_next[c->queue_head];
    }
    if (c->parked)
        unpark(s, c);
    if (c->sending)
        return; /* its completion comes back here */
    if (c->recv_armed) {
        if (c->cancelled)
            return;
        c->cancelled = true;
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_cancel64(sqe, (uintptr_t)c | OP_RECV, 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        return; /* the recv's last completion comes back here */
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_close(sqe, c->fd);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    free(c);
}

static void on_accept(struct server *s, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept(s); /* the kernel ended the multishot (an error, overflow) */
    if (cqe->res < 0) {
        if (cqe->res != -ECONNABORTED && cqe->res != -EINTR)
            fprintf(stderr, "uring-echo: accept: %s\n", strerror(-cqe->res));
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(cqe->res);
        return;
    }
    c->fd = cqe->res;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    arm_recv(s, c);
}

static void on_recv(struct server *s, struct conn *c, const struct io_uring_cqe *cqe)
{
    bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (cqe->res > 0 && has_buf && !c->closing) {
        queue_push(s, c, bid, (unsigned)cqe->res);
        send_next(s, c);
        want_recv(s, c); /* a multishot the kernel ended (CQ overflow) */
        return;
    }
    if (has_buf)
        buf_return(s, bid);
    if (c->closing || (cqe->res <= 0 && cqe->res != -ENOBUFS && cqe->res != -EINTR &&
                       cqe->res != -EAGAIN)) {
        conn_finish(s, c); /* EOF (an echo server has nothing more to say) or an error */
        return;
    }
    if (cqe->res == -ENOBUFS && !c->recv_armed) /* the ring is empty: wait for a buffer */
        park(s, c);
    want_recv(s, c);
}

static void on_send(struct server *s, struct conn *c, const struct io_uring_cqe *cqe)
{
    c->sending = false;
    if (!c->closing && cqe->res > 0 && c->off + (unsigned)cqe->res < c->len) {
        c->off += (unsigned)cqe->res; /* short despite MSG_WAITALL: send the rest */
        arm_send(s, c);
        return;
    }
    if (!c->closing && (cqe->res == -EINTR || cqe->res == -EAGAIN)) {
        arm_send(s, c);
        return;
    }
    buf_return(s, c->bid);
    if (c->closing || cqe->res <= 0) {
        conn_finish(s, c);
        return;
    }
    send_next(s, c);
    want_recv(s, c);
}

/* Returns false when the server is to stop. */
static bool on_cqe(struct server *s, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    switch (ud) {
    case UD_ACCEPT:
        on_accept(s, cqe);
        return true;
    case UD_SIGNAL:
        return false;
    case UD_IGNORE:
        return true; /* nothing left to do */
    default:
        break;
    }
    struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
    if ((ud & OP_MASK) == OP_RECV)
        on_recv(s, c, cqe);
    else
        on_send(s, c, cqe);
    return true;
}

/* The flags a careful programmer asks for, and what to fall back to. */
static int ring_setup(struct server *s)
{
    static const struct {
        unsigned flags;
        const char *name;
    } tries[] = {
        {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
             IORING_SETUP_DEFER_TASKRUN,
         "COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN"},
        {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
         "COOP_TASKRUN|SINGLE_ISSUER"},
        {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {0, "no flags"},
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        struct io_uring_params par = {.flags = tries[i].flags};
        rc = io_uring_queue_init_params(SQ_ENTRIES, &s->ring, &par);
        if (rc == 0) {
            s->flags_used = tries[i].name;
            /* Each enter then skips looking the ring's descriptor up (5.18);
             * without it the ring works the same, a little slower. */
            s->ring_fd_registered = io_uring_register_ring_fd(&s->ring) == 1;
            return 0;
        }
        if (rc != -EINVAL)
            break;
    }
    fprintf(stderr, "uring-echo: io_uring_queue_init: %s\n", strerror(-rc));
    return -1;
}

static int bufs_setup(struct server *s)
{
    const char *env = getenv("URING_ECHO_BUFS");
    s->nbufs = env != NULL ? (unsigned)strtoul(env, NULL, 10) : NBUFS_DEFAULT;
    if (s->nbufs == 0 || s->nbufs > NBUFS_MAX || (s->nbufs & (s->nbufs - 1)) != 0) {
        fprintf(stderr, "uring-echo: URING_ECHO_BUFS must be a power of two up to %u\n",
                NBUFS_MAX);
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    void *ring_mem = NULL, *bufs = NULL;
    if (posix_memalign(&ring_mem, (size_t)page, s->nbufs * sizeof(struct io_uring_buf)) != 0 ||
        posix_memalign(&bufs, (size_t)page, (size_t)s->nbufs * BUFSIZE) != 0) {
        free(ring_mem);
        fprintf(stderr, "uring-echo: out of memory for %u buffers\n", s->nbufs);
        return -1;
    }
    s->br = ring_mem;
    s->bufs = bufs;
    s->buf_len = calloc(s->nbufs, sizeof(*s->buf_len));
    s->buf_next = calloc(s->nbufs, sizeof(*s->buf_next));
    if (s->buf_len == NULL || s->buf_next == NULL) {
        fprintf(stderr, "uring-echo: out of memory for %u buffers\n", s->nbufs);
        return -1;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)s->br, .ring_entries = s->nbufs, .bgid = BGID};
    int rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc < 0) {
        fprintf(stderr, "uring-echo: io_uring_register_buf_ring: %s\n", strerror(-rc));
        return -1;
    }
    io_uring_buf_ring_init(s->br);
    for (unsigned i = 0; i < s->nbufs; i++)
        buf_return(s, i);
    io_uring_buf_ring_advance(s->br, (int)s->returned);
    s->returned = 0;
    return 0;
}

static int setup(struct server *s, const char *addr, unsigned port)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &in.sin_addr) != 1) {
        fprintf(stderr, "uring-echo: bad address %s\n", addr);
        return -1;
    }
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    /* TCP_NODELAY on the listener is inherited by every accepted socket. */
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(s->lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(s->lfd, (struct sockaddr *)&in, sizeof(in)) != 0 || listen(s->lfd, 4096) != 0) {
        perror("uring-echo: listen");
        return -1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    s->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sfd < 0) {
        perror("uring-echo: signalfd");
        return -1;
    }
    s->parked_tail = &s->parked;
    const char *mode = getenv("URING_ECHO_RECV");
    if (mode == NULL || strcmp(mode, "multishot") == 0) {
        s->multishot = true;
    } else if (strcmp(mode, "single") != 0) {
        fprintf(stderr, "uring-echo: URING_ECHO_RECV is multishot or single\n");
        return -1;
    }
    if (ring_setup(s) != 0 || bufs_setup(s) != 0)
        return -1;
    arm_accept(s);
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_poll_add(sqe, s->sfd, POLLIN);
    io_uring_sqe_set_data64(sqe, UD_SIGNAL);
    return 0;
}

/* Also undoes a setup that failed half-way. */
static int stop(struct server *s)
{
    /* The ring goes first: it cancels what is in flight, then nothing of the
     * kernel's refers to a connection or a buffer any more. */
    if (s->flags_used != NULL)
        io_uring_queue_exit(&s->ring);
    while (s->conns != NULL) {
        struct conn *c = s->conns;
        s->conns = c->next;
        close(c->fd);
        free(c);
    }
    if (s->sfd >= 0)
        close(s->sfd);
    if (s->lfd >= 0)
        close(s->lfd);
    free(s->buf_next);
    free(s->buf_len);
    free(s->bufs);
    free(s->br);
    free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [ADDRESS]\n", argv[0]);
        return 2;
    }
    struct server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return 1;
    s->lfd = s->sfd = -1;
    if (setup(s, argc > 2 ? argv[2] : "127.0.0.1", (unsigned)atoi(argv[1])) != 0) {
        stop(s);
        return 1;
    }
    fprintf(stderr,
            "uring-echo: listening on port %s (%s%s, %s recv, %u buffers of %d bytes)\n",
            argv[1], s->flags_used, s->ring_fd_registered ? ", ring fd registered" : "",
            s->multishot ? "multishot" : "single", s->nbufs, BUFSIZE);

    for (;;) {
        buf_flush(s);
        int rc = io_uring_submit_and_wait(&s->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fprintf(stderr, "uring-echo: io_uring_submit_and_wait: %s\n", strerror(-rc));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        bool go_on = true;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            seen++;
            if (!on_cqe(s, cqe))
                go_on = false;
        }
        io_uring_cq_advance(&s->ring, seen);
        if (!go_on)
            return stop(s);
    }
}

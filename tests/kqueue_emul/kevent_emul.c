/* TEST-ONLY EMULATION of kqueue(2)/kevent(2) over epoll and eventfd, so that
 * asynccore's kqueue backend runs its unit suite on Linux. Written from
 * FreeBSD's kevent(2) manual for what poller_kqueue.c uses:
 *
 * - EVFILT_READ / EVFILT_WRITE on descriptors: EV_ADD (adds, or modifies an
 *   existing knote: udata and flags), EV_DELETE (ENOENT when absent),
 *   EV_ENABLE, EV_DISABLE, EV_CLEAR (state reset after retrieval: the
 *   knote is reported again only when new data or space arrives; epoll's
 *   EPOLLET), EV_ONESHOT (deleted once reported). data is the bytes
 *   readable (FIONREAD) / the send-buffer space left; EV_EOF is set on the
 *   read filter when the peer shut its write half (EPOLLRDHUP) or the
 *   connection is gone (EPOLLHUP), on the write filter when we can no
 *   longer send (EPOLLHUP); with a pending socket error fflags is non-zero
 *   (see below).
 * - EVFILT_USER: EV_ADD / EV_DELETE / EV_ENABLE / EV_DISABLE / EV_CLEAR /
 *   EV_ONESHOT, NOTE_TRIGGER (from any thread), the NOTE_FF* fflags
 *   controls; a triggered knote without EV_CLEAR stays triggered.
 * - Errors in the changelist: placed in the eventlist as EV_ERROR with data
 *   = errno while there is room (always with EV_RECEIPT), else kevent()
 *   returns -1 with errno set (EINVAL unknown filter or flags, ENOENT, EBADF).
 * - close(2) of a descriptor removes its knotes from every kqueue, as the
 *   kernel does: this file interposes close() for the test process.
 *
 * Where it differs from a real kqueue (documented, not hidden):
 * - Linux cannot read a socket's pending error without clearing it, so
 *   fflags carries EIO as a stand-in on EV_EOF with EPOLLERR, and the real
 *   error is left for getsockopt(SO_ERROR).
 * - The read and write knotes of one descriptor share one epoll
 *   registration, so they must agree on EV_CLEAR (EINVAL otherwise).
 * - Regular files are refused (EPERM from epoll), where FreeBSD reports
 *   them always readable. Filters other than READ, WRITE and USER: EINVAL.
 *
 * Each kqueue has its own lock (changes, waits and close() may come from
 * different threads); a process-wide list of kqueues, under its own lock,
 * exists only so that close() can find the knotes of a descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/event.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define USER_TAG UINT64_MAX /* epoll data of the eventfd behind EVFILT_USER */
#define BATCH 256

struct knote {
    bool on;      /* exists */
    bool enabled;
    unsigned short flags; /* EV_CLEAR | EV_ONESHOT as given */
    void *udata;
};

struct fdnotes {
    struct knote rd, wr;
    bool in_epoll;
};

struct unote {
    struct unote *next;
    uintptr_t ident;
    struct knote k;
    unsigned fflags;  /* NOTE_FFLAGSMASK bits */
    bool triggered;
};

struct kq {
    struct kq *next; /* registry */
    int epfd;        /* also the kqueue's descriptor */
    int userfd;      /* eventfd: a NOTE_TRIGGER wakes a waiter */
    pthread_mutex_t lock;
    struct fdnotes *fds;
    size_t nfds;
    struct unote *users;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kq *registry;

static int sys_close(int fd) { return (int)syscall(SYS_close, fd); }

static struct kq *kq_find(int fd)
{
    pthread_mutex_lock(&registry_lock);
    struct kq *q = registry;
    while (q != NULL && q->epfd != fd)
        q = q->next;
    pthread_mutex_unlock(&registry_lock);
    return q;
}

int kqueue(void)
{
    struct kq *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        errno = ENOMEM;
        return -1;
    }
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    q->userfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = USER_TAG};
    if (q->epfd < 0 || q->userfd < 0 || epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->userfd, &ev) < 0) {
        int e = errno;
        if (q->epfd >= 0)
            sys_close(q->epfd);
        if (q->userfd >= 0)
            sys_close(q->userfd);
        free(q);
        errno = e;
        return -1;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_lock(&registry_lock);
    q->next = registry;
    registry = q;
    pthread_mutex_unlock(&registry_lock);
    return q->epfd;
}

/* ---- descriptor knotes ---- */

static struct fdnotes *fd_slot(struct kq *q, int fd, bool grow)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= q->nfds) {
        if (!grow)
            return NULL;
        size_t n = q->nfds ? q->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct fdnotes *f = realloc(q->fds, n * sizeof(*f));
        if (f == NULL)
            return NULL;
        memset(f + q->nfds, 0, (n - q->nfds) * sizeof(*f));
        q->fds = f;
        q->nfds = n;
    }
    return &q->fds[fd];
}

/* Brings the epoll registration of fd in line with its knotes. */
static int fd_sync(struct kq *q, int fd, struct fdnotes *f)
{
    uint32_t events = 0;
    if (f->rd.on && f->rd.enabled)
        events |= EPOLLIN | EPOLLRDHUP;
    if (f->wr.on && f->wr.enabled)
        events |= EPOLLOUT;
    bool clear = (f->rd.on && (f->rd.flags & EV_CLEAR)) || (f->wr.on && (f->wr.flags & EV_CLEAR));
    if (clear)
        events |= EPOLLET;
    if (!f->rd.on && !f->wr.on) {
        if (f->in_epoll)
            (void)epoll_ctl(q->epfd, EPOLL_CTL_DEL, fd, NULL);
        f->in_epoll = false;
        return 0;
    }
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)fd};
    if (f->in_epoll && epoll_ctl(q->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    f->in_epoll = true;
    return 0;
}

static int fd_change(struct kq *q, const struct kevent *ch)
{
    if (ch->ident > (uintptr_t)INT32_MAX)
        return -EBADF;
    int fd = (int)ch->ident;
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF; /* the kernel looks the descriptor up first */
    struct fdnotes *f = fd_slot(q, fd, (ch->flags & EV_ADD) != 0);
    if (f == NULL)
        return ch->flags & EV_ADD ? -ENOMEM : -ENOENT;
    struct knote *k = ch->filter == EVFILT_READ ? &f->rd : &f->wr;
    struct knote *other = ch->filter == EVFILT_READ ? &f->wr : &f->rd;
    struct knote saved = *k;

    if (ch->flags & EV_DELETE) {
        if (!k->on)
            return -ENOENT;
        k->on = false;
    } else {
        if (!k->on && !(ch->flags & EV_ADD))
            return -ENOENT;
        if (ch->flags & EV_ADD) {
            if (other->on && (other->flags & EV_CLEAR) != (ch->flags & EV_CLEAR))
                return -EINVAL; /* one epoll registration per descriptor */
            if (!k->on)
                k->enabled = true;
            k->on = true;
            k->flags = ch->flags & (EV_CLEAR | EV_ONESHOT);
            k->udata = ch->udata;
        }
        if (ch->flags & EV_ENABLE)
            k->enabled = true;
        if (ch->flags & EV_DISABLE)
            k->enabled = false;
    }
    int r = fd_sync(q, fd, f);
    if (r < 0) {
        *k = saved; /* a refused add leaves nothing behind */
        (void)fd_sync(q, fd, f);
    }
    return r;
}

/* ---- user knotes ---- */

static struct unote **user_find(struct kq *q, uintptr_t ident)
{
    struct unote **p = &q->users;
    while (*p != NULL && (*p)->ident != ident)
        p = &(*p)->next;
    return p;
}

static void user_fflags(struct unote *u, unsigned fflags)
{
    unsigned v = fflags & NOTE_FFLAGSMASK;
    switch (fflags & NOTE_FFCTRLMASK) {
    case NOTE_FFAND: u->fflags &= v; break;
    case NOTE_FFOR: u->fflags |= v; break;
    case NOTE_FFCOPY: u->fflags = v; break;
    default: break; /* NOTE_FFNOP */
    }
}

static int user_change(struct kq *q, const struct kevent *ch)
{
    struct unote **p = user_find(q, ch->ident);
    struct unote *u = *p;

    if (ch->flags & EV_DELETE) {
        if (u == NULL)
            return -ENOENT;
        *p = u->next;
        free(u);
        return 0;
    }
    if (u == NULL) {
        if (!(ch->flags & EV_ADD))
            return -ENOENT;
        if ((u = calloc(1, sizeof(*u))) == NULL)
            return -ENOMEM;
        u->ident = ch->ident;
        u->k.on = u->k.enabled = true;
        *p = u;
    }
    if (ch->flags & EV_ADD) {
        u->k.flags = ch->flags & (EV_CLEAR | EV_ONESHOT);
        u->k.udata = ch->udata;
    }
    if (ch->flags & EV_ENABLE)
        u->k.enabled = true;
    if (ch->flags & EV_DISABLE)
        u->k.enabled = false;
    user_fflags(u, ch->fflags);
    if (ch->fflags & NOTE_TRIGGER) {
        u->triggered = true;
        uint64_t one = 1;
        (void)!write(q->userfd, &one, sizeof(one)); /* wakes a waiting kevent() */
    }
    return 0;
}

/* Moves triggered, enabled user knotes into out (at most max). */
static int user_collect(struct kq *q, struct kevent *out, int max)
{
    int n = 0;
    for (struct unote **p = &q->users; *p != NULL && n < max;) {
        struct unote *u = *p;
        if (!u->triggered || !u->k.enabled) {
            p = &u->next;
            continue;
        }
        EV_SET(&out[n], u->ident, EVFILT_USER, u->k.flags, u->fflags, 0, u->k.udata);
        n++;
        if (u->k.flags & EV_ONESHOT) {
            *p = u->next;
            free(u);
            continue;
        }
        if (u->k.flags & EV_CLEAR) {
            u->triggered = false;
            u->fflags = 0;
        }
        p = &u->next;
    }
    return n;
}

/* ---- kevent ---- */

static int apply(struct kq *q, const struct kevent *ch)
{
    unsigned short known = EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE | EV_ONESHOT | EV_CLEAR |
                           EV_RECEIPT;
    if (ch->flags & ~known)
        return -EINVAL;
    switch (ch->filter) {
    case EVFILT_READ:
    case EVFILT_WRITE:
        return fd_change(q, ch);
    case EVFILT_USER:
        return user_change(q, ch);
    default:
        return -EINVAL;
    }
}

static int64_t readable_bytes(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

static int64_t send_space(int fd)
{
    int size = 0, queued = 0;
    socklen_t len = sizeof(size);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) != 0 ||
        ioctl(fd, TIOCOUTQ, &queued) != 0)
        return 0;
    return size > queued ? size - queued : 0;
}

/* One epoll event of fd into up to two kevents. */
static int translate(struct kq *q, int fd, uint32_t events, struct kevent *out, int max)
{
    struct fdnotes *f = fd_slot(q, fd, false);
    int n = 0;
    if (f == NULL)
        return 0; /* knotes deleted since the wait returned */
    unsigned err = (events & EPOLLERR) ? EIO : 0;
    if (n < max && f->rd.on && f->rd.enabled &&
        (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        unsigned short fl = f->rd.flags;
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            fl |= EV_EOF;
        EV_SET(&out[n], (uintptr_t)fd, EVFILT_READ, fl, (fl & EV_EOF) ? err : 0,
               readable_bytes(fd), f->rd.udata);
        n++;
        if (f->rd.flags & EV_ONESHOT)
            f->rd.on = false;
    }
    if (n < max && f->wr.on && f->wr.enabled && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
        unsigned short fl = f->wr.flags;
        if (events & (EPOLLHUP | EPOLLERR))
            fl |= EV_EOF;
        EV_SET(&out[n], (uintptr_t)fd, EVFILT_WRITE, fl, (fl & EV_EOF) ? err : 0,
               send_space(fd), f->wr.udata);
        n++;
        if (f->wr.flags & EV_ONESHOT)
            f->wr.on = false;
    }
    if ((f->rd.flags & EV_ONESHOT) || (f->wr.flags & EV_ONESHOT))
        (void)fd_sync(q, fd, f);
    return n;
}

static int timeout_ms(const struct timespec *ts)
{
    if (ts == NULL)
        return -1;
    long long ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int kevent(int kqfd, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout)
{
    struct kq *q = kq_find(kqfd);
    if (q == NULL || nchanges < 0 || nevents < 0) {
        errno = q == NULL ? EBADF : EINVAL;
        return -1;
    }
    int n = 0;
    pthread_mutex_lock(&q->lock);
    for (int i = 0; i < nchanges; i++) {
        int r = apply(q, &changelist[i]);
        if (r == 0 && !(changelist[i].flags & EV_RECEIPT))
            continue;
        if (n < nevents) { /* reported in the eventlist, processing goes on */
            eventlist[n] = changelist[i];
            eventlist[n].flags = EV_ERROR;
            eventlist[n].data = -r;
            n++;
            continue;
        }
        pthread_mutex_unlock(&q->lock);
        errno = -r;
        return -1;
    }
    if (n > 0 || nevents == 0) {
        pthread_mutex_unlock(&q->lock);
        return n;
    }
    /* The knote list is the truth; the eventfd only wakes the wait below. */
    n = user_collect(q, eventlist, nevents);
    int before = n;
    pthread_mutex_unlock(&q->lock);

    struct epoll_event evs[BATCH];
    int max = nevents - n < BATCH ? nevents - n : BATCH;
    int got = max > 0 ? epoll_wait(q->epfd, evs, max, n > 0 ? 0 : timeout_ms(timeout)) : 0;
    if (got < 0)
        return n > 0 ? n : -1; /* EINTR as the kernel reports it */
    pthread_mutex_lock(&q->lock);
    for (int i = 0; i < got && n < nevents; i++) {
        if (evs[i].data.u64 == USER_TAG) {
            uint64_t v;
            (void)!read(q->userfd, &v, sizeof(v));
            if (before == 0) /* else already reported, or seen by the next call */
                n += user_collect(q, eventlist + n, nevents - n);
            continue;
        }
        n += translate(q, (int)evs[i].data.u64, evs[i].events, eventlist + n, nevents - n);
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* ---- close(2): the kernel drops a descriptor's knotes ---- */

static void kq_free(struct kq *q)
{
    while (q->users != NULL) {
        struct unote *u = q->users;
        q->users = u->next;
        free(u);
    }
    sys_close(q->userfd);
    pthread_mutex_destroy(&q->lock);
    free(q->fds);
    free(q);
}

int close(int fd)
{
    struct kq *dead = NULL;
    pthread_mutex_lock(&registry_lock);
    for (struct kq **p = &registry; *p != NULL;) {
        struct kq *q = *p;
        if (q->epfd == fd) {
            *p = q->next;
            dead = q;
            continue;
        }
        pthread_mutex_lock(&q->lock);
        struct fdnotes *f = fd_slot(q, fd, false);
        if (f != NULL && f->in_epoll)
            (void)epoll_ctl(q->epfd, EPOLL_CTL_DEL, fd, NULL); /* a dup may keep it open */
        if (f != NULL)
            memset(f, 0, sizeof(*f));
        pthread_mutex_unlock(&q->lock);
        p = &q->next;
    }
    pthread_mutex_unlock(&registry_lock);
    if (dead != NULL)
        kq_free(dead);
    return sys_close(fd);
}

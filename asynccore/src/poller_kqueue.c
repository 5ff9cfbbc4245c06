/* asynccore: the kqueue poller (BSD, macOS). EVFILT_READ and EVFILT_WRITE
 * with EV_CLEAR (edge-triggered) and the token in udata; EV_EOF on the read
 * filter is read-closed, on the write filter write-closed; EVFILT_USER (or a
 * pipe where it is missing) for cross-thread wake-ups. Symmetric with
 * poller_epoll.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/event.h>
#include <sys/types.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "poller.h"

#define WAKE_IDENT 0
#define WAKE_KEY UINT64_MAX

struct ac__poller {
    int kq;
    int wake_rd, wake_wr; /* pipe, only without EVFILT_USER */
    struct kevent buf[256];
};

static int kev(int kq, uintptr_t ident, short filter, unsigned short flags, unsigned fflags,
               uint64_t key)
{
    struct kevent ev;
    EV_SET(&ev, ident, filter, flags, fflags, 0, (void *)(uintptr_t)key);
    if (kevent(kq, &ev, 1, NULL, 0, NULL) < 0)
        return -errno;
    return 0;
}

static int wake_init(struct ac__poller *p)
{
#ifdef EVFILT_USER
    p->wake_rd = p->wake_wr = -1;
    return kev(p->kq, WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, WAKE_KEY);
#else
    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    p->wake_rd = fds[0];
    p->wake_wr = fds[1];
    for (int i = 0; i < 2; i++)
        if (fcntl(fds[i], F_SETFL, O_NONBLOCK) < 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
    return kev(p->kq, (uintptr_t)p->wake_rd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, WAKE_KEY);
#endif
}

void ac__kqueue_free(struct ac__poller *p)
{
    if (p == NULL)
        return;
    if (p->wake_rd >= 0)
        close(p->wake_rd);
    if (p->wake_wr >= 0)
        close(p->wake_wr);
    if (p->kq >= 0)
        close(p->kq);
    free(p);
}

int ac__kqueue_new(struct ac__poller **out)
{
    struct ac__poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->wake_rd = p->wake_wr = -1;
    p->kq = kqueue();
    if (p->kq < 0) {
        int err = -errno;
        ac__kqueue_free(p);
        return err;
    }
    (void)fcntl(p->kq, F_SETFD, FD_CLOEXEC);
    int rc = wake_init(p);
    if (rc < 0) {
        ac__kqueue_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* EV_ADD on a descriptor kqueue already watches modifies the knote (new
 * udata) instead of failing as epoll's EEXIST does: a second registration
 * of one descriptor would silently take the first one's events, and its
 * task would never be woken. So ask first: EV_ENABLE without EV_ADD fails
 * with ENOENT exactly when there is no knote (ours are always enabled, so
 * the probe changes nothing). One more system call per registration. */
static int refuse_known(struct ac__poller *p, int fd)
{
    struct kevent ev, res;
    EV_SET(&ev, (uintptr_t)fd, EVFILT_READ, EV_ENABLE | EV_RECEIPT, 0, 0, NULL);
    int n = kevent(p->kq, &ev, 1, &res, 1, NULL);
    if (n < 0)
        return -errno;
    if (n == 1 && (res.flags & EV_ERROR) && res.data != 0)
        return res.data == ENOENT ? 0 : -(int)res.data;
    return -EEXIST;
}

int ac__kqueue_add(struct ac__poller *p, int fd, uint64_t key, unsigned flags)
{
    (void)flags; /* kqueue has no exclusive wake-up */
    int rc = refuse_known(p, fd);
    if (rc < 0)
        return rc;
    struct kevent ev[2];
    EV_SET(&ev[0], (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)key);
    EV_SET(&ev[1], (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, (void *)(uintptr_t)key);
    if (kevent(p->kq, ev, 2, NULL, 0, NULL) < 0)
        return -errno;
    return 0;
}

/* Both filters in one call: with EV_RECEIPT each change reports its own
 * result in the eventlist, so a failing first change does not stop the
 * second (without room for errors kevent() would return at the first). */
int ac__kqueue_del(struct ac__poller *p, int fd)
{
    struct kevent ev[2], res[2];
    EV_SET(&ev[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    EV_SET(&ev[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    int n = kevent(p->kq, ev, 2, res, 2, NULL);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++)
        if ((res[i].flags & EV_ERROR) && res[i].data != 0)
            return -(int)res[i].data;
    return 0;
}

int ac__kqueue_rearm(struct ac__poller *p, int fd, uint64_t key, unsigned want)
{
    (void)p, (void)fd, (void)key, (void)want; /* EV_CLEAR is edge-triggered */
    return 0;
}

static uint32_t ready_of(const struct kevent *ev)
{
    uint32_t r = 0;
    if (ev->flags & EV_ERROR)
        return AC_ERROR;
    if (ev->filter == EVFILT_READ) {
        r |= AC_READABLE;
        if (ev->flags & EV_EOF)
            r |= AC_READ_CLOSED;
    } else if (ev->filter == EVFILT_WRITE) {
        r |= AC_WRITABLE;
        if (ev->flags & EV_EOF)
            r |= AC_WRITE_CLOSED;
    }
    if ((ev->flags & EV_EOF) && ev->fflags != 0)
        r |= AC_ERROR; /* fflags carries the socket error */
    return r;
}

int ac__kqueue_wait(struct ac__poller *p, struct ac__poll_event *out, int max, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int cap = (int)(sizeof(p->buf) / sizeof(p->buf[0]));
    int n = kevent(p->kq, NULL, 0, p->buf, max < cap ? max : cap, tsp);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t key = (uint64_t)(uintptr_t)p->buf[i].udata;
        if (key == WAKE_KEY) {
            if (p->wake_rd >= 0) {
                char b[64];
                while (read(p->wake_rd, b, sizeof(b)) > 0)
                    ;
            }
            continue;
        }
        out[k].key = key;
        out[k].ready = ready_of(&p->buf[i]);
        k++;
    }
    return k;
}

int ac__kqueue_wake(struct ac__poller *p)
{
#ifdef EVFILT_USER
    return kev(p->kq, WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, WAKE_KEY);
#else
    char c = 1;
    if (write(p->wake_wr, &c, 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
#endif
}

/* asynccore: the epoll poller (Linux). Edge-triggered, both directions at
 * once; an eventfd (level-triggered, read on wake-up) for cross-thread wakes.
 * Readiness mapping follows mio selector/epoll.rs: RDHUP is read-closed only
 * (and readable, so the data that came with it is read first), HUP closes
 * both halves, ERR is an error.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "poller.h"

#define WAKE_KEY UINT64_MAX

struct ac__poller {
    int epfd;
    int wakefd;
    struct epoll_event buf[256];
};

int ac__epoll_new(struct ac__poller **out)
{
    struct ac__poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    int err;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        err = -errno;
        goto fail;
    }
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0) {
        err = -errno;
        goto fail_ep;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) < 0) {
        err = -errno;
        close(p->wakefd);
        goto fail_ep;
    }
    *out = p;
    return 0;
fail_ep:
    close(p->epfd);
fail:
    free(p);
    return err;
}

void ac__epoll_free(struct ac__poller *p)
{
    if (p == NULL)
        return;
    close(p->wakefd);
    close(p->epfd);
    free(p);
}

int ac__epoll_add(struct ac__poller *p, int fd, uint64_t key, unsigned flags)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = key};
#ifdef EPOLLEXCLUSIVE
    if (flags & AC_REG_EXCLUSIVE) {
        /* EPOLLEXCLUSIVE admits only IN/OUT/ET (not RDHUP). */
        struct epoll_event ex = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLEXCLUSIVE,
                                 .data.u64 = key};
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ex) == 0)
            return 0;
        if (errno != EINVAL)
            return -errno;
        /* Older kernel: fall back to a plain registration. */
    }
#endif
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int ac__epoll_del(struct ac__poller *p, int fd)
{
    struct epoll_event ev = {0}; /* non-NULL for kernels before 2.6.9 */
    if (epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev) < 0)
        return -errno;
    return 0;
}

int ac__epoll_rearm(struct ac__poller *p, int fd, uint64_t key, unsigned want)
{
    (void)p, (void)fd, (void)key, (void)want; /* the kernel is edge-triggered */
    return 0;
}

static uint32_t ready_of(uint32_t events)
{
    uint32_t r = 0;
    if (events & EPOLLIN)
        r |= AC_READABLE;
    if (events & EPOLLOUT)
        r |= AC_WRITABLE;
    if (events & EPOLLRDHUP)
        r |= AC_READ_CLOSED | AC_READABLE;
    if (events & EPOLLHUP)
        r |= AC_READ_CLOSED | AC_WRITE_CLOSED;
    if (events & EPOLLERR)
        r |= AC_ERROR;
    return r;
}

int ac__epoll_wait(struct ac__poller *p, struct ac__poll_event *out, int max, int timeout_ms)
{
    int cap = (int)(sizeof(p->buf) / sizeof(p->buf[0]));
    int n = epoll_wait(p->epfd, p->buf, max < cap ? max : cap, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (p->buf[i].data.u64 == WAKE_KEY) {
            uint64_t v;
            /* EAGAIN: another drain already took it. */
            (void)!read(p->wakefd, &v, sizeof(v));
            continue;
        }
        out[k].key = p->buf[i].data.u64;
        out[k].ready = ready_of(p->buf[i].events);
        k++;
    }
    return k;
}

int ac__epoll_wake(struct ac__poller *p)
{
    uint64_t one = 1;
    if (write(p->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

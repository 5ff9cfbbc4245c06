/* asynccore: the portable poll(2) poller.
 *
 * poll(2) is level-triggered; edge-triggering is emulated per direction:
 * once a direction is reported it is no longer polled until the reactor
 * clears its readiness (after EAGAIN) and calls rearm(). An fd with nothing
 * to watch is parked with a negative fd, so that a lasting hang-up or error
 * (always reported by poll) does not spin the loop.
 * Storage: a pollfd array (slot 0 is the wake-up pipe) plus an fd -> slot map.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "asynccore/reactor.h"
#include "poller.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

struct ac__poller {
    struct pollfd *pfds;
    uint64_t *keys;
    int *fds;
    unsigned *want; /* AC__WANT_* per slot */
    size_t n, cap;
    size_t *map; /* fd -> slot + 1 (0: absent) */
    size_t map_cap;
    int wake_rd, wake_wr;
};

static short events_of(unsigned want)
{
    short ev = 0;
    if (want & AC__WANT_READ)
        ev |= POLLIN | POLLRDHUP;
    if (want & AC__WANT_WRITE)
        ev |= POLLOUT;
    return ev;
}

static void set_want(struct ac__poller *p, size_t i, unsigned want)
{
    p->want[i] = want;
    p->pfds[i].events = events_of(want);
    p->pfds[i].fd = want ? p->fds[i] : -1;
}

static int grow(struct ac__poller *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    struct pollfd *pfds = realloc(p->pfds, cap * sizeof(*pfds));
    if (pfds == NULL)
        return -ENOMEM;
    p->pfds = pfds;
    uint64_t *keys = realloc(p->keys, cap * sizeof(*keys));
    if (keys == NULL)
        return -ENOMEM;
    p->keys = keys;
    int *fds = realloc(p->fds, cap * sizeof(*fds));
    if (fds == NULL)
        return -ENOMEM;
    p->fds = fds;
    unsigned *want = realloc(p->want, cap * sizeof(*want));
    if (want == NULL)
        return -ENOMEM;
    p->want = want;
    p->cap = cap;
    return 0;
}

static int map_reserve(struct ac__poller *p, int fd)
{
    if ((size_t)fd < p->map_cap)
        return 0;
    size_t cap = p->map_cap ? p->map_cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    size_t *map = realloc(p->map, cap * sizeof(*map));
    if (map == NULL)
        return -ENOMEM;
    for (size_t i = p->map_cap; i < cap; i++)
        map[i] = 0;
    p->map = map;
    p->map_cap = cap;
    return 0;
}

void ac__poll_free(struct ac__poller *p)
{
    if (p == NULL)
        return;
    if (p->wake_rd >= 0)
        close(p->wake_rd);
    if (p->wake_wr >= 0)
        close(p->wake_wr);
    free(p->pfds);
    free(p->keys);
    free(p->fds);
    free(p->want);
    free(p->map);
    free(p);
}

int ac__poll_new(struct ac__poller **out)
{
    struct ac__poller *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        int err = -errno;
        free(p);
        return err;
    }
    p->wake_rd = pipefd[0];
    p->wake_wr = pipefd[1];
    for (int i = 0; i < 2; i++) {
        if (fcntl(pipefd[i], F_SETFL, O_NONBLOCK) < 0 ||
            fcntl(pipefd[i], F_SETFD, FD_CLOEXEC) < 0) {
            int err = -errno;
            ac__poll_free(p);
            return err;
        }
    }
    int rc = grow(p);
    if (rc < 0) {
        ac__poll_free(p);
        return rc;
    }
    p->n = 1;
    p->fds[0] = p->wake_rd;
    p->keys[0] = UINT64_MAX;
    set_want(p, 0, AC__WANT_READ);
    *out = p;
    return 0;
}

int ac__poll_add(struct ac__poller *p, int fd, uint64_t key, unsigned flags)
{
    (void)flags; /* no exclusive wake-up with poll(2) */
    if (fd < 0)
        return -EBADF;
    if (fcntl(fd, F_GETFD) < 0)
        return -errno; /* like epoll_ctl: refuse a closed fd at once */
    int rc = map_reserve(p, fd);
    if (rc < 0)
        return rc;
    if (p->map[fd] != 0)
        return -EEXIST;
    if (p->n == p->cap && (rc = grow(p)) < 0)
        return rc;
    size_t i = p->n++;
    p->fds[i] = fd;
    p->keys[i] = key;
    p->pfds[i].revents = 0;
    set_want(p, i, AC__WANT_READ | AC__WANT_WRITE);
    p->map[fd] = i + 1;
    return 0;
}

int ac__poll_del(struct ac__poller *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->map_cap || p->map[fd] == 0)
        return -ENOENT;
    size_t i = p->map[fd] - 1, last = p->n - 1;
    if (i != last) {
        p->pfds[i] = p->pfds[last];
        p->keys[i] = p->keys[last];
        p->fds[i] = p->fds[last];
        p->want[i] = p->want[last];
        p->map[p->fds[i]] = i + 1;
    }
    p->map[fd] = 0;
    p->n--;
    return 0;
}

int ac__poll_rearm(struct ac__poller *p, int fd, uint64_t key, unsigned want)
{
    if (fd < 0 || (size_t)fd >= p->map_cap || p->map[fd] == 0)
        return -ENOENT;
    size_t i = p->map[fd] - 1;
    if (p->keys[i] != key)
        return -ENOENT;
    set_want(p, i, want);
    return 0;
}

static uint32_t ready_of(short revents)
{
    uint32_t r = 0;
    if (revents & POLLIN)
        r |= AC_READABLE;
    if (revents & POLLOUT)
        r |= AC_WRITABLE;
    if (revents & POLLRDHUP)
        r |= AC_READ_CLOSED | AC_READABLE;
    if (revents & POLLHUP)
        r |= AC_READ_CLOSED | AC_WRITE_CLOSED;
    if (revents & (POLLERR | POLLNVAL))
        r |= AC_ERROR;
    return r;
}

/* Stops polling the directions just reported (until rearm). */
static void disarm(struct ac__poller *p, size_t i, uint32_t ready)
{
    unsigned want = p->want[i];
    if (ready & (AC_READABLE | AC_READ_CLOSED | AC_ERROR))
        want &= ~(unsigned)AC__WANT_READ;
    if (ready & (AC_WRITABLE | AC_WRITE_CLOSED | AC_ERROR))
        want &= ~(unsigned)AC__WANT_WRITE;
    set_want(p, i, want);
}

int ac__poll_wait(struct ac__poller *p, struct ac__poll_event *out, int max, int timeout_ms)
{
    int n = poll(p->pfds, (nfds_t)p->n, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (p->pfds[0].revents) {
        char buf[64];
        while (read(p->wake_rd, buf, sizeof(buf)) > 0)
            ;
        n--;
    }
    int k = 0;
    for (size_t i = 1; i < p->n && n > 0 && k < max; i++) {
        short rev = p->pfds[i].revents;
        if (rev == 0)
            continue;
        n--;
        p->pfds[i].revents = 0;
        uint32_t ready = ready_of(rev);
        if (ready == 0)
            continue;
        disarm(p, i, ready);
        out[k].key = p->keys[i];
        out[k].ready = ready;
        k++;
    }
    return k;
}

int ac__poll_wake(struct ac__poller *p)
{
    char c = 1;
    /* EAGAIN: the pipe is full, a wake-up is pending anyway. */
    if (write(p->wake_wr, &c, 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

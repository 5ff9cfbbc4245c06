/* echo-load: load generator for the echo benchmark.
 *
 *   echo-load HOST PORT CONNS SIZE SECONDS [WARMUP_SECONDS]
 *
 * Opens CONNS connections; each sends a SIZE-byte message, waits until the
 * whole message came back (and checks it), and sends the next. Messages and
 * bytes completed during SECONDS after a warm-up (default 1 s) are reported
 * on one line:  msgs_per_s=N bytes_per_s=N total_msgs=N conns=N ...
 * (total_msgs counts the warm-up too, for CPU-per-message figures).
 * Plain C on edge-triggered epoll, one thread. Exit status 1 if any
 * connection fails or an echo differs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024

struct lconn {
    int fd;
    size_t sent, recvd; /* of the message in flight */
    bool writable, started;
};

struct load {
    size_t size;
    unsigned char *msg, *rbuf;
    uint64_t msgs, bytes; /* inside the measured window */
    uint64_t total_msgs;  /* warm-up included */
    bool counting;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sends what is left of the message. Returns 0 or -1 on error. */
static int lconn_send(struct load *ld, struct lconn *c)
{
    while (c->sent < ld->size && c->writable) {
        ssize_t n = send(c->fd, ld->msg + c->sent, ld->size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            c->writable = false;
            break;
        }
        c->sent += (size_t)n;
    }
    return 0;
}

/* Reads echoed bytes; completes messages and starts the next. One read per
 * event: a short read means the socket is drained (edge-triggered: new data
 * brings a new event), and after a completed message nothing more can come
 * until the next one is sent. So the generator costs one read and one send
 * per message, like the servers. */
static int lconn_recv(struct load *ld, struct lconn *c)
{
    for (;;) {
        size_t want = ld->size - c->recvd;
        ssize_t n = read(c->fd, ld->rbuf, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (n == 0 || memcmp(ld->rbuf, ld->msg + c->recvd, (size_t)n) != 0)
            return -1;
        c->recvd += (size_t)n;
        if (ld->counting)
            ld->bytes += (uint64_t)n;
        if (c->recvd < ld->size)
            return 0;
        if (ld->counting)
            ld->msgs++;
        ld->total_msgs++;
        c->recvd = 0;
        c->sent = 0;
        return lconn_send(ld, c);
    }
}

static int open_conn(int ep, struct lconn *c, const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 && errno != EINPROGRESS)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static int handle(struct load *ld, struct lconn *c, uint32_t e)
{
    if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
        return -1; /* the server never closes first */
    if (e & EPOLLOUT) {
        c->writable = true;
        c->started = true;
        if (lconn_send(ld, c) < 0)
            return -1;
    }
    if ((e & EPOLLIN) && lconn_recv(ld, c) < 0)
        return -1;
    return 0;
}

static void raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SIZE SECONDS [WARMUP_SECONDS]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    size_t nconns = strtoul(argv[3], NULL, 10);
    struct load ld = {.size = strtoul(argv[4], NULL, 10)};
    double seconds = atof(argv[5]), warmup = argc > 6 ? atof(argv[6]) : 1.0;
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || nconns == 0 || ld.size == 0 ||
        seconds <= 0) {
        fprintf(stderr, "echo-load: bad arguments\n");
        return 2;
    }
    raise_nofile(nconns + 64);
    ld.msg = malloc(ld.size);
    ld.rbuf = malloc(ld.size);
    struct lconn *conns = calloc(nconns, sizeof(*conns));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ld.msg == NULL || ld.rbuf == NULL || conns == NULL || ep < 0) {
        perror("echo-load: setup");
        return 1;
    }
    for (size_t i = 0; i < ld.size; i++)
        ld.msg[i] = (unsigned char)(i * 131u + 7u);
    for (size_t i = 0; i < nconns; i++) {
        if (open_conn(ep, &conns[i], &sa) != 0) {
            fprintf(stderr, "echo-load: connection %zu: %s\n", i, strerror(errno));
            return 1;
        }
    }

    uint64_t start = now_ns();
    uint64_t count_from = start + (uint64_t)(warmup * 1e9);
    uint64_t stop = count_from + (uint64_t)(seconds * 1e9);
    struct epoll_event evs[MAX_EVENTS];
    int status = 0;
    for (uint64_t t = start; t < stop && status == 0; t = now_ns()) {
        if (!ld.counting && t >= count_from)
            ld.counting = true;
        int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) {
            perror("echo-load: epoll_wait");
            status = 1;
        }
        for (int i = 0; i < n && status == 0; i++) {
            struct lconn *c = evs[i].data.ptr;
            if (handle(&ld, c, evs[i].events) < 0) {
                fprintf(stderr, "echo-load: connection %zu failed or echoed wrong data\n",
                        (size_t)(c - conns));
                status = 1;
            }
        }
    }
    size_t started = 0;
    for (size_t i = 0; i < nconns; i++) {
        started += conns[i].started;
        close(conns[i].fd);
    }
    if (status == 0) {
        printf("msgs_per_s=%.0f bytes_per_s=%.0f total_msgs=%llu conns=%zu started=%zu "
               "size=%zu seconds=%g\n",
               (double)ld.msgs / seconds, (double)ld.bytes / seconds,
               (unsigned long long)ld.total_msgs, nconns, started, ld.size, seconds);
        fflush(stdout);
    }
    free(conns);
    free(ld.msg);
    free(ld.rbuf);
    close(ep);
    return status;
}

/* epoll-echo: the zero-overhead reference for the asynccore echo benchmark.
 *
 *   epoll-echo PORT [ADDRESS]        (ADDRESS default 127.0.0.1)
 *
 * A hand-written single-threaded TCP echo server on edge-triggered epoll, doing
 * what ac-echo does with nothing in between: each connection is registered
 * once for input and output; input is read into one shared buffer and written
 * straight back; only what the socket does not take is kept, in a buffer
 * allocated then and freed once written (reading stops meanwhile). A short
 * read or write counts as EAGAIN, as the edge-triggered contract allows.
 * SIGINT or SIGTERM stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSIZE (16 * 1024)
#define MAX_EVENTS 1024

struct conn {
    struct conn *prev, *next; /* all connections, freed at stop */
    int fd;
    bool readable, writable;
    unsigned char *pending; /* unwritten echo, NULL when none */
    size_t pos, end;
};

struct server {
    int ep, lfd, sfd;
    struct conn *conns;
    unsigned char buf[BUFSIZE];
};

static void conn_close(struct server *s, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Writes data; keeps the rest in c->pending. Returns 0, or -1 to close. */
static int conn_send(struct conn *c, const unsigned char *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->writable) {
        ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            c->writable = false;
            break;
        }
        off += (size_t)n;
        if (off < len)
            c->writable = false;
    }
    if (off == len)
        return 0;
    if (c->pending == NULL) {
        c->pending = malloc(BUFSIZE);
        if (c->pending == NULL)
            return -1;
        memcpy(c->pending, data + off, len - off);
        c->pos = 0;
        c->end = len - off;
    } else {
        c->pos += off;
    }
    return 0;
}

/* Drains c->pending. Returns 0, or -1 to close. */
static int conn_flush(struct conn *c)
{
    if (c->pending == NULL)
        return 0;
    unsigned char *p = c->pending;
    size_t len = c->end - c->pos;
    if (conn_send(c, p + c->pos, len) < 0)
        return -1;
    if (c->writable) { /* all of it went */
        free(c->pending);
        c->pending = NULL;
    }
    return 0;
}

/* Returns 0, or -1 to close the connection. */
static int conn_run(struct server *s, struct conn *c)
{
    if (conn_flush(c) < 0)
        return -1;
    while (c->pending == NULL && c->readable) {
        ssize_t n = read(c->fd, s->buf, sizeof(s->buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            c->readable = false;
            break;
        }
        if (n == 0)
            return -1; /* EOF: an echo server has nothing more to say */
        if ((size_t)n < sizeof(s->buf))
            c->readable = false;
        if (conn_send(c, s->buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

static void accept_all(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("epoll-echo: accept");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = c;
        s->conns = c;
    }
}

static int setup(struct server *s, const char *addr, unsigned port)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &in.sin_addr) != 1) {
        fprintf(stderr, "epoll-echo: bad address %s\n", addr);
        return -1;
    }
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->lfd, (struct sockaddr *)&in, sizeof(in)) != 0 || listen(s->lfd, 4096) != 0) {
        perror("epoll-echo: listen");
        return -1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    s->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->sfd < 0 || s->ep < 0) {
        perror("epoll-echo: setup");
        return -1;
    }
    /* The listener and the signalfd are told apart by data.ptr == NULL/&s->sfd. */
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &s->sfd};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &lev) != 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->sfd, &sev) != 0) {
        perror("epoll-echo: epoll_ctl");
        return -1;
    }
    return 0;
}

static int stop(struct server *s)
{
    while (s->conns != NULL)
        conn_close(s, s->conns);
    close(s->ep);
    close(s->sfd);
    close(s->lfd);
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
    if (s == NULL || setup(s, argc > 2 ? argv[2] : "127.0.0.1", (unsigned)atoi(argv[1])) != 0)
        return 1;
    fprintf(stderr, "epoll-echo: listening on port %s\n", argv[1]);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(s->ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll-echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                accept_all(s);
                continue;
            }
            if (evs[i].data.ptr == &s->sfd)
                return stop(s);
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                c->readable = true;
            if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                c->writable = true;
            if (conn_run(s, c) < 0)
                conn_close(s, c);
        }
    }
}

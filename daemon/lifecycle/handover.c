/* ferryd: the upgrade channel between an old and a new process (see handover.h). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "handover.h"

static const char *const kind_names[] = {"listener", "control", "metrics"};

/* Sends one record: type, payload, and nfds descriptors. */
static int send_record(int chan, char type, const void *payload, size_t len, const int *fds,
                       unsigned nfds)
{
    char buf[FERRY_HANDOVER_RECORD_MAX];
    if (len + 1 > sizeof(buf) || nfds > FERRY_HANDOVER_FDS_MAX)
        return -EMSGSIZE;
    buf[0] = type;
    if (len)
        memcpy(buf + 1, payload, len);
    struct iovec iov = {.iov_base = buf, .iov_len = len + 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char raw[CMSG_SPACE(sizeof(int) * FERRY_HANDOVER_FDS_MAX)];
        struct cmsghdr align;
    } ctl;
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.raw;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = sendmsg(chan, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len + 1 ? 0 : -EMSGSIZE;
}

int ferry_handover_send_sock(int chan, const struct ferry_handed_sock *s)
{
    char text[512];
    int n = snprintf(text, sizeof(text), "%s\t%s\t%s\t%d", kind_names[s->kind], s->addr,
                     s->sd_name, s->inherited ? 1 : 0);
    if (n < 0 || (size_t)n >= sizeof(text))
        return -ENAMETOOLONG;
    return send_record(chan, 'S', text, (size_t)n, s->fds, s->nfds);
}

int ferry_handover_send_ticket_key(int chan, const unsigned char key[80])
{
    return send_record(chan, 'K', key, 80, NULL, 0);
}

int ferry_handover_send_state(int chan, const char *text)
{
    size_t len = strlen(text), chunk = FERRY_HANDOVER_RECORD_MAX - 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = send_record(chan, 'R', text + off, n, NULL, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int ferry_handover_send_end(int chan, pid_t pid)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%ld", (long)pid);
    return send_record(chan, 'E', text, (size_t)n, NULL, 0);
}

int ferry_handover_send_msg(int chan, char type, const char *text)
{
    size_t len = strlen(text);
    if (len > FERRY_HANDOVER_RECORD_MAX - 1)
        len = FERRY_HANDOVER_RECORD_MAX - 1; /* an error line cut short */
    return send_record(chan, type, text, len, NULL, 0);
}

/* Receives one record; its descriptors go to fds (up to *nfds, the count
 * back in *nfds; with fds NULL they are closed). Returns the record's
 * length (type included), 0 at the end, or -errno. */
static ssize_t recv_record(int chan, char *buf, size_t cap, int *fds, unsigned *nfds)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union {
        char raw[CMSG_SPACE(sizeof(int) * FERRY_HANDOVER_FDS_MAX)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.raw,
                        .msg_controllen = sizeof(ctl.raw)};
    ssize_t n;
    do
        n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    unsigned got = 0, room = nfds ? *nfds : 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (fds && got < room)
                fds[got++] = fd;
            else
                close(fd);
        }
    }
    if (nfds)
        *nfds = got;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (unsigned i = 0; i < got; i++)
            close(fds[i]);
        if (nfds)
            *nfds = 0;
        return -EMSGSIZE;
    }
    return n;
}

ssize_t ferry_handover_recv_msg(int chan, char *type, char *buf, size_t cap)
{
    char rec[FERRY_HANDOVER_RECORD_MAX];
    ssize_t n = recv_record(chan, rec, sizeof(rec), NULL, NULL);
    if (n <= 0)
        return n;
    *type = rec[0];
    size_t len = (size_t)n - 1;
    if (cap > 0) {
        if (len >= cap)
            len = cap - 1;
        memcpy(buf, rec + 1, len);
        buf[len] = '\0';
    }
    return n;
}

int ferry_handover_channel_from_env(void)
{
    const char *v = getenv(FERRY_HANDOVER_ENV);
    if (!v)
        return -1;
    char *end = NULL;
    errno = 0;
    long fd = strtol(v, &end, 10);
    int bad = errno || end == v || *end || fd < 0 || fd > 65535;
    unsetenv(FERRY_HANDOVER_ENV); /* a later upgrade sets its own */
    if (bad)
        return -EINVAL;
    int type = 0;
    socklen_t tl = sizeof(type);
    if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_SEQPACKET)
        return -EINVAL;
    return (int)fd;
}

/* Splits "KIND\tADDR\tSDNAME\tINHERITED" into s. */
static int parse_sock(char *text, struct ferry_handed_sock *s)
{
    char *f[4];
    size_t n = 0;
    for (char *p = text; n < 4; n++) {
        f[n] = p;
        char *tab = strchr(p, '\t');
        if (!tab) {
            n++;
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    if (n != 4)
        return -EINVAL;
    size_t k = 0;
    while (k < 3 && strcmp(f[0], kind_names[k]) != 0)
        k++;
    if (k == 3 || strlen(f[1]) >= sizeof(s->addr) || strlen(f[2]) >= sizeof(s->sd_name))
        return -EINVAL;
    s->kind = (enum ferry_handed_kind)k;
    snprintf(s->addr, sizeof(s->addr), "%s", f[1]);
    snprintf(s->sd_name, sizeof(s->sd_name), "%s", f[2]);
    s->inherited = strcmp(f[3], "1") == 0;
    return 0;
}

static int add_sock(struct ferry_handover *h, char *text, const int *fds, unsigned nfds)
{
    struct ferry_handed_sock s = {0};
    if (nfds == 0 || parse_sock(text, &s) != 0)
        return -EINVAL;
    s.fds = malloc(nfds * sizeof(int));
    struct ferry_handed_sock *v = realloc(h->socks, (h->n + 1) * sizeof(*v));
    if (!s.fds || !v) {
        free(s.fds);
        if (v)
            h->socks = v;
        return -ENOMEM;
    }
    h->socks = v;
    memcpy(s.fds, fds, nfds * sizeof(int));
    s.nfds = nfds;
    h->socks[h->n++] = s;
    return 0;
}

static int add_state(struct ferry_handover *h, const char *text, size_t len)
{
    char *v = realloc(h->state, h->state_len + len + 1);
    if (!v)
        return -ENOMEM;
    memcpy(v + h->state_len, text, len);
    h->state = v;
    h->state_len += len;
    h->state[h->state_len] = '\0';
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One record's worth of the handover; 1 after 'E', 0 to go on, or -errno.
 * The descriptors of a socket record become h's; any others are closed. */
static int take_record(struct ferry_handover *h, char *rec, ssize_t n, int *fds, unsigned nfds)
{
    int rc = 0;
    bool kept = false;
    rec[n] = '\0';
    switch (rec[0]) {
    case 'S':
        rc = add_sock(h, rec + 1, fds, nfds);
        kept = rc == 0;
        break;
    case 'K':
        if (n != 81) {
            rc = -EINVAL;
            break;
        }
        memcpy(h->ticket_key, rec + 1, 80);
        h->has_ticket_key = true;
        break;
    case 'R': rc = add_state(h, rec + 1, (size_t)n - 1); break;
    case 'E':
        h->old_pid = (pid_t)atol(rec + 1);
        rc = 1;
        break;
    default: rc = -EPROTO; break;
    }
    for (unsigned i = 0; !kept && i < nfds; i++)
        close(fds[i]);
    return rc;
}

int ferry_handover_recv(int chan, int timeout_ms, struct ferry_handover *h, char *err,
                        size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->chan = chan;
    if (add_state(h, "", 0) != 0)
        return -ENOMEM;
    uint64_t until = now_ms() + (uint64_t)timeout_ms;
    char *rec = malloc(FERRY_HANDOVER_RECORD_MAX + 1);
    if (!rec)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {.fd = chan, .events = POLLIN};
        int pr = now >= until ? 0 : poll(&p, 1, (int)(until - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            rc = pr == 0 ? -ETIMEDOUT : -errno;
            snprintf(err, errlen, "the old process sent no complete handover: %s", strerror(-rc));
            break;
        }
        int fds[FERRY_HANDOVER_FDS_MAX];
        unsigned nfds = FERRY_HANDOVER_FDS_MAX;
        ssize_t n = recv_record(chan, rec, FERRY_HANDOVER_RECORD_MAX, fds, &nfds);
        if (n <= 0) {
            rc = n == 0 ? -ECONNRESET : (int)n;
            snprintf(err, errlen, "cannot read the handover: %s", strerror(-rc));
            break;
        }
        rc = take_record(h, rec, n, fds, nfds);
        if (rc < 0)
            snprintf(err, errlen, "bad handover record '%c': %s", rec[0], strerror(-rc));
        if (rc != 0)
            break;
    }
    free(rec);
    return rc < 0 ? rc : 0;
}

struct ferry_handed_sock *ferry_handover_find(struct ferry_handover *h, enum ferry_handed_kind kind,
                                              const char *addr, const char *sd_name)
{
    for (size_t i = 0; h && i < h->n; i++) {
        struct ferry_handed_sock *s = &h->socks[i];
        if (s->claimed || s->kind != kind)
            continue;
        if (sd_name ? strcmp(s->sd_name, sd_name) == 0 : !s->sd_name[0] && strcmp(s->addr, addr) == 0)
            return s;
    }
    return NULL;
}

void ferry_handover_free(struct ferry_handover *h)
{
    for (size_t i = 0; i < h->n; i++) {
        for (unsigned k = 0; !h->socks[i].claimed && k < h->socks[i].nfds; k++)
            close(h->socks[i].fds[k]);
        free(h->socks[i].fds);
    }
    free(h->socks);
    free(h->state);
    if (h->chan >= 0)
        close(h->chan);
    memset(h, 0, sizeof(*h));
    h->chan = -1;
}

int ferry_handover_ready(int chan, const char *version, int timeout_ms)
{
    char text[128];
    snprintf(text, sizeof(text), "%ld %s", (long)getpid(), version);
    int rc = ferry_handover_send_msg(chan, 'r', text);
    if (rc != 0)
        return rc;
    uint64_t until = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {.fd = chan, .events = POLLIN};
        int pr = now >= until ? 0 : poll(&p, 1, (int)(until - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return pr == 0 ? -ETIMEDOUT : -errno;
        char type;
        ssize_t n = ferry_handover_recv_msg(chan, &type, text, sizeof(text));
        if (n < 0 && n != -EAGAIN)
            return (int)n;
        if (n == 0)
            return -ECONNRESET; /* the old process gave up on us */
        return type == 'g' ? 0 : -EPROTO;
    }
}

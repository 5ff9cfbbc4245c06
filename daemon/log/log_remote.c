/* ferryd: RFC 5424 messages to a remote syslog server (see log_remote.h). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "asynccore/runtime.h"
#include "log/log_remote.h"

#define OUT_SIZE (256u * 1024u) /* TCP: frames waiting while the stream is full */
#define SYSLOG_FACILITY 3       /* daemon */
#define HEADER_MAX 400          /* "<PRI>1 TIMESTAMP HOSTNAME ferryd PID - - " */
#define CONNECT_TIMEOUT_MS 5000u /* a TCP connect that takes longer is given up */
#define TCP_SNDBUF (64 * 1024)  /* bounded, so a slow server costs drops, not memory */

int ferry_log_remote_init(struct ferry_log_remote *r, const struct ferry_addr *a, bool tcp,
                          long pid, _Atomic uint64_t *dropped)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->tcp = tcp;
    r->pid = pid;
    r->dropped = dropped;
    snprintf(r->host, sizeof(r->host), "%s", a->host);
    snprintf(r->service, sizeof(r->service), "%u", (unsigned)a->port);
    /* RFC 5424 6.2.4: printable US-ASCII, at most 255; "-" when unknown. */
    if (gethostname(r->hostname, sizeof(r->hostname)) != 0 || !r->hostname[0])
        snprintf(r->hostname, sizeof(r->hostname), "-");
    r->hostname[sizeof(r->hostname) - 1] = '\0';
    for (char *c = r->hostname; *c; c++)
        if (*c <= ' ' || *c > '~')
            *c = '_';
    r->backoff_ms = FERRY_LOG_REMOTE_BACKOFF_MIN_MS;
    if (tcp && !(r->out = malloc(OUT_SIZE)))
        return -ENOMEM;
    return 0;
}

static void drop_lines(struct ferry_log_remote *r, uint64_t n)
{
    if (n)
        atomic_fetch_add(r->dropped, n);
}

/* Frames in out[from..olen) (each starts "LEN "). */
static uint64_t frames_in(const struct ferry_log_remote *r, size_t from)
{
    uint64_t n = 0;
    size_t pos = from;
    while (pos < r->olen) {
        char *end;
        unsigned long len = strtoul(r->out + pos, &end, 10);
        n++;
        pos = (size_t)(end - r->out) + 1 + len;
    }
    return n;
}

void ferry_log_remote_discard(struct ferry_log_remote *r)
{
    if (!r->tcp)
        return;
    drop_lines(r, frames_in(r, r->skip) + (r->skip ? 1 : 0));
    r->olen = r->skip = 0;
}

/* The connection is gone: what it did not send is lost, a new attempt
 * waits for the back-off. */
static void disconnect(struct ferry_log_remote *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->connecting = false;
    ferry_log_remote_discard(r);
    r->retry_ms = ac_clock_now_ms() + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > FERRY_LOG_REMOTE_BACKOFF_MAX_MS
                        ? FERRY_LOG_REMOTE_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* A new socket connecting (TCP: possibly still in progress) to the first
 * address the name gives. */
static void connect_now(struct ferry_log_remote *r)
{
    struct addrinfo hints = {.ai_socktype = r->tcp ? SOCK_STREAM : SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG}, *res = NULL;
    if (getaddrinfo(r->host, r->service, &hints, &res) != 0 || !res) {
        disconnect(r);
        return;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int sndbuf = TCP_SNDBUF;
    if (fd >= 0 && r->tcp)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (fd >= 0 && (rc == 0 || errno == EINPROGRESS)) {
        r->fd = fd;
        r->connecting = rc != 0;
        r->connect_ms = ac_clock_now_ms();
        if (!r->connecting)
            r->backoff_ms = FERRY_LOG_REMOTE_BACKOFF_MIN_MS;
        return;
    }
    if (fd >= 0)
        close(fd);
    disconnect(r);
}

/* True when the socket is usable now; connects when due. */
static bool ready(struct ferry_log_remote *r)
{
    if (r->fd < 0 && ac_clock_now_ms() >= r->retry_ms)
        connect_now(r);
    if (r->fd < 0 || !r->connecting)
        return r->fd >= 0;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || (err && err != EINPROGRESS) ||
        ac_clock_now_ms() - r->connect_ms > CONNECT_TIMEOUT_MS) {
        disconnect(r);
        return false;
    }
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(r->fd, (struct sockaddr *)&peer, &plen) != 0)
        return false; /* still in progress */
    r->connecting = false;
    r->backoff_ms = FERRY_LOG_REMOTE_BACKOFF_MIN_MS;
    return true;
}

/* "<PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID SD " (RFC 5424 6). */
static int header(const struct ferry_log_remote *r, int priority, int64_t ms, char *buf,
                  size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    return snprintf(buf, cap, "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ferryd %ld - - ",
                    SYSLOG_FACILITY * 8 + priority, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000), r->hostname, r->pid);
}

static bool put_udp(struct ferry_log_remote *r, const char *hdr, size_t hn, const char *line,
                    size_t len)
{
    if (!ready(r)) {
        drop_lines(r, 1);
        return true;
    }
    struct iovec iov[2] = {{(void *)hdr, hn}, {(void *)line, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w;
    do
        w = sendmsg(r->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    /* Not waited for: a full socket buffer, a refusal (ICMP from a server
     * that is not there: the socket stays, the next datagram may pass) or
     * no route all cost this line only. */
    if (w < 0)
        drop_lines(r, 1);
    return true;
}

static bool put_tcp(struct ferry_log_remote *r, const char *hdr, size_t hn, const char *line,
                    size_t len)
{
    if (r->fd < 0 && !ready(r)) {
        drop_lines(r, 1);
        return true;
    }
    char lenbuf[16];
    int ln = snprintf(lenbuf, sizeof(lenbuf), "%zu ", hn + len);
    size_t need = (size_t)ln + hn + len;
    if (r->olen + need > OUT_SIZE) {
        (void)ferry_log_remote_flush(r);
        if (r->fd < 0) { /* lost while flushing */
            drop_lines(r, 1);
            return true;
        }
        if (r->olen + need > OUT_SIZE)
            return false;
    }
    memcpy(r->out + r->olen, lenbuf, (size_t)ln);
    memcpy(r->out + r->olen + ln, hdr, hn);
    memcpy(r->out + r->olen + ln + hn, line, len);
    r->olen += need;
    return true;
}

bool ferry_log_remote_put(struct ferry_log_remote *r, int priority, int64_t realtime_ms,
                          const char *line, size_t len)
{
    char hdr[HEADER_MAX];
    int hn = header(r, priority, realtime_ms, hdr, sizeof(hdr));
    if (hn < 0 || (size_t)hn >= sizeof(hdr))
        hn = 0;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    return r->tcp ? put_tcp(r, hdr, (size_t)hn, line, len) : put_udp(r, hdr, (size_t)hn, line, len);
}

/* After `sent` bytes left the buffer: where the head frame now ends. */
static void consumed(struct ferry_log_remote *r, size_t sent)
{
    size_t pos = r->skip;
    while (pos < sent) {
        char *end;
        unsigned long len = strtoul(r->out + pos, &end, 10);
        pos = (size_t)(end - r->out) + 1 + len;
    }
    memmove(r->out, r->out + sent, r->olen - sent);
    r->olen -= sent;
    r->skip = pos - sent;
}

/* The server closed its side (or reset): a peek sees it before a send
 * would succeed into a dead connection. */
static bool peer_gone(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int ferry_log_remote_flush(struct ferry_log_remote *r)
{
    if (!r->tcp)
        return -1;
    if (!ready(r))
        return r->connecting ? r->fd : -1;
    if (peer_gone(r->fd)) {
        disconnect(r);
        return -1;
    }
    size_t off = 0;
    while (off < r->olen) {
        ssize_t w = send(r->fd, r->out + off, r->olen - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            consumed(r, off);
            return r->fd;
        } else {
            consumed(r, off);
            disconnect(r);
            return -1;
        }
    }
    consumed(r, off);
    return -1;
}

void ferry_log_remote_close(struct ferry_log_remote *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->out);
    r->out = NULL;
}

/* ferryd: a remote syslog server as a log sink (`log = udp://HOST:PORT` or
 * `tcp://HOST:PORT`, ferry.ini(5)).
 *
 * Each line becomes an RFC 5424 message:
 *     <PRI>1 2026-12-07T16:53:10.123Z HOSTNAME ferryd PID - - level=info msg=...
 * sent as one datagram over UDP, or as an octet-counted frame ("LEN MSG",
 * RFC 6587 3.4.1) over TCP. Only the log writer thread calls these: nothing
 * here ever runs on a worker, and nothing here ever waits. A line that
 * cannot be sent (no route, refused, the TCP connection down or being
 * re-established) is dropped and counted; over TCP, lines wait in a bounded
 * buffer (256 KiB, and a 64 KiB socket send buffer) only while a connected
 * stream is momentarily full. A lost TCP
 * connection is re-established after a back-off that doubles from 100 ms up
 * to 10 s and resets once connected; a connect is given up after 5 s. A host name is resolved (getaddrinfo,
 * on the writer thread) at each connection attempt.
 */
#ifndef FERRY_LOG_REMOTE_H
#define FERRY_LOG_REMOTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_config.h"

#define FERRY_LOG_REMOTE_BACKOFF_MIN_MS 100u
#define FERRY_LOG_REMOTE_BACKOFF_MAX_MS 10000u

struct ferry_log_remote {
    bool tcp;
    char host[256];
    char service[8];   /* the port, as getaddrinfo takes it */
    char hostname[256]; /* ours, for the HOSTNAME field */
    long pid;
    int fd;            /* -1: none */
    bool connecting;   /* TCP: connect(2) in progress */
    uint64_t connect_ms; /* when it started */
    uint64_t retry_ms; /* no new attempt before this (monotonic ms) */
    unsigned backoff_ms;
    /* TCP: frames not yet sent; out[0..skip) is the rest of a frame partly sent. */
    char *out;
    size_t olen, skip;
    _Atomic uint64_t *dropped; /* the logger's count of lines lost */
};

/* Sets r up for the server at `a` (nothing is sent or connected yet).
 * Returns 0 or -ENOMEM. */
int ferry_log_remote_init(struct ferry_log_remote *r, const struct ferry_addr *a, bool tcp,
                          long pid, _Atomic uint64_t *dropped);
void ferry_log_remote_close(struct ferry_log_remote *r);
/* At exit, with a stream that stays stuck: the frames still queued are
 * counted as dropped and forgotten. */
void ferry_log_remote_discard(struct ferry_log_remote *r);

/* Sends or queues one line (`line`, without its '\n') at severity
 * `priority` (0..7). Returns false only when a connected TCP stream is full
 * and the buffer too: the caller keeps the line and tries again later.
 * Every other line is sent or counted as dropped. */
bool ferry_log_remote_put(struct ferry_log_remote *r, int priority, int64_t realtime_ms,
                          const char *line, size_t len);

/* Moves queued frames on (TCP), connecting first when due. Returns the fd
 * to wait on for POLLOUT when it has to wait (a connect in progress, a full
 * stream), else -1. */
int ferry_log_remote_flush(struct ferry_log_remote *r);

#endif

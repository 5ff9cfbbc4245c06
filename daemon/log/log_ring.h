/* ferryd: a ring of log lines, one producer and one consumer.
 *
 * Each event-loop worker owns one: the worker formats a line and pushes it
 * without a lock or a system call; the logger's writer thread pops it. When
 * the ring is full the line is dropped and counted, never waited for, so a
 * sink that cannot keep up costs lines, not latency.
 *
 * Records are a 4-byte header (length, sink, level) and the line, stored
 * contiguously modulo the capacity (a power of two); head and tail are
 * free-running byte counters.
 */
#ifndef FERRY_LOG_RING_H
#define FERRY_LOG_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_log_ring {
    _Alignas(64) _Atomic uint64_t head; /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
    _Atomic uint64_t dropped;           /* lines refused because the ring was full */
    unsigned char *data;
    size_t cap; /* power of two */
};

struct ferry_log_rec {
    size_t len;
    unsigned sink, level;
};

/* cap is rounded up to a power of two. Returns 0 or -ENOMEM. */
int ferry_log_ring_init(struct ferry_log_ring *r, size_t cap);
void ferry_log_ring_destroy(struct ferry_log_ring *r);

/* Producer: appends one line (len < 65536), or counts it dropped and
 * returns false when it does not fit. */
bool ferry_log_ring_push(struct ferry_log_ring *r, unsigned sink, unsigned level,
                         const char *line, size_t len);

/* Consumer: the next record's header, without taking it; false when empty. */
bool ferry_log_ring_peek(struct ferry_log_ring *r, struct ferry_log_rec *rec);
/* Consumer: copies the line of the record peek described into dst (at
 * least rec->len bytes), leaving it in the ring. */
void ferry_log_ring_read(struct ferry_log_ring *r, const struct ferry_log_rec *rec, char *dst);
/* Consumer: removes the record peek described. */
void ferry_log_ring_consume(struct ferry_log_ring *r, const struct ferry_log_rec *rec);

bool ferry_log_ring_empty(struct ferry_log_ring *r);

#endif

/* ferryd: a ring of log lines, one producer and one consumer (see log_ring.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log/log_ring.h"

#define HDR 4

int ferry_log_ring_init(struct ferry_log_ring *r, size_t cap)
{
    size_t c = 4096;
    while (c < cap)
        c <<= 1;
    r->data = malloc(c);
    if (!r->data)
        return -ENOMEM;
    r->cap = c;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    return 0;
}

void ferry_log_ring_destroy(struct ferry_log_ring *r)
{
    free(r->data);
    r->data = NULL;
}

static void copy_in(struct ferry_log_ring *r, uint64_t at, const void *src, size_t n)
{
    size_t off = (size_t)(at & (r->cap - 1));
    size_t first = n < r->cap - off ? n : r->cap - off;
    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *)src + first, n - first);
}

static void copy_out(struct ferry_log_ring *r, uint64_t at, void *dst, size_t n)
{
    size_t off = (size_t)(at & (r->cap - 1));
    size_t first = n < r->cap - off ? n : r->cap - off;
    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *)dst + first, r->data, n - first);
}

bool ferry_log_ring_push(struct ferry_log_ring *r, unsigned sink, unsigned level,
                         const char *line, size_t len)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (len > 0xffff || head - tail + HDR + len > r->cap) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return false;
    }
    unsigned char hdr[HDR] = {(unsigned char)(len & 0xff), (unsigned char)(len >> 8),
                              (unsigned char)sink, (unsigned char)level};
    copy_in(r, head, hdr, HDR);
    copy_in(r, head + HDR, line, len);
    /* seq_cst: the writer's "going to sleep" check pairs with this store. */
    atomic_store_explicit(&r->head, head + HDR + len, memory_order_seq_cst);
    return true;
}

bool ferry_log_ring_peek(struct ferry_log_ring *r, struct ferry_log_rec *rec)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (head == tail)
        return false;
    unsigned char hdr[HDR];
    copy_out(r, tail, hdr, HDR);
    rec->len = (size_t)hdr[0] | (size_t)hdr[1] << 8;
    rec->sink = hdr[2];
    rec->level = hdr[3];
    return true;
}

void ferry_log_ring_read(struct ferry_log_ring *r, const struct ferry_log_rec *rec, char *dst)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    copy_out(r, tail + HDR, dst, rec->len);
}

void ferry_log_ring_consume(struct ferry_log_ring *r, const struct ferry_log_rec *rec)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + HDR + rec->len, memory_order_release);
}

bool ferry_log_ring_empty(struct ferry_log_ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_seq_cst) ==
           atomic_load_explicit(&r->tail, memory_order_relaxed);
}

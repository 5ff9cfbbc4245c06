/* ferryd: the asynchronous resolver (c-ares on an event loop).
 *
 * One c-ares channel per daemon, driven by one task on one worker: c-ares'
 * sockets are registered with that worker's reactor (its sock_state callback
 * says which directions it wants) and its timeouts sit on the timer wheel,
 * so a lookup never blocks a loop and needs no thread. Every function here,
 * and every callback, runs on that worker.
 *
 * Answers come back already parsed and bounded: at most FERRY_DNS_MAX_ANSWERS
 * records are kept per lookup (the rest are counted in `dropped`), c-ares
 * bounds a reply to 64 KiB (TCP), gives up on a server after its timeouts,
 * and follows no CNAME chain past its own limit.
 */
#ifndef FERRY_DNS_RESOLVER_H
#define FERRY_DNS_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry_config.h"

struct ac_worker;
struct ferry_dns;

/* Records kept from one answer. */
#define FERRY_DNS_MAX_ANSWERS 256

/* One record of an answer: an address (with the port asked for, or the SRV
 * record's), and for SRV its target, priority and weight. */
struct ferry_dns_record {
    struct sockaddr_storage sa;
    socklen_t sa_len;          /* 0: an SRV record whose target is not resolved (yet) */
    char target[256];          /* SRV only */
    uint16_t port, priority, weight;
};

/* A finished lookup. status 0: ok (n may be 0 for "no such name / no
 * data"); else a c-ares status and err its words. ttl_s: the smallest TTL
 * of the records used. */
struct ferry_dns_answer {
    int status;
    const char *err;
    uint32_t ttl_s;
    struct ferry_dns_record *rec; /* [n], valid during the callback only */
    size_t n;
    size_t dropped;               /* records past FERRY_DNS_MAX_ANSWERS */
};

typedef void (*ferry_dns_cb)(void *arg, const struct ferry_dns_answer *a);

/* Starts the resolver's task on w. resolvers: "IP:PORT" strings (none: the
 * system's /etc/resolv.conf). Returns NULL with *err = -errno or a c-ares
 * status. */
struct ferry_dns *ferry_dns_start(struct ac_worker *w, const struct ferry_global *gl, int *err);

/* Applies a reloaded [global] (resolvers). 0 or <0. */
int ferry_dns_configure(struct ferry_dns *dns, const struct ferry_global *gl);

/* A and AAAA of host (every address, with port). cb runs later, exactly
 * once, on the resolver's worker (with status ARES_EDESTRUCTION when the
 * daemon stops first). Returns 0 or -ENOMEM (cb not called). */
int ferry_dns_lookup_host(struct ferry_dns *dns, const char *host, uint16_t port,
                          ferry_dns_cb cb, void *arg);

/* SRV records of name, each target resolved to its addresses (one record
 * per address). Same contract as above. */
int ferry_dns_lookup_srv(struct ferry_dns *dns, const char *name, ferry_dns_cb cb, void *arg);

/* Asks the resolver's task to be polled again soon (after a lookup was
 * started from outside it). */
void ferry_dns_kick(struct ferry_dns *dns);

/* Milliseconds of the resolver's clock, for scheduling. */
uint64_t ferry_dns_now_ms(struct ferry_dns *dns);

/* Another task scheduled on the resolver: `tick` is called from the
 * resolver's task at `due_ms` (or at the next poll when sooner), and
 * returns its next due time (UINT64_MAX: none). One hook; NULL to remove. */
void ferry_dns_set_tick(struct ferry_dns *dns, uint64_t (*tick)(void *arg, uint64_t now_ms),
                        void *arg, uint64_t due_ms);

/* Moves the hook's next call to due_ms if that is sooner. */
void ferry_dns_tick_at(struct ferry_dns *dns, uint64_t due_ms);

/* The smallest TTL of the answer records in a DNS reply (abuf), in
 * seconds; UINT32_MAX when it has none or is malformed. Exposed for tests. */
uint32_t ferry_dns_reply_min_ttl(const unsigned char *abuf, int alen);

#endif

/* ferryd: per-client connection counts and rates of one listener
 * (max_connections_per_client, client_rate).
 *
 * One table per listener, shared by the workers and lock-free: a fixed array
 * of slots (bounded memory, sized at creation), open addressing over a
 * window of FERRY_CLIENTS_WINDOW slots from the address's seeded hash. When
 * a new address finds its window full, the least recently seen slot of the
 * window that holds no connection is given to it (the least recently seen
 * clients are forgotten first). The table never forgets a client that holds
 * a connection; a client whose whole window is held by connected clients is
 * admitted untracked (counted in `untracked`), which a capacity of at least
 * twice the global max_connections makes rare.
 */
#ifndef FERRY_CLIENT_TABLE_H
#define FERRY_CLIENT_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FERRY_CLIENTS_WINDOW 16

struct ferry_client_slot {
    _Atomic uint64_t tag;     /* the address's hash; 0: never used */
    _Atomic uint32_t active;  /* connections held; BUSY (client_table.c) while re-assigned */
    _Atomic uint32_t seen;    /* last seen, ms (wrapping) */
    _Atomic uint64_t rate;    /* second (32 bits) | previous second's count | this one's */
} __attribute__((aligned(32)));

struct ferry_client_table {
    struct ferry_client_slot *slots;
    size_t mask;              /* capacity - 1 (a power of two) */
    uint64_t seed;
    _Atomic uint64_t used;    /* slots ever assigned (never more than capacity) */
    _Atomic uint64_t untracked;
};

enum ferry_client_verdict { FERRY_CLIENT_OK, FERRY_CLIENT_LIMIT, FERRY_CLIENT_RATE };

/* A table of at least `capacity` slots (rounded up to a power of two), or NULL. */
struct ferry_client_table *ferry_client_table_new(size_t capacity);
void ferry_client_table_free(struct ferry_client_table *t);

/* A new connection from sa at now_ms: past max_conns connections held (0: no
 * cap) it is FERRY_CLIENT_LIMIT; past `rate` new connections over the
 * sliding second (0: no cap) FERRY_CLIENT_RATE. The rate is estimated the
 * usual way for a sliding window: this second's admitted connections plus
 * the previous second's, weighted by how much of it the window still
 * covers. On FERRY_CLIENT_OK *held is the slot to give back with
 * ferry_client_release when the connection ends (NULL when untracked). */
enum ferry_client_verdict ferry_client_admit(struct ferry_client_table *t,
                                             const struct sockaddr *sa, unsigned max_conns,
                                             unsigned rate, uint64_t now_ms,
                                             struct ferry_client_slot **held);
void ferry_client_release(struct ferry_client_slot *held);

/* Slots assigned so far: the table's memory is capacity slots, whatever this says. */
size_t ferry_client_table_used(const struct ferry_client_table *t);
size_t ferry_client_table_capacity(const struct ferry_client_table *t);

#endif

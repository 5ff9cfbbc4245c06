/* ferryd: picking a server (ferry.ini(5), [backend] balance).
 *
 * Pure functions over a snapshot of the servers: the caller says for each
 * one its weight, whether it is a backup, whether it is usable (up and not
 * disabled) and how many connections it holds; the balancer returns an
 * index. The only state is per worker and per backend (struct
 * ferry_lb_state), so picking takes no lock.
 *
 * Eligible: usable, weight > 0 and not in `tried`. Backups are considered
 * only when no non-backup server is eligible, so once every primary is down
 * or was tried by this connection, retries fall through to the backups.
 */
#ifndef FERRY_BALANCE_H
#define FERRY_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ferry_config.h"

struct ferry_lb_candidate {
    unsigned weight;
    bool backup;
    bool usable;     /* up and enabled */
    unsigned active; /* current connections */
    uint64_t key;    /* source: the server's identity (ferry_lb_server_key of its
                      * name), so a client keeps its server however the list is
                      * ordered, grown or shrunk; 0: the index is used */
};

struct ferry_lb_state {
    int64_t *current_weight; /* smooth weighted round robin, [n] */
    size_t n;
    uint64_t rng;            /* xorshift state for random */
    size_t rr_cursor;        /* where leastconn's tie-break resumes */
};

/* n: servers of the backend; seed: anything (differs per worker so workers
 * do not move in lockstep). Returns 0 or -ENOMEM. */
int ferry_lb_state_init(struct ferry_lb_state *st, size_t n, uint64_t seed);
void ferry_lb_state_free(struct ferry_lb_state *st);

/* Returns the index of the chosen candidate, or -1 when none is eligible.
 * n must not exceed st->n (servers past it are ignored). tried may be NULL.
 * client_hash (ferry_lb_hash_addr) is used by FERRY_BALANCE_SOURCE only. */
int ferry_lb_pick(enum ferry_balance algo, struct ferry_lb_state *st,
                  const struct ferry_lb_candidate *c, size_t n, const bool *tried,
                  uint32_t client_hash);

/* Identity of a server for source hashing: a hash of its name (never 0). */
uint64_t ferry_lb_server_key(const char *name);

/* Hash of the client's IP address (not its port); an IPv4-mapped IPv6
 * address hashes like the IPv4 one. 0 for other families. Stable across
 * processes and workers. */
uint32_t ferry_lb_hash_addr(const struct sockaddr *sa);

#endif

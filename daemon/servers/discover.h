/* ferryd: a backend's discovered servers (`discover`, ferry.ini(5)).
 *
 * The resolver's bookkeeping of one backend's discovered slots in one
 * generation, and how an answer changes them (serverset.h plans it; this
 * applies it): a new server gets a slot (its config, its counters found by
 * name, its health check), a server that leaves is unlisted (no new
 * connections, its running ones go on, hidden from stats), one that returns
 * gets its slot back. Runs on the resolver's worker only.
 */
#ifndef FERRY_DISCOVER_H
#define FERRY_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen.h"
#include "serverset.h"

struct ferry_discovered {
    struct ferry_gen *g;       /* not a reference: the owner holds one */
    size_t bidx;
    size_t sidx[FERRY_DISCOVER_MAX]; /* each slot's index among the backend's servers */
    struct ferry_sset_slot book[FERRY_DISCOVER_MAX];
    uint64_t gone_ms[FERRY_DISCOVER_MAX];
    size_t nbook;
    bool full_warned;
};

void ferry_discover_init(struct ferry_discovered *ds, struct ferry_gen *g, size_t bidx);

/* Makes the backend's discovered servers follow want[0..n). live: g serves
 * (views change through the workers' inboxes); else it is about to (views
 * written directly, health checks started with the generation). */
void ferry_discover_apply(struct ferry_discovered *ds, const struct ferry_sset_want *want,
                          size_t n, uint64_t now_ms, bool live);

/* Fills server sidx of backend bidx (a slot past the configured ones, not
 * visible yet) as a server named `name` at sa, counters found by name, and
 * makes it count in b->nservers when it is the next one. Worker of the
 * resolver only. false when its counters cannot be had. */
bool ferry_server_fill(struct ferry_gen *g, size_t bidx, size_t sidx, const char *name,
                       const struct sockaddr_storage *sa, socklen_t sa_len, unsigned weight,
                       bool backup, unsigned max_connections, int line);

/* The servers listed now, as wanted entries (carried over by a reload).
 * Returns the count (at most max). */
size_t ferry_discover_listed(const struct ferry_discovered *ds, struct ferry_sset_want *out,
                             size_t max);

#endif

/* ferryd: servers that come and go at runtime (discover).
 *
 * A backend with `discover` owns FERRY_DISCOVER_MAX server slots besides its
 * configured servers. Each DNS answer is turned into the servers it asks for
 * (ferry_sset_wanted: one per distinct ADDRESS:PORT, named so, SRV weight as
 * weight, records above the lowest priority as backups), then
 * ferry_sset_plan() says how the slots follow it:
 *   - a server still asked for keeps its slot (identity stable however the
 *     answer is ordered; counters are kept by name anyway);
 *   - one no longer asked for is unlisted: no new connections, its running
 *     ones go on; its slot is reused only once it is `reusable` (no
 *     connection left and a grace period past, decided by the caller);
 *   - a new one takes a free or reusable slot; when none is left it is
 *     ignored (and counted) until one frees up.
 * Pure functions over plain arrays, so the fuzz target drives them directly.
 */
#ifndef FERRY_SERVERSET_H
#define FERRY_SERVERSET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "dns/resolver.h"
#include "ferry_config.h"

/* Slots of discovered servers per backend (listed and departed together). */
#define FERRY_DISCOVER_MAX 256
/* Servers `add server` may add to a backend between two reloads. */
#define FERRY_ADDED_MAX 16

/* One server an answer asks for. */
struct ferry_sset_want {
    char name[FERRY_NAME_MAX]; /* "ADDRESS:PORT", "[V6]:PORT" */
    struct sockaddr_storage sa;
    socklen_t sa_len;
    unsigned weight;
    bool backup;
};

/* The resolver's bookkeeping of one discovered slot. */
struct ferry_sset_slot {
    char name[FERRY_NAME_MAX];
    bool used;      /* holds a server, listed or departed */
    bool listed;    /* in the last good answer */
    unsigned weight;
    bool backup;
    bool reusable;  /* departed, nothing left on it: may take another name */
};

enum ferry_sset_op {
    FERRY_SSET_KEEP,    /* still listed: weight/backup may have changed */
    FERRY_SSET_RELIST,  /* departed, asked for again: the same slot again */
    FERRY_SSET_UNLIST,  /* left the answer */
    FERRY_SSET_NEW,     /* a new name in a free or reusable slot */
};

struct ferry_sset_action {
    enum ferry_sset_op op;
    size_t slot;
    size_t want;        /* index into the wanted list (not for UNLIST) */
};

/* Fills out[0..max) with the distinct servers of an answer's records
 * (records without an address are skipped; the first of two with one name
 * wins). srv: weights and priorities count (SRV weight 0 becomes 1, above
 * 65535 never happens); else every server has weight 1. Returns the count. */
size_t ferry_sset_wanted(const struct ferry_dns_record *rec, size_t n, bool srv,
                         struct ferry_sset_want *out, size_t max);

/* Plans how slots[0..nslots) (nslots <= cap) follow want[0..nwant). act must
 * have room for nslots + nwant actions. Returns the number of actions;
 * *ignored: wanted servers that found no slot. NEW actions use slots past
 * nslots (in order) before reusable ones. */
size_t ferry_sset_plan(const struct ferry_sset_slot *slots, size_t nslots, size_t cap,
                       const struct ferry_sset_want *want, size_t nwant,
                       struct ferry_sset_action *act, size_t *ignored);

#endif

/* ferryd: keeping server addresses current from DNS (ferryd(8), ferry.ini(5)).
 *
 * Every server given by host name is looked up when its generation is
 * adopted (start, each reload) and again when the answer's TTL ends (clamped
 * to dns_min_ttl..dns_max_ttl, plus up to a tenth of it at random so that
 * names spread out). A failed lookup keeps the last good address and is
 * retried after 1 s, doubling up to 30 s. A name never resolved leaves its
 * server `unresolved`: no traffic, shown in stats, never a start-up failure.
 *
 * Everything runs on the resolver's worker. A new address reaches the data
 * path through each worker's inbox (a small task that writes that worker's
 * view), so picking and connecting never take a lock.
 */
#ifndef FERRY_DNSWATCH_H
#define FERRY_DNSWATCH_H

#include <stddef.h>
#include <stdint.h>

#include "dns/resolver.h"
#include "daemon.h"

/* Starts the resolver on d's worker 0 (nothing is looked up yet). NULL on
 * failure (logged): servers given by host name then stay unresolved. */
struct ferry_dnswatch *ferry_dnswatch_start(struct ferry_daemon *d, const struct ferry_global *gl);

/* Its resolver (for other lookups on worker 0: ACME's server); NULL when
 * dw is NULL. */
struct ferry_dns *ferry_dnswatch_resolver(struct ferry_dnswatch *dw);

/* Adopts generation g (about to go live, on worker 0): carries over the
 * addresses the current generation knows for the same names, applies
 * `resolvers`, and schedules g's lookups (the previous generation's stop). */
void ferry_dnswatch_adopt(struct ferry_dnswatch *dw, struct ferry_gen *old, struct ferry_gen *g);

/* A server's address given at runtime by host name (`add server`, `set
 * server ... addr`): looked up now and kept current by TTL like a configured
 * one, replacing any watch the server had. On the resolver's worker, for the
 * generation that is live. 0, -EAGAIN (no resolver) or -ENOMEM. */
int ferry_dnswatch_watch(struct ferry_dnswatch *dw, struct ferry_gen *g, size_t bidx, size_t sidx,
                         const char *host, uint16_t port);
/* Stops following the server's name (its address was set to a number). */
void ferry_dnswatch_unwatch(struct ferry_dnswatch *dw, struct ferry_gen *g, size_t bidx,
                            size_t sidx);

/* A future, ready once every lookup of the adopted generation has answered
 * once or `ms` passed (start-up waits for it before it reports ready). */
struct ferry_dnswatch_first {
    struct ac_future base;
    struct ferry_dnswatch *dw;
    struct ac_sleep limit;
};
void ferry_dnswatch_first_init(struct ferry_dnswatch_first *f, struct ferry_dnswatch *dw,
                               uint64_t ms);

#endif

/* ferryd: certificates about to expire (ferry.ini(5), ferryctl(8) COMMANDS).
 *
 * Every certificate the running generation serves (listener tls_cert) or
 * presents (backend tls_cert) is checked when a generation goes live and
 * then once a day: one expiring within FERRY_CERT_WARN_DAYS, or already
 * expired, is a warning in the log. ferry_tls_cert_not_after_seconds
 * exposes the same dates to Prometheus.
 */
#ifndef FERRY_CERT_EXPIRY_H
#define FERRY_CERT_EXPIRY_H

#include <stdint.h>

struct ferry_daemon;
struct ferry_gen;

#define FERRY_CERT_WARN_DAYS 14

/* When to check again; owned by the task that calls the tick (worker 0). */
struct ferry_cert_expiry {
    uint64_t checked_reloads; /* d->reloads at the last check */
    uint64_t next_check_ms;   /* 0: never checked */
};

/* Logs a warning for each certificate of g that expires before
 * now + FERRY_CERT_WARN_DAYS (now: Unix time). Returns how many. */
unsigned ferry_cert_expiry_check(const struct ferry_gen *g, int64_t now);

/* Checks the current generation when it changed (a reload) or a day went
 * by since the last check. now_ms: the worker's monotonic clock. */
void ferry_cert_expiry_tick(struct ferry_cert_expiry *e, struct ferry_daemon *d, uint64_t now_ms);

#endif

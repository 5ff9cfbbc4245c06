/* ferryd: the Prometheus endpoint (`metrics = HOST:PORT`, ferry.ini(5)).
 *
 * A tiny HTTP/1.x server on worker 0: one request per connection, the head
 * bounded to 8 KiB and 3 s; idle clients (64 at most, 16 from one address)
 * give way to new ones, so probes are always answered. The exposition is
 * rendered on the blocking pool (two at once; a scrape past them gets 503),
 * never on the worker's loop. GET (or HEAD) /metrics, query string allowed,
 * answers the same text as `show metrics`; /ready answers 200 `ready` while
 * serving and no stop signal came, else 503 (so a load balancer takes the
 * instance out during shutdown_delay); /live answers 200 while every event
 * loop stamped its heartbeat within FERRY_LIVE_LIMIT_MS, else 503. Other
 * paths 404, other methods 405, a malformed request 400, an over-long head
 * 431.
 */
#ifndef FERRY_METRICS_HTTP_H
#define FERRY_METRICS_HTTP_H

#include "daemon.h"

struct ferry_metrics;

/* An event loop whose heartbeat is older than this is stalled (/live 503). */
#define FERRY_LIVE_LIMIT_MS 5000

/* Binds addr and starts serving on worker 0 of d->rt. NULL with *err set to
 * -errno on failure. */
struct ferry_metrics *ferry_metrics_start(struct ferry_daemon *d, const struct ferry_addr *addr,
                                          int *err);
/* Serves fd, the listening socket of addr an old process handed over. */
struct ferry_metrics *ferry_metrics_adopt(struct ferry_daemon *d, const struct ferry_addr *addr,
                                          int fd, int *err);
/* After the runtime was freed (its tasks dropped): frees what is left. */
void ferry_metrics_free(struct ferry_metrics *m);

/* Builds the whole HTTP answer to the request head req[0..len) (exposed for
 * tests). overflow: the head exceeded the bound; incomplete: the client
 * ended before the head did. */
void ferry_metrics_answer(struct ferry_daemon *d, const char *req, size_t len, bool overflow,
                          bool incomplete, struct ferry_buf *out);

/* The exposition rendered into a new struct ferry_buf (arg: the daemon),
 * or NULL; a blocking-pool job (asynccore/blocking.h), with its cleanup. */
void *ferry_metrics_render_job(void *arg);
void ferry_metrics_render_free(void *result);

#endif

/* ferryd: `show conns` and `shutdown conn ID`, asked of every worker
 * through its inbox.
 *
 * A worker's connection list is its own and takes no lock: only its thread
 * links, unlinks and reads it. The control socket (a task on worker 0) does
 * not read the lists; this future spawns a small task on every worker, which
 * copies its own connections' facts on its own thread and hands the copy
 * back, and merges the answers in worker order once all came or the bounded
 * wait ended. `shutdown conn` asks the same way: the worker that owns the
 * connection ends it on its own thread (ferry_conn_kill), the others answer
 * that they have none.
 */
#ifndef FERRY_CONNS_VIEW_H
#define FERRY_CONNS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "asynccore/future.h"
#include "asynccore/timer.h"
#include "daemon.h"

/* How long `show conns` waits for the workers' answers. A running worker
 * answers within one loop turn; see conns_view.c for a worker that does not. */
#define FERRY_CONNS_VIEW_WAIT_MS 2000u

struct ferry_conns_gather;

struct ferry_conns_view {
    struct ac_future base;
    struct ferry_daemon *d;
    uint64_t wait_ms;
    struct ferry_conns_gather *g; /* shared with the workers' tasks; NULL before the first poll */
    struct ac_sleep deadline;
    uint64_t kill_id; /* 0: show conns; else shutdown conn kill_id */
    /* Output, once Ready (owned by the view until its drop): */
    struct ferry_conn_snapshot *conns; /* worker 0's first, each worker's newest first */
    size_t n;
    unsigned missing; /* workers left out: no answer within wait_ms */
    int err;          /* 0, or -ENOMEM: a copy could not be made (nothing to show) */
    size_t killed;    /* shutdown conn: connections ended (0 or 1) */
};

/* Asks every worker of d when first polled; Ready once every worker
 * answered or wait_ms passed. May be dropped at any time: an answer that
 * comes later is freed by whichever side lets go of the shared state last. */
void ferry_conns_view_init(struct ferry_conns_view *v, struct ferry_daemon *d, uint64_t wait_ms);
/* The same for `shutdown conn id` (id > 0): Ready with `killed` set. */
void ferry_conns_view_init_kill(struct ferry_conns_view *v, struct ferry_daemon *d,
                                uint64_t wait_ms, uint64_t id);

#endif

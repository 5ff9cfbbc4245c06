/* ferryd: rendering the control socket's `show` answers (ferryctl(8) COMMANDS).
 *
 * Each function appends one complete answer, ending with a newline, to `out`
 * and returns 0, or -ENOMEM (out->oom is then set too). They read the current
 * generation and the stats registry (`show conns` what it is given); they
 * may be called from any thread.
 */
#ifndef FERRY_RENDER_H
#define FERRY_RENDER_H

#include <stdbool.h>

#include "buf.h"
#include "daemon.h"

/* `show info`: "key: value" lines, or one JSON object. */
int ferry_render_info(struct ferry_daemon *d, bool json, struct ferry_buf *out);
/* `show stats`: an aligned table, or the JSON of ferryctl(8) COMMANDS. */
int ferry_render_stats(struct ferry_daemon *d, bool json, struct ferry_buf *out);
/* `show conns`: one line per connection of v[0..n), or {"conns": [...]}.
 * The copies come from the workers (conns_view.h). */
int ferry_render_conns(const struct ferry_conn_snapshot *v, size_t n, bool json,
                       struct ferry_buf *out);
/* `show metrics` and GET /metrics: Prometheus text exposition 0.0.4. */
int ferry_render_metrics(struct ferry_daemon *d, struct ferry_buf *out);

/* The version shown by `show info`. */
const char *ferry_version(void);

#endif

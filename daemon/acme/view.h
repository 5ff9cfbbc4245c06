/* ferryd ACME: `show acme` and the ACME metrics (ferryctl.8, ferry.ini.5). */
#ifndef FERRY_ACME_VIEW_H
#define FERRY_ACME_VIEW_H

#include <stdbool.h>

#include "buf.h"

struct ferry_acme_reg;

/* `show acme`: one line per certificate (acme, names, state, not_after,
 * renew_at, last_error), or {"acme": [{...}]}. reg may be NULL (no
 * tls_acme anywhere). 0 or -ENOMEM. */
int ferry_acme_view(struct ferry_acme_reg *reg, bool json, struct ferry_buf *out);

/* ferry_acme_orders_total{acme, result}: orders since start. */
void ferry_acme_view_metrics(struct ferry_acme_reg *reg, struct ferry_buf *out);

#endif

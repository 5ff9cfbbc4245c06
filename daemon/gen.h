/* ferryd: building configuration generations (see ferryd.h). */
#ifndef FERRY_GEN_H
#define FERRY_GEN_H

#include <stdbool.h>

#include "ferryd.h"

/* Builds a generation from cfg (ownership of cfg passes to it, also on
 * failure). resolve: look up server host names (blocking). Returns NULL with
 * the reasons in errs. */
struct ferry_gen *ferry_gen_build(struct ferry_daemon *d, struct ferry_config *cfg,
                                  bool resolve, struct ferry_config_errors *errs);

/* Resizes the persistent per-listener caps to this generation's values. */
void ferry_gen_apply_limits(struct ferry_gen *g);

/* Balancer state of a backend on one worker. */
struct ferry_lb_state *ferry_gen_lb(struct ferry_gen *g, unsigned worker, size_t backend);

#endif

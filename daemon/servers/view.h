/* ferryd: publishing a server's address to every worker's view.
 *
 * The data path reads a server's address, weight and backup flag from its
 * own worker's view (gen.h), so picking and connecting take no lock. The
 * resolver's worker changes them here: while a generation is not serving
 * yet the views are written directly; once it serves, each worker gets a
 * small task through its inbox that writes its own view.
 */
#ifndef FERRY_VIEW_H
#define FERRY_VIEW_H

#include <stdbool.h>
#include <stddef.h>

#include "gen.h"

/* Sets server sidx of backend bidx to v in every worker's view (and grows
 * each view's count to cover it). live: g is serving. */
void ferry_view_publish(struct ferry_gen *g, size_t bidx, size_t sidx,
                        const struct ferry_view_server *v, bool live);

#endif

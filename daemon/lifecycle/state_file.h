/* ferryd: the state file (ferry.ini(5) `state_file`): runtime server state that
 * survives restarts.
 *
 * One line per server whose runtime state differs from its configuration:
 *   server BACKEND/SERVER ready|drain|maint WEIGHT|-
 * (`-`: the configured weight), after a comment line. Written whole to a
 * temporary file in the same directory, synced, then renamed over the old
 * one, so a reader (ferryd at its next start) sees the old file or the new
 * one, never a mix. A file that does not parse is ignored with a warning:
 * it never stops ferryd from starting.
 */
#ifndef FERRY_STATE_FILE_H
#define FERRY_STATE_FILE_H

#include "daemon.h"
#include "gen.h"

/* At start, before serving: applies the file named by g's state_file to
 * g's servers. Returns how many servers it set, or -1 when the file was
 * ignored (logged). A missing file is a first start: 0. */
int ferry_state_file_load(struct ferry_daemon *d, const struct ferry_gen *g);

/* Writes the current state now, blocking (the blocking pool, or after the
 * loops stopped; main does so at stop when anything changed, in case the
 * last change's write had not run yet). 0, or -errno (logged). No
 * state_file: 0. */
int ferry_state_file_save(struct ferry_daemon *d);


#endif

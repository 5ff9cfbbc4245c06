/* ferryd: runtime state that lasts (ferry.ini(5) `state_file`, ferryd(8)
 * UPGRADE): what the control socket changed, kept across reloads, restarts
 * and upgrades.
 *
 * The state is text, one line per fact that differs from the
 * configuration, after a comment line:
 *   listener NAME disabled
 *   added BACKEND/SERVER ADDRESS weight=N [backup] [max_connections=N]
 *   server BACKEND/SERVER ready|drain|maint WEIGHT|- [addr=ADDRESS cfg=CONFIGURED]
 * (`-`: the configured weight; addr= an address set at runtime, applied
 * while the configuration still gives the server the address cfg=). The
 * same text is the state file, what an upgrade hands to the new process,
 * and what a reload carries over. Entries for servers or listeners the
 * configuration no longer has are dropped; a server the configuration now
 * defines itself takes the configuration's settings.
 *
 * The file is written whole to a temporary file of a unique name in the
 * same directory (O_EXCL), synced, renamed over the old one, and the
 * directory synced, so a reader sees the old file or the new one, never a
 * mix. A file that does not parse is ignored with a warning: it never
 * stops ferryd from starting.
 */
#ifndef FERRY_STATE_FILE_H
#define FERRY_STATE_FILE_H

#include "asynccore/blocking.h"
#include "daemon.h"
#include "gen.h"

/* The current runtime state as text (malloc'd), or NULL (out of memory). */
char *ferry_state_file_render(struct ferry_daemon *d);

/* Applies state text to the current generation (worker 0, or before the
 * loops run). origin names it in the log ("state_file", "upgrade",
 * "reload"). Returns how many entries it applied, or -1 when the text does
 * not parse (logged, nothing applied). */
int ferry_state_apply(struct ferry_daemon *d, const char *text, const char *origin);

/* Parses state text without applying it: how many entries it holds, or -1
 * with why it does not parse and at which line (the parser alone; the fuzz
 * target feeds it). */
int ferry_state_parse(const char *text, const char **why, int *lineno);

/* At start, after the first generation went live: applies the file named
 * by state_file, if any. A missing file is a first start: 0. */
int ferry_state_file_load(struct ferry_daemon *d);

/* Writes the current state now, blocking (the blocking pool, or after the
 * loops stopped). 0, or -errno (logged). No state_file, or handed over to a
 * new process (the file is its to write): 0. */
int ferry_state_file_save(struct ferry_daemon *d);

/* `set server B/S addr ADDRESS` went through: remember the address so it
 * is kept (written by the next save, handed over by an upgrade, carried
 * over by a reload), with the address the configuration gives the server
 * now (none for a server added at runtime). Worker 0. 0 or -ENOMEM. */
int ferry_state_note_addr(struct ferry_daemon *d, const char *backend, const char *server,
                          const char *addr);
/* A server added or deleted: no address set at runtime is kept for it. */
void ferry_state_forget_addr(struct ferry_daemon *d, const char *backend, const char *server);
/* Frees the remembered addresses (at exit). */
void ferry_state_notes_free(struct ferry_daemon *d);

/* A future that writes the state on the blocking pool: rc is 0, or -errno
 * with why in err ("state_file /var/lib/ferry/state: Permission denied"),
 * for the `warning: ` line that follows `ok`. Poll on any worker. */
struct ferry_state_save {
    struct ac_future base;
    struct ferry_daemon *d;
    struct ac_blocking job;
    bool started;
    int rc;
    char err[FERRY_PATH_MAX + 128];
};
void ferry_state_save_init(struct ferry_state_save *s, struct ferry_daemon *d);

#endif

/* ferryd: re-read TLS files when they change (`tls_watch`, ferry.ini(5)).
 *
 * Every file named by tls_cert (and its key), tls_client_ca, tls_ca and
 * tls_ticket_keys in the running configuration is watched with inotify on
 * the directories along its path, each for the name of the next component,
 * following symbolic links component by component. So a file written in
 * place, replaced by rename, or reached through a symbolic link that is
 * re-pointed (a Kubernetes secret volume swapping its `..data` link,
 * certbot re-pointing `live/` links) is seen, and so is a directory on the
 * way being replaced. After the events settle (DEBOUNCE_MS of quiet, at most
 * MAX_WAIT_MS after the first) ferryd reads the TLS files of the running
 * generation again into new contexts, used by new handshakes (connections
 * in their handshake keep the one they started with). Nothing else changes:
 * it is no reload (servers added at runtime, weights, counters stay;
 * `reloads` does not count it, ferry_tls_reloads_total does). Logged as
 * msg=tls_reloaded; a file that fails to load keeps its old context in use
 * and logs msg=tls_reload_failed with the FILE:LINE-style error.
 *
 * Path walking and inotify reads happen on a thread of their own, never on
 * an event loop; the thread hands each trigger to worker 0 as a small task
 * (which logs what changed, builds the contexts on the blocking pool and
 * swaps them in). After every reload and every re-read, successful or not,
 * the watches are rebuilt from the configuration then running (and the new
 * targets of re-pointed links);
 * with tls_watch = off nothing is watched.
 */
#ifndef FERRY_TLS_WATCH_H
#define FERRY_TLS_WATCH_H

struct ferry_daemon;
struct ferry_tls_watch;

/* Starts the watcher thread. Returns it, or NULL with *err set (-errno). */
struct ferry_tls_watch *ferry_tls_watch_start(struct ferry_daemon *d, int *err);

/* Stops and joins the thread and frees everything; call once the event loops
 * stopped and before the runtime is freed. NULL is a no-op. */
void ferry_tls_watch_stop(struct ferry_tls_watch *w);

#endif

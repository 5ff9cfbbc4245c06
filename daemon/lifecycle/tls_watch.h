/* ferryd: reload when a TLS file changes (`tls_watch`, ferry.ini(5)).
 *
 * Every file named by tls_cert (and its key), tls_client_ca, tls_ca and
 * tls_ticket_keys in the running configuration is watched with inotify on
 * the directories along its path, each for the name of the next component,
 * following symbolic links component by component. So a file written in
 * place, replaced by rename, or reached through a symbolic link that is
 * re-pointed (a Kubernetes secret volume swapping its `..data` link,
 * certbot re-pointing `live/` links) is seen, and so is a directory on the
 * way being replaced. After the events settle (DEBOUNCE_MS of quiet, at most
 * MAX_WAIT_MS after the first) ferryd reloads exactly as on SIGHUP: the same
 * checks, counters and log lines; a broken file fails that reload, which is
 * logged and keeps the running set.
 *
 * Path walking and inotify reads happen on a thread of their own, never on
 * an event loop; the thread hands each trigger to worker 0 as a small task
 * (which logs what changed and raises SIGHUP for the signal task there).
 * After every reload, successful or not, the watches are rebuilt from the
 * configuration then running (and the new targets of re-pointed links);
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

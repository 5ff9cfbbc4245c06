/* ferryd ACME: certificates that obtain and renew themselves (RFC 8555,
 * tls-alpn-01 of RFC 8737; ferry.ini.5 [acme NAME] and tls_acme).
 *
 * struct ferry_acme_reg is the daemon's registry, kept across reloads: one slot
 * per certificate a tls_acme asks for (account + names + settings), each
 * with the material served now and the status `show acme` reports, and the
 * table of pending tls-alpn-01 challenges. One task per slot (order.c) runs
 * on one worker and orders, stores and renews; it never blocks its loop.
 *
 * The TLS layer reads slots on every handshake without a lock: the material
 * pointer is atomic, and material a renewal replaces is kept (retired) until
 * the slot is freed, so a handshake that loaded the old pointer can still
 * take its own references. Challenges are looked up under a mutex, only for
 * ClientHellos that offer ALPN acme-tls/1.
 *
 * Lifetimes: a slot is reference counted (registry, TLS contexts, its task).
 * ferry_acme_sync() after each configuration that goes live starts the
 * tasks of new slots and stops those no longer named, so an order in flight
 * goes on across a reload that keeps its tls_acme. */
#ifndef FERRY_ACME_H
#define FERRY_ACME_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_config.h"

struct ferry_acme_reg;
struct ferry_acme_slot;
struct ac_worker;
struct ac_runtime;

/* The registry. Tasks run on w (the resolver's worker); blocking work on
 * rt's pool. NULL when out of memory. */
struct ferry_acme_reg *ferry_acme_new(struct ac_runtime *rt, struct ac_worker *w);
/* Host names in `directory` are looked up with dns (on w); NULL: numeric
 * addresses only. Call before the first ferry_acme_sync. */
struct ferry_dns;
void ferry_acme_use_dns(struct ferry_acme_reg *a, struct ferry_dns *dns);
/* Frees the registry, after the runtime (whose drop ended every task and
 * joined the blocking pool). NULL is a no-op. */
void ferry_acme_free(struct ferry_acme_reg *a);

/* The slot of tls_acme t (of cfg's listener), made when new. A new
 * reference; NULL when out of memory. */
struct ferry_acme_slot *ferry_acme_slot_get(struct ferry_acme_reg *a, const struct ferry_config *cfg,
                                            const struct ferry_tls_acme *t);
void ferry_acme_slot_unref(struct ferry_acme_slot *s);

/* Starts the tasks of the slots cfg names and stops the others. */
void ferry_acme_sync(struct ferry_acme_reg *a, const struct ferry_config *cfg);

/* ---- for the TLS layer (any worker, every handshake) ---- */

/* True when sni (lower case or not, a trailing dot allowed) is one of the
 * slot's names. */
bool ferry_acme_slot_matches(const struct ferry_acme_slot *s, const char *sni);
/* Installs the slot's certificate on ssl; false when it has none yet. */
bool ferry_acme_slot_install(struct ferry_acme_slot *s, SSL *ssl);
/* Installs the pending challenge certificate for sni on ssl; false when
 * there is none. */
bool ferry_acme_challenge_install(struct ferry_acme_reg *a, const char *sni, SSL *ssl);
/* Path of the slot's stored certificate and its notAfter (false: none yet). */
bool ferry_acme_slot_not_after(struct ferry_acme_slot *s, char *path, size_t cap,
                               int64_t *not_after);

/* ---- for the control socket and metrics ---- */

enum ferry_acme_state { FERRY_ACME_NONE, FERRY_ACME_ORDERING, FERRY_ACME_VALID, FERRY_ACME_FAILED };
const char *ferry_acme_state_name(enum ferry_acme_state st);

struct ferry_acme_status {
    char acme[FERRY_NAME_MAX];
    char names[1024];          /* comma-separated */
    char cert_path[1024];
    enum ferry_acme_state state;
    int64_t not_after, renew_at; /* Unix time; 0: none */
    char last_error[600];        /* "" none */
};
/* A copy of every slot's status (malloc'd array, *n entries); NULL when none. */
struct ferry_acme_status *ferry_acme_statuses(struct ferry_acme_reg *a, size_t *n);

struct ferry_acme_count {
    char acme[FERRY_NAME_MAX];
    uint64_t ok, failed;
};
/* Orders per account since start (malloc'd array); NULL when none. */
struct ferry_acme_count *ferry_acme_counts(struct ferry_acme_reg *a, size_t *n);

#endif

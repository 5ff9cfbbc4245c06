/* ferryd ACME: the storage directory (blocking: call from the blocking pool).
 *
 * DIR (0700) holds
 *   account.key     the account's P-256 key (PEM, 0600), created once;
 *   BASE.crt        the certificate chain of one tls_acme (leaf first);
 *   BASE.key        its key (PEM, 0600);
 *   BASE.lock       locked (flock) by the instance that orders for BASE, so
 *                   instances sharing DIR place one order; the others wait
 *                   and pick the result up;
 *   BASE.challenges the pending tls-alpn-01 challenges of that order
 *                   ("NAME KEY_AUTHORIZATION" lines), so every instance
 *                   sharing DIR answers them;
 *   BASE.order      the URL of the order in flight, and BASE.order.key the
 *                   key of its CSR once made: the process that takes the
 *                   lock next (after a restart or an upgrade) goes on with
 *                   that order instead of placing another.
 * BASE is the certificate's first name, followed for several names by '+'
 * and 8 hex digits of a hash of all of them (NAME+1a2b3c4d). Files are written to a temporary
 * name, synced and renamed, so a reader never sees half a file. */
#ifndef FERRY_ACME_STORE_H
#define FERRY_ACME_STORE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "acme/material.h"

/* Creates DIR (and missing parents) with mode 0700. 0 or -errno. */
int ferry_acme_store_mkdir(const char *dir);

/* Reads DIR/account.key, or creates it (exclusively: a concurrent creator's
 * key wins). NULL with why (static or errbuf) on failure. */
EVP_PKEY *ferry_acme_store_account_key(const char *dir, char *errbuf, size_t cap);

/* The stored certificate of BASE, or NULL (none, unreadable: why says). */
struct ferry_acme_material *ferry_acme_store_load_cert(const char *dir, const char *base,
                                                       char *why, size_t cap);

/* Stores chain and key for BASE (key first, then the chain). 0 or -errno. */
int ferry_acme_store_save_cert(const char *dir, const char *base, const char *chain_pem,
                               EVP_PKEY *key);

/* Tries to take BASE.lock without waiting: its descriptor (>= 0; closing it
 * releases the lock), -EWOULDBLOCK when another holds it, or -errno. */
int ferry_acme_store_try_lock(const char *dir, const char *base);

/* Writes (text non-NULL) or removes (NULL) BASE.challenges. 0 or -errno. */
int ferry_acme_store_put_challenges(const char *dir, const char *base, const char *text);
/* Its content (malloc'd), or NULL when there is none. */
char *ferry_acme_store_get_challenges(const char *dir, const char *base);

/* The order in flight: its URL (url non-NULL), or its CSR's key (key
 * non-NULL), or with both NULL both files removed. 0 or -errno. */
int ferry_acme_store_put_order(const char *dir, const char *base, const char *url, EVP_PKEY *key);
/* Its URL (malloc'd; NULL: none) and *key (NULL: no CSR made yet). */
char *ferry_acme_store_get_order(const char *dir, const char *base, EVP_PKEY **key);

/* Path of a file in DIR, into buf. */
void ferry_acme_store_path(char *buf, size_t cap, const char *dir, const char *base,
                           const char *ext);

#endif

/* ferryd: TLS session-ticket keys (ferry.ini(5), tls_ticket_keys).
 *
 * A key is 80 bytes, as nginx's ssl_session_ticket_key and HAProxy's
 * tls-ticket-keys use them: a 16-byte name carried in the ticket, a 32-byte
 * HMAC-SHA256 secret and a 32-byte AES-256-CBC key. The first key of a set
 * encrypts new tickets; every key decrypts, and a ticket made with another
 * than the first is renewed with the first. OpenSSL calls the same callback
 * for TLS 1.2 session tickets and TLS 1.3 PSK tickets, so a fleet sharing
 * one file resumes each other's sessions in both versions; rotation is
 * rewriting the file (new key first, the previous ones after it) and
 * reloading.
 *
 * The file holds base64 keys (108 characters each), newest first: one a
 * line, or wrapped over lines as `openssl rand -base64 80` writes them (64
 * columns); empty lines and lines starting with '#' are skipped (but may
 * not cut a key in two).
 */
#ifndef FERRY_TICKET_KEYS_H
#define FERRY_TICKET_KEYS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>

#define FERRY_TICKET_KEY_LEN 80
#define FERRY_TICKET_KEYS_MAX 256 /* keys a file may hold */

struct ferry_ticket_keys;

/* Reads path. Returns the set (free with ferry_ticket_keys_free), or NULL
 * with the reason in err ("line 3: not a base64 80-byte key"). */
struct ferry_ticket_keys *ferry_ticket_keys_load(const char *path, char *err, size_t errlen);

/* The same from an open stream (left open): the parser itself, which the
 * fuzz target feeds through fmemopen(3). */
struct ferry_ticket_keys *ferry_ticket_keys_read(FILE *fp, char *err, size_t errlen);

/* How many keys a set holds (1..FERRY_TICKET_KEYS_MAX). */
size_t ferry_ticket_keys_count(const struct ferry_ticket_keys *k);

/* A set of one key from raw bytes (the per-process random key). */
struct ferry_ticket_keys *ferry_ticket_keys_from_raw(const unsigned char raw[FERRY_TICKET_KEY_LEN]);

void ferry_ticket_keys_free(struct ferry_ticket_keys *k);

/* Makes ctx encrypt and decrypt its tickets with keys; the SSL_CTX takes
 * ownership (also on failure). Returns 0 or -ENOMEM. */
int ferry_ticket_keys_install(SSL_CTX *ctx, struct ferry_ticket_keys *keys);

#endif

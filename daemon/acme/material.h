/* ferryd ACME: a certificate with its key and chain, as served.
 *
 * Immutable once made; the TLS layer installs it per handshake
 * (SSL_use_cert_and_key takes its own references). */
#ifndef FERRY_ACME_MATERIAL_H
#define FERRY_ACME_MATERIAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_acme_material {
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;      /* the issuers after the leaf (may be empty) */
    int64_t not_before, not_after; /* Unix time */
    struct ferry_acme_material *retired_next; /* see slot.h */
};

/* Parses a PEM chain (leaf first) and checks that key matches the leaf.
 * NULL with why set on failure. */
struct ferry_acme_material *ferry_acme_material_from_pem(const char *pem, size_t len,
                                                         EVP_PKEY *key, const char **why);
void ferry_acme_material_free(struct ferry_acme_material *m);
/* True when the leaf carries every name (exactly, no wildcard). */
bool ferry_acme_material_covers(const struct ferry_acme_material *m, char *const *names,
                                size_t n);

#endif

/* ferryd ACME: certificate keys and the CSR that finalizes an order
 * (RFC 8555 7.4: PKCS#10, DER, the names as subjectAltName dNSNames). */
#ifndef FERRY_ACME_CSR_H
#define FERRY_ACME_CSR_H

#include <openssl/evp.h>
#include <stddef.h>

#include "ferry_config.h"

/* A new key of the configured key_type; NULL on failure. */
EVP_PKEY *ferry_acme_cert_key_new(enum ferry_acme_key_type type);

/* The DER CSR for names[0..n) signed with key (SHA-256), CN names[0].
 * malloc'd into *der; returns its length, or 0 on failure. */
size_t ferry_acme_csr_der(EVP_PKEY *key, char *const *names, size_t n, unsigned char **der);

#endif

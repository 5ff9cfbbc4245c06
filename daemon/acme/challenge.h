/* ferryd ACME: the tls-alpn-01 challenge certificate (RFC 8737 3).
 *
 * A self-signed certificate for one DNS name (its only subjectAltName) that
 * carries the acmeIdentifier extension (OID 1.3.6.1.5.5.7.1.31, critical):
 * an OCTET STRING of the SHA-256 of the key authorization. It is served to a
 * ClientHello that offers ALPN acme-tls/1 for that name while the challenge
 * is pending. */
#ifndef FERRY_ACME_CHALLENGE_H
#define FERRY_ACME_CHALLENGE_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "acme/material.h"

#define FERRY_ACME_OID_IDENTIFIER "1.3.6.1.5.5.7.1.31"

/* Makes the certificate and its (new P-256) key. 0, or -ENOMEM / -EINVAL. */
int ferry_acme_challenge_cert(const char *name, const char *key_authorization, X509 **cert,
                              EVP_PKEY **key);

/* The same as served material (no chain); NULL on failure. */
struct ferry_acme_material *ferry_acme_challenge_material(const char *name,
                                                          const char *key_authorization);

#endif

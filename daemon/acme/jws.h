/* ferryd ACME: the account key and JSON Web Signatures (RFC 7515, 7638, 8555 6.2).
 *
 * The account key is ECDSA P-256 and signs with ES256 (the signature is r||s,
 * 32 bytes each, not DER). Its JWK thumbprint (RFC 7638: SHA-256 over the
 * members crv, kty, x, y in lexicographic order without whitespace, which is
 * jansson's JSON_COMPACT | JSON_SORT_KEYS output) makes the key authorization
 * of a challenge: "TOKEN.THUMBPRINT". Nothing here does I/O. */
#ifndef FERRY_ACME_JWS_H
#define FERRY_ACME_JWS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

/* base64url without padding (RFC 7515 2). malloc'd; NULL when out of memory. */
char *ferry_acme_b64url(const void *data, size_t len);
/* Decodes base64url (padding optional) into a malloc'd buffer; NULL on bad input. */
unsigned char *ferry_acme_b64url_decode(const char *s, size_t *len);

/* A new P-256 account key; NULL on failure. */
EVP_PKEY *ferry_acme_account_key_new(void);

/* The public JWK of an EC P-256 key: {"crv","kty","x","y"}. New reference. */
json_t *ferry_acme_jwk(EVP_PKEY *key);
/* RFC 7638 thumbprint, base64url. malloc'd; NULL on failure. */
char *ferry_acme_thumbprint(EVP_PKEY *key);
/* "TOKEN.THUMBPRINT". malloc'd; NULL on failure. */
char *ferry_acme_key_authorization(EVP_PKEY *key, const char *token);

/* A flattened JWS (RFC 8555 6.2) of payload for url: protected header
 * {alg ES256, nonce, url} with kid when given (an account's URL), else the
 * jwk. payload NULL: POST-as-GET (empty payload). Returns the request body
 * (malloc'd JSON), NULL on failure. */
char *ferry_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                     const json_t *payload);

/* The External Account Binding object for newAccount (RFC 8555 7.3.4): a JWS
 * over the account's JWK, HS256 with the CA's key (base64url), kid the CA's
 * key id. New reference; NULL on bad key or failure. */
json_t *ferry_acme_eab(EVP_PKEY *key, const char *eab_kid, const char *eab_hmac_b64,
                       const char *url);

#endif

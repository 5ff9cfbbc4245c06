/* ferryd ACME: certificate material (see material.h). */
#include "acme/material.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_ctx.h"

void ferry_acme_material_free(struct ferry_acme_material *m)
{
    if (!m)
        return;
    X509_free(m->leaf);
    EVP_PKEY_free(m->key);
    sk_X509_pop_free(m->chain, X509_free);
    free(m);
}

static bool time_of(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

struct ferry_acme_material *ferry_acme_material_from_pem(const char *pem, size_t len,
                                                         EVP_PKEY *key, const char **why)
{
    struct ferry_acme_material *m = calloc(1, sizeof(*m));
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    *why = "out of memory";
    if (!m || !bio || !(m->chain = sk_X509_new_null()))
        goto fail;
    *why = "no certificate in the chain";
    if (!(m->leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        goto fail;
    for (X509 *x; (x = PEM_read_bio_X509(bio, NULL, NULL, NULL));) {
        if (!sk_X509_push(m->chain, x)) {
            X509_free(x);
            goto fail;
        }
    }
    ERR_clear_error();
    *why = "the key does not match the certificate";
    if (X509_check_private_key(m->leaf, key) != 1)
        goto fail;
    *why = "unreadable validity dates";
    if (!time_of(X509_get0_notBefore(m->leaf), &m->not_before) ||
        !time_of(X509_get0_notAfter(m->leaf), &m->not_after))
        goto fail;
    EVP_PKEY_up_ref(key);
    m->key = key;
    BIO_free(bio);
    return m;
fail:
    ERR_clear_error();
    BIO_free(bio);
    ferry_acme_material_free(m);
    return NULL;
}

bool ferry_acme_material_covers(const struct ferry_acme_material *m, char *const *names,
                                size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (X509_check_host(m->leaf, names[i], strlen(names[i]), X509_CHECK_FLAG_NO_WILDCARDS,
                            NULL) != 1)
            return false;
    return true;
}

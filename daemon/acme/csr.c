/* ferryd ACME: certificate keys and CSRs with OpenSSL 3 (see csr.h). */
#include "acme/csr.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

EVP_PKEY *ferry_acme_cert_key_new(enum ferry_acme_key_type type)
{
    if (type == FERRY_ACME_KEY_RSA_2048)
        return EVP_RSA_gen(2048);
    return EVP_EC_gen("P-256");
}

/* subjectAltName = DNS:a, DNS:b ... */
static X509_EXTENSION *san_ext(char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    X509_EXTENSION *ext = NULL;
    for (size_t i = 0; gens && i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !ASN1_STRING_set(s, names[i], (int)strlen(names[i]))) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto out;
        }
    }
    if (gens)
        ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
out:
    sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
    return ext;
}

size_t ferry_acme_csr_der(EVP_PKEY *key, char *const *names, size_t n, unsigned char **der)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = n ? san_ext(names, n) : NULL;
    size_t out = 0;
    *der = NULL;
    if (!req || !subj || !exts || !san || X509_REQ_set_version(req, 0) != 1 ||
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)names[0],
                                   -1, -1, 0) != 1 ||
        X509_REQ_set_subject_name(req, subj) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
        !sk_X509_EXTENSION_push(exts, san))
        goto fail;
    san = NULL; /* owned by exts */
    if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto fail;
    int len = i2d_X509_REQ(req, der);
    if (len > 0)
        out = (size_t)len;
fail:
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    return out;
}

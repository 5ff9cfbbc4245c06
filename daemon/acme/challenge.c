/* ferryd ACME: tls-alpn-01 challenge certificates (see challenge.h). */
#include "acme/challenge.h"

#include <errno.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* extnValue: the DER of Authorization ::= OCTET STRING (SIZE (32)). */
static X509_EXTENSION *identifier_ext(const char *key_authorization)
{
    unsigned char der[2 + SHA256_DIGEST_LENGTH] = {0x04, SHA256_DIGEST_LENGTH};
    SHA256((const unsigned char *)key_authorization, strlen(key_authorization), der + 2);
    ASN1_OBJECT *obj = OBJ_txt2obj(FERRY_ACME_OID_IDENTIFIER, 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    if (obj && val && ASN1_OCTET_STRING_set(val, der, sizeof(der)))
        ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, val);
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(val);
    return ext;
}

static int add_san(X509 *x, const char *name)
{
    char value[300];
    snprintf(value, sizeof(value), "DNS:%s", name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, value);
    int ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

int ferry_acme_challenge_cert(const char *name, const char *key_authorization, X509 **cert,
                              EVP_PKEY **key)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_EXTENSION *ext = identifier_ext(key_authorization);
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int rc = -ENOMEM;
    if (!k || !x || !ext || RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    rc = -EINVAL;
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || X509_set_version(x, 2) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)name, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 || X509_set_pubkey(x, k) != 1 ||
        !add_san(x, name) || X509_add_ext(x, ext, -1) != 1 || X509_sign(x, k, EVP_sha256()) <= 0)
        goto out;
    *cert = x, *key = k;
    x = NULL, k = NULL;
    rc = 0;
out:
    BN_free(bn);
    X509_EXTENSION_free(ext);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

struct ferry_acme_material *ferry_acme_challenge_material(const char *name,
                                                          const char *key_authorization)
{
    struct ferry_acme_material *m = calloc(1, sizeof(*m));
    if (!m || !(m->chain = sk_X509_new_null()) ||
        ferry_acme_challenge_cert(name, key_authorization, &m->leaf, &m->key) < 0) {
        ferry_acme_material_free(m);
        return NULL;
    }
    return m;
}

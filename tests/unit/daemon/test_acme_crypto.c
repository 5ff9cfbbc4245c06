/* ACME crypto: base64url, the JWK thumbprint (against a value computed
 * outside OpenSSL), ES256 JWS signatures verified with OpenSSL, EAB, the CSR
 * (names, key, signature) and the tls-alpn-01 challenge certificate
 * (acmeIdentifier: critical, SHA-256 of the key authorization). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "acme/challenge.h"
#include "acme/csr.h"
#include "acme/jws.h"
#include "acme/material.h"

/* openssl ecparam -name prime256v1 -genkey; thumbprint by Python's hashlib
 * over {"crv":"P-256","kty":"EC","x":...,"y":...}. */
static const char KEY_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfG0GVKIYUdOXu5dj\n"
    "SfZeX/Ih9hqYEVqFH5ip8zyo98ihRANCAARyqHTobK3OVrGWvS0dKtQhbq06/ndR\n"
    "EbGEMOzAK9txXi+f70E+CYXb00/7MrotGsFybbZ7Eo25DRfNKI88rlhd\n"
    "-----END PRIVATE KEY-----\n";
#define KEY_X "cqh06Gytzlaxlr0tHSrUIW6tOv53URGxhDDswCvbcV4"
#define KEY_Y "L5_vQT4JhdvTT_syui0awXJttnsSjbkNF80ojzyuWF0"
#define KEY_THUMB "38j70d3_7xXdnKOdIK3c-Fd83ujs97v4bim8p7muukw"

static EVP_PKEY *test_key(void)
{
    BIO *b = BIO_new_mem_buf(KEY_PEM, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

static void test_b64url(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } v[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
        {"\xfb\xff", "-_8"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *e = ferry_acme_b64url(v[i].in, strlen(v[i].in));
        assert_string_equal(e, v[i].out);
        size_t n;
        unsigned char *d = ferry_acme_b64url_decode(e, &n);
        assert_non_null(d);
        assert_int_equal(n, strlen(v[i].in));
        assert_memory_equal(d, v[i].in, n);
        free(d);
        free(e);
    }
    size_t n;
    assert_null(ferry_acme_b64url_decode("a+b/", &n)); /* not the URL alphabet */
    assert_null(ferry_acme_b64url_decode("abcde", &n));
}

static void test_thumbprint(void **state)
{
    (void)state;
    EVP_PKEY *k = test_key();
    json_t *jwk = ferry_acme_jwk(k);
    assert_string_equal(json_string_value(json_object_get(jwk, "x")), KEY_X);
    assert_string_equal(json_string_value(json_object_get(jwk, "y")), KEY_Y);
    json_decref(jwk);
    char *tp = ferry_acme_thumbprint(k);
    assert_string_equal(tp, KEY_THUMB);
    char *ka = ferry_acme_key_authorization(k, "tok-1");
    assert_string_equal(ka, "tok-1." KEY_THUMB);
    free(ka);
    free(tp);
    EVP_PKEY_free(k);
}

/* Checks an ES256 flattened JWS with OpenSSL: r||s back to DER. */
static void verify_es256(EVP_PKEY *k, json_t *jws)
{
    const char *prot = json_string_value(json_object_get(jws, "protected"));
    const char *payload = json_string_value(json_object_get(jws, "payload"));
    const char *sig = json_string_value(json_object_get(jws, "signature"));
    size_t n;
    unsigned char *raw = ferry_acme_b64url_decode(sig, &n);
    assert_int_equal(n, 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    char input[4096];
    snprintf(input, sizeof(input), "%s.%s", prot, payload);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)der_len, (unsigned char *)input,
                                      strlen(input)), 1);
    /* and a changed payload does not verify */
    input[strlen(input) - 1] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_not_equal(EVP_DigestVerify(md, der, (size_t)der_len, (unsigned char *)input,
                                          strlen(input)), 1);
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(raw);
}

static json_t *decode_part(json_t *jws, const char *key)
{
    size_t n;
    unsigned char *d = ferry_acme_b64url_decode(json_string_value(json_object_get(jws, key)), &n);
    json_t *v = n ? json_loadb((char *)d, n, 0, NULL) : json_null();
    free(d);
    return v;
}

static void test_jws(void **state)
{
    (void)state;
    EVP_PKEY *k = ferry_acme_account_key_new();
    json_t *payload = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    char *body = ferry_acme_jws(k, NULL, "nonce-1", "https://ca/new-acct", payload);
    json_t *jws = json_loads(body, 0, NULL);
    assert_non_null(jws);
    json_t *prot = decode_part(jws, "protected");
    assert_string_equal(json_string_value(json_object_get(prot, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "nonce-1");
    assert_string_equal(json_string_value(json_object_get(prot, "url")), "https://ca/new-acct");
    assert_non_null(json_object_get(prot, "jwk"));
    assert_null(json_object_get(prot, "kid"));
    json_t *pl = decode_part(jws, "payload");
    assert_true(json_is_true(json_object_get(pl, "termsOfServiceAgreed")));
    verify_es256(k, jws);
    json_decref(pl);
    json_decref(prot);
    json_decref(jws);
    free(body);

    /* with the account URL: kid, no jwk; POST-as-GET: empty payload */
    body = ferry_acme_jws(k, "https://ca/acct/1", "n2", "https://ca/order/1", NULL);
    jws = json_loads(body, 0, NULL);
    prot = decode_part(jws, "protected");
    assert_string_equal(json_string_value(json_object_get(prot, "kid")), "https://ca/acct/1");
    assert_null(json_object_get(prot, "jwk"));
    assert_string_equal(json_string_value(json_object_get(jws, "payload")), "");
    verify_es256(k, jws);
    json_decref(prot);
    json_decref(jws);
    free(body);

    /* EAB: HS256 over the JWK with the CA's key */
    json_t *eab = ferry_acme_eab(k, "kid-7", "c2VjcmV0LWtleS0xMjM0NTY", "https://ca/new-acct");
    assert_non_null(eab);
    prot = decode_part(eab, "protected");
    assert_string_equal(json_string_value(json_object_get(prot, "alg")), "HS256");
    assert_string_equal(json_string_value(json_object_get(prot, "kid")), "kid-7");
    json_t *jwk = decode_part(eab, "payload"), *mine = ferry_acme_jwk(k);
    assert_true(json_equal(jwk, mine));
    char input[2048];
    snprintf(input, sizeof(input), "%s.%s", json_string_value(json_object_get(eab, "protected")),
             json_string_value(json_object_get(eab, "payload")));
    unsigned char mac[32];
    size_t mac_len;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, "secret-key-123456", 17,
                              (unsigned char *)input, strlen(input), mac, 32, &mac_len));
    char *want = ferry_acme_b64url(mac, mac_len);
    assert_string_equal(json_string_value(json_object_get(eab, "signature")), want);
    free(want);
    json_decref(jwk);
    json_decref(mine);
    json_decref(prot);
    json_decref(eab);
    json_decref(payload);
    EVP_PKEY_free(k);
}

static void test_csr(void **state)
{
    (void)state;
    for (int type = 0; type < 2; type++) {
        EVP_PKEY *k = ferry_acme_cert_key_new((enum ferry_acme_key_type)type);
        assert_non_null(k);
        assert_int_equal(EVP_PKEY_get_base_id(k), type ? EVP_PKEY_RSA : EVP_PKEY_EC);
        char *names[] = {"a.example.test", "b.example.test"};
        unsigned char *der = NULL;
        size_t n = ferry_acme_csr_der(k, names, 2, &der);
        assert_true(n > 0);
        const unsigned char *p = der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)n);
        assert_non_null(req);
        assert_int_equal(X509_REQ_verify(req, k), 1);
        STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
        GENERAL_NAMES *san = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        assert_int_equal(sk_GENERAL_NAME_num(san), 2);
        for (int i = 0; i < 2; i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
            assert_int_equal(g->type, GEN_DNS);
            assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), names[i]);
        }
        GENERAL_NAMES_free(san);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        X509_REQ_free(req);
        OPENSSL_free(der);
        EVP_PKEY_free(k);
    }
}

static void test_challenge_cert(void **state)
{
    (void)state;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    const char *ka = "token-abc." KEY_THUMB;
    assert_int_equal(ferry_acme_challenge_cert("a.example.test", ka, &x, &k), 0);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_check_host(x, "a.example.test", 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_host(x, "b.example.test", 0, 0, NULL), 1);
    ASN1_OBJECT *oid = OBJ_txt2obj(FERRY_ACME_OID_IDENTIFIER, 1);
    int idx = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(idx >= 0);
    X509_EXTENSION *ext = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    unsigned char want[34] = {0x04, 0x20};
    SHA256((const unsigned char *)ka, strlen(ka), want + 2);
    assert_int_equal(ASN1_STRING_length(v), 34);
    assert_memory_equal(ASN1_STRING_get0_data(v), want, 34);
    ASN1_OBJECT_free(oid);
    X509_free(x);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),          cmocka_unit_test(test_thumbprint),
        cmocka_unit_test(test_jws),             cmocka_unit_test(test_csr),
        cmocka_unit_test(test_challenge_cert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

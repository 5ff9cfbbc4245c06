/* ferryd ACME: account key, JWK thumbprint and JWS signing (see jws.h). */
#include "acme/jws.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ferry_acme_b64url(const void *data, size_t len)
{
    const unsigned char *in = data;
    char *out = malloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;
    if (!out)
        return NULL;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_value(char c)
{
    const char *p = c ? strchr(B64URL, c) : NULL;
    return p ? (int)(p - B64URL) : -1;
}

unsigned char *ferry_acme_b64url_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 3);
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    *len = o;
    return out;
}

EVP_PKEY *ferry_acme_account_key_new(void)
{
    return EVP_EC_gen("P-256");
}

/* A 32-byte coordinate of the public point, base64url. */
static char *coordinate(EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    unsigned char buf[32];
    char *out = NULL;
    if (EVP_PKEY_get_bn_param(key, param, &bn) == 1 && BN_bn2binpad(bn, buf, 32) == 32)
        out = ferry_acme_b64url(buf, 32);
    BN_free(bn);
    return out;
}

json_t *ferry_acme_jwk(EVP_PKEY *key)
{
    char *x = coordinate(key, OSSL_PKEY_PARAM_EC_PUB_X);
    char *y = coordinate(key, OSSL_PKEY_PARAM_EC_PUB_Y);
    json_t *jwk = NULL;
    if (x && y)
        jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC", "x", x, "y", y);
    free(x);
    free(y);
    return jwk;
}

char *ferry_acme_thumbprint(EVP_PKEY *key)
{
    json_t *jwk = ferry_acme_jwk(key);
    char *text = jwk ? json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *out = NULL;
    if (text) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)text, strlen(text), md);
        out = ferry_acme_b64url(md, sizeof(md));
    }
    free(text);
    json_decref(jwk);
    return out;
}

char *ferry_acme_key_authorization(EVP_PKEY *key, const char *token)
{
    char *tp = ferry_acme_thumbprint(key);
    char *out = NULL;
    if (tp) {
        size_t n = strlen(token) + strlen(tp) + 2;
        out = malloc(n);
        if (out)
            snprintf(out, n, "%s.%s", token, tp);
    }
    free(tp);
    return out;
}

/* ES256 over "PROTECTED.PAYLOAD": r||s, base64url. */
static char *es256(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128], raw[64];
    size_t der_len = sizeof(der);
    char *out = NULL;
    ECDSA_SIG *sig = NULL;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, strlen(input)) != 1)
        goto out;
    const unsigned char *p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig || BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
        goto out;
    out = ferry_acme_b64url(raw, sizeof(raw));
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    return out;
}

/* base64url of a JSON value's compact text ("" for NULL). */
static char *b64_json(const json_t *v)
{
    if (!v)
        return strdup("");
    char *text = json_dumps(v, JSON_COMPACT);
    char *out = text ? ferry_acme_b64url(text, strlen(text)) : NULL;
    free(text);
    return out;
}

/* {"protected","payload","signature"} with sig computed by sign(). */
static char *flattened(const json_t *protected, const json_t *payload,
                       char *(*sign)(const void *k, const char *in), const void *k, bool text,
                       json_t **obj)
{
    char *p64 = b64_json(protected), *pl64 = b64_json(payload), *sig = NULL, *out = NULL;
    char *input = NULL;
    if (!p64 || !pl64)
        goto out;
    size_t n = strlen(p64) + strlen(pl64) + 2;
    if (!(input = malloc(n)))
        goto out;
    snprintf(input, n, "%s.%s", p64, pl64);
    if (!(sig = sign(k, input)))
        goto out;
    json_t *jws = json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64,
                            "signature", sig);
    if (jws && text) {
        out = json_dumps(jws, JSON_COMPACT);
        json_decref(jws);
    } else if (jws) {
        *obj = jws;
        out = sig, sig = NULL; /* non-NULL: success */
    }
out:
    free(p64);
    free(pl64);
    free(input);
    free(sig);
    return out;
}

static char *sign_es256(const void *k, const char *in)
{
    return es256((EVP_PKEY *)k, in);
}

char *ferry_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                     const json_t *payload)
{
    json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    if (!prot)
        return NULL;
    int rc = kid ? json_object_set_new(prot, "kid", json_string(kid))
                 : json_object_set_new(prot, "jwk", ferry_acme_jwk(key));
    char *out = rc == 0 ? flattened(prot, payload, sign_es256, key, true, NULL) : NULL;
    json_decref(prot);
    return out;
}

struct hmac_key {
    const unsigned char *key;
    size_t len;
};

static char *sign_hs256(const void *k, const char *in)
{
    const struct hmac_key *h = k;
    unsigned char mac[32];
    size_t mac_len = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, h->key, h->len,
                   (const unsigned char *)in, strlen(in), mac, sizeof(mac), &mac_len))
        return NULL;
    return ferry_acme_b64url(mac, mac_len);
}

json_t *ferry_acme_eab(EVP_PKEY *key, const char *eab_kid, const char *eab_hmac_b64,
                       const char *url)
{
    struct hmac_key h;
    unsigned char *raw = ferry_acme_b64url_decode(eab_hmac_b64, &h.len);
    json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
    json_t *jwk = ferry_acme_jwk(key), *out = NULL;
    h.key = raw;
    if (raw && prot && jwk) {
        char *ok = flattened(prot, jwk, sign_hs256, &h, false, &out);
        free(ok);
    }
    free(raw);
    json_decref(prot);
    json_decref(jwk);
    return out;
}

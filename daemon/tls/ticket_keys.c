/* ferryd: TLS session-ticket keys (see ticket_keys.h). */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/ticket_keys.h"

#define LINE_MAX_LEN 1024

struct ticket_key {
    unsigned char name[16], hmac[32], aes[32];
};

struct ferry_ticket_keys {
    size_t n;
    struct ticket_key k[];
};

size_t ferry_ticket_keys_count(const struct ferry_ticket_keys *k) { return k->n; }

void ferry_ticket_keys_free(struct ferry_ticket_keys *k)
{
    if (k == NULL)
        return;
    OPENSSL_cleanse(k->k, k->n * sizeof(k->k[0]));
    free(k);
}

static void split(struct ticket_key *k, const unsigned char raw[FERRY_TICKET_KEY_LEN])
{
    memcpy(k->name, raw, 16);
    memcpy(k->hmac, raw + 16, 32);
    memcpy(k->aes, raw + 48, 32);
}

struct ferry_ticket_keys *ferry_ticket_keys_from_raw(const unsigned char raw[FERRY_TICKET_KEY_LEN])
{
    struct ferry_ticket_keys *k = malloc(sizeof(*k) + sizeof(k->k[0]));
    if (k == NULL)
        return NULL;
    k->n = 1;
    split(&k->k[0], raw);
    return k;
}

/* 80 bytes are 108 base64 characters, the last one '=' padding. */
#define KEY_B64 108

/* The line without its end and surrounding blanks (in place). */
static char *trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Decodes KEY_B64 gathered characters: 0, or -1 when they are not one
 * base64 80-byte key. */
static int decode_key(const char *b64, unsigned char raw[FERRY_TICKET_KEY_LEN])
{
    unsigned char buf[84];
    if (b64[KEY_B64 - 1] != '=' || b64[KEY_B64 - 2] == '=')
        return -1;
    int len = EVP_DecodeBlock(buf, (const unsigned char *)b64, KEY_B64);
    if (len != 81) /* EVP_DecodeBlock counts the padding as a zero byte */
        return -1;
    memcpy(raw, buf, FERRY_TICKET_KEY_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

/* The reader: a key is whole on one line, or wrapped over several (as
 * `openssl rand -base64 80` writes it, at 64 columns): lines are joined
 * until its 108 characters are there. A blank line, a comment or the end
 * of the file in the middle of a key is an error at the line it began. */
struct key_reader {
    char b64[KEY_B64 + 1];
    size_t len;
    int first_line; /* where the key being gathered began */
};

/* One line (trimmed): 1 when it completed a key (in raw), 0 when it was
 * taken (or skipped), -1 with *bad_line set when it breaks a key. */
static int reader_line(struct key_reader *r, const char *s, int lineno, int *bad_line,
                       unsigned char raw[FERRY_TICKET_KEY_LEN])
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == '#') {
        *bad_line = r->first_line;
        return r->len ? -1 : 0;
    }
    if (r->len == 0)
        r->first_line = lineno;
    *bad_line = r->first_line;
    if (n > KEY_B64 - r->len)
        return -1;
    memcpy(r->b64 + r->len, s, n);
    r->len += n;
    if (r->len < KEY_B64)
        return 0;
    r->len = 0;
    return decode_key(r->b64, raw) == 0 ? 1 : -1;
}

struct ferry_ticket_keys *ferry_ticket_keys_load(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    struct ferry_ticket_keys *k = ferry_ticket_keys_read(fp, err, errlen);
    fclose(fp);
    return k;
}

struct ferry_ticket_keys *ferry_ticket_keys_read(FILE *fp, char *err, size_t errlen)
{
    struct ferry_ticket_keys *k =
        malloc(sizeof(*k) + FERRY_TICKET_KEYS_MAX * sizeof(k->k[0]));
    char line[LINE_MAX_LEN + 2];
    struct key_reader rd = {.len = 0};
    int lineno = 0, bad = 0;
    bool ok = k != NULL;
    if (k == NULL)
        snprintf(err, errlen, "out of memory");
    else
        k->n = 0;
    while (ok && fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        else if (!feof(fp)) {
            snprintf(err, errlen, "line %d: too long for a key", lineno);
            ok = false;
            break;
        }
        unsigned char raw[FERRY_TICKET_KEY_LEN];
        int rc = reader_line(&rd, trim(line), lineno, &bad, raw);
        if (rc < 0) {
            ok = false;
        } else if (rc == 1 && k->n == FERRY_TICKET_KEYS_MAX) {
            snprintf(err, errlen, "line %d: more than %d keys", lineno, FERRY_TICKET_KEYS_MAX);
            ok = false;
            bad = 0;
        } else if (rc == 1) {
            split(&k->k[k->n++], raw);
        }
        OPENSSL_cleanse(raw, sizeof(raw));
    }
    if (ok && rd.len > 0) { /* the file ended inside a key */
        ok = false;
        bad = rd.first_line;
    }
    if (!ok && bad > 0)
        snprintf(err, errlen, "line %d: not a base64 80-byte key (openssl rand -base64 80)", bad);
    OPENSSL_cleanse(line, sizeof(line));
    OPENSSL_cleanse(&rd, sizeof(rd));
    if (ok && ferror(fp)) {
        snprintf(err, errlen, "%s", strerror(errno ? errno : EIO));
        ok = false;
    }
    if (ok && k->n == 0) {
        snprintf(err, errlen, "no key in the file");
        ok = false;
    }
    if (!ok) {
        ferry_ticket_keys_free(k);
        return NULL;
    }
    return k;
}

/* ---- the OpenSSL side ---- */

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int keys_index = -1; /* process-wide ex_data index, read-only once set */

static void keys_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    ferry_ticket_keys_free(ptr);
}

static void index_init(void)
{
    keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, keys_free_cb);
}

static int mac_init(EVP_MAC_CTX *hctx, const struct ticket_key *k)
{
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    return EVP_MAC_init(hctx, k->hmac, sizeof(k->hmac), params) == 1 ? 0 : -1;
}

/* enc: a new ticket with the first key. Decrypting: the key named in the
 * ticket; 0 (no resumption, a full handshake) when none has that name; 2
 * (resume, then send a ticket under the current key) for an older key. */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    const struct ferry_ticket_keys *keys =
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_index);
    if (keys == NULL || keys->n == 0)
        return -1;
    if (enc) {
        const struct ticket_key *k = &keys->k[0];
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
            mac_init(hctx, k) != 0)
            return -1;
        memcpy(key_name, k->name, 16);
        return 1;
    }
    for (size_t i = 0; i < keys->n; i++) {
        const struct ticket_key *k = &keys->k[i];
        if (memcmp(key_name, k->name, 16) != 0)
            continue;
        if (mac_init(hctx, k) != 0 ||
            EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

int ferry_ticket_keys_install(SSL_CTX *ctx, struct ferry_ticket_keys *keys)
{
    pthread_once(&index_once, index_init);
    if (keys == NULL || keys_index < 0) {
        ferry_ticket_keys_free(keys);
        return -ENOMEM;
    }
    struct ferry_ticket_keys *old = SSL_CTX_get_ex_data(ctx, keys_index);
    if (!SSL_CTX_set_ex_data(ctx, keys_index, keys)) {
        ferry_ticket_keys_free(keys);
        return -ENOMEM;
    }
    ferry_ticket_keys_free(old);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    return 0;
}

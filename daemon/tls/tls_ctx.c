/* ferryd: OpenSSL contexts from the configuration (see tls_ctx.h).
 *
 * Certificates and SNI: every tls_cert file is loaded into its own
 * (leaf, key, chain) triple kept in a struct attached to the listener's
 * SSL_CTX (ex_data, freed with it). A certificate callback picks the triple
 * for the requested server name and installs it on the SSL only; the SSL
 * keeps the listener's SSL_CTX, hence its session id context and its ticket
 * keys. Swapping the whole SSL_CTX per name instead (SSL_set_SSL_CTX) makes
 * it easy to let a session minted under one set of rules resume under
 * another (nginx CVE-2025-23419).
 *
 * Certificates with the same names but different key types (ECDSA and RSA
 * for one host) form a group installed together, so OpenSSL serves the one
 * the client's signature algorithms allow.
 *
 * ACME (tls_acme): the listener's ACME certificates are slots handed in by
 * the ACME wing through struct ferry_tls_acme_ops (this wing does not know
 * it), chosen by SNI before the tls_cert files (a name
 * with no certificate issued yet falls back to them); a ClientHello that
 * offers ALPN acme-tls/1 is a tls-alpn-01 validation and gets the pending
 * challenge certificate for its name and nothing else (RFC 8737).
 *
 * Sessions: stateless tickets only (no server-side cache to grow or lock),
 * with the keys of tls_ticket_keys (shared by a fleet, see ticket_keys.h) or
 * else one random key per process (installed by the generation builder, so
 * tickets survive reloads), and a session id context hashed from what makes
 * a listener's rules, so a session never resumes on another listener.
 */
#include "tls/tls_ctx.h"
#include "tls/ticket_keys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One tls_cert file. */
struct srv_cert {
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
    size_t group; /* index of the first certificate carrying the same names */
};

/* What a listener's SSL_CTX carries besides OpenSSL's own state. */
struct srv_data {
    struct srv_cert *certs;
    size_t ncerts;
    unsigned char *alpn; /* wire format: length-prefixed names, server order */
    size_t alpn_len;
    const struct ferry_tls_acme_ops *acme; /* NULL: no tls_acme, or ferryd -t */
    void *acme_owner;               /* the ops' first argument for challenges */
    void **slots;                   /* the listener's tls_acme certificates */
    size_t nslots;
};

/* Where builder errors go. */
struct build {
    const char *cfg_path;
    struct ferry_config_errors *errs;
    bool failed;
};

static void build_error(struct build *b, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void build_error(struct build *b, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->failed = true;
    if (b->errs != NULL)
        ferry_config_error_add(b->errs, b->cfg_path, line, "%s", msg);
}

/* The reason of the most recent OpenSSL error (queue cleared). */
static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r != NULL)
        snprintf(buf, n, "%s", r);
    else if (e != 0)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
    return buf;
}

/* ---- the per-listener data, owned by the SSL_CTX ---- */

static void srv_data_free(struct srv_data *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->ncerts; i++) {
        X509_free(d->certs[i].leaf);
        EVP_PKEY_free(d->certs[i].key);
        sk_X509_pop_free(d->certs[i].chain, X509_free);
    }
    free(d->certs);
    free(d->alpn);
    for (size_t i = 0; i < d->nslots; i++)
        d->acme->unref(d->slots[i]);
    free(d->slots);
    free(d);
}

static void srv_data_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    srv_data_free(ptr);
}

/* OpenSSL's ex_data indexes are process-wide; ours is allocated once and is
 * read-only afterwards. */
static pthread_once_t srv_index_once = PTHREAD_ONCE_INIT;
static int srv_index = -1;

static void srv_index_init(void)
{
    srv_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, srv_data_free_cb);
}

static int srv_data_index(void)
{
    pthread_once(&srv_index_once, srv_index_init);
    return srv_index;
}

/* ---- loading a tls_cert file ---- */

/* Never prompt for a pass phrase on the terminal: encrypted keys fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static void srv_cert_clear(struct srv_cert *c);

/* The private key of a tls_cert: from the certificate's own file (bio,
 * rewound) or from its KEY file. NULL after reporting why. */
static EVP_PKEY *load_key(struct build *b, BIO *cert_bio, const char *cert_path,
                          const char *key_path, const char *what, int line)
{
    EVP_PKEY *key = NULL;
    if (key_path == NULL) {
        if (BIO_reset(cert_bio) != 0)
            build_error(b, line, "cannot read %s %s: cannot rewind", what, cert_path);
        else if ((key = PEM_read_bio_PrivateKey(cert_bio, NULL, no_passphrase, NULL)) == NULL)
            build_error(b, line, "no usable private key in %s %s (missing or encrypted)", what,
                        cert_path);
        return key;
    }
    FILE *fp = fopen(key_path, "r");
    if (fp == NULL) {
        build_error(b, line, "cannot read the key of %s %s: %s", what, key_path, strerror(errno));
        return NULL;
    }
    key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (key == NULL)
        build_error(b, line, "no usable private key in %s (missing or encrypted)", key_path);
    return key;
}

/* Loads a certificate chain from path and its key (from key_path, or path
 * when NULL). what names the key in messages ("tls_cert"). */
static bool load_cert(struct build *b, struct srv_cert *c, const char *path,
                      const char *key_path, const char *what, int line)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        build_error(b, line, "cannot read %s %s: %s", what, path, strerror(errno));
        return false;
    }
    BIO *bio = BIO_new_fp(fp, BIO_CLOSE);
    if (bio == NULL) {
        fclose(fp);
        build_error(b, line, "cannot read %s %s: out of memory", what, path);
        return false;
    }
    memset(c, 0, sizeof(*c));
    bool ok = false;
    c->leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
    if (c->leaf == NULL) {
        build_error(b, line, "no certificate in %s %s", what, path);
        goto out;
    }
    c->chain = sk_X509_new_null();
    if (c->chain == NULL) {
        build_error(b, line, "cannot read %s %s: out of memory", what, path);
        goto out;
    }
    for (X509 *x; (x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL;) {
        if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            build_error(b, line, "cannot read %s %s: out of memory", what, path);
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the file ends the loop with an error */
    c->key = load_key(b, bio, path, key_path, what, line);
    if (c->key == NULL)
        goto out;
    if (X509_check_private_key(c->leaf, c->key) != 1) {
        if (key_path != NULL)
            build_error(b, line, "private key %s does not match the certificate in %s %s",
                        key_path, what, path);
        else
            build_error(b, line, "private key does not match the certificate in %s %s", what,
                        path);
        goto out;
    }
    ok = true;
out:
    ERR_clear_error();
    BIO_free(bio);
    if (!ok)
        srv_cert_clear(c);
    return ok;
}

static void srv_cert_clear(struct srv_cert *c)
{
    X509_free(c->leaf);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof(*c));
}

/* Same subjectAltName extension, or both without one and the same subject. */
static bool same_names(X509 *a, X509 *b)
{
    int ia = X509_get_ext_by_NID(a, NID_subject_alt_name, -1);
    int ib = X509_get_ext_by_NID(b, NID_subject_alt_name, -1);
    if (ia >= 0 && ib >= 0)
        return ASN1_STRING_cmp(X509_EXTENSION_get_data(X509_get_ext(a, ia)),
                               X509_EXTENSION_get_data(X509_get_ext(b, ib))) == 0;
    if (ia >= 0 || ib >= 0)
        return false;
    return X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0;
}

static void group_certs(struct srv_data *d)
{
    for (size_t i = 0; i < d->ncerts; i++) {
        d->certs[i].group = i;
        for (size_t j = 0; j < i; j++) {
            if (d->certs[j].group == j && same_names(d->certs[i].leaf, d->certs[j].leaf)) {
                d->certs[i].group = j;
                break;
            }
        }
    }
}

/* ---- per-connection flags (SSL ex_data) ---- */

enum {
    SSL_FLAG_ACME = 1,    /* the ClientHello offered ALPN acme-tls/1 */
    SSL_FLAG_NO_CERT = 2, /* no certificate for the name (reason=no_certificate) */
};

static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;
static int ssl_index = -1;

static void ssl_index_init(void)
{
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static uintptr_t ssl_flags(const SSL *ssl)
{
    pthread_once(&ssl_index_once, ssl_index_init);
    return ssl_index < 0 ? 0 : (uintptr_t)SSL_get_ex_data(ssl, ssl_index);
}

static void ssl_flag(SSL *ssl, uintptr_t flag)
{
    uintptr_t f = ssl_flags(ssl) | flag;
    if (ssl_index >= 0)
        SSL_set_ex_data(ssl, ssl_index, (void *)f);
}

bool ferry_tls_no_certificate(const SSL *ssl)
{
    return ssl != NULL && (ssl_flags(ssl) & SSL_FLAG_NO_CERT);
}

bool ferry_tls_acme_challenge(const SSL *ssl)
{
    return ssl != NULL && (ssl_flags(ssl) & SSL_FLAG_ACME);
}

/* True when an ALPN list (wire format) offers acme-tls/1. */
static bool acme_alpn_offered(const unsigned char *list, size_t len)
{
    const size_t k = sizeof(FERRY_TLS_ACME_ALPN) - 1;
    for (size_t i = 0; i < len;) {
        size_t n = list[i++];
        if (n > len - i)
            return false;
        if (n == k && memcmp(list + i, FERRY_TLS_ACME_ALPN, k) == 0)
            return true;
        i += n;
    }
    return false;
}

/* A ClientHello offering acme-tls/1 on a listener with tls_acme. */
static int hello_cb(SSL *ssl, int *al, void *arg)
{
    (void)al, (void)arg;
    const unsigned char *p = NULL;
    size_t n = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &n) == 1 && n >= 2) {
        size_t len = (size_t)p[0] << 8 | p[1];
        if (len <= n - 2 && acme_alpn_offered(p + 2, len))
            ssl_flag(ssl, SSL_FLAG_ACME);
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ---- SNI: certificate selection ---- */

/* The first certificate whose names match exactly, else the first matching
 * by a one-label wildcard, else the first (default). X509_check_host reads
 * the subjectAltName DNS names, or the CN when there are none. */
static size_t pick_cert(const struct srv_data *d, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return 0;
    size_t len = strlen(name);
    for (size_t i = 0; i < d->ncerts; i++)
        if (X509_check_host(d->certs[i].leaf, name, len, X509_CHECK_FLAG_NO_WILDCARDS, NULL) == 1)
            return i;
    for (size_t i = 0; i < d->ncerts; i++)
        if (X509_check_host(d->certs[i].leaf, name, len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                            NULL) == 1)
            return i;
    return 0;
}

static bool key_type_installed(const struct srv_data *d, size_t group, size_t upto, int type)
{
    for (size_t k = group; k < upto; k++)
        if (d->certs[k].group == group && EVP_PKEY_get_base_id(d->certs[k].key) == type)
            return true;
    return false;
}

/* Runs during the handshake once the ClientHello (and its SNI) is parsed,
 * before the cipher is chosen. Installs the picked certificate group on the
 * SSL, replacing the default one copied from the SSL_CTX. */
static int cert_cb(SSL *ssl, void *arg)
{
    const struct srv_data *d = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (ssl_flags(ssl) & SSL_FLAG_ACME) { /* tls-alpn-01: the challenge certificate only */
        SSL_certs_clear(ssl);
        return sni != NULL && d->acme != NULL && d->acme->challenge(d->acme_owner, sni, ssl);
    }
    for (size_t i = 0; sni != NULL && i < d->nslots; i++) {
        if (!d->acme->matches(d->slots[i], sni))
            continue;
        SSL_certs_clear(ssl);
        if (d->acme->install(d->slots[i], ssl))
            return 1;
        break; /* not issued yet: the listener's other certificate */
    }
    if (d->ncerts == 0) { /* no tls_cert: the first ACME certificate issued */
        SSL_certs_clear(ssl);
        for (size_t i = 0; i < d->nslots; i++)
            if (d->acme->install(d->slots[i], ssl))
                return 1;
        ssl_flag(ssl, SSL_FLAG_NO_CERT);
        return 0;
    }
    size_t g = d->certs[pick_cert(d, sni)].group;
    SSL_certs_clear(ssl);
    for (size_t i = g; i < d->ncerts; i++) {
        const struct srv_cert *c = &d->certs[i];
        if (c->group != g || key_type_installed(d, g, i, EVP_PKEY_get_base_id(c->key)))
            continue;
        if (SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) != 1)
            return 0;
    }
    return 1;
}

/* ---- ALPN ---- */

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". Returns false on an empty or
 * over-long (> 255 bytes) name. */
static bool alpn_wire(const char *list, unsigned char **out, size_t *out_len)
{
    size_t n = strlen(list);
    unsigned char *w = malloc(n + 1);
    if (w == NULL)
        return false;
    size_t len = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        /* Trim blanks around each name ("h2, http/1.1"). */
        while (plen > 0 && (*p == ' ' || *p == '\t'))
            p++, plen--;
        while (plen > 0 && (p[plen - 1] == ' ' || p[plen - 1] == '\t'))
            plen--;
        if (plen == 0 || plen > 255) {
            free(w);
            return false;
        }
        w[len++] = (unsigned char)plen;
        memcpy(w + len, p, plen);
        len += plen;
        if (end == NULL)
            break;
        p = end + 1;
    }
    *out = w;
    *out_len = len;
    return true;
}

/* Server preference; no common protocol: go on without ALPN, as nginx does. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct srv_data *d = arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (ssl_flags(ssl) & SSL_FLAG_ACME) { /* RFC 8737 3: acme-tls/1 and nothing else */
        *out = (const unsigned char *)FERRY_TLS_ACME_ALPN;
        *outlen = (unsigned char)(sizeof(FERRY_TLS_ACME_ALPN) - 1);
        return SSL_TLSEXT_ERR_OK;
    }
    if (d->alpn == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, &sel_len, d->alpn, (unsigned int)d->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- the server context ---- */

static void setup_common(SSL_CTX *ctx, int min_version)
{
    /* Pinned here whatever OPENSSL_CONF says: never below TLS 1.2. */
    SSL_CTX_set_min_proto_version(ctx, min_version > TLS1_2_VERSION ? min_version : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
}

/* Errors at the line of the key that set the list. */
static void setup_ciphers(struct build *b, SSL_CTX *ctx, const struct ferry_listener *l)
{
    char why[160];
    if (l->tls_ciphers == NULL && SSL_CTX_set_cipher_list(ctx, FERRY_TLS12_DEFAULT_CIPHERS) != 1)
        build_error(b, l->line, "listener %s: cannot set the default TLS 1.2 ciphers: %s",
                    l->name, ssl_reason(why, sizeof(why)));
    if (l->tls_ciphers != NULL && SSL_CTX_set_cipher_list(ctx, l->tls_ciphers) != 1)
        build_error(b, l->tls_ciphers_line > 0 ? l->tls_ciphers_line : l->line,
                    "invalid tls_ciphers \"%s\": %s", l->tls_ciphers, ssl_reason(why, sizeof(why)));
    if (l->tls_ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, l->tls_ciphersuites) != 1)
        build_error(b, l->tls_ciphersuites_line > 0 ? l->tls_ciphersuites_line : l->line,
                    "invalid tls_ciphersuites \"%s\": %s", l->tls_ciphersuites,
                    ssl_reason(why, sizeof(why)));
}

static void load_certs(struct build *b, SSL_CTX *ctx, struct srv_data *d,
                       const struct ferry_listener *l)
{
    if (l->ntls_certs == 0) /* the configuration's own check reported it */
        return;
    d->certs = calloc(l->ntls_certs, sizeof(*d->certs));
    if (d->certs == NULL) {
        build_error(b, l->line, "listener %s: out of memory", l->name);
        return;
    }
    for (size_t i = 0; i < l->ntls_certs; i++) {
        int line = l->tls_cert_lines ? l->tls_cert_lines[i] : l->line;
        const char *key = l->tls_cert_keys ? l->tls_cert_keys[i] : NULL;
        if (load_cert(b, &d->certs[d->ncerts], l->tls_certs[i], key, "tls_cert", line))
            d->ncerts++;
    }
    if (d->ncerts == 0)
        return;
    group_certs(d);
    /* The default certificate also sits in the SSL_CTX itself; the callback
     * replaces it per connection. */
    const struct srv_cert *c = &d->certs[0];
    char why[160];
    if (SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) != 1)
        build_error(b, l->tls_cert_lines ? l->tls_cert_lines[0] : l->line,
                    "cannot use tls_cert %s: %s", l->tls_certs[0], ssl_reason(why, sizeof(why)));
    SSL_CTX_set_cert_cb(ctx, cert_cb, d);
}

static void setup_client_ca(struct build *b, SSL_CTX *ctx, const struct ferry_listener *l)
{
    const char *ca = l->tls_client_ca;
    int line = l->tls_client_ca_line > 0 ? l->tls_client_ca_line : l->line;
    char why[160];
    FILE *fp = fopen(ca, "r");
    if (fp == NULL) {
        build_error(b, line, "cannot read tls_client_ca %s: %s", ca, strerror(errno));
        return;
    }
    fclose(fp);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        build_error(b, line, "cannot load tls_client_ca %s: %s", ca, ssl_reason(why, sizeof(why)));
        return;
    }
    /* The CA names sent in the CertificateRequest help clients pick a cert. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names != NULL)
        SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
}

static void digest_str(EVP_MD_CTX *md, const char *s)
{
    if (s != NULL)
        EVP_DigestUpdate(md, s, strlen(s));
    EVP_DigestUpdate(md, "", 1); /* separator: ("ab","c") != ("a","bc") */
}

/* Session id context: a hash of the listener's name, client CA and
 * certificates. A session carries it and resumes only where it matches. */
static void setup_sessions(struct build *b, SSL_CTX *ctx, const struct ferry_listener *l)
{
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned int sid_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    if (ok) {
        digest_str(md, "ferry listener");
        digest_str(md, l->name);
        digest_str(md, l->tls_client_ca);
        for (size_t i = 0; i < l->ntls_certs; i++)
            digest_str(md, l->tls_certs[i]);
        for (size_t i = 0; i < l->ntls_acme; i++)
            for (size_t k = 0; k < l->tls_acme[i].nnames; k++)
                digest_str(md, l->tls_acme[i].names[k]);
        ok = EVP_DigestFinal_ex(md, sid, &sid_len) == 1;
    }
    EVP_MD_CTX_free(md);
    if (sid_len > SSL_MAX_SID_CTX_LENGTH)
        sid_len = SSL_MAX_SID_CTX_LENGTH;
    char why[160];
    if (!ok || SSL_CTX_set_session_id_context(ctx, sid, sid_len) != 1) {
        build_error(b, l->line, "listener %s: cannot set the session id context: %s", l->name,
                    ssl_reason(why, sizeof(why)));
        return;
    }
    /* Stateless tickets (on by default) with this SSL_CTX's own random keys;
     * no server-side cache. */
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}

/* tls_ticket_keys: the file's keys replace OpenSSL's random ones. */
static void setup_ticket_keys(struct build *b, SSL_CTX *ctx, const struct ferry_listener *l)
{
    char why[256];
    int line = l->tls_ticket_keys_line > 0 ? l->tls_ticket_keys_line : l->line;
    struct ferry_ticket_keys *keys = ferry_ticket_keys_load(l->tls_ticket_keys, why, sizeof(why));
    if (keys == NULL)
        build_error(b, line, "cannot use tls_ticket_keys %s: %s", l->tls_ticket_keys, why);
    else if (ferry_ticket_keys_install(ctx, keys) != 0)
        build_error(b, line, "cannot use tls_ticket_keys %s: out of memory", l->tls_ticket_keys);
}

SSL_CTX *ferry_tls_server_ctx_new(const struct ferry_listener *l, const char *cfg_path,
                                  struct ferry_config_errors *errs)
{
    struct build b = {.cfg_path = cfg_path, .errs = errs, .failed = false};
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct srv_data *d = calloc(1, sizeof(*d));
    int idx = srv_data_index();
    if (ctx == NULL || d == NULL || idx < 0 || !SSL_CTX_set_ex_data(ctx, idx, d)) {
        build_error(&b, l->line, "listener %s: cannot create a TLS context", l->name);
        SSL_CTX_free(ctx);
        srv_data_free(d);
        ERR_clear_error();
        return NULL;
    }
    /* From here d belongs to ctx. */
    setup_common(ctx, l->tls_min_version);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_dh_auto(ctx, 1);
    setup_ciphers(&b, ctx, l);
    load_certs(&b, ctx, d, l);
    if (l->ntls_acme > 0) { /* ACME certificates come per connection, tls-alpn-01 too */
        SSL_CTX_set_cert_cb(ctx, cert_cb, d);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, d);
    }
    if (l->tls_alpn != NULL) {
        if (alpn_wire(l->tls_alpn, &d->alpn, &d->alpn_len))
            SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, d);
        else
            build_error(&b, l->tls_alpn_line > 0 ? l->tls_alpn_line : l->line, "invalid tls_alpn \"%s\": empty or over-long protocol name",
                        l->tls_alpn);
    }
    if (l->tls_client_ca != NULL)
        setup_client_ca(&b, ctx, l);
    setup_sessions(&b, ctx, l);
    if (l->tls_ticket_keys != NULL)
        setup_ticket_keys(&b, ctx, l);
    ERR_clear_error();
    if (b.failed) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- the client context ---- */

/* tls_cert on a backend: the certificate presented to servers that ask
 * for one (mutual TLS upstream). The SSL_CTX takes its own references. */
static void use_client_cert(struct build *bd, SSL_CTX *ctx, const struct ferry_backend *b)
{
    struct srv_cert c;
    int line = b->tls_cert_line > 0 ? b->tls_cert_line : b->line;
    char why[160];
    if (!load_cert(bd, &c, b->tls_cert, b->tls_cert_key, "tls_cert", line))
        return;
    if (SSL_CTX_use_cert_and_key(ctx, c.leaf, c.key, c.chain, 1) != 1)
        build_error(bd, line, "cannot use tls_cert %s: %s", b->tls_cert,
                    ssl_reason(why, sizeof(why)));
    srv_cert_clear(&c);
}

SSL_CTX *ferry_tls_client_ctx_new(const struct ferry_backend *b, const char *cfg_path,
                                  struct ferry_config_errors *errs)
{
    struct build bd = {.cfg_path = cfg_path, .errs = errs, .failed = false};
    char why[160];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        build_error(&bd, b->line, "backend %s: cannot create a TLS context", b->name);
        ERR_clear_error();
        return NULL;
    }
    setup_common(ctx, TLS1_2_VERSION);
    int ca_line = b->tls_ca_line > 0 ? b->tls_ca_line : b->line;
    if (b->tls_ca != NULL) {
        FILE *fp = fopen(b->tls_ca, "r");
        if (fp == NULL)
            build_error(&bd, ca_line, "cannot read tls_ca %s: %s", b->tls_ca, strerror(errno));
        else {
            fclose(fp);
            if (SSL_CTX_load_verify_locations(ctx, b->tls_ca, NULL) != 1)
                build_error(&bd, ca_line, "cannot load tls_ca %s: %s", b->tls_ca,
                            ssl_reason(why, sizeof(why)));
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        build_error(&bd, b->line, "backend %s: cannot load the system CA store: %s", b->name,
                    ssl_reason(why, sizeof(why)));
    }
    SSL_CTX_set_verify(ctx, b->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (b->tls_cert != NULL)
        use_client_cert(&bd, ctx, b);
    ERR_clear_error();
    if (bd.failed) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int ferry_tls_client_prepare(SSL *ssl, const char *name, bool verify)
{
    if (ssl == NULL)
        return -EINVAL;
    SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (name == NULL || name[0] == '\0')
        return 0;
    char host[256];
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
        name++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return -EINVAL;
    memcpy(host, name, n);
    host[n] = '\0';
    unsigned char ipbuf[16];
    bool ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;
    int rc = 0;
    /* RFC 6066: SNI carries host names only, never address literals. */
    if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
        rc = -EINVAL;
    if (rc == 0 && verify) {
        if (ip) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
                rc = -EINVAL;
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(ssl, host) != 1)
                rc = -ENOMEM;
        }
    }
    ERR_clear_error();
    return rc;
}

/* ---- certificate lifetimes ---- */

bool ferry_tls_not_after(const X509 *x, int64_t *out)
{
    struct tm tm;
    const ASN1_TIME *t = x != NULL ? X509_get0_notAfter(x) : NULL;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

bool ferry_tls_server_cert_not_after(SSL_CTX *ctx, size_t i, int64_t *out)
{
    const struct srv_data *d = ctx != NULL ? SSL_CTX_get_ex_data(ctx, srv_data_index()) : NULL;
    return d != NULL && i < d->ncerts && ferry_tls_not_after(d->certs[i].leaf, out);
}

int ferry_tls_server_ctx_acme(SSL_CTX *ctx, const struct ferry_tls_acme_ops *ops, void *owner,
                              void *const *slots, size_t n)
{
    struct srv_data *d = ctx != NULL ? SSL_CTX_get_ex_data(ctx, srv_data_index()) : NULL;
    void **mine = d != NULL && n > 0 ? calloc(n, sizeof(*mine)) : NULL;
    if (mine == NULL) {
        for (size_t i = 0; i < n; i++)
            ops->unref(slots[i]);
        return d == NULL || n == 0 ? -EINVAL : -ENOMEM;
    }
    for (size_t i = 0; i < d->nslots; i++) /* attached again: the new ones replace */
        d->acme->unref(d->slots[i]);
    free(d->slots);
    memcpy(mine, slots, n * sizeof(*mine));
    d->slots = mine;
    d->nslots = n;
    d->acme = ops;
    d->acme_owner = owner;
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
    return 0;
}

size_t ferry_tls_server_acme_count(SSL_CTX *ctx)
{
    const struct srv_data *d = ctx != NULL ? SSL_CTX_get_ex_data(ctx, srv_data_index()) : NULL;
    return d != NULL ? d->nslots : 0;
}

bool ferry_tls_server_acme_not_after(SSL_CTX *ctx, size_t i, char *path, size_t cap,
                                     int64_t *out)
{
    const struct srv_data *d = ctx != NULL ? SSL_CTX_get_ex_data(ctx, srv_data_index()) : NULL;
    return d != NULL && i < d->nslots && d->acme->not_after(d->slots[i], path, cap, out);
}

bool ferry_tls_client_cert_not_after(SSL_CTX *ctx, int64_t *out)
{
    return ctx != NULL && ferry_tls_not_after(SSL_CTX_get0_certificate(ctx), out);
}

/* ---- for logs and stats ---- */

const char *ferry_tls_version(const SSL *ssl)
{
    return ssl != NULL && SSL_get_session(ssl) != NULL ? SSL_get_version(ssl) : "-";
}

const char *ferry_tls_cipher(const SSL *ssl)
{
    const SSL_CIPHER *c = ssl != NULL ? SSL_get_current_cipher(ssl) : NULL;
    return c != NULL ? SSL_CIPHER_get_name(c) : "-";
}

char *ferry_tls_alpn(const SSL *ssl, char *buf, size_t bufsize)
{
    if (bufsize == 0)
        return buf;
    buf[0] = '\0';
    const unsigned char *p = NULL;
    unsigned int len = 0;
    if (ssl != NULL)
        SSL_get0_alpn_selected(ssl, &p, &len);
    if (p != NULL && len > 0) {
        size_t n = len < bufsize - 1 ? len : bufsize - 1;
        memcpy(buf, p, n);
        buf[n] = '\0';
    }
    return buf;
}

/* daemon/tls_ctx: server and client contexts from the configuration,
 * checked through real handshakes between in-memory BIO pairs, with test
 * material made by tests/fixtures/gen-certs.sh at run time. */
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry_config.h"
#include "tls/tls_ctx.h"
#include "cert_fixture.h"

/* ---- test material ---- */

struct fx {
    char dir[1024];
    char path[24][PATH_MAX];
    int npath;
    struct ferry_config_errors errs;
};

static int group_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || cert_dir_create(fx->dir, sizeof(fx->dir), "ferry-tlsctx") != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *fx = *state;
    cert_dir_remove(fx->dir);
    free(fx);
    return 0;
}

static int test_setup(void **state)
{
    struct fx *fx = *state;
    fx->npath = 0;
    memset(&fx->errs, 0, sizeof(fx->errs));
    ERR_clear_error();
    return 0;
}

static int test_teardown(void **state)
{
    struct fx *fx = *state;
    ferry_config_errors_free(&fx->errs);
    memset(&fx->errs, 0, sizeof(fx->errs));
    return 0;
}

/* Full path of a generated file (storage lives in the fixture). */
static char *P(struct fx *fx, const char *name)
{
    assert_true(fx->npath < 24);
    char *p = fx->path[fx->npath++];
    size_t dl = strlen(fx->dir), nl = strlen(name);
    assert_true(dl + nl + 2 <= PATH_MAX);
    memcpy(p, fx->dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl + 1);
    return p;
}

/* ---- configuration structs ---- */

struct lcfg {
    struct ferry_listener l;
    char *certs[8];
    int lines[8];
};

static void lcfg_init(struct lcfg *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->l.name, sizeof(c->l.name), "%s", name);
    c->l.line = 3;
    c->l.tls = true;
    c->l.tls_certs = c->certs;
    c->l.tls_cert_lines = c->lines;
    c->l.tls_min_version = 0x0303;
    c->l.backend_index = -1;
}

static void lcfg_cert(struct lcfg *c, char *path, int line)
{
    c->certs[c->l.ntls_certs] = path;
    c->lines[c->l.ntls_certs] = line;
    c->l.ntls_certs++;
}

static SSL_CTX *client_ctx(struct fx *fx, const char *ca, bool verify)
{
    struct ferry_backend b;
    memset(&b, 0, sizeof(b));
    snprintf(b.name, sizeof(b.name), "be");
    b.line = 20;
    b.tls = true;
    b.tls_verify = verify;
    b.tls_ca = ca ? P(fx, ca) : NULL;
    SSL_CTX *ctx = ferry_tls_client_ctx_new(&b, "test.ini", &fx->errs);
    assert_non_null(ctx);
    assert_int_equal(fx->errs.n, 0);
    return ctx;
}

/* ---- driving a handshake in memory ---- */

struct hs {
    SSL *c, *s;
    int crc, src; /* 1 done, -1 failed, 0 never finished */
    char sreason[160];
};

static void step(SSL *ssl, int *rc, char *reason, size_t rlen)
{
    if (*rc != 0)
        return;
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *rc = 1;
        return;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    *rc = -1;
    if (reason != NULL) {
        unsigned long err = ERR_peek_error();
        const char *s = err ? ERR_reason_error_string(err) : NULL;
        snprintf(reason, rlen, "%s", s ? s : "?");
    }
}

static void hs_start(struct hs *h, SSL_CTX *sctx, SSL_CTX *cctx)
{
    memset(h, 0, sizeof(*h));
    h->s = SSL_new(sctx);
    h->c = SSL_new(cctx);
    assert_non_null(h->s);
    assert_non_null(h->c);
    BIO *cb = NULL, *sb = NULL;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(h->c, cb, cb);
    SSL_set_bio(h->s, sb, sb);
    SSL_set_connect_state(h->c);
    SSL_set_accept_state(h->s);
}

static void hs_run(struct hs *h)
{
    for (int i = 0; i < 100 && (h->crc == 0 || h->src == 0); i++) {
        step(h->c, &h->crc, NULL, 0);
        step(h->s, &h->src, h->sreason, sizeof(h->sreason));
        if (h->crc < 0 || h->src < 0)
            break;
    }
    ERR_clear_error();
}

static void hs_free(struct hs *h)
{
    SSL_free(h->c);
    SSL_free(h->s);
}

/* Both sides finished; for TLS 1.3 the client finishes first and a server
 * rejection shows on the server side only. */
static bool hs_ok(const struct hs *h) { return h->crc == 1 && h->src == 1; }

static void peer_cn(SSL *c, char *buf, size_t n)
{
    X509 *x = SSL_get1_peer_certificate(c);
    assert_non_null(x);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)n) > 0);
    X509_free(x);
}

/* Handshake with SNI `sni` (may be NULL) and verification of `verify_name`
 * (NULL: no verification); returns the server certificate's CN or "FAIL". */
static const char *cn_for(SSL_CTX *sctx, SSL_CTX *cctx, const char *sni, const char *verify_name,
                          char *buf, size_t n)
{
    struct hs h;
    hs_start(&h, sctx, cctx);
    if (verify_name != NULL)
        assert_int_equal(ferry_tls_client_prepare(h.c, verify_name, true), 0);
    else
        assert_int_equal(ferry_tls_client_prepare(h.c, NULL, false), 0);
    if (sni != NULL && (verify_name == NULL || strcmp(sni, verify_name) != 0))
        assert_int_equal(SSL_set_tlsext_host_name(h.c, sni), 1);
    hs_run(&h);
    if (hs_ok(&h))
        peer_cn(h.c, buf, n);
    else
        snprintf(buf, n, "FAIL");
    hs_free(&h);
    return buf;
}

/* ---- tests ---- */

static void test_sni_selection(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "web");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    lcfg_cert(&c, P(fx, "b-ec.pem"), 11);
    lcfg_cert(&c, P(fx, "w-ec.pem"), 12);
    lcfg_cert(&c, P(fx, "cn-ec.pem"), 13);
    SSL_CTX *s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    assert_int_equal(fx->errs.n, 0);
    SSL_CTX *cl = client_ctx(fx, "ca.pem", true);
    char cn[128];
    /* Verified against the CA and the name: b.test needs its intermediate
     * from the PEM file's chain. */
    assert_string_equal(cn_for(s, cl, NULL, "a.test", cn, sizeof(cn)), "a.test");
    assert_string_equal(cn_for(s, cl, NULL, "b.test", cn, sizeof(cn)), "b.test");
    assert_string_equal(cn_for(s, cl, NULL, "x.w.test", cn, sizeof(cn)), "w.test");
    assert_string_equal(cn_for(s, cl, NULL, "B.TEST", cn, sizeof(cn)), "b.test");
    /* CN when the certificate has no subjectAltName. */
    assert_string_equal(cn_for(s, cl, "cn.test", NULL, cn, sizeof(cn)), "cn.test");
    /* A wildcard covers one label only; unknown names and no SNI get the
     * first certificate. */
    assert_string_equal(cn_for(s, cl, "y.x.w.test", NULL, cn, sizeof(cn)), "a.test");
    assert_string_equal(cn_for(s, cl, "w.test", NULL, cn, sizeof(cn)), "a.test");
    assert_string_equal(cn_for(s, cl, "unknown.test", NULL, cn, sizeof(cn)), "a.test");
    assert_string_equal(cn_for(s, cl, NULL, NULL, cn, sizeof(cn)), "a.test");
    SSL_CTX_free(cl);
    SSL_CTX_free(s);
}

/* Key type of the certificate the client received. */
static int served_key_type(SSL_CTX *s, SSL_CTX *cl, const char *sni, const char *sigalgs)
{
    struct hs h;
    hs_start(&h, s, cl);
    assert_int_equal(ferry_tls_client_prepare(h.c, sni, true), 0);
    if (sigalgs != NULL)
        assert_int_equal(SSL_set1_sigalgs_list(h.c, sigalgs), 1);
    hs_run(&h);
    assert_true(hs_ok(&h));
    X509 *x = SSL_get1_peer_certificate(h.c);
    assert_non_null(x);
    int type = EVP_PKEY_get_base_id(X509_get0_pubkey(x));
    X509_free(x);
    hs_free(&h);
    return type;
}

static void test_ecdsa_and_rsa_for_one_name(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "web");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    lcfg_cert(&c, P(fx, "b-ec.pem"), 11);
    lcfg_cert(&c, P(fx, "a-rsa.pem"), 12);
    lcfg_cert(&c, P(fx, "b-rsa.pem"), 13);
    SSL_CTX *s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    SSL_CTX *cl = client_ctx(fx, "ca.pem", true);
    assert_int_equal(served_key_type(s, cl, "a.test", "ECDSA+SHA256"), EVP_PKEY_EC);
    assert_int_equal(served_key_type(s, cl, "a.test", "rsa_pss_rsae_sha256:RSA+SHA256"),
                     EVP_PKEY_RSA);
    assert_int_equal(served_key_type(s, cl, "b.test", "rsa_pss_rsae_sha256:RSA+SHA256"),
                     EVP_PKEY_RSA);
    assert_int_equal(served_key_type(s, cl, "b.test", "ECDSA+SHA256"), EVP_PKEY_EC);
    SSL_CTX_free(cl);
    SSL_CTX_free(s);
}

static SSL_CTX *one_cert_server(struct fx *fx, struct lcfg *c, const char *name)
{
    lcfg_init(c, name);
    lcfg_cert(c, P(fx, "a-ec.pem"), 10);
    SSL_CTX *s = ferry_tls_server_ctx_new(&c->l, "test.ini", &fx->errs);
    assert_non_null(s);
    assert_int_equal(fx->errs.n, 0);
    return s;
}

static SSL_CTX *raw_client(int min, int max)
{
    SSL_CTX *cl = SSL_CTX_new(TLS_client_method());
    assert_non_null(cl);
    SSL_CTX_set_security_level(cl, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(cl, min), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cl, max), 1);
    SSL_CTX_set_verify(cl, SSL_VERIFY_NONE, NULL);
    return cl;
}

static void test_versions(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    SSL_CTX *s = one_cert_server(fx, &c, "v");
    struct hs h;

    /* TLS 1.1 is refused by our floor, not by the security level. */
    SSL_CTX *old = raw_client(TLS1_VERSION, TLS1_1_VERSION);
    hs_start(&h, s, old);
    SSL_set_security_level(h.s, 0);
    hs_run(&h);
    assert_false(hs_ok(&h));
    assert_int_equal(h.src, -1);
    assert_string_equal(h.sreason, "unsupported protocol");
    hs_free(&h);

    /* TLS 1.2 is accepted with the default minimum. */
    SSL_CTX *tls12 = raw_client(TLS1_2_VERSION, TLS1_2_VERSION);
    hs_start(&h, s, tls12);
    hs_run(&h);
    assert_true(hs_ok(&h));
    assert_string_equal(ferry_tls_version(h.s), "TLSv1.2");
    assert_string_not_equal(ferry_tls_cipher(h.s), "-");
    hs_free(&h);
    SSL_CTX_free(s);

    /* With tls_min_version = 1.3, TLS 1.2 is refused and 1.3 works. */
    lcfg_init(&c, "v13");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    c.l.tls_min_version = 0x0304;
    s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    hs_start(&h, s, tls12);
    hs_run(&h);
    assert_int_equal(h.src, -1);
    hs_free(&h);
    SSL_CTX *modern = raw_client(TLS1_2_VERSION, 0);
    hs_start(&h, s, modern);
    hs_run(&h);
    assert_true(hs_ok(&h));
    assert_string_equal(ferry_tls_version(h.c), "TLSv1.3");
    hs_free(&h);

    SSL_CTX_free(modern);
    SSL_CTX_free(tls12);
    SSL_CTX_free(old);
    SSL_CTX_free(s);
}

/* ALPN result for a client offer (wire format). */
static const char *alpn_for(SSL_CTX *s, SSL_CTX *cl, const unsigned char *offer, size_t len,
                            char *buf, size_t n)
{
    struct hs h;
    hs_start(&h, s, cl);
    assert_int_equal(SSL_set_alpn_protos(h.c, offer, (unsigned)len), 0);
    hs_run(&h);
    assert_true(hs_ok(&h));
    ferry_tls_alpn(h.s, buf, n);
    char cbuf[64];
    assert_string_equal(ferry_tls_alpn(h.c, cbuf, sizeof(cbuf)), buf);
    hs_free(&h);
    return buf;
}

static void test_alpn(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "alpn");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    c.l.tls_alpn = "h2, http/1.1";
    SSL_CTX *s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    SSL_CTX *cl = raw_client(TLS1_2_VERSION, 0);
    char buf[64];
    static const unsigned char both[] = "\x08http/1.1\x02h2";
    static const unsigned char h1[] = "\x08http/1.1";
    static const unsigned char other[] = "\x06spdy/3";
    /* Server preference wins over the client's order. */
    assert_string_equal(alpn_for(s, cl, both, sizeof(both) - 1, buf, sizeof(buf)), "h2");
    assert_string_equal(alpn_for(s, cl, h1, sizeof(h1) - 1, buf, sizeof(buf)), "http/1.1");
    /* No overlap: the handshake goes on without ALPN. */
    assert_string_equal(alpn_for(s, cl, other, sizeof(other) - 1, buf, sizeof(buf)), "");
    SSL_CTX_free(s);

    c.l.tls_alpn = "h2,,http/1.1";
    assert_null(ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs));
    assert_int_equal(fx->errs.n, 1);
    assert_non_null(strstr(fx->errs.msgs[0], "test.ini:3: invalid tls_alpn"));
    SSL_CTX_free(cl);
}

/* Client context presenting `pem` (cert + key), or none. */
static SSL_CTX *mtls_client(struct fx *fx, const char *pem)
{
    SSL_CTX *cl = raw_client(TLS1_2_VERSION, 0);
    if (pem != NULL) {
        char *p = P(fx, pem);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(cl, p), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(cl, p, SSL_FILETYPE_PEM), 1);
    }
    return cl;
}

static void test_client_certificates(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "mtls");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    c.l.tls_client_ca = P(fx, "ca.pem");
    c.l.tls_client_ca_line = 14;
    SSL_CTX *s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    assert_int_equal(fx->errs.n, 0);
    const char *clients[] = {"client.pem", NULL, "client-untrusted.pem"};
    const bool accepted[] = {true, false, false};
    for (int i = 0; i < 3; i++) {
        SSL_CTX *cl = mtls_client(fx, clients[i]);
        struct hs h;
        hs_start(&h, s, cl);
        hs_run(&h);
        assert_int_equal(hs_ok(&h), accepted[i]);
        if (accepted[i]) {
            X509 *peer = SSL_get1_peer_certificate(h.s);
            assert_non_null(peer);
            X509_free(peer);
        } else {
            assert_int_equal(h.src, -1);
        }
        hs_free(&h);
        SSL_CTX_free(cl);
    }
    SSL_CTX_free(s);

    c.l.tls_client_ca = P(fx, "missing-ca.pem");
    assert_null(ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs));
    assert_int_equal(fx->errs.n, 1);
    assert_non_null(strstr(fx->errs.msgs[0], "test.ini:14: cannot read tls_client_ca "));
}

static void test_file_errors(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "bad");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    lcfg_cert(&c, P(fx, "mismatch.pem"), 11);
    lcfg_cert(&c, P(fx, "does-not-exist.pem"), 12);
    lcfg_cert(&c, P(fx, "nokey.pem"), 13);
    lcfg_cert(&c, P(fx, "empty.pem"), 14);
    assert_null(ferry_tls_server_ctx_new(&c.l, "/etc/ferry.ini", &fx->errs));
    /* Every error, in order, each with its own line. */
    assert_int_equal(fx->errs.n, 4);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "/etc/ferry.ini:11: private key does not match the certificate in tls_cert %s",
             c.certs[1]);
    assert_string_equal(fx->errs.msgs[0], want);
    snprintf(want, sizeof(want), "/etc/ferry.ini:12: cannot read tls_cert %s: %s", c.certs[2],
             strerror(ENOENT));
    assert_string_equal(fx->errs.msgs[1], want);
    snprintf(want, sizeof(want),
             "/etc/ferry.ini:13: no usable private key in tls_cert %s (missing or encrypted)",
             c.certs[3]);
    assert_string_equal(fx->errs.msgs[2], want);
    snprintf(want, sizeof(want), "/etc/ferry.ini:14: no certificate in tls_cert %s", c.certs[4]);
    assert_string_equal(fx->errs.msgs[3], want);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_cipher_errors(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    lcfg_init(&c, "ciphers");
    lcfg_cert(&c, P(fx, "a-ec.pem"), 10);
    c.l.tls_ciphers = "NOT-A-CIPHER";
    c.l.tls_ciphersuites = "TLS_NOT_A_SUITE";
    assert_null(ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs));
    assert_int_equal(fx->errs.n, 2);
    assert_non_null(strstr(fx->errs.msgs[0], "test.ini:3: invalid tls_ciphers \"NOT-A-CIPHER\""));
    assert_non_null(
        strstr(fx->errs.msgs[1], "test.ini:3: invalid tls_ciphersuites \"TLS_NOT_A_SUITE\""));

    /* Valid lists are applied: a TLS 1.2 client offering only CBC is refused
     * by a GCM-only server. */
    ferry_config_errors_free(&fx->errs);
    memset(&fx->errs, 0, sizeof(fx->errs));
    c.l.tls_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
    c.l.tls_ciphersuites = "TLS_AES_256_GCM_SHA384";
    SSL_CTX *s = ferry_tls_server_ctx_new(&c.l, "test.ini", &fx->errs);
    assert_non_null(s);
    SSL_CTX *cl = raw_client(TLS1_2_VERSION, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(cl, "ECDHE-ECDSA-AES128-SHA"), 1);
    struct hs h;
    hs_start(&h, s, cl);
    hs_run(&h);
    assert_false(hs_ok(&h));
    hs_free(&h);
    SSL_CTX_free(cl);
    cl = raw_client(TLS1_3_VERSION, TLS1_3_VERSION);
    hs_start(&h, s, cl);
    hs_run(&h);
    assert_true(hs_ok(&h));
    assert_string_equal(ferry_tls_cipher(h.c), "TLS_AES_256_GCM_SHA384");
    hs_free(&h);
    SSL_CTX_free(cl);
    SSL_CTX_free(s);
}

/* Client verification outcome: 1 ok, else the verify result (negated). */
static long client_verify(SSL_CTX *s, SSL_CTX *cl, const char *name, bool verify)
{
    struct hs h;
    hs_start(&h, s, cl);
    assert_int_equal(ferry_tls_client_prepare(h.c, name, verify), 0);
    hs_run(&h);
    long r = h.crc == 1 ? 1 : -SSL_get_verify_result(h.c);
    hs_free(&h);
    return r;
}

static void test_client_ctx_verification(void **state)
{
    struct fx *fx = *state;
    struct lcfg c;
    SSL_CTX *s = one_cert_server(fx, &c, "up");
    SSL_CTX *good = client_ctx(fx, "ca.pem", true);
    assert_int_equal(client_verify(s, good, "a.test", true), 1);
    assert_int_equal(client_verify(s, good, "127.0.0.1", true), 1);
    assert_int_equal(client_verify(s, good, "[127.0.0.1]", true), 1);
    assert_int_equal(client_verify(s, good, "b.test", true), -X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(client_verify(s, good, "127.0.0.2", true), -X509_V_ERR_IP_ADDRESS_MISMATCH);
    /* Without verification anything goes. */
    assert_int_equal(client_verify(s, good, "b.test", false), 1);

    SSL_CTX *wrong = client_ctx(fx, "other-ca.pem", true);
    long r = client_verify(s, wrong, "a.test", true);
    assert_true(r == -X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                r == -X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
    SSL_CTX *off = client_ctx(fx, "other-ca.pem", false);
    /* Off in the context; the per-connection flag decides. */
    assert_int_equal(client_verify(s, off, "a.test", false), 1);
    assert_true(client_verify(s, off, "a.test", true) < 0);

    /* SNI is sent for names, not for addresses. */
    struct hs h;
    hs_start(&h, s, good);
    assert_int_equal(ferry_tls_client_prepare(h.c, "127.0.0.1", true), 0);
    hs_run(&h);
    assert_true(hs_ok(&h));
    assert_null(SSL_get_servername(h.s, TLSEXT_NAMETYPE_host_name));
    hs_free(&h);
    hs_start(&h, s, good);
    assert_int_equal(ferry_tls_client_prepare(h.c, "a.test", true), 0);
    hs_run(&h);
    assert_string_equal(SSL_get_servername(h.s, TLSEXT_NAMETYPE_host_name), "a.test");
    hs_free(&h);

    SSL_CTX_free(off);
    SSL_CTX_free(wrong);
    SSL_CTX_free(good);
    SSL_CTX_free(s);

    struct ferry_backend b;
    memset(&b, 0, sizeof(b));
    snprintf(b.name, sizeof(b.name), "be");
    b.line = 20;
    b.tls = true;
    b.tls_verify = true;
    b.tls_ca = P(fx, "nope.pem");
    assert_null(ferry_tls_client_ctx_new(&b, "test.ini", &fx->errs));
    assert_int_equal(fx->errs.n, 1);
    assert_non_null(strstr(fx->errs.msgs[0], "test.ini:20: cannot read tls_ca "));
}

/* Runs a handshake (optionally offering sess) and a one-byte exchange so the
 * client processes TLS 1.3 tickets. Returns the client's new session (or
 * NULL when the handshake failed); *reused tells whether sess was resumed. */
static SSL_SESSION *connect_once(SSL_CTX *s, SSL_CTX *cl, SSL_SESSION *sess, int *reused)
{
    struct hs h;
    hs_start(&h, s, cl);
    assert_int_equal(ferry_tls_client_prepare(h.c, "a.test", true), 0);
    if (sess != NULL)
        assert_int_equal(SSL_set_session(h.c, sess), 1);
    hs_run(&h);
    SSL_SESSION *out = NULL;
    *reused = 0;
    if (hs_ok(&h)) {
        *reused = SSL_session_reused(h.c);
        size_t n = 0;
        unsigned char byte = 'x';
        assert_int_equal(SSL_write_ex(h.s, &byte, 1, &n), 1);
        assert_int_equal(SSL_read_ex(h.c, &byte, 1, &n), 1);
        out = SSL_get1_session(h.c);
        /* A session freed without close_notify is marked not resumable. */
        assert_true(SSL_shutdown(h.c) >= 0);
    }
    ERR_clear_error();
    hs_free(&h);
    return out;
}

static void test_session_resumption_per_listener(void **state)
{
    struct fx *fx = *state;
    struct lcfg a, b, m;
    SSL_CTX *sa = one_cert_server(fx, &a, "a");
    SSL_CTX *sb = one_cert_server(fx, &b, "b");
    lcfg_init(&m, "m");
    lcfg_cert(&m, P(fx, "a-ec.pem"), 10);
    m.l.tls_client_ca = P(fx, "ca.pem");
    SSL_CTX *sm = ferry_tls_server_ctx_new(&m.l, "test.ini", &fx->errs);
    assert_non_null(sm);
    SSL_CTX *cl = client_ctx(fx, "ca.pem", true);

    for (int v = 0; v < 2; v++) {
        assert_int_equal(SSL_CTX_set_max_proto_version(cl, v ? TLS1_3_VERSION : TLS1_2_VERSION), 1);
        int reused = -1;
        SSL_SESSION *sess = connect_once(sa, cl, NULL, &reused);
        assert_non_null(sess);
        assert_int_equal(reused, 0);
        /* The same listener resumes it. */
        SSL_SESSION *again = connect_once(sa, cl, sess, &reused);
        assert_non_null(again);
        assert_int_equal(reused, 1);
        SSL_SESSION_free(again);
        /* Another listener does not. */
        again = connect_once(sb, cl, sess, &reused);
        assert_non_null(again);
        assert_int_equal(reused, 0);
        SSL_SESSION_free(again);
        /* Nor does one that demands client certificates: no certificate,
         * no entry (the CVE-2025-23419 bypass). */
        again = connect_once(sm, cl, sess, &reused);
        assert_null(again);
        SSL_SESSION_free(sess);
    }
    SSL_CTX_free(cl);
    SSL_CTX_free(sm);
    SSL_CTX_free(sb);
    SSL_CTX_free(sa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sni_selection, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_and_rsa_for_one_name, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_versions, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_alpn, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_client_certificates, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cipher_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_client_ctx_verification, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_session_resumption_per_listener, test_setup,
                                        test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

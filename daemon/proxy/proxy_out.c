/* ferryd: the PROXY header a backend with send_proxy gets.
 *
 * Gathers the v2 TLVs from the terminated TLS session (OpenSSL's names:
 * "TLSv1.3", "TLS_AES_128_GCM_SHA256"), the server name and the connection
 * id, and hands them to the builder in proxy_proto.c. Built once per
 * connection, before the first connect attempt; retries resend the same
 * bytes. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_out.h"
#include "proto/proxy_proto.h"

static struct ferry_proxy_str str(const char *s)
{
    struct ferry_proxy_str v = {(const uint8_t *)s, s ? strlen(s) : 0};
    return v;
}

/* The SNI goes into AUTHORITY only when it is a host name: letters,
 * digits, '-', '.', '_', 1 to 255 bytes. OpenSSL hands a terminating
 * listener whatever the client sent (spaces, CR/LF, quotes), and a backend
 * may put AUTHORITY in a header or a log line. */
bool ferry_proxy_authority_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* The client certificate's subject CN into cn[cap], or "" without one. */
static void client_cn(SSL *ssl, char *cn, size_t cap)
{
    cn[0] = '\0';
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer)
        return;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cap);
    if (n < 0)
        cn[0] = '\0';
}

static void tls_tlvs(SSL *ssl, struct ferry_proxy_tlvs *t, char *cn, size_t cncap)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    t->alpn.p = alpn;
    t->alpn.len = alpn ? alpn_len : 0;
    t->ssl = true;
    t->ssl_client = FERRY_PP2_CLIENT_SSL;
    client_cn(ssl, cn, cncap);
    if (SSL_get0_peer_certificate(ssl))
        t->ssl_client |= FERRY_PP2_CLIENT_CERT_CONN;
    /* 0 means verified; a listener without tls_client_ca verifies nothing. */
    t->ssl_verify = SSL_get0_peer_certificate(ssl) && SSL_get_verify_result(ssl) == X509_V_OK ? 0 : 1;
    t->ssl_version = str(SSL_get_version(ssl));
    t->ssl_cipher = str(SSL_get_cipher_name(ssl));
    t->ssl_cn = str(cn);
}

int ferry_proxy_out_build(int version, const struct ferry_proxy_conn *pc, uint8_t **out,
                          size_t *len)
{
    uint8_t buf[FERRY_PROXY_HDR_OUT_MAX];
    int n;
    if (version == 1) {
        n = ferry_proxy_build_v1(pc->client, pc->local, (char *)buf, sizeof(buf));
    } else {
        struct ferry_proxy_tlvs t;
        char id[24], cn[1024]; /* a CN over the bound is left out, never cut */
        memset(&t, 0, sizeof(t));
        snprintf(id, sizeof(id), "%" PRIu64, pc->id);
        t.unique_id = str(id);
        if (ferry_proxy_authority_ok(pc->sni))
            t.authority = str(pc->sni);
        if (pc->ssl)
            tls_tlvs(pc->ssl, &t, cn, sizeof(cn));
        n = ferry_proxy_build_v2_tlvs(pc->client, pc->local, &t, buf, sizeof(buf));
    }
    if (n < 0)
        return n;
    *out = malloc((size_t)n);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, buf, (size_t)n);
    *len = (size_t)n;
    return 0;
}

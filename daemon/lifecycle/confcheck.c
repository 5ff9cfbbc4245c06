/* ferryd: load the configuration and report every error of every pass (see
 * confcheck.h). */
#include "lifecycle/confcheck.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle/privs.h"
#include "tls/tls_ctx.h"

/* Builds and frees each TLS context: only its errors matter here. */
static void check_tls(const struct ferry_config *cfg, struct ferry_config_errors *errs)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (!cfg->listeners[i].tls)
            continue;
        SSL_CTX *ctx = ferry_tls_server_ctx_new(&cfg->listeners[i], cfg->path, errs);
        if (ctx)
            SSL_CTX_free(ctx);
    }
    for (size_t i = 0; i < cfg->nbackends; i++) {
        if (!cfg->backends[i].tls)
            continue;
        SSL_CTX *ctx = ferry_tls_client_ctx_new(&cfg->backends[i], cfg->path, errs);
        if (ctx)
            SSL_CTX_free(ctx);
    }
}

/* Drops messages equal to an earlier one (two passes may see one cause). */
static void drop_repeats(struct ferry_config_errors *errs)
{
    size_t n = 0;
    for (size_t i = 0; i < errs->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp(errs->msgs[j], errs->msgs[i]) == 0;
        if (seen) {
            free(errs->msgs[i]);
            continue;
        }
        if (errs->keys)
            errs->keys[n] = errs->keys[i];
        errs->msgs[n++] = errs->msgs[i];
    }
    errs->n = n;
}

/* A configuration with errors: the TLS files' own are added (in the same
 * run, every pass), each names its file, and the configuration is freed. */
static struct ferry_config *with_errors(struct ferry_config *cfg, struct ferry_config_errors *errs,
                                        const char *path)
{
    check_tls(cfg, errs);
    ferry_config_errors_map(errs, cfg); /* lines of included files name them */
    ferry_config_free(cfg);
    drop_repeats(errs);
    ferry_config_errors_sort(errs, path);
    return NULL;
}

struct ferry_config *ferry_config_load_checked(const char *path,
                                               struct ferry_config_errors *errs)
{
    size_t before = errs->n;
    struct ferry_config *cfg = ferry_config_load_all(path, errs);
    if (!cfg || errs->n == before)
        return cfg;
    return with_errors(cfg, errs, path);
}

void ferry_config_check_accounts(const struct ferry_config *cfg,
                                 struct ferry_config_errors *errs)
{
    const struct ferry_global *g = &cfg->global;
    uid_t uid;
    gid_t gid;
    char err[128];
    if (g->user[0] && ferry_privs_lookup(g->user, "", &uid, &gid, err, sizeof(err)) != 0)
        ferry_config_error_at(errs, cfg, g->user_line, "%s", err);
    if (g->group[0] && ferry_privs_lookup("", g->group, &uid, &gid, err, sizeof(err)) != 0)
        ferry_config_error_at(errs, cfg, g->group_line, "%s", err);
}

/* ---- ferryd -t ---- */

/* One certificate file: a warning at line when its first certificate has
 * expired or expires before limit. Unreadable files are the TLS check's. */
static void cert_warning(const struct ferry_config *cfg, const char *path, int line, int64_t now,
                         struct ferry_config_errors *warns)
{
    BIO *in = BIO_new_file(path, "r");
    X509 *x = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
    BIO *text = x ? BIO_new(BIO_s_mem()) : NULL;
    int64_t t;
    char when[64] = "";
    if (text && ferry_tls_not_after(x, &t) && ASN1_TIME_print(text, X509_get0_notAfter(x)) == 1) {
        int n = BIO_read(text, when, (int)sizeof(when) - 1); /* as openssl x509 -enddate */
        when[n > 0 ? n : 0] = '\0';
        if (t <= now)
            ferry_config_error_at(warns, cfg, line,
                                  "warning: certificate %s expired (notAfter %s)", path, when);
        else if (t < now + (int64_t)FERRY_TEST_CERT_DAYS * 86400)
            ferry_config_error_at(warns, cfg, line,
                                  "warning: certificate %s expires in %lld days (notAfter %s)",
                                  path, (long long)((t - now) / 86400), when);
    }
    BIO_free(text);
    X509_free(x);
    BIO_free(in);
}

static void cert_warnings(const struct ferry_config *cfg, int64_t now,
                          struct ferry_config_errors *warns)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct ferry_listener *l = &cfg->listeners[i];
        for (size_t k = 0; l->tls && k < l->ntls_certs; k++)
            cert_warning(cfg, l->tls_certs[k], l->tls_cert_lines[k], now, warns);
    }
    for (size_t i = 0; i < cfg->nbackends; i++) {
        const struct ferry_backend *b = &cfg->backends[i];
        if (b->tls && b->tls_cert)
            cert_warning(cfg, b->tls_cert, b->tls_cert_line, now, warns);
    }
}

struct ferry_config *ferry_config_test(const char *path, int64_t now,
                                       struct ferry_config_errors *errs,
                                       struct ferry_config_errors *warns)
{
    size_t before = errs->n;
    struct ferry_config *cfg = ferry_config_load_all(path, errs);
    if (!cfg)
        return NULL;
    ferry_config_check_writable(cfg, errs);
    ferry_config_check_accounts(cfg, errs);
    /* The configuration's own warnings become the caller's (warns starts
     * empty), then the certificates', each kept with its line for sorting. */
    ferry_config_errors_free(warns);
    *warns = cfg->warnings;
    memset(&cfg->warnings, 0, sizeof(cfg->warnings));
    cert_warnings(cfg, now, warns);
    ferry_config_errors_sort(warns, path);
    if (errs->n == before)
        return cfg;
    return with_errors(cfg, errs, path);
}

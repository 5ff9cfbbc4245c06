/* ferryd: load the configuration and report every error of every pass (see
 * confcheck.h). */
#include "lifecycle/confcheck.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

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
        if (seen)
            free(errs->msgs[i]);
        else
            errs->msgs[n++] = errs->msgs[i];
    }
    errs->n = n;
}

struct ferry_config *ferry_config_load_checked(const char *path,
                                               struct ferry_config_errors *errs)
{
    size_t before = errs->n;
    struct ferry_config *cfg = ferry_config_load_all(path, errs);
    if (!cfg || errs->n == before)
        return cfg;
    check_tls(cfg, errs);
    ferry_config_free(cfg);
    drop_repeats(errs);
    ferry_config_errors_sort(errs, path);
    return NULL;
}

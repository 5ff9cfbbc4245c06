/* ferryd: certificates about to expire (see cert_expiry.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lifecycle/cert_expiry.h"
#include "daemon.h"
#include "gen.h"
#include "log/log.h"
#include "tls/tls_ctx.h"

#define DAY_S 86400
#define RECHECK_MS (DAY_S * 1000ull)

static void warn(const char *kind, const char *name, const char *path, int64_t not_after,
                 int64_t now)
{
    char when[32] = "-";
    time_t t = (time_t)not_after;
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    bool lis = strcmp(kind, "listener") == 0;
    if (not_after <= now)
        ferry_log(FERRY_LOG_WARN, "certificate_expired",
                  "?listener=%s ?backend=%s cert=%s not_after=%s", lis ? name : "",
                  lis ? "" : name, path, when);
    else
        ferry_log(FERRY_LOG_WARN, "certificate_expires_soon",
                  "?listener=%s ?backend=%s cert=%s not_after=%s days_left=%lld", lis ? name : "",
                  lis ? "" : name, path, when, (long long)((not_after - now) / DAY_S));
}

unsigned ferry_cert_expiry_check(const struct ferry_gen *g, int64_t now)
{
    unsigned n = 0;
    int64_t limit = now + (int64_t)FERRY_CERT_WARN_DAYS * DAY_S, t;
    for (size_t i = 0; g != NULL && i < g->cfg->nlisteners; i++) {
        const struct ferry_listener *l = &g->cfg->listeners[i];
        for (size_t k = 0; g->listeners[i].tls_ctx != NULL && k < l->ntls_certs; k++) {
            if (ferry_tls_server_cert_not_after(g->listeners[i].tls_ctx, k, &t) && t < limit) {
                warn("listener", l->name, l->tls_certs[k], t, now);
                n++;
            }
        }
    }
    for (size_t i = 0; g != NULL && i < g->cfg->nbackends; i++) {
        const struct ferry_backend *b = &g->cfg->backends[i];
        if (b->tls_cert != NULL &&
            ferry_tls_client_cert_not_after(g->backends[i].tls_ctx, &t) && t < limit) {
            warn("backend", b->name, b->tls_cert, t, now);
            n++;
        }
    }
    return n;
}

void ferry_cert_expiry_tick(struct ferry_cert_expiry *e, struct ferry_daemon *d, uint64_t now_ms)
{
    uint64_t reloads = atomic_load(&d->reloads);
    if (e->next_check_ms != 0 && reloads == e->checked_reloads && now_ms < e->next_check_ms)
        return;
    e->checked_reloads = reloads;
    e->next_check_ms = now_ms + RECHECK_MS;
    struct ferry_gen *g = ferry_daemon_gen(d);
    ferry_cert_expiry_check(g, (int64_t)time(NULL));
    if (g != NULL)
        ferry_gen_unref(g);
}

/* ferryd ACME: the entry points daemon.h declares for the core and the
 * control wing (attaching slots to a listener's TLS context, show acme). */
#include <errno.h>
#include <stdlib.h>

#include "acme/acme.h"
#include "acme/view.h"
#include "daemon.h"
#include "tls/tls_ctx.h"

static bool op_matches(void *slot, const char *sni)
{
    return ferry_acme_slot_matches(slot, sni);
}

static bool op_install(void *slot, SSL *ssl)
{
    return ferry_acme_slot_install(slot, ssl);
}

static bool op_not_after(void *slot, char *path, size_t cap, int64_t *out)
{
    return ferry_acme_slot_not_after(slot, path, cap, out);
}

static void op_unref(void *slot)
{
    ferry_acme_slot_unref(slot);
}

static bool op_challenge(void *owner, const char *sni, SSL *ssl)
{
    return ferry_acme_challenge_install(owner, sni, ssl);
}

static const struct ferry_tls_acme_ops ops = {op_matches, op_install, op_not_after, op_unref,
                                              op_challenge};

int ferry_acme_attach(struct ferry_daemon *d, SSL_CTX *ctx, const struct ferry_config *cfg,
                      const struct ferry_listener *l)
{
    if (!d->acme || !ctx || l->ntls_acme == 0)
        return 0;
    void **slots = calloc(l->ntls_acme, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < l->ntls_acme && rc == 0; i++) {
        struct ferry_acme_slot *s = ferry_acme_slot_get(d->acme, cfg, &l->tls_acme[i]);
        if (s)
            slots[n++] = s;
        else
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = ferry_tls_server_ctx_acme(ctx, &ops, d->acme, slots, n);
    else
        for (size_t i = 0; i < n; i++)
            ferry_acme_slot_unref(slots[i]);
    free(slots);
    return rc;
}

int ferry_acme_render(struct ferry_daemon *d, bool json, struct ferry_buf *out)
{
    return ferry_acme_view(d->acme, json, out);
}

void ferry_acme_render_metrics(struct ferry_daemon *d, struct ferry_buf *out)
{
    ferry_acme_view_metrics(d->acme, out);
}

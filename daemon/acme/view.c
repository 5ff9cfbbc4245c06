/* ferryd ACME: `show acme` and the metrics (see view.h). */
#include "acme/view.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"

static void when(int64_t t, char *buf, size_t cap)
{
    if (t <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Text: the error may hold anything the server said; control characters
 * are never passed through. */
static void safe_text(struct ferry_buf *out, const char *s)
{
    if (!*s) {
        ferry_buf_puts(out, "-");
        return;
    }
    ferry_buf_puts(out, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            ferry_buf_printf(out, "\\x%02x", *c);
        else if (*c == '"' || *c == '\\')
            ferry_buf_printf(out, "\\%c", *c);
        else
            ferry_buf_append(out, c, 1);
    }
    ferry_buf_puts(out, "\"");
}

static void json_names(struct ferry_buf *out, const char *names)
{
    ferry_buf_puts(out, "[");
    const char *p = names;
    bool first = true;
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(n < 255 ? n : 255), p);
        if (!first)
            ferry_buf_puts(out, ", ");
        ferry_buf_json_str(out, name);
        first = false;
        p += n;
        if (*p == ',')
            p++;
    }
    ferry_buf_puts(out, "]");
}

int ferry_acme_view(struct ferry_acme_reg *reg, bool json, struct ferry_buf *out)
{
    size_t n = 0;
    struct ferry_acme_status *st = reg ? ferry_acme_statuses(reg, &n) : NULL;
    if (json)
        ferry_buf_puts(out, "{\"acme\": [");
    for (size_t i = 0; i < n; i++) {
        const struct ferry_acme_status *s = &st[i];
        if (json) {
            ferry_buf_puts(out, i ? ", {\"acme\": " : "{\"acme\": ");
            ferry_buf_json_str(out, s->acme);
            ferry_buf_puts(out, ", \"names\": ");
            json_names(out, s->names);
            ferry_buf_printf(out, ", \"state\": \"%s\", \"not_after\": %lld, \"renew_at\": %lld, "
                             "\"last_error\": ", ferry_acme_state_name(s->state),
                             (long long)s->not_after, (long long)s->renew_at);
            ferry_buf_json_str(out, s->last_error);
            ferry_buf_puts(out, ", \"cert\": ");
            ferry_buf_json_str(out, s->cert_path);
            ferry_buf_puts(out, "}");
        } else {
            char na[32], ra[32];
            when(s->not_after, na, sizeof(na));
            when(s->renew_at, ra, sizeof(ra));
            ferry_buf_printf(out, "acme=%s names=%s state=%s not_after=%s renew_at=%s "
                             "last_error=", s->acme, s->names, ferry_acme_state_name(s->state),
                             na, ra);
            safe_text(out, s->last_error);
            ferry_buf_puts(out, "\n");
        }
    }
    if (json)
        ferry_buf_puts(out, "]}\n");
    else if (n == 0)
        ferry_buf_puts(out, "no tls_acme certificates\n");
    free(st);
    return out->oom ? -ENOMEM : 0;
}

void ferry_acme_view_metrics(struct ferry_acme_reg *reg, struct ferry_buf *out)
{
    size_t n = 0;
    struct ferry_acme_count *c = reg ? ferry_acme_counts(reg, &n) : NULL;
    ferry_buf_puts(out, "# HELP ferry_acme_orders_total ACME orders finished since start, by "
                        "account and result.\n# TYPE ferry_acme_orders_total counter\n");
    for (size_t i = 0; i < n; i++) {
        for (int ok = 1; ok >= 0; ok--) {
            ferry_buf_puts(out, "ferry_acme_orders_total{acme=\"");
            ferry_buf_prom_label(out, c[i].acme);
            ferry_buf_printf(out, "\",result=\"%s\"} %llu\n", ok ? "ok" : "failed",
                             (unsigned long long)(ok ? c[i].ok : c[i].failed));
        }
    }
    free(c);
}

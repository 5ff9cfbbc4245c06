/* ferryd: rendering of `show info|stats|conns|metrics` (see render.h).
 *
 * Everything is read from the current generation (taken with a reference and
 * released at the end) and the per-worker counters, summed on the fly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/procstat.h"
#include "control/render.h"
#include "gen.h"
#include "worker.h"
#include "tls/tls_ctx.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

const char *ferry_version(void) { return FERRY_VERSION; }

/* The running executable's (main sets it; two builds may share this code). */
static const char *version_of(const struct ferry_daemon *d)
{
    return d->version ? d->version : ferry_version();
}

static const char *balance_name(enum ferry_balance b)
{
    switch (b) {
    case FERRY_BALANCE_ROUNDROBIN: return "roundrobin";
    case FERRY_BALANCE_LEASTCONN: return "leastconn";
    case FERRY_BALANCE_RANDOM: return "random";
    case FERRY_BALANCE_SOURCE: return "source";
    }
    return "?";
}

static int done(struct ferry_buf *out) { return out->oom ? -ENOMEM : 0; }

/* ---- an aligned text table ---- */

#define TABLE_MAX_COLS 16

struct table {
    size_t ncols;
    const char *align; /* per column: 'l' or 'r' */
    char **cells;      /* row-major */
    size_t ncells, cap;
    bool oom;
};

static void table_init(struct table *t, size_t ncols, const char *align)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->align = align;
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
}

static void table_cell(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void table_cell(struct table *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **c = realloc(t->cells, cap * sizeof(*c));
        if (!c) {
            t->oom = true;
            return;
        }
        t->cells = c;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    /* Escaped: a client address or name may come from the network. */
    struct ferry_buf e;
    ferry_buf_init(&e);
    ferry_buf_text(&e, s);
    free(s);
    if (e.oom || !e.data) {
        ferry_buf_free(&e);
        e.data = strdup("");
        if (!e.data) {
            t->oom = true;
            return;
        }
    }
    t->cells[t->ncells++] = e.data;
}

/* Columns separated by two spaces; no trailing blanks. */
static void table_print(const struct table *t, struct ferry_buf *out)
{
    if (t->oom) {
        out->oom = true;
        return;
    }
    size_t width[TABLE_MAX_COLS] = {0};
    for (size_t i = 0; i < t->ncells; i++) {
        size_t n = strlen(t->cells[i]);
        if (n > width[i % t->ncols])
            width[i % t->ncols] = n;
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t col = i % t->ncols;
        bool last = col == t->ncols - 1;
        int pad = (int)(width[col] - strlen(t->cells[i]));
        if (t->align[col] == 'r')
            ferry_buf_printf(out, "%*s%s", pad, "", t->cells[i]);
        else
            ferry_buf_printf(out, "%s%*s", t->cells[i], last ? 0 : pad, "");
        ferry_buf_puts(out, last ? "\n" : "  ");
    }
}

/* ---- show info ---- */

int ferry_render_info(struct ferry_daemon *d, bool json, struct ferry_buf *out)
{
    uint64_t active, total;
    ferry_daemon_conn_totals(d, &active, &total);
    uint64_t now = ac_clock_now_ms();
    unsigned long long uptime = now > d->start_ms ? (now - d->start_ms) / 1000 : 0;
    unsigned long long reloads = atomic_load(&d->reloads);
    unsigned long long failed = atomic_load(&d->reloads_failed);
    long long last = (long long)atomic_load(&d->last_reload);
    const char *ok = atomic_load(&d->last_reload_ok) ? "true" : "false";
    const char *state = atomic_load(&d->stopping)    ? "stopping"
                        : atomic_load(&d->upgrading) ? "upgrading"
                                                     : "ready";
    const char *config = d->config_abs ? d->config_abs : "";
    const char *io_backend = d->rt ? ac_backend_name(ac_runtime_backend(d->rt)) : "-";
    unsigned long long log_dropped = ferry_logger_dropped(&d->log);
    if (json) {
        ferry_buf_puts(out, "{\"version\": ");
        ferry_buf_json_str(out, version_of(d));
        ferry_buf_printf(out,
                         ", \"pid\": %ld, \"uptime_s\": %llu, \"workers\": %u, \"active\": %llu, "
                         "\"total\": %llu, \"max_connections\": %u, \"reloads\": %llu, "
                         "\"reloads_failed\": %llu, \"last_reload\": %lld, "
                         "\"last_reload_ok\": %s, \"config\": ",
                         (long)d->pid, uptime, d->nworkers, (unsigned long long)active,
                         (unsigned long long)total, d->conn_limit_size, reloads, failed, last, ok);
        ferry_buf_json_str(out, config);
        ferry_buf_printf(out,
                         ", \"state\": \"%s\", \"log_dropped\": %llu, \"io_backend\": \"%s\"}\n",
                         state, log_dropped, io_backend);
    } else {
        ferry_buf_printf(out,
                         "version: %s\npid: %ld\nuptime_s: %llu\nworkers: %u\nactive: %llu\n"
                         "total: %llu\nmax_connections: %u\nreloads: %llu\nreloads_failed: %llu\n"
                         "last_reload: %lld\nlast_reload_ok: %s\nconfig: ",
                         version_of(d), (long)d->pid, uptime, d->nworkers,
                         (unsigned long long)active, (unsigned long long)total,
                         d->conn_limit_size, reloads, failed, last, ok);
        ferry_buf_text(out, config);
        ferry_buf_printf(out, "\nstate: %s\n", state);
        ferry_buf_printf(out, "log_dropped: %llu\nio_backend: %s\n", log_dropped, io_backend);
    }
    return done(out);
}

/* ---- show stats ---- */

/* False while `disable listener` holds it, or once ferryd stops. */
static bool accepting(struct ferry_daemon *d, const struct ferry_listener_rt *l)
{
    return !atomic_load(&d->stopping) && !(l->stats && atomic_load(&l->stats->disabled));
}

static unsigned server_weight(const struct ferry_server_rt *s)
{
    return s->stats ? ferry_server_weight(s->stats, s->cfg->weight) : s->cfg->weight;
}

static unsigned long long last_change_s(const struct ferry_server_rt *s)
{
    uint64_t now = ac_clock_now_ms(), then = s->stats ? atomic_load(&s->stats->last_change_ms) : now;
    return now > then ? (now - then) / 1000 : 0;
}

/* The addresses a listener serves: its sockets' own (under socket
 * activation, the inherited ones), or its bind lines before it has any. */
static size_t bind_count(const struct ferry_listener_rt *l)
{
    return l->nbounds ? l->nbounds : l->cfg->nbinds;
}

static const char *bind_text(const struct ferry_listener_rt *l, size_t i)
{
    return l->nbounds ? l->bound_addrs[i] : l->cfg->binds[i].text;
}

/* ---- the counters ---- */

/* Each counter written once: its name in `show stats` (JSON key and text
 * column; NULL: only in the metrics), its Prometheus name, type and help, and
 * where it sits in the summed totals. show stats (text and JSON) and show
 * metrics all walk these tables. */
struct metric {
    const char *key;
    const char *name, *type, *help;
    size_t off; /* of the uint64_t in the totals struct */
};

static const struct metric listener_metrics[] = {
    {"active", "ferry_listener_connections_active", "gauge", "Client connections open now.",
     offsetof(struct ferry_listener_totals, active)},
    {"total", "ferry_listener_connections_total", "counter", "Client connections accepted.",
     offsetof(struct ferry_listener_totals, total)},
    {"rejected", "ferry_listener_rejected_total", "counter",
     "Client connections refused before reaching a server: allow/deny, limits, a bad PROXY "
     "header or ClientHello (end=rejected), or a failed TLS handshake (end=handshake_failed).",
     offsetof(struct ferry_listener_totals, rejected)},
    {"bytes_in", "ferry_listener_bytes_in_total", "counter", "Bytes read from clients.",
     offsetof(struct ferry_listener_totals, bytes_in)},
    {"bytes_out", "ferry_listener_bytes_out_total", "counter", "Bytes written to clients.",
     offsetof(struct ferry_listener_totals, bytes_out)},
    {"handshake_errors", "ferry_listener_handshake_errors_total", "counter",
     "TLS handshakes that failed or timed out on a terminating listener (end=handshake_failed); "
     "a bad PROXY header or ClientHello counts as rejected, not here.",
     offsetof(struct ferry_listener_totals, handshake_errors)},
};

static const struct metric backend_metrics[] = {
    {"active", "ferry_backend_connections_active", "gauge", "Connections to the backend's servers open now.",
     offsetof(struct ferry_backend_totals, active)},
    {"total", "ferry_backend_connections_total", "counter", "Connections forwarded to the backend.",
     offsetof(struct ferry_backend_totals, total)},
    {"queue", "ferry_backend_queue", "gauge",
     "Connections waiting now for a server slot (every eligible server at max_connections).",
     offsetof(struct ferry_backend_totals, queue)},
};

static const struct metric server_metrics[] = {
    {"active", "ferry_server_connections_active", "gauge", "Connections to the server open now.",
     offsetof(struct ferry_server_totals, active)},
    {"total", "ferry_server_connections_total", "counter", "Connections established to the server.",
     offsetof(struct ferry_server_totals, total)},
    {"connect_errors", "ferry_server_connect_errors_total", "counter", "Failed connect attempts to the server.",
     offsetof(struct ferry_server_totals, connect_errors)},
    {"bytes_in", "ferry_server_bytes_in_total", "counter", "Bytes read from the server.",
     offsetof(struct ferry_server_totals, bytes_in)},
    {"bytes_out", "ferry_server_bytes_out_total", "counter", "Bytes written to the server.",
     offsetof(struct ferry_server_totals, bytes_out)},
    {NULL, "ferry_server_check_failures_total", "counter", "Failed health checks of the server.",
     offsetof(struct ferry_server_totals, check_failures)},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t field(const void *totals, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)totals + off, sizeof(v));
    return v;
}

/* `, "key": N` for each counter of the table shown in show stats. */
static void json_counters(struct ferry_buf *out, const struct metric *m, size_t n,
                          const void *totals)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].key)
            ferry_buf_printf(out, ", \"%s\": %llu", m[i].key,
                             (unsigned long long)field(totals, m[i].off));
}

/* The text table's headings, or one row's cells (totals NULL: "-"), for the
 * counters of the table shown in show stats. */
static void text_counter_heads(struct table *t, const struct metric *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].key)
            table_cell(t, "%s", m[i].key);
}

static void text_counters(struct table *t, const struct metric *m, size_t n, const void *totals)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].key)
            table_cell(t, "%llu", (unsigned long long)field(totals, m[i].off));
}

static void json_listener(struct ferry_daemon *d, const struct ferry_listener_rt *l,
                          struct ferry_buf *out)
{
    struct ferry_listener_totals t = {0};
    if (l->stats)
        ferry_listener_stats_sum(&d->stats, l->stats, &t);
    ferry_buf_puts(out, "{\"name\": ");
    ferry_buf_json_str(out, l->cfg->name);
    ferry_buf_puts(out, ", \"binds\": [");
    for (size_t i = 0; i < bind_count(l); i++) {
        ferry_buf_puts(out, i ? ", " : "");
        ferry_buf_json_str(out, bind_text(l, i));
    }
    ferry_buf_printf(out, "], \"tls\": %s", l->cfg->tls ? "true" : "false");
    json_counters(out, listener_metrics, NELEM(listener_metrics), &t);
    ferry_buf_printf(out, ", \"accepting\": %s", accepting(d, l) ? "true" : "false");
    ferry_buf_puts(out, ", \"rejected_by\": {");
    for (int k = 0; k < FERRY_REJECT_NREASONS; k++)
        ferry_buf_printf(out, "%s\"%s\": %llu", k ? ", " : "", ferry_reject_reason_name(k),
                         (unsigned long long)t.rejected_by[k]);
    /* Client addresses the per-client caps track (bounded by their table). */
    ferry_buf_printf(out, "}, \"clients\": %llu}", (unsigned long long)t.clients);
}

static void json_server(struct ferry_daemon *d, const struct ferry_server_rt *s,
                        struct ferry_buf *out)
{
    struct ferry_server_totals t = {0};
    if (s->stats)
        ferry_server_stats_sum(&d->stats, s->stats, &t);
    ferry_buf_puts(out, "{\"name\": ");
    ferry_buf_json_str(out, s->cfg->name);
    ferry_buf_puts(out, ", \"address\": ");
    ferry_buf_json_str(out, s->addr_text[0] ? s->addr_text : s->cfg->addr.text);
    ferry_buf_puts(out, ", \"state\": ");
    ferry_buf_json_str(out, s->stats ? ferry_server_state_name(s->stats) : "up");
    char check[32];
    ferry_buf_puts(out, ", \"check\": ");
    ferry_buf_json_str(out, s->stats ? ferry_server_check_text(s->stats, check, sizeof(check)) : "-");
    ferry_buf_printf(out, ", \"max_connections\": %u", s->cfg->max_connections);
    json_counters(out, server_metrics, NELEM(server_metrics), &t);
    ferry_buf_printf(out, ", \"weight\": %u, \"backup\": %s, \"last_change_s\": %llu}",
                     server_weight(s), s->cfg->backup ? "true" : "false", last_change_s(s));
}

static void json_backend(struct ferry_daemon *d, const struct ferry_backend_rt *b,
                         struct ferry_buf *out)
{
    struct ferry_backend_totals t = {0};
    if (b->stats)
        ferry_backend_stats_sum(&d->stats, b->stats, &t);
    ferry_buf_puts(out, "{\"name\": ");
    ferry_buf_json_str(out, b->cfg->name);
    ferry_buf_printf(out, ", \"balance\": \"%s\"", balance_name(b->cfg->balance));
    json_counters(out, backend_metrics, NELEM(backend_metrics), &t);
    ferry_buf_puts(out, ", \"servers\": [");
    bool first = true;
    for (size_t i = 0; i < b->nservers; i++) {
        if (!ferry_server_listed(&b->servers[i]))
            continue;
        ferry_buf_puts(out, first ? "" : ", ");
        first = false;
        json_server(d, &b->servers[i], out);
    }
    ferry_buf_puts(out, "]}");
}

static void stats_json(struct ferry_daemon *d, const struct ferry_gen *g, struct ferry_buf *out)
{
    size_t nl = g ? g->cfg->nlisteners : 0, nb = g ? g->cfg->nbackends : 0;
    ferry_buf_puts(out, "{\"listeners\": [");
    for (size_t i = 0; i < nl; i++) {
        ferry_buf_puts(out, i ? ", " : "");
        json_listener(d, &g->listeners[i], out);
    }
    ferry_buf_puts(out, "], \"backends\": [");
    for (size_t i = 0; i < nb; i++) {
        ferry_buf_puts(out, i ? ", " : "");
        json_backend(d, &g->backends[i], out);
    }
    ferry_buf_puts(out, "]}\n");
}

static void text_listeners(struct ferry_daemon *d, const struct ferry_gen *g, struct ferry_buf *out)
{
    struct table t;
    table_init(&t, 9, "lllrrrrrr");
    table_cell(&t, "listener");
    table_cell(&t, "binds");
    table_cell(&t, "tls");
    text_counter_heads(&t, listener_metrics, NELEM(listener_metrics));
    for (size_t i = 0; g && i < g->cfg->nlisteners; i++) {
        const struct ferry_listener_rt *l = &g->listeners[i];
        struct ferry_listener_totals s = {0};
        if (l->stats)
            ferry_listener_stats_sum(&d->stats, l->stats, &s);
        struct ferry_buf binds;
        ferry_buf_init(&binds);
        for (size_t j = 0; j < bind_count(l); j++)
            ferry_buf_printf(&binds, "%s%s", j ? "," : "", bind_text(l, j));
        table_cell(&t, "%s", l->cfg->name);
        table_cell(&t, "%s", binds.data ? binds.data : "-");
        if (binds.oom)
            t.oom = true;
        ferry_buf_free(&binds);
        table_cell(&t, "%s", l->cfg->tls ? "on" : "off");
        text_counters(&t, listener_metrics, NELEM(listener_metrics), &s);
    }
    table_print(&t, out);
    table_free(&t);
}

/* Backends, each followed by its servers (indented): a backend's queue, a
 * server's weight, backup flag and seconds since its state last changed. */
static void text_backends(struct ferry_daemon *d, const struct ferry_gen *g, struct ferry_buf *out)
{
    struct table t;
    table_init(&t, 13, "llllrlrrrrrrr");
    static const char *const head[] = {"backend/server", "balance/address", "state", "check",
                                       "weight", "backup", "queue", "last_change_s"};
    for (size_t i = 0; i < NELEM(head); i++)
        table_cell(&t, "%s", head[i]);
    text_counter_heads(&t, server_metrics, NELEM(server_metrics));
    for (size_t i = 0; g && i < g->cfg->nbackends; i++) {
        const struct ferry_backend_rt *b = &g->backends[i];
        struct ferry_backend_totals bt = {0};
        if (b->stats)
            ferry_backend_stats_sum(&d->stats, b->stats, &bt);
        table_cell(&t, "%s", b->cfg->name);
        table_cell(&t, "%s", balance_name(b->cfg->balance));
        for (int k = 0; k < 4; k++)
            table_cell(&t, "-");
        table_cell(&t, "%llu", (unsigned long long)bt.queue);
        table_cell(&t, "-");
        table_cell(&t, "%llu", (unsigned long long)bt.active);
        table_cell(&t, "%llu", (unsigned long long)bt.total);
        for (int k = 0; k < 3; k++)
            table_cell(&t, "-");
        for (size_t j = 0; j < b->nservers; j++) {
            const struct ferry_server_rt *s = &b->servers[j];
            if (!ferry_server_listed(s))
                continue;
            struct ferry_server_totals st = {0};
            if (s->stats)
                ferry_server_stats_sum(&d->stats, s->stats, &st);
            table_cell(&t, "  %s", s->cfg->name);
            table_cell(&t, "%s", s->addr_text[0] ? s->addr_text : s->cfg->addr.text);
            table_cell(&t, "%s", s->stats ? ferry_server_state_name(s->stats) : "up");
            char check[32];
            table_cell(&t, "%s", s->stats ? ferry_server_check_text(s->stats, check, sizeof(check))
                                          : "-");
            table_cell(&t, "%u", server_weight(s));
            table_cell(&t, "%s", s->cfg->backup ? "yes" : "no");
            table_cell(&t, "-");
            table_cell(&t, "%llu", last_change_s(s));
            text_counters(&t, server_metrics, NELEM(server_metrics), &st);
        }
    }
    table_print(&t, out);
    table_free(&t);
}

int ferry_render_stats(struct ferry_daemon *d, bool json, struct ferry_buf *out)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    if (json) {
        stats_json(d, g, out);
    } else {
        text_listeners(d, g, out);
        ferry_buf_puts(out, "\n");
        text_backends(d, g, out);
    }
    if (g)
        ferry_gen_unref(g);
    return done(out);
}

/* ---- show conns ---- */

int ferry_render_conns(const struct ferry_conn_snapshot *v, size_t n, bool json,
                       struct ferry_buf *out)
{
    if (json) {
        ferry_buf_puts(out, "{\"conns\": [");
        for (size_t i = 0; i < n; i++) {
            ferry_buf_printf(out, "%s{\"id\": %llu, \"listener\": ", i ? ", " : "",
                             (unsigned long long)v[i].id);
            ferry_buf_json_str(out, v[i].listener);
            ferry_buf_puts(out, ", \"client\": ");
            ferry_buf_json_str(out, v[i].client);
            ferry_buf_puts(out, ", \"server\": ");
            ferry_buf_json_str(out, v[i].server);
            ferry_buf_printf(out, ", \"age_s\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu}",
                             (unsigned long long)v[i].age_s, (unsigned long long)v[i].bytes_in,
                             (unsigned long long)v[i].bytes_out);
        }
        ferry_buf_puts(out, "]}\n");
    } else {
        struct table t;
        table_init(&t, 7, "rlllrrr");
        static const char *head[] = {"id", "listener", "client", "server", "age_s",
                                     "bytes_in", "bytes_out"};
        for (size_t i = 0; i < 7; i++)
            table_cell(&t, "%s", head[i]);
        for (size_t i = 0; i < n; i++) {
            table_cell(&t, "%llu", (unsigned long long)v[i].id);
            table_cell(&t, "%s", v[i].listener);
            table_cell(&t, "%s", v[i].client);
            table_cell(&t, "%s", v[i].server);
            table_cell(&t, "%llu", (unsigned long long)v[i].age_s);
            table_cell(&t, "%llu", (unsigned long long)v[i].bytes_in);
            table_cell(&t, "%llu", (unsigned long long)v[i].bytes_out);
        }
        table_print(&t, out);
        table_free(&t);
    }
    return done(out);
}

/* ---- show metrics ---- */


static void metric_head(struct ferry_buf *out, const char *name, const char *type, const char *help)
{
    ferry_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label(struct ferry_buf *out, const char *key, const char *value, bool first)
{
    ferry_buf_printf(out, "%s%s=\"", first ? "" : ",", key);
    ferry_buf_prom_label(out, value);
    ferry_buf_puts(out, "\"");
}

static void metrics_listeners(struct ferry_daemon *d, const struct ferry_gen *g,
                              struct ferry_buf *out)
{
    size_t n = g ? g->cfg->nlisteners : 0;
    struct ferry_listener_totals *t = calloc(n ? n : 1, sizeof(*t));
    if (!t) {
        out->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (g->listeners[i].stats)
            ferry_listener_stats_sum(&d->stats, g->listeners[i].stats, &t[i]);
    for (size_t m = 0; m < NELEM(listener_metrics); m++) {
        const struct metric *mt = &listener_metrics[m];
        metric_head(out, mt->name, mt->type, mt->help);
        for (size_t i = 0; i < n; i++) {
            ferry_buf_printf(out, "%s{", mt->name);
            label(out, "listener", g->cfg->listeners[i].name, true);
            ferry_buf_printf(out, "} %llu\n", (unsigned long long)field(&t[i], mt->off));
        }
    }
    free(t);
}

/* Connections each worker accepted, per listener: how evenly the shared
 * socket (EPOLLEXCLUSIVE) or the reuseport group spreads them. */
static void metrics_listener_workers(struct ferry_daemon *d, const struct ferry_gen *g,
                                     struct ferry_buf *out)
{
    size_t n = g ? g->cfg->nlisteners : 0;
    metric_head(out, "ferry_listener_worker_connections_total", "counter",
                "Client connections accepted, by the worker that accepted them.");
    for (size_t i = 0; i < n; i++) {
        struct ferry_listener_stats *ls = g->listeners[i].stats;
        for (unsigned w = 0; ls && w < d->stats.nworkers; w++) {
            ferry_buf_puts(out, "ferry_listener_worker_connections_total{");
            label(out, "listener", g->cfg->listeners[i].name, true);
            ferry_buf_printf(out, ",worker=\"%u\"} %llu\n", w,
                             (unsigned long long)ferry_ctr_get(&ls->w[w].total));
        }
    }
}

static void metrics_backends(struct ferry_daemon *d, const struct ferry_gen *g,
                             struct ferry_buf *out)
{
    size_t n = g ? g->cfg->nbackends : 0;
    for (size_t m = 0; m < NELEM(backend_metrics); m++) {
        const struct metric *mt = &backend_metrics[m];
        metric_head(out, mt->name, mt->type, mt->help);
        for (size_t i = 0; i < n; i++) {
            struct ferry_backend_totals t = {0};
            if (g->backends[i].stats)
                ferry_backend_stats_sum(&d->stats, g->backends[i].stats, &t);
            ferry_buf_printf(out, "%s{", mt->name);
            label(out, "backend", g->backends[i].cfg->name, true);
            ferry_buf_printf(out, "} %llu\n", (unsigned long long)field(&t, mt->off));
        }
    }
}

static void server_labels(struct ferry_buf *out, const char *name, const struct ferry_backend_rt *b,
                          const struct ferry_server_rt *s)
{
    ferry_buf_printf(out, "%s{", name);
    label(out, "backend", b->cfg->name, true);
    label(out, "server", s->cfg->name, false);
    ferry_buf_puts(out, "} ");
}

static void metrics_servers(struct ferry_daemon *d, const struct ferry_gen *g,
                            struct ferry_buf *out)
{
    size_t nb = g ? g->cfg->nbackends : 0;
    metric_head(out, "ferry_server_up", "gauge",
                "1 when the server is up and enabled, 0 when down or disabled.");
    for (size_t i = 0; i < nb; i++) {
        const struct ferry_backend_rt *b = &g->backends[i];
        for (size_t j = 0; j < b->nservers; j++) {
            const struct ferry_server_rt *s = &b->servers[j];
            if (!ferry_server_listed(s))
                continue;
            bool up = !s->stats || strcmp(ferry_server_state_name(s->stats), "up") == 0;
            server_labels(out, "ferry_server_up", b, s);
            ferry_buf_printf(out, "%d\n", up ? 1 : 0);
        }
    }
    for (size_t m = 0; m < NELEM(server_metrics); m++) {
        const struct metric *mt = &server_metrics[m];
        metric_head(out, mt->name, mt->type, mt->help);
        for (size_t i = 0; i < nb; i++) {
            const struct ferry_backend_rt *b = &g->backends[i];
            for (size_t j = 0; j < b->nservers; j++) {
                if (!ferry_server_listed(&b->servers[j]))
                    continue;
                struct ferry_server_totals t = {0};
                if (b->servers[j].stats)
                    ferry_server_stats_sum(&d->stats, b->servers[j].stats, &t);
                server_labels(out, mt->name, b, &b->servers[j]);
                ferry_buf_printf(out, "%llu\n", (unsigned long long)field(&t, mt->off));
            }
        }
    }
}

/* One histogram series: cumulative buckets, sum and count, in seconds.
 * labels: the series' labels already rendered ("listener=\"web\""). */
static void hist_series(struct ferry_buf *out, const char *name, const char *labels,
                        const struct ferry_hist_totals *h, enum ferry_hist_kind kind)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= FERRY_HIST_BOUNDS; i++) {
        cum += h->bucket[i];
        if (i < FERRY_HIST_BOUNDS)
            ferry_buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels,
                             (double)ferry_hist_bounds_us[kind][i] / 1e6, (unsigned long long)cum);
        else
            ferry_buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
                             (unsigned long long)cum);
    }
    ferry_buf_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                     (double)h->sum_us / 1e6, name, labels, (unsigned long long)cum);
}

/* labels for one listener, or one backend/server, rendered into buf. */
static const char *labels_of(struct ferry_buf *buf, const char *k1, const char *v1, const char *k2,
                             const char *v2)
{
    ferry_buf_reset(buf);
    label(buf, k1, v1, true);
    if (k2)
        label(buf, k2, v2, false);
    return buf->data ? buf->data : "";
}

/* Limits, rejections by reason and the listener histograms. */
static void metrics_listener_more(struct ferry_daemon *d, const struct ferry_gen *g,
                                  struct ferry_buf *out)
{
    size_t n = g ? g->cfg->nlisteners : 0;
    metric_head(out, "ferry_listener_max_connections", "gauge",
                "The listener's own max_connections (0: only the global cap).");
    for (size_t i = 0; i < n; i++) {
        ferry_buf_puts(out, "ferry_listener_max_connections{");
        label(out, "listener", g->cfg->listeners[i].name, true);
        ferry_buf_printf(out, "} %u\n", g->cfg->listeners[i].max_connections);
    }
    metric_head(out, "ferry_listener_accepting", "gauge",
                "1 while the listener accepts, 0 while it is disabled or ferryd stops.");
    for (size_t i = 0; i < n; i++) {
        ferry_buf_puts(out, "ferry_listener_accepting{");
        label(out, "listener", g->cfg->listeners[i].name, true);
        ferry_buf_printf(out, "} %d\n", accepting(d, &g->listeners[i]) ? 1 : 0);
    }
    struct ferry_listener_totals *t = calloc(n ? n : 1, sizeof(*t));
    struct ferry_buf lb;
    ferry_buf_init(&lb);
    if (!t) {
        out->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (g->listeners[i].stats)
            ferry_listener_stats_sum(&d->stats, g->listeners[i].stats, &t[i]);
    metric_head(out, "ferry_listener_rejected_by_reason_total", "counter",
                "Connections ended end=rejected, by reason.");
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < FERRY_REJECT_NREASONS; k++) {
            ferry_buf_puts(out, "ferry_listener_rejected_by_reason_total{");
            label(out, "listener", g->cfg->listeners[i].name, true);
            label(out, "reason", ferry_reject_reason_name(k), false);
            ferry_buf_printf(out, "} %llu\n", (unsigned long long)t[i].rejected_by[k]);
        }
    metric_head(out, "ferry_listener_handshake_seconds", "histogram",
                "Time from accept to the end of a successful TLS handshake.");
    for (size_t i = 0; i < n; i++)
        hist_series(out, "ferry_listener_handshake_seconds",
                    labels_of(&lb, "listener", g->cfg->listeners[i].name, NULL, NULL),
                    &t[i].handshake, FERRY_HIST_SHORT);
    metric_head(out, "ferry_listener_session_seconds", "histogram",
                "Duration of client connections, from accept to close.");
    for (size_t i = 0; i < n; i++)
        hist_series(out, "ferry_listener_session_seconds",
                    labels_of(&lb, "listener", g->cfg->listeners[i].name, NULL, NULL),
                    &t[i].session, FERRY_HIST_SESSION);
    if (lb.oom)
        out->oom = true;
    ferry_buf_free(&lb);
    free(t);
}

/* Weight, one state series per state, and the connect-time histogram. */
static void metrics_server_more(struct ferry_daemon *d, const struct ferry_gen *g,
                                struct ferry_buf *out)
{
    static const char *const states[] = {"up", "down", "disabled", "maint", "unresolved"};
    size_t nb = g ? g->cfg->nbackends : 0;
    metric_head(out, "ferry_server_weight", "gauge",
                "The weight balancing uses (set at runtime, else configured).");
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < g->backends[i].nservers; j++) {
            if (!ferry_server_listed(&g->backends[i].servers[j]))
                continue; /* departed or deleted: its series leave */
            server_labels(out, "ferry_server_weight", &g->backends[i], &g->backends[i].servers[j]);
            ferry_buf_printf(out, "%u\n", server_weight(&g->backends[i].servers[j]));
        }
    metric_head(out, "ferry_server_state", "gauge",
                "1 for the server's current state (up, down, disabled, maint, unresolved), 0 for "
                "the others.");
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < g->backends[i].nservers; j++) {
            const struct ferry_server_rt *s = &g->backends[i].servers[j];
            if (!ferry_server_listed(s))
                continue;
            const char *now = s->stats ? ferry_server_state_name(s->stats) : "up";
            for (size_t k = 0; k < NELEM(states); k++) {
                ferry_buf_puts(out, "ferry_server_state{");
                label(out, "backend", g->backends[i].cfg->name, true);
                label(out, "server", s->cfg->name, false);
                label(out, "state", states[k], false);
                ferry_buf_printf(out, "} %d\n", strcmp(now, states[k]) == 0);
            }
        }
    metric_head(out, "ferry_server_connect_seconds", "histogram",
                "Time to establish a connection to the server (TCP, and TLS when on).");
    struct ferry_buf lb;
    ferry_buf_init(&lb);
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < g->backends[i].nservers; j++) {
            const struct ferry_server_rt *s = &g->backends[i].servers[j];
            if (!ferry_server_listed(s))
                continue;
            struct ferry_server_totals t = {0};
            if (s->stats)
                ferry_server_stats_sum(&d->stats, s->stats, &t);
            hist_series(out, "ferry_server_connect_seconds",
                        labels_of(&lb, "backend", g->backends[i].cfg->name, "server", s->cfg->name),
                        &t.connect, FERRY_HIST_SHORT);
        }
    if (lb.oom)
        out->oom = true;
    ferry_buf_free(&lb);
}

static void metrics_process(struct ferry_daemon *d, struct ferry_buf *out)
{
    metric_head(out, "ferry_max_connections", "gauge",
                "The global max_connections: client connections held at once, all listeners.");
    ferry_buf_printf(out, "ferry_max_connections %u\n", d->conn_limit_size);
    metric_head(out, "ferry_build_info", "gauge", "Always 1; the version of ferryd as a label.");
    ferry_buf_puts(out, "ferry_build_info{");
    label(out, "version", version_of(d), true);
    ferry_buf_puts(out, "} 1\n");
    ferry_procstat_render(d->start_unix, out);
}

static void metrics_reloads(struct ferry_daemon *d, struct ferry_buf *out)
{
    metric_head(out, "ferry_reloads_total", "counter", "Successful configuration reloads.");
    ferry_buf_printf(out, "ferry_reloads_total %llu\n", (unsigned long long)atomic_load(&d->reloads));
    metric_head(out, "ferry_tls_reloads_total", "counter",
                "TLS files read again by tls_watch (new contexts for new handshakes).");
    ferry_buf_printf(out, "ferry_tls_reloads_total %llu\n",
                     (unsigned long long)atomic_load(&d->tls_reloads));
    metric_head(out, "ferry_reloads_failed_total", "counter",
                "Configuration reloads that failed (the running configuration stayed).");
    ferry_buf_printf(out, "ferry_reloads_failed_total %llu\n",
                     (unsigned long long)atomic_load(&d->reloads_failed));
    metric_head(out, "ferry_config_last_reload_successful", "gauge",
                "1 when the last reload succeeded (or none was tried), else 0.");
    ferry_buf_printf(out, "ferry_config_last_reload_successful %d\n",
                     atomic_load(&d->last_reload_ok) ? 1 : 0);
    metric_head(out, "ferry_config_last_reload_success_timestamp_seconds", "gauge",
                "Unix time the running configuration was loaded (start or last good reload).");
    ferry_buf_printf(out, "ferry_config_last_reload_success_timestamp_seconds %lld\n",
                     (long long)atomic_load(&d->last_reload_success));
}

/* ferry_tls_cert_not_after_seconds: the notAfter of each listener
 * certificate and each backend client certificate. */
static void metrics_certs(const struct ferry_gen *g, struct ferry_buf *out)
{
    metric_head(out, "ferry_tls_cert_not_after_seconds", "gauge",
                "Expiry (notAfter) of each listener certificate and backend client "
                "certificate, as Unix time.");
    for (size_t i = 0; g && i < g->cfg->nlisteners; i++) {
        const struct ferry_listener *l = &g->cfg->listeners[i];
        int64_t t;
        for (size_t k = 0; g->listeners[i].tls_ctx && k < l->ntls_certs; k++) {
            if (!ferry_tls_server_cert_not_after(g->listeners[i].tls_ctx, k, &t))
                continue;
            ferry_buf_puts(out, "ferry_tls_cert_not_after_seconds{");
            label(out, "listener", l->name, true);
            label(out, "cert", l->tls_certs[k], false);
            ferry_buf_printf(out, "} %lld\n", (long long)t);
        }
        char path[1024]; /* tls_acme: the stored certificate, once issued */
        for (size_t k = 0; k < ferry_tls_server_acme_count(g->listeners[i].tls_ctx); k++) {
            if (!ferry_tls_server_acme_not_after(g->listeners[i].tls_ctx, k, path, sizeof(path),
                                                 &t))
                continue;
            ferry_buf_puts(out, "ferry_tls_cert_not_after_seconds{");
            label(out, "listener", l->name, true);
            label(out, "cert", path, false);
            ferry_buf_printf(out, "} %lld\n", (long long)t);
        }
    }
    /* Client certificates presented to servers (a backend's tls_cert). */
    for (size_t i = 0; g && i < g->cfg->nbackends; i++) {
        const struct ferry_backend *b = &g->cfg->backends[i];
        int64_t t;
        if (!b->tls_cert || !g->backends[i].tls_ctx ||
            !ferry_tls_client_cert_not_after(g->backends[i].tls_ctx, &t))
            continue;
        ferry_buf_puts(out, "ferry_tls_cert_not_after_seconds{");
        label(out, "backend", b->name, true);
        label(out, "cert", b->tls_cert, false);
        ferry_buf_printf(out, "} %lld\n", (long long)t);
    }
}

int ferry_render_metrics(struct ferry_daemon *d, struct ferry_buf *out)
{
    struct ferry_gen *g = ferry_daemon_gen(d);
    metrics_listeners(d, g, out);
    metrics_listener_workers(d, g, out);
    metrics_backends(d, g, out);
    metrics_listener_more(d, g, out);
    metrics_servers(d, g, out);
    metrics_server_more(d, g, out);
    metrics_certs(g, out);
    metrics_reloads(d, out);
    ferry_acme_render_metrics(d, out);
    uint64_t active, total;
    ferry_daemon_conn_totals(d, &active, &total);
    metric_head(out, "ferry_connections_active", "gauge", "Client connections open now, all listeners.");
    ferry_buf_printf(out, "ferry_connections_active %llu\n", (unsigned long long)active);
    metric_head(out, "ferry_log_lines_dropped_total", "counter",
                "Log lines dropped because the log sink could not keep up.");
    ferry_buf_printf(out, "ferry_log_lines_dropped_total %llu\n",
                     (unsigned long long)ferry_logger_dropped(&d->log));
    metrics_process(d, out);
    if (g)
        ferry_gen_unref(g);
    return done(out);
}

/* The keys of [global], [listener NAME] and [backend NAME] (ferry.ini(5)):
 * one table per section kind, one small handler per key that checks the
 * value and stores it. Errors are reported at the key's line. */
#include "ferry_config_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DURATION_MAX_MS 2147483647ull   /* 2^31 - 1 ms, about 596 h: what timers handle */
#define DURATION_HINT "a duration like 250ms, 10s, 5m or 1h (a bare number is seconds)"

typedef void (*key_fn)(struct ferry__parse *p, const char *v);

struct key_def {
    const char *name;
    bool repeatable;
    bool allow_empty;
    key_fn fn;
};

static struct ferry_global *G(struct ferry__parse *p) { return &p->cfg->global; }
static struct ferry_listener *L(struct ferry__parse *p) { return &p->cfg->listeners[p->cur]; }
static struct ferry_backend *B(struct ferry__parse *p) { return &p->cfg->backends[p->cur]; }

static void bad(struct ferry__parse *p, const char *v, const char *expected)
{
    ferry__err(p, p->lineno, "invalid value \"%s\" for %s: expected %s", v, p->key, expected);
}

/* ---- typed helpers ---- */

/* False (after reporting it) when v is not a boolean. */
static bool set_bool(struct ferry__parse *p, const char *v, bool *dst)
{
    if (ferry_parse_bool(v, dst) == 0)
        return true;
    bad(p, v, "on, off, yes, no, true or false");
    return false;
}

static void set_uint(struct ferry__parse *p, const char *v, unsigned min, unsigned max,
                     unsigned *dst)
{
    unsigned long n;
    if (ferry_parse_uint(v, max, &n) < 0 || n < min) {
        char want[80];
        snprintf(want, sizeof(want), "a whole number from %u to %u", min, max);
        bad(p, v, want);
        return;
    }
    *dst = (unsigned)n;
}

static void set_duration(struct ferry__parse *p, const char *v, uint64_t min_ms, uint64_t *dst)
{
    uint64_t ms;
    if (ferry_parse_duration_ms(v, &ms) < 0 || ms > DURATION_MAX_MS) {
        bad(p, v, DURATION_HINT ", at most 596h");
        return;
    }
    if (ms < min_ms) {
        bad(p, v, "a duration above zero");
        return;
    }
    *dst = ms;
}

static void set_string(struct ferry__parse *p, const char *v, char **dst)
{
    char *s = strdup(v);
    if (!s) {
        p->oom = true;
        return;
    }
    free(*dst);
    *dst = s;
}

/* Index of v in names (case-insensitive), or -1 with an error. */
static int pick(struct ferry__parse *p, const char *v, const char *const *names, size_t n,
                const char *expected)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v, names[i]) == 0)
            return (int)i;
    bad(p, v, expected);
    return -1;
}

#define PICK(p, v, names, expected) pick(p, v, names, sizeof(names) / sizeof(names[0]), expected)

/* Copies v into a fresh buffer split into whitespace-separated tokens. */
static char *tokens(struct ferry__parse *p, const char *v, char **tok, size_t max, size_t *n)
{
    char *copy = strdup(v), *save = NULL;
    *n = 0;
    if (!copy) {
        p->oom = true;
        return NULL;
    }
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (*n < max)
            tok[*n] = t;
        (*n)++;
    }
    return copy;
}

/* ---- [global] ---- */

static void g_workers(struct ferry__parse *p, const char *v)
{
    if (strcasecmp(v, "auto") == 0)
        G(p)->workers = 0;
    else {
        unsigned long n;
        if (ferry_parse_uint(v, 256, &n) < 0 || n == 0)
            bad(p, v, "auto or a whole number from 1 to 256");
        else
            G(p)->workers = (unsigned)n;
    }
}

/* Which one auto picks, and whether the kernel allows it, is decided when
 * the runtime starts (daemon): here only the name is checked. */
static void g_io_backend(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"auto", "epoll", "io_uring", "poll", "kqueue"};
    static const enum ferry_io_backend vals[] = {FERRY_IO_AUTO, FERRY_IO_EPOLL, FERRY_IO_URING,
                                                 FERRY_IO_POLL, FERRY_IO_KQUEUE};
    int i = PICK(p, v, names, "auto, epoll, io_uring, poll or kqueue");
    if (i >= 0)
        G(p)->io_backend = vals[i];
}

static void g_max_connections(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 1, INT_MAX, &G(p)->max_connections);
}

static void g_control_socket(struct ferry__parse *p, const char *v)
{
    p->control_socket_line = p->lineno;
    G(p)->control_socket_line = p->lineno;
    if (!v[0]) {
        G(p)->control_socket[0] = '\0';
        return;
    }
    char *path = ferry__path(p, v);
    if (!path)
        return;
    if (strlen(path) >= sizeof(G(p)->control_socket))
        ferry__err(p, p->lineno, "invalid value \"%s\" for control_socket: the path %s is %zu "
                   "bytes long, a unix socket path has at most %zu (use a shorter or an "
                   "absolute path, or nothing to disable the control socket)", v, path,
                   strlen(path), sizeof(G(p)->control_socket) - 1);
    else
        snprintf(G(p)->control_socket, sizeof(G(p)->control_socket), "%s", path);
    free(path);
}

static void g_control_mode(struct ferry__parse *p, const char *v)
{
    unsigned long mode = 0;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 5 && strspn(v, "01234567") == n;
    if (ok)
        mode = strtoul(v, NULL, 8);
    if (!ok || mode > 07777) {
        bad(p, v, "an octal file mode such as 0660");
        return;
    }
    G(p)->control_mode = (unsigned)mode;
}

static void set_account(struct ferry__parse *p, const char *v, char *dst, size_t size)
{
    if (strlen(v) >= size || strpbrk(v, " \t:")) {
        bad(p, v, "a user or group name (or number) without spaces or ':'");
        return;
    }
    snprintf(dst, size, "%s", v);
}

static void g_user(struct ferry__parse *p, const char *v)
{
    set_account(p, v, G(p)->user, sizeof(G(p)->user));
    G(p)->user_line = p->lineno;
}

static void g_group(struct ferry__parse *p, const char *v)
{
    set_account(p, v, G(p)->group, sizeof(G(p)->group));
    G(p)->group_line = p->lineno;
}

static void g_log_level(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    int i = PICK(p, v, names, "error, warn, info or debug");
    if (i >= 0)
        G(p)->log_level = (enum ferry_log_level)i;
}

/* A log file: any path with a '/' in it (`./ferry.log` for the file next to
 * the configuration), so that a mistyped keyword never becomes a file. */
static bool set_log_path(struct ferry__parse *p, const char *v, char *dst, size_t size,
                         const char *expected)
{
    if (!strchr(v, '/')) {
        bad(p, v, expected);
        return false;
    }
    char *abs = ferry__path(p, v); /* relative to the configuration's directory */
    if (!abs)
        return false;
    bool fits = strlen(abs) < size;
    if (fits)
        snprintf(dst, size, "%s", abs);
    else
        bad(p, v, "a path of fewer than 1024 bytes");
    free(abs);
    return fits;
}

/* udp://HOST:PORT or tcp://HOST:PORT: a remote syslog server. */
static bool g_log_remote(struct ferry__parse *p, const char *v)
{
    bool udp = strncmp(v, "udp://", 6) == 0, tcp = strncmp(v, "tcp://", 6) == 0;
    if (!udp && !tcp)
        return false;
    struct ferry_addr a;
    const char *why = "a host and a port";
    int rc = ferry__parse_addr(v + 6, true, &a, &why);
    if (rc < 0 || a.kind != FERRY_ADDR_INET || a.port == 0) {
        ferry__err(p, p->lineno, "invalid log address \"%s\": expected %s://HOST:PORT (%s)", v,
                   udp ? "udp" : "tcp", rc < 0 ? why : "a host and a port");
        return true;
    }
    G(p)->log_addr = a;
    G(p)->log_target = udp ? FERRY_LOG_TO_UDP : FERRY_LOG_TO_TCP;
    return true;
}

static void g_log(struct ferry__parse *p, const char *v)
{
    G(p)->log_line = p->lineno;
    if (g_log_remote(p, v))
        return;
    if (strcmp(v, "stderr") == 0) {
        G(p)->log_target = FERRY_LOG_TO_STDERR;
    } else if (strcmp(v, "syslog") == 0) {
        G(p)->log_target = FERRY_LOG_TO_SYSLOG;
    } else if (set_log_path(p, v, G(p)->log_path, sizeof(G(p)->log_path),
                            "stderr, syslog, udp://HOST:PORT, tcp://HOST:PORT or a file path "
                            "with a '/' (like ./ferry.log)")) {
        G(p)->log_target = FERRY_LOG_TO_FILE;
    }
}

static void g_log_format(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"logfmt", "json"};
    int i = PICK(p, v, names, "logfmt or json");
    if (i >= 0)
        G(p)->log_format = (enum ferry_log_format)i;
}

static void g_access_log(struct ferry__parse *p, const char *v)
{
    G(p)->access_log_line = p->lineno;
    G(p)->access_log_path[0] = '\0';
    if (ferry_parse_bool(v, &G(p)->access_log) == 0)
        return;
    if (set_log_path(p, v, G(p)->access_log_path, sizeof(G(p)->access_log_path),
                     "on, off, or a file path with a '/' (like ./access.log)"))
        G(p)->access_log = true;
}

static void g_drain_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 0, &G(p)->drain_timeout_ms);
}

static void g_tls_watch(struct ferry__parse *p, const char *v)
{
    set_bool(p, v, &G(p)->tls_watch);
}

/* reuseport balances only where the kernel hashes connections over the
 * sockets of a group (Linux); elsewhere the last socket bound gets them all. */
static void g_reuseport(struct ferry__parse *p, const char *v)
{
    bool on;
    if (!set_bool(p, v, &on))
        return;
#ifndef __linux__
    if (on) {
        ferry__err(p, p->lineno, "reuseport = on needs Linux (SO_REUSEPORT balancing)");
        return;
    }
#endif
    G(p)->reuseport = on;
}

static void g_shutdown_delay(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 0, &G(p)->shutdown_delay_ms);
}

static void g_buffer_size(struct ferry__parse *p, const char *v)
{
    size_t n;
    /* 256k is the largest scratch buffer the copy loop has (AC_SCRATCH_SIZE). */
    if (ferry_parse_size(v, &n) < 0 || n < 1024 || n > 256 * 1024) {
        bad(p, v, "a size from 1k to 256k (like 4096, 16k)");
        return;
    }
    G(p)->buffer_size = n;
}

static void g_metrics(struct ferry__parse *p, const char *v)
{
    struct ferry_addr a;
    const char *why = "HOST:PORT";
    if (ferry__parse_addr(v, false, &a, &why) < 0 || a.kind == FERRY_ADDR_UNIX) {
        ferry__err(p, p->lineno, "invalid metrics address \"%s\": %s", v,
                   a.kind == FERRY_ADDR_UNIX ? "expected IPV4:PORT, [IPV6]:PORT or *:PORT" : why);
        return;
    }
    G(p)->metrics = a;
    G(p)->has_metrics = true;
    G(p)->metrics_line = p->lineno;
}

/* resolvers = IP:PORT (repeatable): c-ares takes numeric addresses only. */
static void g_resolvers(struct ferry__parse *p, const char *v)
{
    struct ferry_addr a;
    const char *why = "IP:PORT";
    if (ferry__parse_addr(v, false, &a, &why) < 0 || a.kind != FERRY_ADDR_INET) {
        ferry__err(p, p->lineno, "invalid resolver \"%s\": expected IPV4:PORT or [IPV6]:PORT",
                   v);
        return;
    }
    if (G(p)->nresolvers == FERRY_RESOLVERS_MAX) {
        ferry__err(p, p->lineno, "too many resolvers: at most %d", FERRY_RESOLVERS_MAX);
        return;
    }
    snprintf(G(p)->resolvers[G(p)->nresolvers++], sizeof(G(p)->resolvers[0]), "%.63s", a.text);
}

static void g_dns_min_ttl(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &G(p)->dns_min_ttl_ms);
}

static void g_dns_max_ttl(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &G(p)->dns_max_ttl_ms);
}

/* Where runtime server state is kept across restarts; empty: nowhere. */
static void g_state_file(struct ferry__parse *p, const char *v)
{
    G(p)->state_file_line = p->lineno;
    if (!v[0]) {
        free(G(p)->state_file);
        G(p)->state_file = NULL;
        return;
    }
    ferry__set_path(p, v, &G(p)->state_file);
}

/* include = GLOB (repeatable): files read after this one (ferry_config_include.c). */
static void g_include(struct ferry__parse *p, const char *v)
{
    ferry__include_add(p, v);
}

static const struct key_def global_keys[] = {
    {"workers", false, false, g_workers},
    {"io_backend", false, false, g_io_backend},
    {"max_connections", false, false, g_max_connections},
    {"control_socket", false, true, g_control_socket},
    {"control_mode", false, false, g_control_mode},
    {"user", false, false, g_user},
    {"group", false, false, g_group},
    {"log_level", false, false, g_log_level},
    {"access_log", false, false, g_access_log},
    {"log", false, false, g_log},
    {"log_format", false, false, g_log_format},
    {"drain_timeout", false, false, g_drain_timeout},
    {"shutdown_delay", false, false, g_shutdown_delay},
    {"tls_watch", false, false, g_tls_watch},
    {"reuseport", false, false, g_reuseport},
    {"buffer_size", false, false, g_buffer_size},
    {"metrics", false, false, g_metrics},
    {"resolvers", true, false, g_resolvers},
    {"dns_min_ttl", false, false, g_dns_min_ttl},
    {"dns_max_ttl", false, false, g_dns_max_ttl},
    {"state_file", false, true, g_state_file},
    {"include", true, false, g_include},
};

/* ---- [listener NAME] ---- */

static void l_bind(struct ferry__parse *p, const char *v)
{
    struct ferry_listener *l = L(p);
    struct ferry_addr a;
    const char *why = "";
    if (ferry__parse_addr(v, false, &a, &why) < 0) {
        ferry__err(p, p->lineno, "invalid bind address \"%s\": %s", v, why);
        return;
    }
    if (ferry__grow(&l->binds, l->nbinds, sizeof(*l->binds)) < 0 ||
        ferry__grow(&l->bind_lines, l->nbinds, sizeof(*l->bind_lines)) < 0) {
        p->oom = true;
        return;
    }
    l->binds[l->nbinds] = a;
    l->bind_lines[l->nbinds++] = p->lineno;
}

static bool check_name(struct ferry__parse *p, const char *what, const char *v)
{
    if (ferry_name_valid(v))
        return true;
    ferry__err(p, p->lineno, "invalid %s name \"%s\": use 1 to %d letters, digits, '_', '.' "
               "or '-'", what, v, FERRY_NAME_MAX - 1);
    return false;
}

static void l_backend(struct ferry__parse *p, const char *v)
{
    if (!check_name(p, "backend", v))
        return;
    snprintf(L(p)->backend, sizeof(L(p)->backend), "%s", v);
    L(p)->backend_line = p->lineno;
}

static void l_tls(struct ferry__parse *p, const char *v)
{
    p->tls_bad = !set_bool(p, v, &L(p)->tls);
}

/* "CERT [KEY]": the certificate chain, and its key in the same file or in
 * KEY. Both paths made absolute; false after an error (reported). */
static bool cert_and_key(struct ferry__parse *p, const char *v, char **cert, char **key)
{
    char *tok[2];
    size_t n;
    char *copy = tokens(p, v, tok, 2, &n);
    *cert = *key = NULL;
    if (!copy)
        return false;
    bool ok = false;
    if (n < 1 || n > 2)
        ferry__err(p, p->lineno, "invalid %s \"%s\": expected CERT [KEY] (two paths at most)",
                   p->key, v);
    else if ((*cert = ferry__path(p, tok[0])) != NULL && n == 2 &&
             (*key = ferry__path(p, tok[1])) == NULL) {
        free(*cert);
        *cert = NULL;
    } else
        ok = *cert != NULL;
    free(copy);
    return ok;
}

static void l_tls_cert(struct ferry__parse *p, const char *v)
{
    struct ferry_listener *l = L(p);
    char *path, *key;
    if (!cert_and_key(p, v, &path, &key))
        return;
    if (ferry__grow(&l->tls_certs, l->ntls_certs, sizeof(*l->tls_certs)) < 0 ||
        ferry__grow(&l->tls_cert_keys, l->ntls_certs, sizeof(*l->tls_cert_keys)) < 0 ||
        ferry__grow(&l->tls_cert_lines, l->ntls_certs, sizeof(*l->tls_cert_lines)) < 0) {
        free(path);
        free(key);
        p->oom = true;
        return;
    }
    l->tls_certs[l->ntls_certs] = path;
    l->tls_cert_keys[l->ntls_certs] = key;
    l->tls_cert_lines[l->ntls_certs++] = p->lineno;
}

static void l_tls_min_version(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"1.2", "1.3"};
    int i = PICK(p, v, names, "1.2 or 1.3");
    if (i >= 0)
        L(p)->tls_min_version = i == 0 ? 0x0303 : 0x0304;
}

static void l_tls_ciphers(struct ferry__parse *p, const char *v)
{
    set_string(p, v, &L(p)->tls_ciphers);
    L(p)->tls_ciphers_line = p->lineno;
}

static void l_tls_ciphersuites(struct ferry__parse *p, const char *v)
{
    set_string(p, v, &L(p)->tls_ciphersuites);
    L(p)->tls_ciphersuites_line = p->lineno;
}

/* "h2,http/1.1": protocol names of 1 to 255 visible characters. */
static void l_tls_alpn(struct ferry__parse *p, const char *v)
{
    size_t len = 0;
    for (const char *c = v;; c++) {
        if (*c == ',' || *c == '\0') {
            if (len == 0 || len > 255) {
                bad(p, v, "a comma list of protocol names, like h2,http/1.1");
                return;
            }
            len = 0;
            if (*c == '\0')
                break;
        } else if (!isgraph((unsigned char)*c)) {
            bad(p, v, "a comma list of protocol names without spaces, like h2,http/1.1");
            return;
        } else {
            len++;
        }
    }
    set_string(p, v, &L(p)->tls_alpn);
    L(p)->tls_alpn_line = p->lineno;
}

static void l_tls_ticket_keys(struct ferry__parse *p, const char *v)
{
    ferry__set_path(p, v, &L(p)->tls_ticket_keys);
    L(p)->tls_ticket_keys_line = p->lineno;
}

static void l_tls_client_ca(struct ferry__parse *p, const char *v)
{
    ferry__set_path(p, v, &L(p)->tls_client_ca);
    L(p)->tls_client_ca_line = p->lineno;
}

/* "www.example.com" or "*.example.com", stored lower-case. */
static bool servername_valid(char *s)
{
    for (char *c = s; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    return ferry__hostname_valid(s, 253);
}

static void l_route(struct ferry__parse *p, const char *v)
{
    struct ferry_listener *l = L(p);
    char *tok[2];
    size_t n;
    char *copy = tokens(p, v, tok, 2, &n);
    if (!copy)
        return;
    if (n != 2)
        ferry__err(p, p->lineno, "invalid route \"%s\": expected SERVERNAME BACKEND", v);
    else if (!servername_valid(tok[0]))
        ferry__err(p, p->lineno, "invalid route server name \"%s\": expected a host name "
                   "or *.domain", tok[0]);
    else if (check_name(p, "backend", tok[1])) {
        for (size_t i = 0; i < l->nroutes; i++) {
            if (strcmp(l->routes[i].servername, tok[0]) == 0) {
                ferry__err(p, p->lineno, "duplicate route for %s (first at line %d)", tok[0],
                           l->routes[i].line);
                goto out;
            }
        }
        if (ferry__grow(&l->routes, l->nroutes, sizeof(*l->routes)) < 0) {
            p->oom = true;
            goto out;
        }
        struct ferry_route *r = &l->routes[l->nroutes++];
        memset(r, 0, sizeof(*r));
        snprintf(r->servername, sizeof(r->servername), "%s", tok[0]);
        snprintf(r->backend, sizeof(r->backend), "%s", tok[1]);
        r->backend_index = -1;
        r->line = p->lineno;
    }
out:
    free(copy);
}

static void l_accept_proxy(struct ferry__parse *p, const char *v)
{
    set_bool(p, v, &L(p)->accept_proxy);
}

/* One or more CIDRs, separated by spaces or commas. */
static void add_cidrs(struct ferry__parse *p, const char *v, struct ferry_cidr **arr, size_t *n)
{
    char *copy = strdup(v), *save = NULL;
    if (!copy) {
        p->oom = true;
        return;
    }
    for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
        struct ferry_cidr c;
        if (ferry_parse_cidr(t, &c) < 0) {
            ferry__err(p, p->lineno, "invalid %s \"%s\": expected an address or CIDR like "
                       "10.0.0.0/8 or 2001:db8::/32", p->key, t);
            continue;
        }
        if (ferry__grow(arr, *n, sizeof(**arr)) < 0) {
            p->oom = true;
            break;
        }
        (*arr)[(*n)++] = c;
    }
    free(copy);
}

static void l_allow(struct ferry__parse *p, const char *v)
{
    add_cidrs(p, v, &L(p)->allow, &L(p)->nallow);
}

static void l_deny(struct ferry__parse *p, const char *v)
{
    add_cidrs(p, v, &L(p)->deny, &L(p)->ndeny);
}

static void l_accept_proxy_from(struct ferry__parse *p, const char *v)
{
    add_cidrs(p, v, &L(p)->proxy_from, &L(p)->nproxy_from);
}

static void l_max_connections(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, INT_MAX, &L(p)->max_connections);
}

static void l_max_connections_per_client(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, INT_MAX, &L(p)->max_connections_per_client);
}

/* Bounded by the per-second counters of the client tables (16 bits). */
static void l_client_rate(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, 65535, &L(p)->client_rate);
}

static void l_idle_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &L(p)->idle_timeout_ms);
}

static void l_handshake_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &L(p)->handshake_timeout_ms);
}

/* Multipath TCP: Linux's IPPROTO_MPTCP (5.6 and later). */
static void set_mptcp(struct ferry__parse *p, const char *v, bool *dst)
{
    bool on;
    if (!set_bool(p, v, &on))
        return;
#ifndef __linux__
    if (on) {
        ferry__err(p, p->lineno, "mptcp = on needs Linux (IPPROTO_MPTCP)");
        return;
    }
#endif
    *dst = on;
}

static void l_mptcp(struct ferry__parse *p, const char *v)
{
    set_mptcp(p, v, &L(p)->mptcp);
}

/* The kernel caps the queue at net.core.somaxconn; 0 turns it off. */
static void l_tcp_fastopen(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, 65535, &L(p)->tcp_fastopen);
}

static const struct key_def listener_keys[] = {
    {"bind", true, false, l_bind},
    {"backend", false, false, l_backend},
    {"tls", false, false, l_tls},
    {"tls_cert", true, false, l_tls_cert},
    {"tls_min_version", false, false, l_tls_min_version},
    {"tls_ciphers", false, false, l_tls_ciphers},
    {"tls_ciphersuites", false, false, l_tls_ciphersuites},
    {"tls_alpn", false, false, l_tls_alpn},
    {"tls_client_ca", false, false, l_tls_client_ca},
    {"tls_ticket_keys", false, false, l_tls_ticket_keys},
    {"tls_acme", true, false, ferry__listener_tls_acme},
    {"route", true, false, l_route},
    {"accept_proxy", false, false, l_accept_proxy},
    {"accept_proxy_from", true, false, l_accept_proxy_from},
    {"allow", true, false, l_allow},
    {"deny", true, false, l_deny},
    {"max_connections", false, false, l_max_connections},
    {"max_connections_per_client", false, false, l_max_connections_per_client},
    {"client_rate", false, false, l_client_rate},
    {"idle_timeout", false, false, l_idle_timeout},
    {"handshake_timeout", false, false, l_handshake_timeout},
    {"mptcp", false, false, l_mptcp},
    {"tcp_fastopen", false, false, l_tcp_fastopen},
};

/* ---- [backend NAME] ---- */

/* "weight=N", "backup" or "max_connections=N" after a server's address. */
static bool server_option(struct ferry__parse *p, struct ferry_server *s, const char *opt,
                          bool *seen_weight)
{
    unsigned long w;
    if (strcmp(opt, "backup") == 0 && !s->backup) {
        s->backup = true;
        return true;
    }
    if (strncmp(opt, "weight=", 7) == 0 && !*seen_weight) {
        if (ferry_parse_uint(opt + 7, 256, &w) < 0) {
            ferry__err(p, p->lineno, "invalid server weight \"%s\": expected a whole number "
                       "from 0 to 256", opt + 7);
            return false;
        }
        s->weight = (unsigned)w;
        *seen_weight = true;
        return true;
    }
    if (strncmp(opt, "max_connections=", 16) == 0 && s->max_connections == 0) {
        if (ferry_parse_uint(opt + 16, INT_MAX, &w) < 0 || w == 0) {
            ferry__err(p, p->lineno, "invalid server max_connections \"%s\": expected a whole "
                       "number from 1 to %d", opt + 16, INT_MAX);
            return false;
        }
        s->max_connections = (unsigned)w;
        return true;
    }
    if (strcmp(opt, "backup") == 0 || strncmp(opt, "weight=", 7) == 0 ||
        strncmp(opt, "max_connections=", 16) == 0)
        ferry__err(p, p->lineno, "server option \"%s\" given twice", opt);
    else
        ferry__err(p, p->lineno, "unknown server option \"%s\": expected weight=N, backup or "
                   "max_connections=N", opt);
    return false;
}

/* Fills s from "NAME ADDRESS [weight=N] [backup]"; false after an error. */
static bool parse_server(struct ferry__parse *p, const char *v, struct ferry_server *s)
{
    struct ferry_backend *b = B(p);
    char *tok[5];
    size_t n;
    bool ok = false, seen_weight = false;
    const char *why = "";
    char *copy = tokens(p, v, tok, 5, &n);
    if (!copy)
        return false;
    if (n < 2 || n > 5) {
        ferry__err(p, p->lineno, "invalid server \"%s\": expected NAME ADDRESS [weight=N] "
                   "[backup] [max_connections=N]", v);
        goto out;
    }
    if (!check_name(p, "server", tok[0]))
        goto out;
    for (size_t i = 0; i < b->nservers; i++) {
        if (strcmp(b->servers[i].name, tok[0]) == 0) {
            ferry__err(p, p->lineno, "duplicate server \"%s\" in backend \"%s\" (first at line "
                       "%d)", tok[0], b->name, b->servers[i].line);
            goto out;
        }
    }
    if (ferry__parse_addr(tok[1], true, &s->addr, &why) < 0) {
        ferry__err(p, p->lineno, "invalid server address \"%s\": %s", tok[1], why);
        goto out;
    }
    if (s->addr.kind == FERRY_ADDR_ANY) {
        ferry__err(p, p->lineno, "invalid server address \"%s\": a server needs a host, "
                   "not *", tok[1]);
        goto out;
    }
    snprintf(s->name, sizeof(s->name), "%s", tok[0]);
    s->weight = 1;
    s->line = p->lineno;
    ok = true;
    for (size_t i = 2; i < n; i++)
        ok &= server_option(p, s, tok[i], &seen_weight);
out:
    free(copy);
    return ok;
}

static void b_server(struct ferry__parse *p, const char *v)
{
    struct ferry_backend *b = B(p);
    struct ferry_server s;
    memset(&s, 0, sizeof(s));
    if (!parse_server(p, v, &s))
        return;
    if (ferry__grow(&b->servers, b->nservers, sizeof(*b->servers)) < 0) {
        p->oom = true;
        return;
    }
    b->servers[b->nservers++] = s;
}

/* discover = dns HOST:PORT | srv _SERVICE._PROTO.NAME */
static void b_discover(struct ferry__parse *p, const char *v)
{
    struct ferry_backend *b = B(p);
    char *tok[3];
    size_t n;
    char *copy = tokens(p, v, tok, 3, &n);
    if (!copy)
        return;
    struct ferry_addr a;
    const char *why = "HOST:PORT";
    if (n == 2 && strcmp(tok[0], "dns") == 0) {
        if (ferry__parse_addr(tok[1], true, &a, &why) < 0 || a.kind != FERRY_ADDR_INET ||
            a.resolved || a.port == 0)
            ferry__err(p, p->lineno, "invalid discover address \"%s\": expected HOST:PORT with "
                       "a host name", tok[1]);
        else {
            b->discover = FERRY_DISCOVER_DNS;
            snprintf(b->discover_name, sizeof(b->discover_name), "%s", a.host);
            b->discover_port = a.port;
        }
    } else if (n == 2 && strcmp(tok[0], "srv") == 0) {
        if (tok[1][0] != '_' || !strchr(tok[1], '.') || !ferry__hostname_valid(tok[1], 253))
            ferry__err(p, p->lineno, "invalid SRV name \"%s\": expected _SERVICE._PROTO.NAME",
                       tok[1]);
        else {
            b->discover = FERRY_DISCOVER_SRV;
            snprintf(b->discover_name, sizeof(b->discover_name), "%s", tok[1]);
        }
    } else {
        bad(p, v, "dns HOST:PORT or srv _SERVICE._PROTO.NAME");
    }
    b->discover_line = p->lineno;
    free(copy);
}

static void b_balance(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"roundrobin", "leastconn", "random", "source"};
    int i = PICK(p, v, names, "roundrobin, leastconn, random or source");
    if (i >= 0)
        B(p)->balance = (enum ferry_balance)i;
}

static void b_connect_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &B(p)->connect_timeout_ms);
}

static void b_retries(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, 100, &B(p)->retries);
}

static void b_health_check(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"off", "tcp", "tls", "send-expect", "http"};
    int i = PICK(p, v, names, "off, tcp, tls, send-expect or http");
    if (i >= 0)
        B(p)->health_check = (enum ferry_health)i;
    B(p)->health_check_line = p->lineno;
}

/* health_send / health_expect: C escapes decoded into a fresh buffer. */
static void set_escaped(struct ferry__parse *p, const char *v, char **dst, size_t *len)
{
    char buf[FERRY_HEALTH_BYTES_MAX];
    size_t n;
    int rc = ferry_parse_escaped(v, buf, sizeof(buf), &n);
    if (rc < 0) {
        bad(p, v, rc == -ERANGE ? "at most 1024 bytes" : "text with the escapes \\r \\n "
            "\\t \\\\ and \\xHH only");
        return;
    }
    if (n == 0) {
        bad(p, v, "at least one byte");
        return;
    }
    char *s = malloc(n + 1);
    if (!s) {
        p->oom = true;
        return;
    }
    memcpy(s, buf, n);
    s[n] = '\0';
    free(*dst);
    *dst = s;
    *len = n;
}

static void b_health_send(struct ferry__parse *p, const char *v)
{
    set_escaped(p, v, &B(p)->health_send, &B(p)->health_send_len);
}

static void b_health_expect(struct ferry__parse *p, const char *v)
{
    set_escaped(p, v, &B(p)->health_expect, &B(p)->health_expect_len);
}

/* An origin-form path: '/' then visible characters, no spaces. */
static void b_health_uri(struct ferry__parse *p, const char *v)
{
    bool ok = v[0] == '/' && strlen(v) <= 1024;
    for (const char *c = v; ok && *c; c++)
        ok = isgraph((unsigned char)*c) != 0;
    if (!ok) {
        bad(p, v, "a path starting with '/', without spaces, like /primary");
        return;
    }
    set_string(p, v, &B(p)->health_uri);
}

static void b_health_status(struct ferry__parse *p, const char *v)
{
    if (ferry_parse_status_list(v, &B(p)->health_status) < 0)
        bad(p, v, "a comma list of status codes or classes, like 200,204 or 2xx,3xx");
}

static void b_health_port(struct ferry__parse *p, const char *v)
{
    unsigned port = 0;
    set_uint(p, v, 1, 65535, &port);
    B(p)->health_port = (uint16_t)port;
}

static void b_health_send_proxy(struct ferry__parse *p, const char *v)
{
    set_bool(p, v, &B(p)->health_send_proxy);
}

static void b_queue_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &B(p)->queue_timeout_ms);
}

static void b_max_queue(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 0, INT_MAX, &B(p)->max_queue);
}

static void b_slow_start(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 0, &B(p)->slow_start_ms);
}

static void b_health_interval(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &B(p)->health_interval_ms);
}

static void b_health_timeout(struct ferry__parse *p, const char *v)
{
    set_duration(p, v, 1, &B(p)->health_timeout_ms);
}

static void b_health_rise(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 1, UINT32_MAX, &B(p)->health_rise);
}

static void b_health_fall(struct ferry__parse *p, const char *v)
{
    set_uint(p, v, 1, UINT32_MAX, &B(p)->health_fall);
}

static void b_tls(struct ferry__parse *p, const char *v)
{
    p->tls_bad = !set_bool(p, v, &B(p)->tls);
}

static void b_tls_verify(struct ferry__parse *p, const char *v)
{
    set_bool(p, v, &B(p)->tls_verify);
}

static void b_tls_ca(struct ferry__parse *p, const char *v)
{
    ferry__set_path(p, v, &B(p)->tls_ca);
    B(p)->tls_ca_line = p->lineno;
}

static void b_tls_cert(struct ferry__parse *p, const char *v)
{
    char *path, *key;
    if (!cert_and_key(p, v, &path, &key))
        return;
    B(p)->tls_cert = path;
    B(p)->tls_cert_key = key;
    B(p)->tls_cert_line = p->lineno;
}

static void b_tls_sni(struct ferry__parse *p, const char *v)
{
    if (!ferry__hostname_valid(v, 253)) {
        bad(p, v, "a host name");
        return;
    }
    set_string(p, v, &B(p)->tls_sni);
}

static void b_send_proxy(struct ferry__parse *p, const char *v)
{
    static const char *const names[] = {"off", "v1", "v2"};
    int i = PICK(p, v, names, "off, v1 or v2");
    if (i >= 0)
        B(p)->send_proxy = i;
}

static void b_mptcp(struct ferry__parse *p, const char *v)
{
    set_mptcp(p, v, &B(p)->mptcp);
}

static const struct key_def backend_keys[] = {
    {"server", true, false, b_server},
    {"discover", false, false, b_discover},
    {"balance", false, false, b_balance},
    {"connect_timeout", false, false, b_connect_timeout},
    {"retries", false, false, b_retries},
    {"health_check", false, false, b_health_check},
    {"health_interval", false, false, b_health_interval},
    {"health_timeout", false, false, b_health_timeout},
    {"health_rise", false, false, b_health_rise},
    {"health_fall", false, false, b_health_fall},
    {"tls", false, false, b_tls},
    {"tls_verify", false, false, b_tls_verify},
    {"tls_ca", false, false, b_tls_ca},
    {"tls_cert", false, false, b_tls_cert},
    {"tls_sni", false, false, b_tls_sni},
    {"send_proxy", false, false, b_send_proxy},
    {"health_send", false, false, b_health_send},
    {"health_expect", false, false, b_health_expect},
    {"health_uri", false, false, b_health_uri},
    {"health_status", false, false, b_health_status},
    {"health_port", false, false, b_health_port},
    {"health_send_proxy", false, false, b_health_send_proxy},
    {"queue_timeout", false, false, b_queue_timeout},
    {"max_queue", false, false, b_max_queue},
    {"slow_start", false, false, b_slow_start},
    {"mptcp", false, false, b_mptcp},
};

/* Keys that mean something only where their section has tls = on (ferry.ini(5)):
 * set elsewhere, each is an error at its line ("tls_ca has no effect without
 * tls = on"), since a listener would serve plaintext and a backend talk
 * plaintext to a TLS server. A new TLS key needs only its row here.
 * `health`: the key also serves a backend's health_check = tls, which sends
 * tls_sni and presents tls_cert without tls = on (ferry.ini(5), health_check). */
static const struct ferry__tls_key tls_only_keys[] = {
    {FERRY__SECT_LISTENER, "tls_cert", false},
    {FERRY__SECT_LISTENER, "tls_client_ca", false},
    {FERRY__SECT_LISTENER, "tls_min_version", false},
    {FERRY__SECT_LISTENER, "tls_ciphers", false},
    {FERRY__SECT_LISTENER, "tls_ciphersuites", false},
    {FERRY__SECT_LISTENER, "tls_alpn", false},
    {FERRY__SECT_LISTENER, "tls_ticket_keys", false},
    {FERRY__SECT_LISTENER, "tls_acme", false},
    {FERRY__SECT_BACKEND, "tls_ca", false},
    {FERRY__SECT_BACKEND, "tls_sni", true},
    {FERRY__SECT_BACKEND, "tls_verify", false},
    {FERRY__SECT_BACKEND, "tls_cert", true},
};

static const struct ferry__tls_key *tls_only_key(enum ferry__sect sect, const char *key)
{
    for (size_t i = 0; i < sizeof(tls_only_keys) / sizeof(tls_only_keys[0]); i++)
        if (tls_only_keys[i].sect == sect && strcmp(tls_only_keys[i].key, key) == 0)
            return &tls_only_keys[i];
    return NULL;
}

/* Remembers a line setting a TLS-only key of the current section. */
static void note_tls_key(struct ferry__parse *p, const struct ferry__tls_key *k)
{
    if (ferry__grow(&p->tls_keys, p->ntls_keys, sizeof(*p->tls_keys)) < 0) {
        p->oom = true;
        return;
    }
    p->tls_keys[p->ntls_keys++] = (struct ferry__key_line){.def = k, .line = p->lineno};
}

/* Without tls = on (and no error on the tls line itself), every TLS-only
 * key set in the section is an error at its line. */
static void check_tls_keys(struct ferry__parse *p, bool tls, bool health_tls)
{
    for (size_t i = 0; !tls && !p->tls_bad && i < p->ntls_keys; i++) {
        const struct ferry__tls_key *k = p->tls_keys[i].def;
        if (k->health && health_tls)
            continue;
        ferry__err(p, p->tls_keys[i].line, "%s has no effect without tls = on%s", k->key,
                   k->health ? " or health_check = tls" : "");
    }
    p->ntls_keys = 0;
    p->tls_bad = false;
}

_Static_assert(sizeof(listener_keys) / sizeof(listener_keys[0]) <= FERRY__KEYS_MAX,
               "seen[] too small");
_Static_assert(sizeof(backend_keys) / sizeof(backend_keys[0]) <= FERRY__KEYS_MAX,
               "seen[] too small");

/* ---- dispatch ---- */

void ferry__global_defaults(struct ferry_global *g)
{
    memset(g, 0, sizeof(*g));
    g->workers = 0;
    g->io_backend = FERRY_IO_AUTO;
    g->max_connections = 10000;
    snprintf(g->control_socket, sizeof(g->control_socket), "/run/ferry/ferry.sock");
    g->control_mode = 0660;
    g->log_level = FERRY_LOG_INFO;
    g->access_log = true;
    g->drain_timeout_ms = 30000;
    g->tls_watch = true;
    g->reuseport = FERRY_REUSEPORT_DEFAULT;
    g->buffer_size = 16 * 1024;
    g->dns_min_ttl_ms = 1000;
    g->dns_max_ttl_ms = 5 * 60 * 1000;
}

void ferry__listener_defaults(struct ferry_listener *l)
{
    memset(l, 0, sizeof(*l));
    l->backend_index = -1;
    l->tls_min_version = 0x0303;
    l->idle_timeout_ms = 5 * 60 * 1000;
    l->handshake_timeout_ms = 10 * 1000;
}

void ferry__backend_defaults(struct ferry_backend *b)
{
    memset(b, 0, sizeof(*b));
    b->balance = FERRY_BALANCE_ROUNDROBIN;
    b->connect_timeout_ms = 5000;
    b->retries = 2;
    b->health_check = FERRY_HEALTH_OFF;
    b->health_interval_ms = 5000;
    b->health_timeout_ms = 2000;
    b->health_rise = 2;
    b->health_fall = 3;
    (void)ferry_parse_status_list("2xx", &b->health_status);
    b->queue_timeout_ms = 5000;
    b->max_queue = 1000;
    b->tls_verify = true;
}

/* Line where the section's key `name` was first seen, 0 if not. */
static int seen_at(const struct ferry__parse *p, const struct key_def *keys, size_t n,
                   const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return p->seen[i];
    return 0;
}

/* Health keys that need a check type (or send_proxy) to mean anything. */
static void check_health_keys(struct ferry__parse *p, const struct key_def *keys, size_t n)
{
    const struct ferry_backend *b = B(p);
    static const struct {
        const char *key;
        enum ferry_health needs;
        const char *what;
    } needs[] = {
        {"health_send", FERRY_HEALTH_SEND_EXPECT, "send-expect"},
        {"health_expect", FERRY_HEALTH_SEND_EXPECT, "send-expect"},
        {"health_uri", FERRY_HEALTH_HTTP, "http"},
        {"health_status", FERRY_HEALTH_HTTP, "http"},
    };
    for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++) {
        int line = seen_at(p, keys, n, needs[i].key);
        if (line && b->health_check != needs[i].needs)
            ferry__err(p, line, "%s has no effect without health_check = %s", needs[i].key,
                       needs[i].what);
    }
    if (b->health_check == FERRY_HEALTH_SEND_EXPECT && !seen_at(p, keys, n, "health_expect"))
        ferry__err(p, b->health_check_line, "health_check = send-expect needs health_expect");
    int line = seen_at(p, keys, n, "health_send_proxy");
    if (line && b->health_send_proxy && !b->send_proxy)
        ferry__err(p, line, "health_send_proxy has no effect without send_proxy = v1 or v2");
    if (line && b->health_send_proxy && b->health_check == FERRY_HEALTH_OFF)
        ferry__err(p, line, "health_send_proxy has no effect without health_check");
}

/* mptcp and tcp_fastopen are TCP options: a unix bind cannot have them. */
static void check_tcp_keys(struct ferry__parse *p, const struct ferry_listener *l,
                           const struct key_def *keys, size_t n)
{
    static const char *const tcp_keys[] = {"mptcp", "tcp_fastopen"};
    bool on[] = {l->mptcp, l->tcp_fastopen > 0};
    for (size_t k = 0; k < 2; k++) {
        int line = seen_at(p, keys, n, tcp_keys[k]);
        for (size_t i = 0; line && on[k] && i < l->nbinds; i++) {
            if (l->binds[i].kind == FERRY_ADDR_UNIX) {
                ferry__err(p, line, "%s applies to TCP only, but bind %s is a unix socket",
                           tcp_keys[k], l->binds[i].text);
                break;
            }
        }
    }
}

/* Allowed but likely a mistake: a check that cannot end before the next
 * one is due, a backend that serves only once every server is down. */
static void warn_backend(struct ferry__parse *p, const struct key_def *keys, size_t n)
{
    const struct ferry_backend *b = B(p);
    int tline = seen_at(p, keys, n, "health_timeout");
    int iline = seen_at(p, keys, n, "health_interval");
    if ((b->health_check != FERRY_HEALTH_OFF || tline || iline) &&
        b->health_timeout_ms >= b->health_interval_ms)
        ferry__warn(p, tline ? tline : iline ? iline : b->health_check_line,
                    "health_timeout (%llums) is not below health_interval (%llums)",
                    (unsigned long long)b->health_timeout_ms,
                    (unsigned long long)b->health_interval_ms);
    size_t backups = 0;
    for (size_t i = 0; i < b->nservers; i++)
        backups += b->servers[i].backup;
    if (b->nservers > 0 && backups == b->nservers && b->discover == FERRY_DISCOVER_NONE)
        ferry__warn(p, b->line, "every server of backend \"%s\" is backup (a backup server "
                    "is meant to serve only while no other server is up)", b->name);
}

/* A bind line with a bad value already has its error: "no bind" is only for
 * a listener without any bind line (likewise for the other checks). */
void ferry__close_section(struct ferry__parse *p)
{
    if (p->sect == FERRY__SECT_LISTENER) {
        const struct ferry_listener *l = L(p);
        const size_t n = sizeof(listener_keys) / sizeof(listener_keys[0]);
        if (!seen_at(p, listener_keys, n, "bind"))
            ferry__err(p, l->line, "listener \"%s\" has no bind", l->name);
        if (l->tls && !seen_at(p, listener_keys, n, "tls_cert") &&
            !seen_at(p, listener_keys, n, "tls_acme"))
            ferry__err(p, l->line, "listener \"%s\": tls = on needs at least one tls_cert "
                       "or tls_acme", l->name);
        if (!seen_at(p, listener_keys, n, "backend") && !seen_at(p, listener_keys, n, "route"))
            ferry__err(p, l->line, "listener \"%s\" has neither a backend nor a route", l->name);
        int from = seen_at(p, listener_keys, n, "accept_proxy_from");
        if (from && !l->accept_proxy)
            ferry__err(p, from, "accept_proxy_from has no effect without accept_proxy = on");
        check_tls_keys(p, l->tls, false);
        check_tcp_keys(p, l, listener_keys, n);
    } else if (p->sect == FERRY__SECT_GLOBAL) {
        const size_t n = sizeof(global_keys) / sizeof(global_keys[0]);
        int line = seen_at(p, global_keys, n, "dns_max_ttl");
        if (!line)
            line = seen_at(p, global_keys, n, "dns_min_ttl");
        if (line && G(p)->dns_min_ttl_ms > G(p)->dns_max_ttl_ms)
            ferry__err(p, line, "dns_min_ttl is above dns_max_ttl");
    } else if (p->sect == FERRY__SECT_BACKEND) {
        const size_t n = sizeof(backend_keys) / sizeof(backend_keys[0]);
        if (!seen_at(p, backend_keys, n, "server") && !seen_at(p, backend_keys, n, "discover"))
            ferry__err(p, B(p)->line, "backend \"%s\" has no server (and no discover)",
                       B(p)->name);
        check_tls_keys(p, B(p)->tls, B(p)->health_check == FERRY_HEALTH_TLS);
        check_health_keys(p, backend_keys, n);
        warn_backend(p, backend_keys, n);
    } else if (p->sect == FERRY__SECT_ACME) {
        ferry__acme_close(p);
    }
    p->ntls_keys = 0;
    p->tls_bad = false;
    p->sect = FERRY__SECT_NONE;
}

void ferry__key(struct ferry__parse *p)
{
    const struct key_def *keys;
    size_t nkeys;
    char where[FERRY_NAME_MAX + 16];
    if (!p->key[0]) {
        ferry__err(p, p->lineno, "missing key before '='");
        return;
    }
    switch (p->sect) {
    case FERRY__SECT_NONE:
        ferry__err(p, p->lineno, "key \"%s\" outside any section", p->key);
        return;
    case FERRY__SECT_SKIP:
        return;
    case FERRY__SECT_ACME:
        ferry__acme_key(p);
        return;
    case FERRY__SECT_GLOBAL:
        keys = global_keys, nkeys = sizeof(global_keys) / sizeof(global_keys[0]);
        snprintf(where, sizeof(where), "[global]");
        break;
    case FERRY__SECT_LISTENER:
        keys = listener_keys, nkeys = sizeof(listener_keys) / sizeof(listener_keys[0]);
        snprintf(where, sizeof(where), "[listener %s]", L(p)->name);
        break;
    default:
        keys = backend_keys, nkeys = sizeof(backend_keys) / sizeof(backend_keys[0]);
        snprintf(where, sizeof(where), "[backend %s]", B(p)->name);
        break;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (strcmp(keys[i].name, p->key) != 0)
            continue;
        if (!keys[i].repeatable && p->seen[i]) {
            ferry__err(p, p->lineno, "%s given twice in %s (first at line %d); it may appear "
                       "only once", p->key, where, p->seen[i]);
            return;
        }
        p->seen[i] = p->lineno;
        if (!p->value[0] && !keys[i].allow_empty) {
            ferry__err(p, p->lineno, "empty value for %s", p->key);
            return;
        }
        size_t nerrs = p->nerrs;
        keys[i].fn(p, p->value);
        /* A value with its own error gets no second one for its place. */
        const struct ferry__tls_key *tls_key = tls_only_key(p->sect, keys[i].name);
        if (tls_key && p->nerrs == nerrs)
            note_tls_key(p, tls_key);
        return;
    }
    /* "bind 127.0.0.1:80" reaches here as key "bind 127.0.0.1" (':'
     * separates too, as in inih): point at the missing '='. */
    size_t word = strcspn(p->key, " \t");
    for (size_t i = 0; p->key[word] && i < nkeys; i++) {
        if (strlen(keys[i].name) == word && strncmp(keys[i].name, p->key, word) == 0) {
            ferry__err(p, p->lineno, "unknown key \"%s\" in %s: missing '=' after %s?", p->key,
                       where, keys[i].name);
            return;
        }
    }
    ferry__err(p, p->lineno, "unknown key \"%s\" in %s", p->key, where);
}

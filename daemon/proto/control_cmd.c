/* ferryd: the control socket's command language (see control_cmd.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/control_cmd.h"

const char ferry_ctl_help_text[] =
    "help                              this list\n"
    "show info [json]                  version, pid, uptime, connections, reloads\n"
    "show stats [json]                 listener, backend and server counters\n"
    "show conns [json]                 active connections\n"
    "show metrics                      Prometheus text exposition\n"
    "show acme [json]                  certificates of tls_acme: state, expiry, renewal\n"
    "disable server BACKEND/SERVER     send no new connections to SERVER (state drain)\n"
    "enable server BACKEND/SERVER      let SERVER take new connections again (state ready)\n"
    "set server BACKEND/SERVER state ready|drain|maint\n"
    "                                  drain: no new connections; maint: also cut its own\n"
    "set server BACKEND/SERVER weight N\n"
    "                                  weight 0 to 256, until the next reload\n"
    "set server BACKEND/SERVER addr ADDRESS\n"
    "                                  new connections and checks go to ADDRESS (IP:PORT, HOST:PORT)\n"
    "disable listener NAME             stop accepting (clients wait in the kernel queue)\n"
    "enable listener NAME              accept again\n"
    "add server BACKEND NAME ADDRESS [weight=N] [backup] [max_connections=N]\n"
    "                                  a server (IP:PORT or HOST:PORT) until the next reload\n"
    "del server BACKEND/SERVER         remove a disabled or maint server without connections\n"
    "shutdown conn ID                  close connection ID at once, both sides (end=killed)\n"
    "reload                            re-read the configuration file\n"
    "upgrade                           start the executable anew and hand it the sockets\n";

#define MAX_WORDS 8

struct words {
    const char *w[MAX_WORDS];
    size_t len[MAX_WORDS];
    size_t n;
};

static void set_error(struct ferry_ctl_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct ferry_ctl_request *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->error, sizeof(req->error), fmt, ap);
    va_end(ap);
}

/* Copies up to 40 bytes of a word for an error message, non-printable
 * bytes as '?', cut words ending in "...". */
static const char *shown(const char *s, size_t n, char out[48])
{
    size_t k = n > 40 ? 40 : n;
    for (size_t i = 0; i < k; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (ch >= ' ' && ch < 0x7f && ch != '\'') ? (char)ch : '?';
    }
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Splits into words. Returns -E2BIG with more than MAX_WORDS words. */
static int split(const char *s, size_t len, struct words *w)
{
    w->n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_blank(s[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !is_blank(s[i]))
            i++;
        if (w->n == MAX_WORDS)
            return -E2BIG;
        w->w[w->n] = s + start;
        w->len[w->n++] = i - start;
    }
    return 0;
}

static bool word_is(const struct words *w, size_t i, const char *lit)
{
    return i < w->n && w->len[i] == strlen(lit) && memcmp(w->w[i], lit, w->len[i]) == 0;
}

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n >= FERRY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]))
            return false;
    return true;
}

/* A server name may also be a discovered server's ADDRESS:PORT
 * ("10.0.0.7:80", "[2001:db8::7]:80"). */
static bool valid_server_name(const char *s, size_t n)
{
    if (n == 0 || n >= FERRY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]) && s[i] != ':' && s[i] != '[' && s[i] != ']')
            return false;
    return true;
}

/* "BACKEND/SERVER" into the request. */
static int parse_target(const char *s, size_t n, struct ferry_ctl_request *req)
{
    const char *slash = memchr(s, '/', n);
    char sh[48];
    if (!slash) {
        set_error(req, "expected BACKEND/SERVER, got '%s'", shown(s, n, sh));
        return -EINVAL;
    }
    size_t bl = (size_t)(slash - s), sl = n - bl - 1;
    if (!valid_name(s, bl) || !valid_server_name(slash + 1, sl)) {
        set_error(req, "invalid BACKEND/SERVER '%s' (names: letters, digits, '_', '.', '-', "
                       "at most %d characters; discovered servers: ADDRESS:PORT)",
                  shown(s, n, sh), FERRY_NAME_MAX - 1);
        return -EINVAL;
    }
    memcpy(req->backend, s, bl);
    req->backend[bl] = '\0';
    memcpy(req->server, slash + 1, sl);
    req->server[sl] = '\0';
    return 0;
}

static int extra_arg(const struct words *w, size_t i, struct ferry_ctl_request *req)
{
    char sh[48];
    set_error(req, "unexpected argument '%s'", shown(w->w[i], w->len[i], sh));
    return -EINVAL;
}

static int parse_show(const struct words *w, struct ferry_ctl_request *req)
{
    static const struct { const char *name; enum ferry_ctl_cmd cmd; bool json; } what[] = {
        {"info", FERRY_CTL_SHOW_INFO, true},
        {"stats", FERRY_CTL_SHOW_STATS, true},
        {"conns", FERRY_CTL_SHOW_CONNS, true},
        {"metrics", FERRY_CTL_SHOW_METRICS, false},
        {"acme", FERRY_CTL_SHOW_ACME, true},
    };
    if (w->n < 2) {
        set_error(req, "usage: show info|stats|conns|acme [json], show metrics");
        return -EINVAL;
    }
    for (size_t k = 0; k < sizeof(what) / sizeof(what[0]); k++) {
        if (!word_is(w, 1, what[k].name))
            continue;
        req->cmd = what[k].cmd;
        if (w->n > 2 && what[k].json && word_is(w, 2, "json")) {
            req->json = true;
            return w->n > 3 ? extra_arg(w, 3, req) : 0;
        }
        return w->n > 2 ? extra_arg(w, 2, req) : 0;
    }
    char sh[48];
    set_error(req, "unknown 'show %s' (try 'help')", shown(w->w[1], w->len[1], sh));
    return -EINVAL;
}

static int parse_listener_name(const struct words *w, size_t i, struct ferry_ctl_request *req)
{
    char sh[48];
    if (!valid_name(w->w[i], w->len[i])) {
        set_error(req, "invalid listener name '%s' (names: letters, digits, '_', '.', '-', "
                       "at most %d characters)", shown(w->w[i], w->len[i], sh), FERRY_NAME_MAX - 1);
        return -EINVAL;
    }
    memcpy(req->listener, w->w[i], w->len[i]);
    req->listener[w->len[i]] = '\0';
    return 0;
}

/* disable|enable server BACKEND/SERVER, disable|enable listener NAME */
static int parse_server_cmd(const struct words *w, struct ferry_ctl_request *req, bool enable)
{
    const char *verb = enable ? "enable" : "disable";
    if (word_is(w, 1, "listener")) {
        req->cmd = enable ? FERRY_CTL_ENABLE_LISTENER : FERRY_CTL_DISABLE_LISTENER;
        if (w->n < 3) {
            set_error(req, "usage: %s listener NAME", verb);
            return -EINVAL;
        }
        if (parse_listener_name(w, 2, req) != 0)
            return -EINVAL;
        return w->n > 3 ? extra_arg(w, 3, req) : 0;
    }
    req->cmd = enable ? FERRY_CTL_ENABLE_SERVER : FERRY_CTL_DISABLE_SERVER;
    if (w->n < 3 || !word_is(w, 1, "server")) {
        set_error(req, "usage: %s server BACKEND/SERVER, %s listener NAME", verb, verb);
        return -EINVAL;
    }
    if (parse_target(w->w[2], w->len[2], req) != 0)
        return -EINVAL;
    return w->n > 3 ? extra_arg(w, 3, req) : 0;
}

/* A server's ADDRESS: IPV4:PORT, [IPV6]:PORT or HOST:PORT (add server, set
 * server ... addr). */
static int parse_server_addr(const char *s, size_t n, struct ferry_ctl_request *req)
{
    char sh[48], text[300];
    if (n >= sizeof(text) || (memcpy(text, s, n), text[n] = '\0',
                              ferry_parse_addr(text, true, &req->addr) != 0) ||
        req->addr.kind != FERRY_ADDR_INET || req->addr.port == 0) {
        set_error(req, "invalid server address '%s' (IPV4:PORT, [IPV6]:PORT or HOST:PORT)",
                  shown(s, n, sh));
        return -EINVAL;
    }
    return 0;
}

/* set server BACKEND/SERVER state ready|drain|maint, set server B/S weight N,
 * set server B/S addr ADDRESS */
static int parse_set(const struct words *w, struct ferry_ctl_request *req)
{
    static const char *const states[] = {"ready", "drain", "maint"};
    char sh[48];
    req->cmd = FERRY_CTL_SET_SERVER_STATE;
    if (w->n >= 5 && word_is(w, 1, "server") &&
        !(word_is(w, 3, "state") || word_is(w, 3, "weight") || word_is(w, 3, "addr"))) {
        set_error(req, "unknown setting '%s' (state, weight or addr)",
                  shown(w->w[3], w->len[3], sh));
        return -EINVAL;
    }
    if (w->n < 5 || !word_is(w, 1, "server")) {
        set_error(req, "usage: set server BACKEND/SERVER state ready|drain|maint, "
                       "set server BACKEND/SERVER weight N, set server BACKEND/SERVER addr "
                       "ADDRESS");
        return -EINVAL;
    }
    if (parse_target(w->w[2], w->len[2], req) != 0)
        return -EINVAL;
    if (word_is(w, 3, "addr")) {
        req->cmd = FERRY_CTL_SET_SERVER_ADDR;
        if (parse_server_addr(w->w[4], w->len[4], req) != 0)
            return -EINVAL;
    } else if (word_is(w, 3, "state")) {
        size_t k = 0;
        while (k < 3 && !word_is(w, 4, states[k]))
            k++;
        if (k == 3) {
            set_error(req, "invalid state '%s' (ready, drain or maint)",
                      shown(w->w[4], w->len[4], sh));
            return -EINVAL;
        }
        req->state = (enum ferry_admin_state)k;
    } else {
        req->cmd = FERRY_CTL_SET_SERVER_WEIGHT;
        unsigned v = 0;
        size_t i = 0;
        for (; i < w->len[4] && i < 4 && w->w[4][i] >= '0' && w->w[4][i] <= '9'; i++)
            v = v * 10 + (unsigned)(w->w[4][i] - '0');
        if (i == 0 || i != w->len[4] || v > 256) {
            set_error(req, "invalid weight '%s' (a whole number from 0 to 256)",
                      shown(w->w[4], w->len[4], sh));
            return -EINVAL;
        }
        req->weight = v;
    }
    return w->n > 5 ? extra_arg(w, 5, req) : 0;
}

/* One option of add server: weight=N, backup, max_connections=N. */
static int add_option(const char *o, size_t n, struct ferry_ctl_request *req, unsigned *seen)
{
    char sh[48], num[16];
    unsigned long v;
    if (n == 6 && memcmp(o, "backup", 6) == 0 && !(*seen & 1)) {
        *seen |= 1;
        req->backup = true;
        return 0;
    }
    bool weight = n > 7 && memcmp(o, "weight=", 7) == 0 && !(*seen & 2);
    bool maxc = n > 16 && memcmp(o, "max_connections=", 16) == 0 && !(*seen & 4);
    size_t skip = weight ? 7 : 16;
    if ((weight || maxc) && n - skip < sizeof(num)) {
        memcpy(num, o + skip, n - skip);
        num[n - skip] = '\0';
        if (ferry_parse_uint(num, weight ? 256 : 2147483647ul, &v) == 0 && (weight || v > 0)) {
            *seen |= weight ? 2 : 4;
            if (weight)
                req->weight = (unsigned)v;
            else
                req->max_connections = (unsigned)v;
            return 0;
        }
    }
    set_error(req, "invalid server option '%s' (weight=0..256, backup, max_connections=N; "
                   "each at most once)", shown(o, n, sh));
    return -EINVAL;
}

/* add server BACKEND NAME ADDRESS [weight=N] [backup] [max_connections=N] */
static int parse_add(const struct words *w, struct ferry_ctl_request *req)
{
    char sh[48];
    req->cmd = FERRY_CTL_ADD_SERVER;
    req->weight = 1;
    if (w->n < 5 || w->n > 8 || !word_is(w, 1, "server")) {
        set_error(req, "usage: add server BACKEND NAME ADDRESS [weight=N] [backup] "
                       "[max_connections=N]");
        return -EINVAL;
    }
    for (size_t i = 2; i <= 3; i++) {
        if (valid_name(w->w[i], w->len[i]))
            continue;
        set_error(req, "invalid %s name '%s' (names: letters, digits, '_', '.', '-', at most %d "
                       "characters)", i == 2 ? "backend" : "server",
                  shown(w->w[i], w->len[i], sh), FERRY_NAME_MAX - 1);
        return -EINVAL;
    }
    memcpy(req->backend, w->w[2], w->len[2]);
    req->backend[w->len[2]] = '\0';
    memcpy(req->server, w->w[3], w->len[3]);
    req->server[w->len[3]] = '\0';
    if (parse_server_addr(w->w[4], w->len[4], req) != 0)
        return -EINVAL;
    unsigned seen = 0;
    for (size_t i = 5; i < w->n; i++)
        if (add_option(w->w[i], w->len[i], req, &seen) != 0)
            return -EINVAL;
    return 0;
}

/* del server BACKEND/SERVER */
/* shutdown conn ID: the id of `show conns` and the access log (1 to 2^64 - 1). */
static int parse_shutdown(const struct words *w, struct ferry_ctl_request *req)
{
    char sh[48];
    req->cmd = FERRY_CTL_SHUTDOWN_CONN;
    if (w->n < 3 || !word_is(w, 1, "conn")) {
        set_error(req, "usage: shutdown conn ID");
        return -EINVAL;
    }
    uint64_t id = 0;
    size_t i = 0;
    for (; i < w->len[2] && w->w[2][i] >= '0' && w->w[2][i] <= '9'; i++) {
        unsigned digit = (unsigned)(w->w[2][i] - '0');
        if (id > (UINT64_MAX - digit) / 10)
            break;
        id = id * 10 + digit;
    }
    if (i == 0 || i != w->len[2] || id == 0) {
        set_error(req, "invalid connection id '%s' (a whole number from 1, as in show conns)",
                  shown(w->w[2], w->len[2], sh));
        return -EINVAL;
    }
    req->conn_id = id;
    return w->n > 3 ? extra_arg(w, 3, req) : 0;
}

static int parse_del(const struct words *w, struct ferry_ctl_request *req)
{
    req->cmd = FERRY_CTL_DEL_SERVER;
    if (w->n < 3 || !word_is(w, 1, "server")) {
        set_error(req, "usage: del server BACKEND/SERVER");
        return -EINVAL;
    }
    if (parse_target(w->w[2], w->len[2], req) != 0)
        return -EINVAL;
    return w->n > 3 ? extra_arg(w, 3, req) : 0;
}

/* Removes one final "\n", then one final "\r". */
static size_t strip_eol(const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    return len;
}

int ferry_ctl_parse(const char *line, size_t len, struct ferry_ctl_request *req)
{
    memset(req, 0, sizeof(*req));
    len = strip_eol(line, len);
    if (len > FERRY_CTL_LINE_MAX) {
        set_error(req, "line too long (at most %d bytes)", FERRY_CTL_LINE_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < ' ' && ch != '\t') || ch == 0x7f) {
            set_error(req, "invalid character 0x%02x in command", ch);
            return -EINVAL;
        }
    }
    struct words w;
    if (split(line, len, &w) != 0) {
        set_error(req, "too many arguments");
        return -EINVAL;
    }
    if (w.n == 0) {
        set_error(req, "empty command (try 'help')");
        return -EINVAL;
    }
    if (word_is(&w, 0, "help") || word_is(&w, 0, "reload") || word_is(&w, 0, "upgrade")) {
        req->cmd = word_is(&w, 0, "help")     ? FERRY_CTL_HELP
                   : word_is(&w, 0, "reload") ? FERRY_CTL_RELOAD
                                              : FERRY_CTL_UPGRADE;
        return w.n > 1 ? extra_arg(&w, 1, req) : 0;
    }
    if (word_is(&w, 0, "show"))
        return parse_show(&w, req);
    if (word_is(&w, 0, "disable") || word_is(&w, 0, "enable"))
        return parse_server_cmd(&w, req, word_is(&w, 0, "enable"));
    if (word_is(&w, 0, "set"))
        return parse_set(&w, req);
    if (word_is(&w, 0, "add"))
        return parse_add(&w, req);
    if (word_is(&w, 0, "shutdown"))
        return parse_shutdown(&w, req);
    if (word_is(&w, 0, "del"))
        return parse_del(&w, req);
    char sh[48];
    set_error(req, "unknown command '%s' (try 'help')", shown(w.w[0], w.len[0], sh));
    return -EINVAL;
}

/* ---- ferryctl ---- */

static int ctl_err(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctl_err(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errcap > 0)
        vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

bool ferry_ctl_answers_ok(enum ferry_ctl_cmd cmd)
{
    switch (cmd) {
    case FERRY_CTL_HELP:
    case FERRY_CTL_SHOW_INFO:
    case FERRY_CTL_SHOW_STATS:
    case FERRY_CTL_SHOW_CONNS:
    case FERRY_CTL_SHOW_METRICS:
    case FERRY_CTL_SHOW_ACME: return false;
    default: return true;
    }
}

/* ferryctl's words: COMMAND and how many arguments follow it. */
struct verb {
    const char *word, *line, *usage;
    int nargs;     /* < 0: from -nargs up to ARGS_MAX - 1 */
    bool json;     /* the daemon answers in JSON itself ("... json") */
};

static const struct verb verbs[] = {
    {"info", "show info", "info", 0, true},
    {"stats", "show stats", "stats", 0, true},
    {"conns", "show conns", "conns", 0, true},
    {"metrics", "show metrics", "metrics", 0, false},
    {"acme", "show acme", "acme", 0, true},
    {"reload", "reload", "reload", 0, false},
    {"upgrade", "upgrade", "upgrade", 0, false},
    {"help", "help", "help", 0, false},
    {"disable", "disable server", "disable BACKEND/SERVER", 1, false},
    {"enable", "enable server", "enable BACKEND/SERVER", 1, false},
    {"set", "set server", "set BACKEND/SERVER state ready|drain|maint, set BACKEND/SERVER weight N, "
     "set BACKEND/SERVER addr ADDRESS", 3, false},
    {"disable-listener", "disable listener", "disable-listener NAME", 1, false},
    {"enable-listener", "enable listener", "enable-listener NAME", 1, false},
    {"add", "add server", "add BACKEND NAME ADDRESS [weight=N] [backup] [max_connections=N]", -3,
     false},
    {"del", "del server", "del BACKEND/SERVER", 1, false},
    {"shutdown", "shutdown conn", "shutdown CONN_ID", 1, false},
};

#define VERB_WORDS "info, stats, conns, metrics, acme, reload, upgrade, disable, enable, set, " \
                   "disable-listener, enable-listener, add, del, shutdown, help"
#define ARGS_MAX 7

int ferry_ctl_from_argv(int argc, char *const argv[], bool json, char *buf, size_t cap,
                        char *err, size_t errcap)
{
    const char *args[ARGS_MAX];
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
            json = true;
        else if (nargs == ARGS_MAX)
            return ctl_err(err, errcap, "unexpected argument '%s'", argv[i]);
        else
            args[nargs++] = argv[i];
    }
    if (nargs == 0)
        return ctl_err(err, errcap, "missing command (" VERB_WORDS ")");
    const struct verb *v = NULL;
    for (size_t k = 0; k < sizeof(verbs) / sizeof(verbs[0]) && !v; k++)
        if (strcmp(args[0], verbs[k].word) == 0)
            v = &verbs[k];
    if (!v)
        return ctl_err(err, errcap, "unknown command '%s' (" VERB_WORDS ")", args[0]);
    if (nargs - 1 > v->nargs && v->nargs == 0)
        return ctl_err(err, errcap, "unexpected argument '%s'", args[1]);
    if (v->nargs < 0 ? nargs - 1 < -v->nargs : nargs - 1 != v->nargs)
        return ctl_err(err, errcap, "usage: %s", v->usage);
    size_t n = 0;
    int w = snprintf(buf, cap, "%s", v->line);
    for (int i = 1; w >= 0 && (size_t)w < cap - n && i < nargs; i++) {
        n += (size_t)w;
        w = snprintf(buf + n, cap - n, " %s", args[i]);
    }
    if (w >= 0 && (size_t)w < cap - n) {
        n += (size_t)w;
        w = snprintf(buf + n, cap - n, "%s\n", v->json && json ? " json" : "");
    }
    if (w < 0 || (size_t)w >= cap - n)
        return -ENOSPC;
    n += (size_t)w;
    /* The daemon has the last word, but a bad name or value is caught here. */
    struct ferry_ctl_request req;
    if (ferry_ctl_parse(buf, n, &req) != 0)
        return ctl_err(err, errcap, "%s", req.error);
    return (int)n;
}

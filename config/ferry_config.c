/* Loading ferry.ini: inih drives the lines, we keep every line whole.
 *
 * Debian's libinih is built with INI_MAX_LINE 200 and no line numbers in the
 * handler, and it cuts a longer line silently. So ini_parse_stream() reads
 * through our reader (next_line): it takes the next whole line from the file
 * (held in memory), counts it, classifies it exactly as inih would (comment,
 * [section], key = value with inih's inline-comment rule) and keeps the key
 * and the whole value in the parse state ("server NAME ADDRESS" without '='
 * is read as "server = NAME ADDRESS"). It hands inih only a short
 * canonical line: "key=value" when that fits, else "k=", for a key line, and
 * a comment for every other line (section headers, blanks, malformed lines
 * and over-long ones are handled here, with their own errors). The handler
 * then takes the key and value from the state, never from inih's cut copy.
 * Leading whitespace is never handed on, so inih's multi-line continuation
 * (an indented line continues the previous value) never applies: an indented
 * line is read like any other.
 *
 * All errors are collected with their lines, then sorted by line. */
#include "ferry_config_int.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAX (16u << 20)   /* a config larger than this is surely a mistake */

/* ---- classifying one line (inih's rules) ---- */

static char *rstrip(char *s)
{
    char *p = s + strlen(s);
    while (p > s && isspace((unsigned char)p[-1]))
        *--p = '\0';
    return s;
}

static char *lskip(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* First char of `chars` in s, or an inline comment (';' or '#' after
 * whitespace, ferry.ini(5)), or the terminating NUL: inih's
 * find_chars_or_comment() with INI_INLINE_COMMENT_PREFIXES ";#". */
static char *find_chars_or_comment(char *s, const char *chars)
{
    bool was_space = false;
    while (*s && (!chars || !strchr(chars, *s)) && !(was_space && (*s == ';' || *s == '#'))) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* ---- sections ---- */

static int find_listener(const struct ferry_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return (int)i;
    return -1;
}

int ferry_config_backend_index(const struct ferry_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nbackends; i++)
        if (strcmp(cfg->backends[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void open_global(struct ferry__parse *p, const char *name)
{
    if (name[0]) {
        ferry__err(p, p->lineno, "[global] takes no name");
        return;
    }
    if (p->in_include) {
        ferry__err(p, p->lineno, "[global] belongs in the main configuration file, not in an "
                   "included one");
        return;
    }
    char ref[FERRY_PATH_MAX + 32];
    if (p->global_line) {
        ferry__err(p, p->lineno, "duplicate section [global] (first at %s)",
                   ferry__line_ref(p->cfg, p->global_line, p->lineno, ref, sizeof(ref)));
        return;
    }
    p->global_line = p->lineno;
    p->sect = FERRY__SECT_GLOBAL;
}

static void open_listener(struct ferry__parse *p, const char *name)
{
    struct ferry_config *cfg = p->cfg;
    int prev = find_listener(cfg, name);
    char ref[FERRY_PATH_MAX + 32];
    if (prev >= 0) {
        ferry__err(p, p->lineno, "duplicate section [listener %s] (first at %s)", name,
                   ferry__line_ref(cfg, cfg->listeners[prev].line, p->lineno, ref, sizeof(ref)));
        return;
    }
    if (ferry__grow(&cfg->listeners, cfg->nlisteners, sizeof(*cfg->listeners)) < 0) {
        p->oom = true;
        return;
    }
    struct ferry_listener *l = &cfg->listeners[cfg->nlisteners];
    ferry__listener_defaults(l);
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->line = p->lineno;
    p->cur = cfg->nlisteners++;
    p->sect = FERRY__SECT_LISTENER;
}

static void open_backend(struct ferry__parse *p, const char *name)
{
    struct ferry_config *cfg = p->cfg;
    int prev = ferry_config_backend_index(cfg, name);
    char ref[FERRY_PATH_MAX + 32];
    if (prev >= 0) {
        ferry__err(p, p->lineno, "duplicate section [backend %s] (first at %s)", name,
                   ferry__line_ref(cfg, cfg->backends[prev].line, p->lineno, ref, sizeof(ref)));
        return;
    }
    if (ferry__grow(&cfg->backends, cfg->nbackends, sizeof(*cfg->backends)) < 0) {
        p->oom = true;
        return;
    }
    struct ferry_backend *b = &cfg->backends[cfg->nbackends];
    ferry__backend_defaults(b);
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->line = p->lineno;
    p->cur = cfg->nbackends++;
    p->sect = FERRY__SECT_BACKEND;
}

/* "[KIND NAME]": `inner` is the text between the brackets. */
static void section_header(struct ferry__parse *p, char *inner)
{
    char *kind = lskip(rstrip(inner));
    char *name = kind;
    while (*name && !isspace((unsigned char)*name))
        name++;
    if (*name)
        *name++ = '\0';
    name = lskip(name);

    ferry__close_section(p);
    p->sect = FERRY__SECT_SKIP;   /* until the header proves good */
    memset(p->seen, 0, sizeof(p->seen));
    p->sect_line = p->lineno;
    bool named = strcmp(kind, "listener") == 0 || strcmp(kind, "backend") == 0 ||
                 strcmp(kind, "acme") == 0;
    if (strcmp(kind, "global") == 0) {
        open_global(p, name);
    } else if (!named) {
        ferry__err(p, p->lineno, "unknown section [%s%s%s]: expected [global], "
                   "[listener NAME], [backend NAME] or [acme NAME]", kind, name[0] ? " " : "", name);
    } else if (!name[0]) {
        ferry__err(p, p->lineno, "[%s] needs a name: [%s NAME]", kind, kind);
    } else if (!ferry_name_valid(name)) {
        ferry__err(p, p->lineno, "invalid %s name \"%s\": use 1 to %d letters, digits, "
                   "'_', '.' or '-'", kind, name, FERRY_NAME_MAX - 1);
    } else if (kind[0] == 'l') {
        open_listener(p, name);
    } else if (kind[0] == 'a') {
        ferry__acme_open(p, name);
    } else {
        open_backend(p, name);
    }
}

/* "server NAME ADDRESS ...", HAProxy's way, as written in the README, is
 * "server = NAME ADDRESS ..." (inih alone would split it at the port's ':').
 * True when s is such a line; then the key and value are set. */
static bool server_line(struct ferry__parse *p, char *s)
{
    static const char kw[] = "server";
    const size_t n = sizeof(kw) - 1;
    if (strncmp(s, kw, n) != 0 || (s[n] != ' ' && s[n] != '\t'))
        return false;
    char *value = lskip(s + n);
    if (*value == '=' || *value == ':' || *value == ';')
        return false;
    s[n] = '\0';
    *find_chars_or_comment(value, NULL) = '\0';
    p->key = s;
    p->value = rstrip(value);
    p->line_is_kv = true;
    return true;
}

/* Classifies p->line. Sets p->line_is_kv with p->key / p->value for a key
 * line; handles section headers and reports malformed lines itself. */
static void classify_line(struct ferry__parse *p)
{
    char *s = lskip(rstrip(p->line));
    p->line_is_kv = false;
    if (*s == '\0' || *s == ';' || *s == '#')
        return;
    if (*s == '[') {
        char *end = find_chars_or_comment(s + 1, "]");
        if (*end != ']') {
            ferry__err(p, p->lineno, "section header without ']'");
            p->sect = FERRY__SECT_SKIP;
            return;
        }
        *end = '\0';
        char *rest = lskip(end + 1);
        if (*rest && *rest != ';' && *rest != '#')
            ferry__err(p, p->lineno, "unexpected text after section header: \"%s\"", rest);
        section_header(p, s + 1);
        return;
    }
    if (server_line(p, s))
        return;
    char *end = find_chars_or_comment(s, "=:");
    if (*end != '=' && *end != ':') {
        ferry__err(p, p->lineno, "expected \"key = value\" or a [section] header");
        return;
    }
    *end = '\0';
    char *value = end + 1;
    *find_chars_or_comment(value, NULL) = '\0';
    p->key = rstrip(s);
    p->value = rstrip(lskip(value));
    p->line_is_kv = true;
}

/* ---- reading ---- */

/* Takes the next line of p->text into p->line. Returns false at the end.
 * An over-long line or one with a NUL byte is reported and left empty. */
static bool take_line(struct ferry__parse *p)
{
    if (p->pos >= p->len)
        return false;
    bool first = p->pos == 0;
    const char *start = p->text + p->pos;
    const char *nl = memchr(start, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - start) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->lineno++;
    if (n > 0 && start[n - 1] == '\r')
        n--;
    /* A UTF-8 byte order mark at the start of the file is not content. */
    if (first && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
        start += 3;
        n -= 3;
    }
    p->line[0] = '\0';
    if (n > FERRY_CONFIG_LINE_MAX) {
        ferry__err(p, p->lineno, "line too long: %zu characters, at most %d", n,
                   FERRY_CONFIG_LINE_MAX);
        return true;
    }
    if (memchr(start, '\0', n)) {
        ferry__err(p, p->lineno, "line contains a NUL byte");
        return true;
    }
    memcpy(p->line, start, n);
    p->line[n] = '\0';
    return true;
}

/* The ini_reader: see the top of this file. */
static char *next_line(char *str, int num, void *stream)
{
    struct ferry__parse *p = stream;
    if (!take_line(p) || num < 1)
        return NULL;
    classify_line(p);
    if (num < 4) {   /* no room even for "k=": handle the key here */
        if (p->line_is_kv)
            ferry__key(p);
        str[0] = '\0';
        return str;
    }
    const char *out = ";\n";
    if (p->line_is_kv) {
        size_t klen = strlen(p->key), vlen = strlen(p->value);
        out = "k=\n";
        if (klen > 0 && klen + vlen + 3 <= (size_t)num) {
            memcpy(str, p->key, klen);
            str[klen] = '=';
            memcpy(str + klen + 1, p->value, vlen);
            memcpy(str + klen + 1 + vlen, "\n", 2);
            return str;
        }
    }
    memcpy(str, out, strlen(out) + 1);
    return str;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct ferry__parse *p = user;
    (void)section;
    (void)name;
    (void)value;
    /* Only key lines reach inih as pairs; take the whole key and value. */
    if (p->line_is_kv)
        ferry__key(p);
    return 1;
}

/* ---- checks once the whole file is read ---- */

/* References to backends, once all are known. */
static void check_listener(struct ferry__parse *p, struct ferry_listener *l)
{
    if (l->backend[0]) {
        l->backend_index = ferry_config_backend_index(p->cfg, l->backend);
        if (l->backend_index < 0)
            ferry__err(p, l->backend_line, "unknown backend \"%s\"", l->backend);
    }
    for (size_t i = 0; i < l->nroutes; i++) {
        struct ferry_route *r = &l->routes[i];
        r->backend_index = ferry_config_backend_index(p->cfg, r->backend);
        if (r->backend_index < 0)
            ferry__err(p, r->line, "route %s: unknown backend \"%s\"", r->servername, r->backend);
    }
}

/* One address that gets bound, with where it comes from. */
struct bind_ref {
    const struct ferry_addr *addr;
    int line;
    const char *what;   /* "bind" or "metrics" or "control_socket" */
};

static int by_line(const void *a, const void *b)
{
    const struct bind_ref *x = a, *y = b;
    return (x->line > y->line) - (x->line < y->line);
}

/* Two binds on one address: the later line is the error. */
static void check_binds(struct ferry__parse *p)
{
    struct ferry_config *cfg = p->cfg;
    size_t n = cfg->global.has_metrics ? 2 : 1, k = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        n += cfg->listeners[i].nbinds;
    struct bind_ref *refs = calloc(n, sizeof(*refs));
    struct ferry_addr ctl;
    if (!refs) {
        p->oom = true;
        return;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        for (size_t j = 0; j < cfg->listeners[i].nbinds; j++)
            refs[k++] = (struct bind_ref){&cfg->listeners[i].binds[j],
                                          cfg->listeners[i].bind_lines[j], "bind"};
    if (cfg->global.has_metrics)
        refs[k++] = (struct bind_ref){&cfg->global.metrics, cfg->global.metrics_line, "metrics"};
    char ctl_text[128];
    snprintf(ctl_text, sizeof(ctl_text), "unix:%s", cfg->global.control_socket);
    if (cfg->global.control_socket[0] && ferry_parse_addr(ctl_text, false, &ctl) == 0)
        refs[k++] = (struct bind_ref){&ctl, p->control_socket_line, "control_socket"};
    if (k > 1)
        qsort(refs, k, sizeof(*refs), by_line);
    for (size_t i = 1; i < k; i++) {
        for (size_t j = 0; j < i; j++) {
            if (!ferry_addr_conflict(refs[i].addr, refs[j].addr))
                continue;
            char ref[FERRY_PATH_MAX + 32];
            if (refs[j].line > 0)
                ferry__err(p, refs[i].line, "%s %s conflicts with %s %s at %s", refs[i].what,
                           refs[i].addr->text, refs[j].what, refs[j].addr->text,
                           ferry__line_ref(cfg, refs[j].line, refs[i].line, ref, sizeof(ref)));
            else
                ferry__err(p, refs[i].line, "%s %s conflicts with the default %s", refs[i].what,
                           refs[i].addr->text, refs[j].what);
            break;
        }
    }
    free(refs);
}

static void check_all(struct ferry__parse *p)
{
    struct ferry_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        check_listener(p, &cfg->listeners[i]);
    ferry__acme_check_refs(p);
    check_binds(p);
}

/* ---- the load ---- */

static int by_line_seq(const void *a, const void *b)
{
    const struct ferry__err *x = a, *y = b;
    if (x->line != y->line)
        return (x->line > y->line) - (x->line < y->line);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Moves the pending errors, in line order, to the caller's list. */
static void flush_errors(struct ferry__parse *p, struct ferry_config_errors *errs)
{
    if (p->oom)
        ferry__err(p, 0, "out of memory");
    if (p->nerrs > 1)
        qsort(p->errs, p->nerrs, sizeof(*p->errs), by_line_seq);
    for (size_t i = 0; i < p->nerrs; i++) {
        ferry_config_error_at(errs, p->cfg, p->errs[i].line, "%s", p->errs[i].msg);
        free(p->errs[i].msg);
    }
    free(p->errs);
    p->errs = NULL;
    p->nerrs = 0;
}

static char *read_file(const char *path, size_t *len, struct ferry_config_errors *errs);

/* Runs inih over p->text from its start; lines count on from p->lineno. */
static void parse_text(struct ferry__parse *p)
{
    int offset = p->lineno;
    int rc = ini_parse_stream(next_line, p, on_pair, p);
    ferry__close_section(p);
    if (rc > 0 && p->nerrs == 0)   /* inih saw a problem we did not: never silent */
        ferry__err(p, offset + rc, "syntax error");
    else if (rc < 0 && rc != -1)
        p->oom = true;
}

/* Reads the included files after the main one (ferry_config_include.c). A
 * file that cannot be read is an error at its first include line. */
static void read_includes(struct ferry__parse *p)
{
    struct ferry__include_list l;
    if (ferry__include_files(p, &l) < 0)
        p->oom = true;
    p->in_include = true;
    for (size_t i = 0; i < l.n; i++) {
        struct ferry_config_errors errs = {0};
        size_t len;
        char *text = read_file(l.files[i], &len, &errs);
        for (size_t k = 0; k < errs.n; k++)
            ferry__err(p, l.lines[i], "include %s", errs.msgs[k]);
        ferry_config_errors_free(&errs);
        if (text && ferry__source_add(p->cfg, l.files[i], p->lineno) == 0) {
            p->text = text;
            p->len = len;
            p->pos = 0;
            p->sect = FERRY__SECT_NONE;
            parse_text(p);
        } else if (text) {
            p->oom = true;
        }
        free(text);
        free(l.files[i]);
    }
    free(l.files);
    free(l.lines);
    p->text = NULL;
}

/* keep: return the configuration even when it has errors (see
 * ferry_config_load_all). */
static struct ferry_config *load_text(const char *name, const char *text, size_t len,
                                      bool keep, struct ferry_config_errors *errs)
{
    struct ferry__parse *p = calloc(1, sizeof(*p));
    struct ferry_config *cfg = calloc(1, sizeof(*cfg));
    char *path = strdup(name);
    if (!p || !cfg || !path) {
        free(p);
        free(cfg);
        free(path);
        ferry_config_error_add(errs, name, 0, "out of memory");
        return NULL;
    }
    cfg->path = path;
    ferry__global_defaults(&cfg->global);
    *p = (struct ferry__parse){.file = name, .cfg = cfg, .text = text, .len = len};
    cfg->dir = ferry_config_dir(name);
    if (!cfg->dir)
        p->dir_errno = errno;

    if (ferry__source_add(cfg, name, 0) < 0)
        p->oom = true;
    parse_text(p);
    read_includes(p);
    check_all(p);

    free(p->tls_keys);
    for (size_t i = 0; i < p->nincludes; i++)
        free(p->includes[i]);
    free(p->includes);
    free(p->include_lines);
    bool bad = p->nerrs > 0 || p->oom, oom = p->oom;
    flush_errors(p, errs);
    free(p);
    if (bad && (!keep || oom)) {
        ferry_config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct ferry_config *ferry_config_load_string(const char *name, const char *text,
                                              struct ferry_config_errors *errs)
{
    return load_text(name, text, strlen(text), false, errs);
}

/* Reads the whole file; NULL with an error added when it cannot. */
static char *read_file(const char *path, size_t *len, struct ferry_config_errors *errs)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f) {
        ferry_config_error_add(errs, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8192;
            char *b = cap > FILE_MAX + 1 ? NULL : realloc(buf, cap);
            if (!b) {
                ferry_config_error_add(errs, path, 0, cap > FILE_MAX + 1 ? "file too large"
                                                                          : "out of memory");
                goto fail;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        ferry_config_error_add(errs, path, 0, "cannot read: %s", strerror(errno));
        goto fail;
    }
    fclose(f);
    *len = n;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

static struct ferry_config *load_file(const char *path, bool keep,
                                      struct ferry_config_errors *errs)
{
    size_t len;
    char *text = read_file(path, &len, errs);
    if (!text)
        return NULL;
    struct ferry_config *cfg = load_text(path, text, len, keep, errs);
    free(text);
    return cfg;
}

struct ferry_config *ferry_config_load(const char *path, struct ferry_config_errors *errs)
{
    return load_file(path, false, errs);
}

struct ferry_config *ferry_config_load_all(const char *path, struct ferry_config_errors *errs)
{
    return load_file(path, true, errs);
}

/* ---- freeing ---- */

static void free_listener(struct ferry_listener *l)
{
    free(l->binds);
    free(l->bind_lines);
    for (size_t i = 0; i < l->ntls_certs; i++) {
        free(l->tls_certs[i]);
        free(l->tls_cert_keys[i]);
    }
    free(l->tls_certs);
    free(l->tls_cert_keys);
    free(l->tls_cert_lines);
    free(l->tls_ciphers);
    free(l->tls_ciphersuites);
    free(l->tls_alpn);
    free(l->tls_client_ca);
    free(l->tls_ticket_keys);
    free(l->routes);
    ferry__tls_acme_free(l);
    free(l->proxy_from);
    free(l->allow);
    free(l->deny);
}

void ferry_config_free(struct ferry_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free_listener(&cfg->listeners[i]);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->nbackends; i++) {
        free(cfg->backends[i].servers);
        free(cfg->backends[i].tls_ca);
        free(cfg->backends[i].tls_cert);
        free(cfg->backends[i].tls_cert_key);
        free(cfg->backends[i].tls_sni);
        free(cfg->backends[i].health_send);
        free(cfg->backends[i].health_expect);
        free(cfg->backends[i].health_uri);
    }
    free(cfg->backends);
    ferry__acme_free(cfg);
    free(cfg->global.state_file);
    for (size_t i = 0; i < cfg->nsources; i++)
        free(cfg->sources[i].path);
    free(cfg->sources);
    ferry_config_errors_free(&cfg->warnings);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

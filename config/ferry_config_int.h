/* Internal to the config module: the parse state shared by the loader
 * (ferry_config.c) and the per-key handlers (ferry_config_keys.c). */
#ifndef FERRY_CONFIG_INT_H
#define FERRY_CONFIG_INT_H

#include "ferry_config.h"

/* Most keys any one section kind has (sizes the "seen" table). */
#define FERRY__KEYS_MAX 32

/* An error before it is formatted: sorted by line at the end of the load. */
struct ferry__err {
    int line;
    size_t seq;    /* keeps errors of one line in the order they were found */
    char *msg;
};

enum ferry__sect {
    FERRY__SECT_NONE,      /* before the first section header */
    FERRY__SECT_GLOBAL,
    FERRY__SECT_LISTENER,
    FERRY__SECT_BACKEND,
    FERRY__SECT_ACME,
    FERRY__SECT_SKIP,      /* a bad section: its error is reported once, its keys ignored */
};

/* A key that needs tls = on in its section (table in ferry_config_keys.c). */
struct ferry__tls_key {
    enum ferry__sect sect;
    const char *key;
    bool health;           /* also used by health_check = tls on a backend */
};

/* A line of the current section that set such a key. */
struct ferry__key_line {
    const struct ferry__tls_key *def;
    int line;
};

struct ferry__parse {
    const char *file;
    struct ferry_config *cfg;
    int dir_errno;         /* why cfg->dir is NULL */

    struct ferry__err *errs;
    size_t nerrs, caperrs;
    bool oom;

    /* Input: the whole file in memory, consumed line by line. */
    const char *text;
    size_t len, pos;
    int lineno;
    char line[FERRY_CONFIG_LINE_MAX + 1];
    bool line_is_kv;       /* the current line is "key = value" */
    const char *key, *value;  /* into line, whole (never cut) */

    enum ferry__sect sect;
    int sect_line;
    size_t cur;            /* index of the current listener / backend */
    int seen[FERRY__KEYS_MAX];  /* line where each key of the section was set, 0 = not yet */
    struct ferry__key_line *tls_keys;  /* TLS-only keys set in the section */
    size_t ntls_keys;
    bool tls_bad;          /* the section's tls line had a bad value */
    int global_line;       /* 0: no [global] section yet */
    int control_socket_line;

    /* include = GLOB lines of [global] (absolute patterns), read after the
     * main file (ferry_config_include.c). Lines are numbered on across the
     * files: an included file's line 1 follows the last line read before it,
     * and cfg->sources maps such a line back to its file and line there. */
    char **includes;
    int *include_lines;
    size_t nincludes;
    bool in_include;       /* reading an included file: no [global] */
};

/* Records an error at `line` (0: no line). Never fails visibly: on
 * allocation failure it sets p->oom, which the loader reports. */
void ferry__err(struct ferry__parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a warning at `line` in p->cfg->warnings ("FILE:LINE: message"). */
void ferry__warn(struct ferry__parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Handles one "key = value" line of the current section (p->key, p->value,
 * p->lineno). */
void ferry__key(struct ferry__parse *p);

/* Checks what a section needs once all its lines are read (a listener's
 * bind, a backend's server...), at the line of its header. Then the
 * section is closed: no-op for a bad or no section. */
void ferry__close_section(struct ferry__parse *p);

/* A path value of the current line, made absolute against the configuration
 * file's directory (see "HOW TO ADD A PATH KEY" in ferry_config.h). Returns a
 * malloc'd string, or NULL after reporting the error at the current line (or
 * setting p->oom). */
char *ferry__path(struct ferry__parse *p, const char *v);
/* Same, stored into *dst (its old value freed); *dst unchanged on error. */
void ferry__set_path(struct ferry__parse *p, const char *v, char **dst);

/* [acme NAME] and the listener's tls_acme (ferry_config_acme.c). */
struct key_def;
struct ferry_acme *ferry__acme_open(struct ferry__parse *p, const char *name);
/* Handles one key of the current [acme] section. */
void ferry__acme_key(struct ferry__parse *p);
/* Checks a closed [acme] section (directory required). */
void ferry__acme_close(struct ferry__parse *p);
/* tls_acme = ACME NAME [NAME...] of the current listener. */
void ferry__listener_tls_acme(struct ferry__parse *p, const char *v);
/* References from tls_acme to [acme] sections, once the file is read. */
void ferry__acme_check_refs(struct ferry__parse *p);
void ferry__acme_free(struct ferry_config *cfg);
void ferry__tls_acme_free(struct ferry_listener *l);

/* Sets the defaults of a new section's struct. */
void ferry__global_defaults(struct ferry_global *g);
void ferry__listener_defaults(struct ferry_listener *l);
void ferry__backend_defaults(struct ferry_backend *b);

/* Parses an address; on failure returns -EINVAL / -ERANGE and sets *why to
 * a short reason for the message. */
int ferry__parse_addr(const char *s, bool allow_host, struct ferry_addr *out, const char **why);

/* A DNS-style host name of at most `max` chars (letters, digits, '-', '_',
 * dot-separated labels), not a dotted number. */
bool ferry__hostname_valid(const char *s, size_t max);

/* include = GLOB: records the pattern of the current line. */
void ferry__include_add(struct ferry__parse *p, const char *v);
/* The files the include lines name, in order (each glob's matches sorted),
 * each once, as malloc'd paths with the line that named them (the caller
 * frees them). Errors (a named file that does not exist, an unreadable
 * directory) are reported at their include line. 0 or -ENOMEM. */
struct ferry__include_list {
    char **files;
    int *lines;
    size_t n;
};
int ferry__include_files(struct ferry__parse *p, struct ferry__include_list *l);
/* Appends a source to cfg->sources: `path` starts after line `offset`. */
int ferry__source_add(struct ferry_config *cfg, const char *path, int offset);
/* "line N" when `line` is in the same file as `from`, else "FILE:N". */
const char *ferry__line_ref(const struct ferry_config *cfg, int line, int from, char *buf,
                            size_t size);

/* Grows *arr (element size `size`) to hold n + 1 elements. 0 or -ENOMEM. */
int ferry__grow(void *arr, size_t n, size_t size);

#endif

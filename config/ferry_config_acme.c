/* The [acme NAME] section and a listener's tls_acme key (ferry.ini.5, ACME).
 * Values are checked here; nothing contacts the ACME server (-t never does). */
#include "ferry_config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* renew_before's range: 1 second to 365 days. */
#define RENEW_BEFORE_MAX_S (365ull * 86400ull)

static struct ferry_acme *A(struct ferry__parse *p) { return &p->cfg->acmes[p->cur]; }

int ferry_config_acme_index(const struct ferry_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nacmes; i++)
        if (strcmp(cfg->acmes[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void bad(struct ferry__parse *p, const char *v, const char *expected)
{
    ferry__err(p, p->lineno, "invalid value \"%s\" for %s: expected %s", v, p->key, expected);
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

struct ferry_acme *ferry__acme_open(struct ferry__parse *p, const char *name)
{
    struct ferry_config *cfg = p->cfg;
    int prev = ferry_config_acme_index(cfg, name);
    if (prev >= 0) {
        char ref[FERRY_PATH_MAX + 32];
        ferry__err(p, p->lineno, "duplicate section [acme %s] (first at %s)", name,
                   ferry__line_ref(cfg, cfg->acmes[prev].line, p->lineno, ref, sizeof(ref)));
        return NULL;
    }
    char storage[sizeof(FERRY_ACME_STORAGE_DIR) + FERRY_NAME_MAX + 1];
    snprintf(storage, sizeof(storage), "%s/%s", FERRY_ACME_STORAGE_DIR, name);
    char *dup = strdup(storage);
    if (!dup || ferry__grow(&cfg->acmes, cfg->nacmes, sizeof(*cfg->acmes)) < 0) {
        free(dup);
        p->oom = true;
        return NULL;
    }
    struct ferry_acme *a = &cfg->acmes[cfg->nacmes];
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->line = p->lineno;
    a->storage = dup;
    a->key_type = FERRY_ACME_KEY_ECDSA_P256;
    a->renew_before_s = FERRY_ACME_RENEW_BEFORE_DEFAULT_S;
    p->cur = cfg->nacmes++;
    p->sect = FERRY__SECT_ACME;
    return a;
}

/* ---- the keys ---- */

/* An https URL with a host: "https://HOST[:PORT]/PATH". */
static void a_directory(struct ferry__parse *p, const char *v)
{
    A(p)->directory_line = p->lineno;
    const char *host = v + 8;
    bool ok = strncasecmp(v, "https://", 8) == 0 && *host && *host != '/' && *host != ':' &&
              strlen(v) < 2048;
    for (const char *c = v; ok && *c; c++)
        ok = isgraph((unsigned char)*c) != 0;
    if (!ok) {
        bad(p, v, "an https:// URL of the ACME server's directory");
        return;
    }
    set_string(p, v, &A(p)->directory);
}

static void a_email(struct ferry__parse *p, const char *v)
{
    const char *at = strchr(v, '@');
    bool ok = at && at > v && at[1] && !strchr(at + 1, '@') && strlen(v) < 254;
    for (const char *c = v; ok && *c; c++)
        ok = isgraph((unsigned char)*c) && *c != ',' && *c != '"' && *c != '\\';
    if (!ok) {
        bad(p, v, "an e-mail address like admin@example.com");
        return;
    }
    set_string(p, v, &A(p)->email);
}

static void a_ca(struct ferry__parse *p, const char *v)
{
    ferry__set_path(p, v, &A(p)->ca);
    A(p)->ca_line = p->lineno;
}

static void a_storage(struct ferry__parse *p, const char *v)
{
    ferry__set_path(p, v, &A(p)->storage);
    A(p)->storage_line = p->lineno;
}

static void a_key_type(struct ferry__parse *p, const char *v)
{
    if (strcasecmp(v, "ecdsa-p256") == 0)
        A(p)->key_type = FERRY_ACME_KEY_ECDSA_P256;
    else if (strcasecmp(v, "rsa-2048") == 0)
        A(p)->key_type = FERRY_ACME_KEY_RSA_2048;
    else
        bad(p, v, "ecdsa-p256 or rsa-2048");
}

/* A duration that may also be given in days ("30d"). */
static void a_renew_before(struct ferry__parse *p, const char *v)
{
    size_t n = strlen(v);
    uint64_t s = 0;
    bool ok;
    if (n > 1 && v[n - 1] == 'd') {
        unsigned long days;
        char num[32];
        ok = n - 1 < sizeof(num);
        if (ok) {
            memcpy(num, v, n - 1);
            num[n - 1] = '\0';
            ok = ferry_parse_uint(num, 365, &days) == 0;
            s = days * 86400ull;
        }
    } else {
        uint64_t ms;
        ok = ferry_parse_duration_ms(v, &ms) == 0;
        s = ms / 1000;
    }
    if (!ok || s == 0 || s > RENEW_BEFORE_MAX_S) {
        bad(p, v, "a duration from 1s to 365d (like 30d, 12h or 90s)");
        return;
    }
    A(p)->renew_before_s = s;
}

static void a_eab_kid(struct ferry__parse *p, const char *v)
{
    bool ok = strlen(v) < 512;
    for (const char *c = v; ok && *c; c++)
        ok = isgraph((unsigned char)*c) != 0;
    if (!ok) {
        bad(p, v, "the key id the CA issued (no spaces)");
        return;
    }
    set_string(p, v, &A(p)->eab_kid);
    A(p)->eab_line = p->lineno;
}

/* base64url without padding (RFC 8555 7.3.4), as the CA hands it out. */
static void a_eab_hmac_key(struct ferry__parse *p, const char *v)
{
    size_t n = strlen(v);
    bool ok = n >= 16 && n < 1024 && strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                               "0123456789-_") == n;
    if (!ok) {
        bad(p, v, "the base64url HMAC key the CA issued");
        return;
    }
    set_string(p, v, &A(p)->eab_hmac_key);
    if (!A(p)->eab_line)
        A(p)->eab_line = p->lineno;
}

struct acme_key {
    const char *name;
    void (*fn)(struct ferry__parse *p, const char *v);
};

static const struct acme_key acme_keys[] = {
    {"directory", a_directory},   {"email", a_email},
    {"ca", a_ca},                 {"storage", a_storage},
    {"key_type", a_key_type},     {"renew_before", a_renew_before},
    {"eab_kid", a_eab_kid},       {"eab_hmac_key", a_eab_hmac_key},
};
#define NKEYS (sizeof(acme_keys) / sizeof(acme_keys[0]))
_Static_assert(NKEYS <= FERRY__KEYS_MAX, "seen[] too small");

static int seen(const struct ferry__parse *p, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(acme_keys[i].name, name) == 0)
            return p->seen[i];
    return 0;
}

void ferry__acme_key(struct ferry__parse *p)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(acme_keys[i].name, p->key) != 0)
            continue;
        if (p->seen[i]) {
            ferry__err(p, p->lineno, "%s given twice in [acme %s] (first at line %d); it may "
                       "appear only once", p->key, A(p)->name, p->seen[i]);
            return;
        }
        p->seen[i] = p->lineno;
        if (!p->value[0]) {
            ferry__err(p, p->lineno, "empty value for %s", p->key);
            return;
        }
        acme_keys[i].fn(p, p->value);
        return;
    }
    ferry__err(p, p->lineno, "unknown key \"%s\" in [acme %s]", p->key, A(p)->name);
}

void ferry__acme_close(struct ferry__parse *p)
{
    const struct ferry_acme *a = A(p);
    if (!seen(p, "directory"))
        ferry__err(p, a->line, "[acme %s] has no directory (the ACME server's URL, like "
                   "https://acme-v02.api.letsencrypt.org/directory)", a->name);
    int kid = seen(p, "eab_kid"), hmac = seen(p, "eab_hmac_key");
    if (kid && !hmac)
        ferry__err(p, kid, "eab_kid needs eab_hmac_key");
    if (hmac && !kid)
        ferry__err(p, hmac, "eab_hmac_key needs eab_kid");
}

/* ---- tls_acme = ACME NAME [NAME...] ---- */

/* Lower case, a trailing dot dropped (names are compared with the SNI). */
static char *dns_name(struct ferry__parse *p, const char *t)
{
    size_t n = strlen(t);
    if (n > 1 && t[n - 1] == '.')
        n--;
    char *s = strndup(t, n);
    if (!s) {
        p->oom = true;
        return NULL;
    }
    for (char *c = s; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (s[0] == '*') {
        ferry__err(p, p->lineno, "tls_acme: wildcard name \"%s\" cannot be validated with "
                   "tls-alpn-01 (use a tls_cert for it)", t);
    } else if (!ferry__hostname_valid(s, 253) || !strchr(s, '.') || strchr(s, '_')) {
        ferry__err(p, p->lineno, "tls_acme: invalid name \"%s\": expected a DNS name like "
                   "www.example.com", t);
    } else {
        return s;
    }
    free(s);
    return NULL;
}

void ferry__tls_acme_free(struct ferry_listener *l)
{
    for (size_t i = 0; i < l->ntls_acme; i++) {
        for (size_t j = 0; j < l->tls_acme[i].nnames; j++)
            free(l->tls_acme[i].names[j]);
        free(l->tls_acme[i].names);
    }
    free(l->tls_acme);
    l->tls_acme = NULL;
    l->ntls_acme = 0;
}

/* At most this many names in one certificate (Let's Encrypt's limit is 100). */
#define NAMES_MAX 100

void ferry__listener_tls_acme(struct ferry__parse *p, const char *v)
{
    struct ferry_listener *l = &p->cfg->listeners[p->cur];
    char *copy = strdup(v), *save = NULL;
    struct ferry_tls_acme t = {.acme_index = -1, .line = p->lineno};
    size_t nerrs = p->nerrs;
    if (!copy || !(t.names = calloc(NAMES_MAX, sizeof(*t.names)))) {
        free(copy);
        p->oom = true;
        return;
    }
    char *acme = strtok_r(copy, " \t", &save);
    if (!ferry_name_valid(acme))
        ferry__err(p, p->lineno, "tls_acme: invalid acme name \"%s\"", acme);
    else
        snprintf(t.acme, sizeof(t.acme), "%s", acme);
    for (char *tok = strtok_r(NULL, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (t.nnames == NAMES_MAX) {
            ferry__err(p, p->lineno, "tls_acme: more than %d names", NAMES_MAX);
            break;
        }
        char *name = dns_name(p, tok);
        if (!name)
            continue;
        for (size_t i = 0; i < t.nnames && name; i++) {
            if (strcmp(t.names[i], name) == 0) {
                ferry__err(p, p->lineno, "tls_acme: name \"%s\" given twice", tok);
                free(name);
                name = NULL;
            }
        }
        if (name)
            t.names[t.nnames++] = name;
    }
    if (p->nerrs == nerrs && t.nnames == 0)
        ferry__err(p, p->lineno, "tls_acme needs an acme name and at least one DNS name: "
                   "tls_acme = ACME NAME [NAME...]");
    free(copy);
    if (p->nerrs != nerrs || ferry__grow(&l->tls_acme, l->ntls_acme, sizeof(t)) < 0) {
        if (p->nerrs == nerrs)
            p->oom = true;
        for (size_t i = 0; i < t.nnames; i++)
            free(t.names[i]);
        free(t.names);
        return;
    }
    l->tls_acme[l->ntls_acme++] = t;
}

void ferry__acme_check_refs(struct ferry__parse *p)
{
    struct ferry_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct ferry_listener *l = &cfg->listeners[i];
        for (size_t j = 0; j < l->ntls_acme; j++) {
            struct ferry_tls_acme *t = &l->tls_acme[j];
            t->acme_index = ferry_config_acme_index(cfg, t->acme);
            if (t->acme_index < 0)
                ferry__err(p, t->line, "tls_acme: unknown acme \"%s\" (no [acme %s] section)",
                           t->acme, t->acme);
        }
    }
}

void ferry__acme_free(struct ferry_config *cfg)
{
    for (size_t i = 0; i < cfg->nacmes; i++) {
        struct ferry_acme *a = &cfg->acmes[i];
        free(a->directory);
        free(a->email);
        free(a->ca);
        free(a->storage);
        free(a->eab_kid);
        free(a->eab_hmac_key);
    }
    free(cfg->acmes);
}

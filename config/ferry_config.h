/* ferry.ini: loading into typed, validated structs (ferry.ini(5)).
 *
 * ferry_config_load() reads the whole file with inih (through a line reader of
 * our own, so every error carries its line and an over-long line is an error,
 * never silently cut), checks every value and every reference, and collects
 * all errors, not just the first, as "FILE:LINE: message".
 *
 * The result is one allocation tree owned by the struct ferry_config; free it
 * with ferry_config_free(). This module knows nothing of sockets beyond
 * parsing addresses, and nothing of asynccore.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define FERRY_NAME_MAX 64

/* Most `resolvers` lines in [global]. */
#define FERRY_RESOLVERS_MAX 8

/* Longest line of ferry.ini, in characters without its line end. A longer
 * line is an error with its number; a line never gets cut. */
#define FERRY_CONFIG_LINE_MAX 4096

enum ferry_addr_kind {
    FERRY_ADDR_INET,     /* numeric IPv4 / IPv6, or a host name (servers only) */
    FERRY_ADDR_ANY,      /* "*:PORT": all IPv4 and IPv6 */
    FERRY_ADDR_UNIX,     /* "unix:/path" */
};

/* A parsed address. For a host name (servers only), `host` is the name to
 * resolve and `resolved` is false; the daemon resolves it without blocking. */
struct ferry_addr {
    enum ferry_addr_kind kind;
    char text[256];               /* as written, normalised: "127.0.0.1:80", "[::1]:80", "*:80", "unix:/p" */
    char host[256];               /* host part without brackets ("" for ANY / UNIX) */
    uint16_t port;
    bool resolved;                /* sa holds a numeric address */
    struct sockaddr_storage sa;   /* valid when resolved (INET numeric, UNIX) */
    socklen_t sa_len;
};

enum ferry_log_level { FERRY_LOG_ERROR, FERRY_LOG_WARN, FERRY_LOG_INFO, FERRY_LOG_DEBUG };
enum ferry_log_target { FERRY_LOG_TO_STDERR, FERRY_LOG_TO_SYSLOG, FERRY_LOG_TO_FILE,
                        FERRY_LOG_TO_UDP, FERRY_LOG_TO_TCP /* remote syslog (RFC 5424) */ };
enum ferry_log_format { FERRY_LOG_LOGFMT, FERRY_LOG_JSON };
/* [global] io_backend: the event loop's kernel interface (man ferry.ini(5)). */
enum ferry_io_backend {
    FERRY_IO_AUTO,
    FERRY_IO_EPOLL,
    FERRY_IO_URING,
    FERRY_IO_POLL,
    FERRY_IO_KQUEUE,
};

/* Longest file path a key may name. */
#define FERRY_PATH_MAX 1024

/* [global] reuseport's default: what tests/bench/accept_bench.py measured
 * faster with workers = auto (tests/bench/RESULTS.md, daemon/bound.c). */
#define FERRY_REUSEPORT_DEFAULT false

struct ferry_global {
    unsigned workers;           /* 0 = auto */
    enum ferry_io_backend io_backend; /* default auto; read at start only */
    unsigned max_connections;   /* default 10000 */
    char control_socket[108];   /* "" disables; default /run/ferry/ferry.sock */
    int control_socket_line;    /* 0: the default */
    char *state_file;           /* NULL: none; absolute (relative to the file's directory) */
    int state_file_line;
    unsigned control_mode;      /* default 0660 */
    char user[64], group[64];   /* "" none */
    int user_line, group_line;  /* 0: unset */
    enum ferry_log_level log_level;
    enum ferry_log_target log_target; /* `log`, default stderr */
    char log_path[FERRY_PATH_MAX];   /* FERRY_LOG_TO_FILE */
    struct ferry_addr log_addr;      /* FERRY_LOG_TO_UDP / _TCP: HOST:PORT (a name is
                                      * resolved by the log writer) */
    int log_line;
    enum ferry_log_format log_format; /* default logfmt */
    bool access_log;            /* default on */
    char access_log_path[FERRY_PATH_MAX]; /* "": access lines go to `log` */
    int access_log_line;
    uint64_t drain_timeout_ms;  /* default 30s */
    uint64_t shutdown_delay_ms; /* default 0: on stop, serve this long with /ready at 503 */
    bool tls_watch;             /* default on: reload when a TLS file changes */
    bool reuseport;             /* one SO_REUSEPORT socket per worker and address
                                 * (else one shared socket); read at start only */
    size_t buffer_size;         /* default 16k */
    bool has_metrics;
    struct ferry_addr metrics;  /* HOST:PORT */
    int metrics_line;
    /* DNS (ferry.ini(5)): resolvers as "IP:PORT" / "[IPV6]:PORT" (none: the
     * system's /etc/resolv.conf), and the clamp applied to answer TTLs. */
    char resolvers[FERRY_RESOLVERS_MAX][64];
    size_t nresolvers;
    uint64_t dns_min_ttl_ms;    /* default 1s */
    uint64_t dns_max_ttl_ms;    /* default 5m */
};

struct ferry_route {
    char servername[256];       /* exact, or "*.example.com" */
    char backend[FERRY_NAME_MAX];
    int backend_index;          /* resolved reference into config->backends */
    int line;
};

struct ferry_cidr {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

/* tls_acme = ACME NAME [NAME...]: one certificate for these names from the
 * [acme ACME] account (ferry.ini(5), [acme NAME]). */
struct ferry_tls_acme {
    char acme[FERRY_NAME_MAX];
    int acme_index;             /* resolved reference into config->acmes */
    char **names;               /* lower case, without a trailing dot */
    size_t nnames;
    int line;
};

struct ferry_listener {
    char name[FERRY_NAME_MAX];
    int line;                   /* line of the section header */
    struct ferry_addr *binds;
    int *bind_lines;
    size_t nbinds;
    char backend[FERRY_NAME_MAX]; /* "" none */
    int backend_index;          /* -1 none */
    int backend_line;
    bool tls;
    char **tls_certs;           /* paths */
    char **tls_cert_keys;       /* [ntls_certs]: its key file, NULL: key in the cert file */
    int *tls_cert_lines;
    size_t ntls_certs;
    int tls_min_version;        /* 0x0303 (1.2) or 0x0304 (1.3) */
    char *tls_ciphers, *tls_ciphersuites, *tls_alpn, *tls_client_ca; /* NULL: unset */
    int tls_client_ca_line;
    char *tls_ticket_keys;      /* NULL: a random key per process */
    int tls_ticket_keys_line;
    int tls_ciphers_line, tls_ciphersuites_line, tls_alpn_line; /* 0: unset */
    struct ferry_tls_acme *tls_acme; /* certificates obtained by ACME */
    size_t ntls_acme;
    struct ferry_route *routes;
    size_t nroutes;
    bool accept_proxy;
    /* accept_proxy_from: peers allowed to send the PROXY header (none: any). */
    struct ferry_cidr *proxy_from;
    size_t nproxy_from;
    struct ferry_cidr *allow, *deny;
    size_t nallow, ndeny;
    unsigned max_connections;   /* 0: only the global cap */
    unsigned max_connections_per_client; /* 0: no cap */
    unsigned client_rate;       /* new connections per second per client, 0..65535; 0: no cap */
    uint64_t idle_timeout_ms;   /* default 5m */
    uint64_t handshake_timeout_ms; /* default 10s */
    bool mptcp;                 /* accept Multipath TCP too (IPPROTO_MPTCP socket) */
    unsigned tcp_fastopen;      /* TCP_FASTOPEN queue length; 0: off */
};

struct ferry_server {
    char name[FERRY_NAME_MAX];
    struct ferry_addr addr;
    unsigned weight;            /* default 1; 0 allowed = never picked */
    bool backup;
    unsigned max_connections;   /* 0: no cap (queue when every server is at its cap) */
    int line;
};

enum ferry_balance { FERRY_BALANCE_ROUNDROBIN, FERRY_BALANCE_LEASTCONN, FERRY_BALANCE_RANDOM,
                     FERRY_BALANCE_SOURCE };
enum ferry_health { FERRY_HEALTH_OFF, FERRY_HEALTH_TCP, FERRY_HEALTH_TLS,
                    FERRY_HEALTH_SEND_EXPECT, FERRY_HEALTH_HTTP };

/* health_status as a set of codes 100..599: bit (code - 100). */
#define FERRY_STATUS_BITS 500
struct ferry_status_set {
    uint64_t bits[(FERRY_STATUS_BITS + 63) / 64];
};
static inline bool ferry_status_set_has(const struct ferry_status_set *s, unsigned code)
{
    return code >= 100 && code < 600 && (s->bits[(code - 100) / 64] >> ((code - 100) % 64)) & 1;
}

/* Longest health_send / health_expect once its escapes are decoded. */
#define FERRY_HEALTH_BYTES_MAX 1024

/* discover = dns HOST:PORT | srv _SERVICE._PROTO.NAME */
enum ferry_discover { FERRY_DISCOVER_NONE, FERRY_DISCOVER_DNS, FERRY_DISCOVER_SRV };

struct ferry_backend {
    char name[FERRY_NAME_MAX];
    int line;
    enum ferry_discover discover;
    char discover_name[256];       /* HOST (dns) or the SRV name */
    uint16_t discover_port;        /* dns only */
    int discover_line;
    struct ferry_server *servers;
    size_t nservers;
    enum ferry_balance balance;
    uint64_t connect_timeout_ms;   /* default 5s */
    unsigned retries;              /* default 2 */
    enum ferry_health health_check;
    uint64_t health_interval_ms, health_timeout_ms; /* 5s, 2s */
    unsigned health_rise, health_fall;              /* 2, 3 */
    int health_check_line;
    char *health_send, *health_expect;             /* decoded bytes; NULL: unset */
    size_t health_send_len, health_expect_len;
    char *health_uri;                              /* NULL: "/" */
    struct ferry_status_set health_status;         /* default 2xx */
    uint16_t health_port;                          /* 0: the server's port */
    bool health_send_proxy;
    uint64_t queue_timeout_ms;                     /* default 5s */
    unsigned max_queue;                            /* default 1000 */
    uint64_t slow_start_ms;                        /* default 0: off */
    bool tls;
    bool tls_verify;               /* default on */
    char *tls_ca;                  /* NULL: system store */
    int tls_ca_line;               /* line of tls_ca (0: unset) */
    char *tls_cert, *tls_cert_key; /* client certificate upstream; NULL: none / key in cert */
    int tls_cert_line;
    char *tls_sni;                 /* NULL: server host */
    int send_proxy;                /* 0 off, 1 v1, 2 v2 */
    bool mptcp;                    /* connect with Multipath TCP, falling back to TCP */
};

enum ferry_acme_key_type { FERRY_ACME_KEY_ECDSA_P256, FERRY_ACME_KEY_RSA_2048 };

/* Default renew_before: 30 days, in seconds. */
#define FERRY_ACME_RENEW_BEFORE_DEFAULT_S (30u * 86400u)

/* [acme NAME]: an ACME account (RFC 8555) certificates are ordered from. */
struct ferry_acme {
    char name[FERRY_NAME_MAX];
    int line;                   /* line of the section header */
    char *directory;            /* https://... (NULL only in a configuration with errors) */
    int directory_line;
    char *email;                /* NULL: no contact */
    char *ca;                   /* CA bundle verifying the server; NULL: system store */
    int ca_line;
    char *storage;              /* absolute; default /var/lib/ferry/acme/NAME */
    int storage_line;           /* 0: the default */
    enum ferry_acme_key_type key_type;
    uint64_t renew_before_s;    /* default 30 days */
    char *eab_kid, *eab_hmac_key; /* External Account Binding; NULL: none */
    int eab_line;
};

/* Directory [acme NAME]'s storage defaults to, with NAME appended. */
#define FERRY_ACME_STORAGE_DIR "/var/lib/ferry/acme"

/* A file the configuration was read from: the main file first, then each
 * included one (include = GLOB). Its line L is line offset + L of the
 * configuration: every `line` field of these structs counts on across the
 * files, so a line of the main file is its own number. */
struct ferry_config_source {
    char *path;
    int offset;
};

/* One error: "FILE:LINE: message" already formatted. */
struct ferry_config_errors {
    char **msgs;
    size_t n;
    long *keys;                 /* [n]: where each sorts (a configuration line), -1: by its text */
};

struct ferry_config {
    char *path;                 /* as given (-c), used in "FILE:LINE: message" */
    struct ferry_config_source *sources; /* [0]: the main file */
    size_t nsources;
    char *dir;                  /* absolute directory of the file: relative paths
                                 * are resolved against it (NULL if unknown) */
    struct ferry_global global;
    struct ferry_listener *listeners;
    size_t nlisteners;
    struct ferry_backend *backends;
    size_t nbackends;
    struct ferry_acme *acmes;
    size_t nacmes;
    /* What is allowed but likely a mistake ("FILE:LINE: warning: message"):
     * health_timeout not below health_interval, a backend whose servers are
     * all backup. ferryd -t prints them. */
    struct ferry_config_errors warnings;
};


/* Loads and validates `path`. Returns the config, or NULL with errs->n > 0
 * (every error found). TLS files are checked by the daemon's TLS layer, not
 * here (errors it finds use the same FILE:LINE form with the lines kept in
 * the structs above). */
struct ferry_config *ferry_config_load(const char *path, struct ferry_config_errors *errs);

/* Same, but with errors the configuration is still returned, as far as it
 * could be read (sections and keys with errors left out or at their
 * defaults), so that later passes (TLS files, ciphers) can report their
 * errors in the same run. Check errs->n before anything else: such a
 * configuration must never serve. NULL only when the file cannot be read or
 * memory runs out (then with an error). */
struct ferry_config *ferry_config_load_all(const char *path, struct ferry_config_errors *errs);

/* Same, from an in-memory string; `name` is used in messages (for tests). */
struct ferry_config *ferry_config_load_string(const char *name, const char *text,
                                              struct ferry_config_errors *errs);

void ferry_config_free(struct ferry_config *cfg);
void ferry_config_errors_free(struct ferry_config_errors *errs);
/* ferryd -t opens what ferryd would open for writing at start: a `log` or
 * `access_log` file and the `state_file` whose directory is missing or not
 * writable (or that exists and cannot be written) is an error at that key's
 * line (ferry_config_writable.c). Creates nothing. */
void ferry_config_check_writable(const struct ferry_config *cfg, struct ferry_config_errors *errs);
/* Orders "FILE:LINE: message" errors of `file` by line (stable), for lists
 * filled by several passes (parser, TLS files, DNS, binding). */
void ferry_config_errors_sort(struct ferry_config_errors *errs, const char *file);
/* Appends a formatted "FILE:LINE: message" (used by later validation stages);
 * with line <= 0 (a whole-file matter, like a file that cannot be read) it is
 * "FILE: message". */
void ferry_config_error_add(struct ferry_config_errors *errs, const char *file, int line,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The file and the line in it of a configuration line (see struct
 * ferry_config_source): *file_line gets the line in that file. A line <= 0
 * is the main file's, unchanged. */
const char *ferry_config_source_of(const struct ferry_config *cfg, int line, int *file_line);
/* Rewrites each "CFG->PATH:LINE: message" of errs whose LINE is in an
 * included file as "INCLUDED:LINE': message" (and sorts it by LINE), for
 * passes that report with the configuration's path and a `line` field
 * (TLS files, binding). Idempotent. */
void ferry_config_errors_map(struct ferry_config_errors *errs, const struct ferry_config *cfg);
/* ferry_config_error_add() at configuration line `line` (0: the main file
 * as a whole), naming the included file it is in; sorted by that line. */
void ferry_config_error_at(struct ferry_config_errors *errs, const struct ferry_config *cfg,
                           int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Paths in ferry.ini (ferryd(8)) are relative to the directory of the
 * configuration file, never to the working directory, and every message that
 * names such a file gives the absolute path. Each key whose value is a path
 * (certificates, CA bundles, ticket keys, the control socket, log files, the
 * state file) stores it resolved at load time, so later code and its
 * messages only ever see absolute paths.
 *
 * HOW TO ADD A PATH KEY: in its handler in ferry_config_keys.c call
 *     ferry__set_path(p, v, &X(p)->my_path);      (a char * field, freed in
 *                                                  ferry_config_free)
 * or, for a value holding several paths ("CERT KEY"), per path:
 *     char *abs = ferry__path(p, token);          (NULL: error already reported)
 * (both declared in ferry_config_int.h). Outside the loader (the daemon, the
 * control socket), resolve against the loaded file with
 *     ferry_config_resolve_path(cfg->dir, path).
 *
 * ferry_config_dir(): the absolute directory of `config_file` (relative to
 * the working directory now, as a command line means it); malloc'd, NULL
 * with errno set on failure.
 * ferry_config_resolve_path(): a malloc'd copy of `path` made absolute
 * against `dir` (kept as is when absolute; "." components and repeated
 * slashes dropped, ".." kept); with dir NULL a relative path is copied
 * unchanged. NULL only when out of memory. */
char *ferry_config_dir(const char *config_file);
char *ferry_config_resolve_path(const char *dir, const char *path);

/* Value parsers (exposed for the control socket and tests). Each returns 0 or
 * -EINVAL / -ERANGE, and checks the whole string. */
int ferry_parse_duration_ms(const char *s, uint64_t *out);   /* "250ms" "10s" "5m" "1h" "7" */
int ferry_parse_size(const char *s, size_t *out);            /* "4096" "16k" "1m" */
int ferry_parse_bool(const char *s, bool *out);
int ferry_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* allow_host: accept a host name (servers) besides numeric addresses. */
int ferry_parse_addr(const char *s, bool allow_host, struct ferry_addr *out);
int ferry_parse_cidr(const char *s, struct ferry_cidr *out);
/* A string with C escapes (\r \n \t \\ \xHH) into out (cap bytes; the
 * result may hold NUL bytes: its length goes to *len). -EINVAL on a bad or
 * unknown escape, -ERANGE when it does not fit. */
int ferry_parse_escaped(const char *s, char *out, size_t cap, size_t *len);
/* "200,204", "2xx,3xx" (codes 100-599 and classes 1xx-5xx, comma-separated,
 * spaces allowed around commas) into *out. */
int ferry_parse_status_list(const char *s, struct ferry_status_set *out);
bool ferry_cidr_match(const struct ferry_cidr *c, const struct sockaddr *sa);
bool ferry_name_valid(const char *s);
/* True when binding both addresses would clash: the same address, a unix
 * path twice, or one wildcard ("*:P", 0.0.0.0:P, [::]:P) and another address
 * of its family on the same port (v4-mapped IPv6 counts as IPv4). */
bool ferry_addr_conflict(const struct ferry_addr *a, const struct ferry_addr *b);

/* Finds an [acme NAME] section by name; -1 if none. */
int ferry_config_acme_index(const struct ferry_config *cfg, const char *name);

/* Finds a backend by name; -1 if none. */
int ferry_config_backend_index(const struct ferry_config *cfg, const char *name);

#endif

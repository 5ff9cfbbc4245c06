/* ferryd: the upgrade channel between an old and a new process (ferryd(8), UPGRADE).
 *
 * An AF_UNIX SOCK_SEQPACKET socketpair: every record is one message, its
 * first byte the type, the rest the payload, with descriptors attached by
 * SCM_RIGHTS. The old process sends, in this order:
 *   'S' a listening socket: "KIND\tADDR\tSDNAME\tINHERITED" and its fds
 *       (several for a reuseport group), KIND being listener, control or
 *       metrics, ADDR the key it is found by (a bind's address text, the
 *       control socket's path, the metrics address);
 *   'K' the 80-byte session-ticket key of listeners without tls_ticket_keys;
 *   'R' the runtime state, in the state file's text, in chunks;
 *   'E' the end: the old process's pid.
 * The new process answers with 'e' records (one error line each) and exits,
 * or with 'r' "PID VERSION" once it is ready; the old one then answers 'g'
 * (go: it stops accepting) and the new one becomes the main process.
 * Only libc here; the records are small, the state is split.
 */
#ifndef FERRY_HANDOVER_H
#define FERRY_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FERRY_HANDOVER_ENV "FERRY_UPGRADE_FD"
#define FERRY_HANDOVER_RECORD_MAX 16384 /* bytes of one record, type included */
#define FERRY_HANDOVER_FDS_MAX 252      /* descriptors of one socket (under SCM_MAX_FD) */

enum ferry_handed_kind { FERRY_HANDED_LISTENER, FERRY_HANDED_CONTROL, FERRY_HANDED_METRICS };

/* One listening socket handed over (or about to be). */
struct ferry_handed_sock {
    enum ferry_handed_kind kind;
    char addr[256];   /* the key: bind address text, control path, metrics address */
    char sd_name[64]; /* FileDescriptorName= of a socket systemd gave ("" if none) */
    bool inherited;   /* first came from systemd: its file is not ours to unlink */
    bool claimed;     /* taken by the new process (its fds are no longer ours) */
    unsigned nfds;
    int *fds;
};

/* What the new process received. */
struct ferry_handover {
    int chan;                   /* the channel, kept to answer (-1: none) */
    struct ferry_handed_sock *socks;
    size_t n;
    char *state;                /* NUL-terminated state text ("" if none) */
    size_t state_len;
    unsigned char ticket_key[80];
    bool has_ticket_key;
    pid_t old_pid;
};

/* ---- the old process ---- */
int ferry_handover_send_sock(int chan, const struct ferry_handed_sock *s);
int ferry_handover_send_ticket_key(int chan, const unsigned char key[80]);
int ferry_handover_send_state(int chan, const char *text);
int ferry_handover_send_end(int chan, pid_t pid);

/* ---- both: a one-line message ('e', 'r', 'g'); 0 or -errno ---- */
int ferry_handover_send_msg(int chan, char type, const char *text);
/* Receives one record, its payload into buf (NUL-terminated, cut to fit),
 * its type in *type. Returns the record's length (type byte included, so
 * at least 1), 0 at the end of the channel (peer gone), or -errno
 * (-EAGAIN on a non-blocking channel with nothing to read). Descriptors
 * that come with a message are closed. */
ssize_t ferry_handover_recv_msg(int chan, char *type, char *buf, size_t cap);

/* ---- the new process ---- */

/* The channel named by $FERRY_UPGRADE_FD (unset afterwards), or -1 when
 * this is no upgrade; -EINVAL for a bad value. */
int ferry_handover_channel_from_env(void);
/* Reads every record up to 'E' (blocking, within timeout_ms). 0, or -errno
 * with the reason in err. */
int ferry_handover_recv(int chan, int timeout_ms, struct ferry_handover *h, char *err,
                        size_t errlen);
/* The handed socket of this kind and key not yet claimed, or NULL. */
struct ferry_handed_sock *ferry_handover_find(struct ferry_handover *h, enum ferry_handed_kind kind,
                                              const char *addr, const char *sd_name);
/* Tells the old process this one is ready ('r' with our pid and version)
 * and waits for its 'g'. 0 when this process is to serve, else -errno (the
 * old one gave up: timed out, or failed since). */
int ferry_handover_ready(int chan, const char *version, int timeout_ms);
/* Closes the descriptors nobody claimed, the channel, and frees. */
void ferry_handover_free(struct ferry_handover *h);

#endif

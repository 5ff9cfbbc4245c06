/* ferryd: listening sockets shared by the workers (see listen.c). */
#ifndef FERRY_LISTEN_H
#define FERRY_LISTEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "asynccore/sync.h"
#include "ferry_config.h"

struct ferry_daemon;
struct ferry_gen;

/* The listening sockets of one address, kept across reloads while some
 * listener binds it. One accept task per worker serves them: with one socket
 * (nfds 1) every task shares it; with reuseport (nfds = workers) task i
 * serves fds[i] alone. */
struct ferry_listen_addr {
    struct ferry_listen_addr *next;
    char addr[256];          /* normalised address text, the key */
    bool inherited;          /* from socket activation */
    char sd_name[64];        /* its FileDescriptorName= when claimed by name */
    bool unix_path;          /* unlink addr+5 when closed (not inherited, not keep_file) */
    bool keep_file;          /* a unix: socket shared with another ferryd (handed over
                              * by an upgrade, or to one): its file is never unlinked */
    struct ferry_gen *gen;   /* generation serving it (guarded by gen_ptr_lock) */
    struct ferry_gen *prev_gen; /* replaced one, released after the swap */
    size_t lidx;             /* its listener's index in gen */
    _Atomic unsigned gen_version; /* bumped (under the lock) when gen/lidx change */
    struct ac_notify closing;
    bool serve_queue;        /* closing by reload: accept what is queued first */
    _Atomic unsigned tasks;  /* accept tasks alive; the last one closes fds */
    unsigned nfds;
    int fds[];               /* -1: not ours to close (inherited, aborted) */
};

/* Binds a configured address: one socket, or with reuseport nsockets
 * SO_REUSEPORT sockets (a Unix path always gets one). Fails with
 * -EADDRINUSE, as a plain bind would, when anything listens on it already.
 * mptcp: IPPROTO_MPTCP sockets (plain TCP, with a warning, where the kernel
 * has none); fastopen: TCP_FASTOPEN's queue length (0: off; a kernel that
 * refuses it is a warning). Returns 0 or -errno. */
int ferry_listen_bind(const struct ferry_addr *a, bool reuseport, unsigned nsockets, bool mptcp,
                      unsigned fastopen, struct ferry_listen_addr **out);
/* Wraps the sockets an old process handed over (upgrade): nfds of them
 * (a reuseport group, or one), as they were there. */
struct ferry_listen_addr *ferry_listen_adopt_group(const char *addr, const int *fds, unsigned nfds,
                                                   bool inherited, const char *sd_name);
/* Wraps an inherited (socket activation) descriptor. */
struct ferry_listen_addr *ferry_listen_adopt(const char *addr, int fd, const char *sd_name);
/* Spawns the accept tasks: one per worker on a shared socket, one per
 * socket of a reuseport group. */
int ferry_listen_start(struct ferry_daemon *d, struct ferry_listen_addr *b);
/* Stops accepting (after accepting what is queued when serve_queue) and
 * releases the daemon's reference; the last accept task closes the sockets. */
void ferry_listen_close(struct ferry_listen_addr *b, bool serve_queue);

#endif

/* ac-echo: a TCP echo server on asynccore.
 *
 *   ac-echo PORT [WORKERS [ADDRESS]]     (WORKERS default 1, ADDRESS 127.0.0.1;
 *                                         PORT 0 picks a free port)
 *
 * The pattern the daemon uses: one listening socket shared by every worker
 * (each registers it with AC_REG_EXCLUSIVE, so one accept queue feeds them
 * all), one accept task per worker, and one task per connection that stays on
 * the worker which accepted it. A connection is an ac_copy from its stream to
 * itself: it reads into the worker's scratch buffer and writes straight back,
 * so an idle connection holds no buffer. SIGINT or SIGTERM stops the server.
 * It prints "ac-echo: listening on ADDRESS:PORT" on stderr once it accepts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asynccore/copy.h"
#include "asynccore/net.h"
#include "asynccore/runtime.h"
#include "common.h"

#define ECHO_BUFSIZE (16u * 1024u)

/* The task's future is the copy itself (no wrapper to poll through); the
 * stream it uses is closed by the dealloc hook, which the task calls after
 * the copy's drop. */
struct echo_conn {
    struct ac_copy copy; /* stream -> stream */
    struct ac_stream stream;
};

static void conn_free(struct ac_future *f)
{
    struct echo_conn *c = AC_CONTAINER_OF(f, struct echo_conn, copy.base);

    ac_stream_close(&c->stream);
    free(c);
}

/* Takes ownership of fd (closed on failure). */
static void conn_start(struct ac_worker *w, int fd, const struct sockaddr_storage *peer,
                       socklen_t peer_len, void *arg)
{
    (void)peer, (void)peer_len, (void)arg;
    struct echo_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    if (ac_socket_stream_open(&c->stream, w, fd) < 0) {
        close(fd);
        free(c);
        return;
    }
    ac_copy_init(&c->copy, &c->stream, &c->stream, ECHO_BUFSIZE);
    ac_spawn(w, &c->copy.base, conn_free); /* on failure it drops and frees c */
}

int main(int argc, char **argv)
{
    unsigned long port, workers = 1;
    const char *addr = argc > 3 ? argv[3] : "127.0.0.1";
    struct sockaddr_storage ss;
    socklen_t len;

    if (argc < 2 || argc > 4 || ex_parse_uint(argv[1], 65535, &port) != 0 ||
        (argc > 2 && (ex_parse_uint(argv[2], 1024, &workers) != 0 || workers == 0)) ||
        ex_make_addr(addr, (unsigned)port, &ss, &len) != 0) {
        fprintf(stderr, "usage: %s PORT [WORKERS [ADDRESS]]\n", argv[0]);
        return 2;
    }
    /* Blocked before any thread starts, so every worker inherits the mask
     * and the signals reach only the signalfd. */
    sigset_t set;
    ex_block_signals(&set);

    struct ac_runtime_opts opts = {.workers = (unsigned)workers, .blocking_threads = 1};
    struct ac_runtime *rt = ac_runtime_new(&opts);
    if (rt == NULL) {
        fprintf(stderr, "ac-echo: runtime: %s\n", strerror(errno));
        return 1;
    }
    int status = 1, r;
    int lfd = ex_listen("ac-echo", &ss, len);
    if (lfd < 0)
        fprintf(stderr, "ac-echo: listen on %s:%lu: %s\n", addr, port, strerror(-lfd));
    else if ((r = ex_accept_everywhere(rt, lfd, conn_start, NULL)) < 0)
        fprintf(stderr, "ac-echo: accept task: %s\n", strerror(-r));
    else if ((r = ex_stop_on_signals(rt, &set)) < 0)
        fprintf(stderr, "ac-echo: signalfd: %s\n", strerror(-r));
    else if ((r = ac_runtime_run(rt)) < 0)
        fprintf(stderr, "ac-echo: run: %s\n", strerror(-r));
    else
        status = 0;
    ac_runtime_free(rt);
    if (lfd >= 0)
        close(lfd);
    return status;
}

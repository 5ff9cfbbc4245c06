/* ferryd: the control socket's command language (ferryctl(8) COMMANDS).
 *
 * ferry_ctl_parse() turns one received line into a request or an error
 * message (the server answers "error: <message>"); ferry_ctl_from_argv()
 * turns ferryctl's words into that line. Neither touches the daemon.
 */
#ifndef FERRY_CONTROL_CMD_H
#define FERRY_CONTROL_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_config.h"
#include "proto/admin_state.h"

/* Longest command line accepted, without its '\n'. */
#define FERRY_CTL_LINE_MAX 4096

enum ferry_ctl_cmd {
    FERRY_CTL_HELP,
    FERRY_CTL_SHOW_INFO,
    FERRY_CTL_SHOW_STATS,
    FERRY_CTL_SHOW_CONNS,
    FERRY_CTL_SHOW_METRICS,
    FERRY_CTL_DISABLE_SERVER,
    FERRY_CTL_ENABLE_SERVER,
    FERRY_CTL_RELOAD,
    FERRY_CTL_SET_SERVER_STATE,
    FERRY_CTL_SET_SERVER_WEIGHT,
    FERRY_CTL_DISABLE_LISTENER,
    FERRY_CTL_ENABLE_LISTENER,
    FERRY_CTL_ADD_SERVER,           /* add server BACKEND NAME ADDRESS [options] */
    FERRY_CTL_DEL_SERVER,           /* del server BACKEND/SERVER */
    FERRY_CTL_SHUTDOWN_CONN,        /* shutdown conn ID */
    FERRY_CTL_SHOW_ACME,            /* show acme [json] */
    FERRY_CTL_SET_SERVER_ADDR,      /* set server BACKEND/SERVER addr ADDRESS */
    FERRY_CTL_UPGRADE,              /* upgrade: a new process takes over */
};

struct ferry_ctl_request {
    enum ferry_ctl_cmd cmd;
    bool json;                      /* show info|stats|conns|acme json */
    char backend[FERRY_NAME_MAX];   /* disable / enable / set server */
    char server[FERRY_NAME_MAX];
    char listener[FERRY_NAME_MAX];  /* disable / enable listener */
    enum ferry_admin_state state;   /* set server ... state */
    unsigned weight;                /* set server ... weight (0 to 256); add server (default 1) */
    struct ferry_addr addr;         /* add server, set server ... addr: IP:PORT or HOST:PORT */
    bool backup;                    /* add server ... backup */
    unsigned max_connections;       /* add server ... max_connections=N (0: none) */
    uint64_t conn_id;               /* shutdown conn ID (> 0) */
    char error[256];                /* set when parsing fails */
};

/* True for commands that answer "ok" (or "error: ..."): all but help and
 * show. ferryctl --json prints {"ok": true} for them. */
bool ferry_ctl_answers_ok(enum ferry_ctl_cmd cmd);

/* The answer to `help`, one command per line, ending in '\n'. */
extern const char ferry_ctl_help_text[];

/* Parses `len` bytes of one line (a final "\n", "\r\n" or "\r" is
 * tolerated; words are separated by spaces or tabs). Returns 0, or -EINVAL
 * with req->error set to a one-line message in which bytes of the input are
 * shown printable only. */
int ferry_ctl_parse(const char *line, size_t len, struct ferry_ctl_request *req);

/* ferryctl: maps COMMAND [ARGS] (argv[0] is the command; a "--json" word
 * among them counts like the json argument) to the control line, written
 * with its final '\n' and NUL-terminated into buf. Returns its length, or
 * -EINVAL with a one-line message naming the mistake in err, or -ENOSPC.
 * json asks the daemon for JSON where it has it (show info|stats|conns);
 * ferryctl turns the other answers into JSON itself. */
int ferry_ctl_from_argv(int argc, char *const argv[], bool json, char *buf, size_t cap,
                        char *err, size_t errcap);

#endif

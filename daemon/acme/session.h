/* ferryd ACME: talking to one ACME server (RFC 8555 6).
 *
 * A session holds what every request needs: the server's address (a
 * numeric host, or looked up through the registry's resolver), the TLS
 * context verifying it, the account key and URL (kid), and the current
 * Replay-Nonce. One request runs at a time: a GET, or a POST signed as a
 * flattened JWS (a POST-as-GET with no payload); a missing nonce is fetched
 * from newNonce first, and a badNonce answer is retried with the fresh nonce
 * it carries (up to FERRY_ACME_NONCE_RETRIES times). Everything runs on the
 * owner's event loop. */
#ifndef FERRY_ACME_SESSION_H
#define FERRY_ACME_SESSION_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "acme/http.h"
#include "asynccore/waker.h"

#define FERRY_ACME_NONCE_RETRIES 20

struct ferry_acme_reg;
struct ferry_acme_resolving;

/* The request under way and, once it finished, its answer. */
struct ferry_acme_request {
    const char *method;
    char url[1024];
    json_t *payload;            /* POST: JSON body (owned); NULL: POST-as-GET */
    bool post, use_jwk;
    int phase;                  /* 0 start, 1 fetching a nonce, 2 the request itself */
    unsigned nonce_retries;
    /* the answer */
    int status;
    json_t *json;               /* the body when it is JSON, else NULL */
    char *body;
    char location[1024];
    unsigned retry_after_s;
};

struct ferry_acme_session {
    struct ferry_acme_reg *reg;
    const char *acme;           /* the account's name, for log lines */
    SSL_CTX *ctx;               /* verifies the server (owned) */
    EVP_PKEY *account;          /* the account key (owned) */
    char *kid, *nonce;
    char new_nonce[1024];       /* from the directory */
    char host[256];
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addr_len;         /* 0: to resolve */
    struct ferry_acme_resolving *resolving; /* a lookup under way */
    struct ferry_acme_http http;
    bool http_live;
    struct ferry_acme_request req;
    bool req_live;
    char err[600];              /* why the last request failed */
};

void ferry_acme_session_init(struct ferry_acme_session *ss, struct ferry_acme_reg *reg,
                             const char *acme);
void ferry_acme_session_drop(struct ferry_acme_session *ss);

/* A GET (post false) or a signed POST (payload, taken, NULL: POST-as-GET;
 * use_jwk: signed with the key itself, for newAccount). */
void ferry_acme_req_start(struct ferry_acme_session *ss, const char *url, bool post,
                          json_t *payload, bool use_jwk);
/* Ready when the request finished (ss->req.status, json, body...) or
 * failed (returns false through *ok, ss->err says why). */
ac_poll_t ferry_acme_req_poll(struct ferry_acme_session *ss, struct ac_context *cx, bool *ok);
/* Ends the request and forgets its answer. */
void ferry_acme_req_reset(struct ferry_acme_session *ss);
/* "WHAT: HTTP STATUS TYPE: DETAIL" of an error answer into err. */
void ferry_acme_problem(const struct ferry_acme_session *ss, const char *what, char *err,
                        size_t cap);

#endif

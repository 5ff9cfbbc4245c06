/* ferryd: peeking at a PROXY header or a TLS ClientHello (see peek.c). */
#ifndef FERRY_PEEK_H
#define FERRY_PEEK_H

#include <stddef.h>

#include "asynccore/future.h"
#include "asynccore/stream.h"
#include "proto/clienthello.h"
#include "proto/proxy_proto.h"

enum ferry_peek_kind { FERRY_PEEK_PROXY, FERRY_PEEK_HELLO };

struct ferry_peek {
    struct ac_future base;
    struct ac_stream *s;
    struct ac_worker *worker;
    enum ferry_peek_kind kind;
    size_t seen;    /* bytes available at the last look */
    size_t consume; /* PROXY: header length taken from the socket */
    int err;        /* output: 0, -EINVAL (garbage, too long), -EPIPE (EOF), -errno */
    union {
        struct ferry_proxy_hdr proxy;     /* output for FERRY_PEEK_PROXY */
        struct ferry_clienthello hello;   /* output for FERRY_PEEK_HELLO */
    };
};

void ferry_peek_init(struct ferry_peek *p, struct ac_stream *s, enum ferry_peek_kind kind);

#endif

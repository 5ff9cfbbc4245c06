/* ferryd: reading the TLS ClientHello without terminating TLS (SNI routing).
 *
 * The parser is run on all the bytes a client sent so far, peeked, not
 * consumed: one or more TLS records whose handshake fragments are
 * reassembled into the ClientHello message. It never allocates: the
 * message is reassembled in a fixed stack buffer only when it spans
 * records, and every length field is checked against what encloses it.
 * Strict: anything that is not a well-formed ClientHello (record type and
 * version, every length, the handshake type, a server name that is not a
 * valid DNS name) is FERRY_CH_INVALID.
 */
#ifndef FERRY_CLIENTHELLO_H
#define FERRY_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest ClientHello message accepted (handshake header included). */
#define FERRY_CLIENTHELLO_HS_MAX 16384
/* Most input bytes looked at: the message plus room for record headers.
 * Past it without a whole ClientHello, the input is invalid. */
#define FERRY_CLIENTHELLO_MAX (FERRY_CLIENTHELLO_HS_MAX + 2048)

enum ferry_ch_result { FERRY_CH_NEED_MORE, FERRY_CH_OK, FERRY_CH_INVALID };

struct ferry_clienthello {
    bool has_sni;
    char server_name[256];   /* first host_name, lowercased; "" without SNI */
    uint16_t version;        /* legacy_version of the ClientHello */
    bool has_alpn;
    /* ALPN protocols offered, comma-separated ("h2,http/1.1"); protocols with
     * a ',' or a non-printable byte are left out, the list is cut at 255. */
    char alpn[256];
    size_t length;           /* input bytes the ClientHello records took */
};

enum ferry_ch_result ferry_clienthello_parse(const uint8_t *buf, size_t len,
                                             struct ferry_clienthello *out);

#endif

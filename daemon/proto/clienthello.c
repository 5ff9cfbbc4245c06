/* ferryd: reading the TLS ClientHello (see clienthello.h; RFC 8446 4.1.2,
 * RFC 6066 section 3 for server_name, RFC 7301 for ALPN). */
#include <string.h>

#include "proto/clienthello.h"

#define REC_HDR 5
#define REC_MAX 16384         /* TLSPlaintext.length <= 2^14 */
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define HS_HDR 4
#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define SNI_HOST_NAME 0

/* A bounds-checked reader over one byte range. */
struct rd {
    const uint8_t *p;
    size_t n;
    bool bad; /* a read went past the end */
};

static uint32_t rd_u(struct rd *r, size_t bytes)
{
    if (r->bad || r->n < bytes) {
        r->bad = true;
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v = (v << 8) | r->p[i];
    r->p += bytes;
    r->n -= bytes;
    return v;
}

/* Takes a sub-range of `len` bytes. */
static struct rd rd_sub(struct rd *r, size_t len)
{
    struct rd s = {r->p, len, false};
    if (r->bad || r->n < len) {
        r->bad = true;
        s.n = 0;
        s.bad = true;
        return s;
    }
    r->p += len;
    r->n -= len;
    return s;
}

/* A vector with a length prefix of `lbytes` bytes, which must lie within
 * [min, max]. */
static struct rd rd_vec(struct rd *r, size_t lbytes, size_t min, size_t max)
{
    size_t len = rd_u(r, lbytes);
    if (len < min || len > max)
        r->bad = true;
    return rd_sub(r, len);
}

/* ---- extensions ---- */

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* A DNS host name: labels of letters, digits, '-' and '_', 1..63 bytes,
 * separated by single dots, no final dot (RFC 6066), at most 255 bytes. */
static bool valid_host(const uint8_t *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

static bool parse_sni(struct rd ext, struct ferry_clienthello *out)
{
    struct rd list = rd_vec(&ext, 2, 1, 0xffff);
    if (ext.bad || ext.n != 0)
        return false;
    while (list.n > 0) {
        uint8_t type = (uint8_t)rd_u(&list, 1);
        struct rd name = rd_vec(&list, 2, 1, 0xffff);
        if (list.bad)
            return false;
        if (type != SNI_HOST_NAME || out->has_sni)
            continue; /* only the first host_name counts; the list is still checked */
        if (!valid_host(name.p, name.n))
            return false;
        for (size_t i = 0; i < name.n; i++)
            out->server_name[i] = lower((char)name.p[i]);
        out->server_name[name.n] = '\0';
        out->has_sni = true;
    }
    return true;
}

static bool alpn_printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == ',')
            return false;
    return true;
}

static bool parse_alpn(struct rd ext, struct ferry_clienthello *out)
{
    struct rd list = rd_vec(&ext, 2, 2, 0xffff);
    if (ext.bad || ext.n != 0)
        return false;
    size_t used = 0;
    while (list.n > 0) {
        struct rd proto = rd_vec(&list, 1, 1, 255);
        if (list.bad)
            return false;
        if (!alpn_printable(proto.p, proto.n))
            continue;
        size_t need = proto.n + (used ? 1 : 0);
        if (used + need >= sizeof(out->alpn))
            continue; /* keep checking the rest, show what fits */
        if (used)
            out->alpn[used++] = ',';
        memcpy(out->alpn + used, proto.p, proto.n);
        used += proto.n;
        out->alpn[used] = '\0';
    }
    out->has_alpn = true;
    return true;
}

static bool parse_extensions(struct rd exts, struct ferry_clienthello *out)
{
    bool seen_sni = false, seen_alpn = false;
    while (exts.n > 0) {
        uint16_t type = (uint16_t)rd_u(&exts, 2);
        struct rd data = rd_vec(&exts, 2, 0, 0xffff);
        if (exts.bad)
            return false;
        if (type == EXT_SERVER_NAME) {
            if (seen_sni || !parse_sni(data, out))
                return false; /* a repeated extension is illegal (RFC 8446 4.2) */
            seen_sni = true;
        } else if (type == EXT_ALPN) {
            if (seen_alpn || !parse_alpn(data, out))
                return false;
            seen_alpn = true;
        }
    }
    return true;
}

/* The ClientHello body (after the 4-byte handshake header). */
static bool parse_hello(struct rd r, struct ferry_clienthello *out)
{
    out->version = (uint16_t)rd_u(&r, 2);
    if (r.bad || (out->version >> 8) != 3 || (out->version & 0xff) > 4)
        return false;
    rd_sub(&r, 32);                    /* random */
    rd_vec(&r, 1, 0, 32);              /* legacy_session_id */
    struct rd suites = rd_vec(&r, 2, 2, 0xfffe);
    rd_vec(&r, 1, 1, 255);             /* legacy_compression_methods */
    if (r.bad || suites.n % 2 != 0)
        return false;
    if (r.n == 0)
        return true;                   /* no extensions at all (old clients) */
    struct rd exts = rd_vec(&r, 2, 0, 0xffff);
    if (r.bad || r.n != 0)
        return false;                  /* extensions must end the message exactly */
    return parse_extensions(exts, out);
}

/* ---- records ---- */

/* Validates the bytes of a record header present so far. */
static bool header_ok(const uint8_t *h, size_t have)
{
    if (have >= 1 && h[0] != CT_HANDSHAKE)
        return false;
    if (have >= 2 && h[1] != 3)
        return false;
    if (have >= 3 && h[2] > 4)
        return false;
    if (have >= 5) {
        size_t len = ((size_t)h[3] << 8) | h[4];
        if (len == 0 || len > REC_MAX) /* empty handshake fragments are illegal */
            return false;
    }
    return true;
}

/* Checks the handshake header once its 4 bytes are known. */
static bool hs_header_ok(const uint8_t *hs, size_t have, size_t *total)
{
    if (have >= 1 && hs[0] != HS_CLIENT_HELLO)
        return false;
    if (have < HS_HDR)
        return true;
    size_t body = ((size_t)hs[1] << 16) | ((size_t)hs[2] << 8) | hs[3];
    if (body + HS_HDR > FERRY_CLIENTHELLO_HS_MAX)
        return false;
    *total = body + HS_HDR;
    return true;
}

/* Out of bytes: wait for more, unless the input is already as long as
 * anything we accept. */
static enum ferry_ch_result more(size_t len)
{
    return len >= FERRY_CLIENTHELLO_MAX ? FERRY_CH_INVALID : FERRY_CH_NEED_MORE;
}

enum ferry_ch_result ferry_clienthello_parse(const uint8_t *buf, size_t len,
                                             struct ferry_clienthello *out)
{
    uint8_t hs[FERRY_CLIENTHELLO_HS_MAX];   /* the message, reassembled */
    size_t have = 0, total = 0, pos = 0;    /* total: 0 until the header is known */
    memset(out, 0, sizeof(*out));
    if (len > FERRY_CLIENTHELLO_MAX)
        len = FERRY_CLIENTHELLO_MAX;
    for (;;) {
        size_t avail = len - pos;
        if (!header_ok(buf + pos, avail < REC_HDR ? avail : REC_HDR))
            return FERRY_CH_INVALID;
        if (avail < REC_HDR)
            return more(len);
        size_t rlen = ((size_t)buf[pos + 3] << 8) | buf[pos + 4];
        size_t got = avail - REC_HDR < rlen ? avail - REC_HDR : rlen;
        /* The record may not hold more than the message can (so hs cannot
         * overflow), nor bytes past the ClientHello once its length is known. */
        size_t limit = total ? total : FERRY_CLIENTHELLO_HS_MAX;
        if (have + rlen > limit)
            return FERRY_CH_INVALID;
        size_t before = have;
        memcpy(hs + have, buf + pos + REC_HDR, got);
        have += got;
        if (!hs_header_ok(hs, have, &total) || (total && before + rlen > total))
            return FERRY_CH_INVALID;
        if (got < rlen)
            return more(len);
        pos += REC_HDR + rlen;
        if (total && have == total)
            break;
    }
    struct rd r = {hs + HS_HDR, total - HS_HDR, false};
    if (!parse_hello(r, out))
        return FERRY_CH_INVALID;
    out->length = pos;
    return FERRY_CH_OK;
}

/* Unit tests: daemon/clienthello.c (TLS ClientHello parsing for SNI routing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/clienthello.h"

/* Captured from `openssl s_client -servername Www.Example.COM -alpn h2,http/1.1`
 * (OpenSSL 3.0): one record, TLS 1.3 hello with key share. */
static const uint8_t real_hello[] = {
    0x16, 0x03, 0x01, 0x01, 0x4e, 0x01, 0x00, 0x01, 0x4a, 0x03, 0x03, 0xf5,
    0xdb, 0x17, 0x16, 0x5f, 0xa8, 0x5e, 0x69, 0xb5, 0x68, 0x3c, 0x97, 0xb1,
    0x2b, 0xb6, 0x0e, 0xe2, 0x25, 0xda, 0x4b, 0x50, 0x86, 0x68, 0x27, 0x21,
    0xc0, 0xd7, 0x8f, 0xee, 0x7c, 0x0b, 0x64, 0x20, 0x5d, 0xac, 0x6e, 0x54,
    0x7b, 0x59, 0x33, 0x0b, 0x2f, 0xa1, 0xa2, 0xd5, 0xc2, 0x79, 0xe1, 0x15,
    0x1b, 0xdf, 0xae, 0x19, 0x3f, 0xb5, 0xcb, 0xe2, 0xfa, 0x41, 0x93, 0xd4,
    0xc5, 0xce, 0x45, 0x23, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
    0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
    0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
    0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39,
    0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d,
    0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xc3,
    0x00, 0x00, 0x00, 0x14, 0x00, 0x12, 0x00, 0x00, 0x0f, 0x57, 0x77, 0x77,
    0x2e, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x43, 0x4f, 0x4d,
    0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16,
    0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18,
    0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23,
    0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68, 0x32, 0x08,
    0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16, 0x00, 0x00,
    0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03,
    0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a,
    0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
    0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02,
    0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03,
    0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00,
    0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x9a, 0x5f, 0x44, 0x13, 0x64,
    0x15, 0x9a, 0x3e, 0x53, 0xfc, 0x7c, 0x32, 0x94, 0xb9, 0x80, 0x9a, 0x6e,
    0x51, 0x2c, 0xc2, 0xed, 0x71, 0x61, 0x57, 0x9b, 0xe6, 0xa9, 0x4c, 0x03,
    0x1b, 0xb2, 0x6f,
};

/* ---- building hellos ---- */

#define MAXLEN 64
struct lenfield {
    size_t off, width;
    bool outer; /* the handshake length: longer means more to come */
};

struct hello {
    uint8_t b[32000];
    size_t n;
    struct lenfield f[MAXLEN];
    size_t nf;
};

static void put(struct hello *h, const void *p, size_t n)
{
    assert_true(h->n + n <= sizeof(h->b));
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void put8(struct hello *h, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(h, &b, 1);
}

static void put16(struct hello *h, unsigned v)
{
    put8(h, v >> 8);
    put8(h, v);
}

/* Opens a length field of `width` bytes; close_len() fills it in. */
static size_t open_len(struct hello *h, size_t width, bool outer)
{
    assert_true(h->nf < MAXLEN);
    h->f[h->nf++] = (struct lenfield){h->n, width, outer};
    for (size_t i = 0; i < width; i++)
        put8(h, 0);
    return h->n;
}

static void close_len(struct hello *h, size_t start)
{
    size_t len = h->n - start;
    for (size_t k = 0; k < h->nf; k++) {
        struct lenfield *f = &h->f[k];
        if (f->off + f->width == start) {
            for (size_t i = 0; i < f->width; i++)
                h->b[f->off + i] = (uint8_t)(len >> (8 * (f->width - 1 - i)));
            return;
        }
    }
    fail_msg("no length field ends at %zu", start);
}

struct opts {
    unsigned version;            /* legacy_version */
    const char *sni[3];          /* host names, NULL-terminated */
    int sni_type0;               /* name type of the first entry */
    bool no_sni, no_extensions, dup_sni;
    const char *alpn[3];
    size_t padding;              /* bytes of a padding extension */
    unsigned hs_type;
};

/* A handshake message (header included), lengths consistent. */
static void build(struct hello *h, const struct opts *o)
{
    memset(h, 0, sizeof(*h));
    put8(h, o->hs_type ? o->hs_type : 1);
    size_t body = open_len(h, 3, true);
    put16(h, o->version ? o->version : 0x0303);
    uint8_t random[32];
    memset(random, 0xab, sizeof(random));
    put(h, random, 32);
    size_t sid = open_len(h, 1, false);
    put(h, random, 32);
    close_len(h, sid);
    size_t cs = open_len(h, 2, false);
    put16(h, 0x1301);
    put16(h, 0x1302);
    put16(h, 0xc02f);
    close_len(h, cs);
    size_t cm = open_len(h, 1, false);
    put8(h, 0);
    close_len(h, cm);
    if (!o->no_extensions) {
        size_t exts = open_len(h, 2, false);
        put16(h, 0x000b); /* ec_point_formats */
        size_t e = open_len(h, 2, false);
        put8(h, 1);
        put8(h, 0);
        close_len(h, e);
        for (int rep = 0; !o->no_sni && rep < (o->dup_sni ? 2 : 1); rep++) {
            put16(h, 0); /* server_name */
            size_t se = open_len(h, 2, false);
            size_t list = open_len(h, 2, false);
            for (int i = 0; i < 3 && o->sni[i]; i++) {
                put8(h, i == 0 ? (unsigned)o->sni_type0 : 0);
                size_t nm = open_len(h, 2, false);
                put(h, o->sni[i], strlen(o->sni[i]));
                close_len(h, nm);
            }
            close_len(h, list);
            close_len(h, se);
        }
        if (o->alpn[0]) {
            put16(h, 16);
            size_t ae = open_len(h, 2, false);
            size_t list = open_len(h, 2, false);
            for (int i = 0; i < 3 && o->alpn[i]; i++) {
                size_t pl = open_len(h, 1, false);
                put(h, o->alpn[i], strlen(o->alpn[i]));
                close_len(h, pl);
            }
            close_len(h, list);
            close_len(h, ae);
        }
        if (o->padding) {
            put16(h, 21);
            size_t pe = open_len(h, 2, false);
            for (size_t i = 0; i < o->padding; i++)
                put8(h, 0);
            close_len(h, pe);
        }
        put16(h, 0x002b); /* supported_versions */
        size_t sv = open_len(h, 2, false);
        put8(h, 2);
        put16(h, 0x0304);
        close_len(h, sv);
        close_len(h, exts);
    }
    close_len(h, body);
}

/* Wraps a handshake message into records of at most `rec` bytes. The
 * length fields' offsets are carried over into *out. */
static void wrap(const struct hello *m, size_t rec, struct hello *out)
{
    memset(out, 0, sizeof(*out));
    size_t pos = 0;
    while (pos < m->n) {
        size_t chunk = m->n - pos < rec ? m->n - pos : rec;
        put8(out, 22);
        put8(out, 3);
        put8(out, 1);
        if (pos == 0)
            out->f[out->nf++] = (struct lenfield){out->n, 2, false};
        put16(out, (unsigned)chunk);
        size_t base = out->n;
        for (size_t k = 0; k < m->nf && rec >= m->n; k++)
            out->f[out->nf++] = (struct lenfield){m->f[k].off + base, m->f[k].width, m->f[k].outer};
        put(out, m->b + pos, chunk);
        pos += chunk;
    }
}

static struct hello *new_hello(const struct opts *o, size_t rec)
{
    struct hello *m = malloc(sizeof(*m));
    struct hello *r = malloc(sizeof(*r));
    assert_non_null(m);
    assert_non_null(r);
    build(m, o);
    wrap(m, rec, r);
    free(m);
    return r;
}

static enum ferry_ch_result parse(const uint8_t *b, size_t n, struct ferry_clienthello *ch)
{
    return ferry_clienthello_parse(b, n, ch);
}

static void all_prefixes_need_more(const uint8_t *b, size_t n)
{
    struct ferry_clienthello ch;
    for (size_t i = 0; i < n; i++) {
        enum ferry_ch_result r = parse(b, i, &ch);
        if (r != FERRY_CH_NEED_MORE)
            fail_msg("prefix %zu of %zu: %d", i, n, r);
    }
}

/* ---- tests ---- */

static void test_real_hello(void **state)
{
    (void)state;
    struct ferry_clienthello ch;
    assert_int_equal(parse(real_hello, sizeof(real_hello), &ch), FERRY_CH_OK);
    assert_true(ch.has_sni);
    assert_string_equal(ch.server_name, "www.example.com");
    assert_true(ch.has_alpn);
    assert_string_equal(ch.alpn, "h2,http/1.1");
    assert_int_equal(ch.version, 0x0303);
    assert_int_equal(ch.length, sizeof(real_hello));
    all_prefixes_need_more(real_hello, sizeof(real_hello));
    /* Bytes after the hello's records are not looked at. */
    uint8_t more[sizeof(real_hello) + 10];
    memcpy(more, real_hello, sizeof(real_hello));
    memset(more + sizeof(real_hello), 0xff, 10);
    assert_int_equal(parse(more, sizeof(more), &ch), FERRY_CH_OK);
    assert_int_equal(ch.length, sizeof(real_hello));
}

static void test_built_hello(void **state)
{
    (void)state;
    struct opts o = {.sni = {"Api.Example.com"}, .alpn = {"h2", "http/1.1"}};
    struct hello *h = new_hello(&o, 16384);
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_true(ch.has_sni);
    assert_string_equal(ch.server_name, "api.example.com");
    assert_string_equal(ch.alpn, "h2,http/1.1");
    assert_int_equal(ch.length, h->n);
    all_prefixes_need_more(h->b, h->n);
    free(h);
}

static void test_split_records(void **state)
{
    (void)state;
    struct opts o = {.sni = {"split.example"}, .alpn = {"h2"}, .padding = 300};
    size_t sizes[] = {1, 2, 7, 100, 255};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct hello *h = new_hello(&o, sizes[k]);
        struct ferry_clienthello ch;
        assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
        assert_string_equal(ch.server_name, "split.example");
        assert_int_equal(ch.length, h->n);
        all_prefixes_need_more(h->b, h->n);
        free(h);
    }
}

static void test_no_sni(void **state)
{
    (void)state;
    struct opts o = {.no_sni = true};
    struct hello *h = new_hello(&o, 16384);
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_false(ch.has_sni);
    assert_string_equal(ch.server_name, "");
    assert_false(ch.has_alpn);
    free(h);
    struct opts o2 = {.no_extensions = true, .version = 0x0301};
    h = new_hello(&o2, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_false(ch.has_sni);
    assert_int_equal(ch.version, 0x0301);
    free(h);
}

static void test_several_names(void **state)
{
    (void)state;
    struct opts o = {.sni = {"first.example", "second.example"}};
    struct hello *h = new_hello(&o, 16384);
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_string_equal(ch.server_name, "first.example");
    free(h);
    /* An entry of another name type first: skipped. */
    struct opts o2 = {.sni = {"??not a host", "host.example"}, .sni_type0 = 7};
    h = new_hello(&o2, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_string_equal(ch.server_name, "host.example");
    free(h);
    /* Only other types: no SNI. */
    struct opts o3 = {.sni = {"x"}, .sni_type0 = 7};
    h = new_hello(&o3, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_false(ch.has_sni);
    free(h);
}

static void test_bad_names(void **state)
{
    (void)state;
    char long_name[300], long_label[80];
    memset(long_name, 'a', sizeof(long_name));
    for (size_t i = 60; i < 256; i += 61)
        long_name[i] = '.';
    long_name[256] = '\0';   /* 256 bytes: too long */
    memset(long_label, 'b', 64);
    long_label[64] = '\0';   /* a 64-byte label */
    const char *bad[] = {"exa mple.com", "a..b", ".a", "a.", "ex/ample", "caf\xc3\xa9.fr",
                         long_name, long_label, "a:443"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct opts o = {.sni = {bad[i]}};
        struct hello *h = new_hello(&o, 16384);
        struct ferry_clienthello ch;
        if (parse(h->b, h->n, &ch) != FERRY_CH_INVALID)
            fail_msg("name %zu accepted", i);
        free(h);
    }
    /* 255 bytes and a 63-byte label are fine. */
    long_name[255] = '\0';
    long_label[63] = '\0';
    const char *good[] = {long_name, long_label, "x", "under_score.example", "1.2.3.4"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct opts o = {.sni = {good[i]}};
        struct hello *h = new_hello(&o, 16384);
        struct ferry_clienthello ch;
        assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
        assert_int_equal(strlen(ch.server_name), strlen(good[i]));
        free(h);
    }
    /* A NUL inside the name. */
    struct opts o = {.sni = {"abc.example"}};
    struct hello *h = new_hello(&o, 16384);
    uint8_t *p = memmem(h->b, h->n, "abc.example", 11);
    assert_non_null(p);
    p[3] = '\0';
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
}

/* Every length field one too small or one too large. */
static void test_length_fields(void **state)
{
    (void)state;
    struct opts o = {.sni = {"len.example"}, .alpn = {"h2", "http/1.1"}};
    struct hello *h = new_hello(&o, 16384);
    assert_true(h->nf >= 12);
    for (size_t k = 0; k < h->nf; k++) {
        struct lenfield *f = &h->f[k];
        for (int delta = -1; delta <= 1; delta += 2) {
            struct hello *c = malloc(sizeof(*c));
            assert_non_null(c);
            memcpy(c, h, sizeof(*c));
            unsigned v = 0;
            for (size_t i = 0; i < f->width; i++)
                v = (v << 8) | c->b[f->off + i];
            v = (unsigned)((int)v + delta);
            for (size_t i = 0; i < f->width; i++)
                c->b[f->off + i] = (uint8_t)(v >> (8 * (f->width - 1 - i)));
            struct ferry_clienthello ch;
            enum ferry_ch_result r = parse(c->b, c->n, &ch);
            /* A longer handshake only means more is coming; a record longer
             * than the hello carries foreign bytes. */
            enum ferry_ch_result want = f->outer && delta > 0 ? FERRY_CH_NEED_MORE : FERRY_CH_INVALID;
            if (r != want)
                fail_msg("field %zu (offset %zu) %+d: %d, wanted %d", k, f->off, delta, r, want);
            free(c);
        }
    }
    free(h);
}

static void test_invalid(void **state)
{
    (void)state;
    struct ferry_clienthello ch;
    assert_int_equal(parse((const uint8_t *)"G", 1, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x02", 2, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x05", 3, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x01", 5, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x00", 5, &ch), FERRY_CH_NEED_MORE);
    assert_int_equal(parse((const uint8_t *)"\x15\x03\x01\x00\x02\x02\x28", 7, &ch), FERRY_CH_INVALID);
    /* ServerHello instead of ClientHello. */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x03\x00\x04\x02\x00\x00\x00", 9, &ch),
                     FERRY_CH_INVALID);
    /* Handshake too long, known from its header. */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x04\x01\x00\x40\x00", 9, &ch),
                     FERRY_CH_INVALID);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x04\x01\x00\x3f\xfc", 9, &ch),
                     FERRY_CH_NEED_MORE);
    /* Legacy versions. */
    struct opts o = {.sni = {"v.example"}, .version = 0x0205};
    struct hello *h = new_hello(&o, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
    o.version = 0x0305;
    h = new_hello(&o, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
    /* Duplicate server_name extension. */
    struct opts d = {.sni = {"v.example"}, .dup_sni = true};
    h = new_hello(&d, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
    /* Record version changed on a later record. */
    struct opts s = {.sni = {"v.example"}};
    h = new_hello(&s, 50);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    h->b[55 + 1] = 2;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    h->b[55 + 1] = 3;
    h->b[55] = 23; /* application data in the middle */
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
}

static void test_trailing_in_record(void **state)
{
    (void)state;
    struct opts o = {.sni = {"t.example"}};
    struct hello *h = new_hello(&o, 16384);
    /* One more byte inside the (only) record, after the hello. */
    unsigned rl = ((unsigned)h->b[3] << 8 | h->b[4]) + 1;
    h->b[3] = (uint8_t)(rl >> 8);
    h->b[4] = (uint8_t)rl;
    h->b[h->n++] = 0;
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
}

static void test_oversized(void **state)
{
    (void)state;
    struct ferry_clienthello ch;
    /* A big but valid hello (~16 KB with padding) in two records. */
    struct opts o = {.sni = {"big.example"}, .padding = 16000};
    struct hello *h = new_hello(&o, 10000);
    assert_true(h->n > 16000);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_string_equal(ch.server_name, "big.example");
    free(h);
    /* Over the limit: the handshake header says so. */
    struct opts o2 = {.sni = {"big.example"}, .padding = 16400};
    h = new_hello(&o2, 16384);
    assert_int_equal(parse(h->b, 9, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
    /* Tiny records: input past FERRY_CLIENTHELLO_MAX without a whole hello. */
    struct opts o3 = {.sni = {"big.example"}, .padding = 4000};
    h = new_hello(&o3, 1);
    assert_true(h->n > FERRY_CLIENTHELLO_MAX);
    assert_int_equal(parse(h->b, FERRY_CLIENTHELLO_MAX - 1, &ch), FERRY_CH_NEED_MORE);
    assert_int_equal(parse(h->b, FERRY_CLIENTHELLO_MAX, &ch), FERRY_CH_INVALID);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
}

static void test_alpn(void **state)
{
    (void)state;
    struct opts o = {.sni = {"a.example"}, .alpn = {"h2", "bad,comma", "http/1.1"}};
    struct hello *h = new_hello(&o, 16384);
    struct ferry_clienthello ch;
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_OK);
    assert_string_equal(ch.alpn, "h2,http/1.1");
    free(h);
    struct opts e = {.sni = {"a.example"}, .alpn = {""}};
    /* An empty protocol name is malformed; build() writes it since alpn[0] is "". */
    h = new_hello(&e, 16384);
    assert_int_equal(parse(h->b, h->n, &ch), FERRY_CH_INVALID);
    free(h);
}

/* Deterministic mutations of a valid hello never crash and never read
 * past the input (ASan checks). */
static void test_mutations(void **state)
{
    (void)state;
    uint8_t buf[sizeof(real_hello)];
    uint32_t x = 7;
    struct ferry_clienthello ch;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, real_hello, sizeof(buf));
        for (int m = 0; m < 1 + round % 3; m++) {
            x = x * 1103515245u + 12345u;
            size_t pos = (x >> 8) % sizeof(buf);
            x = x * 1103515245u + 12345u;
            buf[pos] = (uint8_t)(x >> 16);
        }
        size_t len = round % 5 == 0 ? (x >> 4) % sizeof(buf) : sizeof(buf);
        enum ferry_ch_result r = parse(buf, len, &ch);
        if (r == FERRY_CH_OK) {
            assert_true(ch.length <= len);
            assert_true(strlen(ch.server_name) < sizeof(ch.server_name));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_hello),       cmocka_unit_test(test_built_hello),
        cmocka_unit_test(test_split_records),    cmocka_unit_test(test_no_sni),
        cmocka_unit_test(test_several_names),    cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_length_fields),    cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_trailing_in_record), cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_alpn),             cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

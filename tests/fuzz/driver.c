/* A deterministic stand-in for libFuzzer's driver, so that every fuzz target
 * also runs under ASan/UBSan in ./test.sh with the project's usual compiler:
 * it feeds the target its seeds, then FUZZ_ITERATIONS inputs made by mutating
 * them (bit flips, byte changes, truncation, splicing, repetition) from a
 * fixed random seed. With clang, -Dfuzz=true links the same targets against
 * the real libFuzzer instead (see meson.build). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#ifndef FUZZ_ITERATIONS
#define FUZZ_ITERATIONS 200000
#endif
#define FUZZ_MAX 20000

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t mutate(uint8_t *buf, size_t len, uint64_t *rng)
{
    unsigned rounds = 1 + next(rng) % 8;
    for (unsigned r = 0; r < rounds; r++) {
        size_t pos = len ? next(rng) % len : 0;
        switch (next(rng) % 6) {
        case 0: if (len) buf[pos] ^= (uint8_t)(1u << (next(rng) % 8)); break;
        case 1: if (len) buf[pos] = (uint8_t)next(rng); break;
        case 2: len = pos; break;                                   /* truncate */
        case 3: if (len < FUZZ_MAX) buf[len++] = (uint8_t)next(rng); break;
        case 4: {                                                   /* repeat a run */
            size_t n = 1 + next(rng) % 64;
            if (pos + n <= len && len + n <= FUZZ_MAX) {
                memmove(buf + pos + n, buf + pos, len - pos);
                len += n;
            }
            break;
        }
        default: if (len) buf[pos] = (uint8_t)"\0\xff\x7f\x80 \r\n:=[]"[next(rng) % 11]; break;
        }
    }
    return len;
}

int main(void)
{
    size_t nseeds;
    const struct fuzz_seed *seeds = fuzz_seeds(&nseeds);
    uint8_t *buf = malloc(FUZZ_MAX);
    if (!buf)
        return 1;
    for (size_t i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput(seeds[i].data, seeds[i].len);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < FUZZ_ITERATIONS; i++) {
        const struct fuzz_seed *s = &seeds[next(&rng) % nseeds];
        size_t len = s->len < FUZZ_MAX ? s->len : FUZZ_MAX;
        memcpy(buf, s->data, len);
        len = mutate(buf, len, &rng);
        /* A fresh copy of exactly len bytes, so ASan sees any over-read. */
        uint8_t *in = malloc(len ? len : 1);
        if (!in)
            return 1;
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
    }
    free(buf);
    printf("%u inputs, %zu seeds: no crash\n", FUZZ_ITERATIONS, nseeds);
    return 0;
}

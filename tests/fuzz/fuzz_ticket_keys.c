/* Fuzz target: the session-ticket key file (tls_ticket_keys), which an
 * operator or a secret store writes: one base64 80-byte key a line. Either
 * a set of 1..FERRY_TICKET_KEYS_MAX keys, or NULL and a printable reason. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "tls/ticket_keys.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen(3) wants a buffer */
    FILE *fp = fmemopen((void *)data, size, "r");
    assert(fp != NULL);
    char err[256];
    memset(err, 0, sizeof(err));
    struct ferry_ticket_keys *k = ferry_ticket_keys_read(fp, err, sizeof(err));
    fclose(fp);
    if (k) {
        size_t n = ferry_ticket_keys_count(k);
        assert(n >= 1 && n <= FERRY_TICKET_KEYS_MAX);
        /* 108 base64 characters a key: the file holds at least that. */
        assert(size >= n * 108);
        assert(err[0] == '\0');
        ferry_ticket_keys_free(k);
    } else {
        assert(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
        for (const char *p = err; *p; p++)
            assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    }
    return 0;
}

#define KEY1 "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5P"
#define KEY2 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8="

static const struct fuzz_seed seeds[] = {
    FUZZ_SEED("# rotated 2026-12-07\n" KEY2 "\n"),
    FUZZ_SEED(KEY2 "\r\n\n  " KEY2 "  \n"),
    FUZZ_SEED("#\n\n"),
    FUZZ_SEED("not a key\n"),
    FUZZ_SEED(KEY1 "\n"),
    /* wrapped at 64 columns, as openssl rand -base64 80 writes it */
    FUZZ_SEED("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n"
              "MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8=\n"),
};

const struct fuzz_seed *fuzz_seeds(size_t *n)
{
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}

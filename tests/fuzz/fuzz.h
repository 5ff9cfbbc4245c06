/* Fuzz targets: each file defines LLVMFuzzerTestOneInput and its seeds. */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_seed {
    const uint8_t *data;
    size_t len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The target's seed inputs (used by driver.c). */
const struct fuzz_seed *fuzz_seeds(size_t *n);

#define FUZZ_SEED(s) {(const uint8_t *)(s), sizeof(s) - 1}

#endif

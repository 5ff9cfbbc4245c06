/* Writes a fuzz target's seeds into a directory (one file each), the
 * starting corpus of a libFuzzer run (-Dfuzz=true builds; see run.sh). */
#include <stdio.h>

#include "fuzz.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    size_t n;
    const struct fuzz_seed *seeds = fuzz_seeds(&n);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%zu", argv[1], i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(seeds[i].data, 1, seeds[i].len, f) != seeds[i].len || fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    return 0;
}
